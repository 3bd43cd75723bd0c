"""SAC: the squashed-Gaussian log-probability, the update's losses falling on fixed data, and a
short training run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pymbrl.agents import sac


def test_log_prob_is_the_density_of_the_scaled_squashed_action():
    torch.manual_seed(0)
    low, high = np.array([-2.0, 0.0]), np.array([2.0, 1.0])
    actor = sac.Actor(3, 2, 16, low, high)
    obs = torch.randn(64, 3)
    action, log_prob = actor(obs)
    assert ((action >= torch.tensor(low)) & (action <= torch.tensor(high))).all()
    # Change of variables from the pre-squash Gaussian, written the direct way.
    mean, log_std = actor.net(obs).chunk(2, dim=-1)
    u = torch.atanh(((action - actor.center) / actor.scale).clamp(-1 + 1e-6, 1 - 1e-6))
    gaussian = torch.distributions.Normal(mean, log_std.clamp(-20, 2).exp()).log_prob(u).sum(-1)
    jacobian = torch.log(actor.scale * (1 - torch.tanh(u) ** 2)).sum(-1)
    assert torch.allclose(log_prob, gaussian - jacobian, atol=1e-3)


def test_updates_fit_the_critics_on_fixed_data():
    torch.manual_seed(0)
    agent = sac.SAC(3, 1, np.array([-1.0]), np.array([1.0]), sac.SACConfig(hidden=64), seed=0)
    n = 512
    obs, action = torch.randn(n, 3), torch.rand(n, 1) * 2 - 1
    # discount 0: the critics' targets are the rewards, a smooth function they can fit.
    batch = {"obs": obs, "action": action, "reward": obs[:, 0] - 2 * action[:, 0], "next_obs": torch.randn(n, 3),
             "discount": torch.zeros(n)}
    losses = [agent.update(batch)["q_loss"] for _ in range(200)]
    assert np.mean(losses[-20:]) < 0.2 * np.mean(losses[:20])
    assert all(math.isfinite(x) for x in losses)


def test_a_short_run_trains_and_evaluates():
    agent, history = sac.train("Pendulum-v1", 600, seed=0, config=sac.SACConfig(learning_starts=300, hidden=32),
                               eval_every=300, eval_episodes=1)
    assert [r["step"] for r in history] == [300, 600]
    assert all(math.isfinite(r["return"]) for r in history)
    assert agent.log_alpha.item() != 0.0  # the temperature was tuned


@pytest.mark.parametrize("field, value", [("hidden", "abc"), ("hidden", 1e100), ("hidden", 0), ("batch_size", -1),
                                          ("learning_starts", -5), ("gamma", float("nan")), ("tau", 2.0),
                                          ("lr", -1.0), ("buffer_size", True), ("target_entropy", float("inf")),
                                          ("batch_size", 2_000_000)])
def test_bad_config_fields_are_refused_by_name(field, value):
    """These used to fail mid-run as torch errors (or crash the first update)."""
    with pytest.raises(ValueError, match=field):
        sac.SACConfig(**{field: value})


def test_learning_starts_below_the_batch_size_waits_for_a_full_batch():
    """learning_starts 10 with batch_size 32 used to sample 32 of 11 stored transitions and crash."""
    _, history = sac.train("Pendulum-v1", 40, seed=0, config=sac.SACConfig(learning_starts=10, batch_size=32, hidden=8),
                           eval_every=40, eval_episodes=1)
    assert np.isfinite(history[-1]["q_loss"])


def test_discrete_action_spaces_are_refused():
    with pytest.raises(ValueError, match="Box"):
        sac.train("CartPole-v1", 10)


def test_the_seed_fixes_weights_and_noise_and_the_global_generator_is_left_alone():
    before = torch.get_rng_state()
    a, b = (sac.SAC(3, 1, np.array([-1.0]), np.array([1.0]), sac.SACConfig(hidden=16), seed=5) for _ in range(2))
    obs = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.sample(obs), b.sample(obs))
    c = sac.SAC(3, 1, np.array([-1.0]), np.array([1.0]), sac.SACConfig(hidden=16), seed=6)
    assert not torch.equal(a.actor.net[0].weight, c.actor.net[0].weight)
    sac.train("Pendulum-v1", 120, seed=0, config=sac.SACConfig(learning_starts=60, hidden=16, batch_size=16),
              eval_every=120, eval_episodes=1)
    assert torch.equal(torch.get_rng_state(), before)
