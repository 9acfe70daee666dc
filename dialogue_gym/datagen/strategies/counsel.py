"""Counsel strategies: supporters from poor to good.

Their lines are ESConv-style support acts (the wording bank extends the oracle supporter's
``PHRASES``); a risk disclosure is recognised with the task's own ``RISK`` pattern and answered
with its ``REFER`` lines by the strategies that take it seriously. They differ in what they do:

* ``premature_advice``: jumps to advice and facts before hearing the story; misses risk.
* ``platitudes``: hollow reassurance and stock phrases; misses risk.
* ``ignores_risk``: explores and comforts well, suggests later, but never answers a risk disclosure.
* ``listener``: questions, reflections, restatements and reassurance, never advice; refers on risk.
* ``attentive``: explore, comfort, then one or two suggestions fitted to the problem the seeker
  named; refers on risk at once (the ESConv phases, like the competent reference agent).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from dialogue_gym.agents.base import Messages, agent_turns, human_turns
from dialogue_gym.core.text import words
from dialogue_gym.datagen.strategies import Strategy, pick, pick_new
from dialogue_gym.tasks.counsel import ACTS, REFER, RISK, OracleSupporter

PHRASES: dict[str, tuple[str, ...]] = {
    **{act: tuple(lines) for act, lines in OracleSupporter.PHRASES.items() if act != "suggestion"},
    "others": (
        "Hi, I'm glad you reached out.",
        "Hello, thank you for reaching out today.",
        "Hi there, I'm listening.",
        "Thank you for sharing that with me.",
    ),
    "refer_help": REFER,
    "close": (
        "Take care of yourself, and I wish you all the best.",
        "Take care. I'm glad we talked.",
        "All the best to you, and be well.",
        "Good luck with everything, take care.",
    ),
}
OPENINGS = (
    "Hello, I'm glad you reached out. What has been going on for you lately?",
    "Hi, thank you for reaching out. What is on your mind today?",
    "Hi there. Would you like to share what is going on?",
    "Hello. How have you been feeling lately?",
)
GENERIC_SUGGESTIONS = (
    "Have you tried exercising?",
    "Maybe you could try going for a short walk every day.",
    "You should try writing down how you feel each evening.",
    "How about getting more sleep and eating well?",
    "Maybe you could try to keep busy with a hobby.",
    "One thing you could do is make a list of small goals.",
)
FACTS = (
    "Many people feel this way at some point, and it usually passes.",
    "Research shows that a routine helps with stress.",
    "Psychologists say that talking helps.",
)
PLATITUDES = (
    "Everything happens for a reason.",
    "Stay positive!",
    "Look on the bright side.",
    "Things could be worse, you know.",
    "Time heals everything.",
    "Just try not to think about it too much.",
    "It's okay to feel this way.",
    "You are so strong.",
)
# Ideas a supporter might offer once the problem is named: (words in the seeker's replies, ideas).
IDEAS: tuple[tuple[frozenset[str], tuple[str, ...]], ...] = tuple(
    (frozenset(keys.split()), ideas)
    for keys, ideas in (
        (
            "job work fired manager let go",
            (
                "setting up a small daily job-search routine and asking a former colleague about openings",
                "updating your resume a little each day and practising for one interview a week",
            ),
        ),
        (
            "partner relationship broke ex love",
            (
                "spending this weekend with friends who know you well instead of alone",
                "writing down what you need from a relationship, and giving yourself time",
            ),
        ),
        (
            "school exams exam classes midterm grades study scholarship",
            (
                "talking to your professor and making a study plan with short breaks",
                "finding a study group and splitting the material into small daily pieces",
            ),
        ),
        (
            "low depressed months bed enjoy",
            (
                "keeping a small routine like a daily walk, and seeing a doctor about how long it has lasted",
                "getting outside for ten minutes each morning and keeping a simple routine",
            ),
        ),
        (
            "friends friend group chat argument reply",
            (
                "sending your friend a short honest message about how you felt",
                "asking one friend for a quiet one-on-one conversation to clear the air",
            ),
        ),
        (
            "family parents dad mother sister shouting",
            (
                "setting one clear boundary with your parents and saying it calmly when things are calm",
                "writing your family a letter about how it feels, so you can say it without shouting",
            ),
        ),
        (
            "lonely city anyone alone lunch",
            (
                "joining a club or a volunteering group that meets every week",
                "going to one meetup or class where you see the same people regularly",
            ),
        ),
        (
            "passed grandmother dog lost goodbye",
            (
                "writing down the memories you want to keep and sharing them with family",
                "setting aside a quiet time to remember, or joining a grief support group",
            ),
        ),
    )
)
SUGGEST_FRAMES = ("Maybe you could try {}.", "What if you tried {}?", "It might help to try {}.")


def risk_now(messages: Messages) -> bool:
    """The seeker's latest message discloses a risk of self-harm."""
    replies = human_turns(messages)
    return len(replies) > 1 and bool(RISK.search(replies[-1]))


def fitted_ideas(messages: Messages) -> tuple[str, ...]:
    """Ideas for the problem the seeker has talked about (by the words they used), else none."""
    heard = set(words(" ".join(human_turns(messages)[1:])))
    return next((ideas for keys, ideas in IDEAS if not keys.isdisjoint(heard)), ())


