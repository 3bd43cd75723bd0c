// Continuous random variates drawn from pymbrl::Rng, written out (not std:: distributions, whose
// algorithms differ between standard libraries) so that a seed reproduces on every platform.
#pragma once

#include <cmath>
#include <cstddef>

#include "pymbrl/rng.h"

namespace pymbrl {

// Uniform on the open interval (0, 1): safe to take logarithms of.
inline double open_uniform(Rng& rng) { return (static_cast<double>(rng.next_u64() >> 11) + 0.5) * 0x1.0p-53; }

// Standard normal by Marsaglia's polar method (one of the pair is discarded to keep no state).
inline double standard_normal(Rng& rng) {
  for (;;) {
    const double u = 2.0 * rng.uniform() - 1.0;
    const double v = 2.0 * rng.uniform() - 1.0;
    const double s = u * u + v * v;
    if (s > 0.0 && s < 1.0) return u * std::sqrt(-2.0 * std::log(s) / s);
  }
}

// Gamma(shape, 1) by Marsaglia & Tsang (2000); shapes below 1 use the boost
// Gamma(shape) = Gamma(shape + 1) * U^(1 / shape).
inline double standard_gamma(Rng& rng, double shape) {
  if (shape < 1.0) return standard_gamma(rng, shape + 1.0) * std::pow(open_uniform(rng), 1.0 / shape);
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    double x, v;
    do {
      x = standard_normal(rng);
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    const double u = open_uniform(rng);
    if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
    if (std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
  }
}

// Standard Gumbel(0, 1).
inline double standard_gumbel(Rng& rng) { return -std::log(-std::log(open_uniform(rng))); }

// Fills out[i] for the n entries with include(i) true with a symmetric Dirichlet(alpha) sample
// and the others with 0. With a tiny alpha every gamma draw can underflow to 0; the sample is then
// the distribution's limit, all mass on one included entry chosen uniformly.
template <typename Include>
void symmetric_dirichlet(Rng& rng, double alpha, size_t n, Include include, double* out) {
  double sum = 0.0;
  size_t count = 0;
  for (size_t i = 0; i < n; ++i) {
    out[i] = include(i) ? standard_gamma(rng, alpha) : 0.0;
    sum += out[i];
    count += include(i) ? 1 : 0;
  }
  if (count == 0) return;
  if (sum > 0.0) {
    for (size_t i = 0; i < n; ++i) out[i] /= sum;
    return;
  }
  size_t pick = rng.uniform_int(count);
  for (size_t i = 0; i < n; ++i) {
    if (include(i) && pick-- == 0) out[i] = 1.0;
  }
}

}  // namespace pymbrl
