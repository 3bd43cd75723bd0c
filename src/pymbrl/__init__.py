"""pymbrl: model-based reinforcement learning for PyTorch with a C++ core.

Submodules
----------
dyna
    Tabular Dyna planning: Dyna-Q, Dyna-Q+, prioritized sweeping, tabular MDPs and runners.
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
