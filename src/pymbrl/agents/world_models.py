"""World Models (Ha & Schmidhuber 2018, "Recurrent World Models Facilitate Policy Evolution") as the
paper's stages, run in a run directory (the stages themselves: :mod:`pymbrl.agents.world_models_stages`):

1. collect -- rollouts of a random policy (later: of the controller) into an on-disk dataset;
2. vae     -- V, a ConvVAE, learns to compress each frame to z;
3. mdn     -- M, an MDN-RNN, learns P(z_{t+1}, done | z_t, a_t, h_t) from the encoded rollouts;
4. controller -- C, a linear map of [z, h], evolved by CMA-ES: inside M's dream (every candidate
   x trial as one batched rollout, at temperature tau) or in the real env (envs in worker
   processes), then evaluated in the real env.

Each stage leaves its artefact in the run directory and is skipped when that exists, so a stopped
run resumes (the controller stage from its last generation). With ``iterations`` > 1 it runs the
paper's iterative procedure: collect with the current controller, retrain M on all the data,
evolve C again.

Parts: :mod:`pymbrl.models.world_models` (V, M, C and the policy acting with them),
:mod:`pymbrl.rollout.dream` (batched dreams), :mod:`pymbrl.rollout.dream_env` (the dream as
gymnasium envs), :mod:`pymbrl.training.evolution` (CMA-ES and its checkpoints).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from pymbrl._checks import integer, real
from pymbrl._extras import MissingExtra, optional_imports
from pymbrl.agents import (
    world_models_stages as wms,  # the stages (that module imports this one)
)
from pymbrl.envs.frames import IMAGE_SHAPE
from pymbrl.envs.wrappers import ResizeFrames
from pymbrl.envs.spaces import ActionCodec
from pymbrl.models.world_models import Policy, temperature
from pymbrl.training import Callbacks, TrainConfig, TrainResult, as_batch
from pymbrl.training import stages as staging
from pymbrl.training.run import read_config_of, release

with optional_imports():
    import gymnasium as gym

STAGES = ("collect", "vae", "mdn", "controller")


@dataclass(frozen=True)
class WorldModelsConfig(TrainConfig):
    """World Models' settings; defaults are the paper's Doom TakeCover settings (its appendix) unless noted.

    Of the run fields it uses ``env``, ``seed``, ``device`` and ``eval_episodes``; its budgets are
    its own (``rollouts``, the epochs, ``generations``), so ``steps``, ``eval_every`` and
    ``checkpoint_every`` are unused (every stage saves its artefact when it ends, and the
    controller stage checkpoints after every generation).

    The presets scale the paper's runs to a 2-core CPU. VizdoomTakeCover-v1: 1,200 random rollouts
    instead of 10,000; V learns from the first 300 (4 epochs), M (256 LSTM units instead of 512)
    from all; 60 generations. CarRacing-v3: z 32 and M 256 as in the paper, but 40 random rollouts
    (a new action every step) of 300 steps (the paper: 10,000 of 1000), 5 VAE epochs, and C evolved
    in the real env for 20 generations of 16 candidates x 1 trial (the paper: 64 x 16), scored over
    16 episodes.
    """

    DEFAULT_ENV: ClassVar[str] = "VizdoomTakeCover-v1"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "VizdoomTakeCover-v1": dict(rollouts=1200, vae_rollouts=300, rnn_hidden=256, vae_epochs=4, generations=60),
        "CarRacing-v3": dict(z_dim=32, rnn_hidden=256, random_repeat=1, rollouts=40, max_steps=300, vae_epochs=5,
                             train_in="real", popsize=16, trials=1, generations=20, eval_episodes=16),
    }

    steps: int = 1  # unused (the budgets are rollouts, epochs and generations)
    eval_every: int = 1  # unused (each controller is evaluated once, after its last generation)
    eval_episodes: int = 100  # real episodes of each controller's final evaluation
    checkpoint_every: int = 1  # unused (the controller stage checkpoints after every generation)
    z_dim: int = 64  # V's latent size (the paper: 64 for Doom, 32 for CarRacing)
    kl_tolerance: float = 0.5  # V's KL floor per latent dimension
    vae_lr: float = 1e-4  # V's Adam step size
    vae_batch: int = 100  # frames per V batch
    vae_epochs: int = 1  # V's epochs over its frames
    vae_rollouts: int | None = None  # V learns from the frames of the first this many rollouts (None: all)
    rnn_hidden: int = 512  # M's LSTM units (the paper: 512 for Doom, 256 for CarRacing)
    mixtures: int = 5  # Gaussians per latent dimension in M's prediction
    rnn_lr: float = 1e-3  # M's Adam step size
    rnn_batch: int = 100  # sequences per M batch
    rnn_seq_len: int = 100  # steps per sequence
    rnn_epochs: int = 20  # M's epochs over the rollouts
    rnn_clip: float = 1.0  # M's gradient norm clip
    done_weight: float = 10.0  # weight of the done head's positive targets (the paper's code)
    random_repeat: int = 10
    """the random policy holds each action for 1..random_repeat steps (drawn uniformly), as the paper's
    Doom collection code does ("more diverse"), so that M also sees where steady movement leads, as a
    controller's does; 1 draws a new action every step"""
    reward_head: bool = False  # M also predicts rewards (dreams then pay them, not 1 per step survived)
    controller_hidden: int = 0  # 0: the paper's linear controller; > 0 adds one tanh layer of this size
    controller_uses_hidden: bool = True  # C reads [z, h] (V+M); false: the paper's V-only controller
    rollouts: int = 10_000  # rollouts collected per iteration (random ones in the first)
    max_steps: int = 2100  # episode cap in the real env and in dreams (TakeCover's)
    popsize: int = 64  # CMA-ES population
    trials: int = 16  # episodes (dreams) per candidate, their returns averaged
    sigma0: float = 0.1  # CMA-ES's initial step size
    generations: int = 200  # CMA-ES generations; a finished controller continues when given more
    tau: float = 1.15  # the dream's temperature
    train_in: str = "dream"  # where C evolves: "dream" (inside M) or "real" (in the env itself)
    iterations: int = 1
    """rounds of the procedure; each after the first collects with the last controller (and
    ``explore`` noise), retrains M on all the data and evolves C again"""
    explore: float = 0.1  # std of Gaussian noise on C's action scores while it collects (iterations)
    num_envs: int = 2  # env worker processes for collection and real episodes
    actors: int = 0  # Ray actors sharing the collection and each CMA-ES generation's fitness (0: all in this process)
    ray_address: str = ""  # the Ray cluster to join ("": start one on this machine when actors > 0)

    def identity(self) -> dict[str, Any]:
        """The fields the artefacts depend on (the env, the networks' shapes): a run directory refuses
        a config that changes them. Others (tau, train_in, the controller's shape, the budgets) pick
        another controller file or extend the run."""
        return {k: v for k, v in super().identity().items()
                if k in ("env", "z_dim", "rnn_hidden", "mixtures", "reward_head")}

    def __post_init__(self) -> None:
        super().__post_init__()
        integer(self.actors, "actors", minimum=0)
        if not isinstance(self.ray_address, str):
            raise TypeError(f"ray_address: expected a str, got {self.ray_address!r}")
        for name in ("z_dim", "vae_batch", "vae_epochs", "rnn_hidden", "mixtures", "rnn_batch", "rnn_seq_len",
                     "rnn_epochs", "rollouts", "max_steps", "popsize", "trials", "generations", "iterations",
                     "num_envs", "random_repeat"):
            integer(getattr(self, name), name)
        integer(self.controller_hidden, "controller_hidden", minimum=0)
        integer(self.vae_rollouts, "vae_rollouts", optional=True)
        for name in ("kl_tolerance", "vae_lr", "rnn_lr", "rnn_clip", "done_weight", "sigma0", "explore"):
            real(getattr(self, name), name, low=0.0)
        temperature(self.tau)
        for name in ("reward_head", "controller_uses_hidden"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name}: expected a bool, got {getattr(self, name)!r}")
        if self.popsize < 2:
            raise ValueError(f"popsize: expected at least 2 (CMA-ES ranks candidates), got {self.popsize}")
        if self.train_in not in ("dream", "real"):
            raise ValueError(f"train_in: expected 'dream' or 'real', got {self.train_in!r}")


