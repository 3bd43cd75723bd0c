import threading
import time

import numpy as np
import pytest

from pymbrl.replay import PrioritizedReplayBuffer, SequenceReplayBuffer

from .helpers import Model, check_next_obs_encoding, check_transition_batch, generate, make_spec, squeeze_envs

SPEC = make_spec()
CHUNK = 4
SECONDS = 1.2


def expected_len(chunks, written, steps_per_env):
    """len() after `written` steps per stream: stored transitions less the unfinished newest."""
    last = chunks[-1]
    num_envs = last["obs"].shape[1]
    newest_done = last["terminated"][-1] | last["truncated"][-1]
    return (min(written, steps_per_env) - 1) * num_envs + int(newest_done.sum())


def run_concurrently(buf, reader, progress, min_reads=20, seconds=SECONDS, **gen):
    """A writer thread extends fresh steps in chunks of CHUNK (checking len() after each) for about
    `seconds` and until the reader has made `min_reads` rounds, while `reader(stop)` runs in another
    thread. Returns everything written, [T, E, ...]."""
    errors, chunks = [], []
    stop = threading.Event()
    steps_per_env = buf.capacity // buf.num_envs
    rng = np.random.default_rng(0)

    def writer():
        try:
            deadline = time.monotonic() + seconds
            t = 0
            while time.monotonic() < deadline or progress() < min_reads:
                if time.monotonic() > deadline + 30:
                    raise AssertionError("the reader made no progress")
                chunk = generate(rng, CHUNK, buf.num_envs, t0=t, **gen)
                buf.extend(**squeeze_envs(chunk, buf.num_envs))
                chunks.append(chunk)
                t += CHUNK
                # Only this thread changes what is stored, so len() is exact here.
                assert len(buf) == expected_len(chunks, t, steps_per_env)
                time.sleep(0.0002)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            stop.set()

    def read():
        try:
            reader(stop)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=writer), threading.Thread(target=read)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(90)
    assert not any(th.is_alive() for th in threads), "a thread did not finish"
    if errors:
        raise errors[0]
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


@pytest.mark.parametrize("num_envs", [1, 4])
def test_adding_while_sampling_and_updating_priorities(num_envs):
    capacity = 128 * num_envs
    buf = PrioritizedReplayBuffer(capacity, SPEC, num_envs=num_envs, seed=0)
    stats = {"batches": 0}
    rng = np.random.default_rng(1)

    def reader(stop):
        while not stop.is_set():
            if len(buf) < 32:
                continue
            batch = buf.sample(32)
            check_next_obs_encoding(batch, num_envs)
            assert np.isfinite(batch["weights"].numpy()).all() and (batch["weights"].numpy() > 0).all()
            # by now some of these slots may have been overwritten: those updates are ignored
            buf.update_priorities(batch["indices"], rng.uniform(0.0, 5.0, 32))
            stats["batches"] += 1

    data = run_concurrently(buf, reader, lambda: stats["batches"], p_term=0.05, p_trunc=0.02)
    written = len(data["obs"])
    assert written > 2 * capacity // num_envs  # the ring wrapped while sampling
    model = Model(capacity, num_envs)
    model.append(data)
    assert len(buf) == len(model)
    ids = model.sampleable_ids()
    p = buf.priorities(ids)
    assert np.isfinite(p).all() and (p > 0).all()
    unfinished = [i for i in range(model.end_id - num_envs, model.end_id) if not model.sampleable(i)]
    np.testing.assert_array_equal(buf.priorities(np.array(unfinished, dtype=np.int64)), 0.0)
    check_transition_batch(buf.sample(64), model, 64)


@pytest.mark.parametrize("num_envs", [1, 2])
def test_adding_while_sampling_windows(num_envs):
    buf = SequenceReplayBuffer(64 * num_envs, SPEC, num_envs=num_envs, seed=0)
    count = [0]

    def reader(stop):
        while not stop.is_set():
            if buf._core.written < 20:
                continue
            batch = buf.sample(16, 8, within_episode=count[0] % 2 == 1)
            obs = batch["obs"].numpy()
            t0, e = np.divmod(batch["indices"].numpy(), num_envs)
            np.testing.assert_array_equal(obs[:, :, 0], t0[:, None] + np.arange(8))
            np.testing.assert_array_equal(obs[:, :, 1], np.broadcast_to(e[:, None], (16, 8)))
            done = (batch["terminated"] | batch["truncated"]).numpy()
            np.testing.assert_array_equal(batch["next_obs"].numpy()[:, :, 0], obs[:, :, 0] + np.where(done, 0.5, 1.0))
            np.testing.assert_array_equal(batch["is_first"].numpy()[:, 1:], done[:, :-1])
            if count[0] % 2:
                assert not done[:, :-1].any()
            count[0] += 1

    data = run_concurrently(buf, reader, lambda: count[0], p_term=0.03, p_trunc=0.0)
    assert len(data["obs"]) > 2 * 64
