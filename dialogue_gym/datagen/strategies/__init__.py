"""Scripted behaviour strategies: human-like ways to play each task, from poor to good.

The imagination engine needs many conversations that are mostly suboptimal but plausible, so
that offline RL has both good and bad moves to learn from and the best dialogue in the data is
rarely the best possible one. Each task has a family of strategies (``strategies/<task>.py``):
each is an :class:`Agent` that sees only the transcript and plays real moves of the task's act
taxonomy (a poor tutor lectures in jargon, a poor travel agent recommends before asking, ...).

Every strategy is built per episode from a random generator seeded by the episode, which also
draws its per-episode quirks (which register, how many questions). With probability
``epsilon`` a turn is replaced by a random move: a random act of the taxonomy in varied
wording, or an off-topic filler line. Noise never ends the conversation (closing and final
recommendations stay the strategy's decision), so episode lengths keep the strategy's shape.
Same seed, same strategy, same ``epsilon``: the same conversation.

Use :func:`strategies` for a task's strategies by name, :func:`default_mixture` for the weights
the engine draws them with, and :func:`make_strategy` to build one::

    rng = np.random.default_rng(7)
    agent = make_strategy("DialogueTeach-v0", "lecture", rng, epsilon=0.2)
"""

from __future__ import annotations

import functools
import importlib
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from dialogue_gym.agents.base import Agent, Messages

LEVELS = ("poor", "mixed", "good")

# Off-topic and filler lines a distracted person might type: no act of any task.
FILLERS = (
    "Sorry, give me a second, someone is at the door.",
    "Hmm, let me think about how to put this.",
    "Okay.",
    "Right, so, where was I?",
    "Sorry, I got distracted for a moment there.",
    "The weather has been strange this week, hasn't it?",
    "Sorry, that one went out too early.",
    "Interesting.",
    "Hold on, my screen just froze for a bit.",
    "Well, anyway.",
)


def pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    """One of ``options``, uniformly (one ``rng.random()`` draw: cheaper than ``rng.choice``)."""
    return options[int(rng.random() * len(options))]


def said_before(messages: Messages) -> set[str]:
    """The agent's earlier utterances (to avoid saying exactly the same line twice)."""
    return {m["content"] for m in messages if m["role"] == "assistant"}


def pick_new(rng: np.random.Generator, options: Sequence[str], messages: Messages) -> str:
    """A random option the agent has not said yet (any option once all are used)."""
    used = said_before(messages)
    fresh = [o for o in options if o not in used]
    return pick(rng, fresh or options)


class Strategy(Agent):
    """A scripted way of playing a task: ``move`` is the strategy, ``random_move`` the noise.

    Subclasses set ``name``, ``level`` (``poor``/``mixed``/``good``), ``description`` (the
    behaviour in words, used by the LLM imagination prompts) and ``noise_acts`` (the acts a
    random move may realise), and implement ``move`` and ``realise``. A strategy is made per
    episode, so it may keep per-episode state (its quirks, what it has read so far).
    """

    name: ClassVar[str] = "strategy"
    level: ClassVar[str] = "mixed"
    description: ClassVar[str] = ""
    noise_acts: ClassVar[tuple[str, ...]] = ()
    filler_share: ClassVar[float] = 0.25  # share of random moves that are filler, not a task act

    def __init__(self, rng: np.random.Generator, epsilon: float = 0.0) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.rng = rng
        self.epsilon = float(epsilon)

    def act(self, messages: Messages, persona: Mapping[str, Any] | None = None) -> str:
        if self.epsilon and self.rng.random() < self.epsilon:
            return self.random_move(messages)
        return self.move(messages)

    @abstractmethod
    def move(self, messages: Messages) -> str:
        """The strategy's own next utterance."""

    @abstractmethod
    def realise(self, act: str, messages: Messages) -> str:
        """One random wording of ``act`` (from ``noise_acts``) fitting this conversation."""

    def random_move(self, messages: Messages) -> str:
        """A random act in varied wording, or (with ``filler_share``) an off-topic filler line."""
        if self.rng.random() < self.filler_share:
            return pick_new(self.rng, FILLERS, messages)
        return self.realise(pick(self.rng, self.noise_acts), messages)


# --- the registry: env class -> task strategies ---------------------------------------------
_TASKS = {
    "dialogue_gym.tasks.teach:TeachEnv": "teach",
    "dialogue_gym.tasks.prefs:PrefsEnv": "prefs",
    "dialogue_gym.tasks.counsel:CounselEnv": "counsel",
    "dialogue_gym.tasks.donate:DonateEnv": "donate",
}


@functools.cache
def _task_module(env_id: str) -> Any:
    """The strategies module for ``env_id``'s engine (a custom card on a built-in engine works too)."""
    try:
        entry = gym.spec(env_id).entry_point
    except gym.error.Error as exc:
        raise KeyError(f"unknown env id {env_id!r}: {exc}") from None
    cls = gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
    for path, task in _TASKS.items():
        module, _, name = path.partition(":")
        if isinstance(cls, type) and issubclass(cls, getattr(importlib.import_module(module), name)):
            return importlib.import_module(f"{__name__}.{task}")
    raise KeyError(f"{env_id} runs on no built-in engine ({cls}); there are no scripted strategies for it")


def strategies(env_id: str) -> dict[str, type[Strategy]]:
    """The task's strategies by name, from poor to good. Each class is called as ``cls(rng, epsilon)``."""
    return dict(_task_module(env_id).STRATEGIES)


def default_mixture(env_id: str) -> dict[str, float]:
    """The weights the imagination engine draws the task's strategies with (they sum to 1)."""
    weights = _task_module(env_id).MIXTURE
    total = sum(weights.values())
    return {name: w / total for name, w in weights.items()}


def make_strategy(env_id: str, name: str, rng: np.random.Generator, epsilon: float = 0.0) -> Strategy:
    """Build strategy ``name`` of ``env_id``'s task for one episode."""
    known = strategies(env_id)
    if name not in known:
        raise KeyError(f"{env_id} has no strategy {name!r}; it has {', '.join(known)}")
    return known[name](rng, epsilon)


class Mixture:
    """Draws a strategy name per episode with fixed weights (one uniform draw from the episode rng)."""

    def __init__(self, env_id: str, names: Sequence[str] | Mapping[str, float] | None = None) -> None:
        known = strategies(env_id)
        if names is None:
            weights = default_mixture(env_id)
        elif isinstance(names, Mapping):
            weights = dict(names)
        else:
            weights = dict.fromkeys(names, 1.0)
        unknown = [n for n in weights if n not in known]
        if unknown:
            names = ", ".join(map(repr, unknown))
            raise KeyError(f"{env_id} has no strategy {names}; it has {', '.join(known)}")
        if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"strategy weights must be non-negative and not all zero, got {weights}")
        total = sum(weights.values())
        self.env_id = env_id
        self.weights = {n: w / total for n, w in weights.items()}
        self.classes = {n: known[n] for n in self.weights}
        self._names = list(self.weights)
        self._cum = np.cumsum(list(self.weights.values())).tolist()

    def draw(self, rng: np.random.Generator) -> str:
        """A strategy name, drawn with the mixture's weights."""
        x = rng.random() * self._cum[-1]
        for name, edge in zip(self._names, self._cum, strict=True):
            if x < edge:
                return name
        return self._names[-1]

    def make(self, name: str, rng: np.random.Generator, epsilon: float) -> Strategy:
        """Strategy ``name`` for one episode."""
        return self.classes[name](rng, epsilon)
