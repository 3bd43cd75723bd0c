"""Dreamer (Hafner et al. 2019-2023; the world model and losses of DreamerV3, "Mastering Diverse
Domains through World Models"): a world model learned from replayed sequences, and an actor and a
critic learned only from trajectories the model imagines from every replayed state.

One file, top to bottom: the actor and critic, the update (world model, imagination, lambda-
returns, critic, actor), acting in vector envs, evaluation and the training loop. The parts come
from :mod:`pymbrl.models.rssm` (world model), :mod:`pymbrl.rollout` (imagination, returns) and
:mod:`pymbrl.replay` (sequence replay).

Replay convention: one row per observation, as the world model reads it. ``obs`` is o_t,
``action`` the action that led to it, ``reward`` the reward that came with it, ``first`` marks an
episode's reset observation (action and reward zero), ``terminated`` an observation after which
the episode ends with no future value, ``truncated`` one where it was cut off by a time limit.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from pymbrl._checks import integer, real
from pymbrl.agents.checkpoint import start_run
from pymbrl.agents.sac import seeded
from pymbrl.envs.frames import ResizeFrames
from pymbrl.envs.spaces import ActionCodec
from pymbrl.models.rssm import (IMAGE_SHAPE, RSSMConfig, RSSMState, TwoHot, WorldModel, _mlp, categorical_index,
                                unimix_logits)
from pymbrl.replay import SequenceReplayBuffer
from pymbrl.rollout import ReturnNormalizer, imagine, lambda_returns
from pymbrl.rollout.imagination import CONTINUES


@dataclasses.dataclass(frozen=True)
class DreamerConfig:
    """Hyper-parameters; defaults are DreamerV3's (Hafner et al. 2023, table of hyper-parameters)
    except where noted.

    model : RSSMConfig -- world-model sizes (DreamerV3 S by default).
    batch_size, batch_length : int -- replayed sequences per update and their length, 16 x 64.
    train_ratio : int -- replayed steps per env step, 512; an update replays
        batch_size * batch_length steps, so 512 means one update every 2 env steps.
    num_envs : int -- vector envs collecting data, 1 (DreamerV3 uses more on some domains).
    learning_starts : int -- env steps of uniform random actions before the first update.
    horizon : int -- imagination horizon, 15.
    imagine_continue : str -- "mode" (DreamerV3's code: an imagined episode goes on while the
        continue head gives it more than 1/2) or "mean" (its probability discounts the returns).
    discount, lam : float -- 0.997 (1 - 1/333) and 0.95.
    model_lr, actor_lr, critic_lr : float -- 1e-4, 3e-5, 3e-5 (Adam).
    model_eps, actor_critic_eps : float -- Adam epsilons, 1e-8 and 1e-5.
    model_clip, actor_critic_clip : float -- gradient norm clipping, 1000 and 100.
    entropy : float -- actor entropy regulariser eta, 3e-4.
    actor_gradient : str -- "reinforce" (DreamerV3, discrete actions), "dynamics" (backpropagation
        of returns through the imagined dynamics, the original Dreamer's continuous-action gradient)
        or "auto" (reinforce for discrete, dynamics for continuous action spaces).
    slow_critic_mix, slow_critic_reg : float -- EMA step of the slow critic per update (0.02) and
        the weight of the critic's regulariser towards it (1).
    replay_critic : float -- weight of the critic's loss on the replayed sequences (real rewards and
        terminations, bootstrapped with imagined returns), 0.3 as in DreamerV3's code ("repval");
        0 trains the critic on imagination only, as the first version of the paper describes.
    return_decay : float -- EMA decay of the return percentile range, 0.99.
    min_std, max_std : float -- bounds of the continuous actor's standard deviation, 0.1 and 1.
    buffer_size : int -- replay capacity in rows, 1e6.
    device : str -- where the networks train ("cpu" or "cuda").
    compile : bool -- compile every network with ``torch.compile`` (see :func:`compile_networks`).
    """

    model: RSSMConfig = dataclasses.field(default_factory=RSSMConfig)
    batch_size: int = 16
    batch_length: int = 64
    train_ratio: int = 512
    num_envs: int = 1
    learning_starts: int = 1024
    horizon: int = 15
    imagine_continue: str = "mode"
    discount: float = 0.997
    lam: float = 0.95
    model_lr: float = 1e-4
    actor_lr: float = 3e-5
    critic_lr: float = 3e-5
    model_eps: float = 1e-8
    actor_critic_eps: float = 1e-5
    model_clip: float = 1000.0
    actor_critic_clip: float = 100.0
    entropy: float = 3e-4
    actor_gradient: str = "auto"
    slow_critic_mix: float = 0.02
    slow_critic_reg: float = 1.0
    replay_critic: float = 0.3
    return_decay: float = 0.99
    min_std: float = 0.1
    max_std: float = 1.0
    buffer_size: int = 1_000_000
    device: str = "cpu"
    compile: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.model, RSSMConfig):
            raise TypeError(f"model: expected an RSSMConfig, got {type(self.model).__name__}")
        for name in ("batch_size", "batch_length", "train_ratio", "num_envs", "horizon", "buffer_size"):
            integer(getattr(self, name), name)
        integer(self.learning_starts, "learning_starts", minimum=0)
        for name in ("discount", "lam"):
            real(getattr(self, name), name, low=0.0, high=1.0)
        for name in ("model_lr", "actor_lr", "critic_lr", "model_eps", "actor_critic_eps", "model_clip",
                     "actor_critic_clip", "entropy", "slow_critic_reg", "replay_critic", "min_std", "max_std"):
            real(getattr(self, name), name, low=0.0)
        real(self.slow_critic_mix, "slow_critic_mix", low=0.0, high=1.0)
        real(self.return_decay, "return_decay", low=0.0, high=1.0)
        if self.imagine_continue not in CONTINUES:
            raise ValueError(f"imagine_continue: expected one of {CONTINUES}, got {self.imagine_continue!r}")
        if self.actor_gradient not in ("auto", "reinforce", "dynamics"):
            raise ValueError(f"actor_gradient: expected 'auto', 'reinforce' or 'dynamics', got {self.actor_gradient!r}")
        if not self.min_std <= self.max_std:
            raise ValueError(f"max_std: expected at least min_std ({self.min_std}), got {self.max_std}")

    @classmethod
    def for_env(cls, env_id: str, **overrides: Any) -> DreamerConfig:
        """Settings that learn the proof tasks (CartPole-v1, Pendulum-v1) on a 2-core CPU within an
        hour; other envs get the paper's defaults. ``overrides`` replace any field.

        Departures from DreamerV3, all for CPU time: a world model of GRU 128, 8 x 8 latents and one
        hidden layer of 128 (the tasks are low-dimensional; S is 512, 32 x 32, 2 x 512); for Pendulum,
        sequences of 32 steps instead of 64 (half the cost of an update; on CartPole, with 32 every
        run fell back from about 450 to under 250 at 25k steps, with 64 later);
        train ratio 64 (CartPole, with 4 envs) or 128 (Pendulum) instead of 512; learning rates
        3e-4 (model) and 1e-4 (actor, critic) instead of 1e-4 and 3e-5, which suit runs of millions
        of steps with 4-8x more updates per env step.
        Pendulum's preset trains the critic on imagination only (``replay_critic`` 0) and discounts
        imagined returns by the continue probabilities (``imagine_continue`` "mean"): the settings
        its recorded result was reached with. CartPole keeps DreamerV3's discount 0.997 and mode of
        the continue head: with 0.99 or the probabilities, the policy drifted to the track's edge
        and fell back from 500 to 240-322 (bench/RESULTS.md)."""
        cpu = dict(model=RSSMConfig(deter=128, groups=8, classes=8, hidden=128, layers=1),
                   model_lr=3e-4, actor_lr=1e-4, critic_lr=1e-4)
        presets = {
            "CartPole-v1": dict(cpu, train_ratio=64, num_envs=4),
            "Pendulum-v1": dict(cpu, train_ratio=128, batch_length=32, replay_critic=0.0, imagine_continue="mean"),
        }
        return cls(**{**presets.get(env_id, {}), **overrides})


# --------------------------------------------------------------------------------------------------
# Actor and critic


class Actor(nn.Module):
    """The policy on model features: a categorical with 1% unimix over one-hot actions (discrete),
    or a Gaussian with tanh mean and bounded standard deviation in [-1, 1] (continuous; the env's
    box is mapped onto it).

    ``sample``/``mode`` take features [N, F] and return actions [N, A] (float; one-hot when
    discrete). Continuous samples are reparameterised and clipped to [-1, 1] with a straight-
    through gradient, so returns can be backpropagated into the actor through the dynamics.
    """

    def __init__(self, features: int, action_dim: int, discrete: bool, config: DreamerConfig):
        super().__init__()
        c = config.model
        self.discrete, self.action_dim = discrete, action_dim
        self.min_std, self.max_std = config.min_std, config.max_std
        self.net = nn.Sequential(_mlp(features, c.hidden, c.layers),
                                 nn.Linear(c.hidden, action_dim if discrete else 2 * action_dim))

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
    """Distribution of returns over symexp bins (255, two-hot targets): features [..., F] ->
    logits [..., 255]; ``value`` decodes their mean. Zero-initialised output, so values start at 0."""

    def __init__(self, features: int, config: RSSMConfig):
        super().__init__()
        self.net = nn.Sequential(_mlp(features, config.hidden, config.layers), nn.Linear(config.hidden,
                                                                                         config.reward_bins))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.two_hot = TwoHot(config.reward_bins)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)

    def value(self, features: torch.Tensor) -> torch.Tensor:
        return self.two_hot.mean(self.net(features))


# --------------------------------------------------------------------------------------------------
# The agent


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; training stops and the last checkpoint is kept."""


