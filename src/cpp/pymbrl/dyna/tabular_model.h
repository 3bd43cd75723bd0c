// A learned tabular model of the environment: for each (state, action) pair seen so far, what
// followed. Deterministic models keep the last outcome (Sutton & Barto's Tabular Dyna-Q);
// stochastic models keep counts of distinct outcomes and sample from the empirical distribution.
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

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
  // everything first and throws std::invalid_argument without changing the model.
  void restore(const std::vector<int64_t>& pairs, const std::vector<std::vector<Outcome>>& lists) {
    if (pairs.size() != lists.size()) {
      throw std::invalid_argument("model: expected one outcome list per pair");
    }
    std::vector<int64_t> slot(static_cast<size_t>(n_pairs()), -1);
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
            "model_outcomes: expected " +
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
        if (!std::isfinite(o.reward)) {
          throw std::invalid_argument("model_reward: expected finite rewards");
        }
        const bool assumed = o.count == 0;
        if (o.count < 0 || (assumed && list.size() != 1)) {
          throw std::invalid_argument(
              "model_count: expected positive counts (0 only for a lone assumed outcome)");
        }
      }
    }
    std::vector<std::vector<Outcome>> outcomes(static_cast<size_t>(n_pairs()));
    for (size_t i = 0; i < pairs.size(); ++i) outcomes[static_cast<size_t>(pairs[i])] = lists[i];
    outcomes_ = std::move(outcomes);
    slot_ = std::move(slot);
    pairs_ = pairs;
  }

 private:
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
