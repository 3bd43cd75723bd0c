// One batched search, driven step by step from outside: begin (root noise, rule), then
// select -> [the caller evaluates the model on the selected leaves] -> expand_and_backup, once
// per simulation, then decide. The network never enters C++; only ids and floats cross.
//
// Every method checks its arguments before changing anything, so an exception leaves the trees
// exactly as they were. Results depend on the seed only, never on the number of threads: each
// root draws from its own generator.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/mcts/chance.h"
#include "pymbrl/mcts/gumbel.h"
#include "pymbrl/mcts/muzero.h"
#include "pymbrl/mcts/tree.h"
#include "pymbrl/random_variates.h"
#include "pymbrl/rng.h"
#include "pymbrl/thread_pool.h"

namespace pymbrl::mcts {

// The accepted range of the numbers a search is given (roots, model outputs, parameters). Within
// it every statistic stays finite in float64 and in the float32 copies users get: with |reward|,
// |value| <= 2^64 and |discount| <= 1, a return along a path of at most kMaxCapacity (2^30) edges
// is below 2^95 and a value sum over fewer than 2^31 visits below 2^126, so Q, values, Gumbel's
// sigma and its softmax never meet inf - inf. 2^64 is exact in float32 and float64.
constexpr double kMaxMagnitude = 18446744073709551616.0;  // 2^64
constexpr double kMinPbCBase = 1.0 / kMaxMagnitude;       // c(N) = log((N + base + 1) / base) stays finite
constexpr int64_t kMaxVisits = std::numeric_limits<int32_t>::max() - 1;

enum class Rule { kNone, kMuZero, kGumbel };

// The leaf chosen for each root by select().
struct Selection {
  int32_t* parent = nullptr;  // the node whose child is evaluated (B)
  int32_t* action = nullptr;  // the action taken from it (B)
  int32_t* node = nullptr;    // the new node's id, or the existing leaf's at the depth limit (B)
  uint8_t* is_new = nullptr;  // 1 when the leaf is a new node that expand_and_backup will create (B)
};

// Pool rows (node * B + b in an embedding pool laid out [nodes, B, ...]) for the caller's gather
// and scatter; leaves that are not new are scattered to the spare row `capacity`.
struct PoolRows {
  int64_t* gather = nullptr;
  int64_t* scatter = nullptr;
  int64_t* action = nullptr;  // the actions again, as int64 for torch
};

class Search {
 public:
  // num_chance_outcomes > 0 makes the trees stochastic (Stochastic MuZero, chance.h): decision
  // nodes choose among the first num_actions edges by pUCT, chance nodes among the first
  // num_chance_outcomes by chance_select, and every row this class reads or writes (logits, masks,
  // summaries, weights) is max(num_actions, num_chance_outcomes) wide, the tree's width;
  // StochasticSearch (stochastic.h) offers the [B, A] and [B, C] interface.
  Search(int batch_size, int num_actions, int capacity, int num_threads, int num_chance_outcomes = 0)
      : tree_(checked(batch_size, "batch_size"),
              std::max(checked(num_actions, "num_actions"), non_negative(num_chance_outcomes, "num_chance_outcomes")),
              checked(capacity, "capacity"), num_chance_outcomes > 0),
        decision_actions_(num_actions),
        chance_outcomes_(num_chance_outcomes),
        pool_(num_threads),
        rngs_(batch_size),
        min_max_(batch_size),
        gumbel_(static_cast<size_t>(batch_size) * num_actions, 0.0),
        kept_visits_(static_cast<size_t>(batch_size) * tree_.num_actions(), 0),
        parent_(batch_size, kNoNode),
        action_(batch_size, -1),
        leaf_(batch_size, kNoNode) {
    // Decision nodes narrower than the tree must not choose the edges beyond their actions.
    if (num_actions < tree_.num_actions()) {
      interior_valid_.assign(tree_.num_actions(), 0);
      std::fill(interior_valid_.begin(), interior_valid_.begin() + num_actions, uint8_t{1});
    }
  }

  const TreeBatch& tree() const { return tree_; }
  int num_threads() const { return pool_.size(); }
  int simulations_done() const { return sims_done_; }
  int num_simulations() const { return sims_planned_; }
  Rule rule() const { return rule_; }

