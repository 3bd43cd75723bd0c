"""Sampled MuZero's search (Hubert et al., "Learning and Planning in Complex Action Spaces", ICML
2021) on the C++ tree, for continuous and large discrete action spaces.

Each expanded node holds K actions sampled from its policy; the node's K edges in the C++ tree are
those samples, so MuZero's search (pUCT, min-max Q, ``max_depth``, threads, tree reuse) runs
unchanged over A = K edges. The sampled action vectors live beside the embeddings in the torch pool
(row ``node * B + b``), and ``recurrent_fn`` receives the action vectors of the selected edges.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.distributions import Categorical, Distribution, OneHotCategorical

from pymbrl import _core
from pymbrl._checks import ArgumentTypeError, integer, real, renamed, resolve_seed
from pymbrl.mcts.policies import MAX_MAGNITUDE, SearchTree
from pymbrl.mcts.qtransforms import QTransform, checked_qtransform
from pymbrl.mcts.tree import EmbeddingPool, RecurrentOutput, Tree, check_room, default_capacity, host_array


class SampledRoot(NamedTuple):
    """The roots of a batch of Sampled MuZero searches.

    Attributes
    ----------
    policy : torch.distributions.Distribution, batch_shape [B]
        The network's policy pi at each root; its samples are the actions (event shape ``[*event]``:
        ``[]`` for Categorical, ``[n]`` for OneHotCategorical, ``[d]`` for a Box policy such as
        ``Independent(Normal(loc [B, d], scale [B, d]), 1)`` or its tanh-squashed transform).
    value : Tensor or ndarray, float, shape [B]
        Value estimate of each root, ``|value| <= 2**64``.
    embedding : Tensor, ndarray, or a tuple / list / dict of them, each shaped [B, ...]
        Latent state of each root; handed back to ``recurrent_fn``, never to C++.
    """

    policy: Distribution
    value: Any
    embedding: Any


class SampledRecurrentOutput(NamedTuple):
    """What ``recurrent_fn(embedding, action)`` returns beside the next embedding: ``reward``,
    ``discount`` and ``value`` float [B] as in :class:`~pymbrl.mcts.RecurrentOutput`, and the
    ``policy`` at the new nodes, a Distribution of batch_shape [B] and the roots' event shape."""

    reward: Any
    discount: Any
    policy: Distribution
    value: Any


class SampledPolicyOutput(NamedTuple):
    """The result of a Sampled MuZero search.

    Attributes
    ----------
    action : tensor [B, *event] -- the chosen action itself (a row of ``sampled_actions``).
    action_index : int64 tensor [B] -- its edge index in ``sampled_actions``.
    sampled_actions : tensor [B, K, *event] -- the root's edges: its distinct sampled actions in
        order of first draw, then spare edges (repeating edge 0) where duplicates were merged.
    action_weights : float32 tensor [B, K] -- visit shares over the edges (0 on spare edges): the
        improved policy, the training target of log pi(sampled_actions).
    search_tree : SearchTree -- statistics over the K edges (``search_tree.summary()``) and reuse:
        ``search_tree.subtree(action_index)`` keeps the chosen child's subtree with its sampled
        actions. Its ``embeddings`` pool holds ``(embedding, sampled actions [K, *event], counts
        int64 [K])`` per node.
    """

    action: torch.Tensor
    action_index: torch.Tensor
    sampled_actions: torch.Tensor
    action_weights: torch.Tensor
    search_tree: SearchTree


SampledRecurrentFn = Callable[[Any, torch.Tensor], tuple[SampledRecurrentOutput, Any]]


class SampledEmbeddingPool(EmbeddingPool):
    """The embedding pool of a Sampled MuZero search: leaves ``(embedding, actions [K, *event],
    counts int64 [K])`` per node (the type tells a sampled search tree from a MuZero one)."""


