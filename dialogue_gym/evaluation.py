"""Playing agents against envs: one episode, many seeded episodes, and the reference agents."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from dialogue_gym.agents.base import Agent
from dialogue_gym.core.env import DialogueEnv

REFERENCE_LEVELS = ("naive", "competent", "oracle")


@dataclass
class EpisodeResult:
    """The record of one played episode."""

    seed: int
    ret: float
    turns: int
    outcome: dict[str, Any] = field(default_factory=dict)
    success: bool | None = None
    end_reason: str | None = None


def reference_agent(env_id: str, level: str) -> Agent:
    """The task's built-in ``naive``, ``competent`` or ``oracle`` agent for ``env_id``."""
    cls = gym.spec(env_id).entry_point
    if isinstance(cls, str):
        cls = gym.envs.registration.load_env_creator(cls)
    agents = getattr(cls, "reference_agents", {})
    if level not in agents:
        raise KeyError(f"{env_id} has no reference agent {level!r}; it has {sorted(agents)}")
    return agents[level]()


def run_episode(
    env: gym.Env, agent: Agent, seed: int, options: Mapping[str, Any] | None = None
) -> EpisodeResult:
    """Play one episode of ``agent`` in ``env`` from ``seed``."""
    _, info = env.reset(seed=seed, options=dict(options) if options else None)
    base: DialogueEnv = env.unwrapped  # type: ignore[assignment]
    persona = base.persona if agent.privileged else None
    messages = info["transcript"]
    total, done = 0.0, False
    while not done:
        action = agent.act(messages, persona)
        _, reward, terminated, truncated, info = env.step(action)
        total += reward
        messages = info["transcript"]
        done = terminated or truncated
    return EpisodeResult(
        seed=seed,
        ret=total,
        turns=info["turn"],
        outcome=info.get("outcome", {}),
        success=info.get("success"),
        end_reason=info.get("end_reason"),
    )


def evaluate(
    agent: Agent | Callable[[], Agent],
    env_id: str,
    episodes: int = 100,
    seed: int = 0,
    workers: int = 1,
    **env_kwargs: Any,
) -> list[EpisodeResult]:
    """Play ``episodes`` seeded episodes (seeds ``seed .. seed+episodes-1``), in seed order.

    ``workers > 1`` plays that many episodes at once in threads, each with its own env: with an
    LLM human the model calls overlap (API backends) or are batched (a shared local model).
    Agents derive everything from the transcript, so one agent serves all threads.
    """
    agent = agent if isinstance(agent, Agent) else agent()
    if workers <= 1:
        env = gym.make(env_id, **env_kwargs)
        try:
            return [run_episode(env, agent, seed + i) for i in range(episodes)]
        finally:
            env.close()
    local = threading.local()

    def play(i: int) -> EpisodeResult:
        if not hasattr(local, "env"):
            local.env = gym.make(env_id, **env_kwargs)
        return run_episode(local.env, agent, seed + i)

    with ThreadPoolExecutor(workers, thread_name_prefix="dialogue-eval") as pool:
        return list(pool.map(play, range(episodes)))


def summarise(results: list[EpisodeResult]) -> dict[str, float]:
    """Mean return with a normal-approximation 95% interval, mean turns and success rate."""
    rets = np.array([r.ret for r in results], dtype=float)
    n = len(rets)
    half = 1.96 * rets.std(ddof=1) / math.sqrt(n) if n > 1 else float("nan")
    succ = [r.success for r in results if r.success is not None]
    return {
        "episodes": n,
        "mean": float(rets.mean()) if n else float("nan"),
        "ci95": float(half),
        "turns": float(np.mean([r.turns for r in results])) if n else float("nan"),
        "success": float(np.mean(succ)) if succ else float("nan"),
    }