  // Sets the roots. logits [B, A], values [B], invalid [B, A] (null: all valid), keep [B] (null:
  // none): a kept root keeps its subtree (from reroot) and only has its valid actions updated.
  void set_roots(const FloatRows& logits, const FloatRows& values, const uint8_t* invalid, const uint8_t* keep) {
    const int B = tree_.batch_size(), A = tree_.num_actions();
    check_some_valid(invalid);
    for (int b = 0; b < B; ++b) {
      const bool kept = keep != nullptr && keep[b];
      if (kept && tree_.num_nodes(b) == 0) {
        throw std::invalid_argument("keep: expected only roots whose subtree was kept, got root " + std::to_string(b) +
                                    " whose tree is empty");
      }
      const uint8_t* inv = invalid == nullptr ? nullptr : invalid + static_cast<size_t>(b) * A;
      if (kept) {
        check_kept_logits(b, inv);
        continue;
      }
      check_logits(logits, static_cast<size_t>(b) * A, inv, "prior_logits", b);
    }
    check_magnitudes(values, B, kMaxMagnitude, "value", keep);
    for (int b = 0; b < B; ++b) {
      const uint8_t* inv = invalid == nullptr ? nullptr : invalid + static_cast<size_t>(b) * A;
      if (keep != nullptr && keep[b]) {
        tree_.revalidate_root(b, inv);
      } else {
        tree_.set_root(b, logits, static_cast<size_t>(b) * A, values[b], inv);
      }
    }
    // New roots start a new search: a selection abandoned by a failed search is dropped.
    rule_ = Rule::kNone;
    pending_ = false;
  }

  // Starts a MuZero search of `num_simulations`: Dirichlet(alpha) noise mixed into the roots'
  // priors with weight `fraction`, pUCT with Q transformed by `transform`. max_depth <= 0: unlimited.
  void begin_muzero(const PuctParams& params, double alpha, double fraction, int max_depth, int num_simulations,
                    uint64_t seed, const QTransform& transform = QTransform{}) {
    if (!(params.pb_c_base >= kMinPbCBase) || !std::isfinite(params.pb_c_base)) {
      throw std::invalid_argument("pb_c_base: expected a finite number >= 2**-64, got " + number(params.pb_c_base));
    }
    check_parameter(params.pb_c_init, -kMaxMagnitude, "pb_c_init");
    check_transform(transform);
    if (!(fraction >= 0.0 && fraction <= 1.0)) throw std::invalid_argument("dirichlet_fraction: expected a number in [0, 1], got " + number(fraction));
    if (fraction > 0.0 && !(alpha > 0.0 && alpha <= kMaxMagnitude)) {
      throw std::invalid_argument("dirichlet_alpha: expected a number in (0, 2**64], got " + number(alpha));
    }
    check_begin(max_depth, num_simulations);
    const int A = tree_.num_actions();
    pool_.parallel_for(tree_.batch_size(), [&](int64_t lo, int64_t hi) {
      std::vector<double> noise(A);
      for (int b = static_cast<int>(lo); b < hi; ++b) {
        rngs_[b].reseed(derive_seed(seed, static_cast<uint64_t>(b)));
        tree_.reset_root_priors(b);
        if (fraction > 0.0) {
          const uint8_t* valid = tree_.root_valid(b);
          symmetric_dirichlet(rngs_[b], alpha, A, [valid](size_t a) { return valid[a] != 0; }, noise.data());
          double* p = tree_.priors(b, 0);
          for (int a = 0; a < A; ++a) p[a] = valid[a] ? (1.0 - fraction) * p[a] + fraction * noise[a] : 0.0;
          tree_.refresh_explore(b, 0);
        }
        min_max_[b] = tree_min_max(tree_, b);
      }
    });
    // Visit counts stay below the kept root's plus one per simulation, bar depth-limit revisits.
    int32_t most = 0;
    for (int b = 0; b < tree_.batch_size(); ++b) most = std::max(most, tree_.visits(b, 0));
    exploration_ = ExplorationTable(params, most + num_simulations + 1);
    transform_ = transform;
    start(Rule::kMuZero, max_depth, num_simulations);
  }

