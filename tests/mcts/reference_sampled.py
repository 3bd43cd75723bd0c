"""Pure-Python reference of Sampled MuZero's search (tests/mcts/SPEC.md, "Sampled MuZero"), one
tree at a time, on top of the MuZero reference (reference.py: its Tree, softmax and pUCT).

Given the K draws of every expansion and their log-probabilities (the model's numbers), it merges
identical draws into edges, computes the corrected prior logits in float64 as the spec writes them,
and searches; everything else is the MuZero reference. ``reference_sampled_batch`` draws the samples
of a batch the way the spec says sampled_muzero_policy does (seeds from numpy's SeedSequence, the
global generator forked and seeded per sampling), for a model whose policies are fixed
distributions, and runs the reference on every root.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pymbrl.mcts.reference import TREE_MIN_MAX, QTransform, Tree, muzero_select, simulate, softmax

Draw = tuple[tuple, torch.Tensor]
"""One sampled action: (its elements as Python numbers, for equality; the tensor row itself [*event])."""


@dataclass
class Edges:
    """A node's K edges: the action tensors, the counts (0 = spare) and the prior logits."""

    actions: list[torch.Tensor]
    counts: list[int]
    logits: list[float]


def merge_draws(draws: Sequence[Draw], log_pi: Sequence[float] | None, log_beta: Sequence[float] | None) -> Edges:
    """The spec's edges of one node from its K draws (in draw order) and, with a sampling policy,
    their log-probabilities under pi and beta (None without one)."""
    keys: list[tuple] = []
    actions: list[torch.Tensor] = []
    counts: list[int] = []
    first: list[int] = []
    for i, (key, action) in enumerate(draws):
        if key in keys:
            counts[keys.index(key)] += 1
        else:
            keys.append(key)
            actions.append(action)
            counts.append(1)
            first.append(i)
    logits = []
    for e, i in enumerate(first):
        if log_beta is None:
            logits.append(math.log(counts[e]))
        else:
            logits.append((math.log(counts[e]) + log_pi[i]) - log_beta[i])
    spare = len(draws) - len(keys)
    return Edges(actions + [actions[0]] * spare, counts + [0] * spare, logits + [-math.inf] * spare)


StepFn = Callable[[Any, torch.Tensor], tuple[float, float, float, Any]]
"""``step(embedding, action [*event]) -> (reward, discount, value, next_embedding)`` of one tree."""


@dataclass
class SampledSearchResult:
    """One root after the search: the chosen edge and its action, the root's edges, visit counts,
    Q values (0 where unvisited), visit shares and value; the tree for inspection."""

    action_index: int
    action: torch.Tensor
    edges: Edges
    visit_counts: list[int]
    qvalues: list[float]
    action_weights: list[float]
    value: float
    tree: Tree


def sampled_muzero_search(step: StepFn, root_edges: Edges, root_value: float, root_embedding: Any,
                          num_simulations: int, edges_at: Callable[[int], Edges], *, max_depth: int | None = None,
                          pb_c_init: float = 1.25, pb_c_base: float = 19652.0,
                          qtransform: QTransform = TREE_MIN_MAX) -> SampledSearchResult:
    """Sampled MuZero search of one root at temperature 0; ``edges_at(s)`` gives the edges a node
    expanded in simulation s (1-based) gets. Selecting a spare edge raises AssertionError (only a
    ``qtransform`` with fixed bounds can make one win)."""
    num_edges = len(root_edges.counts)
    valid = [c > 0 for c in root_edges.counts]
    tree = Tree(num_edges, valid)
    tree.add_node(-1, -1, 0.0, 1.0, root_edges.logits, root_value, (root_embedding, root_edges),
                  softmax(root_edges.logits, valid))
    return sampled_simulations(tree, step, num_simulations, edges_at, max_depth=max_depth, pb_c_init=pb_c_init,
                               pb_c_base=pb_c_base, qtransform=qtransform)


