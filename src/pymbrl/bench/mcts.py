"""Batched MCTS microbenchmark: pymbrl against LightZero's compiled trees, mctx and a pure-Python search.

Measures, in one process, tree-simulations per second (B roots x S simulations / seconds) of a
whole search, starting from root outputs already computed and ending with the root statistics a
training loop reads (visit counts, search values), for

- MuZero search with Dirichlet noise at the root;
- Gumbel MuZero search (all 16 actions considered at the root);
- Stochastic MuZero search (decision and chance nodes, C = 8 chance outcomes, Dirichlet noise at
  the root);
- Sampled MuZero search with continuous actions (action dimension 2, K = 20 actions sampled at
  every node);

on B = 256 roots, A = 16 actions, latent size 16, pUCT constants 1.25 / 19652, discount 0.997,
Dirichlet alpha 0.3 / fraction 0.25, with one trivial model shared by every library (same float32
weights, numpy seed 0): ``h' = tanh(h @ Ws + Wa[a])``, reward ``h' @ wr``, value ``h' @ wv``, prior
logits ``h' @ Wp``. The model is cheap on purpose, so that the search itself is what is measured.
Stochastic MuZero splits a step in two: the decision model ``s = tanh(h @ Ws + Wa[a])`` gives the
afterstate, its chance logits ``s @ Wc`` [C] and value ``s @ wq``; the chance model
``h' = tanh(s @ Wt + Wo[c])`` the next state, with reward, value and prior logits as above. Sampled
MuZero's actions are vectors: ``h' = tanh(h @ Ws + a @ Wc2)``, and its policy is a Gaussian of
mean ``h' @ Wmu / 4`` and standard deviation ``softplus(h' @ Wsig / 4) + 0.1`` per action
dimension, squashed by tanh (as LightZero's compiled tree does when it samples). The 1/4 keeps the
draws where tanh does not saturate: LightZero's tree tells a node's sampled actions apart by their
values printed to 6 decimals, so saturated draws (all printing as 1.000000) would merge.

The cost of a search depends on the shape of its trees, and that depends on the model's priors, so
a case runs with one of two variants of the model, the same random draws at two scales (:data:`MODELS`).

Peers, each behind a small adapter with ``search(policy, S, seed) -> (seconds, tree seconds)``
(which peer runs which search: LightZero all four, mctx all but Sampled MuZero, which it does not
have, the Python search MuZero only); a peer that is not installed is reported with how to get it:

- pymbrl twice: with the thread count it picks itself for B roots, and with ``num_threads=1`` for
  per-core comparisons (every peer runs on one core).
- LightZero 0.2.0: its compiled Cython/C++ trees (``lzero.mcts.ctree``) driven by a loop that does
  per simulation what its ``*MCTSCtree.search`` methods do. The time inside ``batch_traverse`` +
  ``batch_backpropagate`` is reported separately.
- mctx: ``muzero_policy`` / ``gumbel_muzero_policy`` / ``stochastic_muzero_policy``, jitted, JAX on
  one CPU thread, timed after a compiling warm-up call and up to ``block_until_ready``.
- Python: :mod:`pymbrl.bench.mcts_baseline`, one tree at a time with batch-1 model calls
  (muzero-general style), on fewer roots since it is slow; MuZero only.

Each case runs every library ``repeats`` times, the libraries interleaved (their order rotating) so
that a burst of load on the machine hits them all; :class:`Cell` keeps every timing. Run it with
``torch.set_num_threads(1)`` for per-core comparisons. ``bench/bench_mcts.py`` writes the full report
into the repository's ``bench/RESULTS.md``; :func:`benchmark` is ``pymbrl bench mcts``.
"""

from __future__ import annotations

import importlib
import os
import statistics
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import pymbrl
from pymbrl import mcts
from pymbrl.bench import mcts_baseline
from pymbrl.bench.timing import Run, clock, load, machine, rotated, short, spread, text_table, version

PYMBRL, PYMBRL1 = "pymbrl", "pymbrl, 1 thread"
PEERS = ("LightZero", "mctx", "Python")
LIBS = (PYMBRL, PYMBRL1, *PEERS)
"""The libraries by their column names in the tables."""
MODELS = {
    "peaked": "weights N(0, 1): prior logits of std ~3.5, top prior ~0.7; narrow trees, deep on average "
              "(like a trained network)",
    "flat": "weights N(0, 1/D): prior logits of std < 1, top prior ~0.2; bushier trees, shallower on average "
            "(a few roots still grow one long line)",
}
"""The model variants (same random draws, two scales) and what they do to the trees. The cost of a
simulation follows the shape of the trees (a simulation walks from the root to a leaf), so ratios
between libraries are compared within a variant."""
POLICIES = {"muzero": "MuZero", "gumbel": "Gumbel MuZero", "stochastic": "Stochastic MuZero",
            "sampled": "Sampled MuZero"}
"""``--policies`` name -> the search's name in the tables."""
SIMULATIONS = (50, 200)
B, A, D = 256, 16, 16
"""Roots, actions, latent size."""
C = 8
"""Stochastic MuZero's chance outcomes (a codebook of 8, as for a few dice or tile outcomes)."""
AD, K = 2, 20
"""Sampled MuZero: action dimension and actions sampled per node (the paper's K = 20)."""
SIGMA_MIN, GAUSSIAN_SCALE = 0.1, 0.25
"""Floor of the sampled policy's standard deviation, and the scale of its mean and pre-softplus
standard deviation (1 / sqrt(D), see the module docstring)."""
CELL_SECONDS = 30.0
"""A library whose warm-up search took longer than CELL_SECONDS / repeats runs fewer timed searches
(at least MIN_REPEATS), so that a slow peer does not stretch the run by minutes."""
MIN_REPEATS = 3
PYTHON_ROOTS = 8
"""Roots the pure-Python search runs on (it handles one tree at a time, so its cost is linear in B)."""
ALPHA, FRACTION = 0.3, 0.25
PB_C_INIT, PB_C_BASE = 1.25, 19652
DISCOUNT = 0.997
"""LightZero's default discount_factor; every library gets it (mctx and pymbrl from the model)."""
LZ_VALUE_DELTA_MAX = 0.01
"""LightZero's default ``value_delta_max`` for its min-max statistics."""
NA = "—"


