"""How pUCT turns a child's Q value into the value term of its score.

MuZero's paper normalises Q by the smallest and largest Q seen anywhere in the tree; mctx's
``muzero_policy`` normalises by the node's own value and its children's Q by default, and offers
fixed bounds. A search ported from mctx gets mctx's search by passing the transform of the same
name. Every transform gives an unvisited child a value term of 0.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pymbrl import _core
from pymbrl._checks import ArgumentTypeError, real

_MAX_MAGNITUDE: float = _core.mcts.MAX_MAGNITUDE
_SMALLEST_RANGE = 1.0 / _MAX_MAGNITUDE


class QTransform(NamedTuple):
    """A Q transform for pUCT; build one with the ``qtransform_by_*`` functions.

    Attributes
    ----------
    kind : str
        ``"tree_min_max"``, ``"parent_and_siblings"`` or ``"min_max"``.
    epsilon : float
        Smallest range by parent and siblings divide by.
    min_value, max_value : float
        The fixed bounds of ``"min_max"``.
    """

    kind: str
    epsilon: float = 1e-8
    min_value: float = 0.0
    max_value: float = 1.0


def qtransform_by_tree_min_max() -> QTransform:
    """MuZero's rule (Schrittwieser et al. 2020, Appendix B), the default of pymbrl's searches:
    ``(Q - lo) / (hi - lo)`` with ``lo``, ``hi`` the smallest and largest Q recorded anywhere in the
    tree during this search (on a kept tree, over its current edges first); 0 while they are equal."""
    return QTransform("tree_min_max")


def qtransform_by_parent_and_siblings(epsilon: float = 1e-8) -> QTransform:
    """mctx's default: ``(Q - lo) / max(hi - lo, epsilon)`` with ``lo``, ``hi`` over the node's own
    mean value and the Q of its visited children.

    Parameters
    ----------
    epsilon : float
        In [2**-64, 2**64]; mctx's 1e-8.
    """
    return QTransform("parent_and_siblings", epsilon=real(epsilon, "epsilon", low=_SMALLEST_RANGE, high=_MAX_MAGNITUDE))


def qtransform_by_min_max(min_value: float, max_value: float) -> QTransform:
    """Fixed bounds known in advance (mctx's ``qtransform_by_min_max``): ``(Q - min_value) /
    (max_value - min_value)``, not clipped.

    Parameters
    ----------
    min_value, max_value : float
        In [-2**64, 2**64], ``max_value - min_value >= 2**-64`` (so that no Q a search can hold
        maps to infinity).
    """
    low = real(min_value, "min_value", low=-_MAX_MAGNITUDE, high=_MAX_MAGNITUDE)
    high = real(max_value, "max_value", low=-_MAX_MAGNITUDE, high=_MAX_MAGNITUDE)
    if not high - low >= _SMALLEST_RANGE:
        raise ValueError(f"max_value: expected at least min_value + 2**-64, got min_value {low!r} and "
                         f"max_value {high!r}")
    return QTransform("min_max", min_value=low, max_value=high)


def checked_qtransform(qtransform: Any) -> QTransform:
    """``qtransform`` (None: the tree-wide default) as a checked :class:`QTransform`."""
    if qtransform is None:
        return qtransform_by_tree_min_max()
    if not isinstance(qtransform, QTransform):
        raise ArgumentTypeError("qtransform: expected a QTransform (pymbrl.mcts.qtransform_by_*()) or None, "
                                f"got {type(qtransform).__name__}")
    try:
        if qtransform.kind == "tree_min_max":
            return qtransform
        if qtransform.kind == "parent_and_siblings":
            return qtransform_by_parent_and_siblings(qtransform.epsilon)
        if qtransform.kind == "min_max":
            return qtransform_by_min_max(qtransform.min_value, qtransform.max_value)
    except ValueError as e:  # a record built by hand: name where the number came from
        raise type(e)(f"qtransform.{e}") from None
    raise ValueError(f"qtransform: expected kind 'tree_min_max', 'parent_and_siblings' or 'min_max', "
                     f"got {qtransform.kind!r}")


__all__ = ["QTransform", "checked_qtransform", "qtransform_by_min_max", "qtransform_by_parent_and_siblings",
           "qtransform_by_tree_min_max"]
