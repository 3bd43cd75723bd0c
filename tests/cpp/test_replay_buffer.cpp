#include "pymbrl/replay/replay_buffer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/rng.h"
#include "replay_support.h"

namespace {

using namespace replay_test;
using pymbrl::replay::PrioritizedReplayBuffer;
using pymbrl::replay::ReplayBuffer;
using pymbrl::replay::SequenceReplayBuffer;

constexpr double kInf = std::numeric_limits<double>::infinity();

template <typename Buffer>
struct With {
  RowLayout layout = test_layout();
  Buffer buf;
  Reference ref;
  template <typename... Extra>
  With(int64_t capacity, int64_t envs, uint64_t seed, Extra... extra)
      : buf(test_layout(), store_config(capacity, envs), seed, extra...) {
    ref.capacity = capacity;
    ref.envs = envs;
  }
  void random(Rng& rng, int64_t steps, double p_term, double p_trunc) {
    append_random(buf, layout, ref, rng, steps, p_term, p_trunc);
  }
  std::vector<int64_t> sample_ids(int64_t n) {
    std::vector<int64_t> ids(static_cast<size_t>(n));
    buf.sample_ids(n, ids.data());
    return ids;
  }
};

Snapshot snapshot_of(const ReplayBuffer& b) { return snapshot(b.store()); }

void restore_into(ReplayBuffer& b, const Snapshot& s, const pymbrl::Rng::State& rng) {
  b.restore_store(s.written, s.cleared_at, s.rows.data(), static_cast<int64_t>(s.rows.size()) / b.store().layout().row_bytes(),
                  s.final_slots, s.final_pool, s.free_slots, s.is_first, s.episode_start, rng);
}

TEST(ReplayBuffer, CheckBatch) {
  With<ReplayBuffer> w(10, 1, 1);
  EXPECT_THROW(w.buf.check_batch(1), std::invalid_argument);  // empty
  Rng data(1);
  w.random(data, 1, 0.0, 0.0);
  EXPECT_EQ(w.buf.size(), 0);
  EXPECT_THROW(w.buf.check_batch(1), std::invalid_argument);  // one step, next observation unknown
  w.random(data, 6, 0.0, 0.0);
  EXPECT_EQ(w.buf.size(), 6);
  EXPECT_NO_THROW(w.buf.check_batch(1));
  EXPECT_NO_THROW(w.buf.check_batch(6));
  EXPECT_THROW(w.buf.check_batch(7), std::invalid_argument);
  EXPECT_THROW(w.buf.check_batch(0), std::invalid_argument);
  EXPECT_THROW(w.buf.check_batch(-3), std::invalid_argument);
  try {
    w.buf.check_batch(7);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("batch_size"), std::string::npos) << e.what();
  }
  std::vector<int64_t> ids(8);
  EXPECT_THROW(w.buf.sample_ids(7, ids.data()), std::invalid_argument);
  EXPECT_THROW(w.buf.sample_ids(0, ids.data()), std::invalid_argument);
}

TEST(ReplayBuffer, SampleIdsOnlyDrawsSampleableIdsUniformly) {
  Rng data(2);
  for (int64_t envs : {1, 3}) {
    With<ReplayBuffer> w(10 * envs, envs, 5);
    w.random(data, 14, 0.15, 0.15);  // wrapped, newest steps partly ended episodes
    ASSERT_EQ(w.buf.size(), w.ref.size());
    std::map<int64_t, double> counts;
    double draws = 0.0;
    while (draws < 30000.0) {  // a batch may not exceed the transitions stored
      for (int64_t id : w.sample_ids(w.buf.size())) counts[id] += 1.0;
      draws += static_cast<double>(w.buf.size());
    }
    for (const auto& [id, c] : counts) {
      ASSERT_TRUE(w.ref.sampleable(id)) << "envs " << envs << " drew id " << id << " " << c << " times";
    }
    std::vector<double> obs, expv;
    for (int64_t id = w.ref.oldest(); id < w.ref.end(); ++id) {
      if (!w.ref.sampleable(id)) continue;
      obs.push_back(counts.count(id) ? counts.at(id) : 0.0);
      expv.push_back(draws / static_cast<double>(w.ref.size()));
    }
    EXPECT_LT(chi_square(obs, expv), chi_square_bound(static_cast<double>(obs.size() - 1))) << envs;
  }
}

