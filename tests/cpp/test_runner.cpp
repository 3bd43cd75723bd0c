#include "pymbrl/dyna/runner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "pymbrl/dyna/maze.h"
#include "pymbrl/dyna/tabular_env.h"
#include "pymbrl/rng.h"
#include "support.h"

namespace {

using namespace pymbrl::dyna;

std::shared_ptr<const TabularMDP> dyna_maze() {
  return std::make_shared<const TabularMDP>(make_maze(dyna_maze_layout()));
}

std::shared_ptr<const TabularMDP> blocking_maze(int64_t switch_at) {
  const auto layouts = blocking_maze_layouts();
  return std::make_shared<const TabularMDP>(
      std::vector<std::shared_ptr<const TransitionTable>>{make_maze(layouts[0]), make_maze(layouts[1])},
      std::vector<int64_t>{0, switch_at});
}

// A maze whose moves slip: each action goes where the maze says with probability 0.75 and
// leaves the agent in place otherwise; episodes start in the start cell or the one to its right.
// Unlike the plain mazes, this makes the environment's generator matter.
std::shared_ptr<const TransitionTable> slippery(const TransitionTable& maze) {
  std::vector<int64_t> offsets{0};
  std::vector<Transition> flat;
  for (int64_t s = 0; s < maze.n_states(); ++s) {
    for (int64_t a = 0; a < maze.n_actions(); ++a) {
      const Transition& t = maze.transitions()[static_cast<size_t>(maze.offsets()[static_cast<size_t>(s * 4 + a)])];
      if (t.terminated || t.next == s) {
        flat.push_back(t);
      } else {
        flat.push_back({0.75, t.next, t.reward, t.terminated});
        flat.push_back({0.25, s, 0.0, false});
      }
      offsets.push_back(static_cast<int64_t>(flat.size()));
    }
  }
  std::vector<double> initial = maze.initial();
  for (size_t s = 0; s < initial.size(); ++s) {
    if (initial[s] == 1.0) {
      initial[s] = 0.5;
      initial[s + 1] = 0.5;
      break;
    }
  }
  return std::make_shared<const TransitionTable>(maze.n_states(), maze.n_actions(), offsets, flat, initial);
}

std::shared_ptr<const TabularMDP> slippery_blocking_maze(int64_t switch_at) {
  const auto layouts = blocking_maze_layouts();
  return std::make_shared<const TabularMDP>(
      std::vector<std::shared_ptr<const TransitionTable>>{slippery(*make_maze(layouts[0])),
                                                          slippery(*make_maze(layouts[1]))},
      std::vector<int64_t>{0, switch_at});
}

// One state, two actions, reward 1 per step, never terminates.
std::shared_ptr<const TabularMDP> endless() {
  auto t = std::make_shared<const TransitionTable>(
      1, 2, std::vector<int64_t>{0, 1, 2},
      std::vector<Transition>{{1.0, 0, 1.0, false}, {1.0, 0, 1.0, false}}, std::vector<double>{1.0});
  return std::make_shared<const TabularMDP>(t);
}

DynaConfig maze_config(int64_t planning_steps) {
  DynaConfig c;
  c.n_states = 54;
  c.n_actions = 4;
  c.planning_steps = planning_steps;
  return c;
}

std::vector<uint64_t> seeds(uint64_t n, uint64_t first = 0) {
  std::vector<uint64_t> out(n);
  std::iota(out.begin(), out.end(), first);
  return out;
}

// NaN-aware equality: unfinished cells hold NaN in both results.
void expect_same(const std::vector<double>& a, const std::vector<double>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i])) EXPECT_TRUE(std::isnan(b[i])) << i;
    else EXPECT_EQ(a[i], b[i]) << i;
  }
}

void expect_same(const BatchResult& a, const BatchResult& b) {
  EXPECT_EQ(a.n_seeds, b.n_seeds);
  EXPECT_EQ(a.n_episodes, b.n_episodes);
  EXPECT_EQ(a.n_steps, b.n_steps);
  EXPECT_EQ(a.episode_steps, b.episode_steps);
  expect_same(a.episode_returns, b.episode_returns);
  expect_same(a.cumulative_reward, b.cumulative_reward);
  EXPECT_EQ(a.episodes_completed, b.episodes_completed);
}

