// The ring of transitions behind every replay buffer. Row-per-transition storage; env stream e owns
// rows p * num_envs + e. A transition's next observation is the following row's observation in
// the same stream, so observations are stored once; only when a step ends an episode is its final
// observation kept, in a small pool of its own. A transition is sampleable once its next
// observation is known: the newest row of a stream is not, unless it ended an episode.
//
// Transitions have ids: id = t * num_envs + e for step t of stream e, counting every row ever
// written. A stored id maps to row id % capacity, and an id is still stored iff
// id >= oldest_id(); so an id doubles as a generation stamp (a slot's generation is id / capacity).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/large_array.h"
#include "pymbrl/replay/row_layout.h"
#include "pymbrl/rng.h"

namespace pymbrl::replay {

struct StoreConfig {
  int64_t capacity = 0;
  int64_t num_envs = 1;
  int64_t n_step = 1;
  double gamma = 0.99;
  bool track_episodes = false;  // per-row is_first and episode start, for sequence sampling
};

class TransitionStore {
 public:
  // Limits: capacity <= kMaxCapacity rows and capacity x row bytes <= 2^40; ids (steps x num_envs)
  // stay below kMaxId, which a snapshot must respect (2^62 ids is centuries of adds).
  static constexpr int64_t kMaxCapacity = (int64_t{1} << 31) - 1;
  static constexpr int64_t kMaxId = int64_t{1} << 62;

  TransitionStore(RowLayout layout, const StoreConfig& config) : layout_(std::move(layout)), config_(config) {
    if (config.capacity < 1) throw std::invalid_argument("capacity: expected an integer >= 1, got " + std::to_string(config.capacity));
    if (config.num_envs < 1) throw std::invalid_argument("num_envs: expected an integer >= 1, got " + std::to_string(config.num_envs));
    if (config.capacity % config.num_envs != 0) {
      throw std::invalid_argument("capacity: expected a multiple of num_envs (" + std::to_string(config.num_envs) +
                                  "), got " + std::to_string(config.capacity));
    }
    if (config.n_step < 1) throw std::invalid_argument("n_step: expected an integer >= 1, got " + std::to_string(config.n_step));
    if (!(config.gamma >= 0.0 && config.gamma <= 1.0)) throw std::invalid_argument("gamma: expected a value in [0, 1], got " + std::to_string(config.gamma));
    // Final-observation slots are int32, so no more rows than that; and all rows together hold at
    // most 2^40 bytes (row_bytes() >= 8, so the division is safe).
    if (config.capacity > kMaxCapacity) {
      throw std::invalid_argument("capacity: expected at most 2^31 - 1 transitions, got " + std::to_string(config.capacity));
    }
    if (config.capacity > RowLayout::kMaxBytes / layout_.row_bytes()) {
      throw std::invalid_argument("capacity: expected capacity x row bytes (" + std::to_string(layout_.row_bytes()) +
                                  ") <= 2^40, got capacity " + std::to_string(config.capacity));
    }
    steps_ = config.capacity / config.num_envs;
    rows_ = LargeArray<uint8_t>(static_cast<size_t>(config.capacity * layout_.row_bytes()));
    final_slot_.assign(static_cast<size_t>(config.capacity), -1);
    if (config.track_episodes) {
      is_first_.assign(static_cast<size_t>(config.capacity), 0);
      episode_start_.assign(static_cast<size_t>(config.capacity), 0);
    }
  }

  const RowLayout& layout() const { return layout_; }
  const StoreConfig& config() const { return config_; }
  int64_t capacity() const { return config_.capacity; }
  int64_t num_envs() const { return config_.num_envs; }
  int64_t steps_per_env() const { return steps_; }
  int64_t written() const { return written_; }  // steps written per stream, ever
  // clear() forgets rows but keeps counting steps, so ids sampled before it stay stale for good.
  int64_t cleared_at() const { return cleared_at_; }
  int64_t stored_steps() const { return std::min(written_ - cleared_at_, steps_); }
  int64_t oldest_step() const { return written_ - stored_steps(); }
  int64_t oldest_id() const { return oldest_step() * num_envs(); }
  int64_t end_id() const { return written_ * num_envs(); }

  int64_t row_of(int64_t id) const { return id % config_.capacity; }
  // The newest id that row r can hold given the oldest stored id (the inverse of row_of there).
  int64_t id_at_row(int64_t r) const {
    const int64_t oldest = oldest_id();
    const int64_t oldest_row = row_of(oldest);
    return oldest + (r >= oldest_row ? r - oldest_row : r - oldest_row + config_.capacity);
  }
  const uint8_t* row(int64_t r) const { return rows_.data() + r * layout_.row_bytes(); }
  uint8_t* row(int64_t r) { return rows_.data() + r * layout_.row_bytes(); }
  bool done_at(int64_t r) const { return layout_.done(row(r)); }

