"""muzero_policy and gumbel_muzero_policy: invalid actions, noise and seeds, temperature,
Gumbel's choice, huge rewards, and the input types the API accepts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pymbrl.mcts import (
    PolicyOutput,
    RecurrentOutput,
    Root,
    gumbel_muzero_policy,
    muzero_policy,
)
from pymbrl.mcts.reference import muzero_action_probabilities

from .fast_reference import reference_batch
from .hash_model import HashModel
from .helpers import (
    assert_matches_reference,
    assert_same_output,
    hash_roots,
    random_invalid,
    search,
)

NOISY = {"muzero": dict(dirichlet_fraction=0.25, temperature=1.0), "gumbel": dict(gumbel_scale=1.0)}


def _summary(out: PolicyOutput):
    return out.search_tree.summary()


# --------------------------------------------------------------------------------------------
# Invalid actions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_invalid_actions_are_never_visited_or_chosen(algorithm, seed):
    """With noise on, random masks (every 4th root with a single valid action), and the invalid
    actions given the largest logits so that a search ignoring the mask would go there first."""
    model, logits, value, embedding = hash_roots(6, 32, seed, neg_inf_prob=0.2)
    invalid = random_invalid(logits, seed, prob=0.4)
    logits = torch.where(invalid, torch.tensor(20.0), logits)
    for kwargs in (NOISY[algorithm], dict(NOISY[algorithm], max_depth=1)):
        out = search(algorithm, model, logits, value, embedding, 24, invalid_actions=invalid, seed=seed, **kwargs)
        summary = _summary(out)
        assert not invalid[torch.arange(32), out.action].any()
        assert (summary.visit_counts[invalid] == 0).all()
        assert (out.action_weights[invalid] == 0).all() and (summary.visit_probs[invalid] == 0).all()
        assert (summary.qvalues[invalid] == 0).all()
        assert (summary.visit_counts.sum(dim=1) == 24).all()
        assert torch.allclose(out.action_weights.sum(dim=1), torch.ones(32))
        single = (~invalid).sum(dim=1) == 1
        assert single.sum() >= 8
        assert (summary.visit_counts[single].max(dim=1).values == 24).all()


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
def test_invalid_actions_with_small_considered_set_and_sampling(algorithm):
    """Temperature sampling (MuZero) and a considered set smaller than the valid set (Gumbel)
    still never pick an invalid action, over many seeds."""
    model, logits, value, embedding = hash_roots(8, 16, 5)
    invalid = random_invalid(logits, 5, prob=0.5)
    for seed in range(10):
        if algorithm == "muzero":
            out = search(algorithm, model, logits, value, embedding, 6, invalid_actions=invalid, seed=seed,
                         dirichlet_fraction=0.5, dirichlet_alpha=0.1, temperature=5.0)
        else:
            out = search(algorithm, model, logits, value, embedding, 6, invalid_actions=invalid, seed=seed,
                         gumbel_scale=10.0, max_num_considered_actions=2)
        assert not invalid[torch.arange(16), out.action].any()
        assert (_summary(out).visit_counts[invalid] == 0).all()


# --------------------------------------------------------------------------------------------
# Gumbel's choice
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_actions", [2, 5, 16])
def test_gumbel_with_as_many_simulations_as_actions_picks_the_best_q(num_actions):
    """gumbel_scale 0, uniform prior logits, num_simulations = A: every action is visited once,
    completed Q = Q, and the final score is sigma(Q), increasing in Q: argmax Q."""
    for seed in range(3):
        model, _, value, embedding = hash_roots(num_actions, 16, seed)
        logits = torch.zeros(16, num_actions)
        out = gumbel_muzero_policy(Root(logits, value, embedding), model, num_actions, gumbel_scale=0.0)
        summary = _summary(out)
        assert (summary.visit_counts == 1).all()
        q = summary.qvalues
        best = q.max(dim=1, keepdim=True).values
        first_best = torch.argmax((q == best).int(), dim=1)  # ties -> lowest index
        assert torch.equal(out.action, first_best)
        # The improved policy orders the actions like Q.
        order_q = torch.argsort(q, dim=1, stable=True)
        order_w = torch.argsort(out.action_weights, dim=1, stable=True)
        assert torch.equal(order_q, order_w)


def test_gumbel_action_is_among_the_most_visited():
    model, logits, value, embedding = hash_roots(7, 32, 9, neg_inf_prob=0.2)
    for seed in range(3):
        out = search("gumbel", model, logits, value, embedding, 30, gumbel_scale=1.0, seed=seed)
        counts = _summary(out).visit_counts
        assert (counts[torch.arange(32), out.action] == counts.max(dim=1).values).all()


# --------------------------------------------------------------------------------------------
# Seeds, noise and temperature
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
def test_same_seed_same_result_other_seed_other_result(algorithm):
    model, logits, value, embedding = hash_roots(5, 32, 3)
    kwargs = NOISY[algorithm]
    a = search(algorithm, model, logits, value, embedding, 20, seed=7, **kwargs)
    b = search(algorithm, model, logits, value, embedding, 20, seed=7, **kwargs)
    assert_same_output(a, b)
    for other in (8, 2**63 + 7):
        c = search(algorithm, model, logits, value, embedding, 20, seed=other, **kwargs)
        assert not torch.equal(_summary(a).visit_counts, _summary(c).visit_counts)
        assert not torch.equal(a.action_weights, c.action_weights)
        assert not torch.equal(a.action, c.action)
    # seed=None draws a fresh seed: two searches differ.
    d = search(algorithm, model, logits, value, embedding, 20, **kwargs)
    e = search(algorithm, model, logits, value, embedding, 20, **kwargs)
    assert not torch.equal(_summary(d).visit_counts, _summary(e).visit_counts)


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
def test_without_noise_the_seed_does_not_matter(algorithm):
    model, logits, value, embedding = hash_roots(5, 16, 3)
    outs = [search(algorithm, model, logits, value, embedding, 20, seed=s) for s in (0, 1, None)]
    assert_same_output(outs[0], outs[1])
    assert_same_output(outs[0], outs[2])


def test_dirichlet_noise_changes_the_search_and_respects_the_fraction():
    """fraction 0 equals the reference; fraction > 0 changes visit counts on some roots; the
    noise is seeded per root, so a root's result does not depend on the other roots."""
    model, logits, value, embedding = hash_roots(5, 16, 6)
    plain = search("muzero", model, logits, value, embedding, 20, seed=1)
    noisy = search("muzero", model, logits, value, embedding, 20, seed=1, dirichlet_fraction=0.5)
    assert not torch.equal(_summary(plain).visit_counts, _summary(noisy).visit_counts)
    assert_matches_reference(plain, reference_batch(model, logits, value, embedding, 20))
    # Root b's noise comes from (seed, b): the first 8 roots alone give the same result.
    half = search("muzero", model, logits[:8], value[:8], embedding[:8], 20, seed=1, dirichlet_fraction=0.5)
    assert torch.equal(_summary(half).visit_counts, _summary(noisy).visit_counts[:8])


