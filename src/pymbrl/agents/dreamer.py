"""Dreamer (Hafner et al. 2019-2023; the world model and losses of DreamerV3, "Mastering Diverse
Domains through World Models"): a world model learned from replayed sequences, and an actor and a
critic learned only from trajectories the model imagines from every replayed state.

Top to bottom: the config, the env, evaluation and the training loop. The learner (networks and the
update: world model, imagination, lambda-returns, critic, actor) is :mod:`pymbrl.agents.dreamer_learner`;
the parts come from :mod:`pymbrl.models.rssm` (world model), :mod:`pymbrl.models.dreamer` (actor,
critic), :mod:`pymbrl.rollout` (imagination, returns) and :mod:`pymbrl.replay` (sequence replay).

Replay convention: one row per observation, as the world model reads it. ``obs`` is o_t,
``action`` the action that led to it, ``reward`` the reward that came with it, ``first`` marks an
episode's reset observation (action and reward zero), ``terminated`` an observation after which
the episode ends with no future value, ``truncated`` one where it was cut off by a time limit.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from pymbrl._checks import integer, real
from pymbrl._extras import MissingExtra, optional_imports
from pymbrl.envs.frames import IMAGE_SHAPE
from pymbrl.envs.wrappers import ResizeFrames
from pymbrl.agents.dreamer_learner import Dreamer, Policy, obs_tensor
from pymbrl.envs.spaces import ActionCodec
from pymbrl.models.rssm import RSSMConfig
from pymbrl.replay import SequenceReplayBuffer
from pymbrl.rollout.imagination import CONTINUES
from pymbrl.training import Callbacks, TrainConfig, TrainResult, start_run
from pymbrl.training.run import STATE, read_run, restoring

with optional_imports():
    import gymnasium as gym

# What learns CartPole and Pendulum on a 2-core CPU within an hour (the runs behind these settings:
# examples/results/dreamer.md), departing from DreamerV3 for CPU time: a world model of GRU 128,
# 8 x 8 latents and one hidden layer of 128 (S: 512, 32 x 32, 2 x 512), learning rates 3e-4 (model)
# and 1e-4 (actor, critic) instead of 1e-4 and 3e-5, and (in PRESETS) train ratios 64 and 128, not 512.
CPU_PRESET = dict(model=RSSMConfig(deter=128, groups=8, classes=8, hidden=128, layers=1),
                  model_lr=3e-4, actor_lr=1e-4, critic_lr=1e-4)


@dataclasses.dataclass(frozen=True)
class DreamerConfig(TrainConfig):
    """Dreamer's settings; defaults are DreamerV3's (Hafner et al. 2023, table of hyper-parameters)
    except where noted. :attr:`PRESETS` hold the settings of the CPU runs of CartPole-v1 and
    Pendulum-v1."""

    DEFAULT_ENV: ClassVar[str] = "CartPole-v1"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "CartPole-v1": dict(CPU_PRESET, train_ratio=64, num_envs=4),
        "Pendulum-v1": dict(CPU_PRESET, train_ratio=128, batch_length=32, replay_critic=0.0, imagine_continue="mean"),
    }

    steps: int = 50_000  # env steps of the run, summed over the num_envs envs
    eval_every: int = 5000  # env steps between evaluations
    eval_episodes: int = 10  # episodes of the actor's mode per evaluation (side by side)
    checkpoint_every: int = 5000  # env steps between checkpoints
    model: RSSMConfig = dataclasses.field(default_factory=RSSMConfig)  # world-model sizes (DreamerV3 S)
    batch_size: int = 16  # replayed sequences per update
    batch_length: int = 64  # steps per replayed sequence
    train_ratio: int = 512
    """replayed steps per env step; an update replays batch_size x batch_length steps, so 512
    means one update every 2 env steps"""
    num_envs: int = 1  # vector envs collecting data (DreamerV3 uses more on some domains)
    learning_starts: int = 1024  # env steps of uniform random actions before the first update
    horizon: int = 15  # imagination horizon
    imagine_continue: str = "mode"
    """"mode" (DreamerV3's code: an imagined episode goes on while the continue head gives it more
    than 1/2) or "mean" (its probability discounts the returns)"""
    discount: float = 0.997  # discount of the imagined returns, 1 - 1/333
    lam: float = 0.95  # lambda of the lambda-returns
    model_lr: float = 1e-4  # Adam's step size for the world model
    actor_lr: float = 3e-5  # Adam's step size for the actor
    critic_lr: float = 3e-5  # Adam's step size for the critic
    model_eps: float = 1e-8  # Adam's epsilon for the world model
    actor_critic_eps: float = 1e-5  # Adam's epsilon for actor and critic
    model_clip: float = 1000.0  # gradient norm clipping of the world model
    actor_critic_clip: float = 100.0  # gradient norm clipping of actor and critic
    entropy: float = 3e-4  # actor entropy regulariser eta
    actor_gradient: str = "auto"
    """"reinforce" (DreamerV3, discrete actions), "dynamics" (backpropagation of returns through
    the imagined dynamics, the original Dreamer's continuous-action gradient) or "auto" (reinforce
    for discrete, dynamics for continuous action spaces)"""
    slow_critic_mix: float = 0.02  # EMA step of the slow critic per update
    slow_critic_reg: float = 1.0  # weight of the critic's regulariser towards the slow critic
    replay_critic: float = 0.3
    """weight of the critic's loss on the replayed sequences (real rewards and terminations,
    bootstrapped with imagined returns), as in DreamerV3's code ("repval"); 0 trains the critic on
    imagination only, as the first version of the paper describes"""
    return_decay: float = 0.99  # EMA decay of the return percentile range
    min_std: float = 0.1  # lower bound of the continuous actor's standard deviation
    max_std: float = 1.0  # upper bound of the continuous actor's standard deviation
    buffer_size: int = 1_000_000  # replay capacity in rows (observations)
    compile: bool = False  # compile every network with torch.compile (see models.dreamer.compile_networks)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.model, RSSMConfig):
            raise TypeError(f"model: expected an RSSMConfig, got {type(self.model).__name__}")
        for name in ("batch_size", "batch_length", "train_ratio", "num_envs", "horizon", "buffer_size"):
            integer(getattr(self, name), name)
        integer(self.learning_starts, "learning_starts", minimum=0)
        for name in ("discount", "lam", "slow_critic_mix", "return_decay"):
            real(getattr(self, name), name, low=0.0, high=1.0)
        for name in ("model_lr", "actor_lr", "critic_lr", "model_eps", "actor_critic_eps", "model_clip",
                     "actor_critic_clip", "entropy", "slow_critic_reg", "replay_critic", "min_std", "max_std"):
            real(getattr(self, name), name, low=0.0)
        if self.imagine_continue not in CONTINUES:
            raise ValueError(f"imagine_continue: expected one of {CONTINUES}, got {self.imagine_continue!r}")
        if self.actor_gradient not in ("auto", "reinforce", "dynamics"):
            raise ValueError(f"actor_gradient: expected 'auto', 'reinforce' or 'dynamics', got {self.actor_gradient!r}")
        if not self.min_std <= self.max_std:
            raise ValueError(f"max_std: expected at least min_std ({self.min_std}), got {self.max_std}")
        if not isinstance(self.compile, bool):
            raise TypeError(f"compile: expected a bool, got {type(self.compile).__name__}")


def make_env(config: DreamerConfig, render_mode: str | None = None) -> gym.Env:
    """The env of ``config`` as the agent sees it: ``gym.make``'s, with Atari frames (``ALE/...``
    ids, from the ale-py package) resized to 64x64x3."""
    atari = config.env.startswith("ALE/")
    if atari:
        try:
            with optional_imports():
                import ale_py
        except MissingExtra as error:
            raise ValueError(f"env: {config.env}: {error}") from None
        gym.register_envs(ale_py)
    try:
        env = gym.make(config.env, render_mode=render_mode)
    except gym.error.Error as error:
        raise ValueError(f"env: {error}") from None
    return ResizeFrames(env) if atari else env


def env_spaces(env: gym.Env, env_id: str) -> tuple[tuple[int, ...], int, bool]:
    """(obs_shape, action_dim, discrete) of an env Dreamer can learn, or ValueError naming what
    is not supported: observations must be 1-D vectors or 64x64x3 uint8 images, actions Discrete or
    a 1-D Box."""
    space = env.observation_space
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"env: Dreamer needs Box observations, {env_id} has {space}")
    if len(space.shape) in (2, 3) and (tuple(space.shape) != IMAGE_SHAPE or space.dtype != np.uint8):
        raise ValueError(f"env: image observations must be uint8 of shape {IMAGE_SHAPE} (channels last), "
                         f"{env_id} gives {space.dtype} {space.shape}; resize them, e.g. with "
                         f"gymnasium.wrappers.ResizeObservation(env, (64, 64))")
    if len(space.shape) not in (1, 3):
        raise ValueError(f"env: Dreamer needs vector or 64x64x3 image observations, {env_id} has shape {space.shape}")
    try:
        codec = ActionCodec(env.action_space)
    except ValueError:
        raise ValueError(f"env: Dreamer supports Discrete or bounded 1-D Box actions, {env_id} has "
                         f"{env.action_space}") from None
    return tuple(space.shape), codec.dim, codec.discrete


def vector_env(config: DreamerConfig, n: int) -> gym.vector.SyncVectorEnv:
    """``n`` envs of ``config`` stepped together; where an episode has ended, the next step resets it."""
    return gym.vector.SyncVectorEnv([lambda: make_env(config) for _ in range(n)],
                                    autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)


def evaluate(agent: Dreamer, config: DreamerConfig, episodes: int, seed: int) -> float:
    """Mean return of the actor's mode over ``episodes`` episodes, run side by side in a vector env
    (each env's first episode counts)."""
    envs = vector_env(config, episodes)
    policy = Policy(agent, envs.single_action_space)
    obs, _ = envs.reset(seed=seed)
    totals, done = np.zeros(episodes), np.zeros(episodes, dtype=bool)
    while not done.all():
        obs, reward, terminated, truncated, _ = envs.step(policy.act(obs))
        totals += np.where(done, 0.0, reward)
        done |= terminated | truncated
    envs.close()
    return float(totals.mean())


def train(config: DreamerConfig | None = None, run_dir: str | os.PathLike | None = None, *,
          callbacks: Callbacks | None = None) -> TrainResult:
    """Trains Dreamer for ``config.steps`` env steps (summed over ``config.num_envs`` vector envs).

    The first ``learning_starts`` steps take uniform random actions; from then on the actor acts
    and, after each vector step, as many updates run as keep replayed steps at ``train_ratio`` times
    the env steps. Every ``eval_every`` steps the actor's mode plays ``eval_episodes`` episodes.
    The records hold ``step``, ``return``, ``train_return`` (mean return of the training episodes
    that ended since the previous record; NaN if none), ``updates``, ``seconds`` and the last
    update's losses.

    With ``run_dir``, the run keeps its files there (see :mod:`pymbrl.training.run`) and a
    checkpoint every ``checkpoint_every`` steps (weights, optimisers, return scale, replay,
    generators). Called again, it resumes from the checkpoint, or continues a finished run given
    more steps; the envs then start fresh episodes (their physics state is not saved), so a resumed
    run is a faithful continuation but not bit-identical to an uninterrupted one. If a loss becomes
    NaN or infinite, training stops with
    :class:`~pymbrl.agents.dreamer_learner.NonFiniteLossError` and the last checkpoint is left as it was.
    """
    c = config or DreamerConfig()
    probe = make_env(c)
    try:
        obs_shape, action_dim, discrete = env_spaces(probe, c.env)
    finally:
        probe.close()
    agent = Dreamer(obs_shape, action_dim, discrete, c)  # refuses actions it cannot learn, before any file is made
    run = start_run(run_dir, "dreamer", c, callbacks=callbacks)
    with run:  # closes it, and frees its directory for other processes, however training ends
        spec = {"obs": (obs_shape, torch.uint8 if len(obs_shape) == 3 else torch.float32),
                "action": ((action_dim,), torch.float32), "reward": ((), torch.float32), "first": ((), torch.bool),
                "terminated": ((), torch.bool), "truncated": ((), torch.bool)}
        capacity = math.ceil(c.buffer_size / c.num_envs + 1) * c.num_envs
        buffer = SequenceReplayBuffer(capacity, spec, num_envs=c.num_envs, seed=c.seed)
        envs = vector_env(c, c.num_envs)
        to_env = ActionCodec(envs.single_action_space)
        envs.action_space.seed(c.seed)
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
        obs, _ = envs.reset(seed=c.seed + step)
        first = np.ones(c.num_envs, dtype=bool)
        reward = np.zeros(c.num_envs, dtype=np.float32)
        terminated = truncated = np.zeros(c.num_envs, dtype=bool)
        action = np.zeros((c.num_envs, action_dim), dtype=np.float32)
        state = None
        per_update = c.batch_size * c.batch_length
        running = np.zeros(c.num_envs)  # returns of the episodes under way
        finished: list[float] = []  # returns of the episodes ended since the last evaluation
        while step < c.steps:
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
                                      obs_tensor(obs, agent.device), torch.as_tensor(first, device=agent.device))
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
            if step // c.eval_every > before // c.eval_every or step >= c.steps:
                # The training episodes' returns (sampled actions, random ones before learning_starts)
                # beside the evaluation's (the actor's mode).
                train_return = float(np.mean(finished)) if finished else float("nan")
                run.evaluated({"step": step, "return": evaluate(agent, c, c.eval_episodes, seed=10_000 + step),
                               "train_return": train_return, "updates": updates, **losses})
                finished = []
            if run.directory is not None and (step >= c.steps or step // run.every > run.step // run.every):
                # The last vector step may pass ``steps`` (all envs step together); the checkpoint
                # records the run as done, which is what a run of ``steps`` steps may hold.
                run.save(min(step, c.steps), {"agent": agent.state_dict(), "losses": losses, "updates": updates,
                                              "action_space": envs.action_space.np_random.bit_generator.state},
                         {"replay": buffer})
            run.progress(min(step, c.steps))
    envs.close()
    return TrainResult(agent, run.history, run.directory, run.history[-1] if run.history else {})


def load(run_dir: str | os.PathLike, device: str | None = None) -> Policy:
    """The trained agent of the Dreamer run in ``run_dir`` (its last checkpoint), on ``device``
    (default: the run's), as a :class:`Policy`: ``load(run_dir).act(obs)`` gives the actor's mode
    and keeps the latent state until ``reset()``."""
    config, state = read_run(run_dir, DreamerConfig, "dreamer", device)
    env = make_env(config)
    try:
        obs_shape, action_dim, discrete = env_spaces(env, config.env)
        agent = Dreamer(obs_shape, action_dim, discrete, config)
        with restoring(Path(run_dir) / "checkpoint" / STATE):
            agent.load_state_dict(state["agent"])
        return Policy(agent, env.action_space)
    finally:
        env.close()
