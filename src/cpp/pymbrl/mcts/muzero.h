// MuZero's action selection (Schrittwieser et al., 2020, Appendix B): pUCT with Q normalised by
// the smallest and largest Q seen anywhere in the tree (the paper's rule), or by one of mctx's
// transforms: the node's own value and its children's Q, or fixed bounds.
#pragma once

#include <algorithm>
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

// How pUCT maps a visited edge's Q into its value term (an unvisited edge's term is 0 for all).
//  kTreeMinMax: (Q - lo) / (hi - lo) with lo, hi the smallest and largest Q recorded in the whole
//    tree so far (MuZero's MinMaxStats); 0 while they are (nearly) equal.
//  kParentAndSiblings: (Q - lo) / max(hi - lo, epsilon) with lo, hi over the node's value and the
//    Q of its visited children (mctx's qtransform_by_parent_and_siblings, its default).
//  kMinMax: (Q - min_value) / (max_value - min_value), fixed bounds known in advance (mctx's
//    qtransform_by_min_max).
enum class QTransformKind { kTreeMinMax, kParentAndSiblings, kMinMax };

struct QTransform {
  QTransformKind kind = QTransformKind::kTreeMinMax;
  double epsilon = 1e-8;
  double min_value = 0.0;
  double max_value = 1.0;
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

// The exploration weight c(N) * sqrt(N), c(N) = pb_c_init + log((N + pb_c_base + 1) / pb_c_base),
// tabulated per search for the visit counts a search meets (a log and a sqrt per node visited
// were a fifth of the selection time).
class ExplorationTable {
 public:
  ExplorationTable() = default;
  ExplorationTable(const PuctParams& params, int32_t size) : params_(params), table_(std::max(size, 1)) {
    for (int32_t n = 0; n < static_cast<int32_t>(table_.size()); ++n) table_[n] = compute(n);
  }
  double operator()(int32_t visits) const {
    return visits < static_cast<int32_t>(table_.size()) ? table_[visits] : compute(visits);
  }

 private:
  double compute(int32_t visits) const {
    const double n = visits;
    const double c = params_.pb_c_init + std::log((n + params_.pb_c_base + 1.0) / params_.pb_c_base);
    return c * std::sqrt(n);
  }
  PuctParams params_;
  std::vector<double> table_;
};

// The pUCT choice at node x: argmax over actions of the transformed Q (0 while unvisited) plus
// c(N) sqrt(N) P(a) / (1 + N(a)), computed as cs * explore(a) with cs = c(N) sqrt(N). `mm` holds
// the tree's bounds (read by kTreeMinMax only). `valid` restricts the choice (the root's valid
// actions) or is null. Ties go to the lowest action. `scores` is scratch for A doubles: the scores
// are computed branch-free first so that the compiler vectorises them.
inline int puct_select(const TreeBatch& tree, int b, int32_t x, const uint8_t* valid, const MinMax& mm,
                       const QTransform& transform, const ExplorationTable& exploration, double* scores) {
  const int A = tree.num_actions();
  const double cs = exploration(tree.visits(b, x));
  const int32_t* n = tree.child_visits(b, x);
  const double* q = tree.child_q(b, x);
  const double* e = tree.explore(b, x);
  // Multiplying by 0 or 1 instead of choosing keeps the loops branch-free (vectorised); an
  // unvisited edge's stored Q is 0, so its term is a zero (of either sign), as the rule wants.
  if (transform.kind == QTransformKind::kTreeMinMax) {
    // A range below the smallest normal double would make 1 / range inf (and 0 * inf NaN): Q
    // values that close together (all within ~1e-308 of each other) normalise to 0 like equal ones.
    if (mm.hi - mm.lo >= std::numeric_limits<double>::min()) {
      const double lo = mm.lo, inverse_range = 1.0 / (mm.hi - mm.lo);
      for (int a = 0; a < A; ++a) {
        const double visited = static_cast<double>(n[a] > 0);
        scores[a] = (q[a] - lo) * inverse_range * visited + cs * e[a];
      }
    } else {
      for (int a = 0; a < A; ++a) scores[a] = cs * e[a];
    }
  } else {
    // Divided rather than multiplied by an inverse, as mctx writes these transforms.
    double lo = transform.min_value, range = transform.max_value - transform.min_value;
    if (transform.kind == QTransformKind::kParentAndSiblings) {
      const double v = tree.value(b, x);
      double hi = v;
      lo = v;
      for (int a = 0; a < A; ++a) {
        if (n[a] == 0) continue;
        lo = std::min(lo, q[a]);
        hi = std::max(hi, q[a]);
      }
      range = std::max(hi - lo, transform.epsilon);
    }
    for (int a = 0; a < A; ++a) {
      const double visited = static_cast<double>(n[a] > 0);
      scores[a] = (q[a] - lo) / range * visited + cs * e[a];
    }
  }
  int best = -1;
  double best_score = 0.0;
  if (valid == nullptr) {
    best = 0;
    best_score = scores[0];
    for (int a = 1; a < A; ++a) {
      if (scores[a] > best_score) {
        best = a;
        best_score = scores[a];
      }
    }
    return best;
  }
  for (int a = 0; a < A; ++a) {
    if (valid[a] == 0) continue;
    if (best < 0 || scores[a] > best_score) {
      best = a;
      best_score = scores[a];
    }
  }
  return best;
}

}  // namespace pymbrl::mcts
