"""Benchmark distribution on Ray: real self-play actors, coordination overhead up to 64 actors, memory over time.

Measures, in one run on one machine:

(a) MuZero self-play env steps per second on CartPole-v1 through ``pymbrl.agents.muzero_actors.Actors``
    with 1 and 2 self-play actors (the learner idle: the driver only stores the games that come back,
    ``Actors.next`` in a loop), against the same config's single-process loop of
    ``pymbrl.agents.muzero_selfplay.SelfPlay.step`` (what ``muzero.train`` runs with ``actors=0``).
    Config: ``MuZeroConfig.for_env("CartPole-v1", num_envs=16)`` (its preset: Gumbel search, 25
    simulations, support 20), ``actor_moves`` 8, so an actor's call plays 8 moves x 16 envs = 128 env
    steps. With as many actors as cores, the driver, Ray's processes and the actors share the cores.
(b) Coordination overhead of ``pymbrl.distributed.pool.ProducerPool`` on a simulated workload that needs
    no cores: each actor's call (its env steps and model calls) is a ``time.sleep(--work)`` that returns
    a game-sized payload (16 KB of float32), two calls in flight per actor as ``Actors`` keeps them, on a
    local Ray started with ``num_cpus=64`` (one logical CPU per actor, whatever the machine has).
    Results per second taken by ``ProducerPool.next`` against the ideal N / work and against N times the
    1-actor rate (the issue's target: at least 90% at 32 actors). Then the learner: the driver runs a
    fixed CPU-bound update (an Adam step of a 64-256-256-1 MLP on a batch of 256, one thread),
    publishes the weights (``ray.put`` of the state dict, the newest reference carried by every call,
    as ``Actors.publish`` does) every 10 updates and takes the results that are back
    (``ProducerPool.ready``) between updates; its updates per second with N actors against none.
    The simulated actors do not fetch the weights: that would need cores (on a cluster, theirs), and
    this part measures what the driver pays.
(c) Memory over time while (b)'s pool of ``--memory-actors`` actors runs that learner loop for
    ``--minutes``, its results now 256 KB (above Ray's 100 KB limit for inlining a return value, so
    every result passes through the object store, as a pixel rollout would): every few seconds the
    object store's bytes and objects in use (Ray 2.60 has no public call for them: the private
    ``ray._private.internal_api.get_memory_info_reply``, what ``ray memory --stats-only`` prints), the
    driver's resident memory (``/proc/self/status``) and that of all the Ray processes this driver
    started (raylet, GCS, workers; shared pages counted once per process); start, end, max and the
    least-squares slope per minute.

Measured pitfall: Ray keeps starting worker processes for a while after the actors first answer (and
after ``ray.init``); on a small machine that starves the driver and the actors (32 actors measured
70% of ideal instead of 99.9% before it ended). So every measurement waits, still taking results,
until none of this driver's Ray worker processes has been starting (its command line still
``default_worker.py``: a worker renames itself ``ray::...`` once up) for 5 seconds, at most
``SETTLE_CAP`` seconds; the table reports how long that took. Windows count from a first result to
the last one (no call cut in two).

Everything in the driver runs with ``torch.set_num_threads(1)``, as the actors do.

It prints a markdown report and writes it into ``bench/RESULTS.md`` between the markers
``<!-- distributed:begin -->`` and ``<!-- distributed:end -->``, keeping the rest of that file.
Needs ray (``pip install 'pymbrl[ray]'``; measured with ray 2.60.0).

Usage::

    make bench                                      # or:
    python bench/bench_distributed.py               # full run, about 8 minutes on a 2-core VM, (c) 1 minute
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
"""Learner updates between two ``ray.put`` of the weights."""
RAY_CPUS = 64
QUIET, SETTLE_CAP = 5.0, 60.0
"""Seconds with no Ray worker process starting that end a settle phase; the most it may take."""
SAMPLE_EVERY = 5.0
"""Seconds between two memory samples in (c)."""
TARGET_ACTORS, TARGET = 32, 0.9
MIB = 2**20
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
    """This driver's Ray worker processes still starting (not yet renamed ``ray::...``)."""
    n = 0
    for pid in descendants():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                n += b"default_worker.py" in f.read()
        except OSError:
            pass
    return n


