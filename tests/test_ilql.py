"""ILQL: hand-computed losses and targets, masking, Polyak averaging, and learning a known better action."""

from __future__ import annotations

import math

import pytest
import torch

from dialogue_gym.algos.ilql import (
    ILQLHeads,
    bellman_targets,
    cql_loss,
    cql_support,
    cql_support_loss,
    expectile_loss,
    find_actions,
    ilql_loss,
    polyak_update,
)

# ------------------------------------------------------------------------------ pure functions


def test_expectile_loss_by_hand():
    diff = torch.tensor([2.0, -2.0, 0.5, 0.0])  # target - prediction
    got = expectile_loss(diff, tau=0.7)
    # under-estimates (diff > 0) weigh tau = 0.7, over-estimates 1 - tau = 0.3
    assert torch.allclose(got, torch.tensor([0.7 * 4, 0.3 * 4, 0.7 * 0.25, 0.0]))


def test_expectile_minimiser_is_an_upper_expectile():
    """Minimising the expectile loss over a constant lands above the mean for tau > 0.5."""
    targets = torch.tensor([0.0, 0.0, 0.0, 1.0])
    v = torch.zeros((), requires_grad=True)
    opt = torch.optim.SGD([v], lr=0.1)
    for _ in range(500):
        opt.zero_grad()
        expectile_loss(targets - v, 0.9).mean().backward()
        opt.step()
    # stationary point: 0.9 * (1 - v) = 3 * 0.1 * v  =>  v = 0.9 / 1.2 = 0.75
    assert v.item() == pytest.approx(0.75, abs=1e-4)


# A toy row of 10 tokens: system/user tokens at 0-1 and 4-5 and 9; agent turn 1 = tokens 2, 3;
# agent turn 2 = tokens 6, 7, 8 (the episode's last). The second row is a dialogue cut before its
# end (not done), with an agent token at position 0 that has no prefix and so is no action.
AGENT_MASK = torch.tensor(
    [
        [0, 0, 1, 1, 0, 0, 1, 1, 1, 0],
        [1, 0, 1, 1, 0, 0, 0, 0, 0, 0],
    ]
)


def test_find_actions_rows_positions_next_and_turn_ends():
    acts = find_actions(AGENT_MASK)
    assert acts.row.tolist() == [0, 0, 0, 0, 0, 1, 1]
    assert acts.pos.tolist() == [2, 3, 6, 7, 8, 2, 3]
    assert acts.state_pos.tolist() == [1, 2, 5, 6, 7, 1, 2]
    # next action: within a turn the next token, at a turn end the next turn's first token
    assert acts.next.tolist() == [1, 2, 3, 4, -1, 6, -1]
    assert acts.turn_end.tolist() == [False, True, False, False, True, False, True]


def test_bellman_targets_across_human_turns_and_at_episode_end():
    acts = find_actions(AGENT_MASK)
    # rewards sit on turn ends: 0.5 after turn 1, 2.0 at the end of turn 2 (episode end, done)
    rewards = torch.tensor([0.0, 0.5, 0.0, 0.0, 2.0, 0.0, 0.3])
    dones = torch.tensor([0, 0, 0, 0, 1, 0, 0])
    values = torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0])  # V at each action's state
    targets, valid = bellman_targets(rewards, dones, values, acts, gamma=0.9, token_gamma=0.5)
    expected = [
        0.5 * 20.0,  # token 2 -> token 3, same utterance: token_gamma * V(s_3)
        0.5 + 0.9 * 30.0,  # token 3 ends turn 1 -> first token of turn 2 (after the human spoke)
        0.5 * 40.0,
        0.5 * 50.0,
        2.0,  # token 8 ends the episode: the reward alone
        0.5 * 70.0,  # row 2
        0.3 + 0.9 * 0.0,  # row 2's last action: cut, not done -> no target (masked out)
    ]
    assert torch.allclose(targets, torch.tensor(expected))
    assert valid.tolist() == [True, True, True, True, True, True, False]