class _Edges(NamedTuple):
    """The K edges of a batch of expanded nodes: ``actions`` [B, K, *event], ``counts`` int64 [B, K]
    (how often each was drawn; 0 on spare edges) and ``logits`` float64 [B, K] (the prior logits the
    tree gets: log count + log pi - log beta, or log count where beta is pi; -inf on spare edges)."""

    actions: torch.Tensor
    counts: torch.Tensor
    logits: torch.Tensor


# torch.distributions draw from the global generator, so sampling runs under fork_rng with a seed
# of its own; the lock keeps two searches in different threads from interleaving in that window.
_rng_lock = threading.Lock()


def _draw(policy: Distribution, num_samples: int, seed: int) -> torch.Tensor:
    """``policy.sample((num_samples,))`` [K, B, *event] drawn from the global generators of the CPU
    and of the policy's device seeded with ``seed`` inside ``torch.random.fork_rng``: the caller's
    generator states are restored afterwards, untouched."""
    device = _device_of(policy)
    kind = device.type
    if kind == "cpu":
        forked = []
    else:
        current = getattr(getattr(torch, kind), "current_device", lambda: 0)
        forked = [device.index if device.index is not None else current()]
    with _rng_lock, torch.random.fork_rng(devices=forked, device_type="cuda" if kind == "cpu" else kind):
        torch.default_generator.manual_seed(seed)
        if kind == "cuda":
            with torch.cuda.device(forked[0]):
                torch.cuda.manual_seed(seed)
        elif kind != "cpu":
            getattr(torch, kind).manual_seed(seed)
        return policy.sample((num_samples,))


def _device_of(policy: Distribution) -> torch.device:
    for value in vars(policy).values():
        if isinstance(value, torch.Tensor):
            return value.device
        if isinstance(value, Distribution):
            return _device_of(value)
    return torch.device("cpu")


@functools.lru_cache(maxsize=16)
def _log_counts(num_samples: int, device: torch.device) -> torch.Tensor:
    # math.log per count, as the spec and the reference compute it (a vectorised torch log may
    # differ in the last bit). Cached: the table is made at every expansion that merged draws.
    return torch.tensor([-math.inf] + [math.log(c) for c in range(1, num_samples + 1)], dtype=torch.float64,
                        device=device)


def _categories(policy: Distribution) -> int | None:
    if isinstance(policy, (Categorical, OneHotCategorical)):
        return int(policy.param_shape[-1])
    return None


def _check_policy(policy: Any, name: str, batch_size: int, num_samples: int,
                  event_shape: torch.Size | None = None) -> None:
    if not isinstance(policy, Distribution):
        raise ArgumentTypeError(f"{name}: expected a torch.distributions.Distribution, got {type(policy).__name__}")
    if tuple(policy.batch_shape) != (batch_size,):
        raise ValueError(f"{name}: expected batch_shape [{batch_size}] (the length of root.value), "
                         f"got {list(policy.batch_shape)}")
    if event_shape is not None and policy.event_shape != event_shape:
        raise ValueError(f"{name}: expected event_shape {list(event_shape)} (the root policy's), "
                         f"got {list(policy.event_shape)}")
    n = _categories(policy)
    if n is not None and num_samples > n:
        raise ValueError(f"num_samples: expected at most {n} (the categories of {name}), got {num_samples}")


def _first_bad(bad: torch.Tensor) -> tuple[int, int]:
    """(k, b) of the first True in ``bad`` [K, B], in sample-then-row order."""
    k, b = (int(i) for i in bad.nonzero()[0])
    return k, b


def _log_prob(policy: Distribution, actions: torch.Tensor, name: str) -> torch.Tensor:
    try:
        return policy.log_prob(actions)
    except ValueError as e:  # torch's argument validation: e.g. a draw of beta outside pi's support
        raise ValueError(f"{name}: {e}") from None


