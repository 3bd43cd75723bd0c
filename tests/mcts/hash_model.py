"""A deterministic "random" recurrent function whose output rows depend on their input row only.

Comparing the C++ search with the pure-Python reference needs a model that gives the same float32
numbers for a row whether it is evaluated in a batch of B or in a batch of 1 (the reference
evaluates one tree at a time). A matmul does not guarantee that (kernels may block and reduce
differently per batch size), so this model hashes the bits of each (embedding row, action) pair
with exact integer arithmetic and turns the hash into float32 outputs with elementwise ops only:
no reductions over floats, no cross-row dependence, identical results on any batch slicing and
on CPU or GPU.

Embedding: float32 [B, D] (any values; their bit patterns are hashed).
"""

from __future__ import annotations

import torch

from pymbrl.mcts.tree import RecurrentOutput

_MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (the "lowbias"-style xor-shift-multiply finaliser) of int64 values in
    [0, 2^32). Products stay below 2^59, so int64 never overflows and the result is exact."""
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    return (x >> 16) ^ x


def _uniform(h: torch.Tensor, salt: int) -> torch.Tensor:
    """float32 in [0, 1) from hash h and a salt: 24 hash bits / 2^24 (exact in float32)."""
    bits = _mix32((h + ((salt * _GOLDEN) & _MASK32)) & _MASK32) & 0xFFFFFF
    return bits.to(torch.float32) / 16777216.0


class HashModel:
    """``recurrent_fn(embedding [B, D], action int64 [B]) -> (RecurrentOutput, next_embedding [B, D])``.

    Outputs per row (all float32, a deterministic function of that row's bits and its action):
    reward in [-reward_scale, reward_scale), discount = ``discount`` if given else in [0.5, 1),
    prior_logits [A] in [-logit_scale, logit_scale) with each entry -inf with probability
    ``neg_inf_prob`` (never all of them: entry 0 is then kept finite), value in [-1, 1), next
    embedding [D] in [-1, 1).
    """

    def __init__(self, num_actions: int, embedding_dim: int = 4, seed: int = 0, *, discount: float | None = None,
                 reward_scale: float = 1.0, logit_scale: float = 2.0, neg_inf_prob: float = 0.0) -> None:
        self.num_actions = num_actions
        self.embedding_dim = embedding_dim
        self.seed = seed & _MASK32
        self.discount = discount
        self.reward_scale = reward_scale
        self.logit_scale = logit_scale
        self.neg_inf_prob = neg_inf_prob

    def _hash_rows(self, embedding: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """int64 [B] hash of (seed, action, the D float32 bit patterns of each row)."""
        bits = embedding.to(torch.float32).contiguous().view(torch.int32).to(torch.int64) & _MASK32  # [B, D]
        h = _mix32((action.to(torch.int64) ^ self.seed) & _MASK32)
        for d in range(bits.shape[1]):
            h = _mix32(h ^ bits[:, d])
        return h

    def _logits(self, h: torch.Tensor, salt: int) -> torch.Tensor:
        """[B, A] logits from per-row hashes h [B]."""
        cols = [_uniform(h, salt + a) * (2.0 * self.logit_scale) - self.logit_scale for a in range(self.num_actions)]
        logits = torch.stack(cols, dim=1)
        if self.neg_inf_prob > 0.0:
            masked = torch.stack([_uniform(h, salt + 1000 + a) < self.neg_inf_prob
                                  for a in range(self.num_actions)], dim=1)
            masked[:, 0] &= ~masked.all(dim=1)  # keep at least one finite logit per row
            logits = torch.where(masked, -torch.inf, logits)
        return logits

    def __call__(self, embedding: torch.Tensor, action: torch.Tensor) -> tuple[RecurrentOutput, torch.Tensor]:
        h = self._hash_rows(embedding, action.to(embedding.device))
        reward = _uniform(h, 1) * (2.0 * self.reward_scale) - self.reward_scale
        if self.discount is None:
            discount = _uniform(h, 2) * 0.5 + 0.5
        else:
            discount = torch.full_like(reward, self.discount)
        value = _uniform(h, 3) * 2.0 - 1.0
        logits = self._logits(h, 100)
        next_embedding = torch.stack([_uniform(h, 10 + d) * 2.0 - 1.0 for d in range(self.embedding_dim)], dim=1)
        return RecurrentOutput(reward=reward, discount=discount, prior_logits=logits, value=value), next_embedding

    def roots(self, batch_size: int, seed: int = 0, device: torch.device | str = "cpu"
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Root inputs for a batch: (prior_logits float32 [B, A], value float32 [B], embedding
        float32 [B, D]), deterministic in ``seed`` (hashes of the row index, so also row-independent)."""
        rows = torch.arange(batch_size, dtype=torch.int64, device=device)
        h = _mix32((rows * 7919 + (seed & 0xFFFF) * 104729 + 12345) & _MASK32)
        logits = self._logits(h, 200)
        value = _uniform(h, 4) * 2.0 - 1.0
        embedding = torch.stack([_uniform(h, 20 + d) * 2.0 - 1.0 for d in range(self.embedding_dim)], dim=1)
        return logits, value, embedding
