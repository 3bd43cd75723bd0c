"""The world model of DreamerV3 (Hafner et al. 2023, "Mastering Diverse Domains through World
Models"): a recurrent state-space model (RSSM) with categorical latents, symlog encoders and
decoders for vectors and 64x64 images, a two-hot reward head and a continue head, trained with
the paper's KL balancing and free bits.

Conventions: sequences are batch-major, [B, T, ...]. ``actions[:, t]`` is the action that led
to ``obs[:, t]`` and ``rewards[:, t]`` the reward received with it; ``is_first[:, t]`` marks the
first step of an episode, where the state restarts from :meth:`RSSM.initial` and the action is
zeroed (it belongs to the previous episode).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from pymbrl._checks import ArgumentTypeError, integer, real, resolve_seed
from pymbrl.envs.frames import IMAGE_SHAPE


def _tensor(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ArgumentTypeError(f"{name}: expected a tensor, got {type(x).__name__}")
    return x if x.is_floating_point() else x.float()


# --------------------------------------------------------------------------------------------------
# Symlog and two-hot


def symlog(x: torch.Tensor) -> torch.Tensor:
    """symlog(x) = sign(x) log(1 + |x|) (DreamerV3 eq. 1): the identity near 0, logarithmic for
    large magnitudes, so targets of any scale give bounded gradients.

    Parameters
    ----------
    x : Tensor, shape [...]
        Integer tensors are converted to float32.

    Returns
    -------
    Tensor, the shape and floating dtype of ``x``.
    """
    x = _tensor(x, "x")
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    """symexp(x) = sign(x) (exp(|x|) - 1), the inverse of :func:`symlog`.

    Parameters
    ----------
    x : Tensor, shape [...]
        Integer tensors are converted to float32.

    Returns
    -------
    Tensor, the shape and floating dtype of ``x``.
    """
    x = _tensor(x, "x")
    return torch.sign(x) * torch.expm1(x.abs())


def symexp_bins(count: int = 255, low: float = -20.0, high: float = 20.0) -> torch.Tensor:
    """The two-hot bins of DreamerV3: symexp(linspace(low, high, count)), equally spaced in symlog
    space (255 bins over [-20, 20] in the paper).

    Returns
    -------
    float32 Tensor, shape [count], increasing.
    """
    count = integer(count, "count", minimum=2)
    low = real(low, "low", low=-80.0, high=80.0)
    high = real(high, "high", low=-80.0, high=80.0)
    if not low < high:
        raise ValueError(f"high: expected a value > low = {low:g}, got {high:g}")
    return symexp(torch.linspace(low, high, count))


def _check_bins(bins: torch.Tensor) -> torch.Tensor:
    bins = _tensor(bins, "bins")
    if bins.dim() != 1 or bins.numel() < 2:
        raise ValueError(f"bins: expected a 1-D tensor of >= 2 values, got shape {tuple(bins.shape)}")
    return bins


def two_hot(x: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """The two-hot target of ``x`` in symlog space: symlog(x), clamped to the range of
    symlog(bins), split between its two neighbouring bins so that the weights sum to 1 and their
    expectation over symlog(bins) is the clamped symlog(x).

    Parameters
    ----------
    x : Tensor, shape [...]
    bins : float Tensor, shape [K]
        Increasing bin values in the original space, e.g. :func:`symexp_bins`.

    Returns
    -------
    Tensor, shape [..., K], the dtype of ``bins``.
    """
    grid = symlog(_check_bins(bins))
    y = symlog(_tensor(x, "x")).to(grid.dtype).clamp(grid[0], grid[-1])
    # Upper neighbour index in [1, K - 1], so values at the ends still have two bins to share.
    upper = torch.searchsorted(grid, y.contiguous(), right=True).clamp(1, grid.numel() - 1)
    lower = upper - 1
    width = grid[upper] - grid[lower]
    upper_weight = ((y - grid[lower]) / width).clamp(0.0, 1.0)
    target = y.new_zeros((*y.shape, grid.numel()))
    return target.scatter_(-1, torch.stack([lower, upper], dim=-1),
                           torch.stack([1.0 - upper_weight, upper_weight], dim=-1))


def two_hot_mean(logits: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Decodes a two-hot prediction: the expectation of softmax(logits) over symlog(bins), then
    :func:`symexp`.

    Parameters
    ----------
    logits : float Tensor, shape [..., K]
    bins : float Tensor, shape [K]

    Returns
    -------
    Tensor, shape [...].
    """
    grid = symlog(_check_bins(bins))
    logits = _tensor(logits, "logits")
    if logits.shape[-1:] != grid.shape:
        raise ValueError(f"logits: expected last dimension {grid.numel()}, got shape {tuple(logits.shape)}")
    return symexp((logits.softmax(-1) * grid).sum(-1))


