"""Benchmark pymbrl's replay buffers against cpprb, Stable-Baselines3 and TorchRL.

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

Each library is a small adapter class with the same methods; the timed loops call the libraries'
documented public APIs the way a user's training loop would. Timings are medians over blocks of
calls, the blocks of different libraries interleaved so that a burst of load on the machine hits
them all. Everything runs with ``torch.set_num_threads(1)``.

It prints a markdown report and writes it into ``bench/RESULTS.md`` between the markers
``<!-- replay:begin -->`` and ``<!-- replay:end -->``, keeping the rest of that file.

Usage::

    make bench                          # or:
    python bench/bench_replay.py        # full run, about 1.5 minutes on a 2-core VM
    python bench/bench_replay.py --quick   # smoke test; writes no file unless --output is given
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from _report import DEFAULT_OUTPUT, Run, bench_parser, header, names, run_and_publish, short, spread, version

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
logging.getLogger("torchrl").setLevel(logging.WARNING)

SECTION = "replay"
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

# case key -> (row label, unit, target for pymbrl or None, whether smaller is better)
CASES = {
    "add1": ("add 1 transition (cap 1M)", "µs", 2.0),
    "add256": ("add batch of 256 (cap 1M)", "µs", 15.0),
    "sample256": ("uniform sample 256 (full 1M)", "µs", 40.0),
    "per": ("prioritized sample 256 + update 256 (full 1M)", "µs", 60.0),
    "atari_add1": ("Atari 84x84 uint8, cap 100k: add 1", "µs", None),
    "atari_sample32": ("Atari 84x84 uint8, cap 100k: sample 32", "µs", None),
    "atari_mem": ("Atari 84x84 uint8, cap 100k: memory (RSS growth)", "GB", 0.75),
    "seq_small": ("sequence sample [16, 64], cap 100k", "µs", None),
    "seq_big": ("sequence sample [16, 64], cap {big}", "µs", None),
}


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

    def __init__(self) -> None:
        super().__init__()
        try:
            import pymbrl  # noqa: PLC0415
            from pymbrl import replay  # noqa: PLC0415
            for cls in ("ReplayBuffer", "PrioritizedReplayBuffer", "SequenceReplayBuffer"):
                getattr(replay, cls)
        except (ImportError, AttributeError) as e:
            self.reason = f"pymbrl.replay not available in the installed pymbrl ({short(e, 70)})"
            return
        self.pymbrl, self.replay = pymbrl, replay

    def versions(self) -> str:
        info = self.pymbrl.build_info()
        return (f"pymbrl {self.pymbrl.__version__} ({info.get('build_type', '?')}, {info.get('compiler', '?')}, "
                f"flags `{str(info.get('flags', '?')).strip()}`)")

    def make(self, capacity, spec, *, kind="uniform", num_envs=1, dedup=False):
        self.kind = kind
        tspec = {k: (shape, TORCH_DTYPES[dt]) for k, (shape, dt) in spec.items()}
        if kind == "uniform":
            self.buf = self.replay.ReplayBuffer(capacity, tspec, num_envs=num_envs, seed=0)
        elif kind == "per":
            self.buf = self.replay.PrioritizedReplayBuffer(capacity, tspec, num_envs=num_envs, alpha=ALPHA,
                                                           beta=BETA, seed=0)
        else:
            self.buf = self.replay.SequenceReplayBuffer(capacity, tspec, num_envs=num_envs, seed=0)

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
            self.reason = short(e)
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
            self.reason = short(e)
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
            self.reason = short(e)
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
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.libs = {name: ADAPTERS[name]() for name in args.libs}
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
        a = self.args
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
        a = self.args
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
        a = self.args
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
        a = self.args
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
        a = self.args
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


def report(bench: Bench, argv: list[str], load_before: str) -> str:
    a = bench.args
    res = bench.results
    pym = bench.libs.get("pymbrl")
    lines = header("Replay buffers: pymbrl vs cpprb, Stable-Baselines3 and TorchRL", "bench_replay.py", argv,
                   load_before, machine_note="; `torch.set_num_threads(1)`", runtime=bench.runtime)
    for name, ad in bench.libs.items():
        lines.append(f"- {ad.versions() if ad.reason is None else name + ': ' + ad.reason}")
    lines += [
        f"- Data: obs 17 float32, action 6 float32, reward float32, terminated/truncated bool; an episode "
        f"ends every {EPISODE_LEN} steps. Times are medians over {a.blocks} blocks ({a.add1_blocks} for add 1) "
        f"of repeated calls, the blocks of the libraries interleaved; µs per call.",
        "",
        "| case | pymbrl | cpprb | SB3 | TorchRL | cpprb / pymbrl | SB3 / pymbrl | TorchRL / pymbrl "
        "| pymbrl target | met? |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    verdicts = []
    for case, (label, unit, target) in CASES.items():
        label = label.format(big=f"{a.seq_big / 1e6:g}M")
        row = res[case]
        ours = cell(bench, row, "pymbrl")
        cells = [fmt(cell(bench, row, n), unit) for n in PEERS]
        ratios = [ratio(row.get(n), ours) for n in PEERS]
        if target is None:
            tcell, met = NA, ""
        else:
            tcell = f"<= {target:g} {unit}"
            if isinstance(ours, float):
                ok = ours <= target
                met = "**met**" if ok else "**not met**"
                shown = fmt(ours, unit) + ("" if unit == "GB" else f" {unit}")
                verdicts.append(f"{label}: {met} ({shown}; target {tcell})")
            else:
                met = "n/a"
        lines.append(f"| {label} | {fmt(ours, unit)} | " + " | ".join(cells) + " | " + " | ".join(ratios) +
                     f" | {tcell} | {met} |")
    lines += [
        "",
        "Ratios are peer / pymbrl: above 1 means pymbrl is faster (or, for memory, smaller).",
        "",
        "How each library is driven (documented public APIs only):",
        "",
        "- pymbrl: `ReplayBuffer.add(obs=..., action=..., reward=..., terminated=..., truncated=..., next_obs=...)`, "
        "`extend` with leading dim 256, `sample(256)` (a `Batch` of torch tensors, every value touched), "
        "`PrioritizedReplayBuffer.sample` + `update_priorities(batch['indices'], torch priorities)`, "
        "`SequenceReplayBuffer.sample(16, 64)`; next_obs is stored only at episode ends by design.",
        "- cpprb: `ReplayBuffer.add(**fields)` with a `next_obs` field (and `on_episode_end()` at episode ends), "
        "`add` with 256 rows, `sample(256)` (dict of numpy arrays), `PrioritizedReplayBuffer.sample(256, beta)` + "
        "`update_priorities(indexes, numpy priorities)`; Atari with `next_of=\"obs\"` (its de-duplication). "
        "No sequence sampler: " + NA + ".",
        "- SB3: `ReplayBuffer.add(obs, next_obs, action, reward, done, infos)` with "
        "`handle_timeout_termination=True`; the batch case is one `add` on a buffer with `n_envs=256`; "
        "`sample(256)` returns torch tensors; Atari with `optimize_memory_usage=True` (its de-duplication, "
        "which SB3 allows only without timeout handling). Buffers are filled past the timed adds by writing "
        "its public storage arrays (SB3 has no batch add for one env). No prioritized or sequence sampler: " + NA + ".",
        "- TorchRL: `ReplayBuffer(storage=LazyTensorStorage(capacity))`; each add builds a `TensorDict` from the "
        "numpy arrays and Python scalars (included in the time), batches are `extend(TensorDict(..., "
        "batch_size=[256]))`; `sample(256)` returns a TensorDict. PER with `PrioritizedSampler(capacity, alpha, "
        "beta)` and `update_priority(info['index'], priority)`. Atari: no next-observation de-duplication "
        "(obs and next_obs both stored). Sequences: `SliceSampler(num_slices=16, traj_key=\"episode\")`, "
        "`sample(1024)`.",
        f"- Memory is the growth of this process's resident set from just before constructing the buffer "
        f"to just after filling all {a.atari_capacity:,} rows (GB = 1e9 bytes); 100k frames of 84x84 bytes "
        f"are {a.atari_capacity * 84 * 84 / 1e9:.3f} GB.",
    ]
    for case, label in (("add1", "add 1"), ("add256", "add batch of 256")):
        if bench.steady.get(case):
            vals = ", ".join(f"{n} {v:,.1f}" for n, v in bench.steady[case].items())
            lines.append(f"- {label} into the same buffers once full (every page already resident; the "
                         f"table's numbers include the first touch of fresh pages), µs: {vals}.")
    if a.seq_big != 10_000_000:
        lines.append(f"- Smoke run: the large sequence buffer has {a.seq_big:,} rows instead of 10,000,000.")
    if verdicts:
        lines += ["", "Targets for pymbrl:", ""] + [f"- {v}" for v in verdicts]
    elif pym is not None:
        lines += ["", f"Targets for pymbrl: not measured ({pym.reason})."]
    if bench.checks:
        lines += ["", "Sanity: " + "; ".join(bench.checks) + "."]
    noisy = [f"{case} / {n} ({spread:.0%})" for case, d in bench.spread.items()
             for n, spread in d.items() if spread > 0.5]
    if noisy:
        lines += ["", "Noisy cells (max - min over the blocks above 50% of the median): " + ", ".join(noisy) + "."]
    notes = bench.notes + [n for ad in bench.libs.values() if ad.reason is None for n in ad.notes()]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "(~30 s) fewer calls, a 1M instead of 10M sequence buffer", tuple(LIBS))
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.libs = names(args.libs, tuple(LIBS), "libraries", parser)
    q = args.quick
    args.capacity = 1_000_000
    args.add1_calls = 10_000 if q else 100_000
    args.add1_blocks = 5 if q else 10
    args.add1_warmup = 1000
    args.blocks = 5 if q else 21
    args.batch_calls = 40 if q else 150
    args.sample_calls = 40 if q else 400
    args.atari_capacity = 100_000
    args.atari_add1 = 5_000 if q else 20_000
    args.atari_sample_calls = 40 if q else 400
    args.seq_small = 100_000
    args.seq_big = 1_000_000 if q else 10_000_000
    args.seq_calls = 20 if q else 200
    args.steady_add1 = 5_000 if q else 20_000
    args.steady_blocks = 5
    # The timed batch adds must land on fresh rows (the steady-state pass after them wraps on purpose).
    assert (1 + args.blocks) * args.batch_calls * 256 <= args.capacity
    output = args.output or (None if q else DEFAULT_OUTPUT)

    run_and_publish(Bench(args), report, argv, output, SECTION)


if __name__ == "__main__":
    main()
