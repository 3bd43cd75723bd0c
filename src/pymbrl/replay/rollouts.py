"""Whole episodes of frames on disk, one ``.npz`` file each: a dataset that grows across runs (World
Models collects into it, then later iterations add to it) and keeps what a stopped collection
finished. numpy only; every file is checked before use, and nothing in it is unpickled.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np

from pymbrl._files import atomic_write

# What a rollout file holds: the arrays and their dtypes.
ARRAYS = {"frames": np.uint8, "actions": np.float32, "rewards": np.float32, "dones": np.bool_}
NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class RolloutDataset:
    """Rollouts in a directory, one ``rollout_NNNNNN.npz`` each (numbered in the order added).

    A rollout of T steps holds ``frames`` uint8 [T + 1, *frame_shape] (every observation, the last
    one included), ``actions`` float32 [T, A] (action vectors, see
    :class:`~pymbrl.envs.spaces.ActionCodec`), ``rewards`` float32 [T] and ``dones`` bool [T] (True
    at the step after which the episode terminated).

    Parameters
    ----------
    path : the directory (made if missing).
    frame_shape : tuple[int, ...] -- the shape of one frame, (64, 64, 3) by default.
    """

    def __init__(self, path: str | os.PathLike, frame_shape: tuple[int, ...] = (64, 64, 3)):
        self.path = Path(path)
        self.frame_shape = tuple(frame_shape)
        self.path.mkdir(parents=True, exist_ok=True)

    def files(self) -> list[Path]:
        return sorted(self.path.glob("rollout_*.npz"))

    def __len__(self) -> int:
        return len(self.files())

    def add(self, frames: np.ndarray, actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray) -> None:
        """Stores one rollout (written crash-safely: a file is whole or absent)."""
        steps = len(actions)
        if frames.shape != (steps + 1, *self.frame_shape) or frames.dtype != np.uint8:
            raise ValueError(f"frames: expected uint8 [{steps + 1}, {', '.join(map(str, self.frame_shape))}] for "
                             f"{steps} actions, got {frames.dtype} {frames.shape}")
        if rewards.shape != (steps,) or dones.shape != (steps,):
            raise ValueError(f"rewards: expected [{steps}] rewards and dones, got {rewards.shape} and {dones.shape}")
        files = self.files()
        index = int(files[-1].stem.split("_")[1]) + 1 if files else 0
        atomic_write(self.path / f"rollout_{index:06d}.npz",
                     lambda f: np.savez(f, frames=frames, actions=actions.astype(np.float32),
                                        rewards=rewards.astype(np.float32), dones=dones.astype(bool)))

    def load(self, file: Path) -> dict[str, np.ndarray]:
        """One rollout, validated: ValueError naming ``file`` if it is corrupt, truncated, or not
        what :meth:`add` writes (checked before any array is allocated)."""
        try:
            _check_archive(file)
            with np.load(file, allow_pickle=False) as data:
                rollout = {k: data[k] for k in ARRAYS}
        except FileNotFoundError:
            raise ValueError(f"{file}: no such file") from None
        except ValueError as error:
            raise ValueError(f"{file}: corrupt rollout ({error})") from None
        except Exception as error:  # zipfile and numpy raise BadZipFile, OSError, EOFError, ...
            raise ValueError(f"{file}: corrupt rollout ({type(error).__name__}: {error})") from None
        steps = len(rollout["actions"])
        for key, shape in (("frames", (steps + 1, *self.frame_shape)), ("rewards", (steps,)), ("dones", (steps,))):
            if rollout[key].shape != shape:
                raise ValueError(f"{file}: {key}: expected shape {shape} for {steps} actions, got "
                                 f"{rollout[key].shape}")
        if steps == 0 or rollout["actions"].ndim != 2:
            raise ValueError(f"{file}: actions: expected float32 [T > 0, A], got {rollout['actions'].shape}")
        for key in ("actions", "rewards"):
            if not np.isfinite(rollout[key]).all():
                raise ValueError(f"{file}: {key}: expected finite values, got a NaN or infinity")
        return rollout

    def frames(self, rollouts: int | None = None) -> np.ndarray:
        """Every frame of every rollout (or of the first ``rollouts``), uint8 [N, *frame_shape]."""
        files = self.files()[:rollouts]
        if not files:
            raise ValueError(f"dataset: no rollouts in {self.path}")
        return np.concatenate([self.load(f)["frames"] for f in files])


def _check_archive(file: Path) -> None:
    """Raises ValueError unless ``file`` is a whole, uncompressed ``np.savez`` archive of exactly
    :data:`ARRAYS`, each record matching its CRC-32 and each array's header promising no more data
    than its record holds (so that a forged header cannot make numpy allocate terabytes)."""
    size = os.path.getsize(file)
    with zipfile.ZipFile(file) as archive:
        names = {info.filename: info for info in archive.infolist()}
        if set(names) != {f"{k}.npy" for k in ARRAYS}:
            raise ValueError(f"expected the arrays {sorted(ARRAYS)}, got {sorted(names)}")
        for info in names.values():
            if info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
                raise ValueError(f"record {info.filename!r} is compressed or larger than the file")
        bad = archive.testzip()
        if bad is not None:
            raise ValueError(f"record {bad!r} does not match its CRC-32")
        for key, dtype in ARRAYS.items():
            with archive.open(f"{key}.npy") as f:
                header = NPY_HEADERS.get(np.lib.format.read_magic(f))
                if header is None:
                    raise ValueError(f"{key}: expected a .npy of format 1.0 or 2.0")
                shape, _, kind = header(f)
            if kind != np.dtype(dtype) or np.dtype(dtype).itemsize * math.prod(shape) > names[f"{key}.npy"].file_size:
                raise ValueError(f"{key}: expected {np.dtype(dtype)} that fits the file, got {kind} {shape}")
