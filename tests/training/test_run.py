"""The run directory: config.yaml, log.csv and TensorBoard events from every record, callbacks,
continuing a finished run, and refusing another run's directory."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from pymbrl import agents
from pymbrl.training import Callbacks, TrainConfig
from pymbrl.training.config import read_config
from pymbrl.training.curves import read_log
from pymbrl.training.run import check_resumable, read_run, run_algorithm, start_run
from pymbrl.training.stages import start_pipeline
from support import CLAIM, cuda, holder


class Seen(Callbacks):
    def __init__(self):
        self.events = []

    def on_progress(self, stage, done, total):
        self.events.append(("progress", stage, done, total))

    def on_record(self, stage, record):
        self.events.append(("record", stage, record["step"]))


def scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def fake_run(run_dir, config, callbacks=None):
    """Records every 10 steps, checkpoints at the end (as an agent's loop does)."""
    run = start_run(run_dir, "fake", config, callbacks=callbacks)
    for step in range(run.step + 1, config.steps + 1):
        if step % 10 == 0:
            run.evaluated({"step": step, "return": float(step), "loss": 1.0 / step})
        if run.due(step, episode_over=True):
            run.save(step, {}, {})
        run.progress(step)
    run.close()
    return run


def test_records_reach_the_log_tensorboard_and_callbacks(tmp_path):
    seen = Seen()
    config = TrainConfig(steps=30, checkpoint_every=10)
    fake_run(tmp_path, config, seen)
    assert read_config(TrainConfig, tmp_path / "config.yaml", "fake") == config
    assert run_algorithm(tmp_path) == "fake"
    assert [r["step"] for r in read_log(tmp_path / "log.csv")] == [10, 20, 30]
    assert scalars(tmp_path)["train/return"] == [(10, 10.0), (20, 20.0), (30, 30.0)]
    assert ("record", "train", 20) in seen.events and ("progress", "train", 30, 30) in seen.events


def test_a_finished_run_continues_and_tensorboard_drops_what_the_checkpoint_lost(tmp_path):
    config = TrainConfig(steps=30, checkpoint_every=10)
    fake_run(tmp_path, config)
    run = fake_run(tmp_path, dataclasses.replace(config, steps=50))
    assert [r["step"] for r in run.history] == [10, 20, 30, 40, 50]
    assert [s for s, _ in scalars(tmp_path)["train/return"]] == [10, 20, 30, 40, 50]
    assert read_run(tmp_path, TrainConfig, "fake")[1]["step"] == 50
    with pytest.raises(ValueError, match="^steps: the run in .* has already done 50 steps"):
        check_resumable(tmp_path, "fake", config)


def test_another_runs_directory_is_refused_naming_the_setting(tmp_path, monkeypatch):
    config = TrainConfig(steps=20, checkpoint_every=10)
    fake_run(tmp_path, config)
    before = (tmp_path / "config.yaml").read_bytes()
    for changed, message in ((dict(seed=1), "^seed: the run in .* has seed=0, not 1"),
                             (dict(eval_every=7), "^eval_every: the run in .* has eval_every=1000, not 7")):
        with pytest.raises(ValueError, match=message):
            start_run(tmp_path, "fake", dataclasses.replace(config, **changed))
    with pytest.raises(ValueError, match="^algorithm: the run in .* is of algorithm fake, not other"):
        start_run(tmp_path, "other", config)
    assert (tmp_path / "config.yaml").read_bytes() == before
    # Only the device may change (and steps grow).
    cuda(monkeypatch, available=True)
    start_run(tmp_path, "fake", dataclasses.replace(config, device="cuda", steps=40))


def test_a_staged_runs_config_is_checked_without_a_checkpoint(tmp_path):
    start_run(tmp_path, "fake", TrainConfig(seed=2))
    with pytest.raises(ValueError, match="^seed: "):
        check_resumable(tmp_path, "fake", TrainConfig(seed=3))
    with pytest.raises(ValueError, match="run_dir: no checkpoint in"):
        read_run(tmp_path, TrainConfig, "fake")



@pytest.mark.parametrize("how", ["run", "pipeline"])
def test_a_directory_another_process_trains_in_is_refused_until_that_process_ends(how, tmp_path):
    config = TrainConfig(steps=20, checkpoint_every=10)
    fake_run(tmp_path, config)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != "config.yaml"}
    process = holder(tmp_path, how)
    try:
        for refused in (lambda: start_run(tmp_path, "fake", dataclasses.replace(config, steps=40)),
                        lambda: check_resumable(tmp_path, "fake", config),
                        lambda: start_pipeline(tmp_path, "fake", config)):
            with pytest.raises(ValueError, match=f"^run_dir: '{tmp_path}' is in use by another process training in it"):
                refused()
        assert all(path.read_bytes() == data for path, data in before.items())
    finally:
        process.kill()  # however it ends, the system drops its lock
        process.wait()
    assert fake_run(tmp_path, dataclasses.replace(config, steps=40)).step == 40