def test_bellman_targets_bootstrapping_per_turn():
    """``bootstrap="turn"``: every token of a turn takes its turn end's target, discounted per token."""
    acts = find_actions(AGENT_MASK)
    rewards = torch.tensor([0.0, 0.5, 0.0, 0.0, 2.0, 0.0, 0.3])
    dones = torch.tensor([0, 0, 0, 0, 1, 0, 0])
    values = torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0])
    targets, valid = bellman_targets(
        rewards, dones, values, acts, gamma=0.9, token_gamma=0.5, bootstrap="turn"
    )
    turn1 = 0.5 + 0.9 * 30.0  # turn 1's end: its reward and V where turn 2 starts
    expected = [
        0.5 * turn1,  # token 2: one token before turn 1's end
        turn1,
        0.25 * 2.0,  # tokens 6, 7: two and one tokens before the episode's end
        0.5 * 2.0,
        2.0,
        0.5 * (0.3 + 0.9 * 0.0),  # row 2: its turn is cut, not done
        0.3,
    ]
    assert torch.allclose(targets, torch.tensor(expected))
    # a turn cut before its end gives none of its tokens a target
    assert valid.tolist() == [True, True, True, True, True, False, False]
    with pytest.raises(ValueError, match="bootstrap"):
        bellman_targets(rewards, dones, values, acts, gamma=0.9, bootstrap="utterance")


def test_cql_term_by_hand():
    q = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    got = cql_loss(q, torch.tensor([2, 1]))
    lse = math.log(math.e + math.e**2 + math.e**3)
    assert torch.allclose(got, torch.tensor([lse - 3.0, math.log(3.0)]))


def test_cql_over_the_policy_support_by_hand():
    logits = torch.tensor([[0.0, 5.0, 4.0, -1.0], [3.0, 2.0, 1.0, 0.0]])
    taken = torch.tensor([3, 0])
    cand, drop = cql_support(logits, taken, k=2)
    # the taken token first, then the policy's top 2; a top-2 token that was taken is left out
    assert cand.tolist() == [[3, 1, 2], [0, 0, 1]]
    assert drop.tolist() == [[False, False, False], [False, True, False]]
    q = torch.tensor([[0.5, 2.0, 1.0, 0.0], [1.0, 3.0, -1.0, 0.0]])
    got = cql_support_loss(q.gather(1, cand), drop)
    row0 = math.log(math.exp(0.0) + math.exp(2.0) + math.exp(1.0)) - 0.0  # Q at tokens 3, 1, 2
    row1 = math.log(math.exp(1.0) + math.exp(3.0)) - 1.0  # tokens 0 and 1 (0 counted once)
    assert torch.allclose(got, torch.tensor([row0, row1]))


@pytest.mark.parametrize("kind", ["embedding", "mlp"])
def test_cql_over_the_whole_vocabulary_as_support_is_the_full_term(kind):
    """cql_top_k = vocabulary size reads Q at every token: the same loss as the paper's term."""
    torch.manual_seed(3)
    heads, lm_head = ILQLHeads(8, 11, q_head=kind), torch.nn.Linear(8, 11)
    hidden, input_ids, rewards, dones = _loss_inputs()
    kwargs = dict(
        heads=heads, lm_head=lm_head, gamma=0.9, token_gamma=1.0, tau=0.7, cql_weight=0.1, nll_weight=1.0
    )
    full, full_stats = ilql_loss(hidden, input_ids, AGENT_MASK, rewards, dones, **kwargs)
    sup, sup_stats = ilql_loss(hidden, input_ids, AGENT_MASK, rewards, dones, cql_top_k=11, **kwargs)
    assert torch.allclose(full, sup, atol=1e-5)
    assert full_stats.keys() == sup_stats.keys()
    for key in full_stats:
        assert torch.allclose(full_stats[key], sup_stats[key], atol=1e-5), key
    # a smaller support is a different (smaller) conservative term
    _, small = ilql_loss(hidden, input_ids, AGENT_MASK, rewards, dones, cql_top_k=2, **kwargs)
    assert small["loss_cql"] < full_stats["loss_cql"]


