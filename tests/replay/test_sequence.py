import threading

import numpy as np
import pytest
import torch

from pymbrl.replay import SequenceReplayBuffer

from .helpers import Model, chi_square, chi_square_threshold, feed, generate, make_spec

SPEC = make_spec()


def filled(num_envs, steps_per_env, steps, seed=0, chunk=7, **gen):
    buf = SequenceReplayBuffer(steps_per_env * num_envs, SPEC, num_envs=num_envs, seed=seed)
    model = Model(steps_per_env * num_envs, num_envs)
    rng = np.random.default_rng(seed)
    for t0 in range(0, steps, chunk):
        data = generate(rng, min(chunk, steps - t0), num_envs, t0=t0, **gen)
        feed(buf, data, "extend" if t0 % 2 else "add")
        model.append(data)
    return buf, model


def check_windows(batch, model, length, within_episode=False):
    """Each window is `length` consecutive, sampleable steps of one stream, every field matches the
    history, and is_first is set exactly where an episode starts."""
    b = {k: v.numpy() for k, v in batch.items()}
    n = len(b["indices"])
    assert b["obs"].shape == (n, length, 2) and b["is_first"].shape == (n, length)
    starts = []
    for i, start in enumerate(b["indices"]):
        t0, e = divmod(int(start), model.num_envs)
        starts.append((t0, e))
        for k in range(length):
            t = t0 + k
            ctx = f"window {start} step {k}"
            assert model.sampleable(t * model.num_envs + e), ctx
            np.testing.assert_array_equal(b["obs"][i, k], [t, e], err_msg=ctx)
            np.testing.assert_array_equal(b["action"][i, k], model.hist["action"][t, e], err_msg=ctx)
            assert b["reward"][i, k] == model.hist["reward"][t, e], ctx
            assert b["terminated"][i, k] == model.hist["terminated"][t, e], ctx
            assert b["truncated"][i, k] == model.hist["truncated"][t, e], ctx
            np.testing.assert_array_equal(b["next_obs"][i, k], model.next_obs(t, e), err_msg=ctx)
            assert b["is_first"][i, k] == model.is_first(t, e), ctx
            if within_episode and k > 0:
                assert not model.done(t - 1, e), f"{ctx}: the window crosses an episode boundary"
    return starts


def valid_starts(model, length, within_episode):
    """Windows the buffer must be able to draw: every step stored and followed by a stored step,
    and with within_episode no episode end before the last step."""
    out = set()
    for e in range(model.num_envs):
        for t0 in range(model.oldest_step, model.written - length):
            if within_episode and any(model.done(t, e) for t in range(t0, t0 + length - 1)):
                continue
            out.add((t0, e))
    return out


@pytest.mark.parametrize("within_episode", [False, True])
@pytest.mark.parametrize("length", [1, 3, 6])
@pytest.mark.parametrize("num_envs", [1, 3])
def test_windows_are_consecutive_steps_of_one_stream(num_envs, length, within_episode):
    buf, model = filled(num_envs, 14, 60, seed=length + 10 * num_envs, p_term=0.1, p_trunc=0.08)  # wraps 4 times
    seen = set()
    for _ in range(30):
        batch = buf.sample(16, length, within_episode=within_episode)
        seen.update(check_windows(batch, model, length, within_episode))
    required = valid_starts(model, length, within_episode)
    assert required, "the history should allow some windows"
    assert required <= seen, f"never drawn: {sorted(required - seen)[:10]}"
    if within_episode:
        assert not batch["is_first"][:, 1:].any()


def test_is_first_marks_episode_starts_inside_windows():
    # Episodes of exactly 4 steps: with windows of 6 steps every window holds an episode start.
    buf, model = filled(1, 40, 30, done_every=4)
    batch = buf.sample(64, 6)
    check_windows(batch, model, 6)
    t0 = batch["indices"].numpy()[:, None] + np.arange(6)
    np.testing.assert_array_equal(batch["is_first"].numpy(), t0 % 4 == 0)
    assert batch["is_first"].any(dim=1).all()
    assert batch["is_first"][batch["indices"] == 0, 0].all()  # t == 0 starts an episode


