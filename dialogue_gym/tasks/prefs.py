"""DialoguePrefs-v0: preference elicitation, with the agent as a travel agent.

A traveller is visiting a city and wants exactly ``k`` activities (3 on the built-in card) from
a catalogue of 44 (``envs/prefs.yaml``: cost, themes among culture/nature/food/nightlife/
adventure/shopping, pace, indoor/outdoor, step-free access, suitability for children, hours).
The agent must find out what the traveller enjoys and must avoid, then name its picks.

Act taxonomy (cues and examples in the card):

* ``small_talk`` - pleasantries. A chatty traveller warms up (one turn of patience back, and
  opens up more to open questions); a busy one loses extra patience.
* ``open_question`` - "what kind of things do you enjoy?". Busy travellers answer vaguely ("a bit
  of everything"); chatty ones name their favourite theme (two once rapport exists).
* ``ask_attribute`` - a concrete question about named attributes (a theme, pace, indoor/outdoor,
  time; constraint topics too). One or two named attributes get the true answer (its level);
  a list of three or more is unfocused and gets a vague answer; none named counts as open.
* ``ask_constraints`` - budget, children, mobility. Named topics are answered; a generic question
  gets budget and children (mobility only comes up when asked about).
* ``clarify`` - "could you tell me more?": draws out the strongest preference not yet stated.
* ``suggest`` - floats one or two catalogue activities by name; the traveller reacts (and names a
  constraint it breaks). More than two at once is an unfocused list.
* ``recommend`` - the final move: names catalogue activities and ends the episode
  (``agent_closed``). Rule for lists: 1..k names are taken as the picks (missing picks are worth
  nothing); more than k names is not a recommendation at all (a brochure, not a choice): the
  traveller asks the agent to choose and loses patience. So naming everything never helps.

Hidden state. The persona fixes theme weights (levels hates/indifferent/likes/loves, -1/0/0.5/1,
jittered by up to 0.2 so a stated level is still fuzzy), preferred pace, indoor/outdoor, whether
only short slots are free, and hard constraints: a budget cap per activity, children (nothing
unsuitable for kids, so no nightlife venues), mobility (step-free only). ``style`` (chatty/busy)
sets patience and how the traveller reacts to small talk and open questions. The episode tracks
patience (each turn costs one; confusion, repeats, stuffing and injected commands cost more;
asking again about something already answered costs extra) and what was revealed. When patience
runs low the traveller asks for suggestions; at zero they leave (``human_left``).

Reward (at the end): with ``u(a)`` = sum of the weights of the activity's themes + pace fit +
indoor/outdoor fit - long-activity penalty, and ``U*`` = the best total utility of ``k`` feasible
activities, a pick is worth ``u(a)`` if feasible and ``-violation_penalty * U*/k`` if it breaks a
hard constraint; reward = clip(sum / U*, -1, 1). No recommendation (left, or turn limit) pays
``no_plan`` (-0.2). Every turn also pays ``turn_cost``. Breakdown: picks, utility, best possible,
violations.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dialogue_gym.agents.base import Agent, Messages, agent_turns, human_turns
from dialogue_gym.core.cards import TaskCardError, require_keys
from dialogue_gym.core.env import DialogueEnv
from dialogue_gym.core.human import HumanReply, Outcome, Question
from dialogue_gym.core.scripted import ScriptedHuman
from dialogue_gym.core.text import Analysis, sentences, words

SOFT_TOPICS = ("pace", "setting", "time")
CONSTRAINT_TOPICS = ("budget", "kids", "mobility")
LEVEL_KEYS = {-1.0: "theme_dislike", 0.0: "theme_neutral", 0.5: "theme_like", 1.0: "theme_love"}
FLAG_COSTS = {"injection": 3.0, "stuffed": 2.0, "gibberish": 2.0, "repeat": 2.0}
SAY_BATCH = 32  # reply-variant choices drawn from the rng at a time
FLAG_REPLIES = {"injection": "distrust", "stuffed": "annoyed", "gibberish": "confused", "repeat": "repeated"}


# --- utility: shared by the traveller's outcome model and the agents' planning ---------------
PACE_INDEX = {"relaxed": 0, "moderate": 1, "active": 2}


class CatalogueTable:
    """The catalogue as arrays, so a traveller's utility for every activity is one vector op.

    ``u(a) = sum of the theme weights of a + pace fit + indoor/outdoor fit - long-activity
    penalty`` (weights in ``ucfg``); feasibility checks the hard constraints. Built once per env
    (the traveller) or per parsed catalogue (the agents), so both score picks the same way.
    """

    def __init__(
        self, catalogue: Sequence[Mapping[str, Any]], themes: Sequence[str], ucfg: Mapping[str, Any]
    ) -> None:
        self.names = [a["name"] for a in catalogue]
        self.index = {n.lower(): i for i, n in enumerate(self.names)}
        self.themes = list(themes)
        self.theme_matrix = np.array(
            [[t in a["themes"] for t in self.themes] for a in catalogue], dtype=float
        )
        pace = np.array([PACE_INDEX[a["pace"]] for a in catalogue])
        indoor = np.array([a["setting"] == "indoor" for a in catalogue])
        sm = float(ucfg["setting_match"])
        self.pace_fit = {
            p: float(ucfg["pace_match"]) * (1.0 - np.abs(pace - i)) for p, i in PACE_INDEX.items()
        }
        self.setting_fit = {"indoor": np.where(indoor, sm, -sm), "outdoor": np.where(indoor, -sm, sm)}
        self.long = np.array([a["hours"] > ucfg["long_hours"] for a in catalogue], dtype=float)
        self.long_penalty = float(ucfg["long_penalty"])
        self.cost = np.array([a["cost"] for a in catalogue], dtype=float)
        self.kid_friendly = np.array([bool(a["kid_friendly"]) for a in catalogue])
        self.step_free = np.array([bool(a["step_free"]) for a in catalogue])
        # The same data as plain Python lists for the traveller's per-episode scoring: on 44
        # activities, list arithmetic beats numpy's per-call overhead several times over.
        slot = {t: j for j, t in enumerate(self.themes)}
        rows = [sorted(slot[t] for t in set(a["themes"]) if t in slot) for a in catalogue]
        self._pairs = (
            [(r + [len(self.themes)] * 2)[:2] for r in rows] if max(map(len, rows), default=0) <= 2 else None
        )
        self._cost = self.cost.tolist()
        self._kids_ok = self.kid_friendly.tolist()
        self._step_free = self.step_free.tolist()
        self._rows: dict[tuple[Any, ...], list[tuple[int, int, float, float, float]]] = {}
        self._feasible: dict[tuple[Any, ...], list[int]] = {}

    def utilities(self, prefs: Mapping[str, Any]) -> np.ndarray:
        """Each activity's utility for ``prefs`` (weights, pace, setting; short_time: bool or probability)."""
        weights = prefs["weights"]
        u = self.theme_matrix @ np.array([weights.get(t, 0.0) for t in self.themes])
        if prefs.get("pace") in self.pace_fit:
            u += self.pace_fit[prefs["pace"]]
        if prefs.get("setting") in self.setting_fit:
            u += self.setting_fit[prefs["setting"]]
        if prefs.get("short_time"):
            u -= self.long_penalty * float(prefs["short_time"]) * self.long
        return u

    def feasible(self, prefs: Mapping[str, Any]) -> np.ndarray:
        """Which activities respect the hard constraints (budget cap, children, mobility)."""
        ok = np.ones(len(self.names), dtype=bool)
        if prefs.get("budget") is not None:
            ok &= self.cost <= prefs["budget"]
        if prefs.get("kids"):
            ok &= self.kid_friendly
        if prefs.get("mobility"):
            ok &= self.step_free
        return ok

    def broken(self, i: int, prefs: Mapping[str, Any]) -> list[str]:
        """The hard constraints (``budget``, ``kids``, ``mobility``) that activity ``i`` breaks."""
        out = []
        if prefs.get("budget") is not None and self._cost[i] > prefs["budget"]:
            out.append("budget")
        if prefs.get("kids") and not self._kids_ok[i]:
            out.append("kids")
        if prefs.get("mobility") and not self._step_free[i]:
            out.append("mobility")
        return out

    def plan_value(self, prefs: Mapping[str, Any], k: int) -> tuple[list[float], float]:
        """Every activity's utility for ``prefs`` (as a list) and the total of the best ``k``
        feasible ones: the same numbers as :meth:`utilities` and :meth:`best`, in plain Python."""
        weights = prefs["weights"]
        return self.score([float(weights.get(t, 0.0)) for t in self.themes], prefs, k)

    def score(self, w: list[float], prefs: Mapping[str, Any], k: int) -> tuple[list[float], float]:
        """:meth:`plan_value` with the theme weights given as a list in ``themes`` order."""
        if self._pairs is None:  # a catalogue with 3+ themes per activity: the numpy path
            u = self.utilities(prefs)
            return u.tolist(), sum(v for v, _ in self.best(prefs, k, u))
        short = prefs.get("short_time")
        key = (prefs.get("pace"), prefs.get("setting"), float(short) if short else 0.0)
        rows = self._rows.get(key) or self._build_rows(key)
        w = [*w, 0.0]  # the slot of an activity's missing second theme
        # operation order as in utilities(): theme sum, + pace fit, + setting fit, - long penalty
        u = [w[a] + w[b] + pf + sf - lp for a, b, pf, sf, lp in rows]
        fkey = (prefs.get("budget"), bool(prefs.get("kids")), bool(prefs.get("mobility")))
        feas = self._feasible.get(fkey)
        if feas is None:
            feas = [i for i in range(len(self.names)) if not self.broken(i, prefs)]
            if len(self._feasible) < 256:  # budgets given in options personas are open-ended
                self._feasible[fkey] = feas
        top = sorted(map(u.__getitem__, feas), reverse=True)[:k]
        return u, sum(top)

    def _build_rows(self, key: tuple[Any, ...]) -> list[tuple[int, int, float, float, float]]:
        pace, setting, short = key
        zeros = [0.0] * len(self.names)
        pf = self.pace_fit[pace].tolist() if pace in self.pace_fit else zeros
        sf = self.setting_fit[setting].tolist() if setting in self.setting_fit else zeros
        lp = (self.long_penalty * short * self.long).tolist() if short else zeros
        assert self._pairs is not None
        rows = [(a, b, pf[i], sf[i], lp[i]) for i, (a, b) in enumerate(self._pairs)]
        self._rows[key] = rows
        return rows

    def best(self, prefs: Mapping[str, Any], k: int, u: np.ndarray | None = None) -> list[tuple[float, str]]:
        """The ``k`` best feasible activities (utilities ``u`` if given) as (utility, name), best first."""
        u = self.utilities(prefs) if u is None else u
        masked = np.where(self.feasible(prefs), u, -np.inf)
        top = np.argsort(-masked, kind="stable")[:k]
        return [(float(u[i]), self.names[i]) for i in top.tolist() if masked[i] > -np.inf]


