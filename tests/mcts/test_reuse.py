"""Tree reuse: ``search_tree.subtree(actions)`` keeps each root's chosen subtree (statistics and
embeddings) and the next ``muzero_policy(..., search_tree=reused)`` continues from it.

The reference has no reuse, so this file re-roots reference trees itself (keep the subtree in id
order, the kept child becomes a root with reward 0 and discount 1, priors from its own logits
over the new valid actions, min-max rebuilt from the kept edges, statistics through actions that
became invalid subtracted) and continues them with the reference's own simulation step. The model
is a *path model*: its embedding (int64 [B, 2] = depth, code) encodes the root and the action path
exactly, and every output is a hash of it, so a node handed the wrong embedding changes the search
and the recurrent function's inputs can be checked one by one.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from pymbrl.mcts import Root, gumbel_muzero_policy, muzero_policy
from pymbrl.mcts.reference import Tree as RefTree
from pymbrl.mcts.reference import (expand_with, gumbel_muzero_search, gumbel_simulations, muzero_search, muzero_select,
                                   simulate, softmax)

from .fast_reference import HashStep
from .hash_model import HashModel

A, B = 3, 6
_MASK32 = 0xFFFFFFFF


class PathModel:
    """recurrent_fn over path embeddings int64 [B, 2] = (depth, code); a child's code is
    ``code * (A + 1) + action + 1``. Outputs are HashModel's for the embedding's bits."""

    def __init__(self, seed: int) -> None:
        self.hash = HashModel(A, embedding_dim=4, seed=seed, neg_inf_prob=0.2)
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, embedding, action):
        assert embedding.dtype == torch.int64 and embedding.shape == (B, 2)
        self.calls.append((embedding.clone(), action.clone()))
        out, _ = self.hash(embedding.contiguous().view(torch.float32), action)
        nxt = torch.stack([embedding[:, 0] + 1, embedding[:, 1] * (A + 1) + action + 1], dim=1)
        return out, nxt


class PathStep:
    """The same model for the reference: embedding = (depth, code) tuple of ints."""

    def __init__(self, model: PathModel) -> None:
        self.step = HashStep(model.hash)
        self.calls: list[tuple[tuple[int, int], int]] = []

    def __call__(self, path, action):
        self.calls.append((path, action))
        depth, code = path
        bits = (depth & _MASK32, (depth >> 32) & _MASK32, code & _MASK32, (code >> 32) & _MASK32)
        reward, discount, logits, value, _ = self.step(bits, action)
        return reward, discount, logits, value, (depth + 1, code * (A + 1) + action + 1)


def _root_paths(base: int) -> torch.Tensor:
    return torch.tensor([[0, base + b] for b in range(B)], dtype=torch.int64)


def _ref_reroot(tree: RefTree, action: int) -> tuple[RefTree | None, list[int]]:
    """The reference tree re-rooted at the root's child under ``action`` (None if not expanded),
    and the old ids of the kept nodes in their new order."""
    start = tree.nodes[0].children[action]
    if start == -1:
        return None, []
    new_id: dict[int, int] = {}
    kept: list[int] = []
    for x in range(len(tree.nodes)):
        if x == start or (x > start and tree.nodes[x].parent in new_id):
            new_id[x] = len(kept)
            kept.append(x)
    new = RefTree(tree.num_actions, [True] * tree.num_actions)
    for x in kept:
        node = copy.copy(tree.nodes[x])
        node.children = [new_id.get(c, -1) if c != -1 else -1 for c in node.children]
        if x == start:
            node.parent, node.action, node.reward, node.discount = -1, -1, 0.0, 1.0
        else:
            node.parent = new_id[node.parent]
        new.nodes.append(node)
    return new, kept


def _ref_continue(tree: RefTree, invalid: list[bool], num_simulations: int, step) -> None:
    """Continues a kept reference tree as the C++ core does: drop what went through actions that
    became invalid, priors from the root's logits over the valid actions, min-max over the
    reachable edges, then MuZero simulations."""
    _ref_revalidate(tree, invalid)
    for _ in range(num_simulations):
        simulate(tree, expand_with(tree, step), lambda x, depth: muzero_select(tree, x, 1.25, 19652.0), None)


def _ref_revalidate(tree: RefTree, invalid: list[bool]) -> None:
    """A kept reference tree's root with new valid actions, as set_roots(keep=...) leaves it."""
    valid = [not i for i in invalid]
    root = tree.nodes[0]
    for a in range(tree.num_actions):
        c = root.children[a]
        if not valid[a] and c != -1:
            child = tree.nodes[c]
            root.visits -= child.visits
            root.value_sum -= child.visits * child.reward + child.discount * child.value_sum
            root.children[a] = -1
    tree.valid = valid
    root.prior = softmax(root.logits, valid)
    tree.lo, tree.hi = math.inf, -math.inf
    reachable = {0}
    for x in range(len(tree.nodes)):
        if x in reachable:
            for c in tree.nodes[x].children:
                if c != -1:
                    reachable.add(c)
                    tree.update_min_max(tree.edge_q(c))


