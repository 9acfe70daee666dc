"""Why the experiment's ordering holds or fails (issue 5): what the data offer, how the agents act.

Reads what ``benchmarks/experiment.py`` left in ``OUT`` and writes ``OUT/eval/analysis.md``:

1. **Data coverage**, per env and training set (train split): the return of each generating
   strategy, the share of the return's variance that the strategy explains (eta squared; the
   rest is the persona and noise), how much of filtered BC's top share each strategy supplies,
   and how many personas have more than one dialogue (the within-persona contrast that hindsight
   branches add: the only place where the data say what a different move does to the *same* person).
2. **Behaviour** of every evaluated agent: turns, how episodes end, and the mean of each numeric
   field of the task's outcome breakdown (e.g. Donate's ``asked`` and ``annoyance``).
3. Optionally, **an ILQL inference sweep** (``--sweep PATH``): the checkpoint played at several
   ``beta`` values on *dev* personas (tuning on the test personas would leak), to tell a Q function
   that carries no usable signal (flat in beta) from one that is under-weighted (rising in beta).
4. Optionally, **a heads probe** (``--probe PATH``) and **a learning curve** (``--curve RUN``: every
   ``checkpoint-N`` of one ILQL run probed and played at ``--betas`` on dev personas), to see
   whether the value heads learn the data's return as training goes on.

Run::

    python benchmarks/experiment_analysis.py --out runs/experiment
    python benchmarks/experiment_analysis.py --out runs/experiment-long \
        --sweep runs/experiment-long/DialogueDonate-v0/imagined-ilql --betas 0 1 4 16 --episodes 150
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from collections import Counter, defaultdict
from pathlib import Path
from statistics import StatisticsError, correlation, fmean
from typing import Any

import dialogue_gym  # noqa: F401
from dialogue_gym.algos.data import load_training_records, top_fraction
from dialogue_gym.datagen.records import Record


def strategy(record: Record) -> str:
    """The generator of a record: the scripted strategy, ``hindsight`` or the LLM model."""
    prov = record.provenance
    if prov.get("generator") == "hindsight":
        return "hindsight branch"
    return str(prov.get("strategy") or prov.get("model") or prov.get("generator") or "?")


def eta_squared(groups: dict[str, list[float]]) -> float:
    """Share of the variance of all values that the group means explain (between / total)."""
    values = [v for vs in groups.values() for v in vs]
    mean = fmean(values)
    total = sum((v - mean) ** 2 for v in values)
    between = sum(len(vs) * (fmean(vs) - mean) ** 2 for vs in groups.values())
    return between / total if total > 0 else math.nan


def data_section(env_id: str, out: Path, fraction: float) -> list[str]:
    lines = []
    for name in ("imagined", "hindsight"):
        path = out / env_id / f"{name}.jsonl"
        if not path.is_file():
            continue
        records = load_training_records(path, env_id, "train")
        top = {r.id for r in top_fraction(records, fraction)}
        groups: dict[str, list[Record]] = defaultdict(list)
        for r in records:
            groups[strategy(r)].append(r)
        per_persona: dict[str, list[float]] = defaultdict(list)
        for r in records:
            per_persona[r.persona_id].append(r.ret)
        spread = [max(rs) - min(rs) for rs in per_persona.values() if len(rs) > 1]
        eta = eta_squared({k: [r.ret for r in v] for k, v in groups.items()})
        lines += [
            f"### {env_id}: {name} ({len(records)} train dialogues)",
            "",
            f"Return variance explained by the generating strategy: eta² = {eta:.2f}. "
            f"Personas with more than one dialogue: {len(spread)} of {len(per_persona)}"
            + (f" (mean best-minus-worst return among them {fmean(spread):.3f})." if spread else "."),
            "",
            f"| strategy | dialogues | mean return | best | share of data | share of top {fraction:.0%} |",
            "|---|---|---|---|---|---|",
        ]
        for k, rs in sorted(groups.items(), key=lambda kv: -fmean(r.ret for r in kv[1])):
            in_top = sum(r.id in top for r in rs)
            lines.append(
                f"| {k} | {len(rs)} | {fmean(r.ret for r in rs):.3f} | {max(r.ret for r in rs):.3f} | "
                f"{len(rs) / len(records):.0%} | {in_top / len(top):.0%} |"
            )
        lines.append("")
    return lines


def numeric_fields(outcome: dict[str, Any]) -> dict[str, float]:
    """Top-level numbers and booleans of an outcome breakdown."""
    return {k: float(v) for k, v in outcome.items() if isinstance(v, (int, float, bool))}


def list_fields(outcome: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Top-level lists of an outcome breakdown (e.g. Prefs' ``picks`` and ``violations``), each
    as a sorted tuple, so that two episodes with the same items compare equal."""
    return {k: tuple(sorted(map(str, v))) for k, v in outcome.items() if isinstance(v, list)}


