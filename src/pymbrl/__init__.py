"""pymbrl: model-based reinforcement learning for PyTorch with a C++ core.

Subpackages, from the lowest layer up (each imports only from its own layer or lower ones):

envs
    Real games and env factories: MiniPacman (a batch of C++ games), Atari through ale-py, TicTacToe,
    frame preprocessing, env worker processes.
replay
    Replay buffers (uniform, prioritized, n-step, sequences), MuZero's game buffer, their file format.
dyna
    Tabular Dyna planning: Dyna-Q, Dyna-Q+, prioritized sweeping, tabular MDPs and runners.
mcts
    Batched MuZero, Gumbel MuZero and two-player search in C++, with an mctx-style API, and the
    readable pure-Python search it reproduces bit for bit (``pymbrl.mcts.reference``).
models
    Networks: Gaussian ensembles, DreamerV3's RSSM, MuZero's, World Models', I2A's and SAC's.
tasks
    Termination and reward functions of the gymnasium tasks, for model rollouts.
rollout
    Batched imagined rollouts of the models (branched, imagination, dreams, per-action) and dream envs.
bench
    Microbenchmarks against the libraries users would pick instead (``pymbrl bench``), on this machine.
training
    The training layer: configs, run directories, checkpoints, logging, callbacks, seeding, stages.
distributed
    Ray actors for the agents (the ``pymbrl[ray]`` extra): producer pools with bounded work in flight,
    scatter/gather groups, joining or starting a cluster.
agents
    SAC, MBPO, MuZero, Dreamer, World Models and I2A on one contract (train, load, act).
demo
    ``pymbrl demo``: the C++ search timed against the pure-Python one, MuZero learning CartPole, what next.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

from pymbrl import _core

try:
    __version__ = _version("pymbrl")
except PackageNotFoundError:  # running from a source tree with an in-place build
    __version__ = _core.build_info()["version"]


def build_info() -> dict:
    """How the compiled core was built.

    Returns
    -------
    dict
        ``version``, ``compiler``, ``cxx_standard``, ``flags``, ``build_type`` and
        ``hardware_threads`` (threads the batch runners use by default).
    """
    return dict(_core.build_info())


__all__ = ["build_info", "__version__"]
