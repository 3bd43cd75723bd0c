"""Benchmark MuZero self-play throughput: pymbrl's agent loop against a LightZero-style loop on its compiled tree.

Measures, in one process, env steps per second (N envs x moves / seconds) of MuZero self-play on
CartPole-v1 with N = 16 gymnasium envs stepped together and S = 50 simulations per move. Both
drivers use the same network object -- ``pymbrl.models.muzero.MuZeroNetwork(4, 2, hidden_size=64,
latent_size=32, support_size=20)`` built under torch seed 0, in eval mode -- and the same search
settings: Dirichlet noise alpha 0.25 / fraction 0.25 at the roots, pUCT 1.25 / 19652, discount
0.997, the action drawn from the root visit counts at temperature 1. One move is, for all N envs at
once: initial inference on the N observations, one batched search, the actions, the env steps
(finished games are reset), and what a game buffer needs (root values, visit distributions).

- pymbrl: the agent's own self-play step, ``pymbrl.agents.muzero_selfplay.SelfPlay.step`` (what ``train``
  calls once per move before training): the ``Searcher`` (built from a ``MuZeroConfig``; it runs
  ``mcts.muzero_policy`` with the latents in a torch embedding pool and the tree in C++), the env
  steps, and finished games into a ``GameBuffer`` (with the network's value of a cut game's last
  observation).
- LightZero 0.2.0: its compiled ``ctree_muzero`` (``mz_tree``), driven per move as its MuZero
  collector and ``MuZeroMCTSCtree.search`` drive it: initial inference, latents to numpy, root
  values decoded, ``np.random.dirichlet`` noise per root, ``Roots`` + ``prepare``; per simulation a
  ``ResultsWrapper``, ``batch_traverse`` (C++), the leaves' parent latents gathered one by one from
  the Python list of per-simulation numpy arrays, the network's ``recurrent_inference`` on the
  batch (torch and back to numpy), value and reward decoded to scalars with the inverse of the
  categorical transform, ``tolist`` and ``batch_backpropagate`` (C++); then ``get_distributions`` /
  ``get_values``, an action per env drawn from its visit counts at the temperature
  (``np.random.choice``, as its ``select_action``), and a per-env game segment (observation,
  action, reward, normalised visit distribution, root value) handed to a list at the end of a game.

Each repeat starts both drivers afresh (envs reset with the same seeds, new games), plays a few
warm-up moves and then times a fixed number of moves; the drivers are interleaved (their order
rotating) so that a burst of load on the machine hits both; the table shows medians. A separate,
instrumented pass afterwards splits each driver's time into network (forward passes and the
decoding of values and rewards), tree (time inside the compiled search), env (``step`` and
``reset``) and the rest (Python glue, conversions, noise and action draws, bookkeeping).

Everything runs with ``torch.set_num_threads(1)``; pymbrl's search runs on the thread count it
picks itself for 16 roots (one on this machine, reported).

It prints a markdown report and writes it into ``bench/RESULTS.md`` between the markers
``<!-- selfplay:begin -->`` and ``<!-- selfplay:end -->``, keeping the rest of that file.

Usage::

    make bench                               # or, with the peers installed (see the Makefile):
    python bench/bench_selfplay.py           # full run, about 2 minutes on a 2-core VM
    python bench/bench_selfplay.py --quick   # smoke test; writes no file unless --output is given
    python bench/bench_selfplay.py --quick --libs pymbrl
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from _report import DEFAULT_OUTPUT, Run, bench_parser, header, names, rotated, run_and_publish, short, spread, version

torch.set_num_threads(1)

SECTION = "selfplay"
CLI_NAMES = {"pymbrl": "pymbrl", "lightzero": "LightZero"}
"""``--libs`` name -> driver (column) name."""
PYMBRL, LIGHTZERO = CLI_NAMES.values()
ENV_ID = "CartPole-v1"
N, S = 16, 50
"""Envs stepped together, simulations per move."""
OBS_DIM, A = 4, 2
HIDDEN, LATENT, SUPPORT = 64, 32, 20
ALPHA, FRACTION = 0.25, 0.25
PB_C_INIT, PB_C_BASE = 1.25, 19652
DISCOUNT = 0.997
TEMPERATURE = 1.0
LZ_VALUE_DELTA_MAX = 0.01
"""LightZero's default ``value_delta_max`` for its min-max statistics."""
TARGET = 3.0
"""The issue's target: pymbrl at least this many times LightZero's env steps per second."""
WARMUP_MOVES = 5
PEERS_DIR = Path(__file__).resolve().parent.parent / "build" / "peers"
"""Where ``make bench`` extracts LightZero's compiled trees (``lzero/mcts/ctree``), as bench_mcts.py."""
BUCKETS = ("network", "tree", "env")
NA = "—"