  // Starts a Gumbel MuZero search of `num_simulations`: Gumbel noise on the root logits,
  // sequential halving over at most `max_num_considered_actions`. A kept root (tree reuse) keeps
  // its statistics for the completed Q values, while sequential halving runs on the visits this
  // search adds (the schedule is defined from an unsearched root).
  void begin_gumbel(const GumbelParams& params, int max_depth, int num_simulations, uint64_t seed) {
    if (chance_outcomes_ > 0) throw std::logic_error("begin_gumbel: a stochastic tree is searched by begin_muzero");
    if (params.max_num_considered_actions < 1) throw std::invalid_argument("max_num_considered_actions: expected at least 1");
    check_parameter(params.gumbel_scale, 0.0, "gumbel_scale");
    check_parameter(params.value_scale, -kMaxMagnitude, "value_scale");
    check_parameter(params.maxvisit_init, -kMaxMagnitude, "maxvisit_init");
    check_begin(max_depth, num_simulations);
    const int A = tree_.num_actions();
    pool_.parallel_for(tree_.batch_size(), [&](int64_t lo, int64_t hi) {
      for (int b = static_cast<int>(lo); b < hi; ++b) {
        rngs_[b].reseed(derive_seed(seed, static_cast<uint64_t>(b)));
        tree_.reset_root_priors(b);
        double* g = gumbel_.data() + static_cast<size_t>(b) * A;
        for (int a = 0; a < A; ++a) g[a] = params.gumbel_scale * standard_gumbel(rngs_[b]);
        std::copy_n(tree_.child_visits(b, 0), A, kept_visits_.data() + static_cast<size_t>(b) * A);
      }
    });
    gumbel_params_ = params;
    // A root considers at most A actions: rows beyond would never be read (and would make the
    // table's size depend on an argument that nothing bounds).
    halving_ = HalvingTable(std::min(params.max_num_considered_actions, A), num_simulations);
    start(Rule::kGumbel, max_depth, num_simulations);
  }

  // Walks every tree from its root to a leaf: a not-yet-expanded child (to be created by the
  // next expand_and_backup) or, at the depth limit, an existing node.
  void select(const Selection& out, const PoolRows& rows) {
    if (rule_ == Rule::kNone) throw std::logic_error("select: no search was begun (set_roots resets the search)");
    if (pending_) throw std::logic_error("select: the previous selection was not expanded yet");
    if (sims_done_ >= sims_planned_) {
      throw std::logic_error("select: all " + std::to_string(sims_planned_) + " simulations of this search are done");
    }
    pool_.parallel_for(tree_.batch_size(), [&](int64_t lo, int64_t hi) { select_range(lo, hi, out, rows); });
    pending_ = true;
  }

  // Creates the selected leaves from the network's outputs for them (reward, discount, value [B],
  // logits [B, A]) and backs the values up. Outputs for roots whose leaf is an existing node are
  // checked but not used.
  void expand_and_backup(const FloatRows& reward, const FloatRows& discount, const FloatRows& logits,
                         const FloatRows& value) {
    check_outputs(reward, discount, logits, value);
    const int B = tree_.batch_size();
    pool_.parallel_for(B, [&](int64_t lo, int64_t hi) { expand_range(lo, hi, reward, discount, logits, value); });
    pending_ = false;
    ++sims_done_;
  }

  // expand_and_backup, then, if simulations remain, select for the next one: one hand-off to the
  // threads instead of two, and each thread selects in the trees it just backed up (still in its
  // cache). Returns whether a selection was made.
  bool expand_and_select(const FloatRows& reward, const FloatRows& discount, const FloatRows& logits,
                         const FloatRows& value, const Selection& out, const PoolRows& rows) {
    check_outputs(reward, discount, logits, value);
    const bool more = sims_done_ + 1 < sims_planned_;
    pool_.parallel_for(tree_.batch_size(), [&](int64_t lo, int64_t hi) {
      expand_range(lo, hi, reward, discount, logits, value);
      if (more) select_range(lo, hi, out, rows);
    });
    pending_ = more;
    ++sims_done_;
    return more;
  }

  // Root statistics: visit counts and Q [B, A] (Q 0 where unvisited), values [B].
  void summary(int32_t* visit_counts, double* qvalues, double* values) const {
    const int B = tree_.batch_size(), A = tree_.num_actions();
    for (int b = 0; b < B; ++b) {
      const int32_t* n = tree_.child_visits(b, 0);
      const double* q = tree_.child_q(b, 0);
      const bool empty = tree_.num_nodes(b) == 0;  // rerooted at a child never expanded
      for (int a = 0; a < A; ++a) {
        visit_counts[static_cast<size_t>(b) * A + a] = empty ? 0 : n[a];
        qvalues[static_cast<size_t>(b) * A + a] = !empty && n[a] > 0 ? q[a] : 0.0;
      }
      values[b] = tree_.num_nodes(b) > 0 ? tree_.value(b, 0) : 0.0;
    }
  }

