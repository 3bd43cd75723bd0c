"""Checkpoints of a training run, taken at episode boundaries so that a resumed run continues
exactly as the uninterrupted one would have: the same parameters, optimiser moments, replay
contents and samplers, and every random state (the agent's own generators, the env's and its
action space's).

A run directory holds ``checkpoint/`` (``state.pt`` plus one file per replay buffer) and
``log.csv`` (the evaluation history, rewritten in full at every evaluation). A checkpoint is
written into a fresh folder that then replaces the old one, so a crash mid-save leaves the previous
checkpoint usable; every file is written through :mod:`pymbrl._files` (fsynced, renamed, directory
fsynced), and what a writer killed mid-save left behind is removed by the next save.

``.pt`` files are ``torch.save`` archives: zip files whose every record carries a CRC-32, which
:func:`load_torch` checks before ``torch.load(weights_only=True)`` reads them (torch itself does
not, so a flipped bit would otherwise load as a silently different value), so that a corrupt or
truncated file raises ValueError naming it. Nothing pymbrl reads is unpickled beyond the
tensors-and-plain-types subset that ``weights_only`` allows.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from pymbrl import _files, replay
from pymbrl._checks import integer, resolve_seed
from pymbrl.replay import ReplayBuffer

STATE = "state.pt"
# The classes a checkpoint may name for its buffers: the name in state.pt picks the loader, so it
# must not pick anything else in pymbrl.replay.
BUFFER_KINDS = ("ReplayBuffer", "PrioritizedReplayBuffer", "SequenceReplayBuffer", "GameBuffer")


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], Any]) -> None:
    """Writes ``path`` through ``write(file)`` crash-safely (see :func:`pymbrl._files.atomic_write`)."""
    _files.atomic_write(path, write)


def save_atomically(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` through :func:`atomic_write`; read it with :func:`load_torch`."""
    atomic_write(path, lambda f: torch.save(obj, f))


def check_archive(path: str | os.PathLike) -> None:
    """Raises ValueError naming ``path`` unless it is a whole zip archive (``torch.save``'s and
    ``np.savez``'s format) whose records are stored uncompressed (so that checking them cannot
    inflate a small file into a large one) and all match their CRC-32."""
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
            if not records:
                raise ValueError("it holds no records")
            size = os.path.getsize(path)
            for record in records:
                if record.compress_type != zipfile.ZIP_STORED or record.file_size > size:
                    raise ValueError(f"record {record.filename!r} is compressed or larger than the file")
            bad = archive.testzip()
            if bad is not None:
                raise ValueError(f"record {bad!r} does not match its CRC-32")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except ValueError as error:
        raise ValueError(f"{path}: corrupt file ({error})") from None
    except Exception as error:  # zipfile raises BadZipFile, OSError, RuntimeError, NotImplementedError, ...
        raise ValueError(f"{path}: corrupt or truncated file ({type(error).__name__}: {error})") from None


def load_torch(path: str | os.PathLike) -> Any:
    """What :func:`save_atomically` wrote to ``path``, read with ``torch.load(weights_only=True)``
    after :func:`check_archive`. Raises ValueError naming the file if it is missing, corrupt,
    truncated, or holds anything but tensors and plain types (a pickled object is refused, never run)."""
    check_archive(path)
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:
        # torch's refusal of a pickled object is a page of advice; its reason is the last part.
        reason = str(error).rpartition("WeightsUnpickler error: ")[2].strip().split("\n")[0][:300]
        raise ValueError(f"{path}: not a readable pymbrl file ({type(error).__name__}: {reason})") from None


def field(value: Any, kinds: type | tuple[type, ...], where: str, check: Callable[[Any], bool] | None = None,
          expected: str | None = None) -> Any:
    """``value`` if it is one of ``kinds`` (bool is not an int here) and passes ``check``; else
    ValueError "<where>: expected <expected>, got <value>"."""
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok or (check is not None and not check(value)):
        shown = repr(value) if len(repr(value)) < 80 else f"{type(value).__name__}"
        raise ValueError(f"{where}: expected {expected or ' or '.join(k.__name__ for k in kinds)}, got {shown}")
    return value


