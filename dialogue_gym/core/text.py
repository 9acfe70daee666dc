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

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

try:
    from re import _constants as _sc
    from re import _parser as _sp
except ImportError:  # Python 3.10
    import sre_constants as _sc  # type: ignore[no-redef]
    import sre_parse as _sp  # type: ignore[no-redef]

# Words: letters with inner apostrophes, ``[a-z]+(?:'[a-z]+)?``, written to start with a plain
# character class, so that `re` skips to the next letter in C. _tokens() finds the same words faster.
_WORD = re.compile(r"[a-z][a-z]*(?:'[a-z]+)?")
# Every ASCII character but letters and the apostrophe to a space (see _tokens), as a table for
# bytes.translate: on ASCII text, encoding, translating the bytes and decoding is twice as fast
# as str.translate with a mapping.
_LETTERS = bytes(i if i < 128 and (chr(i).islower() or chr(i) == "'") else 32 for i in range(256))
# Sentence breaks: whitespace after ``.!?;``, or a run of line breaks. Written as
# ``(?<=[.!?;])\s+|\n+`` would split the same, but starting with ``\s`` lets `re` skip to the next
# whitespace character in C instead of trying both branches at every position (3x faster).
_SENTENCE = re.compile(r"\s(?:(?<=[.!?;]\s)\s*|(?<=\n)\n*)")


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
    return _injection(low, tokens if tokens is not None else frozenset(_WORD.findall(low)))


def _injection(low: str, toks: frozenset[str]) -> bool:
    """:func:`looks_like_injection` of text already lower-cased with straight apostrophes (lowering
    again changes nothing), given its word set."""
    if "<|" in low and _SPECIAL_TOKEN.search(low):
        return True
    if toks.isdisjoint(_INJECTION_TRIGGERS):
        return False
    return any(not toks.isdisjoint(trig) and pat.search(low) for trig, pat in _INJECTION_RULES)