TEST(ReplayBuffer, SampleIdsStayValidAsTheBufferWraps) {
  Rng data(3);
  for (int64_t envs : {1, 2}) {
    With<ReplayBuffer> w(6 * envs, envs, 9);
    for (int call = 0; call < 100; ++call) {
      w.random(data, 1 + static_cast<int64_t>(data.uniform_int(3)), 0.2, 0.2);
      if (w.buf.size() == 0) continue;
      for (int64_t id : w.sample_ids(w.buf.size())) {
        ASSERT_TRUE(w.ref.sampleable(id)) << "envs " << envs << " call " << call << " id " << id;
        ASSERT_TRUE(w.buf.store().sampleable(id));
      }
    }
  }
}

TEST(ReplayBuffer, SameSeedSameIds) {
  Rng d1(4), d2(4);
  With<ReplayBuffer> a(32, 2, 1234), b(32, 2, 1234), c(32, 2, 1235);
  a.random(d1, 20, 0.1, 0.1);
  b.random(d2, 20, 0.1, 0.1);
  Rng d3(4);
  c.random(d3, 20, 0.1, 0.1);
  ASSERT_EQ(a.buf.size(), c.buf.size());
  std::vector<int64_t> ia, ib, ic;
  for (int rep = 0; rep < 5; ++rep) {
    for (int64_t id : a.sample_ids(a.buf.size())) ia.push_back(id);
    for (int64_t id : b.sample_ids(b.buf.size())) ib.push_back(id);
    for (int64_t id : c.sample_ids(c.buf.size())) ic.push_back(id);
  }
  EXPECT_EQ(ia, ib);
  EXPECT_NE(ia, ic);
  EXPECT_EQ(a.buf.rng().state(), b.buf.rng().state());
}

TEST(ReplayBuffer, ClearEmptiesTheBuffer) {
  Rng data(5);
  With<ReplayBuffer> w(8, 1, 1);
  w.random(data, 12, 0.2, 0.1);
  w.buf.clear();
  EXPECT_EQ(w.buf.size(), 0);
  EXPECT_EQ(w.buf.store().stored_steps(), 0);
  EXPECT_EQ(w.buf.store().written(), 12);  // ids keep counting, so old ones stay stale
  EXPECT_THROW(w.buf.check_batch(1), std::invalid_argument);
}

TEST(ReplayBuffer, RestoreStoreRoundTripContinuesTheSameStream) {
  Rng data(6);
  With<ReplayBuffer> a(12, 1, 77);
  a.random(data, 17, 0.2, 0.1);
  a.sample_ids(10);  // move the generator off its seed
  With<ReplayBuffer> b(12, 1, 1);
  restore_into(b.buf, snapshot_of(a.buf), a.buf.rng().state());
  EXPECT_TRUE(snapshot_of(b.buf) == snapshot_of(a.buf));
  EXPECT_EQ(b.buf.size(), a.buf.size());
  for (int rep = 0; rep < 4; ++rep) EXPECT_EQ(b.sample_ids(b.buf.size()), a.sample_ids(a.buf.size())) << rep;
}

TEST(ReplayBuffer, RestoreStoreRejectsAZeroGeneratorState) {
  Rng data(7);
  With<ReplayBuffer> src(12, 1, 3);
  src.random(data, 9, 0.2, 0.1);
  With<ReplayBuffer> w(12, 1, 4);
  w.random(data, 15, 0.2, 0.1);
  const Snapshot before = snapshot_of(w.buf);
  const auto rng_before = w.buf.rng().state();
  EXPECT_THROW(restore_into(w.buf, snapshot_of(src.buf), pymbrl::Rng::State{0, 0, 0, 0}), std::invalid_argument);
  EXPECT_TRUE(snapshot_of(w.buf) == before) << "the store changed";
  EXPECT_EQ(w.buf.rng().state(), rng_before);
  // One non-zero word is enough.
  EXPECT_NO_THROW(restore_into(w.buf, snapshot_of(src.buf), pymbrl::Rng::State{0, 0, 1, 0}));
  EXPECT_EQ(w.buf.rng().state(), (pymbrl::Rng::State{0, 0, 1, 0}));
}

TEST(ReplayBuffer, RestoreStoreWithABadSnapshotKeepsTheGenerator) {
  Rng data(8);
  With<ReplayBuffer> w(12, 1, 4);
  w.random(data, 15, 0.2, 0.1);
  Snapshot bad = snapshot_of(w.buf);
  bad.final_slots.pop_back();
  const auto rng_before = w.buf.rng().state();
  EXPECT_THROW(restore_into(w.buf, bad, pymbrl::Rng::State{1, 2, 3, 4}), std::invalid_argument);
  EXPECT_EQ(w.buf.rng().state(), rng_before);
}

