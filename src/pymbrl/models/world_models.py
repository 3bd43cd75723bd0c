"""World Models (Ha & Schmidhuber 2018, "Recurrent World Models Facilitate Policy Evolution"):

V, :class:`ConvVAE` -- compresses a 64x64 RGB frame to a latent z (32 or 64 numbers);
M, :class:`MDNRNN` -- an LSTM whose output is a mixture of Gaussians per latent dimension for
   P(z_{t+1} | z_t, a_t, h_t), with a "done" head (and optionally a reward head);
C, :class:`Controller` -- a linear map (or one hidden layer) from [z_t, h_t] to the action, whose
   weights come as flat parameter vectors so that CMA-ES can evaluate a whole population at once;
:class:`Policy` -- V, M and C acting together in real envs, one set of C's parameters per env.

Shapes follow the paper's appendix: the VAE's encoder is four stride-2 4x4 convolutions (32, 64, 128,
256 channels) and its decoder four stride-2 deconvolutions (5, 5, 6, 6); M has 5 mixture components.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch import nn

from pymbrl._checks import integer, real
from pymbrl.envs.frames import IMAGE_SHAPE
from pymbrl.models.rssm import categorical_index

if TYPE_CHECKING:  # the env side of Policy; V, M and C need neither
    import gymnasium as gym

    from pymbrl.envs.spaces import ActionCodec


def frames_to_tensor(frames: torch.Tensor | np.ndarray, name: str = "frames") -> torch.Tensor:
    """uint8 frames [..., 64, 64, 3] (channels last, as envs give them) -> float [N, 3, 64, 64] in
    [0, 1]; any other dtype or shape is refused, naming ``name``."""
    frames = torch.as_tensor(frames)
    if frames.dtype != torch.uint8 or tuple(frames.shape[-3:]) != IMAGE_SHAPE:
        raise ValueError(f"{name}: expected uint8 frames of shape [..., 64, 64, 3], got {frames.dtype} "
                         f"{tuple(frames.shape)} (resize them to 64x64 first)")
    return frames.reshape(-1, *IMAGE_SHAPE).permute(0, 3, 1, 2).float().div_(255.0)


class ConvVAE(nn.Module):
    """V: frames -> (mu, logvar) of a diagonal Gaussian over z; z -> frames in [0, 1].

    The loss is the paper's: per frame, the summed squared reconstruction error plus the KL to N(0, I)
    floored at ``kl_tolerance * z_dim`` nats (so the KL term stops pushing once it is that small,
    which keeps z informative).

    Parameters
    ----------
    z_dim : int -- 32 (CarRacing) or 64 (Doom) in the paper.
    kl_tolerance : float -- 0.5.
    """

    def __init__(self, z_dim: int = 32, kl_tolerance: float = 0.5):
        super().__init__()
        self.z_dim = integer(z_dim, "z_dim")
        self.kl_tolerance = real(kl_tolerance, "kl_tolerance", low=0.0)
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, 2), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
            nn.Conv2d(64, 128, 4, 2), nn.ReLU(), nn.Conv2d(128, 256, 4, 2), nn.ReLU(), nn.Flatten())
        self.mu = nn.Linear(1024, z_dim)
        self.logvar = nn.Linear(1024, z_dim)
        self.expand = nn.Linear(z_dim, 1024)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(1024, 128, 5, 2), nn.ReLU(), nn.ConvTranspose2d(128, 64, 5, 2), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 6, 2), nn.ReLU(), nn.ConvTranspose2d(32, 3, 6, 2), nn.Sigmoid())

    def encode(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 frames [..., 64, 64, 3] -> (mu, logvar), each float [N, z_dim]."""
        return self._moments(self._input(frames))

    def _input(self, frames: torch.Tensor) -> torch.Tensor:
        return frames_to_tensor(frames).to(self.mu.weight.device)

    def _moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(x)
        return self.mu(hidden), self.logvar(hidden)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [N, z_dim] -> frames float [N, 3, 64, 64] in [0, 1]."""
        return self.decoder(self.expand(z)[:, :, None, None])

    @staticmethod
    def sample(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(mu.shape, device=mu.device, generator=generator)
        return mu + (0.5 * logvar).exp() * noise

    def loss(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """Mean over the batch of (summed squared error + max(KL, kl_tolerance * z_dim)); also returns
        the two terms (floats) as ``{"reconstruction", "kl"}``."""
        x = self._input(frames)
        mu, logvar = self._moments(x)
        recon = self.decode(self.sample(mu, logvar, generator))
        reconstruction = (recon - x).square().sum((1, 2, 3)).mean()
        kl = -0.5 * (1.0 + logvar - mu.square() - logvar.exp()).sum(-1)
        loss = reconstruction + torch.clamp(kl, min=self.kl_tolerance * self.z_dim).mean()
        return loss, {"reconstruction": float(reconstruction.detach()), "kl": float(kl.detach().mean())}


# --------------------------------------------------------------------------------------------------
# M: the mixture-density RNN


class MDNState(NamedTuple):
    """LSTM state, h and c, each float [N, hidden]."""

    h: torch.Tensor
    c: torch.Tensor


class Mixture(NamedTuple):
    """M's prediction for the next step, over leading shape [...] (e.g. [B, T] or [N]).

    log_weights, means, log_stds : float [..., K, z_dim] -- a K-component mixture per latent dimension
        (components on the second-last axis, so per-component work runs along contiguous z rows).
    done_logits : float [...] -- logit of "the episode ends at the next frame".
    rewards : float [...] or None -- the predicted reward (only with a reward head).
    """

    log_weights: torch.Tensor
    means: torch.Tensor
    log_stds: torch.Tensor
    done_logits: torch.Tensor
    rewards: torch.Tensor | None


LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def mixture_log_prob(mixture: Mixture, target: torch.Tensor) -> torch.Tensor:
    """log p(target) per latent dimension: target [..., z_dim] -> [..., z_dim], where
    p = sum_k w_k N(target; mean_k, std_k)."""
    x = target.unsqueeze(-2)
    log_normal = -0.5 * ((x - mixture.means) / mixture.log_stds.exp()).square() - mixture.log_stds - LOG_SQRT_2PI
    return torch.logsumexp(mixture.log_weights + log_normal, -2)


def temperature(tau: float) -> float:
    """``tau`` as a float if it is a temperature (finite, > 0), or ValueError naming ``tau``."""
    tau = real(tau, "tau", low=0.0)
    if tau == 0.0:
        raise ValueError("tau: expected a temperature > 0, got 0.0")
    return tau


def sample_mixture(mixture: Mixture, tau: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """A sample of z [..., z_dim] at temperature ``tau`` (> 0): each dimension picks its component
    from softmax(log_weights / tau) and draws from it with its std scaled by sqrt(tau), as the paper's
    code does. Lower tau concentrates on the likeliest component and narrows it (a more predictable,
    more exploitable dream); higher tau makes the dream more uncertain."""
    tau = temperature(tau)
    probs = torch.softmax(mixture.log_weights / tau, -2)
    k = categorical_index(probs.transpose(-1, -2), generator).unsqueeze(-2)  # each dimension's component
    mean = mixture.means.gather(-2, k).squeeze(-2)
    std = mixture.log_stds.gather(-2, k).squeeze(-2).exp() * math.sqrt(tau)
    return mean + std * torch.randn(mean.shape, device=mean.device, generator=generator)


class MDNRNN(nn.Module):
    """M: an LSTM over [z_t, a_t] whose hidden state h_t predicts a mixture over z_{t+1}, the done
    logit and (with ``reward_head``) the reward.

    Parameters
    ----------
    z_dim, action_dim : int
    hidden : int -- LSTM units; 256 (CarRacing) and 512 (Doom) in the paper.
    mixtures : int -- K, 5 in the paper.
    reward_head : bool
    """

    def __init__(self, z_dim: int, action_dim: int, hidden: int = 256, mixtures: int = 5, reward_head: bool = False):
        super().__init__()
        self.z_dim, self.action_dim = integer(z_dim, "z_dim"), integer(action_dim, "action_dim")
        self.hidden, self.mixtures = integer(hidden, "hidden"), integer(mixtures, "mixtures")
        self.reward_head = bool(reward_head)
        self.lstm = nn.LSTM(z_dim + action_dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 3 * z_dim * mixtures + 1 + int(self.reward_head))

    def initial_state(self, n: int, device: torch.device | str | None = None) -> MDNState:
        device = device or self.head.weight.device
        zeros = torch.zeros(n, self.hidden, device=device)
        return MDNState(zeros, zeros.clone())

    def mixture(self, h: torch.Tensor) -> Mixture:
        """Hidden states [..., hidden] -> the prediction made from them."""
        out = self.head(h)
        lead = out.shape[:-1]
        params = out[..., : 3 * self.z_dim * self.mixtures].reshape(*lead, 3, self.mixtures, self.z_dim)
        log_weights = torch.log_softmax(params[..., 0, :, :], -2)
        rest = out[..., 3 * self.z_dim * self.mixtures:]
        return Mixture(log_weights, params[..., 1, :, :], params[..., 2, :, :].clamp(-7.0, 5.0), rest[..., 0],
                       rest[..., 1] if self.reward_head else None)

    def _inputs(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if z.shape[-1] != self.z_dim or actions.shape[-1] != self.action_dim or z.shape[:-1] != actions.shape[:-1]:
            raise ValueError(f"actions: expected [..., {self.action_dim}] beside z [..., {self.z_dim}], got "
                             f"{tuple(actions.shape)} and {tuple(z.shape)}")
        return torch.cat([z, actions.to(z.dtype)], -1)

    def forward(self, z: torch.Tensor, actions: torch.Tensor,
                state: MDNState | None = None) -> tuple[Mixture, torch.Tensor, MDNState]:
        """Sequences z [B, T, z_dim] and actions [B, T, action_dim] -> (the predictions for steps
        1..T [B, T, ...], hidden states [B, T, hidden], the final state)."""
        state = state or self.initial_state(z.shape[0], z.device)
        hs, (h, c) = self.lstm(self._inputs(z, actions), (state.h[None], state.c[None]))
        return self.mixture(hs), hs, MDNState(h[0], c[0])

    def step(self, z: torch.Tensor, actions: torch.Tensor, state: MDNState) -> tuple[Mixture, MDNState]:
        """One step for N rows: z [N, z_dim], actions [N, action_dim] -> (prediction [N, ...], new state)."""
        x = self._inputs(z, actions)
        if x.shape[0] >= 256:
            _, (h, c) = self.lstm(x[:, None], (state.h[None], state.c[None]))
            state = MDNState(h[0], c[0])
        else:
            # The same cell on the LSTM's own weights: for few rows (one env, a thinned-out dream
            # batch) the fused sequence kernel costs ~7x more per call (it re-packs the weights).
            lstm = self.lstm
            state = MDNState(*torch.lstm_cell(x, (state.h, state.c), lstm.weight_ih_l0, lstm.weight_hh_l0,
                                              lstm.bias_ih_l0, lstm.bias_hh_l0))
        return self.mixture(state.h), state

    def loss(self, z: torch.Tensor, actions: torch.Tensor, next_z: torch.Tensor, dones: torch.Tensor,
             mask: torch.Tensor | None = None, rewards: torch.Tensor | None = None,
             done_weight: float = 10.0, state: MDNState | None = None) -> tuple[torch.Tensor, dict]:
        """Negative log-likelihood of next_z [B, T, z_dim] (mean per latent dimension) plus the done
        head's binary cross-entropy, with positive (done) steps weighted ``done_weight`` (10 in the
        paper's Doom code; deaths are rare), plus the reward MSE with a reward head. ``mask`` [B, T]
        (bool) leaves out padding; ``state`` is the LSTM state the sequences start from (zeros if None)."""
        mixture, _, _ = self(z, actions, state)
        mask = torch.ones(dones.shape, dtype=torch.bool, device=z.device) if mask is None else mask.bool()
        count = mask.sum().clamp(min=1)

        def masked_mean(x: torch.Tensor) -> torch.Tensor:
            # where, not a product with the mask, so that whatever sits in the padding stays out.
            return torch.where(mask, x, 0.0).sum() / count

        nll = -masked_mean(mixture_log_prob(mixture, next_z).mean(-1))
        target = torch.where(mask, dones.float(), 0.0)
        bce = nn.functional.binary_cross_entropy_with_logits(mixture.done_logits, target, reduction="none")
        done_loss = masked_mean(bce * (1.0 + (done_weight - 1.0) * target))
        loss = nll + done_loss
        parts = {"nll": float(nll.detach()), "done": float(done_loss.detach())}
        if self.reward_head:
            if rewards is None:
                raise ValueError("rewards: expected a tensor [B, T] for an MDNRNN with a reward head, got None")
            reward_loss = masked_mean((mixture.rewards - rewards.float()).square())
            loss = loss + reward_loss
            parts["reward"] = float(reward_loss.detach())
        return loss, parts


# --------------------------------------------------------------------------------------------------
# C: controllers as flat parameter vectors


class Controller:
    """C: a = tanh(W [z, h] + b) (``hidden`` = 0, the paper's) or a = tanh(W2 tanh(W1 [z, h] + b1) + b2).

    The weights are not held here: each call takes flat parameter vectors, one per candidate, so a
    CMA-ES population is evaluated as one batched product.

    Parameters
    ----------
    input_dim : int -- z_dim + hidden units of M (or z_dim alone for a V-only controller).
    output_dim : int -- action vector size (a Box's size, or the number of discrete actions).
    hidden : int -- 0 for the linear controller.
    """

    def __init__(self, input_dim: int, output_dim: int, hidden: int = 0):
        self.input_dim, self.output_dim = integer(input_dim, "input_dim"), integer(output_dim, "output_dim")
        self.hidden = integer(hidden, "hidden", minimum=0)
        if self.hidden:
            self.shapes = [(input_dim, hidden), (hidden,), (hidden, output_dim), (output_dim,)]
        else:
            self.shapes = [(input_dim, output_dim), (output_dim,)]
        self.num_params = sum(math.prod(s) for s in self.shapes)

    def __call__(self, params: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """params [P, num_params] (or [num_params]) and inputs [P, M, input_dim] (or [M, input_dim])
        -> outputs in [-1, 1], [P, M, output_dim] (or [M, output_dim])."""
        single = params.dim() == 1
        if single:
            params, inputs = params[None], inputs[None]
        if params.shape[-1] != self.num_params or inputs.shape[-1] != self.input_dim or inputs.dim() != 3 \
                or inputs.shape[0] != params.shape[0]:
            raise ValueError(f"params: expected [P, {self.num_params}] with inputs [P, M, {self.input_dim}], got "
                             f"{tuple(params.shape)} and {tuple(inputs.shape)}")
        pieces, start = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            pieces.append(params[:, start:start + size].reshape(params.shape[0], *shape))
            start += size
        x = inputs.to(params.dtype)
        for weight, bias in zip(pieces[0::2], pieces[1::2]):
            x = torch.tanh(torch.baddbmm(bias[:, None, :], x, weight))
        return x[0] if single else x


# --------------------------------------------------------------------------------------------------
# V, M and C acting in real envs


class Policy:
    """V + M + C acting for E envs at once, each env with its own controller parameters.

    ``act`` takes ``params`` float [E, n] (one row per env), or None for uniformly random actions,
    each held for 1..``repeat`` steps (a fresh count per action, drawn with the action space's
    generator). ``explore`` adds Gaussian noise (drawn from ``generator``) to C's action scores.

    Parameters
    ----------
    vae, mdnrnn, controller : V, M and C (None for a random policy only).
    codec : ActionCodec -- the env's actions as vectors.
    uses_hidden : bool -- C reads [z, h] (True) or z alone.
    explore : float -- std of the noise on C's scores.
    generator : torch.Generator or None -- the noise's generator.
    repeat : int -- the longest hold of a random action.
    """

    def __init__(self, vae: ConvVAE | None, mdnrnn: MDNRNN | None, controller: Controller | None,
                 codec: ActionCodec, uses_hidden: bool = True, explore: float = 0.0,
                 generator: torch.Generator | None = None, repeat: int = 1):
        self.vae, self.mdnrnn, self.controller, self.codec = vae, mdnrnn, controller, codec
        self.uses_hidden, self.explore, self.generator = uses_hidden, explore, generator
        self.repeat = integer(repeat, "repeat")

    def _random(self, count: int, state, first: np.ndarray, action_space: gym.Space):
        """Random actions; ``state`` is (held actions, steps each has left), None at the start."""
        fresh = np.stack([action_space.sample() for _ in range(count)])
        if self.repeat == 1:
            return fresh, self.codec.to_vector(fresh), state
        held, left = state if state is not None else (fresh, np.zeros(count, np.int64))
        new = (left <= 0) | first
        held = np.where(new.reshape(-1, *[1] * (fresh.ndim - 1)), fresh, held)
        left = np.where(new, action_space.np_random.integers(1, self.repeat + 1, count), left) - 1
        return held, self.codec.to_vector(held), (held, left)

    @torch.no_grad()
    def act(self, frames: np.ndarray, params: torch.Tensor | None, state, first: np.ndarray,
            action_space: gym.Space):
        """frames uint8 [E, 64, 64, 3], ``first`` bool [E] (an episode starts: M's state is reset)
        -> (env actions [E, ...], action vectors [E, A], the new state). The state is M's
        (:class:`MDNState`, ``mdnrnn.initial_state(E)`` at the start) when C acts, and the held
        random actions (None at the start) otherwise."""
        if params is None:
            return self._random(len(frames), state, first, action_space)
        z, _ = self.vae.encode(frames)
        reset = torch.as_tensor(first, device=z.device)[:, None]
        h = torch.where(reset, 0.0, state.h)
        c = torch.where(reset, 0.0, state.c)
        inputs = torch.cat([z, h], -1) if self.uses_hidden else z
        scores = self.controller(params.to(z.device), inputs[:, None])[:, 0]
        if self.explore > 0:
            scores = scores + self.explore * torch.randn(scores.shape, generator=self.generator,
                                                         device=self.generator.device).to(scores.device)
        vectors = self.codec.model_input(scores)
        _, state = self.mdnrnn.step(z, vectors, MDNState(h, c))
        return self.codec.to_env(scores), vectors.cpu().numpy(), state
