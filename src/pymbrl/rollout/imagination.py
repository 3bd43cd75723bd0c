"""Imagined trajectories of a world model (Dreamer): every start state rolled forward at once
under a policy, with the model's rewards and continue probabilities, as whole-batch tensor
operations (a Python loop over the horizon only, never over the sequences).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from pymbrl.models.rssm import RSSMState, WorldModel

CONTINUES = ("mode", "mean")


class Imagination(NamedTuple):
    """N imagined trajectories of H steps.

    states : RSSMState, leading shape [H + 1, N]; index 0 holds the start states (detached).
    features : float Tensor [H + 1, N, F], the features of ``states``.
    actions : float Tensor [H, N, action_dim]; ``actions[k]`` leads from state k to k + 1.
    rewards : float Tensor [H, N], the model's reward of each step (read at state k + 1).
    continues : float Tensor [H, N], whether the episode goes on after step k: the model's
        probability, or its mode (1 where that probability is above 1/2, else 0).
    """

    states: RSSMState
    features: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    continues: torch.Tensor


def imagine(world_model: WorldModel, start: RSSMState, policy: Callable[[torch.Tensor], torch.Tensor],
            horizon: int = 15, *, sample: bool = True, continues: str = "mode") -> Imagination:
    """Rolls ``world_model`` forward ``horizon`` steps from every start state (e.g. all B x T
    posteriors of a replayed batch) under ``policy``, then reads rewards and continues for all
    imagined states in one call of each head.

    Gradients flow from the outputs into the policy's actions and the model's parameters (which
    Dreamer's actor uses for backpropagation through the dynamics); the start states are detached.

    Parameters
    ----------
    world_model : WorldModel
    start : RSSMState, any leading shape (flattened to N)
    policy : callable, features [N, F] -> actions [N, action_dim]
    horizon : int, 15 in DreamerV3
    sample : bool
        False follows the mode of each latent instead of sampling it.
    continues : str
        "mode" (DreamerV3's code) or "mean" (the probabilities). A continue head that hedges, e.g.
        0.97 everywhere because early episodes were short, shrinks every imagined return under
        "mean"; under "mode" only states the model is sure end an episode cut the returns.
    """
    if continues not in CONTINUES:
        raise ValueError(f"continues: expected one of {CONTINUES}, got {continues!r}")
    states, actions = world_model.rssm.imagine(start, policy, horizon, sample=sample)
    features = world_model.rssm.features(states)
    logits = world_model.continue_logits(features[1:])
    return Imagination(states, features, actions, world_model.reward(features[1:]),
                       torch.sigmoid(logits) if continues == "mean" else (logits > 0).to(logits.dtype))
