"""Trained agents on disk: one directory that loading turns back into an :class:`Agent`.

An agent directory holds the model and tokenizer (``save_pretrained``), ``dialogue_gym_agent.json``
(which algorithm, which env, the base model, the full training config, the datasets with their
hashes, the package version) and, if the algorithm has more than a language model (ILQL's value
heads), ``extra_state.safetensors``. :func:`load_agent` reads the JSON and hands the directory to
the algorithm's own loader, named in :data:`LOADERS` by import string so that loading one kind
of agent imports nothing of the others.

Each Trainer checkpoint of a run (``OUT/checkpoint-N``) is an agent directory too: the trainers
write the same JSON into it when they save (:class:`~dialogue_gym.algos.bc.AgentMetaCallback`),
naming the Trainer's own heads file as the extra state, so the model as it was at step N loads
and plays like the finished one (learning curves from one run).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dialogue_gym.agents.base import Agent

META_FILE = "dialogue_gym_agent.json"
EXTRA_FILE = "extra_state.safetensors"
LOADERS: dict[str, str] = {
    "bc": "dialogue_gym.algos.bc:load_agent",
    "fbc": "dialogue_gym.algos.bc:load_agent",
    "ilql": "dialogue_gym.algos.ilql:load_agent",
}


class CheckpointError(ValueError):
    """A directory that is not an agent checkpoint, or not of the expected algorithm."""


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (datasets are identified by content, not by name)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def config_dict(config: Any) -> dict[str, Any]:
    """A training config as a JSON-ready dict (``TrainingArguments`` or any dataclass or mapping)."""
    if hasattr(config, "to_dict"):
        data = config.to_dict()
    elif dataclasses.is_dataclass(config):
        data = dataclasses.asdict(config)
    elif isinstance(config, Mapping):
        data = dict(config)
    else:
        raise TypeError(f"config must be a dataclass or a mapping, got {type(config).__name__}")
    return json.loads(json.dumps(data, default=str))


def agent_meta(
    *, algo: str, config: Any, env_id: str | None, extra_state: str | None = None
) -> dict[str, Any]:
    """The contents of ``dialogue_gym_agent.json`` for an agent trained with ``config``;
    ``extra_state`` names the file of its extra tensors, if any.

    The dataset files named in ``config.data`` are hashed; a missing file is recorded as such.
    """
    from dialogue_gym.datagen.records import package_version

    if algo not in LOADERS:
        raise ValueError(f"unknown algorithm {algo!r}; known: {sorted(LOADERS)}")
    cfg = config_dict(config)
    data = [str(p) for p in cfg.get("data") or []]
    return {
        "algo": algo,
        "env_id": env_id,
        "base_model": cfg.get("model"),
        "config": cfg,
        "datasets": [{"path": p, "sha256": file_sha256(p) if Path(p).is_file() else None} for p in data],
        "package_version": package_version(),
        "extra_state": extra_state,
    }


def write_meta(out_dir: str | Path, meta: Mapping[str, Any]) -> None:
    """Write ``meta`` (from :func:`agent_meta`) as the directory's ``dialogue_gym_agent.json``."""
    (Path(out_dir) / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def save_checkpoint(
    out_dir: str | Path,
    *,
    algo: str,
    model: Any,
    tokenizer: Any,
    config: Any,
    env_id: str | None,
    extra_state: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write an agent directory (see the module docstring); returns its path."""
    from safetensors.torch import save_file

    extra = EXTRA_FILE if extra_state else None
    meta = agent_meta(algo=algo, config=config, env_id=env_id, extra_state=extra)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if extra_state:
        tensors = {k: v.detach().contiguous().cpu() for k, v in extra_state.items()}
        save_file(tensors, str(out / EXTRA_FILE))
    write_meta(out, meta)
    return out


def read_meta(path: str | Path, expect_algo: str | tuple[str, ...] | None = None) -> dict[str, Any]:
    """The ``dialogue_gym_agent.json`` of an agent directory, checked against ``expect_algo``."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"agent checkpoint not found: {path} is not a directory")
    meta_path = path / META_FILE
    if not meta_path.is_file():
        hint = ""
        if any(path.glob("checkpoint-*")):
            hint = " (it holds Trainer checkpoints: the run did not finish; resume it or load a checkpoint-N)"
        elif (path / "trainer_state.json").is_file():
            hint = (
                " (a Trainer checkpoint saved without agent metadata: resume training from it,"
                " or load the finished run's directory)"
            )
        raise CheckpointError(f"{path} is not a dialogue-gym agent checkpoint: no {META_FILE}{hint}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{meta_path}: not valid JSON ({exc.msg})") from None
    algo = meta.get("algo")
    if algo not in LOADERS:
        raise CheckpointError(f"{meta_path}: unknown algorithm {algo!r}; known: {sorted(LOADERS)}")
    expected = (expect_algo,) if isinstance(expect_algo, str) else expect_algo
    if expected and algo not in expected:
        raise CheckpointError(f"{path} is a {algo!r} checkpoint, expected {' or '.join(map(repr, expected))}")
    return meta


def load_extra_state(path: str | Path, name: str = EXTRA_FILE) -> dict[str, torch.Tensor]:
    """The extra tensors saved with an agent in file ``name`` (empty if it has none)."""
    from safetensors.torch import load_file

    if Path(name).name != name:
        raise CheckpointError(f"{path}: extra state file must be a plain file name, got {name!r}")
    file = Path(path) / name
    return load_file(str(file)) if file.is_file() else {}


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def load_agent(path: str | Path, *, expect_algo: str | tuple[str, ...] | None = None, **kwargs: Any) -> Agent:
    """The agent saved in ``path``, built by its algorithm's loader (``kwargs`` go to that loader,
    e.g. ``temperature``, ``max_new_tokens``, ``device``)."""
    meta = read_meta(path, expect_algo)
    try:
        loader = _import(LOADERS[meta["algo"]])
    except (ImportError, AttributeError) as exc:
        raise CheckpointError(
            f"{path}: the {meta['algo']!r} loader ({LOADERS[meta['algo']]}) is unavailable: {exc}"
        ) from exc
    return loader(path, **kwargs)
