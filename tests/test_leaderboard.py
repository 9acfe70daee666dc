"""The leaderboard: its statistics against hand-computed values, agent configs, the results store,
resuming (in process and after killing a real run), broken agents, refusing mixed env versions,
and the same episodes as plain evaluation. Ray and LLM-human runs are marked slow."""

import json
import math
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT

from dialogue_gym.agents.base import Agent
from dialogue_gym.agents.configs import (
    AgentConfigError,
    config_from_dict,
    load_config,
    load_configs,
    reference_config,
    resolve_agent,
)
from dialogue_gym.evaluation import evaluate, reference_agent
from dialogue_gym.leaderboard import (
    HumanSpec,
    Interval,
    ResultStore,
    Settings,
    StoreError,
    bootstrap_ci,
    build_report,
    normalise,
    pass_hat_k,
    pass_k,
    play,
    tied_ranks,
    to_markdown,
    write_report,
)
from dialogue_gym.leaderboard.cli import leaderboard as leaderboard_cmd
from dialogue_gym.leaderboard.report import NAIVE, ORACLE, to_csv_rows
from dialogue_gym.leaderboard.stats import bootstrap_means

TEACH, PREFS, DONATE = "DialogueTeach-v0", "DialoguePrefs-v0", "DialogueDonate-v0"
# the Teach oracle simulates the student for every candidate utterance (~50 ms an episode), so runs
# that include the references use the other tasks


# --- statistics against hand-computed values ---------------------------------------------------
def test_bootstrap_interval_of_two_points_spans_both():
    # resample means of [0, 1] are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: the 2.5% and 97.5%
    # percentiles are 0 and 1
    assert bootstrap_ci([0.0, 1.0], seed=0) == Interval(0.5, 0.0, 1.0)


def test_bootstrap_interval_matches_exact_enumeration():
    # resample means of [0, 0, 3] are k (the number of 3s drawn, Binomial(3, 1/3)):
    # P(0) = 8/27 > 2.5%, P(3) = 1/27 = 3.7% > 2.5%, so the interval is [0, 3]; the mean is 1
    ci = bootstrap_ci([0.0, 0.0, 3.0], seed=1)
    assert (ci.mean, ci.lo, ci.hi) == (1.0, 0.0, 3.0)
    draws = bootstrap_means([0.0, 0.0, 3.0], n_resamples=20_000, seed=2)
    assert np.mean(draws == 3.0) == pytest.approx(1 / 27, abs=0.005)
    assert np.mean(draws == 0.0) == pytest.approx(8 / 27, abs=0.01)


def test_bootstrap_is_seeded_and_constant_data_has_no_width():
    assert bootstrap_ci([0.2, 0.9, 0.4, 0.7], seed=5) == bootstrap_ci([0.2, 0.9, 0.4, 0.7], seed=5)
    assert bootstrap_ci([0.3] * 7) == Interval(0.3, 0.3, 0.3)
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci([])


def test_normalised_score():
    assert normalise(0.5, naive=0.2, oracle=0.8) == pytest.approx(50.0)
    assert normalise(0.2, naive=0.2, oracle=0.8) == 0.0
    assert normalise(0.8, naive=0.2, oracle=0.8) == pytest.approx(100.0)
    assert normalise(-1.0, naive=-2.0, oracle=3.0) == pytest.approx(20.0)
    assert math.isnan(normalise(0.5, naive=0.4, oracle=0.4))


def test_pass_hat_k_is_the_combinatorial_estimator():
    assert pass_hat_k(5, 3, 2) == pytest.approx(3 / 10)  # C(3,2)/C(5,2)
    assert pass_hat_k(5, 3, 1) == pytest.approx(3 / 5)
    assert pass_hat_k(4, 4, 4) == 1.0 and pass_hat_k(4, 3, 4) == 0.0
    assert pass_k([[True, True, False], [True, True, True]], 2) == pytest.approx((1 / 3 + 1) / 2)
    with pytest.raises(ValueError):
        pass_hat_k(2, 3, 1)


