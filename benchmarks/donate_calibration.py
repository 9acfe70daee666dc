"""Donate calibration: real PersuasionForGood donations against the simulated persuadees.

Run: python benchmarks/donate_calibration.py [--data PATH] [--episodes 1000] [--seed 10000]

Prints a Markdown table (for the README): the 1,017 real persuadees (donations clipped to $0-$2;
a few rows record more than $2, data errors) against the simulated population under each reference
agent. The competent agent stands in for the human persuaders of the real study, so its row should
match the real one; naive and oracle bracket it. Real turns are B7 (exchanges in the chat);
simulated turns are agent turns (at most the card's ``max_turns``).
"""

from __future__ import annotations

import argparse

import dialogue_gym  # noqa: F401
from dialogue_gym.data.persuasionforgood import BUCKETS, donation_summary, load_persuadees
from dialogue_gym.evaluation import evaluate, reference_agent

ENV_ID = "DialogueDonate-v0"


def simulated(level: str, episodes: int, seed: int) -> dict[str, float]:
    """Donation summary of ``episodes`` seeded episodes of the ``level`` reference agent."""
    results = evaluate(reference_agent(ENV_ID, level), ENV_ID, episodes, seed=seed)
    return donation_summary([r.outcome["donation"] for r in results], [r.turns for r in results])


def table(rows: dict[str, dict[str, float]]) -> str:
    """The comparison as a Markdown table."""
    cols = ["N", "$0 share", "mean $", "median $", *(f"{label}" for label, _, _ in BUCKETS[1:]), "mean turns"]
    lines = ["| source | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, s in rows.items():
        cells = [
            f"{int(s['N'])}",
            f"{s['zero']:.3f}",
            f"{s['mean']:.3f}",
            f"{s['median']:.2f}",
            *(f"{s[label]:.3f}" for label, _, _ in BUCKETS[1:]),
            f"{s['turns']:.1f}",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", default=None, help="PersuasionForGood folder (default: $DIALOGUE_GYM_P4G or ../shared)"
    )
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=10_000)
    args = ap.parse_args()
    real = load_persuadees(args.data)
    clipped = sum(p.raw_donation > 2.0 for p in real)
    rows = {"real PersuasionForGood": donation_summary([p.donation for p in real], [p.turns for p in real])}
    for level in ("naive", "competent", "oracle"):
        rows[f"simulated, {level} agent"] = simulated(level, args.episodes, args.seed)
    print(table(rows))
    print(f"\nReal donations above $2 (data errors, clipped to $2): {clipped} of {len(real)}.")


if __name__ == "__main__":
    main()
