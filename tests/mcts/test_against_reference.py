"""The C++ search (muzero_policy, gumbel_muzero_policy) against the pure-Python reference of the
spec (reference.py), without noise: identical visit counts and actions, and action weights,
Q values and root values equal to the reference's float64 numbers rounded to float32."""

from __future__ import annotations

import pytest
import torch

from pymbrl.mcts import qtransform_by_min_max, qtransform_by_parent_and_siblings
from pymbrl.mcts.reference import QTransform as RefQTransform

from .fast_reference import reference_batch
from .helpers import (
    assert_matches_reference,
    assert_same_output,
    hash_roots,
    random_invalid,
    search,
)

# (batch size, actions, simulations, options). Options: invalid (random root masks, some rows with
# a single valid action), max_depth, neg_inf (probability of a -inf logit, roots and interior),
# discount (fixed, e.g. -1 for two-player games), reward_scale, and algorithm-specific extras.
CASES = [
    pytest.param(1, 2, 1, {}, id="B1-A2-S1"),
    pytest.param(1, 5, 2, {}, id="B1-A5-S2"),
    pytest.param(1, 16, 100, dict(neg_inf=0.3, invalid=True), id="B1-A16-S100-neginf-invalid"),
    pytest.param(7, 2, 100, dict(max_depth=3), id="B7-A2-S100-depth3"),
    pytest.param(7, 5, 50, dict(invalid=True, neg_inf=0.3), id="B7-A5-S50-invalid-neginf"),
    pytest.param(7, 5, 50, dict(max_depth=1), id="B7-A5-S50-depth1"),
    pytest.param(7, 5, 50, dict(discount=-1.0), id="B7-A5-S50-discount-1"),
    pytest.param(7, 16, 10, dict(invalid=True), id="B7-A16-S10-invalid"),
    pytest.param(7, 16, 50, dict(reward_scale=1e6), id="B7-A16-S50-reward1e6"),
    pytest.param(7, 5, 100, dict(invalid=True, neg_inf=0.3, max_depth=3, discount=-1.0, reward_scale=1000.0),
                 id="B7-A5-S100-everything"),
    pytest.param(64, 5, 10, {}, id="B64-A5-S10"),
    pytest.param(64, 2, 50, dict(invalid=True, neg_inf=0.25), id="B64-A2-S50-invalid-neginf"),
    pytest.param(64, 16, 10, dict(invalid=True, max_depth=3, discount=-1.0), id="B64-A16-S10-invalid-depth3-discount-1"),
]


def _inputs(seed, batch_size, num_actions, options):
    model, logits, value, embedding = hash_roots(
        num_actions, batch_size, seed, neg_inf_prob=options.get("neg_inf", 0.0), discount=options.get("discount"),
        reward_scale=options.get("reward_scale", 1.0))
    invalid = random_invalid(logits, seed) if options.get("invalid") else None
    return model, logits, value, embedding, invalid


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("batch_size, num_actions, num_simulations, options", CASES)
def test_muzero_matches_reference(seed, batch_size, num_actions, num_simulations, options):
    model, logits, value, embedding, invalid = _inputs(seed, batch_size, num_actions, options)
    max_depth = options.get("max_depth")
    ref = reference_batch(model, logits, value, embedding, num_simulations, algorithm="muzero",
                          invalid_actions=invalid, max_depth=max_depth)
    out = search("muzero", model, logits, value, embedding, num_simulations, invalid_actions=invalid,
                 max_depth=max_depth, seed=seed)
    assert_matches_reference(out, ref)
    if invalid is not None:
        assert (ref.visit_counts[invalid] == 0).all()  # the case exercises the mask


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("batch_size, num_actions, num_simulations, options", CASES + [
    pytest.param(7, 16, 50, dict(considered=4, invalid=True), id="B7-A16-S50-considered4-invalid"),
    pytest.param(7, 5, 50, dict(considered=2, neg_inf=0.3), id="B7-A5-S50-considered2-neginf"),
    pytest.param(7, 16, 100, dict(considered=1), id="B7-A16-S100-considered1"),
])
def test_gumbel_matches_reference(seed, batch_size, num_actions, num_simulations, options):
    model, logits, value, embedding, invalid = _inputs(seed, batch_size, num_actions, options)
    kwargs = dict(max_depth=options.get("max_depth"), max_num_considered_actions=options.get("considered", 16))
    ref = reference_batch(model, logits, value, embedding, num_simulations, algorithm="gumbel_muzero",
                          invalid_actions=invalid, **kwargs)
    out = search("gumbel", model, logits, value, embedding, num_simulations, invalid_actions=invalid, seed=seed,
                 **kwargs)
    assert_matches_reference(out, ref)


def test_muzero_matches_reference_with_other_puct_constants():
    model, logits, value, embedding = hash_roots(5, 7, 3)
    for pb_c_init, pb_c_base in ((0.5, 10.0), (3.0, 1e6)):
        ref = reference_batch(model, logits, value, embedding, 40, pb_c_init=pb_c_init, pb_c_base=pb_c_base)
        out = search("muzero", model, logits, value, embedding, 40, pb_c_init=pb_c_init, pb_c_base=pb_c_base)
        assert_matches_reference(out, ref)


