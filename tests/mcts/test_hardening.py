"""Regression tests of issue 19 for pymbrl.mcts: size arithmetic, trees recycled behind the user's
back, model outputs whose magnitude broke the float arithmetic of the search, and other bad input
that used to crash or give silently wrong results."""

from __future__ import annotations

import gc
import math
import time
import weakref

import numpy as np
import pytest
import torch

from pymbrl import _core
from pymbrl.mcts import EmbeddingPool, RecurrentOutput, Root, Tree, gumbel_muzero_policy, muzero_policy
from pymbrl.mcts.reference import DBL_MIN, muzero_search

from .fast_reference import reference_batch
from .hash_model import HashModel
from .helpers import CountingModel, assert_matches_reference, hash_roots, random_invalid, search

B, A = 3, 4
LIMIT = 2.0**64  # the documented bound of |reward| and |value|
ABOVE = float(np.nextafter(LIMIT, math.inf))


def _same_summary(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


# --------------------------------------------------------------------------------------------
# Size arithmetic
# --------------------------------------------------------------------------------------------


def test_a_tree_whose_size_wraps_is_refused_before_allocating():
    # 2**24 roots x 2**30 nodes x 1024-byte records = 2**64 bytes: the old size wrapped to 0, the
    # trees got a few bytes and set_roots wrote far beyond them.
    assert _core.mcts.record_bytes(24) == 1024
    with pytest.raises(ValueError, match=r"^capacity: .*2\*\*40"):
        Tree(2**24, 24, 2**30)
    with pytest.raises(ValueError, match="capacity"):
        Tree(2**20, 4, 2**20)  # 2**48 bytes: no wrap, but beyond the documented limit


@pytest.mark.parametrize("args, match", [
    ((2**24 + 1, 2, 2), "batch_size"), ((2, 2**24 + 1, 2), "num_actions"), ((2, 2, 2**30 + 1), "capacity"),
    ((2**70, 2, 2), "batch_size"), ((2, 2**70, 2), "num_actions"), ((2, 2, 2**70), "capacity"),
])
def test_tree_dimensions_have_documented_limits(args, match):
    with pytest.raises(ValueError, match=f"^{match}"):
        Tree(*args)


def test_large_trees_within_the_limits_are_allowed():
    # The records are allocated lazily: no page is touched by the constructor. (Shapes near the
    # 2**40-byte limit are allowed too, but fail with a MemoryError on a machine without that much.)
    assert Tree(1, 2**20, 1).num_actions == 2**20
    assert Tree(2**10, 4, 2**16).capacity == 2**16


def test_an_embedding_pool_beyond_the_limit_is_refused_before_allocating():
    embedding = torch.zeros(2, 1000)
    with pytest.raises(ValueError, match=r"^capacity: .*2\*\*40"):
        EmbeddingPool(embedding, 2, 2**30)
    calls = []

    def model(e, a):
        calls.append(1)
        raise AssertionError("not reached")

    with pytest.raises(ValueError, match="capacity"):
        muzero_policy(Root(torch.zeros(2, A), torch.zeros(2), embedding), model, 4, capacity=2**30)
    assert not calls


@pytest.mark.parametrize("name, value", [("batch_size", 0), ("capacity", -1), ("capacity", 2.0)])
def test_embedding_pool_arguments_are_checked(name, value):
    kwargs = dict(batch_size=2, capacity=3) | {name: value}
    with pytest.raises((ValueError, TypeError), match=name):
        EmbeddingPool(torch.zeros(2, 3), **kwargs)


@pytest.mark.parametrize("name", ["num_simulations", "max_num_considered_actions"])
def test_huge_integer_arguments_name_the_argument(name):
    tree = Tree(1, 2, 3)
    tree.set_roots(torch.zeros(1, 2), torch.zeros(1))
    kwargs = {"num_simulations": 2, name: 2**70}
    with pytest.raises(ValueError, match=name):
        tree.begin_gumbel(**kwargs)


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
@pytest.mark.parametrize("num_simulations", [2**30, 2**70])
def test_too_many_simulations_for_the_default_capacity_name_num_simulations(algorithm, num_simulations):
    """The default capacity 1 + num_simulations was refused naming capacity, which the caller never gave."""
    model, logits, value, embedding = hash_roots(A, B, 28)
    with pytest.raises(ValueError, match="^num_simulations: expected at most 1073741823"):
        search(algorithm, model, logits, value, embedding, num_simulations)


def test_the_halving_table_does_not_grow_with_considered_actions_beyond_the_actions():
    """Its rows were allocated for every m up to max_num_considered_actions (2**20 allowed), each
    computed in O(m): seconds to hours of work for rows a 2-action root never reads."""
    tree = Tree(1, 2, 9)
    tree.set_roots(torch.zeros(1, 2), torch.zeros(1))
    start = time.perf_counter()
    tree.begin_gumbel(8, max_num_considered_actions=2**17, gumbel_scale=0.0)
    assert time.perf_counter() - start < 1.0
    model = HashModel(2, seed=3)
    embeddings = torch.zeros(9, 1, 4)
    for _ in range(8):
        sel = tree.select()
        out, nxt = model(embeddings[sel.parent, 0], sel.action)
        embeddings[sel.node, 0] = nxt
        tree.expand_and_backup(out)
    assert tree.summary().visit_counts.sum() == 8


# --------------------------------------------------------------------------------------------
# Recycled trees
# --------------------------------------------------------------------------------------------


def _first_and_second(hold):
    """Runs a search, lets ``hold`` take what it wants of the result, drops the result and runs
    another search of the same shape (the one that reused the dropped tree before the fix)."""
    model, logits, value, embedding = hash_roots(A, B, 21)
    out = muzero_policy(Root(logits, value, embedding), model, 10, seed=1)
    held = hold(out)
    del out
    gc.collect()
    other = muzero_policy(Root(logits * 3, -value, embedding + 1), model, 10, seed=2)
    return held, other


def test_a_held_tree_is_not_recycled():
    def hold(out):
        tree = out.search_tree.tree
        return tree, tree.summary(), tree.num_nodes.copy()

    (tree, summary, nodes), other = _first_and_second(hold)
    assert other.search_tree.tree is not tree
    assert _same_summary(tree.summary(), summary) and (tree.num_nodes == nodes).all()


def test_held_embeddings_are_not_recycled():
    def hold(out):
        pool = out.search_tree.embeddings
        view = pool.rows[: 2 * B]  # a view keeps the storage, not the pool object
        return view, view.clone()

    (view, copy), other = _first_and_second(hold)
    assert torch.equal(view, copy)


def test_held_row_views_are_not_recycled():
    def hold(out):
        gather, _, _ = out.search_tree.tree.rows()
        return gather, gather.clone()

    (gather, copy), _ = _first_and_second(hold)
    assert torch.equal(gather, copy)


def test_a_held_subtree_result_is_not_recycled():
    def hold(out):
        reused = out.search_tree.subtree(out.action)
        tree = reused.tree
        return tree, tree.summary()

    (tree, summary), _ = _first_and_second(hold)
    assert _same_summary(tree.summary(), summary)


def test_trees_nobody_holds_are_still_recycled():
    """The pooling the benchmarks measure: a dropped search's tree and pool serve the next one."""
    model, logits, value, embedding = hash_roots(A, B, 22)
    out = muzero_policy(Root(logits, value, embedding), model, 10, seed=1)
    summary = out.search_tree.summary()  # a copy: does not stop the recycling
    tree, pool = weakref.ref(out.search_tree._tree), weakref.ref(out.search_tree._pool)
    del out
    gc.collect()
    again = muzero_policy(Root(logits, value, embedding), model, 10, seed=1)
    assert again.search_tree._tree is tree() and again.search_tree._pool is pool()
    assert _same_summary(again.search_tree.summary(), summary)


# --------------------------------------------------------------------------------------------
# The accepted range of model outputs
# --------------------------------------------------------------------------------------------


class EdgeModel:
    """A model whose rewards and values sit on the edge of the accepted range: +-2**64 (or what
    ``scale`` says), signs from a hash of the path, discounts +-1 (``two_player``) or 1."""

    def __init__(self, scale: float, two_player: bool, dtype=torch.float64, field=None, bad=None, at_call=3):
        self.hash = HashModel(A, seed=5, neg_inf_prob=0.2)
        self.scale, self.two_player, self.dtype = scale, two_player, dtype
        self.field, self.bad, self.at_call, self.calls = field, bad, at_call, 0

    def __call__(self, embedding, action):
        self.calls += 1
        out, nxt = self.hash(embedding, action)
        sign = lambda x: torch.where(x >= 0, 1.0, -1.0).to(self.dtype)  # noqa: E731
        discount = -torch.ones(len(action)) if self.two_player else torch.ones(len(action))
        out = RecurrentOutput(sign(out.reward) * self.scale, discount.to(self.dtype), out.prior_logits.to(self.dtype),
                              sign(out.value) * self.scale)
        if self.field is not None and self.calls == self.at_call:
            t = getattr(out, self.field).clone()
            t.view(len(action), -1)[1, 0] = self.bad
            out = out._replace(**{self.field: t})
        return out, nxt


def _edge_search(algorithm, model, root_value=LIMIT, invalid=True, **kwargs):
    logits, value, embedding = model.hash.roots(B, seed=4)
    mask = random_invalid(logits, 4) if invalid else None
    value = torch.where(value >= 0, 1.0, -1.0).double() * root_value
    policy = muzero_policy if algorithm == "muzero" else gumbel_muzero_policy
    return policy(Root(logits, value, embedding), model, 40, invalid_actions=mask, seed=3, **kwargs)


def _all_finite(out) -> bool:
    return all(torch.isfinite(t).all() for t in (out.action_weights, *out.search_tree.summary()))


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
@pytest.mark.parametrize("two_player", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_outputs_on_the_edge_of_the_range_give_finite_results(algorithm, two_player, dtype):
    out = _edge_search(algorithm, EdgeModel(LIMIT, two_player, dtype))
    assert _all_finite(out)
    assert out.search_tree.summary().value.abs().max() > 1e18


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
@pytest.mark.parametrize("two_player", [False, True])
def test_outputs_near_the_largest_double_are_refused_naming_field_and_rows(algorithm, two_player):
    """The issue's case: values near 1e308 made Gumbel's weights NaN and summary().value inf."""
    with pytest.raises(ValueError, match=r"^recurrent_fn output (reward|value): .*\[0, 1, 2\]"):
        _edge_search(algorithm, EdgeModel(1e308, two_player), root_value=1.0)


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
@pytest.mark.parametrize("field, bad, match", [
    ("value", ABOVE, r"value: .*got 1.8446744073709556e\+19 at row\(s\) \[1\]"),
    ("value", -ABOVE, r"value: .*at row\(s\) \[1\]"),
    ("reward", ABOVE, r"reward: .*at row\(s\) \[1\]"),
    ("reward", -1e308, r"reward: .*got -1e\+308 at row\(s\) \[1\]"),
    ("discount", float(np.nextafter(1.0, 2.0)), r"discount: .*\|discount\| <= 1.*\[1\]"),
    ("discount", -1.5, r"discount: .*\[1\]"),
])
def test_outputs_just_beyond_the_range_are_refused(algorithm, field, bad, match):
    model = EdgeModel(1.0, False, field=field, bad=bad)
    with pytest.raises(ValueError, match="^recurrent_fn output " + match):
        _edge_search(algorithm, model)
    assert model.calls == 3  # refused at the call that returned it


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
def test_root_values_beyond_the_range_are_refused(algorithm):
    with pytest.raises(ValueError, match=r"^root\.value: .*\[0, 1, 2\]"):
        _edge_search(algorithm, EdgeModel(1.0, False), root_value=ABOVE)
    out = _edge_search(algorithm, EdgeModel(1.0, False), root_value=LIMIT)
    assert _all_finite(out)


def test_the_edge_of_the_range_with_tree_reuse():
    model = EdgeModel(LIMIT, True)
    logits, value, embedding = model.hash.roots(B, seed=4)
    root = Root(logits, torch.full((B,), LIMIT, dtype=torch.float64), embedding)
    out = muzero_policy(root, model, 30, capacity=80, seed=1)
    out = muzero_policy(root, model, 40, search_tree=out.search_tree.subtree(out.action),
                        invalid_actions=random_invalid(logits, 5), seed=2)
    assert _all_finite(out)
    with pytest.raises(ValueError, match=r"^root\.value"):  # a root that was not kept is checked
        reused = out.search_tree.subtree(torch.full((B,), A - 1))
        muzero_policy(root._replace(value=torch.full((B,), 1e308, dtype=torch.float64)), model, 2,
                      search_tree=reused)


def test_a_huge_logit_is_no_problem():
    """Logits have no bound but +inf: softmax subtracts the largest and Gumbel's sigma is small."""
    model, logits, value, embedding = hash_roots(A, B, 23)
    logits = logits.double()
    logits[:, 0] = 1.7976931348623157e308
    logits[:, 1] = -1.7976931348623157e308
    for algorithm in ("muzero", "gumbel"):
        out = search(algorithm, model, logits, value, embedding, 10)
        assert _all_finite(out)


@pytest.mark.parametrize("algorithm, name, value", [
    ("muzero", "pb_c_init", 1e300), ("muzero", "pb_c_init", -1e300), ("muzero", "pb_c_base", 1e-310),
    ("muzero", "dirichlet_alpha", 1e308),  # with noise (search() turns it off otherwise)
    ("gumbel", "value_scale", 1e300), ("gumbel", "maxvisit_init", -1e300), ("gumbel", "gumbel_scale", 1e300),
])
def test_parameters_that_overflow_the_arithmetic_are_refused(algorithm, name, value):
    """pb_c_init 1e300 made pUCT scores inf * 0 = NaN at zero priors, value_scale 1e300 made
    Gumbel's weights NaN."""
    model, logits, value_, embedding = hash_roots(A, B, 24)
    noise = dict(dirichlet_fraction=0.25) if name == "dirichlet_alpha" else {}
    with pytest.raises(ValueError, match=f"^{name}"):
        search(algorithm, model, logits, value_, embedding, 4, invalid_actions=random_invalid(logits, 2),
               **{name: value}, **noise)


def test_q_values_closer_than_the_smallest_normal_double_match_the_reference():
    """MuZero normalises Q by 1 / (max - min): with subnormal Q values that was inf, and
    0 * inf made some pUCT scores NaN (silently never chosen). Such ranges now count as empty."""
    tiny = 5e-324

    class Tiny:
        def __init__(self):
            self.hash = HashModel(A, seed=6)

        def __call__(self, embedding, action):
            out, nxt = self.hash(embedding, action)
            return out._replace(reward=torch.where(out.reward > 0, 1.0, -1.0).double() * tiny,
                                value=torch.zeros(len(action), dtype=torch.float64),
                                discount=torch.ones(len(action), dtype=torch.float64)), nxt

    model = Tiny()
    logits, value, embedding = model.hash.roots(B, seed=6)

    def step(e, action):
        out, nxt = model(e, torch.tensor([action]))
        return float(out.reward[0]), 1.0, out.prior_logits[0].double().tolist(), 0.0, nxt

    out = search("muzero", model, logits, torch.zeros(B), embedding, 12)
    for b in range(B):
        ref = muzero_search(step, logits[b].double().tolist(), 0.0, embedding[b:b + 1], 12)
        assert out.search_tree.summary().visit_counts[b].tolist() == ref.visit_counts
        assert ref.tree.hi - ref.tree.lo < DBL_MIN  # the case is exercised


# --------------------------------------------------------------------------------------------
# Other bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("change, match", [
    (dict(embedding=True), "root.embedding"), (dict(num_simulations=100), "num_simulations"),
    (dict(pb_c_init=1e300), "pb_c_init"), (dict(pb_c_base=1e-30), "pb_c_base"), (dict(max_depth=0), "max_depth"),
    (dict(seed=-1), "seed"),
])
def test_a_refused_reuse_leaves_the_search_tree_unchanged(change, match):
    """These were checked after the trees had taken the new roots and dropped the statistics of
    the actions the refused call's mask made invalid."""
    model, logits, value, embedding = hash_roots(A, B, 25)
    root = Root(logits, value, embedding)
    bad = {k: v for k, v in change.items() if k != "embedding"}
    bad.setdefault("num_simulations", 10)
    bad.setdefault("seed", 2)

    def reused():
        out = muzero_policy(root, model, 20, capacity=60, seed=1, temperature=0.0)
        return out.search_tree.subtree(out.action)

    clean = muzero_policy(root, model, 10, search_tree=reused(), seed=2)
    kept = reused()
    nodes = kept.tree.num_nodes.copy()
    everything_but_one = torch.ones(B, A, dtype=torch.bool)
    everything_but_one[:, 0] = False
    with pytest.raises(ValueError, match=match):
        muzero_policy(root._replace(embedding=embedding[:, :2]) if "embedding" in change else root, model,
                      search_tree=kept, invalid_actions=everything_but_one, **bad)
    assert (kept.tree.num_nodes == nodes).all()
    again = muzero_policy(root, model, 10, search_tree=kept, seed=2)
    assert _same_summary(again.search_tree.summary(), clean.search_tree.summary())
    assert torch.equal(again.action, clean.action)


