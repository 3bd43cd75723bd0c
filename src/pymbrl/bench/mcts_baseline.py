"""Pure-Python MuZero tree search, one tree at a time: the reference pymbrl's MCTS is benchmarked against.

This is the search a researcher writes without a library, in the style of muzero-general: ``Node``
objects with a dict of children, a ``MinMaxStats`` normaliser, the pUCT rule of the MuZero paper
(Schrittwieser et al. 2020, appendix B) with random tie-breaking, Dirichlet noise on the root
priors, and the model called with a batch of one at every simulation of every tree. Only the tree
is Python; the model is whatever callable it is given (here a small torch network).

It depends on torch and numpy only, so it also runs on its own::

    python -m pymbrl.bench.mcts_baseline
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

import numpy as np
import torch

Recurrent = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
"""``recurrent(h [1, D], action int64 [1]) -> (next_h [1, D], reward [1], value [1], prior_logits [1, A])``."""


class MinMaxStats:
    """Running min and max of the Q values seen in one tree, to map them into [0, 1]."""

    def __init__(self) -> None:
        self.maximum = -math.inf
        self.minimum = math.inf

    def update(self, value: float) -> None:
        self.maximum = max(self.maximum, value)
        self.minimum = min(self.minimum, value)

    def normalize(self, value: float) -> float:
        if self.maximum > self.minimum:
            return (value - self.minimum) / (self.maximum - self.minimum)
        return value


class Node:
    __slots__ = ("children", "hidden_state", "prior", "reward", "value_sum", "visit_count")

    def __init__(self, prior: float) -> None:
        self.prior = prior
        self.hidden_state: torch.Tensor | None = None
        self.reward = 0.0
        self.children: dict[int, Node] = {}
        self.visit_count = 0
        self.value_sum = 0.0

    def expanded(self) -> bool:
        return bool(self.children)

    def value(self) -> float:
        return self.value_sum / self.visit_count if self.visit_count else 0.0

    def expand(self, hidden_state: torch.Tensor, reward: float, prior_logits: torch.Tensor) -> None:
        """Attach the model's output and one child per action, priors from the softmax of the logits."""
        self.hidden_state = hidden_state
        self.reward = reward
        priors = torch.softmax(prior_logits.reshape(-1), dim=0).tolist()
        self.children = {a: Node(p) for a, p in enumerate(priors)}

    def add_exploration_noise(self, alpha: float, fraction: float, rng: np.random.Generator) -> None:
        noise = rng.dirichlet([alpha] * len(self.children))
        for child, n in zip(self.children.values(), noise):
            child.prior = child.prior * (1 - fraction) + n * fraction


class MuZeroSearch:
    """MuZero's MCTS on one root at a time; ``model_seconds`` accumulates the time spent in the model."""

    def __init__(self, recurrent: Recurrent, *, discount: float = 0.997, pb_c_init: float = 1.25,
                 pb_c_base: float = 19652, dirichlet_alpha: float = 0.3, dirichlet_fraction: float = 0.25) -> None:
        self.recurrent = recurrent
        self.discount = discount
        self.pb_c_init, self.pb_c_base = pb_c_init, pb_c_base
        self.alpha, self.fraction = dirichlet_alpha, dirichlet_fraction
        self.model_seconds = 0.0

    def ucb_score(self, parent: Node, child: Node, stats: MinMaxStats) -> float:
        pb_c = math.log((parent.visit_count + self.pb_c_base + 1) / self.pb_c_base) + self.pb_c_init
        pb_c *= math.sqrt(parent.visit_count) / (child.visit_count + 1)
        value = stats.normalize(child.reward + self.discount * child.value()) if child.visit_count else 0.0
        return pb_c * child.prior + value

    def select_child(self, node: Node, stats: MinMaxStats, rng: random.Random) -> tuple[int, Node]:
        scores = {a: self.ucb_score(node, c, stats) for a, c in node.children.items()}
        best = max(scores.values())
        # Ties are common early (unvisited children of equal prior); break them at random.
        action = rng.choice([a for a, s in scores.items() if s == best])
        return action, node.children[action]

    def backpropagate(self, path: list[Node], value: float, stats: MinMaxStats) -> None:
        for node in reversed(path):
            node.value_sum += value
            node.visit_count += 1
            stats.update(node.reward + self.discount * node.value())
            value = node.reward + self.discount * value

    def run(self, embedding: torch.Tensor, prior_logits: torch.Tensor, num_simulations: int, *,
            seed: int = 0, add_noise: bool = True) -> Node:
        """Search from one root (``embedding`` [1, D], ``prior_logits`` [A]); returns the root node."""
        np_rng, rng = np.random.default_rng(seed), random.Random(seed)
        root = Node(0.0)
        root.expand(embedding, 0.0, prior_logits)
        if add_noise:
            root.add_exploration_noise(self.alpha, self.fraction, np_rng)
        stats = MinMaxStats()
        for _ in range(num_simulations):
            node, path = root, [root]
            while node.expanded():
                action, node = self.select_child(node, stats, rng)
                path.append(node)
            parent = path[-2]
            t0 = time.perf_counter()
            h, reward, value, logits = self.recurrent(parent.hidden_state, torch.tensor([action]))
            reward, value = reward.item(), value.item()
            self.model_seconds += time.perf_counter() - t0
            node.expand(h, reward, logits)
            self.backpropagate(path, value, stats)
        return root


def visit_counts(root: Node) -> list[int]:
    """Visits of the root's children, in action order."""
    return [root.children[a].visit_count for a in sorted(root.children)]


if __name__ == "__main__":
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    d, a, sims, roots = 16, 16, 50, 8
    ws, wa, wr, wv, wp = (torch.from_numpy((rng.standard_normal(s) / 4).astype(np.float32))
                          for s in ((d, d), (a, d), (d,), (d,), (d, a)))

    @torch.no_grad()
    def recurrent(h, action):
        h = torch.tanh(h @ ws + wa[action])
        return h, h @ wr, h @ wv, h @ wp

    search = MuZeroSearch(recurrent)
    h0 = torch.from_numpy(rng.standard_normal((roots, d)).astype(np.float32))
    t0 = time.perf_counter()
    for i in range(roots):
        root = search.run(h0[i:i + 1], h0[i] @ wp, sims, seed=i)
    dt = time.perf_counter() - t0
    print(f"{roots * sims / dt:,.0f} tree-simulations/s ({search.model_seconds / dt:.0%} in the model); "
          f"last root visits {visit_counts(root)}")
