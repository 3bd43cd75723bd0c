// Gumbel MuZero's action selection (Danihelka et al., "Policy improvement by planning with
// Gumbel", ICLR 2022): Gumbel-Top-k with sequential halving at the root, the completed-Q policy
// improvement with the mixed value estimate, and the deterministic interior selection.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "pymbrl/mcts/tree.h"

namespace pymbrl::mcts {

struct GumbelParams {
  int max_num_considered_actions = 16;
  double gumbel_scale = 1.0;
  double value_scale = 0.1;    // c_scale of the paper's sigma
  double maxvisit_init = 50.0; // c_visit
  // At a root with invalid actions, rescale the completed Q over every action (the invalid ones
  // count with the mixed value), as mctx does, instead of over the valid ones only.
  bool rescale_with_invalid = false;
};

// The visit count an action must have to be chosen at each root simulation, for a search of
// `num_simulations` that starts with m considered actions and halves them, each phase sharing
// the budget evenly (the paper's sequential halving, with at least one visit per phase).
inline std::vector<int32_t> considered_visits(int m, int num_simulations) {
  std::vector<int32_t> sequence;
  sequence.reserve(num_simulations);
  if (m <= 1) {
    for (int i = 0; i < num_simulations; ++i) sequence.push_back(i);
    return sequence;
  }
  const int log2max = static_cast<int>(std::ceil(std::log2(m)));
  std::vector<int32_t> visits(m, 0);
  int considered = m;
  while (static_cast<int>(sequence.size()) < num_simulations) {
    const int extra = std::max(1, static_cast<int>(num_simulations / static_cast<double>(log2max * considered)));
    for (int r = 0; r < extra; ++r) {
      sequence.insert(sequence.end(), visits.begin(), visits.begin() + considered);
      for (int i = 0; i < considered; ++i) ++visits[i];
    }
    considered = std::max(2, considered / 2);
  }
  sequence.resize(num_simulations);
  return sequence;
}

// considered_visits for every m in [0, max_considered], built once per search.
class HalvingTable {
 public:
  HalvingTable() = default;
  HalvingTable(int max_considered, int num_simulations) : sims_(num_simulations) {
    for (int m = 0; m <= max_considered; ++m) {
      const auto row = considered_visits(m, num_simulations);
      table_.insert(table_.end(), row.begin(), row.end());
    }
  }
  int32_t target(int m, int simulation) const { return table_[static_cast<size_t>(m) * sims_ + simulation]; }
  int num_simulations() const { return sims_; }

