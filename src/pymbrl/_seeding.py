"""Seeds for the compiled core: ``None`` draws fresh OS entropy (never the clock)."""

from __future__ import annotations

import numbers
import secrets


def resolve_seed(seed: int | None, name: str = "seed") -> int:
    """Return a seed in [0, 2**64) for the core; ``None`` gives 64 bits of OS entropy."""
    if seed is None:
        return secrets.randbits(64)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name}: expected an integer or None, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"{name}: expected an integer in [0, 2**64), got {seed}")
    return seed
