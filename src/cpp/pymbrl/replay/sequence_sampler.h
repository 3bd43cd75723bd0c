// Windows of consecutive steps from one env stream each (Dreamer, MDN-RNN). Every step of a window
// is a sampleable transition. With within_episode, windows that cross an episode boundary are
// refused (MDN-RNN's convention); otherwise is_first marks where episodes start (Dreamer's).
// Sampling is by rejection, so its cost does not grow with capacity; when windows are rare it
// falls back to listing them all, so it always ends.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/replay/transition_store.h"
#include "pymbrl/rng.h"

namespace pymbrl::replay {

// Throws unless windows of `length` steps fit in what the store holds: 1 <= length <= stored steps
// per env less the newest (whose next observation may be unknown).
inline void check_window_length(const TransitionStore& store, int64_t length) {
  if (length < 1) throw std::invalid_argument("length: expected an integer >= 1, got " + std::to_string(length));
  if (length > store.stored_steps() - 1) {
    throw std::invalid_argument("length: expected at most " + std::to_string(store.stored_steps() - 1) +
                                " (steps stored per env, less the newest), got " + std::to_string(length));
  }
}

// Start ids of n windows of `length` steps, uniform over all valid windows.
inline void sample_windows(const TransitionStore& store, Rng& rng, int64_t n, int64_t length, bool within_episode,
                           int64_t* starts) {
  check_window_length(store, length);
  const int64_t envs = store.num_envs();
  // Last step of a window must have a next observation for sure: stop one short of the newest.
  const int64_t first_step = store.oldest_step();
  const int64_t n_starts = store.written() - 1 - length - first_step + 1;
  auto valid = [&](int64_t t0, int64_t e) {
    if (!within_episode) return true;
    const int64_t last = (t0 + length - 1) * envs + e;
    return store.episode_start(last) <= t0;
  };
  const int64_t max_tries = n > (int64_t{1} << 56) ? INT64_MAX : 64 * n + 1024;
  int64_t tries = 0;
  int64_t i = 0;
  for (; i < n && tries < max_tries; ++tries) {
    const int64_t t0 = first_step + static_cast<int64_t>(rng.uniform_int(static_cast<uint64_t>(n_starts)));
    const int64_t e = static_cast<int64_t>(rng.uniform_int(static_cast<uint64_t>(envs)));
    if (valid(t0, e)) starts[i++] = t0 * envs + e;
  }
  if (i == n) return;
  std::vector<int64_t> all;
  for (int64_t t0 = first_step; t0 < first_step + n_starts; ++t0) {
    for (int64_t e = 0; e < envs; ++e) {
      if (valid(t0, e)) all.push_back(t0 * envs + e);
    }
  }
  if (all.empty()) {
    throw std::invalid_argument("length: no stored episode has " + std::to_string(length) +
                                " steps (within_episode=True)");
  }
  for (; i < n; ++i) starts[i] = all[rng.uniform_int(all.size())];
}

// The ids of every step of windows starting at starts[0..n) ([n, length], row-major) and whether
// each step begins an episode.
inline void expand_windows(const TransitionStore& store, const int64_t* starts, int64_t n, int64_t length, int64_t* ids,
                           bool* is_first) {
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = 0; k < length; ++k) {
      const int64_t id = starts[i] + k * store.num_envs();
      ids[i * length + k] = id;
      is_first[i * length + k] = store.is_first(id);
    }
  }
}

}  // namespace pymbrl::replay
