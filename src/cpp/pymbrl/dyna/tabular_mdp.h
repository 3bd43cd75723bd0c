// A finite MDP given by its transition table, optionally changing at given real time steps (the
// book's blocking and shortcut mazes change their walls mid-experiment).
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/dyna/limits.h"
#include "pymbrl/rng.h"

namespace pymbrl::dyna {

struct Transition {
  double prob = 0.0;
  int64_t next = 0;
  double reward = 0.0;
  bool terminated = false;
};

// p(s', r, terminated | s, a) as a list of outcomes per pair (CSR layout), plus the distribution
// of the initial state.
class TransitionTable {
 public:
  // offsets: [n_states * n_actions + 1], transitions[offsets[p]:offsets[p+1]] are pair p's
  // outcomes. Probabilities of each pair and of `initial` must sum to 1 (within 1e-6).
  TransitionTable(int64_t n_states, int64_t n_actions, std::vector<int64_t> offsets,
                  std::vector<Transition> transitions, std::vector<double> initial)
      : n_states_(n_states),
        n_actions_(n_actions),
        offsets_(std::move(offsets)),
        transitions_(std::move(transitions)),
        initial_(std::move(initial)) {
    validate();
  }

  int64_t n_states() const { return n_states_; }
  int64_t n_actions() const { return n_actions_; }
  const std::vector<int64_t>& offsets() const { return offsets_; }
  const std::vector<Transition>& transitions() const { return transitions_; }
  const std::vector<double>& initial() const { return initial_; }

  int64_t sample_initial(Rng& rng) const {
    double u = rng.uniform();
    for (int64_t s = 0; s < n_states_; ++s) {
      u -= initial_[static_cast<size_t>(s)];
      if (u < 0.0 && initial_[static_cast<size_t>(s)] > 0.0) return s;
    }
    return last_initial_;  // rounding left u >= 0: the last state with mass
  }

  const Transition& sample(int64_t s, int64_t a, Rng& rng) const {
    const int64_t p = s * n_actions_ + a;
    const int64_t lo = offsets_[static_cast<size_t>(p)];
    const int64_t hi = offsets_[static_cast<size_t>(p) + 1];
    if (hi - lo == 1) return transitions_[static_cast<size_t>(lo)];
    double u = rng.uniform();
    int64_t last = lo;
    for (int64_t i = lo; i < hi; ++i) {
      const Transition& t = transitions_[static_cast<size_t>(i)];
      if (t.prob <= 0.0) continue;
      last = i;
      u -= t.prob;
      if (u < 0.0) return t;
    }
    return transitions_[static_cast<size_t>(last)];
  }

 private:
  void validate() {
    if (n_states_ < 1) throw std::invalid_argument("n_states: expected an integer >= 1, got " + std::to_string(n_states_));
    if (n_actions_ < 1) throw std::invalid_argument("n_actions: expected an integer >= 1, got " + std::to_string(n_actions_));
    if (n_states_ > kMaxPairs / n_actions_) {
      throw std::invalid_argument("n_states * n_actions: expected at most 2**28, got " + std::to_string(n_states_) +
                                  " * " + std::to_string(n_actions_));
    }
    const size_t n_pairs = static_cast<size_t>(n_states_ * n_actions_);
    if (offsets_.size() != n_pairs + 1 || offsets_.front() != 0 ||
        offsets_.back() != static_cast<int64_t>(transitions_.size())) {
      throw std::invalid_argument("offsets: expected n_states * n_actions + 1 offsets from 0 to the number of transitions");
    }
    // Checked in full before any per-pair read, so no offset can index past the transitions.
    for (size_t p = 0; p < n_pairs; ++p) {
      if (offsets_[p + 1] < offsets_[p]) throw std::invalid_argument("offsets: expected non-decreasing offsets");
    }
    for (size_t p = 0; p < n_pairs; ++p) {
      if (offsets_[p + 1] <= offsets_[p]) {
        throw std::invalid_argument("transitions: expected at least one outcome for state " +
                                    std::to_string(p / static_cast<size_t>(n_actions_)) + ", action " +
                                    std::to_string(p % static_cast<size_t>(n_actions_)));
      }
      double total = 0.0;
      for (int64_t i = offsets_[p]; i < offsets_[p + 1]; ++i) {
        const Transition& t = transitions_[static_cast<size_t>(i)];
        if (!(t.prob >= 0.0 && t.prob <= 1.0)) throw std::invalid_argument("transitions: expected probabilities in [0, 1]");
        if (t.next < 0 || t.next >= n_states_) {
          throw std::invalid_argument("transitions: expected next states in [0, " + std::to_string(n_states_) +
                                      "), got " + std::to_string(t.next));
        }
        if (!std::isfinite(t.reward)) throw std::invalid_argument("transitions: expected finite rewards");
        total += t.prob;
      }
      if (std::abs(total - 1.0) > 1e-6) {
        throw std::invalid_argument("transitions: expected probabilities summing to 1 for state " +
                                    std::to_string(p / static_cast<size_t>(n_actions_)) + ", action " +
                                    std::to_string(p % static_cast<size_t>(n_actions_)) + ", got " + std::to_string(total));
      }
    }
    if (initial_.size() != static_cast<size_t>(n_states_)) {
      throw std::invalid_argument("initial: expected n_states probabilities, got " + std::to_string(initial_.size()));
    }
    double total = 0.0;
    for (size_t s = 0; s < initial_.size(); ++s) {
      if (!(initial_[s] >= 0.0 && initial_[s] <= 1.0)) throw std::invalid_argument("initial: expected probabilities in [0, 1]");
      total += initial_[s];
      if (initial_[s] > 0.0) last_initial_ = static_cast<int64_t>(s);
    }
    if (std::abs(total - 1.0) > 1e-6) {
      throw std::invalid_argument("initial: expected probabilities summing to 1, got " + std::to_string(total));
    }
  }

