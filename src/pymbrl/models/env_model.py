"""Action-conditioned environment models of frames and rewards (I2A, Weber et al. 2017).

:class:`EnvModel` predicts the next frame and the reward from a frame and an action. The action
enters as one-hot planes stacked onto the frame; the body keeps the frame's size, and the paper's
pool-and-inject blocks broadcast a global max-pool of the features back onto every cell, so that a
cell can react to what happens far away (a ghost steering towards Pacman) with few layers. Each
colour channel of the next frame is a Bernoulli over its intensity in [0, 1] (binary cross-entropy),
which covers the colour shades of an edible ghost as well as the plain colours; the reward is a
regression (squared error).

:class:`CopyModel` is the paper's "copy-model" control: it returns its input frame and reward 0,
so an agent built on it has the imagination's architecture but no model of the world.

:func:`train_env_model` fits a model on transitions; :func:`prediction_error` measures its k-step
open-loop error on held-out trajectories.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pymbrl._checks import integer, real


def to_planes(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 frames [..., H, W, C] -> float32 planes [..., C, H, W] in [0, 1]."""
    frames = torch.as_tensor(frames)
    if frames.dtype != torch.uint8 or frames.dim() < 3:
        raise ValueError(f"frames: expected uint8 frames [..., H, W, C], got {frames.dtype} of shape "
                         f"{tuple(frames.shape)}")
    return frames.movedim(-1, -3).float().div_(255.0)