def _ref_stats(tree: RefTree) -> tuple[list[int], list[float], float, int]:
    n, q = tree.child_visits(0), tree.child_q(0)
    root = tree.nodes[0]
    best = max((a for a in range(tree.num_actions) if tree.valid[a]), key=lambda a: (n[a], -a))
    return n, [q[a] if n[a] > 0 else 0.0 for a in range(tree.num_actions)], root.value_sum / root.visits, best


def _assert_summary_matches(summary, trees, rows) -> None:
    for b in rows:
        n, q, value, _ = _ref_stats(trees[b])
        assert summary.visit_counts[b].tolist() == n, b
        assert summary.qvalues[b].tolist() == torch.tensor(q).float().tolist(), b
        assert float(summary.value[b]) == float(torch.tensor(value).float()), b


@pytest.fixture()
def first_search():
    """A first search of 24 simulations (capacity 64); root 0 may not take action 2."""
    model = PathModel(seed=4)
    logits, value, _ = model.hash.roots(B, seed=4)
    paths = _root_paths(10)
    invalid = torch.zeros(B, A, dtype=torch.bool)
    invalid[0, 2] = True
    out = muzero_policy(Root(logits, value, paths), model, 24, invalid_actions=invalid, dirichlet_fraction=0.0,
                        temperature=0.0, capacity=64)
    step = PathStep(model)
    refs = [muzero_search(step, logits[b].tolist(), float(value[b]), tuple(paths[b].tolist()), 24,
                          invalid_actions=invalid[b].tolist()) for b in range(B)]
    return model, out, refs


def test_path_model_equals_its_reference_step():
    model = PathModel(seed=1)
    paths = torch.tensor([[0, 5], [3, 12345678901], [7, 2**40 + 3], [1, 0], [2, 77], [9, 2**50]], dtype=torch.int64)
    action = torch.tensor([0, 1, 2, 2, 1, 0])
    out, nxt = model(paths, action)
    step = PathStep(model)
    for b in range(B):
        r, d, lg, v, n = step(tuple(paths[b].tolist()), int(action[b]))
        assert (r, d, lg, v) == (float(out.reward[b]), float(out.discount[b]), out.prior_logits[b].tolist(),
                                 float(out.value[b]))
        assert n == tuple(nxt[b].tolist())


