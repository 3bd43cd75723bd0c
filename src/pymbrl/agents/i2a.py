"""I2A: imagination-augmented agents (Weber et al. 2017), with its model-free and copy-model controls,
trained with A2C on MiniPacman (``"MiniPacman-<mode>"``) or Atari (``"ALE/<Game>-v5"``).

The networks are :mod:`pymbrl.models.i2a`'s: an I2A reads the current frame on a model-free path
and, on its imagination path, rollouts of a frozen environment model
(:class:`pymbrl.models.env_model.EnvModel`), one per first action, later steps following a small
rollout policy. ``agent="a2c"`` is the model-free path alone, widened to a similar number of
parameters; ``agent="copy"`` the I2A architecture with the model replaced by
:class:`~pymbrl.models.env_model.CopyModel` (which returns its input frame and reward 0).

:func:`train` runs the paper's pipeline (:mod:`pymbrl.agents.i2a_stages`) in a run directory:
``env-model`` (a model-free A2C "teacher", then the env model fitted to its play), ``distill`` (the
rollout policy distilled from the teacher) and ``agent`` (this file's A2C loop, :func:`train_agent`,
with the model and the rollout policy frozen).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import tempfile
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pymbrl._checks import ArgumentTypeError, integer, real
from pymbrl._extras import optional_imports
from pymbrl.envs.vector import check_env_id, env_spaces, make_vector_env
from pymbrl.envs.vector import make_env as make_game
from pymbrl.models.env_model import CopyModel, EnvModel, to_planes
from pymbrl.models.i2a import ActorCritic
from pymbrl.rollout.per_action import per_action_rollouts
from pymbrl.training import Callbacks, TrainConfig, TrainResult, as_batch, generator, seeded, start_run
from pymbrl.training.checkpoint import arrays_to_tensors, save_atomically, tensors_to_arrays
from pymbrl.training.run import STATE, read_config_of, read_run, release, restoring
from pymbrl.training import stages as staging
from pymbrl.training.stages import run_stages

with optional_imports():
    import gymnasium as gym

AGENTS = ("i2a", "a2c", "copy")


@dataclass(frozen=True)
class I2AConfig(TrainConfig):
    """I2A's settings. A2C's are those of Mnih et al. 2016 as in OpenAI baselines' A2C (RMSprop lr
    7e-4, alpha 0.99, eps 1e-5; 5-step returns; entropy 0.01; value 0.5; gradient norm 0.5). The
    network sizes are the paper's shapes scaled to a 2-core CPU (16-channel convs, the paper's
    16/32; an LSTM of 64 units, the paper's 256). Atari ids (preset ``"ALE/"``) get the Nature DQN
    convs with 32/64/64 channels, a model-free control sized to the I2A's parameters, and stages
    sized for the memory of 84x84x4 frames."""

    DEFAULT_ENV: ClassVar[str] = "MiniPacman-regular"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "ALE/": {"channels": 32, "a2c_hidden": 560, "teacher_frames": 500_000, "model_frames": 50_000,
                 "distill_frames": 20_000},
    }

    steps: int = 200_000  # env frames of the agent stage; a finished run continues when given more
    eval_every: int = 10_000  # env frames between records
    eval_episodes: int = 5  # not used: a record holds the mean return of the last 100 training episodes
    checkpoint_every: int = 50_000  # env frames between checkpoints (of the teacher and the agent)
    agent: Literal["i2a", "a2c", "copy"] = "i2a"  # the agent stage's agent: I2A or a control (model-free, copy-model)
    online_distill: bool = False  # distil the rollout policy from the agent while it trains (the paper's way)
    num_envs: int = 16  # games stepped together
    n_steps: int = 5  # steps of each game per update (n-step returns)
    gamma: float = 0.99  # discount
    lr: float = 7e-4  # RMSprop's step size
    rms_alpha: float = 0.99  # RMSprop's smoothing constant
    rms_eps: float = 1e-5  # RMSprop's epsilon
    entropy_coef: float = 0.01  # weight of the policy's entropy bonus
    value_coef: float = 0.5  # weight of the value loss
    max_grad_norm: float = 0.5  # gradient norm clip
    distill_coef: float = 1.0  # weight of the online distillation loss
    rollout_length: int = 3  # imagined steps per first action (16 games x 5 actions x 3 = 240 model calls a step)
    channels: int = 16  # conv channels of every path and of the env model
    hidden: int = 256  # units of the I2A's model-free layer and of the trunk
    encoder_hidden: int = 64  # LSTM units of the rollout encoder
    a2c_hidden: int = 512  # units of the model-free control's layer (about the I2A's parameters)
    frame_cap: int = 1000  # MiniPacman frames after which an episode is truncated
    teacher_frames: int = 100_000  # env frames of the model-free teacher whose play the env model learns
    model_frames: int = 100_000  # frames of the teacher's play the env model is fitted to
    model_epochs: int = 12  # epochs of the env model's fit
    explore: float = 0.25  # probability of a random action in the teacher's play (every action is seen)
    distill_frames: int = 50_000  # frames of the teacher's play the rollout policy is distilled on
    distill_epochs: int = 5  # epochs of the offline distillation

    def __post_init__(self) -> None:
        super().__post_init__()
        check_env_id(self.env)
        if self.device != "cpu":  # the env model's fit and the distillation run on torch's CPU tensors
            raise ValueError(f"device: expected 'cpu' (I2A trains on the CPU), got {self.device!r}")
        if self.agent not in AGENTS:
            raise ValueError(f"agent: expected one of {AGENTS}, got {self.agent!r}")
        if not isinstance(self.online_distill, bool):
            raise ArgumentTypeError(f"online_distill: expected a bool, got {self.online_distill!r}")
        for name in ("num_envs", "n_steps", "rollout_length", "channels", "hidden", "encoder_hidden", "a2c_hidden",
                     "teacher_frames", "model_frames", "model_epochs", "distill_frames", "distill_epochs"):
            integer(getattr(self, name), name)
        integer(self.frame_cap, "frame_cap", minimum=0)
        bounds = {"gamma": 1.0, "explore": 1.0, "lr": None, "rms_alpha": None, "rms_eps": None, "entropy_coef": None,
                  "value_coef": None, "max_grad_norm": None, "distill_coef": None}
        for name, high in bounds.items():
            # Stored as floats, so that the config reads back from its file as the same run (1 -> 1.0).
            object.__setattr__(self, name, real(getattr(self, name), name, low=0.0, high=high))

    def identity(self) -> dict[str, Any]:
        """All but steps and device, and the agent stage's own settings: one run directory holds one env
        model and rollout policy, and an agent stage (with its own checkpoint) per ``agent``, each
        logging and checkpointing at its own pace."""
        return {k: v for k, v in super().identity().items()
                if k not in ("agent", "online_distill", "eval_every", "checkpoint_every")}

    @property
    def stage_name(self) -> str:
        """The agent stage's folder and record name: the agent, ``-online`` when distilled online."""
        return f"{self.agent}-online" if self.online_distill and self.agent != "a2c" else self.agent


