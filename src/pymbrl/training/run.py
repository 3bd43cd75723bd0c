"""The run directory of a training run and its checkpoints.

A run directory holds:

``config.yaml``
    the run's config (the algorithm's dataclass, every field), rewritten when the run starts or resumes;
``log.csv``
    the evaluation records, rewritten in full at every record;
``events.out.tfevents.*``
    the same records as TensorBoard scalars (``tensorboard --logdir runs``), tagged ``<stage>/<key>``;
``checkpoint/``
    ``state.pt`` plus one file per replay buffer, taken at episode boundaries so that a resumed run
    continues exactly as the uninterrupted one would have: the same parameters, optimiser moments,
    replay contents and samplers, and every random state;
``learning_curve.png``
    written by the CLI.

A checkpoint is written into a fresh folder that then replaces the old one, so a crash mid-save
leaves the previous checkpoint usable; every file goes through :mod:`pymbrl._files` (fsynced,
renamed, directory fsynced), and what a writer killed mid-save left behind is removed by the next
save. Staged agents keep one such directory per stage that checkpoints (World Models and I2A put
their stages' artefacts beside it).

One process at a time trains in a run directory: a run holds an advisory lock on it (``flock``,
which the system drops when the process ends, however it ends) from its start until it closes,
and another process that starts a run there is refused (:func:`claim`).
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import fcntl
import io
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from pymbrl import _files, replay
from pymbrl._checks import check_device_available, integer
from pymbrl._extras import optional_imports
from pymbrl.replay import ReplayBuffer
from pymbrl.training.callbacks import Callbacks
from pymbrl.training.checkpoint import field, load_torch, save_atomically
from pymbrl.training.config import C, TrainConfig, read_config, read_values, write_config

STATE = "state.pt"
CONFIG_FILE = "config.yaml"
LOG_FILE = "log.csv"
# The classes a checkpoint may name for its buffers: the name in state.pt picks the loader, so it
# must not pick anything else in pymbrl.replay.
BUFFER_KINDS = ("ReplayBuffer", "PrioritizedReplayBuffer", "SequenceReplayBuffer", "GameBuffer")
MAX_STEP = 2**62
# Suffixes of the folders a save makes beside checkpoint/ (named by pymbrl._files.temporary_name,
# so that the next save can tell a dead writer's from a live one's).
FRESH, OLD = ".tmp", ".old"


class Run:
    """The bookkeeping of one training run (or one stage of a staged run): its seed, where it
    resumes from, its records, and (with a directory) its checkpoints, ``log.csv`` and TensorBoard
    events. Made by :func:`start_run`.

    Attributes
    ----------
    seed : int -- the config's seed.
    total : int -- the env steps (or frames) the run goes to.
    step : int -- the env steps already done (0 on a fresh start).
    state : dict or None -- what the checkpoint saved (None on a fresh start).
    buffers : dict[str, ReplayBuffer] -- the checkpoint's replay buffers by name.
    history : list[dict] -- the records so far.
    """

    def __init__(self, seed: int, total: int, directory: Path | None, identity: dict[str, str], every: int,
                 stage: str, callbacks: Callbacks):
        self.seed, self.total, self.directory, self.identity, self.every = seed, total, directory, identity, every
        self.stage, self.callbacks = stage, callbacks
        self.step, self.state, self.buffers, self.folder = 0, None, {}, None
        self.history: list[dict[str, Any]] = []
        self.started = time.perf_counter()
        self.writer: Any = None
        self.claimed = False

    @property
    def seconds(self) -> float:
        """Training time so far, including that of the runs this one resumes."""
        return time.perf_counter() - self.started

    @contextmanager
    def restoring(self, **fresh: Any) -> Iterator[None]:
        """Around an algorithm's restore of :attr:`state` (its own fields, unchecked by
        :func:`read_state`): the checkpoint's buffers named in ``fresh`` must be of the class and
        configuration of the buffers the run makes (``fresh``), and any failure of the restore
        (a missing key, a tensor of another shape, a non-finite weight...) raises ValueError
        naming ``state.pt`` rather than escaping as a KeyError or torch error."""
        for name, made in fresh.items():
            loaded = self.buffers.get(name)
            if type(loaded) is not type(made) or loaded.config() != made.config():
                raise ValueError(f"{self.folder / f'{name}.buffer'}: expected the {type(made).__name__} this run makes "
                                 f"({made.config()!r:.300}), got {loaded!r:.200}")
        with restoring(self.folder / STATE):
            yield

    def resume(self, folder: Path, state: dict[str, Any]) -> None:
        """Takes up the checkpoint ``state`` read from ``folder``; refuses one of another run."""
        self.folder = folder
        _check_state(state, self.identity, self.total, self.directory)
        # Each buffer is read back by its own class (ReplayBuffer, GameBuffer, ...).
        self.buffers = {name: getattr(replay, kind).load(folder / f"{name}.buffer")
                        for name, kind in state["buffers"].items()}
        self.state, self.step, self.history = state, state["step"], state["history"]
        self.started -= state["seconds"]
        if self.history and self.directory is not None:
            # Records after the checkpoint (lost with the interrupted run) are dropped from TensorBoard.
            self.tensorboard(purge_step=self.step + 1)

    def tensorboard(self, purge_step: int | None = None) -> Any:
        """The run's TensorBoard writer (made at its first use)."""
        if self.writer is None and self.directory is not None:
            with optional_imports():
                from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.directory), purge_step=purge_step)
        return self.writer

    def evaluated(self, record: dict[str, Any]) -> None:
        """Appends a record (with the training time so far), rewrites ``log.csv``, writes its
        numbers to TensorBoard and passes it to the callbacks."""
        record = {**record, "seconds": round(self.seconds, 1)}
        self.history.append(record)
        if self.directory is not None:
            write_log(self.directory / LOG_FILE, self.history)
            writer = self.tensorboard()
            step = int(record.get("step", record.get("frames", len(self.history))))
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("step", "frames"):
                    writer.add_scalar(f"{self.stage}/{key}", value, step)
            writer.flush()
        self.callbacks.on_record(self.stage, record)

    def progress(self, done: int) -> None:
        self.callbacks.on_progress(self.stage, done, self.total)

    def due(self, step: int, episode_over: bool) -> bool:
        """Whether to checkpoint now: at the first episode end at or after a multiple of ``every``,
        and after the run's last step (so that running a finished run again does nothing)."""
        if self.directory is None:
            return False
        return step == self.total or (episode_over and step // self.every > self.step // self.every)

    def save(self, step: int, state: dict[str, Any], buffers: dict[str, ReplayBuffer]) -> None:
        """Checkpoints env step ``step`` (taken at an episode end, before the env's reset)."""
        assert self.directory is not None
        current = self.directory / "checkpoint"
        # Fresh folders of writers killed mid-save; and, once the current checkpoint is whole, the
        # previous checkpoints they had moved aside (before that, one may be the only checkpoint).
        _files.remove_dead_writers(current, FRESH)
        if (current / STATE).exists():
            _files.remove_dead_writers(current, OLD)
        fresh = _files.temporary_name(current, FRESH)
        fresh.mkdir()
        try:
            for name, buffer in buffers.items():
                buffer.save(fresh / f"{name}.buffer")
            save_atomically(fresh / STATE, {
                **state, "step": step, "seconds": self.seconds, "history": self.history, "identity": self.identity,
                "buffers": {name: type(buffer).__name__ for name, buffer in buffers.items()}})
            old = _files.temporary_name(current, OLD)
            if current.exists():
                current.rename(old)
            fresh.rename(current)
            _files.fsync_directory(self.directory)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
        self.step = step

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the TensorBoard writer and frees the run directory for other processes; a closed
        run may be closed again."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.claimed:
            release(self.directory)
            self.claimed = False


@contextmanager
def restoring(path: Path) -> Iterator[None]:
    """Any failure of an algorithm's restore from the checkpoint ``path`` (a missing key, a tensor
    of another shape, a non-finite weight...) raises ValueError naming the file rather than
    escaping as a KeyError or torch error."""
    try:
        yield
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as error:
        raise ValueError(f"{path}: the algorithm's state does not restore ({type(error).__name__}: {error})") from None


def write_log(path: Path, records: list[dict[str, Any]]) -> None:
    """``records`` as CSV (the columns of the first record that has the most, so that records before
    the first update, without losses, leave their loss cells empty)."""
    columns = list(max(records, key=len))
    for record in records:
        columns += [k for k in record if k not in columns]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records)
    _files.atomic_write(path, lambda f: f.write(text.getvalue().encode()))