// --- PrioritizedReplayBuffer ---

using Prio = With<PrioritizedReplayBuffer>;

TEST(PrioritizedReplayBuffer, ConstructorValidatesSamplerArguments) {
  EXPECT_THROW(PrioritizedReplayBuffer(test_layout(), store_config(8), 1, -1.0, 0.0), std::invalid_argument);
  EXPECT_THROW(PrioritizedReplayBuffer(test_layout(), store_config(8), 1, 0.6, -1.0), std::invalid_argument);
  EXPECT_THROW(PrioritizedReplayBuffer(test_layout(), store_config(0), 1, 0.6, 0.0), std::invalid_argument);
}

TEST(PrioritizedReplayBuffer, AppendThroughTheBaseClassUpdatesPriorities) {
  Prio w(8, 1, 1, 0.6, 1e-6);
  ReplayBuffer& base = w.buf;
  Rng data(9);
  append_random(base, w.layout, w.ref, data, 5, 0.0, 0.0);
  EXPECT_DOUBLE_EQ(w.buf.sampler().total(), 4.0);  // ids 0..3 at max priority 1; 4 is the newest
  EXPECT_EQ(w.buf.sampler().sum_tree().leaf(4), 0.0);
  base.clear();
  EXPECT_EQ(w.buf.sampler().total(), 0.0);
  EXPECT_EQ(w.buf.size(), 0);
}

TEST(PrioritizedReplayBuffer, SamplePrioritizedChecksArguments) {
  Prio w(8, 1, 1, 0.6, 1e-6);
  std::vector<int64_t> ids(8);
  std::vector<float> wt(8);
  EXPECT_THROW(w.buf.sample_prioritized(1, 0.4, ids.data(), wt.data()), std::invalid_argument);  // empty
  Rng data(10);
  w.random(data, 5, 0.0, 0.0);
  EXPECT_THROW(w.buf.sample_prioritized(5, 0.4, ids.data(), wt.data()), std::invalid_argument);
  EXPECT_THROW(w.buf.sample_prioritized(0, 0.4, ids.data(), wt.data()), std::invalid_argument);
  for (double beta : {-0.1, std::nan(""), kInf}) {
    EXPECT_THROW(w.buf.sample_prioritized(2, beta, ids.data(), wt.data()), std::invalid_argument) << beta;
  }
  EXPECT_NO_THROW(w.buf.sample_prioritized(4, 0.0, ids.data(), wt.data()));
  EXPECT_NO_THROW(w.buf.sample_prioritized(4, 3.0, ids.data(), wt.data()));
}

TEST(PrioritizedReplayBuffer, SamplesOnlySampleableIdsAndLearnsPriorities) {
  Rng data(11);
  for (int64_t envs : {1, 2}) {
    Prio w(10 * envs, envs, 3, 0.6, 1e-3);
    std::vector<int64_t> ids(16);
    std::vector<float> wt(16);
    for (int call = 0; call < 60; ++call) {
      w.random(data, 1 + static_cast<int64_t>(data.uniform_int(3)), 0.15, 0.1);
      if (w.buf.size() == 0) continue;
      const int64_t n = std::min<int64_t>(16, w.buf.size());
      w.buf.sample_prioritized(n, 0.4, ids.data(), wt.data());
      std::vector<double> pr;
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_TRUE(w.ref.sampleable(ids[static_cast<size_t>(i)])) << "envs " << envs << " call " << call;
        ASSERT_GT(wt[static_cast<size_t>(i)], 0.0f);
        ASSERT_LE(wt[static_cast<size_t>(i)], 1.0f);
        pr.push_back(data.uniform() * 2.0);
      }
      w.buf.update_priorities(ids.data(), pr.data(), n);
    }
  }
}

TEST(PrioritizedReplayBuffer, SameSeedSameSamples) {
  Rng d1(12), d2(12);
  Prio a(16, 1, 99, 0.6, 1e-6), b(16, 1, 99, 0.6, 1e-6);
  a.random(d1, 20, 0.1, 0.1);
  b.random(d2, 20, 0.1, 0.1);
  std::vector<int64_t> ia(10), ib(10);
  std::vector<float> wa(10), wb(10);
  a.buf.sample_prioritized(10, 0.4, ia.data(), wa.data());
  b.buf.sample_prioritized(10, 0.4, ib.data(), wb.data());
  EXPECT_EQ(ia, ib);
  EXPECT_EQ(wa, wb);
}

