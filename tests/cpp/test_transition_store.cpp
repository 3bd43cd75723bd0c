#include "pymbrl/replay/transition_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "pymbrl/rng.h"
#include "replay_support.h"

namespace {

using namespace replay_test;

// Checks every observable of the store against the reference: counters, sampleability of every
// id around the stored range, each stored row's contents and each sampleable id's next observation.
::testing::AssertionResult matches(const TransitionStore& s, const Reference& ref) {
  auto fail = [] { return ::testing::AssertionFailure(); };
  if (s.end_id() != ref.end()) return fail() << "end_id " << s.end_id() << ", expected " << ref.end();
  if (s.written() != ref.written()) return fail() << "written " << s.written() << ", expected " << ref.written();
  if (s.oldest_id() != ref.oldest()) return fail() << "oldest_id " << s.oldest_id() << ", expected " << ref.oldest();
  if (s.stored_steps() * ref.envs != ref.end() - ref.oldest()) return fail() << "stored_steps " << s.stored_steps();
  if (s.stored_rows() != ref.end() - ref.oldest()) return fail() << "stored_rows " << s.stored_rows();
  if (s.size() != ref.size()) return fail() << "size " << s.size() << ", expected " << ref.size();
  for (int64_t id = std::max<int64_t>(0, ref.oldest() - 2 * ref.envs); id < ref.end() + 2 * ref.envs; ++id) {
    if (s.sampleable(id) != ref.sampleable(id)) {
      return fail() << "sampleable(" << id << ") is " << s.sampleable(id) << ", expected " << ref.sampleable(id);
    }
  }
  for (int64_t id = ref.oldest(); id < ref.end(); ++id) {
    if (s.row_of(id) != id % s.capacity()) return fail() << "row_of(" << id << ") = " << s.row_of(id);
    const Tr got = read_row(s, s.row_of(id));
    const Tr& want = ref.at(id);
    if (got.action != id || got.obs != want.obs || got.reward != stored_reward(s.layout(), want.reward) ||
        got.terminated != want.terminated || got.truncated != want.truncated) {
      return fail() << "row " << s.row_of(id) << " holds transition " << got.action << " (obs " << got.obs
                    << "), expected transition " << id << " (obs " << want.obs << ")";
    }
    if (s.done_at(s.row_of(id)) != want.done()) return fail() << "done_at(row of " << id << ")";
    if (ref.sampleable(id)) {
      const float next = obs_value(s.next_obs(id));
      if (next != ref.next_obs(id)) return fail() << "next_obs(" << id << ") = " << next << ", expected " << ref.next_obs(id);
    }
  }
  return ::testing::AssertionSuccess();
}

// The final-observation pool: one slot per stored row that ended an episode, no slot both used and
// free, none lost, and never more slots than rows.
::testing::AssertionResult pool_consistent(const TransitionStore& s, const Reference& ref) {
  const int64_t obs_bytes = s.layout().obs().nbytes;
  const int64_t slots = static_cast<int64_t>(s.final_pool().size()) / obs_bytes;
  if (static_cast<int64_t>(s.final_pool().size()) % obs_bytes != 0) return ::testing::AssertionFailure() << "partial slot";
  if (slots > s.capacity()) return ::testing::AssertionFailure() << slots << " pool slots for " << s.capacity() << " rows";
  std::set<int32_t> used, free_set;
  int64_t done_rows = 0;
  for (int64_t id = ref.oldest(); id < ref.end(); ++id) done_rows += ref.at(id).done();
  for (int32_t slot : s.final_slots()) {
    if (slot < 0) continue;
    if (slot >= slots) return ::testing::AssertionFailure() << "slot " << slot << " outside the pool";
    if (!used.insert(slot).second) return ::testing::AssertionFailure() << "slot " << slot << " used by two rows";
  }
  for (int32_t slot : s.free_slots()) {
    if (!free_set.insert(slot).second) return ::testing::AssertionFailure() << "slot " << slot << " free twice";
    if (used.count(slot)) return ::testing::AssertionFailure() << "slot " << slot << " both used and free";
  }
  if (static_cast<int64_t>(used.size()) != done_rows) {
    return ::testing::AssertionFailure() << used.size() << " used slots for " << done_rows << " stored episode ends";
  }
  if (static_cast<int64_t>(used.size() + free_set.size()) != slots) {
    return ::testing::AssertionFailure() << "slots lost: " << used.size() << " used + " << free_set.size()
                                         << " free != " << slots;
  }
  return ::testing::AssertionSuccess();
}

struct Fixture {
  RowLayout layout;
  TransitionStore store;
  Reference ref;
  Fixture(int64_t capacity, int64_t envs, int64_t n_step = 1, double gamma = 0.9, bool track = false, bool reward64 = false)
      : layout(test_layout(reward64)), store(test_layout(reward64), store_config(capacity, envs, n_step, gamma, track)) {
    ref.capacity = capacity;
    ref.envs = envs;
  }
  // Appends the given transitions (ids assigned in order) in one call of `steps` steps.
  int64_t add(const std::vector<Tr>& items, int64_t steps) {
    ref.log.insert(ref.log.end(), items.begin(), items.end());
    return append_items(store, layout, items, steps);
  }
  // One step for every stream; done flags per env given as a string: '.' none, 'T' terminated,
  // 'X' truncated.
  int64_t step(const std::string& flags, double reward = 1.0) {
    std::vector<Tr> items;
    for (size_t e = 0; e < flags.size(); ++e) {
      items.push_back(tr_for(ref.end() + static_cast<int64_t>(e), reward, flags[e] == 'T', flags[e] == 'X'));
    }
    return add(items, 1);
  }
  int64_t random(Rng& rng, int64_t steps, double p_term, double p_trunc) {
    return append_random(store, layout, ref, rng, steps, p_term, p_trunc);
  }
};

TEST(TransitionStore, ConstructorValidatesConfig) {
  auto make = [](int64_t cap, int64_t envs, int64_t n_step, double gamma) {
    TransitionStore s(test_layout(), store_config(cap, envs, n_step, gamma));
  };
  EXPECT_NO_THROW(make(1, 1, 1, 0.0));
  EXPECT_NO_THROW(make(6, 3, 4, 1.0));
  EXPECT_THROW(make(0, 1, 1, 0.9), std::invalid_argument);
  EXPECT_THROW(make(-4, 1, 1, 0.9), std::invalid_argument);
  EXPECT_THROW(make(4, 0, 1, 0.9), std::invalid_argument);
  EXPECT_THROW(make(4, -1, 1, 0.9), std::invalid_argument);
  EXPECT_THROW(make(5, 2, 1, 0.9), std::invalid_argument);
  EXPECT_THROW(make(4, 1, 0, 0.9), std::invalid_argument);
  EXPECT_THROW(make(4, 1, 1, -0.1), std::invalid_argument);
  EXPECT_THROW(make(4, 1, 1, 1.5), std::invalid_argument);
  EXPECT_THROW(make(4, 1, 1, std::nan("")), std::invalid_argument);
  EXPECT_THROW(make(int64_t{1} << 40, 1, 1, 0.9), std::invalid_argument);  // 32 TiB of rows
}

TEST(TransitionStore, EmptyStore) {
  Fixture f(6, 2);
  EXPECT_EQ(f.store.capacity(), 6);
  EXPECT_EQ(f.store.num_envs(), 2);
  EXPECT_EQ(f.store.steps_per_env(), 3);
  EXPECT_EQ(f.store.size(), 0);
  EXPECT_EQ(f.store.written(), 0);
  EXPECT_EQ(f.store.end_id(), 0);
  EXPECT_EQ(f.store.oldest_id(), 0);
  EXPECT_EQ(f.store.stored_rows(), 0);
  EXPECT_FALSE(f.store.sampleable(0));
  EXPECT_FALSE(f.store.sampleable(-1));
  EXPECT_TRUE(f.store.final_pool().empty());
}

TEST(TransitionStore, SingleEnvAppendOneStepAtATime) {
  Fixture f(5, 1);
  EXPECT_EQ(f.step("."), 0);
  EXPECT_EQ(f.store.size(), 0);  // the newest step's next observation is not known yet
  EXPECT_FALSE(f.store.sampleable(0));
  EXPECT_EQ(f.step("."), 1);
  EXPECT_EQ(f.store.size(), 1);
  EXPECT_TRUE(f.store.sampleable(0));
  EXPECT_FALSE(f.store.sampleable(1));
  EXPECT_EQ(obs_value(f.store.next_obs(0)), 2.0f);  // transition 1's observation
  EXPECT_EQ(f.step("."), 2);
  EXPECT_TRUE(matches(f.store, f.ref));
  EXPECT_TRUE(f.store.final_pool().empty());  // nothing ended an episode
}

TEST(TransitionStore, AppendSeveralStepsReturnsTheFirstId) {
  Fixture f(16, 1);
  std::vector<Tr> items;
  for (int64_t id = 0; id < 4; ++id) items.push_back(tr_for(id, 0.5 * static_cast<double>(id)));
  EXPECT_EQ(f.add(items, 4), 0);
  items.clear();
  for (int64_t id = 4; id < 7; ++id) items.push_back(tr_for(id));
  EXPECT_EQ(f.add(items, 3), 4);
  EXPECT_EQ(f.store.written(), 7);
  EXPECT_TRUE(matches(f.store, f.ref));
}

TEST(TransitionStore, MultiEnvRowsHoldIdTimesEnvsPlusEnv) {
  Fixture f(12, 3);
  EXPECT_EQ(f.step("..."), 0);
  EXPECT_EQ(f.store.written(), 1);
  EXPECT_EQ(f.store.end_id(), 3);
  // Each stream's step 0 is in its own row: row e holds transition e.
  for (int64_t e = 0; e < 3; ++e) EXPECT_EQ(read_row(f.store, e).action, e) << "row " << e;
  EXPECT_EQ(f.step("..."), 3);
  EXPECT_TRUE(matches(f.store, f.ref));
}

TEST(TransitionStore, MultiEnvSeveralStepsPerCall) {
  Fixture f(12, 3);
  std::vector<Tr> items;
  for (int64_t id = 0; id < 6; ++id) items.push_back(tr_for(id));  // [2 steps, 3 envs]
  EXPECT_EQ(f.add(items, 2), 0);
  EXPECT_EQ(f.store.written(), 2);
  EXPECT_EQ(f.store.size(), 3);
  EXPECT_TRUE(matches(f.store, f.ref));
  for (int64_t e = 0; e < 3; ++e) EXPECT_EQ(obs_value(f.store.next_obs(e)), static_cast<float>(e + 3 + 1)) << e;
}

TEST(TransitionStore, WrapAroundKeepsTheNewestSteps) {
  Fixture f(4, 1);
  for (int i = 0; i < 10; ++i) f.step(".");
  EXPECT_EQ(f.store.written(), 10);
  EXPECT_EQ(f.store.oldest_id(), 6);
  EXPECT_EQ(f.store.stored_steps(), 4);
  EXPECT_EQ(f.store.size(), 3);
  EXPECT_FALSE(f.store.sampleable(5));  // overwritten
  EXPECT_TRUE(f.store.sampleable(6));
  EXPECT_TRUE(f.store.sampleable(8));
  EXPECT_FALSE(f.store.sampleable(9));  // newest
  EXPECT_FALSE(f.store.sampleable(10));  // not written
  EXPECT_EQ(read_row(f.store, 0).action, 8);
  EXPECT_EQ(read_row(f.store, 1).action, 9);
  EXPECT_EQ(read_row(f.store, 2).action, 6);
  EXPECT_EQ(obs_value(f.store.next_obs(7)), 9.0f);  // row 3's successor is row 0
  EXPECT_TRUE(matches(f.store, f.ref));
}

TEST(TransitionStore, WrapAroundMultiEnv) {
  Fixture f(6, 2);
  for (int i = 0; i < 7; ++i) f.step(i == 4 ? "T." : "..");
  EXPECT_EQ(f.store.oldest_id(), 8);
  EXPECT_EQ(f.store.end_id(), 14);
  EXPECT_TRUE(matches(f.store, f.ref));
}

TEST(TransitionStore, CapacityOfOneStepPerStream) {
  // Each stream has a single row: only an episode end is ever sampleable.
  Fixture f(2, 2);
  f.step("..");
  EXPECT_EQ(f.store.size(), 0);
  f.step("T.");
  EXPECT_EQ(f.store.size(), 1);
  EXPECT_TRUE(f.store.sampleable(2));
  EXPECT_FALSE(f.store.sampleable(0));
  EXPECT_FALSE(f.store.sampleable(3));
  EXPECT_EQ(obs_value(f.store.next_obs(2)), 1000002.0f);
  f.step("XT");
  EXPECT_TRUE(matches(f.store, f.ref));
  EXPECT_TRUE(pool_consistent(f.store, f.ref));
}

TEST(TransitionStore, NextObsIsTheSuccessorRowOrTheStoredFinalObservation) {
  Fixture f(10, 1);
  f.step(".");  // 0
  f.step("T");  // 1: terminated
  f.step(".");  // 2: a new episode
  f.step("X");  // 3: truncated
  f.step(".");  // 4
  EXPECT_EQ(obs_value(f.store.next_obs(0)), 2.0f);        // transition 1's obs
  EXPECT_EQ(obs_value(f.store.next_obs(1)), 1000001.0f);  // final observation, not transition 2's obs
  EXPECT_EQ(obs_value(f.store.next_obs(2)), 4.0f);
  EXPECT_EQ(obs_value(f.store.next_obs(3)), 1000003.0f);
  // The whole observation is kept, not only its first element.
  float both[2];
  std::memcpy(both, f.store.next_obs(3), 8);
  EXPECT_EQ(both[1], -1000003.0f);
  EXPECT_EQ(f.store.final_pool().size(), 2u * 8u);
  EXPECT_TRUE(matches(f.store, f.ref));
}

TEST(TransitionStore, NewestStepIsSampleableOnlyIfItEndedAnEpisode) {
  Fixture f(8, 2);
  f.step("..");
  EXPECT_EQ(f.store.size(), 0);
  f.step(".T");
  EXPECT_EQ(f.store.size(), 3);  // both step-0 rows, and stream 1's terminal step
  EXPECT_FALSE(f.store.sampleable(2));
  EXPECT_TRUE(f.store.sampleable(3));
  EXPECT_EQ(obs_value(f.store.next_obs(3)), 1000003.0f);
  EXPECT_TRUE(matches(f.store, f.ref));
}

TEST(TransitionStore, RandomAppendsMatchReference) {
  Rng rng(21);
  for (int64_t envs : {1, 2, 3}) {
    for (int64_t steps_per_env : {1, 2, 7}) {
      Fixture f(steps_per_env * envs, envs);
      for (int call = 0; call < 60; ++call) {
        const int64_t steps = 1 + static_cast<int64_t>(rng.uniform_int(4));
        f.random(rng, steps, 0.15, 0.1);
        ASSERT_TRUE(matches(f.store, f.ref)) << "envs " << envs << " steps/env " << steps_per_env << " call " << call;
      }
    }
  }
}

TEST(TransitionStore, FinalPoolIsReusedWhenRowsAreOverwritten) {
  Rng rng(4);
  for (int64_t envs : {1, 2}) {
    Fixture f(8, envs);
    size_t largest = 0;
    for (int call = 0; call < 2000; ++call) {
      f.random(rng, 1 + static_cast<int64_t>(rng.uniform_int(3)), 0.3, 0.3);
      ASSERT_TRUE(pool_consistent(f.store, f.ref)) << "envs " << envs << " call " << call;
      largest = std::max(largest, f.store.final_pool().size());
    }
    // Thousands of episode ends went through; the pool never outgrew the 8 rows.
    EXPECT_LE(largest, 8u * 8u);
    ASSERT_TRUE(matches(f.store, f.ref)) << envs;
  }
}

TEST(TransitionStore, EveryStepEndingAnEpisodeStillBoundsThePool) {
  Fixture f(6, 3);
  for (int i = 0; i < 500; ++i) f.step(i % 2 ? "TXT" : "XTX");
  EXPECT_EQ(f.store.final_pool().size(), 6u * 8u);
  EXPECT_EQ(f.store.size(), 6);
  EXPECT_TRUE(pool_consistent(f.store, f.ref));
  EXPECT_TRUE(matches(f.store, f.ref));
}

TEST(TransitionStore, NStepByHand) {
  const double g = 0.5;
  Fixture f(16, 1, 3, g);
  f.step(".", 1.0);  // 0
  f.step(".", 2.0);  // 1
  f.step("T", 4.0);  // 2
  f.step(".", 8.0);  // 3
  f.step("X", 16.0);  // 4
  f.step(".", 32.0);  // 5
  f.step(".", 64.0);  // 6 (newest)

  auto ns = f.store.n_step(0);
  EXPECT_DOUBLE_EQ(ns.ret, 1.0 + g * 2.0 + g * g * 4.0);
  EXPECT_EQ(ns.discount, 0.0);
  EXPECT_TRUE(ns.terminated);
  EXPECT_FALSE(ns.truncated);
  EXPECT_EQ(ns.last_id, 2);

  ns = f.store.n_step(2);  // terminal step: one reward
  EXPECT_DOUBLE_EQ(ns.ret, 4.0);
  EXPECT_EQ(ns.discount, 0.0);
  EXPECT_EQ(ns.last_id, 2);

  ns = f.store.n_step(3);  // truncation stops the window but bootstraps
  EXPECT_DOUBLE_EQ(ns.ret, 8.0 + g * 16.0);
  EXPECT_DOUBLE_EQ(ns.discount, g * g);
  EXPECT_FALSE(ns.terminated);
  EXPECT_TRUE(ns.truncated);
  EXPECT_EQ(ns.last_id, 4);

  ns = f.store.n_step(5);  // the data ends: 6 is newest, so only 5's reward
  EXPECT_DOUBLE_EQ(ns.ret, 32.0);
  EXPECT_DOUBLE_EQ(ns.discount, g);
  EXPECT_FALSE(ns.terminated);
  EXPECT_FALSE(ns.truncated);
  EXPECT_EQ(ns.last_id, 5);

  f.step(".", 128.0);
  f.step(".", 256.0);
  ns = f.store.n_step(5);  // full window now
  EXPECT_DOUBLE_EQ(ns.ret, 32.0 + g * 64.0 + g * g * 128.0);
  EXPECT_DOUBLE_EQ(ns.discount, g * g * g);
  EXPECT_EQ(ns.last_id, 7);
}

TEST(TransitionStore, NStepMatchesBruteForceOnRandomEpisodes) {
  Rng rng(31);
  for (bool reward64 : {false, true}) {
    for (int64_t envs : {1, 2, 3}) {
      for (int64_t n : {1, 2, 3, 5}) {
        Fixture f(12 * envs, envs, n, 0.9, false, reward64);
        for (int call = 0; call < 40; ++call) {
          f.random(rng, 1 + static_cast<int64_t>(rng.uniform_int(3)), 0.12, 0.08);
          for (int64_t id = f.ref.oldest(); id < f.ref.end(); ++id) {
            if (!f.ref.sampleable(id)) continue;
            const auto got = f.store.n_step(id);
            const auto want = f.ref.n_step(id, n, 0.9, f.layout);
            ASSERT_NEAR(got.ret, want.ret, 1e-12 * (1.0 + std::abs(want.ret)))
                << "envs " << envs << " n " << n << " id " << id;
            ASSERT_EQ(got.discount, want.discount) << "envs " << envs << " n " << n << " id " << id;
            ASSERT_EQ(got.terminated, want.terminated) << "id " << id;
            ASSERT_EQ(got.truncated, want.truncated) << "id " << id;
            ASSERT_EQ(got.last_id, want.last_id) << "envs " << envs << " n " << n << " id " << id;
            ASSERT_TRUE(f.store.sampleable(got.last_id)) << id;
          }
        }
      }
    }
  }
}

// Gathers ids into fresh output buffers (with sentinel bytes around them to catch overruns).
struct Gathered {
  std::vector<std::vector<uint8_t>> fields;
  std::vector<uint8_t> next_obs;
  std::vector<float> discount;
};
Gathered gather(const TransitionStore& s, const std::vector<int64_t>& ids, bool with_next = true, bool with_discount = true) {
  const auto& fs = s.layout().fields();
  const size_t n = ids.size();
  Gathered g;
  TransitionStore::Outputs out;
  for (const auto& f : fs) {
    g.fields.emplace_back(n * static_cast<size_t>(f.nbytes) + 8, 0xAB);
  }
  for (auto& b : g.fields) out.fields.push_back(b.data());
  g.next_obs.assign(n * 8 + 8, 0xAB);
  g.discount.assign(n + 1, -7.0f);
  if (with_next) out.next_obs = g.next_obs.data();
  if (with_discount) out.discount = g.discount.data();
  s.gather(ids.data(), static_cast<int64_t>(n), out);
  return g;
}

size_t field_index(const RowLayout& l, const std::string& name) {
  for (size_t i = 0; i < l.fields().size(); ++i) {
    if (l.fields()[i].name == name) return i;
  }
  return l.fields().size();
}

template <typename T>
T at(const std::vector<uint8_t>& buf, size_t i) {
  T v;
  std::memcpy(&v, buf.data() + i * sizeof(T), sizeof(T));
  return v;
}

void check_sentinels(const Gathered& g, const RowLayout& l, size_t n) {
  for (size_t f = 0; f < g.fields.size(); ++f) {
    for (size_t b = n * static_cast<size_t>(l.fields()[f].nbytes); b < g.fields[f].size(); ++b) {
      ASSERT_EQ(g.fields[f][b], 0xAB) << "gather wrote past field " << l.fields()[f].name;
    }
  }
  for (size_t b = n * 8; b < g.next_obs.size(); ++b) ASSERT_EQ(g.next_obs[b], 0xAB) << "past next_obs";
  ASSERT_EQ(g.discount[n], -7.0f) << "past discount";
}

TEST(TransitionStore, GatherOneStepCopiesRowsNextObsAndDiscount) {
  Rng rng(8);
  Fixture f(20, 2, 1, 0.75);
  f.random(rng, 17, 0.2, 0.2);  // wrapped
  std::vector<int64_t> ids;
  for (int i = 0; i < 37; ++i) {  // more than the prefetch distance, with repeats
    int64_t id;
    do {
      id = f.ref.oldest() + static_cast<int64_t>(rng.uniform_int(static_cast<uint64_t>(f.ref.end() - f.ref.oldest())));
    } while (!f.ref.sampleable(id));
    ids.push_back(id);
  }
  const Gathered g = gather(f.store, ids);
  const RowLayout& l = f.layout;
  const size_t obs_i = field_index(l, "obs"), act_i = field_index(l, "action"), rew_i = field_index(l, "reward"),
               term_i = field_index(l, "terminated"), trunc_i = field_index(l, "truncated");
  for (size_t i = 0; i < ids.size(); ++i) {
    const Tr& t = f.ref.at(ids[i]);
    EXPECT_EQ(at<float>(g.fields[obs_i], 2 * i), t.obs) << i;
    EXPECT_EQ(at<float>(g.fields[obs_i], 2 * i + 1), -t.obs) << i;
    EXPECT_EQ(at<int64_t>(g.fields[act_i], i), ids[i]) << i;
    EXPECT_EQ(at<float>(g.fields[rew_i], i), static_cast<float>(t.reward)) << i;
    EXPECT_EQ(g.fields[term_i][i], t.terminated) << i;
    EXPECT_EQ(g.fields[trunc_i][i], t.truncated) << i;
    EXPECT_EQ(at<float>(g.next_obs, 2 * i), f.ref.next_obs(ids[i])) << i;
    EXPECT_EQ(at<float>(g.next_obs, 2 * i + 1), -f.ref.next_obs(ids[i])) << i;
    // Truncation still bootstraps: only termination zeroes the discount.
    EXPECT_EQ(g.discount[i], t.terminated ? 0.0f : 0.75f) << i;
  }
  check_sentinels(g, l, ids.size());

  // next_obs and discount are optional.
  const Gathered bare = gather(f.store, ids, false, false);
  EXPECT_EQ(bare.fields[act_i], g.fields[act_i]);
  EXPECT_EQ(bare.next_obs[0], 0xAB);
  EXPECT_EQ(bare.discount[0], -7.0f);
}

TEST(TransitionStore, GatherNStepDescribesTheWholeWindow) {
  Rng rng(12);
  for (bool reward64 : {false, true}) {
    for (int64_t envs : {1, 2}) {
      Fixture f(30 * envs, envs, 3, 0.8, false, reward64);
      f.random(rng, 40, 0.1, 0.1);
      std::vector<int64_t> ids;
      for (int64_t id = f.ref.oldest(); id < f.ref.end(); ++id) {
        if (f.ref.sampleable(id)) ids.push_back(id);
      }
      const Gathered g = gather(f.store, ids);
      const RowLayout& l = f.layout;
      const size_t obs_i = field_index(l, "obs"), act_i = field_index(l, "action"), rew_i = field_index(l, "reward"),
                   term_i = field_index(l, "terminated"), trunc_i = field_index(l, "truncated");
      for (size_t i = 0; i < ids.size(); ++i) {
        const auto want = f.ref.n_step(ids[i], 3, 0.8, l);
        EXPECT_EQ(at<float>(g.fields[obs_i], 2 * i), f.ref.at(ids[i]).obs) << i;
        EXPECT_EQ(at<int64_t>(g.fields[act_i], i), ids[i]) << i;
        if (reward64) {
          EXPECT_NEAR(at<double>(g.fields[rew_i], i), want.ret, 1e-12 * (1.0 + std::abs(want.ret))) << ids[i];
        } else {
          EXPECT_NEAR(at<float>(g.fields[rew_i], i), static_cast<float>(want.ret), 1e-5 * (1.0 + std::abs(want.ret))) << ids[i];
        }
        EXPECT_EQ(g.fields[term_i][i], want.terminated) << ids[i];
        EXPECT_EQ(g.fields[trunc_i][i], want.truncated) << ids[i];
        EXPECT_EQ(at<float>(g.next_obs, 2 * i), f.ref.next_obs(want.last_id)) << ids[i];
        EXPECT_EQ(g.discount[i], static_cast<float>(want.discount)) << ids[i];
      }
      check_sentinels(g, l, ids.size());
    }
  }
}

TEST(TransitionStore, TrackEpisodesSingleEnv) {
  Fixture f(5, 1, 1, 0.9, true);
  const std::string flags = "..T.X..T.....T";
  for (char c : flags) {
    f.step(std::string(1, c));
    for (int64_t id = f.ref.oldest(); id < f.ref.end(); ++id) {
      ASSERT_EQ(f.store.is_first(id), f.ref.is_first(id)) << "id " << id << " after " << f.ref.end();
      ASSERT_EQ(f.store.episode_start(id), f.ref.episode_start(id)) << "id " << id << " after " << f.ref.end();
    }
  }
  // The last episode began at step 8, whose row was overwritten since: the start still counts it.
  EXPECT_EQ(f.store.episode_start(13), 8);
  EXPECT_EQ(f.store.oldest_id(), 9);
}

TEST(TransitionStore, TrackEpisodesRandomMultiEnv) {
  Rng rng(17);
  // steps_per_env 1: one row per stream, so the previous row is the one being written.
  for (const auto& [envs, steps_per_env] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {1, 4}, {2, 1}, {2, 4}, {3, 4}}) {
    Fixture f(steps_per_env * envs, envs, 1, 0.9, true);
    for (int call = 0; call < 50; ++call) {
      f.random(rng, 1 + static_cast<int64_t>(rng.uniform_int(3)), 0.15, 0.1);
      for (int64_t id = f.ref.oldest(); id < f.ref.end(); ++id) {
        ASSERT_EQ(f.store.is_first(id), f.ref.is_first(id)) << "envs " << envs << " id " << id;
        ASSERT_EQ(f.store.episode_start(id), f.ref.episode_start(id)) << "envs " << envs << " id " << id;
      }
    }
  }
}

