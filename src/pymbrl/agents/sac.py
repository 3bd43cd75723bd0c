"""Soft Actor-Critic (Haarnoja et al., "Soft Actor-Critic Algorithms and Applications", 2018): a
tanh-squashed Gaussian policy, twin Q networks with target copies, and automatic tuning of the
entropy temperature. One file, top to bottom; MBPO trains this same agent on model data.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pymbrl._checks import integer, real, resolve_seed
from pymbrl.agents.checkpoint import random_states, restore_random_states, start_run
from pymbrl.replay import ReplayBuffer


@dataclass
class SACConfig:
    """Hyper-parameters; defaults from Haarnoja et al. (2018), Table 1 (v2, learned temperature)."""

    gamma: float = 0.99
    tau: float = 0.005
    lr: float = 3e-4
    batch_size: int = 256
    hidden: int = 256
    buffer_size: int = 1_000_000
    learning_starts: int = 1000  # random actions before the first update (the paper: 10,000)
    updates_per_step: int = 1
    target_entropy: float | None = None  # None: -|A|

    def __post_init__(self) -> None:
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


def mlp(inputs: int, outputs: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, outputs))


class Actor(nn.Module):
    """A Gaussian over pre-squash actions; tanh then scales it into the action box."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, low: np.ndarray, high: np.ndarray):
        super().__init__()
        self.net = mlp(obs_dim, 2 * act_dim, hidden)
        self.register_buffer("scale", torch.tensor((high - low) / 2, dtype=torch.float32))
        self.register_buffer("center", torch.tensor((high + low) / 2, dtype=torch.float32))

    def forward(self, obs: torch.Tensor, deterministic: bool = False,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(action [N, A] inside the box, log-probability [N] of it); ``generator`` draws the noise."""
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        log_std = log_std.clamp(-20.0, 2.0)
        if deterministic:
            u = mean
        else:
            u = mean + torch.randn(mean.shape, generator=generator, device=mean.device) * log_std.exp()
        squashed = torch.tanh(u)
        # log N(u) minus the log-determinant of the tanh and of the scaling (numerically stable form).
        log_prob = (-0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1) - self.scale.log().sum()
        return squashed * self.scale + self.center, log_prob


class TwinQ(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: int):
        super().__init__()
        self.q1, self.q2 = mlp(obs_dim + act_dim, 1, hidden), mlp(obs_dim + act_dim, 1, hidden)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, act], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


class SAC:
    """The agent: networks, optimisers and the update. ``update(batch)`` takes a replay batch with
    obs, action, reward, next_obs and discount (gamma^n, 0 after termination). ``seed`` draws the
    initial weights and seeds the agent's own generator of policy noise (torch's global one is
    left alone)."""

    def __init__(self, obs_dim: int, act_dim: int, low: np.ndarray, high: np.ndarray, config: SACConfig | None = None,
                 device: str | torch.device = "cpu", seed: int | None = None):
        self.config = config or SACConfig()
        c = self.config
        seed = resolve_seed(seed)
        with seeded(seed):
            self.actor = Actor(obs_dim, act_dim, c.hidden, low, high).to(device)
            self.q = TwinQ(obs_dim, act_dim, c.hidden).to(device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.generator = torch.Generator(device).manual_seed(seed % 2**63)
        self.log_alpha = torch.zeros((), device=device, requires_grad=True)
        self.target_entropy = -float(act_dim) if c.target_entropy is None else c.target_entropy
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=c.lr)
        self.q_opt = torch.optim.Adam(self.q.parameters(), lr=c.lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=c.lr)
        self.device = torch.device(device)

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
        self.generator.set_state(state["generator"])

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        return self.sample(torch.as_tensor(obs, dtype=torch.float32, device=self.device)[None],
                           deterministic)[0].cpu().numpy()

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
                tp.lerp_(p, self.config.tau)
        return {"q_loss": float(q_loss.detach()), "actor_loss": float(actor_loss.detach()), "alpha": float(alpha)}


def box_env(env_id: str, algorithm: str) -> tuple[gym.Env, int, int]:
    """The env and its observation and action sizes; refuses unknown envs and envs without a Box
    action space (before anything is written to a run directory)."""
    try:
        env = gym.make(env_id)
    except gym.error.Error as error:
        raise ValueError(f"env_id: {error}") from None
    if not isinstance(env.action_space, gym.spaces.Box):
        raise ValueError(f"env_id: {algorithm} needs a Box action space, {env_id} has {env.action_space}")
    return env, env.observation_space.shape[0], env.action_space.shape[0]


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Runs its block (network construction) on torch's global generator seeded with ``seed``, then
    puts the global generator back as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed % 2**63)
        yield


def transition_spec(obs_dim: int, act_dim: int) -> dict:
    """The replay-buffer spec of continuous-control transitions."""
    return {"obs": ((obs_dim,), torch.float32), "action": ((act_dim,), torch.float32),
            "reward": ((), torch.float32), "terminated": ((), torch.bool), "truncated": ((), torch.bool)}


def evaluate(agent: SAC, env_id: str, episodes: int, seed: int) -> float:
    """Mean return of the deterministic policy over ``episodes`` episodes."""
    env = gym.make(env_id)
    total = 0.0
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(agent.act(obs, deterministic=True))
            total += float(reward)
            done = terminated or truncated
    return total / episodes


def train(env_id: str = "Pendulum-v1", steps: int = 10_000, *, seed: int | None = 0, config: SACConfig | None = None,
          eval_every: int = 1000, eval_episodes: int = 5, log: Callable[[dict], Any] | None = None,
          run_dir: str | os.PathLike | None = None, checkpoint_every: int = 1000,
          progress: Callable[[int], Any] | None = None) -> tuple[SAC, list[dict[str, float]]]:
    """Trains SAC on a gymnasium env with a Box action space for ``steps`` env steps.

    Returns the agent and the evaluation history: dicts with ``step``, ``return`` (mean over
    ``eval_episodes`` deterministic episodes), ``seconds`` and the last update's losses. ``log``
    is called with each record, ``progress`` with the number of every env step taken.

    With ``run_dir``, the run keeps ``log.csv`` and a checkpoint there (every ``checkpoint_every``
    steps, at the next episode end); called again with the same arguments, it resumes from the
    checkpoint and ends exactly where the uninterrupted run would have.
    """
    steps, eval_every = integer(steps, "steps"), integer(eval_every, "eval_every")
    c = config or SACConfig()
    env, obs_dim, act_dim = box_env(env_id, "SAC")
    run = start_run(run_dir, steps, {"algorithm": "SAC", "env_id": env_id, "config": c}, seed, checkpoint_every)
    env.action_space.seed(run.seed)
    agent = SAC(obs_dim, act_dim, env.action_space.low, env.action_space.high, c, seed=run.seed)
    buffer = ReplayBuffer(min(c.buffer_size, steps), transition_spec(obs_dim, act_dim), gamma=c.gamma, seed=run.seed)
    obs, _ = env.reset(seed=run.seed)
    losses: dict[str, float] = {}
    if run.state is not None:
        with run.restoring(real=buffer):
            agent.load_state_dict(run.state["agent"])
            buffer, losses, obs = run.buffers["real"], dict(run.state["losses"]), None
            restore_random_states(run.state["random"], env)
    for step in range(run.step + 1, steps + 1):
        if obs is None:
            obs, _ = env.reset()
        action = env.action_space.sample() if step <= c.learning_starts else agent.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs=obs, action=action, reward=reward, terminated=terminated, truncated=truncated,
                   next_obs=next_obs)
        obs = None if terminated or truncated else next_obs
        # A learning_starts below batch_size (PYMBRL_CONFIG='{"learning_starts": 100}') would sample
        # more transitions than are stored: updates begin once a batch's worth is.
        if step > c.learning_starts and len(buffer) >= c.batch_size:
            for _ in range(c.updates_per_step):
                losses = agent.update(buffer.sample(c.batch_size))
        if step % eval_every == 0 or step == steps:
            run.evaluated({"step": step, "return": evaluate(agent, env_id, eval_episodes, seed=10_000 + step),
                           **losses}, log)
        if run.due(step, episode_over=obs is None):
            run.save(step, {"agent": agent.state_dict(), "losses": losses, "random": random_states(env)},
                     {"real": buffer})
        if progress is not None:
            progress(step)
    return agent, run.history