def test_overlapping_intervals_tie():
    a, b, c, d = Interval(9, 8, 10), Interval(8, 7, 9), Interval(6, 5, 7.5), Interval(0.5, 0, 1)
    assert tied_ranks([a, b, c, d]) == [1, 1, 2, 4]
    assert tied_ranks([a, Interval(math.nan, math.nan, math.nan)]) == [1, 0]


# --- report maths on hand-made rows --------------------------------------------------------------
def _row(
    agent, agent_hash, seed, ret, *, env=TEACH, trial=0, success=None, error=None, human="scripted", **kw
):
    return {
        "key": f"{agent_hash}|{env}|{human}|test/card|{seed}|{trial}",
        "agent": agent,
        "agent_hash": agent_hash,
        "agent_key": agent_hash[:16],
        "agent_kind": "reference",
        "env_id": env,
        "env_version": kw.get("version", 0),
        "env_fingerprint": kw.get("fingerprint", "card0"),
        "human": human,
        "human_key": human,
        "human_model": None,
        "protocol": "test/card",
        "seed": seed,
        "trial": trial,
        "return": None if error else ret,
        "success": success,
        "turns": 4,
        "tokens": {"agent_prompt": 10, "agent_completion": 5, "human_prompt": 0, "human_completion": 0},
        "cost": {"agent": 0.001, "human": 0.0},
        "error": error,
        "package_version": "0.1.0",
        "git_commit": "abc",
    }


def _refs(seeds, naive=0.0, oracle=1.0, env=TEACH):
    return [_row("naive", NAIVE, s, naive, env=env) for s in seeds] + [
        _row("oracle", ORACLE, s, oracle, env=env) for s in seeds
    ]


def _cells(report, env=TEACH):
    (section,) = report.sections
    (table,) = [t for t in section.envs if t.env_id == env]
    return {c.agent: c for c in table.cells}


def test_report_normalises_against_references_on_the_same_seeds():
    rows = [
        *[_row("naive", NAIVE, s, r) for s, r in zip(range(4), [0.0, 0.0, 0.4, 0.4], strict=True)],
        *_refs(range(4), naive=None, oracle=1.0)[4:],
        _row("mine", "f" * 64, 0, 0.5),
        _row("mine", "f" * 64, 1, 0.5),
    ]
    cells = _cells(build_report(rows))
    # "mine" played seeds 0 and 1 only, where naive scored 0: score = 100 * 0.5 / 1 = 50 exactly
    assert cells["mine"].score == Interval(50.0, 50.0, 50.0)
    assert cells["mine"].ret == Interval(0.5, 0.5, 0.5)
    assert cells["naive"].score.mean == pytest.approx(0.0) and cells["oracle"].score.mean == pytest.approx(
        100.0
    )
    # over all four seeds naive averages 0.2: the oracle's score is still 100, naive's 0
    assert cells["naive"].ret.mean == pytest.approx(0.2)


def test_report_interval_is_the_bootstrap_of_per_seed_means_and_errors_are_left_out():
    rets = [0.1, 0.9, 0.3, 0.5, 0.7]
    rows = [*_refs(range(5)), *(_row("mine", "e" * 64, s, r) for s, r in enumerate(rets))]
    rows.append(_row("mine", "e" * 64, 5, None, error="ValueError: boom"))
    report = build_report(rows, n_resamples=2000, ci_seed=3)
    cell = _cells(report)["mine"]
    assert cell.episodes == 6 and cell.errors == 1 and cell.first_error == "ValueError: boom"
    assert cell.ret.mean == pytest.approx(0.5)
    assert cell.score.mean == pytest.approx(50.0)
    # normalising with naive 0 and oracle 1 multiplies the interval by 100
    assert cell.score.lo == pytest.approx(100 * cell.ret.lo) and cell.score.hi == pytest.approx(
        100 * cell.ret.hi
    )
    assert 0.1 <= cell.ret.lo < 0.5 < cell.ret.hi <= 0.9
    assert cell.tokens == 15 and cell.cost == pytest.approx(0.006)
    assert "1 × `ValueError: boom`" in to_markdown(report)


