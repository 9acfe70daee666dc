"""Teach: explain a concept to a student whose background is unknown.

The agent is a tutor. The role instructions name the concept and hand over the lesson material
(key points, prerequisite, jargon, an analogy, an example); the student's background, preferred
style and patience are hidden. The catalogue (the card's ``concepts``) has 32 concepts from
machine learning, science, personal finance and everyday technology.

Act taxonomy (the card's ``acts``; one act per sentence, at most two per turn):

* ``probe`` - ask what the student already knows; the first probe reveals their background and
  a missing prerequisite, later ones nag.
* ``explain`` - state a key point plainly. Which key point is taught is read from the concept's
  own words: a sentence teaches a key point (or the prerequisite) when it carries at least half
  of that point's content words. At most two points are taught per turn.
* ``analogy`` / ``example`` - deliver the points through the concept's analogy / example (its
  words must be there, a bare "imagine..." frame is a plain statement).
* ``formal`` - a precise, technical statement; ``steps`` - walk through it stage by stage.
* ``define`` - define a jargon term (the term and "means"/"stands for" in one sentence).
* ``check`` - ask the student to say it back: consolidates new material and reveals the
  shakiest point; nagging when nothing new was taught since the last check.
* ``summarise`` - recap: consolidates new material.
* ``encourage`` - reassurance: gives a novice back a little patience.
* ``close`` - end the lesson.

Hidden state: the concept's domain background (novice / some / expert), the preferred style
(examples, analogies, formal, step_by_step), patience, whether the prerequisite is missing, and
an understanding level in [0, 1] per key point (prior from the background). Each taught point
gains ``learn_rate * fit * (1 - understanding)``, where ``fit`` multiplies the level fit of the
delivery mode to the background (formal talk is abstract to novices, analogies and simplifying
bore experts), the style fit, undefined jargon (confuses novices), load (two points at once
overloads novices), the missing prerequisite (halves learning until explained) and engagement
(lost to incoherent turns). Confusion, boredom, nagging, filler and flagged turns (stuffed,
gibberish, repeat, injection) cost patience; at zero the student leaves.

Reward: the end-of-lesson quiz score, the mean over key points of 1 (understanding minus a small
muddle penalty per incoherent turn reaches ``correct_at``), 0.5 (reaches ``partial_at``) or 0;
the quiz answers are in the outcome breakdown. Each turn costs ``reward.turn_cost``.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dialogue_gym.agents.base import Agent, Messages, agent_turns, human_turns
from dialogue_gym.core.cards import TaskCardError, load_card, require_keys
from dialogue_gym.core.env import DialogueEnv, persona_id
from dialogue_gym.core.human import HumanReply, Outcome, Question
from dialogue_gym.core.rng import IntDraws
from dialogue_gym.core.scripted import ScriptedHuman, recognizer_from_card
from dialogue_gym.core.text import _WORD, COMMON_WORDS, ActRecognizer, Analysis, sentences, words

MODES = ("analogy", "example", "formal", "steps", "explain")
STYLE_OF_MODE = {"analogy": "analogies", "example": "examples", "formal": "formal", "steps": "step_by_step"}
MODE_OF_STYLE = {style: mode for mode, style in STYLE_OF_MODE.items()}
ACTS = ("probe", *MODES, "define", "check", "summarise", "encourage", "close")
REPLY_KEYS = (
    "greet",
    "probe_novice",
    "probe_some",
    "probe_expert",
    "probe_prereq",
    "probe_again",
    "jargon_confused",
    "abstract",
    "prereq_missing",
    "bored",
    *(f"hint_{style}" for style in STYLE_OF_MODE.values()),
    "got_it",
    "partly",
    "prereq_learned",
    "defined",
    "intro",
    "check_good",
    "check_weak",
    "check_again",
    "summary",
    "encouraged",
    "filler",
    "stuffed",
    "gibberish",
    "repeat",
    "injection",
    "leave",
    "close",
)
PREREQ = "prereq"


# --- reading the concept's words: patterns compiled once per card and concept -------------------
def content_words(text: str) -> list[str]:
    """The distinctive words of ``text`` (no common words, plural ``s`` stripped), in order."""
    out: list[str] = []
    for w in words(text):
        w = w.removesuffix("'s")
        if len(w) < 4 or w in COMMON_WORDS:
            continue
        if w.endswith("s") and not w.endswith("ss") and len(w) > 4:
            w = w[:-1]
        if w not in out:
            out.append(w)
    return out


_SUFFIXES = ("", "'s", "s", "es", "ed", "d", "ing")
# A word (as words() reads them) or the end of a sentence (as sentences() splits them).
_WORD_OR_END = re.compile(_WORD.pattern + r"|[.!?;](?=\s)|\n")
_ENDS = (".", "!", "?", ";", "\n")


def _need(n: int) -> int:
    return max(2, math.ceil(0.5 * n))


class ConceptIndex:
    """Precompiled matchers for one concept: which key points, prerequisite, analogy, example and
    jargon a piece of text carries. Built once per concept and card, shared by all envs."""

    def __init__(self, concept: Mapping[str, Any]) -> None:
        self.items: dict[str, frozenset[str]] = {
            kp["id"]: frozenset(content_words(kp["text"])) for kp in concept["key_points"]
        }
        self.items[PREREQ] = frozenset(content_words(concept["prerequisite"]["text"]))
        self.analogy = frozenset(content_words(concept["analogy"]))
        self.example = frozenset(content_words(concept["example"]))
        vocab = frozenset(self.analogy | self.example).union(*self.items.values())
        self._forms = {base + suffix: base for base in vocab for suffix in _SUFFIXES}
        self._form_set = frozenset(self._forms)
        self._forms_or_end = {**self._forms, **dict.fromkeys(_ENDS, "")}  # "": a sentence ends
        # (item, its content words, how many of them a sentence must carry), in catalogue order
        self._needs = tuple((item, need, _need(len(need))) for item, need in self.items.items())
        self._uses = {
            "analogy": (self.analogy, _need(len(self.analogy))),
            "example": (self.example, _need(len(self.example))),
        }
        terms = sorted((j["term"] for j in concept["jargon"]), key=len, reverse=True)
        # matched on lower-cased text (same matches as IGNORECASE on the original, but faster)
        self._jargon = re.compile(r"\b(" + "|".join(re.escape(t.lower()) for t in terms) + r")\b")
        self._jargon_terms = tuple(t.lower() for t in terms)  # none in the text: no regex scan
        # Each term's first word (its leading letters), when every term starts with a letter: in
        # ASCII text without apostrophes a term the pattern finds starts a word of the text, so a
        # text whose words include no first word has no term (see _jargon_in).
        firsts = [re.match(r"[a-z]+", t) for t in self._jargon_terms]
        self._jargon_firsts = frozenset(m[0] for m in firsts if m) if all(firsts) else None
        # per-episode constants of the student, looked up once here instead of every turn
        self.kp_ids: tuple[str, ...] = tuple(kp["id"] for kp in concept["key_points"])
        self.shorts: dict[str, str] = {kp["id"]: kp["short"] for kp in concept["key_points"]}

    def hits(self, text: str) -> set[str]:
        """The concept's content words present in ``text`` (an inflected form counts: ``-s``, ``-ed``...)."""
        found = set(map(self._forms.get, words(text)))
        found.discard(None)
        return found  # type: ignore[return-value]

    def sentence_hits(self, low: str) -> list[set[str]]:
        """:meth:`hits` of each sentence of ``low``, a text already lower-cased with straight
        apostrophes, in one scan: the same sentences as :func:`sentences` and the same words as
        :func:`words` (a sentence ends at ``.!?;`` before a space, or at a line break)."""
        seq = list(map(self._forms_or_end.get, _WORD_OR_END.findall(low)))
        out, i = [], 0
        while True:
            try:
                j = seq.index("", i)
            except ValueError:
                break
            hit = set(seq[i:j])
            hit.discard(None)
            out.append(hit)
            i = j + 1
        hit = set(seq[i:])
        hit.discard(None)
        out.append(hit)
        return out  # type: ignore[return-value]

    def words_hits(self, sentence_words: Sequence[Sequence[str]]) -> list[set[str]]:
        """:meth:`hits` of each sentence given its words (as :class:`~dialogue_gym.core.text.Analysis`
        ``sentence_words`` has them): the same sets as :meth:`sentence_hits`, without reading the
        text again."""
        forms = self._forms
        return [{forms[w] for w in forms.keys() & ws} for ws in sentence_words]

    def taught(self, sents: Sequence[str], limit: int = 2) -> list[str]:
        """Key point ids (and ``"prereq"``) carried by the sentences, first-come, at most ``limit``."""
        return self._taught([self.hits(sent) for sent in sents], limit)

    def _taught(self, sent_hits: Sequence[set[str]], limit: int = 2) -> list[str]:
        """:meth:`taught` from each sentence's :meth:`hits`."""
        found: list[str] = []
        for hit in sent_hits:
            if len(hit) < 2:
                continue
            for item, need, n in self._needs:
                if len(hit & need) >= n and item not in found:
                    found.append(item)
                    if len(found) == limit:
                        return found
        return found

    def uses(self, text: str, which: str) -> bool:
        """Whether ``text`` carries the concept's analogy or example (``which``)."""
        return self._uses_hits(self.hits(text), which)

    def _uses_hits(self, hit: set[str], which: str) -> bool:
        """:meth:`uses` from the text's :meth:`hits`."""
        need, n = self._uses["analogy" if which == "analogy" else "example"]
        return len(hit & need) >= n

    def jargon(self, text: str) -> set[str]:
        """Jargon terms (lower-cased) used in ``text``."""
        return set(self._jargon_low(text.lower()))

    def _jargon_in(self, text: str, word_set: frozenset[str]) -> list[str]:
        """:meth:`_jargon_low` of ``text`` given its words (as ``words()`` reads them): none when
        no term's first word is among them (exact for ASCII text without apostrophes, where the
        characters around a term the pattern finds are not letters, so they cut the same word)."""
        firsts = self._jargon_firsts
        if firsts is not None and firsts.isdisjoint(word_set) and text.isascii() and "'" not in text:
            return []
        return self._jargon_low(text.lower())

    def _jargon_low(self, low: str) -> list[str]:
        """Jargon terms in ``low`` (lower-cased text), in order, repeats included."""
        if any(map(low.__contains__, self._jargon_terms)):
            return self._jargon.findall(low)
        return []


