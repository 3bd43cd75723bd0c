"""I2A's pipeline (Weber et al. 2017): the stages before the agent, each leaving artefacts in the run
directory that later stages read (see :func:`pipeline`).

``env-model``
    A model-free A2C "teacher" (``teacher/``, resumable), then ``config.model_frames`` frames of its
    play (with ``config.explore`` random actions, so that every action is seen), the env model
    fitted to them (``env_model.pt``) and its 1-, 5- and 15-step errors on held-out play
    (``held_out.npz``: 64 windows).
``distill``
    The small rollout policy distilled offline from the teacher (``rollout_policy.pt``), the seed's
    pre-trained rollout policy.
``agent``
    ``config.agent`` trained with A2C (:func:`pymbrl.agents.i2a.train_agent`), the env model and
    the rollout policy frozen, in ``<agent>/`` (``<agent>-online/`` when the rollout policy is
    distilled from the agent while it trains).

Every random stream of a stage is drawn from the run's seed (the teacher's from seed + 100, so that
it is never a model-free control of the agent stage).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pymbrl._checks import integer, real
from pymbrl._extras import optional_imports
from pymbrl.agents.i2a import I2AConfig, make_agent, sample_actions, train_agent
from pymbrl.envs.vector import env_spaces, make_vector_env
from pymbrl.models.env_model import EnvModel, Transitions, prediction_error, to_planes, train_env_model
from pymbrl.models.i2a import ActorCritic, rollout_policy_net
from pymbrl.training import Callbacks, generator, seeded
from pymbrl.training.checkpoint import atomic_write, field, load_torch, save_atomically
from pymbrl.training.stages import Stage

with optional_imports():
    import gymnasium as gym

TEACHER_SEED = 100  # added to the run's seed for the teacher's streams


class Rollout(NamedTuple):
    """Steps of a policy in vector envs, time-major.

    frames : uint8 [T, N, H, W, C], the frame each action was taken on.
    actions : int64 [T, N]; rewards : float32 [T, N].
    next_frames : uint8 [T, N, H, W, C], the frame each action led to (the final frame where an
        episode ended; ``frames[t + 1]`` then starts the next episode).
    dones : bool [T, N], terminated or truncated.
    """

    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_frames: np.ndarray
    dones: np.ndarray

    def transitions(self) -> Transitions:
        return Transitions(self.frames.reshape(-1, *self.frames.shape[2:]), self.actions.reshape(-1),
                           self.next_frames.reshape(-1, *self.frames.shape[2:]), self.rewards.reshape(-1))

    def trajectories(self, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Non-overlapping windows of ``length`` steps inside one episode: frames [B, length + 1,
        H, W, C], actions [B, length], rewards [B, length] (the input of
        :func:`pymbrl.models.env_model.prediction_error`)."""
        frames, actions, rewards = [], [], []
        for env in range(self.actions.shape[1]):
            start = 0
            while start + length <= len(self.actions):
                ends = np.flatnonzero(self.dones[start:start + length - 1, env])
                if len(ends):
                    start += ends[0] + 1
                    continue
                stop = start + length
                frames.append(np.concatenate([self.frames[start:stop, env], self.next_frames[stop - 1:stop, env]]))
                actions.append(self.actions[start:stop, env])
                rewards.append(self.rewards[start:stop, env])
                start = stop
        if not frames:
            raise ValueError(f"length: no window of {length} steps lies inside one episode")
        return np.stack(frames), np.stack(actions), np.stack(rewards)