class Unavailable(Exception):
    """The library cannot run this case; the message says why."""


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
    # Stochastic MuZero: afterstate -> state, outcome rows, chance logits, afterstate value.
    wt: np.ndarray   # [D, D]
    wo: np.ndarray   # [C, D]
    wc: np.ndarray   # [D, C]
    wq: np.ndarray   # [D]
    # Sampled MuZero: action vector -> latent, policy mean and pre-softplus standard deviation.
    wc2: np.ndarray  # [AD, D]
    wmu: np.ndarray  # [D, AD]
    wsig: np.ndarray  # [D, AD]
    root_mu: np.ndarray     # [B, AD]
    root_sigma: np.ndarray  # [B, AD]


def make_problem(model: str, seed: int = 0) -> Problem:
    """The problem of a model variant (see MODELS); both variants draw the same numbers."""
    rng = np.random.default_rng(seed)
    # "flat" scales by 1/sqrt(D) so that tanh stays away from saturation and the priors stay near
    # uniform; "peaked" keeps N(0, 1), which saturates tanh and sharpens the priors.
    scale = np.sqrt(D) if model == "flat" else 1.0

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / scale).astype(np.float32)

    ws, wa, wr, wv, wp = w(D, D), w(A, D), w(D), w(D), w(D, A)
    h0 = rng.standard_normal((B, D)).astype(np.float32)
    # Drawn after the MuZero weights, so that those stay what they were before these searches came.
    wt, wo, wc, wq = w(D, D), w(C, D), w(D, C), w(D)
    wc2, wmu, wsig = w(AD, D), w(D, AD), w(D, AD)
    return Problem(ws, wa, wr, wv, wp, h0, h0 @ wp, h0 @ wv, wt, wo, wc, wq, wc2, wmu, wsig,
                   h0 @ wmu * GAUSSIAN_SCALE, softplus(h0 @ wsig * GAUSSIAN_SCALE) + SIGMA_MIN)


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x).astype(np.float32)


class TorchModel:
    """The model in torch on ``device``, for pymbrl, LightZero and the Python search."""

    def __init__(self, p: Problem, device: torch.device) -> None:
        def put(*arrays: np.ndarray):
            return (torch.from_numpy(x).to(device) for x in arrays)

        self.ws, self.wa, self.wr, self.wv, self.wp = put(p.ws, p.wa, p.wr, p.wv, p.wp)
        self.wt, self.wo, self.wc, self.wq = put(p.wt, p.wo, p.wc, p.wq)
        self.wc2, self.wmu, self.wsig = put(p.wc2, p.wmu, p.wsig)

    def recurrent(self, h: torch.Tensor, action: torch.Tensor):
        """``h`` [n, D], ``action`` int64 [n] -> (next_h [n, D], reward [n], value [n], prior_logits [n, A])."""
        nh = torch.tanh(h @ self.ws + self.wa[action.reshape(-1)])
        return nh, nh @ self.wr, nh @ self.wv, nh @ self.wp

    def decision(self, h: torch.Tensor, action: torch.Tensor):
        """Stochastic MuZero, state -> afterstate: ``h`` [n, D], ``action`` int64 [n] ->
        (afterstate [n, D], chance_logits [n, C], afterstate_value [n])."""
        s = torch.tanh(h @ self.ws + self.wa[action.reshape(-1)])
        return s, s @ self.wc, s @ self.wq

    def chance(self, s: torch.Tensor, outcome: torch.Tensor):
        """Stochastic MuZero, afterstate -> state: ``s`` [n, D], ``outcome`` int64 [n] ->
        (next_h [n, D], reward [n], value [n], prior_logits [n, A])."""
        nh = torch.tanh(s @ self.wt + self.wo[outcome.reshape(-1)])
        return nh, nh @ self.wr, nh @ self.wv, nh @ self.wp

    def sampled(self, h: torch.Tensor, action: torch.Tensor):
        """Sampled MuZero: ``h`` [n, D], ``action`` float [n, AD] -> (next_h [n, D], reward [n],
        value [n], mu [n, AD], sigma [n, AD])."""
        nh = torch.tanh(h @ self.ws + action.to(h.dtype) @ self.wc2)
        return (nh, nh @ self.wr, nh @ self.wv, nh @ self.wmu * GAUSSIAN_SCALE,
                torch.nn.functional.softplus(nh @ self.wsig * GAUSSIAN_SCALE) + SIGMA_MIN)


# --------------------------------------------------------------------------------------------
# Adapters. ``setup(problem)`` prepares inputs (not timed); ``search(policy, S, seed)`` runs one whole
# search and returns (seconds end to end, seconds inside the tree code or None); afterwards
# ``visits`` holds the root visit counts [roots, A] ([roots, K] for Sampled MuZero, or None) and
# ``values`` the root search values.
# --------------------------------------------------------------------------------------------

class Adapter:
    """A library under test; ``reason`` is None when it can run, else why not and how to get it."""

    name = "?"
    reason: str | None = None
    roots = B
    policies = tuple(POLICIES)

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.visits: np.ndarray | None = None
        self.values: np.ndarray | None = None

    def versions(self) -> str:
        raise NotImplementedError

    def setup(self, p: Problem) -> None:
        raise NotImplementedError

    def search(self, policy: str, sims: int, seed: int) -> tuple[float, float | None]:
        raise NotImplementedError