@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_temperature_samples_from_visit_counts(temperature):
    """2000 copies of one root (no noise: identical visit counts), each root drawing with its own
    generator: the action frequencies follow (N / max N)^(1 / T)."""
    model = HashModel(4, seed=1)
    logits, value, embedding = model.roots(1, seed=1)
    n = 2000
    out = muzero_policy(Root(logits.expand(n, -1), value.expand(n), embedding.expand(n, -1)), model, 12,
                        dirichlet_fraction=0.0, temperature=temperature, seed=3)
    counts = _summary(out).visit_counts
    assert (counts == counts[0]).all()
    expected = torch.tensor(muzero_action_probabilities(counts[0].tolist(), temperature), dtype=torch.float64)
    assert (expected > 0.05).sum() >= 2  # the draw is not trivial
    freq = torch.bincount(out.action, minlength=4).double() / n
    assert torch.allclose(freq, expected, atol=0.045), (freq, expected)
    assert (freq[expected == 0] == 0).all()


# --------------------------------------------------------------------------------------------
# Huge rewards
# --------------------------------------------------------------------------------------------


class BigRewardModel:
    """The root's children get a reward of ``good`` (action ``best[b]``) or ``bad`` (the others);
    deeper transitions HashModel's rewards and values scaled to +-10, discount 0.99 (so that
    the root reward decides, even between 1e6 and 0.999e6). Embedding: HashModel's [B, 4] plus a depth column."""

    def __init__(self, num_actions, best, good, bad):
        self.hash = HashModel(num_actions, seed=5, reward_scale=10.0, discount=0.99)
        self.best, self.good, self.bad = best, good, bad

    def __call__(self, embedding, action):
        out, nxt = self.hash(embedding[:, :4], action)
        depth = embedding[:, 4]
        root_reward = torch.where(action == self.best, self.good, self.bad).float()
        reward = torch.where(depth == 0, root_reward, out.reward)
        out = out._replace(reward=reward, value=out.value * 10.0)
        return out, torch.cat([nxt, (depth + 1)[:, None]], dim=1)


