"""Hindsight for Counsel: advice before the person felt heard, an unanswered risk disclosure.

What the whole chat reveals (``read``): whether and when the person disclosed a risk of harming
themselves, whether they want suggestions or mostly to be heard (their reaction to any advice),
how far they opened up, and what the problem is (their own words matched against the task's
problem catalogue, so a suggestion can be about their situation).

Flagged turns (``find``): a risk disclosure not answered with help on the very next turn (the
worst mistake), advice or information before the person felt heard, advice to someone who wanted
to be listened to, hollow reassurance or self-disclosure too early, an unneeded referral, unclear
or repeated turns, the turn before they left, and a goodbye that left them no better.

The :class:`HindsightSupporter` answers risk with help at once, explores with reflections and
questions until the story is out, then comforts, and gives suggestions that fit the problem only
to people who (in hindsight) want them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dialogue_gym.agents.base import Agent, Messages
from dialogue_gym.core.scripted import recognizer_from_card
from dialogue_gym.core.text import ActRecognizer, words
from dialogue_gym.datagen.hindsight import Critic, Flag, Transcript
from dialogue_gym.tasks.counsel import REFER, RISK, OracleSupporter

DISCLOSE = re.compile(
    r"^(?:well\.\.\.|okay\. the thing is|i guess it's that|and |the worst part is|what makes it harder|"
    r"if i'm honest|i haven't told anyone|underneath it all)",
    re.I,
)
NOTHING_NEW = re.compile(r"most of it, really|not much more to say|pretty much everything", re.I)
DEFLECT = re.compile(r"hard to talk about|not sure i want to get into|where to start|if i can explain", re.I)
UNDERSTOOD = re.compile(r"exactly how it feels|helps to hear someone say|hadn't put it into words", re.I)
PREMATURE = re.compile(
    r"heard that before|don't really know what's going on|haven't even heard|don't know the situation", re.I
)
JUST_LISTEN = re.compile(r"someone to listen|off my chest|don't really want advice|wanted to be heard", re.I)
PRACTICAL = re.compile(
    r"good idea|could try that|could work for me|feels doable|enough ideas|ideas we already have|"
    r"not sure it fits my situation|feels a bit general|hard to picture",
    re.I,
)
GOOD_IDEA = re.compile(r"good idea|could try that|could work for me|feels doable", re.I)
ENOUGH = re.compile(r"enough ideas|ideas we already have|first things first", re.I)
HOLLOW = re.compile(r"don't really know me|don't know the whole story|^thanks, i guess\.", re.I)
SELF_FOCUS = re.compile(r"isn't really about you|still talking about me|not quite the same thing", re.I)
UNNEEDED = re.compile(r"not in any danger|don't think i need a professional|not that serious", re.I)
IGNORED = re.compile(r"didn't even respond|did you even read|ignoring what i just told you", re.I)
UNCLEAR = re.compile(
    r"not sure what you mean|^okay\.\.\.\?|don't really know what to say|don't understand what you're saying|"
    r"doesn't make any sense|can't follow|already said that|just repeating|same thing you said|"
    r"supposed to mean|some kind of bot|not what i need",
    re.I,
)
LEFT = re.compile(r"isn't helping\. i'm going to go|figure it out myself|isn't working for me", re.I)
FLAT_BYE = re.compile(r"thanks, i guess|alright\. bye|thanks for your time", re.I)


def which_problem(text: str, problems: Mapping[str, Any]) -> str | None:
    """The catalogue problem whose story shares the most words with ``text`` (at least three)."""
    said = set(words(text))
    best, score = None, 2
    for name, prob in problems.items():
        story = set()
        for level in ("surface", "detail", "core"):
            for line in prob[level]:
                story.update(w for w in words(line) if len(w) > 3)
        story.update(prob.get("topics", []))
        overlap = len(said & story)
        if overlap > score:
            best, score = name, overlap
    return best


def read_support(t: Transcript, recognizer: ActRecognizer, problems: Mapping[str, Any]) -> dict[str, Any]:
    """Risk, the wish for advice, how far the story came out, the problem, the agent's moves."""
    replies = [r or "" for r in t.replies]
    advice = None
    for r in replies:
        if JUST_LISTEN.search(r):
            advice = "listen"
        elif PRACTICAL.search(r) and advice is None:
            advice = "practical"
    uses: dict[str, int] = {}
    for text in t.agent_turns:
        for a in recognizer.analyse(text).acts:
            uses[a] = uses.get(a, 0) + 1
    return {
        "risk_at": [k for k, r in enumerate(replies) if RISK.search(r)],
        "advice": advice,
        "depth": sum(bool(DISCLOSE.search(s)) for r in replies for s in re.split(r"(?<=[.!?])\s+", r)),
        "told_all": any(NOTHING_NEW.search(r) for r in replies),
        "understood": sum(bool(UNDERSTOOD.search(r)) for r in replies),
        "good_ideas": sum(bool(GOOD_IDEA.search(r)) for r in replies),
        "enough": any(ENOUGH.search(r) for r in replies),
        "problem": which_problem(" ".join([t.opening, *replies]), problems),
        "uses": uses,
    }


