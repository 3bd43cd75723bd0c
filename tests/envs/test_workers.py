"""pymbrl.envs.workers: vector envs of worker processes that work in their own folders, ignore
Ctrl-C (the parent handles it), run torch on one thread, are closed however the block ends, and
die with their parent even when it is killed."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from pymbrl.envs.workers import worker_envs

from .game_env import GameEnv


class WhereEnv(gym.Env):
    """A trivial env that says where it runs."""

    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 1.0, True, False, {}

    def where(self):
        return (os.getpid(), os.getcwd(), signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
                torch.get_num_threads())


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent to reap it does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_each_worker_runs_in_its_own_process_and_folder(tmp_path):
    cwd, handler = os.getcwd(), signal.getsignal(signal.SIGTERM)
    with worker_envs(WhereEnv, 2, workdir=tmp_path / "envs") as envs:
        assert isinstance(envs, gym.vector.AsyncVectorEnv)
        envs.reset(seed=0)
        where = envs.call("where")
        pids = [p.pid for p in envs.processes]
    assert [w[0] for w in where] == pids and os.getpid() not in pids
    assert [w[1] for w in where] == [str(tmp_path / "envs" / f"worker{i}") for i in range(2)]
    assert all(w[2] for w in where) and all(w[3] == 1 for w in where)
    # The parent keeps its folder and signal handlers; the workers are gone.
    assert os.getcwd() == cwd and signal.getsignal(signal.SIGTERM) == handler
    time.sleep(0.2)
    assert not any(alive(pid) for pid in pids)


def test_without_processes_the_envs_run_here_and_without_workdir_the_folder_is_temporary():
    with worker_envs(WhereEnv, 2, processes=False) as envs:
        assert isinstance(envs, gym.vector.SyncVectorEnv)
        envs.reset(seed=0)
        assert [w[0] for w in envs.call("where")] == [os.getpid()] * 2
    with worker_envs(WhereEnv, 1) as envs:
        folder = Path(envs.call("where")[0][1])
        assert folder.name == "worker0" and folder.is_dir()
    assert not folder.parent.exists()


def test_an_exception_in_the_block_terminates_the_workers(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with worker_envs(WhereEnv, 2, workdir=tmp_path) as envs:
            pids = [p.pid for p in envs.processes]
            raise KeyboardInterrupt
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in pids)


KILLED = """
import functools, os, signal, sys, gymnasium as gym
from pymbrl.envs.workers import worker_envs
with worker_envs(functools.partial(gym.make, "CartPole-v1"), 2, workdir=sys.argv[1]) as envs:
    envs.reset(seed=0)
    print(" ".join(str(p.pid) for p in envs.processes), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_a_killed_parent(tmp_path):
    """SIGKILL leaves the parent no chance to close its workers: the kernel tells each of them."""
    child = subprocess.run([sys.executable, "-c", KILLED, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    pids = [int(p) for p in child.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in pids)


class DyingEnv(WhereEnv):
    """Its worker dies in the middle of a step (as a game killed by the Ctrl-C sent to the whole
    process group dies)."""

    def step(self, action):
        os._exit(1)


def test_an_exception_in_the_block_is_raised_even_when_a_worker_died_meanwhile(tmp_path):
    """gymnasium's close reads the pipe of a worker with a step in flight, which raises EOFError when
    that worker is gone: it used to replace the KeyboardInterrupt (seen as a flaky ViZDoom Ctrl-C test)."""
    with pytest.raises(KeyboardInterrupt):
        with worker_envs(DyingEnv, 2, workdir=tmp_path) as envs:
            pids = [process.pid for process in envs.processes]
            envs.reset(seed=0)
            envs.step_async(np.zeros(2, dtype=np.int64))
            deadline = time.monotonic() + 30
            while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
                time.sleep(0.05)
            raise KeyboardInterrupt
    assert envs.closed and not any(alive(pid) for pid in pids)


def test_a_block_that_ends_normally_after_a_worker_died_closes_the_rest_and_warns(tmp_path):
    with pytest.warns(RuntimeWarning, match=r"env workers \[1\] had died \(exit codes \[-9\]\)"):
        with worker_envs(WhereEnv, 2, workdir=tmp_path) as envs:
            pids = [process.pid for process in envs.processes]
            envs.reset(seed=0)
            envs.step(np.zeros(2, dtype=np.int64))
            os.kill(pids[1], signal.SIGKILL)  # a crash after the block's last step
            envs.processes[1].join(timeout=30)
    assert envs.closed and not any(alive(pid) for pid in pids)


def games_left(root: Path, seconds: float = 10) -> list[int]:
    """The games launched under ``root`` still running after up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while (left := [int(p.name) for p in (root / "games").iterdir() if alive(int(p.name))]) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_a_worker_sent_sigterm_while_its_env_is_made_closes_the_env_and_its_game(tmp_path):
    (tmp_path / "games").mkdir()
    (tmp_path / "closed").mkdir()
    make = functools.partial(GameEnv, str(tmp_path), signalled="worker1")
    with pytest.raises(Exception):  # worker 1 is gone: gymnasium fails reading its pipe
        with worker_envs(make, 2, workdir=tmp_path / "envs") as envs:
            envs.reset(seed=0)
    # One game for the env read for its spaces, one per worker: all stopped, each by its env's close
    # (not by the guard of its worker's process group).
    assert len(list((tmp_path / "games").iterdir())) == 3
    assert games_left(tmp_path) == []
    closed, games = ([p.name for p in (tmp_path / kind).iterdir()] for kind in ("closed", "games"))
    assert sorted(closed) == sorted(games)


def test_the_env_read_for_its_spaces_is_made_apart_and_closed(tmp_path):
    (tmp_path / "games").mkdir()
    (tmp_path / "closed").mkdir()
    with worker_envs(functools.partial(GameEnv, str(tmp_path)), 1, workdir=tmp_path / "envs") as envs:
        assert envs.single_observation_space == GameEnv.observation_space
        assert envs.single_action_space == GameEnv.action_space and envs.metadata["render_modes"] == []
        games = [int(p.name) for p in (tmp_path / "games").iterdir()]
        assert len(games) == 2 and sum(alive(pid) for pid in games) == 1  # the worker's game runs
        parents = {int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                   for pid in games if alive(pid)}
        assert parents == {envs.processes[0].pid}
    assert games_left(tmp_path) == []
    # Made in the parent, the env's errors are raised there.
    with pytest.raises(RuntimeError, match="bad env"):
        with worker_envs(functools.partial(_fails, "bad env"), 1, workdir=tmp_path / "bad"):
            pass


def _fails(message):
    raise RuntimeError(message)


KILLED_WHILE_READING_SPACES = f"""
import functools, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from game_env import GameEnv
from pymbrl.envs.workers import worker_envs
with worker_envs(functools.partial(GameEnv, sys.argv[1], slow=3), 1, workdir=sys.argv[1] + "/envs"):
    pass
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_parent_killed_while_the_env_for_its_spaces_is_made_leaves_no_game(tmp_path):
    """Made in the parent, that env's game would be orphaned for good by a SIGKILL (a Ray actor's
    end); made in a process of its own, it is closed by that process once the parent is gone."""
    (tmp_path / "games").mkdir()
    (tmp_path / "closed").mkdir()
    parent = subprocess.Popen([sys.executable, "-c", KILLED_WHILE_READING_SPACES, str(tmp_path)])
    deadline = time.monotonic() + 60
    while not list((tmp_path / "games").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list((tmp_path / "games").iterdir()), "no game was launched"
    parent.kill()
    parent.wait()
    assert games_left(tmp_path, 90) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the guard is Linux's")
def test_the_game_of_a_worker_killed_outright_is_killed_too(tmp_path):
    """Ray, ending an actor, SIGKILLs the processes the actor started (the workers) but not theirs."""
    (tmp_path / "games").mkdir()
    (tmp_path / "closed").mkdir()
    with pytest.raises(KeyboardInterrupt):
        with worker_envs(functools.partial(GameEnv, str(tmp_path)), 2, workdir=tmp_path / "envs") as envs:
            envs.reset(seed=0)
            os.kill(envs.processes[0].pid, signal.SIGKILL)
            games = [int(p.name) for p in (tmp_path / "games").iterdir()]
            deadline = time.monotonic() + 10
            while sum(alive(pid) for pid in games) > 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert sum(alive(pid) for pid in games) == 1  # worker 1's game runs on
            raise KeyboardInterrupt
    assert games_left(tmp_path) == []
