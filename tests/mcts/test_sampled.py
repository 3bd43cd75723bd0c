"""Sampled MuZero's search (sampled_muzero_policy): the C++-backed policy against the pure-Python
reference (reference_sampled.py) bit for bit, and its contract: shapes, seeding, threads, the
user's generator, merged duplicates, refused inputs, reuse, and a search that finds good actions."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, Independent, Normal, OneHotCategorical, Uniform

from pymbrl.mcts import (QTransform, Root, SampledPolicyOutput, SampledRecurrentOutput, SampledRoot,
                         gumbel_muzero_policy, muzero_policy, sampled_muzero_policy)

from .hash_model import HashModel
from .reference_sampled import reference_sampled_batch, row_edges, spec_draws, spec_seeds
from .sampled_model import SampledHashModel

# (kind, size, batch, simulations, samples, options)
CASES = [
    pytest.param("normal", 1, 1, 1, 1, {}, id="normal1-B1-S1-K1"),
    pytest.param("normal", 1, 7, 40, 8, {}, id="normal1-B7-S40-K8"),
    pytest.param("normal", 3, 7, 30, 5, dict(beta=True), id="normal3-B7-S30-K5-beta"),
    pytest.param("tanh", 2, 7, 40, 6, dict(max_depth=3), id="tanh2-B7-S40-K6-depth3"),
    pytest.param("tanh", 2, 5, 30, 4, dict(beta=True, discount=-1.0), id="tanh2-B5-S30-K4-beta-twoplayer"),
    pytest.param("categorical", 5, 7, 50, 5, {}, id="categorical5-B7-S50-K5"),
    pytest.param("categorical", 8, 7, 50, 3, dict(beta=True, max_depth=2), id="categorical8-B7-S50-K3-beta-depth2"),
    pytest.param("onehot", 4, 7, 40, 4, dict(reward_scale=100.0), id="onehot4-B7-S40-K4-reward100"),
    pytest.param("normal", 2, 33, 20, 10, dict(beta=True, max_depth=4), id="normal2-B33-S20-K10-beta-depth4"),
]


def _beta(model, root_policy, batch_size):
    """A sampling policy unlike pi: wider Normals, or flatter categoricals."""
    if model.kind in ("categorical", "onehot"):
        logits = root_policy.logits / 3.0
        return (Categorical if model.kind == "categorical" else OneHotCategorical)(logits=logits)
    params = torch.cat([torch.zeros(batch_size, model.size), torch.full((batch_size, model.size), math.log(1.5))], 1)
    return model.distribution(params)


def _setup(kind, size, batch_size, seed, options):
    model = SampledHashModel(kind, size, seed, discount=options.get("discount"),
                             reward_scale=options.get("reward_scale", 1.0))
    policy, value, embedding = model.roots(batch_size, seed)
    beta = _beta(model, policy, batch_size) if options.get("beta") else None
    return model, policy, value, embedding, beta


def _search(model, policy, value, embedding, num_simulations, num_samples, **kwargs) -> SampledPolicyOutput:
    return sampled_muzero_policy(SampledRoot(policy, value, embedding), model, num_simulations,
                                 num_samples=num_samples, **{"temperature": 0.0, **kwargs})


def _assert_same(a: SampledPolicyOutput, b: SampledPolicyOutput) -> None:
    for name in ("action", "action_index", "sampled_actions", "action_weights"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    sa, sb = a.search_tree.summary(), b.search_tree.summary()
    for name in ("visit_counts", "value", "qvalues"):
        assert torch.equal(getattr(sa, name), getattr(sb, name)), name


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind, size, batch_size, num_simulations, num_samples, options", CASES)
def test_matches_reference(seed, kind, size, batch_size, num_simulations, num_samples, options):
    model, policy, value, embedding, beta = _setup(kind, size, batch_size, seed, options)
    max_depth = options.get("max_depth")
    ref = reference_sampled_batch(model, policy, value, embedding, num_simulations, num_samples, seed,
                                  root_sampling_policy=beta, max_depth=max_depth)
    out = _search(model, policy, value, embedding, num_simulations, num_samples, root_sampling_policy=beta,
                  max_depth=max_depth, seed=seed)
    summary = out.search_tree.summary()
    assert torch.equal(summary.visit_counts, torch.tensor([r.visit_counts for r in ref]))
    assert torch.equal(out.action_index, torch.tensor([r.action_index for r in ref]))
    assert torch.equal(out.action, torch.stack([r.action for r in ref]))
    assert torch.equal(out.sampled_actions, torch.stack([torch.stack(r.edges.actions) for r in ref]))
    assert torch.equal(out.action_weights, torch.tensor([r.action_weights for r in ref], dtype=torch.float64).float())
    assert torch.equal(summary.qvalues, torch.tensor([r.qvalues for r in ref], dtype=torch.float64).float())
    assert torch.equal(summary.value, torch.tensor([r.value for r in ref], dtype=torch.float64).float())
    if kind in ("categorical", "onehot") and num_simulations > 1:
        # The case exercises merging: some node of some tree has fewer distinct draws than K.
        assert any(0 in node.embedding[1].counts for r in ref for node in r.tree.nodes)


def test_outputs_have_the_documented_shapes_and_dtypes():
    model, policy, value, embedding, _ = _setup("normal", 3, 6, 0, {})
    out = _search(model, policy, value, embedding, 10, 7, seed=0, temperature=1.0)
    assert out.action.shape == (6, 3) and out.action.dtype == torch.float32
    assert out.action_index.shape == (6,) and out.action_index.dtype == torch.int64
    assert out.sampled_actions.shape == (6, 7, 3) and out.sampled_actions.dtype == torch.float32
    assert out.action_weights.shape == (6, 7) and out.action_weights.dtype == torch.float32
    assert torch.equal(out.action, out.sampled_actions[torch.arange(6), out.action_index])
    assert torch.allclose(out.action_weights.sum(dim=1), torch.ones(6))
    assert (out.search_tree.summary().visit_counts.sum(dim=1) == 10).all()
    model, policy, value, embedding, _ = _setup("categorical", 5, 6, 0, {})
    out = _search(model, policy, value, embedding, 10, 5, seed=0)
    assert out.action.shape == (6,) and out.action.dtype == torch.int64
    assert out.sampled_actions.shape == (6, 5)


def test_same_seed_same_search_other_seed_other_samples():
    model, policy, value, embedding, _ = _setup("tanh", 2, 8, 3, {})
    a = _search(model, policy, value, embedding, 30, 6, seed=7, temperature=1.0)
    b = _search(model, policy, value, embedding, 30, 6, seed=7, temperature=1.0)
    c = _search(model, policy, value, embedding, 30, 6, seed=8, temperature=1.0)
    _assert_same(a, b)
    assert not torch.equal(a.sampled_actions, c.sampled_actions)


def test_thread_count_does_not_change_results():
    model, policy, value, embedding, beta = _setup("normal", 2, 300, 5, dict(beta=True))
    outs = [_search(model, policy, value, embedding, 12, 5, seed=2, temperature=1.0, root_sampling_policy=beta,
                    num_threads=n) for n in (1, 2, 4)]
    assert outs[2].search_tree.tree.num_threads == 4
    for out in outs[1:]:
        _assert_same(outs[0], out)


def test_the_global_generator_is_left_as_it_was():
    model, policy, value, embedding, _ = _setup("normal", 1, 4, 0, {})
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    _search(model, policy, value, embedding, 20, 5, seed=1, temperature=1.0)
    assert torch.equal(torch.rand(5), expected)
    # ... and the search does not depend on it.
    torch.manual_seed(0)
    a = _search(model, policy, value, embedding, 20, 5, seed=1)
    torch.manual_seed(99)
    _assert_same(a, _search(model, policy, value, embedding, 20, 5, seed=1))


def test_identical_draws_are_merged_into_one_edge_with_their_count():
    # A categorical policy almost sure of action 2: most of the K draws repeat it.
    batch_size, n = 50, 4
    probs = torch.tensor([0.02, 0.02, 0.94, 0.02]).expand(batch_size, n)
    model = SampledHashModel("categorical", n)
    _, value, embedding = model.roots(batch_size)
    out = sampled_muzero_policy(SampledRoot(Categorical(probs=probs), value, embedding), model, 5, num_samples=4,
                                seed=3)
    counts = out.search_tree.embeddings.rows[2][:batch_size]  # the roots' edge counts
    assert (counts.sum(dim=1) == 4).all()
    distinct = (counts > 0).sum(dim=1)
    assert (distinct < 4).any()
    for b in range(batch_size):
        m = int(distinct[b])
        edges = out.sampled_actions[b]
        assert len(set(edges[:m].tolist())) == m  # the sampled edges are distinct
        assert (edges[m:] == edges[0]).all()  # spare edges repeat edge 0
        assert (counts[b, m:] == 0).all() and (out.action_weights[b, m:] == 0).all()
        assert int(out.action_index[b]) < m
    # Action 2, when drawn, is the first draw in most rows and holds the largest count.
    assert (out.sampled_actions[:, 0] == 2).float().mean() > 0.8


class _GridNormal(Independent):
    """A 2-d Normal whose draws are rounded to a grid of 0.5 (-0.0 included): many repeat."""

    def sample(self, sample_shape=torch.Size()):
        return (super().sample(sample_shape) * 2).round() / 2


@pytest.mark.parametrize("kind, num_samples", [("categorical", 5000), ("grid", 3000)])
def test_many_draws_are_merged_as_the_spec_says_without_comparing_every_pair(kind, num_samples):
    # [B, K, K, event] above 2**24 elements: duplicates are found by sorting (memory B x K x event).
    def policy(rows):
        if kind == "categorical":
            return Categorical(logits=torch.zeros(rows, 6000))
        return _GridNormal(Normal(torch.zeros(rows, 2), torch.ones(rows, 2)), 1)

    def recurrent_fn(embedding, action):
        rows = embedding.shape[0]
        zeros = torch.zeros(rows)
        return SampledRecurrentOutput(zeros, torch.ones(rows), policy(rows), zeros), embedding

    root = SampledRoot(policy(1), torch.zeros(1), torch.zeros(1, 3))
    out = sampled_muzero_policy(root, recurrent_fn, 1, num_samples=num_samples, seed=5)
    raw, _, _ = spec_draws(policy(1), num_samples, spec_seeds(5, 1)[0])
    expected = row_edges(raw, None, None, 0)
    counts = out.search_tree.embeddings.rows[2][0]
    assert counts.tolist() == expected.counts and 1 < int((counts > 0).sum()) < num_samples
    assert torch.equal(out.sampled_actions[0], torch.stack(expected.actions))


def test_spare_edges_are_never_chosen_below_the_root():
    # Interior policies of two likely actions out of 8 with K = 8: most edges are spare.
    model = SampledHashModel("categorical", 8, 1)
    policy, value, embedding = model.roots(16, 1)
    out = _search(model, policy, value, embedding, 200, 8, seed=0, max_depth=6)
    assert (out.search_tree.summary().visit_counts.sum(dim=1) == 200).all()  # and no ValueError on the way


def test_more_samples_than_categories_is_refused():
    model, policy, value, embedding, _ = _setup("categorical", 5, 3, 0, {})
    with pytest.raises(ValueError, match=r"num_samples: expected at most 5 \(the categories of root.policy\), got 6"):
        _search(model, policy, value, embedding, 5, 6, seed=0)

    def fewer(embedding, action):  # the interior policy has 3 categories only
        out, nxt = model(embedding, action)
        return out._replace(policy=Categorical(logits=torch.zeros(embedding.shape[0], 3))), nxt

    with pytest.raises(ValueError, match=r"num_samples: expected at most 3 \(the categories of recurrent_fn output"):
        sampled_muzero_policy(SampledRoot(policy, value, embedding), fewer, 5, num_samples=4, seed=0)
    model, policy, value, embedding, _ = _setup("onehot", 4, 3, 0, {})
    with pytest.raises(ValueError, match="num_samples: expected at most 4"):
        _search(model, policy, value, embedding, 5, 5, seed=0)


def test_non_finite_actions_and_log_probs_are_refused():
    loc = torch.zeros(6, 1)
    loc[5] = math.inf
    policy = Independent(Normal(loc, torch.ones(6, 1), validate_args=False), 1, validate_args=False)
    model = SampledHashModel("normal", 1)
    _, value, embedding = model.roots(6)
    with pytest.raises(ValueError, match="root.policy: sampled action 0 of root 5 is not finite"):
        sampled_muzero_policy(SampledRoot(policy, value, embedding), model, 5, num_samples=3, seed=0)

    def nan_policy(embedding, action):
        out, nxt = model(embedding, action)
        return out._replace(policy=Independent(Normal(torch.full((6, 1), math.nan), torch.ones(6, 1),
                                                      validate_args=False), 1, validate_args=False)), nxt

    good = model.policy(6)
    with pytest.raises(ValueError, match="recurrent_fn output policy: sampled action 0 of row 0 is not finite"):
        sampled_muzero_policy(SampledRoot(good, value, embedding), nan_policy, 5, num_samples=3, seed=0)
    # beta samples where pi has no density: log pi = -inf.
    pi = Independent(Uniform(torch.zeros(6, 1), torch.ones(6, 1), validate_args=False), 1, validate_args=False)
    wide = Independent(Normal(torch.zeros(6, 1), torch.full((6, 1), 5.0)), 1)
    with pytest.raises(ValueError, match="root.policy: the log-probability of sampled action . of root . is not finite"):
        sampled_muzero_policy(SampledRoot(pi, value, embedding), model, 5, num_samples=8, seed=0,
                              root_sampling_policy=wide)
    # ... and where pi validates its arguments, torch's refusal names it too.
    pi = Independent(Uniform(torch.zeros(6, 1), torch.ones(6, 1)), 1)
    with pytest.raises(ValueError, match="root.policy: Expected value argument"):
        sampled_muzero_policy(SampledRoot(pi, value, embedding), model, 5, num_samples=8, seed=0,
                              root_sampling_policy=wide)


def test_bad_arguments_are_refused_naming_them():
    model, policy, value, embedding, _ = _setup("normal", 2, 4, 0, {})
    root = SampledRoot(policy, value, embedding)
    with pytest.raises(TypeError, match="root.policy: expected a torch.distributions.Distribution"):
        sampled_muzero_policy(SampledRoot(torch.zeros(4, 2), value, embedding), model, 5)
    with pytest.raises(ValueError, match=r"root.policy: expected batch_shape \[3\]"):
        sampled_muzero_policy(SampledRoot(policy, value[:3], embedding[:3]), model, 5)
    with pytest.raises(ValueError, match=r"root_sampling_policy: expected event_shape \[2\]"):
        sampled_muzero_policy(root, model, 5, root_sampling_policy=Independent(Normal(torch.zeros(4, 3), 1.0), 1))
    with pytest.raises(ValueError, match="pb_c_init"):
        sampled_muzero_policy(root, model, 5, pb_c_init=-0.5)
    with pytest.raises(ValueError, match="num_samples"):
        sampled_muzero_policy(root, model, 5, num_samples=0)

    def wrong_event(embedding, action):
        out, nxt = model(embedding, action)
        return out._replace(policy=Independent(Normal(torch.zeros(4, 3), 1.0), 1)), nxt

    with pytest.raises(ValueError, match=r"recurrent_fn output policy: expected event_shape \[2\]"):
        sampled_muzero_policy(root, wrong_event, 5)
    with pytest.raises(ValueError, match="recurrent_fn output value"):
        sampled_muzero_policy(root, lambda e, a: (model(e, a)[0]._replace(value=torch.full((4,), math.nan)), e), 5)


def test_reuse_keeps_the_childs_subtree_and_its_sampled_actions():
    model, policy, value, embedding, _ = _setup("tanh", 2, 6, 4, {})
    ref = reference_sampled_batch(model, policy, value, embedding, 40, 5, 0)
    first = _search(model, policy, value, embedding, 40, 5, seed=0, capacity=100)
    kept = first.search_tree.subtree(first.action_index)
    assert kept.kept.all()
    policy2, value2, embedding2 = model.roots(6, 9)
    second = _search(model, policy2, value2, embedding2, 10, 5, seed=1, search_tree=kept)
    for b in range(6):
        tree = ref[b].tree
        child = tree.nodes[tree.nodes[0].children[ref[b].action_index]]
        assert torch.equal(second.sampled_actions[b], torch.stack(child.embedding[1].actions))
        assert int(second.search_tree.summary().visit_counts[b].sum()) == child.visits - 1 + 10
    # A refused reuse leaves the kept tree as it was; the same call with the right K goes on.
    again = second.search_tree.subtree(second.action_index)
    before = again.summary()
    with pytest.raises(ValueError, match="search_tree: built for 6 roots x 5 sampled actions"):
        _search(model, policy2, value2, embedding2, 5, 4, seed=1, search_tree=again)
    after = again.summary()
    assert torch.equal(before.visit_counts, after.visit_counts) and torch.equal(before.qvalues, after.qvalues)
    _search(model, policy2, value2, embedding2, 5, 5, seed=1, search_tree=again)


@pytest.mark.parametrize("qtransform", [QTransform("bogus"), QTransform("min_max", min_value=1.0, max_value=0.0),
                                        "parent_and_siblings"])
def test_a_bad_qtransform_leaves_a_reused_tree_unchanged(qtransform):
    """qtransform was checked only once the kept trees had taken the new roots: roots that kept
    nothing had already been given the refused call's root."""
    model, policy, value, embedding, _ = _setup("normal", 2, 4, 5, {})

    def reused():
        first = _search(model, policy, value, embedding, 3, 6, seed=0, capacity=30)
        actions = first.action_index.clone()
        actions[0] = first.search_tree.summary().visit_counts[0].argmin()  # 3 simulations, 6 edges: unexpanded
        return first.search_tree.subtree(actions)

    kept = reused()
    assert not kept.kept[0]
    before, nodes = kept.summary(), kept.tree.num_nodes.copy()
    policy2, value2, embedding2 = model.roots(4, 9)
    with pytest.raises((ValueError, TypeError), match="^qtransform"):
        _search(model, policy2, value2, embedding2, 5, 6, seed=1, search_tree=kept, qtransform=qtransform)
    after = kept.summary()
    assert (kept.tree.num_nodes == nodes).all() and all(torch.equal(x, y) for x, y in zip(before, after))
    _assert_same(_search(model, policy2, value2, embedding2, 5, 6, seed=1, search_tree=kept),
                 _search(model, policy2, value2, embedding2, 5, 6, seed=1, search_tree=reused()))


