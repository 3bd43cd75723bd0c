"""Replay buffers backed by the C++ core: uniform, prioritized, n-step and sequence replay."""

from __future__ import annotations

import numbers
import os
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from pymbrl import _core
from pymbrl._checks import integer, real, resolve_seed
from pymbrl._host import host
from pymbrl.replay.files import FILE_DTYPES, is_int, read_file, write_file

Spec = Mapping[str, tuple[tuple[int, ...], Any]]

_INT64_MAX = 2**63 - 1
_MAX_CAPACITY = 2**31 - 1


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
    if out.kind not in "biuf" or out.itemsize > 8:
        raise TypeError(f"spec['{field}']: expected a bool, integer or float dtype, got {out}")
    return out.newbyteorder("=")


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
            shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        except (TypeError, ValueError):
            raise TypeError(f"spec['{name}']: expected (shape, dtype), got {entry!r}") from None
        # int() would truncate 2.5 to 2 and read True as 1: a shape is integers, nothing else.
        if not all(isinstance(d, numbers.Integral) and not isinstance(d, (bool, np.bool_)) for d in shape):
            raise TypeError(f"spec['{name}']: expected a shape of integers, got {shape!r}")
        shape = tuple(int(d) for d in shape)
        # The core checks the sizes (at most 2^40 bytes per transition); this keeps each dimension
        # within the 64 bits it is passed in.
        if not all(1 <= d <= _INT64_MAX for d in shape):
            raise ValueError(f"spec['{name}']: expected dimensions in [1, 2^63), got {shape}")
        fields.append((name, _numpy_dtype(dtype, name), shape))
    return fields


def _ids(indices: Any) -> np.ndarray:
    """Transition ids as an integer array; floats are refused rather than truncated to an id (an
    empty list, which numpy reads as float64, is no id at all)."""
    ids = np.asarray(host(indices))
    if ids.size == 0 and ids.dtype.kind == "f":
        return ids.astype(np.int64)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"indices: expected integer ids, got {ids.dtype}")
    return ids


