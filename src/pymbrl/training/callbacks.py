"""The one way a run reports what it does, to the CLI, tests and notebooks alike."""

from __future__ import annotations

from typing import Any


class Callbacks:
    """Hooks a run calls; override the ones you need (each does nothing here).

    A run is one or more stages ("train" for the single-stage agents; World Models' "collect",
    "vae", "mdn", "controller"; I2A's "teacher", "env model", "distill", "i2a", ...).
    """

    def on_stage(self, stage: str) -> None:
        """A stage starts (or resumes)."""

    def on_progress(self, stage: str, done: int, total: int) -> None:
        """``done`` of ``total`` units of ``stage`` (env steps, frames, epochs, generations) are done;
        a resumed stage's first call jumps to its checkpoint."""

    def on_record(self, stage: str, record: dict[str, Any]) -> None:
        """An evaluation or log record of ``stage`` (also written to ``log.csv`` and TensorBoard)."""
