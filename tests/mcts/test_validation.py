"""Bad input: an exception that names the argument (never a crash), and the trees left as they
were, so that a search can go on after the error."""

from __future__ import annotations

import gc
import math

import numpy as np
import pytest
import torch

from pymbrl.mcts import (
    QTransform,
    Root,
    Tree,
    gumbel_muzero_policy,
    muzero_policy,
    qtransform_by_min_max,
    qtransform_by_parent_and_siblings,
)

from .hash_model import HashModel

B, A = 3, 4
MODEL = HashModel(A, seed=1)
LOGITS, VALUE, EMBEDDING = MODEL.roots(B, seed=3)
POLICIES = {"muzero": muzero_policy, "gumbel": gumbel_muzero_policy}


def _run(algorithm="muzero", logits=None, value=None, embedding=None, fn=MODEL, num_simulations=4, **kwargs):
    root = Root(LOGITS if logits is None else logits, VALUE if value is None else value,
                EMBEDDING if embedding is None else embedding)
    return POLICIES[algorithm](root, fn, num_simulations, **kwargs)


def _raises(match, *args, exception=(ValueError, TypeError), **kwargs):
    with pytest.raises(exception, match=match):
        _run(*args, **kwargs)


def _with_row(tensor, row, col, value):
    t = tensor.clone()
    if t.ndim == 1:
        t[row] = value
    else:
        t[row, col] = value
    return t


# --------------------------------------------------------------------------------------------
# Roots
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
@pytest.mark.parametrize("case, kwargs, match", [
    ("logits 1-d", dict(logits=LOGITS[0]), "prior_logits"),
    ("logits 3-d", dict(logits=LOGITS[None]), "prior_logits"),
    ("value [B-1]", dict(value=VALUE[:2]), "value"),
    ("value [B, 1]", dict(value=VALUE[:, None]), "value"),
    ("embedding [B-1]", dict(embedding=EMBEDDING[:2]), "embedding"),
    ("embedding scalar", dict(embedding=torch.tensor(1.0)), "embedding"),
    ("invalid_actions shape", dict(invalid_actions=torch.zeros(B, A + 1, dtype=torch.bool)), "invalid_actions"),
    ("invalid_actions float", dict(invalid_actions=torch.zeros(B, A)), "invalid_actions"),
    # was read as True wherever non-zero: a tensor of action ids passed by mistake went unnoticed
    ("invalid_actions ints not 0/1", dict(invalid_actions=torch.full((B, A), 2)), "invalid_actions: expected a boolean mask"),
    ("every action invalid", dict(invalid_actions=torch.tensor([[False] * A, [True] * A, [False] * A])),
     "invalid_actions"),
    ("NaN logit", dict(logits=_with_row(LOGITS, 1, 2, math.nan)), "prior_logits"),
    ("+inf logit", dict(logits=_with_row(LOGITS, 1, 2, math.inf)), "prior_logits"),
    ("all logits -inf", dict(logits=_with_row(LOGITS, 2, slice(None), -math.inf)), "prior_logits"),
    ("valid logits all -inf", dict(logits=torch.tensor([[0.0] + [-math.inf] * (A - 1)] * B),
                                   invalid_actions=torch.tensor([[True] + [False] * (A - 1)] * B)), "prior_logits"),
    ("NaN value", dict(value=_with_row(VALUE, 1, None, math.nan)), "value"),
    ("inf value", dict(value=_with_row(VALUE, 0, None, -math.inf)), "value"),
    ("string logits", dict(logits=[["a"] * A] * B), "prior_logits"),
    ("complex logits", dict(logits=np.zeros((B, A), dtype=complex)), "prior_logits"),
    ("root not a Root", dict(), "root"),
])
def test_bad_roots(algorithm, case, kwargs, match):
    if case == "root not a Root":
        with pytest.raises(TypeError, match="root"):
            POLICIES[algorithm]((LOGITS, VALUE), MODEL, 4)
        return
    calls = []

    def model(embedding, action):
        calls.append(1)
        return MODEL(embedding, action)

    _raises(match, algorithm, fn=model, **kwargs)
    assert not calls  # refused before any model call


