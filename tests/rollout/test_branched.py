"""branched_rollout against a per-state loop on models with known dynamics, termination,
disagreement truncation, reproducibility, writing into a replay buffer, and bad input."""

from __future__ import annotations

import pytest
import torch

from pymbrl.models import DynamicsModel, GaussianEnsemble
from pymbrl.replay import ReplayBuffer
from pymbrl.rollout import branched_rollout

A = torch.tensor([[0.0, 0.3], [-0.3, 0.0]])


def exact_model():
    """A DynamicsModel whose prediction is the true dynamics x' = x + A x + 0.1 a, r = x_0."""
    model = DynamicsModel(2, 1, hidden=4, layers=1)
    model.forward = lambda obs, act: torch.cat([obs @ A.T + 0.1 * act.expand(*act.shape[:-1], 2), obs[..., :1]], -1)
    return model


def policy(obs):
    return torch.tanh(obs[:, :1] - obs[:, 1:])


def never(obs, act, nxt):
    return torch.zeros(obs.shape[0], dtype=torch.bool)


def test_matches_a_per_state_loop():
    starts = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    batch = branched_rollout(exact_model(), policy, starts, 4, termination_fn=never)
    assert len(batch.obs) == 200
    for i in range(50):
        x = starts[i:i + 1]
        for t in range(4):
            a = policy(x)
            nxt = x + x @ A.T + 0.1 * a.expand(1, 2)
            row = t * 50 + i  # step-major
            assert int(batch.start[row]) == i and int(batch.step[row]) == t
            assert torch.allclose(batch.obs[row], x[0]) and torch.allclose(batch.next_obs[row], nxt[0], atol=1e-6)
            assert torch.allclose(batch.reward[row], x[0, 0])
            x = nxt


def test_a_reward_function_replaces_the_models_reward():
    starts = torch.randn(30, 2, generator=torch.Generator().manual_seed(1))

    def distance_travelled(obs, act, nxt):
        return (nxt - obs).norm(dim=1)

    batch = branched_rollout(exact_model(), policy, starts, 3, termination_fn=never, reward_fn=distance_travelled)
    assert torch.allclose(batch.reward, (batch.next_obs - batch.obs).norm(dim=1))
    learned = branched_rollout(exact_model(), policy, starts, 3, termination_fn=never)
    assert torch.equal(learned.next_obs, batch.next_obs) and not torch.allclose(learned.reward, batch.reward)


def test_a_terminated_rollout_stops_after_its_last_step():
    starts = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.5, 0.5]])

    def ends_when_first_coordinate_negative(obs, act, nxt):
        return nxt[:, 0] < 0

    batch = branched_rollout(exact_model(), policy, starts, 6, termination_fn=ends_when_first_coordinate_negative)
    for i in range(3):
        mine = batch.start == i
        terminated = batch.terminated[mine]
        steps = batch.step[mine]
        assert steps.tolist() == list(range(len(steps)))  # consecutive from 0, nothing after the end
        if bool(terminated.any()):
            assert bool(terminated[-1]) and not bool(terminated[:-1].any())
        else:
            assert len(steps) == 6
    assert bool(batch.terminated[batch.start == 1][0])  # starts at x_0 = -1: ends on its first step


def test_high_disagreement_ends_a_rollout_without_its_step():
    model = GaussianEnsemble(2, 1, ensemble_size=3, num_elites=3, hidden=4, layers=1)

    def forward(obs, act, members=None):
        # Member m predicts a change of m in both coordinates where x_0 > 0, and 0 elsewhere: the
        # members disagree only there.
        members = torch.arange(3) if members is None else members
        if obs.dim() == 2:
            obs = obs.expand(members.numel(), *obs.shape)
        spread = (obs[..., :1] > 0).float() * members.view(-1, 1, 1).float()
        means = torch.cat([spread.expand(*obs.shape), torch.zeros_like(obs[..., :1])], -1)
        return means, torch.full_like(means, -20.0)

    model.forward = forward
    starts = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    batch = branched_rollout(model, policy, starts, 3, termination_fn=never, max_disagreement=0.1)
    assert (batch.start == 0).sum() == 0 and (batch.start == 1).sum() == 3


def test_same_generator_seed_same_rollouts():
    torch.manual_seed(0)
    model = GaussianEnsemble(2, 1, ensemble_size=4, num_elites=3, hidden=8, layers=1)
    starts = torch.randn(30, 2)
    runs = [branched_rollout(model, policy, starts, 3, termination_fn=never, generator=torch.Generator().manual_seed(s))
            for s in (5, 5, 6)]
    assert torch.equal(runs[0].next_obs, runs[1].next_obs)
    assert not torch.equal(runs[0].next_obs, runs[2].next_obs)
    mean = branched_rollout(model, policy, starts, 1, termination_fn=never, deterministic=True)
    means, _ = model(starts, policy(starts))
    assert torch.allclose(mean.next_obs, starts + means[model.elites, :, :2].mean(0))


def test_transitions_go_into_a_replay_buffer_intact():
    spec = {"obs": ((2,), torch.float32), "action": ((1,), torch.float32), "reward": ((), torch.float32),
            "terminated": ((), torch.bool), "truncated": ((), torch.bool)}
    buffer = ReplayBuffer(1000, spec, seed=0)
    batch = branched_rollout(exact_model(), policy, torch.randn(20, 2), 5, termination_fn=never)
    batch.write(buffer)
    assert len(buffer) == 100
    sample = buffer.sample(64)
    for obs, nxt, reward in zip(sample.obs, sample.next_obs, sample.reward):
        row = int(((batch.obs - obs).abs().sum(1)).argmin())
        assert torch.allclose(batch.next_obs[row], nxt) and torch.allclose(batch.reward[row], reward)


def test_bad_input():
    model = exact_model()
    with pytest.raises(ValueError, match="start_obs"):
        branched_rollout(model, policy, torch.zeros(5, 3), 2, termination_fn=never)
    with pytest.raises(ValueError, match="policy"):
        branched_rollout(model, lambda obs: torch.zeros(obs.shape[0], 2), torch.zeros(5, 2), 2, termination_fn=never)
    with pytest.raises(ValueError, match=r"reward_fn: expected rewards \[5\], got \(5, 1\)"):
        branched_rollout(model, policy, torch.zeros(5, 2), 2, termination_fn=never,
                         reward_fn=lambda obs, act, nxt: obs[:, :1])
    with pytest.raises(ValueError, match="horizon"):
        branched_rollout(model, policy, torch.zeros(5, 2), 0, termination_fn=never)
