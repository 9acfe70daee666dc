"""Donate: persuade a crowd worker to give part of their $2 payment to Save the Children.

A PersuasionForGood-style task (Wang et al., ACL 2019). The persuadee was paid $2 for a task and
may give any part of it ($0-$2) to the charity; the agent is the persuader.

Act taxonomy (the card's ``acts``; one act per sentence, at most two per turn):

* ``greeting`` - hello / small talk; builds a little rapport, too much of it bores.
* ``personal_inquiry`` - personal-related inquiry (kids, work, what they care about); builds
  rapport and, once the persuadee trusts the agent enough, reveals their motivational style.
* ``task_inquiry`` - task-related inquiry (do they donate?); reveals their prior inclination.
* ``source_inquiry`` - source-related inquiry (do they know the charity?); reveals their trust.
* ``logical_appeal``, ``emotion_appeal``, ``credibility_appeal``, ``foot_in_the_door``,
  ``self_modeling``, ``personal_story``, ``donation_information`` - the seven persuasive
  strategies; each moves willingness by the persona's receptivity to it (negative = backfires).
* ``donation_ask`` - the explicit proposition; pushy before rapport, annoying when repeated.
* ``close`` - ends the conversation; the donation is then decided.

Hidden state (per episode, from the persona): Big Five traits; a motivational style (heart, head,
skeptic, social, frugal) with a receptivity per appeal; willingness (starts at the prior
inclination); rapport; annoyance against a patience threshold (past it they refuse and leave);
whether and how often they were asked; which appeals were used.

Reward: the donation in dollars, $0-$2, decided when the episode ends (closed, left or truncated):
effective willingness = willingness - annoyance penalty - (never asked penalty) + noise drawn at the
start, mapped through the card's donation ladder of round amounts. A persuadee who left gives $0.
The persona population is calibrated so that the competent agent reproduces the real
PersuasionForGood donation distribution (``benchmarks/donate_calibration.py``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from dialogue_gym.agents.base import Agent, Messages, agent_turns, human_turns
from dialogue_gym.core.cards import TaskCardError
from dialogue_gym.core.env import DialogueEnv
from dialogue_gym.core.human import HumanReply, Outcome, Question
from dialogue_gym.core.scripted import ScriptedHuman
from dialogue_gym.core.text import Analysis

APPEALS = (
    "logical_appeal",
    "emotion_appeal",
    "credibility_appeal",
    "foot_in_the_door",
    "self_modeling",
    "personal_story",
    "donation_information",
)
INQUIRIES = ("personal_inquiry", "task_inquiry", "source_inquiry")
ACTS = ("greeting", *INQUIRIES, *APPEALS, "donation_ask", "close")
STYLES = ("heart", "head", "skeptic", "social", "frugal")
REPLY_KEYS = (
    "opening",
    "greeting",
    "small_talk_tired",
    *(f"personal_open_{s}" for s in STYLES),
    "personal_guarded",
    "personal_again",
    "task_low",
    "task_mid",
    "task_high",
    "source_distrust",
    "source_trust",
    "appeal_strong",
    "appeal_mild",
    "appeal_flat",
    "appeal_backfire",
    "ask_yes",
    "ask_maybe",
    "ask_no",
    "ask_pushy",
    "ask_again",
    "interrogation",
    "off_topic",
    "confused",
    "repeated",
    "distrust",
    "close_giving",
    "close_cold",
    "leave",
)


# --- persona sampling ----------------------------------------------------------------------------
def _clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def sample_donate_persona(card: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Draw a persuadee: traits, motivational style, receptivities, inclination, patience, reserve.

    All normal draws come from one vectorised call (per-scalar numpy calls dominate reset time).
    """
    pc = card["persona"]
    tspec, styles = pc["traits"], pc["styles"]
    z = iter(rng.standard_normal(len(tspec) + len(APPEALS) + 2).tolist())
    traits = {name: round(_clip(s["mean"] + s["sd"] * next(z), 1.0, 5.0), 2) for name, s in tspec.items()}
    logits = [
        math.log(spec["weight"]) + sum(c * (traits[t] - 3.0) for t, c in spec.get("traits", {}).items())
        for spec in styles.values()
    ]
    top = max(logits)
    weights = [math.exp(v - top) for v in logits]
    u = float(rng.random()) * sum(weights)
    names = list(styles)
    style = names[-1]
    for name, w in zip(names, weights, strict=True):
        if u < w:
            style = name
            break
        u -= w
    base, noise = styles[style]["receptivity"], pc["receptivity_noise"]
    receptivity = {a: round(_clip(base[a] + noise * next(z), -1.0, 1.2), 3) for a in APPEALS}
    inc, pat, res = pc["inclination"], pc["patience"], pc["reserve"]
    agree = traits["agreeable"] - tspec["agreeable"]["mean"]
    inclination = float(rng.beta(inc["a"], inc["b"])) + inc["agreeable_shift"] * agree
    patience = pat["base"] + pat["agreeable"] * agree + pat["sd"] * next(z)
    reserve = res["base"] + res["extrovert"] * (traits["extrovert"] - 3.0) + res["sd"] * next(z)
    return {
        "traits": traits,
        "style": style,
        "receptivity": receptivity,
        "inclination": round(_clip(inclination, 0.0, 1.0), 3),
        "patience": round(_clip(patience, pat["min"], pat["max"]), 3),
        "reserve": round(_clip(reserve, res["min"], res["max"]), 3),
    }


