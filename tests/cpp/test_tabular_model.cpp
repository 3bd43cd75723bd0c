#include "pymbrl/dyna/tabular_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <map>
#include <stdexcept>
#include <vector>

#include "pymbrl/rng.h"

namespace {

using pymbrl::Rng;
using pymbrl::dyna::ModelKind;
using pymbrl::dyna::ObserveEffect;
using pymbrl::dyna::Outcome;
using pymbrl::dyna::TabularModel;

bool same_outcome(const Outcome& a, const Outcome& b) {
  return a.next == b.next && a.reward == b.reward && a.terminated == b.terminated && a.count == b.count;
}

void expect_same_model(const TabularModel& a, const TabularModel& b) {
  ASSERT_EQ(a.pairs(), b.pairs());
  for (int64_t p = 0; p < a.n_pairs(); ++p) {
    EXPECT_EQ(a.known(p), b.known(p)) << p;
    const auto& la = a.outcomes(p);
    const auto& lb = b.outcomes(p);
    ASSERT_EQ(la.size(), lb.size()) << p;
    for (size_t i = 0; i < la.size(); ++i) EXPECT_TRUE(same_outcome(la[i], lb[i])) << p;
  }
}

TEST(TabularModel, Shape) {
  TabularModel m(5, 3, ModelKind::kStochastic);
  EXPECT_EQ(m.n_states(), 5);
  EXPECT_EQ(m.n_actions(), 3);
  EXPECT_EQ(m.n_pairs(), 15);
  EXPECT_EQ(m.kind(), ModelKind::kStochastic);
  EXPECT_TRUE(m.pairs().empty());
  for (int64_t p = 0; p < 15; ++p) {
    EXPECT_FALSE(m.known(p));
    EXPECT_FALSE(m.tried(p));
  }
}

TEST(TabularModel, DeterministicKeepsLastOutcome) {
  TabularModel m(4, 2, ModelKind::kDeterministic);
  ObserveEffect e = m.observe(3, 1, 0.5, false);
  EXPECT_TRUE(e.new_next);
  EXPECT_EQ(e.dropped, -1);
  EXPECT_TRUE(m.known(3));
  EXPECT_TRUE(m.tried(3));

  // Same successor, different reward: the reward is overwritten, nothing is new or dropped.
  e = m.observe(3, 1, 2.0, true);
  EXPECT_FALSE(e.new_next);
  EXPECT_EQ(e.dropped, -1);
  ASSERT_EQ(m.outcomes(3).size(), 1u);
  EXPECT_TRUE(same_outcome(m.outcomes(3)[0], Outcome{1, 2.0, true, 1}));

  // New successor: the old one is dropped.
  e = m.observe(3, 2, -1.0, false);
  EXPECT_TRUE(e.new_next);
  EXPECT_EQ(e.dropped, 1);
  ASSERT_EQ(m.outcomes(3).size(), 1u);
  EXPECT_TRUE(same_outcome(m.outcomes(3)[0], Outcome{2, -1.0, false, 1}));

  EXPECT_EQ(m.pairs(), (std::vector<int64_t>{3}));
  Rng rng(0);
  EXPECT_EQ(m.sample_pair(rng), 3);
  EXPECT_EQ(m.sample(3, rng).next, 2);
}

TEST(TabularModel, PairsKeepFirstAppearanceOrder) {
  TabularModel m(4, 2, ModelKind::kDeterministic);
  m.observe(5, 0, 0.0, false);
  m.observe(1, 0, 0.0, false);
  m.observe(5, 1, 0.0, false);
  m.observe(7, 0, 0.0, false);
  m.observe(1, 3, 0.0, false);
  EXPECT_EQ(m.pairs(), (std::vector<int64_t>{5, 1, 7}));
}

TEST(TabularModel, StochasticCountsDistinctOutcomes) {
  TabularModel m(4, 1, ModelKind::kStochastic);
  ObserveEffect e = m.observe(0, 1, 0.0, false);
  EXPECT_TRUE(e.new_next);
  EXPECT_EQ(e.dropped, -1);
  e = m.observe(0, 1, 0.0, false);  // same outcome: count only
  EXPECT_FALSE(e.new_next);
  EXPECT_EQ(e.dropped, -1);
  e = m.observe(0, 1, 1.0, false);  // same next, new reward: a new outcome but not a new successor
  EXPECT_FALSE(e.new_next);
  EXPECT_EQ(e.dropped, -1);
  e = m.observe(0, 1, 0.0, true);   // termination flag distinguishes outcomes too
  EXPECT_FALSE(e.new_next);
  e = m.observe(0, 2, 0.0, false);
  EXPECT_TRUE(e.new_next);
  EXPECT_EQ(e.dropped, -1);  // stochastic models never drop successors

  const auto& list = m.outcomes(0);
  ASSERT_EQ(list.size(), 4u);
  EXPECT_TRUE(same_outcome(list[0], Outcome{1, 0.0, false, 2}));
  EXPECT_TRUE(same_outcome(list[1], Outcome{1, 1.0, false, 1}));
  EXPECT_TRUE(same_outcome(list[2], Outcome{1, 0.0, true, 1}));
  EXPECT_TRUE(same_outcome(list[3], Outcome{2, 0.0, false, 1}));
}

TEST(TabularModel, StochasticSampleFollowsCounts) {
  TabularModel m(3, 1, ModelKind::kStochastic);
  for (int i = 0; i < 3; ++i) m.observe(0, 1, 0.0, false);
  m.observe(0, 2, 1.0, false);
  Rng rng(5);
  constexpr int kDraws = 40000;
  int to1 = 0, to2 = 0;
  for (int i = 0; i < kDraws; ++i) {
    const Outcome& o = m.sample(0, rng);
    if (o.next == 1) {
      EXPECT_EQ(o.reward, 0.0);
      ++to1;
    } else {
      ASSERT_EQ(o.next, 2);
      EXPECT_EQ(o.reward, 1.0);
      ++to2;
    }
  }
  // 3:1 counts: p = 0.75, sd of the estimate about 0.002.
  EXPECT_NEAR(static_cast<double>(to1) / kDraws, 0.75, 0.015);
  EXPECT_EQ(to1 + to2, kDraws);
}

TEST(TabularModel, SamplePairIsUniformOverKnownPairs) {
  TabularModel m(10, 2, ModelKind::kDeterministic);
  const std::vector<int64_t> known{0, 7, 13, 19};
  for (int64_t p : known) m.observe(p, 0, 0.0, false);
  Rng rng(8);
  std::map<int64_t, int> counts;
  constexpr int kDraws = 40000;
  for (int i = 0; i < kDraws; ++i) ++counts[m.sample_pair(rng)];
  ASSERT_EQ(counts.size(), known.size());
  for (int64_t p : known) EXPECT_NEAR(counts[p] / static_cast<double>(kDraws), 0.25, 0.015) << p;
}

TEST(TabularModel, AssumedSelfLoopIsReplacedByFirstObservation) {
  for (ModelKind kind : {ModelKind::kDeterministic, ModelKind::kStochastic}) {
    TabularModel m(5, 3, kind);
    const int64_t pair = 2 * 3 + 1;  // state 2, action 1
    m.assume_self_loop(pair);
    EXPECT_TRUE(m.known(pair));
    EXPECT_FALSE(m.tried(pair));
    ASSERT_EQ(m.outcomes(pair).size(), 1u);
    EXPECT_TRUE(same_outcome(m.outcomes(pair)[0], Outcome{2, 0.0, false, 0}));
    EXPECT_EQ(m.pairs(), (std::vector<int64_t>{pair}));

    // The first real observation replaces it rather than being counted beside it.
    m.observe(pair, 4, 1.0, true);
    EXPECT_TRUE(m.tried(pair));
    ASSERT_EQ(m.outcomes(pair).size(), 1u);
    EXPECT_TRUE(same_outcome(m.outcomes(pair)[0], Outcome{4, 1.0, true, 1}));
    EXPECT_EQ(m.pairs(), (std::vector<int64_t>{pair}));
  }
}

TEST(TabularModel, AssumeSelfLoopDoesNotOverwriteKnownPair) {
  TabularModel m(5, 3, ModelKind::kStochastic);
  m.observe(4, 0, 2.0, false);
  m.observe(4, 0, 2.0, false);
  m.assume_self_loop(4);
  ASSERT_EQ(m.outcomes(4).size(), 1u);
  EXPECT_TRUE(same_outcome(m.outcomes(4)[0], Outcome{0, 2.0, false, 2}));
  m.assume_self_loop(5);
  m.assume_self_loop(5);
  EXPECT_EQ(m.pairs(), (std::vector<int64_t>{4, 5}));
}

TEST(TabularModel, ClearForgetsAllPairs) {
  TabularModel m(3, 2, ModelKind::kStochastic);
  m.observe(1, 2, 0.0, false);
  m.assume_self_loop(4);
  m.clear();
  EXPECT_TRUE(m.pairs().empty());
  EXPECT_FALSE(m.known(1));
  EXPECT_FALSE(m.known(4));
  EXPECT_TRUE(m.outcomes(1).empty());
  m.observe(4, 0, 0.0, false);
  EXPECT_EQ(m.pairs(), (std::vector<int64_t>{4}));
  EXPECT_TRUE(m.tried(4));
}

TEST(TabularModel, RestoreRoundTrip) {
  TabularModel src(4, 2, ModelKind::kStochastic);
  src.observe(6, 1, 0.0, false);
  src.observe(6, 2, 1.0, true);
  src.observe(6, 1, 0.0, false);
  src.observe(0, 3, -0.5, false);
  src.assume_self_loop(3);
  std::vector<std::vector<Outcome>> lists;
  for (int64_t p : src.pairs()) lists.push_back(src.outcomes(p));

  TabularModel dst(4, 2, ModelKind::kStochastic);
  dst.observe(2, 2, 0.0, false);  // replaced by the snapshot
  dst.restore(src.pairs(), lists, 100, true);
  expect_same_model(dst, src);

  // Sampling from both gives the same stream.
  Rng ra(3), rb(3);
  for (int i = 0; i < 200; ++i) {
    const int64_t pa = src.sample_pair(ra);
    const int64_t pb = dst.sample_pair(rb);
    ASSERT_EQ(pa, pb);
    ASSERT_TRUE(same_outcome(src.sample(pa, ra), dst.sample(pb, rb)));
  }
  // And the restored model keeps learning correctly (slots rebuilt).
  src.observe(6, 2, 1.0, true);
  dst.observe(6, 2, 1.0, true);
  src.observe(7, 0, 0.0, false);
  dst.observe(7, 0, 0.0, false);
  expect_same_model(dst, src);
}

struct BadRestore {
  const char* name;
  ModelKind kind;
  std::vector<int64_t> pairs;
  std::vector<std::vector<Outcome>> lists;
  int64_t max_total = 100;
  bool allow_assumed = true;
};

void PrintTo(const BadRestore& c, std::ostream* os) { *os << c.name; }

class TabularModelRestoreRejects : public ::testing::TestWithParam<BadRestore> {};

TEST_P(TabularModelRestoreRejects, LeavesModelUnchanged) {
  const BadRestore& c = GetParam();
  TabularModel m(3, 2, c.kind);  // 6 pairs, states 0..2
  m.observe(1, 2, 1.0, false);
  m.observe(4, 0, 0.0, true);
  TabularModel before = m;

  EXPECT_THROW(m.restore(c.pairs, c.lists, c.max_total, c.allow_assumed), std::invalid_argument) << c.name;
  expect_same_model(m, before);
}

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const Outcome kOk{0, 0.0, false, 1};

INSTANTIATE_TEST_SUITE_P(
    Cases, TabularModelRestoreRejects,
    ::testing::Values(
        BadRestore{"length mismatch", ModelKind::kStochastic, {0, 1}, {{kOk}}},
        BadRestore{"pair out of range", ModelKind::kStochastic, {0, 6}, {{kOk}, {kOk}}},
        BadRestore{"negative pair", ModelKind::kStochastic, {-1}, {{kOk}}},
        BadRestore{"duplicate pair", ModelKind::kStochastic, {2, 2}, {{kOk}, {kOk}}},
        BadRestore{"empty list", ModelKind::kStochastic, {0, 1}, {{kOk}, {}}},
        BadRestore{"two outcomes, deterministic", ModelKind::kDeterministic, {0}, {{kOk, Outcome{1, 0.0, false, 1}}}},
        BadRestore{"next out of range", ModelKind::kStochastic, {0}, {{Outcome{3, 0.0, false, 1}}}},
        BadRestore{"negative next", ModelKind::kDeterministic, {0}, {{Outcome{-1, 0.0, false, 1}}}},
        BadRestore{"NaN reward", ModelKind::kStochastic, {0}, {{Outcome{1, kNaN, false, 1}}}},
        BadRestore{"infinite reward", ModelKind::kDeterministic, {0},
                   {{Outcome{1, std::numeric_limits<double>::infinity(), false, 1}}}},
        BadRestore{"negative count", ModelKind::kStochastic, {0}, {{Outcome{1, 0.0, false, -1}}}},
        BadRestore{"assumed outcome beside others", ModelKind::kStochastic, {0},
                   {{Outcome{0, 0.0, false, 0}, Outcome{1, 0.0, false, 1}}}},
        // A late error must not leave the earlier, valid pairs half applied.
        BadRestore{"valid then invalid", ModelKind::kStochastic, {5, 0}, {{kOk}, {Outcome{9, 0.0, false, 1}}}},
        BadRestore{"reward beyond 1e100", ModelKind::kStochastic, {0}, {{Outcome{1, 1e101, false, 1}}}},
        BadRestore{"repeated outcome", ModelKind::kStochastic, {0}, {{kOk, Outcome{0, -0.0, false, 3}}}},
        BadRestore{"deterministic count 2", ModelKind::kDeterministic, {0}, {{Outcome{1, 0.0, false, 2}}}},
        BadRestore{"counts beyond the clock", ModelKind::kStochastic, {0, 1}, {{kOk}, {kOk}}, 1},
        BadRestore{"huge counts that would overflow", ModelKind::kStochastic, {0},
                   {{Outcome{1, 0.0, false, INT64_MAX}, Outcome{2, 0.0, false, INT64_MAX}}}, INT64_MAX},
        BadRestore{"assumed outcome where none may be", ModelKind::kDeterministic, {0}, {{Outcome{0, 0.0, false, 0}}},
                   100, false},
        BadRestore{"assumed outcome that is not a self-loop", ModelKind::kDeterministic, {2},
                   {{Outcome{0, 0.0, false, 0}}}},
        BadRestore{"assumed outcome with a reward", ModelKind::kDeterministic, {2}, {{Outcome{1, 0.5, false, 0}}}}),
    [](const ::testing::TestParamInfo<BadRestore>& info) { return std::to_string(info.index); });

TEST(TabularModel, RestoreAcceptsLoneAssumedOutcome) {
  TabularModel m(3, 2, ModelKind::kStochastic);
  m.restore({4}, {{Outcome{2, 0.0, false, 0}}}, 0, true);
  EXPECT_TRUE(m.known(4));
  EXPECT_FALSE(m.tried(4));
  m.observe(4, 1, 1.0, false);
  ASSERT_EQ(m.outcomes(4).size(), 1u);
  EXPECT_EQ(m.outcomes(4)[0].count, 1);
}

}  // namespace
