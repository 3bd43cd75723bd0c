"""Readable agents, one file each (a staged agent's stages in a second file), all on one contract:
``train(config, run_dir=None, *, callbacks=None) -> TrainResult`` and ``load(run_dir) -> agent``
whose ``act(obs, deterministic=True)`` takes one observation or a batch (see :mod:`pymbrl.training`).

sac
    Soft Actor-Critic (twin Q, target networks, learned temperature).
mbpo
    Model-Based Policy Optimization: SAC on short branched rollouts of a Gaussian ensemble.
muzero
    MuZero, Gumbel MuZero and Stochastic MuZero (and AlphaZero mode with true rules) by batched self-play on
    the C++ search (the search and self-play in ``muzero_selfplay``; Stochastic MuZero's unroll and model
    functions in ``muzero_stochastic``).
sampled_muzero
    Sampled MuZero for continuous (Box) actions: searches over K actions sampled from a tanh-Gaussian policy.
dreamer
    Dreamer with DreamerV3's world model: actor and critic learned in imagination from every replayed state
    (the learner and its update in ``dreamer_learner``).
world_models
    World Models (Ha & Schmidhuber): V (a VAE), M (an MDN-RNN), C evolved by CMA-ES in the dream or the
    real env; stages collect, vae, mdn, controller (in ``world_models_stages``; how V and M learn in
    ``world_models_fitting``).
i2a
    Imagination-Augmented Agents (Weber et al.) on MiniPacman or Atari; stages env-model, distill, agent
    (in ``i2a_stages``).

The functions below find an algorithm by its name (as ``pymbrl train`` takes it) or its run directory.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

from pymbrl.training import Callbacks, TrainConfig, TrainResult
from pymbrl.training.run import run_algorithm

# name -> (module, config class)
ALGORITHMS = {
    "sac": ("pymbrl.agents.sac", "SACConfig"),
    "mbpo": ("pymbrl.agents.mbpo", "MBPOConfig"),
    "muzero": ("pymbrl.agents.muzero", "MuZeroConfig"),
    "sampled-muzero": ("pymbrl.agents.sampled_muzero", "SampledMuZeroConfig"),
    "dreamer": ("pymbrl.agents.dreamer", "DreamerConfig"),
    "world-models": ("pymbrl.agents.world_models", "WorldModelsConfig"),
    "i2a": ("pymbrl.agents.i2a", "I2AConfig"),
}


def module(name: str) -> ModuleType:
    """The agent module of the algorithm ``name`` (a key of :data:`ALGORITHMS`)."""
    if name not in ALGORITHMS:
        raise ValueError(f"algorithm: expected one of {list(ALGORITHMS)}, got {name!r}")
    return importlib.import_module(ALGORITHMS[name][0])


def config_class(name: str) -> type[TrainConfig]:
    """The config dataclass of the algorithm ``name``."""
    return getattr(module(name), ALGORITHMS[name][1])


def algorithm_of(config: TrainConfig) -> str:
    """The name of the algorithm whose config ``config`` is."""
    for name, (_, cls) in ALGORITHMS.items():
        if type(config).__name__ == cls and type(config).__module__ == ALGORITHMS[name][0]:
            return name
    raise TypeError(f"config: expected the config of one of {list(ALGORITHMS)}, got {type(config).__name__}")


def train(config: TrainConfig, run_dir: str | os.PathLike | None = None, *,
          callbacks: Callbacks | None = None) -> TrainResult:
    """Trains the algorithm whose config ``config`` is (see each module's ``train``)."""
    return module(algorithm_of(config)).train(config, run_dir, callbacks=callbacks)


def load(run_dir: str | os.PathLike, device: str | None = None) -> Any:
    """The trained agent of the run in ``run_dir``, whatever its algorithm; it has
    ``act(obs, deterministic=True)``."""
    return module(run_algorithm(run_dir)).load(run_dir, device=device)
