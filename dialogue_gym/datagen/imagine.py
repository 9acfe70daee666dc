"""The imagination engine: many diverse, mostly suboptimal, human-like conversations with rewards.

Offline RL needs data that covers good and bad moves, with returns spread from poor to good and
the best dialogue rarely the best possible one. :func:`imagine` writes such a dataset (one
:class:`~dialogue_gym.datagen.records.Record` per conversation, JSONL) with one of two generators:

* ``generator="scripted"`` (default, fast): per episode, a behaviour strategy drawn from the
  task's mixture (``datagen.strategies``; with ``epsilon`` noise) plays the env against its
  human: the scripted persona model, or an LLM human (``human="local"``, ``"litellm:<model>"``,
  ``"hf:<path>"``). Rewards are the env's.
* ``generator="llm"``: the three steps of imagination with a language model. (a) *Reasoning*: a
  persona is sampled from the env and the LLM invents a concrete situation for it. (b)
  *Imagination*: the LLM writes a whole conversation between the agent (given the task's role
  instructions and a strategy described in words, poor to good) and that person. (c) *Critique*:
  rule checks (alternation, non-empty turns, length bounds, no role confusion, agent turns valid
  as env actions) and an LLM critique question; failures are sent back for repair, and what still
  fails is dropped and counted (drops are logged to ``<out>.drops.jsonl``). Each kept dialogue is
  then *scored by replay*: its agent turns are stepped through the env with the same persona and
  the task's scripted outcome model. The record keeps the LLM's words for both sides but the
  replay's step rewards and outcome: the LLM's person is a text source, the scripted model the
  judge, so LLM and scripted data share one reward scale. Where the scripted human ends the chat
  before the LLM's script does (the agent closed, the person left, the turn limit), the record
  stops there; where the script ends first, the outcome is scored at that point
  (``end_reason="imagined_end"``).

Episode ``i`` uses seed ``seed + i`` and gets id ``f"{env_id}/{generator}/{seed + i}"``; its
strategy is drawn by a generator derived from that seed (independent of the env's persona draw),
so the same arguments always give the same file. Runs append as they go and resume: ids already
in ``out`` (and LLM drops already logged) are skipped, so an interrupted run finishes where it
stopped and ends with the same file as a straight run.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from dialogue_gym.agents.base import Agent
from dialogue_gym.core.env import persona_id
from dialogue_gym.datagen.records import Record, RecordWriter, provenance, read_records, record_from_episode
from dialogue_gym.datagen.strategies import Mixture

GENERATORS = ("scripted", "llm")
IMAGINED_END = "imagined_end"
_STREAM = 0x1A9E  # mixes into episode seeds, so strategy draws never mirror the env's persona draws


def episode_rng(seed: int) -> np.random.Generator:
    """The generator that draws episode ``seed``'s strategy and its noise (not the env's stream)."""
    return np.random.default_rng([_STREAM, seed])


def record_id(env_id: str, generator: str, seed: int) -> str:
    return f"{env_id}/{generator}/{seed}"


def _check_env(env_id: str) -> None:
    if env_id not in gym.registry:
        dialogue = sorted(k for k in gym.registry if k.startswith("Dialogue"))
        raise ValueError(f"unknown env id {env_id!r}; registered dialogue envs: {', '.join(dialogue)}")


def _human_name(human: Any) -> str:
    return human if isinstance(human, str) else getattr(human, "name", type(human).__name__)


# --- playing one scripted episode ------------------------------------------------------------
def play(env: gym.Env, agent: Agent, seed: int) -> tuple[list[dict[str, str]], list[float], dict[str, Any]]:
    """One episode of ``agent`` (never shown the persona): its transcript, step rewards, final info."""
    _, info = env.reset(seed=seed)
    messages, rewards = info["transcript"], []
    while True:
        _, reward, terminated, truncated, info = env.step(agent.act(messages))
        rewards.append(reward)
        messages = info["transcript"]
        if terminated or truncated:
            return messages, rewards, info


# --- summaries -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Row:
    """The fields of a record that a summary reads."""

    ret: float
    turns: int
    success: bool | None
    split: str
    provenance: dict[str, Any]

    @classmethod
    def of(cls, r: Record) -> _Row:
        return cls(r.ret, r.turns, r.success, r.split, {"strategy": r.provenance.get("strategy")})


def summarise_records(records: Iterable[Record | _Row]) -> dict[str, Any]:
    """Count, return mean/std/min/max, mean turns, success rate, splits and per-strategy counts and means."""
    rets: list[float] = []
    turns: list[int] = []
    succ: list[bool] = []
    splits: Counter[str] = Counter()
    by_strategy: dict[str, list[float]] = {}
    for r in records:
        rets.append(r.ret)
        turns.append(r.turns)
        if r.success is not None:
            succ.append(bool(r.success))
        splits[r.split] += 1
        by_strategy.setdefault(str(r.provenance.get("strategy")), []).append(r.ret)
    arr = np.array(rets, dtype=float)
    nan = float("nan")
    return {
        "count": len(rets),
        "return_mean": float(arr.mean()) if rets else nan,
        "return_std": float(arr.std()) if rets else nan,
        "return_min": float(arr.min()) if rets else nan,
        "return_max": float(arr.max()) if rets else nan,
        "turns_mean": float(np.mean(turns)) if turns else nan,
        "success_rate": float(np.mean(succ)) if succ else nan,
        "splits": {k: splits.get(k, 0) for k in ("train", "dev", "test")},
        "strategies": {
            name: {"count": len(v), "mean": float(np.mean(v))} for name, v in sorted(by_strategy.items())
        },
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary of :func:`imagine` as readable text with a Markdown per-strategy table."""
    s = summary
    lines = [
        f"{s['env_id']}: {s['count']} dialogues in {s['path']} "
        f"({s['written']} new, {s['skipped']} already there"
        + (f", {s['dropped']} dropped" if s.get("generator") == "llm" else "")
        + f") in {s['seconds']:.1f} s ({s['rate']:.0f} new/s)",
    ]
    if s["count"]:
        lines += [
            f"return: mean {s['return_mean']:.3f}, std {s['return_std']:.3f}, "
            f"min {s['return_min']:.3f}, max {s['return_max']:.3f}; mean turns {s['turns_mean']:.2f}; "
            f"success {s['success_rate']:.1%}",
            "splits: " + ", ".join(f"{k} {v}" for k, v in s["splits"].items()),
            "",
            "| strategy | count | mean return |",
            "|---|---|---|",
            *(f"| {name} | {v['count']} | {v['mean']:.3f} |" for name, v in s["strategies"].items()),
        ]
    if s.get("drop_reasons"):
        lines.append("drops: " + ", ".join(f"{k} {v}" for k, v in sorted(s["drop_reasons"].items())))
    return "\n".join(lines)


