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


if __name__ == "__main__":
    main()
