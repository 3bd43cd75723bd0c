// The positions of whole games (episodes) for MuZero replay. Each field has its own flat ring
// (observation bytes, action, reward, search root value, visit-count policy) rather than one row
// per position: an unroll reads runs of consecutive positions, which then lie side by side in
// every field. A small table of games (first position, length, how the game ended) goes with
// them. A game that does not fit evicts whole oldest games, so every stored position still has
// the rest of its game and its ending.
//
// Positions have ids counting every position ever stored. A stored id lives in slot
// id % capacity and is stored iff oldest_id() <= id < end_id(), so a sampled id stays valid until
// its game is evicted and can never name a newer position by mistake.
//
// Limits (each refused with std::invalid_argument naming the argument):
//   capacity * (observation bytes + 4 num_actions + 32) <= 2^40 bytes (kMaxStoreBytes);
//   position ids and games counted stay below 2^62 (kMaxId), far beyond any run, so that no id
//   arithmetic can overflow, whatever a restored snapshot claims;
//   |reward|, |root value|, |final value| <= 1e25 (kMaxMagnitude), so that every n-step sum over
//   a game (at most 2^40 terms of discount^i <= 1) stays finite in float32.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/large_array.h"

namespace pymbrl::replay {

inline constexpr int64_t kMaxStoreBytes = int64_t{1} << 40;
inline constexpr int64_t kMaxId = int64_t{1} << 62;
inline constexpr double kMaxMagnitude = 1e25;

// a * b, or std::invalid_argument (`message`) where it overflows int64 or exceeds `limit`: every
// size and offset derived from arguments or files goes through here or checked_sum.
inline int64_t checked_product(int64_t a, int64_t b, int64_t limit, const std::string& message) {
  int64_t out;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &out) || out > limit) throw std::invalid_argument(message);
  return out;
}

inline int64_t checked_sum(int64_t a, int64_t b, int64_t limit, const std::string& message) {
  int64_t out;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &out) || out > limit) throw std::invalid_argument(message);
  return out;
}

struct GameStoreConfig {
  int64_t capacity = 0;     // positions
  int64_t obs_bytes = 0;    // bytes of one observation
  int64_t num_actions = 0;
};

struct Game {
  int64_t start = 0;  // id of its first position
  int64_t length = 0;
  bool terminated = false;  // false: cut by a time limit, and final_value bootstraps past its end
  float final_value = 0.0f;
};

// One game as add_game reads it: `length` rows of each field, row-major.
struct GameData {
  const uint8_t* obs = nullptr;        // [length, obs_bytes]
  const int64_t* actions = nullptr;    // [length]
  const float* rewards = nullptr;      // [length]
  const float* root_values = nullptr;  // [length]
  const float* policies = nullptr;     // [length, num_actions]
  int64_t length = 0;
  bool terminated = false;
  double final_value = 0.0;
};

// Everything a store holds, positions in id order from oldest_id to end_id: what snapshots save.
struct GameStoreState {
  int64_t oldest_id = 0;
  int64_t end_id = 0;
  int64_t games_added = 0;  // every game ever added; the stored ones are the newest
  std::vector<int64_t> game_starts;
  std::vector<int64_t> game_lengths;
  std::vector<uint8_t> game_terminated;
  std::vector<float> game_final_values;
  std::vector<uint8_t> obs;
  std::vector<int64_t> actions;
  std::vector<float> rewards;
  std::vector<float> root_values;
  std::vector<float> policies;
};

class GameStore {
 public:
  // Visit-count policies are normalised counts: a row further than this from summing to 1 is
  // not a distribution (float32 rounding of a few hundred counts stays far inside it).
  static constexpr double kPolicyTolerance = 1e-3;