# --- the engine ------------------------------------------------------------------------------
def imagine(
    env_id: str,
    n: int,
    out: str | Path,
    *,
    seed: int = 0,
    strategies: Sequence[str] | Mapping[str, float] | None = None,
    epsilon: float = 0.2,
    human: Any = "scripted",
    generator: str = "scripted",
    model: str | None = None,
    resume: bool = True,
    progress: bool = True,
    workers: int = 1,
    env_kwargs: Mapping[str, Any] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    batch_size: int = 8,
    repairs: int = 1,
) -> dict[str, Any]:
    """Write ``n`` conversations of ``env_id`` to ``out`` (seeds ``seed .. seed+n-1``); returns a summary.

    Args:
        strategies: strategy names (equal weights) or ``{name: weight}``; default: the task's mixture.
        epsilon: chance per agent turn of a random move instead of the strategy's (scripted generator).
        human: who answers in the scripted generator: ``"scripted"`` or an LLM backend spec.
        generator: ``"scripted"`` or ``"llm"`` (see the module docstring).
        model: the LLM backend for ``generator="llm"`` (``"local"``, ``"litellm:<model>"``, ``"hf:<path>"``).
        resume: skip ids already in ``out``; ``False`` starts the file afresh.
        workers: episodes played at once in threads (useful with LLM humans; scripted runs need 1).
        env_kwargs: extra ``gym.make`` arguments (``max_turns``, ``human_kwargs``...).
        model_kwargs, batch_size, repairs: LLM backend options, episodes per batch of LLM calls, and
            repair attempts per failing dialogue (``generator="llm"``).
    """
    _check_env(env_id)
    if generator not in GENERATORS:
        raise ValueError(f"generator must be one of {GENERATORS}, got {generator!r}")
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    if generator == "llm":
        if human != "scripted":
            raise ValueError(
                "generator='llm' writes both sides with the LLM and scores with the scripted model; "
                "human= must stay 'scripted'"
            )
        model = model or "local"
    mixture = Mixture(env_id, strategies)
    out = Path(out)
    seeds = range(seed, seed + n)
    env_kwargs = dict(env_kwargs or {})
    human_name = "imagined" if generator == "llm" else _human_name(human)
    expect = {"generator": generator, "human": human_name, "model": model if generator == "llm" else None}
    if generator == "scripted":
        expect["epsilon"] = float(epsilon)
    if resume:
        _check_resumable(out, env_id, expect, mixture)
    started = time.perf_counter()
    with RecordWriter(out, overwrite=not resume) as writer:
        drops = _DropLog(out, fresh=not resume) if generator == "llm" else None
        done = {
            s
            for s in seeds
            if record_id(env_id, generator, s) in writer or (drops is not None and s in drops)
        }
        pending = [s for s in seeds if s not in done]
        bar = tqdm(total=n, initial=n - len(pending), unit="dlg", desc=env_id, disable=not progress)
        new: list[_Row] = []  # what the summary needs of each new record, not the whole record

        def keep(rec: Record | None) -> None:
            if rec is not None:
                writer.write(rec)
                new.append(_Row.of(rec))
            bar.update()

        llm: LLMImaginer | None = None
        if generator == "scripted":
            _run_scripted(env_id, pending, mixture, epsilon, human, human_name, env_kwargs, workers, keep)
        elif pending:
            assert drops is not None and model is not None
            llm = LLMImaginer(env_id, model, mixture, env_kwargs, dict(model_kwargs or {}), repairs)
            llm.run(pending, keep, drops, batch_size)
        bar.close()
        if drops is not None:
            drops.close()
    seconds = time.perf_counter() - started
    done_ids = {record_id(env_id, generator, s) for s in done}
    old = [_Row.of(r) for r in read_records(out) if r.id in done_ids] if done else []
    summary = summarise_records([*old, *new])
    summary.update(
        env_id=env_id,
        path=str(out),
        generator=generator,
        written=len(new),
        skipped=len(done),
        seconds=seconds,
        rate=len(pending) / seconds if seconds > 0 else math.nan,
    )
    if generator == "llm":
        usage = dict(llm.usage) if llm is not None else {}
        summary.update(dropped=drops.count, drop_reasons=dict(drops.reasons), llm_usage=usage)
        summary["keep_rate"] = len(new) / max(len(new) + drops.new_count, 1)
    return summary


