"""Helpers shared by the Python tests (tests/ is on the path: pyproject's pytest pythonpath)."""

from __future__ import annotations

from pymbrl.training import Callbacks


class Payload:
    """Unpickling this runs ``open(marker, "w")``: a file that holds it must be refused unread."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


class Steps(Callbacks):
    """Collects the steps (or frames) a run reports; raises KeyboardInterrupt at the first report at
    or past ``stop``, as a Ctrl-C there would."""

    def __init__(self, stop=None):
        self.steps, self.stop = [], stop

    def on_progress(self, stage, done, total):
        self.steps.append(done)
        if self.stop is not None and done >= self.stop:
            raise KeyboardInterrupt