def test_reuse_keeps_statistics_and_embeddings_and_continues_like_the_reference(first_search):
    model, out, refs = first_search
    _assert_summary_matches(out.search_tree.summary(), [r.tree for r in refs], range(B))  # sanity

    # Where to go: root 0 takes its invalid (never expanded) action 2; root 5 its least visited
    # expanded action (a small kept subtree); the others the search's action.
    actions = out.action.clone()
    actions[0] = 2
    counts = out.search_tree.summary().visit_counts[5]
    actions[5] = min((a for a in range(A) if counts[a] > 0), key=lambda a: (int(counts[a]), a))
    ref_trees, ref_kept = zip(*(_ref_reroot(refs[b].tree, int(actions[b])) for b in range(B)))
    old_tree = out.search_tree
    reused = old_tree.subtree(actions)

    # The consumed SearchTree refuses further use.
    with pytest.raises(RuntimeError, match="search_tree"):
        old_tree.summary()
    with pytest.raises(RuntimeError, match="search_tree"):
        old_tree.subtree(actions)

    assert reused.kept.tolist() == [t is not None for t in ref_trees]
    assert reused.kept.tolist() == [False] + [True] * (B - 1)
    kept_rows = [b for b in range(B) if ref_trees[b] is not None]
    assert reused.tree.num_nodes.tolist() == [len(k) for k in ref_kept]
    # The new roots are the old children: their children's visit counts, Q values and value.
    _assert_summary_matches(reused.summary(), ref_trees, kept_rows)
    for b in kept_rows:
        old_child = refs[b].tree.nodes[refs[b].tree.nodes[0].children[int(actions[b])]]
        assert int(reused.summary().visit_counts[b].sum()) == old_child.visits - 1
    # Every kept node's embedding moved along with it (pool rows node * B + b).
    for b in kept_rows:
        rows = torch.arange(len(ref_kept[b])) * B + b
        pool = reused.embeddings.gather(rows)
        assert pool.tolist() == [list(node.embedding) for node in ref_trees[b].nodes]

    # Second search. Root 0 starts afresh from the new root; the kept roots ignore the new
    # root's logits, value and embedding (a sentinel path that must never reach the model).
    logits2, value2, _ = model.hash.roots(B, seed=99)
    paths2 = _root_paths(500)
    paths2[1:, 1] = -7  # sentinel for kept roots
    invalid2 = torch.zeros(B, A, dtype=torch.bool)
    # Root 1 may no longer take an action its kept subtree went through: dropped with its statistics.
    dropped = next(a for a in range(A) if ref_trees[1].nodes[0].children[a] != -1)
    invalid2[1, dropped] = True
    model.calls.clear()
    out2 = muzero_policy(Root(logits2, value2, paths2), model, 16, invalid_actions=invalid2, dirichlet_fraction=0.0,
                         temperature=0.0, search_tree=reused)

    step = PathStep(model)
    trees2 = list(ref_trees)
    trees2[0] = muzero_search(step, logits2[0].tolist(), float(value2[0]), tuple(paths2[0].tolist()), 16,
                              invalid_actions=invalid2[0].tolist()).tree
    ref_calls = {0: list(step.calls)}
    for b in kept_rows:
        step.calls.clear()
        _ref_continue(trees2[b], invalid2[b].tolist(), 16, step)
        ref_calls[b] = list(step.calls)
    # The model saw exactly the reference's (embedding, action) pairs, simulation by simulation.
    assert len(model.calls) == 16
    for k, (embedding, action) in enumerate(model.calls):
        for b in range(B):
            assert (tuple(embedding[b].tolist()), int(action[b])) == ref_calls[b][k], (k, b)
    assert (model.calls[0][0][0] == paths2[0]).all()  # root 0 used its new root
    assert not any((e[1:, 1] == -7).any() for e, _ in model.calls)
    summary2 = out2.search_tree.summary()
    _assert_summary_matches(summary2, trees2, range(B))
    assert out2.action.tolist() == [_ref_stats(t)[3] for t in trees2]
    assert int(summary2.visit_counts[1, dropped]) == 0
    # Kept roots added 16 visits to what they kept (less what was dropped at root 1).
    for b in kept_rows[1:]:
        assert int(summary2.visit_counts[b].sum()) == int(reused_counts_sum(ref_kept, refs, actions, b)) + 16

    # And once more, from the second search's choice.
    actions3 = out2.action
    trees3, _ = zip(*(_ref_reroot(trees2[b], int(actions3[b])) for b in range(B)))
    reused3 = out2.search_tree.subtree(actions3)
    assert reused3.kept.tolist() == [t is not None for t in trees3]
    out3 = muzero_policy(Root(logits2, value2, paths2), model, 8, dirichlet_fraction=0.0, temperature=0.0,
                         search_tree=reused3)
    rows3 = [b for b in range(B) if trees3[b] is not None]
    for b in rows3:
        _ref_continue(trees3[b], [False] * A, 8, step)
    _assert_summary_matches(out3.search_tree.summary(), trees3, rows3)