def test_polyak_update_by_hand():
    online, target = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        online.weight.copy_(torch.tensor([[1.0, 2.0]]))
        online.bias.fill_(4.0)
        target.weight.copy_(torch.tensor([[3.0, -2.0]]))
        target.bias.fill_(0.0)
    polyak_update(target, online, rate=0.25)
    # target <- 0.25 * online + 0.75 * target
    assert torch.allclose(target.weight, torch.tensor([[0.25 * 1 + 0.75 * 3, 0.25 * 2 + 0.75 * -2]]))
    assert torch.allclose(target.bias, torch.tensor([1.0]))
    assert torch.allclose(online.weight, torch.tensor([[1.0, 2.0]]))  # the online head is untouched


def test_heads_sync_moves_targets_toward_online_heads_only():
    heads = ILQLHeads(4, 7)
    assert all(not p.requires_grad for p in heads.target_q_heads.parameters())
    before = [p.clone() for p in heads.target_q_heads.parameters()]
    with torch.no_grad():
        for p in heads.q_heads.parameters():
            p.add_(1.0)
    online = [p.clone() for p in heads.q_heads.parameters()]
    heads.sync_targets(0.1)
    for b, o, t in zip(before, online, heads.target_q_heads.parameters(), strict=True):
        assert torch.allclose(t, 0.9 * b + 0.1 * o, atol=1e-6)


@pytest.mark.parametrize("kind", ["embedding", "mlp"])
def test_target_q_taken_matches_the_full_vocabulary_heads(kind):
    torch.manual_seed(0)
    heads, basis = ILQLHeads(8, 11, q_head=kind), torch.randn(11, 8)
    with torch.no_grad():
        for p in heads.target_q_heads[1].parameters():
            p.add_(0.3)  # make the two target heads differ
    hidden, taken = torch.randn(5, 8), torch.tensor([0, 3, 10, 3, 7])
    full = heads.target_q(hidden, basis)
    assert full.shape == (5, 11)
    assert torch.allclose(
        heads.target_q_taken(hidden, taken, basis), full.gather(-1, taken[:, None])[:, 0], atol=1e-5
    )


# ------------------------------------------------------------------------------ masking


def _loss_inputs(seed: int = 0):
    torch.manual_seed(seed)
    hidden = torch.randn(2, 10, 8)
    input_ids = torch.randint(0, 11, (2, 10))
    rewards = torch.zeros(2, 10)
    rewards[0, 3], rewards[0, 8], rewards[1, 3] = 0.5, 2.0, 0.3
    dones = torch.zeros(2, 10)
    dones[0, 8] = 1
    return hidden, input_ids, rewards, dones


def _loss(hidden, input_ids, rewards, dones, heads, lm_head, **kwargs):
    return ilql_loss(
        hidden,
        input_ids,
        AGENT_MASK,
        rewards,
        dones,
        heads=heads,
        lm_head=lm_head,
        gamma=0.9,
        token_gamma=1.0,
        tau=0.7,
        cql_weight=0.1,
        nll_weight=1.0,
        **kwargs,
    )