def _batch_size(value: Any, name: str = "batch_size") -> int:
    value = integer(value, name)
    if value > _INT64_MAX:
        raise ValueError(f"{name}: expected an integer < 2^63, got {value}")
    return value


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

    Limits (``ValueError`` naming the argument beyond them): ``capacity`` <= 2^31 - 1 transitions;
    a transition (all spec fields) <= 2^40 bytes and ``capacity`` x that <= 2^40 bytes;
    ``num_envs`` <= ``capacity``; ``n_step`` <= 2^31 - 1; ``sample``'s ``batch_size`` <= ``len()``.
    """

    _kind: ClassVar[str] = "uniform"

    def __init__(self, capacity: int, spec: Spec, *, num_envs: int = 1, n_step: int = 1, gamma: float = 0.99,
                 seed: int | None = None) -> None:
        self._init(capacity, spec, num_envs=num_envs, n_step=n_step, gamma=gamma, seed=seed)

    def _init(self, capacity: int, spec: Spec, *, num_envs: int = 1, n_step: int = 1, gamma: float = 0.99,
              alpha: float = 0.0, beta: float = 0.0, eps: float = 0.0, seed: int | None = None) -> None:
        self.spec = {name: (shape, dtype) for name, dtype, shape in _normalise_spec(spec)}
        capacity = integer(capacity, "capacity")
        if capacity > _MAX_CAPACITY:
            raise ValueError(f"capacity: expected at most 2^31 - 1 transitions, got {capacity}")
        self.num_envs = integer(num_envs, "num_envs")
        if self.num_envs > capacity:
            raise ValueError(f"num_envs: expected at most capacity ({capacity}), got {self.num_envs}")
        self.n_step = integer(n_step, "n_step")
        if self.n_step > _MAX_CAPACITY:
            raise ValueError(f"n_step: expected at most 2^31 - 1, got {self.n_step}")
        self.gamma = real(gamma, "gamma", low=0.0, high=1.0)
        self.alpha, self.beta, self.eps = (real(alpha, "alpha", low=0.0), real(beta, "beta", low=0.0),
                                           real(eps, "eps", low=0.0))
        self._core = _core.replay.Buffer(
            self._kind, [(name, dtype.kind + str(dtype.itemsize), shape) for name, (shape, dtype) in self.spec.items()],
            capacity, self.num_envs, self.n_step, self.gamma, self.alpha, self.eps, resolve_seed(seed))
        self._warned_pin = False

    # -- adding --------------------------------------------------------------------------------
    def add(self, **fields: Any) -> None:
        """Store one step: every spec field plus ``next_obs``, shaped as in the spec (with a leading
        ``num_envs`` dimension when ``num_envs > 1``). Python scalars, numpy arrays and torch CPU
        tensors are accepted. Values of another dtype are converted only where every value fits
        the field: integers within the field's range (e.g. int64 300 into an int8 field, or -1
        into an unsigned one, raise ``ValueError``), floats that stay finite (float64 1e300 into
        a float32 field raises; NaN and infinities are kept as they are). Float values are never
        accepted by integer or bool fields, nor integers by bool fields (``TypeError``), integral
        or not. A rejected call stores nothing."""
        self._core.add(fields)

    def extend(self, **fields: Any) -> None:
        """Store T consecutive steps at once: leading dimensions ``[T]`` (or ``[T, num_envs]``); values
        are converted as in :meth:`add`, and one that does not fit refuses the whole call."""
        self._core.extend(fields)

    # -- sampling ------------------------------------------------------------------------------
    def sample(self, batch_size: int, *, device: torch.device | str | None = None,
               pin_memory: bool = False) -> Batch:
        """``batch_size`` transitions drawn uniformly with replacement; see :class:`Batch`.

        ``device`` moves the batch (e.g. ``"cuda"``); ``pin_memory`` pins it first so that the copy
        is asynchronous (ignored, with a warning, where CUDA is not available).
        """
        return self._to_batch(self._core.sample(_batch_size(batch_size)), device, pin_memory)

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

    def config(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "num_envs": self.num_envs, "n_step": self.n_step, "gamma": self.gamma,
                "alpha": self.alpha, "beta": self.beta, "eps": self.eps,
                "spec": [[name, dtype.str, list(shape)] for name, (shape, dtype) in self.spec.items()]}

    def save(self, path: str | os.PathLike) -> None:
        """Write the buffer, its sampler state and generator to ``path``.

        The file is written atomically (:func:`pymbrl._files.atomic_write`: a temporary file in
        the same folder, fsynced, renamed over ``path``, the folder fsynced), so a crash mid-save
        leaves any previous file intact. Format version 2, all little-endian: the 8 bytes
        ``PYMBRLRB``, a uint32 format version, a uint64 header length, a uint32 CRC-32 of those
        20 bytes and the header; the UTF-8 JSON header (class, configuration, scalars, and for each
        array its name, dtype, shape, byte offset, size and CRC-32); zero padding to a multiple of
        8 bytes; then the raw arrays in order, each zero-padded to a multiple of 8 bytes. No
        pickle. Version 1 files (no checksums) are not read.
        """
        state = dict(self._core.snapshot())
        scalars = {k: state.pop(k) for k in self._SCALARS if k in state}
        write_file(path, type(self).__name__, self.config(), scalars, state)

    _SCALARS: ClassVar[tuple[str, ...]] = ("written", "cleared_at")
    _ARRAYS: ClassVar[tuple[str, ...]] = ("rows", "final_slots", "final_pool", "free_slots", "is_first", "episode_start",
                                          "rng")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ReplayBuffer":
        """Read a buffer written by :meth:`save`; sampling then continues exactly as it would have in
        the saved buffer.

        Raises
        ------
        ValueError
            Naming the file and what is wrong, for a file of another class or format version
            (including version 1, which has no checksums), a truncated or corrupt file (every
            section is checked against its CRC-32), or a configuration or state that this class
            would not accept (every value and invariant is checked before the buffer is built).
        """
        config, state = read_file(path, cls.__name__)
        try:
            buffer = cls._from_file(config, state)
        except MemoryError:
            raise ValueError(f"path: {os.fspath(path)!r}: the buffer it describes does not fit in memory") from None
        except (TypeError, ValueError, KeyError, IndexError, OverflowError) as e:
            raise ValueError(f"path: {os.fspath(path)!r}: {e}") from None
        return buffer

    _CONFIG: ClassVar[frozenset[str]] = frozenset({"capacity", "num_envs", "n_step", "gamma", "alpha", "beta", "eps",
                                                   "spec"})

    @classmethod
    def _from_file(cls, config: dict[str, Any], state: dict[str, Any]) -> "ReplayBuffer":
        if set(config) != cls._CONFIG:
            raise ValueError(f"config: expected the keys {sorted(cls._CONFIG)}, got {sorted(config)}")
        spec = config["spec"]
        if not isinstance(spec, list) or not all(
                isinstance(e, list) and len(e) == 3 and isinstance(e[0], str) and e[1] in FILE_DTYPES
                and isinstance(e[2], list) and all(is_int(d) for d in e[2]) for e in spec):
            raise ValueError(f"config 'spec': expected [name, dtype, shape] entries with dtypes in "
                             f"{sorted(FILE_DTYPES)}, got {spec!r:.200}")
        if len({e[0] for e in spec}) != len(spec):
            raise ValueError("config 'spec': expected distinct field names")
        for key in ("capacity", "num_envs", "n_step"):
            if not is_int(config[key]):
                raise TypeError(f"config '{key}': expected an integer, got {config[key]!r:.100}")
        for key in ("gamma", "alpha", "beta", "eps"):
            if isinstance(config[key], bool) or not isinstance(config[key], numbers.Real):
                raise TypeError(f"config '{key}': expected a number, got {config[key]!r:.100}")
        cls._check_config(config)
        expected = set(cls._SCALARS) | set(cls._ARRAYS)
        if set(state) != expected:
            raise ValueError(f"state: expected {sorted(expected)}, got {sorted(state)}")
        for key in cls._SCALARS:
            if not isinstance(state[key], numbers.Real) or isinstance(state[key], bool):
                raise TypeError(f"scalars '{key}': expected a number, got {state[key]!r:.100}")
        # The per-row arrays bound what building the buffer allocates by what the file holds.
        capacity = config["capacity"]
        if state["final_slots"].shape != (capacity,):
            raise ValueError(f"final_slots: expected one per row (capacity {capacity}), got shape "
                             f"{state['final_slots'].shape}")
        buffer = cls.__new__(cls)
        buffer._init(capacity, {name: (tuple(shape), np.dtype(dtype)) for name, dtype, shape in spec}, seed=0,
                     **{k: config[k] for k in ("num_envs", "n_step", "gamma", "alpha", "beta", "eps")})
        buffer._core.restore(state)
        return buffer

    @classmethod
    def _check_config(cls, config: dict[str, Any]) -> None:
        """Values a file of this class must hold beyond what the constructor checks."""
        for key in ("alpha", "beta", "eps"):
            if config[key] != 0:
                raise ValueError(f"config '{key}': expected 0 for a {cls.__name__}, got {config[key]!r}")


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

    Notes
    -----
    Priorities must keep ``(priority + eps)^alpha <= 1e250`` so that the sum over the tree stays
    finite; a positive ``(priority + eps)^alpha`` below the smallest normal double is raised to it.
    With ``eps = 0`` a priority of 0 makes a transition impossible to draw. Weights are computed
    as ``(min_k p_k^alpha / p_i^alpha)^beta`` from the ratio (never its inverse), so they are finite
    and in (0, 1] (at least the smallest normal float32) for any priorities, and exactly 1 when
    ``beta = 0``.
    """

    _kind = "prioritized"
    _SCALARS = ReplayBuffer._SCALARS + ("max_priority",)
    _ARRAYS = ReplayBuffer._ARRAYS + ("priorities",)

    @classmethod
    def _check_config(cls, config: dict[str, Any]) -> None:
        pass  # alpha, beta and eps: any finite value >= 0, which the constructor checks

    def __init__(self, capacity: int, spec: Spec, *, num_envs: int = 1, n_step: int = 1, gamma: float = 0.99,
                 alpha: float = 0.6, beta: float = 0.4, eps: float = 1e-6, seed: int | None = None) -> None:
        self._init(capacity, spec, num_envs=num_envs, n_step=n_step, gamma=gamma, alpha=real(alpha, "alpha", low=0.0),
                   beta=real(beta, "beta", low=0.0), eps=real(eps, "eps", low=0.0), seed=seed)

    def sample(self, batch_size: int, *, beta: float | None = None, device: torch.device | str | None = None,
               pin_memory: bool = False) -> Batch:
        """Prioritized batch with ``weights``; ``beta`` overrides the buffer's for this call."""
        beta = self.beta if beta is None else real(beta, "beta", low=0.0)
        return self._to_batch(self._core.sample(_batch_size(batch_size), beta), device, pin_memory)

    def update_priorities(self, indices: Any, priorities: Any) -> None:
        """Set the priorities of sampled transitions (e.g. ``|TD error|``). Indices whose slot has
        been overwritten since they were sampled are ignored; negative, NaN or infinite priorities
        and ids never added raise ``ValueError`` and change nothing."""
        indices, priorities = _ids(indices), host(priorities)
        try:
            priorities = np.asarray(priorities, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"priorities: expected numbers, got {type(priorities).__name__}") from None
        self._core.update_priorities(indices, priorities)

    def priorities(self, indices: Any) -> np.ndarray:
        """``p^alpha`` currently stored for each id (0 where the id is not sampleable); float64."""
        return self._core.priorities(_ids(indices).astype(np.int64, copy=False))

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

    @classmethod
    def _check_config(cls, config: dict[str, Any]) -> None:
        super()._check_config(config)
        if config["n_step"] != 1:
            raise ValueError(f"config 'n_step': expected 1 for a {cls.__name__}, got {config['n_step']!r}")

    def __init__(self, capacity: int, spec: Spec, *, num_envs: int = 1, seed: int | None = None) -> None:
        self._init(capacity, spec, num_envs=num_envs, seed=seed)

    def sample(self, batch_size: int, length: int, *, within_episode: bool = False,
               device: torch.device | str | None = None, pin_memory: bool = False) -> Batch:
        """``batch_size`` windows of ``length`` steps, uniformly over the valid windows.

        ``length`` is at most the steps stored per env less one; windows may repeat, but a batch
        holds at most max(2^28 bytes, the bytes stored): larger requests raise ``ValueError``
        before anything is allocated."""
        arrays = self._core.sample_sequence(_batch_size(batch_size), _batch_size(length, "length"),
                                            bool(within_episode))
        return self._to_batch(arrays, device, pin_memory)