# --- the scripted persuadee ------------------------------------------------------------------------
class ScriptedPersuadee(ScriptedHuman):
    """A PersuasionForGood-style persuadee: willingness, rapport and annoyance move with the agent's acts."""

    def __init__(self, card: Mapping[str, Any]) -> None:
        super().__init__(card, vocabulary=[str(card.get("charity", "")), "donate", "charity", "children"])
        self.dyn = card["dynamics"]
        self.annoy = self.dyn["annoyance"]
        self.rapport_gain = self.dyn["rapport"]
        self.out = card["outcome"]
        self.ladder = [(float(t), float(a)) for t, a in self.out["ladder"]]
        self.max_donation = float(card.get("payment", 2.0))

    def start(self) -> str:
        p = self.persona
        self.willingness = float(p["inclination"])
        self.rapport = 0.0
        self.annoyance = 0.0
        self.asks = 0
        self.left = False
        self.opened_up = False
        self.uses: dict[str, int] = {}
        self.decision_noise = float(self.rng.normal(0.0, self.out["noise"]))
        return self.say("opening")

    def say(self, key: str, **slots: Any) -> str:
        """A template variant for ``key`` picked with ``self.rng.random()`` (cheaper than ``integers``)."""
        variants = self.templates[key]
        text = variants[int(self.rng.random() * len(variants))]
        return text.format(**slots) if slots else text

    # the effective willingness that decides the donation (noise excluded: used for replies too)
    def _effective(self) -> float:
        e = self.willingness - self.out["annoyance_weight"] * self.annoyance
        return e if self.asks else e - self.out["unasked_penalty"]

    def _annoy(self, amount: float) -> None:
        self.annoyance += amount

    def _appeal(self, act: str, n: int) -> str:
        r = float(self.persona["receptivity"][act])
        scale = self.dyn["rapport_floor"] + (1.0 - self.dyn["rapport_floor"]) * min(
            self.rapport / self.dyn["rapport_full"], 1.0
        )
        delta = self.dyn["appeal_gain"] * r * scale * self.dyn["reuse_decay"] ** n
        if delta >= 0:
            self.willingness += delta * (1.0 - self.willingness)
        else:
            self.willingness += delta * self.willingness
            self._annoy(self.annoy["backfire"] * -r)
        if act == "personal_story":
            self.rapport += self.rapport_gain["personal_story"]
        if delta < -0.02:
            return self.say("appeal_backfire")
        if delta > 0.12:
            return self.say("appeal_strong")
        return self.say("appeal_mild" if delta > 0.04 else "appeal_flat")

    def _inquiry(self, act: str, n: int) -> str:
        p = self.persona
        asked = sum(self.uses.get(a, 0) for a in INQUIRIES)
        if asked > self.dyn["inquiry_limit"]:
            self._annoy(self.annoy["nosy"])
            return self.say("interrogation")
        if act == "personal_inquiry":
            if n >= 2:
                self._annoy(self.annoy["nosy"])
                return self.say("personal_again")
            self.rapport += self.rapport_gain["personal_inquiry" if n == 0 else "personal_inquiry_again"]
            if self.rapport >= p["reserve"]:
                self.opened_up = True
                return self.say(f"personal_open_{p['style']}")
            return self.say("personal_guarded")
        self.rapport += self.rapport_gain[act]
        if n >= 1:
            self._annoy(self.annoy["nosy"])
            return self.say("interrogation")
        if act == "task_inquiry":
            inc = p["inclination"]
            return self.say("task_low" if inc < 0.35 else "task_mid" if inc < 0.6 else "task_high")
        return self.say("source_distrust" if p["style"] == "skeptic" else "source_trust")

    def _ask(self) -> str:
        self.asks += 1
        if self.asks > 1:
            self._annoy(self.annoy["repeat_ask"])
            return self.say("ask_again")
        if self.rapport < self.dyn["ask_needs_rapport"]:
            self._annoy(self.annoy["early_ask"])
            return self.say("ask_pushy")
        self.willingness += self.dyn["ask_boost"] * (1.0 - self.willingness)
        e = self._effective()
        return self.say("ask_yes" if e >= 0.75 else "ask_maybe" if e >= 0.5 else "ask_no")

    def react(self, utterance: str, analysis: Analysis) -> HumanReply:
        if not analysis.coherent:
            if analysis.injection:
                self._annoy(self.annoy["injection"])
                self.willingness -= self.dyn["distrust"] * self.willingness
                text = self.say("distrust")
            elif analysis.repeat:
                self._annoy(self.annoy["repeat"])
                text = self.say("repeated")
            else:
                self._annoy(self.annoy["stuffed" if analysis.stuffed else "gibberish"])
                if analysis.stuffed:
                    self.willingness -= self.dyn["distrust"] * self.willingness
                text = self.say("confused")
        elif not analysis.acts:
            self._annoy(self.annoy["off_topic"])
            text = self.say("off_topic")
        else:
            parts = []
            for act in analysis.acts:
                if act == "close":
                    bye = "close_giving" if self._effective() >= 0.5 else "close_cold"
                    return HumanReply(
                        " ".join([*parts, self.say(bye)]), ended=True, end_reason="agent_closed"
                    )
                n = self.uses.get(act, 0)
                self.uses[act] = n + 1
                if act == "greeting":
                    if n == 0:
                        self.rapport += self.rapport_gain["greeting"]
                    if n >= self.dyn["small_talk_limit"]:
                        self._annoy(self.annoy["small_talk"])
                        parts.append(self.say("small_talk_tired"))
                    else:
                        parts.append(self.say("greeting"))
                elif act in INQUIRIES:
                    parts.append(self._inquiry(act, n))
                elif act == "donation_ask":
                    parts.append(self._ask())
                else:
                    parts.append(self._appeal(act, n))
            text = " ".join(parts)
        if self.annoyance >= self.persona["patience"]:
            self.left = True
            return HumanReply(self.say("leave"), ended=True, end_reason="human_left")
        return HumanReply(text)

    def donation(self) -> float:
        """The amount given: the top ladder step the noisy effective willingness reaches ($0 if they left)."""
        if self.left:
            return 0.0
        e = self._effective() + self.decision_noise
        amount = 0.0
        for threshold, dollars in self.ladder:
            if e >= threshold:
                amount = dollars
        return min(amount, self.max_donation)

    def outcome(self) -> Outcome:
        amount = self.donation()
        return Outcome(
            reward=amount,
            breakdown={
                "donation": amount,
                "willingness": round(self.willingness, 4),
                "annoyance": round(self.annoyance, 4),
                "rapport": round(self.rapport, 4),
                "asked": self.asks,
                "left": self.left,
                "strategies": dict(self.uses),
            },
            success=amount > 0,
        )


