"""The agent interface: an utterance for a conversation so far.

An agent sees the conversation as chat messages (``system`` = its role instructions, ``user``
= the human, ``assistant`` = itself), which is exactly ``info["transcript"]`` from the env.
Because the whole history is passed in, an agent needs no hidden per-episode state, and the
batched form for vector envs is a plain map. Privileged agents (oracles) also receive the
hidden persona; evaluation passes it only to agents with ``privileged = True``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Messages = Sequence[Mapping[str, str]]


@dataclass
class AgentReply:
    """One agent utterance with the accounting of the model call behind it. Agents that call a
    model offer ``respond_batch(batch, personas) -> list[AgentReply]`` beside ``act_batch``, and
    the leaderboard records their tokens and cost from it."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    fallback: bool = False


class Agent(ABC):
    """Produces the next agent utterance for a conversation."""

    name: str = "agent"
    privileged: bool = False

    @abstractmethod
    def act(self, messages: Messages, persona: Mapping[str, Any] | None = None) -> str:
        """The next utterance given the transcript so far (and, for oracles, the persona)."""

    def act_batch(
        self, batch: Sequence[Messages], personas: Sequence[Mapping[str, Any] | None] | None = None
    ) -> list[str]:
        """Utterances for many conversations at once (override to batch model calls)."""
        personas = personas if personas is not None else [None] * len(batch)
        return [self.act(m, p) for m, p in zip(batch, personas, strict=True)]


def agent_turns(messages: Messages) -> int:
    """How many turns the agent has taken in ``messages``."""
    return sum(m["role"] == "assistant" for m in messages)


def human_turns(messages: Messages) -> list[str]:
    """The human's messages, oldest first."""
    return [m["content"] for m in messages if m["role"] == "user"]