def make_agent(agent: str, config: I2AConfig, env_model: EnvModel | None = None,
               rollout_policy: nn.Module | None = None, *, seed: int | None = None) -> ActorCritic:
    """``agent`` "i2a" (needs ``env_model``), "copy" or "a2c" on the frames of ``config.env``, its
    weights drawn from ``seed`` (default ``config.seed``); ``rollout_policy`` as in
    :class:`~pymbrl.models.i2a.ActorCritic` (None: distilled while it trains)."""
    if agent not in AGENTS:
        raise ValueError(f"agent: expected one of {AGENTS}, got {agent!r}")
    frame_shape, num_actions = env_spaces(config.env)
    if agent == "i2a":
        if not isinstance(env_model, EnvModel):
            raise ValueError(f"env_model: expected an EnvModel for agent 'i2a', got {type(env_model).__name__}")
        if env_model.frame_shape != frame_shape or env_model.num_actions != num_actions:
            raise ValueError(f"env_model: expected frames {frame_shape} and {num_actions} actions ({config.env}), got "
                             f"{env_model.frame_shape} and {env_model.num_actions}")
    imagination = {"i2a": env_model, "copy": CopyModel(frame_shape, num_actions), "a2c": None}[agent]
    with seeded(config.seed if seed is None else seed):
        return ActorCritic(frame_shape, num_actions, channels=config.channels, hidden=config.hidden,
                           encoder_hidden=config.encoder_hidden, a2c_hidden=config.a2c_hidden,
                           rollout_length=config.rollout_length, imagination=imagination,
                           rollout_policy=rollout_policy if imagination is not None else None,
                           imagine=per_action_rollouts if imagination is not None else None)


def sample_actions(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)


def n_step_returns(rewards: torch.Tensor, masks: torch.Tensor, bootstrap: torch.Tensor, gamma: float) -> torch.Tensor:
    """A2C's targets: rewards and masks float [T, N] (mask 0 where the step ended its episode),
    bootstrap values [N] of the state after the last step -> discounted returns [T, N]."""
    targets = torch.empty_like(rewards)
    ret = bootstrap
    for t in reversed(range(len(rewards))):
        ret = rewards[t] + gamma * masks[t] * ret
        targets[t] = ret
    return targets


