"""I2A: imagination-augmented agents (Weber et al. 2017), with its model-free and copy-model controls.

An I2A acts on two paths:

- the model-free path, a conv net on the current frame;
- the imagination path: from the current frame, a frozen environment model
  (:class:`pymbrl.models.env_model.EnvModel`) is rolled L steps once per first action, later steps
  following a small rollout policy (:func:`pymbrl.rollout.per_action.per_action_rollouts`, all B
  states x A actions as one batch). A rollout encoder reads each imagined trajectory backwards
  (conv features of each imagined frame with its reward, into an LSTM); the A final states are
  concatenated into the imagination code.

Both paths feed the policy and value heads, trained with A2C (n-step returns, entropy bonus,
RMSprop). The rollout policy is distilled from the agent's policy (cross-entropy to its action
probabilities on the real frames), as in the paper.

The same file trains the paper's controls: ``agent="a2c"`` (the model-free path alone, widened to a
similar number of parameters) and ``agent="copy"`` (the I2A architecture with the environment model
replaced by :class:`~pymbrl.models.env_model.CopyModel`, which returns its input frame and reward 0).

The paper's stages are :func:`collect` (frames of a policy in the real env),
:func:`pymbrl.models.env_model.train_env_model`, then :func:`train` with the model frozen;
:func:`train_stages` runs them in a run directory (env model, distilled rollout policy, agent), as
``pymbrl train i2a`` does. The envs are MiniPacman (``"MiniPacman-<mode>"``) and Atari games
(``"ALE/<Game>-v5"``, :class:`pymbrl.envs.atari.AtariVectorEnv`).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pymbrl._checks import integer, real
from pymbrl.agents.checkpoint import (
    arrays_to_tensors,
    atomic_write,
    field,
    load_torch,
    save_atomically,
    start_run,
    tensors_to_arrays,
)
from pymbrl.envs.minipacman import MAP, MODES, MiniPacmanVectorEnv
from pymbrl.models.env_model import (
    CopyModel,
    EnvModel,
    Transitions,
    prediction_error,
    to_planes,
    train_env_model,
)
from pymbrl.rollout.per_action import per_action_rollouts

AGENTS = ("i2a", "a2c", "copy")
FRAME_SHAPE = (3, *MAP.shape)  # MiniPacman's planes [C, H, W]
NUM_ACTIONS = 5  # MiniPacman's
MINIPACMAN = "MiniPacman-"
STAGES = ("env-model", "distill", "agent")


def check_env_id(env_id: Any) -> str:
    """``env_id`` if it names an env I2A trains on: ``"MiniPacman-<mode>"`` (a mode of
    :data:`pymbrl.envs.minipacman.MODES`) or an Atari id ``"ALE/<Game>-v5"``."""
    if isinstance(env_id, str) and (env_id.startswith("ALE/") or
                                    (env_id.startswith(MINIPACMAN) and env_id[len(MINIPACMAN):] in MODES)):
        return env_id
    raise ValueError(f"env: expected 'MiniPacman-<mode>' with a mode of {MODES} or an Atari id 'ALE/<Game>-v5', "
                     f"got {env_id!r}")


def make_vector_env(env_id: str, num_envs: int, seed: int | None, frame_cap: int = 1000) -> gym.vector.VectorEnv:
    """The batched env of ``env_id`` (see :func:`check_env_id`): a
    :class:`~pymbrl.envs.minipacman.MiniPacmanVectorEnv` truncating at ``frame_cap``, or an
    :class:`~pymbrl.envs.atari.AtariVectorEnv` with the usual preprocessing (84x84 grey frames,
    4 stacked, rewards clipped to their sign). Both autoreset in the same step and hold
    ``final_obs``, ``episode_return`` and ``episode_length`` in every info."""
    env_id = check_env_id(env_id)
    if env_id.startswith(MINIPACMAN):
        return MiniPacmanVectorEnv(num_envs, mode=env_id[len(MINIPACMAN):], frame_cap=frame_cap, seed=seed)
    from pymbrl.envs.atari import AtariVectorEnv

    return AtariVectorEnv(env_id, num_envs, seed)


def env_spaces(env_id: str) -> tuple[tuple[int, int, int], int]:
    """(frame planes (C, H, W), number of actions) of ``env_id``."""
    if check_env_id(env_id).startswith(MINIPACMAN):
        return FRAME_SHAPE, NUM_ACTIONS
    return _atari_spaces(env_id)


@functools.cache
def _atari_spaces(env_id: str) -> tuple[tuple[int, int, int], int]:
    """Read from one env (loading the game's ROM), once per id."""
    env = make_vector_env(env_id, 1, 0)
    h, w, c = env.single_observation_space.shape
    env.close()
    return (c, h, w), int(env.single_action_space.n)


@dataclass
class I2AConfig:
    """Hyper-parameters. A2C's are those of Mnih et al. 2016 as in OpenAI baselines' A2C (RMSprop lr
    7e-4, alpha 0.99, eps 1e-5; 5-step returns; entropy 0.01; value 0.5; gradient norm 0.5).

    The network sizes are the paper's shapes scaled to a 2-core CPU: 16-channel convs (the paper:
    16/32), an LSTM of 64 units (the paper: 256), rollouts of 3 steps (the paper's MiniPacman depth is
    not stated in the seed; 3 keeps a step's imagination to 16 envs x 5 actions x 3 = 240 model calls).
    :meth:`for_env` gives the Atari sizes.

    The last group sizes the stages before the agent (:func:`train_stages`): a model-free A2C
    "teacher" trained for ``teacher_frames``; ``model_frames`` frames of it (taking a random action
    with probability ``explore``, so that every action is seen) to fit the env model for
    ``model_epochs``; ``distill_frames`` more to distil the rollout policy for ``distill_epochs``.
    """

    env: str = "MiniPacman-regular"
    num_envs: int = 16
    n_steps: int = 5
    gamma: float = 0.99
    lr: float = 7e-4
    rms_alpha: float = 0.99
    rms_eps: float = 1e-5
    entropy_coef: float = 0.01
    value_coef: float = 0.5
    max_grad_norm: float = 0.5
    distill_coef: float = 1.0
    rollout_length: int = 3
    channels: int = 16
    hidden: int = 256
    encoder_hidden: int = 64
    a2c_hidden: int = 512
    frame_cap: int = 1000
    teacher_frames: int = 100_000
    model_frames: int = 100_000
    model_epochs: int = 12
    explore: float = 0.25
    distill_frames: int = 50_000
    distill_epochs: int = 5

    def __post_init__(self) -> None:
        check_env_id(self.env)
        for name in ("num_envs", "n_steps", "rollout_length", "channels", "hidden", "encoder_hidden", "a2c_hidden",
                     "teacher_frames", "model_frames", "model_epochs", "distill_frames", "distill_epochs"):
            integer(getattr(self, name), name)
        integer(self.frame_cap, "frame_cap", minimum=0)
        real(self.gamma, "gamma", low=0.0, high=1.0)
        real(self.explore, "explore", low=0.0, high=1.0)
        for name in ("lr", "rms_alpha", "rms_eps", "entropy_coef", "value_coef", "max_grad_norm", "distill_coef"):
            real(getattr(self, name), name, low=0.0)

    @classmethod
    def for_env(cls, env_id: str, **overrides: Any) -> I2AConfig:
        """The defaults for ``env_id``: MiniPacman's above; on Atari frames the convs are the Nature
        DQN stack with 32/64/64 channels, the model-free control's layer is sized to match the I2A's
        parameters (1.98M vs 2.00M), and the stages are sized for a GPU and the memory of 84x84x4
        frames (a 500k-frame teacher; 50k frames, 2.8 GB, for the env model)."""
        if check_env_id(env_id).startswith("ALE/"):
            overrides = {"channels": 32, "a2c_hidden": 560, "teacher_frames": 500_000, "model_frames": 50_000,
                         "distill_frames": 20_000, **overrides}
        return cls(env=env_id, **overrides)


class ConvFeatures(nn.Module):
    """Conv features of frames float [N, C, H, W] -> [N, F]. Small frames (MiniPacman's) get two 3x3
    convs, the second of stride 2; frames of 64 pixels or more a side get the Nature DQN stack
    (8x8 stride 4, 4x4 stride 2, 3x3), with ``channels``, 2 x and 2 x ``channels``."""

    def __init__(self, frame_shape: tuple[int, int, int], channels: int):
        super().__init__()
        c, h, w = frame_shape
        if min(h, w) >= 64:
            self.net = nn.Sequential(nn.Conv2d(c, channels, 8, stride=4), nn.ReLU(),
                                     nn.Conv2d(channels, 2 * channels, 4, stride=2), nn.ReLU(),
                                     nn.Conv2d(2 * channels, 2 * channels, 3), nn.ReLU(), nn.Flatten())
        else:
            self.net = nn.Sequential(nn.Conv2d(c, channels, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten())
        with torch.no_grad():
            self.size = self.net(torch.zeros(1, *frame_shape)).shape[1]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames)


class RolloutEncoder(nn.Module):
    """Encodes imagined trajectories [L, B, A, C, H, W] (+ rewards [L, B, A]) into codes [B, A x E],
    reading each trajectory from its last step to its first, as in the paper."""

    def __init__(self, frame_shape: tuple[int, int, int], channels: int, hidden: int):
        super().__init__()
        self.features = ConvFeatures(frame_shape, channels)
        self.lstm = nn.LSTM(self.features.size + 1, hidden)

    def forward(self, frames: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        length, batch, actions = rewards.shape
        features = self.features(frames.flatten(0, 2)).view(length, batch * actions, -1)
        steps = torch.cat([features, rewards.reshape(length, batch * actions, 1)], -1).flip(0)
        _, (h, _) = self.lstm(steps)
        return h[-1].view(batch, -1)


def rollout_policy_net(frame_shape: tuple[int, int, int], num_actions: int, channels: int) -> nn.Module:
    """The small rollout policy the paper distils: conv features and one linear layer, frames
    float [N, C, H, W] -> logits [N, A]."""
    features = ConvFeatures(frame_shape, channels)
    return nn.Sequential(features, nn.Linear(features.size, num_actions))


class ActorCritic(nn.Module):
    """The policy and value of an I2A (``imagination`` given) or of the model-free baseline.

    Parameters
    ----------
    frame_shape : (C, H, W); num_actions : int
    config : I2AConfig (sizes and rollout length)
    imagination : EnvModel, CopyModel or None
        The frozen model the agent imagines with; None gives the model-free A2C, its path widened to
        ``config.a2c_hidden`` units so that it has about as many parameters as the I2A.
    rollout_policy : module, frames [N, C, H, W] -> logits [N, A], or None
        A fixed, pre-trained rollout policy (the seed's way, e.g. :class:`PolicyLogits` of a trained
        A2C); None gives the paper's, a small conv net distilled from this agent's policy.
    """

    def __init__(self, frame_shape: tuple[int, int, int], num_actions: int, config: I2AConfig,
                 imagination: EnvModel | CopyModel | None = None, rollout_policy: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.num_actions = num_actions
        hidden = config.hidden if imagination is not None else config.a2c_hidden
        self.model_free = ConvFeatures(frame_shape, config.channels)
        self.model_free_fc = nn.Linear(self.model_free.size, hidden)
        code = 0
        self.imagination = imagination
        if imagination is not None:
            imagination.requires_grad_(False)
            self.distilled = rollout_policy is None
            if self.distilled:
                rollout_policy = rollout_policy_net(frame_shape, num_actions, config.channels)
            else:
                rollout_policy.requires_grad_(False)
            self.rollout_policy = rollout_policy
            self.encoder = RolloutEncoder(frame_shape, config.channels, config.encoder_hidden)
            code = num_actions * config.encoder_hidden
        self.trunk = nn.Linear(hidden + code, config.hidden)
        self.policy = nn.Linear(config.hidden, num_actions)
        self.value = nn.Linear(config.hidden, 1)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Everything but the environment model's weights."""
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """frames float [B, C, H, W] in [0, 1] -> (action logits [B, A], values [B])."""
        h = F.relu(self.model_free_fc(self.model_free(frames)))
        if self.imagination is not None:
            rollouts = per_action_rollouts(self.imagination, self.rollout_policy, frames, self.config.rollout_length,
                                           generator=generator)
            h = torch.cat([h, self.encoder(rollouts.frames, rollouts.rewards)], -1)
        h = F.relu(self.trunk(h))
        return self.policy(h), self.value(h).squeeze(-1)


class PolicyLogits(nn.Module):
    """A trained agent's action logits as a rollout policy: frames [N, C, H, W] -> logits [N, A]."""

    def __init__(self, agent: ActorCritic):
        super().__init__()
        if agent.imagination is not None:
            raise ValueError("agent: expected a model-free agent (an imagining rollout policy would imagine at every step)")
        self.agent = agent

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.agent(frames)[0]


def make_agent(agent: str, config: I2AConfig, env_model: EnvModel | None = None,
               rollout_policy: nn.Module | None = None) -> ActorCritic:
    """``agent`` "i2a" (needs ``env_model``), "copy" or "a2c" on the frames of ``config.env``;
    ``rollout_policy`` as in :class:`ActorCritic` (None: distilled)."""
    if agent not in AGENTS:
        raise ValueError(f"agent: expected one of {AGENTS}, got {agent!r}")
    frame_shape, num_actions = env_spaces(config.env)
    if agent == "i2a":
        if not isinstance(env_model, EnvModel):
            raise ValueError(f"env_model: expected an EnvModel for agent 'i2a', got {type(env_model).__name__}")
        if env_model.frame_shape != frame_shape or env_model.num_actions != num_actions:
            raise ValueError(f"env_model: expected frames {frame_shape} and {num_actions} actions ({config.env}), got "
                             f"{env_model.frame_shape} and {env_model.num_actions}")
        return ActorCritic(frame_shape, num_actions, config, env_model, rollout_policy)
    if agent == "copy":
        return ActorCritic(frame_shape, num_actions, config, CopyModel(frame_shape, num_actions), rollout_policy)
    return ActorCritic(frame_shape, num_actions, config)


def sample_actions(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)


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
    """``steps`` steps of every env of ``env`` (as :func:`make_vector_env` makes them) under
    ``policy`` (uint8 frames [N, H, W, C] -> int actions [N]); None picks uniformly random actions
    (from a generator seeded by ``seed``). ``progress`` gets (frames done, frames in all) now and then."""
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


class TrainResult(NamedTuple):
    """history : one record per log interval (env frames, mean return of the episodes finished in the
    last 100, losses, seconds). agent : the trained ActorCritic."""

    history: list[dict[str, float]]
    agent: ActorCritic


def _digest(module: nn.Module | None) -> str:
    """A fingerprint of a module's weights (so that a run is not resumed with another env model)."""
    if module is None:
        return "none"
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def train(agent: str, frames: int, config: I2AConfig | None = None, env_model: EnvModel | None = None, *,
          rollout_policy: nn.Module | None = None, seed: int | None = None, run_dir: str | os.PathLike | None = None,
          log_every: int = 10_000, checkpoint_every: int = 50_000,
          progress: Callable[[dict[str, float]], None] | None = None,
          on_update: Callable[[int], None] | None = None) -> TrainResult:
    """Trains ``agent`` ("i2a", "copy" or "a2c") with A2C on ``config.env`` for ``frames`` env frames.
    ``rollout_policy`` (a fixed module, e.g. :class:`PolicyLogits`) replaces the distilled one.

    The record of each ``log_every`` frames holds ``frames``, ``return`` (the mean return of the last
    100 episodes that ended, NaN before the first), ``episodes``, the mean losses since the last record
    and ``seconds``; it goes to ``progress``. ``on_update(frames)`` is called after every update.

    With ``run_dir``, the records go to ``log.csv``, a checkpoint (weights, optimiser, generators,
    every game's state) to ``checkpoint/`` every ``checkpoint_every`` frames and at the end, and the
    final weights to ``agent.pt``. Called again with the same arguments, it resumes from the
    checkpoint and continues exactly as the uninterrupted run would have; resuming with another
    configuration, env model or rollout policy raises ValueError.
    """
    config = config or I2AConfig()
    frames = integer(frames, "frames")
    log_every = integer(log_every, "log_every")
    run = start_run(run_dir, frames, {"algorithm": f"i2a/{agent}", "config": repr(config),
                                      "env_model": _digest(env_model), "rollout_policy": _digest(rollout_policy)},
                    seed, checkpoint_every)
    seed = run.seed
    torch.manual_seed(seed)  # the networks' initial weights
    net = make_agent(agent, config, env_model, rollout_policy)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.RMSprop(net.trainable_parameters(), lr=config.lr, alpha=config.rms_alpha, eps=config.rms_eps)
    env = make_vector_env(config.env, config.num_envs, seed, config.frame_cap)
    obs, _ = env.reset(seed=seed)
    returns: deque[float] = deque(maxlen=100)
    episodes, done_frames, next_log = 0, 0, log_every
    sums: dict[str, float] = {}
    updates = 0
    if run.state is not None:
        state = run.state
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        obs = np.stack([env.set_state(i, s) for i, s in enumerate(tensors_to_arrays(state["env"]))])
        returns.extend(state["returns"])
        episodes, done_frames, next_log = state["episodes"], run.step, state["next_log"]
        sums, updates = state["sums"], state["updates"]
    if run.directory is not None:
        text = repr({"agent": agent, "seed": seed, **asdict(config)}) + "\n"
        atomic_write(run.directory / "config.txt", lambda f: f.write(text.encode()))
    while done_frames < frames:
        log_probs, values, entropies, rewards, masks, frames_seen, probs = [], [], [], [], [], [], []
        for _ in range(config.n_steps):
            x = to_planes(obs)
            logits, value = net(x, generator)
            action = sample_actions(logits.detach(), generator)
            log_p = F.log_softmax(logits, -1)
            log_probs.append(log_p.gather(1, action[:, None]).squeeze(1))
            entropies.append(-(log_p.exp() * log_p).sum(-1))
            values.append(value)
            frames_seen.append(x)
            probs.append(log_p.detach().exp())
            obs, reward, terminated, truncated, info = env.step(action.numpy())
            reward = torch.as_tensor(reward, dtype=torch.float32)
            if truncated.any():  # a cut episode still has a future: bootstrap from its final frame
                with torch.no_grad():
                    _, final_value = net(to_planes(info["final_obs"][truncated]), generator)
                reward[torch.as_tensor(truncated)] += config.gamma * final_value
            rewards.append(reward)
            masks.append(torch.as_tensor(~(terminated | truncated), dtype=torch.float32))
            ended = info["_final_obs"]
            returns.extend(info["episode_return"][ended].tolist())
            episodes += int(ended.sum())
        with torch.no_grad():
            _, bootstrap = net(to_planes(obs), generator)
        targets = n_step_returns(torch.stack(rewards), torch.stack(masks), bootstrap, config.gamma)
        values_t, log_probs_t = torch.stack(values), torch.stack(log_probs)
        advantages = targets - values_t
        policy_loss = -(log_probs_t * advantages.detach()).mean()
        value_loss = advantages.pow(2).mean()
        entropy = torch.stack(entropies).mean()
        loss = policy_loss + config.value_coef * value_loss - config.entropy_coef * entropy
        parts = {"policy_loss": policy_loss.item(), "value_loss": value_loss.item(), "entropy": entropy.item()}
        if net.imagination is not None and net.distilled:
            # Distillation: the rollout policy imitates the agent's action probabilities on real frames.
            rollout_log_p = F.log_softmax(net.rollout_policy(torch.cat(frames_seen)), -1)
            distill = -(torch.cat(probs) * rollout_log_p).sum(-1).mean()
            loss = loss + config.distill_coef * distill
            parts["distill_loss"] = distill.item()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss: not finite ({loss.item()}) at {done_frames} frames; the last "
                                     "checkpoint is kept")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.trainable_parameters(), config.max_grad_norm)
        optimizer.step()
        updates += 1
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
        done_frames += config.n_steps * config.num_envs
        if done_frames >= next_log or done_frames >= frames:
            run.evaluated({"frames": done_frames, "return": float(np.mean(returns)) if returns else float("nan"),
                           "episodes": episodes, **{k: v / updates for k, v in sums.items()}}, progress)
            sums, updates = {}, 0
            next_log += log_every
        if run.directory is not None and (done_frames >= frames or run.due(done_frames, True)):
            run.save(done_frames, {"net": net.state_dict(), "optimizer": optimizer.state_dict(),
                                   "generator": generator.get_state(),
                                   "env": arrays_to_tensors([env.get_state(i) for i in range(env.num_envs)]),
                                   "returns": list(returns), "episodes": episodes, "next_log": next_log,
                                   "sums": sums, "updates": updates}, {})
        if on_update is not None:
            on_update(done_frames)
    env.close()
    if run.directory is not None:
        save_atomically(run.directory / "agent.pt", net.state_dict())
    return TrainResult(run.history, net)


def n_step_returns(rewards: torch.Tensor, masks: torch.Tensor, bootstrap: torch.Tensor, gamma: float) -> torch.Tensor:
    """A2C's targets: rewards and masks float [T, N] (mask 0 where the step ended its episode),
    bootstrap values [N] of the state after the last step -> discounted returns [T, N]."""
    targets = torch.empty_like(rewards)
    ret = bootstrap
    for t in reversed(range(len(rewards))):
        ret = rewards[t] + gamma * masks[t] * ret
        targets[t] = ret
    return targets


def parameter_counts(config: I2AConfig | None = None) -> dict[str, int]:
    """Trainable parameters of each agent (the I2A's rollout policy included, its env model not)."""
    config = config or I2AConfig()
    frame_shape, num_actions = env_spaces(config.env)
    counts = {}
    for agent in AGENTS:
        model = EnvModel(frame_shape, num_actions, channels=config.channels) if agent == "i2a" else None
        counts[agent] = sum(p.numel() for p in make_agent(agent, config, model).trainable_parameters())
    return counts


# --------------------------------------------------------------------------------------------------
# The stages: env model (with the model-free teacher whose play it learns from), rollout policy, agent

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
    model = EnvModel(frame_shape, num_actions, channels=channels)
    _load_state(model, record.get("state_dict"), path)
    return model.eval()


def load_rollout_policy(path: str | os.PathLike) -> nn.Module:
    """The rollout policy saved by the distill stage (``rollout_policy.pt``), frames float
    [N, C, H, W] -> logits [N, A]."""
    path = Path(path)
    record = _load(path, "distill")
    policy = rollout_policy_net(*_shape(record, path))
    _load_state(policy, record.get("state_dict"), path)
    return policy.eval()


def _teacher(run_dir: Path, config: I2AConfig) -> ActorCritic:
    path = run_dir / "teacher" / "agent.pt"
    teacher = make_agent("a2c", config)
    _load_state(teacher, _load(path, "env-model"), path)
    return teacher.eval()


def _play(config: I2AConfig, policy: Callable[[np.ndarray], np.ndarray], frames: int, seed: int, task: str,
          progress: Callable[[str, int, int], None]) -> Rollout:
    """``frames`` (rounded up to whole steps of the ``config.num_envs`` envs) of ``policy`` in fresh
    envs of ``config.env`` seeded by ``seed``."""
    env = make_vector_env(config.env, config.num_envs, seed, config.frame_cap)
    return collect(env, -(-frames // config.num_envs), policy, seed=seed, progress=lambda d, n: progress(task, d, n))


@torch.no_grad()
def _in_chunks(net: Callable[[torch.Tensor], torch.Tensor], frames: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """``net`` on uint8 frames [N, H, W, C] as planes, ``chunk`` frames at a time (bounding the
    memory of the float planes): the outputs concatenated, [N, ...]."""
    return torch.cat([net(to_planes(frames[i:i + chunk])) for i in range(0, len(frames), chunk)])


def env_model_stage(run_dir: Path, config: I2AConfig, seed: int, log: Callable[[str, dict], None],
                    progress: Callable[[str, int, int], None], checkpoint_every: int) -> dict[str, Any]:
    """Trains the model-free teacher (``teacher/``, resumable), collects ``config.model_frames`` of its
    play with ``config.explore`` random actions, fits the env model and measures its 1-, 5- and
    15-step errors on held-out play. Writes ``env_model.pt`` and ``held_out.npz`` (64 windows)."""
    teacher_seed = seed + 100  # the teacher is never an a2c control of the agent stage
    frame_shape, num_actions = env_spaces(config.env)
    result = train("a2c", config.teacher_frames, config, seed=teacher_seed, run_dir=run_dir / "teacher",
                   log_every=max(config.teacher_frames // 10, config.n_steps * config.num_envs),
                   checkpoint_every=checkpoint_every, progress=lambda r: log("teacher", r),
                   on_update=lambda f: progress("teacher", f, config.teacher_frames))
    policy = policy_of(result.agent.eval(), torch.Generator().manual_seed(teacher_seed + 1), explore=config.explore,
                       seed=teacher_seed + 2)
    data = _play(config, policy, config.model_frames, teacher_seed + 3, "model data", progress)
    steps = len(data.actions)
    held_out = _play(config, policy, max(steps // 3, 16) * config.num_envs, teacher_seed + 4, "held-out data", progress)
    torch.manual_seed(teacher_seed + 5)
    model = EnvModel(frame_shape, num_actions, channels=config.channels)
    history = train_env_model(model, data.transitions(), epochs=config.model_epochs, seed=teacher_seed + 5,
                              progress=lambda e, n, r: (progress("env model epochs", e, n), log("env model", r)))
    del data
    frames, actions, rewards = held_out.trajectories(15)
    error = prediction_error(model, frames, actions, rewards)
    log("env model error", error._asdict())
    record = {"state_dict": model.state_dict(), "frame_shape": list(frame_shape), "num_actions": num_actions,
              "channels": config.channels, "history": history, "error": error._asdict(),
              "teacher": result.history, "frames": {"teacher": config.teacher_frames, "model_data": steps * config.num_envs}}
    atomic_write(run_dir / "held_out.npz", lambda f: np.savez_compressed(f, frames=frames[:64], actions=actions[:64],
                                                                         rewards=rewards[:64]))
    save_atomically(run_dir / "env_model.pt", record)
    return {"error": error._asdict(), "frames": record["frames"]}


def distill_stage(run_dir: Path, config: I2AConfig, seed: int, log: Callable[[str, dict], None],
                  progress: Callable[[str, int, int], None]) -> dict[str, Any]:
    """Distils the teacher into the small rollout policy (:func:`rollout_policy_net`) offline, the
    seed's pre-trained rollout policy: cross-entropy to the teacher's action probabilities on
    ``config.distill_frames`` frames of its play, ``config.distill_epochs`` epochs of Adam. Writes
    ``rollout_policy.pt`` with its agreement (how often its likeliest action is the teacher's) on
    held-out play."""
    teacher, teacher_seed = _teacher(run_dir, config), seed + 100
    frame_shape, num_actions = env_spaces(config.env)
    policy = policy_of(teacher, torch.Generator().manual_seed(teacher_seed + 6), explore=config.explore,
                       seed=teacher_seed + 7)

    def frames_of(seed: int, frames: int, task: str) -> tuple[torch.Tensor, torch.Tensor]:
        rollout = _play(config, policy, frames, seed, task, progress)
        x = torch.from_numpy(rollout.transitions().frames)
        return x, _in_chunks(lambda planes: torch.softmax(teacher(planes)[0], -1), x)

    x, target = frames_of(teacher_seed + 8, config.distill_frames, "distill data")
    held_x, held_target = frames_of(teacher_seed + 9, max(config.distill_frames // 5, config.num_envs), "held-out data")
    torch.manual_seed(teacher_seed + 10)
    net = rollout_policy_net(frame_shape, num_actions, config.channels)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(teacher_seed + 10)
    history = []
    for epoch in range(config.distill_epochs):
        order, total = torch.randperm(len(x), generator=generator), 0.0
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
        log("distill", history[-1])
        progress("distill epochs", epoch + 1, config.distill_epochs)
    save_atomically(run_dir / "rollout_policy.pt", {"state_dict": net.state_dict(), "frame_shape": list(frame_shape),
                                                    "num_actions": num_actions, "channels": config.channels,
                                                    "history": history})
    return history[-1]


def check_stages(run_dir: str | os.PathLike, stages: Sequence[str], *, agent: str = "i2a",
                 online_distill: bool = False) -> None:
    """Raises ValueError (naming ``stages`` or ``agent``) if a stage of ``stages`` needs what an
    earlier stage makes in ``run_dir`` and that stage neither ran before nor is among ``stages``:
    ``distill`` needs the teacher (``env-model``); ``agent`` needs ``env_model.pt`` (I2A) and
    ``rollout_policy.pt`` (I2A and the copy-model control, unless distilled online)."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise ValueError(f"stages: expected some of {list(STAGES)}, got {list(stages)}")
    if agent not in AGENTS:
        raise ValueError(f"agent: expected one of {AGENTS}, got {agent!r}")
    run = Path(run_dir)
    needs: list[tuple[str, Path, str]] = []
    if "distill" in stages and not (run / "rollout_policy.pt").exists():
        needs.append(("distill", run / "teacher" / "agent.pt", "env-model"))
    if "agent" in stages:
        if agent == "i2a":
            needs.append(("agent", run / "env_model.pt", "env-model"))
        if agent != "a2c" and not online_distill:
            needs.append(("agent", run / "rollout_policy.pt", "distill"))
    for stage, path, need in needs:
        if need not in stages and not path.exists():
            raise ValueError(f"stages: {stage} needs {path}, which is missing; run the {need} stage first")


def train_stages(run_dir: str | os.PathLike, stages: Sequence[str] = STAGES, config: I2AConfig | None = None, *,
                 agent: str = "i2a", frames: int = 200_000, online_distill: bool = False, seed: int = 0,
                 log_every: int = 10_000, checkpoint_every: int = 50_000,
                 log: Callable[[str, dict], None] | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Runs the named stages of I2A's training in ``run_dir``, in the paper's order:

    ``env-model``
        a model-free A2C teacher (``teacher/``), then the env model fitted to its play
        (``env_model.pt``, with its 1-, 5- and 15-step errors; ``held_out.npz``);
    ``distill``
        the rollout policy distilled from the teacher (``rollout_policy.pt``);
    ``agent``
        ``agent`` ("i2a", or the controls "a2c" and "copy") trained with A2C for ``frames`` env
        frames, its env model and rollout policy frozen, in ``<agent>/`` (``log.csv``,
        ``checkpoint/``, ``agent.pt``). With ``online_distill`` the rollout policy is instead
        distilled from the agent while it trains (the paper's way), in ``<agent>-online/``.

    A stage whose artefact exists is skipped; the teacher and the agent resume from their
    checkpoints, so an interrupted call resumes when made again. ``log(stage, record)`` gets each
    record and ``progress(task, done, total)`` the progress of each task. Returns what each stage
    that ran measured.
    """
    config = config or I2AConfig()
    check_stages(run_dir, stages, agent=agent, online_distill=online_distill)
    frames = integer(frames, "frames")
    log = log or (lambda stage, record: None)
    progress = progress or (lambda task, done, total: None)
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}
    if "env-model" in stages and not (run / "env_model.pt").exists():
        summary["env-model"] = env_model_stage(run, config, seed, log, progress, checkpoint_every)
    if "distill" in stages and not (run / "rollout_policy.pt").exists():
        summary["distill"] = distill_stage(run, config, seed, log, progress)
    if "agent" in stages:
        env_model = load_env_model(run / "env_model.pt") if agent == "i2a" else None
        rollout_policy = None
        if agent != "a2c" and not online_distill:
            rollout_policy = load_rollout_policy(run / "rollout_policy.pt")
        name = f"{agent}-online" if online_distill and agent != "a2c" else agent
        result = train(agent, frames, config, env_model, rollout_policy=rollout_policy, seed=seed,
                       run_dir=run / name, log_every=log_every, checkpoint_every=checkpoint_every,
                       progress=lambda r: log(name, r), on_update=lambda f: progress(name, f, frames))
        summary["agent"] = {"name": name, "directory": str(run / name), **result.history[-1]}
    return summary
