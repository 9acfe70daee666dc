"""dialogue-gym: goal-directed conversations with simulated humans as Gymnasium environments.

``import dialogue_gym`` registers the built-in tasks with Gymnasium::

    import gymnasium as gym
    import dialogue_gym  # noqa: F401
    env = gym.make("DialogueTeach-v0")
"""

from dialogue_gym.agents.base import Agent
from dialogue_gym.core.cards import TaskCardError, load_card
from dialogue_gym.core.env import DialogueEnv
from dialogue_gym.core.human import HumanReply, Outcome, SimulatedHuman
from dialogue_gym.core.spaces import FreeText
from dialogue_gym.registry import list_tasks, register_builtin, register_task

__version__ = "0.1.0"
__all__ = [
    "Agent",
    "DialogueEnv",
    "FreeText",
    "HumanReply",
    "Outcome",
    "SimulatedHuman",
    "TaskCardError",
    "list_tasks",
    "load_card",
    "register_task",
]

register_builtin()
