"""Registration in one place: the built-in tasks and the one function users call for their own.

``register_task`` puts an env into Gymnasium's own registry (so ``gym.make`` and
``gym.make_vec`` work) and records its one-line description for ``dialogue-gym list``.
A task is a card plus an env class: pass a class (or ``"module:Class"``) for new mechanics, or
leave it out and name a built-in engine in the card's ``task:`` field to reuse one with new
content (new concepts, activities, charities...).
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

from dialogue_gym.core.cards import TaskCardError, load_card
from dialogue_gym.core.env import DialogueEnv

ENGINES = {
    "teach": "dialogue_gym.tasks.teach:TeachEnv",
    "prefs": "dialogue_gym.tasks.prefs:PrefsEnv",
    "counsel": "dialogue_gym.tasks.counsel:CounselEnv",
    "donate": "dialogue_gym.tasks.donate:DonateEnv",
}
BUILTIN = {
    "DialogueTeach-v0": "teach",
    "DialoguePrefs-v0": "prefs",
    "DialogueCounsel-v0": "counsel",
    "DialogueDonate-v0": "donate",
}
_ID = re.compile(r"^(?:[\w:.-]+/)?[A-Za-z][\w.-]*?(?:-v\d+)$")


@dataclass(frozen=True)
class TaskInfo:
    """What ``dialogue-gym list`` shows about a registered task."""

    env_id: str
    card: Any
    entry_point: str
    given_description: str | None = None

    @property
    def description(self) -> str:
        """The given one-liner, else the card's ``description`` (read on first use)."""
        if self.given_description:
            return self.given_description
        return " ".join(str(load_card(self.card).get("description", "")).split())


TASKS: dict[str, TaskInfo] = {}


def _resolve(entry: str | type[DialogueEnv]) -> type[DialogueEnv]:
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import env class {entry!r}: {exc}") from exc
    else:
        cls = entry
    if not (isinstance(cls, type) and issubclass(cls, DialogueEnv)):
        raise TypeError(f"env class must subclass dialogue_gym.DialogueEnv, got {cls!r}")
    return cls


def register_task(
    env_id: str,
    card: str | Path | Mapping[str, Any],
    env_class: str | type[DialogueEnv] | None = None,
    description: str | None = None,
    **kwargs: Any,
) -> None:
    """Register a dialogue task with Gymnasium so that ``gym.make(env_id)`` builds it.

    Args:
        env_id: Gymnasium id ending in a version, e.g. ``"MyTutor-v0"``.
        card: path to a YAML/JSON task card, a built-in card name, or a mapping.
        env_class: a :class:`DialogueEnv` subclass or ``"module:Class"``; default: the engine
            the card names in ``task:`` (one of ``teach``, ``prefs``, ``counsel``, ``donate``).
        description: one line for ``dialogue-gym list`` (default: the card's ``description``).
        **kwargs: default keyword arguments for the env (``max_turns=``, ...).

    The card is loaded and checked now, so a malformed card fails here, naming the problem.
    """
    if not isinstance(env_id, str) or not _ID.match(env_id):
        raise ValueError(f"env id must look like 'Name-v0', got {env_id!r}")
    if isinstance(card, (str, Path)) and Path(card).suffix in (".yaml", ".yml", ".json"):
        card = str(Path(card).resolve())
    data = load_card(card)
    if env_class is None:
        engine = data.get("task")
        if engine not in ENGINES:
            raise TaskCardError(
                f"task card for {env_id} must name its engine in 'task:' (one of {sorted(ENGINES)}), "
                f"got {engine!r}; or pass env_class="
            )
        env_class = ENGINES[engine]
    cls = _resolve(env_class)
    cls(card=card if not isinstance(card, Mapping) else dict(card))  # validate the card against the class now
    entry = env_class if isinstance(env_class, str) else f"{cls.__module__}:{cls.__qualname__}"
    gym.register(
        id=env_id, entry_point=cls, vector_entry_point=_vector(env_id), kwargs={"card": card, **kwargs}
    )
    TASKS[env_id] = TaskInfo(env_id, card, entry, description)


def _vector(env_id: str) -> Any:
    """``gym.make_vec``'s default for a dialogue env: threads when the human is an LLM."""
    from dialogue_gym.vector import make_vector

    return functools.partial(make_vector, env_id)


def list_tasks() -> list[TaskInfo]:
    """All registered dialogue tasks, built-ins first."""
    return list(TASKS.values())


def register_builtin() -> None:
    """Register the four built-in tasks (called by ``import dialogue_gym``)."""
    for env_id, name in BUILTIN.items():
        if env_id in TASKS:
            continue
        gym.register(
            id=env_id, entry_point=ENGINES[name], vector_entry_point=_vector(env_id), kwargs={"card": name}
        )
        TASKS[env_id] = TaskInfo(env_id, name, ENGINES[name])