TEST(PrioritizedReplayBuffer, UpdatePrioritiesRejectsBadInput) {
  Prio w(8, 1, 1, 1.0, 0.0);
  Rng data(13);
  w.random(data, 5, 0.0, 0.0);
  const double total = w.buf.sampler().total();
  const int64_t bad_id = 5;
  const double p = 1.0;
  EXPECT_THROW(w.buf.update_priorities(&bad_id, &p, 1), std::invalid_argument);
  const int64_t id = 1;
  const double bad_p = -2.0;
  EXPECT_THROW(w.buf.update_priorities(&id, &bad_p, 1), std::invalid_argument);
  EXPECT_EQ(w.buf.sampler().total(), total);
  const double good = 3.0;
  w.buf.update_priorities(&id, &good, 1);
  EXPECT_DOUBLE_EQ(w.buf.sampler().total(), total - 1.0 + 3.0);
}

TEST(PrioritizedReplayBuffer, RestoreStoreAndSamplerContinuesTheSameStream) {
  Rng data(14);
  Prio a(12, 1, 5, 0.6, 1e-6);
  a.random(data, 19, 0.2, 0.1);
  std::vector<int64_t> ids(6);
  std::vector<float> wt(6);
  a.buf.sample_prioritized(6, 0.4, ids.data(), wt.data());
  std::vector<double> pr = {0.5, 2.0, 0.1, 4.0, 1.0, 3.0};
  a.buf.update_priorities(ids.data(), pr.data(), 6);

  Prio b(12, 1, 6, 0.6, 1e-6);
  restore_into(b.buf, snapshot_of(a.buf), a.buf.rng().state());
  b.buf.sampler().restore(b.buf.store(), a.buf.sampler().leaves(), a.buf.sampler().max_priority());
  std::vector<int64_t> i1(20), i2(20);
  std::vector<float> w1(20), w2(20);
  a.buf.sample_prioritized(std::min<int64_t>(20, a.buf.size()), 0.4, i1.data(), w1.data());
  b.buf.sample_prioritized(std::min<int64_t>(20, b.buf.size()), 0.4, i2.data(), w2.data());
  EXPECT_EQ(i1, i2);
  EXPECT_EQ(w1, w2);
}

TEST(PrioritizedReplayBuffer, RestoreStoreRejectsAZeroGeneratorState) {
  Rng data(15);
  Prio w(12, 1, 5, 0.6, 1e-6);
  w.random(data, 9, 0.2, 0.1);
  const Snapshot before = snapshot_of(w.buf);
  EXPECT_THROW(restore_into(w.buf, before, pymbrl::Rng::State{}), std::invalid_argument);
  EXPECT_TRUE(snapshot_of(w.buf) == before);
}

// --- SequenceReplayBuffer ---

TEST(SequenceReplayBuffer, TracksEpisodesWithOneStepReturnsWhateverTheConfigSays) {
  StoreConfig c = store_config(16, 2, 4, 0.5, false);
  SequenceReplayBuffer buf(test_layout(), c, 1);
  EXPECT_TRUE(buf.store().config().track_episodes);
  EXPECT_EQ(buf.store().config().n_step, 1);
  EXPECT_EQ(buf.store().config().num_envs, 2);
  EXPECT_EQ(buf.store().config().gamma, 0.5);
  EXPECT_EQ(buf.store().is_first_flags().size(), 16u);
}

TEST(SequenceReplayBuffer, SampleWindowsChecksArgumentsAndReturnsValidWindows) {
  With<SequenceReplayBuffer> w(20, 1, 3);
  Rng data(16);
  w.random(data, 25, 0.1, 0.1);
  std::vector<int64_t> starts(32);
  EXPECT_THROW(w.buf.sample_windows(0, 3, false, starts.data()), std::invalid_argument);
  EXPECT_THROW(w.buf.sample_windows(-1, 3, false, starts.data()), std::invalid_argument);
  EXPECT_THROW(w.buf.sample_windows(4, 0, false, starts.data()), std::invalid_argument);
  EXPECT_THROW(w.buf.sample_windows(4, 20, false, starts.data()), std::invalid_argument);
  w.buf.sample_windows(32, 5, false, starts.data());
  for (int64_t st : starts) {
    for (int64_t k = 0; k < 5; ++k) ASSERT_TRUE(w.ref.sampleable(st + k)) << st;
  }
  // Windows are not limited by the batch-size rule of transition sampling.
  EXPECT_NO_THROW(w.buf.sample_windows(1000, 2, false, std::vector<int64_t>(1000).data()));
}

