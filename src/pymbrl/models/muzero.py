"""The networks of MuZero (Schrittwieser et al. 2020, appendix): the representation, dynamics and
prediction functions, as MLPs for vector observations (:class:`MuZeroNetwork`) and as a residual
conv tower for image observations (:class:`ConvMuZeroNetwork`), Stochastic MuZero's (Antonoglou et
al. 2022) afterstate, chance and encoder functions as MLPs (:class:`StochasticMuZeroNetwork`),
:func:`make_network` picking one, with the appendix's value and reward transforms.

Values and rewards are predicted as categorical distributions: a scalar is squashed by
:func:`scalar_transform` and spread over the integers -S..S (:func:`scalar_to_support`); a
prediction is decoded by its expectation and the inverse transform (:func:`support_to_scalar`).
Hidden states are min-max scaled to [0, 1] per sample (:func:`scale_hidden_state`), and training
code halves the gradient entering each unrolled dynamics step with :func:`scale_gradient`.
"""

from __future__ import annotations

import functools
import itertools
import numbers
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from pymbrl._checks import ArgumentTypeError, integer, real


def _float_tensor(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ArgumentTypeError(f"{name}: expected a tensor, got {type(x).__name__}")
    return x if x.is_floating_point() else x.float()


def scalar_transform(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """h(x) = sign(x) (sqrt(|x| + 1) - 1) + eps x, which squashes large values and rewards
    (Pohlen et al. 2018; MuZero appendix F).

    Parameters
    ----------
    x : Tensor, shape [...]
        Integer tensors are converted to float32; floating tensors keep their dtype.
    eps : float
        >= 0; 1e-3 in the paper. The linear term keeps h invertible with a bounded inverse slope.

    Returns
    -------
    Tensor, the shape and floating dtype of ``x``.
    """
    x = _float_tensor(x, "x")
    eps = real(eps, "eps", low=0.0)
    # sign(x) (sqrt(|x| + 1) - 1) = x / (sqrt(|x| + 1) + 1): no cancellation for small |x|, so the
    # round trip through the inverse keeps its relative precision down to 0.
    return x * (1.0 / (torch.sqrt(x.abs() + 1.0) + 1.0) + eps)


def inverse_scalar_transform(y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """The exact inverse of :func:`scalar_transform`: the appendix's closed form
    h^-1(y) = sign(y) (((sqrt(1 + 4 eps (|y| + 1 + eps)) - 1) / (2 eps))^2 - 1).

    It is evaluated as s (|s| + 2) with s = 2 y / (sqrt((1 + 2 eps)^2 + 4 eps |y|) + 1 + 2 eps)
    (s = sign(x) (sqrt(|x| + 1) - 1)), the same function rearranged so that it neither cancels
    near 0 nor divides by eps (``eps=0`` is allowed).

    Parameters
    ----------
    y : Tensor, shape [...]
        Integer tensors are converted to float32; floating tensors keep their dtype.
    eps : float
        >= 0, the value given to :func:`scalar_transform`.

    Returns
    -------
    Tensor, the shape and floating dtype of ``y``.
    """
    y = _float_tensor(y, "y")
    eps = real(eps, "eps", low=0.0)
    # In place on fresh temporaries: this runs at every search simulation, on small tensors where
    # each operation's fixed cost is what counts.
    c = 1.0 + 2.0 * eps
    s = y.abs().mul_(4.0 * eps).add_(c * c).sqrt_().add_(c)
    s = torch.div(y, s).mul_(2.0)
    return s.abs().add_(2.0).mul_(s)


def scalar_to_support(x: torch.Tensor, support_size: int, *, eps: float = 1e-3) -> torch.Tensor:
    """The two-hot target of a scalar: h(x), clamped to [-S, S], split between the two nearest
    integers so that the weights sum to 1 and their expectation is the clamped h(x).

    Parameters
    ----------
    x : Tensor, shape [...]
        Values or rewards; integer tensors are converted to float32.
    support_size : int
        S >= 1; the support is the 2S + 1 integers -S..S.
    eps : float
        The transform's eps, 1e-3.

    Returns
    -------
    Tensor, the floating dtype of ``x``, shape [..., 2S + 1]; bin j stands for the integer j - S.
    A NaN in ``x`` gives NaN weights (in bins S and S + 1), so a loss on the target shows it.
    """
    support_size = integer(support_size, "support_size")
    y = scalar_transform(x, eps).clamp(-support_size, support_size)
    # NaN cannot index a bin; parking it at 0 lets its NaN weights reach the loss, where they show,
    # without the device sync an explicit check would cost on every training step.
    lower = torch.nan_to_num(y, nan=0.0).floor().clamp(-support_size, support_size - 1)
    upper_weight = y - lower
    index = (lower + support_size).long().unsqueeze(-1)
    target = y.new_zeros((*y.shape, 2 * support_size + 1))
    return target.scatter_(-1, torch.cat([index, index + 1], dim=-1),
                           torch.stack([1.0 - upper_weight, upper_weight], dim=-1))


def support_to_scalar(logits: torch.Tensor, support_size: int, *, eps: float = 1e-3) -> torch.Tensor:
    """Decodes categorical predictions: the expectation of softmax(logits) over -S..S, then
    :func:`inverse_scalar_transform`.

    Parameters
    ----------
    logits : float Tensor, shape [..., 2S + 1]
    support_size : int
        S >= 1.
    eps : float
        The transform's eps, 1e-3.

    Returns
    -------
    Tensor, shape [...], the dtype of ``logits``. Logits giving a symmetric distribution (all
    equal, as from a zero-initialised head) decode to exactly 0.
    """
    support_size = integer(support_size, "support_size")
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        what = f"dtype {logits.dtype}" if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ArgumentTypeError(f"logits: expected a floating tensor, got {what}")
    if logits.dim() < 1 or logits.shape[-1] != 2 * support_size + 1:
        raise ValueError(f"logits: expected shape [..., {2 * support_size + 1}] (2 * support_size + 1), "
                         f"got {tuple(logits.shape)}")
    pair, weights = _pairing(support_size, logits.dtype, logits.device)
    # Bin +i is paired with bin -i (p[+i] - p[-i], exact: every other term of the product is a
    # zero), then weighted by i: a symmetric distribution sums to exactly 0, where a dot product
    # with [-S..S] leaves rounding residue (which the inverse transform would keep). Two small
    # matrix products are also the cheapest way here: decoding runs at every search simulation.
    expectation = (logits.softmax(dim=-1) @ pair) @ weights
    return inverse_scalar_transform(expectation, eps)


@functools.lru_cache(maxsize=32)
def _pairing(support_size: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """([2S+1, S] with +1 at (S+i, i-1) and -1 at (S-i, i-1), the weights 1..S)."""
    pair = torch.zeros(2 * support_size + 1, support_size, dtype=dtype, device=device)
    i = torch.arange(1, support_size + 1, device=device)
    pair[support_size + i, i - 1] = 1.0
    pair[support_size - i, i - 1] = -1.0
    return pair, i.to(dtype)


def scale_hidden_state(hidden_state: torch.Tensor) -> torch.Tensor:
    """Min-max scales each sample's hidden state to [0, 1] over all its features (MuZero appendix
    G: the same range as the action input of the dynamics).

    Parameters
    ----------
    hidden_state : float Tensor, shape [B, ...] with at least one feature dimension

    Returns
    -------
    Tensor, the shape and dtype of ``hidden_state``. A constant state maps to zeros.
    """
    if not isinstance(hidden_state, torch.Tensor) or not hidden_state.is_floating_point():
        raise ArgumentTypeError("hidden_state: expected a floating tensor [B, ...], got "
                                + (f"dtype {hidden_state.dtype}" if isinstance(hidden_state, torch.Tensor)
                                   else type(hidden_state).__name__))
    if hidden_state.dim() < 2:
        raise ValueError(f"hidden_state: expected shape [B, ...] with a feature dimension, got "
                         f"{tuple(hidden_state.shape)}")
    flat = hidden_state.flatten(1)
    low = flat.amin(dim=1, keepdim=True)
    high = flat.amax(dim=1, keepdim=True)
    # A constant state has range 0: the floor (1e-5, as in muzero-general and EfficientZero)
    # gives zeros instead of 0 / 0.
    return ((flat - low) / (high - low).clamp_min(1e-5)).reshape(hidden_state.shape)


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; the gradient flowing back through it is multiplied by ``scale``.

    The same as ``x * scale + x.detach() * (1 - scale)`` (MuZero appendix G, which halves the
    gradient entering the dynamics at each unroll step), except that the forward value is ``x``
    bit for bit rather than up to rounding.

    Parameters
    ----------
    x : Tensor, any shape
    scale : float in [0, 1]

    Returns
    -------
    Tensor, ``x``'s values (a view of it).
    """
    if not isinstance(x, torch.Tensor):
        raise ArgumentTypeError(f"x: expected a tensor, got {type(x).__name__}")
    return _ScaleGradient.apply(x, real(scale, "scale", low=0.0, high=1.0))


class InferenceOutput(NamedTuple):
    """One model step for a batch of B states (S = support_size, A = num_actions).

    Attributes
    ----------
    value_logits : float32, shape [B, 2S + 1] -- the value as logits over the transformed support;
        decode with :attr:`value`.
    reward_logits : float32, shape [B, 2S + 1] -- the reward of the transition into the state; zeros,
        which decode to exactly 0, at the root (:meth:`initial_inference`).
    policy_logits : float32, shape [B, A]
    hidden_state : float32, shape [B, latent_size] or [B, channels, h, w] -- min-max scaled to [0, 1].
    """

    value_logits: torch.Tensor
    reward_logits: torch.Tensor
    policy_logits: torch.Tensor
    hidden_state: torch.Tensor

    @property
    def value(self) -> torch.Tensor:
        """The decoded value, float32 [B] (S read from the logits' width, eps 1e-3)."""
        return support_to_scalar(self.value_logits, self.value_logits.shape[-1] // 2)

    @property
    def reward(self) -> torch.Tensor:
        """The decoded reward, float32 [B] (S read from the logits' width, eps 1e-3)."""
        return support_to_scalar(self.reward_logits, self.reward_logits.shape[-1] // 2)


def _check_shape(x: torch.Tensor, name: str, feature_shape: tuple[int, ...]) -> None:
    if not isinstance(x, torch.Tensor):
        raise ArgumentTypeError(f"{name}: expected a tensor, got {type(x).__name__}")
    if x.dim() != len(feature_shape) + 1 or tuple(x.shape[1:]) != feature_shape:
        dims = ", ".join(["B", *map(str, feature_shape)])
        raise ValueError(f"{name}: expected shape [{dims}], got {tuple(x.shape)}")


def _check_action(action: torch.Tensor, batch_size: int, num_actions: int) -> torch.Tensor:
    """``action`` as int64 [B] after checking its dtype, shape and range."""
    if (not isinstance(action, torch.Tensor) or action.is_floating_point() or action.is_complex()
            or action.dtype == torch.bool):
        what = f"dtype {action.dtype}" if isinstance(action, torch.Tensor) else type(action).__name__
        raise ArgumentTypeError(f"action: expected an integer tensor [B], got {what}")
    if tuple(action.shape) != (batch_size,):
        raise ValueError(f"action: expected shape [{batch_size}] (one per hidden state), got {tuple(action.shape)}")
    # One device sync per step; out of range, one_hot would raise a bare RuntimeError on the CPU
    # and a device-side assert on a GPU.
    if batch_size and bool(((action < 0) | (action >= num_actions)).any()):
        raise ValueError(f"action: expected integers in [0, {num_actions}), got values from "
                         f"{int(action.min())} to {int(action.max())}")
    return action.long()


def _zero_(layer: nn.Linear) -> nn.Linear:
    # A zero layer gives zero logits, a uniform distribution that decodes to exactly 0: a fresh
    # network predicts neutral values and rewards, where random logits pushed through the inverse
    # transform give arbitrary, sometimes large, ones that the first searches back up as if learned.
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class _MuZeroBase(nn.Module):
    """The inference API shared by both networks, over representation, dynamics and prediction."""

    obs_shape: tuple[int, ...]
    num_actions: int
    support_size: int

    def representation(self, obs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def dynamics(self, hidden_state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def prediction(self, hidden_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def initial_inference(self, obs: torch.Tensor) -> InferenceOutput:
        """Root inference: representation, then prediction; the reward logits are zeros (decoding
        to exactly 0, with no -inf to turn a cross-entropy into NaN).

        Parameters
        ----------
        obs : Tensor, shape [B, *obs_shape]; converted to the parameters' dtype.

        Returns
        -------
        InferenceOutput
        """
        hidden_state = self.representation(obs)
        policy_logits, value_logits = self.prediction(hidden_state)
        return InferenceOutput(value_logits, torch.zeros_like(value_logits), policy_logits, hidden_state)

    def recurrent_inference(self, hidden_state: torch.Tensor, action: torch.Tensor) -> InferenceOutput:
        """One step of the learned model: dynamics, then prediction at the next state.

        Parameters
        ----------
        hidden_state : float Tensor, shape [B, *hidden_shape]
            From a previous inference.
        action : integer Tensor, shape [B], values in [0, num_actions)

        Returns
        -------
        InferenceOutput
            The next hidden state, the reward of the transition and the next state's value and policy.
        """
        next_state, reward_logits = self.dynamics(hidden_state, action)
        policy_logits, value_logits = self.prediction(next_state)
        return InferenceOutput(value_logits, reward_logits, policy_logits, next_state)


def _mlp(sizes: list[int]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ELU()]
    return layers


class MuZeroNetwork(_MuZeroBase):
    """MuZero's three functions as MLPs, for vector observations.

    - representation: obs -> MLP -> hidden state [B, latent_size], min-max scaled;
    - dynamics: [hidden state, one_hot(action)] -> MLP trunk -> next hidden state (min-max scaled)
      and reward logits, both from the trunk;
    - prediction: hidden state -> MLP trunk -> policy logits and value logits.

    Every MLP has ``layers`` hidden layers of ``hidden_size`` units with ELU activations (no dead
    units in small networks). The value and reward output layers start at zero, so a fresh network
    predicts value 0 and reward 0 exactly.

    Parameters
    ----------
    obs_dim : int
    num_actions : int
    hidden_size : int
        Width of the hidden layers, 64.
    latent_size : int
        Size of the hidden state, 32.
    support_size : int
        S: values and rewards are categorical over -S..S after :func:`scalar_transform`. 10 covers
        |x| <= 117 (the paper uses 300 for Atari: |x| <= 58705).
    layers : int
        Hidden layers in each of the three functions, 1.

    The defaults are sized for CartPole-scale tasks, near muzero-general's CartPole configuration
    (one hidden layer per function, support 10); the paper's networks are residual conv towers,
    for which see :class:`ConvMuZeroNetwork`.
    """

    def __init__(self, obs_dim: int, num_actions: int, *, hidden_size: int = 64, latent_size: int = 32,
                 support_size: int = 10, layers: int = 1):
        super().__init__()
        self.obs_dim = integer(obs_dim, "obs_dim")
        self.obs_shape = (self.obs_dim,)
        self.num_actions = integer(num_actions, "num_actions")
        hidden_size = integer(hidden_size, "hidden_size")
        self.latent_size = integer(latent_size, "latent_size")
        self.support_size = integer(support_size, "support_size")
        layers = integer(layers, "layers")
        bins = 2 * self.support_size + 1
        self.encoder = nn.Sequential(*_mlp([obs_dim] + [hidden_size] * layers), nn.Linear(hidden_size, latent_size))
        self.transition = nn.Sequential(*_mlp([latent_size + num_actions] + [hidden_size] * layers))
        self.next_state_head = nn.Linear(hidden_size, latent_size)
        self.reward_head = _zero_(nn.Linear(hidden_size, bins))
        self.predictor = nn.Sequential(*_mlp([latent_size] + [hidden_size] * layers))
        self.policy_head = nn.Linear(hidden_size, num_actions)
        self.value_head = _zero_(nn.Linear(hidden_size, bins))

    def representation(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [B, obs_dim] -> hidden state float32 [B, latent_size] in [0, 1]."""
        _check_shape(obs, "obs", (self.obs_dim,))
        return scale_hidden_state(self.encoder(obs.to(self.value_head.weight.dtype)))

    def dynamics(self, hidden_state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden state [B, latent_size], action int [B] -> (next hidden state [B, latent_size] in
        [0, 1], reward logits [B, 2S + 1])."""
        _check_shape(hidden_state, "hidden_state", (self.latent_size,))
        action = _check_action(action, hidden_state.shape[0], self.num_actions)
        one_hot = F.one_hot(action, self.num_actions).to(hidden_state.dtype)
        x = self.transition(torch.cat([hidden_state, one_hot], dim=1))
        return scale_hidden_state(self.next_state_head(x)), self.reward_head(x)

    def prediction(self, hidden_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden state [B, latent_size] -> (policy logits [B, A], value logits [B, 2S + 1])."""
        _check_shape(hidden_state, "hidden_state", (self.latent_size,))
        x = self.predictor(hidden_state)
        return self.policy_head(x), self.value_head(x)


class AfterstateOutput(NamedTuple):
    """Stochastic MuZero's step from B states to their afterstates (C = num_chance_outcomes).

    Attributes
    ----------
    chance_logits : float32, shape [B, C] -- sigma, the distribution of the chance outcome (code).
    q_logits : float32, shape [B, 2S + 1] -- the afterstate's value Q(s, a); decode with :attr:`q`.
    afterstate : float32, shape [B, latent_size] -- min-max scaled to [0, 1].
    """

    chance_logits: torch.Tensor
    q_logits: torch.Tensor
    afterstate: torch.Tensor

    @property
    def q(self) -> torch.Tensor:
        """The decoded afterstate value, float32 [B]."""
        return support_to_scalar(self.q_logits, self.q_logits.shape[-1] // 2)


class StochasticMuZeroNetwork(nn.Module):
    """Stochastic MuZero's functions as MLPs (Antonoglou et al. 2022, section 3), for vector
    observations: a move leads to an afterstate, a chance outcome (one of C codes) from the
    afterstate to the next state.

    - representation and prediction as in :class:`MuZeroNetwork`;
    - afterstate dynamics: [state, one_hot(action)] -> MLP -> afterstate (min-max scaled);
    - afterstate prediction: afterstate -> MLP trunk -> chance logits [C] and Q value logits;
    - dynamics: [afterstate, code] -> MLP trunk -> next state (min-max scaled) and reward logits;
    - encoder: the observation after the chance event -> MLP -> code logits [C]; :meth:`encode`
      gives the one-hot code of their argmax, the gradient passing through their softmax
      (straight-through).

    Every MLP has ``layers`` hidden layers of ``hidden_size`` units with ELU activations; the
    value, Q and reward output layers start at zero (a fresh network predicts 0 for each).

    Parameters
    ----------
    obs_dim : int
    num_actions : int
    num_chance_outcomes : int
        C, the size of the codebook, 32 (the paper's for 2048).
    hidden_size, latent_size, support_size, layers : int
        As in :class:`MuZeroNetwork`.
    """

    def __init__(self, obs_dim: int, num_actions: int, *, num_chance_outcomes: int = 32, hidden_size: int = 64,
                 latent_size: int = 32, support_size: int = 10, layers: int = 1):
        super().__init__()
        self.obs_dim = integer(obs_dim, "obs_dim")
        self.obs_shape = (self.obs_dim,)
        self.num_actions = integer(num_actions, "num_actions")
        self.num_chance_outcomes = integer(num_chance_outcomes, "num_chance_outcomes")
        hidden_size = integer(hidden_size, "hidden_size")
        self.latent_size = integer(latent_size, "latent_size")
        self.support_size = integer(support_size, "support_size")
        layers = integer(layers, "layers")
        bins, codes, hidden = 2 * self.support_size + 1, self.num_chance_outcomes, [hidden_size] * layers
        self.encoder = nn.Sequential(*_mlp([obs_dim, *hidden]), nn.Linear(hidden_size, latent_size))
        self.predictor = nn.Sequential(*_mlp([latent_size, *hidden]))
        self.policy_head = nn.Linear(hidden_size, num_actions)
        self.value_head = _zero_(nn.Linear(hidden_size, bins))
        self.afterstate_transition = nn.Sequential(*_mlp([latent_size + num_actions, *hidden]),
                                                   nn.Linear(hidden_size, latent_size))
        self.afterstate_predictor = nn.Sequential(*_mlp([latent_size, *hidden]))
        self.chance_head = nn.Linear(hidden_size, codes)
        self.q_head = _zero_(nn.Linear(hidden_size, bins))
        self.transition = nn.Sequential(*_mlp([latent_size + codes, *hidden]))
        self.next_state_head = nn.Linear(hidden_size, latent_size)
        self.reward_head = _zero_(nn.Linear(hidden_size, bins))
        self.chance_encoder = nn.Sequential(*_mlp([obs_dim, *hidden]), nn.Linear(hidden_size, codes))

    def representation(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [B, obs_dim] -> state float32 [B, latent_size] in [0, 1]."""
        _check_shape(obs, "obs", (self.obs_dim,))
        return scale_hidden_state(self.encoder(obs.to(self.value_head.weight.dtype)))

    def prediction(self, hidden_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """state [B, latent_size] -> (policy logits [B, A], value logits [B, 2S + 1])."""
        _check_shape(hidden_state, "hidden_state", (self.latent_size,))
        x = self.predictor(hidden_state)
        return self.policy_head(x), self.value_head(x)

    def initial_inference(self, obs: torch.Tensor) -> InferenceOutput:
        """Root inference, as :meth:`MuZeroNetwork.initial_inference`."""
        hidden_state = self.representation(obs)
        policy_logits, value_logits = self.prediction(hidden_state)
        return InferenceOutput(value_logits, torch.zeros_like(value_logits), policy_logits, hidden_state)

    def afterstate_inference(self, hidden_state: torch.Tensor, action: torch.Tensor) -> AfterstateOutput:
        """A move: state [B, latent_size], action int [B] -> the afterstate and its predictions."""
        _check_shape(hidden_state, "hidden_state", (self.latent_size,))
        action = _check_action(action, hidden_state.shape[0], self.num_actions)
        one_hot = F.one_hot(action, self.num_actions).to(hidden_state.dtype)
        afterstate = scale_hidden_state(self.afterstate_transition(torch.cat([hidden_state, one_hot], dim=1)))
        x = self.afterstate_predictor(afterstate)
        return AfterstateOutput(self.chance_head(x), self.q_head(x), afterstate)

    def chance_inference(self, afterstate: torch.Tensor, code: torch.Tensor) -> InferenceOutput:
        """A chance outcome: afterstate [B, latent_size] and code float [B, C] (one-hot: from
        :meth:`encode`, or ``one_hot(outcome)`` in a search) -> the next state, the reward of the
        transition and the next state's value and policy."""
        _check_shape(afterstate, "afterstate", (self.latent_size,))
        _check_shape(code, "code", (self.num_chance_outcomes,))
        if code.shape[0] != afterstate.shape[0]:
            raise ValueError(f"code: expected one per afterstate ({afterstate.shape[0]}), got {code.shape[0]}")
        x = self.transition(torch.cat([afterstate, code], dim=1))
        next_state = scale_hidden_state(self.next_state_head(x))
        policy_logits, value_logits = self.prediction(next_state)
        return InferenceOutput(value_logits, self.reward_head(x), policy_logits, next_state)

    def encode(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The chance codes of observations after the chance event: obs [B, obs_dim] -> (code
        float32 [B, C], one-hot in value with the gradient of ``probs``; probs float32 [B, C], the
        encoder's softmax, which the commitment loss draws toward the code)."""
        _check_shape(obs, "obs", (self.obs_dim,))
        probs = self.chance_encoder(obs.to(self.value_head.weight.dtype)).softmax(dim=-1)
        one_hot = F.one_hot(probs.argmax(dim=-1), self.num_chance_outcomes).to(probs.dtype)
        return probs + (one_hot - probs).detach(), probs


class _ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN, plus the input, then ReLU (AlphaZero's block, 3x3 kernels)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


def _conv_head(channels: int, head_channels: int, plane_size: int, hidden_size: int, out: nn.Linear) -> nn.Sequential:
    """1x1 conv to ``head_channels`` planes, BN, ReLU, then a hidden linear layer and ``out``."""
    return nn.Sequential(nn.Conv2d(channels, head_channels, 1, bias=False), nn.BatchNorm2d(head_channels), nn.ReLU(),
                         nn.Flatten(), nn.Linear(head_channels * plane_size, hidden_size), nn.ReLU(), out)


class ConvMuZeroNetwork(_MuZeroBase):
    """MuZero's three functions as a residual conv network, for image observations [B, C, H, W]
    (channels first: permute MinAtar's [H, W, C] frames).

    - representation: ``downsample`` 3x3 stride-2 convolutions (each halves H and W, rounding up;
      with ``downsample=0`` one stride-1 convolution), then ``num_blocks`` residual blocks ->
      hidden state [B, channels, h, w], min-max scaled;
    - dynamics: the hidden state and an action plane (action / num_actions everywhere, the
      muzero-general and EfficientZero encoding) -> a 3x3 conv added to the hidden state, then
      ``num_blocks`` residual blocks -> next hidden state (min-max scaled); reward logits from a
      head on the unscaled planes;
    - prediction: value and policy heads on the hidden state, each a 1x1 conv to ``head_channels``
      planes, then a hidden layer of ``hidden_size`` units and the output layer.

    Convolutions are followed by batch normalisation, as in AlphaZero and the paper, so run the
    search and act in ``eval()`` mode (running statistics), as EfficientZero does. The value and
    reward output layers start at zero, so a fresh network predicts value 0 and reward 0 exactly.

    Parameters
    ----------
    obs_shape : tuple of 3 ints
        (C, H, W).
    num_actions : int
    channels : int
        Planes of the hidden state and the towers, 32 (256 in the paper).
    num_blocks : int
        Residual blocks in the representation and in the dynamics, 2 each (16 in the paper).
    downsample : int
        Stride-2 convolutions in the representation, 1 (a 10x10 MinAtar frame gives 5x5 planes).
    head_channels : int
        Planes of the 1x1 convolution in each head, 16.
    hidden_size : int
        Hidden units of each head, 64.
    support_size : int
        S of the value and reward supports, 10 (300 in the paper).

    The defaults are sized for MinAtar-scale inputs and run on a CPU.
    """

    def __init__(self, obs_shape: tuple[int, int, int], num_actions: int, *, channels: int = 32, num_blocks: int = 2,
                 downsample: int = 1, head_channels: int = 16, hidden_size: int = 64, support_size: int = 10):
        super().__init__()
        if (not isinstance(obs_shape, (tuple, list)) or len(obs_shape) != 3
                or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1 for d in obs_shape)):
            raise ValueError(f"obs_shape: expected (channels, height, width) of positive integers, got {obs_shape!r}")
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.num_actions = integer(num_actions, "num_actions")
        self.channels = integer(channels, "channels")
        num_blocks = integer(num_blocks, "num_blocks", minimum=0)
        downsample = integer(downsample, "downsample", minimum=0)
        head_channels = integer(head_channels, "head_channels")
        hidden_size = integer(hidden_size, "hidden_size")
        self.support_size = integer(support_size, "support_size")
        in_channels, height, width = self.obs_shape
        stem: list[nn.Module] = []
        for i, stride in enumerate([2] * downsample or [1]):
            stem += [nn.Conv2d(in_channels if i == 0 else channels, channels, 3, stride=stride, padding=1, bias=False),
                     nn.BatchNorm2d(channels), nn.ReLU()]
            height, width = (height - 1) // stride + 1, (width - 1) // stride + 1
        self.hidden_shape = (channels, height, width)
        self.encoder = nn.Sequential(*stem, *(_ResidualBlock(channels) for _ in range(num_blocks)))
        self.action_conv = nn.Conv2d(channels + 1, channels, 3, padding=1, bias=False)
        self.action_bn = nn.BatchNorm2d(channels)
        self.transition = nn.Sequential(*(_ResidualBlock(channels) for _ in range(num_blocks)))
        bins = 2 * self.support_size + 1
        head = (channels, head_channels, height * width, hidden_size)
        self.reward_head = _conv_head(*head, _zero_(nn.Linear(hidden_size, bins)))
        self.policy_head = _conv_head(*head, nn.Linear(hidden_size, num_actions))
        self.value_head = _conv_head(*head, _zero_(nn.Linear(hidden_size, bins)))

    def representation(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [B, C, H, W] (any dtype) -> hidden state float32 [B, channels, h, w] in [0, 1]."""
        _check_shape(obs, "obs", self.obs_shape)
        return scale_hidden_state(self.encoder(obs.to(self.action_conv.weight.dtype)))

    def dynamics(self, hidden_state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden state [B, channels, h, w], action int [B] -> (next hidden state [B, channels, h, w]
        in [0, 1], reward logits [B, 2S + 1])."""
        _check_shape(hidden_state, "hidden_state", self.hidden_shape)
        action = _check_action(action, hidden_state.shape[0], self.num_actions)
        plane = (action.to(hidden_state.dtype) / self.num_actions).view(-1, 1, 1, 1)
        x = torch.cat([hidden_state, plane.expand(-1, 1, *self.hidden_shape[1:])], dim=1)
        x = self.transition(F.relu(hidden_state + self.action_bn(self.action_conv(x))))
        return scale_hidden_state(x), self.reward_head(x)

    def prediction(self, hidden_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden state [B, channels, h, w] -> (policy logits [B, A], value logits [B, 2S + 1])."""
        _check_shape(hidden_state, "hidden_state", self.hidden_shape)
        return self.policy_head(hidden_state), self.value_head(hidden_state)


def make_network(obs_shape: tuple[int, ...], num_actions: int, *, hidden_size: int = 64, latent_size: int = 32,
                 support_size: int = 10, num_chance_outcomes: int | None = None
                 ) -> MuZeroNetwork | ConvMuZeroNetwork | StochasticMuZeroNetwork:
    """The network for observations of ``obs_shape``: :class:`MuZeroNetwork` (with ``hidden_size``
    and ``latent_size``) for vectors [D], :class:`ConvMuZeroNetwork` (its own sizes) for images
    [C, H, W]; with ``num_chance_outcomes``, :class:`StochasticMuZeroNetwork` (vectors only).
    ValueError naming ``obs_shape`` for any other shape."""
    if len(obs_shape) == 1 and num_chance_outcomes is not None:
        return StochasticMuZeroNetwork(obs_shape[0], num_actions, num_chance_outcomes=num_chance_outcomes,
                                       hidden_size=hidden_size, latent_size=latent_size, support_size=support_size)
    if len(obs_shape) == 1:
        return MuZeroNetwork(obs_shape[0], num_actions, hidden_size=hidden_size, latent_size=latent_size,
                             support_size=support_size)
    if len(obs_shape) == 3 and num_chance_outcomes is None:
        return ConvMuZeroNetwork(tuple(obs_shape), num_actions, support_size=support_size)
    stochastic = " (Stochastic MuZero's network: vectors only)" if num_chance_outcomes is not None else ""
    raise ValueError(f"obs_shape: expected vector [D] or image [C, H, W] observations{stochastic}, "
                     f"got shape {tuple(obs_shape)}")
