"""Dreamer's actor and critic (DreamerV3, Hafner et al. 2023), which read the features of the world
model of :mod:`pymbrl.models.rssm`, and the clipped optimiser step and compilation its update uses."""

from __future__ import annotations

import torch
from torch import nn

from pymbrl.models.rssm import RSSMConfig, TwoHot, WorldModel, categorical_index, mlp, unimix_logits


class Actor(nn.Module):
    """The policy on model features: a categorical with 1% unimix over one-hot actions (discrete),
    or a Gaussian with tanh mean and standard deviation in [``min_std``, ``max_std``] (continuous;
    the env's box is mapped onto [-1, 1]). Its dense blocks are the world model's (``config``'s
    hidden units and layers).

    ``sample``/``mode`` take features [N, F] and return actions [N, A] (float; one-hot when
    discrete). Continuous samples are reparameterised and clipped to [-1, 1] with a straight-
    through gradient, so returns can be backpropagated into the actor through the dynamics.
    """

    def __init__(self, features: int, action_dim: int, discrete: bool, config: RSSMConfig, min_std: float = 0.1,
                 max_std: float = 1.0):
        super().__init__()
        self.discrete, self.action_dim = discrete, action_dim
        self.min_std, self.max_std = min_std, max_std
        self.net = nn.Sequential(mlp(features, config.hidden, config.layers),
                                 nn.Linear(config.hidden, action_dim if discrete else 2 * action_dim))

    def distribution(self, features: torch.Tensor) -> torch.distributions.Distribution:
        out = self.net(features)
        if self.discrete:
            return torch.distributions.OneHotCategorical(logits=unimix_logits(out, 0.01))
        mean, std = out.chunk(2, -1)
        std = (self.max_std - self.min_std) * torch.sigmoid(std + 2.0) + self.min_std
        return torch.distributions.Independent(torch.distributions.Normal(torch.tanh(mean), std), 1)

    def sample(self, features: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        dist = self.distribution(features)
        if self.discrete:
            probs = dist.probs
            return nn.functional.one_hot(categorical_index(probs, generator), self.action_dim).to(probs.dtype)
        base = dist.base_dist
        noise = torch.randn(base.loc.shape, device=base.loc.device, generator=generator)
        action = base.loc + base.scale * noise
        return action + (action.clamp(-1.0, 1.0) - action).detach()

    def mode(self, features: torch.Tensor) -> torch.Tensor:
        dist = self.distribution(features)
        if self.discrete:
            return nn.functional.one_hot(dist.probs.argmax(-1), self.action_dim).to(features.dtype)
        return dist.base_dist.loc


class Critic(nn.Module):
    """Distribution of returns over symexp bins (``config.reward_bins``, two-hot targets): features
    [..., F] -> logits [..., bins]; ``value`` decodes their mean. Zero-initialised output, so values
    start at 0."""

    def __init__(self, features: int, config: RSSMConfig):
        super().__init__()
        self.net = nn.Sequential(mlp(features, config.hidden, config.layers),
                                 nn.Linear(config.hidden, config.reward_bins))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.two_hot = TwoHot(config.reward_bins)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)

    def value(self, features: torch.Tensor) -> torch.Tensor:
        return self.two_hot.mean(self.net(features))


def clipped_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, parameters: list[nn.Parameter],
                 clip: float) -> float:
    """One step of ``optimizer`` on ``loss`` with the gradient norm of ``parameters`` clipped to
    ``clip``; returns the norm before clipping."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = nn.utils.clip_grad_norm_(parameters, clip)
    optimizer.step()
    return float(norm)


def compile_networks(world_model: WorldModel, *heads: nn.Module) -> None:
    """Compiles, in place, each network an update calls once per step (encoder, the RSSM's input
    layer, GRU cell and latent heads, decoder, reward and continue heads, and the ``net`` of each of
    ``heads``: actor, critics) with ``torch.compile``. The Python loops over time and horizon stay
    eager, so each compiled graph is small and shape-stable; the parameters and their state-dict
    names are unchanged."""
    wm = world_model
    for module in (wm.encoder, wm.decoder, wm.reward_head, wm.continue_head, wm.rssm.img_in, wm.rssm.gru,
                   wm.rssm.prior_net, wm.rssm.post_net, *(head.net for head in heads)):
        module.compile()
