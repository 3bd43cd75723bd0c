"""Replay buffers backed by the C++ core: uniform, prioritized, n-step and sequence replay."""

from __future__ import annotations

import json
import os
import struct
import uuid
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from pymbrl import _core
from pymbrl._checks import integer, real, resolve_seed
from pymbrl._host import host

Spec = Mapping[str, tuple[tuple[int, ...], Any]]

MAGIC = b"PYMBRLRB"
FORMAT_VERSION = 1


class Batch(dict):
    """A sampled batch: a ``dict`` of torch tensors, also readable as attributes (``batch.obs``).

    Transition buffers hold every spec field ``[B, *shape]``, ``next_obs`` ``[B, *obs_shape]``,
    ``discount`` float32 ``[B]`` (gamma^k to apply to the bootstrap value; 0 after termination) and
    ``indices`` int64 ``[B]`` (transition ids, for ``update_priorities``); prioritized batches add
    ``weights`` float32 ``[B]``. Sequence batches hold fields ``[B, L, *shape]``, ``next_obs``,
    ``is_first`` bool ``[B, L]`` and ``indices`` ``[B]`` (the id of each window's first step).
    """

    def __getattr__(self, name: str) -> torch.Tensor:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _numpy_dtype(dtype: Any, field: str) -> np.dtype:
    if isinstance(dtype, torch.dtype):
        try:
            return torch.empty((), dtype=dtype).numpy().dtype
        except TypeError:
            raise TypeError(f"spec['{field}']: expected a dtype numpy can hold, got {dtype}") from None
    try:
        out = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"spec['{field}']: expected a torch or numpy dtype, got {dtype!r}") from None
    if out.kind not in "biuf":
        raise TypeError(f"spec['{field}']: expected a bool, integer or float dtype, got {out}")
    return out


def _normalise_spec(spec: Spec) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
    if not isinstance(spec, Mapping) or not spec:
        raise TypeError("spec: expected a non-empty mapping of field name -> (shape, dtype)")
    fields = []
    for name, entry in spec.items():
        if not isinstance(name, str):
            raise TypeError(f"spec: expected string field names, got {name!r}")
        if name in ("next_obs", "discount", "indices", "weights", "is_first"):
            raise ValueError(f"spec['{name}']: the name is reserved for sampled outputs")
        try:
            shape, dtype = entry
            shape = tuple(int(d) for d in (shape if isinstance(shape, (tuple, list)) else (shape,)))
        except (TypeError, ValueError):
            raise TypeError(f"spec['{name}']: expected (shape, dtype), got {entry!r}") from None
        fields.append((name, _numpy_dtype(dtype, name), shape))
    return fields


def _write_file(path: str | os.PathLike, class_name: str, config: dict[str, Any], scalars: dict[str, Any],
                arrays: Mapping[str, np.ndarray]) -> None:
    """Write a saved buffer in the format :meth:`ReplayBuffer.save` describes, atomically."""
    path = os.fspath(path)
    arrays = [(k, np.ascontiguousarray(v)) for k, v in arrays.items()]
    entries, offset = [], 0
    for name, a in arrays:
        entries.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape), "offset": offset,
                        "nbytes": a.nbytes})
        offset += (a.nbytes + 7) // 8 * 8
    header = json.dumps({"class": class_name, "format": FORMAT_VERSION, "config": config,
                         "scalars": scalars, "arrays": entries}).encode()
    prefix = MAGIC + struct.pack("<IQ", FORMAT_VERSION, len(header)) + header
    prefix += b"\0" * (-len(prefix) % 8)
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(prefix)
            for (_, a), entry in zip(arrays, entries):
                f.write(memoryview(a.reshape(-1).view(np.uint8)))
                f.write(b"\0" * (-entry["nbytes"] % 8))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _read_file(path: str | os.PathLike, class_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, state) of a file written by :func:`_write_file` for ``class_name``; the state holds
    the scalars and arrays. A file of another class or format version raises ``ValueError``."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(20)
        if len(head) < 20 or head[:8] != MAGIC:
            raise ValueError(f"path: {path!r} is not a pymbrl replay buffer file")
        version, header_len = struct.unpack("<IQ", head[8:])
        if header_len > os.fstat(f.fileno()).st_size - 20:
            raise ValueError(f"path: {path!r} is truncated or has a corrupt header length")
        if version != FORMAT_VERSION:
            raise ValueError(f"path: format version {version} is not supported (this pymbrl reads {FORMAT_VERSION})")
        try:
            header = json.loads(f.read(header_len))
        except ValueError:
            raise ValueError(f"path: {path!r} has a corrupt header") from None
        if header.get("class") != class_name:
            raise ValueError(f"path: holds a {header.get('class')}, not a {class_name}")
        base = 20 + header_len + (-(20 + header_len) % 8)
        state: dict[str, Any] = dict(header["scalars"])
        for entry in header["arrays"]:
            a = np.empty(entry["shape"], dtype=np.dtype(entry["dtype"]))
            f.seek(base + entry["offset"])
            if f.readinto(memoryview(a.reshape(-1).view(np.uint8))) != entry["nbytes"]:
                raise ValueError(f"path: {path!r} is truncated")
            state[entry["name"]] = a
    return header["config"], state


