"""How wrong a learned model gets when it is rolled forward on its own predictions (compounding
error), and whether the ensemble's disagreement says so in advance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from pymbrl._checks import integer
from pymbrl.models.ensemble import DynamicsModel, GaussianEnsemble


class RolloutError(NamedTuple):
    """k-step prediction error of a model on recorded trajectories.

    Attributes
    ----------
    horizons : list[int]
    mse : Tensor float [H] -- mean over start states and observation dimensions of the squared
        error of the k-step open-loop prediction (the model fed its own predictions and the
        recorded actions).
    disagreement : Tensor float [H] -- mean over start states of the elites' disagreement at step
        k (the mean over dimensions of the variance of their mean predictions); 0 for a single model.
    correlation : Tensor float [H] -- Pearson correlation, over start states, between that
        disagreement and the squared error at step k (NaN when either is constant).
    starts : Tensor int [H] -- how many start states each horizon averaged over.
    """

    horizons: list[int]
    mse: torch.Tensor
    disagreement: torch.Tensor
    correlation: torch.Tensor
    starts: torch.Tensor


def _pearson(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x, y = x - x.mean(), y - y.mean()
    denominator = torch.sqrt((x * x).sum() * (y * y).sum())
    return (x * y).sum() / denominator if float(denominator) > 0 else torch.tensor(float("nan"))


@torch.no_grad()
def rollout_error(model: GaussianEnsemble | DynamicsModel, observations: Sequence[torch.Tensor],
                  actions: Sequence[torch.Tensor], horizons: Sequence[int] = (1, 5, 10, 20)) -> RolloutError:
    """Open-loop k-step errors of ``model`` on trajectories, all start states at once.

    Parameters
    ----------
    model : GaussianEnsemble or DynamicsModel
        Rolled with its deterministic prediction (an ensemble's elite mean).
    observations : sequence of float tensors [T_i + 1, obs_dim]
        One per trajectory, with the final observation.
    actions : sequence of float tensors [T_i, act_dim]
    horizons : sequence of int
        k values; a trajectory contributes the start states t with t + k <= T_i.

    Returns
    -------
    RolloutError
    """
    if len(observations) != len(actions) or len(observations) == 0:
        raise ValueError(f"observations, actions: expected the same non-zero number of trajectories, got "
                         f"{len(observations)} and {len(actions)}")
    horizons = [integer(k, "horizons") for k in horizons]
    for i, (obs, act) in enumerate(zip(observations, actions)):
        if obs.dim() != 2 or act.dim() != 2 or obs.shape[0] != act.shape[0] + 1:
            raise ValueError(f"trajectory {i}: expected observations [T + 1, obs_dim] and actions [T, act_dim], "
                             f"got {tuple(obs.shape)} and {tuple(act.shape)}")
        if obs.shape[1] != model.obs_dim or act.shape[1] != model.act_dim:
            raise ValueError(f"trajectory {i}: expected obs_dim {model.obs_dim} and act_dim {model.act_dim}, "
                             f"got {obs.shape[1]} and {act.shape[1]}")
    device = next(model.parameters()).device
    mse, spread, corr, starts = [], [], [], []
    for k in horizons:
        # Every (trajectory, t) with t + k <= T, stacked: the k-step rollouts run as one batch.
        state, truth, acts = [], [], []
        for obs, act in zip(observations, actions):
            n = obs.shape[0] - 1 - k + 1
            if n <= 0:
                continue
            t = torch.arange(n)
            state.append(obs[t])
            truth.append(obs[t + k])
            acts.append(torch.stack([act[t + j] for j in range(k)], dim=1))  # [n, k, act_dim]
        if not state:
            raise ValueError(f"horizons: {k} is longer than every trajectory")
        x = torch.cat(state).to(device, torch.float32)
        a = torch.cat(acts).to(device, torch.float32)
        disagreement = torch.zeros(x.shape[0], device=device)
        for j in range(k):
            if isinstance(model, GaussianEnsemble):
                means, _ = model(x, a[:, j])
                elite = means[model.elites, :, :-1]  # [elites, M, obs_dim]
                disagreement = elite.var(dim=0, unbiased=False).mean(dim=1) if model.num_elites > 1 else disagreement
                x = x + elite.mean(dim=0)
            else:
                x, _ = model.sample(x, a[:, j])
        error = ((x - torch.cat(truth).to(device, torch.float32)) ** 2).mean(dim=1)
        mse.append(error.mean())
        spread.append(disagreement.mean())
        corr.append(_pearson(disagreement, error))
        starts.append(x.shape[0])
    return RolloutError(horizons, torch.stack(mse).cpu(), torch.stack(spread).cpu(), torch.stack(corr).cpu(),
                        torch.tensor(starts))