  // MuZero's decision: action weights = visit shares; the action is the most visited one
  // (temperature 0) or drawn in proportion to visits^(1 / temperature).
  void decide_muzero(double temperature, int64_t* actions, double* weights) {
    if (!(temperature >= 0.0) || !std::isfinite(temperature)) throw std::invalid_argument("temperature: expected a finite number >= 0");
    require_searched(Rule::kMuZero);
    const int A = tree_.num_actions();
    pool_.parallel_for(tree_.batch_size(), [&](int64_t lo, int64_t hi) {
      std::vector<double> w(A);
      for (int b = static_cast<int>(lo); b < hi; ++b) {
        const int32_t* n = tree_.child_visits(b, 0);
        const uint8_t* valid = tree_.root_valid(b);
        int64_t total = 0;
        int best = -1;
        for (int a = 0; a < A; ++a) {
          if (!valid[a]) continue;
          total += n[a];
          if (best < 0 || n[a] > n[best]) best = a;
        }
        double* out = weights + static_cast<size_t>(b) * A;
        for (int a = 0; a < A; ++a) out[a] = valid[a] && total > 0 ? static_cast<double>(n[a]) / total : 0.0;
        if (temperature == 0.0 || total == 0) {
          actions[b] = best;
          continue;
        }
        double sum = 0.0;
        for (int a = 0; a < A; ++a) {
          w[a] = valid[a] ? std::pow(static_cast<double>(n[a]) / n[best], 1.0 / temperature) : 0.0;
          sum += w[a];
        }
        double u = rngs_[b].uniform() * sum;
        int pick = best;
        for (int a = 0; a < A; ++a) {
          if (w[a] <= 0.0) continue;
          pick = a;
          if (u < w[a]) break;
          u -= w[a];
        }
        actions[b] = pick;
      }
    });
  }

  // Gumbel MuZero's decision: among the most visited considered actions, argmax of gumbel +
  // logits + sigma(completed Q); weights = softmax(logits + sigma(completed Q)) over valid actions.
  void decide_gumbel(int64_t* actions, double* weights) {
    require_searched(Rule::kGumbel);
    const int A = tree_.num_actions();
    pool_.parallel_for(tree_.batch_size(), [&](int64_t lo, int64_t hi) {
      std::vector<double> sigma(A);
      for (int b = static_cast<int>(lo); b < hi; ++b) {
        const uint8_t* valid = tree_.root_valid(b);
        const int32_t* n = tree_.child_visits(b, 0);
        const int32_t* kept = kept_visits_.data() + static_cast<size_t>(b) * A;
        int32_t target = 0;
        for (int a = 0; a < A; ++a) {
          if (valid[a]) target = std::max(target, n[a] - kept[a]);
        }
        completed_sigma(tree_, b, 0, valid, gumbel_params_, sigma.data());
        actions[b] = gumbel_root_choice(tree_, b, gumbel_.data() + static_cast<size_t>(b) * A, sigma.data(), kept,
                                        target);
        const double* l = tree_.logits(b, 0);
        softmax(A, [l, &sigma](int a) { return l[a] + sigma[a]; }, [valid](int a) { return valid[a] != 0; },
                weights + static_cast<size_t>(b) * A);
      }
    });
  }

  // Keeps, for every root b, the subtree under actions[b]. old_ids [capacity, B] receives, at
  // [k, b], the old id of the node that is now node k (k < kept[b]) and k itself elsewhere, so an
  // embedding pool [nodes, B, ...] follows with one gather. kept[b] = 0: that child was never
  // expanded and root b needs a new root.
  void reroot(const int64_t* actions, int64_t* old_ids, int32_t* kept) { reroot(actions, nullptr, old_ids, kept); }