def test_report_pass_k_and_success_from_trials():
    rows = [*_refs(range(2))]
    outcomes = {0: [True, True, False], 1: [True, True, True]}
    for seed, succ in outcomes.items():
        rows += [_row("mine", "d" * 64, seed, float(s), trial=t, success=s) for t, s in enumerate(succ)]
    cell = _cells(build_report(rows, pass_ks=(1, 2, 3)))["mine"]
    assert cell.success == pytest.approx(5 / 6)
    assert cell.passk[1] == pytest.approx(5 / 6)
    assert cell.passk[2] == pytest.approx((1 / 3 + 1) / 2)
    assert cell.passk[3] == pytest.approx(0.5)


def test_overall_score_is_the_mean_over_envs_and_ranks_tie_on_overlap():
    rows = [*_refs(range(3)), *_refs(range(3), naive=1.0, oracle=3.0, env=DONATE)]
    rows += [_row("mine", "c" * 64, s, 0.5) for s in range(3)]  # 50 on Teach
    rows += [_row("mine", "c" * 64, s, 2.5, env=DONATE) for s in range(3)]  # 75 on Donate
    (section,) = build_report(rows).sections
    overall = {c.agent: c for c in section.overall}
    assert overall["mine"].score == Interval(62.5, 62.5, 62.5)
    assert [c.agent for c in section.overall] == ["oracle", "mine", "naive"]
    assert [c.rank for c in section.overall] == [1, 2, 3]


def test_a_checkpoint_agent_is_one_agent_overall_though_its_key_differs_per_env():
    """Checkpoint configs key their episodes by config hash plus each env's checkpoint; the
    overall table still shows the config once, over both envs."""
    rows = [*_refs(range(3)), *_refs(range(3), naive=1.0, oracle=3.0, env=DONATE)]
    teach = [_row("ckpt", "d" * 64, s, 0.5) for s in range(3)]
    donate = [_row("ckpt", "d" * 64, s, 2.5, env=DONATE) for s in range(3)]
    for r in teach:
        r["agent_key"] = "d" * 16 + "-teachckpt"
    for r in donate:
        r["agent_key"] = "d" * 16 + "-donateckpt"
    (section,) = build_report([*rows, *teach, *donate]).sections
    (ckpt,) = [c for c in section.overall if c.agent == "ckpt"]
    assert ckpt.envs == 2 and ckpt.score == Interval(62.5, 62.5, 62.5)
    # a retrained checkpoint on one env is a second agent there, not a third env
    again = [{**r, "agent_key": "d" * 16 + "-teachckpt2", "key": r["key"] + "b"} for r in teach]
    (section,) = build_report([*rows, *teach, *donate, *again]).sections
    assert sorted(c.envs for c in section.overall if c.agent == "ckpt") == [1, 1, 1]


def test_different_humans_get_separate_tables():
    rows = [*_refs(range(2)), *(_row("oracle", ORACLE, s, 0.5, human="local") for s in range(2))]
    rows[-1]["key"] += "x"
    report = build_report(rows)
    assert [s.human_key for s in report.sections] == ["local", "scripted"]


def test_mixed_env_versions_are_refused():
    rows = [*_refs(range(2)), _row("mine", "b" * 64, 0, 0.5, fingerprint="card1")]
    with pytest.raises(StoreError, match="mix different env versions"):
        build_report(rows)
    rows = [*_refs(range(2)), _row("x", "b" * 64, 0, 0.5, env="DialogueTeach-v1", version=1)]
    with pytest.raises(StoreError, match="two versions of one env"):
        build_report(rows)


