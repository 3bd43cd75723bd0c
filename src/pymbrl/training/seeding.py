"""Random streams drawn from a run's seed, leaving every global generator as it was."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Runs its block (network construction) on torch's global CPU generator seeded with ``seed``,
    then puts the global generator back as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed % 2**63)
        yield


def generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator of its own on ``device``, seeded with ``seed``."""
    return torch.Generator(device).manual_seed(seed % 2**63)
