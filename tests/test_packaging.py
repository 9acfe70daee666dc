"""The wheel ships the task cards and works outside the checkout."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dialogue_gym.registry import BUILTIN

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_ships_cards_and_runs(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)], check=True
    )
    (wheel,) = tmp_path.glob("dialogue_gym-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for card in BUILTIN.values():
        assert f"dialogue_gym/_cards/{card}.yaml" in names
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
    )
    code = (
        "import gymnasium as gym, dialogue_gym, dialogue_gym.core.cards as c;"
        "assert str(c.cards_dir()).endswith('_cards'), c.cards_dir();"
        f"[gym.make(e).reset(seed=0) for e in {list(BUILTIN)!r}]; print('ok')"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
