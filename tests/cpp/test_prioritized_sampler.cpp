#include "pymbrl/replay/prioritized_sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/rng.h"
#include "replay_support.h"

namespace {

using namespace replay_test;
using pymbrl::replay::PrioritizedSampler;

constexpr double kInf = std::numeric_limits<double>::infinity();

// A store and a sampler kept in step, as PrioritizedReplayBuffer does.
struct Harness {
  RowLayout layout;
  TransitionStore store;
  PrioritizedSampler sampler;
  Reference ref;
  Harness(int64_t capacity, int64_t envs, double alpha, double eps = 0.0)
      : layout(test_layout()), store(test_layout(), store_config(capacity, envs)), sampler(capacity, alpha, eps) {
    ref.capacity = capacity;
    ref.envs = envs;
  }
  void step(const std::string& flags) {
    std::vector<Tr> items;
    for (size_t e = 0; e < flags.size(); ++e) {
      items.push_back(tr_for(ref.end() + static_cast<int64_t>(e), 1.0, flags[e] == 'T', flags[e] == 'X'));
    }
    ref.log.insert(ref.log.end(), items.begin(), items.end());
    sampler.on_append(store, append_items(store, layout, items, 1));
  }
  void random(Rng& rng, int64_t steps, double p_term, double p_trunc) {
    sampler.on_append(store, append_random(store, layout, ref, rng, steps, p_term, p_trunc));
  }
  double leaf_of(int64_t id) const { return sampler.sum_tree().leaf(store.row_of(id)); }
  void update(int64_t id, double priority) { sampler.update(store, &id, &priority, 1); }
};

TEST(PrioritizedSampler, ConstructorValidates) {
  EXPECT_NO_THROW(PrioritizedSampler(8, 0.0, 0.0));
  EXPECT_NO_THROW(PrioritizedSampler(8, 2.5, 1e-6));
  EXPECT_THROW(PrioritizedSampler(8, -0.1, 0.0), std::invalid_argument);
  EXPECT_THROW(PrioritizedSampler(8, std::nan(""), 0.0), std::invalid_argument);
  EXPECT_THROW(PrioritizedSampler(8, kInf, 0.0), std::invalid_argument);
  EXPECT_THROW(PrioritizedSampler(8, 0.6, -1e-9), std::invalid_argument);
  EXPECT_THROW(PrioritizedSampler(8, 0.6, std::nan("")), std::invalid_argument);
  EXPECT_THROW(PrioritizedSampler(8, 0.6, kInf), std::invalid_argument);
}

TEST(PrioritizedSampler, StartsEmptyWithMaxPriorityOne) {
  PrioritizedSampler s(10, 0.6, 0.01);
  EXPECT_EQ(s.alpha(), 0.6);
  EXPECT_EQ(s.eps(), 0.01);
  EXPECT_EQ(s.total(), 0.0);
  EXPECT_EQ(s.max_priority(), 1.0);
}

TEST(PrioritizedSampler, OnAppendSingleEnv) {
  const double a = 0.5;
  Harness s(8, 1, a);
  s.step(".");  // id 0: newest, not done: not sampleable yet
  EXPECT_EQ(s.leaf_of(0), 0.0);
  EXPECT_EQ(s.sampler.total(), 0.0);
  s.step(".");  // id 0 becomes sampleable with the max priority (1)
  EXPECT_EQ(s.leaf_of(0), 1.0);
  EXPECT_EQ(s.leaf_of(1), 0.0);
  s.update(0, 9.0);  // max priority 9
  EXPECT_EQ(s.sampler.max_priority(), 9.0);
  EXPECT_DOUBLE_EQ(s.leaf_of(0), 3.0);
  s.step("T");  // id 1 becomes sampleable; id 2 ended an episode: sampleable at once
  EXPECT_DOUBLE_EQ(s.leaf_of(1), 3.0);
  EXPECT_DOUBLE_EQ(s.leaf_of(2), 3.0);
  EXPECT_DOUBLE_EQ(s.leaf_of(0), 3.0);
  s.update(2, 0.25);
  s.step(".");  // id 2 was sampleable already: keeps its own priority
  EXPECT_DOUBLE_EQ(s.leaf_of(2), 0.5);
  EXPECT_EQ(s.leaf_of(3), 0.0);
  EXPECT_DOUBLE_EQ(s.sampler.total(), 3.0 + 3.0 + 0.5);
}

TEST(PrioritizedSampler, OnAppendMultiEnv) {
  Harness s(8, 2, 1.0);
  s.step("T.");  // id 0 (stream 0) ended an episode; id 1 goes on
  EXPECT_EQ(s.leaf_of(0), 1.0);
  EXPECT_EQ(s.leaf_of(1), 0.0);
  s.update(0, 0.5);
  s.step("..");
  EXPECT_EQ(s.leaf_of(0), 0.5);  // untouched: it was sampleable before
  EXPECT_EQ(s.leaf_of(1), 1.0);  // stream 1 moved on
  EXPECT_EQ(s.leaf_of(2), 0.0);
  EXPECT_EQ(s.leaf_of(3), 0.0);
  EXPECT_DOUBLE_EQ(s.sampler.total(), 1.5);
}

TEST(PrioritizedSampler, OnAppendWithManyStepsAtOnce) {
  Harness s(16, 2, 1.0);
  std::vector<Tr> items;
  for (int64_t id = 0; id < 10; ++id) items.push_back(tr_for(id, 0.0, id == 9));
  s.ref.log = items;
  s.sampler.on_append(s.store, append_items(s.store, s.layout, items, 5));
  for (int64_t id = 0; id < 8; ++id) EXPECT_EQ(s.leaf_of(id), 1.0) << id;
  EXPECT_EQ(s.leaf_of(8), 0.0);  // stream 0's newest
  EXPECT_EQ(s.leaf_of(9), 1.0);  // stream 1's newest, terminated
  EXPECT_DOUBLE_EQ(s.sampler.total(), 9.0);
  s.update(9, 4.0);
  // One call writing more than the whole ring (20 steps into 8 per stream): every stored row is
  // new, and only stream 0's newest (not done) is left out.
  items.clear();
  for (int64_t id = 10; id < 50; ++id) items.push_back(tr_for(id, 0.0, id == 49));
  s.ref.log.insert(s.ref.log.end(), items.begin(), items.end());
  s.sampler.on_append(s.store, append_items(s.store, s.layout, items, 20));
  EXPECT_EQ(s.store.oldest_id(), 34);
  for (int64_t id = 34; id < 50; ++id) EXPECT_DOUBLE_EQ(s.leaf_of(id), id == 48 ? 0.0 : 4.0) << id;  // max priority 4
  EXPECT_DOUBLE_EQ(s.sampler.total(), 15.0 * 4.0);
}

// After every append: a row's leaf is positive exactly when its transition is sampleable; rows
// that just became sampleable carry max_priority^alpha; rows sampleable before keep their value.
TEST(PrioritizedSampler, OnAppendMatchesSampleabilityAfterRandomAppends) {
  Rng rng(23);
  for (int64_t envs : {1, 2, 3}) {
    const double alpha = 0.7;
    Harness s(6 * envs, envs, alpha, 0.01);
    std::map<int64_t, double> expected;  // id -> leaf, for sampleable ids
    for (int call = 0; call < 150; ++call) {
      const double top = std::pow(s.sampler.max_priority(), alpha);
      s.random(rng, 1 + static_cast<int64_t>(rng.uniform_int(3)), 0.15, 0.1);
      std::map<int64_t, double> now;
      for (int64_t id = s.ref.oldest(); id < s.ref.end(); ++id) {
        if (!s.ref.sampleable(id)) continue;
        auto it = expected.find(id);
        now[id] = it != expected.end() ? it->second : top;
      }
      expected = now;
      for (int64_t id = s.ref.oldest(); id < s.ref.end(); ++id) {
        const double want = expected.count(id) ? expected[id] : 0.0;
        ASSERT_DOUBLE_EQ(s.leaf_of(id), want) << "envs " << envs << " call " << call << " id " << id;
      }
      if (s.ref.end() < s.store.capacity()) {
        for (int64_t r = s.ref.end(); r < s.store.capacity(); ++r) ASSERT_EQ(s.sampler.sum_tree().leaf(r), 0.0) << r;
      }
      // Random priority updates in between, stale and unsampleable ids included.
      std::vector<int64_t> ids;
      std::vector<double> pr;
      for (int k = 0; k < 4; ++k) {
        const int64_t id = static_cast<int64_t>(rng.uniform_int(static_cast<uint64_t>(s.ref.end())));
        ids.push_back(id);
        pr.push_back(rng.uniform() * 3.0);
      }
      s.sampler.update(s.store, ids.data(), pr.data(), static_cast<int64_t>(ids.size()));
      for (size_t k = 0; k < ids.size(); ++k) {
        if (s.ref.sampleable(ids[k])) expected[ids[k]] = std::pow(pr[k] + 0.01, alpha);
      }
      double total = 0.0;
      for (const auto& [id, v] : expected) total += v;
      ASSERT_NEAR(s.sampler.total(), total, 1e-9 * total) << "envs " << envs << " call " << call;
    }
  }
}

TEST(PrioritizedSampler, UpdateSetsPriorityPlusEpsToTheAlpha) {
  Harness s(8, 1, 0.5, 0.5);
  for (int i = 0; i < 4; ++i) s.step(".");
  s.update(1, 3.5);
  EXPECT_DOUBLE_EQ(s.leaf_of(1), 2.0);  // (3.5 + 0.5)^0.5
  EXPECT_EQ(s.sampler.max_priority(), 4.0);
  s.update(1, 0.0);
  EXPECT_DOUBLE_EQ(s.leaf_of(1), std::sqrt(0.5));
  EXPECT_EQ(s.sampler.max_priority(), 4.0);  // a running maximum
  s.step(".");  // id 3 becomes sampleable with the running maximum
  EXPECT_DOUBLE_EQ(s.leaf_of(3), 2.0);
  // Repeated ids in one call: the last wins.
  const int64_t ids[] = {2, 2};
  const double pr[] = {15.5, 0.5};
  s.sampler.update(s.store, ids, pr, 2);
  EXPECT_DOUBLE_EQ(s.leaf_of(2), 1.0);
  EXPECT_EQ(s.sampler.max_priority(), 16.0);
}

TEST(PrioritizedSampler, UpdateIgnoresStaleAndUnsampleableIds) {
  Harness s(4, 1, 1.0);
  for (int i = 0; i < 7; ++i) s.step(".");  // ids 3..6 stored, 6 newest
  const std::vector<double> before(s.sampler.sum_tree().leaves(), s.sampler.sum_tree().leaves() + 4);
  // id 1 was in row 1, which now holds id 5; id 6 is the newest and not sampleable yet.
  const int64_t ids[] = {1, 2, 6};
  const double pr[] = {50.0, 60.0, 70.0};
  s.sampler.update(s.store, ids, pr, 3);
  const std::vector<double> after(s.sampler.sum_tree().leaves(), s.sampler.sum_tree().leaves() + 4);
  EXPECT_EQ(after, before);
  EXPECT_EQ(s.leaf_of(6), 0.0);
  EXPECT_EQ(s.sampler.max_priority(), 1.0);  // ignored ids do not raise the maximum
}

TEST(PrioritizedSampler, UpdateRejectsBadInputAndChangesNothing) {
  Harness s(8, 1, 0.6);
  for (int i = 0; i < 5; ++i) s.step(".");
  const std::vector<double> before(s.sampler.sum_tree().leaves(), s.sampler.sum_tree().leaves() + 8);
  const double max_before = s.sampler.max_priority();
  const double total_before = s.sampler.total();
  struct Case {
    int64_t id;
    double priority;
  };
  for (const Case& c : {Case{-1, 1.0}, Case{5, 1.0}, Case{1000, 1.0}, Case{1, -0.5}, Case{1, std::nan("")},
                        Case{1, kInf}, Case{1, -kInf}}) {
    // A good pair first: the whole call must be refused, not applied up to the bad pair.
    const int64_t ids[] = {0, c.id};
    const double pr[] = {7.0, c.priority};
    EXPECT_THROW(s.sampler.update(s.store, ids, pr, 2), std::invalid_argument) << c.id << " " << c.priority;
    const std::vector<double> after(s.sampler.sum_tree().leaves(), s.sampler.sum_tree().leaves() + 8);
    EXPECT_EQ(after, before) << c.id << " " << c.priority;
    EXPECT_EQ(s.sampler.max_priority(), max_before);
    EXPECT_EQ(s.sampler.total(), total_before);
  }
}

// Draws `draws` ids in batches and counts them.
std::map<int64_t, double> draw_counts(Harness& s, Rng& rng, int64_t batch, int64_t draws, double beta) {
  std::map<int64_t, double> counts;
  std::vector<int64_t> ids(static_cast<size_t>(batch));
  std::vector<float> w(static_cast<size_t>(batch));
  for (int64_t done = 0; done < draws; done += batch) {
    s.sampler.sample(s.store, rng, batch, beta, ids.data(), w.data());
    for (int64_t id : ids) counts[id] += 1.0;
  }
  return counts;
}

TEST(PrioritizedSampler, SampleFrequenciesFollowPriorityToTheAlpha) {
  const double alpha = 0.7;
  Harness s(40, 1, alpha, 0.0);  // 40 leaves: not a power of 8
  Rng data(1);
  for (int i = 0; i < 53; ++i) s.step(i % 11 == 5 ? "T" : ".");  // wrapped: ids 13..52 stored, 52 newest
  std::map<int64_t, double> p;
  for (int64_t id = 13; id < 52; ++id) {
    p[id] = 0.05 + 5.0 * data.uniform();
    s.update(id, p[id]);
  }
  p[20] = 0.001;  // a rare one
  s.update(20, p[20]);
  double z = 0.0;
  for (const auto& [id, v] : p) z += std::pow(v, alpha);
  Rng rng(77);
  const int64_t draws = 200000;
  const auto counts = draw_counts(s, rng, 50, draws, 0.4);
  std::vector<double> obs, expv;
  for (const auto& [id, v] : p) {
    const double e = draws * std::pow(v, alpha) / z;
    if (e >= 5.0) {
      obs.push_back(counts.count(id) ? counts.at(id) : 0.0);
      expv.push_back(e);
    }
  }
  for (const auto& [id, c] : counts) {
    ASSERT_TRUE(p.count(id)) << "drew id " << id << ", which is not sampleable (" << c << " times)";
  }
  const double chi2 = chi_square(obs, expv);
  EXPECT_LT(chi2, chi_square_bound(static_cast<double>(obs.size() - 1))) << "chi2 " << chi2 << " over " << obs.size();
}

TEST(PrioritizedSampler, AlphaZeroIsUniformOverSampleableIds) {
  Harness s(24, 2, 0.0);
  for (int i = 0; i < 20; ++i) s.step(i % 4 == 1 ? ".T" : "..");
  for (int64_t id = 16; id < 38; ++id) s.update(id, 1.0 + static_cast<double>(id));
  Rng rng(5);
  const int64_t draws = 100000;
  const auto counts = draw_counts(s, rng, 64, draws, 1.0);
  std::vector<double> obs, expv;
  const double n = static_cast<double>(s.store.size());
  for (int64_t id = s.store.oldest_id(); id < s.store.end_id(); ++id) {
    if (!s.store.sampleable(id)) {
      EXPECT_EQ(counts.count(id), 0u) << id;
      continue;
    }
    obs.push_back(counts.count(id) ? counts.at(id) : 0.0);
    expv.push_back(static_cast<double>(draws) / n);
  }
  EXPECT_EQ(static_cast<int64_t>(obs.size()), s.store.size());
  EXPECT_LT(chi_square(obs, expv), chi_square_bound(n - 1));
}

TEST(PrioritizedSampler, WeightsAreNormalisedImportanceWeights) {
  const double alpha = 0.5, beta = 0.7;
  Harness s(8, 1, alpha, 0.0);
  for (int i = 0; i < 5; ++i) s.step(".");
  const double pr[] = {1.0, 4.0, 9.0, 16.0};  // p^alpha = 1, 2, 3, 4
  for (int64_t id = 0; id < 4; ++id) s.update(id, pr[id]);
  Rng rng(3);
  std::vector<int64_t> ids(400);
  std::vector<float> w(400);
  s.sampler.sample(s.store, rng, 400, beta, ids.data(), w.data());
  for (size_t i = 0; i < ids.size(); ++i) {
    ASSERT_GE(ids[i], 0);
    ASSERT_LT(ids[i], 4);
    // (N P(i))^-beta / max_j (N P(j))^-beta = (p_i^alpha / min_j p_j^alpha)^-beta
    const double want = std::pow(static_cast<double>(ids[i] + 1) / 1.0, -beta);
    EXPECT_FLOAT_EQ(w[i], static_cast<float>(want)) << ids[i];
    EXPECT_LE(w[i], 1.0f);
  }
  // The stratified batch covers all four ids, the least likely one with weight 1.
  EXPECT_NE(std::find(ids.begin(), ids.end(), 0), ids.end());
  EXPECT_EQ(w[static_cast<size_t>(std::find(ids.begin(), ids.end(), 0) - ids.begin())], 1.0f);
  // beta = 0: no correction.
  s.sampler.sample(s.store, rng, 50, 0.0, ids.data(), w.data());
  for (int i = 0; i < 50; ++i) EXPECT_EQ(w[static_cast<size_t>(i)], 1.0f);
}

TEST(PrioritizedSampler, StratifiedBatchIsOrderedByPrefix) {
  // One draw per slice of the mass: with equal priorities a batch of N over N ids is a permutation
  // in row order (no wrap here).
  Harness s(16, 1, 1.0);
  for (int i = 0; i < 9; ++i) s.step(".");
  Rng rng(4);
  std::vector<int64_t> ids(8);
  std::vector<float> w(8);
  s.sampler.sample(s.store, rng, 8, 0.4, ids.data(), w.data());
  for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(ids[static_cast<size_t>(i)], i);
}

TEST(PrioritizedSampler, SampledIdsAreStoredAndSampleableAfterWraps) {
  Rng rng(19);
  for (int64_t envs : {1, 3}) {
    Harness s(9 * envs, envs, 0.6, 0.01);  // 9 or 27 rows: not a power of 8
    std::vector<int64_t> ids(32);
    std::vector<float> w(32);
    for (int call = 0; call < 80; ++call) {
      s.random(rng, 1 + static_cast<int64_t>(rng.uniform_int(4)), 0.2, 0.1);
      if (s.store.size() == 0) continue;
      s.sampler.sample(s.store, rng, 32, 0.5, ids.data(), w.data());
      double min_leaf = kInf;
      for (int64_t id = s.ref.oldest(); id < s.ref.end(); ++id) {
        if (s.ref.sampleable(id)) min_leaf = std::min(min_leaf, s.leaf_of(id));
      }
      for (size_t i = 0; i < ids.size(); ++i) {
        ASSERT_TRUE(s.ref.sampleable(ids[i])) << "envs " << envs << " call " << call << " id " << ids[i] << " (stored "
                                              << s.ref.oldest() << ".." << s.ref.end() << ")";
        ASSERT_FLOAT_EQ(w[i], static_cast<float>(std::pow(s.leaf_of(ids[i]) / min_leaf, -0.5)));
      }
      // Fresh priorities for what was drawn, as a learner would.
      std::vector<double> pr;
      for (size_t i = 0; i < ids.size(); ++i) pr.push_back(rng.uniform() * 4.0);
      s.sampler.update(s.store, ids.data(), pr.data(), static_cast<int64_t>(ids.size()));
    }
  }
}

TEST(PrioritizedSampler, ClearResetsPrioritiesAndMaximum) {
  Harness s(8, 1, 0.6);
  for (int i = 0; i < 5; ++i) s.step(".");
  s.update(1, 30.0);
  s.store.clear();
  s.sampler.clear();
  EXPECT_EQ(s.sampler.total(), 0.0);
  EXPECT_EQ(s.sampler.max_priority(), 1.0);
  for (int64_t r = 0; r < s.sampler.sum_tree().n_leaves(); ++r) EXPECT_EQ(s.sampler.sum_tree().leaf(r), 0.0);
  s.ref.cleared = s.ref.end();
  const int64_t first = s.store.end_id();
  s.step(".");
  s.step(".");
  EXPECT_EQ(s.leaf_of(first), 1.0);
  // The min tree was reset too: a lone row gets weight 1.
  Rng rng(1);
  int64_t id;
  float w;
  s.sampler.sample(s.store, rng, 1, 1.0, &id, &w);
  EXPECT_EQ(id, first);
  EXPECT_EQ(w, 1.0f);
}

TEST(PrioritizedSampler, RestoreRoundTrip) {
  Rng data(2);
  Harness a(20, 1, 0.6, 0.01);
  for (int i = 0; i < 27; ++i) a.random(data, 1, 0.2, 0.1);
  for (int64_t id = a.store.oldest_id(); id < a.store.end_id(); ++id) {
    if (a.store.sampleable(id)) a.update(id, data.uniform() * 6.0);
  }
  const std::vector<double> leaves = a.sampler.leaves();
  EXPECT_EQ(static_cast<int64_t>(leaves.size()), a.sampler.sum_tree().n_leaves());

  Harness b(20, 1, 0.6, 0.01);
  b.store.restore(a.store.written(), a.store.cleared_at(), a.store.rows_data(), a.store.written_rows(), a.store.final_slots(),
                  a.store.final_pool(), a.store.free_slots(), {}, {});
  b.sampler.restore(b.store, leaves, a.sampler.max_priority());
  EXPECT_EQ(b.sampler.leaves(), leaves);
  EXPECT_EQ(b.sampler.total(), a.sampler.total());
  EXPECT_EQ(b.sampler.max_priority(), a.sampler.max_priority());
  Rng r1(8), r2(8);
  std::vector<int64_t> i1(30), i2(30);
  std::vector<float> w1(30), w2(30);
  a.sampler.sample(a.store, r1, 30, 0.4, i1.data(), w1.data());
  b.sampler.sample(b.store, r2, 30, 0.4, i2.data(), w2.data());
  EXPECT_EQ(i1, i2);
  EXPECT_EQ(w1, w2);  // the min tree came back too
}

TEST(PrioritizedSampler, RestoreRejectsBadInputAndChangesNothing) {
  Harness s(10, 1, 0.6);
  for (int i = 0; i < 6; ++i) s.step(".");
  s.update(2, 3.0);
  const std::vector<double> good = s.sampler.leaves();
  const double max_before = s.sampler.max_priority();
  auto with = [&](size_t i, double v) {
    std::vector<double> l = good;
    l[i] = v;
    return l;
  };
  std::vector<double> too_short(good.begin(), good.end() - 1);
  std::vector<double> only_capacity(good.begin(), good.begin() + 10);
  std::vector<double> too_long(good);
  too_long.push_back(0.0);
  const std::vector<std::vector<double>> bad_leaves = {too_short, only_capacity, too_long, with(1, -1.0),
                                                       with(1, std::nan("")), with(3, kInf)};
  for (const auto& l : bad_leaves) {
    EXPECT_THROW(s.sampler.restore(s.store, l, 2.0), std::invalid_argument) << l.size();
    EXPECT_EQ(s.sampler.leaves(), good);
    EXPECT_EQ(s.sampler.max_priority(), max_before);
  }
  for (double m : {0.0, -1.0, std::nan(""), kInf}) {
    EXPECT_THROW(s.sampler.restore(s.store, good, m), std::invalid_argument) << m;
    EXPECT_EQ(s.sampler.leaves(), good);
    EXPECT_EQ(s.sampler.max_priority(), max_before);
  }
}

// The tree has 64 leaves for 10 rows; leaves 10..63 stand for no row. A snapshot with mass there
// is accepted, and sample() then draws a leaf that maps back onto an arbitrary id.
TEST(PrioritizedSampler, RestoreRejectsPriorityOnPaddingLeaves) {
  Harness s(10, 1, 1.0);
  for (int i = 0; i < 6; ++i) s.step(".");
  std::vector<double> leaves = s.sampler.leaves();
  ASSERT_EQ(leaves.size(), 64u);
  leaves[45] = 1000.0;
  bool threw = false;
  try {
    s.sampler.restore(s.store, leaves, 1.0);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  EXPECT_TRUE(threw) << "leaf 45 of a 10-row sampler accepted with priority 1000";
  if (!threw) {
    Rng rng(1);
    int64_t id;
    float w;
    s.sampler.sample(s.store, rng, 1, 0.4, &id, &w);
    EXPECT_TRUE(s.store.sampleable(id)) << "sample() returned id " << id << " from padding leaf 45";
  }
}

// The leaf ratio leaf / min_leaf used to overflow float32: weights of 0 (beta > 0) or NaN (beta 0).
TEST(SlotPriorities, WeightsAreFiniteAndInTheUnitIntervalForAnyLeaves) {
  using pymbrl::replay::SlotPriorities;
  const double tiny = std::numeric_limits<double>::min();
  const std::vector<double> leaves = {tiny, 1e-300, 1e-40, 1e-3, 1.0, 1e30, 1e250};
  for (double beta : {0.0, 1e-9, 0.4, 1.0, 7.0, 1e6, 1e300}) {
    for (size_t i = 0; i < leaves.size(); ++i) {
      for (size_t j = i; j < leaves.size(); ++j) {
        const float w = SlotPriorities::weight(leaves[i], leaves[j], beta);
        EXPECT_TRUE(std::isfinite(w) && w > 0.0f && w <= 1.0f) << leaves[i] << " " << leaves[j] << " beta " << beta << ": " << w;
        if (beta == 0.0 || i == j) {
          EXPECT_EQ(w, 1.0f) << leaves[i] << " " << leaves[j] << " beta " << beta;
        }
        const double exact = std::pow(leaves[i] / leaves[j], beta);
        if (exact >= std::numeric_limits<float>::min()) {
          EXPECT_NEAR(w / exact, 1.0, 1e-5) << leaves[i] << " " << leaves[j];
        }
      }
    }
  }
}

TEST(PrioritizedSampler, UpdateRefusesPrioritiesWhoseSumCouldOverflowAndChangesNothing) {
  Harness s(10, 1, 1.0);
  for (int i = 0; i < 6; ++i) s.step(".");
  const std::vector<double> before = s.sampler.leaves();
  for (double p : {1e251, 1e300, std::numeric_limits<double>::max(), -1.0, std::nan(""), kInf}) {
    const int64_t ids[2] = {1, 2};
    const double ps[2] = {1.0, p};
    EXPECT_THROW(s.sampler.update(s.store, ids, ps, 2), std::invalid_argument) << p;
    EXPECT_EQ(s.sampler.leaves(), before);
  }
  s.update(1, 1e-320);  // positive but below the normal range: kept drawable, at the smallest leaf
  EXPECT_EQ(s.leaf_of(1), std::numeric_limits<double>::min());
  s.update(2, 0.0);  // 0 with eps 0: never drawn, on purpose
  EXPECT_EQ(s.leaf_of(2), 0.0);
}

TEST(PrioritizedSampler, RestoreRefusesSubnormalLeavesAndMaximaBelowOne) {
  Harness s(10, 1, 0.6);
  for (int i = 0; i < 6; ++i) s.step(".");
  std::vector<double> leaves = s.sampler.leaves();
  leaves[1] = 1e-320;
  EXPECT_THROW(s.sampler.restore(s.store, leaves, 1.0), std::invalid_argument);
  EXPECT_THROW(s.sampler.restore(s.store, s.sampler.leaves(), 0.5), std::invalid_argument);
  EXPECT_THROW(s.sampler.restore(s.store, s.sampler.leaves(), 1e-300), std::invalid_argument);
}

}  // namespace
