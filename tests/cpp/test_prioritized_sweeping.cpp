#include "pymbrl/dyna/prioritized_sweeping.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "pymbrl/rng.h"
#include "support.h"

namespace {

using namespace pymbrl::dyna;
using pymbrl::Rng;

DynaConfig config(int64_t n_states, int64_t n_actions) { return greedy_config(n_states, n_actions, 1.0, 1, 2); }

std::vector<std::pair<int64_t, double>> queue_of(const PrioritizedSweeping& agent) {
  std::vector<std::pair<int64_t, double>> out;
  for (const auto& e : agent.snapshot().queue) out.emplace_back(e.key, e.priority);
  return out;
}

TEST(PrioritizedSweeping, RejectsZeroPlanningSteps) {
  DynaConfig c = config(3, 2);
  c.planning_steps = 0;
  EXPECT_THROW(PrioritizedSweeping{c}, std::invalid_argument);
}

TEST(PrioritizedSweeping, RealStepsAloneDoNotChangeQ) {
  // Only sweeps update Q: with the queue drained by nothing (zero TD errors), Q stays 0.
  PrioritizedSweeping agent(config(4, 2));
  agent.update(0, 0, 0.0, 1, false);
  agent.update(1, 1, 0.0, 2, false);
  EXPECT_EQ(agent.queue_size(), 0);
  EXPECT_EQ(agent.q(), std::vector<double>(8, 0.0));
  EXPECT_EQ(agent.time(), 2);
}

TEST(PrioritizedSweeping, ChainPropagatesGoalValueBackToStart) {
  // States 0..k-1 along a chain, k is the terminal goal; action 0 moves right.
  constexpr int64_t k = 8;
  constexpr double kGamma = 0.9;
  DynaConfig c = config(k + 1, 2);
  c.gamma = kGamma;
  PrioritizedSweeping agent(c);
  for (int64_t s = 0; s < k; ++s) {
    const bool goal = s + 1 == k;
    agent.update(s, 0, goal ? 1.0 : 0.0, s + 1, goal);
  }
  // Only the last transition had a TD error; its single sweep queued its predecessor.
  EXPECT_DOUBLE_EQ(q_at(agent, k - 1, 0), 1.0);
  EXPECT_EQ(q_at(agent, k - 2, 0), 0.0);
  ASSERT_EQ(queue_of(agent).size(), 1u);
  EXPECT_EQ(queue_of(agent)[0].first, (k - 2) * 2);
  EXPECT_DOUBLE_EQ(queue_of(agent)[0].second, kGamma);

  agent.plan(1000);
  EXPECT_EQ(agent.queue_size(), 0);
  for (int64_t s = 0; s < k; ++s) {
    EXPECT_NEAR(q_at(agent, s, 0), std::pow(kGamma, static_cast<double>(k - 1 - s)), 1e-12) << s;
    EXPECT_EQ(q_at(agent, s, 1), 0.0) << s;  // never observed, never queued
  }
}

TEST(PrioritizedSweeping, SweepsStopAtTheQueueAndRespectTheta) {
  constexpr double kGamma = 0.5;
  DynaConfig c = config(6, 1);
  c.gamma = kGamma;
  c.theta = 0.1;  // gamma^4 = 0.0625 < theta: propagation stops after four hops
  PrioritizedSweeping agent(c);
  for (int64_t s = 0; s < 5; ++s) agent.update(s, 0, s == 4 ? 1.0 : 0.0, s + 1, s == 4);
  agent.plan(100);
  EXPECT_EQ(agent.queue_size(), 0);
  EXPECT_DOUBLE_EQ(q_at(agent, 4, 0), 1.0);
  EXPECT_DOUBLE_EQ(q_at(agent, 3, 0), 0.5);
  EXPECT_DOUBLE_EQ(q_at(agent, 2, 0), 0.25);
  EXPECT_DOUBLE_EQ(q_at(agent, 1, 0), 0.125);
  EXPECT_EQ(q_at(agent, 0, 0), 0.0);
}

TEST(PrioritizedSweeping, PopsLargestPriorityFirst) {
  PrioritizedSweeping agent(config(3, 2));
  DynaSnapshot snap = agent.snapshot();
  snap.time = 2;
  snap.model_pairs = {0, 2};
  snap.model_outcomes = {{Outcome{2, 1.0, true, 1}}, {Outcome{2, 5.0, true, 1}}};
  snap.queue = {{2, 5.0}, {0, 1.0}};
  snap.predecessors[2] = {0, 2};  // both pairs lead into state 2
  agent.restore(snap);
  ASSERT_EQ(agent.queue_size(), 2);

  agent.plan(1);
  EXPECT_EQ(q_at(agent, 1, 0), 5.0);
  EXPECT_EQ(q_at(agent, 0, 0), 0.0);
  EXPECT_EQ(agent.queue_size(), 1);
  agent.plan(1);
  EXPECT_EQ(q_at(agent, 0, 0), 1.0);
  EXPECT_EQ(agent.queue_size(), 0);
}

TEST(PrioritizedSweeping, StochasticModelUsesExpectedUpdate) {
  DynaConfig c = config(2, 1);
  c.gamma = 0.0;
  c.model = ModelKind::kStochastic;
  PrioritizedSweeping agent(c);
  agent.update(0, 0, 0.0, 1, false);  // TD error 0: not queued
  EXPECT_EQ(agent.queue_size(), 0);
  agent.update(0, 0, 1.0, 1, false);
  // A sample update would give 0 or 1; the expectation over counts 1:1 is 0.5.
  EXPECT_DOUBLE_EQ(q_at(agent, 0, 0), 0.5);
  agent.update(0, 0, 1.0, 1, false);  // counts 1:2
  EXPECT_DOUBLE_EQ(q_at(agent, 0, 0), 2.0 / 3.0);
  agent.update(0, 0, 1.0, 1, false);  // counts 1:3
  EXPECT_DOUBLE_EQ(q_at(agent, 0, 0), 0.75);
}

TEST(PrioritizedSweeping, PredecessorPriorityUsesOutcomesIntoTheUpdatedState) {
  // Pair P = (0, 0) leads to state 1 (reward 0) or to terminal state 2 (reward 10) equally often.
  // When Q(1, .) changes, P's priority is computed from the outcome into state 1 only (the book's
  // "predicted reward for S-bar, A-bar, S"), but its sweep uses the full expectation.
  DynaConfig c = config(4, 1);
  c.gamma = 1.0;
  c.model = ModelKind::kStochastic;
  PrioritizedSweeping agent(c);
  agent.update(0, 0, 0.0, 1, false);
  agent.update(0, 0, 10.0, 2, true);
  EXPECT_DOUBLE_EQ(q_at(agent, 0, 0), 5.0);
  agent.update(1, 0, 1.0, 3, true);  // Q(1, 0) = 1, then P is queued with |0 + 1 - 5| = 4
  EXPECT_DOUBLE_EQ(q_at(agent, 1, 0), 1.0);
  const auto queue = queue_of(agent);
  ASSERT_EQ(queue.size(), 1u);
  EXPECT_EQ(queue[0].first, 0);
  EXPECT_DOUBLE_EQ(queue[0].second, 4.0);
  agent.plan(1);
  EXPECT_DOUBLE_EQ(q_at(agent, 0, 0), (1.0 + 10.0) / 2.0);
}

TEST(PrioritizedSweeping, PredecessorListsFollowTheModel) {
  PrioritizedSweeping agent(config(4, 2));
  agent.update(0, 1, 0.0, 2, false);
  agent.update(3, 0, 0.0, 2, false);
  agent.update(0, 1, 0.0, 2, false);  // already known: not listed twice
  EXPECT_EQ(agent.snapshot().predecessors, (std::vector<std::vector<int64_t>>{{}, {}, {1, 6}, {}}));
  // A deterministic model replaces the outcome, so the pair stops being a predecessor of 2.
  agent.update(0, 1, 0.0, 3, false);
  EXPECT_EQ(agent.snapshot().predecessors, (std::vector<std::vector<int64_t>>{{}, {}, {6}, {1}}));

  DynaConfig c = config(4, 2);
  c.model = ModelKind::kStochastic;
  PrioritizedSweeping stochastic(c);
  stochastic.update(0, 1, 0.0, 2, false);
  stochastic.update(0, 1, 0.0, 3, false);
  stochastic.update(0, 1, 5.0, 3, false);
  EXPECT_EQ(stochastic.snapshot().predecessors, (std::vector<std::vector<int64_t>>{{}, {}, {1}, {1}}));
}

TEST(PrioritizedSweeping, StaleSuccessorNoLongerTriggersSweeps) {
  // After (0, 0) is remapped from state 1 to state 2, a change in Q(1, .) must not queue it.
  DynaConfig c = config(4, 1);
  c.gamma = 1.0;
  PrioritizedSweeping agent(c);
  agent.update(0, 0, 0.0, 1, false);
  agent.update(0, 0, 3.0, 2, false);
  ASSERT_DOUBLE_EQ(q_at(agent, 0, 0), 3.0);
  agent.update(1, 0, 1.0, 3, true);
  EXPECT_DOUBLE_EQ(q_at(agent, 1, 0), 1.0);
  EXPECT_EQ(agent.queue_size(), 0);
  EXPECT_EQ(agent.snapshot().predecessors[1], std::vector<int64_t>{});
  EXPECT_DOUBLE_EQ(q_at(agent, 0, 0), 3.0);
}


class PrioritizedSweepingModels : public ::testing::TestWithParam<ModelKind> {
 protected:
  DynaConfig make_config(uint64_t seed) const {
    DynaConfig c = config(7, 3);
    c.alpha = 0.5;
    c.gamma = 0.9;
    c.epsilon = 0.2;
    c.planning_steps = 2;  // fewer sweeps than new errors, so the queue stays non-empty
    c.model = GetParam();
    c.seed = seed;
    return c;
  }
};

TEST_P(PrioritizedSweepingModels, SnapshotRestoreContinuesIdentically) {
  PrioritizedSweeping original(make_config(3));
  Rng env(12);
  drive(original, env, 250, 5);
  const DynaSnapshot snap = original.snapshot();
  ASSERT_GT(snap.queue.size(), 1u);
  size_t listed = 0;
  for (const auto& list : snap.predecessors) listed += list.size();
  ASSERT_GT(listed, 0u);

  PrioritizedSweeping copy(make_config(100));
  Rng other(1);
  drive(copy, other, 40, 5);
  copy.restore(snap);
  EXPECT_EQ(copy.queue_size(), original.queue_size());
  EXPECT_EQ(copy.snapshot().predecessors, snap.predecessors);

  Rng env_a = env, env_b = env;
  EXPECT_EQ(drive(original, env_a, 250, 5), drive(copy, env_b, 250, 5));
  EXPECT_EQ(copy.q(), original.q());
  const DynaSnapshot end_a = original.snapshot(), end_b = copy.snapshot();
  ASSERT_EQ(end_a.queue.size(), end_b.queue.size());
  for (size_t i = 0; i < end_a.queue.size(); ++i) {
    EXPECT_EQ(end_a.queue[i].key, end_b.queue[i].key);
    EXPECT_EQ(end_a.queue[i].priority, end_b.queue[i].priority);
  }
  EXPECT_EQ(end_a.predecessors, end_b.predecessors);
}

TEST_P(PrioritizedSweepingModels, ResetBehavesLikeAFreshAgent) {
  PrioritizedSweeping used(make_config(5));
  Rng env(6);
  drive(used, env, 150, 5);
  used.reset();
  EXPECT_EQ(used.queue_size(), 0);
  EXPECT_EQ(used.snapshot().predecessors, std::vector<std::vector<int64_t>>(7));
  EXPECT_EQ(used.q(), std::vector<double>(21, 0.0));

  PrioritizedSweeping fresh(make_config(5));
  Rng env_a(7), env_b(7);
  EXPECT_EQ(drive(used, env_a, 150, 5), drive(fresh, env_b, 150, 5));
  EXPECT_EQ(used.q(), fresh.q());
}

INSTANTIATE_TEST_SUITE_P(Models, PrioritizedSweepingModels,
                         ::testing::Values(ModelKind::kDeterministic, ModelKind::kStochastic));

TEST(PrioritizedSweeping, RestoreRejectsInconsistentQueueOrPredecessors) {
  PrioritizedSweeping agent(config(4, 2));
  agent.update(0, 0, 0.0, 1, false);
  agent.update(1, 1, 0.0, 2, false);
  DynaSnapshot good = agent.snapshot();
  good.queue = {{3, 2.0}, {0, 1.0}};
  agent.restore(good);  // pairs 0 and 3 are in the model, so this is valid
  ASSERT_EQ(agent.queue_size(), 2);

  std::vector<DynaSnapshot> bad(11, good);
  bad[0].queue = {{5, 1.0}};               // pair 5 is not in the model
  bad[1].queue = {{0, 1.0}, {3, 2.0}};     // not a max-heap
  bad[2].queue = {{8, 1.0}};               // out of range
  bad[3].predecessors.pop_back();          // one list per state
  bad[4].predecessors[2].push_back(7);     // pair 7 not in the model
  bad[5].predecessors[2].push_back(-1);
  bad[6].predecessors[2].push_back(3);     // listed twice (issue 19: every invariant is checked)
  bad[7].predecessors[2].clear();          // pair 3 leads into state 2 but is not listed
  bad[8].predecessors[1] = {3};            // pair 3 does not lead into state 1
  bad[9].queue = {{3, -1.0}};              // priorities are |TD errors|
  bad[10].last_tried = std::vector<int64_t>(8, 0);  // Dyna-Q+ only
  for (size_t i = 0; i < bad.size(); ++i) {
    EXPECT_THROW(agent.restore(bad[i]), std::invalid_argument) << i;
    const DynaSnapshot now = agent.snapshot();
    ASSERT_EQ(now.queue.size(), 2u) << i;
    EXPECT_EQ(now.queue[0].key, 3);
    EXPECT_EQ(now.queue[1].key, 0);
    EXPECT_EQ(now.predecessors, good.predecessors) << i;
  }
}

}  // namespace