def _check_resumable(out: Path, env_id: str, expect: Mapping[str, Any], mixture: Mixture) -> None:
    """Refuse to append to a file made with other settings (its first record tells)."""
    if not out.is_file() or out.stat().st_size == 0:
        return
    try:
        first = next(read_records(out), None)
    except Exception:  # a torn or bad first line: RecordWriter reports it on opening
        return
    if first is None:
        return
    prov = first.provenance
    wrong = {k: (prov.get(k), v) for k, v in expect.items() if prov.get(k) != v}
    if first.env_id != env_id:
        wrong["env_id"] = (first.env_id, env_id)
    seed = prov.get("seed")
    if not wrong and isinstance(seed, int) and prov.get("strategy") != mixture.draw(episode_rng(seed)):
        wrong["strategy mixture"] = (prov.get("strategy"), mixture.draw(episode_rng(seed)))
    if wrong:
        diffs = "; ".join(f"{k}: file has {a!r}, this run {b!r}" for k, (a, b) in wrong.items())
        raise ValueError(
            f"{out} was made with other settings ({diffs}); write to a new file or start afresh "
            "(resume=False, --no-resume)"
        )


def _run_scripted(
    env_id: str,
    seeds: Sequence[int],
    mixture: Mixture,
    epsilon: float,
    human: Any,
    human_name: str,
    env_kwargs: dict[str, Any],
    workers: int,
    keep: Callable[[Record], None],
) -> None:
    """Play each seed's drawn strategy against the env's human; records go to ``keep`` in seed order."""
    base = provenance("scripted", strategy=None, seed=None, human=human_name, epsilon=float(epsilon))

    def episode(env: gym.Env, s: int) -> Record:
        rng = episode_rng(s)
        name = mixture.draw(rng)
        messages, rewards, info = play(env, mixture.make(name, rng, epsilon), s)
        return record_from_episode(
            record_id(env_id, "scripted", s),
            env_id,
            messages,
            rewards,
            info,
            {**base, "strategy": name, "seed": s},
        )

    if workers <= 1:
        env = gym.make(env_id, human=human, **env_kwargs)
        try:
            for s in seeds:
                keep(episode(env, s))
        finally:
            env.close()
        return
    local = threading.local()

    def job(s: int) -> Record:
        if not hasattr(local, "env"):
            local.env = gym.make(env_id, human=human, **env_kwargs)
        return episode(local.env, s)

    with ThreadPoolExecutor(workers, thread_name_prefix="imagine") as pool:
        for rec in pool.map(job, seeds):
            keep(rec)


