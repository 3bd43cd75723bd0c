// Stochastic MuZero's choice at chance nodes (Antonoglou et al., "Planning in Stochastic
// Environments with a Learned Model", ICLR 2022): the outcome maximising P(c) / (N(c) + 1).
//
// The paper samples outcomes from the prior and, to cut the variance, uses this deterministic
// quasi-random rule; mctx's stochastic_muzero_policy uses it too. It visits outcomes in proportion
// to their probabilities (the most under-visited relative to its prior goes next), so a chance
// node's value converges to the expectation over outcomes. The issue's wording, "prior minus visit
// share" (Gumbel MuZero's interior rule), tracks the prior as well but visits in another order;
// this rule is the one users of mctx get (tests/mcts/SPEC.md, "Stochastic MuZero").
#pragma once

#include <cstdint>

#include "pymbrl/mcts/tree.h"

namespace pymbrl::mcts {

// The outcome among the first `num_outcomes` edges of chance node x with the largest
// P(c) / (N(c) + 1), ties to the lowest. That ratio is the tree's explore() entry, kept current by
// every backup, so the choice is one pass over it.
inline int chance_select(const TreeBatch& tree, int b, int32_t x, int num_outcomes) {
  const double* e = tree.explore(b, x);
  int best = 0;
  for (int c = 1; c < num_outcomes; ++c) {
    if (e[c] > e[best]) best = c;
  }
  return best;
}

}  // namespace pymbrl::mcts
