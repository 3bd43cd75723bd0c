// Stochastic MuZero's search (Antonoglou et al., "Planning in Stochastic Environments with a
// Learned Model", ICLR 2022) over B trees, in the shapes its two model functions have.
//
// The trees are a stochastic Search's (search.h, chance.h): decision nodes and chance nodes
// (afterstates) alternate, every node has W = max(A, C) edges. Each simulation selects one leaf per
// root. A new leaf under a decision node is a chance node, evaluated by the decision function on
// the parent's state (-> chance logits [C], afterstate value, afterstate); a new leaf under a
// chance node is a decision node, evaluated by the chance function on the parent's afterstate
// (-> reward, discount, prior logits [A], value, state). select() lists the roots needing each
// function, in increasing root order, with their embedding-pool rows, so that the caller evaluates
// each function on its own rows only; the two outputs come back separately, are checked (errors
// name the field, the row and the root) and merged into the W-wide rows the Search expands.
//
// Like Search, every method checks its arguments before changing anything, and results depend on
// the seed only, never on the number of threads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/mcts/search.h"

namespace pymbrl::mcts {

// decision_recurrent_fn's outputs for the n roots a selection lists under `decision`.
struct DecisionRows {
  FloatRows chance_logits;     // [n, C]
  FloatRows afterstate_value;  // [n]
};

// chance_recurrent_fn's outputs for the n roots a selection lists under `chance`.
struct ChanceRows {
  FloatRows reward;        // [n]
  FloatRows discount;      // [n]
  FloatRows prior_logits;  // [n, A]
  FloatRows value;         // [n]
};

// The leaves one function evaluates, written by select() into caller arrays of B entries (the
// first decision_count() or chance_count() are set; null arrays are skipped). Pool rows are
// node * B + b in an embedding pool laid out [nodes, B, ...]: `gather` the parent's row (in the
// state pool for decision rows, the afterstate pool for chance rows), `scatter` the new node's row
// in the other pool.
struct LeafRows {
  int64_t* roots = nullptr;
  int64_t* gather = nullptr;
  int64_t* scatter = nullptr;
  int64_t* edge = nullptr;  // the action (decision rows) or the chance outcome (chance rows)
};

struct StochasticSelection {
  LeafRows decision;  // new chance nodes: decision_recurrent_fn(state of parent, action)
  LeafRows chance;    // new decision nodes: chance_recurrent_fn(afterstate of parent, outcome)
};

class StochasticSearch {
 public:
  StochasticSearch(int batch_size, int num_actions, int num_chance_outcomes, int capacity, int num_threads)
      : search_(batch_size, num_actions, capacity, num_threads, positive(num_chance_outcomes, "num_chance_outcomes")),
        B_(batch_size),
        A_(num_actions),
        C_(num_chance_outcomes),
        W_(search_.tree().num_actions()),
        parent_(batch_size),
        action_(batch_size),
        node_(batch_size),
        is_new_(batch_size),
        gather_(batch_size),
        scatter_(batch_size),
        decision_roots_(batch_size),
        chance_roots_(batch_size),
        reward_(batch_size, 0.0),
        discount_(batch_size, 1.0),
        value_(batch_size, 0.0),
        logits_(static_cast<size_t>(batch_size) * W_, 0.0) {}

  const Search& search() const { return search_; }
  int num_actions() const { return A_; }
  int num_chance_outcomes() const { return C_; }
  int decision_count() const { return decision_count_; }
  int chance_count() const { return chance_count_; }

  // Sets the roots (decision nodes): logits [B, A], values [B], invalid [B, A] or null, keep [B]
  // or null, as Search::set_roots.
  void set_roots(const FloatRows& logits, const FloatRows& values, const uint8_t* invalid, const uint8_t* keep) {
    if (W_ == A_) {
      search_.set_roots(logits, values, invalid, keep);
    } else {
      // The edges beyond the A actions are invalid at the root and have probability 0.
      std::vector<double> wide(static_cast<size_t>(B_) * W_, -std::numeric_limits<double>::infinity());
      std::vector<uint8_t> mask(static_cast<size_t>(B_) * W_, 1);
      for (int b = 0; b < B_; ++b) {
        const size_t from = static_cast<size_t>(b) * A_, to = static_cast<size_t>(b) * W_;
        for (int a = 0; a < A_; ++a) {
          wide[to + a] = logits[from + a];
          mask[to + a] = invalid == nullptr ? 0 : invalid[from + a];
        }
      }
      search_.set_roots(FloatRows{nullptr, wide.data()}, values, mask.data(), keep);
    }
    pending_ = false;
  }

