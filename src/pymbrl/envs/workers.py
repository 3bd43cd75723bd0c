"""Vector envs whose envs run in worker processes that never outlive the run nor litter its folder.

:func:`worker_envs` opens a gymnasium vector env of ``num_envs`` copies of an env (in worker
processes, or in this process) and closes it however the block ends. A worker process

- ignores SIGINT: a terminal's Ctrl-C reaches every process of its process group, and the parent,
  which handles it, closes the workers (the games they start inherit the ignored SIGINT);
- exits through its ``finally`` on SIGTERM (the parent closing it on an interrupt), which closes its
  env and so the game process the env runs; a SIGTERM that comes while the env is being made waits
  until it is made, then closes it (exiting at once would orphan a game already launched);
- is sent SIGTERM by Linux when its parent dies, even of SIGKILL, which leaves the parent no chance
  to close it;
- leads a process group of its own, which the game its env launches joins, watched by a guard
  process that kills the group once the worker is gone: a worker killed outright cannot close its
  env, and Ray, ending an actor, kills the processes the actor started (the workers) but not
  theirs, so the games would run on, orphaned, for good;
- works in its own folder ``workdir/worker<i>``: a game may write files in its working directory
  (ViZDoom's game process writes ``_vizdoom.ini`` and ``_vizdoom/`` there, and two games creating
  the same ``_vizdoom/`` at once crash one of them), so each has its own, inside the run;
- runs torch on one thread: a worker forked after torch ran a parallel region in the parent hangs
  in its first parallel region (OpenMP's pool does not survive a fork), and one env's frames need
  no more than one thread.

AsyncVectorEnv also makes an env in the parent, to read its spaces. That one is made in a process
of its own, set up as a worker, which hands the spaces over and closes it: made in the parent, a
game it launches (ViZDoom starts one as its env is made) would be orphaned for good were the parent
killed meanwhile (a Ray actor is stopped with SIGKILL).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from pymbrl._checks import integer
from pymbrl._extras import optional_imports

with optional_imports():
    import gymnasium as gym


class WorkerEnv:
    """Makes ``make()`` in worker process ``index`` (see the module docstring for what the worker
    sets up first); picklable if ``make`` is, so it also works where workers are spawned rather
    than forked.

    Parameters
    ----------
    make : Callable[[], gym.Env] -- makes one env.
    workdir : Path -- the folder that holds the workers' folders (absolute).
    index : int -- the worker's number; it works in ``workdir/worker<index>``.
    """

    def __init__(self, make: Callable[[], gym.Env], workdir: Path, index: int):
        self.make, self.workdir, self.index = make, workdir, index
        self.parent = os.getpid()

    def __call__(self) -> gym.Env:
        if os.getpid() == self.parent:  # AsyncVectorEnv reading the spaces
            return _described(self)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        starting = _Starting()
        signal.signal(signal.SIGTERM, starting.handle)
        _terminate_with_parent(self.parent)
        _guard_process_group()
        torch.set_num_threads(1)
        folder = self.workdir / f"worker{self.index}"
        folder.mkdir(parents=True, exist_ok=True)
        os.chdir(folder)
        env = self.make()
        starting.made(env)
        return env


_GUARD = """
import ctypes, os, signal, sys
worker = int(sys.argv[1])
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # before the request, so none is missed
ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))  # 1: PR_SET_PDEATHSIG
if os.getppid() == worker:
    signal.sigwait({signal.SIGTERM})
try:
    os.killpg(worker, signal.SIGKILL)
except ProcessLookupError:
    pass
"""
_guards: list[subprocess.Popen] = []  # held, so that they are not reported as abandoned


def _guard_process_group() -> None:
    """Makes this worker the leader of a process group and starts the guard that kills the group
    once the worker is gone (Linux; elsewhere a no-op). The guard has a session of its own: a
    terminal's Ctrl-C does not reach it, and it is not in the group it kills."""
    if not sys.platform.startswith("linux"):
        return
    os.setpgid(0, 0)
    _guards.append(subprocess.Popen([sys.executable, "-I", "-S", "-c", _GUARD, str(os.getpid())],
                                    stdin=subprocess.DEVNULL, start_new_session=True))


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


class _Starting:
    """A worker's SIGTERM handler while its env is made: the signal is remembered, and once the env
    is made (and can be closed) it is closed and the worker exits."""

    def __init__(self) -> None:
        self.received = False

    def handle(self, signum: int, frame: Any) -> None:
        self.received = True

    def made(self, env: gym.Env) -> None:
        try:
            if signal.getsignal(signal.SIGTERM) == self.handle:  # not replaced by the env's library
                signal.signal(signal.SIGTERM, _exit_on_sigterm)
            if self.received:
                raise SystemExit(128 + signal.SIGTERM)
        except BaseException:
            env.close()
            raise


class _Described(gym.Env):
    """An env's spaces, metadata and render mode, which is all AsyncVectorEnv reads of the env it
    makes in the parent."""

    def __init__(self, metadata: dict[str, Any], render_mode: str | None, observation_space: gym.Space,
                 action_space: gym.Space):
        self.metadata, self.render_mode = metadata, render_mode
        self.observation_space, self.action_space = observation_space, action_space