@pytest.mark.parametrize("kind", ["embedding", "mlp"])
def test_human_tokens_change_nothing(kind):
    """Rewards, dones and hidden states at positions that are no agent-token state are never read."""
    torch.manual_seed(1)
    heads, lm_head = ILQLHeads(8, 11, q_head=kind), torch.nn.Linear(8, 11)
    hidden, input_ids, rewards, dones = _loss_inputs()
    loss, stats = _loss(hidden, input_ids, rewards, dones, heads, lm_head)

    state = torch.zeros(2, 10, dtype=torch.bool)  # positions whose hidden state is an action's state
    acts = find_actions(AGENT_MASK)
    state[acts.row, acts.state_pos] = True
    action = torch.zeros(2, 10, dtype=torch.bool)
    action[acts.row, acts.pos] = True
    hidden2, rewards2, dones2, ids2 = hidden.clone(), rewards.clone(), dones.clone(), input_ids.clone()
    hidden2[~state] = torch.randn(int((~state).sum()), 8) * 5
    rewards2[~action], dones2[~action] = 9.0, 1.0
    ids2[~action] = (ids2[~action] + 1) % 11  # the human said something else (same states given)
    loss2, stats2 = _loss(hidden2, ids2, rewards2, dones2, heads, lm_head)
    assert torch.equal(loss, loss2)
    assert stats == stats2

    # ...while the same change at an agent turn end does change the loss
    rewards2[0, 3] = 9.0
    loss3, _ = _loss(hidden2, ids2, rewards2, dones2, heads, lm_head)
    assert not torch.equal(loss, loss3)


@pytest.mark.parametrize("kind", ["embedding", "mlp"])
def test_loss_gradients_reach_heads_but_not_targets(kind):
    torch.manual_seed(2)
    heads, lm_head = ILQLHeads(8, 11, q_head=kind), torch.nn.Linear(8, 11)
    hidden, input_ids, rewards, dones = _loss_inputs()
    hidden.requires_grad_(True)
    loss, stats = _loss(hidden, input_ids, rewards, dones, heads, lm_head)
    loss.backward()
    assert all(p.grad is not None for p in heads.q_heads.parameters())
    assert all(p.grad is not None for p in heads.v_head.parameters())
    assert all(p.grad is None for p in heads.target_q_heads.parameters())
    assert set(stats) >= {"loss_q", "loss_v", "loss_cql", "loss_nll"}


@pytest.mark.parametrize("kind", ["embedding", "mlp"])
def test_detached_heads_leave_the_body_to_the_imitation_loss(kind):
    """``detach_heads=True``: the LM's hidden states get exactly the behaviour-cloning gradient,
    while the heads still learn; without it the value losses reach the hidden states too."""
    torch.manual_seed(3)
    heads, lm_head = ILQLHeads(8, 11, q_head=kind), torch.nn.Linear(8, 11)
    hidden, input_ids, rewards, dones = _loss_inputs()
    acts = find_actions(AGENT_MASK)

    h_nll = hidden.clone().requires_grad_(True)
    logits = lm_head(h_nll[acts.row, acts.state_pos])
    torch.nn.functional.cross_entropy(logits, input_ids[acts.row, acts.pos]).backward()

    grads = {}
    for detach in (True, False):
        h = hidden.clone().requires_grad_(True)
        heads.zero_grad()
        loss, _ = _loss(h, input_ids, rewards, dones, heads, lm_head, detach_heads=detach)
        loss.backward()
        grads[detach] = h.grad
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in heads.v_head.parameters())
    assert torch.allclose(grads[True], h_nll.grad, atol=1e-6)
    assert not torch.allclose(grads[False], h_nll.grad, atol=1e-6)


# ------------------------------------------------------------------------------ learning, tabular