# --- the env -----------------------------------------------------------------------------------
class DonateEnv(DialogueEnv):
    """Persuade a PersuasionForGood-style persuadee to give part of their $2 payment to Save the Children."""

    card_name = "donate"
    card_schema = {
        "acts": dict,
        "replies": dict,
        "persona": dict,
        "dynamics": dict,
        "outcome": dict,
    }

    def validate_card(self, card: Mapping[str, Any]) -> None:
        """Check acts, replies, persona styles and the donation ladder; name the first fault."""
        for act in ACTS:
            spec = card["acts"].get(act)
            if not isinstance(spec, Mapping) or not spec.get("cues") or "example" not in spec:
                raise TaskCardError(f"donate card: act {act!r} needs 'cues' and an 'example'")
        for key in REPLY_KEYS:
            if not card["replies"].get(key):
                raise TaskCardError(f"donate card: replies lack template variants for {key!r}")
        pc = card["persona"]
        for key in ("traits", "inclination", "styles", "receptivity_noise", "patience", "reserve"):
            if key not in pc:
                raise TaskCardError(f"donate card: persona lacks {key!r}")
        if "agreeable" not in pc["traits"] or "extrovert" not in pc["traits"]:
            raise TaskCardError("donate card: persona traits need 'agreeable' and 'extrovert'")
        for style in STYLES:
            spec = pc["styles"].get(style)
            if not isinstance(spec, Mapping) or set(spec.get("receptivity", {})) != set(APPEALS):
                raise TaskCardError(f"donate card: style {style!r} needs a receptivity for each of {APPEALS}")
        ladder = card["outcome"].get("ladder", [])
        if not ladder or [t for t, _ in ladder] != sorted(t for t, _ in ladder):
            raise TaskCardError(
                "donate card: outcome.ladder must be a non-empty list of [threshold, dollars], sorted"
            )

    def sample_persona(self, rng: np.random.Generator) -> dict[str, Any]:
        """A persuadee from the card's calibrated population (only ``rng`` is used)."""
        return sample_donate_persona(self.card, rng)

    def role_instructions(self, persona: Mapping[str, Any]) -> str:
        """The persuader's brief: the charity and the $2 rules, nothing about this persuadee."""
        charity = self.card.get("charity", "Save the Children")
        pay = float(self.card.get("payment", 2.0))
        return (
            f"You are a persuader in a chat on a crowdsourcing platform. Your partner was paid ${pay:.2f} "
            f"for a task and may donate any part of it ($0 to ${pay:.2f}) to {charity}, a charity that "
            "helps children worldwide. Persuade them to donate. Build rapport, find out what matters to "
            "them, use fitting persuasion strategies, ask politely, and close the conversation when done. "
            "They decide the amount after the chat."
        )

    def make_scripted_human(self) -> ScriptedPersuadee:
        """The card-driven persuadee model."""
        return ScriptedPersuadee(self.card)

    # -- the same persona for an LLM human (dialogue_gym.humans) --
    def persona_brief(self, persona: Mapping[str, Any]) -> str:
        """The persuadee as instructions: payment, inclination, personality, what moves them."""
        pay = float(self.card.get("payment", 2.0))
        charity = self.card.get("charity", "Save the Children")
        traits = persona["traits"]
        rec = persona["receptivity"]
        moved = [a.replace("_", " ") for a, v in sorted(rec.items(), key=lambda kv: -kv[1]) if v > 0.3]
        cold = [a.replace("_", " ") for a, v in rec.items() if v < 0]
        incl = persona["inclination"]
        lean = (
            "inclined to give"
            if incl > 0.6
            else "unsure about giving"
            if incl > 0.3
            else "not inclined to give"
        )
        lines = [
            f"You are a worker on a crowdsourcing site who was just paid ${pay:.2f} for a task. "
            f"A stranger will chat with you; they may ask you to donate part of your payment to {charity}.",
            f"Before the chat you are {lean}.",
            f"Personality (1-5 scales): extroversion {traits['extrovert']}, "
            f"agreeableness {traits['agreeable']}, openness {traits['open']}, "
            f"neuroticism {traits['neurotic']}.",
            f"What can move you: {', '.join(moved) or 'very little'}."
            + (f" What puts you off: {', '.join(cold)}." if cold else ""),
            "Keep what matters to you to yourself until the persuader asks about you.",
            "You dislike being pushed: repeated requests make you less willing, and if the persuader keeps "
            "pushing you end the chat.",
        ]
        return "\n".join(lines)

    def opening_cue(self, persona: Mapping[str, Any]) -> str:
        return "The chat starts now. Greet your chat partner."

    def outcome_questions(self, persona: Mapping[str, Any]) -> list[Question]:
        pay = float(self.card.get("payment", 2.0))
        return [
            Question(
                "donation",
                f"How many dollars of your ${pay:.2f} payment do you donate to "
                f"{self.card.get('charity', 'Save the Children')}? You may give nothing.",
                low=0.0,
                high=pay,
            )
        ]

    def score_answers(
        self, persona: Mapping[str, Any], answers: Mapping[str, Any], transcript: list[dict[str, str]]
    ) -> Outcome:
        """The donation is the reward; an answer that never parsed counts as nothing given."""
        amount = float(answers.get("donation") or 0.0)
        return Outcome(amount, {"donation": amount}, success=amount > 0)


