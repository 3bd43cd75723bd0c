"""Batched Monte Carlo tree search in C++: MuZero, Gumbel MuZero, Stochastic MuZero, two-player search.

The API follows mctx: a :class:`Root`, a ``recurrent_fn(embedding, action) -> (RecurrentOutput,
next_embedding)``, and :func:`muzero_policy` / :func:`gumbel_muzero_policy` returning a
:class:`PolicyOutput`; :func:`stochastic_muzero_policy` plans through the environment's chance
outcomes with a ``decision_recurrent_fn`` and a ``chance_recurrent_fn``. The model runs wherever its
tensors live (CPU or CUDA); embeddings stay in a torch pool on that device and only node ids and the
model's small outputs cross into C++.
:class:`Tree` is the low-level interface for writing your own search loop.
"""

from pymbrl.mcts.policies import PolicyOutput, SearchTree, gumbel_muzero_policy, muzero_policy
from pymbrl.mcts.stochastic import ChanceOutput, DecisionOutput, StochasticSearchTree, stochastic_muzero_policy
from pymbrl.mcts.tree import EmbeddingPool, RecurrentOutput, Root, SearchSummary, Selection, Tree

__all__ = ["ChanceOutput", "DecisionOutput", "EmbeddingPool", "PolicyOutput", "RecurrentOutput", "Root",
           "SearchSummary", "SearchTree", "Selection", "StochasticSearchTree", "Tree", "gumbel_muzero_policy",
           "muzero_policy", "stochastic_muzero_policy"]
