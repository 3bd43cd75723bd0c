"""The low-level Tree: the loop of its docstring (select -> model -> expand_and_backup) gives what
the policies give, and Selection's fields mean what the docs say."""

from __future__ import annotations

import pytest
import torch

from pymbrl.mcts import (
    RecurrentOutput,
    Root,
    Selection,
    Tree,
    gumbel_muzero_policy,
    muzero_policy,
)

from .fast_reference import reference_batch
from .helpers import assert_same_output, hash_roots, random_invalid


def _docstring_loop(tree: Tree, model, embedding: torch.Tensor, num_simulations: int,
                    record: list | None = None) -> None:
    """Tree's docstring loop with an explicit embedding table [capacity, B, ...]."""
    batch = torch.arange(tree.batch_size)
    embeddings = torch.empty(tree.capacity, *embedding.shape, dtype=embedding.dtype)
    embeddings[0] = embedding
    for _ in range(num_simulations):
        before = tree.num_nodes.copy()
        sel = tree.select()
        if record is not None:
            record.append((sel, before))
        out, next_embedding = model(embeddings[sel.parent, batch], sel.action)
        embeddings[sel.node, batch] = torch.where(sel.is_new[:, None], next_embedding, embeddings[sel.node, batch])
        tree.expand_and_backup(out)


@pytest.mark.parametrize("noise", [False, True])
def test_docstring_loop_equals_muzero_policy(noise):
    model, logits, value, embedding = hash_roots(5, 7, 1, neg_inf_prob=0.2)
    invalid = random_invalid(logits, 1)
    kwargs = dict(dirichlet_fraction=0.25 if noise else 0.0, seed=3)
    temperature = 1.0 if noise else 0.0
    tree = Tree(batch_size=7, num_actions=5, capacity=1 + 30)
    tree.set_roots(logits, value, invalid)
    tree.begin_muzero(30, **kwargs)
    _docstring_loop(tree, model, embedding, 30)
    action, weights = tree.decide(temperature)
    out = muzero_policy(Root(logits, value, embedding), model, 30, invalid_actions=invalid, temperature=temperature,
                        **kwargs)
    assert torch.equal(action, out.action) and torch.equal(weights, out.action_weights)
    summary, expected = tree.summary(), out.search_tree.summary()
    assert all(torch.equal(x, y) for x, y in zip(summary, expected))
    assert tree.num_nodes.tolist() == [31] * 7


@pytest.mark.parametrize("noise", [False, True])
def test_docstring_loop_equals_gumbel_muzero_policy(noise):
    model, logits, value, embedding = hash_roots(6, 7, 2, neg_inf_prob=0.2)
    invalid = random_invalid(logits, 2)
    kwargs = dict(gumbel_scale=1.0 if noise else 0.0, seed=4, max_num_considered_actions=4, max_depth=4)
    tree = Tree(batch_size=7, num_actions=6, capacity=40)
    tree.set_roots(logits, value, invalid)
    tree.begin_gumbel(25, **kwargs)
    _docstring_loop(tree, model, embedding, 25)
    action, weights = tree.decide()
    out = gumbel_muzero_policy(Root(logits, value, embedding), model, 25, invalid_actions=invalid, **kwargs)
    assert torch.equal(action, out.action) and torch.equal(weights, out.action_weights)
    assert all(torch.equal(x, y) for x, y in zip(tree.summary(), out.search_tree.summary()))


def test_selection_names_the_reference_trees_nodes():
    """Without a depth limit every selection is a new node: node = the next id, parent and action
    = that node's parent and action in the reference tree (ids are allocated in the same order)."""
    model, logits, value, embedding = hash_roots(4, 5, 6, neg_inf_prob=0.2)
    ref = reference_batch(model, logits, value, embedding, 20)
    tree = Tree(5, 4, 21)
    tree.set_roots(logits, value)
    tree.begin_muzero(20, dirichlet_fraction=0.0)
    record: list = []
    _docstring_loop(tree, model, embedding, 20, record)
    for k, (sel, before) in enumerate(record):
        assert isinstance(sel, Selection)
        assert sel.parent.dtype == sel.action.dtype == sel.node.dtype == torch.int64 and sel.is_new.dtype == torch.bool
        assert sel.is_new.all()
        assert sel.node.tolist() == [k + 1] * 5 and before.tolist() == [k + 1] * 5
        for b in range(5):
            node = ref.roots[b].tree.nodes[k + 1]
            assert (int(sel.parent[b]), int(sel.action[b])) == (node.parent, node.action)
    assert torch.equal(tree.summary().visit_counts, ref.visit_counts)
    # select() returns copies: earlier selections did not change under later ones.
    assert record[0][0].node.tolist() == [1] * 5


