import warnings

import numpy as np
import pytest
import torch

from pymbrl.replay import Batch, PrioritizedReplayBuffer, ReplayBuffer, SequenceReplayBuffer

from .helpers import (Model, assert_same_batch, assert_same_state, check_next_obs_encoding,
                      check_transition_batch, chi_square, chi_square_threshold, feed, generate, make_spec,
                      row_layout, snapshot)

SPEC = make_spec()
GAMMA = 0.9


def sample_many(buf, n):
    """n transitions drawn in batches of at most len(buf) (batch_size may not exceed it)."""
    batches, left = [], n
    while left:
        k = min(left, len(buf))
        batches.append(buf.sample(k))
        left -= k
    return {key: torch.cat([b[key] for b in batches]) for key in batches[0]}


def stored_obs(buf):
    """obs of every stored row, in row order."""
    layout, row_bytes = row_layout(buf.spec)
    rows = buf._core.snapshot()["rows"].reshape(-1, row_bytes)
    off = dict((name, off) for name, off, _ in layout)["obs"]
    return rows[:, off:off + 8].copy().view(np.float32)


@pytest.mark.parametrize("mode", ["add", "extend"])
@pytest.mark.parametrize("num_envs", [1, 2, 3])
def test_each_row_holds_the_step_its_id_names(num_envs, mode):
    # Stream e owns rows t * num_envs + e: row r must hold obs [r // num_envs, r % num_envs].
    steps = 5
    buf = ReplayBuffer(steps * num_envs, SPEC, num_envs=num_envs, seed=0)
    feed(buf, generate(np.random.default_rng(0), steps, num_envs, p_term=0, p_trunc=0), mode)
    rows = np.arange(steps * num_envs)
    np.testing.assert_array_equal(stored_obs(buf), np.stack([rows // num_envs, rows % num_envs], 1))
    assert len(buf) == (steps - 1) * num_envs


def run_history(buf, model, rng, steps, check_batches=3, batch_size=32):
    """Feed ``steps`` steps per stream in random chunks, alternating add and extend; after every
    chunk compare len() with the model and check a few sampled batches against the brute force."""
    t = model.written
    while t < steps:
        k = int(rng.integers(1, 8))
        chunk = generate(rng, k, buf.num_envs, t0=t, p_term=0.15, p_trunc=0.1)
        feed(buf, chunk, "add" if rng.random() < 0.5 else "extend")
        model.append(chunk)
        t += k
        assert len(buf) == len(model)
        for _ in range(check_batches if len(buf) else 0):
            n = min(batch_size, len(buf))
            check_transition_batch(buf.sample(n), model, n)


@pytest.mark.parametrize("cls", [ReplayBuffer, PrioritizedReplayBuffer])
@pytest.mark.parametrize("n_step", [1, 3, 5])
@pytest.mark.parametrize("num_envs", [1, 3])
def test_sampled_transitions_match_a_brute_force_model_across_wrap_around(cls, n_step, num_envs):
    steps_per_env = 9  # the ring wraps ~7 times over 60 steps
    capacity = steps_per_env * num_envs
    buf = cls(capacity, SPEC, num_envs=num_envs, n_step=n_step, gamma=GAMMA, seed=5)
    model = Model(capacity, num_envs, n_step, GAMMA)
    rng = np.random.default_rng(100 * n_step + num_envs)
    run_history(buf, model, rng, 60)
    assert model.written >= 60  # > 6 times round the ring
    # Every sampleable transition turns up, and nothing else does.
    seen = np.unique(np.concatenate([buf.sample(len(buf))["indices"].numpy() for _ in range(40)]))
    np.testing.assert_array_equal(seen, model.sampleable_ids())


def test_n_step_returns_by_hand():
    # One stream: rewards 1, 2, 3, 4, 5, 6, 7 with step 2 terminated and step 5 truncated.
    buf = ReplayBuffer(16, SPEC, n_step=3, gamma=0.5, seed=0)
    term = [False, False, True, False, False, False, False]
    trunc = [False, False, False, False, False, True, False]
    for t in range(7):
        done = term[t] or trunc[t]
        buf.add(obs=[t, 0], action=[t], reward=float(t + 1), terminated=term[t], truncated=trunc[t],
                next_obs=[t + (0.5 if done else 1.0), 0])
    assert len(buf) == 6  # step 6 ended nothing and is the newest: its next obs is unknown
    expected = {  # id: (return, discount, terminated, truncated, bootstrap obs)
        0: (1 + 0.5 * 2 + 0.25 * 3, 0.0, True, False, [2.5, 0]),
        1: (2 + 0.5 * 3, 0.0, True, False, [2.5, 0]),
        2: (3, 0.0, True, False, [2.5, 0]),
        3: (4 + 0.5 * 5 + 0.25 * 6, 0.125, False, True, [5.5, 0]),
        4: (5 + 0.5 * 6, 0.25, False, True, [5.5, 0]),
        5: (6, 0.5, False, True, [5.5, 0]),
    }
    batch = sample_many(buf, 200)
    assert set(batch["indices"].tolist()) == set(expected)
    for i, id_ in enumerate(batch["indices"].tolist()):
        ret, disc, te, tr, nxt = expected[id_]
        assert batch["reward"][i].item() == pytest.approx(ret)
        assert batch["discount"][i].item() == pytest.approx(disc)
        assert (bool(batch["terminated"][i]), bool(batch["truncated"][i])) == (te, tr)
        assert batch["next_obs"][i].tolist() == nxt
    # Step 6 becomes sampleable; the window from 4 is cut where the stored data ends.
    buf.add(obs=[7, 0], action=[7], reward=8.0, terminated=False, truncated=False, next_obs=[8, 0])
    batch = sample_many(buf, 300)
    for i, id_ in enumerate(batch["indices"].tolist()):
        if id_ == 6:
            assert batch["reward"][i].item() == pytest.approx(7.0)
            assert batch["discount"][i].item() == pytest.approx(0.5)
            assert batch["next_obs"][i].tolist() == [7, 0]
            assert not batch["terminated"][i] and not batch["truncated"][i]
    assert 6 in batch["indices"].tolist()


@pytest.mark.parametrize("n_step", [1, 4])
def test_float64_rewards_keep_float64_returns(n_step):
    spec = make_spec(reward_dtype=torch.float64)
    buf = ReplayBuffer(64, spec, n_step=n_step, gamma=GAMMA, seed=0)
    model = Model(64, 1, n_step, GAMMA)
    chunk = generate(np.random.default_rng(3), 40, 1)
    chunk["reward"] = chunk["reward"].astype(np.float64) + 1e-9  # not representable in float32
    feed(buf, chunk, "extend")
    model.append(chunk)
    batch = sample_many(buf, 64)
    assert batch["reward"].dtype == torch.float64
    for i, id_ in enumerate(batch["indices"].tolist()):
        assert batch["reward"][i].item() == pytest.approx(model.transition(id_)["reward"], rel=1e-12)


@pytest.mark.parametrize("cls", [ReplayBuffer, PrioritizedReplayBuffer, SequenceReplayBuffer])
@pytest.mark.parametrize("num_envs", [1, 3])
def test_extend_is_the_same_as_the_adds(cls, num_envs):
    rng = np.random.default_rng(7)
    capacity = 10 * num_envs
    a = cls(capacity, SPEC, num_envs=num_envs, seed=3)
    b = cls(capacity, SPEC, num_envs=num_envs, seed=3)
    for t0, k in [(0, 4), (4, 1), (5, 9), (14, 13)]:  # wraps; the last chunk is longer than the ring
        chunk = generate(rng, k, num_envs, t0=t0, p_term=0.2, p_trunc=0.1)
        feed(a, chunk, "extend")
        feed(b, chunk, "add")
        # Row padding is never written, so compare field bytes only.
        assert_same_state(snapshot(a, raw_rows=False), snapshot(b, raw_rows=False))
        assert len(a) == len(b)
    if cls is SequenceReplayBuffer:
        assert_same_batch(a.sample(16, 3), b.sample(16, 3))
    else:
        assert_same_batch(a.sample(len(a)), b.sample(len(b)))


def filled(cls, seed, num_envs=1, **kwargs):
    buf = cls(32 * num_envs, SPEC, num_envs=num_envs, seed=seed, **kwargs)
    feed(buf, generate(np.random.default_rng(0), 50, num_envs), "extend")
    return buf


def draw(buf):
    return buf.sample(8, 4) if isinstance(buf, SequenceReplayBuffer) else buf.sample(8)


@pytest.mark.parametrize("cls", [ReplayBuffer, PrioritizedReplayBuffer, SequenceReplayBuffer])
def test_same_seed_gives_identical_batches_and_other_seeds_differ(cls):
    a, b, c = filled(cls, 11), filled(cls, 11), filled(cls, 12)
    batches_a = [draw(a) for _ in range(5)]
    for batch in batches_a:
        assert_same_batch(batch, draw(b))
    other = [draw(c) for _ in range(5)]
    assert any(not torch.equal(x["indices"], y["indices"]) for x, y in zip(batches_a, other))
    # seed=None draws fresh entropy
    d, e = filled(cls, None), filled(cls, None)
    assert any(not torch.equal(draw(d)["indices"], draw(e)["indices"]) for _ in range(5))


def test_len_counts_transitions_whose_next_obs_is_known():
    buf = ReplayBuffer(6, SPEC, seed=0)
    model = Model(6, 1)
    assert len(buf) == 0
    sizes = []
    for t, (te, tr) in enumerate([(0, 0), (0, 0), (1, 0), (0, 0), (0, 1), (0, 0), (0, 0), (0, 0), (1, 0)]):
        chunk = generate(np.random.default_rng(0), 1, 1, t0=t, p_term=0, p_trunc=0)
        chunk["terminated"][:], chunk["truncated"][:] = te, tr
        chunk["next_obs"][0, 0, 0] = t + (0.5 if te or tr else 1.0)
        feed(buf, chunk, "add")
        model.append(chunk)
        sizes.append(len(buf))
        assert len(buf) == len(model)
    # newest step counts only once it ended an episode; then the ring holds 6
    assert sizes == [0, 1, 3, 3, 5, 5, 5, 5, 6]


@pytest.mark.parametrize("num_envs", [1, 2])
def test_len_with_many_streams(num_envs):
    buf = ReplayBuffer(4 * num_envs, SPEC, num_envs=num_envs, seed=0)
    chunk = generate(np.random.default_rng(0), 3, num_envs, p_term=0, p_trunc=0)
    chunk["terminated"][-1, 0] = True
    chunk["next_obs"][-1, 0, 0] = 2.5
    feed(buf, chunk, "extend")
    assert len(buf) == 2 * num_envs + 1
    check_next_obs_encoding(sample_many(buf, 200), num_envs)


def test_one_step_per_stream_keeps_only_finished_steps():
    buf = ReplayBuffer(1, SPEC, seed=0)
    step = dict(obs=[0, 0], action=[0], reward=1.0, terminated=False, truncated=False, next_obs=[1, 0])
    buf.add(**step)
    assert len(buf) == 0
    buf.add(**{**step, "obs": [1, 0], "action": [1], "terminated": True, "next_obs": [1.5, 0]})
    assert len(buf) == 1
    batch = sample_many(buf, 3)
    assert batch["indices"].tolist() == [1, 1, 1]
    assert batch["next_obs"].tolist() == [[1.5, 0]] * 3 and batch["discount"].tolist() == [0.0] * 3
    buf.add(**{**step, "obs": [2, 0], "action": [2]})
    assert len(buf) == 0


@pytest.mark.parametrize("cls", [ReplayBuffer, PrioritizedReplayBuffer, SequenceReplayBuffer])
def test_clear_forgets_everything_and_keeps_the_generator(cls):
    buf = filled(cls, 1)
    rng_before = buf._core.snapshot()["rng"].copy()
    buf.clear()
    assert len(buf) == 0
    np.testing.assert_array_equal(buf._core.snapshot()["rng"], rng_before)
    with pytest.raises(ValueError):
        draw(buf)
    if cls is PrioritizedReplayBuffer:
        assert buf.max_priority == 1.0
    # New data only (obs t >= 1000), with consistent next observations.
    chunk = generate(np.random.default_rng(1), 20, 1, t0=1000, p_term=0.3)
    feed(buf, chunk, "extend")
    assert len(buf) == 19 + int(chunk["terminated"][-1, 0] or chunk["truncated"][-1, 0])
    for _ in range(5):
        batch = draw(buf)
        obs, nxt = batch["obs"].reshape(-1, 2), batch["next_obs"].reshape(-1, 2)
        assert bool((obs[:, 0] >= 1000).all())
        done = (batch["terminated"] | batch["truncated"]).reshape(-1)
        torch.testing.assert_close(nxt[:, 0], obs[:, 0] + torch.where(done, 0.5, 1.0))


@pytest.mark.parametrize("cls", [ReplayBuffer, PrioritizedReplayBuffer])
def test_uniform_sampling_is_uniform_over_sampleable_transitions(cls):
    # alpha=0 makes the prioritized buffer uniform too (checked further in test_prioritized).
    kwargs = {"alpha": 0.0} if cls is PrioritizedReplayBuffer else {}
    buf = cls(40, SPEC, seed=9, **kwargs)
    model = Model(40, 1)
    chunk = generate(np.random.default_rng(4), 70, 1, p_term=0.1)
    chunk["terminated"][-1] = chunk["truncated"][-1] = False
    feed(buf, chunk, "extend")
    model.append(chunk)
    ids = model.sampleable_ids()
    assert len(ids) == 39
    draws = np.concatenate([buf.sample(39)["indices"].numpy() for _ in range(1000)])
    counts = np.array([(draws == i).sum() for i in ids])
    assert counts.sum() == len(draws)  # nothing outside the sampleable ids
    assert chi_square(counts, np.full(len(ids), 1 / len(ids))) < chi_square_threshold(len(ids) - 1)


@pytest.mark.parametrize("cls", [ReplayBuffer, PrioritizedReplayBuffer])
def test_batch_layout(cls):
    buf = filled(cls, 0, n_step=2)
    batch = buf.sample(5)
    assert isinstance(batch, Batch)
    expected = {"obs": (torch.float32, (5, 2)), "action": (torch.int64, (5, 1)), "reward": (torch.float32, (5,)),
                "terminated": (torch.bool, (5,)), "truncated": (torch.bool, (5,)),
                "next_obs": (torch.float32, (5, 2)), "discount": (torch.float32, (5,)),
                "indices": (torch.int64, (5,))}
    if cls is PrioritizedReplayBuffer:
        expected["weights"] = (torch.float32, (5,))
    assert {k: (v.dtype, tuple(v.shape)) for k, v in batch.items()} == expected
    assert batch.obs is batch["obs"]
    with pytest.raises(AttributeError):
        batch.nothing
    on_cpu = buf.sample(5, device="cpu")
    assert all(v.device.type == "cpu" for v in on_cpu.values())


def test_pin_memory_without_cuda_warns_once():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available: pinning works")
    buf = filled(ReplayBuffer, 0)
    with pytest.warns(UserWarning, match="pin_memory"):
        batch = buf.sample(4, pin_memory=True)
    assert batch["obs"].shape == (4, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        buf.sample(4, pin_memory=True)


def test_repr_and_capacity():
    buf = ReplayBuffer(12, SPEC, num_envs=3, seed=0)
    assert buf.capacity == 12
    assert "capacity=12" in repr(buf) and "num_envs=3" in repr(buf)
