#include "pymbrl/dyna/dyna_q.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "pymbrl/rng.h"
#include "support.h"

namespace {

using namespace pymbrl::dyna;
using pymbrl::Rng;

DynaConfig config(int64_t n_states, int64_t n_actions) { return greedy_config(n_states, n_actions, 0.1, 0, 1); }

// A deterministic chain: states 0..4 live, 5 is the terminal goal. Action 1 moves right (reward
// 1 on reaching the goal), action 0 moves left (bounded at 0) with a small cost.
struct Chain {
  static constexpr int64_t kStates = 6;
  static constexpr int64_t kGoal = 5;
  struct Step {
    int64_t next;
    double reward;
    bool terminated;
  };
  static Step step(int64_t s, int64_t a) {
    if (a == 1) return {s + 1, s + 1 == kGoal ? 1.0 : 0.0, s + 1 == kGoal};
    return {std::max<int64_t>(s - 1, 0), -0.1, false};
  }
  // Q* by value iteration, independent of the agent's code.
  static std::vector<double> q_star(double gamma) {
    std::vector<double> q(kStates * 2, 0.0);
    for (int it = 0; it < 2000; ++it) {
      std::vector<double> nq(q.size(), 0.0);
      for (int64_t s = 0; s < kGoal; ++s) {
        for (int64_t a = 0; a < 2; ++a) {
          const Step t = step(s, a);
          const double v = t.terminated ? 0.0 : std::max(q[t.next * 2], q[t.next * 2 + 1]);
          nq[s * 2 + a] = t.reward + gamma * v;
        }
      }
      q = nq;
    }
    return q;
  }
};

TEST(DynaQ, RejectsPrioritizedSweepingKind) {
  EXPECT_THROW(DynaQ(config(3, 2), AgentKind::kPrioritizedSweeping), std::invalid_argument);
}

TEST(DynaQ, PlanningZeroIsOneStepQLearning) {
  DynaConfig c = config(3, 2);
  c.alpha = 0.5;
  c.gamma = 0.9;
  DynaQ agent(c);

  agent.update(0, 1, 2.0, 1, false);  // 0.5 * (2 + 0.9 * 0 - 0)
  EXPECT_DOUBLE_EQ(q_at(agent, 0, 1), 1.0);
  agent.update(1, 0, 1.0, 0, false);  // 0.5 * (1 + 0.9 * max(0, 1) - 0)
  EXPECT_DOUBLE_EQ(q_at(agent, 1, 0), 0.95);
  agent.update(0, 0, 0.0, 1, false);  // 0.5 * (0 + 0.9 * 0.95 - 0)
  EXPECT_DOUBLE_EQ(q_at(agent, 0, 0), 0.4275);
  agent.update(0, 1, 3.0, 1, true);   // terminal: no bootstrap from Q(1, .) = 0.95
  EXPECT_DOUBLE_EQ(q_at(agent, 0, 1), 2.0);
  agent.update(2, 1, -1.0, 2, false);  // self-loop bootstraps from the pre-update row: 0.5 * (-1 + 0)
  EXPECT_DOUBLE_EQ(q_at(agent, 2, 1), -0.5);

  EXPECT_DOUBLE_EQ(q_at(agent, 1, 1), 0.0);
  EXPECT_DOUBLE_EQ(q_at(agent, 2, 0), 0.0);
  EXPECT_EQ(agent.time(), 5);
}

TEST(DynaQ, ModelRecordsOnlyTriedPairs) {
  DynaQ agent(config(3, 2));
  agent.update(1, 1, 0.5, 2, false);
  agent.update(0, 0, 0.0, 1, false);
  EXPECT_EQ(agent.model().pairs(), (std::vector<int64_t>{3, 0}));
  EXPECT_TRUE(agent.model().tried(3));
  ASSERT_EQ(agent.model().outcomes(3).size(), 1u);
  EXPECT_EQ(agent.model().outcomes(3)[0].next, 2);
}

TEST(DynaQ, PlanningStepsReplayTheModel) {
  // One real transition into the goal, then n planning updates of the only known pair: each
  // shrinks the error by (1 - alpha), so Q = 1 - (1 - alpha)^(n + 1).
  DynaConfig c = config(2, 1);
  c.planning_steps = 5;
  DynaQ agent(c);
  agent.update(0, 0, 1.0, 1, true);
  EXPECT_NEAR(q_at(agent, 0, 0), 1.0 - std::pow(0.9, 6), 1e-12);
  agent.plan(3);
  EXPECT_NEAR(q_at(agent, 0, 0), 1.0 - std::pow(0.9, 9), 1e-12);
  agent.plan(0);
  EXPECT_NEAR(q_at(agent, 0, 0), 1.0 - std::pow(0.9, 9), 1e-12);
  EXPECT_EQ(agent.time(), 1);  // planning never advances the real clock
}

TEST(DynaQ, PlanOnEmptyModelIsNoOp) {
  DynaQ agent(config(3, 2));
  const auto rng_before = agent.snapshot().rng;
  agent.plan(100);
  EXPECT_EQ(agent.q(), std::vector<double>(6, 0.0));
  EXPECT_EQ(agent.snapshot().rng, rng_before);
}

TEST(DynaQ, PlanningConvergesToQStarOnDeterministicChain) {
  constexpr double kGamma = 0.9;
  DynaConfig c = config(Chain::kStates, 2);
  c.alpha = 0.5;
  c.gamma = kGamma;
  DynaQ agent(c);
  for (int64_t s = 0; s < Chain::kGoal; ++s) {
    for (int64_t a = 0; a < 2; ++a) {
      const Chain::Step t = Chain::step(s, a);
      agent.update(s, a, t.reward, t.next, t.terminated);
    }
  }
  agent.plan(20000);
  const std::vector<double> q_star = Chain::q_star(kGamma);
  for (int64_t p = 0; p < Chain::kGoal * 2; ++p) EXPECT_NEAR(agent.q()[p], q_star[p], 1e-9) << p;
  // Sanity of the reference itself: moving right from 0 reaches the goal in 5 steps.
  EXPECT_NEAR(q_star[1], std::pow(kGamma, 4), 1e-12);
  EXPECT_EQ(agent.q()[Chain::kGoal * 2], 0.0);  // the goal is never acted from
}

TEST(DynaQ, StochasticModelPlansWithSampledOutcomes) {
  // Outcomes 1:3 with rewards 0 and 1; with gamma 0 and a small alpha, planning settles near the
  // expectation 0.75 (sample updates average the two outcomes).
  DynaConfig c = config(2, 1);
  c.model = ModelKind::kStochastic;
  c.alpha = 0.01;
  c.gamma = 0.0;
  DynaQ agent(c);
  agent.update(0, 0, 0.0, 1, false);
  for (int i = 0; i < 3; ++i) agent.update(0, 0, 1.0, 1, false);
  ASSERT_EQ(agent.model().outcomes(0).size(), 2u);
  agent.plan(2000);
  double mean = 0.0;
  for (int i = 0; i < 2000; ++i) {
    agent.plan(1);
    mean += q_at(agent, 0, 0) / 2000;
  }
  EXPECT_NEAR(mean, 0.75, 0.05);
}

TEST(DynaQPlus, ExplorationBonusIsKappaSqrtStepsSinceTried) {
  // alpha 1 and gamma 0 make every planned value exactly r + kappa * sqrt(tau), independent of Q.
  DynaConfig c = config(4, 3);
  c.alpha = 1.0;
  c.gamma = 0.0;
  c.kappa = 0.5;
  DynaQ agent(c, AgentKind::kDynaQPlus);
  ASSERT_TRUE(agent.plus());

  struct Real {
    int64_t s, a;
    double r;
    int64_t next;
  };
  const std::vector<Real> real{{0, 0, 1.0, 1}, {1, 2, 0.0, 2}, {2, 1, 2.0, 3}, {0, 1, -1.0, 0}, {1, 0, 0.0, 0}};
  for (const Real& t : real) agent.update(t.s, t.a, t.r, t.next, false);
  ASSERT_EQ(agent.time(), 5);
  // The real update itself carries no bonus.
  EXPECT_DOUBLE_EQ(q_at(agent, 1, 0), 0.0);
  EXPECT_DOUBLE_EQ(q_at(agent, 0, 1), -1.0);

  // Every action of a visited state is in the model; untried ones as reward-0 self-loops.
  ASSERT_EQ(agent.model().pairs().size(), 9u);
  ASSERT_EQ(agent.model().outcomes(0 * 3 + 2).size(), 1u);
  const Outcome& assumed = agent.model().outcomes(0 * 3 + 2)[0];
  EXPECT_EQ(assumed.next, 0);
  EXPECT_EQ(assumed.reward, 0.0);
  EXPECT_EQ(assumed.count, 0);
  EXPECT_FALSE(agent.model().known(3 * 3 + 0));  // state 3 was only reached, never left

  agent.plan(3000);
  const double kappa = c.kappa;
  // Tried pairs: the step (1-based) at which each was last tried.
  EXPECT_DOUBLE_EQ(q_at(agent, 0, 0), 1.0 + kappa * std::sqrt(5.0 - 1.0));
  EXPECT_DOUBLE_EQ(q_at(agent, 1, 2), 0.0 + kappa * std::sqrt(5.0 - 2.0));
  EXPECT_DOUBLE_EQ(q_at(agent, 2, 1), 2.0 + kappa * std::sqrt(5.0 - 3.0));
  EXPECT_DOUBLE_EQ(q_at(agent, 0, 1), -1.0 + kappa * std::sqrt(5.0 - 4.0));
  EXPECT_DOUBLE_EQ(q_at(agent, 1, 0), 0.0);  // tried just now: tau = 0
  // Never tried: tau counts from the start of time.
  for (auto [s, b] : {std::pair<int64_t, int64_t>{0, 2}, {1, 1}, {2, 0}, {2, 2}}) {
    EXPECT_DOUBLE_EQ(q_at(agent, s, b), kappa * std::sqrt(5.0)) << s << "," << b;
  }
  for (int64_t b = 0; b < 3; ++b) EXPECT_EQ(q_at(agent, 3, b), 0.0);
}

TEST(DynaQPlus, RetryingAPairResetsItsBonusClock) {
  DynaConfig c = config(2, 2);
  c.alpha = 1.0;
  c.gamma = 0.0;
  c.kappa = 1.0;
  DynaQ agent(c, AgentKind::kDynaQPlus);
  agent.update(0, 0, 0.0, 1, false);  // t = 1
  agent.update(0, 1, 0.0, 1, false);  // t = 2
  agent.update(0, 1, 0.0, 1, false);  // t = 3
  agent.update(0, 0, 0.0, 1, false);  // t = 4
  agent.update(0, 1, 0.0, 1, false);  // t = 5
  agent.plan(500);
  EXPECT_DOUBLE_EQ(q_at(agent, 0, 0), std::sqrt(1.0));
  EXPECT_DOUBLE_EQ(q_at(agent, 0, 1), 0.0);
  EXPECT_EQ(agent.snapshot().last_tried, (std::vector<int64_t>{4, 5, 0, 0}));
}

TEST(DynaQPlus, AssumedSelfLoopBootstrapsFromItsOwnState) {
  // gamma > 0: an untried action's planned value is 0 + gamma * max_a Q(s, a) + bonus.
  DynaConfig c = config(3, 2);
  c.alpha = 1.0;
  c.gamma = 0.5;
  c.kappa = 0.0;
  DynaQ agent(c, AgentKind::kDynaQPlus);
  agent.update(0, 0, 4.0, 2, true);  // Q(0,0) = 4
  agent.plan(200);
  // Q(0,1) = 0.5 * max(Q(0,0), Q(0,1)) = 2 at the fixed point; Q(0,0) stays 4.
  EXPECT_DOUBLE_EQ(q_at(agent, 0, 0), 4.0);
  EXPECT_DOUBLE_EQ(q_at(agent, 0, 1), 2.0);
}

TEST(DynaQ, PlainDynaQHasNoBonusAndNoAssumedPairs) {
  DynaConfig c = config(3, 3);
  c.alpha = 1.0;
  c.gamma = 0.0;
  c.kappa = 10.0;  // ignored without kDynaQPlus
  DynaQ agent(c);
  agent.update(0, 0, 1.0, 1, false);
  agent.update(1, 0, 0.0, 2, false);
  agent.plan(100);
  EXPECT_EQ(agent.model().pairs(), (std::vector<int64_t>{0, 3}));
  EXPECT_DOUBLE_EQ(q_at(agent, 0, 0), 1.0);
  EXPECT_DOUBLE_EQ(q_at(agent, 0, 1), 0.0);
  EXPECT_TRUE(agent.snapshot().last_tried.empty());
}

// Drives an agent through a small random MDP: the agent picks actions, the environment stream is
// fixed by env_rng, so two agents in the same state make identical moves.

class DynaQVariants : public ::testing::TestWithParam<std::pair<AgentKind, ModelKind>> {
 protected:
  DynaConfig make_config(uint64_t seed) const {
    DynaConfig c = config(6, 3);
    c.epsilon = 0.3;
    c.planning_steps = 4;
    c.kappa = 0.01;
    c.model = GetParam().second;
    c.seed = seed;
    return c;
  }
};

TEST_P(DynaQVariants, SnapshotRestoreContinuesIdentically) {
  const AgentKind kind = GetParam().first;
  DynaQ original(make_config(11), kind);
  Rng env(5);
  drive(original, env, 300);
  const DynaSnapshot snap = original.snapshot();
  EXPECT_EQ(snap.time, 300);
  EXPECT_EQ(snap.last_tried.size(), kind == AgentKind::kDynaQPlus ? 18u : 0u);

  DynaQ copy(make_config(999), kind);  // a different seed: everything must come from the snapshot
  Rng other_env(77);
  drive(copy, other_env, 10);
  copy.restore(snap);
  EXPECT_EQ(copy.q(), original.q());
  EXPECT_EQ(copy.time(), original.time());

  Rng env_a = env, env_b = env;
  EXPECT_EQ(drive(original, env_a, 300), drive(copy, env_b, 300));
  EXPECT_EQ(copy.q(), original.q());
  EXPECT_EQ(copy.snapshot().last_tried, original.snapshot().last_tried);
  EXPECT_EQ(copy.model().pairs(), original.model().pairs());
}

TEST_P(DynaQVariants, ResetBehavesLikeAFreshAgent) {
  const AgentKind kind = GetParam().first;
  DynaQ used(make_config(21), kind);
  Rng env(8);
  drive(used, env, 200);
  used.reset();
  EXPECT_EQ(used.time(), 0);
  EXPECT_EQ(used.q(), std::vector<double>(18, 0.0));
  EXPECT_TRUE(used.model().pairs().empty());
  if (kind == AgentKind::kDynaQPlus) {
    EXPECT_EQ(used.snapshot().last_tried, std::vector<int64_t>(18, 0));
  }

  DynaQ fresh(make_config(21), kind);
  Rng env_a(9), env_b(9);
  EXPECT_EQ(drive(used, env_a, 200), drive(fresh, env_b, 200));
  EXPECT_EQ(used.q(), fresh.q());
}

TEST_P(DynaQVariants, SameSeedSameRunDifferentSeedDifferentRun) {
  const AgentKind kind = GetParam().first;
  DynaQ a(make_config(4), kind), b(make_config(4), kind), other(make_config(5), kind);
  Rng ea(1), eb(1), eo(1);
  const auto acts_a = drive(a, ea, 200);
  EXPECT_EQ(acts_a, drive(b, eb, 200));
  EXPECT_EQ(a.q(), b.q());
  EXPECT_NE(acts_a, drive(other, eo, 200));
}

INSTANTIATE_TEST_SUITE_P(Kinds, DynaQVariants,
                         ::testing::Values(std::make_pair(AgentKind::kDynaQ, ModelKind::kDeterministic),
                                           std::make_pair(AgentKind::kDynaQ, ModelKind::kStochastic),
                                           std::make_pair(AgentKind::kDynaQPlus, ModelKind::kDeterministic),
                                           std::make_pair(AgentKind::kDynaQPlus, ModelKind::kStochastic)));

TEST(DynaQPlus, RestoreRejectsBadLastTried) {
  DynaQ agent(config(3, 2), AgentKind::kDynaQPlus);
  agent.update(0, 1, 0.0, 1, false);
  agent.update(1, 0, 0.0, 2, false);
  const DynaSnapshot good = agent.snapshot();
  ASSERT_EQ(good.last_tried, (std::vector<int64_t>{0, 1, 2, 0, 0, 0}));

  DynaSnapshot short_list = good;
  short_list.last_tried.pop_back();
  DynaSnapshot future = good;
  future.last_tried[0] = 3;  // later than the clock
  DynaSnapshot negative = good;
  negative.last_tried[4] = -1;
  for (const DynaSnapshot* bad : {&short_list, &future, &negative}) {
    EXPECT_THROW(agent.restore(*bad), std::invalid_argument);
    EXPECT_EQ(agent.snapshot().last_tried, good.last_tried);
    EXPECT_EQ(agent.time(), 2);
  }

  // Plain Dyna-Q keeps no clock per pair, so a snapshot carrying one is from another agent kind.
  DynaQ plain(config(3, 2));
  EXPECT_THROW(plain.restore(good), std::invalid_argument);
}

}  // namespace
