"""Batched branched model rollouts (MBPO, Janner et al. 2019): from N real start states, a policy
acts and a learned model predicts, for a few steps, all states at once as whole-batch tensor
operations on the model's device.

Finished rollouts are masked, not removed, so no step needs the host to look at the data (a
boolean index would synchronise a GPU on every step); the valid transitions are picked out once,
at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from pymbrl._checks import integer, real
from pymbrl.tasks.rewards import RewardFn
from pymbrl.tasks.termination import TerminationFn
from pymbrl.models.ensemble import DynamicsModel, GaussianEnsemble

Policy = Callable[[torch.Tensor], torch.Tensor]


class RolloutBatch(NamedTuple):
    """The transitions of a batch of model rollouts, flattened over starts and steps (step-major).

    obs, next_obs float [M, obs_dim]; action float [M, act_dim]; reward float [M]; terminated bool
    [M]; step int64 [M] (0-based step within its rollout); start int64 [M] (index of its start state).
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    step: torch.Tensor
    start: torch.Tensor

    def write(self, buffer) -> None:
        """Adds the transitions to a :class:`pymbrl.replay.ReplayBuffer` (``num_envs=1``; its spec has
        ``obs``, ``action``, ``reward``, ``terminated`` and ``truncated``). Each transition is
        stored as a one-step piece of its rollout (``truncated`` unless terminated), so the buffer
        keeps its own next observation."""
        if len(self.obs) == 0:
            return
        buffer.extend(obs=self.obs.cpu(), action=self.action.cpu(), reward=self.reward.cpu(),
                      terminated=self.terminated.cpu(), truncated=(~self.terminated).cpu(), next_obs=self.next_obs.cpu())


@torch.no_grad()
def branched_rollout(model: GaussianEnsemble | DynamicsModel, policy: Policy, start_obs: torch.Tensor, horizon: int,
                     *, termination_fn: TerminationFn, reward_fn: RewardFn | None = None, deterministic: bool = False,
                     max_disagreement: float | None = None, generator: torch.Generator | None = None) -> RolloutBatch:
    """Rolls the model forward from every start state for ``horizon`` steps.

    Parameters
    ----------
    model : GaussianEnsemble or DynamicsModel
        An ensemble predicts each row with a random elite member, noise included (MBPO), or with the
        elites' mean when ``deterministic``.
    policy : callable
        ``policy(obs [n, obs_dim]) -> action [n, act_dim]`` on the model's device.
    start_obs : float [N, obs_dim]
        Real states to branch from.
    horizon : int
        Steps per rollout (MBPO: 1 on HalfCheetah, growing from 1 to 15 on Hopper).
    termination_fn : callable
        ``(obs, action, next_obs) -> bool [n]``, e.g. ``pymbrl.tasks.termination.termination_fn(env_id)``;
        a rollout ends after the step that terminates it.
    reward_fn : callable or None
        ``(obs, action, next_obs) -> float [n]``, the task's true reward (e.g.
        ``pymbrl.tasks.rewards.reward_fn(env_id)``) in place of the model's prediction; None: the
        model's.
    max_disagreement : float or None
        Ends a rollout, without its step, where the elites' disagreement (the mean over dimensions
        of the variance of their mean predictions of the next observation) exceeds this.
    generator : torch.Generator or None
        For the member choice and the noise.

    Returns
    -------
    RolloutBatch
    """
    horizon = integer(horizon, "horizon")
    if max_disagreement is not None:
        max_disagreement = real(max_disagreement, "max_disagreement", low=0.0)
    device = next(model.parameters()).device
    if not isinstance(start_obs, torch.Tensor) or start_obs.dim() != 2 or start_obs.shape[1] != model.obs_dim:
        shape = tuple(start_obs.shape) if isinstance(start_obs, torch.Tensor) else type(start_obs).__name__
        raise ValueError(f"start_obs: expected a float tensor [N, {model.obs_dim}], got {shape}")
    obs = start_obs.to(device=device, dtype=torch.float32)
    n = obs.shape[0]
    alive = torch.ones(n, dtype=torch.bool, device=device)
    steps: list[tuple[torch.Tensor, ...]] = []
    for t in range(horizon):
        action = policy(obs)
        if not isinstance(action, torch.Tensor) or tuple(action.shape) != (n, model.act_dim):
            shape = tuple(action.shape) if isinstance(action, torch.Tensor) else type(action).__name__
            raise ValueError(f"policy: expected actions [{n}, {model.act_dim}], got {shape}")
        action = action.to(dtype=torch.float32)
        next_obs, reward = model.sample(obs, action, generator=generator, deterministic=deterministic)
        if reward_fn is not None:
            reward = reward_fn(obs, action, next_obs)
            if not isinstance(reward, torch.Tensor) or tuple(reward.shape) != (n,):
                shape = tuple(reward.shape) if isinstance(reward, torch.Tensor) else type(reward).__name__
                raise ValueError(f"reward_fn: expected rewards [{n}], got {shape}")
        keep = alive
        if max_disagreement is not None and isinstance(model, GaussianEnsemble) and model.num_elites > 1:
            means, _ = model(obs, action)
            spread = means[model.elites, :, :-1].var(dim=0, unbiased=False).mean(dim=1)
            keep = keep & (spread <= max_disagreement)
        terminated = termination_fn(obs, action, next_obs) & keep
        steps.append((obs, action, reward, next_obs, terminated, keep))
        alive = keep & ~terminated
        obs = next_obs
    obs_, action_, reward_, next_, term_, keep_ = (torch.cat(parts) for parts in zip(*steps))
    rows = keep_.nonzero().squeeze(1)  # the one host synchronisation of the rollout
    step = torch.arange(horizon, device=device).repeat_interleave(n)
    start = torch.arange(n, device=device).repeat(horizon)
    return RolloutBatch(obs_[rows], action_[rows], reward_[rows], next_[rows], term_[rows], step[rows], start[rows])