def make_env(config: WorldModelsConfig, render_mode: str | None = None) -> gym.Env:
    """``config.env`` as the agent sees it: 64x64x3 uint8 frames as observations, episodes cut after
    ``max_steps`` steps. ViZDoom ids (``Vizdoom...``, from the vizdoom package) give their
    ``"screen"``; other envs must give RGB frames. Raises ValueError naming ``env`` for an env
    without frames or with actions that are neither Discrete nor a bounded 1-D Box."""
    env_id = config.env
    if env_id.startswith("Vizdoom"):
        try:
            with optional_imports():
                from vizdoom import gymnasium_wrapper  # noqa: F401  (registers the Vizdoom ids)
        except MissingExtra as error:
            raise ValueError(f"env: {env_id}: {error}") from None
    try:
        env = gym.make(env_id, **({} if render_mode is None else {"render_mode": render_mode}))
    except gym.error.Error as error:
        raise ValueError(f"env: {error}") from None
    space = env.observation_space
    key = "screen" if isinstance(space, gym.spaces.Dict) and "screen" in space.spaces else None
    frames = space[key] if key else space
    if not (isinstance(frames, gym.spaces.Box) and len(frames.shape) == 3 and frames.shape[-1] == 3
            and frames.dtype == np.uint8):
        env.close()
        raise ValueError(f"env: World Models needs RGB frames (uint8 [H, W, 3]) as observations, {env_id} has {space}")
    try:
        ActionCodec(env.action_space, "env")
    except ValueError:
        env.close()
        raise
    return gym.wrappers.TimeLimit(ResizeFrames(env, key), config.max_steps)