def sampled_simulations(tree: Tree, step: StepFn, num_simulations: int, edges_at: Callable[[int], Edges], *,
                        max_depth: int | None = None, pb_c_init: float = 1.25, pb_c_base: float = 19652.0,
                        qtransform: QTransform = TREE_MIN_MAX) -> SampledSearchResult:
    """The simulations and decision of sampled_muzero_search on ``tree``: a fresh root or a kept
    one (re-rooted by reference.reroot, its spare edges made invalid), whose nodes' embeddings are
    (embedding, Edges)."""
    num_edges, valid = tree.num_actions, tree.valid
    root_edges = tree.nodes[0].embedding[1]
    for s in range(1, num_simulations + 1):

        def expand(x: int, a: int, s: int = s) -> tuple[int, float]:
            embedding, edges = tree.nodes[x].embedding
            if edges.counts[a] == 0:
                raise AssertionError(f"simulation {s} selected spare edge {a} of node {x}")
            reward, discount, value, next_embedding = step(embedding, edges.actions[a])
            new = edges_at(s)
            return tree.add_node(x, a, reward, discount, new.logits, value, (next_embedding, new),
                                 softmax(new.logits)), value

        simulate(tree, expand, lambda x, depth: muzero_select(tree, x, pb_c_init, pb_c_base, qtransform), max_depth)
    n = tree.child_visits(0)
    q = tree.child_q(0)
    total = sum(n)
    best = -1
    for a in range(num_edges):  # argmax over valid edges, ties -> lowest
        if valid[a] and (best < 0 or n[a] > n[best]):
            best = a
    root = tree.nodes[0]
    return SampledSearchResult(action_index=best, action=root_edges.actions[best], edges=root_edges, visit_counts=n,
                               qvalues=[q[a] if n[a] > 0 else 0.0 for a in range(num_edges)],
                               action_weights=[n[a] / total if valid[a] else 0.0 for a in range(num_edges)],
                               value=root.value_sum / root.visits, tree=tree)


# --------------------------------------------------------------------------------------------
# Batched driver: the spec's sampling for a model whose interior policies are fixed
# --------------------------------------------------------------------------------------------


def spec_seeds(seed: int, num_simulations: int) -> list[int]:
    """s_0 .. s_S of the spec."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(num_simulations + 1, np.uint64)]


def spec_draws(policy: torch.distributions.Distribution, num_samples: int, seed: int,
               beta: torch.distributions.Distribution | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """raw [K, B, *event], and with a sampling policy log pi(raw) and log beta(raw) [K, B] (else
    None, None), as the spec draws them."""
    sampler = policy if beta is None else beta
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        raw = sampler.sample((num_samples,))
    if beta is None:
        return raw, None, None
    return raw, policy.log_prob(raw), beta.log_prob(raw)


def row_draws(raw: torch.Tensor, b: int) -> list[Draw]:
    """The K draws of row b: (elements as a tuple, the tensor [*event])."""
    return [(tuple(raw[i, b].reshape(-1).tolist()), raw[i, b]) for i in range(raw.shape[0])]


def row_edges(raw: torch.Tensor, lp: torch.Tensor | None, lb: torch.Tensor | None, b: int) -> Edges:
    return merge_draws(row_draws(raw, b), None if lp is None else lp[:, b].double().tolist(),
                       None if lb is None else lb[:, b].double().tolist())


def reference_sampled_batch(model: Any, root_policy: torch.distributions.Distribution, root_value: torch.Tensor,
                            root_embedding: torch.Tensor, num_simulations: int, num_samples: int, seed: int, *,
                            root_sampling_policy: torch.distributions.Distribution | None = None,
                            **search_kwargs: Any) -> list[SampledSearchResult]:
    """The reference search of every root. ``model(embedding [B', D], action [B', *event])`` must
    compute each row from its own row only and return (SampledRecurrentOutput with
    ``model.policy(B')``, next embedding): the interior policy is the fixed ``model.policy``."""
    batch_size = root_value.shape[0]
    seeds = spec_seeds(seed, num_simulations)
    root_raw, root_lp, root_lb = spec_draws(root_policy, num_samples, seeds[0], root_sampling_policy)
    interior = [spec_draws(model.policy(batch_size), num_samples, s) for s in seeds[1:]]

    def step(embedding: torch.Tensor, action: torch.Tensor) -> tuple[float, float, float, Any]:
        with torch.no_grad():
            out, next_embedding = model(embedding, action[None])
        return float(out.reward[0]), float(out.discount[0]), float(out.value[0]), next_embedding

    results = []
    for b in range(batch_size):
        results.append(sampled_muzero_search(
            step, row_edges(root_raw, root_lp, root_lb, b), float(root_value[b]), root_embedding[b:b + 1],
            num_simulations, lambda s, b=b: row_edges(interior[s - 1][0], interior[s - 1][1], None, b),
            **search_kwargs))
    return results