class _DropLog:
    """Dialogues the LLM pipeline dropped: one JSON line each in ``<out>.drops.jsonl`` (appended,
    flushed), so a resumed run neither retries them nor loses their count."""

    def __init__(self, out: Path, fresh: bool) -> None:
        self.path = out.with_name(out.name + ".drops.jsonl")
        self.seeds: set[int] = set()
        self.reasons: Counter[str] = Counter()
        self.new_count = 0
        if fresh and self.path.exists():
            self.path.unlink()
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a torn last line from a crash
                    continue
                self.seeds.add(int(row["seed"]))
                self.reasons[row["reason"]] += 1
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def __contains__(self, seed: int) -> bool:
        return seed in self.seeds

    @property
    def count(self) -> int:
        return sum(self.reasons.values())

    def add(self, row: dict[str, Any]) -> None:
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._fh.flush()
        self.seeds.add(int(row["seed"]))
        self.reasons[row["reason"]] += 1
        self.new_count += 1

    def close(self) -> None:
        self._fh.close()


# --- LLM imagination: parsing and checking a written conversation ----------------------------
AGENT_LABELS = frozenset(
    "agent assistant tutor teacher travel agent supporter counselor counsellor persuader ai bot".split()
) | {"travel agent"}
PERSON_LABELS = frozenset(
    "person human user student traveller traveler seeker persuadee client customer partner".split()
)
_LABEL = re.compile(
    r"^[\s>#*_\-\d.)\[(]*(?P<label>[A-Za-z][A-Za-z .'-]{0,30}?)[\s*_\])]*[:：]\s*(?P<text>.*)$"
)
_INLINE_LABEL = re.compile(r"(?:^|\s)\**(?:AGENT|PERSON|USER|ASSISTANT)\**\s*:", re.IGNORECASE)
_META = re.compile(r"^\s*(?:\(|\[|#|---|\*\*\*|===|end of|note\b|the end\b)", re.IGNORECASE)
_VERDICT = re.compile(r"^[\W_]*(yes|no)\b", re.IGNORECASE)

