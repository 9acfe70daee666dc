"""The leaderboard (issue 6): agents from configs, played on held-out personas, ranked with intervals.

    from dialogue_gym.leaderboard import Settings, play, build_report, write_report
    from dialogue_gym.agents.configs import load_configs

    settings = Settings(agents=load_configs("agents"), episodes=200)
    plan, rows = play(settings)  # appends to leaderboard/results.jsonl; resumes where it stopped
    write_report(build_report(rows), settings.out_dir)

or ``dialogue-gym leaderboard`` / ``python benchmarks/leaderboard.py``. Modules: ``store`` (the
results file), ``episodes`` (playing a unit of episodes), ``runner`` (planning, resuming, Ray),
``stats`` (bootstrap intervals, normalised score, pass^k, tied ranks), ``report`` (tables, plot).
"""

from dialogue_gym.leaderboard.episodes import EnvInfo, HumanSpec, Unit, run_unit
from dialogue_gym.leaderboard.report import Report, build_report, to_markdown, write_report
from dialogue_gym.leaderboard.runner import Plan, Settings, play
from dialogue_gym.leaderboard.stats import Interval, bootstrap_ci, normalise, pass_hat_k, pass_k, tied_ranks
from dialogue_gym.leaderboard.store import ResultStore, StoreError

__all__ = [
    "EnvInfo",
    "HumanSpec",
    "Interval",
    "Plan",
    "Report",
    "ResultStore",
    "Settings",
    "StoreError",
    "Unit",
    "bootstrap_ci",
    "build_report",
    "normalise",
    "pass_hat_k",
    "pass_k",
    "play",
    "run_unit",
    "tied_ranks",
    "to_markdown",
    "write_report",
]
