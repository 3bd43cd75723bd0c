"""Fuzz targets of the replay buffers (uniform, prioritized, sequence) and their file format.

Stateful: each buffer kind runs random adds, extends, samples, priority updates, clears, refused
adds and save/load round trips, checked against a pure-Python reference of what it must hold.
Files: a saved buffer with bit flips anywhere, truncated at any length, or with a header value
replaced (and the header checksum recomputed, so the validation behind it is reached) must raise a
``ValueError`` naming the file, or load into a buffer that works; flips and truncations must
never load content different from the original.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pymbrl.replay import PrioritizedReplayBuffer, ReplayBuffer, SequenceReplayBuffer

SPEC = {"obs": ((2,), torch.float32), "action": ((1,), torch.int64), "reward": ((), torch.float32),
        "terminated": ((), torch.bool), "truncated": ((), torch.bool)}
GAMMA = 0.9


class Reference:
    """What a buffer must hold: every step ever added (step t of stream e has obs [t, e], action
    [t * num_envs + e], next_obs [t + 0.5, e] where the step ended an episode), and the counters."""

    def __init__(self, capacity: int, num_envs: int, n_step: int) -> None:
        self.num_envs, self.n_step, self.steps_per_env = num_envs, n_step, capacity // num_envs
        self.reward: list[np.ndarray] = []
        self.terminated: list[np.ndarray] = []
        self.truncated: list[np.ndarray] = []
        self.cleared_at = 0

    @property
    def written(self) -> int:
        return len(self.reward)

    @property
    def oldest_step(self) -> int:
        return self.written - min(self.written - self.cleared_at, self.steps_per_env)

    def done(self, t: int, e: int) -> bool:
        return bool(self.terminated[t][e] or self.truncated[t][e])

    def sampleable(self, id_: int) -> bool:
        t, e = divmod(int(id_), self.num_envs)
        return self.oldest_step <= t < self.written and (t < self.written - 1 or self.done(t, e))

    def sampleable_ids(self) -> list[int]:
        return [i for i in range(self.oldest_step * self.num_envs, self.written * self.num_envs) if self.sampleable(i)]

    def next_obs(self, t: int, e: int) -> list[float]:
        return [t + 0.5, e] if self.done(t, e) else [t + 1, e]

    def is_first(self, t: int, e: int) -> bool:
        return t == self.cleared_at or self.done(t - 1, e)

    def transition(self, id_: int) -> dict:
        t, e = divmod(int(id_), self.num_envs)
        ret, disc, k = 0.0, 1.0, 0
        while True:
            ret += disc * float(self.reward[t + k][e])
            disc *= GAMMA
            if self.terminated[t + k][e]:
                out = dict(reward=ret, discount=0.0, terminated=True, truncated=False, next_obs=[t + k + 0.5, e])
                break
            trunc = bool(self.truncated[t + k][e])
            if trunc or k + 1 == self.n_step or not self.sampleable((t + k + 1) * self.num_envs + e):
                out = dict(reward=ret, discount=disc, terminated=False, truncated=trunc, next_obs=self.next_obs(t + k, e))
                break
            k += 1
        if self.n_step == 1:
            out.update(terminated=bool(self.terminated[t][e]), truncated=bool(self.truncated[t][e]))
        return dict(out, obs=[t, e], action=[id_])


def steps_data(ref: Reference, flags: list[tuple[bool, bool]], rewards: list[float]) -> dict[str, np.ndarray]:
    """len(flags) // num_envs steps for every stream in the encoding above, arrays [T, E, ...]."""
    E, T = ref.num_envs, len(flags) // ref.num_envs
    t = np.arange(ref.written, ref.written + T)[:, None].repeat(E, 1)
    e = np.arange(E)[None, :].repeat(T, 0)
    term = np.array([f[0] for f in flags[:T * E]]).reshape(T, E)
    trunc = np.array([f[1] and not f[0] for f in flags[:T * E]]).reshape(T, E)
    done = term | trunc
    return {"obs": np.stack([t, e], -1).astype(np.float32), "action": (t * E + e)[..., None].astype(np.int64),
            "reward": np.array(rewards[:T * E], np.float32).reshape(T, E), "terminated": term, "truncated": trunc,
            "next_obs": np.stack([t + np.where(done, 0.5, 1.0), e], -1).astype(np.float32)}


def state_of(buf) -> dict:
    return {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v) for k, v in buf._core.snapshot().items()}


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


flag = st.tuples(st.booleans(), st.booleans()).map(lambda f: (f[0] and f[1], f[1] and not f[0]))  # ~1/4 each
reward = st.floats(-10, 10, width=32)