  int64_t n_states_;
  int64_t n_actions_;
  std::vector<int64_t> offsets_;
  std::vector<Transition> transitions_;
  std::vector<double> initial_;
  int64_t last_initial_ = 0;
};

// A sequence of transition tables: phase k governs real steps [starts[k], starts[k+1]).
class TabularMDP {
 public:
  TabularMDP(std::vector<std::shared_ptr<const TransitionTable>> phases, std::vector<int64_t> starts)
      : phases_(std::move(phases)), starts_(std::move(starts)) {
    if (phases_.empty() || phases_.size() != starts_.size() || starts_.front() != 0) {
      throw std::invalid_argument("phases: expected one or more tables, the first starting at step 0");
    }
    for (size_t k = 1; k < phases_.size(); ++k) {
      if (starts_[k] <= starts_[k - 1]) throw std::invalid_argument("starts: expected strictly increasing steps");
      if (phases_[k]->n_states() != n_states() || phases_[k]->n_actions() != n_actions()) {
        throw std::invalid_argument("phases: expected every table to have the same numbers of states and actions");
      }
    }
  }
  // One phase needs none of the checks between phases (delegating made GCC 12 warn falsely).
  explicit TabularMDP(std::shared_ptr<const TransitionTable> table) : phases_{std::move(table)}, starts_{0} {
    if (!phases_.front()) throw std::invalid_argument("table: expected a transition table, got null");
  }

  int64_t n_states() const { return phases_.front()->n_states(); }
  int64_t n_actions() const { return phases_.front()->n_actions(); }
  const std::vector<std::shared_ptr<const TransitionTable>>& phases() const { return phases_; }
  const std::vector<int64_t>& starts() const { return starts_; }

  // The table in force after `step` real steps.
  const TransitionTable& at(int64_t step) const {
    size_t k = phases_.size() - 1;
    while (starts_[k] > step) --k;
    return *phases_[k];
  }

 private:
  std::vector<std::shared_ptr<const TransitionTable>> phases_;
  std::vector<int64_t> starts_;
};

// True when, in every phase, every state the process can reach (from any phase's initial states,
// under any phase's transitions) keeps a path to termination. Then an agent that gives every action
// a positive probability ends each episode with probability 1; otherwise it may wander forever.
inline bool termination_always_reachable(const TabularMDP& mdp) {
  const int64_t n_states = mdp.n_states();
  const int64_t n_actions = mdp.n_actions();
  std::vector<char> reached(static_cast<size_t>(n_states), 0);
  std::vector<int64_t> stack;
  auto visit = [&](std::vector<char>& seen, int64_t s) {
    if (!seen[static_cast<size_t>(s)]) {
      seen[static_cast<size_t>(s)] = 1;
      stack.push_back(s);
    }
  };
  for (const auto& table : mdp.phases()) {
    for (int64_t s = 0; s < n_states; ++s) {
      if (table->initial()[static_cast<size_t>(s)] > 0.0) visit(reached, s);
    }
  }
  while (!stack.empty()) {
    const int64_t s = stack.back();
    stack.pop_back();
    for (const auto& table : mdp.phases()) {
      for (int64_t i = table->offsets()[static_cast<size_t>(s * n_actions)];
           i < table->offsets()[static_cast<size_t>((s + 1) * n_actions)]; ++i) {
        const Transition& t = table->transitions()[static_cast<size_t>(i)];
        if (t.prob > 0.0 && !t.terminated) visit(reached, t.next);
      }
    }
  }
  for (const auto& table : mdp.phases()) {
    std::vector<std::vector<int64_t>> predecessors(static_cast<size_t>(n_states));
    std::vector<char> can_end(static_cast<size_t>(n_states), 0);
    for (int64_t s = 0; s < n_states; ++s) {
      for (int64_t i = table->offsets()[static_cast<size_t>(s * n_actions)];
           i < table->offsets()[static_cast<size_t>((s + 1) * n_actions)]; ++i) {
        const Transition& t = table->transitions()[static_cast<size_t>(i)];
        if (t.prob <= 0.0) continue;
        if (t.terminated) {
          visit(can_end, s);
        } else {
          predecessors[static_cast<size_t>(t.next)].push_back(s);
        }
      }
    }
    while (!stack.empty()) {
      const int64_t s = stack.back();
      stack.pop_back();
      for (int64_t pred : predecessors[static_cast<size_t>(s)]) visit(can_end, pred);
    }
    for (int64_t s = 0; s < n_states; ++s) {
      if (reached[static_cast<size_t>(s)] && !can_end[static_cast<size_t>(s)]) return false;
    }
  }
  return true;
}

}  // namespace pymbrl::dyna