TEST(SequenceReplayBuffer, SameSeedSameWindows) {
  With<SequenceReplayBuffer> a(20, 2, 42), b(20, 2, 42);
  Rng d1(17), d2(17);
  a.random(d1, 15, 0.1, 0.1);
  b.random(d2, 15, 0.1, 0.1);
  std::vector<int64_t> sa(50), sb(50);
  a.buf.sample_windows(50, 3, false, sa.data());
  b.buf.sample_windows(50, 3, false, sb.data());
  EXPECT_EQ(sa, sb);
}

TEST(SequenceReplayBuffer, RestoreStoreRejectsAZeroGeneratorStateAndKeepsEpisodes) {
  With<SequenceReplayBuffer> a(10, 1, 1), b(10, 1, 2);
  Rng data(18);
  a.random(data, 13, 0.2, 0.1);
  b.random(data, 7, 0.2, 0.1);
  const Snapshot before = snapshot_of(b.buf);
  EXPECT_THROW(restore_into(b.buf, snapshot_of(a.buf), pymbrl::Rng::State{}), std::invalid_argument);
  EXPECT_TRUE(snapshot_of(b.buf) == before);
  restore_into(b.buf, snapshot_of(a.buf), pymbrl::Rng::State{9, 9, 9, 9});
  EXPECT_TRUE(snapshot_of(b.buf) == snapshot_of(a.buf));
  for (int64_t id = a.buf.store().oldest_id(); id < a.buf.store().end_id(); ++id) {
    EXPECT_EQ(b.buf.store().is_first(id), a.ref.is_first(id)) << id;
    EXPECT_EQ(b.buf.store().episode_start(id), a.ref.episode_start(id)) << id;
  }
}

// The store used to be restored before the priorities were checked against it.
TEST(PrioritizedReplayBuffer, RestoreAllRefusedByThePrioritiesLeavesTheStoreUnchanged) {
  Prio a(8, 1, 1, 0.6, 0.01);
  Prio b(8, 1, 2, 0.6, 0.01);
  Rng data(3);
  a.random(data, 11, 0.0, 0.0);
  b.random(data, 5, 0.0, 0.0);
  const Snapshot before = snapshot_of(b.buf);
  const std::vector<double> leaves_before = b.buf.sampler().leaves();
  const Snapshot s = snapshot_of(a.buf);
  std::vector<double> leaves = a.buf.sampler().leaves();
  leaves[static_cast<size_t>(a.buf.store().row_of(a.buf.store().end_id() - 1))] = 1.0;  // the newest: not sampleable
  EXPECT_THROW(b.buf.restore_all(s.written, s.cleared_at, s.rows.data(), 8, s.final_slots, s.final_pool, s.free_slots,
                                 s.is_first, s.episode_start, a.buf.rng().state(), leaves, 1.0),
               std::invalid_argument);
  EXPECT_TRUE(snapshot_of(b.buf) == before);
  EXPECT_EQ(b.buf.sampler().leaves(), leaves_before);
  b.buf.restore_all(s.written, s.cleared_at, s.rows.data(), 8, s.final_slots, s.final_pool, s.free_slots, s.is_first,
                    s.episode_start, a.buf.rng().state(), a.buf.sampler().leaves(), a.buf.sampler().max_priority());
  EXPECT_TRUE(snapshot_of(b.buf) == snapshot_of(a.buf));
}

// sample(30'000'000, 2) on a 6-row buffer used to allocate 2.7 GB.
TEST(SequenceReplayBuffer, CheckWindowsBoundsTheBatchBeforeAnythingIsAllocated) {
  With<SequenceReplayBuffer> w(6, 1, 1);
  Rng data(4);
  w.random(data, 6, 0.0, 0.0);
  EXPECT_NO_THROW(w.buf.check_windows(16, 4));  // windows may repeat within the byte limit
  EXPECT_THROW(w.buf.check_windows(30'000'000, 2), std::invalid_argument);
  EXPECT_THROW(w.buf.check_windows(INT64_MAX, 2), std::invalid_argument);
  EXPECT_THROW(w.buf.check_windows(2, INT64_MAX), std::invalid_argument);
  EXPECT_THROW(w.buf.check_windows(0, 2), std::invalid_argument);
  EXPECT_THROW(w.buf.check_windows(1, 6), std::invalid_argument);  // 6 stored steps: windows of at most 5
}

}  // namespace