  explicit GameStore(const GameStoreConfig& config) : config_(config) {
    if (config.capacity < 1) throw std::invalid_argument("capacity: expected an integer >= 1, got " + std::to_string(config.capacity));
    if (config.obs_bytes < 1) throw std::invalid_argument("obs_shape: expected observations of at least one byte, got " + std::to_string(config.obs_bytes));
    if (config.num_actions < 1) throw std::invalid_argument("num_actions: expected an integer >= 1, got " + std::to_string(config.num_actions));
    // Named after the argument that alone breaks the limit, else after the capacity.
    const int64_t policy_bytes = checked_product(config.num_actions, 4, kMaxStoreBytes,
        "num_actions: expected at most 2^38 actions (4 bytes each per position within 2^40 bytes), got " +
            std::to_string(config.num_actions));
    const std::string too_wide = "obs_shape, num_actions: expected observation bytes + 4 * num_actions + 32 <= 2^40, got " +
                                 std::to_string(config.obs_bytes) + " + 4 * " + std::to_string(config.num_actions) + " + 32";
    const int64_t per_position =
        checked_sum(checked_sum(config.obs_bytes, policy_bytes, kMaxStoreBytes, too_wide), 32, kMaxStoreBytes, too_wide);
    checked_product(config.capacity, per_position, kMaxStoreBytes,
                    "capacity: expected capacity * " + std::to_string(per_position) + " bytes per position <= 2^40 bytes, got capacity " +
                        std::to_string(config.capacity));
    const size_t c = static_cast<size_t>(config.capacity);
    obs_ = LargeArray<uint8_t>(c * static_cast<size_t>(config.obs_bytes));
    actions_ = LargeArray<int64_t>(c);
    rewards_ = LargeArray<float>(c);
    root_values_ = LargeArray<float>(c);
    policies_ = LargeArray<float>(c * static_cast<size_t>(config.num_actions));
    game_of_ = LargeArray<int64_t>(c);
  }

  int64_t capacity() const { return config_.capacity; }
  int64_t num_actions() const { return config_.num_actions; }
  int64_t obs_bytes() const { return config_.obs_bytes; }
  int64_t oldest_id() const { return oldest_id_; }
  int64_t end_id() const { return end_id_; }
  int64_t size() const { return end_id_ - oldest_id_; }
  int64_t num_games() const { return static_cast<int64_t>(games_.size()); }
  bool stored(int64_t id) const { return id >= oldest_id_ && id < end_id_; }

  int64_t slot_of(int64_t id) const { return id % config_.capacity; }
  // The stored id in slot s (meaningful only for slots that hold one).
  int64_t id_at_slot(int64_t s) const {
    const int64_t oldest_slot = slot_of(oldest_id_);
    return oldest_id_ + (s >= oldest_slot ? s - oldest_slot : s - oldest_slot + config_.capacity);
  }
  // Slot of position j of a game whose first position is in slot `first`: games never exceed the
  // capacity, so one subtraction wraps it (cheaper than a modulo in the target loops).
  int64_t wrap(int64_t first, int64_t j) const {
    const int64_t s = first + j;
    return s >= config_.capacity ? s - config_.capacity : s;
  }

  const Game& game_of(int64_t id) const { return games_[static_cast<size_t>(game_of_[static_cast<size_t>(slot_of(id))] - oldest_game())]; }
  const uint8_t* obs_at(int64_t slot) const { return obs_.data() + slot * config_.obs_bytes; }
  int64_t action_at(int64_t slot) const { return actions_[static_cast<size_t>(slot)]; }
  float reward_at(int64_t slot) const { return rewards_[static_cast<size_t>(slot)]; }
  float root_value_at(int64_t slot) const { return root_values_[static_cast<size_t>(slot)]; }
  const float* policy_at(int64_t slot) const { return policies_.data() + slot * config_.num_actions; }

  // --- validation (each names the argument and the first offending row) -------------------------
  void check_game(const GameData& g) const {
    if (g.length < 1) throw std::invalid_argument("obs: expected a game of at least one position, got 0");
    if (g.length > config_.capacity) {
      throw std::invalid_argument("obs: expected a game of at most " + std::to_string(config_.capacity) +
                                  " positions (the capacity), got " + std::to_string(g.length));
    }
    if (g.length > kMaxId - end_id_) throw std::invalid_argument("obs: this buffer has used up its 2^62 position ids");
    check_actions(g.actions, g.length);
    check_values(g.rewards, g.length, "rewards");
    check_values(g.root_values, g.length, "root_values");
    check_policies(g.policies, g.length, "policies");
    if (!(std::abs(g.final_value) <= kMaxMagnitude)) {
      throw std::invalid_argument("final_value: expected a finite value of magnitude <= 1e25, got " + std::to_string(g.final_value));
    }
  }

  void check_ids(const int64_t* ids, int64_t n, const std::string& name) const {
    for (int64_t i = 0; i < n; ++i) {
      if (!stored(ids[i])) {
        throw std::invalid_argument(name + ": expected ids of stored positions (in [" + std::to_string(oldest_id_) + ", " +
                                    std::to_string(end_id_) + ")), got " + std::to_string(ids[i]) + " at row " +
                                    std::to_string(i) + (ids[i] >= 0 && ids[i] < oldest_id_ ? " (evicted or cleared)" : ""));
      }
    }
  }

