"""Torch tensors to the host arrays the compiled core reads (kept apart from ``_checks`` so that
torch-free parts of the package do not import torch)."""

from __future__ import annotations

from typing import Any

import torch


def host(x: Any) -> Any:
    """A torch tensor as a numpy array: detached, copied off an accelerator, half precision
    widened to float32 (numpy has no bfloat16). Anything else is returned as given, for the core
    or numpy to convert and check."""
    if not isinstance(x, torch.Tensor):
        return x
    x = x.detach()
    if x.device.type != "cpu":
        x = x.cpu()
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    return x.numpy()