def _sample_edges(policy: Distribution, num_samples: int, seed: int, *, sampling_policy: Distribution | None = None,
                  name: str = "policy", row: str = "row") -> _Edges:
    """Samples the K edges of B nodes (the expansion step of Sampled MuZero).

    K actions are drawn from ``sampling_policy`` (beta) if given, else from ``policy`` (pi), with
    :func:`_draw`. Identical actions are merged into one edge with their count; the edges are the
    distinct actions in order of first draw, followed by spare edges (count 0, prior logit -inf,
    action repeating edge 0). An edge's prior is the paper's (beta_hat / beta) pi, beta_hat the
    empirical distribution of the draws: logit ``(log count + log pi(a)) - log beta(a)`` in float64
    (the log-probabilities of the action's first draw); without a sampling policy beta is pi, the
    two terms cancel and the logit is ``log count`` (no log-probability is needed).

    Raises ValueError naming ``name`` (and the sample and the row) when an action or a
    log-probability is not finite.
    """
    sampler = policy if sampling_policy is None else sampling_policy
    sampler_name = name if sampling_policy is None else "root_sampling_policy"
    raw = _draw(sampler, num_samples, seed)
    batch_shape = (num_samples, *policy.batch_shape)
    if tuple(raw.shape[:2]) != batch_shape:
        raise ValueError(f"{sampler_name}: expected samples of shape {list(batch_shape)} + event_shape, "
                         f"got {list(raw.shape)}")
    # The checks look for the culprit only once something is wrong (they run at every simulation).
    if raw.is_floating_point() and not bool(torch.isfinite(raw).all()):
        bad = ~torch.isfinite(raw.reshape(*batch_shape, -1)).all(dim=-1)
        k, b = _first_bad(bad)
        raise ValueError(f"{sampler_name}: sampled action {k} of {row} {b} is not finite")
    correction = None  # log pi - log beta of each draw, [B, K] float64
    if sampling_policy is not None:
        log_probs = []
        for who, distribution in ((name, policy), (sampler_name, sampling_policy)):
            lp = _log_prob(distribution, raw, who)
            if tuple(lp.shape) != batch_shape:
                raise ValueError(f"{who}: expected log_prob of shape {list(batch_shape)}, got {list(lp.shape)}")
            if not bool(torch.isfinite(lp).all()):
                k, b = _first_bad(~torch.isfinite(lp))
                raise ValueError(f"{who}: the log-probability of sampled action {k} of {row} {b} is not finite")
            log_probs.append(lp.movedim(0, 1).to(torch.float64))
        correction = log_probs
    actions = raw.movedim(0, 1)  # [B, K, *event]
    batch_size = actions.shape[0]
    first, count = _duplicates(actions.reshape(batch_size, num_samples, -1))
    log_counts = _log_counts(num_samples, actions.device)
    if bool(first.all()):
        # No two draws alike (continuous policies): the edges are the draws, each of count 1.
        counts = torch.ones(batch_size, num_samples, dtype=torch.int64, device=actions.device)
        if correction is None:
            logits = log_counts[counts]
        else:
            logits = (log_counts[counts] + correction[0]) - correction[1]
        return _Edges(actions, counts, logits)
    # A stable sort puts the first draws in front, in draw order.
    order = torch.sort((~first).to(torch.int8), dim=1, stable=True).indices
    is_edge = first.gather(1, order)
    counts = torch.where(is_edge, count.gather(1, order), 0)
    index = order.reshape(*order.shape, *(1,) * (actions.ndim - 2)).expand_as(actions)
    edges = actions.gather(1, index)
    spare = ~is_edge.reshape(*is_edge.shape, *(1,) * (actions.ndim - 2))
    edges = torch.where(spare, edges[:, :1], edges)
    logits = log_counts[counts]
    if correction is not None:
        logits = (logits + correction[0].gather(1, order)) - correction[1].gather(1, order)
    return _Edges(edges, counts, logits)


# Up to this many elements, duplicates are found by comparing every pair of draws ([B, K, K, event]
# at once, the fastest way for the usual sizes); beyond it by sorting, in memory B x K x event.
_PAIRWISE_LIMIT = 1 << 24


