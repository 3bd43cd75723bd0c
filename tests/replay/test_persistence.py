import json
import os
import re
import struct

import numpy as np
import pytest
import torch

import pymbrl._files as files_module
from pymbrl.replay import PrioritizedReplayBuffer, ReplayBuffer, SequenceReplayBuffer
from pymbrl.replay import files as replay_files

from .helpers import (Model, assert_same_batch, assert_same_state, check_transition_batch, feed, generate, join_file,
                      make_spec, resign_array, row_layout, snapshot, split_file)

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
    return 24 + length


def patched(data, at, new):
    return data[:at] + new + data[at + len(new):]


CORRUPTIONS = {
    "random bytes": lambda d: np.random.default_rng(0).bytes(len(d)),
    "empty": lambda d: b"",
    "magic only": lambda d: d[:8],
    "magic and version": lambda d: d[:12],
    "wrong magic": lambda d: b"PYMBRLRX" + d[8:],
    "a json file": lambda d: json.dumps({"class": "ReplayBuffer"}).encode(),
    "version 1": lambda d: patched(d, 8, struct.pack("<I", 1)),
    "version 3": lambda d: patched(d, 8, struct.pack("<I", 3)),
    "version 0": lambda d: patched(d, 8, struct.pack("<I", 0)),
    "version 2**32-1": lambda d: patched(d, 8, struct.pack("<I", 2**32 - 1)),
    "truncated in the header": lambda d: d[:header_end(d) - 10],
    "truncated after the header": lambda d: d[:header_end(d)],
    "truncated in half": lambda d: d[:len(d) // 2],
    "last bytes cut": lambda d: d[:-8],
    "header not json": lambda d: patched(d, 24, b"#"),
    "header length too short": lambda d: patched(d, 12, struct.pack("<Q", header_end(d) - 24 - 3)),
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
    header = json.loads(data[24:end])
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
    monkeypatch.setattr(files_module, "open", lambda *a, **k: FailingWrites(real_open(*a, **k)), raising=False)


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


# --- format version 2: checksums, strict structure, validated values ------------------------------

def test_the_format_is_version_2_with_a_checksum_per_section(tmp_path):
    data = saved_bytes(tmp_path)
    assert data[:8] == b"PYMBRLRB" and struct.unpack("<I", data[8:12]) == (2,) == (replay_files.FORMAT_VERSION,)
    header, _ = split_file(data)
    assert all(isinstance(e["crc32"], int) for e in header["arrays"])


def test_a_flipped_header_value_is_caught_by_the_header_checksum(tmp_path):
    # The example: "written": 20 -> 22 used to load and pair observations wrongly.
    data = saved_bytes(tmp_path)
    at = data.index(b'"written": ') + len(b'"written": ')
    path = tmp_path / "bad.rb"
    path.write_bytes(patched(data, at, bytes([data[at] ^ 0x02])))
    with pytest.raises(ValueError, match=r"header fails its checksum") as info:
        ReplayBuffer.load(path)
    assert repr(str(path)) in str(info.value)


@pytest.mark.parametrize("cls", CLASSES)
def test_a_flipped_byte_in_any_array_names_that_array(cls, tmp_path):
    data = saved_bytes(tmp_path, cls)
    header, section = split_file(data)
    base = len(data) - len(section)
    path = tmp_path / "bad.rb"
    for entry in header["arrays"]:
        if entry["nbytes"] == 0:
            continue
        at = base + entry["offset"] + entry["nbytes"] // 2
        path.write_bytes(patched(data, at, bytes([data[at] ^ 0x10])))
        with pytest.raises(ValueError, match=rf"array '{entry['name']}' fails its checksum") as info:
            cls.load(path)
        assert repr(str(path)) in str(info.value)


def test_version_1_files_are_refused_with_the_reason(tmp_path):
    path = tmp_path / "old.rb"
    path.write_bytes(patched(saved_bytes(tmp_path), 8, struct.pack("<I", 1)))
    with pytest.raises(ValueError, match=r"version 1 has no checksums"):
        ReplayBuffer.load(path)


def test_nonzero_padding_and_trailing_bytes_are_refused(tmp_path):
    data = saved_bytes(tmp_path)
    path = tmp_path / "bad.rb"
    for bad in (data + b"\0" * 8, patched(data, header_end(data), b"\x01") if header_end(data) % 8 else data + b"x"):
        path.write_bytes(bad)
        with pytest.raises(ValueError, match=re.escape(repr(str(path)))):
            ReplayBuffer.load(path)


def edit(key, value):
    def fn(header):
        header[key] = value
    return fn


def edit_config(key, value):
    def fn(header):
        header["config"][key] = value
    return fn


def edit_scalar(key, value):
    def fn(header):
        header["scalars"][key] = value
    return fn


def edit_array(name, key, value):
    def fn(header):
        next(e for e in header["arrays"] if e["name"] == name)[key] = value
    return fn


def edit_spec(index, position, value):
    def fn(header):
        header["config"]["spec"][index][position] = value
    return fn


# Edits that get past the header checksum (it is recomputed): each used to load, crash, allocate
# without bound or raise something other than a ValueError naming the file.
HEADER_EDITS = {
    "arrays a dict": (edit("arrays", {}), "arrays"),
    "config a list": (edit("config", []), "config"),
    "scalars a list": (edit("scalars", [1]), "scalars"),
    "unknown class key": (edit("extra", 1), "header"),
    "format 2.0": (edit("format", 2.0), "format"),
    "negative shape": (edit_array("rows", "shape", [-8]), "rows"),
    "huge shape": (edit_array("rows", "shape", [2**40, 2**40]), "rows"),
    "shape not a list": (edit_array("rows", "shape", 8), "rows"),
    "nbytes not dtype x shape": (edit_array("rows", "nbytes", 8), "rows"),
    "offset beyond the file": (edit_array("rng", "offset", 2**40), "rng"),
    "overlapping offsets": (edit_array("rng", "offset", 0), "rng"),
    "unknown dtype": (edit_array("rows", "dtype", "<c16"), "rows"),
    "object dtype": (edit_array("rows", "dtype", "|O"), "rows"),
    "crc not an int": (edit_array("rows", "crc32", "x"), "rows"),
    "written near 2**63": (edit_scalar("written", 2**63 - 5), "written"),
    "written 2**70": (edit_scalar("written", 2**70), "written"),
    "written a float": (edit_scalar("written", 30.0), "written"),
    "written a string": (edit_scalar("written", "30"), "written"),
    "cleared_at > written": (edit_scalar("cleared_at", 31), "cleared_at"),
    "negative cleared_at": (edit_scalar("cleared_at", -1), "cleared_at"),
    "missing scalar": (lambda h: h["scalars"].pop("written"), "written"),
    "capacity 2**62": (edit_config("capacity", 2**62), "capacity"),
    "capacity 0": (edit_config("capacity", 0), "capacity"),
    "capacity a string": (edit_config("capacity", "20"), "capacity"),
    "capacity doubled": (edit_config("capacity", 40), "final_slots"),
    "num_envs 0": (edit_config("num_envs", 0), "num_envs"),
    "n_step 0": (edit_config("n_step", 0), "n_step"),
    "gamma 2": (edit_config("gamma", 2.0), "gamma"),
    "gamma a list": (edit_config("gamma", [0.9]), "gamma"),
    "alpha on a uniform buffer": (edit_config("alpha", 0.5), "alpha"),
    "missing config key": (lambda h: h["config"].pop("gamma"), "config"),
    "spec a dict": (edit_config("spec", {}), "spec"),
    "spec dtype unknown": (edit_spec(0, 1, "<U4"), "spec"),
    "spec dtype not a string": (edit_spec(0, 1, 4), "spec"),
    "spec dimension near 2**63": (edit_spec(0, 2, [2**63 - 1]), "spec"),
    "spec dimension zero": (edit_spec(0, 2, [0]), "spec"),
    "spec dimension a float": (edit_spec(0, 2, [2.0]), "spec"),
    "spec without obs": (edit_spec(0, 0, "observation"), "obs"),
}


@pytest.mark.parametrize("name", list(HEADER_EDITS))
def test_edited_headers_raise_value_error_naming_the_file_and_what_is_wrong(name, tmp_path):
    header, section = split_file(saved_bytes(tmp_path))
    fn, what = HEADER_EDITS[name]
    fn(header)
    path = tmp_path / "bad.rb"
    path.write_bytes(join_file(header, section))
    with pytest.raises(ValueError) as info:
        ReplayBuffer.load(path)
    assert repr(str(path)) in str(info.value) and what in str(info.value), str(info.value)


PRIORITIZED_EDITS = {
    "beta negative": (edit_config("beta", -0.5), "beta"),
    "alpha huge": (edit_config("alpha", 1e300), "alpha"),  # the leaves' range is then violated
    "max_priority 0": (edit_scalar("max_priority", 0.0), "max_priority"),
    "max_priority below 1": (edit_scalar("max_priority", 0.5), "max_priority"),
    "max_priority infinite": (edit_scalar("max_priority", float("inf")), "Infinity"),
    "max_priority a string": (edit_scalar("max_priority", "1"), "max_priority"),
}


@pytest.mark.parametrize("name", list(PRIORITIZED_EDITS))
def test_edited_prioritized_headers_are_refused_at_load(name, tmp_path):
    header, section = split_file(saved_bytes(tmp_path, PrioritizedReplayBuffer))
    fn, what = PRIORITIZED_EDITS[name]
    fn(header)
    path = tmp_path / "bad.rb"
    path.write_bytes(join_file(header, section))
    with pytest.raises(ValueError) as info:
        PrioritizedReplayBuffer.load(path)
    assert repr(str(path)) in str(info.value) and what in str(info.value), str(info.value)


def field_offset(name):
    return next(off for field, off, _ in row_layout(SPEC)[0] if field == name)


# Array edits with their checksums recomputed: states the core must refuse.
ARRAY_EDITS = {
    ReplayBuffer: [
        ("rows", lambda a: np.where(np.arange(a.size) % 24 == field_offset("terminated"), 2, a), "bool field"),
        ("rows", lambda a: np.where(np.arange(a.size) % 24 == 23, 7, a), "padding"),  # bytes 22-23 pad the row
    ],
    PrioritizedReplayBuffer: [
        ("priorities", lambda a: np.where(np.arange(a.size) == 0, np.nan, a), "priorities"),
        ("priorities", lambda a: np.where(np.arange(a.size) == 0, -1.0, a), "priorities"),
        ("priorities", lambda a: np.where(np.arange(a.size) == a.size - 1, 1.0, a), "priorities"),  # tree padding
        ("priorities", lambda a: np.where(np.arange(a.size) == 0, 1e-320, a), "priorities"),  # subnormal
    ],
    SequenceReplayBuffer: [
        ("is_first", lambda a: 1 - a, "is_first|episode_start"),
        ("is_first", lambda a: a * 3, "is_first"),
        ("episode_start", lambda a: a + 1, "episode_start"),
        ("episode_start", lambda a: a - 2**62, "episode_start"),
    ],
}


@pytest.mark.parametrize("cls, case", [(c, i) for c in ARRAY_EDITS for i in range(len(ARRAY_EDITS[c]))])
def test_inconsistent_states_behind_valid_checksums_are_refused(cls, case, tmp_path):
    name, fn, what = ARRAY_EDITS[cls][case]
    header, section = split_file(saved_bytes(tmp_path, cls))
    path = tmp_path / "bad.rb"
    path.write_bytes(join_file(header, resign_array(header, section, name, fn)))
    with pytest.raises(ValueError, match=what) as info:
        cls.load(path)
    assert repr(str(path)) in str(info.value)


@pytest.mark.parametrize("cls", CLASSES)
def test_counters_near_2_63_are_refused_by_restore_and_change_nothing(cls):
    buf, _ = built(cls, steps=30)
    good = snapshot(buf)
    for written in (2**62 + 1, 2**63 - 1, -1):
        bad = dict(good, written=written)
        with pytest.raises(ValueError, match="written"):
            buf._core.restore(bad)
        assert_same_state(snapshot(buf), good)
    # and the buffer still works: the next add goes to the right row
    buf.add(**{k: v[0, 0] for k, v in generate(np.random.default_rng(9), 1, 1, t0=30).items()})


def test_a_prioritized_restore_refused_by_the_priorities_leaves_the_store_unchanged():
    # The store used to be restored before the priorities were checked against it.
    src, _ = built(PrioritizedReplayBuffer, steps=70)
    dst, _ = built(PrioritizedReplayBuffer, steps=30, seed=3)
    before = snapshot(dst)
    state = snapshot(src)
    newest_row = (state["written"] - 1) % 20  # not sampleable unless it ended an episode
    state["rows"] = state["rows"].copy()
    row = state["rows"].reshape(20, -1)[newest_row]
    row[field_offset("terminated")] = 0
    row[field_offset("truncated")] = 0
    state["final_slots"] = state["final_slots"].copy()
    slot = state["final_slots"][newest_row]
    if slot >= 0:  # keep the slot pool consistent: the freed slot becomes free
        state["final_slots"][newest_row] = -1
        state["free_slots"] = np.append(state["free_slots"], np.int32(slot))
    state["priorities"] = state["priorities"].copy()
    state["priorities"][newest_row] = 1.0
    with pytest.raises(ValueError, match="priorities"):
        dst._core.restore(state)
    assert_same_state(snapshot(dst), before)


def test_restore_refuses_arrays_of_another_dtype_rather_than_wrapping_them():
    buf, _ = built(ReplayBuffer, steps=30)
    before = snapshot(buf)
    state = dict(before, final_slots=before["final_slots"].astype(np.int64) + 2**32)
    with pytest.raises(ValueError, match="final_slots"):
        buf._core.restore(state)
    assert_same_state(snapshot(buf), before)


def test_save_removes_temporary_files_of_dead_writers(tmp_path):
    buf, _ = built(ReplayBuffer, steps=30)
    path = tmp_path / "buffer.rb"
    leftover = tmp_path / ".buffer.rb.999999999-0123abcd.tmp"  # pid 999999999 does not run
    leftover.write_bytes(b"x" * 100)
    buf.save(path)
    assert sorted(os.listdir(tmp_path)) == ["buffer.rb"]
