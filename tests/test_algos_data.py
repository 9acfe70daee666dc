"""Training data encoding, the agent-token forward, the LM agent and agent checkpoints."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import pytest
import torch

from dialogue_gym.agents.lm import LMAgent, evaluate_batched
from dialogue_gym.algos.checkpoint import CheckpointError, load_agent, read_meta, save_checkpoint
from dialogue_gym.algos.data import (
    DialogueCollator,
    DialogueDataset,
    encode_prompt,
    encode_record,
    end_of_turn_ids,
    load_training_records,
    top_fraction,
)
from dialogue_gym.algos.models import agent_logits, load_base_model, tiny_model
from dialogue_gym.datagen.records import RecordError, provenance, record_from_episode, write_records
from dialogue_gym.evaluation import evaluate, reference_agent

ENVS = ["DialogueCounsel-v0", "DialogueTeach-v0", "DialoguePrefs-v0", "DialogueDonate-v0"]


def play(env_id: str, seed: int, level: str = "competent"):
    env = gym.make(env_id)
    agent = reference_agent(env_id, level)
    _, info = env.reset(seed=seed)
    rewards, done = [], False
    while not done:
        _, r, term, trunc, info = env.step(agent.act(info["transcript"]))
        rewards.append(r)
        done = term or trunc
    prov = provenance("scripted", strategy=level, seed=seed)
    return record_from_episode(f"{env_id}-{level}-{seed}", env_id, info["transcript"], rewards, info, prov)


@pytest.fixture(scope="module")
def tokenizer():
    return load_base_model("tiny")[1]


@pytest.fixture(scope="module")
def records():
    return {env_id: [play(env_id, s) for s in range(3)] for env_id in ENVS}


def runs(mask: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs of 1s as (start, end inclusive)."""
    out, start = [], None
    for i, m in enumerate([*mask, 0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((start, i - 1))
            start = None
    return out


@pytest.mark.parametrize("env_id", ENVS)
def test_mask_covers_exactly_the_agent_utterances(tokenizer, records, env_id):
    eot = end_of_turn_ids(tokenizer)[0]
    for rec in records[env_id]:
        enc = encode_record(rec, tokenizer)
        agent_msgs = [m["content"] for m in rec.messages if m["role"] == "assistant"]
        spans = runs(enc.agent_mask)
        assert len(spans) == len(agent_msgs) == len(enc.turn_ends) == len(enc.turn_rewards)
        for (start, end), text, turn_end in zip(spans, agent_msgs, enc.turn_ends, strict=True):
            assert tokenizer.decode(enc.input_ids[start:end]) == text  # the content, exactly
            assert enc.input_ids[end] == eot  # then the end-of-turn token, also the agent's
            assert end == turn_end
        assert enc.turn_rewards == rec.rewards and enc.terminal
        # the whole sequence is the chat template's rendering, up to the last agent turn
        last = rec.agent_turn_index(rec.turns - 1)
        rendered = tokenizer.apply_chat_template(rec.messages[: last + 1], tokenize=False)
        assert tokenizer.decode(enc.input_ids) == rendered


def test_prompts_match_training_sequences(tokenizer, records):
    """The agent at play is prompted with exactly the tokens that precede its turn in training."""
    rec = records["DialogueCounsel-v0"][0]
    enc = encode_record(rec, tokenizer)
    for k, (start, _) in enumerate(runs(enc.agent_mask)):
        prompt = encode_prompt(rec.messages[: rec.agent_turn_index(k)], tokenizer)
        assert prompt == enc.input_ids[:start]


def test_truncation_drops_whole_early_exchanges(tokenizer, records):
    rec = records["DialogueCounsel-v0"][0]
    full = encode_record(rec, tokenizer)
    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    system_len = [i for i, t in enumerate(full.input_ids) if t == im_start][1]  # the system message
    for max_length in (len(full) - 1, len(full) // 2, len(full) // 3):
        enc = encode_record(rec, tokenizer, max_length)
        assert len(enc) <= max_length and enc.dropped_turns > 0
        assert enc.turn_rewards == rec.rewards[enc.dropped_turns :]
        assert enc.input_ids[:system_len] == full.input_ids[:system_len]  # system message kept
        kept = [m["content"] for m in rec.messages if m["role"] == "assistant"][enc.dropped_turns :]
        spans = runs(enc.agent_mask)
        assert [tokenizer.decode(enc.input_ids[s:e]) for s, e in spans] == kept
        assert [e for _, e in spans] == enc.turn_ends
        # what follows the system message is a whole human message, not a cut one
        text = tokenizer.decode(enc.input_ids)
        user = rec.messages[rec.agent_turn_index(enc.dropped_turns) - 1]["content"]
        assert f"<|im_start|>user\n{user}<|im_end|>" in text


def test_a_dataset_warns_when_max_length_cuts_agent_turns(tokenizer, records):
    recs = records["DialoguePrefs-v0"][:3]  # its catalogue alone takes ~1,550 tokens
    longest = max(len(encode_record(r, tokenizer)) for r in recs)
    with pytest.warns(UserWarning, match=rf"max_length=1024 cuts .* raise max_length .*{longest:,} tokens"):
        cut = DialogueDataset(recs, tokenizer, 1024)
    assert cut.dropped_turns == sum(r.turns - 1 for r in recs) > 0  # only the last turns are left
    assert cut.agent_turns == sum(r.turns for r in recs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        whole = DialogueDataset(recs, tokenizer, longest)
    assert whole.dropped_turns == 0 and whole.agent_turns == cut.agent_turns


def test_truncation_shortens_the_system_message_then_refuses(tokenizer, records):
    rec = records["DialoguePrefs-v0"][0]  # a long catalogue in the system message
    full = encode_record(rec, tokenizer)
    last_exchange = len(full) - full.turn_ends[-2] - 2
    enc = encode_record(rec, tokenizer, last_exchange + 40)
    assert len(enc) == last_exchange + 40 and enc.dropped_turns == rec.turns - 1
    text = tokenizer.decode(enc.input_ids)
    assert text.startswith("<|im_start|>system\n") and rec.messages[-2]["content"] in text
    assert rec.messages[0]["content"] not in text  # shortened
    assert text.count("<|im_end|>") == 3  # system, user, agent: each still closed
    with pytest.raises(ValueError, match="max_length=20"):
        encode_record(rec, tokenizer, 20)
    with pytest.raises(ValueError, match="max_length"):
        encode_prompt(rec.messages, tokenizer, 10)


def test_collator_pads_and_places_rewards(tokenizer, records):
    encs = [encode_record(r, tokenizer) for r in records["DialogueCounsel-v0"][:2]]
    encs[1].terminal = False
    batch = DialogueCollator(tokenizer.pad_token_id)(encs)
    width = max(len(e) for e in encs)
    assert batch["input_ids"].shape == (2, width)
    for row, e in enumerate(encs):
        n = len(e)
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
        assert batch["input_ids"][row, :n].tolist() == e.input_ids
        labels = batch["labels"][row]
        agent = torch.tensor(e.agent_mask + [0] * (width - n), dtype=torch.bool)
        assert (labels[~agent] == -100).all() and (labels[agent] == batch["input_ids"][row][agent]).all()
        nonzero = batch["rewards"][row].nonzero().flatten().tolist()
        assert set(nonzero) <= set(e.turn_ends)
        assert batch["rewards"][row, e.turn_ends].tolist() == pytest.approx(e.turn_rewards)
    assert batch["dones"][0].nonzero().flatten().tolist() == [encs[0].turn_ends[-1]]
    assert batch["dones"][1].sum() == 0


def test_agent_logits_only_where_agent_tokens_are_predicted(tokenizer, records):
    """The cheap forward equals the full one at the agent positions, and the BC loss built on it
    equals transformers' own loss with labels -100 everywhere but the agent tokens."""
    model = tiny_model(tokenizer, seed=1)
    encs = [encode_record(r, tokenizer) for r in records["DialogueTeach-v0"][:2]]
    batch = DialogueCollator(tokenizer.pad_token_id)(encs)
    with torch.no_grad():
        logits, targets = agent_logits(
            model, batch["input_ids"], batch["attention_mask"], batch["agent_mask"]
        )
        full = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
        )
    assert logits.shape == (int(batch["agent_mask"][:, 1:].sum()), len(tokenizer))
    pos = batch["agent_mask"][:, 1:].bool()
    torch.testing.assert_close(logits, full.logits[:, :-1][pos], atol=1e-4, rtol=1e-4)
    loss = torch.nn.functional.cross_entropy(logits, targets)
    torch.testing.assert_close(loss, full.loss, atol=1e-5, rtol=1e-5)


def test_load_training_records_refuses_other_envs(tmp_path, records):
    teach, counsel = tmp_path / "teach.jsonl", tmp_path / "counsel.jsonl"
    write_records(teach, records["DialogueTeach-v0"])
    write_records(counsel, records["DialogueCounsel-v0"])
    assert len(load_training_records([teach], "DialogueTeach-v0")) == 3
    with pytest.raises(
        RecordError, match=r"teach\.jsonl:1: .* is for DialogueTeach-v0, not DialogueDonate-v0"
    ):
        load_training_records(teach, "DialogueDonate-v0")
    with pytest.raises(ValueError, match="mix envs"):
        load_training_records([teach, counsel])
    with pytest.raises(FileNotFoundError, match="dataset not found"):
        load_training_records([tmp_path / "missing.jsonl"])
    splits = {r.split for r in records["DialogueTeach-v0"]}
    for split in ("train", "dev", "test"):
        if split in splits:
            assert {r.split for r in load_training_records(teach, split=split)} == {split}
        else:
            with pytest.raises(ValueError, match=f"no records in split '{split}'"):
                load_training_records(teach, split=split)


def test_top_fraction_keeps_the_best_returns(records):
    recs = [r for env_recs in records.values() for r in env_recs if r.env_id == "DialogueCounsel-v0"]
    recs += [play("DialogueCounsel-v0", s, "naive") for s in range(3)]
    rets = sorted((r.ret for r in recs), reverse=True)
    kept = top_fraction(recs, 0.5)
    assert len(kept) == 3 and sorted((r.ret for r in kept), reverse=True) == rets[:3]
    assert [r.id for r in kept] == [r.id for r in recs if r in kept]  # original order
    assert len(top_fraction(recs, 0.01)) == 1 and len(top_fraction(recs, 1.0)) == 6
    with pytest.raises(ValueError, match="top_fraction"):
        top_fraction(recs, 0.0)


# ------------------------------------------------------------------------------ the LM agent


@pytest.fixture(scope="module")
def tiny():
    return load_base_model("tiny", seed=3)


def test_batched_generation_equals_one_at_a_time(tiny, records):
    model, tok = tiny
    agent = LMAgent(model, tok, max_new_tokens=8)
    rec = records["DialogueDonate-v0"][0]
    convs = [rec.messages[: rec.agent_turn_index(k)] for k in range(4)]  # prompts of different lengths
    batched = agent.act_batch(convs)
    assert batched == [agent.act(c) for c in convs]
    assert all(isinstance(t, str) and t for t in batched)
    assert agent.stats["calls"] == 8 and agent.stats["generated_tokens"] > 0


class _StopAtOnce:
    """A logits processor that makes the end-of-turn token the only choice."""

    def __init__(self, stop: int) -> None:
        self.stop = stop

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(scores, -float("inf"))
        out[:, self.stop] = 0.0
        return out


def test_logits_processor_and_empty_fallback(tiny):
    model, tok = tiny
    agent = LMAgent(
        model, tok, logits_processor=_StopAtOnce(end_of_turn_ids(tok)[0]), fallback="Tell me more."
    )
    msgs = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hello"}]
    assert agent.act_batch([msgs, msgs]) == ["Tell me more.", "Tell me more."]
    assert agent.stats["empty"] == 2


def test_repetition_penalty_acts_on_the_reply_not_the_prompt(tiny):
    """The untrained tiny model loops on one token; a large penalty stops the loop, and it spares
    the prompt: a token the prompt contains is still the first choice when it was without it."""
    model, tok = tiny
    plain = LMAgent(model, tok, max_new_tokens=16)
    penalised = LMAgent(model, tok, max_new_tokens=16, repetition_penalty=1e3)
    msgs = [{"role": "system", "content": "You are a travel agent."}, {"role": "user", "content": "Plan"}]
    loop = tok(plain.act(msgs), add_special_tokens=False).input_ids
    assert len(set(loop)) < len(loop)  # the premise: without the penalty the reply repeats tokens
    reply = tok(penalised.act(msgs), add_special_tokens=False).input_ids
    assert len(reply) > 1 and len(set(reply)) == len(reply)
    # put the unpenalised reply's first token into the prompt: still the first choice with the penalty
    quoted = [msgs[0], {"role": "user", "content": "Plan " + tok.decode(loop[:2])}]
    first = tok(plain.act(quoted), add_special_tokens=False).input_ids[0]
    assert first in plain.prompt_ids(quoted)
    assert tok(penalised.act(quoted), add_special_tokens=False).input_ids[0] == first


def test_evaluate_batched_matches_evaluate():
    agent = reference_agent("DialogueTeach-v0", "competent")
    seq = evaluate(agent, "DialogueTeach-v0", 5, seed=7)
    bat = evaluate_batched(agent, "DialogueTeach-v0", 5, seed=7, batch_size=3)
    assert [(r.seed, r.ret, r.turns, r.end_reason) for r in bat] == [
        (r.seed, r.ret, r.turns, r.end_reason) for r in seq
    ]


# ------------------------------------------------------------------------------ checkpoints


def test_checkpoint_round_trip(tmp_path, tiny, records):
    model, tok = tiny
    data = tmp_path / "d.jsonl"
    write_records(data, records["DialogueCounsel-v0"])
    config = {"data": [str(data)], "model": "tiny", "max_length": 1024}
    out = save_checkpoint(
        tmp_path / "agent", algo="bc", model=model, tokenizer=tok, config=config, env_id="X"
    )
    meta = read_meta(out)
    assert meta["algo"] == "bc" and meta["base_model"] == "tiny" and meta["env_id"] == "X"
    assert meta["datasets"][0]["sha256"] and meta["package_version"]
    loaded = load_agent(out, max_new_tokens=8, device="cpu")
    original = LMAgent(model, tok, max_new_tokens=8, max_length=1024)
    rec = records["DialogueCounsel-v0"][1]
    convs = [rec.messages[: rec.agent_turn_index(k)] for k in range(3)]
    assert loaded.act_batch(convs) == original.act_batch(convs)
    assert loaded.name == "bc:agent"
    # an agent directory is also a plain Hugging Face model directory, usable as a base model
    again, _ = load_base_model(str(out))
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters(), strict=True))


def test_checkpoint_errors(tmp_path, tiny):
    model, tok = tiny
    with pytest.raises(CheckpointError, match="not a directory"):
        load_agent(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a dialogue-gym agent checkpoint"):
        load_agent(tmp_path / "empty")
    out = save_checkpoint(tmp_path / "a", algo="fbc", model=model, tokenizer=tok, config={}, env_id=None)
    with pytest.raises(CheckpointError, match="is a 'fbc' checkpoint, expected 'ilql'"):
        load_agent(out, expect_algo="ilql")
    meta = json.loads((out / "dialogue_gym_agent.json").read_text())
    (out / "dialogue_gym_agent.json").write_text(json.dumps({**meta, "algo": "ppo"}))
    with pytest.raises(CheckpointError, match="unknown algorithm 'ppo'"):
        load_agent(out)
    with pytest.raises(ValueError, match="unknown algorithm"):
        save_checkpoint(tmp_path / "b", algo="ppo", model=model, tokenizer=tok, config={}, env_id=None)


def test_extra_state_round_trip(tmp_path, tiny):
    from dialogue_gym.algos.checkpoint import load_extra_state

    model, tok = tiny
    heads = {"q.weight": torch.randn(3, 4), "v.bias": torch.randn(2)}
    out = save_checkpoint(
        tmp_path / "a", algo="ilql", model=model, tokenizer=tok, config={}, env_id=None, extra_state=heads
    )
    back = load_extra_state(out)
    assert set(back) == set(heads) and all(torch.equal(back[k], heads[k]) for k in heads)
    assert read_meta(out, expect_algo="ilql")["extra_state"] == "extra_state.safetensors"


def test_unknown_base_model_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ValueError, match=f"cannot load base model '{missing}'"):
        load_base_model(str(missing))