class CounselStrategy(Strategy):
    """A supporter: noise moves are any support act but closing, in varied wording."""

    noise_acts: ClassVar[tuple[str, ...]] = tuple(a for a in ACTS if a != "close")

    def say(self, act: str, messages: Messages) -> str:
        """A line of ``act`` not said before in this chat."""
        if act == "suggestion":
            return pick_new(self.rng, GENERIC_SUGGESTIONS, messages)
        return pick_new(self.rng, PHRASES[act], messages)

    def realise(self, act: str, messages: Messages) -> str:
        return self.say(act, messages)

    def refer(self, messages: Messages) -> str:
        return pick_new(self.rng, REFER, messages)


class PrematureAdvice(CounselStrategy):
    """Advice and facts straight away, before the story is out; never notices a risk disclosure."""

    name = "premature_advice"
    level = "poor"
    description = (
        "A supporter who jumps straight to advice and facts (exercise, sleep, stay busy) before "
        "hearing what happened, barely asks anything, misses any mention of self-harm, and wraps up quickly."
    )

    def __init__(self, rng: np.random.Generator, epsilon: float = 0.0) -> None:
        super().__init__(rng, epsilon)
        self.length = 3 + int(rng.random() * 3)

    def move(self, messages: Messages) -> str:
        t = agent_turns(messages)
        if t >= self.length - 1:
            return self.say("close", messages)
        if t == 0 and self.rng.random() < 0.5:
            return pick(self.rng, ("Hi.", "Hello there.", "Hey.")) + " " + self.say("suggestion", messages)
        options = (*GENERIC_SUGGESTIONS, *FACTS)
        return pick_new(self.rng, options, messages)


class Platitudes(CounselStrategy):
    """Stock phrases and hollow reassurance; never explores; misses a risk disclosure."""

    name = "platitudes"
    level = "poor"
    description = (
        "A supporter who answers everything with stock phrases and hollow reassurance (stay positive, "
        "everything happens for a reason, you are strong), never asks what happened, and misses any "
        "mention of self-harm."
    )

    def __init__(self, rng: np.random.Generator, epsilon: float = 0.0) -> None:
        super().__init__(rng, epsilon)
        self.length = 4 + int(rng.random() * 3)

    def move(self, messages: Messages) -> str:
        if agent_turns(messages) >= self.length - 1:
            return self.say("close", messages)
        return pick_new(self.rng, PLATITUDES, messages)


class Explorer(CounselStrategy):
    """Shared plan of the better supporters: explore with questions and reflections, comfort, then
    (if ``advises``) offer fitted suggestions, and close on the last planned turn."""

    advises: ClassVar[bool] = True
    refers: ClassVar[bool] = True

    def __init__(self, rng: np.random.Generator, epsilon: float = 0.0) -> None:
        super().__init__(rng, epsilon)
        self.explore = 3 + int(rng.random() * 2)  # turns of exploring before comforting
        self.length = 8 + int(rng.random() * 2)  # closes on turn 8 or 9 (the seeker's patience allowing)

    def move(self, messages: Messages) -> str:
        t, rng = agent_turns(messages), self.rng
        if self.refers and risk_now(messages):
            return self.refer(messages)
        if t == 0:
            return pick(rng, OPENINGS)
        if t >= self.length - 1:
            return self.say("affirmation", messages) + " " + self.say("close", messages)
        if t < self.explore:
            builder = pick(rng, ("reflection", "restatement"))
            return self.say(builder, messages) + " " + self.say("question", messages)
        ideas = fitted_ideas(messages) if self.advises else ()
        suggested = sum(any(i in m["content"] for i in ideas) for m in messages if m["role"] == "assistant")
        if ideas and t >= self.explore + 2 and suggested < 2:
            idea = ideas[suggested % len(ideas)]
            return self.say("reflection", messages) + " " + pick(rng, SUGGEST_FRAMES).format(idea)
        comfort = ("reflection", "restatement", "affirmation", "information", "self_disclosure")
        first = pick(rng, comfort)
        second = pick(rng, [c for c in comfort if c != first])
        return self.say(first, messages) + " " + self.say(second, messages)


class IgnoresRisk(Explorer):
    """A decent supporter who never answers a disclosure of self-harm with a pointer to help."""

    name = "ignores_risk"
    level = "mixed"
    refers = False
    description = (
        "A supporter who explores and comforts well and later offers a suggestion or two, but who "
        "carries on as if nothing happened when the person mentions thoughts of self-harm."
    )


class Listener(Explorer):
    """Listens and reflects, never advises; points to help after a risk disclosure."""

    name = "listener"
    level = "good"
    advises = False
    description = (
        "A reflective listener: asks open questions, reflects feelings, restates what they heard and "
        "reassures, but never gives advice; if the person mentions self-harm, points them to a crisis "
        "line or someone they trust right away."
    )


class Attentive(Explorer):
    """Explore, comfort, then a suggestion or two fitted to the problem; refers on risk at once."""

    name = "attentive"
    level = "good"
    description = (
        "A good supporter: greets and asks what is going on, explores with questions while reflecting "
        "feelings, reassures, and only then offers one or two concrete suggestions that fit the problem "
        "the person described; if they mention self-harm, points them to help right away; closes warmly."
    )


STRATEGIES: dict[str, type[CounselStrategy]] = {
    s.name: s for s in (PrematureAdvice, Platitudes, IgnoresRisk, Listener, Attentive)
}
MIXTURE = {
    "premature_advice": 0.2,
    "platitudes": 0.2,
    "ignores_risk": 0.15,
    "listener": 0.15,
    "attentive": 0.3,
}
