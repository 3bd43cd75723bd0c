"""Tabular Dyna planning in C++ (Sutton & Barto 2018, chapter 8).

Agents: :class:`DynaQ`, :class:`DynaQPlus`, :class:`PrioritizedSweeping`.
Environments: :class:`TabularMDP` (from gymnasium toy-text tables or the book's mazes
:func:`DynaMaze`, :func:`BlockingMaze`, :func:`ShortcutMaze`) and its gymnasium view :class:`TabularEnv`.
Runners: :func:`run` (any Discrete gymnasium env, from Python) and :func:`run_batch` (many seeds
in C++ threads).
"""

from pymbrl.dyna.agents import DynaQ, DynaQPlus, PrioritizedSweeping, TabularAgent
from pymbrl.dyna.mdp import BlockingMaze, DynaMaze, ShortcutMaze, TabularEnv, TabularMDP
from pymbrl.dyna.runner import BatchResult, RunResult, run, run_batch

__all__ = [
    "BatchResult", "BlockingMaze", "DynaMaze", "DynaQ", "DynaQPlus", "PrioritizedSweeping", "RunResult",
    "ShortcutMaze", "TabularAgent", "TabularEnv", "TabularMDP", "run", "run_batch",
]
