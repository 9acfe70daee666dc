"""A small reader of the real PersuasionForGood data (Wang et al., ACL 2019), for calibrating Donate.

The data is never copied into this project: pass the folder that holds ``FullData_full_info.csv``
(and ``FullData_full_dialog.csv``), or set ``DIALOGUE_GYM_P4G``; the default is
``../shared/data/persuasionforgood`` beside the repository root.

The calibration readers use only the standard library. Donations are clipped to the task's $0-$2
range: a few rows record amounts above $2 (e.g. 50 or 700), which the task did not allow; they are
data errors and count as $2 (``Persuadee.raw_donation`` keeps the recorded value).

:func:`load_p4g_records` reads the real dialogues as dataset records
(:class:`~dialogue_gym.datagen.records.Record`, generator ``"human"``) in the Donate task's terms,
e.g. for hindsight regeneration with the Donate simulator as forward model.
"""

from __future__ import annotations

import csv
import hashlib
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dialogue_gym.datagen.records import Record

ENV_VAR = "DIALOGUE_GYM_P4G"
INFO_FILE = "FullData_full_info.csv"
DIALOG_FILE = "FullData_full_dialog.csv"
MAX_DONATION = 2.0
# Donation histogram buckets: (label, low exclusive, high inclusive); $0 and $2 are their own buckets.
BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("$0", -1.0, 0.0),
    ("(0, 0.5]", 0.0, 0.5),
    ("(0.5, 1]", 0.5, 1.0),
    ("(1, 2)", 1.0, MAX_DONATION - 1e-9),
    ("$2", MAX_DONATION - 1e-9, MAX_DONATION),
)


@dataclass(frozen=True)
class Persuadee:
    """One real persuadee: the donation made after the chat, the dialogue length and trait scores."""

    dialogue_id: str
    user_id: str
    donation: float  # clipped to [0, 2]
    raw_donation: float
    turns: int
    traits: dict[str, float] = field(default_factory=dict)