# --- persona sampling ------------------------------------------------------------------------
class PersonaSampler:
    """Draws travellers from the card's persona distribution (style, patience, fuzzy theme
    weights, soft preferences, hard constraints); cumulative tables are built once per env."""

    def __init__(self, card: Mapping[str, Any], table: CatalogueTable) -> None:
        spec = card["personas"]
        self.spec = spec
        self.k = int(card["k"])
        self.table = table
        self.themes = list(card["themes"])
        self.levels = [float(v) for v in spec["theme_levels"]]
        self.level_cum = (np.cumsum(spec["theme_probs"]) / np.sum(spec["theme_probs"])).tolist()
        self.jitter = float(spec["theme_jitter"])
        self.dists = {
            key: (list(spec[key]), (np.cumsum(list(spec[key].values())) / sum(spec[key].values())).tolist())
            for key in ("styles", "budget_caps", "pace_probs", "setting_probs")
        }
        self.parties = ["me", "my partner and me", "a couple of friends and me"]
        self.names = [str(x) for x in spec["names"]]
        self.cities = [str(x) for x in spec["cities"]]
        self.extra = 0  # uniforms drawn after the persona's own, handed on in ``spare``
        # The last persona drawn, with its utilities, best plan value and the spare uniforms, so
        # the traveller taking it on does not score it again (see ScriptedTraveller.start).
        self.last: tuple[dict[str, Any], list[float], float, list[float]] | None = None

    def _pick(self, key: str, r: float) -> str:
        keys, cum = self.dists[key]
        return keys[min(bisect.bisect_right(cum, r), len(keys) - 1)]

    def __call__(self, rng: np.random.Generator) -> dict[str, Any]:
        spec = self.spec
        n, extra = len(self.themes), self.extra
        # One rng call for the persona, its first set of theme levels and any spare uniforms (the
        # generator's doubles are sequential: the same stream as drawing 11, then 2n+1, then more).
        r = rng.random(11 + 2 * n + 1 + extra).tolist()
        spare = r[len(r) - extra :] if extra else []
        pick, right = self._pick, bisect.bisect_right
        style = pick("styles", r[0])
        lo, hi = spec["patience"][style]
        kids, mobility = r[1] < spec["kids"], r[2] < spec["mobility"]
        budget = pick("budget_caps", r[3])
        persona: dict[str, Any] = {
            "name": self.names[int(r[4] * len(self.names))],
            "city": self.cities[int(r[5] * len(self.cities))],
            "style": style,
            "patience": lo + int(r[6] * (hi - lo + 1)),
            "kids": kids,
            "mobility": mobility,
            "budget": None if budget == "none" else int(budget),
            "party": "my family" if kids else self.parties[int(r[7] * len(self.parties))],
            "pace": "relaxed" if mobility else pick("pace_probs", r[8]),
            "setting": pick("setting_probs", r[9]),
            "short_time": r[10] < spec["short_time"],
        }
        levels, cum, jitter, themes = self.levels, self.level_cum, self.jitter, self.themes
        top, draws = len(levels) - 1, r[11 : 12 + 2 * n]
        # a traveller loves at least one theme, and some feasible plan is worth having
        for attempt in range(50):
            if attempt:
                draws = rng.random(2 * n + 1).tolist()
            lv = [levels[min(right(cum, d), top)] for d in draws[:n]]
            if max(lv) < 1.0:
                lv[int(draws[2 * n] * n)] = 1.0
            w = [
                round(v + (2.0 * j - 1.0) * jitter, 3) if v else 0.0
                for v, j in zip(lv, draws[n : 2 * n], strict=True)
            ]
            persona["levels"] = dict(zip(themes, lv, strict=True))
            persona["weights"] = dict(zip(themes, w, strict=True))
            util, best = self.table.score(w, persona, self.k)
            if best >= 1.0:
                break
        self.last = (persona, util, best, spare)
        return persona