TEST(TransitionStore, ClearEmptiesTheStoreButKeepsCountingIds) {
  Rng rng(2);
  Fixture f(6, 2, 1, 0.9, true);
  f.random(rng, 9, 0.3, 0.2);
  f.store.clear();
  EXPECT_EQ(f.store.size(), 0);
  EXPECT_EQ(f.store.stored_steps(), 0);
  EXPECT_EQ(f.store.written(), 9);  // ids sampled before the clear can never come back
  EXPECT_EQ(f.store.end_id(), 18);
  for (int64_t id = 0; id < 18; ++id) EXPECT_FALSE(f.store.sampleable(id)) << id;
  EXPECT_TRUE(f.store.final_pool().empty());
  EXPECT_TRUE(f.store.free_slots().empty());
  for (int32_t s : f.store.final_slots()) EXPECT_EQ(s, -1);
  // Starting again: ids continue from 18, and every stream starts an episode.
  f.ref.cleared = f.ref.end();
  EXPECT_EQ(f.random(rng, 2, 0.3, 0.2), 18);
  EXPECT_TRUE(matches(f.store, f.ref));
  EXPECT_TRUE(pool_consistent(f.store, f.ref));
  EXPECT_TRUE(f.store.is_first(18));
  EXPECT_TRUE(f.store.is_first(19));
}