def make_network() -> torch.nn.Module:
    """The network both drivers use: torch seed 0 (the global generator left as it was), eval mode."""
    from pymbrl.models.muzero import MuZeroNetwork

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        network = MuZeroNetwork(OBS_DIM, A, hidden_size=HIDDEN, latent_size=LATENT, support_size=SUPPORT)
    return network.eval()


# --------------------------------------------------------------------------------------------
# Instrumentation for the breakdown pass (the timed repeats run without any of it)
# --------------------------------------------------------------------------------------------

class Clock:
    """Seconds per bucket, added up by the wrappers below."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(BUCKETS, 0.0)

    def wrap(self, fn: Callable, bucket: str) -> Callable:
        seconds, clock = self.seconds, time.perf_counter

        def timed(*args, **kwargs):
            t = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[bucket] += clock() - t

        return timed


class TimedEnv:
    """An env whose ``step`` and ``reset`` add to the ``env`` bucket; everything else passes through."""

    def __init__(self, env: gym.Env, clock: Clock) -> None:
        self._env = env
        self.step = clock.wrap(env.step, "env")
        self.reset = clock.wrap(env.reset, "env")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)


class Decoded:
    """An inference output whose ``value`` and ``reward`` were decoded inside the timed call."""

    __slots__ = ("value_logits", "reward_logits", "policy_logits", "hidden_state", "value", "reward")

    def __init__(self, out: Any, reward: bool) -> None:
        self.value_logits, self.reward_logits, self.policy_logits, self.hidden_state = out
        self.value = out.value
        self.reward = out.reward if reward else torch.zeros_like(self.value)


class TimedNetwork:
    """pymbrl's network as the breakdown pass hands it to the agent's code: ``initial_inference`` and
    ``recurrent_inference`` (with the decoding of the values and rewards the agent reads from their
    outputs) add to the ``network`` bucket; everything else (``parameters``, ``eval``...) passes through."""

    def __init__(self, network: torch.nn.Module, clock: Clock) -> None:
        self._network = network
        self.initial_inference = clock.wrap(lambda obs: Decoded(network.initial_inference(obs), False), "network")
        self.recurrent_inference = clock.wrap(lambda h, a: Decoded(network.recurrent_inference(h, a), True),
                                              "network")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._network, name)


class TimedTreeModule:
    """LightZero's ``mz_tree`` with ``batch_traverse`` and ``batch_backpropagate`` adding to the ``tree``
    bucket (what bench_mcts.py counts as its tree code); everything else passes through."""

    def __init__(self, module: Any, clock: Clock) -> None:
        self._module = module
        self.batch_traverse = clock.wrap(module.batch_traverse, "tree")
        self.batch_backpropagate = clock.wrap(module.batch_backpropagate, "tree")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


# --------------------------------------------------------------------------------------------
# Drivers. ``start(seed, clock)`` makes fresh envs state and games (untimed; ``clock`` None for the
# timed repeats, a Clock for the breakdown pass); ``move()`` plays one move in all N envs.
# --------------------------------------------------------------------------------------------

@dataclass
class Stats:
    """What the drivers report for the sanity line: root visit sums, root values, finished games."""

    visit_sums: set = field(default_factory=set)
    root_values: list = field(default_factory=list)
    game_lengths: list = field(default_factory=list)


class Driver:
    name = "?"
    reason: str | None = None

    def __init__(self, network: torch.nn.Module) -> None:
        self.base_network = network
        self.base_envs = [gym.make(ENV_ID) for _ in range(N)]
        self.stats = Stats()
        self.clock: Clock | None = None

    def versions(self) -> str:
        raise NotImplementedError

    def start(self, seed: int, clock: Clock | None) -> None:
        raise NotImplementedError

    def move(self) -> None:
        raise NotImplementedError

    def envs_for(self, clock: Clock | None) -> list:
        return self.base_envs if clock is None else [TimedEnv(e, clock) for e in self.base_envs]


class Pymbrl(Driver):
    """The self-play step of ``pymbrl.agents.muzero.train``, on the agent's own classes and functions."""

    name = PYMBRL

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__(network)
        try:
            import pymbrl
            from pymbrl.agents import muzero, muzero_selfplay
            from pymbrl.replay import GameBuffer
        except ImportError as e:
            self.reason = f"pymbrl.agents.muzero not available ({short(e, 120).split(' (/')[0]})"
            return
        self.pymbrl, self.selfplay = pymbrl, muzero_selfplay
        # The agent's config with the benchmark's settings; every search setting is named, so that a
        # changed default in the agent cannot silently change what is compared.
        self.config = muzero.MuZeroConfig(num_envs=N, num_simulations=S, search="muzero", discount=DISCOUNT,
                                          dirichlet_alpha=ALPHA, dirichlet_fraction=FRACTION,
                                          support_size=SUPPORT, hidden_size=HIDDEN, latent_size=LATENT)
        env = self.base_envs[0]
        c = self.config
        # As train() makes it (one buffer for the whole run; 100,000 positions is far more than a run adds).
        self.buffer = GameBuffer(c.buffer_size, env.observation_space.shape, A, obs_dtype=env.observation_space.dtype,
                                 unroll_steps=c.unroll_steps, td_steps=c.td_steps, discount=c.discount,
                                 prioritized=c.prioritized, alpha=c.priority_alpha, beta=c.priority_beta, seed=0)
        self.threads_used: int | None = None
        # Weak keys: holding a tree would stop the search from reusing it.
        self.core_before: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def versions(self) -> str:
        info = self.pymbrl.build_info()
        return (f"pymbrl {self.pymbrl.__version__} ({info.get('build_type', '?')}, {info.get('compiler', '?')}, "
                f"flags `{str(info.get('flags', '?')).strip()}`), search trees on {self.threads_used} thread(s) "
                f"(its own choice for {N} roots); `pymbrl.agents.muzero_selfplay.Searcher` with `MuZeroConfig("
                f"num_simulations={S}, support_size={SUPPORT}, dirichlet_alpha={ALPHA}, dirichlet_fraction="
                f"{FRACTION}, discount={DISCOUNT})`, pUCT its defaults {PB_C_INIT} / {PB_C_BASE}")

    def start(self, seed, clock):
        self.clock = clock
        self.network = self.base_network if clock is None else TimedNetwork(self.base_network, clock)
        self.play = self.selfplay.SelfPlay(self.envs_for(clock), seed)
        self.searcher = self.selfplay.Searcher(self.network, self.config, False, seed + 1)

    def move(self):
        # The agent's own self-play step (train() calls it once per move, then trains).
        result, finished = self.play.step(self.searcher, self.buffer, TEMPERATURE)
        self.stats.game_lengths += [length for _, length in finished]
        # For the report: the thread count, and the time inside the C++ select / expand-and-backup of
        # this search. Trees are recycled between searches, so that is the difference of the tree's
        # counter since its last search (the dict holds the trees, so an id is never reused).
        tree = result.search_tree.tree
        self.threads_used = tree.num_threads
        before = self.core_before.get(tree, 0.0)
        self.core_before[tree] = tree.core_seconds
        if self.clock is not None:
            self.clock.seconds["tree"] += tree.core_seconds - before
        summary = result.search_tree.summary()
        self.stats.visit_sums.update(np.unique(summary.visit_counts.sum(-1).numpy()).tolist())
        self.stats.root_values.append(float(summary.value.mean()))


