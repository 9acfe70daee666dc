"""Tables from result rows: per env and overall, as Markdown, CSV and a PNG plot.

Rows are grouped into sections by human backend and protocol (persona split, turn limit): results
with different humans are never ranked together. Within a section each env's rows must come from
one env version and card, and one env may appear in one version only; otherwise building the
report raises :class:`~dialogue_gym.leaderboard.store.StoreError`.

Per env and agent: mean return over task seeds (trials averaged within a seed) with its bootstrap
interval, the normalised score (0 = naive, 100 = oracle, their means over the same seeds),
success rate, pass^k, mean turns, tokens per episode and total cost. Overall: the mean normalised
score over the section's envs, its interval from the per-env bootstrap draws (independent per env,
averaged draw by draw). Error rows are counted and left out of the statistics.
"""

from __future__ import annotations

import csv
import math
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dialogue_gym.agents.configs import reference_config
from dialogue_gym.leaderboard.stats import (
    N_RESAMPLES,
    NAN,
    Interval,
    bootstrap_means,
    normalise,
    pass_k,
    percentile_interval,
    tied_ranks,
)
from dialogue_gym.leaderboard.store import StoreError

NAIVE, ORACLE = (reference_config(level).hash for level in ("naive", "oracle"))


@dataclass
class Cell:
    """One agent's results on one env (or overall, ``env_id == "overall"``)."""

    agent: str
    agent_key: str
    agent_hash: str
    kind: str
    env_id: str
    episodes: int = 0
    errors: int = 0
    ret: Interval = NAN
    score: Interval = NAN
    success: float = math.nan
    passk: dict[int, float] = field(default_factory=dict)
    turns: float = math.nan
    tokens: float = math.nan
    cost: float = 0.0
    seeds: list[int] = field(default_factory=list)
    envs: int = 1
    rank: int = 0
    first_error: str | None = None
    score_draws: np.ndarray | None = field(default=None, repr=False)


@dataclass
class EnvTable:
    env_id: str
    version: int | None
    fingerprint: str
    cells: list[Cell]


@dataclass
class Section:
    """The tables of one human backend and protocol."""

    human: str
    human_key: str
    human_model: str | None
    protocol: str
    envs: list[EnvTable]
    overall: list[Cell]
    trials: int
    package_versions: list[str]
    git_commits: list[str]

    @property
    def title(self) -> str:
        split, _, turns = self.protocol.partition("/")
        model = f" ({self.human_model})" if self.human_model else ""
        limit = "the task's turn limit" if turns == "card" else f"at most {turns} turns"
        return f"Human: {self.human_key}{model} · personas: {split} split · {limit}"


@dataclass
class Report:
    sections: list[Section]
    n_resamples: int = N_RESAMPLES
    ci_seed: int = 0
    pass_ks: tuple[int, ...] = ()
    skipped: list[str] = field(default_factory=list)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # agent_key -> provenance
    command: str | None = None


def _stream(ci_seed: int, *parts: str) -> list[int]:
    """A bootstrap seed per cell, stable whatever else is in the table."""
    return [ci_seed, *(zlib.crc32(p.encode()) for p in parts)]


def _cell(
    rows: list[dict[str, Any]],
    refs: Mapping[str, dict[int, list[float]]],
    n_resamples: int,
    ci_seed: int,
    pass_ks: Sequence[int],
) -> Cell:
    first = rows[-1]
    cell = Cell(first["agent"], first["agent_key"], first["agent_hash"], first["agent_kind"], first["env_id"])
    ok = [r for r in rows if not r.get("error")]
    cell.episodes, cell.errors = len(rows), len(rows) - len(ok)
    errors = [r["error"] for r in rows if r.get("error")]
    cell.first_error = errors[0] if errors else None
    cell.cost = sum(r["cost"]["agent"] + r["cost"]["human"] for r in rows)
    if not ok:
        return cell
    by_seed: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in ok:
        by_seed[r["seed"]].append(r)
    cell.seeds = sorted(by_seed)
    per_seed = np.array([np.mean([r["return"] for r in by_seed[s]]) for s in cell.seeds])
    draws = bootstrap_means(per_seed, n_resamples, _stream(ci_seed, cell.env_id, cell.agent_key))
    cell.ret = percentile_interval(float(per_seed.mean()), draws)
    naive, oracle = (_ref_mean(refs.get(h, {}), cell.seeds) for h in (NAIVE, ORACLE))
    score = normalise(draws, naive, oracle)
    if not np.isnan(score).all():
        cell.score_draws = score
        cell.score = percentile_interval(float(normalise(cell.ret.mean, naive, oracle)), score)
    succ = [r["success"] for r in ok if r.get("success") is not None]
    if succ:
        cell.success = float(np.mean(succ))
        trials = [[r["success"] for r in by_seed[s] if r.get("success") is not None] for s in cell.seeds]
        cell.passk = {k: pass_k(trials, k) for k in pass_ks}
    cell.turns = float(np.mean([r["turns"] for r in ok]))
    cell.tokens = float(np.mean([sum(r["tokens"].values()) for r in ok]))
    return cell