def _duplicates(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For the draws ``flat`` [B, K, event size] of B rows: (first, count), bool and int64 [B, K]:
    whether no earlier draw of the row is the same action, and how many draws of the row are."""
    batch_size, k, width = flat.shape
    if batch_size * k * k * width <= _PAIRWISE_LIMIT:
        same = (flat[:, :, None, :] == flat[:, None, :, :]).all(dim=-1)
        earlier = torch.ones(k, k, dtype=torch.bool, device=flat.device).tril(-1)  # [i, j]: j drawn before i
        return ~(same & earlier).any(dim=-1), same.sum(dim=-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    elif flat.is_floating_point():
        flat = flat + 0.0  # -0.0 becomes 0.0: a radix sort (on GPUs) would part these equal actions
    # Stable sorts from the last coordinate to the first order the draws lexicographically: equal
    # actions end up adjacent, in draw order, so the first of each run is its first draw.
    order = torch.arange(k, device=flat.device).expand(batch_size, k)
    for d in reversed(range(width)):
        order = order.gather(1, torch.sort(flat[:, :, d].gather(1, order), dim=1, stable=True).indices)
    ranked = flat.gather(1, order[:, :, None].expand_as(flat))
    starts = torch.ones(batch_size, k, dtype=torch.bool, device=flat.device)
    starts[:, 1:] = (ranked[:, 1:] != ranked[:, :-1]).any(dim=-1)
    run = starts.cumsum(dim=1) - 1
    sizes = torch.zeros_like(run).scatter_add_(1, run, torch.ones_like(run))
    first = torch.empty_like(starts).scatter_(1, order, starts)
    count = torch.empty_like(run).scatter_(1, order, sizes.gather(1, run))
    return first, count


def _roots(root: SampledRoot, root_sampling_policy: Distribution | None, num_samples: int, seed: int
           ) -> tuple[int, np.ndarray, _Edges]:
    if not (isinstance(root, tuple) and len(root) == 3):
        raise ArgumentTypeError(f"root: expected SampledRoot(policy, value, embedding), got {type(root).__name__}")
    value = host_array(root.value, "root.value")
    if value.ndim != 1:
        raise ValueError(f"root.value: expected shape [B], got {tuple(value.shape)}")
    batch_size = value.shape[0]
    _check_policy(root.policy, "root.policy", batch_size, num_samples)
    if root_sampling_policy is not None:
        _check_policy(root_sampling_policy, "root_sampling_policy", batch_size, num_samples, root.policy.event_shape)
    edges = _sample_edges(root.policy, num_samples, seed, sampling_policy=root_sampling_policy,
                         name="root.policy", row="root")
    return batch_size, value, edges


def _set_roots(tree: Tree, logits: torch.Tensor, value: np.ndarray, invalid: torch.Tensor, keep: Any) -> None:
    try:
        tree.set_roots(logits, value, invalid, keep=keep)
    except (TypeError, ValueError) as e:
        raise (renamed(e, "root.") if str(e).startswith("value") else e) from None


def _prepare(root: SampledRoot, edges: _Edges, value: np.ndarray, num_simulations: int,
             search_tree: SearchTree | None, capacity: int | None, num_threads: int | None
             ) -> tuple[Tree, EmbeddingPool]:
    batch_size, num_samples = edges.counts.shape
    leaves = (root.embedding, edges.actions, edges.counts)
    if search_tree is None:
        capacity = default_capacity(num_simulations) if capacity is None else integer(capacity, "capacity")
        integer(num_threads, "num_threads", optional=True)
        checked = SampledEmbeddingPool.checked_leaves(leaves, batch_size, capacity)  # before any allocation
        tree = Tree(batch_size, num_samples, capacity, num_threads=num_threads)
        _set_roots(tree, edges.logits, value, edges.counts == 0, None)
        return tree, SampledEmbeddingPool(checked, batch_size, capacity)
    if not isinstance(search_tree, SearchTree):
        raise ArgumentTypeError(f"search_tree: expected a SearchTree, got {type(search_tree).__name__}")
    tree = search_tree.tree
    pool = search_tree.embeddings
    if not isinstance(pool, SampledEmbeddingPool):
        raise ValueError("search_tree: expected the search tree of a sampled_muzero_policy search")
    if (tree.batch_size, tree.num_actions) != (batch_size, num_samples):
        raise ValueError(f"search_tree: built for {tree.batch_size} roots x {tree.num_actions} sampled actions, "
                         f"got {batch_size} roots and num_samples {num_samples}")
    kept = search_tree.kept if search_tree.kept is not None else torch.ones(batch_size, dtype=torch.bool)
    check_room(tree.num_nodes, tree.capacity, kept, num_simulations)
    if pool.rows[1].shape[1:] != edges.actions.shape[1:] or pool.rows[1].dtype != edges.actions.dtype:
        raise ValueError(f"root.policy: expected sampled actions of shape {list(pool.rows[1].shape[1:])} per root "
                         f"and dtype {pool.rows[1].dtype} (the search tree's), got {list(edges.actions.shape[1:])} "
                         f"and {edges.actions.dtype}")
    checked = pool.checked_roots(leaves)
    # A kept root keeps its edges (sampled when it was expanded); its spare edges stay masked.
    stored_counts = pool.rows[2][:batch_size]
    invalid = torch.where(kept.to(stored_counts.device)[:, None], stored_counts == 0,
                          edges.counts.to(stored_counts.device) == 0)
    _set_roots(tree, edges.logits, value, invalid, kept.numpy())
    pool.set_roots(checked, ~kept)
    return tree, pool


@torch.no_grad()
def sampled_muzero_policy(root: SampledRoot, recurrent_fn: SampledRecurrentFn, num_simulations: int, *,
                          num_samples: int = 20, root_sampling_policy: Distribution | None = None,
                          qtransform: QTransform | None = None, pb_c_init: float = 1.25, pb_c_base: float = 19652.0,
                          temperature: float = 1.0, max_depth: int | None = None, seed: int | None = None,
                          search_tree: SearchTree | None = None, capacity: int | None = None,
                          num_threads: int | None = None) -> SampledPolicyOutput:
    """Sampled MuZero's search (Hubert et al., ICML 2021) on a batch of roots.

    At every expansion (the roots, then each new node) K = ``num_samples`` actions are drawn from
    the node's policy: at the roots from ``root_sampling_policy`` (beta, for exploration) if given,
    else from pi. The node's edges are the distinct sampled actions with prior ``(beta_hat / beta)
    pi`` (beta_hat: the empirical distribution of the K draws), i.e. logits ``log count + log pi(a) -
    log beta(a)``; where beta is pi the prior is beta_hat itself (logits ``log count``: uniform over
    the draws of a continuous policy, the draws' frequencies for a discrete one). Identical draws
    (discrete spaces) are merged into one edge with their count; the edges left over ("spare",
    logit -inf) are masked at the roots and can never win pUCT below them (see Notes). MuZero's
    search then runs
    over the K edges: pUCT with the constants of the MuZero paper and Q min-max normalised over the
    tree. The action is the most visited sampled action (temperature 0) or drawn with probability
    proportional to visits^(1/T); the improved policy is the root's visit shares over its sampled
    actions, the training target of the paper's policy loss ``-sum_k w_k log pi(a_k)``.

    Parameters
    ----------
    root : SampledRoot
        ``policy`` (Distribution, batch_shape [B]), ``value`` [B], ``embedding`` [B, ...].
    recurrent_fn : callable
        ``recurrent_fn(embedding, action) -> (SampledRecurrentOutput, next_embedding)``; ``action``
        [B, *event] holds the selected sampled actions themselves (int64 [B] for Categorical
        policies), on the policy's device. Called once per simulation on all B rows (rows at the
        depth limit are evaluated and discarded, as in :func:`~pymbrl.mcts.muzero_policy`).
    num_simulations : int
        Simulations per root (>= 1).
    num_samples : int
        K, actions sampled per node (the paper uses K = 20 for its continuous tasks). At most n for
        Categorical and OneHotCategorical policies of n categories; any K >= 1 otherwise.
    root_sampling_policy : Distribution or None
        beta at the roots (batch_shape [B], the policy's event shape), e.g. pi with a higher
        temperature or noise; None samples from pi. Interior nodes always sample from pi.
    qtransform : QTransform or None
        How pUCT normalises Q (see :func:`~pymbrl.mcts.muzero_policy`); None: the tree's min-max,
        MuZero's rule.
    pb_c_init, pb_c_base : float
        pUCT constants c1 = 1.25 and c2 = 19652 of MuZero. pb_c_init must be >= 0 (Notes).
    temperature : float
        0 picks the most visited edge (ties to the lowest index).
    max_depth : int or None
        Longest path from a root; a leaf at the limit is visited again with its mean value.
    seed : int or None
        Seeds the sampling and the action draw; None draws from the OS. The k-th sampling of a
        search (k = 0: the roots; k = s: simulation s) draws ``policy.sample((K,))`` after seeding
        the global generators of the CPU and of the policy's device with
        ``numpy.random.SeedSequence(seed).generate_state(num_simulations + 1, numpy.uint64)[k]``,
        inside ``torch.random.fork_rng``: the user's generator states are restored afterwards.
    search_tree : SearchTree or None
        ``previous.search_tree.subtree(action_index)`` to continue from the kept subtrees: a kept
        root keeps its sampled actions, priors and statistics (``root`` is sampled all the same,
        so that the draws do not depend on which roots are kept, and used for the others).
    capacity, num_threads
        As in :func:`~pymbrl.mcts.muzero_policy` (capacity default ``1 + num_simulations``).

    Returns
    -------
    SampledPolicyOutput
        ``action`` [B, *event], ``action_index`` int64 [B], ``sampled_actions`` [B, K, *event],
        ``action_weights`` float32 [B, K], ``search_tree``.

    Notes
    -----
    A spare edge (prior 0, never visited) scores exactly 0 in pUCT. A sampled edge scores ``q +
    c(N) sqrt(N) P / (1 + N(a))`` with q >= 0 under the tree's min-max and the parent-and-siblings
    transforms, and c(N) > 0 when pb_c_init >= 0, so it scores >= 0; as the sampled edges come
    first and ties go to the lowest index, a spare edge is never chosen. Hence pb_c_init < 0 is
    refused; with fixed bounds (``qtransform_by_min_max``) a Q below ``min_value`` could make a
    spare edge win, and the search then stops with a ValueError naming ``qtransform``.

    Choosing K: with beta = pi the prior is 1/K per draw and an unvisited edge's Q counts as the
    tree's minimum, so pUCT tries a new draw only once ``c(N) sqrt(N) / K`` exceeds the best
    visited draw's normalised Q (1): with c1 = 1.25 all K draws are tried after about ``(0.8
    K)**2`` simulations. Fewer draws, more simulations or a larger ``pb_c_init`` make the visits
    (the training target) follow Q. In deep trees MuZero's tree-wide min-max range can dwarf the
    differences between the root's actions; a per-node Q transform or ``max_depth`` helps.
    """
    integer(num_simulations, "num_simulations")
    num_samples = integer(num_samples, "num_samples")
    if num_samples > _core.mcts.MAX_ACTIONS:  # the tree's limit on edges: refused before drawing them
        raise ValueError(f"num_samples: expected at most {_core.mcts.MAX_ACTIONS} (2**24), got {num_samples}")
    real(temperature, "temperature", low=0.0)
    real(pb_c_init, "pb_c_init", low=0.0, high=MAX_MAGNITUDE)
    real(pb_c_base, "pb_c_base", low=1.0 / MAX_MAGNITUDE)
    integer(max_depth, "max_depth", optional=True)
    # Before the trees take the new roots, so that a refused call leaves a reused search_tree as it was.
    qtransform = checked_qtransform(qtransform)
    seed = resolve_seed(seed)
    # The seeds s_0 .. s_S: s_0 alone first (generate_state's words do not depend on how many are
    # asked for), the rest once the trees are known to have room for S simulations, so that a
    # huge num_simulations is refused rather than allocated.
    sequence = np.random.SeedSequence(seed)
    batch_size, value, edges = _roots(root, root_sampling_policy, num_samples,
                                      int(sequence.generate_state(1, np.uint64)[0]))
    event_shape = root.policy.event_shape
    tree, pool = _prepare(root, edges, value, num_simulations, search_tree, capacity, num_threads)
    tree.begin_muzero(num_simulations, dirichlet_fraction=0.0, pb_c_init=pb_c_init, pb_c_base=pb_c_base,
                      qtransform=qtransform, max_depth=max_depth, seed=seed)
    seeds = [int(s) for s in sequence.generate_state(num_simulations + 1, np.uint64)[1:]]
    _simulate(tree, pool, recurrent_fn, seeds, num_samples, event_shape)
    action_index, weights = tree.decide(temperature)
    sampled = pool.rows[1][:batch_size].clone()
    index = action_index.to(sampled.device)
    action = sampled[torch.arange(batch_size, device=sampled.device), index]
    return SampledPolicyOutput(action, action_index, sampled, weights, SearchTree(tree, pool))


def _simulate(tree: Tree, pool: EmbeddingPool, recurrent_fn: SampledRecurrentFn, seeds: Sequence[int],
              num_samples: int, event_shape: torch.Size) -> None:
    batch_size = tree.batch_size
    gather, scatter, edge = tree.first_rows()
    for seed in seeds:
        embedding, actions, counts = pool.gather(gather)
        rows = torch.arange(batch_size, device=actions.device)
        edge = edge.to(actions.device)
        spare = counts[rows, edge] == 0
        if bool(spare.any()):
            raise ValueError("qtransform: a Q value outside the transform's bounds made pUCT choose a spare edge "
                             f"(a merged duplicate) at roots {spare.nonzero()[:, 0].tolist()}")
        result = recurrent_fn(embedding, actions[rows, edge])
        if not (isinstance(result, tuple) and len(result) == 2):
            raise ArgumentTypeError("recurrent_fn: expected to return (SampledRecurrentOutput, next_embedding), "
                                    f"got {type(result).__name__}")
        output, next_embedding = result
        if not (isinstance(output, Sequence) and len(output) == 4):
            raise ArgumentTypeError("recurrent_fn: expected (SampledRecurrentOutput(reward, discount, policy, value), "
                                    f"next_embedding), got an output of type {type(output).__name__}")
        name = "recurrent_fn output policy"
        _check_policy(output[2], name, batch_size, num_samples, event_shape)
        new = _sample_edges(output[2], num_samples, seed, name=name)
        if new.actions.dtype != pool.rows[1].dtype:  # the pool would cast them: floats to integers, silently
            raise ValueError(f"{name}: expected sampled actions of dtype {pool.rows[1].dtype} (the root policy's), "
                             f"got {new.actions.dtype}")
        pool.scatter(scatter, (next_embedding, new.actions, new.counts))
        try:
            next_rows = tree.expand_and_select_rows(
                RecurrentOutput(output[0], output[1], new.logits, output[3]))
        except (TypeError, ValueError) as e:
            raise renamed(e, "recurrent_fn output ") from None
        if next_rows is not None:
            gather, scatter, edge = next_rows


__all__ = ["SampledEmbeddingPool", "SampledPolicyOutput", "SampledRecurrentOutput", "SampledRoot",
           "sampled_muzero_policy"]