def collect(env: gym.vector.VectorEnv, steps: int, policy: Callable[[np.ndarray], np.ndarray] | None = None,
            *, seed: int = 0, progress: Callable[[int, int], None] | None = None) -> Rollout:
    """``steps`` steps of every env of ``env`` (as :func:`pymbrl.envs.vector.make_vector_env` makes
    them) under ``policy`` (uint8 frames [N, H, W, C] -> int actions [N]); None picks uniformly
    random actions (from a generator seeded by ``seed``). ``progress`` gets (frames done, frames in
    all) now and then."""
    steps = integer(steps, "steps")
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    n, num_actions = env.num_envs, int(env.single_action_space.n)
    frames = np.empty((steps, *obs.shape), np.uint8)
    next_frames = np.empty_like(frames)
    actions = np.empty((steps, n), np.int64)
    rewards = np.empty((steps, n), np.float32)
    dones = np.empty((steps, n), bool)
    for t in range(steps):
        frames[t] = obs
        actions[t] = rng.integers(0, num_actions, n) if policy is None else policy(obs)
        obs, rewards[t], terminated, truncated, info = env.step(actions[t])
        dones[t] = terminated | truncated
        next_frames[t] = np.where(info["_final_obs"][:, None, None, None], info["final_obs"], obs)
        if progress is not None and ((t + 1) % 100 == 0 or t + 1 == steps):
            progress((t + 1) * n, steps * n)
    return Rollout(frames, actions, rewards, next_frames, dones)