  void check_actions(const int64_t* actions, int64_t n) const {
    for (int64_t i = 0; i < n; ++i) {
      if (actions[i] < 0 || actions[i] >= config_.num_actions) {
        throw std::invalid_argument("actions: expected integers in [0, " + std::to_string(config_.num_actions) + "), got " +
                                    std::to_string(actions[i]) + " at row " + std::to_string(i));
      }
    }
  }

  // Finite and within kMaxMagnitude (NaN fails the comparison).
  static void check_values(const float* values, int64_t n, const std::string& name) {
    for (int64_t i = 0; i < n; ++i) {
      if (!(std::abs(values[i]) <= static_cast<float>(kMaxMagnitude))) {
        throw std::invalid_argument(name + ": expected finite values of magnitude <= 1e25, got " + std::to_string(values[i]) +
                                    " at row " + std::to_string(i));
      }
    }
  }

  void check_policies(const float* policies, int64_t n, const std::string& name) const {
    const int64_t a = config_.num_actions;
    for (int64_t i = 0; i < n; ++i) {
      double sum = 0.0;
      for (int64_t k = 0; k < a; ++k) {
        const float p = policies[i * a + k];
        if (!(p >= 0.0f && std::isfinite(p))) {
          throw std::invalid_argument(name + ": expected finite probabilities >= 0, got " + std::to_string(p) + " at row " +
                                      std::to_string(i));
        }
        sum += p;
      }
      if (!(std::abs(sum - 1.0) <= kPolicyTolerance)) {
        throw std::invalid_argument(name + ": expected rows summing to 1 (within 1e-3), got a sum of " + std::to_string(sum) +
                                    " at row " + std::to_string(i));
      }
    }
  }

  // --- changes ---------------------------------------------------------------------------------
  // The oldest id left once a game of `length` positions (<= capacity) has made room for itself.
  int64_t oldest_after(int64_t length) const {
    int64_t oldest = oldest_id_;
    for (size_t g = 0; end_id_ + length - oldest > config_.capacity; ++g) oldest = games_[g].start + games_[g].length;
    return oldest;
  }

  // Validates the game, evicts whole oldest games until it fits, stores it. Returns the id of its
  // first position.
  int64_t add_game(const GameData& g) {
    check_game(g);
    const int64_t new_oldest = oldest_after(g.length);
    while (!games_.empty() && games_.front().start < new_oldest) games_.pop_front();
    oldest_id_ = new_oldest;
    const int64_t first = end_id_;
    const int64_t first_slot = slot_of(first);
    copy_in(obs_.data(), config_.obs_bytes, first_slot, g.obs, g.length);
    copy_in(actions_.data(), 1, first_slot, g.actions, g.length);
    copy_in(rewards_.data(), 1, first_slot, g.rewards, g.length);
    copy_in(root_values_.data(), 1, first_slot, g.root_values, g.length);
    copy_in(policies_.data(), config_.num_actions, first_slot, g.policies, g.length);
    for (int64_t j = 0; j < g.length; ++j) game_of_[static_cast<size_t>(wrap(first_slot, j))] = games_added_;
    games_.push_back(Game{first, g.length, g.terminated, static_cast<float>(g.final_value)});
    ++games_added_;
    end_id_ += g.length;
    return first;
  }