  // True when the transition (still stored) has a known next observation.
  bool sampleable(int64_t id) const {
    return id >= oldest_id() && id < end_id() && (id / num_envs() < written_ - 1 || done_at(row_of(id)));
  }
  // Number of sampleable transitions.
  int64_t size() const {
    if (stored_steps() == 0) return 0;
    int64_t n = (stored_steps() - 1) * num_envs();
    for (int64_t e = 0; e < num_envs(); ++e) n += done_at(row_of((written_ - 1) * num_envs() + e));
    return n;
  }

  // Appends `steps` consecutive steps for every stream. fields[i] points at steps * num_envs
  // contiguous items of field i ([steps, num_envs] order); next_obs likewise. Callers validate.
  // Returns the id of the first row written.
  int64_t append(const std::vector<const uint8_t*>& fields, const uint8_t* next_obs, int64_t steps) {
    const int64_t first = end_id();
    const auto& fs = layout_.fields();
    const Field& obs = layout_.obs();
    for (int64_t k = 0; k < steps; ++k) {
      for (int64_t e = 0; e < num_envs(); ++e) {
        const int64_t item = k * num_envs() + e;
        const int64_t id = written_ * num_envs() + e;  // written_ advances once all streams are written
        const int64_t r = row_of(id);
        if (config_.track_episodes) track_episode(id, r);
        uint8_t* dst = row(r);
        release_final(r);
        for (size_t f = 0; f < fs.size(); ++f) {
          std::memcpy(dst + fs[f].offset, fields[f] + item * fs[f].nbytes, static_cast<size_t>(fs[f].nbytes));
        }
        for (const auto& gap : layout_.padding()) std::memset(dst + gap.offset, 0, static_cast<size_t>(gap.size));
        if (layout_.done(dst)) {
          const int32_t slot = allocate_final();
          std::memcpy(final_obs(slot), next_obs + item * obs.nbytes, static_cast<size_t>(obs.nbytes));
          final_slot_[static_cast<size_t>(r)] = slot;
        }
        if (e + 1 == num_envs()) ++written_;
      }
    }
    return first;
  }

  // The observation that followed transition `id` (which must be sampleable). The done flags
  // sit in the row, which the caller has just read; the slot table is only consulted at episode
  // ends, so most lookups cost no extra cache miss.
  const uint8_t* next_obs(int64_t id) const {
    const int64_t r = row_of(id);
    if (done_at(r)) return final_obs(final_slot_[static_cast<size_t>(r)]);
    return row(row_of(id + num_envs())) + layout_.obs().offset;
  }

  struct NStep {
    double ret = 0.0;       // discounted sum of rewards
    double discount = 0.0;  // gamma^k, or 0 after termination
    bool terminated = false;
    bool truncated = false;
    int64_t last_id = 0;    // transition whose next observation bootstraps
  };

  // Up to n_step rewards from `id`, stopping at an episode end or where the stored data ends.
  NStep n_step(int64_t id) const {
    NStep out;
    double discount = 1.0;
    for (int64_t k = 0;; ++k) {
      const uint8_t* r = row(row_of(id));
      out.ret += discount * layout_.read_reward(r);
      discount *= config_.gamma;
      out.last_id = id;
      out.truncated = layout_.truncated(r);
      if (layout_.terminated(r)) {
        out.terminated = true;
        out.discount = 0.0;
        return out;
      }
      if (out.truncated || k + 1 == config_.n_step || !sampleable(id + num_envs())) {
        out.discount = discount;
        return out;
      }
      id += num_envs();
    }
  }

  // Where a gather writes: one buffer per layout field, then optional next observations and
  // discounts.
  struct Outputs {
    std::vector<uint8_t*> fields;  // one per layout field, [n, *shape]
    uint8_t* next_obs = nullptr;   // [n, *obs_shape] or null to skip
    float* discount = nullptr;     // [n] or null
  };