@pytest.mark.parametrize("num_simulations", [2**30, 2**40, 2**70])
def test_a_huge_num_simulations_is_refused_naming_it(num_simulations):
    """The seeds of all the simulations were drawn before anything was checked: 2**70 raised
    numpy's "Maximum allowed dimension exceeded", 2**40 asked for 8 TiB of seeds."""
    model, policy, value, embedding, _ = _setup("normal", 2, 3, 0, {})
    with pytest.raises(ValueError, match="^num_simulations"):
        _search(model, policy, value, embedding, num_simulations, 4, seed=0)
    first = _search(model, policy, value, embedding, 4, 4, seed=0, capacity=20)
    kept = first.search_tree.subtree(first.action_index)
    with pytest.raises(ValueError, match="^num_simulations: expected at most [0-9]+ new nodes"):
        _search(model, policy, value, embedding, num_simulations, 4, seed=0, search_tree=kept)


def test_sampled_actions_of_another_dtype_are_refused():
    """A float policy where the search's actions are integers (or back) has the same event shape:
    its samples were cast into the tree's action pool, silently truncated (a Normal after a
    Categorical root searched actions 0, 0, -1)."""
    policy, value, embedding = Categorical(logits=torch.zeros(2, 5)), torch.zeros(2), torch.zeros(2, 2)

    def model(e, a, interior=Categorical):
        n = len(a)
        policy = Categorical(logits=torch.zeros(n, 5)) if interior is Categorical else Normal(torch.zeros(n), 1.0)
        return SampledRecurrentOutput(torch.zeros(n), torch.ones(n), policy, torch.zeros(n)), e

    with pytest.raises(ValueError, match=r"^recurrent_fn output policy: expected sampled actions of dtype torch.int64"):
        sampled_muzero_policy(SampledRoot(policy, value, embedding), lambda e, a: model(e, a, Normal), 3,
                              num_samples=3)
    first = sampled_muzero_policy(SampledRoot(policy, value, embedding), model, 2, num_samples=3, capacity=10, seed=0)
    kept = first.search_tree.subtree(first.action_index)
    before = kept.summary()
    with pytest.raises(ValueError, match=r"^root.policy: .*dtype torch.int64 \(the search tree's\), got \[3\] and "
                                         r"torch.float32"):
        sampled_muzero_policy(SampledRoot(Normal(torch.zeros(2), 1.0), value, embedding), model, 2, num_samples=3,
                              search_tree=kept)
    assert all(torch.equal(x, y) for x, y in zip(before, kept.summary()))
    sampled_muzero_policy(SampledRoot(policy, value, embedding), model, 2, num_samples=3, search_tree=kept)


