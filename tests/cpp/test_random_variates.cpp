#include "pymbrl/random_variates.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace {

using namespace pymbrl;

struct Moments {
  double mean = 0, var = 0;
};

template <typename Draw>
Moments moments(int n, Draw draw) {
  double s = 0, s2 = 0;
  for (int i = 0; i < n; ++i) {
    const double x = draw();
    s += x;
    s2 += x * x;
  }
  Moments m;
  m.mean = s / n;
  m.var = s2 / n - m.mean * m.mean;
  return m;
}

TEST(RandomVariates, OpenUniformNeverHitsTheEnds) {
  Rng rng(1);
  for (int i = 0; i < 100000; ++i) {
    const double u = open_uniform(rng);
    ASSERT_GT(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
}

TEST(RandomVariates, NormalHasMeanZeroVarianceOne) {
  Rng rng(2);
  const Moments m = moments(200000, [&] { return standard_normal(rng); });
  EXPECT_NEAR(m.mean, 0.0, 0.01);
  EXPECT_NEAR(m.var, 1.0, 0.02);
}

// Gamma(k, 1) has mean k and variance k, for shapes below 1 (the boosted branch) and above.
TEST(RandomVariates, GammaMomentsMatchTheShape) {
  for (double shape : {0.03, 0.3, 1.0, 2.5, 10.0}) {
    Rng rng(3);
    const Moments m = moments(200000, [&] { return standard_gamma(rng, shape); });
    EXPECT_NEAR(m.mean, shape, 0.02 * std::max(1.0, shape)) << shape;
    EXPECT_NEAR(m.var, shape, 0.06 * std::max(1.0, shape)) << shape;
  }
}

TEST(RandomVariates, GumbelHasEulerMascheroniMean) {
  Rng rng(4);
  const Moments m = moments(200000, [&] { return standard_gumbel(rng); });
  EXPECT_NEAR(m.mean, 0.5772156649, 0.01);
  EXPECT_NEAR(m.var, M_PI * M_PI / 6.0, 0.03);
}

TEST(RandomVariates, DirichletIsADistributionOverTheIncludedEntries) {
  Rng rng(5);
  std::vector<double> out(6);
  std::vector<double> mean(6, 0.0);
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    symmetric_dirichlet(rng, 0.3, 6, [](size_t k) { return k != 2 && k != 4; }, out.data());
    double sum = 0;
    for (size_t k = 0; k < 6; ++k) {
      ASSERT_GE(out[k], 0.0);
      sum += out[k];
      mean[k] += out[k] / n;
    }
    ASSERT_NEAR(sum, 1.0, 1e-12);
    ASSERT_EQ(out[2], 0.0);
    ASSERT_EQ(out[4], 0.0);
  }
  for (size_t k : {0, 1, 3, 5}) EXPECT_NEAR(mean[k], 0.25, 0.01);
}

// With an absurdly small alpha every gamma draw underflows; the sample must still be a
// distribution (the limit puts all mass on one entry), never 0/0.
TEST(RandomVariates, DirichletWithTinyAlphaStaysADistribution) {
  Rng rng(6);
  std::vector<double> out(5);
  for (int i = 0; i < 200; ++i) {
    symmetric_dirichlet(rng, 1e-300, 5, [](size_t) { return true; }, out.data());
    double sum = 0;
    for (double x : out) {
      ASSERT_TRUE(std::isfinite(x));
      sum += x;
    }
    ASSERT_NEAR(sum, 1.0, 1e-12);
  }
}

TEST(RandomVariates, SameSeedSameDraws) {
  Rng a(7), b(7);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(standard_gamma(a, 0.3), standard_gamma(b, 0.3));
    ASSERT_EQ(standard_gumbel(a), standard_gumbel(b));
  }
}

}  // namespace
