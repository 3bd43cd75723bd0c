"""Batched Monte Carlo tree search in C++: MuZero, Gumbel MuZero, Stochastic MuZero, Sampled MuZero
and two-player search.

The API follows mctx: a :class:`Root`, a ``recurrent_fn(embedding, action) -> (RecurrentOutput,
next_embedding)``, and :func:`muzero_policy` / :func:`gumbel_muzero_policy` returning a
:class:`PolicyOutput`; :func:`stochastic_muzero_policy` plans through the environment's chance
outcomes with a ``decision_recurrent_fn`` and a ``chance_recurrent_fn``; :func:`sampled_muzero_policy`
searches over actions sampled from a torch Distribution (continuous or large discrete action
spaces). The model runs wherever its tensors live (CPU or CUDA); embeddings stay in a torch pool on
that device and only node ids and the model's small outputs cross into C++. pUCT's Q
normalisation is chosen with the ``qtransform_by_*`` functions.
:class:`Tree` is the low-level interface for writing your own search loop.
"""

from pymbrl.mcts.policies import PolicyOutput, SearchTree, gumbel_muzero_policy, muzero_policy
from pymbrl.mcts.qtransforms import (
    QTransform,
    qtransform_by_min_max,
    qtransform_by_parent_and_siblings,
    qtransform_by_tree_min_max,
)
from pymbrl.mcts.sampled import SampledPolicyOutput, SampledRecurrentOutput, SampledRoot, sampled_muzero_policy
from pymbrl.mcts.stochastic import ChanceOutput, DecisionOutput, StochasticSearchTree, stochastic_muzero_policy
from pymbrl.mcts.tree import EmbeddingPool, RecurrentOutput, Root, SearchSummary, Selection, Tree

__all__ = ["ChanceOutput", "DecisionOutput", "EmbeddingPool", "PolicyOutput", "QTransform", "RecurrentOutput", "Root",
           "SampledPolicyOutput", "SampledRecurrentOutput", "SampledRoot", "SearchSummary", "SearchTree", "Selection",
           "StochasticSearchTree", "Tree", "gumbel_muzero_policy", "muzero_policy", "qtransform_by_min_max",
           "qtransform_by_parent_and_siblings", "qtransform_by_tree_min_max", "sampled_muzero_policy",
           "stochastic_muzero_policy"]
