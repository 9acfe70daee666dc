"""The results store: one JSON line per played episode, appended as episodes finish.

Each row is keyed by who played what: the agent (config hash, plus the checkpoint fingerprint for
trained agents), the env id (which carries its version), the human backend, the evaluation
protocol (persona split, turn limit), the task seed and the trial. A rerun reads the keys and
plays only the missing episodes, so an interrupted run resumes without redoing or losing finished
ones; a torn last line left by a killed process is cut off on open. Rows are flushed to the OS
one by one (a killed process loses nothing written) and fsynced on close.

A row (``schema: dialogue-gym/leaderboard-v1``)::

    {"key": ..., "agent": "competent", "agent_hash": "e015...", "agent_key": "e015...",
     "agent_kind": "reference",
     "env_id": "DialogueTeach-v0", "env_version": 0, "env_fingerprint": "9c1e...",
     "human": "scripted", "human_model": null, "persona_split": "test", "max_turns": null,
     "seed": 10000, "trial": 0, "persona_id": "3f2a...", "return": 0.71, "outcome_reward": 0.74,
     "outcome": {...}, "success": true, "end_reason": "agent_closed", "turns": 7,
     "tokens": {"agent_prompt": 0, "agent_completion": 0, "human_prompt": 0, "human_completion": 0},
     "cost": {"agent": 0.0, "human": 0.0}, "error": null,
     "package_version": "0.1.0", "git_commit": "57cf592...", "time": "2025-01-01T12:00:00Z"}

``error`` holds the message when the agent raised, returned something that is not an utterance,
or the human's backend failed; such rows have ``return: null`` and are left out of the statistics.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

ROW_SCHEMA = "dialogue-gym/leaderboard-v1"


class StoreError(ValueError):
    """A results file that cannot be read or resumed; the message names the file and line."""


def episode_key(agent_key: str, env_id: str, human_key: str, protocol: str, seed: int, trial: int) -> str:
    """The identity of one episode in the store."""
    return f"{agent_key}|{env_id}|{human_key}|{protocol}|{seed}|{trial}"


def read_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """The rows of a results file in order; a bad line raises :class:`StoreError` naming it."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise StoreError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or row.get("schema") != ROW_SCHEMA or "key" not in row:
                raise StoreError(f"{path}:{lineno}: not a {ROW_SCHEMA} row")
            yield row


class ResultStore:
    """An appending JSONL results file that knows which episodes it holds.

    Args:
        path: the results file (created with its directory if missing).
        retry_errors: treat error rows as not done, so a rerun plays those episodes again (the
            newer row then supersedes the older one in :meth:`rows`).
    """

    def __init__(self, path: str | Path, *, retry_errors: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.retry_errors = retry_errors
        self._rows: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            self._repair()
            for row in read_rows(self.path):
                self._rows[row["key"]] = row  # a later row for the same key supersedes
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def _repair(self) -> None:
        """Cut off a torn last line (a process killed mid-write)."""
        with open(self.path, "rb+") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            if size == 0:
                return
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return
            fh.seek(0)
            data = fh.read()
            fh.seek(data.rfind(b"\n") + 1)
            fh.truncate()

    def done(self, key: str) -> bool:
        """Whether the episode ``key`` is already recorded (error rows count unless retrying)."""
        row = self._rows.get(key)
        return row is not None and not (self.retry_errors and row.get("error"))

    def append(self, row: Mapping[str, Any]) -> None:
        """Record one finished episode (written and flushed at once)."""
        row = {"schema": ROW_SCHEMA, **row}
        self._fh.write(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n")
        self._fh.flush()
        self._rows[row["key"]] = row

    def extend(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.append(row)

    def merge(self, path: str | Path) -> int:
        """Add the rows of another results file (played on another machine, or by
        ``benchmarks/experiment.py``) that this store does not hold yet; returns how many.

        Rows keep their own provenance (commit, env fingerprint, seeds); the key says which
        episode a row is, so an episode is never counted twice. A bad line raises
        :class:`StoreError` naming it before anything is added.
        """
        new = {}
        for row in read_rows(path):
            if not self.done(row["key"]):
                new[row["key"]] = row
        self.extend(new.values())
        return len(new)

    def rows(self) -> list[dict[str, Any]]:
        """Every episode in the store, one row per key (the latest)."""
        return list(self._rows.values())

    def __len__(self) -> int:
        return len(self._rows)

    def close(self) -> None:
        if self._fh.closed:
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)
