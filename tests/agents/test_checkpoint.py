"""Run directories: a run interrupted and resumed from its checkpoint ends bit for bit where the
uninterrupted run ends; checkpoints of another run are refused; log.csv and the CLI."""

from __future__ import annotations

import csv
import os
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from pymbrl import cli
from pymbrl.agents import mbpo, sac
from pymbrl.agents.checkpoint import STATE, start_run
from pymbrl.replay import ReplayBuffer

SAC_CONFIG = sac.SACConfig(hidden=32, batch_size=32, learning_starts=100)
MBPO_CONFIG = mbpo.MBPOConfig(init_steps=150, model_train_freq=100, rollout_batch_size=100, rollout_length=(1, 4, 1, 2),
                              model_retain_epochs=2, updates_per_step=2, ensemble_size=3, num_elites=2,
                              model_hidden=16, model_layers=2, sac=sac.SACConfig(hidden=32, batch_size=32))
# Pendulum's episodes are 200 steps: with checkpoints every 200 the run below is saved at 200 and
# 400, interrupted at 530 and resumed from 400.
STEPS, EVERY, STOP = 650, 200, 530


def without_seconds(history):
    """The records without their timings, floats as repr (exact, and NaN equals NaN)."""
    return [{k: repr(v) for k, v in record.items() if k != "seconds"} for record in history]


def interrupt_at(step_to_stop):
    def progress(step):
        if step == step_to_stop:
            raise KeyboardInterrupt

    return progress


def assert_same_agent(a, b):
    for (name, x), y in zip(a.actor.state_dict().items(), b.actor.state_dict().values()):
        assert torch.equal(x, y), name
    for (name, x), y in zip(a.q.state_dict().items(), b.q.state_dict().values()):
        assert torch.equal(x, y), name
    assert torch.equal(a.log_alpha, b.log_alpha)


