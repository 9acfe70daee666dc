"""benchmarks/env_speed.py: its floor makes exactly the task's calls, and the script prints its
table. No timing is asserted (speed targets live in the script's output, not in tests)."""

import importlib.util
import sys

import pytest
from conftest import ROOT

from dialogue_gym.core.env import DialogueEnv


@pytest.fixture(scope="module")
def env_speed():
    spec = importlib.util.spec_from_file_location("env_speed", ROOT / "benchmarks" / "env_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_floor_replays_the_tasks_resets_and_utterances(env_speed, monkeypatch):
    """Per chunk of episodes, the no-op env gets the same seeded resets and the same utterances,
    as many steps per episode as the task played (ended by the env or by the pool running out)."""
    calls: dict[str, list[tuple]] = {"task": [], "floor": []}

    def spy(cls, name, side):
        original = getattr(cls, name)

        def wrapped(self, *args, **kwargs):
            calls[side].append((name, kwargs.get("seed") if name == "reset" else args[0]))
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapped)

    for name in ("reset", "step"):
        spy(DialogueEnv, name, "task")
        spy(env_speed.NoopTextEnv, name, "floor")
    pool = env_speed.utterance_pool("DialogueTeach-v0", episodes=3)
    pool[1] = pool[1][:2]  # an episode the pool cuts short, before the env ends it
    pool[2] = [*pool[2], "And one more thing."]  # seed 2 ends at its recorded close, before this
    calls["task"].clear()
    task_rate, floor_rate = env_speed.run_pass("DialogueTeach-v0", pool, steps=40, chunk=4)
    assert task_rate > 0 and floor_rate > 0
    assert calls["task"] == calls["floor"]
    resets = [c for c in calls["task"] if c[0] == "reset"]
    assert [seed for _, seed in resets] == list(range(len(resets))) and len(resets) % 4 == 0
    assert sum(c[0] == "step" for c in calls["task"]) >= 40
    assert ("step", "And one more thing.") not in calls["task"]


def test_the_script_prints_its_table(env_speed, monkeypatch, capsys):
    argv = ["env_speed.py", "--env", "DialogueDonate-v0", "--steps", "50", "--repeats", "1"]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(env_speed.os, "sched_setaffinity", lambda *a: None, raising=False)
    env_speed.main()
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert set(rows) == {"env", "no-op,", "DialogueDonate-v0"}
    steps, _, _, ratio, mb = rows["DialogueDonate-v0"][1:]
    assert float(steps.replace(",", "")) > 0 and float(ratio) > 0 and 0 < float(mb) < 5
