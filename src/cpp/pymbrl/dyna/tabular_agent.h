// What every tabular Dyna agent shares: the Q table, epsilon-greedy action selection with random
// tie-breaking, a learned model, a generator, the real-step clock, argument checks and snapshots.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/dyna/limits.h"
#include "pymbrl/dyna/tabular_model.h"
#include "pymbrl/indexed_max_heap.h"
#include "pymbrl/rng.h"

namespace pymbrl::dyna {

enum class AgentKind { kDynaQ, kDynaQPlus, kPrioritizedSweeping };

inline const char* agent_kind_name(AgentKind k) {
  switch (k) {
    case AgentKind::kDynaQ: return "dyna_q";
    case AgentKind::kDynaQPlus: return "dyna_q_plus";
    case AgentKind::kPrioritizedSweeping: return "prioritized_sweeping";
  }
  return "?";
}

// Defaults: Sutton & Barto (2018), section 8.2, Figure 8.2 (alpha 0.1, gamma 0.95, epsilon 0.1,
// n = 5); kappa 1e-3 within the 1e-4..1e-3 used for Figures 8.4/8.5; theta 1e-4 (section 8.4).
struct DynaConfig {
  int64_t n_states = 0;
  int64_t n_actions = 0;
  double alpha = 0.1;
  double gamma = 0.95;
  double epsilon = 0.1;
  int64_t planning_steps = 5;
  ModelKind model = ModelKind::kDeterministic;
  double kappa = 1e-3;
  double theta = 1e-4;
  uint64_t seed = 0;

  void validate(AgentKind kind) const {
    if (n_states < 1) throw std::invalid_argument(bad("n_states", "an integer >= 1", n_states));
    if (n_actions < 1) throw std::invalid_argument(bad("n_actions", "an integer >= 1", n_actions));
    if (n_states > kMaxPairs / n_actions) {
      throw std::invalid_argument("n_states * n_actions: expected at most 2**28, got " +
                                  std::to_string(n_states) + " * " + std::to_string(n_actions));
    }
    if (!(alpha > 0.0 && alpha <= 1.0)) throw std::invalid_argument(bad("alpha", "a value in (0, 1]", alpha));
    if (!(gamma >= 0.0 && gamma <= 1.0)) throw std::invalid_argument(bad("gamma", "a value in [0, 1]", gamma));
    if (!(epsilon >= 0.0 && epsilon <= 1.0)) throw std::invalid_argument(bad("epsilon", "a value in [0, 1]", epsilon));
    // Prioritized sweeping updates Q only while sweeping (S&B section 8.4), so with no sweeps
    // it would never learn; refuse rather than silently do nothing.
    const int64_t min_steps = kind == AgentKind::kPrioritizedSweeping ? 1 : 0;
    if (planning_steps < min_steps) {
      throw std::invalid_argument(bad("planning_steps", min_steps ? "an integer >= 1" : "an integer >= 0", planning_steps));
    }
    if (!(kappa >= 0.0 && kappa <= kMaxKappa)) throw std::invalid_argument(bad("kappa", "a value in [0, 1e100]", kappa));
    if (!(theta >= 0.0 && std::isfinite(theta))) throw std::invalid_argument(bad("theta", "a finite value >= 0", theta));
  }

  template <typename T>
  static std::string bad(const char* name, const char* expected, T got) {
    return std::string(name) + ": expected " + expected + ", got " + std::to_string(got);
  }
};

// Everything an agent has learned plus its generator and clock: restoring it makes the agent
// continue exactly as the original would have.
struct DynaSnapshot {
  std::vector<double> q;                          // [n_states * n_actions]
  Rng::State rng{};
  int64_t time = 0;                               // real steps taken
  std::vector<int64_t> model_pairs;               // pairs in order of first appearance
  std::vector<std::vector<Outcome>> model_outcomes;  // one list per entry of model_pairs
  std::vector<int64_t> last_tried;                // Dyna-Q+: [n_pairs]; empty otherwise
  std::vector<IndexedMaxHeap::Entry> queue;       // prioritized sweeping: heap order
  std::vector<std::vector<int64_t>> predecessors;  // prioritized sweeping: [n_states] lists
};

class TabularAgent {
 public:
  TabularAgent(AgentKind kind, const DynaConfig& config)
      : kind_(kind),
        config_((config.validate(kind), config)),
        q_(static_cast<size_t>(config.n_states * config.n_actions), 0.0),
        model_(config.n_states, config.n_actions, config.model),
        rng_(config.seed) {}
  virtual ~TabularAgent() = default;

  AgentKind kind() const { return kind_; }
  const DynaConfig& config() const { return config_; }
  int64_t n_states() const { return config_.n_states; }
  int64_t n_actions() const { return config_.n_actions; }
  int64_t time() const { return time_; }
  const TabularModel& model() const { return model_; }
  // Stable for the agent's lifetime: the Python layer exposes it as a zero-copy array.
  double* q_data() { return q_.data(); }
  const std::vector<double>& q() const { return q_; }

