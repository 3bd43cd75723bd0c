#include "pymbrl/mcts/tree.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/mcts/gumbel.h"
#include "pymbrl/mcts/muzero.h"
#include "pymbrl/rng.h"

namespace {

using namespace pymbrl::mcts;
using pymbrl::mcts::portable_exp;

FloatRows rows(const std::vector<float>& v) { return FloatRows{v.data(), nullptr}; }

TEST(MctsSoftmax, ExcludedAndMinusInfinityEntriesGetZero) {
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<double> l = {1.0, -inf, 0.0, 3.0};
  std::vector<double> p(4);
  softmax(4, [&](int a) { return l[a]; }, [](int a) { return a != 3; }, p.data());
  const double z = std::exp(0.0) + std::exp(-1.0);
  EXPECT_DOUBLE_EQ(p[0], 1.0 / z);
  EXPECT_EQ(p[1], 0.0);
  EXPECT_DOUBLE_EQ(p[2], std::exp(-1.0) / z);
  EXPECT_EQ(p[3], 0.0);
}

// Statistics after two expansions, computed by hand: value = value_sum / visits, an edge's Q =
// reward + discount * child value, and every ancestor receives the discounted return.
TEST(MctsTree, BackupMatchesHandComputedStatistics) {
  TreeBatch t(1, 2, 8);
  const std::vector<float> zeros = {0.0f, 0.0f};
  t.set_root(0, rows(zeros), 0, 0.5, nullptr);
  std::vector<double> seen;
  auto record = [&](double q) { seen.push_back(q); };

  const int32_t c = t.add_child(0, 0, 0, 1.0, 0.9, rows(zeros), 0, 2.0);
  t.backup(0, c, 2.0, record);
  EXPECT_EQ(c, 1);
  EXPECT_EQ(t.visits(0, 0), 2);
  EXPECT_DOUBLE_EQ(t.value_sum(0, 0), 0.5 + 2.8);
  EXPECT_EQ(t.child_visits(0, 0)[0], 1);
  EXPECT_DOUBLE_EQ(t.child_q(0, 0)[0], 2.8);

  const int32_t g = t.add_child(0, c, 1, -1.0, 0.5, rows(zeros), 0, 4.0);
  t.backup(0, g, 4.0, record);
  EXPECT_EQ(g, 2);
  EXPECT_EQ(t.visits(0, c), 2);
  EXPECT_DOUBLE_EQ(t.value_sum(0, c), 3.0);
  EXPECT_DOUBLE_EQ(t.child_q(0, c)[1], 1.0);
  EXPECT_DOUBLE_EQ(t.child_q(0, 0)[0], 1.0 + 0.9 * 1.5);
  EXPECT_EQ(t.visits(0, 0), 3);
  EXPECT_DOUBLE_EQ(t.value_sum(0, 0), 3.3 + 1.9);
  EXPECT_EQ(seen, (std::vector<double>{2.8, 1.0, 1.0 + 0.9 * 1.5}));
  EXPECT_EQ(t.parent(0, g), c);
  EXPECT_EQ(t.action_from_parent(0, g), 1);
}

TEST(MctsTree, RootPriorsCoverOnlyValidActions) {
  TreeBatch t(2, 3, 4);
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, 0.0f, 0.0f, 0.0f};
  const uint8_t invalid[3] = {0, 0, 1};
  t.set_root(0, rows(logits), 0, 0.0, invalid);
  t.set_root(1, rows(logits), 3, 0.0, nullptr);
  EXPECT_EQ(t.priors(0, 0)[2], 0.0);
  EXPECT_DOUBLE_EQ(t.priors(0, 0)[0] + t.priors(0, 0)[1], 1.0);
  EXPECT_DOUBLE_EQ(t.priors(1, 0)[1], 1.0 / 3.0);
  EXPECT_EQ(t.root_valid(0)[2], 0);
  EXPECT_EQ(t.root_valid(1)[2], 1);
}

