"""Benchmark pymbrl's batched MCTS against LightZero's compiled trees, mctx and a pure-Python search.

Measures, in one process, tree-simulations per second (B roots x S simulations / seconds) of a
whole search, starting from root outputs already computed and ending with the root statistics a
training loop reads (visit counts, search values), for

- MuZero search with Dirichlet noise at the root, S = 50 and S = 200;
- Gumbel MuZero search (all 16 actions considered at the root), S = 50 and S = 200;

on B = 256 roots, A = 16 actions, latent size 16, pUCT constants 1.25 / 19652, discount 0.997,
Dirichlet alpha 0.3 / fraction 0.25, with one trivial model shared by every library (same float32
weights, numpy seed 0): ``h' = tanh(h @ Ws + Wa[a])``, reward ``h' @ wr``, value ``h' @ wv``, prior
logits ``h' @ Wp``. The model is cheap on purpose, so that the search itself is what is measured.

Peers, each behind a small adapter with ``search(policy, S, seed) -> (seconds, tree seconds)``:

- LightZero 0.2.0: its compiled Cython/C++ trees (``ctree_muzero``, ``ctree_gumbel_muzero``) driven
  by a loop that does per simulation what ``MuZeroMCTSCtree.search`` / ``GumbelMuZeroMCTSCtree.search``
  do. The time inside ``batch_traverse`` + ``batch_backpropagate`` is reported separately.
- mctx: ``muzero_policy`` / ``gumbel_muzero_policy``, jitted, JAX on one CPU thread, timed after a
  compiling warm-up call and up to ``block_until_ready``.
- Python: ``mcts_baseline.py``, one tree at a time with batch-1 model calls (muzero-general style),
  on fewer roots since it is slow; MuZero only.

Everything runs with ``torch.set_num_threads(1)`` and single-threaded XLA. Each case runs every
library ``repeats`` times, the libraries interleaved (their order rotating) so that a burst of load
on the machine hits them all; the table shows medians.

It prints a markdown report and writes it into ``bench/RESULTS.md`` between the markers
``<!-- mcts:begin -->`` and ``<!-- mcts:end -->``, keeping the rest of that file.

Usage::

    make bench                            # or, with the peers installed (see the Makefile):
    python bench/bench_mcts.py            # full run, about 4 minutes on a 2-core VM
    python bench/bench_mcts.py --quick    # smoke test; writes no file unless --output is given
    python bench/bench_mcts.py --quick --libs lightzero,mctx,python
"""

from __future__ import annotations

import os

# JAX reads these when it is imported: CPU only, and XLA on one thread like torch below, so that
# no library gets more cores than another.
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = " ".join(filter(None, (os.environ.get("XLA_FLAGS"),
                                                  "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")))

import argparse
import datetime
import importlib.metadata
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import mcts_baseline
from _report import DEFAULT_OUTPUT, load, machine, publish

torch.set_num_threads(1)

SECTION = "mcts"
LIBS = ("pymbrl", "LightZero", "mctx", "Python")
PEERS = LIBS[1:]
POLICIES = ("muzero", "gumbel")
SIMULATIONS = (50, 200)
B, A, D = 256, 16, 16
"""Roots, actions, latent size."""
PYTHON_ROOTS = 8
"""Roots the pure-Python search runs on (it handles one tree at a time, so its cost is linear in B)."""
ALPHA, FRACTION = 0.3, 0.25
PB_C_INIT, PB_C_BASE = 1.25, 19652
DISCOUNT = 0.997
"""LightZero's default discount_factor; every library gets it (mctx and pymbrl from the model)."""
LZ_VALUE_DELTA_MAX = 0.01
"""LightZero's default ``value_delta_max`` for its min-max statistics."""
PEERS_DIR = Path(__file__).resolve().parent.parent / "build" / "peers"
"""Where ``make bench`` extracts LightZero's compiled trees (``lzero/mcts/ctree``)."""
NA = "—"