def test_gumbel_matches_reference_with_other_sigma_constants():
    model, logits, value, embedding = hash_roots(5, 7, 4)
    for value_scale, maxvisit_init in ((1.0, 5.0), (0.01, 200.0)):
        ref = reference_batch(model, logits, value, embedding, 40, algorithm="gumbel_muzero",
                              value_scale=value_scale, maxvisit_init=maxvisit_init)
        out = search("gumbel", model, logits, value, embedding, 40, value_scale=value_scale,
                     maxvisit_init=maxvisit_init)
        assert_matches_reference(out, ref)


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
def test_thread_count_does_not_change_results(algorithm):
    """num_threads 1, 2 and 4 give identical results: without noise (and equal to the reference)
    and with noise (seeded per root, so the draws do not depend on which thread serves a root)."""
    model, logits, value, embedding = hash_roots(5, 64, 11, neg_inf_prob=0.2)
    invalid = random_invalid(logits, 11)
    ref = reference_batch(model, logits, value, embedding, 20, algorithm="muzero" if algorithm == "muzero"
                          else "gumbel_muzero", invalid_actions=invalid)
    noisy = dict(dirichlet_fraction=0.25, temperature=1.0) if algorithm == "muzero" else dict(gumbel_scale=1.0)
    outputs, noisy_outputs = [], []
    for threads in (1, 2, 4):
        out = search(algorithm, model, logits, value, embedding, 20, invalid_actions=invalid, num_threads=threads)
        assert out.search_tree.tree.num_threads == threads
        assert_matches_reference(out, ref)
        outputs.append(out)
        noisy_outputs.append(search(algorithm, model, logits, value, embedding, 20, invalid_actions=invalid,
                                    num_threads=threads, seed=5, **noisy))
    for out in outputs[1:]:
        assert_same_output(outputs[0], out)
    for out in noisy_outputs[1:]:
        assert_same_output(noisy_outputs[0], out)
    # The noise did something (otherwise the second comparison proves nothing).
    assert not torch.equal(noisy_outputs[0].search_tree.summary().visit_counts, ref.visit_counts)


def test_default_threads_on_a_large_batch_match_one_thread():
    """The default picks several threads from 256 roots on (one per 128 roots)."""
    model, logits, value, embedding = hash_roots(4, 256, 12)
    one = search("muzero", model, logits, value, embedding, 8, num_threads=1, dirichlet_fraction=0.25,
                 temperature=1.0, seed=3)
    default = search("muzero", model, logits, value, embedding, 8, dirichlet_fraction=0.25, temperature=1.0, seed=3)
    assert_same_output(one, default)


TRANSFORMS = [
    pytest.param(RefQTransform("parent_and_siblings"), qtransform_by_parent_and_siblings(), id="parent-and-siblings"),
    pytest.param(RefQTransform("parent_and_siblings", epsilon=0.5), qtransform_by_parent_and_siblings(0.5),
                 id="parent-and-siblings-eps0.5"),
    pytest.param(RefQTransform("min_max", min_value=-2.0, max_value=3.0), qtransform_by_min_max(-2.0, 3.0),
                 id="min-max"),
    pytest.param(RefQTransform("min_max", min_value=-0.25, max_value=0.25), qtransform_by_min_max(-0.25, 0.25),
                 id="min-max-narrow"),
]


@pytest.mark.parametrize("ref_transform, transform", TRANSFORMS)
@pytest.mark.parametrize("batch_size, num_actions, num_simulations, options", [
    pytest.param(7, 5, 50, dict(invalid=True, neg_inf=0.3), id="B7-A5-S50-invalid-neginf"),
    pytest.param(7, 5, 100, dict(invalid=True, neg_inf=0.3, max_depth=3, discount=-1.0, reward_scale=1000.0),
                 id="B7-A5-S100-everything"),
    pytest.param(64, 16, 30, dict(invalid=True, discount=-1.0), id="B64-A16-S30-invalid-discount-1"),
])
def test_muzero_q_transforms_match_reference(ref_transform, transform, batch_size, num_actions, num_simulations,
                                             options):
    model, logits, value, embedding, invalid = _inputs(3, batch_size, num_actions, options)
    max_depth = options.get("max_depth")
    ref = reference_batch(model, logits, value, embedding, num_simulations, algorithm="muzero",
                          invalid_actions=invalid, max_depth=max_depth, qtransform=ref_transform)
    out = search("muzero", model, logits, value, embedding, num_simulations, invalid_actions=invalid,
                 max_depth=max_depth, qtransform=transform)
    assert_matches_reference(out, ref)
    # The transform mattered: the tree-wide default searches differently on these inputs.
    default = reference_batch(model, logits, value, embedding, num_simulations, algorithm="muzero",
                              invalid_actions=invalid, max_depth=max_depth)
    assert not torch.equal(default.visit_counts, ref.visit_counts)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gumbel_rescale_with_invalid_matches_reference(seed):
    """mctx's masked-root rescaling, on roots with few valid actions, so that all of them get
    visited, and root values above every Q, so that the mixed value the invalid ones complete with
    lies outside the visited Q values and widens the rescaling."""
    model, logits, value, embedding = hash_roots(6, 16, seed)
    value = value + 100.0
    invalid = random_invalid(logits, seed, prob=0.6, single_every=0)
    kwargs = dict(max_num_considered_actions=16)
    ref = reference_batch(model, logits, value, embedding, 24, algorithm="gumbel_muzero", invalid_actions=invalid,
                          rescale_with_invalid=True, **kwargs)
    out = search("gumbel", model, logits, value, embedding, 24, invalid_actions=invalid, rescale_with_invalid=True,
                 **kwargs)
    assert_matches_reference(out, ref)
    default = reference_batch(model, logits, value, embedding, 24, algorithm="gumbel_muzero",
                              invalid_actions=invalid, **kwargs)
    assert not torch.equal(default.action_weights, ref.action_weights)