@pytest.mark.parametrize("change, match", [
    (dict(gumbel_scale=-1.0), "gumbel_scale"), (dict(gumbel_scale=1e300), "gumbel_scale"),
    (dict(value_scale=math.nan), "value_scale"), (dict(maxvisit_init=1e300), "maxvisit_init"),
    (dict(max_num_considered_actions=0), "max_num_considered_actions"),
    (dict(max_num_considered_actions=2**20 + 1), "max_num_considered_actions"),
    (dict(rescale_with_invalid=1), "rescale_with_invalid"), (dict(max_depth=0), "max_depth"), (dict(seed=-1), "seed"),
])
def test_a_refused_gumbel_reuse_leaves_the_search_tree_unchanged(change, match):
    """Gumbel's own arguments were checked only once the kept trees had taken the new roots: the
    statistics through actions the refused call's mask made invalid were gone, and roots that kept
    nothing had been given the refused call's root."""
    model, logits, value, embedding = hash_roots(A, B, 26)
    root = Root(logits, value, embedding)

    def reused():
        out = gumbel_muzero_policy(root, model, 12, capacity=40, seed=1, gumbel_scale=0.0)
        actions = out.action.clone()
        actions[0] = (actions[0] + 1) % A  # not necessarily expanded: root 0 may keep nothing
        return out.search_tree.subtree(actions)

    clean = gumbel_muzero_policy(root, model, 8, search_tree=reused(), seed=2)
    kept = reused()
    before, nodes = kept.summary(), kept.tree.num_nodes.copy()
    everything_but_one = torch.ones(B, A, dtype=torch.bool)
    everything_but_one[:, 0] = False
    with pytest.raises((ValueError, TypeError), match=f"^{match}"):
        gumbel_muzero_policy(root, model, 8, search_tree=kept, invalid_actions=everything_but_one,
                             **{"seed": 2, **change})
    assert (kept.tree.num_nodes == nodes).all() and _same_summary(kept.summary(), before)
    again = gumbel_muzero_policy(root, model, 8, search_tree=kept, seed=2)
    assert _same_summary(again.search_tree.summary(), clean.search_tree.summary())
    assert torch.equal(again.action, clean.action) and torch.equal(again.action_weights, clean.action_weights)


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
def test_a_kept_root_left_only_actions_of_logit_minus_inf_is_refused(algorithm):
    """A kept root's logits are its node's, which the prior_logits check never saw: a mask that
    left it only actions of logit -inf was accepted, and the search ran on NaN priors (Gumbel
    returned NaN action weights)."""
    def model(embedding, action):
        n = len(action)
        logits = torch.tensor([[0.0, -math.inf, -math.inf, 1.0]]).expand(n, A)
        return RecurrentOutput(torch.zeros(n), torch.ones(n), logits, torch.zeros(n)), embedding

    logits, value, embedding = torch.zeros(B, A), torch.zeros(B), torch.zeros(B, 2)
    out = search(algorithm, model, logits, value, embedding, 12, capacity=30)
    kept = out.search_tree.subtree(out.action)
    assert kept.kept.all()
    before, nodes = kept.summary(), kept.tree.num_nodes.copy()
    only_minus_inf = torch.tensor([[True, False, False, True]] * B)
    only_minus_inf[0] = False  # root 0 keeps actions of finite logit
    with pytest.raises(ValueError, match=r"^invalid_actions: .*kept root, got root 1 "):
        search(algorithm, model, logits, value, embedding, 4, search_tree=kept, invalid_actions=only_minus_inf)
    assert (kept.tree.num_nodes == nodes).all() and _same_summary(kept.summary(), before)
    only_minus_inf[1:, 3] = False
    again = search(algorithm, model, logits, value, embedding, 4, search_tree=kept, invalid_actions=only_minus_inf)
    assert torch.isfinite(again.action_weights).all() and (again.action_weights[1:, :3] == 0).all()


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
def test_a_max_depth_beyond_64_bits_is_no_limit(algorithm):
    """The binding refused a max_depth beyond 64 bits only after the policies had checked it and
    a reused tree had taken the new roots; like any depth no tree reaches, it means no limit."""
    model, logits, value, embedding = hash_roots(A, B, 27)

    def reused():
        out = search(algorithm, model, logits, value, embedding, 10, capacity=30)
        return out.search_tree.subtree(out.action)

    for max_depth in (2**63, 2**70):
        deep = search(algorithm, model, logits, value, embedding, 6, search_tree=reused(), max_depth=max_depth)
        unlimited = search(algorithm, model, logits, value, embedding, 6, search_tree=reused())
        assert _same_summary(deep.search_tree.summary(), unlimited.search_tree.summary())
        assert torch.equal(deep.action_weights, unlimited.action_weights)
    with pytest.raises(ValueError, match="^max_depth"):
        search(algorithm, model, logits, value, embedding, 6, max_depth=-2**70)


