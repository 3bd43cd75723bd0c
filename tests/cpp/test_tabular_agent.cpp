// Behaviour shared by every tabular agent (tabular_agent.h), checked through both concrete kinds.
#include "pymbrl/dyna/tabular_agent.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <ostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/dyna/dyna_q.h"
#include "pymbrl/dyna/prioritized_sweeping.h"
#include "support.h"

namespace {

using namespace pymbrl::dyna;

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

DynaConfig base_config() {
  DynaConfig c;
  c.n_states = 4;
  c.n_actions = 4;
  c.epsilon = 0.0;
  c.planning_steps = 1;
  c.seed = 3;
  return c;
}

std::unique_ptr<TabularAgent> build(AgentKind kind, const DynaConfig& c) {
  if (kind == AgentKind::kPrioritizedSweeping) return std::make_unique<PrioritizedSweeping>(c);
  return std::make_unique<DynaQ>(c, kind);
}

const AgentKind kAllKinds[] = {AgentKind::kDynaQ, AgentKind::kDynaQPlus, AgentKind::kPrioritizedSweeping};

TEST(AgentKindName, NamesEveryKind) {
  EXPECT_STREQ(agent_kind_name(AgentKind::kDynaQ), "dyna_q");
  EXPECT_STREQ(agent_kind_name(AgentKind::kDynaQPlus), "dyna_q_plus");
  EXPECT_STREQ(agent_kind_name(AgentKind::kPrioritizedSweeping), "prioritized_sweeping");
}

TEST(DynaConfig, DefaultsFollowTheBook) {
  const DynaConfig c;
  EXPECT_EQ(c.alpha, 0.1);
  EXPECT_EQ(c.gamma, 0.95);
  EXPECT_EQ(c.epsilon, 0.1);
  EXPECT_EQ(c.planning_steps, 5);
  EXPECT_EQ(c.model, ModelKind::kDeterministic);
}

struct BadConfig {
  const char* field;  // must appear in the message so the user knows what to fix
  const char* label;
  std::function<void(DynaConfig&)> edit;
};

void PrintTo(const BadConfig& c, std::ostream* os) { *os << c.label; }

class DynaConfigRejects : public ::testing::TestWithParam<BadConfig> {};

TEST_P(DynaConfigRejects, EveryAgentKindThrowsInvalidArgument) {
  for (AgentKind kind : kAllKinds) {
    DynaConfig c = base_config();
    GetParam().edit(c);
    try {
      build(kind, c);
      ADD_FAILURE() << "accepted bad " << GetParam().field << " for " << agent_kind_name(kind);
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(GetParam().field), std::string::npos) << e.what();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, DynaConfigRejects,
    ::testing::Values(BadConfig{"n_states", "n_states=0", [](DynaConfig& c) { c.n_states = 0; }},
                      BadConfig{"n_states", "n_states=-3", [](DynaConfig& c) { c.n_states = -3; }},
                      BadConfig{"n_actions", "n_actions=0", [](DynaConfig& c) { c.n_actions = 0; }},
                      BadConfig{"n_states * n_actions", "n_states=2**30, n_actions=2**11", [](DynaConfig& c) {
                                  c.n_states = int64_t{1} << 30;
                                  c.n_actions = 1 << 11;
                                }},
                      BadConfig{"alpha", "alpha=0.0", [](DynaConfig& c) { c.alpha = 0.0; }},
                      BadConfig{"alpha", "alpha=1.5", [](DynaConfig& c) { c.alpha = 1.5; }},
                      BadConfig{"alpha", "alpha=nan", [](DynaConfig& c) { c.alpha = kNaN; }},
                      BadConfig{"gamma", "gamma=1.5", [](DynaConfig& c) { c.gamma = 1.5; }},
                      BadConfig{"gamma", "gamma=-0.1", [](DynaConfig& c) { c.gamma = -0.1; }},
                      BadConfig{"gamma", "gamma=nan", [](DynaConfig& c) { c.gamma = kNaN; }},
                      BadConfig{"epsilon", "epsilon=-0.1", [](DynaConfig& c) { c.epsilon = -0.1; }},
                      BadConfig{"epsilon", "epsilon=1.01", [](DynaConfig& c) { c.epsilon = 1.01; }},
                      BadConfig{"planning_steps", "planning_steps=-1", [](DynaConfig& c) { c.planning_steps = -1; }},
                      BadConfig{"kappa", "kappa=-1e-3", [](DynaConfig& c) { c.kappa = -1e-3; }},
                      BadConfig{"kappa", "kappa=inf", [](DynaConfig& c) { c.kappa = kInf; }},
                      BadConfig{"theta", "theta=-1.0", [](DynaConfig& c) { c.theta = -1.0; }},
                      BadConfig{"theta", "theta=nan", [](DynaConfig& c) { c.theta = kNaN; }}));

TEST(DynaConfig, AcceptsBoundaryValues) {
  for (AgentKind kind : kAllKinds) {
    DynaConfig c = base_config();
    c.n_states = 1;
    c.n_actions = 1;
    c.alpha = 1.0;
    c.gamma = 0.0;
    c.epsilon = 1.0;
    c.kappa = 0.0;
    c.theta = 0.0;
    EXPECT_NO_THROW(build(kind, c));
    c.gamma = 1.0;
    c.epsilon = 0.0;
    EXPECT_NO_THROW(build(kind, c));
    c.n_states = int64_t{1} << 26;  // exactly 2**28 pairs: allowed by validate, so no allocation here
    c.n_actions = 4;
    EXPECT_NO_THROW(c.validate(kind));
    c.n_states += 1;
    EXPECT_THROW(c.validate(kind), std::invalid_argument);
    c.n_states = INT64_MAX;  // the product would overflow
    c.n_actions = INT64_MAX;
    EXPECT_THROW(c.validate(kind), std::invalid_argument);
  }
}

TEST(TabularAgent, ZeroPlanningStepsOnlyForDynaQ) {
  DynaConfig c = base_config();
  c.planning_steps = 0;
  EXPECT_NO_THROW(DynaQ(c, AgentKind::kDynaQ));
  EXPECT_NO_THROW(DynaQ(c, AgentKind::kDynaQPlus));
  EXPECT_THROW(PrioritizedSweeping{c}, std::invalid_argument);
}

TEST(TabularAgent, FreshAgentState) {
  for (AgentKind kind : kAllKinds) {
    auto agent = build(kind, base_config());
    EXPECT_EQ(agent->kind(), kind);
    EXPECT_EQ(agent->n_states(), 4);
    EXPECT_EQ(agent->n_actions(), 4);
    EXPECT_EQ(agent->time(), 0);
    EXPECT_EQ(agent->q(), std::vector<double>(16, 0.0));
    EXPECT_EQ(agent->q_data(), agent->q().data());
    EXPECT_TRUE(agent->model().pairs().empty());
  }
}

TEST(TabularAgent, GreedyBreaksTiesUniformly) {
  for (AgentKind kind : kAllKinds) {
    auto agent = build(kind, base_config());
    std::vector<int> counts(4, 0);
    constexpr int kCalls = 4000;
    for (int i = 0; i < kCalls; ++i) ++counts[static_cast<size_t>(agent->act(0))];
    for (int a = 0; a < 4; ++a) EXPECT_NEAR(counts[static_cast<size_t>(a)] / double(kCalls), 0.25, 0.03) << a;
  }
}

TEST(TabularAgent, GreedyTieBreakingIsUniformOverTheMaximaOnly) {
  // Three-way tie among actions 0, 2, 3 (action 1 is worse): reservoir sampling must give each
  // a third, not favour the last or first maximum.
  DynaConfig c = base_config();
  c.alpha = 1.0;
  c.planning_steps = 0;
  DynaQ agent(c);
  agent.update(0, 1, -1.0, 1, true);
  ASSERT_EQ(agent.q()[1], -1.0);
  std::vector<int> counts(4, 0);
  constexpr int kCalls = 6000;
  for (int i = 0; i < kCalls; ++i) ++counts[static_cast<size_t>(agent.greedy(0))];
  EXPECT_EQ(counts[1], 0);
  for (int a : {0, 2, 3}) EXPECT_NEAR(counts[static_cast<size_t>(a)] / double(kCalls), 1.0 / 3.0, 0.03) << a;
}

TEST(TabularAgent, EpsilonZeroIsGreedy) {
  DynaConfig c = base_config();
  c.alpha = 1.0;
  c.planning_steps = 0;
  DynaQ agent(c);
  agent.update(2, 3, 0.5, 0, true);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(agent.act(2), 3);
}

TEST(TabularAgent, EpsilonMixesUniformActions) {
  DynaConfig c = base_config();
  c.alpha = 1.0;
  c.planning_steps = 0;
  c.epsilon = 0.2;
  DynaQ agent(c);
  agent.update(2, 3, 0.5, 0, true);
  std::vector<int> counts(4, 0);
  constexpr int kCalls = 20000;
  for (int i = 0; i < kCalls; ++i) ++counts[static_cast<size_t>(agent.act(2))];
  // Greedy with probability 1 - eps, plus its share eps / n of the random actions.
  EXPECT_NEAR(counts[3] / double(kCalls), 0.8 + 0.2 / 4, 0.015);
  for (int a : {0, 1, 2}) EXPECT_NEAR(counts[static_cast<size_t>(a)] / double(kCalls), 0.05, 0.01) << a;

  c.epsilon = 1.0;
  DynaQ random_agent(c);
  random_agent.update(2, 3, 0.5, 0, true);
  std::fill(counts.begin(), counts.end(), 0);
  for (int i = 0; i < kCalls; ++i) ++counts[static_cast<size_t>(random_agent.act(2))];
  for (int a = 0; a < 4; ++a) EXPECT_NEAR(counts[static_cast<size_t>(a)] / double(kCalls), 0.25, 0.015) << a;
}

TEST(TabularAgent, UpdateRejectsBadTransitionWithoutSideEffects) {
  for (AgentKind kind : kAllKinds) {
    auto agent = build(kind, base_config());
    agent->update(0, 0, 1.0, 1, false);
    const DynaSnapshot before = agent->snapshot();
    EXPECT_THROW(agent->update(-1, 0, 0.0, 0, false), std::invalid_argument);
    EXPECT_THROW(agent->update(4, 0, 0.0, 0, false), std::invalid_argument);
    EXPECT_THROW(agent->update(0, -1, 0.0, 0, false), std::invalid_argument);
    EXPECT_THROW(agent->update(0, 4, 0.0, 0, false), std::invalid_argument);
    EXPECT_THROW(agent->update(0, 0, kNaN, 0, false), std::invalid_argument);
    EXPECT_THROW(agent->update(0, 0, kInf, 0, false), std::invalid_argument);
    EXPECT_THROW(agent->update(0, 0, 0.0, 4, false), std::invalid_argument);
    EXPECT_THROW(agent->update(0, 0, 0.0, -1, false), std::invalid_argument);
    EXPECT_THROW(agent->plan(-1), std::invalid_argument);
    const DynaSnapshot after = agent->snapshot();
    EXPECT_EQ(after.time, before.time) << agent_kind_name(kind);
    EXPECT_EQ(after.q, before.q);
    EXPECT_EQ(after.rng, before.rng);
    EXPECT_EQ(after.model_pairs, before.model_pairs);
  }
}

TEST(TabularAgent, CheckHelpersNameTheArgument) {
  auto agent = build(AgentKind::kDynaQ, base_config());
  try {
    agent->check_state(7, "next_state");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("next_state"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("7"), std::string::npos);
  }
  EXPECT_NO_THROW(agent->check_state(3));
  EXPECT_NO_THROW(agent->check_action(3));
  EXPECT_THROW(agent->check_action(4), std::invalid_argument);
  EXPECT_NO_THROW(TabularAgent::check_reward(-1e100));
  EXPECT_THROW(TabularAgent::check_reward(1e101), std::invalid_argument);  // could overflow Q (issue 19)
  EXPECT_THROW(TabularAgent::check_reward(-kInf), std::invalid_argument);
}

TEST(TabularAgent, RestoreRejectsBadBaseFieldsAndLeavesAgentUnchanged) {
  for (AgentKind kind : kAllKinds) {
    auto agent = build(kind, base_config());
    for (int i = 0; i < 5; ++i) agent->update(i % 4, i % 3, 1.0, (i + 1) % 4, false);
    const DynaSnapshot good = agent->snapshot();

    std::vector<DynaSnapshot> bad(11, good);
    bad[0].q.pop_back();
    bad[1].q[3] = kNaN;
    bad[2].q[0] = kInf;
    bad[3].rng = {0, 0, 0, 0};  // xoshiro's one forbidden state: it would output zeros forever
    bad[4].time = -1;
    bad[5].model_pairs.push_back(15);  // no outcome list for it
    bad[6].model_outcomes[0][0].next = 4;
    bad[7].model_pairs[0] = 16;
    bad[8].q[1] = 1e201;  // finite, but beyond the bound that keeps every later update finite
    bad[9].time = (int64_t{1} << 53) + 1;
    bad[10].time = 1;  // fewer real steps than the model has observations

    for (size_t i = 0; i < bad.size(); ++i) {
      EXPECT_THROW(agent->restore(bad[i]), std::invalid_argument) << agent_kind_name(kind) << " case " << i;
      const DynaSnapshot now = agent->snapshot();
      EXPECT_EQ(now.q, good.q) << i;
      EXPECT_EQ(now.rng, good.rng) << i;
      EXPECT_EQ(now.time, good.time) << i;
      EXPECT_EQ(now.model_pairs, good.model_pairs) << i;
    }
  }
}

// Issue 19: reward 1e307 with gamma 1 made Q non-finite, after which the agent refused its own
// snapshot. Rewards are bounded instead, and at the bound Q stays finite however long it runs.
TEST(TabularAgent, LargestRewardsKeepQFiniteAndTheSnapshotRestorable) {
  for (AgentKind kind : kAllKinds) {
    DynaConfig c = base_config();
    c.gamma = 1.0;
    c.alpha = 1.0;
    auto agent = build(kind, c);
    EXPECT_THROW(agent->update(0, 0, 1e307, 0, false), std::invalid_argument);
    EXPECT_EQ(agent->time(), 0);
    for (int i = 0; i < 200; ++i) agent->update(0, 0, 1e100, 0, false);
    agent->plan(1000);
    for (double v : agent->q()) EXPECT_TRUE(std::isfinite(v)) << agent_kind_name(kind);
    auto copy = build(kind, c);
    EXPECT_NO_THROW(copy->restore(agent->snapshot()));
  }
}

TEST(TabularAgent, RestoreKeepsQStorageInPlace) {
  // The Python layer holds a zero-copy view of q_data(); restore must write into it.
  for (AgentKind kind : kAllKinds) {
    auto src = build(kind, base_config());
    for (int i = 0; i < 6; ++i) src->update(i % 4, (i + 1) % 4, 0.5 * i, (i + 2) % 4, i == 5);
    auto dst = build(kind, base_config());
    double* view = dst->q_data();
    dst->restore(src->snapshot());
    EXPECT_EQ(dst->q_data(), view);
    EXPECT_EQ(std::vector<double>(view, view + 16), src->q());
  }
}

}  // namespace
