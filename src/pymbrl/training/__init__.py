"""The training layer: what every agent trains through.

config
    :class:`TrainConfig` (env, seed, device, budget) that every algorithm's frozen config dataclass
    extends; presets per env; YAML/JSON files; ``field=value`` overrides; help from the fields.
run
    The run directory (``config.yaml``, ``log.csv``, TensorBoard events, ``checkpoint/``), resume
    and continuation of a finished run (:func:`start_run`).
checkpoint
    Crash-safe writes and checked reads of checkpoint files; random states of envs and generators.
callbacks
    :class:`Callbacks`: stage changes, progress and records, for the CLI, tests and notebooks.
seeding
    Random streams drawn from the run's seed without touching global generators.
envstate
    The state of an env in mid-episode (its and its wrappers' fields), for exact resume.
stages
    Staged runs: stages with the artefacts they make and need, skipped once done.
evolution
    CMA-ES (the ``cma`` package) and its checkpoint, data only (``.es.pt``).
curves
    Learning-curve plots and ``log.csv`` reading.
agent
    :class:`TrainResult` (what ``train`` returns) and the ``act`` contract of a loaded agent.
"""

from pymbrl.training.agent import Actor, TrainResult, as_batch
from pymbrl.training.callbacks import Callbacks
from pymbrl.training.config import TrainConfig, describe, override, read_config, write_config
from pymbrl.training.run import Run, start_run
from pymbrl.training.seeding import generator, seeded

__all__ = ["Actor", "Callbacks", "Run", "TrainConfig", "TrainResult", "as_batch", "describe", "generator",
           "override", "read_config", "seeded", "start_run", "write_config"]
