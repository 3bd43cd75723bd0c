"""Reward functions of the tasks whose reward is a function of the observation and action, for
model rollouts that should use the true reward instead of the model's prediction of it.

The MuJoCo locomotion rewards (HalfCheetah, Hopper, Walker2d, Ant) depend on the change of the
torso's x position, which their observations leave out, so there a model must learn the reward.

Each function takes ``(obs, action, next_obs)`` float tensors [N, ...] and returns float [N].
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from pymbrl.tasks.termination import inverted_pendulum as pole_fell

RewardFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def pendulum(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """Pendulum-v1: -(angle^2 + 0.1 velocity^2 + 0.001 torque^2) of the state the action was taken
    in (observation: cos, sin, angular velocity), the torque clipped to [-2, 2]."""
    angle = torch.atan2(obs[:, 1], obs[:, 0])
    torque = action[:, 0].clamp(-2.0, 2.0)
    return -(angle**2 + 0.1 * obs[:, 2] ** 2 + 0.001 * torque**2)


def inverted_pendulum(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """InvertedPendulum-v5: 1 for every step after which the pole is still up, else 0."""
    return (~pole_fell(obs, action, next_obs)).to(next_obs.dtype)


REWARD: dict[str, RewardFn] = {"Pendulum": pendulum, "InvertedPendulum": inverted_pendulum}


def reward_fn(env_id: str) -> RewardFn:
    """The reward function of a gymnasium env id (the version suffix is ignored)."""
    name = env_id.split("-v")[0]
    if name not in REWARD:
        raise ValueError(f"env_id: expected one of {sorted(REWARD)} (any version), got {env_id!r}; the "
                         f"locomotion tasks' rewards depend on the torso's x position, which is not observed, so a "
                         f"model has to learn them")
    return REWARD[name]
