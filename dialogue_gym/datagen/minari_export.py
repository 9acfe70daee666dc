"""Export dialogue records as a Minari dataset (the Farama standard for offline RL data).

Each record becomes one Minari episode in the env's own terms: observations are the human's
messages (the opening first, then each reply; one more than there are actions), actions the
agent's utterances, rewards the env's step rewards. The last step is a termination when the
conversation ended on its own (the agent closed, the human left) and a truncation when it was cut
off (the turn limit, a backend error, or an LLM-imagined dialogue whose script ran out).

Spaces: the envs use :class:`~dialogue_gym.core.spaces.FreeText`, a ``gymnasium.spaces.Text``
subclass that accepts any character. Minari serialises a ``Text`` space by its charset and
reads it back as a plain ``Text``, which would reject every character outside FreeText's
sampling charset (curly quotes, emoji, the euro sign...). So the export writes plain ``Text``
spaces whose charset is the sampling charset plus every character that occurs in the data, and
whose lengths cover the env's limits and the longest message.

Each episode's metadata keeps the record id, persona id and split, strategy, outcome reward,
success, end reason and the role instructions (the system message, which is the env's
``info["role_instructions"]``, not an observation).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium.spaces import Text

from dialogue_gym.core.spaces import SAMPLE_CHARSET
from dialogue_gym.datagen.records import Record, read_records

TRUNCATED_ENDS = frozenset({"turn_limit", "error", "imagined_end", None})


def episode_arrays(record: Record) -> dict[str, Any]:
    """One record as Minari episode arrays: observations, actions, rewards, terminations, truncations."""
    observations: list[str] = []
    actions: list[str] = []
    for m in record.messages:
        if m["role"] == "user":
            if len(observations) > len(actions):  # two human messages in a row: one observation
                observations[-1] = f"{observations[-1]}\n{m['content']}"
            else:
                observations.append(m["content"])
        elif m["role"] == "assistant":
            if len(observations) == len(actions):  # the agent spoke first: an empty opening
                observations.append("")
            actions.append(m["content"])
    if len(observations) == len(actions):  # the record ends on the agent's turn
        observations.append("")
    n = len(actions)
    if n == 0:
        raise ValueError(f"record {record.id} has no agent turns; a Minari episode needs at least one step")
    truncated = record.end_reason in TRUNCATED_ENDS
    return {
        "observations": observations,
        "actions": actions,
        "rewards": list(record.rewards),
        "terminations": [False] * (n - 1) + [not truncated],
        "truncations": [False] * (n - 1) + [truncated],
    }


def text_spaces(records: Iterable[Record], env_id: str | None = None) -> tuple[Text, Text]:
    """Plain ``Text`` observation and action spaces that contain every message of ``records``."""
    chars = set(SAMPLE_CHARSET)
    obs_len, act_len = 0, 0
    for r in records:
        for m in r.messages:
            if m["role"] == "system":
                continue
            chars.update(m["content"])
            if m["role"] == "user":
                obs_len = max(obs_len, len(m["content"]))
            else:
                act_len = max(act_len, len(m["content"]))
    if env_id is not None:
        env = gym.make(env_id).unwrapped
        obs_len = max(obs_len, env.observation_space.max_length)
        act_len = max(act_len, env.action_space.max_length)
        env.close()
    charset = "".join(sorted(chars - {"\x00"}))
    return Text(max(obs_len, 1), min_length=0, charset=charset), Text(
        max(act_len, 1), min_length=0, charset=charset
    )


def export_minari(
    records_path: str | Path | Iterable[str | Path],
    dataset_id: str,
    *,
    author: str | None = "dialogue-gym",
    description: str | None = None,
    code_permalink: str | None = None,
    overwrite: bool = False,
    recoverable_env: bool = True,
    data_format: str = "arrow",
) -> Any:
    """Write the records of one or more JSONL files as Minari dataset ``dataset_id``; returns the
    ``MinariDataset``. The data lands under ``$MINARI_DATASETS_PATH`` (Minari's default location
    otherwise).

    Args:
        dataset_id: Minari's ``(namespace/)(env_name/)dataset_name(-v<version>)``, e.g.
            ``"dialogue-gym/teach/scripted-v0"``.
        overwrite: replace an existing local dataset of that id (else it is an error).
        recoverable_env: record the env spec, so ``dataset.recover_environment()`` makes the env.
        data_format: Minari storage, ``"arrow"`` (pyarrow, which ``datasets`` already needs) or
            ``"hdf5"`` (needs ``h5py``).
    """
    import minari
    from minari.data_collector import EpisodeBuffer

    paths = [records_path] if isinstance(records_path, (str, Path)) else list(records_path)
    records = [r for p in paths for r in read_records(p)]
    if not records:
        raise ValueError(f"no records in {', '.join(map(str, paths))}")
    env_ids = sorted({r.env_id for r in records})
    if len(env_ids) > 1:
        raise ValueError(f"a Minari dataset holds one env; the records are for {', '.join(env_ids)}")
    env_id = env_ids[0]
    known = env_id in gym.registry
    if dataset_id in minari.list_local_datasets():
        if not overwrite:
            raise ValueError(
                f"a local Minari dataset {dataset_id!r} exists; pass overwrite=True to replace it"
            )
        minari.delete_dataset(dataset_id)
    obs_space, act_space = text_spaces(records, env_id if known else None)
    # the registered spec carries a callable vector entry point, which cannot be stored as JSON
    spec = (
        dataclasses.replace(gym.spec(env_id), vector_entry_point=None) if known and recoverable_env else None
    )
    generators = "+".join(sorted({str(r.provenance.get("generator")) for r in records}))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`(author_email|eval_env|code_permalink)` is set to None")
        dataset = minari.create_dataset_from_buffers(
            dataset_id,
            [],  # episodes are added below, all at once
            env=spec,
            observation_space=obs_space,
            action_space=act_space,
            algorithm_name=f"dialogue-gym {generators}",
            author=author,
            code_permalink=code_permalink,
            description=description or f"{len(records)} {env_id} dialogues ({generators}) from dialogue-gym",
            data_format=data_format,
        )
    # Minari re-measures the folder's size after every episode it adds (quadratic in episodes):
    # measure once at the end instead.
    storage = dataset.storage
    storage.get_size = lambda: 0.0
    try:
        storage.update_episodes(EpisodeBuffer(id=i, **episode_arrays(r)) for i, r in enumerate(records))
        storage.update_episode_metadata([_metadata(r) for r in records], range(len(records)))
    finally:
        del storage.get_size
    storage.update_metadata({"dataset_size": storage.get_size()})
    return minari.MinariDataset(storage)


def _metadata(r: Record) -> dict[str, Any]:
    return {
        "record_id": r.id,
        "persona_id": r.persona_id,
        "split": r.split,
        "strategy": r.provenance.get("strategy"),
        "generator": r.provenance.get("generator"),
        "outcome_reward": r.outcome_reward,
        "success": r.success,
        "end_reason": r.end_reason,
        "role_instructions": next((m["content"] for m in r.messages if m["role"] == "system"), ""),
    }


def episode_metadata(dataset: Any) -> list[Mapping[str, Any]]:
    """Each episode's metadata (record id, split, strategy...) of an exported dataset, in episode order."""
    return [
        json.loads(json.dumps(m)) for m in dataset.storage.get_episode_metadata(range(dataset.total_episodes))
    ]