  // Copies transitions ids[0..n) into the outputs; with n-step returns the reward, terminated and
  // truncated fields describe the whole n-step window.
  void gather(const int64_t* ids, int64_t n, const Outputs& out) const {
    const auto& fs = layout_.fields();
    const Field& obs = layout_.obs();
    constexpr int64_t kAhead = 8;  // rows are scattered through a large array: fetch ahead
    for (int64_t i = 0; i < std::min(n, kAhead); ++i) prefetch(ids[i]);
    for (int64_t i = 0; i < n; ++i) {
      if (i + kAhead < n) prefetch(ids[i + kAhead]);
      const uint8_t* src = row(row_of(ids[i]));
      for (size_t f = 0; f < fs.size(); ++f) {
        copy_small(out.fields[f] + i * fs[f].nbytes, src + fs[f].offset, fs[f].nbytes);
      }
      if (config_.n_step == 1) {
        if (out.next_obs) copy_small(out.next_obs + i * obs.nbytes, next_obs(ids[i]), obs.nbytes);
        if (out.discount) out.discount[i] = layout_.terminated(src) ? 0.0f : static_cast<float>(config_.gamma);
        continue;
      }
      const NStep ns = n_step(ids[i]);
      const Field& rf = layout_.reward();
      uint8_t* reward = out.fields[layout_.reward_index()] + i * rf.nbytes;
      if (rf.itemsize == 8) {
        std::memcpy(reward, &ns.ret, 8);
      } else {
        const float v = static_cast<float>(ns.ret);
        std::memcpy(reward, &v, 4);
      }
      out.fields[layout_.terminated_index()][i] = ns.terminated;
      out.fields[layout_.truncated_index()][i] = ns.truncated;
      if (out.next_obs) std::memcpy(out.next_obs + i * obs.nbytes, next_obs(ns.last_id), static_cast<size_t>(obs.nbytes));
      if (out.discount) out.discount[i] = static_cast<float>(ns.discount);
    }
  }

  bool is_first(int64_t id) const { return is_first_[static_cast<size_t>(row_of(id))] != 0; }
  int64_t episode_start(int64_t id) const { return episode_start_[static_cast<size_t>(row_of(id))]; }

  void clear() {
    cleared_at_ = written_;
    std::fill(final_slot_.begin(), final_slot_.end(), -1);
    final_pool_.clear();
    free_slots_.clear();
  }

  // --- snapshots (save / load) -------------------------------------------------------------
  // Rows holding transitions now, and rows ever written (stale ones after a clear() included):
  // the latter is what a snapshot carries, so that every row keeps its position.
  int64_t stored_rows() const { return stored_steps() * num_envs(); }
  int64_t written_rows() const { return std::min(written_ * num_envs(), config_.capacity); }
  const uint8_t* rows_data() const { return rows_.data(); }
  const std::vector<int32_t>& final_slots() const { return final_slot_; }
  const std::vector<uint8_t>& final_pool() const { return final_pool_; }
  const std::vector<int32_t>& free_slots() const { return free_slots_; }
  const std::vector<uint8_t>& is_first_flags() const { return is_first_; }
  const std::vector<int64_t>& episode_starts() const { return episode_start_; }

  // Replaces the contents from a snapshot; everything is validated (check_snapshot) before anything
  // changes.
  void restore(int64_t written, int64_t cleared_at, const uint8_t* rows, int64_t n_rows, std::vector<int32_t> final_slots,
               std::vector<uint8_t> final_pool, std::vector<int32_t> free_slots, std::vector<uint8_t> is_first,
               std::vector<int64_t> episode_start) {
    check_snapshot(written, cleared_at, rows, n_rows, final_slots, final_pool, free_slots, is_first, episode_start);
    written_ = written;
    cleared_at_ = cleared_at;
    if (n_rows > 0) std::memcpy(rows_.data(), rows, static_cast<size_t>(n_rows * layout_.row_bytes()));
    final_slot_ = std::move(final_slots);
    final_pool_ = std::move(final_pool);
    free_slots_ = std::move(free_slots);
    if (config_.track_episodes) {
      is_first_ = std::move(is_first);
      episode_start_ = std::move(episode_start);
    }
  }

