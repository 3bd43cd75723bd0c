"""Stochastic MuZero's search (Antonoglou et al., "Planning in Stochastic Environments with a Learned
Model", ICLR 2022) on a batch of roots, mctx-style.

The model is split at the environment's randomness: ``decision_recurrent_fn(state, action)`` gives
the afterstate (the state once the agent acted, before the environment's draw) with its value and
the logits of the C chance outcomes; ``chance_recurrent_fn(afterstate, outcome)`` gives the next
state with the reward, discount, action logits and value. The tree alternates decision nodes and
chance nodes. It is searched in C++ (``pymbrl._core.mcts.StochasticSearch``); this module loops over
the simulations, calling each function only on the roots whose new leaf needs it, and keeps the
states and the afterstates in two torch pools on their own device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from pymbrl import _core
from pymbrl._checks import ArgumentTypeError, integer, real, renamed, resolve_seed
from pymbrl.mcts.policies import MAX_MAGNITUDE, PolicyOutput
from pymbrl.mcts.qtransforms import QTransform, checked_qtransform
from pymbrl.mcts.tree import (EmbeddingPool, Root, SearchSummary, check_room, checked_mask, default_capacity, device_of,
                              host_array, host_output)


class DecisionOutput(NamedTuple):
    """What ``decision_recurrent_fn(state_embedding, action)`` returns beside the afterstate.

    Attributes
    ----------
    chance_logits : float, shape [B', C]
        Logits of the chance outcomes that may follow the action (finite or ``-inf``, some finite).
    afterstate_value : float, shape [B']
        Value of the afterstate, from the point of view of the player who acted.

    The edge into the afterstate has reward 0 and discount 1. Accepted range as
    :class:`~pymbrl.mcts.RecurrentOutput`: ``|afterstate_value| <= 2**64``, finite.
    """

    chance_logits: Any
    afterstate_value: Any


class ChanceOutput(NamedTuple):
    """What ``chance_recurrent_fn(afterstate_embedding, outcome)`` returns beside the next state.

    Attributes
    ----------
    reward, discount : float, shape [B']
        Of the transition, as in :class:`~pymbrl.mcts.RecurrentOutput` (two-player zero-sum games:
        ``discount = -1``, or ``-gamma``, where the next state's player is the opponent).
    prior_logits : float, shape [B', A]
        Action logits at the next state (finite or ``-inf``, some finite).
    value : float, shape [B']
        Value of the next state, from the point of view of its player to move.

    Accepted range: ``|reward|, |value| <= 2**64``, ``|discount| <= 1``, all finite.
    """

    reward: Any
    discount: Any
    prior_logits: Any
    value: Any


DecisionRecurrentFn = Callable[[Any, torch.Tensor], tuple[DecisionOutput, Any]]
ChanceRecurrentFn = Callable[[Any, torch.Tensor], tuple[ChanceOutput, Any]]

# The fields each function returns, in the order the core takes them, and the function that
# returns each (errors name it).
_DECISION_FIELDS = ("chance_logits", "afterstate_value")
_CHANCE_FIELDS = ("reward", "discount", "prior_logits", "value")
_ROWS = ("decision_gather", "decision_scatter", "decision_action", "chance_gather", "chance_scatter",
         "chance_outcome")


class StochasticSearchTree:
    """The trees of a finished Stochastic MuZero search with their state and afterstate embeddings,
    for statistics and reuse. Call :meth:`subtree` with the actions taken and the chance outcomes
    the environment drew, and pass the result as ``search_tree=`` to the next
    :func:`stochastic_muzero_policy` call.
    """

    def __init__(self, core: Any, states: EmbeddingPool, afterstates: EmbeddingPool | None, device: torch.device):
        self._core = core
        self._states = states
        self._afterstates = afterstates
        self.device = device
        """Where the summaries' tensors live (the device of ``root.prior_logits``)."""
        self.kept: torch.Tensor | None = None
        """After :meth:`subtree`: bool [B], roots that kept a searched subtree."""
        self._views = {name: torch.from_numpy(getattr(core, name)) for name in _ROWS}

    def _live(self) -> Any:
        if self._core is None:
            raise RuntimeError("search_tree: this tree was re-rooted by subtree(); use the tree subtree() returned")
        return self._core

    @property
    def batch_size(self) -> int:
        return self._live().batch_size

    @property
    def num_actions(self) -> int:
        return self._live().num_actions

    @property
    def num_chance_outcomes(self) -> int:
        return self._live().num_chance_outcomes

    @property
    def capacity(self) -> int:
        return self._live().capacity

    @property
    def num_threads(self) -> int:
        return self._live().num_threads

    @property
    def core_seconds(self) -> float:
        """Wall-clock seconds spent inside the C++ ``select`` and ``expand_and_backup`` since this
        tree was created (the search's own cost, without the model and the Python loop)."""
        return self._live().core_seconds

    @property
    def num_nodes(self) -> np.ndarray:
        """Nodes in use per tree (decision and chance nodes), int32 [B]."""
        return self._live().num_nodes

    def chance_nodes(self, root: int) -> np.ndarray:
        """bool [num_nodes[root]]: which nodes of tree ``root`` are chance nodes (by node id)."""
        return self._live().chance_nodes(root)

    @property
    def embeddings(self) -> EmbeddingPool:
        """The state embeddings (decision nodes), [capacity + 1, B, ...] per leaf, flat rows ``node * B + b``."""
        self._live()
        return self._states

    @property
    def afterstate_embeddings(self) -> EmbeddingPool | None:
        """The afterstate embeddings (chance nodes), laid out like :attr:`embeddings`; None until
        ``decision_recurrent_fn`` first ran."""
        self._live()
        return self._afterstates

    def summary(self) -> SearchSummary:
        """Visit counts, visit shares, values and Q values at the roots, over the A actions."""
        counts, q, value = self._live().summary()
        counts = torch.from_numpy(counts).long()
        probs = counts.float() / counts.sum(dim=1, keepdim=True).clamp(min=1).float()
        return SearchSummary(*(self._to_device(t) for t in (counts, probs, torch.from_numpy(value).float(),
                                                            torch.from_numpy(q).float())))

    def subtree(self, actions: Any, chance_outcomes: Any) -> StochasticSearchTree:
        """The search carried over to the next move: each root b moves two levels down, through
        ``actions[b]`` and the chance outcome ``chance_outcomes[b]`` the environment drew (both
        [B] ints), to that decision node, keeping its subtree, statistics and embeddings of both
        kinds. Roots where that action or that outcome was never expanded keep nothing and start
        from the next ``root`` (``kept`` False). This object is consumed (the trees are re-rooted
        in place)."""
        core = self._live()
        old_ids, kept = core.reroot(host_array(actions, "actions"), host_array(chance_outcomes, "chance_outcomes"))
        self._states.permute(old_ids)
        if self._afterstates is not None:
            self._afterstates.permute(old_ids)
        reused = StochasticSearchTree(core, self._states, self._afterstates, self.device)
        reused.kept = torch.from_numpy(kept > 0)
        self._core = None
        return reused

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.device.type == "cpu" else t.to(self.device)


def _prepare(root: Root, num_simulations: int, num_chance_outcomes: int, invalid_actions: Any,
             search_tree: StochasticSearchTree | None, capacity: int | None,
             num_threads: int | None) -> StochasticSearchTree:
    if not (isinstance(root, tuple) and len(root) == 3):
        raise ArgumentTypeError(f"root: expected Root(prior_logits, value, embedding), got {type(root).__name__}")
    integer(num_simulations, "num_simulations")
    logits = host_array(root.prior_logits, "root.prior_logits")
    if logits.ndim != 2:
        raise ValueError(f"root.prior_logits: expected shape [B, A], got {tuple(logits.shape)}")
    batch_size, num_actions = logits.shape
    device = device_of(root.prior_logits)
    if search_tree is not None:
        if not isinstance(search_tree, StochasticSearchTree):
            raise ArgumentTypeError(f"search_tree: expected a StochasticSearchTree, got {type(search_tree).__name__}")
        core = search_tree._live()
        shape = (core.batch_size, core.num_actions, core.num_chance_outcomes)
        if shape != (batch_size, num_actions, num_chance_outcomes):
            raise ValueError(f"search_tree: built for {shape[0]} roots x {shape[1]} actions x {shape[2]} chance "
                             f"outcomes, got prior_logits of shape {tuple(logits.shape)} and num_chance_outcomes "
                             f"{num_chance_outcomes}")
        kept = search_tree.kept if search_tree.kept is not None else torch.ones(batch_size, dtype=torch.bool)
        # Everything is checked before the trees or the pools change: a refused call leaves the
        # search tree as it was.
        check_room(core.num_nodes, core.capacity, kept, num_simulations)
        embedding = search_tree._states.checked_roots(root.embedding)
        _set_roots(core, root, invalid_actions, kept.numpy())
        search_tree._states.set_roots(embedding, ~kept)
        search_tree.device = device
        return search_tree
    capacity = default_capacity(num_simulations) if capacity is None else integer(capacity, "capacity")
    integer(num_threads, "num_threads", optional=True)
    embedding = EmbeddingPool.checked_leaves(root.embedding, batch_size, capacity)  # before any allocation
    core = _core.mcts.StochasticSearch(batch_size, num_actions, num_chance_outcomes, capacity, num_threads)
    _set_roots(core, root, invalid_actions, None)
    return StochasticSearchTree(core, EmbeddingPool(embedding, batch_size, capacity), None, device)


def _set_roots(core: Any, root: Root, invalid_actions: Any, keep: Any) -> None:
    invalid = None if invalid_actions is None else checked_mask(invalid_actions, "invalid_actions")
    try:
        core.set_roots(host_array(root.prior_logits, "prior_logits"), host_array(root.value, "value"), invalid,
                       keep)
    except (TypeError, ValueError) as e:
        raise (renamed(e, "root.") if str(e).startswith(("prior_logits", "value")) else e) from None


def _outputs(result: Any, fn: str, fields: tuple[str, ...]) -> tuple[list[Any], Any]:
    """(host arrays of the output's fields, next embedding) of one function call, checked for form."""
    record = "DecisionOutput" if fields == _DECISION_FIELDS else "ChanceOutput"
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ArgumentTypeError(f"{fn}: expected to return ({record}, next_embedding), got {type(result).__name__}")
    output, embedding = result
    if not (isinstance(output, tuple) and len(output) == len(fields)):
        raise ArgumentTypeError(f"{fn}: expected ({record}({', '.join(fields)}), next_embedding), got an output of "
                                f"type {type(output).__name__}")
    return [host_output(x, name) for x, name in zip(output, fields)], embedding


def _mover(device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """Moves the core's row arrays (CPU tensors) to ``device``; on the CPU they are used as they are."""
    return (lambda t: t) if device.type == "cpu" else (lambda t: t.to(device))


@torch.no_grad()
def _simulate(search: StochasticSearchTree, decision_recurrent_fn: DecisionRecurrentFn,
              chance_recurrent_fn: ChanceRecurrentFn, num_simulations: int) -> None:
    # No autograd: written into the pools, the model's outputs would otherwise chain every step of
    # the search into one growing graph.
    core, views, states = search._live(), search._views, search._states
    to_actions, to_states = _mover(search.device), _mover(device_of(states.rows))
    to_afterstates = None if search._afterstates is None else _mover(device_of(search._afterstates.rows))
    counts = core.select()
    for _ in range(num_simulations):
        decision_count, chance_count = counts
        decision: list[Any] = [None] * len(_DECISION_FIELDS)
        chance: list[Any] = [None] * len(_CHANCE_FIELDS)
        if decision_count:
            action = to_actions(views["decision_action"][:decision_count])
            result = decision_recurrent_fn(states.gather(to_states(views["decision_gather"][:decision_count])),
                                           action)
            decision, afterstate = _outputs(result, "decision_recurrent_fn", _DECISION_FIELDS)
            if search._afterstates is None:
                search._afterstates = EmbeddingPool.like(afterstate, core.batch_size, core.capacity,
                                                         name="decision_recurrent_fn")
                to_afterstates = _mover(device_of(search._afterstates.rows))
            search._afterstates.scatter(to_afterstates(views["decision_scatter"][:decision_count]), afterstate,
                                        name="decision_recurrent_fn")
        if chance_count:
            outcome = to_actions(views["chance_outcome"][:chance_count])
            afterstate = search._afterstates.gather(to_afterstates(views["chance_gather"][:chance_count]))
            chance, state = _outputs(chance_recurrent_fn(afterstate, outcome), "chance_recurrent_fn", _CHANCE_FIELDS)
            states.scatter(to_states(views["chance_scatter"][:chance_count]), state, name="chance_recurrent_fn")
        try:
            counts = core.expand_and_select(*decision, *chance)
        except (TypeError, ValueError) as e:
            fn = "decision_recurrent_fn" if str(e).startswith(_DECISION_FIELDS) else "chance_recurrent_fn"
            raise renamed(e, f"{fn} output ") from None
        if counts is None:
            return


def stochastic_muzero_policy(root: Root, decision_recurrent_fn: DecisionRecurrentFn,
                             chance_recurrent_fn: ChanceRecurrentFn, num_simulations: int, *,
                             num_chance_outcomes: int, invalid_actions: Any = None,
                             qtransform: QTransform | None = None,
                             dirichlet_alpha: float = 0.3, dirichlet_fraction: float = 0.25, pb_c_init: float = 1.25,
                             pb_c_base: float = 19652.0, temperature: float = 1.0, max_depth: int | None = None,
                             seed: int | None = None, search_tree: StochasticSearchTree | None = None,
                             capacity: int | None = None, num_threads: int | None = None) -> PolicyOutput:
    """Stochastic MuZero's search (Antonoglou et al., "Planning in Stochastic Environments with a
    Learned Model", ICLR 2022) on a batch of roots; the semantics of mctx's
    ``stochastic_muzero_policy`` (tests/mcts/SPEC.md, "Stochastic MuZero", lists the departures).

    Decision nodes (states) choose actions by MuZero's pUCT with Q min-max normalised over every
    edge of the tree; chance nodes (afterstates) choose the outcome with the largest ``P(c) / (N(c)
    + 1)``, so that outcomes are visited in proportion to their probabilities and an action's Q is
    the expectation over what the environment may draw. The edge from a state to its afterstate has
    reward 0 and discount 1. The action is drawn from the root visit counts raised to
    ``1 / temperature``.

    Each simulation adds one node per root, a chance node (one ``decision_recurrent_fn`` row) or a
    decision node (one ``chance_recurrent_fn`` row): each function is called once per simulation on
    the rows that need it, in increasing root order, and not at all when none does.

    Parameters
    ----------
    root : Root
        ``prior_logits`` [B, A], ``value`` [B], ``embedding`` [B, ...]: the current states (torch on
        any device, or numpy).
    decision_recurrent_fn : callable
        ``decision_recurrent_fn(state_embedding, action) -> (DecisionOutput, afterstate_embedding)``;
        ``state_embedding`` has the structure of ``root.embedding`` and B' <= B rows, ``action`` is
        int64 [B'] on the device of ``root.prior_logits``.
    chance_recurrent_fn : callable
        ``chance_recurrent_fn(afterstate_embedding, outcome) -> (ChanceOutput, state_embedding)``;
        ``outcome`` is int64 [B'] in [0, C).
    num_simulations : int
        Simulations per root (>= 1).
    num_chance_outcomes : int
        C, the number of chance outcomes (e.g. 2048: 2 x the empty cells, the tile and its place).
    invalid_actions : bool [B, A] or None
        Actions the roots may not take (interior decision nodes rely on the model's priors).
    qtransform : QTransform or None
        Q normalisation at decision nodes, as in :func:`~pymbrl.mcts.muzero_policy`: None is the
        MuZero paper's min-max over the whole tree (every edge of both kinds enters it);
        :func:`~pymbrl.mcts.qtransform_by_parent_and_siblings` is mctx's default.
    dirichlet_alpha, dirichlet_fraction, pb_c_init, pb_c_base, temperature, max_depth, seed, capacity,
    num_threads
        As in :func:`~pymbrl.mcts.muzero_policy` (``max_depth`` counts edges of both kinds;
        ``capacity`` defaults to ``1 + num_simulations`` nodes of either kind).
    search_tree : StochasticSearchTree or None
        ``previous.search_tree.subtree(actions, chance_outcomes)`` to continue from the kept
        subtrees; roots whose subtree was empty use ``root``.

    Returns
    -------
    PolicyOutput
        ``action`` int64 [B], ``action_weights`` float32 [B, A] (visit shares), ``search_tree`` (a
        :class:`StochasticSearchTree`).
    """
    # Every argument is checked before the trees change and before the search's model calls.
    integer(num_chance_outcomes, "num_chance_outcomes")
    transform = checked_qtransform(qtransform)
    real(temperature, "temperature", low=0.0)
    real(pb_c_init, "pb_c_init", low=-MAX_MAGNITUDE, high=MAX_MAGNITUDE)
    real(pb_c_base, "pb_c_base", low=1.0 / MAX_MAGNITUDE)
    fraction = real(dirichlet_fraction, "dirichlet_fraction", low=0.0, high=1.0)
    alpha = real(dirichlet_alpha, "dirichlet_alpha")
    if fraction > 0.0:
        real(alpha, "dirichlet_alpha", low=np.finfo(float).tiny, high=MAX_MAGNITUDE)
    integer(max_depth, "max_depth", optional=True)
    seed = resolve_seed(seed)
    search = _prepare(root, num_simulations, num_chance_outcomes, invalid_actions, search_tree, capacity, num_threads)
    search._live().begin(num_simulations, seed, float(pb_c_init), float(pb_c_base), alpha, fraction, max_depth,
                         *transform)
    _simulate(search, decision_recurrent_fn, chance_recurrent_fn, num_simulations)
    action, weights = search._live().decide(float(temperature))
    return PolicyOutput(search._to_device(torch.from_numpy(action)),
                        search._to_device(torch.from_numpy(weights).float()), search)


__all__ = ["ChanceOutput", "DecisionOutput", "StochasticSearchTree", "stochastic_muzero_policy"]