def _described(worker: WorkerEnv) -> _Described:
    """``worker``'s env made in a process of its own (set up as a worker), described and closed."""
    import multiprocessing

    context = multiprocessing.get_context()  # AsyncVectorEnv's default, so ``worker`` travels as it does
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_describe, args=(worker, sender), daemon=True)
    process.start()
    sender.close()
    try:
        description = receiver.recv()
    except EOFError:
        description = None
    except BaseException:  # Ctrl-C: the process closes the env once it is made, and ends
        process.terminate()
        raise
    finally:
        receiver.close()
        process.join()
    if isinstance(description, BaseException):
        raise description
    if description is None:
        raise RuntimeError(f"the process making the env to read its spaces ended with status {process.exitcode}")
    return _Described(*description)


def _describe(worker: WorkerEnv, sender: Any) -> None:
    try:
        env = worker()
    except Exception as error:  # handed to the parent, which raises it where AsyncVectorEnv made the env
        try:
            sender.send(error)
        except Exception:  # an error that does not pickle
            sender.send(RuntimeError(f"{type(error).__name__}: {error}"))
        return
    try:
        sender.send((env.metadata, env.render_mode, env.observation_space, env.action_space))
    finally:
        env.close()


def _terminate_with_parent(parent: int) -> None:
    """Asks Linux to send this process SIGTERM when its parent dies; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the request
        os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """SIGTERM raises SystemExit in this process while the block runs (where SIGTERM has its
    default action, which would kill the process without closing its workers), and SIGINT's
    handler is put back as it was (a game library may install its own)."""
    main = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main else None
    sigterm = signal.getsignal(signal.SIGTERM) if main else None
    if main and sigterm == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        if main:
            if sigint is not None:
                signal.signal(signal.SIGINT, sigint)
            if sigterm == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def worker_envs(make: Callable[[], gym.Env], num_envs: int, *, processes: bool = True,
                workdir: str | os.PathLike | None = None,
                autoreset_mode: gym.vector.AutoresetMode = gym.vector.AutoresetMode.SAME_STEP
                ) -> Iterator[gym.vector.VectorEnv]:
    """A vector env of ``num_envs`` envs made by ``make``, closed when the block ends.

    With ``processes`` each env runs in a worker process of its own (gymnasium's AsyncVectorEnv,
    set up as the module docstring says), working in ``workdir/worker<i>`` (default: a temporary
    folder removed at the end); on any exception (Ctrl-C included) the workers are terminated, and
    each closes its env, so no process is left; a SIGTERM of this process, where nothing else
    handles it, raises SystemExit in the block for the same cleanup; workers that died before the
    block ended normally are named in a RuntimeWarning as the rest close. Without ``processes``
    the envs run in this process (SyncVectorEnv). ``autoreset_mode`` defaults to SAME_STEP: the
    step that ends an episode already returns the next one's first observation (the last one
    comes in ``info["final_obs"]``), so every step is a real one.
    """
    num_envs = integer(num_envs, "num_envs")
    with contextlib.ExitStack() as stack:
        if processes:
            if workdir is None:
                workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="pymbrl-envs-"))
            workdir = Path(os.path.abspath(workdir))
            stack.enter_context(_sigterm_exits())
            envs: gym.vector.VectorEnv = gym.vector.AsyncVectorEnv(
                [WorkerEnv(make, workdir, i) for i in range(num_envs)], autoreset_mode=autoreset_mode)
        else:
            envs = gym.vector.SyncVectorEnv([make] * num_envs, autoreset_mode=autoreset_mode)
        finished = False
        try:
            yield envs
            finished = True
        finally:
            if processes:
                _close(envs, terminate=not finished)
            else:
                envs.close()


def _close(envs: gym.vector.AsyncVectorEnv, *, terminate: bool) -> None:
    """Closes ``envs``, terminating its workers after an exception (``terminate``). A worker may
    already be gone (a game that died of the same Ctrl-C, sent to the whole process group; a crash
    after the block's last step): gymnasium's close then fails on its pipe, and the workers left
    are terminated here instead, so that the exception that ended the block is the one raised, or,
    after a block that ended normally (its steps all answered), a warning names the dead workers."""
    try:
        envs.close(terminate=terminate)
    except (EOFError, OSError):
        # Those that closed before the failing pipe exited with 0.
        dead = {i: process.exitcode for i, process in enumerate(envs.processes) if process.exitcode not in (None, 0)}
        for process in envs.processes:
            if process.is_alive():
                process.terminate()
        for process in envs.processes:
            process.join()
        for pipe in envs.parent_pipes:
            if pipe is not None:
                pipe.close()
        envs.closed = True  # its __del__ would try again
        if not terminate:
            warnings.warn(f"env workers {sorted(dead)} had died (exit codes {list(dead.values())}) before the "
                          "envs were closed", RuntimeWarning, stacklevel=2)
