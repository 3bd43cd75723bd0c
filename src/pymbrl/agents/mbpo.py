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

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from pymbrl._checks import integer, resolve_seed
from pymbrl.agents.sac import SAC, SACConfig, box_env, evaluate, transition_spec
from pymbrl.envs.termination import termination_fn
from pymbrl.models import GaussianEnsemble, ModelTrainer
from pymbrl.replay import ReplayBuffer
from pymbrl.rollout import branched_rollout


@dataclass
class MBPOConfig:
    """Hyper-parameters; defaults from the paper's appendix (Table 3) where it gives one for the
    MuJoCo tasks, scaled down where a CPU run on a small task needs it (noted)."""

    init_steps: int = 1000  # random actions before training (the paper: 5000)
    model_train_freq: int = 250
    rollout_batch_size: int = 10_000  # start states per model_train_freq (the paper: 100,000)
    rollout_length: tuple[int, int, int, int] = (1, 1, 1, 1)
    """(from_epoch, to_epoch, from_length, to_length): the length grows linearly between the
    epochs (an epoch is model_train_freq env steps); (1, 1, 1, 1) is a constant 1 (HalfCheetah)."""
    model_retain_epochs: int = 5  # the paper: 1-20 depending on the task
    real_ratio: float = 0.05
    updates_per_step: int = 10  # G; the paper: 20 (Hopper) to 40 (HalfCheetah)
    ensemble_size: int = 7
    num_elites: int = 5
    model_hidden: int = 200
    model_layers: int = 4
    sac: SACConfig = field(default_factory=SACConfig)


def rollout_length(config: MBPOConfig, epoch: int) -> int:
    first, last, short, long = config.rollout_length
    if epoch <= first or last <= first:
        return short if epoch <= first else long
    fraction = min(1.0, (epoch - first) / (last - first))
    return int(round(short + fraction * (long - short)))


def train(env_id: str = "Pendulum-v1", steps: int = 10_000, *, seed: int | None = 0, config: MBPOConfig | None = None,
          eval_every: int = 1000, eval_episodes: int = 5, log: Any = None) -> tuple[SAC, list[dict[str, float]]]:
    """Trains MBPO for ``steps`` real env steps; returns the SAC agent and the evaluation history
    (dicts with ``step``, ``return``, ``seconds``, ``model_mse``). ``log`` is called with each."""
    c = config or MBPOConfig()
    steps = integer(steps, "steps")
    seed = resolve_seed(seed) % 2**31
    env, obs_dim, act_dim = box_env(env_id, seed, "MBPO")
    done_fn = termination_fn(env_id)
    agent = SAC(obs_dim, act_dim, env.action_space.low, env.action_space.high, c.sac)
    model = GaussianEnsemble(obs_dim, act_dim, ensemble_size=c.ensemble_size, num_elites=c.num_elites,
                             hidden=c.model_hidden, layers=c.model_layers)
    trainer = ModelTrainer(model, seed=seed)
    spec = transition_spec(obs_dim, act_dim)
    real = ReplayBuffer(steps, spec, gamma=c.sac.gamma, seed=seed)
    longest = max(c.rollout_length[2], c.rollout_length[3])
    imagined = ReplayBuffer(c.rollout_batch_size * longest * c.model_retain_epochs, spec, gamma=c.sac.gamma,
                            seed=seed + 1)
    # All real transitions as tensors too: the model is retrained on all of them every time.
    data = {k: torch.zeros((steps, *shape)) for k, shape in
            (("obs", (obs_dim,)), ("action", (act_dim,)), ("next_obs", (obs_dim,)), ("reward", ()))}
    generator = torch.Generator().manual_seed(seed)
    real_batch = max(1, int(round(c.real_ratio * c.sac.batch_size)))

    def policy(states: torch.Tensor) -> torch.Tensor:
        return agent.actor(states)[0]

    obs, _ = env.reset(seed=seed)
    history: list[dict[str, float]] = []
    model_mse = float("nan")
    start = time.perf_counter()
    for step in range(1, steps + 1):
        action = env.action_space.sample() if step <= c.init_steps else agent.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        real.add(obs=obs, action=action, reward=reward, terminated=terminated, truncated=truncated, next_obs=next_obs)
        for key, value in (("obs", obs), ("action", action), ("next_obs", next_obs), ("reward", reward)):
            data[key][step - 1] = torch.as_tensor(value, dtype=torch.float32)
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
        if step >= c.init_steps and (step - c.init_steps) % c.model_train_freq == 0:
            fit = trainer.train(data["obs"][:step], data["action"][:step], data["next_obs"][:step], data["reward"][:step])
            model_mse = float(fit.holdout_mse[fit.elites].mean())
            starts = data["obs"][torch.randint(step, (c.rollout_batch_size,), generator=generator)]
            with torch.no_grad():
                branched_rollout(model, policy, starts, rollout_length(c, step // c.model_train_freq),
                                 termination_fn=done_fn, generator=generator).write(imagined)
        for _ in range(c.updates_per_step if step >= c.init_steps else 0):
            a, b = real.sample(real_batch), imagined.sample(c.sac.batch_size - real_batch)
            agent.update({k: torch.cat([a[k], b[k]]) for k in ("obs", "action", "reward", "next_obs", "discount")})
        if step % eval_every == 0 or step == steps:
            record = {"step": step, "return": evaluate(agent, env_id, eval_episodes, seed=10_000 + step),
                      "seconds": round(time.perf_counter() - start, 1), "model_mse": model_mse}
            history.append(record)
            if log is not None:
                log(record)
    return agent, history
