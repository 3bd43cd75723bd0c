"""The fast pure-Python HashModel (fast_reference.HashStep) must give HashModel's numbers bit for bit,
or the comparisons of the C++ search with the reference would compare different models."""

from __future__ import annotations

import math

import pytest
import torch

from pymbrl.mcts.reference import run_reference_batch

from .fast_reference import HashStep, embedding_bits, reference_batch
from .hash_model import HashModel


@pytest.mark.parametrize("kwargs", [
    dict(num_actions=2),
    dict(num_actions=16, neg_inf_prob=0.3),
    dict(num_actions=5, neg_inf_prob=0.9, discount=-1.0),
    dict(num_actions=5, reward_scale=1e6, discount=0.5),
    dict(num_actions=3, embedding_dim=7, reward_scale=1000.0, logit_scale=30.0, seed=2**31 + 5),
])
def test_hash_step_equals_hash_model_bitwise(kwargs):
    model = HashModel(**kwargs)
    step = HashStep(model)
    _, _, embedding = model.roots(64, seed=7)
    # A few generations deep, so that embeddings produced by the model are hashed as well.
    for generation in range(3):
        action = (torch.arange(64) * 7 + generation) % model.num_actions
        out, nxt = model(embedding, action)
        for b, bits in enumerate(embedding_bits(embedding)):
            reward, discount, logits, value, next_bits = step(bits, int(action[b]))
            assert reward == float(out.reward[b]) and discount == float(out.discount[b])
            assert value == float(out.value[b])
            assert logits == out.prior_logits[b].tolist()
            assert next_bits == embedding_bits(nxt[b:b + 1])[0]
        embedding = nxt
    if kwargs.get("neg_inf_prob", 0) > 0.5:
        assert math.isinf(min(min(step(bits, 0)[2]) for bits in embedding_bits(embedding)))


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel_muzero"])
def test_fast_reference_batch_equals_run_reference_batch(algorithm):
    model = HashModel(4, seed=3, neg_inf_prob=0.25)
    logits, value, embedding = model.roots(3, seed=1)
    invalid = torch.zeros(3, 4, dtype=torch.bool)
    invalid[1, 0] = True
    slow = run_reference_batch(model, logits, value, embedding, 12, algorithm=algorithm, invalid_actions=invalid,
                               max_depth=3)
    fast = reference_batch(model, logits, value, embedding, 12, algorithm=algorithm, invalid_actions=invalid,
                           max_depth=3)
    for name in ("action", "action_weights", "visit_counts", "qvalues", "value"):
        assert torch.equal(getattr(slow, name), getattr(fast, name)), name