def words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` (letters with inner apostrophes)."""
    return _tokens(text.lower().replace("’", "'"))


def sentences(text: str) -> list[str]:
    """Split ``text`` into sentences on terminal punctuation and newlines."""
    return [s for s in _SENTENCE.split(text.strip()) if s.strip()]


def _tokens(low: str) -> list[str]:
    """``_WORD.findall(low)`` for lower-cased text, twice as fast on ASCII: every character but
    letters and apostrophes becomes a space and ``str.split`` cuts the runs; only runs with an
    apostrophe (``don't``, ``'s``) need the regex, and the regex cannot match across a cut."""
    if not low.isascii():
        return _WORD.findall(low)
    runs = low.encode("ascii").translate(_LETTERS).decode("ascii").split()
    if "'" not in low:
        return runs
    out: list[str] = []
    for run in runs:
        if "'" in run:
            out += _WORD.findall(run)
        else:
            out.append(run)
    return out


def _split_sentences(low: str) -> list[str]:
    """``_SENTENCE.split(low.strip())``, without the regex when no ``.!?;`` but the last
    character and no line break can end a sentence (one-sentence turns are common)."""
    text = low.strip()
    body = text[:-1]
    if "." in body or "?" in body or "!" in body or ";" in body or "\n" in text:
        return _SENTENCE.split(text)
    return [text]


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
    # The utterance's sentences, lower-cased (as analyse() cut them), for sentence_words. Not part
    # of the repr or equality.
    sentence_texts: Sequence[str] = field(default=(), repr=False, compare=False)
    _sentence_words: list[list[str]] | None = field(default=None, repr=False, compare=False)
    # The set of the utterance's words (as words() reads them), for a task's own quick tests.
    word_set: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    @property
    def sentence_words(self) -> Sequence[Sequence[str]]:
        """The words of each sentence (as words() and sentences() read them, empty sentences
        included; joined, the words of the text), for the task's own reading of the turn without
        reading the text again. Worked out on first use: tasks read it only for some turns."""
        if self._sentence_words is None:
            self._sentence_words = [_tokens(sent) for sent in self.sentence_texts]
        return self._sentence_words

    @property
    def flags(self) -> tuple[str, ...]:
        """Names of the guards that fired, for ``info`` and analysis."""
        if not (self.stuffed or self.gibberish or self.repeat or self.injection):
            return ()
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
        # One alternation of every cue, scanned once per sentence. Each cue ends in an empty marker
        # group, the match's last group, whose number tells the act; text is lower-cased first, so
        # no IGNORECASE is needed, and a lookahead on the characters any cue can start with lets
        # `re` skip most positions after one test. Where every cue can be written as alternatives
        # that start with a plain character (see _literal_first), they are grouped by that
        # character, so `re` tries only the cues that can match there: the same first match, with
        # a fraction of the branch tests.
        cues = [(i, _lower_pattern(c)) for i, act_cues in enumerate(lexicon.values()) for c in act_cues]
        alternation, marker_cue, first = _cue_alternation(cues)
        starts = first if first is not None else _first_chars_of(c for _, c in cues)
        guard = _char_lookahead(starts) if starts else ""
        self._pattern = re.compile(r"\b" + guard + "(?:" + alternation + r")\b")
        # For ASCII text (most turns) the same matches, found faster: `re` tests a word boundary
        # at every position of the text, but skips in C to each character of a leading set. So
        # this pattern starts with (and consumes) the non-word character before the cue, on the
        # sentence with a space in front (for a cue at its start). Used only where that finds
        # the same matches (_ascii_scan_safe): cues start and end with a word character (so two
        # matches never need the same character between them) and look at nothing before
        # themselves.
        self._ascii_pattern: re.Pattern[str] | None = None
        if (
            starts
            and all(c.isascii() and c.isalnum() for c in starts)
            and all(_ascii_scan_safe(c) for _, c in cues)
        ):
            self._ascii_pattern = re.compile(_ASCII_NON_WORD + guard + "(?:" + alternation + r")\b")
        self._group_act: list[str | None] = [None] * (self._pattern.groups + 1)
        for name, group in self._pattern.groupindex.items():
            if name.startswith("c") and name[1:].isdigit():  # marker c<m>: cue marker_cue[m]
                self._group_act[group] = self.acts[cues[marker_cue[int(name[1:])]][0]]
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
        sents = _split_sentences(low)
        toks = _tokens(low)
        # one sentence: its words are the text's; else Analysis.sentence_words cuts them if asked
        sentence_words = [toks] if len(sents) == 1 else None
        n = len(toks)
        tokset = _remember(text, frozenset(toks))  # = _wordset(text), for when it is history
        unknown = tokset - self.vocabulary  # then count their occurrences: usually none
        known = n - sum(map(toks.count, unknown)) if unknown else n
        gibberish = n == 0 or known / n < 0.4
        injection = _injection(low, tokset)
        repeat = False
        if n >= 3 and history:  # Jaccard similarity of the word sets to any earlier utterance
            threshold, la = self.repeat_similarity, len(tokset)
            for h in history:
                b = _wordset(h)  # earlier turns were analysed: usually remembered
                lb = len(b)
                if (la if la < lb else lb) < threshold * (lb if la < lb else la):
                    continue  # Jaccard <= min/max: no need to intersect
                inter = len(tokset & b)
                if inter / (la + lb - inter) >= threshold:
                    repeat = True
                    break

        group_act, finditer, before = self._group_act, self._pattern.finditer, ""
        if self._ascii_pattern is not None and low.isascii():
            finditer, before = self._ascii_pattern.finditer, " "  # see __init__
        cues: dict[str, int] = {}
        credited: list[str] = []
        total_hits = 0
        for sent in sents:
            hits: list[str] = [group_act[m.lastindex] for m in finditer(before + sent)]  # type: ignore[index,misc]
            if not hits:
                continue
            total_hits += len(hits)
            if len(hits) == 1:  # the common case: one cue in the sentence
                best = hits[0]
                cues[best] = cues.get(best, 0) + 1
            else:
                counts: dict[str, int] = {}
                for act in hits:
                    counts[act] = counts.get(act, 0) + 1
                for act, c in counts.items():
                    cues[act] = cues.get(act, 0) + c
                best = max(counts, key=counts.__getitem__)  # most hits; ties: first in the sentence
            if best not in credited:
                credited.append(best)
        stuffed = len(cues) >= self.stuffing_acts or (
            total_hits >= 4 and total_hits / max(n, 1) > self.stuffing_density
        )
        guarded = stuffed or gibberish or injection or repeat
        # positional: Analysis(acts, cues, n_words, question, stuffed, gibberish, repeat, injection,
        # sentence_texts, _sentence_words, word_set)
        return Analysis(
            () if guarded else tuple(credited[: self.max_acts]),
            cues,
            n,
            "?" in text,
            stuffed,
            gibberish,
            repeat,
            injection,
            sents,
            sentence_words,
            tokset,
        )


# frozenset(words(text)) of recent texts. analyse() stores the set it builds for every utterance,
# so when the utterance comes back as history in later turns its words are not read again.
_WORD_SETS: dict[str, frozenset[str]] = {}
_WORD_SETS_MAX = 4096


def _wordset(text: str) -> frozenset[str]:
    """``frozenset(words(text))``, remembered."""
    found = _WORD_SETS.get(text)
    if found is None:
        found = _remember(text, frozenset(words(text)))
    return found


def _remember(text: str, word_set: frozenset[str]) -> frozenset[str]:
    if len(_WORD_SETS) >= _WORD_SETS_MAX:
        _WORD_SETS.clear()  # bounded, and safe with threads (one C call)
    _WORD_SETS[text] = word_set
    return word_set


_SPECIAL = frozenset("\\.^$*+?{}[]|()")
# Parsed-pattern ops with nothing nested in them (for _walk).
_FLAT_OPS = (_sc.LITERAL, _sc.NOT_LITERAL, _sc.IN, _sc.ANY, _sc.AT, _sc.GROUPREF, _sc.CATEGORY)
_QUANTIFIERS = ("*", "+", "?", "{")
_LEADING_GUARD = re.compile(r"\(\?=\[([a-z0-9]+)\]\)")  # a first-character lookahead (?=[abc])


def _cue_alternation(cues: Sequence[tuple[int, str]]) -> tuple[str, list[int], set[str] | None]:
    """The alternation of ``cues`` ((act index, lower-cased pattern) in lexicon order), for each
    marker group ``c<m>`` that ends an alternative the index of its cue, and the characters a match
    can start with (``None`` if not worked out).

    When every cue expands into alternatives with a plain first character, the alternatives are
    grouped by that character, each group keeping their order: ``a(?:...)|b(?:...)``. At any
    position only the group of the character there can match, and within it `re` tries the same
    alternatives in the same order as in the flat alternation, so the first match is the same.
    Within a group the same is done again on the next character while its members expand that
    way (a character trie: ``th(?:e key|ink of)`` reads ``th`` once for both cues).
    """
    flat = "|".join(f"(?:{c})(?P<c{n}>)" for n, (_, c) in enumerate(cues)), list(range(len(cues))), None
    if any(re.search(r"\\[1-9]|\(\?P|\(\?\(", c) for _, c in cues):  # backreferences, named groups
        return flat
    entries: list[tuple[str, int]] = []
    for n, (_, cue) in enumerate(cues):
        alternatives = _literal_first(cue)
        if alternatives is None:
            return flat
        entries += [(alt, n) for alt in alternatives]
    marker_cue: list[int] = []
    return _dispatch(entries, marker_cue), marker_cue, {alt[0] for alt, _ in entries}


def _dispatch(entries: Sequence[tuple[str, int]], marker_cue: list[int], depth: int = 0) -> str:
    """``entries`` ((alternative starting with a plain character, cue index), in order) as an
    alternation grouped by first character, recursively; each leaf ends in a new marker group
    ``c<m>``, and ``marker_cue[m]`` is its cue."""
    groups: dict[str, list[tuple[str, int]]] = {}
    for alt, n in entries:
        groups.setdefault(alt[0], []).append((alt[1:], n))
    out = []
    for ch, members in groups.items():
        expanded: list[tuple[str, int]] | None = None
        if len(members) > 1 and depth < 64:
            expanded = []
            for rest, n in members:
                alts = _literal_first(rest) if rest else None
                if alts is None:
                    expanded = None
                    break
                expanded += [(a, n) for a in alts]
            if expanded is not None and len(expanded) > 2 * len(members) + 8:
                expanded = None  # optional groups multiplying out: leave this group flat
        if expanded is not None:
            body = _dispatch(expanded, marker_cue, depth + 1)
        else:
            leaves = []
            for rest, n in members:
                leaves.append(f"(?:{rest})(?P<c{len(marker_cue)}>)")
                marker_cue.append(n)
            body = "|".join(leaves)
        out.append(re.escape(ch) + "(?:" + body + ")")
    return "|".join(out)


def _literal_first(pattern: str, depth: int = 0) -> list[str] | None:
    """``pattern`` as alternatives that each start with a plain character, in the order `re` tries
    them, or ``None`` when that needs more than opening leading groups and top-level ``|``.

    ``(?:A|B)C`` becomes ``AC``, ``BC``; an optional group ``(?:A)?C`` becomes ``AC``, ``C`` (greedy:
    the group first). A capturing group loses its capture, which nothing reads (the caller refuses
    backreferences).
    """
    parts = _split_alternatives(pattern)
    if parts is None or depth > 8:
        return None
    if len(parts) > 1:
        out: list[str] = []
        for part in parts:
            alts = _literal_first(part, depth + 1)
            if alts is None:
                return None
            out += alts
        return out
    if not pattern:
        return None  # it could match the empty string
    if pattern[0] not in _SPECIAL:
        return None if pattern[1:2] in _QUANTIFIERS else [pattern]
    guard = _LEADING_GUARD.match(pattern)
    if guard:  # (?=[abc])X: the alternatives of X that start with a, b or c; the rest never match
        alts = _literal_first(pattern[guard.end() :], depth + 1)
        return None if alts is None else [a for a in alts if a[0] in guard[1]]
    end = _group_end(pattern) if pattern[0] == "(" else -1
    if end < 0:
        return None
    inner, rest = pattern[1:end], pattern[end + 1 :]
    if inner.startswith("?:"):
        inner = inner[2:]
    elif inner.startswith("?"):
        return None  # a lookaround, named group or flags
    choices = _split_alternatives(inner)
    if choices is None:
        return None
    if rest[:1] == "?" and rest[1:2] not in ("?", "+"):
        choices, rest = [*choices, ""], rest[1:]
    elif rest[:1] in _QUANTIFIERS:
        return None
    out = []
    for choice in choices:
        alts = _literal_first(choice + rest, depth + 1)
        if alts is None:
            return None
        out += alts
    return out


def _brackets(pattern: str) -> Iterator[tuple[int, str, int]]:
    """``(index, "(" | ")" | "|", depth after it)`` for each group bracket and alternation bar of
    ``pattern`` outside escapes and character classes; ``(index, "", -1)`` ends it early when a
    character class does not close."""
    depth, i = 0, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 1
        elif ch == "[":
            i = _class_end(pattern, i)
            if i < 0:
                yield len(pattern), "", -1
                return
        elif ch in "()|":
            depth += {"(": 1, ")": -1, "|": 0}[ch]
            yield i, ch, depth
        i += 1


def _split_alternatives(pattern: str) -> list[str] | None:
    """``pattern`` split at its top-level ``|`` (outside groups and character classes); ``None``
    when its brackets do not balance."""
    parts, start, depth = [], 0, 0
    for i, ch, depth in _brackets(pattern):
        if depth < 0:
            return None
        if ch == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
    if depth:
        return None
    parts.append(pattern[start:])
    return parts


def _group_end(pattern: str) -> int:
    """Index of the ``)`` closing the group that opens at ``pattern[0]`` (-1 if none)."""
    for i, ch, depth in _brackets(pattern):
        if depth < 0:
            return -1
        if ch == ")" and depth == 0:
            return i
    return -1


def _class_end(pattern: str, start: int) -> int:
    """Index of the ``]`` closing the character class that opens at ``pattern[start]`` (-1 if none)."""
    i = start + 1
    if pattern[i : i + 1] == "^":
        i += 1
    if pattern[i : i + 1] == "]":  # a leading ] is a literal
        i += 1
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern[i] == "]":
            return i
        i += 1
    return -1


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


def _first_chars_of(cues: Iterable[str]) -> set[str] | None:
    """The characters a match of any of ``cues`` can start with (None if not simple to tell)."""
    chars: set[str] = set()
    for cue in cues:
        try:
            first = _first_chars(_sp.parse(cue))
        except Exception:  # an unusual pattern
            return None
        if not first:
            return None
        chars |= first
    return chars


# Every ASCII character that is not a word character (\w): not a letter, digit or underscore.
_ASCII_NON_WORD = r"[\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]"


def _ascii_scan_safe(cue: str) -> bool:
    """Whether ``cue`` (lower-cased) suits the ASCII scan (see ``ActRecognizer.__init__``): no
    lookbehind or start anchor (they would see the consumed character), and no match that is
    empty or ends with a non-word character. Unusual patterns: no."""
    try:
        items = _sp.parse(cue)
    except Exception:
        return False
    for op, av in _walk(items):
        if op is None or (op in (_sc.ASSERT, _sc.ASSERT_NOT) and av[0] < 0):
            return False
        if op is _sc.AT and av not in (_sc.AT_BOUNDARY, _sc.AT_NON_BOUNDARY, _sc.AT_END, _sc.AT_END_STRING):
            return False
    nonword, empty = _tail(items)
    return not nonword and not empty


def _walk(items: Any) -> Iterator[tuple[Any, Any]]:
    """Every ``(op, av)`` of a parsed pattern, nested ones included."""
    for op, av in items:
        yield op, av
        if op is _sc.SUBPATTERN:
            yield from _walk(av[-1])
        elif op is _sc.BRANCH:
            for sub in av[1]:
                yield from _walk(sub)
        elif op in (_sc.MAX_REPEAT, _sc.MIN_REPEAT, _sc.ASSERT, _sc.ASSERT_NOT):
            yield from _walk(av[-1])
        elif op is _sc.GROUPREF_EXISTS:
            for sub in av[1:]:
                if sub is not None:
                    yield from _walk(sub)
        elif op not in _FLAT_OPS:
            yield None, None  # a construct not looked into (atomic groups...): _ascii_scan_safe says no


def _is_word_char(code: int) -> bool:
    return chr(code).isalnum() or code == 95  # _


def _tail(items: Any) -> tuple[bool, bool]:
    """(a match of parsed ``items`` may end with a non-word character, it may be empty); True
    where unsure."""
    for op, av in reversed(list(items)):
        if op is _sc.AT:
            continue  # zero-width: the character before decides
        if op is _sc.LITERAL:
            return not _is_word_char(av), False
        if op is _sc.IN:
            word = all(
                (o is _sc.LITERAL and _is_word_char(a))
                or (o is _sc.RANGE and all(_is_word_char(c) for c in range(a[0], a[1] + 1)))
                or (o is _sc.CATEGORY and a in (_sc.CATEGORY_WORD, _sc.CATEGORY_DIGIT))
                for o, a in av
            )
            return not word, False
        if op in (_sc.SUBPATTERN, _sc.BRANCH, _sc.MAX_REPEAT, _sc.MIN_REPEAT):
            subs = [av[-1]] if op is not _sc.BRANCH else av[1]
            tails = [_tail(sub) for sub in subs]
            if any(nonword for nonword, _ in tails):
                return True, False
            repeat_none = op in (_sc.MAX_REPEAT, _sc.MIN_REPEAT) and av[0] == 0
            may_be_empty = repeat_none or any(empty for _, empty in tails)
            if not may_be_empty:
                return False, False
            continue  # it may match nothing: the item before it may end the match
        return True, False  # anything else (any character, lookarounds...): unsure
    return False, True


def _char_lookahead(chars: set[str]) -> str:
    """A lookahead ``(?=[...])`` on one of ``chars``."""
    return "(?=[" + "".join(re.escape(c) for c in sorted(chars)) + "])"
