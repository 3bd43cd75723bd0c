"""Benchmark distribution on Ray: real self-play actors, coordination overhead up to 64 actors, memory over time.

Measures, in one run on one machine:

(a) MuZero self-play env steps per second on CartPole-v1 through ``pymbrl.agents.muzero_actors.Actors``
    with 1 and 2 self-play actors (the learner idle: the driver only stores the games that come back,
    ``Actors.next`` in a loop), against the same config's single-process loop of
    ``pymbrl.agents.muzero_selfplay.SelfPlay.step`` (what ``muzero.train`` runs with ``actors=0``).
    Config: ``MuZeroConfig.for_env("CartPole-v1", num_envs=16)`` (its preset: Gumbel search, 25
    simulations, support 20), ``actor_moves`` 8, so an actor's call plays 8 moves x 16 envs = 128 env
    steps. With as many actors as cores, the driver, Ray's processes and the actors share the cores: the
    table shows the cores each used during the window (CPU seconds per second, from ``/proc``).
(b) Coordination overhead of ``pymbrl.distributed.pool.ProducerPool`` on a simulated workload that needs
    no cores: each actor's call (its env steps and model calls) is a ``time.sleep(--work)`` that returns
    a game-sized payload (16 KB of float32), two calls in flight per actor as ``Actors`` keeps them, on a
    local Ray started with ``num_cpus=64`` (one logical CPU per actor, whatever the machine has).
    Results per second taken by ``ProducerPool.next`` against the ideal N / work and against N times the
    1-actor rate (the issue's target: at least 90% at 32 actors), and the cores the driver and Ray used
    for them. Each call starts as a real actor's does: it asks the weight board
    (``pymbrl.distributed.weights``) for a newer version and fetches it when there is one. Then the
    learner: the driver runs a fixed CPU-bound update (an Adam step of a 64-256-256-1 MLP on a batch of
    256, one thread), publishes the weights on the board every 10 updates (``Publisher.publish``, as
    ``Actors.publish``) and takes the results that are back (``ProducerPool.ready``) between updates;
    its updates per second with N actors against none (measured before the pools and after them).
    Publishing and fetching the weights do take cores (the board's and the actors'; on a cluster the
    actors' would be their own): the cores columns show them.
(c) Memory over time while (b)'s pool of ``--memory-actors`` actors runs that learner loop for
    ``--minutes``, its results now 256 KB (above Ray's 100 KB limit for inlining a return value, so
    every result passes through the object store, as a pixel rollout would): every few seconds the
    object store's bytes and objects in use (from the private
    ``ray._private.internal_api.get_memory_info_reply``, what ``ray memory --stats-only`` prints: Ray 2.60's
    public ``ray.available_resources()["object_store_memory"]`` follows the bytes about a second late and
    counts no objects), the driver's resident memory (``/proc/self/status``: all, and anonymous) and that
    of all the Ray processes this driver started (raylet, GCS, workers: anonymous, and the object store's
    shared pages they have touched); start, end, max and the least-squares slope per minute, over the
    whole run and over its second half (past the warm-up growth).

Measured pitfall: Ray keeps starting worker processes for a while after the actors first answer (and
after ``ray.init``); on a small machine that starves the driver and the actors (32 actors measured
70% of ideal instead of 99.9% before it ended). So every measurement waits, still taking results,
until none of this driver's Ray worker processes has been starting (its command line still
``python default_worker.py`` or ``setup_worker.py``: a worker renames itself ``ray::...`` once up) for 5
seconds, at most ``SETTLE_CAP`` seconds (15 with ``--quick``); the tables report how long that took.
Windows count from a first result to the last one (no call cut in two).

Everything in the driver runs with ``torch.set_num_threads(1)``, as the actors do.

It prints a markdown report and writes it into ``bench/RESULTS.md`` between the markers
``<!-- distributed:begin -->`` and ``<!-- distributed:end -->``, keeping the rest of that file.
Needs ray (``pip install 'pymbrl[ray]'``; measured with ray 2.60.0).

Usage::

    make bench                                      # or:
    python bench/bench_distributed.py               # full run, about 8-9 minutes on a 2-core VM, (c) 1 minute
    python bench/bench_distributed.py --minutes 10  # the issue's 10-minute memory run (18 minutes in all)
    python bench/bench_distributed.py --quick       # smoke test; writes no file unless --output is given
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from _report import (
    DEFAULT_OUTPUT,
    Run,
    bench_parser,
    header,
    ratio,
    run_and_publish,
    version,
)

torch.set_num_threads(1)

SECTION = "distributed"
ENV_ID, NUM_ENVS = "CartPole-v1", 16
SELFPLAY_ACTORS = (1, 2)
WARMUP_MOVES = 5
"""Single-process moves before timing (first-touch allocations, the tree pool)."""
INFLIGHT = 2
"""Calls in flight per actor: what ``Actors`` uses."""
GAME_BYTES, STORE_BYTES = 16 * 1024, 256 * 1024
"""A simulated result in (b), and in (c) (above Ray's 100 KB inline limit: through the object store)."""
PUBLISH_EVERY = 10
"""Learner updates between two publishes of the weights."""
RAY_CPUS = 64
QUIET, SETTLE_CAP = 5.0, 60.0
"""Seconds with no Ray worker process starting that end a settle phase; the most it may take."""
SAMPLE_EVERY = 5.0
"""Seconds between two memory samples in (c)."""
TARGET_ACTORS, TARGET = 32, 0.9
MIB = 2**20
CLK_TCK = os.sysconf("SC_CLK_TCK")
RESIDENT = ("VmRSS", "RssAnon", "RssShmem")
NA = "—"


# --------------------------------------------------------------------------------------------
# Processes and memory
# --------------------------------------------------------------------------------------------

def descendants() -> list[int]:
    """The processes this one started, directly or not (Ray's GCS, raylet, agents and workers)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])  # the name in parentheses may hold spaces
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [os.getpid()]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def starting_workers() -> int:
    """This driver's Ray worker processes still starting: ``python [setup|default]_worker.py ...`` (a worker
    renames itself ``ray::...`` once up; the raylet's own command line names default_worker.py too)."""
    n = 0
    for pid in descendants():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        n += len(args) > 1 and args[1].endswith((b"/default_worker.py", b"/setup_worker.py"))
    return n


def cpu_seconds(actor: str) -> np.ndarray:
    """CPU seconds used so far by this process, by its Ray actors of class ``actor`` and by its other Ray
    processes (GCS, raylet, agents, idle workers)."""
    t = os.times()
    out = np.array([t.user + t.system, 0.0, 0.0])
    for pid in descendants():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read()
        except OSError:
            continue
        out[1 if title.startswith(f"ray::{actor}".encode()) else 2] += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def resident(pid: int | str = "self") -> np.ndarray:
    """Resident bytes of a process: all, anonymous (its own heap: where a leak shows), shared memory (the
    object store's pages it touched); zeros once it is gone."""
    out = np.zeros(3)
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in RESIDENT:
                    out[RESIDENT.index(key)] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def ray_memory() -> dict[str, tuple[int, np.ndarray]]:
    """This driver's Ray processes by kind (``raylet``, ``gcs_server``, ``ray::SleepWorker``, ...): how many,
    and their :func:`resident` bytes summed."""
    kinds: dict[str, tuple[int, np.ndarray]] = {}
    for pid in descendants():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if args[0].startswith("ray::"):  # an actor's title names its class, then the method it runs
            kind = args[0].split()[0].split(".")[0]
        else:
            kind = os.path.basename(next((a for a in args[:3] if a.endswith(".py")), args[0]))
        count, total = kinds.get(kind, (0, np.zeros(3)))
        kinds[kind] = (count + 1, total + resident(pid))
    return kinds


def settle(take, cap: float) -> float:
    """Keeps calling ``take()`` (a result, or a nap) until no Ray worker process of this driver has been
    starting for QUIET seconds, at most ``cap`` seconds; returns the seconds it took."""
    t0 = busy = check = time.perf_counter()
    while True:
        take()
        now = time.perf_counter()
        if now >= check:
            if starting_workers():
                busy = now
            if now - busy >= QUIET or now - t0 >= cap:
                return now - t0
            check = now + 0.5


def timed(take, seconds: float, actor: str = "") -> tuple[float, np.ndarray]:
    """Items per second of ``take()`` (each returns how many it got) over about ``seconds``, from a first
    arrival to the last, so that the window cuts no call in two; and the cores used meanwhile by the
    driver, the actors of class ``actor`` and the rest of Ray (:func:`cpu_seconds`)."""
    take()
    cpu = cpu_seconds(actor)
    t0 = now = time.perf_counter()
    count = 0
    while now - t0 < seconds:
        count += take()
        now = time.perf_counter()
    return count / (now - t0), (cpu_seconds(actor) - cpu) / (now - t0)


class ObjectStore:
    """The object store's use across the cluster, from the private call behind ``ray memory --stats-only``
    (the public ``ray.available_resources()["object_store_memory"]`` follows the raylet's periodic resource
    reports, about a second late, and counts no objects)."""

    def __init__(self, ray) -> None:
        from ray._private.internal_api import (
            get_memory_info_reply,
            get_state_from_address,
        )

        self.reply = get_memory_info_reply
        self.state = get_state_from_address(ray.get_runtime_context().gcs_address)

    def stats(self) -> tuple[int, int, int]:
        """(bytes in use, objects in use, objects created so far)."""
        s = self.reply(self.state).store_stats
        return s.object_store_bytes_used, s.num_local_objects, s.cumulative_created_objects


# --------------------------------------------------------------------------------------------
# The simulated actor and the learner
# --------------------------------------------------------------------------------------------

class SleepWorker:
    """A producer whose work needs no core: each call starts as a MuZero actor's does, asking the weight
    board for a newer version (``pymbrl.distributed.weights.fetch``: one round trip, the state dict only
    when newer), then sleeps ``work`` seconds (the env steps and model calls) and returns ``nbytes`` of
    float32 (a game)."""

    def __init__(self, work: float) -> None:
        self.work, self.version, self.payloads = work, 0, {}

    def produce(self, weights, nbytes: int) -> np.ndarray:
        from pymbrl.distributed.weights import fetch

        newer = fetch(weights, self.version)
        if newer is not None:
            self.version = newer[0]
        time.sleep(self.work)
        if nbytes not in self.payloads:
            self.payloads[nbytes] = np.zeros(nbytes // 4, np.float32)
        return self.payloads[nbytes]


class Learner:
    """The driver's CPU-bound update: an Adam step of a small MLP on a fixed batch; ``publish`` posts the
    weights on the board the actors fetch them from, as ``Actors.publish``."""

    def __init__(self, ray) -> None:
        from pymbrl.distributed.weights import Publisher

        self.publisher = Publisher(ray)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                           torch.nn.ReLU(), torch.nn.Linear(256, 1))
            self.x, self.y = torch.randn(256, 64), torch.randn(256, 1)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-4)
        self.puts, self.put_seconds = 0, 0.0
        self.publish()

    def update(self) -> None:
        self.optimizer.zero_grad()
        torch.nn.functional.mse_loss(self.net(self.x), self.y).backward()
        self.optimizer.step()

    def publish(self) -> None:
        t0 = time.perf_counter()
        # numpy arrays, the bytes of Actors' CPU tensors: unpickling tensors would import torch in every
        # simulated actor (170 MB each, 11 GB for 64).
        self.publisher.publish({k: v.detach().numpy() for k, v in self.net.state_dict().items()})
        self.puts, self.put_seconds = self.puts + 1, self.put_seconds + time.perf_counter() - t0

    def run(self, pool, seconds: float) -> tuple[int, int, float]:
        """Updates for ``seconds``, publishing every PUBLISH_EVERY, taking ``pool``'s finished results
        (None: no actors) between updates: (updates, results, seconds)."""
        updates = results = 0
        t0 = now = time.perf_counter()
        while now - t0 < seconds:
            self.update()
            updates += 1
            if updates % PUBLISH_EVERY == 0:
                self.publish()
            if pool is not None:
                results += len(pool.ready())
            now = time.perf_counter()
        return updates, results, now - t0


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------

