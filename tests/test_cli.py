"""The dialogue-gym command, run as a real subprocess."""

import subprocess
import sys

import pytest

from dialogue_gym.registry import BUILTIN


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dialogue_gym.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_list_shows_every_builtin_with_description() -> None:
    out = cli("list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    for env_id in BUILTIN:
        (line,) = [x for x in lines if x.startswith(env_id)]
        assert len(line.split(maxsplit=1)[1]) > 20  # a real one-line description


@pytest.mark.parametrize("env_id", list(BUILTIN))
def test_play_to_the_end(env_id: str) -> None:
    out = cli(
        "play",
        env_id,
        "--seed",
        "3",
        "--max-turns",
        "2",
        stdin="Hello! How are you?\n\nThanks, bye for now!\n",
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "Human:" in text and "== transcript ==" in text and "Agent: Hello! How are you?" in text
    assert "== outcome ==" in text and "return:" in text and "== hidden persona ==" in text


def test_play_reports_bad_input_and_goes_on() -> None:
    long = "x" * 2000
    out = cli("play", "DialogueDonate-v0", "--seed", "0", "--max-turns", "1", stdin=f"{long}\nHi there!\n")
    assert out.returncode == 0, out.stderr
    assert "over the limit" in out.stdout and "== outcome ==" in out.stdout


def test_unknown_env_is_a_clear_error() -> None:
    out = cli("play", "DialogueNope-v0")
    assert out.returncode != 0 and "unknown env id 'DialogueNope-v0'" in out.stderr
