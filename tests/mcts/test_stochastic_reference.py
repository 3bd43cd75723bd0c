"""stochastic_muzero_policy (C++) against the pure-Python reference of the spec
(reference_stochastic.py), without noise: identical visit counts, actions, tree shapes and node
kinds, per-simulation model calls on the same rows, and weights, Q values and root values equal to
the reference's float64 numbers rounded to float32; also after a two-level re-rooting."""

from __future__ import annotations

import random

import pytest
import torch

from pymbrl.mcts import qtransform_by_min_max, qtransform_by_parent_and_siblings
from pymbrl.mcts.reference import QTransform as RefQTransform

from .fast_reference import embedding_bits, f32_bits
from .helpers import assert_matches_reference, assert_same_output, random_invalid
from .reference_stochastic import decide, new_tree, reroot, revalidate, simulate
from .stochastic_helpers import StochasticHashModel, reference_batch

# (B, A, C, simulations, options): invalid (random root masks), max_depth, neg_inf (-inf prior
# logits), chance_neg_inf (-inf chance logits), discount (fixed; -1 for two-player games),
# reward_scale.
CASES = [
    pytest.param(1, 2, 1, 1, {}, id="B1-A2-C1-S1"),
    pytest.param(1, 3, 2, 2, {}, id="B1-A3-C2-S2"),
    pytest.param(1, 4, 6, 100, dict(neg_inf=0.3, chance_neg_inf=0.3, invalid=True), id="B1-A4-C6-S100-neginf"),
    pytest.param(7, 2, 5, 60, dict(max_depth=3), id="B7-A2-C5-S60-depth3"),
    pytest.param(7, 5, 2, 50, dict(invalid=True, neg_inf=0.3), id="B7-A5-C2-S50-invalid-neginf"),
    pytest.param(7, 5, 3, 40, dict(max_depth=1), id="B7-A5-C3-S40-depth1"),
    pytest.param(7, 3, 3, 40, dict(max_depth=2), id="B7-A3-C3-S40-depth2"),
    pytest.param(7, 5, 4, 50, dict(discount=-1.0), id="B7-A5-C4-S50-discount-1"),
    pytest.param(7, 16, 1, 30, dict(invalid=True), id="B7-A16-C1-S30-invalid"),
    pytest.param(7, 3, 32, 50, dict(reward_scale=1e6, chance_neg_inf=0.5), id="B7-A3-C32-S50-reward1e6"),
    pytest.param(7, 5, 3, 80, dict(invalid=True, neg_inf=0.3, chance_neg_inf=0.3, max_depth=4, discount=-1.0,
                                   reward_scale=1000.0), id="B7-A5-C3-S80-everything"),
    pytest.param(40, 4, 4, 12, dict(invalid=True, max_depth=3, discount=-1.0), id="B40-A4-C4-S12"),
]


def _inputs(seed, batch_size, num_actions, num_chance_outcomes, options):
    model = StochasticHashModel(num_actions, num_chance_outcomes, seed, discount=options.get("discount"),
                                reward_scale=options.get("reward_scale", 1.0), neg_inf_prob=options.get("neg_inf", 0.0),
                                chance_neg_inf_prob=options.get("chance_neg_inf", 0.0))
    logits, value, embedding = model.roots(batch_size, seed)
    invalid = random_invalid(logits, seed) if options.get("invalid") else None
    return model, logits, value, embedding, invalid


def _assert_same_trees(out, ref) -> None:
    """Same number of nodes and the same node kinds, by id, in every tree."""
    tree = out.search_tree
    assert tree.num_nodes.tolist() == [len(r.tree.nodes) for r in ref.roots]
    for b, r in enumerate(ref.roots):
        assert tree.chance_nodes(b).tolist() == r.tree.chance, b


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("batch_size, num_actions, num_chance_outcomes, num_simulations, options", CASES)
def test_stochastic_muzero_matches_reference(seed, batch_size, num_actions, num_chance_outcomes, num_simulations,
                                             options):
    model, logits, value, embedding, invalid = _inputs(seed, batch_size, num_actions, num_chance_outcomes, options)
    max_depth = options.get("max_depth")
    ref = reference_batch(model, logits, value, embedding, num_simulations, invalid_actions=invalid,
                          max_depth=max_depth)
    out = model.search(logits, value, embedding, num_simulations, invalid_actions=invalid, max_depth=max_depth,
                       seed=seed)
    assert_matches_reference(out, ref)
    _assert_same_trees(out, ref)
    if invalid is not None:
        assert (ref.visit_counts[invalid] == 0).all()
    # The case plans through chance: some tree holds decision nodes below chance nodes.
    if num_simulations >= 40 and max_depth != 1:
        assert any(r.tree.chance[x] is False and x > 0 for r in ref.roots for x in range(len(r.tree.nodes)))