@dataclass
class Scale:
    """One row of (b): ``n`` actors."""

    n: int
    startup: float = 0.0
    settle: float = 0.0
    rate: float = 0.0
    cpu: np.ndarray = field(default_factory=lambda: np.zeros(3))
    updates: float = 0.0
    results: float = 0.0
    learning_cpu: np.ndarray = field(default_factory=lambda: np.zeros(3))


@dataclass
class Memory:
    """(c): per sample, seconds, the object store's bytes, objects and objects created so far, the driver's
    resident bytes (all, anonymous) and the Ray processes' together (anonymous, shared memory)."""

    n: int
    samples: list[tuple[float, ...]] = field(default_factory=list)
    kinds: list[dict[str, tuple[int, np.ndarray]]] = field(default_factory=list)
    """:func:`ray_memory` at the first sample and at the last."""
    updates: int = 0
    results: int = 0
    seconds: float = 0.0


class Bench(Run):
    def __init__(self, args) -> None:
        from pymbrl.agents.muzero import MuZeroConfig, make_env
        from pymbrl.models.muzero import make_network

        self.args = args
        self.config = MuZeroConfig.for_env(ENV_ID, num_envs=NUM_ENVS, seed=0)
        env = make_env(self.config)
        self.obs_space, self.num_actions = env.observation_space, int(env.action_space.n)
        c = self.config
        self.network = make_network(self.obs_space.shape, self.num_actions, hidden_size=c.hidden_size,
                                    latent_size=c.latent_size, support_size=c.support_size)
        self.selfplay: dict[int, tuple[float, float, float, np.ndarray]] = {}
        """Actors (0: single process) -> (startup s, settle s, env steps/s, cores used: see :func:`timed`)."""
        self.ray_settle = 0.0
        self.rows: list[Scale] = []
        self.idle_updates: list[float] = []
        """The learner's updates/s with no actors, before (b)'s pools and after them."""
        self.memory: Memory | None = None
        self.nbytes = GAME_BYTES

    def buffer(self):
        """A game buffer as ``muzero.train`` makes it."""
        from pymbrl.replay import GameBuffer

        c = self.config
        return GameBuffer(c.buffer_size, self.obs_space.shape, self.num_actions, obs_dtype=self.obs_space.dtype,
                          unroll_steps=c.unroll_steps, td_steps=c.td_steps, discount=c.discount,
                          prioritized=c.prioritized, alpha=c.priority_alpha, beta=c.priority_beta, seed=c.seed)

    # (a) ------------------------------------------------------------------------------------

    def single_process(self) -> tuple[float, float, float, np.ndarray]:
        from pymbrl.agents.muzero import make_env
        from pymbrl.agents.muzero_selfplay import Searcher, SelfPlay

        c = self.config
        play = SelfPlay([make_env(c) for _ in range(c.num_envs)], c.seed)
        searcher, buffer = Searcher(self.network, c, play.two_player, c.seed + 1), self.buffer()

        def move() -> int:
            play.step(searcher, buffer, 1.0)
            return c.num_envs

        for _ in range(WARMUP_MOVES):
            move()
        return (0.0, 0.0, *timed(move, self.args.seconds))

    def actors(self, n: int) -> tuple[float, float, float, np.ndarray]:
        from pymbrl.agents.muzero_actors import Actors, SelfPlayWorker

        buffer = self.buffer()
        t0 = time.perf_counter()
        group = Actors(dataclasses.replace(self.config, actors=n), self.network, buffer)
        try:
            def take() -> int:
                return group.next(buffer, 1.0)[1]

            for _ in range(INFLIGHT * n):  # the first calls: actors starting, importing, fetching the weights
                take()
            startup = time.perf_counter() - t0
            settled = settle(take, self.args.settle_cap)
            return startup, settled, *timed(take, self.args.seconds, SelfPlayWorker.__name__)
        finally:
            group.close()

    # (b) and (c) ----------------------------------------------------------------------------

    def call(self, i: int) -> tuple[str, dict]:
        return "produce", {"weights": self.learner.publisher.board, "nbytes": self.nbytes}

    def scale(self, n: int) -> Scale:
        from pymbrl.distributed.pool import ProducerPool

        row = Scale(n)
        t0 = time.perf_counter()
        pool = ProducerPool(SleepWorker, lambda i, r: (self.args.work,), n, self.call, inflight=INFLIGHT)
        try:
            answered: set[int] = set()
            while len(answered) < n:
                answered.add(pool.next()[0])
            row.startup = time.perf_counter() - t0
            row.settle = settle(pool.next, self.args.settle_cap)

            def take() -> int:
                pool.next()
                return 1

            row.rate, row.cpu = timed(take, self.args.seconds, SleepWorker.__name__)
            cpu = cpu_seconds(SleepWorker.__name__)
            updates, results, seconds = self.learner.run(pool, self.args.seconds)
            row.updates, row.results = updates / seconds, results / seconds
            row.learning_cpu = (cpu_seconds(SleepWorker.__name__) - cpu) / seconds
            if n == self.args.memory_actors:
                self.memory = self.watch(pool, n)
        finally:
            pool.close()
        return row

    def watch(self, pool, n: int) -> Memory:
        memory = Memory(n)
        self.nbytes = STORE_BYTES
        try:
            t0 = time.perf_counter()
            while True:
                elapsed = time.perf_counter() - t0
                kinds = ray_memory()
                ray_processes = sum(total for _, total in kinds.values())
                memory.samples.append((elapsed, *self.store.stats(), *resident()[:2], *ray_processes[1:]))
                memory.kinds[1:] = [kinds]  # the first sample's and the latest
                if elapsed >= self.args.minutes * 60:
                    return memory
                updates, results, seconds = self.learner.run(pool, min(SAMPLE_EVERY, self.args.minutes * 60 - elapsed))
                memory.updates += updates
                memory.results += results
                memory.seconds += seconds
                if len(memory.samples) % 12 == 0:
                    self.log(f"(c) {elapsed / 60:.1f} of {self.args.minutes:g} minutes")
        finally:
            self.nbytes = GAME_BYTES

    def idle(self) -> None:
        settle(lambda: time.sleep(0.2), self.args.settle_cap)  # workers Ray starts after actors end
        updates, _, seconds = self.learner.run(None, self.args.seconds)
        self.idle_updates.append(updates / seconds)
        self.log(f"(b) learner alone: {self.idle_updates[-1]:,.1f} updates/s")

    # ----------------------------------------------------------------------------------------

    def run(self) -> None:
        from pymbrl.distributed.pool import ray_module

        ray = ray_module()
        self.t0 = time.perf_counter()
        self.selfplay[0] = self.single_process()
        self.log(f"(a) single process: {self.selfplay[0][2]:,.0f} env steps/s")
        # As pymbrl.distributed.cluster.connect, with a CPU per simulated actor: actors import this pymbrl.
        path = os.pathsep.join(p for p in sys.path if p)
        ray.init(address="local", num_cpus=RAY_CPUS, include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
        try:
            self.ray_settle = settle(lambda: time.sleep(0.2), self.args.settle_cap)
            self.log(f"Ray up, settled in {self.ray_settle:.0f} s")
            for n in SELFPLAY_ACTORS:
                self.selfplay[n] = self.actors(n)
                self.log(f"(a) {n} actor(s): {self.selfplay[n][2]:,.0f} env steps/s")
            self.store, self.learner = ObjectStore(ray), Learner(ray)
            self.weight_bytes = sum(p.numel() * p.element_size() for p in self.learner.net.parameters())
            self.idle()
            for n in self.args.sizes:
                row = self.scale(n)
                self.rows.append(row)
                self.log(f"(b) {n} actors: {row.rate:,.1f} results/s ({row.rate * self.args.work / n:.1%} of ideal), "
                         f"{row.updates:,.1f} updates/s")
            self.idle()
        finally:
            ray.shutdown()
        self.runtime = time.perf_counter() - self.t0


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def cores(cpu: np.ndarray) -> str:
    """Cores used: driver / actors / rest of Ray."""
    return " / ".join(f"{c:.2f}" for c in cpu)


def selfplay_lines(bench: Bench) -> list[str]:
    base = bench.selfplay[0][2]
    lines = [("| run | startup s | settle s | env steps/s | over single process | cores used: driver / actors / "
             "rest of Ray |"), "|---|---:|---:|---:|---:|---:|"]
    for n, (startup, settled, rate, cpu) in sorted(bench.selfplay.items()):
        run = "single process (`SelfPlay.step` loop)" if n == 0 else f"{n} actor{'s' if n > 1 else ''} (`Actors.next`)"
        times = f"{NA} | {NA}" if n == 0 else f"{startup:.1f} | {settled:.1f}"
        lines.append(f"| {run} | {times} | {rate:,.0f} | {ratio(rate, base)} | {cores(cpu)} |")
    return lines


def idle_rate(bench: Bench) -> float:
    """The learner's updates/s with no actors: the mean of before and after (b)'s pools."""
    return float(np.mean(bench.idle_updates))


def scale_lines(bench: Bench) -> list[str]:
    work, idle = bench.args.work, idle_rate(bench)
    one = next((r.rate for r in bench.rows if r.n == 1), None)
    before_after = " / ".join(f"{u:,.1f}" for u in bench.idle_updates)
    lines = [("| actors | startup s | settle s | results/s | % of ideal N / work | % of N x 1-actor rate | cores "
              "used | learner updates/s | over no actors | results/s while learning | cores used while learning |"),
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| 0 | {NA} | {NA} | {NA} | {NA} | {NA} | {NA} | {before_after} (before / after) | 1.00x | {NA} | {NA} |"]
    for r in bench.rows:
        vs_one = NA if one is None else f"{r.rate / (r.n * one):.1%}"
        lines.append(f"| {r.n} | {r.startup:.1f} | {r.settle:.1f} | {r.rate:,.1f} | {r.rate * work / r.n:.1%} | "
                     f"{vs_one} | {cores(r.cpu)} | {r.updates:,.1f} | {ratio(r.updates, idle)} | {r.results:,.1f} | "
                     f"{cores(r.learning_cpu)} |")
    return lines


def target_line(bench: Bench) -> list[str]:
    row = next((r for r in bench.rows if r.n == TARGET_ACTORS), None)
    if row is None:
        return []
    share = row.rate * bench.args.work / row.n
    return [(f"**{TARGET_ACTORS} actors: {share:.1%} of the ideal throughput**; the issue's target of at least "
            f"{TARGET:.0%} is **{'met' if share >= TARGET else 'not met'}**.")]


def slope(t: np.ndarray, v: np.ndarray) -> float:
    """Least-squares change of ``v`` per minute of ``t`` (seconds)."""
    return float(np.polyfit(t / 60, v, 1)[0]) if len(t) > 1 else 0.0


def memory_lines(bench: Bench) -> list[str]:
    m = bench.memory
    s = np.array(m.samples, dtype=np.float64)
    t = s[:, 0]
    columns = {"store MiB": s[:, 1] / MIB, "store objects": s[:, 2], "driver RSS MiB": s[:, 4] / MIB,
               "driver anon MiB": s[:, 5] / MIB, "Ray anon MiB": s[:, 6] / MIB, "Ray shm MiB": s[:, 7] / MIB}
    lines = [(f"{m.n} actors for {t[-1] / 60:.2f} minutes, {len(t)} samples every {SAMPLE_EVERY:g} s; the learner "
              f"loop of (b) ran {m.updates / m.seconds:,.1f} updates/s and took {m.results / m.seconds:,.1f} "
              f"results/s of {STORE_BYTES // 1024} KB ({m.results * STORE_BYTES / MIB / m.seconds:,.1f} MiB/s "
              f"through the object store); objects created in the store meanwhile: {int(s[-1, 3] - s[0, 3]):,}."), "",
             "| quantity | start | end | max | slope per minute | slope per minute, second half |",
             "|---|---:|---:|---:|---:|---:|"]
    half = t >= t[-1] / 2
    for name, v in columns.items():
        lines.append(f"| {name} | {v[0]:,.1f} | {v[-1]:,.1f} | {v.max():,.1f} | {slope(t, v):+,.2f} | "
                     f"{slope(t[half], v[half]):+,.2f} |")
    shown = np.unique(np.linspace(0, len(t) - 1, min(len(t), 11)).round().astype(int))
    lines += ["", "Samples (evenly picked):", "", "| minute | " + " | ".join(columns) + " |",
              "|---:|" + "---:|" * len(columns)]
    for i in shown:
        lines.append(f"| {t[i] / 60:.2f} | " + " | ".join(f"{v[i]:,.1f}" for v in columns.values()) + " |")
    first, last = m.kinds[0], m.kinds[-1]
    lines += ["", "Ray anon MiB by kind of process, first sample -> last: " + "; ".join(
        f"{kind} x{last[kind][0]} {first[kind][1][1] / MIB:,.1f} -> {last[kind][1][1] / MIB:,.1f}"
        for kind in sorted(set(first) & set(last), key=lambda k: -last[k][1][1])) + "."]
    return lines


def report(bench: Bench, argv: list[str], load_before: str) -> str:
    a, c = bench.args, bench.config
    cpus = os.cpu_count()
    lines = header("Distribution on Ray: self-play actors, coordination overhead, memory", "bench_distributed.py",
                   argv, load_before, machine_note="; `torch.set_num_threads(1)` in the driver and the actors",
                   runtime=bench.runtime)
    lines += [
        (f"- ray {version('ray')}, gymnasium {version('gymnasium')}; one local Ray (`ray.init(num_cpus={RAY_CPUS})`) "
        f"for (a) and (b), settled {bench.ray_settle:.0f} s after it started"),
        (f"- **This machine has {cpus} logical CPUs**: in (a) the actors, the driver and Ray's own processes share "
        f"them, so {max(SELFPLAY_ACTORS)} actors can at best reach {min(max(SELFPLAY_ACTORS), cpus)}x one process; "
        f"(b) and (c) need no cores for the actors' work."),
        (f"- Startup: from creating the actors to their first calls back. Settle: then, results still taken, until "
        f"none of this driver's Ray worker processes had been starting for {QUIET:g} s (at most {a.settle_cap:g} "
        f"s): Ray keeps starting workers after the actors answer, which starves a small machine. The timed "
        f"windows ({a.seconds:g} s each) start after it. Cores used: CPU seconds per second during the window, "
        f"from `/proc`, as driver / actors / rest of Ray (GCS, raylet, agents, the weight board, idle workers)."),
        "",
        f"### (a) MuZero self-play, {ENV_ID}",
        "",
        (f"`MuZeroConfig.for_env(\"{ENV_ID}\", num_envs={c.num_envs})`: {c.search} search, {c.num_simulations} "
        f"simulations, support {c.support_size}, {c.num_envs} envs per process or actor, an actor's call "
        f"{c.actor_moves} moves ({c.actor_moves * c.num_envs} env steps), {INFLIGHT} calls in flight per actor. "
        f"The learner is idle: the driver only stores the games in its buffer. Untrained network (torch's default "
        f"initialisation), temperature 1. The driver's process runs no self-play with actors."),
        "",
        *selfplay_lines(bench),
        "",
        "### (b) Coordination overhead on a simulated workload",
        "",
        (f"Each actor's call sleeps {a.work:g} s (its env steps and model calls) and returns {GAME_BYTES // 1024} KB; "
        f"`ProducerPool` with {INFLIGHT} calls in flight per actor, results taken by `next()`. Then the learner "
        f"for {a.seconds:g} s: an Adam step of a 64-256-256-1 MLP on a batch of 256 per update, the weights "
        f"published on the board every {PUBLISH_EVERY} updates (`pymbrl.distributed.weights.Publisher`, as "
        f"`Actors.publish`; each call first asks the board for a newer version and fetches it if there is one, as "
        f"a MuZero actor does), finished results taken by `ready()` between updates. One update takes "
        f"{1e3 / idle_rate(bench):.2f} ms alone; one `Publisher.publish` of the weights "
        f"({bench.weight_bytes / 1024:,.0f} KB) {1e3 * bench.learner.put_seconds / bench.learner.puts:.2f} ms "
        f"(mean of {bench.learner.puts:,})."),
        "",
        *scale_lines(bench),
    ]
    target = target_line(bench)
    if target:
        lines += ["", *target]
    lines += ["", "### (c) Object store and driver memory over time", "", *memory_lines(bench), "",
              ("Object store figures from `ray._private.internal_api.get_memory_info_reply` (what `ray memory "
              "--stats-only` prints; Ray 2.60's public `ray.available_resources()[\"object_store_memory\"]` follows "
              "the bytes about a second late and counts no objects). "
              "Store: the object store's bytes and objects in use. Resident memory from `/proc/<pid>/status`: "
              "driver RSS (VmRSS) and anon (RssAnon: its own heap, where a leak would show); Ray: the sums over "
              "everything this driver started (GCS, raylet, agents, workers) of anon and shm (RssShmem: the object "
              "store's pages each process has touched, counted once per process; it grows while the store's "
              "allocator reaches pages not touched before).")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "actor counts 1,8, 4 s windows, (c) 0.25 minutes on 8 actors, settles of at "
                                   "most 15 s")
    parser.add_argument("--sizes", default=None, help="comma-separated actor counts of (b) (default 1,2,4,8,16,32,64)")
    parser.add_argument("--work", type=float, default=0.25, help="seconds a simulated call sleeps (default 0.25)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds of each timed window (default 10)")
    parser.add_argument("--minutes", type=float, default=None, help="minutes of (c) (default 1, 0.25 with --quick)")
    parser.add_argument("--memory-actors", type=int, default=None,
                        help="actors of (c), one of --sizes (default 32, 8 with --quick)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
            [1, 8] if args.quick else [1, 2, 4, 8, 16, 32, 64])
    except ValueError:
        parser.error(f"--sizes: expected comma-separated integers, got {args.sizes!r}")
    args.seconds = args.seconds or (4.0 if args.quick else 10.0)
    args.minutes = args.minutes or (0.25 if args.quick else 1.0)
    args.memory_actors = args.memory_actors or (8 if args.quick else 32)
    args.settle_cap = 15.0 if args.quick else SETTLE_CAP
    if min(args.sizes) < 1 or max(args.sizes) > RAY_CPUS or args.work <= 0 or args.seconds <= 0 or args.minutes <= 0:
        parser.error(f"--sizes must lie in 1..{RAY_CPUS}; --work, --seconds and --minutes must be > 0")
    if args.memory_actors not in args.sizes:
        parser.error(f"--memory-actors {args.memory_actors}: (c) runs on one of (b)'s pools, --sizes {args.sizes}")
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    run_and_publish(Bench(args), report, argv, output, SECTION)


if __name__ == "__main__":
    main()
