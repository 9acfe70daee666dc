"""Simulator backends: who plays the human. One argument picks one::

    gym.make("DialogueDonate-v0")                                    # scripted (default)
    gym.make("DialogueDonate-v0", human="litellm:openai/gpt-4o-mini")
    gym.make("DialogueDonate-v0", human="litellm:hosted_vllm/Qwen2.5-7B-Instruct",
             human_kwargs={"api_base": "http://my-vllm:8000/v1"})
    gym.make("DialogueDonate-v0", human="hf:/path/to/model")         # local transformers model
    gym.make("DialogueDonate-v0", human="local")                     # bundled SmolLM2-135M-Instruct
    gym.make("DialogueDonate-v0", human="llamacpp")                  # the same, served by llama.cpp

or pass any :class:`~dialogue_gym.SimulatedHuman` instance.
"""

from __future__ import annotations

import atexit
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialogue_gym.core.human import SimulatedHuman
from dialogue_gym.humans.backends import ChatBackend, HFBackend, LiteLLMBackend
from dialogue_gym.humans.llm import LLMHuman

if TYPE_CHECKING:
    from dialogue_gym.core.env import DialogueEnv

__all__ = ["ChatBackend", "HFBackend", "LLMHuman", "LiteLLMBackend", "make_backend", "make_human"]

_SHARED: dict[tuple, HFBackend] = {}
_SERVERS: dict[tuple, Any] = {}  # (gguf path, servers, threads, n_ctx) -> started LlamaServers
_LOCK = threading.Lock()
_SERVER_OPTS = {"servers": 1, "threads": 1, "n_ctx": 4096}


def _llamacpp_backend(path: str, **kwargs: Any) -> LiteLLMBackend:
    """A litellm backend on llama.cpp servers this process starts on first use (127.0.0.1) for
    the GGUF at ``path`` (the bundled SmolLM2 when empty); they stop when the process exits."""
    from dialogue_gym.humans.servers import LlamaServers

    opts = {k: kwargs.pop(k, v) for k, v in _SERVER_OPTS.items()}
    for k, v in opts.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"llamacpp backend: {k} must be a positive integer, got {v!r}")
    key = (path, opts["servers"], opts["threads"], opts["n_ctx"])
    with _LOCK:
        if key not in _SERVERS:
            servers = LlamaServers(
                opts["servers"], path or None, n_ctx=opts["n_ctx"], threads=opts["threads"]
            )
            _SERVERS[key] = servers.__enter__()
            atexit.register(servers.__exit__, None, None, None)
        api_bases = _SERVERS[key].api_bases
    kwargs.setdefault("api_key", "none")  # litellm's openai client wants one; the server ignores it
    return LiteLLMBackend("openai/" + (Path(path).stem if path else "smollm2"), api_base=api_bases, **kwargs)


def make_backend(spec: str, **kwargs: Any) -> ChatBackend:
    """A chat backend from ``"litellm:<model>"``, ``"hf:<path or id>"``, ``"local"`` or
    ``"llamacpp"`` / ``"llamacpp:<file.gguf>"``.

    Local models are shared within a process (one copy of the weights, one batching thread),
    so many envs stepping in threads get batched generation. ``llamacpp`` starts llama.cpp
    servers on 127.0.0.1 for the bundled SmolLM2 (or the given GGUF) once per process and talks
    to them through litellm; ``servers``, ``threads`` and ``n_ctx`` in ``kwargs`` size them (one
    server answers one request at a time). It needs the ``server`` extra.
    """
    kind, _, name = spec.partition(":")
    if kind == "litellm" and name:
        return LiteLLMBackend(name, **kwargs)
    if kind == "llamacpp":
        return _llamacpp_backend(name, **kwargs)
    if (kind == "hf" and name) or spec == "local":
        key = (name or "local", tuple(sorted(kwargs.items())))
        with _LOCK:
            if key not in _SHARED:
                _SHARED[key] = HFBackend(name or "local", **kwargs)
            return _SHARED[key]
    raise ValueError(
        f"unknown human backend {spec!r}: use 'scripted', 'litellm:<model>', 'hf:<path or id>', "
        "'local' or 'llamacpp'"
    )


def make_human(spec: str | ChatBackend, env: DialogueEnv, **kwargs: Any) -> SimulatedHuman:
    """The simulated human for ``env`` named by ``spec`` (see the module docstring)."""
    if isinstance(spec, ChatBackend):
        return LLMHuman(spec, env, **kwargs)
    if spec == "scripted":
        return env.make_scripted_human()
    human_opts = {k: kwargs.pop(k) for k in ("max_reply_tokens", "retries") if k in kwargs}
    return LLMHuman(make_backend(spec, **kwargs), env, **human_opts)
