"""Shared machinery of the scripted persona models (one subclass per task).

A scripted human reads each agent utterance only through :class:`ActRecognizer` (so stuffing,
gibberish, repeats and injected commands earn nothing), keeps hidden state that the task's
subclass updates in ``react``, and realises replies from the card's template variants with the
env's random generator.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np

from dialogue_gym.core.human import HumanReply, Outcome, SimulatedHuman
from dialogue_gym.core.rng import IntDraws
from dialogue_gym.core.text import ActRecognizer, Analysis


def recognizer_from_card(card: Mapping[str, Any], vocabulary: list[str] | None = None) -> ActRecognizer:
    """Build the act recognizer from a card's ``acts: {name: {cues: [...]}}`` and ``recognizer``
    settings."""
    lexicon = {name: spec["cues"] for name, spec in card["acts"].items()}
    return ActRecognizer(lexicon, vocabulary=vocabulary or [], **card.get("recognizer", {}))


class ScriptedHuman(SimulatedHuman):
    """Base of the task-specific scripted humans.

    Subclasses implement ``start()`` (opening line; set up hidden state from ``self.persona``),
    ``react(utterance, analysis)`` (update state, return a :class:`HumanReply`) and ``outcome()``.
    """

    def __init__(
        self,
        card: Mapping[str, Any],
        vocabulary: list[str] | None = None,
        recognizer: ActRecognizer | None = None,
    ) -> None:
        """``recognizer``: a prebuilt one (e.g. cached per card) instead of compiling the card's lexicon."""
        self.card = card
        self.recognizer = recognizer or recognizer_from_card(card, vocabulary)
        self.templates: Mapping[str, list[str]] = card["replies"]
        self.persona: Mapping[str, Any] = {}
        self.rng = np.random.default_rng(0)
        self.history: list[str] = []
        self.turn = 0

    @property
    def rng(self) -> np.random.Generator:
        """The env's generator for this episode; ``self.below(n)`` draws ``int(self.rng.integers(n))``."""
        return self._rng

    @rng.setter
    def rng(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self.below = IntDraws(rng)

    def reset(self, persona: Mapping[str, Any], rng: np.random.Generator) -> str:
        self.persona = persona
        self.rng = rng
        self.history = []
        self.turn = 0
        return self.start()

    def respond(self, utterance: str) -> HumanReply:
        analysis = self.recognizer.analyse(utterance, self.history)
        self.history.append(utterance)
        self.turn += 1
        reply = self.react(utterance, analysis)
        reply.info.setdefault("acts", analysis.acts)
        reply.info.setdefault("flags", analysis.flags)
        return reply

    def say(self, key: str, **slots: Any) -> str:
        """One of the card's template variants for ``key``, chosen by the env's rng, filled with ``slots``."""
        variants = self.templates[key]
        text = variants[self.below(len(variants))]
        # str.format() of a text without braces is the text: skip its call (most replies are fixed)
        return text.format(**slots) if "{" in text or "}" in text else text

    @abstractmethod
    def start(self) -> str:
        """Initialise hidden state from ``self.persona``; return the opening message."""

    @abstractmethod
    def react(self, utterance: str, analysis: Analysis) -> HumanReply:
        """Update hidden state for one agent turn and reply."""

    @abstractmethod
    def outcome(self) -> Outcome:
        """Score the conversation from the hidden state."""
