"""The simulated-human interface that every backend (scripted, LLM, yours) implements.

The env owns the turn loop, the spaces and the transcript; the human owns the hidden state
and decides the outcome. The env samples the persona (through its ``np_random``) and hands it
to the human, so that different backends can play the *same* persona on the same seed.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class HumanReply:
    """One turn of the human: the text, whether they end the conversation, and why."""

    text: str
    ended: bool = False
    end_reason: str | None = None  # "agent_closed", "human_left", "goal_reached"
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # a backend failure: the env ends the episode as truncated


@dataclass
class Outcome:
    """The scored result of a whole conversation. ``reward`` is the task reward for it."""

    reward: float
    breakdown: dict[str, Any] = field(default_factory=dict)
    success: bool | None = None


_NUMBER = re.compile(r"(?<![\w.])[-+]?\$?(\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class Question:
    """A question put to the human after the conversation, with a strict answer format.

    Either ``choices`` (the answer must name exactly one of these labels, e.g. ``("A", "B")``)
    or a number in ``[low, high]``. :meth:`parse` returns ``None`` for anything else, so the
    caller can ask again.
    """

    key: str
    text: str
    choices: tuple[str, ...] = ()
    low: float = 0.0
    high: float = 1.0

    @property
    def instructions(self) -> str:
        """The answer-format line appended to the question."""
        if self.choices:
            return f"Answer with exactly one of: {', '.join(self.choices)}. Nothing else."
        return f"Answer with a single number from {self.low:g} to {self.high:g}. Nothing else."

    def parse(self, raw: str) -> str | float | None:
        """The answer in ``raw``, or ``None`` if it is not exactly one valid answer."""
        text = raw.strip()
        if self.choices:
            found = {c for c in self.choices if re.search(rf"(?<![\w]){re.escape(c)}(?![\w])", text)}
            return found.pop() if len(found) == 1 else None
        nums = _NUMBER.findall(text)
        if len(set(nums)) != 1:
            return None
        value = float(nums[0])
        return value if self.low <= value <= self.high else None


class SimulatedHuman(ABC):
    """The other side of the conversation.

    Lifecycle per episode: ``reset(persona, rng)`` returns the human's opening message;
    ``respond(utterance)`` is called once per agent turn; ``outcome()`` is called once when the
    episode ends (closed, left or truncated). ``rng`` is the env's ``np_random``: every random
    choice must come from it so that a seed fixes the episode.
    """

    @abstractmethod
    def reset(self, persona: Mapping[str, Any], rng: np.random.Generator) -> str:
        """Start a conversation as ``persona``; return the opening message."""

    @abstractmethod
    def respond(self, utterance: str) -> HumanReply:
        """Read the agent's (untrusted) utterance and reply."""

    @abstractmethod
    def outcome(self) -> Outcome:
        """Decide the outcome of the conversation so far (called at the episode's end)."""
