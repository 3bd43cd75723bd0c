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

  // Leaves (p^alpha) are 0 (the slot cannot be drawn) or in [kMinLeaf, kMaxLeaf]: normal doubles,
  // so that ratios of leaves stay finite, and small enough that a sum over 2^31 slots does too.
  static constexpr double kMinLeaf = std::numeric_limits<double>::min();
  static constexpr double kMaxLeaf = 1e250;

  // Priorities a caller may pass to assign(): finite, >= 0, positive once eps is added unless
  // `allow_zero` (then p + eps = 0 makes the slot impossible to draw, on purpose), and with
  // (p + eps)^alpha <= kMaxLeaf. Leaves below kMinLeaf are raised to it by assign().
  void check(const double* priorities, int64_t n, const std::string& name, bool allow_zero = false) const {
    for (int64_t i = 0; i < n; ++i) {
      const double p = priorities[i];
      if (!(p >= 0.0 && std::isfinite(p) && (allow_zero || p + eps_ > 0.0))) {
        throw std::invalid_argument(name + ": expected finite values >= 0" + (allow_zero ? "" : " (> 0 when eps is 0)") +
                                    ", got " + std::to_string(p) + " at row " + std::to_string(i));
      }
      if (!(std::pow(p + eps_, alpha_) <= kMaxLeaf)) {
        throw std::invalid_argument(name + ": expected (priority + eps)^alpha <= 1e250, got priority " + std::to_string(p) +
                                    " at row " + std::to_string(i));
      }
    }
  }

  // What restore() takes: one leaf per tree leaf, each 0 or within [kMinLeaf, kMaxLeaf], 0 beyond
  // `slots`; and a running maximum >= 1 (where it starts) whose leaf is within range too.
  void check_restore(const std::vector<double>& leaves, int64_t slots, double max_priority) const {
    if (static_cast<int64_t>(leaves.size()) != sum_.n_leaves()) {
      throw std::invalid_argument("priorities: expected one per tree leaf (" + std::to_string(sum_.n_leaves()) + "), got " +
                                  std::to_string(leaves.size()));
    }
    for (size_t i = 0; i < leaves.size(); ++i) {
      const double v = leaves[i];
      if (!(v == 0.0 || (v >= kMinLeaf && v <= kMaxLeaf))) {
        throw std::invalid_argument("priorities: expected 0 or values in [2.2e-308, 1e250], got " + std::to_string(v));
      }
      if (v > 0.0 && static_cast<int64_t>(i) >= slots) throw std::invalid_argument("priorities: expected 0 beyond the capacity (tree padding)");
    }
    const double top = std::pow(max_priority, alpha_);
    if (!(max_priority >= 1.0 && std::isfinite(max_priority) && top <= kMaxLeaf)) {
      throw std::invalid_argument("max_priority: expected a finite value >= 1 with max_priority^alpha <= 1e250, got " +
                                  std::to_string(max_priority));
    }
  }

  // Slots get (priority + eps)^alpha, and the running maximum follows. Callers check() first.
  void assign(const int64_t* slots, const double* priorities, int64_t n) {
    values_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const double p = priorities[i] + eps_;
      max_priority_ = std::max(max_priority_, p);
      // A positive priority keeps a positive leaf even where p^alpha underflows.
      values_[static_cast<size_t>(i)] = p > 0.0 ? std::max(std::pow(p, alpha_), kMinLeaf) : std::pow(p, alpha_);
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

  // The normalised importance weight (N P(i))^-beta / max_k (N P(k))^-beta = (min_leaf / leaf)^beta
  // of a drawn leaf (min_leaf <= leaf, both positive): always finite and in (0, 1], exactly 1 when
  // beta is 0 or the leaf is the minimum. The ratio, not leaf / min_leaf, is formed, so it cannot
  // overflow; float32 is the output precision and exp2f/log2f cost a fraction of a double pow, so
  // float is used unless the ratio is below float's range (then log2 is taken of each leaf in double).
  static float weight(double min_leaf, double leaf, double beta) {
    constexpr float kSmallest = std::numeric_limits<float>::min();
    const double ratio = min_leaf / leaf;
    float w;
    if (ratio >= static_cast<double>(kSmallest)) {
      const double e = beta * static_cast<double>(std::log2(static_cast<float>(ratio)));  // <= 0, -inf at worst
      w = e > -127.0 ? std::exp2(static_cast<float>(e)) : 0.0f;
    } else {
      const double e = beta * (std::log2(min_leaf) - std::log2(leaf));
      w = beta == 0.0 ? 1.0f : static_cast<float>(std::exp2(e));
    }
    return w >= kSmallest ? std::min(w, 1.0f) : kSmallest;  // also maps a NaN to the smallest weight
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
    for (int64_t i = 0; i < n; ++i) weights[i] = weight(min_leaf, sum_.leaf(slots[i]), beta);
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
