"""Run directories: a run interrupted and resumed from its checkpoint ends bit for bit where the
uninterrupted run ends; checkpoints of another run are refused; log.csv and the CLI."""

from __future__ import annotations

import csv
import dataclasses
import os
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from pymbrl.agents import mbpo, sac
from pymbrl.training.run import STATE, start_run
from pymbrl.replay import ReplayBuffer
from support import Payload, Steps

# Pendulum's episodes are 200 steps: with checkpoints every 200 the run below is saved at 200 and
# 400, interrupted at 530 and resumed from 400.
STEPS, EVERY, STOP = 650, 200, 530
RUN = dict(env="Pendulum-v1", seed=3, eval_episodes=1, checkpoint_every=EVERY)
SAC_CONFIG = sac.SACConfig(hidden=32, batch_size=32, learning_starts=100, steps=250, eval_every=250, **RUN)
MBPO_CONFIG = mbpo.MBPOConfig(init_steps=150, model_train_freq=100, rollout_batch_size=100, rollout_length=(1, 4, 1, 2),
                              model_retain_epochs=2, updates_per_step=2, ensemble_size=3, num_elites=2,
                              model_hidden=16, model_layers=2, hidden=32, batch_size=32, **RUN)


def without_seconds(history):
    """The records without their timings, floats as repr (exact, and NaN equals NaN)."""
    return [{k: repr(v) for k, v in record.items() if k != "seconds"} for record in history]


def astuple(result):
    return result.agent, result.history


def assert_same_agent(a, b):
    for (name, x), y in zip(a.actor.state_dict().items(), b.actor.state_dict().values()):
        assert torch.equal(x, y), name
    for (name, x), y in zip(a.q.state_dict().items(), b.q.state_dict().values()):
        assert torch.equal(x, y), name
    assert torch.equal(a.log_alpha, b.log_alpha)


