"""``dialogue-gym leaderboard`` (also ``python benchmarks/leaderboard.py``): the command line."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import click

from dialogue_gym.agents.configs import AgentConfigError, load_configs, reference_config, resolve_agent
from dialogue_gym.leaderboard.episodes import HumanSpec
from dialogue_gym.leaderboard.report import build_report, write_report
from dialogue_gym.leaderboard.runner import Settings, play
from dialogue_gym.leaderboard.store import ResultStore, StoreError

QUICK_EPISODES = 8


def _command_line() -> str:
    prog = sys.argv[0]
    head = [f"python {os.path.relpath(prog)}"] if prog.endswith(".py") else [Path(prog).name]
    return " ".join(head + [shlex.quote(a) for a in sys.argv[1:]])


@click.command("leaderboard")
@click.option(
    "--agent",
    "agent_specs",
    multiple=True,
    help="Config file or name, reference level or module:attr (repeatable). [all in --agents-dir]",
)
@click.option("--agents-dir", default="agents", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--env", "env_ids", multiple=True, help="Env id (repeatable); default: every registered dialogue env."
)
@click.option(
    "--human",
    default="scripted",
    show_default=True,
    help="scripted, local, llamacpp, hf:<path> or litellm:<model>.",
)
@click.option(
    "--human-kwargs", default="{}", help='JSON options of an LLM human, e.g. {"api_base": [url1, url2]}.'
)
@click.option(
    "--episodes", type=click.IntRange(min=1), default=100, show_default=True, help="Task seeds per env."
)
@click.option("--seed", type=int, default=10_000, show_default=True, help="First task seed.")
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="i.i.d. trials per task seed (for pass^k).",
)
@click.option(
    "--pass-k",
    "pass_ks",
    type=click.IntRange(min=1),
    multiple=True,
    help="k for pass^k columns (default: --trials when above 1).",
)
@click.option(
    "--split",
    type=click.Choice(["test", "dev", "train", "all"]),
    default="test",
    show_default=True,
    help="Persona split.",
)
@click.option(
    "--max-turns", type=click.IntRange(min=1), default=None, help="Override the tasks' turn limits."
)
@click.option(
    "--batch", type=click.IntRange(min=1), default=16, show_default=True, help="Conversations played at once."
)
@click.option(
    "--chunk",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Episodes per work unit (per Ray task).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Output directory [leaderboard, or leaderboard/quick with --quick].",
)
@click.option("--ray", is_flag=True, help="Fan the work out over Ray (a local cluster unless --ray-address).")
@click.option("--ray-address", default=None, help="Address of a running Ray cluster, e.g. auto.")
@click.option(
    "--import",
    "imports",
    multiple=True,
    help="Module to import first, here and in workers (registers your envs/agents).",
)
@click.option(
    "--merge",
    "merge_paths",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Add episodes from another results file (another machine, benchmarks/experiment.py) first.",
)
@click.option("--retry-errors", is_flag=True, help="Play episodes recorded as errors again.")
@click.option(
    "--limit", type=click.IntRange(min=0), default=None, help="Play at most this many new episodes now."
)
@click.option(
    "--quick", is_flag=True, help=f"Smoke run: the reference agents, {QUICK_EPISODES} seeds per env."
)
@click.option(
    "--report-only", is_flag=True, help="Only rebuild the tables from every row of the results file."
)
@click.option(
    "--resamples", type=click.IntRange(min=100), default=2000, show_default=True, help="Bootstrap resamples."
)
@click.option("--ci-seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--no-plot", is_flag=True, help="Skip the PNG.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def leaderboard(
    agent_specs: tuple[str, ...],
    agents_dir: str,
    env_ids: tuple[str, ...],
    human: str,
    human_kwargs: str,
    episodes: int,
    seed: int,
    trials: int,
    pass_ks: tuple[int, ...],
    split: str,
    max_turns: int | None,
    batch: int,
    chunk: int,
    out_dir: str | None,
    ray: bool,
    ray_address: str | None,
    imports: tuple[str, ...],
    merge_paths: tuple[str, ...],
    retry_errors: bool,
    limit: int | None,
    quick: bool,
    report_only: bool,
    resamples: int,
    ci_seed: int,
    no_plot: bool,
    no_progress: bool,
) -> None:
    """Evaluate agents on dialogue envs and write leaderboard.md, leaderboard.csv and leaderboard.png.

    Results go to OUT/results.jsonl episode by episode; rerunning the same command resumes.
    """
    out = Path(out_dir or ("leaderboard/quick" if quick else "leaderboard"))
    if any(k > trials for k in pass_ks):
        raise click.BadParameter(f"pass^k needs k <= --trials ({trials})", param_hint="--pass-k")
    pass_ks = pass_ks or ((trials,) if trials > 1 else ())
    try:
        if merge_paths:
            with ResultStore(out / "results.jsonl") as store:
                for path in merge_paths:
                    click.echo(f"merged {store.merge(path)} new episodes from {path}", err=True)
        if report_only:
            with ResultStore(out / "results.jsonl") as store:
                rows = [r for r in store.rows() if not env_ids or r["env_id"] in env_ids]
            if not rows:
                raise click.ClickException(f"no results in {out / 'results.jsonl'}")
            report = build_report(rows, n_resamples=resamples, ci_seed=ci_seed, pass_ks=pass_ks)
        else:
            try:
                kwargs = json.loads(human_kwargs)
            except json.JSONDecodeError as exc:
                raise click.BadParameter(f"not JSON: {exc}", param_hint="--human-kwargs") from None
            if not isinstance(kwargs, dict):
                raise click.BadParameter("must be a JSON object", param_hint="--human-kwargs")
            settings = Settings(
                agents=_agents(agent_specs, agents_dir, quick),
                env_ids=list(env_ids),
                human=HumanSpec(human, kwargs),
                episodes=QUICK_EPISODES if quick else episodes,
                seed=seed,
                trials=trials,
                persona_split=None if split == "all" else split,
                max_turns=max_turns,
                batch=batch,
                chunk=chunk,
                out_dir=out,
                ray=ray or ray_address is not None,
                ray_address=ray_address,
                imports=imports,
                retry_errors=retry_errors,
                limit=limit,
            )
            the_plan, rows = play(settings, progress=not no_progress, log=lambda m: click.echo(m, err=True))
            report = build_report(rows, n_resamples=resamples, ci_seed=ci_seed, pass_ks=pass_ks)
            report.skipped = the_plan.skipped
            missing = sum(len(s) for s in the_plan.selected.values()) * trials - len(rows)
            if missing > 0:
                click.echo(f"{missing} episodes still to play: rerun the same command to finish", err=True)
            errors = sum(1 for r in rows if r.get("error"))
            if errors:
                click.echo(f"{errors} error episodes (see the tables); --retry-errors replays them", err=True)
    except (AgentConfigError, StoreError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; finished episodes are recorded: rerun to resume") from None
    report.command = _command_line()
    for path in write_report(report, out, plot_png=not no_plot):
        click.echo(f"wrote {path}", err=True)
    if report.sections:
        click.echo(_overall_text(report))


def _agents(specs: tuple[str, ...], agents_dir: str, quick: bool) -> list:
    if specs:
        return [resolve_agent(s, agents_dir) for s in specs]
    if quick or not Path(agents_dir).is_dir():
        return [reference_config(level) for level in ("naive", "competent", "oracle")]
    return load_configs(agents_dir)


def _overall_text(report) -> str:
    lines = []
    for s in report.sections:
        lines.append(s.title)
        for c in s.overall:
            lines.append(
                f"  {c.rank or '-':>2}  {c.agent:<24} score {c.score.fmt(1)}  "
                f"({c.envs} envs, {c.errors} errors)"
            )
    return "\n".join(lines)


def main() -> None:
    leaderboard(prog_name="leaderboard")


if __name__ == "__main__":
    main()