@pytest.mark.parametrize("num_actions, num_chance_outcomes", [(4, 3), (3, 5)])
def test_other_puct_constants_match_reference(num_actions, num_chance_outcomes):
    """Also a negative pb_c_init, under which unvisited actions score below 0: decision nodes
    narrower than the tree (A < C) must still choose among their A actions only."""
    model, logits, value, embedding, _ = _inputs(3, 7, num_actions, num_chance_outcomes, {})
    for pb_c_init, pb_c_base in ((0.5, 10.0), (3.0, 1e6), (-0.5, 5.0)):
        ref = reference_batch(model, logits, value, embedding, 40, pb_c_init=pb_c_init, pb_c_base=pb_c_base)
        out = model.search(logits, value, embedding, 40, pb_c_init=pb_c_init, pb_c_base=pb_c_base)
        assert_matches_reference(out, ref)
        _assert_same_trees(out, ref)


@pytest.mark.parametrize("ref_transform, transform", [
    (RefQTransform("parent_and_siblings"), qtransform_by_parent_and_siblings()),
    (RefQTransform("min_max", min_value=-3.0, max_value=3.0), qtransform_by_min_max(-3.0, 3.0)),
])
def test_q_transforms_match_reference(ref_transform, transform):
    """mctx's transforms at the decision nodes (chance nodes keep their rule)."""
    model, logits, value, embedding, invalid = _inputs(5, 7, 4, 3, dict(invalid=True, discount=-1.0))
    ref = reference_batch(model, logits, value, embedding, 50, invalid_actions=invalid, qtransform=ref_transform)
    out = model.search(logits, value, embedding, 50, invalid_actions=invalid, qtransform=transform)
    assert_matches_reference(out, ref)
    _assert_same_trees(out, ref)
    default = reference_batch(model, logits, value, embedding, 50, invalid_actions=invalid)
    assert not torch.equal(default.visit_counts, ref.visit_counts)