@pytest.mark.parametrize("algorithm, config", [(sac, SAC_CONFIG), (mbpo, MBPO_CONFIG)], ids=["sac", "mbpo"])
def test_a_resumed_run_ends_exactly_where_the_uninterrupted_one_ends(tmp_path, algorithm, config):
    config = dataclasses.replace(config, steps=STEPS, eval_every=130)
    plain_agent, plain = astuple(algorithm.train(config))
    with pytest.raises(KeyboardInterrupt):
        algorithm.train(config, tmp_path, callbacks=Steps(stop=STOP))
    assert torch.load(tmp_path / "checkpoint" / "state.pt", weights_only=True)["step"] == 400
    taken = Steps()
    agent, resumed = astuple(algorithm.train(config, tmp_path, callbacks=taken))
    assert taken.steps == list(range(401, STEPS + 1))
    assert without_seconds(resumed) == without_seconds(plain)
    assert [r["step"] for r in resumed] == [130, 260, 390, 520, 650]
    assert_same_agent(agent, plain_agent)
    with open(tmp_path / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [130, 260, 390, 520, 650]
    assert [float(r["return"]) for r in rows] == pytest.approx([r["return"] for r in plain])
    # The run is finished: running it again takes no step and returns the same history.
    again = Steps()
    _, history = astuple(algorithm.train(config, tmp_path, callbacks=again))
    assert again.steps == [] and without_seconds(history) == without_seconds(plain)
    # Given more steps, the finished run continues from its last checkpoint.
    more = Steps()
    _, longer = astuple(algorithm.train(dataclasses.replace(config, steps=STEPS + 130), tmp_path, callbacks=more))
    assert more.steps == list(range(STEPS + 1, STEPS + 131))
    assert without_seconds(longer[:5]) == without_seconds(plain) and longer[-1]["step"] == STEPS + 130
    assert torch.load(tmp_path / "checkpoint" / "state.pt", weights_only=True)["step"] == STEPS + 130
    with pytest.raises(ValueError, match=f"^steps: the run in .* has already done {STEPS + 130} steps"):
        algorithm.train(config, tmp_path)


@pytest.mark.parametrize("change", [{"seed": 4}, {"hidden": 16}, {"env": "MountainCarContinuous-v0"}])
def test_the_checkpoint_of_another_run_is_refused(tmp_path, change):
    sac.train(SAC_CONFIG, tmp_path)
    before = (tmp_path / "checkpoint" / "state.pt").read_bytes()
    name = next(iter(change))
    with pytest.raises(ValueError, match=f"^{name}: the run in .* has {name}="):
        sac.train(dataclasses.replace(SAC_CONFIG, **change), tmp_path)
    assert (tmp_path / "checkpoint" / "state.pt").read_bytes() == before


@pytest.mark.parametrize("aside", [".old-0123", ".checkpoint.{pid}-0f.old"], ids=["earlier-versions", "now"])
def test_a_save_interrupted_between_its_renames_leaves_the_previous_checkpoint_usable(tmp_path, aside):
    """A writer killed between its renames leaves the previous checkpoint moved aside (named as
    earlier versions or this one name it): the run resumes from it, and once a later save has left a
    whole checkpoint/ again, the next removes it."""
    sac.train(SAC_CONFIG, tmp_path)
    aside = tmp_path / aside.format(pid=dead_pid())
    (tmp_path / "checkpoint").rename(aside)
    run = start_run(tmp_path, "sac", SAC_CONFIG)
    # Step 250 is mid-episode: its transition becomes sampleable when the next step arrives.
    assert run.step == 250 and set(run.buffers) == {"real"} and len(run.buffers["real"]) == 249
    run.save(250, run.state, run.buffers)
    assert aside.exists() and start_run(tmp_path, "sac", SAC_CONFIG).step == 250
    if aside.name.startswith(".checkpoint."):
        run.save(250, run.state, run.buffers)
        assert not aside.exists()


def test_bad_checkpoint_every_is_refused():
    with pytest.raises(ValueError, match="checkpoint_every"):
        dataclasses.replace(SAC_CONFIG, checkpoint_every=0)


@pytest.mark.parametrize("algorithm, env, message", [
    (sac, "NoSuchEnv-v0", "env: .*NoSuchEnv"), (sac, "CartPole-v1", "env: SAC needs a Box action space"),
    (mbpo, "MountainCarContinuous-v0", "env: expected one of")])
def test_bad_envs_are_refused_before_the_run_directory_is_made(tmp_path, algorithm, env, message):
    config = sac.SACConfig(env=env) if algorithm is sac else mbpo.MBPOConfig(env=env)
    with pytest.raises(ValueError, match=message):
        algorithm.train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------------
# Files under faults: what a killed writer leaves is removed, every write is fsynced, a corrupt
# checkpoint is refused with ValueError naming its file, and nothing read is unpickled


def dead_pid():
    """The id of a process that has exited (as a writer killed mid-save)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def small_run(tmp_path):
    sac.train(SAC_CONFIG, tmp_path)
    return start_run(tmp_path, "sac", SAC_CONFIG)


def test_a_save_removes_what_a_killed_writer_left_and_fsyncs(tmp_path, monkeypatch):
    """A writer killed mid-save leaves its fresh checkpoint folder, the previous checkpoint it had
    moved aside and half-written files (log.csv's, state.pt's): the next save removes them all, but
    not those of a live writer; every file and the run directory are fsynced."""
    run = small_run(tmp_path)
    dead, live = dead_pid(), os.getpid()
    left = [tmp_path / f".checkpoint.{dead}-0a.tmp", tmp_path / f".checkpoint.{dead}-0b.old",
            tmp_path / f".log.csv.{dead}-0c.tmp"]
    left[0].mkdir()
    (left[0] / f".state.pt.{dead}-0d.tmp").write_bytes(b"x" * 100)
    left[1].mkdir()
    left[2].write_text("half")
    kept = tmp_path / f".checkpoint.{live}-0e.tmp"
    kept.mkdir()
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")))
    run.save(250, run.state, run.buffers)
    run.evaluated({"step": 250, "return": 1.0})
    assert not any(p.exists() for p in left) and kept.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("events.out.tfevents.")) == sorted(
        [kept.name, "checkpoint", "config.yaml", "log.csv"])
    # Files are fsynced under their temporary names, before the rename.
    names = [os.path.basename(p) for p in synced]
    assert any(n.startswith(f".{STATE}.{live}-") for n in names) and any(n.startswith(f".log.csv.{live}-") for n in names)
    assert str(tmp_path) in synced  # the renames of the folder swap and of log.csv are durable
    assert start_run(tmp_path, "sac", SAC_CONFIG).step == 250


def flip_bit(path, position, bit=0):
    data = bytearray(path.read_bytes())
    data[position] ^= 1 << bit
    path.write_bytes(bytes(data))


def test_a_corrupt_or_truncated_checkpoint_is_refused_naming_the_file(tmp_path):
    """torch.load itself does not check the CRC-32 of its records: a flipped bit in a tensor's
    data loads as a silently different value. start_run checks them first."""
    small_run(tmp_path)
    state = tmp_path / "checkpoint" / STATE
    original = state.read_bytes()
    with zipfile.ZipFile(state) as archive:
        record = max((info for info in archive.infolist() if "/data/" in info.filename), key=lambda i: i.file_size)
    # A bit in the middle of a tensor's data, which starts after the record's local header (30
    # bytes, its name and its extra field).
    name_length, extra_length = struct.unpack("<HH", original[record.header_offset + 26:record.header_offset + 30])
    flip_bit(state, record.header_offset + 30 + name_length + extra_length + record.file_size // 2)
    with pytest.raises(ValueError, match=f"^{state}: corrupt file .*CRC-32"):
        start_run(tmp_path, "sac", SAC_CONFIG)
    for cut in (len(original) // 2, 10, 0):
        state.write_bytes(original[:cut])
        with pytest.raises(ValueError, match=f"^{state}: corrupt or truncated file"):
            start_run(tmp_path, "sac", SAC_CONFIG)


@pytest.mark.parametrize("key, value, message", [
    ("step", -1, r"step: expected an int in \[0, 4611686018427387904\]"), ("step", 10**20, "step: expected"),
    ("seconds", float("nan"), "seconds: expected a finite number"), ("history", "x", "history: expected a list"),
    ("identity", {"config": "x"}, r"identity\['algorithm'\]: expected a str"),
    ("identity", {"algorithm": "sac", "config": '{"seed": -1}'}, r"identity\['config'\] seed: expected a seed"),
    ("buffers", {"real": "load_state"}, r"buffers\['real'\]: expected one of"),
    ("buffers", {"../x": "ReplayBuffer"}, "buffers: expected names that are identifiers"),
])
def test_an_edited_checkpoint_is_refused_naming_the_file_and_field(tmp_path, key, value, message):
    small_run(tmp_path)
    state = tmp_path / "checkpoint" / STATE
    saved = torch.load(state, weights_only=True)
    torch.save({**saved, key: value}, state)
    with pytest.raises(ValueError, match=f"^{state}: {message}"):
        start_run(tmp_path, "sac", SAC_CONFIG)
    del saved[key]
    torch.save(saved, state)
    with pytest.raises(ValueError, match=f"^{state}: {key}: expected the field"):
        start_run(tmp_path, "sac", SAC_CONFIG)


def resume_small_run(tmp_path):
    return sac.train(SAC_CONFIG, tmp_path)


def _nan_actor(state):
    state["agent"]["actor"] = {k: torch.full_like(v, float("nan")) for k, v in state["agent"]["actor"].items()}


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.update(agent=None), "TypeError"), (lambda s: s.update(random={}), "KeyError: 'generators'"),
    (lambda s: s.update(losses="x"), "ValueError"), (_nan_actor, r"actor\..*expected finite weights"),
])
def test_an_edited_algorithm_state_is_refused_naming_the_file(tmp_path, edit, message):
    """The algorithm's own fields used to escape as a KeyError or TypeError, and NaN weights loaded."""
    small_run(tmp_path)
    state = tmp_path / "checkpoint" / STATE
    saved = torch.load(state, weights_only=True)
    edit(saved)
    torch.save(saved, state)
    with pytest.raises(ValueError, match=f"^{state}: the algorithm's state does not restore .*{message}"):
        resume_small_run(tmp_path)


def test_a_valid_buffer_of_another_configuration_is_refused_naming_the_file(tmp_path):
    """A buffer file of another spec used to load and fail at the first add, naming no file."""
    small_run(tmp_path)
    path = tmp_path / "checkpoint" / "real.buffer"
    spec = {"obs": ((4,), np.float32), "action": ((1,), np.float32), "reward": ((), np.float32),
            "terminated": ((), bool), "truncated": ((), bool)}
    ReplayBuffer(250, spec).save(path)
    with pytest.raises(ValueError, match=f"^{path}: expected the ReplayBuffer this run makes"):
        resume_small_run(tmp_path)


def test_a_pickled_object_in_a_checkpoint_is_never_run(tmp_path):
    small_run(tmp_path)
    state, marker = tmp_path / "checkpoint" / STATE, tmp_path / "ran"
    torch.save({**torch.load(state, weights_only=True), "agent": Payload(marker)}, state)
    with pytest.raises(ValueError, match=f"^{state}: not a readable pymbrl file"):
        start_run(tmp_path, "sac", SAC_CONFIG)
    assert not marker.exists()
