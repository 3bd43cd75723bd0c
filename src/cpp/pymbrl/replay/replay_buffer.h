// The three replay buffers: a TransitionStore plus a generator and a sampler. Uniform and
// prioritized buffers sample transitions (with optional n-step returns); the sequence buffer
// samples windows. Callers serialise access (the Python binding holds a mutex per buffer).
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/replay/prioritized_sampler.h"
#include "pymbrl/replay/sequence_sampler.h"
#include "pymbrl/replay/transition_store.h"
#include "pymbrl/rng.h"

namespace pymbrl::replay {

class ReplayBuffer {
 public:
  ReplayBuffer(RowLayout layout, const StoreConfig& config, uint64_t seed) : store_(std::move(layout), config), rng_(seed) {}
  virtual ~ReplayBuffer() = default;

  const TransitionStore& store() const { return store_; }
  Rng& rng() { return rng_; }
  int64_t size() const { return store_.size(); }

  virtual int64_t append(const std::vector<const uint8_t*>& fields, const uint8_t* next_obs, int64_t steps) {
    return store_.append(fields, next_obs, steps);
  }

  virtual void clear() { store_.clear(); }

  // Uniform over sampleable transitions, with replacement.
  void sample_ids(int64_t n, int64_t* ids) {
    check_batch(n);
    const int64_t lo = store_.oldest_id();
    const uint64_t count = static_cast<uint64_t>(store_.end_id() - lo);
    for (int64_t i = 0; i < n; ++i) {
      int64_t id;
      do {
        id = lo + static_cast<int64_t>(rng_.uniform_int(count));
      } while (!store_.sampleable(id));
      ids[i] = id;
    }
  }

  void check_batch(int64_t n) const {
    const int64_t stored = size();
    if (n < 1 || n > stored) {
      throw std::invalid_argument("batch_size: expected an integer in [1, " + std::to_string(stored) +
                                  "] (the transitions stored), got " + std::to_string(n));
    }
  }

  // Replaces the store and the generator from a snapshot; validates everything first, so a bad
  // snapshot changes nothing.
  void restore_store(int64_t written, int64_t cleared_at, const uint8_t* rows, int64_t n_rows, std::vector<int32_t> final_slots,
                     std::vector<uint8_t> final_pool, std::vector<int32_t> free_slots, std::vector<uint8_t> is_first,
                     std::vector<int64_t> episode_start, const Rng::State& rng) {
    check_rng(rng);
    store_.restore(written, cleared_at, rows, n_rows, std::move(final_slots), std::move(final_pool), std::move(free_slots),
                   std::move(is_first), std::move(episode_start));
    rng_.set_state(rng);
  }

 protected:
  static void check_rng(const Rng::State& rng) {
    if (rng[0] == 0 && rng[1] == 0 && rng[2] == 0 && rng[3] == 0) throw std::invalid_argument("rng: expected a non-zero state");
  }

 protected:
  TransitionStore store_;
  Rng rng_;
};

class PrioritizedReplayBuffer : public ReplayBuffer {
 public:
  PrioritizedReplayBuffer(RowLayout layout, const StoreConfig& config, uint64_t seed, double alpha, double eps)
      : ReplayBuffer(std::move(layout), config, seed), sampler_(config.capacity, alpha, eps) {}

  PrioritizedSampler& sampler() { return sampler_; }
  const PrioritizedSampler& sampler() const { return sampler_; }

  int64_t append(const std::vector<const uint8_t*>& fields, const uint8_t* next_obs, int64_t steps) override {
    const int64_t first = store_.append(fields, next_obs, steps);
    sampler_.on_append(store_, first);
    return first;
  }

  void clear() override {
    ReplayBuffer::clear();
    sampler_.clear();
  }

  void sample_prioritized(int64_t n, double beta, int64_t* ids, float* weights) {
    check_batch(n);
    if (!(beta >= 0.0 && std::isfinite(beta))) throw std::invalid_argument("beta: expected a finite value >= 0, got " + std::to_string(beta));
    if (!(sampler_.total() > 0.0)) {
      throw std::invalid_argument("priorities: every stored transition has priority 0, so none can be drawn (use eps > 0)");
    }
    sampler_.sample(store_, rng_, n, beta, ids, weights);
  }

  void update_priorities(const int64_t* ids, const double* priorities, int64_t n) {
    sampler_.update(store_, ids, priorities, n);
  }

  // restore_store() and the sampler's leaves and running maximum together: the leaves are checked
  // against the snapshot's rows before the store is touched, so a bad snapshot changes nothing.
  void restore_all(int64_t written, int64_t cleared_at, const uint8_t* rows, int64_t n_rows, std::vector<int32_t> final_slots,
                   std::vector<uint8_t> final_pool, std::vector<int32_t> free_slots, std::vector<uint8_t> is_first,
                   std::vector<int64_t> episode_start, const Rng::State& rng, const std::vector<double>& leaves,
                   double max_priority) {
    check_rng(rng);
    store_.check_snapshot(written, cleared_at, rows, n_rows, final_slots, final_pool, free_slots, is_first, episode_start);
    sampler_.check(leaves, max_priority,
                   [&](int64_t r) { return store_.snapshot_row_sampleable(written, cleared_at, rows, r); });
    restore_store(written, cleared_at, rows, n_rows, std::move(final_slots), std::move(final_pool), std::move(free_slots),
                  std::move(is_first), std::move(episode_start), rng);
    sampler_.restore(store_, leaves, max_priority);
  }

 private:
  PrioritizedSampler sampler_;
};

class SequenceReplayBuffer : public ReplayBuffer {
 public:
  SequenceReplayBuffer(RowLayout layout, StoreConfig config, uint64_t seed)
      : ReplayBuffer(std::move(layout), (config.track_episodes = true, config.n_step = 1, config), seed) {}

  // Checks a request for n windows of `length` steps before anything is allocated for it: length
  // fits the stored steps, and the batch (rows, next observations, is_first) holds at most
  // max(kMinBatchBytes, the bytes stored) -- a batch may repeat windows, but not without bound.
  void check_windows(int64_t n, int64_t length) const {
    if (n < 1) throw std::invalid_argument("batch_size: expected an integer >= 1, got " + std::to_string(n));
    check_window_length(store_, length);
    const int64_t step_bytes = store_.layout().row_bytes() + store_.layout().obs().nbytes + 1;
    const int64_t stored = store_.stored_rows() * store_.layout().row_bytes();
    const int64_t limit = std::max(kMinBatchBytes, stored);
    int64_t steps = 0, bytes = 0;
    if (__builtin_mul_overflow(n, length, &steps) || __builtin_mul_overflow(steps, step_bytes, &bytes) || bytes > limit) {
      throw std::invalid_argument("batch_size: expected batch_size x length x " + std::to_string(step_bytes) +
                                  " bytes <= " + std::to_string(limit) + " (max(2^28, the bytes stored)), got batch_size " +
                                  std::to_string(n) + " x length " + std::to_string(length));
    }
  }

  void sample_windows(int64_t n, int64_t length, bool within_episode, int64_t* starts) {
    check_windows(n, length);
    replay::sample_windows(store_, rng_, n, length, within_episode, starts);
  }

  static constexpr int64_t kMinBatchBytes = int64_t{1} << 28;
};

}  // namespace pymbrl::replay