TEST(Runner, MakeAgentBuildsTheRequestedKind) {
  DynaConfig c = maze_config(3);
  auto q = make_agent(AgentKind::kDynaQ, c);
  auto plus = make_agent(AgentKind::kDynaQPlus, c);
  auto ps = make_agent(AgentKind::kPrioritizedSweeping, c);
  EXPECT_EQ(q->kind(), AgentKind::kDynaQ);
  EXPECT_EQ(plus->kind(), AgentKind::kDynaQPlus);
  EXPECT_EQ(ps->kind(), AgentKind::kPrioritizedSweeping);
  EXPECT_NE(dynamic_cast<DynaQ*>(q.get()), nullptr);
  EXPECT_TRUE(dynamic_cast<DynaQ*>(plus.get())->plus());
  EXPECT_NE(dynamic_cast<PrioritizedSweeping*>(ps.get()), nullptr);
}

TEST(Runner, EnvSeedIsDerivedStreamOne) {
  EXPECT_EQ(env_seed(0), pymbrl::derive_seed(0, 1));
  EXPECT_EQ(env_seed(123), pymbrl::derive_seed(123, 1));
  EXPECT_NE(env_seed(5), 5u);
}

class RunnerThreads : public ::testing::TestWithParam<AgentKind> {};

TEST_P(RunnerThreads, ResultsDoNotDependOnThreadCount) {
  RunLimits limits;
  limits.episodes = 6;
  limits.steps = 3000;
  const auto mdp = slippery_blocking_maze(400);
  const BatchResult one = run_batch(GetParam(), maze_config(5), mdp, seeds(7), limits, 1);
  ASSERT_EQ(one.n_seeds, 7);
  for (int threads : {2, 4, 16}) {
    SCOPED_TRACE(threads);
    expect_same(one, run_batch(GetParam(), maze_config(5), mdp, seeds(7), limits, threads));
  }
  // And each row depends only on its own seed, not on its neighbours or position.
  const BatchResult alone = run_batch(GetParam(), maze_config(5), mdp, {3}, limits, 1);
  for (int64_t e = 0; e < limits.episodes; ++e) EXPECT_EQ(alone.episode_steps[e], one.episode_steps[3 * 6 + e]);
  expect_same(alone.cumulative_reward,
              std::vector<double>(one.cumulative_reward.begin() + 3 * 3000, one.cumulative_reward.begin() + 4 * 3000));
}

INSTANTIATE_TEST_SUITE_P(Kinds, RunnerThreads,
                         ::testing::Values(AgentKind::kDynaQ, AgentKind::kDynaQPlus, AgentKind::kPrioritizedSweeping));

TEST(Runner, MatchesAHandWrittenLoop) {
  // run_batch's episodes are what TabularEnv(mdp, env_seed(seed)) and a fresh agent produce.
  const auto mdp = slippery_blocking_maze(150);
  DynaConfig c = maze_config(5);
  c.seed = 17;
  RunLimits limits;
  limits.episodes = 6;
  const BatchResult r = run_batch(AgentKind::kDynaQ, maze_config(5), mdp, {17}, limits, 1);

  auto agent = make_agent(AgentKind::kDynaQ, c);
  TabularEnv env(mdp, env_seed(17));
  for (int64_t e = 0; e < 6; ++e) {
    int64_t s = env.reset();
    int64_t length = 0;
    bool done = false;
    while (!done) {
      const int64_t a = agent->act(s);
      const TabularEnv::Step step = env.step(a);
      agent->update(s, a, step.reward, step.next, step.terminated);
      s = step.next;
      ++length;
      done = step.terminated;
    }
    EXPECT_EQ(r.episode_steps[e], length) << e;
    EXPECT_EQ(r.episode_returns[e], 1.0);
  }
}

TEST(Runner, EpisodeLimit) {
  RunLimits limits;
  limits.episodes = 3;
  const BatchResult r = run_batch(AgentKind::kDynaQ, maze_config(5), dyna_maze(), seeds(4), limits, 2);
  EXPECT_EQ(r.n_seeds, 4);
  EXPECT_EQ(r.n_episodes, 3);
  EXPECT_EQ(r.n_steps, 0);
  EXPECT_TRUE(r.cumulative_reward.empty());
  EXPECT_EQ(r.episodes_completed, (std::vector<int64_t>{3, 3, 3, 3}));
  ASSERT_EQ(r.episode_steps.size(), 12u);
  for (size_t i = 0; i < 12; ++i) {
    EXPECT_GE(r.episode_steps[i], 14) << i;  // never shorter than the shortest path
    EXPECT_EQ(r.episode_returns[i], 1.0);
  }
}

