import numpy as np
import pytest
import torch

from pymbrl.replay import PrioritizedReplayBuffer

from .helpers import (Model, assert_same_state, check_next_obs_encoding, chi_square, chi_square_threshold, feed,
                      generate, make_spec, snapshot)

SPEC = make_spec()
EPS = 1e-6


def buffer_with(steps, capacity=64, num_envs=1, last_done=False, seed=0, **kwargs):
    buf = PrioritizedReplayBuffer(capacity, SPEC, num_envs=num_envs, seed=seed, **kwargs)
    model = Model(capacity, num_envs)
    chunk = generate(np.random.default_rng(seed), steps, num_envs, p_term=0.1, p_trunc=0.05)
    chunk["terminated"][-1] = last_done
    chunk["truncated"][-1] = False
    chunk["next_obs"][-1, :, 0] = chunk["obs"][-1, :, 0] + (0.5 if last_done else 1.0)
    feed(buf, chunk, "extend")
    model.append(chunk)
    return buf, model


def counts_of(buf, ids, draws, batch_size, **kwargs):
    out = np.zeros(len(ids), dtype=np.int64)
    pos = {int(i): k for k, i in enumerate(ids)}
    sampled = np.concatenate([buf.sample(batch_size, **kwargs)["indices"].numpy() for _ in range(draws // batch_size)])
    assert set(np.unique(sampled).tolist()) <= set(pos)
    np.add.at(out, [pos[int(i)] for i in sampled], 1)
    return out


def test_sampling_frequencies_follow_priority_to_the_alpha():
    alpha = 0.6
    buf, model = buffer_with(20, last_done=True, alpha=alpha, seed=1)
    ids = model.sampleable_ids()
    assert len(ids) == len(buf) == 20
    priorities = np.random.default_rng(2).uniform(0.05, 10.0, size=20)
    buf.update_priorities(ids, priorities)
    np.testing.assert_allclose(buf.priorities(ids), (priorities + EPS) ** alpha, rtol=1e-12)
    counts = counts_of(buf, ids, 200_000, 20)
    probs = (priorities + EPS) ** alpha
    probs /= probs.sum()
    assert chi_square(counts, probs) < chi_square_threshold(19)
    # the test has the power to see a wrong exponent
    wrong = (priorities + EPS) / (priorities + EPS).sum()
    assert chi_square(counts, wrong) > 10 * chi_square_threshold(19)


def test_alpha_zero_samples_uniformly_with_unit_weights():
    buf, model = buffer_with(30, alpha=0.0, seed=3)
    ids = model.sampleable_ids()
    buf.update_priorities(ids, np.linspace(0.01, 100.0, len(ids)))
    np.testing.assert_array_equal(buf.priorities(ids), 1.0)
    batch = buf.sample(len(ids), beta=1.0)
    np.testing.assert_array_equal(batch["weights"].numpy(), 1.0)
    counts = counts_of(buf, ids, 58_000, len(ids))
    assert chi_square(counts, np.full(len(ids), 1 / len(ids))) < chi_square_threshold(len(ids) - 1)


@pytest.mark.parametrize("beta", [None, 0.0, 0.4, 1.0, 2.5])
def test_importance_weights_are_relative_to_the_smallest_priority(beta):
    # 50 steps in a ring of 32 (wrapped), the newest unfinished (leaf 0: must not count as the minimum).
    buf, model = buffer_with(50, capacity=32, alpha=0.7, beta=0.3, seed=4)
    ids = model.sampleable_ids()
    assert len(ids) == 31
    priorities = np.random.default_rng(5).uniform(0.1, 5.0, size=len(ids))
    buf.update_priorities(ids, priorities)
    leaves = buf.priorities(ids)
    np.testing.assert_allclose(leaves, (priorities + EPS) ** 0.7, rtol=1e-12)
    assert buf.priorities(np.array([model.end_id - 1]))[0] == 0.0  # newest, not sampleable
    used_beta = 0.3 if beta is None else beta
    p_min = leaves.min()
    leaf_of = dict(zip(ids.tolist(), leaves))
    seen = set()
    for _ in range(20):
        batch = buf.sample(16, beta=beta) if beta is not None else buf.sample(16)
        idx = batch["indices"].numpy()
        expected = np.array([(leaf_of[i] / p_min) ** (-used_beta) for i in idx])
        np.testing.assert_allclose(batch["weights"].numpy(), expected, rtol=1e-5)
        assert batch["weights"].max() <= 1.0 + 1e-6
        seen.update(idx.tolist())
    assert seen <= set(ids.tolist())


def test_priorities_are_zero_where_not_sampleable():
    buf, model = buffer_with(40, capacity=16, seed=6)
    probe = np.array([-5, 0, model.oldest_id - 1, model.oldest_id, model.end_id - 1, model.end_id, 10**9])
    got = buf.priorities(probe)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, [0, 0, 0, 1, 0, 0, 0])


@pytest.mark.parametrize("num_envs", [1, 3])
def test_new_transitions_get_the_largest_priority_seen_so_far(num_envs):
    alpha = 0.6
    buf, model = buffer_with(6, capacity=40 * num_envs, num_envs=num_envs, alpha=alpha, seed=7)
    ids = model.sampleable_ids()
    assert buf.max_priority == 1.0
    np.testing.assert_array_equal(buf.priorities(ids), 1.0)  # nothing seen yet: 1
    buf.update_priorities(ids[:2], [5.0, 0.5])
    top = (5.0 + EPS) ** alpha
    assert buf.max_priority == pytest.approx(5.0 + EPS, rel=1e-12)
    buf.update_priorities(ids, np.full(len(ids), 0.01))  # lower everything: the maximum stays
    assert buf.max_priority == pytest.approx(5.0 + EPS, rel=1e-12)
    expected = {int(i): (0.01 + EPS) ** alpha for i in ids}
    rng = np.random.default_rng(8)
    for t0 in range(6, 12):
        chunk = generate(rng, 1, num_envs, t0=t0, p_term=0.3)
        feed(buf, chunk, "add")
        model.append(chunk)
        now = model.sampleable_ids()
        fresh = [int(i) for i in now if int(i) not in expected]
        # the previous newest steps (now followed) and any finished new step
        expected.update((i, top) for i in fresh)
        np.testing.assert_allclose(buf.priorities(now), [expected[int(i)] for i in now], rtol=1e-12)
        unfinished = [i for i in range(model.end_id - num_envs, model.end_id) if not model.sampleable(i)]
        np.testing.assert_array_equal(buf.priorities(np.array(unfinished, dtype=np.int64)), 0.0)
        batch = buf.sample(len(buf))
        check_next_obs_encoding(batch, num_envs)


def test_stale_ids_are_ignored():
    buf, model = buffer_with(20, capacity=16, seed=9)
    old_ids = buf.sample(8)["indices"].numpy()
    feed(buf, generate(np.random.default_rng(10), 30, 1, t0=20), "extend")  # overwrites every slot
    before = snapshot(buf)
    buf.update_priorities(old_ids, np.full(len(old_ids), 123.0))
    assert_same_state(before, snapshot(buf))  # leaves and max_priority untouched
    assert buf.max_priority == 1.0
    # mixed with live ids: the live ones are updated, the stale ones' new occupants are not
    live = np.arange(buf._core.written - 16, buf._core.written - 1)
    occupants = live[np.isin(live % 16, old_ids % 16)]
    buf.update_priorities(np.concatenate([old_ids, live[:3]]), np.concatenate([np.full(len(old_ids), 99.0),
                                                                               [2.0, 3.0, 4.0]]))
    np.testing.assert_allclose(buf.priorities(live[:3]), (np.array([2.0, 3.0, 4.0]) + EPS) ** 0.6, rtol=1e-12)
    untouched = occupants[~np.isin(occupants, live[:3])]
    assert len(untouched)
    np.testing.assert_array_equal(buf.priorities(untouched), 1.0)
    assert buf.max_priority == pytest.approx(4.0 + EPS)


def test_stale_ids_from_before_clear_are_ignored():
    # update_priorities: "Indices whose slot has been overwritten since they were sampled are ignored".
    buf, _ = buffer_with(20, capacity=32, seed=11)
    old_ids = buf.sample(10)["indices"].numpy()
    buf.clear()
    feed(buf, generate(np.random.default_rng(12), 25, 1, t0=1000), "extend")
    before = buf.priorities(np.arange(buf._core.written))
    buf.update_priorities(old_ids, np.full(len(old_ids), 50.0))
    np.testing.assert_array_equal(buf.priorities(np.arange(buf._core.written)), before)


def good_update(buf):
    ids = buf.sample(4)["indices"].numpy()
    return ids, np.array([1.0, 2.0, 3.0, 4.0])


BAD_UPDATES = [
    (lambda ids, p, end: (np.array([end]), [1.0]), ValueError, "indices"),
    (lambda ids, p, end: (np.array([end + 100]), [1.0]), ValueError, "indices"),
    (lambda ids, p, end: (np.array([-1]), [1.0]), ValueError, "indices"),
    (lambda ids, p, end: (np.concatenate([ids, [end]]), np.append(p, 1.0)), ValueError, "indices"),
    (lambda ids, p, end: (ids, np.array([1.0, np.nan, 1.0, 1.0])), ValueError, "priorities"),
    (lambda ids, p, end: (ids, np.array([1.0, 1.0, np.inf, 1.0])), ValueError, "priorities"),
    (lambda ids, p, end: (ids, np.array([1.0, 1.0, 1.0, -np.inf])), ValueError, "priorities"),
    (lambda ids, p, end: (ids, np.array([1.0, -0.5, 1.0, 1.0])), ValueError, "priorities"),
    (lambda ids, p, end: (ids, p[:3]), ValueError, "priorities"),
    (lambda ids, p, end: (ids[:, None], p[:, None]), ValueError, "priorities"),
    (lambda ids, p, end: (ids.astype(np.float64), p), TypeError, "indices"),
    (lambda ids, p, end: (np.array([np.nan]), [1.0]), TypeError, "indices"),
    (lambda ids, p, end: (torch.tensor([0.0, 1.0]), [1.0, 1.0]), TypeError, "indices"),
]


@pytest.mark.parametrize("make, error, name", BAD_UPDATES)
def test_bad_updates_raise_and_change_nothing(make, error, name):
    buf, model = buffer_with(30, capacity=16, seed=13)
    ids, p = good_update(buf)
    bad_ids, bad_p = make(ids, p, model.end_id)
    before = snapshot(buf)
    with pytest.raises(error, match=name):
        buf.update_priorities(bad_ids, bad_p)
    assert_same_state(before, snapshot(buf))
    buf.update_priorities(ids, p)  # and the good part alone is fine


def test_update_priorities_rejects_non_integer_indices_before_anything():
    buf, _ = buffer_with(10, seed=14)
    with pytest.raises(TypeError, match="indices"):
        buf.update_priorities(["a"], [1.0])


@pytest.mark.parametrize("ids", [[0.7], np.array([1.5]), ["3"], [None], torch.tensor([2.0])])
def test_priorities_refuses_ids_that_are_not_integers_instead_of_truncating_them(ids):
    buf, _ = buffer_with(10, seed=14)
    with pytest.raises(TypeError, match="indices"):
        buf.priorities(ids)


def test_an_empty_update_of_priorities_is_a_no_op():
    buf, _ = buffer_with(10, seed=14)
    before = snapshot(buf)
    buf.update_priorities([], [])
    assert_same_state(before, snapshot(buf))
    assert buf.priorities([]).shape == (0,)


def test_torch_tensors_are_accepted_for_indices_and_priorities():
    buf, _ = buffer_with(30, seed=15)
    batch = buf.sample(8)
    td = torch.rand(8, requires_grad=True) * 3  # e.g. |TD error| straight from a loss
    buf.update_priorities(batch["indices"], td)
    expected = {}
    for i, v in zip(batch["indices"].tolist(), td.detach().double().numpy()):
        expected[i] = v  # a repeated id keeps its last value
    ids = np.array(sorted(expected))
    np.testing.assert_allclose(buf.priorities(ids), (np.array([expected[i] for i in ids]) + EPS) ** 0.6,
                               rtol=1e-6)
    buf.update_priorities(torch.tensor(ids, dtype=torch.int32), torch.ones(len(ids), dtype=torch.float64))
    np.testing.assert_allclose(buf.priorities(ids), (1 + EPS) ** 0.6)
    buf.update_priorities(np.array([], dtype=np.int64), np.array([]))  # nothing to do


def test_all_zero_priorities_without_eps_do_not_give_infinite_weights():
    # eps=0 is accepted and priority 0 is accepted. Sampling must then either refuse (nothing has
    # positive probability) or return sampleable ids with finite weights.
    buf, model = buffer_with(10, eps=0.0, seed=16)
    ids = model.sampleable_ids()
    buf.update_priorities(ids, np.zeros(len(ids)))
    try:
        batch = buf.sample(4)
    except ValueError:
        return
    assert all(model.sampleable(i) for i in batch["indices"].tolist())
    assert torch.isfinite(batch["weights"]).all(), batch["weights"]


def test_zero_priority_without_eps_is_never_sampled():
    buf, model = buffer_with(10, eps=0.0, seed=17)
    ids = model.sampleable_ids()
    buf.update_priorities(ids, np.where(np.arange(len(ids)) % 2 == 0, 0.0, 1.0))
    sampled = np.concatenate([buf.sample(len(ids))["indices"].numpy() for _ in range(50)])
    assert set(sampled.tolist()) == set(ids[1::2].tolist())
    batch = buf.sample(len(ids), beta=1.0)
    np.testing.assert_allclose(batch["weights"].numpy(), 1.0)


def test_clear_resets_priorities():
    buf, _ = buffer_with(30, seed=18)
    buf.update_priorities(buf.sample(5)["indices"], np.full(5, 7.0))
    assert buf.max_priority > 7
    buf.clear()
    feed(buf, generate(np.random.default_rng(19), 10, 1, p_term=0, p_trunc=0), "extend")
    batch = buf.sample(9, beta=1.0)
    np.testing.assert_array_equal(buf.priorities(batch["indices"]), 1.0)
    np.testing.assert_array_equal(batch["weights"].numpy(), 1.0)


def test_non_numeric_priorities_are_a_type_error_naming_the_argument():
    buf, model = buffer_with(10, seed=21)
    ids = model.sampleable_ids()[:1]
    with pytest.raises(TypeError, match="priorities"):
        buf.update_priorities(ids, ["high"])


# -- importance weights with extreme priorities (issue 19) ----------------------------------------

@pytest.mark.parametrize("tiny", [1e-40, 1e-300, 5e-324])
def test_weights_stay_finite_and_in_0_1_with_tiny_priorities(tiny):
    # The leaf ratio leaf / min_leaf used to overflow float32: weights 0 (beta > 0) or NaN (beta = 0).
    buf, model = buffer_with(20, eps=0.0, alpha=1.0, seed=21)
    ids = model.sampleable_ids()
    priorities = np.ones(len(ids))
    priorities[0] = tiny
    buf.update_priorities(ids, priorities)
    for beta in (0.0, 0.4, 1.0, 50.0, 1e300):
        weights = buf.sample(len(ids), beta=beta)["weights"].numpy()
        assert np.isfinite(weights).all() and (weights > 0).all() and (weights <= 1).all(), (beta, weights)
        if beta == 0.0:
            np.testing.assert_array_equal(weights, 1.0)
    weights = buf.sample(len(ids), beta=0.4)["weights"].numpy()
    # (min / p)^beta, floored at the smallest normal float32 (leaves are floored at the smallest normal double)
    expected = max(max(tiny, np.finfo(np.float64).tiny) ** 0.4, np.finfo(np.float32).tiny)
    np.testing.assert_allclose(weights, expected, rtol=1e-4)


def test_beta_zero_gives_weights_of_exactly_one_whatever_the_priorities():
    buf, model = buffer_with(30, seed=22, alpha=1.0)
    ids = model.sampleable_ids()
    buf.update_priorities(ids, np.geomspace(1e-30, 1e30, len(ids)))
    np.testing.assert_array_equal(buf.sample(len(ids), beta=0.0)["weights"].numpy(), 1.0)


@pytest.mark.parametrize("bad", [1e300, np.finfo(np.float64).max])
def test_priorities_whose_sum_could_overflow_are_refused(bad):
    buf, model = buffer_with(20, seed=23, alpha=1.0)
    before = snapshot(buf)
    ids = model.sampleable_ids()
    with pytest.raises(ValueError, match="priorities"):
        buf.update_priorities(ids, np.full(len(ids), bad))
    assert_same_state(before, snapshot(buf))
    assert np.isfinite(buf.sample(4)["weights"].numpy()).all()