def _fit(hidden, ids, agent_mask, rewards, dones, heads, lm_head, steps, **kwargs):
    """Minimise the ILQL loss on fixed (tabular) states with Adam, syncing the targets at rate 0.1."""
    params = [*heads.q_heads.parameters(), *heads.v_head.parameters(), *lm_head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(steps):
        loss, _ = ilql_loss(
            hidden, ids, agent_mask, rewards, dones, heads=heads, lm_head=lm_head,
            gamma=0.99, token_gamma=1.0, tau=0.7, cql_weight=0.1, nll_weight=1.0, **kwargs,
        )  # fmt: skip
        opt.zero_grad()
        loss.backward()
        opt.step()
        heads.sync_targets(0.1)


@pytest.mark.parametrize(
    "kind,cql_top_k,bootstrap",
    [
        ("embedding", None, "token"),
        ("mlp", None, "token"),
        ("embedding", 2, "token"),
        ("embedding", None, "turn"),
    ],
)
def test_losses_learn_the_right_values_on_a_tabular_toy(kind, cql_top_k, bootstrap):
    """With one-hot states in place of the LM's hidden states, minimising the ILQL loss (with the
    Polyak-averaged targets) recovers the true values, credit crossing a human turn.

    Two dialogues share their opening; the agent says A (token 1) or B (token 2), ends its turn
    (3), the human replies, and the agent says token 4 and ends; only A's dialogue pays 1, at the
    very end. With gamma = 0.99 per turn: Q(s0, A) = 0.99 (one turn boundary before the reward),
    Q(s0, B) = 0, and V(s0) is the 0.7-expectile of the two: 0.7 * 0.99 + 0.3 * 0 = 0.693.
    """
    torch.manual_seed(0)
    human = 0
    ids = torch.tensor([[human, human, human, 1, 3, human, human, human, 4, 3]])
    ids = torch.cat([ids, ids.clone()])
    ids[1, 3] = 2
    agent_mask = torch.tensor([[0, 0, 0, 1, 1, 0, 0, 0, 1, 1]] * 2)
    rewards, dones = torch.zeros(2, 10), torch.zeros(2, 10)
    rewards[0, 9], dones[:, 9] = 1.0, 1.0
    prefix = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [0, 1, 2, 13, 14, 15, 16, 17, 18, 19]])
    hidden = torch.nn.functional.one_hot(prefix, 20).float()  # one state per distinct prefix

    heads, lm_head = ILQLHeads(20, 5, q_head=kind), torch.nn.Linear(20, 5, bias=False)
    _fit(
        hidden, ids, agent_mask, rewards, dones, heads, lm_head, 600, cql_top_k=cql_top_k, bootstrap=bootstrap
    )
    with torch.no_grad():
        s0 = hidden[0, 2:3]
        q = heads.target_q(s0, lm_head.weight)[0]
        turn2 = heads.values(hidden[:, 7])  # the agent's second turn, after A's and after B's opening
        assert q[1].item() == pytest.approx(0.99, abs=0.05)
        assert q[2].item() == pytest.approx(0.0, abs=0.05)
        assert heads.values(s0).item() == pytest.approx(0.693, abs=0.05)
        assert turn2.tolist() == pytest.approx([1.0, 0.0], abs=0.05)
        # the behaviour policy itself stays 50/50 between A and B; the advantage is what differs
        p = lm_head(s0).softmax(-1)[0]
        assert (p[1] / (p[1] + p[2])).item() == pytest.approx(0.5, abs=0.05)


def test_turn_bootstrapping_carries_the_reward_across_long_utterances():
    """``bootstrap="turn"``: with two 8-token utterances and the reward at the very end, V where the
    first utterance starts reaches its true value (0.99: one turn boundary before the reward) in 200
    updates, since each token's target comes from V where the next turn starts. (Bootstrapping
    token by token, the same toy and budget gives 3.6-5.8 over seeds 0-3: the value has to pass
    through 16 chained targets; not asserted, it is what the option is for.)"""
    torch.manual_seed(0)
    n = 2 + 8 + 2 + 8  # human, agent (8 tokens), human, agent (8 tokens, the episode's end)
    agent_mask = torch.zeros(1, n, dtype=torch.long)
    agent_mask[0, 2:10] = 1
    agent_mask[0, 12:] = 1
    ids = agent_mask.clone()  # the agent always says token 1; the human token 0
    rewards, dones = torch.zeros(1, n), torch.zeros(1, n)
    rewards[0, -1], dones[0, -1] = 1.0, 1.0
    hidden = torch.nn.functional.one_hot(torch.arange(n)[None], n).float()
    heads, lm_head = ILQLHeads(n, 3), torch.nn.Linear(n, 3, bias=False)
    _fit(hidden, ids, agent_mask, rewards, dones, heads, lm_head, 200, bootstrap="turn")
    with torch.no_grad():
        assert heads.values(hidden[0, 1:2]).item() == pytest.approx(0.99, abs=0.1)
        assert heads.values(hidden[0, 11:12]).item() == pytest.approx(1.0, abs=0.1)


