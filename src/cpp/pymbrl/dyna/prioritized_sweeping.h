// Prioritized sweeping (Sutton & Barto 2018, section 8.4; Moore & Atkeson 1993).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "pymbrl/dyna/tabular_agent.h"
#include "pymbrl/indexed_max_heap.h"

namespace pymbrl::dyna {

// Real experience only updates the model and queues its pair when |TD error| > theta; Q changes
// while sweeping: pop the pair of largest priority, update it, then queue every predecessor
// whose own TD error now exceeds theta. With a stochastic model the sweep uses the expected
// update over the empirical outcome distribution, which is what makes prioritized sweeping sound
// in stochastic environments (the book's remark after the boxed algorithm).
class PrioritizedSweeping : public TabularAgent {
 public:
  explicit PrioritizedSweeping(const DynaConfig& config)
      : TabularAgent(AgentKind::kPrioritizedSweeping, config),
        queue_(config.n_states * config.n_actions),
        predecessors_(static_cast<size_t>(config.n_states)) {}

  void update(int64_t s, int64_t a, double r, int64_t next, bool terminated) override {
    check_transition(s, a, r, next);
    check_clock();
    ++time_;
    const int64_t pair = s * n_actions() + a;
    const ObserveEffect effect = model_.observe(pair, next, r, terminated);
    if (effect.dropped >= 0) forget_predecessor(effect.dropped, pair);
    if (effect.new_next) predecessors_[static_cast<size_t>(next)].push_back(pair);
    const double priority =
        std::abs(target(Outcome{next, r, terminated, 1}) - q_[static_cast<size_t>(pair)]);
    if (priority > config_.theta) queue_.push_or_raise(pair, priority);
    plan(config_.planning_steps);
  }

  void plan(int64_t n) override {
    if (n < 0) throw std::invalid_argument(DynaConfig::bad("n", "an integer >= 0", n));
    for (int64_t i = 0; i < n && !queue_.empty(); ++i) {
      const int64_t pair = queue_.pop().key;
      double& q = q_[static_cast<size_t>(pair)];
      q += config_.alpha * (expected_target(pair, -1) - q);
      const int64_t s = pair / n_actions();
      for (int64_t pred : predecessors_[static_cast<size_t>(s)]) {
        const double priority = std::abs(expected_target(pred, s) - q_[static_cast<size_t>(pred)]);
        if (priority > config_.theta) queue_.push_or_raise(pred, priority);
      }
    }
  }

  int64_t queue_size() const { return queue_.size(); }

  void reset() override {
    TabularAgent::reset();
    queue_.clear();
    for (auto& list : predecessors_) list.clear();
  }

  DynaSnapshot snapshot() const override {
    DynaSnapshot snap = TabularAgent::snapshot();
    snap.queue = queue_.entries();
    snap.predecessors = predecessors_;
    return snap;
  }

 protected:
  void restore_extra(const DynaSnapshot& snap, const TabularModel& model) const override {
    if (!snap.last_tried.empty()) throw std::invalid_argument("last_tried: expected none for prioritized_sweeping");
    IndexedMaxHeap probe(queue_.capacity());
    probe.set_entries(snap.queue);
    for (const auto& e : snap.queue) {
      if (!model.known(e.key)) {
        throw std::invalid_argument("queue_pairs: expected pairs present in the model, got " + std::to_string(e.key));
      }
      if (!(e.priority >= 0.0)) throw std::invalid_argument("queue_priorities: expected values >= 0");
    }
    if (snap.predecessors.size() != predecessors_.size()) {
      throw std::invalid_argument("predecessor_offsets: expected one list per state");
    }
    // predecessors[s] holds each pair with an outcome into s exactly once, and nothing else.
    std::vector<std::pair<int64_t, int64_t>> edges;  // (pair, next), distinct
    for (int64_t p : model.pairs()) {
      const size_t first = edges.size();
      for (const Outcome& o : model.outcomes(p)) edges.emplace_back(p, o.next);
      std::sort(edges.begin() + static_cast<std::ptrdiff_t>(first), edges.end());
      edges.erase(std::unique(edges.begin() + static_cast<std::ptrdiff_t>(first), edges.end()), edges.end());
    }
    std::sort(edges.begin(), edges.end());
    std::vector<int64_t> listed_in(static_cast<size_t>(model.n_pairs()), -1);
    size_t listed = 0;
    for (size_t s = 0; s < snap.predecessors.size(); ++s) {
      for (int64_t pred : snap.predecessors[s]) {
        if (pred < 0 || pred >= model.n_pairs() ||
            !std::binary_search(edges.begin(), edges.end(), std::pair<int64_t, int64_t>(pred, static_cast<int64_t>(s)))) {
          throw std::invalid_argument("predecessor_pairs: expected pairs of the model that lead into state " +
                                      std::to_string(s) + ", got " + std::to_string(pred));
        }
        if (listed_in[static_cast<size_t>(pred)] == static_cast<int64_t>(s)) {
          throw std::invalid_argument("predecessor_pairs: expected each pair once per state, got " +
                                      std::to_string(pred) + " twice for state " + std::to_string(s));
        }
        listed_in[static_cast<size_t>(pred)] = static_cast<int64_t>(s);
        ++listed;
      }
    }
    if (listed != edges.size()) {
      throw std::invalid_argument("predecessor_pairs: expected every pair of the model under each state it leads into");
    }
  }
  void commit_extra(const DynaSnapshot& snap) override {
    queue_.set_entries(snap.queue);
    predecessors_ = snap.predecessors;
  }

 private:
  // Expected one-step target of `pair` under the empirical model; with into >= 0, restricted to
  // the outcomes that land in state `into` (the book's "predicted reward for S-bar, A-bar, S").
  double expected_target(int64_t pair, int64_t into) const {
    double sum = 0.0;
    int64_t count = 0;
    for (const Outcome& o : model_.outcomes(pair)) {
      if (into >= 0 && o.next != into) continue;
      const int64_t weight = std::max<int64_t>(o.count, 1);
      sum += static_cast<double>(weight) * target(o);
      count += weight;
    }
    return count > 0 ? sum / static_cast<double>(count) : 0.0;
  }

  void forget_predecessor(int64_t state, int64_t pair) {
    auto& list = predecessors_[static_cast<size_t>(state)];
    const auto it = std::find(list.begin(), list.end(), pair);
    if (it != list.end()) list.erase(it);
  }

  IndexedMaxHeap queue_;
  std::vector<std::vector<int64_t>> predecessors_;  // state -> pairs seen to lead into it
};

}  // namespace pymbrl::dyna
