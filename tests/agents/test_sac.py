"""SAC: the squashed-Gaussian log-probability, the update's losses falling on fixed data, a short
training run, and the trained agent loaded from its run directory."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pymbrl.agents import sac
from pymbrl.models.sac import Actor


def test_log_prob_is_the_density_of_the_scaled_squashed_action():
    torch.manual_seed(0)
    low, high = np.array([-2.0, 0.0]), np.array([2.0, 1.0])
    actor = Actor(3, 2, 16, low, high)
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
    agent = sac.SAC(3, 1, np.array([-1.0]), np.array([1.0]), hidden=64, seed=0)
    n = 512
    obs, action = torch.randn(n, 3), torch.rand(n, 1) * 2 - 1
    # discount 0: the critics' targets are the rewards, a smooth function they can fit.
    batch = {"obs": obs, "action": action, "reward": obs[:, 0] - 2 * action[:, 0], "next_obs": torch.randn(n, 3),
             "discount": torch.zeros(n)}
    losses = [agent.update(batch)["q_loss"] for _ in range(200)]
    assert np.mean(losses[-20:]) < 0.2 * np.mean(losses[:20])
    assert all(math.isfinite(x) for x in losses)


def test_a_short_run_trains_and_evaluates():
    result = sac.train(sac.SACConfig(steps=600, learning_starts=300, hidden=32, eval_every=300, eval_episodes=1))
    agent, history = result.agent, result.history
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
    history = sac.train(sac.SACConfig(steps=40, learning_starts=10, batch_size=32, hidden=8, eval_every=40,
                                      eval_episodes=1)).history
    assert np.isfinite(history[-1]["q_loss"])


def test_discrete_action_spaces_are_refused():
    with pytest.raises(ValueError, match="Box"):
        sac.train(sac.SACConfig(env="CartPole-v1", steps=10))


def test_the_seed_fixes_weights_and_noise_and_the_global_generator_is_left_alone():
    before = torch.get_rng_state()
    a, b = (sac.SAC(3, 1, np.array([-1.0]), np.array([1.0]), hidden=16, seed=5) for _ in range(2))
    obs = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.sample(obs), b.sample(obs))
    c = sac.SAC(3, 1, np.array([-1.0]), np.array([1.0]), hidden=16, seed=6)
    assert not torch.equal(a.actor.net[0].weight, c.actor.net[0].weight)
    sac.train(sac.SACConfig(steps=120, learning_starts=60, hidden=16, batch_size=16, eval_every=120, eval_episodes=1))
    assert torch.equal(torch.get_rng_state(), before)


def test_load_gives_the_trained_agent_acting_on_one_observation_or_a_batch(tmp_path):
    config = sac.SACConfig(steps=250, learning_starts=100, hidden=16, batch_size=16, eval_every=250, eval_episodes=1)
    trained = sac.train(config, tmp_path).agent
    loaded = sac.load(tmp_path)
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    batch = loaded.act(obs)
    assert batch.shape == (5, 1) and np.array_equal(batch, trained.act(obs))
    assert np.allclose(loaded.act(obs[2]), batch[2], atol=1e-6)  # one observation gives one action
    assert loaded.act(obs[0], deterministic=False).shape == (1,)
    with pytest.raises(ValueError, match=r"obs: expected an observation of shape \(3,\)"):
        loaded.act(np.zeros(4))


def test_load_refuses_what_is_not_a_sac_run(tmp_path):
    with pytest.raises(ValueError, match="run_dir: expected the directory of a pymbrl run"):
        sac.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="has no config.yaml"):
        sac.load(tmp_path)
