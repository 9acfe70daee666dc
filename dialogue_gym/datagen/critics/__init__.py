"""The built-in hindsight critics, one module per task, registered by env class.

A critic reads a finished transcript (only the transcript), flags the agent turns that should
have been different and knows an agent that plays well given what the conversation revealed:
see :class:`dialogue_gym.datagen.hindsight.Critic`.
"""

from __future__ import annotations

from dialogue_gym.datagen.critics.counsel import CounselCritic
from dialogue_gym.datagen.critics.donate import DonateCritic
from dialogue_gym.datagen.critics.prefs import PrefsCritic
from dialogue_gym.datagen.critics.teach import TeachCritic
from dialogue_gym.datagen.hindsight import register_critic
from dialogue_gym.tasks.counsel import CounselEnv
from dialogue_gym.tasks.donate import DonateEnv
from dialogue_gym.tasks.prefs import PrefsEnv
from dialogue_gym.tasks.teach import TeachEnv

CRITICS = {TeachEnv: TeachCritic, PrefsEnv: PrefsCritic, CounselEnv: CounselCritic, DonateEnv: DonateCritic}
for _env, _critic in CRITICS.items():
    register_critic(_env, _critic)

__all__ = ["CRITICS", "CounselCritic", "DonateCritic", "PrefsCritic", "TeachCritic"]