@pytest.mark.parametrize("max_depth", [1, 2])
def test_is_new_is_false_only_at_the_depth_limit(max_depth):
    """With max_depth, a leaf at the limit is revisited (is_new False, node = the existing child
    of parent under action, at depth max_depth); elsewhere the node is new (the next id). The
    model's outputs for rows that are not new are not used (garbage there changes nothing)."""
    model, logits, value, embedding = hash_roots(2, 6, 7)
    ref = reference_batch(model, logits, value, embedding, 30, max_depth=max_depth)
    tree = Tree(6, 2, 31)
    tree.set_roots(logits, value)
    tree.begin_muzero(30, dirichlet_fraction=0.0, max_depth=max_depth)
    batch = torch.arange(6)
    embeddings = torch.zeros(31, 6, 4)
    embeddings[0] = embedding
    depth = {(b, 0): 0 for b in range(6)}
    child = {}
    revisits = 0
    for _ in range(30):
        before = tree.num_nodes.copy()
        sel = tree.select()
        out, nxt = model(embeddings[sel.parent, batch], sel.action)
        for b in range(6):
            parent, action, node = int(sel.parent[b]), int(sel.action[b]), int(sel.node[b])
            assert depth[(b, parent)] < max_depth
            if sel.is_new[b]:
                assert node == before[b] and (b, parent, action) not in child
                child[(b, parent, action)] = node
                depth[(b, node)] = depth[(b, parent)] + 1
                embeddings[node, b] = nxt[b]
            else:
                revisits += 1
                assert child[(b, parent, action)] == node and node < before[b]
                assert depth[(b, node)] == max_depth
        assert (tree.num_nodes == before).all()  # select() allocates nothing
        garbage = torch.where(sel.is_new, 0.0, 1e9)
        out = RecurrentOutput(out.reward + garbage, out.discount, out.prior_logits, out.value - garbage)
        tree.expand_and_backup(out)
        assert (tree.num_nodes - before).tolist() == sel.is_new.int().tolist()
    assert revisits > 0
    summary = tree.summary()
    assert torch.equal(summary.visit_counts, ref.visit_counts)
    assert torch.equal(summary.qvalues, ref.qvalues.float()) and torch.equal(summary.value, ref.value.float())


def test_select_rows_point_into_the_embedding_pool():
    """select_rows: gather = parent * B + b, scatter = node * B + b for new nodes and the spare
    row capacity * B + b at the depth limit."""
    model, logits, value, embedding = hash_roots(2, 3, 8)
    tree = Tree(3, 2, 10)
    tree.set_roots(logits, value)
    tree.begin_muzero(9, dirichlet_fraction=0.0, max_depth=1)
    saw_spare = False
    for _ in range(9):
        before = tree.num_nodes.copy()
        gather, scatter, action = tree.select_rows()
        gather, scatter, action = gather.clone(), scatter.clone(), action.clone()
        assert gather.tolist() == [0 * 3 + b for b in range(3)]  # depth 1: the parent is the root
        for b in range(3):
            new = int(scatter[b]) // 3 != tree.capacity
            saw_spare |= not new
            assert int(scatter[b]) % 3 == b
            if new:
                assert int(scatter[b]) // 3 == before[b]
        out, _ = model(embedding, action)
        tree.expand_and_backup(out)
    assert saw_spare


def test_fresh_roots_summary_and_threads():
    model, logits, value, _ = hash_roots(3, 4, 9)
    tree = Tree(4, 3, 5, num_threads=3)
    assert tree.num_threads == 3 and (tree.batch_size, tree.num_actions, tree.capacity) == (4, 3, 5)
    tree.set_roots(logits.numpy(), value.numpy())
    summary = tree.summary()
    assert (summary.visit_counts == 0).all() and (summary.qvalues == 0).all()
    assert torch.equal(summary.value, value)
    assert tree.num_nodes.tolist() == [1] * 4
    # Setting roots again starts afresh, also in the middle of a search.
    tree.begin_muzero(4)
    tree.select()
    out, _ = model(torch.zeros(4, 4), torch.zeros(4, dtype=torch.int64))
    tree.expand_and_backup(out)
    tree.set_roots(logits, value * 2)
    assert torch.equal(tree.summary().value, value * 2) and tree.num_nodes.tolist() == [1] * 4


