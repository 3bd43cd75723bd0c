// Many independent seeds of agent-environment interaction, entirely in C++, across threads.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "pymbrl/dyna/dyna_q.h"
#include "pymbrl/dyna/prioritized_sweeping.h"
#include "pymbrl/dyna/tabular_env.h"
#include "pymbrl/dyna/tabular_mdp.h"
#include "pymbrl/rng.h"

namespace pymbrl::dyna {

inline std::unique_ptr<TabularAgent> make_agent(AgentKind kind, const DynaConfig& config) {
  if (kind == AgentKind::kPrioritizedSweeping) return std::make_unique<PrioritizedSweeping>(config);
  return std::make_unique<DynaQ>(config, kind);
}

// The environment of the run with agent seed `seed` draws from this generator seed, so that
// `TabularEnv(mdp, seed)` in Python reproduces a run_batch run step for step.
inline uint64_t env_seed(uint64_t seed) { return derive_seed(seed, 1); }

struct RunLimits {
  int64_t episodes = -1;           // stop after this many episodes (-1: no limit)
  int64_t steps = -1;              // stop after this many real steps (-1: no limit)
  int64_t max_episode_steps = -1;  // truncate longer episodes (-1: never)
};

struct BatchResult {
  int64_t n_seeds = 0;
  int64_t n_episodes = 0;                 // columns of the episode arrays
  int64_t n_steps = 0;                    // columns of cumulative_reward
  // n_episodes: the episode cap, capped in turn by the step budget (an episode takes at least one
  // step); with a step budget only, the most episodes any seed completed.
  std::vector<int64_t> episode_steps;     // [n_seeds, n_episodes], -1 where not completed
  std::vector<double> episode_returns;    // [n_seeds, n_episodes], NaN where not completed
  std::vector<double> cumulative_reward;  // [n_seeds, n_steps], only when limits.steps >= 0; NaN after an early stop
  std::vector<int64_t> episodes_completed;  // [n_seeds]
};

struct SeedTrace {
  std::vector<int64_t> steps;
  std::vector<double> returns;
  std::vector<double> cumulative;
};

inline SeedTrace run_one(AgentKind kind, DynaConfig config, const std::shared_ptr<const TabularMDP>& mdp,
                         uint64_t seed, const RunLimits& limits) {
  config.seed = seed;
  std::unique_ptr<TabularAgent> agent = make_agent(kind, config);
  TabularEnv env(mdp, env_seed(seed));
  SeedTrace trace;
  if (limits.steps >= 0) trace.cumulative.reserve(static_cast<size_t>(limits.steps));
  double total = 0.0;
  auto more_episodes = [&] { return limits.episodes < 0 || static_cast<int64_t>(trace.steps.size()) < limits.episodes; };
  auto more_steps = [&] { return limits.steps < 0 || env.steps() < limits.steps; };
  while (more_episodes() && more_steps()) {
    int64_t s = env.reset();
    int64_t length = 0;
    double ret = 0.0;
    bool done = false;
    while (!done && more_steps()) {
      const int64_t a = agent->act(s);
      const TabularEnv::Step step = env.step(a);
      agent->update(s, a, step.reward, step.next, step.terminated);
      s = step.next;
      ++length;
      ret += step.reward;
      total += step.reward;
      if (limits.steps >= 0) trace.cumulative.push_back(total);
      done = step.terminated || (limits.max_episode_steps >= 0 && length >= limits.max_episode_steps);
    }
    if (!done) break;  // the step budget ran out mid-episode: not a completed episode
    trace.steps.push_back(length);
    trace.returns.push_back(ret);
  }
  return trace;
}

// Runs one fresh agent per seed. Results depend only on the seeds, never on num_threads.
// Throws std::invalid_argument before running or allocating anything when an argument is out of
// range, when a result array would hold more than kMaxResultValues values, or when a reward of
// the MDP exceeds kMaxReward in magnitude.
inline BatchResult run_batch(AgentKind kind, const DynaConfig& config, std::shared_ptr<const TabularMDP> mdp,
                             const std::vector<uint64_t>& seeds, const RunLimits& limits, int64_t num_threads) {
  if (limits.episodes < 0 && limits.steps < 0) throw std::invalid_argument("episodes: expected episodes or steps (or both) to be given");
  if (config.n_states != mdp->n_states() || config.n_actions != mdp->n_actions()) {
    throw std::invalid_argument("mdp: expected " + std::to_string(config.n_states) + " states and " +
                                std::to_string(config.n_actions) + " actions, got " + std::to_string(mdp->n_states()) +
                                " and " + std::to_string(mdp->n_actions()));
  }
  for (const auto& [value, name] : {std::pair{limits.episodes, "episodes"}, std::pair{limits.steps, "steps"},
                                     std::pair{limits.max_episode_steps, "max_episode_steps"}}) {
    if (value == 0 || value < -1) {
      throw std::invalid_argument(std::string(name) + ": expected an integer >= 1 (or no limit), got " + std::to_string(value));
    }
  }
  // Episodes take at least one step each, so a step budget caps the episode columns too.
  const int64_t columns = limits.steps < 0 ? limits.episodes
                          : limits.episodes < 0 ? limits.steps
                                                : std::min(limits.episodes, limits.steps);
  int64_t values = 0;
  if (__builtin_mul_overflow(static_cast<int64_t>(seeds.size()), std::max(columns, limits.steps), &values) ||
      values > kMaxResultValues) {
    throw std::invalid_argument("episodes, steps: expected seeds * max(episodes, steps) <= 2**28 result values, got " +
                                std::to_string(seeds.size()) + " seeds, episodes " + std::to_string(limits.episodes) +
                                ", steps " + std::to_string(limits.steps));
  }
  for (const auto& table : mdp->phases()) {
    for (const Transition& t : table->transitions()) {
      if (!(std::abs(t.reward) <= kMaxReward)) {
        throw std::invalid_argument("mdp: expected rewards with |reward| <= 1e100 (the agents' limit)");
      }
    }
  }
  // Without a step budget or an episode cap, a run ends only if every episode does.
  if (limits.steps < 0 && limits.max_episode_steps < 0) {
    if (!termination_always_reachable(*mdp)) {
      throw std::invalid_argument("max_episode_steps: expected a limit, since the MDP has reachable states "
                                  "from which no episode can end");
    }
    if (config.epsilon <= 0.0) {
      throw std::invalid_argument("max_episode_steps: expected a limit when epsilon is 0, since a greedy policy "
                                  "can loop forever");
    }
  }
  make_agent(kind, config);  // validates the configuration on the calling thread
  std::vector<SeedTrace> traces(seeds.size());
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto worker = [&] {
    for (size_t i = next++; i < seeds.size(); i = next++) {
      try {
        traces[i] = run_one(kind, config, mdp, seeds[i], limits);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
    }
  };
  const size_t n_threads =
      std::max<size_t>(1, std::min<size_t>(static_cast<size_t>(std::max<int64_t>(num_threads, 1)), seeds.size()));
  std::vector<std::thread> threads;
  for (size_t t = 1; t < n_threads; ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);

  BatchResult out;
  out.n_seeds = static_cast<int64_t>(seeds.size());
  out.n_episodes = columns;
  if (limits.episodes < 0) {
    out.n_episodes = 0;
    for (const auto& t : traces) out.n_episodes = std::max<int64_t>(out.n_episodes, static_cast<int64_t>(t.steps.size()));
  }
  out.n_steps = std::max<int64_t>(limits.steps, 0);
  const size_t n_ep = static_cast<size_t>(out.n_episodes);
  out.episode_steps.assign(seeds.size() * n_ep, -1);
  out.episode_returns.assign(seeds.size() * n_ep, std::numeric_limits<double>::quiet_NaN());
  out.cumulative_reward.assign(seeds.size() * static_cast<size_t>(out.n_steps),
                               std::numeric_limits<double>::quiet_NaN());  // steps never run
  for (size_t i = 0; i < seeds.size(); ++i) {
    const SeedTrace& t = traces[i];
    out.episodes_completed.push_back(static_cast<int64_t>(t.steps.size()));
    std::copy(t.steps.begin(), t.steps.end(), out.episode_steps.begin() + static_cast<std::ptrdiff_t>(i * n_ep));
    std::copy(t.returns.begin(), t.returns.end(), out.episode_returns.begin() + static_cast<std::ptrdiff_t>(i * n_ep));
    std::copy(t.cumulative.begin(), t.cumulative.end(),
              out.cumulative_reward.begin() + static_cast<std::ptrdiff_t>(i * static_cast<size_t>(out.n_steps)));
  }
  return out;
}

}  // namespace pymbrl::dyna
