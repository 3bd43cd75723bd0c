"""Model-Based Policy Optimization (Janner et al., "When to Trust Your Model", NeurIPS 2019): SAC
trained mostly on short model rollouts branched from real states. One file, top to bottom:

1. act in the real env, store the transition;
2. every ``model_train_freq`` steps, retrain the ensemble on *all* real data (elites by holdout),
   then branch ``rollout_batch_size`` rollouts of the scheduled length from random real states
   with the current policy, into the model buffer (which keeps the last ``model_retain_epochs``
   batches of rollouts);
3. every step, ``updates_per_step`` SAC updates on batches of ``real_ratio`` real and the rest
   model transitions.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from pymbrl._checks import integer, real
from pymbrl._extras import optional_imports
from pymbrl.agents.sac import SAC, box_env, evaluate, transition_spec
from pymbrl.models import GaussianEnsemble, ModelTrainer
from pymbrl.replay import ReplayBuffer
from pymbrl.rollout import branched_rollout
from pymbrl.tasks.termination import termination_fn
from pymbrl.training import Callbacks, TrainConfig, TrainResult, generator, seeded, start_run
from pymbrl.training.checkpoint import random_states, restore_random_states
from pymbrl.training.run import STATE, read_run, restoring

with optional_imports():
    import gymnasium as gym


@dataclass(frozen=True)
class MBPOConfig(TrainConfig):
    """MBPO's settings; defaults from the paper's appendix (Table 3) where it gives one for the
    MuJoCo tasks, scaled down where a CPU run on a small task needs it (noted). :attr:`PRESETS`
    hold the paper's per-task settings (its Table 3 and released configurations)."""

    DEFAULT_ENV: ClassVar[str] = "Pendulum-v1"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "InvertedPendulum-": {"epoch_length": 250, "rollout_length": (1, 15, 1, 1), "updates_per_step": 10,
                              "target_entropy": -0.05},
        "Hopper-": {"rollout_length": (20, 100, 1, 15), "updates_per_step": 20, "target_entropy": -1.0},
        "Walker2d-": {"updates_per_step": 20, "target_entropy": -3.0},
        "HalfCheetah-": {"updates_per_step": 40, "target_entropy": -3.0},
        "Ant-": {"rollout_length": (20, 100, 1, 25), "updates_per_step": 20, "target_entropy": -4.0},
    }

    init_steps: int = 1000  # random actions before training (the paper: 5000)
    model_train_freq: int = 250  # env steps between retrainings of the model (and new rollouts)
    rollout_batch_size: int = 10_000  # start states per model_train_freq (the paper: 100,000)
    rollout_length: tuple[int, int, int, int] = (1, 1, 1, 1)
    """(from_epoch, to_epoch, from_length, to_length): the length grows linearly between the
    epochs (of ``epoch_length`` env steps); (1, 1, 1, 1) is a constant 1 (HalfCheetah)."""
    epoch_length: int = 1000  # env steps per epoch of the rollout-length schedule
    model_retain_epochs: int = 5  # batches of rollouts kept (the paper keeps 1-5 epochs' worth)
    real_ratio: float = 0.05  # share of real transitions in each SAC batch
    updates_per_step: int = 10  # SAC updates per env step, G; the paper: 20 (Hopper) to 40 (HalfCheetah)
    ensemble_size: int = 7  # members of the Gaussian ensemble
    num_elites: int = 5  # members used for rollouts (the best on held-out data)
    model_hidden: int = 200  # units of each hidden layer of the model
    model_layers: int = 4  # hidden layers of the model
    buffer_size: int = 1_000_000  # capacity of SAC's real replay (the model always trains on all real data)
    gamma: float = 0.99  # SAC's discount
    tau: float = 0.005  # SAC: step of the target critics towards the critics, per update
    lr: float = 3e-4  # SAC: Adam's step size, for actor, critics and temperature
    batch_size: int = 256  # SAC: transitions per update, real and model together
    hidden: int = 256  # SAC: units of each of the two hidden layers of every network
    target_entropy: float | None = None  # SAC: entropy the temperature aims at; None: -|A|

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("init_steps", "model_train_freq", "rollout_batch_size", "epoch_length", "model_retain_epochs",
                     "updates_per_step", "ensemble_size", "num_elites", "model_hidden", "model_layers",
                     "buffer_size", "batch_size", "hidden"):
            integer(getattr(self, name), name)
        if not isinstance(self.rollout_length, tuple) or len(self.rollout_length) != 4:
            raise ValueError(f"rollout_length: expected (from_epoch, to_epoch, from_length, to_length), "
                             f"got {self.rollout_length!r}")
        for i, value in enumerate(self.rollout_length):
            integer(value, "rollout_length", minimum=0 if i < 2 else 1)
        if self.num_elites > self.ensemble_size:
            raise ValueError(f"num_elites: expected at most ensemble_size ({self.ensemble_size}), "
                             f"got {self.num_elites}")
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size: expected at most buffer_size ({self.buffer_size}), got {self.batch_size}")
        real(self.real_ratio, "real_ratio", low=0.0, high=1.0)
        if real_batch(self) >= self.batch_size:  # a batch needs at least one model transition
            raise ValueError(f"real_ratio: expected a share that leaves model transitions in a batch of "
                             f"{self.batch_size}, got {self.real_ratio}")
        # Batches are drawn from what is stored: the first updates, right after the random steps
        # and the first rollouts, must find enough of each kind (the last real step of an
        # unfinished episode is not sampleable yet).
        if self.init_steps <= real_batch(self):
            raise ValueError(f"init_steps: expected more than the real transitions of a batch ({real_batch(self)}), "
                             f"got {self.init_steps}")
        if self.rollout_batch_size < self.batch_size - real_batch(self):
            raise ValueError(f"rollout_batch_size: expected at least the model transitions of a batch "
                             f"({self.batch_size - real_batch(self)}), got {self.rollout_batch_size}")
        real(self.gamma, "gamma", low=0.0, high=1.0)
        real(self.tau, "tau", low=0.0, high=1.0)
        real(self.lr, "lr", low=0.0)
        if self.target_entropy is not None:
            real(self.target_entropy, "target_entropy", low=-math.inf)