# --------------------------------------------------------------------------------------------
# Scalar arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
@pytest.mark.parametrize("name, value", [
    ("num_simulations", 0), ("num_simulations", -1), ("num_simulations", 1.5), ("num_simulations", True),
    ("num_simulations", "3"), ("num_simulations", None),
    ("max_depth", 0), ("max_depth", -1), ("max_depth", 1.5), ("max_depth", True),
    ("seed", -1), ("seed", 2**64), ("seed", 1.5),
    ("capacity", 0), ("capacity", 2.0),
    ("num_threads", 0), ("num_threads", 2000), ("num_threads", 1.0),
])
def test_bad_common_arguments(algorithm, name, value):
    kwargs = {name: value}
    if name == "num_simulations":
        kwargs = dict(num_simulations=value)
    _raises(name, algorithm, **kwargs)


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
def test_capacity_below_the_simulations(algorithm):
    _raises("num_simulations", algorithm, num_simulations=5, capacity=5)


@pytest.mark.parametrize("name, value", [
    ("dirichlet_alpha", 0.0), ("dirichlet_alpha", -1.0), ("dirichlet_alpha", math.nan), ("dirichlet_alpha", math.inf),
    ("dirichlet_alpha", "x"),
    ("dirichlet_fraction", -0.1), ("dirichlet_fraction", 1.5), ("dirichlet_fraction", math.nan),
    ("dirichlet_fraction", "x"),
    ("temperature", -1.0), ("temperature", math.nan), ("temperature", math.inf), ("temperature", "x"),
    ("temperature", None),
    ("pb_c_base", 0.0), ("pb_c_base", -1.0), ("pb_c_base", math.nan), ("pb_c_base", math.inf),
    ("pb_c_init", math.nan), ("pb_c_init", math.inf), ("pb_c_init", "x"),
])
def test_bad_muzero_arguments(name, value):
    _raises(name, "muzero", **{name: value})


@pytest.mark.parametrize("name, value", [
    ("max_num_considered_actions", 0), ("max_num_considered_actions", -1), ("max_num_considered_actions", 1.5),
    ("max_num_considered_actions", True), ("max_num_considered_actions", 2**21),
    ("gumbel_scale", -1.0), ("gumbel_scale", math.nan), ("gumbel_scale", math.inf), ("gumbel_scale", "x"),
    ("value_scale", math.nan), ("value_scale", math.inf), ("maxvisit_init", math.nan), ("maxvisit_init", -math.inf),
])
def test_bad_gumbel_arguments(name, value):
    _raises(name, "gumbel", **{name: value})


def test_bad_gumbel_rescale_option():
    _raises("rescale_with_invalid", "gumbel", rescale_with_invalid=1)


@pytest.mark.parametrize("make, match", [
    (lambda: "parent_and_siblings", "qtransform: expected a QTransform"),
    (lambda: QTransform("by_parent"), "qtransform: expected kind"),
    (lambda: QTransform("parent_and_siblings", epsilon=0.0), "qtransform.epsilon"),
    (lambda: QTransform("parent_and_siblings", epsilon=math.nan), "qtransform.epsilon"),
    (lambda: QTransform("min_max", min_value=1.0, max_value=1.0), "qtransform.max_value"),
    (lambda: QTransform("min_max", min_value=math.inf, max_value=1.0), "qtransform.min_value"),
    (lambda: QTransform("min_max", min_value=0.0, max_value=2.0**65), "qtransform.max_value"),
])
def test_bad_qtransforms_name_qtransform(make, match):
    counting = []

    def model(embedding, action):
        counting.append(1)
        return MODEL(embedding, action)

    _raises(match, "muzero", fn=model, qtransform=make())
    assert not counting


