"""Fast per-tree drivers of the pure-Python reference (reference.py) for the comparison tests.

``run_reference_batch`` evaluates the torch ``HashModel`` on batch slices of one row, about 1 ms a
call on a busy machine; comparing the C++ search with the reference over many shapes would take
minutes. ``HashStep`` is the same model written in plain Python integers and floats for one row:
bit for bit the numbers ``HashModel`` computes (``test_fast_reference.py`` checks that on many
rows and every option), some 20x faster. Its embeddings are tuples of the float32 bit patterns
(uint32) of the torch embedding's row, which is all HashModel reads of them.

``reference_batch`` runs the reference search on every root of a batch with it and returns the
per-root results stacked like ``run_reference_batch`` does.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import torch

from pymbrl.mcts.reference import BatchSearchResult, gumbel_muzero_search, muzero_search

from .hash_model import HashModel

_MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9
_PACK = struct.Struct("<f")


def f32(x: float) -> float:
    """x rounded to float32 (round to nearest even), back as a Python float."""
    return _PACK.unpack(_PACK.pack(x))[0]


def f32_bits(x: float) -> int:
    """The float32 bit pattern (uint32) of x, which must be exactly representable in float32."""
    return struct.unpack("<I", _PACK.pack(x))[0]


def _mix32(x: int) -> int:
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    return (x >> 16) ^ x


def _uniform(h: int, salt: int) -> float:
    """HashModel._uniform: 24 hash bits / 2^24, exact in float32 and in Python floats."""
    return (_mix32((h + ((salt * _GOLDEN) & _MASK32)) & _MASK32) & 0xFFFFFF) / 16777216.0


def _affine(u: float, scale: float) -> float:
    """float32 ``u * (2 * scale) - scale`` as torch computes it on float32 tensors (each operation
    rounded to float32; u has 24 bits and the scales used are float32 numbers, so computing each
    step exactly in doubles and rounding once is the same)."""
    two_s = f32(2.0 * scale)
    return f32(f32(u * two_s) - f32(scale))


class HashStep:
    """``HashModel`` for one row: ``step(bits, action) -> (reward, discount, logits [A], value,
    next_bits)`` where ``bits`` is the tuple of the embedding row's float32 bit patterns."""

    def __init__(self, model: HashModel) -> None:
        self.model = model
        m = model
        if m.discount is not None:
            self.discount = f32(m.discount)
        if m.neg_inf_prob > 0.0:
            # torch compares the float32 uniforms with the probability as float32.
            self.neg_inf_prob = f32(m.neg_inf_prob)

    def logits(self, h: int, salt: int) -> list[float]:
        m = self.model
        logits = [_affine(_uniform(h, salt + a), m.logit_scale) for a in range(m.num_actions)]
        if m.neg_inf_prob > 0.0:
            masked = [_uniform(h, salt + 1000 + a) < self.neg_inf_prob for a in range(m.num_actions)]
            if all(masked):
                masked[0] = False
            logits = [-math.inf if k else v for k, v in zip(masked, logits)]
        return logits

    def __call__(self, bits: Sequence[int], action: int) -> tuple[float, float, list[float], float, tuple[int, ...]]:
        m = self.model
        h = _mix32((action ^ m.seed) & _MASK32)
        for b in bits:
            h = _mix32(h ^ b)
        reward = _affine(_uniform(h, 1), m.reward_scale)
        discount = f32(_uniform(h, 2) * 0.5 + 0.5) if m.discount is None else self.discount
        value = f32(_uniform(h, 3) * 2.0 - 1.0)
        logits = self.logits(h, 100)
        next_bits = tuple(f32_bits(f32(_uniform(h, 10 + d) * 2.0 - 1.0)) for d in range(m.embedding_dim))
        return reward, discount, logits, value, next_bits


def embedding_bits(embedding: torch.Tensor) -> list[tuple[int, ...]]:
    """Rows of a float32 [B, D] embedding as tuples of their uint32 bit patterns."""
    bits = embedding.to(torch.float32).contiguous().view(torch.int32).to(torch.int64) & _MASK32
    return [tuple(row) for row in bits.tolist()]


def reference_batch(model: HashModel, prior_logits: torch.Tensor, value: torch.Tensor, embedding: torch.Tensor,
                    num_simulations: int, *, algorithm: str = "muzero", invalid_actions: torch.Tensor | None = None,
                    **search_kwargs: Any) -> BatchSearchResult:
    """``run_reference_batch`` for a HashModel, through ``HashStep`` (same results, faster)."""
    step = HashStep(model)
    search = {"muzero": muzero_search, "gumbel_muzero": gumbel_muzero_search}[algorithm]
    logits_rows = prior_logits.detach().cpu().double().tolist()
    values = value.detach().cpu().double().reshape(-1).tolist()
    invalid_rows = None if invalid_actions is None else invalid_actions.detach().cpu().bool().tolist()
    roots = []
    for b, bits in enumerate(embedding_bits(embedding)):
        invalid = None if invalid_rows is None else invalid_rows[b]
        roots.append(search(step, logits_rows[b], values[b], bits, num_simulations, invalid_actions=invalid,
                            **search_kwargs))
    return BatchSearchResult.from_roots(roots)