def two_hot_loss(logits: torch.Tensor, x: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between the two-hot target of ``x`` and softmax(logits).

    Parameters
    ----------
    logits : float Tensor, shape [..., K]
    x : Tensor, shape [...]
    bins : float Tensor, shape [K]

    Returns
    -------
    Tensor, shape [...], one loss per element of ``x``.
    """
    logits = _tensor(logits, "logits")
    target = two_hot(x, bins)
    if logits.shape != target.shape:
        raise ValueError(f"logits: expected shape {tuple(target.shape)}, got {tuple(logits.shape)}")
    return -(target * logits.log_softmax(-1)).sum(-1)


class TwoHot(nn.Module):
    """Two-hot encoding over fixed symexp bins (a buffer, so it moves with the model).

    Parameters
    ----------
    count : int
        Number of bins, 255 in DreamerV3.
    low, high : float
        Range of the bins in symlog space, [-20, 20] in DreamerV3.
    """

    def __init__(self, count: int = 255, low: float = -20.0, high: float = 20.0):
        super().__init__()
        self.register_buffer("bins", symexp_bins(count, low, high))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [...] -> two-hot weights [..., K]."""
        return two_hot(x, self.bins)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        """logits [..., K] -> decoded values [...]."""
        return two_hot_mean(logits, self.bins)

    def loss(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """logits [..., K], targets x [...] -> cross-entropy [...]."""
        return two_hot_loss(logits, x, self.bins)


# --------------------------------------------------------------------------------------------------
# Categorical latents


def unimix_logits(logits: torch.Tensor, mix: float = 0.01) -> torch.Tensor:
    """Mixes ``mix`` of a uniform distribution into softmax(logits) (DreamerV3's 1% unimix), which
    keeps every class probability >= mix / classes so KL terms stay finite.

    Parameters
    ----------
    logits : float Tensor, shape [..., groups, classes]
    mix : float
        In [0, 1].

    Returns
    -------
    Tensor, shape of ``logits``: normalised log-probabilities.
    """
    logits = _tensor(logits, "logits")
    mix = real(mix, "mix", low=0.0, high=1.0)
    probs = logits.softmax(-1)
    return torch.log((1.0 - mix) * probs + mix / logits.shape[-1])


def categorical_index(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw from each categorical by inverting its CDF with one uniform number: probs
    [..., classes] (rows summing to 1) -> int64 indices [...]. Several times faster than
    ``torch.multinomial`` on many small rows (which draws an exponential per class)."""
    u = torch.rand((*probs.shape[:-1], 1), generator=generator, device=probs.device, dtype=probs.dtype)
    cdf = probs.cumsum(-1)
    # Scaling u by the last CDF entry absorbs rounding in the sum; the clamp guards u * total == total.
    return (cdf < u * cdf[..., -1:]).sum(-1).clamp(max=probs.shape[-1] - 1)


def sample_one_hot(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A one-hot sample of each categorical with a straight-through gradient: the forward value is
    the sample, the backward pass is that of softmax(logits) (Bengio et al. 2013).

    Parameters
    ----------
    logits : float Tensor, shape [..., groups, classes]
    generator : torch.Generator, optional
        On the device of ``logits``; None draws from torch's global generator.

    Returns
    -------
    Tensor, shape and dtype of ``logits``.
    """
    logits = _tensor(logits, "logits")
    probs = logits.softmax(-1)
    sample = F.one_hot(categorical_index(probs.detach(), generator), probs.shape[-1]).to(probs.dtype)
    # probs - sg(probs) is exactly 0, so the forward value is exactly the one-hot sample.
    return sample + (probs - probs.detach())


def mode_one_hot(logits: torch.Tensor) -> torch.Tensor:
    """The most likely class of each categorical as a one-hot, with the straight-through gradient
    of :func:`sample_one_hot`. logits [..., groups, classes] -> same shape."""
    logits = _tensor(logits, "logits")
    probs = logits.softmax(-1)
    return F.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype) + (probs - probs.detach())


def categorical_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) of categoricals given by logits [..., groups, classes], summed over groups -> [...]."""
    log_p, log_q = logits_p.log_softmax(-1), logits_q.log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum((-2, -1))


def kl_balance_losses(post_logits: torch.Tensor, prior_logits: torch.Tensor,
                      free_nats: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """DreamerV3's dynamics and representation losses (eq. 5) with free bits:
    dyn = max(free_nats, KL(sg(post) || prior)), rep = max(free_nats, KL(post || sg(prior))),
    each KL summed over latent groups. The clip is per time step, so steps already predicted well
    stop pulling the representation toward the prior.

    Parameters
    ----------
    post_logits, prior_logits : float Tensor, shape [..., groups, classes]
    free_nats : float
        >= 0, 1 in the paper.

    Returns
    -------
    (dyn, rep) : Tensors, shape [...].
    """
    post_logits = _tensor(post_logits, "post_logits")
    prior_logits = _tensor(prior_logits, "prior_logits")
    if post_logits.shape != prior_logits.shape:
        raise ValueError(f"prior_logits: expected shape {tuple(post_logits.shape)}, "
                         f"got {tuple(prior_logits.shape)}")
    free_nats = real(free_nats, "free_nats", low=0.0)
    dyn = categorical_kl(post_logits.detach(), prior_logits).clamp(min=free_nats)
    rep = categorical_kl(post_logits, prior_logits.detach()).clamp(min=free_nats)
    return dyn, rep


# --------------------------------------------------------------------------------------------------
# Configuration


@dataclasses.dataclass(frozen=True)
class RSSMConfig:
    """Sizes and loss weights of the world model; defaults and presets follow DreamerV3 (Hafner
    et al. 2023, table of model sizes: S has 512 GRU units, 512 hidden units, 2 MLP layers and CNN
    multiplier 32; M has 1024, 640, 3 and 48; latents are 32 groups of 32 classes)."""

    deter: int = 512  # size of the deterministic (GRU) state h
    groups: int = 32  # the stochastic state z is `groups` one-hot vectors ...
    classes: int = 32  # ... of `classes` entries
    hidden: int = 512  # width of the MLPs (encoder, decoder, heads, latent predictors)
    layers: int = 2  # depth of those MLPs
    cnn_depth: int = 32  # channel multiplier of the image encoder and decoder (depth x 1, 2, 4, 8)
    unimix: float = 0.01  # uniform mixture of the latent distributions
    free_nats: float = 1.0  # free bits of the KL losses
    kl_dynamics: float = 0.5  # weight of the dynamics loss
    kl_representation: float = 0.1  # weight of the representation loss
    reward_bins: int = 255  # two-hot bins of the reward head

    def __post_init__(self) -> None:
        for name in ("deter", "groups", "classes", "hidden", "layers", "cnn_depth"):
            integer(getattr(self, name), name)
        integer(self.reward_bins, "reward_bins", minimum=2)
        real(self.unimix, "unimix", low=0.0, high=1.0)
        for name in ("free_nats", "kl_dynamics", "kl_representation"):
            real(getattr(self, name), name, low=0.0)

    @property
    def stoch(self) -> int:
        """Size of the flattened stochastic state, groups * classes."""
        return self.groups * self.classes

    @property
    def features(self) -> int:
        """Size of :meth:`RSSM.features`, deter + groups * classes."""
        return self.deter + self.stoch

    @classmethod
    def tiny(cls) -> RSSMConfig:
        """For CPU tests: deter 64, 4 x 4 latents, hidden 64, 1 layer, CNN multiplier 4."""
        return cls(deter=64, groups=4, classes=4, hidden=64, layers=1, cnn_depth=4)

    @classmethod
    def small(cls) -> RSSMConfig:
        """DreamerV3 size S: deter 512, 32 x 32 latents, hidden 512, 2 layers, CNN multiplier 32."""
        return cls()

    @classmethod
    def medium(cls) -> RSSMConfig:
        """DreamerV3 size M: deter 1024, 32 x 32 latents, hidden 640, 3 layers, CNN multiplier 48."""
        return cls(deter=1024, hidden=640, layers=3, cnn_depth=48)


# --------------------------------------------------------------------------------------------------
# Building blocks


def mlp(in_features: int, hidden: int, layers: int) -> nn.Sequential:
    """``layers`` blocks of Linear -> LayerNorm -> SiLU (DreamerV3's dense blocks; the norm makes
    the bias redundant)."""
    blocks: list[nn.Module] = []
    for i in range(layers):
        blocks += [nn.Linear(in_features if i == 0 else hidden, hidden, bias=False), nn.LayerNorm(hidden), nn.SiLU()]
    return nn.Sequential(*blocks)


class LayerNormGRUCell(nn.Module):
    """A GRU cell with LayerNorm on its gate pre-activations and the update gate biased towards
    keeping the state (sigmoid(u - 1)), as in DreamerV3. The norm keeps h at a stable scale over
    long imagination rollouts, which ``nn.GRUCell`` does not.

    Parameters
    ----------
    input_size, hidden_size : int
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(input_size + hidden_size, 3 * hidden_size, bias=False)
        self.norm = nn.LayerNorm(3 * hidden_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """x [N, input_size], h [N, hidden_size] -> h' [N, hidden_size]."""
        reset, candidate, update = self.norm(self.linear(torch.cat([x, h], -1))).chunk(3, -1)
        reset = torch.sigmoid(reset)
        candidate = torch.tanh(reset * candidate)
        update = torch.sigmoid(update - 1.0)
        return update * candidate + (1.0 - update) * h


class RSSMState(NamedTuple):
    """A model state; leading dimensions [...] are shared (e.g. [B], [B, T] or [H + 1, N]).

    deter : float Tensor [..., deter], the GRU state h.
    stoch : float Tensor [..., groups, classes], one-hot samples z (straight-through gradients).
    logits : float Tensor [..., groups, classes], unimix log-probabilities z was drawn from.
    """

    deter: torch.Tensor
    stoch: torch.Tensor
    logits: torch.Tensor


def _stack(states: list[RSSMState], dim: int) -> RSSMState:
    return RSSMState(*(torch.stack(parts, dim) for parts in zip(*states)))


def _check_shape(x: torch.Tensor, name: str, shape: tuple[int | None, ...]) -> torch.Tensor:
    """``x`` as a float tensor of ``shape`` (None matches any size)."""
    x = _tensor(x, name)
    if x.dim() != len(shape) or any(s is not None and s != n for s, n in zip(shape, x.shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name}: expected shape {want}, got {list(x.shape)}")
    return x


# --------------------------------------------------------------------------------------------------
# RSSM


class RSSM(nn.Module):
    """The recurrent state-space model of DreamerV3: a deterministic state h carried by a
    :class:`LayerNormGRUCell` and a stochastic state z of categorical latents, with a prior
    p(z | h) for imagination and a posterior q(z | h, embed) for observed steps.

    Parameters
    ----------
    action_dim : int
        Size of the action vectors (one-hot for discrete actions).
    embed_dim : int
        Size of the encoder's embeddings.
    config : RSSMConfig
    seed : int, optional
        Seeds the generator the latents are sampled with (one per device).
    """

    def __init__(self, action_dim: int, embed_dim: int, config: RSSMConfig | None = None, *, seed: int | None = None):
        super().__init__()
        self.action_dim = integer(action_dim, "action_dim")
        self.embed_dim = integer(embed_dim, "embed_dim")
        config = RSSMConfig() if config is None else config
        if not isinstance(config, RSSMConfig):
            raise ArgumentTypeError(f"config: expected an RSSMConfig, got {type(config).__name__}")
        self.config = config
        self.seed = resolve_seed(seed)
        self._generators: dict[torch.device, torch.Generator] = {}
        c = config
        # The initial h is learned (through tanh, so it starts at 0 and stays in the GRU's range).
        self.initial_deter = nn.Parameter(torch.zeros(c.deter))
        self.img_in = mlp(c.stoch + self.action_dim, c.hidden, 1)
        self.gru = LayerNormGRUCell(c.hidden, c.deter)
        self.prior_net = nn.Sequential(mlp(c.deter, c.hidden, 1), nn.Linear(c.hidden, c.stoch))
        self.post_net = nn.Sequential(mlp(c.deter + self.embed_dim, c.hidden, 1), nn.Linear(c.hidden, c.stoch))

    def _generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device).manual_seed(self.seed)
        return self._generators[device]

    def generator_states(self) -> dict[str, torch.Tensor]:
        """The state (uint8 tensor) of the latent-sampling generator of each device used so far,
        keyed by device name: what a checkpoint keeps for the samples to resume exactly."""
        return {str(device): g.get_state() for device, g in self._generators.items()}

    def load_generator_states(self, states: Mapping[str, torch.Tensor]) -> None:
        """Restores what :meth:`generator_states` returned."""
        for device, state in states.items():
            self._generator(torch.device(device)).set_state(state)

    def _latent(self, raw: torch.Tensor, sample: bool) -> tuple[torch.Tensor, torch.Tensor]:
        logits = unimix_logits(raw.unflatten(-1, (self.config.groups, self.config.classes)), self.config.unimix)
        stoch = sample_one_hot(logits, self._generator(logits.device)) if sample else mode_one_hot(logits)
        return stoch, logits

    def initial(self, batch: int) -> RSSMState:
        """The state before the first step of an episode: h = tanh(learned vector), z the mode of
        the prior at h (no sampling, so every episode starts from the same state).

        Returns
        -------
        RSSMState with deter [batch, deter], stoch and logits [batch, groups, classes].
        """
        batch = integer(batch, "batch")
        deter = torch.tanh(self.initial_deter).expand(batch, -1)
        stoch, logits = self._latent(self.prior_net(deter), sample=False)
        return RSSMState(deter, stoch, logits)

    def img_step(self, state: RSSMState, action: torch.Tensor, *, sample: bool = True) -> RSSMState:
        """One prior step: h' = GRU(SiLU(LN(W [z, a])), h), z' ~ p(z' | h').

        Parameters
        ----------
        state : RSSMState, leading shape [N]
        action : float Tensor, shape [N, action_dim]
        sample : bool
            False takes the mode of each latent instead of a sample.

        Returns
        -------
        RSSMState, leading shape [N].
        """
        deter = self._deter(state, action)
        stoch, logits = self._latent(self.prior_net(deter), sample)
        return RSSMState(deter, stoch, logits)

    def _deter(self, state: RSSMState, action: torch.Tensor) -> torch.Tensor:
        action = _check_shape(action, "action", (state.deter.shape[0], self.action_dim))
        return self.gru(self.img_in(torch.cat([state.stoch.flatten(-2), action], -1)), state.deter)

    def obs_step(self, state: RSSMState, action: torch.Tensor, embed: torch.Tensor, *,
                 sample: bool = True) -> tuple[RSSMState, RSSMState]:
        """One observed step: the prior step of :meth:`img_step` and the posterior
        z' ~ q(z' | h', embed), which share h'.

        Parameters
        ----------
        state : RSSMState, leading shape [N]
        action : float Tensor, shape [N, action_dim]
        embed : float Tensor, shape [N, embed_dim]
        sample : bool

        Returns
        -------
        (posterior, prior) : RSSMState, leading shape [N].
        """
        embed = _check_shape(embed, "embed", (state.deter.shape[0], self.embed_dim))
        deter = self._deter(state, action)
        prior = RSSMState(deter, *self._latent(self.prior_net(deter), sample))
        post = RSSMState(deter, *self._latent(self.post_net(torch.cat([deter, embed], -1)), sample))
        return post, prior

    def observe(self, embeds: torch.Tensor, actions: torch.Tensor, is_first: torch.Tensor,
                state: RSSMState | None = None, *, sample: bool = True) -> tuple[RSSMState, RSSMState]:
        """Filters a batch of sequences, restarting from :meth:`initial` where ``is_first``.

        Parameters
        ----------
        embeds : float Tensor, shape [B, T, embed_dim]
        actions : float Tensor, shape [B, T, action_dim]
            ``actions[:, t]`` led to step t; zeroed where ``is_first``.
        is_first : bool Tensor, shape [B, T]
        state : RSSMState, leading shape [B], optional
            The state before step 0 (carried over from a previous chunk); :meth:`initial` if None.
        sample : bool

        Returns
        -------
        (posterior, prior) : RSSMState, leading shape [B, T].
        """
        embeds = _check_shape(embeds, "embeds", (None, None, self.embed_dim))
        batch, steps = embeds.shape[:2]
        actions = _check_shape(actions, "actions", (batch, steps, self.action_dim))
        if not isinstance(is_first, torch.Tensor) or tuple(is_first.shape) != (batch, steps):
            got = list(is_first.shape) if isinstance(is_first, torch.Tensor) else type(is_first).__name__
            raise ValueError(f"is_first: expected a tensor of shape [{batch}, {steps}], got {got}")
        first = is_first.bool()
        initial = self.initial(batch)
        state = initial if state is None else state
        posts, priors = [], []
        for t in range(steps):
            reset = first[:, t]
            keep = (~reset).to(embeds.dtype)
            state = self.restart(state, reset, initial)
            post, prior = self.obs_step(state, actions[:, t] * keep[:, None], embeds[:, t], sample=sample)
            posts.append(post)
            priors.append(prior)
            state = post
        return _stack(posts, 1), _stack(priors, 1)

    def restart(self, state: RSSMState | None, first: torch.Tensor, initial: RSSMState | None = None) -> RSSMState:
        """``state`` (leading shape [N]) with the rows where ``first`` (bool [N]) is set replaced by
        ``initial``; a ``state`` of None restarts every row.

        Without ``initial``, :meth:`initial` is computed only if a row restarts (one host sync, as
        when acting step by step); a caller looping over time passes it, with no sync."""
        if initial is None:
            if state is not None and not bool(first.any()):
                return state
            initial = self.initial(first.shape[0])
        if state is None:
            return initial
        return RSSMState(*(torch.where(first.view(-1, *[1] * (a.dim() - 1)), b, a) for a, b in zip(state, initial)))

    def imagine(self, start: RSSMState, policy: Callable[[torch.Tensor], torch.Tensor], horizon: int, *,
                sample: bool = True) -> tuple[RSSMState, torch.Tensor]:
        """Rolls the prior forward from every start state at once.

        Parameters
        ----------
        start : RSSMState, any leading shape [...] (e.g. posteriors [B, T]), flattened to N states.
            Detached: the actor's loss must not train the representation.
        policy : callable
            Features [N, deter + groups * classes] -> actions [N, action_dim].
        horizon : int
            H >= 0 imagined steps.
        sample : bool

        Returns
        -------
        states : RSSMState, leading shape [H + 1, N]; index 0 is the start.
        actions : Tensor, shape [H, N, action_dim]; ``actions[k]`` leads from state k to k + 1.
        """
        horizon = integer(horizon, "horizon", minimum=0)
        if not callable(policy):
            raise ArgumentTypeError(f"policy: expected a callable, got {type(policy).__name__}")
        lead = start.deter.shape[:-1]
        state = RSSMState(start.deter.detach().reshape(-1, self.config.deter),
                          *(x.detach().reshape(-1, self.config.groups, self.config.classes)
                            for x in (start.stoch, start.logits)))
        states, actions = [state], []
        for _ in range(horizon):
            action = policy(self.features(state))
            state = self.img_step(state, action, sample=sample)
            states.append(state)
            actions.append(action)
        n = math.prod(lead)
        empty = state.deter.new_zeros((0, n, self.action_dim))
        return _stack(states, 0), torch.stack(actions) if actions else empty

    def features(self, state: RSSMState) -> torch.Tensor:
        """[..., deter + groups * classes]: h concatenated with the flattened z."""
        return torch.cat([state.deter, state.stoch.flatten(-2)], -1)


# --------------------------------------------------------------------------------------------------
# Encoders and decoders


class VectorEncoder(nn.Module):
    """symlog(obs) through ``layers`` Linear-LayerNorm-SiLU blocks: [..., obs_dim] -> [..., hidden]."""

    def __init__(self, obs_dim: int, hidden: int = 512, layers: int = 2):
        super().__init__()
        self.obs_dim = integer(obs_dim, "obs_dim")
        self.embed_dim = integer(hidden, "hidden")
        self.net = mlp(self.obs_dim, self.embed_dim, integer(layers, "layers"))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        obs = _tensor(obs, "obs")
        if obs.shape[-1:] != (self.obs_dim,):
            raise ValueError(f"obs: expected last dimension {self.obs_dim}, got shape {list(obs.shape)}")
        return self.net(symlog(obs))


class VectorDecoder(nn.Module):
    """Predicts symlog(obs) from features: [..., in_features] -> [..., obs_dim]; the loss is the
    squared error in symlog space (DreamerV3's symlog loss), summed over observation entries."""

    def __init__(self, in_features: int, obs_dim: int, hidden: int = 512, layers: int = 2):
        super().__init__()
        self.obs_dim = integer(obs_dim, "obs_dim")
        hidden = integer(hidden, "hidden")
        self.net = nn.Sequential(mlp(integer(in_features, "in_features"), hidden, integer(layers, "layers")),
                                 nn.Linear(hidden, self.obs_dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The prediction of symlog(obs); :func:`symexp` of it estimates obs."""
        return self.net(features)

    def loss(self, features: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """features [..., in_features], obs [..., obs_dim] -> loss [...]."""
        return (self(features) - symlog(_tensor(obs, "obs"))).pow(2).sum(-1)


class _ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of [N, C, H, W] maps (per pixel, as DreamerV3's CNNs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _check_image(obs: torch.Tensor) -> torch.Tensor:
    if not isinstance(obs, torch.Tensor):
        raise ArgumentTypeError(f"obs: expected a tensor, got {type(obs).__name__}")
    if obs.dtype != torch.uint8:
        raise ValueError(f"obs: expected uint8 images, got {obs.dtype}")
    if obs.dim() < 4 or tuple(obs.shape[-3:]) != IMAGE_SHAPE:
        raise ValueError(f"obs: expected shape [..., 64, 64, 3] (channels last), got {list(obs.shape)}")
    return obs


class ImageEncoder(nn.Module):
    """64x64x3 uint8 images, scaled to [-0.5, 0.5], through four stride-2 convolutions (kernel 4)
    to 4x4 maps with depth * 1, 2, 4, 8 channels, each followed by a channel LayerNorm and SiLU:
    [..., 64, 64, 3] -> [..., 8 * depth * 16].

    Parameters
    ----------
    depth : int
        The channel multiplier, 32 for DreamerV3's S size.
    """

    def __init__(self, depth: int = 32):
        super().__init__()
        depth = integer(depth, "depth")
        channels = [3] + [depth * m for m in (1, 2, 4, 8)]
        blocks: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(channels):
            blocks += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=False), _ChannelNorm(c_out), nn.SiLU()]
        self.net = nn.Sequential(*blocks)
        self.embed_dim = channels[-1] * 16

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        obs = _check_image(obs)
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *IMAGE_SHAPE).permute(0, 3, 1, 2).float() / 255.0 - 0.5
        return self.net(x).reshape(*lead, self.embed_dim)


class ImageDecoder(nn.Module):
    """Features -> a linear layer to 4x4 maps of 8 * depth channels -> transposed convolutions
    (kernel 4, stride 2) up to 64x64x3, predicting pixels scaled to [-0.5, 0.5]; the loss is their
    squared error summed over pixels.

    Parameters
    ----------
    in_features : int
    depth : int
        The channel multiplier of the matching :class:`ImageEncoder`.
    """

    def __init__(self, in_features: int, depth: int = 32):
        super().__init__()
        depth = integer(depth, "depth")
        channels = [depth * m for m in (8, 4, 2, 1)]
        self.linear = nn.Linear(integer(in_features, "in_features"), channels[0] * 16)
        blocks: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(channels):
            blocks += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False), _ChannelNorm(c_out),
                       nn.SiLU()]
        blocks.append(nn.ConvTranspose2d(channels[-1], 3, 4, stride=2, padding=1))
        self.net = nn.Sequential(*blocks)
        self.top_channels = channels[0]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features [..., in_features] -> float images [..., 64, 64, 3] in about [-0.5, 0.5]."""
        lead = features.shape[:-1]
        x = self.linear(features.reshape(-1, features.shape[-1])).reshape(-1, self.top_channels, 4, 4)
        return self.net(x).permute(0, 2, 3, 1).reshape(*lead, *IMAGE_SHAPE)

    def loss(self, features: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """features [..., in_features], uint8 obs [..., 64, 64, 3] -> loss [...]."""
        target = _check_image(obs).float() / 255.0 - 0.5
        return (self(features) - target).pow(2).sum((-3, -2, -1))


# --------------------------------------------------------------------------------------------------
# World model


class WorldModel(nn.Module):
    """Encoder, :class:`RSSM`, decoder, two-hot reward head and continue head, trained with
    DreamerV3's loss (eq. 4-5): prediction losses (decoder + reward + continue) plus
    ``kl_dynamics`` * dyn + ``kl_representation`` * rep, averaged over batch and time.

    Parameters
    ----------
    obs_shape : int or tuple
        An int or (n,) for vector observations; (64, 64, 3) for uint8 images.
    action_dim : int
    config : RSSMConfig
    seed : int, optional
        Seeds the RSSM's latent sampling.
    """

    def __init__(self, obs_shape: int | tuple[int, ...], action_dim: int, config: RSSMConfig | None = None, *,
                 seed: int | None = None):
        super().__init__()
        config = RSSMConfig() if config is None else config
        if not isinstance(config, RSSMConfig):
            raise ArgumentTypeError(f"config: expected an RSSMConfig, got {type(config).__name__}")
        self.config = c = config
        if isinstance(obs_shape, numbers.Integral) and not isinstance(obs_shape, bool):
            obs_shape = (int(obs_shape),)
        if not isinstance(obs_shape, tuple):
            raise ArgumentTypeError(f"obs_shape: expected an int or a tuple, got {type(obs_shape).__name__}")
        self.obs_shape = obs_shape
        if len(obs_shape) == 1:
            self.encoder: nn.Module = VectorEncoder(obs_shape[0], c.hidden, c.layers)
            self.decoder: nn.Module = VectorDecoder(c.features, obs_shape[0], c.hidden, c.layers)
        elif obs_shape == IMAGE_SHAPE:
            self.encoder = ImageEncoder(c.cnn_depth)
            self.decoder = ImageDecoder(c.features, c.cnn_depth)
        else:
            raise ValueError(f"obs_shape: expected (n,) or (64, 64, 3), got {obs_shape}")
        self.rssm = RSSM(action_dim, self.encoder.embed_dim, c, seed=seed)
        self.two_hot = TwoHot(c.reward_bins)
        self.reward_head = nn.Sequential(mlp(c.features, c.hidden, c.layers), nn.Linear(c.hidden, c.reward_bins))
        # Zero output weights: the first reward predictions are 0, not large random values that the
        # exponential spacing of the bins would turn into huge early returns.
        nn.init.zeros_(self.reward_head[-1].weight)
        nn.init.zeros_(self.reward_head[-1].bias)
        self.continue_head = nn.Sequential(mlp(c.features, c.hidden, c.layers), nn.Linear(c.hidden, 1))

    def reward(self, features: torch.Tensor) -> torch.Tensor:
        """Predicted rewards: features [..., F] -> [...]."""
        return self.two_hot.mean(self.reward_head(features))

    def continue_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits that the episode continues: features [..., F] -> [...]."""
        return self.continue_head(features).squeeze(-1)

    def loss(self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, is_first: torch.Tensor,
             is_terminal: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor | RSSMState]]:
        """The world-model loss on a batch of sequences.

        Parameters
        ----------
        obs : Tensor, shape [B, T, *obs_shape]; float for vectors, uint8 for images.
        actions : float Tensor, shape [B, T, action_dim]
        rewards : float Tensor, shape [B, T]
        is_first, is_terminal : bool Tensor, shape [B, T]

        Returns
        -------
        total : scalar Tensor
        parts : dict
            ``decoder``, ``reward``, ``continue``, ``kl_dynamics``, ``kl_representation``: detached
            scalar means of each term (before the KL weights); ``posterior`` : RSSMState [B, T],
            the start states for imagination; ``prior`` : RSSMState [B, T].
        """
        if not isinstance(obs, torch.Tensor) or obs.dim() != 2 + len(self.obs_shape):
            got = list(obs.shape) if isinstance(obs, torch.Tensor) else type(obs).__name__
            raise ValueError(f"obs: expected shape [B, T, {', '.join(map(str, self.obs_shape))}], got {got}")
        batch, steps = obs.shape[:2]
        rewards = _check_shape(rewards, "rewards", (batch, steps))
        is_terminal = _check_shape(is_terminal, "is_terminal", (batch, steps))
        post, prior = self.rssm.observe(self.encoder(obs), actions, is_first)
        features = self.rssm.features(post)
        decoder = self.decoder.loss(features, obs)
        reward = self.two_hot.loss(self.reward_head(features), rewards)
        cont = F.binary_cross_entropy_with_logits(self.continue_logits(features), 1.0 - is_terminal,
                                                  reduction="none")
        dyn, rep = kl_balance_losses(post.logits, prior.logits, self.config.free_nats)
        total = (decoder + reward + cont + self.config.kl_dynamics * dyn
                 + self.config.kl_representation * rep).mean()
        parts: dict[str, torch.Tensor | RSSMState] = {
            "decoder": decoder.mean().detach(), "reward": reward.mean().detach(), "continue": cont.mean().detach(),
            "kl_dynamics": dyn.mean().detach(), "kl_representation": rep.mean().detach(),
            "posterior": post, "prior": prior}
        return total, parts
