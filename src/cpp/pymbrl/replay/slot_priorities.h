// Proportional priorities over the slots of a ring (Schaul et al. 2016): leaf s holds p^alpha of
// whatever occupies slot s, 0 for an empty slot. It does not know what the slots hold or when they
// become sampleable: its owner says which slots were filled or emptied and maps slots back to ids
// (GameBuffer over game positions, PrioritizedSampler over transition rows). Sampling is
// stratified over the batch; importance weights (N P(i))^-beta are normalised by the largest
// possible one, which the min tree gives in O(1).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/replay/segment_tree.h"
#include "pymbrl/rng.h"

namespace pymbrl::replay {

class SlotPriorities {
 public:
  SlotPriorities(int64_t slots, double alpha, double eps) : sum_(slots), min_(slots), alpha_(alpha), eps_(eps) {
    if (!(alpha >= 0.0 && std::isfinite(alpha))) throw std::invalid_argument("alpha: expected a finite value >= 0, got " + std::to_string(alpha));
    if (!(eps >= 0.0 && std::isfinite(eps))) throw std::invalid_argument("eps: expected a finite value >= 0, got " + std::to_string(eps));
  }

  double alpha() const { return alpha_; }
  double eps() const { return eps_; }
  double max_priority() const { return max_priority_; }
  double total() const { return sum_.root(); }
  double leaf(int64_t slot) const { return sum_.leaf(slot); }
  const SumTree& sum_tree() const { return sum_; }

  // Priorities a caller may pass to assign(): finite, >= 0, and positive once eps is added, since a
  // leaf of 0 would make its slot impossible to draw.
  void check(const double* priorities, int64_t n, const std::string& name) const {
    for (int64_t i = 0; i < n; ++i) {
      const double p = priorities[i];
      if (!(p >= 0.0 && std::isfinite(p) && p + eps_ > 0.0)) {
        throw std::invalid_argument(name + ": expected finite values >= 0 (> 0 when eps is 0), got " + std::to_string(p) +
                                    " at row " + std::to_string(i));
      }
    }
  }

  // Slots get (priority + eps)^alpha, and the running maximum follows. Callers check() first.
  void assign(const int64_t* slots, const double* priorities, int64_t n) {
    values_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const double p = priorities[i] + eps_;
      max_priority_ = std::max(max_priority_, p);
      values_[static_cast<size_t>(i)] = std::pow(p, alpha_);
    }
    set(slots, values_.data(), n);
  }

  // Slots get the largest priority seen so far: new items are drawn at least once soon.
  void assign_max(const int64_t* slots, int64_t n) {
    values_.assign(static_cast<size_t>(n), std::pow(max_priority_, alpha_));
    set(slots, values_.data(), n);
  }

  void erase(const int64_t* slots, int64_t n) {
    values_.assign(static_cast<size_t>(n), 0.0);
    set(slots, values_.data(), n);
  }

  // Writes leaves (already p^alpha, 0 for a slot that cannot be drawn) into both trees; leaves of 0
  // count as +inf in the min tree. The running maximum is left alone.
  void set(const int64_t* slots, const double* leaves, int64_t n) {
    sum_.set_many(slots, leaves, n, scratch_);
    mins_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) mins_[static_cast<size_t>(i)] = leaves[i] > 0.0 ? leaves[i] : std::numeric_limits<double>::infinity();
    min_.set_many(slots, mins_.data(), n, scratch_);
  }

  void clear() {
    sum_.fill(0.0);
    min_.fill(std::numeric_limits<double>::infinity());
    max_priority_ = 1.0;
  }

  // n slots drawn in proportion to their leaves, one from each of n equal slices of the total mass,
  // with their normalised importance weights. The caller makes sure total() > 0.
  void sample(Rng& rng, int64_t n, double beta, int64_t* slots, float* weights) {
    const double total = sum_.root();
    const double slice = total / static_cast<double>(n);
    const double min_leaf = min_.root();
    values_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const double u = (static_cast<double>(i) + rng.uniform()) * slice;
      values_[static_cast<size_t>(i)] = u < total ? u : std::nextafter(total, 0.0);
    }
    sum_.find_prefix_many(values_.data(), n, slots, scratch_);
    for (int64_t i = 0; i < n; ++i) {
      // float32 is the output precision, and exp2f/log2f cost a fraction of a double pow.
      weights[i] = std::exp2(-static_cast<float>(beta) * std::log2(static_cast<float>(sum_.leaf(slots[i]) / min_leaf)));
    }
  }

  // Every leaf of the tree, padding beyond the slots included (0 there).
  std::vector<double> leaves() const { return std::vector<double>(sum_.leaves(), sum_.leaves() + sum_.n_leaves()); }

  // Snapshots carry leaves and the running maximum; restore() rebuilds both trees from leaves over
  // every slot (0 where empty). Callers validate the values.
  void restore(const std::vector<double>& leaves, double max_priority) {
    sum_.assign(leaves);
    std::vector<double> mins(leaves);
    for (double& v : mins) v = v > 0.0 ? v : std::numeric_limits<double>::infinity();
    min_.assign(mins);
    max_priority_ = max_priority;
  }

 private:
  SumTree sum_;
  MinTree min_;  // leaves of 0 (empty or unsampleable slots) count as +inf
  double alpha_;
  double eps_;
  double max_priority_ = 1.0;
  // Reused between calls so the hot paths do not allocate.
  std::vector<double> values_;
  std::vector<double> mins_;
  std::vector<int64_t> scratch_;
};

}  // namespace pymbrl::replay
