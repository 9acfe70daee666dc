"""Hindsight regeneration: rewrite the agent turns that went wrong, then play the rest again.

After a conversation is over, its transcript shows things the agent could not know at the time:
the student turned out to be a novice, the traveller had a budget, the persuadee hates guilt
trips. Hindsight regeneration (Hong, Levine & Dragan, 2024) uses that to make better data:

1. **Critique.** A per-task :class:`Critic` reads the transcript, and only the transcript, and
   flags the agent turns that in hindsight should have been different (:class:`Flag`), together
   with the facts the conversation revealed anywhere (the ``facts`` of a :class:`Critique`).
2. **Rewrite.** A rewriter writes a better turn ``k`` using those facts: the critic's scripted
   rewriter, or an LLM (:class:`LLMRewriter`, validated, with a counted fallback).
3. **Regenerate.** The env is reset with the record's seed and persona (the forward model may
   know the persona: it is the simulator, not the hindsight step), the agent turns before ``k``
   are replayed, the rewritten turn is said, and a continuation policy (by default the critic's
   hindsight-informed agent) plays on until the episode ends. Rewards are the env's own.
4. **Output.** Each branch is a :class:`~dialogue_gym.datagen.records.Record` with
   ``parent = {"id", "turn", "critique", "kind"}``, generator ``"hindsight"`` and id
   ``"<source id>/h<k>"``; its messages before agent turn ``k`` are the source's, unchanged.

The hindsight step cannot peek: critics and rewriters are handed a :class:`Transcript` (a
read-only copy of the messages), never the record, and :meth:`Transcript.of` refuses a
``Record`` or a record dict outright. Real human dialogues (generator ``"human"``, e.g.
PersuasionForGood) have no simulator persona: the forward model draws one from a seed derived
from the record id, is warmed up on the real agent turns of the prefix, and the branch keeps the
real messages as its prefix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import gymnasium as gym

from dialogue_gym.agents.base import Agent, Messages
from dialogue_gym.core.cards import load_card
from dialogue_gym.core.text import looks_like_injection
from dialogue_gym.datagen.records import (
    ROLES,
    Record,
    RecordError,
    RecordWriter,
    provenance,
    read_records,
    record_from_episode,
)


class HindsightError(ValueError):
    """A record that hindsight regeneration cannot work on; the message names the record."""


# ----------------------------------------------------------------------------- the transcript
class Transcript(Sequence[Mapping[str, str]]):
    """A read-only copy of a conversation's chat messages: everything the hindsight step may see.

    Built from messages only. A :class:`Record` (or a record's dict) is refused, so no persona,
    outcome or reward can reach a critic or rewriter by accident.
    """

    __slots__ = ("_agent", "_messages")

    def __init__(self, messages: Iterable[Mapping[str, str]]) -> None:
        _refuse_records(messages)
        items = []
        for i, m in enumerate(messages):
            if (
                not isinstance(m, Mapping)
                or m.get("role") not in ROLES
                or not isinstance(m.get("content"), str)
            ):
                raise TypeError(
                    f"messages[{i}] must be {{'role': one of {ROLES}, 'content': str}}, got {m!r}"
                )
            items.append(MappingProxyType({"role": m["role"], "content": m["content"]}))
        self._messages: tuple[Mapping[str, str], ...] = tuple(items)
        self._agent = tuple(i for i, m in enumerate(items) if m["role"] == "assistant")

    @classmethod
    def of(cls, messages: Transcript | Iterable[Mapping[str, str]]) -> Transcript:
        """``messages`` as a transcript (a transcript is returned as is); refuses records."""
        return messages if isinstance(messages, Transcript) else cls(messages)

    def __getitem__(self, i: Any) -> Any:
        return self._messages[i]

    def __len__(self) -> int:
        return len(self._messages)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Transcript) and self.messages() == other.messages()

    def __hash__(self) -> int:
        return hash(tuple((m["role"], m["content"]) for m in self._messages))

    @property
    def system(self) -> str:
        """The agent's role instructions (the first system message), or ``""``."""
        return next((m["content"] for m in self._messages if m["role"] == "system"), "")

    @property
    def turns(self) -> int:
        """How many turns the agent took."""
        return len(self._agent)

    @property
    def agent_turns(self) -> list[str]:
        """The agent's utterances, oldest first."""
        return [self._messages[i]["content"] for i in self._agent]

    @property
    def replies(self) -> list[str | None]:
        """The human's reply to each agent turn (``None`` where the conversation stops first)."""
        out: list[str | None] = []
        for n, i in enumerate(self._agent):
            end = self._agent[n + 1] if n + 1 < len(self._agent) else len(self._messages)
            said = [m["content"] for m in self._messages[i + 1 : end] if m["role"] == "user"]
            out.append(" ".join(said) if said else None)
        return out

    @property
    def opening(self) -> str:
        """What the human said before the agent's first turn (``""`` when the agent spoke first)."""
        stop = self._agent[0] if self._agent else len(self._messages)
        return " ".join(m["content"] for m in self._messages[:stop] if m["role"] == "user")

    def index(self, k: int) -> int:  # type: ignore[override]
        """Position in the messages of agent turn ``k``."""
        if not 0 <= k < len(self._agent):
            raise IndexError(f"the transcript has {len(self._agent)} agent turns, no turn {k}")
        return self._agent[k]

    def before(self, k: int) -> list[dict[str, str]]:
        """Fresh copies of the messages before agent turn ``k``: what the agent saw when it spoke."""
        stop = self.index(k) if k < len(self._agent) else len(self._messages)
        return [dict(m) for m in self._messages[:stop]]

    def messages(self) -> list[dict[str, str]]:
        """Fresh copies of all the messages."""
        return [dict(m) for m in self._messages]

    def render(self, upto: int | None = None) -> str:
        """The conversation as numbered text (``Agent turn k:`` / ``Human:``), for prompts."""
        lines, k = [], 0
        for m in self._messages:
            if m["role"] == "system":
                continue
            if m["role"] == "assistant":
                if upto is not None and k > upto:
                    break
                lines.append(f"Agent turn {k}: {m['content']}")
                k += 1
            else:
                lines.append(f"Human: {m['content']}")
        return "\n".join(lines)


def _refuse_records(obj: Any) -> None:
    if isinstance(obj, Record) or hasattr(obj, "persona") or hasattr(obj, "rewards"):
        raise TypeError(
            f"the hindsight step sees only the transcript: pass record.messages, not a {type(obj).__name__}"
        )
    if isinstance(obj, (Mapping, str, bytes)):
        raise TypeError(
            "the hindsight step sees only the transcript: pass a list of messages, "
            f"not a {type(obj).__name__}"
        )


# ------------------------------------------------------------------------------ the critique
@dataclass(frozen=True)
class Flag:
    """An agent turn that should have been different, seen in hindsight."""

    turn: int  # agent turn index (0-based)
    kind: str  # short code, e.g. "jargon", "early_ask", "premature_advice"
    reason: str  # one sentence: what went wrong and what the transcript revealed


@dataclass(frozen=True)
class Critique:
    """The flagged turns (earliest first, at most one per turn) and the facts the transcript revealed."""

    flags: tuple[Flag, ...]
    facts: Mapping[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """The facts as one line, for prompts and reports."""
        return "; ".join(f"{k}: {v}" for k, v in self.facts.items() if v not in (None, [], {}, "")) or "none"


class Critic(ABC):
    """A task's hindsight critic and scripted rewriter.

    Subclasses implement :meth:`read` (the facts the whole transcript revealed), :meth:`find` (the
    flagged turns) and :meth:`agent` (an agent that plays well given those facts; it writes the
    rewritten turn and, by default, continues the regenerated conversation). All three receive a
    :class:`Transcript` only; the public methods build it, so a record can never get through.
    """

    card_name: ClassVar[str] = ""

    def __init__(self, card: str | Mapping[str, Any] | None = None) -> None:
        self.card = load_card(card if card is not None else self.card_name)

    def critique(self, messages: Transcript | Iterable[Mapping[str, str]]) -> Critique:
        """Flag the turns that went wrong in ``messages`` (a transcript or plain message list)."""
        t = Transcript.of(messages)
        facts = json.loads(json.dumps(self.read(t), default=list))  # JSON-able, and a fresh copy
        flags, seen = [], set()
        for f in sorted(self.find(t, facts), key=lambda f: f.turn):
            if f.turn not in seen and 0 <= f.turn < t.turns:
                seen.add(f.turn)
                flags.append(f)
        return Critique(tuple(flags), MappingProxyType(facts))

    def rewrite(
        self, messages: Transcript | Iterable[Mapping[str, str]], flag: Flag, critique: Critique | None = None
    ) -> str:
        """A better agent turn ``flag.turn``: the hindsight agent speaking at that point."""
        t = Transcript.of(messages)
        critique = critique if critique is not None else self.critique(t)
        return self.agent(critique.facts).act(t.before(flag.turn))

    @abstractmethod
    def read(self, t: Transcript) -> dict[str, Any]:
        """The facts the whole conversation revealed (JSON-able)."""

    @abstractmethod
    def find(self, t: Transcript, facts: Mapping[str, Any]) -> list[Flag]:
        """The agent turns that should have been different, with reasons."""

    @abstractmethod
    def agent(self, facts: Mapping[str, Any]) -> Agent:
        """A (non-privileged) agent that plays on using ``facts`` as well as the transcript."""


_CRITICS: dict[str, Callable[[Any], Critic]] = {}


def register_critic(key: str | type, factory: Callable[[Any], Critic]) -> None:
    """Register a critic factory (called with the env's card) for an env id or an env class.

    Built-in critics are registered by env class, so a custom task that reuses a built-in engine
    with a new card (``register_task(..., card)``) gets the engine's critic.
    """
    _CRITICS[key if isinstance(key, str) else f"{key.__module__}:{key.__qualname__}"] = factory


def critic_for(env_id: str) -> Critic:
    """The hindsight critic of ``env_id`` (by id, else by the env class or one of its bases)."""
    import dialogue_gym.datagen.critics  # noqa: F401  (registers the built-in critics)

    cls = _env_class(env_id)
    spec = gym.spec(env_id)
    card = spec.kwargs.get("card")
    keys = [env_id, *(f"{c.__module__}:{c.__qualname__}" for c in cls.__mro__)]
    for key in keys:
        if key in _CRITICS:
            return _CRITICS[key](card)
    raise HindsightError(
        f"no hindsight critic for {env_id}; register one with "
        "dialogue_gym.datagen.hindsight.register_critic(env_id, factory)"
    )


def _env_class(env_id: str) -> type:
    try:
        spec = gym.spec(env_id)
    except gym.error.Error:
        from dialogue_gym.registry import list_tasks

        known = ", ".join(t.env_id for t in list_tasks())
        raise HindsightError(
            f"env {env_id!r} is not registered (registered dialogue envs: {known})"
        ) from None
    cls = spec.entry_point
    return gym.envs.registration.load_env_creator(cls) if isinstance(cls, str) else cls


# ------------------------------------------------------------------------------- rewriters
class ScriptedRewriter:
    """The critic's own rewrite: its hindsight agent speaking at the flagged turn."""

    name = "scripted"
    model: str | None = None

    def rewrite(self, transcript: Transcript, flag: Flag, critique: Critique, critic: Critic) -> str | None:
        return critic.rewrite(transcript, flag, critique)


REWRITER_SYSTEM = (
    "You review a finished conversation in hindsight and improve one turn of the agent. You can see "
    "everything the other person revealed later in the conversation; use it. Answer with the new "
    "utterance only: what the agent should have said at that turn, one to three sentences, spoken "
    "directly to the other person. No quotes, no labels, no explanations."
)
_LABEL = re.compile(
    r"^\s*(?:agent(?: turn \d+)?|assistant|tutor|supporter|persuader|travel agent)\s*:\s*", re.I
)
_NEXT_SPEAKER = re.compile(r"\n\s*(?:human|user|agent|assistant)\b.*", re.I | re.S)
# Talk about the rewriting instead of to the person ("my previous response", "agent turn 2").
_META = re.compile(
    r"\b(?:my|previous|this|the) (?:response|reply|answer)\b|\brewrit\w*|\bagent turn\b|\butterance\b|"
    r"\btranscript\b|\bas an ai\b",
    re.I,
)


class LLMRewriter:
    """An LLM writes the replacement turn from the transcript and the critique.

    The answer is cleaned (labels, quotes, any invented next turns cut off) and validated: not
    empty, at most ``max_chars`` characters, not text aimed at the simulator (the act recognizer's
    injection check), not talk about the rewriting ("my previous response"), not the original turn.
    An invalid answer falls back to the critic's scripted rewrite (``on_invalid="fallback"``) or
    drops the branch (``"drop"``); both are counted.
    """

    def __init__(
        self,
        spec: str,
        *,
        max_chars: int = 600,
        max_tokens: int = 96,
        on_invalid: str = "fallback",
        **backend_kwargs: Any,
    ) -> None:
        if on_invalid not in ("fallback", "drop"):
            raise ValueError(f"on_invalid must be 'fallback' or 'drop', got {on_invalid!r}")
        self.spec, self.max_chars, self.max_tokens, self.on_invalid = spec, max_chars, max_tokens, on_invalid
        self.backend_kwargs = backend_kwargs
        self.name = f"llm:{spec}"
        self.model = spec
        self.invalid = 0  # answers rejected
        self.fallbacks = 0  # ... replaced by the scripted rewrite
        self.rejections: dict[str, int] = {}
        self._backend: Any = None

    @property
    def backend(self) -> Any:
        if self._backend is None:
            from dialogue_gym.humans import make_backend

            self._backend = make_backend(self.spec, **self.backend_kwargs)
        return self._backend

    def prompt(self, transcript: Transcript, flag: Flag, critique: Critique) -> list[dict[str, str]]:
        """The chat messages sent to the model."""
        task = (
            f"The agent's instructions:\n{transcript.system}\n\n"
            f"The conversation:\n{transcript.render()}\n\n"
            f"What went wrong at agent turn {flag.turn}: {flag.reason}\n"
            f"What the whole conversation revealed: {critique.summary()}\n\n"
            f"Write a better agent turn {flag.turn}, to replace: {transcript.agent_turns[flag.turn]}"
        )
        return [{"role": "system", "content": REWRITER_SYSTEM}, {"role": "user", "content": task}]

    def clean(self, text: str) -> str:
        """The utterance in a raw model answer: first line block, no label, no wrapping quotes."""
        text = _NEXT_SPEAKER.sub("", text.strip())
        text = _LABEL.sub("", text).strip()
        if len(text) >= 2 and text[0] in "\"'“" and text[-1] in "\"'”":
            text = text[1:-1].strip()
        return text

    def check(self, text: str, original: str) -> str | None:
        """Why ``text`` is not a usable turn (``None`` when it is)."""
        if not text.strip():
            return "empty"
        if len(text) > self.max_chars:
            return "too_long"
        if looks_like_injection(text):
            return "injection"
        if _META.search(text):
            return "meta"
        if " ".join(text.lower().split()) == " ".join(original.lower().split()):
            return "unchanged"
        return None

    def rewrite(self, transcript: Transcript, flag: Flag, critique: Critique, critic: Critic) -> str | None:
        answer = self.backend.complete(self.prompt(transcript, flag, critique), max_tokens=self.max_tokens)
        text = self.clean(answer.text)
        fault = self.check(text, transcript.agent_turns[flag.turn])
        if fault is None:
            return text
        self.invalid += 1
        self.rejections[fault] = self.rejections.get(fault, 0) + 1
        if self.on_invalid == "drop":
            return None
        self.fallbacks += 1
        return critic.rewrite(transcript, flag, critique)


def make_rewriter(rewriter: str | Any) -> Any:
    """A rewriter: ``"scripted"``, an LLM spec (``"local"``, ``"litellm:<model>"``, ``"hf:<path>"``) or an
    instance."""
    if not isinstance(rewriter, str):
        if not hasattr(rewriter, "rewrite"):
            raise TypeError(f"a rewriter needs a rewrite() method, got {type(rewriter).__name__}")
        return rewriter
    if rewriter == "scripted":
        return ScriptedRewriter()
    if rewriter == "local" or rewriter.partition(":")[0] in ("litellm", "hf"):
        return LLMRewriter(rewriter)
    raise ValueError(
        f"unknown rewriter {rewriter!r}: use 'scripted', 'local', 'litellm:<model>' or 'hf:<path>'"
    )


# ------------------------------------------------------------------------------ regeneration
@dataclass
class HindsightStats:
    """Counts of a hindsight run (printed by the CLI)."""

    sources: int = 0  # input records
    flagged: int = 0  # ... with at least one flagged turn
    branches: int = 0  # branches made
    unchanged: int = 0  # rewrites identical to the original turn: no branch
    dropped: int = 0  # LLM rewrites rejected with on_invalid="drop": no branch
    prefix_mismatch: int = 0  # branches whose replayed prefix drew other human replies (record text kept)
    simulated: int = 0  # branches of real human chats (the simulator warmed up on the real prefix)
    prefix_ended: int = 0  # the replayed prefix ended the episode before the flagged turn: no branch
    skipped_done: int = 0  # sources already complete in the output file (resumed run)
    not_branched: int = 0  # inputs that are branches themselves: copied, not branched again

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def simulator_seed(record_id: str) -> int:
    """The forward model's seed for a record without one (real human data): a hash of its id."""
    return int(hashlib.sha1(record_id.encode()).hexdigest()[:8], 16)


def as_action(text: str, limit: int) -> str:
    """A recorded utterance as a valid env action: NULs removed, clipped to ``limit`` characters
    at a word boundary, ``"..."`` for an empty one."""
    text = text.replace("\x00", " ").strip()
    if len(text) > limit:
        cut = text[: limit - 1].rsplit(" ", 1)[0] or text[: limit - 1]
        text = cut + "…"
    return text or "..."


@dataclass
class _Run:
    """An env played along a record: its seed, how the episode was rebuilt, the rewards so far."""

    env: gym.Env
    info: dict[str, Any]
    seed: int | None
    mode: str  # "seed": the record's own episode; "persona": its persona, other draws; "simulated"
    rewards: list[float] = field(default_factory=list)
    mismatches: int = 0
    done: bool = False


class Hindsight:
    """Critique, rewrite and regenerate records (the engine behind ``dialogue-gym hindsight``).

    Args:
        rewriter: ``"scripted"`` (the critic's rewriter), an LLM spec (``"local"``,
            ``"litellm:<model>"``, ``"hf:<path>"``) or an object with ``rewrite(transcript, flag,
            critique, critic) -> str | None`` and a ``name``.
        continuation: who plays the agent after the rewritten turn: ``"hindsight"`` (the critic's
            hindsight-informed agent), a reference level (``"naive"``, ``"competent"``) or any
            non-privileged :class:`Agent`.
        max_branches: branches per record at most (one per flagged turn, earliest first).
        human: the forward model (the env's ``human=``): ``"scripted"`` or an LLM backend spec.
        max_turns: the envs' turn limit (default: each card's). A branch of a real human chat gets
            the longer of this and the chat's own length; the replay of a real chat ends with it.
    """

    def __init__(
        self,
        *,
        rewriter: str | Any = "scripted",
        continuation: str | Agent = "hindsight",
        max_branches: int = 2,
        human: str = "scripted",
        max_turns: int | None = None,
    ) -> None:
        if max_branches < 1:
            raise ValueError(f"max_branches must be at least 1, got {max_branches}")
        if isinstance(continuation, Agent) and continuation.privileged:
            raise ValueError(
                f"the continuation agent {continuation.name!r} is privileged (reads the persona)"
            )
        if isinstance(continuation, str) and continuation not in ("hindsight", "naive", "competent"):
            raise ValueError(
                f"continuation must be 'hindsight', 'naive', 'competent' or an Agent, got {continuation!r}"
            )
        self.rewriter = make_rewriter(rewriter)
        self.continuation = continuation
        self.max_branches = max_branches
        self.human = human
        self.max_turns = max_turns
        self.stats = HindsightStats()
        self._envs: dict[str, gym.Env] = {}
        self._critics: dict[str, Critic] = {}

    # -- pieces --------------------------------------------------------------------------
    def critic(self, env_id: str) -> Critic:
        if env_id not in self._critics:
            self._critics[env_id] = critic_for(env_id)
        return self._critics[env_id]

    def env(self, env_id: str) -> gym.Env:
        if env_id not in self._envs:
            _env_class(env_id)  # a clear error for an unregistered id
            kwargs = {} if self.max_turns is None else {"max_turns": self.max_turns}
            self._envs[env_id] = gym.make(env_id, human=self.human, **kwargs)
        return self._envs[env_id]

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()

    def critique(self, record: Record) -> Critique:
        """The critic's verdict on ``record``: it is handed the messages only."""
        return self.critic(record.env_id).critique(Transcript(record.messages))

    def branch_ids(self, record: Record, critique: Critique) -> list[tuple[str, Flag]]:
        """The ids (and flags) of the branches ``record`` gets."""
        return [(f"{record.id}/h{f.turn}", f) for f in critique.flags[: self.max_branches]]

    # -- playing along a record ------------------------------------------------------------
    def _start(self, record: Record, budget: int | None = None) -> _Run:
        env = self.env(record.env_id)
        base = env.unwrapped
        default = int(self.max_turns if self.max_turns is not None else base.card.get("max_turns", 12))
        human_data = record.provenance.get("generator") == "human"
        if budget is None:  # a real chat may be longer than the task's budget: a branch gets as long
            budget = max(record.turns, default) if human_data else default
        base.max_turns = budget
        if human_data:
            seed = simulator_seed(record.id)
            _, info = env.reset(seed=seed)
            return _Run(env, info, seed, "simulated")
        seed = record.provenance.get("seed")
        if seed is not None:
            split = base.persona_split
            for trial in (None, record.split):
                base.persona_split = trial
                try:
                    _, info = env.reset(seed=int(seed))
                finally:
                    base.persona_split = split
                if base.persona_id == record.persona_id:
                    return _Run(env, info, int(seed), "seed")
        if record.persona:
            seed = int(seed) if seed is not None else simulator_seed(record.id)
            _, info = env.reset(seed=seed, options={"persona": record.persona})
            return _Run(env, info, seed, "persona")
        raise HindsightError(
            f"record {record.id}: cannot rebuild its episode (seed {seed} does not draw persona "
            f"{record.persona_id} and the record stores no persona)"
        )

    def _step(self, run: _Run, text: str) -> tuple[str, bool]:
        obs, reward, terminated, truncated, run.info = run.env.step(text)
        run.rewards.append(float(reward))
        run.done = bool(terminated or truncated)
        return obs, run.done

    def replay(self, record: Record, turns: int | None = None, budget: int | None = None) -> _Run:
        """The env played along ``record``'s first ``turns`` agent turns (all by default), with a
        turn limit of ``budget`` (default: the task's, or for real chats the longer of the task's
        and the chat's own).

        Human replies that differ from the record's are counted in ``mismatches``; recorded agent
        turns are clipped to the env's action limit first (real data may exceed it).
        """
        run = self._start(record, budget)
        t = Transcript(record.messages)
        limit = run.env.unwrapped.action_space.max_length
        replies = t.replies
        for j, text in enumerate(t.agent_turns[: t.turns if turns is None else turns]):
            if run.done:
                break
            obs, _ = self._step(run, as_action(text, limit))
            if replies[j] is not None and obs != replies[j]:
                run.mismatches += 1
        return run

    def replay_return(self, record: Record) -> tuple[float, dict[str, Any]]:
        """The env's return for ``record``'s agent turns replayed in full, and the final ``info``.

        For real human records this is the simulator's verdict on the real conversation (its
        turn budget is the record's own length, so the last turn ends the episode).
        """
        human_data = record.provenance.get("generator") == "human"
        run = self.replay(record, budget=record.turns if human_data else None)
        if not run.done:
            raise HindsightError(f"record {record.id}: its agent turns did not end the episode when replayed")
        return float(sum(run.rewards)), run.info

    # -- branches --------------------------------------------------------------------------
    def continuation_agent(self, record: Record, critique: Critique) -> Agent:
        if isinstance(self.continuation, Agent):
            return self.continuation
        if self.continuation == "hindsight":
            return self.critic(record.env_id).agent(critique.facts)
        from dialogue_gym.evaluation import reference_agent

        return reference_agent(record.env_id, self.continuation)

    def branch(
        self, record: Record, flag: Flag, critique: Critique, source_sim_return: float | None = None
    ) -> Record | None:
        """One regenerated branch of ``record`` at ``flag.turn`` (``None`` when there is none).

        ``source_sim_return`` (real human records): the simulator's return for the original chat,
        stored in the branch's provenance as the fair baseline (the record's own return is real).
        """
        t = Transcript(record.messages)
        critic = self.critic(record.env_id)
        text = self.rewriter.rewrite(t, flag, critique, critic)
        if text is None:
            self.stats.dropped += 1
            return None
        if " ".join(text.split()) == " ".join(t.agent_turns[flag.turn].split()):
            self.stats.unchanged += 1
            return None
        run = self.replay(record, flag.turn)
        if run.done:
            self.stats.prefix_ended += 1
            return None
        if run.mode == "simulated":
            self.stats.simulated += 1
        elif run.mismatches:
            self.stats.prefix_mismatch += 1
        agent = self.continuation_agent(record, critique)
        messages = t.before(flag.turn)
        while True:
            obs, done = self._step(run, text)
            messages += [{"role": "assistant", "content": text}, {"role": "user", "content": obs}]
            if done:
                break
            text = agent.act(messages)
        prov = provenance(
            "hindsight",
            strategy=self.rewriter.name,
            seed=run.seed,
            model=getattr(self.rewriter, "model", None),
            human=self.human,
            source_generator=record.provenance.get("generator"),
            source_strategy=record.provenance.get("strategy"),
            continuation=agent.name,
            replay=run.mode,
            prefix_mismatches=run.mismatches,
            **({} if source_sim_return is None else {"source_sim_return": source_sim_return}),
        )
        parent = {"id": record.id, "turn": flag.turn, "critique": flag.reason, "kind": flag.kind}
        out = record_from_episode(
            f"{record.id}/h{flag.turn}", record.env_id, messages, run.rewards, run.info, prov, parent
        )
        # the branch belongs to the source's person: same persona id, same split
        return dataclasses.replace(out, persona_id=record.persona_id, split=record.split)

    def branches(
        self, record: Record, skip: Container[str] = (), critique: Critique | None = None
    ) -> list[Record]:
        """The regenerated branches of ``record`` (ids in ``skip`` are not made again)."""
        self.stats.sources += 1
        if record.parent is not None:
            self.stats.not_branched += 1
            return []
        critique = critique if critique is not None else self.critique(record)
        if critique.flags:
            self.stats.flagged += 1
        out = []
        todo = [(bid, flag) for bid, flag in self.branch_ids(record, critique) if bid not in skip]
        sim = None
        if todo and record.provenance.get("generator") == "human":
            sim = self.replay_return(record)[0]
        for _, flag in todo:
            b = self.branch(record, flag, critique, sim)
            if b is not None:
                self.stats.branches += 1
                out.append(b)
        return out

    def run(self, records: Iterable[Record], *, keep_sources: bool = True) -> Iterator[Record]:
        """Each source record (if ``keep_sources``) followed by its branches."""
        for record in records:
            if keep_sources:
                yield record
            yield from self.branches(record)


def hindsight_records(records: Iterable[Record], **kwargs: Any) -> list[Record]:
    """Sources and their branches, in memory (``kwargs`` as for :class:`Hindsight`)."""
    keep = kwargs.pop("keep_sources", True)
    engine = Hindsight(**kwargs)
    try:
        return list(engine.run(records, keep_sources=keep))
    finally:
        engine.close()


def run_hindsight(
    inputs: str | Path | Iterable[str | Path] | Iterable[Record],
    out: str | Path,
    *,
    keep_sources: bool = True,
    limit: int | None = None,
    progress: bool = True,
    **kwargs: Any,
) -> HindsightStats:
    """Hindsight over JSONL files (or records) into ``out``, appending and resumable.

    A rerun skips the sources whose record and branches are all in ``out`` already (a crash
    loses at most the branch being made). ``kwargs`` as for :class:`Hindsight`.
    """
    from tqdm.auto import tqdm

    records = _iter_inputs(inputs)
    engine = Hindsight(**kwargs)
    try:
        with RecordWriter(out) as writer:
            for n, record in enumerate(tqdm(records, desc="hindsight", unit="rec", disable=not progress)):
                if limit is not None and n >= limit:
                    break
                critique = None if record.parent is not None else engine.critique(record)
                expected = [record.id] * keep_sources
                if critique is not None:
                    expected += [bid for bid, _ in engine.branch_ids(record, critique)]
                if expected and all(i in writer for i in expected):
                    engine.stats.sources += 1
                    engine.stats.skipped_done += 1
                    continue
                if keep_sources and record.id not in writer:
                    writer.write(record)
                for b in engine.branches(record, skip=writer, critique=critique):
                    writer.write(b)
    finally:
        engine.close()
    return engine.stats


def _iter_inputs(inputs: Any) -> Iterator[Record]:
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    for item in inputs:
        if isinstance(item, Record):
            yield item
        elif isinstance(item, (str, Path)):
            yield from read_records(item)
        else:
            raise RecordError(f"hindsight input must be a JSONL path or a Record, got {type(item).__name__}")


# --------------------------------------------------------------- source mixtures (tests, benchmarks)
class NoisyAgent(Agent):
    """Plays ``good`` but, with probability ``p`` per turn, says what ``bad`` would say.

    The coin is a hash of the seed and the conversation so far, so the agent stays stateless and
    an episode is reproducible.
    """

    def __init__(self, good: Agent, bad: Agent, p: float, seed: int = 0) -> None:
        self.good, self.bad, self.p, self.seed = good, bad, p, seed
        self.name = f"noisy{round(100 * p)}({good.name},{bad.name})"

    def act(self, messages: Messages, persona: Mapping[str, Any] | None = None) -> str:
        text = f"{self.seed}|" + "|".join(m["content"] for m in messages)
        coin = int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) / 16**8
        return (self.bad if coin < self.p else self.good).act(messages, persona)


def mixture_agents(env_id: str) -> list[tuple[str, Agent]]:
    """A suboptimal mixture of source agents: naive, competent, and competent with naive turns mixed in."""
    from dialogue_gym.evaluation import reference_agent

    naive, good = reference_agent(env_id, "naive"), reference_agent(env_id, "competent")
    return [
        ("naive", naive),
        ("competent", good),
        ("noisy30", NoisyAgent(good, naive, 0.3, seed=1)),
        ("noisy60", NoisyAgent(good, naive, 0.6, seed=2)),
    ]


def play_record(
    env: gym.Env, agent: Agent, seed: int, record_id: str, strategy: str, env_id: str | None = None
) -> Record:
    """Play one scripted episode of ``agent`` from ``seed`` into a :class:`Record`."""
    _, info = env.reset(seed=seed)
    rewards, done = [], False
    while not done:
        _, reward, terminated, truncated, info = env.step(agent.act(info["transcript"]))
        rewards.append(float(reward))
        done = terminated or truncated
    env_id = env_id or env.spec.id
    prov = provenance("scripted", strategy=strategy, seed=seed)
    return record_from_episode(record_id, env_id, info["transcript"], rewards, info, prov)


def mixture_records(env_id: str, n: int, seed: int = 0) -> list[Record]:
    """``n`` source records of :func:`mixture_agents` (round robin), seeds ``seed .. seed+n-1``."""
    agents = mixture_agents(env_id)
    env = gym.make(env_id)
    out = []
    try:
        for i in range(n):
            name, agent = agents[i % len(agents)]
            out.append(play_record(env, agent, seed + i, f"{env_id}-{name}-{seed + i}", name, env_id))
    finally:
        env.close()
    return out


def paired_gain(pairs: Sequence[tuple[float, float]]) -> dict[str, float]:
    """Mean source and branch return, mean difference with a 95% normal interval, share improved."""
    n = len(pairs)
    if n == 0:
        return {
            "n": 0,
            "source": math.nan,
            "branch": math.nan,
            "diff": math.nan,
            "ci95": math.nan,
            "improved": math.nan,
        }
    diffs = [b - s for s, b in pairs]
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else math.nan
    return {
        "n": n,
        "source": sum(s for s, _ in pairs) / n,
        "branch": sum(b for _, b in pairs) / n,
        "diff": mean,
        "ci95": 1.96 * sd / math.sqrt(n) if n > 1 else math.nan,
        "improved": sum(d > 1e-9 for d in diffs) / n,
    }
