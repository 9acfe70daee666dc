"""Dataset records to token sequences for training, and prompts for inference, by one rule.

A conversation is rendered with the tokenizer's chat template and tokenized one message at a
time: every message becomes a *segment* (its template header, its content, its template tail),
so the tokens of each agent utterance are known exactly. The agent's own tokens are its content
plus the end-of-turn token that follows it (the token generation stops at); role headers, the
system message and the human's messages are context. :func:`encode_prompt` builds inference
prompts from the same segments, so an agent at play sees exactly the token sequences it was
trained on.

Truncation rule (``max_length``), applied to records and prompts alike:

1. messages after the last agent turn are left out of training sequences (no training signal);
2. while too long, drop the oldest exchange (the human's message(s) and the agent turn answering
   them) after the system message, keeping at least the last exchange (for a prompt: the open
   one, ending in the generation header);
3. if still too long, shorten the system message's content from its end (its header and
   end-of-turn token stay);
4. if even that is not enough (one exchange longer than ``max_length``), raise ``ValueError``.

No utterance is ever cut in the middle. Agent turns dropped from the left are dropped from
``turn_ends`` and ``turn_rewards`` too.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dialogue_gym.agents.base import Messages
from dialogue_gym.datagen.records import Record, load_records


@dataclass
class EncodedDialogue:
    """A tokenized conversation: ids, which tokens are the agent's, and per-turn rewards.

    ``agent_mask`` is 1 on the agent's utterances and their end-of-turn tokens; ``turn_ends[k]``
    is the index of the last token of the k-th kept agent turn and ``turn_rewards[k]`` its step
    reward; ``dropped_turns`` agent turns were cut from the left to fit ``max_length``.
    ``terminal``: the episode ended with the last kept turn (always the record's last turn), by
    anything but a provider error.
    """

    input_ids: list[int]
    agent_mask: list[int]
    turn_ends: list[int]
    turn_rewards: list[float]
    terminal: bool
    record_id: str = ""
    dropped_turns: int = 0

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class _Segment:
    """The tokens of one message (or of the generation header)."""

    role: str
    ids: list[int]
    mask: list[int]
    header: int = 0  # tokens of template header before the content
    content: int = 0  # content tokens
    ends_turn: int | None = None  # index (within ids) of the agent turn's last token


@dataclass
class _Renderer:
    """Renders message prefixes with a tokenizer's chat template and tokenizes the differences."""

    tokenizer: Any
    special_ids: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise ValueError("the tokenizer has no chat template; dialogue-gym renders dialogues with one")
        self.special_ids = set(self.tokenizer.all_special_ids)

    def render(self, messages: Sequence[Mapping[str, str]], generation: bool = False) -> str:
        if not messages:
            return ""
        return self.tokenizer.apply_chat_template(
            [dict(m) for m in messages], tokenize=False, add_generation_prompt=generation
        )

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def segments(self, messages: Messages, *, generation: bool = False) -> list[_Segment]:
        """One segment per message (plus the generation header when ``generation``)."""
        out: list[_Segment] = []
        prev = ""
        for i, msg in enumerate(messages):
            full = self.render(messages[: i + 1])
            if msg["role"] == "assistant":
                start = self.render(messages[:i], generation=True)
                _check_prefix(prev, start, i)
                _check_prefix(start, full, i)
                out.append(self._message("assistant", start[len(prev) :], full[len(start) :], msg, i))
            else:
                _check_prefix(prev, full, i)
                text = full[len(prev) :]
                at = text.find(msg["content"]) if msg["content"] else -1
                at = at if at >= 0 else len(text)
                out.append(self._message(msg["role"], text[:at], text[at:], msg, i))
            prev = full
        if generation:
            start = self.render(messages, generation=True)
            _check_prefix(prev, start, len(messages))
            ids = self.ids(start[len(prev) :])
            out.append(_Segment("generation", ids, [0] * len(ids), header=len(ids)))
        return out

    def _message(self, role: str, header: str, body: str, msg: Mapping[str, str], index: int) -> _Segment:
        """Header, content and tail of one message, tokenized apart so the content's tokens are known."""
        content = msg["content"]
        if not body.startswith(content):
            content = content.strip()  # templates that strip the content
            if not body.startswith(content):
                raise ValueError(
                    f"the chat template changes the content of message {index}; "
                    "cannot tell the message's tokens from the template's"
                )
        head_ids, content_ids, tail_ids = self.ids(header), self.ids(content), self.ids(body[len(content) :])
        ids = head_ids + content_ids + tail_ids
        if role != "assistant":
            return _Segment(role, ids, [0] * len(ids), len(head_ids), len(content_ids))
        # the agent's turn ends with the first special token after its content (e.g. <|im_end|>)
        n_tail = next((k + 1 for k, t in enumerate(tail_ids) if t in self.special_ids), 0)
        if not content_ids and not n_tail:
            raise ValueError(f"agent message {index} has no tokens")
        mask = [0] * len(head_ids) + [1] * (len(content_ids) + n_tail) + [0] * (len(tail_ids) - n_tail)
        last = len(head_ids) + len(content_ids) + n_tail - 1
        return _Segment("assistant", ids, mask, len(head_ids), len(content_ids), last)


def _check_prefix(prefix: str, text: str, index: int) -> None:
    if not text.startswith(prefix):
        raise ValueError(
            f"the chat template re-renders earlier messages when message {index} is added; dialogue-gym "
            "needs a template where each message appends text (most chat templates do)"
        )


def _units(segments: list[_Segment]) -> tuple[list[_Segment], list[list[_Segment]]]:
    """The leading system segment(s) and the exchanges: runs of segments closed by an agent turn
    (or, for a prompt, by the generation header)."""
    n_sys = 0
    while n_sys < len(segments) and segments[n_sys].role == "system":
        n_sys += 1
    units: list[list[_Segment]] = []
    current: list[_Segment] = []
    for seg in segments[n_sys:]:
        current.append(seg)
        if seg.role in ("assistant", "generation"):
            units.append(current)
            current = []
    if current:
        units.append(current)
    return segments[:n_sys], units


def _fit(system: list[_Segment], units: list[list[_Segment]], max_length: int | None, what: str):
    """Apply rules 2-4 of the truncation rule; returns (system, units, dropped exchanges)."""
    if max_length is None:
        return system, units, 0

    def size(segs: Iterable[_Segment]) -> int:
        return sum(len(s.ids) for s in segs)

    total = size(system) + sum(size(u) for u in units)
    dropped = 0
    while total > max_length and len(units) > 1:
        total -= size(units[0])
        units = units[1:]
        dropped += 1
    if total > max_length and system:
        seg = system[-1]
        cut = min(total - max_length, seg.content)
        system = [*system[:-1], _shorten(seg, cut)]
        total -= cut
    if total > max_length:
        raise ValueError(
            f"{what}: its last exchange alone takes {total} tokens, more than max_length={max_length}; "
            "raise max_length"
        )
    return system, units, dropped


def _shorten(seg: _Segment, cut: int) -> _Segment:
    """``seg`` with ``cut`` tokens removed from the end of its content (header and tail kept)."""
    cut = min(cut, seg.content)
    end = seg.header + seg.content
    ids = seg.ids[: end - cut] + seg.ids[end:]
    return _Segment(seg.role, ids, [0] * len(ids), seg.header, seg.content - cut)


# ------------------------------------------------------------------------------------- public


def encode_record(record: Record, tokenizer: Any, max_length: int | None = None) -> EncodedDialogue:
    """Tokenize ``record`` for training (see the module docstring for the truncation rule)."""
    renderer = _Renderer(tokenizer)
    messages = record.messages
    last_agent = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    if last_agent < 0:
        raise ValueError(f"record {record.id} has no agent turn to train on")
    segments = renderer.segments(messages[: last_agent + 1])
    system, units = _units(segments)
    system, units, dropped = _fit(system, units, max_length, f"record {record.id}")
    kept_rewards = record.rewards[dropped:]
    ids: list[int] = []
    mask: list[int] = []
    ends: list[int] = []
    for seg in [*system, *(s for u in units for s in u)]:
        if seg.ends_turn is not None:
            ends.append(len(ids) + seg.ends_turn)
        ids += seg.ids
        mask += seg.mask
    if len(ends) != len(kept_rewards):
        raise ValueError(f"record {record.id}: {len(ends)} agent turns but {len(kept_rewards)} rewards")
    return EncodedDialogue(
        input_ids=ids,
        agent_mask=mask,
        turn_ends=ends,
        turn_rewards=[float(r) for r in kept_rewards],
        terminal=record.end_reason != "error",
        record_id=record.id,
        dropped_turns=dropped,
    )


def encode_prompt(messages: Messages, tokenizer: Any, max_length: int | None = None) -> list[int]:
    """Token ids of ``messages`` followed by the generation header: the prompt for the next agent
    turn, tokenized exactly like the training sequences (and truncated by the same rule)."""
    renderer = _Renderer(tokenizer)
    system, units = _units(renderer.segments(messages, generation=True))
    system, units, _ = _fit(system, units, max_length, "the prompt")
    return [t for seg in [*system, *(s for u in units for s in u)] for t in seg.ids]


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """The token(s) that end an agent turn under ``tokenizer``'s chat template, then EOS."""
    probe = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    seg = _Renderer(tokenizer).segments([*probe, {"role": "assistant", "content": "a"}])[-1]
    ids = [seg.ids[seg.ends_turn]] if seg.ends_turn is not None and seg.mask[seg.ends_turn] else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def load_training_records(
    paths: str | Path | Sequence[str | Path], env_id: str | None = None, split: str | None = None
) -> list[Record]:
    """Records of the JSONL files ``paths``, all for one env.

    ``env_id`` refuses records of another env (an error naming file and line); without it the
    files must agree on one env. ``split`` keeps only records of that persona split.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise ValueError("no dataset given: pass one or more JSONL files of records")
    records = load_records(paths, env_id=env_id)
    envs = sorted({r.env_id for r in records})
    if len(envs) > 1:
        raise ValueError(f"the datasets mix envs {envs}; train one env at a time (pass env_id to pick one)")
    if split is not None:
        records = [r for r in records if r.split == split]
    if not records:
        where = f" in split {split!r}" if split else ""
        raise ValueError(f"no records{where} in {', '.join(map(str, paths))}")
    return records


def top_fraction(records: Sequence[Record], fraction: float) -> list[Record]:
    """The best ``ceil(fraction * n)`` records by return (ties broken by id), in their original order."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {fraction}")
    keep = math.ceil(fraction * len(records))
    best = sorted(range(len(records)), key=lambda i: (-records[i].ret, records[i].id))[:keep]
    return [records[i] for i in sorted(best)]