def _check_identity(saved: dict[str, str], current: dict[str, str], directory: Path | None) -> None:
    """Refuses a checkpoint of another run, naming the first setting that differs."""
    where = f"the run in {str(directory)!r}"
    for name, value in current.items():
        if saved.get(name) == value:
            continue
        if name == "config" and name in saved:
            old, new = json.loads(saved[name]), json.loads(value)
            key = next((k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)), None)
            if key is not None:
                raise ValueError(f"{key}: {where} has {key}={json.dumps(old.get(key))}, not {json.dumps(new.get(key))}; "
                                 f"pass the same value or another run directory")
            continue
        raise ValueError(f"{name}: {where} is of {name} {saved.get(name)}, not {value}; "
                         f"pass the same value or another run directory")


def _check_state(state: dict[str, Any], identity: dict[str, str], total: int, directory: Path | None) -> None:
    """Refuses a checkpoint of another run, or one past the ``total`` steps this run goes to."""
    _check_identity(state["identity"], identity, directory)
    if state["step"] > total:
        raise ValueError(f"steps: the run in {str(directory)!r} has already done {state['step']} steps; "
                         f"expected steps >= {state['step']}, got {total}")


def _previous_checkpoint(directory: Path) -> Path | None:
    """The checkpoint a save killed between its two renames moved aside (``.checkpoint.<pid>-<hex>.old``,
    or ``.old-<hex>`` as earlier versions named it), the newest if several; None if there is none."""
    found = [p.parent for pattern in (f".checkpoint.*{OLD}/{STATE}", f".old-*/{STATE}")
             for p in directory.glob(pattern)]
    return max(found, key=lambda folder: (folder / STATE).stat().st_mtime) if found else None