class LightZero(Driver):
    """LightZero's compiled ``mz_tree`` driven as its MuZero collector and ``MuZeroMCTSCtree.search`` do."""

    name = LIGHTZERO

    def __init__(self, network: torch.nn.Module, peers_dir: Path = PEERS_DIR) -> None:
        super().__init__(network)
        # The ctree modules are self-contained extension modules; only their folder is on the path
        # (LightZero itself, with its DI-engine dependency tree, is not installed).
        if str(peers_dir) not in sys.path:
            sys.path.insert(0, str(peers_dir))
        try:
            from lzero.mcts.ctree.ctree_muzero import mz_tree
        except ImportError as e:
            self.reason = f"LightZero ctree not found in {peers_dir} (`make bench` extracts it; {short(e, 60)})"
            return
        self.base_tree = mz_tree
        self.where = Path(mz_tree.__file__).parent.parent
        # LightZero's categorical support -S..S as a tensor made once, [1, 2S + 1].
        self.support = torch.arange(-SUPPORT, SUPPORT + 1, dtype=torch.float32).unsqueeze(0)
        self.buffer: list[dict[str, np.ndarray]] = []

    def versions(self) -> str:
        return (f"LightZero {version('LightZero')} compiled tree `ctree_muzero` (from `{self.where}`), driven by "
                f"a loop written after its MuZero collector and `MuZeroMCTSCtree.search`; value_delta_max "
                f"{LZ_VALUE_DELTA_MAX} (its default)")

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Categorical logits [B, 2S + 1] -> scalars [B, 1]: the expectation over the support, then the
        inverse of h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x in the paper's closed form (eps 1e-3)."""
        eps = 0.001
        x = (torch.softmax(logits, dim=1) * self.support).sum(1, keepdim=True)
        return torch.sign(x) * (((torch.sqrt(1 + 4 * eps * (x.abs() + 1 + eps)) - 1) / (2 * eps)) ** 2 - 1)

    def start(self, seed, clock):
        self.clock = clock
        self.envs = self.envs_for(clock)
        if clock is None:
            self.network, self.tree, self.decode_fn = self.base_network, self.base_tree, self.decode
        else:
            wrap = clock.wrap
            self.network = TimedNetworkRaw(self.base_network, clock)
            self.tree = TimedTreeModule(self.base_tree, clock)
            self.decode_fn = wrap(self.decode, "network")
        np.random.seed(seed)   # LightZero draws the root noise and the actions from numpy's global generator
        self.obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(self.envs)]
        # CartPole in LightZero has an all-ones action mask and to_play -1 (not a board game).
        self.action_mask = [np.ones(A, dtype=np.int8) for _ in range(N)]
        self.to_play = [-1] * N
        self.segments = [self.new_segment() for _ in range(N)]

    @staticmethod
    def new_segment() -> dict[str, list]:
        return {"obs": [], "action": [], "reward": [], "child_visits": [], "root_value": []}

    def search(self, roots: Any, latent_state_roots: np.ndarray, to_play: list[int]) -> None:
        tree, network, decode = self.tree, self.network, self.decode_fn
        self.base_network.eval()
        batch_size = roots.num
        latent_state_batch_in_search_path = [latent_state_roots]
        min_max_stats_lst = tree.MinMaxStatsList(batch_size)
        min_max_stats_lst.set_delta(LZ_VALUE_DELTA_MAX)
        for simulation_index in range(S):
            results = tree.ResultsWrapper(num=batch_size)
            index_in_search_path, index_in_batch, last_actions, virtual_to_play = tree.batch_traverse(
                roots, PB_C_BASE, PB_C_INIT, DISCOUNT, min_max_stats_lst, results, copy.deepcopy(to_play))
            latent_states = []
            for ix, iy in zip(index_in_search_path, index_in_batch):
                latent_states.append(latent_state_batch_in_search_path[ix][iy])
            latent_states = torch.from_numpy(np.asarray(latent_states)).float()
            # LightZero's models take the actions as [B, 1]; pymbrl's network takes them as [B].
            last_actions = torch.from_numpy(np.asarray(last_actions)).long()
            out = network.recurrent_inference(latent_states, last_actions)
            latent = out.hidden_state.detach().cpu().numpy()
            policy_logits = out.policy_logits.detach().cpu().numpy()
            value = decode(out.value_logits).detach().cpu().numpy()
            reward = decode(out.reward_logits).detach().cpu().numpy()
            latent_state_batch_in_search_path.append(latent)
            tree.batch_backpropagate(simulation_index + 1, DISCOUNT, reward.reshape(-1).tolist(),
                                     value.reshape(-1).tolist(), policy_logits.tolist(), min_max_stats_lst, results,
                                     virtual_to_play)

    def move(self):
        tree, network, decode = self.tree, self.network, self.decode_fn
        action_mask, to_play = self.action_mask, self.to_play
        # The collector's policy forward (MuZeroPolicy._forward_collect with the compiled tree).
        obs = torch.from_numpy(np.stack(self.obs)).float()
        with torch.no_grad():
            self.base_network.eval()
            out = network.initial_inference(obs)
            latent_state_roots = out.hidden_state.detach().cpu().numpy()
            pred_values = decode(out.value_logits).detach().cpu().numpy()   # noqa: F841 (the collector keeps them)
            policy_logits = out.policy_logits.detach().cpu().numpy().tolist()
            reward_roots = [0.0] * N   # a MuZero model's initial inference gives reward 0 per root
            legal_actions = [[i for i, x in enumerate(action_mask[j]) if x == 1] for j in range(N)]
            noises = [np.random.dirichlet([ALPHA] * int(sum(action_mask[j]))).astype(np.float32).tolist()
                      for j in range(N)]
            roots = tree.Roots(N, legal_actions)
            roots.prepare(FRACTION, noises, reward_roots, policy_logits, to_play)
            self.search(roots, latent_state_roots, to_play)
            distributions, values = roots.get_distributions(), roots.get_values()
        actions = []
        for i in range(N):
            # select_action(visit_counts, temperature, deterministic=False); LightZero also computes the
            # entropy of the distribution with scipy for its logs, which is left out here.
            visit_counts = distributions[i]
            probs = [v ** (1 / TEMPERATURE) for v in visit_counts]
            probs = [p / sum(probs) for p in probs]
            index = np.random.choice(len(visit_counts), p=probs)
            actions.append(np.where(action_mask[i] == 1.0)[0][index])
        # The collector's env step and game-segment bookkeeping.
        for i, env in enumerate(self.envs):
            next_obs, reward, terminated, truncated, _ = env.step(int(actions[i]))
            seg = self.segments[i]
            seg["obs"].append(self.obs[i])
            seg["action"].append(actions[i])
            seg["reward"].append(reward)
            total = sum(distributions[i])
            seg["child_visits"].append([v / total for v in distributions[i]])
            seg["root_value"].append(values[i])
            self.obs[i] = next_obs
            if terminated or truncated:
                self.buffer.append({k: np.asarray(v) for k, v in seg.items()})
                self.stats.game_lengths.append(len(seg["action"]))
                self.segments[i] = self.new_segment()
                self.obs[i] = env.reset()[0]
        self.stats.visit_sums.update({int(sum(d)) for d in distributions})
        self.stats.root_values.append(float(np.mean(values)))