TEST(Runner, StepLimit) {
  RunLimits limits;
  limits.steps = 700;
  const BatchResult r = run_batch(AgentKind::kDynaQ, maze_config(10), dyna_maze(), seeds(5), limits, 2);
  EXPECT_EQ(r.n_steps, 700);
  ASSERT_EQ(r.cumulative_reward.size(), 5u * 700);
  int64_t most = 0;
  for (int64_t i = 0; i < 5; ++i) {
    const int64_t done = r.episodes_completed[static_cast<size_t>(i)];
    most = std::max(most, done);
    const double* cum = &r.cumulative_reward[static_cast<size_t>(i * 700)];
    int64_t used = 0;
    for (int64_t e = 0; e < done; ++e) used += r.episode_steps[static_cast<size_t>(i * r.n_episodes + e)];
    EXPECT_LE(used, 700);
    // The reward arrives on the last step of each episode, so the running total steps up there.
    int64_t boundary = 0;
    for (int64_t e = 0; e < done; ++e) {
      boundary += r.episode_steps[static_cast<size_t>(i * r.n_episodes + e)];
      EXPECT_EQ(cum[boundary - 1], static_cast<double>(e + 1));
      if (boundary >= 2) {
        EXPECT_EQ(cum[boundary - 2], static_cast<double>(e));
      }
    }
    EXPECT_EQ(cum[699], static_cast<double>(done));  // the partial last episode earned nothing
    for (int64_t e = done; e < r.n_episodes; ++e) {
      EXPECT_EQ(r.episode_steps[static_cast<size_t>(i * r.n_episodes + e)], -1);
      EXPECT_TRUE(std::isnan(r.episode_returns[static_cast<size_t>(i * r.n_episodes + e)]));
    }
  }
  EXPECT_EQ(r.n_episodes, most);  // columns: the most episodes any seed finished
  EXPECT_GT(most, 1);
}

TEST(Runner, EpisodeLimitStopsBeforeStepLimit) {
  RunLimits limits;
  limits.episodes = 2;
  limits.steps = 100000;
  const BatchResult r = run_batch(AgentKind::kDynaQ, maze_config(5), dyna_maze(), seeds(2), limits, 1);
  ASSERT_EQ(r.cumulative_reward.size(), 2u * 100000);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(r.episodes_completed[i], 2);
    const int64_t used = r.episode_steps[i * 2] + r.episode_steps[i * 2 + 1];
    ASSERT_LT(used, 100000);
    const double* cum = &r.cumulative_reward[i * 100000];
    EXPECT_EQ(cum[used - 1], 2.0);
    EXPECT_TRUE(std::isnan(cum[used]));  // never run
    EXPECT_TRUE(std::isnan(cum[99999]));
  }
}

TEST(Runner, StepBudgetEndingMidEpisodeLeavesItUncounted) {
  RunLimits limits;
  limits.steps = 10;
  limits.max_episode_steps = 4;
  DynaConfig c;
  c.n_states = 1;
  c.n_actions = 2;
  const BatchResult r = run_batch(AgentKind::kDynaQ, c, endless(), {0}, limits, 1);
  EXPECT_EQ(r.episodes_completed, (std::vector<int64_t>{2}));  // 4 + 4, then 2 steps of a third
  EXPECT_EQ(r.episode_steps, (std::vector<int64_t>{4, 4}));
  EXPECT_EQ(r.episode_returns, (std::vector<double>{4.0, 4.0}));
  std::vector<double> expected(10);
  std::iota(expected.begin(), expected.end(), 1.0);
  EXPECT_EQ(r.cumulative_reward, expected);
}

TEST(Runner, MaxEpisodeStepsTruncates) {
  RunLimits limits;
  limits.episodes = 3;
  limits.max_episode_steps = 5;
  DynaConfig c;
  c.n_states = 1;
  c.n_actions = 2;
  const BatchResult r = run_batch(AgentKind::kPrioritizedSweeping, c, endless(), seeds(2), limits, 2);
  EXPECT_EQ(r.episode_steps, (std::vector<int64_t>(6, 5)));
  EXPECT_EQ(r.episode_returns, (std::vector<double>(6, 5.0)));

  // On a maze the cap bounds every episode, and short ones are untouched.
  limits.max_episode_steps = 20;
  limits.episodes = 10;
  const BatchResult m = run_batch(AgentKind::kDynaQ, maze_config(0), dyna_maze(), seeds(3), limits, 1);
  bool any_truncated = false;
  for (size_t i = 0; i < m.episode_steps.size(); ++i) {
    EXPECT_LE(m.episode_steps[i], 20);
    if (m.episode_returns[i] == 0.0) {
      EXPECT_EQ(m.episode_steps[i], 20);
      any_truncated = true;
    } else {
      EXPECT_EQ(m.episode_returns[i], 1.0);
    }
  }
  EXPECT_TRUE(any_truncated);
}