@pytest.mark.parametrize("algorithm, good, bad", [
    (algorithm, good, bad) for algorithm in ("muzero", "gumbel") for good, bad in ((1e6, -1e6), (0.0, -1e6), (1e6, 0.0))
] + [
    # 1e6 against 0.999e6 with small rewards deeper down: MuZero's min-max runs over the whole
    # tree, so the two root edges normalise to 1.0 and 0.999 and the prior decides (as the spec
    # says; not asserted). Gumbel rescales Q over each node's actions and finds the better one.
    ("gumbel", 1e6, 999_000.0),
])
def test_huge_rewards_keep_q_finite_and_the_best_action_wins(algorithm, good, bad):
    num_actions, batch_size = 5, 8
    best = torch.arange(batch_size) % num_actions
    model = BigRewardModel(num_actions, best, good, bad)
    _, value, embedding = model.hash.roots(batch_size, seed=2)
    logits = torch.zeros(batch_size, num_actions)  # uniform: every action gets tried
    embedding = torch.cat([embedding, torch.zeros(batch_size, 1)], dim=1)
    out = search(algorithm, model, logits, value * 1e6, embedding, 60)
    summary = _summary(out)
    for t in (summary.value, summary.qvalues, out.action_weights):
        assert torch.isfinite(t).all()
    assert torch.equal(out.action, best)
    q_best = summary.qvalues[torch.arange(batch_size), best]
    assert (q_best > good - 1e4).all() and (q_best < good + 1e4).all()
    counts = summary.visit_counts
    assert (counts[torch.arange(batch_size), best] == counts.max(dim=1).values).all()


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
def test_huge_rewards_deep_trees_match_the_reference(algorithm):
    """Rewards of +-1e6 at every step of a deep tree (A = 2, discount 1): sums of 1e8, still
    the reference's numbers."""
    model, logits, value, embedding = hash_roots(2, 4, 8, reward_scale=1e6, discount=1.0)
    name = "muzero" if algorithm == "muzero" else "gumbel_muzero"
    ref = reference_batch(model, logits, value, embedding, 100, algorithm=name)
    out = search(algorithm, model, logits, value, embedding, 100)
    assert_matches_reference(out, ref)
    assert torch.isfinite(_summary(out).qvalues).all() and _summary(out).qvalues.abs().max() > 1e5


# --------------------------------------------------------------------------------------------
# Input types
# --------------------------------------------------------------------------------------------


