// The softmax of the search, with its own exponential.
//
// portable_exp is a fixed sequence of IEEE double operations (no libm call, no fused
// multiply-add): the same on every platform and compiler, reproducible bit for bit by a reference
// written in plain Python, and inlined (libm's exp is neither, and was a third of the cost of
// expanding a node). Accuracy: within 2 ulp of e^x on [-708, 0]; 0 below -708, where every
// use here (probabilities after subtracting the largest logit) only needs "negligible".
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

namespace pymbrl::mcts {

// e^x for x <= 0 (the arguments of a softmax after subtracting the maximum). x is split as
// k ln2 + r with |r| <= ln2 / 2 (k by round-to-nearest through the 1.5 * 2^52 trick, ln2 in two
// parts so that k * ln2_hi is exact), e^r by its Taylor series to degree 13 (truncation error
// < 1e-17), and 2^k is put into the exponent bits.
inline double portable_exp(double x) {
  constexpr double kLog2e = 1.4426950408889634;
  constexpr double kRound = 6755399441055744.0;       // 1.5 * 2^52
  constexpr double kLn2Hi = 6.93147180369123816490e-01;  // ln 2 with its low 32 bits zero
  constexpr double kLn2Lo = 1.90821492927058770002e-10;  // ln 2 - kLn2Hi
  const double xc = x >= -708.0 ? x : -708.0;
  const double t = xc * kLog2e + kRound;  // k + 1.5 * 2^52, k = round(x / ln 2) in [-1021, 0]
  const double k = t - kRound;
  const double r = (xc - k * kLn2Hi) - k * kLn2Lo;
  double p = 1.0 / 6227020800.0;  // 1 / 13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  // 2^k from the integer k held in t's low mantissa bits (t's binade has an ulp of exactly 1):
  // a normal power of two, so the product is exact scaling.
  int64_t t_bits, round_bits;
  std::memcpy(&t_bits, &t, sizeof t);
  std::memcpy(&round_bits, &kRound, sizeof kRound);
  const int64_t scale_bits = (t_bits - round_bits + 1023) << 52;
  double scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  return x >= -708.0 ? p * scale : 0.0;
}

// out[a] = softmax of logits over the actions with include(a); 0 for the others. The sum runs in
// increasing action order so that a reference implementation reproduces it bit for bit.
template <typename Logit, typename Include>
void softmax(int n, Logit logit, Include include, double* out) {
  double m = -std::numeric_limits<double>::infinity();
  for (int a = 0; a < n; ++a) {
    if (include(a)) m = std::max(m, logit(a));
  }
  for (int a = 0; a < n; ++a) out[a] = logit(a) - m;
  for (int a = 0; a < n; ++a) out[a] = portable_exp(out[a]);
  for (int a = 0; a < n; ++a) {
    if (!include(a)) out[a] = 0.0;
  }
  double sum = 0.0;
  for (int a = 0; a < n; ++a) sum += out[a];
  for (int a = 0; a < n; ++a) out[a] /= sum;
}

}  // namespace pymbrl::mcts
