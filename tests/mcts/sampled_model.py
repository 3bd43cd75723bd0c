"""A deterministic model for the Sampled MuZero tests: HashModel's rewards, discounts, values and next
embeddings, keyed by the bits of the sampled action vector, and fixed interior policies.

Every output row depends on its own (embedding row, action row) only, so the per-tree reference
(batches of one row) sees the numbers the batched search sees.
"""

from __future__ import annotations

import torch
from torch.distributions import (Categorical, Distribution, Independent, Normal, OneHotCategorical, TanhTransform,
                                 TransformedDistribution)

from pymbrl.mcts import SampledRecurrentOutput

from .hash_model import HashModel

KINDS = ("normal", "tanh", "categorical", "onehot")
_MASK32 = 0xFFFFFFFF


class SampledHashModel:
    """``recurrent_fn(embedding float32 [B, D], action [B, *event]) -> (SampledRecurrentOutput,
    next_embedding [B, D])`` with ``policy(B)`` at every new node.

    kind: "normal" (Independent Normal over ``size`` dimensions), "tanh" (the same squashed by
    tanh), "categorical" (``size`` categories, int64 actions) or "onehot" (OneHotCategorical).
    The fixed interior policies are concentrated enough that discrete draws repeat.
    """

    def __init__(self, kind: str, size: int, seed: int = 0, *, discount: float | None = None,
                 reward_scale: float = 1.0, embedding_dim: int = 4) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
        self.kind, self.size = kind, size
        self.hash = HashModel(2 * size, embedding_dim, seed, discount=discount, reward_scale=reward_scale)
        self.loc = torch.linspace(-0.5, 0.5, size)
        self.scale = torch.full((size,), 0.8)
        self.logits = torch.tensor([1.5, -1.0, 0.5, -2.0, 0.0, 1.0, -0.5, 2.0][:size] + [0.0] * max(0, size - 8))

    def distribution(self, params: torch.Tensor) -> Distribution:
        """The policy of this kind from ``params`` [B, 2 * size] (the first half: locations or logits)."""
        n = self.size
        if self.kind in ("categorical", "onehot"):
            return (Categorical if self.kind == "categorical" else OneHotCategorical)(logits=params[:, :n])
        normal = Independent(Normal(params[:, :n], params[:, n:].exp()), 1)
        return normal if self.kind == "normal" else TransformedDistribution(normal, [TanhTransform(cache_size=1)])

    def policy(self, batch_size: int) -> Distribution:
        """The fixed policy of every interior node, batch_shape [batch_size]."""
        first = self.logits if self.kind in ("categorical", "onehot") else self.loc
        params = torch.cat([first, self.scale.log()])
        return self.distribution(params.expand(batch_size, -1))

    def key(self, action: torch.Tensor) -> torch.Tensor:
        """int64 [B] in [0, 2^32): the action's identity (its value, or a sum of its float32 bits)."""
        if self.kind == "categorical":
            return action.to(torch.int64)
        bits = action.to(torch.float32).reshape(action.shape[0], -1).contiguous().view(torch.int32)
        bits = bits.to(torch.int64) & _MASK32
        weights = torch.arange(1, 2 * bits.shape[1], 2, dtype=torch.int64)  # small odd numbers: no overflow
        return (bits * weights).sum(dim=1) & _MASK32

    def __call__(self, embedding: torch.Tensor, action: torch.Tensor) -> tuple[SampledRecurrentOutput, torch.Tensor]:
        out, next_embedding = self.hash(embedding, self.key(action))
        return (SampledRecurrentOutput(out.reward, out.discount, self.policy(embedding.shape[0]), out.value),
                next_embedding)

    def roots(self, batch_size: int, seed: int = 0) -> tuple[Distribution, torch.Tensor, torch.Tensor]:
        """(root policy, value [B], embedding [B, D]): per-row policies that differ from the interior one."""
        logits, value, embedding = self.hash.roots(batch_size, seed)
        if self.kind in ("categorical", "onehot"):
            params = logits
        else:
            params = torch.cat([logits[:, :self.size] / 2.0, logits[:, self.size:] / 4.0], dim=1)
        return self.distribution(params), value, embedding
