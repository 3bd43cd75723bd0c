"""gymnasium wrappers: :class:`ActionRepeat`, each agent action held for several env steps (PlaNet,
Dreamer), so that a planner's step moves the state enough for its model to tell actions apart; and
:class:`ResizeFrames`, an env's RGB frames resized to the image models' 64x64."""

from __future__ import annotations

from typing import Any

import numpy as np

from pymbrl._checks import integer
from pymbrl._extras import optional_imports
from pymbrl.envs.frames import IMAGE_SHAPE, resize_frames

with optional_imports():
    import gymnasium as gym


class ActionRepeat(gym.Wrapper):
    """Steps the wrapped env ``repeat`` times with the same action; the step's reward is their sum,
    and it stops early where the episode ends. ``info["env_steps"]`` says how many env steps it
    took (``repeat``, or fewer at an episode's end).

    Parameters
    ----------
    env : gym.Env
    repeat : int
        >= 1 (1 changes nothing).
    """

    def __init__(self, env: gym.Env, repeat: int):
        super().__init__(env)
        self.repeat = integer(repeat, "repeat")

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        total = 0.0
        for done in range(1, self.repeat + 1):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, {**info, "env_steps": done}


class ResizeFrames(gym.ObservationWrapper):
    """RGB frames [H, W, 3] uint8 -> [64, 64, 3] uint8 by area averaging. ``key`` picks the frame
    out of a Dict observation (e.g. ViZDoom's ``"screen"``)."""

    def __init__(self, env: gym.Env, key: str | None = None):
        super().__init__(env)
        self.key = key
        self.observation_space = gym.spaces.Box(0, 255, IMAGE_SHAPE, np.uint8)

    def observation(self, observation) -> np.ndarray:
        return resize_frames(observation if self.key is None else observation[self.key])
