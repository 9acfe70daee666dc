"""Prefs strategies: travel agents from poor to good.

They read the catalogue, ``k`` and the theme words from the role instructions with the task's own
:func:`~dialogue_gym.tasks.prefs.parse_catalogue` and :func:`~dialogue_gym.tasks.prefs.theme_labels`,
read the traveller's answers with :func:`~dialogue_gym.tasks.prefs.read_traveller`, and score
candidate plans with the same :class:`~dialogue_gym.tasks.prefs.CatalogueTable` the competent
reference agent uses. They differ in how they find out what the traveller wants:

* ``premature``: recommends in the first or second turn (tourist favourites or a random trio).
* ``over_asking``: small talk, open questions, one theme at a time, asks again; recommends late.
* ``vague``: open questions, "tell me more" and long lists of themes; then picks from what it heard.
* ``ignores_answers``: asks good concrete questions, then recommends its own favourites anyway.
* ``attentive``: constraints first, then concrete questions two topics at a time, recommends the
  best plan for what it heard once the traveller grows impatient: the competent reference approach.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from dialogue_gym.agents.base import Messages, agent_turns, human_turns
from dialogue_gym.datagen.strategies import Strategy, pick, pick_new
from dialogue_gym.tasks.prefs import (
    UTILITY_DEFAULTS,
    CatalogueTable,
    parse_catalogue,
    read_traveller,
    recommend_line,
    theme_labels,
)

ACTS = ("small_talk", "open_question", "ask_attribute", "ask_constraints", "clarify", "suggest", "recommend")
SMALL_TALK = (
    "Nice to meet you! How are you doing today?",
    "Hope you're doing well today!",
    "How exciting, what a lovely trip to plan!",
    "How's your day going so far?",
)
OPEN = (
    "What kind of things do you enjoy on a trip?",
    "What are you hoping to get out of this trip?",
    "Tell me a bit about what you like doing on holiday.",
    "What would make this trip perfect for you?",
    "What sort of activities do you usually go for?",
)
CLARIFY = (
    "Could you tell me a bit more about that?",
    "Can you be more specific?",
    "If you had to pick one thing, what would it be?",
    "Could you say a little more about what you'd enjoy?",
)
ASK_ONE = ("How do you feel about {}?", "Are you into {}?", "Do you enjoy {}?", "Would you enjoy {}?")
ASK_TWO = (
    "How do you feel about {}? And what about {}?",
    "Are you into {}? How about {}?",
    "Do you enjoy {}? And how do you feel about {}?",
)
ASK_MANY = (
    "Do you like {}, {} or {}?",
    "Would you enjoy {}, {}, or maybe {}?",
)
CONSTRAINTS = (
    "Before I suggest anything: is there a budget per activity, will any kids be coming along, "
    "and does anyone need step-free access?",
    "Is there a budget per activity? And will any children be joining?",
    "Are there any restrictions I should know about, like budget, children or mobility?",
)
PACE_SETTING = (
    "Do you prefer a relaxed or an active pace? And would you rather be indoors or outdoors?",
    "How about the pace: relaxed or active? Indoors or outdoors?",
)
TIME = (
    "How much time do you have for each activity, a couple of hours or whole days?",
    "How much time can you give each activity?",
)
SUGGEST = (
    "How would you feel about the {}?",
    "Have you considered the {}?",
    "Would you be interested in the {}?",
)
IMPATIENT = re.compile(r"suggest something soon|actual suggestions|running short on time", re.I)
CHATTY = re.compile(r"excited|can't wait|looking forward", re.I)


@dataclass
class World:
    """The catalogue as the agent sees it: names, ``k``, tourist favourites, theme words, a table."""

    names: list[str]
    k: int
    favourites: list[str]
    labels: dict[str, str]
    themes: list[str]
    table: CatalogueTable


@functools.lru_cache(maxsize=32)
def world_of(system: str) -> World:
    """The (cached) catalogue of a role-instructions text."""
    catalogue, k, favourites = parse_catalogue(system)
    labels = theme_labels(system)
    themes = list(labels) or sorted({t for a in catalogue for t in a["themes"]})
    table = CatalogueTable(catalogue, themes, UTILITY_DEFAULTS)
    return World([a["name"] for a in catalogue], k, favourites, labels, themes, table)


class PrefsStrategy(Strategy):
    """A travel agent that remembers what the traveller has said (read once per new reply)."""

    noise_acts: ClassVar[tuple[str, ...]] = tuple(a for a in ACTS if a != "recommend")
    prior_weight: ClassVar[float] = 0.2

    def __init__(self, rng: np.random.Generator, epsilon: float = 0.0) -> None:
        super().__init__(rng, epsilon)
        self.known: dict[str, Any] = {"weights": {}}
        self._read = 0

    def world(self, messages: Messages) -> World:
        return world_of(messages[0]["content"])

    def read(self, messages: Messages) -> dict[str, Any]:
        """What the traveller has said so far, as :func:`read_traveller` reads it, updated incrementally."""
        replies = human_turns(messages)
        labels = self.world(messages).labels
        for reply in replies[self._read :]:
            new = read_traveller([reply], labels)
            self.known["weights"].update(new.pop("weights"))
            if "budget" in new:  # a later statement of the budget replaces an earlier one
                self.known["budget"] = new.pop("budget")
            for key, value in new.items():  # the first statement of the rest stands
                self.known.setdefault(key, value)
        self._read = len(replies)
        return self.known

    def best(self, messages: Messages, known: dict[str, Any] | None = None) -> list[str]:
        """The best ``k`` activities under an estimate of the traveller (unknown themes: a prior)."""
        w = self.world(messages)
        known = known if known is not None else self.read(messages)
        est = {
            "weights": {t: known["weights"].get(t, self.prior_weight) for t in w.themes},
            "pace": known.get("pace"),
            "setting": known.get("setting", "either"),
            "short_time": known.get("time", 0.35),
            "budget": known.get("budget"),
            "kids": known.get("kids", False),
            "mobility": known.get("mobility", False),
        }
        return [name for _, name in w.table.best(est, w.k)]

    def recommend(self, names: list[str]) -> str:
        return recommend_line(names, int(self.rng.random() * 3))

    def realise(self, act: str, messages: Messages) -> str:
        w, rng = self.world(messages), self.rng
        labels = list(w.labels.values()) or ["sightseeing"]
        if act == "small_talk":
            return pick(rng, SMALL_TALK)
        if act == "open_question":
            return pick(rng, OPEN)
        if act == "ask_attribute":
            return pick(rng, ASK_ONE).format(pick(rng, labels))
        if act == "ask_constraints":
            return pick(rng, CONSTRAINTS)
        if act == "clarify":
            return pick(rng, CLARIFY)
        return pick(rng, SUGGEST).format(pick(rng, w.names))


class Premature(PrefsStrategy):
    """Recommends at once: the tourist favourites or whatever catches its eye."""

    name = "premature"
    level = "poor"
    description = (
        "A hasty travel agent who recommends activities in the first or second message, before "
        "finding out anything about the traveller: usually the tourist favourites or a few random picks."
    )

    def __init__(self, rng: np.random.Generator, epsilon: float = 0.0) -> None:
        super().__init__(rng, epsilon)
        self.wait = int(rng.random() * 2)  # turns of chat before recommending: 0 or 1
        self.favourites = rng.random() < 0.5

    def move(self, messages: Messages) -> str:
        if agent_turns(messages) < self.wait:
            return pick(self.rng, (*SMALL_TALK, *OPEN))
        w = self.world(messages)
        pool = w.favourites if self.favourites and len(w.favourites) >= w.k else w.names
        order = self.rng.permutation(len(pool))
        return self.recommend([pool[i] for i in order[: w.k]])


class OverAsking(PrefsStrategy):
    """Chats and asks one thing at a time, open questions, follow-ups and repeats; recommends late."""

    name = "over_asking"
    level = "poor"
    description = (
        "A chatty travel agent who asks far too many questions, one small thing at a time, with "
        "small talk, open questions and follow-ups, sometimes asking the same thing twice, and only "
        "recommends near the end, if the traveller is still there."
    )

    def __init__(self, rng: np.random.Generator, epsilon: float = 0.0) -> None:
        super().__init__(rng, epsilon)
        self.horizon = 5 + int(rng.random() * 3)  # recommends on turn 5, 6 or 7

    def move(self, messages: Messages) -> str:
        w, rng = self.world(messages), self.rng
        if agent_turns(messages) >= self.horizon:
            return self.recommend(self.best(messages))
        labels = list(w.labels.values())
        options = [*SMALL_TALK, *OPEN, *CLARIFY, *(pick(rng, ASK_ONE).format(label) for label in labels)]
        return pick_new(rng, options, messages)


class Vague(PrefsStrategy):
    """Only open questions, "tell me more" and long lists, then the best plan for what little it heard."""

    name = "vague"
    level = "mixed"
    description = (
        "A travel agent who only asks vague questions - what kind of things do you like, tell me "
        "more, do you like this, that or the other - and then recommends from the little they learned."
    )

    def __init__(self, rng: np.random.Generator, epsilon: float = 0.0) -> None:
        super().__init__(rng, epsilon)
        self.questions = 2 + int(rng.random() * 3)

    def move(self, messages: Messages) -> str:
        w, rng = self.world(messages), self.rng
        if agent_turns(messages) >= self.questions or IMPATIENT.search(messages[-1]["content"]):
            return self.recommend(self.best(messages))
        labels = list(w.labels.values())
        lists = []
        if len(labels) >= 3:
            order = rng.permutation(len(labels))
            lists = [pick(rng, ASK_MANY).format(*(labels[i] for i in order[:3]))]
        return pick_new(rng, [*OPEN, *CLARIFY, *lists], messages)


class IgnoresAnswers(PrefsStrategy):
    """Asks sensible questions, then recommends its own idea of a good trip regardless."""

    name = "ignores_answers"
    level = "poor"
    description = (
        "A travel agent who asks sensible questions about budget, children and tastes, but then "
        "ignores the answers and recommends their own favourite kind of trip anyway."
    )

    def __init__(self, rng: np.random.Generator, epsilon: float = 0.0) -> None:
        super().__init__(rng, epsilon)
        self.questions = 1 + int(rng.random() * 3)
        self.taste = rng.random()  # which theme the agent itself loves (picked once the themes are read)

    def move(self, messages: Messages) -> str:
        w, rng, t = self.world(messages), self.rng, agent_turns(messages)
        if t == 0:
            return pick(rng, CONSTRAINTS)
        if t <= self.questions and len(w.labels) >= 2:
            order = rng.permutation(len(w.labels))
            labels = list(w.labels.values())
            return pick(rng, ASK_TWO).format(labels[order[0]], labels[order[1]])
        own = {"weights": {w.themes[int(self.taste * len(w.themes))]: 1.0}}
        return self.recommend(self.best(messages, known=own))


class Attentive(PrefsStrategy):
    """The competent approach: constraints, concrete questions two topics a turn, recommend in time."""

    name = "attentive"
    level = "good"
    description = (
        "A good travel agent: asks about hard constraints first (budget, children, step-free access), "
        "then concrete questions about one or two themes at a time, pace, indoors or outdoors and time, "
        "and recommends the best-fitting activities as soon as the traveller grows impatient."
    )

    def __init__(self, rng: np.random.Generator, epsilon: float = 0.0) -> None:
        super().__init__(rng, epsilon)
        self.question_turns = 4 + int(rng.random() * 3)  # 4-6 question turns at most
        self.shuffle = rng.random()  # picks this episode's order of the themes to ask about

    def plan(self, messages: Messages) -> list[str]:
        """The next questions: themes not yet known or asked, two at a time, then pace/setting and time."""
        w = self.world(messages)
        known = self.read(messages)
        asked = " ".join(m["content"].lower() for m in messages if m["role"] == "assistant")
        themes = list(w.labels)
        k = int(self.shuffle * len(themes))  # a rotation of the card's order
        themes = [
            t
            for t in themes[k:] + themes[:k]
            if t not in known["weights"]
            and w.labels[t].lower() not in asked
            and not (t == "nightlife" and known.get("kids"))
        ]
        out = []
        if themes:
            labels = [w.labels[t] for t in themes[:2]]
            form = ASK_TWO if len(labels) == 2 else ASK_ONE
            out.append(pick(self.rng, form).format(*labels))
        if "pace" not in asked:
            out.append(pick(self.rng, PACE_SETTING))
        if "how much time" not in asked:
            out.append(pick(self.rng, TIME))
        return out

    def move(self, messages: Messages) -> str:
        rng, t = self.rng, agent_turns(messages)
        replies = human_turns(messages)
        chatty = bool(CHATTY.search(replies[0])) if replies else False
        if t == 0:
            return pick(rng, SMALL_TALK) + " " + pick(rng, OPEN) if chatty else pick(rng, CONSTRAINTS)
        if t == 1 and chatty:
            return pick(rng, CONSTRAINTS)
        questions = self.plan(messages)
        if questions and t < self.question_turns and not IMPATIENT.search(replies[-1]):
            return questions[0]
        return self.recommend(self.best(messages))


STRATEGIES: dict[str, type[PrefsStrategy]] = {
    s.name: s for s in (Premature, OverAsking, Vague, IgnoresAnswers, Attentive)
}
MIXTURE = {"premature": 0.2, "over_asking": 0.15, "vague": 0.15, "ignores_answers": 0.2, "attentive": 0.3}
