"""Hindsight for Teach: register, jargon, the prerequisite and early closes.

What the whole lesson reveals (``read``): the student's level (their answer to a probe, else what
their reactions imply: "abstract" means a novice, "I know that part" an expert), the style they
asked for, delivery modes that fell flat, the prerequisite they lack, terms they asked about, the
points they already knew and the points each turn got across. Flagged turns (``find``): jargon the
student then asked about, a register the student found abstract or boring, teaching on top of a
missing prerequisite, turns with nothing to learn, nagging or incoherent turns, a delivery mode
the student's later replies argue against, and closing with points never explained.

The :class:`HindsightTeacher` teaches like the competent teacher, but picks level and mode from
these facts from the first turn on (probing only when the lesson never revealed the level).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from dialogue_gym.agents.base import Agent, Messages
from dialogue_gym.core.text import ActRecognizer, sentences
from dialogue_gym.datagen.hindsight import Critic, Flag, Transcript
from dialogue_gym.tasks.teach import (
    CHECKS,
    Lesson,
    card_index,
    close_line,
    content_words,
    fresh,
    parse_lesson,
    teach_line,
)

TEACH_MODES = ("analogy", "example", "formal", "steps")

# What the student's replies say, read in hindsight.
LEVEL = (
    (
        "novice",
        re.compile(r"new to|beginner|know (?:almost )?nothing|not much|never (?:studied|learned)", re.I),
    ),
    ("expert", re.compile(r"work with|day job|know [\w\s-]+ well|be technical|finer points", re.I)),
    ("some", re.compile(r"a bit about|some basics|a little|heard of|done some", re.I)),
)
HINTS = (
    ("example", re.compile(r"\bexample\b", re.I)),
    ("analogy", re.compile(r"\banalogy\b|compare it", re.I)),
    ("formal", re.compile(r"\bprecise\b|\bexact(?:ly)?\b", re.I)),
    ("steps", re.compile(r"step by step|\bsteps\b|one step at a time", re.I)),
)
JARGON_Q = re.compile(r"'([^']+)'\s*(?:mean|\?|\.)|lost me at '([^']+)'", re.I)
ABSTRACT = re.compile(r"\babstract\b|over my head|formal wording", re.I)
BORED = re.compile(r"know that part|skip the basics|familiar to me|go deeper|i know this", re.I)
GOT = re.compile(r"clicks|get it now|that's clear", re.I)
PARTLY = re.compile(r"sort of follow|partly get|getting there", re.I)
FILLER = re.compile(r"where are we going|^okay\.\.\.\?|and what about", re.I)
NAG = re.compile(
    r"already told you|you just asked|nothing has changed|covered that already|like i said", re.I
)
INCOHERENT = re.compile(
    r"a lot at once|jumble|hang together|didn't understand any|weren't words|can't follow|already said that|"
    r"same thing again|repeating yourself|who are you talking to|someone else|supposed to mean",
    re.I,
)
LEFT = re.compile(r"need to go now|i'll stop here|isn't working for me", re.I)
WEAK = re.compile(r"fuzzy|shaky|not confident", re.I)
ALL_GOOD = re.compile(r"got it all|explain all of it|could say it back", re.I)
NO_PREREQ = re.compile(
    r"not sure what|never really understood|confuses me|missing something|don't (?:really )?get|"
    r"lost because|don't understand",
    re.I,
)
PREREQ_LEARNED = re.compile(r"makes sense now|good to know|understand .{1,40} now", re.I)


def _mode(acts: Sequence[str]) -> str:
    return next((a for a in acts if a in TEACH_MODES), "explain")


def _carried(lesson: Lesson, text: str) -> list[int]:
    """Indexes of the key points a turn carries: a sentence holding at least half of a point's
    own content words (as the student reads it)."""
    needs = [set(content_words(p)) for _, p in lesson.points]
    found: list[int] = []
    for sent in sentences(text):
        have = set(content_words(sent))
        for i, need in enumerate(needs):
            if i not in found and len(have & need) >= max(2, math.ceil(0.5 * len(need))):
                found.append(i)
    return found


def _carries_prereq(lesson: Lesson, text: str) -> bool:
    need = set(content_words(lesson.prereq[1]))
    return bool(need) and any(
        len(set(content_words(s)) & need) >= max(2, math.ceil(0.5 * len(need))) for s in sentences(text)
    )


def read_lesson(t: Transcript, recognizer: ActRecognizer) -> dict[str, Any]:
    """What the lesson so far reveals about the student and what each turn got across."""
    lesson = parse_lesson(t.system)
    prereq = lesson.prereq[0].lower()
    level = None
    hint = None
    bad: list[str] = []
    good: list[str] = []
    status: dict[str, str] = {}  # key point index -> good / partly / bad / known
    jargon: list[str] = []
    needs_prereq = prereq_learned = probed = False
    for text, reply in zip(t.agent_turns, t.replies, strict=True):
        acts = recognizer.analyse(text).acts
        mode = _mode(acts)
        probed = probed or "probe" in acts
        if reply is None:
            continue
        if "probe" in acts and level is None:
            level = next((lvl for lvl, pat in LEVEL if pat.search(reply)), None)
        hint = next((m for m, pat in HINTS if pat.search(reply)), hint)
        if prereq and prereq in reply.lower():
            if PREREQ_LEARNED.search(reply):
                prereq_learned = True
            elif NO_PREREQ.search(reply):
                needs_prereq = True
        m = JARGON_Q.search(reply)
        term = (m.group(1) or m.group(2)) if m else None
        if term and term.lower() in {j.lower() for j, _ in lesson.jargon} and term not in jargon:
            jargon.append(term)
        negative = bool(ABSTRACT.search(reply) or term or BORED.search(reply))
        if ABSTRACT.search(reply) or BORED.search(reply):
            bad.append(mode)
        elif GOT.search(reply):
            good.append(mode)
        for i in _carried(lesson, text):
            verdict = (
                "known"
                if BORED.search(reply)
                else "bad"
                if negative or (prereq and prereq in reply.lower() and NO_PREREQ.search(reply))
                else "good"
                if GOT.search(reply)
                else "partly"
            )
            if status.get(str(i)) != "good":
                status[str(i)] = verdict
    replies = [r for r in t.replies if r is not None]
    if level is None:
        if any(ABSTRACT.search(r) for r in replies):
            level = "novice"
        elif any(BORED.search(r) for r in replies):
            level = "expert"
    last = replies[-1] if replies else ""
    weak = None
    if WEAK.search(last):
        weak = next((i for i, (short, _) in enumerate(lesson.points) if short.lower() in last.lower()), None)
    return {
        "level": level,
        "hint": hint,
        "bad_modes": sorted(set(bad)),
        "good_modes": sorted(set(good)),
        "needs_prereq": needs_prereq,
        "prereq_learned": prereq_learned,
        "jargon_asked": jargon,
        "points": status,
        "probed": probed,
        "weak": weak,
        "all_good": bool(ALL_GOOD.search(last)),
        "pending_term": next(
            (j for j, _ in lesson.jargon if last and f"'{j.lower()}'" in last.lower()), None
        ),
    }


def choose_mode(level: str | None, hint: str | None, bad: Sequence[str]) -> str:
    """The delivery to use: plain by default, the student's own style when it suits their level,
    never formal for a novice or simplifying for an expert, never a mode that already fell flat."""
    score = {"explain": 0.5, "analogy": 0.0, "example": 0.0, "steps": 0.0, "formal": 0.0}
    if level == "novice":
        score["formal"] -= 2
    if level == "expert":
        score["analogy"] -= 1
        score["steps"] -= 1
    if hint in score:
        score[hint] += 2
    for mode in bad:
        score[mode] -= 3
    return max(score, key=score.__getitem__)


class HindsightTeacher(Agent):
    """Teaches with the level, style, prerequisite and known points the whole lesson revealed."""

    name = "teach-hindsight"

    def __init__(self, facts: Mapping[str, Any], recognizer: ActRecognizer) -> None:
        self.facts = dict(facts)
        self.recognizer = recognizer

    def act(self, messages: Messages, persona: Mapping[str, Any] | None = None) -> str:
        t = Transcript.of(messages)
        lesson = parse_lesson(t.system)
        now = read_lesson(t, self.recognizer)
        hind = self.facts
        turn = t.turns
        if turn >= lesson.max_turns - 1 or now["all_good"]:
            return close_line(lesson, messages)
        level = now["level"] or hind.get("level")
        if level is None and not now["probed"]:
            return f"Before we start, what do you already know about {lesson.name}?"
        mode = choose_mode(
            level, now["hint"] or hind.get("hint"), {*now["bad_modes"], *hind.get("bad_modes", [])}
        )
        extra = ""
        if now["pending_term"]:
            term = now["pending_term"]
            extra = f" By the way, '{term}' means {dict(lesson.jargon).get(term, '')}."
        if level == "expert" and mode in ("explain", "formal") and lesson.jargon:
            extra += f" In the usual terms, this involves the {lesson.jargon[turn % len(lesson.jargon)][0]}."
        said = [m["content"] for m in messages if m["role"] == "assistant"]
        needs_prereq = now["needs_prereq"] or hind.get("needs_prereq")
        if needs_prereq and not now["prereq_learned"] and not any(_carries_prereq(lesson, s) for s in said):
            return teach_line(lesson, lesson.prereq[1], mode, messages, extra)
        if now["weak"] is not None:
            return teach_line(lesson, lesson.points[now["weak"]][1], mode, messages, extra)
        status = {int(i): v for i, v in now["points"].items()}
        known = {int(i) for i, v in hind.get("points", {}).items() if v == "known"}
        todo = [i for i in range(len(lesson.points)) if i not in known and status.get(i) in (None, "bad")]
        if todo:
            return teach_line(lesson, lesson.points[todo[0]][1], mode, messages, extra)
        if said and said[-1] in CHECKS:
            shaky = [i for i, v in status.items() if v == "partly" and i not in known]
            if shaky:
                return teach_line(lesson, lesson.points[shaky[0]][1], mode, messages, extra)
            return close_line(lesson, messages)
        return fresh(CHECKS, messages, turn)


class TeachCritic(Critic):
    """Hindsight critic and rewriter for Teach (see the module docstring)."""

    card_name = "teach"

    def __init__(self, card: str | Mapping[str, Any] | None = None) -> None:
        super().__init__(card)
        self.recognizer = card_index(self.card).recognizer

    def read(self, t: Transcript) -> dict[str, Any]:
        return read_lesson(t, self.recognizer)

    def find(self, t: Transcript, facts: Mapping[str, Any]) -> list[Flag]:
        lesson = parse_lesson(t.system)
        prereq = lesson.prereq[0].lower()
        best = choose_mode(facts["level"], facts["hint"], facts["bad_modes"])
        jargon = {j.lower() for j, _ in lesson.jargon}
        flags: list[Flag] = []
        untaught = [
            lesson.points[i][0]
            for i in range(len(lesson.points))
            if facts["points"].get(str(i)) in (None, "bad")
        ]
        for k, (text, reply) in enumerate(zip(t.agent_turns, t.replies, strict=True)):
            acts = self.recognizer.analyse(text).acts
            mode = _mode(acts)
            teaches = bool(_carried(lesson, text))
            r = reply or ""
            m = JARGON_Q.search(r)
            term = (m.group(1) or m.group(2)) if m else None
            if term and term.lower() in jargon:
                flags.append(
                    Flag(
                        k,
                        "jargon",
                        f"turn {k} used '{term}' without defining it; the student asked what it means",
                    )
                )
            elif ABSTRACT.search(r):
                flags.append(
                    Flag(k, "register", f"turn {k} was too formal: the student, a novice, found it abstract")
                )
            elif BORED.search(r):
                flags.append(
                    Flag(k, "register", f"turn {k} told an expert what they knew or talked down to them")
                )
            elif prereq and prereq in r.lower() and NO_PREREQ.search(r) and teaches:
                flags.append(
                    Flag(
                        k,
                        "prereq",
                        f"turn {k} built on {lesson.prereq[0]} before explaining it; the student lacks it",
                    )
                )
            elif LEFT.search(r):
                flags.append(Flag(k, "lost_student", f"the student gave up after turn {k}"))
            elif INCOHERENT.search(r) or NAG.search(r):
                flags.append(
                    Flag(k, "wasted", f"turn {k} annoyed the student (repeated, nagging or muddled)")
                )
            elif FILLER.search(r) or (r and not acts):
                flags.append(Flag(k, "no_content", f"turn {k} gave the student nothing to learn"))
            elif "close" in acts and untaught:
                flags.append(
                    Flag(
                        k,
                        "early_close",
                        f"turn {k} closed the lesson with {', '.join(untaught)} never got across",
                    )
                )
            elif "close" in acts and k and WEAK.search(t.replies[k - 1] or ""):
                flags.append(Flag(k, "early_close", f"turn {k} closed while the student was still shaky"))
            elif teaches and mode != best and (PARTLY.search(r) or any(p.search(r) for _, p in HINTS)):
                why = (
                    f"asked for {facts['hint']}"
                    if facts["hint"]
                    else f"is {facts['level'] or 'unknown'} level"
                )
                flags.append(
                    Flag(
                        k,
                        "delivery",
                        f"turn {k} explained by {mode}, which only partly landed; the student {why}",
                    )
                )
        return flags

    def agent(self, facts: Mapping[str, Any]) -> Agent:
        return HindsightTeacher(facts, self.recognizer)