_LETTERS = re.compile(r"[a-z]+")


def topic_matcher(
    phrases: Mapping[str, Sequence[tuple[tuple[str, ...], str]]],
) -> tuple[dict[str, str], re.Pattern[str] | None]:
    """Phrase text -> topic, and one regex over lower-cased text finding the phrases (words
    apart by any non-letters, whole words only), for text without apostrophes. ``None`` when a
    leftmost-longest scan could miss a topic the token walk finds: a phrase under two topics,
    or a word inside a phrase that starts a phrase of another topic."""
    topic_of: dict[str, str] = {}
    for entries in phrases.values():
        for phrase, topic in entries:
            if topic_of.setdefault(" ".join(phrase), topic) != topic:
                return topic_of, None
            for tok in phrase[1:]:
                if any(t != topic for _, t in phrases.get(tok, ())):
                    return topic_of, None
        if len({t for _, t in entries}) > 1:
            return topic_of, None
    return topic_of, re.compile(r"(?<![a-z])(?:" + _trie_pattern(list(topic_of)) + r")(?![a-z])")


def _trie_pattern(phrases: Sequence[str], space: str = "[^a-z]+") -> str:
    """A regex matching any of ``phrases`` (a space stands for ``space``), as a character trie:
    ``re`` tries alternatives one by one, so sharing prefixes makes it fail fast.
    A longer phrase is tried before its prefix, as in a longest-first alternation."""
    trie: dict[str, Any] = {}
    for phrase in phrases:
        node = trie
        for ch in phrase:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        branches = [
            (space if ch == " " else re.escape(ch)) + emit(sub) for ch, sub in sorted(node.items()) if ch
        ]
        if not branches:
            return ""
        if len(branches) == 1 and "" not in node:
            return branches[0]
        return "(?:" + "|".join(branches) + ")" + ("?" if "" in node else "")

    return emit(trie)