def _ref_mean(by_seed: Mapping[int, list[float]], seeds: Sequence[int]) -> float:
    """A reference agent's mean return over ``seeds`` (NaN unless it has all of them)."""
    if not by_seed or any(s not in by_seed for s in seeds):
        return math.nan
    return float(np.mean([np.mean(by_seed[s]) for s in seeds]))


def _rank(cells: list[Cell], by: str) -> list[Cell]:
    intervals = [getattr(c, by) for c in cells]
    for c, rank in zip(cells, tied_ranks(intervals), strict=True):
        c.rank = rank
    return sorted(
        cells, key=lambda c: (c.rank == 0, -np.nan_to_num(getattr(c, by).mean, nan=-np.inf), c.agent)
    )


def _agents_across_envs(envs: list[EnvTable]) -> list[list[Cell]]:
    """The env cells of each agent config. A checkpoint config has one key per env (its config
    hash plus that env's checkpoint fingerprint) but is one agent: cells group by config hash,
    unless one config has cells of two checkpoints on one env, which stay apart by key."""
    by_hash: dict[str, list[Cell]] = defaultdict(list)
    for table in envs:
        for c in table.cells:
            by_hash[c.agent_hash].append(c)
    groups = []
    for cells in by_hash.values():
        if len({c.env_id for c in cells}) == len(cells):
            groups.append(cells)
        else:
            by_key: dict[str, list[Cell]] = defaultdict(list)
            for c in cells:
                by_key[c.agent_key].append(c)
            groups += by_key.values()
    return groups


def _overall(envs: list[EnvTable], n_resamples: int) -> list[Cell]:
    scored_envs = {t.env_id for t in envs if any(c.score_draws is not None for c in t.cells)}
    out = []
    for cells in _agents_across_envs(envs):
        first = cells[0]
        key = first.agent_key if len({c.agent_key for c in cells}) == 1 else first.agent_hash[:16]
        cell = Cell(first.agent, key, first.agent_hash, first.kind, "overall", envs=len(cells))
        cell.episodes = sum(c.episodes for c in cells)
        cell.errors = sum(c.errors for c in cells)
        cell.cost = sum(c.cost for c in cells)
        scored = [c for c in cells if c.score_draws is not None]
        if scored and {c.env_id for c in scored} == scored_envs:
            draws = np.mean([c.score_draws for c in scored], axis=0)
            cell.score = percentile_interval(float(np.mean([c.score.mean for c in scored])), draws)
        for name in ("success", "turns", "tokens"):
            values = [getattr(c, name) for c in cells if not math.isnan(getattr(c, name))]
            setattr(cell, name, float(np.mean(values)) if values else math.nan)
        out.append(cell)
    return _rank(out, "score")


def build_report(
    rows: Iterable[Mapping[str, Any]],
    *,
    n_resamples: int = N_RESAMPLES,
    ci_seed: int = 0,
    pass_ks: Sequence[int] = (),
) -> Report:
    """Sections of per-env and overall tables from result rows (see the module docstring)."""
    sections: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        sections[(row["human_key"], row["protocol"])].append(dict(row))
    report = Report([], n_resamples, ci_seed, tuple(pass_ks))
    for (human_key, protocol), srows in sorted(sections.items()):
        by_env: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in srows:
            by_env[r["env_id"]].append(r)
        _check_versions(by_env, human_key)
        tables = []
        for env_id, erows in sorted(by_env.items()):
            refs: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
            by_agent: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for r in erows:
                by_agent[r["agent_key"]].append(r)
                if r["agent_hash"] in (NAIVE, ORACLE) and not r.get("error"):
                    refs[r["agent_hash"]][r["seed"]].append(r["return"])
            cells = [_cell(a, refs, n_resamples, ci_seed, pass_ks) for a in by_agent.values()]
            tables.append(
                EnvTable(env_id, erows[0]["env_version"], erows[0]["env_fingerprint"], _rank(cells, "ret"))
            )
            for c in cells:
                report.configs.setdefault(
                    c.agent_key, {"agent": c.agent, "kind": c.kind, "hash": c.agent_hash}
                )
        first = srows[0]
        section = Section(
            human=first["human"],
            human_key=human_key,
            human_model=first.get("human_model"),
            protocol=protocol,
            envs=tables,
            overall=_overall(tables, n_resamples),
            trials=1 + max(r["trial"] for r in srows),
            package_versions=sorted({str(r.get("package_version")) for r in srows}),
            git_commits=sorted({str(r.get("git_commit")) for r in srows}),
        )
        report.sections.append(section)
    return report