# --- agent configs -----------------------------------------------------------------------------
def test_the_shipped_configs_load_and_references_hash_like_the_builtins():
    configs = {c.name: c for c in load_configs(ROOT / "agents")}
    assert {"naive", "competent", "oracle", "prompted-smollm2"} <= set(configs)
    for level in ("naive", "competent", "oracle"):
        assert configs[level].hash == reference_config(level).hash
    assert configs["prompted-smollm2"].spec["model"] == "local"


def test_the_experiment_plays_the_leaderboards_trained_agents():
    """benchmarks/experiment.py takes its trained agents from agents/*.yaml: with the committed
    checkpoint root they are the same configs (same hash, so the same recorded rows), and its
    study flags change only what they name."""
    import argparse
    import importlib.util

    spec = importlib.util.spec_from_file_location("experiment", ROOT / "benchmarks" / "experiment.py")
    experiment = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(experiment)
    configs = {c.name: c for c in load_configs(ROOT / "agents")}
    plain = argparse.Namespace(out=Path("runs/experiment"), ilql_beta=None, ilql_top_k=None)
    for algo in experiment.ALGOS:
        for data in experiment.DATASETS:
            ours = experiment.trained_agent(algo, data, plain, {})
            assert ours.name == f"{algo} ({data})" and ours.hash == configs[ours.name].hash
    study = argparse.Namespace(out=Path("runs/study"), ilql_beta=4.0, ilql_top_k=None)
    ilql = experiment.trained_agent("ilql", "hindsight", study, {"batch_size": 100})
    assert ilql.spec["path"] == "runs/study/{env_id}/hindsight-ilql"
    preset = configs["ilql (hindsight)"].spec["kwargs"]
    assert ilql.spec["kwargs"] == {**preset, "beta": 4.0, "batch_size": 100}