# --- the scripted traveller -----------------------------------------------------------------
class ScriptedTraveller(ScriptedHuman):
    """A traveller with hidden preferences who answers what is asked, and only that, with limited patience."""

    def __init__(self, card: Mapping[str, Any]) -> None:
        catalogue = card["catalogue"]
        vocab = [a["name"] for a in catalogue] + [t["label"] for t in card["topics"].values()]
        super().__init__(card, vocabulary=vocab)
        self.k = int(card["k"])
        self.table = CatalogueTable(catalogue, card["themes"], card["utility"])
        # Names are matched in the lower-cased utterance (twice as fast as IGNORECASE), as a trie.
        lowered = sorted({a["name"].lower() for a in catalogue})
        self.name_re = re.compile(r"(?<!\w)(?:" + _trie_pattern(lowered, space=" ") + r")(?!\w)")
        self.topic_phrases: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for t, spec in card["topics"].items():
            for phrase in spec["words"]:
                toks = tuple(words(phrase))
                self.topic_phrases.setdefault(toks[0], []).append((toks, t))
        self.topic_of, self.topic_re = topic_matcher(self.topic_phrases)
        self.labels = {t: spec["label"] for t, spec in card["topics"].items()}
        self.themes = tuple(card["themes"])
        self.rcfg = card["reward"]
        self.patience = 0.0
        self.rapport = False
        self.revealed: dict[str, str] = {}
        self.picks: list[str] | None = None
        self.best = 1.0
        self.util: list[float] = [0.0] * len(catalogue)
        self._draws: list[float] = []
        self.primed: tuple[dict[str, Any], list[float], float, list[float]] | None = None

    # hidden state --------------------------------------------------------------------------
    def start(self) -> str:
        p = self.persona
        self.patience = float(p["patience"])
        self.rapport = False
        self.revealed = {}
        self.picks = None
        last, self.primed = self.primed, None
        if last is not None and last[0] is p:  # scored by the sampler that just drew it
            _, self.util, best, self._draws = last
        else:
            self.util, best = self.table.plan_value(p, self.k)
            self._draws = []
        self.best = max(best, 0.5)
        return self.say(f"open_{p['style']}", name=p["name"], city=p["city"])

    def say(self, key: str, **slots: Any) -> str:
        """One of the card's variants for ``key``, filled with ``slots``. The choice comes from the
        env's rng like the base class's, but from a batch of uniforms drawn at once (one rng call
        per episode or so, instead of one per reply)."""
        variants = self.templates[key]
        if not self._draws:
            self._draws = self.rng.random(SAY_BATCH).tolist()
        return variants[int(self._draws.pop() * len(variants))].format(**slots)

    # what the agent said -------------------------------------------------------------------
    def named_activities(self, utterance: str) -> list[str]:
        """Catalogue names in ``utterance``, in order of first mention, without duplicates."""
        seen: list[str] = []
        names, index = self.table.names, self.table.index
        for low in self.name_re.findall(utterance.lower()):
            name = names[index[low]]
            if name not in seen:
                seen.append(name)
        return seen

    def named_topics(self, utterance: str) -> list[str]:
        """The topics (themes, soft preferences, constraints) the utterance mentions, in order."""
        low = utterance.lower()
        if self.topic_re is not None and "'" not in low and "’" not in low:
            # Without apostrophes, word tokens are just the runs of a-z, so one scan of the text
            # finds the same phrases as the token walk below, in the same order.
            found: list[str] = []
            for hit in self.topic_re.findall(low):
                topic = self.topic_of.get(hit) or self.topic_of[" ".join(_LETTERS.findall(hit))]
                if topic not in found:
                    found.append(topic)
            return found
        toks = words(utterance)
        found = []
        for i, tok in enumerate(toks):
            for phrase, topic in self.topic_phrases.get(tok, ()):
                if topic not in found and tuple(toks[i : i + len(phrase)]) == phrase:
                    found.append(topic)
        return found

    # answers -------------------------------------------------------------------------------
    def answer(self, topic: str) -> str:
        """The true answer about ``topic``; remembered, so asking again earns only a recap."""
        p = self.persona
        if topic in self.themes:
            text = self.say(LEVEL_KEYS[p["levels"][topic]], thing=self.labels[topic])
        elif topic == "pace":
            text = self.say(f"pace_{p['pace']}")
        elif topic == "setting":
            text = self.say(f"setting_{p['setting']}")
        elif topic == "time":
            text = self.say("time_short" if p["short_time"] else "time_flexible")
        elif topic == "budget":
            text = (
                self.say("budget_cap", cap=p["budget"])
                if p["budget"] is not None
                else self.say("budget_none")
            )
        elif topic == "kids":
            text = self.say("kids_yes") if p["kids"] else self.say("kids_no", party=p["party"])
        else:
            text = self.say("mobility_yes" if p["mobility"] else "mobility_no")
        self.revealed[topic] = text
        return text[0].upper() + text[1:]

    def _ask(self, topics: Sequence[str]) -> tuple[list[str], float]:
        parts, extra = [], 0.0
        for t in topics:
            if t in self.revealed:
                recap = self.revealed[t].rstrip(".!")
                parts.append(self.say("asked_again", recap=recap[0].lower() + recap[1:]))
                extra += 0.5
            else:
                parts.append(self.answer(t))
        return parts, extra

    def _unrevealed_themes(self) -> list[str]:
        order = sorted(self.themes, key=lambda t: -abs(self.persona["weights"][t]))
        return [t for t in order if t not in self.revealed]

    def open_answer(self) -> str:
        """Busy travellers are vague; chatty ones name their favourite (two once rapport exists)."""
        if self.persona["style"] != "chatty":
            return self.say("open_vague")
        n = 2 if self.rapport else 1
        fav = [t for t in self._unrevealed_themes() if self.persona["levels"][t] == 1.0][:n]
        if not fav:
            return self.say("open_vague")
        parts = []
        for t in fav:
            self.revealed[t] = self.say("theme_love", thing=self.labels[t])
            parts.append(self.say("open_reveal", thing=self.labels[t]))
        return " ".join(parts)

    def clarify_answer(self) -> str:
        """The strongest preference not yet stated (a love or a hate), else nothing new."""
        rest = [t for t in self._unrevealed_themes() if self.persona["levels"][t] != 0.0]
        return self.answer(rest[0]) if rest else self.say("clarify_none")

    def feedback(self, names: Sequence[str]) -> str:
        """Reactions to floated activities: a broken constraint first, else how much they like it."""
        if len(names) > 2:
            return self.say("suggest_many")
        parts = []
        for name in names:
            i = self.table.index[name.lower()]
            broken = self.table.broken(i, self.persona)
            if broken:
                parts.append(self.say(f"feedback_{broken[0]}", activity=name))
                continue
            u = self.util[i]
            key = "feedback_love" if u >= 1.0 else "feedback_ok" if u >= 0.3 else "feedback_bad"
            parts.append(self.say(key, activity=name))
        return " ".join(parts)

    # one turn ------------------------------------------------------------------------------
    def react(self, utterance: str, analysis: Analysis) -> HumanReply:
        if analysis.stuffed or analysis.gibberish or analysis.repeat or analysis.injection:
            flags = analysis.flags
            cost = sum(FLAG_COSTS[f] for f in flags)
            return self._carry_on([self.say(FLAG_REPLIES[flags[0]])], cost)
        acts = analysis.acts
        if "recommend" in acts:
            names = self.named_activities(utterance)
            if 1 <= len(names) <= self.k:
                return self._close(names)
            key = "recommend_many" if names else "recommend_none"
            return self._carry_on([self.say(key, k=self.k)], 1.0)
        parts: list[str] = []
        cost = 1.0
        if not acts:
            parts.append(self.say("confused"))
            cost += 0.5
        for act in acts:
            if act == "small_talk":
                if self.persona["style"] == "chatty":
                    parts.append(self.say("small_talk_warm"))
                    if not self.rapport:
                        self.rapport = True
                        cost -= 1.0
                else:
                    parts.append(self.say("small_talk_curt"))
                    cost += 0.5
            elif act == "open_question":
                parts.append(self.open_answer())
            elif act in ("ask_attribute", "ask_constraints"):
                topics = self.named_topics(utterance)
                prefs = [t for t in topics if t not in CONSTRAINT_TOPICS]
                hard = [t for t in topics if t in CONSTRAINT_TOPICS]
                if act == "ask_constraints" and not hard:
                    hard = ["budget", "kids"]
                if len(prefs) > 2:
                    parts.append(self.say("list_vague"))
                    prefs = []
                elif not prefs and not hard:
                    parts.append(self.open_answer())
                said, extra = self._ask(prefs + hard)
                parts += said
                cost += extra
            elif act == "clarify":
                parts.append(self.clarify_answer())
            elif act == "suggest":
                names = self.named_activities(utterance)
                parts.append(self.feedback(names) if names else self.say("recommend_none", k=self.k))
        return self._carry_on(parts, cost)

    def _carry_on(self, parts: list[str], cost: float) -> HumanReply:
        self.patience -= cost
        if self.patience <= 0:
            return HumanReply(" ".join([*parts, self.say("leave")]), ended=True, end_reason="human_left")
        if self.patience <= 1.0:
            parts.append(self.say("impatient"))
        return HumanReply(" ".join(parts))

    def _close(self, names: list[str]) -> HumanReply:
        self.picks = names
        _, utility, broken = self._tally()
        if broken:
            key = "accept_violation"
        else:
            ratio = round(utility, 4) / self.best
            key = "accept_happy" if ratio >= 0.8 else "accept_ok" if ratio >= 0.4 else "accept_bad"
        return HumanReply(self.say(key), ended=True, end_reason="agent_closed")

    # outcome -------------------------------------------------------------------------------
    def _tally(self) -> tuple[float, float, list[dict[str, Any]]]:
        """The picks' value (violations count negative), their utility, and the violations."""
        value, utility, broken = 0.0, 0.0, []
        for name in self.picks or ():
            i = self.table.index[name.lower()]
            v = self.table.broken(i, self.persona)
            if v:
                broken.append({"activity": name, "constraints": v})
                value -= float(self.rcfg["violation_penalty"]) * self.best / self.k
            else:
                u = self.util[i]
                utility += u
                value += u
        return value, utility, broken

    def outcome(self) -> Outcome:
        """Utility of the picks relative to the best feasible k; violating picks count negative."""
        if self.picks is None:
            reward = float(self.rcfg["no_plan"])
            info = {"picks": [], "utility": 0.0, "best_possible": self.best, "violations": [], "ratio": 0.0}
            return Outcome(reward, {**info, "recommended": False}, success=False)
        value, utility, broken = self._tally()
        ratio = value / self.best
        reward = min(max(ratio, -1.0), 1.0)
        success = not broken and utility / self.best >= float(self.rcfg["success_ratio"])
        info = {
            "picks": list(self.picks),
            "utility": round(utility, 4),
            "best_possible": round(self.best, 4),
            "violations": broken,
            "ratio": round(ratio, 4),
            "recommended": True,
        }
        return Outcome(reward, info, success=success)


