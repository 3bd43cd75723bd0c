"""Sampled MuZero's network (Hubert et al., ICML 2021) for vector observations and Box actions:
MuZero's representation, dynamics and prediction functions as MLPs, the dynamics taking the action
vector itself and the prediction giving a Gaussian policy squashed by tanh into [-1, 1]^d.

Values and rewards use MuZero's categorical supports and transforms
(:func:`pymbrl.models.muzero.scalar_to_support`); hidden states are min-max scaled per sample.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal, TanhTransform, TransformedDistribution
from torch.nn import functional as F

from pymbrl._checks import integer, real
from pymbrl.models.muzero import scale_hidden_state, support_to_scalar


class SampledInference(NamedTuple):
    """One model step for B states (S = support_size, d = action_dim).

    Attributes
    ----------
    value_logits, reward_logits : float32 [B, 2S + 1] -- reward logits are zeros at the root.
    mean, std : float32 [B, d] -- the pre-tanh Gaussian of the policy (:func:`tanh_normal`).
    hidden_state : float32 [B, latent_size] in [0, 1].
    """

    value_logits: torch.Tensor
    reward_logits: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    hidden_state: torch.Tensor

    @property
    def value(self) -> torch.Tensor:
        """The decoded value, float32 [B]."""
        return support_to_scalar(self.value_logits, self.value_logits.shape[-1] // 2)


def tanh_normal(mean: torch.Tensor, std: torch.Tensor) -> Distribution:
    """The policy over [-1, 1]^d: tanh of ``Independent(Normal(mean, std), 1)``, batch_shape [B]
    (its ``log_prob`` of a draw reuses the pre-tanh sample, so saturated draws stay finite)."""
    # Without argument validation: the network's outputs are valid by construction, and the checks
    # cost a good part of a search simulation.
    base = Independent(Normal(mean, std, validate_args=False), 1, validate_args=False)
    return TransformedDistribution(base, [TanhTransform(cache_size=1)], validate_args=False)


def squashed_log_prob(mean: torch.Tensor, std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log N(atanh(a); mean, std) summed over d, for actions [..., B, d] in [-1, 1]: the policy's
    log-probability without the tanh Jacobian, which does not depend on the parameters (so the
    gradient is the same) and is infinite at +-1; actions are clamped 1e-6 inside the box."""
    pre_tanh = torch.atanh(actions.clamp(-1.0 + 1e-6, 1.0 - 1e-6))
    return Normal(mean, std).log_prob(pre_tanh).sum(dim=-1)


def _mlp(inputs: int, hidden: int, layers: int) -> list[nn.Module]:
    sizes = [inputs] + [hidden] * layers
    return [m for a, b in itertools.pairwise(sizes) for m in (nn.Linear(a, b), nn.ELU())]


def _zero(layer: nn.Linear) -> nn.Linear:
    # Zero value and reward logits decode to exactly 0: a fresh network predicts neutral numbers.
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class SampledMuZeroNetwork(nn.Module):
    """Representation, dynamics and prediction as MLPs (``layers`` hidden layers of ``hidden_size``
    ELU units each).

    - representation: obs [B, obs_dim] -> hidden state [B, latent_size], min-max scaled;
    - dynamics: [hidden state, action [B, d] in [-1, 1]] -> next hidden state and reward logits;
    - prediction: hidden state -> policy (mean, std of the pre-tanh Gaussian) and value logits,
      ``std = softplus(x) + min_std``.

    Parameters
    ----------
    obs_dim, action_dim : int
    hidden_size : int, 128
    latent_size : int, 64
    support_size : int, 25 -- S of the value and reward supports (|x| up to about 650).
    layers : int, 2
    min_std : float, 0.05 -- the policy's smallest standard deviation (keeps sampling K distinct,
        useful actions and the log-probabilities finite).
    """

    def __init__(self, obs_dim: int, action_dim: int, *, hidden_size: int = 128, latent_size: int = 64,
                 support_size: int = 25, layers: int = 2, min_std: float = 0.05):
        super().__init__()
        self.obs_dim = integer(obs_dim, "obs_dim")
        self.obs_shape = (self.obs_dim,)
        self.action_dim = integer(action_dim, "action_dim")
        hidden_size = integer(hidden_size, "hidden_size")
        self.latent_size = integer(latent_size, "latent_size")
        self.support_size = integer(support_size, "support_size")
        self.min_std = real(min_std, "min_std", low=1e-6)
        layers = integer(layers, "layers")
        bins = 2 * self.support_size + 1
        self.encoder = nn.Sequential(*_mlp(obs_dim, hidden_size, layers), nn.Linear(hidden_size, latent_size))
        self.transition = nn.Sequential(*_mlp(latent_size + action_dim, hidden_size, layers))
        self.next_state_head = nn.Linear(hidden_size, latent_size)
        self.reward_head = _zero(nn.Linear(hidden_size, bins))
        self.predictor = nn.Sequential(*_mlp(latent_size, hidden_size, layers))
        self.policy_head = nn.Linear(hidden_size, 2 * action_dim)
        self.value_head = _zero(nn.Linear(hidden_size, bins))

    def representation(self, obs: torch.Tensor) -> torch.Tensor:
        return scale_hidden_state(self.encoder(obs.to(self.value_head.weight.dtype)))

    def dynamics(self, hidden_state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if action.shape != (hidden_state.shape[0], self.action_dim):
            raise ValueError(f"action: expected shape [{hidden_state.shape[0]}, {self.action_dim}], "
                             f"got {tuple(action.shape)}")
        x = self.transition(torch.cat([hidden_state, action.to(hidden_state.dtype)], dim=1))
        return scale_hidden_state(self.next_state_head(x)), self.reward_head(x)

    def prediction(self, hidden_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """hidden state -> (mean [B, d], std [B, d], value logits [B, 2S + 1])."""
        x = self.predictor(hidden_state)
        mean, raw_std = self.policy_head(x).chunk(2, dim=-1)
        return mean, F.softplus(raw_std) + self.min_std, self.value_head(x)

    def initial_inference(self, obs: torch.Tensor) -> SampledInference:
        hidden_state = self.representation(obs)
        mean, std, value_logits = self.prediction(hidden_state)
        return SampledInference(value_logits, torch.zeros_like(value_logits), mean, std, hidden_state)

    def recurrent_inference(self, hidden_state: torch.Tensor, action: torch.Tensor) -> SampledInference:
        next_state, reward_logits = self.dynamics(hidden_state, action)
        mean, std, value_logits = self.prediction(next_state)
        return SampledInference(value_logits, reward_logits, mean, std, next_state)