def read_rows(results: Path) -> list[dict[str, Any]]:
    """The episode rows of a leaderboard store."""
    return [json.loads(line) for line in results.open(encoding="utf-8") if line.strip()]


def behaviour_section(rows: list[dict[str, Any]], env_id: str, personas: str = "test") -> list[str]:
    rows = [r for r in rows if r["env_id"] == env_id and not r.get("error")]
    if not rows:
        return []
    by_agent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    hashes: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        hashes[r["agent"]].add(r["agent_hash"])
    for r in rows:  # one name played with several settings (e.g. --ilql-beta runs): tell them apart
        name = r["agent"] if len(hashes[r["agent"]]) == 1 else f"{r['agent']} [{r['agent_hash'][:8]}]"
        by_agent[name].append(r)
    fields = sorted({k for r in rows for k in numeric_fields(r.get("outcome") or {})})
    lists = sorted({k for r in rows for k in list_fields(r.get("outcome") or {})})
    ends = sorted({r["end_reason"] for r in rows})
    head = ["agent", "episodes", "return", "turns", *(f"end: {e}" for e in ends), *fields]
    # a list field: how many distinct lists the agent produced, and in how many episodes it was not empty
    head += [f"{f}: {what}" for f in lists for what in ("distinct", "non-empty")]
    lines = [f"### {env_id}: agent behaviour ({personas} personas)", "", "| " + " | ".join(head) + " |"]
    lines.append("|" + "---|" * len(head))
    for agent, rs in sorted(by_agent.items(), key=lambda kv: -fmean(r["return"] for r in kv[1])):
        reasons = Counter(r["end_reason"] for r in rs)
        nums = [numeric_fields(r.get("outcome") or {}) for r in rs]
        seqs = [list_fields(r.get("outcome") or {}) for r in rs]
        cells = [
            agent,
            str(len(rs)),
            f"{fmean(r['return'] for r in rs):.3f}",
            f"{fmean(r['turns'] for r in rs):.1f}",
            *(f"{reasons[e] / len(rs):.0%}" for e in ends),
            *(f"{fmean(n.get(f, math.nan) for n in nums):.2f}" for f in fields),
        ]
        for f in lists:
            cells += [str(len({q.get(f, ()) for q in seqs})), f"{fmean(bool(q.get(f)) for q in seqs):.0%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _play_dev(
    players: list[tuple[str, Path, float]], top_k: int, episodes: int, seed: int, out_dir: Path
) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """Play each ``(name, ILQL checkpoint, beta)`` on dev personas through the leaderboard runner
    (results kept in ``out_dir``, so a rerun resumes); returns the cells by name, the rows and the
    env id."""
    from dialogue_gym.agents.configs import config_from_dict
    from dialogue_gym.algos.checkpoint import read_meta
    from dialogue_gym.leaderboard.report import build_report
    from dialogue_gym.leaderboard.runner import Settings, play

    first = players[0][1]
    env_id = read_meta(first, "ilql")["env_id"]
    agents = [
        config_from_dict(
            {"name": name, "kind": "checkpoint", "path": str(path), "kwargs": {"beta": b, "top_k": top_k}}
        )
        for name, path, b in players
    ]
    settings = Settings(
        agents=agents,
        env_ids=[env_id],
        episodes=episodes,
        seed=seed,
        persona_split="dev",
        out_dir=out_dir,
    )
    _, rows = play(settings)
    cells = {c.agent: c for s in build_report(rows).sections for t in s.envs for c in t.cells}
    return cells, rows, env_id


def dev_store(agent_dir: Path) -> Path:
    """Where dev-persona results of an experiment's agent ``OUT/<env>/<name>`` are kept: OUT/eval-dev."""
    return agent_dir.parent.parent / "eval-dev"


def sweep_section(path: Path, betas: list[float], episodes: int, top_k: int, seed: int) -> list[str]:
    """Play the ILQL checkpoint at each beta on dev personas through the leaderboard runner."""
    players = [(f"ilql beta={b:g}", path, b) for b in betas]
    cells, rows, env_id = _play_dev(players, top_k, episodes, seed, dev_store(path))
    lines = [
        f"### ILQL inference sweep: `{path}` on {episodes} dev personas of {env_id}",
        "",
        "| agent | return | 95% CI |",
        "|---|---|---|",
    ]
    for name in [name for name, _, _ in players] + ["naive", "oracle"]:
        if name in cells:
            r = cells[name].ret
            lines.append(f"| {name} | {r.mean:.3f} | [{r.lo:.3f}, {r.hi:.3f}] |")
    return [*lines, "", *behaviour_section(rows, env_id, "dev")]


