"""Crash-safe file writes shared by every pymbrl file format.

A file is written under a temporary name in its own directory, flushed and fsynced, renamed over
the target, and the directory is fsynced, so that a crash at any point leaves either the previous
file or the new one, never a mixture. Temporary names carry the writer's process id, so that the
next writer of the same path can tell the leftovers of a dead writer (removed) from those of a
live one (left alone).
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def temporary_name(path: str | os.PathLike, suffix: str = ".tmp") -> Path:
    """A fresh name beside ``path`` for writing it: ``.<name>.<pid>-<random><suffix>``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}{suffix}")


def remove_dead_writers(path: str | os.PathLike, suffix: str = ".tmp") -> None:
    """Removes the files and folders that :func:`temporary_name` made for ``path`` in processes
    that no longer run (a writer killed mid-save)."""
    path = Path(path)
    prefix = f".{path.name}."
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(suffix)):
            continue
        pid = entry.name[len(prefix):len(entry.name) - len(suffix)].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            try:
                os.remove(entry.path)
            except FileNotFoundError:
                pass


def fsync_directory(directory: str | os.PathLike) -> None:
    """Makes a rename or creation inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], Any]) -> None:
    """Writes ``path`` through ``write(file)``; a crash at any point leaves the previous file whole
    and, at the next write of ``path``, no temporary file behind."""
    path = Path(os.path.abspath(path))
    remove_dead_writers(path)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_directory(path.parent)
