// Proportional prioritized sampling (Schaul et al. 2016): P(i) = p_i^alpha / sum_k p_k^alpha,
// stratified over the batch, with importance weights (N P(i))^-beta normalised by their largest
// possible value, which the min tree gives in O(1).
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/replay/segment_tree.h"
#include "pymbrl/replay/transition_store.h"
#include "pymbrl/rng.h"

namespace pymbrl::replay {

class PrioritizedSampler {
 public:
  PrioritizedSampler(int64_t capacity, double alpha, double eps)
      : capacity_(capacity), sum_(capacity), min_(capacity), alpha_(alpha), eps_(eps) {
    if (!(alpha >= 0.0 && std::isfinite(alpha))) throw std::invalid_argument("alpha: expected a finite value >= 0, got " + std::to_string(alpha));
    if (!(eps >= 0.0 && std::isfinite(eps))) throw std::invalid_argument("eps: expected a finite value >= 0, got " + std::to_string(eps));
  }

  double alpha() const { return alpha_; }
  double eps() const { return eps_; }
  double max_priority() const { return max_priority_; }
  double total() const { return sum_.root(); }
  const SumTree& sum_tree() const { return sum_; }

  // After store.append() wrote ids [first, store.end_id()): new rows get the largest priority seen
  // so far once sampleable, and rows that just became sampleable (their stream moved on) too.
  void on_append(const TransitionStore& store, int64_t first) {
    const int64_t envs = store.num_envs();
    const double top = std::pow(max_priority_, alpha_);
    rows_.clear();
    values_.clear();
    for (int64_t id = std::max(first - envs, store.oldest_id()); id < store.end_id(); ++id) {
      // Rows that were sampleable before this append already carry their priority.
      if (id < first && store.done_at(store.row_of(id))) continue;
      rows_.push_back(store.row_of(id));
      values_.push_back(store.sampleable(id) ? top : 0.0);
    }
    set_leaves();
  }

  void clear() {
    sum_.fill(0.0);
    min_.fill(std::numeric_limits<double>::infinity());
    max_priority_ = 1.0;
  }

  // n ids drawn in proportion to priority, one from each of n equal slices of the total mass.
  void sample(const TransitionStore& store, Rng& rng, int64_t n, double beta, int64_t* ids, float* weights) {
    const double total = sum_.root();
    const double slice = total / static_cast<double>(n);
    const double min_leaf = min_.root();
    values_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      double u = (static_cast<double>(i) + rng.uniform()) * slice;
      values_[static_cast<size_t>(i)] = u < total ? u : std::nextafter(total, 0.0);
    }
    sum_.find_prefix_many(values_.data(), n, ids, scratch_);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t r = ids[i];
      ids[i] = store.id_at_row(r);
      // float32 is the output precision, and exp2f/log2f cost a fraction of a double pow.
      weights[i] = std::exp2(-static_cast<float>(beta) * std::log2(static_cast<float>(sum_.leaf(r) / min_leaf)));
    }
  }

  // Validates every pair first; then sets p = priority + eps for ids still stored and sampleable.
  // Ids whose slot has been overwritten since they were sampled are skipped.
  void update(const TransitionStore& store, const int64_t* ids, const double* priorities, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      if (ids[i] < 0 || ids[i] >= store.end_id()) {
        throw std::invalid_argument("indices: expected ids of transitions added to this buffer (in [0, " +
                                    std::to_string(store.end_id()) + ")), got " + std::to_string(ids[i]));
      }
      if (!(priorities[i] >= 0.0 && std::isfinite(priorities[i]))) {
        throw std::invalid_argument("priorities: expected finite values >= 0, got " + std::to_string(priorities[i]));
      }
    }
    rows_.clear();
    values_.clear();
    for (int64_t i = 0; i < n; ++i) {
      if (!store.sampleable(ids[i])) continue;
      const double p = priorities[i] + eps_;
      max_priority_ = std::max(max_priority_, p);
      rows_.push_back(store.row_of(ids[i]));
      values_.push_back(std::pow(p, alpha_));
    }
    set_leaves();
  }

  // p^alpha of a transition; 0 where it cannot be sampled.
  double priority(const TransitionStore& store, int64_t id) const {
    return store.sampleable(id) ? sum_.leaf(store.row_of(id)) : 0.0;
  }

  // Snapshot: leaves (p^alpha per row) and the running maximum.
  std::vector<double> leaves() const { return std::vector<double>(sum_.leaves(), sum_.leaves() + sum_.n_leaves()); }

  // What a snapshot must satisfy whatever the store holds; callers run it before restoring the store
  // so that a bad snapshot changes nothing.
  void check(const std::vector<double>& leaves, double max_priority) const {
    if (static_cast<int64_t>(leaves.size()) != sum_.n_leaves()) throw std::invalid_argument("priorities: expected one per tree leaf");
    for (size_t i = 0; i < leaves.size(); ++i) {
      if (!(leaves[i] >= 0.0 && std::isfinite(leaves[i]))) throw std::invalid_argument("priorities: expected finite values >= 0");
      if (leaves[i] > 0.0 && static_cast<int64_t>(i) >= capacity_) {
        throw std::invalid_argument("priorities: expected 0 beyond the capacity (tree padding)");
      }
    }
    if (!(max_priority > 0.0 && std::isfinite(max_priority))) throw std::invalid_argument("max_priority: expected a finite value > 0");
  }

  void restore(const TransitionStore& store, const std::vector<double>& leaves, double max_priority) {
    check(leaves, max_priority);
    // A positive leaf must belong to a transition that can be sampled (its next obs is known).
    for (int64_t r = 0; r < capacity_; ++r) {
      if (leaves[static_cast<size_t>(r)] > 0.0 && !store.sampleable(store.id_at_row(r))) {
        throw std::invalid_argument("priorities: expected 0 for transitions that cannot be sampled");
      }
    }
    sum_.assign(leaves);
    std::vector<double> mins(leaves);
    for (double& v : mins) v = v > 0.0 ? v : std::numeric_limits<double>::infinity();
    min_.assign(mins);
    max_priority_ = max_priority;
  }

 private:
  // Writes values_ into rows_ of both trees (zero leaves count as +inf in the min tree).
  void set_leaves() {
    const int64_t n = static_cast<int64_t>(rows_.size());
    sum_.set_many(rows_.data(), values_.data(), n, scratch_);
    for (double& v : values_) v = v > 0.0 ? v : std::numeric_limits<double>::infinity();
    min_.set_many(rows_.data(), values_.data(), n, scratch_);
  }

  int64_t capacity_;
  SumTree sum_;
  MinTree min_;  // zero leaves (not sampleable) count as +inf
  double alpha_;
  double eps_;
  double max_priority_ = 1.0;
  // Reused between calls so the hot paths do not allocate.
  std::vector<int64_t> rows_;
  std::vector<double> values_;
  std::vector<int64_t> scratch_;
};

}  // namespace pymbrl::replay
