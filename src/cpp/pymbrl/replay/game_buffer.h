// MuZero's replay buffer of whole games: a GameStore, the buffer's own generator and, when
// prioritized, proportional priorities over positions. Positions are drawn uniformly or in
// proportion to priority^alpha, and their unroll targets built in one pass (game_targets.h).
// Callers serialise access (the Python binding holds a mutex per buffer).
//
// Limits: a batch holds at most 2^16 positions (kMaxBatchSize; MuZero samples 1024-2048) and its
// outputs at most 2^32 bytes (kMaxBatchBytes), checked before anything is allocated or drawn.
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
  static constexpr int64_t kMaxBatchSize = int64_t{1} << 16;
  static constexpr int64_t kMaxBatchBytes = int64_t{1} << 32;

  GameBuffer(const GameStoreConfig& store, const TargetConfig& targets, bool prioritized, double alpha, double eps,
             uint64_t seed)
      : store_(checked(store, targets, prioritized)), targets_(targets), rng_(seed) {
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

  // Bytes of every output of sample() for a batch of n (ids and weights included); throws naming
  // batch_size where n is out of [1, kMaxBatchSize] or the outputs would pass kMaxBatchBytes.
  int64_t batch_bytes(int64_t n) const {
    if (!(n >= 1 && n <= kMaxBatchSize)) {
      throw std::invalid_argument("batch_size: expected an integer in [1, 65536], got " + std::to_string(n));
    }
    const std::string too_big = "batch_size: expected a batch of at most 2^32 bytes, got " + std::to_string(n) + " positions";
    const int64_t k = targets_.unroll_steps;  // <= 2^16 (TargetConfig::check)
    const int64_t policies =
        checked_product(checked_product(k + 1, store_.num_actions(), kMaxBatchBytes, too_big), 4, kMaxBatchBytes, too_big);
    // obs, actions [K], 5 float32 rows [K+1], policies [K+1, A], id and weight.
    const int64_t per_position = store_.obs_bytes() + 8 * k + 20 * (k + 1) + policies + 12;
    return checked_product(n, per_position, kMaxBatchBytes, too_big);
  }

  // n position ids, with replacement, and their importance weights (ones when not prioritized).
  void sample_ids(int64_t n, double beta, int64_t* ids, float* weights) {
    batch_bytes(n);
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
    store_.check(s.store);
    const int64_t n = s.store.end_id - s.store.oldest_id;  // within [0, capacity] once checked
    std::vector<double> leaves;
    if (priorities_) {
      if (static_cast<int64_t>(s.priorities.size()) != n) {
        throw std::invalid_argument("priorities: expected one per stored position (" + std::to_string(n) + "), got " +
                                    std::to_string(s.priorities.size()));
      }
      leaves.assign(static_cast<size_t>(priorities_->sum_tree().n_leaves()), 0.0);
      for (int64_t j = 0; j < n; ++j) {
        const double p = s.priorities[static_cast<size_t>(j)];
        // A stored position must be drawable; check_restore bounds the rest.
        if (!(p > 0.0)) {
          throw std::invalid_argument("priorities: expected values > 0, got " + std::to_string(p) + " at row " + std::to_string(j));
        }
        leaves[static_cast<size_t>(store_.slot_of(s.store.oldest_id + j))] = p;
      }
      priorities_->check_restore(leaves, store_.capacity(), s.max_priority);
    } else if (!s.priorities.empty()) {
      throw std::invalid_argument("priorities: expected none, since this buffer is not prioritized");
    }
    const auto& r = s.rng;
    if (r[0] == 0 && r[1] == 0 && r[2] == 0 && r[3] == 0) throw std::invalid_argument("rng: expected a non-zero state");
    store_.restore_checked(s.store);
    if (priorities_) priorities_->restore(leaves, s.max_priority);
    rng_.set_state(s.rng);
  }

 private:
  // The checks that do not need the store, made before it allocates anything.
  static const GameStoreConfig& checked(const GameStoreConfig& store, const TargetConfig& targets, bool prioritized) {
    targets.check();
    if (prioritized && store.capacity > 0) {
      // Sum and min trees of doubles, leaves rounded up to a power of 8: at most 147 bytes a slot.
      checked_product(store.capacity, 147, kMaxStoreBytes,
                      "capacity: expected at most 2^40 / 147 positions in a prioritized buffer, got " + std::to_string(store.capacity));
    }
    return store;
  }

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