# --- the env --------------------------------------------------------------------------------
def catalogue_line(a: Mapping[str, Any]) -> str:
    """One catalogue entry as the agent sees it (parsed back by :func:`parse_catalogue`)."""
    access = "step-free" if a["step_free"] else "not step-free"
    kids = "kids ok" if a["kid_friendly"] else "adults only"
    return (
        f"- {a['name']} | €{a['cost']} | {'+'.join(a['themes'])} | {a['pace']} | {a['setting']} | "
        f"{access} | {kids} | {a['hours']}h"
    )


class PrefsEnv(DialogueEnv):
    """Travel agent elicits hidden preferences and constraints, then recommends k activities."""

    card_name = "prefs"
    card_schema = {
        "acts": dict,
        "replies": dict,
        "catalogue": list,
        "topics": dict,
        "themes": list,
        "personas": dict,
        "utility": dict,
        "reward": dict,
        "role": str,
        "k": int,
    }

    def validate_card(self, card: Mapping[str, Any]) -> None:
        keys = ["name", "cost", "themes", "pace", "setting", "step_free", "kid_friendly", "hours", "popular"]
        require_keys(card["catalogue"], keys, "catalogue")
        if len(card["catalogue"]) < card["k"] * 2:
            raise TaskCardError(
                f"catalogue has {len(card['catalogue'])} activities; need at least {2 * card['k']}"
            )
        for a in card["catalogue"]:
            bad = [t for t in a["themes"] if t not in card["themes"]]
            if bad or a["pace"] not in PACE_INDEX or a["setting"] not in ("indoor", "outdoor"):
                raise TaskCardError(f"catalogue[{a['name']}] has an unknown theme, pace or setting")
        missing = [t for t in (*card["themes"], *SOFT_TOPICS, *CONSTRAINT_TOPICS) if t not in card["topics"]]
        if missing:
            raise TaskCardError(f"topics lacks {missing}")
        needed = ["open_chatty", "open_busy", "open_vague", "leave", "impatient", *LEVEL_KEYS.values()]
        lacking = [r for r in needed if r not in card["replies"]]
        if lacking:
            raise TaskCardError(f"replies lacks {lacking}")
        for name, spec in card["acts"].items():
            require_keys([spec], ["cues", "example"], f"acts.{name}")
        for key in ("violation_penalty", "no_plan", "success_ratio"):
            if key not in card["reward"]:
                raise TaskCardError(f"reward lacks {key!r}")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._sampler: PersonaSampler | None = None
        self._roles: dict[str, str] = {}
        super().__init__(*args, **kwargs)
        cat = self.card["catalogue"]
        favourites = sorted((a for a in cat if a["popular"]), key=lambda a: a["popular"])
        self._catalogue_text = "\n".join(catalogue_line(a) for a in cat) + (
            "\nTourist favourites: " + ", ".join(a["name"] for a in favourites)
        )

    def sample_persona(self, rng: np.random.Generator) -> dict[str, Any]:
        scripted = isinstance(self.human, ScriptedTraveller)
        if self._sampler is None:
            table = (
                self.human.table
                if scripted
                else CatalogueTable(self.card["catalogue"], self.card["themes"], self.card["utility"])
            )
            self._sampler = PersonaSampler(self.card, table)
            # the scripted traveller's first batch of reply choices comes from the same rng call
            self._sampler.extra = SAY_BATCH if scripted else 0
        persona = self._sampler(rng)
        if scripted:  # hand the scoring on: reset() passes this very dict to the traveller next
            self.human.primed = self._sampler.last
        return persona

    def role_instructions(self, persona: Mapping[str, Any]) -> str:
        city = persona.get("city", "the city")
        if city not in self._roles:  # one text per city, built once: the catalogue makes it long
            self._roles[city] = self._role_text(city)
        return self._roles[city]

    def _role_text(self, city: str) -> str:
        return self.card["role"].format(
            city=city,
            k=self.card["k"],
            themes="; ".join(f"{t} = {self.card['topics'][t]['label']}" for t in self.card["themes"]),
            paces=", ".join(self.card["paces"]),
            catalogue=self._catalogue_text,
        )

    def make_scripted_human(self) -> ScriptedTraveller:
        return ScriptedTraveller(self.card)

    # -- the same persona for an LLM human (dialogue_gym.humans) --
    closing_acts = ("recommend",)

    def persona_brief(self, persona: Mapping[str, Any]) -> str:
        """The traveller as instructions: tastes (vague unless asked concretely) and hard limits."""
        words_for = {1.0: "love", 0.5: "like", 0.0: "don't care about", -1.0: "dislike"}
        topics = self.card["topics"]
        tastes = "; ".join(
            f"you {words_for.get(float(v), 'feel so-so about')} {topics[t]['label']}"
            for t, v in persona["levels"].items()
        )
        limits = [f"no activity may cost more than €{persona['budget']}" if persona.get("budget") else ""]
        if persona.get("kids"):
            limits.append("you travel with children, so every activity must be suitable for kids")
        if persona.get("mobility"):
            limits.append("someone in your party uses a wheelchair, so everything must be step-free")
        limits = [x for x in limits if x]
        party = "alone" if persona["party"] == "me" else f"with {persona['party']}"
        lines = [
            f"You are {persona['name']}, visiting {persona['city']} {party}, talking to a travel agent "
            f"who will recommend {self.card['k']} activities.",
            f"Your tastes: {tastes}. You prefer {persona['pace']} activities, {persona['setting']}s"
            + (", and you only have short time slots." if persona.get("short_time") else "."),
            "Must-haves: " + ("; ".join(limits) if limits else "none") + ".",
            "When asked in general what you like, be vague ('a bit of everything'); answer clearly only "
            "when the agent asks about something specific.",
            "You are chatty."
            if persona.get("style") == "chatty"
            else "You are busy and want this to be quick.",
        ]
        return "\n".join(lines)

    def opening_cue(self, persona: Mapping[str, Any]) -> str:
        return f"The chat starts now. Say hello and that you are visiting {persona['city']}."

    def outcome_questions(self, persona: Mapping[str, Any]) -> list[Question]:
        return [
            Question(
                "rating",
                "How well do the activities the agent finally recommended fit what you want, from 1 "
                "(not at all, or nothing was recommended) to 5 (perfectly)?",
                low=1,
                high=5,
            )
        ]

    def score_answers(
        self, persona: Mapping[str, Any], answers: Mapping[str, Any], transcript: list[dict[str, str]]
    ) -> Outcome:
        """The traveller's rating, mapped to [0, 1]; the picks' true utility ratio is reported beside it."""
        last = next((m["content"] for m in reversed(transcript) if m["role"] == "assistant"), "")
        traveller = self.make_scripted_human()
        traveller.reset(persona, np.random.default_rng(0))
        picks = traveller.named_activities(last)
        if not picks or len(picks) > int(self.card["k"]):
            return Outcome(
                float(self.card["reward"]["no_plan"]), {"picks": [], "recommended": False}, success=False
            )
        traveller.picks = picks
        true = traveller.outcome()
        rating = answers.get("rating")
        reward = 0.0 if rating is None else (float(rating) - 1.0) / 4.0
        breakdown = {
            "picks": picks,
            "rating": rating,
            "true_ratio": true.breakdown["ratio"],
            "recommended": True,
        }
        return Outcome(reward, breakdown, success=rating is not None and rating >= 4)