  // Overwrites the stored root values and policies of positions ids[0..n) in place (reanalysis);
  // everything is validated first. A repeated id takes its last row.
  void update_targets(const int64_t* ids, const float* root_values, const float* policies, int64_t n) {
    check_ids(ids, n, "indices");
    check_values(root_values, n, "root_values");
    check_policies(policies, n, "policies");
    const int64_t a = config_.num_actions;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t s = slot_of(ids[i]);
      root_values_[static_cast<size_t>(s)] = root_values[i];
      std::memcpy(policies_.data() + s * a, policies + i * a, static_cast<size_t>(a) * sizeof(float));
    }
  }

  // Observations of positions ids[0..n) into out ([n, obs_bytes]), ids validated first.
  void gather_obs(const int64_t* ids, int64_t n, uint8_t* out) const {
    check_ids(ids, n, "indices");
    const int64_t b = config_.obs_bytes;
    for (int64_t i = 0; i < n; ++i) std::memcpy(out + i * b, obs_at(slot_of(ids[i])), static_cast<size_t>(b));
  }

  // Where the games of positions ids[0..n) begin (ids of their first positions) and how long they
  // are, ids validated first: a reanalysing trainer finds positions t + j in the same game this way.
  void game_spans(const int64_t* ids, int64_t n, int64_t* starts, int64_t* lengths) const {
    check_ids(ids, n, "indices");
    for (int64_t i = 0; i < n; ++i) {
      const Game& g = game_of(ids[i]);
      starts[i] = g.start;
      lengths[i] = g.length;
    }
  }

  // Forgets every game but keeps counting ids, so ids handed out before stay stale for good.
  void clear() {
    games_.clear();
    oldest_id_ = end_id_;
  }

  // --- snapshots (save / load) ------------------------------------------------------------------
  GameStoreState state() const {
    GameStoreState s;
    s.oldest_id = oldest_id_;
    s.end_id = end_id_;
    s.games_added = games_added_;
    for (const Game& g : games_) {
      s.game_starts.push_back(g.start);
      s.game_lengths.push_back(g.length);
      s.game_terminated.push_back(g.terminated);
      s.game_final_values.push_back(g.final_value);
    }
    const size_t n = static_cast<size_t>(size());
    const size_t b = static_cast<size_t>(config_.obs_bytes);
    const size_t a = static_cast<size_t>(config_.num_actions);
    s.obs.resize(n * b);
    s.actions.resize(n);
    s.rewards.resize(n);
    s.root_values.resize(n);
    s.policies.resize(n * a);
    copy_out(obs_.data(), b, s.obs.data());
    copy_out(actions_.data(), 1, s.actions.data());
    copy_out(rewards_.data(), 1, s.rewards.data());
    copy_out(root_values_.data(), 1, s.root_values.data());
    copy_out(policies_.data(), a, s.policies.data());
    return s;
  }

  // What restore() accepts: ids below kMaxId, games that tile [oldest_id, end_id) in order within
  // the capacity, a game count consistent with them, one row per stored position in every field,
  // and positions as valid as add_game requires. Nothing is assumed of a snapshot, which may come
  // from a corrupt or hand-edited file: every bound is checked before it is used in arithmetic.
  void check(const GameStoreState& s) const {
    if (!(s.oldest_id >= 0 && s.oldest_id <= s.end_id && s.end_id <= kMaxId)) {
      throw std::invalid_argument("oldest_id, end_id: expected 0 <= oldest_id <= end_id <= 2^62, got " + std::to_string(s.oldest_id) +
                                  ", " + std::to_string(s.end_id));
    }
    const int64_t n = s.end_id - s.oldest_id;
    if (n > config_.capacity) {
      throw std::invalid_argument("end_id: expected at most capacity (" + std::to_string(config_.capacity) +
                                  ") positions stored, got " + std::to_string(n));
    }
    const size_t games = s.game_starts.size();
    if (s.game_lengths.size() != games || s.game_terminated.size() != games || s.game_final_values.size() != games) {
      throw std::invalid_argument("game_starts, game_lengths, game_terminated, game_final_values: expected equal lengths, got " +
                                  std::to_string(games) + ", " + std::to_string(s.game_lengths.size()) + ", " +
                                  std::to_string(s.game_terminated.size()) + ", " + std::to_string(s.game_final_values.size()));
    }
    // Every game, evicted ones included, had at least one position.
    const int64_t stored_games = static_cast<int64_t>(games);
    if (!(s.games_added >= stored_games && s.games_added - stored_games <= s.oldest_id)) {
      throw std::invalid_argument("games_added: expected between " + std::to_string(stored_games) + " (the games stored) and " +
                                  std::to_string(stored_games) + " + oldest_id, got " + std::to_string(s.games_added));
    }
    int64_t next = s.oldest_id;
    for (size_t g = 0; g < games; ++g) {
      if (s.game_starts[g] != next || s.game_lengths[g] < 1 || s.game_lengths[g] > s.end_id - next) {
        throw std::invalid_argument("game_starts, game_lengths: expected games of >= 1 position, back to back from oldest_id "
                                    "to end_id; game " +
                                    std::to_string(g) + " starts at " + std::to_string(s.game_starts[g]) + " with length " +
                                    std::to_string(s.game_lengths[g]));
      }
      next += s.game_lengths[g];
      if (s.game_terminated[g] > 1) {
        throw std::invalid_argument("game_terminated: expected 0 or 1, got " + std::to_string(s.game_terminated[g]) +
                                    " at row " + std::to_string(g));
      }
    }
    if (next != s.end_id) {
      throw std::invalid_argument("game_lengths: expected the games to end at end_id (" + std::to_string(s.end_id) + "), got " +
                                  std::to_string(next));
    }
    check_values(s.game_final_values.data(), stored_games, "game_final_values");
    // n <= capacity, so these products are within the limits the constructor checked.
    const size_t un = static_cast<size_t>(n);
    auto rows = [&](size_t got, size_t width, const char* name) {
      if (got != un * width) {
        throw std::invalid_argument(std::string(name) + ": expected " + std::to_string(un * width) + " items (" + std::to_string(n) +
                                    " stored positions), got " + std::to_string(got));
      }
    };
    rows(s.obs.size(), static_cast<size_t>(config_.obs_bytes), "obs");
    rows(s.actions.size(), 1, "actions");
    rows(s.rewards.size(), 1, "rewards");
    rows(s.root_values.size(), 1, "root_values");
    rows(s.policies.size(), static_cast<size_t>(config_.num_actions), "policies");
    check_actions(s.actions.data(), n);
    check_values(s.rewards.data(), n, "rewards");
    check_values(s.root_values.data(), n, "root_values");
    check_policies(s.policies.data(), n, "policies");
  }

  void restore(const GameStoreState& s) {
    check(s);
    restore_checked(s);
  }

  // restore() without the validation, for an owner that has just check()ed the same state.
  void restore_checked(const GameStoreState& s) {
    oldest_id_ = s.oldest_id;
    end_id_ = s.end_id;
    games_added_ = s.games_added;
    games_.clear();
    const int64_t first_game = s.games_added - static_cast<int64_t>(s.game_starts.size());
    for (size_t g = 0; g < s.game_starts.size(); ++g) {
      const Game game{s.game_starts[g], s.game_lengths[g], s.game_terminated[g] != 0, s.game_final_values[g]};
      games_.push_back(game);
      const int64_t first_slot = slot_of(game.start);
      for (int64_t j = 0; j < game.length; ++j) game_of_[static_cast<size_t>(wrap(first_slot, j))] = first_game + static_cast<int64_t>(g);
    }
    const int64_t n = size();
    const int64_t first_slot = slot_of(oldest_id_);
    copy_in(obs_.data(), config_.obs_bytes, first_slot, s.obs.data(), n);
    copy_in(actions_.data(), 1, first_slot, s.actions.data(), n);
    copy_in(rewards_.data(), 1, first_slot, s.rewards.data(), n);
    copy_in(root_values_.data(), 1, first_slot, s.root_values.data(), n);
    copy_in(policies_.data(), config_.num_actions, first_slot, s.policies.data(), n);
  }

 private:
  int64_t oldest_game() const { return games_added_ - static_cast<int64_t>(games_.size()); }

  // Copies `rows` rows of `width` items into a ring field from slot `first` on, in at most two runs.
  template <typename T>
  void copy_in(T* ring, int64_t width, int64_t first, const T* src, int64_t rows) {
    const int64_t head = std::min(rows, config_.capacity - first);
    if (head > 0) std::memcpy(ring + first * width, src, static_cast<size_t>(head * width) * sizeof(T));
    if (rows > head) std::memcpy(ring, src + head * width, static_cast<size_t>((rows - head) * width) * sizeof(T));
  }

  // The stored positions of a ring field, oldest first.
  template <typename T>
  void copy_out(const T* ring, size_t width, T* dst) const {
    const int64_t first = slot_of(oldest_id_);
    const int64_t rows = size();
    const int64_t head = std::min(rows, config_.capacity - first);
    if (head > 0) std::memcpy(dst, ring + first * static_cast<int64_t>(width), static_cast<size_t>(head) * width * sizeof(T));
    if (rows > head) std::memcpy(dst + head * static_cast<int64_t>(width), ring, static_cast<size_t>(rows - head) * width * sizeof(T));
  }

  GameStoreConfig config_;
  int64_t oldest_id_ = 0;
  int64_t end_id_ = 0;
  int64_t games_added_ = 0;
  std::deque<Game> games_;  // the stored games, oldest first
  // Per slot, uninitialised until written: pages are committed as positions arrive.
  LargeArray<uint8_t> obs_;
  LargeArray<int64_t> actions_;
  LargeArray<float> rewards_;
  LargeArray<float> root_values_;
  LargeArray<float> policies_;
  LargeArray<int64_t> game_of_;  // number of the game (counting every game added) the slot belongs to
};

}  // namespace pymbrl::replay
