"""Tabular Dyna planning in C++ (Sutton & Barto 2018, chapter 8).

Agents: :class:`DynaQ`, :class:`DynaQPlus`, :class:`PrioritizedSweeping`.
Environments: :class:`TabularMDP` (from gymnasium toy-text tables or the book's mazes
:func:`DynaMaze`, :func:`BlockingMaze`, :func:`ShortcutMaze`) and its gymnasium view :class:`TabularEnv`.
Runners: :func:`run` (any Discrete gymnasium env, from Python) and :func:`run_batch` (many seeds
in C++ threads).

Only :class:`TabularEnv`, :func:`run` and :meth:`TabularMDP.from_gymnasium` need gymnasium (the
``pymbrl[agents]`` extra); they import it when used, so the rest works with numpy and torch alone.
"""

from typing import Any

from pymbrl.dyna.agents import DynaQ, DynaQPlus, PrioritizedSweeping, TabularAgent
from pymbrl.dyna.mdp import BlockingMaze, DynaMaze, ShortcutMaze, TabularMDP
from pymbrl.dyna.runner import BatchResult, RunResult, run, run_batch

__all__ = [
    "BatchResult", "BlockingMaze", "DynaMaze", "DynaQ", "DynaQPlus", "PrioritizedSweeping", "RunResult",
    "ShortcutMaze", "TabularAgent", "TabularEnv", "TabularMDP", "run", "run_batch",
]


def __getattr__(name: str) -> Any:
    # TabularEnv is a gymnasium class: its module is imported on first use, not with the package.
    if name == "TabularEnv":
        from pymbrl.dyna.env import TabularEnv

        return TabularEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