def real_batch(config: MBPOConfig) -> int:
    """Real transitions in each SAC batch (at least one)."""
    return max(1, int(round(config.real_ratio * config.batch_size)))


def rollout_length(config: MBPOConfig, epoch: int) -> int:
    """The rollout length of ``epoch`` on the schedule ``config.rollout_length``."""
    first, last, short, long = config.rollout_length
    if epoch <= first or last <= first:
        return short if epoch <= first else long
    fraction = min(1.0, (epoch - first) / (last - first))
    return int(round(short + fraction * (long - short)))


def make_env(config: MBPOConfig, render_mode: str | None = None) -> gym.Env:
    """The env of ``config`` as the agent sees it (no wrappers)."""
    return box_env(config.env, "MBPO", render_mode=render_mode)


def make_agent(config: MBPOConfig, env: gym.Env) -> SAC:
    """The SAC agent ``config`` makes for ``env``'s spaces."""
    return SAC(env.observation_space.shape[0], env.action_space.shape[0], env.action_space.low, env.action_space.high,
               hidden=config.hidden, lr=config.lr, tau=config.tau, target_entropy=config.target_entropy,
               device=config.device, seed=config.seed)


def reserve(data: dict[str, torch.Tensor], rows: int) -> dict[str, torch.Tensor]:
    """``data`` (tensors [capacity, ...]) with room for ``rows`` rows; a full store doubles, so that
    it grows with the data a run has (and a finished run can continue) at O(1) per row."""
    capacity = len(data["obs"])
    if rows <= capacity:
        return data
    size = max(rows, 2 * capacity)
    return {k: torch.cat([v, v.new_zeros((size - capacity, *v.shape[1:]))]) for k, v in data.items()}


