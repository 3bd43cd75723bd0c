"""Optional packages and the extras that install them.

``pip install pymbrl`` brings numpy and torch only: enough for :mod:`pymbrl.mcts`,
:mod:`pymbrl.replay`, :mod:`pymbrl.dyna`'s agents and batch runner, :mod:`pymbrl.models` and
:mod:`pymbrl.rollout`. Everything else comes with an extra (``pip install 'pymbrl[agents]'``), and
an import of a missing one raises :class:`MissingExtra`, which names the package and the extra.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager

EXTRAS = {
    "gymnasium": ("gymnasium", "agents"),
    "tqdm": ("tqdm", "agents"),
    "matplotlib": ("matplotlib", "agents"),
    "cma": ("cma", "agents"),
    "yaml": ("pyyaml", "agents"),
    "tensorboard": ("tensorboard", "agents"),
    "imageio": ("imageio", "agents"),
    "ale_py": ("ale-py", "atari"),
    "mujoco": ("mujoco", "mujoco"),
    "vizdoom": ("vizdoom", "vizdoom"),
    "ray": ("ray", "ray"),
}
"""Top-level module -> (the package that installs it, the extra of pymbrl that brings it)."""


class MissingExtra(ModuleNotFoundError):
    """An optional package is not installed; the message names it and the extra that installs it."""


def missing_extra(module: str) -> MissingExtra:
    """The error for the missing top-level ``module`` (a key of :data:`EXTRAS`)."""
    package, extra = EXTRAS[module]
    return MissingExtra(f"{package} is not installed: pip install 'pymbrl[{extra}]'", name=module)


@contextmanager
def optional_imports() -> Iterator[None]:
    """Imports in this block of a module of :data:`EXTRAS` that is not installed raise
    :class:`MissingExtra` instead of a bare ``ModuleNotFoundError``; any other error passes unchanged
    (a missing dependency of an installed package is a broken install, not a missing extra)."""
    try:
        yield
    except MissingExtra:
        raise
    except ModuleNotFoundError as error:
        if (error.name or "") not in EXTRAS:
            raise
        raise missing_extra(error.name) from error


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it (its parent packages are)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing; None in sys.modules blocks the import
        return False
