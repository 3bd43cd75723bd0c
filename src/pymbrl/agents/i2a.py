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

The three stages of the paper are :func:`collect` (frames of a policy in the real env),
:func:`pymbrl.models.env_model.train_env_model`, then :func:`train` with the model frozen.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pymbrl._checks import integer, real
from pymbrl.agents.checkpoint import start_run
from pymbrl.envs.minipacman import MAP, MiniPacmanVectorEnv
from pymbrl.models.env_model import CopyModel, EnvModel, Transitions, to_planes
from pymbrl.rollout.per_action import per_action_rollouts

AGENTS = ("i2a", "a2c", "copy")
FRAME_SHAPE = (3, *MAP.shape)  # the networks' planes [C, H, W]
NUM_ACTIONS = 5


@dataclass
class I2AConfig:
    """Hyper-parameters. A2C's are those of Mnih et al. 2016 as in OpenAI baselines' A2C (RMSprop lr
    7e-4, alpha 0.99, eps 1e-5; 5-step returns; entropy 0.01; value 0.5; gradient norm 0.5).

    The network sizes are the paper's shapes scaled to a 2-core CPU: 16-channel convs (the paper:
    16/32), an LSTM of 64 units (the paper: 256), rollouts of 3 steps (the paper's MiniPacman depth is
    not stated in the seed; 3 keeps a step's imagination to 16 envs x 5 actions x 3 = 240 model calls).
    """

    mode: str = "regular"
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

    def __post_init__(self) -> None:
        for name in ("num_envs", "n_steps", "rollout_length", "channels", "hidden", "encoder_hidden", "a2c_hidden"):
            integer(getattr(self, name), name)
        integer(self.frame_cap, "frame_cap", minimum=0)
        real(self.gamma, "gamma", low=0.0, high=1.0)
        for name in ("lr", "rms_alpha", "rms_eps", "entropy_coef", "value_coef", "max_grad_norm", "distill_coef"):
            real(getattr(self, name), name, low=0.0)


