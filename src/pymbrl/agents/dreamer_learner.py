"""Dreamer's learner (see :mod:`pymbrl.agents.dreamer` for the config and the training loop): the
world model, actor and critic with their optimisers, the update (world model, imagination from
every replayed state, lambda-returns, critic, actor), and :class:`Policy`, a trained learner acting
in an env step by step.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pymbrl._checks import check_device_available
from pymbrl._extras import optional_imports
from pymbrl.envs.spaces import ActionCodec
from pymbrl.models.dreamer import Actor, Critic, clipped_step, compile_networks
from pymbrl.models.rssm import RSSMState, WorldModel
from pymbrl.rollout import ReturnNormalizer, imagine, lambda_returns
from pymbrl.training import as_batch, generator, seeded

with optional_imports():
    import gymnasium as gym

if TYPE_CHECKING:
    from pymbrl.agents.dreamer import DreamerConfig


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; training stops and the last checkpoint is kept."""


class Dreamer:
    """World model, actor, critic (with its slow copy), their optimisers and the return scale, on
    ``config.device``; ``config.seed`` draws the weights and seeds the latent sampling and the
    agent's own generator (actions, imagination).

    Parameters
    ----------
    obs_shape : tuple -- (n,) for float vectors, (64, 64, 3) for uint8 images.
    action_dim : int -- number of discrete actions, or the size of the action box.
    discrete : bool
    config : DreamerConfig
    """

    def __init__(self, obs_shape: tuple[int, ...], action_dim: int, discrete: bool,
                 config: DreamerConfig):
        self.config = c = config
        self.discrete, self.obs_shape = discrete, tuple(obs_shape)
        check_device_available(c.device)
        self.device = torch.device(c.device)
        with seeded(c.seed):
            self.world_model = WorldModel(obs_shape, action_dim, c.model, seed=c.seed).to(self.device)
            features = c.model.features
            self.actor = Actor(features, action_dim, discrete, c.model, c.min_std, c.max_std).to(self.device)
            self.critic = Critic(features, c.model).to(self.device)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.generator = generator(c.seed, self.device)
        self.model_opt = torch.optim.Adam(self.world_model.parameters(), c.model_lr, eps=c.model_eps)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), c.actor_lr, eps=c.actor_critic_eps)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), c.critic_lr, eps=c.actor_critic_eps)
        self.returns = ReturnNormalizer(c.return_decay)
        if c.compile:
            compile_networks(self.world_model, self.actor, self.critic, self.slow_critic)
        gradient = c.actor_gradient
        self.backprop = gradient == "dynamics" or (gradient == "auto" and not discrete)
        if self.backprop and discrete:
            raise ValueError("actor_gradient: 'dynamics' needs continuous actions; use 'reinforce' or 'auto' "
                             "for a Discrete action space")

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
        check_finite("world model", model_loss)
        model_norm = clipped_step(self.model_opt, model_loss, list(self.world_model.parameters()), c.model_clip)

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
        check_finite("actor", actor_loss)
        actor_norm = clipped_step(self.actor_opt, actor_loss, list(self.actor.parameters()), c.actor_critic_clip)

        logits = self.critic(features)
        with torch.no_grad():
            slow = self.slow_critic.value(features)
        critic_loss = self.critic.two_hot.loss(logits, returns.detach())
        critic_loss = critic_loss + c.slow_critic_reg * self.critic.two_hot.loss(logits, slow)
        critic_loss = (weight * critic_loss).mean()
        if c.replay_critic > 0:
            critic_loss = critic_loss + c.replay_critic * self.replay_critic_loss(batch, logits[0], returns[0].detach())
        check_finite("critic", critic_loss)
        critic_norm = clipped_step(self.critic_opt, critic_loss, list(self.critic.parameters()), c.actor_critic_clip)
        with torch.no_grad():
            for p, target in zip(self.critic.parameters(), self.slow_critic.parameters()):
                target.lerp_(p, c.slow_critic_mix)
        return {"model_loss": float(model_loss.detach()), "decoder": float(parts["decoder"]),
                "reward_loss": float(parts["reward"]), "kl": float(parts["kl_dynamics"]),
                "actor_loss": float(actor_loss.detach()), "critic_loss": float(critic_loss.detach()),
                "entropy": float(entropy.detach().mean()), "return_scale": float(scale),
                "imagined_return": float(returns.detach().mean()), "model_grad_norm": model_norm,
                "actor_grad_norm": actor_norm, "critic_grad_norm": critic_norm}

    def replay_critic_loss(self, batch: dict[str, torch.Tensor], logits: torch.Tensor,
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

    def state_dict(self) -> dict[str, Any]:
        return {"world_model": self.world_model.state_dict(), "actor": self.actor.state_dict(),
                "critic": self.critic.state_dict(), "slow_critic": self.slow_critic.state_dict(),
                "model_opt": self.model_opt.state_dict(), "actor_opt": self.actor_opt.state_dict(),
                "critic_opt": self.critic_opt.state_dict(), "returns": self.returns.state_dict(),
                "generator": self.generator.get_state(), "latent_generators": self.world_model.rssm.generator_states(),
                "device": self.device.type}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("world_model", "actor", "critic", "slow_critic", "model_opt", "actor_opt", "critic_opt",
                     "returns"):
            getattr(self, name).load_state_dict(state[name])
        # A generator's state is of its kind of device: an agent loaded (or a run continued) on
        # another kind keeps its freshly seeded generators.
        if state["device"] == self.device.type:
            self.generator.set_state(state["generator"])
            self.world_model.rssm.load_generator_states(state["latent_generators"])


def check_finite(name: str, loss: torch.Tensor) -> None:
    """Raises NonFiniteLossError naming the loss ``name`` if ``loss`` is NaN or infinite."""
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"the {name} loss is {float(loss.detach())}; training stopped before applying it "
                                 f"(lower the learning rates, or check the observations and rewards)")


def obs_tensor(obs: np.ndarray, device: torch.device) -> torch.Tensor:
    """Observations as the world model reads them: uint8 images as they are, vectors as float32."""
    t = torch.as_tensor(obs, device=device)
    return t if t.dtype == torch.uint8 else t.float()


class Policy:
    """A Dreamer acting in an env step by step: it filters each observation through the world
    model, so it keeps the latent state and its last action between calls; :meth:`reset` at each
    episode start. ``act(obs)`` takes one observation [*obs_shape] or a batch [N, *obs_shape] (the
    same N until the next reset) and returns the env's action, or actions [N, ...]."""

    def __init__(self, agent: Dreamer, action_space: gym.Space):
        self.agent, self.codec = agent, ActionCodec(action_space)
        self.dtype = np.uint8 if len(agent.obs_shape) == 3 else np.float32
        self.reset()

    def reset(self) -> None:
        self.state: RSSMState | None = None
        self.action: torch.Tensor | None = None

    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        batch, single = as_batch(obs, self.agent.obs_shape, self.dtype)
        n, device = len(batch), self.agent.device
        if self.state is None:
            first = torch.ones(n, dtype=torch.bool, device=device)
            self.action = torch.zeros(n, self.codec.dim, device=device)
        elif self.action.shape[0] != n:
            raise ValueError(f"obs: expected a batch of {self.action.shape[0]} observations, as since reset(), got {n}")
        else:
            first = torch.zeros(n, dtype=torch.bool, device=device)
        self.state = self.agent.observe(self.state, self.action, obs_tensor(batch, device), first)
        self.action = self.agent.act(self.state, deterministic)
        actions = self.codec.to_env(self.action)
        return actions[0] if single else actions