// A wrapped store with episode ends, used by the restore tests.
Fixture filled(bool track, uint64_t seed = 40, int64_t envs = 1) {
  Rng rng(seed);
  Fixture f(4 * envs, envs, 2, 0.9, track);
  f.random(rng, 11, 0.3, 0.2);
  return f;
}

TEST(TransitionStore, RestoreRoundTrip) {
  for (const auto& [envs, track] : std::vector<std::pair<int64_t, bool>>{{1, false}, {1, true}, {2, false}, {2, true}}) {
    Fixture a = filled(track, 40, envs);
    Fixture b(4 * envs, envs, 2, 0.9, track);
    restore(b.store, snapshot(a.store));
    b.ref = a.ref;
    EXPECT_TRUE(snapshot(b.store) == snapshot(a.store));
    ASSERT_TRUE(matches(b.store, a.ref)) << "envs " << envs;
    for (int64_t id = a.ref.oldest(); id < a.ref.end(); ++id) {
      if (!a.ref.sampleable(id)) continue;
      EXPECT_EQ(b.store.n_step(id).ret, a.store.n_step(id).ret) << id;
      if (track) {
        EXPECT_EQ(b.store.is_first(id), a.store.is_first(id)) << id;
        EXPECT_EQ(b.store.episode_start(id), a.store.episode_start(id)) << id;
      }
    }
    // Both go on identically, reusing the same pool slots.
    Rng r1(5), r2(5);
    for (int i = 0; i < 30; ++i) {
      a.random(r1, 1, 0.3, 0.2);
      b.random(r2, 1, 0.3, 0.2);
      ASSERT_TRUE(snapshot(b.store) == snapshot(a.store)) << i;
      ASSERT_TRUE(matches(b.store, b.ref)) << "envs " << envs << " step " << i;
      ASSERT_TRUE(pool_consistent(b.store, b.ref)) << i;
    }
  }
}

