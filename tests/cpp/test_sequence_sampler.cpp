#include "pymbrl/replay/sequence_sampler.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/rng.h"
#include "replay_support.h"

namespace {

using namespace replay_test;
using pymbrl::replay::sample_windows;

struct Seq {
  RowLayout layout;
  TransitionStore store;
  Reference ref;
  Seq(int64_t capacity, int64_t envs)
      : layout(test_layout()), store(test_layout(), store_config(capacity, envs, 1, 0.9, true)) {
    ref.capacity = capacity;
    ref.envs = envs;
  }
  // Steps given per stream as strings of '.', 'T' (terminated), 'X' (truncated), all the same length.
  void steps(const std::vector<std::string>& per_env) {
    std::vector<Tr> items;
    for (size_t t = 0; t < per_env[0].size(); ++t) {
      for (size_t e = 0; e < per_env.size(); ++e) {
        const char c = per_env[e][t];
        items.push_back(tr_for(ref.end() + static_cast<int64_t>(items.size()), 0.0, c == 'T', c == 'X'));
      }
    }
    ref.log.insert(ref.log.end(), items.begin(), items.end());
    append_items(store, layout, items, static_cast<int64_t>(per_env[0].size()));
  }
  void random(Rng& rng, int64_t n, double p_term, double p_trunc) {
    append_random(store, layout, ref, rng, n, p_term, p_trunc);
  }