@pytest.mark.parametrize("algorithm, config", [(sac, SAC_CONFIG), (mbpo, MBPO_CONFIG)], ids=["sac", "mbpo"])
def test_a_resumed_run_ends_exactly_where_the_uninterrupted_one_ends(tmp_path, algorithm, config):
    kwargs = dict(seed=3, config=config, eval_every=130, eval_episodes=1, checkpoint_every=EVERY)
    plain_agent, plain = algorithm.train("Pendulum-v1", STEPS, **kwargs)
    with pytest.raises(KeyboardInterrupt):
        algorithm.train("Pendulum-v1", STEPS, run_dir=tmp_path, progress=interrupt_at(STOP), **kwargs)
    assert torch.load(tmp_path / "checkpoint" / "state.pt", weights_only=True)["step"] == 400
    steps_taken = []
    agent, resumed = algorithm.train("Pendulum-v1", STEPS, run_dir=tmp_path, progress=steps_taken.append, **kwargs)
    assert steps_taken == list(range(401, STEPS + 1))
    assert without_seconds(resumed) == without_seconds(plain)
    assert [r["step"] for r in resumed] == [130, 260, 390, 520, 650]
    assert_same_agent(agent, plain_agent)
    with open(tmp_path / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [130, 260, 390, 520, 650]
    assert [float(r["return"]) for r in rows] == pytest.approx([r["return"] for r in plain])
    # The run is finished: running it again takes no step and returns the same history.
    again_steps = []
    _, again = algorithm.train("Pendulum-v1", STEPS, run_dir=tmp_path, progress=again_steps.append, **kwargs)
    assert again_steps == [] and without_seconds(again) == without_seconds(plain)


@pytest.mark.parametrize("change, name", [({"steps": 700}, "steps"), ({"seed": 4}, "seed"),
                                           ({"config": sac.SACConfig(hidden=16)}, "config"),
                                           ({"env_id": "MountainCarContinuous-v0"}, "env_id")])
def test_the_checkpoint_of_another_run_is_refused(tmp_path, change, name):
    args = dict(env_id="Pendulum-v1", steps=250, seed=3, config=SAC_CONFIG, eval_every=250, eval_episodes=1,
                run_dir=tmp_path, checkpoint_every=EVERY)
    sac.train(**args)
    before = (tmp_path / "checkpoint" / "state.pt").read_bytes()
    with pytest.raises(ValueError, match=f"^{name}: the checkpoint in"):
        sac.train(**{**args, **change})
    assert (tmp_path / "checkpoint" / "state.pt").read_bytes() == before


def test_a_seed_of_none_resumes_with_the_checkpoints_seed(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        sac.train("Pendulum-v1", 450, seed=None, config=SAC_CONFIG, eval_every=450, eval_episodes=1,
                  run_dir=tmp_path, checkpoint_every=EVERY, progress=interrupt_at(420))
    saved = start_run(tmp_path, 450, {}, None)
    assert saved.step == 400 and saved.identity["seed"] == str(saved.seed)
    with pytest.raises(ValueError, match="^seed:"):
        sac.train("Pendulum-v1", 450, seed=(saved.seed + 1) % 2**31, config=SAC_CONFIG, eval_every=450,
                  eval_episodes=1, run_dir=tmp_path, checkpoint_every=EVERY)


@pytest.mark.parametrize("aside", [".old-0123", ".checkpoint.{pid}-0f.old"], ids=["earlier-versions", "now"])
def test_a_save_interrupted_between_its_renames_leaves_the_previous_checkpoint_usable(tmp_path, aside):
    """A writer killed between its renames leaves the previous checkpoint moved aside (named as
    earlier versions or this one name it): the run resumes from it, and once a later save has left a
    whole checkpoint/ again, the next removes it."""
    sac.train("Pendulum-v1", 250, seed=3, config=SAC_CONFIG, eval_every=250, eval_episodes=1, run_dir=tmp_path,
              checkpoint_every=EVERY)
    aside = tmp_path / aside.format(pid=dead_pid())
    (tmp_path / "checkpoint").rename(aside)
    run = start_run(tmp_path, 250, {"algorithm": "SAC", "env_id": "Pendulum-v1", "config": SAC_CONFIG}, 3)
    # Step 250 is mid-episode: its transition becomes sampleable when the next step arrives.
    assert run.step == 250 and set(run.buffers) == {"real"} and len(run.buffers["real"]) == 249
    run.save(250, run.state, run.buffers)
    assert aside.exists() and start_run(tmp_path, 250, {}, 3).step == 250
    if aside.name.startswith(".checkpoint."):
        run.save(250, run.state, run.buffers)
        assert not aside.exists()


def test_bad_checkpoint_every_is_refused(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_every"):
        sac.train("Pendulum-v1", 10, config=SAC_CONFIG, run_dir=tmp_path, checkpoint_every=0)


def test_the_cli_trains_logs_plots_and_resumes(tmp_path, capsys):
    args = ["train", "sac", "--env", "Pendulum-v1", "--steps", "400", "--eval-every", "200", "--eval-episodes", "1",
            "--checkpoint-every", "200", "--run-dir", str(tmp_path)]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "SAC on Pendulum-v1, seed 0: return by step {200: " in out
    with open(tmp_path / "log.csv", newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [200, 400]
    assert (tmp_path / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main(args) == 0  # finished: the second call resumes at the end
    assert "seed 0: return by step {200: " in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "sac", "--steps", "500", "--run-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "steps: the checkpoint in" in capsys.readouterr().err


@pytest.mark.parametrize("algorithm, env_id, message", [
    (sac, "NoSuchEnv-v0", "env_id: .*NoSuchEnv"), (sac, "CartPole-v1", "env_id: SAC needs a Box action space"),
    (mbpo, "MountainCarContinuous-v0", "env_id: expected one of")])
def test_bad_envs_are_refused_before_the_run_directory_is_made(tmp_path, algorithm, env_id, message):
    with pytest.raises(ValueError, match=message):
        algorithm.train(env_id, 100, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_cli_reports_bad_arguments(tmp_path, capsys):
    for argv, message in ((["--env", "NoSuchEnv-v0"], "--env:"), (["--steps", "0"], "--steps:"),
                          (["--checkpoint-every", "0"], "--checkpoint-every:")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["train", "mbpo", "--run-dir", str(tmp_path / "run"), *argv])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# Files under faults: what a killed writer leaves is removed, every write is fsynced, a corrupt
# checkpoint is refused with ValueError naming its file, and nothing read is unpickled


def dead_pid():
    """The id of a process that has exited (as a writer killed mid-save)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def small_run(tmp_path, steps=250):
    sac.train("Pendulum-v1", steps, seed=3, config=SAC_CONFIG, eval_every=steps, eval_episodes=1, run_dir=tmp_path,
              checkpoint_every=EVERY)
    return start_run(tmp_path, steps, {"algorithm": "SAC", "env_id": "Pendulum-v1", "config": SAC_CONFIG}, 3)


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
    run.evaluated({"step": 250, "return": 1.0}, None)
    assert not any(p.exists() for p in left) and kept.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([kept.name, "checkpoint", "log.csv"])
    # Files are fsynced under their temporary names, before the rename.
    names = [os.path.basename(p) for p in synced]
    assert any(n.startswith(f".{STATE}.{live}-") for n in names) and any(n.startswith(f".log.csv.{live}-") for n in names)
    assert str(tmp_path) in synced  # the renames of the folder swap and of log.csv are durable
    assert start_run(tmp_path, 250, {}, 3).step == 250


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
        start_run(tmp_path, 250, {}, 3)
    for cut in (len(original) // 2, 10, 0):
        state.write_bytes(original[:cut])
        with pytest.raises(ValueError, match=f"^{state}: corrupt or truncated file"):
            start_run(tmp_path, 250, {}, 3)


@pytest.mark.parametrize("key, value, message", [
    ("step", -1, r"step: expected an int in \[0, 250\]"), ("step", 10**20, "step: expected"),
    ("seconds", float("nan"), "seconds: expected a finite number"), ("history", "x", "history: expected a list"),
    ("identity", {"seed": "x"}, r"identity\['seed'\]: expected a seed"),
    ("buffers", {"real": "load_state"}, r"buffers\['real'\]: expected one of"),
    ("buffers", {"../x": "ReplayBuffer"}, "buffers: expected names that are identifiers"),
])
def test_an_edited_checkpoint_is_refused_naming_the_file_and_field(tmp_path, key, value, message):
    small_run(tmp_path)
    state = tmp_path / "checkpoint" / STATE
    saved = torch.load(state, weights_only=True)
    torch.save({**saved, key: value}, state)
    with pytest.raises(ValueError, match=f"^{state}: {message}"):
        start_run(tmp_path, 250, {}, 3)
    del saved[key]
    torch.save(saved, state)
    with pytest.raises(ValueError, match=f"^{state}: {key}: expected the field"):
        start_run(tmp_path, 250, {}, 3)


def resume_small_run(tmp_path, steps=250):
    return sac.train("Pendulum-v1", steps, seed=3, config=SAC_CONFIG, eval_every=steps, eval_episodes=1,
                     run_dir=tmp_path, checkpoint_every=EVERY)


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


class Payload:
    """Unpickling this runs ``open(marker, "w")``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_pickled_object_in_a_checkpoint_is_never_run(tmp_path):
    small_run(tmp_path)
    state, marker = tmp_path / "checkpoint" / STATE, tmp_path / "ran"
    torch.save({**torch.load(state, weights_only=True), "agent": Payload(marker)}, state)
    with pytest.raises(ValueError, match=f"^{state}: not a readable pymbrl file"):
        start_run(tmp_path, 250, {}, 3)
    assert not marker.exists()
