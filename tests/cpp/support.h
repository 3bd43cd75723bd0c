// Shared by the test files: readable names for parameterized tests, and small agent helpers.
//
// Readable names for parameterized tests: CMake's gtest_discover_tests puts the printed
// parameter into each ctest name, and gtest's fallback is a byte dump (pointers included, so the
// names would change from build to build).
#pragma once

#include <cstdint>
#include <ostream>

#include "pymbrl/dyna/tabular_agent.h"
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
}  // namespace pymbrl::dyna