def _check_output_types(out: PolicyOutput, batch_size: int, num_actions: int) -> None:
    assert isinstance(out.action, torch.Tensor) and out.action.dtype == torch.int64
    assert out.action.shape == (batch_size,) and out.action.device.type == "cpu"
    assert isinstance(out.action_weights, torch.Tensor) and out.action_weights.dtype == torch.float32
    assert out.action_weights.shape == (batch_size, num_actions)
    summary = _summary(out)
    assert summary.visit_counts.dtype == torch.int64 and summary.value.dtype == torch.float32
    assert summary.qvalues.dtype == torch.float32 and summary.visit_probs.dtype == torch.float32


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
def test_numpy_inputs_and_outputs(algorithm):
    model, logits, value, embedding = hash_roots(5, 7, 2, neg_inf_prob=0.2)
    invalid = random_invalid(logits, 2)
    expected = search(algorithm, model, logits, value, embedding, 16, invalid_actions=invalid)

    seen = []

    def numpy_model(emb, action):
        seen.append(type(emb))
        out, nxt = model(emb, action)
        return RecurrentOutput(*(x.numpy() for x in out)), nxt.numpy()

    out = search(algorithm, numpy_model, logits.numpy(), value.numpy(), embedding.numpy(), 16,
                 invalid_actions=invalid.numpy())
    _check_output_types(out, 7, 5)
    assert_same_output(out, expected)
    assert set(seen) == {torch.Tensor}  # the model gets torch tensors even from numpy roots
    # Plain lists and float64 numpy arrays work as well.
    out = search(algorithm, model, logits.double().numpy(), value.tolist(), embedding, 16,
                 invalid_actions=invalid.tolist())
    assert_same_output(out, expected)


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
def test_float64_inputs_give_the_same_search(algorithm):
    """float32 numbers as float64 tensors are the same numbers: the same search."""
    model, logits, value, embedding = hash_roots(5, 7, 3, neg_inf_prob=0.2)
    expected = search(algorithm, model, logits, value, embedding, 16)

    def double_model(emb, action):
        assert emb.dtype == torch.float64  # the pool keeps the embedding's dtype
        out, nxt = model(emb.float(), action)
        return RecurrentOutput(*(x.double() for x in out)), nxt.double()

    out = search(algorithm, double_model, logits.double(), value.double(), embedding.double(), 16)
    _check_output_types(out, 7, 5)
    assert_same_output(out, expected)


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel"])
@pytest.mark.parametrize("structure", ["tuple", "list", "dict", "nested"])
def test_structured_embeddings(algorithm, structure):
    """Embeddings as tuples, lists and (nested) dicts of tensors of different dtypes: the model
    gets the same structure back, and the search equals the one with a plain tensor."""
    model, logits, value, embedding = hash_roots(4, 6, 4)
    expected = search(algorithm, model, logits, value, embedding, 12)
    steps = torch.zeros(6, dtype=torch.int64)

    def pack(e, s):
        if structure == "tuple":
            return (e[:, :1], e[:, 1:], s)
        if structure == "list":
            return [e[:, :3], e[:, 3:], s]
        if structure == "dict":
            return {"b": e[:, 2:].double(), "a": e[:, :2], "steps": s}
        return {"x": (e[:, :1], {"y": e[:, 1:3]}), "z": [e[:, 3:].reshape(6, 1, 1)], "steps": s}

    def unpack(x):
        if structure in ("tuple", "list"):
            return torch.cat([x[0], x[1]], dim=1), x[2]
        if structure == "dict":
            return torch.cat([x["a"], x["b"].float()], dim=1), x["steps"]
        return torch.cat([x["x"][0], x["x"][1]["y"], x["z"][0].reshape(6, 1)], dim=1), x["steps"]

    def structured_model(emb, action):
        assert type(emb) is type(pack(embedding, steps))
        e, s = unpack(emb)
        assert s.dtype == torch.int64
        out, nxt = model(e, action)
        return out, pack(nxt, s + 1)

    out = search(algorithm, structured_model, logits, value, pack(embedding, steps), 12)
    assert_same_output(out, expected)
    # The step counters stored with the nodes: the pool holds depth counters at every node.
    pool = out.search_tree.embeddings
    rows = torch.arange(13 * 6)
    stored = pool.gather(rows)
    s = stored[2] if structure in ("tuple", "list") else stored["steps"]
    assert s[:6].tolist() == [0] * 6 and s.max() >= 2


def test_recurrent_fn_gets_int64_actions_and_the_parent_embeddings():
    model, logits, value, embedding = hash_roots(3, 5, 1)
    calls = []

    def recording(emb, action):
        calls.append((emb.clone(), action.clone()))
        return model(emb, action)

    muzero_policy(Root(logits, value, embedding), recording, 6, dirichlet_fraction=0.0)
    assert len(calls) == 6
    assert all(a.dtype == torch.int64 and a.shape == (5,) for _, a in calls)
    assert torch.equal(calls[0][0], embedding)  # the first simulation expands the roots' children
    produced = [embedding] + [model(e, a)[1] for e, a in calls]
    for e, _ in calls[1:]:  # every later input is a root or a node the model produced before
        for b in range(5):
            assert any(torch.equal(e[b], p[b]) for p in produced)


def test_numpy_mask_of_ints_and_invalid_root_selection_of_single_action():
    model, logits, value, embedding = hash_roots(4, 3, 1)
    invalid = np.array([[1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 0, 0]], dtype=np.int32)
    out = muzero_policy(Root(logits, value, embedding), model, 5, invalid_actions=invalid)
    assert out.action.tolist()[:2] == [3, 0]
    counts = _summary(out).visit_counts
    assert counts[0].tolist() == [0, 0, 0, 5] and counts[1].tolist() == [5, 0, 0, 0]


def test_searches_in_parallel_threads_match_serial_searches():
    """The GIL is released inside the core; searches in several Python threads (recycling trees
    among themselves) must give exactly the serial results."""
    import threading

    model = HashModel(6, seed=3)
    roots = [model.roots(16, seed=s) for s in range(6)]

    def search(i):
        logits, value, embedding = roots[i]
        policy = muzero_policy if i % 2 == 0 else gumbel_muzero_policy
        out = policy(Root(logits, value, embedding), model, 30, seed=i)
        return out.search_tree.summary().visit_counts, out.action

    serial = [search(i) for i in range(6)]
    parallel: dict[int, tuple] = {}
    threads = [threading.Thread(target=lambda i=i: parallel.__setitem__(i, [search(i) for _ in range(5)]))
               for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(6):
        for counts, action in parallel[i]:
            assert torch.equal(counts, serial[i][0]) and torch.equal(action, serial[i][1])
