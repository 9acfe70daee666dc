"""A leaderboard run: plan the missing episodes, play them (here or over Ray), record, select.

:func:`play` opens the results store, works out which episodes of the requested agents, envs,
human, protocol, seeds and trials are not yet recorded (a resumed run plays only those), plays them
with a progress bar while appending each row as it arrives, and returns the rows the tables are
built from, read back from the store.
"""

from __future__ import annotations

import importlib
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium as gym

from dialogue_gym.agents.configs import AgentConfig, reference_config
from dialogue_gym.leaderboard.episodes import (
    EnvInfo,
    HumanSpec,
    Unit,
    env_info,
    protocol_key,
    run_unit,
    run_unit_list,
)
from dialogue_gym.leaderboard.store import ResultStore, StoreError
from dialogue_gym.registry import list_tasks

NORMALISERS = ("naive", "oracle")


def default_env_ids() -> list[str]:
    """Every registered dialogue env, the newest version of each (built-ins first)."""
    newest: dict[str, tuple[int, str]] = {}
    for task in list_tasks():
        spec = gym.spec(task.env_id)
        name = f"{spec.namespace}/{spec.name}" if spec.namespace else spec.name
        if name not in newest or (spec.version or 0) > newest[name][0]:
            newest[name] = (spec.version or 0, task.env_id)
    return [env_id for _, env_id in newest.values()]


