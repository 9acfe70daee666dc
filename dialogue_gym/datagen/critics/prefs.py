"""Hindsight for Prefs: recommending before asking, broken constraints, wasted questions.

What the whole chat reveals (``read``): everything the traveller said about themes, pace,
setting, time and the hard constraints (the task's own ``read_traveller``, plus constraints that
only surfaced as a reaction to a floated activity, e.g. "too pricey for me"), how they took the
final recommendation, activities they turned down, whether they are chatty or busy, and when they
grew impatient or left.

Flagged turns (``find``): a recommendation the traveller disliked or that broke a constraint
(revealed anywhere, even later) or that came before the constraints were asked, open questions
that drew only vague answers, questions about what was already answered, small talk with a busy
traveller, unclear turns, the turn before they left, and a chat that ran out without a plan.

The :class:`HindsightTravelAgent` asks only what the chat never revealed (constraints first),
stops asking before the traveller's patience ran out in the original, and recommends the best
picks under everything known, skipping the ones the traveller turned down.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dialogue_gym.agents.base import Agent, Messages
from dialogue_gym.core.scripted import recognizer_from_card
from dialogue_gym.core.text import ActRecognizer
from dialogue_gym.datagen.hindsight import Critic, Flag, Transcript
from dialogue_gym.tasks.prefs import (
    UTILITY_DEFAULTS,
    CatalogueTable,
    CompetentAgent,
    parse_catalogue,
    read_traveller,
    recommend_line,
    theme_labels,
)

CONSTRAINTS = ("budget", "kids", "mobility")
CHATTY = re.compile(r"excited|can't wait|looking forward", re.I)
IMPATIENT = re.compile(r"suggest something soon|actual suggestions|running short on time", re.I)
LEAVE = re.compile(r"plan this myself|taking too long|look online", re.I)
VAGUE = re.compile(
    r"bit of everything|open to anything|nothing in particular|a mix of things|some of them, i suppose|"
    r"more than others|a few of those",
    re.I,
)
ASKED_AGAIN = re.compile(r"as i said before|i already told you|like i mentioned", re.I)
CURT = re.compile(r"^(?:fine, thanks|i'm fine\. let's keep going|good, thanks\. can we focus)", re.I)
UNCLEAR = re.compile(
    r"not sure what you mean|didn't quite follow|what are you asking|lot of words|getting a bit lost|"
    r"make sense, please|"
    r"you already said that|repeating yourself|strange thing to say|bizarre|which activities|haven't named|"
    r"one at a time|too many at once|long list|whole list|not a brochure|too many options",
    re.I,
)
HAPPY = re.compile(r"perfect trip|book those right away|you really get me", re.I)
OKAY = re.compile(r"should be fine|go with those|sounds reasonable", re.I)
POOR = re.compile(r"not sure that's really me|not what i had in mind|i'll think about it", re.I)
VIOLATION = re.compile(r"won't work for me|impossible for me|don't work for me at all", re.I)
TOO_PRICEY = re.compile(r"more than i want to spend|too pricey|over my budget", re.I)
NOT_FOR_KIDS = re.compile(r"with the kids|take the children|for my kids", re.I)
NOT_ACCESSIBLE = re.compile(r"isn't step-free|too hard for me to get around|not accessible", re.I)
DISLIKED = re.compile(r"not really my thing|not keen|rather not do", re.I)


def named(text: str, names: Sequence[str]) -> list[str]:
    """Catalogue names mentioned in ``text``, in catalogue order."""
    low = text.lower()
    return [n for n in names if n.lower() in low]


def read_trip(t: Transcript, recognizer: ActRecognizer) -> dict[str, Any]:
    """What the traveller revealed, how they reacted, and when their patience showed."""
    catalogue, _, _ = parse_catalogue(t.system)
    names = [a["name"] for a in catalogue]
    cost = {a["name"]: a["cost"] for a in catalogue}
    replies = [r or "" for r in t.replies]
    known = read_traveller([t.opening, *replies], theme_labels(t.system))
    rejected: list[str] = []
    accepted: list[str] = []
    recommended: list[str] = []
    verdict = None
    impatient_at = left_at = None
    for k, (text, reply) in enumerate(zip(t.agent_turns, replies, strict=True)):
        acts = recognizer.analyse(text).acts
        mentioned = named(text, names)
        if "recommend" in acts and mentioned:
            recommended = mentioned
            readings = (("violation", VIOLATION), ("happy", HAPPY), ("ok", OKAY), ("poor", POOR))
            verdict = next((v for v, pat in readings if pat.search(reply)), verdict)
            if verdict in ("violation", "poor"):
                rejected += [n for n in mentioned if n not in rejected]
            elif verdict in ("happy", "ok"):
                accepted += [n for n in mentioned if n not in accepted]
        if len(mentioned) == 1 and "recommend" not in acts:
            if TOO_PRICEY.search(reply):
                cap = cost[mentioned[0]] - 1
                if known.get("budget") is None or known["budget"] > cap:
                    known["budget"] = cap
            if NOT_FOR_KIDS.search(reply):
                known["kids"] = True
            if NOT_ACCESSIBLE.search(reply):
                known["mobility"] = True
            if DISLIKED.search(reply) or TOO_PRICEY.search(reply) or NOT_FOR_KIDS.search(reply):
                rejected += [n for n in mentioned if n not in rejected]
        if impatient_at is None and IMPATIENT.search(reply):
            impatient_at = k
        if left_at is None and LEAVE.search(reply):
            left_at = k
    return {
        "known": known,
        "style": "chatty" if CHATTY.search(t.opening) else "busy",
        "recommended": recommended,
        "verdict": verdict,
        "rejected": rejected,
        "accepted": accepted,
        "impatient_at": impatient_at,
        "left_at": left_at,
    }


class HindsightTravelAgent(Agent):
    """Asks only what the whole chat never revealed, stops before the traveller's patience ran
    out in the original, and recommends the best picks under everything known."""

    name = "prefs-hindsight"

    def __init__(self, facts: Mapping[str, Any], recognizer: ActRecognizer) -> None:
        self.facts = dict(facts)
        self.recognizer = recognizer
        self.asker = CompetentAgent()

    def knowledge(self, t: Transcript) -> dict[str, Any]:
        """What this conversation revealed, with the gaps filled from hindsight."""
        now = read_trip(t, self.recognizer)["known"]
        hind = self.facts.get("known", {})
        known = {**hind, **now, "weights": {**hind.get("weights", {}), **now["weights"]}}
        return known

    def act(self, messages: Messages, persona: Mapping[str, Any] | None = None) -> str:
        t = Transcript.of(messages)
        turn = t.turns
        known = self.knowledge(t)
        labels = theme_labels(t.system)
        # an impatient reply to turn j still takes a recommendation at j + 1; one who left after j
        # needed it at j
        limits = [
            self.facts[key] + shift
            for key, shift in (("impatient_at", 1), ("left_at", 0))
            if self.facts.get(key) is not None
        ]
        patience = 5 if self.facts.get("style") == "chatty" else 3
        deadline = min([patience, *limits])
        replies = [r for r in t.replies if r]
        if turn >= deadline or (replies and IMPATIENT.search(replies[-1])):
            return self.recommend(t, known, turn)
        asked = " ".join(t.agent_turns).lower()
        unknown = [c for c in CONSTRAINTS if c not in known]
        if unknown and "budget" not in asked:
            return self.constraint_question(unknown)
        themes = [
            th
            for th in labels
            if th not in known["weights"]
            and labels[th].lower() not in asked
            and not (th == "nightlife" and known.get("kids"))
        ]
        themes.sort(
            key=lambda th: CompetentAgent.theme_order.index(th) if th in CompetentAgent.theme_order else 99
        )
        if themes:
            return self.asker.question(themes[:2], labels, turn)
        if "pace" not in known and "pace" not in asked:
            return self.asker.question(["pace", "setting"], labels, turn)
        return self.recommend(t, known, turn)

    @staticmethod
    def constraint_question(unknown: Sequence[str]) -> str:
        parts = {
            "budget": "is there a budget per activity",
            "kids": "will any kids be coming along",
            "mobility": "does anyone need step-free access",
        }
        asks = [parts[c] for c in CONSTRAINTS if c in unknown]
        return "Before I suggest anything: " + ", and ".join(asks) + "?"

    def recommend(self, t: Transcript, known: Mapping[str, Any], turn: int) -> str:
        """The best k under what is known: activities the traveller turned down come last, ones
        they accepted in the original get a little credit."""
        catalogue, k, _ = parse_catalogue(t.system)
        labels = theme_labels(t.system)
        themes = list(labels) or sorted({th for a in catalogue for th in a["themes"]})
        est = {
            "weights": {th: known["weights"].get(th, 0.2) for th in themes},
            "pace": known.get("pace"),
            "setting": known.get("setting", "either"),
            "short_time": known.get("time", 0.35),
            "budget": known.get("budget"),
            "kids": known.get("kids", False),
            "mobility": known.get("mobility", False),
        }
        table = CatalogueTable(catalogue, themes, UTILITY_DEFAULTS)
        u = table.utilities(est)
        rejected, accepted = set(self.facts.get("rejected", [])), set(self.facts.get("accepted", []))
        u = u - 10.0 * np.array([n in rejected for n in table.names])
        u = u + 0.3 * np.array([n in accepted for n in table.names])
        picks = [n for _, n in table.best(est, k, u)]
        return recommend_line(picks, turn)


class PrefsCritic(Critic):
    """Hindsight critic and rewriter for Prefs (see the module docstring)."""

    card_name = "prefs"

    def __init__(self, card: str | Mapping[str, Any] | None = None) -> None:
        super().__init__(card)
        vocab = [a["name"] for a in self.card["catalogue"]] + [
            s["label"] for s in self.card["topics"].values()
        ]
        self.recognizer = recognizer_from_card(self.card, vocab)

    def read(self, t: Transcript) -> dict[str, Any]:
        return read_trip(t, self.recognizer)

    def find(self, t: Transcript, facts: Mapping[str, Any]) -> list[Flag]:
        catalogue, _, _ = parse_catalogue(t.system)
        names = [a["name"] for a in catalogue]
        table = CatalogueTable(
            catalogue, sorted({th for a in catalogue for th in a["themes"]}), UTILITY_DEFAULTS
        )
        known = facts["known"]
        hated = {th for th, w in known["weights"].items() if w < 0}
        busy = facts["style"] == "busy"
        flags: list[Flag] = []
        replies = [r or "" for r in t.replies]
        recommended = False
        for k, (text, reply) in enumerate(zip(t.agent_turns, replies, strict=True)):
            acts = self.recognizer.analyse(text).acts
            picks = named(text, names)
            impatient = any(IMPATIENT.search(r) for r in replies[:k])
            if "recommend" in acts and picks:
                recommended = True
                before = read_traveller([t.opening, *replies[:k]], theme_labels(t.system))
                broken = [n for n in picks if table.broken(names.index(n), known)]
                misfit = [n for n in picks if hated & set(catalogue[names.index(n)]["themes"])]
                if VIOLATION.search(reply) or broken:
                    what = (
                        f"{', '.join(broken)} broke a constraint"
                        if broken
                        else "some picks broke a constraint"
                    )
                    flags.append(
                        Flag(k, "violation", f"turn {k} recommended too soon: {what} the traveller had")
                    )
                elif misfit:
                    flags.append(
                        Flag(
                            k,
                            "misfit",
                            f"turn {k} recommended {', '.join(misfit)}, which the traveller dislikes",
                        )
                    )
                elif not HAPPY.search(reply) and (
                    any(c not in before for c in CONSTRAINTS)
                    or (POOR.search(reply) and len(before["weights"]) < 2 and not impatient)
                ):
                    flags.append(
                        Flag(
                            k,
                            "premature",
                            f"turn {k} recommended before knowing the traveller; they were lukewarm",
                        )
                    )
            elif LEAVE.search(reply):
                flags.append(Flag(k, "left", f"the traveller left after turn {k} without a recommendation"))
            elif VAGUE.search(reply):
                flags.append(Flag(k, "vague", f"turn {k} asked too broadly; the traveller stayed vague"))
            elif ASKED_AGAIN.search(reply):
                flags.append(
                    Flag(k, "asked_again", f"turn {k} asked about something the traveller had answered")
                )
            elif busy and CURT.search(reply):
                flags.append(Flag(k, "small_talk", f"turn {k} made small talk with a traveller in a hurry"))
            elif UNCLEAR.search(reply):
                flags.append(Flag(k, "unclear", f"turn {k} was unclear or listed too much at once"))
        if t.turns and not recommended and facts["left_at"] is None:
            flags.append(Flag(t.turns - 1, "no_plan", "the chat ran out of turns without a recommendation"))
        return flags

    def agent(self, facts: Mapping[str, Any]) -> Agent:
        return HindsightTravelAgent(facts, self.recognizer)
