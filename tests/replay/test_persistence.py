import json
import os
import re
import struct

import numpy as np
import pytest
import torch

import pymbrl.replay.buffers as buffers_module
from pymbrl.replay import PrioritizedReplayBuffer, ReplayBuffer, SequenceReplayBuffer

from .helpers import (Model, assert_same_batch, assert_same_state, check_transition_batch, feed, generate,
                      make_spec, snapshot)

SPEC = make_spec()
CLASSES = [ReplayBuffer, PrioritizedReplayBuffer, SequenceReplayBuffer]
KWARGS = {
    ReplayBuffer: dict(n_step=3, gamma=0.9),
    PrioritizedReplayBuffer: dict(n_step=2, gamma=0.8, alpha=0.7, beta=0.5, eps=1e-3),
    SequenceReplayBuffer: {},
}


def built(cls, num_envs=1, steps=70, seed=0):
    """A buffer that has wrapped around (20 steps per stream), with final observations, priorities
    and a generator that has moved."""
    capacity = 20 * num_envs
    buf = cls(capacity, SPEC, num_envs=num_envs, seed=seed, **KWARGS[cls])
    model = Model(capacity, num_envs, KWARGS[cls].get("n_step", 1), KWARGS[cls].get("gamma", 0.99))
    rng = np.random.default_rng(seed)
    for t0 in range(0, steps, 10):
        chunk = generate(rng, 10, num_envs, t0=t0, p_term=0.15, p_trunc=0.1)
        feed(buf, chunk, "extend")
        model.append(chunk)
        step(buf, rng)
    return buf, model


def step(buf, rng):
    """One round of use: a sample and, for prioritized buffers, a priority update."""
    if isinstance(buf, SequenceReplayBuffer):
        return buf.sample(6, 4, within_episode=bool(rng.random() < 0.5))
    batch = buf.sample(min(6, len(buf)))
    if isinstance(buf, PrioritizedReplayBuffer):
        buf.update_priorities(batch["indices"], rng.uniform(0.1, 3.0, len(batch["indices"])))
    return batch


@pytest.mark.parametrize("num_envs", [1, 3])
@pytest.mark.parametrize("cls", CLASSES)
def test_round_trip_restores_everything_and_sampling_continues_identically(cls, num_envs, tmp_path):
    original, model = built(cls, num_envs)
    assert original._core.snapshot()["final_pool"].size > 0
    path = tmp_path / "buffer.rb"
    original.save(path)
    loaded = cls.load(str(path))
    assert type(loaded) is cls
    assert (loaded.capacity, loaded.num_envs, loaded.n_step, loaded.gamma) == \
        (original.capacity, original.num_envs, original.n_step, original.gamma)
    assert (loaded.alpha, loaded.beta, loaded.eps) == (original.alpha, original.beta, original.eps)
    assert loaded.spec == original.spec
    assert len(loaded) == len(original) == len(model)
    assert_same_state(snapshot(original), snapshot(loaded))
    if cls is PrioritizedReplayBuffer:
        assert loaded.max_priority == original.max_priority
        ids = np.arange(model.end_id)
        np.testing.assert_array_equal(loaded.priorities(ids), original.priorities(ids))
    # Lockstep: the same calls on both give the same batches, also after new data.
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    for t0 in range(70, 100, 5):
        assert_same_batch(step(original, rng_a), step(loaded, rng_b))
        chunk = generate(np.random.default_rng(t0), 5, num_envs, t0=t0)
        feed(original, chunk, "add")
        feed(loaded, chunk, "extend")
        model.append(chunk)
    assert_same_state(snapshot(original, raw_rows=False), snapshot(loaded, raw_rows=False))
    if cls is not SequenceReplayBuffer:
        check_transition_batch(loaded.sample(16), model, 16)


def test_empty_buffer_round_trip(tmp_path):
    for cls in CLASSES:
        buf = cls(8, SPEC, seed=3)
        buf.save(tmp_path / cls.__name__)
        loaded = cls.load(tmp_path / cls.__name__)
        assert len(loaded) == 0
        assert_same_state(snapshot(buf), snapshot(loaded))
        chunk = generate(np.random.default_rng(0), 5, 1)
        feed(buf, chunk, "extend")
        feed(loaded, chunk, "extend")
        if cls is SequenceReplayBuffer:
            assert_same_batch(buf.sample(3, 2), loaded.sample(3, 2))
        else:
            assert_same_batch(buf.sample(3), loaded.sample(3))


@pytest.mark.parametrize("saved, loader", [(a, b) for a in CLASSES for b in CLASSES if a is not b])
def test_loading_another_class_names_the_class(saved, loader, tmp_path):
    path = tmp_path / "buffer.rb"
    built(saved, steps=30)[0].save(path)
    with pytest.raises(ValueError) as info:
        loader.load(path)
    assert re.search(rf"\b{saved.__name__}\b", str(info.value)), str(info.value)


def saved_bytes(tmp_path, cls=ReplayBuffer):
    path = tmp_path / "good.rb"
    built(cls, steps=30)[0].save(path)
    return path.read_bytes()


def header_end(data):
    (length,) = struct.unpack("<Q", data[12:20])
    return 20 + length


def patched(data, at, new):
    return data[:at] + new + data[at + len(new):]