TEST(Runner, NoSeedsGivesEmptyResult) {
  RunLimits limits;
  limits.episodes = 3;
  const BatchResult r = run_batch(AgentKind::kDynaQ, maze_config(5), dyna_maze(), {}, limits, 4);
  EXPECT_EQ(r.n_seeds, 0);
  EXPECT_TRUE(r.episode_steps.empty());
  EXPECT_TRUE(r.episodes_completed.empty());
}

// Issue 19: episodes=10**9 with steps=10 sized the result by the episode cap.
TEST(Runner, ResultSizesAreBoundedBeforeRunning) {
  RunLimits limits;
  limits.episodes = int64_t{1} << 62;
  limits.steps = 10;
  const BatchResult r = run_batch(AgentKind::kDynaQ, maze_config(5), dyna_maze(), seeds(2), limits, 1);
  EXPECT_EQ(r.n_episodes, 10);
  EXPECT_EQ(r.episode_steps.size(), 20u);
  limits.steps = int64_t{1} << 27;  // 3 seeds x 2**27 steps: over the limit of 2**28 values
  EXPECT_THROW(run_batch(AgentKind::kDynaQ, maze_config(5), dyna_maze(), seeds(3), limits, 1), std::invalid_argument);
  limits.steps = INT64_MAX;  // seeds * steps would overflow
  EXPECT_THROW(run_batch(AgentKind::kDynaQ, maze_config(5), dyna_maze(), seeds(3), limits, 1), std::invalid_argument);
  RunLimits episodes_only;
  episodes_only.episodes = int64_t{1} << 40;
  EXPECT_THROW(run_batch(AgentKind::kDynaQ, maze_config(5), dyna_maze(), seeds(1), episodes_only, 1),
               std::invalid_argument);
}

TEST(Runner, RejectsMissingLimits) {
  EXPECT_THROW(run_batch(AgentKind::kDynaQ, maze_config(5), dyna_maze(), seeds(2), RunLimits{}, 1),
               std::invalid_argument);
  RunLimits only_cap;
  only_cap.max_episode_steps = 100;
  EXPECT_THROW(run_batch(AgentKind::kDynaQ, maze_config(5), dyna_maze(), seeds(2), only_cap, 1),
               std::invalid_argument);
}

TEST(Runner, RejectsEndlessMDPWithoutAnEpisodeCap) {
  DynaConfig c;
  c.n_states = 1;
  c.n_actions = 2;
  RunLimits episodes_only;
  episodes_only.episodes = 2;
  EXPECT_THROW(run_batch(AgentKind::kDynaQ, c, endless(), {0}, episodes_only, 1), std::invalid_argument);

  RunLimits capped = episodes_only;
  capped.max_episode_steps = 3;
  EXPECT_NO_THROW(run_batch(AgentKind::kDynaQ, c, endless(), {0}, capped, 1));
  RunLimits steps_only;
  steps_only.steps = 5;
  EXPECT_NO_THROW(run_batch(AgentKind::kDynaQ, c, endless(), {0}, steps_only, 1));
  EXPECT_FALSE(termination_always_reachable(*endless()));
  EXPECT_TRUE(termination_always_reachable(*dyna_maze()));
}