@pytest.mark.parametrize("call, match", [
    (lambda: qtransform_by_parent_and_siblings(-1.0), "epsilon"),
    (lambda: qtransform_by_parent_and_siblings("x"), "epsilon"),
    (lambda: qtransform_by_min_max(0.0, 0.0), "max_value"),
    (lambda: qtransform_by_min_max(2.0, 1.0), "max_value"),
    (lambda: qtransform_by_min_max(math.nan, 1.0), "min_value"),
    (lambda: qtransform_by_min_max(0.0, 2.0**-70), "max_value"),
])
def test_bad_qtransform_arguments(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_dirichlet_alpha_is_not_used_without_noise():
    _run("muzero", dirichlet_alpha=0.0, dirichlet_fraction=0.0)


# --------------------------------------------------------------------------------------------
# recurrent_fn's outputs
# --------------------------------------------------------------------------------------------


def _bad_model(field, value, at_call=2):
    """HashModel whose ``field`` gets ``value`` in row 1 on call ``at_call`` (the first calls are fine)."""
    calls = []

    def model(embedding, action):
        calls.append(1)
        out, nxt = MODEL(embedding, action)
        if len(calls) == at_call:
            t = getattr(out, field).clone()
            t.view(B, -1)[1, 0] = value
            out = out._replace(**{field: t})
        return out, nxt

    return model


def _replacing(**changes):
    """HashModel with some outputs replaced (callables of (out, next_embedding))."""
    def model(embedding, action):
        out, nxt = MODEL(embedding, action)
        if "output" in changes:
            return changes["output"](out, nxt)
        return out._replace(**{k: f(out) for k, f in changes.items()}), nxt
    return model


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
@pytest.mark.parametrize("fn, match", [
    (lambda: _bad_model("reward", math.nan), "reward"),
    (lambda: _bad_model("reward", math.inf), "reward"),
    (lambda: _bad_model("discount", math.nan), "discount"),
    (lambda: _bad_model("value", math.nan), "value"),
    (lambda: _bad_model("prior_logits", math.nan), "prior_logits"),
    (lambda: _bad_model("prior_logits", math.inf), "prior_logits"),
    (_replacing(prior_logits=lambda o: torch.full_like(o.prior_logits, -math.inf)), "prior_logits"),
    (_replacing(prior_logits=lambda o: torch.zeros(B, A + 1)), "prior_logits"),  # A mismatch
    (_replacing(prior_logits=lambda o: torch.zeros(B - 1, A)), "prior_logits"),
    (_replacing(reward=lambda o: o.reward[:, None]), "reward"),
    (_replacing(value=lambda o: torch.zeros(B + 1)), "value"),
    (_replacing(discount=lambda o: torch.ones(B, dtype=torch.bool)), "discount"),
    (_replacing(output=lambda o, n: o), "recurrent_fn"),  # no next embedding
    (_replacing(output=lambda o, n: (o, n, n)), "recurrent_fn"),
    (_replacing(output=lambda o, n: None), "recurrent_fn"),
    (_replacing(output=lambda o, n: (tuple(o)[:3], n)), "recurrent_fn"),
    (_replacing(output=lambda o, n: (o._asdict(), n)), "recurrent_fn"),
    (_replacing(output=lambda o, n: (o, torch.zeros(B, 5))), "recurrent_fn"),  # next embedding shape
    (_replacing(output=lambda o, n: (o, n[:2])), "recurrent_fn"),
    (_replacing(output=lambda o, n: (o, (n,))), "recurrent_fn"),  # next embedding structure
], ids=["nan-reward", "inf-reward", "nan-discount", "nan-value", "nan-logit", "inf-logit", "all-neg-inf-logits",
        "logits-A+1", "logits-B-1", "reward-shape", "value-shape", "discount-bool", "no-next-embedding",
        "three-returns", "returns-None", "output-3-fields", "output-dict", "next-shape", "next-B-1",
        "next-structure"])
def test_bad_recurrent_fn_outputs(algorithm, fn, match):
    if fn.__name__ == "<lambda>":  # a factory of a stateful model
        fn = fn()
    _raises(match, algorithm, fn=fn)


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
def test_next_embedding_none_names_recurrent_fn(algorithm):
    _raises("recurrent_fn", algorithm, fn=_replacing(output=lambda o, n: (o, None)))


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
def test_root_embedding_none_names_embedding(algorithm):
    with pytest.raises(TypeError, match="embedding"):
        POLICIES[algorithm](Root(LOGITS, VALUE, None), MODEL, 4)


def test_errors_of_the_model_itself_propagate():
    def broken(embedding, action):
        raise KeyError("model failed")

    with pytest.raises(KeyError, match="model failed"):
        _run("muzero", fn=broken)


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
def test_a_failed_search_does_not_break_later_searches_of_that_shape(algorithm):
    """A failed search's tree is recycled between select and expand_and_backup; the next search of
    the same shape must start cleanly from it."""
    with pytest.raises(ValueError, match="reward"):
        _run(algorithm, fn=_bad_model("reward", math.nan), num_simulations=6)
    gc.collect()
    out = _run(algorithm, num_simulations=6)  # same shape, a good model
    assert (out.search_tree.summary().visit_counts.sum(dim=1) == 6).all()
    # The same after a model that raises.
    with pytest.raises(KeyError):
        _run(algorithm, fn=lambda e, a: {}["x"], num_simulations=6)
    gc.collect()
    _run(algorithm, num_simulations=6)


def test_set_roots_drops_a_pending_selection():
    tree = Tree(B, A, 5)
    tree.set_roots(LOGITS, VALUE)
    tree.begin_muzero(4)
    tree.select()
    tree.set_roots(LOGITS, VALUE)
    tree.begin_muzero(4)


# --------------------------------------------------------------------------------------------
# The low-level loop: errors leave the trees unchanged and the search can go on
# --------------------------------------------------------------------------------------------


def _begin(num_simulations=6, invalid=None, **kwargs):
    tree = Tree(B, A, 1 + num_simulations)
    tree.set_roots(LOGITS, VALUE, invalid)
    tree.begin_muzero(num_simulations, dirichlet_fraction=0.0, **kwargs)
    return tree


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def _finished_search():
    """A search of 6 simulations run to the end without any error."""
    tree = _begin()
    embeddings = _embeddings(7)
    for _ in range(6):
        _step(tree, embeddings)
    return tree


def _assert_same_search(tree, clean):
    """Same root statistics and the same decision as an undisturbed search."""
    assert _same(tree.summary(), clean.summary())
    assert all(torch.equal(x, y) for x, y in zip(tree.decide(0.0), clean.decide(0.0)))


def _step(tree, embeddings, bad=None):
    """One simulation; ``bad(out, next)`` may spoil the output first (the error is expected then,
    and the good output is passed afterwards)."""
    batch = torch.arange(B)
    sel = tree.select()
    out, nxt = MODEL(embeddings[sel.parent, batch], sel.action)
    if bad is not None:
        before, nodes = tree.summary(), tree.num_nodes.copy()
        with pytest.raises((ValueError, TypeError)) as info:
            tree.expand_and_backup(bad(out))
        assert _same(before, tree.summary()) and (tree.num_nodes == nodes).all()
        message = str(info.value)
    else:
        message = None
    embeddings[sel.node, batch] = nxt
    tree.expand_and_backup(out)
    return message


def _embeddings(capacity):
    embeddings = torch.zeros(capacity, B, EMBEDDING.shape[1])
    embeddings[0] = EMBEDDING
    return embeddings


@pytest.mark.parametrize("bad, match", [
    (lambda o: o._replace(reward=_with_row(o.reward, 2, None, math.nan)), "reward"),
    (lambda o: o._replace(discount=_with_row(o.discount, 0, None, math.nan)), "discount"),
    (lambda o: o._replace(value=_with_row(o.value, 1, None, math.inf)), "value"),
    (lambda o: o._replace(prior_logits=_with_row(o.prior_logits, 2, 3, math.inf)), "prior_logits"),
    (lambda o: o._replace(prior_logits=o.prior_logits[:, :2]), "prior_logits"),
    (lambda o: o._replace(value=o.value[:2]), "value"),
    (lambda o: tuple(o)[:3], "recurrent_fn"),
], ids=["nan-reward", "nan-discount", "inf-value", "inf-logit", "logits-shape", "value-shape", "three-fields"])
def test_failed_expand_leaves_the_trees_unchanged_and_the_search_continues(bad, match):
    clean = _finished_search()
    tree = _begin()
    embeddings = _embeddings(7)
    for k in range(6):
        message = _step(tree, embeddings, bad if k in (0, 3) else None)
        assert message is None or match in message
    _assert_same_search(tree, clean)


def test_call_order_errors_leave_the_search_intact():
    clean = _finished_search()

    tree = Tree(B, A, 7)
    with pytest.raises(ValueError, match="set_roots"):
        tree.begin_muzero(6)  # no roots yet
    tree.set_roots(LOGITS, VALUE)
    with pytest.raises(RuntimeError, match="select"):
        tree.select()  # no search begun
    with pytest.raises(RuntimeError, match="decide"):
        tree.decide(0.0)
    tree.begin_muzero(6, dirichlet_fraction=0.0)
    out, _ = MODEL(EMBEDDING, torch.zeros(B, dtype=torch.int64))
    with pytest.raises(RuntimeError, match="select"):
        tree.expand_and_backup(out)  # expand without select
    embeddings = _embeddings(7)
    for k in range(6):
        batch = torch.arange(B)
        sel = tree.select()
        if k == 2:
            before = tree.summary()
            with pytest.raises(RuntimeError, match="select"):
                tree.select()  # twice without expand
            with pytest.raises(RuntimeError, match="expand_and_backup"):
                tree.decide(0.0)
            with pytest.raises(RuntimeError, match="expand_and_backup"):
                tree.subtree(np.zeros(B, dtype=np.int64))
            with pytest.raises(RuntimeError, match="expand_and_backup"):
                tree.begin_muzero(2)
            assert _same(before, tree.summary())
        out, nxt = MODEL(embeddings[sel.parent, batch], sel.action)
        embeddings[sel.node, batch] = nxt
        tree.expand_and_backup(out)
    with pytest.raises(RuntimeError, match="simulations"):
        tree.select()  # all simulations done
    with pytest.raises(RuntimeError, match="select"):
        tree.expand_and_backup(out)
    _assert_same_search(tree, clean)


def test_failed_set_roots_and_begin_leave_a_finished_search_unchanged():
    tree = _finished_search()
    before, decision = tree.summary(), tree.decide(0.0)
    for args, match in [((_with_row(LOGITS, 2, 0, math.nan), VALUE), "prior_logits"),
                        ((LOGITS, _with_row(VALUE, 2, None, math.nan)), "value"),
                        ((LOGITS, VALUE, torch.tensor([[False] * A, [False] * A, [True] * A])), "invalid_actions"),
                        ((LOGITS[:2], VALUE[:2]), "prior_logits")]:
        with pytest.raises((ValueError, TypeError), match=match):
            tree.set_roots(*args)
        assert _same(before, tree.summary())
        assert all(torch.equal(x, y) for x, y in zip(decision, tree.decide(0.0)))
    for kwargs, match in [(dict(num_simulations=7), "num_simulations"), (dict(num_simulations=0), "num_simulations"),
                          (dict(num_simulations=2, pb_c_base=0.0), "pb_c_base"),
                          (dict(num_simulations=2, max_depth=0), "max_depth")]:
        with pytest.raises(ValueError, match=match):
            tree.begin_muzero(**kwargs)
        assert _same(before, tree.summary())
        assert all(torch.equal(x, y) for x, y in zip(decision, tree.decide(0.0)))


def test_bad_subtree_and_keep_arguments():
    invalid = torch.zeros(B, A, dtype=torch.bool)
    invalid[0, 3] = True  # root 0 never expands action 3
    tree = _begin(num_simulations=4, invalid=invalid)
    embeddings = _embeddings(5)
    for _ in range(4):
        _step(tree, embeddings)
    before = tree.summary()
    for actions, match in [(np.array([0, 1, A]), "actions"), (np.array([0, -1, 0]), "actions"),
                           (np.array([0, 1]), "actions"), (np.array([0.0, 1.0, 2.0]), "actions")]:
        with pytest.raises((ValueError, TypeError), match=match):
            tree.subtree(actions)
        assert _same(before, tree.summary())
    actions = np.array([3, int(before.visit_counts[1].argmax()), int(before.visit_counts[2].argmax())])
    _, kept = tree.subtree(actions)
    assert kept.tolist() == [False, True, True]
    nodes = tree.num_nodes.copy()
    with pytest.raises(ValueError, match="keep"):
        tree.set_roots(LOGITS, VALUE, keep=np.ones(B, dtype=bool))  # root 0 kept nothing
    with pytest.raises(ValueError, match="keep"):
        tree.set_roots(LOGITS, VALUE, keep=np.ones(B + 1, dtype=bool))
    assert (tree.num_nodes == nodes).all()
    tree.set_roots(LOGITS, VALUE, keep=kept)
    assert tree.num_nodes.tolist() == [1] + nodes.tolist()[1:]


@pytest.mark.parametrize("args, match", [((0, A, 5), "batch_size"), ((B, 0, 5), "num_actions"),
                                         ((B, A, 0), "capacity"), ((B, A, 5.0), "capacity"),
                                         ((True, A, 5), "batch_size")])
def test_bad_tree_shapes(args, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Tree(*args)
