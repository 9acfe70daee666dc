"""A causal language model as an agent: what trained checkpoints (BC, filtered BC, ILQL) run as.

The prompt is the transcript rendered with the tokenizer's chat template plus the generation
header, tokenized by :func:`dialogue_gym.algos.data.encode_prompt`, the same code that encodes
training data, so the agent sees at play the token sequences it was trained on. Generation stops
at the template's end-of-turn token. ``act_batch`` left-pads the prompts and generates for all
conversations in one ``generate`` call; :func:`evaluate_batched` plays many episodes in lockstep
to use it.

An optional ``logits_processor`` reshapes the next-token scores at every step (ILQL adds
``beta * (Q - V)`` this way).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import torch
from transformers import LogitsProcessor, LogitsProcessorList, RepetitionPenaltyLogitsProcessor

from dialogue_gym.agents.base import Agent, AgentReply, Messages
from dialogue_gym.evaluation import EpisodeResult


class LMAgent(Agent):
    """Generates the next utterance with a causal LM.

    Args:
        model, tokenizer: a transformers causal LM and its tokenizer (with a chat template).
        max_new_tokens: the longest utterance, in tokens.
        min_new_tokens: the end-of-turn token is barred until this many tokens are out: an empty
            utterance is never a valid action (ILQL's Q heads, for one, can overrate ending a turn
            before it starts, a move the data never shows).
        temperature: 0 decodes greedily (the default, reproducible); above 0 samples.
        top_p: nucleus sampling mass when sampling.
        repetition_penalty: above 1, discourages tokens already in the reply being written
            (transformers' ``RepetitionPenaltyLogitsProcessor``; 1.0 = none). The prompt is not
            penalised: it holds the role text and catalogue the agent must quote from.
        logits_processor: reshapes the scores at each step (e.g. ILQL's advantage shift).
        max_length: longest prompt in tokens; longer transcripts are shortened by the training
            truncation rule (oldest exchanges first). Defaults to the model's context size.
        batch_size: most conversations per ``generate`` call in ``act_batch``.
        fallback: said instead of an empty generation (counted in ``self.stats["empty"]``).
        name: the agent's name in results.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_new_tokens: int = 64,
        min_new_tokens: int = 1,
        temperature: float = 0.0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        logits_processor: LogitsProcessor | None = None,
        max_length: int | None = None,
        batch_size: int = 32,
        fallback: str = "Could you tell me a bit more about that?",
        name: str = "lm",
    ) -> None:
        from dialogue_gym.algos.data import end_of_turn_ids

        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.min_new_tokens = min_new_tokens
        self.repetition_penalty = repetition_penalty
        self.logits_processor = logits_processor
        context = getattr(model.config, "max_position_embeddings", None) or 2048
        self.max_length = min(max_length or context, context) - max_new_tokens
        self.batch_size, self.fallback, self.name = batch_size, fallback, name
        self.stop_ids = end_of_turn_ids(tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_ids[0]
        self.stats = {"calls": 0, "empty": 0, "prompt_tokens": 0, "generated_tokens": 0}

    def act(self, messages: Messages, persona: Mapping[str, Any] | None = None) -> str:
        return self.act_batch([messages])[0]

    def act_batch(
        self, batch: Sequence[Messages], personas: Sequence[Mapping[str, Any] | None] | None = None
    ) -> list[str]:
        """Utterances for many conversations, ``batch_size`` per left-padded ``generate`` call."""
        return [reply.text for reply in self.respond_batch(batch, personas)]

    def respond_batch(
        self, batch: Sequence[Messages], personas: Sequence[Mapping[str, Any] | None] | None = None
    ) -> list[AgentReply]:
        """:meth:`act_batch` with each utterance's prompt and generated token counts (what the
        leaderboard records as tokens; the cost of a local model is 0)."""
        out: list[AgentReply] = []
        for start in range(0, len(batch), self.batch_size):
            out += self._generate(batch[start : start + self.batch_size])
        return out

    def prompt_ids(self, messages: Messages) -> list[int]:
        """The token ids the model is prompted with for ``messages``."""
        from dialogue_gym.algos.data import encode_prompt

        return encode_prompt(messages, self.tokenizer, self.max_length)

    @torch.no_grad()
    def _generate(self, batch: Sequence[Messages]) -> list[AgentReply]:
        prompts = [self.prompt_ids(m) for m in batch]
        width = max(len(p) for p in prompts)
        device = self.model.device
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, p in enumerate(prompts):  # left padding: every prompt ends where generation starts
            input_ids[row, width - len(p) :] = torch.tensor(p)
            attention_mask[row, width - len(p) :] = 1
        sample = self.temperature > 0
        processors = LogitsProcessorList()
        if self.repetition_penalty != 1.0:  # before any score reshaping, as generate() orders it
            penalty = RepetitionPenaltyLogitsProcessor(self.repetition_penalty, prompt_ignore_length=width)
            processors.append(penalty)
        if self.logits_processor:
            processors.append(self.logits_processor)
        generated = self.model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            max_new_tokens=self.max_new_tokens,
            min_new_tokens=self.min_new_tokens,
            do_sample=sample,
            temperature=self.temperature if sample else None,
            top_p=self.top_p if sample else None,
            top_k=None,
            logits_processor=processors,
            eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id,
        )[:, width:]
        replies = []
        for prompt, row in zip(prompts, generated.tolist(), strict=True):
            n = next((i for i, t in enumerate(row) if t in self.stop_ids), len(row))
            self.stats["generated_tokens"] += n
            text = self.tokenizer.decode(row[:n], skip_special_tokens=True).strip()
            if not text:
                self.stats["empty"] += 1
            replies.append(AgentReply(text or self.fallback, len(prompt), n, fallback=not text))
        self.stats["calls"] += len(prompts)
        self.stats["prompt_tokens"] += sum(len(p) for p in prompts)
        return replies


def evaluate_batched(
    agent: Agent,
    env_id: str,
    episodes: int = 100,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = False,
    **env_kwargs: Any,
) -> list[EpisodeResult]:
    """Play seeded episodes like :func:`dialogue_gym.evaluation.evaluate` (seeds ``seed ..
    seed+episodes-1``, same results for a deterministic agent), ``batch_size`` envs in lockstep so
    that each turn is one ``agent.act_batch`` call over all running conversations."""
    from tqdm.auto import tqdm

    results: list[EpisodeResult] = []
    envs = [gym.make(env_id, **env_kwargs) for _ in range(min(batch_size, episodes))]
    try:
        with tqdm(total=episodes, desc=f"eval {env_id}", unit="ep", disable=not progress) as bar:
            for first in range(0, episodes, len(envs)):
                seeds = list(range(seed + first, seed + min(first + len(envs), episodes)))
                results += _play_lockstep(agent, envs[: len(seeds)], seeds)
                bar.update(len(seeds))
    finally:
        for env in envs:
            env.close()
    return results


def _play_lockstep(agent: Agent, envs: list[gym.Env], seeds: list[int]) -> list[EpisodeResult]:
    transcripts, totals, finals = [], [0.0] * len(envs), [None] * len(envs)
    for env, s in zip(envs, seeds, strict=True):
        _, info = env.reset(seed=s)
        transcripts.append(info["transcript"])
    personas = [env.unwrapped.persona if agent.privileged else None for env in envs]
    running = list(range(len(envs)))
    while running:
        actions = agent.act_batch([transcripts[i] for i in running], [personas[i] for i in running])
        still = []
        for i, action in zip(running, actions, strict=True):
            _, reward, terminated, truncated, info = envs[i].step(action)
            totals[i] += reward
            transcripts[i] = info["transcript"]
            if terminated or truncated:
                finals[i] = info
            else:
                still.append(i)
        running = still
    return [
        EpisodeResult(
            seed=s,
            ret=totals[i],
            turns=finals[i]["turn"],
            outcome=finals[i].get("outcome", {}),
            success=finals[i].get("success"),
            end_reason=finals[i].get("end_reason"),
        )
        for i, s in enumerate(seeds)
    ]