def test_within_episode_windows_are_uniform_over_valid_windows():
    buf, model = filled(1, 60, 60, seed=3, p_term=0.12, p_trunc=0.0)
    length = 4
    valid = sorted(valid_starts(model, length, True))
    assert 10 < len(valid) < 50
    draws = np.concatenate([buf.sample(50, length, within_episode=True)["indices"].numpy() for _ in range(400)])
    pos = {t0: k for k, (t0, _) in enumerate(valid)}
    assert set(draws.tolist()) == set(pos)
    counts = np.bincount([pos[int(d)] for d in draws], minlength=len(valid))
    assert chi_square(counts, np.full(len(valid), 1 / len(valid))) < chi_square_threshold(len(valid) - 1)


def run_with_timeout(fn, seconds=30):
    """Run fn in a daemon thread; fail (rather than hang the suite) if it does not return."""
    result = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - reported to the caller
            result["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"did not return within {seconds} s"
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.mark.parametrize("num_envs", [1, 2])
def test_windows_longer_than_any_episode_raise_within_episode(num_envs):
    buf, _ = filled(num_envs, 2000, 1500, chunk=500, done_every=3)  # episodes of 3 steps
    with pytest.raises(ValueError, match="length"):
        run_with_timeout(lambda: buf.sample(32, 4, within_episode=True))
    run_with_timeout(lambda: buf.sample(32, 3, within_episode=True))  # 3 fits
    batch = buf.sample(32, 4)  # crossing boundaries is fine without within_episode
    assert batch["is_first"].any(dim=1).all()


def test_rare_valid_windows_are_still_found():
    # 1500 steps in episodes of 2, except one episode of 12 steps: 3 windows of 10 fit in it.
    data = generate(np.random.default_rng(0), 1500, 1, done_every=2)
    data["terminated"][700:712, 0] = False
    data["terminated"][711, 0] = True
    done = data["terminated"][:, 0]
    data["next_obs"][:, 0, 0] = data["obs"][:, 0, 0] + np.where(done, 0.5, 1.0)
    buf = SequenceReplayBuffer(2000, SPEC, seed=1)
    model = Model(2000, 1)
    feed(buf, data, "extend")
    model.append(data)
    batch = run_with_timeout(lambda: buf.sample(64, 10, within_episode=True))
    assert set(batch["indices"].tolist()) == {700, 701, 702}
    check_windows(batch, model, 10, within_episode=True)


def test_length_larger_than_stored_raises():
    buf, model = filled(1, 16, 10, p_term=0, p_trunc=0)  # 10 steps, the newest unfinished
    for too_long in (10, 11, 1000):
        with pytest.raises(ValueError, match="length"):
            buf.sample(4, too_long)
    batch = buf.sample(4, 9)
    assert batch["indices"].tolist() == [0, 0, 0, 0]
    check_windows(batch, model, 9)


@pytest.mark.parametrize("num_envs", [1, 2])
def test_length_larger_than_stored_raises_after_wrap_around(num_envs):
    buf, model = filled(num_envs, 8, 50, p_term=0.05)  # 8 steps stored per stream
    with pytest.raises(ValueError, match="length"):
        buf.sample(4, 8)
    with pytest.raises(ValueError, match="length"):
        buf.sample(4, 8, within_episode=True)
    check_windows(buf.sample(8, 7), model, 7)


def test_sequence_batch_layout():
    buf, _ = filled(2, 20, 20)
    batch = buf.sample(5, 3)
    shapes = {k: (v.dtype, tuple(v.shape)) for k, v in batch.items()}
    assert shapes == {"obs": (torch.float32, (5, 3, 2)), "action": (torch.int64, (5, 3, 1)),
                      "reward": (torch.float32, (5, 3)), "terminated": (torch.bool, (5, 3)),
                      "truncated": (torch.bool, (5, 3)), "next_obs": (torch.float32, (5, 3, 2)),
                      "is_first": (torch.bool, (5, 3)), "indices": (torch.int64, (5,))}
    assert batch.is_first is batch["is_first"]


def test_sequence_buffer_has_no_transition_sampling():
    buf, _ = filled(1, 20, 20)
    with pytest.raises(TypeError):
        buf.sample(4)
