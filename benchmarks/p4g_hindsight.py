"""Hindsight over the real PersuasionForGood dialogues, with the Donate simulator as forward model.

Run: python benchmarks/p4g_hindsight.py [--data PATH] [--sample 300] [--seed 0] [--all]

The real persuadee's donation is known, but a regenerated branch can only be scored by the
simulator. So three numbers per dialogue: the real donation; the simulator's score of the original
transcript replayed in full (a persuadee drawn from a seed derived from the dialogue id, warmed up
on the real persuader turns: the fair baseline for the branches); and the simulator's score of each
regenerated branch (same persuadee, real prefix, rewritten turn, hindsight persuader after it).
Prints Markdown tables for a fixed random sample (and, with ``--all``, every dialogue), the paired
difference by flagged mistake, and how the simulator reads real persuader turns.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from collections import Counter, defaultdict

import dialogue_gym  # noqa: F401
from dialogue_gym.core.scripted import recognizer_from_card
from dialogue_gym.data.persuasionforgood import load_p4g_records
from dialogue_gym.datagen.hindsight import Hindsight, Transcript, paired_gain


def pearson(xs: list[float], ys: list[float]) -> float:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sx = math.sqrt(sum((x - mx) ** 2 for x in xs))
    sy = math.sqrt(sum((y - my) ** 2 for y in ys))
    return (
        sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / (sx * sy) if sx and sy else math.nan
    )


def run(records: list, max_branches: int) -> dict:
    """Replay every dialogue in the simulator and regenerate its branches."""
    engine = Hindsight(max_branches=max_branches)
    start = time.perf_counter()
    rows = []
    for rec in records:
        replay, info = engine.replay_return(rec)
        rows.append(
            {
                "real": rec.ret,
                "replay": replay,
                "left": info.get("end_reason") == "human_left",
                "branches": engine.branches(rec),
                "turns": rec.turns,
            }
        )
    seconds = time.perf_counter() - start
    engine.close()
    return {"rows": rows, "seconds": seconds, "stats": engine.stats}


def table_row(name: str, res: dict) -> str:
    rows = res["rows"]
    branched = [r for r in rows if r["branches"]]
    pairs = [(r["replay"], b.ret) for r in branched for b in r["branches"]]
    g = paired_gain(pairs)
    nb = sum(len(r["branches"]) for r in rows)
    return (
        f"| {name} | {len(rows)} | {statistics.fmean(r['real'] for r in rows):.3f} "
        f"| {statistics.fmean(r['replay'] for r in rows):.3f} "
        f"| {pearson([r['real'] for r in rows], [r['replay'] for r in rows]):.2f} "
        f"| {sum(r['left'] for r in rows) / len(rows):.2f} | {len(branched)} | {nb / len(rows):.2f} "
        f"| {statistics.fmean(r['real'] for r in branched):.3f} | {g['source']:.3f} | {g['branch']:.3f} "
        f"| {g['diff']:+.3f} ± {g['ci95']:.3f} | {g['improved']:.2f} "
        f"| {statistics.fmean(b.turns for r in branched for b in r['branches']):.1f} "
        f"| {statistics.fmean(r['turns'] for r in branched):.1f} | {res['seconds']:.1f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", default=None, help="PersuasionForGood folder (default: $DIALOGUE_GYM_P4G or ../shared)"
    )
    ap.add_argument("--sample", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-branches", type=int, default=2)
    ap.add_argument("--all", action="store_true", help="also run on every dialogue")
    args = ap.parse_args()
    records = load_p4g_records(args.data)
    sample = random.Random(args.seed).sample(records, min(args.sample, len(records)))
    sets = {f"sample of {len(sample)} (seed {args.seed})": sample}
    if args.all:
        sets[f"all {len(records)}"] = records
    print(
        "PersuasionForGood hindsight (donations in $; simulator = the scripted Donate persuadee; paired "
        "difference = branch - the simulator's replay of the same original)\n"
    )
    print(
        "| dialogues | N | real donation | simulator replay | r(real, replay) | left in replay "
        "| with branches | branches / dialogue | real (branched) | replay (branched) | branch mean "
        "| paired diff ± 95% CI | improved | branch turns | original turns | s |"
    )
    print("|---" * 16 + "|")
    results = {}
    for name, recs in sets.items():
        results[name] = run(recs, args.max_branches)
        print(table_row(name, results[name]), flush=True)

    first = next(iter(results.values()))
    print("\nPaired difference by flagged mistake (sample):\n")
    print("| kind | branches | replay mean | branch mean | paired diff ± 95% CI | improved |")
    print("|---|---|---|---|---|---|")
    groups = defaultdict(list)
    for r in first["rows"]:
        for b in r["branches"]:
            groups[b.parent["kind"]].append((r["replay"], b.ret))
    for kind, pairs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        g = paired_gain(pairs)
        print(
            f"| {kind} | {g['n']} | {g['source']:.3f} | {g['branch']:.3f} "
            f"| {g['diff']:+.3f} ± {g['ci95']:.3f} "
            f"| {g['improved']:.2f} |"
        )
    print(f"\nHindsight counts (sample): {first['stats'].as_dict()}")

    # How the simulator reads real persuader turns (why its replay scores are low).
    from dialogue_gym.core.cards import load_card

    card = load_card("donate")
    rec = recognizer_from_card(card, [card["charity"], "donate", "charity", "children"])
    seen: Counter[str] = Counter()
    total = 0
    for r in sample:
        history: list[str] = []
        for text in Transcript(r.messages).agent_turns:
            a = rec.analyse(text, history)
            history.append(text)
            total += 1
            seen["no act (off topic)" if not a.acts and a.coherent else "an act"] += 1
            for flag in a.flags:
                seen[flag] += 1
    shares = ", ".join(f"{k} {v / total:.2f}" for k, v in seen.most_common())
    print(f"Real persuader turns as the simulator reads them ({total} turns): {shares}")


if __name__ == "__main__":
    main()
