"""Replay buffer microbenchmark: pymbrl against cpprb, Stable-Baselines3 and TorchRL.

Measures, in one process, for every library that has the feature (obs 17 float32, action 6
float32, reward float32, terminated/truncated bool, capacity 1,000,000 unless noted):

(1) add 1 transition (numpy arrays for obs/action/next_obs, Python floats/bools for the scalars,
    an episode end every 1000 steps), µs per call;
(2) add a batch of 256 transitions in one call, µs per call;
(3) uniform sample of 256 from a full buffer, µs per call (results materialised);
(4) prioritized sample of 256 plus a priority update of those 256, µs per pair;
(5) Atari-like frames (84x84 uint8, int64 action, capacity 100,000): add 1 and sample 32, µs, and
    the process's resident-memory growth from before constructing the buffer to after filling it;
(6) sequence sampling, 16 sequences of 64 steps, from full buffers of 100,000 and 10,000,000 rows.

(The capacities and call counts are :class:`Settings`.) Each library is a small adapter class with
the same methods; the timed loops call the libraries' documented public APIs the way a user's
training loop would, and a library that is not installed is reported with how to get it. Timings are
medians over blocks of calls, the blocks of different libraries interleaved so that a burst of load
on the machine hits them all. ``bench/bench_replay.py`` writes the full report into the repository's
``bench/RESULTS.md``; :func:`benchmark` is ``pymbrl bench replay``.
"""

from __future__ import annotations

import gc
import logging
import os
import statistics
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import pymbrl
from pymbrl import replay
from pymbrl.bench.timing import Run, load, machine, short, spread, text_table, version

LIBS = ("pymbrl", "cpprb", "SB3", "TorchRL")
PEERS = LIBS[1:]
EPISODE_LEN = 1000
POOL = 100_000
"""Distinct transitions generated for the vector cases; rows i and i + POOL hold the same data."""
FRAMES = 1000
"""Distinct 84x84 frames generated for the Atari case (cycled)."""
ALPHA, BETA, GAMMA = 0.6, 0.4, 0.99
NA = "—"

VEC_SPEC = {"obs": ((17,), np.float32), "action": ((6,), np.float32), "reward": ((), np.float32),
            "terminated": ((), np.bool_), "truncated": ((), np.bool_)}
ATARI_SPEC = {"obs": ((84, 84), np.uint8), "action": ((), np.int64), "reward": ((), np.float32),
              "terminated": ((), np.bool_), "truncated": ((), np.bool_)}
TORCH_DTYPES = {np.float32: torch.float32, np.uint8: torch.uint8, np.int64: torch.int64, np.bool_: torch.bool}

CASES = {
    "add1": ("add 1 transition (cap {capacity})", "µs", 2.0),
    "add256": ("add batch of 256 (cap {capacity})", "µs", 15.0),
    "sample256": ("uniform sample 256 (full {capacity})", "µs", 40.0),
    "per": ("prioritized sample 256 + update 256 (full {capacity})", "µs", 60.0),
    "atari_add1": ("Atari 84x84 uint8, cap {atari_capacity}: add 1", "µs", None),
    "atari_sample32": ("Atari 84x84 uint8, cap {atari_capacity}: sample 32", "µs", None),
    "atari_mem": ("Atari 84x84 uint8, cap {atari_capacity}: memory (RSS growth)", "GB", 0.75),
    "seq_small": ("sequence sample [16, 64], cap {seq_small}", "µs", None),
    "seq_big": ("sequence sample [16, 64], cap {seq_big}", "µs", None),
}
"""Case key -> (row label, with the capacities of :class:`Settings` in braces; unit; pymbrl's target
at the full run's capacities, or None)."""


