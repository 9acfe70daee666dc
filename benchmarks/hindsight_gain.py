"""Hindsight gain: do regenerated branches beat the dialogues they were made from?

Run: python benchmarks/hindsight_gain.py [--n 300] [--seed 0] [--max-branches 2] [--continuation hindsight]

Per task: N source dialogues from a suboptimal mixture (naive, competent, and competent with 30% /
60% of its turns replaced by the naive agent's; round robin, seeds seed..seed+N-1), then hindsight
with the scripted critics. Prints Markdown tables: per task, the mean return of the sources that got
branches against their branches (paired: each branch minus its own source, with a 95% normal
interval), the share of branches that improved / got worse, and branches per source; then the
paired difference by source agent and by the kind of flagged mistake.

``--blind`` is an ablation: the same flagged turns, but the agent that rewrites them and plays on
gets no hindsight facts (only the conversation so far), so the gain left is that of a better
scripted policy, not of hindsight. ``--continuation competent`` keeps hindsight in the rewritten
turn only.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import dialogue_gym  # noqa: F401
from dialogue_gym.datagen.hindsight import Hindsight, mixture_records, paired_gain
from dialogue_gym.registry import BUILTIN


class BlindHindsight(Hindsight):
    """Ablation: flags as usual, but the rewriting and continuing agent knows no hindsight facts."""

    def __init__(self, **kwargs) -> None:
        super().__init__(rewriter=self, **kwargs)
        self.name, self.model = "blind", None

    def rewrite(self, transcript, flag, critique, critic) -> str:
        return critic.agent({}).act(transcript.before(flag.turn))

    def continuation_agent(self, record, critique):
        if self.continuation == "hindsight":
            return self.critic(record.env_id).agent({})
        return super().continuation_agent(record, critique)


def run_task(env_id: str, n: int, seed: int, blind: bool = False, **kwargs) -> dict:
    """Sources, branches and timings for one task."""
    sources = mixture_records(env_id, n, seed=seed)
    engine = BlindHindsight(**kwargs) if blind else Hindsight(**kwargs)
    start = time.perf_counter()
    branches = [b for s in sources for b in engine.branches(s)]
    seconds = time.perf_counter() - start
    engine.close()
    return {"sources": sources, "branches": branches, "seconds": seconds, "stats": engine.stats}


def fmt(g: dict) -> str:
    return f"{g['diff']:+.3f} ± {g['ci95']:.3f} (n={g['n']})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="source dialogues per task")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-branches", type=int, default=2)
    ap.add_argument("--continuation", default="hindsight", help="hindsight, competent or naive")
    ap.add_argument("--env", action="append", help="env id (repeatable); default: the four built-ins")
    ap.add_argument("--blind", action="store_true", help="ablation: agents get no hindsight facts")
    args = ap.parse_args()
    env_ids = args.env or list(BUILTIN)
    print(
        f"Hindsight gain: {args.n} source dialogues per task (mixture naive / competent / noisy30 / noisy60, "
        f"seeds {args.seed}..{args.seed + args.n - 1}), max {args.max_branches} branches each, "
        f"continuation {args.continuation!r}{', BLIND (no hindsight facts)' if args.blind else ''}; "
        "paired difference = branch return - its source's return\n"
    )
    print(
        "| env | sources | with branches | branches / source | source mean | branch mean "
        "| paired diff ± 95% CI | improved | worse | regen. s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    details = {}
    for env_id in env_ids:
        res = run_task(
            env_id,
            args.n,
            args.seed,
            blind=args.blind,
            max_branches=args.max_branches,
            continuation=args.continuation,
        )
        by_id = {s.id: s for s in res["sources"]}
        pairs = [(by_id[b.parent["id"]].ret, b.ret) for b in res["branches"]]
        g = paired_gain(pairs)
        worse = sum(b < s - 1e-9 for s, b in pairs) / max(len(pairs), 1)
        branched = len({b.parent["id"] for b in res["branches"]})
        print(
            f"| {env_id} | {len(res['sources'])} | {branched} "
            f"| {len(res['branches']) / len(res['sources']):.2f} "
            f"| {g['source']:.3f} | {g['branch']:.3f} | {g['diff']:+.3f} ± {g['ci95']:.3f} "
            f"| {g['improved']:.2f} | {worse:.2f} | {res['seconds']:.1f} |",
            flush=True,
        )
        details[env_id] = (res, by_id)
    print("\nPaired difference by source agent (branch - source, ± 95% CI):\n")
    strategies = ("naive", "competent", "noisy30", "noisy60")
    print("| env | " + " | ".join(strategies) + " |")
    print("|---" * (len(strategies) + 1) + "|")
    for env_id, (res, by_id) in details.items():
        groups = defaultdict(list)
        for b in res["branches"]:
            s = by_id[b.parent["id"]]
            groups[s.provenance["strategy"]].append((s.ret, b.ret))
        cells = [fmt(paired_gain(groups[s])) if groups[s] else "no branches" for s in strategies]
        print(f"| {env_id} | " + " | ".join(cells) + " |")
    print("\nPaired difference by flagged mistake:\n")
    print("| env | kind | branches | source mean | branch mean | paired diff ± 95% CI | improved |")
    print("|---|---|---|---|---|---|---|")
    for env_id, (res, by_id) in details.items():
        groups = defaultdict(list)
        for b in res["branches"]:
            groups[b.parent["kind"]].append((by_id[b.parent["id"]].ret, b.ret))
        for kind, pairs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            g = paired_gain(pairs)
            print(
                f"| {env_id} | {kind} | {g['n']} | {g['source']:.3f} | {g['branch']:.3f} "
                f"| {g['diff']:+.3f} ± {g['ci95']:.3f} | {g['improved']:.2f} |"
            )


if __name__ == "__main__":
    main()
