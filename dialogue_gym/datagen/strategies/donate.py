"""Donate strategies: persuaders from poor to good.

Their lines are PersuasionForGood strategies in the task's own wording (``LINES``, extended with
more phrasings); the attentive persuader reads what moves the persuadee with the task's own
``STYLE_HINTS``. They differ in how they persuade:

* ``pushy``: asks for money almost at once and keeps asking.
* ``logic_only``: facts, numbers and how the donation works, whoever the persuadee is.
* ``emotion_only``: suffering children and personal stories, whoever the persuadee is.
* ``rapport_then_ask``: friendly small talk and questions, then an ask with no case made.
* ``attentive``: rapport, a personal question, then the appeals the answers point to, one polite
  ask and a close (the competent reference agent's approach).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from dialogue_gym.agents.base import Messages, agent_turns, human_turns
from dialogue_gym.datagen.strategies import Strategy, pick, pick_new
from dialogue_gym.tasks.donate import ACTS, LINES, SAFE_APPEALS, STYLE_HINTS

MORE: dict[str, tuple[str, ...]] = {
    "greeting": ("Hi! How is your day going?", "Hello there, nice to meet you."),
    "personal_inquiry": ("Do you have kids of your own?", "Where are you from, if you don't mind me asking?"),
    "logical_appeal": ("The statistics are striking: a small amount goes a long way for a child's health.",),
    "emotion_appeal": ("Children are suffering from hunger right now, and it breaks my heart.",),
    "donation_ask": (
        "Could you donate a little of your payment today?",
        "Please consider giving part of your $2.",
    ),
    "close": ("Thanks for talking with me, take care!",),
}
PHRASES: dict[str, tuple[str, ...]] = {act: (*LINES[act], *MORE.get(act, ())) for act in LINES}


class DonateStrategy(Strategy):
    """A persuader: noise moves are any act but closing, in the task's wording."""

    noise_acts: ClassVar[tuple[str, ...]] = tuple(a for a in ACTS if a != "close")

    def say(self, act: str, messages: Messages) -> str:
        """A phrasing of ``act`` not used yet in this chat (a reused one once all are used)."""
        return pick_new(self.rng, PHRASES[act], messages)

    def realise(self, act: str, messages: Messages) -> str:
        return self.say(act, messages)

    def script(self, steps: list[str], messages: Messages) -> str:
        """Say the ``t``-th step of a plan (the last step, the close, repeats once the plan is done)."""
        return self.say(steps[min(agent_turns(messages), len(steps) - 1)], messages)


class Pushy(DonateStrategy):
    """Asks for the money almost at once, then asks again."""

    name = "pushy"
    level = "poor"
    description = (
        "A pushy persuader who asks for a donation almost immediately, before any rapport or reasons, "
        "and keeps asking again when the person hesitates."
    )

    def __init__(self, rng: np.random.Generator, epsilon: float = 0.0) -> None:
        super().__init__(rng, epsilon)
        opener = ["greeting"] if rng.random() < 0.5 else []
        asks = ["donation_ask"] * (2 + int(rng.random() * 2))
        if rng.random() < 0.5:
            asks.insert(1, "foot_in_the_door")
        self.steps = [*opener, *asks, "close"]

    def move(self, messages: Messages) -> str:
        return self.script(self.steps, messages)


class OneNote(DonateStrategy):
    """A fixed kind of appeal for everyone: greeting, two to four appeals of one kind, ask, close."""

    appeals: ClassVar[tuple[str, ...]] = ()

    def __init__(self, rng: np.random.Generator, epsilon: float = 0.0) -> None:
        super().__init__(rng, epsilon)
        n = 2 + int(rng.random() * 3)
        self.steps = ["greeting", *(pick(rng, self.appeals) for _ in range(n)), "donation_ask", "close"]

    def move(self, messages: Messages) -> str:
        return self.script(self.steps, messages)


class LogicOnly(OneNote):
    name = "logic_only"
    level = "mixed"
    appeals = ("logical_appeal", "donation_information", "credibility_appeal")
    description = (
        "A persuader who only argues with facts: evidence, numbers, the charity's track record and how "
        "the donation works, whoever the person is; then one ask and goodbye."
    )


class EmotionOnly(OneNote):
    name = "emotion_only"
    level = "mixed"
    appeals = ("emotion_appeal", "personal_story", "emotion_appeal")
    description = (
        "A persuader who only appeals to feelings: suffering children and personal stories, whoever "
        "the person is; then one ask and goodbye."
    )


class RapportThenAsk(DonateStrategy):
    """Friendly questions about the person, their giving and the charity, then an ask with no case made."""

    name = "rapport_then_ask"
    level = "mixed"
    description = (
        "A friendly persuader who chats and asks about the person, whether they give to charity and "
        "what they know of the charity, then asks for a donation without making any case for it."
    )

    def __init__(self, rng: np.random.Generator, epsilon: float = 0.0) -> None:
        super().__init__(rng, epsilon)
        inquiries = ["personal_inquiry", "task_inquiry", "source_inquiry"]
        order = rng.permutation(3)
        self.steps = [
            "greeting",
            *(inquiries[i] for i in order[: 2 + int(rng.random() * 2)]),
            "donation_ask",
            "close",
        ]

    def move(self, messages: Messages) -> str:
        return self.script(self.steps, messages)


class Attentive(DonateStrategy):
    """Rapport, a personal question, the appeals the answer points to, one polite ask, close."""

    name = "attentive"
    level = "good"
    description = (
        "A good persuader: greets, asks about the person and whether they know the charity, picks the "
        "arguments that fit what they said (stories for parents, numbers for analytical people, the "
        "track record for sceptics, small amounts for people on a budget), asks once politely, and closes."
    )

    def __init__(self, rng: np.random.Generator, epsilon: float = 0.0) -> None:
        super().__init__(rng, epsilon)
        self.source = rng.random() < 0.7  # also asks what they know of the charity
        self.appeals = 2 + int(rng.random() * 2)

    def move(self, messages: Messages) -> str:
        t = agent_turns(messages)
        opening = ["greeting", "personal_inquiry", *(["source_inquiry"] if self.source else [])]
        if t < len(opening):
            return self.say(opening[t], messages)
        replies = human_turns(messages)[1:]
        about_self = replies[1] if len(replies) > 1 else ""
        fits = next((f for pattern, f in STYLE_HINTS if pattern.search(about_self)), SAFE_APPEALS)
        if self.source and len(replies) > 2 and STYLE_HINTS[2][0].search(replies[2]):
            fits = ("credibility_appeal", *(a for a in fits if a != "credibility_appeal"))
        plan = [fits[i % len(fits)] for i in range(self.appeals)]
        steps = [*plan, "donation_ask", "close"]
        return self.say(steps[min(t - len(opening), len(steps) - 1)], messages)


STRATEGIES: dict[str, type[DonateStrategy]] = {
    s.name: s for s in (Pushy, LogicOnly, EmotionOnly, RapportThenAsk, Attentive)
}
MIXTURE = {"pushy": 0.2, "logic_only": 0.15, "emotion_only": 0.15, "rapport_then_ask": 0.2, "attentive": 0.3}
