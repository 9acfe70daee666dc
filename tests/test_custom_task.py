"""Users add a task with a card (and optionally a small class) and one call to register_task."""

from pathlib import Path

import gymnasium as gym
import pytest
import yaml
from gymnasium.utils.env_checker import check_env

import dialogue_gym
from dialogue_gym import DialogueEnv, HumanReply, Outcome, TaskCardError, load_card
from dialogue_gym.core.scripted import ScriptedHuman

CARD = {
    "task": "quiz",
    "description": "Find out the person's favourite thing.",
    "max_turns": 4,
    "reward": {"turn_cost": 0.0},
    "acts": {
        "ask": {
            "description": "asks what they like",
            "cues": ["what do you like", "favou?rite"],
            "example": "What do you like?",
        },
        "guess": {"description": "names a guess", "cues": ["is it"], "example": "Is it tea?"},
    },
    "replies": {
        "open": ["Hi!", "Hello there."],
        "like": ["I like {x}."],
        "no": ["Hm?"],
        "yes": ["Yes, {x}!"],
    },
}


class FavouriteHuman(ScriptedHuman):
    def start(self) -> str:
        return self.say("open")

    def react(self, utterance: str, analysis) -> HumanReply:
        if "guess" in analysis.acts:
            right = self.persona["likes"] in utterance.lower()
            self.right = right
            return HumanReply(
                self.say("yes" if right else "no", x=self.persona["likes"]), True, "agent_closed"
            )
        if "ask" in analysis.acts:
            return HumanReply(self.say("like", x=self.persona["likes"]))
        return HumanReply(self.say("no"))

    def outcome(self) -> Outcome:
        right = getattr(self, "right", False)
        return Outcome(float(right), {"guessed": right}, success=right)


class FavouriteEnv(DialogueEnv):
    card_schema = {"acts": dict, "replies": dict}

    def sample_persona(self, rng):
        return {"likes": str(rng.choice(["tea", "jazz", "cats"]))}

    def role_instructions(self, persona):
        return "Find out what the person likes, then guess it."

    def make_scripted_human(self):
        return FavouriteHuman(self.card)


def test_register_card_file_and_class(tmp_path: Path) -> None:
    path = tmp_path / "fav.yaml"
    path.write_text(yaml.safe_dump(CARD))
    dialogue_gym.register_task("Favourite-v0", path, env_class=FavouriteEnv)
    assert "Favourite-v0" in [t.env_id for t in dialogue_gym.list_tasks()]
    env = gym.make("Favourite-v0")
    check_env(env.unwrapped)
    env.reset(seed=0)
    reply, *_ = env.step("Hello, what do you like most?")
    likes = reply.removeprefix("I like ").rstrip(".")
    _, reward, terminated, _, info = env.step(f"Is it {likes}?")
    assert terminated and reward == 1.0 and info["outcome"] == {"guessed": True}


def test_register_refuses_bad_ids_and_cards(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Name-v0"):
        dialogue_gym.register_task("no version", CARD, env_class=FavouriteEnv)
    with pytest.raises(TaskCardError, match="not found"):
        dialogue_gym.register_task("Missing-v0", tmp_path / "missing.yaml", env_class=FavouriteEnv)
    bad = tmp_path / "bad.yaml"
    bad.write_text("acts: [unclosed\n")
    with pytest.raises(TaskCardError, match="not valid YAML"):
        dialogue_gym.register_task("Bad-v0", bad, env_class=FavouriteEnv)
    with pytest.raises(TaskCardError, match="'acts' must be dict"):
        dialogue_gym.register_task("Bad-v1", {**CARD, "acts": ["x"]}, env_class=FavouriteEnv)
    with pytest.raises(TaskCardError, match="engine"):
        dialogue_gym.register_task("Bad-v2", {**CARD, "task": "nonesuch"})
    with pytest.raises(TaskCardError, match="mapping at the top level"):
        (tmp_path / "list.yaml").write_text("- a\n- b\n")
        load_card(tmp_path / "list.yaml")


def test_card_only_task_reuses_a_builtin_engine(tmp_path: Path) -> None:
    """A new Teach task with its own concept catalogue: a card naming `task: teach`, no Python."""
    card = load_card("teach")
    mine = {**card, "description": "Teach only two finance concepts.", "max_turns": 6}
    mine["concepts"] = [c for c in card["concepts"] if c["domain"] == "finance"][:2]
    path = tmp_path / "my_tutor.yaml"
    path.write_text(yaml.safe_dump(mine, allow_unicode=True))
    dialogue_gym.register_task("MyTutor-v0", path)
    env = gym.make("MyTutor-v0")
    check_env(env.unwrapped)
    names = {c["name"] for c in mine["concepts"]}
    for seed in range(5):
        _, info = env.reset(seed=seed)
        assert any(n in info["role_instructions"] for n in names)
    assert env.unwrapped.max_turns == 6
