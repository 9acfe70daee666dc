"""Teach strategies: tutors from poor to good.

All of them read the lesson (key points, prerequisite, jargon, analogy, example, turn limit) from
the role instructions with the task's own :func:`~dialogue_gym.tasks.teach.parse_lesson`, and
say the points in the task's own frames (``FRAMES``), so the student's act recognizer and concept
matcher read them as real teaching. They differ in what a tutor does with the student:

* ``lecture``: never asks; goes through the points in one register it likes, sometimes two at once.
* ``jargon``: a formal lecture thick with undefined terms, two points a turn.
* ``over_asking``: keeps asking what the student knows and whether it makes sense, teaches little.
* ``wrong_register``: asks, then talks formally to beginners and simplifies for experts.
* ``attentive``: asks, reads the replies (background, style hints, missing prerequisite, unknown
  terms, shaky points), adapts, checks and closes: the competent reference agent's approach.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import numpy as np

from dialogue_gym.agents.base import Messages, agent_turns
from dialogue_gym.datagen.strategies import Strategy, pick, pick_new
from dialogue_gym.tasks.teach import ACTS, CHECKS, FRAMES, MODES, Lesson, parse_lesson, read_student

lesson_of = functools.lru_cache(maxsize=256)(parse_lesson)

PROBES = (
    "Before we start, what do you already know about {name}?",
    "How familiar are you with {name}?",
    "Have you ever studied {name} before?",
    "Tell me a little about your background. How much do you know about {name}?",
    "What have you heard about {name} so far?",
)
MORE_CHECKS = (
    *CHECKS,
    "Any questions so far?",
    "Could you put that back to me in your own words?",
    "Does this make sense to you?",
)
DEFINES = (
    "By the way, '{term}' means {meaning}.",
    "The term {term} refers to {meaning}.",
    "'{term}' is the word for {meaning}.",
)
SUMMARIES = (
    "To sum up, we covered {recap}.",
    "Let's recap: {recap}.",
    "In summary, we went through {recap}.",
)
ENCOURAGEMENT = (
    "Don't worry, plenty of people find this tricky at first.",
    "Take your time, there's no rush.",
    "Good question, and you're doing well.",
)
CLOSES = (
    "That wraps up our lesson on {name}, good luck!",
    "That's all for today on {name}. Thanks for your time, goodbye!",
    "We're done for today. Good luck with {name}!",
)
SIMPLIFY = ("In simple terms, ", "Put simply, ", "Basically, ")


def recap(lesson: Lesson) -> str:
    labels = [short for short, _ in lesson.points]
    return ", ".join(labels[:-1]) + f" and {labels[-1]}" if len(labels) > 1 else "".join(labels)


def frame(rng: np.random.Generator, lesson: Lesson, text: str, mode: str) -> str:
    """``text`` delivered in ``mode`` through one of the task's frames, chosen at random."""
    low = text[:1].lower() + text[1:]
    return pick(rng, FRAMES[mode]).format(analogy=lesson.analogy, example=lesson.example, text=text, low=low)


def taught(lesson: Lesson, messages: Messages) -> list[bool]:
    """For each key point, whether the agent has said its text already."""
    said = " ".join(m["content"] for m in messages if m["role"] == "assistant").lower()
    return [text.lower() in said for _, text in lesson.points]


SUMMARY_STARTS = tuple(s.split("{")[0] for s in SUMMARIES)


def recapped(messages: Messages) -> bool:
    """Whether the agent has already given a recap."""
    return any(m["role"] == "assistant" and m["content"].startswith(SUMMARY_STARTS) for m in messages)


class TeachStrategy(Strategy):
    """A tutor: noise moves are any teaching act but closing, in the task's wording."""

    noise_acts: ClassVar[tuple[str, ...]] = tuple(a for a in ACTS if a != "close")

    def lesson(self, messages: Messages) -> Lesson:
        return lesson_of(messages[0]["content"])

    def close(self, lesson: Lesson, messages: Messages) -> str:
        return pick_new(self.rng, [c.format(name=lesson.name) for c in CLOSES], messages)

    def realise(self, act: str, messages: Messages) -> str:
        lesson, rng = self.lesson(messages), self.rng
        if act == "probe":
            return pick(rng, PROBES).format(name=lesson.name)
        if act in MODES:
            texts = [text for _, text in lesson.points] + [lesson.prereq[1]]
            return frame(rng, lesson, pick(rng, texts), act)
        if act == "define" and lesson.jargon:
            term, meaning = pick(rng, lesson.jargon)
            return pick(rng, DEFINES).format(term=term, meaning=meaning)
        if act == "check":
            return pick(rng, MORE_CHECKS)
        if act == "summarise":
            return pick(rng, SUMMARIES).format(recap=recap(lesson))
        return pick(rng, ENCOURAGEMENT)


