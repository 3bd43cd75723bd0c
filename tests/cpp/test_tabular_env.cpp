#include "pymbrl/dyna/tabular_env.h"

#include <gtest/gtest.h>

#include "support.h"

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>

#include "pymbrl/dyna/tabular_mdp.h"

namespace {

using namespace pymbrl::dyna;


// Three states, two actions, noisy: action 0 wanders uniformly, action 1 ends the episode from
// state 2 and otherwise stays. Random initial state among 0 and 1.
std::shared_ptr<const TabularMDP> noisy_mdp() {
  const std::vector<Transition> wander{{1.0 / 3, 0, 0.0, false}, {1.0 / 3, 1, 1.0, false}, {1.0 / 3, 2, 2.0, false}};
  auto t = table(3, 2,
                 {wander, {{1.0, 0, 0.0, false}}, wander, {{1.0, 1, 0.0, false}}, wander, {{1.0, 2, 5.0, true}}},
                 {0.5, 0.5, 0.0});
  return std::make_shared<const TabularMDP>(t);
}

struct Record {
  std::vector<int64_t> states;
  std::vector<double> rewards;
};

Record roll(TabularEnv& env, int steps) {
  Record r;
  r.states.push_back(env.reset());
  for (int i = 0; i < steps; ++i) {
    const TabularEnv::Step s = env.step(i % 3 == 2 ? 1 : 0);
    r.states.push_back(s.next);
    r.rewards.push_back(s.reward);
    if (s.terminated) r.states.push_back(env.reset());
  }
  return r;
}

TEST(TabularEnv, StepBeforeResetThrows) {
  TabularEnv env(noisy_mdp(), 0);
  EXPECT_EQ(env.state(), -1);
  EXPECT_THROW(env.step(0), std::invalid_argument);
  EXPECT_EQ(env.steps(), 0);
}

TEST(TabularEnv, InvalidActionThrowsWithoutAdvancing) {
  TabularEnv env(noisy_mdp(), 0);
  const int64_t s = env.reset();
  EXPECT_THROW(env.step(2), std::invalid_argument);
  EXPECT_THROW(env.step(-1), std::invalid_argument);
  EXPECT_EQ(env.steps(), 0);
  EXPECT_EQ(env.state(), s);
}

TEST(TabularEnv, SameSeedSameTrajectory) {
  TabularEnv a(noisy_mdp(), 42), b(noisy_mdp(), 42), c(noisy_mdp(), 43);
  const Record ra = roll(a, 300), rb = roll(b, 300), rc = roll(c, 300);
  EXPECT_EQ(ra.states, rb.states);
  EXPECT_EQ(ra.rewards, rb.rewards);
  EXPECT_NE(ra.states, rc.states);
}

TEST(TabularEnv, ReseedRestartsTheGeneratorButNotTheClock) {
  TabularEnv env(noisy_mdp(), 7);
  const Record first = roll(env, 50);
  const int64_t clock = env.steps();
  EXPECT_EQ(clock, 50);
  env.reseed(7);
  const Record second = roll(env, 50);
  EXPECT_EQ(first.states, second.states);
  EXPECT_EQ(env.steps(), 100);
}

TEST(TabularEnv, StepFollowsTheTable) {
  TabularEnv env(noisy_mdp(), 3);
  int64_t s = env.reset();
  ASSERT_TRUE(s == 0 || s == 1);
  int ends = 0;
  for (int i = 0; i < 3000; ++i) {
    const int64_t a = s == 2 ? 1 : 0;
    const TabularEnv::Step step = env.step(a);
    EXPECT_EQ(env.state(), step.next);
    if (a == 1) {
      EXPECT_TRUE(step.terminated);
      EXPECT_EQ(step.reward, 5.0);
      ++ends;
      s = env.reset();
      EXPECT_NE(s, 2);  // zero initial mass
    } else {
      EXPECT_FALSE(step.terminated);
      EXPECT_EQ(step.reward, static_cast<double>(step.next));  // the table pays the index of the next state
      s = step.next;
    }
  }
  EXPECT_EQ(env.steps(), 3000);
  EXPECT_GT(ends, 500);  // ~1/3 of wander steps reach state 2
}

TEST(TabularEnv, ClockSelectsThePhaseAcrossEpisodes) {
  // One state; the phase decides the reward. The clock counts real steps over all episodes and
  // is not reset by reset().
  auto pay = [](double r, bool term) { return table(1, 1, {{{1.0, 0, r, term}}}, {1.0}); };
  auto mdp = std::make_shared<const TabularMDP>(
      std::vector<std::shared_ptr<const TransitionTable>>{pay(0.0, true), pay(1.0, false)}, std::vector<int64_t>{0, 3});
  TabularEnv env(mdp, 0);
  std::vector<double> rewards;
  std::vector<bool> terminated;
  env.reset();
  for (int i = 0; i < 6; ++i) {
    const TabularEnv::Step s = env.step(0);
    rewards.push_back(s.reward);
    terminated.push_back(s.terminated);
    if (s.terminated) env.reset();
  }
  EXPECT_EQ(rewards, (std::vector<double>{0, 0, 0, 1, 1, 1}));
  EXPECT_EQ(terminated, (std::vector<bool>{true, true, true, false, false, false}));
  EXPECT_EQ(env.steps(), 6);
}

TEST(TabularEnv, ResetUsesTheInitialDistributionOfTheCurrentPhase) {
  const std::vector<std::vector<Transition>> stay{{{1.0, 0, 0.0, false}}, {{1.0, 1, 0.0, false}}};
  auto mdp = std::make_shared<const TabularMDP>(
      std::vector<std::shared_ptr<const TransitionTable>>{table(2, 1, stay, {1.0, 0.0}), table(2, 1, stay, {0.0, 1.0})},
      std::vector<int64_t>{0, 2});
  TabularEnv env(mdp, 0);
  EXPECT_EQ(env.reset(), 0);
  env.step(0);
  EXPECT_EQ(env.reset(), 0);
  env.step(0);
  EXPECT_EQ(env.reset(), 1);
}

}  // namespace
