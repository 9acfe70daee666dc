"""Agent configs: one YAML file per agent, so the leaderboard can build any agent for any env.

Four kinds::

    {name: naive, kind: reference, level: naive}                    # the task's reference agents
    {name: prompted-smollm2, kind: prompted, model: local, temperature: 0, max_tokens: 60}
    {name: ilql, kind: checkpoint, path: "runs/experiment/{env_id}/ilql"}   # a trained agent per env
    {name: mine, kind: python, import: "my_pkg.agents:make", kwargs: {depth: 2}}

``prompted`` takes any :class:`~dialogue_gym.agents.prompted.PromptedAgent` option (its ``few_shot``
records path may use ``{env_id}``, e.g. ``runs/experiment/{env_id}/imagined.jsonl``); ``checkpoint``
paths are templates filled with ``{env_id}`` and loaded by ``dialogue_gym.algos.checkpoint.load_agent``
(an env without a checkpoint directory is skipped, not an error); ``python`` imports an
:class:`~dialogue_gym.agents.base.Agent` subclass or factory, called with ``env_id=`` when it takes it.
Relative paths are relative to the working directory.

Every config has a hash: sha256 of its canonical JSON without the labels (``name``,
``description``) and run controls (``episodes``), so renaming an agent keeps its results.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dialogue_gym.agents.base import Agent
from dialogue_gym.evaluation import REFERENCE_LEVELS, reference_agent

KINDS = ("reference", "prompted", "checkpoint", "python")
LABELS = ("name", "description", "episodes")  # not part of the hash
_KEYS = {
    "reference": ({"level"}, set()),
    "prompted": ({"model"}, None),  # optional keys: PromptedAgent's parameters
    "checkpoint": ({"path"}, {"kwargs"}),
    "python": ({"import"}, {"kwargs"}),
}


class AgentConfigError(ValueError):
    """A malformed agent config; the message names the file (or spec) and the fault."""


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no whitespace: the same config always gives the same text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass(frozen=True)
class AgentConfig:
    """One agent: ``name``, ``kind`` and the kind's options (``spec`` is the whole mapping)."""

    name: str
    kind: str
    spec: Mapping[str, Any] = field(hash=False)
    source: str = "<dict>"

    @property
    def hash(self) -> str:
        """sha256 of the canonical config (labels and run controls left out; ``0`` and ``0.0`` alike)."""
        body = _plain_numbers({k: v for k, v in self.spec.items() if k not in LABELS})
        return hashlib.sha256(canonical_json(body).encode()).hexdigest()

    @property
    def episodes(self) -> int | None:
        """At most this many task seeds for this agent (e.g. a slow LLM), or ``None`` for all."""
        return self.spec.get("episodes")

    @property
    def options(self) -> dict[str, Any]:
        """The kind's options: the spec without ``name``, ``kind`` and the labels."""
        return {k: v for k, v in self.spec.items() if k not in (*LABELS, "kind")}

    def checkpoint_dir(self, env_id: str) -> Path:
        """The checkpoint directory of a ``checkpoint`` config for ``env_id``."""
        return Path(str(self.spec["path"]).format(env_id=env_id))

    def few_shot_path(self, env_id: str) -> Path | None:
        """The few-shot records file of a ``prompted`` config for ``env_id`` (``None`` if it has none)."""
        few_shot = self.spec.get("few_shot") if self.kind == "prompted" else None
        return Path(str(few_shot).format(env_id=env_id)) if isinstance(few_shot, str) else None

    def unavailable(self, env_id: str) -> str | None:
        """Why this agent cannot play ``env_id`` (a checkpoint or few-shot file that does not exist,
        a task without that reference level), or ``None`` when it can."""
        if self.kind == "checkpoint" and not self.checkpoint_dir(env_id).is_dir():
            return f"no checkpoint directory {self.checkpoint_dir(env_id)}"
        few_shot = self.few_shot_path(env_id)
        if few_shot is not None and not few_shot.is_file():
            return f"no few-shot records file {few_shot}"
        if self.kind == "reference":
            try:
                reference_agent(env_id, self.spec["level"])
            except KeyError as exc:
                return str(exc.args[0])
        return None

    def fingerprint(self, env_id: str) -> str | None:
        """For checkpoints: a hash of the names, sizes and modification times of the agent's files
        (those directly in its directory), so retraining into the same directory is not mistaken
        for the old agent. Subdirectories are left out: the run's Trainer checkpoints
        (``checkpoint-N``, agents of their own) and TensorBoard logs do not change which agent
        the directory holds. ``None`` for other kinds."""
        if self.kind != "checkpoint":
            return None
        root = self.checkpoint_dir(env_id)
        files = [p for p in root.iterdir() if p.is_file()] if root.is_dir() else []
        entries = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
        return hashlib.sha256(canonical_json(entries).encode()).hexdigest()[:12]

    def build(self, env_id: str, *, max_chars: int | None = None) -> Agent:
        """The agent for ``env_id`` (``max_chars``: the env's action limit, for prompted agents)."""
        opts = self.options
        if self.kind == "reference":
            agent = reference_agent(env_id, opts["level"])
        elif self.kind == "prompted":
            from dialogue_gym.agents.prompted import PromptedAgent

            opts.setdefault("name", self.name)
            opts.setdefault("env_id", env_id)
            if (few_shot := self.few_shot_path(env_id)) is not None:
                opts["few_shot"] = str(few_shot)
            if max_chars is not None:
                opts.setdefault("max_chars", max_chars)
            agent = PromptedAgent(**opts)
        elif self.kind == "checkpoint":
            reason = self.unavailable(env_id)
            if reason:
                raise FileNotFoundError(f"agent {self.name} ({self.source}): {reason}")
            try:
                from dialogue_gym.algos.checkpoint import load_agent
            except ImportError as exc:
                raise AgentConfigError(
                    f"agent {self.name} ({self.source}): checkpoints need dialogue_gym.algos "
                    f"(pip install 'dialogue-gym[train]'): {exc}"
                ) from exc
            agent = load_agent(str(self.checkpoint_dir(env_id)), **opts.get("kwargs", {}))
        else:
            agent = _call_factory(_import(opts["import"], self), env_id, opts.get("kwargs", {}))
        if not isinstance(agent, Agent):
            raise AgentConfigError(
                f"agent {self.name} ({self.source}) built a {type(agent).__name__}, "
                "not a dialogue_gym.agents.base.Agent"
            )
        return agent

    def to_dict(self) -> dict[str, Any]:
        return dict(self.spec)


