"""BC and filtered BC: the trainer, resuming, filtering, the CLI, and that cloning works."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from click.testing import CliRunner
from transformers import TrainerCallback

from dialogue_gym.agents.lm import LMAgent, evaluate_batched
from dialogue_gym.algos.bc import BCConfig, EnvEvalCallback, build_trainer, load_agent, resume_argument, train
from dialogue_gym.algos.checkpoint import file_sha256, read_meta
from dialogue_gym.cli import _eval_agent, main
from dialogue_gym.datagen.records import load_records, provenance, record_from_episode, write_records
from dialogue_gym.evaluation import reference_agent, summarise

ENV = "DialogueCounsel-v0"


def play(env_id: str, seed: int, level: str):
    env = gym.make(env_id, persona_split="train")
    agent = reference_agent(env_id, level)
    _, info = env.reset(seed=seed)
    rewards, done = [], False
    while not done:
        _, r, term, trunc, info = env.step(agent.act(info["transcript"]))
        rewards.append(r)
        done = term or trunc
    prov = provenance("scripted", strategy=level, seed=seed)
    return record_from_episode(f"{env_id}-{level}-{seed}", env_id, info["transcript"], rewards, info, prov)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Competent and naive Counsel dialogues on training personas."""
    path = tmp_path_factory.mktemp("data") / "counsel.jsonl"
    write_records(path, [play(ENV, s, lvl) for s in range(6) for lvl in ("competent", "naive")])
    return path


def config(tmp_path: Path, data: Path, **kw) -> BCConfig:
    base = dict(
        data=[str(data)],
        model="tiny",
        output_dir=str(tmp_path / "out"),
        max_steps=4,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        save_steps=2,
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        max_length=512,
    )
    return BCConfig(**{**base, **kw})


def test_loss_counts_agent_tokens_only(tmp_path, dataset):
    """The trainer's loss equals transformers' own causal-LM loss with labels -100 everywhere but on
    the agent's tokens, and a batch's context tokens change nothing but through the context."""
    trainer, _ = build_trainer(config(tmp_path, dataset))
    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.model
    with torch.no_grad():
        ours = trainer.compute_loss(model, batch)
        hf = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
        )
    assert (batch["labels"][batch["agent_mask"] == 0] == -100).all()
    torch.testing.assert_close(ours, hf.loss, rtol=1e-5, atol=1e-5)


class _StopAt(TrainerCallback):
    """Ends training after ``step`` optimizer steps, as a crash would (the schedule is unchanged)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


def test_resume_from_a_trainer_checkpoint_gives_the_same_model(tmp_path, dataset):
    """A run interrupted after its step-2 checkpoint and resumed ends with the weights of a run
    that was never interrupted."""
    short = dict(max_steps=4, max_length=256, per_device_train_batch_size=1)
    straight, _ = build_trainer(config(tmp_path / "a", dataset, save_steps=100, **short))
    straight.train()

    cut, _ = build_trainer(config(tmp_path / "b", dataset, save_steps=2, **short))
    cut.add_callback(_StopAt(2))
    cut.train()
    assert cut.state.global_step == 2 and (tmp_path / "b" / "out" / "checkpoint-2").is_dir()

    resumed_cfg = config(tmp_path / "b", dataset, save_steps=2, resume_from_checkpoint="auto", **short)
    assert resume_argument(resumed_cfg).endswith("checkpoint-2")
    resumed, _ = build_trainer(resumed_cfg)
    resumed.train(resume_from_checkpoint=resume_argument(resumed_cfg))
    assert resumed.state.global_step == 4
    for (name, p), (_, q) in zip(
        straight.model.named_parameters(), resumed.model.named_parameters(), strict=True
    ):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


def test_a_trainer_checkpoint_of_an_unfinished_run_is_an_agent(tmp_path, dataset):
    """checkpoint-N of a run that never finished loads as the agent of step N: the weights the
    trainer held at step N, the run's config in its metadata, playable in an env."""
    from dialogue_gym.algos.checkpoint import CheckpointError
    from dialogue_gym.algos.checkpoint import load_agent as load_any
    from dialogue_gym.evaluation import run_episode

    trainer, _ = build_trainer(config(tmp_path, dataset, max_length=256, per_device_train_batch_size=1))
    trainer.add_callback(_StopAt(2))
    trainer.train()
    with pytest.raises(CheckpointError, match="or load a checkpoint-N"):
        load_any(tmp_path / "out")  # no finished agent
    ckpt = tmp_path / "out" / "checkpoint-2"
    meta = read_meta(ckpt, expect_algo="bc")
    assert meta["env_id"] == ENV and meta["config"]["max_steps"] == 4
    agent = load_any(ckpt, max_new_tokens=8)
    assert isinstance(agent, LMAgent) and agent.name == "bc:checkpoint-2"
    for (name, p), (_, q) in zip(
        trainer.model.named_parameters(), agent.model.named_parameters(), strict=True
    ):
        torch.testing.assert_close(p.detach().cpu(), q.cpu(), msg=name)
    assert run_episode(gym.make(ENV), agent, 0).turns >= 1


