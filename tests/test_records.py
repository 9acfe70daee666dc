"""The dataset record schema: validation, file errors with line numbers, resumable appends, splits."""

from __future__ import annotations

import json
import re

import gymnasium as gym
import pytest

from dialogue_gym.datagen.records import (
    Record,
    RecordError,
    RecordWriter,
    load_hf_dataset,
    load_records,
    provenance,
    read_records,
    record_from_episode,
    split_records,
    write_records,
)
from dialogue_gym.evaluation import reference_agent


def _play(env_id: str, seed: int) -> Record:
    env = gym.make(env_id)
    agent = reference_agent(env_id, "competent")
    _, info = env.reset(seed=seed)
    rewards, done = [], False
    while not done:
        _, r, term, trunc, info = env.step(agent.act(info["transcript"]))
        rewards.append(r)
        done = term or trunc
    prov = provenance("scripted", strategy="competent", seed=seed)
    return record_from_episode(f"{env_id}-{seed}", env_id, info["transcript"], rewards, info, prov)


def test_round_trip_and_fields(tmp_path, env_id):
    recs = [_play(env_id, s) for s in range(6)]
    path = tmp_path / "d.jsonl"
    assert write_records(path, recs) == 6
    back = load_records(path)
    assert [r.to_dict() for r in back] == [r.to_dict() for r in recs]
    r = back[0]
    assert r.env_version == 0 and r.provenance["generator"] == "scripted"
    assert len(r.rewards) == sum(m["role"] == "assistant" for m in r.messages)
    assert r.ret == pytest.approx(sum(r.rewards))
    assert r.messages[r.agent_turn_index(0)]["role"] == "assistant"


def test_bad_lines_name_file_and_line(tmp_path):
    good = _play("DialogueDonate-v0", 0).to_json()
    cases = {
        "{not json": "not valid JSON",
        json.dumps({**json.loads(good), "rewards": [1.0]}): "assistant messages",
        json.dumps({**json.loads(good), "messages": [{"role": "bot", "content": "x"}]}): "messages[0]",
        json.dumps({k: v for k, v in json.loads(good).items() if k != "env_id"}): "missing field",
        json.dumps({**json.loads(good), "return": 99.0}): "not the sum",
    }
    for line, fault in cases.items():
        path = tmp_path / "bad.jsonl"
        path.write_text(good + "\n\n" + line + "\n")
        with pytest.raises(RecordError, match=rf"bad.jsonl:3: .*{re.escape(fault)}"):
            list(read_records(path))
    path.write_text(good + "\n")
    with pytest.raises(RecordError, match="not DialogueTeach-v0"):
        list(read_records(path, env_id="DialogueTeach-v0"))
    with pytest.raises(FileNotFoundError, match="dataset not found"):
        list(read_records(tmp_path / "missing.jsonl"))


def test_writer_resumes_and_cuts_torn_line(tmp_path):
    recs = [_play("DialoguePrefs-v0", s) for s in range(4)]
    path = tmp_path / "d.jsonl"
    with RecordWriter(path) as w:
        for r in recs[:2]:
            w.write(r)
    with open(path, "a") as fh:  # a crash in the middle of a line
        fh.write(recs[2].to_json()[:50])
    w = RecordWriter(path)
    assert w.ids == {recs[0].id, recs[1].id}
    with pytest.raises(RecordError, match="duplicate"):
        w.write(recs[0])
    for r in recs[2:]:
        w.write(r)
    w.close()
    assert [r.id for r in load_records(path)] == [r.id for r in recs]


def test_splits_by_persona_and_datasets(tmp_path):
    recs = [_play("DialogueCounsel-v0", s) for s in range(40)]
    parts = split_records(recs)
    seen = {name: {r.persona_id for r in rs} for name, rs in parts.items()}
    assert not (seen["train"] & seen["dev"]) and not (seen["train"] & seen["test"])
    assert len(parts["train"]) > len(parts["test"])
    path = tmp_path / "d.jsonl"
    write_records(path, recs)
    ds = load_hf_dataset(path)
    assert ds["train"].num_rows == len(parts["train"])
    row = ds["train"][0]
    assert row["messages"][0]["role"] == "system" and json.loads(row["provenance"])["strategy"] == "competent"
