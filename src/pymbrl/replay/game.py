"""MuZero's replay buffer of whole games, with unroll targets built in C++."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch

from pymbrl import _core
from pymbrl._checks import ArgumentTypeError, integer, real, resolve_seed
from pymbrl._host import host
from pymbrl.replay.files import read_file, write_file


class GameBatch(NamedTuple):
    """Sampled positions and their unroll targets (torch tensors; B = batch size, K = unroll_steps,
    A = num_actions). Every target is described in :class:`GameBuffer`.

    Attributes
    ----------
    obs : Tensor [B, *obs_shape], the buffer's obs_dtype
        The observation at each sampled position t.
    actions : int64 [B, K]
        a[t+k]; uniformly random past the end of the game.
    target_values, target_rewards : float32 [B, K+1]
    target_policies : float32 [B, K+1, A]
    mask : float32 [B, K+1]
        1 where t+k is inside the game (policy targets apply), else 0.
    value_mask, reward_mask : float32 [B, K+1]
        1 where the value / reward target is known and should be trained.
    indices : int64 [B]
        Position ids, valid until their game is evicted (for priorities and reanalysis).
    weights : float32 [B]
        Importance weights (ones when the buffer is not prioritized).
    """

    obs: torch.Tensor
    actions: torch.Tensor
    target_values: torch.Tensor
    target_rewards: torch.Tensor
    target_policies: torch.Tensor
    mask: torch.Tensor
    value_mask: torch.Tensor
    reward_mask: torch.Tensor
    indices: torch.Tensor
    weights: torch.Tensor


def _obs_dtype(dtype: Any) -> np.dtype:
    if isinstance(dtype, torch.dtype):
        try:
            dtype = torch.empty((), dtype=dtype).numpy().dtype
        except TypeError:
            raise ArgumentTypeError(f"obs_dtype: expected a dtype numpy can hold, got {dtype}") from None
    try:
        out = np.dtype(dtype)
    except TypeError:
        raise ArgumentTypeError(f"obs_dtype: expected a torch or numpy dtype, got {dtype!r}") from None
    if out.kind not in "biuf":
        raise ArgumentTypeError(f"obs_dtype: expected a bool, integer or float dtype, got {out}")
    return np.dtype(f"{out.kind}{out.itemsize}")  # native byte order, as the core stores it


# The core's documented limits (game_store.h, game_targets.h), checked here too so that a huge
# integer is refused by name before it reaches the int64 arguments of the core.
_MAX_BYTES = 2**40
_MAX_UNROLL_STEPS = 2**16
_MAX_TD_STEPS = 2**62
_MAX_BATCH = 65536
_CONFIG_KEYS = frozenset({"capacity", "obs_shape", "obs_dtype", "num_actions", "unroll_steps", "td_steps", "discount",
                          "prioritized", "alpha", "beta", "eps"})


def _bounded(value: Any, name: str, high: int, *, minimum: int = 1) -> int:
    value = integer(value, name, minimum=minimum)
    if value > high:
        raise ValueError(f"{name}: expected an integer <= {high}, got {value}")
    return value


def _obs_shape(shape: Any) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, (int, np.integer)) else shape
    if isinstance(dims, (str, bytes)):
        raise ArgumentTypeError(f"obs_shape: expected a tuple of integers, got {shape!r}")
    try:
        return tuple(_bounded(d, "obs_shape", _MAX_BYTES) for d in dims)
    except TypeError:
        raise ArgumentTypeError(f"obs_shape: expected a tuple of integers, got {shape!r}") from None


@contextlib.contextmanager
def _argument_types() -> Iterator[None]:
    """The core raises TypeError for an argument of the wrong type or dtype; the package's
    ArgumentTypeError is also a ValueError, like every other bad argument."""
    try:
        yield
    except ArgumentTypeError:
        raise
    except TypeError as exc:
        raise ArgumentTypeError(str(exc)) from None


class GameBuffer:
    """MuZero's replay of whole games (Schrittwieser et al. 2020, appendices G and H): positions are
    drawn uniformly or by priority, and each comes with its K-step unroll targets, built in C++.

    Parameters
    ----------
    capacity : int
        Positions kept. When a new game does not fit, whole oldest games are evicted (first in,
        first out); a game longer than ``capacity`` is refused.
    obs_shape : tuple of int
        Shape of one observation.
    num_actions : int
        A, the size of the action space and of each policy.
    obs_dtype : torch or numpy dtype, default float32
        How observations are stored (e.g. uint8 frames, float32 vectors).
    unroll_steps : int, default 5
        K, the steps the dynamics function is unrolled in training (>= 0).
    td_steps : int, default 10
        n, the length of the n-step value target (>= 1).
    discount : float, default 0.997
        d, in [-1, 1]. Two-player zero-sum games use -1: rewards are the mover's and each next
        position's value is the opponent's, so the same formula serves both.
    prioritized : bool, default False
        Draw positions in proportion to priority^alpha instead of uniformly.
    alpha, beta : float, default 1.0
        Priority and importance-sampling exponents (MuZero uses 1 for both); ``beta`` may be
        changed per call with ``sample(..., beta=...)``.
    eps : float, default 1e-6
        Added to every priority, so that a position with priority 0 can still be drawn.
    seed : int or None
        Seed of the buffer's own generator (sampling and the random actions past a game's end).

    Notes
    -----
    **Games.** ``add_game`` stores a game of T positions: at position t, the observation the agent
    saw, the action it took, the reward it received, and the root value and visit-count policy of
    the search run at t. ``terminated=True`` means the game ended (values past its end are 0);
    ``False`` means it was cut (a time limit) and ``final_value`` estimates the value of the
    observation after the last action. Positions get ids counting every position ever added (the
    ids of a game are consecutive); an id stays valid until its game is evicted, and a stale id is
    refused with ``ValueError``, never mistaken for a newer position.

    **Targets.** For a sampled position t of a game of length T, with k = 0..K and u = t + k:

    - ``target_values[k]``: for u < T, sum_{i < min(n, T-u)} d^i r[u+i], plus d^n root_value[u+n]
      if u+n < T, else plus d^(T-u) final_value for a cut game (nothing for a terminated one).
      For u >= T it is 0; ``value_mask`` is 1 there for a terminated game (its end is an absorbing
      state of value 0, trained as such) and 0 for a cut game (what followed is unknown). Inside
      the game ``value_mask`` is 1.
    - ``target_rewards[k]``: 0 for k = 0 (no reward leads into the root, ``reward_mask`` 0);
      for k >= 1 r[u-1] if u-1 < T (``reward_mask`` 1), else 0 with ``reward_mask`` 1 for a
      terminated game and 0 for a cut one.
    - ``target_policies[k]``: policy[u] if u < T, else zeros; ``mask[k]`` = 1 if u < T else 0.
    - ``actions[k]`` (k < K): a[u] if u < T, else a uniformly random action drawn from the buffer's
      generator, since the unroll goes on past the end (as in MuZero's pseudocode).

    Sums are taken in float64 and rounded once to float32; stored rewards, values and policies are
    float32.

    **Priorities.** When prioritized, P(i) = p_i^alpha / sum_k p_k^alpha (stratified over the batch)
    and ``weights`` are (N P(i))^-beta divided by their largest possible value. New positions get
    the largest priority seen so far, or their own with ``add_game(..., priorities=...)``; MuZero
    sets them to |root value - value target| and updates them with :meth:`update_priorities`.

    **Reanalysis** (MuZero Reanalyze, EfficientZero) happens in place, without copying games. A
    trainer takes a batch, and for the positions it wants fresh targets for (t + k where ``mask`` is
    1; t + k + n where that is still inside the game, which :meth:`game_spans` tells) it reads
    their observations with :meth:`observations`, re-runs the search with its current network and
    writes the new root values and visit-count policies back with :meth:`update_targets`. Every
    later sample uses them: values bootstrap from the new root values, policies are the new ones.

    **Limits** (each refused with ``ValueError`` naming the argument, before anything is allocated
    or changed): ``capacity * (observation bytes + 4 num_actions + 32) <= 2**40`` bytes (a
    prioritized buffer also keeps ``capacity * 147 <= 2**40``); ``unroll_steps <= 2**16``;
    ``td_steps <= 2**62`` (anything beyond the longest game gives Monte Carlo returns); rewards,
    root values and final values of magnitude at most 1e25, so that every n-step sum fits float32;
    a batch of at most 65536 positions and 2**32 bytes (``sample``), and at most 2**32 bytes of
    observations per :meth:`observations` call; ``(priority + eps)**alpha`` within
    [2.2e-308, 1e250]. Position ids count up to 2**62.

    **Threads and files.** Every method may be called from several threads (a mutex per buffer; the
    GIL is released while the core works). :meth:`save` writes the file format of
    :meth:`ReplayBuffer.save <pymbrl.replay.ReplayBuffer.save>`.
    """

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], num_actions: int, *, obs_dtype: Any = np.float32,
                 unroll_steps: int = 5, td_steps: int = 10, discount: float = 0.997, prioritized: bool = False,
                 alpha: float = 1.0, beta: float = 1.0, eps: float = 1e-6, seed: int | None = None) -> None:
        self._init(capacity, obs_shape, num_actions, obs_dtype=obs_dtype, unroll_steps=unroll_steps, td_steps=td_steps,
                   discount=discount, prioritized=prioritized, alpha=alpha, beta=beta, eps=eps, seed=seed)

    def _init(self, capacity: int, obs_shape: Any, num_actions: int, *, obs_dtype: Any, unroll_steps: int,
              td_steps: int, discount: float, prioritized: bool, alpha: float, beta: float, eps: float,
              seed: int | None) -> None:
        if not isinstance(prioritized, (bool, np.bool_)):
            raise ArgumentTypeError(f"prioritized: expected a bool, got {type(prioritized).__name__}")
        self.capacity = _bounded(capacity, "capacity", _MAX_BYTES)
        self.obs_shape = _obs_shape(obs_shape)
        self.obs_dtype = _obs_dtype(obs_dtype)
        self.num_actions = _bounded(num_actions, "num_actions", _MAX_BYTES)
        self.unroll_steps = _bounded(unroll_steps, "unroll_steps", _MAX_UNROLL_STEPS, minimum=0)
        self.td_steps = _bounded(td_steps, "td_steps", _MAX_TD_STEPS)
        self.discount = real(discount, "discount", low=-1.0, high=1.0)
        self.prioritized = bool(prioritized)
        self.alpha = real(alpha, "alpha", low=0.0)
        self.beta = real(beta, "beta", low=0.0)
        self.eps = real(eps, "eps", low=0.0)
        self._core = _core.replay.GameBuffer(
            self.capacity, list(self.obs_shape), self.obs_dtype.str.lstrip("<>|="), self.num_actions,
            self.unroll_steps, self.td_steps, self.discount, self.prioritized, self.alpha, self.eps, resolve_seed(seed))

    # -- adding --------------------------------------------------------------------------------
    def add_game(self, obs: Any, actions: Any, rewards: Any, root_values: Any, policies: Any, *, terminated: bool,
                 final_value: float = 0.0, priorities: Any = None) -> int:
        """Store one game of T positions; whole oldest games are evicted to make room.

        Parameters
        ----------
        obs : array or tensor [T, *obs_shape]
            Cast to ``obs_dtype`` within its kind (numpy's ``same_kind``: float64 -> float32 and
            uint16 -> uint8 are fine, float -> uint8 is not) where every value fits: 300 for uint8,
            or 1e300 for float32, is refused rather than wrapped or made infinite. The other arrays
            follow the same rule.
        actions : integer array [T]
            In [0, num_actions).
        rewards, root_values : float array [T]
            Finite, of magnitude at most 1e25.
        policies : float array [T, num_actions]
            Visit-count distributions: finite, >= 0, each row summing to 1 within 1e-3.
        terminated : bool
            True if the game ended, False if it was cut.
        final_value : float, default 0.0
            Value of the observation after the last action, bootstrapped from when the game was cut
            (ignored when terminated); finite, of magnitude at most 1e25.
        priorities : float array [T] or None
            Initial priorities (>= 0, prioritized buffers only); default the largest seen so far.

        Returns
        -------
        int
            The id of the game's first position; its positions are that id + 0..T-1.

        Raises
        ------
        ValueError
            Naming the argument (and the first offending row) for a wrong shape or dtype, a value
            that is not finite, an action out of range, a policy that is not a distribution, an
            empty game or one longer than the capacity. Nothing is stored then.
        """
        if not isinstance(terminated, (bool, np.bool_)):
            raise ArgumentTypeError(f"terminated: expected a bool, got {type(terminated).__name__}")
        final_value = real(final_value, "final_value")
        with _argument_types():
            return self._core.add_game(host(obs), host(actions), host(rewards), host(root_values), host(policies),
                                       bool(terminated), final_value, None if priorities is None else host(priorities))

    # -- sampling ------------------------------------------------------------------------------
    def sample(self, batch_size: int, *, beta: float | None = None,
               device: torch.device | str | None = None) -> GameBatch:
        """``batch_size`` positions (with replacement) and their targets; see :class:`GameBatch`.

        ``beta`` overrides the buffer's importance-sampling exponent for this call (prioritized
        buffers). The arrays are filled by the core and wrapped without copying; ``device`` moves
        them (e.g. ``"cuda"``). ``batch_size`` may exceed ``len(self)`` (drawn with replacement) but
        is at most 65536, and the batch at most 2**32 bytes (``ValueError`` before allocating).
        Importance weights are finite and in (0, 1], exactly 1 when ``beta`` is 0.
        """
        beta = self.beta if beta is None else real(beta, "beta", low=0.0)
        arrays = self._core.sample(_bounded(batch_size, "batch_size", _MAX_BATCH), beta)
        batch = GameBatch(**{k: torch.from_numpy(v) for k, v in arrays.items()})
        if device is not None:
            batch = GameBatch(*(t.to(device) for t in batch))
        return batch

    # -- priorities and reanalysis -------------------------------------------------------------
    def update_priorities(self, indices: Any, priorities: Any) -> None:
        """Set the priorities of stored positions (e.g. |root value - value target|).

        ``indices`` int [...], ``priorities`` float [...] of the same shape, finite and >= 0, with
        ``(priority + eps)**alpha`` in [2.2e-308, 1e250] (so > 0 when ``eps`` is 0). A NaN, infinite
        or negative priority, or an id whose game has been evicted, raises ``ValueError`` naming the
        argument; so does calling this on a buffer that is not prioritized. A rejected call changes
        nothing.
        """
        with _argument_types():
            self._core.update_priorities(host(indices), host(priorities))

    def update_targets(self, indices: Any, root_values: Any, policies: Any) -> None:
        """Overwrite the stored root values and visit-count policies of positions in place
        (reanalysis); later samples build their targets from them.

        ``indices`` int [...], ``root_values`` float [...] and ``policies`` float [..., num_actions]
        with the shape of ``indices``, validated as in :meth:`add_game` before anything changes.
        """
        with _argument_types():
            self._core.update_targets(host(indices), host(root_values), host(policies))

    def observations(self, indices: Any, *, device: torch.device | str | None = None) -> torch.Tensor:
        """The observations of stored positions: ``indices`` int [...] -> [..., *obs_shape] in
        ``obs_dtype`` (e.g. the positions t + k of a batch, to re-run the search on)."""
        with _argument_types():
            obs = torch.from_numpy(self._core.observations(host(indices)))
        return obs if device is None else obs.to(device)

    def game_spans(self, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(starts, lengths)``, int64 of the shape of ``indices``: the id of the first position of
        each position's game and the game's length, so position id + j is in the same game iff
        id + j < start + length."""
        with _argument_types():
            starts, lengths = self._core.game_spans(host(indices))
        return torch.from_numpy(starts), torch.from_numpy(lengths)

    def priorities(self, indices: Any) -> np.ndarray:
        """``priority^alpha`` currently stored for each id (0 where not stored); float64."""
        with _argument_types():
            return self._core.priorities(host(indices))

    @property
    def max_priority(self) -> float:
        """The largest priority seen so far (new positions get it); prioritized buffers only."""
        with _argument_types():
            return self._core.max_priority

    # -- state ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Positions stored."""
        return len(self._core)

    @property
    def ids(self) -> range:
        """The ids of the positions stored (those of whole games, oldest first)."""
        end = self._core.end_id
        return range(end - len(self._core), end)

    @property
    def num_games(self) -> int:
        """Games stored."""
        return self._core.num_games

    def clear(self) -> None:
        """Forget every game; ids keep counting, so ids handed out before stay invalid. Priorities
        restart from a maximum of 1; the generator keeps its state."""
        self._core.clear()

    def __repr__(self) -> str:
        return (f"GameBuffer(capacity={self.capacity}, positions={len(self)}, games={self.num_games}, "
                f"obs_shape={self.obs_shape}, num_actions={self.num_actions})")

    def config(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "obs_shape": list(self.obs_shape), "obs_dtype": self.obs_dtype.str,
                "num_actions": self.num_actions, "unroll_steps": self.unroll_steps, "td_steps": self.td_steps,
                "discount": self.discount, "prioritized": self.prioritized, "alpha": self.alpha, "beta": self.beta,
                "eps": self.eps}

    def save(self, path: str | os.PathLike) -> None:
        """Write the games, priorities and generator to ``path`` (atomically, no pickle; the format
        of :meth:`pymbrl.replay.ReplayBuffer.save`, class ``GameBuffer``)."""
        state = dict(self._core.snapshot())
        scalars = {k: state.pop(k) for k in ("oldest_id", "end_id", "games_added", "max_priority") if k in state}
        write_file(path, type(self).__name__, self.config(), scalars, state)

    @classmethod
    def load(cls, path: str | os.PathLike) -> GameBuffer:
        """Read a buffer written by :meth:`save`; sampling then continues exactly as it would have in
        the saved buffer.

        Raises
        ------
        ValueError
            Naming the file, for a file of another class or format version, a corrupt or truncated
            one, a configuration value that the constructor would refuse, or a state that breaks any
            invariant of the buffer (counters, game boundaries, array shapes and dtypes, values,
            priorities, generator).
        """
        config, state = read_file(path, cls.__name__)
        try:
            if not isinstance(config, dict) or set(config) != _CONFIG_KEYS:
                got = sorted(config) if isinstance(config, dict) else type(config).__name__
                raise ValueError(f"config: expected the keys {sorted(_CONFIG_KEYS)}, got {got}")
            buffer = cls.__new__(cls)
            buffer._init(**config, seed=0)
            with _argument_types():
                buffer._core.restore(state)
        except ValueError as exc:  # ArgumentTypeError included
            raise ValueError(f"path: {os.fspath(path)!r} holds an invalid GameBuffer: {exc}") from None
        return buffer