# --- reference agents ----------------------------------------------------------------------------
LINES: dict[str, tuple[str, ...]] = {
    "greeting": (
        "Hi there, how are you doing today?",
        "Hello! Nice to chat with you, how is your day going?",
        "Hey, good to meet you, how have you been?",
    ),
    "personal_inquiry": (
        "Tell me a little about yourself, what do you do for work?",
        "Do you have any kids, or what are you passionate about?",
        "What causes matter to you, if you don't mind me asking?",
    ),
    "task_inquiry": (
        "Have you ever donated to a charity before?",
        "Do you usually give to charities?",
        "How do you feel about donating to good causes?",
    ),
    "source_inquiry": (
        "Have you heard of Save the Children?",
        "Are you familiar with the charity Save the Children?",
        "What do you know about Save the Children?",
    ),
    "logical_appeal": (
        "Research shows that a few dollars goes a long way, since basic vaccines cost very little per child.",
        "The evidence is clear: a dollar buys several meals, so even a small gift matters.",
        "Studies show that early nutrition is one of the most cost-effective ways to help kids.",
    ),
    "emotion_appeal": (
        "Imagine a little girl going to bed hungry tonight; it breaks my heart.",
        "So many innocent children are suffering through wars and famine right now.",
        "Picture a sick child whose mother cannot afford medicine; they are desperate for help.",
    ),
    "credibility_appeal": (
        "Save the Children has been around for over 100 years and is highly rated by Charity Navigator.",
        "They are very transparent, audited every year, with a strong track record.",
        "It is a reputable, well respected charity founded in 1919.",
    ),
    "foot_in_the_door": (
        "Even a few cents would help, and every little bit counts.",
        "You could start small, just ten cents, no matter how small it still matters.",
        "Any small amount helps; even a single penny adds up across many people.",
    ),
    "self_modeling": (
        "I am going to donate part of my own payment to them too.",
        "I have already donated to them, and I'm giving part of my earnings today as well.",
        "I will donate some of mine, so we would be doing it together.",
    ),
    "personal_story": (
        "When I was young, my family volunteered at a shelter and I saw how much a little help meant.",
        "I remember visiting a school my friend supported, and the kids were so grateful.",
        "My niece was in a hospital abroad once, and a charity like this one paid for her care.",
    ),
    "donation_information": (
        "Your donation will be taken from your payment, and it can be anything between $0 and $2.",
        "It is simple: the researchers will send whatever you pick to the charity at the end of the task.",
        "You get to decide the amount, and it is taken directly from your payment.",
    ),
    "donation_ask": (
        "Would you be willing to donate some of your payment to Save the Children today?",
        "Would you like to donate part of your earnings to help these kids?",
        "How much would you like to donate to them today?",
    ),
    "close": (
        "Thank you so much for chatting with me, and take care!",
        "Thanks for your time, have a great day!",
        "It was nice talking with you, goodbye!",
    ),
}