class TimedNetworkRaw:
    """The network as the LightZero driver gets it in the breakdown pass: the two inference calls add to
    the ``network`` bucket and return the raw outputs (the driver decodes them itself, timed separately)."""

    def __init__(self, network: torch.nn.Module, clock: Clock) -> None:
        self.initial_inference = clock.wrap(network.initial_inference, "network")
        self.recurrent_inference = clock.wrap(network.recurrent_inference, "network")


DRIVERS = {PYMBRL: Pymbrl, LIGHTZERO: LightZero}


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------

@dataclass
class Cell:
    seconds: list[float] = field(default_factory=list)
    """Seconds per ``moves`` timed moves, one per repeat."""
    parts: list[dict[str, float]] = field(default_factory=list)
    """The instrumented pass: seconds per bucket (and ``total``), one dict per repeat."""

    def rate(self, moves: int) -> float:
        """Env steps per second from the median time."""
        return N * moves / statistics.median(self.seconds)


class Bench(Run):
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.network = make_network()
        self.libs = {name: DRIVERS[name](self.network) for name in args.libs}
        self.cells: dict[str, Cell | str] = {}
        self.floor: tuple[float, float] | None = None
        """(seconds of one move's forward passes, seconds of one support_to_scalar on [N, 2S + 1])."""

    def play(self, driver: Driver, seed: int, clock: Clock | None) -> float:
        """A fresh start, the warm-up moves, then the timed moves; returns their seconds."""
        driver.start(seed, clock)
        for _ in range(WARMUP_MOVES):
            driver.move()
        if clock is not None:   # the breakdown counts the timed moves only
            for k in clock.seconds:
                clock.seconds[k] = 0.0
        t0 = time.perf_counter()
        for _ in range(self.args.moves):
            driver.move()
        return time.perf_counter() - t0

    def model_floor(self) -> None:
        """The shared network alone: one move's forward passes (no decoding), and one decoding."""
        from pymbrl.models.muzero import support_to_scalar

        net, gen = self.network, torch.Generator().manual_seed(0)
        obs, h = torch.rand(N, OBS_DIM, generator=gen), torch.rand(N, LATENT, generator=gen)
        act = torch.randint(0, A, (N,), generator=gen)
        logits = torch.randn(2, N, 2 * SUPPORT + 1, generator=gen)   # a simulation's value and reward together
        forward, decode = [], []
        with torch.no_grad():
            for _ in range(6):   # the first is a warm-up
                t0 = time.perf_counter()
                net.initial_inference(obs)
                for _ in range(S):
                    net.recurrent_inference(h, act)
                forward.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                for _ in range(100):
                    support_to_scalar(logits, SUPPORT)
                decode.append((time.perf_counter() - t0) / 100)
        self.floor = (statistics.median(forward[1:]), statistics.median(decode[1:]))

    def run(self) -> None:
        self.t0 = time.perf_counter()
        drivers = {}
        for name, d in self.ready().items():
            try:   # a first short game: imports, first-touch allocations, a driver that fails
                d.start(10_000, None)
                for _ in range(WARMUP_MOVES):
                    d.move()
            except Exception as e:  # a peer's failure must not end the benchmark
                self.cells[name] = f"unavailable ({short(e, 70)})"
                continue
            drivers[name] = d
            self.cells[name] = Cell()
        order = list(drivers)
        for r in range(self.args.repeats):
            # Rotate who goes first, so that no driver always runs right after the same other one.
            for name in rotated(order, r):
                seconds = self.play(drivers[name], seed=r * 100, clock=None)
                self.cells[name].seconds.append(seconds)
            self.log(f"repeat {r + 1}/{self.args.repeats}: " + ", ".join(
                f"{n} {N * self.args.moves / self.cells[n].seconds[-1]:,.0f} env steps/s" for n in order))
        for r in range(self.args.breakdown_repeats):
            for name in rotated(order, r):
                clock = Clock()
                total = self.play(drivers[name], seed=r * 100, clock=clock)
                self.cells[name].parts.append({**clock.seconds, "total": total})
        self.log("breakdown pass done")
        self.model_floor()
        self.runtime = time.perf_counter() - self.t0


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def fmt(v: float) -> str:
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def rates_table(bench: Bench) -> list[str]:
    moves = bench.args.moves
    lines = ["| driver | env steps/s | ms per move (16 env steps) | spread |", "|---|---:|---:|---:|"]
    for name, d in bench.libs.items():
        cell = bench.cells.get(name, d.reason or NA)
        if isinstance(cell, str):
            lines.append(f"| {name} | {cell} | {NA} | {NA} |")
            continue
        lines.append(f"| {name} | {fmt(cell.rate(moves))} | {statistics.median(cell.seconds) / moves * 1e3:.2f} | "
                     f"{spread(cell.seconds):.0%} |")
    return lines


