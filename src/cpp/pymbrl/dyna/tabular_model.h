// A learned tabular model of the environment: for each (state, action) pair seen so far, what
// followed. Deterministic models keep the last outcome (Sutton & Barto's Tabular Dyna-Q);
// stochastic models keep counts of distinct outcomes and sample from the empirical distribution.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "pymbrl/dyna/limits.h"
#include "pymbrl/rng.h"

namespace pymbrl::dyna {

enum class ModelKind { kDeterministic, kStochastic };

struct Outcome {
  int64_t next = -1;
  double reward = 0.0;
  bool terminated = false;
  // Times observed. 0 marks an assumed outcome (Dyna-Q+'s "untried actions loop back with
  // reward 0") that the first real observation replaces.
  int64_t count = 0;
};

// What an observation changed, for agents that keep predecessor lists.
struct ObserveEffect {
  bool new_next = false;   // `next` was not a known successor of the pair before
  int64_t dropped = -1;    // a successor that the pair no longer reaches (deterministic), or -1
};

class TabularModel {
 public:
  TabularModel(int64_t n_states, int64_t n_actions, ModelKind kind)
      : n_states_(n_states),
        n_actions_(n_actions),
        kind_(kind),
        outcomes_(static_cast<size_t>(n_states * n_actions)),
        slot_(static_cast<size_t>(n_states * n_actions), -1) {}

  ModelKind kind() const { return kind_; }
  int64_t n_states() const { return n_states_; }
  int64_t n_actions() const { return n_actions_; }
  int64_t n_pairs() const { return n_states_ * n_actions_; }

  bool known(int64_t pair) const { return slot_[static_cast<size_t>(pair)] >= 0; }
  bool tried(int64_t pair) const {
    const auto& o = outcomes_[static_cast<size_t>(pair)];
    return !o.empty() && o.front().count > 0;
  }
  // Pairs with a model entry, in the order they first appeared (the order matters for
  // reproducing a sampling stream after a save and load).
  const std::vector<int64_t>& pairs() const { return pairs_; }
  const std::vector<Outcome>& outcomes(int64_t pair) const {
    return outcomes_[static_cast<size_t>(pair)];
  }

  ObserveEffect observe(int64_t pair, int64_t next, double reward, bool terminated) {
    register_pair(pair);
    auto& list = outcomes_[static_cast<size_t>(pair)];
    ObserveEffect effect;
    if (list.empty() || list.front().count == 0 || kind_ == ModelKind::kDeterministic) {
      const int64_t before = list.empty() ? -1 : list.front().next;
      list.assign(1, Outcome{next, reward, terminated, 1});
      effect.new_next = before != next;
      effect.dropped = before != next ? before : -1;
      return effect;
    }
    bool next_seen = false;
    for (Outcome& o : list) {
      if (o.next == next && o.reward == reward && o.terminated == terminated) {
        ++o.count;
        return effect;
      }
      next_seen = next_seen || o.next == next;
    }
    list.push_back(Outcome{next, reward, terminated, 1});
    effect.new_next = !next_seen;
    return effect;
  }

  // Dyna-Q+: an untried action from a visited state is assumed to lead back to the same state
  // with reward 0, until it is tried. No-op if the pair already has a model entry.
  void assume_self_loop(int64_t pair) {
    if (known(pair)) return;
    register_pair(pair);
    outcomes_[static_cast<size_t>(pair)].assign(1, Outcome{pair / n_actions_, 0.0, false, 0});
  }

  // A pair with a model entry, uniformly at random: O(1).
  int64_t sample_pair(Rng& rng) const {
    return pairs_[static_cast<size_t>(rng.uniform_int(pairs_.size()))];
  }

  // An outcome of a known pair, drawn from the empirical distribution (by counts).
  const Outcome& sample(int64_t pair, Rng& rng) const {
    const auto& list = outcomes_[static_cast<size_t>(pair)];
    if (list.size() == 1) return list.front();
    int64_t total = 0;
    for (const Outcome& o : list) total += o.count;
    int64_t u = static_cast<int64_t>(rng.uniform_int(static_cast<uint64_t>(total)));
    for (const Outcome& o : list) {
      u -= o.count;
      if (u < 0) return o;
    }
    return list.back();
  }

  void clear() {
    for (int64_t p : pairs_) {
      outcomes_[static_cast<size_t>(p)].clear();
      slot_[static_cast<size_t>(p)] = -1;
    }
    pairs_.clear();
  }

