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

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from pymbrl._checks import integer
from pymbrl.agents.checkpoint import random_states, restore_random_states, start_run
from pymbrl.agents.sac import SAC, SACConfig, box_env, evaluate, seeded, transition_spec
from pymbrl.envs.termination import termination_fn
from pymbrl.models import GaussianEnsemble, ModelTrainer
from pymbrl.replay import ReplayBuffer
from pymbrl.rollout import branched_rollout


@dataclass
class MBPOConfig:
    """Hyper-parameters; defaults from the paper's appendix (Table 3) where it gives one for the
    MuJoCo tasks, scaled down where a CPU run on a small task needs it (noted).
    :meth:`for_env` adds the paper's per-task settings."""

    init_steps: int = 1000  # random actions before training (the paper: 5000)
    model_train_freq: int = 250
    rollout_batch_size: int = 10_000  # start states per model_train_freq (the paper: 100,000)
    rollout_length: tuple[int, int, int, int] = (1, 1, 1, 1)
    """(from_epoch, to_epoch, from_length, to_length): the length grows linearly between the
    epochs (of ``epoch_length`` env steps); (1, 1, 1, 1) is a constant 1 (HalfCheetah)."""
    epoch_length: int = 1000
    model_retain_epochs: int = 5  # batches of rollouts kept (the paper keeps 1-5 epochs' worth)
    real_ratio: float = 0.05
    updates_per_step: int = 10  # G; the paper: 20 (Hopper) to 40 (HalfCheetah)
    ensemble_size: int = 7
    num_elites: int = 5
    model_hidden: int = 200
    model_layers: int = 4
    sac: SACConfig = field(default_factory=SACConfig)

    @classmethod
    def for_env(cls, env_id: str, **changes: Any) -> MBPOConfig:
        """The defaults with the paper's settings for the task of ``env_id`` where it reports one
        (rollout-length schedule, epoch length, G and SAC's target entropy, from its Table 3 and
        released configurations), then ``changes``. Other tasks get the defaults."""
        task = dict(PAPER_TASKS.get(env_id.split("-v")[0], {}))
        target_entropy = task.pop("target_entropy", None)
        if target_entropy is not None and "sac" not in changes:
            task["sac"] = SACConfig(target_entropy=target_entropy)
        return cls(**{**task, **changes})


PAPER_TASKS: dict[str, dict[str, Any]] = {
    "InvertedPendulum": {"epoch_length": 250, "rollout_length": (1, 15, 1, 1), "updates_per_step": 10,
                         "target_entropy": -0.05},
    "Hopper": {"rollout_length": (20, 100, 1, 15), "updates_per_step": 20, "target_entropy": -1.0},
    "Walker2d": {"updates_per_step": 20, "target_entropy": -3.0},
    "HalfCheetah": {"updates_per_step": 40, "target_entropy": -3.0},
    "Ant": {"rollout_length": (20, 100, 1, 25), "updates_per_step": 20, "target_entropy": -4.0},
}


def rollout_length(config: MBPOConfig, epoch: int) -> int:
    first, last, short, long = config.rollout_length
    if epoch <= first or last <= first:
        return short if epoch <= first else long
    fraction = min(1.0, (epoch - first) / (last - first))
    return int(round(short + fraction * (long - short)))


