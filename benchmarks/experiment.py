"""The offline-RL experiment (issue 5): does ILQL on imagined or hindsight data beat imitation and prompting?

For each task: imagine scripted dialogues (a mixture of poor-to-good strategies with noise),
augment them with hindsight regeneration, train BC, filtered BC and ILQL on each of the two
datasets, then evaluate those six agents, the prompted SmolLM2 agent and the reference agents
on held-out (test-split) personas with fixed seeds, through the leaderboard machinery. Writes
``OUT/eval/leaderboard.md`` (mean return with 95% bootstrap intervals, normalised scores) and
prints a compact table. Every step is resumable: data files append and skip what they hold,
finished checkpoints are reused, finished episodes are not replayed.

Run (CPU, the tiny from-scratch model)::

    python benchmarks/experiment.py --model tiny --out runs/experiment

On a GPU with the bundled SmolLM2-135M (as measured on an H100; README gives the results)::

    python benchmarks/experiment.py --model smollm2 --bf16 --n 1000 --max-steps 200 \
        --batch-size 16 --max-length 1024 --lr 5e-5 --eval-batch 100 \
        --envs DialogueDonate-v0 --out runs/gpu-smollm2/DialogueDonate-v0

Checkpoints land in ``OUT/<env id>/<data>-<algo>`` (data: ``imagined`` or ``hindsight``), which
is where ``agents/<algo>-<data>.yaml`` point for the committed leaderboard. The agents' names and
inference settings (ILQL's beta and top-k, the prompted agent's decoding) are read from those
files and ``agents/prompted-smollm2.yaml``, so the experiment and the leaderboard play the same
agents (``--ilql-beta``/``--ilql-top-k`` override them for a study).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import dialogue_gym  # noqa: F401
from dialogue_gym.agents.configs import AgentConfig, config_from_dict, load_config, reference_config
from dialogue_gym.datagen.hindsight import run_hindsight
from dialogue_gym.datagen.imagine import imagine
from dialogue_gym.leaderboard.report import build_report, to_markdown, write_report
from dialogue_gym.leaderboard.runner import Settings, play
from dialogue_gym.registry import BUILTIN

AGENTS = Path(__file__).resolve().parents[1] / "agents"
DATASETS = ("imagined", "hindsight")
ALGOS = ("bc", "fbc", "ilql")


def make_data(env_id: str, out: Path, n: int, seed: int) -> dict[str, Path]:
    """Imagined dialogues and the same plus their hindsight branches, for one env."""
    out.mkdir(parents=True, exist_ok=True)
    imagined, hindsight = out / "imagined.jsonl", out / "hindsight.jsonl"
    imagine(env_id, n, imagined, seed=seed, progress=True)
    run_hindsight(imagined, hindsight, keep_sources=True, progress=True)
    return {"imagined": imagined, "hindsight": hindsight}


def data_summary(env_id: str, paths: dict[str, Path], fraction: float) -> list[str]:
    """Markdown rows: what each training set offers (train split): dialogues, mean return, the mean
    of the best ``fraction`` (what filtered BC imitates) and the best return."""
    from statistics import fmean

    from dialogue_gym.algos.data import load_training_records, top_fraction

    rows = []
    for name, path in paths.items():
        records = load_training_records(path, env_id, "train")
        top = top_fraction(records, fraction)
        returns = [r.ret for r in records]
        rows.append(
            f"| {env_id} | {name} | {len(records)} | {fmean(returns):.3f} | "
            f"{fmean(r.ret for r in top):.3f} | {max(returns):.3f} |"
        )
    return rows


def train_agent(algo: str, data: Path, env_id: str, out: Path, args: argparse.Namespace) -> Path:
    """Train one agent unless its checkpoint already exists; returns the checkpoint directory."""
    if (out / "dialogue_gym_agent.json").is_file():
        return out
    common = dict(
        data=[str(data)],
        model=args.model,
        env_id=env_id,
        output_dir=str(out),
        max_length=args.max_length,
        num_train_epochs=args.epochs,
        learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size,
        seed=args.seed,
        bf16=args.bf16,
        report_to="tensorboard",
        save_steps=500,
        max_steps=args.max_steps,
    )
    started = time.perf_counter()
    if algo == "ilql":
        from dialogue_gym.algos.ilql import ILQLConfig
        from dialogue_gym.algos.ilql import train as train_ilql

        path = train_ilql(ILQLConfig(**{**common, **args.ilql_fields}))
    else:
        from dialogue_gym.algos.bc import BCConfig
        from dialogue_gym.algos.bc import train as train_bc

        path = train_bc(BCConfig(top_fraction=args.top_fraction if algo == "fbc" else 1.0, **common))
    print(f"trained {algo} on {data.name} for {env_id} in {time.perf_counter() - started:.0f} s -> {path}")
    return Path(path)


def trained_agent(algo: str, data_name: str, args: argparse.Namespace, extra: dict[str, Any]) -> AgentConfig:
    """The leaderboard's config ``agents/<algo>-<data>.yaml`` (name, inference settings: one place
    for both) pointed at this run's checkpoints, with ``--ilql-*`` and ``extra`` kwargs on top."""
    spec = dict(load_config(AGENTS / f"{algo}-{data_name}.yaml").spec)
    spec["path"] = str(args.out / "{env_id}" / f"{data_name}-{algo}")
    kwargs = dict(spec.get("kwargs") or {})
    if algo == "ilql":
        if args.ilql_beta is not None:
            kwargs["beta"] = args.ilql_beta
        if args.ilql_top_k is not None:
            kwargs["top_k"] = args.ilql_top_k
    kwargs.update(extra)
    if kwargs:
        spec["kwargs"] = kwargs
    return config_from_dict(spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", nargs="+", default=list(BUILTIN), help="env ids (default: the four tasks)")
    p.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS), help="training sets")
    p.add_argument("--algos", nargs="+", choices=ALGOS, default=list(ALGOS), help="algorithms")
    p.add_argument("--n", type=int, default=2000, help="imagined dialogues per task")
    p.add_argument("--episodes", type=int, default=300, help="evaluation episodes per agent and task")
    p.add_argument("--model", default="tiny", help="base model: tiny, smollm2 or a HF path")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--max-steps", type=int, default=-1, help="cap optimizer steps per agent (-1: epochs)")
    p.add_argument("--lr", type=float, default=1e-3, help="1e-3 suits tiny; use ~5e-5 for smollm2")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--max-length",
        type=int,
        default=2048,
        help="longest training sequence (Prefs' catalogue alone takes 1,550 tokens)",
    )
    p.add_argument("--top-fraction", type=float, default=0.3, help="filtered BC keeps this best share")
    p.add_argument("--bf16", action="store_true", help="mixed precision (GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-seed", type=int, default=10_000, help="first evaluation seed (test personas)")
    p.add_argument(
        "--ilql-beta",
        type=float,
        help="ILQL inference: logits + beta * (Q - V) (default: agents/ilql-*.yaml)",
    )
    p.add_argument(
        "--ilql-top-k",
        type=int,
        help="ILQL inference: the policy's top-k (default: agents/ilql-*.yaml)",
    )
    p.add_argument(
        "--ilql-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an ILQLConfig field for training, e.g. cql_top_k=20 (use a fresh --out)",
    )
    p.add_argument(
        "--repetition-penalty",
        type=float,
        help="trained agents' decoding: a repetition penalty (default: none; enters the agent keys)",
    )
    p.add_argument("--no-prompted", action="store_true", help="skip the prompted SmolLM2 agent")
    p.add_argument(
        "--eval-batch",
        type=int,
        default=None,
        help="conversations per generate call in evaluation (default 16; ~100 on a GPU)",
    )
    p.add_argument("--out", type=Path, default=Path("runs/experiment"))
    args = p.parse_args()
    args.ilql_fields = {}
    if args.ilql_set:  # a misspelt field fails here, not after the data and the other agents
        from dialogue_gym.algos.ilql import ILQLConfig
        from dialogue_gym.cli import parse_overrides, unknown_fields

        args.ilql_fields = parse_overrides(tuple(args.ilql_set), "--ilql-set")
        if unknown := unknown_fields(ILQLConfig, args.ilql_fields):
            p.error(f"--ilql-set: ILQLConfig has no field {', '.join(unknown)}")

    summary = [
        f"| env | data | train dialogues | mean return | top {args.top_fraction:.0%} mean | best |",
        "|---|---|---|---|---|---|",
    ]
    for env_id in args.envs:
        paths = make_data(env_id, args.out / env_id, args.n, args.seed)
        summary += data_summary(env_id, paths, args.top_fraction)
        for data_name in args.datasets:
            for algo in args.algos:
                train_agent(algo, paths[data_name], env_id, args.out / env_id / f"{data_name}-{algo}", args)

    # trained agents' decoding kwargs: each enters an agent's key only when asked for, so earlier
    # runs keep their recorded rows
    decoding: dict[str, Any] = {} if args.eval_batch is None else {"batch_size": args.eval_batch}
    if args.repetition_penalty is not None:
        decoding["repetition_penalty"] = args.repetition_penalty
    agents = [reference_config(level) for level in ("naive", "competent", "oracle")]
    if not args.no_prompted:
        # agents/prompted-smollm2.yaml's settings on every episode (the leaderboard caps it at 8 on CPU)
        spec = dict(load_config(AGENTS / "prompted-smollm2.yaml").spec)
        spec.pop("episodes", None)
        if args.eval_batch is not None:
            spec["backend_kwargs"] = {"max_batch": args.eval_batch}
        agents.append(config_from_dict(spec))
    for data_name in args.datasets:
        for algo in args.algos:
            agents.append(trained_agent(algo, data_name, args, decoding))
    settings = Settings(
        agents=agents,
        env_ids=list(args.envs),
        episodes=args.episodes,
        seed=args.eval_seed,
        persona_split="test",
        out_dir=args.out / "eval",
        **({} if args.eval_batch is None else {"batch": args.eval_batch, "chunk": max(64, args.eval_batch)}),
    )
    _, rows = play(settings)
    report = build_report(rows)
    report.command = " ".join(["python benchmarks/experiment.py", *map(shlex.quote, sys.argv[1:])])
    for path in write_report(report, settings.out_dir):
        print(f"wrote {path}")
    (settings.out_dir / "data.md").write_text("\n".join(summary) + "\n", encoding="utf-8")
    print(to_markdown(report))
    print("\n".join(summary))


if __name__ == "__main__":
    main()