class DialogueDataset(torch.utils.data.Dataset):
    """Encoded records as a map-style dataset for ``transformers.Trainer``.

    Warns when ``max_length`` cuts agent turns: those turns are never trained on, and when the
    system message alone nearly fills ``max_length`` (a task card with a long catalogue) only each
    dialogue's last turn is left, so the model never sees how a conversation opens.
    """

    def __init__(self, records: Sequence[Record], tokenizer: Any, max_length: int | None = None) -> None:
        self.items = [encode_record(r, tokenizer, max_length) for r in records]
        self.dropped_turns = sum(e.dropped_turns for e in self.items)
        self.agent_turns = self.dropped_turns + sum(len(e.turn_ends) for e in self.items)
        if self.dropped_turns:
            cut = sum(1 for e in self.items if e.dropped_turns)
            # only a truncated encoding (turns dropped, or the system message shortened to fill
            # max_length exactly) differs from the whole dialogue: encode just those again
            longest = max(
                len(encode_record(r, tokenizer)) if e.dropped_turns or len(e) == max_length else len(e)
                for r, e in zip(records, self.items, strict=True)
            )
            warnings.warn(
                f"max_length={max_length} cuts {self.dropped_turns:,} of the {self.agent_turns:,} agent "
                f"turns ({self.dropped_turns / self.agent_turns:.0%}) from the left of {cut:,} of "
                f"{len(self.items):,} dialogues: they are never trained on; raise max_length (the "
                f"longest dialogue takes {longest:,} tokens)",
                stacklevel=2,
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> EncodedDialogue:
        return self.items[i]

    @property
    def num_tokens(self) -> int:
        return sum(len(e) for e in self.items)


@dataclass
class DialogueCollator:
    """Pads a batch of :class:`EncodedDialogue` on the right into tensors.

    Gives ``input_ids``, ``attention_mask``, ``agent_mask``, ``labels`` (the ids on agent tokens,
    -100 elsewhere), ``rewards`` (each turn's reward on its ``turn_ends`` token, 0 elsewhere) and
    ``dones`` (1 on the last turn's end token of a terminal dialogue).
    """

    pad_token_id: int

    def __call__(self, batch: Sequence[EncodedDialogue]) -> dict[str, torch.Tensor]:
        width = max(len(e) for e in batch)
        shape = (len(batch), width)
        input_ids = torch.full(shape, self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros(shape, dtype=torch.long)
        agent_mask = torch.zeros(shape, dtype=torch.long)
        rewards = torch.zeros(shape, dtype=torch.float32)
        dones = torch.zeros(shape, dtype=torch.float32)
        for row, e in enumerate(batch):
            n = len(e)
            input_ids[row, :n] = torch.tensor(e.input_ids)
            attention_mask[row, :n] = 1
            agent_mask[row, :n] = torch.tensor(e.agent_mask)
            if e.turn_ends:
                rewards[row, e.turn_ends] = torch.tensor(e.turn_rewards, dtype=torch.float32)
                if e.terminal:
                    dones[row, e.turn_ends[-1]] = 1.0
        labels = input_ids.masked_fill(agent_mask == 0, -100)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "agent_mask": agent_mask,
            "labels": labels,
            "rewards": rewards,
            "dones": dones,
        }