def test_each_function_is_called_on_exactly_the_rows_that_need_it():
    """Simulation by simulation, decision_fn gets the states and actions of the roots whose new leaf
    is a chance node and chance_fn the afterstates and outcomes of those whose new leaf is a decision
    node, in increasing root order, as the reference makes them; a function no root needs is not
    called, and roots revisiting a leaf at max_depth need neither."""
    B, S = 9, 30
    model, logits, value, embedding, invalid = _inputs(5, B, 3, 4, dict(invalid=True))
    out = model.search(logits, value, embedding, S, invalid_actions=invalid, max_depth=2)
    decision_step, chance_step = model.steps()
    calls = [[] for _ in range(S)]  # per simulation: (root, "decision" | "chance", embedding bits, edge)
    trees = []
    for b, bits in enumerate(embedding_bits(embedding)):
        tree = new_tree(logits[b].double().tolist(), float(value[b]), bits, 4, invalid[b].tolist())
        for k in range(S):
            def d_step(e, a, k=k, b=b):
                calls[k].append((b, "decision", e, a))
                return decision_step(e, a)

            def c_step(e, o, k=k, b=b):
                calls[k].append((b, "chance", e, o))
                return chance_step(e, o)

            simulate(tree, d_step, c_step, 2)
        trees.append(tree)
    expected_decision = [[(e, a) for _, kind, e, a in sim if kind == "decision"] for sim in calls]
    expected_chance = [[(e, o) for _, kind, e, o in sim if kind == "chance"] for sim in calls]
    # A call per simulation for each function some root needed, never with zero rows.
    got_decision = iter(model.decision_calls)
    got_chance = iter(model.chance_calls)
    for k in range(S):
        for expected, got in ((expected_decision[k], got_decision), (expected_chance[k], got_chance)):
            if not expected:
                continue
            emb, edge = next(got)
            assert [(tuple(f32_bits(float(x)) for x in row), int(a)) for row, a in zip(emb, edge)] == expected, k
    assert next(got_decision, None) is None and next(got_chance, None) is None
    assert sum(len(c) for c in calls) < B * S  # some roots revisited leaves at the depth limit
    assert any(not e for e in expected_chance)  # simulations where chance_fn was not needed
    assert out.search_tree.num_nodes.tolist() == [len(t.nodes) for t in trees]


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_threads_do_not_change_results(threads):
    model, logits, value, embedding, invalid = _inputs(11, 64, 4, 3, dict(invalid=True, neg_inf=0.2))
    ref = reference_batch(model, logits, value, embedding, 20, invalid_actions=invalid)
    out = model.search(logits, value, embedding, 20, invalid_actions=invalid, num_threads=threads)
    assert out.search_tree.num_threads == threads
    assert_matches_reference(out, ref)
    noisy = dict(dirichlet_fraction=0.25, temperature=1.0, seed=5)
    one = model.search(logits, value, embedding, 20, invalid_actions=invalid, num_threads=1, **noisy)
    many = model.search(logits, value, embedding, 20, invalid_actions=invalid, num_threads=threads,
                        **noisy)
    assert_same_output(one, many)
    assert not torch.equal(one.search_tree.summary().visit_counts, ref.visit_counts)  # the noise acted


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reuse_two_levels_down_continues_like_the_reference(seed):
    """subtree(actions, chance_outcomes) keeps the decision grandchild (statistics, node kinds, both
    kinds of embedding) and the next search continues it as the reference does; roots whose action
    or outcome was never expanded start afresh. The second search changes the valid actions."""
    B, A, C = 8, 3, 3
    model, logits, value, embedding, invalid = _inputs(seed, B, A, C, dict(invalid=True, chance_neg_inf=0.3,
                                                                           discount=-1.0))
    out = model.search(logits, value, embedding, 30, invalid_actions=invalid, capacity=80)
    decision_step, chance_step = model.steps()
    trees = []
    for b, bits in enumerate(embedding_bits(embedding)):
        tree = new_tree(logits[b].double().tolist(), float(value[b]), bits, C, invalid[b].tolist())
        for _ in range(30):
            simulate(tree, decision_step, chance_step, None)
        trees.append(tree)
    # Root 0 takes an invalid (never expanded) action; root 1 an outcome never drawn where there is
    # one; the others the search's action and a random expanded outcome.
    rng = random.Random(seed)
    actions, outcomes = out.action.clone(), torch.zeros(B, dtype=torch.int64)
    actions[0] = int(invalid[0].nonzero()[0]) if invalid[0].any() else actions[0]
    for b in range(B):
        after = trees[b].nodes[0].children[int(actions[b])]
        if after == -1:
            continue
        expanded = [o for o, c in enumerate(trees[b].nodes[after].children) if c != -1]
        missing = [o for o, c in enumerate(trees[b].nodes[after].children) if c == -1]
        outcomes[b] = missing[0] if b == 1 and missing else rng.choice(expanded)
    kept_trees = [reroot(trees[b], int(actions[b]), int(outcomes[b])) for b in range(B)]
    reused = out.search_tree.subtree(actions, outcomes)
    assert reused.kept.tolist() == [t is not None for t, _ in kept_trees]
    assert not all(reused.kept.tolist()) and any(reused.kept.tolist())
    for b, (tree, old_ids) in enumerate(kept_trees):
        if tree is None:
            continue
        assert reused.num_nodes[b] == len(tree.nodes)
        assert reused.chance_nodes(b).tolist() == tree.chance
        # Embeddings of both kinds moved with their nodes (state pool: decision nodes; afterstate
        # pool: chance nodes).
        for k, node in enumerate(tree.nodes):
            pool = reused.afterstate_embeddings if tree.chance[k] else reused.embeddings
            row = pool.gather(torch.tensor([k * B + b]))
            assert embedding_bits(row)[0] == node.embedding, (b, k)

    # Second search from new roots (ignored where kept) with new masks.
    logits2, value2, embedding2 = model.roots(B, seed + 100)
    invalid2 = random_invalid(logits2, seed + 7)
    out2 = model.search(logits2, value2, embedding2, 25, invalid_actions=invalid2, search_tree=reused)
    for b in range(B):
        tree = kept_trees[b][0]
        if tree is None:
            tree = new_tree(logits2[b].double().tolist(), float(value2[b]), embedding_bits(embedding2)[b], C,
                            invalid2[b].tolist())
        else:
            revalidate(tree, invalid2[b].tolist())
        for _ in range(25):
            simulate(tree, decision_step, chance_step, None)
        result = decide(tree)
        summary = out2.search_tree.summary()
        assert summary.visit_counts[b].tolist() == result.visit_counts, b
        assert summary.qvalues[b].tolist() == torch.tensor(result.qvalues).float().tolist(), b
        assert float(summary.value[b]) == float(torch.tensor(result.value).float()), b
        assert int(out2.action[b]) == result.action, b
        assert out2.search_tree.chance_nodes(b).tolist() == tree.chance, b
