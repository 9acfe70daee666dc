"""The Gymnasium contract, checked for every built-in task."""

import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from dialogue_gym.evaluation import reference_agent, run_episode

SAMPLE_LINES = [
    "Hi there! How are you doing today?",
    "Could you tell me a bit more about that — what matters most to you?",
    "Ça va? Let's talk: naïve café “quotes”, em-dashes — and emoji 🙂.",
    "Thanks, that's all from me. Goodbye!",
]


def play(env, seed, lines):
    obs, info = env.reset(seed=seed)
    out = [obs]
    for line in lines:
        obs, r, term, trunc, info = env.step(line)
        out.append((obs, r, term, trunc))
        if term or trunc:
            break
    return out, info


def test_make_both_ids(env_id):
    assert gym.make(env_id).spec.id == env_id
    assert gym.make(f"dialogue_gym:{env_id}").unwrapped.spec.id == env_id


def test_check_env(env_id):
    check_env(gym.make(env_id).unwrapped)


def test_spaces_hold_free_text(env_id):
    env = gym.make(env_id)
    assert env.action_space.contains("Hi there! ¿Qué tal? 🙂")
    assert not env.action_space.contains("   ")
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert info["transcript"][0]["role"] == "system" and info["role_instructions"]


def test_same_seed_same_episode(env_id):
    a, ia = play(gym.make(env_id), 7, SAMPLE_LINES)
    b, ib = play(gym.make(env_id), 7, SAMPLE_LINES)
    assert a == b and ia["transcript"] == ib["transcript"]


def test_seeds_differ(env_id):
    openings = {gym.make(env_id).reset(seed=s)[0] for s in range(10)}
    assert len(openings) > 3


def test_pickle_mid_episode(env_id):
    env = gym.make(env_id)
    env.reset(seed=3)
    env.step(SAMPLE_LINES[0])
    clone = pickle.loads(pickle.dumps(env))
    assert env.step(SAMPLE_LINES[1]) == clone.step(SAMPLE_LINES[1])


def test_episode_ends_with_outcome_and_persona(env_id):
    env = gym.make(env_id)
    result = run_episode(env, reference_agent(env_id, "competent"), seed=1)
    assert result.outcome and result.end_reason in {
        "agent_closed",
        "human_left",
        "goal_reached",
        "turn_limit",
    }
    # the persona's id is worked out when asked (records, splits), not on every reset
    from dialogue_gym.core.env import persona_id

    assert "id" not in env.unwrapped.persona
    assert env.unwrapped.persona_id == persona_id(env.unwrapped.persona)
    assert len(env.unwrapped.persona_id) == 12


def test_turn_limit_truncates(env_id):
    env = gym.make(env_id, max_turns=2)
    env.reset(seed=0)
    _, _, term, trunc, _ = env.step("Hello, nice to meet you.")
    assert not trunc
    _, _, term, trunc, info = env.step("Okay, thank you for that.")
    assert term or trunc
    if trunc:
        assert info["end_reason"] == "turn_limit" and "outcome" in info


def test_render_ansi(env_id):
    env = gym.make(env_id, render_mode="ansi")
    env.reset(seed=0)
    env.step(SAMPLE_LINES[0])
    text = env.render()
    assert "Agent: Hi there!" in text and "Human:" in text


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_envs_with_unicode(env_id, mode):
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode=mode)
    try:
        obs, _ = envs.reset(seed=11)
        assert len(obs) == 2 and all(isinstance(o, str) and o for o in obs)
        single = gym.make(env_id)
        assert obs[0] == single.reset(seed=11)[0]
        for line in SAMPLE_LINES:
            obs, rewards, *_ = envs.step((line, line + " ✓"))
            assert rewards.shape == (2,)
        assert all(isinstance(o, str) for o in obs)
    finally:
        envs.close()


def test_async_vector_env_from_class(env_id):
    """The AsyncVectorEnv constructor directly, shared memory on (its default)."""
    envs = gym.vector.AsyncVectorEnv([lambda: gym.make(env_id)] * 2)
    try:
        obs, _ = envs.reset(seed=0)
        obs, *_ = envs.step(["Naïve question: ¿por qué? — “because” 🙂", "Hi!"])
        assert all(isinstance(o, str) for o in obs)
    finally:
        envs.close()


@pytest.mark.parametrize(
    ("action", "exc", "words"),
    [
        (42, TypeError, "must be a str"),
        (None, TypeError, "must be a str"),
        ("", ValueError, "empty"),
        ("   \n ", ValueError, "empty"),
        ("x" * 5000, ValueError, "over the limit"),
    ],
)
def test_bad_actions(env_id, action, exc, words):
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    with pytest.raises(exc, match=words):
        env.step(action)
    env.step("Still fine after a bad action?")  # the episode goes on


def test_step_after_end_is_refused(env_id):
    env = gym.make(env_id, max_turns=1).unwrapped
    env.reset(seed=0)
    env.step("Hello!")
    with pytest.raises(RuntimeError, match="reset"):
        env.step("Hello again!")


def test_bad_action_in_vector_env_names_the_env(env_id):
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode="async")
    envs.reset(seed=0)
    try:
        with pytest.raises(TypeError, match=r"episode seed 1, .*must be a str.*got int"):
            envs.step(("Hi!", 7))
    finally:
        envs.close(terminate=True)


def test_unknown_env_id():
    with pytest.raises(gym.error.Error, match="DialogueNope"):
        gym.make("DialogueNope-v0")


def test_reward_is_float_and_finite(env_id):
    env = gym.make(env_id)
    env.reset(seed=5)
    _, r, *_ = env.step("Hello!")
    assert isinstance(r, float) and np.isfinite(r)


def test_persona_id_is_the_hash_of_the_sorted_json():
    """persona_id is the SHA-1 of json.dumps(persona without "id", sort_keys=True, default=str),
    whichever encoder builds the text: nested, non-ASCII, numpy and non-finite values included."""
    import hashlib
    import json
    import types

    from dialogue_gym.core.env import persona_id

    def reference(p):
        body = {k: v for k, v in p.items() if k != "id"}
        return hashlib.sha1(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:12]

    personas = [
        {"b": 1, "a": [0.1, 2.5e-7, float("inf"), float("nan")], "c": {"z": True, "y": None}},
        {"name": "Zoë “quoted”", "tags": ("x", "y"), "n": np.int64(3), "f": np.float32(0.5)},
        {"id": "ignored", "x": 1},
        types.MappingProxyType({"x": 1, "id": "also ignored"}),
        {},
    ]
    for i in range(20):
        env = gym.make(["DialogueTeach-v0", "DialogueCounsel-v0"][i % 2]).unwrapped
        personas.append(env.sample_persona(np.random.default_rng(i)))
    for p in personas:
        assert persona_id(p) == reference(p), p
    assert persona_id({"id": "a", "x": 1}) == persona_id({"x": 1})