def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, parameters: list[nn.Parameter], clip: float) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = nn.utils.clip_grad_norm_(parameters, clip)
    optimizer.step()
    return float(norm)


class Dreamer:
    """World model, actor, critic (with its slow copy), their optimisers and the return scale.

    Parameters
    ----------
    obs_shape : tuple -- (n,) for float vectors, (64, 64, 3) for uint8 images.
    action_dim : int -- number of discrete actions, or the size of the action box.
    discrete : bool
    config : DreamerConfig
    seed : int -- seeds the latent sampling and the agent's own generator (actions, imagination).
    """

    def __init__(self, obs_shape: tuple[int, ...], action_dim: int, discrete: bool,
                 config: DreamerConfig | None = None, *, seed: int = 0):
        self.config = c = config or DreamerConfig()
        self.discrete = discrete
        self.device = torch.device(c.device)
        with seeded(seed):
            self.world_model = WorldModel(obs_shape, action_dim, c.model, seed=seed).to(self.device)
            features = c.model.features
            self.actor = Actor(features, action_dim, discrete, c).to(self.device)
            self.critic = Critic(features, c.model).to(self.device)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.model_opt = torch.optim.Adam(self.world_model.parameters(), c.model_lr, eps=c.model_eps)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), c.actor_lr, eps=c.actor_critic_eps)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), c.critic_lr, eps=c.actor_critic_eps)
        self.returns = ReturnNormalizer(c.return_decay)
        if c.compile:
            compile_networks(self)
        gradient = c.actor_gradient
        self.backprop = gradient == "dynamics" or (gradient == "auto" and not discrete)
        if self.backprop and discrete:
            raise ValueError("actor_gradient: 'dynamics' needs continuous actions; use 'reinforce' or 'auto' "
                             "for a Discrete action space")

    # -- learning ------------------------------------------------------------------------------
    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One update from a replayed batch (fields [B, T, ...] in the module's row convention):
        the world model on the sequences, then the critic and the actor on trajectories imagined
        for ``horizon`` steps from all B x T posterior states. Returns the losses and scales.

        Raises NonFiniteLossError if a loss is NaN or infinite, before the step of that loss.
        """
        c = self.config
        first = batch["first"].bool()
        terminated = batch["terminated"].float()
        model_loss, parts = self.world_model.loss(batch["obs"], batch["action"], batch["reward"], first, terminated)
        self._check_finite("world model", model_loss)
        model_norm = _step(self.model_opt, model_loss, list(self.world_model.parameters()), c.model_clip)

        # Imagination: the actor's gradient may pass through the model, whose weights stay fixed.
        self.world_model.requires_grad_(False)
        try:
            with torch.set_grad_enabled(self.backprop):
                traj = imagine(self.world_model, parts["posterior"], lambda f: self.actor.sample(f, self.generator),
                               c.horizon, continues=c.imagine_continue)
                values = self.critic.value(traj.features)
                returns = lambda_returns(traj.rewards, traj.continues, values, discount=c.discount, lam=c.lam)
        finally:
            self.world_model.requires_grad_(True)
        # Weight of each imagined state: the probability the episode is still running there
        # (a terminal start state has no future to learn from).
        with torch.no_grad():
            reach = torch.cat([(1.0 - terminated).reshape(1, -1), c.discount * traj.continues[:-1]], 0)
            weight = torch.cumprod(reach, 0)
        features = traj.features[:-1].detach()
        scale = self.returns.update(returns).to(self.device)
        dist = self.actor.distribution(features)
        entropy = dist.entropy()
        if self.backprop:
            objective = returns / scale
        else:
            advantage = ((returns - values[:-1]) / scale).detach()
            objective = dist.log_prob(traj.actions.detach()) * advantage
        actor_loss = -(weight * (objective + c.entropy * entropy)).mean()
        self._check_finite("actor", actor_loss)
        actor_norm = _step(self.actor_opt, actor_loss, list(self.actor.parameters()), c.actor_critic_clip)

        logits = self.critic(features)
        with torch.no_grad():
            slow = self.slow_critic.value(features)
        critic_loss = self.critic.two_hot.loss(logits, returns.detach())
        critic_loss = critic_loss + c.slow_critic_reg * self.critic.two_hot.loss(logits, slow)
        critic_loss = (weight * critic_loss).mean()
        if c.replay_critic > 0:
            critic_loss = critic_loss + c.replay_critic * self._replay_critic_loss(batch, logits[0], returns[0].detach())
        self._check_finite("critic", critic_loss)
        critic_norm = _step(self.critic_opt, critic_loss, list(self.critic.parameters()), c.actor_critic_clip)
        with torch.no_grad():
            for p, target in zip(self.critic.parameters(), self.slow_critic.parameters()):
                target.lerp_(p, c.slow_critic_mix)
        return {"model_loss": float(model_loss.detach()), "decoder": float(parts["decoder"]),
                "reward_loss": float(parts["reward"]), "kl": float(parts["kl_dynamics"]),
                "actor_loss": float(actor_loss.detach()), "critic_loss": float(critic_loss.detach()),
                "entropy": float(entropy.detach().mean()), "return_scale": float(scale),
                "imagined_return": float(returns.detach().mean()), "model_grad_norm": model_norm,
                "actor_grad_norm": actor_norm, "critic_grad_norm": critic_norm}

    def _replay_critic_loss(self, batch: dict[str, torch.Tensor], logits: torch.Tensor,
                            imagined: torch.Tensor) -> torch.Tensor:
        """The critic on the replayed sequences themselves: lambda-returns of their real rewards and
        terminations, bootstrapped at every step with the return imagined from that posterior
        (``imagined`` [B * T]). ``logits`` [B * T, bins] are the critic's on the posteriors (the
        imagination's first states). Terminations far beyond the imagination horizon (a cart
        drifting to the edge of the track) reach the critic only this way."""
        c = self.config
        first, terminated = batch["first"].bool(), batch["terminated"].bool()
        b, t = first.shape
        boot = imagined.reshape(b, t).T  # [T, B]
        rewards = batch["reward"].float().T[1:]
        continues = 1.0 - terminated.float().T[1:]
        # Where the next row starts another episode, the step to it is not a transition: the return
        # there is the imagined one alone.
        cut = first.T[1:]
        rewards = torch.where(cut, boot[:-1], rewards)
        continues = torch.where(cut, 0.0, continues)
        target = lambda_returns(rewards, continues, boot, discount=c.discount, lam=c.lam)  # [T - 1, B]
        loss = self.critic.two_hot.loss(logits.reshape(b, t, -1).transpose(0, 1)[:-1], target)
        # A terminal observation has no future to value.
        keep = (~terminated.T[:-1]).float()
        return (loss * keep).sum() / keep.sum().clamp(min=1.0)

    @staticmethod
    def _check_finite(name: str, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"the {name} loss is {float(loss.detach())}; training stopped before applying it "
                                     f"(lower the learning rates, or check the observations and rewards)")

    # -- acting --------------------------------------------------------------------------------
    @torch.no_grad()
    def observe(self, state: RSSMState | None, prev_action: torch.Tensor, obs: torch.Tensor,
                first: torch.Tensor) -> RSSMState:
        """Filters one step of E envs: the posterior after ``obs`` [E, *obs_shape], reached by
        ``prev_action`` [E, A] from ``state`` (restarted where ``first`` [E] bool)."""
        rssm = self.world_model.rssm
        state = rssm.restart(state, first)
        post, _ = rssm.obs_step(state, prev_action * (~first)[:, None].float(), self.world_model.encoder(obs))
        return post

    @torch.no_grad()
    def act(self, state: RSSMState, deterministic: bool = False) -> torch.Tensor:
        """Actions [E, A] for posterior states [E] (the actor's mode when ``deterministic``)."""
        features = self.world_model.rssm.features(state)
        return self.actor.mode(features) if deterministic else self.actor.sample(features, self.generator)

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"world_model": self.world_model.state_dict(), "actor": self.actor.state_dict(),
                "critic": self.critic.state_dict(), "slow_critic": self.slow_critic.state_dict(),
                "model_opt": self.model_opt.state_dict(), "actor_opt": self.actor_opt.state_dict(),
                "critic_opt": self.critic_opt.state_dict(), "returns": self.returns.state_dict(),
                "generator": self.generator.get_state(),
                "latent_generators": {str(d): g.get_state() for d, g in self.world_model.rssm._generators.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("world_model", "actor", "critic", "slow_critic", "model_opt", "actor_opt", "critic_opt",
                     "returns"):
            getattr(self, name).load_state_dict(state[name])
        self.generator.set_state(state["generator"])
        for device, s in state["latent_generators"].items():
            self.world_model.rssm._generator(torch.device(device)).set_state(s)


def compile_networks(agent: Dreamer) -> None:
    """Compiles, in place, each network the update calls once per step (encoder, the RSSM's input
    layer, GRU cell and latent heads, decoder, reward and continue heads, actor, critics) with
    ``torch.compile``. The Python loops over time and horizon stay eager, so each compiled graph is
    small and shape-stable; the parameters and their state-dict names are unchanged."""
    wm = agent.world_model
    for module in (wm.encoder, wm.decoder, wm.reward_head, wm.continue_head, wm.rssm.img_in, wm.rssm.gru,
                   wm.rssm.prior_net, wm.rssm.post_net, agent.actor.net, agent.critic.net, agent.slow_critic.net):
        module.compile()


# --------------------------------------------------------------------------------------------------
# Environments


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make(env_id)``; Atari ids (``ALE/...``, from the ale-py package) get their frames
    resized to 64x64x3."""
    if env_id.startswith("ALE/"):
        try:
            import ale_py
        except ImportError:
            raise ValueError(f"env_id: {env_id} needs the ale-py package (pip install ale-py)") from None
        gym.register_envs(ale_py)
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.Error as error:
        raise ValueError(f"env_id: {error}") from None
    if env_id.startswith("ALE/"):
        env = ResizeFrames(env)
    return env


def env_spaces(env: gym.Env, env_id: str) -> tuple[tuple[int, ...], int, bool]:
    """(obs_shape, action_dim, discrete) of an env Dreamer can learn, or ValueError naming what
    is not supported: observations must be 1-D vectors or 64x64x3 uint8 images, actions Discrete or
    a 1-D Box."""
    space = env.observation_space
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"env_id: Dreamer needs Box observations, {env_id} has {space}")
    if len(space.shape) == 3 or len(space.shape) == 2:
        if tuple(space.shape) != IMAGE_SHAPE or space.dtype != np.uint8:
            raise ValueError(f"env_id: image observations must be uint8 of shape {IMAGE_SHAPE} (channels last), "
                             f"{env_id} gives {space.dtype} {space.shape}; resize them, e.g. with "
                             f"gymnasium.wrappers.ResizeObservation(env, (64, 64))")
    elif len(space.shape) != 1:
        raise ValueError(f"env_id: Dreamer needs vector or 64x64x3 image observations, {env_id} has shape "
                         f"{space.shape}")
    try:
        codec = ActionCodec(env.action_space)
    except ValueError:
        raise ValueError(f"env_id: Dreamer supports Discrete or bounded 1-D Box actions, {env_id} has "
                         f"{env.action_space}") from None
    return tuple(space.shape), codec.dim, codec.discrete


def _obs_tensor(obs: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(obs, device=device)
    return t if t.dtype == torch.uint8 else t.float()


def evaluate(agent: Dreamer, env_id: str, episodes: int, seed: int) -> float:
    """Mean return of the actor's mode over ``episodes`` episodes, run side by side in a vector env
    (each env's first episode counts)."""
    envs = gym.vector.SyncVectorEnv([lambda: make_env(env_id) for _ in range(episodes)],
                                    autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    to_env = ActionCodec(envs.single_action_space)
    obs, _ = envs.reset(seed=seed)
    first = torch.ones(episodes, dtype=torch.bool, device=agent.device)
    action = torch.zeros(episodes, agent.world_model.rssm.action_dim, device=agent.device)
    totals, done = np.zeros(episodes), np.zeros(episodes, dtype=bool)
    state = None
    while not done.all():
        state = agent.observe(state, action, _obs_tensor(obs, agent.device), first)
        action = agent.act(state, deterministic=True)
        obs, reward, terminated, truncated, _ = envs.step(to_env.to_env(action))
        totals += np.where(done, 0.0, reward)
        done |= terminated | truncated
        first = torch.zeros_like(first)  # only each env's first episode counts, so no restart is needed
    envs.close()
    return float(totals.mean())


# --------------------------------------------------------------------------------------------------
# Training


def train(env_id: str = "CartPole-v1", steps: int = 50_000, *, seed: int | None = 0,
          config: DreamerConfig | None = None, eval_every: int = 5000, eval_episodes: int = 10,
          log: Callable[[dict], Any] | None = None, run_dir: str | os.PathLike | None = None,
          checkpoint_every: int = 5000, progress: Callable[[int], Any] | None = None) -> tuple[Dreamer, list[dict]]:
    """Trains Dreamer for ``steps`` env steps (summed over ``config.num_envs`` vector envs).

    The first ``learning_starts`` steps take uniform random actions; from then on the actor acts
    and, after each vector step, as many updates run as keep replayed steps at ``train_ratio`` times
    the env steps. Every ``eval_every`` steps the actor's mode plays ``eval_episodes`` episodes.

    Returns the agent and the evaluation history: dicts with ``step``, ``return``, ``train_return``
    (mean return of the training episodes that ended since the previous record; NaN if none),
    ``updates``, ``seconds`` and the last update's losses. ``log`` gets each record, ``progress`` the env steps.

    With ``run_dir``, the run keeps ``log.csv`` and a checkpoint there every ``checkpoint_every``
    steps (weights, optimisers, return scale, replay, generators). Called again, it resumes from
    the checkpoint; the envs then start fresh episodes (their physics state is not saved), so a
    resumed run is a faithful continuation but not bit-identical to an uninterrupted one. If a loss
    becomes NaN or infinite, training stops with :class:`NonFiniteLossError` and the last
    checkpoint is left as it was.
    """
    steps, eval_every = integer(steps, "steps"), integer(eval_every, "eval_every")
    eval_episodes = integer(eval_episodes, "eval_episodes")
    c = config or DreamerConfig.for_env(env_id)
    probe = make_env(env_id)
    obs_shape, action_dim, discrete = env_spaces(probe, env_id)
    probe.close()
    run = start_run(run_dir, steps, {"algorithm": "Dreamer", "env_id": env_id, "config": c}, seed, checkpoint_every)
    agent = Dreamer(obs_shape, action_dim, discrete, c, seed=run.seed)
    image = len(obs_shape) == 3
    spec = {"obs": (obs_shape, torch.uint8 if image else torch.float32), "action": ((action_dim,), torch.float32),
            "reward": ((), torch.float32), "first": ((), torch.bool), "terminated": ((), torch.bool),
            "truncated": ((), torch.bool)}
    rows = steps + steps // 2  # reset rows come on top of the env steps
    capacity = math.ceil(min(c.buffer_size, rows) / c.num_envs + 1) * c.num_envs
    buffer = SequenceReplayBuffer(capacity, spec, num_envs=c.num_envs, seed=run.seed)
    envs = gym.vector.SyncVectorEnv([lambda: make_env(env_id) for _ in range(c.num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    to_env = ActionCodec(envs.single_action_space)
    envs.action_space.seed(run.seed)
    losses: dict[str, float] = {}
    updates = 0
    if run.state is not None:
        with run.restoring(replay=buffer):
            agent.load_state_dict(run.state["agent"])
            buffer, losses, updates = run.buffers["replay"], dict(run.state["losses"]), run.state["updates"]
            envs.action_space.np_random.bit_generator.state = run.state["action_space"]
    step = run.step
    # Fresh episodes (also on a resume): their rows are marked first, so the sequences the buffer
    # returns restart the model state there.
    obs, _ = envs.reset(seed=run.seed + step)
    first = np.ones(c.num_envs, dtype=bool)
    reward = np.zeros(c.num_envs, dtype=np.float32)
    terminated = truncated = np.zeros(c.num_envs, dtype=bool)
    action = np.zeros((c.num_envs, action_dim), dtype=np.float32)
    state = None
    per_update = c.batch_size * c.batch_length
    running = np.zeros(c.num_envs)  # returns of the episodes under way
    finished: list[float] = []  # returns of the episodes ended since the last evaluation
    while step < steps:
        rows = dict(obs=obs, action=action * ~first[:, None], reward=reward * ~first, first=first,
                    terminated=terminated, truncated=truncated, next_obs=obs)
        # One row per env: add() takes [num_envs, ...] only when there are several envs.
        if c.num_envs > 1:
            buffer.add(**rows)
        else:
            buffer.extend(**rows)
        if step < c.learning_starts:
            env_action = envs.action_space.sample()
            action = to_env.to_vector(env_action)
        else:
            state = agent.observe(state, torch.as_tensor(action, device=agent.device),
                                  _obs_tensor(obs, agent.device), torch.as_tensor(first, device=agent.device))
            agent_action = agent.act(state)
            env_action, action = to_env.to_env(agent_action), agent_action.cpu().numpy()
        # NEXT_STEP autoreset: where an episode has just ended, this call returns the reset
        # observation (reward 0) and ignores the action; it is not an env step.
        ended = terminated | truncated
        obs, reward, terminated, truncated, _ = envs.step(env_action)
        reward, first = reward.astype(np.float32), ended
        running = np.where(ended, 0.0, running + reward)
        finished += running[terminated | truncated].tolist()
        before, step = step, step + int((~ended).sum())
        if step > c.learning_starts and len(buffer) >= (c.batch_length + 1) * c.num_envs:
            while updates * per_update < (step - c.learning_starts) * c.train_ratio:
                losses = agent.update(buffer.sample(c.batch_size, c.batch_length, device=agent.device))
                updates += 1
        if step // eval_every > before // eval_every or step >= steps:
            # The training episodes' returns (sampled actions, random ones before learning_starts)
            # beside the evaluation's (the actor's mode).
            train_return = float(np.mean(finished)) if finished else float("nan")
            run.evaluated({"step": step, "return": evaluate(agent, env_id, eval_episodes, seed=10_000 + step),
                           "train_return": train_return, "updates": updates, **losses}, log)
            finished = []
        if run.directory is not None and (step >= steps or step // run.every > run.step // run.every):
            # The last vector step may pass ``steps`` (all envs step together); the checkpoint
            # records the run as done, which is what a run of ``steps`` steps may hold.
            run.save(min(step, steps), {"agent": agent.state_dict(), "losses": losses, "updates": updates,
                            "action_space": envs.action_space.np_random.bit_generator.state}, {"replay": buffer})
        if progress is not None:
            progress(min(step, steps))
    envs.close()
    return agent, run.history
