"""The networks of I2A (Weber et al. 2017, "Imagination-Augmented Agents for Deep Reinforcement
Learning") and of its model-free and copy-model controls.

An :class:`ActorCritic` acts on two paths: the model-free path, conv features of the current frame;
and, for an I2A, the imagination path: a frozen environment model
(:class:`~pymbrl.models.env_model.EnvModel`, or :class:`~pymbrl.models.env_model.CopyModel` for the
copy-model control) rolled a few steps once per first action, later steps following a small rollout
policy (:func:`rollout_policy_net`); a :class:`RolloutEncoder` reads each imagined trajectory
backwards, and the codes of all first actions join the model-free features before the policy and
value heads. How the model is rolled out is the ``imagine`` function the agent is built with
(:func:`pymbrl.rollout.per_action.per_action_rollouts`, which lives above this layer).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from pymbrl.models.env_model import CopyModel, EnvModel


class ConvFeatures(nn.Module):
    """Conv features of frames float [N, C, H, W] -> [N, F]. Small frames (MiniPacman's) get two 3x3
    convs, the second of stride 2; frames of 64 pixels or more a side get the Nature DQN stack
    (8x8 stride 4, 4x4 stride 2, 3x3), with ``channels``, 2 x and 2 x ``channels``."""

    def __init__(self, frame_shape: tuple[int, int, int], channels: int):
        super().__init__()
        c, h, w = frame_shape
        if min(h, w) >= 64:
            self.net = nn.Sequential(nn.Conv2d(c, channels, 8, stride=4), nn.ReLU(),
                                     nn.Conv2d(channels, 2 * channels, 4, stride=2), nn.ReLU(),
                                     nn.Conv2d(2 * channels, 2 * channels, 3), nn.ReLU(), nn.Flatten())
        else:
            self.net = nn.Sequential(nn.Conv2d(c, channels, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten())
        with torch.no_grad():
            self.size = self.net(torch.zeros(1, *frame_shape)).shape[1]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames)


class RolloutEncoder(nn.Module):
    """Encodes imagined trajectories [L, B, A, C, H, W] (+ rewards [L, B, A]) into codes [B, A x E],
    reading each trajectory from its last step to its first, as in the paper."""

    def __init__(self, frame_shape: tuple[int, int, int], channels: int, hidden: int):
        super().__init__()
        self.features = ConvFeatures(frame_shape, channels)
        self.lstm = nn.LSTM(self.features.size + 1, hidden)

    def forward(self, frames: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        length, batch, actions = rewards.shape
        features = self.features(frames.flatten(0, 2)).view(length, batch * actions, -1)
        steps = torch.cat([features, rewards.reshape(length, batch * actions, 1)], -1).flip(0)
        _, (h, _) = self.lstm(steps)
        return h[-1].view(batch, -1)


def rollout_policy_net(frame_shape: tuple[int, int, int], num_actions: int, channels: int) -> nn.Module:
    """The small rollout policy the paper distils: conv features and one linear layer, frames
    float [N, C, H, W] -> logits [N, A]."""
    features = ConvFeatures(frame_shape, channels)
    return nn.Sequential(features, nn.Linear(features.size, num_actions))


class Imagine(Protocol):
    """Rolls ``model`` ``length`` steps from each of ``frames`` [B, C, H, W] once per first action,
    later actions sampled from ``rollout_policy`` with ``generator``; the result has ``frames``
    float [L, B, A, C, H, W] and ``rewards`` float [L, B, A]
    (:func:`pymbrl.rollout.per_action.per_action_rollouts`)."""

    def __call__(self, model: Any, rollout_policy: nn.Module, frames: torch.Tensor, length: int, *,
                 generator: torch.Generator | None = None) -> Any: ...


class ActorCritic(nn.Module):
    """The policy and value of an I2A (``imagination`` given) or of the model-free baseline.

    Parameters
    ----------
    frame_shape : (C, H, W); num_actions : int
    channels : conv channels of every path; hidden : units of the I2A's model-free layer and of the trunk
    encoder_hidden : the rollout encoder's LSTM units; rollout_length : imagined steps per first action
    a2c_hidden : units of the model-free layer without imagination, sized so that the baseline has
        about as many parameters as the I2A
    imagination : EnvModel, CopyModel or None
        The frozen model the agent imagines with; None gives the model-free A2C.
    rollout_policy : module, frames [N, C, H, W] -> logits [N, A], or None
        A fixed, pre-trained rollout policy (the seed's way, e.g. :class:`PolicyLogits` of a trained
        A2C, or a distilled :func:`rollout_policy_net`); None gives the paper's, a small conv net
        distilled from this agent's policy while it trains (:attr:`distilled`).
    imagine : Imagine, needed with ``imagination``
    """

    def __init__(self, frame_shape: tuple[int, int, int], num_actions: int, *, channels: int, hidden: int,
                 encoder_hidden: int, a2c_hidden: int, rollout_length: int,
                 imagination: EnvModel | CopyModel | None = None, rollout_policy: nn.Module | None = None,
                 imagine: Imagine | None = None):
        super().__init__()
        self.num_actions, self.rollout_length, self.imagine = num_actions, rollout_length, imagine
        width = hidden if imagination is not None else a2c_hidden
        self.model_free = ConvFeatures(frame_shape, channels)
        self.model_free_fc = nn.Linear(self.model_free.size, width)
        code = 0
        self.imagination = imagination
        if imagination is not None:
            if imagine is None:
                raise ValueError("imagine: expected the rollout function of an imagining agent, got None")
            imagination.requires_grad_(False)
            self.distilled = rollout_policy is None
            if self.distilled:
                rollout_policy = rollout_policy_net(frame_shape, num_actions, channels)
            else:
                rollout_policy.requires_grad_(False)
            self.rollout_policy = rollout_policy
            self.encoder = RolloutEncoder(frame_shape, channels, encoder_hidden)
            code = num_actions * encoder_hidden
        self.trunk = nn.Linear(width + code, hidden)
        self.policy = nn.Linear(hidden, num_actions)
        self.value = nn.Linear(hidden, 1)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Everything but the environment model's weights (and a fixed rollout policy's)."""
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, frames: torch.Tensor,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """frames float [B, C, H, W] in [0, 1] -> (action logits [B, A], values [B]); ``generator``
        draws the imagined rollouts' actions."""
        h = F.relu(self.model_free_fc(self.model_free(frames)))
        if self.imagination is not None:
            rollouts = self.imagine(self.imagination, self.rollout_policy, frames, self.rollout_length,
                                    generator=generator)
            h = torch.cat([h, self.encoder(rollouts.frames, rollouts.rewards)], -1)
        h = F.relu(self.trunk(h))
        return self.policy(h), self.value(h).squeeze(-1)


class PolicyLogits(nn.Module):
    """A trained model-free agent's action logits as a rollout policy: frames [N, C, H, W] -> logits [N, A]."""

    def __init__(self, agent: ActorCritic):
        super().__init__()
        if agent.imagination is not None:
            raise ValueError("agent: expected a model-free agent (an imagining rollout policy would imagine at "
                             "every step)")
        self.agent = agent

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.agent(frames)[0]
