// Proportional prioritized sampling of transitions (Schaul et al. 2016): P(i) = p_i^alpha /
// sum_k p_k^alpha over the rows of a TransitionStore. The trees, the running maximum and the
// stratified sampling with importance weights are SlotPriorities over rows; this class decides
// which rows carry priority (only transitions that can be sampled) and maps rows to ids.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/replay/segment_tree.h"
#include "pymbrl/replay/slot_priorities.h"
#include "pymbrl/replay/transition_store.h"
#include "pymbrl/rng.h"

namespace pymbrl::replay {

class PrioritizedSampler {
 public:
  PrioritizedSampler(int64_t capacity, double alpha, double eps) : capacity_(capacity), priorities_(capacity, alpha, eps) {}

  double alpha() const { return priorities_.alpha(); }
  double eps() const { return priorities_.eps(); }
  double max_priority() const { return priorities_.max_priority(); }
  double total() const { return priorities_.total(); }
  const SumTree& sum_tree() const { return priorities_.sum_tree(); }

  // After store.append() wrote ids [first, store.end_id()): new rows get the largest priority seen
  // so far once sampleable, and rows that just became sampleable (their stream moved on) too.
  void on_append(const TransitionStore& store, int64_t first) {
    const int64_t envs = store.num_envs();
    const double top = std::pow(priorities_.max_priority(), priorities_.alpha());
    rows_.clear();
    values_.clear();
    for (int64_t id = std::max(first - envs, store.oldest_id()); id < store.end_id(); ++id) {
      // Rows that were sampleable before this append already carry their priority.
      if (id < first && store.done_at(store.row_of(id))) continue;
      rows_.push_back(store.row_of(id));
      values_.push_back(store.sampleable(id) ? top : 0.0);
    }
    priorities_.set(rows_.data(), values_.data(), static_cast<int64_t>(rows_.size()));
  }

  void clear() { priorities_.clear(); }

  // n ids drawn in proportion to priority, one from each of n equal slices of the total mass.
  void sample(const TransitionStore& store, Rng& rng, int64_t n, double beta, int64_t* ids, float* weights) {
    priorities_.sample(rng, n, beta, ids, weights);
    for (int64_t i = 0; i < n; ++i) ids[i] = store.id_at_row(ids[i]);
  }

  // Validates every pair first (ids ever added; priorities as SlotPriorities::check, where 0 with
  // eps = 0 is allowed and means never drawn); then sets p = priority + eps for ids still stored and
  // sampleable. Ids whose slot has been overwritten
  // since they were sampled are skipped.
  void update(const TransitionStore& store, const int64_t* ids, const double* priorities, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      if (ids[i] < 0 || ids[i] >= store.end_id()) {
        throw std::invalid_argument("indices: expected ids of transitions added to this buffer (in [0, " +
                                    std::to_string(store.end_id()) + ")), got " + std::to_string(ids[i]));
      }
    }
    priorities_.check(priorities, n, "priorities", /*allow_zero=*/true);
    rows_.clear();
    values_.clear();
    for (int64_t i = 0; i < n; ++i) {
      if (!store.sampleable(ids[i])) continue;
      rows_.push_back(store.row_of(ids[i]));
      values_.push_back(priorities[i]);
    }
    priorities_.assign(rows_.data(), values_.data(), static_cast<int64_t>(rows_.size()));
  }

  // p^alpha of a transition; 0 where it cannot be sampled.
  double priority(const TransitionStore& store, int64_t id) const {
    return store.sampleable(id) ? priorities_.leaf(store.row_of(id)) : 0.0;
  }

  // Snapshot: leaves (p^alpha per row, tree padding included) and the running maximum.
  std::vector<double> leaves() const { return priorities_.leaves(); }

  // What a snapshot must satisfy whatever the store holds: callers run it before restoring the store
  // so that a bad snapshot changes nothing.
  void check(const std::vector<double>& leaves, double max_priority) const {
    priorities_.check_restore(leaves, capacity_, max_priority);
  }

  // check(), and positive leaves only where the restored store will hold a sampleable transition
  // (`sampleable_row(r)`, TransitionStore::snapshot_row_sampleable); a sampleable one may have 0
  // (priority 0 with eps 0).
  template <typename SampleableRow>
  void check(const std::vector<double>& leaves, double max_priority, const SampleableRow& sampleable_row) const {
    check(leaves, max_priority);
    for (int64_t r = 0; r < capacity_; ++r) {
      if (leaves[static_cast<size_t>(r)] > 0.0 && !sampleable_row(r)) {
        throw std::invalid_argument("priorities: expected 0 for transitions that cannot be sampled (row " + std::to_string(r) + ")");
      }
    }
  }

  // Restores a snapshot of this sampler taken with `store` as it is now.
  void restore(const TransitionStore& store, const std::vector<double>& leaves, double max_priority) {
    check(leaves, max_priority, [&](int64_t r) { return store.sampleable(store.id_at_row(r)); });
    priorities_.restore(leaves, max_priority);
  }

 private:
  int64_t capacity_;
  SlotPriorities priorities_;  // one slot per store row
  // Reused between calls so the hot paths do not allocate.
  std::vector<int64_t> rows_;
  std::vector<double> values_;
};

}  // namespace pymbrl::replay