# --- reference agents -----------------------------------------------------------------------
_LINE = re.compile(
    r"^- (?P<name>[^|]+?) \| €(?P<cost>\d+) \| (?P<themes>[a-z+]+) \| (?P<pace>\w+) \| (?P<setting>\w+) \| "
    r"(?P<access>step-free|not step-free) \| (?P<kids>kids ok|adults only) \| (?P<hours>[\d.]+)h$",
    re.MULTILINE,
)
# The agents' view of how a plan is judged: the built-in card's ``utility`` weights.
UTILITY_DEFAULTS = {"pace_match": 0.5, "setting_match": 0.3, "long_hours": 4, "long_penalty": 0.5}
_K = re.compile(r"exactly (\d+) activities")
_FAVS = re.compile(r"^Tourist favourites: (.+)$", re.MULTILINE)


def parse_catalogue(system: str) -> tuple[list[dict[str, Any]], int, list[str]]:
    """The catalogue, ``k`` and the tourist favourites from the role instructions."""
    cat = [
        {
            "name": m["name"],
            "cost": int(m["cost"]),
            "themes": m["themes"].split("+"),
            "pace": m["pace"],
            "setting": m["setting"],
            "step_free": m["access"] == "step-free",
            "kid_friendly": m["kids"] == "kids ok",
            "hours": float(m["hours"]),
        }
        for m in _LINE.finditer(system)
    ]
    km = _K.search(system)
    fm = _FAVS.search(system)
    return cat, int(km.group(1)) if km else 3, fm.group(1).split(", ") if fm else []


