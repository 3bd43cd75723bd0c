"""The readable pure-Python search that pymbrl's C++ core reproduces bit for bit: MuZero with its Q
transforms, and Gumbel MuZero with sequential halving, completed Q and the mixed value, also
continuing a kept tree, one tree at a time.

It is a plain transcription of the specification the C++ core implements (tests/mcts/SPEC.md in
the source repository), written to be read: every formula is in the specification's exact operation
order and in float64 (Python floats), and no numpy or torch touches the search arithmetic; where the
order of a float operation matters, the code says so. The test suite requires the core's visit
counts, Q values and values to equal these searches' exactly, so it is also the way to check, or
time, the core against code you can step through (``pymbrl demo`` does both).

Two layers:

* ``muzero_search`` / ``gumbel_muzero_search`` search one root, calling a per-tree step function
  ``step(embedding, action) -> (reward, discount, prior_logits [A], value, next_embedding)``.
* ``run_reference_batch`` runs that search for every root of a batch, given a *batched* torch
  recurrent function ``recurrent_fn(embedding [B, ...], action int64 [B]) ->
  (RecurrentOutput(reward [B], discount [B], prior_logits [B, A], value [B]), next_embedding)``,
  by calling it on batch slices of size 1. The float32 outputs are converted exactly to float64.

Noise: the searches draw no random numbers of their own (MuZero at a temperature > 0 samples its
action from a given ``random.Random``). They accept an explicit noise vector
(``dirichlet_noise`` / ``gumbel``) so that the formulas that use it can be exercised; without one
they equal the core's searches with Dirichlet fraction 0 and Gumbel scale 0.
"""

from __future__ import annotations

import copy
import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from pymbrl.mcts.tree import RecurrentOutput

# Smallest positive normal double; the mixed value floors priors at it (spec: DBL_MIN).
DBL_MIN: float = sys.float_info.min

StepResult = tuple[float, float, Sequence[float], float, Any]
"""``(reward, discount, prior_logits [A], value, next_embedding)`` of one transition of one tree."""

StepFn = Callable[[Any, int], StepResult]
"""``step(embedding, action) -> StepResult``: the per-tree recurrent function the searches call."""


# --------------------------------------------------------------------------------------------
# Small pure functions (public, so that they can be checked on hand-computed inputs)
# --------------------------------------------------------------------------------------------


def _argmax(scores: Sequence[float], considered: Sequence[int]) -> int:
    """Index of the largest score among ``considered`` (increasing order); ties -> lowest index.

    Strict ``>`` while scanning in increasing action order is what makes ties go to the lowest
    index. A result of -1 means no considered score exceeded -inf (a bug or a spec violation).
    """
    best = -1
    best_score = -math.inf
    for a in considered:
        if best < 0 or scores[a] > best_score:
            best, best_score = a, scores[a]
    if best < 0 or best_score == -math.inf:
        raise RuntimeError(f"no selectable action among {list(considered)} (scores {list(scores)})")
    return best