def ratio_lines(bench: Bench) -> list[str]:
    a, b = bench.cells.get(PYMBRL), bench.cells.get(LIGHTZERO)
    if not (isinstance(a, Cell) and isinstance(b, Cell)):
        return []
    r = a.rate(bench.args.moves) / b.rate(bench.args.moves)
    met = "met" if r >= TARGET else "not met"
    return [f"**pymbrl / LightZero: {r:.2f}x** env steps per second; the issue's target of at least {TARGET:.0f}x is "
            f"**{met}**."]


def medians(cell: Cell) -> dict[str, float]:
    keys = (*BUCKETS, "total")
    return {k: statistics.median(p[k] for p in cell.parts) for k in keys}


def breakdown_table(bench: Bench) -> list[str]:
    moves = bench.args.moves
    lines = ["| driver | ms per move (instrumented) | network | tree | env | other |", "|---|---:|---:|---:|---:|---:|"]
    for name in bench.libs:
        cell = bench.cells.get(name)
        if not isinstance(cell, Cell) or not cell.parts:
            continue
        m = medians(cell)
        other = m["total"] - sum(m[k] for k in BUCKETS)
        cells = [f"{v / moves * 1e3:.2f} ({v / m['total']:.0%})" for v in (*(m[k] for k in BUCKETS), other)]
        lines.append(f"| {name} | {m['total'] / moves * 1e3:.2f} | " + " | ".join(cells) + " |")
    return lines


