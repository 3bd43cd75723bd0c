"""Argument checks shared by the Python layer. Every error names the argument and what was
expected; a value of the wrong type raises :class:`ArgumentTypeError`."""

from __future__ import annotations

import math
import numbers
import secrets
from typing import Any


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type. It is also a ``ValueError``, so code that guards against bad
    values with ``except ValueError`` catches it too."""


def integer(value: Any, name: str, *, minimum: int = 1, optional: bool = False) -> int | None:
    """``value`` as an int >= ``minimum`` (``None`` passes through when ``optional``)."""
    if value is None and optional:
        return None
    or_none = " or None" if optional else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name}: expected an integer{or_none}, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}{or_none}, got {value}")
    return int(value)


def real(value: Any, name: str, *, low: float | None = None, high: float | None = None) -> float:
    """``value`` as a float; with bounds, a finite value in ``[low, high]`` (NaN never passes)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name}: expected a real number, got {type(value).__name__}")
    value = float(value)
    if low is None and high is None:
        return value
    low = -math.inf if low is None else low
    high = math.inf if high is None else high
    if not (math.isfinite(value) and low <= value <= high):
        where = f"in [{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
        raise ValueError(f"{name}: expected a finite number {where}, got {value!r}")
    return value


def renamed(error: Exception, prefix: str) -> Exception:
    """The same error with ``prefix`` before its message, which says where the argument came from
    (unless the message already starts with the prefix's first word)."""
    message = str(error)
    return type(error)(message if message.startswith(prefix.split()[0]) else prefix + message)


def resolve_seed(seed: int | None, name: str = "seed") -> int:
    """A seed in [0, 2**64) for the core; ``None`` gives 64 bits of OS entropy (never the clock)."""
    if seed is None:
        return secrets.randbits(64)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ArgumentTypeError(f"{name}: expected an integer or None, got {type(seed).__name__}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"{name}: expected an integer in [0, 2**64), got {seed}")
    return int(seed)


def check_device_available(device: str, name: str = "device") -> None:
    """Refuses (ValueError naming ``name``) a torch device string of a kind this machine's torch
    cannot use: CUDA where it has none or fewer devices than the index, MPS where it is not
    available. Other strings are torch's to judge; nothing is allocated."""
    import torch

    kind, _, index = device.partition(":")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{name}: {device!r} asks for CUDA, which is not available on this machine "
                             f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); use cpu")
        if index.isdigit() and int(index) >= count:
            raise ValueError(f"{name}: {device!r}: this machine has {count} CUDA device(s) "
                             f"(cuda:0 to cuda:{count - 1})")
    elif kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}: {device!r} asks for Apple's MPS, which is not available on this machine; use cpu")
