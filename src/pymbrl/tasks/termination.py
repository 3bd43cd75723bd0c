"""Termination functions of gymnasium's MuJoCo and classic-control tasks, for model rollouts: a
learned model predicts the next observation, and whether the episode ends there is computed from
it with the environment's own rule (as in MBPO's static functions, here for the v5 envs).

Each function takes ``(obs, action, next_obs)`` float tensors [N, ...] and returns bool [N].
"""

from __future__ import annotations

from collections.abc import Callable

import torch

TerminationFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def never(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """Tasks that only end by time limit (Pendulum, HalfCheetah, Swimmer, Reacher)."""
    return torch.zeros(next_obs.shape[0], dtype=torch.bool, device=next_obs.device)


def inverted_pendulum(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """InvertedPendulum-v5: the pole angle (observation 1) leaves [-0.2, 0.2], or the state is not finite."""
    return ~torch.isfinite(next_obs).all(dim=1) | (next_obs[:, 1].abs() > 0.2)


def hopper(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """Hopper-v5 (healthy ranges of the env's defaults): torso height (observation 0) above 0.7, torso
    angle (1) within 0.2, the rest of the state (observations 1..) within 100."""
    z, angle = next_obs[:, 0], next_obs[:, 1]
    healthy = ((next_obs[:, 1:].abs() < 100).all(dim=1) & (z > 0.7) & (angle.abs() < 0.2)
               & torch.isfinite(next_obs).all(dim=1))
    return ~healthy


def walker2d(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """Walker2d-v5: torso height (observation 0) in (0.8, 2.0) and torso angle (1) in (-1, 1)."""
    z, angle = next_obs[:, 0], next_obs[:, 1]
    healthy = (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0) & torch.isfinite(next_obs).all(dim=1)
    return ~healthy


def ant(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """Ant-v5: torso height (observation 0) in [0.2, 1.0] and a finite state."""
    z = next_obs[:, 0]
    return ~(torch.isfinite(next_obs).all(dim=1) & (z >= 0.2) & (z <= 1.0))


TERMINATION: dict[str, TerminationFn] = {
    "Pendulum": never,
    "InvertedPendulum": inverted_pendulum,
    "Hopper": hopper,
    "Walker2d": walker2d,
    "HalfCheetah": never,
    "Ant": ant,
}


def termination_fn(env_id: str) -> TerminationFn:
    """The termination function of a gymnasium env id (the version suffix is ignored), e.g.
    ``termination_fn("Hopper-v5")``."""
    name = env_id.split("-v")[0]
    if name not in TERMINATION:
        raise ValueError(f"env_id: expected one of {sorted(TERMINATION)} (any version), got {env_id!r}")
    return TERMINATION[name]