class PoolAndInject(nn.Module):
    """A residual block whose input is concatenated with its global max-pool, tiled over the frame."""

    def __init__(self, channels: int, pool_and_inject: bool = True):
        super().__init__()
        self.pool_and_inject = pool_and_inject
        self.conv1 = nn.Conv2d(channels * (2 if pool_and_inject else 1), channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = h
        if self.pool_and_inject:
            x = torch.cat([h, h.amax((2, 3), keepdim=True).expand_as(h)], 1)
        return h + self.conv2(F.relu(self.conv1(x)))


class EnvModel(nn.Module):
    """Next frame and reward from (frame, action).

    Parameters
    ----------
    frame_shape : (C, H, W) of the frames.
    num_actions : int, the size of the Discrete action space.
    channels : int, width of the size-preserving body (16: sized for a CPU; the paper uses 64).
    blocks : int, residual blocks in the body.
    pool_and_inject : bool
        True: the paper's pool-and-inject blocks; False: plain residual conv blocks (the seed code's
        simpler form), whose view of the frame is limited to the convolutions' reach.
    """

    def __init__(self, frame_shape: Sequence[int], num_actions: int, *, channels: int = 16, blocks: int = 1,
                 pool_and_inject: bool = True):
        super().__init__()
        if len(frame_shape) != 3:
            raise ValueError(f"frame_shape: expected (C, H, W), got {tuple(frame_shape)}")
        self.frame_shape = tuple(integer(s, "frame_shape") for s in frame_shape)
        self.num_actions = integer(num_actions, "num_actions")
        channels = integer(channels, "channels")
        c = self.frame_shape[0]
        self.stem = nn.Conv2d(c + self.num_actions, channels, 1)
        self.blocks = nn.Sequential(*[PoolAndInject(channels, pool_and_inject) for _ in range(integer(blocks, "blocks"))])
        self.frame_head = nn.Conv2d(channels, c, 1)
        self.reward_head = nn.Sequential(nn.Linear(2 * channels, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, frames: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames float [B, C, H, W] in [0, 1], actions int64 [B] -> (next-frame logits [B, C, H, W],
        rewards float [B])."""
        if frames.shape[1:] != self.frame_shape:
            raise ValueError(f"frames: expected [B, {', '.join(map(str, self.frame_shape))}], got "
                             f"{list(frames.shape)}")
        planes = F.one_hot(actions.long(), self.num_actions).to(frames.dtype)
        planes = planes[:, :, None, None].expand(-1, -1, *self.frame_shape[1:])
        h = self.blocks(F.relu(self.stem(torch.cat([frames, planes], 1))))
        pooled = torch.cat([h.amax((2, 3)), h.mean((2, 3))], 1)
        return self.frame_head(h), self.reward_head(pooled).squeeze(-1)

    def predict(self, frames: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The predicted next frames (each channel's probability, float [B, C, H, W]) and rewards [B]."""
        logits, rewards = self(frames, actions)
        return torch.sigmoid(logits), rewards

    def loss(self, frames: torch.Tensor, actions: torch.Tensor, next_frames: torch.Tensor,
             rewards: torch.Tensor, reward_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
        """Binary cross-entropy of the next frame (summed over channels and cells, averaged over the
        batch) plus ``reward_weight`` x the reward's squared error."""
        logits, predicted = self(frames, actions)
        frame_loss = F.binary_cross_entropy_with_logits(logits, next_frames, reduction="sum") / len(frames)
        reward_loss = F.mse_loss(predicted, rewards)
        return frame_loss + reward_weight * reward_loss, {"frame_loss": frame_loss.item(),
                                                          "reward_loss": reward_loss.item()}


class CopyModel(nn.Module):
    """The copy-model control of I2A: the next frame is the input frame, the reward 0."""

    def __init__(self, frame_shape: Sequence[int], num_actions: int):
        super().__init__()
        self.frame_shape = tuple(frame_shape)
        self.num_actions = integer(num_actions, "num_actions")

    def predict(self, frames: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return frames, frames.new_zeros(len(frames))


class Transitions(NamedTuple):
    """Transitions for an environment model.

    frames, next_frames : uint8 [N, H, W, C]; actions : int64 [N]; rewards : float32 [N].
    """

    frames: np.ndarray
    actions: np.ndarray
    next_frames: np.ndarray
    rewards: np.ndarray


def train_env_model(model: EnvModel, data: Transitions, *, epochs: int = 10, batch_size: int = 64,
                    lr: float = 1e-3, reward_weight: float = 1.0, seed: int = 0,
                    progress: Callable[[int, int, dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """Fits ``model`` to ``data`` with Adam, shuffling each epoch with a generator seeded by
    ``seed``. Returns the mean losses of each epoch; ``progress(epoch, epochs, losses)`` is called
    after each."""
    n = len(data.actions)
    if not (len(data.frames) == len(data.next_frames) == len(data.rewards) == n) or n == 0:
        raise ValueError("data: expected non-empty frames, actions, next_frames and rewards of one length, got "
                         f"{[len(a) for a in data]}")
    epochs, batch_size = integer(epochs, "epochs"), integer(batch_size, "batch_size")
    optimizer = torch.optim.Adam(model.parameters(), lr=real(lr, "lr", low=0.0))
    generator = torch.Generator().manual_seed(seed)
    frames, next_frames = torch.from_numpy(data.frames), torch.from_numpy(data.next_frames)
    actions, rewards = torch.from_numpy(data.actions).long(), torch.from_numpy(data.rewards).float()
    history = []
    model.train()
    for epoch in range(epochs):
        totals: dict[str, float] = {}
        order = torch.randperm(n, generator=generator)
        batches = 0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            loss, parts = model.loss(to_planes(frames[idx]), actions[idx], to_planes(next_frames[idx]),
                                     rewards[idx], reward_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + v
            batches += 1
        history.append({k: v / batches for k, v in totals.items()})
        if progress is not None:
            progress(epoch + 1, epochs, history[-1])
    model.eval()
    return history


class PredictionError(NamedTuple):
    """Open-loop errors after k steps (one entry per horizon).

    horizons : the k's. frame_mse : mean squared error of the frame's intensities in [0, 1].
    cell_error : fraction of cells whose colour, rounded, is wrong (any channel off by more than 0.5).
    reward_mae : mean absolute error of the k-th step's reward. samples : trajectories measured.
    """

    horizons: tuple[int, ...]
    frame_mse: tuple[float, ...]
    cell_error: tuple[float, ...]
    reward_mae: tuple[float, ...]
    samples: int


@torch.no_grad()
def open_loop(model: EnvModel | CopyModel, frames: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Feeds the model its own predictions: frames float [B, C, H, W], actions int64 [B, K] ->
    predicted frames [K, B, C, H, W] and rewards [K, B]."""
    out_frames, out_rewards = [], []
    for k in range(actions.shape[1]):
        frames, rewards = model.predict(frames, actions[:, k])
        out_frames.append(frames)
        out_rewards.append(rewards)
    return torch.stack(out_frames), torch.stack(out_rewards)


def prediction_error(model: EnvModel | CopyModel, frames: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                     horizons: Sequence[int] = (1, 5, 15)) -> PredictionError:
    """The model's k-step open-loop errors on held-out trajectories.

    Parameters
    ----------
    frames : uint8 [B, T + 1, H, W, C], B trajectories that do not end before step T.
    actions : int [B, T]; rewards : float [B, T] (``rewards[:, k]`` comes with ``frames[:, k + 1]``).
    horizons : the k's to report, each <= T.
    """
    horizons = tuple(integer(k, "horizons") for k in horizons)
    if frames.ndim != 5 or actions.shape != rewards.shape or frames.shape[:2] != (actions.shape[0], actions.shape[1] + 1):
        raise ValueError(f"frames, actions, rewards: expected [B, T + 1, H, W, C], [B, T], [B, T], got "
                         f"{frames.shape}, {actions.shape}, {rewards.shape}")
    if max(horizons) > actions.shape[1]:
        raise ValueError(f"horizons: expected at most T = {actions.shape[1]}, got {max(horizons)}")
    predicted, predicted_rewards = open_loop(model, to_planes(frames[:, 0]),
                                             torch.as_tensor(actions[:, :max(horizons)]).long())
    truth = to_planes(frames[:, 1:max(horizons) + 1]).transpose(0, 1)
    true_rewards = torch.as_tensor(rewards[:, :max(horizons)], dtype=torch.float32).T
    mse, cells, reward_mae = [], [], []
    for k in horizons:
        p, t = predicted[k - 1], truth[k - 1]
        mse.append(float((p - t).pow(2).mean()))
        cells.append(float(((p - t).abs() > 0.5).any(1).float().mean()))
        reward_mae.append(float((predicted_rewards[k - 1] - true_rewards[k - 1]).abs().mean()))
    return PredictionError(horizons, tuple(mse), tuple(cells), tuple(reward_mae), len(actions))
