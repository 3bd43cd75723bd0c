"""rollout_error: k-step open-loop errors and the disagreement-error correlation, on models whose
errors are known by construction."""

from __future__ import annotations

import math

import pytest
import torch

from pymbrl.models import DynamicsModel, GaussianEnsemble, rollout_error

A = torch.tensor([[0.0, 0.2], [-0.2, 0.0]])


def trajectories(count=4, length=30, seed=0):
    """x' = x + A x + 0.1 a (a rotation-like linear system), random actions."""
    g = torch.Generator().manual_seed(seed)
    observations, actions = [], []
    for _ in range(count):
        x = [torch.randn(2, generator=g)]
        acts = torch.rand(length, 1, generator=g) * 2 - 1
        for t in range(length):
            x.append(x[-1] + A @ x[-1] + 0.1 * acts[t].expand(2))
        observations.append(torch.stack(x))
        actions.append(acts)
    return observations, actions


def true_delta(obs, act):
    return obs @ A.T + 0.1 * act.expand(*act.shape[:-1], 2)


def test_an_exact_model_has_no_error_at_any_horizon():
    model = DynamicsModel(2, 1, hidden=4, layers=1)
    model.forward = lambda obs, act: torch.cat([true_delta(obs, act), torch.zeros(*obs.shape[:-1], 1)], dim=-1)
    obs, act = trajectories()
    result = rollout_error(model, obs, act, horizons=(1, 5, 20))
    assert result.mse.max() < 1e-10
    assert result.starts.tolist() == [4 * 30, 4 * 26, 4 * 11]


def test_a_biased_model_errs_more_the_further_it_rolls():
    model = DynamicsModel(2, 1, hidden=4, layers=1)
    model.forward = lambda obs, act: torch.cat([1.1 * true_delta(obs, act), torch.zeros(*obs.shape[:-1], 1)], dim=-1)
    obs, act = trajectories()
    result = rollout_error(model, obs, act, horizons=(1, 2, 5, 10, 20))
    assert (result.mse[1:] > result.mse[:-1]).all()
    assert float(result.disagreement.abs().max()) == 0.0  # one model: no disagreement


def test_ensemble_disagreement_tracks_the_error():
    """Members off by (m + 1) * c * |x_0|: their spread and their mean's error both grow with |x_0|."""
    model = GaussianEnsemble(2, 1, ensemble_size=3, num_elites=3, hidden=4, layers=1)

    def forward(obs, act):
        offset = 0.05 * obs[..., :1].abs()
        means = torch.stack([true_delta(obs, act) + (m + 1) * offset for m in range(3)])
        means = torch.cat([means, torch.zeros(3, *obs.shape[:-1], 1)], dim=-1)
        return means, torch.zeros_like(means)

    model.forward = forward
    obs, act = trajectories(count=8)
    result = rollout_error(model, obs, act, horizons=(1, 5))
    assert (result.correlation > 0.8).all(), result.correlation
    assert (result.disagreement > 0).all() and (result.mse > 0).all()


def test_bad_trajectories_are_refused():
    model = DynamicsModel(2, 1, hidden=4, layers=1)
    obs, act = trajectories(count=2, length=5)
    with pytest.raises(ValueError, match="same non-zero number"):
        rollout_error(model, obs, act[:1])
    with pytest.raises(ValueError, match="trajectory 1"):
        rollout_error(model, [obs[0], obs[1][:-1]], act)
    with pytest.raises(ValueError, match="obs_dim"):
        rollout_error(DynamicsModel(3, 1, hidden=4, layers=1), obs, act)
    with pytest.raises(ValueError, match="horizons"):
        rollout_error(model, obs, act, horizons=(6,))
    with pytest.raises(ValueError, match="horizons"):
        rollout_error(model, obs, act, horizons=(0,))
    assert math.isnan(float(rollout_error(model, obs, act, horizons=(1,)).correlation[0]))  # one model: constant 0