TEST(TransitionStore, RestoreOfAnEmptySnapshotEmptiesTheStore) {
  Fixture a = filled(false);
  Fixture empty(4, 1, 2, 0.9, false);
  restore(a.store, snapshot(empty.store));
  EXPECT_EQ(a.store.size(), 0);
  EXPECT_EQ(a.store.written(), 0);
  EXPECT_TRUE(a.store.final_pool().empty());
}

TEST(TransitionStore, RestoreOfAPartlyFilledStore) {
  Fixture a(8, 2, 1, 0.9, true);
  a.step("T.");
  a.step("..");
  Fixture b(8, 2, 1, 0.9, true);
  restore(b.store, snapshot(a.store));
  b.ref = a.ref;
  EXPECT_TRUE(matches(b.store, b.ref));
  b.step(".T");
  EXPECT_TRUE(matches(b.store, b.ref));
  EXPECT_TRUE(pool_consistent(b.store, b.ref));
}

// Index of a stored row that ends an episode, and of one that does not.
int64_t done_row(const Snapshot& s) {
  for (size_t r = 0; r < s.final_slots.size(); ++r) {
    if (s.final_slots[r] >= 0) return static_cast<int64_t>(r);
  }
  return -1;
}
int64_t live_row(const Snapshot& s) {
  for (size_t r = 0; r < s.final_slots.size(); ++r) {
    if (s.final_slots[r] < 0) return static_cast<int64_t>(r);
  }
  return -1;
}