class Pymbrl(Adapter):
    """pymbrl.mcts: torch roots and a torch recurrent function on the device, the tree in C++.

    ``num_threads`` None: the thread count pymbrl picks itself for B roots on this machine.
    """

    name = PYMBRL

    def __init__(self, device: torch.device, num_threads: int | None = None) -> None:
        super().__init__(device)
        # pymbrl's own choice is resolved once (a tree built with num_threads=None) and then passed
        # explicitly: a search with num_threads=None recycles any spare tree of its shape, which
        # may be one the 1-thread column left behind.
        self.num_threads = mcts.Tree(B, A, 1).num_threads if num_threads is None else num_threads
        self.threads_used: int | None = None
        """``out.search_tree.tree.num_threads`` of the last search: what the column really ran on."""
        # Trees are recycled between searches, so the core time is the difference of its counter.
        # Weak keys: holding a tree would stop the search from reusing it.
        self.core_before: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def versions(self) -> str:
        info = pymbrl.build_info()
        return (f"{self.name}: pymbrl {pymbrl.__version__} ({info.get('build_type', '?')}, "
                f"{info.get('compiler', '?')}, flags `{str(info.get('flags', '?')).strip()}`), "
                f"trees on {self.threads_used} thread(s)" +
                (" (`tree.num_threads` of its searches, pymbrl's own choice for "
                 f"{B} roots on this machine)" if self.name == PYMBRL else " (`num_threads=1`)"))

    def setup(self, p: Problem) -> None:
        device = self.device
        model = TorchModel(p, device)

        def put(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(x).to(device)

        self.root = mcts.Root(prior_logits=put(p.root_logits), value=put(p.root_value), embedding=put(p.h0))
        discount = torch.full((B,), DISCOUNT, device=device)

        def recurrent_fn(embedding, action):
            nh, reward, value, logits = model.recurrent(embedding, action)
            return mcts.RecurrentOutput(reward=reward, discount=discount, prior_logits=logits, value=value), nh

        def decision_fn(embedding, action):
            afterstate, chance_logits, afterstate_value = model.decision(embedding, action)
            return mcts.DecisionOutput(chance_logits=chance_logits, afterstate_value=afterstate_value), afterstate

        def chance_fn(afterstate, outcome):   # on the rows whose leaf needs it: a view of the first n
            nh, reward, value, logits = model.chance(afterstate, outcome)
            return mcts.ChanceOutput(reward=reward, discount=discount[:len(reward)], prior_logits=logits,
                                     value=value), nh

        def sampled_fn(embedding, action):
            nh, reward, value, mu, sigma = model.sampled(embedding, action)
            return mcts.SampledRecurrentOutput(reward=reward, discount=discount, policy=squashed_gaussian(mu, sigma),
                                               value=value), nh

        self.recurrent_fn, self.decision_fn, self.chance_fn, self.sampled_fn = (recurrent_fn, decision_fn, chance_fn,
                                                                                sampled_fn)
        self.sampled_root = mcts.SampledRoot(policy=squashed_gaussian(put(p.root_mu), put(p.root_sigma)),
                                             value=put(p.root_value), embedding=put(p.h0))

    def search(self, policy, sims, seed):
        # The benchmark's constants are passed even where they are pymbrl's defaults: a mismatch in
        # the API then fails loudly instead of comparing different searches.
        with torch.no_grad():
            t0 = clock(self.device)
            if policy == "muzero":
                out = mcts.muzero_policy(self.root, self.recurrent_fn, sims, dirichlet_alpha=ALPHA,
                                         dirichlet_fraction=FRACTION, pb_c_init=PB_C_INIT, pb_c_base=PB_C_BASE,
                                         seed=seed, num_threads=self.num_threads)
            elif policy == "gumbel":
                out = mcts.gumbel_muzero_policy(self.root, self.recurrent_fn, sims, max_num_considered_actions=A,
                                                seed=seed, num_threads=self.num_threads)
            elif policy == "stochastic":
                out = mcts.stochastic_muzero_policy(self.root, self.decision_fn, self.chance_fn, sims,
                                                    num_chance_outcomes=C, dirichlet_alpha=ALPHA,
                                                    dirichlet_fraction=FRACTION, pb_c_init=PB_C_INIT,
                                                    pb_c_base=PB_C_BASE, seed=seed, num_threads=self.num_threads)
            else:
                out = mcts.sampled_muzero_policy(self.sampled_root, self.sampled_fn, sims, num_samples=K,
                                                 pb_c_init=PB_C_INIT, pb_c_base=PB_C_BASE, seed=seed,
                                                 num_threads=self.num_threads)
            summary = out.search_tree.summary()
            elapsed = clock(self.device) - t0
        # Stochastic MuZero's search tree is its own object, without a Tree or a core-time counter.
        tree = getattr(out.search_tree, "tree", out.search_tree)
        self.threads_used = tree.num_threads
        inside = None
        if hasattr(tree, "core_seconds"):
            inside = tree.core_seconds - self.core_before.get(tree, 0.0)
            self.core_before[tree] = tree.core_seconds
        self.visits, self.values = summary.visit_counts.cpu().numpy(), summary.value.cpu().numpy()
        return elapsed, inside

    def leaf_depths(self, policy: str, sims: int, seed: int) -> tuple[float, float, int]:
        """Over the B trees of one search (the root has depth 0): the mean depth of the leaf a
        simulation expands, the mean over simulations of the deepest such leaf in the batch, and
        the depth of the deepest node.

        pymbrl has no depth API, so this runs the search's own loop on a low-level ``Tree`` (same
        begin arguments and seed as ``search``, hence the same trees) and tracks
        ``depth[node] = depth[parent] + 1`` from each selection.
        """
        tree = mcts.Tree(B, A, sims + 1, num_threads=self.num_threads)
        pool = mcts.EmbeddingPool(self.root.embedding, B, sims + 1)
        tree.set_roots(self.root.prior_logits, self.root.value)
        if policy == "muzero":
            tree.begin_muzero(sims, dirichlet_alpha=ALPHA, dirichlet_fraction=FRACTION, pb_c_init=PB_C_INIT,
                              pb_c_base=PB_C_BASE, seed=seed)
        else:
            tree.begin_gumbel(sims, max_num_considered_actions=A, seed=seed)
        depth = torch.zeros(sims + 1, B, dtype=torch.int64)   # [node, root]
        batch = torch.arange(B)
        total = batch_max = 0
        with torch.no_grad():
            for _ in range(sims):
                sel = tree.select()
                leaf = depth[sel.parent, batch] + 1
                depth[sel.node, batch] = leaf
                total += int(leaf.sum())
                batch_max += int(leaf.max())
                output, nh = self.recurrent_fn(pool.gather(sel.parent * B + batch), sel.action)
                pool.scatter(sel.node * B + batch, nh)
                tree.expand_and_backup(output)
        return total / (B * sims), batch_max / sims, int(depth.max())


def squashed_gaussian(mu: torch.Tensor, sigma: torch.Tensor) -> torch.distributions.Distribution:
    """The sampled policy: a diagonal Gaussian over [n, AD] squashed into (-1, 1) by tanh (the
    actions LightZero's compiled tree samples), batch shape [n], without argument validation."""
    dist = torch.distributions
    base = dist.Independent(dist.Normal(mu, sigma, validate_args=False), 1, validate_args=False)
    return dist.TransformedDistribution(base, [dist.TanhTransform(cache_size=1)], validate_args=False)


class Pymbrl1(Pymbrl):
    """pymbrl with ``num_threads=1``: one core, like every peer."""

    name = PYMBRL1

    def __init__(self, device: torch.device) -> None:
        super().__init__(device, num_threads=1)


class LightZero(Adapter):
    """LightZero's compiled trees, driven like ``MuZeroMCTSCtree.search`` / ``GumbelMuZeroMCTSCtree.search``
    (and the Stochastic and Sampled MuZero classes, which differ as said in their methods below).

    Per simulation that loop: makes a ``ResultsWrapper``; ``batch_traverse`` (C++) walks all B trees
    serially and returns Python lists (search-path depth and batch index of each leaf's parent
    latent, the actions, to-play); gathers the parents' latents one by one from a Python list of
    per-simulation numpy arrays into a new array; calls the model on the batch (torch); converts
    the outputs to numpy and then to Python lists; appends the new latents to the list; and calls
    ``batch_backpropagate`` (C++), which expands the B leaves and backs up along the paths.
    """

    name = "LightZero"

    def __init__(self, device: torch.device) -> None:
        super().__init__(device)
        # The ctree modules are self-contained extension modules: a folder holding lzero/mcts/ctree
        # on the path is enough (LightZero itself, with its DI-engine dependency tree, need not be).
        try:
            from lzero.mcts.ctree.ctree_muzero import mz_tree
        except ImportError as e:
            self.reason = (f"not installed ({short(e, 60)}); its compiled trees come in LightZero's wheel: "
                           f"`pip download LightZero==0.2.0 --no-deps --only-binary=:all:`, unzip its "
                           f"lzero/mcts/ctree and put the folder holding lzero/ on PYTHONPATH (`pip install "
                           f"LightZero` also works but pulls DI-engine)")
            return
        self.trees = {"muzero": mz_tree}
        self.errors: dict[str, str] = {}
        for policy, module in (("gumbel", "ctree_gumbel_muzero.gmz_tree"),
                               ("stochastic", "ctree_stochastic_muzero.stochastic_mz_tree"),
                               ("sampled", "ctree_sampled_muzero.smz_tree")):
            try:
                self.trees[policy] = importlib.import_module("lzero.mcts.ctree." + module)
            except ImportError as e:
                self.errors[policy] = short(e, 70)
        self.policies = tuple(self.trees)
        self.where = Path(mz_tree.__file__).parent.parent

    def versions(self) -> str:
        modules = ", ".join(f"`{Path(t.__file__).parent.name}`" for t in self.trees.values())
        return f"LightZero {version('LightZero')} compiled trees ({modules}; from `{self.where}`)"

    def setup(self, p: Problem) -> None:
        self.model = TorchModel(p, self.device)
        # What LightZero's collector holds after the initial inference: numpy latents, Python lists.
        self.h0 = p.h0.copy()
        self.root_logits = p.root_logits
        self.root_value = p.root_value
        self.legal = [list(range(A)) for _ in range(B)]
        self.to_play = [-1] * B   # -1: not a board game
        self.zeros = [0.0] * B
        # Sampled MuZero's policy outputs, as LightZero's model gives them: [mu, sigma] per root.
        self.root_gaussian = np.concatenate([p.root_mu, p.root_sigma], axis=1)

    def search(self, policy, sims, seed):
        tree = self.trees.get(policy)
        if tree is None:
            raise Unavailable(f"unavailable ({self.errors.get(policy, 'no tree')})")
        if policy == "stochastic":
            return self.search_stochastic(tree, sims, seed)
        if policy == "sampled":
            return self.search_sampled(tree, sims)
        gumbel = policy == "gumbel"
        backup = tree.batch_back_propagate if gumbel else tree.batch_backpropagate
        np.random.seed(seed)   # LightZero draws the root noise from numpy's global generator
        inside = 0.0
        device = self.device
        with torch.no_grad():
            t0 = clock(device)
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
                t = clock(device)
                if gumbel:
                    depth_idx, batch_idx, actions, to_play = tree.batch_traverse(
                        roots, sims, A, DISCOUNT, results, self.to_play)
                else:
                    depth_idx, batch_idx, actions, to_play = tree.batch_traverse(
                        roots, PB_C_BASE, PB_C_INIT, DISCOUNT, stats, results, self.to_play)
                inside += clock(device) - t
                parents = torch.from_numpy(np.asarray([latents[x][y] for x, y in zip(depth_idx, batch_idx)])).to(device)
                out = self.model.recurrent(parents, torch.from_numpy(np.asarray(actions)).long().to(device))
                h, reward, value, prior_logits = (x.detach().cpu().numpy() for x in out)
                latents.append(h)
                reward, value = reward.reshape(-1).tolist(), value.reshape(-1).tolist()
                prior_logits = prior_logits.tolist()
                t = clock(device)
                backup(sim + 1, DISCOUNT, reward, value, prior_logits, stats, results, to_play)
                inside += clock(device) - t
            visits, values = roots.get_distributions(), roots.get_values()
            if gumbel:
                roots.get_policies(DISCOUNT, A)   # the improved policy, Gumbel MuZero's training target
            elapsed = clock(device) - t0
        self.visits, self.values = np.asarray(visits), np.asarray(values)
        return elapsed, inside

    def search_stochastic(self, tree, sims: int, seed: int) -> tuple[float, float]:
        """Like ``StochasticMuZeroMCTSCtree.search``: ``batch_traverse`` also says which new leaves are
        chance nodes (afterstates, reached by an action) and which decision nodes (states, reached by
        a chance outcome); the model runs once on each group (decision model on the first, chance
        model on the second), its outputs are split into rows and converted row by row, the new
        latents are put back in leaf order, and ``batch_backpropagate`` runs once per group."""
        np.random.seed(seed)
        inside = 0.0
        device = self.device
        model = self.model
        with torch.no_grad():
            t0 = clock(device)
            noises = [np.random.dirichlet([ALPHA] * A).astype(np.float32).tolist() for _ in range(B)]
            roots = tree.Roots(B, self.legal, C)
            roots.prepare(FRACTION, noises, self.zeros, self.root_logits.tolist(), self.to_play)
            stats = tree.MinMaxStatsList(B)
            stats.set_delta(LZ_VALUE_DELTA_MAX)
            latents = [self.h0]
            for sim in range(sims):
                results = tree.ResultsWrapper(num=B)
                t = clock(device)
                is_chance, depth_idx, batch_idx, actions, to_play = tree.batch_traverse(
                    roots, PB_C_BASE, PB_C_INIT, DISCOUNT, stats, results, self.to_play)
                inside += clock(device) - t
                parents = torch.from_numpy(np.asarray([latents[x][y] for x, y in zip(depth_idx, batch_idx)])).to(device)
                actions = torch.from_numpy(np.asarray(actions)).long().to(device)
                n = len(is_chance)
                rows: list = [None] * n   # (latent, value, reward, logits) of each leaf
                leaf_is_chance: list = [None] * n
                groups = [(i, [j for j in range(n) if is_chance[j] == i]) for i in (True, False)]
                for chance_leaf, idx in groups:
                    if not idx:
                        continue
                    group = torch.stack([parents[j] for j in idx]), torch.stack([actions[j] for j in idx])
                    if chance_leaf:   # a new afterstate: the decision model (no reward on that edge)
                        h, logits, value = model.decision(*group)
                        reward = torch.zeros_like(value)
                    else:
                        h, reward, value, logits = model.chance(*group)
                    for j, hh, v, r, lg in zip(idx, h.split(1), value.split(1), reward.split(1), logits.split(1)):
                        rows[j] = (hh.cpu().numpy(), v.cpu().numpy().reshape(-1).tolist(),
                                   r.cpu().numpy().reshape(-1).tolist(), lg.cpu().numpy().tolist())
                        leaf_is_chance[j] = chance_leaf
                latents.append(np.concatenate([r[0] for r in rows], axis=0))
                for chance_leaf, idx in groups:
                    if not idx:
                        continue
                    value = np.concatenate([rows[j][1] for j in idx]).tolist()
                    reward = np.concatenate([rows[j][2] for j in idx]).tolist()
                    logits = np.concatenate([rows[j][3] for j in idx]).tolist()
                    t = clock(device)
                    tree.batch_backpropagate(sim + 1, DISCOUNT, reward, value, logits, stats, results, to_play,
                                             leaf_is_chance, idx)
                    inside += clock(device) - t
            visits, values = roots.get_distributions(), roots.get_values()
            elapsed = clock(device) - t0
        self.visits, self.values = np.asarray(visits), np.asarray(values)
        return elapsed, inside

    def search_sampled(self, tree, sims: int) -> tuple[float, float]:
        """Like ``SampledMuZeroMCTSCtree.search`` with continuous actions: the compiled tree samples
        the K actions of each new node itself (tanh of a Gaussian draw from the [mu, sigma] outputs,
        seeded from the clock: runs are not repeatable), ``batch_traverse`` returns the chosen
        action vectors as lists; no root noise (``prepare_no_noise``), like pymbrl's search."""
        inside = 0.0
        device = self.device
        model = self.model
        with torch.no_grad():
            t0 = clock(device)
            roots = tree.Roots(B, [[-1] * K for _ in range(B)], AD, K, True)
            roots.prepare_no_noise(self.zeros, self.root_gaussian.tolist(), self.to_play)
            stats = tree.MinMaxStatsList(B)
            stats.set_delta(LZ_VALUE_DELTA_MAX)
            latents = [self.h0]
            for sim in range(sims):
                results = tree.ResultsWrapper(num=B)
                t = clock(device)
                depth_idx, batch_idx, actions, to_play = tree.batch_traverse(
                    roots, PB_C_BASE, PB_C_INIT, DISCOUNT, stats, results, self.to_play, True)
                inside += clock(device) - t
                parents = torch.from_numpy(np.asarray([latents[x][y] for x, y in zip(depth_idx, batch_idx)])).to(device)
                h, reward, value, mu, sigma = model.sampled(parents, torch.from_numpy(np.asarray(actions)).to(device))
                gaussian = torch.cat([mu, sigma], dim=1)
                h, reward, value, gaussian = (x.cpu().numpy() for x in (h, reward, value, gaussian))
                latents.append(h)
                reward, value, gaussian = reward.reshape(-1).tolist(), value.reshape(-1).tolist(), gaussian.tolist()
                t = clock(device)
                tree.batch_backpropagate(sim + 1, DISCOUNT, reward, value, gaussian, stats, results, to_play)
                inside += clock(device) - t
            visits, values = roots.get_distributions(), roots.get_values()
            roots.get_sampled_actions()   # the actions the visit counts refer to
            elapsed = clock(device) - t0
        self.visits, self.values = np.asarray(visits), np.asarray(values)
        return elapsed, inside


class Mctx(Adapter):
    """mctx's policies on the same model written in jax.numpy, each jitted once per (policy, S)."""

    name = "mctx"
    policies = ("muzero", "gumbel", "stochastic")

    def __init__(self, device: torch.device) -> None:
        super().__init__(device)
        # JAX reads these when it is imported: the benchmark's device only, and on the CPU XLA on one
        # thread like torch, so that no library gets more cores than another.
        os.environ["JAX_PLATFORMS"] = device.type
        one_thread = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        if device.type == "cpu" and one_thread not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = " ".join(filter(None, (os.environ.get("XLA_FLAGS"), one_thread)))
        try:
            import jax
            import jax.numpy as jnp
            import mctx
        except ImportError as e:
            self.reason = f"not installed ({short(e, 60)}): `pip install mctx`"
            return
        try:
            self.jax_device = jax.devices()[0]
        except RuntimeError as e:   # e.g. a jax without its CUDA plugin
            self.reason = f"jax has no {device.type} backend ({short(e, 80)}): `pip install -U \"jax[cuda12]\"`"
            return
        self.jax, self.jnp, self.mctx = jax, jnp, mctx
        self.compiled: dict[tuple[str, int], object] = {}
        self.compile_seconds: dict[tuple[str, int], float] = {}

    def versions(self) -> str:
        return (f"mctx {version('mctx')}, jax {version('jax')}, jaxlib {version('jaxlib')} "
                f"({self.jax_device.platform}, XLA_FLAGS `{os.environ.get('XLA_FLAGS', '')}`)")

    def setup(self, p: Problem) -> None:
        jnp = self.jnp
        self.params = {k: jnp.asarray(getattr(p, k)) for k in ("ws", "wa", "wr", "wv", "wp", "wt", "wo", "wc", "wq")}
        self.inputs = (jnp.asarray(p.root_logits), jnp.asarray(p.root_value), jnp.asarray(p.h0))

    def recurrent_fn(self, params, rng_key, action, embedding):
        jnp, mctx = self.jnp, self.mctx
        nh = jnp.tanh(embedding @ params["ws"] + params["wa"][action])
        out = mctx.RecurrentFnOutput(reward=nh @ params["wr"], discount=jnp.full(nh.shape[:1], DISCOUNT, nh.dtype),
                                     prior_logits=nh @ params["wp"], value=nh @ params["wv"])
        return out, nh

    def decision_fn(self, params, rng_key, action, embedding):
        # mctx calls both functions on every row and keeps one result per row: on the rows it
        # discards, the index is out of range and jax clamps it.
        s = self.jnp.tanh(embedding @ params["ws"] + params["wa"][action])
        return self.mctx.DecisionRecurrentFnOutput(chance_logits=s @ params["wc"], afterstate_value=s @ params["wq"]), s

    def chance_fn(self, params, rng_key, outcome, afterstate):
        jnp = self.jnp
        nh = jnp.tanh(afterstate @ params["wt"] + params["wo"][outcome])
        out = self.mctx.ChanceRecurrentFnOutput(action_logits=nh @ params["wp"], value=nh @ params["wv"],
                                                reward=nh @ params["wr"],
                                                discount=jnp.full(nh.shape[:1], DISCOUNT, nh.dtype))
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
                elif policy == "stochastic":
                    out = mctx.stochastic_muzero_policy(params, rng_key, root, self.decision_fn, self.chance_fn,
                                                        sims, dirichlet_fraction=FRACTION, dirichlet_alpha=ALPHA,
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
        if policy not in self.policies:
            raise Unavailable(NA)
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
        return ("Python baseline: `pymbrl.bench.mcts_baseline` (muzero-general style, torch batch-1 model "
                "calls)")

    def setup(self, p: Problem) -> None:
        model = TorchModel(p, self.device)
        self.search_ = mcts_baseline.MuZeroSearch(model.recurrent, discount=DISCOUNT, pb_c_init=PB_C_INIT,
                                                  pb_c_base=PB_C_BASE, dirichlet_alpha=ALPHA,
                                                  dirichlet_fraction=FRACTION)
        # Per-root tensors as a self-play loop would hold them (one environment, one root at a time).
        self.h0 = [torch.from_numpy(p.h0[i:i + 1].copy()).to(self.device) for i in range(self.roots)]
        self.logits = [torch.from_numpy(p.root_logits[i].copy()).to(self.device) for i in range(self.roots)]

    def search(self, policy, sims, seed):
        if policy not in self.policies:
            raise Unavailable(NA)
        s = self.search_
        s.model_seconds = 0.0
        with torch.no_grad():
            t0 = clock(self.device)
            roots = [s.run(self.h0[i], self.logits[i], sims, seed=seed * self.roots + i) for i in range(self.roots)]
            elapsed = clock(self.device) - t0
        self.visits = np.asarray([mcts_baseline.visit_counts(r) for r in roots])
        self.values = np.asarray([r.value() for r in roots])
        return elapsed, elapsed - s.model_seconds


ADAPTERS = {PYMBRL: Pymbrl, PYMBRL1: Pymbrl1, "LightZero": LightZero, "mctx": Mctx, "Python": Python}


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------

Case = tuple[str, str, int]
"""(model variant, policy, S)."""
WARMUP_SEED = 10_000
"""Seed of each case's warm-up search, the one the sanity check and the depth table look at."""
DEPTH_POLICIES = ("muzero", "gumbel")
"""The searches whose tree depths the report gives (``Pymbrl.leaf_depths`` replays them on a ``Tree``)."""


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
        return spread(self.total)


@dataclass(frozen=True)
class Settings:
    """What a :class:`Bench` measures.

    ``libs`` of :data:`LIBS`, ``models`` of :data:`MODELS`, ``policies`` of :data:`POLICIES` (run in
    that order); ``repeats[S]`` timed searches per library and case at each S of ``simulations``
    (fewer, at least ``MIN_REPEATS``, for a library whose warm-up search took over ``cell_seconds /
    repeats``); ``device`` holds the torch models and latents (and JAX's platform); ``depths``:
    also measure the depth of pymbrl's trees (CPU only).
    """

    libs: tuple[str, ...] = LIBS
    models: tuple[str, ...] = tuple(MODELS)
    policies: tuple[str, ...] = tuple(POLICIES)
    simulations: tuple[int, ...] = SIMULATIONS
    repeats: dict[int, int] = field(default_factory=lambda: {50: 7, 200: 5})
    device: torch.device = torch.device("cpu")
    cell_seconds: float = CELL_SECONDS
    depths: bool = True

    def __post_init__(self) -> None:
        for what, given, known in (("libs", self.libs, LIBS), ("models", self.models, MODELS),
                                   ("policies", self.policies, POLICIES)):
            unknown = [n for n in given if n not in known]
            if unknown or not given:
                raise ValueError(f"{what}: expected a non-empty subset of {list(known)}, got {list(given)}")
        if any(s < 1 for s in self.simulations) or not self.simulations:
            raise ValueError(f"simulations: expected integers >= 1, got {list(self.simulations)}")
        if any(self.repeats.get(s, 0) < 1 for s in self.simulations):
            raise ValueError(f"repeats: expected an integer >= 1 for each of {list(self.simulations)}, "
                             f"got {self.repeats}")
        if self.depths and self.device.type != "cpu":
            raise ValueError(f"depths: measured on the CPU only, got device {self.device}")


class Bench(Run):
    """One run of :class:`Settings`: ``run()`` fills ``results``, ``depths``, ``checks`` and ``notes``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.libs = {name: ADAPTERS[name](settings.device) for name in settings.libs}
        # results[(model, policy, S)][lib] -> Cell, or a string saying why there is none
        self.results: dict[Case, dict[str, Cell | str]] = {}
        # depths[(model, policy, S)] -> Pymbrl.leaf_depths of that case
        self.depths: dict[Case, tuple[float, float, int]] = {}
        self.checks: list[str] = []
        self.notes: list[str] = []

    def check(self, name: str, ad: Adapter, key: Case) -> None:
        """Every root's children must have been visited S times in all (one visit per simulation)."""
        model, policy, sims = key
        label = f"{name} {model} {policy} S={sims}"
        if ad.visits is None:
            self.checks.append(f"{label}: not checked")
            return
        sums = ad.visits.sum(axis=1)
        columns = K if policy == "sampled" else A   # Sampled MuZero: visits of the K sampled actions
        ok = ad.visits.shape == (ad.roots, columns) and bool((sums == sims).all())
        got = "" if ok else f" (shape {ad.visits.shape}, visit sums {sorted(set(sums.tolist()))[:4]})"
        mean = float(np.mean(ad.values[:PYTHON_ROOTS])) if ad.values is not None else float("nan")
        self.checks.append(f"{label}: root visits {'ok' if ok else 'WRONG' + got}, mean search value {mean:+.3f}")

    def case(self, key: Case) -> None:
        _, policy, sims = key
        res = self.results.setdefault(key, {})
        libs = {}
        repeats = self.settings.repeats[sims]
        wanted: dict[str, int] = {}
        for name, ad in self.ready().items():
            if policy not in ad.policies:
                res[name] = NA
                continue
            ad.visits = ad.values = None   # so that an adapter that reports nothing is not judged on the last case
            try:   # warm-up: jit compilation, first-touch allocations; also the sanity check
                warmup = ad.search(policy, sims, seed=WARMUP_SEED)[0]
                wanted[name] = max(MIN_REPEATS, min(repeats, int(self.settings.cell_seconds / warmup)))
            except Unavailable as e:
                res[name] = str(e)
                continue
            except Exception as e:  # a peer's failure must not end the benchmark
                res[name] = f"unavailable ({short(e, 70)})"
                continue
            self.check(name, ad, key)
            libs[name] = ad
            res[name] = Cell(ad.roots, sims, [], [])
        order = list(libs)
        for r in range(repeats):
            # Rotate who goes first, so that no library always runs right after the same other one.
            for name in rotated(order, r):
                if len(res[name].total) >= wanted[name]:
                    continue
                total, tree = libs[name].search(policy, sims, seed=r)
                res[name].total.append(total)
                if tree is not None:
                    res[name].tree.append(tree)
        for name, cell in res.items():
            if isinstance(cell, Cell):
                self.log(f"    {name}: {cell.rate():,.0f} tree-simulations/s")

    def model_floor(self, p: Problem) -> None:
        """The torch model alone, S calls on [B, D]: the part of any torch-driven search that is not tree."""
        device = self.settings.device
        model = TorchModel(p, device)
        h = torch.from_numpy(p.h0).to(device)
        act = torch.zeros(B, dtype=torch.int64, device=device)
        times = []
        with torch.no_grad():
            for _ in range(5):
                t0 = clock(device)
                for _ in range(50):
                    model.recurrent(h, act)
                times.append((clock(device) - t0) / 50)
        self.notes.append(f"The torch model alone, one call on [{B}, {D}]: {statistics.median(times) * 1e6:,.0f} µs, "
                          f"i.e. a floor of {B / statistics.median(times):,.0f} tree-simulations/s for a search "
                          f"that calls it once per simulation.")

    def run(self) -> None:
        self.t0 = time.perf_counter()
        ready = self.ready()
        depth_probe = next((ready[n] for n in (PYMBRL, PYMBRL1) if n in ready), None) if self.settings.depths \
            else None
        for model in self.settings.models:
            p = make_problem(model)
            for ad in ready.values():
                ad.setup(p)
            for policy in self.settings.policies:
                for sims in self.settings.simulations:
                    key = (model, policy, sims)
                    self.log(f"{model} {policy} S={sims} ...")
                    self.case(key)
                    # Untimed, after the case; the low-level Tree runs MuZero and Gumbel MuZero only.
                    if depth_probe is not None and policy in DEPTH_POLICIES:
                        self.depths[key] = depth_probe.leaf_depths(policy, sims, WARMUP_SEED)
        # The model's cost depends on its shapes, not on its weights: the last variant will do.
        self.model_floor(p)
        mc = self.libs.get("mctx")
        if mc is not None and mc.reason is None and mc.compile_seconds:
            self.notes.append("mctx compile time (first call, not in the tables; one per policy and S, shared by "
                              "the variants): " + ", ".join(f"{pol} S={s} {t:.1f} s"
                                                           for (pol, s), t in mc.compile_seconds.items()) + ".")
        self.runtime = time.perf_counter() - self.t0


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def fmt(v: float) -> str:
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def fmt_us(v: float) -> str:
    # pymbrl's costs are fractions of a µs, Python's hundreds: keep two decimals where they matter.
    return f"{v:.2f}" if v < 10 else fmt(v)


def value_of(bench: Bench, key: Case, name: str, which: str) -> float | str:
    """Tree-simulations/s of a library in a case (end to end or tree code only), or why there is none."""
    if bench.libs[name].reason is not None:
        return "unavailable"
    cell = bench.results.get(key, {}).get(name)
    if cell is None or (isinstance(cell, Cell) and which == "tree" and not cell.tree):
        return NA
    return cell if isinstance(cell, str) else cell.rate(which)


def show(v: float | str, mark: str = "") -> str:
    return fmt(v) + mark if isinstance(v, float) else v


def ratio(a: float | str, b: float | str) -> str:
    """Rate a over rate b (above 1: a is faster), or why there is none."""
    if isinstance(a, float) and isinstance(b, float) and a > 0 and b > 0:
        r = a / b
        # Two decimals near 1, where pymbrl's thread count against one thread is judged.
        return f"{r:.2f}x" if r < 10 else f"{r:,.1f}x"
    return NA



# --------------------------------------------------------------------------------------------
# pymbrl bench mcts
# --------------------------------------------------------------------------------------------

USER_SIMULATIONS = 50
"""The S of ``pymbrl bench mcts``, which should take about a minute: mctx's cost per simulation grows
with the size of its trees (about 25 s per MuZero search of 256 roots at S = 200 on one core)."""


def user_settings(device: torch.device, quick: bool) -> Settings:
    """What ``pymbrl bench mcts`` runs: every library and search, the ``peaked`` model, S = 50, 3 timed
    searches per cell after a warm-up (1 with ``quick``)."""
    return Settings(models=("peaked",), simulations=(USER_SIMULATIONS,),
                    repeats={USER_SIMULATIONS: 1 if quick else MIN_REPEATS}, device=device, depths=False)


def summary(bench: Bench) -> str:
    """A plain-text report of a run: the machine, one line per library that could not run (why, and
    how to get it), tree-simulations per second of every library and search with pymbrl's ratio to each
    peer, and the same ratios for pymbrl on one thread (every peer runs on one core)."""
    st = bench.settings
    ready = [n for n in bench.libs if bench.libs[n].reason is None]
    peers = [n for n in PEERS if n in ready]
    keys = [(m, p, s) for m in st.models for p in st.policies for s in st.simulations]
    vals = {key: {n: value_of(bench, key, n, "total") for n in ready} for key in keys}

    def table(ours: str, with_rates: bool) -> list[str]:
        rows = [["model", "search", *(ready if with_rates else []), *(f"{ours} / {n}" for n in peers)]]
        rows += [[m, f"{POLICIES[p]} S={s}", *(show(vals[m, p, s][n]) for n in ready if with_rates),
                  *(ratio(vals[m, p, s][ours], vals[m, p, s][n]) for n in peers)] for m, p, s in keys]
        return text_table(rows, left=2)

    lines = [f"Batched MCTS on {st.device} ({machine()}; 1-minute load average {load()}: other work on the "
             "machine inflates the timings)",
             *(f"  {name}: skipped, {ad.reason}" for name, ad in bench.libs.items() if ad.reason is not None), "",
             f"Tree-simulations per second (B={B} roots x S simulations / seconds per search, median of "
             f"{max(st.repeats.values())}; higher is better), and pymbrl's ratio to each peer (above 1: pymbrl "
             "is faster):", *table(PYMBRL, True)]
    if PYMBRL1 in ready and peers:
        lines += ["", "Per core: pymbrl on one thread over each peer (every peer runs on one core):",
                  *table(PYMBRL1, False)]
    if "Python" in ready:
        lines.append(f"Python: the first {PYTHON_ROOTS} roots, one tree at a time; MuZero only.")
    lines += [f"check failed: {c}" for c in bench.checks if "WRONG" in c]
    return "\n".join(lines + bench.notes)


def benchmark(settings: Settings) -> str:
    """Run ``settings`` with progress lines on stderr; returns the :func:`summary`."""
    bench = Bench(settings)
    bench.run()
    return summary(bench)
