"""The reference datasets: scripted imagination per task, fixed seeds, and their summary tables.

Run: python benchmarks/reference_datasets.py [--n 3000] [--seed 0] [--out data/reference] [--oracle-seeds 200]

Writes ``<out>/<task>.jsonl`` for each built-in task (``imagine(env_id, n, path, seed=seed)`` with the
default strategy mixture and ``epsilon=0.2``; resumable, so a rerun only checks the files) and
prints Markdown for the README: per task the count, return mean and std, min and max, mean turns
and the strategies with their counts and mean returns; the train/dev/test counts (persona split);
and how the data compares with the oracle reference agent on the first ``--oracle-seeds`` seeds:
the share of seeds where the dataset's dialogue scores below the oracle's, and where even the best
of all strategies played on that seed does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import numpy as np

import dialogue_gym  # noqa: F401
from dialogue_gym.datagen.imagine import episode_rng, imagine, play
from dialogue_gym.datagen.records import load_records
from dialogue_gym.datagen.strategies import make_strategy, strategies
from dialogue_gym.evaluation import reference_agent, run_episode
from dialogue_gym.registry import BUILTIN


def oracle_gap(env_id: str, path: Path, seeds: int, epsilon: float = 0.2) -> dict[str, float]:
    """On the first ``seeds`` records: how often the record, and the best of all strategies on its
    seed, score below the oracle on that seed."""
    env = gym.make(env_id)
    oracle = reference_agent(env_id, "oracle")
    records = load_records(path)[:seeds]
    below_record = below_best = 0
    oracle_rets, best_rets = [], []
    for r in records:
        s = r.provenance["seed"]
        o = run_episode(env, oracle, s).ret
        best = max(
            sum(play(env, make_strategy(env_id, name, episode_rng(s), epsilon), s)[1])
            for name in strategies(env_id)
        )
        below_record += r.ret < o - 1e-9
        below_best += best < o - 1e-9
        oracle_rets.append(o)
        best_rets.append(best)
    n = len(records)
    return {
        "n": n,
        "record_below": below_record / n,
        "best_below": below_best / n,
        "oracle_mean": float(np.mean(oracle_rets)),
        "best_mean": float(np.mean(best_rets)),
        "data_max": max(r.ret for r in load_records(path)),
        "oracle_max": max(oracle_rets),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000, help="dialogues per task")
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--out", default="data/reference", help="output folder")
    ap.add_argument("--oracle-seeds", type=int, default=200, help="seeds compared with the oracle (0: skip)")
    args = ap.parse_args()
    out = Path(args.out)
    rows, splits, gaps = [], [], []
    for env_id, task in BUILTIN.items():
        path = out / f"{task}.jsonl"
        s = imagine(env_id, args.n, path, seed=args.seed, progress=True)
        strat = ", ".join(f"{k} {v['count']} ({v['mean']:.2f})" for k, v in s["strategies"].items())
        rows.append(
            f"| {env_id} | {s['count']} | {s['return_mean']:.3f} | {s['return_std']:.3f} | "
            f"{s['return_min']:.2f} / {s['return_max']:.2f} | {s['turns_mean']:.2f} | {strat} |"
        )
        sp = s["splits"]
        splits.append(f"| {env_id} | {sp['train']} | {sp['dev']} | {sp['test']} |")
        if args.oracle_seeds:
            g = oracle_gap(env_id, path, args.oracle_seeds)
            gaps.append(
                f"| {env_id} | {g['n']} | {g['record_below']:.0%} | {g['best_below']:.0%} | "
                f"{g['best_mean']:.3f} | {g['oracle_mean']:.3f} | "
                f"{g['data_max']:.2f} / {g['oracle_max']:.2f} |"
            )
    print(
        f"\nReference datasets: {args.n} scripted dialogues per task, seeds {args.seed}.."
        f"{args.seed + args.n - 1}, default strategy mixture, epsilon 0.2\n"
    )
    print("| env | count | return mean | std | min / max | mean turns | strategies: count (mean return) |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\nPersona splits (train/dev/test by persona id):\n")
    print("| env | train | dev | test |\n|---|---|---|---|")
    print("\n".join(splits))
    if gaps:
        print(
            f"\nAgainst the oracle reference agent on the first {args.oracle_seeds} seeds of each dataset:\n"
        )
        print(
            "| env | seeds | dataset dialogue below oracle | best of all strategies below oracle | "
            "best-of-strategies mean | oracle mean | dataset max / oracle max |"
        )
        print("|---|---|---|---|---|---|---|")
        print("\n".join(gaps))


if __name__ == "__main__":
    main()
