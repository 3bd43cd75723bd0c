"""Soft Actor-Critic (Haarnoja et al., "Soft Actor-Critic Algorithms and Applications", 2018): a
tanh-squashed Gaussian policy, twin Q networks with target copies, and automatic tuning of the
entropy temperature. One file, top to bottom; MBPO trains this same agent on model data.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.nn import functional as F

from pymbrl._checks import integer, real
from pymbrl._extras import optional_imports
from pymbrl.models.sac import Actor, TwinQ
from pymbrl.replay import ReplayBuffer
from pymbrl.training import Callbacks, TrainConfig, TrainResult, as_batch, generator, seeded, start_run
from pymbrl.training.agent import evaluate as evaluate_episodes
from pymbrl.training.checkpoint import random_states, restore_random_states, set_generator_state
from pymbrl.training.run import STATE, read_run, restoring

with optional_imports():
    import gymnasium as gym


@dataclass(frozen=True)
class SACConfig(TrainConfig):
    """Soft Actor-Critic's settings; defaults from Haarnoja et al. (2018), Table 1 (v2, learned
    temperature), with a smaller warm-up."""

    DEFAULT_ENV: ClassVar[str] = "Pendulum-v1"

    gamma: float = 0.99  # discount
    tau: float = 0.005  # step of the target critics towards the critics, per update
    lr: float = 3e-4  # Adam's step size, for actor, critics and temperature
    batch_size: int = 256  # transitions per update
    hidden: int = 256  # units of each of the two hidden layers of every network
    buffer_size: int = 1_000_000  # replay capacity (transitions)
    learning_starts: int = 1000  # random actions before the first update (the paper: 10,000)
    updates_per_step: int = 1  # gradient steps per env step
    target_entropy: float | None = None  # entropy the temperature aims at; None: -|A|

    def __post_init__(self) -> None:
        super().__post_init__()
        # Refused here, by name, rather than as a torch error (or a terabyte allocation) mid-run.
        for name in ("batch_size", "hidden", "buffer_size", "updates_per_step"):
            integer(getattr(self, name), name)
        integer(self.learning_starts, "learning_starts", minimum=0)
        if self.batch_size > self.buffer_size:  # no batch could ever be drawn: SAC would never learn
            raise ValueError(f"batch_size: expected at most buffer_size ({self.buffer_size}), got {self.batch_size}")
        real(self.gamma, "gamma", low=0.0, high=1.0)
        real(self.tau, "tau", low=0.0, high=1.0)
        real(self.lr, "lr", low=0.0)
        if self.target_entropy is not None:
            real(self.target_entropy, "target_entropy", low=-math.inf)


class SAC:
    """The agent: networks, optimisers and the update. ``update(batch)`` takes a replay batch with
    obs, action, reward, next_obs and discount (gamma^n, 0 after termination). ``seed`` draws the
    initial weights and seeds the agent's own generator of policy noise (torch's global one is
    left alone). The defaults are :class:`SACConfig`'s."""

    def __init__(self, obs_dim: int, act_dim: int, low: np.ndarray, high: np.ndarray, *, hidden: int = 256,
                 lr: float = 3e-4, tau: float = 0.005, target_entropy: float | None = None,
                 device: str | torch.device = "cpu", seed: int = 0):
        with seeded(seed):
            self.actor = Actor(obs_dim, act_dim, hidden, low, high).to(device)
            self.q = TwinQ(obs_dim, act_dim, hidden).to(device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.generator = generator(seed, device)
        self.log_alpha = torch.zeros((), device=device, requires_grad=True)
        self.tau = tau
        self.target_entropy = -float(act_dim) if target_entropy is None else target_entropy
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.q_opt = torch.optim.Adam(self.q.parameters(), lr=lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=lr)
        self.device = torch.device(device)
        self.obs_shape = (obs_dim,)

    @classmethod
    def of(cls, config: SACConfig, env: gym.Env) -> SAC:
        """The agent ``config`` makes for ``env``'s spaces."""
        return cls(env.observation_space.shape[0], env.action_space.shape[0], env.action_space.low,
                   env.action_space.high, hidden=config.hidden, lr=config.lr, tau=config.tau,
                   target_entropy=config.target_entropy, device=config.device, seed=config.seed)

    def state_dict(self) -> dict[str, Any]:
        """Networks, optimisers, temperature and noise generator: everything acting and updating
        depend on."""
        return {"actor": self.actor.state_dict(), "q": self.q.state_dict(), "q_target": self.q_target.state_dict(),
                "log_alpha": self.log_alpha.detach().clone(), "actor_opt": self.actor_opt.state_dict(),
                "q_opt": self.q_opt.state_dict(), "alpha_opt": self.alpha_opt.state_dict(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # A NaN weight would only show as NaN actions handed to the env: refused before anything changes.
        for name in ("actor", "q", "q_target"):
            for key, value in state[name].items():
                if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
                    raise ValueError(f"{name}.{key}: expected finite weights, got a non-finite value")
        if not math.isfinite(float(state["log_alpha"])):
            raise ValueError(f"log_alpha: expected a finite number, got {float(state['log_alpha'])}")
        for name in ("actor", "q", "q_target", "actor_opt", "q_opt", "alpha_opt"):
            getattr(self, name).load_state_dict(state[name])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        set_generator_state(self.generator, state["generator"])

    @torch.no_grad()
    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """The action [A] for one observation [obs_dim], or actions [N, A] for a batch [N, obs_dim]
        (float32); ``deterministic=False`` samples from the policy."""
        batch, single = as_batch(obs, self.obs_shape)
        actions = self.sample(torch.as_tensor(batch, device=self.device), deterministic).cpu().numpy()
        return actions[0] if single else actions

    def sample(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions [N, A] for observations [N, obs_dim], the noise from the agent's generator."""
        return self.actor(obs, deterministic, self.generator)[0]

    def update(self, batch: Any) -> dict[str, float]:
        """One gradient step of the critics, the actor and the temperature; returns the losses."""
        obs, action, reward = batch["obs"], batch["action"], batch["reward"]
        next_obs, discount = batch["next_obs"], batch["discount"]
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_action, next_log_prob = self.actor(next_obs, generator=self.generator)
            target = torch.min(*self.q_target(next_obs, next_action)) - alpha * next_log_prob
            y = reward + discount * target
        q1, q2 = self.q(obs, action)
        q_loss = F.mse_loss(q1, y) + F.mse_loss(q2, y)
        self.q_opt.zero_grad(set_to_none=True)
        q_loss.backward()
        self.q_opt.step()

        new_action, log_prob = self.actor(obs, generator=self.generator)
        actor_loss = (alpha * log_prob - torch.min(*self.q(obs, new_action))).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()

        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()

        with torch.no_grad():
            for p, tp in zip(self.q.parameters(), self.q_target.parameters()):
                tp.lerp_(p, self.tau)
        return {"q_loss": float(q_loss.detach()), "actor_loss": float(actor_loss.detach()), "alpha": float(alpha)}


def box_env(env_id: str, algorithm: str, **kwargs: Any) -> gym.Env:
    """The env; refuses unknown envs and envs without a Box action space or a flat Box observation
    space (before anything is written to a run directory)."""
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.Error as error:
        raise ValueError(f"env: {error}") from None
    if not isinstance(env.action_space, gym.spaces.Box):
        env.close()
        raise ValueError(f"env: {algorithm} needs a Box action space, {env_id} has {env.action_space}")
    if not isinstance(env.observation_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
        env.close()
        raise ValueError(f"env: {algorithm} needs a flat Box observation space, {env_id} has {env.observation_space}")
    return env


def make_env(config: SACConfig, render_mode: str | None = None) -> gym.Env:
    """The env of ``config`` as the agent sees it."""
    return box_env(config.env, "SAC", render_mode=render_mode)


def transition_spec(env: gym.Env) -> dict:
    """The replay-buffer spec of continuous-control transitions in ``env``."""
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    return {"obs": ((obs_dim,), torch.float32), "action": ((act_dim,), torch.float32),
            "reward": ((), torch.float32), "terminated": ((), torch.bool), "truncated": ((), torch.bool)}


def evaluate(agent: SAC, env_id: str, episodes: int, seed: int) -> float:
    """Mean return of the deterministic policy over ``episodes`` episodes."""
    return float(np.mean(evaluate_episodes(agent, gym.make(env_id), episodes, seed)))


def train(config: SACConfig | None = None, run_dir: str | os.PathLike | None = None, *,
          callbacks: Callbacks | None = None) -> TrainResult:
    """Trains SAC on ``config.env`` (a gymnasium env with Box actions) for ``config.steps`` env steps.

    The records (every ``eval_every`` steps and at the end) hold ``step``, ``return`` (mean over
    ``eval_episodes`` deterministic episodes), the last update's losses and ``seconds``. With
    ``run_dir`` the run keeps its files there (see :mod:`pymbrl.training.run`); called again, it
    resumes from the checkpoint and ends exactly where the uninterrupted run would have, or
    continues a finished run given more steps.
    """
    c = config or SACConfig()
    env = make_env(c)
    run = start_run(run_dir, "sac", c, callbacks=callbacks)
    with run:  # closes it, and frees its directory for other processes, however training ends
        env.action_space.seed(c.seed)
        agent = SAC.of(c, env)
        buffer = ReplayBuffer(c.buffer_size, transition_spec(env), gamma=c.gamma, seed=c.seed)
        obs, _ = env.reset(seed=c.seed)
        losses: dict[str, float] = {}
        if run.state is not None:
            with run.restoring(real=buffer):
                agent.load_state_dict(run.state["agent"])
                buffer, losses, obs = run.buffers["real"], dict(run.state["losses"]), None
                restore_random_states(run.state["random"], env)
        for step in range(run.step + 1, c.steps + 1):
            if obs is None:
                obs, _ = env.reset()
            action = env.action_space.sample() if step <= c.learning_starts else agent.act(obs, deterministic=False)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            buffer.add(obs=obs, action=action, reward=reward, terminated=terminated, truncated=truncated,
                       next_obs=next_obs)
            obs = None if terminated or truncated else next_obs
            # A learning_starts below batch_size would sample more transitions than are stored:
            # updates begin once a batch's worth is.
            if step > c.learning_starts and len(buffer) >= c.batch_size:
                for _ in range(c.updates_per_step):
                    losses = agent.update(buffer.sample(c.batch_size))
            if step % c.eval_every == 0 or step == c.steps:
                run.evaluated({"step": step, "return": evaluate(agent, c.env, c.eval_episodes, seed=10_000 + step),
                               **losses})
            if run.due(step, episode_over=obs is None):
                run.save(step, {"agent": agent.state_dict(), "losses": losses, "random": random_states(env)},
                         {"real": buffer})
            run.progress(step)
    return TrainResult(agent, run.history, run.directory, run.history[-1] if run.history else {})


def load(run_dir: str | os.PathLike, device: str | None = None) -> SAC:
    """The agent of the SAC run in ``run_dir`` (its last checkpoint), on ``device`` (default: the
    run's); ``load(run_dir).act(obs)`` gives deterministic actions."""
    config, state = read_run(run_dir, SACConfig, "sac", device)
    env = make_env(config)
    agent = SAC.of(config, env)
    env.close()
    with restoring(Path(run_dir) / "checkpoint" / STATE):
        agent.load_state_dict(state["agent"])
    return agent
