"""Pure-Python reference of Stochastic MuZero's search (tests/mcts/SPEC.md, "Stochastic MuZero"),
one tree at a time, written from the specification independently of the C++ core.

It reuses the MuZero reference (reference.py) where the specification says "as MuZero's": the node
records, softmax with the core's exponential, the pUCT choice at decision nodes and the tree-wide
min-max bounds. What is new is here: nodes of two kinds (a chance node's edges are the C outcomes),
the two model steps, the chance rule, and the two-level re-rooting of tree reuse.

Model steps, per tree:

* ``decision_step(state_embedding, action) -> (chance_logits [C], afterstate_value, afterstate_embedding)``
* ``chance_step(afterstate_embedding, outcome) -> (reward, discount, prior_logits [A], value, state_embedding)``

All arithmetic in float64 in the specification's operation order.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

from pymbrl.mcts import reference
from pymbrl.mcts.reference import (
    Node,
    SearchResult,
    Tree,
    muzero_action_probabilities,
    TREE_MIN_MAX,
    QTransform,
    muzero_select,
    softmax,
)

DecisionStep = Callable[[Any, int], tuple[Sequence[float], float, Any]]
ChanceStep = Callable[[Any, int], tuple[float, float, Sequence[float], float, Any]]


def first_argmax(scores: Sequence[float], considered: Sequence[int]) -> int:
    """The considered index of the largest score; ties -> the lowest index."""
    best = -1
    for a in considered:
        if best < 0 or scores[a] > scores[best]:
            best = a
    return best


class StochasticTree(Tree):
    """A reference Tree whose nodes are decision nodes (A children) or chance nodes (C children)."""

    def __init__(self, num_actions: int, num_chance_outcomes: int, valid: Sequence[bool]) -> None:
        super().__init__(num_actions, valid)
        self.num_chance_outcomes = num_chance_outcomes
        self.chance: list[bool] = []  # per node id

    def add(self, parent: int, edge: int, reward: float, discount: float, logits: Sequence[float], value: float,
            embedding: Any, prior: list[float], chance: bool) -> int:
        """Appends a node (ids in allocation order, both kinds) and links it under its parent."""
        x = len(self.nodes)
        width = self.num_chance_outcomes if chance else self.num_actions
        self.nodes.append(Node(visits=1, value_sum=value, raw_value=value, reward=reward, discount=discount,
                               parent=parent, action=edge, logits=list(logits), prior=prior, embedding=embedding,
                               children=[-1] * width))
        self.chance.append(chance)
        if parent >= 0:
            self.nodes[parent].children[edge] = x
        return x


def chance_select(tree: StochasticTree, x: int) -> int:
    """Chance rule at chance node x: argmax over outcomes of P(o) / (N(o) + 1), ties -> lowest."""
    node = tree.nodes[x]
    n = tree.child_visits(x)
    scores = [node.prior[o] / float(n[o] + 1) for o in range(tree.num_chance_outcomes)]
    return first_argmax(scores, range(tree.num_chance_outcomes))


def new_tree(root_logits: Sequence[float], root_value: float, root_embedding: Any, num_chance_outcomes: int,
             invalid_actions: Sequence[bool] | None = None, dirichlet_fraction: float = 0.0,
             dirichlet_noise: Sequence[float] | None = None) -> StochasticTree:
    """A tree holding only the root, a decision node: P = softmax over the valid actions, then the
    optional Dirichlet mix on valid actions."""
    num_actions = len(root_logits)
    valid = [True] * num_actions if invalid_actions is None else [not bool(i) for i in invalid_actions]
    if not any(valid):
        raise ValueError("at least one root action must be valid")
    prior = softmax(root_logits, valid)
    if dirichlet_fraction > 0.0:
        f = dirichlet_fraction
        prior = [(1.0 - f) * prior[a] + f * dirichlet_noise[a] if valid[a] else 0.0 for a in range(num_actions)]
    tree = StochasticTree(num_actions, num_chance_outcomes, valid)
    tree.add(-1, -1, 0.0, 1.0, root_logits, float(root_value), root_embedding, prior, chance=False)
    return tree


def simulate(tree: StochasticTree, decision_step: DecisionStep, chance_step: ChanceStep, max_depth: int | None,
             pb_c_init: float = 1.25, pb_c_base: float = 19652.0, qtransform: QTransform = TREE_MIN_MAX) -> None:
    """One simulation: descend (pUCT at decision nodes, the chance rule at chance nodes), expand a
    new node of the other kind than its parent or revisit a leaf at max_depth, back up through both
    (every edge's Q, of either kind, enters the min-max bounds)."""

    def select(x: int, depth: int) -> int:
        return chance_select(tree, x) if tree.chance[x] else muzero_select(tree, x, pb_c_init, pb_c_base, qtransform)

    def expand(x: int, e: int) -> tuple[int, float]:
        if tree.chance[x]:
            reward, discount, logits, value, embedding = chance_step(tree.nodes[x].embedding, e)
            reward, discount = float(reward), float(discount)
        else:
            logits, value, embedding = decision_step(tree.nodes[x].embedding, e)
            reward, discount = 0.0, 1.0
        logits = [float(v) for v in logits]
        c = tree.add(x, e, reward, discount, logits, float(value), embedding, softmax(logits),
                     chance=not tree.chance[x])
        return c, float(value)

    reference.simulate(tree, expand, select, max_depth)


def decide(tree: StochasticTree, temperature: float = 0.0, rng: random.Random | None = None) -> SearchResult:
    """MuZero's decision and summary over the root's A actions."""
    n = tree.child_visits(0)
    q = tree.child_q(0)
    total = sum(n)
    weights = [n[a] / total if tree.valid[a] and total > 0 else 0.0 for a in range(tree.num_actions)]
    valid_actions = [a for a in range(tree.num_actions) if tree.valid[a]]
    if temperature == 0.0:
        action = first_argmax([float(v) for v in n], valid_actions)
    else:
        probs = muzero_action_probabilities(n, temperature, tree.valid)
        action = rng.choices(range(tree.num_actions), weights=probs)[0]
    root = tree.nodes[0]
    return SearchResult(action=action, action_weights=weights, visit_counts=n,
                        qvalues=[q[a] if n[a] > 0 else 0.0 for a in range(tree.num_actions)],
                        value=root.value_sum / root.visits, tree=tree)


def stochastic_muzero_search(decision_step: DecisionStep, chance_step: ChanceStep, root_logits: Sequence[float],
                             root_value: float, root_embedding: Any, num_simulations: int, *,
                             num_chance_outcomes: int, invalid_actions: Sequence[bool] | None = None,
                             max_depth: int | None = None, pb_c_init: float = 1.25, pb_c_base: float = 19652.0,
                             qtransform: QTransform = TREE_MIN_MAX, temperature: float = 0.0,
                             rng: random.Random | None = None) -> SearchResult:
    """Stochastic MuZero search of one root (no noise)."""
    tree = new_tree(root_logits, root_value, root_embedding, num_chance_outcomes, invalid_actions)
    for _ in range(num_simulations):
        simulate(tree, decision_step, chance_step, max_depth, pb_c_init, pb_c_base, qtransform)
    return decide(tree, temperature, rng)


def reroot(tree: StochasticTree, action: int, outcome: int) -> tuple[StochasticTree | None, list[int]]:
    """The tree re-rooted at the decision node two levels down (action, then outcome), or None if
    either edge was never expanded, and the old ids of the kept nodes in their new order (increasing
    old id). The new root's reward and discount become 0 and 1; statistics are unchanged."""
    after = tree.nodes[0].children[action]
    start = -1 if after == -1 else tree.nodes[after].children[outcome]
    if start == -1:
        return None, []
    new = StochasticTree(tree.num_actions, tree.num_chance_outcomes, [True] * tree.num_actions)
    kept = reference.copy_subtree(tree, start, new)
    new.chance.extend(tree.chance[x] for x in kept)
    return new, kept


def revalidate(tree: StochasticTree, invalid_actions: Sequence[bool] | None) -> None:
    """A kept root's new valid actions: statistics through actions now invalid are subtracted and
    those children dropped; root priors from its logits over the valid actions; min-max rebuilt
    from the Q of every edge reachable from the root (both kinds)."""
    valid = [True] * tree.num_actions if invalid_actions is None else [not bool(i) for i in invalid_actions]
    root = tree.nodes[0]
    for a in range(tree.num_actions):
        c = root.children[a]
        if not valid[a] and c != -1:
            child = tree.nodes[c]
            root.visits -= child.visits
            root.value_sum -= child.visits * child.reward + child.discount * child.value_sum
            root.children[a] = -1
    tree.valid = valid
    root.prior = softmax(root.logits, valid)
    tree.lo, tree.hi = math.inf, -math.inf
    reachable = {0}
    for x in range(len(tree.nodes)):
        if x not in reachable:
            continue
        for c in tree.nodes[x].children:
            if c != -1:
                reachable.add(c)
                tree.update_min_max(tree.edge_q(c))
