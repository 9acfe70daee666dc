"""A prompted LLM agent: a chat model given the task's role instructions plays the agent side.

The env's transcript is already a chat (``system`` = role instructions, ``user`` = the human,
``assistant`` = the agent), so the model sees it as is, with the system message extended by
optional few-shot example dialogues (the best-return records of the same env from a dataset)
and a short instruction on the reply format. Any backend of :func:`dialogue_gym.humans.make_backend`
works: ``"litellm:<model>"`` (hosted APIs, vLLM, a llama.cpp server), ``"hf:<path>"`` or the bundled
SmolLM2 (``"local"``)::

    agent = PromptedAgent("litellm:openai/gpt-4o-mini", temperature=0.0)
    agent = PromptedAgent("local", few_shot="data/teach.jsonl", env_id="DialogueTeach-v0")

Model text is cleaned before it reaches the env (:func:`clean_utterance`): role prefixes such as
"Agent:" go, anything after a simulated human turn is cut, the text is clipped to the env's action
limit, and an empty answer becomes a fixed fallback line (counted in ``agent.stats``).
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dialogue_gym.agents.base import Agent, AgentReply, Messages
from dialogue_gym.humans.backends import ChatBackend, Completion

REPLY_FORMAT = (
    "Write only your own next message to the person: one to three short sentences in plain words, "
    "with no speaker label, and never write the person's reply."
)
FALLBACK = "Could you tell me a little more about that?"

# a speaker label the model may put in front of its own message
_OWN_PREFIX = re.compile(
    r"^\s*[*_\"'`]*\s*(?:agent|assistant|ai|bot|tutor|teacher|supporter|counsell?or|persuader|"
    r"travel agent|me)\s*[*_]*\s*:\s*[*_]*\s*",
    re.IGNORECASE,
)
# where the model starts writing another turn: a simulated human (or a second agent turn)
_NEXT_TURN = re.compile(
    r"(?:^|\n|(?<=[.!?\"')\]]) )\s*[*_]*(?:human|user|person|student|traveller|traveler|client|"
    r"persuadee|partner|seeker|customer|agent|assistant|tutor|teacher|supporter|persuader)\s*[*_]*\s*:",
    re.IGNORECASE,
)
_SPECIAL = re.compile(r"<\|[^|>]*\|?>|</?s>|\[/?INST\]")
_SENTENCE_END = re.compile(r"[.!?](?=\s)")


class PromptedAgentError(RuntimeError):
    """The model behind a :class:`PromptedAgent` could not be reached (after retries)."""


def clean_utterance(text: str, max_chars: int = 1000) -> str:
    """Model output as an utterance: no special tokens, role prefixes or simulated human turns,
    whitespace collapsed, at most ``max_chars`` characters (cut at a sentence end where possible).
    Returns ``""`` when nothing usable is left."""
    if not isinstance(text, str):
        return ""
    text = _SPECIAL.split(text.replace("\x00", ""), maxsplit=1)[0]
    for _ in range(3):  # "Agent: Assistant: hi" and similar stacks
        stripped = _OWN_PREFIX.sub("", text, count=1)
        if stripped == text:
            break
        text = stripped
    cut = _NEXT_TURN.search(text)
    if cut is not None:
        text = text[: cut.start()]
    text = " ".join(text.split()).strip().strip("\"'`").strip()
    if len(text) > max_chars:
        head = text[:max_chars]
        ends = [m.end() for m in _SENTENCE_END.finditer(head + " ")]
        text = head[: ends[-1]] if ends and ends[-1] >= max_chars // 2 else head.rsplit(" ", 1)[0] or head
    return text if any(ch.isalnum() for ch in text) else ""


def few_shot_block(
    records: Sequence[Any], n_shots: int, env_id: str | None = None, max_chars_per_message: int = 240
) -> str:
    """The ``n_shots`` highest-return dialogues of ``env_id`` among ``records``, shown compactly.

    Records of the held-out ``test`` split are never shown, so few-shot prompting cannot leak test
    personas into an evaluation on them. Ties in return are broken by record id (deterministic).
    """
    if n_shots <= 0:
        return ""
    envs = sorted({r.env_id for r in records})
    if env_id is None:
        if len(envs) > 1:
            raise ValueError(f"the few-shot records cover several envs ({', '.join(envs)}); pass env_id")
        env_id = envs[0] if envs else None
    pool = [r for r in records if r.env_id == env_id and r.split != "test"]
    if not pool:
        raise ValueError(
            f"no few-shot records for {env_id} outside the test split (the records cover {envs or 'nothing'})"
        )
    best = sorted(pool, key=lambda r: (-r.ret, r.id))[:n_shots]
    names = {"user": "Person", "assistant": "You"}
    parts = ["Examples of successful conversations in this task (with other people, so details differ):"]
    for i, rec in enumerate(best, 1):
        parts.append(f"--- example {i} (score {rec.ret:.2f}) ---")
        for m in rec.messages:
            if m["role"] in names:
                body = " ".join(m["content"].split())
                if len(body) > max_chars_per_message:
                    body = body[: max_chars_per_message - 1] + "…"
                parts.append(f"{names[m['role']]}: {body}")
    parts.append("--- end of examples ---")
    return "\n".join(parts)


class PromptedAgent(Agent):
    """A chat model playing the agent, prompted with the env's role instructions.

    Args:
        model: ``"litellm:<model>"``, ``"hf:<path>"``, ``"local"`` (the bundled SmolLM2), or a
            :class:`~dialogue_gym.humans.backends.ChatBackend` instance.
        system_prompt: replaces the role instructions; ``{role_instructions}`` in it is filled in
            with them (so it can wrap rather than replace).
        system_suffix: appended to the system message (default: a one-line reply-format rule).
        temperature, max_tokens: sampling settings (``max_tokens`` = new tokens per utterance).
        few_shot: a records JSONL path (or paths, or loaded records) to draw example dialogues from.
        n_shots: how many example dialogues to show.
        env_id: which env's records to use as examples (needed when the records cover several).
        max_chars: the env's action limit; longer answers are clipped to it.
        fallback: the line said when the model's answer is empty after cleaning.
        retries: extra attempts when a model call raises; after them :class:`PromptedAgentError`.
        max_workers: concurrent calls in ``act_batch`` for backends without batched generation.
        backend_kwargs: passed to the backend (``api_base``, ``api_key``, ``num_retries``,
            ``timeout``, ``repetition_penalty``, ``device``...).
        name: shown in tables.
    """

    def __init__(
        self,
        model: str | ChatBackend = "local",
        *,
        system_prompt: str | None = None,
        system_suffix: str | None = REPLY_FORMAT,
        temperature: float = 0.0,
        max_tokens: int = 60,
        few_shot: str | Path | Sequence[Any] | None = None,
        n_shots: int = 2,
        env_id: str | None = None,
        max_chars: int = 1000,
        fallback: str = FALLBACK,
        retries: int = 1,
        max_workers: int = 8,
        backend_kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
        if not isinstance(temperature, (int, float)) or temperature < 0:
            raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
        if not isinstance(max_chars, int) or max_chars < len(fallback):
            raise ValueError(f"max_chars must be an integer of at least {len(fallback)}, got {max_chars!r}")
        if not clean_utterance(fallback, max_chars):
            raise ValueError(f"the fallback line must survive cleaning, got {fallback!r}")
        if isinstance(model, ChatBackend):
            self.backend = model
        else:
            from dialogue_gym.humans import make_backend

            kwargs = {"temperature": float(temperature), "max_tokens": max_tokens, **(backend_kwargs or {})}
            self.backend = make_backend(model, **kwargs)
        self.model = model if isinstance(model, str) else self.backend.name
        self.name = name or f"prompted:{self.model}"
        self.system_prompt, self.system_suffix = system_prompt, system_suffix
        self.max_tokens, self.max_chars, self.fallback = max_tokens, max_chars, fallback
        self.retries, self.max_workers = retries, max_workers
        self.examples = ""
        if few_shot is not None:
            if isinstance(few_shot, (str, Path)) or (
                isinstance(few_shot, Sequence) and few_shot and isinstance(few_shot[0], (str, Path))
            ):
                from dialogue_gym.datagen.records import load_records

                few_shot = load_records(few_shot)  # type: ignore[arg-type]
            self.examples = few_shot_block(list(few_shot), n_shots, env_id)
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()

    # --- prompting ---------------------------------------------------------------------------
    def prompt(self, messages: Messages) -> list[dict[str, str]]:
        """The chat sent to the model for the conversation ``messages`` (the env's transcript)."""
        if not messages or messages[0].get("role") != "system":
            raise ValueError("messages must be an env transcript starting with the system message")
        role = messages[0]["content"]
        system = (
            role if self.system_prompt is None else self.system_prompt.replace("{role_instructions}", role)
        )
        system = "\n\n".join(part for part in (system, self.examples, self.system_suffix) if part)
        return [
            {"role": "system", "content": system},
            *({"role": m["role"], "content": m["content"]} for m in messages[1:]),
        ]

    def _finish(self, completion: Completion) -> AgentReply:
        text = clean_utterance(completion.text, self.max_chars)
        reply = AgentReply(
            text or self.fallback,
            completion.prompt_tokens,
            completion.completion_tokens,
            completion.cost,
            fallback=not text,
        )
        with self._lock:
            self.stats["calls"] += 1
            self.stats["fallbacks"] += reply.fallback
            self.stats["prompt_tokens"] += reply.prompt_tokens
            self.stats["completion_tokens"] += reply.completion_tokens
            self.stats["cost"] += reply.cost
        return reply

    def _with_retries(self, call: Any) -> Any:
        for attempt in range(self.retries + 1):
            try:
                return call()
            except Exception as exc:
                with self._lock:
                    self.stats["errors"] += 1
                if attempt == self.retries:
                    raise PromptedAgentError(
                        f"{self.name}: the model call failed after {self.retries + 1} attempt(s): "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                time.sleep(min(2.0, 0.25 * 2**attempt))
        raise AssertionError("unreachable")

    # --- Agent ---------------------------------------------------------------------------------
    def respond_batch(
        self, batch: Sequence[Messages], personas: Sequence[Mapping[str, Any] | None] | None = None
    ) -> list[AgentReply]:
        """Utterances with their token and cost accounting, one per conversation of ``batch``.

        Batched generation where the backend has it (local transformers models), else
        ``max_workers`` concurrent calls (API backends)."""
        prompts = [self.prompt(m) for m in batch]
        if not prompts:
            return []
        complete_batch = getattr(self.backend, "complete_batch", None)
        if complete_batch is not None and len(prompts) > 1:
            outs = self._with_retries(lambda: complete_batch(prompts, max_tokens=self.max_tokens))
        else:

            def one(p: list[dict[str, str]]) -> Completion:
                return self._with_retries(lambda: self.backend.complete(p, max_tokens=self.max_tokens))

            if len(prompts) == 1:
                outs = [one(prompts[0])]
            else:
                with ThreadPoolExecutor(min(self.max_workers, len(prompts))) as pool:
                    outs = list(pool.map(one, prompts))
        return [self._finish(c) for c in outs]

    def act(self, messages: Messages, persona: Mapping[str, Any] | None = None) -> str:
        return self.respond_batch([messages])[0].text

    def act_batch(
        self, batch: Sequence[Messages], personas: Sequence[Mapping[str, Any] | None] | None = None
    ) -> list[str]:
        return [r.text for r in self.respond_batch(batch, personas)]