def default_path() -> Path:
    """``$DIALOGUE_GYM_P4G`` if set, else ``../shared/data/persuasionforgood`` relative to the repo root."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "persuasionforgood"


def _folder(path: str | Path | None) -> Path:
    folder = Path(path) if path is not None else default_path()
    if not (folder / INFO_FILE).is_file():
        raise FileNotFoundError(
            f"PersuasionForGood data not found: {folder / INFO_FILE} is missing; pass the folder holding "
            f"{INFO_FILE} or set {ENV_VAR}"
        )
    return folder


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def load_persuadees(path: str | Path | None = None) -> list[Persuadee]:
    """All persuadees (role B4 == 1) of ``FullData_full_info.csv``, donations clipped to [0, 2]."""
    with open(_folder(path) / INFO_FILE, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        if row.get("B4", "").strip() != "1":
            continue
        raw = _float(row["B6"]) or 0.0
        traits = {
            k[:-2]: v for k, text in row.items() if k.endswith(".x") and (v := _float(text)) is not None
        }
        out.append(
            Persuadee(
                dialogue_id=row["B2"],
                user_id=row["B3"],
                donation=min(max(raw, 0.0), MAX_DONATION),
                raw_donation=raw,
                turns=int(float(row["B7"])),
                traits=traits,
            )
        )
    return out


def load_dialogue(dialogue_id: str, path: str | Path | None = None) -> list[tuple[int, str, str]]:
    """The sentences of one real dialogue as ``(turn, "persuader"|"persuadee", sentence)``, in order."""
    with open(_folder(path) / DIALOG_FILE, newline="", encoding="utf-8") as fh:
        return [
            (int(row["Turn"]), "persuadee" if row["B4"].strip() == "1" else "persuader", row["Unit"])
            for row in csv.DictReader(fh)
            if row["B2"] == dialogue_id
        ]


def donation_summary(donations: Sequence[float], turns: Sequence[float] | None = None) -> dict[str, float]:
    """N, share giving $0, mean, median, the share in each of :data:`BUCKETS` and mean turns (if given)."""
    n = len(donations)
    if n == 0:
        raise ValueError("no donations to summarise")
    out: dict[str, float] = {
        "N": n,
        "zero": sum(d <= 0.0 for d in donations) / n,
        "mean": statistics.fmean(donations),
        "median": statistics.median(donations),
    }
    for label, lo, hi in BUCKETS:
        out[label] = sum(lo < d <= hi for d in donations) / n
    if turns is not None:
        out["turns"] = statistics.fmean(turns)
    return out


# ----------------------------------------------------------------------- dialogues as records
ENV_ID = "DialogueDonate-v0"


def person_id(user_id: str) -> str:
    """The record ``persona_id`` of a real persuadee: a hash of their user id, so that splits are by
    person (some persuadees took part in several dialogues)."""
    return hashlib.sha1(f"persuasionforgood:{user_id}".encode()).hexdigest()[:12]


def read_turns(path: str | Path | None = None) -> dict[str, list[tuple[str, str]]]:
    """Each dialogue of ``FullData_full_dialog.csv`` as ``(role, text)`` turns in order: the persuader
    is ``"assistant"``, the persuadee ``"user"``; consecutive sentences of one speaker are merged."""
    file = _folder(path) / DIALOG_FILE
    if not file.is_file():
        raise FileNotFoundError(f"PersuasionForGood dialogues not found: {file} is missing")
    dialogues: dict[str, list[tuple[str, list[str]]]] = {}
    with open(file, newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.DictReader(fh), 2):
            try:
                role = {"0": "assistant", "1": "user"}[row["B4"].strip()]
                text, dialogue = row["Unit"].strip(), row["B2"]
            except (KeyError, AttributeError):
                raise ValueError(f"{file}:{lineno}: expected columns Unit, B4 (0 or 1) and B2") from None
            turns = dialogues.setdefault(dialogue, [])
            if not text:
                continue
            if turns and turns[-1][0] == role:
                turns[-1][1].append(text)
            else:
                turns.append((role, [text]))
    return {d: [(role, " ".join(parts)) for role, parts in turns] for d, turns in dialogues.items()}


def load_p4g_records(path: str | Path | None = None) -> list[Record]:
    """The real PersuasionForGood dialogues as Donate records, in file order.

    Each record: the Donate task's role instructions as the system message, then the persuader's
    (``assistant``) and persuadee's (``user``) merged turns; ``rewards`` as the Donate env pays them
    (``-turn_cost`` a turn, plus on the last agent turn the donation clipped to $0-$payment, i.e.
    the env's outcome reward); ``outcome = {"donation", "raw_donation"}``; generator ``"human"``;
    no persona; ``persona_id`` from the persuadee's user id. Dialogues without a persuadee row or
    without a persuader turn are left out.
    """
    from dialogue_gym.datagen.records import Record, env_version, provenance
    from dialogue_gym.tasks.donate import DonateEnv

    folder = _folder(path)
    env = DonateEnv()
    system = env.role_instructions({})
    pay = float(env.card.get("payment", MAX_DONATION))
    step = -env.turn_cost if env.turn_cost else 0.0
    persuadees = {p.dialogue_id: p for p in load_persuadees(folder)}
    records = []
    for dialogue, turns in read_turns(folder).items():
        person = persuadees.get(dialogue)
        n_agent = sum(role == "assistant" for role, _ in turns)
        if person is None or n_agent == 0:
            continue
        amount = min(max(person.raw_donation, 0.0), pay)
        rewards = [step] * n_agent
        rewards[-1] += amount
        records.append(
            Record(
                id=f"p4g-{dialogue}",
                env_id=ENV_ID,
                env_version=env_version(ENV_ID),
                messages=[{"role": "system", "content": system}]
                + [{"role": role, "content": text} for role, text in turns],
                rewards=rewards,
                persona_id=person_id(person.user_id),
                provenance=provenance(
                    "human",
                    strategy=None,
                    seed=None,
                    human="human",
                    dataset="PersuasionForGood",
                    dialogue_id=dialogue,
                    persuadee=person.user_id,
                ),
                outcome={"donation": amount, "raw_donation": person.raw_donation},
                outcome_reward=amount,
                success=amount > 0,
                end_reason="dialogue_end",
            )
        )
    return records