def digest(module: nn.Module | None) -> str:
    """A fingerprint of a module's weights (so that a run is not resumed with another env model)."""
    if module is None:
        return "none"
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def train_agent(net: ActorCritic, config: I2AConfig, run_dir: str | os.PathLike | None = None, *,
                seed: int | None = None, stage: str = "agent", callbacks: Callbacks | None = None) -> TrainResult:
    """Trains ``net`` (from :func:`make_agent`) with A2C on ``config.env`` for ``config.steps`` env
    frames (rounded up to whole updates), its env model and any fixed rollout policy frozen; the
    games and the sampled actions draw from ``seed`` (default ``config.seed``).

    The record of each ``config.eval_every`` frames (``stage``'s, to ``callbacks.on_record``) holds
    ``frames``, ``return`` (the mean return of the last 100 episodes that ended, NaN before the
    first), ``episodes``, the mean losses since the last record and ``seconds``. With ``run_dir``
    it keeps ``log.csv``, TensorBoard events, ``checkpoint/`` (every ``config.checkpoint_every``
    frames and at the end) and the final weights ``agent.pt``; called again, it resumes from the
    checkpoint exactly, or continues a finished run given more steps. Resuming with another
    config, env model or rollout policy raises ValueError naming it.
    """
    seed = config.seed if seed is None else seed
    per_update = config.n_steps * config.num_envs
    total = math.ceil(config.steps / per_update) * per_update
    fixed_policy = net.imagination is not None and not net.distilled
    identity = {"env_model": digest(net.imagination),
                "rollout_policy": digest(net.rollout_policy if fixed_policy else None)}
    run = start_run(run_dir, "i2a", config, callbacks=callbacks, stage=stage, total=total, identity=identity,
                    write=False)
    with run:  # closes it, and frees its directory for other processes, however training ends
        rng = generator(seed)
        optimizer = torch.optim.RMSprop(net.trainable_parameters(), lr=config.lr, alpha=config.rms_alpha,
                                        eps=config.rms_eps)
        env = make_vector_env(config.env, config.num_envs, seed, config.frame_cap)
        obs, _ = env.reset(seed=seed)
        returns: deque[float] = deque(maxlen=100)
        episodes, done_frames, next_log, updates = 0, 0, config.eval_every, 0
        sums: dict[str, float] = {}
        if run.state is not None:
            with run.restoring():
                state = run.state
                net.load_state_dict(state["net"])
                optimizer.load_state_dict(state["optimizer"])
                rng.set_state(state["generator"])
                obs = np.stack([env.set_state(i, s) for i, s in enumerate(tensors_to_arrays(state["env"]))])
                returns.extend(state["returns"])
                episodes, done_frames, next_log = state["episodes"], run.step, state["next_log"]
                sums, updates = state["sums"], state["updates"]
        while done_frames < total:
            log_probs, values, entropies, rewards, masks, frames_seen, probs = [], [], [], [], [], [], []
            for _ in range(config.n_steps):
                x = to_planes(obs)
                logits, value = net(x, rng)
                action = sample_actions(logits.detach(), rng)
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
                        _, final_value = net(to_planes(info["final_obs"][truncated]), rng)
                    reward[torch.as_tensor(truncated)] += config.gamma * final_value
                rewards.append(reward)
                masks.append(torch.as_tensor(~(terminated | truncated), dtype=torch.float32))
                ended = info["_final_obs"]
                returns.extend(info["episode_return"][ended].tolist())
                episodes += int(ended.sum())
            with torch.no_grad():
                _, bootstrap = net(to_planes(obs), rng)
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
            done_frames += per_update
            if done_frames >= next_log or done_frames >= total:
                run.evaluated({"frames": done_frames, "return": float(np.mean(returns)) if returns else float("nan"),
                               "episodes": episodes, **{k: v / updates for k, v in sums.items()}})
                sums, updates = {}, 0
                next_log += config.eval_every
            if run.due(done_frames, True):
                run.save(done_frames, {"net": net.state_dict(), "optimizer": optimizer.state_dict(),
                                       "generator": rng.get_state(),
                                       "env": arrays_to_tensors([env.get_state(i) for i in range(env.num_envs)]),
                                       "returns": list(returns), "episodes": episodes, "next_log": next_log,
                                       "sums": sums, "updates": updates}, {})
            run.progress(done_frames)
        env.close()
    if run.directory is not None:
        save_atomically(run.directory / "agent.pt", net.state_dict())
    return TrainResult(I2AAgent(net, config, seed), run.history, run.directory, run.history[-1] if run.history else {})


