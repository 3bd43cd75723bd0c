// MuZero's action selection (Schrittwieser et al., 2020, Appendix B): pUCT with Q normalised by
// the smallest and largest Q seen anywhere in the tree.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "pymbrl/mcts/tree.h"

namespace pymbrl::mcts {

struct PuctParams {
  double pb_c_init = 1.25;
  double pb_c_base = 19652.0;
};

// Bounds of the Q values seen in one tree. Empty bounds (or a single value) normalise to 0, so
// early in a search the prior alone decides.
struct MinMax {
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();

  void update(double q) {
    lo = std::min(lo, q);
    hi = std::max(hi, q);
  }
  void reset() { *this = MinMax{}; }
};

// The bounds of a kept tree, rebuilt from the current Q of every edge reachable from its root
// (nodes cut off by revalidate_root linger in the arrays until the next reroot; they must not
// count). Parents precede their children in id order, so one pass marks reachability.
inline MinMax tree_min_max(const TreeBatch& tree, int b) {
  MinMax mm;
  const int A = tree.num_actions();
  const int32_t count = tree.num_nodes(b);
  std::vector<uint8_t> reachable(count, 0);
  if (count > 0) reachable[0] = 1;
  for (int32_t x = 0; x < count; ++x) {
    if (!reachable[x]) continue;
    const int32_t* child = tree.children(b, x);
    const int32_t* n = tree.child_visits(b, x);
    const double* q = tree.child_q(b, x);
    for (int a = 0; a < A; ++a) {
      if (child[a] == kNoNode) continue;
      reachable[child[a]] = 1;
      if (n[a] > 0) mm.update(q[a]);
    }
  }
  return mm;
}

// The pUCT choice at node x: argmax over actions of normalised Q (0 while unvisited) plus
// c(N) * sqrt(N) * P(a) / (1 + N(a)), c(N) = pb_c_init + log((N + pb_c_base + 1) / pb_c_base).
// `valid` restricts the choice (the root's valid actions) or is null. Ties go to the lowest action.
inline int puct_select(const TreeBatch& tree, int b, int32_t x, const uint8_t* valid, const MinMax& mm,
                       const PuctParams& params) {
  const double visits = tree.visits(b, x);
  const double c = params.pb_c_init + std::log((visits + params.pb_c_base + 1.0) / params.pb_c_base);
  const double cs = c * std::sqrt(visits);
  const int32_t* n = tree.child_visits(b, x);
  const double* q = tree.child_q(b, x);
  const double* p = tree.priors(b, x);
  const bool spread = mm.hi > mm.lo;
  const double range = mm.hi - mm.lo;
  int best = -1;
  double best_score = -std::numeric_limits<double>::infinity();
  for (int a = 0; a < tree.num_actions(); ++a) {
    if (valid != nullptr && valid[a] == 0) continue;
    const double u = cs * p[a] / (n[a] + 1.0);
    const double value = (n[a] > 0 && spread) ? (q[a] - mm.lo) / range : 0.0;
    const double score = value + u;
    if (best < 0 || score > best_score) {
      best = a;
      best_score = score;
    }
  }
  return best;
}

}  // namespace pymbrl::mcts
