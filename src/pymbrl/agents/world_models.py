"""World Models (Ha & Schmidhuber 2018, "Recurrent World Models Facilitate Policy Evolution"), one
file, top to bottom, as the paper's stages:

1. collect -- rollouts of a random policy (later: of the controller) into an on-disk dataset;
2. vae     -- V, a ConvVAE, learns to compress each frame to z; the dataset is then encoded;
3. mdn     -- M, an MDN-RNN, learns P(z_{t+1}, done | z_t, a_t, h_t) from the encoded sequences;
4. controller -- C, a linear map of [z, h], evolved by CMA-ES: inside M's dream (every candidate
   x trial as one batched rollout, at temperature tau) or in the real env (vector envs across
   processes), then evaluated in the real env.

:func:`train` runs the stages in a run directory; each stage leaves its artefact there and is
skipped when that exists, so a stopped run resumes (the controller stage from its last generation).
With ``iterations`` > 1 it runs the paper's iterative procedure: collect with the current controller,
retrain M on all the data, evolve C again.

Parts: :mod:`pymbrl.models.world_models` (V, M, C), :mod:`pymbrl.rollout.dream` (batched dreams),
:mod:`pymbrl.envs.dream` (the dream as gymnasium envs).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import math
import os
import signal
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from pymbrl._checks import integer, real
from pymbrl.agents.checkpoint import atomic_write, check_archive, field, load_torch, save_atomically
from pymbrl.agents.sac import seeded
from pymbrl.envs.frames import ResizeFrames
from pymbrl.envs.spaces import ActionCodec
from pymbrl.models.rssm import IMAGE_SHAPE
from pymbrl.models.world_models import MDNRNN, Controller, ConvVAE, MDNState, temperature
from pymbrl.rollout.dream import dream_rollouts

STAGES = ("collect", "vae", "mdn", "controller")
# The env workers' working folders in a run directory (what a game writes there, e.g. ViZDoom's
# _vizdoom.ini, stays in the run).
ENVS = "envs"


@dataclasses.dataclass(frozen=True)
class WorldModelsConfig:
    """Hyper-parameters; defaults are the paper's Doom TakeCover settings (its appendix) unless noted.

    z_dim : int -- V's latent size, 64 (Doom; 32 for CarRacing).
    kl_tolerance : float -- the KL floor per latent dimension, 0.5.
    vae_lr, vae_batch, vae_epochs -- Adam 1e-4, batches of 100 frames, 1 epoch over the data.
    vae_rollouts : int or None -- V learns from the frames of the first this many rollouts (None: all).
    rnn_hidden, mixtures -- M's LSTM units (512) and Gaussians per latent dimension (5).
    rnn_lr, rnn_batch, rnn_seq_len, rnn_epochs, rnn_clip -- Adam 1e-3, 100 sequences of 100 steps,
        20 epochs, gradient norm clipped at 1.
    done_weight : float -- weight of the done head's positive targets, 10 (the paper's code).
    random_repeat : int -- the random policy holds each action for 1..random_repeat steps (drawn
        uniformly), 10 as in the paper's Doom collection code ("more diverse"), so that M also sees
        where steady movement leads, as a controller's does; 1 draws a new action every step.
    reward_head : bool -- M also predicts rewards (dreams then pay them, not 1 per step survived).
    controller_hidden : int -- 0, the linear controller; > 0 adds one tanh layer.
    controller_uses_hidden : bool -- C reads [z, h] (V+M); False gives the paper's V-only controller.
    rollouts : int -- random rollouts collected, 10,000.
    max_steps : int -- episode cap in the real env and in dreams, 2100 (TakeCover's).
    popsize, trials, sigma0, generations -- CMA-ES population 64, 16 trials per candidate averaged,
        initial step size 0.1, generations to run.
    tau : float -- the dream's temperature, 1.15.
    train_in : str -- "dream" (evolve inside M) or "real" (evolve in the env itself).
    eval_episodes : int -- real episodes of the final evaluation, 100.
    iterations : int -- rounds of (collect with C, retrain M, evolve C) after the first; 1 = none.
    explore : float -- std of Gaussian noise on C's action scores while it collects (iterations).
    num_envs : int -- env worker processes for collection and real evaluation.
    device : str
    """

    z_dim: int = 64
    kl_tolerance: float = 0.5
    vae_lr: float = 1e-4
    vae_batch: int = 100
    vae_epochs: int = 1
    vae_rollouts: int | None = None
    rnn_hidden: int = 512
    mixtures: int = 5
    rnn_lr: float = 1e-3
    rnn_batch: int = 100
    rnn_seq_len: int = 100
    rnn_epochs: int = 20
    rnn_clip: float = 1.0
    done_weight: float = 10.0
    random_repeat: int = 10
    reward_head: bool = False
    controller_hidden: int = 0
    controller_uses_hidden: bool = True
    rollouts: int = 10_000
    max_steps: int = 2100
    popsize: int = 64
    trials: int = 16
    sigma0: float = 0.1
    generations: int = 200
    tau: float = 1.15
    train_in: str = "dream"
    eval_episodes: int = 100
    iterations: int = 1
    explore: float = 0.1
    num_envs: int = 2
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("z_dim", "vae_batch", "vae_epochs", "rnn_hidden", "mixtures", "rnn_batch", "rnn_seq_len",
                     "rnn_epochs", "rollouts", "max_steps", "popsize", "trials", "generations", "eval_episodes",
                     "iterations", "num_envs", "random_repeat"):
            integer(getattr(self, name), name)
        integer(self.controller_hidden, "controller_hidden", minimum=0)
        integer(self.vae_rollouts, "vae_rollouts", optional=True)
        for name in ("kl_tolerance", "vae_lr", "rnn_lr", "rnn_clip", "done_weight", "sigma0", "explore"):
            real(getattr(self, name), name, low=0.0)
        temperature(self.tau)
        if self.popsize < 2:
            raise ValueError(f"popsize: expected at least 2 (CMA-ES ranks candidates), got {self.popsize}")
        if self.train_in not in ("dream", "real"):
            raise ValueError(f"train_in: expected 'dream' or 'real', got {self.train_in!r}")

    @classmethod
    def for_env(cls, env_id: str, **overrides: Any) -> WorldModelsConfig:
        """The settings this project runs on a 2-core CPU; other envs get the paper's defaults.

        VizdoomTakeCover-v1: 1,200 random rollouts instead of 10,000 (they last ~320 steps); V learns
        from the first 300 (about 97k frames, 4 epochs), M (256 LSTM units instead of 512) from all; 60
        generations. The recorded score above 400 took a second iteration (``iterations=2``).
        CarRacing-v3 (~60 env steps/s here): z 32 and M 256 as in the paper, but 40 random rollouts (a
        new action every step, as its recorded run) of 300 steps (12k frames; the paper: 10,000 of
        1000), 5 VAE epochs, and C evolved in the real env
        for 20 generations of 16 candidates x 1 trial of 300 steps (the paper: 64 x 16 of 1000, for
        ~1,800 generations), scored over 16 episodes.
        """
        presets = {
            "VizdoomTakeCover-v1": dict(rollouts=1200, vae_rollouts=300, rnn_hidden=256, vae_epochs=4,
                                        generations=60),
            "CarRacing-v3": dict(z_dim=32, rnn_hidden=256, random_repeat=1, rollouts=40, max_steps=300, vae_epochs=5,
                                 train_in="real", popsize=16, trials=1, generations=20, eval_episodes=16),
        }
        return cls(**{**presets.get(env_id, {}), **overrides})


# --------------------------------------------------------------------------------------------------
# Environments


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make(env_id)`` with 64x64x3 uint8 frames as observations. ViZDoom ids (``Vizdoom...``,
    from the vizdoom package) give their ``"screen"``; other envs must give RGB frames."""
    if env_id.startswith("Vizdoom"):
        try:
            from vizdoom import gymnasium_wrapper  # noqa: F401  (registers the Vizdoom ids)
        except ImportError:
            raise ValueError(f"env_id: {env_id} needs the vizdoom package (pip install vizdoom)") from None
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.Error as error:
        raise ValueError(f"env_id: {error}") from None
    space = env.observation_space
    key = "screen" if isinstance(space, gym.spaces.Dict) and "screen" in space.spaces else None
    frames = space[key] if key else space
    if not (isinstance(frames, gym.spaces.Box) and len(frames.shape) == 3 and frames.shape[-1] == 3
            and frames.dtype == np.uint8):
        env.close()
        raise ValueError(f"env_id: World Models needs RGB frames (uint8 [H, W, 3]) as observations, {env_id} has "
                         f"{space}")
    try:
        ActionCodec(env.action_space, "env_id")
    except ValueError:
        env.close()
        raise
    return ResizeFrames(env, key)


# --------------------------------------------------------------------------------------------------
# The on-disk dataset


class RolloutDataset:
    """Rollouts in a directory, one ``rollout_NNNNNN.npz`` each, so that later iterations can add
    to it and a stopped collection keeps what it finished.

    A rollout of T steps holds ``frames`` uint8 [T + 1, 64, 64, 3] (every observation, the last
    one included), ``actions`` float32 [T, A] (action vectors, see ActionCodec), ``rewards`` float32
    [T] and ``dones`` bool [T] (True at the step after which the episode terminated).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def files(self) -> list[Path]:
        return sorted(self.path.glob("rollout_*.npz"))

    def __len__(self) -> int:
        return len(self.files())

    def add(self, frames: np.ndarray, actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray) -> None:
        steps = len(actions)
        if frames.shape != (steps + 1, *IMAGE_SHAPE) or frames.dtype != np.uint8:
            raise ValueError(f"frames: expected uint8 [{steps + 1}, 64, 64, 3] for {steps} actions, got "
                             f"{frames.dtype} {frames.shape}")
        if rewards.shape != (steps,) or dones.shape != (steps,):
            raise ValueError(f"rewards: expected [{steps}] rewards and dones, got {rewards.shape} and {dones.shape}")
        files = self.files()
        index = int(files[-1].stem.split("_")[1]) + 1 if files else 0
        atomic_write(self.path / f"rollout_{index:06d}.npz",
                     lambda f: np.savez(f, frames=frames, actions=actions.astype(np.float32),
                                        rewards=rewards.astype(np.float32), dones=dones.astype(bool)))

    def load(self, file: Path) -> dict[str, np.ndarray]:
        """One rollout, validated: ValueError naming ``file`` if it is corrupt, truncated, or not
        what :meth:`add` writes (checked before any array is allocated)."""
        check_archive(file)
        expected = {"frames": np.uint8, "actions": np.float32, "rewards": np.float32, "dones": np.bool_}
        try:
            with zipfile.ZipFile(file) as archive:
                names = {info.filename: info for info in archive.infolist()}
                if set(names) != {f"{k}.npy" for k in expected}:
                    raise ValueError(f"expected the arrays {sorted(expected)}, got {sorted(names)}")
                for key, dtype in expected.items():
                    with archive.open(f"{key}.npy") as f:
                        header = {(1, 0): np.lib.format.read_array_header_1_0,
                                  (2, 0): np.lib.format.read_array_header_2_0}.get(np.lib.format.read_magic(f))
                        if header is None:
                            raise ValueError(f"{key}: expected a .npy of format 1.0 or 2.0")
                        shape, _, kind = header(f)
                    if kind != np.dtype(dtype) or np.dtype(dtype).itemsize * math.prod(shape) > \
                            names[f"{key}.npy"].file_size:
                        raise ValueError(f"{key}: expected {np.dtype(dtype)} that fits the file, got {kind} {shape}")
            with np.load(file, allow_pickle=False) as data:
                rollout = {k: data[k] for k in expected}
        except ValueError as error:
            raise ValueError(f"{file}: corrupt rollout ({error})") from None
        except Exception as error:
            raise ValueError(f"{file}: corrupt rollout ({type(error).__name__}: {error})") from None
        steps = len(rollout["actions"])
        for key, shape in (("frames", (steps + 1, *IMAGE_SHAPE)), ("rewards", (steps,)), ("dones", (steps,))):
            if rollout[key].shape != shape:
                raise ValueError(f"{file}: {key}: expected shape {shape} for {steps} actions, got "
                                 f"{rollout[key].shape}")
        if steps == 0 or rollout["actions"].ndim != 2:
            raise ValueError(f"{file}: actions: expected float32 [T > 0, A], got {rollout['actions'].shape}")
        for key in ("actions", "rewards"):
            if not np.isfinite(rollout[key]).all():
                raise ValueError(f"{file}: {key}: expected finite values, got a NaN or infinity")
        return rollout

    def frames(self, rollouts: int | None = None) -> np.ndarray:
        """Every frame of every rollout (or of the first ``rollouts``), uint8 [N, 64, 64, 3]."""
        files = self.files()[:rollouts]
        if not files:
            raise ValueError(f"dataset: no rollouts in {self.path}; run the collect stage first")
        return np.concatenate([self.load(f)["frames"] for f in files])


# --------------------------------------------------------------------------------------------------
# Acting in the real env: V encodes, M remembers, C decides


class Policy:
    """V + M + C acting for E envs at once, each env with its own controller parameters.

    ``params`` float [E, n] (one row per env), or None for uniformly random actions, each held for
    1..``repeat`` steps (a fresh count per action, drawn with the action space's generator).
    ``explore`` adds Gaussian noise to C's action scores (for collection in the iterative procedure).
    """

    def __init__(self, vae: ConvVAE | None, mdnrnn: MDNRNN | None, controller: Controller | None,
                 codec: ActionCodec, uses_hidden: bool = True, explore: float = 0.0,
                 generator: torch.Generator | None = None, repeat: int = 1):
        self.vae, self.mdnrnn, self.controller, self.codec = vae, mdnrnn, controller, codec
        self.uses_hidden, self.explore, self.generator = uses_hidden, explore, generator
        self.repeat = integer(repeat, "repeat")

    def _random(self, count: int, state, first: np.ndarray, action_space: gym.Space):
        """Random actions; ``state`` is (held actions, steps each has left), None at the start."""
        fresh = np.stack([action_space.sample() for _ in range(count)])
        if self.repeat == 1:
            return fresh, self.codec.to_vector(fresh), state
        held, left = state if state is not None else (fresh, np.zeros(count, np.int64))
        new = (left <= 0) | first
        held = np.where(new.reshape(-1, *[1] * (fresh.ndim - 1)), fresh, held)
        left = np.where(new, action_space.np_random.integers(1, self.repeat + 1, count), left) - 1
        return held, self.codec.to_vector(held), (held, left)

    @torch.no_grad()
    def act(self, frames: np.ndarray, params: torch.Tensor | None, state, first: np.ndarray,
            action_space: gym.Space):
        """frames uint8 [E, 64, 64, 3] -> (env actions [E, ...], action vectors [E, A], M's new state)."""
        if params is None:
            return self._random(len(frames), state, first, action_space)
        z, _ = self.vae.encode(frames)
        reset = torch.as_tensor(first, device=z.device)[:, None]
        h = torch.where(reset, 0.0, state.h)
        c = torch.where(reset, 0.0, state.c)
        inputs = torch.cat([z, h], -1) if self.uses_hidden else z
        scores = self.controller(params.to(z.device), inputs[:, None])[:, 0]
        if self.explore > 0:
            scores = scores + self.explore * torch.randn(scores.shape, generator=self.generator,
                                                         device=self.generator.device).to(scores.device)
        vectors = self.codec.model_input(scores)
        _, state = self.mdnrnn.step(z, vectors, MDNState(h, c))
        return self.codec.to_env(scores), vectors.cpu().numpy(), state


class _WorkerEnv:
    """Makes the env inside an env worker process (picklable, so it also works where workers are
    spawned rather than forked).

    The worker ignores SIGINT: a Ctrl-C reaches every process of the terminal's process group, and
    the parent, which handles it, closes the workers; the games they start inherit the ignored
    SIGINT. SIGTERM (the parent closing them on an interrupt) exits the worker through its
    ``finally``, which closes the env and so the game process it runs. The worker works in its own
    folder ``workdir/worker<i>``: ViZDoom's game process writes ``_vizdoom.ini`` and ``_vizdoom/`` in
    its working directory, and two games creating the same ``_vizdoom/`` at once crash one of them,
    so each game has its own.
    """

    def __init__(self, env_id: str, max_steps: int, workdir: Path | None, index: int):
        self.env_id, self.max_steps, self.workdir, self.index = env_id, max_steps, workdir, index
        self.parent = os.getpid()

    def __call__(self) -> gym.Env:
        # AsyncVectorEnv also makes one env in the parent (to read its spaces, without starting a
        # game): the parent keeps its signals and working directory.
        if self.workdir is not None and os.getpid() != self.parent:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
            _terminate_with_parent(self.parent)
            # A worker forked after torch ran a parallel region in the parent (V and M trained there
            # with several threads) hangs in its first parallel region: OpenMP's pool does not
            # survive a fork. One game's frames need no more than one thread.
            torch.set_num_threads(1)
            folder = self.workdir / f"worker{self.index}"
            folder.mkdir(parents=True, exist_ok=True)
            os.chdir(folder)
        return gym.wrappers.TimeLimit(make_env(self.env_id), self.max_steps)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _terminate_with_parent(parent: int) -> None:
    """Asks Linux to send this worker SIGTERM when its parent dies, even of SIGKILL, which leaves the
    parent no chance to close its workers: the worker then closes its game instead of outliving the
    run. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the request
        os.kill(os.getpid(), signal.SIGTERM)


def play(env_id: str, episodes: int, policy: Policy, params: torch.Tensor | None = None, *, seed: int = 0,
         num_envs: int = 2, max_steps: int = 2100, dataset: RolloutDataset | None = None,
         progress: Callable[[int], Any] | None = None, workdir: str | os.PathLike | None = None) -> np.ndarray:
    """Plays ``episodes`` episodes in ``num_envs`` env processes (gymnasium's AsyncVectorEnv) and
    returns their returns, float64 [episodes]. Episode i acts with ``params[i]`` (None: random
    actions); episodes are cut after ``max_steps`` steps. With ``dataset``, every episode is stored
    in it as it ends. ``progress`` gets the number of finished episodes.

    The env processes work in their own folders under ``workdir`` (what a game writes stays there;
    default: a temporary folder removed at the end); with one env and no ViZDoom game, the env runs
    in this process instead. On any exception (Ctrl-C included) the workers are terminated, and each
    closes its env, so no process is left; a SIGTERM of this process, where nothing else handles it,
    raises SystemExit here for the same cleanup.
    """
    episodes, num_envs = integer(episodes, "episodes"), integer(num_envs, "num_envs")
    max_steps = integer(max_steps, "max_steps")
    num_envs = min(num_envs, episodes)
    if params is not None and params.shape[0] != episodes:
        raise ValueError(f"params: expected one row per episode ({episodes}), got {tuple(params.shape)}")
    with contextlib.ExitStack() as stack:
        if num_envs > 1 or env_id.startswith("Vizdoom"):
            if workdir is None:
                workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="pymbrl-envs-"))
            workdir = Path(os.path.abspath(workdir))
            make = [_WorkerEnv(env_id, max_steps, workdir, i) for i in range(num_envs)]
            stack.enter_context(_sigterm_exits())
        else:
            make = [_WorkerEnv(env_id, max_steps, None, 0)]
        return _play(make, episodes, policy, params, seed, dataset, progress)


@contextlib.contextmanager
def _sigterm_exits():
    """SIGTERM raises SystemExit in this process while the block runs (where SIGTERM has its
    default action, which would kill the process without closing its env workers), and SIGINT's
    handler is put back as it was (a game library may install its own)."""
    main = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main else None
    sigterm = signal.getsignal(signal.SIGTERM) if main else None
    if main and sigterm == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        if main:
            if sigint is not None:
                signal.signal(signal.SIGINT, sigint)
            if sigterm == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _play(make: list[Callable[[], gym.Env]], episodes: int, policy: Policy, params: torch.Tensor | None, seed: int,
          dataset: RolloutDataset | None, progress: Callable[[int], Any] | None) -> np.ndarray:
    # SAME_STEP autoreset: the step that ends an episode already returns the next one's first frame
    # (the last frame comes in info["final_obs"]), so every step is a real one.
    mode = gym.vector.AutoresetMode.SAME_STEP
    envs = gym.vector.AsyncVectorEnv(make, autoreset_mode=mode) if make[0].workdir is not None else \
        gym.vector.SyncVectorEnv(make, autoreset_mode=mode)
    done = False
    try:
        returns = _run(envs, episodes, policy, params, seed, dataset, progress)
        done = True
    finally:
        envs.close(**({"terminate": not done} if isinstance(envs, gym.vector.AsyncVectorEnv) else {}))
    return returns


def _run(envs: gym.vector.VectorEnv, episodes: int, policy: Policy, params: torch.Tensor | None, seed: int,
         dataset: RolloutDataset | None, progress: Callable[[int], Any] | None) -> np.ndarray:
    num_envs = envs.num_envs
    envs.single_action_space.seed(seed)
    returns = np.zeros(episodes)
    playing = np.arange(num_envs)  # the episode each env plays; >= episodes once none is left for it
    upcoming, finished = num_envs, 0
    obs, _ = envs.reset(seed=seed)
    first = np.ones(num_envs, dtype=bool)
    state = policy.mdnrnn.initial_state(num_envs) if params is not None else None
    record: list[dict[str, list]] = [{"frames": [], "actions": [], "rewards": [], "dones": []} for _ in range(num_envs)]
    while (playing < episodes).any():
        rows = torch.as_tensor(np.minimum(playing, episodes - 1))
        env_actions, vectors, state = policy.act(obs, None if params is None else params[rows], state, first,
                                                 envs.single_action_space)
        next_obs, reward, terminated, truncated, info = envs.step(env_actions)
        first = terminated | truncated
        for k in np.flatnonzero(playing < episodes):
            returns[playing[k]] += reward[k]
            if dataset is not None:
                for key, value in zip(("frames", "actions", "rewards", "dones"),
                                      (obs[k], vectors[k], reward[k], terminated[k])):
                    record[k][key].append(value)
            if first[k]:
                if dataset is not None:
                    rec = record[k]
                    dataset.add(np.stack(rec["frames"] + [info["final_obs"][k]]), np.stack(rec["actions"]),
                                np.asarray(rec["rewards"], np.float32), np.asarray(rec["dones"]))
                    record[k] = {key: [] for key in rec}
                finished += 1
                if progress is not None:
                    progress(finished)
                playing[k], upcoming = upcoming, upcoming + 1
        obs = next_obs
    return returns


# --------------------------------------------------------------------------------------------------
# V and M


def _fit(model: torch.nn.Module, opt: torch.optim.Optimizer, epochs: int, batches: int,
         epoch_losses: Callable[[int], Callable[[int], tuple[torch.Tensor, dict]]], parts: Sequence[str],
         clip: float | None, progress: Callable[[int, int], Any] | None) -> list[dict]:
    """Epochs of ``batches`` Adam steps; ``epoch_losses(epoch)`` prepares an epoch and gives the
    loss of its batch b (with its named parts). Returns one record per epoch: the mean loss and parts."""
    history = []
    for epoch in range(epochs):
        batch_loss = epoch_losses(epoch)
        totals = np.zeros(1 + len(parts))
        for b in range(batches):
            loss, values = batch_loss(b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            totals += [float(loss.detach()), *(values[name] for name in parts)]
            if progress is not None:
                progress(epoch * batches + b + 1, epochs * batches)
        history.append(dict(zip(("loss", *parts), (totals / batches).tolist()), epoch=epoch + 1))
    return history


def train_vae(frames: np.ndarray, config: WorldModelsConfig, *, vae: ConvVAE | None = None, seed: int = 0,
              progress: Callable[[int, int], Any] | None = None) -> tuple[ConvVAE, list[dict]]:
    """Trains V on uint8 frames [N, 64, 64, 3] for ``config.vae_epochs`` epochs (shuffled batches
    of ``vae_batch``). Returns V and one record per epoch (mean loss, reconstruction, KL).
    ``progress`` gets (batches done, batches in all)."""
    device = torch.device(config.device)
    if vae is None:
        with seeded(seed):
            vae = ConvVAE(config.z_dim, config.kl_tolerance)
    vae.to(device).train()
    opt = torch.optim.Adam(vae.parameters(), config.vae_lr)
    generator = torch.Generator(device).manual_seed(seed)
    order_generator = torch.Generator().manual_seed(seed)
    batches = -(-len(frames) // config.vae_batch)

    def epoch_losses(epoch: int) -> Callable[[int], tuple[torch.Tensor, dict]]:
        order = torch.randperm(len(frames), generator=order_generator).numpy()

        def batch_loss(b: int) -> tuple[torch.Tensor, dict]:
            batch = torch.from_numpy(frames[np.sort(order[b * config.vae_batch:(b + 1) * config.vae_batch])])
            return vae.loss(batch, generator)
        return batch_loss

    history = _fit(vae, opt, config.vae_epochs, batches, epoch_losses, ("reconstruction", "kl"), None, progress)
    return vae.eval(), history


@torch.no_grad()
def encode_dataset(dataset: RolloutDataset, vae: ConvVAE, batch: int = 1000,
                   progress: Callable[[int, int], Any] | None = None) -> list[dict[str, np.ndarray]]:
    """Each rollout with its frames replaced by V's ``mu`` and ``logvar`` (float32 [T + 1, z_dim]).
    ``progress`` gets (rollouts done, rollouts in all)."""
    out = []
    files = dataset.files()
    for i, file in enumerate(files):
        data = dataset.load(file)
        frames = data.pop("frames")
        parts = [vae.encode(torch.from_numpy(frames[i:i + batch])) for i in range(0, len(frames), batch)]
        data["mu"] = torch.cat([p[0] for p in parts]).cpu().numpy()
        data["logvar"] = torch.cat([p[1] for p in parts]).cpu().numpy()
        out.append(data)
        if progress is not None:
            progress(i + 1, len(files))
    return out


def _padded(latents: Sequence[dict[str, np.ndarray]], length: int) -> dict[str, torch.Tensor]:
    """The rollouts side by side, zero-padded to a whole number of windows of ``length`` steps:
    mu/logvar [R, T + 1, z_dim], actions [R, T, A], rewards [R, T], dones and mask (bool) [R, T]."""
    steps = -(-max(len(r["actions"]) for r in latents) // length) * length
    out: dict[str, list] = {k: [] for k in ("mu", "logvar", "actions", "rewards", "dones", "mask")}
    for r in latents:
        pad = steps - len(r["actions"])
        for key in ("mu", "logvar", "actions", "rewards", "dones"):
            out[key].append(np.concatenate([r[key], np.zeros((pad, *r[key].shape[1:]), r[key].dtype)]))
        out["mask"].append(np.arange(steps) < len(r["actions"]))
    return {k: torch.from_numpy(np.stack(v)) for k, v in out.items()}


def train_mdnrnn(latents: Sequence[dict[str, np.ndarray]], action_dim: int, config: WorldModelsConfig, *,
                 mdnrnn: MDNRNN | None = None, seed: int = 0,
                 progress: Callable[[int, int], Any] | None = None) -> tuple[MDNRNN, list[dict]]:
    """Trains M on encoded rollouts (as :func:`encode_dataset` gives them) for ``rnn_epochs`` epochs
    of shuffled windows of ``rnn_seq_len`` steps; z is sampled from V's Gaussians once per step and
    epoch, as in the paper. Returns M and one record per epoch (mean loss, NLL per dimension, done loss).

    Each window starts from the LSTM state its rollout has at that point, computed at the start of
    the epoch by a gradient-free pass over the whole rollouts, not from zeros: a window cut from the
    middle of an episode and started from zeros would teach M that, right after an episode starts,
    its end (a death) can be as near as it is mid-episode, and dreams would end too soon.
    """
    if not latents:
        raise ValueError("latents: expected at least one encoded rollout, got none")
    device = torch.device(config.device)
    if mdnrnn is None:
        with seeded(seed):
            mdnrnn = MDNRNN(config.z_dim, action_dim, config.rnn_hidden, config.mixtures, config.reward_head)
    mdnrnn.to(device).train()
    length = config.rnn_seq_len
    data = {k: v.to(device) for k, v in _padded(latents, length).items()}
    rollouts, steps = data["mask"].shape
    chunks = steps // length
    # Every window that holds at least one real step: (rollout, window number).
    windows = data["mask"][:, ::length].nonzero()
    offsets = torch.arange(length, device=device)
    opt = torch.optim.Adam(mdnrnn.parameters(), config.rnn_lr)
    generator = torch.Generator(device).manual_seed(seed)
    batches = -(-len(windows) // config.rnn_batch)

    def epoch_losses(epoch: int) -> Callable[[int], tuple[torch.Tensor, dict]]:
        z_all = ConvVAE.sample(data["mu"], data["logvar"], generator)
        starts_h = torch.zeros(rollouts, chunks, mdnrnn.hidden, device=device)
        starts_c = torch.zeros_like(starts_h)
        with torch.no_grad():
            state = mdnrnn.initial_state(rollouts, device)
            for k in range(chunks):
                starts_h[:, k], starts_c[:, k] = state
                window = slice(k * length, (k + 1) * length)
                _, _, state = mdnrnn(z_all[:, window], data["actions"][:, window], state)
        order = torch.randperm(len(windows), generator=generator, device=device)

        def batch_loss(b: int) -> tuple[torch.Tensor, dict]:
            r, k = windows[order[b * config.rnn_batch:(b + 1) * config.rnn_batch]].unbind(1)
            t = k[:, None] * length + offsets
            rows = r[:, None]
            return mdnrnn.loss(z_all[rows, t], data["actions"][rows, t], z_all[rows, t + 1], data["dones"][rows, t],
                               data["mask"][rows, t], data["rewards"][rows, t] if config.reward_head else None,
                               config.done_weight, state=MDNState(starts_h[r, k], starts_c[r, k]))
        return batch_loss

    history = _fit(mdnrnn, opt, config.rnn_epochs, batches, epoch_losses, ("nll", "done"), config.rnn_clip, progress)
    return mdnrnn.eval(), history


# --------------------------------------------------------------------------------------------------
# C: CMA-ES


def new_strategy(num_params: int, config: WorldModelsConfig, seed: int = 0) -> Any:
    """A fresh CMA-ES (the ``cma`` package) over ``num_params`` parameters, starting at 0 with step
    size ``config.sigma0`` and population ``config.popsize``.

    cma samples with numpy's global generator unless given its own ``randn``: a private
    RandomState keeps runs reproducible and leaves the caller's global state alone; it is the
    strategy's ``opts["randn"].__self__``, which :func:`save_strategy` saves.
    """
    try:
        import cma
    except ImportError:
        raise ValueError("train_in: evolving the controller needs the cma package (pip install cma)") from None
    return cma.CMAEvolutionStrategy(np.zeros(num_params), config.sigma0,
                                    {"popsize": config.popsize, "seed": np.nan, "verbose": -9,
                                     "randn": np.random.RandomState(seed % 2**32).randn})


def _generation(es: Any, fitness: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """One ask-evaluate-tell of ``es``; returns the scores float64 [P]."""
    candidates = np.asarray(es.ask())
    scores = np.asarray(fitness(candidates), dtype=np.float64)
    if scores.shape != (len(candidates),) or not np.all(np.isfinite(scores)):
        raise ValueError(f"fitness: expected {len(candidates)} finite returns, got {scores!r}")
    # cma's TPA step-size rule (used from 300 parameters on) draws from numpy's global generator
    # for a self-check that does not change the result; the caller's global state is kept.
    global_state = np.random.get_state()
    try:
        es.tell(list(candidates), (-scores).tolist())
    finally:
        np.random.set_state(global_state)
    return scores


def evolve(fitness: Callable[[np.ndarray], np.ndarray], num_params: int, config: WorldModelsConfig, *,
           seed: int = 0, es: Any = None, history: list[dict] | None = None,
           after_generation: Callable[[Any, list[dict]], Any] | None = None) -> tuple[Any, list[dict]]:
    """Maximises ``fitness`` (candidates float64 [P, num_params] -> mean returns [P]) with CMA-ES
    (:func:`new_strategy`) until ``generations`` generations are done. ``es`` and ``history``
    continue a stopped run (see :func:`load_strategy`); ``after_generation(es, history)`` is called
    after each generation (for checkpoints).

    Returns the evolution strategy (its ``result.xfavorite`` is the distribution mean, the paper's
    choice of final controller) and one record per generation (best, mean and worst fitness).
    """
    if es is None:
        es = new_strategy(num_params, config, seed)
    history = list(history or [])
    while len(history) < config.generations:
        scores = _generation(es, fitness)
        history.append({"generation": len(history) + 1, "best": float(scores.max()), "mean": float(scores.mean()),
                        "worst": float(scores.min())})
        if after_generation is not None:
            after_generation(es, history)
    return es, history


# The parts of a CMAEvolutionStrategy whose plain fields (arrays, numbers, lists and dicts of them)
# are its state: the distribution (mean, sigma, C, B, D, evolution paths, step-size rule), the
# counters (iterations, evaluations, eigendecompositions), the last population's fitness and the
# best solution. Everything else is rebuilt by the constructor (options, parameters, functions) or
# is bookkeeping that later generations do not read (archives of sent solutions, logger, timer).
_ES_PARTS = ("", "sm", "adapt_sigma", "sigma_vec", "best", "best.last", "fit")
_ES_FORMAT, _ES_VERSION = "pymbrl-cma-es", 1
_ES_NUMBERS = (bool, int, float, type(None))
_ES_DTYPES = ("float64", "float32", "int64", "int32", "bool")


def _es_part(es: Any, part: str) -> Any:
    for name in filter(None, part.split(".")):
        es = getattr(es, name, None)
    return es


def _es_leaf(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is plain data the strategy's state is made of."""
    if isinstance(value, np.ndarray):
        return value.dtype.name in _ES_DTYPES
    if isinstance(value, (np.floating, np.integer, np.bool_)) or type(value) in _ES_NUMBERS:
        return True
    if depth < 2 and type(value) in (list, tuple):
        return all(_es_leaf(v, depth + 1) for v in value)
    if depth < 2 and type(value) is dict:
        return all(isinstance(k, str) and _es_leaf(v, depth + 1) for k, v in value.items())
    return False


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"kind": "array", "value": torch.from_numpy(value.copy())}
    if isinstance(value, np.generic):
        return {"kind": "numpy", "dtype": value.dtype.name, "value": value.item()}
    if isinstance(value, (list, tuple)):
        return {"kind": type(value).__name__, "value": [_encode(v) for v in value]}
    if isinstance(value, dict):
        return {"kind": "dict", "value": {k: _encode(v) for k, v in value.items()}}
    return {"kind": "python", "value": value}


def _decode(encoded: Any, where: str, depth: int = 0) -> Any:
    """Undoes :func:`_encode`, refusing anything it cannot have written."""
    if not isinstance(encoded, dict) or "kind" not in encoded or "value" not in encoded or depth > 2:
        raise ValueError(f"{where}: expected an encoded field, got {type(encoded).__name__}")
    kind, value = encoded["kind"], encoded["value"]
    if kind == "array" and isinstance(value, torch.Tensor) and str(value.dtype).removeprefix("torch.") in _ES_DTYPES:
        array = value.numpy()
        if array.dtype.kind == "f" and np.isnan(array).any():
            raise ValueError(f"{where}: expected no NaN, got {int(np.isnan(array).sum())}")
        return array
    if kind == "numpy" and encoded.get("dtype") in _ES_DTYPES and type(value) in _ES_NUMBERS[:3]:
        if isinstance(value, float) and math.isnan(value):
            raise ValueError(f"{where}: expected a number, got NaN")
        return np.dtype(encoded["dtype"]).type(value)
    if kind == "python" and type(value) in _ES_NUMBERS:
        if isinstance(value, float) and math.isnan(value):
            raise ValueError(f"{where}: expected a number, got NaN")
        return value
    if kind in ("list", "tuple") and isinstance(value, list):
        items = [_decode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
        return items if kind == "list" else tuple(items)
    if kind == "dict" and isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _decode(v, f"{where}[{k!r}]", depth + 1) for k, v in value.items()}
    raise ValueError(f"{where}: expected an array, number, list or dict, got kind {kind!r} holding "
                     f"{type(value).__name__}")


def _strategy_fields(es: Any) -> dict[str, Any]:
    """The strategy's state: "part.name" -> value for every plain field of the parts in _ES_PARTS."""
    fields = {}
    for part in _ES_PARTS:
        obj = _es_part(es, part)
        for name, value in vars(obj).items() if obj is not None else ():
            if _es_leaf(value):
                fields[f"{part}.{name}"] = value
    return fields


def save_strategy(path: str | os.PathLike, es: Any, history: list[dict], generator_state: torch.Tensor | None,
                  seed: int) -> None:
    """Writes a paused evolution to ``path`` as data only (a ``torch.save`` of tensors and plain
    types, no pickled object): ``es``'s fields (see ``_ES_PARTS``; fields that are the same array
    are saved once, so that they stay one array), its private generator's state, the fitness
    ``history`` and the dream generator's state. :func:`load_strategy` reads it back."""
    import cma
    seen: dict[int, str] = {}
    fields = {}
    for key, value in _strategy_fields(es).items():
        if isinstance(value, np.ndarray) and id(value) in seen:
            fields[key] = {"kind": "alias", "value": seen[id(value)]}
        else:
            if isinstance(value, np.ndarray):
                seen[id(value)] = key
            fields[key] = _encode(value)
    name, keys, position, has_gauss, cached = es.opts["randn"].__self__.get_state()
    atomic_write(path, lambda f: torch.save({
        "format": _ES_FORMAT, "version": _ES_VERSION, "cma": cma.__version__, "seed": seed,
        "num_params": int(es.N), "popsize": int(es.popsize), "fields": fields,
        "randn": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "history": history, "generator": generator_state}, f))


def load_strategy(path: str | os.PathLike, num_params: int, config: WorldModelsConfig
                  ) -> tuple[Any, list[dict], torch.Tensor | None]:
    """The evolution :func:`save_strategy` paused in ``path``: (strategy, history, dream generator
    state or None). The strategy is a fresh one of the same size, advanced by one generation so that
    every field exists, with every saved field then put back, so that it continues bit for bit as
    the saved one would have (the same cma version is required for that).

    Raises ValueError naming the file and field for a corrupt, truncated or edited file, or one
    saved for another number of parameters, population or cma version.
    """
    import cma
    path = Path(path)
    saved = field(load_torch(path), dict, str(path), expected="a dict")

    def at(name: str) -> str:
        return f"{path}: {name}"

    if saved.get("format") != _ES_FORMAT or saved.get("version") != _ES_VERSION:
        raise ValueError(f"{at('format')}: expected {_ES_FORMAT} version {_ES_VERSION}, got "
                         f"{saved.get('format')!r} version {saved.get('version')!r}")
    if saved.get("cma") != cma.__version__:
        raise ValueError(f"{at('cma')}: expected the evolution to be saved by the installed cma {cma.__version__} "
                         f"(another version may not continue it exactly), got {saved.get('cma')!r}; install that "
                         f"version or delete the file to restart the controller stage")
    if saved.get("num_params") != num_params:
        raise ValueError(f"{at('num_params')}: expected {num_params} controller parameters, got "
                         f"{saved.get('num_params')!r}")
    if saved.get("popsize") != config.popsize:
        raise ValueError(f"config.popsize: {path} holds an evolution of population {saved.get('popsize')!r}, "
                         f"got {config.popsize}")
    seed = field(saved.get("seed"), int, at("seed"), expected="an int")
    history = field(saved.get("history"), list, at("history"), lambda h: len(h) >= 1, "a list of generations")
    for i, record in enumerate(history):
        field(record, dict, at(f"history[{i}]"), lambda r: set(r) == {"generation", "best", "mean", "worst"}
              and r["generation"] == i + 1 and all(isinstance(r[k], float) and math.isfinite(r[k])
                                                   for k in ("best", "mean", "worst")),
              f"{{'generation': {i + 1}, 'best', 'mean', 'worst': finite floats}}")
    generator = saved.get("generator")
    if generator is not None:
        field(generator, torch.Tensor, at("generator"), lambda g: g.dtype == torch.uint8 and g.dim() == 1,
              "a uint8 generator state")
    randn = field(saved.get("randn"), dict, at("randn"), expected="a dict")
    keys = field(randn.get("keys"), torch.Tensor, at("randn.keys"),
                 lambda k: k.shape == (624,) and k.dtype == torch.int64 and bool(((k >= 0) & (k < 2**32)).all()),
                 "624 int64 words in [0, 2**32)")
    position = field(randn.get("position"), int, at("randn.position"), lambda p: 0 <= p <= 624, "an int in [0, 624]")
    has_gauss = field(randn.get("has_gauss"), int, at("randn.has_gauss"), lambda g: g in (0, 1), "0 or 1")
    cached = field(randn.get("cached"), float, at("randn.cached"), math.isfinite, "a finite float")

    fields = field(saved.get("fields"), dict, at("fields"), expected="a dict")
    es = new_strategy(num_params, config, seed)
    # Two generations: the TPA step-size rule makes some fields only at the second.
    for _ in range(2):
        _generation(es, lambda candidates: -np.arange(len(candidates), dtype=np.float64))
    fresh = _strategy_fields(es)
    decoded: dict[str, Any] = {}
    for key, encoded in fields.items():
        part, _, name = key.rpartition(".")
        if part not in _ES_PARTS or not name.isidentifier() or _es_part(es, part) is None:
            raise ValueError(f"{at('fields')}: expected fields of {list(_ES_PARTS)}, got {key!r}")
        if isinstance(encoded, dict) and encoded.get("kind") == "alias":
            target = encoded.get("value")
            if not isinstance(decoded.get(target), np.ndarray):
                raise ValueError(f"{at(key)}: expected an alias of an earlier array field, got {target!r}")
            decoded[key] = decoded[target]
            continue
        value = decoded[key] = _decode(encoded, at(key))
        if key in fresh:
            before = fresh[key]
            if _describe(value) != _describe(before) and value is not None and before is not None:
                raise ValueError(f"{at(key)}: expected {_describe(before)}, got {_describe(value)}")
    sigma = decoded.get(".sigma")
    if not (isinstance(sigma, (float, np.floating)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"{at('.sigma')}: expected a finite step size > 0, got {sigma!r}")
    for key in (".mean", ".C", "sm.C", "sm.B", "sm.D"):
        if key not in decoded or not np.isfinite(decoded[key]).all():
            raise ValueError(f"{at(key)}: expected finite values, got {_describe(decoded.get(key))}")
    if decoded.get(".countiter") != len(history):
        raise ValueError(f"{at('.countiter')}: expected {len(history)} (one per generation in the history), got "
                         f"{decoded.get('.countiter')!r}")

    for key in fresh.keys() - decoded.keys():  # fields the saved strategy did not have yet
        part, _, name = key.rpartition(".")
        delattr(_es_part(es, part), name)
    for key, value in decoded.items():
        part, _, name = key.rpartition(".")
        setattr(_es_part(es, part), name, value)
    es.opts["randn"].__self__.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, cached))
    return es, history, generator


def _describe(value: Any) -> str:
    """What a strategy field is, as far as a saved one must match a fresh one: an array's dtype and
    shape, or the kind of its value (cma keeps some numbers as floats first, numpy floats later)."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array {value.shape}"
    if isinstance(value, (bool, np.bool_)):
        return "a bool"
    if isinstance(value, (int, np.integer)):
        return "an int"
    if isinstance(value, (float, np.floating)):
        return "a float"
    return "a list" if isinstance(value, (list, tuple)) else type(value).__name__


def dream_fitness(mdnrnn: MDNRNN, controller: Controller, codec: ActionCodec, start_z: torch.Tensor,
                  config: WorldModelsConfig, tau: float, generator: torch.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """Fitness in the dream: every candidate x ``trials`` dreams as one batch (:func:`dream_rollouts`)."""
    def fitness(candidates: np.ndarray) -> np.ndarray:
        out = dream_rollouts(mdnrnn, controller, torch.as_tensor(candidates, dtype=torch.float32), start_z,
                             codec.model_input, trials=config.trials, tau=tau, max_steps=config.max_steps,
                             uses_hidden=config.controller_uses_hidden, generator=generator)
        return out.mean.cpu().numpy().astype(np.float64)
    return fitness


def real_fitness(env_id: str, policy: Policy, config: WorldModelsConfig, seed: int,
                 generation: int = 0, workdir: str | os.PathLike | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Fitness in the real env: every candidate x ``trials`` episodes across ``num_envs`` processes.
    Each call is the next generation (after ``generation`` done), whose env seeds derive from its
    number, so a resumed evolution meets the same episodes as an uninterrupted one."""
    calls = [generation]

    def fitness(candidates: np.ndarray) -> np.ndarray:
        params = torch.as_tensor(candidates, dtype=torch.float32).repeat_interleave(config.trials, 0)
        calls[0] += 1
        returns = play(env_id, len(params), policy, params, seed=seed + 7919 * calls[0], num_envs=config.num_envs,
                       max_steps=config.max_steps, workdir=workdir)
        return returns.reshape(len(candidates), config.trials).mean(1)
    return fitness


# --------------------------------------------------------------------------------------------------
# The pipeline

# Fields that shape the saved networks: a run directory refuses a config that changes them.
_IDENTITY = ("z_dim", "rnn_hidden", "mixtures", "reward_head")


def _open_run(run_dir: Path, env_id: str, config: WorldModelsConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    identity = {"env_id": env_id, **{k: getattr(config, k) for k in _IDENTITY}}
    path = run_dir / "run.json"
    if path.exists():
        try:
            saved = json.loads(path.read_bytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: corrupt file ({error})") from None
        field(saved, dict, str(path), expected="a JSON object")
        for key, value in identity.items():
            if saved.get(key) != value:
                raise ValueError(f"{'env_id' if key == 'env_id' else 'config.' + key}: {run_dir} holds a run with "
                                 f"{key}={saved.get(key)!r}, got {value!r}; use another run_dir")
    else:
        atomic_write(path, lambda f: f.write(json.dumps(identity, indent=1).encode()))


def iteration_tag(iteration: int) -> str:
    """What iteration ``iteration`` (from 0) adds to M's and C's file names: "" or "_iter<i>"."""
    return "" if iteration == 0 else f"_iter{iteration}"


def train(env_id: str = "VizdoomTakeCover-v1", run_dir: str | os.PathLike = "runs/world-models", *,
          stages: Sequence[str] = STAGES, config: WorldModelsConfig | None = None, seed: int = 0,
          log: Callable[[str, dict], Any] | None = None,
          progress: Callable[[str, int, int], Any] | None = None) -> dict[str, Any]:
    """Runs the named stages of World Models in ``run_dir`` (see the module docstring).

    Artefacts: ``run.json`` (what the networks' shapes are), ``data/`` (rollouts), ``envs/`` (the
    env workers' working folders: what a game writes, e.g. ViZDoom's ``_vizdoom.ini``), ``vae.pt``,
    ``mdnrnn.pt`` and, per kind of controller (its
    temperature or "real", its shape), ``controller_tau<tau>.pt`` (the CMA-ES state while it runs in
    ``.es.pt``, data only, see :func:`save_strategy`; at the end the controller, the fitness
    history and the real-env returns of ``eval_episodes`` episodes). A stage whose artefact exists is
    skipped, so running the same call again resumes; the controller stage resumes from its last
    generation, and given more ``generations`` than a finished controller had, evolves it further
    (its strategy is kept beside it) and scores it again. Iterations after the first add
    ``_iter<i>`` to M's and C's files. A corrupt, truncated or edited file raises ValueError naming
    it; a ``controller_*.es.pkl`` (the pickled strategy of runs before the data-only format) is
    refused unread, since unpickling a file from elsewhere can run its code: delete it to restart
    that controller stage.

    ``log(stage, record)`` gets each epoch's / generation's record; ``progress(stage, done, total)``
    reports progress. Returns ``{"fitness": [...], "returns": [...], "mean": ..., "std": ...}`` of
    the last controller evaluated (empty if no controller stage ran).
    """
    config = config or WorldModelsConfig.for_env(env_id)
    check_stages(run_dir, stages)
    run = Path(run_dir)
    _open_run(run, env_id, config)
    probe = make_env(env_id)
    codec = ActionCodec(probe.action_space)
    probe.close()
    dataset = RolloutDataset(run / "data")

    def report(stage: str) -> Callable[[int, int], Any] | None:
        return None if progress is None else (lambda done, total: progress(stage, done, total))

    def logger(stage: str) -> Callable[[dict], None]:
        return lambda record: log(stage, record) if log is not None else None

    controller = Controller(config.z_dim + (config.rnn_hidden if config.controller_uses_hidden else 0), codec.dim,
                            config.controller_hidden)
    summary: dict[str, Any] = {}
    for iteration in range(config.iterations):
        tag = iteration_tag(iteration)
        if "collect" in stages:
            missing = config.rollouts * (iteration + 1) - len(dataset)
            if missing > 0:
                if iteration == 0:
                    policy = Policy(None, None, None, codec, repeat=config.random_repeat)
                    params = None
                else:
                    vae, mdnrnn = load_vae(run, config), load_mdnrnn(run, config, codec, iteration_tag(iteration - 1))
                    best = load_controller(run / controller_file(config, iteration_tag(iteration - 1)),
                                           controller.num_params)
                    generator = torch.Generator().manual_seed(seed + iteration)
                    policy = Policy(vae, mdnrnn, controller, codec, config.controller_uses_hidden, config.explore,
                                    generator)
                    params = best["params"].expand(missing, -1)
                play(env_id, missing, policy, params, seed=seed + 100_003 * (len(dataset) + 1),
                     num_envs=config.num_envs, max_steps=config.max_steps, dataset=dataset, workdir=run / ENVS,
                     progress=None if progress is None else (lambda done, n=missing: progress("collect", done, n)))
        if "vae" in stages and iteration == 0 and not (run / "vae.pt").exists():
            frames = dataset.frames(config.vae_rollouts)
            vae, history = train_vae(frames, config, seed=seed, progress=report("vae"))
            for record in history:
                logger("vae")(record)
            save_atomically(run / "vae.pt", {"state": vae.state_dict(), "history": history, "frames": len(frames)})
        if "mdn" in stages and not (run / f"mdnrnn{tag}.pt").exists():
            vae = load_vae(run, config)
            latents = encode_dataset(dataset, vae, progress=report("encode"))
            previous = load_mdnrnn(run, config, codec, iteration_tag(iteration - 1)) if iteration else None
            mdnrnn, history = train_mdnrnn(latents, codec.dim, config, mdnrnn=previous, seed=seed + iteration,
                                           progress=report("mdn"))
            for record in history:
                logger("mdn")(record)
            start_z = torch.from_numpy(np.stack([r["mu"][0] for r in latents]))
            save_atomically(run / f"mdnrnn{tag}.pt", {"state": mdnrnn.state_dict(), "history": history,
                                                      "start_z": start_z, "rollouts": len(latents)})
        if "controller" in stages:
            summary = _controller_stage(env_id, run, config, codec, controller, tag, seed + iteration, logger,
                                        progress)
    return summary


def _load_weights(path: Path, model: torch.nn.Module, fields: dict[str, type]) -> dict[str, Any]:
    """The record a stage saved in ``path`` with ``model``'s weights loaded from its "state";
    ValueError naming the file for a corrupt one, a missing field or weights of another shape."""
    record = field(load_torch(path), dict, str(path), expected="a dict")
    for name, kind in {"state": dict, **fields}.items():
        field(record.get(name), kind, f"{path}: {name}", expected=kind.__name__)
    state = record["state"]
    for name, value in state.items():
        field(value, torch.Tensor, f"{path}: state[{name!r}]", lambda v: bool(torch.isfinite(v).all())
              if v.is_floating_point() else True, "a finite tensor")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{path}: state: expected the weights of {type(model).__name__} as configured, got "
                         f"{error}") from None
    return record


def check_stages(run_dir: str | os.PathLike, stages: Sequence[str]) -> None:
    """Raises ValueError (naming ``stages``) if a stage of ``stages`` needs what an earlier stage
    makes in ``run_dir`` (the first iteration's rollouts, ``vae.pt``, ``mdnrnn.pt``) and that stage
    neither ran before nor is among ``stages``."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise ValueError(f"stages: expected some of {list(STAGES)}, got {list(stages)}")
    run = Path(run_dir)
    made = {"collect": run / "data", "vae": run / "vae.pt", "mdn": run / "mdnrnn.pt"}
    needs = {"vae": ("collect",), "mdn": ("collect", "vae"), "controller": ("vae", "mdn")}
    for stage in stages:
        if stage in made and stage != "collect" and made[stage].exists():
            continue  # skipped: its artefact is there
        for need in needs.get(stage, ()):
            path = made[need]
            there = any(path.glob("rollout_*.npz")) if need == "collect" else path.exists()
            if need not in stages and not there:
                raise ValueError(f"stages: {stage} needs {path}, which is missing; run the {need} stage first")


def load_vae(run: str | os.PathLike, config: WorldModelsConfig) -> ConvVAE:
    """V as the vae stage left it in run directory ``run`` (eval mode, on ``config.device``)."""
    path = Path(run) / "vae.pt"
    if not path.exists():
        raise ValueError(f"stages: {path} is missing; run the vae stage first")
    vae = ConvVAE(config.z_dim, config.kl_tolerance)
    _load_weights(path, vae, {"history": list})
    return vae.to(config.device).eval()


def _mdnrnn_record(path: Path, config: WorldModelsConfig, mdnrnn: MDNRNN | None = None) -> dict[str, Any]:
    record = field(load_torch(path), dict, str(path), expected="a dict") if mdnrnn is None else \
        _load_weights(path, mdnrnn, {"history": list, "start_z": torch.Tensor})
    field(record.get("start_z"), torch.Tensor, f"{path}: start_z",
          lambda z: z.dim() == 2 and len(z) > 0 and z.shape[1] == config.z_dim and z.dtype == torch.float32
          and bool(torch.isfinite(z).all()), f"finite float32 [R > 0, {config.z_dim}]")
    return record


def load_mdnrnn(run: str | os.PathLike, config: WorldModelsConfig, codec: ActionCodec, tag: str = "") -> MDNRNN:
    """M as the mdn stage left it in ``run`` (``tag`` "_iter<i>" for a later iteration's)."""
    path = Path(run) / f"mdnrnn{tag}.pt"
    if not path.exists():
        raise ValueError(f"stages: {path} is missing; run the mdn stage first")
    mdnrnn = MDNRNN(config.z_dim, codec.dim, config.rnn_hidden, config.mixtures, config.reward_head)
    _mdnrnn_record(path, config, mdnrnn)
    return mdnrnn.to(config.device).eval()


def load_controller(path: str | os.PathLike, num_params: int) -> dict[str, Any]:
    """The record the controller stage saved in ``path``: ``params`` float32 [num_params] and its
    ``summary``; ValueError naming the file for a corrupt one or one of another size."""
    path = Path(path)
    record = field(load_torch(path), dict, str(path), expected="a dict")
    field(record.get("params"), torch.Tensor, f"{path}: params",
          lambda p: p.shape == (num_params,) and p.dtype == torch.float32 and bool(torch.isfinite(p).all()),
          f"finite float32 [{num_params}]")
    summary = field(record.get("summary"), dict, f"{path}: summary", expected="a dict")
    field(summary.get("fitness"), list, f"{path}: summary['fitness']", expected="a list")
    return record


def controller_file(config: WorldModelsConfig, tag: str = "") -> str:
    """controller_<tau1.15 | real>[_hidden<n>][_vonly][_iter<i>].pt: one file per kind of controller,
    so that several can be evolved on the same V and M."""
    where = f"tau{config.tau:g}" if config.train_in == "dream" else "real"
    shape = (f"_hidden{config.controller_hidden}" if config.controller_hidden else "") + \
        ("" if config.controller_uses_hidden else "_vonly")
    return f"controller_{where}{shape}{tag}.pt"


def _controller_stage(env_id: str, run: Path, config: WorldModelsConfig, codec: ActionCodec, controller: Controller,
                      tag: str, seed: int, logger: Callable[[str, Any], Callable[[dict], None]],
                      progress: Callable[[str, int, int], Any] | None) -> dict[str, Any]:
    final = run / controller_file(config, tag)
    pending = final.with_name(final.stem + ".es.pt")
    legacy = final.with_name(final.stem + ".es.pkl")
    if final.exists():
        summary = load_controller(final, controller.num_params)["summary"]
        if len(summary["fitness"]) >= config.generations or not (pending.exists() or legacy.exists()):
            return summary
        # More generations than the saved controller had: evolution goes on from its strategy.
    if legacy.exists():
        # Unpickling runs whatever the file says: a run directory from elsewhere could run its code.
        raise ValueError(f"{legacy}: this run's controller stage predates pymbrl's data-only format for the "
                         f"evolution and pymbrl never unpickles files; delete {legacy.name} to restart the "
                         f"controller stage from generation 0")
    vae = load_vae(run, config)
    mdnrnn = load_mdnrnn(run, config, codec, tag)
    policy = Policy(vae, mdnrnn, controller, codec, config.controller_uses_hidden)
    if config.train_in == "dream":
        start_z = _mdnrnn_record(run / f"mdnrnn{tag}.pt", config)["start_z"].to(config.device)
        generator = torch.Generator(config.device).manual_seed(seed)
        fitness = dream_fitness(mdnrnn, controller, codec, start_z, config, config.tau, generator)
    es, history = None, []
    if pending.exists():
        es, history, rng_state = load_strategy(pending, controller.num_params, config)
        if config.train_in == "dream":
            if rng_state is None:
                raise ValueError(f"{pending}: generator: expected the dream generator's state, got None")
            try:
                generator.set_state(rng_state)
            except RuntimeError as error:
                raise ValueError(f"{pending}: generator: expected a generator state, got {error}") from None
    if config.train_in == "real":
        fitness = real_fitness(env_id, policy, config, seed, generation=len(history), workdir=run / ENVS)

    def checkpoint(es: Any, history: list[dict]) -> None:
        logger("controller")(history[-1])
        save_strategy(pending, es, history, generator.get_state() if config.train_in == "dream" else None, seed)
        if progress is not None:
            progress("controller", len(history), config.generations)

    es, history = evolve(fitness, controller.num_params, config, seed=seed, es=es, history=history,
                         after_generation=checkpoint)
    params = torch.as_tensor(np.asarray(es.result.xfavorite), dtype=torch.float32)
    returns = play(env_id, config.eval_episodes, policy, params.expand(config.eval_episodes, -1),
                   seed=seed + 1_000_003, num_envs=config.num_envs, max_steps=config.max_steps, workdir=run / ENVS,
                   progress=None if progress is None else (lambda done: progress("evaluate", done,
                                                                                 config.eval_episodes)))
    summary = {"fitness": history, "returns": returns.tolist(), "mean": float(returns.mean()),
               "std": float(returns.std()), "tau": config.tau, "train_in": config.train_in,
               "inputs": "z, h" if config.controller_uses_hidden else "z", "controller_hidden": config.controller_hidden}
    logger("evaluate")({"mean": summary["mean"], "std": summary["std"], "episodes": config.eval_episodes})
    save_atomically(final, {"params": params, "summary": summary})
    return summary