def train(config: I2AConfig | None = None, run_dir: str | os.PathLike | None = None, *,
          callbacks: Callbacks | None = None, stages: Sequence[str] | None = None) -> TrainResult:
    """Runs the ``stages`` (default all: ``env-model``, ``distill``, ``agent``; see
    :mod:`pymbrl.agents.i2a_stages`) of I2A's pipeline in ``run_dir`` (None: a temporary directory),
    skipping those already done; the agent stage trains ``config.agent`` for ``config.steps`` frames
    in ``run_dir/<agent>/`` (``<agent>-online/`` when distilled online). A selection whose inputs
    are missing is refused before anything runs. The result's ``summary`` holds what each stage
    that ran measured; its ``agent`` and ``history`` are the agent stage's (None and [] without it).
    """
    from pymbrl.agents import i2a_stages  # the stages build on this module's A2C loop

    config = config or I2AConfig()
    pipeline = i2a_stages.pipeline(config)
    selected = [s.name for s in pipeline] if stages is None else list(stages)
    if run_dir is not None and Path(run_dir).exists() and not Path(run_dir).is_dir():
        raise ValueError(f"run_dir: expected a directory, got {str(run_dir)!r}, which is not one")
    with contextlib.ExitStack() as stack:
        directory = Path(run_dir if run_dir is not None else
                         stack.enter_context(tempfile.TemporaryDirectory(prefix="pymbrl-i2a-")))
        staging.check_stages(directory, pipeline, selected)
        staging.start_pipeline(directory, "i2a", config)
        try:
            summary = run_stages(directory, pipeline, selected, callbacks)
        finally:
            release(directory)
        agent, history = restore(directory) if "agent" in selected else (None, [])
    return TrainResult(agent, history, None if run_dir is None else directory, summary)


class I2AAgent:
    """A trained agent of any of the three kinds, acting on its env's frames.

    ``net`` : the :class:`~pymbrl.models.i2a.ActorCritic`. Its imagined rollouts (and, with
    ``deterministic=False``, its actions) draw from a generator of its own seeded by ``seed``, so
    that acting from a fresh load reproduces.
    """

    def __init__(self, net: ActorCritic, config: I2AConfig, seed: int):
        self.net = net
        c, h, w = env_spaces(config.env)[0]
        self.obs_shape = (h, w, c)
        self.generator = generator(seed)

    @torch.no_grad()
    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """The action (int64) for one observation uint8 [H, W, C] (as the env gives it), or actions
        [N] for a batch [N, H, W, C]; ``deterministic`` takes the likeliest, else one is sampled."""
        batch, single = as_batch(obs, self.obs_shape, np.uint8)
        logits, _ = self.net(to_planes(batch), self.generator)
        actions = (logits.argmax(-1) if deterministic else sample_actions(logits, self.generator)).numpy()
        return actions[0] if single else actions


def restore(run_dir: str | os.PathLike, device: str | None = None) -> tuple[I2AAgent, list[dict[str, Any]]]:
    """The agent of the I2A run in ``run_dir`` (its agent stage's last checkpoint) and the records."""
    config = read_config_of(run_dir, I2AConfig, "i2a", device)
    _, state = read_run(run_dir, I2AConfig, "i2a", device, folder=config.stage_name)
    with seeded(config.seed):  # weights about to be replaced: drawn without touching torch's global generator
        model = EnvModel(*env_spaces(config.env), channels=config.channels) if config.agent == "i2a" else None
    net = make_agent(config.agent, config, model)
    with restoring(Path(run_dir) / config.stage_name / "checkpoint" / STATE):
        net.load_state_dict(state["net"])
    return I2AAgent(net.eval(), config, config.seed), state["history"]


def load(run_dir: str | os.PathLike, device: str | None = None) -> I2AAgent:
    """The trained agent of the I2A run in ``run_dir`` (the agent and stage of its ``config.yaml``);
    ``load(run_dir).act(obs)`` gives its likeliest actions."""
    return restore(run_dir, device)[0]


def make_env(config: I2AConfig, render_mode: str | None = None) -> gym.Env:
    """One game of ``config.env`` as the agent sees it (see :func:`pymbrl.envs.vector.make_env`)."""
    return make_game(config.env, config.frame_cap, render_mode)


STAGES = ("env-model", "distill", "agent")


def check_stages(run_dir: str | os.PathLike, stages: Sequence[str], config: I2AConfig) -> None:
    """Refuses (ValueError naming ``stages``) a selection of stages that cannot run in ``run_dir``."""
    from pymbrl.agents import i2a_stages

    staging.check_stages(run_dir, i2a_stages.pipeline(config), stages)


def parameter_counts(config: I2AConfig | None = None) -> dict[str, int]:
    """Trainable parameters of each agent (the I2A's rollout policy included, its env model not)."""
    config = config or I2AConfig()
    counts = {}
    for agent in AGENTS:
        with seeded(0):
            model = EnvModel(*env_spaces(config.env), channels=config.channels) if agent == "i2a" else None
        counts[agent] = sum(p.numel() for p in make_agent(agent, config, model).trainable_parameters())
    return counts
