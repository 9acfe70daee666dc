"""Each task's reference agents are ordered, and no attack beats the naive agent."""

import pytest

from dialogue_gym import load_card
from dialogue_gym.agents.attacks import attack_agents
from dialogue_gym.evaluation import evaluate, reference_agent, summarise
from dialogue_gym.registry import BUILTIN

EPISODES = 500


@pytest.fixture(scope="module")
def references():
    cache = {}

    def get(env_id, level, n=EPISODES):
        key = (env_id, level, n)
        if key not in cache:
            cache[key] = summarise(evaluate(reference_agent(env_id, level), env_id, n, seed=10_000))
        return cache[key]

    return get


def test_oracle_beats_competent_beats_naive(env_id, references):
    naive, comp, oracle = (references(env_id, lvl) for lvl in ("naive", "competent", "oracle"))
    # clear gaps: the 95% intervals do not overlap
    assert comp["mean"] - comp["ci95"] > naive["mean"] + naive["ci95"], (naive, comp)
    assert oracle["mean"] - oracle["ci95"] > comp["mean"] + comp["ci95"], (comp, oracle)


@pytest.mark.parametrize("attack", ["stuffing", "keywords", "praise", "repeat", "gibberish", "injection"])
def test_attack_no_better_than_naive(env_id, attack, references):
    card = load_card(BUILTIN[env_id])
    agent = attack_agents(card, reference_agent(env_id, "competent"))[attack]
    got = summarise(evaluate(agent, env_id, 200, seed=10_000))
    naive = references(env_id, "naive", 200)
    assert got["mean"] <= naive["mean"], (attack, got, naive)