def _check_versions(by_env: Mapping[str, list[dict[str, Any]]], human_key: str) -> None:
    """Refuse rows of one env from different env versions or cards, and two versions of one env."""
    names: dict[str, str] = {}
    for env_id, rows in by_env.items():
        versions = {(r.get("env_version"), r.get("env_fingerprint")) for r in rows}
        if len(versions) > 1:
            found = ", ".join(f"version {v} card {f}" for v, f in sorted(versions, key=str))
            raise StoreError(
                f"the results for {env_id} (human {human_key}) mix different env versions ({found}); "
                "results of different env versions are never ranked together"
            )
        name = env_id.rsplit("-v", 1)[0]
        if name in names:
            raise StoreError(
                f"the results hold two versions of one env, {names[name]} and {env_id} (human {human_key}); "
                "they are never ranked together: select one with --env"
            )
        names[name] = env_id


# ------------------------------------------------------------------------------------------ output


def _pct(x: float) -> str:
    return "—" if math.isnan(x) else f"{100 * x:.0f}%"


def _num(x: float, digits: int = 1) -> str:
    return "—" if math.isnan(x) else f"{x:,.{digits}f}"


def _seeds(section: Section) -> str:
    seeds = sorted({s for t in section.envs for c in t.cells for s in c.seeds})
    if not seeds:
        return "no seeds"
    span = (
        f"{seeds[0]}..{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else f"{len(seeds)} seeds"
    )
    return f"task seeds {span}, {section.trials} trial(s) each"


