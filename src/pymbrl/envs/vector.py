"""Frame games by id, batched or one at a time: MiniPacman and Atari as the frame-based agents (I2A)
play them.

An id is ``"MiniPacman-<mode>"`` (a mode of :data:`pymbrl.envs.minipacman.MODES`) or an Atari id
``"ALE/<Game>-v5"``. :func:`make_vector_env` gives N games with same-step autoreset
(:class:`~pymbrl.envs.minipacman.MiniPacmanVectorEnv` or :class:`~pymbrl.envs.atari.AtariVectorEnv`,
whose every ``info`` holds ``final_obs``, ``episode_return`` and ``episode_length``);
:func:`make_env` one game of the same kind, as a ``gymnasium.Env``, that plays exactly as a game of
the batch does (for evaluation and videos); :func:`env_spaces` the frame planes and actions.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as np

from pymbrl._extras import optional_imports
from pymbrl.envs.minipacman import ACTION_NAMES, FRAME_SHAPE, MODES, MiniPacmanEnv, MiniPacmanVectorEnv

with optional_imports():
    import gymnasium as gym

MINIPACMAN = "MiniPacman-"
ATARI = "ALE/"


def check_env_id(env_id: Any) -> str:
    """``env_id`` if it names a frame game of this module; else ValueError naming ``env``."""
    if isinstance(env_id, str) and (env_id.startswith(ATARI) or
                                    (env_id.startswith(MINIPACMAN) and env_id[len(MINIPACMAN):] in MODES)):
        return env_id
    raise ValueError(f"env: expected 'MiniPacman-<mode>' with a mode of {MODES} or an Atari id 'ALE/<Game>-v5', "
                     f"got {env_id!r}")


def make_vector_env(env_id: str, num_envs: int, seed: int | None, frame_cap: int = 1000) -> gym.vector.VectorEnv:
    """``num_envs`` games of ``env_id`` seeded by ``seed``: a
    :class:`~pymbrl.envs.minipacman.MiniPacmanVectorEnv` truncating at ``frame_cap``, or an
    :class:`~pymbrl.envs.atari.AtariVectorEnv` with the DQN preprocessing (84x84 grey frames, 4
    stacked, rewards clipped to their sign; ``frame_cap`` does not apply)."""
    env_id = check_env_id(env_id)
    if env_id.startswith(MINIPACMAN):
        return MiniPacmanVectorEnv(num_envs, mode=env_id[len(MINIPACMAN):], frame_cap=frame_cap, seed=seed)
    from pymbrl.envs.atari import AtariVectorEnv  # needs ale-py, an optional dependency

    return AtariVectorEnv(env_id, num_envs, seed)


def env_spaces(env_id: str) -> tuple[tuple[int, int, int], int]:
    """(frame planes (C, H, W), number of actions) of ``env_id``."""
    if check_env_id(env_id).startswith(MINIPACMAN):
        rows, cols, channels = FRAME_SHAPE
        return (channels, rows, cols), len(ACTION_NAMES)
    return _atari_spaces(env_id)


@functools.cache
def _atari_spaces(env_id: str) -> tuple[tuple[int, int, int], int]:
    """Read from one game (which loads its ROM), once per id."""
    env = make_vector_env(env_id, 1, 0)
    h, w, c = env.single_observation_space.shape
    env.close()
    return (c, h, w), int(env.single_action_space.n)


def make_env(env_id: str, frame_cap: int = 1000, render_mode: str | None = None) -> gym.Env:
    """One game of ``env_id`` as :func:`make_vector_env` plays it: a
    :class:`~pymbrl.envs.minipacman.MiniPacmanEnv`, or an Atari game as :class:`OneGame`.
    ``render_mode="rgb_array"`` makes :meth:`gymnasium.Env.render` return the frame."""
    env_id = check_env_id(env_id)
    if env_id.startswith(MINIPACMAN):
        return MiniPacmanEnv(env_id[len(MINIPACMAN):], frame_cap, render_mode=render_mode)
    return OneGame(make_vector_env(env_id, 1, None), render_mode)


class OneGame(gym.Env):
    """The one game of a vector env with same-step autoreset, as a ``gymnasium.Env``: the same
    observations, rewards and episode ends as in the batch (an episode's last observation is its
    final frame; stepping after the end raises ``ResetNeeded`` until :meth:`reset`).

    ``render_mode="rgb_array"``: :meth:`render` returns the newest plane of the observation as
    grey RGB, uint8 [H, W, 3] (Atari: the 84x84 frame the agent sees).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, env: gym.vector.VectorEnv, render_mode: str | None = None):
        if env.num_envs != 1:
            raise ValueError(f"env: expected a vector env of one game, got {env.num_envs}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: expected None or 'rgb_array', got {render_mode!r}")
        self.env, self.render_mode = env, render_mode
        self.observation_space = env.single_observation_space
        self.action_space = env.single_action_space
        self.obs: np.ndarray | None = None
        self.over = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        obs, _ = self.env.reset(seed=seed)
        self.obs, self.over = obs[0], False
        return self.obs, {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.over:
            raise gym.error.ResetNeeded("step: the episode is over or was never started; call reset() first")
        obs, reward, terminated, truncated, info = self.env.step(np.asarray([action]))
        self.over = bool(terminated[0] or truncated[0])
        self.obs = info["final_obs"][0] if self.over else obs[0]
        return self.obs, float(reward[0]), bool(terminated[0]), bool(truncated[0]), {}

    def render(self) -> np.ndarray | None:
        if self.render_mode is None or self.obs is None:
            return None
        return np.repeat(self.obs[..., -1:], 3, axis=-1)

    def close(self) -> None:
        self.env.close()
