"""Frames for the image models (Dreamer's, World Models' V): RGB resized to 64x64 without an image
library. :data:`IMAGE_SHAPE` is the frame every image model reads and draws. (The env wrapper that
resizes an env's frames, :class:`~pymbrl.envs.wrappers.ResizeFrames`, needs gymnasium; this module
does not.)"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

IMAGE_SHAPE = (64, 64, 3)
"""Height, width, channels of a frame (uint8 RGB, channels last)."""
FRAME_SIZE = IMAGE_SHAPE[:2]


def resize_frames(frames: np.ndarray, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """uint8 RGB frames [..., H, W, 3] -> [..., *size, 3] by area averaging (torch's)."""
    lead = frames.shape[:-3]
    x = torch.from_numpy(np.ascontiguousarray(frames)).reshape(-1, *frames.shape[-3:]).permute(0, 3, 1, 2).float()
    small = nn.functional.interpolate(x, size=size, mode="area")
    return small.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8).numpy().reshape(*lead, *size, 3)