class Lecture(TeachStrategy):
    """Never asks: the key points in order in one register it likes, then goodbye."""

    name = "lecture"
    level = "poor"
    description = (
        "A tutor who never asks what the student knows and never checks understanding: they lecture "
        "through the key points one after another in the one style they like, then say goodbye."
    )

    def __init__(self, rng: np.random.Generator, epsilon: float = 0.0) -> None:
        super().__init__(rng, epsilon)
        self.mode = pick(rng, MODES)
        self.per_turn = 2 if rng.random() < 0.4 else 1
        self.recap = rng.random() < 0.5

    def move(self, messages: Messages) -> str:
        lesson = self.lesson(messages)
        todo = [
            text for (_, text), done in zip(lesson.points, taught(lesson, messages), strict=True) if not done
        ]
        if todo and agent_turns(messages) < lesson.max_turns - 1:
            return frame(self.rng, lesson, " ".join(todo[: self.per_turn]), self.mode)
        if self.recap and not recapped(messages):
            return pick(self.rng, SUMMARIES).format(recap=recap(lesson))
        return self.close(lesson, messages)


class Jargon(TeachStrategy):
    """A formal lecture full of undefined terms, two points at a time."""

    name = "jargon"
    level = "poor"
    description = (
        "A tutor who lectures formally and fast, packing two key points into each message and using "
        "technical terms without ever defining them; no questions, then a recap and goodbye."
    )

    def move(self, messages: Messages) -> str:
        lesson = self.lesson(messages)
        todo = [
            text for (_, text), done in zip(lesson.points, taught(lesson, messages), strict=True) if not done
        ]
        if todo and agent_turns(messages) < lesson.max_turns - 1:
            line = frame(self.rng, lesson, " ".join(todo[:2]), "formal")
            terms = [term for term, _ in lesson.jargon]
            if terms:
                line += " In technical terms, this involves the " + " and the ".join(terms[:2]) + "."
            return line
        if not recapped(messages):
            return pick(self.rng, SUMMARIES).format(recap=recap(lesson))
        return self.close(lesson, messages)


class OverAsking(TeachStrategy):
    """Asks and asks (background, terms, whether it makes sense), teaching a point only now and then."""

    name = "over_asking"
    level = "poor"
    description = (
        "A tutor who keeps asking questions - what the student knows, whether they have heard of "
        "this or that term, whether it makes sense - and only rarely actually explains a key point."
    )

    def __init__(self, rng: np.random.Generator, epsilon: float = 0.0) -> None:
        super().__init__(rng, epsilon)
        self.teach_every = 2 + int(rng.random() * 2)  # teach on every 2nd or 3rd turn
        self.mode = pick(rng, MODES)

    def move(self, messages: Messages) -> str:
        lesson, rng, t = self.lesson(messages), self.rng, agent_turns(messages)
        if t >= lesson.max_turns - 1:
            return self.close(lesson, messages)
        if t == 0:
            return pick(rng, PROBES).format(name=lesson.name)
        todo = [
            text for (_, text), done in zip(lesson.points, taught(lesson, messages), strict=True) if not done
        ]
        if todo and t % self.teach_every == 0:
            return frame(rng, lesson, todo[0], self.mode)
        questions = [*MORE_CHECKS, *(p.format(name=lesson.name) for p in PROBES)]
        questions += [f"Have you ever heard of the term {term}?" for term, _ in lesson.jargon]
        return pick_new(rng, questions, messages)


