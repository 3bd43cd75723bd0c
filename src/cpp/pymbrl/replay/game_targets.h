// MuZero's training targets for sampled positions (Schrittwieser et al. 2020, appendix G), a whole
// batch per call. For position t of a game of length T, discount d, n = td_steps, and
// k = 0..K (K = unroll_steps), u = t + k:
//   value[k]   u < T: sum_{i < min(n, T-u)} d^i r[u+i], plus d^n root_value[u+n] if u+n < T, else
//              d^(T-u) final_value for a cut game and nothing for a terminated one;
//              u >= T: 0, trained (value_mask 1) for a terminated game, whose end is absorbing,
//              and not trained (value_mask 0) for a cut game, whose later values are unknown.
//   reward[k]  k = 0: 0, not trained (no reward leads into the root); k >= 1: r[u-1] if u-1 < T,
//              else 0, trained only for a terminated game (same reasoning as the value).
//   policy[k]  policy[u] if u < T, else zeros; mask[k] = (u < T).
//   action[k]  k < K: a[u] if u < T, else uniform over actions from the buffer's generator (the
//              unroll goes on past the end of the game, as in MuZero's pseudocode).
// d may be negative: two-player zero-sum games use d = -1, so each term is seen by the player to
// move at u.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/replay/game_store.h"
#include "pymbrl/rng.h"

namespace pymbrl::replay {

// Limits: unroll_steps <= 2^16 (MuZero unrolls 5); td_steps <= 2^62 (any n beyond the longest game
// gives the Monte Carlo return).
struct TargetConfig {
  static constexpr int64_t kMaxUnrollSteps = int64_t{1} << 16;

  int64_t unroll_steps = 5;
  int64_t td_steps = 10;
  double discount = 0.997;

  void check() const {
    if (!(unroll_steps >= 0 && unroll_steps <= kMaxUnrollSteps)) {
      throw std::invalid_argument("unroll_steps: expected an integer in [0, 65536], got " + std::to_string(unroll_steps));
    }
    if (!(td_steps >= 1 && td_steps <= kMaxId)) {
      throw std::invalid_argument("td_steps: expected an integer in [1, 2^62], got " + std::to_string(td_steps));
    }
    if (!(std::abs(discount) <= 1.0)) throw std::invalid_argument("discount: expected a value in [-1, 1], got " + std::to_string(discount));
  }
};

// Where make_targets writes, for n positions and K = unroll_steps (all row-major).
struct TargetOutputs {
  uint8_t* obs = nullptr;       // [n, obs_bytes]
  int64_t* actions = nullptr;   // [n, K]
  float* values = nullptr;      // [n, K+1]
  float* rewards = nullptr;     // [n, K+1]
  float* policies = nullptr;    // [n, K+1, num_actions]
  float* mask = nullptr;        // [n, K+1]
  float* value_mask = nullptr;  // [n, K+1]
  float* reward_mask = nullptr; // [n, K+1]
};

// Fills every output for stored positions ids[0..n) (the caller validates them). Sums are taken
// in double and rounded once to float32.
inline void make_targets(const GameStore& store, const TargetConfig& c, Rng& rng, const int64_t* ids, int64_t n,
                         const TargetOutputs& out) {
  const int64_t K = c.unroll_steps;
  const int64_t td = c.td_steps;
  const int64_t A = store.num_actions();
  const int64_t obs_bytes = store.obs_bytes();
  // d^i by repeated products, as the reference computes them. Exponents used are < T or T - u
  // (<= T) or td where td < T, so powers up to the longest sampled game suffice, however large td is.
  int64_t longest = 0;
  for (int64_t b = 0; b < n; ++b) longest = std::max(longest, store.game_of(ids[b]).length);
  const int64_t top = std::min(td, longest);
  std::vector<double> power(static_cast<size_t>(top + 1));
  power[0] = 1.0;
  for (int64_t i = 1; i <= top; ++i) power[static_cast<size_t>(i)] = power[static_cast<size_t>(i - 1)] * c.discount;
  for (int64_t b = 0; b < n; ++b) {
    const Game& g = store.game_of(ids[b]);
    const int64_t T = g.length;
    const int64_t t = ids[b] - g.start;
    const int64_t first = store.slot_of(g.start);
    const float past_end_mask = g.terminated ? 1.0f : 0.0f;
    std::memcpy(out.obs + b * obs_bytes, store.obs_at(store.wrap(first, t)), static_cast<size_t>(obs_bytes));
    for (int64_t k = 0; k < K; ++k) {
      const int64_t u = t + k;
      out.actions[b * K + k] = u < T ? store.action_at(store.wrap(first, u)) : static_cast<int64_t>(rng.uniform_int(static_cast<uint64_t>(A)));
    }
    for (int64_t k = 0; k <= K; ++k) {
      const int64_t u = t + k;
      const int64_t o = b * (K + 1) + k;
      float* policy = out.policies + o * A;
      if (u < T) {
        const int64_t m = std::min(td, T - u);
        double value = 0.0;
        for (int64_t i = 0; i < m; ++i) value += power[static_cast<size_t>(i)] * store.reward_at(store.wrap(first, u + i));
        if (u + td < T) {
          value += power[static_cast<size_t>(td)] * store.root_value_at(store.wrap(first, u + td));
        } else if (!g.terminated) {
          value += power[static_cast<size_t>(T - u)] * g.final_value;
        }
        out.values[o] = static_cast<float>(value);
        out.value_mask[o] = 1.0f;
        out.mask[o] = 1.0f;
        std::memcpy(policy, store.policy_at(store.wrap(first, u)), static_cast<size_t>(A) * sizeof(float));
      } else {
        out.values[o] = 0.0f;
        out.value_mask[o] = past_end_mask;
        out.mask[o] = 0.0f;
        std::memset(policy, 0, static_cast<size_t>(A) * sizeof(float));
      }
      if (k == 0) {
        out.rewards[o] = 0.0f;
        out.reward_mask[o] = 0.0f;
      } else if (u - 1 < T) {
        out.rewards[o] = store.reward_at(store.wrap(first, u - 1));
        out.reward_mask[o] = 1.0f;
      } else {
        out.rewards[o] = 0.0f;
        out.reward_mask[o] = past_end_mask;
      }
    }
  }
}

}  // namespace pymbrl::replay