  // reroot for either kind of tree. A stochastic tree needs `outcomes` [B] and moves two levels
  // down, to the decision node reached by actions[b] and then outcomes[b]: the next state once the
  // environment has drawn its outcome. kept[b] = 0 where either edge was never expanded.
  void reroot(const int64_t* actions, const int64_t* outcomes, int64_t* old_ids, int32_t* kept) {
    const int B = tree_.batch_size(), A = decision_actions_, C = chance_outcomes_;
    if (pending_) throw std::logic_error("subtree: a selection is waiting for expand_and_backup");
    if ((outcomes != nullptr) != (C > 0)) {
      throw std::logic_error(C > 0 ? "subtree: a stochastic tree needs the chance outcomes that followed the actions"
                                   : "subtree: chance outcomes given for a tree without chance nodes");
    }
    auto in_range = [](const int64_t* v, int64_t n, const char* name, int b) {
      if (v[b] < 0 || v[b] >= n) {
        throw std::invalid_argument(std::string(name) + ": expected values in [0, " + std::to_string(n) + "), got " +
                                    std::to_string(v[b]) + " for root " + std::to_string(b));
      }
    };
    for (int b = 0; b < B; ++b) {
      if (tree_.num_nodes(b) == 0) throw std::invalid_argument("subtree: root " + std::to_string(b) + " has no tree");
      in_range(actions, A, "actions", b);
      if (outcomes != nullptr) in_range(outcomes, C, "chance_outcomes", b);
    }
    const int64_t capacity = tree_.capacity();
    pool_.parallel_for(B, [&](int64_t lo, int64_t hi) {
      for (int b = static_cast<int>(lo); b < hi; ++b) {
        for (int64_t k = 0; k < capacity; ++k) old_ids[k * B + b] = k;
        int32_t start = tree_.children(b, 0)[actions[b]];
        if (outcomes != nullptr && start != kNoNode) start = tree_.children(b, start)[outcomes[b]];
        kept[b] = tree_.reroot_at(b, start,
                                  [&](int32_t k, int32_t old) { old_ids[static_cast<int64_t>(k) * B + b] = old; });
      }
    });
    rule_ = Rule::kNone;
  }

 private:
  static int checked(int value, const char* name) {
    if (value < 1) throw std::invalid_argument(std::string(name) + ": expected at least 1, got " + std::to_string(value));
    return value;
  }

  static int non_negative(int value, const char* name) {
    if (value < 0) throw std::invalid_argument(std::string(name) + ": expected at least 0, got " + std::to_string(value));
    return value;
  }

  // A number as %.17g: std::to_string prints 1e308 with 309 digits and 1e-300 as 0.000000.
  static std::string number(double v) {
    char text[32];
    std::snprintf(text, sizeof text, "%.17g", v);
    return text;
  }

  // A search parameter: finite, in [low, 2^64].
  static void check_parameter(double v, double low, const char* name) {
    if (!(v >= low && v <= kMaxMagnitude)) {
      throw std::invalid_argument(std::string(name) + ": expected a number in [" + (low == 0.0 ? "0" : "-2**64") +
                                  ", 2**64], got " + number(v));
    }
  }

  // A root without a valid action has nothing to search (a finished game): refused for every
  // policy alike, naming all such roots, rather than searched to a made-up action.
  void check_some_valid(const uint8_t* invalid) const {
    if (invalid == nullptr) return;
    const int B = tree_.batch_size(), A = tree_.num_actions();
    std::string rows;
    int count = 0;
    for (int b = 0; b < B; ++b) {
      const uint8_t* inv = invalid + static_cast<size_t>(b) * A;
      if (std::find(inv, inv + A, uint8_t{0}) != inv + A) continue;
      if (count < 8) rows += (count ? ", " : "") + std::to_string(b);
      ++count;
    }
    if (count == 0) return;
    if (count > 8) rows += ", ... (" + std::to_string(count) + " roots)";
    throw std::invalid_argument("invalid_actions: expected a valid action at every root, got root(s) [" + rows +
                                "] with every action invalid (a finished game has nothing to search: leave it out "
                                "of the batch)");
  }

  // The transform's numbers: the bounds within the accepted magnitudes and apart by at least 2^-64,
  // so that (Q - min) / (max - min) stays finite for every Q a search can hold; epsilon likewise.
  static void check_transform(const QTransform& t) {
    if (t.kind == QTransformKind::kParentAndSiblings && !(t.epsilon >= kMinPbCBase && t.epsilon <= kMaxMagnitude)) {
      throw std::invalid_argument("qtransform.epsilon: expected a number in [2**-64, 2**64], got " + number(t.epsilon));
    }
    if (t.kind == QTransformKind::kMinMax) {
      check_parameter(t.min_value, -kMaxMagnitude, "qtransform.min_value");
      check_parameter(t.max_value, -kMaxMagnitude, "qtransform.max_value");
      if (!(t.max_value - t.min_value >= kMinPbCBase)) {
        throw std::invalid_argument("qtransform.max_value: expected at least min_value + 2**-64, got min_value " +
                                    number(t.min_value) + " and max_value " + number(t.max_value));
      }
    }
  }