class HindsightSupporter(Agent):
    """Explores, comforts and (for people who want it, in hindsight) suggests; answers risk at once."""

    name = "counsel-hindsight"
    COMFORT = ("reflection", "affirmation", "restatement", "information")

    def __init__(self, facts: Mapping[str, Any], recognizer: ActRecognizer, card: Mapping[str, Any]) -> None:
        self.facts = dict(facts)
        self.recognizer = recognizer
        self.problems = card["problems"]
        self.max_turns = int(card.get("max_turns", 10))

    def act(self, messages: Messages, persona: Mapping[str, Any] | None = None) -> str:
        t = Transcript.of(messages)
        turn = t.turns
        replies = [r or "" for r in t.replies]
        if (replies and RISK.search(replies[-1])) or (turn == 0 and RISK.search(t.opening)):
            return REFER[turn % len(REFER)]
        now = read_support(t, self.recognizer, self.problems)
        uses = now["uses"]
        advice = now["advice"] or self.facts.get("advice")
        if turn >= self.max_turns - 1:
            return self.say(
                ["reflection" if uses.get("reflection", 0) <= 1 else "affirmation"],
                uses,
                messages,
                close=True,
            )
        if now["depth"] < 3 and not now["told_all"]:
            last = replies[-1] if replies else ""
            if turn == 0 or DEFLECT.search(last):
                builder = ["reflection", "affirmation" if now["depth"] == 0 else "restatement"]
                return self.say(builder if turn else ["reflection", "question"], uses, messages)
            lead = "reflection" if uses.get("reflection", 0) <= uses.get("restatement", 0) else "restatement"
            return self.say([lead, "question"], uses, messages)
        if now["enough"]:
            return self.say(["affirmation"], uses, messages, close=True)
        wants = advice == "practical" or (advice is None and turn >= self.max_turns - 3)
        if wants and now["understood"] >= 2 and now["good_ideas"] < 2 and uses.get("suggestion", 0) < 2:
            return self.say(
                ["suggestion"], uses, messages, problem=self.facts.get("problem") or now["problem"]
            )
        least = min(self.COMFORT, key=lambda a: (uses.get(a, 0), self.COMFORT.index(a)))
        second = min(
            (a for a in self.COMFORT if a != least), key=lambda a: (uses.get(a, 0), self.COMFORT.index(a))
        )
        return self.say([least, second], uses, messages)

    def say(
        self,
        acts: list[str],
        uses: Mapping[str, int],
        messages: Messages,
        close: bool = False,
        problem: str | None = None,
    ) -> str:
        """The acts in words, worded unlike the agent's earlier turns."""
        earlier = [set(words(m["content"])) for m in messages if m["role"] == "assistant"]
        text = ""
        for shift in range(6):
            parts = [self.phrase(a, uses.get(a, 0) + shift, problem) for a in acts]
            text = " ".join([*parts, OracleSupporter.CLOSE] if close else parts)
            mine = set(words(text))
            if all(len(mine & e) / max(len(mine | e), 1) < 0.6 for e in earlier):
                break
        return text

    def phrase(self, act: str, n: int, problem: str | None) -> str:
        options = OracleSupporter.PHRASES[act]
        text = options[n % len(options)]
        if act == "suggestion":
            ideas = self.problems.get(problem, {}).get("ideas") or [
                "taking one small step each day, like a short walk or writing down how you feel"
            ]
            text = text.format(idea=ideas[n % len(ideas)])
        return text


class CounselCritic(Critic):
    """Hindsight critic and rewriter for Counsel (see the module docstring)."""

    card_name = "counsel"

    def __init__(self, card: str | Mapping[str, Any] | None = None) -> None:
        super().__init__(card)
        self.recognizer = recognizer_from_card(self.card)

    def read(self, t: Transcript) -> dict[str, Any]:
        facts = read_support(t, self.recognizer, self.card["problems"])
        facts.pop("uses")
        return facts

    def find(self, t: Transcript, facts: Mapping[str, Any]) -> list[Flag]:
        flags: list[Flag] = []
        replies = [r or "" for r in t.replies]
        for k, (text, reply) in enumerate(zip(t.agent_turns, replies, strict=True)):
            acts = self.recognizer.analyse(text).acts
            before = replies[k - 1] if k else t.opening
            if (RISK.search(before) and "refer_help" not in acts) or IGNORED.search(reply):
                flags.append(
                    Flag(k, "risk_ignored", f"turn {k} did not answer the person's risk disclosure with help")
                )
            elif PREMATURE.search(reply):
                flags.append(
                    Flag(k, "premature_advice", f"turn {k} gave advice before the person felt heard")
                )
            elif JUST_LISTEN.search(reply):
                flags.append(
                    Flag(
                        k, "unwanted_advice", f"turn {k} gave advice to someone who wanted to be listened to"
                    )
                )
            elif HOLLOW.search(reply):
                flags.append(Flag(k, "hollow", f"turn {k} reassured before the person had shared anything"))
            elif SELF_FOCUS.search(reply):
                flags.append(Flag(k, "self_focus", f"turn {k} turned to the supporter's own story too early"))
            elif UNNEEDED.search(reply):
                flags.append(
                    Flag(k, "unneeded_referral", f"turn {k} referred to a professional without any risk")
                )
            elif UNCLEAR.search(reply):
                flags.append(Flag(k, "unclear", f"turn {k} was unclear or repeated itself"))
            elif LEFT.search(reply):
                flags.append(Flag(k, "left", f"the person gave up on the chat after turn {k}"))
            elif "close" in acts and FLAT_BYE.search(reply):
                flags.append(Flag(k, "early_close", f"turn {k} said goodbye while the person felt no better"))
        return flags

    def agent(self, facts: Mapping[str, Any]) -> Agent:
        return HindsightSupporter(facts, self.recognizer, self.card)
