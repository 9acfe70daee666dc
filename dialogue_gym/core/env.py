"""``DialogueEnv``: the Gymnasium contract shared by every task.

A task subclasses it and fills in three hooks: ``sample_persona`` (the hidden persona, drawn
from ``self.np_random``), ``role_instructions`` (what the agent is told, no hidden facts) and
``make_scripted_human``. The base class owns the spaces, input validation, the turn loop,
the transcript in chat-message form, rewards (outcome at the end, an optional per-turn cost)
and rendering.

Rewards: every step pays ``-turn_cost`` (from the card's ``reward.turn_cost``, 0 by default);
the step that ends the episode also pays the outcome's reward. The outcome is scored on every
ending, truncation by the turn limit included, so returns compare across agents.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from dialogue_gym.core.cards import load_card
from dialogue_gym.core.human import HumanReply, Outcome, Question, SimulatedHuman
from dialogue_gym.core.spaces import FreeText

SPLITS = {"train": range(0, 8), "dev": range(8, 9), "test": range(9, 10)}


# What json.dumps(body, sort_keys=True, default=str) builds on every call, built once.
_ID_JSON = json.JSONEncoder(sort_keys=True, default=str)
# The C encoder that _ID_JSON.encode makes anew on every call (json.encoder.JSONEncoder.iterencode,
# with _ID_JSON's settings), made once; no circular-reference check, which a persona never needs.
# None where the json module has no C speedups.
_ID_CHUNKS = (
    None
    if c_make_encoder is None
    else c_make_encoder(None, str, encode_basestring_ascii, None, ": ", ", ", True, False, True)
)


def persona_id(persona: Mapping[str, Any]) -> str:
    """Stable id of a persona: a hash of its content (without any ``id`` field): the SHA-1 of
    ``json.dumps(persona, sort_keys=True, default=str)``, first 12 hex digits."""
    body = (
        persona
        if type(persona) is dict and "id" not in persona
        else {k: v for k, v in persona.items() if k != "id"}
    )
    text = _ID_JSON.encode(body) if _ID_CHUNKS is None else "".join(_ID_CHUNKS(body, 0))
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def persona_split(pid: str) -> str:
    """Which split (train 80%, dev 10%, test 10%) a persona id belongs to."""
    bucket = int(pid, 16) % 10
    return next(name for name, r in SPLITS.items() if bucket in r)


class DialogueEnv(gym.Env[str, str], ABC):
    """A goal-directed conversation with a simulated human. Observations and actions are text.

    Args:
        card: built-in card name, path to a YAML/JSON card, or a mapping.
        human: ``"scripted"`` (default), an LLM backend (``"litellm:<model>"``, ``"hf:<path>"``,
            ``"local"`` for the bundled SmolLM2, or a ``ChatBackend`` instance), or a
            :class:`SimulatedHuman` instance.
        human_kwargs: options for an LLM backend (``api_base``, ``temperature``, ``num_retries``,
            ``timeout``, ``cache``, extra model kwargs...).
        max_turns: agent turns before truncation (default: the card's ``max_turns``).
        max_action_chars: longest accepted utterance.
        persona_split: ``"train"``, ``"dev"`` or ``"test"`` to sample only personas whose id
            hashes into that split (held-out evaluation), or ``None`` for all.
        render_mode: ``"ansi"`` (returns the transcript) or ``"human"`` (prints it).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "human"], "render_fps": 1}
    card_name: ClassVar[str] = ""
    card_schema: ClassVar[dict[str, type]] = {}
    reference_agents: ClassVar[dict[str, type]] = {}
    max_obs_chars: ClassVar[int] = 4000

    def __init__(
        self,
        card: str | Mapping[str, Any] | None = None,
        human: str | SimulatedHuman = "scripted",
        human_kwargs: Mapping[str, Any] | None = None,
        max_turns: int | None = None,
        max_action_chars: int = 1000,
        persona_split: str | None = None,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        if persona_split is not None and persona_split not in SPLITS:
            raise ValueError(f"persona_split must be one of {list(SPLITS)} or None, got {persona_split!r}")
        self.card = load_card(card if card is not None else self.card_name, self.card_schema)
        self.validate_card(self.card)
        self.max_turns = int(max_turns if max_turns is not None else self.card.get("max_turns", 12))
        if self.max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, got {self.max_turns}")
        self.turn_cost = float(self.card.get("reward", {}).get("turn_cost", 0.0))
        self.persona_split = persona_split
        self.render_mode = render_mode
        self.observation_space = FreeText(self.max_obs_chars)
        self.action_space = FreeText(max_action_chars, min_length=1)
        self.human = self._build_human(human, dict(human_kwargs or {}))
        self.persona: dict[str, Any] = {}
        self.transcript: list[dict[str, str]] = []
        self.turn = 0
        self._seed: int | None = None
        self._persona_id: str | None = None
        self._done = True

    # --- hooks for tasks -------------------------------------------------------------------
    def validate_card(self, card: Mapping[str, Any]) -> None:
        """Check the card's content beyond top-level keys; raise ``TaskCardError`` naming the fault."""

    @abstractmethod
    def sample_persona(self, rng: np.random.Generator) -> dict[str, Any]:
        """Draw a hidden persona (JSON-able dict) using only ``rng``."""

    @abstractmethod
    def role_instructions(self, persona: Mapping[str, Any]) -> str:
        """What the agent is told at the start: its role and the public scenario, no hidden state."""

    @abstractmethod
    def make_scripted_human(self) -> SimulatedHuman:
        """The default scripted persona model for this task."""

    # --- hooks for LLM humans (dialogue_gym.humans) --------------------------------------
    closing_acts: ClassVar[tuple[str, ...]] = ("close",)

    def persona_brief(self, persona: Mapping[str, Any]) -> str:
        """The persona as instructions for an LLM: who they are, what they know, what they keep
        to themselves until asked, how they behave and when they end the conversation."""
        raise TypeError(f"{type(self).__name__} defines no persona_brief(), so it cannot use an LLM human")

    def opening_cue(self, persona: Mapping[str, Any]) -> str:
        """What the LLM human is told to do for its first message."""
        return "The chat starts now. Write your first message to the agent."

    def outcome_questions(self, persona: Mapping[str, Any]) -> list[Question]:
        """Questions put to the LLM human after the conversation to elicit the outcome."""
        raise TypeError(
            f"{type(self).__name__} defines no outcome_questions(), so it cannot use an LLM human"
        )

    def score_answers(
        self, persona: Mapping[str, Any], answers: Mapping[str, Any], transcript: list[dict[str, str]]
    ) -> Outcome:
        """The outcome from the LLM human's parsed answers (``None`` where an answer never parsed)."""
        raise TypeError(f"{type(self).__name__} defines no score_answers(), so it cannot use an LLM human")

    # --- Gymnasium API ---------------------------------------------------------------------
    def _build_human(self, human: str | SimulatedHuman, kwargs: dict[str, Any]) -> SimulatedHuman:
        if isinstance(human, SimulatedHuman):
            return human
        if human == "scripted" and not kwargs:
            return self.make_scripted_human()
        from dialogue_gym.humans import ChatBackend, make_human

        if not isinstance(human, (str, ChatBackend)):
            raise TypeError(
                f"human must be a backend name, a ChatBackend or a SimulatedHuman, got {type(human).__name__}"
            )
        return make_human(human, self, **kwargs)

    @property
    def env_name(self) -> str:
        """Env id plus the episode's seed, persona and turn, so an error names which env of a batch."""
        name = self.spec.id if self.spec is not None else type(self).__name__
        if not self.persona:
            return name
        return f"{name} (episode seed {self._seed}, persona {self.persona_id}, turn {self.turn})"

    @property
    def persona_id(self) -> str | None:
        """:func:`persona_id` of this episode's persona (None before the first reset), worked out
        when first asked: only splits, records and error messages need it, and hashing it on
        every reset cost a Teach or Counsel stepping loop about 4-6%."""
        if self._persona_id is None and self.persona:
            self._persona_id = persona_id(self.persona)
        return self._persona_id

    def _draw_persona(self) -> dict[str, Any]:
        if self.persona_split is None:
            return self.sample_persona(self.np_random)
        for _ in range(10_000):
            persona = self.sample_persona(self.np_random)
            self._persona_id = persona_id(persona)
            if persona_split(self._persona_id) == self.persona_split:
                return persona
        self._persona_id = None
        raise RuntimeError(f"{self.env_name}: no persona in split {self.persona_split!r} after 10,000 draws")

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Sample a persona (or take ``options["persona"]``) and return the human's opening."""
        super().reset(seed=seed)
        self._seed = seed
        options = options or {}
        self._persona_id = None
        persona = dict(options["persona"]) if "persona" in options else self._draw_persona()
        self.persona = persona
        self.turn = 0
        self._done = False
        opening = self._clip(self.human.reset(persona, self.np_random))
        instructions = self.role_instructions(persona)
        self.transcript = [
            {"role": "system", "content": instructions},
            {"role": "user", "content": opening},
        ]
        info = {"role_instructions": instructions, "transcript": list(self.transcript), "turn": 0}
        return opening, info

    def _validate(self, action: Any) -> str:
        if self._done:
            raise RuntimeError(f"{self.env_name}: step() called after the episode ended; call reset() first")
        if not isinstance(action, str):
            raise TypeError(
                f"{self.env_name}: the action must be a str (the agent's utterance), "
                f"got {type(action).__name__}"
            )
        if not action or action.isspace():
            raise ValueError(f"{self.env_name}: the action is empty; say something")
        limit = self.action_space.max_length
        if len(action) > limit:
            raise ValueError(
                f"{self.env_name}: the action has {len(action)} characters, over the limit of {limit}"
            )
        if "\x00" in action:
            raise ValueError(f"{self.env_name}: the action contains a NUL character")
        return action

    def _clip(self, text: str) -> str:
        return text if len(text) <= self.max_obs_chars else text[: self.max_obs_chars - 1] + "…"

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Say ``action`` to the human; return (reply, reward, terminated, truncated, info)."""
        utterance = self._validate(action)
        reply: HumanReply = self.human.respond(utterance)
        self.turn += 1
        text = self._clip(reply.text)
        self.transcript.append({"role": "assistant", "content": utterance})
        self.transcript.append({"role": "user", "content": text})
        terminated = bool(reply.ended) and reply.error is None
        truncated = not terminated and (self.turn >= self.max_turns or reply.error is not None)
        reward = -self.turn_cost if self.turn_cost else 0.0
        info: dict[str, Any] = {"turn": self.turn, "transcript": list(self.transcript), **reply.info}
        if reply.error is not None:
            info["error"] = reply.error
        if terminated or truncated:
            self._done = True
            outcome: Outcome = (
                self.human.outcome() if reply.error is None else Outcome(0.0, {"error": reply.error})
            )
            reward += float(outcome.reward)
            info.update(
                outcome=outcome.breakdown,
                outcome_reward=float(outcome.reward),
                success=outcome.success,
                end_reason=reply.end_reason if terminated else ("error" if reply.error else "turn_limit"),
                persona=self.persona,
            )
        if self.render_mode == "human":
            print(self.render_transcript(self.transcript[-2:]))
        return text, float(reward), terminated, truncated, info

    @staticmethod
    def render_transcript(messages: list[dict[str, str]]) -> str:
        """A readable transcript: ``Agent:`` and ``Human:`` lines (the system prompt shown first)."""
        names = {"system": "[role]", "assistant": "Agent", "user": "Human"}
        return "\n".join(f"{names[m['role']]}: {m['content']}" for m in messages)

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self.render_transcript(self.transcript)
        if self.render_mode == "human":
            print(self.render_transcript(self.transcript))
        return None