  // Refuses a row of B numbers unless every |x| <= limit (NaN and inf fail too), naming the
  // field, the offending rows (roots) and the first offending number. Rows with skip[b] set (kept
  // roots) are not read. One branch-free pass decides (this runs on every simulation).
  static void check_magnitudes(const FloatRows& x, int B, double limit, const char* name,
                               const uint8_t* skip = nullptr) {
    const bool fine = x.visit([&](const auto* row) {
      bool bad = false;
      for (int b = 0; b < B; ++b) bad |= !(std::fabs(static_cast<double>(row[b])) <= limit) & (skip == nullptr || !skip[b]);
      return !bad;
    });
    if (fine) return;
    std::string rows;
    double first = 0.0;
    int count = 0;
    for (int b = 0; b < B; ++b) {
      if (std::fabs(x[b]) <= limit || (skip != nullptr && skip[b])) continue;
      if (count == 0) first = x[b];
      if (count < 8) rows += (count ? ", " : "") + std::to_string(b);
      ++count;
    }
    if (count > 8) rows += ", ... (" + std::to_string(count) + " rows)";
    throw std::invalid_argument(std::string(name) + ": expected finite numbers with |" + name + "| <= " +
                                (limit == 1.0 ? "1" : "2**64") + ", got " + number(first) + " at row(s) [" + rows +
                                "] (the root(s) of the batch)");
  }

  // Logits may be -inf (probability 0) but not NaN or +inf, and need a finite entry among the
  // allowed actions so that the softmax is defined. One branch-free pass finds out whether the row
  // is fine (this runs on every output of every simulation); a second pass words the error.
  void check_logits(const FloatRows& logits, size_t offset, const uint8_t* invalid, const char* name, int b) const {
    const int A = tree_.num_actions();
    const bool fine = logits.visit([&](const auto* row) {
      bool bad = false, any_finite = false;
      for (int a = 0; a < A; ++a) {
        const double l = row[offset + a];
        const bool allowed = invalid == nullptr || invalid[a] == 0;
        bad |= (l != l) | (l == std::numeric_limits<double>::infinity());
        any_finite |= allowed & (l > -std::numeric_limits<double>::infinity());
      }
      return !bad && any_finite;
    });
    if (fine) return;
    for (int a = 0; a < A; ++a) {
      const double l = logits[offset + a];
      if (std::isnan(l) || l == std::numeric_limits<double>::infinity()) {
        throw std::invalid_argument(std::string(name) + ": expected no NaN or +inf, got " + number(l) +
                                    " for root " + std::to_string(b) + ", action " + std::to_string(a));
      }
    }
    throw std::invalid_argument(std::string(name) + ": expected a finite logit for some allowed action of root " +
                                std::to_string(b));
  }

  // A kept root keeps its own logits (the kept node's), so the new mask must leave it an action
  // of finite logit: otherwise its priors, Gumbel's logits and weights would be NaN.
  void check_kept_logits(int b, const uint8_t* invalid) const {
    const double* l = tree_.logits(b, 0);
    for (int a = 0; a < tree_.num_actions(); ++a) {
      if ((invalid == nullptr || invalid[a] == 0) && l[a] > -std::numeric_limits<double>::infinity()) return;
    }
    throw std::invalid_argument("invalid_actions: expected a valid action of finite prior logit at every kept root, "
                                "got root " + std::to_string(b) +
                                " whose valid actions all have prior logit -inf in its kept node");
  }

