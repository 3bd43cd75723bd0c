#include "pymbrl/replay/game_buffer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/rng.h"
#include "replay_support.h"

namespace {

using pymbrl::Rng;
using pymbrl::replay::GameBuffer;
using pymbrl::replay::GameBufferState;
using pymbrl::replay::GameData;
using pymbrl::replay::GameStore;
using pymbrl::replay::GameStoreConfig;
using pymbrl::replay::GameStoreState;
using pymbrl::replay::TargetConfig;
using pymbrl::replay::TargetOutputs;
using replay_test::chi_square;
using replay_test::chi_square_bound;

constexpr int64_t kActions = 3;
constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

// A game whose observation at position j is the float tag + j, so a gathered observation names
// the position that wrote it. Policies are valid distributions that differ from row to row.
struct TestGame {
  std::vector<float> obs;
  std::vector<int64_t> actions;
  std::vector<float> rewards;
  std::vector<float> root_values;
  std::vector<float> policies;
  bool terminated = true;
  double final_value = 0.0;

  int64_t length() const { return static_cast<int64_t>(actions.size()); }
  GameData data() const {
    GameData d;
    d.obs = reinterpret_cast<const uint8_t*>(obs.data());
    d.actions = actions.data();
    d.rewards = rewards.data();
    d.root_values = root_values.data();
    d.policies = policies.data();
    d.length = length();
    d.terminated = terminated;
    d.final_value = final_value;
    return d;
  }
};

TestGame make_game(int64_t length, float tag, bool terminated = true, double final_value = 0.0) {
  TestGame g;
  g.terminated = terminated;
  g.final_value = final_value;
  for (int64_t j = 0; j < length; ++j) {
    g.obs.push_back(tag + static_cast<float>(j));
    g.actions.push_back(j % kActions);
    g.rewards.push_back(0.25f * static_cast<float>(j + 1));
    g.root_values.push_back(10.0f + static_cast<float>(j));
    const float row[kActions] = {0.5f, 0.25f, 0.25f};
    for (int64_t a = 0; a < kActions; ++a) g.policies.push_back(row[(a + j) % kActions]);
  }
  return g;
}

// Random values, exact in float32 so the reference sums them without a first rounding.
TestGame random_game(Rng& rng, int64_t length, float tag) {
  TestGame g = make_game(length, tag, rng.uniform() < 0.5, std::floor(rng.uniform() * 64.0) / 8.0 - 4.0);
  for (int64_t j = 0; j < length; ++j) {
    g.actions[static_cast<size_t>(j)] = static_cast<int64_t>(rng.uniform_int(kActions));
    g.rewards[static_cast<size_t>(j)] = static_cast<float>(std::floor(rng.uniform() * 64.0) / 16.0 - 2.0);
    g.root_values[static_cast<size_t>(j)] = static_cast<float>(std::floor(rng.uniform() * 256.0) / 16.0 - 8.0);
  }
  return g;
}

GameStoreConfig store_config(int64_t capacity) {
  GameStoreConfig c;
  c.capacity = capacity;
  c.obs_bytes = sizeof(float);
  c.num_actions = kActions;
  return c;
}

TargetConfig target_config(int64_t unroll_steps, int64_t td_steps, double discount) {
  TargetConfig c;
  c.unroll_steps = unroll_steps;
  c.td_steps = td_steps;
  c.discount = discount;
  return c;
}

GameBuffer make_buffer(int64_t capacity, const TargetConfig& targets = target_config(5, 10, 0.997), bool prioritized = false,
                       double alpha = 1.0, double eps = 0.0, uint64_t seed = 1) {
  return GameBuffer(store_config(capacity), targets, prioritized, alpha, eps, seed);
}

// Every output of make_targets for n positions, in vectors.
struct Targets {
  int64_t K = 0;
  std::vector<float> obs;
  std::vector<int64_t> actions;
  std::vector<float> values, rewards, policies, mask, value_mask, reward_mask;
  Targets(int64_t n, int64_t unroll_steps)
      : K(unroll_steps), obs(static_cast<size_t>(n)), actions(static_cast<size_t>(n * K)),
        values(static_cast<size_t>(n * (K + 1))), rewards(values.size()), policies(values.size() * kActions),
        mask(values.size()), value_mask(values.size()), reward_mask(values.size()) {}
  TargetOutputs outputs() {
    TargetOutputs o;
    o.obs = reinterpret_cast<uint8_t*>(obs.data());
    o.actions = actions.data();
    o.values = values.data();
    o.rewards = rewards.data();
    o.policies = policies.data();
    o.mask = mask.data();
    o.value_mask = value_mask.data();
    o.reward_mask = reward_mask.data();
    return o;
  }
  float at(const std::vector<float>& v, int64_t b, int64_t k) const { return v[static_cast<size_t>(b * (K + 1) + k)]; }
};

Targets targets_of(GameBuffer& buf, const std::vector<int64_t>& ids) {
  Targets t(static_cast<int64_t>(ids.size()), buf.targets().unroll_steps);
  pymbrl::replay::make_targets(buf.store(), buf.targets(), buf.rng(), ids.data(), static_cast<int64_t>(ids.size()), t.outputs());
  return t;
}

float obs_of(const GameBuffer& buf, int64_t id) {
  float v;
  buf.store().gather_obs(&id, 1, reinterpret_cast<uint8_t*>(&v));
  return v;
}

bool same_state(const GameBufferState& a, const GameBufferState& b) {
  const GameStoreState& x = a.store;
  const GameStoreState& y = b.store;
  return x.oldest_id == y.oldest_id && x.end_id == y.end_id && x.games_added == y.games_added && x.game_starts == y.game_starts &&
         x.game_lengths == y.game_lengths && x.game_terminated == y.game_terminated && x.game_final_values == y.game_final_values &&
         x.obs == y.obs && x.actions == y.actions && x.rewards == y.rewards && x.root_values == y.root_values &&
         x.policies == y.policies && a.priorities == b.priorities && a.max_priority == b.max_priority && a.rng == b.rng;
}

// The target rules written out from the documented formulas, one position at a time.
struct Expected {
  double value;
  float value_mask;
  double reward;
  float reward_mask;
  float mask;
};
Expected expected_target(const TestGame& g, int64_t t, int64_t k, int64_t n, double d) {
  const int64_t T = g.length();
  const int64_t u = t + k;
  Expected e{0.0, g.terminated ? 1.0f : 0.0f, 0.0, 0.0f, 0.0f};
  if (u < T) {
    e.value_mask = 1.0f;
    e.mask = 1.0f;
    for (int64_t i = 0; i < n && u + i < T; ++i) e.value += std::pow(d, static_cast<double>(i)) * g.rewards[static_cast<size_t>(u + i)];
    if (u + n < T) e.value += std::pow(d, static_cast<double>(n)) * g.root_values[static_cast<size_t>(u + n)];
    else if (!g.terminated) e.value += std::pow(d, static_cast<double>(T - u)) * static_cast<float>(g.final_value);
  }
  if (k >= 1) {
    if (u - 1 < T) {
      e.reward = g.rewards[static_cast<size_t>(u - 1)];
      e.reward_mask = 1.0f;
    } else {
      e.reward_mask = g.terminated ? 1.0f : 0.0f;
    }
  }
  return e;
}

// --- construction and storage ------------------------------------------------------------------

TEST(GameStore, ConstructorValidates) {
  EXPECT_NO_THROW(make_buffer(1));
  EXPECT_THROW(make_buffer(0), std::invalid_argument);
  GameStoreConfig no_obs = store_config(8);
  no_obs.obs_bytes = 0;
  EXPECT_THROW(GameStore{no_obs}, std::invalid_argument);
  GameStoreConfig no_actions = store_config(8);
  no_actions.num_actions = 0;
  EXPECT_THROW(GameStore{no_actions}, std::invalid_argument);
  EXPECT_THROW(make_buffer(int64_t{1} << 40), std::invalid_argument);
  EXPECT_NO_THROW(make_buffer(8, target_config(0, 1, -1.0)));
  EXPECT_NO_THROW(make_buffer(8, target_config(0, 1, 0.0)));
  EXPECT_THROW(make_buffer(8, target_config(-1, 10, 0.9)), std::invalid_argument);
  EXPECT_THROW(make_buffer(8, target_config(5, 0, 0.9)), std::invalid_argument);
  EXPECT_THROW(make_buffer(8, target_config(5, 10, 1.01)), std::invalid_argument);
  EXPECT_THROW(make_buffer(8, target_config(5, 10, -1.01)), std::invalid_argument);
  EXPECT_THROW(make_buffer(8, target_config(5, 10, kNan)), std::invalid_argument);
  EXPECT_THROW(make_buffer(8, target_config(5, 10, 0.9), true, -0.5), std::invalid_argument);
  EXPECT_THROW(make_buffer(8, target_config(5, 10, 0.9), true, 1.0, -1e-6), std::invalid_argument);
}

// Sizes that used to wrap (num_actions near 2^62 made the per-position size small or negative).
TEST(GameStore, ConstructorRefusesSizesThatOverflowNamingTheArgument) {
  auto message = [](auto make) -> std::string {
    try {
      make();
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "accepted";
  };
  GameStoreConfig c = store_config(8);
  c.num_actions = int64_t{1} << 62;
  EXPECT_EQ(message([&] { GameStore s{c}; }).rfind("num_actions: expected at most 2^38", 0), 0u);
  c.num_actions = int64_t{1} << 37;  // fits alone, not with 8 positions
  EXPECT_EQ(message([&] { GameStore s{c}; }).rfind("capacity: expected capacity * ", 0), 0u);
  c = store_config(8);
  c.obs_bytes = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(message([&] { GameStore s{c}; }).rfind("obs_shape, num_actions: expected", 0), 0u);
  c = store_config(std::numeric_limits<int64_t>::max());
  EXPECT_EQ(message([&] { GameStore s{c}; }).rfind("capacity: expected", 0), 0u);
  // A prioritized buffer also bounds its trees.
  EXPECT_NO_THROW(make_buffer(int64_t{1} << 20, target_config(5, 10, 0.9), true));
  EXPECT_EQ(message([] { make_buffer(int64_t{1} << 34, target_config(5, 10, 0.9), true); }).rfind("capacity: expected at most 2^40 / 147", 0), 0u);
  EXPECT_EQ(message([] { make_buffer(8, target_config(int64_t{1} << 40, 10, 0.9)); }).rfind("unroll_steps: expected an integer in [0, 65536]", 0), 0u);
  EXPECT_EQ(message([] { make_buffer(8, target_config(5, std::numeric_limits<int64_t>::max(), 0.9)); }).rfind("td_steps: expected", 0), 0u);
  EXPECT_NO_THROW(make_buffer(8, target_config(1 << 16, int64_t{1} << 62, 0.9)));
}

// A sample's size used to be unbounded: sample(10^9) allocated its outputs before anything else.
TEST(GameStorePriorities, BatchSizeIsBoundedBeforeAnythingIsDrawn) {
  GameBuffer buf = make_buffer(8, target_config(1, 1, 1.0), true);
  buf.add_game(make_game(2, 0.0f).data());
  const Rng::State before = buf.rng().state();
  int64_t id;
  float w;
  EXPECT_THROW(buf.sample_ids(GameBuffer::kMaxBatchSize + 1, 1.0, &id, &w), std::invalid_argument);
  EXPECT_THROW(buf.sample_ids(int64_t{1} << 62, 1.0, &id, &w), std::invalid_argument);
  EXPECT_EQ(buf.rng().state(), before);
  EXPECT_EQ(buf.batch_bytes(1), 4 + 8 + 20 * 2 + 4 * 2 * kActions + 12);
  // Wide policies reach the byte limit first.
  GameStoreConfig wide = store_config(4);
  wide.num_actions = int64_t{1} << 24;
  GameBuffer big(wide, target_config(5, 10, 0.9), false, 1.0, 0.0, 1);
  EXPECT_NO_THROW(big.batch_bytes(4));
  try {
    big.batch_bytes(1 << 14);
    ADD_FAILURE() << "accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).rfind("batch_size: expected a batch of at most 2^32 bytes", 0), 0u) << e.what();
  }
}

TEST(GameStore, AddGameHandsOutConsecutiveIdsAndEvictsWholeOldestGames) {
  GameBuffer buf = make_buffer(10);
  EXPECT_EQ(buf.add_game(make_game(4, 100.0f).data()), 0);
  EXPECT_EQ(buf.add_game(make_game(3, 200.0f).data()), 4);
  EXPECT_EQ(buf.add_game(make_game(2, 300.0f).data()), 7);
  EXPECT_EQ(buf.store().size(), 9);
  EXPECT_EQ(buf.store().num_games(), 3);
  EXPECT_EQ(obs_of(buf, 5), 201.0f);
  // 3 more positions need 12 slots: the whole first game goes, though one position would do.
  EXPECT_EQ(buf.add_game(make_game(3, 400.0f).data()), 9);
  EXPECT_EQ(buf.store().oldest_id(), 4);
  EXPECT_EQ(buf.store().size(), 8);
  EXPECT_EQ(buf.store().num_games(), 3);
  for (int64_t id = 4; id < 12; ++id) EXPECT_TRUE(buf.store().stored(id)) << id;
  EXPECT_FALSE(buf.store().stored(3));
  EXPECT_EQ(obs_of(buf, 11), 402.0f);  // slot 1, once position 1 of the first game
  const int64_t ids[] = {11, 4, 8, 9};
  int64_t starts[4], lengths[4];
  buf.store().game_spans(ids, 4, starts, lengths);
  EXPECT_EQ(std::vector<int64_t>(starts, starts + 4), (std::vector<int64_t>{9, 4, 7, 9}));
  EXPECT_EQ(std::vector<int64_t>(lengths, lengths + 4), (std::vector<int64_t>{3, 3, 2, 3}));
  // A game of exactly the capacity evicts everything else.
  EXPECT_EQ(buf.add_game(make_game(10, 500.0f).data()), 12);
  EXPECT_EQ(buf.store().oldest_id(), 12);
  EXPECT_EQ(buf.store().num_games(), 1);
  for (int64_t id = 12; id < 22; ++id) EXPECT_EQ(obs_of(buf, id), 500.0f + static_cast<float>(id - 12)) << id;
  // One longer than the capacity is refused.
  EXPECT_THROW(buf.add_game(make_game(11, 600.0f).data()), std::invalid_argument);
  EXPECT_EQ(buf.store().end_id(), 22);
}

TEST(GameStore, EvictionKeepsGamesIntactOverManyWraps) {
  Rng rng(3);
  GameBuffer buf = make_buffer(17);
  std::vector<std::pair<int64_t, TestGame>> added;  // first id, game
  for (int i = 0; i < 200; ++i) {
    const TestGame g = random_game(rng, 1 + static_cast<int64_t>(rng.uniform_int(9)), 1000.0f * static_cast<float>(i));
    added.emplace_back(buf.add_game(g.data()), g);
    // The stored games are the newest ones that fit together.
    int64_t total = 0;
    size_t kept = 0;
    for (auto it = added.rbegin(); it != added.rend() && total + it->second.length() <= 17; ++it, ++kept) total += it->second.length();
    ASSERT_EQ(buf.store().size(), total) << i;
    ASSERT_EQ(buf.store().num_games(), static_cast<int64_t>(kept)) << i;
    for (size_t j = added.size() - kept; j < added.size(); ++j) {
      const auto& [first, game] = added[j];
      for (int64_t p = 0; p < game.length(); ++p) ASSERT_EQ(obs_of(buf, first + p), game.obs[static_cast<size_t>(p)]);
      ASSERT_EQ(buf.store().game_of(first + game.length() - 1).start, first);
    }
  }
}

TEST(GameStore, RejectsBadGamesNamingTheArgumentAndRowAndChangesNothing) {
  GameBuffer buf = make_buffer(12, target_config(2, 3, 0.9), true, 0.5, 0.01);
  buf.add_game(make_game(5, 0.0f).data());
  const GameBufferState before = buf.state();
  struct Case {
    std::string what;
    TestGame game;
    std::string message;
  };
  std::vector<Case> cases;
  auto bad = [&](std::string what, auto change, std::string message) {
    TestGame g = make_game(4, 50.0f, false, 1.0);
    change(g);
    cases.push_back({std::move(what), g, std::move(message)});
  };
  bad("empty", [](TestGame& g) { g = make_game(0, 0.0f); }, "obs: expected a game of at least one position");
  bad("too long", [](TestGame& g) { g = make_game(13, 0.0f); }, "obs: expected a game of at most 12 positions");
  bad("action -1", [](TestGame& g) { g.actions[2] = -1; }, "actions: expected integers in [0, 3), got -1 at row 2");
  bad("action 3", [](TestGame& g) { g.actions[0] = 3; }, "actions: expected integers in [0, 3), got 3 at row 0");
  bad("nan reward", [](TestGame& g) { g.rewards[3] = NAN; }, "rewards: expected finite values of magnitude <= 1e25, got nan at row 3");
  bad("inf root value", [](TestGame& g) { g.root_values[1] = INFINITY; }, "root_values: expected finite values of magnitude <= 1e25, got inf at row 1");
  bad("negative policy", [](TestGame& g) { g.policies[2 * kActions + 1] = -0.25f; }, "policies: expected finite probabilities >= 0");
  bad("nan policy", [](TestGame& g) { g.policies[kActions] = NAN; }, "at row 1");
  bad("policy sum", [](TestGame& g) { g.policies[3 * kActions] = 0.49f; }, "policies: expected rows summing to 1 (within 1e-3)");
  bad("nan final value", [](TestGame& g) { g.final_value = kNan; }, "final_value: expected a finite");
  bad("final value past float32", [](TestGame& g) { g.final_value = 1e39; }, "final_value");
  // Finite but so large that an n-step sum of them could overflow float32.
  bad("huge reward", [](TestGame& g) { g.rewards[1] = 3e38f; }, "rewards: expected finite values of magnitude <= 1e25, got");
  bad("huge root value", [](TestGame& g) { g.root_values[0] = -1e26f; }, "root_values: expected finite values of magnitude <= 1e25");
  bad("huge final value", [](TestGame& g) { g.final_value = 1e30; }, "final_value: expected a finite value of magnitude <= 1e25");
  for (const Case& c : cases) {
    try {
      buf.add_game(c.game.data());
      ADD_FAILURE() << c.what << ": accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos) << c.what << ": " << e.what();
    }
    EXPECT_TRUE(same_state(before, buf.state())) << c.what;
  }
  // A policy row a little off 1 (float32 rounding of counts) is fine.
  TestGame g = make_game(2, 0.0f);
  g.policies[0] += 0.0009f;
  EXPECT_NO_THROW(buf.add_game(g.data()));
}

TEST(GameStore, ClearForgetsGamesButKeepsCountingIds) {
  GameBuffer buf = make_buffer(8, target_config(1, 1, 1.0), true);
  buf.add_game(make_game(3, 0.0f).data());
  const int64_t id = 2;
  const double p = 5.0;
  buf.update_priorities(&id, &p, 1);
  buf.clear();
  EXPECT_EQ(buf.store().size(), 0);
  EXPECT_EQ(buf.store().num_games(), 0);
  EXPECT_EQ(buf.priorities().total(), 0.0);
  EXPECT_EQ(buf.priorities().max_priority(), 1.0);
  int64_t out;
  float w;
  EXPECT_THROW(buf.sample_ids(1, 1.0, &out, &w), std::invalid_argument);
  EXPECT_THROW(buf.update_priorities(&id, &p, 1), std::invalid_argument);
  EXPECT_EQ(buf.add_game(make_game(2, 10.0f).data()), 3);
  EXPECT_FALSE(buf.store().stored(2));
  EXPECT_EQ(obs_of(buf, 4), 11.0f);
}

// --- targets -----------------------------------------------------------------------------------

// Rewards 1, 2, 3, 4 and root values 10, 20, 30, 40 with d = 0.5 and n = 2: every sum is exact.
TestGame small_game(bool terminated, double final_value) {
  TestGame g = make_game(4, 0.0f, terminated, final_value);
  g.rewards = {1.0f, 2.0f, 3.0f, 4.0f};
  g.root_values = {10.0f, 20.0f, 30.0f, 40.0f};
  g.actions = {2, 0, 1, 2};
  return g;
}

TEST(GameStoreTargets, HandComputedTerminatedGame) {
  GameBuffer buf = make_buffer(16, target_config(3, 2, 0.5));
  buf.add_game(small_game(true, 0.0).data());
  const Targets t = targets_of(buf, {1});
  // u=1: 2 + 0.5*3 + 0.25*40; u=2: 3 + 0.5*4 (the game ends before u+n); u=3: 4; u=4: past the end.
  EXPECT_EQ(t.values, (std::vector<float>{13.5f, 5.0f, 4.0f, 0.0f}));
  EXPECT_EQ(t.value_mask, (std::vector<float>{1, 1, 1, 1}));  // the absorbing state's value 0 is trained
  EXPECT_EQ(t.rewards, (std::vector<float>{0.0f, 2.0f, 3.0f, 4.0f}));
  EXPECT_EQ(t.reward_mask, (std::vector<float>{0, 1, 1, 1}));
  EXPECT_EQ(t.mask, (std::vector<float>{1, 1, 1, 0}));
  EXPECT_EQ(t.actions, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(t.obs[0], 1.0f);
  const float p1[] = {0.25f, 0.25f, 0.5f};  // row 1 of make_game's rotation
  for (int64_t a = 0; a < kActions; ++a) EXPECT_EQ(t.policies[static_cast<size_t>(a)], p1[a]);
  for (int64_t a = 0; a < kActions; ++a) EXPECT_EQ(t.policies[static_cast<size_t>(3 * kActions + a)], 0.0f);

  const Targets last = targets_of(buf, {3});
  EXPECT_EQ(last.values, (std::vector<float>{4.0f, 0.0f, 0.0f, 0.0f}));
  EXPECT_EQ(last.value_mask, (std::vector<float>{1, 1, 1, 1}));
  EXPECT_EQ(last.rewards, (std::vector<float>{0.0f, 4.0f, 0.0f, 0.0f}));
  EXPECT_EQ(last.reward_mask, (std::vector<float>{0, 1, 1, 1}));
  EXPECT_EQ(last.mask, (std::vector<float>{1, 0, 0, 0}));
  EXPECT_EQ(last.actions[0], 2);
}

TEST(GameStoreTargets, HandComputedCutGameBootstrapsFromTheFinalValue) {
  GameBuffer buf = make_buffer(16, target_config(3, 2, 0.5));
  buf.add_game(small_game(false, 8.0).data());
  const Targets t = targets_of(buf, {1});
  // u=2: 3 + 0.5*4 + 0.5^2*8; u=3: 4 + 0.5*8.
  EXPECT_EQ(t.values, (std::vector<float>{13.5f, 7.0f, 8.0f, 0.0f}));
  EXPECT_EQ(t.value_mask, (std::vector<float>{1, 1, 1, 0}));  // past the end of a cut game: unknown
  EXPECT_EQ(t.rewards, (std::vector<float>{0.0f, 2.0f, 3.0f, 4.0f}));
  EXPECT_EQ(t.reward_mask, (std::vector<float>{0, 1, 1, 1}));  // r[3] is known though u = 4 is past the end
  const Targets last = targets_of(buf, {3});
  EXPECT_EQ(last.values, (std::vector<float>{8.0f, 0.0f, 0.0f, 0.0f}));
  EXPECT_EQ(last.value_mask, (std::vector<float>{1, 0, 0, 0}));
  EXPECT_EQ(last.reward_mask, (std::vector<float>{0, 1, 0, 0}));
  EXPECT_EQ(last.rewards, (std::vector<float>{0.0f, 4.0f, 0.0f, 0.0f}));
  // Past the end the unroll goes on with random actions.
  for (int64_t k = 1; k < 3; ++k) {
    EXPECT_GE(last.actions[static_cast<size_t>(k)], 0);
    EXPECT_LT(last.actions[static_cast<size_t>(k)], kActions);
  }
}

// td_steps far beyond every game used to size a vector of td + 1 powers per sample.
TEST(GameStoreTargets, HugeTdStepsGiveTheMonteCarloReturnWithoutAllocatingForIt) {
  GameBuffer buf = make_buffer(8, target_config(1, int64_t{1} << 62, 0.5));
  const TestGame g = small_game(false, 8.0);
  buf.add_game(g.data());
  const Targets t = targets_of(buf, {0, 3});
  // 1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 4 + 0.0625 * 8, and from position 3: 4 + 0.5 * 8.
  EXPECT_EQ(t.at(t.values, 0, 0), 3.75f);
  EXPECT_EQ(t.at(t.values, 1, 0), 8.0f);
}

TEST(GameStoreTargets, TwoPlayerValuesAlternateSign) {
  // The mover at the last position wins (+1); with d = -1 every earlier position sees the value
  // from its own mover's side.
  for (bool terminated : {true, false}) {
    GameBuffer buf = make_buffer(16, target_config(0, 10, -1.0));
    TestGame g = make_game(5, 0.0f, terminated, terminated ? 0.0 : 0.5);
    g.rewards = {0.0f, 0.0f, 0.0f, 0.0f, 1.0f};
    buf.add_game(g.data());
    const Targets t = targets_of(buf, {0, 1, 2, 3, 4});
    // (-1)^(4-u) from the win, and for the cut game (-1)^(5-u) * 0.5 from the final value.
    const float cut = terminated ? 0.0f : 0.5f;
    EXPECT_EQ(t.values, (std::vector<float>{1.0f - cut, -1.0f + cut, 1.0f - cut, -1.0f + cut, 1.0f - cut})) << terminated;
  }
  // A bootstrap inside the game: n = 1 gives r_u - v_{u+1}.
  GameBuffer buf = make_buffer(16, target_config(0, 1, -1.0));
  buf.add_game(small_game(true, 0.0).data());
  EXPECT_EQ(targets_of(buf, {0, 1, 2, 3}).values, (std::vector<float>{1.0f - 20.0f, 2.0f - 30.0f, 3.0f - 40.0f, 4.0f}));
}

TEST(GameStoreTargets, TdStepsLongerThanTheGame) {
  const double d = 0.997;
  for (bool terminated : {true, false}) {
    GameBuffer buf = make_buffer(16, target_config(2, 50, d));
    const TestGame g = small_game(terminated, -3.0);
    buf.add_game(g.data());
    const Targets t = targets_of(buf, {0, 2});
    const double tail = terminated ? 0.0 : -3.0;
    const double v0 = 1 + d * 2 + d * d * 3 + d * d * d * 4 + std::pow(d, 4) * tail;
    const double v2 = 3 + d * 4 + d * d * tail;
    EXPECT_FLOAT_EQ(t.at(t.values, 0, 0), static_cast<float>(v0));
    EXPECT_FLOAT_EQ(t.at(t.values, 1, 0), static_cast<float>(v2));
    EXPECT_FLOAT_EQ(t.at(t.values, 1, 1), static_cast<float>(4 + d * tail));
    EXPECT_EQ(t.at(t.value_mask, 1, 2), terminated ? 1.0f : 0.0f);
  }
}

// Every position of random games (wrapping the ring, evicting) against the formulas written out
// in expected_target, for several unroll lengths, td steps and discounts.
TEST(GameStoreTargets, MatchTheRulesOnRandomGames) {
  Rng rng(11);
  const std::vector<TargetConfig> configs = {target_config(5, 10, 0.997), target_config(3, 2, -1.0), target_config(0, 1, 0.5),
                                             target_config(6, 4, 0.0), target_config(2, 30, 1.0)};
  for (const TargetConfig& c : configs) {
    GameBuffer buf = make_buffer(23, c);
    std::map<int64_t, std::pair<int64_t, TestGame>> games;  // first id -> (first id, game)
    for (int i = 0; i < 30; ++i) {
      const TestGame g = random_game(rng, 1 + static_cast<int64_t>(rng.uniform_int(12)), 100.0f * static_cast<float>(i));
      const int64_t first = buf.add_game(g.data());
      games[first] = {first, g};
      std::vector<int64_t> ids;
      for (int64_t id = buf.store().oldest_id(); id < buf.store().end_id(); ++id) ids.push_back(id);
      const Targets t = targets_of(buf, ids);
      for (size_t b = 0; b < ids.size(); ++b) {
        const auto& [start, game] = std::prev(games.upper_bound(ids[b]))->second;
        const int64_t pos = ids[b] - start;
        ASSERT_EQ(t.obs[b], game.obs[static_cast<size_t>(pos)]);
        for (int64_t k = 0; k <= c.unroll_steps; ++k) {
          const Expected e = expected_target(game, pos, k, c.td_steps, c.discount);
          const std::string where = "id " + std::to_string(ids[b]) + " k " + std::to_string(k);
          const int64_t bi = static_cast<int64_t>(b);
          ASSERT_NEAR(t.at(t.values, bi, k), e.value, 1e-5 * (1.0 + std::abs(e.value))) << where;
          ASSERT_EQ(t.at(t.value_mask, bi, k), e.value_mask) << where;
          ASSERT_EQ(t.at(t.rewards, bi, k), static_cast<float>(e.reward)) << where;
          ASSERT_EQ(t.at(t.reward_mask, bi, k), e.reward_mask) << where;
          ASSERT_EQ(t.at(t.mask, bi, k), e.mask) << where;
          const int64_t u = pos + k;
          for (int64_t a = 0; a < kActions; ++a) {
            const float want = u < game.length() ? game.policies[static_cast<size_t>(u * kActions + a)] : 0.0f;
            ASSERT_EQ(t.policies[static_cast<size_t>((bi * (c.unroll_steps + 1) + k) * kActions + a)], want) << where;
          }
          if (k < c.unroll_steps) {
            const int64_t action = t.actions[static_cast<size_t>(bi * c.unroll_steps + k)];
            if (u < game.length()) {
              ASSERT_EQ(action, game.actions[static_cast<size_t>(u)]) << where;
            } else {
              ASSERT_TRUE(action >= 0 && action < kActions) << where;
            }
          }
        }
      }
    }
  }
}

TEST(GameStoreTargets, UpdateTargetsRewritesRootValuesAndPoliciesInPlace) {
  GameBuffer buf = make_buffer(16, target_config(1, 2, 0.5));
  buf.add_game(small_game(true, 0.0).data());
  EXPECT_EQ(targets_of(buf, {0}).values[0], 1.0f + 1.0f + 0.25f * 30.0f);
  const int64_t ids[] = {2, 1};
  const float roots[] = {-6.0f, 100.0f};
  const float policies[] = {1.0f, 0.0f, 0.0f, 0.0f, 0.0f, 1.0f};
  buf.update_targets(ids, roots, policies, 2);
  const Targets t = targets_of(buf, {0});
  EXPECT_EQ(t.values[0], 1.0f + 1.0f + 0.25f * -6.0f);
  EXPECT_EQ(std::vector<float>(t.policies.begin() + kActions, t.policies.end()), (std::vector<float>{0.0f, 0.0f, 1.0f}));
  // u=1 bootstraps from position 3, whose value was not rewritten.
  EXPECT_EQ(t.values[1], 2.0f + 1.5f + 0.25f * 40.0f);
  // Bad rows change nothing, whichever row is bad.
  const GameBufferState before = buf.state();
  const float bad_roots[] = {1.0f, NAN};
  const float bad_policies[] = {1.0f, 0.0f, 0.0f, 0.5f, 0.0f, 0.0f};
  const int64_t stale[] = {1, 99};
  EXPECT_THROW(buf.update_targets(ids, bad_roots, policies, 2), std::invalid_argument);
  EXPECT_THROW(buf.update_targets(ids, roots, bad_policies, 2), std::invalid_argument);
  EXPECT_THROW(buf.update_targets(stale, roots, policies, 2), std::invalid_argument);
  EXPECT_TRUE(same_state(before, buf.state()));
}

// --- ids, priorities, sampling ------------------------------------------------------------------

TEST(GameStorePriorities, StaleIdsAreRejectedEverywhere) {
  GameBuffer buf = make_buffer(6, target_config(1, 1, 1.0), true, 1.0, 0.0);
  buf.add_game(make_game(4, 0.0f).data());  // ids 0..3
  buf.add_game(make_game(4, 10.0f).data());  // evicts the first game: ids 4..7 in slots 4, 5, 0, 1
  const GameBufferState before = buf.state();
  const float root = 0.0f;
  const float policy[] = {1.0f, 0.0f, 0.0f};
  const double p = 2.0;
  float obs;
  for (int64_t id : {int64_t{0}, int64_t{3}, int64_t{-1}, int64_t{8}, int64_t{1000}}) {
    EXPECT_THROW(buf.update_priorities(&id, &p, 1), std::invalid_argument) << id;
    EXPECT_THROW(buf.update_targets(&id, &root, policy, 1), std::invalid_argument) << id;
    EXPECT_THROW(buf.store().gather_obs(&id, 1, reinterpret_cast<uint8_t*>(&obs)), std::invalid_argument) << id;
    int64_t start, length;
    EXPECT_THROW(buf.store().game_spans(&id, 1, &start, &length), std::invalid_argument) << id;
    EXPECT_TRUE(same_state(before, buf.state())) << id;
  }
  try {
    const int64_t ids[] = {5, 1};
    const double ps[] = {1.0, 1.0};
    buf.update_priorities(ids, ps, 2);
    ADD_FAILURE() << "stale id accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "indices: expected ids of stored positions (in [4, 8)), got 1 at row 1 (evicted or cleared)");
  }
  EXPECT_TRUE(same_state(before, buf.state()));
  for (int64_t id = 4; id < 8; ++id) EXPECT_NO_THROW(buf.update_priorities(&id, &p, 1));
}

TEST(GameStorePriorities, NewPositionsGetTheMaximumOrTheirOwnAndEvictedOnesLeave) {
  const double alpha = 0.5, eps = 0.25;
  GameBuffer buf = make_buffer(8, target_config(1, 1, 1.0), true, alpha, eps);
  buf.add_game(make_game(3, 0.0f).data());
  for (int64_t id = 0; id < 3; ++id) EXPECT_EQ(buf.priority(id), 1.0) << id;
  const int64_t id = 1;
  const double p = 8.75;  // + eps = 9, ^alpha = 3
  buf.update_priorities(&id, &p, 1);
  EXPECT_DOUBLE_EQ(buf.priority(1), 3.0);
  EXPECT_EQ(buf.priorities().max_priority(), 9.0);
  buf.add_game(make_game(2, 10.0f).data());
  EXPECT_DOUBLE_EQ(buf.priority(3), 3.0);
  EXPECT_DOUBLE_EQ(buf.priority(4), 3.0);
  const double own[] = {0.0, 15.75, 1.75};  // + eps: 0.25, 16, 2
  buf.add_game(make_game(3, 20.0f).data(), own);
  EXPECT_DOUBLE_EQ(buf.priority(5), 0.5);
  EXPECT_DOUBLE_EQ(buf.priority(6), 4.0);
  EXPECT_DOUBLE_EQ(buf.priority(7), std::sqrt(2.0));
  EXPECT_EQ(buf.priorities().max_priority(), 16.0);
  EXPECT_DOUBLE_EQ(buf.priorities().total(), 1.0 + 3.0 + 1.0 + 3.0 + 3.0 + 0.5 + 4.0 + std::sqrt(2.0));
  // A game of 4 evicts the first two games (5 positions); 3 of their slots stay empty.
  buf.add_game(make_game(4, 30.0f).data());
  EXPECT_EQ(buf.store().oldest_id(), 5);
  EXPECT_DOUBLE_EQ(buf.priorities().total(), 0.5 + 4.0 + std::sqrt(2.0) + 4 * 4.0);
  for (int64_t id2 = 0; id2 < 5; ++id2) EXPECT_EQ(buf.priority(id2), 0.0);
  // Priorities for a buffer that is not prioritized, or bad ones, are refused before anything changes.
  GameBuffer plain = make_buffer(8);
  EXPECT_THROW(plain.add_game(make_game(3, 0.0f).data(), own), std::invalid_argument);
  EXPECT_EQ(plain.store().size(), 0);
  EXPECT_THROW(plain.update_priorities(&id, &p, 1), std::invalid_argument);
  const GameBufferState before = buf.state();
  for (double bad : {-1.0, kNan, std::numeric_limits<double>::infinity()}) {
    const double given[] = {1.0, bad};
    EXPECT_THROW(buf.add_game(make_game(2, 0.0f).data(), given), std::invalid_argument) << bad;
    const int64_t ids[] = {5, 6};
    EXPECT_THROW(buf.update_priorities(ids, given, 2), std::invalid_argument) << bad;
    EXPECT_TRUE(same_state(before, buf.state())) << bad;
  }
  // With eps = 0 a priority of 0 would make a position impossible to draw.
  GameBuffer no_eps = make_buffer(8, target_config(1, 1, 1.0), true, 1.0, 0.0);
  no_eps.add_game(make_game(2, 0.0f).data());
  const int64_t first = 0;
  const double zero = 0.0;
  EXPECT_THROW(no_eps.update_priorities(&first, &zero, 1), std::invalid_argument);
}

// Draws `draws` positions in batches and counts them.
std::map<int64_t, double> draw_counts(GameBuffer& buf, int64_t batch, int64_t draws, double beta) {
  std::map<int64_t, double> counts;
  std::vector<int64_t> ids(static_cast<size_t>(batch));
  std::vector<float> w(static_cast<size_t>(batch));
  for (int64_t done = 0; done < draws; done += batch) {
    buf.sample_ids(batch, beta, ids.data(), w.data());
    for (int64_t id : ids) counts[id] += 1.0;
  }
  return counts;
}

TEST(GameStorePriorities, SampleFrequenciesFollowPriorityToTheAlpha) {
  const double alpha = 0.7;
  GameBuffer buf = make_buffer(40, target_config(5, 10, 0.997), true, alpha, 0.0, 77);  // 40 slots: not a power of 8
  Rng data(1);
  for (int i = 0; i < 12; ++i) buf.add_game(make_game(1 + static_cast<int64_t>(data.uniform_int(8)), 0.0f).data());
  std::map<int64_t, double> p;
  for (int64_t id = buf.store().oldest_id(); id < buf.store().end_id(); ++id) {
    p[id] = id == buf.store().oldest_id() + 3 ? 0.001 : 0.05 + 5.0 * data.uniform();  // a rare one
    buf.update_priorities(&id, &p[id], 1);
  }
  double z = 0.0;
  for (const auto& [id, v] : p) z += std::pow(v, alpha);
  const int64_t draws = 200000;
  const auto counts = draw_counts(buf, 50, draws, 0.4);
  std::vector<double> observed, expected;
  double rare_expected = 0.0, rare_observed = 0.0;
  for (const auto& [id, v] : p) {
    const double e = static_cast<double>(draws) * std::pow(v, alpha) / z;
    const double o = counts.count(id) ? counts.at(id) : 0.0;
    if (e >= 5.0) {
      observed.push_back(o);
      expected.push_back(e);
    } else {
      rare_expected += e;
      rare_observed += o;
    }
  }
  for (const auto& [id, c] : counts) EXPECT_TRUE(buf.store().stored(id)) << id;
  EXPECT_LT(chi_square(observed, expected), chi_square_bound(static_cast<double>(observed.size()) - 1.0));
  EXPECT_LT(rare_observed, rare_expected + 10.0 * std::sqrt(rare_expected) + 5.0);
}

TEST(GameStorePriorities, UniformSamplingCoversEveryStoredPosition) {
  GameBuffer buf = make_buffer(30, target_config(5, 10, 0.997), false, 1.0, 0.0, 5);
  for (int i = 0; i < 9; ++i) buf.add_game(make_game(2 + i % 5, 0.0f).data());  // wrapped, some games evicted
  const int64_t draws = 100000;
  const auto counts = draw_counts(buf, 64, draws, 1.0);
  std::vector<double> observed, expected;
  const double n = static_cast<double>(buf.store().size());
  for (int64_t id = buf.store().oldest_id(); id < buf.store().end_id(); ++id) {
    observed.push_back(counts.count(id) ? counts.at(id) : 0.0);
    expected.push_back(static_cast<double>(draws) / n);
  }
  EXPECT_EQ(counts.size(), observed.size());  // nothing outside the stored ids
  EXPECT_LT(chi_square(observed, expected), chi_square_bound(n - 1.0));
}

TEST(GameStorePriorities, WeightsAreNormalisedImportanceWeights) {
  const double alpha = 0.5, beta = 0.7;
  GameBuffer buf = make_buffer(8, target_config(1, 1, 1.0), true, alpha, 0.0);
  buf.add_game(make_game(4, 0.0f).data());
  const int64_t ids[] = {0, 1, 2, 3};
  const double pr[] = {1.0, 4.0, 9.0, 16.0};  // p^alpha = 1, 2, 3, 4
  buf.update_priorities(ids, pr, 4);
  std::vector<int64_t> out(400);
  std::vector<float> w(400);
  buf.sample_ids(400, beta, out.data(), w.data());
  for (size_t i = 0; i < out.size(); ++i) {
    // (N P(i))^-beta / max_j (N P(j))^-beta = (p_i^alpha / min_j p_j^alpha)^-beta
    EXPECT_FLOAT_EQ(w[i], static_cast<float>(std::pow(static_cast<double>(out[i] + 1), -beta))) << out[i];
  }
  GameBuffer plain = make_buffer(8);
  plain.add_game(make_game(4, 0.0f).data());
  plain.sample_ids(50, beta, out.data(), w.data());
  for (int i = 0; i < 50; ++i) EXPECT_EQ(w[static_cast<size_t>(i)], 1.0f);
}

TEST(GameStorePriorities, SampleArgumentsAreChecked) {
  GameBuffer buf = make_buffer(8, target_config(1, 1, 1.0), true);
  int64_t id;
  float w;
  EXPECT_THROW(buf.sample_ids(1, 1.0, &id, &w), std::invalid_argument);  // empty
  buf.add_game(make_game(2, 0.0f).data());
  const Rng::State rng_before = buf.rng().state();
  EXPECT_THROW(buf.sample_ids(0, 1.0, &id, &w), std::invalid_argument);
  EXPECT_THROW(buf.sample_ids(1, -0.5, &id, &w), std::invalid_argument);
  EXPECT_THROW(buf.sample_ids(1, kNan, &id, &w), std::invalid_argument);
  EXPECT_EQ(buf.rng().state(), rng_before);  // nothing was drawn
  std::vector<int64_t> many(10);
  std::vector<float> ws(10);
  EXPECT_NO_THROW(buf.sample_ids(10, 1.0, many.data(), ws.data()));  // more than stored: with replacement
}

// A float32 ratio of leaves used to overflow: a tiny priority made the other weights 0, and NaN
// with beta = 0.
TEST(GameStorePriorities, WeightsStayFiniteAndInZeroOneWithExtremePriorities) {
  GameBuffer buf = make_buffer(8, target_config(1, 1, 1.0), true, 1.0, 0.0);
  buf.add_game(make_game(4, 0.0f).data());
  const int64_t ids[] = {0, 1, 2, 3};
  const double pr[] = {1e-300, 1.0, 1e40, 1e200};
  buf.update_priorities(ids, pr, 4);
  std::vector<int64_t> out(64);
  std::vector<float> w(64);
  for (double beta : {0.0, 0.4, 1.0, 50.0}) {
    buf.sample_ids(64, beta, out.data(), w.data());
    for (float v : w) {
      EXPECT_TRUE(std::isfinite(v) && v > 0.0f && v <= 1.0f) << beta << " " << v;
      if (beta == 0.0) {
        EXPECT_EQ(v, 1.0f);
      }
    }
  }
  // Priorities whose leaf would be 0 or past 1e250 (the sum could overflow) are refused.
  const GameBufferState before = buf.state();
  for (double bad : {1e260, 0.0}) {
    EXPECT_THROW(buf.update_priorities(ids, &bad, 1), std::invalid_argument) << bad;
    EXPECT_TRUE(same_state(before, buf.state())) << bad;
  }
}

// Ids near the top of int64 used to be accepted from a snapshot, and the next add wrote to a
// negative slot.
TEST(GameStore, IdsNeverPassTwoToTheSixtyTwo) {
  GameBuffer buf = make_buffer(8);
  GameBufferState s = buf.state();
  s.store.oldest_id = s.store.end_id = pymbrl::replay::kMaxId - 2;
  buf.restore(s);
  const GameBufferState before = buf.state();
  EXPECT_THROW(buf.add_game(make_game(3, 0.0f).data()), std::invalid_argument);
  EXPECT_TRUE(same_state(before, buf.state()));
  EXPECT_EQ(buf.add_game(make_game(2, 7.0f).data()), pymbrl::replay::kMaxId - 2);
  EXPECT_EQ(obs_of(buf, pymbrl::replay::kMaxId - 1), 8.0f);
}

// --- snapshots --------------------------------------------------------------------------------

GameBuffer used_buffer(bool prioritized, uint64_t seed) {
  GameBuffer buf = make_buffer(20, target_config(3, 4, 0.9), prioritized, 0.6, 0.01, seed);
  Rng data(seed);
  for (int i = 0; i < 9; ++i) {
    buf.add_game(random_game(data, 1 + static_cast<int64_t>(data.uniform_int(7)), 10.0f * static_cast<float>(i)).data());
    std::vector<int64_t> ids(5);
    std::vector<float> w(5);
    buf.sample_ids(5, 0.4, ids.data(), w.data());
    if (prioritized) {
      std::vector<double> p(5);
      for (double& v : p) v = data.uniform() * 3.0;
      buf.update_priorities(ids.data(), p.data(), 5);
    }
  }
  return buf;
}

TEST(GameStore, StateRoundTripContinuesSamplingIdentically) {
  for (bool prioritized : {false, true}) {
    GameBuffer a = used_buffer(prioritized, 4);
    GameBuffer b = make_buffer(20, target_config(3, 4, 0.9), prioritized, 0.6, 0.01, 999);
    b.restore(a.state());
    ASSERT_TRUE(same_state(a.state(), b.state()));
    for (int round = 0; round < 5; ++round) {
      std::vector<int64_t> ia(16), ib(16);
      std::vector<float> wa(16), wb(16);
      Targets ta(16, 3), tb(16, 3);
      a.sample(16, 0.5, ia.data(), wa.data(), ta.outputs());
      b.sample(16, 0.5, ib.data(), wb.data(), tb.outputs());
      EXPECT_EQ(ia, ib);
      EXPECT_EQ(wa, wb);
      EXPECT_EQ(ta.actions, tb.actions);  // random actions past the end too
      EXPECT_EQ(ta.values, tb.values);
      EXPECT_EQ(ta.policies, tb.policies);
      const TestGame g = make_game(3 + round, 500.0f);
      a.add_game(g.data());
      b.add_game(g.data());
    }
    EXPECT_TRUE(same_state(a.state(), b.state()));
  }
}

TEST(GameStore, RestoreRejectsInconsistentStatesAndChangesNothing) {
  GameBuffer buf = used_buffer(true, 6);
  const GameBufferState good = buf.state();
  ASSERT_GE(good.store.game_starts.size(), 2u);
  std::vector<std::pair<std::string, GameBufferState>> cases;
  auto bad = [&](std::string what, auto change) {
    GameBufferState s = good;
    change(s);
    cases.emplace_back(std::move(what), s);
  };
  bad("rng zero", [](GameBufferState& s) { s.rng = {0, 0, 0, 0}; });
  bad("gap between games", [](GameBufferState& s) { s.store.game_starts[1] += 1; });
  bad("games short of end_id", [](GameBufferState& s) { s.store.game_lengths.back() -= 1; });
  bad("games past end_id", [](GameBufferState& s) { s.store.game_lengths.back() += 1; });
  bad("huge length", [](GameBufferState& s) { s.store.game_lengths[0] = std::numeric_limits<int64_t>::max(); });
  bad("more than capacity", [](GameBufferState& s) { s.store.oldest_id -= 1; });
  bad("missing terminated flag", [](GameBufferState& s) { s.store.game_terminated.pop_back(); });
  bad("games_added too small", [](GameBufferState& s) { s.store.games_added = 1; });
  bad("action out of range", [](GameBufferState& s) { s.store.actions[2] = kActions; });
  bad("nan reward", [](GameBufferState& s) { s.store.rewards[1] = NAN; });
  bad("bad policy", [](GameBufferState& s) { s.store.policies[0] = 3.0f; });
  bad("short obs", [](GameBufferState& s) { s.store.obs.pop_back(); });
  bad("nan final value", [](GameBufferState& s) { s.store.game_final_values[0] = NAN; });
  bad("zero priority", [](GameBufferState& s) { s.priorities[0] = 0.0; });
  bad("missing priority", [](GameBufferState& s) { s.priorities.pop_back(); });
  bad("bad max priority", [](GameBufferState& s) { s.max_priority = -1.0; });
  // Counters near 2^63 and others that only arithmetic on them would betray.
  constexpr int64_t kBig = std::numeric_limits<int64_t>::max();
  bad("end_id near 2^63", [](GameBufferState& s) { s.store.end_id = kBig; });
  bad("both counters near 2^63", [&](GameBufferState& s) {
    const int64_t shift = kBig - s.store.end_id;
    s.store.oldest_id += shift;
    s.store.end_id += shift;
    for (int64_t& start : s.store.game_starts) start += shift;
  });
  bad("both counters past 2^62", [&](GameBufferState& s) {
    const int64_t shift = pymbrl::replay::kMaxId - s.store.oldest_id;
    s.store.oldest_id += shift;
    s.store.end_id += shift;
    for (int64_t& start : s.store.game_starts) start += shift;
  });
  bad("negative oldest_id", [](GameBufferState& s) { s.store.oldest_id = std::numeric_limits<int64_t>::min(); });
  bad("games_added near 2^63", [](GameBufferState& s) { s.store.games_added = kBig; });
  bad("games_added beyond the positions ever added", [](GameBufferState& s) { s.store.games_added += s.store.oldest_id + 1; });
  bad("negative length", [](GameBufferState& s) { s.store.game_lengths[0] = -3; });
  bad("start near 2^63", [](GameBufferState& s) { s.store.game_starts[1] = kBig; });
  bad("terminated flag 2", [](GameBufferState& s) { s.store.game_terminated[0] = 2; });
  bad("huge reward", [](GameBufferState& s) { s.store.rewards[0] = 1e30f; });
  bad("huge final value", [](GameBufferState& s) { s.store.game_final_values[1] = -1e30f; });
  bad("priority past 1e250", [](GameBufferState& s) { s.priorities[1] = 1e300; });
  bad("nan priority", [](GameBufferState& s) { s.priorities[2] = kNan; });
  bad("max priority nan", [](GameBufferState& s) { s.max_priority = kNan; });
  bad("max priority below 1", [](GameBufferState& s) { s.max_priority = 0.5; });
  for (const auto& [what, s] : cases) {
    EXPECT_THROW(buf.restore(s), std::invalid_argument) << what;
    EXPECT_TRUE(same_state(good, buf.state())) << what;
  }
  GameBuffer plain = make_buffer(20, target_config(3, 4, 0.9));
  EXPECT_THROW(plain.restore(good), std::invalid_argument);  // priorities for a buffer without them
  EXPECT_EQ(plain.store().size(), 0);
}

}  // namespace
