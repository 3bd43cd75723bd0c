"""The gymnasium view of a :class:`~pymbrl.dyna.mdp.TabularMDP`, the part of :mod:`pymbrl.dyna`
that needs gymnasium (the ``pymbrl[agents]`` extra); the MDPs and the batch runner do not."""

from __future__ import annotations

from pymbrl import _core
from pymbrl._checks import resolve_seed
from pymbrl._extras import optional_imports
from pymbrl.dyna.mdp import TabularMDP

with optional_imports():
    import gymnasium as gym


class TabularEnv(gym.Env):
    """A gymnasium environment over a :class:`TabularMDP`.

    Observations and actions are ints. For the same ``seed``, ``TabularEnv(mdp, seed)`` driven by an
    agent seeded ``seed`` reproduces :func:`~pymbrl.dyna.runner.run_batch`'s run for that seed exactly. The real-step
    clock that decides the MDP's phase runs on across resets; ``reset(seed=...)`` reseeds the
    generator but keeps the clock.
    """

    metadata = {"render_modes": []}

    def __init__(self, mdp: TabularMDP, seed: int | None = None) -> None:
        if not isinstance(mdp, TabularMDP):
            raise TypeError(f"mdp: expected a TabularMDP, got {type(mdp).__name__}")
        self.mdp = mdp
        self.observation_space = gym.spaces.Discrete(mdp.n_states)
        self.action_space = gym.spaces.Discrete(mdp.n_actions)
        self._env = _core.dyna.TabularEnv(mdp.core, _core.dyna.env_seed(resolve_seed(seed)))
        self._length = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self._env.reseed(_core.dyna.env_seed(resolve_seed(seed)))
        self._length = 0
        return self._env.reset(), {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        next_state, reward, terminated = self._env.step(action)
        self._length += 1
        limit = self.mdp.max_episode_steps
        truncated = not terminated and limit is not None and self._length >= limit
        return next_state, reward, terminated, truncated, {}