class Unavailable(Exception):
    """The library cannot run this case; the message says why."""


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def short(e: BaseException, limit: int = 160) -> str:
    text = f"{type(e).__name__}: {e}".replace("\n", " ").replace("|", "/")
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# The shared model and roots
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """The weights and the B roots every library searches from (numpy float32)."""

    ws: np.ndarray   # [D, D]
    wa: np.ndarray   # [A, D], one row per action
    wr: np.ndarray   # [D]
    wv: np.ndarray   # [D]
    wp: np.ndarray   # [D, A]
    h0: np.ndarray   # [B, D] root embeddings
    root_logits: np.ndarray  # [B, A]
    root_value: np.ndarray   # [B]


def make_problem(seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        # Scaled by 1/sqrt(D) so that tanh stays away from saturation and the priors are not one-hot.
        return (rng.standard_normal(shape) / np.sqrt(D)).astype(np.float32)

    ws, wa, wr, wv, wp = w(D, D), w(A, D), w(D), w(D), w(D, A)
    h0 = rng.standard_normal((B, D)).astype(np.float32)
    return Problem(ws, wa, wr, wv, wp, h0, h0 @ wp, h0 @ wv)


class TorchModel:
    """The model in torch, for pymbrl, LightZero and the Python search."""

    def __init__(self, p: Problem) -> None:
        self.ws, self.wa, self.wr, self.wv, self.wp = (torch.from_numpy(x) for x in (p.ws, p.wa, p.wr, p.wv, p.wp))

    def recurrent(self, h: torch.Tensor, action: torch.Tensor):
        """``h`` [n, D], ``action`` int64 [n] -> (next_h [n, D], reward [n], value [n], prior_logits [n, A])."""
        nh = torch.tanh(h @ self.ws + self.wa[action.reshape(-1)])
        return nh, nh @ self.wr, nh @ self.wv, nh @ self.wp


# --------------------------------------------------------------------------------------------
# Adapters. ``setup(problem)`` prepares inputs (not timed); ``search(policy, S, seed)`` runs one whole
# search and returns (seconds end to end, seconds inside the tree code or None); afterwards
# ``visits`` holds the root visit counts [roots, A] (or None) and ``values`` the root search values.
# --------------------------------------------------------------------------------------------

class Adapter:
    name = "?"
    reason: str | None = None   # set when the library cannot be used at all
    roots = B
    policies = POLICIES

    def __init__(self) -> None:
        self.visits: np.ndarray | None = None
        self.values: np.ndarray | None = None

    def versions(self) -> str:
        raise NotImplementedError

    def setup(self, p: Problem) -> None:
        raise NotImplementedError

    def search(self, policy: str, sims: int, seed: int) -> tuple[float, float | None]:
        raise NotImplementedError


class Pymbrl(Adapter):
    """pymbrl.mcts: torch roots and a torch recurrent function, the tree in C++."""

    name = "pymbrl"

    def __init__(self) -> None:
        super().__init__()
        try:
            import pymbrl
            from pymbrl import mcts
            for attr in ("Root", "RecurrentOutput", "muzero_policy", "gumbel_muzero_policy"):
                getattr(mcts, attr)
        except (ImportError, AttributeError) as e:
            # An ImportError's message ends with the package path, which says nothing here.
            self.reason = f"pymbrl.mcts not available in the installed pymbrl ({short(e, 120).split(' (/')[0]})"
            return
        self.pymbrl, self.mcts = pymbrl, mcts

    def versions(self) -> str:
        info = self.pymbrl.build_info()
        return (f"pymbrl {self.pymbrl.__version__} ({info.get('build_type', '?')}, {info.get('compiler', '?')}, "
                f"flags `{str(info.get('flags', '?')).strip()}`)")

    def setup(self, p: Problem) -> None:
        model, mcts = TorchModel(p), self.mcts
        self.root = mcts.Root(prior_logits=torch.from_numpy(p.root_logits), value=torch.from_numpy(p.root_value),
                              embedding=torch.from_numpy(p.h0))
        discount = torch.full((B,), DISCOUNT)

        def recurrent_fn(embedding, action):
            nh, reward, value, logits = model.recurrent(embedding, action)
            return mcts.RecurrentOutput(reward=reward, discount=discount, prior_logits=logits, value=value), nh

        self.recurrent_fn = recurrent_fn
        self.core_before: dict[int, tuple] = {}

    def search(self, policy, sims, seed):
        # The constants the issue fixes are passed even where they are pymbrl's defaults: a
        # mismatch in the API then fails loudly instead of comparing different searches.
        with torch.no_grad():
            t0 = time.perf_counter()
            if policy == "muzero":
                out = self.mcts.muzero_policy(self.root, self.recurrent_fn, sims, dirichlet_alpha=ALPHA,
                                              dirichlet_fraction=FRACTION, pb_c_init=PB_C_INIT, pb_c_base=PB_C_BASE,
                                              seed=seed)
            else:
                out = self.mcts.gumbel_muzero_policy(self.root, self.recurrent_fn, sims, max_num_considered_actions=A,
                                                     seed=seed)
            summary = out.search_tree.summary()
            elapsed = time.perf_counter() - t0
        # Trees are recycled between searches, so the core time is the difference of its counter
        # (the dict holds the trees, so an id is never reused by another tree).
        tree = out.search_tree.tree
        inside = tree.core_seconds - self.core_before.get(id(tree), (tree, 0.0))[1]
        self.core_before[id(tree)] = (tree, tree.core_seconds)
        self.visits, self.values = summary.visit_counts.numpy(), summary.value.numpy()
        return elapsed, inside


class LightZero(Adapter):
    """LightZero's compiled trees, driven like ``MuZeroMCTSCtree.search`` / ``GumbelMuZeroMCTSCtree.search``.

    Per simulation that loop: makes a ``ResultsWrapper``; ``batch_traverse`` (C++) walks all B trees
    serially and returns Python lists (search-path depth and batch index of each leaf's parent
    latent, the actions, to-play); gathers the parents' latents one by one from a Python list of
    per-simulation numpy arrays into a new array; calls the model on the batch (torch); converts
    the outputs to numpy and then to Python lists; appends the new latents to the list; and calls
    ``batch_backpropagate`` (C++), which expands the B leaves and backs up along the paths.
    """

    name = "LightZero"

    def __init__(self, peers_dir: Path = PEERS_DIR) -> None:
        super().__init__()
        # The ctree modules are self-contained extension modules; only their folder is on the path
        # (LightZero itself, with its DI-engine dependency tree, is not installed).
        if str(peers_dir) not in sys.path:
            sys.path.insert(0, str(peers_dir))
        try:
            from lzero.mcts.ctree.ctree_muzero import mz_tree
        except ImportError as e:
            self.reason = f"LightZero ctree not found in {peers_dir} (`make bench` extracts it; {short(e, 60)})"
            return
        self.trees = {"muzero": mz_tree}
        try:
            from lzero.mcts.ctree.ctree_gumbel_muzero import gmz_tree
            self.trees["gumbel"] = gmz_tree
        except ImportError as e:
            self.gumbel_error = short(e, 70)
        self.policies = tuple(self.trees)
        self.where = Path(mz_tree.__file__).parent.parent

    def versions(self) -> str:
        return f"LightZero {version('LightZero')} compiled trees ({', '.join(self.trees)}; from `{self.where}`)"

    def setup(self, p: Problem) -> None:
        self.model = TorchModel(p)
        # What LightZero's collector holds after the initial inference: numpy latents, Python lists.
        self.h0 = p.h0.copy()
        self.root_logits = p.root_logits
        self.root_value = p.root_value
        self.legal = [list(range(A)) for _ in range(B)]
        self.to_play = [-1] * B   # -1: not a board game
        self.zeros = [0.0] * B

    def search(self, policy, sims, seed):
        tree = self.trees.get(policy)
        if tree is None:
            raise Unavailable(f"unavailable ({getattr(self, 'gumbel_error', 'no tree')})")
        gumbel = policy == "gumbel"
        backup = tree.batch_back_propagate if gumbel else tree.batch_backpropagate
        np.random.seed(seed)   # LightZero draws the root noise from numpy's global generator
        inside = 0.0
        clock = time.perf_counter
        with torch.no_grad():
            t0 = clock()
            logits = self.root_logits.tolist()
            noises = [np.random.dirichlet([ALPHA] * A).astype(np.float32).tolist() for _ in range(B)]
            roots = tree.Roots(B, self.legal)
            if gumbel:   # LightZero's Gumbel collector also mixes Dirichlet noise into the root priors
                roots.prepare(FRACTION, noises, self.zeros, self.root_value.tolist(), logits, self.to_play)
            else:
                roots.prepare(FRACTION, noises, self.zeros, logits, self.to_play)
            stats = tree.MinMaxStatsList(B)
            stats.set_delta(LZ_VALUE_DELTA_MAX)
            latents = [self.h0]   # one [B, D] array per simulation, as LightZero keeps them
            for sim in range(sims):
                results = tree.ResultsWrapper(num=B)
                t = clock()
                if gumbel:
                    depth_idx, batch_idx, actions, to_play = tree.batch_traverse(
                        roots, sims, A, DISCOUNT, results, self.to_play)
                else:
                    depth_idx, batch_idx, actions, to_play = tree.batch_traverse(
                        roots, PB_C_BASE, PB_C_INIT, DISCOUNT, stats, results, self.to_play)
                inside += clock() - t
                parents = torch.from_numpy(np.asarray([latents[x][y] for x, y in zip(depth_idx, batch_idx)]))
                out = self.model.recurrent(parents, torch.from_numpy(np.asarray(actions)).long())
                h, reward, value, prior_logits = (x.detach().cpu().numpy() for x in out)
                latents.append(h)
                reward, value = reward.reshape(-1).tolist(), value.reshape(-1).tolist()
                prior_logits = prior_logits.tolist()
                t = clock()
                backup(sim + 1, DISCOUNT, reward, value, prior_logits, stats, results, to_play)
                inside += clock() - t
            visits, values = roots.get_distributions(), roots.get_values()
            if gumbel:
                roots.get_policies(DISCOUNT, A)   # the improved policy, Gumbel MuZero's training target
            elapsed = clock() - t0
        self.visits, self.values = np.asarray(visits), np.asarray(values)
        return elapsed, inside


class Mctx(Adapter):
    """mctx's policies on the same model written in jax.numpy, each jitted once per (policy, S)."""

    name = "mctx"

    def __init__(self) -> None:
        super().__init__()
        try:
            import jax
            import jax.numpy as jnp
            import mctx
        except ImportError as e:
            self.reason = short(e)
            return
        self.jax, self.jnp, self.mctx = jax, jnp, mctx
        self.compiled: dict[tuple[str, int], object] = {}
        self.compile_seconds: dict[tuple[str, int], float] = {}

    def versions(self) -> str:
        return (f"mctx {version('mctx')}, jax {version('jax')}, jaxlib {version('jaxlib')} "
                f"({self.jax.devices()[0].platform}, XLA_FLAGS `{os.environ['XLA_FLAGS']}`)")

    def setup(self, p: Problem) -> None:
        jnp = self.jnp
        self.params = {k: jnp.asarray(getattr(p, k)) for k in ("ws", "wa", "wr", "wv", "wp")}
        self.inputs = (jnp.asarray(p.root_logits), jnp.asarray(p.root_value), jnp.asarray(p.h0))

    def recurrent_fn(self, params, rng_key, action, embedding):
        jnp, mctx = self.jnp, self.mctx
        nh = jnp.tanh(embedding @ params["ws"] + params["wa"][action])
        out = mctx.RecurrentFnOutput(reward=nh @ params["wr"], discount=jnp.full(nh.shape[:1], DISCOUNT, nh.dtype),
                                     prior_logits=nh @ params["wp"], value=nh @ params["wv"])
        return out, nh

    def function(self, policy: str, sims: int):
        """The jitted search for (policy, S); returns what a training loop reads from the output."""
        key = (policy, sims)
        if key not in self.compiled:
            mctx = self.mctx

            def run(params, rng_key, prior_logits, value, embedding):
                root = mctx.RootFnOutput(prior_logits=prior_logits, value=value, embedding=embedding)
                if policy == "muzero":
                    out = mctx.muzero_policy(params, rng_key, root, self.recurrent_fn, sims,
                                             dirichlet_fraction=FRACTION, dirichlet_alpha=ALPHA,
                                             pb_c_init=PB_C_INIT, pb_c_base=PB_C_BASE)
                else:
                    out = mctx.gumbel_muzero_policy(params, rng_key, root, self.recurrent_fn, sims,
                                                    max_num_considered_actions=A)
                summary = out.search_tree.summary()
                return out.action, out.action_weights, summary.visit_counts, summary.value

            fn = self.jax.jit(run)
            t0 = time.perf_counter()
            self.jax.block_until_ready(fn(self.params, self.jax.random.PRNGKey(0), *self.inputs))
            self.compile_seconds[key] = time.perf_counter() - t0
            self.compiled[key] = fn
        return self.compiled[key]

    def search(self, policy, sims, seed):
        fn = self.function(policy, sims)
        rng_key = self.jax.random.PRNGKey(seed)
        t0 = time.perf_counter()
        out = self.jax.block_until_ready(fn(self.params, rng_key, *self.inputs))
        elapsed = time.perf_counter() - t0
        self.visits, self.values = np.asarray(out[2]), np.asarray(out[3])
        return elapsed, None


class Python(Adapter):
    """``mcts_baseline.MuZeroSearch`` on the first PYTHON_ROOTS roots, one after the other."""

    name = "Python"
    roots = PYTHON_ROOTS
    policies = ("muzero",)

    def versions(self) -> str:
        return "Python baseline: `bench/mcts_baseline.py` (muzero-general style, torch batch-1 model calls)"

    def setup(self, p: Problem) -> None:
        model = TorchModel(p)
        self.search_ = mcts_baseline.MuZeroSearch(model.recurrent, discount=DISCOUNT, pb_c_init=PB_C_INIT,
                                                  pb_c_base=PB_C_BASE, dirichlet_alpha=ALPHA,
                                                  dirichlet_fraction=FRACTION)
        # Per-root tensors as a self-play loop would hold them (one environment, one root at a time).
        self.h0 = [torch.from_numpy(p.h0[i:i + 1].copy()) for i in range(self.roots)]
        self.logits = [torch.from_numpy(p.root_logits[i].copy()) for i in range(self.roots)]

    def search(self, policy, sims, seed):
        if policy not in self.policies:
            raise Unavailable(NA)
        s = self.search_
        s.model_seconds = 0.0
        with torch.no_grad():
            t0 = time.perf_counter()
            roots = [s.run(self.h0[i], self.logits[i], sims, seed=seed * self.roots + i) for i in range(self.roots)]
            elapsed = time.perf_counter() - t0
        self.visits = np.asarray([mcts_baseline.visit_counts(r) for r in roots])
        self.values = np.asarray([r.value() for r in roots])
        return elapsed, elapsed - s.model_seconds


ADAPTERS = {"pymbrl": Pymbrl, "LightZero": LightZero, "mctx": Mctx, "Python": Python}


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------

@dataclass
class Cell:
    """One library in one case: seconds per whole search, end to end and inside the tree code."""

    roots: int
    sims: int
    total: list[float]
    tree: list[float]

    def rate(self, which: str = "total") -> float:
        """Tree-simulations per second from the median time."""
        return self.roots * self.sims / statistics.median(getattr(self, which))

    def spread(self) -> float:
        t = self.total
        return (max(t) - min(t)) / statistics.median(t) if len(t) > 1 else 0.0


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.libs = {name: ADAPTERS[name]() for name in args.libs}
        # results[(policy, S)][lib] -> Cell, or a string saying why there is none
        self.results: dict[tuple[str, int], dict[str, Cell | str]] = {}
        self.checks: list[str] = []
        self.notes: list[str] = []

    def ready(self) -> dict[str, Adapter]:
        return {n: a for n, a in self.libs.items() if a.reason is None}

    def log(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.t0:6.1f} s] {msg}", file=sys.stderr, flush=True)

    def check(self, name: str, ad: Adapter, policy: str, sims: int) -> None:
        """Every root's children must have been visited S times in all (one visit per simulation)."""
        if ad.visits is None:
            self.checks.append(f"{name} {policy} S={sims}: not checked")
            return
        sums = ad.visits.sum(axis=1)
        ok = ad.visits.shape == (ad.roots, A) and bool((sums == sims).all())
        got = "" if ok else f" (shape {ad.visits.shape}, visit sums {sorted(set(sums.tolist()))[:4]})"
        mean = float(np.mean(ad.values[:PYTHON_ROOTS])) if ad.values is not None else float("nan")
        self.checks.append(f"{name} {policy} S={sims}: root visits {'ok' if ok else 'WRONG' + got}, "
                           f"mean search value {mean:+.3f}")

    def case(self, policy: str, sims: int) -> None:
        a = self.args
        res = self.results.setdefault((policy, sims), {})
        libs = {}
        for name, ad in self.ready().items():
            if policy not in ad.policies:
                res[name] = NA
                continue
            ad.visits = ad.values = None   # so that an adapter that reports nothing is not judged on the last case
            try:   # warm-up: jit compilation, first-touch allocations; also the sanity check
                ad.search(policy, sims, seed=10_000)
            except Unavailable as e:
                res[name] = str(e)
                continue
            except Exception as e:  # a peer's failure must not end the benchmark
                res[name] = f"unavailable ({short(e, 70)})"
                continue
            self.check(name, ad, policy, sims)
            libs[name] = ad
            res[name] = Cell(ad.roots, sims, [], [])
        order = list(libs)
        for r in range(a.repeats[sims]):
            # Rotate who goes first, so that no library always runs right after the same other one.
            k = r % len(order) if order else 0
            for name in order[k:] + order[:k]:
                total, tree = libs[name].search(policy, sims, seed=r)
                res[name].total.append(total)
                if tree is not None:
                    res[name].tree.append(tree)
        for name, cell in res.items():
            if isinstance(cell, Cell):
                self.log(f"    {name}: {cell.rate():,.0f} tree-simulations/s")

    def model_floor(self, p: Problem) -> None:
        """The torch model alone, S calls on [B, D]: the part of any torch-driven search that is not tree."""
        model = TorchModel(p)
        h = torch.from_numpy(p.h0)
        act = torch.zeros(B, dtype=torch.int64)
        times = []
        with torch.no_grad():
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(50):
                    model.recurrent(h, act)
                times.append((time.perf_counter() - t0) / 50)
        self.notes.append(f"The torch model alone, one call on [{B}, {D}]: {statistics.median(times) * 1e6:,.0f} µs, "
                          f"i.e. a floor of {B / statistics.median(times):,.0f} tree-simulations/s for a search "
                          f"that calls it once per simulation.")

    def run(self) -> None:
        self.t0 = time.perf_counter()
        p = make_problem(0)
        for ad in self.ready().values():
            ad.setup(p)
        for policy in POLICIES:
            for sims in SIMULATIONS:
                self.log(f"{policy} S={sims} ...")
                self.case(policy, sims)
        self.model_floor(p)
        mc = self.libs.get("mctx")
        if mc is not None and mc.reason is None and mc.compile_seconds:
            self.notes.append("mctx compile time (first call, not in the table): " + ", ".join(
                f"{pol} S={s} {t:.1f} s" for (pol, s), t in mc.compile_seconds.items()) + ".")
        self.runtime = time.perf_counter() - self.t0


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def fmt(v: float) -> str:
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def value_of(bench: Bench, cell: Cell | str | None, name: str, which: str, per_step: bool) -> float | str:
    """Tree-simulations/s (or µs per batched simulation over B roots) of a cell, or why there is none."""
    ad = bench.libs.get(name)
    if ad is None:
        return "not run"
    if ad.reason is not None:
        return "unavailable"
    if cell is None:
        return NA
    if isinstance(cell, str):
        return cell
    if which == "tree" and not cell.tree:
        return NA
    rate = cell.rate(which)
    # One batched simulation advances B trees; a one-tree-at-a-time search's cost is linear in B.
    return B / rate * 1e6 if per_step else rate


