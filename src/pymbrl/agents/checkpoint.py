"""Checkpoints of a training run, taken at episode boundaries so that a resumed run continues
exactly as the uninterrupted one would have: the same parameters, optimiser moments, replay
contents and samplers, and every random state (the agent's own generators, the env's and its
action space's).

A run directory holds ``checkpoint/`` (``state.pt`` plus one file per replay buffer) and
``log.csv`` (the evaluation history, rewritten in full at every evaluation). A checkpoint is
written into a fresh folder that then replaces the old one, so a crash mid-save leaves the previous
checkpoint usable.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from pymbrl._checks import integer, resolve_seed
from pymbrl import replay
from pymbrl.replay import ReplayBuffer

STATE = "state.pt"


def atomic_write(path: Path, write: Callable[[io.BufferedWriter], Any]) -> None:
    """Writes ``path`` through ``write(file)`` into a temporary file that then replaces it, so that
    a crash mid-write leaves the previous file whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def save_atomically(path: Path, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` through :func:`atomic_write`."""
    atomic_write(path, lambda f: torch.save(obj, f))


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
        self.step, self.state, self.buffers = 0, None, {}
        self.history: list[dict[str, float]] = []
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Training time so far, including that of the runs this one resumes."""
        return time.perf_counter() - self.started

    def _resume(self, folder: Path, state: dict[str, Any]) -> None:
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
            tmp = self.directory / f".log-{uuid.uuid4().hex}.csv"
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(self.history[-1]), extrasaction="ignore")
                writer.writeheader()
                writer.writerows(self.history)
            os.replace(tmp, self.directory / "log.csv")
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
        fresh = self.directory / f".checkpoint-{uuid.uuid4().hex}"
        fresh.mkdir()
        try:
            for name, buffer in buffers.items():
                buffer.save(fresh / f"{name}.buffer")
            torch.save({**state, "step": step, "seconds": self.seconds, "history": self.history,
                        "identity": self.identity,
                        "buffers": {name: type(buffer).__name__ for name, buffer in buffers.items()}}, fresh / STATE)
            old = self.directory / f".old-{uuid.uuid4().hex}"
            current = self.directory / "checkpoint"
            if current.exists():
                current.rename(old)
            fresh.rename(current)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
        self.step = step


def start_run(run_dir: str | os.PathLike | None, steps: int, identity: dict[str, Any], seed: int | None,
              checkpoint_every: int = 1000) -> Run:
    """A fresh run of ``steps`` env steps, or the one whose checkpoint is in ``run_dir``.

    ``identity`` names what else makes two runs the same (algorithm, env, configuration); resuming
    a checkpoint of another run raises ValueError naming the first argument that differs. A
    ``seed`` of None draws one on a fresh start and takes the checkpoint's on a resume.
    """
    every = integer(checkpoint_every, "checkpoint_every")
    identity = {k: str(v) for k, v in {**identity, "steps": steps}.items()}
    if run_dir is None:
        return Run(resolve_seed(seed) % 2**31, steps, None, identity, every)
    directory = Path(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    folder = directory / "checkpoint"
    if not (folder / STATE).exists():
        # A save interrupted between its two renames leaves the previous checkpoint as .old-*.
        old = sorted(directory.glob(".old-*/" + STATE))
        folder = old[0].parent if old else None
    state = None if folder is None else torch.load(folder / STATE, weights_only=True)
    if state is not None and seed is None:
        seed = int(state["identity"]["seed"])
    seed = resolve_seed(seed) % 2**31
    run = Run(seed, steps, directory, {**identity, "seed": str(seed)}, every)
    if state is not None:
        run._resume(folder, state)
    return run