def _corr(x: list[float], y: list[float]) -> float:
    """Pearson correlation (the standard library's), 0 where either side is constant."""
    if len(x) != len(y):
        raise ValueError(f"{len(x)} values against {len(y)} returns: the turn starts do not line up")
    try:
        return correlation(x, y)
    except StatisticsError:  # fewer than two points, or a constant side
        return 0.0


def probe_heads(path: Path, data: Path, n: int, top_k: int) -> dict[str, Any]:
    """Read an ILQL checkpoint's heads on ``n`` dev dialogues of ``data``: V where a turn starts
    (and how well it follows the data's return from there) vs inside a turn, and inside a turn
    the advantage of the data's next token vs of ending the turn, and how often ending the turn
    would win the shifted top-k choice."""
    import torch

    from dialogue_gym.algos.checkpoint import read_meta
    from dialogue_gym.algos.data import encode_record
    from dialogue_gym.algos.ilql import load_agent
    from dialogue_gym.algos.models import hidden_states

    meta = read_meta(path, "ilql")
    agent = load_agent(path, device="cpu")  # the agent's own LM, tokenizer and ILQL heads
    lm, tokenizer, ilql = agent.model, agent.tokenizer, agent.logits_processor
    eot = agent.stop_ids[0]
    records = load_training_records(data, meta["env_id"], "dev")[:n]
    gamma = float(meta["config"].get("gamma", 0.99))
    v_start, v_mid, a_taken, a_eot, to_go = [], [], [], [], []
    wins = {1.0: 0, 4.0: 0}
    with torch.no_grad():
        for record in records:
            enc = encode_record(record, tokenizer, meta["config"].get("max_length"))
            ids = torch.tensor([enc.input_ids])
            mask = torch.tensor(enc.agent_mask, dtype=torch.bool)
            h = hidden_states(lm, ids, torch.ones_like(ids))[0]
            pos = torch.nonzero(mask[1:]).squeeze(-1) + 1  # agent tokens (actions); state at pos - 1
            hs = h[pos - 1]
            v = ilql.heads.values(hs)
            adv = ilql.advantage(hs)
            logits = lm.get_output_embeddings()(hs)
            start = ~mask[pos - 1]
            taken = ids[0, pos]
            inside = ~start & (taken != eot)  # mid-utterance states where the data went on
            v_start += v[start].tolist()
            # the data's return from each turn start on, discounted per turn as ILQL's targets are
            rtg, rest = [], 0.0
            for reward in reversed(enc.turn_rewards):
                rest = reward + gamma * rest
                rtg.append(rest)
            to_go += rtg[::-1]
            v_mid += v[inside].tolist()
            a_taken += adv[inside].gather(-1, taken[inside, None]).squeeze(-1).tolist()
            a_eot += adv[inside, eot].tolist()
            kth = logits[inside].topk(top_k, dim=-1).values[:, -1:]
            for beta in wins:
                shifted = (logits[inside] + beta * adv[inside]).masked_fill(logits[inside] < kth, -1e9)
                wins[beta] += int((shifted.argmax(-1) == eot).sum())
    return {
        "dialogues": len(records),
        "v_start": fmean(v_start),
        "n_start": len(v_start),
        "v_mid": fmean(v_mid),
        "n_mid": len(v_mid),
        "to_go": fmean(to_go),
        "corr": _corr(v_start, to_go),
        "a_taken": fmean(a_taken),
        "a_eot": fmean(a_eot),
        "eot_wins": {b: w / len(a_eot) for b, w in wins.items()},
    }


def probe_section(path: Path, data: Path, n: int, top_k: int) -> list[str]:
    """:func:`probe_heads` as a report section."""
    f = probe_heads(path, data, n, top_k)
    return [
        f"### ILQL heads probe: `{path}` on {f['dialogues']} dev dialogues of `{data}`",
        "",
        f"- V at turn starts {f['v_start']:.3f} (n={f['n_start']}), inside turns {f['v_mid']:.3f} "
        f"(n={f['n_mid']}); the data's return from a turn start on {f['to_go']:.3f}, its correlation "
        f"with V there {f['corr']:.2f}.",
        f"- Inside turns, advantage Q - V of the data's next token {f['a_taken']:.3f}, of ending the "
        f"turn there {f['a_eot']:.3f}.",
        *(
            f"- Ending the turn wins the shifted top-{top_k} choice at beta={b:g} in {share:.0%} of "
            "mid-utterance states."
            for b, share in f["eot_wins"].items()
        ),
        "",
    ]


