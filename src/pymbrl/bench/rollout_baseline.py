"""Per-state MBPO model rollouts in plain PyTorch: the reference pymbrl's batched rollouts are benchmarked against.

This is the loop a researcher writes without a library, one start state at a time: at every step
the policy acts on a batch of one, a random elite member of the ensemble (each member its own
``nn.Sequential`` MLP) predicts the mean and log-variance of [delta observation, reward], a sample
of that Gaussian gives the next observation and the reward, the environment's termination rule
decides whether the rollout ends, and the transition is appended to a list.

It depends on torch only, so it also runs on its own (random weights, Hopper-sized)::

    python -m pymbrl.bench.rollout_baseline
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

Policy = Callable[[torch.Tensor], torch.Tensor]
Termination = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(obs [1, obs_dim], action [1, act_dim], next_obs [1, obs_dim]) -> bool [1]``."""


class Transition(NamedTuple):
    obs: torch.Tensor        # [obs_dim]
    action: torch.Tensor     # [act_dim]
    reward: float
    next_obs: torch.Tensor   # [obs_dim]
    terminated: bool


class Member(nn.Module):
    """One Gaussian MLP of the ensemble: normalised (obs, action) -> mean and log-variance of
    [delta obs, reward], the log-variance soft-clamped between ``min_logvar`` and ``max_logvar``."""

    def __init__(self, obs_dim: int, act_dim: int, *, hidden: int = 200, layers: int = 4) -> None:
        super().__init__()
        self.out_dim = obs_dim + 1
        sizes = [obs_dim + act_dim] + [hidden] * layers
        blocks: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            blocks += [nn.Linear(a, b), nn.SiLU()]
        self.net = nn.Sequential(*blocks, nn.Linear(hidden, 2 * self.out_dim))
        self.register_buffer("input_mean", torch.zeros(obs_dim + act_dim))
        self.register_buffer("input_std", torch.ones(obs_dim + act_dim))
        self.register_buffer("max_logvar", torch.full((self.out_dim,), 0.5))
        self.register_buffer("min_logvar", torch.full((self.out_dim,), -10.0))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (torch.cat([obs, action], dim=-1) - self.input_mean) / self.input_std
        mean, logvar = self.net(x).chunk(2, dim=-1)
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar


@torch.no_grad()
def rollout(members: Sequence[Member], elites: Sequence[int], policy: Policy, start_obs: torch.Tensor, horizon: int,
            termination_fn: Termination, *, seed: int = 0) -> list[Transition]:
    """Rolls out from each row of ``start_obs`` [N, obs_dim] in turn, for ``horizon`` steps or until
    the termination rule ends it; returns the transitions in the order they were made."""
    rng = random.Random(seed)
    noise = torch.Generator().manual_seed(seed)
    transitions: list[Transition] = []
    for i in range(start_obs.shape[0]):
        obs = start_obs[i:i + 1]
        for _ in range(horizon):
            action = policy(obs)
            mean, logvar = members[rng.choice(elites)](obs, action)
            sample = mean + torch.randn(mean.shape, generator=noise) * torch.exp(0.5 * logvar)
            next_obs = obs + sample[:, :-1]
            done = bool(termination_fn(obs, action, next_obs)[0])
            transitions.append(Transition(obs[0], action[0], sample[0, -1].item(), next_obs[0], done))
            if done:
                break
            obs = next_obs
    return transitions


if __name__ == "__main__":
    torch.set_num_threads(1)
    torch.manual_seed(0)
    obs_dim, act_dim, states, horizon = 11, 3, 100, 5
    members = [Member(obs_dim, act_dim) for _ in range(7)]
    actor = nn.Sequential(nn.Linear(obs_dim, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, act_dim),
                          nn.Tanh())

    def never(obs, action, next_obs):
        return torch.zeros(obs.shape[0], dtype=torch.bool)

    t0 = time.perf_counter()
    out = rollout(members, range(5), actor, torch.randn(states, obs_dim), horizon, never)
    print(f"{len(out) / (time.perf_counter() - t0):,.0f} transitions/s ({len(out)} transitions)")
