"""What every microbenchmark shares: the machine and its load, the library versions it names, one-line
errors, the order the libraries run in, progress lines, CUDA-aware clocks, the device a run asks for
and plain-text tables."""

from __future__ import annotations

import os
import platform
import re
import statistics
import sys
import time
from typing import TYPE_CHECKING

from pymbrl._checks import check_device_available

if TYPE_CHECKING:
    import torch


def machine() -> str:
    """One line naming the OS, CPU model and logical CPU count."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = re.findall(r"^model name\s*:\s*(.+)$", f.read(), re.M)
        cpu = names[0].strip() if names else cpu
    except OSError:
        pass
    return f"{platform.system()} {platform.release()} ({platform.machine()}), {cpu}, {os.cpu_count()} logical CPUs"


def load() -> str:
    """The 1-minute load average, the best cheap hint of other work competing for the cores."""
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"


def version(dist: str) -> str:
    """The installed version of a distribution, or "?"."""
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def short(e: BaseException, limit: int = 160) -> str:
    """An exception as one table-safe line of at most ``limit`` characters."""
    text = f"{type(e).__name__}: {e}".replace("\n", " ").replace("|", "/")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def spread(times: list[float]) -> float:
    """(max - min) / median of repeated timings: how noisy a cell was (0 for a single timing)."""
    return (max(times) - min(times)) / statistics.median(times) if len(times) > 1 else 0.0


def rotated(seq, r: int) -> list:
    """``seq`` as a list rotated left by ``r`` (modulo its length; empty for an empty ``seq``): the order of
    repeat ``r``, so that no method always runs right after the same other one."""
    k = r % len(seq) if len(seq) else 0
    return list(seq[k:]) + list(seq[:k])


def progress(start: float, message: str) -> None:
    """A progress line on stderr, with the seconds since ``start`` (a time.perf_counter value)."""
    print(f"[{time.perf_counter() - start:6.1f} s] {message}", file=sys.stderr, flush=True)


def clock(device: torch.device) -> float:
    """``time.perf_counter()``, after the torch ``device`` has finished the work queued on it (CUDA runs
    asynchronously: without this, a timing would end before the GPU did)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def torch_device(text: str) -> torch.device:
    """``text`` (cpu or cuda[:N]) as a torch.device of this machine, a bare cuda resolved to the
    current CUDA device.

    Raises
    ------
    ValueError
        ``"device: ..."`` when ``text`` is neither, or names a CUDA device this machine does not have.
    """
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected cpu or cuda[:N], got {text!r}")
    check_device_available(text)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def text_table(rows: list[list[str]], left: int = 1) -> list[str]:
    """``rows`` (the first one the header) as aligned plain-text lines: the first ``left`` columns
    left-aligned, the others (numbers) right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if i < left else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in rows]


class Run:
    """What every benchmark's run shares: the libraries under test by name (each with a
    ``reason`` that is None when it can run) and progress lines timed from ``t0``."""

    libs: dict
    t0: float

    def ready(self) -> dict:
        return {n: a for n, a in self.libs.items() if a.reason is None}

    def log(self, msg: str) -> None:
        progress(self.t0, msg)