def test_config_hash_ignores_labels_but_not_options():
    a = config_from_dict({"name": "a", "kind": "prompted", "model": "local", "temperature": 0})
    b = config_from_dict({"name": "b", "kind": "prompted", "model": "local", "temperature": 0, "episodes": 3})
    c = config_from_dict({"name": "a", "kind": "prompted", "model": "local", "temperature": 0.7})
    d = config_from_dict({"name": "d", "kind": "prompted", "model": "local", "temperature": 0.0})
    assert a.hash == b.hash == d.hash != c.hash and len(a.hash) == 64


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "magic"}, "'kind' must be one of"),
        ({"kind": "reference", "level": "genius"}, "'level' must be one of"),
        ({"kind": "prompted"}, "needs model"),
        ({"kind": "prompted", "model": "local", "temprature": 0}, "unknown key"),
        ({"kind": "checkpoint", "path": "runs/{env}/x"}, "placeholder"),
        ({"kind": "python", "import": "x:y", "kwargs": [1]}, "'kwargs' must be a mapping"),
        ({"kind": "reference", "level": "naive", "episodes": 0}, "'episodes' must be a positive"),
    ],
)
def test_bad_configs_name_the_file_and_fault(tmp_path, data, message):
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(data))
    with pytest.raises(AgentConfigError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_agent_specs_resolve(tmp_path):
    assert resolve_agent("competent", tmp_path).hash == reference_config("competent").hash
    cfg = resolve_agent("test_leaderboard:Flaky")
    assert cfg.kind == "python" and cfg.name == "Flaky"
    assert isinstance(cfg.build(TEACH), Flaky)
    with pytest.raises(AgentConfigError, match="cannot import"):
        resolve_agent("no_such_module_xyz:Agent")
    with pytest.raises(AgentConfigError, match="unknown agent 'nobody'"):
        resolve_agent("nobody", tmp_path)


def test_per_env_paths_in_configs(tmp_path):
    (tmp_path / DONATE).mkdir()
    (tmp_path / DONATE / "data.jsonl").write_text("")
    cfg = config_from_dict(
        {"kind": "prompted", "model": "local", "few_shot": str(tmp_path / "{env_id}" / "data.jsonl")},
        "x.yaml",
        "p",
    )
    assert cfg.unavailable(DONATE) is None
    assert cfg.unavailable(TEACH) == f"no few-shot records file {tmp_path / TEACH / 'data.jsonl'}"
    ckpt = config_from_dict({"kind": "checkpoint", "path": "runs/{env_id}/bc"}, "y.yaml", "c")
    assert ckpt.checkpoint_dir(TEACH) == Path("runs/DialogueTeach-v0/bc")


def test_a_checkpoint_fingerprint_follows_the_agent_files_only(tmp_path):
    """Retraining (a top-level file rewritten) changes the fingerprint; a new Trainer checkpoint
    or log in a subdirectory of the run does not."""
    import os

    agent = tmp_path / TEACH / "bc"
    agent.mkdir(parents=True)
    (agent / "model.safetensors").write_bytes(b"v1")
    cfg = config_from_dict({"kind": "checkpoint", "path": str(tmp_path / "{env_id}" / "bc")}, "y.yaml", "c")
    first = cfg.fingerprint(TEACH)
    (agent / "checkpoint-120").mkdir()
    (agent / "checkpoint-120" / "dialogue_gym_agent.json").write_text("{}")
    (agent / "runs").mkdir()
    (agent / "runs" / "events.out").write_text("x")
    assert cfg.fingerprint(TEACH) == first
    (agent / "model.safetensors").write_bytes(b"v2")
    os.utime(agent / "model.safetensors", ns=(1, 1))
    assert cfg.fingerprint(TEACH) != first


# --- playing: the same episodes as plain evaluation ---------------------------------------------
def _settings(tmp_path, agents, envs=(TEACH,), **kw):
    return Settings(agents=agents, env_ids=list(envs), out_dir=tmp_path, **kw)


def test_leaderboard_plays_the_same_episodes_as_evaluate(tmp_path):
    settings = _settings(
        tmp_path, [reference_config("competent")], envs=(PREFS, DONATE), episodes=20, batch=7
    )
    _, rows = play(settings, progress=False, log=lambda m: None)
    assert len(rows) == 2 * 3 * 20  # competent plus the naive and oracle references
    for env_id in (PREFS, DONATE):
        expected = evaluate(
            reference_agent(env_id, "competent"), env_id, 20, seed=10_000, persona_split="test"
        )
        got = sorted(
            (r for r in rows if r["env_id"] == env_id and r["agent"] == "competent"), key=lambda r: r["seed"]
        )
        assert [r["return"] for r in got] == pytest.approx([e.ret for e in expected])
        assert [r["turns"] for r in got] == [e.turns for e in expected]
        assert all(r["error"] is None and r["git_commit"] and r["env_version"] == 0 for r in got)


def test_trials_replay_the_seed_persona_with_fresh_randomness(tmp_path):
    settings = _settings(tmp_path, [reference_config("competent")], episodes=4, trials=3, normalise=False)
    _, rows = play(settings, progress=False, log=lambda m: None)
    assert len(rows) == 12
    by_seed = {}
    for r in rows:
        by_seed.setdefault(r["seed"], set()).add(r["persona_id"])
    assert all(len(ids) == 1 for ids in by_seed.values())  # one persona per task seed
    assert len({r["env_seed"] for r in rows}) == 12


# --- resuming ----------------------------------------------------------------------------------
def _lines(path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def _tables(out_dir, rows):
    report = build_report(rows, pass_ks=(2,))
    write_report(report, out_dir, plot_png=False)
    return to_markdown(report), (out_dir / "leaderboard.csv").read_text()


def test_a_run_in_parts_gives_the_same_table_as_one_run(tmp_path):
    agents = [reference_config("competent")]
    kw = {"envs": (PREFS, DONATE), "episodes": 10, "trials": 2, "batch": 4, "chunk": 7}
    _, whole = play(_settings(tmp_path / "one", agents, **kw), progress=False, log=lambda m: None)
    parts = tmp_path / "parts"
    for limit in (5, 31, None):
        _, rows = play(_settings(parts, agents, limit=limit, **kw), progress=False, log=lambda m: None)
    assert len(rows) == len(whole) == 120
    assert _lines(parts / "results.jsonl") == 120  # nothing played twice
    assert _tables(tmp_path / "one", whole) == _tables(parts, rows)


def test_merged_episodes_from_another_store_are_not_played_again(tmp_path):
    """Episodes played elsewhere (another machine, the experiment script) join a store through
    --merge; the leaderboard then plays only what is still missing and gives one run's table."""
    agents = [reference_config("competent")]
    _, whole = play(_settings(tmp_path / "one", agents, episodes=12), progress=False, log=lambda m: None)
    play(_settings(tmp_path / "elsewhere", agents, episodes=8), progress=False, log=lambda m: None)
    out = tmp_path / "merged"
    args = ["--agent", "competent", "--env", TEACH, "--episodes", "12", "--out", str(out), "--no-plot"]
    args += ["--no-progress", "--merge", str(tmp_path / "elsewhere" / "results.jsonl")]
    result = CliRunner().invoke(leaderboard_cmd, args)
    assert result.exit_code == 0, result.output
    assert "merged 24 new episodes" in result.output  # 8 seeds x (competent, naive, oracle)
    assert _lines(out / "results.jsonl") == 36  # 12 more were played, none twice
    result = CliRunner().invoke(leaderboard_cmd, args)  # merging again adds nothing
    assert result.exit_code == 0 and "merged 0 new episodes" in result.output
    assert _lines(out / "results.jsonl") == 36
    with ResultStore(out / "results.jsonl") as store:
        assert _tables(tmp_path / "a", store.rows()) == _tables(tmp_path / "b", whole)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"schema": "dialogue-gym/leaderboard-v1", "key": "k"}\nnot json\n')
    result = CliRunner().invoke(leaderboard_cmd, [*args[:-1], str(broken)])
    assert result.exit_code != 0 and f"{broken}:2: not valid JSON" in result.output
    assert _lines(out / "results.jsonl") == 36  # nothing of the broken file was added


def test_a_killed_run_resumes_to_the_same_table(tmp_path):
    args = ["--agent", "competent", "--env", DONATE, "--episodes", "300", "--out", str(tmp_path)]
    args += ["--no-plot", "--no-progress", "--chunk", "16"]
    results = tmp_path / "results.jsonl"
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "leaderboard.py"), *args], cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if results.exists() and _lines(results) >= 100:
            break
        time.sleep(0.01)
    was_running = proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = _lines(results)
    assert was_running and 100 <= first < 900, first
    with open(results, "ab") as fh:  # as if it died mid-line
        fh.write(b'{"schema": "dialogue-gym/leaderboard-v1", "key": "torn')
    result = CliRunner().invoke(leaderboard_cmd, args)
    assert result.exit_code == 0, result.output
    with ResultStore(results) as store:
        resumed = store.rows()
    assert len(resumed) == 900 and _lines(results) == 900
    settings = _settings(
        tmp_path / "clean", [reference_config("competent")], (DONATE,), episodes=300, chunk=16
    )
    _, clean = play(settings, progress=False, log=lambda m: None)
    assert _tables(tmp_path / "a", resumed) == _tables(tmp_path / "b", clean)


