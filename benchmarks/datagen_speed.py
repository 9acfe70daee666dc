"""Scripted imagination speed: dialogues/s on one core per task, JSONL writing included.

Run: python benchmarks/datagen_speed.py [--env DialogueTeach-v0 ...] [--n 3000] [--repeats 3] [--core 0]

Each run is a fresh ``imagine(env_id, n, tmpfile, resume=False)`` with the default strategy
mixture and ``epsilon=0.2``, timed end to end (env, strategies, records, writes and the summary);
the process is pinned to one core. The table shows the best and the median of ``--repeats`` runs
by the wall clock, the best by the process's CPU time (the fairer figure on a busy machine),
and how the time of one run splits between the env (reset and step), the strategies and the rest
(drawing strategies, building and writing records), measured by a separate instrumented run.
Target (issue 4): >= 500 dialogues/s on one core for every task.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import gymnasium as gym

import dialogue_gym  # noqa: F401
from dialogue_gym.datagen import imagine as engine
from dialogue_gym.datagen.strategies import Strategy
from dialogue_gym.registry import BUILTIN


def rate(env_id: str, n: int, path: Path) -> tuple[float, float]:
    """Dialogues per second of wall time and per second of this process's CPU time (on a shared
    machine the wall clock also counts time spent waiting for the core)."""
    wall, cpu = time.perf_counter(), time.process_time()
    engine.imagine(env_id, n, path, resume=False, progress=False)
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def split(env_id: str, n: int, path: Path) -> dict[str, float]:
    """Shares of one run's time spent in the env, in the strategies, and elsewhere."""
    spent = {"env": 0.0, "strategy": 0.0}
    env_cls = type(gym.make(env_id).unwrapped)
    originals = {"reset": env_cls.reset, "step": env_cls.step, "act": Strategy.act}

    def timed(fn, key):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - t

        return wrapper

    env_cls.reset = timed(originals["reset"], "env")
    env_cls.step = timed(originals["step"], "env")
    Strategy.act = timed(originals["act"], "strategy")
    try:
        t = time.perf_counter()
        engine.imagine(env_id, n, path, resume=False, progress=False)
        total = time.perf_counter() - t
    finally:
        env_cls.reset, env_cls.step, Strategy.act = originals["reset"], originals["step"], originals["act"]
    return {"env": spent["env"] / total, "strategy": spent["strategy"] / total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", action="append", help="env id (repeatable); default: the four built-ins")
    ap.add_argument("--n", type=int, default=3000, help="dialogues per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--core", type=int, default=0, help="CPU core to pin to (-1: no pinning)")
    args = ap.parse_args()
    if args.core >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    env_ids = args.env or list(BUILTIN)
    print(
        f"Scripted imagination, {args.n} dialogues per run, best and median of {args.repeats} runs, "
        "one core\n"
    )
    print(
        "| env | dialogues/s wall (best) | median | dialogues/CPU-s (best) | mean turns | env share | "
        "strategy share | other |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for env_id in env_ids:
            path = Path(tmp) / f"{env_id}.jsonl"
            engine.imagine(env_id, 50, path, resume=False, progress=False)  # warm caches and imports
            runs = [rate(env_id, args.n, path) for _ in range(args.repeats)]
            rates, cpu_rates = [w for w, _ in runs], [c for _, c in runs]
            turns = engine.summarise_records(engine.read_records(path))["turns_mean"]
            share = split(env_id, args.n, path)
            other = 1.0 - share["env"] - share["strategy"]
            print(
                f"| {env_id} | {max(rates):,.0f} | {statistics.median(rates):,.0f} | {max(cpu_rates):,.0f} | "
                f"{turns:.2f} | "
                f"{share['env']:.0%} | {share['strategy']:.0%} | {other:.0%} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
