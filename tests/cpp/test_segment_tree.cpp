#include "pymbrl/replay/segment_tree.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "pymbrl/rng.h"

namespace {

using pymbrl::Rng;
using pymbrl::replay::MinTree;
using pymbrl::replay::SumTree;

constexpr double kInf = std::numeric_limits<double>::infinity();

// Sizes that are and are not powers of 8, across one to four levels below the root.
const int64_t kSizes[] = {1, 5, 8, 9, 63, 64, 65, 100, 511, 512, 513, 1000, 4097};

int64_t padded(int64_t n) {
  int64_t w = 8;
  while (w < n) w *= 8;
  return w;
}

// Exposes the inner nodes, to check that every node is the combination of its eight children.
template <typename Tree>
class Probe : public Tree {
 public:
  using Tree::Tree;
  template <typename Combine>
  ::testing::AssertionResult inner_nodes_consistent(Combine combine) const {
    const auto& lo = this->level_offset_;
    for (size_t level = 1; level < lo.size(); ++level) {
      const int64_t parents = level == 1 ? 1 : lo[level] - lo[level - 1];
      for (int64_t j = 0; j < parents; ++j) {
        const double* c = this->nodes_.data() + lo[level] + j * 8;
        double acc = c[0];
        for (int k = 1; k < 8; ++k) acc = combine(acc, c[k]);
        const double node = this->nodes_[static_cast<size_t>(lo[level - 1] + j)];
        if (!(node == acc)) {
          return ::testing::AssertionFailure() << "level " << level - 1 << " node " << j << " is " << node
                                               << ", its children combine to " << acc;
        }
      }
    }
    return ::testing::AssertionSuccess();
  }
};
using SumProbe = Probe<SumTree>;
using MinProbe = Probe<MinTree>;

double add(double a, double b) { return a + b; }
double min2(double a, double b) { return std::min(a, b); }

// Sum with a long double accumulator: the reference the tree's root is held to.
double ref_sum(const std::vector<double>& v) {
  long double s = 0.0L;
  for (double x : v) s += x;
  return static_cast<double>(s);
}
double ref_min(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

// Priority-like values: zeros, and magnitudes spread over many orders.
double random_value(Rng& rng) {
  const uint64_t kind = rng.uniform_int(8);
  if (kind == 0) return 0.0;
  if (kind == 1) return static_cast<double>(rng.uniform_int(5));
  return std::exp(rng.uniform() * 40.0 - 20.0);
}

void expect_matches(const SumProbe& sum, const MinProbe& mn, const std::vector<double>& ref_s,
                    const std::vector<double>& ref_m, int64_t n, int op) {
  for (int64_t i = 0; i < sum.n_leaves(); ++i) {
    ASSERT_EQ(sum.leaf(i), ref_s[static_cast<size_t>(i)]) << "n=" << n << " op " << op << " leaf " << i;
    ASSERT_EQ(mn.leaf(i), ref_m[static_cast<size_t>(i)]) << "n=" << n << " op " << op << " leaf " << i;
  }
  const double s = ref_sum(ref_s);
  ASSERT_LE(std::abs(sum.root() - s), 1e-9 * s) << "n=" << n << " op " << op;
  ASSERT_EQ(mn.root(), ref_min(ref_m)) << "n=" << n << " op " << op;
  ASSERT_TRUE(sum.inner_nodes_consistent(add)) << "n=" << n << " op " << op;
  ASSERT_TRUE(mn.inner_nodes_consistent(min2)) << "n=" << n << " op " << op;
}

TEST(SegmentTree, LeafCountRoundsUpToAPowerOfEight) {
  for (int64_t n : kSizes) {
    SumTree s(n);
    MinTree m(n);
    EXPECT_EQ(s.n_leaves(), padded(n)) << n;
    EXPECT_EQ(m.n_leaves(), padded(n)) << n;
  }
}

TEST(SegmentTree, StartsAtTheIdentity) {
  for (int64_t n : kSizes) {
    SumTree s(n);
    MinTree m(n);
    EXPECT_EQ(s.root(), 0.0);
    EXPECT_EQ(m.root(), kInf);
    for (int64_t i = 0; i < s.n_leaves(); ++i) {
      ASSERT_EQ(s.leaf(i), 0.0);
      ASSERT_EQ(s.leaves()[i], 0.0);
      ASSERT_EQ(m.leaf(i), kInf);
    }
  }
}

TEST(SegmentTree, SetUpdatesRootAndLeaf) {
  SumTree s(10);
  MinTree m(10);
  s.set(3, 2.5);
  m.set(3, 2.5);
  s.set(9, 1.0);
  m.set(9, 1.0);
  EXPECT_EQ(s.root(), 3.5);
  EXPECT_EQ(m.root(), 1.0);
  s.set(9, 0.0);
  m.set(9, kInf);
  EXPECT_EQ(s.root(), 2.5);
  EXPECT_EQ(m.root(), 2.5);
  EXPECT_EQ(s.leaf(3), 2.5);
  EXPECT_EQ(s.leaves()[3], 2.5);
}

TEST(SegmentTree, RandomOperationsMatchBruteForce) {
  Rng rng(11);
  std::vector<int64_t> scratch;
  for (int64_t n : kSizes) {
    SumProbe sum(n);
    MinProbe mn(n);
    const int64_t w = sum.n_leaves();
    std::vector<double> ref_s(static_cast<size_t>(w), 0.0), ref_m(static_cast<size_t>(w), kInf);
    const int ops = n > 1000 ? 60 : 200;
    for (int op = 0; op < ops; ++op) {
      const uint64_t kind = rng.uniform_int(20);
      if (kind < 8) {  // set
        const int64_t i = static_cast<int64_t>(rng.uniform_int(static_cast<uint64_t>(n)));
        const double v = random_value(rng);
        sum.set(i, v);
        mn.set(i, v);
        ref_s[static_cast<size_t>(i)] = v;
        ref_m[static_cast<size_t>(i)] = v;
      } else if (kind < 17) {  // set_many, repeated indices included: the later value wins
        const int64_t k = 1 + static_cast<int64_t>(rng.uniform_int(static_cast<uint64_t>(std::min<int64_t>(2 * n, 300))));
        std::vector<int64_t> idx;
        std::vector<double> vals;
        for (int64_t j = 0; j < k; ++j) {
          idx.push_back(static_cast<int64_t>(rng.uniform_int(static_cast<uint64_t>(n))));
          vals.push_back(random_value(rng));
        }
        sum.set_many(idx.data(), vals.data(), k, scratch);
        mn.set_many(idx.data(), vals.data(), k, scratch);
        for (int64_t j = 0; j < k; ++j) {
          ref_s[static_cast<size_t>(idx[static_cast<size_t>(j)])] = vals[static_cast<size_t>(j)];
          ref_m[static_cast<size_t>(idx[static_cast<size_t>(j)])] = vals[static_cast<size_t>(j)];
        }
      } else if (kind < 19) {  // assign: a prefix of the leaves; the rest become the identity
        const size_t len = static_cast<size_t>(rng.uniform_int(static_cast<uint64_t>(w) + 1));
        std::vector<double> vals;
        for (size_t j = 0; j < len; ++j) vals.push_back(random_value(rng));
        sum.assign(vals);
        mn.assign(vals);
        for (size_t j = 0; j < static_cast<size_t>(w); ++j) {
          ref_s[j] = j < len ? vals[j] : 0.0;
          ref_m[j] = j < len ? vals[j] : kInf;
        }
      } else {  // fill: every leaf, padding included
        const double v = random_value(rng);
        sum.fill(v);
        mn.fill(v);
        std::fill(ref_s.begin(), ref_s.end(), v);
        std::fill(ref_m.begin(), ref_m.end(), v);
      }
      expect_matches(sum, mn, ref_s, ref_m, n, op);
    }
  }
}

TEST(SegmentTree, SetManyWithNoIndicesChangesNothing) {
  SumTree s(20);
  s.set(4, 1.0);
  std::vector<int64_t> scratch;
  s.set_many(nullptr, nullptr, 0, scratch);
  EXPECT_EQ(s.root(), 1.0);
}

// Brute force: the first leaf at which the running sum exceeds u.
int64_t ref_find(const std::vector<double>& leaves, double u) {
  long double run = 0.0L;
  for (size_t i = 0; i < leaves.size(); ++i) {
    run += leaves[i];
    if (run > u) return static_cast<int64_t>(i);
  }
  return -1;
}

// Running sums of the leaves (long double): prefix[i] is the sum of leaves before i.
std::vector<long double> prefix_sums(const std::vector<double>& leaves) {
  std::vector<long double> p(leaves.size() + 1, 0.0L);
  for (size_t i = 0; i < leaves.size(); ++i) p[i + 1] = p[i] + leaves[i];
  return p;
}

// For real-valued leaves rounding may move a boundary by a few ulps: the leaf must be positive
// and u must fall within its interval up to a tolerance relative to the total.
::testing::AssertionResult plausible_leaf(const std::vector<double>& leaves, const std::vector<long double>& prefix,
                                          double u, int64_t got, double total) {
  if (got < 0 || got >= static_cast<int64_t>(leaves.size())) return ::testing::AssertionFailure() << "leaf " << got << " out of range";
  if (!(leaves[static_cast<size_t>(got)] > 0.0)) {
    return ::testing::AssertionFailure() << "u=" << u << " gave zero leaf " << got;
  }
  const long double before = prefix[static_cast<size_t>(got)];
  const long double through = prefix[static_cast<size_t>(got) + 1];
  const double tol = 1e-9 * total;
  if (!(before <= u + tol && through > u - tol)) {
    return ::testing::AssertionFailure() << "u=" << u << " leaf " << got << " covers [" << static_cast<double>(before)
                                         << ", " << static_cast<double>(through) << ")";
  }
  return ::testing::AssertionSuccess();
}

TEST(SumTree, FindPrefixIsExactOnIntegerLeaves) {
  Rng rng(3);
  for (int64_t n : kSizes) {
    SumTree s(n);
    std::vector<double> leaves(static_cast<size_t>(s.n_leaves()), 0.0);
    for (int64_t i = 0; i < n; ++i) leaves[static_cast<size_t>(i)] = static_cast<double>(rng.uniform_int(4));
    leaves[static_cast<size_t>(rng.uniform_int(static_cast<uint64_t>(n)))] = 2.0;  // at least one positive
    s.assign(leaves);
    const double total = ref_sum(leaves);
    ASSERT_EQ(s.root(), total);
    // Every boundary (u equal to a partial sum must go past it) and every midpoint.
    for (double u = 0.0; u < total; u += 0.5) {
      ASSERT_EQ(s.find_prefix(u), ref_find(leaves, u)) << "n=" << n << " u=" << u;
    }
    // The top end: the last positive leaf.
    int64_t last = s.n_leaves() - 1;
    while (leaves[static_cast<size_t>(last)] == 0.0) --last;
    EXPECT_EQ(s.find_prefix(std::nextafter(total, 0.0)), last) << n;
  }
}

TEST(SumTree, FindPrefixMatchesBruteForceOnRandomLeaves) {
  Rng rng(5);
  for (int64_t n : kSizes) {
    SumTree s(n);
    std::vector<double> leaves(static_cast<size_t>(s.n_leaves()), 0.0);
    for (int rep = 0; rep < 20; ++rep) {
      for (int64_t i = 0; i < n; ++i) leaves[static_cast<size_t>(i)] = random_value(rng);
      leaves[static_cast<size_t>(rng.uniform_int(static_cast<uint64_t>(n)))] = 1.0;
      s.assign(leaves);
      const double total = s.root();
      const auto prefix = prefix_sums(leaves);
      for (int q = 0; q < 50; ++q) {
        const double u = rng.uniform() * total;
        ASSERT_TRUE(plausible_leaf(leaves, prefix, u, s.find_prefix(u), total)) << "n=" << n;
      }
      ASSERT_TRUE(plausible_leaf(leaves, prefix, 0.0, s.find_prefix(0.0), total)) << "n=" << n;
      const double top = std::nextafter(total, 0.0);
      ASSERT_TRUE(plausible_leaf(leaves, prefix, top, s.find_prefix(top), total)) << "n=" << n;
    }
  }
}

// Leaves whose sums round: u just below each partial sum, at it and just above, and at the very
// top, must never land on a zero leaf, with zeros between and after the positive leaves.
TEST(SumTree, FindPrefixNeverReturnsAZeroLeafUnderRounding) {
  Rng rng(9);
  for (int64_t n : kSizes) {
    SumTree s(n);
    for (int rep = 0; rep < 10; ++rep) {
      std::vector<double> leaves(static_cast<size_t>(s.n_leaves()), 0.0);
      for (int64_t i = 0; i < n; ++i) {
        const uint64_t k = rng.uniform_int(4);
        leaves[static_cast<size_t>(i)] = k == 0 ? 0.1 : (k == 1 ? 1e-17 * (1.0 + rng.uniform()) : (k == 2 ? 0.0 : 1.0 / 3.0));
      }
      // Trailing zeros: the top end must fall back to the last positive leaf.
      for (int64_t i = n - std::min<int64_t>(n - 1, 3); i < n; ++i) leaves[static_cast<size_t>(i)] = 0.0;
      if (leaves[0] == 0.0) leaves[0] = 0.1;
      s.assign(leaves);
      const double total = s.root();
      const auto prefix = prefix_sums(leaves);
      long double run = 0.0L;
      std::vector<double> us = {0.0, std::nextafter(total, 0.0), std::nextafter(std::nextafter(total, 0.0), 0.0)};
      for (double x : leaves) {
        run += x;
        const double p = static_cast<double>(run);
        for (double u : {std::nextafter(p, 0.0), p, std::nextafter(p, kInf)}) {
          if (u >= 0.0 && u < total) us.push_back(u);
        }
      }
      std::vector<double> batch(us);
      std::vector<int64_t> got(us.size());
      std::vector<int64_t> scratch;
      s.find_prefix_many(batch.data(), static_cast<int64_t>(us.size()), got.data(), scratch);
      for (size_t q = 0; q < us.size(); ++q) {
        const int64_t one = s.find_prefix(us[q]);
        ASSERT_EQ(got[q], one) << "find_prefix_many and find_prefix disagree at u=" << us[q];
        ASSERT_TRUE(plausible_leaf(leaves, prefix, us[q], one, total)) << "n=" << n;
      }
    }
  }
}

TEST(SumTree, FindPrefixManyMatchesFindPrefix) {
  Rng rng(13);
  SumTree s(300);
  std::vector<double> leaves(static_cast<size_t>(s.n_leaves()), 0.0);
  for (int64_t i = 0; i < 300; ++i) leaves[static_cast<size_t>(i)] = random_value(rng);
  leaves[17] = 2.0;
  s.assign(leaves);
  std::vector<double> us, batch;
  for (int q = 0; q < 1000; ++q) us.push_back(rng.uniform() * s.root());
  batch = us;
  std::vector<int64_t> got(us.size());
  std::vector<int64_t> scratch;
  s.find_prefix_many(batch.data(), static_cast<int64_t>(us.size()), got.data(), scratch);
  for (size_t q = 0; q < us.size(); ++q) ASSERT_EQ(got[q], s.find_prefix(us[q])) << q;
}

TEST(SumTree, SingleLeafAndSinglePositiveLeaf) {
  SumTree one(1);
  one.set(0, 0.25);
  EXPECT_EQ(one.find_prefix(0.0), 0);
  EXPECT_EQ(one.find_prefix(std::nextafter(0.25, 0.0)), 0);
  SumTree s(700);
  s.set(699, 3.0);
  EXPECT_EQ(s.find_prefix(0.0), 699);
  EXPECT_EQ(s.find_prefix(2.999), 699);
  s.set(0, 1.0);
  EXPECT_EQ(s.find_prefix(0.999), 0);
  EXPECT_EQ(s.find_prefix(1.0), 699);
}

}  // namespace