  // Starts a search of num_simulations: MuZero's root noise and pUCT at decision nodes, the chance
  // rule at chance nodes (Search::begin_muzero on the stochastic trees).
  void begin(const PuctParams& params, double alpha, double fraction, int max_depth, int num_simulations,
             uint64_t seed, const QTransform& transform = QTransform{}) {
    search_.begin_muzero(params, alpha, fraction, max_depth, num_simulations, seed, transform);
    pending_ = false;
  }

  void select(const StochasticSelection& out) {
    search_.select(selection(), pool_rows());
    split(out);
    pending_ = true;
  }

  // Expands the selected leaves from the two functions' outputs and backs their values up.
  void expand_and_backup(const DecisionRows& decision, const ChanceRows& chance) {
    merge(decision, chance);
    search_.expand_and_backup(merged(reward_), merged(discount_), merged(logits_), merged(value_));
    pending_ = false;
  }

  // expand_and_backup, then the next selection if simulations remain (Search::expand_and_select).
  // Returns whether a selection was made.
  bool expand_and_select(const DecisionRows& decision, const ChanceRows& chance, const StochasticSelection& out) {
    merge(decision, chance);
    const bool more = search_.expand_and_select(merged(reward_), merged(discount_), merged(logits_), merged(value_),
                                                selection(), pool_rows());
    if (more) split(out);
    pending_ = more;
    return more;
  }

  // Root statistics over the A actions: visit counts and Q [B, A] (Q 0 where unvisited), values [B].
  void summary(int32_t* visit_counts, double* qvalues, double* values) const {
    if (W_ == A_) {
      search_.summary(visit_counts, qvalues, values);
      return;
    }
    std::vector<int32_t> n(static_cast<size_t>(B_) * W_);
    std::vector<double> q(static_cast<size_t>(B_) * W_);
    search_.summary(n.data(), q.data(), values);
    narrow(n.data(), visit_counts);
    narrow(q.data(), qvalues);
  }

  // MuZero's decision over the A actions: weights [B, A] = visit shares, the action most visited
  // (temperature 0) or drawn in proportion to visits^(1 / temperature).
  void decide(double temperature, int64_t* actions, double* weights) {
    if (W_ == A_) {
      search_.decide_muzero(temperature, actions, weights);
      return;
    }
    std::vector<double> w(static_cast<size_t>(B_) * W_);
    search_.decide_muzero(temperature, actions, w.data());
    narrow(w.data(), weights);
  }

  // Keeps, for every root b, the subtree of the decision node reached by actions[b] and then
  // outcomes[b] (Search::reroot); kept[b] = 0 where either edge was never expanded.
  void reroot(const int64_t* actions, const int64_t* outcomes, int64_t* old_ids, int32_t* kept) {
    search_.reroot(actions, outcomes, old_ids, kept);
  }

 private:
  static int positive(int value, const char* name) {
    if (value < 1) {
      throw std::invalid_argument(std::string(name) + ": expected at least 1, got " + std::to_string(value));
    }
    return value;
  }

  static FloatRows merged(const std::vector<double>& v) { return FloatRows{nullptr, v.data()}; }

  Selection selection() { return Selection{parent_.data(), action_.data(), node_.data(), is_new_.data()}; }
  PoolRows pool_rows() { return PoolRows{gather_.data(), scatter_.data(), nullptr}; }

  // Copies the first A of every W-wide row.
  template <typename T>
  void narrow(const T* wide, T* out) const {
    for (int b = 0; b < B_; ++b) {
      std::copy_n(wide + static_cast<size_t>(b) * W_, A_, out + static_cast<size_t>(b) * A_);
    }
  }

  // Lists the new leaves by the function that evaluates them: a leaf under a decision node is a
  // chance node (decision rows), one under a chance node a decision node (chance rows). Leaves at
  // the depth limit are existing nodes and need neither.
  void split(const StochasticSelection& out) {
    const Search& s = search_;
    int counts[2] = {0, 0};
    for (int b = 0; b < B_; ++b) {
      if (!is_new_[b]) continue;
      const int kind = s.tree().is_chance(b, parent_[b]) ? 1 : 0;
      const LeafRows& rows = kind ? out.chance : out.decision;
      const int i = counts[kind]++;
      (kind ? chance_roots_ : decision_roots_)[i] = b;
      if (rows.roots) rows.roots[i] = b;
      if (rows.gather) rows.gather[i] = gather_[b];
      if (rows.scatter) rows.scatter[i] = scatter_[b];
      if (rows.edge) rows.edge[i] = action_[b];
    }
    decision_count_ = counts[0];
    chance_count_ = counts[1];
  }