class TransitionMachine(RuleBasedStateMachine):
    cls: type = ReplayBuffer

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="pymbrl-fuzz-replay-")

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def kwargs(self, n_step: int) -> dict:
        return dict(n_step=n_step, gamma=GAMMA)

    @initialize(num_envs=st.integers(1, 3), steps=st.integers(1, 6), n_step=st.integers(1, 3), seed=st.integers(0, 2**64 - 1))
    def build(self, num_envs: int, steps: int, n_step: int, seed: int) -> None:
        n_step = n_step if self.cls is not SequenceReplayBuffer else 1
        self.buf = self.cls(steps * num_envs, SPEC, num_envs=num_envs, seed=seed, **self.kwargs(n_step))
        self.ref = Reference(steps * num_envs, num_envs, n_step)

    def store(self, data: dict, extend: bool) -> None:
        E = self.ref.num_envs
        if extend:
            self.buf.extend(**{k: (v[:, 0] if E == 1 else v) for k, v in data.items()})
        else:
            self.buf.add(**{k: (v[0, 0] if E == 1 else v[0]) for k, v in data.items()})
        for k in range(len(data["reward"])):
            self.ref.reward.append(data["reward"][k])
            self.ref.terminated.append(data["terminated"][k])
            self.ref.truncated.append(data["truncated"][k])

    @rule(flags=st.lists(flag, min_size=3, max_size=3), rewards=st.lists(reward, min_size=3, max_size=3))
    def add(self, flags, rewards) -> None:
        E = self.ref.num_envs  # at most 3
        self.store(steps_data(self.ref, flags[:E], rewards[:E]), extend=False)

    @rule(data=st.data())
    def extend(self, data) -> None:
        T, E = data.draw(st.integers(1, 8), label="steps"), self.ref.num_envs
        flags = data.draw(st.lists(flag, min_size=T * E, max_size=T * E), label="flags")
        rewards = data.draw(st.lists(reward, min_size=T * E, max_size=T * E), label="rewards")
        self.store(steps_data(self.ref, flags, rewards), extend=True)

    @rule(field=st.sampled_from(["action", "obs", "reward", "terminated"]))
    def refused_add(self, field: str) -> None:
        E = self.ref.num_envs
        step = {k: (v[0, 0] if E == 1 else v[0]) for k, v in steps_data(self.ref, [(False, False)] * E, [0.0] * E).items()}
        bad = {"action": np.full_like(step["action"], 2**63 - 1, dtype=np.uint64) + np.uint64(1),
               "obs": np.full(step["obs"].shape, 1e300), "reward": np.full(np.shape(step["reward"]), -1e39),
               "terminated": np.full(np.shape(step["terminated"]), 1.0)}[field]
        before = state_of(self.buf)
        try:
            self.buf.add(**dict(step, **{field: bad}))
        except (ValueError, TypeError) as e:
            assert str(e).startswith(field), e
        else:
            raise AssertionError(f"{field}={bad!r} was stored")
        assert_same_state(before, state_of(self.buf))

    @precondition(lambda self: hasattr(self, "ref") and self.ref.sampleable_ids() and self.cls is not SequenceReplayBuffer)
    @rule(data=st.data())
    def sample(self, data) -> None:
        n = data.draw(st.integers(1, len(self.ref.sampleable_ids())), label="batch_size")
        kwargs = {}
        if self.cls is PrioritizedReplayBuffer:
            kwargs["beta"] = data.draw(st.sampled_from([0.0, 0.4, 1.0, 1e6]), label="beta")
        try:
            batch = {k: v.numpy() for k, v in self.buf.sample(n, **kwargs).items()}
        except ValueError as error:  # with eps = 0, priorities of 0 everywhere leave nothing to draw
            assert "none can be drawn" in str(error), error
            assert not np.asarray(self.buf.priorities(self.ref.sampleable_ids())).any()
            return
        for i, id_ in enumerate(batch["indices"].tolist()):
            assert self.ref.sampleable(id_), id_
            exp = self.ref.transition(id_)
            np.testing.assert_array_equal(batch["obs"][i], exp["obs"])
            np.testing.assert_array_equal(batch["action"][i], exp["action"])
            np.testing.assert_array_equal(batch["next_obs"][i], exp["next_obs"])
            assert batch["terminated"][i] == exp["terminated"] and batch["truncated"][i] == exp["truncated"]
            np.testing.assert_allclose(batch["reward"][i], exp["reward"], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(batch["discount"][i], exp["discount"], rtol=1e-6)
        if "weights" in batch:
            w = batch["weights"]
            assert np.isfinite(w).all() and (w > 0).all() and (w <= 1).all(), w
            if kwargs["beta"] == 0.0:
                assert (w == 1).all(), w

    @rule(n=st.integers(-3, 0) | st.integers(2**24, 2**63 - 1))
    def oversized_sample(self, n: int) -> None:
        # Beyond what is stored (transitions) or the byte limit of a batch (windows): refused
        # before anything is allocated, and nothing changes.
        before = state_of(self.buf)
        try:
            self.buf.sample(n, 2) if self.cls is SequenceReplayBuffer else self.buf.sample(n)
        except ValueError as e:
            assert str(e).startswith(("batch_size", "length")), e
        else:
            raise AssertionError(f"sample({n}) was accepted")
        assert_same_state(before, state_of(self.buf))

    @rule()
    def clear(self) -> None:
        self.buf.clear()
        self.ref.cleared_at = self.ref.written

    @rule(n=st.integers(1, 3))
    def save_and_load(self, n: int) -> None:
        path = os.path.join(self.dir, "buffer.rb")
        self.buf.save(path)
        loaded = type(self.buf).load(path)
        assert_same_state(state_of(self.buf), state_of(loaded))
        if self.ref.sampleable_ids() and self.cls is not SequenceReplayBuffer:
            n = min(n, len(self.buf))
            try:
                a = self.buf.sample(n)
            except ValueError as error:  # every priority 0 (eps = 0): the loaded copy cannot draw either
                assert "none can be drawn" in str(error)
                with pytest.raises(ValueError, match="none can be drawn"):
                    loaded.sample(n)
            else:
                b = loaded.sample(n)
                for k in a:
                    torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
        self.buf = loaded

    @invariant()
    def length(self) -> None:
        if hasattr(self, "ref"):
            assert len(self.buf) == len(self.ref.sampleable_ids())


class PrioritizedMachine(TransitionMachine):
    cls = PrioritizedReplayBuffer

    def kwargs(self, n_step: int) -> dict:
        return dict(n_step=n_step, gamma=GAMMA, alpha=0.7, beta=0.5, eps=0.0)

    @precondition(lambda self: hasattr(self, "ref") and self.ref.sampleable_ids())
    @rule(data=st.data())
    def update_priorities(self, data) -> None:
        ids = data.draw(st.lists(st.sampled_from(self.ref.sampleable_ids()), min_size=1, max_size=4, unique=True), label="ids")
        values = data.draw(st.lists(st.sampled_from([0.0, 5e-324, 1e-300, 1e-30, 0.5, 1.0, 3.0, 1e30, 1e300, -1.0,
                                                     float("nan"), float("inf")]), min_size=len(ids), max_size=len(ids)),
                           label="priorities")
        before = state_of(self.buf)
        if any(not (np.isfinite(v) and v >= 0) or v ** 0.7 > 1e250 for v in values):
            try:
                self.buf.update_priorities(np.array(ids), np.array(values))
            except ValueError as e:
                assert str(e).startswith("priorities"), e
            else:
                raise AssertionError(f"priorities {values} were accepted")
            assert_same_state(before, state_of(self.buf))
            return
        self.buf.update_priorities(np.array(ids), np.array(values))
        expected = [0.0 if v == 0 else max(v ** 0.7, np.finfo(np.float64).tiny) for v in values]
        np.testing.assert_allclose(self.buf.priorities(np.array(ids)), expected, rtol=1e-12)


class SequenceMachine(TransitionMachine):
    cls = SequenceReplayBuffer

    def kwargs(self, n_step: int) -> dict:
        return {}

    @precondition(lambda self: hasattr(self, "ref") and self.ref.written - self.ref.oldest_step >= 2)
    @rule(data=st.data(), within=st.booleans())
    def sample_windows(self, data, within: bool) -> None:
        ref = self.ref
        length = data.draw(st.integers(1, ref.written - ref.oldest_step - 1), label="length")
        n = data.draw(st.integers(1, 6), label="batch_size")
        try:
            batch = {k: v.numpy() for k, v in self.buf.sample(n, length, within_episode=within).items()}
        except ValueError as e:
            assert within and "no stored episode" in str(e), e
            return
        for i, start in enumerate(batch["indices"].tolist()):
            t0, e = divmod(start, ref.num_envs)
            assert ref.oldest_step <= t0 and t0 + length <= ref.written - 1
            for k in range(length):
                t = t0 + k
                np.testing.assert_array_equal(batch["obs"][i, k], [t, e])
                np.testing.assert_array_equal(batch["next_obs"][i, k], ref.next_obs(t, e))
                assert batch["is_first"][i, k] == ref.is_first(t, e), (t, e)
                if within and k > 0:
                    assert not ref.is_first(t, e)


TestUniformReplay = TransitionMachine.TestCase
TestPrioritizedReplay = PrioritizedMachine.TestCase
TestSequenceReplay = SequenceMachine.TestCase


# --- files ----------------------------------------------------------------------------------------

CLASSES = [ReplayBuffer, PrioritizedReplayBuffer, SequenceReplayBuffer]
_SAVED: dict[type, tuple[bytes, dict]] = {}


def saved(cls: type) -> tuple[bytes, dict]:
    """A saved buffer of `cls` that has wrapped, with episode ends and (prioritized) priorities, and
    the state it was saved from."""
    if cls not in _SAVED:
        buf = cls(12, SPEC, num_envs=2, seed=3)
        ref = Reference(12, 2, 1)
        rng = np.random.default_rng(0)
        flags = [(bool(a), bool(b)) for a, b in rng.random((20, 2)) < [0.2, 0.1]]
        buf.extend(**steps_data(ref, flags, rng.normal(size=20).tolist()))
        if cls is PrioritizedReplayBuffer:
            batch = buf.sample(4)
            buf.update_priorities(batch["indices"], np.array([0.5, 2.0, 1e-3, 7.0]))
        d = tempfile.mkdtemp(prefix="pymbrl-fuzz-replay-")
        try:
            buf.save(os.path.join(d, "b.rb"))
            with open(os.path.join(d, "b.rb"), "rb") as f:
                _SAVED[cls] = (f.read(), state_of(buf))
        finally:
            shutil.rmtree(d)
    return _SAVED[cls]


def load_or_refuse(cls: type, data: bytes) -> object | None:
    """The buffer `data` loads into, or None where it is refused with a ValueError naming the file."""
    d = tempfile.mkdtemp(prefix="pymbrl-fuzz-replay-")
    path = os.path.join(d, "b.rb")
    try:
        with open(path, "wb") as f:
            f.write(data)
        try:
            return cls.load(path)
        except ValueError as e:
            assert str(e).startswith(f"path: {path!r}: "), e
            return None
    finally:
        shutil.rmtree(d)


@given(cls=st.sampled_from(CLASSES), data=st.data())
def test_bit_flips_anywhere_are_refused(cls, data) -> None:
    original, state = saved(cls)
    bits = data.draw(st.lists(st.integers(0, 8 * len(original) - 1), min_size=1, max_size=3, unique=True), label="bits")
    mutated = bytearray(original)
    for b in bits:
        mutated[b // 8] ^= 1 << (b % 8)
    loaded = load_or_refuse(cls, bytes(mutated))
    if loaded is not None:  # only a flip that changes nothing could load: then the content is the original
        assert_same_state(state, state_of(loaded))


@given(cls=st.sampled_from(CLASSES), data=st.data())
def test_truncation_at_any_length_and_extension_are_refused(cls, data) -> None:
    original, _ = saved(cls)
    if data.draw(st.booleans(), label="truncate"):
        mutated = original[:data.draw(st.integers(0, len(original) - 1), label="length")]
    else:
        mutated = original + data.draw(st.binary(min_size=1, max_size=16), label="tail")
    assert load_or_refuse(cls, mutated) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**64, 2**64) | st.sampled_from([0, 1, -1, 2**31, 2**62, 2**63 - 1, 2**63])
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
    | st.sampled_from(["<f4", "|u1", "<i8", "|b1", "<c16", "|O", "obs"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


def paths(value, prefix=()):
    """Every place in a JSON value that can be replaced."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, prefix + (i,))


def replaced(value, path, new):
    if not path:
        return new
    out = dict(value) if isinstance(value, dict) else list(value)
    out[path[0]] = replaced(value[path[0]], path[1:], new)
    return out


def signed(header: dict, section: bytes) -> bytes:
    raw = json.dumps(header).encode()
    start = b"PYMBRLRB" + struct.pack("<IQ", 2, len(raw))
    out = start + struct.pack("<I", zlib.crc32(raw, zlib.crc32(start))) + raw
    return out + b"\0" * (-len(out) % 8) + section


@given(cls=st.sampled_from(CLASSES), data=st.data())
def test_edited_header_values_are_refused_or_give_a_working_buffer(cls, data) -> None:
    original, _ = saved(cls)
    (length,) = struct.unpack("<Q", original[12:20])
    end = 24 + length
    header, section = json.loads(original[24:end]), original[end + (-end % 8):]
    where = data.draw(st.sampled_from(list(paths(header))[1:]), label="where")
    new = data.draw(json_values, label="value")
    loaded = load_or_refuse(cls, signed(replaced(header, where, new), section))
    if loaded is None:
        return
    # A header that still describes a valid buffer (e.g. another gamma): it must work like one.
    d = tempfile.mkdtemp(prefix="pymbrl-fuzz-replay-")
    try:
        loaded.save(os.path.join(d, "again.rb"))
        assert_same_state(state_of(loaded), state_of(cls.load(os.path.join(d, "again.rb"))))
    finally:
        shutil.rmtree(d)
    if len(loaded) and cls is not SequenceReplayBuffer:
        assert len(loaded.sample(min(4, len(loaded)))["indices"]) == min(4, len(loaded))