def say(move: str, messages: Messages) -> str:
    """A phrasing of ``move``, varied by the turn index so that no two turns repeat each other."""
    options = LINES[move]
    return options[agent_turns(messages) % len(options)]


class NaivePersuader(Agent):
    """A fixed script: greeting, one generic line about the donation, then an early, repeated ask."""

    name = "naive"
    SCRIPT = (
        "Hello!",
        "Save the Children is a charity, and you can donate part of your $2 to them at the end of the task.",
        "Would you like to donate some of your payment to Save the Children?",
        "Please donate, could you give something to help the children?",
        "Thanks for your time, goodbye.",
    )

    def act(self, messages: Messages, persona: Mapping[str, Any] | None = None) -> str:
        return self.SCRIPT[min(agent_turns(messages), len(self.SCRIPT) - 1)]


# What the competent persuader reads in the persuadee's replies: style hints -> appeals to use.
STYLE_HINTS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (
        re.compile(r"\b(kids|children|little ones|emotional|heart|move me)\b", re.I),
        ("emotion_appeal", "personal_story"),
    ),
    (
        re.compile(r"\b(numbers|logical|logically|facts|evidence)\b", re.I),
        ("logical_appeal", "donation_information"),
    ),
    (
        re.compile(r"\b(skeptic|wary|trust|scams?|overhead|burned|how do i know)\b", re.I),
        ("credibility_appeal", "donation_information"),
    ),
    (
        re.compile(r"\b(community|friends|together|people person|pitch in)\b", re.I),
        ("self_modeling", "personal_story"),
    ),
    (
        re.compile(r"\b(tight|budget|every cent|lean|watch what i spend|every dollar)\b", re.I),
        ("foot_in_the_door", "donation_information"),
    ),
)
SAFE_APPEALS = ("credibility_appeal", "donation_information")