def show(v: float | str, mark: str = "") -> str:
    return fmt(v) + mark if isinstance(v, float) else v


def ratio(ours: float | str, peer: float | str, per_step: bool) -> str:
    """How many times faster pymbrl is than the peer (above 1: pymbrl faster)."""
    if isinstance(ours, float) and isinstance(peer, float) and ours > 0 and peer > 0:
        return f"{(peer / ours if per_step else ours / peer):,.1f}x"
    return NA


def table(bench: Bench, per_step: bool) -> list[str]:
    names = list(LIBS)
    head = ("| case | " + " | ".join(names) + " | " + " | ".join(f"pymbrl / {n}" for n in PEERS) + " |")
    lines = [head, "|---|" + "---:|" * (len(names) + len(PEERS))]
    for which in ("total", "tree"):
        for policy in POLICIES:
            for sims in SIMULATIONS:
                res = bench.results.get((policy, sims), {})
                label = f"{'MuZero' if policy == 'muzero' else 'Gumbel MuZero'} S={sims}"
                if which == "tree":
                    label += ", tree code only"
                vals = {n: value_of(bench, res.get(n), n, which, per_step) for n in names}
                cells = [show(vals[n], "*" if n == "Python" else "") for n in names]
                ratios = [ratio(vals["pymbrl"], vals[n], per_step) for n in PEERS]
                lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    return lines