  // Every valid window start: all steps stored with a known next observation, the last one short
  // of the newest step; within_episode also needs no episode end before the last step.
  std::vector<int64_t> valid_starts(int64_t length, bool within_episode) const {
    std::vector<int64_t> out;
    const int64_t envs = ref.envs;
    const int64_t oldest_step = ref.oldest() / envs;
    for (int64_t t0 = oldest_step; t0 + length - 1 <= ref.written() - 2; ++t0) {
      for (int64_t e = 0; e < envs; ++e) {
        bool ok = true;
        for (int64_t k = 0; within_episode && k + 1 < length; ++k) ok = ok && !ref.at((t0 + k) * envs + e).done();
        if (ok) out.push_back(t0 * envs + e);
      }
    }
    return out;
  }
};

std::map<int64_t, double> draw(const Seq& s, Rng& rng, int64_t batch, int64_t batches, int64_t length, bool within) {
  std::map<int64_t, double> counts;
  std::vector<int64_t> starts(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batches; ++b) {
    sample_windows(s.store, rng, batch, length, within, starts.data());
    for (int64_t x : starts) counts[x] += 1.0;
  }
  return counts;
}

// Counts land only on valid starts, and are uniform over them.
void expect_uniform_over_valid(const std::map<int64_t, double>& counts, const std::vector<int64_t>& valid, double draws,
                               const std::string& what) {
  const std::set<int64_t> ok(valid.begin(), valid.end());
  for (const auto& [start, c] : counts) {
    ASSERT_TRUE(ok.count(start)) << what << ": drew invalid window start " << start << " (" << c << " times)";
  }
  std::vector<double> obs, expv;
  for (int64_t v : valid) {
    obs.push_back(counts.count(v) ? counts.at(v) : 0.0);
    expv.push_back(draws / static_cast<double>(valid.size()));
  }
  if (valid.size() > 1) {
    const double chi2 = chi_square(obs, expv);
    EXPECT_LT(chi2, chi_square_bound(static_cast<double>(valid.size() - 1))) << what << ": chi2 " << chi2;
  }
}

TEST(SampleWindows, RefusesBadLengths) {
  Seq s(10, 1);
  Rng rng(1);
  int64_t start = 0;
  EXPECT_THROW(sample_windows(s.store, rng, 1, 1, false, &start), std::invalid_argument);  // empty
  s.steps({"."});
  EXPECT_THROW(sample_windows(s.store, rng, 1, 1, false, &start), std::invalid_argument);  // only the newest
  s.steps({"...."});
  EXPECT_EQ(s.store.stored_steps(), 5);
  EXPECT_THROW(sample_windows(s.store, rng, 1, 0, false, &start), std::invalid_argument);
  EXPECT_THROW(sample_windows(s.store, rng, 1, -2, false, &start), std::invalid_argument);
  EXPECT_THROW(sample_windows(s.store, rng, 1, 5, false, &start), std::invalid_argument);
  // The longest window: everything but the newest step, starting at the oldest.
  sample_windows(s.store, rng, 1, 4, false, &start);
  EXPECT_EQ(start, 0);
  s.steps({"........"});  // wrapped: steps 3..12 stored
  EXPECT_THROW(sample_windows(s.store, rng, 1, 10, false, &start), std::invalid_argument);
  sample_windows(s.store, rng, 1, 9, false, &start);
  EXPECT_EQ(start, 3);
}

TEST(SampleWindows, EveryStepOfEveryWindowIsSampleable) {
  Rng rng(2);
  for (int64_t envs : {1, 2, 3}) {
    Seq s(12 * envs, envs);
    std::vector<int64_t> starts(64);
    for (int call = 0; call < 30; ++call) {
      s.random(rng, 1 + static_cast<int64_t>(rng.uniform_int(4)), 0.1, 0.1);
      for (int64_t length : {1, 3, 6}) {
        if (s.store.stored_steps() - 1 < length) continue;
        for (bool within : {false, true}) {
          if (within && s.valid_starts(length, true).empty()) continue;
          sample_windows(s.store, rng, 64, length, within, starts.data());
          for (int64_t st : starts) {
            ASSERT_GE(st, s.ref.oldest()) << "envs " << envs;
            for (int64_t k = 0; k < length; ++k) {
              ASSERT_TRUE(s.ref.sampleable(st + k * envs))
                  << "envs " << envs << " start " << st << " step " << k << " of " << length;
            }
          }
        }
      }
    }
  }
}

TEST(SampleWindows, UniformOverAllWindows) {
  for (int64_t envs : {1, 2}) {
    Seq s(15 * envs, envs);
    Rng data(3);
    s.random(data, 40, 0.1, 0.1);  // wrapped; episode ends do not matter here
    const int64_t length = 4;
    const std::vector<int64_t> valid = s.valid_starts(length, false);
    ASSERT_EQ(static_cast<int64_t>(valid.size()), (15 - length) * envs);
    Rng rng(4);
    const auto counts = draw(s, rng, 100, 400, length, false);
    expect_uniform_over_valid(counts, valid, 40000.0, "envs " + std::to_string(envs));
  }
}

TEST(SampleWindows, WithinEpisodeNeverCrossesAnEpisodeEnd) {
  for (int64_t envs : {1, 2, 3}) {
    Seq s(20 * envs, envs);
    Rng data(5 + static_cast<uint64_t>(envs));
    s.random(data, 47, 0.12, 0.08);
    for (int64_t length : {2, 3, 5}) {
      const std::vector<int64_t> valid = s.valid_starts(length, true);
      ASSERT_FALSE(valid.empty()) << envs << " " << length;
      Rng rng(6);
      const auto counts = draw(s, rng, 64, 500, length, true);
      expect_uniform_over_valid(counts, valid, 32000.0, "envs " + std::to_string(envs) + " length " + std::to_string(length));
    }
  }
}

TEST(SampleWindows, WithinEpisodeByHand) {
  Seq s(32, 1);
  s.steps({"..T..X...T.."});  // steps 0..11; episodes [0..2], [3..5], [6..9], [10..11]
  // length 3 within an episode (the last step may be the episode's end): starts 0, 3, 6, 7
  // (7..9); 10 would need step 12, and 11 is the newest.
  Rng rng(7);
  const auto counts = draw(s, rng, 50, 40, 3, true);
  std::set<int64_t> seen;
  for (const auto& [st, c] : counts) seen.insert(st);
  EXPECT_EQ(seen, (std::set<int64_t>{0, 3, 6, 7}));
  EXPECT_EQ(s.valid_starts(3, true), (std::vector<int64_t>{0, 3, 6, 7}));
}

TEST(SampleWindows, FallsBackWhenValidWindowsAreRare) {
  // 20000 one-step episodes around a single five-step one (steps 5000..5004): windows of 3 steps
  // within an episode start only at 5000..5003, 4 of about 20000, so rejection sampling alone
  // would need far more than its 64 * n + 1024 tries.
  const int64_t kSteps = 20000;
  Seq s(kSteps, 1);
  std::string flags(static_cast<size_t>(kSteps), 'T');
  for (int64_t t = 5000; t < 5005; ++t) flags[static_cast<size_t>(t)] = '.';
  s.steps({flags});
  const std::vector<int64_t> valid = s.valid_starts(3, true);
  ASSERT_EQ(valid, (std::vector<int64_t>{5000, 5001, 5002, 5003}));
  Rng rng(8);
  const auto counts = draw(s, rng, 400, 1, 3, true);
  expect_uniform_over_valid(counts, valid, 400.0, "rare windows");
  EXPECT_EQ(counts.size(), 4u);
  // A single valid window.
  const auto one = draw(s, rng, 10, 1, 6, true);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one.begin()->first, 5000);
  EXPECT_EQ(one.begin()->second, 10.0);
}

TEST(SampleWindows, NoWindowWithinAnEpisodeIsAnError) {
  Seq s(50, 1);
  s.steps({"TXTTXTTTXT"});
  Rng rng(9);
  std::vector<int64_t> starts(5);
  EXPECT_THROW(sample_windows(s.store, rng, 5, 2, true, starts.data()), std::invalid_argument);
  // Without the episode constraint, or one step long, they exist.
  EXPECT_NO_THROW(sample_windows(s.store, rng, 5, 2, false, starts.data()));
  EXPECT_NO_THROW(sample_windows(s.store, rng, 5, 1, true, starts.data()));
  for (int64_t st : starts) EXPECT_LE(st, 8);  // steps 0..8
}

TEST(SampleWindows, SameGeneratorStateSameWindows) {
  Seq s(40, 2);
  Rng data(10);
  s.random(data, 30, 0.1, 0.1);
  Rng a(11), b(11);
  std::vector<int64_t> sa(100), sb(100);
  sample_windows(s.store, a, 100, 4, true, sa.data());
  sample_windows(s.store, b, 100, 4, true, sb.data());
  EXPECT_EQ(sa, sb);
  EXPECT_EQ(a.state(), b.state());
}

}  // namespace