  // Replaces the whole model from a snapshot (pair order + per-pair outcome lists). Validates
  // everything first and throws std::invalid_argument without changing the model. The invariants
  // are those observe() and assume_self_loop() keep: a deterministic pair has one outcome of count
  // 1; a stochastic pair has distinct outcomes of positive count; count 0 marks a lone assumed
  // self-loop of reward 0 (only where `allow_assumed`); all counts together are at most
  // `max_total_count` (one per real step).
  void restore(const std::vector<int64_t>& pairs, const std::vector<std::vector<Outcome>>& lists,
               int64_t max_total_count, bool allow_assumed) {
    if (pairs.size() != lists.size()) {
      throw std::invalid_argument("model_offsets: expected one outcome list per entry of model_pairs");
    }
    std::vector<int64_t> slot(static_cast<size_t>(n_pairs()), -1);
    int64_t total = 0;
    for (size_t i = 0; i < pairs.size(); ++i) {
      const int64_t p = pairs[i];
      if (p < 0 || p >= n_pairs()) {
        throw std::invalid_argument("model_pairs: expected values in [0, " +
                                    std::to_string(n_pairs()) + "), got " + std::to_string(p));
      }
      if (slot[static_cast<size_t>(p)] >= 0) {
        throw std::invalid_argument("model_pairs: expected each pair once, got " +
                                    std::to_string(p) + " twice");
      }
      slot[static_cast<size_t>(p)] = static_cast<int64_t>(i);
      const auto& list = lists[i];
      if (list.empty() || (kind_ == ModelKind::kDeterministic && list.size() != 1)) {
        throw std::invalid_argument(
            "model_offsets: expected " +
            std::string(kind_ == ModelKind::kDeterministic ? "exactly one outcome"
                                                           : "at least one outcome") +
            " for pair " + std::to_string(p) + ", got " + std::to_string(list.size()));
      }
      for (const Outcome& o : list) {
        if (o.next < 0 || o.next >= n_states_) {
          throw std::invalid_argument("model_next: expected states in [0, " +
                                      std::to_string(n_states_) + "), got " +
                                      std::to_string(o.next));
        }
        if (!(std::abs(o.reward) <= kMaxReward)) {
          throw std::invalid_argument("model_reward: expected finite rewards with |reward| <= 1e100");
        }
        if (o.count == 0) {
          if (!allow_assumed || list.size() != 1 || o.next != p / n_actions_ || o.reward != 0.0 || o.terminated) {
            throw std::invalid_argument(
                "model_count: expected positive counts (0 only for Dyna-Q+'s lone assumed self-loop of reward 0)"
                ", got 0 for pair " + std::to_string(p));
          }
        } else if (o.count < 0 || (kind_ == ModelKind::kDeterministic && o.count != 1)) {
          throw std::invalid_argument(std::string("model_count: expected ") +
                                      (kind_ == ModelKind::kDeterministic ? "1" : "a positive count") +
                                      " for pair " + std::to_string(p) + ", got " + std::to_string(o.count));
        }
        if (o.count > max_total_count - total) {
          throw std::invalid_argument("model_count: expected counts summing to at most time (" +
                                      std::to_string(max_total_count) + ")");
        }
        total += o.count;
      }
      if (list.size() > 1) check_distinct(p, list);
    }
    std::vector<std::vector<Outcome>> outcomes(static_cast<size_t>(n_pairs()));
    for (size_t i = 0; i < pairs.size(); ++i) outcomes[static_cast<size_t>(pairs[i])] = lists[i];
    outcomes_ = std::move(outcomes);
    slot_ = std::move(slot);
    pairs_ = pairs;
  }

 private:
  // observe() merges equal outcomes, so a stochastic list never holds one twice.
  static void check_distinct(int64_t pair, const std::vector<Outcome>& list) {
    std::vector<Outcome> sorted(list);
    auto key = [](const Outcome& o) { return std::make_tuple(o.next, o.reward, o.terminated); };
    std::sort(sorted.begin(), sorted.end(), [&](const Outcome& a, const Outcome& b) { return key(a) < key(b); });
    for (size_t i = 1; i < sorted.size(); ++i) {
      if (key(sorted[i - 1]) == key(sorted[i])) {
        throw std::invalid_argument("model_next: expected distinct (next, reward, terminated) outcomes for pair " +
                                    std::to_string(pair));
      }
    }
  }

  void register_pair(int64_t pair) {
    int64_t& s = slot_[static_cast<size_t>(pair)];
    if (s >= 0) return;
    s = static_cast<int64_t>(pairs_.size());
    pairs_.push_back(pair);
  }

  int64_t n_states_;
  int64_t n_actions_;
  ModelKind kind_;
  std::vector<std::vector<Outcome>> outcomes_;  // per pair; empty when unknown
  std::vector<int64_t> slot_;                   // pair -> index in pairs_, or -1
  std::vector<int64_t> pairs_;
};

}  // namespace pymbrl::dyna