def _plain_numbers(data: Any) -> Any:
    """Whole floats as ints, recursively, so ``temperature: 0`` and ``temperature: 0.0`` hash alike."""
    if isinstance(data, float) and data.is_integer():
        return int(data)
    if isinstance(data, Mapping):
        return {k: _plain_numbers(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_plain_numbers(v) for v in data]
    return data


def _import(path: str, cfg: AgentConfig | None = None) -> Any:
    module, _, attr = path.partition(":")
    where = f"agent {cfg.name} ({cfg.source}): " if cfg else ""
    if not module or not attr:
        raise AgentConfigError(f"{where}import path must look like 'package.module:attr', got {path!r}")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise AgentConfigError(f"{where}cannot import {path!r}: {exc}") from exc
    return obj


def _call_factory(obj: Any, env_id: str, kwargs: Mapping[str, Any]) -> Any:
    """An Agent instance as is; a class or factory called with ``env_id=`` if it takes it."""
    if isinstance(obj, Agent):
        return obj
    if not callable(obj):
        raise AgentConfigError(f"{obj!r} is neither an Agent nor a callable that makes one")
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        params = {}
    takes_env = "env_id" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return obj(env_id=env_id, **kwargs) if takes_env else obj(**kwargs)


def config_from_dict(
    data: Mapping[str, Any], source: str = "<dict>", default_name: str | None = None
) -> AgentConfig:
    """Validate a config mapping; raises :class:`AgentConfigError` naming ``source`` and the fault."""
    if not isinstance(data, Mapping):
        raise AgentConfigError(f"{source}: an agent config must be a mapping, got {type(data).__name__}")
    spec = dict(data)
    kind = spec.get("kind")
    if kind not in KINDS:
        raise AgentConfigError(f"{source}: 'kind' must be one of {list(KINDS)}, got {kind!r}")
    spec.setdefault("name", default_name)
    name = spec["name"]
    if not isinstance(name, str) or not name.strip():
        raise AgentConfigError(f"{source}: 'name' must be a non-empty string")
    episodes = spec.get("episodes")
    if episodes is not None and (not isinstance(episodes, int) or isinstance(episodes, bool) or episodes < 1):
        raise AgentConfigError(f"{source}: 'episodes' must be a positive integer, got {episodes!r}")
    required, optional = _KEYS[kind]
    keys = set(spec) - {*LABELS, "kind"}
    if missing := required - keys:
        raise AgentConfigError(f"{source}: a {kind} config needs {', '.join(sorted(missing))}")
    if optional is None:
        from dialogue_gym.agents.prompted import PromptedAgent

        optional = set(inspect.signature(PromptedAgent).parameters) - {"name", "env_id"}
    if unknown := keys - required - optional:
        raise AgentConfigError(
            f"{source}: unknown key(s) {', '.join(sorted(unknown))} for a {kind} config "
            f"(allowed: {', '.join(sorted(required | optional))})"
        )
    if kind == "reference" and spec["level"] not in REFERENCE_LEVELS:
        raise AgentConfigError(
            f"{source}: 'level' must be one of {list(REFERENCE_LEVELS)}, got {spec['level']!r}"
        )
    for key in ("path", "few_shot"):
        if not isinstance(spec.get(key), str):
            continue
        try:
            spec[key].format(env_id="X")
        except (KeyError, IndexError, ValueError) as exc:
            raise AgentConfigError(
                f"{source}: {key!r} may only use the {{env_id}} placeholder: {exc}"
            ) from None
    if "kwargs" in spec and not isinstance(spec["kwargs"], Mapping):
        raise AgentConfigError(f"{source}: 'kwargs' must be a mapping")
    if kind == "prompted" and not isinstance(spec["model"], str):
        raise AgentConfigError(f"{source}: 'model' must be a string such as 'local' or 'litellm:<model>'")
    json.dumps(spec)  # configs must be plain data (they are hashed and recorded)
    return AgentConfig(name=name, kind=kind, spec=spec, source=source)


def load_config(path: str | Path) -> AgentConfig:
    """Load and validate one YAML (or JSON) agent config; ``name`` defaults to the file stem."""
    path = Path(path)
    if not path.is_file():
        raise AgentConfigError(f"agent config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise AgentConfigError(f"{path}: not valid YAML: {exc}") from None
    return config_from_dict(data, source=str(path), default_name=path.stem)


def load_configs(directory: str | Path) -> list[AgentConfig]:
    """Every ``*.yaml``/``*.yml`` config in ``directory``, sorted by file name; names must be unique."""
    directory = Path(directory)
    if not directory.is_dir():
        raise AgentConfigError(f"agent config directory not found: {directory}")
    configs = [load_config(p) for p in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])]
    seen: dict[str, str] = {}
    for c in configs:
        if c.name in seen:
            raise AgentConfigError(f"two agent configs are named {c.name!r}: {seen[c.name]} and {c.source}")
        seen[c.name] = c.source
    return configs