TEST(TransitionStore, RestoreRejectsInconsistentSnapshotsAndChangesNothing) {
  for (bool track : {false, true}) {
    Fixture src = filled(track, 41);
    const Snapshot good = snapshot(src.store);
    ASSERT_GE(done_row(good), 0);
    ASSERT_GE(live_row(good), 0);
    ASSERT_FALSE(good.final_pool.empty());
    const int32_t pool_slots = static_cast<int32_t>(good.final_pool.size() / 8);
    const size_t row_bytes = 32;
    const size_t term_offset = 0;  // test_layout: terminated is the first byte of a row

    std::vector<std::pair<std::string, std::function<void(Snapshot&)>>> bad = {
        {"negative written", [](Snapshot& s) { s.written = -1; }},
        {"written disagrees with rows", [](Snapshot& s) { s.written = 2; }},
        {"a row short", [&](Snapshot& s) { s.rows.resize(s.rows.size() - row_bytes); }},
        {"final_slots too short", [](Snapshot& s) { s.final_slots.pop_back(); }},
        {"final_slots too long", [](Snapshot& s) { s.final_slots.push_back(-1); }},
        {"pool of partial observations", [](Snapshot& s) { s.final_pool.push_back(0); }},
        {"slot past the pool", [&](Snapshot& s) { s.final_slots[static_cast<size_t>(done_row(s))] = pool_slots; }},
        {"slot below -1", [&](Snapshot& s) { s.final_slots[static_cast<size_t>(done_row(s))] = -2; }},
        {"free slot past the pool", [&](Snapshot& s) { s.free_slots.push_back(pool_slots); }},
        {"negative free slot", [](Snapshot& s) { s.free_slots.push_back(-1); }},
        {"episode end without a final observation",
         [](Snapshot& s) { s.final_slots[static_cast<size_t>(done_row(s))] = -1; }},
        {"final observation for a row that goes on", [&](Snapshot& s) { s.final_slots[static_cast<size_t>(live_row(s))] = 0; }},
        {"done flag cleared under a slot",
         [&](Snapshot& s) {
           const size_t r = static_cast<size_t>(done_row(s));
           s.rows[r * row_bytes + term_offset] = 0;
           s.rows[r * row_bytes + 12] = 0;  // truncated
         }},
    };
    if (track) {
      bad.push_back({"is_first too short", [](Snapshot& s) { s.is_first.pop_back(); }});
      bad.push_back({"episode_start too long", [](Snapshot& s) { s.episode_start.push_back(0); }});
    }
    for (auto& [what, mutate] : bad) {
      Fixture dst = filled(track, 99);  // different contents from src
      const Snapshot before = snapshot(dst.store);
      Snapshot s = good;
      mutate(s);
      EXPECT_THROW(restore(dst.store, s), std::invalid_argument) << what << " (track " << track << ")";
      EXPECT_TRUE(snapshot(dst.store) == before) << what << ": the store changed";
      EXPECT_TRUE(matches(dst.store, dst.ref)) << what;
    }
  }
}