@dataclass(frozen=True)
class Settings:
    """What a :class:`Bench` measures: ``libs`` of :data:`LIBS`, the capacities (rows) of the buffers
    and how many calls each timing makes. The defaults are the full run (about 1.5 minutes on a
    2-core VM); ``Settings(**QUICK)`` a smoke test of about 30 s.

    ``capacity``: the 1M buffers of cases (1) to (4), a multiple of ``POOL`` (the steady-state adds
    rely on row r holding step r of the stream); ``add1_calls`` timed single adds in ``add1_blocks``
    blocks after ``add1_warmup`` untimed ones; ``blocks`` timed blocks of the other cases, of
    ``batch_calls`` batch adds, ``sample_calls`` samples, ``atari_sample_calls`` Atari samples and
    ``seq_calls`` sequence samples each; ``atari_add1`` timed Atari adds into a buffer of
    ``atari_capacity``; ``seq_small`` and ``seq_big`` the two sequence buffers; ``steady_add1``
    single adds in ``steady_blocks`` blocks into the full buffers.
    """

    libs: tuple[str, ...] = LIBS
    capacity: int = 1_000_000
    add1_calls: int = 100_000
    add1_blocks: int = 10
    add1_warmup: int = 1000
    blocks: int = 21
    batch_calls: int = 150
    sample_calls: int = 400
    atari_capacity: int = 100_000
    atari_add1: int = 20_000
    atari_sample_calls: int = 400
    seq_small: int = 100_000
    seq_big: int = 10_000_000
    seq_calls: int = 200
    steady_add1: int = 20_000
    steady_blocks: int = 5

    def __post_init__(self) -> None:
        unknown = [n for n in self.libs if n not in LIBS]
        if unknown or not self.libs:
            raise ValueError(f"libs: expected a non-empty subset of {list(LIBS)}, got {list(self.libs)}")
        for name, value in vars(self).items():
            if name != "libs" and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        if self.capacity % POOL:
            raise ValueError(f"capacity: expected a multiple of {POOL:,}, got {self.capacity:,}")
        if self.add1_warmup + self.add1_calls > self.capacity:
            raise ValueError(f"add1_calls: expected add1_warmup + add1_calls <= capacity, got "
                             f"{self.add1_warmup:,} + {self.add1_calls:,} > {self.capacity:,}")
        # The timed batch adds must land on fresh rows (the steady-state pass after them wraps on purpose).
        if (1 + self.blocks) * self.batch_calls * 256 > self.capacity:
            raise ValueError(f"batch_calls: expected (1 + blocks) x batch_calls x 256 <= capacity, got "
                             f"{1 + self.blocks} x {self.batch_calls} x 256 > {self.capacity:,}")
        # The check of pymbrl's batch wants a full buffer: its newest transition must end an episode
        # (a buffer counts a transition once its next observation is known).
        if (self.steady_blocks + 1) * (self.steady_add1 // self.steady_blocks) % EPISODE_LEN:
            raise ValueError(f"steady_add1: expected (steady_blocks + 1) x (steady_add1 // steady_blocks) to be a "
                             f"multiple of {EPISODE_LEN}, got {self.steady_blocks + 1} x "
                             f"{self.steady_add1 // self.steady_blocks}")
        if self.atari_add1 > self.atari_capacity:
            raise ValueError(f"atari_add1: expected at most atari_capacity ({self.atari_capacity:,}), got "
                             f"{self.atari_add1:,}")


QUICK = {"add1_calls": 10_000, "add1_blocks": 5, "blocks": 5, "batch_calls": 40, "sample_calls": 40,
         "atari_add1": 5_000, "atari_sample_calls": 40, "seq_big": 1_000_000, "seq_calls": 20, "steady_add1": 5_000}
"""The :class:`Settings` of a smoke test: fewer calls, a 1M instead of a 10M sequence buffer."""


def rows(n: int) -> str:
    """A capacity as the labels write it: 1M, 10M, 100k."""
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k" if n >= 1000 else str(n)


def label(case: str, settings: Settings) -> str:
    """The row label of ``case`` with the capacities of ``settings``."""
    return CASES[case][0].format(**{k: rows(v) for k, v in vars(settings).items() if k != "libs"})


class Unavailable(Exception):
    """The library cannot do this case here; the message says why."""


# --------------------------------------------------------------------------------------------
# Input data: a stream of transitions with an episode end every EPISODE_LEN steps.
# Step i stores obs[i % n] with next obs obs[i % n + 1]; n is a multiple of EPISODE_LEN, so a
# buffer filled in order always holds, at row r, obs[r % n] with next obs obs[r % n + 1].
# --------------------------------------------------------------------------------------------

class Stream:
    """``n`` steps of transitions (numpy arrays) plus per-step Python objects for add-1 loops."""

    def __init__(self, spec: dict, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        obs_shape, obs_dtype = spec["obs"]
        if obs_dtype == np.uint8:
            self.obs = rng.integers(0, 256, (n + 1, *obs_shape), dtype=np.uint8)
        else:
            self.obs = rng.standard_normal((n + 1, *obs_shape), dtype=np.float32)
        act_shape, act_dtype = spec["action"]
        if act_dtype == np.int64:
            self.action = rng.integers(0, 6, (n, *act_shape), dtype=np.int64)
        else:
            self.action = rng.uniform(-1, 1, (n, *act_shape)).astype(act_dtype)
        self.reward = rng.standard_normal(n, dtype=np.float32)
        end = (np.arange(n) + 1) % EPISODE_LEN == 0
        episode = np.arange(n) // EPISODE_LEN
        self.terminated = end & (episode % 2 == 1)   # every other episode ends by termination,
        self.truncated = end & (episode % 2 == 0)    # the others by a time limit
        self.episode = episode.astype(np.int64)
        self.n = n
        # What an environment loop hands to add(): array views, Python floats and bools.
        self.obs_rows = list(self.obs)
        self.act_rows = list(self.action)
        self.rew_list = self.reward.tolist()
        self.term_list = self.terminated.tolist()
        self.trunc_list = self.truncated.tolist()
        self.done_list = (self.terminated | self.truncated).tolist()

    def chunk(self, start: int, size: int) -> dict[str, np.ndarray]:
        """Steps ``start .. start + size`` of the stream (``start % n + size <= n``) as arrays, with next_obs."""
        a = start % self.n
        b = a + size
        assert b <= self.n, (start, size, self.n)
        return {"obs": self.obs[a:b], "action": self.action[a:b], "reward": self.reward[a:b],
                "terminated": self.terminated[a:b], "truncated": self.truncated[a:b],
                "next_obs": self.obs[a + 1:b + 1]}

    def chunks(self, start: int, stop: int, size: int):
        """Chunks covering steps ``start .. stop``, none crossing the end of the stream's data."""
        i = start
        while i < stop:
            k = min(size, stop - i, self.n - i % self.n)
            yield i, self.chunk(i, k)
            i += k


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm (psutil if that is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil  # noqa: PLC0415
        return psutil.Process().memory_info().rss


def materialise(batch: object) -> object:
    """Touch every tensor of a mapping batch (a lazily gathered batch must not look free)."""
    if isinstance(batch, Mapping):
        return list(batch.values())
    return batch


# --------------------------------------------------------------------------------------------
# Adapters. Each wraps one buffer; ``make`` builds it, the other methods are what is timed.
#   make(capacity, spec, *, kind="uniform"|"per"|"seq", num_envs=1, dedup=False)
#   add_loop(stream, start, stop)   add steps start..stop one call per step
#   add_batch(batch)                one call adding len(batch["obs"]) rows (numpy arrays)
#   fill(stream, start, stop)       fast fill of steps start..stop (batched calls)
#   sample(n)                       uniform sample, materialised
#   per_sample_update(n, prio)      prioritized sample and priority update of the sampled rows
#   seq_sample(b, length)           b sequences of `length` consecutive steps
# --------------------------------------------------------------------------------------------

class Adapter:
    name = "?"
    reason: str | None = None   # set when the library cannot be imported at all

    def __init__(self) -> None:
        self.buf = None
        self.kind = "uniform"

    def versions(self) -> str:
        raise NotImplementedError

    def notes(self) -> list[str]:
        return []

    def close(self) -> None:
        self.buf = None
        gc.collect()

    def make(self, capacity: int, spec: dict, *, kind: str = "uniform", num_envs: int = 1,
             dedup: bool = False) -> None:
        raise NotImplementedError

    def add_loop(self, s: Stream, start: int, stop: int) -> None:
        raise NotImplementedError

    def prepare_batch(self, batch: dict) -> dict:
        """What an environment loop would already hold for ``add_batch`` (not timed)."""
        return batch

    def add_batch(self, batch: dict) -> None:
        raise NotImplementedError

    def fill(self, s: Stream, start: int, stop: int, chunk: int = 100_000) -> None:
        for _, c in s.chunks(start, stop, chunk):
            self.add_batch(c)

    def sample(self, n: int) -> object:
        raise NotImplementedError

    def per_sample_update(self, n: int, prio) -> object:
        raise Unavailable(NA)

    def seq_sample(self, b: int, length: int) -> object:
        raise Unavailable(NA)

    def priorities(self, rng: np.random.Generator, n: int):
        """A pool-friendly priority vector in the type the library's update takes."""
        return torch.from_numpy(np.abs(rng.standard_normal(n)).astype(np.float32) + 1e-3)


class Pymbrl(Adapter):
    """pymbrl.replay through its public API (see src/pymbrl/replay/buffers.py)."""

    name = "pymbrl"

    def versions(self) -> str:
        info = pymbrl.build_info()
        return (f"pymbrl {pymbrl.__version__} ({info.get('build_type', '?')}, {info.get('compiler', '?')}, "
                f"flags `{str(info.get('flags', '?')).strip()}`)")

    def make(self, capacity, spec, *, kind="uniform", num_envs=1, dedup=False):
        self.kind = kind
        tspec = {k: (shape, TORCH_DTYPES[dt]) for k, (shape, dt) in spec.items()}
        if kind == "uniform":
            self.buf = replay.ReplayBuffer(capacity, tspec, num_envs=num_envs, seed=0)
        elif kind == "per":
            self.buf = replay.PrioritizedReplayBuffer(capacity, tspec, num_envs=num_envs, alpha=ALPHA,
                                                           beta=BETA, seed=0)
        else:
            self.buf = replay.SequenceReplayBuffer(capacity, tspec, num_envs=num_envs, seed=0)

    def add_loop(self, s, start, stop):
        add, n = self.buf.add, s.n
        obs, act, rew, term, trunc = s.obs_rows, s.act_rows, s.rew_list, s.term_list, s.trunc_list
        for i in range(start, stop):
            j = i % n
            add(obs=obs[j], action=act[j], reward=rew[j], terminated=term[j], truncated=trunc[j],
                next_obs=obs[j + 1])

    def add_batch(self, batch):
        self.buf.extend(**batch)

    def fill(self, s, start, stop, chunk=1_000_000):
        super().fill(s, start, stop, chunk)

    def sample(self, n):
        return materialise(self.buf.sample(n))

    def per_sample_update(self, n, prio):
        batch = self.buf.sample(n)
        self.buf.update_priorities(batch["indices"], prio)
        return materialise(batch)

    def seq_sample(self, b, length, within_episode=False):
        return materialise(self.buf.sample(b, length, within_episode=within_episode))


class Cpprb(Adapter):
    name = "cpprb"

    def __init__(self) -> None:
        super().__init__()
        try:
            import cpprb  # noqa: PLC0415
        except ImportError as e:
            self.reason = f"not installed ({short(e, 60)}): `pip install cpprb`"
            return
        self.cpprb = cpprb

    def versions(self) -> str:
        return f"cpprb {version('cpprb')}"

    @staticmethod
    def env_dict(spec: dict, dedup: bool) -> dict:
        d = {k: {"shape": shape if shape else 1, "dtype": dt} for k, (shape, dt) in spec.items()}
        if not dedup:
            d["next_obs"] = dict(d["obs"])
        return d

    def make(self, capacity, spec, *, kind="uniform", num_envs=1, dedup=False):
        self.kind = kind
        next_of = "obs" if dedup else None   # cpprb's own next-observation de-duplication
        if kind == "uniform":
            self.buf = self.cpprb.ReplayBuffer(capacity, self.env_dict(spec, dedup), next_of=next_of)
        elif kind == "per":
            self.buf = self.cpprb.PrioritizedReplayBuffer(capacity, self.env_dict(spec, dedup), alpha=ALPHA,
                                                          next_of=next_of)
        else:
            raise Unavailable(NA)

    def add_loop(self, s, start, stop):
        add, end, n = self.buf.add, self.buf.on_episode_end, s.n
        obs, act, rew, term, trunc, done = (s.obs_rows, s.act_rows, s.rew_list, s.term_list, s.trunc_list,
                                            s.done_list)
        for i in range(start, stop):
            j = i % n
            add(obs=obs[j], action=act[j], reward=rew[j], next_obs=obs[j + 1], terminated=term[j],
                truncated=trunc[j])
            if done[j]:
                end()

    def add_batch(self, batch):
        self.buf.add(**batch)

    def fill(self, s, start, stop, chunk=10_000):
        super().fill(s, start, stop, chunk)

    def sample(self, n):
        return self.buf.sample(n)

    def per_sample_update(self, n, prio):
        batch = self.buf.sample(n, beta=BETA)
        self.buf.update_priorities(batch["indexes"], prio)
        return batch

    def priorities(self, rng, n):
        return np.abs(rng.standard_normal(n)) + 1e-3


class SB3(Adapter):
    name = "SB3"

    def __init__(self) -> None:
        super().__init__()
        try:
            from gymnasium import spaces  # noqa: PLC0415
            from stable_baselines3.common.buffers import ReplayBuffer  # noqa: PLC0415
        except ImportError as e:
            self.reason = f"not installed ({short(e, 60)}): `pip install stable-baselines3`"
            return
        self.spaces, self.ReplayBuffer = spaces, ReplayBuffer

    def versions(self) -> str:
        return f"stable-baselines3 {version('stable-baselines3')} (gymnasium {version('gymnasium')})"

    def make(self, capacity, spec, *, kind="uniform", num_envs=1, dedup=False):
        self.kind = kind
        if kind != "uniform":
            raise Unavailable(NA)
        obs_shape, obs_dtype = spec["obs"]
        if obs_dtype == np.uint8:
            obs_space = self.spaces.Box(0, 255, obs_shape, np.uint8)
        else:
            obs_space = self.spaces.Box(-np.inf, np.inf, obs_shape, obs_dtype)
        act_shape, act_dtype = spec["action"]
        if act_dtype == np.int64:
            act_space = self.spaces.Discrete(6)
        else:
            act_space = self.spaces.Box(-1.0, 1.0, act_shape, act_dtype)
        # SB3 refuses optimize_memory_usage together with timeout handling.
        self.buf = self.ReplayBuffer(capacity, obs_space, act_space, device="cpu", n_envs=num_envs,
                                     optimize_memory_usage=dedup, handle_timeout_termination=not dedup)
        self.infos = {n: ([{"TimeLimit.truncated": True}] * n, [{}] * n) for n in (1, num_envs)}

    def add_loop(self, s, start, stop):
        add, n = self.buf.add, s.n
        obs, act, rew, trunc, done = s.obs_rows, s.act_rows, s.rew_list, s.trunc_list, s.done_list
        info_trunc, info = self.infos[1]
        for i in range(start, stop):
            j = i % n
            add(obs[j], obs[j + 1], act[j], rew[j], done[j], info_trunc if trunc[j] else info)

    def prepare_batch(self, batch):
        # A vectorised env hands back dones and infos; building them is not SB3's cost.
        return dict(batch, done=batch["terminated"] | batch["truncated"],
                    infos=[{"TimeLimit.truncated": bool(t)} for t in batch["truncated"]])

    def add_batch(self, batch):
        self.buf.add(batch["obs"], batch["next_obs"], batch["action"], batch["reward"], batch["done"],
                     batch["infos"])

    def fill(self, s, start, stop, chunk=100_000):
        """SB3 has no batch add for n_envs=1: write its public storage arrays directly."""
        b = self.buf
        for _, c in s.chunks(start, stop, chunk):
            k = len(c["obs"])
            rows = (b.pos + np.arange(k)) % b.buffer_size
            b.observations[rows, 0] = c["obs"]
            if b.optimize_memory_usage:
                b.observations[(rows + 1) % b.buffer_size, 0] = c["next_obs"]
            else:
                b.next_observations[rows, 0] = c["next_obs"]
            b.actions[rows, 0] = c["action"].reshape(k, -1)
            b.rewards[rows, 0] = c["reward"]
            b.dones[rows, 0] = c["terminated"] | c["truncated"]
            if b.handle_timeout_termination:
                b.timeouts[rows, 0] = c["truncated"]
            if b.pos + k >= b.buffer_size:
                b.full = True
            b.pos = (b.pos + k) % b.buffer_size

    def sample(self, n):
        return self.buf.sample(n)


class TorchRL(Adapter):
    name = "TorchRL"

    def __init__(self) -> None:
        super().__init__()
        try:
            from tensordict import TensorDict  # noqa: PLC0415
            from torchrl.data import LazyTensorStorage, ReplayBuffer  # noqa: PLC0415
            from torchrl.data.replay_buffers.samplers import PrioritizedSampler, SliceSampler  # noqa: PLC0415
        except ImportError as e:
            self.reason = f"not installed ({short(e, 60)}): `pip install torchrl`"
            return
        logging.getLogger("torchrl").setLevel(logging.WARNING)   # it logs every storage it initialises
        self.TensorDict, self.Storage, self.ReplayBuffer = TensorDict, LazyTensorStorage, ReplayBuffer
        self.PrioritizedSampler, self.SliceSampler = PrioritizedSampler, SliceSampler
        try:
            import torchrl._torchrl  # noqa: F401, PLC0415
            self.extension = None
        except ImportError as e:
            msg = str(e)
            self.extension = (f"ImportError: undefined symbol in {Path(msg.split(':')[0]).name}, built against "
                              f"another torch" if "undefined symbol" in msg else short(e, 110))

    def versions(self) -> str:
        ext = "C++ extension loaded" if self.extension is None else f"C++ extension failed to load: {self.extension}"
        return f"torchrl {version('torchrl')}, tensordict {version('tensordict')} ({ext})"

    def make(self, capacity, spec, *, kind="uniform", num_envs=1, dedup=False, cache_values=False):
        self.kind = kind
        storage = self.Storage(capacity)   # no next-observation de-duplication
        if kind == "uniform":
            self.buf = self.ReplayBuffer(storage=storage)
        elif kind == "per":
            try:
                sampler = self.PrioritizedSampler(capacity, alpha=ALPHA, beta=BETA)
                self.buf = self.ReplayBuffer(storage=storage, sampler=sampler)
            except Exception as e:  # the segment trees live in the C++ extension
                self.per_error = short(e)
                why = "its C++ extension fails to load" if self.extension else short(e, 70)
                raise Unavailable(f"unavailable ({why})") from e
        else:
            self.buf = self.ReplayBuffer(storage=storage, sampler=self.SliceSampler(
                num_slices=16, traj_key="episode", cache_values=cache_values))

    def add_loop(self, s, start, stop):
        add, TD, n = self.buf.add, self.TensorDict, s.n
        obs, act, rew, term, trunc = s.obs_rows, s.act_rows, s.rew_list, s.term_list, s.trunc_list
        for i in range(start, stop):
            j = i % n
            add(TD({"obs": obs[j], "action": act[j], "reward": rew[j], "next_obs": obs[j + 1],
                    "terminated": term[j], "truncated": trunc[j]}, batch_size=()))

    def add_batch(self, batch):
        self.buf.extend(self.TensorDict(batch, batch_size=(len(batch["obs"]),)))

    def fill(self, s, start, stop, chunk=100_000):
        super().fill(s, start, stop, chunk)

    def notes(self) -> list[str]:
        if getattr(self, "per_error", None):
            return [f"TorchRL PER: `PrioritizedSampler` raised `{self.per_error}`; its segment trees are in the "
                    f"C++ extension, which fails to load here ({self.extension})."]
        return []

    def fill_seq(self, s, start, stop, chunk=1_000_000):
        """Fill with an episode id per step, as SliceSampler(traj_key="episode") needs."""
        episodes_per_pass = s.n // EPISODE_LEN
        for i, c in s.chunks(start, stop, chunk):
            a = i % s.n
            c = dict(c, episode=s.episode[a:a + len(c["obs"])] + (i // s.n) * episodes_per_pass)
            self.add_batch(c)

    def sample(self, n):
        return self.buf.sample(n)

    def per_sample_update(self, n, prio):
        batch, info = self.buf.sample(n, return_info=True)
        self.buf.update_priority(info["index"], prio)
        return batch

    def seq_sample(self, b, length):
        return self.buf.sample(b * length)


ADAPTERS = {"pymbrl": Pymbrl, "cpprb": Cpprb, "SB3": SB3, "TorchRL": TorchRL}


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------

def interleaved(calls: dict[str, Callable[[int], int]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """µs per operation of each ``calls[name](block) -> operations done``, blocks round-robin."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for block in range(warmup + repeats):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            ops = fn(block)
            dt = time.perf_counter() - t0
            if block >= warmup:
                times[name].append(dt / ops * 1e6)
    return times


def repeat_calls(fn: Callable[[], object], calls: int) -> Callable[[int], int]:
    def block(_: int) -> int:
        for _ in range(calls):
            fn()
        return calls
    return block


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


class Bench(Run):
    """One run of :class:`Settings`: ``run()`` fills ``results`` (case -> library -> µs, GB or why
    there is none), ``spread``, ``steady`` (the adds into full buffers), ``checks`` and ``notes``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.libs = {name: ADAPTERS[name]() for name in settings.libs}
        self.results: dict[str, dict[str, float | str]] = {case: {} for case in CASES}
        self.spread: dict[str, dict[str, float]] = {case: {} for case in CASES}
        self.notes: list[str] = []
        self.steady: dict[str, dict[str, float]] = {}
        self.checks: list[str] = []
        self.rng = np.random.default_rng(0)

    def record(self, case: str, times: dict[str, list[float]]) -> None:
        for name, t in times.items():
            self.results[case][name] = median(t)
            self.spread[case][name] = spread(t)

    def build(self, case: str, capacity: int, spec: dict, **kw) -> dict[str, Adapter]:
        """Fresh buffers for ``case``; libraries that lack the feature get their reason recorded."""
        built = {}
        for name, a in self.ready().items():
            try:
                a.make(capacity, spec, **kw)
                built[name] = a
            except Unavailable as e:
                self.results[case][name] = str(e)
        return built

    def guard(self, case: str, bufs: dict[str, Adapter], fn: Callable[[Adapter], object]) -> None:
        """Run ``fn`` on every buffer; a library that raises is reported unavailable for ``case``."""
        for name in list(bufs):
            try:
                fn(bufs[name])
            except Exception as e:  # a peer's failure must not end the benchmark
                self.results[case][name] = f"unavailable ({short(e, 70)})"
                bufs.pop(name).close()

    # (1) and (3): add 1 into fresh 1M buffers, fill them, sample 256.
    def add1_and_sample(self, s: Stream) -> None:
        a = self.settings
        self.log("(1) add 1 transition ...")
        bufs = self.build("add1", a.capacity, VEC_SPEC)
        block, warm = a.add1_calls // a.add1_blocks, a.add1_warmup
        calls = {}
        for name, ad in bufs.items():
            def run(b, ad=ad):
                lo = warm + (b - 1) * block if b else 0
                hi = warm + b * block if b else warm
                ad.add_loop(s, lo, hi)
                return hi - lo
            calls[name] = run
        self.record("add1", interleaved(calls, a.add1_blocks))
        done = warm + a.add1_calls
        self.log("    filling to 1M ...")
        self.guard("sample256", bufs, lambda ad: ad.fill(s, done, a.capacity))
        self.guard("sample256", bufs, lambda ad: ad.sample(256))
        self.log("    add 1 into the full buffers ...")
        block = a.steady_add1 // a.steady_blocks
        calls = {}
        for name, ad in bufs.items():
            def run(b, ad=ad):   # steps capacity + k land on row k with the data of step k (POOL | capacity)
                ad.add_loop(s, a.capacity + b * block, a.capacity + (b + 1) * block)
                return block
            calls[name] = run
        self.steady["add1"] = {n: median(t) for n, t in interleaved(calls, a.steady_blocks).items()}
        self.check_uniform(bufs, s)
        self.log("(3) uniform sample 256 ...")
        calls = {name: repeat_calls(lambda ad=ad: ad.sample(256), a.sample_calls) for name, ad in bufs.items()}
        self.record("sample256", interleaved(calls, a.blocks))
        for ad in bufs.values():
            ad.close()

    def check_uniform(self, bufs: dict[str, Adapter], s: Stream) -> None:
        """Shapes of every library's batch; for pymbrl also the contents against the stream."""
        for name, ad in bufs.items():
            batch = ad.buf.sample(256)
            if name == "SB3":
                shapes = {"obs": tuple(batch.observations.shape), "next_obs": tuple(batch.next_observations.shape)}
            else:
                shapes = {k: tuple(batch[k].shape) for k in ("obs", "next_obs")}
            ok = shapes["obs"] == (256, 17) and shapes["next_obs"] == (256, 17)
            if name == "pymbrl":
                ok = ok and self.check_pymbrl_batch(batch, s, ad.buf)
            self.checks.append(f"{name}: uniform batch {'ok' if ok else 'WRONG ' + str(shapes)}")

    def check_sequences(self, bufs: dict[str, Adapter], cap: int) -> None:
        for name, ad in bufs.items():
            batch = ad.buf.sample(16, 64) if name == "pymbrl" else ad.buf.sample(16 * 64)
            if name == "pymbrl":
                ok = (tuple(batch["obs"].shape) == (16, 64, 17) and tuple(batch["is_first"].shape) == (16, 64)
                      and tuple(batch["next_obs"].shape) == (16, 64, 17))
                # Within an episode each step's next_obs is the following step's obs; windows may cross
                # episode ends, where is_first marks the following step.
                same = (batch["next_obs"][:, :-1] == batch["obs"][:, 1:]).all(-1) | batch["is_first"][:, 1:]
                ok = ok and bool(same.all())
            else:
                ep = batch["episode"].view(16, 64)
                ok = tuple(batch["obs"].shape) == (1024, 17) and bool((ep == ep[:, :1]).all())
            self.checks.append(f"{name}: sequence batch at {cap:,} {'ok' if ok else 'WRONG'}")

    def check_pymbrl_batch(self, batch, s: Stream, buf) -> bool:
        """Rows hold stream step r % n: obs, action, next_obs and discount must match it."""
        idx = np.asarray(batch["indices"]).astype(np.int64) % s.n
        want_disc = np.where(s.terminated[idx], 0.0, GAMMA).astype(np.float32)
        good = (len(buf) == buf.capacity
                and np.array_equal(np.asarray(batch["obs"]), s.obs[idx])
                and np.array_equal(np.asarray(batch["action"]), s.action[idx])
                and np.array_equal(np.asarray(batch["next_obs"]), s.obs[idx + 1])
                and np.allclose(np.asarray(batch["discount"]), want_disc))
        if not good:
            self.notes.append("**pymbrl's uniform batch does not match the data written** (obs/action/"
                              "next_obs/discount at the returned indices): its timings are suspect.")
        return good

    # (2) add a batch of 256 into fresh 1M buffers.
    def add_batch(self, s: Stream) -> None:
        a = self.settings
        self.log("(2) add batch of 256 ...")
        bufs = self.build("add256", a.capacity, VEC_SPEC)
        if "SB3" in bufs:   # SB3 adds a batch as one step of 256 parallel envs
            bufs["SB3"].make(a.capacity, VEC_SPEC, num_envs=256)
        raw = [s.chunk(k * 256, 256) for k in range(s.n // 256)]
        raw_prepared = {name: [ad.prepare_batch(c) for c in raw] for name, ad in bufs.items()}
        calls = {}
        for name, ad in bufs.items():
            def run(b, ad=ad, batches=raw_prepared[name]):
                lo = b * a.batch_calls
                for k in range(lo, lo + a.batch_calls):
                    ad.add_batch(batches[k % len(batches)])
                return a.batch_calls
            calls[name] = run
        self.record("add256", interleaved(calls, a.blocks))
        self.log("    add 256 into the full buffers ...")
        done = (1 + a.blocks) * a.batch_calls
        for ad in bufs.values():   # top up to a full buffer, then time the same calls again
            for k in range(done, -(-a.capacity // 256) + 1):
                ad.add_batch(raw_prepared[ad.name][k % len(raw)])
        calls = {}
        for name, ad in bufs.items():
            def run(b, ad=ad, batches=raw_prepared[name]):
                for k in range(a.batch_calls):
                    ad.add_batch(batches[(b * a.batch_calls + k) % len(batches)])
                return a.batch_calls
            calls[name] = run
        self.steady["add256"] = {n: median(t) for n, t in interleaved(calls, a.steady_blocks).items()}
        for ad in bufs.values():
            ad.close()

    # (4) prioritized sample 256 + update.
    def prioritized(self, s: Stream) -> None:
        a = self.settings
        self.log("(4) prioritized sample 256 + update ...")
        bufs = self.build("per", a.capacity, VEC_SPEC, kind="per")
        self.guard("per", bufs, lambda ad: ad.fill(s, 0, a.capacity))
        self.guard("per", bufs, lambda ad: ad.per_sample_update(256, ad.priorities(self.rng, 256)))
        prios = {name: [ad.priorities(self.rng, 256) for _ in range(64)] for name, ad in bufs.items()}
        calls = {}
        for name, ad in bufs.items():
            def run(b, ad=ad, p=prios[name]):
                for k in range(a.sample_calls):
                    ad.per_sample_update(256, p[k % len(p)])
                return a.sample_calls
            calls[name] = run
        self.record("per", interleaved(calls, a.blocks))
        for ad in bufs.values():
            ad.close()

    # (5) Atari: one library at a time, so that the resident-memory growth is its own.
    def atari(self) -> None:
        a = self.settings
        self.log("(5) Atari 84x84 ...")
        s = Stream(ATARI_SPEC, FRAMES, seed=1)
        block = a.atari_add1 // a.add1_blocks
        for name, ad in self.ready().items():
            gc.collect()
            before = rss_bytes()
            try:
                ad.make(a.atari_capacity, ATARI_SPEC, dedup=True)
                t = interleaved({name: lambda b, ad=ad: (ad.add_loop(s, b * block, (b + 1) * block), block)[1]},
                                a.add1_blocks - 1)
                ad.fill(s, a.add1_blocks * block, a.atari_capacity, chunk=FRAMES)
                gc.collect()
                grown = (rss_bytes() - before) / 1e9
                t2 = interleaved({name: repeat_calls(lambda ad=ad: ad.sample(32), a.atari_sample_calls)}, a.blocks)
            except Exception as e:  # a peer's failure must not end the benchmark
                for case in ("atari_add1", "atari_sample32", "atari_mem"):
                    self.results[case][name] = f"unavailable ({short(e, 70)})"
            else:
                self.record("atari_add1", t)
                self.results["atari_mem"][name] = grown
                self.record("atari_sample32", t2)
            ad.close()
            self.log(f"    {name} done")

    # (6) sequences.
    def sequences(self, s: Stream) -> None:
        a = self.settings
        for case, cap in (("seq_small", a.seq_small), ("seq_big", a.seq_big)):
            self.log(f"(6) sequence sample [16, 64] at capacity {cap:,} ...")
            bufs = self.build(case, cap, VEC_SPEC, kind="seq")
            self.guard(case, bufs, lambda ad: (ad.fill_seq if ad.name == "TorchRL" else ad.fill)(s, 0, cap))
            self.guard(case, bufs, lambda ad: ad.seq_sample(16, 64))
            self.check_sequences(bufs, cap)
            calls = {}
            for name, ad in bufs.items():   # TorchRL's slice sampler scans the whole storage per call
                n = a.seq_calls if name != "TorchRL" else max(1, a.seq_calls // (1 if cap <= POOL else 50))
                calls[name] = repeat_calls(lambda ad=ad: ad.seq_sample(16, 64), n)
            self.record(case, interleaved(calls, a.blocks))
            extra = []
            if "pymbrl" in bufs:
                t = interleaved({"p": repeat_calls(lambda ad=bufs["pymbrl"]: ad.seq_sample(16, 64, True),
                                                   a.seq_calls)}, a.blocks)["p"]
                extra.append(f"pymbrl with `within_episode=True` {median(t):,.1f} µs")
            for ad in bufs.values():
                ad.close()
            if "TorchRL" in bufs:
                ad = bufs["TorchRL"]
                ad.make(cap, VEC_SPEC, kind="seq", cache_values=True)
                ad.fill_seq(s, 0, cap)
                t = interleaved({"t": repeat_calls(lambda: ad.seq_sample(16, 64), a.seq_calls)}, a.blocks)["t"]
                extra.append(f"TorchRL with `cache_values=True` (valid only while nothing is written) "
                             f"{median(t):,.1f} µs")
                ad.close()
            if extra:
                self.notes.append(f"Sequence sampling at capacity {cap:,}, other settings: " + "; ".join(extra) + ".")

    def run(self) -> None:
        self.t0 = time.perf_counter()
        s = Stream(VEC_SPEC, POOL, seed=0)
        self.add1_and_sample(s)
        self.add_batch(s)
        self.prioritized(s)
        self.atari()
        self.sequences(s)
        self.runtime = time.perf_counter() - self.t0


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def fmt(v: float | str | None, unit: str) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if unit == "GB":
        return f"{v:.3f} GB"
    return f"{v:,.1f}" if v < 1000 else f"{v:,.0f}"


def cell(bench: Bench, row: dict, name: str) -> float | str | None:
    """A library's value for a case: a number, a reason it has none, or None when not run."""
    ad = bench.libs.get(name)
    if ad is None:
        return "not run"
    if ad.reason is not None:
        return "unavailable"
    return row.get(name)


def ratio(peer, ours) -> str:
    if isinstance(peer, float) and isinstance(ours, float) and ours > 0:
        return f"{peer / ours:,.1f}x"
    return NA




# --------------------------------------------------------------------------------------------
# pymbrl bench replay
# --------------------------------------------------------------------------------------------

USER_QUICK = Settings(capacity=POOL, add1_calls=2_000, add1_blocks=2, add1_warmup=100, blocks=2, batch_calls=20,
                      sample_calls=20, atari_capacity=10_000, atari_add1=1_000, atari_sample_calls=20,
                      seq_small=POOL, seq_big=2 * POOL, seq_calls=10, steady_add1=2_000, steady_blocks=2)
"""``pymbrl bench replay --quick``: every case on small buffers, a few seconds for pymbrl."""


def user_settings(device: torch.device, quick: bool) -> Settings:
    """What ``pymbrl bench replay`` runs: every library, ``Settings(**QUICK)`` (about 30 s with every
    peer on a 2-core VM), or :data:`USER_QUICK` with ``quick``.

    Raises
    ------
    ValueError
        ``"device: ..."`` for a device other than the CPU: the buffers and their samples live in host
        memory.
    """
    if device.type != "cpu":
        raise ValueError(f"device: the replay benchmark times buffers in host memory, on the CPU only; got {device}")
    return USER_QUICK if quick else Settings(**QUICK)


def summary(bench: Bench) -> str:
    """A plain-text report of a run: the machine, one line per library that could not run (why, and
    how to get it), each case's time (µs per call; GB for memory) per library and each peer's over
    pymbrl's (above 1: pymbrl is faster, or smaller)."""
    ready = [n for n in bench.libs if bench.libs[n].reason is None]
    peers = [n for n in PEERS if n in ready] if "pymbrl" in ready else []
    table = [["case", *ready, *(f"{n} / pymbrl" for n in peers)]]
    for case, (_, unit, _) in CASES.items():
        row = bench.results[case]
        table.append([label(case, bench.settings) + (" (GB)" if unit == "GB" else ""),
                      *(fmt(row.get(n), unit).removesuffix(" GB") for n in ready),
                      *(ratio(row.get(n), row.get("pymbrl")) for n in peers)])
    lines = [f"Replay buffers on cpu ({machine()}; 1-minute load average {load()}: other work on the machine "
             "inflates the timings)",
             *(f"  {name}: skipped, {ad.reason}" for name, ad in bench.libs.items() if ad.reason is not None), "",
             f"µs per call (memory in GB), medians over {bench.settings.blocks} blocks of calls; obs 17 float32, "
             "action 6 float32; peer / pymbrl above 1: pymbrl is faster (or smaller):", *text_table(table)]
    lines += [f"check failed: {c}" for c in bench.checks if "WRONG" in c]
    return "\n".join(lines + bench.notes + [n for ad in bench.libs.values() if ad.reason is None for n in ad.notes()])


def benchmark(settings: Settings) -> str:
    """Run ``settings`` (peers' warnings silenced) with progress lines on stderr; returns the :func:`summary`."""
    bench = Bench(settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bench.run()
    return summary(bench)
