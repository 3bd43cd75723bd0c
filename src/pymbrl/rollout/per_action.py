"""I2A's imagination: from every state, one rollout per first action, all as one batch.

An imagination-augmented agent (Weber et al. 2017) rolls its environment model forward from the
current state once for each action a of a Discrete space: the first step takes a, the later steps
take the rollout policy's actions on the imagined frames. The code the I2A seed runs loops over the
actions and the steps in Python; here the B states x A first actions are the rows of one batch, so
each of the L steps is one call of the model and one of the rollout policy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

import torch

from pymbrl._checks import integer


class FrameModel(Protocol):
    """What the imagination needs of a model: ``num_actions`` and ``predict(frames [N, C, H, W],
    actions int64 [N]) -> (next frames [N, C, H, W], rewards [N])``."""

    num_actions: int

    def predict(self, frames: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class ActionRollouts(NamedTuple):
    """B states x A first actions, rolled L steps.

    frames : float Tensor [L, B, A, C, H, W], the imagined frame after each step.
    rewards : float Tensor [L, B, A], the model's reward of each step.
    actions : int64 Tensor [L, B, A], the action taken at each step (``actions[0, :, a] == a``).
    """

    frames: torch.Tensor
    rewards: torch.Tensor
    actions: torch.Tensor


@torch.no_grad()
def per_action_rollouts(model: FrameModel, rollout_policy: Callable[[torch.Tensor], torch.Tensor],
                        frames: torch.Tensor, length: int, *, sample: bool = True,
                        generator: torch.Generator | None = None) -> ActionRollouts:
    """Rolls ``model`` ``length`` steps from each of ``frames`` once per first action.

    Parameters
    ----------
    model : FrameModel (e.g. :class:`pymbrl.models.env_model.EnvModel`), used frozen.
    rollout_policy : callable, frames float [N, C, H, W] -> action logits [N, A]; picks the actions of
        steps 2..L.
    frames : float Tensor [B, C, H, W], the start states.
    length : int, L >= 1.
    sample : bool
        True samples the rollout policy's actions (as in the paper); False takes its argmax.
    generator : torch.Generator for the samples, on the frames' device.

    Nothing here carries a gradient: the model is fixed and the sampled actions are not
    differentiable. An agent learns from the returned trajectories through its rollout encoder.
    """
    length = integer(length, "length")
    if frames.dim() != 4:
        raise ValueError(f"frames: expected [B, C, H, W], got {list(frames.shape)}")
    batch, num_actions = frames.shape[0], model.num_actions
    x = frames.repeat_interleave(num_actions, 0)  # row b * A + a starts from state b with action a
    action = torch.arange(num_actions, device=frames.device).repeat(batch)
    out_frames, out_rewards, out_actions = [], [], []
    for step in range(length):
        if step > 0:
            logits = rollout_policy(x)
            if sample:
                action = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)
            else:
                action = logits.argmax(-1)
        x, reward = model.predict(x, action)
        out_frames.append(x)
        out_rewards.append(reward)
        out_actions.append(action)
    shape = (length, batch, num_actions)
    return ActionRollouts(torch.stack(out_frames).view(*shape, *frames.shape[1:]),
                          torch.stack(out_rewards).view(shape), torch.stack(out_actions).view(shape))
