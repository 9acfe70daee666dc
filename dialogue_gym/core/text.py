"""Reading the agent's free text: act recognition that cannot be gamed by stuffing.

Every task's scripted human sees the agent's utterance only through :class:`ActRecognizer`.
It maps sentences to acts from a task card's lexicon (cue phrases, regexes allowed) and
applies the same guards everywhere:

* one act per sentence, at most ``max_acts`` acts credited per turn;
* an utterance that cues many different acts at once, or is mostly cue words, is *stuffed*
  and earns no act at all;
* gibberish (few recognisable words), near-repeats of an earlier agent turn and text aimed at
  the simulator itself ("SYSTEM: ...", "ignore your persona") are flagged so the human can
  react to them as a person would (confusion, annoyance, distrust), never as commands.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

try:
    from re import _constants as _sc
    from re import _parser as _sp
except ImportError:  # Python 3.10
    import sre_constants as _sc  # type: ignore[no-redef]
    import sre_parse as _sp  # type: ignore[no-redef]

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")

COMMON_WORDS = frozenset(
    """
    a about above after again against all also am an and any are aren't as at be because been
    before being below between both but by can can't could did didn't do does doesn't doing don't
    down during each few for from further had has have having he her here hers herself him himself
    his how i i'd i'll i'm i've if in into is isn't it it's its itself just let's me more most my
    myself no nor not now of off on once only or other ought our ours ourselves out over own same
    she should so some such than that that's the their theirs them themselves then there there's
    these they they're this those through to too under until up very was we we're were what what's
    when where which while who whom why will with won't would you you'd you'll you're you've your
    yours yourself yourselves yes yeah okay ok hi hello hey thanks thank please sorry well good
    great nice bad sure really maybe think know want like feel need help tell say said ask make go
    get see look come take give use find work try keep call mean let put seem leave thing things
    way time day week year people person life world today something anything everything nothing one
    two three many much lot little big small new old right wrong best better worse first last next
    kind sort part place idea question answer example point fact sound sounds understand understood
    hear heard explain means meaning simple simply basically imagine picture think thinks thought
    talk talking interested interesting love enjoy enjoyed happy sad hard easy important quite
    pretty again still even ever always never often sometimes usually here there back around away
    together every another else own done doing going money pay free cost cheap expensive plan trip
    today tomorrow morning evening night work job family friend friends home school help helps
    helping support feel feeling feelings
    """.split()
)

# Text addressed to the simulator rather than to the person. Each rule is a set of trigger words
# (one must occur in the utterance) and a small pattern with a literal start, which `re` scans fast;
# patterns run on lower-cased text.
_ROLE = r"(?:system|assistant|developer|user|narrator|admin)"
_WHO = r"(?:user|student|traveller|traveler|client|person|persuadee|human)"
_INJECTION_RULES: tuple[tuple[frozenset[str], re.Pattern[str]], ...] = tuple(
    (frozenset(triggers.split()), re.compile(pattern))
    for triggers, pattern in (
        ("system assistant developer user narrator admin", rf"(?<![\w-]){_ROLE}\s*[:>\]]"),
        ("inst sys system", r"\[/?(?:inst|sys|system)\]|<<\s*sys\s*>>"),
        (
            "ignore",
            r"\bignore (?:(?:all|any|your|the|previous|prior|above) )+(?:instructions|persona|prompt|rules)",
        ),
        (
            "disregard forget",
            r"\b(?:disregard|forget) (?:your|the|all) (?:persona|instructions|prompt|rules)",
        ),
        ("now", r"\byou (?:are|will) now\b"),
        ("instructions", r"\bnew instructions\b"),
        ("act", r"\bact as\b"),
        ("jailbreak", r"\bjailbreak"),
        ("reward score outcome", r"\b(?:reward|score|outcome)\s*(?:=|is\b|:|should be|will be)"),
        (
            _WHO[3:-1].replace("|", " "),
            rf"\bthe {_WHO} (?:now |will |must |has )?"
            r"(?:donates?|gives?|rates?|scores?|answers?|says|is cured|understands|agrees)",
        ),
    )
)
_INJECTION_TRIGGERS = frozenset().union(*(trig for trig, _ in _INJECTION_RULES))
_SPECIAL_TOKEN = re.compile(r"<\|[a-z_]+\|>")


def looks_like_injection(text: str, tokens: frozenset[str] | None = None) -> bool:
    """True when ``text`` addresses the simulator (role markers, chat-template tokens, orders
    to ignore the persona, claims about the reward or the person's decision)."""
    low = text.lower().replace("’", "'")
    toks = tokens if tokens is not None else frozenset(_WORD.findall(low))
    if "<|" in low and _SPECIAL_TOKEN.search(low):
        return True
    if toks.isdisjoint(_INJECTION_TRIGGERS):
        return False
    return any(not toks.isdisjoint(trig) and pat.search(low) for trig, pat in _INJECTION_RULES)


def words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` (letters with inner apostrophes)."""
    return _WORD.findall(text.lower().replace("’", "'"))


def sentences(text: str) -> list[str]:
    """Split ``text`` into sentences on terminal punctuation and newlines."""
    return [s for s in _SENTENCE.split(text.strip()) if s.strip()]


@dataclass(slots=True)
class Analysis:
    """What an utterance does, as the scripted human perceives it."""

    acts: tuple[str, ...]
    cues: Mapping[str, int] = field(default_factory=dict)
    n_words: int = 0
    question: bool = False
    stuffed: bool = False
    gibberish: bool = False
    repeat: bool = False
    injection: bool = False

    @property
    def flags(self) -> tuple[str, ...]:
        """Names of the guards that fired, for ``info`` and analysis."""
        names = ("stuffed", "gibberish", "repeat", "injection")
        return tuple(n for n in names if getattr(self, n))

    @property
    def coherent(self) -> bool:
        """True when no guard fired: the turn reads as a sincere, sensible message."""
        return not (self.stuffed or self.gibberish or self.repeat or self.injection)


class ActRecognizer:
    """Maps an utterance to acts from a lexicon ``{act: [cue, ...]}`` with anti-gaming guards.

    Cues are case-insensitive regular expressions matched on word boundaries. ``vocabulary``
    extends the common-English word list used by the gibberish check.
    """

    def __init__(
        self,
        lexicon: Mapping[str, Sequence[str]],
        *,
        vocabulary: Iterable[str] = (),
        max_acts: int = 2,
        stuffing_acts: int = 4,
        stuffing_density: float = 0.25,
        repeat_similarity: float = 0.8,
    ) -> None:
        if not lexicon:
            raise ValueError("act lexicon is empty")
        self.acts = tuple(lexicon)
        # One flat alternation of every cue, scanned once per sentence. Each cue ends in an empty
        # marker group whose name (``a<act index>``) is the match's ``lastgroup``; text is
        # lower-cased first, so no IGNORECASE is needed, and a lookahead on the characters any cue
        # can start with lets `re` skip most positions after one test.
        cues = [(i, _lower_pattern(c)) for i, act_cues in enumerate(lexicon.values()) for c in act_cues]
        branches = [f"(?:{c})(?P<c{n}>)" for n, (_, c) in enumerate(cues)]
        self._cue_act = [self.acts[i] for i, _ in cues]
        guard = _first_char_guard([c for _, c in cues])
        self._pattern = re.compile(r"\b" + guard + "(?:" + "|".join(branches) + r")\b")
        vocab = set(COMMON_WORDS)
        for cues in lexicon.values():
            for cue in cues:
                vocab.update(words(re.sub(r"\\[a-z]|[\\^$.*+?()\[\]{}|]", " ", cue)))
        vocab.update(w for item in vocabulary for w in words(item))
        self.vocabulary = frozenset(vocab)
        self.max_acts = max_acts
        self.stuffing_acts = stuffing_acts
        self.stuffing_density = stuffing_density
        self.repeat_similarity = repeat_similarity

    def analyse(self, text: str, history: Sequence[str] = ()) -> Analysis:
        """Analyse ``text`` given the agent's earlier utterances ``history`` (oldest first)."""
        low = text.lower().replace("’", "'")
        toks = _WORD.findall(low)
        n = len(toks)
        known = sum(map(self.vocabulary.__contains__, toks))
        gibberish = n == 0 or known / n < 0.4
        tokset = frozenset(toks)
        injection = looks_like_injection(low, tokset)
        repeat = n >= 3 and any(_similar(tokset, _wordset(h), self.repeat_similarity) for h in history)

        cue_act = self._cue_act
        cues: dict[str, int] = {}
        credited: list[str] = []
        for sent in _SENTENCE.split(low.strip()):
            counts: dict[str, int] = {}
            for m in self._pattern.finditer(sent):
                act = cue_act[int(m.lastgroup[1:])]  # type: ignore[index]
                counts[act] = counts.get(act, 0) + 1
            if counts:
                for act, c in counts.items():
                    cues[act] = cues.get(act, 0) + c
                best = max(counts, key=counts.__getitem__)  # most hits; ties: first in the sentence
                if best not in credited:
                    credited.append(best)
        total_hits = sum(cues.values())
        stuffed = len(cues) >= self.stuffing_acts or (
            total_hits >= 4 and total_hits / max(n, 1) > self.stuffing_density
        )
        guarded = stuffed or gibberish or injection or repeat
        return Analysis(
            acts=() if guarded else tuple(credited[: self.max_acts]),
            cues=cues,
            n_words=n,
            question="?" in text,
            stuffed=stuffed,
            gibberish=gibberish,
            repeat=repeat,
            injection=injection,
        )


@functools.lru_cache(maxsize=4096)
def _wordset(text: str) -> frozenset[str]:
    return frozenset(words(text))


def _similar(a: frozenset[str], b: frozenset[str], threshold: float) -> bool:
    """Jaccard similarity of ``a`` and ``b`` is at least ``threshold`` (> 0)."""
    la, lb = len(a), len(b)
    if min(la, lb) < threshold * max(la, lb):  # Jaccard <= min/max: no need to intersect
        return False
    inter = len(a & b)
    return inter / (la + lb - inter) >= threshold


def _first_chars(items: Any) -> set[str] | None:
    """Characters a parsed regex can start with, or ``None`` when that is not simple to tell."""
    out: set[str] = set()
    for op, av in items:
        if op is _sc.AT:  # \b, ^: zero-width
            continue
        if op is _sc.LITERAL:
            return out | {chr(av)}
        if op is _sc.IN:
            for o, a in av:
                if o is _sc.LITERAL:
                    out.add(chr(a))
                elif o is _sc.RANGE:
                    out.update(map(chr, range(a[0], a[1] + 1)))
                else:
                    return None
            return out
        if op is _sc.SUBPATTERN or op is _sc.BRANCH:
            subs = [av[-1]] if op is _sc.SUBPATTERN else av[1]
            for sub in subs:
                first = _first_chars(sub)
                if first is None:
                    return None
                out |= first
            return out
        if op is _sc.MAX_REPEAT or op is _sc.MIN_REPEAT:
            low, _, sub = av
            first = _first_chars(sub)
            if first is None:
                return None
            out |= first
            if low >= 1:
                return out
            continue
        return None
    return None  # the pattern can match the empty string


def _lower_pattern(cue: str) -> str:
    """Lower-case a regex's literal letters, leaving escapes such as ``\\S`` or ``\\W`` alone."""
    return re.sub(r"\\.|[A-Z]+", lambda m: m[0] if m[0][0] == "\\" else m[0].lower(), cue)


def _first_char_guard(cues: Sequence[str]) -> str:
    """A lookahead ``(?=[...])`` on the possible first characters of ``cues`` ('' if unknown)."""
    chars: set[str] = set()
    for cue in cues:
        try:
            first = _first_chars(_sp.parse(cue))
        except Exception:  # an unusual pattern: no guard, same matches
            return ""
        if not first:
            return ""
        chars |= first
    return "(?=[" + "".join(re.escape(c) for c in sorted(chars)) + "])"