TEST(MctsTree, DepthLimitRevisitKeepsTheMean) {
  TreeBatch t(1, 2, 4);
  const std::vector<float> zeros = {0.0f, 0.0f};
  t.set_root(0, rows(zeros), 0, 0.0, nullptr);
  const int32_t c = t.add_child(0, 0, 1, 0.0, 1.0, rows(zeros), 0, 3.0);
  t.backup(0, c, 3.0, [](double) {});
  const double g = t.revisit(0, c);
  EXPECT_DOUBLE_EQ(g, 3.0);
  EXPECT_EQ(t.visits(0, c), 2);
  EXPECT_DOUBLE_EQ(t.value(0, c), 3.0);
}

// Builds root -> {a0: n1 -> {a1: n3 -> {a0: n5}}, a1: n2 -> {a0: n4}}.
TreeBatch small_tree() {
  TreeBatch t(2, 2, 8);
  const std::vector<float> logits = {0.25f, -0.5f};
  for (int b = 0; b < 2; ++b) {
    t.set_root(b, rows(logits), 0, 0.1 * b, nullptr);
    auto add = [&](int32_t parent, int action, double value) {
      const int32_t x = t.add_child(b, parent, action, 0.1 * action, 0.9, rows(logits), 0, value);
      t.backup(b, x, value, [](double) {});
      return x;
    };
    const int32_t n1 = add(0, 0, 1.0);
    const int32_t n2 = add(0, 1, 2.0);
    const int32_t n3 = add(n1, 1, 3.0);
    add(n2, 0, 40.0);  // an extreme Q (36) that only the a1 branch holds
    add(n3, 0, 5.0);
  }
  return t;
}

TEST(MctsTree, RerootCompactsTheSubtreeWithItsStatistics) {
  TreeBatch t = small_tree();
  const TreeBatch before = small_tree();
  std::vector<std::pair<int32_t, int32_t>> moves;
  const int32_t kept = t.reroot(0, 0, [&](int32_t k, int32_t old) { moves.emplace_back(k, old); });
  EXPECT_EQ(kept, 3);  // n1, n3, n5
  EXPECT_EQ(moves, (std::vector<std::pair<int32_t, int32_t>>{{0, 1}, {1, 3}, {2, 5}}));
  EXPECT_EQ(t.num_nodes(0), 3);
  for (auto [k, old] : moves) {
    EXPECT_EQ(t.visits(0, k), before.visits(0, old));
    EXPECT_DOUBLE_EQ(t.value_sum(0, k), before.value_sum(0, old));
    EXPECT_DOUBLE_EQ(t.raw_value(0, k), before.raw_value(0, old));
    for (int a = 0; a < 2; ++a) {
      EXPECT_EQ(t.child_visits(0, k)[a], before.child_visits(0, old)[a]);
      EXPECT_DOUBLE_EQ(t.child_q(0, k)[a], before.child_q(0, old)[a]);
      EXPECT_DOUBLE_EQ(t.priors(0, k)[a], before.priors(0, old)[a]);
    }
  }
  EXPECT_EQ(t.parent(0, 0), kNoNode);
  EXPECT_EQ(t.children(0, 0)[1], 1);
  EXPECT_EQ(t.children(0, 0)[0], kNoNode);
  EXPECT_EQ(t.parent(0, 1), 0);
  EXPECT_EQ(t.children(0, 1)[0], 2);
  EXPECT_EQ(t.parent(0, 2), 1);
  // The other tree of the batch is untouched.
  EXPECT_EQ(t.num_nodes(1), 6);
  EXPECT_EQ(t.visits(1, 0), before.visits(1, 0));
}

TEST(MctsTree, RerootAtAnUnexpandedChildEmptiesTheTree) {
  TreeBatch t(1, 3, 4);
  const std::vector<float> zeros = {0.0f, 0.0f, 0.0f};
  t.set_root(0, rows(zeros), 0, 0.0, nullptr);
  int calls = 0;
  EXPECT_EQ(t.reroot(0, 2, [&](int32_t, int32_t) { ++calls; }), 0);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(t.num_nodes(0), 0);
}

