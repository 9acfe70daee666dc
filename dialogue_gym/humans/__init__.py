"""Simulator backends: who plays the human. One argument picks one::

    gym.make("DialogueDonate-v0")                                    # scripted (default)
    gym.make("DialogueDonate-v0", human="litellm:openai/gpt-4o-mini")
    gym.make("DialogueDonate-v0", human="litellm:hosted_vllm/Qwen2.5-7B-Instruct",
             human_kwargs={"api_base": "http://my-vllm:8000/v1"})
    gym.make("DialogueDonate-v0", human="hf:/path/to/model")         # local transformers model
    gym.make("DialogueDonate-v0", human="local")                     # bundled SmolLM2-135M-Instruct

or pass any :class:`~dialogue_gym.SimulatedHuman` instance.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from dialogue_gym.core.human import SimulatedHuman
from dialogue_gym.humans.backends import ChatBackend, HFBackend, LiteLLMBackend
from dialogue_gym.humans.llm import LLMHuman

if TYPE_CHECKING:
    from dialogue_gym.core.env import DialogueEnv

__all__ = ["ChatBackend", "HFBackend", "LLMHuman", "LiteLLMBackend", "make_backend", "make_human"]

_SHARED: dict[tuple, HFBackend] = {}
_LOCK = threading.Lock()


def make_backend(spec: str, **kwargs: Any) -> ChatBackend:
    """A chat backend from ``"litellm:<model>"``, ``"hf:<path or id>"`` or ``"local"``.

    Local models are shared within a process (one copy of the weights, one batching thread),
    so many envs stepping in threads get batched generation.
    """
    kind, _, name = spec.partition(":")
    if kind == "litellm" and name:
        return LiteLLMBackend(name, **kwargs)
    if (kind == "hf" and name) or spec == "local":
        key = (name or "local", tuple(sorted(kwargs.items())))
        with _LOCK:
            if key not in _SHARED:
                _SHARED[key] = HFBackend(name or "local", **kwargs)
            return _SHARED[key]
    raise ValueError(
        f"unknown human backend {spec!r}: use 'scripted', 'litellm:<model>', 'hf:<path or id>' or 'local'"
    )


def make_human(spec: str | ChatBackend, env: DialogueEnv, **kwargs: Any) -> SimulatedHuman:
    """The simulated human for ``env`` named by ``spec`` (see the module docstring)."""
    if isinstance(spec, ChatBackend):
        return LLMHuman(spec, env, **kwargs)
    if spec == "scripted":
        return env.make_scripted_human()
    human_opts = {k: kwargs.pop(k) for k in ("max_reply_tokens", "retries") if k in kwargs}
    return LLMHuman(make_backend(spec, **kwargs), env, **human_opts)