def policy_of(agent: ActorCritic, generator: torch.Generator | None = None, *,
              explore: float = 0.0, seed: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """The agent's sampled actions as a function of uint8 frames [N, H, W, C] (for :func:`collect`);
    with probability ``explore`` an action is replaced by a uniformly random one (drawn from a
    generator seeded by ``seed``)."""
    explore = real(explore, "explore", low=0.0, high=1.0)
    rng = np.random.default_rng(seed)

    @torch.no_grad()
    def act(frames: np.ndarray) -> np.ndarray:
        logits, _ = agent(to_planes(frames), generator)
        actions = sample_actions(logits, generator).numpy()
        if explore > 0:
            random = rng.random(len(actions)) < explore
            actions[random] = rng.integers(0, agent.num_actions, int(random.sum()))
        return actions

    return act


# --------------------------------------------------------------------------------------------------
# The stages' files

def _load(path: Path, stage: str) -> dict[str, Any]:
    if not path.exists():
        raise ValueError(f"stages: {path} is missing; run the {stage} stage first")
    return field(load_torch(path), dict, str(path), expected="a dict")


def _shape(record: dict[str, Any], path: Path) -> tuple[tuple[int, int, int], int, int]:
    """(frame_shape, num_actions, channels) of a saved network, each checked before it sizes one."""
    def small(v: Any, limit: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= limit
    frame_shape = field(record.get("frame_shape"), (list, tuple), f"{path}: frame_shape",
                        lambda s: len(s) == 3 and all(small(v, 4096) for v in s), "3 sizes in [1, 4096]")
    num_actions = field(record.get("num_actions"), int, f"{path}: num_actions", lambda v: small(v, 4096),
                        "an int in [1, 4096]")
    channels = field(record.get("channels"), int, f"{path}: channels", lambda v: small(v, 4096), "an int in [1, 4096]")
    return tuple(frame_shape), num_actions, channels


def _load_state(module: nn.Module, state: Any, path: Path) -> None:
    try:
        module.load_state_dict(field(state, dict, f"{path}: state_dict", expected="a dict"))
    except RuntimeError as error:
        raise ValueError(f"{path}: state_dict: expected the weights of {type(module).__name__}, got "
                         f"{str(error)[:300]}") from None


def load_env_model(path: str | os.PathLike) -> EnvModel:
    """The env model saved by the env-model stage (``env_model.pt``), in eval mode."""
    path = Path(path)
    record = _load(path, "env-model")
    frame_shape, num_actions, channels = _shape(record, path)
    with seeded(0):  # weights about to be replaced: drawn without touching torch's global generator
        model = EnvModel(frame_shape, num_actions, channels=channels)
    _load_state(model, record.get("state_dict"), path)
    return model.eval()


def load_rollout_policy(path: str | os.PathLike) -> nn.Module:
    """The rollout policy saved by the distill stage (``rollout_policy.pt``), frames float
    [N, C, H, W] -> logits [N, A]."""
    path = Path(path)
    record = _load(path, "distill")
    with seeded(0):
        policy = rollout_policy_net(*_shape(record, path))
    _load_state(policy, record.get("state_dict"), path)
    return policy.eval()


def _play(config: I2AConfig, policy: Callable[[np.ndarray], np.ndarray], frames: int, seed: int, task: str,
          callbacks: Callbacks) -> Rollout:
    """``frames`` (rounded up to whole steps of the ``config.num_envs`` envs) of ``policy`` in fresh
    envs of ``config.env`` seeded by ``seed``."""
    env = make_vector_env(config.env, config.num_envs, seed, config.frame_cap)
    return collect(env, -(-frames // config.num_envs), policy, seed=seed,
                   progress=lambda done, total: callbacks.on_progress(task, done, total))


@torch.no_grad()
def _in_chunks(net: Callable[[torch.Tensor], torch.Tensor], frames: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """``net`` on uint8 frames [N, H, W, C] as planes, ``chunk`` frames at a time (bounding the
    memory of the float planes): the outputs concatenated, [N, ...]."""
    return torch.cat([net(to_planes(frames[i:i + chunk])) for i in range(0, len(frames), chunk)])


# --------------------------------------------------------------------------------------------------
# The stages

def env_model_stage(run_dir: Path, config: I2AConfig, callbacks: Callbacks) -> dict[str, Any]:
    """Trains the teacher, collects its play, fits the env model and measures its errors."""
    seed = config.seed + TEACHER_SEED
    teacher_config = dataclasses.replace(config, agent="a2c", online_distill=False, steps=config.teacher_frames,
                                         eval_every=max(config.teacher_frames // 10, config.n_steps * config.num_envs))
    result = train_agent(make_agent("a2c", teacher_config, seed=seed), teacher_config, run_dir / "teacher", seed=seed,
                         stage="teacher", callbacks=callbacks)
    policy = policy_of(result.agent.net.eval(), generator(seed + 1), explore=config.explore, seed=seed + 2)
    data = _play(config, policy, config.model_frames, seed + 3, "model data", callbacks)
    steps = len(data.actions)
    held_out = _play(config, policy, max(steps // 3, 16) * config.num_envs, seed + 4, "held-out data", callbacks)
    frame_shape, num_actions = env_spaces(config.env)
    with seeded(seed + 5):
        model = EnvModel(frame_shape, num_actions, channels=config.channels)

    def epoch_done(epoch: int, epochs: int, record: dict[str, float]) -> None:
        callbacks.on_progress("env model epochs", epoch, epochs)
        callbacks.on_record("env model", record)

    history = train_env_model(model, data.transitions(), epochs=config.model_epochs, seed=seed + 5,
                              progress=epoch_done)
    del data
    frames, actions, rewards = held_out.trajectories(15)
    error = prediction_error(model, frames, actions, rewards)._asdict()
    callbacks.on_record("env model error", error)
    record = {"state_dict": model.state_dict(), "frame_shape": list(frame_shape), "num_actions": num_actions,
              "channels": config.channels, "history": history, "error": error, "teacher": result.history,
              "frames": {"teacher": config.teacher_frames, "model_data": steps * config.num_envs}}
    atomic_write(run_dir / "held_out.npz", lambda f: np.savez_compressed(f, frames=frames[:64], actions=actions[:64],
                                                                         rewards=rewards[:64]))
    save_atomically(run_dir / "env_model.pt", record)
    return {"error": error, "frames": record["frames"]}


def distill_stage(run_dir: Path, config: I2AConfig, callbacks: Callbacks) -> dict[str, Any]:
    """Distils the teacher into the small rollout policy offline: cross-entropy to the teacher's
    action probabilities on ``config.distill_frames`` frames of its play, ``config.distill_epochs``
    epochs of Adam; each epoch's record holds the agreement (how often its likeliest action is the
    teacher's) on held-out play."""
    seed = config.seed + TEACHER_SEED
    path = run_dir / "teacher" / "agent.pt"
    teacher = make_agent("a2c", config, seed=seed)
    _load_state(teacher, _load(path, "env-model"), path)
    teacher.eval()
    policy = policy_of(teacher, generator(seed + 6), explore=config.explore, seed=seed + 7)

    def frames_of(seed: int, frames: int, task: str) -> tuple[torch.Tensor, torch.Tensor]:
        rollout = _play(config, policy, frames, seed, task, callbacks)
        x = torch.from_numpy(rollout.transitions().frames)
        return x, _in_chunks(lambda planes: torch.softmax(teacher(planes)[0], -1), x)

    x, target = frames_of(seed + 8, config.distill_frames, "distill data")
    held_x, held_target = frames_of(seed + 9, max(config.distill_frames // 5, config.num_envs), "held-out data")
    frame_shape, num_actions = env_spaces(config.env)
    with seeded(seed + 10):
        net = rollout_policy_net(frame_shape, num_actions, config.channels)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    order_rng = generator(seed + 10)
    history = []
    for epoch in range(config.distill_epochs):
        order, total = torch.randperm(len(x), generator=order_rng), 0.0
        for start in range(0, len(x), 64):
            idx = order[start:start + 64]
            loss = -(target[idx] * F.log_softmax(net(to_planes(x[idx])), -1)).sum(-1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        logits = _in_chunks(net, held_x)
        history.append({"cross_entropy": total / len(x),
                        "held_out_cross_entropy": float(-(held_target * F.log_softmax(logits, -1)).sum(-1).mean()),
                        "agreement": float((logits.argmax(-1) == held_target.argmax(-1)).float().mean())})
        callbacks.on_record("distill", history[-1])
        callbacks.on_progress("distill epochs", epoch + 1, config.distill_epochs)
    save_atomically(run_dir / "rollout_policy.pt", {"state_dict": net.state_dict(), "frame_shape": list(frame_shape),
                                                    "num_actions": num_actions, "channels": config.channels,
                                                    "history": history})
    return history[-1]


def agent_stage(run_dir: Path, config: I2AConfig, callbacks: Callbacks) -> dict[str, Any]:
    """Trains ``config.agent`` on the stages' env model (I2A) and rollout policy (unless distilled
    online), in ``run_dir / config.stage_name``."""
    env_model = load_env_model(run_dir / "env_model.pt") if config.agent == "i2a" else None
    fixed_policy = config.agent != "a2c" and not config.online_distill
    rollout_policy = load_rollout_policy(run_dir / "rollout_policy.pt") if fixed_policy else None
    name = config.stage_name
    result = train_agent(make_agent(config.agent, config, env_model, rollout_policy), config, run_dir / name,
                         stage=name, callbacks=callbacks)
    return {"name": name, "directory": str(run_dir / name), **result.history[-1]}


def pipeline(config: I2AConfig) -> list[Stage]:
    """The stages of ``config``'s run, in order (for :func:`pymbrl.training.stages.run_stages`).
    The env model alone marks the env-model stage done (the teacher only feeds the distill stage);
    the agent stage always runs: its own checkpoint says where it is (and a finished run given more
    steps continues)."""
    needs = (("env_model.pt",) if config.agent == "i2a" else ()) + \
        (("rollout_policy.pt",) if config.agent != "a2c" and not config.online_distill else ())
    return [Stage("env-model", lambda run_dir, callbacks: env_model_stage(run_dir, config, callbacks),
                  makes=("env_model.pt", "teacher/agent.pt"),
                  complete=lambda run_dir: (run_dir / "env_model.pt").is_file()),
            Stage("distill", lambda run_dir, callbacks: distill_stage(run_dir, config, callbacks),
                  makes=("rollout_policy.pt",), needs=("teacher/agent.pt",)),
            Stage("agent", lambda run_dir, callbacks: agent_stage(run_dir, config, callbacks), needs=needs)]