def non_network_line(bench: Bench) -> list[str]:
    a, b = bench.cells.get(PYMBRL), bench.cells.get(LIGHTZERO)
    if not (isinstance(a, Cell) and isinstance(b, Cell) and a.parts and b.parts):
        return []
    moves = bench.args.moves
    ma, mb = medians(a), medians(b)
    rest_a, rest_b = ma["total"] - ma["network"], mb["total"] - mb["network"]
    return [f"Everything but the network (tree + env + other), per move: pymbrl {rest_a / moves * 1e3:.2f} ms, "
            f"LightZero {rest_b / moves * 1e3:.2f} ms (LightZero / pymbrl {rest_b / rest_a:.2f}x). The network "
            f"part costs pymbrl {ma['network'] / moves * 1e3:.2f} ms and LightZero {mb['network'] / moves * 1e3:.2f} "
            f"ms per move (the same forward passes; the decoding differs: pymbrl's `support_to_scalar` against "
            f"the LightZero-style inverse transform), so with its network part as it is, pymbrl's loop could "
            f"reach at most {mb['total'] / ma['network']:.2f}x LightZero's (instrumented) rate even if everything "
            f"else were free."]


def floor_lines(bench: Bench) -> list[str]:
    if bench.floor is None:
        return []
    forward, decode = bench.floor
    lines = [f"The network's forward passes alone for one move (1 `initial_inference` + {S} `recurrent_inference` "
             f"on [{N}, ...], no decoding; median of 5): {forward * 1e3:.2f} ms; decoding a simulation's value and "
             f"reward logits together ([2, {N}, {2 * SUPPORT + 1}]) with pymbrl's `support_to_scalar`: "
             f"{decode * 1e6:.0f} µs (about {S + 1} decodings per move, the root's included: "
             f"{(S + 1) * decode * 1e3:.2f} ms)."]
    b = bench.cells.get(LIGHTZERO)
    if isinstance(b, Cell) and b.seconds:
        need = statistics.median(b.seconds) / bench.args.moves / TARGET
        lines[0] += (f" {TARGET:.0f}x LightZero's measured rate means at most {need * 1e3:.2f} ms per move for "
                     f"everything, " + ("less than these forward passes alone: out of reach for any driver of "
                                        "this network on this CPU." if forward >= need else
                                        f"{forward / need:.0%} of which the forward passes alone take."))
    return lines


