"""Fuzz targets for the files a resumed run reads (pymbrl.agents.checkpoint, world_models): a run
checkpoint's state.pt, a paused CMA-ES (.es.pt), a controller, a rollout and run.json, each
mutated (bit flips, truncation, bytes written over it). Every mutation either loads exactly what
was saved (a flip in a field no reader uses) or raises ValueError naming the file -- never another
exception, a crash, or a silently different value. And no file pymbrl reads is unpickled: a
crafted pickle payload in any of them is refused without running."""

from __future__ import annotations

import dataclasses
import json
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pymbrl.agents import world_models as wm
from pymbrl.agents.checkpoint import STATE, start_run

CONFIG = wm.WorldModelsConfig(z_dim=8, rnn_hidden=16, popsize=4, generations=2)
NUM_PARAMS = wm.Controller(8 + 16, 3).num_params


def exact(value):
    """A comparable form of what a loader returned (tensors and arrays by dtype, shape and bytes)."""
    if isinstance(value, torch.Tensor):
        return "tensor", str(value.dtype), tuple(value.shape), value.numpy().tobytes()
    if isinstance(value, np.ndarray):
        return "array", value.dtype.str, value.shape, value.tobytes()
    if isinstance(value, (list, tuple)):
        return tuple(exact(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), exact(v)) for k, v in value.items()))
    if hasattr(value, "mean") and hasattr(value, "sm"):  # a CMA-ES
        return exact(wm._strategy_fields(value))
    return repr(value)


def read_state(run: Path):
    return start_run(run, 10, {"algorithm": "test"}, 1).state


def read_strategy(run: Path):
    return wm.load_strategy(run / "c.es.pt", NUM_PARAMS, CONFIG)


def read_controller(run: Path):
    return wm.load_controller(run / "c.pt", NUM_PARAMS)


def read_rollout(run: Path):
    return wm.RolloutDataset(run / "data").load(run / "data" / "rollout_000000.npz")


def read_run_json(run: Path):
    wm._open_run(run, "pymbrl-test/Frames-v0", CONFIG)
    return json.loads((run / "run.json").read_bytes())


# file (relative to the run) -> the reader of it
READERS = {f"checkpoint/{STATE}": read_state, "c.es.pt": read_strategy, "c.pt": read_controller,
           "data/rollout_000000.npz": read_rollout, "run.json": read_run_json}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One small saved run with every kind of file: (its folder, file -> bytes, file -> what its
    reader returns)."""
    run = tmp_path_factory.mktemp("run")
    checkpoint = start_run(run, 10, {"algorithm": "test"}, 1)
    checkpoint.save(5, {"agent": {"w": torch.randn(16, 4, generator=torch.Generator().manual_seed(0))},
                        "losses": [1.5, 2.5]}, {})
    es, history = wm.evolve(lambda c: -(c ** 2).sum(1), NUM_PARAMS, CONFIG)
    wm.save_strategy(run / "c.es.pt", es, history, torch.Generator().manual_seed(1).get_state(), 0)
    wm.save_atomically(run / "c.pt", {"params": torch.zeros(NUM_PARAMS), "summary": {"fitness": history}})
    rng = np.random.default_rng(0)
    wm.RolloutDataset(run / "data").add(rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8),
                                        rng.normal(size=(3, 3)), rng.normal(size=3), np.array([False, False, True]))
    wm._open_run(run, "pymbrl-test/Frames-v0", CONFIG)
    files = {name: (run / name).read_bytes() for name in READERS}
    return run, files, {name: exact(read(run)) for name, read in READERS.items()}


def check(saved, name: str, data: bytes) -> None:
    """Writes ``data`` as file ``name`` of a copy of the saved run and reads it: the same value as
    saved, or ValueError naming the file."""
    run, files, values = saved
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder)
        for other, content in files.items():
            (copy / other).parent.mkdir(parents=True, exist_ok=True)
            (copy / other).write_bytes(data if other == name else content)
        try:
            value = READERS[name](copy)
        except ValueError as error:
            # run.json that parses but names another run is refused as the config that differs.
            assert str(error).startswith(str(copy / name)) or (name == "run.json" and str(copy) in str(error)), error
            return
        assert exact(value) == values[name], f"{name} loaded as something else"


names = st.sampled_from(sorted(READERS))


@given(names, st.data())
def test_bit_flips_are_refused_or_harmless(saved, name, data):
    content = bytearray(saved[1][name])
    for position in data.draw(st.lists(st.integers(0, len(content) - 1), min_size=1, max_size=4)):
        content[position] ^= 1 << data.draw(st.integers(0, 7))
    check(saved, name, bytes(content))


@given(names, st.data())
def test_truncations_are_refused(saved, name, data):
    content = saved[1][name]
    check(saved, name, content[:data.draw(st.integers(0, len(content) - 1))])


@given(names, st.data())
def test_overwritten_bytes_are_refused_or_harmless(saved, name, data):
    content = bytearray(saved[1][name])
    start = data.draw(st.integers(0, len(content) - 1))
    chunk = data.draw(st.binary(min_size=1, max_size=64))
    content[start:start + len(chunk)] = chunk
    check(saved, name, bytes(content))


class Payload:
    """Unpickling this runs ``open(marker, "w")``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@given(names, st.sampled_from(["torch", "pickle", "npz"]))
def test_a_pickled_payload_in_any_file_is_never_run(saved, name, how):
    run, files, _ = saved
    with tempfile.TemporaryDirectory() as folder:
        marker = Path(folder) / "ran"
        payload = Payload(marker)
        if how == "torch":
            buffer = tempfile.SpooledTemporaryFile()
            torch.save({"state": payload, "params": payload, "fields": payload, "identity": payload}, buffer)
            buffer.seek(0)
            data = buffer.read()
        elif how == "pickle":
            data = pickle.dumps(payload)
        else:
            buffer = tempfile.SpooledTemporaryFile()
            np.savez(buffer, frames=np.array([payload], dtype=object), actions=np.array([payload], dtype=object))
            buffer.seek(0)
            data = buffer.read()
        check(saved, name, data)
        assert not marker.exists()


def test_a_legacy_pickled_strategy_is_refused_unread(tmp_path):
    """The controller stage of a run made before the data-only format finds controller_*.es.pkl:
    it refuses the run without unpickling it."""
    marker = tmp_path / "ran"
    config = dataclasses.replace(CONFIG, rollouts=1)
    run = tmp_path / "run"
    wm._open_run(run, "pymbrl-test/Frames-v0", config)
    legacy = run / wm.controller_file(config).replace(".pt", ".es.pkl")
    legacy.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ValueError, match="predates"):
        wm._controller_stage("pymbrl-test/Frames-v0", run, config, None, wm.Controller(24, 3), "", 0,
                             lambda stage: lambda record: None, None)
    assert not marker.exists()
