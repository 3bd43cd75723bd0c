"""Learned dynamics: a probabilistic ensemble (PETS, Chua et al. 2018; used by MBPO, Janner et al.
2019) written with batched ensemble layers, and the deterministic residual model of the chapter.

Both predict the change of the observation and the reward from (observation, action); inputs are
normalised by a :class:`Normalizer` fitted on the training data.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from pymbrl._checks import integer


class Normalizer(nn.Module):
    """Per-feature standardisation, ``(x - mean) / std``, fitted on a dataset (buffers, so it is
    saved with the model and moves with it between devices)."""

    def __init__(self, size: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("std", torch.ones(size))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """Sets mean and std from ``x`` [N, size]; constant features keep std 1 (no division by ~0)."""
        self.mean.copy_(x.mean(dim=0))
        std = x.std(dim=0, unbiased=False) if x.shape[0] > 1 else torch.ones_like(self.std)
        self.std.copy_(torch.where(std < self.eps, torch.ones_like(std), std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class EnsembleLinear(nn.Module):
    """E independent linear layers applied in one batched matmul: [E, N, in] -> [E, N, out],
    each member initialised like ``nn.Linear`` (uniform in +-1/sqrt(in))."""

    def __init__(self, ensemble_size: int, in_features: int, out_features: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """x [E, N, in] (or [K, N, in] with ``members`` [K]: row block k goes through member members[k])."""
        if members is None:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.baddbmm(self.bias[members], x, self.weight[members])


class GaussianEnsemble(nn.Module):
    """An ensemble of E Gaussian MLPs predicting [delta observation, reward] with a diagonal
    covariance (Chua et al. 2018), all members in batched layers (one matmul per layer).

    Parameters
    ----------
    obs_dim, act_dim : int
    ensemble_size : int
        Members, 7 in MBPO.
    num_elites : int
        Members used for prediction after training (the best on held-out data), 5 in MBPO.
    hidden, layers : int
        Width and number of hidden layers (200 and 4 in MBPO), SiLU (swish) activations.

    The log-variance is soft-clamped between learned bounds (initialised at -10 and 0.5), whose
    spread the loss penalises, as in the PETS code.
    """

    def __init__(self, obs_dim: int, act_dim: int, *, ensemble_size: int = 7, num_elites: int = 5, hidden: int = 200,
                 layers: int = 4):
        super().__init__()
        self.obs_dim = integer(obs_dim, "obs_dim")
        self.act_dim = integer(act_dim, "act_dim", minimum=0)
        self.ensemble_size = integer(ensemble_size, "ensemble_size")
        integer(num_elites, "num_elites")
        if num_elites > ensemble_size:
            raise ValueError(f"num_elites: expected at most ensemble_size ({ensemble_size}), got {num_elites}")
        integer(hidden, "hidden")
        integer(layers, "layers")
        in_dim, self.out_dim = obs_dim + act_dim, obs_dim + 1
        self.normalizer = Normalizer(in_dim)
        sizes = [in_dim] + [hidden] * layers
        self.hidden = nn.ModuleList(EnsembleLinear(ensemble_size, a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = EnsembleLinear(ensemble_size, hidden, 2 * self.out_dim)
        self.max_logvar = nn.Parameter(torch.full((self.out_dim,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((self.out_dim,), -10.0))
        self.register_buffer("elites", torch.arange(num_elites))

    @property
    def num_elites(self) -> int:
        return int(self.elites.numel())

    def inputs(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """The normalised model input [..., obs_dim + act_dim]."""
        return self.normalizer(torch.cat([obs, act], dim=-1))

    def forward(self, obs: torch.Tensor, act: torch.Tensor,
                members: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of [delta obs, reward] for every member.

        obs [N, obs_dim] and act [N, act_dim] (every member sees the same rows) or [E, N, ...] (one
        batch per member). With ``members`` (int64 [K]), obs and act are [K, N, ...] and block k
        goes through member members[k] only. Returns two float tensors [E (or K), N, obs_dim + 1].
        """
        x = self.inputs(obs, act)
        if x.dim() == 2:
            x = x.expand(self.ensemble_size if members is None else members.numel(), *x.shape)
        if torch.is_grad_enabled() or x.shape[1] <= self.INFERENCE_CHUNK:
            return self._layers(x, members)
        # Inference on many rows (model rollouts): blocks of rows keep the [members, rows, hidden]
        # activations in cache; a 100k-row rollout step ran 1.6x faster than in one piece.
        parts = [self._layers(x[:, i:i + self.INFERENCE_CHUNK], members)
                 for i in range(0, x.shape[1], self.INFERENCE_CHUNK)]
        return torch.cat([p[0] for p in parts], dim=1), torch.cat([p[1] for p in parts], dim=1)

    INFERENCE_CHUNK = 2048

    def _layers(self, x: torch.Tensor, members: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        inplace = not torch.is_grad_enabled()  # no graph to keep the pre-activations for
        for layer in self.hidden:
            x = F.silu(layer(x, members), inplace=inplace)
        mean, logvar = self.head(x, members).chunk(2, dim=-1)
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar

    def loss(self, obs: torch.Tensor, act: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Gaussian negative log-likelihood (up to a constant) summed over members, averaged over rows
        and outputs, plus 0.01 times the spread of the log-variance bounds. Inputs [E, N, ...]."""
        mean, logvar = self(obs, act)
        nll = ((mean - target) ** 2 * torch.exp(-logvar) + logvar).mean(dim=(1, 2)).sum()
        return nll + 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())

    @torch.no_grad()
    def mse(self, obs: torch.Tensor, act: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean squared error of each member's mean on the same rows: float [E]."""
        mean, _ = self(obs, act)
        return ((mean - target) ** 2).mean(dim=(1, 2))

    @torch.no_grad()
    def sample(self, obs: torch.Tensor, act: torch.Tensor, *, generator: torch.Generator | None = None,
               deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """A next observation and reward per row, each row from a random elite member with its noise
        (the MBPO rollout model; ``deterministic``: the elites' mean prediction, no noise).

        The rows are dealt to the elites by a random permutation, an equal share each, and each
        elite runs on its share only: one member's work per row instead of the whole ensemble's.

        obs [N, obs_dim], act [N, act_dim] -> (next_obs [N, obs_dim], reward [N]).
        """
        if deterministic:
            mean, _ = self(obs, act, self.elites)  # every elite on every row
            out = mean.mean(dim=0)
            return obs + out[:, :-1], out[:, -1]
        n, k = obs.shape[0], self.num_elites
        share = -(-n // k)
        # Random numbers come from the generator's device, then move (a CPU generator can drive a GPU model).
        where = generator.device if generator is not None else obs.device
        order = torch.randperm(n, generator=generator, device=where).to(obs.device)
        blocks = torch.cat([order, order[: share * k - n]]).view(k, share)  # padded with repeats
        mean, logvar = self(obs[blocks], act[blocks], self.elites)
        noise = torch.randn(mean.shape, generator=generator, device=where).to(obs.device)
        drawn = (mean + noise * torch.exp(0.5 * logvar)).reshape(share * k, -1)[:n]
        out = torch.empty_like(drawn)
        out[order] = drawn
        return obs + out[:, :-1], out[:, -1]


class DynamicsModel(nn.Module):
    """The chapter's deterministic residual model: an MLP predicting [delta observation, reward],
    so that ``next_obs = obs + delta`` (easier to learn than the next observation itself)."""

    def __init__(self, obs_dim: int, act_dim: int, *, hidden: int = 200, layers: int = 4):
        super().__init__()
        self.obs_dim = integer(obs_dim, "obs_dim")
        self.act_dim = integer(act_dim, "act_dim", minimum=0)
        integer(hidden, "hidden")
        integer(layers, "layers")
        self.normalizer = Normalizer(obs_dim + act_dim)
        sizes = [obs_dim + act_dim] + [hidden] * layers
        blocks: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            blocks += [nn.Linear(a, b), nn.SiLU()]
        self.net = nn.Sequential(*blocks, nn.Linear(hidden, obs_dim + 1))

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """[delta obs, reward] [..., obs_dim + 1]."""
        return self.net(self.normalizer(torch.cat([obs, act], dim=-1)))

    def loss(self, obs: torch.Tensor, act: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self(obs, act), target)

    @torch.no_grad()
    def sample(self, obs: torch.Tensor, act: torch.Tensor, **_: object) -> tuple[torch.Tensor, torch.Tensor]:
        """(next_obs [N, obs_dim], reward [N])."""
        out = self(obs, act)
        return obs + out[:, :-1], out[:, -1]