  void check_state(int64_t s, const char* name = "state") const {
    if (s < 0 || s >= n_states()) {
      throw std::invalid_argument(std::string(name) + ": expected an integer in [0, " +
                                  std::to_string(n_states()) + "), got " + std::to_string(s));
    }
  }
  void check_action(int64_t a) const {
    if (a < 0 || a >= n_actions()) {
      throw std::invalid_argument("action: expected an integer in [0, " +
                                  std::to_string(n_actions()) + "), got " + std::to_string(a));
    }
  }
  static void check_reward(double r) {
    if (!(std::abs(r) <= kMaxReward)) {
      throw std::invalid_argument("reward: expected a finite number with |reward| <= 1e100, got " + number_text(r));
    }
  }
  // Text that round-trips (std::to_string prints 1e-300 as 0.000000 and 1e300 with 301 digits).
  static std::string number_text(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
  }

  // Greedy action, ties broken uniformly at random (so an untrained agent does not always take
  // action 0, which can trap it against a wall forever).
  int64_t greedy(int64_t s) {
    const double* row = &q_[static_cast<size_t>(s * n_actions())];
    double best = row[0];
    int64_t chosen = 0;
    int64_t ties = 1;
    for (int64_t a = 1; a < n_actions(); ++a) {
      if (row[a] > best) {
        best = row[a];
        chosen = a;
        ties = 1;
      } else if (row[a] == best) {
        // Reservoir sampling over the tied maxima: each ends up chosen with probability 1/ties.
        ++ties;
        if (rng_.uniform_int(static_cast<uint64_t>(ties)) == 0) chosen = a;
      }
    }
    return chosen;
  }

  int64_t act(int64_t s) {
    if (config_.epsilon > 0.0 && rng_.uniform() < config_.epsilon) {
      return static_cast<int64_t>(rng_.uniform_int(static_cast<uint64_t>(n_actions())));
    }
    return greedy(s);
  }

  // One real transition: direct RL, model learning, then planning_steps of planning.
  virtual void update(int64_t s, int64_t a, double r, int64_t next, bool terminated) = 0;
  // n planning updates from the model (n sweeps from the queue for prioritized sweeping).
  virtual void plan(int64_t n) = 0;

  void check_transition(int64_t s, int64_t a, double r, int64_t next) const {
    check_state(s);
    check_action(a);
    check_reward(r);
    check_state(next, "next_state");
  }
  // Called under the agent's lock by update(), before anything changes.
  void check_clock() const {
    if (time_ >= kMaxTime) throw std::invalid_argument("time: expected fewer than 2**53 real steps per agent");
  }

  // Back to the freshly constructed agent, generator included.
  virtual void reset() {
    std::fill(q_.begin(), q_.end(), 0.0);
    model_.clear();
    rng_.reseed(config_.seed);
    time_ = 0;
  }

  virtual DynaSnapshot snapshot() const {
    DynaSnapshot snap;
    snap.q = q_;
    snap.rng = rng_.state();
    snap.time = time_;
    snap.model_pairs = model_.pairs();
    for (int64_t p : model_.pairs()) snap.model_outcomes.push_back(model_.outcomes(p));
    return snap;
  }

  // Validates the whole snapshot before changing anything: a rejected restore leaves the agent
  // exactly as it was.
  void restore(const DynaSnapshot& snap) {
    if (snap.q.size() != q_.size()) {
      throw std::invalid_argument("q: expected " + std::to_string(q_.size()) + " values, got " +
                                  std::to_string(snap.q.size()));
    }
    for (size_t i = 0; i < snap.q.size(); ++i) {
      if (!(std::abs(snap.q[i]) <= kMaxAbsQ)) {
        throw std::invalid_argument("q: expected finite values with |q| <= 1e200, got " + number_text(snap.q[i]) +
                                    " at index " + std::to_string(i));
      }
    }
    if (snap.rng[0] == 0 && snap.rng[1] == 0 && snap.rng[2] == 0 && snap.rng[3] == 0) {
      throw std::invalid_argument("rng: expected a non-zero generator state");
    }
    if (snap.time < 0 || snap.time > kMaxTime) {
      throw std::invalid_argument(DynaConfig::bad("time", "an integer in [0, 2**53]", snap.time));
    }
    TabularModel model(config_.n_states, config_.n_actions, config_.model);
    model.restore(snap.model_pairs, snap.model_outcomes, snap.time, kind_ == AgentKind::kDynaQPlus);
    restore_extra(snap, model);  // throws before anything is assigned
    std::copy(snap.q.begin(), snap.q.end(), q_.begin());  // in place: keeps the Python view valid
    rng_.set_state(snap.rng);
    time_ = snap.time;
    model_ = std::move(model);
    commit_extra(snap);
  }

 protected:
  // Subclasses validate (restore_extra) and then apply (commit_extra) their own state.
  virtual void restore_extra(const DynaSnapshot& snap, const TabularModel& model) const = 0;
  virtual void commit_extra(const DynaSnapshot& snap) = 0;

  double max_q(int64_t s) const {
    const double* row = &q_[static_cast<size_t>(s * n_actions())];
    double best = row[0];
    for (int64_t a = 1; a < n_actions(); ++a) best = row[a] > best ? row[a] : best;
    return best;
  }

  // Value of an outcome: r + gamma * max_a Q(next, a), with no bootstrap after termination.
  double target(const Outcome& o) const {
    return o.reward + (o.terminated ? 0.0 : config_.gamma * max_q(o.next));
  }

  AgentKind kind_;
  DynaConfig config_;
  std::vector<double> q_;
  TabularModel model_;
  Rng rng_;
  int64_t time_ = 0;
};

}  // namespace pymbrl::dyna
