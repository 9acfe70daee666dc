"""Overhead of the leaderboard machinery over raw env stepping, for scripted humans.

Run: python benchmarks/leaderboard_overhead.py [--episodes 300] [--repeats 3] [--env ID ...] [--profile]

The same agent (each task's competent reference) plays the same episodes (held-out personas,
task seeds 10000..) two ways:

* raw: one env per task from ``gym.make`` and ``evaluation.run_episode`` per seed;
* leaderboard: ``dialogue_gym.leaderboard.play`` into a fresh results file: planning, the env pool,
  batched ``act_batch`` calls, a result row per episode appended and flushed to JSONL, the progress
  bar (on stderr).

Times are this process's CPU time (``time.process_time``: both ways run on one thread, and
the machine is shared, so wall time would mostly measure the neighbours). Each repeat runs both,
alternating which goes first; the medians are compared. Overhead = leaderboard / raw - 1
(target: under 10%). Building the tables afterwards (bootstrap, Markdown,
CSV; no plot) happens once per run and is reported on its own. ``--profile`` prints the top
functions of one leaderboard run by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from pathlib import Path

import gymnasium as gym

import dialogue_gym  # noqa: F401
from dialogue_gym.agents.configs import reference_config
from dialogue_gym.evaluation import reference_agent, run_episode
from dialogue_gym.leaderboard import Settings, build_report, play, write_report
from dialogue_gym.registry import BUILTIN

SEED = 10_000


def raw(env_ids: list[str], episodes: int) -> float:
    start = time.process_time()
    for env_id in env_ids:
        env = gym.make(env_id, persona_split="test")
        agent = reference_agent(env_id, "competent")
        for seed in range(SEED, SEED + episodes):
            run_episode(env, agent, seed)
        env.close()
    return time.process_time() - start


def leaderboard(env_ids: list[str], episodes: int, out: Path) -> tuple[float, list[dict]]:
    settings = Settings(
        agents=[reference_config("competent")],
        env_ids=env_ids,
        episodes=episodes,
        seed=SEED,
        out_dir=out,
        normalise=False,  # exactly the raw loop's episodes
    )
    start = time.process_time()
    _, rows = play(settings, progress=True, log=lambda m: None)
    return time.process_time() - start, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", action="append", help="env id (repeatable; default: the four built-ins)")
    parser.add_argument("--episodes", type=int, default=300, help="task seeds per env")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="profile one leaderboard run")
    args = parser.parse_args()
    env_ids = args.env or list(BUILTIN)
    # warm up: cards, imports, the git lookup
    raw(env_ids, 2)
    with tempfile.TemporaryDirectory() as tmp:
        leaderboard(env_ids, 2, Path(tmp))

    raws, boards, rows = [], [], []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            if i % 2:
                raws.append(raw(env_ids, args.episodes))
                t, rows = leaderboard(env_ids, args.episodes, Path(tmp))
                boards.append(t)
            else:
                t, rows = leaderboard(env_ids, args.episodes, Path(tmp))
                boards.append(t)
                raws.append(raw(env_ids, args.episodes))
    n = len(env_ids) * args.episodes
    r, b = statistics.median(raws), statistics.median(boards)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.process_time()
        write_report(build_report(rows), tmp, plot_png=False)
        tables = time.process_time() - start

    print(f"{n} episodes ({', '.join(env_ids)}; {args.episodes} each), median of {args.repeats} runs")
    print(f"raw env stepping   {r:7.2f} s CPU ({1000 * r / n:.2f} ms/episode)  runs: {_fmt(raws)}")
    print(f"leaderboard        {b:7.2f} s CPU ({1000 * b / n:.2f} ms/episode)  runs: {_fmt(boards)}")
    print(f"overhead           {100 * (b / r - 1):+6.1f} %  (target < 10%)")
    print(f"tables (once)      {tables:7.2f} s CPU")
    if args.profile:
        with tempfile.TemporaryDirectory() as tmp:
            prof = cProfile.Profile()
            prof.runcall(leaderboard, env_ids, args.episodes, Path(tmp))
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)


def _fmt(xs: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in xs)


if __name__ == "__main__":
    main()
