"""The dataset record: one conversation with its rewards, outcome and provenance, stored as JSONL.

Every data source (the imagination engine, hindsight regeneration, real human data) writes this
one schema, and every trainer reads it. One JSON object per line::

    {"schema": "dialogue-gym/record-v1",
     "id": "teach-scripted-lecture-17",          # unique within a dataset
     "env_id": "DialogueTeach-v0", "env_version": 0,
     "persona_id": "3f2a...", "split": "train",  # split by persona id: no persona in two splits
     "messages": [{"role": "system", ...}, {"role": "user", ...}, {"role": "assistant", ...}, ...],
     "rewards": [-0.01, -0.01, 0.73],             # one per assistant message: the env's step reward
     "return": 0.71,                              # sum(rewards), written for convenience
     "outcome": {...}, "outcome_reward": 0.74, "success": true, "end_reason": "agent_closed",
     "persona": {...},                            # hidden persona, for analysis only (may be null)
     "provenance": {"generator": "scripted", "model": null, "strategy": "lecture", "seed": 17,
                    "human": "scripted", "package_version": "0.1.0"},
     "parent": null}                              # hindsight branches: {"id": source id, "turn": k}

``messages`` is the env's transcript (``system`` = the agent's role instructions, ``user`` = the
human, ``assistant`` = the agent), so a record replays through the env and trains a chat model
as is. Policies must never be fed ``persona``.

Files are written with :class:`RecordWriter`, which appends and flushes line by line: an
interrupted run keeps every finished record, and a rerun skips the ids already written (a torn
last line from a crash is cut off). :func:`read_records` names the file and line of any bad line.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialogue_gym.core.env import SPLITS, persona_id, persona_split

SCHEMA = "dialogue-gym/record-v1"
ROLES = ("system", "user", "assistant")
GENERATORS = ("scripted", "llm", "hindsight", "human", "agent")


class RecordError(ValueError):
    """A malformed record; the message names the file and line when read from disk."""


@dataclass
class Record:
    """One conversation: see the module docstring for the meaning of each field."""

    id: str
    env_id: str
    messages: list[dict[str, str]]
    rewards: list[float]
    persona_id: str
    provenance: dict[str, Any]
    env_version: int | None = None
    outcome: dict[str, Any] = field(default_factory=dict)
    outcome_reward: float = 0.0
    success: bool | None = None
    end_reason: str | None = None
    persona: dict[str, Any] | None = None
    parent: dict[str, Any] | None = None
    split: str = ""
    schema: str = SCHEMA

    def __post_init__(self) -> None:
        if not self.split:
            self.split = persona_split(self.persona_id)

    @property
    def ret(self) -> float:
        """The episode return: the sum of the step rewards."""
        return float(sum(self.rewards))

    @property
    def turns(self) -> int:
        """Agent turns in the conversation."""
        return len(self.rewards)

    def agent_turn_index(self, k: int) -> int:
        """Index in ``messages`` of the ``k``-th assistant message (0-based)."""
        seen = -1
        for i, m in enumerate(self.messages):
            if m["role"] == "assistant":
                seen += 1
                if seen == k:
                    return i
        raise IndexError(f"record {self.id} has {self.turns} agent turns, no turn {k}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "id": self.id,
            "env_id": self.env_id,
            "env_version": self.env_version,
            "persona_id": self.persona_id,
            "split": self.split,
            "messages": self.messages,
            "rewards": self.rewards,
            "return": self.ret,
            "outcome": self.outcome,
            "outcome_reward": self.outcome_reward,
            "success": self.success,
            "end_reason": self.end_reason,
            "persona": self.persona,
            "provenance": self.provenance,
            "parent": self.parent,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, default=_json_default)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """Build and validate a record; raises :class:`RecordError` naming the fault."""
        if not isinstance(data, Mapping):
            raise RecordError(f"a record must be a JSON object, got {type(data).__name__}")
        if data.get("schema", SCHEMA) != SCHEMA:
            raise RecordError(f"unknown schema {data.get('schema')!r}; this version reads {SCHEMA!r}")
        missing = [k for k in ("id", "env_id", "messages", "rewards", "persona_id") if k not in data]
        if missing:
            raise RecordError(f"missing field(s) {', '.join(missing)}")
        msgs = data["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise RecordError("'messages' must be a non-empty list of {role, content} objects")
        for i, m in enumerate(msgs):
            if (
                not isinstance(m, Mapping)
                or m.get("role") not in ROLES
                or not isinstance(m.get("content"), str)
            ):
                raise RecordError(
                    f"messages[{i}] must be {{'role': one of {ROLES}, 'content': str}}, got {m!r}"
                )
        rewards = data["rewards"]
        if not isinstance(rewards, list) or not all(
            isinstance(r, (int, float)) and not isinstance(r, bool) and math.isfinite(r) for r in rewards
        ):
            raise RecordError("'rewards' must be a list of finite numbers")
        n_agent = sum(m["role"] == "assistant" for m in msgs)
        if len(rewards) != n_agent:
            raise RecordError(
                f"'rewards' has {len(rewards)} entries but there are {n_agent} assistant messages"
            )
        split = data.get("split") or persona_split(str(data["persona_id"]))
        if split not in SPLITS:
            raise RecordError(f"'split' must be one of {list(SPLITS)}, got {split!r}")
        prov = data.get("provenance") or {}
        if not isinstance(prov, Mapping):
            raise RecordError("'provenance' must be an object")
        ret = data.get("return")
        if ret is not None and abs(float(ret) - float(sum(rewards))) > 1e-6:
            raise RecordError(f"'return' {ret} is not the sum of 'rewards' ({sum(rewards)})")
        return cls(
            id=str(data["id"]),
            env_id=str(data["env_id"]),
            env_version=data.get("env_version"),
            messages=[{"role": m["role"], "content": m["content"]} for m in msgs],
            rewards=[float(r) for r in rewards],
            persona_id=str(data["persona_id"]),
            split=split,
            provenance=dict(prov),
            outcome=dict(data.get("outcome") or {}),
            outcome_reward=float(data.get("outcome_reward") or 0.0),
            success=data.get("success"),
            end_reason=data.get("end_reason"),
            persona=data.get("persona"),
            parent=data.get("parent"),
        )


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def env_version(env_id: str) -> int | None:
    """The registered version of ``env_id`` (``0`` for ``...-v0``)."""
    import gymnasium as gym

    return gym.spec(env_id).version


def package_version() -> str:
    from dialogue_gym import __version__

    return __version__


def provenance(
    generator: str,
    *,
    strategy: str | None,
    seed: int | None,
    model: str | None = None,
    human: str = "scripted",
    **extra: Any,
) -> dict[str, Any]:
    """The provenance block every record carries: how it was made."""
    if generator not in GENERATORS:
        raise ValueError(f"generator must be one of {GENERATORS}, got {generator!r}")
    return {
        "generator": generator,
        "model": model,
        "strategy": strategy,
        "seed": seed,
        "human": human,
        "package_version": package_version(),
        **extra,
    }


def record_from_episode(
    record_id: str,
    env_id: str,
    messages: Sequence[Mapping[str, str]],
    rewards: Sequence[float],
    final_info: Mapping[str, Any],
    prov: Mapping[str, Any],
    parent: Mapping[str, Any] | None = None,
) -> Record:
    """A record from a played episode: its transcript, step rewards and the final step's ``info``."""
    persona = final_info.get("persona")
    pid = (persona or {}).get("id") or (persona_id(persona) if persona else None)
    if pid is None:
        raise ValueError("the final info has no persona: pass the info of the episode's last step")
    return Record(
        id=record_id,
        env_id=env_id,
        env_version=env_version(env_id) if "-v" in env_id else None,
        messages=[dict(m) for m in messages],
        rewards=[float(r) for r in rewards],
        persona_id=str(pid),
        provenance=dict(prov),
        outcome=dict(final_info.get("outcome") or {}),
        outcome_reward=float(final_info.get("outcome_reward") or 0.0),
        success=final_info.get("success"),
        end_reason=final_info.get("end_reason"),
        persona=dict(persona) if persona else None,
        parent=dict(parent) if parent else None,
    )


