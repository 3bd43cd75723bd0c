// Sum and min trees over a fixed number of leaves (float64) with 8 children per node, so a node's
// children fill one 64-byte cache line: 7 levels cover 2M leaves instead of 21 for a binary tree,
// and a descent or an update touches one line per level. Prioritized replay keeps p^alpha in both:
// the sum tree samples in proportion to priority, the min tree gives the largest importance
// weight for normalisation. Batched updates and searches walk many paths side by side so their
// cache misses overlap.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "pymbrl/large_array.h"

namespace pymbrl::replay {

template <typename Combine>
class SegmentTree {
 public:
  static constexpr int64_t kArity = 8;

  SegmentTree(int64_t n_leaves, double identity) : identity_(identity) {
    // Levels from the root (1 node) down to the leaves; each level starts on a cache line.
    int64_t width = 1;
    int64_t offset = 0;
    level_offset_.push_back(offset);
    offset += kArity;  // the root occupies a whole line so every level stays aligned
    while (width < n_leaves || width == 1) {
      width *= kArity;
      level_offset_.push_back(offset);
      offset += width;
    }
    n_leaves_ = width;
    nodes_ = LargeArray<double>(static_cast<size_t>(offset));
    std::fill(nodes_.data(), nodes_.data() + offset, identity);
  }

  int64_t n_leaves() const { return n_leaves_; }
  double root() const { return nodes_[0]; }
  double leaf(int64_t i) const { return nodes_[static_cast<size_t>(leaf_offset() + i)]; }
  const double* leaves() const { return nodes_.data() + leaf_offset(); }

  void set(int64_t i, double value) {
    std::vector<int64_t> scratch;
    set_many(&i, &value, 1, scratch);
  }

  // Sets leaves idx[0..n) to values[0..n) and recomputes their ancestors level by level. A parent
  // shared by several paths is recomputed more than once, which is harmless: it is always
  // recomputed from its children.
  void set_many(const int64_t* idx, const double* values, int64_t n, std::vector<int64_t>& scratch) {
    scratch.assign(idx, idx + n);
    const int64_t leaves_at = leaf_offset();
    for (int64_t i = 0; i < n; ++i) nodes_[static_cast<size_t>(leaves_at + idx[i])] = values[i];
    for (size_t level = level_offset_.size() - 1; level >= 1; --level) {
      const int64_t parents_at = level_offset_[level - 1];
      const int64_t children_at = level_offset_[level];
      for (int64_t& j : scratch) {
        j /= kArity;
        __builtin_prefetch(&nodes_[static_cast<size_t>(children_at + j * kArity)]);
      }
      for (int64_t j : scratch) nodes_[static_cast<size_t>(parents_at + j)] = combine_children(children_at + j * kArity);
    }
  }

  void fill(double value) {
    std::fill(nodes_.data() + leaf_offset(), nodes_.data() + leaf_offset() + n_leaves_, value);
    rebuild();
  }

  // Sets every leaf at once (values: at most n_leaves() entries, the rest become the identity),
  // then recomputes the inner nodes in O(n).
  void assign(const std::vector<double>& values) {
    double* leaves = nodes_.data() + leaf_offset();
    std::copy(values.begin(), values.end(), leaves);
    std::fill(leaves + values.size(), leaves + n_leaves_, identity_);
    rebuild();
  }

 protected:
  int64_t leaf_offset() const { return level_offset_.back(); }

  double combine_children(int64_t first) const {
    const double* c = nodes_.data() + first;
    double acc = c[0];
    for (int64_t k = 1; k < kArity; ++k) acc = Combine()(acc, c[k]);
    return acc;
  }

  void rebuild() {
    for (size_t level = level_offset_.size() - 1; level >= 1; --level) {
      const int64_t width = (level == 1 ? 1 : (level_offset_[level] - level_offset_[level - 1]));
      for (int64_t j = 0; j < width; ++j) {
        nodes_[static_cast<size_t>(level_offset_[level - 1] + j)] = combine_children(level_offset_[level] + j * kArity);
      }
    }
  }

  double identity_;
  int64_t n_leaves_ = 1;
  std::vector<int64_t> level_offset_;  // start of each level in nodes_, root first
  LargeArray<double> nodes_;
};

struct Add {
  double operator()(double a, double b) const { return a + b; }
};
struct Min {
  double operator()(double a, double b) const { return std::min(a, b); }
};

class SumTree : public SegmentTree<Add> {
 public:
  explicit SumTree(int64_t n_leaves) : SegmentTree<Add>(n_leaves, 0.0) {}

  // The leaf at which the running sum of leaves first exceeds u (0 <= u < root()). Never returns
  // a zero leaf while root() > 0: where rounding would overshoot, the last positive child is taken.
  int64_t find_prefix(double u) const {
    std::vector<int64_t> scratch;
    int64_t leaf = 0;
    find_prefix_many(&u, 1, &leaf, scratch);
    return leaf;
  }

  // find_prefix for n queries, descending level by level with the next line prefetched so the
  // queries' cache misses overlap. u is consumed.
  void find_prefix_many(double* u, int64_t n, int64_t* leaves, std::vector<int64_t>& scratch) const {
    scratch.assign(static_cast<size_t>(n), 0);
    for (size_t level = 1; level < level_offset_.size(); ++level) {
      const int64_t children_at = level_offset_[level];
      for (int64_t i = 0; i < n; ++i) {
        int64_t& j = scratch[static_cast<size_t>(i)];
        const double* c = nodes_.data() + children_at + j * kArity;
        // Branch-free: k counts the children whose running sum stays <= u, capped at the last
        // positive child (rounding can leave u at or past the node's total).
        double run = 0.0;
        double before = 0.0;
        int64_t k = 0;
        int64_t last = 0;
        for (int64_t m = 0; m < kArity; ++m) {
          run += c[m];
          const bool below = run <= u[i];
          k += below;
          before = below ? run : before;
          last = c[m] > 0.0 ? m : last;
        }
        if (k > last) {
          k = last;
          before = 0.0;
          for (int64_t m = 0; m < last; ++m) before += c[m];
        }
        u[i] -= before;
        j = j * kArity + k;
        if (level + 1 < level_offset_.size()) __builtin_prefetch(&nodes_[static_cast<size_t>(level_offset_[level + 1] + j * kArity)]);
      }
    }
    std::copy(scratch.begin(), scratch.end(), leaves);
  }
};

class MinTree : public SegmentTree<Min> {
 public:
  explicit MinTree(int64_t n_leaves) : SegmentTree<Min>(n_leaves, std::numeric_limits<double>::infinity()) {}
};

}  // namespace pymbrl::replay