 private:
  int sims_ = 0;
  std::vector<int32_t> table_;
};

// sigma(completedQ) at node x: visited actions keep their Q, unvisited ones get the mixed value
// (the network value blended with the prior-weighted Q of the visited actions), the result is
// rescaled to [0, 1] over the considered actions and scaled by (maxvisit_init + max visits) *
// value_scale. Considered: `valid` (at the root) or every action (valid == null).
namespace detail {

// completed_sigma with the mask known at compile time: interior nodes (no mask) get loops without
// per-action tests, which the compiler can vectorise.
template <bool kMasked>
void completed_sigma(const TreeBatch& tree, int b, int32_t x, const uint8_t* valid, const GumbelParams& params,
                     double* sigma) {
  const int A = tree.num_actions();
  const int32_t* n = tree.child_visits(b, x);
  const double* q = tree.child_q(b, x);
  const double* p = tree.priors(b, x);
  auto considered = [valid](int a) { return !kMasked || valid[a] != 0; };
  int64_t sum_n = 0;
  int32_t max_n = 0;
  for (int a = 0; a < A; ++a) {
    const int32_t na = considered(a) ? n[a] : 0;
    sum_n += na;
    max_n = max_n > na ? max_n : na;
  }
  double mixed = tree.raw_value(b, x);
  if (sum_n > 0) {
    // Visited actions of prior 0 still count, with the smallest positive weight.
    double sum_p = 0.0;
    for (int a = 0; a < A; ++a) {
      if (considered(a) && n[a] > 0) sum_p += std::max(DBL_MIN, p[a]);
    }
    double weighted_q = 0.0;
    for (int a = 0; a < A; ++a) {
      if (considered(a) && n[a] > 0) weighted_q += std::max(DBL_MIN, p[a]) * q[a] / sum_p;
    }
    mixed = (mixed + static_cast<double>(sum_n) * weighted_q) / static_cast<double>(sum_n + 1);
  }
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();
  for (int a = 0; a < A; ++a) {
    sigma[a] = n[a] > 0 ? q[a] : mixed;
    if (!considered(a) && !params.rescale_with_invalid) continue;
    lo = std::min(lo, sigma[a]);
    hi = std::max(hi, sigma[a]);
  }
  const double range = std::max(hi - lo, 1e-8);
  const double scale = (params.maxvisit_init + max_n) * params.value_scale;
  for (int a = 0; a < A; ++a) sigma[a] = scale * ((sigma[a] - lo) / range);
  if (kMasked) {
    for (int a = 0; a < A; ++a) {
      if (!considered(a)) sigma[a] = 0.0;
    }
  }
}

}  // namespace detail

inline void completed_sigma(const TreeBatch& tree, int b, int32_t x, const uint8_t* valid, const GumbelParams& params,
                            double* sigma) {
  if (valid == nullptr) {
    detail::completed_sigma<false>(tree, b, x, valid, params, sigma);
  } else {
    detail::completed_sigma<true>(tree, b, x, valid, params, sigma);
  }
}

// The root's choice among its valid actions whose visit count (less `kept`, the counts a kept root
// began the search with) equals `target`: argmax of gumbel + logits + sigma (logits shifted to a
// maximum of 0, the sum floored at -1e9 like the paper's code so that -inf logits stay
// comparable). Ties go to the lowest action.
inline int gumbel_root_choice(const TreeBatch& tree, int b, const double* gumbel, const double* sigma,
                              const int32_t* kept, int32_t target) {
  const int A = tree.num_actions();
  const uint8_t* valid = tree.root_valid(b);
  const int32_t* n = tree.child_visits(b, 0);
  const double* l = tree.logits(b, 0);
  double lmax = -std::numeric_limits<double>::infinity();
  for (int a = 0; a < A; ++a) {
    if (valid[a]) lmax = std::max(lmax, l[a]);
  }
  int best = -1;
  double best_score = -std::numeric_limits<double>::infinity();
  // The halving schedule always leaves an action at the target count; the second pass (any valid
  // action) is only a guard so that a broken invariant cannot index out of bounds.
  for (int pass = 0; pass < 2 && best < 0; ++pass) {
    for (int a = 0; a < A; ++a) {
      if (!valid[a] || (pass == 0 && n[a] - kept[a] != target)) continue;
      const double score = std::max(-1e9, gumbel[a] + (l[a] - lmax) + sigma[a]);
      if (best < 0 || score > best_score) {
        best = a;
        best_score = score;
      }
    }
  }
  return best;
}

// Interior nodes: the action whose visit share lags most behind the improved policy
// softmax(logits + sigma) (the paper's deterministic selection, Eq. 14).
inline int gumbel_interior_select(const TreeBatch& tree, int b, int32_t x, const GumbelParams& params, double* work) {
  const int A = tree.num_actions();
  double* sigma = work;
  double* pi = work + A;
  completed_sigma(tree, b, x, nullptr, params, sigma);
  const double* l = tree.logits(b, x);
  softmax(A, [l, sigma](int a) { return l[a] + sigma[a]; }, [](int) { return true; }, pi);
  const int32_t* n = tree.child_visits(b, x);
  int64_t sum_n = 0;
  for (int a = 0; a < A; ++a) sum_n += n[a];
  const double denominator = static_cast<double>(1 + sum_n);
  int best = 0;
  double best_score = -std::numeric_limits<double>::infinity();
  for (int a = 0; a < A; ++a) {
    const double score = pi[a] - n[a] / denominator;
    if (score > best_score) {
      best = a;
      best_score = score;
    }
  }
  return best;
}

}  // namespace pymbrl::mcts