def checkpoint_folder(directory: Path) -> Path | None:
    """The folder of the newest whole checkpoint in the run directory ``directory``, or None."""
    folder = directory / "checkpoint"
    return folder if (folder / STATE).exists() else _previous_checkpoint(directory)


def read_state(folder: Path) -> dict[str, Any]:
    """``folder/state.pt`` with the fields :class:`Run` reads validated (the algorithm validates its
    own); raises ValueError naming the file and the field for a corrupt or edited one."""
    path = folder / STATE
    state = field(load_torch(path), dict, str(path), expected="a dict")

    def at(name: str) -> str:
        return f"{path}: {name}"

    for name in ("step", "seconds", "history", "identity", "buffers"):
        if name not in state:
            raise ValueError(f"{at(name)}: expected the field, got a checkpoint without it")
    identity = field(state["identity"], dict, at("identity"), expected="a dict")
    for key, value in identity.items():
        field(key, str, at("identity"), expected="str keys")
        field(value, str, at(f"identity[{key!r}]"), expected="a str")
    for key in ("algorithm", "config"):
        field(identity.get(key), str, at(f"identity[{key!r}]"), expected="a str")
    try:
        config = json.loads(identity["config"])
    except ValueError:
        config = None
    field(config, dict, at("identity['config']"), expected="a JSON object of config fields")
    field(config.get("seed"), int, at("identity['config'] seed"), lambda v: 0 <= v < 2**31, "a seed in [0, 2**31)")
    field(state["step"], int, at("step"), lambda v: 0 <= v <= MAX_STEP, f"an int in [0, {MAX_STEP}]")
    field(state["seconds"], (float, int), at("seconds"), lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
    history = field(state["history"], list, at("history"), expected="a list")
    for i, record in enumerate(history):
        field(record, dict, at(f"history[{i}]"), expected="a dict")
        for key, value in record.items():
            field(key, str, at(f"history[{i}]"), expected="str keys")
            field(value, (int, float, str, type(None)), at(f"history[{i}][{key!r}]"), expected="a number, str or None")
    buffers = field(state["buffers"], dict, at("buffers"), expected="a dict")
    for name, kind in buffers.items():
        field(name, str, at("buffers"), lambda v: v.isidentifier(), "names that are identifiers")
        field(kind, str, at(f"buffers[{name!r}]"), lambda v: v in BUFFER_KINDS, f"one of {list(BUFFER_KINDS)}")
    return state


def start_run(run_dir: str | os.PathLike | None, algorithm: str, config: TrainConfig, *,
              callbacks: Callbacks | None = None, stage: str = "train", total: int | None = None,
              every: int | None = None, identity: dict[str, str] | None = None, write: bool = True) -> Run:
    """A fresh run of ``algorithm`` with ``config``, or the one whose checkpoint is in ``run_dir``.

    ``total`` (default ``config.steps``) is where the run ends and ``every`` (default
    ``config.checkpoint_every``) how often it checkpoints. Two runs are the same run when their
    algorithm, ``identity`` (what else a stage depends on) and config (all but ``steps`` and
    ``device``) are: resuming a checkpoint of another run raises ValueError naming the first
    setting that differs, and one past ``total`` names ``steps``. A finished run given a larger
    ``total`` continues. ``write`` puts the config in ``run_dir/config.yaml``. A corrupt, truncated
    or edited checkpoint raises ValueError naming its file, and a ``config.device`` this machine
    cannot use raises ValueError naming ``device`` before anything is written.
    """
    check_device_available(config.device)
    total = integer(config.steps if total is None else total, "steps")
    every = integer(config.checkpoint_every if every is None else every, "checkpoint_every")
    identity = {"algorithm": algorithm, "config": json.dumps(config.identity(), sort_keys=True), **(identity or {})}
    callbacks = callbacks or Callbacks()
    if run_dir is None:
        return Run(config.seed, total, None, identity, every, stage, callbacks)
    directory = Path(run_dir)
    _check_directory(directory, algorithm, config, config_file=write)
    run = Run(config.seed, total, directory, identity, every, stage, callbacks)
    if write:  # a stage's records (write=False) are inside a run directory its pipeline claimed
        claim(directory)
        run.claimed = True
    try:
        folder = checkpoint_folder(directory)
        if folder is not None:
            run.resume(folder, read_state(folder))
        directory.mkdir(parents=True, exist_ok=True)
        if write:
            write_config(config, directory / CONFIG_FILE, algorithm)
    except BaseException:
        run.close()
        raise
    return run


_CLAIMED: dict[str, int] = {}
"""The run directories this process trains in (their real paths) and the descriptors holding their locks."""


def claim(directory: Path) -> None:
    """Makes ``directory`` (and its parents) if needed and locks it for this process until
    :func:`release` or the process's end. Raises ValueError naming it if another process holds it.
    A directory this process holds already stays held (a run its code left open, in a notebook,
    resumes there)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(directory)
    if key not in _CLAIMED:
        _CLAIMED[key] = _locked(directory, fcntl.LOCK_EX)


def release(directory: Path) -> None:
    """Unlocks a directory that :func:`claim` locked, however many runs of this process claimed it
    (nothing if this process does not hold it)."""
    descriptor = _CLAIMED.pop(os.path.realpath(directory), None)
    if descriptor is not None:
        with suppress(OSError):  # a file system without locks (see _locked): nothing to unlock
            fcntl.flock(descriptor, fcntl.LOCK_UN)  # also for the env workers forked since, which share the lock
        os.close(descriptor)


def check_unclaimed(directory: Path) -> None:
    """Raises :func:`claim`'s ValueError if another process holds ``directory``; changes nothing."""
    if directory.is_dir() and os.path.realpath(directory) not in _CLAIMED:
        os.close(_locked(directory, fcntl.LOCK_SH))


def _locked(directory: Path, operation: int) -> int:
    """A descriptor of ``directory`` holding the ``flock`` lock ``operation``, or ValueError naming
    the directory if another process holds a lock that excludes it. On a file system without
    ``flock`` (some network and cluster file systems) a warning says the directory is not guarded,
    and the descriptor holds nothing."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, operation | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            warnings.warn(f"{str(directory)!r}: its file system cannot lock it ({error.strerror}), so a second "
                          f"process training in it would not be refused", stacklevel=3)
            return descriptor
        os.close(descriptor)
        if isinstance(error, BlockingIOError):
            raise ValueError(f"run_dir: {str(directory)!r} is in use by another process training in it; wait for "
                             f"that run to end (or stop it), or use another run directory") from None
        raise
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def run_algorithm(run_dir: str | os.PathLike) -> str:
    """The algorithm named by the ``config.yaml`` of the run directory ``run_dir``."""
    directory = _run_directory(run_dir)
    algorithm = read_values(directory / CONFIG_FILE).get("algorithm")
    if not isinstance(algorithm, str):
        raise ValueError(f"{directory / CONFIG_FILE}: algorithm: expected the name of an algorithm, got {algorithm!r}")
    return algorithm


def _run_directory(run_dir: str | os.PathLike) -> Path:
    directory = Path(run_dir)
    if not directory.is_dir():
        raise ValueError(f"run_dir: expected the directory of a pymbrl run, got {str(directory)!r}, which "
                         f"{'is not a directory' if directory.exists() else 'does not exist'}")
    if not (directory / CONFIG_FILE).is_file():
        raise ValueError(f"run_dir: {str(directory)!r} has no {CONFIG_FILE}; is it the directory of a pymbrl run?")
    return directory


def read_config_of(run_dir: str | os.PathLike, cls: type[C], algorithm: str, device: str | None = None) -> C:
    """The config of the ``algorithm`` run in ``run_dir``, on ``device`` if given; ValueError naming
    ``device`` if this machine cannot use it (the run's own, where ``device`` is not given: a run
    trained on a GPU loads here with ``device="cpu"``)."""
    directory = _run_directory(run_dir)
    config = read_config(cls, directory / CONFIG_FILE, algorithm)
    config = config if device is None else dataclasses.replace(config, device=device)
    check_device_available(config.device)
    return config


def read_run(run_dir: str | os.PathLike, cls: type[C], algorithm: str, device: str | None = None,
             folder: str = ".") -> tuple[C, dict[str, Any]]:
    """The config and the last checkpoint's state of the ``algorithm`` run in ``run_dir`` (the
    checkpoint of its ``folder``, for a stage of a staged run), on ``device`` if given. Raises
    ValueError naming the directory or file when there is no such run or the checkpoint is not
    of this config (an edited ``config.yaml``)."""
    config = read_config_of(run_dir, cls, algorithm, device)
    directory = Path(run_dir) / folder
    found = checkpoint_folder(directory)
    if found is None:
        raise ValueError(f"run_dir: no checkpoint in {str(directory)!r} (checkpoint/{STATE}); has the run saved one?")
    state = read_state(found)
    _check_identity(state["identity"], {"algorithm": state["identity"]["algorithm"],
                                        "config": json.dumps(config.identity(), sort_keys=True)}, directory)
    if not state["identity"]["algorithm"].startswith(algorithm):
        raise ValueError(f"{found / STATE}: a checkpoint of {state['identity']['algorithm']!r}, not {algorithm!r}")
    return config, state


def check_resumable(run_dir: str | os.PathLike, algorithm: str, config: TrainConfig) -> None:
    """Refuses (ValueError naming the setting) to start ``algorithm`` with ``config`` in ``run_dir``
    when the directory is a file, or holds a run (its ``config.yaml``, its checkpoint) of another
    algorithm or config, or one that has gone past ``config.steps``, or another process is training
    in it; changes nothing."""
    directory = Path(run_dir)
    check_unclaimed(directory)
    _check_directory(directory, algorithm, config, config_file=True)
    folder = checkpoint_folder(directory)
    if folder is not None:
        identity = {"algorithm": algorithm, "config": json.dumps(config.identity(), sort_keys=True)}
        _check_state(read_state(folder), identity, config.steps, directory)


def _check_directory(directory: Path, algorithm: str, config: TrainConfig, config_file: bool) -> None:
    """Refuses a ``directory`` that is a file, or (with ``config_file``) whose ``config.yaml`` is of
    another algorithm or run."""
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"run_dir: expected a directory, got {str(directory)!r}, which is not one")
    if config_file and (directory / CONFIG_FILE).is_file():
        values = read_values(directory / CONFIG_FILE)
        saved = read_config(type(config), directory / CONFIG_FILE) if values.get("algorithm") == algorithm else None
        _check_identity({"algorithm": str(values.get("algorithm")),
                         "config": json.dumps(saved.identity() if saved else {}, sort_keys=True)},
                        {"algorithm": algorithm, "config": json.dumps(config.identity(), sort_keys=True)}, directory)
