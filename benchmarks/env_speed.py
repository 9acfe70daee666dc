"""Scripted-env speed and memory: steps/s on one core per task, against a no-op text env floor.

Run: python benchmarks/env_speed.py [--env DialogueTeach-v0 ...] [--steps 20000] [--repeats 5]

Each task is stepped through ``gym.make`` (with Gymnasium's default wrappers) by its competent
reference agent's utterances, replayed from a pre-recorded pool so the agent's own cost is not
counted. The floor is a do-nothing env with the same FreeText spaces, also through ``gym.make``,
making the same calls: every 50 episodes of a task it replays them (the same seeded resets, the
same utterances, the same number of steps per episode), so that both are timed under the same
load on a shared virtual machine, where the speed of one pass moves by 15-50% from minute to
minute. A seeded reset costs Gymnasium about ten no-op steps (a new numpy generator), so a floor
with episodes of another length would charge a task with short episodes for Gymnasium's own
resets (Prefs' episodes are about four steps, Counsel's eight). The first row is the floor alone
with ten-step episodes. Memory per env instance is measured with tracemalloc over 50 instances
after one reset each. Targets (issue 2): >= 10,000 steps/s per task, within ~20x of the floor;
< 5 MB per env.

Each env runs one unmeasured warm-up pass (the first pass fills caches, such as per-card tables,
and has run at half the speed of the next ones), then ``--repeats`` passes of ``--steps`` steps.
The table gives the median steps/s, its range, the median of the floor's steps/s, and "x floor",
the median over passes of the pass's floor time over its task time: the figure the target is
judged on.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import tracemalloc

import gymnasium as gym

import dialogue_gym  # noqa: F401
from dialogue_gym.core.spaces import FreeText
from dialogue_gym.evaluation import reference_agent, run_episode
from dialogue_gym.registry import BUILTIN


class NoopTextEnv(gym.Env):
    """The floor: a text env that does nothing; episodes end when the caller resets."""

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = FreeText(4000)
        self.action_space = FreeText(1000, min_length=1)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return "hello", {}

    def step(self, action):
        return "ok", 0.0, False, False, {}


gym.register("NoopText-v0", entry_point=NoopTextEnv)


def utterance_pool(env_id: str, episodes: int = 20) -> list[list[str]]:
    """Agent utterances from real episodes of the competent agent, one list per episode."""
    env = gym.make(env_id)
    agent = reference_agent(env_id, "competent")
    pool = []
    for seed in range(episodes):
        run_episode(env, agent, seed)
        pool.append([m["content"] for m in env.unwrapped.transcript if m["role"] == "assistant"])
    return pool


def run_pass(env_id: str, pool: list[list[str]], steps: int, chunk: int = 50) -> tuple[float, float]:
    """Steps/s of ``env_id`` and of the floor making the same calls, over ``steps`` steps.

    Episode ``i`` is ``reset(seed=i)``, then pool line list ``i % len(pool)`` until the env ends
    it or the list runs out. Every ``chunk`` episodes of the task, the floor replays them (same
    seeds, utterances and step counts), so both are timed under the same load."""
    env, noop = gym.make(env_id), gym.make("NoopText-v0")
    task_time = floor_time = 0.0
    done = ep = 0
    while done < steps:
        lengths = []
        start = time.perf_counter()
        for i in range(ep, ep + chunk):
            env.reset(seed=i)
            n = 0
            for line in pool[i % len(pool)]:
                _, _, term, trunc, _ = env.step(line)
                n += 1
                if term or trunc:
                    break
            lengths.append(n)
        task_time += time.perf_counter() - start
        start = time.perf_counter()
        for i, n in enumerate(lengths, ep):
            noop.reset(seed=i)
            for line in pool[i % len(pool)][:n]:
                noop.step(line)
        floor_time += time.perf_counter() - start
        done += sum(lengths)
        ep += chunk
    return done / task_time, done / floor_time


def memory_per_env(env_id: str, n: int = 50) -> float:
    gym.make(env_id).reset(seed=0)  # load and cache the card first: it is shared by all instances
    tracemalloc.start()
    envs = [gym.make(env_id) for _ in range(n)]
    for e in envs:
        e.reset(seed=0)
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return size / n / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", action="append", help="env id (repeatable); default: all built-in")
    ap.add_argument("--steps", type=int, default=20_000, help="steps per repeat")
    ap.add_argument("--repeats", type=int, default=5, help="passes per env; the median is reported")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core

    print(f"{'env':<24}{'steps/s':>10}{'range':>18}{'floor':>11}{'x floor':>9}{'MB/env':>8}")
    for env_id in ["NoopText-v0", *(args.env or list(BUILTIN))]:
        floor_row = env_id == "NoopText-v0"  # the no-op env alone, ten-step episodes
        pool = [["hi"] * 10] if floor_row else utterance_pool(env_id)
        run_pass(env_id, pool, args.steps)  # warm-up, not counted
        passes = [run_pass(env_id, pool, args.steps) for _ in range(args.repeats)]
        runs = [sps for sps, _ in passes]
        span = f"{min(runs):,.0f}-{max(runs):,.0f}"
        ratio = statistics.median(base / sps for sps, base in passes)
        name = "no-op, 10-step episodes" if floor_row else env_id
        mem = "" if floor_row else f"{memory_per_env(env_id):>8.2f}"
        print(
            f"{name:<24}{statistics.median(runs):>10,.0f}{span:>18}"
            f"{statistics.median(b for _, b in passes):>11,.0f}{ratio:>9.1f}{mem}"
        )


if __name__ == "__main__":
    main()