def recommend_line(names: Sequence[str], turn: int) -> str:
    """A recommendation naming ``names``, worded differently by turn."""
    listed = ", the ".join(names[:-1]) + (" and the " if len(names) > 1 else "") + names[-1]
    forms = (
        "I recommend the {}.",
        "Based on everything you've told me, I'd recommend the {}.",
        "Here's my plan: I suggest the {}.",
    )
    return forms[turn % len(forms)].format(listed)


class NaiveAgent(Agent):
    """One generic question, then the same tourist favourites for everyone."""

    name = "naive"

    def act(self, messages: Messages, persona: Mapping[str, Any] | None = None) -> str:
        if agent_turns(messages) == 0:
            return "Hi there! What kind of things are you hoping to do on this trip?"
        _, k, favourites = parse_catalogue(messages[0]["content"])
        return recommend_line(favourites[:k], 0)


# How the competent agent reads the traveller: markers of the reply templates' meaning.
_GRADES = (
    (-1.0, re.compile(r"not for me|can't stand|please, no|rather skip", re.I)),
    (0.0, re.compile(r"take it or leave it|either way|indifferent", re.I)),
    (1.0, re.compile(r"\blove\b|adore|favourite|all about|most excited|yes please", re.I)),
    (0.5, re.compile(r"enjoy|\bnice\b|happy to", re.I)),
)
_READ = {
    "pace": (
        ("relaxed", re.compile(r"\brelaxed\b|take it slow|unwind", re.I)),
        ("active", re.compile(r"\bactive\b|energetic|keep me moving", re.I)),
        ("moderate", re.compile(r"steady|middle|moderate pace", re.I)),
    ),
    "setting": (
        ("either", re.compile(r"indoors or out|no preference there|either works", re.I)),
        ("indoor", re.compile(r"\bindoors?\b", re.I)),
        ("outdoor", re.compile(r"\boutdoors?\b", re.I)),
    ),
    "time": (
        (True, re.compile(r"short slots|short things|half days", re.I)),
        (False, re.compile(r"plenty of time|no rush|free all day", re.I)),
    ),
    "kids": (
        (False, re.compile(r"no kids|no children", re.I)),
        (True, re.compile(r"\bkids\b|children|little ones", re.I)),
    ),
    "mobility": (
        (False, re.compile(r"no mobility issues|are no problem|fine on our feet", re.I)),
        (True, re.compile(r"wheelchair|step-free|knees|stairs", re.I)),
    ),
}
_BUDGET = re.compile(r"€(\d+)")
_NO_BUDGET = re.compile(r"money isn't|no budget worries|budget isn't a concern", re.I)
_IMPATIENT = re.compile(r"suggest something soon|actual suggestions|running short on time", re.I)
_CHATTY = re.compile(r"excited|can't wait|looking forward", re.I)
_THEMES = re.compile(r"^Themes travellers talk about: (.+)\.$", re.MULTILINE)