# ------------------------------------------------------------------------------ inference


def test_logits_processor_adds_beta_times_advantage_and_keeps_top_k():
    from dialogue_gym.algos.ilql import ILQLLogitsProcessor
    from dialogue_gym.algos.models import hidden_states, load_base_model

    lm, tok = load_base_model("tiny", seed=0)
    heads = ILQLHeads(lm.config.hidden_size, lm.config.vocab_size)
    with torch.no_grad():
        for p in heads.target_q_heads[0].parameters():
            p.add_(0.05)  # two target heads that differ, so the min matters
    proc = ILQLLogitsProcessor(lm, heads, beta=2.0)
    from dialogue_gym.algos.data import encode_prompt

    ids = torch.tensor([encode_prompt(PROMPT, tok)])
    with torch.no_grad():
        scores = lm(ids).logits[:, -1]
        shifted = proc(ids, scores.clone())
        h = hidden_states(lm, ids, torch.ones_like(ids))[:, -1]
        basis = lm.get_output_embeddings().weight
        q = torch.minimum(heads.target_q_heads[0](h, basis), heads.target_q_heads[1](h, basis))
        expected = scores + 2.0 * (q - heads.values(h)[:, None])
    assert torch.allclose(shifted, expected, atol=1e-4)

    proc.top_k = 3
    with torch.no_grad():
        kept = proc(ids, lm(ids).logits[:, -1])
    assert torch.isfinite(kept).sum().item() == 3
    assert set(torch.isfinite(kept)[0].nonzero()[:, 0].tolist()) == set(scores.topk(3).indices[0].tolist())

    # training forwards (with autograd) are not captured, and the hook goes with the processor
    proc._local.hidden = None
    lm(ids)
    assert proc._local.hidden is None
    n_hooks = len(lm.get_output_embeddings()._forward_pre_hooks)
    del proc
    import gc

    gc.collect()
    assert len(lm.get_output_embeddings()._forward_pre_hooks) == n_hooks - 1


# ------------------------------------------------------------------------------ training

A, B = "Yes.", "No."
STEPS, TOP_K = 300, 2  # the toy run's optimizer steps; the ILQL agent samples among the top-k tokens


def toy_records(n: int = 32) -> list:
    """Two-turn dialogues whose first agent utterance is A or B, equally often. A's turn earns 1,
    B's 0; then the human replies and the agent says goodbye (reward 0 either way)."""
    from dialogue_gym.datagen.records import Record

    out = []
    for i in range(n):
        first = A if i % 2 == 0 else B
        messages = [
            {"role": "system", "content": "You are a tutor."},
            {"role": "user", "content": "Can you help me?"},
            {"role": "assistant", "content": first},
            {"role": "user", "content": "Okay."},
            {"role": "assistant", "content": "Bye."},
        ]
        out.append(
            Record(
                id=f"toy-{i}",
                env_id="DialogueTeach-v0",
                messages=messages,
                rewards=[1.0 if first == A else 0.0, 0.0],
                persona_id=f"{i:08x}",
                provenance={"generator": "scripted"},
            )
        )
    return out


PROMPT = [{"role": "system", "content": "You are a tutor."}, {"role": "user", "content": "Can you help me?"}]


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> str:
    from dialogue_gym.datagen.records import write_records

    path = tmp_path_factory.mktemp("ilql") / "toy.jsonl"
    write_records(path, toy_records())
    return str(path)


def _config(data: str, out, **kw):
    from dialogue_gym.algos.ilql import ILQLConfig

    base = dict(
        data=[data],
        output_dir=str(out),
        model="tiny",
        split=None,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        warmup_steps=0,
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    return ILQLConfig(**{**base, **kw})


def _weights(out) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "model.safetensors")) | load_file(str(out / "extra_state.safetensors"))