def pipeline(config: WorldModelsConfig, codec: ActionCodec | None) -> list[staging.Stage]:
    """The stages of a run of ``config``, in order: collect, vae, mdn, controller, then for each
    further iteration collect (with the controller), mdn, controller. They run with ``codec``, the
    env's actions (None gives a list that only serves to check a selection of stages)."""
    stages = []
    for i in range(config.iterations):
        tag, before = wms.iteration_tag(i), wms.iteration_tag(i - 1)
        args = dict(config=config, codec=codec, iteration=i)
        stages.append(staging.Stage(
            "collect", functools.partial(wms.collect_stage, **args), makes=("data/",) if i == 0 else (),
            needs=() if i == 0 else ("vae.pt", f"mdnrnn{before}.pt", wms.controller_file(config, before)),
            complete=functools.partial(wms.rollouts_done, count=config.rollouts * (i + 1))))
        if i == 0:
            stages.append(staging.Stage("vae", functools.partial(wms.vae_stage, config=config), makes=("vae.pt",),
                                        needs=("data/",)))
        stages.append(staging.Stage("mdn", functools.partial(wms.mdn_stage, **args), makes=(f"mdnrnn{tag}.pt",),
                                    needs=("data/", "vae.pt", *([f"mdnrnn{before}.pt"] if i else []))))
        stages.append(staging.Stage(
            "controller", functools.partial(wms.controller_stage, **args),
            makes=(wms.controller_file(config, tag),), needs=("vae.pt", f"mdnrnn{tag}.pt"),
            complete=functools.partial(wms.controller_done, config=config, tag=tag)))
    return stages


def check_stages(run_dir: str | os.PathLike, stages: list[str], config: WorldModelsConfig) -> None:
    """Refuses (ValueError naming ``stages``) unknown stages, or stages that need what an earlier
    stage makes in ``run_dir`` when that stage neither ran before nor is among ``stages``."""
    staging.check_stages(run_dir, pipeline(config, None), stages)


