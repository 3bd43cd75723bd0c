"""The low-level search tree: B trees stepped from Python, for users who write their own loop,
and the embedding pool that keeps the network's latent states beside it on their own device."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from pymbrl import _core
from pymbrl._checks import ArgumentTypeError, integer, real, resolve_seed
from pymbrl._host import host
from pymbrl.mcts.qtransforms import QTransform, checked_qtransform


class Root(NamedTuple):
    """The roots of a batch of searches (the output of a representation network).

    Attributes
    ----------
    prior_logits : Tensor or ndarray, float, shape [B, A]
        Policy logits at each root: finite or ``-inf`` (an action probability 0), with a finite
        logit for some valid action; NaN and ``+inf`` are refused.
    value : Tensor or ndarray, float, shape [B]
        Value estimate of each root, ``|value| <= 2**64`` (about 1.8e19).
    embedding : Tensor, ndarray, or a tuple / list / dict of them, each shaped [B, ...]
        Latent state of each root; handed back to ``recurrent_fn``, never to C++.
    """

    prior_logits: Any
    value: Any
    embedding: Any


class RecurrentOutput(NamedTuple):
    """What ``recurrent_fn(embedding, action)`` returns beside the next embedding.

    Attributes
    ----------
    reward : float, shape [B]
        Reward of the transition, from the point of view of the player who acted.
    discount : float, shape [B]
        Discount of the transition: gamma, 0 after a terminal state, and ``-gamma`` (usually -1) in
        two-player zero-sum games, where the next node's value is the opponent's.
    prior_logits : float, shape [B, A]
        Policy logits at the new node (finite or ``-inf``, some finite).
    value : float, shape [B]
        Value estimate of the new node (from the point of view of the player to move there).

    Accepted range: ``|reward| <= 2**64``, ``|value| <= 2**64`` and ``|discount| <= 1``, all finite.
    Within it every statistic of the search (returns along paths of up to 2**30 nodes, value sums
    over up to 2**31 visits, Gumbel's sigma and improved policy) stays finite, also in the float32
    tensors of :class:`SearchSummary`; anything outside is refused with a ValueError that names the
    field and the batch rows, before the trees change.
    """

    reward: Any
    discount: Any
    prior_logits: Any
    value: Any


class Selection(NamedTuple):
    """One leaf per root, chosen by :meth:`Tree.select` (int64 tensors [B] on the tree's device).

    Attributes
    ----------
    parent : the node whose child is to be evaluated; its embedding feeds the model.
    action : the action taken from ``parent``.
    node : id the new node gets (store the model's next embedding there); at ``max_depth`` the id
        of the existing leaf that is visited again without a model call being needed.
    is_new : bool, whether ``node`` is new (``False`` only at the depth limit).
    """

    parent: torch.Tensor
    action: torch.Tensor
    node: torch.Tensor
    is_new: torch.Tensor


class SearchSummary(NamedTuple):
    """Root statistics after a search (tensors on the tree's device).

    Attributes
    ----------
    visit_counts : int64, shape [B, A]
    visit_probs : float32, shape [B, A] -- visit counts over their sum (0 for invalid actions).
    value : float32, shape [B] -- the root's mean value, including its own network value.
    qvalues : float32, shape [B, A] -- reward + discount * child value; 0 where unvisited.
    """

    visit_counts: torch.Tensor
    visit_probs: torch.Tensor
    value: torch.Tensor
    qvalues: torch.Tensor


def host_array(x: Any, name: str) -> np.ndarray:
    """A numpy view (CPU tensors, numpy arrays) or copy (device tensors, lists) of ``x``."""
    if isinstance(x, torch.Tensor):
        try:
            return host(x)
        except (RuntimeError, NotImplementedError) as exc:  # e.g. a meta tensor, which has no data
            raise ValueError(f"{name}: expected a tensor whose data can be read, got one on {x.device}") from exc
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except Exception as exc:  # e.g. ragged lists
        raise ArgumentTypeError(f"{name}: expected an array or tensor, got {type(x).__name__}") from exc


def checked_mask(x: Any, name: str) -> np.ndarray:
    """host_array of a mask; integer masks must hold only 0 and 1, as the binding reads any other
    value as True (a 2 is more likely an action id than a flag)."""
    mask = host_array(x, name)
    if mask.dtype.kind in "iu" and mask.size and not np.isin(mask, (0, 1)).all():
        raise ValueError(f"{name}: expected a boolean mask (or integers 0 and 1), got values {np.unique(mask)[:8]}")
    return mask


def check_room(num_nodes: np.ndarray, capacity: int, kept: torch.Tensor, num_simulations: int) -> None:
    """Refuses a search of ``num_simulations`` new nodes that would not fit in reused trees of
    ``num_nodes`` int [B] nodes, of which the roots not ``kept`` (bool [B]) restart from one."""
    nodes = int(np.where(kept.numpy(), num_nodes, 1).max())
    if nodes + num_simulations > capacity:
        raise ValueError(f"num_simulations: expected at most {capacity - nodes} new nodes in the kept trees "
                         f"(capacity {capacity}, {nodes} nodes kept), got {num_simulations}")


def host_output(x: Any, name: str) -> Any:
    """host_array with a fast path for what a model on the CPU returns (called for every field of
    every model call); the binding checks dtype and shape."""
    if type(x) is torch.Tensor and x.is_cpu and not x.requires_grad:
        try:
            return x.numpy()
        except TypeError:  # a dtype numpy lacks (bfloat16): host_array converts it
            pass
    return host_array(x, name)


def model_outputs(output: Any) -> tuple[Any, Any, Any, Any]:
    """(reward, discount, prior_logits, value) of a RecurrentOutput as host arrays for the core."""
    if not (isinstance(output, Sequence) and not isinstance(output, str) and len(output) == 4):
        raise ArgumentTypeError("recurrent_fn: expected (RecurrentOutput(reward, discount, prior_logits, value), "
                                f"next_embedding), got an output of type {type(output).__name__}")
    return (host_output(output[0], "reward"), host_output(output[1], "discount"),
            host_output(output[2], "prior_logits"), host_output(output[3], "value"))


def device_of(x: Any) -> torch.device:
    """The device of the first tensor in ``x`` (CPU for numpy arrays)."""
    for leaf in _leaves(x):
        if isinstance(leaf, torch.Tensor):
            return leaf.device
    return torch.device("cpu")


def _leaves(x: Any) -> list:
    if isinstance(x, Mapping):
        return [leaf for key in sorted(x) for leaf in _leaves(x[key])]
    if isinstance(x, (tuple, list)):
        return [leaf for item in x for leaf in _leaves(item)]
    return [x]


def _map(fn: Callable, x: Any, *rest: Any) -> Any:
    """Applies fn leaf by leaf over matching tuple / list / dict structures."""
    if isinstance(x, Mapping):
        return type(x)({k: _map(fn, x[k], *(r[k] for r in rest)) for k in x})
    if isinstance(x, (tuple, list)) and not hasattr(x, "_fields"):
        return type(x)(_map(fn, *items) for items in zip(x, *rest))
    if isinstance(x, tuple):  # a NamedTuple
        return type(x)(*(_map(fn, *items) for items in zip(x, *rest)))
    return fn(x, *rest)


def _same_structure(a: Any, b: Any) -> bool:
    if isinstance(a, Mapping):
        return isinstance(b, Mapping) and set(a) == set(b) and all(_same_structure(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return isinstance(b, type(a)) and len(a) == len(b) and all(_same_structure(x, y) for x, y in zip(a, b))
    return not isinstance(b, (Mapping, tuple, list))


MAX_POOL_BYTES = 2**40
"""The largest embedding pool, in bytes over all its leaves: (capacity + 1) x B x the bytes of one
root's embedding. Larger pools are refused with a ValueError before anything is allocated."""


def _as_leaf(leaf: Any, batch_size: int) -> torch.Tensor:
    """A root embedding leaf as a tensor [B, ...], checked."""
    if not isinstance(leaf, (torch.Tensor, np.ndarray)):
        raise ArgumentTypeError(f"root.embedding: expected a tensor or array [B, ...] (or a tuple, list or "
                                f"dict of them), got {type(leaf).__name__}")
    try:
        t = torch.as_tensor(leaf)
    except TypeError as exc:  # numpy dtypes torch lacks (object, strings)
        raise ArgumentTypeError(f"root.embedding: expected numeric leaves, got dtype {leaf.dtype}") from exc
    if t.ndim < 1 or t.shape[0] != batch_size:
        raise ValueError(f"root.embedding: expected leading dimension {batch_size}, got shape {tuple(t.shape)}")
    return t


def default_capacity(num_simulations: int) -> int:
    """``1 + num_simulations``, the nodes a search from fresh roots needs: the searches' default
    capacity, refused naming ``num_simulations`` (which the caller gave) beyond the largest tree."""
    if num_simulations >= _core.mcts.MAX_CAPACITY:
        raise ValueError(f"num_simulations: expected at most {_core.mcts.MAX_CAPACITY - 1} (the default capacity, "
                         f"1 + num_simulations nodes, is at most 2**30), got {num_simulations}")
    return 1 + num_simulations


class EmbeddingPool:
    """Latent states of every node of B trees, one tensor per embedding leaf, laid out
    [capacity + 1, B, ...] and stored flat as rows ``node * B + b``; row ``capacity`` is a spare that
    absorbs writes for leaves that are not new. Lives on the root embedding's device.

    Parameters
    ----------
    embedding : Tensor, ndarray, or a tuple / list / dict of them, each shaped [B, ...]
        The roots' embeddings (row 0 of every tree).
    batch_size : int
        B, at least 1.
    capacity : int
        Nodes per tree, at least 1. The pool takes (capacity + 1) x the bytes of ``embedding``, at
        most :data:`MAX_POOL_BYTES` (2**40).
    """

    def __init__(self, embedding: Any, batch_size: int, capacity: int):
        self.batch_size = integer(batch_size, "batch_size")
        self.capacity = integer(capacity, "capacity")
        leaves = self.checked_leaves(embedding, batch_size, capacity)

        def make(t: torch.Tensor) -> torch.Tensor:
            # Rows are written before they are read (roots here, nodes on expansion): no zeroing.
            pool = torch.empty(((capacity + 1) * batch_size, *t.shape[1:]), dtype=t.dtype, device=t.device)
            pool[:batch_size] = t
            return pool

        self.structure = embedding
        self.rows = _map(make, leaves)
        # What scatter's fast path (a single tensor of the right kind) compares against.
        single = isinstance(self.rows, torch.Tensor)
        self._row_shape = self.rows.shape[1:] if single else None
        self._dtype = self.rows.dtype if single else None
        self._device = self.rows.device if single else None

    @classmethod
    def like(cls, sample: Any, batch_size: int, capacity: int, *, name: str) -> EmbeddingPool:
        """A pool for embeddings with the structure, trailing shapes, dtypes and device of ``sample``
        (leaves [n, ...], any n >= 1), its rows not yet written: for embeddings first seen on some
        of the roots (Stochastic MuZero's afterstates). ``name`` is the function that made
        ``sample``, for errors."""

        def template(leaf: Any) -> torch.Tensor:
            if not isinstance(leaf, (torch.Tensor, np.ndarray)):
                raise ArgumentTypeError(f"{name}: expected the embedding's leaves to be tensors, "
                                        f"got {type(leaf).__name__}")
            t = torch.as_tensor(leaf)
            if t.ndim < 1 or t.shape[0] < 1:
                raise ValueError(f"{name}: expected embedding leaves of shape [n, ...], got {tuple(t.shape)}")
            return t[:1].expand(batch_size, *t.shape[1:])

        return cls(_map(template, sample), batch_size, capacity)

    @staticmethod
    def checked_leaves(embedding: Any, batch_size: int, capacity: int) -> Any:
        """``embedding`` with its leaves as tensors [B, ...], checked, and checked to fit a pool of
        ``capacity`` nodes (:data:`MAX_POOL_BYTES`) without allocating it."""
        leaves = _map(lambda leaf: _as_leaf(leaf, batch_size), embedding)
        # Python integers: the product cannot wrap.
        root_bytes = sum(t.numel() * t.element_size() for t in _leaves(leaves))
        if (capacity + 1) * root_bytes > MAX_POOL_BYTES:
            raise ValueError(f"capacity: expected (capacity + 1) x {root_bytes} bytes (the batch's embeddings) "
                             f"<= 2**40 bytes, got capacity {capacity}")
        return leaves

    def accepts(self, embedding: Any) -> bool:
        """Whether ``embedding`` (leaves [B, ...]) has this pool's structure, shapes, dtypes and devices."""
        if not _same_structure(self.structure, embedding):
            return False
        pools, leaves = _leaves(self.rows), _leaves(embedding)
        return all(isinstance(x, torch.Tensor) and x.shape == (self.batch_size, *p.shape[1:]) and x.dtype == p.dtype
                   and x.device == p.device for p, x in zip(pools, leaves))

    def gather(self, rows: torch.Tensor) -> Any:
        """The embeddings at flat rows ``rows`` [B] (int64, on the pool's device)."""
        if isinstance(self.rows, torch.Tensor):  # the common case, without the tree walk
            return self.rows.index_select(0, rows if rows.device == self.rows.device else rows.to(self.rows.device))
        return _map(lambda pool: pool.index_select(0, rows.to(pool.device)), self.rows)

    def scatter(self, rows: torch.Tensor, values: Any, *, name: str = "recurrent_fn") -> None:
        """Writes ``values`` (same structure as the pool's embedding, leaves [n, ...]) at ``rows``
        (int64 [n], usually n = B). ``name`` is the function that returned them, for errors."""
        pool = self.rows
        if (type(values) is torch.Tensor and values.shape[1:] == self._row_shape and values.dtype == self._dtype
                and values.shape[:1] == rows.shape and values.device == rows.device == self._device):
            pool.index_copy_(0, rows, values)
            return
        if not _same_structure(self.structure, values):
            raise ValueError(f"{name}: the next embedding must have the structure of the embeddings before it")
        count = rows.shape[0]

        def put(pool: torch.Tensor, value: Any) -> None:
            if not isinstance(value, (torch.Tensor, np.ndarray)):
                raise ArgumentTypeError(f"{name}: expected the next embedding's leaves to be tensors, "
                                        f"got {type(value).__name__}")
            value = torch.as_tensor(value)
            if tuple(value.shape) != (count, *pool.shape[1:]):
                raise ValueError(f"{name}: expected next embedding leaves of shape "
                                 f"{(count, *pool.shape[1:])}, got {tuple(value.shape)}")
            pool.index_copy_(0, rows.to(pool.device), value.to(device=pool.device, dtype=pool.dtype))

        _map(put, self.rows, values)

    def checked_roots(self, embedding: Any) -> Any:
        """``embedding`` as this pool's leaves (tensors [B, ...] of its dtypes and devices), for
        :meth:`set_roots`; raises naming ``root.embedding`` (and changes nothing) if it does not fit."""
        if not _same_structure(self.structure, embedding):
            raise ValueError("root.embedding: expected the structure of the search tree's embedding")

        def convert(pool: torch.Tensor, value: Any) -> torch.Tensor:
            value = _as_leaf(value, self.batch_size)
            if tuple(value.shape) != (self.batch_size, *pool.shape[1:]):
                raise ValueError(f"root.embedding: expected leaves of shape {(self.batch_size, *pool.shape[1:])}, "
                                 f"got {tuple(value.shape)}")
            return value.to(device=pool.device, dtype=pool.dtype)

        return _map(convert, self.rows, embedding)

    def set_roots(self, embedding: Any, which: torch.Tensor | None) -> None:
        """Writes new root embeddings (row 0) for the roots in ``which`` (bool [B]; None: all).
        A refused ``embedding`` leaves the pool unchanged."""
        checked = self.checked_roots(embedding)

        def put(pool: torch.Tensor, value: torch.Tensor) -> None:
            if which is None:
                pool[: self.batch_size] = value
            else:
                mask = which.to(pool.device)
                pool[: self.batch_size][mask] = value[mask]

        _map(put, self.rows, checked)

    def permute(self, old_ids: np.ndarray) -> None:
        """Follows a re-rooting: node k of tree b takes the embedding of node ``old_ids[k, b]``."""
        flat = torch.from_numpy(old_ids * self.batch_size + np.arange(self.batch_size))
        flat = flat.reshape(-1)

        def move(pool: torch.Tensor) -> None:
            pool[: flat.numel()] = pool.index_select(0, flat.to(pool.device))

        _map(move, self.rows)


class Tree:
    """B search trees in flat C++ arrays, stepped from Python.

    The loop a search runs (``muzero_policy`` and ``gumbel_muzero_policy`` run it for you)::

        tree = Tree(batch_size=B, num_actions=A, capacity=1 + num_simulations)
        tree.set_roots(root.prior_logits, root.value)
        tree.begin_muzero(num_simulations, seed=0)
        for _ in range(num_simulations):
            sel = tree.select()                               # one leaf per root
            out, next_embedding = recurrent_fn(embeddings[sel.parent, batch], sel.action)
            embeddings[sel.node, batch] = next_embedding      # keep it for later selections
            tree.expand_and_backup(out)

    Parameters
    ----------
    batch_size : int
        Number of roots (independent trees), B, in [1, 2**24].
    num_actions : int
        Number of actions, A, in [1, 2**24].
    capacity : int
        Nodes per tree, in [1, 2**30]. A search of S simulations needs ``1 + S`` (more when a
        subtree is kept). The trees take ``B x capacity x _core.mcts.record_bytes(A)`` bytes (about
        ``44 A`` per node), at most 2**40; larger shapes are refused with a ValueError before
        anything is allocated.
    num_threads : int or None
        Threads that work on the trees of a batch; None picks one per 128 roots, up to the number
        of hardware threads. Results do not depend on it.
    """

    def __init__(self, batch_size: int, num_actions: int, capacity: int, *, num_threads: int | None = None):
        self.batch_size = integer(batch_size, "batch_size")
        self.num_actions = integer(num_actions, "num_actions")
        self.capacity = integer(capacity, "capacity")
        self.requested_threads = integer(num_threads, "num_threads", optional=True)
        """The ``num_threads`` argument (None: the core's choice, see :attr:`num_threads`)."""
        self._core = _core.mcts.Search(self.batch_size, self.num_actions, self.capacity, num_threads)
        self.device = torch.device("cpu")
        self._views = {name: torch.from_numpy(getattr(self._core, name))
                       for name in ("parent", "action", "node", "is_new", "gather_rows", "scatter_rows", "action_int64")}
        self._kind: str | None = None
        # Set once rows() handed out views of the core's own arrays: a recycled tree would overwrite
        # them, so the policies never recycle such a tree (see SearchTree).
        self._lent = False

    @property
    def num_threads(self) -> int:
        return self._core.num_threads

    @property
    def core_seconds(self) -> float:
        """Wall-clock seconds spent inside the C++ ``select`` and ``expand_and_backup`` since this
        tree was created (the search's own cost, without the model and the Python loop)."""
        return self._core.core_seconds

    @property
    def num_nodes(self) -> np.ndarray:
        """Nodes in use per tree, int32 [B]."""
        return self._core.num_nodes

    def set_roots(self, prior_logits: Any, value: Any, invalid_actions: Any = None, *, keep: Any = None) -> None:
        """Starts every tree afresh from a root (or keeps the subtree of roots in ``keep``).

        Parameters
        ----------
        prior_logits : float [B, A]
        value : float [B]
        invalid_actions : bool [B, A] or None
            Actions the root may not take; at least one per root must stay valid.
        keep : bool [B] or None
            Roots that keep the subtree :meth:`subtree` left them; their ``prior_logits`` and
            ``value`` are ignored and statistics of actions now invalid are dropped.
        """
        device = device_of(prior_logits)
        self._core.set_roots(host_array(prior_logits, "prior_logits"), host_array(value, "value"),
                             None if invalid_actions is None else checked_mask(invalid_actions, "invalid_actions"),
                             None if keep is None else checked_mask(keep, "keep"))
        self.device = device  # only once the roots were accepted: a refused call changes nothing
        self._kind = None

    def begin_muzero(self, num_simulations: int, *, dirichlet_alpha: float = 0.3, dirichlet_fraction: float = 0.25,
                     pb_c_init: float = 1.25, pb_c_base: float = 19652.0, qtransform: QTransform | None = None,
                     max_depth: int | None = None, seed: int | None = None) -> None:
        """Prepares a MuZero search (Schrittwieser et al. 2020): Dirichlet noise on the roots'
        priors, pUCT with Q transformed by ``qtransform`` (default: min-max over each tree).
        Arguments as in :func:`muzero_policy`."""
        integer(num_simulations, "num_simulations")
        integer(max_depth, "max_depth", optional=True)
        transform = checked_qtransform(qtransform)
        self._core.begin_muzero(num_simulations, resolve_seed(seed),
                                real(pb_c_init, "pb_c_init", low=-np.inf),
                                real(pb_c_base, "pb_c_base", low=np.finfo(float).tiny),
                                real(dirichlet_alpha, "dirichlet_alpha"),
                                real(dirichlet_fraction, "dirichlet_fraction", low=0.0, high=1.0), max_depth,
                                *transform)
        self._kind = "muzero"

    def begin_gumbel(self, num_simulations: int, *, max_num_considered_actions: int = 16, gumbel_scale: float = 1.0,
                     value_scale: float = 0.1, maxvisit_init: float = 50.0, rescale_with_invalid: bool = False,
                     max_depth: int | None = None, seed: int | None = None) -> None:
        """Prepares a Gumbel MuZero search (Danihelka et al. 2022); a kept root's sequential halving
        counts only the visits this search adds. Arguments as in :func:`gumbel_muzero_policy`."""
        integer(num_simulations, "num_simulations")
        integer(max_num_considered_actions, "max_num_considered_actions")
        integer(max_depth, "max_depth", optional=True)
        if not isinstance(rescale_with_invalid, bool):
            raise ArgumentTypeError("rescale_with_invalid: expected a bool, got "
                                    f"{type(rescale_with_invalid).__name__}")
        self._core.begin_gumbel(num_simulations, resolve_seed(seed), max_num_considered_actions,
                                real(gumbel_scale, "gumbel_scale", low=0.0),
                                real(value_scale, "value_scale", low=-np.inf),
                                real(maxvisit_init, "maxvisit_init", low=-np.inf), max_depth, rescale_with_invalid)
        self._kind = "gumbel"

    def select(self) -> Selection:
        """Chooses one leaf per root (see :class:`Selection`)."""
        self._core.select()
        v = self._views
        return Selection(*(self._to_device(v[k].long() if k != "is_new" else v[k].clone())
                           for k in ("parent", "action", "node", "is_new")))

    def select_rows(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like :meth:`select`, but returns (gather rows, scatter rows, action) as int64 tensors [B]
        for an :class:`EmbeddingPool`. On CPU they are views of arrays the next call overwrites."""
        self._core.select()
        return self.rows()

    def rows(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The last selection's (gather rows, scatter rows, action), as :meth:`select_rows` returns them."""
        self._lent = True
        return self._rows()

    @property
    def lent(self) -> bool:
        """Whether :meth:`rows` (or :meth:`select_rows`) handed out views of the tree's arrays: such
        a tree is never recycled for another search, which would overwrite them."""
        return self._lent

    def first_rows(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`select_rows` for a search loop that hands the views to nobody: the tree is not
        marked :attr:`lent`, so it may be recycled (and the views overwritten) after the search."""
        self._core.select()
        return self._rows()

    def expand_and_select_rows(self, output: RecurrentOutput) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """:meth:`expand_and_backup` and the next selection in one C++ call (one hand-off to the tree
        threads per simulation): the next rows as :meth:`first_rows` gives them, or None when
        nothing was selected (the search's last simulation)."""
        if self._core.expand_and_select(*model_outputs(output)):
            return self._rows()
        return None

    def _rows(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        v = self._views
        return (self._to_device(v["gather_rows"]), self._to_device(v["scatter_rows"]),
                self._to_device(v["action_int64"]))

    def expand_and_backup(self, output: RecurrentOutput) -> None:
        """Creates the selected leaves from the model's outputs for them and backs their values up.

        Parameters
        ----------
        output : RecurrentOutput
            reward, discount, value [B] and prior_logits [B, A] for each root's selected leaf.
        """
        self._core.expand_and_backup(*model_outputs(output))

    def summary(self) -> SearchSummary:
        """Visit counts, visit shares, values and Q values at the roots."""
        counts, q, value = self._core.summary()
        counts = torch.from_numpy(counts).long()
        total = counts.sum(dim=1, keepdim=True)
        probs = counts.float() / total.clamp(min=1).float()
        return SearchSummary(*(self._to_device(t) for t in (counts, probs, torch.from_numpy(value).float(),
                                                            torch.from_numpy(q).float())))

    def decide(self, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """The search's action [B] (int64) and action weights [B, A] (float32)."""
        if self._kind == "gumbel":
            action, weights = self._core.decide_gumbel()
        else:
            action, weights = self._core.decide_muzero(real(temperature, "temperature", low=0.0))
        return self._to_device(torch.from_numpy(action)), self._to_device(torch.from_numpy(weights).float())

    def subtree(self, actions: Any) -> tuple[np.ndarray, np.ndarray]:
        """Re-roots every tree at the child its root reached with ``actions[b]``, keeping that
        child's subtree with all its statistics, compacted to the front (node ids change).

        Returns
        -------
        old_ids : int64 ndarray [capacity, B]
            ``old_ids[k, b]`` is the former id of what is now node k of tree b (k itself beyond the
            kept nodes), for moving embeddings along.
        kept : bool ndarray [B]
            False where that child was never expanded: the tree is empty and needs a new root
            (``set_roots`` with ``keep`` False there).
        """
        old_ids, kept = self._core.reroot(host_array(actions, "actions"))
        self._kind = None
        return old_ids, kept > 0

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.device.type == "cpu" else t.to(self.device, non_blocking=True)
