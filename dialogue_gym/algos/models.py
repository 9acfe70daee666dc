"""Base models for training agents, and the one forward pass every trainer shares.

``load_base_model(name)`` gives a causal LM and its tokenizer from one string:

* ``"tiny"``: a small Llama initialised from scratch (seeded) with SmolLM2's tokenizer and chat
  template; it trains in minutes on two CPU cores, for tests and quick experiments;
* ``"smollm2"``: the bundled SmolLM2-135M-Instruct, dequantized from its GGUF once and cached as a
  plain transformers checkpoint (so it trains and saves like any other model);
* anything else: a Hugging Face causal LM id or local directory (an agent checkpoint works too).

SmolLM2's vocabulary has 49,152 tokens, so projecting every position onto it costs more than the
small transformer below it. :func:`agent_logits` runs the backbone once and applies the LM head
only at the positions whose next token is an agent token, the only ones a loss reads.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    set_seed,
)

TINY_CONFIG: dict[str, Any] = {
    "hidden_size": 192,
    "intermediate_size": 512,
    "num_hidden_layers": 3,
    "num_attention_heads": 6,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
}
"""The ``"tiny"`` model's shape: about 1.2M transformer weights on top of a tied 9.4M embedding."""


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16' or 'float16'")
    return value


def smollm2_tokenizer() -> PreTrainedTokenizerBase:
    """The bundled SmolLM2's tokenizer (with its ChatML chat template)."""
    from dialogue_gym.humans.backends import smollm2_path

    return AutoTokenizer.from_pretrained(smollm2_path())


def tiny_model(tokenizer: PreTrainedTokenizerBase, *, seed: int = 0, **overrides: Any) -> PreTrainedModel:
    """A freshly initialised small Llama over ``tokenizer``'s vocabulary (same ``seed``, same weights)."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **{**TINY_CONFIG, **overrides},
    )
    set_seed(seed)
    return AutoModelForCausalLM.from_config(config)


def load_base_model(
    name: str, *, dtype: str | torch.dtype | None = None, seed: int = 0
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model and tokenizer named by ``name`` (``"tiny"``, ``"smollm2"`` or a HF path or id).

    ``dtype`` defaults to float32 (mixed precision is the trainer's business: ``bf16=True``).
    The tokenizer always has a pad token (the end-of-sequence token if it had none).
    """
    torch_dtype = resolve_dtype(dtype)
    if name == "tiny":
        tokenizer = smollm2_tokenizer()
        _ensure_pad(tokenizer)
        model = tiny_model(tokenizer, seed=seed).to(torch_dtype)
        return model, tokenizer
    if name == "smollm2":
        from dialogue_gym.humans.backends import smollm2_path

        path = smollm2_path()
    else:
        path = name
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"cannot load base model {name!r}: use 'tiny', 'smollm2', a local model directory or a "
            f"Hugging Face id reachable from here ({exc.__class__.__name__}: {str(exc).splitlines()[0]})"
        ) from exc
    _ensure_pad(tokenizer)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if tokenizer.chat_template is None:
        raise ValueError(f"the tokenizer of {name!r} has no chat template; agents are trained as chat models")
    return model, tokenizer


def _ensure_pad(tokenizer: PreTrainedTokenizerBase) -> None:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


# --------------------------------------------------------------------------- the shared forward


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside distributed or compiled wrappers (which keep it as ``.module``)."""
    while hasattr(model, "module"):
        model = model.module
    return model


def split_lm(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The backbone (token ids to last hidden states) and the LM head of a causal LM."""
    model = unwrap(model)
    backbone = getattr(model, model.base_model_prefix, None)
    head = model.get_output_embeddings()
    if backbone is None or head is None or backbone is model:
        raise TypeError(f"{type(model).__name__} does not split into a backbone and an LM head")
    return backbone, head


def hidden_states(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Last-layer hidden states ``(batch, seq, hidden)``, with logits for one position only.

    It runs the model's own forward rather than its backbone so that wrappers around it (DDP
    under ``accelerate launch``) see the call; ``hidden_states[-1]`` is the final normalised
    state that the LM head reads.
    """
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        output_hidden_states=True,
        logits_to_keep=1,
        use_cache=False,
    )
    return out.hidden_states[-1]


def agent_positions(agent_mask: torch.Tensor) -> torch.Tensor:
    """Boolean ``(batch, seq)`` mask of the positions whose *next* token is an agent token."""
    pos = torch.zeros_like(agent_mask, dtype=torch.bool)
    pos[:, :-1] = agent_mask[:, 1:].bool()
    return pos


def agent_logits(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    agent_mask: torch.Tensor,
    hidden: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token logits at the positions that predict agent tokens, and those tokens.

    Returns ``(logits, targets)`` of shapes ``(n, vocab)`` and ``(n,)`` where ``n`` is the number
    of agent tokens after the first position, in row-major order. Pass ``hidden`` (from
    :func:`hidden_states`) to reuse a backbone pass, e.g. for value heads on the same states.
    """
    if hidden is None:
        hidden = hidden_states(model, input_ids, attention_mask)
    _, head = split_lm(model)
    pos = agent_positions(agent_mask)
    targets = input_ids[:, 1:][agent_mask[:, 1:].bool()]
    return head(hidden[pos]), targets
