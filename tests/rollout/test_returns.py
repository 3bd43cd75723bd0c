"""Lambda-returns against their recursive definition and limiting cases; the return normaliser."""

from __future__ import annotations

import pytest
import torch

from pymbrl.rollout import ReturnNormalizer, lambda_returns


def reference(rewards, continues, values, discount, lam):
    """The definition, one number at a time."""
    H, N = rewards.shape
    out = torch.zeros(H, N, dtype=torch.float64)
    for n in range(N):
        following = float(values[H, n])
        for t in reversed(range(H)):
            c = float(continues[t, n])
            following = float(rewards[t, n]) + discount * c * ((1 - lam) * float(values[t + 1, n]) + lam * following)
            out[t, n] = following
    return out


def random_trajectories(H=15, N=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(H, N, generator=g)
    continues = (torch.rand(H, N, generator=g) > 0.1).float()
    values = torch.randn(H + 1, N, generator=g) * 5
    return rewards, continues, values


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_matches_the_recursive_definition(lam):
    rewards, continues, values = random_trajectories()
    got = lambda_returns(rewards, continues, values, discount=0.99, lam=lam)
    torch.testing.assert_close(got.double(), reference(rewards, continues, values, 0.99, lam), atol=1e-4, rtol=1e-5)


def test_limiting_cases():
    rewards, _, values = random_trajectories(H=5, N=3)
    ones = torch.ones_like(rewards)
    # lambda 0: one-step TD targets.
    torch.testing.assert_close(lambda_returns(rewards, ones, values, discount=0.9, lam=0.0), rewards + 0.9 * values[1:])
    # lambda 1: discounted rewards to the horizon plus the discounted bootstrap.
    got = lambda_returns(rewards, ones, values, discount=0.9, lam=1.0)
    expected = torch.stack([sum(0.9**k * rewards[t + k] for k in range(5 - t)) + 0.9 ** (5 - t) * values[5]
                            for t in range(5)])
    torch.testing.assert_close(got, expected)
    # An episode that ends after step 2: the return there is its reward alone.
    cut = ones.clone()
    cut[2] = 0.0
    torch.testing.assert_close(lambda_returns(rewards, cut, values, discount=0.9, lam=0.95)[2], rewards[2])


def test_bad_arguments_are_named():
    rewards, continues, values = random_trajectories(H=4, N=2)
    with pytest.raises(ValueError, match="values"):
        lambda_returns(rewards, continues, values[:-1])
    with pytest.raises(ValueError, match="continues"):
        lambda_returns(rewards, continues[:, :1], values)
    with pytest.raises(ValueError, match="lam"):
        lambda_returns(rewards, continues, values, lam=1.5)


def test_the_normaliser_scales_down_large_returns_only():
    normaliser = ReturnNormalizer(decay=0.5)
    assert float(normaliser.scale) == 1.0
    assert float(normaliser.update(torch.linspace(0.0, 0.5, 101))) == 1.0  # a spread below 1 is not scaled up
    wide = torch.linspace(0.0, 100.0, 101)  # 5th-95th percentile range 90
    first = float(normaliser.update(wide))
    assert first == pytest.approx(0.5 * 0.45 + 0.5 * 90.0)
    assert float(normaliser.update(wide)) == pytest.approx(0.5 * first + 0.5 * 90.0)
    restored = ReturnNormalizer(decay=0.5)
    restored.load_state_dict(normaliser.state_dict())
    assert float(restored.scale) == float(normaliser.scale)
    with pytest.raises(ValueError, match="high"):
        ReturnNormalizer(low=0.9, high=0.1)
