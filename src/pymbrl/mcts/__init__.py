"""Batched Monte Carlo tree search in C++: MuZero, Gumbel MuZero and two-player search.

The API follows mctx: a :class:`Root`, a ``recurrent_fn(embedding, action) -> (RecurrentOutput,
next_embedding)``, and :func:`muzero_policy` / :func:`gumbel_muzero_policy` returning a
:class:`PolicyOutput`. The model runs wherever its tensors live (CPU or CUDA); embeddings stay in a
torch pool on that device and only node ids and the model's small outputs cross into C++.
:class:`Tree` is the low-level interface for writing your own search loop.
"""

from pymbrl.mcts.policies import PolicyOutput, SearchTree, gumbel_muzero_policy, muzero_policy
from pymbrl.mcts.qtransforms import (
    QTransform,
    qtransform_by_min_max,
    qtransform_by_parent_and_siblings,
    qtransform_by_tree_min_max,
)
from pymbrl.mcts.tree import EmbeddingPool, RecurrentOutput, Root, SearchSummary, Selection, Tree

__all__ = ["EmbeddingPool", "PolicyOutput", "QTransform", "RecurrentOutput", "Root", "SearchSummary", "SearchTree",
           "Selection", "Tree", "gumbel_muzero_policy", "muzero_policy", "qtransform_by_min_max",
           "qtransform_by_parent_and_siblings", "qtransform_by_tree_min_max"]
