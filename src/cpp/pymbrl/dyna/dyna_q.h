// Tabular Dyna-Q and Dyna-Q+ (Sutton & Barto 2018, sections 8.2 and 8.3).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/dyna/tabular_agent.h"

namespace pymbrl::dyna {

// Dyna-Q: one-step Q-learning on real and on simulated experience; simulated (state, action)
// pairs are drawn uniformly from those seen so far. With kind == kDynaQPlus, planning adds the
// exploration bonus kappa * sqrt(tau), tau = real steps since the pair was last tried, and
// actions never tried from a visited state enter planning with an assumed self-loop of reward 0
// (the book's footnote to Figure 8.4's experiment).
class DynaQ : public TabularAgent {
 public:
  explicit DynaQ(const DynaConfig& config, AgentKind kind = AgentKind::kDynaQ)
      : TabularAgent(kind, config) {
    if (kind == AgentKind::kPrioritizedSweeping) {
      throw std::invalid_argument("kind: expected dyna_q or dyna_q_plus");
    }
    if (plus()) last_tried_.assign(q_.size(), 0);
  }

  bool plus() const { return kind_ == AgentKind::kDynaQPlus; }

  void update(int64_t s, int64_t a, double r, int64_t next, bool terminated) override {
    check_transition(s, a, r, next);
    check_clock();
    ++time_;
    const int64_t pair = s * n_actions() + a;
    q_[static_cast<size_t>(pair)] +=
        config_.alpha * (target(Outcome{next, r, terminated, 1}) - q_[static_cast<size_t>(pair)]);
    if (plus()) {
      for (int64_t b = 0; b < n_actions(); ++b) model_.assume_self_loop(s * n_actions() + b);
      last_tried_[static_cast<size_t>(pair)] = time_;
    }
    model_.observe(pair, next, r, terminated);
    plan(config_.planning_steps);
  }

  void plan(int64_t n) override {
    if (n < 0) throw std::invalid_argument(DynaConfig::bad("n", "an integer >= 0", n));
    if (model_.pairs().empty()) return;
    const double alpha = config_.alpha;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t pair = model_.sample_pair(rng_);
      double value = target(model_.sample(pair, rng_));
      if (plus()) {
        value += config_.kappa *
                 std::sqrt(static_cast<double>(time_ - last_tried_[static_cast<size_t>(pair)]));
      }
      double& q = q_[static_cast<size_t>(pair)];
      q += alpha * (value - q);
    }
  }

  void reset() override {
    TabularAgent::reset();
    std::fill(last_tried_.begin(), last_tried_.end(), 0);
  }

  DynaSnapshot snapshot() const override {
    DynaSnapshot snap = TabularAgent::snapshot();
    snap.last_tried = last_tried_;
    return snap;
  }

 protected:
  void restore_extra(const DynaSnapshot& snap, const TabularModel& model) const override {
    if (!snap.queue.empty()) throw std::invalid_argument("queue_pairs: expected none for " + std::string(agent_kind_name(kind_)));
    if (!snap.predecessors.empty()) {
      throw std::invalid_argument("predecessor_offsets: expected none for " + std::string(agent_kind_name(kind_)));
    }
    if (snap.last_tried.size() != last_tried_.size()) {
      throw std::invalid_argument("last_tried: expected " + std::to_string(last_tried_.size()) +
                                  " values, got " + std::to_string(snap.last_tried.size()));
    }
    if (!plus()) return;
    // update() makes every action of a state it acts from known (assumed until tried) and stamps
    // the tried pair with the step's time, so stamps are distinct and > 0 exactly for tried pairs.
    for (int64_t p : model.pairs()) {
      const int64_t first = p / n_actions() * n_actions();
      for (int64_t b = first; b < first + n_actions(); ++b) {
        if (!model.known(b)) {
          throw std::invalid_argument("model_pairs: expected every action of a visited state (Dyna-Q+), missing pair " +
                                      std::to_string(b));
        }
      }
    }
    std::vector<int64_t> stamps;
    for (size_t p = 0; p < snap.last_tried.size(); ++p) {
      const int64_t t = snap.last_tried[p];
      if (t < 0 || t > snap.time) {
        throw std::invalid_argument("last_tried: expected values in [0, time], got " + std::to_string(t));
      }
      if ((t > 0) != model.tried(static_cast<int64_t>(p))) {
        throw std::invalid_argument("last_tried: expected a positive step exactly for the pairs tried, got " +
                                    std::to_string(t) + " for pair " + std::to_string(p));
      }
      if (t > 0) stamps.push_back(t);
    }
    std::sort(stamps.begin(), stamps.end());
    if (std::adjacent_find(stamps.begin(), stamps.end()) != stamps.end()) {
      throw std::invalid_argument("last_tried: expected distinct steps (one pair is tried per step)");
    }
  }
  void commit_extra(const DynaSnapshot& snap) override { last_tried_ = snap.last_tried; }

 private:
  std::vector<int64_t> last_tried_;  // Dyna-Q+ only: real step at which each pair was last tried
};

}  // namespace pymbrl::dyna
