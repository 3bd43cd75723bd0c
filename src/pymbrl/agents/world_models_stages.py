"""The stages of World Models (see :mod:`pymbrl.agents.world_models` for the pipeline): collect
rollouts, train V, train M, evolve C; and the artefacts they leave in the run directory.

Artefacts: ``data/`` (rollouts, :class:`~pymbrl.replay.rollouts.RolloutDataset`), ``envs/`` (the env
workers' working folders: what a game writes, e.g. ViZDoom's ``_vizdoom.ini``), ``vae.pt``,
``mdnrnn.pt`` and, per kind of controller (its temperature or "real", its shape),
``controller_tau<tau>.pt`` (the CMA-ES state while it runs in ``.es.pt``, data only, see
:mod:`pymbrl.training.evolution`; kept beside the finished controller so that more generations can
follow; the controller holds its parameters and its summary: the fitness history and the real-env
returns of ``eval_episodes`` episodes). Iterations after the first add ``_iter<i>`` to M's and C's
files. ``logs/<artefact>/`` holds each training stage's records (``log.csv``, TensorBoard events).
A corrupt, truncated or edited file raises ValueError naming it; a ``controller_*.es.pkl`` (the
pickled strategy of runs before the data-only format) is refused unread, since unpickling a file
from elsewhere can run its code.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pymbrl._checks import integer
from pymbrl._extras import optional_imports
from pymbrl.agents import (
    world_models as wm,  # the config and make_env (that module imports this one)
)
from pymbrl.agents.world_models_fitting import encode_dataset, train_mdnrnn, train_vae
from pymbrl.envs.frames import IMAGE_SHAPE
from pymbrl.envs.spaces import ActionCodec
from pymbrl.envs.workers import worker_envs
from pymbrl.models.world_models import MDNRNN, Controller, ConvVAE, Policy
from pymbrl.replay.rollouts import RolloutDataset
from pymbrl.rollout.dream import dream_rollouts
from pymbrl.training import Callbacks, Run, start_run
from pymbrl.training.checkpoint import field, load_torch, save_atomically
from pymbrl.training.evolution import evolve, load_strategy, save_strategy

with optional_imports():
    import gymnasium as gym

DATA, ENVS, LOGS = "data", "envs", "logs"


def iteration_tag(iteration: int) -> str:
    """What iteration ``iteration`` (from 0) adds to M's and C's file names: "" or "_iter<i>"."""
    return "" if iteration == 0 else f"_iter{iteration}"


def controller_file(config: wm.WorldModelsConfig, tag: str = "") -> str:
    """controller_<tau1.15 | real>[_hidden<n>][_vonly][_iter<i>].pt: one file per kind of controller,
    so that several can be evolved on the same V and M."""
    where = f"tau{config.tau:g}" if config.train_in == "dream" else "real"
    shape = (f"_hidden{config.controller_hidden}" if config.controller_hidden else "") + \
        ("" if config.controller_uses_hidden else "_vonly")
    return f"controller_{where}{shape}{tag}.pt"


def make_controller(config: wm.WorldModelsConfig, codec: ActionCodec) -> Controller:
    return Controller(config.z_dim + (config.rnn_hidden if config.controller_uses_hidden else 0), codec.dim,
                      config.controller_hidden)


def stage_log(run_dir: Path, config: wm.WorldModelsConfig, callbacks: Callbacks, stage: str, folder: str,
              total: int) -> Run:
    """The records of ``stage`` (``log.csv``, TensorBoard events in ``logs/<folder>``, and the callbacks)."""
    return start_run(run_dir / LOGS / folder, "world-models", config, callbacks=callbacks, stage=stage, total=total,
                     write=False)


# --------------------------------------------------------------------------------------------------
# The artefacts


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


def load_vae(run_dir: str | os.PathLike, config: wm.WorldModelsConfig) -> ConvVAE:
    """V as the vae stage left it in ``run_dir`` (eval mode, on ``config.device``)."""
    path = Path(run_dir) / "vae.pt"
    if not path.exists():
        raise ValueError(f"stages: {path} is missing; run the vae stage first")
    vae = ConvVAE(config.z_dim, config.kl_tolerance)
    _load_weights(path, vae, {"history": list})
    return vae.to(config.device).eval()


def _mdnrnn_record(path: Path, config: wm.WorldModelsConfig, mdnrnn: MDNRNN | None = None) -> dict[str, Any]:
    record = field(load_torch(path), dict, str(path), expected="a dict") if mdnrnn is None else \
        _load_weights(path, mdnrnn, {"history": list, "start_z": torch.Tensor})
    field(record.get("start_z"), torch.Tensor, f"{path}: start_z",
          lambda z: z.dim() == 2 and len(z) > 0 and z.shape[1] == config.z_dim and z.dtype == torch.float32
          and bool(torch.isfinite(z).all()), f"finite float32 [R > 0, {config.z_dim}]")
    return record


def load_mdnrnn(run_dir: str | os.PathLike, config: wm.WorldModelsConfig, codec: ActionCodec,
                tag: str = "") -> MDNRNN:
    """M as the mdn stage left it in ``run_dir`` (``tag`` "_iter<i>" for a later iteration's)."""
    path = Path(run_dir) / f"mdnrnn{tag}.pt"
    if not path.exists():
        raise ValueError(f"stages: {path} is missing; run the mdn stage first")
    mdnrnn = MDNRNN(config.z_dim, codec.dim, config.rnn_hidden, config.mixtures, config.reward_head)
    _mdnrnn_record(path, config, mdnrnn)
    return mdnrnn.to(config.device).eval()


def load_controller(path: str | os.PathLike, num_params: int | None = None) -> dict[str, Any]:
    """The record the controller stage saved in ``path``: ``params`` float32 [num_params] and its
    ``summary``; ValueError naming the file for a corrupt one or one of another size."""
    path = Path(path)
    record = field(load_torch(path), dict, str(path), expected="a dict")
    field(record.get("params"), torch.Tensor, f"{path}: params",
          lambda p: p.dim() == 1 and p.shape[0] == (num_params or p.shape[0]) and p.dtype == torch.float32
          and bool(torch.isfinite(p).all()), f"finite float32 [{num_params or 'n'}]")
    summary = field(record.get("summary"), dict, f"{path}: summary", expected="a dict")
    field(summary.get("fitness"), list, f"{path}: summary['fitness']", expected="a list")
    return record


def latest_controller(run_dir: str | os.PathLike, config: wm.WorldModelsConfig) -> int | None:
    """The last iteration with a controller of ``config``'s kind in ``run_dir``, or None."""
    for iteration in reversed(range(config.iterations)):
        if (Path(run_dir) / controller_file(config, iteration_tag(iteration))).exists():
            return iteration
    return None


# --------------------------------------------------------------------------------------------------
# Playing in the real env (collection and evaluation)


def play(config: wm.WorldModelsConfig, episodes: int, policy: Policy, params: torch.Tensor | None = None, *,
         seed: int = 0, dataset: RolloutDataset | None = None, callbacks: Callbacks | None = None,
         stage: str = "play", workdir: str | os.PathLike | None = None) -> np.ndarray:
    """Plays ``episodes`` episodes of ``config.env`` (as :func:`~pymbrl.agents.world_models.make_env`
    makes it, cut after ``max_steps`` steps) in ``config.num_envs`` envs and returns their returns,
    float64 [episodes]. Episode i acts with ``params[i]`` (None: random actions); with ``dataset``,
    every episode is stored in it as it ends; ``callbacks.on_progress(stage, finished, episodes)``.

    The envs run in worker processes working in their own folders under ``workdir`` (see
    :func:`pymbrl.envs.workers.worker_envs`; default: a temporary folder), or, with one env and no
    ViZDoom game (which needs a folder of its own), in this process.
    """
    episodes = integer(episodes, "episodes")
    num_envs = min(config.num_envs, episodes)
    if params is not None and params.shape[0] != episodes:
        raise ValueError(f"params: expected one row per episode ({episodes}), got {tuple(params.shape)}")
    processes = num_envs > 1 or config.env.startswith("Vizdoom")
    callbacks = callbacks or Callbacks()
    with worker_envs(functools.partial(wm.make_env, config), num_envs, processes=processes, workdir=workdir) as envs:
        return _run(envs, episodes, policy, params, seed, dataset,
                    lambda finished: callbacks.on_progress(stage, finished, episodes))


def _run(envs: gym.vector.VectorEnv, episodes: int, policy: Policy, params: torch.Tensor | None, seed: int,
         dataset: RolloutDataset | None, progress: Callable[[int], Any]) -> np.ndarray:
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
                progress(finished)
                playing[k], upcoming = upcoming, upcoming + 1
        obs = next_obs
    return returns


def rollouts_done(run_dir: Path, count: int) -> bool:
    """Whether ``data/`` holds ``count`` rollouts (without making the folder)."""
    return len(list((run_dir / DATA).glob("rollout_*.npz"))) >= count


def collect_stage(run_dir: Path, callbacks: Callbacks, config: wm.WorldModelsConfig, codec: ActionCodec,
                  iteration: int) -> dict[str, Any]:
    """Stage "collect": adds rollouts to ``data/`` until it holds ``rollouts`` per iteration so far;
    random actions (each held 1..``random_repeat`` steps) in the first iteration, the previous
    iteration's controller with ``explore`` noise after it."""
    dataset = RolloutDataset(run_dir / DATA, IMAGE_SHAPE)
    missing = config.rollouts * (iteration + 1) - len(dataset)
    if iteration == 0:
        policy, params = Policy(None, None, None, codec, repeat=config.random_repeat), None
    else:
        previous = iteration_tag(iteration - 1)
        controller = make_controller(config, codec)
        vae, mdnrnn = load_vae(run_dir, config), load_mdnrnn(run_dir, config, codec, previous)
        best = load_controller(run_dir / controller_file(config, previous), controller.num_params)
        generator = torch.Generator().manual_seed(config.seed + iteration)
        policy = Policy(vae, mdnrnn, controller, codec, config.controller_uses_hidden, config.explore, generator)
        params = best["params"].expand(missing, -1)
    if config.actors:
        from pymbrl.agents.world_models_actors import (
            actor_collect,  # that module imports this one
        )

        returns = actor_collect(config, codec, policy, None if params is None else params[0], missing, dataset,
                                callbacks)
    else:
        returns = play(config, missing, policy, params, seed=config.seed + 100_003 * (len(dataset) + 1),
                       dataset=dataset, callbacks=callbacks, stage="collect", workdir=run_dir / ENVS)
    return {"rollouts": len(dataset), "mean": float(returns.mean())}


# --------------------------------------------------------------------------------------------------
# V and M


def vae_stage(run_dir: Path, callbacks: Callbacks, config: wm.WorldModelsConfig) -> dict[str, Any]:
    """Stage "vae": V learns from the frames of the first ``vae_rollouts`` rollouts, into ``vae.pt``."""
    frames = RolloutDataset(run_dir / DATA, IMAGE_SHAPE).frames(config.vae_rollouts)
    log = stage_log(run_dir, config, callbacks, "vae", "vae", config.vae_epochs)
    vae, history = train_vae(frames, config, seed=config.seed, callbacks=callbacks)
    for record in history:
        log.evaluated(record)
    log.close()
    save_atomically(run_dir / "vae.pt", {"state": vae.state_dict(), "history": history, "frames": len(frames)})
    return {"frames": len(frames), **history[-1]}


def mdn_stage(run_dir: Path, callbacks: Callbacks, config: wm.WorldModelsConfig, codec: ActionCodec,
        iteration: int) -> dict[str, Any]:
    """Stage "mdn": M learns from every rollout, encoded by V (after the first iteration, starting
    from the previous iteration's M), into ``mdnrnn[_iter<i>].pt`` with the rollouts' first
    latents, from which dreams start."""
    tag = iteration_tag(iteration)
    log = stage_log(run_dir, config, callbacks, "mdn", f"mdnrnn{tag}", config.rnn_epochs)
    latents = encode_dataset(RolloutDataset(run_dir / DATA, IMAGE_SHAPE), load_vae(run_dir, config),
                             callbacks=callbacks)
    previous = load_mdnrnn(run_dir, config, codec, iteration_tag(iteration - 1)) if iteration else None
    mdnrnn, history = train_mdnrnn(latents, codec.dim, config, mdnrnn=previous, seed=config.seed + iteration,
                                   callbacks=callbacks)
    for record in history:
        log.evaluated(record)
    log.close()
    start_z = torch.from_numpy(np.stack([r["mu"][0] for r in latents]))
    save_atomically(run_dir / f"mdnrnn{tag}.pt", {"state": mdnrnn.state_dict(), "history": history,
                                                  "start_z": start_z, "rollouts": len(latents)})
    return {"rollouts": len(latents), **history[-1]}


# --------------------------------------------------------------------------------------------------
# C


def dream_fitness(mdnrnn: MDNRNN, controller: Controller, codec: ActionCodec, start_z: torch.Tensor,
                  config: wm.WorldModelsConfig, generator: torch.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """Fitness in the dream: every candidate x ``trials`` dreams at temperature ``tau`` as one batch
    (:func:`~pymbrl.rollout.dream.dream_rollouts`)."""
    def fitness(candidates: np.ndarray) -> np.ndarray:
        out = dream_rollouts(mdnrnn, controller, torch.as_tensor(candidates, dtype=torch.float32), start_z,
                             codec.model_input, trials=config.trials, tau=config.tau, max_steps=config.max_steps,
                             uses_hidden=config.controller_uses_hidden, generator=generator)
        return out.mean.cpu().numpy().astype(np.float64)
    return fitness


def real_fitness(config: wm.WorldModelsConfig, policy: Policy, seed: int, generation: int = 0,
                 workdir: str | os.PathLike | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Fitness in the real env: every candidate x ``trials`` episodes across ``num_envs`` envs.
    Each call is the next generation (after ``generation`` done), whose env seeds derive from its
    number, so a resumed evolution meets the same episodes as an uninterrupted one."""
    calls = [generation]

    def fitness(candidates: np.ndarray) -> np.ndarray:
        params = torch.as_tensor(candidates, dtype=torch.float32).repeat_interleave(config.trials, 0)
        calls[0] += 1
        returns = play(config, len(params), policy, params, seed=seed + 7919 * calls[0], workdir=workdir)
        return returns.reshape(len(candidates), config.trials).mean(1)
    return fitness


def controller_done(run_dir: Path, config: wm.WorldModelsConfig, tag: str) -> bool:
    """Whether the controller is there with all its generations (or without a strategy to go on from)."""
    final = run_dir / controller_file(config, tag)
    if not final.exists():
        return False
    pending, legacy = final.with_name(final.stem + ".es.pt"), final.with_name(final.stem + ".es.pkl")
    fitness = load_controller(final)["summary"]["fitness"]
    return len(fitness) >= config.generations or not (pending.exists() or legacy.exists())


def controller_stage(run_dir: Path, callbacks: Callbacks, config: wm.WorldModelsConfig, codec: ActionCodec,
               iteration: int) -> dict[str, Any]:
    """Stage "controller": C evolved by CMA-ES in M's dream (or the real env), checkpointed after
    every generation (resumed from the last one; given more ``generations`` than a finished
    controller had, evolved further), then scored over ``eval_episodes`` real episodes."""
    tag, seed = iteration_tag(iteration), config.seed + iteration
    final = run_dir / controller_file(config, tag)
    pending, legacy = final.with_name(final.stem + ".es.pt"), final.with_name(final.stem + ".es.pkl")
    if legacy.exists():
        # Unpickling runs whatever the file says: a run directory from elsewhere could run its code.
        raise ValueError(f"{legacy}: this run's controller stage predates pymbrl's data-only format for the "
                         f"evolution and pymbrl never unpickles files; delete {legacy.name} to restart the "
                         f"controller stage from generation 0")
    controller = make_controller(config, codec)
    vae, mdnrnn = load_vae(run_dir, config), load_mdnrnn(run_dir, config, codec, tag)
    policy = Policy(vae, mdnrnn, controller, codec, config.controller_uses_hidden)
    if config.train_in == "dream":
        start_z = _mdnrnn_record(run_dir / f"mdnrnn{tag}.pt", config)["start_z"].to(config.device)
        generator = torch.Generator(config.device).manual_seed(seed)
        fitness = dream_fitness(mdnrnn, controller, codec, start_z, config, generator)
    es, history = None, []
    if pending.exists():
        es, history, rng_state = load_strategy(pending, controller.num_params, sigma0=config.sigma0,
                                               popsize=config.popsize)
        if config.train_in == "dream":
            if rng_state is None:
                raise ValueError(f"{pending}: generator: expected the dream generator's state, got None")
            try:
                generator.set_state(rng_state)
            except RuntimeError as error:
                raise ValueError(f"{pending}: generator: expected a generator state, got {error}") from None
    if config.train_in == "real":
        fitness = real_fitness(config, policy, seed, generation=len(history), workdir=run_dir / ENVS)
    close_actors = None
    if config.actors:
        from pymbrl.agents.world_models_actors import (
            actor_fitness,  # that module imports this one
        )

        fitness, close_actors = actor_fitness(config, policy, codec,
                                              start_z if config.train_in == "dream" else None, seed, len(history))
    log = stage_log(run_dir, config, callbacks, "controller", final.stem, config.generations)
    log.history += history  # log.csv keeps the generations done before a resume

    def checkpoint(es: Any, history: list[dict]) -> None:
        log.evaluated(history[-1])
        save_strategy(pending, es, history, generator.get_state() if config.train_in == "dream" else None, seed)
        log.progress(len(history))

    try:
        es, history = evolve(fitness, controller.num_params, sigma0=config.sigma0, popsize=config.popsize,
                             generations=config.generations, seed=seed, es=es, history=history,
                             after_generation=checkpoint)
    finally:
        log.close()
        if close_actors is not None:
            close_actors()
    params = torch.as_tensor(np.asarray(es.result.xfavorite), dtype=torch.float32)
    evaluation = stage_log(run_dir, config, callbacks, "evaluate", f"{final.stem}/evaluate", config.eval_episodes)
    returns = play(config, config.eval_episodes, policy, params.expand(config.eval_episodes, -1),
                   seed=seed + 1_000_003, callbacks=callbacks, stage="evaluate", workdir=run_dir / ENVS)
    summary = {"fitness": history, "returns": returns.tolist(), "mean": float(returns.mean()),
               "std": float(returns.std()), "tau": config.tau, "train_in": config.train_in,
               "inputs": "z, h" if config.controller_uses_hidden else "z",
               "controller_hidden": config.controller_hidden}
    evaluation.evaluated({"mean": summary["mean"], "std": summary["std"], "episodes": config.eval_episodes})
    evaluation.close()
    save_atomically(final, {"params": params, "summary": summary})
    return summary
