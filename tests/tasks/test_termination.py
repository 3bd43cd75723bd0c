"""The termination and reward functions used on model rollouts agree with the real environments."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from pymbrl.tasks.rewards import reward_fn
from pymbrl.tasks.termination import termination_fn

gym = pytest.importorskip("gymnasium")


@functools.cache
def random_play(env_id: str, steps: int = 1500):
    """(obs, action, next_obs) float tensors and the env's rewards and terminations, of random play."""
    if env_id.endswith("-v5"):
        pytest.importorskip("mujoco")
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    env.action_space.seed(0)
    olds, actions, news, rewards, ends = [], [], [], [], []
    for _ in range(steps):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        olds.append(obs)
        actions.append(action)
        news.append(next_obs)
        rewards.append(float(reward))
        ends.append(terminated)
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
    tensors = tuple(torch.tensor(np.array(x), dtype=torch.float32) for x in (olds, actions, news))
    return tensors, rewards, ends


@pytest.mark.parametrize("env_id", ["InvertedPendulum-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "HalfCheetah-v5",
                                    "Pendulum-v1"])
def test_termination_matches_the_environment_on_random_play(env_id):
    transitions, _, ends = random_play(env_id)
    assert termination_fn(env_id)(*transitions).tolist() == ends
    if env_id.startswith(("Inverted", "Hopper", "Walker", "Ant")):
        assert sum(ends) > 0  # the check saw episodes end


@pytest.mark.parametrize("env_id", ["InvertedPendulum-v5", "Pendulum-v1"])
def test_reward_matches_the_environment_on_random_play(env_id):
    transitions, rewards, ends = random_play(env_id)
    predicted = reward_fn(env_id)(*transitions)
    assert predicted.dtype == torch.float32 and predicted.shape == (len(rewards),)
    # Pendulum's observation is the float32 image of a float64 state.
    np.testing.assert_allclose(predicted.numpy(), rewards, rtol=1e-5, atol=1e-5)
    if env_id.startswith("Inverted"):
        assert 0.0 in rewards  # the check saw the pole fall


def test_unknown_environments_are_refused():
    with pytest.raises(ValueError, match="env_id"):
        termination_fn("CarRacing-v3")
    with pytest.raises(ValueError, match="^env_id: .*x position"):
        reward_fn("HalfCheetah-v5")