@pytest.mark.slow
def test_checkpoint_round_trip(toy_data, tmp_path):
    """train() writes an agent directory; loading it gives the trained heads and the same outputs."""
    from safetensors.torch import load_file

    from dialogue_gym.algos.checkpoint import load_agent as load_any
    from dialogue_gym.algos.ilql import heads_from_state, ilql_agent, inference_state, load_agent, train
    from dialogue_gym.algos.models import load_base_model

    out = train(_config(toy_data, tmp_path / "run", max_steps=3, save_steps=3))
    # the last Trainer checkpoint holds the same final state, in the Trainer's own layout
    trainer_heads = load_file(str(out / "checkpoint-3" / "ilql_heads.safetensors"))
    saved = load_file(str(out / "extra_state.safetensors"))
    assert set(saved) == set(inference_state(heads_from_state(saved)))
    for k, v in saved.items():
        assert torch.equal(v, trainer_heads[k]), k

    agent = load_agent(out, beta=2.0)
    assert isinstance(load_any(out), type(agent))
    for k, v in inference_state(agent.logits_processor.heads).items():
        assert torch.equal(v, saved[k]), k
    lm, tok = load_base_model(str(out / "checkpoint-3"))
    reference = ilql_agent(lm, tok, heads_from_state(trainer_heads), beta=2.0)
    batch = [PROMPT, [*PROMPT, {"role": "assistant", "content": A}, {"role": "user", "content": "Okay."}]]
    assert agent.act_batch(batch) == reference.act_batch(batch)
    assert load_agent(out, beta=2.0).act_batch(batch) == agent.act_batch(batch)


@pytest.mark.slow
def test_a_trainer_checkpoint_is_an_ilql_agent(toy_data, tmp_path):
    """checkpoint-N loads as the ILQL agent of step N: its target heads from the Trainer's heads
    file (the online Q heads left out), deciding as the finished agent of the same step does."""
    from safetensors.torch import load_file

    from dialogue_gym.algos.checkpoint import load_agent as load_any
    from dialogue_gym.algos.ilql import HEADS_FILE, inference_state, load_agent, train

    out = train(_config(toy_data, tmp_path / "run", max_steps=2, save_steps=2))
    ckpt = out / "checkpoint-2"
    agent = load_any(ckpt, beta=2.0)
    assert agent.name == "ilql:checkpoint-2"
    trainer_heads = load_file(str(ckpt / HEADS_FILE))
    got = inference_state(agent.logits_processor.heads)
    assert set(got) == {k for k in trainer_heads if not k.startswith("q_heads.")}
    for k, v in got.items():
        assert torch.equal(v, trainer_heads[k]), k
    batch = [PROMPT, [*PROMPT, {"role": "assistant", "content": A}, {"role": "user", "content": "Okay."}]]
    assert agent.act_batch(batch) == load_agent(out, beta=2.0).act_batch(batch)
    # the command line's eval takes the checkpoint and its --beta
    from dialogue_gym.cli import _eval_agent

    played = _eval_agent(str(ckpt), "DialogueTeach-v0", None, None, None, None, beta=0.0)
    assert played.logits_processor.beta == 0.0


@pytest.mark.slow
def test_training_resumes_from_a_trainer_checkpoint(toy_data, tmp_path):
    """A run resumed from its step-2 checkpoint runs only steps 3-4 and ends where the uninterrupted
    run ends (LM, heads, target heads, optimizer state and data order all restored)."""
    import shutil

    from transformers import TrainerCallback

    from dialogue_gym.algos.bc import resume_argument
    from dialogue_gym.algos.ilql import build_trainer, inference_state, train

    full = train(_config(toy_data, tmp_path / "full", max_steps=4, save_steps=2))
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(full / "checkpoint-2", resumed_dir / "checkpoint-2")

    class CountSteps(TrainerCallback):
        steps = 0

        def on_step_end(self, *args, **kwargs):
            CountSteps.steps += 1

    config = _config(toy_data, resumed_dir, max_steps=4, save_steps=2, resume_from_checkpoint="last")
    trainer, _ = build_trainer(config)
    trainer.add_callback(CountSteps())
    trainer.train(resume_from_checkpoint=resume_argument(config))
    assert CountSteps.steps == 2 and trainer.state.global_step == 4

    expected = _weights(full)
    got = {**trainer.model.lm.state_dict(), **inference_state(trainer.model.heads)}
    assert set(expected) <= set(got)
    for k, v in expected.items():
        assert torch.allclose(got[k], v, atol=1e-5), k