TEST(MctsTree, RevalidateRootDropsStatisticsThroughNewlyInvalidActions) {
  TreeBatch t = small_tree();
  const double root_sum = t.value_sum(0, 0);
  const int32_t root_visits = t.visits(0, 0);
  const int32_t n2 = t.children(0, 0)[1];
  const int32_t n2_visits = t.visits(0, n2);
  const double through_n2 = n2_visits * t.reward(0, n2) + t.discount(0, n2) * t.value_sum(0, n2);
  const uint8_t invalid[2] = {0, 1};
  t.revalidate_root(0, invalid);
  EXPECT_EQ(t.visits(0, 0), root_visits - n2_visits);
  EXPECT_NEAR(t.value_sum(0, 0), root_sum - through_n2, 1e-12);
  EXPECT_EQ(t.children(0, 0)[1], kNoNode);
  EXPECT_EQ(t.child_visits(0, 0)[1], 0);
  EXPECT_EQ(t.priors(0, 0)[1], 0.0);
  EXPECT_DOUBLE_EQ(t.priors(0, 0)[0], 1.0);
  // Only what remains reachable counts towards the min-max bounds: n2 -> n4 (Q 36) is cut off.
  MinMax expected;
  for (int32_t x : {0, 1, 3}) {
    for (int a = 0; a < 2; ++a) {
      if (t.children(0, x)[a] != kNoNode) expected.update(t.child_q(0, x)[a]);
    }
  }
  const MinMax mm = tree_min_max(t, 0);
  EXPECT_EQ(mm.lo, expected.lo);
  EXPECT_EQ(mm.hi, expected.hi);
  EXPECT_DOUBLE_EQ(tree_min_max(small_tree(), 0).hi, 36.0);
  EXPECT_LT(mm.hi, 36.0);
}

TEST(MctsGumbel, SequentialHalvingSchedules) {
  EXPECT_EQ(considered_visits(4, 8), (std::vector<int32_t>{0, 0, 0, 0, 1, 1, 2, 2}));
  EXPECT_EQ(considered_visits(3, 10), (std::vector<int32_t>{0, 0, 0, 1, 1, 2, 2, 3, 3, 4}));
  EXPECT_EQ(considered_visits(2, 5), (std::vector<int32_t>{0, 0, 1, 1, 2}));
  EXPECT_EQ(considered_visits(1, 4), (std::vector<int32_t>{0, 1, 2, 3}));
  const std::vector<int32_t> s16 = considered_visits(16, 50);
  ASSERT_EQ(s16.size(), 50u);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(s16[i], 0);
  for (int i = 16; i < 24; ++i) EXPECT_EQ(s16[i], 1);
  EXPECT_EQ(s16[24], 2);
  EXPECT_EQ(s16[49], 11);
  const HalvingTable table(16, 50);
  for (int m = 0; m <= 16; ++m) {
    const std::vector<int32_t> row = considered_visits(m, 50);
    for (int k = 0; k < 50; ++k) ASSERT_EQ(table.target(m, k), row[k]);
  }
}

// With no visits the completed Q of every action is the network value: sigma is 0 everywhere.
// After visits, visited actions keep their Q and the rest get the mixed value.
TEST(MctsGumbel, CompletedSigmaUsesTheMixedValue) {
  TreeBatch t(1, 3, 8);
  const std::vector<float> zeros = {0.0f, 0.0f, 0.0f};
  t.set_root(0, rows(zeros), 0, 0.5, nullptr);
  GumbelParams p;
  std::vector<double> sigma(3);
  completed_sigma(t, 0, 0, nullptr, p, sigma.data());
  for (double s : sigma) EXPECT_EQ(s, 0.0);
  const int32_t c = t.add_child(0, 0, 0, 1.0, 1.0, rows(zeros), 0, 1.0);  // Q = 2
  t.backup(0, c, 1.0, [](double) {});
  completed_sigma(t, 0, 0, nullptr, p, sigma.data());
  // mixed = (0.5 + 1 * 2) / 2 = 1.25; completed = {2, 1.25, 1.25} -> rescaled {1, 0, 0}.
  const double scale = (50.0 + 1) * 0.1;
  EXPECT_DOUBLE_EQ(sigma[0], scale);
  EXPECT_DOUBLE_EQ(sigma[1], 0.0);
  EXPECT_DOUBLE_EQ(sigma[2], 0.0);
}

}  // namespace