def reused_counts_sum(ref_kept, refs, actions, b) -> int:
    """Root visits (beyond its own) of the kept subtree of root b: the old child's visits - 1."""
    tree = refs[b].tree
    return tree.nodes[tree.nodes[0].children[int(actions[b])]].visits - 1


def test_low_level_subtree_returns_old_ids_of_the_kept_nodes(first_search):
    _, out, refs = first_search
    tree = out.search_tree.tree
    actions = np.array([2, 0, 1, 2, 0, 1])  # root 0: never expanded
    expected = [_ref_reroot(refs[b].tree, int(actions[b]))[1] for b in range(B)]
    old_ids, kept = tree.subtree(actions)
    assert old_ids.shape == (tree.capacity, B) and old_ids.dtype == np.int64
    assert kept.tolist() == [len(e) > 0 for e in expected]
    for b in range(B):
        n = len(expected[b])
        assert old_ids[:n, b].tolist() == expected[b]
        assert old_ids[n:, b].tolist() == list(range(n, tree.capacity))  # identity beyond the kept nodes
        # Consistent with the tree: the first kept node is the old root's child under the action.
        if n:
            assert expected[b][0] == refs[b].tree.nodes[0].children[int(actions[b])]
    assert tree.num_nodes.tolist() == [len(e) for e in expected]


def test_capacity_is_checked_against_kept_nodes(first_search):
    model, out, _ = first_search
    reused = out.search_tree.subtree(out.action)
    kept_nodes = int(reused.tree.num_nodes.max())
    logits, value, _ = model.hash.roots(B, seed=5)
    root = Root(logits, value, _root_paths(0))
    with pytest.raises(ValueError, match="num_simulations"):
        muzero_policy(root, model, 64 - kept_nodes + 1, search_tree=reused)
    # Nothing was lost: the largest search that fits still runs on the kept trees.
    before = reused.summary().visit_counts.sum(dim=1)
    out2 = muzero_policy(root, model, 64 - kept_nodes, search_tree=reused, dirichlet_fraction=0.0)
    assert (out2.search_tree.summary().visit_counts.sum(dim=1) == before + 64 - kept_nodes).all()


def test_default_capacity_leaves_no_room_for_reuse():
    """capacity defaults to 1 + num_simulations: a kept subtree then leaves too little room."""
    model = PathModel(seed=2)
    logits, value, _ = model.hash.roots(B, seed=2)
    root = Root(logits, value, _root_paths(0))
    out = muzero_policy(root, model, 10, dirichlet_fraction=0.0, temperature=0.0)
    reused = out.search_tree.subtree(out.action)
    with pytest.raises(ValueError, match="capacity"):
        muzero_policy(root, model, 10, search_tree=reused)


def test_consumed_search_tree_cannot_be_passed_again(first_search):
    model, out, _ = first_search
    old = out.search_tree
    old.subtree(out.action)
    logits, value, _ = model.hash.roots(B, seed=5)
    with pytest.raises(RuntimeError, match="search_tree"):
        muzero_policy(Root(logits, value, _root_paths(0)), model, 4, search_tree=old)


