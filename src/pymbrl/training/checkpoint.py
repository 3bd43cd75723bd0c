"""The files of a checkpoint and the states they hold: crash-safe writes, checked reads, and the
random states of an env and of generators (see :mod:`pymbrl.training.run` for the checkpoint itself).

``.pt`` files are ``torch.save`` archives: zip files whose every record carries a CRC-32, which
:func:`load_torch` checks before ``torch.load(weights_only=True)`` reads them (torch itself does
not, so a flipped bit would otherwise load as a silently different value), so that a corrupt or
truncated file raises ValueError naming it. Nothing pymbrl reads is unpickled beyond the
tensors-and-plain-types subset that ``weights_only`` allows.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from pymbrl import _files
from pymbrl._extras import optional_imports

with optional_imports():
    import gymnasium as gym


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], Any]) -> None:
    """Writes ``path`` through ``write(file)`` crash-safely (see :func:`pymbrl._files.atomic_write`)."""
    _files.atomic_write(path, write)


def save_atomically(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` through :func:`atomic_write`; read it with :func:`load_torch`."""
    atomic_write(path, lambda f: torch.save(obj, f))


def check_archive(path: str | os.PathLike) -> None:
    """Raises ValueError naming ``path`` unless it is a whole zip archive (``torch.save``'s and
    ``np.savez``'s format) whose records are stored uncompressed (so that checking them cannot
    inflate a small file into a large one) and all match their CRC-32."""
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
            if not records:
                raise ValueError("it holds no records")
            size = os.path.getsize(path)
            for record in records:
                if record.compress_type != zipfile.ZIP_STORED or record.file_size > size:
                    raise ValueError(f"record {record.filename!r} is compressed or larger than the file")
            bad = archive.testzip()
            if bad is not None:
                raise ValueError(f"record {bad!r} does not match its CRC-32")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except ValueError as error:
        raise ValueError(f"{path}: corrupt file ({error})") from None
    except Exception as error:  # zipfile raises BadZipFile, OSError, RuntimeError, NotImplementedError, ...
        raise ValueError(f"{path}: corrupt or truncated file ({type(error).__name__}: {error})") from None


def load_torch(path: str | os.PathLike) -> Any:
    """What :func:`save_atomically` wrote to ``path``, read with ``torch.load(weights_only=True)``
    after :func:`check_archive`. Raises ValueError naming the file if it is missing, corrupt,
    truncated, or holds anything but tensors and plain types (a pickled object is refused, never run)."""
    check_archive(path)
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:
        # torch's refusal of a pickled object is a page of advice; its reason is the last part.
        reason = str(error).rpartition("WeightsUnpickler error: ")[2].strip().split("\n")[0][:300]
        raise ValueError(f"{path}: not a readable pymbrl file ({type(error).__name__}: {reason})") from None


def field(value: Any, kinds: type | tuple[type, ...], where: str, check: Callable[[Any], bool] | None = None,
          expected: str | None = None) -> Any:
    """``value`` if it is one of ``kinds`` (bool is not an int here) and passes ``check``; else
    ValueError "<where>: expected <expected>, got <value>"."""
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok or (check is not None and not check(value)):
        shown = repr(value) if len(repr(value)) < 80 else f"{type(value).__name__}"
        raise ValueError(f"{where}: expected {expected or ' or '.join(k.__name__ for k in kinds)}, got {shown}")
    return value


def arrays_to_tensors(value: Any) -> Any:
    """``value`` (dicts, lists and tuples of numpy arrays, numbers, strings, tensors) with its numpy
    arrays as tensors and numpy scalars as numbers, which ``torch.load(weights_only=True)`` reads
    back (it refuses numpy arrays); :func:`tensors_to_arrays` undoes it. Tuples come back as lists."""
    if isinstance(value, np.ndarray):
        return {"__ndarray__": torch.from_numpy(value.copy())}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: arrays_to_tensors(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [arrays_to_tensors(v) for v in value]
    return value


def tensors_to_arrays(value: Any) -> Any:
    """Undoes :func:`arrays_to_tensors`: only the arrays it wrapped become numpy again."""
    if isinstance(value, dict):
        if set(value) == {"__ndarray__"}:
            return value["__ndarray__"].numpy()
        return {k: tensors_to_arrays(v) for k, v in value.items()}
    if isinstance(value, list):
        return [tensors_to_arrays(v) for v in value]
    return value


def random_states(env: gym.Env, generators: Iterable[torch.Generator] = ()) -> dict[str, Any]:
    """The states of the given generators, the env's and its action space's."""
    return {"generators": [g.get_state() for g in generators],
            "env": env.unwrapped.np_random.bit_generator.state,
            "action_space": env.action_space.np_random.bit_generator.state}


def set_generator_state(generator: torch.Generator, state: torch.Tensor) -> None:
    """Puts ``state`` into ``generator`` when it is a state of a generator of the same kind of device;
    a run continued (or loaded) on another kind of device keeps its freshly seeded generator, since a
    CPU generator's state means nothing to a CUDA one."""
    if state.numel() == generator.get_state().numel():
        generator.set_state(state)


def restore_random_states(states: dict[str, Any], env: gym.Env, generators: Iterable[torch.Generator] = ()) -> None:
    for g, s in zip(generators, states["generators"], strict=True):
        set_generator_state(g, s)
    env.unwrapped.np_random.bit_generator.state = states["env"]
    env.action_space.np_random.bit_generator.state = states["action_space"]
