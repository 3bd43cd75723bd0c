"""Fuzz targets for the files a resumed run reads (pymbrl.training, World Models' stages): a run
checkpoint's state.pt, a paused CMA-ES (.es.pt), a controller, a rollout and config.yaml, each
mutated (bit flips, truncation, bytes written over it). Every mutation either loads exactly what
was saved (a flip in a field no reader uses) or raises ValueError naming the file -- never another
exception, a crash, or a silently different value (config.yaml is text: a flip may spell another
valid config, which is then validated like any other). And no file pymbrl reads is unpickled: a
crafted pickle payload in any of them is refused without running."""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pymbrl.agents.world_models_stages import load_controller
from pymbrl.models.world_models import Controller
from pymbrl.replay.rollouts import RolloutDataset
from pymbrl.training import TrainConfig
from pymbrl.training.checkpoint import save_atomically
from pymbrl.training.config import read_config, write_config
from pymbrl.training.evolution import evolve, load_strategy, save_strategy, strategy_fields
from pymbrl.training.run import STATE, start_run
from support import Payload

SIGMA0, POPSIZE = 0.1, 4
NUM_PARAMS = Controller(8 + 16, 3).num_params
CONFIG = TrainConfig(seed=1, steps=10)


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
        return exact(strategy_fields(value))
    return repr(value)


def read_state(run: Path):
    return start_run(run, "test", CONFIG, write=False).state


def read_strategy(run: Path):
    return load_strategy(run / "c.es.pt", NUM_PARAMS, sigma0=SIGMA0, popsize=POPSIZE)


def read_controller(run: Path):
    return load_controller(run / "c.pt", NUM_PARAMS)


def read_rollout(run: Path):
    return RolloutDataset(run / "data").load(run / "data" / "rollout_000000.npz")


def read_config_file(run: Path):
    return read_config(TrainConfig, run / "config.yaml", "test")


# file (relative to the run) -> the reader of it
READERS = {f"checkpoint/{STATE}": read_state, "c.es.pt": read_strategy, "c.pt": read_controller,
           "data/rollout_000000.npz": read_rollout, "config.yaml": read_config_file}
TEXT = {"config.yaml"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One small saved run with every kind of file: (its folder, file -> bytes, file -> what its
    reader returns)."""
    run = tmp_path_factory.mktemp("run")
    checkpoint = start_run(run, "test", CONFIG, write=False)
    checkpoint.save(5, {"agent": {"w": torch.randn(16, 4, generator=torch.Generator().manual_seed(0))},
                        "losses": [1.5, 2.5]}, {})
    es, history = evolve(lambda c: -(c ** 2).sum(1), NUM_PARAMS, sigma0=SIGMA0, popsize=POPSIZE, generations=2)
    save_strategy(run / "c.es.pt", es, history, torch.Generator().manual_seed(1).get_state(), 0)
    save_atomically(run / "c.pt", {"params": torch.zeros(NUM_PARAMS), "summary": {"fitness": history}})
    rng = np.random.default_rng(0)
    RolloutDataset(run / "data").add(rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8),
                                     rng.normal(size=(3, 3)), rng.normal(size=3), np.array([False, False, True]))
    write_config(CONFIG, run / "config.yaml", "test")
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
            assert str(error).startswith(str(copy / name)), error
            return
        if name in TEXT:
            assert isinstance(value, TrainConfig)  # another valid config, validated on construction
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