def report(bench: Bench, argv: list[str], load_before: str) -> str:
    a = bench.args
    command = " ".join(["python bench/bench_mcts.py", *argv])
    reps = ", ".join(f"{a.repeats[s]} at S={s}" for s in SIMULATIONS)
    lines = [
        "## Batched MCTS: pymbrl vs LightZero, mctx and a pure-Python search",
        "",
        f"- Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- Machine: {machine()}; `torch.set_num_threads(1)`, XLA on one CPU thread",
        f"- Command: `{command}`" + ("" if argv else " (what `make bench` runs)") +
        f"; total runtime {bench.runtime:.0f} s",
        f"- 1-minute load average before / after: {load_before} / {load()} "
        f"(other work on the machine inflates the timings)",
        f"- Python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}",
    ]
    for name, ad in bench.libs.items():
        lines.append(f"- {ad.versions() if ad.reason is None else name + ': ' + ad.reason}")
    lines += [
        f"- Setup: B={B} roots, A={A} actions, latent {D}, model `h' = tanh(h Ws + Wa[a])`, reward/value/"
        f"logits linear in h' (same float32 weights for all); pUCT {PB_C_INIT} / {PB_C_BASE}, discount "
        f"{DISCOUNT}; MuZero with Dirichlet noise (alpha {ALPHA}, fraction {FRACTION}); Gumbel MuZero "
        f"considering all {A} actions. Medians over {reps} whole searches per library, the libraries "
        f"interleaved, after one warm-up search each.",
        "",
        "Tree-simulations per second (B x S / seconds per search; higher is better):",
        "",
        *table(bench, per_step=False),
        "",
        f"µs per batched simulation (one simulation on each of the {B} trees; lower is better):",
        "",
        *table(bench, per_step=True),
        "",
        "Ratios: above 1 means pymbrl is faster. \\* Python: measured on the first "
        f"{PYTHON_ROOTS} roots, one tree at a time (its cost is linear in B), µs scaled to {B} roots; "
        "MuZero only.",
        "",
        "What is timed (from root outputs in hand to root statistics read):",
        "",
        "- pymbrl: `mcts.muzero_policy(root, recurrent_fn, S, ...)` / `mcts.gumbel_muzero_policy(...)` with "
        "a torch `recurrent_fn` on the batch.",
        "- LightZero: root noise (`np.random.dirichlet` per root, as its collector does), `Roots` + `prepare`, "
        "then per simulation `batch_traverse` (C++), the gather of the leaves' parent latents from its "
        "Python list of numpy arrays, the torch model on the batch, numpy/`tolist` conversions and "
        "`batch_backpropagate` (C++); finally `get_distributions`/`get_values` (+ `get_policies` for "
        "Gumbel). Tree code only = time inside `batch_traverse` + `batch_backpropagate`. (Its loop also "
        "applies an inverse scalar transform to categorical value/reward outputs; this model outputs "
        "scalars, so there is none.)",
        "- mctx: one jitted call of `muzero_policy` / `gumbel_muzero_policy` returning action, action "
        "weights and the root summary, `block_until_ready`; compilation excluded. Its tree and model are "
        "fused by XLA, so there is no tree-only time.",
        "- Python: `bench/mcts_baseline.py`; tree code only = everything but the batch-1 model calls.",
    ]
    noisy = [f"{pol} S={s} / {n} ({c.spread():.0%})" for (pol, s), d in bench.results.items()
             for n, c in d.items() if isinstance(c, Cell) and c.spread() > 0.5]
    if noisy:
        lines += ["", "Noisy cells (max - min over the repeats above 50% of the median): " + ", ".join(noisy) + "."]
    if bench.checks:
        lines += ["", "Sanity (warm-up search of each case; the search value is the root's, averaged over the "
                  f"first {PYTHON_ROOTS} roots, and is not expected to agree across libraries: their "
                  "Q normalisations, noise draws and tie-breaking differ, and mctx averages the root's own "
                  "value estimate in): " + "; ".join(bench.checks) + "."]
    if bench.notes:
        lines += [""] + [f"- {n}" for n in bench.notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: fewer repeats, no file written unless --output")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"markdown file to update (default {DEFAULT_OUTPUT.name} next to this script)")
    parser.add_argument("--libs", default=",".join(LIBS),
                        help="comma-separated subset of " + ",".join(LIBS) + " (any case; default: all)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed searches per library and case (default 7 at S=50 and 5 at S=200, "
                             "3 and 2 with --quick)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    wanted = {n.strip().lower() for n in args.libs.split(",")}
    unknown = wanted - {n.lower() for n in LIBS}
    if unknown:
        parser.error(f"unknown libraries {sorted(unknown)}; choose from {', '.join(LIBS)}")
    args.libs = [n for n in LIBS if n.lower() in wanted]
    default = {50: 3, 200: 2} if args.quick else {50: 7, 200: 5}
    args.repeats = {s: args.repeats or default[s] for s in SIMULATIONS}
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)

    load_before = load()
    bench = Bench(args)
    bench.run()
    publish(report(bench, argv, load_before), output, SECTION)


if __name__ == "__main__":
    main()
