// Shared by the test files: readable names for parameterized tests, and small agent helpers.
//
// Readable names for parameterized tests: CMake's gtest_discover_tests puts the printed
// parameter into each ctest name, and gtest's fallback is a byte dump (pointers included, so the
// names would change from build to build).
#pragma once

#include <cstdint>
#include <ostream>

#include <memory>
#include <vector>

#include "pymbrl/dyna/tabular_agent.h"
#include "pymbrl/dyna/tabular_mdp.h"
#include "pymbrl/rng.h"
#include "pymbrl/dyna/tabular_model.h"
#include "pymbrl/indexed_max_heap.h"

namespace pymbrl {
inline void PrintTo(const IndexedMaxHeap::Entry& e, std::ostream* os) { *os << "{" << e.key << ":" << e.priority << "}"; }
}  // namespace pymbrl

namespace pymbrl::dyna {
inline void PrintTo(AgentKind k, std::ostream* os) { *os << agent_kind_name(k); }
inline void PrintTo(ModelKind k, std::ostream* os) {
  *os << (k == ModelKind::kDeterministic ? "deterministic" : "stochastic");
}
}  // namespace pymbrl::dyna

namespace pymbrl::dyna {
// Epsilon 0, so hand-checked updates involve no exploration draws.
inline DynaConfig greedy_config(int64_t n_states, int64_t n_actions, double alpha, int64_t planning_steps,
                                uint64_t seed) {
  DynaConfig c;
  c.n_states = n_states;
  c.n_actions = n_actions;
  c.alpha = alpha;
  c.epsilon = 0.0;
  c.planning_steps = planning_steps;
  c.seed = seed;
  return c;
}

inline double q_at(const TabularAgent& agent, int64_t s, int64_t a) {
  return agent.q()[static_cast<size_t>(s * agent.n_actions() + a)];
}

// A transition table from one outcome list per (state, action) pair, in pair order.
inline std::shared_ptr<const TransitionTable> table(int64_t n_states, int64_t n_actions,
                                             const std::vector<std::vector<Transition>>& per_pair,
                                             std::vector<double> initial) {
  std::vector<int64_t> offsets{0};
  std::vector<Transition> flat;
  for (const auto& list : per_pair) {
    flat.insert(flat.end(), list.begin(), list.end());
    offsets.push_back(static_cast<int64_t>(flat.size()));
  }
  return std::make_shared<const TransitionTable>(n_states, n_actions, offsets, flat, std::move(initial));
}

// Feeds an agent random transitions (integer rewards centred on 0, reward_levels of them; the last
// state terminates) and returns the actions it chose: agents that behave alike return equal lists.
inline std::vector<int64_t> drive(TabularAgent& agent, Rng& env_rng, int steps, int64_t reward_levels = 3) {
  std::vector<int64_t> actions;
  int64_t s = 0;
  for (int i = 0; i < steps; ++i) {
    const int64_t a = agent.act(s);
    actions.push_back(a);
    const int64_t next = static_cast<int64_t>(env_rng.uniform_int(static_cast<uint64_t>(agent.n_states())));
    const double r = static_cast<double>(static_cast<int64_t>(env_rng.uniform_int(static_cast<uint64_t>(reward_levels))) -
                                         reward_levels / 2);
    const bool terminated = next == agent.n_states() - 1;
    agent.update(s, a, r, next, terminated);
    s = terminated ? 0 : next;
  }
  return actions;
}
}  // namespace pymbrl::dyna
