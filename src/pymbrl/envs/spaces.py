"""Agents' action vectors and envs' actions: a Discrete(n) action is a vector of n scores (one-hot
when it comes from data), a bounded 1-D Box action a vector in [-1, 1] mapped onto the box."""

from __future__ import annotations

import numpy as np
import torch

from pymbrl._checks import ArgumentTypeError
from pymbrl._extras import optional_imports

with optional_imports():
    import gymnasium as gym

MAX_DISCRETE_ACTIONS = 1 << 16
"""The largest ``Discrete`` space :class:`ActionCodec` encodes."""


class ActionCodec:
    """Maps between a space's actions and float action vectors of size ``dim``.

    ``to_env`` takes vectors [N, dim] (torch or numpy): argmax for Discrete, [-1, 1] -> the box for
    Box. ``to_vector`` takes env actions [N] or [N, k] and gives float32 vectors [N, dim] (one-hot,
    or the box mapped onto [-1, 1]); ``model_input`` turns scores [..., dim] into the vectors a model
    was trained on (one-hot of the argmax, or clipped to [-1, 1]).
    """

    def __init__(self, space: gym.Space, name: str = "action_space"):
        self.discrete = isinstance(space, gym.spaces.Discrete)
        if self.discrete:
            self.dim = int(space.n)
            # Each action becomes a one-hot vector of dim floats.
            if self.dim > MAX_DISCRETE_ACTIONS:
                raise ValueError(f"{name}: expected at most {MAX_DISCRETE_ACTIONS} discrete actions, got {space}")
        elif isinstance(space, gym.spaces.Box) and len(space.shape) == 1 and np.all(np.isfinite(space.low)) \
                and np.all(np.isfinite(space.high)):
            self.dim = int(space.shape[0])
            self.low, self.high = space.low.astype(np.float32), space.high.astype(np.float32)
        else:
            raise ValueError(f"{name}: expected Discrete or a bounded 1-D Box, got {space}")

    def to_env(self, vectors: torch.Tensor | np.ndarray) -> np.ndarray:
        a = vectors.detach().cpu().numpy() if isinstance(vectors, torch.Tensor) else np.asarray(vectors)
        if self.discrete:
            return a.argmax(-1)
        return self.low + (np.clip(a, -1.0, 1.0) + 1.0) * 0.5 * (self.high - self.low)

    def to_vector(self, env_actions: np.ndarray) -> np.ndarray:
        if self.discrete:
            a = np.asarray(env_actions)
            if a.dtype.kind not in "iu":
                raise ArgumentTypeError(f"env_actions: expected integers, got dtype {a.dtype}")
            # A negative index would pick another action's vector.
            bad = (a < 0) | (a >= self.dim)
            if bad.any():
                raise ValueError(f"env_actions: expected integers in [0, {self.dim}), got {a[bad].flat[0]}")
            vectors = np.zeros((*a.shape, self.dim), dtype=np.float32)
            np.put_along_axis(vectors, a[..., None].astype(np.int64), 1.0, axis=-1)
            return vectors
        return (2.0 * (np.asarray(env_actions) - self.low) / (self.high - self.low) - 1.0).astype(np.float32)

    def model_input(self, scores: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return torch.nn.functional.one_hot(scores.argmax(-1), self.dim).to(scores.dtype)
        return scores.clamp(-1.0, 1.0)