def arrays_to_tensors(value: Any) -> Any:
    """``value`` (dicts, lists and tuples of numpy arrays, numbers, strings, tensors) with its numpy
    arrays as tensors and numpy scalars as numbers, which ``torch.load(weights_only=True)`` reads
    back (it refuses numpy arrays); :func:`tensors_to_arrays` undoes it. Tuples come back as lists."""
    if isinstance(value, np.ndarray):
        return {"__ndarray__": torch.from_numpy(value.copy())}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: arrays_to_tensors(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [arrays_to_tensors(v) for v in value]
    return value


def tensors_to_arrays(value: Any) -> Any:
    """Undoes :func:`arrays_to_tensors`: only the arrays it wrapped become numpy again."""
    if isinstance(value, dict):
        if set(value) == {"__ndarray__"}:
            return value["__ndarray__"].numpy()
        return {k: tensors_to_arrays(v) for k, v in value.items()}
    if isinstance(value, list):
        return [tensors_to_arrays(v) for v in value]
    return value


def random_states(env: gym.Env, generators: Iterable[torch.Generator] = ()) -> dict[str, Any]:
    """The states of the given generators, the env's and its action space's."""
    return {"generators": [g.get_state() for g in generators],
            "env": env.unwrapped.np_random.bit_generator.state,
            "action_space": env.action_space.np_random.bit_generator.state}


def restore_random_states(states: dict[str, Any], env: gym.Env, generators: Iterable[torch.Generator] = ()) -> None:
    for g, s in zip(generators, states["generators"], strict=True):
        g.set_state(s)
    env.unwrapped.np_random.bit_generator.state = states["env"]
    env.action_space.np_random.bit_generator.state = states["action_space"]


class Run:
    """The bookkeeping of one training run: its seed, where it resumes from, its evaluation history,
    and (with a directory) its checkpoints and ``log.csv``. Made by :func:`start_run`.

    Attributes
    ----------
    seed : int -- the run's seed (a checkpoint's own where the caller passed None).
    step : int -- the env steps already done (0 on a fresh start).
    state : dict or None -- what the checkpoint saved (None on a fresh start).
    buffers : dict[str, ReplayBuffer] -- the checkpoint's replay buffers by name.
    history : list[dict] -- the evaluation records so far.
    """

    def __init__(self, seed: int, steps: int, directory: Path | None, identity: dict[str, str], every: int):
        self.seed, self.total, self.directory, self.identity, self.every = seed, steps, directory, identity, every
        self.step, self.state, self.buffers, self.folder = 0, None, {}, None
        self.history: list[dict[str, float]] = []
        self.started = time.perf_counter()

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
            if type(loaded) is not type(made) or loaded._config() != made._config():
                raise ValueError(f"{self.folder / f'{name}.buffer'}: expected the {type(made).__name__} this run makes "
                                 f"({made._config()!r:.300}), got {loaded!r:.200}")
        try:
            yield
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as error:
            raise ValueError(f"{self.folder / STATE}: the algorithm's state does not restore "
                             f"({type(error).__name__}: {error})") from None

    def _resume(self, folder: Path, state: dict[str, Any]) -> None:
        self.folder = folder
        for name, value in self.identity.items():
            if state["identity"].get(name) != value:
                raise ValueError(f"{name}: the checkpoint in {str(self.directory)!r} is of a run with "
                                 f"{name}={state['identity'].get(name)}, not {value}; pass the same value or "
                                 f"another run_dir")
        # Each buffer is read back by its own class (ReplayBuffer, GameBuffer, ...).
        self.buffers = {name: getattr(replay, kind).load(folder / f"{name}.buffer")
                        for name, kind in state["buffers"].items()}
        self.state, self.step, self.history = state, state["step"], state["history"]
        self.started -= state["seconds"]

    def evaluated(self, record: dict[str, float], log: Callable[[dict], Any] | None) -> None:
        """Appends an evaluation record, rewrites ``log.csv`` and passes the record to ``log``."""
        self.history.append({**record, "seconds": round(self.seconds, 1)})
        if self.directory is not None:
            text = io.StringIO(newline="")
            writer = csv.DictWriter(text, fieldnames=list(self.history[-1]), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.history)
            atomic_write(self.directory / "log.csv", lambda f: f.write(text.getvalue().encode()))
        if log is not None:
            log(self.history[-1])

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


# Suffixes of the folders a save makes beside checkpoint/ (named by pymbrl._files.temporary_name,
# so that the next save can tell a dead writer's from a live one's).
FRESH, OLD = ".tmp", ".old"


def _previous_checkpoint(directory: Path) -> Path | None:
    """The checkpoint a save killed between its two renames moved aside (``.checkpoint.<pid>-<hex>.old``,
    or ``.old-<hex>`` as earlier versions named it), the newest if several; None if there is none."""
    found = [p.parent for pattern in (f".checkpoint.*{OLD}/{STATE}", f".old-*/{STATE}")
             for p in directory.glob(pattern)]
    return max(found, key=lambda folder: (folder / STATE).stat().st_mtime) if found else None


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
    field(identity.get("seed"), str, at("identity['seed']"), lambda v: v.isdigit() and int(v) < 2**31,
          "a seed in [0, 2**31)")
    total = int(field(identity.get("steps"), str, at("identity['steps']"), str.isdigit, "a number of steps"))
    field(state["step"], int, at("step"), lambda v: 0 <= v <= total, f"an int in [0, {total}]")
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


def start_run(run_dir: str | os.PathLike | None, steps: int, identity: dict[str, Any], seed: int | None,
              checkpoint_every: int = 1000) -> Run:
    """A fresh run of ``steps`` env steps, or the one whose checkpoint is in ``run_dir``.

    ``identity`` names what else makes two runs the same (algorithm, env, configuration); resuming
    a checkpoint of another run raises ValueError naming the first argument that differs. A
    ``seed`` of None draws one on a fresh start and takes the checkpoint's on a resume. A corrupt,
    truncated or edited checkpoint raises ValueError naming its file.
    """
    every = integer(checkpoint_every, "checkpoint_every")
    identity = {k: str(v) for k, v in {**identity, "steps": steps}.items()}
    if run_dir is None:
        return Run(resolve_seed(seed) % 2**31, steps, None, identity, every)
    directory = Path(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    folder: Path | None = directory / "checkpoint"
    if not (folder / STATE).exists():
        folder = _previous_checkpoint(directory)
    state = None if folder is None else read_state(folder)
    if state is not None and seed is None:
        seed = int(state["identity"]["seed"])
    seed = resolve_seed(seed) % 2**31
    run = Run(seed, steps, directory, {**identity, "seed": str(seed)}, every)
    if state is not None:
        run._resume(folder, state)
    return run