def theme_labels(system: str) -> dict[str, str]:
    """Theme name -> the words travellers use for it, from the role instructions."""
    m = _THEMES.search(system)
    if not m:
        return {}
    return dict(item.split(" = ", 1) for item in m.group(1).split("; "))


def read_traveller(replies: Sequence[str], labels: Mapping[str, str]) -> dict[str, Any]:
    """What the traveller has said so far: theme levels, soft preferences and constraints."""
    known: dict[str, Any] = {"weights": {}}
    for reply in replies:
        for sent in sentences(reply):
            low = sent.lower()
            for theme, label in labels.items():
                if label.lower() in low:
                    grade = next((g for g, pat in _GRADES if pat.search(sent)), None)
                    if grade is not None:
                        known["weights"][theme] = grade
            for topic, readers in _READ.items():
                value = next((v for v, pat in readers if pat.search(sent)), None)
                if value is not None and topic not in known:
                    known[topic] = value
            m = _BUDGET.search(sent)
            if m:
                known["budget"] = int(m.group(1))
            elif _NO_BUDGET.search(sent):
                known["budget"] = None
    return known


class CompetentAgent(Agent):
    """Asks about constraints, then concrete questions, two attributes a turn; recommends when hurried.

    Uses only the transcript. Unknown themes get the prior mean weight; unknown pace, setting and
    time are left out of the estimate.
    """

    name = "competent"
    max_question_turns = 6
    prior_weight = 0.2
    theme_order = ("culture", "food", "nature", "adventure", "nightlife", "shopping")

    def plan(self, messages: Messages) -> list[list[str]]:
        """Remaining question topics, grouped two per turn, given what is already known."""
        labels = theme_labels(messages[0]["content"])
        known = read_traveller(human_turns(messages), labels)
        asked = " ".join(m["content"].lower() for m in messages if m["role"] == "assistant")
        order = [t for t in self.theme_order if t in labels] + [
            t for t in labels if t not in self.theme_order
        ]
        themes = [
            t
            for t in order
            if t not in known["weights"]
            and labels[t].lower() not in asked
            and not (t == "nightlife" and known.get("kids"))
        ]
        groups = [themes[i : i + 2] for i in range(0, len(themes), 2)]
        if "pace" not in asked:
            groups.append(["pace", "setting"])
        if "how much time" not in asked:
            groups.append(["time"])
        return groups

    def question(self, topics: Sequence[str], labels: Mapping[str, str], turn: int) -> str:
        """A concrete question about one or two topics, phrased differently by turn."""
        if topics == ["pace", "setting"]:
            return "Do you prefer a relaxed or an active pace? And would you rather be indoors or outdoors?"
        if topics == ["time"]:
            return "How much time do you have for each activity, a couple of hours or whole days?"
        names = [labels[t] for t in topics]
        forms = (
            ("How do you feel about {}?", " And what about {}?"),
            ("Are you into {}?", " How about {}?"),
            ("Do you enjoy {}?", " And how do you feel about {}?"),
            ("Would you enjoy {}?", " What about {}?"),
        )
        first, second = forms[turn % len(forms)]
        return first.format(names[0]) + (second.format(names[1]) if len(names) > 1 else "")

    def act(self, messages: Messages, persona: Mapping[str, Any] | None = None) -> str:
        turn = agent_turns(messages)
        replies = human_turns(messages)
        chatty = bool(_CHATTY.search(replies[0])) if replies else False
        if turn == 0:
            if chatty:
                return (
                    "Nice to meet you, how are you doing today? What kind of things do you enjoy on a trip?"
                )
            return (
                "Before I suggest anything: is there a budget per activity, will any kids be coming along, "
                "and does anyone need step-free access?"
            )
        if turn == 1 and chatty:
            return (
                "Lovely. Is there a budget per activity, will any children be joining, "
                "and does anyone need step-free access?"
            )
        groups = self.plan(messages)
        if groups and turn < self.max_question_turns and not _IMPATIENT.search(replies[-1]):
            return self.question(groups[0], theme_labels(messages[0]["content"]), turn)
        return self.recommend(messages, turn)

    def recommend(self, messages: Messages, turn: int) -> str:
        """Best k under the current estimate of the traveller's preferences."""
        catalogue, k, _ = parse_catalogue(messages[0]["content"])
        labels = theme_labels(messages[0]["content"])
        known = read_traveller(human_turns(messages), labels)
        themes = list(labels) or sorted({t for a in catalogue for t in a["themes"]})
        est = {
            "weights": {t: known["weights"].get(t, self.prior_weight) for t in themes},
            "pace": known.get("pace"),
            "setting": known.get("setting", "either"),
            "short_time": known.get("time", 0.35),
            "budget": known.get("budget"),
            "kids": known.get("kids", False),
            "mobility": known.get("mobility", False),
        }
        picks = CatalogueTable(catalogue, themes, UTILITY_DEFAULTS).best(est, k)
        return recommend_line([n for _, n in picks], turn)


class OracleAgent(Agent):
    """Reads the hidden persona and recommends the true best k on the first turn."""

    name = "oracle"
    privileged = True

    def act(self, messages: Messages, persona: Mapping[str, Any] | None = None) -> str:
        catalogue, k, favourites = parse_catalogue(messages[0]["content"])
        if persona is None:
            return recommend_line(favourites[:k], 0)
        themes = sorted(persona["weights"])
        picks = CatalogueTable(catalogue, themes, UTILITY_DEFAULTS).best(persona, k)
        return recommend_line([n for _, n in picks], 0)


PrefsEnv.reference_agents = {"naive": NaiveAgent, "competent": CompetentAgent, "oracle": OracleAgent}
