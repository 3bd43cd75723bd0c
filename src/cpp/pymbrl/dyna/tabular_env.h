// A tabular environment: one episode stream over a TabularMDP, with its own generator and its
// own real-step clock (which decides the phase of a changing MDP). The C++ runner and the Python
// TabularEnv both step through this class, so they see identical dynamics for the same seed.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "pymbrl/dyna/tabular_mdp.h"
#include "pymbrl/rng.h"

namespace pymbrl::dyna {

class TabularEnv {
 public:
  struct Step {
    int64_t next;
    double reward;
    bool terminated;
  };

  TabularEnv(std::shared_ptr<const TabularMDP> mdp, uint64_t seed) : mdp_(std::move(mdp)), rng_(seed) {}

  const TabularMDP& mdp() const { return *mdp_; }
  int64_t state() const { return state_; }
  int64_t steps() const { return steps_; }

  void reseed(uint64_t seed) { rng_.reseed(seed); }
  int64_t reset() {
    state_ = mdp_->at(steps_).sample_initial(rng_);
    return state_;
  }
  Step step(int64_t action) {
    if (state_ < 0) throw std::invalid_argument("action: reset() must be called before step()");
    if (action < 0 || action >= mdp_->n_actions()) {
      throw std::invalid_argument("action: expected an integer in [0, " + std::to_string(mdp_->n_actions()) +
                                  "), got " + std::to_string(action));
    }
    const Transition& t = mdp_->at(steps_).sample(state_, action, rng_);
    ++steps_;
    state_ = t.next;
    return {t.next, t.reward, t.terminated};
  }

 private:
  std::shared_ptr<const TabularMDP> mdp_;
  Rng rng_;
  int64_t state_ = -1;
  int64_t steps_ = 0;
};

}  // namespace pymbrl::dyna
