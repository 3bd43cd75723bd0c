"""What every agent's ``train`` returns and what its ``load`` gives: an object that acts."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Actor(Protocol):
    """A trained agent, as :func:`pymbrl.agents.load` returns it. A recurrent one (Dreamer, World
    Models) also has ``reset()``, which starts a new episode (or batch of episodes)."""

    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """The action for one observation, or actions [N, ...] for a batch [N, *obs_shape]."""
        ...


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a run produced.

    Attributes
    ----------
    agent : the trained agent (it has ``act``).
    history : list[dict] -- the records of the run (of its last stage, for a staged agent).
    run_dir : Path or None -- where the run's files are.
    summary : dict -- what the stages measured (staged agents), or the last record.
    """

    agent: Any
    history: list[dict[str, Any]]
    run_dir: Path | None
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)


def as_batch(obs: Any, shape: tuple[int, ...], dtype: Any = np.float32) -> tuple[np.ndarray, bool]:
    """``obs`` as a batch [N, *shape] and whether it was a single observation of ``shape``; raises
    ValueError naming ``obs`` for an array of any other shape."""
    array = np.asarray(obs, dtype=dtype)
    if array.shape == tuple(shape):
        return array[None], True
    if array.ndim == len(shape) + 1 and array.shape[1:] == tuple(shape):
        return array, False
    raise ValueError(f"obs: expected an observation of shape {tuple(shape)} or a batch [N, *{tuple(shape)}], "
                     f"got shape {array.shape}")


def evaluate(actor: Actor, env: Any, episodes: int, seed: int, frames: list[np.ndarray] | None = None) -> list[float]:
    """The returns of ``episodes`` episodes of ``actor.act(obs, deterministic=True)`` in ``env`` (a
    gymnasium env, reset with seeds ``seed``, ``seed + 1``, ...; a recurrent actor's ``reset()`` is
    called at each episode start); with ``frames``, each step's
    ``env.render()`` is appended to it (an env made with ``render_mode="rgb_array"``)."""
    returns = []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        if hasattr(actor, "reset"):  # a recurrent agent starts each episode afresh
            actor.reset()
        total, done = 0.0, False
        while not done:
            if frames is not None:
                frames.append(env.render())
            obs, reward, terminated, truncated, _ = env.step(actor.act(obs, deterministic=True))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns
