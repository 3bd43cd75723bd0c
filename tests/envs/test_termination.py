"""The termination functions used on model rollouts agree with the real environments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pymbrl.envs.termination import termination_fn

gym = pytest.importorskip("gymnasium")


@pytest.mark.parametrize("env_id", ["InvertedPendulum-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "HalfCheetah-v5",
                                    "Pendulum-v1"])
def test_matches_the_environment_on_random_play(env_id):
    if env_id.endswith("-v5"):
        pytest.importorskip("mujoco")
    env = gym.make(env_id)
    fn = termination_fn(env_id)
    obs, _ = env.reset(seed=0)
    env.action_space.seed(0)
    olds, actions, news, ends = [], [], [], []
    for _ in range(1500):
        action = env.action_space.sample()
        next_obs, _, terminated, truncated, _ = env.step(action)
        olds.append(obs)
        actions.append(action)
        news.append(next_obs)
        ends.append(terminated)
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
    predicted = fn(*(torch.tensor(np.array(x), dtype=torch.float32) for x in (olds, actions, news)))
    assert predicted.tolist() == ends
    if env_id.startswith(("Inverted", "Hopper", "Walker", "Ant")):
        assert sum(ends) > 0  # the check saw episodes end


def test_unknown_environment_is_refused():
    with pytest.raises(ValueError, match="env_id"):
        termination_fn("CarRacing-v3")
