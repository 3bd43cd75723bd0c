"""MuZero and Gumbel MuZero search policies over a batch of roots, mctx-style.

The search runs in C++ (``pymbrl._core.mcts``); this module only loops over simulations, calling
the user's ``recurrent_fn`` on the selected leaves and moving embeddings in a torch pool on their
own device. Only node ids and the model's small outputs cross into C++.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from pymbrl import _core
from pymbrl._checks import ArgumentTypeError, integer, real, renamed, resolve_seed
from pymbrl.mcts.qtransforms import QTransform, checked_qtransform
from pymbrl.mcts.tree import (EmbeddingPool, RecurrentOutput, Root, SearchSummary, Tree, check_room,
                              default_capacity, host_array)

MAX_MAGNITUDE: float = _core.mcts.MAX_MAGNITUDE
"""2**64: the largest |reward| and |value| a search accepts (see :class:`RecurrentOutput`), and the
bound of its real parameters."""

MAX_CONSIDERED_ACTIONS = 2**20
"""The largest ``max_num_considered_actions`` of :func:`gumbel_muzero_policy` (the core's limit)."""

RecurrentFn = Callable[[Any, torch.Tensor], tuple[RecurrentOutput, Any]]


class SearchTree:
    """The trees of a finished search and their embeddings, for statistics and for reuse.

    Call :meth:`subtree` with the actions taken to carry the search over to the next move; pass the
    result as ``search_tree=`` to the next :func:`muzero_policy` or :func:`gumbel_muzero_policy` call.
    """

    def __init__(self, tree: Tree, pool: EmbeddingPool):
        self._tree: Tree | None = tree
        self._pool = pool
        # Whether the pool was handed out (its tensors may be held or viewed, which no reference
        # count shows): such a pool is never recycled.
        self._pool_lent = False
        self.kept: torch.Tensor | None = None
        """After :meth:`subtree`: bool [B], roots that kept a searched subtree."""

    def __del__(self) -> None:
        # A recycled tree is overwritten by the next search of its shape, which must never change
        # what a user still holds: a tree whose row views were handed out and a pool that was
        # handed out never come back; whether anyone still holds the tree itself is decided when a
        # search wants it (_spare), by then the caller's locals are gone.
        tree = self._tree
        if tree is None or tree.lent:
            return
        self._tree = None
        with _spares_lock:
            _spares.append((tree, None if self._pool_lent else self._pool))
            del _spares[:-_MAX_SPARES]

    @property
    def tree(self) -> Tree:
        """The low-level :class:`Tree`."""
        return self._live_tree()

    def _live_tree(self) -> Tree:
        if self._tree is None:
            raise RuntimeError("search_tree: this tree was re-rooted by subtree(); use the tree subtree() returned")
        return self._tree

    @property
    def embeddings(self) -> EmbeddingPool:
        """The embedding pool, [capacity + 1, B, ...] per leaf, flat rows ``node * B + b``."""
        self._pool_lent = True
        return self._pool

    def summary(self) -> SearchSummary:
        """Visit counts, visit shares, root values and Q values (see :class:`SearchSummary`)."""
        return self._live_tree().summary()

    def subtree(self, actions: Any) -> "SearchTree":
        """The search carried over to the next move: each root b moves to its child under
        ``actions[b]`` ([B] ints), keeping that child's subtree, statistics and embeddings. This
        object is consumed (the trees are re-rooted in place)."""
        tree = self._live_tree()
        old_ids, kept = tree.subtree(actions)
        self._pool.permute(old_ids)
        reused = SearchTree(tree, self._pool)
        reused._pool_lent = self._pool_lent
        reused.kept = torch.from_numpy(kept)
        self._tree = None
        return reused


class PolicyOutput(NamedTuple):
    """The result of a search.

    Attributes
    ----------
    action : int64 tensor [B] -- the action to take at each root.
    action_weights : float32 tensor [B, A] -- the policy target (visit shares for MuZero, the
        improved policy softmax(logits + sigma(completed Q)) for Gumbel MuZero).
    search_tree : SearchTree -- statistics (``search_tree.summary()``) and tree reuse.
    """

    action: torch.Tensor
    action_weights: torch.Tensor
    search_tree: SearchTree


def _prepare(root: Root, num_simulations: int, invalid_actions: Any, search_tree: SearchTree | None,
             capacity: int | None, num_threads: int | None) -> SearchTree:
    if not (isinstance(root, tuple) and len(root) == 3):
        raise ArgumentTypeError(f"root: expected Root(prior_logits, value, embedding), got {type(root).__name__}")
    integer(num_simulations, "num_simulations")
    logits = host_array(root.prior_logits, "root.prior_logits")
    if logits.ndim != 2:
        raise ValueError(f"root.prior_logits: expected shape [B, A], got {tuple(logits.shape)}")
    batch_size, num_actions = logits.shape
    if search_tree is not None:
        if not isinstance(search_tree, SearchTree):
            raise ArgumentTypeError(f"search_tree: expected a SearchTree, got {type(search_tree).__name__}")
        tree = search_tree._live_tree()
        if type(search_tree._pool) is not EmbeddingPool:  # a subclass: the pool of another kind of search
            raise ValueError("search_tree: expected the search tree of a muzero_policy or gumbel_muzero_policy "
                             "search, got that of a sampled_muzero_policy search")
        if (tree.batch_size, tree.num_actions) != (batch_size, num_actions):
            raise ValueError(f"search_tree: built for {tree.batch_size} roots x {tree.num_actions} actions, "
                             f"got prior_logits of shape {tuple(logits.shape)}")
        kept = search_tree.kept if search_tree.kept is not None else torch.ones(batch_size, dtype=torch.bool)
        # Everything is checked before the trees or the pool change, so that a refused call
        # leaves the search tree as it was.
        check_room(tree.num_nodes, tree.capacity, kept, num_simulations)
        embedding = search_tree._pool.checked_roots(root.embedding)
        _set_roots(tree, root, invalid_actions, kept.numpy())
        search_tree._pool.set_roots(embedding, ~kept)
        return search_tree
    capacity = default_capacity(num_simulations) if capacity is None else integer(capacity, "capacity")
    integer(num_threads, "num_threads", optional=True)
    embedding = EmbeddingPool.checked_leaves(root.embedding, batch_size, capacity)  # before any allocation
    tree, pool = _spare(batch_size, num_actions, capacity, num_threads, embedding)
    _set_roots(tree, root, invalid_actions, None)
    if pool is None:
        pool = EmbeddingPool(embedding, batch_size, capacity)
    else:
        pool.set_roots(embedding, None)
    return SearchTree(tree, pool)


def _set_roots(tree: Tree, root: Root, invalid_actions: Any, keep: Any) -> None:
    try:
        tree.set_roots(root.prior_logits, root.value, invalid_actions, keep=keep)
    except (TypeError, ValueError) as e:
        raise (renamed(e, "root.") if str(e).startswith(("prior_logits", "value")) else e) from None


# Trees (and embedding pools) of searches whose SearchTree was dropped, for the next search of the
# same shape to reuse once nothing else holds them: a fresh tree of 256 roots x 200 simulations is
# ~30 MB whose first touch and release cost ~5-10% of the search.
_spares: list[tuple[Tree, EmbeddingPool | None]] = []
_MAX_SPARES = 2
# Searches may run in several threads. Re-entrant: a garbage collection inside _spare can run
# SearchTree.__del__ on the same thread.
_spares_lock = threading.RLock()


def _tree_refs(entry: tuple) -> int:
    """References to the tree of a spares entry (the entry's own included)."""
    return sys.getrefcount(entry[0])


# What _tree_refs reports for a tree that only its entry holds, measured rather than assumed (the
# interpreter's temporary references differ across versions).
_ENTRY_ONLY = _tree_refs((object(), None))


def _spare(batch_size: int, num_actions: int, capacity: int, num_threads: int | None,
           embedding: Any) -> tuple[Tree, EmbeddingPool | None]:
    with _spares_lock:
        for i in range(len(_spares) - 1, -1, -1):  # the latest first: its memory is the most likely in cache
            entry = _spares[i]
            t = entry[0]
            shape = (t.batch_size, t.num_actions, t.capacity, t.requested_threads)
            del t  # not to count in _tree_refs
            # A tree the user still holds (out.search_tree.tree kept) or lent views of stays theirs.
            if (shape == (batch_size, num_actions, capacity, num_threads) and not entry[0].lent
                    and _tree_refs(entry) <= _ENTRY_ONLY):
                del _spares[i]
                tree, pool = entry
                return tree, pool if pool is not None and pool.accepts(embedding) else None
    return Tree(batch_size, num_actions, capacity, num_threads=num_threads), None


@torch.no_grad()
def _simulate(search: SearchTree, recurrent_fn: RecurrentFn, num_simulations: int) -> None:
    # No autograd: written into the pool, a model's outputs would otherwise chain every step of the
    # search into one growing graph.
    tree, pool = search._live_tree(), search._pool
    # Each step after the first selects inside the call that expands the previous one (one C++
    # call and one hand-off to the tree threads per simulation).
    gather, scatter, action = tree.first_rows()
    for _ in range(num_simulations):
        result = recurrent_fn(pool.gather(gather), action)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise ArgumentTypeError("recurrent_fn: expected to return (RecurrentOutput, next_embedding), "
                                    f"got {type(result).__name__}")
        output, next_embedding = result
        pool.scatter(scatter, next_embedding)
        try:
            rows = tree.expand_and_select_rows(output)
        except (TypeError, ValueError) as e:
            raise renamed(e, "recurrent_fn output ") from None
        if rows is not None:
            gather, scatter, action = rows


def muzero_policy(root: Root, recurrent_fn: RecurrentFn, num_simulations: int, *, invalid_actions: Any = None,
                  dirichlet_alpha: float = 0.3, dirichlet_fraction: float = 0.25, pb_c_init: float = 1.25,
                  pb_c_base: float = 19652.0, qtransform: QTransform | None = None, temperature: float = 1.0,
                  max_depth: int | None = None, seed: int | None = None, search_tree: SearchTree | None = None,
                  capacity: int | None = None, num_threads: int | None = None) -> PolicyOutput:
    """MuZero's search (Schrittwieser et al., Nature 2020) on a batch of roots.

    Selection is pUCT, ``argmax_a Qn(a) + P(a) sqrt(N) / (1 + N(a)) * (pb_c_init + log((N + pb_c_base
    + 1) / pb_c_base))``, with Qn the transformed Q (by default min-max normalised over all edges of
    the tree, the paper's rule) and 0 for unvisited actions; the action is drawn from the root visit
    counts raised to ``1 / temperature``.

    Two-player zero-sum games: return ``discount = -1`` (or ``-gamma``) from ``recurrent_fn`` and
    rewards and values from the point of view of the player to move; the search then maximises
    each player's return at its own nodes::

        def recurrent_fn(board, action):     # board from the mover's point of view
            next_board, won = play(board, action)
            return RecurrentOutput(reward=won.float(), discount=torch.where(done, 0.0, -1.0),
                                   prior_logits=legal_logits(next_board), value=zeros), -next_board

    Parameters
    ----------
    root : Root
        ``prior_logits`` [B, A], ``value`` [B], ``embedding`` [B, ...] (torch on any device, or numpy).
    recurrent_fn : callable
        ``recurrent_fn(embedding, action) -> (RecurrentOutput, next_embedding)``; ``embedding`` has
        the structure of ``root.embedding``, ``action`` is int64 [B] on its device.
    num_simulations : int
        Simulations per root (>= 1); one model call on the whole batch each.
    invalid_actions : bool [B, A] or None
        Actions the roots may not take (interior nodes rely on the model's priors). A root must
        keep a valid action: a batch with a root whose actions are all invalid (a finished game)
        is refused with a ValueError naming those roots, by every policy.
    dirichlet_alpha, dirichlet_fraction : float
        Root exploration noise: priors become ``(1 - fraction) * P + fraction * Dirichlet(alpha)``
        over the valid actions. The paper's values: 0.3 (chess 0.3, Atari 0.25) and 0.25.
    pb_c_init, pb_c_base : float
        pUCT constants c1 = 1.25 and c2 = 19652 of the paper.
    qtransform : QTransform or None
        How Q enters the score: None or :func:`qtransform_by_tree_min_max` (the paper's rule),
        :func:`qtransform_by_parent_and_siblings` (mctx's default: a search ported from mctx needs
        it to match) or :func:`qtransform_by_min_max` (fixed bounds).
    temperature : float
        0 picks the most visited action (ties to the lowest index).
    max_depth : int or None
        Longest path from a root; a leaf at the limit is visited again with its mean value.
    seed : int or None
        Seeds the noise and the action draw; None draws from the OS.
    search_tree : SearchTree or None
        ``previous.search_tree.subtree(actions)`` to continue from the kept subtrees (their
        statistics and embeddings); roots whose subtree was empty use ``root``.
    capacity : int or None
        Nodes per tree; default ``1 + num_simulations`` (pass more when you plan to reuse trees).
    num_threads : int or None
        Threads working on the trees; None chooses (results do not depend on it).

    Returns
    -------
    PolicyOutput
        ``action`` int64 [B], ``action_weights`` float32 [B, A] (visit shares), ``search_tree``.
    """
    # Every argument is checked before the trees change (a reused search_tree stays as it was if
    # the call is refused) and before the search, not after all its model calls.
    real(temperature, "temperature", low=0.0)
    real(pb_c_init, "pb_c_init", low=-MAX_MAGNITUDE, high=MAX_MAGNITUDE)
    real(pb_c_base, "pb_c_base", low=1.0 / MAX_MAGNITUDE)
    fraction = real(dirichlet_fraction, "dirichlet_fraction", low=0.0, high=1.0)
    if fraction > 0.0:
        real(dirichlet_alpha, "dirichlet_alpha", low=np.finfo(float).tiny, high=MAX_MAGNITUDE)
    integer(max_depth, "max_depth", optional=True)
    resolve_seed(seed)
    qtransform = checked_qtransform(qtransform)
    search = _prepare(root, num_simulations, invalid_actions, search_tree, capacity, num_threads)
    search._live_tree().begin_muzero(num_simulations, dirichlet_alpha=dirichlet_alpha,
                                     dirichlet_fraction=dirichlet_fraction, pb_c_init=pb_c_init, pb_c_base=pb_c_base,
                                     qtransform=qtransform, max_depth=max_depth, seed=seed)
    _simulate(search, recurrent_fn, num_simulations)
    action, weights = search._live_tree().decide(temperature)
    return PolicyOutput(action, weights, search)


def gumbel_muzero_policy(root: Root, recurrent_fn: RecurrentFn, num_simulations: int, *, invalid_actions: Any = None,
                         max_num_considered_actions: int = 16, gumbel_scale: float = 1.0, value_scale: float = 0.1,
                         maxvisit_init: float = 50.0, rescale_with_invalid: bool = False, max_depth: int | None = None,
                         seed: int | None = None, search_tree: SearchTree | None = None, capacity: int | None = None,
                         num_threads: int | None = None) -> PolicyOutput:
    """Gumbel MuZero's search (Danihelka et al., "Policy improvement by planning with Gumbel",
    ICLR 2022) on a batch of roots.

    At the root, Gumbel-Top-k sampling picks ``max_num_considered_actions`` actions and sequential
    halving spends the simulations on them (the halving schedule is computed once per search); the
    action is ``argmax g + logits + sigma(completedQ)`` among the most visited. Interior nodes choose
    deterministically, the action whose visit share lags most behind ``softmax(logits +
    sigma(completedQ))``. Unvisited actions' Q is completed with the mixed value estimate;
    ``sigma(q) = (maxvisit_init + max_b N(b)) * value_scale * q`` after rescaling q to [0, 1].

    Tree reuse: with ``search_tree=previous.search_tree.subtree(actions)``, a kept root keeps its
    statistics (its completed Q values and sigma use all of them) while sequential halving runs on
    the visits this search adds, as from an unsearched root: the paper defines the schedule from
    a fresh root, and a kept subtree's visits were spent under another root's schedule.

    Parameters
    ----------
    root, recurrent_fn, num_simulations, invalid_actions, max_depth, seed, search_tree, capacity, num_threads
        As in :func:`muzero_policy` (two-player games likewise use ``discount = -1``).
    max_num_considered_actions : int
        m of the paper, 16.
    gumbel_scale : float
        Scale of the root Gumbel noise; 0 makes the search deterministic.
    value_scale, maxvisit_init : float
        c_scale = 0.1 and c_visit = 50 of the paper.
    rescale_with_invalid : bool
        At a root with invalid actions, rescale the completed Q over every action, invalid ones
        included with the mixed value, as mctx does; False (the default) rescales over the valid
        actions only, so that actions the root cannot take do not stretch the [0, 1] range. The
        two differ only once every valid action was visited.

    Returns
    -------
    PolicyOutput
        ``action`` int64 [B], ``action_weights`` float32 [B, A] (the improved policy, a training
        target that needs no visit counts), ``search_tree``.
    """
    # As in muzero_policy: checked before the trees take the new roots, so that a refused call
    # leaves a reused search_tree as it was (Tree.begin_gumbel would refuse them only afterwards).
    if integer(max_num_considered_actions, "max_num_considered_actions") > MAX_CONSIDERED_ACTIONS:
        raise ValueError(f"max_num_considered_actions: expected an integer in [1, 2**20], "
                         f"got {max_num_considered_actions}")
    real(gumbel_scale, "gumbel_scale", low=0.0, high=MAX_MAGNITUDE)
    real(value_scale, "value_scale", low=-MAX_MAGNITUDE, high=MAX_MAGNITUDE)
    real(maxvisit_init, "maxvisit_init", low=-MAX_MAGNITUDE, high=MAX_MAGNITUDE)
    if not isinstance(rescale_with_invalid, bool):
        raise ArgumentTypeError(f"rescale_with_invalid: expected a bool, got {type(rescale_with_invalid).__name__}")
    integer(max_depth, "max_depth", optional=True)
    resolve_seed(seed)
    search = _prepare(root, num_simulations, invalid_actions, search_tree, capacity, num_threads)
    search._live_tree().begin_gumbel(num_simulations, max_num_considered_actions=max_num_considered_actions,
                                     gumbel_scale=gumbel_scale, value_scale=value_scale, maxvisit_init=maxvisit_init,
                                     rescale_with_invalid=rescale_with_invalid, max_depth=max_depth, seed=seed)
    _simulate(search, recurrent_fn, num_simulations)
    action, weights = search._live_tree().decide()
    return PolicyOutput(action, weights, search)


__all__ = ["PolicyOutput", "SearchTree", "gumbel_muzero_policy", "muzero_policy"]