  // Throws std::invalid_argument unless the snapshot is one this store could have reached: counters
  // within range and consistent, every array sized to the store, bool fields 0 or 1, row padding
  // zero, final observations exactly for live episode ends, the slot pool fully accounted for, and
  // the episode bookkeeping (track_episodes) what the rows imply.
  void check_snapshot(int64_t written, int64_t cleared_at, const uint8_t* rows, int64_t n_rows,
                      const std::vector<int32_t>& final_slots, const std::vector<uint8_t>& final_pool,
                      const std::vector<int32_t>& free_slots, const std::vector<uint8_t>& is_first,
                      const std::vector<int64_t>& episode_start) const {
    const int64_t envs = num_envs();
    if (written < 0 || written > kMaxId / envs) {
      throw std::invalid_argument("written: expected an integer in [0, 2^62 / num_envs], got " + std::to_string(written));
    }
    if (cleared_at < 0 || cleared_at > written) {
      throw std::invalid_argument("cleared_at: expected an integer in [0, written=" + std::to_string(written) + "], got " +
                                  std::to_string(cleared_at));
    }
    if (n_rows != std::min(written * envs, config_.capacity)) {
      throw std::invalid_argument("rows: expected every row written (" + std::to_string(std::min(written * envs, config_.capacity)) +
                                  "), got " + std::to_string(n_rows));
    }
    if (final_slots.size() != final_slot_.size()) throw std::invalid_argument("final_slots: expected one per row");
    const int64_t obs_bytes = layout_.obs().nbytes;
    if (static_cast<int64_t>(final_pool.size()) % obs_bytes != 0) throw std::invalid_argument("final_pool: expected whole observations");
    const int64_t pool_slots = static_cast<int64_t>(final_pool.size()) / obs_bytes;
    // The pool never holds more slots than rows: a slot is only added when none is free.
    if (pool_slots > config_.capacity) throw std::invalid_argument("final_pool: expected at most one observation per row");
    // Every pool slot is either free or owned by exactly one stored row that ended an episode;
    // anything else would let a later episode end overwrite a final observation still in use.
    std::vector<char> owner(static_cast<size_t>(pool_slots), 0);
    for (size_t r = 0; r < final_slots.size(); ++r) {
      const int32_t s = final_slots[r];
      if (s < -1 || s >= pool_slots) throw std::invalid_argument("final_slots: expected -1 or a pool slot");
      if (s >= 0 && static_cast<int64_t>(r) >= n_rows) throw std::invalid_argument("final_slots: expected -1 for rows not written");
      if (s >= 0 && owner[static_cast<size_t>(s)]++) throw std::invalid_argument("final_slots: expected each pool slot at most once");
    }
    for (int32_t s : free_slots) {
      if (s < 0 || s >= pool_slots) throw std::invalid_argument("free_slots: expected pool slots");
      if (owner[static_cast<size_t>(s)]++) throw std::invalid_argument("free_slots: expected slots neither in use nor repeated");
    }
    if (std::find(owner.begin(), owner.end(), 0) != owner.end()) {
      throw std::invalid_argument("free_slots: expected every pool slot to be in use or free");
    }
    const auto& fs = layout_.fields();
    for (int64_t r = 0; r < n_rows; ++r) {
      const uint8_t* src = rows + r * layout_.row_bytes();
      for (const Field& f : fs) {
        if (f.kind != 'b') continue;
        for (int64_t k = 0; k < f.nbytes; ++k) {
          if (src[f.offset + k] > 1) throw std::invalid_argument("rows: expected 0 or 1 in bool field '" + f.name + "'");
        }
      }
      for (const auto& gap : layout_.padding()) {
        for (int64_t k = 0; k < gap.size; ++k) {
          if (src[gap.offset + k] != 0) throw std::invalid_argument("rows: expected zero padding between fields");
        }
      }
      const bool done = src[layout_.terminated().offset] != 0 || src[layout_.truncated().offset] != 0;
      // Rows last written before a clear() keep no final observation.
      const bool live = step_of_row(written, r) >= cleared_at;
      if (done && live ? final_slots[static_cast<size_t>(r)] < 0 : final_slots[static_cast<size_t>(r)] >= 0) {
        throw std::invalid_argument("final_slots: expected a final observation exactly for rows that end an episode");
      }
    }
    if (!config_.track_episodes) {
      if (!is_first.empty() || !episode_start.empty()) {
        throw std::invalid_argument("is_first, episode_start: expected none (only sequence buffers track episodes)");
      }
      return;
    }
    if (is_first.size() != is_first_.size() || episode_start.size() != episode_start_.size()) {
      throw std::invalid_argument("is_first, episode_start: expected one per row");
    }
    for (int64_t r = 0; r < config_.capacity; ++r) {
      const uint8_t first = is_first[static_cast<size_t>(r)];
      const int64_t start = episode_start[static_cast<size_t>(r)];
      if (r >= n_rows) {
        if (first != 0 || start != 0) throw std::invalid_argument("is_first, episode_start: expected 0 for rows not written");
        continue;
      }
      const int64_t t = step_of_row(written, r);
      if (first > 1) throw std::invalid_argument("is_first: expected 0 or 1");
      // A row's episode began at or before its step, at it exactly where the row begins one; a live
      // episode began after the last clear().
      if (start < 0 || start > t || (first != 0) != (start == t)) {
        throw std::invalid_argument("episode_start: expected the step its episode began at (<= the row's step; equal iff is_first)");
      }
      if (t < cleared_at) continue;
      if (start < cleared_at || (t == cleared_at && !first)) {
        throw std::invalid_argument("episode_start: expected episodes to begin at or after the last clear()");
      }
      // Where the stream's previous step is still stored, the flags follow from it.
      if (t == cleared_at || t - 1 < written - steps_) continue;
      const int64_t prev = r - envs >= 0 ? r - envs : r - envs + config_.capacity;
      const bool prev_done = layout_.done(rows + prev * layout_.row_bytes());
      const int64_t want = prev_done ? t : episode_start[static_cast<size_t>(prev)];
      if (start != want) {
        throw std::invalid_argument("is_first, episode_start: expected them to follow from the previous step of the stream");
      }
    }
  }