def test_resuming_into_results_of_another_env_version_is_refused(tmp_path):
    settings = _settings(tmp_path, [reference_config("naive")], episodes=2, normalise=False)
    play(settings, progress=False, log=lambda m: None)
    path = tmp_path / "results.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["env_fingerprint"] = "0123456789ab"  # as if the card had changed without a version bump
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(StoreError, match="different env"):
        play(settings, progress=False, log=lambda m: None)


@pytest.mark.filterwarnings("ignore:.*out of date")
def test_two_versions_of_one_env_are_refused_in_one_run(tmp_path):
    import gymnasium as gym

    gym.register(
        "DialogueTeach-v7", entry_point="dialogue_gym.tasks.teach:TeachEnv", kwargs={"card": "teach"}
    )
    try:
        settings = _settings(tmp_path, [reference_config("naive")], envs=(TEACH, "DialogueTeach-v7"))
        with pytest.raises(StoreError, match="two versions of one env"):
            play(settings, progress=False, log=lambda m: None)
    finally:
        del gym.registry["DialogueTeach-v7"]


# --- broken agents -----------------------------------------------------------------------------
class Flaky(Agent):
    """Raises on some conversations, returns a non-string on others, else the competent line."""

    def __init__(self, env_id: str) -> None:
        self.base = reference_agent(env_id, "competent")

    def act(self, messages, persona=None):
        kind = zlib.crc32(messages[1]["content"].encode()) % 4  # by the human's opening
        if kind == 0:
            raise RuntimeError("flaky agent broke")
        if kind == 1 and len(messages) > 3:
            return 42
        return self.base.act(messages)