@dataclass
class CardIndex:
    """Everything derived from a card once: the act recognizer (with the catalogue's vocabulary),
    the define/simplify patterns, the per-concept matchers (compiled lazily), the reply slots of
    each concept, the student model's numbers as floats and the persona distribution's tables."""

    recognizer: ActRecognizer
    define: re.Pattern[str]
    simplify: re.Pattern[str]
    concepts: dict[str, Mapping[str, Any]]
    indexes: dict[str, ConceptIndex]
    slots: dict[str, dict[str, str]]
    model: Model
    instructions: dict[tuple[str, int], str]
    persona: PersonaTables

    def concept_index(self, concept_id: str) -> ConceptIndex:
        """The matcher for ``concept_id``, compiled on first use."""
        index = self.indexes.get(concept_id)
        if index is None:
            index = self.indexes[concept_id] = ConceptIndex(self.concepts[concept_id])
        return index


class Model:
    """The card's student-model numbers read once: every number as a float attribute, the
    per-level tables as dicts of floats and the delivery fit of each level, style and mode."""

    def __init__(self, m: Mapping[str, Any]) -> None:
        self.__dict__.update({k: float(v) for k, v in m.items() if isinstance(v, (int, float))})
        self.jargon_fit = {k: float(v) for k, v in m["jargon_fit"].items()}
        self.load_fit = {k: float(v) for k, v in m["load_fit"].items()}
        self.patience_cost = {k: float(v) for k, v in m.get("patience_cost", {}).items()}
        # delivery_fit() per (level, style, mode, undefined jargon)
        self.fit = {
            (level, style, mode, jargon): delivery_fit(m, level, style, mode, jargon)
            for level in m["level_fit"]
            for style in STYLE_OF_MODE.values()
            for mode in MODES
            for jargon in (False, True)
        }


