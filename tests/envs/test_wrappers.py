"""ActionRepeat holds an action for several env steps, sums their rewards and stops at an episode's end."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from pymbrl.envs.wrappers import ActionRepeat


def test_an_action_is_held_and_its_rewards_summed():
    plain, held = gym.make("Pendulum-v1"), ActionRepeat(gym.make("Pendulum-v1"), 3)
    plain.reset(seed=1)
    obs, _ = held.reset(seed=1)
    action = np.array([1.5], np.float32)
    rewards = [plain.step(action)[1] for _ in range(3)]
    obs, reward, terminated, truncated, info = held.step(action)
    assert np.array_equal(obs, plain.unwrapped._get_obs()) and reward == pytest.approx(sum(rewards))
    assert info["env_steps"] == 3 and not (terminated or truncated)


def test_a_step_stops_where_the_episode_ends():
    env = ActionRepeat(gym.make("Pendulum-v1"), 3)  # 200 = 66 x 3 + 2
    env.reset(seed=0)
    steps = [env.step(np.zeros(1, np.float32)) for _ in range(67)]
    assert [s[4]["env_steps"] for s in steps[-2:]] == [3, 2]
    assert steps[-1][3] and not any(s[3] for s in steps[:-1])
    with pytest.raises(ValueError, match="^repeat: "):
        ActionRepeat(gym.make("Pendulum-v1"), 0)
