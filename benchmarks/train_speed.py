"""Training and generation throughput: BC vs ILQL on the same model and data, and a trained agent
playing batched episodes.

Prints, for each algorithm, training tokens per second (all non-padding tokens of the batches,
timed over ``--steps`` optimizer steps after ``--warmup`` untimed ones) and agent tokens per
second (the tokens the losses are computed on), and ILQL's share of BC's throughput (the issue's
target: at least 60%). With ``--agent DIR`` it then times that trained agent's generation in
batched evaluation (new tokens per second over ``--episodes`` episodes, ``--batch-size`` at once)::

    python benchmarks/train_speed.py                       # tiny model, Counsel, 2 CPU cores: minutes
    python benchmarks/train_speed.py --model smollm2 --steps 10
    python benchmarks/train_speed.py --steps 0 --agent runs/counsel-bc   # generation only
    python benchmarks/train_speed.py --ilql-set cql_top_k=20             # an ILQL variant
"""

from __future__ import annotations

import importlib
import tempfile
import time
from pathlib import Path

import click
import gymnasium as gym
import torch
from transformers import TrainerCallback

from dialogue_gym.agents.lm import LMAgent, evaluate_batched
from dialogue_gym.cli import parse_overrides
from dialogue_gym.datagen.records import provenance, record_from_episode, write_records
from dialogue_gym.evaluation import reference_agent


def make_dataset(path: Path, env_id: str, n: int) -> None:
    """``n`` competent-agent dialogues on training personas."""
    env = gym.make(env_id, persona_split="train")
    agent = reference_agent(env_id, "competent")
    records = []
    for seed in range(n):
        _, info = env.reset(seed=seed)
        rewards, done = [], False
        while not done:
            _, r, term, trunc, info = env.step(agent.act(info["transcript"]))
            rewards.append(r)
            done = term or trunc
        prov = provenance("scripted", strategy="competent", seed=seed)
        records.append(
            record_from_episode(f"{env_id}-{seed}", env_id, info["transcript"], rewards, info, prov)
        )
    write_records(path, records)


class Timer(TrainerCallback):
    """Times the optimizer steps after the first ``warmup`` ones."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.elapsed = warmup, 0.0, 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step > self.warmup:
            self.elapsed = time.perf_counter() - self.start


class CountingCollator:
    """Wraps a collator to record the (all, agent) token counts of every batch it builds."""

    def __init__(self, inner) -> None:
        self.inner, self.counts = inner, []

    def __call__(self, batch):
        out = self.inner(batch)
        self.counts.append((int(out["attention_mask"].sum()), int(out["agent_mask"].sum())))
        return out


def time_training(
    algo: str,
    data: Path,
    out: Path,
    model: str,
    steps: int,
    warmup: int,
    batch: int,
    extra: dict | None = None,
):
    """(tokens/s, agent tokens/s, trainer) over ``steps`` timed steps of ``algo``'s trainer
    (``extra``: more config fields)."""
    module = importlib.import_module(f"dialogue_gym.algos.{algo}")
    config_cls = module.BCConfig if algo == "bc" else module.ILQLConfig
    config = config_cls(
        data=[str(data)],
        model=model,
        output_dir=str(out),
        max_steps=warmup + steps,
        per_device_train_batch_size=batch,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        logging_steps=10_000,
        seed=0,
        **(extra or {}),
    )
    trainer, _ = module.build_trainer(config)
    timer, counter = Timer(warmup), CountingCollator(trainer.data_collator)
    trainer.data_collator = counter
    trainer.add_callback(timer)
    trainer.train()
    # batches are built in step order (the data loader may build one more ahead, never used)
    if len(counter.counts) < warmup + steps:
        raise RuntimeError(f"expected {warmup + steps} batches, the collator built {len(counter.counts)}")
    timed = counter.counts[warmup : warmup + steps]
    tokens, agent_tokens = sum(c[0] for c in timed), sum(c[1] for c in timed)
    return tokens / timer.elapsed, agent_tokens / timer.elapsed, trainer


def time_generation(agent: LMAgent, env_id: str, episodes: int, batch_size: int) -> None:
    """Play ``episodes`` test-split episodes, ``batch_size`` at once, and print the generation speed."""
    start = time.perf_counter()
    evaluate_batched(agent, env_id, episodes, seed=0, batch_size=batch_size, persona_split="test")
    elapsed = time.perf_counter() - start
    s = agent.stats
    click.echo(
        f"generation ({agent.name}, {episodes} episodes, {batch_size} at once): "
        f"{s['generated_tokens'] / elapsed:.0f} new tokens/s, {s['calls'] / elapsed:.1f} utterances/s, "
        f"{s['generated_tokens'] / s['calls']:.1f} new and {s['prompt_tokens'] / s['calls']:.0f} prompt "
        "tokens per utterance (env time included)"
    )


@click.command()
@click.option("--env", "env_id", default="DialogueCounsel-v0", show_default=True)
@click.option("--model", default="tiny", show_default=True, help="tiny, smollm2 or a HF path.")
@click.option("--dialogues", default=64, show_default=True)
@click.option("--steps", default=20, show_default=True, help="Timed optimizer steps per algorithm.")
@click.option("--warmup", default=3, show_default=True, help="Untimed steps first.")
@click.option("--batch", default=8, show_default=True, help="Dialogues per step.")
@click.option("--algo", "algos", multiple=True, default=("bc", "ilql"), show_default=True)
@click.option("--agent", "agent_dir", default=None, help="Time generation of this trained agent directory.")
@click.option("--episodes", default=32, show_default=True, help="Evaluation episodes for generation speed.")
@click.option("--batch-size", default=32, show_default=True, help="Envs played in lockstep.")
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
@click.option("--ilql-set", "ilql_set", multiple=True, help="An ILQLConfig field, KEY=VALUE (YAML value).")
def main(
    env_id: str,
    model: str,
    dialogues: int,
    steps: int,
    warmup: int,
    batch: int,
    algos: tuple[str, ...],
    agent_dir: str | None,
    episodes: int,
    batch_size: int,
    threads: int | None,
    ilql_set: tuple[str, ...],
) -> None:
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    click.echo(
        f"torch threads: {torch.get_num_threads()}, model {model}, env {env_id}, batch {batch} dialogues"
    )
    ilql_extra = parse_overrides(ilql_set, "--ilql-set")
    if ilql_extra:
        click.echo(f"ILQL options: {ilql_extra}")
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.jsonl"
        make_dataset(data, env_id, dialogues)
        for algo in algos if steps > 0 else ():
            try:
                extra = ilql_extra if algo == "ilql" else None
                out = Path(tmp) / algo
                tps, agent_tps, _ = time_training(algo, data, out, model, steps, warmup, batch, extra)
            except ImportError as exc:
                click.echo(f"{algo}: unavailable ({exc})")
                continue
            rates[algo] = tps
            click.echo(f"{algo:>5} training: {tps:8.0f} tokens/s ({agent_tps:7.0f} agent tokens/s)")
    if "bc" in rates and "ilql" in rates:
        share = rates["ilql"] / rates["bc"]
        verdict = "meets" if share >= 0.6 else "misses"
        click.echo(f"ILQL keeps {100 * share:.0f}% of BC's training throughput ({verdict} the 60% target)")
    if agent_dir:
        from dialogue_gym.algos.checkpoint import load_agent

        time_generation(load_agent(agent_dir, batch_size=batch_size), env_id, episodes, batch_size)


if __name__ == "__main__":
    main()