def test_two_searches_on_one_tree_equal_fresh_trees():
    """A Tree is reusable: set_roots + begin after a finished search gives a fresh search."""
    model, logits, value, embedding = hash_roots(4, 5, 10)
    tree = Tree(5, 4, 16)
    for seed in (0, 1):
        tree.set_roots(logits, value)
        tree.begin_muzero(15, seed=seed)
        _docstring_loop(tree, model, embedding, 15)
        action, weights = tree.decide(1.0)
        out = muzero_policy(Root(logits, value, embedding), model, 15, seed=seed)
        assert torch.equal(action, out.action) and torch.equal(weights, out.action_weights)
        assert torch.equal(tree.summary().visit_counts, out.search_tree.summary().visit_counts)


def test_policy_results_do_not_depend_on_recycled_trees():
    """The policies recycle dropped trees of the same shape; results must not change."""
    model, logits, value, embedding = hash_roots(4, 5, 11)
    first = muzero_policy(Root(logits, value, embedding), model, 10, seed=1)
    del first
    other = muzero_policy(Root(logits * 2, value, embedding), model, 10, seed=2)  # uses the recycled tree
    del other
    again = muzero_policy(Root(logits, value, embedding), model, 10, seed=1)
    fresh = muzero_policy(Root(logits, value, embedding), model, 10, seed=1, capacity=11, num_threads=1)
    assert_same_output(again, fresh)


def test_recycled_tree_with_another_embedding_structure():
    """A recycled tree whose embedding pool does not fit the new root embedding gets a new pool."""
    model, logits, value, embedding = hash_roots(4, 5, 12)
    expected = muzero_policy(Root(logits, value, embedding), model, 8, seed=1)
    del expected
    seen = []

    def dict_model(emb, action):
        seen.append(emb["e"].dtype)
        out, nxt = model(emb["e"].float(), action)
        return out, {"e": nxt.double()}

    out = muzero_policy(Root(logits, value, {"e": embedding.double()}), dict_model, 8, seed=1)
    fresh = muzero_policy(Root(logits, value, embedding), model, 8, seed=1, capacity=9, num_threads=1)
    assert_same_output(out, fresh)
    assert set(seen) == {torch.float64}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
def test_cuda_roots_give_cuda_outputs_and_the_cpu_search(algorithm):
    """The model runs on the roots' device; results come back there and equal the CPU search
    (HashModel is integer arithmetic, identical on both devices)."""
    model, logits, value, embedding = hash_roots(5, 9, 13, neg_inf_prob=0.2)
    invalid = random_invalid(logits, 13)
    policy = muzero_policy if algorithm == "muzero" else gumbel_muzero_policy
    kwargs = dict(seed=2, invalid_actions=invalid)
    cpu = policy(Root(logits, value, embedding), model, 20, **kwargs)
    devices = []

    def cuda_model(emb, action):
        devices.append((emb.device.type, action.device.type))
        return model(emb, action)

    cuda = policy(Root(logits.cuda(), value.cuda(), embedding.cuda()), cuda_model, 20,
                  **dict(kwargs, invalid_actions=invalid.cuda()))
    assert set(devices) == {("cuda", "cuda")}
    assert cuda.action.device.type == "cuda" and cuda.action_weights.device.type == "cuda"
    summary = cuda.search_tree.summary()
    assert all(t.device.type == "cuda" for t in summary)
    assert torch.equal(cuda.action.cpu(), cpu.action) and torch.equal(cuda.action_weights.cpu(), cpu.action_weights)
    assert all(torch.equal(x.cpu(), y) for x, y in zip(summary, cpu.search_tree.summary()))


def test_a_recycled_tree_keeps_the_thread_count_asked_for():
    """A search with the default thread count must not inherit a recycled single-thread tree."""
    import gc

    from pymbrl.mcts import Root, muzero_policy

    from .hash_model import HashModel

    model = HashModel(4)
    logits, value, embedding = model.roots(256)
    default = Tree(256, 4, 5).num_threads
    muzero_policy(Root(logits, value, embedding), model, 4, num_threads=1)
    gc.collect()
    out = muzero_policy(Root(logits, value, embedding), model, 4)
    assert out.search_tree.tree.num_threads == default
    out = muzero_policy(Root(logits, value, embedding), model, 4, num_threads=1)
    assert out.search_tree.tree.num_threads == 1
