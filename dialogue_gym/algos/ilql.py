"""ILQL: Implicit Language Q-Learning (Snell et al. 2022) for dialogue agents, on ``transformers.Trainer``.

Offline RL at the token level. Each agent token is an action; the state it is taken in is the
prefix before it (the whole conversation so far, human turns included). On the language model's
final hidden state of that prefix sit

* a value head ``V(s)`` (a scalar),
* two Q heads ``Q_1(s, .), Q_2(s, .)`` (one value per vocabulary token: ``Q(s, a)`` is read at the
  token ``a`` actually taken), and
* two target Q heads, Polyak-averaged copies of the Q heads that give the V head its targets.

The language model itself is the behaviour policy, trained with the usual next-token loss on agent
tokens. The losses (per agent token ``t`` with state ``s_t``, action ``a_t``, reward ``r_t``)::

    target_t = r_t + discount_t * (1 - done_t) * V(s_next).detach()     # Bellman target
    L_Q      = sum_i  mean_t (Q_i(s_t, a_t) - target_t) ** 2
    L_V      = mean_t |tau - 1(u_t < 0)| * u_t ** 2,  u_t = min_i Qtarget_i(s_t, a_t) - V(s_t)
    L_CQL    = sum_i  mean_t  cross_entropy(Q_i(s_t, .), a_t)            # conservative term
    L_NLL    = mean_t  cross_entropy(logits(s_t, .), a_t)                # behaviour cloning
    loss     = L_Q + L_V + cql_weight * L_CQL + nll_weight * L_NLL

With ``cql_top_k = k`` the conservative term's log-sum-exp runs over the behaviour policy's top
``k`` tokens at ``s_t`` and the taken one instead of the whole vocabulary (CQL's sampled estimate
of the log-sum-exp, as in continuous action spaces, with the policy's likeliest tokens as the
sample). Over 49k tokens one overrated token gets ~1e-4 of the softmax and hardly any push; among
the ~20 tokens that decoding actually chooses from it gets its share. It also spares the two
vocabulary-sized Q projections: the Q heads are then read at ``k + 1`` tokens per state.

``s_next`` is the state of the next agent token: within a turn the next token, at the end of a
turn the first token of the agent's next turn (so the human's reply in between is part of the
state, never an action), and nothing at the end of the episode (``done``: the target is the
reward alone). Rewards sit on the last token of each agent turn. Human, system and chat-template
tokens are never actions: they are masked out of every loss, and the heads are evaluated only at
agent-token states, so the vocabulary-sized Q heads cost nothing at the other positions.

At inference the agent samples (or decodes greedily) from ``logits + beta * (Q(s, .) - V(s))``
with ``Q`` the minimum of the two target Q heads, which the paper shows approximates the optimal
policy constrained to the data's support (:class:`ILQLLogitsProcessor`).
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn
from transformers import (
    LogitsProcessor,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

HEADS_FILE = "ilql_heads.safetensors"  # the heads inside a Trainer checkpoint (next to the LM's weights)


@dataclass
class ILQLConfig(TrainingArguments):
    """Everything an ILQL run needs: data, base model, the ILQL hyperparameters and the Trainer's options.

    Data and model (as :class:`~dialogue_gym.algos.bc.BCConfig`): ``data`` (JSONL record files),
    ``model`` (``"tiny"``, ``"smollm2"`` or a HF path), ``env_id``, ``max_length``, ``split``
    (the persona split trained on), ``dtype``, ``eval_every``/``eval_episodes`` (dev-split
    returns logged during training).

    ILQL (defaults and where they come from):
        gamma: 0.99, the paper's discount (Snell et al. 2022, appendix; also trlx's ``ILQLConfig``),
            applied here once per agent turn, between one utterance and the next.
        token_gamma: 1.0, the discount between tokens of one utterance. The paper discounts every
            token by ``gamma``; we do not, so that a long utterance is not worth less than a short
            one for the dialogue's outcome. Set ``token_gamma=gamma`` for the paper's convention.
        bootstrap: "token", each token's Bellman target bootstraps from V at the next token (the
            paper). ``"turn"`` bootstraps every token of an utterance from V where the agent's next
            turn starts (an n-step target through the rest of the utterance; ours, not the
            paper's): a turn's reward then reaches the previous turn's tokens in one update instead
            of one token per update, each through the lagging target heads.
        detach_heads: False, the value losses train the LM body too (as in trlx). True stops
            their gradient at the heads' input, so the body (and with it the behaviour policy)
            learns from the imitation loss alone, as BC's does, and the heads read its features
            (ours, not the paper's).
        tau_expectile: 0.7, the expectile of V (trlx's default ``tau``; the paper sweeps 0.7-0.9).
        cql_weight: 0.1, the weight of the conservative term (trlx's ``cql_scale``).
        cql_top_k: None, the conservative term over the whole vocabulary (the paper, trlx). An
            integer k restricts its log-sum-exp to the behaviour policy's top-k tokens and the
            taken one (see the module docstring; ours, not the paper's).
        nll_weight: 1.0, the weight of the behaviour-cloning loss (trlx's ``awac_scale``).
        two_qs: True, two Q heads and the minimum of their targets (the paper, after TD3/IQL).
        q_head: "embedding", the Q heads' form (:class:`QHead`): an MLP scored against the LM's
            output embedding, or ``"mlp"``, the paper's vocabulary-sized MLP (4x the weights of
            the tiny model per head, and twice the compute).
        target_update_rate, target_update_every: 0.005 and 1, Polyak averaging
            ``target <- rate * online + (1 - rate) * target`` after every optimizer step, as in
            IQL (Kostrikov et al. 2021), which ILQL builds on. trlx's 0.001 every 5 steps suits
            runs of tens of thousands of steps; ours are hundreds.
        beta: 1.0, the default inference temperature of the advantage, ``logits + beta * (Q - V)``
            (trlx's default; the paper sweeps beta). ``load_agent(path, beta=...)`` overrides it.
        top_k: 20, the agent picks only among the behaviour policy's top-k tokens at each step
            (trlx's ``gen_kwargs`` default ``top_k=20``; the paper's guard against over-trusting Q
            on tokens the data never took). ``None`` keeps the whole vocabulary.

    The remaining fields are ``transformers.TrainingArguments`` (batch size, learning rate,
    epochs, checkpointing, ``bf16``, ``report_to``...), with BC's defaults. ``learning_rate``
    suits fine-tuning a pretrained model; the from-scratch ``"tiny"`` model wants about 1e-3.
    """

    data: list[str] = field(default_factory=list, metadata={"help": "JSONL record files to train on."})
    model: str = field(default="tiny", metadata={"help": "'tiny', 'smollm2' or a Hugging Face path/id."})
    env_id: str | None = field(default=None, metadata={"help": "Refuse records of other envs."})
    max_length: int = field(default=2048, metadata={"help": "Longest training sequence in tokens."})
    split: str | None = field(default="train", metadata={"help": "Persona split to train on (None: all)."})
    dtype: str | None = field(default=None, metadata={"help": "Weights dtype (default float32)."})
    eval_every: int = field(default=0, metadata={"help": "Play eval episodes every N steps (0: never)."})
    eval_episodes: int = field(default=16, metadata={"help": "Episodes per in-training evaluation."})
    gamma: float = field(default=0.99, metadata={"help": "discount per agent turn"})
    token_gamma: float = field(default=1.0, metadata={"help": "discount between tokens of one utterance"})
    bootstrap: str = field(
        default="token", metadata={"help": "targets from V at the next token ('token') or next turn ('turn')"}
    )
    detach_heads: bool = field(
        default=False, metadata={"help": "train the LM body on the imitation loss only, not the value losses"}
    )
    tau_expectile: float = field(default=0.7, metadata={"help": "expectile of the value loss"})
    cql_weight: float = field(default=0.1, metadata={"help": "weight of the conservative (CQL) term"})
    cql_top_k: int | None = field(
        default=None, metadata={"help": "CQL over the policy's top-k tokens (None: whole vocabulary)"}
    )
    nll_weight: float = field(default=1.0, metadata={"help": "weight of the behaviour-cloning loss"})
    two_qs: bool = field(default=True, metadata={"help": "two Q heads, min of their targets"})
    q_head: str = field(default="embedding", metadata={"help": "Q head form: 'embedding' or 'mlp'"})
    target_update_rate: float = field(default=0.005, metadata={"help": "Polyak rate of the target Q heads"})
    target_update_every: int = field(default=1, metadata={"help": "optimizer steps between target updates"})
    beta: float = field(default=1.0, metadata={"help": "inference: weight of the advantage Q - V"})
    top_k: int | None = field(default=20, metadata={"help": "inference: keep the policy's top-k tokens"})

    # TrainingArguments with other defaults (as BCConfig's)
    output_dir: str | None = field(default=None, metadata={"help": "Where the agent and checkpoints go."})
    learning_rate: float = 1e-4
    per_device_train_batch_size: int = 8
    num_train_epochs: float = 3.0
    warmup_steps: float = 0.05
    logging_steps: float = 10
    save_steps: float = 200
    save_total_limit: int | None = 2
    report_to: str | list[str] | None = "tensorboard"
    remove_unused_columns: bool = False

    def __post_init__(self) -> None:
        if self.output_dir is None:
            raise ValueError("output_dir is required: the directory the trained agent is saved to")
        super().__post_init__()
        if not 0.0 < self.tau_expectile < 1.0:
            raise ValueError(f"tau_expectile must be in (0, 1), got {self.tau_expectile}")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 <= self.token_gamma <= 1.0:
            raise ValueError(f"gamma and token_gamma must be in [0, 1], got {self.gamma}, {self.token_gamma}")
        if not 0.0 < self.target_update_rate <= 1.0 or self.target_update_every < 1:
            raise ValueError("target_update_rate must be in (0, 1] and target_update_every >= 1")
        if self.q_head not in QHEAD_KINDS:
            raise ValueError(f"q_head must be one of {QHEAD_KINDS}, got {self.q_head!r}")
        if self.bootstrap not in BOOTSTRAPS:
            raise ValueError(f"bootstrap must be one of {BOOTSTRAPS}, got {self.bootstrap!r}")
        if self.cql_top_k is not None and self.cql_top_k < 1:
            raise ValueError(f"cql_top_k must be a positive number of tokens or None, got {self.cql_top_k}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {self.top_k}")


# ----------------------------------------------------------------------------------- the losses


def expectile_loss(diff: Tensor, tau: float) -> Tensor:
    """Elementwise asymmetric squared loss ``|tau - 1(diff < 0)| * diff**2`` with ``diff = target - pred``.

    With ``tau > 0.5`` under-estimates weigh more than over-estimates, so the minimiser is an upper
    expectile of the targets: V tracks the value of the better actions seen in the data.
    """
    weight = torch.where(diff < 0, 1.0 - tau, tau)
    return weight * diff.pow(2)


@dataclass
class Actions:
    """The agent tokens (actions) of a padded batch, flattened in row-major order.

    The state of the action at token ``pos`` is the prefix ending at ``pos - 1``, so its heads are
    read from the hidden state at ``pos - 1``. ``next`` is the flat index of the next action of
    the same row (``-1`` for the row's last one); ``turn_end`` marks the last token of each turn.
    """

    row: Tensor
    pos: Tensor
    next: Tensor
    turn_end: Tensor

    @property
    def state_pos(self) -> Tensor:
        return self.pos - 1

    def __len__(self) -> int:
        return int(self.row.numel())


def find_actions(agent_mask: Tensor) -> Actions:
    """Index the actions of a batch from its ``agent_mask`` (``(B, T)``, 1 on agent tokens).

    A token at position 0 has no prefix to act from and is never an action. A turn ends at an
    agent token whose successor is not an agent token (or that ends the row).
    """
    mask = agent_mask.bool().clone()
    mask[:, 0] = False
    n_rows, n_pos = mask.shape
    row, pos = mask.nonzero(as_tuple=True)
    flat = torch.full((n_rows, n_pos), -1, dtype=torch.long, device=mask.device)
    flat[row, pos] = torch.arange(row.numel(), device=mask.device)
    # the next action of each action: the row's next entry in row-major order, if it is the same row
    same_row = torch.zeros_like(row, dtype=torch.bool)
    same_row[:-1] = row[1:] == row[:-1]
    nxt = torch.where(same_row, torch.arange(row.numel(), device=mask.device) + 1, -1)
    followed = torch.zeros_like(mask)
    followed[:, :-1] = mask[:, 1:]
    turn_end = ~followed[row, pos]
    return Actions(row=row, pos=pos, next=nxt, turn_end=turn_end)


def bellman_targets(
    rewards: Tensor,
    dones: Tensor,
    values: Tensor,
    actions: Actions,
    *,
    gamma: float,
    token_gamma: float = 1.0,
    bootstrap: str = "token",
) -> tuple[Tensor, Tensor]:
    """Targets ``r + discount * (1 - done) * V(s_next)`` for each action, and which are usable.

    ``rewards`` and ``dones`` are per-action (flat, as ``actions``); ``values`` is V at each
    action's state (flat). The discount is ``gamma`` across a turn end (the human replies in
    between) and ``token_gamma`` between tokens of one utterance. An action with no next action
    that is not ``done`` (the dialogue was cut before its end) has no target: ``valid`` is False.

    ``bootstrap="turn"`` gives every token of an utterance the target of the utterance's last
    token, discounted by ``token_gamma`` per token in between: an n-step target through the rest
    of the utterance (rewards sit on turn ends only, so none is skipped), which bootstraps from V
    where the agent's next turn starts instead of from the next token.
    """
    if bootstrap not in BOOTSTRAPS:
        raise ValueError(f"bootstrap must be one of {BOOTSTRAPS}, got {bootstrap!r}")
    has_next = actions.next >= 0
    v_next = torch.where(has_next, values[actions.next.clamp(min=0)], torch.zeros_like(values))
    discount = torch.where(
        actions.turn_end, torch.full_like(values, gamma), torch.full_like(values, token_gamma)
    )
    done = dones.to(values.dtype)
    targets = rewards.to(values.dtype) + discount * (1.0 - done) * v_next
    valid = has_next | dones.bool()
    if bootstrap == "turn":  # each action takes the target of its turn's last token
        index = torch.arange(len(actions), device=values.device)
        ends = index[actions.turn_end]  # a row's last action always ends a turn
        end = ends[torch.searchsorted(ends, index)]
        targets = token_gamma ** (end - index).to(values.dtype) * targets[end]
        valid = valid[end]
    return targets, valid


BOOTSTRAPS = ("token", "turn")


def cql_loss(q: Tensor, actions: Tensor) -> Tensor:
    """The conservative term: per action, ``logsumexp_a' Q(s, a') - Q(s, a)`` (cross-entropy of Q).

    It pushes Q down on tokens the data never took at ``s`` and up on the one it did, which
    keeps the learnt Q from overrating out-of-distribution tokens.
    """
    return F.cross_entropy(q.float(), actions, reduction="none")


def cql_support(logits: Tensor, actions: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Candidate tokens per state for the restricted conservative term: the taken token first,
    then the behaviour policy's top ``k`` (``(N, k + 1)``), and a mask of the candidates to leave
    out (a top-k token that is the taken one, so it is not counted twice)."""
    top = logits.detach().topk(min(k, logits.shape[-1]), dim=-1).indices
    cand = torch.cat([actions[:, None], top], dim=1)
    drop = torch.zeros_like(cand, dtype=torch.bool)
    drop[:, 1:] = top == actions[:, None]
    return cand, drop


def cql_support_loss(q_cand: Tensor, drop: Tensor) -> Tensor:
    """:func:`cql_loss` over candidate tokens only: ``logsumexp(Q(s, cand)) - Q(s, a)`` with the
    taken token ``a`` in column 0 and ``drop``ped candidates left out."""
    q = q_cand.float().masked_fill(drop, float("-inf"))
    return torch.logsumexp(q, dim=-1) - q[:, 0]


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over ``mask`` (0 when the mask is empty, keeping the graph)."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, rate: float) -> None:
    """``target <- rate * online + (1 - rate) * target``, parameter by parameter."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.lerp_(o.to(t.dtype), rate)


# ----------------------------------------------------------------------------------- the heads


def _mlp(width: int, out: int) -> nn.Sequential:
    """hidden -> 2 * hidden -> ReLU -> out, the heads of the paper's reference code."""
    return nn.Sequential(nn.Linear(width, 2 * width), nn.ReLU(), nn.Linear(2 * width, out))


class QHead(nn.Module):
    """``Q(s, .)`` over the vocabulary from a hidden state, in one of two forms.

    * ``"mlp"``: the paper's head, a two-layer MLP whose last layer has one row per token
      (``2 * hidden * vocab`` weights: 19M for the tiny model, 57M for SmolLM2, per head).
    * ``"embedding"``: a two-layer MLP back to the hidden width, scored against the LM's own
      output embedding (held fixed here) plus a per-token bias: the same family of functions
      the LM's logits come from, at ``4 * hidden**2 + vocab`` weights and half the compute.
    """

    def __init__(self, hidden_size: int, vocab_size: int, kind: str = "embedding") -> None:
        super().__init__()
        if kind not in QHEAD_KINDS:
            raise ValueError(f"q_head must be one of {QHEAD_KINDS}, got {kind!r}")
        self.kind = kind
        width = 2 * hidden_size
        self.body = nn.Sequential(nn.Linear(hidden_size, width), nn.ReLU())
        if kind == "mlp":
            self.out = nn.Linear(width, vocab_size)
        else:
            self.proj = nn.Linear(width, hidden_size)
            self.bias = nn.Parameter(torch.zeros(vocab_size))

    def _out(self, basis: Tensor | None) -> tuple[Tensor, Tensor]:
        if self.kind == "mlp":
            return self.out.weight, self.out.bias
        if basis is None:
            raise ValueError("an 'embedding' Q head needs the LM's output embedding (basis=)")
        return basis.detach(), self.bias

    def _features(self, hidden: Tensor) -> Tensor:
        z = self.body(hidden)
        return z if self.kind == "mlp" else self.proj(z)

    def forward(self, hidden: Tensor, basis: Tensor | None = None) -> Tensor:
        weight, bias = self._out(basis)
        return F.linear(self._features(hidden), weight.to(hidden.dtype), bias)

    def taken(self, hidden: Tensor, actions: Tensor, basis: Tensor | None = None) -> Tensor:
        """``Q(s, a)`` for one token per row (``actions`` ``(N,)``) or a few (``(N, K)``): one
        output row per token, not the whole vocabulary."""
        weight, bias = self._out(basis)
        feats = self._features(hidden)
        if actions.dim() == 2:
            feats = feats[:, None, :]
        return (feats * weight[actions].to(hidden.dtype)).sum(-1) + bias[actions]


QHEAD_KINDS = ("embedding", "mlp")


class ILQLHeads(nn.Module):
    """The value head, the Q heads and their target copies, on hidden states of one width.

    ``basis`` in the methods is the LM's output embedding ``(vocab, hidden)``, used by
    ``"embedding"`` Q heads (and ignored by ``"mlp"`` ones).
    """

    def __init__(
        self, hidden_size: int, vocab_size: int, *, two_qs: bool = True, q_head: str = "embedding"
    ) -> None:
        super().__init__()
        self.v_head = _mlp(hidden_size, 1)
        n_q = 2 if two_qs else 1
        self.q_heads = nn.ModuleList(QHead(hidden_size, vocab_size, q_head) for _ in range(n_q))
        self.target_q_heads = copy.deepcopy(self.q_heads).requires_grad_(False)

    @property
    def dtype(self) -> torch.dtype:
        return self.v_head[0].weight.dtype

    def values(self, hidden: Tensor) -> Tensor:
        return self.v_head(hidden).squeeze(-1)

    def qs(self, hidden: Tensor, basis: Tensor | None = None) -> list[Tensor]:
        return [head(hidden, basis) for head in self.q_heads]

    @torch.no_grad()
    def target_q(self, hidden: Tensor, basis: Tensor | None = None) -> Tensor:
        """The minimum over the target Q heads (the pessimistic estimate the paper uses)."""
        return torch.stack([head(hidden, basis) for head in self.target_q_heads]).amin(0)

    @torch.no_grad()
    def target_q_taken(self, hidden: Tensor, actions: Tensor, basis: Tensor | None = None) -> Tensor:
        """:meth:`target_q` at the taken tokens only."""
        return torch.stack([head.taken(hidden, actions, basis) for head in self.target_q_heads]).amin(0)

    @torch.no_grad()
    def sync_targets(self, rate: float) -> None:
        for target, online in zip(self.target_q_heads, self.q_heads, strict=True):
            polyak_update(target, online, rate)


# ------------------------------------------------------------------------------ the full loss


def ilql_loss(
    hidden: Tensor,
    input_ids: Tensor,
    agent_mask: Tensor,
    rewards: Tensor,
    dones: Tensor,
    *,
    heads: ILQLHeads,
    lm_head: nn.Module,
    gamma: float,
    token_gamma: float,
    tau: float,
    cql_weight: float,
    nll_weight: float,
    cql_top_k: int | None = None,
    bootstrap: str = "token",
    detach_heads: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The ILQL loss of a padded batch from the LM's last hidden states ``(B, T, H)``.

    ``rewards`` and ``dones`` are ``(B, T)`` with values on agent turn-end tokens; entries at
    other positions are never read. Returns the total and its parts (detached) for logging.
    """
    acts = find_actions(agent_mask)
    h = hidden[acts.row, acts.state_pos]
    taken = input_ids[acts.row, acts.pos]
    hq = (h.detach() if detach_heads else h).to(heads.dtype)  # detached: the LM learns from L_NLL only
    basis = lm_head.weight

    v = heads.values(hq)
    logits = lm_head(h)
    every = torch.ones_like(taken, dtype=torch.bool)
    if cql_top_k is None:  # the paper: Q over the whole vocabulary, for the conservative term
        qs = heads.qs(hq, basis)
        q_taken = [q.gather(-1, taken[:, None]).squeeze(-1) for q in qs]
        loss_cql = sum(masked_mean(cql_loss(q, taken), every) for q in qs)
    else:  # Q at the taken token and the policy's top-k only
        cand, drop = cql_support(logits, taken, cql_top_k)
        q_cands = [head.taken(hq, cand, basis) for head in heads.q_heads]
        q_taken = [q[:, 0] for q in q_cands]
        loss_cql = sum(masked_mean(cql_support_loss(q, drop), every) for q in q_cands)
    target_q = heads.target_q_taken(hq, taken, basis)
    targets, valid = bellman_targets(
        rewards[acts.row, acts.pos],
        dones[acts.row, acts.pos],
        v.detach(),
        acts,
        gamma=gamma,
        token_gamma=token_gamma,
        bootstrap=bootstrap,
    )
    loss_q = sum(masked_mean((qa - targets).pow(2), valid) for qa in q_taken)
    loss_v = masked_mean(expectile_loss(target_q - v, tau), every)
    loss_nll = masked_mean(F.cross_entropy(logits.float(), taken, reduction="none"), every)
    loss = loss_q + loss_v + cql_weight * loss_cql + nll_weight * loss_nll
    stats = {
        "loss_q": loss_q,
        "loss_v": loss_v,
        "loss_cql": loss_cql,
        "loss_nll": loss_nll,
        "v": masked_mean(v, every),
        "q": masked_mean(q_taken[0], every),
        "target_q": masked_mean(target_q, every),
        "bellman_target": masked_mean(targets, valid),
    }
    return loss, {k: s.detach().float() for k, s in stats.items()}


# ------------------------------------------------------------------------------ the model


class ILQLModel(nn.Module):
    """A causal LM (the behaviour policy) with the ILQL heads on its last hidden states.

    ``forward`` takes a collated batch (:class:`~dialogue_gym.algos.data.DialogueCollator`) and
    returns the loss and its parts; the heads see only the states of agent tokens.
    """

    def __init__(self, lm: PreTrainedModel, config: ILQLConfig, heads: ILQLHeads | None = None) -> None:
        super().__init__()
        self.lm = lm
        vocab = lm.get_output_embeddings().weight.shape[0]
        self.heads = heads or ILQLHeads(
            lm.config.hidden_size, vocab, two_qs=config.two_qs, q_head=config.q_head
        )
        self.loss_kwargs = {
            "gamma": config.gamma,
            "token_gamma": config.token_gamma,
            "tau": config.tau_expectile,
            "cql_weight": config.cql_weight,
            "cql_top_k": config.cql_top_k,
            "bootstrap": config.bootstrap,
            "detach_heads": config.detach_heads,
            "nll_weight": config.nll_weight,
        }

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        agent_mask: Tensor,
        rewards: Tensor,
        dones: Tensor,
        labels: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The loss of a collated batch (``labels`` comes with the batch and is not needed)."""
        from dialogue_gym.algos.models import hidden_states, split_lm

        hidden = hidden_states(self.lm, input_ids, attention_mask)
        loss, stats = ilql_loss(
            hidden,
            input_ids,
            agent_mask,
            rewards,
            dones,
            heads=self.heads,
            lm_head=split_lm(self.lm)[1],
            **self.loss_kwargs,
        )
        return {"loss": loss, **stats}

    def gradient_checkpointing_enable(self, **kwargs: Any) -> None:
        """Lets ``TrainingArguments(gradient_checkpointing=True)`` reach the LM."""
        self.lm.gradient_checkpointing_enable(**kwargs)


# ------------------------------------------------------------------------------ inference


class ILQLLogitsProcessor(LogitsProcessor):
    """Shifts the behaviour policy's next-token scores by ``beta * (Q(s, .) - V(s))``.

    ``Q`` is the minimum of the two target Q heads (the pessimistic estimate also used to train V).
    The processor reads the state ``s`` by a forward pre-hook on the LM head, which sees the hidden
    state of the last position at every generation step, so nothing is recomputed. Plug it into
    :class:`~dialogue_gym.agents.lm.LMAgent` (``logits_processor=``). With ``top_k`` the shifted
    policy keeps only the behaviour policy's ``top_k`` tokens at each step.
    """

    def __init__(
        self, lm: PreTrainedModel, heads: ILQLHeads, *, beta: float = 1.0, top_k: int | None = None
    ) -> None:
        self.heads, self.beta, self.top_k = heads, beta, top_k
        self._local = threading.local()  # one captured state per generating thread
        lm_head = lm.get_output_embeddings()
        self.basis = lm_head.weight
        # the hook holds the processor weakly and goes when it does, so agents built and dropped
        # during training (in-training evaluation) leave no hooks behind
        ref = weakref.ref(self)
        hook = lm_head.register_forward_pre_hook(lambda module, args: _capture(ref, args))
        self._finalizer = weakref.finalize(self, hook.remove)

    @torch.no_grad()
    def advantage(self, hidden: Tensor) -> Tensor:
        """``Q(s, .) - V(s)`` for last-layer hidden states ``(..., H)``."""
        h = hidden.to(self.heads.dtype)
        return self.heads.target_q(h, self.basis) - self.heads.values(h)[..., None]

    @torch.no_grad()
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        hidden = getattr(self._local, "hidden", None)
        if hidden is None or hidden.shape[0] != scores.shape[0]:
            raise RuntimeError(
                "ILQLLogitsProcessor saw no LM-head input for this step; is it on the same model?"
            )
        adv = self.advantage(hidden[:, -1])[:, : scores.shape[-1]].to(scores.dtype)
        shifted = scores + self.beta * adv
        if self.top_k is not None:
            kth = scores.topk(min(self.top_k, scores.shape[-1]), dim=-1).values[:, -1:]
            shifted = shifted.masked_fill(scores < kth, float("-inf"))
        return shifted

    def remove(self) -> None:
        """Detach the hook from the LM (the processor stops working)."""
        self._finalizer()


def _capture(ref: weakref.ref, args: tuple[Tensor, ...]) -> None:
    """Keep the LM head's input for the processor, at inference only (no autograd graph kept)."""
    processor = ref()
    if processor is not None and not torch.is_grad_enabled():
        processor._local.hidden = args[0]


# ------------------------------------------------------------------------------ the trainer


class TargetUpdateCallback(TrainerCallback):
    """Polyak-averages the target Q heads after every ``every``-th optimizer step."""

    def __init__(self, rate: float, every: int = 1) -> None:
        self.rate, self.every = rate, every

    def on_step_end(
        self, args: TrainingArguments, state: Any, control: Any, model: Any = None, **kw: Any
    ) -> None:
        if model is not None and state.global_step % self.every == 0:
            _unwrap(model).heads.sync_targets(self.rate)


def _unwrap(model: nn.Module) -> ILQLModel:
    while not isinstance(model, ILQLModel) and hasattr(model, "module"):
        model = model.module
    if not isinstance(model, ILQLModel):
        raise TypeError(f"expected an ILQLModel, got {type(model).__name__}")
    return model


class ILQLTrainer(Trainer):
    """``transformers.Trainer`` for :class:`ILQLModel`: the ILQL loss, logged parts, and checkpoints
    that keep the LM in ``save_pretrained`` form and the heads beside it (so resuming works).

    The Polyak update of the target heads is a :class:`TargetUpdateCallback`, added here.
    """

    def __init__(self, model: ILQLModel, args: ILQLConfig, **kwargs: Any) -> None:
        super().__init__(model=model, args=args, **kwargs)
        # the loss is a mean over each micro-batch's agent tokens: let Trainer average it over
        # gradient-accumulation steps
        self.model_accepts_loss_kwargs = False
        self.add_callback(TargetUpdateCallback(args.target_update_rate, args.target_update_every))
        self._metrics: dict[str, list[float]] = defaultdict(list)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        outputs = model(**inputs)
        for key, value in outputs.items():
            if key != "loss":
                self._metrics[key].append(float(value))
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the mean of each loss part since the last log to the training logs."""
        if "loss" in logs and self._metrics:
            logs.update({k: sum(v) / len(v) for k, v in self._metrics.items()})
            self._metrics.clear()
        super().log(logs, start_time)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        from safetensors.torch import save_file

        out = Path(output_dir or self.args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        model = _unwrap(self.accelerator.unwrap_model(self.model))
        model.lm.save_pretrained(out)
        heads = {k: v.detach().contiguous().cpu() for k, v in model.heads.state_dict().items()}
        save_file(heads, str(out / HEADS_FILE))
        if self.processing_class is not None:
            self.processing_class.save_pretrained(out)
        torch.save(self.args, out / "training_args.bin")

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        from safetensors.torch import load_file

        ckpt = Path(resume_from_checkpoint)
        if not (ckpt / HEADS_FILE).is_file():
            raise ValueError(f"{ckpt} is not an ILQL Trainer checkpoint: no {HEADS_FILE}")
        target = _unwrap(self.accelerator.unwrap_model(model or self.model))
        saved = type(target.lm).from_pretrained(ckpt, dtype=next(target.lm.parameters()).dtype)
        target.lm.load_state_dict(saved.state_dict())
        target.heads.load_state_dict(load_file(str(ckpt / HEADS_FILE)))


# ------------------------------------------------------------------------------ train and load


def inference_state(heads: ILQLHeads | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The head tensors an agent needs, from the heads or a full state dict of them (a Trainer
    checkpoint's heads file): V and the target Q heads (the online Q heads only train)."""
    state = heads.state_dict() if isinstance(heads, nn.Module) else heads
    return {k: v for k, v in state.items() if not k.startswith("q_heads.")}


def heads_from_state(state: dict[str, Tensor]) -> ILQLHeads:
    """Rebuild :class:`ILQLHeads` from :func:`inference_state` (online Q heads = their targets)."""
    kind = "mlp" if "target_q_heads.0.out.weight" in state else "embedding"
    vocab_key = "target_q_heads.0.out.weight" if kind == "mlp" else "target_q_heads.0.bias"
    if "v_head.0.weight" not in state or vocab_key not in state:
        raise ValueError(f"not ILQL head tensors: found {sorted(state)[:6]}...")
    hidden, vocab = state["v_head.0.weight"].shape[1], state[vocab_key].shape[0]
    two_qs = any(k.startswith("target_q_heads.1.") for k in state)
    heads = ILQLHeads(hidden, vocab, two_qs=two_qs, q_head=kind)
    heads.load_state_dict(
        {**state, **{k.replace("target_", "", 1): v for k, v in state.items() if k.startswith("target_")}}
    )
    return heads


def ilql_agent(
    lm: PreTrainedModel,
    tokenizer: Any,
    heads: ILQLHeads,
    *,
    beta: float = 1.0,
    top_k: int | None = None,
    name: str = "ilql",
    **lm_kwargs: Any,
) -> Any:
    """An :class:`~dialogue_gym.agents.lm.LMAgent` that decodes from ``logits + beta * (Q - V)``."""
    from dialogue_gym.agents.lm import LMAgent

    heads.to(next(lm.parameters()).device)
    processor = ILQLLogitsProcessor(lm, heads, beta=beta, top_k=top_k)
    return LMAgent(lm, tokenizer, logits_processor=processor, name=name, **lm_kwargs)


def build_trainer(config: ILQLConfig) -> tuple[ILQLTrainer, str]:
    """The trainer for ``config`` (records encoded, base model loaded, heads fresh) and the env id."""
    from dialogue_gym.algos.bc import AgentMetaCallback, EnvEvalCallback
    from dialogue_gym.algos.data import DialogueCollator, DialogueDataset, load_training_records
    from dialogue_gym.algos.models import load_base_model

    records = load_training_records(config.data, config.env_id, config.split)
    env_id = config.env_id or records[0].env_id
    lm, tokenizer = load_base_model(config.model, dtype=config.dtype, seed=config.seed)
    torch.manual_seed(config.seed)
    model = ILQLModel(lm, config)
    trainer = ILQLTrainer(
        model,
        config,
        train_dataset=DialogueDataset(records, tokenizer, config.max_length),
        data_collator=DialogueCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
    )
    trainer.add_callback(AgentMetaCallback("ilql", config, env_id, extra_state=HEADS_FILE))
    if config.eval_every:
        trainer.add_callback(
            EnvEvalCallback(
                trainer,
                env_id,
                lambda m: ilql_agent(
                    m.lm,
                    tokenizer,
                    m.heads,
                    beta=config.beta,
                    top_k=config.top_k,
                    max_length=config.max_length,
                ),
                config.eval_every,
                config.eval_episodes,
            )
        )
    return trainer, env_id


def train(config: ILQLConfig) -> Path:
    """Train ILQL as ``config`` says; returns the agent directory (``config.output_dir``).

    Trainer checkpoints (``checkpoint-N``, with the heads) go to the same directory;
    ``resume_from_checkpoint`` (a path, ``"last"`` or ``"auto"``) continues an interrupted run.
    """
    from dialogue_gym.algos.bc import resume_argument
    from dialogue_gym.algos.checkpoint import save_checkpoint

    trainer, env_id = build_trainer(config)
    trainer.train(resume_from_checkpoint=resume_argument(config))
    model = _unwrap(trainer.model)
    return save_checkpoint(
        config.output_dir,
        algo="ilql",
        model=model.lm,
        tokenizer=trainer.processing_class,
        config=config,
        env_id=env_id,
        extra_state=inference_state(model.heads),
    )


def load_agent(
    path: str | Path,
    *,
    beta: float | None = None,
    top_k: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    **kwargs: Any,
) -> Any:
    """The ILQL agent saved in ``path`` (an :class:`~dialogue_gym.agents.lm.LMAgent`).

    ``beta`` and ``top_k`` default to the training config's; ``kwargs`` go to ``LMAgent``
    (``temperature``, ``max_new_tokens``, ``batch_size``...).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dialogue_gym.algos.checkpoint import EXTRA_FILE, load_extra_state, read_meta
    from dialogue_gym.algos.models import resolve_dtype

    meta = read_meta(path, expect_algo="ilql")
    heads_file = meta.get("extra_state") or EXTRA_FILE  # a Trainer checkpoint names its HEADS_FILE
    state = inference_state(load_extra_state(path, heads_file))  # that file has the online Q heads too
    if not state:
        raise ValueError(f"{path}: an ILQL checkpoint without its heads (no {heads_file})")
    cfg = meta.get("config") or {}
    tokenizer = AutoTokenizer.from_pretrained(path)
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    kwargs.setdefault("max_length", cfg.get("max_length"))
    kwargs.setdefault("name", f"ilql:{Path(path).name}")
    return ilql_agent(
        lm.to(device),
        tokenizer,
        heads_from_state(state),
        beta=cfg.get("beta", 1.0) if beta is None else beta,
        top_k=cfg.get("top_k") if top_k is None else top_k,
        **kwargs,
    )