_CARD_INDEXES: dict[int, tuple[Mapping[str, Any], CardIndex]] = {}


def card_index(card: Mapping[str, Any]) -> CardIndex:
    """The (cached) :class:`CardIndex` of ``card``; built-in cards are shared objects, so envs share it."""
    hit = _CARD_INDEXES.get(id(card))
    if hit is not None and hit[0] is card:
        return hit[1]
    vocab: list[str] = []
    for c in card["concepts"]:
        vocab += [c["name"], c["analogy"], c["example"], c["prerequisite"]["text"], c["prerequisite"]["name"]]
        vocab += [kp["text"] for kp in c["key_points"]]
        vocab += [f"{j['term']} {j['meaning']}" for j in c["jargon"]]
    vocab += list(card["domains"].values())
    index = CardIndex(
        recognizer=recognizer_from_card(card, vocab),
        define=_cue_pattern(card["acts"]["define"]["cues"]),
        simplify=_cue_pattern(card.get("simplify_cues", []) or ["(?!x)x"]),
        concepts={c["id"]: c for c in card["concepts"]},
        indexes={},
        slots={
            c["id"]: {
                "concept": c["name"],
                "domain": card["domains"][c["domain"]],
                "prereq": c["prerequisite"]["name"],
            }
            for c in card["concepts"]
        },
        model=Model(card["model"]),
        instructions={},
        persona=persona_tables(card["persona"]),
    )
    if len(_CARD_INDEXES) >= 16:
        _CARD_INDEXES.pop(next(iter(_CARD_INDEXES)))
    _CARD_INDEXES[id(card)] = (card, index)  # holding the card keeps its id from being reused
    return index


def _cue_pattern(cues: Sequence[str]) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(f"(?:{c})" for c in cues) + r")\b", re.IGNORECASE)


# --- persona sampling --------------------------------------------------------------------------
class Weights:
    """A ``{key: weight}`` distribution of the card read once: its keys with float weights, and
    their total, so that each draw does only the subtractions."""

    __slots__ = ("items", "total")

    def __init__(self, probs: Mapping[Any, float]) -> None:
        self.items = tuple((key, float(weight)) for key, weight in probs.items())
        self.total = sum(float(v) for v in probs.values())

    def pick(self, x: float) -> Any:
        """The key that a uniform draw ``x`` in [0, 1) selects, in proportion to the weights."""
        x *= self.total
        for key, weight in self.items:
            x -= weight
            if x < 0:
                return key
        return key


@dataclass
class PersonaTables:
    """The card's persona distribution read once (see :func:`sample_student`)."""

    background: Weights
    style: Weights
    patience: Weights
    prior: dict[str, tuple[float, float]]
    prereq_missing: dict[str, float]


def persona_tables(dist: Mapping[str, Any]) -> PersonaTables:
    """The tables of the card's ``persona`` section (validated by :meth:`TeachEnv.validate_card`)."""
    return PersonaTables(
        background=Weights(dist["background"]),
        style=Weights(dist["style"]),
        patience=Weights(dist["patience"]),
        prior={level: (float(lo), float(hi)) for level, (lo, hi) in dist["prior"].items()},
        prereq_missing={level: float(p) for level, p in dist["prereq_missing"].items()},
    )


