"""The ``dialogue-gym`` command line (click): list tasks, play one yourself, run the baselines."""

from __future__ import annotations

import json
import sys

import click
import gymnasium as gym

import dialogue_gym
from dialogue_gym.evaluation import REFERENCE_LEVELS, evaluate, reference_agent, summarise
from dialogue_gym.registry import BUILTIN, list_tasks


def _check_env_id(env_id: str) -> str:
    known = [t.env_id for t in list_tasks()]
    if env_id not in gym.registry:
        raise click.BadParameter(f"unknown env id {env_id!r}; registered dialogue envs: {', '.join(known)}")
    return env_id


@click.group()
@click.version_option(dialogue_gym.__version__, prog_name="dialogue-gym")
def main() -> None:
    """dialogue-gym: goal-directed conversations with simulated humans as Gymnasium envs."""


@main.command("list")
def list_cmd() -> None:
    """List the registered dialogue envs with one-line descriptions."""
    tasks = list_tasks()
    width = max(len(t.env_id) for t in tasks)
    for t in tasks:
        click.echo(f"{t.env_id:<{width}}  {t.description}")


@main.command()
@click.argument("env_id")
@click.option("--seed", type=int, default=None, help="Seed for the persona (random if omitted).")
@click.option("--max-turns", type=int, default=None, help="Override the task's turn limit.")
def play(env_id: str, seed: int | None, max_turns: int | None) -> None:
    """Play the agent's side of ENV_ID in the terminal against the simulated human.

    Type your utterance at the prompt; /quit ends early. At the end you see the transcript,
    the outcome breakdown and the hidden persona.
    """
    _check_env_id(env_id)
    kwargs = {} if max_turns is None else {"max_turns": max_turns}
    env = gym.make(env_id, render_mode="ansi", **kwargs)
    obs, info = env.reset(seed=seed)
    click.secho(f"== {env_id} ==", bold=True)
    click.secho(info["role_instructions"], fg="cyan")
    click.echo(f"\nHuman: {obs}")
    total, info = 0.0, {}
    while True:
        try:
            line = click.prompt("You", prompt_suffix="> ", default="", show_default=False)
        except (click.Abort, EOFError):
            click.echo("\n(input closed)")
            return
        if line.strip() == "/quit":
            click.echo("(quit before the end: no outcome)")
            return
        try:
            obs, reward, terminated, truncated, info = env.step(line)
        except (TypeError, ValueError) as exc:
            click.secho(f"! {exc}", fg="red")
            continue
        total += reward
        click.echo(f"Human: {obs}")
        if terminated or truncated:
            break
    click.secho("\n== transcript ==", bold=True)
    click.echo(env.render())
    click.secho("\n== outcome ==", bold=True)
    click.echo(f"end: {info['end_reason']}   return: {total:.3f}")
    click.echo(json.dumps(info["outcome"], indent=2, default=str))
    click.secho("\n== hidden persona ==", bold=True)
    click.echo(json.dumps(info["persona"], indent=2, default=str))


@main.command()
@click.option("--env", "env_ids", multiple=True, help="Env id (repeatable); default: the four built-ins.")
@click.option("--episodes", type=click.IntRange(min=2), default=500, show_default=True)
@click.option(
    "--seed", type=int, default=10_000, show_default=True, help="First seed; episodes use seed..seed+N-1."
)
def baselines(env_ids: tuple[str, ...], episodes: int, seed: int) -> None:
    """Evaluate the naive, competent and oracle reference agents and print a Markdown table."""
    env_ids = tuple(_check_env_id(e) for e in env_ids) or tuple(BUILTIN)
    click.echo(
        f"Reference agents, {episodes} seeded episodes each (seeds {seed}..{seed + episodes - 1}), "
        "mean return ± 95% CI (mean turns)\n"
    )
    click.echo("| env | " + " | ".join(REFERENCE_LEVELS) + " |")
    click.echo("|---|" + "---|" * len(REFERENCE_LEVELS))
    for env_id in env_ids:
        cells = []
        for level in REFERENCE_LEVELS:
            s = summarise(evaluate(reference_agent(env_id, level), env_id, episodes, seed=seed))
            cells.append(f"{s['mean']:.3f} ± {s['ci95']:.3f} ({s['turns']:.1f})")
        click.echo(f"| {env_id} | " + " | ".join(cells) + " |")
        sys.stdout.flush()