class WrongRegister(TeachStrategy):
    """Asks about the background, then pitches it wrong: formal and technical for beginners,
    simplified analogies for experts; checks, but does not act on the answer."""

    name = "wrong_register"
    level = "mixed"
    description = (
        "A tutor who asks about the student's background but then pitches the lesson at the wrong "
        "level: formal and technical for a beginner, over-simplified analogies for an expert. They "
        "check understanding now and then but do not act on the answer."
    )

    def __init__(self, rng: np.random.Generator, epsilon: float = 0.0) -> None:
        super().__init__(rng, epsilon)
        self.check_every = 1 + int(rng.random() * 2)

    def move(self, messages: Messages) -> str:
        lesson, rng, t = self.lesson(messages), self.rng, agent_turns(messages)
        if t == 0:
            return pick(rng, PROBES).format(name=lesson.name)
        done = taught(lesson, messages)
        todo = [text for (_, text), d in zip(lesson.points, done, strict=True) if not d]
        last = messages[-2]["content"] if len(messages) > 2 else ""
        if t >= lesson.max_turns - 1 or (not todo and last in MORE_CHECKS):
            return self.close(lesson, messages)
        if not todo or (sum(done) and sum(done) % self.check_every == 0 and last not in MORE_CHECKS):
            return pick_new(rng, MORE_CHECKS, messages)
        if read_student(lesson, messages).level == "expert":
            line = frame(rng, lesson, todo[0], "analogy")
            return pick(rng, SIMPLIFY) + line[:1].lower() + line[1:]
        line = frame(rng, lesson, todo[0], "formal")
        if lesson.jargon:
            line += f" In technical terms, this involves the {pick(rng, lesson.jargon)[0]}."
        return line


class Attentive(TeachStrategy):
    """The competent tutor's approach: probe, read the replies, adapt register and style, define
    terms the student trips on, fill a missing prerequisite, re-teach the shaky point, check, close."""

    name = "attentive"
    level = "good"
    description = (
        "A good tutor: first asks what the student already knows, then explains one key point at a "
        "time in the register and style the student needs (examples, analogies, steps or precise "
        "statements), defines any term the student trips on, explains a missing prerequisite, checks "
        "understanding, re-explains the shaky part, and closes with a short recap."
    )

    def __init__(self, rng: np.random.Generator, epsilon: float = 0.0) -> None:
        super().__init__(rng, epsilon)
        self.check_every = pick(rng, (1, 2, 99))  # after each point, every two, or only at the end

    def move(self, messages: Messages) -> str:
        lesson, rng, t = self.lesson(messages), self.rng, agent_turns(messages)
        if t == 0:
            return pick(rng, PROBES).format(name=lesson.name)
        r = read_student(lesson, messages)
        if r.all_good or t >= lesson.max_turns - 1:
            return self.close(lesson, messages)
        extra = ""
        if r.pending_term:
            meaning = dict(lesson.jargon).get(r.pending_term, "")
            extra = " " + pick(rng, DEFINES).format(term=r.pending_term, meaning=meaning)
        if r.level == "expert" and r.mode == "formal" and lesson.jargon:
            extra += f" In the usual terms, this involves the {pick(rng, lesson.jargon)[0]}."
        said = " ".join(m["content"] for m in messages if m["role"] == "assistant").lower()
        if r.needs_prereq and lesson.prereq[1].lower() not in said:
            return frame(rng, lesson, lesson.prereq[1], r.mode) + extra
        if r.weak is not None:
            return frame(rng, lesson, lesson.points[r.weak][1], r.mode) + extra
        done = [text.lower() in said for _, text in lesson.points]
        last = messages[-2]["content"]
        if any(done) and sum(done) % self.check_every == 0 and last not in MORE_CHECKS:
            return pick_new(rng, MORE_CHECKS, messages)
        todo = [text for (_, text), d in zip(lesson.points, done, strict=True) if not d]
        if todo:
            return frame(rng, lesson, todo[0], r.mode) + extra
        if last in MORE_CHECKS:
            return self.close(lesson, messages)
        return pick_new(rng, MORE_CHECKS, messages)


STRATEGIES: dict[str, type[TeachStrategy]] = {
    s.name: s for s in (Lecture, Jargon, OverAsking, WrongRegister, Attentive)
}
MIXTURE = {"lecture": 0.2, "jargon": 0.15, "over_asking": 0.15, "wrong_register": 0.2, "attentive": 0.3}