  void check_begin(int max_depth, int num_simulations) const {
    if (num_simulations < 1) {
      throw std::invalid_argument("num_simulations: expected at least 1, got " + std::to_string(num_simulations));
    }
    if (pending_) throw std::logic_error("a selection is waiting for expand_and_backup");
    if (max_depth < 0) throw std::invalid_argument("max_depth: expected at least 1 (or None), got " + std::to_string(max_depth));
    for (int b = 0; b < tree_.batch_size(); ++b) {
      if (tree_.num_nodes(b) == 0) throw std::invalid_argument("root " + std::to_string(b) + " is not set (call set_roots)");
      // Visit counts are int32; a kept root grows by up to one visit per simulation.
      if (static_cast<int64_t>(tree_.visits(b, 0)) + num_simulations > kMaxVisits) {
        throw std::invalid_argument("num_simulations: expected at most " +
                                    std::to_string(kMaxVisits - tree_.visits(b, 0)) + " (root " + std::to_string(b) +
                                    " keeps " + std::to_string(tree_.visits(b, 0)) +
                                    " visits and counts stay below 2**31), got " + std::to_string(num_simulations));
      }
      if (static_cast<int64_t>(tree_.num_nodes(b)) + num_simulations > tree_.capacity()) {
        throw std::invalid_argument("num_simulations: " + std::to_string(num_simulations) + " new nodes do not fit root " +
                                    std::to_string(b) + "'s tree (capacity " + std::to_string(tree_.capacity()) + ", " +
                                    std::to_string(tree_.num_nodes(b)) + " nodes kept)");
      }
    }
  }

  void start(Rule rule, int max_depth, int num_simulations) {
    rule_ = rule;
    max_depth_ = max_depth;
    sims_planned_ = num_simulations;
    sims_done_ = 0;
  }

  void require_searched(Rule rule) const {
    if (rule_ != rule) throw std::logic_error("decide: no search of this kind was begun on these roots");
    if (pending_) throw std::logic_error("decide: a selection is waiting for expand_and_backup");
  }

  // The model's outputs for the pending selection, checked before anything changes.
  void check_outputs(const FloatRows& reward, const FloatRows& discount, const FloatRows& logits,
                     const FloatRows& value) const {
    if (!pending_) throw std::logic_error("expand_and_backup: call select first");
    const int B = tree_.batch_size(), A = tree_.num_actions();
    check_magnitudes(reward, B, kMaxMagnitude, "reward");
    check_magnitudes(discount, B, 1.0, "discount");
    check_magnitudes(value, B, kMaxMagnitude, "value");
    for (int b = 0; b < B; ++b) check_logits(logits, static_cast<size_t>(b) * A, nullptr, "prior_logits", b);
  }

  // Creates the pending leaves of roots [lo, hi) and backs their values up.
  void expand_range(int64_t lo, int64_t hi, const FloatRows& reward, const FloatRows& discount,
                    const FloatRows& logits, const FloatRows& value) {
    const int A = tree_.num_actions();
    // Only the tree-wide transform reads the bounds.
    const bool track = rule_ == Rule::kMuZero && transform_.kind == QTransformKind::kTreeMinMax;
    for (int b = static_cast<int>(lo); b < hi; ++b) {
      int32_t leaf = leaf_[b];
      double g;
      if (leaf == kNoNode) {
        leaf = tree_.add_child(b, parent_[b], action_[b], reward[b], discount[b], logits, static_cast<size_t>(b) * A,
                               value[b]);
        g = value[b];
      } else {
        g = tree_.revisit(b, leaf);
      }
      MinMax& mm = min_max_[b];
      if (track) {
        tree_.backup(b, leaf, g, [&mm](double q) { mm.update(q); });
      } else {
        tree_.backup(b, leaf, g, [](double) {});
      }
    }
  }

  // Selects the leaves of roots [lo, hi) and writes them to the outputs.
  void select_range(int64_t lo, int64_t hi, const Selection& out, const PoolRows& rows) {
    const int B = tree_.batch_size();
    std::vector<double> work(2 * static_cast<size_t>(tree_.num_actions()) * kInterleave);
    for (int64_t first = lo; first < hi; first += kInterleave) {
      select_group(static_cast<int>(first), static_cast<int>(std::min<int64_t>(kInterleave, hi - first)), work.data());
    }
    for (int b = static_cast<int>(lo); b < hi; ++b) {
      const int32_t node = leaf_[b] == kNoNode ? tree_.num_nodes(b) : leaf_[b];
      if (out.parent) out.parent[b] = parent_[b];
      if (out.action) out.action[b] = action_[b];
      if (out.node) out.node[b] = node;
      if (out.is_new) out.is_new[b] = leaf_[b] == kNoNode;
      if (rows.gather) rows.gather[b] = static_cast<int64_t>(parent_[b]) * B + b;
      if (rows.scatter) rows.scatter[b] = static_cast<int64_t>(leaf_[b] == kNoNode ? node : tree_.capacity()) * B + b;
      if (rows.action) rows.action[b] = action_[b];
    }
  }