def test_a_refused_set_roots_keeps_the_device():
    tree = Tree(B, A, 5)
    tree.set_roots(torch.zeros(B, A), torch.zeros(B))
    with pytest.raises(ValueError):
        tree.set_roots(torch.zeros(B, A, device="meta"), torch.zeros(B))
    assert tree.device == torch.device("cpu")


@pytest.mark.parametrize("embedding, exception", [
    (np.array([["a"]] * B, dtype=object), TypeError), (np.zeros((B, 2), dtype="U3"), TypeError),
])
def test_embeddings_of_dtypes_torch_lacks_name_the_embedding(embedding, exception):
    model, logits, value, _ = hash_roots(A, B, 26)
    with pytest.raises(exception, match="root.embedding"):
        muzero_policy(Root(logits, value, embedding), model, 2)


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
def test_every_action_invalid_is_refused_naming_invalid_actions(algorithm):
    """The same for every policy: a ValueError naming every root without a valid action, before
    any model call, also on a kept tree (which stays as it was)."""
    model, logits, value, embedding = hash_roots(A, 6, 27)
    mask = torch.zeros(6, A, dtype=torch.bool)
    mask[2] = True
    mask[4] = True
    counting = CountingModel(model)
    with pytest.raises(ValueError, match=r"^invalid_actions: .*root\(s\) \[2, 4\] with every action invalid"):
        search(algorithm, counting, logits, value, embedding, 3, invalid_actions=mask)
    assert not counting.calls
    first = search(algorithm, model, logits, value, embedding, 8, capacity=32)
    reused = first.search_tree.subtree(first.action)
    before = reused.summary()
    with pytest.raises(ValueError, match=r"^invalid_actions: .*\[2, 4\]"):
        search(algorithm, model, logits, value, embedding, 3, invalid_actions=mask, search_tree=reused)
    assert all(torch.equal(x, y) for x, y in zip(before, reused.summary()))
    model, logits, value, embedding = hash_roots(A, 10, 27)
    with pytest.raises(ValueError, match=r"\[0, 1, 2, 3, 4, 5, 6, 7, \.\.\. \(10 roots\)\]"):
        search(algorithm, model, logits, value, embedding, 3, invalid_actions=torch.ones(10, A, dtype=torch.bool))


def test_the_reference_still_matches_with_masks_and_two_players():
    """The range checks changed nothing inside the range (the reference comparison, bit for bit)."""
    model, logits, value, embedding = hash_roots(5, 7, 28, neg_inf_prob=0.3, discount=-1.0)
    invalid = random_invalid(logits, 28)
    ref = reference_batch(model, logits, value, embedding, 30, algorithm="gumbel_muzero", invalid_actions=invalid)
    assert_matches_reference(search("gumbel", model, logits, value, embedding, 30, invalid_actions=invalid), ref)