def sample_student(card: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """A student: the concept to learn, a background per domain, a style, patience, whether the
    concept's prerequisite is missing, and a prior understanding per key point."""
    tables = card_index(card).persona
    concept = card["concepts"][IntDraws(rng)(len(card["concepts"]))]  # int(rng.integers(n))
    domains, kps = card["domains"], concept["key_points"]
    # All the uniform draws at once: the same numbers, in the same order, as one rng.random() each
    # (background per domain, prior per key point, style, patience, prerequisite).
    draws = rng.random(len(domains) + len(kps) + 3).tolist()
    pick = tables.background.pick
    background = {domain: str(pick(x)) for domain, x in zip(domains, draws, strict=False)}  # draws: longer
    level = background[concept["domain"]]
    low, high = tables.prior[level]
    rest = draws[len(domains) :]
    style, patience, prereq = rest[len(kps) :]
    return {
        "concept": concept["id"],
        "background": background,
        "style": str(tables.style.pick(style)),
        "patience": int(tables.patience.pick(patience)),
        "prereq_missing": prereq < tables.prereq_missing[level],
        "prior": [high if x < 0.5 else low for x in rest[: len(kps)]],
    }


def delivery_fit(model: Mapping[str, Any], level: str, style: str, mode: str, jargon: bool = False) -> float:
    """How well a delivery ``mode`` suits a student of ``level`` who prefers ``style`` (before load,
    prerequisite and engagement): the level fit times the style fit."""
    lvl = float(model["level_fit"][level][mode])
    if level == "expert" and STYLE_OF_MODE.get(mode) == style:
        lvl = 1.0  # an expert who asked for analogies or steps is not bored by them
    if level == "expert" and mode == "explain" and jargon:
        lvl = 1.0  # plain statements in the field's own terms suit an expert
    sfit = model["style_fit"]
    sty = sfit["neutral"] if mode == "explain" else sfit["match" if STYLE_OF_MODE[mode] == style else "other"]
    return lvl * float(sty)


# --- the scripted student ------------------------------------------------------------------------
class ScriptedStudent(ScriptedHuman):
    """A student with a hidden background, style, patience and per-key-point understanding."""

    def __init__(self, card: Mapping[str, Any]) -> None:
        # the recognizer (with the catalogue's vocabulary) comes from the per-card cache
        self.index = card_index(card)
        super().__init__(card, recognizer=self.index.recognizer)
        self.model = card["model"]
        self.m = self.index.model

    def clone(self) -> ScriptedStudent:
        """An independent copy of the student's state (for planning agents); shares the card."""
        twin = copy.copy(self)
        twin.u, twin.defined, twin.history = dict(self.u), set(self.defined), list(self.history)
        twin.rng = np.random.default_rng(0)
        return twin

    # -- setup --
    def start(self) -> str:
        p = self.persona
        cid = p["concept"]
        self.concept = self.index.concepts[cid]
        self.words = self.index.concept_index(cid)
        self.slots = self.index.slots[cid]
        self.level: str = p["background"][self.concept["domain"]]
        self.style: str = p["style"]
        self.patience = float(p["patience"])
        self.missing_prereq = bool(p["prereq_missing"])
        self.kp_ids = list(self.words.kp_ids)
        self.u = dict(zip(self.kp_ids, map(float, p["prior"]), strict=True))
        self.defined: set[str] = set()
        self.probed = False
        self.fresh_check = False
        self.fresh_summary = False
        self.engagement = 1.0
        self.incoherent = 0
        self.left = False
        return self.say("greet", concept=self.concept["name"])

    def _slots(self) -> dict[str, str]:
        return dict(self.slots)

    def _cost(self, what: str) -> None:
        self.patience -= self.m.patience_cost[what]

    # -- one turn --
    def react(self, utterance: str, analysis: Analysis) -> HumanReply:
        if not analysis.coherent:
            return self._incoherent(analysis)
        acts, slots, parts = analysis.acts, self.slots, []
        if "probe" in acts:
            if self.probed:
                self._cost("nagging")
                parts.append(self.say("probe_again"))
            else:
                self.probed = True
                parts.append(self.say(f"probe_{self.level}", **slots))
                if self.missing_prereq:
                    parts.append(self.say("probe_prereq", **slots))
        if "encourage" in acts and self.level == "novice":
            self.patience = min(float(self.persona["patience"]), self.patience + 1)
        parts += self._teach(utterance, acts, slots, analysis)
        if "check" in acts:
            parts.append(self._check())
        if "summarise" in acts:
            if self.fresh_summary:
                self._consolidate(self.m.summary_boost)
                self.fresh_summary = False
                parts.append(self.say("summary"))
            else:
                self._cost("nagging")
        if "close" in acts:
            return HumanReply(
                " ".join([*parts[:1], self.say("close")]), ended=True, end_reason="agent_closed"
            )
        if not parts:
            if acts:
                parts.append(self.say("encouraged" if "encourage" in acts else "intro"))
            else:
                self._cost("filler")
                parts.append(self.say("filler", **slots))
        return self._maybe_leave(" ".join(parts))

    def _teach(
        self,
        utterance: str,
        acts: Sequence[str],
        slots: Mapping[str, str],
        analysis: Analysis,
    ) -> list[str]:
        """Jargon definitions, the prerequisite and key points carried by the utterance (read from
        the recognizer's ``analysis``: its words, and when needed its words per sentence)."""
        parts: list[str] = []
        bored = False
        words_ = self.words
        if "define" in acts:
            new = set()
            for sent in sentences(utterance):
                if self.index.define.search(sent):
                    new |= words_.jargon(sent) - self.defined
            if new:
                self.defined |= new
                bored = self.level == "expert"
                parts.append(self.say("defined"))
        # The recognizer has read the turn's words: the jargon check and the concept words of
        # each sentence (key points taught, and their union for the analogy / example check)
        # start from them.
        word_set = analysis.word_set or frozenset(w for ws in analysis.sentence_words for w in ws)
        undefined = words_._jargon_in(utterance, word_set)
        if undefined:
            undefined = sorted(set(undefined) - self.defined)
        confusing = bool(undefined) and (
            self.level == "novice" or (self.level == "some" and len(undefined) >= 2)
        )
        if len(words_._form_set & word_set) < 2:
            # An item needs two of its words in one sentence: under two concept words in the whole
            # turn (most turns), no sentence carries one, and the sentences' words are not cut.
            sent_hits: list[set[str]] = []
            items: list[str] = []
        else:
            sent_hits = words_.words_hits(analysis.sentence_words)
            items = words_._taught(sent_hits)
        if PREREQ in items:
            if self.missing_prereq and not confusing:
                self.missing_prereq = False
                parts.append(self.say("prereq_learned", **slots))
            elif self.level == "expert":
                bored = True
        kps = [i for i in items if i != PREREQ] if items else items
        if not kps:
            if confusing:
                self._cost("confused")
                return [self.say("jargon_confused", term=undefined[0])]
            if bored:
                self._cost("bored")
                return [self.say("bored")]
            return parts
        mode = self._mode(sent_hits, acts)
        m = self.m
        fit = m.fit.get((self.level, self.style, mode, bool(undefined)))
        if fit is None:  # a level or style outside the card's tables (a hand-made persona)
            fit = delivery_fit(self.model, self.level, self.style, mode, jargon=bool(undefined))
        if undefined:
            fit *= m.jargon_fit[self.level]
        if len(kps) == 2:
            fit *= m.load_fit[self.level]
        if self.missing_prereq:
            fit *= m.prereq_factor
        if self.level == "expert":
            talked_down = mode in ("analogy", "steps") and STYLE_OF_MODE[mode] != self.style
            simplified = bool(self.index.simplify.search(utterance))
            known = any(self.u[k] >= m.correct_at for k in kps)
            bored = bored or talked_down or simplified or known
            if bored:
                fit *= m.bored_fit  # a bored expert half-listens
        gain = m.learn_rate * fit * self.engagement
        for k in kps:
            self.u[k] += gain * (1.0 - self.u[k])
        self.fresh_check = self.fresh_summary = True
        if self.missing_prereq:
            return [self.say("prereq_missing", **slots)]
        if confusing:
            self._cost("confused")
            return [self.say("jargon_confused", term=undefined[0])]
        if self.level == "novice" and mode == "formal":
            return [self.say("abstract")]
        if bored:
            self._cost("bored")
            return [self.say("bored")]
        parts = [self.say("got_it" if gain >= 0.5 else "partly")]
        if mode != MODE_OF_STYLE[self.style] and self.rng.random() < m.hint_prob:
            parts.append(self.say(f"hint_{self.style}"))
        return parts

    def _mode(self, sent_hits: Sequence[set[str]], acts: Sequence[str]) -> str:
        """The delivery mode: the first teaching act, where an analogy or example must be the real one
        (``sent_hits``: the concept words of each sentence, as :meth:`ConceptIndex.hits` gives them)."""
        hit: set[str] | None = None
        for act in acts:
            if act in ("analogy", "example"):
                if hit is None:
                    hit = set().union(*sent_hits)
                if self.words._uses_hits(hit, act):
                    return act
            elif act in ("formal", "steps"):
                return act
        return "explain"

    def _consolidate(self, boost: float) -> None:
        for k, u in self.u.items():
            if u >= 0.2:
                self.u[k] = u + boost * self.engagement * (1.0 - u)

    def _check(self) -> str:
        if not self.fresh_check:
            self._cost("nagging")
            return self.say("check_again")
        self.fresh_check = False
        self._consolidate(self.m.check_boost)
        shorts = self.words.shorts
        weakest = min(self.kp_ids, key=self.u.__getitem__)
        if self.u[weakest] < self.m.correct_at:
            return self.say("check_weak", point=shorts[weakest])
        return self.say("check_good", point=shorts[max(self.kp_ids, key=self.u.__getitem__)])

    def _incoherent(self, analysis: Analysis) -> HumanReply:
        """Stuffed, gibberish, repeated or injected text: confusing, annoying, a wasted turn."""
        flag = next(f for f in ("injection", "stuffed", "gibberish", "repeat") if f in analysis.flags)
        self._cost(flag)
        self.incoherent += 1
        self.engagement = max(0.25, self.engagement - 0.2)
        return self._maybe_leave(self.say(flag))

    def _maybe_leave(self, text: str) -> HumanReply:
        if self.patience <= 0:
            self.left = True
            return HumanReply(f"{text} {self.say('leave')}", ended=True, end_reason="human_left")
        return HumanReply(text)

    # -- the quiz --
    def outcome(self) -> Outcome:
        m = self.m
        penalty = m.muddle * self.incoherent
        quiz, credit = {}, 0.0
        for k in self.kp_ids:
            eff = self.u[k] - penalty
            if eff >= m.correct_at:
                quiz[k], c = "correct", 1.0
            elif eff >= m.partial_at:
                quiz[k], c = "partial", m.partial_credit
            else:
                quiz[k], c = "wrong", 0.0
            credit += c
        score = credit / len(self.kp_ids)
        breakdown = {
            "concept": self.concept["id"],
            "quiz": quiz,
            "score": score,
            "understanding": {k: round(v, 3) for k, v in self.u.items()},
            "background": self.level,
            "style": self.style,
            "prereq_missing": self.missing_prereq,
            "patience_left": self.patience,
            "incoherent_turns": self.incoherent,
            "left": self.left,
        }
        return Outcome(score, breakdown, success=score >= 1.0)


# --- the env -------------------------------------------------------------------------------------
class TeachEnv(DialogueEnv):
    """Teach a concept to a student of unknown background; reward is their end-of-lesson quiz score."""

    card_name = "teach"
    card_schema = {
        "acts": dict,
        "replies": dict,
        "concepts": list,
        "model": dict,
        "persona": dict,
        "domains": dict,
        "reward": dict,
    }

    def validate_card(self, card: Mapping[str, Any]) -> None:
        """Check the acts, replies, persona distribution and every concept of the catalogue."""
        missing = [a for a in ACTS if a not in card["acts"]]
        if missing:
            raise TaskCardError(f"teach card: acts lacks {missing}")
        missing = [r for r in REPLY_KEYS if r not in card["replies"]]
        if missing:
            raise TaskCardError(f"teach card: replies lacks {missing}")
        for key in ("background", "style", "patience", "prereq_missing", "prior"):
            if key not in card["persona"]:
                raise TaskCardError(f"teach card: persona lacks {key!r}")
        bad_styles = set(card["persona"]["style"]) - set(MODE_OF_STYLE)
        if bad_styles:
            raise TaskCardError(
                f"teach card: unknown styles {sorted(bad_styles)}; use {sorted(MODE_OF_STYLE)}"
            )
        for key in (
            "learn_rate",
            "correct_at",
            "partial_at",
            "partial_credit",
            "level_fit",
            "style_fit",
            "jargon_fit",
            "load_fit",
            "bored_fit",
        ):
            if key not in card["model"]:
                raise TaskCardError(f"teach card: model lacks {key!r}")
        concepts = card["concepts"]
        if not concepts:
            raise TaskCardError("teach card: concepts is empty")
        fields = ("id", "name", "domain", "prerequisite", "jargon", "key_points", "analogy", "example")
        require_keys(concepts, fields, "concepts")
        ids = [c["id"] for c in concepts]
        if len(set(ids)) != len(ids):
            raise TaskCardError("teach card: concept ids must be unique")
        for c in concepts:
            if c["domain"] not in card["domains"]:
                raise TaskCardError(f"concepts[{c['id']}]: domain {c['domain']!r} is not in domains")
            if not c["key_points"] or not c["jargon"]:
                raise TaskCardError(f"concepts[{c['id']}]: needs key_points and jargon")
            require_keys(c["key_points"], ("id", "short", "text"), f"concepts[{c['id']}].key_points")
            require_keys(c["jargon"], ("term", "meaning"), f"concepts[{c['id']}].jargon")
            require_keys([c["prerequisite"]], ("name", "text"), f"concepts[{c['id']}].prerequisite")

    def sample_persona(self, rng: np.random.Generator) -> dict[str, Any]:
        return sample_student(self.card, rng)

    def role_instructions(self, persona: Mapping[str, Any]) -> str:
        cache = card_index(self.card).instructions  # the same text for every student of a concept
        key = (persona["concept"], self.max_turns)
        text = cache.get(key)
        if text is None:
            text = cache[key] = self._role_instructions(persona["concept"])
        return text

    def _role_instructions(self, concept_id: str) -> str:
        c = next(c for c in self.card["concepts"] if c["id"] == concept_id)
        points = "\n".join(f"- {kp['short']}: {kp['text']}" for kp in c["key_points"])
        jargon = "; ".join(f"{j['term']} = {j['meaning']}" for j in c["jargon"])
        pre = c["prerequisite"]
        return (
            f"You are a tutor. Teach the student this concept: {c['name']} "
            f"(topic area: {self.card['domains'][c['domain']]}).\n"
            f"Key points to get across:\n{points}\n"
            f"Prerequisite they may lack ({pre['name']}): {pre['text']}\n"
            f"Jargon: {jargon}\n"
            f"Analogy you can use: {c['analogy']}\n"
            f"Example you can use: {c['example']}\n"
            f"You have at most {self.max_turns} turns. You do not know the student's background, preferred "
            "style or patience. At the end they take a short quiz on the key points. "
            'Close the lesson when you are done (e.g. "That wraps up our lesson, good luck!").'
        )

    def make_scripted_human(self) -> ScriptedStudent:
        return ScriptedStudent(self.card)

    # -- the same persona for an LLM human (dialogue_gym.humans) --
    def _concept(self, persona: Mapping[str, Any]) -> Mapping[str, Any]:
        return next(c for c in self.card["concepts"] if c["id"] == persona["concept"])

    def persona_brief(self, persona: Mapping[str, Any]) -> str:
        """The student as instructions: background, missing prerequisite, style and patience."""
        concept = self._concept(persona)
        domain = self.card["domains"][concept["domain"]]
        level = persona["background"][concept["domain"]]
        know = {
            "novice": f"You know almost nothing about {domain}; unexplained technical words confuse you.",
            "some": f"You know the basics of {domain}, but not this topic.",
            "expert": f"You know {domain} well; over-simple explanations bore you.",
        }[level]
        style = {
            "examples": "concrete examples",
            "analogies": "analogies to everyday things",
            "formal": "precise definitions",
            "step_by_step": "step-by-step walk-throughs",
        }.get(persona["style"], persona["style"])
        patience = "short" if persona["patience"] <= 3 else "long" if persona["patience"] >= 8 else "average"
        lines = [
            f"You are a student who has come to learn about {concept['name']}.",
            know,
            f"You learn best from {style}.",
            f"Your patience is {patience}: if the tutor confuses or bores you again and again, "
            "you give up and say goodbye.",
            "Say when you are confused or bored; do not tell the tutor your background unless asked.",
        ]
        if persona.get("prereq_missing"):
            lines.append(f"You do not know what {concept['prerequisite']['name']} is.")
        return "\n".join(lines)

    def opening_cue(self, persona: Mapping[str, Any]) -> str:
        return "The lesson starts now. Greet your tutor and say what you are here to learn."

    def _quiz(self, persona: Mapping[str, Any]) -> tuple[list[Question], dict[str, str]]:
        """One multiple-choice question per key point; distractors are other concepts' key points."""
        concept = self._concept(persona)
        others = [
            kp["text"] for c in self.card["concepts"] if c["id"] != concept["id"] for kp in c["key_points"]
        ]
        rng = np.random.default_rng(int(persona_id(persona), 16))  # same quiz per persona
        labels = ("A", "B", "C", "D")
        questions, key = [], {}
        for i, kp in enumerate(concept["key_points"], 1):
            options = [kp["text"], *(others[j] for j in rng.choice(len(others), 3, replace=False))]
            order = rng.permutation(4)
            lines = "\n".join(f"{labels[n]}. {options[o]}" for n, o in enumerate(order))
            text = f"Quiz question {i} about {concept['name']} ({kp['short']}): which is true?\n{lines}"
            questions.append(Question(f"q{i}", text, choices=labels))
            key[f"q{i}"] = labels[int(np.flatnonzero(order == 0)[0])]
        return questions, key

    def outcome_questions(self, persona: Mapping[str, Any]) -> list[Question]:
        return self._quiz(persona)[0]

    def score_answers(
        self, persona: Mapping[str, Any], answers: Mapping[str, Any], transcript: list[dict[str, str]]
    ) -> Outcome:
        """The quiz score: the share of key-point questions answered correctly."""
        _, key = self._quiz(persona)
        correct = {q: answers.get(q) == a for q, a in key.items()}
        score = sum(correct.values()) / len(key)
        return Outcome(score, {"quiz": correct, "answer_key": key, "score": score}, success=score >= 0.99)


# --- reference agents ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Lesson:
    """The lesson material as read from the role instructions."""

    name: str
    points: tuple[tuple[str, str], ...]  # (short label, text)
    prereq: tuple[str, str]
    jargon: tuple[tuple[str, str], ...]
    analogy: str
    example: str
    max_turns: int


def parse_lesson(system: str) -> Lesson:
    """Read the concept, key points, prerequisite, jargon, analogy and example from the instructions."""
    name = re.search(r"this concept: (.+?) \(topic area", system)
    points = tuple((m.group(1), m.group(2)) for m in re.finditer(r"^- (.+?): (.+)$", system, re.MULTILINE))
    pre = re.search(r"^Prerequisite they may lack \((.+?)\): (.+)$", system, re.MULTILINE)
    jar = re.search(r"^Jargon: (.+)$", system, re.MULTILINE)
    jargon = tuple(
        tuple(part.split(" = ", 1)) for part in (jar.group(1).split("; ") if jar else []) if " = " in part
    )
    ana = re.search(r"^Analogy you can use: (.+)$", system, re.MULTILINE)
    ex = re.search(r"^Example you can use: (.+)$", system, re.MULTILINE)
    limit = re.search(r"at most (\d+) turns", system)
    return Lesson(
        name=name.group(1) if name else "this topic",
        points=points,
        prereq=(pre.group(1), pre.group(2)) if pre else ("", ""),
        jargon=jargon,  # type: ignore[arg-type]
        analogy=ana.group(1) if ana else "",
        example=ex.group(1) if ex else "",
        max_turns=int(limit.group(1)) if limit else 10,
    )


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


FRAMES = {
    "analogy": (
        "Think of it like {analogy}. {text}",
        "Here's an analogy: it's like {analogy}. {text}",
        "Imagine {analogy}. In the same way, {low}",
    ),
    "example": (
        "For example, take {example}. {text}",
        "For instance, consider {example}. {text}",
        "Say you look at {example}. {text}",
    ),
    "formal": (
        "Formally, {low}",
        "Stated precisely: {text}",
        "Strictly speaking, {low}",
    ),
    "steps": (
        "Let's take it step by step. {text}",
        "Step by step, it goes like this. {text}",
        "To begin with, {low}",
    ),
    "explain": (
        "Here's how it works. {text}",
        "The key idea is this. {text}",
        "The point is this: {text}",
    ),
}
CHECKS = (
    "Does that make sense so far? Can you say it back in your own words?",
    "How would you explain it back to me, in your own words?",
    "Is that clear? Tell me which part feels shakiest.",
)


def _jaccard(a: str, b: str) -> float:
    x, y = set(words(a)), set(words(b))
    return len(x & y) / len(x | y) if x and y else 0.0


def fresh(options: Sequence[str], messages: Messages, start: int = 0) -> str:
    """The first option (rotating from ``start``) that is not a near-repeat of an earlier agent turn."""
    said = [m["content"] for m in messages if m["role"] == "assistant"]
    for i in range(len(options)):
        cand = options[(start + i) % len(options)]
        if all(_jaccard(cand, s) < 0.7 for s in said):
            return cand
    return options[start % len(options)]


def teach_line(lesson: Lesson, text: str, mode: str, messages: Messages, extra: str = "") -> str:
    """One explanation of ``text`` in ``mode``, phrased unlike the agent's earlier turns (when every
    phrasing in ``mode`` would repeat an earlier turn, another mode gives it a fresh angle)."""
    t = agent_turns(messages)
    order = [mode] + [m for m in ("example", "analogy", "steps", "explain", "formal") if m != mode]
    opts = [
        f.format(analogy=lesson.analogy, example=lesson.example, text=text, low=_lower_first(text)) + extra
        for m in order
        for f in _rotate(FRAMES[m], t)
    ]
    return fresh(opts, messages)


def _rotate(items: Sequence[str], k: int) -> list[str]:
    k %= len(items)
    return [*items[k:], *items[:k]]


def close_line(lesson: Lesson, messages: Messages) -> str:
    """A proper close with a short recap."""
    labels = [short for short, _ in lesson.points]
    recap = ", ".join(labels[:-1]) + f" and {labels[-1]}" if len(labels) > 1 else "".join(labels)
    return fresh(
        (
            f"To sum up, we covered {recap}. That wraps up our lesson on {lesson.name}, good luck!",
            f"That's all for today on {lesson.name}. Thanks for your time, goodbye!",
            f"Let's recap: {recap}. Good luck, and goodbye!",
        ),
        messages,
        agent_turns(messages),
    )


class NaiveTeacher(Agent):
    """A fixed lecture: a generic opener, one formal jargon-heavy definition, then goodbye."""

    name = "teach-naive"

    def act(self, messages: Messages, persona: Mapping[str, Any] | None = None) -> str:
        lesson = parse_lesson(messages[0]["content"])
        t = agent_turns(messages)
        if t == 0:
            return f"Hello! Today's topic is {lesson.name}, and the main idea is worth knowing."
        if t == 1:
            terms = " and ".join(term for term, _ in lesson.jargon)
            texts = [text for _, text in lesson.points[:2]]
            definition = f"Formally, {_lower_first(texts[0])} {' '.join(texts[1:])}"
            return f"{definition} In standard terminology this involves {terms}."
        return f"That is the essence of {lesson.name}. Thanks for listening, goodbye!"


_LEVEL_CUES = (
    ("novice", re.compile(r"new to|beginner|nothing|not much", re.IGNORECASE)),
    ("expert", re.compile(r"work with|day job|know [\w\s-]+ well|be technical", re.IGNORECASE)),
)
_HINT_CUES = (
    ("example", re.compile(r"\bexample\b", re.IGNORECASE)),
    ("analogy", re.compile(r"analogy|compare", re.IGNORECASE)),
    ("formal", re.compile(r"precise|exact", re.IGNORECASE)),
    ("steps", re.compile(r"\bsteps?\b", re.IGNORECASE)),
)
_DEFAULT_MODE = {"novice": "analogy", "some": "example", "expert": "formal"}


@dataclass
class _Reading:
    """What the competent teacher has learned from the student's replies so far."""

    level: str
    mode: str
    needs_prereq: bool
    pending_term: str | None
    weak: int | None
    all_good: bool


def read_student(lesson: Lesson, messages: Messages) -> _Reading:
    """Background, preferred mode, prerequisite need, a term to define and the weakest point, from replies."""
    replies = human_turns(messages)[1:]
    level = "some"
    if replies:
        level = next((lvl for lvl, pat in _LEVEL_CUES if pat.search(replies[0])), "some")
    mode = _DEFAULT_MODE[level]
    for reply in replies:
        mode = next((m for m, pat in _HINT_CUES if pat.search(reply)), mode)
    pre = lesson.prereq[0].lower()
    needs = bool(pre) and any(pre in r.lower() for r in replies)
    last = replies[-1] if replies else ""
    term = re.search(r"'([^']+)'", last)
    pending = (
        term.group(1) if term and any(t.lower() == term.group(1).lower() for t, _ in lesson.jargon) else None
    )
    weak = None
    if re.search(r"fuzzy|shaky|not confident", last):
        weak = next((i for i, (short, _) in enumerate(lesson.points) if short.lower() in last.lower()), None)
    good = bool(re.search(r"got it all|explain all of it|could say it back", last))
    return _Reading(level, mode, needs, pending, weak, good)


class CompetentTeacher(Agent):
    """Probes the background, explains each key point in a register and style read from the replies,
    defines jargon when asked, checks understanding, re-explains the shakiest point and closes."""

    name = "teach-competent"

    def act(self, messages: Messages, persona: Mapping[str, Any] | None = None) -> str:
        lesson = parse_lesson(messages[0]["content"])
        t = agent_turns(messages)
        if t == 0:
            return f"Before we start, what do you already know about {lesson.name}?"
        r = read_student(lesson, messages)
        said = " ".join(m["content"] for m in messages if m["role"] == "assistant").lower()
        if r.all_good or t >= lesson.max_turns - 1:
            return close_line(lesson, messages)
        define = ""
        if r.pending_term:
            meaning = dict(lesson.jargon).get(r.pending_term, "")
            define = f" By the way, '{r.pending_term}' means {meaning}."
        jargon = ""
        if r.level == "expert" and r.mode == "formal" and lesson.jargon:
            jargon = f" In the usual terms, this involves the {lesson.jargon[t % len(lesson.jargon)][0]}."
        if r.needs_prereq and lesson.prereq[1].lower() not in said:
            return teach_line(lesson, lesson.prereq[1], r.mode, messages, define)
        if r.weak is not None:
            return teach_line(lesson, lesson.points[r.weak][1], r.mode, messages, define + jargon)
        todo = [text for _, text in lesson.points if text.lower() not in said]
        if todo:
            return teach_line(lesson, todo[0], r.mode, messages, define + jargon)
        last = next(m["content"] for m in reversed(messages) if m["role"] == "assistant")
        if last in CHECKS:
            return close_line(lesson, messages)
        return fresh(CHECKS, messages, t)


class OracleTeacher(Agent):
    """Reads the persona and plans with the student model itself: each turn it replays the lesson so
    far on a private copy of the student, tries every point (or pair of points, or the prerequisite)
    in every delivery mode, plus a check, and says whichever moves the quiz most; it closes when
    nothing helps. The practical upper bound: no probing, no guessing the style or what is known."""

    name = "teach-oracle"
    privileged = True

    def __init__(self, card: str | Mapping[str, Any] = "teach") -> None:
        self.card = load_card(card)
        self.correct_at = float(self.card["model"]["correct_at"])

    def act(self, messages: Messages, persona: Mapping[str, Any] | None = None) -> str:
        if persona is None:
            raise ValueError("OracleTeacher is privileged: pass the persona")
        lesson = parse_lesson(messages[0]["content"])
        t = agent_turns(messages)
        if t >= lesson.max_turns - 1:
            return close_line(lesson, messages)
        student = ScriptedStudent(self.card)
        student.reset(persona, np.random.default_rng(0))
        for m in messages:
            if m["role"] == "assistant":
                student.respond(m["content"])
        best, best_value = "", self._value(student) + 1e-3
        for line in self._candidates(lesson, messages, student.level == "expert"):
            trial = student.clone()
            reply = trial.respond(line)
            value = self._value(trial) - (1.0 if reply.end_reason == "human_left" else 0.0)
            if value > best_value:
                best, best_value = line, value
        return best or close_line(lesson, messages)

    def _value(self, student: ScriptedStudent) -> float:
        """Quiz score plus a little credit for progress toward correct answers and a known prerequisite."""
        progress = sum(min(u / self.correct_at, 1.0) for u in student.u.values()) / len(student.u)
        return student.outcome().reward + 0.1 * progress + (0.0 if student.missing_prereq else 0.05)

    def _candidates(self, lesson: Lesson, messages: Messages, expert: bool) -> list[str]:
        texts = [text for _, text in lesson.points]
        items = [lesson.prereq[1], *texts, *(f"{a} {b}" for i, a in enumerate(texts) for b in texts[i + 1 :])]
        extra = (
            f" In the usual terms, this involves the {lesson.jargon[0][0]}."
            if expert and lesson.jargon
            else ""
        )
        said = [m["content"] for m in messages if m["role"] == "assistant"]
        out = [c for c in CHECKS if all(_jaccard(c, s) < 0.7 for s in said)][:1]
        for item in items:
            for mode in MODES:
                for frame in FRAMES[mode]:
                    low = _lower_first(item)
                    line = frame.format(analogy=lesson.analogy, example=lesson.example, text=item, low=low)
                    line += extra if mode in ("formal", "explain") else ""
                    if all(_jaccard(line, s) < 0.7 for s in said):
                        out.append(line)
                        break
        return out


TeachEnv.reference_agents = {"naive": NaiveTeacher, "competent": CompetentTeacher, "oracle": OracleTeacher}
