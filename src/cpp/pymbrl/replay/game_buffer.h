// MuZero's replay buffer of whole games: a GameStore, the buffer's own generator and, when
// prioritized, proportional priorities over positions. Positions are drawn uniformly or in
// proportion to priority^alpha, and their unroll targets built in one pass (game_targets.h).
// Callers serialise access (the Python binding holds a mutex per buffer).
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/replay/game_store.h"
#include "pymbrl/replay/game_targets.h"
#include "pymbrl/replay/slot_priorities.h"
#include "pymbrl/rng.h"

namespace pymbrl::replay {

struct GameBufferState {
  GameStoreState store;
  std::vector<double> priorities;  // priority^alpha per stored position, oldest first (prioritized only)
  double max_priority = 1.0;
  Rng::State rng{};
};

class GameBuffer {
 public:
  GameBuffer(const GameStoreConfig& store, const TargetConfig& targets, bool prioritized, double alpha, double eps,
             uint64_t seed)
      : store_(store), targets_(targets), rng_(seed) {
    targets.check();
    if (prioritized) priorities_.emplace(store.capacity, alpha, eps);
  }

  const GameStore& store() const { return store_; }
  const TargetConfig& targets() const { return targets_; }
  bool prioritized() const { return priorities_.has_value(); }
  const SlotPriorities& priorities() const { return *priorities_; }  // prioritized buffers only
  Rng& rng() { return rng_; }

  // Stores a game (evicting whole oldest games to make room) and returns the id of its first
  // position. New positions get `priorities` (+ eps) where given, else the largest priority seen so
  // far. Everything is validated before anything changes.
  int64_t add_game(const GameData& g, const double* priorities = nullptr) {
    if (priorities) {
      if (!priorities_) throw std::invalid_argument("priorities: expected none, since this buffer is not prioritized");
      priorities_->check(priorities, g.length, "priorities");
    }
    const int64_t oldest_before = store_.oldest_id();
    const int64_t first = store_.add_game(g);
    if (priorities_) {
      // Evicted slots are emptied first: the new game may reuse some of them.
      slots_of(oldest_before, store_.oldest_id());
      priorities_->erase(slots_.data(), static_cast<int64_t>(slots_.size()));
      slots_of(first, store_.end_id());
      if (priorities) priorities_->assign(slots_.data(), priorities, g.length);
      else priorities_->assign_max(slots_.data(), g.length);
    }
    return first;
  }

  // n position ids, with replacement, and their importance weights (ones when not prioritized).
  void sample_ids(int64_t n, double beta, int64_t* ids, float* weights) {
    if (n < 1) throw std::invalid_argument("batch_size: expected an integer >= 1, got " + std::to_string(n));
    if (store_.size() == 0) throw std::invalid_argument("batch_size: expected a buffer holding games to sample from, got an empty one");
    if (!(beta >= 0.0 && std::isfinite(beta))) throw std::invalid_argument("beta: expected a finite value >= 0, got " + std::to_string(beta));
    if (!priorities_) {
      const uint64_t count = static_cast<uint64_t>(store_.size());
      for (int64_t i = 0; i < n; ++i) {
        ids[i] = store_.oldest_id() + static_cast<int64_t>(rng_.uniform_int(count));
        weights[i] = 1.0f;
      }
      return;
    }
    // Only reachable when (priority + eps)^alpha underflows for every position.
    if (!(priorities_->total() > 0.0)) throw std::invalid_argument("priorities: every stored position has priority^alpha 0, so none can be drawn");
    priorities_->sample(rng_, n, beta, ids, weights);
    for (int64_t i = 0; i < n; ++i) ids[i] = store_.id_at_slot(ids[i]);
  }

  // A batch: sample_ids, then every target of the drawn positions.
  void sample(int64_t n, double beta, int64_t* ids, float* weights, const TargetOutputs& out) {
    sample_ids(n, beta, ids, weights);
    make_targets(store_, targets_, rng_, ids, n, out);
  }

  void update_priorities(const int64_t* ids, const double* priorities, int64_t n) {
    if (!priorities_) throw std::invalid_argument("update_priorities: this buffer is not prioritized");
    store_.check_ids(ids, n, "indices");
    priorities_->check(priorities, n, "priorities");
    slots_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) slots_[static_cast<size_t>(i)] = store_.slot_of(ids[i]);
    priorities_->assign(slots_.data(), priorities, n);
  }

  // priority^alpha of a position; 0 where it is not stored.
  double priority(int64_t id) const {
    return priorities_ && store_.stored(id) ? priorities_->leaf(store_.slot_of(id)) : 0.0;
  }

  void update_targets(const int64_t* ids, const float* root_values, const float* policies, int64_t n) {
    store_.update_targets(ids, root_values, policies, n);
  }

  void clear() {
    store_.clear();
    if (priorities_) priorities_->clear();
  }

  GameBufferState state() const {
    GameBufferState s;
    s.store = store_.state();
    if (priorities_) {
      for (int64_t id = store_.oldest_id(); id < store_.end_id(); ++id) s.priorities.push_back(priority(id));
      s.max_priority = priorities_->max_priority();
    }
    s.rng = rng_.state();
    return s;
  }

  // Replaces everything from a snapshot, validated in full before anything changes.
  void restore(const GameBufferState& s) {
    const auto& r = s.rng;
    if (r[0] == 0 && r[1] == 0 && r[2] == 0 && r[3] == 0) throw std::invalid_argument("rng: expected a non-zero state");
    if (priorities_) {
      if (static_cast<int64_t>(s.priorities.size()) != s.store.end_id - s.store.oldest_id) {
        throw std::invalid_argument("priorities: expected one per stored position");
      }
      for (double p : s.priorities) {
        if (!(p > 0.0 && std::isfinite(p))) throw std::invalid_argument("priorities: expected finite values > 0, got " + std::to_string(p));
      }
      if (!(s.max_priority > 0.0 && std::isfinite(s.max_priority))) {
        throw std::invalid_argument("max_priority: expected a finite value > 0, got " + std::to_string(s.max_priority));
      }
    } else if (!s.priorities.empty()) {
      throw std::invalid_argument("priorities: expected none, since this buffer is not prioritized");
    }
    store_.restore(s.store);
    if (priorities_) {
      std::vector<double> leaves(static_cast<size_t>(store_.capacity()), 0.0);
      for (size_t j = 0; j < s.priorities.size(); ++j) {
        leaves[static_cast<size_t>(store_.slot_of(store_.oldest_id() + static_cast<int64_t>(j)))] = s.priorities[j];
      }
      priorities_->restore(leaves, s.max_priority);
    }
    rng_.set_state(s.rng);
  }

 private:
  // slots_ = the slots of ids [begin, end).
  void slots_of(int64_t begin, int64_t end) {
    slots_.resize(static_cast<size_t>(end - begin));
    for (int64_t id = begin; id < end; ++id) slots_[static_cast<size_t>(id - begin)] = store_.slot_of(id);
  }

  GameStore store_;
  TargetConfig targets_;
  Rng rng_;
  std::optional<SlotPriorities> priorities_;
  std::vector<int64_t> slots_;  // reused between calls
};

}  // namespace pymbrl::replay
