// Shared by the replay test files: a small row layout, a transition record that packs into it,
// a from-first-principles reference of what a TransitionStore should hold, and store snapshots.
//
// Every transition carries its id in the `action` field and a distinct observation (obs = id + 1,
// final observation = 1e6 + id), so a row read back names the transition that wrote it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "pymbrl/replay/row_layout.h"
#include "pymbrl/replay/transition_store.h"
#include "pymbrl/rng.h"

namespace replay_test {

using pymbrl::Rng;
using pymbrl::replay::Field;
using pymbrl::replay::RowLayout;
using pymbrl::replay::StoreConfig;
using pymbrl::replay::TransitionStore;

inline Field make_field(std::string name, char kind, int64_t itemsize, std::vector<int64_t> shape = {}) {
  Field f;
  f.name = std::move(name);
  f.kind = kind;
  f.itemsize = itemsize;
  f.shape = std::move(shape);
  return f;
}

// Sizes mixed on purpose: terminated @0, obs float32[2] @4, truncated @12, action int64 @16,
// reward float32 @24 (float64 @24 with reward64), row 32 bytes.
inline std::vector<Field> test_fields(bool reward64 = false) {
  return {make_field("terminated", 'b', 1), make_field("obs", 'f', 4, {2}), make_field("truncated", 'b', 1),
          make_field("action", 'i', 8), make_field("reward", 'f', reward64 ? 8 : 4)};
}
inline RowLayout test_layout(bool reward64 = false) { return RowLayout(test_fields(reward64)); }

inline StoreConfig store_config(int64_t capacity, int64_t num_envs = 1, int64_t n_step = 1, double gamma = 0.9,
                                bool track_episodes = false) {
  StoreConfig c;
  c.capacity = capacity;
  c.num_envs = num_envs;
  c.n_step = n_step;
  c.gamma = gamma;
  c.track_episodes = track_episodes;
  return c;
}

// One transition. obs is stored as {obs, -obs}; final_obs is the next_obs input (kept only when
// the step ends an episode).
struct Tr {
  float obs = 0.0f;
  int64_t action = 0;
  double reward = 0.0;
  bool terminated = false;
  bool truncated = false;
  float final_obs = 0.0f;
  bool done() const { return terminated || truncated; }
};

// The transition with id `id`, distinct in every field.
inline Tr tr_for(int64_t id, double reward = 0.0, bool terminated = false, bool truncated = false) {
  Tr t;
  t.obs = static_cast<float>(id + 1);
  t.action = id;
  t.reward = reward;
  t.terminated = terminated;
  t.truncated = truncated;
  t.final_obs = static_cast<float>(1000000 + id);
  return t;
}

// The reward as the store keeps it (float32 unless the layout's reward is float64).
inline double stored_reward(const RowLayout& layout, double r) {
  return layout.reward().itemsize == 8 ? r : static_cast<double>(static_cast<float>(r));
}

// Per-field input buffers for items in [steps, num_envs] order, in the layout's field order.
struct Packed {
  std::vector<std::vector<uint8_t>> fields;
  std::vector<uint8_t> next_obs;
  std::vector<const uint8_t*> ptrs() const {
    std::vector<const uint8_t*> out;
    for (const auto& f : fields) out.push_back(f.data());
    return out;
  }
};

inline void put_obs(uint8_t* dst, float v) {
  const float o[2] = {v, -v};
  std::memcpy(dst, o, sizeof(o));
}

inline Packed pack(const RowLayout& layout, const std::vector<Tr>& items) {
  Packed p;
  const auto& fs = layout.fields();
  p.fields.resize(fs.size());
  for (size_t f = 0; f < fs.size(); ++f) {
    const Field& fd = fs[f];
    std::vector<uint8_t>& buf = p.fields[f];
    buf.assign(items.size() * static_cast<size_t>(fd.nbytes), 0);
    for (size_t i = 0; i < items.size(); ++i) {
      uint8_t* dst = buf.data() + i * static_cast<size_t>(fd.nbytes);
      const Tr& t = items[i];
      if (fd.name == "obs") {
        put_obs(dst, t.obs);
      } else if (fd.name == "action") {
        std::memcpy(dst, &t.action, 8);
      } else if (fd.name == "reward") {
        if (fd.itemsize == 8) {
          std::memcpy(dst, &t.reward, 8);
        } else {
          const float r = static_cast<float>(t.reward);
          std::memcpy(dst, &r, 4);
        }
      } else if (fd.name == "terminated") {
        dst[0] = t.terminated;
      } else if (fd.name == "truncated") {
        dst[0] = t.truncated;
      }
    }
  }
  p.next_obs.assign(items.size() * 8, 0);
  for (size_t i = 0; i < items.size(); ++i) put_obs(p.next_obs.data() + i * 8, items[i].final_obs);
  return p;
}

// Appends items ([steps, num_envs] order) to anything with TransitionStore's append signature
// (the store itself or a buffer). Returns what append returns.
template <typename Target>
int64_t append_items(Target& target, const RowLayout& layout, const std::vector<Tr>& items, int64_t steps) {
  const Packed p = pack(layout, items);
  return target.append(p.ptrs(), p.next_obs.data(), steps);
}

inline float obs_value(const uint8_t* obs) {
  float v;
  std::memcpy(&v, obs, 4);
  return v;
}

// The transition stored in row r.
inline Tr read_row(const TransitionStore& store, int64_t r) {
  const RowLayout& l = store.layout();
  const uint8_t* row = store.row(r);
  Tr t;
  for (const Field& f : l.fields()) {
    if (f.name == "obs") t.obs = obs_value(row + f.offset);
    if (f.name == "action") std::memcpy(&t.action, row + f.offset, 8);
  }
  t.reward = l.read_reward(row);
  t.terminated = l.terminated(row);
  t.truncated = l.truncated(row);
  return t;
}

// What the store should hold after the transitions in `log` (by id) were appended, derived from
// the documented rules rather than from the store's own arithmetic.
struct Reference {
  int64_t capacity = 0;
  int64_t envs = 1;
  std::vector<Tr> log;
  int64_t cleared = 0;  // first id after the last clear(): earlier ids are gone for good