def test_a_broken_agent_gives_error_rows_and_the_run_goes_on(tmp_path):
    flaky = config_from_dict({"name": "flaky", "kind": "python", "import": "test_leaderboard:Flaky"})
    unbuildable = config_from_dict({"name": "nope", "kind": "python", "import": "test_leaderboard:no_such"})
    agents = [flaky, unbuildable, reference_config("competent")]
    settings = _settings(tmp_path, agents, envs=(DONATE,), episodes=24, batch=8)
    _, rows = play(settings, progress=False, log=lambda m: None)
    mine = [r for r in rows if r["agent"] == "flaky"]
    errors = [r["error"] for r in mine if r["error"]]
    assert len(mine) == 24 and 0 < len(errors) < 24
    assert any("agent raised RuntimeError: flaky agent broke" in e for e in errors)
    assert any("invalid action" in e and "must be a str" in e for e in errors)
    assert all(r["return"] is None for r in mine if r["error"])
    assert all(r["error"] and "could not build the agent" in r["error"] for r in rows if r["agent"] == "nope")
    assert all(r["error"] is None for r in rows if r["agent"] == "competent")
    report = build_report(rows)
    cells = _cells(report, DONATE)
    assert cells["flaky"].errors == len(errors) and cells["nope"].errors == 24
    assert not math.isnan(cells["flaky"].ret.mean) and math.isnan(cells["nope"].ret.mean)


def test_a_missing_checkpoint_is_skipped_with_a_message(tmp_path):
    ckpt = config_from_dict(
        {"name": "ilql", "kind": "checkpoint", "path": str(tmp_path / "{env_id}" / "ilql")}
    )
    (tmp_path / DONATE / "ilql").mkdir(parents=True)  # a directory that is not a checkpoint
    logs = []
    settings = _settings(tmp_path / "out", [ckpt], envs=(TEACH, DONATE), episodes=2, normalise=False)
    the_plan, rows = play(settings, progress=False, log=logs.append)
    assert any(f"ilql on {TEACH}: no checkpoint directory" in m for m in logs)
    assert the_plan.skipped == [f"ilql on {TEACH}: no checkpoint directory {tmp_path / TEACH / 'ilql'}"]
    assert [r["env_id"] for r in rows] == [DONATE, DONATE]
    assert all("could not build the agent" in r["error"] for r in rows)


def tiny_lm_agent(env_id: str):
    """An untrained tiny LM agent (a Python-import agent for the test below)."""
    from dialogue_gym.agents.lm import LMAgent
    from dialogue_gym.algos.models import load_base_model

    model, tokenizer = load_base_model("tiny")
    return LMAgent(model, tokenizer, max_new_tokens=5, name="tiny")