def test_more_samples_than_a_tree_has_edges_are_refused_before_drawing_them():
    """num_samples beyond the trees' 2**24 edges was refused by the tree only after K draws per
    root had been made and compared pairwise ([B, K, K]: 2**48 bytes at K = 2**24)."""
    model, policy, value, embedding, _ = _setup("normal", 2, 3, 0, {})
    with pytest.raises(ValueError, match=r"^num_samples: expected at most 16777216"):
        _search(model, policy, value, embedding, 4, 2**24 + 1, seed=0)


def test_a_muzero_search_tree_is_refused():
    model, policy, value, embedding, _ = _setup("categorical", 5, 3, 0, {})
    muzero = muzero_policy(Root(torch.zeros(3, 5), value, embedding), HashModel(5), 4, capacity=10)
    other = muzero.search_tree.subtree(muzero.action)
    with pytest.raises(ValueError, match="search_tree: expected the search tree of a sampled_muzero_policy search"):
        _search(model, policy, value, embedding, 4, 5, seed=0, search_tree=other)


@pytest.mark.parametrize("policy", [muzero_policy, gumbel_muzero_policy])
def test_a_sampled_search_tree_is_refused_by_muzero(policy):
    """MuZero took a Sampled MuZero tree: a root embedding of the pool's structure (embedding,
    sampled actions, counts) was even searched, the edges' sampled actions read as action ids."""
    model, sampled, value, embedding, _ = _setup("categorical", 5, 3, 0, {})
    first = _search(model, sampled, value, embedding, 4, 5, seed=0, capacity=10)
    kept = first.search_tree.subtree(first.action_index)
    pool_like = (embedding, torch.zeros(3, 5, dtype=torch.int64), torch.zeros(3, 5, dtype=torch.int64))
    for root_embedding in (embedding, pool_like):
        with pytest.raises(ValueError, match="^search_tree: expected the search tree of a muzero_policy"):
            policy(Root(torch.zeros(3, 5), value, root_embedding), HashModel(5), 2, search_tree=kept)