@pytest.mark.parametrize("rescale_with_invalid", [False, True])
def test_gumbel_continues_a_kept_tree_like_the_reference(rescale_with_invalid):
    """Gumbel MuZero reuses a tree as MuZero does: the kept statistics stay (completed Q, sigma)
    and sequential halving runs on the new visits; the model sees the reference's calls."""
    model = PathModel(seed=6)
    logits, value, _ = model.hash.roots(B, seed=6)
    paths = _root_paths(20)
    invalid = torch.zeros(B, A, dtype=torch.bool)
    invalid[2, 0] = True
    kwargs = dict(gumbel_scale=0.0, max_num_considered_actions=2, rescale_with_invalid=rescale_with_invalid)
    out = gumbel_muzero_policy(Root(logits, value, paths), model, 20, invalid_actions=invalid, capacity=48, **kwargs)
    step = PathStep(model)
    refs = [gumbel_muzero_search(step, logits[b].tolist(), float(value[b]), tuple(paths[b].tolist()), 20,
                                 invalid_actions=invalid[b].tolist(), max_num_considered_actions=2,
                                 rescale_with_invalid=rescale_with_invalid) for b in range(B)]
    assert out.action.tolist() == [r.action for r in refs]
    ref_trees = [_ref_reroot(refs[b].tree, int(out.action[b]))[0] for b in range(B)]
    reused = out.search_tree.subtree(out.action)
    assert reused.kept.all()  # the chosen actions were all searched
    invalid2 = torch.zeros(B, A, dtype=torch.bool)
    invalid2[1, 1] = True
    model.calls.clear()
    paths2 = _root_paths(900)
    out2 = gumbel_muzero_policy(Root(logits, value, paths2), model, 12, invalid_actions=invalid2, search_tree=reused,
                                **kwargs)
    calls, results = {}, []
    for b in range(B):
        step.calls.clear()
        _ref_revalidate(ref_trees[b], invalid2[b].tolist())
        results.append(gumbel_simulations(ref_trees[b], step, 12, max_num_considered_actions=2,
                                          rescale_with_invalid=rescale_with_invalid))
        calls[b] = list(step.calls)
    for k, (embedding, action) in enumerate(model.calls):
        for b in range(B):
            assert (tuple(embedding[b].tolist()), int(action[b])) == calls[b][k], (k, b)
    _assert_summary_matches(out2.search_tree.summary(), ref_trees, range(B))
    assert out2.action.tolist() == [r.action for r in results]
    assert torch.equal(out2.action_weights, torch.tensor([r.action_weights for r in results]).float())
    # The kept visits stayed beside this search's 12 (root 1 lost what went through action 1).
    kept = [sum(refs[b].tree.child_visits(refs[b].tree.nodes[0].children[int(out.action[b])])) for b in range(B)]
    totals = out2.search_tree.summary().visit_counts.sum(dim=1).tolist()
    assert [totals[b] for b in range(B) if b != 1] == [kept[b] + 12 for b in range(B) if b != 1]
    assert min(kept) > 0


def test_summary_of_an_emptied_tree_is_empty(first_search):
    """After subtree() with an action that was never expanded, that root's tree is empty: its
    summary must not report the discarded root's statistics."""
    _, out, _ = first_search
    before = out.search_tree.summary()
    actions = out.action.clone()
    actions[0] = 2  # invalid in the first search: never expanded
    reused = out.search_tree.subtree(actions)
    assert not bool(reused.kept[0]) and int(reused.tree.num_nodes[0]) == 0
    summary = reused.summary()
    assert float(summary.value[0]) == 0.0
    assert int(before.visit_counts[0].sum()) == 24
    assert summary.visit_counts[0].tolist() == [0] * A
    assert summary.qvalues[0].tolist() == [0.0] * A


def test_reused_tree_of_another_shape_names_search_tree(first_search):
    model, out, _ = first_search
    reused = out.search_tree.subtree(out.action)
    logits, value, _ = HashModel(A + 1, seed=1).roots(B, seed=1)
    with pytest.raises(ValueError, match="search_tree"):
        muzero_policy(Root(logits, value, _root_paths(0)), model, 4, search_tree=reused)
    logits, value, _ = model.hash.roots(B - 1, seed=1)
    with pytest.raises(ValueError, match="search_tree"):
        muzero_policy(Root(logits, value, _root_paths(0)[:-1]), model, 4, search_tree=reused)
    with pytest.raises(TypeError, match="search_tree"):
        muzero_policy(Root(logits, value, _root_paths(0)[:-1]), model, 4, search_tree=out)
