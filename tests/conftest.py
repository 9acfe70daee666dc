import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dialogue_gym  # noqa: E402,F401
from dialogue_gym.registry import BUILTIN  # noqa: E402

ENV_IDS = list(BUILTIN)
P4G = ROOT.parent / "shared" / "data" / "persuasionforgood"


@pytest.fixture(params=ENV_IDS)
def env_id(request: pytest.FixtureRequest) -> str:
    return request.param