def test_filtered_bc_trains_on_the_best_dialogues(tmp_path, dataset):
    records = load_records(dataset)
    trainer, _ = build_trainer(config(tmp_path, dataset, top_fraction=0.5))
    kept = {e.record_id for e in trainer.train_dataset}
    best = sorted(records, key=lambda r: (-r.ret, r.id))[:6]
    assert kept == {r.id for r in best}
    assert all(r.provenance["strategy"] == "competent" for r in best)  # competent beats naive here
    assert config(tmp_path, dataset, top_fraction=0.5).algo == "fbc"
    with pytest.raises(ValueError, match="top_fraction"):
        config(tmp_path, dataset, top_fraction=0.0)


def test_clear_errors(tmp_path, dataset):
    with pytest.raises(FileNotFoundError, match="dataset not found"):
        train(config(tmp_path, tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="is for DialogueCounsel-v0, not DialogueTeach-v0"):
        train(config(tmp_path, dataset, env_id="DialogueTeach-v0"))
    with pytest.raises(ValueError, match="output_dir is required"):
        BCConfig(data=[str(dataset)])


def test_env_eval_callback_logs_returns_to_tensorboard(tmp_path, dataset):
    """The in-training evaluation plays dev-split episodes and its mean return reaches TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer, _ = build_trainer(
        config(tmp_path, dataset, max_steps=2, report_to="tensorboard", save_steps=100)
    )
    competent = reference_agent(ENV, "competent")
    trainer.add_callback(EnvEvalCallback(trainer, ENV, lambda model: competent, every=2, episodes=3))
    trainer.train()
    logged = [h["eval_return"] for h in trainer.state.log_history if "eval_return" in h]
    expected = summarise(evaluate_batched(competent, ENV, 3, seed=0, persona_split="dev"))["mean"]
    assert logged == [pytest.approx(expected)]
    runs = list((tmp_path / "out" / "runs").iterdir())
    events = EventAccumulator(str(runs[0])).Reload()
    assert [e.value for e in events.Scalars("eval/return")] == [pytest.approx(expected)]


@pytest.fixture(scope="module")
def cli_agent(tmp_path_factory, dataset) -> Path:
    """A BC agent trained for two steps through the command line."""
    out = tmp_path_factory.mktemp("cli") / "agent"
    args = ["train", "bc", "--data", str(dataset), "--model", "tiny", "--out", str(out), "--max-steps", "2"]
    args += ["--batch-size", "2", "--max-length", "400", "--lr", "1e-3"]
    args += ["--set", "report_to=none", "--set", "save_steps=100"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"saved bc agent to {out}" in result.stdout
    return out


def test_cli_train_saves_a_loadable_agent(cli_agent, dataset):
    meta = read_meta(cli_agent, expect_algo="bc")
    assert meta["env_id"] == ENV and meta["base_model"] == "tiny"
    assert meta["config"]["max_steps"] == 2 and meta["config"]["learning_rate"] == 1e-3
    assert meta["datasets"] == [{"path": str(dataset), "sha256": file_sha256(dataset)}]
    agent = load_agent(cli_agent, max_new_tokens=4)
    assert isinstance(agent, LMAgent) and agent.name == "bc:agent" and agent.max_length == 400 - 4
    assert isinstance(agent.act(load_records(dataset)[0].messages[:2]), str)


def test_cli_eval(cli_agent):
    runner = CliRunner()
    args = ["eval", "--agent", str(cli_agent), "--env", ENV, "--episodes", "2", "--max-new-tokens", "4"]
    result = runner.invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["episodes"] == 2 and summary["split"] == "test" and summary["turns"] > 0

    result = runner.invoke(main, ["eval", "--agent", "reference:competent", "--env", ENV, "--episodes", "4"])
    assert result.exit_code == 0, result.output
    assert "mean return" in result.stdout and "95% CI" in result.stdout

    result = runner.invoke(main, [*args, "--repetition-penalty", "1.3", "--json"])
    assert result.exit_code == 0, result.output
    assert _eval_agent(str(cli_agent), ENV, None, None, 4, 1.3).repetition_penalty == 1.3


def test_cli_errors(tmp_path, dataset, cli_agent):
    runner = CliRunner()
    data = ["--data", str(dataset)]
    base = ["train", "bc", "--out", str(tmp_path / "a"), "--max-steps", "1", "--set", "report_to=none"]
    cases = [
        ([*base, "--data", str(tmp_path / "nope.jsonl")], "dataset not found"),
        ([*base, *data, "--env", "DialogueTeach-v0"], "not DialogueTeach-v0"),
        ([*base, *data, "--set", "learning_rat=1"], "unknown BCConfig field(s): learning_rat"),
        ([*base, *data, "--top-fraction", "0.5"], "use 'dialogue-gym train fbc'"),
        ([*base], "no dataset"),
        (["train", "fbc", *data, "--out", str(cli_agent)], "holds a 'bc' agent"),
        (["eval", "--agent", str(tmp_path), "--env", ENV], "not a dialogue-gym agent checkpoint"),
        (["eval", "--agent", "reference:genius", "--env", ENV], "no reference agent 'genius'"),
        (["eval", "--agent", "nowhere", "--env", ENV], "neither an agent directory"),
        (["eval", "--agent", str(cli_agent), "--env", ENV, "--algo", "ilql"], "expected 'ilql'"),
        (["eval", "--agent", "reference:naive", "--env", ENV, "--repetition-penalty", "2"], "trained agents"),
        (["eval", "--agent", str(cli_agent), "--env", ENV, "--repetition-penalty", "0"], "range x>0"),
        (["eval", "--agent", "reference:naive", "--env", ENV, "--beta", "2"], "trained agents"),
        (["eval", "--agent", str(cli_agent), "--env", ENV, "--beta", "2"], "applies to ILQL agents"),
    ]
    for args, message in cases:
        result = runner.invoke(main, args)
        assert result.exit_code != 0 and message in result.output, (args, result.output)


@pytest.mark.slow
def test_bc_clones_the_competent_agent_well_enough_to_beat_naive(tmp_path):
    """A tiny model trained from scratch on competent Counsel dialogues (generated here) plays
    held-out personas better than the naive reference agent."""
    data = tmp_path / "competent.jsonl"
    write_records(data, [play(ENV, s, "competent") for s in range(48)])
    schedule = dict(learning_rate=2e-3, lr_scheduler_type="cosine", warmup_steps=0.05)
    cfg = config(tmp_path, data, max_steps=80, per_device_train_batch_size=8, max_length=1024, **schedule)
    agent = load_agent(train(cfg))
    bc = summarise(evaluate_batched(agent, ENV, 30, seed=500, persona_split="test"))
    naive_agent = reference_agent(ENV, "naive")
    naive = summarise(evaluate_batched(naive_agent, ENV, 30, seed=500, persona_split="test"))
    assert agent.stats["empty"] == 0
    assert bc["mean"] - bc["ci95"] > naive["mean"] + naive["ci95"], (bc, naive)


@pytest.mark.slow
def test_finetune_bundled_smollm2_and_reload(tmp_path, dataset):
    out = train(config(tmp_path, dataset, model="smollm2", max_steps=2, learning_rate=5e-5, save_steps=100))
    meta = read_meta(out)
    assert meta["base_model"] == "smollm2" and meta["config"]["model"] == "smollm2"
    agent = load_agent(out, max_new_tokens=24)
    msgs = load_records(dataset)[0].messages[:2]
    text = agent.act(msgs)
    assert isinstance(text, str) and text
    again = load_agent(out, max_new_tokens=24)
    assert again.act(msgs) == text


def test_lm_agent_never_ends_a_turn_before_it_starts():
    """An empty utterance is not an action: with min_new_tokens=1 (the default) the end-of-turn
    token is barred at the first step even when a logits processor (ILQL's shift, say) rates it
    highest; with 0 the same agent says nothing and falls back."""
    from transformers import LogitsProcessor

    from dialogue_gym.algos.models import load_base_model

    model, tokenizer = load_base_model("tiny")
    hi = tokenizer.encode("Hi", add_special_tokens=False)[0]

    class PreferStop(LogitsProcessor):
        def __init__(self, stop_ids):
            self.stop_ids = list(stop_ids)

        def __call__(self, input_ids, scores):
            scores = scores.clone()
            scores[:, hi] += 5e3
            scores[:, self.stop_ids] += 1e4
            return scores

    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello?"}]
    agent = LMAgent(model, tokenizer, max_new_tokens=4)
    agent.logits_processor = PreferStop(agent.stop_ids)
    assert agent.act_batch([prompt]) == ["Hi"] and agent.stats["empty"] == 0
    eager = LMAgent(model, tokenizer, max_new_tokens=4, min_new_tokens=0)
    eager.logits_processor = PreferStop(eager.stop_ids)
    assert eager.act_batch([prompt]) == [eager.fallback] and eager.stats["empty"] == 1