def train(env_id: str = "Pendulum-v1", steps: int = 10_000, *, seed: int | None = 0, config: MBPOConfig | None = None,
          eval_every: int = 1000, eval_episodes: int = 5, log: Callable[[dict], Any] | None = None,
          run_dir: str | os.PathLike | None = None, checkpoint_every: int = 1000,
          progress: Callable[[int], Any] | None = None) -> tuple[SAC, list[dict[str, float]]]:
    """Trains MBPO for ``steps`` real env steps; returns the SAC agent and the evaluation history
    (dicts with ``step``, ``return``, ``model_mse`` (the elites' held-out MSE), the last SAC
    update's losses and ``seconds``). ``log``, ``progress``, ``run_dir`` and ``checkpoint_every``
    work as in :func:`pymbrl.agents.sac.train`: a run resumed from its checkpoint ends exactly where
    the uninterrupted run would have. ``config`` None: ``MBPOConfig.for_env(env_id)``.
    """
    steps, eval_every = integer(steps, "steps"), integer(eval_every, "eval_every")
    c = config or MBPOConfig.for_env(env_id)
    env, obs_dim, act_dim = box_env(env_id, "MBPO")
    done_fn = termination_fn(env_id)
    run = start_run(run_dir, steps, {"algorithm": "MBPO", "env_id": env_id, "config": c}, seed, checkpoint_every)
    env.action_space.seed(run.seed)
    agent = SAC(obs_dim, act_dim, env.action_space.low, env.action_space.high, c.sac, seed=run.seed)
    with seeded(run.seed + 1):
        model = GaussianEnsemble(obs_dim, act_dim, ensemble_size=c.ensemble_size, num_elites=c.num_elites,
                                 hidden=c.model_hidden, layers=c.model_layers)
    trainer = ModelTrainer(model, seed=run.seed)
    spec = transition_spec(obs_dim, act_dim)
    real = ReplayBuffer(steps, spec, gamma=c.sac.gamma, seed=run.seed)
    longest = max(c.rollout_length[2], c.rollout_length[3])
    imagined = ReplayBuffer(c.rollout_batch_size * longest * c.model_retain_epochs, spec, gamma=c.sac.gamma,
                            seed=run.seed + 1)
    # All real transitions as tensors too: the model is retrained on all of them every time.
    data = {k: torch.zeros((steps, *shape)) for k, shape in
            (("obs", (obs_dim,)), ("action", (act_dim,)), ("next_obs", (obs_dim,)), ("reward", ()))}
    generator = torch.Generator().manual_seed(run.seed)
    real_batch = max(1, int(round(c.real_ratio * c.sac.batch_size)))

    obs, _ = env.reset(seed=run.seed)
    model_mse, losses = float("nan"), {}
    if run.state is not None:
        state = run.state
        with run.restoring(real=real, imagined=imagined):
            agent.load_state_dict(state["agent"])
            model.load_state_dict(state["model"])
            trainer.optimizer.load_state_dict(state["model_opt"])
            real, imagined, obs = run.buffers["real"], run.buffers["imagined"], None
            for key, value in state["data"].items():
                data[key][: run.step] = value
            model_mse, losses = state["model_mse"], dict(state["losses"])
            restore_random_states(state["random"], env, (generator, trainer.generator))
    for step in range(run.step + 1, steps + 1):
        if obs is None:
            obs, _ = env.reset()
        action = env.action_space.sample() if step <= c.init_steps else agent.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        real.add(obs=obs, action=action, reward=reward, terminated=terminated, truncated=truncated, next_obs=next_obs)
        for key, value in (("obs", obs), ("action", action), ("next_obs", next_obs), ("reward", reward)):
            data[key][step - 1] = torch.as_tensor(value, dtype=torch.float32)
        obs = None if terminated or truncated else next_obs
        if step >= c.init_steps and (step - c.init_steps) % c.model_train_freq == 0:
            fit = trainer.train(data["obs"][:step], data["action"][:step], data["next_obs"][:step], data["reward"][:step])
            model_mse = float(fit.holdout_mse[fit.elites].mean())
            starts = data["obs"][torch.randint(step, (c.rollout_batch_size,), generator=generator)]
            with torch.no_grad():
                branched_rollout(model, agent.sample, starts, rollout_length(c, step // c.epoch_length),
                                 termination_fn=done_fn, generator=generator).write(imagined)
        for _ in range(c.updates_per_step if step >= c.init_steps else 0):
            a, b = real.sample(real_batch), imagined.sample(c.sac.batch_size - real_batch)
            losses = agent.update({k: torch.cat([a[k], b[k]]) for k in ("obs", "action", "reward", "next_obs", "discount")})
        if step % eval_every == 0 or step == steps:
            run.evaluated({"step": step, "return": evaluate(agent, env_id, eval_episodes, seed=10_000 + step),
                           "model_mse": model_mse, **losses}, log)
        if run.due(step, episode_over=obs is None):
            run.save(step, {"agent": agent.state_dict(), "model": model.state_dict(),
                            "model_opt": trainer.optimizer.state_dict(), "model_mse": model_mse, "losses": losses,
                            "data": {k: v[:step].clone() for k, v in data.items()},
                            "random": random_states(env, (generator, trainer.generator))},
                     {"real": real, "imagined": imagined})
        if progress is not None:
            progress(step)
    return agent, run.history