def portable_exp(x: float) -> float:
    """e^x for x <= 0 exactly as the C++ core computes it (src/cpp/pymbrl/mcts/softmax.h): the same
    IEEE operations in the same order, so the results are identical bit for bit."""
    if not x >= -708.0:
        return 0.0
    k = (x * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0
    r = (x - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10
    p = 1.0 / 6227020800.0
    for c in (1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0,
              1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0):
        p = p * r + c
    return p * math.ldexp(1.0, int(k))


def softmax(logits: Sequence[float], considered: Sequence[bool] | None = None) -> list[float]:
    """Softmax of ``logits`` [A] over the actions with ``considered[a]`` (all if None); 0 elsewhere.

    Spec: m = max over the set; e_a = exp(l_a - m); s = plain left-to-right sum in increasing
    action order; P_a = e_a / s. Logits may be -inf (probability 0); NaN and +inf are errors, and
    so is a set whose logits are all -inf (the spec leaves that undefined: m = -inf gives NaN).
    """
    num_actions = len(logits)
    inside = [True] * num_actions if considered is None else [bool(c) for c in considered]
    for a in range(num_actions):
        if math.isnan(logits[a]) or logits[a] == math.inf:
            raise ValueError(f"logit {a} is {logits[a]} (NaN and +inf are errors)")
    m = -math.inf
    for a in range(num_actions):
        if inside[a]:
            m = max(m, logits[a])
    if m == -math.inf:
        raise ValueError("softmax over an empty set or over logits that are all -inf")
    e = [portable_exp(logits[a] - m) if inside[a] else 0.0 for a in range(num_actions)]
    s = 0.0
    for a in range(num_actions):  # the order of this sum is part of the spec
        s += e[a]
    return [e[a] / s for a in range(num_actions)]


def considered_visits(m: int, num_simulations: int) -> list[int]:
    """Sequential-halving schedule: the visit count a root action must have at each simulation.

    Entry k is the target visit count for the root selection of simulation k (k = number of root
    child visits so far). Verbatim from the spec (which is mctx's
    ``get_sequence_of_considered_visits``).
    """
    if m <= 1:
        return list(range(num_simulations))
    log2max = math.ceil(math.log2(m))
    seq: list[int] = []
    visits = [0] * m
    k = m
    while len(seq) < num_simulations:
        extra = max(1, int(num_simulations / (log2max * k)))
        for _ in range(extra):
            seq.extend(visits[:k])
            for i in range(k):
                visits[i] += 1
        k = max(2, k // 2)
    return seq[:num_simulations]


def considered_visits_table(max_num_considered_actions: int, num_simulations: int) -> list[list[int]]:
    """``table[m] = considered_visits(m, num_simulations)`` for m = 0 .. max_num_considered_actions."""
    return [considered_visits(m, num_simulations) for m in range(max_num_considered_actions + 1)]


def completed_sigma(prior: Sequence[float], child_visits: Sequence[int], child_q: Sequence[float],
                    raw_value: float, considered: Sequence[bool], value_scale: float,
                    maxvisit_init: float, rescale_with_invalid: bool = False) -> list[float]:
    """sigma(completed Q) of one node, Gumbel MuZero's monotone transform of the completed Q values.

    prior [A] (the node's P), child_visits [A], child_q [A] (read only where visits > 0),
    raw_value: the node's network value v_x, considered [A]: the set K (valid actions at the root,
    all actions elsewhere). rescale_with_invalid: lo and hi range over all A actions (mctx's
    masked root). Returns sigma [A]; entries outside K are NaN so that any accidental use of them
    poisons the result instead of passing silently.
    """
    num_actions = len(prior)
    K = [a for a in range(num_actions) if considered[a]]
    sum_n = 0
    for a in K:
        sum_n += child_visits[a]
    if sum_n > 0:
        # Visited actions of prior 0 still count, with the smallest positive weight.
        pp = {a: max(DBL_MIN, prior[a]) for a in K}
        visited = [a for a in K if child_visits[a] > 0]
        sum_p = 0.0
        for a in visited:
            sum_p += pp[a]
        weighted_q = 0.0
        for a in visited:
            weighted_q += pp[a] * child_q[a] / sum_p  # (pp * Q) / sum_p, in this order
        mixed = (raw_value + float(sum_n) * weighted_q) / float(sum_n + 1)
    else:
        mixed = raw_value
    comp = {a: (child_q[a] if child_visits[a] > 0 else mixed) for a in range(num_actions)}
    rescaled_over = range(num_actions) if rescale_with_invalid else K
    lo = min(comp[a] for a in rescaled_over)
    hi = max(comp[a] for a in rescaled_over)
    maxn = max(child_visits[a] for a in K)
    scale = (maxvisit_init + maxn) * value_scale  # ((maxvisit_init + maxn) * value_scale) first
    sigma = [math.nan] * num_actions
    for a in K:
        resc = (comp[a] - lo) / max(hi - lo, 1e-8)
        sigma[a] = scale * resc
    return sigma


def muzero_action_probabilities(visit_counts: Sequence[int], temperature: float,
                                valid: Sequence[bool] | None = None) -> list[float]:
    """Distribution MuZero samples its final action from at temperature T > 0: proportional to
    (N[a] / max N)^(1/T) over the valid actions. [A] -> [A]. (Not bit-compared with the core,
    which samples with its own RNG; useful for statistical checks.)"""
    num_actions = len(visit_counts)
    ok = [True] * num_actions if valid is None else list(valid)
    max_n = max(visit_counts[a] for a in range(num_actions) if ok[a])
    w = [(visit_counts[a] / max_n) ** (1.0 / temperature) if ok[a] else 0.0 for a in range(num_actions)]
    total = sum(w)
    return [x / total for x in w]


# --------------------------------------------------------------------------------------------
# The tree
# --------------------------------------------------------------------------------------------


@dataclass
class Node:
    """One node: its own statistics, the edge that leads into it, and its A outgoing edges."""

    visits: int                 # n_x (its expansion counts as the first visit)
    value_sum: float            # W_x
    raw_value: float            # v_x: the network value at expansion
    reward: float               # r_x of the edge into x (root: 0, unused)
    discount: float             # g_x of the edge into x (root: 1, unused)
    parent: int                 # -1 for the root
    action: int                 # action from the parent (-1 for the root)
    logits: list[float]         # L_x [A]
    prior: list[float]          # P_x [A]
    embedding: Any              # what the step function continues from
    children: list[int] = field(default_factory=list)  # [A] node id or -1


class Tree:
    """One search tree: nodes in id order (root = 0), plus the tree-wide min-max Q bounds."""

    def __init__(self, num_actions: int, valid: Sequence[bool]) -> None:
        self.num_actions = num_actions
        self.valid = [bool(v) for v in valid]  # root's valid actions; interior nodes allow all
        self.nodes: list[Node] = []
        # MinMax starts empty; "hi > lo" is then false, so normalised Q is 0 until two values differ.
        self.lo = math.inf
        self.hi = -math.inf

    # -- construction -------------------------------------------------------------------------

    def add_node(self, parent: int, action: int, reward: float, discount: float, logits: Sequence[float],
                 value: float, embedding: Any, prior: list[float]) -> int:
        """Appends a node (ids in allocation order) and links it under its parent."""
        x = len(self.nodes)
        self.nodes.append(Node(visits=1, value_sum=value, raw_value=value, reward=reward, discount=discount,
                               parent=parent, action=action, logits=list(logits), prior=prior,
                               embedding=embedding, children=[-1] * self.num_actions))
        if parent >= 0:
            self.nodes[parent].children[action] = x
        return x

    # -- edge statistics (always read fresh from the child, as the spec defines them) ----------

    def edge_q(self, c: int) -> float:
        """Q of the edge into node c: r_c + g_c * (W_c / n_c)."""
        node = self.nodes[c]
        return node.reward + node.discount * (node.value_sum / node.visits)

    def child_visits(self, x: int) -> list[int]:
        """N_x [A]: visits of each child, 0 for edges not expanded."""
        return [self.nodes[c].visits if c != -1 else 0 for c in self.nodes[x].children]

    def child_q(self, x: int) -> list[float]:
        """Q_x [A]: Q of each expanded edge, 0.0 for edges not expanded (never read there)."""
        return [self.edge_q(c) if c != -1 else 0.0 for c in self.nodes[x].children]

    def considered(self, x: int) -> list[bool]:
        """The actions node x may choose: the valid ones at the root, all of them elsewhere."""
        return self.valid if x == 0 else [True] * self.num_actions

    def update_min_max(self, q: float) -> None:
        self.lo = min(self.lo, q)
        self.hi = max(self.hi, q)


def _new_tree(root_logits: Sequence[float], root_value: float, root_embedding: Any,
              invalid_actions: Sequence[bool] | None, dirichlet_fraction: float,
              dirichlet_noise: Sequence[float] | None) -> Tree:
    """A tree holding only the root: n = 1, W = v; P = softmax over the valid actions, then the
    optional Dirichlet mix (1 - f) * P + f * eta on valid actions."""
    num_actions = len(root_logits)
    valid = [True] * num_actions if invalid_actions is None else [not bool(i) for i in invalid_actions]
    if len(valid) != num_actions:
        raise ValueError("invalid_actions must have A entries")
    if not any(valid):
        raise ValueError("at least one root action must be valid")
    prior = softmax(root_logits, valid)
    if dirichlet_fraction > 0.0:
        if dirichlet_noise is None:
            raise ValueError("dirichlet_fraction > 0 needs an explicit dirichlet_noise vector")
        f = dirichlet_fraction
        prior = [(1.0 - f) * prior[a] + f * dirichlet_noise[a] if valid[a] else 0.0 for a in range(num_actions)]
    tree = Tree(num_actions, valid)
    tree.add_node(-1, -1, 0.0, 1.0, root_logits, float(root_value), root_embedding, prior)
    return tree


def expand_with(tree: Tree, step: StepFn) -> Callable[[int, int], tuple[int, float]]:
    """The MuZero expansion for :func:`simulate`: a new node with the network outputs for
    (embedding of x, a); returns (its id, its value)."""

    def expand(x: int, a: int) -> tuple[int, float]:
        reward, discount, logits, value, next_embedding = step(tree.nodes[x].embedding, a)
        logits = [float(v) for v in logits]
        c = tree.add_node(x, a, float(reward), float(discount), logits, float(value), next_embedding, softmax(logits))
        return c, float(value)

    return expand


def simulate(tree: Tree, expand: Callable[[int, int], tuple[int, float]], select: Callable[[int, int], int],
             max_depth: int | None, record_min_max: bool = True) -> None:
    """One simulation: descend with ``select(x, depth)``; at an edge (x, a) without a child,
    ``expand(x, a)`` adds it and returns (its id, its value); at ``max_depth`` revisit the leaf;
    back up."""
    x, depth = 0, 0
    while True:
        a = select(x, depth)
        depth += 1
        c = tree.nodes[x].children[a]
        if c == -1:
            c, g = expand(x, a)
            break
        if max_depth is not None and depth >= max_depth:
            # Depth limit: revisit the existing node without re-evaluating it; its mean is the sample.
            leaf = tree.nodes[c]
            g = leaf.value_sum / leaf.visits
            leaf.visits += 1
            leaf.value_sum += g
            break
        x = c
    # Backup from the leaf c up to (and including) the root. Each non-root node on the path has
    # already had its own statistics updated when its edge Q is recorded.
    y = c
    while y != 0:
        if record_min_max:
            tree.update_min_max(tree.edge_q(y))
        node = tree.nodes[y]
        g = node.reward + node.discount * g
        parent = tree.nodes[node.parent]
        parent.value_sum += g
        parent.visits += 1
        y = node.parent


# --------------------------------------------------------------------------------------------
# Selection rules
# --------------------------------------------------------------------------------------------


class QTransform(NamedTuple):
    """The spec's Q transforms: kind "tree_min_max", "parent_and_siblings" (epsilon) or "min_max"
    (min_value, max_value)."""

    kind: str = "tree_min_max"
    epsilon: float = 1e-8
    min_value: float = 0.0
    max_value: float = 1.0


TREE_MIN_MAX = QTransform()


def transformed_q(tree: Tree, x: int, a: int, transform: QTransform) -> float:
    """The value term of edge (x, a): 0.0 when unvisited, else the transform of Q_x[a]."""
    n = tree.child_visits(x)
    if n[a] == 0:
        return 0.0
    q = tree.child_q(x)
    if transform.kind == "tree_min_max":
        return (q[a] - tree.lo) * (1.0 / (tree.hi - tree.lo)) if tree.hi - tree.lo >= DBL_MIN else 0.0
    if transform.kind == "min_max":
        return (q[a] - transform.min_value) / (transform.max_value - transform.min_value)
    node = tree.nodes[x]
    lo = hi = node.value_sum / node.visits
    for b in range(tree.num_actions):
        if n[b] > 0:
            lo, hi = min(lo, q[b]), max(hi, q[b])
    return (q[a] - lo) / max(hi - lo, transform.epsilon)


def muzero_select(tree: Tree, x: int, pb_c_init: float, pb_c_base: float,
                  transform: QTransform = TREE_MIN_MAX) -> int:
    """pUCT at node x with Q transformed by ``transform`` (default: the tree-wide min-max); ties ->
    lowest action."""
    node = tree.nodes[x]
    N = node.visits  # includes the node's own expansion visit (not mctx's sum of child visits)
    c = pb_c_init + math.log((N + pb_c_base + 1.0) / pb_c_base)
    cs = c * math.sqrt(N)
    n = tree.child_visits(x)
    considered = tree.considered(x)
    scores = [-math.inf] * tree.num_actions
    for a in range(tree.num_actions):
        if not considered[a]:
            continue
        u = cs * (node.prior[a] / (n[a] + 1))  # cs * (P / (N + 1))
        scores[a] = transformed_q(tree, x, a, transform) + u
    return _argmax(scores, [a for a in range(tree.num_actions) if considered[a]])


def _node_sigma(tree: Tree, x: int, value_scale: float, maxvisit_init: float,
                rescale_with_invalid: bool = False) -> list[float]:
    node = tree.nodes[x]
    return completed_sigma(node.prior, tree.child_visits(x), tree.child_q(x), node.raw_value, tree.considered(x),
                           value_scale, maxvisit_init, rescale_with_invalid and x == 0)


def gumbel_root_scores(tree: Tree, gumbel: Sequence[float], sigma: Sequence[float], target: int,
                       kept: Sequence[int] | None = None) -> list[float]:
    """Root scores [A]: max(-1e9, g + (L - lmax) + sigma) for valid actions with N - kept == target
    (kept: the root's visit counts when the search began, zero for a fresh root); -inf else."""
    root = tree.nodes[0]
    n = tree.child_visits(0)
    kept = [0] * tree.num_actions if kept is None else kept
    lmax = max(root.logits[a] for a in range(tree.num_actions) if tree.valid[a])
    scores = [-math.inf] * tree.num_actions
    for a in range(tree.num_actions):
        if tree.valid[a] and n[a] - kept[a] == target:
            scores[a] = max(-1e9, gumbel[a] + (root.logits[a] - lmax) + sigma[a])
    return scores


def gumbel_interior_select(tree: Tree, x: int, value_scale: float, maxvisit_init: float) -> int:
    """Deterministic interior selection: argmax of pi_a - N_a / (1 + sum_n), pi = softmax(L + sigma)."""
    node = tree.nodes[x]
    sigma = _node_sigma(tree, x, value_scale, maxvisit_init)
    pi = softmax([node.logits[a] + sigma[a] for a in range(tree.num_actions)])
    n = tree.child_visits(x)
    sum_n = 0
    for a in range(tree.num_actions):
        sum_n += n[a]
    scores = [pi[a] - float(n[a]) / float(1 + sum_n) for a in range(tree.num_actions)]
    return _argmax(scores, range(tree.num_actions))


# --------------------------------------------------------------------------------------------
# Searches
# --------------------------------------------------------------------------------------------


@dataclass
class SearchResult:
    """Per-root summary after a search (A = number of actions).

    action: the chosen action; action_weights [A] (MuZero: visit shares, Gumbel: softmax of
    L + sigma over valid actions; invalid = 0); visit_counts [A] = N_root; qvalues [A] = Q_root for
    visited actions, 0.0 otherwise; value = W_root / n_root; tree: the whole tree, for inspection.
    """

    action: int
    action_weights: list[float]
    visit_counts: list[int]
    qvalues: list[float]
    value: float
    tree: Tree


def _summary(tree: Tree, action: int, weights: list[float]) -> SearchResult:
    root = tree.nodes[0]
    n = tree.child_visits(0)
    q = tree.child_q(0)
    qvalues = [q[a] if n[a] > 0 else 0.0 for a in range(tree.num_actions)]
    return SearchResult(action=action, action_weights=weights, visit_counts=n, qvalues=qvalues,
                        value=root.value_sum / root.visits, tree=tree)


def muzero_search(step: StepFn, root_logits: Sequence[float], root_value: float, root_embedding: Any,
                  num_simulations: int, *, invalid_actions: Sequence[bool] | None = None,
                  max_depth: int | None = None, pb_c_init: float = 1.25, pb_c_base: float = 19652.0,
                  qtransform: QTransform = TREE_MIN_MAX, temperature: float = 0.0,
                  rng: random.Random | None = None, dirichlet_fraction: float = 0.0,
                  dirichlet_noise: Sequence[float] | None = None) -> SearchResult:
    """MuZero search of one root.

    root_logits [A], root_value, root_embedding (passed to ``step`` as is), invalid_actions [A]
    (True = the root may not take it). Temperature 0 picks argmax N_root (ties -> lowest index);
    T > 0 needs ``rng`` and samples from ``muzero_action_probabilities`` (not bit-compared with
    the core). ``dirichlet_noise`` [A] is an explicit eta, used only when dirichlet_fraction > 0.
    """
    if num_simulations < 1:
        # weights = N / sum N would be 0 / 0; the spec does not say what a 0-simulation MuZero returns.
        raise ValueError("MuZero search needs num_simulations >= 1")
    tree = _new_tree(root_logits, root_value, root_embedding, invalid_actions, dirichlet_fraction, dirichlet_noise)

    def select(x: int, depth: int) -> int:
        return muzero_select(tree, x, pb_c_init, pb_c_base, qtransform)

    for _ in range(num_simulations):
        simulate(tree, expand_with(tree, step), select, max_depth)

    n = tree.child_visits(0)
    total = 0
    for a in range(tree.num_actions):
        total += n[a]
    weights = [n[a] / total if tree.valid[a] else 0.0 for a in range(tree.num_actions)]
    valid_actions = [a for a in range(tree.num_actions) if tree.valid[a]]
    if temperature == 0.0:
        action = _argmax([float(v) for v in n], valid_actions)
    else:
        if rng is None:
            raise ValueError("temperature > 0 needs an rng")
        probs = muzero_action_probabilities(n, temperature, tree.valid)
        action = rng.choices(range(tree.num_actions), weights=probs)[0]
    return _summary(tree, action, weights)


def gumbel_muzero_search(step: StepFn, root_logits: Sequence[float], root_value: float, root_embedding: Any,
                         num_simulations: int, *, invalid_actions: Sequence[bool] | None = None,
                         max_depth: int | None = None, max_num_considered_actions: int = 16,
                         gumbel: Sequence[float] | None = None, value_scale: float = 0.1,
                         maxvisit_init: float = 50.0, rescale_with_invalid: bool = False) -> SearchResult:
    """Gumbel MuZero search of one root (no noise unless an explicit ``gumbel`` [A] is given;
    gumbel = None means gumbel_scale = 0, i.e. g = 0 for every action)."""
    if num_simulations < 0:
        raise ValueError("num_simulations must be >= 0")
    tree = _new_tree(root_logits, root_value, root_embedding, invalid_actions, 0.0, None)
    return gumbel_simulations(tree, step, num_simulations, max_depth=max_depth,
                              max_num_considered_actions=max_num_considered_actions, gumbel=gumbel,
                              value_scale=value_scale, maxvisit_init=maxvisit_init,
                              rescale_with_invalid=rescale_with_invalid)


def gumbel_simulations(tree: Tree, step: StepFn, num_simulations: int, *, max_depth: int | None = None,
                       max_num_considered_actions: int = 16, gumbel: Sequence[float] | None = None,
                       value_scale: float = 0.1, maxvisit_init: float = 50.0,
                       rescale_with_invalid: bool = False) -> SearchResult:
    """Gumbel MuZero's simulations and decision on ``tree``: a fresh root, or a kept one (reuse),
    whose root visit counts at the start are subtracted wherever sequential halving counts visits."""
    g = [0.0] * tree.num_actions if gumbel is None else [float(v) for v in gumbel]
    table = considered_visits_table(max_num_considered_actions, num_simulations)
    num_valid = sum(tree.valid)
    m = min(max_num_considered_actions, num_valid)
    valid_actions = [a for a in range(tree.num_actions) if tree.valid[a]]
    kept = tree.child_visits(0)

    def sigma_of(x: int) -> list[float]:
        return _node_sigma(tree, x, value_scale, maxvisit_init, rescale_with_invalid)

    def select(x: int, depth: int) -> int:
        if depth > 0:
            return gumbel_interior_select(tree, x, value_scale, maxvisit_init)
        n = tree.child_visits(0)
        k = 0
        for a in range(tree.num_actions):
            k += n[a] - kept[a]
        target = table[m][k]
        return _argmax(gumbel_root_scores(tree, g, sigma_of(0), target, kept), valid_actions)

    for _ in range(num_simulations):
        simulate(tree, expand_with(tree, step), select, max_depth, record_min_max=False)

    # Final action: the same root score, among the valid actions this search visited most.
    n = tree.child_visits(0)
    sigma = sigma_of(0)
    target = max(n[a] - kept[a] for a in valid_actions)
    action = _argmax(gumbel_root_scores(tree, g, sigma, target, kept), valid_actions)
    root = tree.nodes[0]
    weights = softmax([root.logits[a] + sigma[a] if tree.valid[a] else 0.0 for a in range(tree.num_actions)],
                      tree.valid)
    return _summary(tree, action, weights)


# --------------------------------------------------------------------------------------------
# Tree reuse (SPEC.md, "Reuse")
# --------------------------------------------------------------------------------------------


def reroot(tree: Tree, action: int) -> Tree | None:
    """The tree re-rooted at the root's child under ``action`` (None if never expanded): the kept
    nodes in increasing old id, the new root with reward 0 and discount 1, statistics unchanged.
    Its valid actions and min-max bounds are set when a search continues it (``revalidate`` of
    reference_stochastic.py applies to these trees as well)."""
    start = tree.nodes[0].children[action]
    if start == -1:
        return None
    new = Tree(tree.num_actions, [True] * tree.num_actions)
    copy_subtree(tree, start, new)
    return new


def copy_subtree(tree: Tree, start: int, new: Tree) -> list[int]:
    """Appends to the empty tree ``new`` the subtree of ``tree`` under node ``start``, renumbered in
    increasing old id (parents precede children), ``start`` becoming the root (reward 0, discount
    1); returns the old ids in their new order."""
    new_id: dict[int, int] = {}
    for x in range(start, len(tree.nodes)):
        if x == start or tree.nodes[x].parent in new_id:
            new_id[x] = len(new_id)
    for x in new_id:
        node = copy.copy(tree.nodes[x])
        node.children = [new_id[c] if c != -1 else -1 for c in node.children]
        if x == start:
            node.parent, node.action, node.reward, node.discount = -1, -1, 0.0, 1.0
        else:
            node.parent = new_id[node.parent]
        new.nodes.append(node)
    return list(new_id)


def muzero_simulations(tree: Tree, step: StepFn, num_simulations: int, *, max_depth: int | None = None,
                       pb_c_init: float = 1.25, pb_c_base: float = 19652.0,
                       qtransform: QTransform = TREE_MIN_MAX) -> SearchResult:
    """MuZero's simulations and decision (temperature 0) on ``tree``: a fresh root or a kept one."""

    def select(x: int, depth: int) -> int:
        return muzero_select(tree, x, pb_c_init, pb_c_base, qtransform)

    for _ in range(num_simulations):
        simulate(tree, expand_with(tree, step), select, max_depth)
    n = tree.child_visits(0)
    total = sum(n)
    weights = [n[a] / total if tree.valid[a] and total > 0 else 0.0 for a in range(tree.num_actions)]
    action = _argmax([float(v) for v in n], [a for a in range(tree.num_actions) if tree.valid[a]])
    return _summary(tree, action, weights)


# --------------------------------------------------------------------------------------------
# Batched driver over a torch recurrent function
# --------------------------------------------------------------------------------------------

RecurrentFn = Callable[[Any, torch.Tensor], tuple[RecurrentOutput, Any]]
"""``recurrent_fn(embedding [B, ...], action int64 [B]) -> (RecurrentOutput, next_embedding [B, ...])``."""


def _slice_rows(embedding: Any, b: int) -> Any:
    """Row b of an embedding as a batch of one ([1, ...]); recurses into tuples, lists and dicts."""
    if isinstance(embedding, torch.Tensor):
        return embedding[b:b + 1]
    if isinstance(embedding, (tuple, list)):
        return type(embedding)(_slice_rows(e, b) for e in embedding)
    if isinstance(embedding, dict):
        return {k: _slice_rows(v, b) for k, v in embedding.items()}
    raise TypeError(f"unsupported embedding type {type(embedding)!r}")


def step_from_recurrent_fn(recurrent_fn: RecurrentFn, device: torch.device | str = "cpu") -> StepFn:
    """Adapts a batched recurrent_fn to the per-tree step function: the embedding of a tree is kept
    as a batch of one, and the float32 outputs become Python floats (an exact conversion)."""

    def step(embedding: Any, action: int) -> StepResult:
        with torch.no_grad():
            out, next_embedding = recurrent_fn(embedding, torch.tensor([action], dtype=torch.int64, device=device))
        return (float(out.reward.reshape(-1)[0].item()), float(out.discount.reshape(-1)[0].item()),
                [float(v) for v in out.prior_logits.reshape(-1).tolist()], float(out.value.reshape(-1)[0].item()),
                next_embedding)

    return step


@dataclass
class BatchSearchResult:
    """Per-root reference results stacked over the batch (float64 / int64 tensors on the CPU).

    action int64 [B], action_weights float64 [B, A], visit_counts int64 [B, A], qvalues float64
    [B, A], value float64 [B]; ``roots`` keeps each root's SearchResult (with its tree).
    """

    action: torch.Tensor
    action_weights: torch.Tensor
    visit_counts: torch.Tensor
    qvalues: torch.Tensor
    value: torch.Tensor
    roots: list[SearchResult]

    @classmethod
    def from_roots(cls, roots: list[SearchResult]) -> "BatchSearchResult":
        return cls(
            action=torch.tensor([r.action for r in roots], dtype=torch.int64),
            action_weights=torch.tensor([r.action_weights for r in roots], dtype=torch.float64),
            visit_counts=torch.tensor([r.visit_counts for r in roots], dtype=torch.int64),
            qvalues=torch.tensor([r.qvalues for r in roots], dtype=torch.float64),
            value=torch.tensor([r.value for r in roots], dtype=torch.float64),
            roots=roots,
        )


def run_reference_batch(recurrent_fn: RecurrentFn, prior_logits: torch.Tensor, value: torch.Tensor, embedding: Any,
                        num_simulations: int, *, algorithm: str = "muzero",
                        invalid_actions: torch.Tensor | None = None, gumbel: torch.Tensor | None = None,
                        dirichlet_noise: torch.Tensor | None = None, **search_kwargs: Any) -> BatchSearchResult:
    """Runs the reference search on every root of a batch, one tree at a time.

    prior_logits [B, A] and value [B] (float32, converted exactly to float64), embedding [B, ...]
    (a tensor or a tuple/list/dict of them), invalid_actions bool [B, A] or None. ``algorithm`` is
    "muzero" or "gumbel_muzero"; ``search_kwargs`` go to the search function (max_depth, pb_c_init,
    max_num_considered_actions, ...). Optional explicit noise: gumbel [B, A] (Gumbel MuZero),
    dirichlet_noise [B, A] (MuZero, with dirichlet_fraction in search_kwargs).

    recurrent_fn is called with batch slices of size 1, so it must compute every output row from
    its own input row only (as a network without batch norm does) for the results to equal a batched search.
    """
    if algorithm not in ("muzero", "gumbel_muzero"):
        raise ValueError(f"unknown algorithm {algorithm!r}")
    step = step_from_recurrent_fn(recurrent_fn, device=prior_logits.device)
    logits_rows = prior_logits.detach().cpu().tolist()
    values = value.detach().cpu().reshape(-1).tolist()
    invalid_rows = None if invalid_actions is None else invalid_actions.detach().cpu().bool().tolist()
    roots: list[SearchResult] = []
    for b in range(len(logits_rows)):
        invalid = None if invalid_rows is None else invalid_rows[b]
        root_embedding = _slice_rows(embedding, b)
        if algorithm == "muzero":
            noise = None if dirichlet_noise is None else dirichlet_noise[b].tolist()
            result = muzero_search(step, logits_rows[b], values[b], root_embedding, num_simulations,
                                   invalid_actions=invalid, dirichlet_noise=noise, **search_kwargs)
        else:
            g = None if gumbel is None else gumbel[b].tolist()
            result = gumbel_muzero_search(step, logits_rows[b], values[b], root_embedding, num_simulations,
                                          invalid_actions=invalid, gumbel=g, **search_kwargs)
        roots.append(result)
    return BatchSearchResult.from_roots(roots)
