"""Helpers shared by the Python tests (tests/ is on the path: pyproject's pytest pythonpath)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pymbrl.training import Callbacks, curves


class Payload:
    """Unpickling this runs ``open(marker, "w")``: a file that holds it must be refused unread."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


class Steps(Callbacks):
    """Collects the steps (or frames) a run reports; raises KeyboardInterrupt at the first report at
    or past ``stop``, as a Ctrl-C there would."""

    def __init__(self, stop=None):
        self.steps, self.stop = [], stop

    def on_progress(self, stage, done, total):
        self.steps.append(done)
        if self.stop is not None and done >= self.stop:
            raise KeyboardInterrupt


# --------------------------------------------------------------------------------------------------
# The CLI in subprocesses, as a user runs it


def session(pid: int) -> list[int]:
    """Processes still alive in the session led by ``pid`` (the CLI's children and theirs)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while being listed
            continue
        if int(fields[3]) == pid and fields[0] != "Z":  # fields[3]: the session id
            members.append(int(stat.parent.name))
    return members


def cli_process(args: list[str], directory: Path) -> tuple[subprocess.Popen, Path]:
    out = directory / f"output-{time.monotonic_ns()}.txt"
    # This folder on the path lets the CLI (and its env workers) import this module's env.
    path = os.pathsep.join([str(Path(__file__).parent), *filter(None, [os.environ.get("PYTHONPATH")])])
    with open(out, "w") as f:  # a file, not a pipe: tqdm's output must never block the run
        process = subprocess.Popen([sys.executable, "-m", "pymbrl.cli", *args], stdout=f, stderr=subprocess.STDOUT,
                                   cwd=directory, start_new_session=True, env={**os.environ, "PYTHONPATH": path})
    return process, out


def has_losses(log: Path, loss: str) -> bool:
    try:
        return any(math.isfinite(r.get(loss, math.nan)) for r in curves.read_log(log))
    except (OSError, ValueError):  # not written yet, or being replaced
        return False


def interrupt_cli(tmp_path: Path, args: list[str], ready: Callable[[], bool], signum: int = signal.SIGINT) -> None:
    """Starts ``pymbrl <args>``, sends ``signum`` once ``ready()``, and checks that it stopped
    within seconds with status 128 + signum, saying how to resume, and left no process behind."""
    process, out = cli_process(args, tmp_path)
    deadline = time.monotonic() + 300
    try:
        while not ready():
            assert process.poll() is None, f"the run ended before it could be interrupted:\n{out.read_text()}"
            assert time.monotonic() < deadline, f"not ready to be interrupted:\n{out.read_text()}"
            time.sleep(0.1)
        process.send_signal(signum)
        sent = time.monotonic()
        status = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    text = out.read_text()
    assert time.monotonic() - sent < 10, text
    assert status == 128 + signum, text
    run_dir = args[args.index("--run-dir") + 1]
    assert f"resume with: pymbrl train {args[1]} --run-dir {run_dir}" in text, text
    assert "Traceback" not in text, text
    assert session(process.pid) == []  # no env worker (or its children) outlived the CLI


def run_cli(tmp_path: Path, args: list[str]) -> str:
    """Runs ``pymbrl <args>`` to its end; returns its output."""
    process, out = cli_process(args, tmp_path)
    assert process.wait(timeout=600) == 0, out.read_text()
    assert session(process.pid) == []
    return out.read_text()


CLAIM = ("import sys; from pymbrl.training import TrainConfig; from pymbrl.training.run import start_run; "
         "from pymbrl.training.stages import start_pipeline\n"
         "try:\n"
         "    (start_run if sys.argv[2] == 'run' else start_pipeline)(sys.argv[1], 'fake', "
         "TrainConfig(steps=20, checkpoint_every=10))\n"
         "except ValueError as error:\n"
         "    sys.exit(str(error))\n"
         "print('held', flush=True); sys.stdin.read()")


def cuda(monkeypatch, available: bool) -> None:
    """torch.cuda as on a machine with one CUDA device (``available``) or with none."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: int(available))


def holder(directory: Path, how: str = "run") -> subprocess.Popen:
    """Another process training in ``directory`` (``how``: "run" by start_run of a TrainConfig with
    steps=20, checkpoint_every=10, "pipeline" by start_pipeline), until killed; returned once it
    holds the directory."""
    process = subprocess.Popen([sys.executable, "-c", CLAIM, str(directory), how], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "held\n"
    return process