  // Checks both outputs, then writes them into the W-wide rows of their roots (logits beyond C or
  // A are -inf: probability 0). Rows of leaves at the depth limit keep earlier (checked) numbers,
  // which the Search reads past.
  void merge(const DecisionRows& d, const ChanceRows& c) {
    if (!pending_) throw std::logic_error("expand_and_backup: call select first");
    const int nd = decision_count_, nc = chance_count_;
    check_numbers(d.afterstate_value, decision_roots_, nd, kMaxMagnitude, "afterstate_value");
    check_logits(d.chance_logits, decision_roots_, nd, C_, "chance_logits", "outcome");
    check_numbers(c.reward, chance_roots_, nc, kMaxMagnitude, "reward");
    check_numbers(c.discount, chance_roots_, nc, 1.0, "discount");
    check_numbers(c.value, chance_roots_, nc, kMaxMagnitude, "value");
    check_logits(c.prior_logits, chance_roots_, nc, A_, "prior_logits", "action");
    auto put_row = [this](const FloatRows& from, int i, int width, int b) {
      double* row = logits_.data() + static_cast<size_t>(b) * W_;
      from.visit([&](const auto* p) {
        const auto* src = p + static_cast<size_t>(i) * width;
        for (int e = 0; e < width; ++e) row[e] = src[e];
      });
      std::fill(row + width, row + W_, -std::numeric_limits<double>::infinity());
    };
    for (int i = 0; i < nd; ++i) {
      const int b = decision_roots_[i];
      reward_[b] = 0.0;
      discount_[b] = 1.0;
      value_[b] = d.afterstate_value[i];
      put_row(d.chance_logits, i, C_, b);
    }
    for (int i = 0; i < nc; ++i) {
      const int b = chance_roots_[i];
      reward_[b] = c.reward[i];
      discount_[b] = c.discount[i];
      value_[b] = c.value[i];
      put_row(c.prior_logits, i, A_, b);
    }
  }

  // A number as %.17g (std::to_string prints 1e-300 as 0.000000).
  static std::string number(double v) {
    char text[32];
    std::snprintf(text, sizeof text, "%.17g", v);
    return text;
  }

  // "row(s) [i, ...] (root(s) [b, ...])" for the first 8 of the given rows.
  static std::string where(const std::vector<int>& rows, const std::vector<int32_t>& roots) {
    std::string r, b;
    for (size_t k = 0; k < rows.size() && k < 8; ++k) {
      r += (k ? ", " : "") + std::to_string(rows[k]);
      b += (k ? ", " : "") + std::to_string(roots[rows[k]]);
    }
    const std::string more = rows.size() > 8 ? ", ... (" + std::to_string(rows.size()) + " rows)" : "";
    return "row(s) [" + r + more + "] (root(s) [" + b + more + "])";
  }

  // Refuses unless |x[i]| <= limit for the n rows (NaN and inf fail too), naming the field, the
  // offending rows and their roots, and the first offending number.
  static void check_numbers(const FloatRows& x, const std::vector<int32_t>& roots, int n, double limit,
                            const char* name) {
    std::vector<int> bad;
    for (int i = 0; i < n; ++i) {
      if (!(std::fabs(x[i]) <= limit)) bad.push_back(i);
    }
    if (bad.empty()) return;
    throw std::invalid_argument(std::string(name) + ": expected finite numbers with |" + name +
                                "| <= " + (limit == 1.0 ? "1" : "2**64") + ", got " + number(x[bad[0]]) + " at " +
                                where(bad, roots));
  }

  // Logits may be -inf (probability 0) but not NaN or +inf, and each row needs a finite entry.
  void check_logits(const FloatRows& logits, const std::vector<int32_t>& roots, int n, int width, const char* name,
                    const char* entry) const {
    constexpr double kInf = std::numeric_limits<double>::infinity();
    for (int i = 0; i < n; ++i) {
      const size_t at = static_cast<size_t>(i) * width;
      bool any_finite = false;
      for (int e = 0; e < width; ++e) {
        const double l = logits[at + e];
        if (l != l || l == kInf) {
          throw std::invalid_argument(std::string(name) + ": expected no NaN or +inf, got " + number(l) + " at " +
                                      where({i}, roots) + ", " + entry + " " + std::to_string(e));
        }
        any_finite |= l > -kInf;
      }
      if (!any_finite) {
        throw std::invalid_argument(std::string(name) + ": expected a finite logit in every row, got none at " +
                                    where({i}, roots));
      }
    }
  }

  Search search_;
  int B_, A_, C_, W_;
  std::vector<int32_t> parent_, action_, node_;
  std::vector<uint8_t> is_new_;
  std::vector<int64_t> gather_, scatter_;
  // The roots of the current selection's decision and chance rows, in row order.
  std::vector<int32_t> decision_roots_, chance_roots_;
  int decision_count_ = 0, chance_count_ = 0;
  // The merged outputs, W-wide rows by root.
  std::vector<double> reward_, discount_, value_, logits_;
  bool pending_ = false;
};

}  // namespace pymbrl::mcts