class CompetentPersuader(Agent):
    """Rapport, inquiries, appeals chosen from what the persuadee revealed, one polite ask, then close."""

    name = "competent"

    def act(self, messages: Messages, persona: Mapping[str, Any] | None = None) -> str:
        turn = agent_turns(messages)
        replies = human_turns(messages)[1:]  # the replies to the agent's turns
        plan = ["greeting", "personal_inquiry", "source_inquiry"]
        if turn < len(plan):
            return say(plan[turn], messages)
        # the answer to the personal question hints at what moves them; the answer about the
        # charity shows whether they trust it. Nothing revealed: appeals that rarely backfire.
        about_self, about_charity = replies[1], replies[2]
        appeals = next((fits for pattern, fits in STYLE_HINTS if pattern.search(about_self)), SAFE_APPEALS)
        if STYLE_HINTS[2][0].search(about_charity) and "credibility_appeal" not in appeals:
            appeals = ("credibility_appeal", appeals[0])
        steps = [*appeals, "donation_ask", "close"]
        return say(steps[min(turn - len(plan), len(steps) - 1)], messages)


class OraclePersuader(Agent):
    """Reads the persona's receptivities and plays the best sequence: rapport, top appeals, one ask, close."""

    name = "oracle"
    privileged = True

    def plan(self, persona: Mapping[str, Any], budget: int = 6) -> list[str]:
        """Greedy appeal plan by marginal willingness gain (earlier uses decay by the card's factor)."""
        rec = persona["receptivity"]
        uses: dict[str, int] = {}
        chosen: list[str] = []
        for _ in range(budget):
            best = max(APPEALS, key=lambda a: rec[a] * 0.45 ** uses.get(a, 0))
            if rec[best] * 0.45 ** uses.get(best, 0) < 0.25:
                break
            uses[best] = uses.get(best, 0) + 1
            chosen.append(best)
        return chosen

    def act(self, messages: Messages, persona: Mapping[str, Any] | None = None) -> str:
        if persona is None:
            raise ValueError("the oracle persuader needs the persona (privileged)")
        turn = agent_turns(messages)
        steps = ["greeting", "personal_inquiry", *self.plan(persona), "donation_ask", "close"]
        move = steps[min(turn, len(steps) - 1)]
        if move in APPEALS:
            # vary wording across repeated uses of the same appeal
            k = steps[:turn].count(move)
            return LINES[move][k % len(LINES[move])]
        return say(move, messages)


DonateEnv.reference_agents = {
    "naive": NaivePersuader,
    "competent": CompetentPersuader,
    "oracle": OraclePersuader,
}