def reference_config(level: str) -> AgentConfig:
    """The config of a task's reference agent (the same hash as ``agents/<level>.yaml``)."""
    return config_from_dict(
        {"name": level, "kind": "reference", "level": level}, source=f"<reference {level}>"
    )


def resolve_agent(spec: str, agents_dir: str | Path = "agents") -> AgentConfig:
    """An agent named on the command line: a config file, a config name in ``agents_dir``, a
    reference level (``naive``/``competent``/``oracle``) or a ``module:attr`` import path."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml", ".json") or path.is_file():
        return load_config(path)
    for suffix in (".yaml", ".yml"):
        candidate = Path(agents_dir) / f"{spec}{suffix}"
        if candidate.is_file():
            return load_config(candidate)
    if spec in REFERENCE_LEVELS:
        return reference_config(spec)
    if ":" in spec:
        _import(spec)  # fail now, naming the problem, rather than once per episode
        return config_from_dict(
            {"name": spec.rpartition(":")[2], "kind": "python", "import": spec}, source=f"--agent {spec}"
        )
    known = sorted(p.stem for p in Path(agents_dir).glob("*.y*ml")) if Path(agents_dir).is_dir() else []
    raise AgentConfigError(
        f"unknown agent {spec!r}: give a config file, a config name in {agents_dir}/ "
        f"({', '.join(known) or 'none found'}), a reference level ({', '.join(REFERENCE_LEVELS)}) "
        "or a 'module:attr' import path"
    )