def git_commit() -> str | None:
    """The package's git commit (``+dirty`` with uncommitted changes), or ``None`` outside a checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


# -------------------------------------------------------------------------------- the whole run


@dataclass
class Settings:
    """One leaderboard run: which agents on which envs, with which human, over which seeds.

    Args:
        agents: agent configs; the naive and oracle references are added for the normalised
            score when missing (``normalise=False`` turns that off).
        env_ids: envs to play (default: every registered dialogue env, newest versions).
        human, human_kwargs: the human backend and its options.
        episodes: task seeds per env (``seed .. seed+episodes-1``); a config's ``episodes`` caps it.
        trials: i.i.d. trials per task seed (for pass^k).
        persona_split: held-out personas by default.
        max_turns: override the tasks' turn limits.
        batch: conversations played at once per unit; chunk: episodes per unit.
        out_dir: where ``results.jsonl`` and the tables go.
        ray: fan units out over Ray; ray_address: an existing cluster (``"auto"``) or ``None`` for
            a local one.
        imports: modules to import first, here and in every worker (registering envs, agents).
        retry_errors: play error episodes again.
        limit: play at most this many new episodes, then stop (the rest on the next run).
    """

    agents: list[AgentConfig]
    env_ids: list[str] = field(default_factory=list)
    human: HumanSpec = field(default_factory=HumanSpec)
    episodes: int = 100
    seed: int = 10_000
    trials: int = 1
    persona_split: str | None = "test"
    max_turns: int | None = None
    batch: int = 16
    chunk: int = 64
    out_dir: Path = Path("leaderboard")
    ray: bool = False
    ray_address: str | None = None
    imports: tuple[str, ...] = ()
    retry_errors: bool = False
    limit: int | None = None
    normalise: bool = True

    def __post_init__(self) -> None:
        for name in ("episodes", "trials", "batch", "chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.agents:
            raise ValueError("no agents to evaluate")
        self.out_dir = Path(self.out_dir)

    @property
    def results_path(self) -> Path:
        return self.out_dir / "results.jsonl"

    @property
    def protocol(self) -> str:
        return protocol_key(self.persona_split, self.max_turns)

    def all_agents(self) -> list[AgentConfig]:
        """The agents plus the normalising references (naive, oracle) when missing."""
        agents = list(self.agents)
        if self.normalise:
            hashes = {a.hash for a in agents}
            agents += [c for c in map(reference_config, NORMALISERS) if c.hash not in hashes]
        return agents

    def seeds_for(self, config: AgentConfig) -> list[int]:
        n = min(self.episodes, config.episodes or self.episodes)
        return list(range(self.seed, self.seed + n))


@dataclass
class Plan:
    """What a run will do: units to play, what it skips and why, and what it selects for tables."""

    units: list[Unit]
    skipped: list[str]
    selected: dict[tuple[str, str], set[int]]  # (agent_key, env_id) -> task seeds
    envs: dict[str, EnvInfo]
    names: dict[str, str]  # agent_key -> name
    pending: int = 0


def check_envs(infos: Iterable[EnvInfo]) -> None:
    """Refuse two versions of one env in one run: they would be mixed into one overall ranking."""
    seen: dict[str, str] = {}
    for info in infos:
        if info.name in seen:
            raise StoreError(
                f"{seen[info.name]} and {info.env_id} are two versions of one env; results of different "
                "versions are never ranked together: choose one with --env"
            )
        seen[info.name] = info.env_id


def check_store(store: ResultStore, envs: Mapping[str, EnvInfo]) -> None:
    """Refuse to resume into a results file whose rows for an env came from a different env version
    or card (the same id with different content would silently mix)."""
    for row in store.rows():
        info = envs.get(row.get("env_id"))
        if info is None:
            continue
        if row.get("env_version") != info.version or row.get("env_fingerprint") != info.fingerprint:
            raise StoreError(
                f"{store.path} holds {info.env_id} results from a different env (version "
                f"{row.get('env_version')}, card fingerprint {row.get('env_fingerprint')}; now version "
                f"{info.version}, fingerprint {info.fingerprint}). Results of different env versions are "
                "never mixed: bump the env's version after changing it, or use another --out directory."
            )


def plan(settings: Settings, store: ResultStore) -> Plan:
    """The units still to play (skipping recorded episodes) and the selection for the tables."""
    env_ids = settings.env_ids or default_env_ids()
    for env_id in env_ids:
        if env_id not in gym.registry:
            raise ValueError(f"unknown env id {env_id!r}; registered: {', '.join(default_env_ids())}")
    envs = {e: env_info(e) for e in env_ids}
    check_envs(envs.values())
    check_store(store, envs)
    meta = {"package_version": _package_version(), "git_commit": git_commit()}
    units, skipped, selected, names = [], [], {}, {}
    for config in settings.all_agents():
        for env_id, info in envs.items():
            reason = config.unavailable(env_id)
            if reason:
                skipped.append(f"{config.name} on {env_id}: {reason}")
                continue
            fp = config.fingerprint(env_id)
            agent_key = config.hash[:16] + (f"-{fp}" if fp else "")
            names[agent_key] = config.name
            seeds = settings.seeds_for(config)
            selected[(agent_key, env_id)] = set(seeds)
            unit = Unit(
                agent=config.to_dict(),
                agent_source=config.source,
                agent_hash=config.hash,
                agent_key=agent_key,
                env=info,
                human=settings.human,
                persona_split=settings.persona_split,
                max_turns=settings.max_turns,
                jobs=[],
                batch=settings.batch,
                imports=settings.imports,
                meta=meta,
            )
            jobs = [(s, t) for s in seeds for t in range(settings.trials) if not store.done(unit.key(s, t))]
            for i in range(0, len(jobs), settings.chunk):
                units.append(replace(unit, jobs=jobs[i : i + settings.chunk]))
    if settings.limit is not None:  # play only the first `limit` pending episodes
        kept, left = [], settings.limit
        for u in units:
            if left <= 0:
                break
            kept.append(replace(u, jobs=u.jobs[:left]))
            left -= len(kept[-1].jobs)
        units = kept
    return Plan(units, skipped, selected, envs, names, sum(len(u.jobs) for u in units))


def _package_version() -> str:
    from dialogue_gym import __version__

    return __version__


def _local_rows(units: list[Unit]) -> Iterator[dict[str, Any]]:
    for unit in units:
        yield from run_unit(unit)


def _ray_rows(units: list[Unit], address: str | None) -> Iterator[dict[str, Any]]:
    """Rows of units played as Ray tasks, yielded as each task finishes."""
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError("--ray needs Ray: pip install 'dialogue-gym[leaderboard]'") from exc
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    task = ray.remote(run_unit_list)
    pending = [task.remote(u) for u in units]
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield from ray.get(ready[0])
    finally:
        for ref in pending:
            ray.cancel(ref)
        if started:
            ray.shutdown()


def play(
    settings: Settings,
    *,
    progress: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[Plan, list[dict[str, Any]]]:
    """Play every missing episode of ``settings``, appending rows to the results file as they finish.

    Returns the plan and the rows the tables are built from: this run's agents, envs, human,
    protocol, seeds and trials, read back from the store (so a resumed run gives the same table).
    """
    from tqdm.auto import tqdm

    for module in settings.imports:
        importlib.import_module(module)
    with ResultStore(settings.results_path, retry_errors=settings.retry_errors) as store:
        the_plan = plan(settings, store)
        for line in the_plan.skipped:
            log(f"skipped {line}")
        rows = (
            _ray_rows(the_plan.units, settings.ray_address) if settings.ray else _local_rows(the_plan.units)
        )
        started = time.perf_counter()
        with tqdm(
            total=the_plan.pending, desc="episodes", unit="ep", disable=not progress, smoothing=0.05
        ) as bar:
            for row in rows:
                store.append(row)
                bar.update()
                if on_row is not None:
                    on_row(row)
        if the_plan.pending:
            log(
                f"played {the_plan.pending} episodes in {time.perf_counter() - started:.1f} s; "
                f"{len(store)} recorded in {store.path}"
            )
        selected = [row for row in store.rows() if _selected(row, settings, the_plan)]
    return the_plan, selected


def _selected(row: Mapping[str, Any], settings: Settings, the_plan: Plan) -> bool:
    seeds = the_plan.selected.get((row["agent_key"], row["env_id"]))
    return (
        seeds is not None
        and row["seed"] in seeds
        and row["trial"] < settings.trials
        and row["human_key"] == settings.human.key
        and row["protocol"] == settings.protocol
    )