TEST(Runner, RejectsRunsThatCouldNeverEnd) {
  RunLimits episodes_only;
  episodes_only.episodes = 1;
  // The goal's own rows terminate, but no path leads there from the start: this used to hang.
  auto walled = std::make_shared<const TabularMDP>(make_maze({"S#G"}));
  DynaConfig c = maze_config(5);
  c.n_states = 3;
  EXPECT_THROW(run_batch(AgentKind::kDynaQ, c, walled, {0}, episodes_only, 1), std::invalid_argument);
  // A greedy agent may loop forever even where the goal is reachable.
  DynaConfig greedy = maze_config(5);
  greedy.epsilon = 0.0;
  EXPECT_THROW(run_batch(AgentKind::kDynaQ, greedy, dyna_maze(), {0}, episodes_only, 1), std::invalid_argument);
  RunLimits capped = episodes_only;
  capped.max_episode_steps = 200;
  EXPECT_NO_THROW(run_batch(AgentKind::kDynaQ, greedy, dyna_maze(), {0}, capped, 1));
  for (int64_t bad : {int64_t{0}, int64_t{-2}}) {
    RunLimits limits = capped;
    limits.max_episode_steps = bad;
    EXPECT_THROW(run_batch(AgentKind::kDynaQ, maze_config(5), dyna_maze(), {0}, limits, 1), std::invalid_argument);
  }
}

TEST(Runner, TerminationMustBeReachableInEveryPhase) {
  // Phase 0 never terminates (every move returns to state 0); phase 1 is a two-cell maze.
  auto t_loop = std::make_shared<const TransitionTable>(2, 4, std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8},
                                                        std::vector<Transition>(8, Transition{1.0, 0, 0.0, false}),
                                                        std::vector<double>{1.0, 0.0});
  auto t_end = make_maze({"SG"});
  EXPECT_FALSE(termination_always_reachable(TabularMDP(t_loop)));
  EXPECT_TRUE(termination_always_reachable(TabularMDP(t_end)));
  auto two_phase = std::make_shared<const TabularMDP>(
      std::vector<std::shared_ptr<const TransitionTable>>{t_loop, t_end}, std::vector<int64_t>{0, 50});
  EXPECT_FALSE(termination_always_reachable(*two_phase));  // conservative: phase 0 alone could trap
  // A terminating outcome with probability 0 does not count.
  auto zero = std::make_shared<const TabularMDP>(std::make_shared<const TransitionTable>(
      1, 1, std::vector<int64_t>{0, 2},
      std::vector<Transition>{{1.0, 0, 0.0, false}, {0.0, 0, 1.0, true}}, std::vector<double>{1.0}));
  EXPECT_FALSE(termination_always_reachable(*zero));
  // A trap reachable from the start (state 1 loops on itself) makes episodes possibly endless.
  auto trap = std::make_shared<const TransitionTable>(
      3, 2, std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6},
      std::vector<Transition>{{1.0, 2, 1.0, true}, {1.0, 1, 0.0, false}, {1.0, 1, 0.0, false},
                              {1.0, 1, 0.0, false}, {1.0, 2, 0.0, true}, {1.0, 2, 0.0, true}},
      std::vector<double>{1.0, 0.0, 0.0});
  EXPECT_FALSE(termination_always_reachable(TabularMDP(trap)));
  EXPECT_TRUE(termination_always_reachable(*std::make_shared<const TabularMDP>(make_maze(blocking_maze_layouts()[1]))));
}

TEST(Runner, RejectsMismatchedOrInvalidConfig) {
  RunLimits limits;
  limits.episodes = 1;
  DynaConfig wrong = maze_config(5);
  wrong.n_states = 53;
  EXPECT_THROW(run_batch(AgentKind::kDynaQ, wrong, dyna_maze(), seeds(1), limits, 1), std::invalid_argument);
  wrong = maze_config(5);
  wrong.n_actions = 5;
  EXPECT_THROW(run_batch(AgentKind::kDynaQ, wrong, dyna_maze(), seeds(1), limits, 1), std::invalid_argument);
  DynaConfig bad = maze_config(5);
  bad.alpha = 0.0;
  EXPECT_THROW(run_batch(AgentKind::kDynaQ, bad, dyna_maze(), seeds(3), limits, 2), std::invalid_argument);
  EXPECT_THROW(run_batch(AgentKind::kPrioritizedSweeping, maze_config(0), dyna_maze(), seeds(3), limits, 2),
               std::invalid_argument);
}

