"""Task cards: the declarative content of a task (personas, catalogues, lexicons, rewards).

A card is a YAML (or JSON) mapping. Built-in cards live in the top-level ``envs/`` folder of the
repository and ship inside the wheel; users pass a path or a dict for their own. Cards are
cached by path and shared read-only between env instances, which keeps an env small in memory.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml


class TaskCardError(ValueError):
    """A task card is missing, unreadable or malformed; the message names the problem."""


def cards_dir() -> Path:
    """Folder of the built-in cards: ``dialogue_gym/_cards`` in a wheel, ``envs/`` in a checkout."""
    here = Path(__file__).resolve().parent.parent
    shipped = here / "_cards"
    return shipped if shipped.is_dir() else here.parent / "envs"


@functools.lru_cache(maxsize=64)
def _read(path: str) -> Mapping[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise TaskCardError(f"task card not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TaskCardError(f"task card {p} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise TaskCardError(f"task card {p} must be a mapping at the top level, got {type(data).__name__}")
    return data


def load_card(
    card: str | Path | Mapping[str, Any], required: Mapping[str, type] | None = None
) -> dict[str, Any]:
    """Load a card from a built-in name (``"donate"``), a path, or a mapping, and validate it.

    ``required`` maps top-level keys to the type each must have. Returns the card as a dict;
    built-in cards are shared, so callers must not mutate them (use ``copy.deepcopy``).
    """
    if isinstance(card, Mapping):
        data: Mapping[str, Any] = copy.deepcopy(dict(card))
        where = "<dict>"
    elif isinstance(card, (str, Path)):
        p = Path(card)
        if p.suffix not in (".yaml", ".yml", ".json"):
            p = cards_dir() / f"{card}.yaml"
        data = _read(str(p.resolve()))
        where = str(p)
    else:
        raise TaskCardError(f"task card must be a name, a path or a mapping, got {type(card).__name__}")
    for key, typ in (required or {}).items():
        if key not in data:
            raise TaskCardError(f"task card {where} lacks required key {key!r}")
        if not isinstance(data[key], typ):
            raise TaskCardError(
                f"task card {where}: {key!r} must be {typ.__name__}, got {type(data[key]).__name__}"
            )
    return data  # type: ignore[return-value]


def require_keys(items: Sequence[Mapping[str, Any]], keys: Sequence[str], what: str) -> None:
    """Check that every entry of a card list (e.g. each concept) has ``keys``; name the culprit."""
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise TaskCardError(f"{what}[{i}] must be a mapping, got {type(item).__name__}")
        missing = [k for k in keys if k not in item]
        if missing:
            label = item.get("id") or item.get("name") or i
            raise TaskCardError(f"{what}[{label}] lacks {', '.join(map(repr, missing))}")