def first_choice(agent, n: int = 50) -> tuple[float, float]:
    """For the toy prompt: the agent's probability of opening with A's first token rather than B's
    (``p(A) / (p(A) + p(B))`` from its own next-token scores), and the share of ``n`` sampled
    utterances that start like A among those that start like A or B."""
    ids = torch.tensor([agent.prompt_ids(PROMPT)])
    a_tok, b_tok = (agent.tokenizer.encode(x, add_special_tokens=False)[0] for x in (A, B))
    with torch.no_grad():
        scores = agent.model(ids).logits[:, -1]
        if agent.logits_processor is not None:
            scores = agent.logits_processor(ids, scores)
    p = scores[0, [a_tok, b_tok]].softmax(-1)[0].item()
    torch.manual_seed(0)
    said = agent.act_batch([PROMPT] * n)
    n_a, n_b = sum(s.startswith(A[:-1]) for s in said), sum(s.startswith(B[:-1]) for s in said)
    return p, n_a / max(n_a + n_b, 1)


@pytest.mark.slow
def test_ilql_prefers_the_better_first_utterance_where_bc_is_indifferent(toy_data, tmp_path):
    """A and B open the toy dialogues equally often, but only A pays off. BC on the data is
    indifferent between them; ILQL, on the same data, says A.

    Measured two ways: the agent's own next-token probability of A's first token against B's, and
    the share of A among 50 sampled utterances. The ILQL agent samples among the behaviour
    policy's top-2 tokens (``top_k``): after 300 steps from scratch its Q heads still rate tokens
    the data never used at this point (e.g. the end-of-turn token) far too high. The reward is
    paid on A's own turn: with the same budget, a reward paid only after the human's reply (credit
    carried across a human turn) was not learnt by the from-scratch tiny model (advantages of A
    and B within 0.01 of each other at 300 steps).
    """
    from dialogue_gym.algos.bc import BCConfig
    from dialogue_gym.algos.bc import load_agent as load_bc
    from dialogue_gym.algos.bc import train as train_bc
    from dialogue_gym.algos.ilql import ILQLConfig, load_agent, train

    common = dict(
        data=[toy_data],
        split=None,
        max_steps=STEPS,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        warmup_steps=0,
        save_steps=1000,
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    bc = load_bc(train_bc(BCConfig(output_dir=str(tmp_path / "bc"), **common)), temperature=1.0)
    out = train(ILQLConfig(output_dir=str(tmp_path / "ilql"), target_update_rate=0.2, **common))
    ilql = load_agent(out, beta=4.0, top_k=TOP_K, temperature=1.0)
    behaviour = load_agent(out, beta=0.0, top_k=TOP_K, temperature=1.0)  # the same LM, no Q shift

    p_bc, rate_bc = first_choice(bc)
    p_beh, rate_beh = first_choice(behaviour)
    p_ilql, rate_ilql = first_choice(ilql)
    print(
        f"p(A): bc {p_bc:.2f} behaviour {p_beh:.2f} ilql {p_ilql:.2f}; "
        f"sampled A-rate: bc {rate_bc:.2f} behaviour {rate_beh:.2f} ilql {rate_ilql:.2f}"
    )
    assert 0.3 < p_bc < 0.7 and 0.2 <= rate_bc <= 0.8  # BC learnt the data's 50/50
    assert 0.3 < p_beh < 0.7
    assert p_ilql > 0.85 and rate_ilql >= 0.8