def test_the_search_finds_a_good_continuous_action():
    """A one-step bandit with reward -(a - 1)^2 and a prior N(0, 1): the most visited sampled action
    is the best of the K draws in almost every row, near the optimum (the prior's mean is 1 away, a
    random draw 1.2 on average), and the visit-weighted action is far closer than the prior's.

    With beta = pi the prior over the draws is uniform (1/K) and an unvisited edge's Q counts as
    the tree's minimum, so pUCT tries a new draw once c sqrt(N) / K outweighs the best visited
    one's normalised Q of 1: K = 8 draws are all tried within 200 simulations."""
    batch_size = 64

    def bandit(embedding, action):
        zeros = torch.zeros(embedding.shape[0])
        prior = Independent(Normal(torch.zeros(embedding.shape[0], 1), 1.0), 1)
        return SampledRecurrentOutput(-(action[:, 0] - 1.0) ** 2, zeros, prior, zeros), embedding

    prior = Independent(Normal(torch.zeros(batch_size, 1), 1.0), 1)
    out = sampled_muzero_policy(SampledRoot(prior, torch.zeros(batch_size), torch.zeros(batch_size, 1)), bandit, 200,
                                num_samples=8, seed=0, temperature=0.0)
    error = (out.action[:, 0] - 1.0).abs()
    best = (out.sampled_actions[:, :, 0] - 1.0).abs().min(dim=1).values
    assert float((error <= best).float().mean()) > 0.9
    assert float(error.median()) < 0.25
    weighted = (out.action_weights * out.sampled_actions[:, :, 0]).sum(dim=1)
    assert float((weighted - 1.0).abs().median()) < 0.6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_policies_on_cuda_are_seeded_and_leave_the_cuda_generator_alone():
    model, policy, value, embedding, _ = _setup("normal", 2, 8, 0, {})
    cuda = torch.device("cuda")
    root = SampledRoot(Independent(Normal(policy.base_dist.loc.to(cuda), policy.base_dist.scale.to(cuda)), 1),
                       value.to(cuda), embedding.to(cuda))

    def on_cuda(embedding, action):
        out, nxt = model(embedding.cpu(), action.cpu())
        loc, scale = out.policy.base_dist.loc.to(cuda), out.policy.base_dist.scale.to(cuda)
        return SampledRecurrentOutput(out.reward.to(cuda), out.discount.to(cuda), Independent(Normal(loc, scale), 1),
                                      out.value.to(cuda)), nxt.to(cuda)

    torch.cuda.manual_seed(5)
    expected = torch.rand(3, device=cuda)
    torch.cuda.manual_seed(5)
    a = sampled_muzero_policy(root, on_cuda, 20, num_samples=6, seed=3)
    assert torch.equal(torch.rand(3, device=cuda), expected)
    b = sampled_muzero_policy(root, on_cuda, 20, num_samples=6, seed=3)
    assert a.sampled_actions.device.type == "cuda" and a.action.device.type == "cuda"
    _assert_same(a, b)