def rss(pid: int | str = "self") -> int:
    """Resident bytes of a process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


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


def timed(take, seconds: float) -> float:
    """Items per second of ``take()`` (each returns how many it got) over about ``seconds``, from a first
    arrival to the last, so that the window cuts no call in two."""
    take()
    t0 = now = time.perf_counter()
    count = 0
    while now - t0 < seconds:
        count += take()
        now = time.perf_counter()
    return count / (now - t0)


class ObjectStore:
    """The object store's use across the cluster, from the private call behind ``ray memory --stats-only``
    (``ray.available_resources()["object_store_memory"]`` is the capacity: it does not move)."""

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
    """A producer that needs no core: each call sleeps ``work`` seconds (a real actor's env steps and model
    calls) and returns ``nbytes`` of float32 (a game). It takes the weights' reference as ``Actors``'
    calls carry it but does not fetch them."""

    def __init__(self, work: float) -> None:
        self.work, self.payloads = work, {}

    def produce(self, weights: tuple, nbytes: int) -> np.ndarray:
        time.sleep(self.work)
        if nbytes not in self.payloads:
            self.payloads[nbytes] = np.zeros(nbytes // 4, np.float32)
        return self.payloads[nbytes]


class Learner:
    """The driver's CPU-bound update: an Adam step of a small MLP on a fixed batch; ``publish`` puts the
    weights in the object store and keeps only the newest reference, as ``Actors.publish``."""

    def __init__(self, ray) -> None:
        self.ray = ray
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                           torch.nn.ReLU(), torch.nn.Linear(256, 1))
            self.x, self.y = torch.randn(256, 64), torch.randn(256, 1)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-4)
        self.version = 0
        self.publish()

    def update(self) -> None:
        self.optimizer.zero_grad()
        torch.nn.functional.mse_loss(self.net(self.x), self.y).backward()
        self.optimizer.step()

    def publish(self) -> None:
        self.version += 1
        self.weights = (self.version, [self.ray.put({k: v.detach() for k, v in self.net.state_dict().items()})])

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
    updates: float = 0.0
    results: float = 0.0


@dataclass
class Memory:
    """(c): one (seconds, store bytes, store objects, objects created, driver RSS, Ray processes' RSS) per sample."""

    n: int
    samples: list[tuple[float, int, int, int, int, int]] = field(default_factory=list)
    updates: int = 0
    results: int = 0
    seconds: float = 0.0


class Bench(Run):
    def __init__(self, args) -> None:
        from pymbrl.agents.muzero import MuZeroConfig, make_env
        from pymbrl.models.muzero import make_network

        self.args, self.libs = args, {}
        self.config = MuZeroConfig.for_env(ENV_ID, num_envs=NUM_ENVS, seed=0)
        env = make_env(self.config)
        self.obs_space, self.num_actions = env.observation_space, int(env.action_space.n)
        c = self.config
        self.network = make_network(self.obs_space.shape, self.num_actions, hidden_size=c.hidden_size,
                                    latent_size=c.latent_size, support_size=c.support_size)
        self.selfplay: dict[int, tuple[float, float, float]] = {}
        """Actors (0: single process) -> (startup s, settle s, env steps/s)."""
        self.ray_settle = 0.0
        self.rows: list[Scale] = []
        self.idle_updates = 0.0
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

    def single_process(self) -> float:
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
        return timed(move, self.args.seconds)

    def actors(self, n: int) -> tuple[float, float, float]:
        from pymbrl.agents.muzero_actors import Actors

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
            return startup, settled, timed(take, self.args.seconds)
        finally:
            group.close()

    # (b) and (c) ----------------------------------------------------------------------------

    def call(self, i: int) -> tuple[str, dict]:
        return "produce", {"weights": self.learner.weights, "nbytes": self.nbytes}

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

            row.rate = timed(take, self.args.seconds)
            updates, results, seconds = self.learner.run(pool, self.args.seconds)
            row.updates, row.results = updates / seconds, results / seconds
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
                ray_rss = sum(rss(pid) for pid in descendants())
                memory.samples.append((elapsed, *self.store.stats(), rss(), ray_rss))
                if elapsed >= self.args.minutes * 60:
                    return memory
                updates, results, seconds = self.learner.run(pool, min(SAMPLE_EVERY, self.args.minutes * 60 - elapsed))
                memory.updates, memory.results, memory.seconds = (memory.updates + updates, memory.results + results,
                                                                  memory.seconds + seconds)
                if len(memory.samples) % 12 == 0:
                    self.log(f"(c) {elapsed / 60:.1f} of {self.args.minutes:g} minutes")
        finally:
            self.nbytes = GAME_BYTES

    # ----------------------------------------------------------------------------------------

    def run(self) -> None:
        from pymbrl.distributed.pool import ray_module

        ray = ray_module()
        self.t0 = time.perf_counter()
        self.selfplay[0] = (0.0, 0.0, self.single_process())
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
            self.idle_updates = self.learner.run(None, self.args.seconds)[0] / self.args.seconds
            self.log(f"(b) learner alone: {self.idle_updates:,.1f} updates/s")
            for n in self.args.sizes:
                row = self.scale(n)
                self.rows.append(row)
                self.log(f"(b) {n} actors: {row.rate:,.1f} results/s ({row.rate * self.args.work / n:.1%} of ideal), "
                         f"{row.updates:,.1f} updates/s")
        finally:
            ray.shutdown()
        self.runtime = time.perf_counter() - self.t0


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def selfplay_lines(bench: Bench) -> list[str]:
    base = bench.selfplay[0][2]
    lines = ["| run | startup s | settle s | env steps/s | over single process |", "|---|---:|---:|---:|---:|",
             f"| single process (`SelfPlay.step` loop) | {NA} | {NA} | {base:,.0f} | 1.00x |"]
    for n in SELFPLAY_ACTORS:
        startup, settled, rate = bench.selfplay[n]
        lines.append(f"| {n} actor{'s' if n > 1 else ''} (`Actors.next` loop) | {startup:.1f} | {settled:.1f} | "
                     f"{rate:,.0f} | {ratio(rate, base)} |")
    return lines


def scale_lines(bench: Bench) -> list[str]:
    work = bench.args.work
    one = next((r.rate for r in bench.rows if r.n == 1), None)
    lines = [("| actors | startup s | settle s | results/s | ideal N / work | % of ideal | % of N x 1-actor rate | "
             "learner updates/s | over no actors | results/s while learning |"),
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| 0 | {NA} | {NA} | {NA} | {NA} | {NA} | {NA} | {bench.idle_updates:,.1f} | 1.00x | {NA} |"]
    for r in bench.rows:
        vs_one = NA if one is None else f"{r.rate / (r.n * one):.1%}"
        lines.append(f"| {r.n} | {r.startup:.1f} | {r.settle:.1f} | {r.rate:,.1f} | {r.n / work:,.1f} | "
                     f"{r.rate * work / r.n:.1%} | {vs_one} | {r.updates:,.1f} | "
                     f"{ratio(r.updates, bench.idle_updates)} | {r.results:,.1f} |")
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
    rows = [("object store in use, MiB", s[:, 1] / MIB), ("object store objects", s[:, 2]),
            ("driver RSS, MiB", s[:, 4] / MIB), ("Ray processes' RSS, MiB", s[:, 5] / MIB)]
    lines = [(f"{m.n} actors for {t[-1] / 60:.1f} minutes, {len(t)} samples every {SAMPLE_EVERY:g} s; the learner "
             f"loop of (b) ran {m.updates / m.seconds:,.1f} updates/s and took {m.results / m.seconds:,.1f} "
             f"results/s of {STORE_BYTES // 1024} KB ({m.results * STORE_BYTES / MIB / m.seconds:,.1f} MiB/s through "
             f"the object store); objects created in the store meanwhile: {int(s[-1, 3] - s[0, 3]):,}."), "",
             "| quantity | start | end | max | slope per minute |", "|---|---:|---:|---:|---:|"]
    for name, v in rows:
        lines.append(f"| {name} | {v[0]:,.1f} | {v[-1]:,.1f} | {v.max():,.1f} | {slope(t, v):+,.2f} |")
    shown = np.unique(np.linspace(0, len(t) - 1, min(len(t), 11)).round().astype(int))
    lines += ["", "Samples (evenly picked):", "", ("| minute | store MiB | store objects | driver RSS MiB | "
              "Ray processes' RSS MiB |"), "|---:|---:|---:|---:|---:|"]
    for i in shown:
        lines.append(f"| {t[i] / 60:.2f} | {s[i, 1] / MIB:,.1f} | {s[i, 2]:,.0f} | {s[i, 4] / MIB:,.1f} | "
                     f"{s[i, 5] / MIB:,.1f} |")
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
        f"windows ({a.seconds:g} s each) start after it."),
        "",
        f"### (a) MuZero self-play, {ENV_ID}",
        "",
        (f"`MuZeroConfig.for_env(\"{ENV_ID}\", num_envs={c.num_envs})`: {c.search} search, {c.num_simulations} "
        f"simulations, support {c.support_size}, {c.num_envs} envs per process or actor, an actor's call "
        f"{c.actor_moves} moves ({c.actor_moves * c.num_envs} env steps), {INFLIGHT} calls in flight per actor. "
        f"The learner is idle: the driver only stores the games in its buffer. Untrained network (torch's default "
        f"initialisation), temperature 1."),
        "",
        *selfplay_lines(bench),
        "",
        "### (b) Coordination overhead on a simulated workload",
        "",
        (f"Each actor's call sleeps {a.work:g} s (its env steps and model calls) and returns {GAME_BYTES // 1024} KB; "
        f"`ProducerPool` with {INFLIGHT} calls in flight per actor, results taken by `next()`. Then the learner "
        f"for {a.seconds:g} s: an Adam step of a 64-256-256-1 MLP on a batch of 256 per update, the weights "
        f"`ray.put` every {PUBLISH_EVERY} updates (every call carries the newest reference; the simulated actors "
        f"do not fetch it), finished results taken by `ready()` between updates."),
        "",
        *scale_lines(bench),
    ]
    target = target_line(bench)
    if target:
        lines += ["", *target]
    lines += ["", "### (c) Object store and driver memory over time", "", *memory_lines(bench), "",
              ("Object store figures from `ray._private.internal_api.get_memory_info_reply` (Ray 2.60 has no public "
              "call for the bytes in use; `ray.available_resources()[\"object_store_memory\"]` is the capacity). "
              "RSS from `/proc/<pid>/status`; the Ray processes are everything this driver started (GCS, raylet, "
              "agents, workers), the store's shared pages counted in each process that touched them.")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "actor counts 1,4,16, 4 s windows, (c) 0.5 minutes on 16 actors, settles of at "
                                   "most 15 s")
    parser.add_argument("--sizes", default=None, help="comma-separated actor counts of (b) (default 1,2,4,8,16,32,64)")
    parser.add_argument("--work", type=float, default=0.25, help="seconds a simulated call sleeps (default 0.25)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds of each timed window (default 10)")
    parser.add_argument("--minutes", type=float, default=None, help="minutes of (c) (default 1, 0.5 with --quick)")
    parser.add_argument("--memory-actors", type=int, default=None,
                        help="actors of (c), one of --sizes (default 32, 16 with --quick)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
            [1, 4, 16] if args.quick else [1, 2, 4, 8, 16, 32, 64])
    except ValueError:
        parser.error(f"--sizes: expected comma-separated integers, got {args.sizes!r}")
    args.seconds = args.seconds or (4.0 if args.quick else 10.0)
    args.minutes = args.minutes or (0.5 if args.quick else 1.0)
    args.memory_actors = args.memory_actors or (16 if args.quick else 32)
    args.settle_cap = 15.0 if args.quick else SETTLE_CAP
    if min(args.sizes) < 1 or max(args.sizes) > RAY_CPUS or args.work <= 0 or args.seconds <= 0 or args.minutes <= 0:
        parser.error(f"--sizes must lie in 1..{RAY_CPUS}; --work, --seconds and --minutes must be > 0")
    if args.memory_actors not in args.sizes:
        parser.error(f"--memory-actors {args.memory_actors}: (c) runs on one of (b)'s pools, --sizes {args.sizes}")
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    run_and_publish(Bench(args), report, argv, output, SECTION)


if __name__ == "__main__":
    main()