def train(config: MBPOConfig | None = None, run_dir: str | os.PathLike | None = None, *,
          callbacks: Callbacks | None = None) -> TrainResult:
    """Trains MBPO for ``config.steps`` real env steps. The records (every ``eval_every`` steps and
    at the end) hold ``step``, ``return`` (mean over ``eval_episodes`` deterministic episodes),
    ``model_mse`` (the elites' held-out MSE), the last SAC update's losses and ``seconds``. With
    ``run_dir`` the run keeps its files there and resumes or continues as
    :func:`pymbrl.agents.sac.train` does: a resumed run ends exactly where the uninterrupted run
    would have.
    """
    c = config or MBPOConfig()
    env = make_env(c)
    try:
        done_fn = termination_fn(c.env)
    except ValueError as error:  # the setting to change is the config's env
        env.close()
        raise ValueError(f"env: {str(error).partition(': ')[2]}") from None
    run = start_run(run_dir, "mbpo", c, callbacks=callbacks)
    with run:  # closes it, and frees its directory for other processes, however training ends
        env.action_space.seed(c.seed)
        agent = make_agent(c, env)
        obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
        with seeded(c.seed + 1):
            model = GaussianEnsemble(obs_dim, act_dim, ensemble_size=c.ensemble_size, num_elites=c.num_elites,
                                     hidden=c.model_hidden, layers=c.model_layers).to(c.device)
        trainer = ModelTrainer(model, seed=c.seed)
        spec = transition_spec(env)
        real = ReplayBuffer(c.buffer_size, spec, gamma=c.gamma, seed=c.seed)
        longest = max(c.rollout_length[2], c.rollout_length[3])
        imagined = ReplayBuffer(c.rollout_batch_size * longest * c.model_retain_epochs, spec, gamma=c.gamma,
                                seed=c.seed + 1)
        # All real transitions as tensors too: the model is retrained on all of them every time.
        data = {k: torch.zeros((0, *shape), device=c.device) for k, shape in
                (("obs", (obs_dim,)), ("action", (act_dim,)), ("next_obs", (obs_dim,)), ("reward", ()))}
        rng = generator(c.seed, c.device)

        obs, _ = env.reset(seed=c.seed)
        model_mse, losses = float("nan"), {}
        if run.state is not None:
            state = run.state
            with run.restoring(real=real, imagined=imagined):
                agent.load_state_dict(state["agent"])
                model.load_state_dict(state["model"])
                trainer.optimizer.load_state_dict(state["model_opt"])
                real, imagined, obs = run.buffers["real"], run.buffers["imagined"], None
                if any(len(state["data"][k]) != run.step for k in data):
                    raise ValueError(f"data: expected {run.step} rows of real transitions")
                data = {k: torch.cat([v, state["data"][k].to(v)]) for k, v in data.items()}
                model_mse, losses = state["model_mse"], dict(state["losses"])
                restore_random_states(state["random"], env, (rng, trainer.generator))
        for step in range(run.step + 1, c.steps + 1):
            if obs is None:
                obs, _ = env.reset()
            action = env.action_space.sample() if step <= c.init_steps else agent.act(obs, deterministic=False)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            real.add(obs=obs, action=action, reward=reward, terminated=terminated, truncated=truncated,
                     next_obs=next_obs)
            data = reserve(data, step)
            for key, value in (("obs", obs), ("action", action), ("next_obs", next_obs), ("reward", reward)):
                data[key][step - 1] = torch.as_tensor(value, dtype=torch.float32)
            obs = None if terminated or truncated else next_obs
            if step >= c.init_steps and (step - c.init_steps) % c.model_train_freq == 0:
                fit = trainer.train(*(data[k][:step] for k in ("obs", "action", "next_obs", "reward")))
                model_mse = float(fit.holdout_mse[fit.elites].mean())
                starts = data["obs"][torch.randint(step, (c.rollout_batch_size,), generator=rng, device=rng.device)]
                with torch.no_grad():
                    branched_rollout(model, agent.sample, starts, rollout_length(c, step // c.epoch_length),
                                     termination_fn=done_fn, generator=rng).write(imagined)
            for _ in range(c.updates_per_step if step >= c.init_steps else 0):
                a = real.sample(real_batch(c), device=agent.device)
                b = imagined.sample(c.batch_size - real_batch(c), device=agent.device)
                losses = agent.update({k: torch.cat([a[k], b[k]])
                                       for k in ("obs", "action", "reward", "next_obs", "discount")})
            if step % c.eval_every == 0 or step == c.steps:
                run.evaluated({"step": step, "return": evaluate(agent, c.env, c.eval_episodes, seed=10_000 + step),
                               "model_mse": model_mse, **losses})
            if run.due(step, episode_over=obs is None):
                run.save(step, {"agent": agent.state_dict(), "model": model.state_dict(),
                                "model_opt": trainer.optimizer.state_dict(), "model_mse": model_mse, "losses": losses,
                                "data": {k: v[:step].to("cpu", copy=True) for k, v in data.items()},
                                "random": random_states(env, (rng, trainer.generator))},
                         {"real": real, "imagined": imagined})
            run.progress(step)
    env.close()
    return TrainResult(agent, run.history, run.directory, run.history[-1] if run.history else {})


def load(run_dir: str | os.PathLike, device: str | None = None) -> SAC:
    """The SAC agent of the MBPO run in ``run_dir`` (its last checkpoint), on ``device`` (default:
    the run's); ``load(run_dir).act(obs)`` gives deterministic actions."""
    config, state = read_run(run_dir, MBPOConfig, "mbpo", device)
    env = make_env(config)
    agent = make_agent(config, env)
    env.close()
    with restoring(Path(run_dir) / "checkpoint" / STATE):
        agent.load_state_dict(state["agent"])
    return agent