# ----------------------------------------------------------------------------------------- files


def read_records(path: str | Path, *, env_id: str | None = None) -> Iterator[Record]:
    """Records of a JSONL file, in order. Blank lines are skipped; a bad line raises
    :class:`RecordError` naming ``path:line``. ``env_id`` refuses records of another env."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset not found: {path}")
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordError(
                    f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})"
                ) from None
            try:
                rec = Record.from_dict(data)
            except RecordError as exc:
                raise RecordError(f"{path}:{lineno}: {exc}") from None
            if env_id is not None and rec.env_id != env_id:
                raise RecordError(f"{path}:{lineno}: record {rec.id} is for {rec.env_id}, not {env_id}")
            yield rec


def load_records(paths: str | Path | Iterable[str | Path], **kwargs: Any) -> list[Record]:
    """All records of one or more JSONL files."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    return [r for p in paths for r in read_records(p, **kwargs)]


class RecordWriter:
    """Appends records to a JSONL file, one flushed line each, and remembers which ids it holds.

    Opening an existing file reads its ids (so a resumed run can skip them) and cuts off a torn
    last line left by a crash; ``overwrite=True`` starts the file afresh (written to a temporary
    file and renamed on close, so a crash never leaves half a fresh file in place).
    """

    def __init__(self, path: str | Path, *, overwrite: bool = False, fsync_every: int = 0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ids: set[str] = set()
        self.fsync_every = fsync_every
        self._written = 0
        self._tmp: Path | None = None
        if overwrite:
            self._tmp = self.path.with_name(self.path.name + ".tmp")
            self._fh: io.TextIOWrapper = open(self._tmp, "w", encoding="utf-8")  # noqa: SIM115
            return
        if self.path.exists():
            self._repair_and_index()
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def _repair_and_index(self) -> None:
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if data and not data.endswith(b"\n"):
                cut = data.rfind(b"\n") + 1
                fh.seek(cut)
                fh.truncate()
                data = data[:cut]
        for lineno, line in enumerate(data.decode("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                self.ids.add(str(json.loads(line)["id"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise RecordError(
                    f"{self.path}:{lineno}: not a record line; fix or remove it to resume"
                ) from None

    def __contains__(self, record_id: str) -> bool:
        return record_id in self.ids

    def write(self, record: Record) -> None:
        if record.id in self.ids:
            raise RecordError(f"{self.path}: duplicate record id {record.id!r}")
        self._fh.write(record.to_json() + "\n")
        self._fh.flush()
        self.ids.add(record.id)
        self._written += 1
        if self.fsync_every and self._written % self.fsync_every == 0:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh.closed:
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        if self._tmp is not None:
            os.replace(self._tmp, self.path)

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def write_records(path: str | Path, records: Iterable[Record]) -> int:
    """Write ``records`` to a fresh file atomically; returns how many."""
    n = 0
    with RecordWriter(path, overwrite=True) as w:
        for r in records:
            w.write(r)
            n += 1
    return n


def split_records(records: Iterable[Record]) -> dict[str, list[Record]]:
    """Records grouped by their persona split (``train``/``dev``/``test``)."""
    out: dict[str, list[Record]] = {name: [] for name in SPLITS}
    for r in records:
        out[r.split].append(r)
    return out


# ------------------------------------------------------------------------------ datasets library


def to_hf_dataset(records: Sequence[Record]) -> Any:
    """A ``datasets.Dataset`` of ``records`` with a fixed schema.

    ``outcome``, ``persona``, ``provenance`` and ``parent`` differ in shape between tasks, so they
    are stored as JSON strings (``json.loads`` them back); everything else is typed.
    """
    import datasets

    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "env_id": datasets.Value("string"),
            "env_version": datasets.Value("int64"),
            "persona_id": datasets.Value("string"),
            "split": datasets.Value("string"),
            "messages": datasets.List(
                {"role": datasets.Value("string"), "content": datasets.Value("string")}
            ),
            "rewards": datasets.List(datasets.Value("float64")),
            "return": datasets.Value("float64"),
            "outcome_reward": datasets.Value("float64"),
            "success": datasets.Value("bool"),
            "end_reason": datasets.Value("string"),
            "outcome": datasets.Value("string"),
            "persona": datasets.Value("string"),
            "provenance": datasets.Value("string"),
            "parent": datasets.Value("string"),
        }
    )
    rows: dict[str, list[Any]] = {name: [] for name in features}
    for r in records:
        d = r.to_dict()
        for name in features:
            value = d[name]
            if name in ("outcome", "persona", "provenance", "parent"):
                value = json.dumps(value, default=_json_default)
            rows[name].append(value)
    return datasets.Dataset.from_dict(rows, features=features)


def load_hf_dataset(paths: str | Path | Iterable[str | Path]) -> Any:
    """A ``datasets.DatasetDict`` (train/dev/test by persona) of one or more JSONL files, validated."""
    import datasets

    parts = split_records(load_records(paths))
    return datasets.DatasetDict({name: to_hf_dataset(recs) for name, recs in parts.items()})