def curve_section(
    run: Path, data: Path, betas: list[float], episodes: int, top_k: int, seed: int, n: int
) -> list[str]:
    """A learning curve from one ILQL run: each Trainer checkpoint (``checkpoint-N``, in step
    order) probed as :func:`probe_heads` does and played at each beta on the same dev personas
    (``episodes`` 0: probed only). With ``detach_heads`` the body learns by imitation alone, so
    beta 0 is close to BC at that step (the heads still share the gradient-norm clipping)."""

    def step(path: Path) -> int:
        return int(path.name.rpartition("-")[2])

    ckpts = sorted((c for c in run.glob("checkpoint-*") if c.name.rpartition("-")[2].isdigit()), key=step)
    if not ckpts:
        raise SystemExit(f"--curve: no checkpoint-N directories in {run}")
    betas = betas if episodes > 0 else []
    players = [(f"{c.name} beta={b:g}", c, b) for c in ckpts for b in betas]
    cells: dict[str, Any] = {}
    if players:
        cells, _, _ = _play_dev(players, top_k, episodes, seed, dev_store(run))
    head = "".join(f" return at beta={b:g} [95% CI] |" for b in betas)
    lines = [
        f"### ILQL learning curve: `{run}`, "
        + (f"{episodes} dev personas per cell, " if betas else "")
        + f"heads probed on {n} dev dialogues of `{data}`",
        "",
        f"| step | V at turn starts | corr. with return to go | A(data token) | A(end turn) |{head}",
        "|---" * (5 + len(betas)) + "|",
    ]
    for c in ckpts:
        f = probe_heads(c, data, n, top_k)
        rets = [cells[f"{c.name} beta={b:g}"].ret for b in betas]
        figures = [
            str(step(c)),
            f"{f['v_start']:.2f} (data {f['to_go']:.2f})",
            f"{f['corr']:.2f}",
            f"{f['a_taken']:.3f}",
            f"{f['a_eot']:.3f}",
            *(f"{r.mean:.3f} [{r.lo:.3f}, {r.hi:.3f}]" for r in rets),
        ]
        lines.append("| " + " | ".join(figures) + " |")
    return [*lines, ""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/experiment"), help="the experiment's --out")
    p.add_argument("--envs", nargs="*", help="env ids (default: every env dir in OUT)")
    p.add_argument("--top-fraction", type=float, default=0.3, help="as filtered BC was trained")
    p.add_argument("--sweep", type=Path, help="an ILQL checkpoint to play at several betas")
    p.add_argument("--betas", type=float, nargs="+", default=[0.0, 1.0, 4.0, 16.0])
    p.add_argument("--top-k", type=int, default=20, help="ILQL inference: the policy's top-k tokens")
    p.add_argument("--episodes", type=int, default=150, help="dev episodes per beta")
    p.add_argument("--seed", type=int, default=20_000, help="first dev seed")
    p.add_argument("--probe", type=Path, help="an ILQL checkpoint whose heads to read on dev dialogues")
    p.add_argument("--probe-data", type=Path, help="the dataset for --probe (its env's imagined.jsonl)")
    p.add_argument("--probe-dialogues", type=int, default=50)
    p.add_argument(
        "--curve", type=Path, help="an ILQL run dir: probe and play (--betas, dev) each checkpoint-N in it"
    )
    args = p.parse_args()

    envs = args.envs or sorted(d.name for d in args.out.iterdir() if (d / "imagined.jsonl").is_file())
    results = args.out / "eval" / "results.jsonl"
    command = " ".join(["python benchmarks/experiment_analysis.py", *map(shlex.quote, sys.argv[1:])])
    lines = ["# Experiment analysis", "", f"Made by `{command}`.", ""]
    for env_id in envs:
        lines += data_section(env_id, args.out, args.top_fraction)
        if results.is_file():
            lines += behaviour_section(read_rows(results), env_id)
    if args.sweep:
        lines += sweep_section(args.sweep, args.betas, args.episodes, args.top_k, args.seed)
    if args.probe:
        data = args.probe_data or args.probe.parent / "imagined.jsonl"
        lines += probe_section(args.probe, data, args.probe_dialogues, args.top_k)
    if args.curve:
        data = args.probe_data or args.curve.parent / "imagined.jsonl"
        n = args.probe_dialogues
        lines += curve_section(args.curve, data, args.betas, args.episodes, args.top_k, args.seed, n)
    target = args.out / "eval" / "analysis.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