  // Whether row r of a snapshot (one that passed check_snapshot()) holds a sampleable transition;
  // the prioritized sampler checks its leaves against this before anything is restored.
  bool snapshot_row_sampleable(int64_t written, int64_t cleared_at, const uint8_t* rows, int64_t r) const {
    if (r >= std::min(written * num_envs(), config_.capacity)) return false;
    if (step_of_row(written, r) < std::max(cleared_at, written - steps_)) return false;
    return step_of_row(written, r) < written - 1 || layout_.done(rows + r * layout_.row_bytes());
  }

 private:
  // The newest step row r holds once `written` steps per stream were written (r < rows written).
  int64_t step_of_row(int64_t written, int64_t r) const {
    const int64_t position = r / num_envs();
    return written - 1 - ((written - 1 - position) % steps_);
  }

  // Field copies are small and of run-time size; a libc memcpy call per field costs more than the
  // copy itself, so common sizes are inlined.
  static void copy_small(uint8_t* dst, const uint8_t* src, int64_t n) {
    switch (n) {
      case 1: *dst = *src; return;
      case 4: __builtin_memcpy(dst, src, 4); return;
      case 8: __builtin_memcpy(dst, src, 8); return;
      default: break;
    }
    if (n <= 128) {
      int64_t k = 0;
      for (; k + 8 <= n; k += 8) __builtin_memcpy(dst + k, src + k, 8);
      for (; k < n; ++k) dst[k] = src[k];
      return;
    }
    std::memcpy(dst, src, static_cast<size_t>(n));
  }

  void prefetch(int64_t id) const {
    const uint8_t* p = row(row_of(id));
    __builtin_prefetch(p);
    if (layout_.row_bytes() > 64) __builtin_prefetch(p + 64);
  }

  uint8_t* final_obs(int32_t slot) { return final_pool_.data() + static_cast<int64_t>(slot) * layout_.obs().nbytes; }
  const uint8_t* final_obs(int32_t slot) const {
    return final_pool_.data() + static_cast<int64_t>(slot) * layout_.obs().nbytes;
  }

  int32_t allocate_final() {
    if (!free_slots_.empty()) {
      const int32_t slot = free_slots_.back();
      free_slots_.pop_back();
      return slot;
    }
    const int32_t slot = static_cast<int32_t>(final_pool_.size() / static_cast<size_t>(layout_.obs().nbytes));
    final_pool_.resize(final_pool_.size() + static_cast<size_t>(layout_.obs().nbytes));
    return slot;
  }

  // is_first and episode start of row r, about to hold transition id, from the stream's previous
  // row. Called before the row is written: with one step per stream the previous row is row r.
  void track_episode(int64_t id, int64_t r) {
    const int64_t t = id / num_envs();
    const int64_t prev = row_of(id - num_envs());
    const bool first_step = t == cleared_at_ || done_at(prev);
    const int64_t start = first_step ? t : episode_start_[static_cast<size_t>(prev)];
    is_first_[static_cast<size_t>(r)] = first_step;
    episode_start_[static_cast<size_t>(r)] = start;
  }

  void release_final(int64_t r) {
    int32_t& slot = final_slot_[static_cast<size_t>(r)];
    if (slot >= 0) free_slots_.push_back(slot);
    slot = -1;
  }

  RowLayout layout_;
  StoreConfig config_;
  int64_t steps_ = 0;
  int64_t written_ = 0;
  int64_t cleared_at_ = 0;
  LargeArray<uint8_t> rows_;  // uninitialised: pages are committed as rows are written
  std::vector<int32_t> final_slot_;   // row -> slot in final_pool_, or -1
  std::vector<uint8_t> final_pool_;   // final observations of episodes that ended in a stored row
  std::vector<int32_t> free_slots_;
  std::vector<uint8_t> is_first_;      // track_episodes only
  std::vector<int64_t> episode_start_;  // track_episodes only: step at which the row's episode began
};

}  // namespace pymbrl::replay