def train(config: WorldModelsConfig | None = None, run_dir: str | os.PathLike | None = None, *,
          callbacks: Callbacks | None = None, stages: list[str] | None = None) -> TrainResult:
    """Runs the ``stages`` (default all) of World Models for ``config`` in ``run_dir`` (see the
    module docstring; without ``run_dir``, in a temporary folder removed at the end).

    The records: per epoch of V ("vae") and of M ("mdn"), per generation of C ("controller"), and
    the controller's real-env score ("evaluate"). A run directory holds the artefacts of one env
    and one set of network sizes (see :meth:`WorldModelsConfig.identity`): another is refused naming the
    field. The result's ``summary`` is the controller's (of ``config``'s kind, of the last
    iteration that has one): the fitness history (also the ``history``), the real-env ``returns``,
    their ``mean`` and ``std``, ``tau``, ``train_in``, ``inputs`` and ``controller_hidden``; empty
    (and no agent) if there is no controller yet.
    """
    c = config or WorldModelsConfig.for_env(WorldModelsConfig.DEFAULT_ENV)
    if run_dir is None:
        with tempfile.TemporaryDirectory(prefix="pymbrl-world-models-") as folder:
            return dataclasses.replace(train(c, folder, callbacks=callbacks, stages=stages), run_dir=None)
    probe = make_env(c)
    codec = ActionCodec(probe.action_space)
    probe.close()
    stage_list = pipeline(c, codec)
    selected = list(STAGES) if stages is None else list(stages)
    staging.check_stages(run_dir, stage_list, selected)
    directory = staging.start_pipeline(run_dir, "world-models", c)
    try:
        staging.run_stages(directory, stage_list, selected, callbacks)
    finally:
        release(directory)
    iteration = wms.latest_controller(directory, c)
    if iteration is None:
        return TrainResult(None, [], directory, {})
    summary = wms.load_controller(directory / wms.controller_file(c, wms.iteration_tag(iteration)))["summary"]
    return TrainResult(load(directory), summary["fitness"], directory, summary)


class WorldModelsAgent:
    """A trained controller acting with V and M: ``act(frames)`` for one frame uint8 [64, 64, 3] (as
    :func:`make_env` gives them) or a batch [N, 64, 64, 3] of N envs' frames. M's state is kept
    between calls: call ``reset()`` when an episode starts (a batch of another size starts afresh).
    ``deterministic=False`` adds the collection's ``explore`` noise to C's action scores."""

    def __init__(self, policy: Policy, exploring: Policy, params: torch.Tensor, action_space: gym.Space):
        self.policy, self.exploring, self.params, self.action_space = policy, exploring, params, action_space
        self.state = None

    def reset(self) -> None:
        self.state = None

    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        frames, single = as_batch(obs, IMAGE_SHAPE, np.uint8)
        n = len(frames)
        first = self.state is None or self.state.h.shape[0] != n
        if first:
            self.state = self.policy.mdnrnn.initial_state(n)
        policy = self.policy if deterministic else self.exploring
        actions, _, self.state = policy.act(frames, self.params.expand(n, -1), self.state, np.full(n, first),
                                            self.action_space)
        return actions[0] if single else actions


def load(run_dir: str | os.PathLike, device: str | None = None) -> WorldModelsAgent:
    """The controller of the World Models run in ``run_dir`` (of its config's kind, of the last
    iteration that has one) with its V and M, on ``device`` (default: the run's)."""
    config = read_config_of(run_dir, WorldModelsConfig, "world-models", device)
    iteration = wms.latest_controller(run_dir, config)
    if iteration is None:
        raise ValueError(f"run_dir: no {wms.controller_file(config)} in {str(run_dir)!r}; run the controller "
                         f"stage first")
    tag = wms.iteration_tag(iteration)
    env = make_env(config)
    space = env.action_space
    env.close()
    codec = ActionCodec(space)
    controller = wms.make_controller(config, codec)
    params = wms.load_controller(Path(run_dir) / wms.controller_file(config, tag), controller.num_params)["params"]
    vae, mdnrnn = wms.load_vae(run_dir, config), wms.load_mdnrnn(run_dir, config, codec, tag)
    policy = Policy(vae, mdnrnn, controller, codec, config.controller_uses_hidden)
    exploring = Policy(vae, mdnrnn, controller, codec, config.controller_uses_hidden, config.explore,
                       torch.Generator(config.device).manual_seed(config.seed))
    return WorldModelsAgent(policy, exploring, params.to(config.device), space)
