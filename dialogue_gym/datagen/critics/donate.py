"""Hindsight for Donate: asks before rapport, appeals that put the persuadee off, never asking.

What the whole chat reveals (``read``): what moves the persuadee (the task's ``STYLE_HINTS`` read
in every reply, not just the answer to a personal question), whether they distrust the charity,
which appeals landed, fell flat or backfired, whether and how the ask was answered. It works on
real PersuasionForGood text as well as on the scripted persuadee's replies: the agent's turns are
read with the card's act recognizer, the persuadee's with plain cue patterns.

Flagged turns (``find``): an ask before any rapport or one the persuadee called pushy, a repeated
ask, an appeal they pushed back on (or one that fell flat when the chat later showed what moves
them), an ask they turned down after too little persuasion, nosy, tiresome or confusing turns,
the turn before they left, and a chat that ended without an ask.

The :class:`HindsightPersuader` builds rapport, uses the appeals that (in hindsight) move this
person and never the ones that backfired, asks once, and closes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dialogue_gym.agents.base import Agent, Messages
from dialogue_gym.core.scripted import recognizer_from_card
from dialogue_gym.core.text import ActRecognizer, words
from dialogue_gym.datagen.hindsight import Critic, Flag, Transcript
from dialogue_gym.tasks.donate import APPEALS, LINES, SAFE_APPEALS, STYLE_HINTS

# Talk about the charity and the children it helps says nothing about what moves the persuadee.
_CHARITY = re.compile(
    r"save the children|(?:help(?:s|ing)?|the|these|those|poor|needy|for|to) (?:kids|children)|"
    r"(?:kids|children) (?:in need|around the world|worldwide|in (?:syria|africa|poverty))",
    re.I,
)
DISTRUST = re.compile(r"how do i know|overhead|not sure i trust|who checks|\bscams?\b|don't trust", re.I)
BACKFIRE = re.compile(r"guilt|doesn't really work on me|manipulat|don't like being (?:pushed|guilted)", re.I)
STRONG = re.compile(
    r"really gets to me|really convincing|makes me want to help|that's so sad|heartbreaking", re.I
)
MILD = re.compile(r"fair point|good to know|makes sense|that's great|interesting", re.I)
PUSHY = re.compile(r"already asking for money|a bit fast|haven't even told me|only just started", re.I)
REPEAT_ASK = re.compile(r"already asked|heard you the first time|stop pushing", re.I)
NOSY = re.compile(
    r"so many questions|like an interview|move on from all the questions|asking a lot of questions|"
    r"kind of personal|told you enough",
    re.I,
)
TIRED = re.compile(r"what did you want to talk about|something specific this chat|get to the point", re.I)
CONFUSED = re.compile(
    r"not sure what you mean|what are we supposed to talk about|don't follow|didn't make much sense|"
    r"a lot of words|"
    r"say that normally|you just said that|keep saying the same|repeating yourself|weird thing to say|"
    r"kind of trick|uneasy|don't trust this",
    re.I,
)
LEFT = re.compile(r"i'm done here|end the chat|i'm leaving|don't contact me", re.I)
REFUSAL = re.compile(
    r"don't think i'll donate|rather keep|no thanks|not interested|can(?:no|')t afford|rather not|"
    r"not (?:going to|gonna) donate|won't donate|i'll pass|don't (?:want|plan) to donate|need the money",
    re.I,
)
ASK = re.compile(
    r"\b(?:donat\w*|give|giving|contribut\w*|spare|chip in|pitch in)\b[^?]*\?|"
    r"\bhow much\b[^?]*\?",
    re.I,
)
AGREE = re.compile(
    r"happy to (?:give|donate)|donate a good part|count me in|"
    r"i(?:'ll| will|'d| would| can) (?:\w+ )?(?:donate|give|help)|"
    r"\bwilling\b|\$\s?\d|\d+ cents|\b(?:yes|sure)\b",
    re.I,
)


def style_appeals(replies: list[str]) -> list[str]:
    """The appeals that fit what the persuadee said about themselves (the charity's name aside)."""
    out: list[str] = []
    for reply in replies:
        text = _CHARITY.sub("", reply)
        for pattern, fits in STYLE_HINTS:
            if pattern.search(text):
                out += [a for a in fits if a not in out]
    return out


def agent_acts(text: str, recognizer: ActRecognizer, history: list[str]) -> tuple[str, ...]:
    """The card's acts in an agent turn, plus ``donation_ask`` for a question about giving that the
    cue list misses (real persuaders ask in many ways: "How about throwing half to the kids?")."""
    acts = recognizer.analyse(text, history).acts
    if "donation_ask" not in acts and ASK.search(text):
        acts = (*acts, "donation_ask")
    return acts


def read_chat(t: Transcript, recognizer: ActRecognizer) -> dict[str, Any]:
    """What the chat reveals: what moves them, what backfired, and the agent's moves so far."""
    replies = [r or "" for r in t.replies]
    uses: dict[str, int] = {}
    backfired: list[str] = []
    landed: list[str] = []
    flat: list[str] = []
    history: list[str] = []
    for text, reply in zip(t.agent_turns, replies, strict=True):
        acts = agent_acts(text, recognizer, history)
        history.append(text)
        for a in acts:
            uses[a] = uses.get(a, 0) + 1
        appeals = [a for a in acts if a in APPEALS]
        if BACKFIRE.search(reply):
            backfired += [a for a in appeals if a not in backfired]
        elif STRONG.search(reply) or MILD.search(reply):
            landed += [a for a in appeals if a not in landed]
        elif appeals:
            flat += [a for a in appeals if a not in flat]
    return {
        "moved_by": style_appeals([*replies, t.opening]),
        "distrust": any(DISTRUST.search(r) for r in replies),
        "backfired": backfired,
        "landed": landed,
        "flat": flat,
        "uses": uses,
        "asked": uses.get("donation_ask", 0),
        "agreed": any(AGREE.search(r) for r in replies),
        "left": any(LEFT.search(r) for r in replies),
    }


class HindsightPersuader(Agent):
    """Rapport, then the appeals that move this person (in hindsight), one ask, and a close."""

    name = "donate-hindsight"

    def __init__(self, facts: Mapping[str, Any], recognizer: ActRecognizer, max_turns: int = 10) -> None:
        self.facts = dict(facts)
        self.recognizer = recognizer
        self.max_turns = max_turns

    def plan_appeals(self, now: Mapping[str, Any]) -> list[str]:
        """Appeals in order of promise: ones that landed, ones that fit the person, safe ones;
        never one that backfired (now or in hindsight)."""
        hind = self.facts
        order = [*hind.get("landed", []), *now["landed"], *hind.get("moved_by", []), *now["moved_by"]]
        if hind.get("distrust") or now["distrust"]:
            order.insert(0, "credibility_appeal")
        order += list(SAFE_APPEALS)
        bad = {*hind.get("backfired", []), *now["backfired"]}
        out: list[str] = []
        for a in order:
            if a not in bad and a not in out:
                out.append(a)
        return out

    def act(self, messages: Messages, persona: Mapping[str, Any] | None = None) -> str:
        t = Transcript.of(messages)
        now = read_chat(t, self.recognizer)
        uses, turn = now["uses"], t.turns
        budget = max(self.max_turns, self.facts.get("source_turns", 0))
        used = sum(uses.get(a, 0) for a in APPEALS)
        fresh = [a for a in self.plan_appeals(now) if not uses.get(a)]
        if now["left"] or turn >= budget - 1:
            return self.line("close", messages)
        if now["asked"]:  # asked already (perhaps too early): persuade a little more, never ask again
            return self.line(fresh[0] if used < 2 and fresh else "close", messages)
        if turn >= budget - 2:
            return self.line("donation_ask", messages)
        if not uses.get("greeting"):
            return self.line("greeting", messages)
        if not uses.get("personal_inquiry"):
            return self.line("personal_inquiry", messages)
        if used < 2 and fresh:
            return self.line(fresh[0], messages)
        return self.line("donation_ask", messages)

    def line(self, move: str, messages: Messages) -> str:
        """A phrasing of ``move`` unlike anything the agent said before."""
        said = [set(words(m["content"])) for m in messages if m["role"] == "assistant"]
        for option in LINES[move]:
            mine = set(words(option))
            if all(len(mine & s) / max(len(mine | s), 1) < 0.6 for s in said):
                return option
        return LINES[move][len(said) % len(LINES[move])]


class DonateCritic(Critic):
    """Hindsight critic and rewriter for Donate (see the module docstring)."""

    card_name = "donate"

    def __init__(self, card: str | Mapping[str, Any] | None = None) -> None:
        super().__init__(card)
        vocab = [str(self.card.get("charity", "")), "donate", "charity", "children"]
        self.recognizer = recognizer_from_card(self.card, vocab)
        self.max_turns = int(self.card.get("max_turns", 10))

    def read(self, t: Transcript) -> dict[str, Any]:
        facts = read_chat(t, self.recognizer)
        # the moves of the original are not facts about the person; drop them
        for key in ("uses", "asked"):
            facts.pop(key)
        facts["source_turns"] = t.turns  # real chats run longer than the task's budget
        return facts

    def find(self, t: Transcript, facts: Mapping[str, Any]) -> list[Flag]:
        flags: list[Flag] = []
        replies = [r or "" for r in t.replies]
        history: list[str] = []
        seen: dict[str, int] = {}
        asked_at: list[int] = []
        for k, (text, reply) in enumerate(zip(t.agent_turns, replies, strict=True)):
            acts = agent_acts(text, self.recognizer, history)
            history.append(text)
            appeals = [a for a in acts if a in APPEALS]
            rapport = seen.get("greeting", 0) + seen.get("personal_inquiry", 0)
            n_appeals = sum(seen.get(a, 0) for a in APPEALS)
            for a in acts:
                seen[a] = seen.get(a, 0) + 1
            agreed = any(AGREE.search(r) and not REFUSAL.search(r) for r in replies[:k])
            if "donation_ask" in acts:
                asked_at.append(k)
                nagging = len(asked_at) > 1 and asked_at[-2] == k - 1 and not agreed
                if REPEAT_ASK.search(reply) or nagging:
                    flags.append(
                        Flag(k, "repeat_ask", f"turn {k} asked again after the persuadee had been asked")
                    )
                elif PUSHY.search(reply) or (rapport == 0 and not AGREE.search(reply)):
                    flags.append(
                        Flag(k, "early_ask", f"turn {k} asked for money before building any rapport")
                    )
                elif REFUSAL.search(reply) and n_appeals < 2:
                    flags.append(
                        Flag(
                            k,
                            "weak_ask",
                            f"turn {k} asked after too little persuasion; the persuadee declined",
                        )
                    )
            if BACKFIRE.search(reply) and appeals:
                flags.append(
                    Flag(
                        k,
                        "backfire",
                        f"turn {k} used {', '.join(appeals)}; the persuadee said it puts them off",
                    )
                )
            elif (
                appeals
                and facts["moved_by"]
                and not set(appeals) & set(facts["moved_by"])
                and not (STRONG.search(reply) or MILD.search(reply))
            ):
                flags.append(
                    Flag(
                        k,
                        "misfit",
                        f"turn {k} used {', '.join(appeals)}, which fell flat; the persuadee later "
                        f"showed they respond to {', '.join(facts['moved_by'][:2])}",
                    )
                )
            elif NOSY.search(reply) or TIRED.search(reply) or CONFUSED.search(reply):
                flags.append(Flag(k, "wasted", f"turn {k} annoyed the persuadee (nosy, idle or confusing)"))
            elif LEFT.search(reply):
                flags.append(Flag(k, "left", f"the persuadee left after turn {k}"))
            elif "close" in acts and not asked_at:
                flags.append(Flag(k, "no_ask", f"turn {k} ended the chat without ever asking for a donation"))
            elif REFUSAL.search(reply) and "donation_ask" not in acts and (appeals or not acts):
                flags.append(Flag(k, "refusal", f"the persuadee turned the donation down after turn {k}"))
        if t.turns and not asked_at and not any(f.kind == "no_ask" for f in flags):
            k = t.turns - 1
            flags.append(Flag(k, "no_ask", f"the chat ended at turn {k} without ever asking for a donation"))
        return flags

    def agent(self, facts: Mapping[str, Any]) -> Agent:
        return HindsightPersuader(facts, self.recognizer, self.max_turns)