TEST(Runner, BlockingMazeSwitchesWallsAtTheGivenRealStep) {
  // The environment clock runs across episodes, so the right-hand gap closes at real step 1000
  // whatever the episode boundaries. Episodes run wholly before it cannot beat the 10-step path;
  // episodes started after it cannot beat the 16-step detour.
  RunLimits limits;
  limits.steps = 3000;
  for (AgentKind kind : {AgentKind::kDynaQ, AgentKind::kDynaQPlus}) {
    SCOPED_TRACE(agent_kind_name(kind));
    const BatchResult r = run_batch(kind, maze_config(50), blocking_maze(1000), seeds(5), limits, 2);
    int64_t total_before = 0;
    for (int64_t i = 0; i < r.n_seeds; ++i) {
      int64_t clock = 0, before = 0, after = 0;
      for (int64_t e = 0; e < r.episodes_completed[static_cast<size_t>(i)]; ++e) {
        const int64_t length = r.episode_steps[static_cast<size_t>(i * r.n_episodes + e)];
        if (clock + length <= 1000) {
          EXPECT_GE(length, 10);
          ++before;
        } else if (clock >= 1000) {
          EXPECT_GE(length, 16);
          ++after;
        }
        clock += length;
      }
      total_before += before;
      // Dyna-Q+'s exploration bonus reliably finds the new way round (Figure 8.4); plain Dyna-Q
      // may stay stuck for the whole run, so only the bounds above apply to it.
      if (kind == AgentKind::kDynaQPlus) {
        EXPECT_GE(after, 5) << "seed " << i;
      }
      EXPECT_EQ(r.cumulative_reward[static_cast<size_t>(i * 3000 + 2999)],
                static_cast<double>(r.episodes_completed[static_cast<size_t>(i)]));
    }
    EXPECT_GT(total_before, 5);
  }
}

TEST(Runner, DynaQPlusFindsTheShortcutAndDynaQDoesNot) {
  // Figure 8.5: once the right-hand gap opens at step 3000, the 10-step path exists. Dyna-Q's
  // model says the old route is fine and it keeps taking 16+ steps; Dyna-Q+'s bonus sends it to
  // retry the long-untried moves by the wall, and it switches to the shortcut.
  const auto layouts = shortcut_maze_layouts();
  const auto mdp = std::make_shared<const TabularMDP>(
      std::vector<std::shared_ptr<const TransitionTable>>{make_maze(layouts[0]), make_maze(layouts[1])},
      std::vector<int64_t>{0, 3000});
  RunLimits limits;
  limits.steps = 6000;
  auto shortcut_users = [&](AgentKind kind) {
    const BatchResult r = run_batch(kind, maze_config(50), mdp, seeds(10), limits, 2);
    int users = 0;
    for (int64_t i = 0; i < r.n_seeds; ++i) {
      const int64_t n = r.episodes_completed[static_cast<size_t>(i)];
      bool shortcut = false;  // under 16 steps is only possible through the new gap
      for (int64_t e = std::max<int64_t>(0, n - 5); e < n; ++e) {
        shortcut = shortcut || r.episode_steps[static_cast<size_t>(i * r.n_episodes + e)] < 16;
      }
      users += shortcut;
    }
    return users;
  };
  EXPECT_GE(shortcut_users(AgentKind::kDynaQPlus), 8);
  EXPECT_LE(shortcut_users(AgentKind::kDynaQ), 2);
}

double mean_steps(const BatchResult& r, int64_t first_episode, int64_t last_episode) {
  double sum = 0.0;
  int64_t n = 0;
  for (int64_t i = 0; i < r.n_seeds; ++i) {
    for (int64_t e = first_episode - 1; e < last_episode; ++e) {  // 1-based, inclusive
      sum += static_cast<double>(r.episode_steps[static_cast<size_t>(i * r.n_episodes + e)]);
      ++n;
    }
  }
  return sum / static_cast<double>(n);
}

TEST(Runner, PlanningSpeedsUpLearningOnTheDynaMaze) {
  // Sutton & Barto Figure 8.2: with 50 planning steps the agent is near the 14-step path within
  // a few episodes; without planning, episodes 2-5 still take hundreds of steps.
  RunLimits limits;
  limits.episodes = 20;
  const BatchResult planned = run_batch(AgentKind::kDynaQ, maze_config(50), dyna_maze(), seeds(10), limits, 2);
  const BatchResult direct = run_batch(AgentKind::kDynaQ, maze_config(0), dyna_maze(), seeds(10), limits, 2);
  const double planned_late = mean_steps(planned, 10, 20);
  const double planned_early = mean_steps(planned, 2, 5);
  const double direct_early = mean_steps(direct, 2, 5);
  EXPECT_LT(planned_late, 25.0);
  EXPECT_GT(planned_late, 14.0);  // epsilon-greedy cannot beat the shortest path on average
  EXPECT_GT(direct_early, 4.0 * planned_early);
  EXPECT_GT(direct_early, 100.0);
}

}  // namespace
