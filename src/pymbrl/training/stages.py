"""Staged runs: an agent trained as a pipeline of stages, each leaving artefacts in the run
directory that later stages read (World Models: collect, vae, mdn, controller; I2A: env-model,
distill, agent).

A stage whose artefacts all exist is done and is skipped, so running the pipeline again resumes
it (a stage that checkpoints resumes from its checkpoint). A selection of stages is checked before
anything runs: a stage to run needs the artefacts of the earlier stages it reads, made already or
by a stage selected before it. A pipeline that repeats (World Models' iterations) lists a stage
once per round under the same name: selecting the name selects every round of it.

The run's ``config.yaml`` is its record (:func:`start_pipeline` writes it); the artefacts depend on
some of its fields (the env, network sizes), and a run directory refuses a config that changes them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pymbrl._checks import check_device_available
from pymbrl.training.callbacks import Callbacks
from pymbrl.training.config import C, read_config, write_config
from pymbrl.training.run import CONFIG_FILE, claim


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a pipeline.

    Attributes
    ----------
    name : str -- as ``--stages`` takes it (shared by the rounds of a repeated stage).
    run : Callable[[Path, Callbacks], dict] -- runs the stage in the run directory; returns what it
        measured (the pipeline's summary holds it under ``name``).
    makes : tuple[str, ...] -- artefacts (paths relative to the run directory; a trailing "/" is a
        folder that must hold something) whose existence means the stage is done; empty: it always runs.
    needs : tuple[str, ...] -- artefacts of earlier stages it reads.
    complete : Callable[[Path], bool] or None -- whether the stage is done, where that is not the
        existence of ``makes`` (a stage that adds to its artefacts until it has enough).
    """

    name: str
    run: Callable[[Path, Callbacks], dict[str, Any]]
    makes: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    complete: Callable[[Path], bool] | None = None


def exists(run_dir: Path, artefact: str) -> bool:
    path = run_dir / artefact
    return any(path.iterdir()) if artefact.endswith("/") and path.is_dir() else path.is_file()


def done(run_dir: Path, stage: Stage) -> bool:
    """Whether ``stage`` is done in ``run_dir`` (by default: its artefacts all exist)."""
    if stage.complete is not None:
        return stage.complete(run_dir)
    return bool(stage.makes) and all(exists(run_dir, a) for a in stage.makes)


def check_stages(run_dir: str | os.PathLike, stages: Sequence[Stage], selected: Sequence[str]) -> None:
    """Refuses (ValueError naming ``stages``) a selection with unknown names, or in which a stage
    that is not done needs an artefact that neither exists in ``run_dir`` nor comes from a stage
    selected before it."""
    names = list(dict.fromkeys(s.name for s in stages))
    unknown = [name for name in selected if name not in names]
    if unknown or not selected:
        raise ValueError(f"stages: expected some of {names}, got {list(selected)}")
    run_dir = Path(run_dir)
    made: set[str] = set()
    for stage in stages:
        if stage.name not in selected or done(run_dir, stage):
            continue
        missing = [a for a in stage.needs if a not in made and not exists(run_dir, a)]
        if missing:
            makers = list(dict.fromkeys(s.name for s in stages if set(missing) & set(s.makes)))
            names = " and ".join(makers) or "earlier"
            raise ValueError(f"stages: {stage.name} needs {', '.join(missing)} in {str(run_dir)!r}, which "
                             f"{'is' if len(missing) == 1 else 'are'} not there; run the {names} "
                             f"stage{'s' if len(makers) > 1 else ''} first (add {'them' if len(makers) > 1 else 'it'} "
                             f"to the stages)")
        made.update(stage.makes)


def run_stages(run_dir: str | os.PathLike, stages: Sequence[Stage], selected: Sequence[str] | None = None,
               callbacks: Callbacks | None = None) -> dict[str, Any]:
    """Runs the ``selected`` stages (default all) in pipeline order, skipping those already done,
    telling ``callbacks.on_stage`` as each starts; returns each run stage's measurements by name
    (a repeated stage's: those of its last round run)."""
    selected = list(dict.fromkeys(s.name for s in stages)) if selected is None else list(selected)
    check_stages(run_dir, stages, selected)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    callbacks = callbacks or Callbacks()
    summary: dict[str, Any] = {}
    for stage in stages:
        if stage.name in selected and not done(run_dir, stage):
            callbacks.on_stage(stage.name)
            summary[stage.name] = stage.run(run_dir, callbacks)
    return summary


def start_pipeline(run_dir: str | os.PathLike, algorithm: str, config: C) -> Path:
    """Opens the run directory of a staged run of ``algorithm`` with ``config`` and writes the
    config to its ``config.yaml``. A directory whose ``config.yaml`` differs from ``config`` in a
    field of its identity (``config.identity()``: for a staged agent, what its artefacts depend
    on, such as the env and network sizes) is refused, with ValueError naming the field; so is one
    of another algorithm, or with a corrupt or edited ``config.yaml`` (naming the file), and so is
    one that another process trains in; this process holds it (:func:`~pymbrl.training.run.claim`)
    until it calls :func:`~pymbrl.training.run.release`. A ``config.device`` this machine cannot use
    is refused (ValueError naming ``device``) before anything is written."""
    check_device_available(config.device)
    directory = Path(run_dir)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"run_dir: expected a directory, got {str(directory)!r}, which is not one")
    path = directory / CONFIG_FILE
    if path.exists():
        before, now = read_config(type(config), path, algorithm).identity(), config.identity()
        for name in now:
            if before[name] != now[name]:
                raise ValueError(f"{name}: {str(directory)!r} holds a run with {name}={before[name]!r}, whose "
                                 f"artefacts depend on it, got {now[name]!r}; use another run directory")
    claim(directory)
    write_config(config, path, algorithm)
    return directory