def to_markdown(report: Report) -> str:
    """The leaderboard as Markdown."""
    lines = ["# dialogue-gym leaderboard", ""]
    if report.command:
        lines += [f"Produced by `{report.command}`.", ""]
    lines += [
        f"Mean return per episode with 95% bootstrap intervals ({report.n_resamples} resamples of the "
        f"task seeds, seed {report.ci_seed}). **Score**: the mean return normalised to 0 = the naive "
        "reference agent and 100 = the oracle, from their results on the same seeds and human. **Rank**: "
        "1 + the number of agents whose interval lies wholly above (overlapping intervals tie). pass^k: the "
        "chance that k i.i.d. trials of a task all succeed (unbiased estimate C(c,k)/C(n,k)). Episodes "
        "where the agent raised or returned no utterance, or the human's backend failed, are counted as "
        "errors and left out of the statistics.",
        "",
    ]
    for section in report.sections:
        lines += [f"## {section.title}", ""]
        lines += [
            f"dialogue-gym {', '.join(section.package_versions)}, commit {', '.join(section.git_commits)}; "
            f"{_seeds(section)}.",
            "",
            "### Overall (normalised score, mean over envs)",
            "",
            "| rank | agent | score [95% CI] | envs | success | turns | tokens/ep | cost $ | episodes "
            "| errors |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in section.overall:
            lines.append(
                f"| {c.rank or '—'} | {c.agent} | {c.score.fmt(1)} | {c.envs}/{len(section.envs)} | "
                f"{_pct(c.success)} | {_num(c.turns)} | {_num(c.tokens, 0)} | {c.cost:.4f} | {c.episodes} | "
                f"{c.errors} |"
            )
        ks = report.pass_ks
        for table in section.envs:
            lines += [
                "",
                f"### {table.env_id} (version {table.version}, card {table.fingerprint})",
                "",
                "| rank | agent | return [95% CI] | score [95% CI] | success | "
                + "".join(f"pass^{k} | " for k in ks)
                + "turns | tokens/ep | cost $ | episodes | errors |",
                "|---|---|---|---|---|" + "---|" * len(ks) + "---|---|---|---|---|",
            ]
            for c in table.cells:
                passes = "".join(f"{_num(c.passk.get(k, math.nan), 3)} | " for k in ks)
                lines.append(
                    f"| {c.rank or '—'} | {c.agent} | {c.ret.fmt(3)} | {c.score.fmt(1)} | "
                    f"{_pct(c.success)} | {passes}{_num(c.turns)} | {_num(c.tokens, 0)} | {c.cost:.4f} | "
                    f"{c.episodes} | {c.errors} |"
                )
        errors = [(t.env_id, c) for t in section.envs for c in t.cells if c.first_error]
        if errors:
            lines += ["", "Errors (first message per agent and env):", ""]
            lines += [f"- {c.agent} on {env}: {c.errors} × `{c.first_error[:300]}`" for env, c in errors]
        lines.append("")
    lines += ["## Agents", "", "| agent | kind | config hash |", "|---|---|---|"]
    for key, cfg in sorted(report.configs.items(), key=lambda kv: kv[1]["agent"]):
        extra = f" (checkpoint {key.partition('-')[2]})" if "-" in key else ""
        lines.append(f"| {cfg['agent']} | {cfg['kind']} | `{cfg['hash'][:16]}`{extra} |")
    if report.skipped:
        lines += ["", "Skipped:", ""] + [f"- {s}" for s in report.skipped]
    return "\n".join(lines) + "\n"


CSV_COLUMNS = (
    "human", "human_key", "human_model", "protocol", "env_id", "env_version", "env_fingerprint", "rank",
    "agent", "agent_kind", "agent_hash", "agent_key", "mean_return", "return_lo", "return_hi", "score",
    "score_lo", "score_hi", "success", "pass_k", "turns", "tokens_per_episode", "cost", "episodes", "errors",
    "seeds", "trials", "package_version", "git_commit", "n_resamples", "ci_seed",
)  # fmt: skip


def to_csv_rows(report: Report) -> list[dict[str, Any]]:
    """One CSV row per agent per env and overall, each carrying what produced it."""
    out = []
    for s in report.sections:
        tables = [(t.env_id, t.version, t.fingerprint, t.cells) for t in s.envs]
        for env_id, version, fingerprint, cells in [*tables, ("overall", None, None, s.overall)]:
            for c in cells:
                out.append(
                    {
                        "human": s.human,
                        "human_key": s.human_key,
                        "human_model": s.human_model,
                        "protocol": s.protocol,
                        "env_id": env_id,
                        "env_version": version,
                        "env_fingerprint": fingerprint,
                        "rank": c.rank or "",
                        "agent": c.agent,
                        "agent_kind": c.kind,
                        "agent_hash": c.agent_hash,
                        "agent_key": c.agent_key,
                        "mean_return": c.ret.mean,
                        "return_lo": c.ret.lo,
                        "return_hi": c.ret.hi,
                        "score": c.score.mean,
                        "score_lo": c.score.lo,
                        "score_hi": c.score.hi,
                        "success": c.success,
                        "pass_k": ";".join(f"{k}:{v:.4f}" for k, v in c.passk.items()),
                        "turns": c.turns,
                        "tokens_per_episode": c.tokens,
                        "cost": c.cost,
                        "episodes": c.episodes,
                        "errors": c.errors,
                        "seeds": _seeds(s),
                        "trials": s.trials,
                        "package_version": ";".join(s.package_versions),
                        "git_commit": ";".join(s.git_commits),
                        "n_resamples": report.n_resamples,
                        "ci_seed": report.ci_seed,
                    }
                )
    return out


def write_csv(report: Report, path: str | Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in to_csv_rows(report):
            writer.writerow({k: _csv_value(v) for k, v in row.items()})


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return "" if v is None else v


def plot(report: Report, path: str | Path) -> list[Path]:
    """Normalised scores with intervals, one panel per env plus overall; one PNG per section
    (``path``, then ``path`` with ``-2``, ``-3``... for further human backends)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    written = []
    for i, s in enumerate(report.sections):
        panels = [(t.env_id, t.cells) for t in s.envs] + [("overall", s.overall)]
        agents = [c.agent for c in s.overall]
        fig, axes = plt.subplots(
            1, len(panels), figsize=(3.2 * len(panels), 0.45 * len(agents) + 1.6), sharey=True, squeeze=False
        )
        for ax, (title, cells) in zip(axes[0], panels, strict=True):
            by_name = {c.agent: c for c in cells}
            for y, name in enumerate(agents):
                c = by_name.get(name)
                if c is None or math.isnan(c.score.mean):
                    continue
                err = [[c.score.mean - c.score.lo], [c.score.hi - c.score.mean]]
                ax.errorbar(
                    c.score.mean,
                    y,
                    xerr=err,
                    fmt="o",
                    capsize=3,
                    color="tab:blue" if title != "overall" else "tab:red",
                )
            ax.axvline(0, color="grey", lw=0.8, ls=":")
            ax.axvline(100, color="grey", lw=0.8, ls=":")
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("score (naive 0, oracle 100)", fontsize=8)
            ax.set_yticks(range(len(agents)), agents, fontsize=8)
            ax.invert_yaxis()
        fig.suptitle(s.title, fontsize=9)
        fig.tight_layout()
        out = path if i == 0 else path.with_name(f"{path.stem}-{i + 1}{path.suffix}")
        fig.savefig(out, dpi=120)
        plt.close(fig)
        written.append(out)
    return written


def write_report(report: Report, out_dir: str | Path, *, plot_png: bool = True) -> list[Path]:
    """``leaderboard.md``, ``leaderboard.csv`` and ``leaderboard.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, table = out_dir / "leaderboard.md", out_dir / "leaderboard.csv"
    md.write_text(to_markdown(report), encoding="utf-8")
    write_csv(report, table)
    written = [md, table]
    if plot_png and report.sections:
        written += plot(report, out_dir / "leaderboard.png")
    return written