@main.command()
@click.option("--env", "env_id", required=True, help="Env id, e.g. DialogueTeach-v0.")
@click.option("--n", type=click.IntRange(min=0), required=True, help="Dialogues to generate.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="JSONL file of records.")
@click.option("--seed", type=int, default=0, show_default=True, help="First seed (seeds seed..seed+n-1).")
@click.option("--strategy", "strategy_names", multiple=True, help="Strategy (repeatable); default: mixture.")
@click.option("--epsilon", type=click.FloatRange(0, 1), default=0.2, show_default=True, help="Noise rate.")
@click.option("--generator", type=click.Choice(["scripted", "llm"]), default="scripted", show_default=True)
@click.option("--model", default=None, help="LLM for --generator llm: local, litellm:<model> or hf:<path>.")
@click.option("--human", default="scripted", show_default=True, help="Who answers: scripted or an LLM spec.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Episodes at once.")
@click.option("--no-resume", is_flag=True, help="Start the file afresh (default: skip ids already in it).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def imagine(
    env_id: str,
    n: int,
    out: str,
    seed: int,
    strategy_names: tuple[str, ...],
    epsilon: float,
    generator: str,
    model: str | None,
    human: str,
    workers: int,
    no_resume: bool,
    quiet: bool,
) -> None:
    """Generate N imagined dialogues of an env into a JSONL dataset and print a summary."""
    from dialogue_gym.datagen.imagine import format_summary
    from dialogue_gym.datagen.imagine import imagine as run_imagine
    from dialogue_gym.datagen.strategies import strategies

    _check_env_id(env_id)
    try:
        known = strategies(env_id)
    except KeyError as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="--env") from None
    unknown = [s for s in strategy_names if s not in known]
    if unknown:
        raise click.BadParameter(
            f"{env_id} has no strategy {', '.join(map(repr, unknown))}; it has {', '.join(known)}",
            param_hint="--strategy",
        )
    try:
        summary = run_imagine(
            env_id,
            n,
            out,
            seed=seed,
            strategies=list(strategy_names) or None,
            epsilon=epsilon,
            human=human,
            generator=generator,
            model=model,
            resume=not no_resume,
            progress=not quiet,
            workers=workers,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(format_summary(summary))


@main.command("export-minari")
@click.argument("records", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--dataset-id", required=True, help="Minari id, e.g. dialogue-gym/teach/scripted-v0.")
@click.option("--author", default="dialogue-gym", show_default=True)
@click.option("--description", default=None, help="Dataset description (default: counts and generators).")
@click.option("--overwrite", is_flag=True, help="Replace a local dataset with the same id.")
def export_minari_cmd(
    records: tuple[str, ...], dataset_id: str, author: str, description: str | None, overwrite: bool
) -> None:
    """Write RECORDS (JSONL files of one env) as a Minari dataset under $MINARI_DATASETS_PATH."""
    from dialogue_gym.datagen.minari_export import export_minari

    try:
        ds = export_minari(
            list(records), dataset_id, author=author, description=description, overwrite=overwrite
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    where = ds.storage.data_path
    click.echo(f"{dataset_id}: {ds.total_episodes} episodes, {ds.total_steps} steps, at {where}")


@main.command()
@click.option("--in", "inputs", multiple=True, type=click.Path(exists=True, dir_okay=False), help="Records.")
@click.option("--p4g", is_flag=True, help="Add the real PersuasionForGood dialogues to the input.")
@click.option("--p4g-data", type=click.Path(file_okay=False), default=None, help="PersuasionForGood folder.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="JSONL file (appended).")
@click.option("--rewriter", default="scripted", show_default=True, help="scripted or an LLM spec.")
@click.option("--continuation", default="hindsight", show_default=True, help="hindsight, competent or naive.")
@click.option("--max-branches", type=click.IntRange(min=1), default=2, show_default=True, help="Per record.")
@click.option("--human", default="scripted", show_default=True, help="Forward model (scripted, LLM).")
@click.option("--max-turns", type=click.IntRange(min=1), default=None, help="Env turn limit.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Only the first N input records.")
@click.option("--branches-only", is_flag=True, help="Write only the branches, not the source records.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def hindsight(
    inputs: tuple[str, ...],
    p4g: bool,
    p4g_data: str | None,
    out: str,
    rewriter: str,
    continuation: str,
    max_branches: int,
    human: str,
    max_turns: int | None,
    limit: int | None,
    branches_only: bool,
    quiet: bool,
) -> None:
    """Rewrite the agent turns that went wrong, seen in hindsight, and regenerate the rest.

    Writes the input records and their branches to OUT; a rerun skips the records already done.
    """
    from dialogue_gym.datagen.hindsight import HindsightError, paired_gain, run_hindsight
    from dialogue_gym.datagen.records import RecordError, load_records

    if not inputs and not p4g:
        raise click.UsageError("give input records with --in FILE (repeatable) or --p4g")
    sources: list = list(inputs)
    if p4g:
        from dialogue_gym.data.persuasionforgood import load_p4g_records

        try:
            sources += load_p4g_records(p4g_data)
        except FileNotFoundError as exc:
            raise click.UsageError(str(exc)) from None
    try:
        stats = run_hindsight(
            sources,
            out,
            keep_sources=not branches_only,
            limit=limit,
            progress=not quiet,
            rewriter=rewriter,
            continuation=continuation,
            max_branches=max_branches,
            human=human,
            max_turns=max_turns,
        )
    except (RecordError, HindsightError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(" ".join(f"{k}={v}" for k, v in stats.as_dict().items()))
    records = {r.id: r for r in load_records(out)}
    branches = [r for r in records.values() if r.parent and r.provenance.get("generator") == "hindsight"]
    simulated = [
        (r.provenance["source_sim_return"], r.ret) for r in branches if "source_sim_return" in r.provenance
    ]
    scripted = [
        (records[r.parent["id"]].ret, r.ret)
        for r in branches
        if "source_sim_return" not in r.provenance and r.parent["id"] in records
    ]
    for what, pairs in (("sources", scripted), ("real chats replayed in the simulator", simulated)):
        if pairs:
            g = paired_gain(pairs)
            click.echo(
                f"{out}: {g['n']} branches, mean return {g['source']:.3f} ({what}) -> {g['branch']:.3f} "
                f"(branches), difference {g['diff']:+.3f} ± {g['ci95']:.3f}, "
                f"{100 * g['improved']:.0f}% improved"
            )


# ------------------------------------------------------------------ train and eval (issue 5)

TRAINERS = {
    "bc": ("dialogue_gym.algos.bc", "BCConfig"),
    "fbc": ("dialogue_gym.algos.bc", "BCConfig"),
    "ilql": ("dialogue_gym.algos.ilql", "ILQLConfig"),
}


def _trainer(algo: str) -> tuple[object, type]:
    import importlib

    module_name, config_name = TRAINERS[algo]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.ClickException(
            f"{algo} training is unavailable ({exc}); pip install 'dialogue-gym[train]'"
        ) from exc
    return module, getattr(module, config_name)


def parse_overrides(items: tuple[str, ...], param_hint: str = "--set") -> dict:
    """``key=value`` strings to a dict, each value read as YAML (``3``, ``true``, ``[a, b]``)."""
    import yaml

    fields: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {item!r}", param_hint=param_hint)
        fields[key.strip()] = yaml.safe_load(value)
    return fields


def unknown_fields(config_cls: type, fields: dict) -> list[str]:
    """The keys of ``fields`` that the dataclass ``config_cls`` has no field for, sorted."""
    import dataclasses

    return sorted(set(fields) - {f.name for f in dataclasses.fields(config_cls)})


def _config_fields(algo: str, config_file: str | None, overrides: tuple[str, ...], options: dict) -> dict:
    """Config fields from the YAML file, then ``--set key=value``, then the named options."""
    import yaml

    fields: dict = {}
    if config_file:
        with open(config_file, encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh) or {}
        if not isinstance(loaded, dict):
            raise click.BadParameter("the file must hold a mapping of field: value", param_hint="--config")
        fields.update(loaded)
    fields.update(parse_overrides(overrides))
    fields.update({k: v for k, v in options.items() if v not in (None, ())})
    if algo == "fbc":
        fields.setdefault("top_fraction", 0.3)
        if fields["top_fraction"] >= 1.0:
            raise click.BadParameter("filtered BC keeps a fraction below 1; for all data use 'bc'")
    elif algo == "bc" and fields.get("top_fraction", 1.0) < 1.0:
        raise click.BadParameter("--top-fraction is for filtered BC: use 'dialogue-gym train fbc'")
    return fields


@main.command("train")
@click.argument("algo", type=click.Choice(sorted(TRAINERS)))
@click.option("--data", multiple=True, help="JSONL file of records (repeatable).")
@click.option("--model", default=None, help="Base model: tiny, smollm2 or a Hugging Face path/id [tiny].")
@click.option("--out", "output_dir", default=None, help="Directory for the agent and its checkpoints.")
@click.option("--env", "env_id", default=None, help="Train on this env's records only (refuse others).")
@click.option("--epochs", "num_train_epochs", type=float, default=None, help="Passes over the data.")
@click.option("--max-steps", type=int, default=None, help="Optimizer steps (overrides --epochs).")
@click.option("--lr", "learning_rate", type=float, default=None, help="Peak learning rate.")
@click.option("--batch-size", "per_device_train_batch_size", type=int, default=None, help="Dialogues a step.")
@click.option("--max-length", type=int, default=None, help="Longest training sequence in tokens.")
@click.option("--top-fraction", type=float, default=None, help="fbc: the best fraction kept [0.3].")
@click.option("--eval-every", type=int, default=None, help="Play dev episodes every N steps (TensorBoard).")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --out, if any.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), help="YAML of fields.")
@click.option("--set", "overrides", multiple=True, help="Any config field, e.g. --set bf16=true.")
def train_cmd(
    algo: str, config_file: str | None, overrides: tuple[str, ...], resume: bool, **options: object
) -> None:
    """Train an ALGO agent (bc, fbc = filtered BC, ilql) on datasets of records.

    Options map to fields of the algorithm's config (a transformers TrainingArguments, so any of
    its fields works through --config or --set). Losses go to TensorBoard under OUT/runs; the
    agent is saved to OUT, ready for `dialogue-gym eval --agent OUT`.
    """
    from pathlib import Path

    from dialogue_gym.datagen.records import RecordError

    options["data"] = list(options["data"])
    fields = _config_fields(algo, config_file, overrides, options)
    if resume and fields.get("output_dir"):
        from transformers.trainer_utils import get_last_checkpoint

        out_dir = Path(fields["output_dir"])
        fields["resume_from_checkpoint"] = get_last_checkpoint(str(out_dir)) if out_dir.is_dir() else None
    if not fields.get("data"):
        raise click.UsageError("no dataset: pass --data PATH (or 'data' in --config)")
    data = fields["data"]
    fields["data"] = [str(p) for p in ([data] if isinstance(data, str) else data)]
    missing = [p for p in fields["data"] if not Path(p).is_file()]
    if missing:
        raise click.BadParameter(f"dataset not found: {', '.join(missing)}", param_hint="--data")
    if not fields.get("output_dir"):
        raise click.UsageError("no output directory: pass --out DIR")
    module, config_cls = _trainer(algo)
    if unknown := unknown_fields(config_cls, fields):
        raise click.UsageError(f"unknown {config_cls.__name__} field(s): {', '.join(unknown)}")
    existing = Path(fields["output_dir"]) / "dialogue_gym_agent.json"
    if existing.is_file():
        other = json.loads(existing.read_text(encoding="utf-8")).get("algo")
        if other != algo:
            raise click.ClickException(
                f"{fields['output_dir']} holds a {other!r} agent; train {algo} into another directory"
            )
    try:
        config = config_cls(**fields)
        out = module.train(config)
    except (RecordError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:  # bad config values, datasets of another env, unknown base models
        raise click.ClickException(f"{algo}: {exc}") from None
    click.echo(f"saved {algo} agent to {out}")


def _eval_agent(
    spec: str,
    env_id: str,
    algo: str | None,
    temperature: float | None,
    max_new_tokens: int | None,
    repetition_penalty: float | None = None,
    beta: float | None = None,
):
    """The agent named by ``--agent``: a checkpoint directory, reference:<level> or prompted:<model>."""
    from pathlib import Path

    kind, _, name = spec.partition(":")
    for hint, value in (("--repetition-penalty", repetition_penalty), ("--beta", beta)):
        if value is not None and kind in ("reference", "prompted") and name:
            raise click.BadParameter(
                f"{hint} applies to trained agents (checkpoint directories) only", param_hint=hint
            )
    if kind == "reference" and name:
        try:
            return reference_agent(env_id, name)
        except KeyError as exc:
            raise click.BadParameter(str(exc.args[0]), param_hint="--agent") from None
    if kind == "prompted" and name:
        from dialogue_gym.agents.prompted import PromptedAgent

        opts = {"temperature": temperature, "max_tokens": max_new_tokens}
        return PromptedAgent(model=name, **{k: v for k, v in opts.items() if v is not None})
    if not Path(spec).exists():
        raise click.BadParameter(
            f"{spec!r} is neither an agent directory nor reference:<level> or prompted:<model>",
            param_hint="--agent",
        )
    from dialogue_gym.algos.checkpoint import CheckpointError, load_agent, read_meta

    try:
        meta = read_meta(spec, expect_algo=algo)
        if beta is not None and meta["algo"] != "ilql":
            raise click.BadParameter(
                f"--beta applies to ILQL agents; {spec} is {meta['algo']!r}", param_hint="--beta"
            )
        opts = {
            "temperature": temperature,
            "max_new_tokens": max_new_tokens,
            "repetition_penalty": repetition_penalty,
            "beta": beta,
        }
        agent = load_agent(spec, **{k: v for k, v in opts.items() if v is not None})
    except CheckpointError as exc:
        raise click.BadParameter(str(exc), param_hint="--agent") from None
    if meta.get("env_id") not in (None, env_id):
        click.secho(f"note: {spec} was trained on {meta['env_id']}, evaluated here on {env_id}", fg="yellow")
    return agent


@main.command("eval")
@click.option(
    "--agent", "agent_spec", required=True, help="Agent dir, reference:<level> or prompted:<model>."
)
@click.option("--env", "env_id", required=True, help="Env id.")
@click.option("--episodes", type=click.IntRange(min=1), default=100, show_default=True)
@click.option(
    "--split",
    type=click.Choice(["train", "dev", "test", "all"]),
    default="test",
    show_default=True,
    help="Persona split to draw from (all: any persona).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="First seed (seeds seed..seed+N-1).")
@click.option("--human", default="scripted", show_default=True, help="scripted, local or litellm:<model>.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Envs at once.")
@click.option("--algo", type=click.Choice(sorted(TRAINERS)), default=None, help="Require this algorithm.")
@click.option("--temperature", type=float, default=None, help="Sampling temperature for model agents.")
@click.option(
    "--max-new-tokens", type=click.IntRange(min=1), default=None, help="Longest utterance (model agents)."
)
@click.option(
    "--repetition-penalty",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="Trained agents: penalty on tokens already in the reply being written (1.0 = none).",
)
@click.option(
    "--beta",
    type=float,
    default=None,
    help="ILQL agents: weight of the advantage Q - V at decoding (0: the behaviour head alone) "
    "[default: the checkpoint's].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def eval_cmd(
    agent_spec: str,
    env_id: str,
    episodes: int,
    split: str,
    seed: int,
    human: str,
    batch_size: int,
    algo: str | None,
    temperature: float | None,
    max_new_tokens: int | None,
    repetition_penalty: float | None,
    beta: float | None,
    as_json: bool,
) -> None:
    """Play an agent for N seeded episodes and print its mean return with a 95% CI."""
    from dialogue_gym.agents.lm import evaluate_batched

    _check_env_id(env_id)
    agent = _eval_agent(agent_spec, env_id, algo, temperature, max_new_tokens, repetition_penalty, beta)
    results = evaluate_batched(
        agent,
        env_id,
        episodes,
        seed=seed,
        batch_size=batch_size,
        progress=not as_json,
        human=human,
        persona_split=None if split == "all" else split,
    )
    s = summarise(results)
    if as_json:
        click.echo(json.dumps({"agent": agent_spec, "env_id": env_id, "split": split, "seed": seed, **s}))
        return
    click.echo(
        f"{agent_spec} on {env_id} ({split} personas, seeds {seed}..{seed + episodes - 1}): "
        f"mean return {s['mean']:.3f} ± {s['ci95']:.3f} (95% CI, {episodes} episodes), "
        f"success {s['success']:.2f}, mean turns {s['turns']:.1f}"
    )


def _add_leaderboard() -> None:
    """``dialogue-gym leaderboard`` (the same command as ``python benchmarks/leaderboard.py``)."""
    from dialogue_gym.leaderboard.cli import leaderboard

    main.add_command(leaderboard)


_add_leaderboard()


if __name__ == "__main__":
    main()