// The checks above look at each slot on its own. A snapshot whose slots are individually in range
// but collide is accepted, and the store then hands one pool slot to two episode ends: a later
// final observation silently overwrites an earlier one.
TEST(TransitionStore, RestoreRejectsTwoRowsSharingAFinalSlot) {
  Fixture src(8, 1);
  src.step("T");  // row 0, slot 0
  src.step("T");  // row 1, slot 1
  src.step(".");
  Snapshot s = snapshot(src.store);
  ASSERT_EQ(s.final_slots[0], 0);
  ASSERT_EQ(s.final_slots[1], 1);
  s.final_slots[1] = 0;
  Fixture dst(8, 1);
  EXPECT_THROW(restore(dst.store, s), std::invalid_argument) << "rows 0 and 1 both given pool slot 0";
}

TEST(TransitionStore, RestoreRejectsASlotThatIsBothUsedAndFree) {
  Fixture src(8, 1);
  src.step("T");  // row 0, slot 0
  src.step(".");
  Snapshot s = snapshot(src.store);
  s.free_slots.push_back(0);  // slot 0 holds row 0's final observation
  Fixture dst(8, 1);
  bool threw = false;
  try {
    restore(dst.store, s);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  EXPECT_TRUE(threw) << "free_slots lists slot 0, which row 0 uses";
  if (!threw) {
    // What goes wrong when it is accepted: the next episode end takes slot 0 and replaces row 0's
    // final observation.
    dst.ref = src.ref;
    dst.step("T");
    EXPECT_EQ(obs_value(dst.store.next_obs(0)), 1000000.0f) << "row 0's final observation was overwritten";
  }
}

TEST(TransitionStore, RestoreRejectsAFinalSlotOnARowNotYetWritten) {
  Fixture src(8, 1);
  src.step("T");  // row 0, slot 0
  src.step("T");  // row 1, slot 1
  src.step(".");
  Snapshot s = snapshot(src.store);
  // Rows 3.. are not part of the snapshot; a slot there is freed again when the row is written,
  // so slot 1 would be handed out while row 1 still uses it.
  s.final_slots[5] = 1;
  Fixture dst(8, 1);
  EXPECT_THROW(restore(dst.store, s), std::invalid_argument) << "row 5 is beyond the 3 stored rows";
}

TEST(TransitionStore, CapacityLimits) {
  EXPECT_THROW(TransitionStore(test_layout(), store_config(int64_t{1} << 31)), std::invalid_argument);
  EXPECT_THROW(TransitionStore(test_layout(), store_config(int64_t{1} << 36)), std::invalid_argument);  // 2^41 bytes
  const RowLayout wide({make_field("obs", 'u', 1, {int64_t{1} << 30}), make_field("reward", 'f', 4),
                        make_field("terminated", 'b', 1), make_field("truncated", 'b', 1)});
  EXPECT_THROW(TransitionStore(wide, store_config(1024)), std::invalid_argument);
}

// Counters near 2^63 used to load, and the next append wrote to a negative row.
TEST(TransitionStore, RestoreRefusesCountersOutOfRangeAndChangesNothing) {
  for (int64_t envs : {1, 3}) {
    Fixture a = filled(false, 41, envs);
    Fixture dst = filled(false, 42, envs);
    const Snapshot before = snapshot(dst.store);
    for (int64_t written : {INT64_MAX, INT64_MAX / envs, (int64_t{1} << 62) / envs + 1, int64_t{-1}}) {
      Snapshot s = snapshot(a.store);
      s.written = written;
      EXPECT_THROW(restore(dst.store, s), std::invalid_argument) << written;
      EXPECT_TRUE(snapshot(dst.store) == before);
    }
    Snapshot s = snapshot(a.store);
    s.cleared_at = s.written + 1;
    EXPECT_THROW(restore(dst.store, s), std::invalid_argument);
    EXPECT_TRUE(snapshot(dst.store) == before);
  }
}

TEST(TransitionStore, RestoreRefusesBoolBytesOtherThan01AndDirtyPadding) {
  Fixture a = filled(false, 43);
  Fixture dst(4, 1, 2, 0.9, false);
  const Snapshot before = snapshot(dst.store);
  for (size_t at : {size_t{0}, size_t{12}, size_t{13}, size_t{30}, size_t{32 + 15}}) {  // terminated, truncated, padding
    Snapshot s = snapshot(a.store);
    s.rows[at] = 2;
    EXPECT_THROW(restore(dst.store, s), std::invalid_argument) << "byte " << at;
    EXPECT_TRUE(snapshot(dst.store) == before);
  }
}

TEST(TransitionStore, RestoreRefusesEpisodeBookkeepingThatContradictsTheRows) {
  for (int64_t envs : {1, 2}) {
    Fixture a = filled(true, 44, envs);
    Fixture dst(4 * envs, envs, 2, 0.9, true);
    const Snapshot before = snapshot(dst.store);
    const Snapshot good = snapshot(a.store);
    for (size_t r = 0; r < good.is_first.size(); ++r) {
      Snapshot s = good;
      s.is_first[r] ^= 1;
      EXPECT_THROW(restore(dst.store, s), std::invalid_argument) << "is_first of row " << r;
      s = good;
      s.is_first[r] = 2;
      EXPECT_THROW(restore(dst.store, s), std::invalid_argument) << "is_first 2 at row " << r;
      // The oldest stored step's episode may have begun at any earlier step: its start is
      // checked against the rows only through the steps that follow it.
      const bool oldest = static_cast<int64_t>(r) / envs == (good.written - 4) % 4;
      s = good;
      s.episode_start[r] += 1;
      if (!oldest) {
        EXPECT_THROW(restore(dst.store, s), std::invalid_argument) << "episode_start of row " << r;
      }
      s = good;
      s.episode_start[r] = INT64_MIN;
      EXPECT_THROW(restore(dst.store, s), std::invalid_argument) << "episode_start of row " << r;
      EXPECT_TRUE(snapshot(dst.store) == before);
    }
  }
  // Stores that do not track episodes take no episode arrays.
  Fixture plain = filled(false, 45);
  Snapshot s = snapshot(plain.store);
  s.is_first.assign(4, 0);
  s.episode_start.assign(4, 0);
  Fixture dst(4, 1, 2, 0.9, false);
  EXPECT_THROW(restore(dst.store, s), std::invalid_argument);
}

TEST(TransitionStore, RestoreRefusesAPoolLargerThanTheRows) {
  Fixture a = filled(false, 46);
  Snapshot s = snapshot(a.store);
  const size_t obs_bytes = static_cast<size_t>(a.layout.obs().nbytes);
  const int32_t first_new = static_cast<int32_t>(s.final_pool.size() / obs_bytes);
  for (int32_t k = 0; k < 5; ++k) s.free_slots.push_back(first_new + k);
  s.final_pool.resize(s.final_pool.size() + 5 * obs_bytes);
  Fixture dst(4, 1, 2, 0.9, false);
  EXPECT_THROW(restore(dst.store, s), std::invalid_argument);
}

TEST(TransitionStore, SnapshotRowSampleableAgreesWithTheRestoredStore) {
  for (const auto& [envs, cleared] : std::vector<std::pair<int64_t, bool>>{{1, false}, {2, false}, {1, true}, {2, true}}) {
    Fixture a = filled(true, 47, envs);
    if (cleared) {
      a.store.clear();
      Rng rng(3);
      append_random(a.store, a.layout, a.ref, rng, 1, 0.3, 0.2);
    }
    const Snapshot s = snapshot(a.store);
    for (int64_t r = 0; r < a.store.capacity(); ++r) {
      EXPECT_EQ(a.store.snapshot_row_sampleable(s.written, s.cleared_at, s.rows.data(), r),
                a.store.sampleable(a.store.id_at_row(r)))
          << "row " << r << " envs " << envs << " cleared " << cleared;
    }
  }
}

}  // namespace