PROBLEMS = {
    "no_turns": "there is no conversation in the 'PERSON:' / 'AGENT:' format",
    "starts_with_agent": "the PERSON must write the first message",
    "not_alternating": "the PERSON and the AGENT must take turns (never two messages in a row from one)",
    "empty_turn": "a message is empty",
    "too_short": "the AGENT must speak at least {min_turns} times",
    "too_long": "the AGENT may speak at most {max_turns} times",
    "role_confusion": "a message speaks for the other side or contains another speaker's label",
    "invalid_action": "an AGENT message is not a valid utterance (too long, or blank)",
    "long_reply": "a PERSON message is far too long",
}


def parse_conversation(
    text: str, person_names: Iterable[str] = (), agent_names: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """The turns of an LLM-written chat as ``(role, text)``, role ``"user"`` (the person) or
    ``"assistant"`` (the agent). Reads ``SPEAKER: text`` lines with markdown, numbering, brackets,
    quotes or a name for a speaker label; unlabelled lines continue the current turn; preambles
    and meta lines ("(End of conversation)", "Note: ...") are skipped."""
    person = PERSON_LABELS | {p.lower() for p in person_names}
    agent = AGENT_LABELS | {a.lower() for a in agent_names}
    turns: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        m = _LABEL.match(line)
        label = " ".join(m["label"].lower().split()) if m else ""
        role = "assistant" if label in agent else "user" if label in person else None
        if role is not None:
            turns.append([role, _clean_turn(m["text"])])  # type: ignore[index]
        elif turns and not _META.match(line):
            turns[-1][1] = f"{turns[-1][1]} {_clean_turn(line)}".strip()
    return [(role, text) for role, text in turns]


def _clean_turn(text: str) -> str:
    text = text.replace("**", "").replace("__", "").strip()
    if len(text) >= 2 and text[0] in "\"“'" and text[-1] in "\"”'":
        text = text[1:-1].strip()
    return " ".join(text.split())


def check_conversation(
    turns: Sequence[tuple[str, str]],
    *,
    min_turns: int = 2,
    max_turns: int = 10,
    action_space: gym.Space | None = None,
    max_reply_chars: int = 4000,
) -> list[str]:
    """Rule checks on parsed turns; the codes of the problems found (see ``PROBLEMS``), none if fine."""
    if not turns:
        return ["no_turns"]
    problems: list[str] = []
    if turns[0][0] != "user":
        problems.append("starts_with_agent")
    if any(a[0] == b[0] for a, b in itertools.pairwise(turns)):
        problems.append("not_alternating")
    if any(not t.strip() for _, t in turns):
        problems.append("empty_turn")
    n_agent = sum(role == "assistant" for role, _ in turns)
    if n_agent < min_turns:
        problems.append("too_short")
    if n_agent > max_turns:
        problems.append("too_long")
    texts = [t for _, t in turns]
    echoes = any(a == b and a for a, b in itertools.pairwise(texts))
    if echoes or any(_INLINE_LABEL.search(t) for t in texts) or any("as an ai" in t.lower() for t in texts):
        problems.append("role_confusion")
    agent_lines = [t for role, t in turns if role == "assistant"]
    if action_space is not None and not all(action_space.contains(t) for t in agent_lines if t.strip()):
        problems.append("invalid_action")
    if any(len(t) > max_reply_chars for role, t in turns if role == "user"):
        problems.append("long_reply")
    return problems


def parse_verdict(text: str) -> str:
    """``"yes"``/``"no"`` when the critique answer starts with it, else ``"unclear"``."""
    m = _VERDICT.match(text or "")
    return m[1].lower() if m else "unclear"


def transcript_text(turns: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"{'AGENT' if role == 'assistant' else 'PERSON'}: {text}" for role, text in turns)


def score_by_replay(
    env: gym.Env, seed: int, persona: Mapping[str, Any], turns: Sequence[tuple[str, str]]
) -> tuple[list[dict[str, str]], list[float], dict[str, Any], int]:
    """Score a written conversation with the task's outcome model: step its agent turns through
    ``env`` (a scripted human) on ``seed`` with ``persona``.

    ``turns`` alternate, person first (:func:`check_conversation`). Returns the record's messages
    (the written words of both sides, cut where the scripted human ended the chat), the step
    rewards, the final info and how many agent turns were replayed. When the written chat ends
    before the env does, the outcome is scored at that point and added to the last reward, as on a
    truncation, with ``end_reason="imagined_end"``.
    """
    base = env.unwrapped
    _, info = env.reset(seed=seed, options={"persona": dict(persona)})
    messages = [{"role": "system", "content": info["role_instructions"]}]
    rewards: list[float] = []
    done = False
    for role, text in turns:
        if role == "assistant":
            if done:  # the scripted human ended it here: the rest of the script is cut
                break
            _, reward, terminated, truncated, info = env.step(text)
            rewards.append(reward)
            done = terminated or truncated
        messages.append({"role": role, "content": text})
    if not rewards:
        raise ValueError("the conversation has no agent turn to replay")
    if not done:  # the written chat ended first: score the outcome where it stopped
        outcome = base.human.outcome()
        rewards[-1] += float(outcome.reward)
        info = {
            **info,
            "outcome": outcome.breakdown,
            "outcome_reward": float(outcome.reward),
            "success": outcome.success,
            "end_reason": IMAGINED_END,
            "persona": base.persona,
        }
    return messages, rewards, info, len(rewards)


# --- LLM imagination: the pipeline -------------------------------------------------------------
SYSTEM = "You write realistic chat transcripts for training conversational agents. Follow the format exactly."


@dataclass
class _Episode:
    """One dialogue's way through the pipeline."""

    seed: int
    strategy: str
    persona: dict[str, Any]
    role: str
    brief: str
    exchanges: int
    situation: str = ""
    raw: str = ""
    turns: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    verdict: str = "unchecked"
    critique: str = ""
    repaired: bool = False
    error: str | None = None


class LLMImaginer:
    """Reasoning, imagination, critique and repair with a chat model; scoring by scripted replay."""

    def __init__(
        self,
        env_id: str,
        model: str,
        mixture: Mixture,
        env_kwargs: Mapping[str, Any],
        model_kwargs: Mapping[str, Any],
        repairs: int = 1,
        situation_tokens: int = 100,
        conversation_tokens: int = 400,
        critique_tokens: int = 40,
    ) -> None:
        from dialogue_gym.humans import make_backend

        self.env_id, self.model, self.mixture, self.repairs = env_id, model, mixture, repairs
        self.env = gym.make(env_id, **{**env_kwargs, "human": "scripted"})
        self.base = self.env.unwrapped
        self.backend = make_backend(model, **model_kwargs)
        self.tokens = {
            "situation": situation_tokens,
            "conversation": conversation_tokens,
            "critique": critique_tokens,
        }
        self.usage: Counter[str] = Counter()
        self.last_error: str | None = None

    # -- model calls --
    def complete_many(self, prompts: Sequence[str], kind: str, seeds: Sequence[int]) -> list[str | None]:
        """One answer per prompt (``None`` on a backend error): a batched call where the backend
        has one (local transformers models), else concurrent calls."""
        if not prompts:
            return []
        msgs = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": p}] for p in prompts]
        max_tokens = self.tokens[kind]
        self.usage["calls"] += len(prompts)
        try:
            if hasattr(self.backend, "complete_batch"):
                outs = self.backend.complete_batch(msgs, max_tokens=max_tokens)
            else:
                with ThreadPoolExecutor(min(8, max(1, len(msgs)))) as pool:
                    outs = list(
                        pool.map(lambda job: self._safe(*job, max_tokens), zip(msgs, seeds, strict=True))
                    )
        except Exception as exc:  # the whole batch failed
            self.usage["errors"] += len(prompts)
            self.last_error = f"{type(exc).__name__}: {exc}"
            return [None] * len(prompts)
        texts = []
        for o in outs:
            if o is None:
                texts.append(None)
                continue
            self.usage["prompt_tokens"] += o.prompt_tokens
            self.usage["completion_tokens"] += o.completion_tokens
            texts.append(o.text)
        return texts

    def _safe(self, messages: list[dict[str, str]], seed: int, max_tokens: int) -> Any:
        try:
            return self.backend.complete(messages, seed=seed, max_tokens=max_tokens)
        except Exception as exc:  # one failed call drops one dialogue, not the run
            self.usage["errors"] += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return None

    # -- prompts --
    def situation_prompt(self, ep: _Episode) -> str:
        return (
            "Here is a person who is about to start a chat:\n"
            f"{ep.brief}\n\n"
            "Invent a concrete situation for them in three or four sentences: who they are, what is going on "
            "in their life today, and how they tend to write in a chat. Write only the situation."
        )

    def conversation_prompt(self, ep: _Episode) -> str:
        return (
            "Write a chat between an AGENT and a PERSON.\n\n"
            f"The AGENT's instructions:\n{ep.role}\n\n"
            f"How the AGENT behaves in this chat: {self.mixture.classes[ep.strategy].description}\n\n"
            f"The PERSON (the AGENT does not know any of this):\n{ep.brief}\n"
            f"Their situation: {ep.situation}\n\n"
            f"Write about {ep.exchanges} exchanges. The PERSON writes first. Put every message on its own "
            'line, starting with "PERSON:" or "AGENT:", and let them take turns. The AGENT\'s last message '
            "ends the chat. Write only the chat."
        )

    def critique_prompt(self, ep: _Episode) -> str:
        return (
            "Here is a chat between an AGENT and a PERSON.\n\n"
            f"{transcript_text(ep.turns)}\n\n"
            "Is this chat coherent: does each speaker stay in their own role, and does every message make "
            "sense as a reply to the one before? Answer YES or NO first, then give one short reason."
        )

    def repair_prompt(self, ep: _Episode) -> str:
        issues = [PROBLEMS[p].format(min_turns=2, max_turns=self.base.max_turns) for p in ep.problems]
        if ep.verdict == "no":
            issues.append(f"a reviewer found it incoherent: {ep.critique.strip()[:300]}")
        return (
            "This chat between an AGENT and a PERSON has problems:\n"
            + "\n".join(f"- {i}" for i in issues)
            + f"\n\nThe chat:\n{transcript_text(ep.turns) if ep.turns else ep.raw[:3000]}\n\n"
            "Rewrite the whole chat, fixing the problems. Put every message on its own line, starting with "
            '"PERSON:" or "AGENT:"; the PERSON writes first and they take turns. Write only the chat.'
        )

    # -- the steps --
    def setup(self, seed: int) -> _Episode:
        """Sample the persona (as the env would for this seed) and draw the strategy."""
        _, info = self.env.reset(seed=seed)
        persona = dict(self.base.persona)
        rng = episode_rng(seed)
        strategy = self.mixture.draw(rng)
        exchanges = 3 + int(rng.random() * max(1, min(6, self.base.max_turns) - 2))
        return _Episode(
            seed, strategy, persona, info["role_instructions"], self.base.persona_brief(persona), exchanges
        )

    def parse(self, ep: _Episode, text: str | None) -> None:
        if text is None:
            ep.error, ep.turns, ep.problems = "llm_error", [], ["no_turns"]
            return
        ep.raw = text
        names = [str(ep.persona["name"])] if isinstance(ep.persona.get("name"), str) else []
        ep.turns = parse_conversation(text, person_names=names)
        ep.problems = check_conversation(
            ep.turns,
            max_turns=self.base.max_turns,
            action_space=self.base.action_space,
            max_reply_chars=self.base.max_obs_chars,
        )

    def critique(self, eps: list[_Episode]) -> None:
        todo = [ep for ep in eps if not ep.problems]
        answers = self.complete_many(
            [self.critique_prompt(ep) for ep in todo], "critique", [e.seed for e in todo]
        )
        for ep, answer in zip(todo, answers, strict=True):
            ep.critique = answer or ""
            ep.verdict = parse_verdict(answer or "")

    def run(
        self, seeds: Sequence[int], keep: Callable[[Record | None], None], drops: _DropLog, batch: int
    ) -> None:
        """The pipeline over ``seeds`` in batches; kept records and drops go out in seed order."""
        for start in range(0, len(seeds), max(1, batch)):
            chunk = [self.setup(s) for s in seeds[start : start + batch]]
            ids = [ep.seed for ep in chunk]
            for ep, text in zip(
                chunk,
                self.complete_many([self.situation_prompt(e) for e in chunk], "situation", ids),
                strict=True,
            ):
                ep.situation = " ".join((text or "").split())
            texts = self.complete_many([self.conversation_prompt(e) for e in chunk], "conversation", ids)
            for ep, text in zip(chunk, texts, strict=True):
                self.parse(ep, text)
            self.critique(chunk)
            for _ in range(self.repairs):
                bad = [ep for ep in chunk if ep.error is None and (ep.problems or ep.verdict == "no")]
                if not bad:
                    break
                fixed = self.complete_many(
                    [self.repair_prompt(e) for e in bad], "conversation", [e.seed for e in bad]
                )
                for ep, text in zip(bad, fixed, strict=True):
                    if text is None:
                        continue
                    before = (ep.raw, ep.turns, ep.problems)
                    self.parse(ep, text)
                    if ep.problems:  # the repair is no better: keep the first version's record of faults
                        ep.raw, ep.turns, ep.problems = before[0], before[1], before[2] or ep.problems
                    else:
                        ep.repaired, ep.verdict = True, "unchecked"
                self.critique([ep for ep in bad if ep.repaired])
            for ep in chunk:
                keep(self.finish(ep, drops))

    def finish(self, ep: _Episode, drops: _DropLog) -> Record | None:
        """Drop a dialogue that failed its checks (logged), else score it by replay as a record."""
        reason = ep.error or (
            ep.problems[0] if ep.problems else "critique_rejected" if ep.verdict == "no" else None
        )
        if reason is not None:
            drops.add(
                {
                    "id": record_id(self.env_id, "llm", ep.seed),
                    "seed": ep.seed,
                    "strategy": ep.strategy,
                    "reason": reason,
                    "problems": ep.problems,
                    "verdict": ep.verdict,
                    "raw": ep.raw[:2000],
                    "error": self.last_error if ep.error else None,
                }
            )
            return None
        messages, rewards, info, replayed = score_by_replay(self.env, ep.seed, ep.persona, ep.turns)
        prov = provenance(
            "llm",
            strategy=ep.strategy,
            seed=ep.seed,
            model=self.model,
            human="imagined",
            scorer="scripted replay",
            persona_id=persona_id(ep.persona) if ep.persona else None,
            situation=ep.situation,
            critique={"verdict": ep.verdict, "answer": ep.critique.strip()[:500]},
            repaired=ep.repaired,
            llm_agent_turns=sum(role == "assistant" for role, _ in ep.turns),
            replayed_turns=replayed,
        )
        return record_from_episode(
            record_id(self.env_id, "llm", ep.seed), self.env_id, messages, rewards, info, prov
        )