def test_lm_agents_tokens_are_recorded(tmp_path):
    """A trained-model agent's prompt and generated tokens reach the rows and the table."""
    spec = {"name": "tiny", "kind": "python", "import": "tests.test_leaderboard:tiny_lm_agent"}
    cfg = config_from_dict(spec)
    settings = _settings(tmp_path, [cfg], envs=(DONATE,), episodes=2, normalise=False)
    _, rows = play(settings, progress=False, log=lambda m: None)
    assert len(rows) == 2 and all(r["error"] is None for r in rows)
    for r in rows:
        assert r["tokens"]["agent_prompt"] > 50 * r["turns"]  # the role instructions alone
        assert 0 < r["tokens"]["agent_completion"] <= 5 * r["turns"]
    assert "| tiny |" in to_markdown(build_report(rows))


# --- the command -------------------------------------------------------------------------------
def test_quick_command_writes_the_tables_and_plot(tmp_path):
    result = CliRunner().invoke(
        leaderboard_cmd, ["--quick", "--env", DONATE, "--out", str(tmp_path), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    md = (tmp_path / "leaderboard.md").read_text()
    assert "### DialogueDonate-v0" in md and "| naive |" in md and "score [95% CI]" in md
    rows = to_csv_rows(build_report(ResultStore(tmp_path / "results.jsonl").rows()))
    assert {r["env_id"] for r in rows} == {DONATE, "overall"}
    assert (tmp_path / "leaderboard.png").stat().st_size > 10_000
    result = CliRunner().invoke(leaderboard_cmd, ["--out", str(tmp_path), "--report-only", "--no-plot"])
    assert result.exit_code == 0, result.output


def test_command_errors_are_clear(tmp_path):
    result = CliRunner().invoke(leaderboard_cmd, ["--env", "Nope-v0", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "unknown env id 'Nope-v0'" in result.output
    result = CliRunner().invoke(leaderboard_cmd, ["--agent", "nobody", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "unknown agent 'nobody'" in result.output
    result = CliRunner().invoke(leaderboard_cmd, ["--trials", "2", "--pass-k", "3", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "k <= --trials" in result.output


# --- slow: Ray, LLM humans -----------------------------------------------------------------------
@pytest.mark.slow
def test_ray_local_cluster_gives_the_same_rows(tmp_path):
    pytest.importorskip("ray")
    agents = [reference_config("competent")]
    kw = {"envs": (PREFS, DONATE), "episodes": 12, "chunk": 5}
    _, local = play(_settings(tmp_path / "local", agents, **kw), progress=False, log=lambda m: None)
    _, remote = play(_settings(tmp_path / "ray", agents, ray=True, **kw), progress=False, log=lambda m: None)

    def strip(rows):
        return sorted((r["key"], r["return"], r["turns"], r["error"]) for r in rows)

    assert strip(remote) == strip(local) and len(local) == 72


@pytest.mark.slow
def test_llm_human_over_two_endpoints_records_tokens(tmp_path, llama_server):
    # two real llama.cpp servers behind one litellm model: requests go to the least busy one
    human = HumanSpec(
        "litellm:openai/smollm2",
        {"api_base": llama_server, "api_key": "none", "max_tokens": 32, "cache": False},
    )
    settings = _settings(
        tmp_path, [reference_config("competent")], envs=(DONATE,), episodes=2, max_turns=2, human=human
    )
    settings.normalise = False
    _, rows = play(settings, progress=False, log=lambda m: None)
    assert len(rows) == 2 and all(r["error"] is None for r in rows), [r["error"] for r in rows]
    assert all(r["tokens"]["human_prompt"] > 0 and r["tokens"]["human_completion"] > 0 for r in rows)
    assert rows[0]["human_model"] == "openai/smollm2" and rows[0]["protocol"] == "test/2"
    assert "api_key" not in rows[0]["human_kwargs"] and rows[0]["human_key"].startswith(
        "litellm:openai/smollm2#"
    )
    (section,) = build_report(rows).sections
    assert section.human == "litellm:openai/smollm2" and section.envs[0].cells[0].tokens > 0