  // Trees walked in lockstep by one thread. A step down one tree needs the next node's record,
  // which is rarely in cache; prefetched, it arrives while the other trees of the group take their
  // step, so the misses of a group overlap instead of stalling one walk after another.
  static constexpr int kInterleave = 8;

  // Walks trees [first, first + count) to their leaves, one level of every tree per round.
  // `work` holds 2A doubles per tree.
  void select_group(int first, int count, double* work) {
    int32_t node[kInterleave];
    int depth[kInterleave];
    for (int i = 0; i < count; ++i) {
      node[i] = 0;
      depth[i] = 0;
    }
    const size_t stride = 2 * static_cast<size_t>(tree_.num_actions());
    for (int active = count; active > 0;) {
      active = 0;
      for (int i = 0; i < count; ++i) {
        if (depth[i] < 0) continue;  // this tree reached its leaf in an earlier round
        const int b = first + i;
        const int32_t x = node[i];
        const int a = choose(b, x, depth[i], work + i * stride);
        const int32_t c = tree_.children(b, x)[a];
        if (c == kNoNode || (max_depth_ > 0 && depth[i] + 1 >= max_depth_)) {
          parent_[b] = x;
          action_[b] = a;
          leaf_[b] = c;
          // The new node's record is written by expand_and_backup: fetch it now, while the caller
          // evaluates the model.
          if (c == kNoNode) tree_.prefetch(b, tree_.num_nodes(b), true, true);
          depth[i] = -1;
          continue;
        }
        tree_.prefetch(b, c, rule_ == Rule::kGumbel);
        node[i] = c;
        ++depth[i];
        ++active;
      }
    }
  }

  // The action the search's rule takes at node x of tree b, at the given depth (0: the root).
  int choose(int b, int32_t x, int depth, double* work) const {
    if (chance_outcomes_ > 0 && tree_.is_chance(b, x)) return chance_select(tree_, b, x, chance_outcomes_);
    if (rule_ == Rule::kMuZero) {
      const uint8_t* interior = interior_valid_.empty() ? nullptr : interior_valid_.data();
      return puct_select(tree_, b, x, depth == 0 ? tree_.root_valid(b) : interior, min_max_[b], transform_,
                         exploration_, work);
    }
    if (depth > 0) return gumbel_interior_select(tree_, b, x, gumbel_params_, work);
    const int A = tree_.num_actions();
    const uint8_t* valid = tree_.root_valid(b);
    const int32_t* n = tree_.child_visits(b, 0);
    const int32_t* kept = kept_visits_.data() + static_cast<size_t>(b) * A;
    int considered = 0;
    int64_t simulation = 0;
    for (int i = 0; i < A; ++i) {
      considered += valid[i];
      simulation += n[i] - kept[i];
    }
    considered = std::min(considered, gumbel_params_.max_num_considered_actions);
    completed_sigma(tree_, b, 0, valid, gumbel_params_, work);
    return gumbel_root_choice(tree_, b, gumbel_.data() + static_cast<size_t>(b) * A, work, kept,
                              halving_.target(considered, static_cast<int>(simulation)));
  }

  TreeBatch tree_;
  int decision_actions_, chance_outcomes_;
  // Stochastic trees wider than A: the edges interior decision nodes may choose (the first A).
  std::vector<uint8_t> interior_valid_;
  ThreadPool pool_;
  std::vector<Rng> rngs_;
  std::vector<MinMax> min_max_;
  std::vector<double> gumbel_;
  // Root visit counts [B, A] when the Gumbel search began (non-zero for kept roots): sequential
  // halving counts the visits this search adds.
  std::vector<int32_t> kept_visits_;
  ExplorationTable exploration_;
  QTransform transform_;
  GumbelParams gumbel_params_;
  HalvingTable halving_;
  Rule rule_ = Rule::kNone;
  int max_depth_ = 0;
  int sims_planned_ = 0;
  int sims_done_ = 0;
  bool pending_ = false;
  std::vector<int32_t> parent_, action_, leaf_;
};

}  // namespace pymbrl::mcts