namespace {

TEST(MctsSoftmax, PortableExpIsWithinTwoUlpOfExp) {
  pymbrl::Rng rng(3);
  for (int i = 0; i < 200000; ++i) {
    const double x = i < 64 ? -i / 16.0 : -708.0 * rng.uniform();
    const double got = portable_exp(x), want = std::exp(x);
    const double ulp = std::nextafter(want, 1e300) - want;
    ASSERT_LE(std::fabs(got - want), 2 * ulp) << x;
  }
  EXPECT_EQ(portable_exp(0.0), 1.0);
  EXPECT_EQ(portable_exp(-708.5), 0.0);
  EXPECT_EQ(portable_exp(-std::numeric_limits<double>::infinity()), 0.0);
}

}  // namespace

namespace {

// batch_size x capacity x record bytes is computed with overflow checks: 2^24 roots x 2^30 nodes
// x 1024-byte records (24 actions) is 2^64 bytes, which wrapped to 0 before.
TEST(MctsTree, ShapesBeyondTheLimitsAreRefusedBeforeAllocating) {
  EXPECT_EQ(TreeBatch::record_bytes(24), 1024u);
  EXPECT_EQ(TreeBatch::record_bytes(1), 128u);
  EXPECT_THROW(TreeBatch(1 << 24, 24, 1 << 30), std::invalid_argument);
  EXPECT_THROW(TreeBatch::check_shape(int64_t{1} << 24, 24, int64_t{1} << 30), std::invalid_argument);
  EXPECT_THROW(TreeBatch::check_shape(kMaxBatchSize + 1, 1, 1), std::invalid_argument);
  EXPECT_THROW(TreeBatch::check_shape(1, kMaxActions + 1, 1), std::invalid_argument);
  EXPECT_THROW(TreeBatch::check_shape(1, 1, kMaxCapacity + 1), std::invalid_argument);
  EXPECT_THROW(TreeBatch::check_shape(0, 1, 1), std::invalid_argument);
  EXPECT_THROW(TreeBatch::check_shape(1, 1, -5), std::invalid_argument);
  EXPECT_THROW(TreeBatch::check_shape(int64_t{1} << 62, int64_t{1} << 62, int64_t{1} << 62), std::invalid_argument);
  // Exactly at the byte limit: allowed (2^10 x 2^22 nodes x 256 bytes = 2^40).
  EXPECT_EQ(TreeBatch::record_bytes(4), 256u);
  EXPECT_NO_THROW(TreeBatch::check_shape(1 << 10, 4, 1 << 22));
  EXPECT_THROW(TreeBatch::check_shape(1 << 10, 4, (1 << 22) + 1), std::invalid_argument);
  try {
    TreeBatch::check_shape(1, 1, int64_t{1} << 31);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).rfind("capacity: expected", 0), 0u) << e.what();
  }
}

// The record size matches the layout the accessors use: the last edge array ends inside it.
TEST(MctsTree, RecordBytesCoverTheEdgeArrays) {
  for (int A : {1, 2, 3, 7, 24, 100}) {
    TreeBatch t(2, A, 3);
    const std::vector<float> zeros(A, 0.0f);
    t.set_root(1, rows(zeros), 0, 0.0, nullptr);
    const auto* logits_end = reinterpret_cast<const unsigned char*>(t.logits(1, 0) + A);
    const auto* record = reinterpret_cast<const unsigned char*>(t.children(1, 0)) - 40;  // after the header
    EXPECT_LE(static_cast<size_t>(logits_end - record), TreeBatch::record_bytes(A)) << A;
  }
}

}  // namespace