def test_a_run_holds_its_directory_until_it_closes_and_its_process_may_start_it_again(tmp_path):
    config = TrainConfig(steps=20, checkpoint_every=10)
    start_run(tmp_path, "fake", config)
    refused = subprocess.run([sys.executable, "-c", CLAIM, str(tmp_path), "run"], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "is in use by another process" in refused.stderr
    start_run(tmp_path, "fake", config).close()  # this process's own: a run left open (by an exception) resumes
    process = holder(tmp_path)
    process.kill()
    process.wait()


def test_a_file_system_without_locks_trains_with_a_warning(tmp_path, monkeypatch):
    import errno
    import fcntl

    def flock(descriptor, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", flock)
    with pytest.warns(UserWarning, match="its file system cannot lock it"):
        run = fake_run(tmp_path, TrainConfig(steps=20, checkpoint_every=10))
    assert run.step == 20 and (tmp_path / "checkpoint").is_dir()


def test_a_device_this_machine_lacks_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    # From Python, train() was torch's AssertionError (Torch not compiled with CUDA enabled) after
    # the run had written its config.yaml; loading a run trained on a GPU was the same.
    from pymbrl.agents.sac import SACConfig
    from pymbrl.training.run import read_config_of

    cuda(monkeypatch, available=True)
    start_run(tmp_path / "gpu-run", "sac", SACConfig(device="cuda")).close()  # trained on a GPU machine
    cuda(monkeypatch, available=False)
    for name in [n for n in agents.ALGORITHMS if n != "i2a"]:  # whose config refuses any device but the CPU
        config = dataclasses.replace(agents.config_class(name)(), device="cuda")
        with pytest.raises(ValueError, match="^device: 'cuda' asks for CUDA, which is not available on this machine"):
            agents.module(name).train(config, tmp_path / name)
        assert not (tmp_path / name).exists(), name
    with pytest.raises(ValueError, match="^device: 'cuda' asks for CUDA"):
        read_config_of(tmp_path / "gpu-run", SACConfig, "sac")
    assert read_config_of(tmp_path / "gpu-run", SACConfig, "sac", device="cpu").device == "cpu"


class Interrupted(Callbacks):
    def on_progress(self, stage, done, total):
        raise KeyboardInterrupt


@pytest.mark.parametrize("algorithm", list(agents.ALGORITHMS))
def test_a_run_interrupted_from_python_frees_its_directory(algorithm, tmp_path):
    # An interrupted train() in a notebook kept its directory locked until the kernel ended, and
    # `pymbrl train` on it from a terminal was refused as if the run still trained.
    with pytest.raises(KeyboardInterrupt):
        agents.module(algorithm).train(agents.config_class(algorithm)(), tmp_path, callbacks=Interrupted())
    free = subprocess.run([sys.executable, "-c", "import sys, pathlib; from pymbrl.training import run; "
                           "run.check_unclaimed(pathlib.Path(sys.argv[1]))", str(tmp_path)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert free.returncode == 0, free.stderr
