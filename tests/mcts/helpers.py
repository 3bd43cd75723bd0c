"""Shared helpers of the pymbrl.mcts tests (inputs, masks, comparisons)."""

from __future__ import annotations

import math
from typing import Any

import torch

from pymbrl.mcts import (
    PolicyOutput,
    RecurrentOutput,
    Root,
    gumbel_muzero_policy,
    muzero_policy,
)

from .hash_model import HashModel

NO_NOISE_MUZERO = dict(dirichlet_fraction=0.0, temperature=0.0)
NO_NOISE_GUMBEL = dict(gumbel_scale=0.0)


def random_invalid(logits: torch.Tensor, seed: int, prob: float = 0.3, single_every: int = 4) -> torch.Tensor:
    """A random invalid-action mask for roots with these logits: each action invalid with
    probability ``prob``, every ``single_every``-th row with a single valid action; every row keeps
    at least one valid action of finite logit (the spec needs one)."""
    gen = torch.Generator().manual_seed(seed)
    batch_size, num_actions = logits.shape
    invalid = torch.rand(batch_size, num_actions, generator=gen) < prob
    for b in range(batch_size):
        finite = [a for a in range(num_actions) if math.isfinite(float(logits[b, a]))]
        if single_every and b % single_every == 0:
            keep = finite[int(torch.randint(len(finite), (1,), generator=gen))]
            invalid[b] = True
            invalid[b, keep] = False
        elif all(invalid[b, a] for a in finite):
            invalid[b, finite[0]] = False
    return invalid


def search(algorithm: str, model: Any, logits: Any, value: Any, embedding: Any, num_simulations: int,
           **kwargs: Any) -> PolicyOutput:
    """muzero_policy / gumbel_muzero_policy without noise unless kwargs say otherwise."""
    root = Root(logits, value, embedding)
    if algorithm == "muzero":
        return muzero_policy(root, model, num_simulations, **{**NO_NOISE_MUZERO, **kwargs})
    return gumbel_muzero_policy(root, model, num_simulations, **{**NO_NOISE_GUMBEL, **kwargs})


def assert_same_output(a: PolicyOutput, b: PolicyOutput) -> None:
    """Two searches gave identical actions, weights and root statistics."""
    assert torch.equal(a.action, b.action)
    assert torch.equal(a.action_weights, b.action_weights)
    sa, sb = a.search_tree.summary(), b.search_tree.summary()
    for name in ("visit_counts", "visit_probs", "value", "qvalues"):
        assert torch.equal(getattr(sa, name), getattr(sb, name)), name


def assert_matches_reference(out: PolicyOutput, ref: Any) -> None:
    """The C++ search equals the reference: visit counts, action exactly; weights, Q and value
    are the reference's float64 numbers rounded to float32 (the spec is bit-exact in float64)."""
    summary = out.search_tree.summary()
    assert torch.equal(summary.visit_counts, ref.visit_counts), (summary.visit_counts, ref.visit_counts)
    assert torch.equal(out.action, ref.action), (out.action, ref.action)
    assert torch.equal(out.action_weights, ref.action_weights.float()), (out.action_weights, ref.action_weights)
    assert torch.equal(summary.qvalues, ref.qvalues.float()), (summary.qvalues, ref.qvalues)
    assert torch.equal(summary.value, ref.value.float()), (summary.value, ref.value)
    total = ref.visit_counts.sum(dim=1, keepdim=True).clamp(min=1)
    assert torch.allclose(summary.visit_probs, ref.visit_counts.float() / total.float())


class CountingModel:
    """Wraps a recurrent function and records every call's inputs (cloned)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.calls: list[tuple[Any, torch.Tensor]] = []

    def __call__(self, embedding: Any, action: torch.Tensor) -> tuple[RecurrentOutput, Any]:
        self.calls.append((embedding, action.clone()))
        return self.fn(embedding, action)


def hash_roots(num_actions: int, batch_size: int, seed: int, **model_kwargs: Any):
    """A HashModel and root inputs for it: (model, logits, value, embedding)."""
    model = HashModel(num_actions, seed=seed, **model_kwargs)
    logits, value, embedding = model.roots(batch_size, seed=seed)
    return model, logits, value, embedding
