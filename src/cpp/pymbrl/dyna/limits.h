// Documented limits of the tabular Dyna core, so that no size computation can overflow and no
// Q value can become non-finite.
#pragma once

#include <cstdint>

namespace pymbrl::dyna {

// n_states * n_actions. An agent keeps about 56 bytes per pair (Q, model slot, outcome list,
// Dyna-Q+ clock, sweep queue position), so this bounds an agent to about 15 GB.
inline constexpr int64_t kMaxPairs = int64_t{1} << 28;

// With |reward| <= kMaxReward, a Dyna-Q+ bonus kappa * sqrt(tau) <= kMaxKappa * sqrt(kMaxTime) and
// alpha, gamma <= 1, one update moves max|Q| by at most about 1e108, so starting from
// |Q| <= kMaxAbsQ it takes more than 1e90 updates to get near the largest double: no update can
// make the Q table non-finite, and none needs a check of its own.
inline constexpr double kMaxReward = 1e100;
inline constexpr double kMaxKappa = 1e100;
inline constexpr double kMaxAbsQ = 1e200;       // |Q| accepted by a restore
inline constexpr int64_t kMaxTime = int64_t{1} << 53;  // real steps in one agent's life

// run_batch: values in each result array (seeds x episode columns, seeds x steps), 2 GiB of
// float64; checked before anything runs or is allocated.
inline constexpr int64_t kMaxResultValues = int64_t{1} << 28;

}  // namespace pymbrl::dyna
