"""Action repeat: each agent action held for several env steps (PlaNet, Dreamer), so that a planner's
step moves the state enough for its model to tell actions apart."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from pymbrl._checks import integer


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