class ConvFeatures(nn.Module):
    """Two 3x3 convs (the second of stride 2) and a flatten: float [N, C, H, W] -> [N, F]."""

    def __init__(self, frame_shape: tuple[int, int, int], channels: int):
        super().__init__()
        c, h, w = frame_shape
        self.net = nn.Sequential(nn.Conv2d(c, channels, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten())
        self.size = channels * ((h + 1) // 2) * ((w + 1) // 2)

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
                rollout_features = ConvFeatures(frame_shape, config.channels)
                rollout_policy = nn.Sequential(rollout_features, nn.Linear(rollout_features.size, num_actions))
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
    """``agent`` "i2a" (needs ``env_model``), "copy" or "a2c" on MiniPacman frames; ``rollout_policy``
    as in :class:`ActorCritic` (None: distilled)."""
    if agent not in AGENTS:
        raise ValueError(f"agent: expected one of {AGENTS}, got {agent!r}")
    if agent == "i2a":
        if not isinstance(env_model, EnvModel):
            raise ValueError(f"env_model: expected an EnvModel for agent 'i2a', got {type(env_model).__name__}")
        if env_model.frame_shape != FRAME_SHAPE or env_model.num_actions != NUM_ACTIONS:
            raise ValueError(f"env_model: expected frames {FRAME_SHAPE} and {NUM_ACTIONS} actions, got "
                             f"{env_model.frame_shape} and {env_model.num_actions}")
        return ActorCritic(FRAME_SHAPE, NUM_ACTIONS, config, env_model, rollout_policy)
    if agent == "copy":
        return ActorCritic(FRAME_SHAPE, NUM_ACTIONS, config, CopyModel(FRAME_SHAPE, NUM_ACTIONS), rollout_policy)
    return ActorCritic(FRAME_SHAPE, NUM_ACTIONS, config)


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


def collect(env: MiniPacmanVectorEnv, steps: int, policy: Callable[[np.ndarray], np.ndarray] | None = None,
            *, seed: int = 0) -> Rollout:
    """``steps`` steps of every env of ``env`` under ``policy`` (uint8 frames [N, H, W, C] -> int
    actions [N]); None picks uniformly random actions (from a generator seeded by ``seed``)."""
    steps = integer(steps, "steps")
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    n = env.num_envs
    frames = np.empty((steps, *obs.shape), np.uint8)
    next_frames = np.empty_like(frames)
    actions = np.empty((steps, n), np.int64)
    rewards = np.empty((steps, n), np.float32)
    dones = np.empty((steps, n), bool)
    for t in range(steps):
        frames[t] = obs
        actions[t] = rng.integers(0, NUM_ACTIONS, n) if policy is None else policy(obs)
        obs, rewards[t], terminated, truncated, info = env.step(actions[t])
        dones[t] = terminated | truncated
        next_frames[t] = np.where(info["_final_obs"][:, None, None, None], info["final_obs"], obs)
    return Rollout(frames, actions, rewards, next_frames, dones)


def policy_of(agent: ActorCritic, generator: torch.Generator | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The agent's sampled actions as a function of uint8 frames [N, H, W, C] (for :func:`collect`)."""

    @torch.no_grad()
    def act(frames: np.ndarray) -> np.ndarray:
        logits, _ = agent(to_planes(frames), generator)
        return sample_actions(logits, generator).numpy()

    return act


class TrainResult(NamedTuple):
    """history : one record per log interval (env frames, mean return of the episodes finished in the
    last 100, losses, seconds). agent : the trained ActorCritic."""

    history: list[dict[str, float]]
    agent: ActorCritic


def train(agent: str, frames: int, config: I2AConfig | None = None, env_model: EnvModel | None = None, *,
          rollout_policy: nn.Module | None = None, seed: int | None = None, run_dir: str | os.PathLike | None = None, log_every: int = 10_000,
          progress: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """Trains ``agent`` ("i2a", "copy" or "a2c") with A2C on MiniPacman for ``frames`` env frames.
    ``rollout_policy`` (a fixed module, e.g. :class:`PolicyLogits`) replaces the distilled one.

    The record of each ``log_every`` frames holds ``frames``, ``return`` (the mean return of the last
    100 episodes that ended, NaN before the first), ``episodes``, the mean losses since the last record
    and ``seconds``. With ``run_dir``, the records go to ``log.csv`` and the final weights to
    ``agent.pt`` (the run is not resumable: MiniPacman's state is not checkpointed).
    """
    config = config or I2AConfig()
    frames = integer(frames, "frames")
    log_every = integer(log_every, "log_every")
    # No checkpoints are saved (so nothing resumes); the Run keeps the seed, the history and log.csv.
    run = start_run(run_dir, frames, {"algorithm": f"i2a/{agent}", "config": repr(config)}, seed)
    seed = run.seed
    torch.manual_seed(seed)  # the networks' initial weights
    net = make_agent(agent, config, env_model, rollout_policy)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.RMSprop(net.trainable_parameters(), lr=config.lr, alpha=config.rms_alpha, eps=config.rms_eps)
    env = MiniPacmanVectorEnv(config.num_envs, mode=config.mode, frame_cap=config.frame_cap, seed=seed)
    obs, _ = env.reset(seed=seed)
    returns: deque[float] = deque(maxlen=100)
    episodes, done_frames, next_log = 0, 0, log_every
    sums: dict[str, float] = {}
    updates = 0
    if run.directory is not None:
        (run.directory / "config.txt").write_text(repr({"agent": agent, "seed": seed, **asdict(config)}) + "\n")
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
        targets = []
        ret = bootstrap
        for t in reversed(range(config.n_steps)):
            ret = rewards[t] + config.gamma * masks[t] * ret
            targets.append(ret)
        targets = torch.stack(targets[::-1])
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
            raise FloatingPointError(f"loss: not finite ({loss.item()}) at {done_frames} frames")
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
    env.close()
    if run.directory is not None:
        torch.save(net.state_dict(), run.directory / "agent.pt")
    return TrainResult(run.history, net)


def parameter_counts(config: I2AConfig | None = None) -> dict[str, int]:
    """Trainable parameters of each agent (the I2A's rollout policy included, its env model not)."""
    config = config or I2AConfig()
    counts = {}
    for agent in AGENTS:
        model = EnvModel(FRAME_SHAPE, NUM_ACTIONS, channels=config.channels) if agent == "i2a" else None
        counts[agent] = sum(p.numel() for p in make_agent(agent, config, model).trainable_parameters())
    return counts