def sanity(bench: Bench) -> list[str]:
    out = []
    for name, d in bench.ready().items():
        if not isinstance(bench.cells.get(name), Cell):
            continue
        st = d.stats
        lengths = st.game_lengths
        out.append(f"{name}: root visit sums {sorted(st.visit_sums)} (expected [{S}]), mean root value "
                   f"{np.mean(st.root_values):+.3f}, {len(lengths)} games finished, mean length "
                   f"{np.mean(lengths) if lengths else float('nan'):.1f}")
    return out


def report(bench: Bench, argv: list[str], load_before: str) -> str:
    a = bench.args
    lines = header("MuZero self-play: pymbrl vs LightZero's compiled tree", "bench_selfplay.py", argv, load_before,
                   machine_note="; `torch.set_num_threads(1)`", runtime=bench.runtime)
    for name, d in bench.libs.items():
        lines.append(f"- {d.versions() if d.reason is None else name + ': ' + d.reason}")
    lines += [
        f"- gymnasium {version('gymnasium')}",
        f"- Setup: {ENV_ID}, N={N} envs stepped together, S={S} simulations per move; one network for both, "
        f"`MuZeroNetwork({OBS_DIM}, {A}, hidden_size={HIDDEN}, latent_size={LATENT}, support_size={SUPPORT})`, "
        f"torch seed 0, eval mode; Dirichlet noise alpha {ALPHA} / fraction {FRACTION}, pUCT {PB_C_INIT} / "
        f"{PB_C_BASE}, discount {DISCOUNT}, actions drawn from the root visit counts at temperature "
        f"{TEMPERATURE:g}. Medians over {a.repeats} repeats per driver, interleaved; each repeat starts "
        f"afresh (envs reset, new games), plays {WARMUP_MOVES} warm-up moves and times {a.moves} moves "
        f"({N * a.moves:,} env steps).",
        "",
        "Env steps per second (N x moves / seconds; higher is better):",
        "",
        *rates_table(bench),
    ]
    ratio = ratio_lines(bench)
    if ratio:
        lines += ["", *ratio]
    table = breakdown_table(bench)
    if len(table) > 2:
        lines += [
            "",
            f"Where the time goes, ms per move and share, from a separate instrumented pass ({a.breakdown_repeats} "
            f"repeat(s) of the same {a.moves} moves, medians per part; its timers add a little to the total):",
            "",
            *table,
            "",
            "- network: `initial_inference` and `recurrent_inference` of the shared network, plus decoding the "
            "value and reward logits to scalars (pymbrl: the `.value` / `.reward` its agent reads; LightZero: "
            "softmax, expectation over the support and the inverse transform, as its `InverseScalarTransform`).",
            "- tree: pymbrl, `Tree.core_seconds` (inside the C++ select and expand-and-backup); LightZero, inside "
            "`batch_traverse` + `batch_backpropagate` (including their conversion of Python lists), as "
            "bench_mcts.py counts them. Root setup and reading the results (pymbrl `set_roots` / `begin_muzero` / "
            "`decide` / `summary`, LightZero `Roots` / `prepare` / `get_distributions` / `get_values`) are in other.",
            "- env: gymnasium `step` and `reset` of the 16 envs.",
            "- other: everything else: the search loops in Python, latent gather/scatter (pymbrl: torch "
            "embedding pool; LightZero: a Python list of numpy arrays) and numpy/torch/list conversions, root "
            "noise and action draws, game bookkeeping and buffer writes (pymbrl: `SelfPlay` into the C++ "
            "`GameBuffer`; LightZero: per-env lists handed to a Python list).",
        ]
        lines += ["", *non_network_line(bench)]
    floor = floor_lines(bench)
    if floor:
        lines += ["", *floor]
    lines += [
        "",
        "What each driver does per move:",
        "",
        "- pymbrl: the self-play step of `pymbrl.agents.muzero.train` (training, evaluation and checkpoints "
        "left out), calling the agent's own `legal_mask`, `Searcher` (initial inference, "
        "`mcts.muzero_policy` with the latents in a torch embedding pool and one `recurrent_fn` call per "
        "simulation, the action drawn in C++), the env steps, and at a game's end an initial inference "
        "for the bootstrap value of a cut game, the game into a `GameBuffer` and `env.reset()` "
        "(`pymbrl.agents.muzero_selfplay.SelfPlay.step`, the agent's own code).",
        "- LightZero: a loop written after LightZero 0.2.0's MuZero collector (`_forward_collect`) and "
        "`MuZeroMCTSCtree.search`: initial inference, latents, root values and logits to numpy/lists, "
        "`np.random.dirichlet` per root, `Roots` + `prepare`; per simulation `ResultsWrapper`, `batch_traverse` "
        "(with `copy.deepcopy(to_play)`), the gather of the leaves' parent latents from the list of "
        "per-simulation numpy arrays, `recurrent_inference` on the batch, the outputs to numpy, value and "
        "reward decoded, `tolist`, `batch_backpropagate`; then `get_distributions` / `get_values`, the action "
        "per env by `np.random.choice` on visit counts ** (1 / temperature), the env step, and the game "
        "segment (observation, action, reward, normalised visit distribution, root value) per env.",
        "",
        "Left out of the LightZero loop, which would only slow it: DI-engine's env manager and LightZero's "
        "env wrapper (both drivers step the same plain gymnasium envs), the scipy entropy of each visit "
        "distribution that its `select_action` computes for logging, the priorities and padding of its game "
        "segments. The network is untrained: its value and reward heads start at zero (pymbrl's "
        "initialisation), so every value and reward is 0 and the searches follow the priors and the noise.",
    ]
    checks = sanity(bench)
    if checks:
        lines += ["", "Sanity (every move played, warm-ups and the instrumented pass included): " + "; ".join(checks) + "."]
    noisy = [f"{n} ({spread(c.seconds):.0%})" for n, c in bench.cells.items()
             if isinstance(c, Cell) and spread(c.seconds) > 0.5]
    if noisy:
        lines += ["", "Noisy (max - min over the repeats above 50% of the median): " + ", ".join(noisy) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "fewer moves and repeats", tuple(CLI_NAMES), "default: both")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per driver (default 9, 2 with --quick)")
    parser.add_argument("--moves", type=int, default=None,
                        help="timed moves per repeat (default 200, 20 with --quick)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.libs = [CLI_NAMES[n] for n in names(args.libs, tuple(CLI_NAMES), "drivers", parser)]
    args.repeats = args.repeats or (2 if args.quick else 9)
    args.moves = args.moves or (20 if args.quick else 200)
    args.breakdown_repeats = 1 if args.quick else 3
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)

    run_and_publish(Bench(args), report, argv, output, SECTION)


if __name__ == "__main__":
    main()