class ReplayBuffer:
    """Uniform replay of transitions, optionally with n-step returns.

    Parameters
    ----------
    capacity : int
        Transitions kept (oldest overwritten first); a multiple of ``num_envs``.
    spec : mapping
        Field name -> ``(shape, dtype)`` per transition, torch or numpy dtypes, e.g.
        ``{"obs": ((17,), torch.float32), "action": ((6,), torch.float32), "reward": ((), torch.float32),
        "terminated": ((), torch.bool), "truncated": ((), torch.bool)}``. ``obs``, ``reward`` (float32 or
        float64), ``terminated`` and ``truncated`` (bool) are required.
    num_envs : int, default 1
        Parallel env streams added together; each stream's next observations come from its own rows.
    n_step : int, default 1
        Length of the n-step return in ``sample``.
    gamma : float, default 0.99
        Discount of the n-step return and of ``discount``.
    seed : int or None
        Seed of the buffer's own generator.

    Notes
    -----
    Storage is one row of bytes per transition (all fields together), which made gathering a
    batch 4.5x faster than per-field arrays here. Observations are stored once: the next
    observation of a step is the following row's ``obs`` in the same stream, and the ``next_obs``
    passed to ``add`` is only kept where the step ended an episode (its final observation).
    """

    _kind: ClassVar[str] = "uniform"

    def __init__(self, capacity: int, spec: Spec, *, num_envs: int = 1, n_step: int = 1, gamma: float = 0.99,
                 seed: int | None = None) -> None:
        self._init(capacity, spec, num_envs=num_envs, n_step=n_step, gamma=gamma, seed=seed)

    def _init(self, capacity: int, spec: Spec, *, num_envs: int = 1, n_step: int = 1, gamma: float = 0.99,
              alpha: float = 0.0, beta: float = 0.0, eps: float = 0.0, seed: int | None = None) -> None:
        self.spec = {name: (shape, dtype) for name, dtype, shape in _normalise_spec(spec)}
        self.num_envs = integer(num_envs, "num_envs")
        self.n_step = integer(n_step, "n_step")
        self.gamma = real(gamma, "gamma", low=0.0, high=1.0)
        self.alpha, self.beta, self.eps = alpha, beta, eps
        self._core = _core.replay.Buffer(
            self._kind, [(name, dtype.str.lstrip("<>|=")[0] + str(dtype.itemsize), shape)
                         for name, (shape, dtype) in self.spec.items()],
            integer(capacity, "capacity"), self.num_envs, self.n_step, self.gamma, alpha, eps,
            resolve_seed(seed))
        self._warned_pin = False

    # -- adding --------------------------------------------------------------------------------
    def add(self, **fields: Any) -> None:
        """Store one step: every spec field plus ``next_obs``, shaped as in the spec (with a leading
        ``num_envs`` dimension when ``num_envs > 1``). Python scalars, numpy arrays and torch CPU
        tensors are accepted; dtypes must cast safely within their kind (float64 -> float32 is
        fine, float -> int is not). A rejected call stores nothing."""
        self._core.add(fields)

    def extend(self, **fields: Any) -> None:
        """Store T consecutive steps at once: leading dimensions ``[T]`` (or ``[T, num_envs]``)."""
        self._core.extend(fields)

    # -- sampling ------------------------------------------------------------------------------
    def sample(self, batch_size: int, *, device: torch.device | str | None = None,
               pin_memory: bool = False) -> Batch:
        """``batch_size`` transitions drawn uniformly with replacement; see :class:`Batch`.

        ``device`` moves the batch (e.g. ``"cuda"``); ``pin_memory`` pins it first so that the copy
        is asynchronous (ignored, with a warning, where CUDA is not available).
        """
        return self._to_batch(self._core.sample(integer(batch_size, "batch_size")), device, pin_memory)

    def _to_batch(self, arrays: dict, device: Any, pin_memory: bool) -> Batch:
        batch = Batch((k, torch.from_numpy(v)) for k, v in arrays.items())
        if pin_memory:
            if torch.cuda.is_available():
                batch = Batch((k, v.pin_memory()) for k, v in batch.items())
            elif not self._warned_pin:
                warnings.warn("pin_memory: CUDA is not available, so the batch is not pinned", stacklevel=3)
                self._warned_pin = True
        if device is not None:
            batch = Batch((k, v.to(device, non_blocking=pin_memory)) for k, v in batch.items())
        return batch

    # -- state ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Transitions that can be sampled (those whose next observation is known)."""
        return len(self._core)

    @property
    def capacity(self) -> int:
        return self._core.capacity

    def clear(self) -> None:
        """Forget every transition (the generator keeps its state)."""
        self._core.clear()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(capacity={self.capacity}, size={len(self)}, num_envs={self.num_envs})"

    def _config(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "num_envs": self.num_envs, "n_step": self.n_step, "gamma": self.gamma,
                "alpha": self.alpha, "beta": self.beta, "eps": self.eps,
                "spec": [[name, dtype.str, list(shape)] for name, (shape, dtype) in self.spec.items()]}

    def save(self, path: str | os.PathLike) -> None:
        """Write the buffer, its sampler state and generator to ``path``.

        The file is written under a temporary name in the same folder and renamed over ``path`` only
        once complete, so a crash mid-save leaves any previous file intact. Format (version 1): the
        8 bytes ``PYMBRLRB``, a little-endian uint32 format version, a uint64 header length, a UTF-8
        JSON header (class, configuration, scalars, and for each array its name, dtype, shape and
        byte offset), then the raw arrays, each starting at a multiple of 8 bytes. No pickle.
        """
        state = dict(self._core.snapshot())
        scalars = {k: state.pop(k) for k in ("written", "cleared_at", "max_priority") if k in state}
        _write_file(path, type(self).__name__, self._config(), scalars, state)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ReplayBuffer":
        """Read a buffer written by :meth:`save`; sampling then continues exactly as it would have in
        the saved buffer. A file of another class or format version raises ``ValueError``."""
        config, state = _read_file(path, cls.__name__)
        spec = {name: (tuple(shape), np.dtype(dtype)) for name, dtype, shape in config.pop("spec")}
        buffer = cls.__new__(cls)
        buffer._init(config.pop("capacity"), spec, seed=0, **config)
        buffer._core.restore(state)
        return buffer


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay (Schaul et al. 2016).

    Sampling probability ``p_i^alpha / sum_k p_k^alpha`` with sum and min trees (float64) in C++,
    stratified over the batch; importance weights ``(N P(i))^-beta`` normalised by the largest
    possible weight. New transitions get the largest priority seen so far. Parameters as
    :class:`ReplayBuffer`, plus:

    Parameters
    ----------
    alpha : float, default 0.6
        Priority exponent (0 = uniform).
    beta : float, default 0.4
        Importance-sampling exponent; may be annealed per call with ``sample(..., beta=...)``.
    eps : float, default 1e-6
        Added to every priority so no transition becomes unsampleable.
    """

    _kind = "prioritized"

    def __init__(self, capacity: int, spec: Spec, *, num_envs: int = 1, n_step: int = 1, gamma: float = 0.99,
                 alpha: float = 0.6, beta: float = 0.4, eps: float = 1e-6, seed: int | None = None) -> None:
        self._init(capacity, spec, num_envs=num_envs, n_step=n_step, gamma=gamma, alpha=real(alpha, "alpha", low=0.0),
                   beta=real(beta, "beta", low=0.0), eps=real(eps, "eps", low=0.0), seed=seed)

    def sample(self, batch_size: int, *, beta: float | None = None, device: torch.device | str | None = None,
               pin_memory: bool = False) -> Batch:
        """Prioritized batch with ``weights``; ``beta`` overrides the buffer's for this call."""
        beta = self.beta if beta is None else real(beta, "beta", low=0.0)
        return self._to_batch(self._core.sample(integer(batch_size, "batch_size"), beta), device, pin_memory)

    def update_priorities(self, indices: Any, priorities: Any) -> None:
        """Set the priorities of sampled transitions (e.g. ``|TD error|``). Indices whose slot has
        been overwritten since they were sampled are ignored; negative, NaN or infinite priorities
        and ids never added raise ``ValueError`` and change nothing."""
        indices, priorities = host(indices), host(priorities)
        indices = np.asarray(indices)
        if indices.dtype.kind not in "iu":
            raise TypeError(f"indices: expected integer ids, got {indices.dtype}")
        try:
            priorities = np.asarray(priorities, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"priorities: expected numbers, got {type(priorities).__name__}") from None
        self._core.update_priorities(indices, priorities)

    def priorities(self, indices: Any) -> np.ndarray:
        """``p^alpha`` currently stored for each id (0 where the id is not sampleable); float64."""
        return self._core.priorities(np.asarray(indices, dtype=np.int64))

    @property
    def max_priority(self) -> float:
        return self._core.max_priority


class SequenceReplayBuffer(ReplayBuffer):
    """Windows of consecutive steps from one env stream each (Dreamer, MDN-RNN).

    Parameters as :class:`ReplayBuffer` (no n-step). ``sample(batch_size, length)`` returns fields
    ``[B, L, *shape]``, ``next_obs``, ``is_first`` (where an episode starts inside the window,
    Dreamer's convention) and the window start ids. With ``within_episode=True`` only windows
    inside one episode are drawn (MDN-RNN's convention). The cost does not grow with capacity.
    """

    _kind = "sequence"

    def __init__(self, capacity: int, spec: Spec, *, num_envs: int = 1, seed: int | None = None) -> None:
        self._init(capacity, spec, num_envs=num_envs, seed=seed)

    def sample(self, batch_size: int, length: int, *, within_episode: bool = False,
               device: torch.device | str | None = None, pin_memory: bool = False) -> Batch:
        """``batch_size`` windows of ``length`` steps, uniformly over the valid windows."""
        arrays = self._core.sample_sequence(integer(batch_size, "batch_size"), integer(length, "length"),
                                            bool(within_episode))
        return self._to_batch(arrays, device, pin_memory)
