"""Behaviour cloning (BC) and filtered BC: fine-tune a causal LM on the agent turns of a dataset.

The loss is the next-token cross-entropy on the agent's tokens only (its utterances and their
end-of-turn tokens; see :mod:`dialogue_gym.algos.data`), with the LM head computed only at those
positions. Filtered BC is the same on the best ``top_fraction`` of the dialogues by return.

Training runs on ``transformers.Trainer``, so checkpoints (``save_steps``), resuming
(``resume_from_checkpoint``), mixed precision (``bf16``) and multi-GPU (``accelerate launch``)
work as they do for any Trainer; losses go to TensorBoard under ``<output_dir>/runs``::

    from dialogue_gym.algos.bc import BCConfig, train
    out = train(BCConfig(data=["teach.jsonl"], model="smollm2", output_dir="runs/teach-bc"))
    agent = load_agent(out)                  # an LMAgent

or ``dialogue-gym train bc --data teach.jsonl --model smollm2 --out runs/teach-bc``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from dialogue_gym.agents.base import Agent
from dialogue_gym.agents.lm import LMAgent, evaluate_batched
from dialogue_gym.algos.checkpoint import agent_meta, read_meta, save_checkpoint, write_meta
from dialogue_gym.algos.data import DialogueCollator, DialogueDataset, load_training_records, top_fraction
from dialogue_gym.algos.models import agent_logits, load_base_model


@dataclass
class BCConfig(TrainingArguments):
    """BC / filtered BC settings: the dataset and model, plus every ``TrainingArguments`` field.

    Defaults differ from ``TrainingArguments`` where dialogue training wants it (TensorBoard on,
    frequent logging, two kept checkpoints). ``learning_rate`` suits fine-tuning a pretrained model;
    the from-scratch ``"tiny"`` model wants about 1e-3.
    """

    data: list[str] = field(default_factory=list, metadata={"help": "JSONL record files to train on."})
    model: str = field(default="tiny", metadata={"help": "'tiny', 'smollm2' or a Hugging Face path/id."})
    env_id: str | None = field(default=None, metadata={"help": "Refuse records of other envs."})
    max_length: int = field(default=2048, metadata={"help": "Longest training sequence in tokens."})
    top_fraction: float = field(default=1.0, metadata={"help": "Filtered BC: keep this best fraction."})
    split: str | None = field(default="train", metadata={"help": "Persona split to train on (None: all)."})
    dtype: str | None = field(default=None, metadata={"help": "Weights dtype (default float32)."})
    eval_every: int = field(default=0, metadata={"help": "Play eval episodes every N steps (0: never)."})
    eval_episodes: int = field(default=16, metadata={"help": "Episodes per in-training evaluation."})
    # TrainingArguments with other defaults
    output_dir: str | None = field(default=None, metadata={"help": "Where the agent and checkpoints go."})
    learning_rate: float = 1e-4
    per_device_train_batch_size: int = 8
    num_train_epochs: float = 3.0
    warmup_steps: float = 0.05
    logging_steps: float = 10
    save_steps: float = 200
    save_total_limit: int | None = 2
    report_to: str | list[str] | None = "tensorboard"
    remove_unused_columns: bool = False

    @property
    def algo(self) -> str:
        """``"fbc"`` when the data are filtered, else ``"bc"``."""
        return "fbc" if self.top_fraction < 1.0 else "bc"

    def __post_init__(self) -> None:
        if self.output_dir is None:
            raise ValueError("output_dir is required: the directory the trained agent is saved to")
        if not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"top_fraction must be in (0, 1], got {self.top_fraction}")
        super().__post_init__()


class BCTrainer(Trainer):
    """A ``Trainer`` whose loss is cross-entropy on the agent's tokens, with the LM head applied
    only there. Batches come from :class:`~dialogue_gym.algos.data.DialogueCollator`."""

    def __init__(self, model: Any, args: BCConfig, train_dataset: Any, processing_class: Any, **kwargs: Any):
        kwargs.setdefault("data_collator", DialogueCollator(processing_class.pad_token_id))
        super().__init__(
            model=model, args=args, train_dataset=train_dataset, processing_class=processing_class, **kwargs
        )
        # the loss below is normalised over the agent tokens of the whole accumulated batch, which
        # Trainer counts from ``labels`` when it thinks the model takes loss kwargs
        self.model_accepts_loss_kwargs = True
        self.loss_is_scaled_for_ga = True

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        logits, targets = agent_logits(
            model, inputs["input_ids"], inputs["attention_mask"], inputs["agent_mask"]
        )
        loss = F.cross_entropy(logits.float(), targets, reduction="sum")
        if num_items_in_batch is None:  # evaluation, or a caller outside Trainer's accumulation
            loss = loss / max(targets.numel(), 1)
        else:
            loss = loss / num_items_in_batch
            if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
                loss = loss * self.accelerator.num_processes  # DDP averages gradients over processes
        return (loss, {"logits": logits}) if return_outputs else loss


class AgentMetaCallback(TrainerCallback):
    """Makes every Trainer checkpoint an agent directory: on each save it writes the agent metadata
    (``dialogue_gym_agent.json``) into ``OUT/checkpoint-N``, beside the weights and tokenizer the
    Trainer put there, so ``dialogue-gym eval --agent OUT/checkpoint-N`` plays the model of step N.
    ``extra_state`` names the checkpoint's own file of extra tensors (ILQL's heads)."""

    def __init__(
        self, algo: str, config: TrainingArguments, env_id: str, extra_state: str | None = None
    ) -> None:
        self.meta = agent_meta(algo=algo, config=config, env_id=env_id, extra_state=extra_state)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            write_meta(folder, self.meta)


class EnvEvalCallback(TrainerCallback):
    """Plays ``episodes`` dev-split episodes every ``every`` steps and logs the mean return
    (``eval_return``, ``eval_success``) through the trainer, so they land in TensorBoard.

    ``make_agent(model)`` builds the agent from the model being trained (any algorithm)."""

    def __init__(
        self,
        trainer: Trainer,
        env_id: str,
        make_agent: Callable[[Any], Agent],
        every: int,
        episodes: int = 16,
        seed: int = 0,
    ) -> None:
        self.trainer, self.env_id, self.make_agent = trainer, env_id, make_agent
        self.every, self.episodes, self.seed = every, episodes, seed

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.every <= 0 or state.global_step % self.every:
            return
        from dialogue_gym.evaluation import summarise

        model = self.trainer.model
        was_training = model.training
        results = evaluate_batched(
            self.make_agent(model), self.env_id, self.episodes, seed=self.seed, persona_split="dev"
        )
        model.train(was_training)
        s = summarise(results)
        self.trainer.log({"eval_return": s["mean"], "eval_success": s["success"], "eval_turns": s["turns"]})


def resume_argument(config: TrainingArguments) -> str | bool | None:
    """``resume_from_checkpoint`` for ``Trainer.train``: ``"auto"`` resumes from the last checkpoint
    in ``output_dir`` if there is one (else starts afresh), ``"last"``/``"true"`` requires one,
    anything else is a checkpoint path."""
    value = config.resume_from_checkpoint
    if value in (None, "", False, "false", "False"):
        return None
    if value == "auto":
        out = Path(config.output_dir)
        return get_last_checkpoint(str(out)) if out.is_dir() else None
    if value in (True, "true", "True", "last"):
        return True
    if not Path(str(value)).is_dir():
        raise FileNotFoundError(f"resume_from_checkpoint: no checkpoint directory {value}")
    return str(value)


def build_trainer(config: BCConfig) -> tuple[BCTrainer, str]:
    """The trainer for ``config`` (records loaded, filtered and encoded; base model loaded) and the env id."""
    records = load_training_records(config.data, config.env_id, config.split)
    env_id = config.env_id or records[0].env_id
    if config.top_fraction < 1.0:
        records = top_fraction(records, config.top_fraction)
    model, tokenizer = load_base_model(config.model, dtype=config.dtype, seed=config.seed)
    trainer = BCTrainer(model, config, DialogueDataset(records, tokenizer, config.max_length), tokenizer)
    trainer.add_callback(AgentMetaCallback(config.algo, config, env_id))
    if config.eval_every:
        trainer.add_callback(
            EnvEvalCallback(
                trainer,
                env_id,
                lambda m: LMAgent(m, tokenizer, max_length=config.max_length, name=config.algo),
                config.eval_every,
                config.eval_episodes,
            )
        )
    return trainer, env_id


def train(config: BCConfig) -> Path:
    """Train a BC (or filtered BC) agent as ``config`` says; returns the agent directory."""
    trainer, env_id = build_trainer(config)
    trainer.train(resume_from_checkpoint=resume_argument(config))
    return save_checkpoint(
        config.output_dir,
        algo=config.algo,
        model=trainer.model,
        tokenizer=trainer.processing_class,
        config=config,
        env_id=env_id,
    )


def load_agent(
    path: str | Path, *, device: str | None = None, dtype: str | None = None, **kwargs: Any
) -> LMAgent:
    """The BC / filtered-BC agent saved in ``path``; ``kwargs`` go to :class:`LMAgent`
    (``temperature``, ``max_new_tokens``, ``batch_size``...)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dialogue_gym.algos.models import resolve_dtype

    meta = read_meta(path, expect_algo=("bc", "fbc"))
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    kwargs.setdefault("max_length", meta["config"].get("max_length"))
    kwargs.setdefault("name", f"{meta['algo']}:{Path(path).name}")
    return LMAgent(model.to(device), tokenizer, **kwargs)
