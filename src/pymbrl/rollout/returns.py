"""Returns of imagined trajectories for actor-critic learning in imagination (Dreamer): the
lambda-return (Sutton & Barto 12.1; DreamerV1-V3) and DreamerV3's return normalisation by an
exponential moving average of the 5th-95th percentile range.
"""

from __future__ import annotations

import torch

from pymbrl._checks import real


def lambda_returns(rewards: torch.Tensor, continues: torch.Tensor, values: torch.Tensor, *, discount: float = 0.997,
                   lam: float = 0.95) -> torch.Tensor:
    """R_t = r_t + gamma c_t ((1 - lambda) v_{t+1} + lambda R_{t+1}), with R_H = v_H.

    Parameters
    ----------
    rewards : float Tensor [H, N]
        Reward of the step from imagined state t to t + 1.
    continues : float Tensor [H, N]
        Probability (or 0/1 flag) that the episode goes on after that step.
    values : float Tensor [H + 1, N]
        The critic's value of states 0..H; v_H bootstraps the end of the horizon.
    discount : float
        gamma in [0, 1], 0.997 in DreamerV3 (it uses 1 - 1/333).
    lam : float
        lambda in [0, 1], 0.95: 0 gives one-step TD targets, 1 discounted returns bootstrapped at H.

    Returns
    -------
    Tensor [H, N]: the targets for states 0..H-1. The recursion runs over H (a Python loop of whole
    [N] tensor operations), never over the N imagined sequences.
    """
    discount = real(discount, "discount", low=0.0, high=1.0)
    lam = real(lam, "lam", low=0.0, high=1.0)
    if rewards.dim() != 2 or continues.shape != rewards.shape:
        raise ValueError(f"continues: expected the shape of rewards [H, N] {tuple(rewards.shape)}, "
                         f"got {tuple(continues.shape)}")
    horizon, n = rewards.shape
    if tuple(values.shape) != (horizon + 1, n):
        raise ValueError(f"values: expected shape [H + 1, N] = {(horizon + 1, n)}, got {tuple(values.shape)}")
    # Everything but the recursion is computed for all steps at once.
    bootstrap = rewards + discount * continues * (1.0 - lam) * values[1:]
    weight = discount * continues * lam
    out = torch.empty_like(rewards)
    following = values[-1]
    for t in range(horizon - 1, -1, -1):
        following = bootstrap[t] + weight[t] * following
        out[t] = following
    return out


class ReturnNormalizer:
    """DreamerV3's return scale: S = max(1, EMA of (95th - 5th percentile) of the returns), so
    advantages are divided by S; large returns are scaled down, small ones are not scaled up
    (which would amplify noise where rewards are sparse).

    Parameters
    ----------
    decay : float
        EMA decay per update, 0.99.
    low, high : float
        The percentiles, 0.05 and 0.95.
    """

    def __init__(self, decay: float = 0.99, low: float = 0.05, high: float = 0.95):
        self.decay = real(decay, "decay", low=0.0, high=1.0)
        self.low = real(low, "low", low=0.0, high=1.0)
        self.high = real(high, "high", low=0.0, high=1.0)
        if not self.low < self.high:
            raise ValueError(f"high: expected a percentile above low ({self.low}), got {self.high}")
        self.range: torch.Tensor | None = None

    @torch.no_grad()
    def update(self, returns: torch.Tensor) -> torch.Tensor:
        """Folds a batch of returns (any shape) into the EMA and returns the scale S (a 0-d tensor)."""
        flat = returns.detach().float().reshape(-1)
        spread = torch.quantile(flat, self.high) - torch.quantile(flat, self.low)
        self.range = spread if self.range is None else self.decay * self.range + (1.0 - self.decay) * spread
        return self.scale

    @property
    def scale(self) -> torch.Tensor:
        """max(1, the EMA of the range); 1 before the first update."""
        if self.range is None:
            return torch.tensor(1.0)
        return torch.clamp(self.range, min=1.0)

    def state_dict(self) -> dict:
        return {"range": self.range}

    def load_state_dict(self, state: dict) -> None:
        self.range = state["range"]
