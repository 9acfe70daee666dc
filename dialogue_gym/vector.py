"""Vector envs for dialogue tasks: sub-envs that wait on LLM calls step concurrently.

Gymnasium's ``SyncVectorEnv`` steps its envs one after another, so with an LLM human each step
would wait on one model call at a time. :class:`ThreadedVectorEnv` steps them in threads: API
calls (litellm) overlap, and a shared local model (``HFBackend``) batches the concurrent
requests into one ``generate``. ``gym.make_vec(env_id, n)`` picks it automatically when the human
is an LLM, and the plain ``SyncVectorEnv`` for scripted humans (pure Python, where threads only
add overhead); ``vectorization_mode="sync"`` / ``"async"`` still give Gymnasium's own.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from copy import deepcopy
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.vector.utils import concatenate, iterate


class ThreadedVectorEnv(SyncVectorEnv):
    """A ``SyncVectorEnv`` whose ``reset`` and ``step`` run the sub-envs concurrently in threads.

    Autoreset follows Gymnasium's default (``NEXT_STEP``): the step after an episode ends resets
    that sub-env and ignores its action.
    """

    def __init__(self, env_fns: Any, max_workers: int | None = None, **kwargs: Any) -> None:
        super().__init__(env_fns, **kwargs)
        if self.autoreset_mode != AutoresetMode.NEXT_STEP:
            raise ValueError("ThreadedVectorEnv supports autoreset_mode=NEXT_STEP only")
        self._pool = ThreadPoolExecutor(max_workers or self.num_envs, thread_name_prefix="dialogue-env")

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        seeds = [None] * self.num_envs if seed is None else seed
        if isinstance(seeds, int):
            seeds = [seeds + i for i in range(self.num_envs)]
        if len(seeds) != self.num_envs:
            raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} envs")
        results = list(
            self._pool.map(lambda i: self.envs[i].reset(seed=seeds[i], options=options), range(self.num_envs))
        )
        infos: dict[str, Any] = {}
        for i, (obs, info) in enumerate(results):
            self._env_obs[i] = obs
            infos = self._add_info(infos, info, i)
        self._observations = concatenate(self.single_observation_space, self._env_obs, self._observations)
        self._autoreset_envs = np.zeros((self.num_envs,), dtype=np.bool_)
        self._terminations[:] = False
        self._truncations[:] = False
        return (deepcopy(self._observations) if self.copy else self._observations), infos

    def step(self, actions: Any):
        acts = list(iterate(self.action_space, actions))

        def one(i: int) -> tuple:
            if self._autoreset_envs[i]:
                obs, info = self.envs[i].reset()
                return obs, 0.0, False, False, info
            return self.envs[i].step(acts[i])

        results = list(self._pool.map(one, range(self.num_envs)))
        infos: dict[str, Any] = {}
        for i, (obs, reward, terminated, truncated, info) in enumerate(results):
            self._env_obs[i] = obs
            self._rewards[i], self._terminations[i], self._truncations[i] = reward, terminated, truncated
            infos = self._add_info(infos, info, i)
        self._observations = concatenate(self.single_observation_space, self._env_obs, self._observations)
        self._autoreset_envs = np.logical_or(self._terminations, self._truncations)
        return (
            deepcopy(self._observations) if self.copy else self._observations,
            np.copy(self._rewards),
            np.copy(self._terminations),
            np.copy(self._truncations),
            infos,
        )

    def close_extras(self, **kwargs: Any) -> None:
        self._pool.shutdown(wait=False)
        super().close_extras(**kwargs)


def make_vector(env_id: str, num_envs: int = 1, **kwargs: Any) -> SyncVectorEnv:
    """Gymnasium ``vector_entry_point`` of the dialogue envs (see the module docstring)."""
    human = kwargs.get("human", "scripted")
    fns = [lambda: gym.make(env_id, **kwargs) for _ in range(num_envs)]
    if human == "scripted":
        return SyncVectorEnv(fns)
    return ThreadedVectorEnv(fns)