  int64_t end() const { return static_cast<int64_t>(log.size()); }
  int64_t written() const { return end() / envs; }
  int64_t oldest() const { return std::max<int64_t>(cleared, end() - capacity); }
  bool stored(int64_t id) const { return id >= oldest() && id < end(); }
  const Tr& at(int64_t id) const { return log[static_cast<size_t>(id)]; }
  // The next observation is known: the step ended an episode, or the stream has moved on.
  bool sampleable(int64_t id) const { return stored(id) && (at(id).done() || id + envs < end()); }
  int64_t size() const {
    int64_t n = 0;
    for (int64_t id = oldest(); id < end(); ++id) n += sampleable(id);
    return n;
  }
  float next_obs(int64_t id) const { return at(id).done() ? at(id).final_obs : at(id + envs).obs; }
  bool is_first(int64_t id) const { return id < cleared + envs || at(id - envs).done(); }
  // Step at which the episode containing id began (counting steps overwritten since).
  int64_t episode_start(int64_t id) const {
    int64_t t = id / envs;
    const int64_t e = id % envs;
    while (t > cleared / envs && !at((t - 1) * envs + e).done()) --t;
    return t;
  }

  struct NStep {
    double ret = 0.0;
    double discount = 0.0;
    bool terminated = false;
    bool truncated = false;
    int64_t last_id = 0;
  };
  // Up to n rewards from id along its stream; stops after a termination (discount 0), a
  // truncation, or the last transition whose next observation is known.
  NStep n_step(int64_t id, int64_t n, double gamma, const RowLayout& layout) const {
    NStep out;
    double g = 1.0;
    for (int64_t k = 0; k < n; ++k) {
      const Tr& t = at(id);
      out.ret += g * stored_reward(layout, t.reward);
      g *= gamma;
      out.last_id = id;
      out.terminated = t.terminated;
      out.truncated = t.truncated;
      if (t.terminated) {
        out.discount = 0.0;
        return out;
      }
      if (t.truncated || !sampleable(id + envs)) break;
      id += envs;
    }
    out.discount = g;
    return out;
  }
};

// Random episodes: each step ends an episode with probability p_term + p_trunc.
inline std::vector<Tr> random_steps(Rng& rng, int64_t first_id, int64_t count, double p_term, double p_trunc) {
  std::vector<Tr> out;
  for (int64_t i = 0; i < count; ++i) {
    const double u = rng.uniform();
    const double reward = std::floor(rng.uniform() * 2000.0) / 64.0 - 15.0;  // exact in float32
    out.push_back(tr_for(first_id + i, reward, u < p_term, u >= p_term && u < p_term + p_trunc));
  }
  return out;
}

// Appends `steps` random steps for every stream to both the target and the reference.
template <typename Target>
int64_t append_random(Target& target, const RowLayout& layout, Reference& ref, Rng& rng, int64_t steps, double p_term,
                      double p_trunc) {
  std::vector<Tr> items = random_steps(rng, ref.end(), steps * ref.envs, p_term, p_trunc);
  ref.log.insert(ref.log.end(), items.begin(), items.end());
  return append_items(target, layout, items, steps);
}

// Everything restore() takes, copied out of a store.
struct Snapshot {
  int64_t written = 0;
  int64_t cleared_at = 0;
  std::vector<uint8_t> rows;
  std::vector<int32_t> final_slots;
  std::vector<uint8_t> final_pool;
  std::vector<int32_t> free_slots;
  std::vector<uint8_t> is_first;
  std::vector<int64_t> episode_start;

  bool operator==(const Snapshot& o) const {
    return written == o.written && cleared_at == o.cleared_at && rows == o.rows && final_slots == o.final_slots && final_pool == o.final_pool &&
           free_slots == o.free_slots && is_first == o.is_first && episode_start == o.episode_start;
  }
};

inline Snapshot snapshot(const TransitionStore& s) {
  Snapshot out;
  out.written = s.written();
  out.cleared_at = s.cleared_at();
  const size_t bytes = static_cast<size_t>(s.written_rows() * s.layout().row_bytes());
  out.rows.assign(s.rows_data(), s.rows_data() + bytes);
  out.final_slots = s.final_slots();
  out.final_pool = s.final_pool();
  out.free_slots = s.free_slots();
  out.is_first = s.is_first_flags();
  out.episode_start = s.episode_starts();
  return out;
}

inline void restore(TransitionStore& s, const Snapshot& snap) {
  s.restore(snap.written, snap.cleared_at, snap.rows.data(), static_cast<int64_t>(snap.rows.size()) / s.layout().row_bytes(),
            snap.final_slots, snap.final_pool, snap.free_slots, snap.is_first, snap.episode_start);
}

// Pearson's statistic of observed counts against expected counts.
inline double chi_square(const std::vector<double>& observed, const std::vector<double>& expected) {
  double chi2 = 0.0;
  for (size_t i = 0; i < observed.size(); ++i) {
    const double d = observed[i] - expected[i];
    chi2 += d * d / expected[i];
  }
  return chi2;
}

// A generous bound for a chi-square statistic with `df` degrees of freedom: the mean plus ten
// standard deviations, so the tests trip only on real bias.
inline double chi_square_bound(double df) { return df + 10.0 * std::sqrt(2.0 * df); }

}  // namespace replay_test