CORRUPTIONS = {
    "random bytes": lambda d: np.random.default_rng(0).bytes(len(d)),
    "empty": lambda d: b"",
    "magic only": lambda d: d[:8],
    "magic and version": lambda d: d[:12],
    "wrong magic": lambda d: b"PYMBRLRX" + d[8:],
    "a json file": lambda d: json.dumps({"class": "ReplayBuffer"}).encode(),
    "version 2": lambda d: patched(d, 8, struct.pack("<I", 2)),
    "version 0": lambda d: patched(d, 8, struct.pack("<I", 0)),
    "version 2**32-1": lambda d: patched(d, 8, struct.pack("<I", 2**32 - 1)),
    "truncated in the header": lambda d: d[:header_end(d) - 10],
    "truncated after the header": lambda d: d[:header_end(d)],
    "truncated in half": lambda d: d[:len(d) // 2],
    "last bytes cut": lambda d: d[:-8],
    "header not json": lambda d: patched(d, 20, b"#"),
    "header length too short": lambda d: patched(d, 12, struct.pack("<Q", header_end(d) - 20 - 3)),
    "header length past the end": lambda d: patched(d, 12, struct.pack("<Q", len(d) + 1000)),
    "header length 2**50": lambda d: patched(d, 12, struct.pack("<Q", 2**50)),
    "header length 2**64-1": lambda d: patched(d, 12, struct.pack("<Q", 2**64 - 1)),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corrupt_files_raise_value_error(name, tmp_path):
    path = tmp_path / "bad.rb"
    path.write_bytes(CORRUPTIONS[name](saved_bytes(tmp_path)))
    with pytest.raises(ValueError, match="version" if name.startswith("version") else None):
        ReplayBuffer.load(path)


def tampered_array(data, array, fn):
    """Rewrite one array of a saved file in place (same size), keeping the header."""
    end = header_end(data)
    header = json.loads(data[20:end])
    base = end + (-end % 8)
    entry = next(e for e in header["arrays"] if e["name"] == array)
    start = base + entry["offset"]
    a = np.frombuffer(data[start:start + entry["nbytes"]], dtype=entry["dtype"]).copy()
    return data[:start] + fn(a).tobytes() + data[start + entry["nbytes"]:]


def test_inconsistent_arrays_are_refused(tmp_path):
    data = saved_bytes(tmp_path)
    path = tmp_path / "bad.rb"
    cases = [("final_slots", lambda a: np.full_like(a, -1), "final_slots|free_slots"),
             ("final_slots", lambda a: a + 1000, "final_slots"),
             ("rng", lambda a: np.zeros_like(a), "rng")]
    for array, fn, name in cases:
        path.write_bytes(tampered_array(data, array, fn))
        with pytest.raises(ValueError, match=name):
            ReplayBuffer.load(path)


def test_same_contents_save_to_the_same_bytes(tmp_path):
    # The file must depend only on the buffer's contents, not on whatever memory the rows were
    # allocated from (row padding is never written). Dirty the heap with a same-sized buffer whose
    # extra field fills the padding, free it, then build the buffer.
    dirty_spec = {**SPEC, "fill": ((2,), torch.uint8)}  # same row size (24 bytes) as SPEC

    def build_after_dirtying(byte):
        junk = ReplayBuffer(64, dirty_spec, seed=0)
        chunk = generate(np.random.default_rng(0), 64, 1)
        chunk["fill"] = np.full((64, 1, 2), byte, np.uint8)
        feed(junk, chunk, "extend")
        del junk
        buf = ReplayBuffer(64, SPEC, seed=0)
        feed(buf, generate(np.random.default_rng(1), 40, 1), "extend")
        return buf

    a, b = build_after_dirtying(0xAB), build_after_dirtying(0xCD)
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


class Boom(OSError):
    pass


def failing(*args, **kwargs):
    raise Boom("disk full")


class FailingWrites:
    """A file whose second write fails (the header is written, the arrays are not)."""

    def __init__(self, f):
        self.f, self.writes = f, 0

    def write(self, data):
        self.writes += 1
        if self.writes == 2:
            raise Boom("disk full")
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.f.__exit__(*exc)


def fail_mid_write(monkeypatch):
    real_open = open
    monkeypatch.setattr(buffers_module, "open", lambda *a, **k: FailingWrites(real_open(*a, **k)), raising=False)


FAILURES = {
    "os.replace": lambda mp: mp.setattr(os, "replace", failing),
    "os.fsync": lambda mp: mp.setattr(os, "fsync", failing),
    "a write": fail_mid_write,
}


@pytest.mark.parametrize("failure", list(FAILURES))
@pytest.mark.parametrize("cls", CLASSES)
def test_a_failed_save_keeps_the_previous_file_and_leaves_no_temporary(cls, failure, tmp_path, monkeypatch):
    buf, _ = built(cls, steps=30)
    path = tmp_path / "buffer.rb"
    buf.save(path)
    previous = path.read_bytes()
    feed(buf, generate(np.random.default_rng(5), 30, 1, t0=30), "extend")  # the next save would differ
    with monkeypatch.context() as mp:
        FAILURES[failure](mp)
        with pytest.raises(Boom):
            buf.save(path)
        with pytest.raises(Boom):
            buf.save(tmp_path / "new.rb")
    assert sorted(os.listdir(tmp_path)) == ["buffer.rb"]
    assert path.read_bytes() == previous
    cls.load(path)  # still a good file
    buf.save(path)  # and saving works again
    assert path.read_bytes() != previous
    assert sorted(os.listdir(tmp_path)) == ["buffer.rb"]
