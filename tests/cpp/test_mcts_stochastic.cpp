#include "pymbrl/mcts/stochastic.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "pymbrl/mcts/chance.h"
#include "pymbrl/rng.h"

namespace {

using pymbrl::mcts::ChanceRows;
using pymbrl::mcts::DecisionRows;
using pymbrl::mcts::FloatRows;
using pymbrl::mcts::kNoNode;
using pymbrl::mcts::LeafRows;
using pymbrl::mcts::PuctParams;
using pymbrl::mcts::Search;
using pymbrl::mcts::StochasticSearch;
using pymbrl::mcts::StochasticSelection;
using pymbrl::mcts::TreeBatch;

constexpr double kMinusInf = -std::numeric_limits<double>::infinity();

// A chance node (node 1, under the root's action 0) of a stochastic tree of width 4 whose first
// three outcomes have the given logits.
TreeBatch chance_tree(const std::vector<double>& outcome_logits) {
  TreeBatch tree(1, 4, 200, true);
  const std::vector<double> root_logits(4, 0.0);
  tree.set_root(0, FloatRows{nullptr, root_logits.data()}, 0, 0.0, nullptr);
  std::vector<double> logits(outcome_logits);
  logits.resize(4, kMinusInf);
  tree.add_child(0, 0, 0, 0.0, 1.0, FloatRows{nullptr, logits.data()}, 0, 0.0);
  return tree;
}

// Visits chance node 1 `n` times by chance_select over its first 3 outcomes, expanding or revisiting
// the chosen outcome's decision node and backing up; returns the outcomes in the order chosen.
std::vector<int> visit_outcomes(TreeBatch& tree, int n) {
  std::vector<int> order;
  const std::vector<double> logits(4, 0.0);
  for (int i = 0; i < n; ++i) {
    const int c = pymbrl::mcts::chance_select(tree, 0, 1, 3);
    order.push_back(c);
    int32_t child = tree.children(0, 1)[c];
    double g;
    if (child == kNoNode) {
      child = tree.add_child(0, 1, c, 0.0, 1.0, FloatRows{nullptr, logits.data()}, 0, 0.0);
      g = 0.0;
    } else {
      g = tree.revisit(0, child);
    }
    tree.backup(0, child, g, [](double) {});
  }
  return order;
}

TEST(MctsChance, NodeKindsAlternateInAStochasticTree) {
  TreeBatch tree = chance_tree({0.0, 0.0, 0.0});
  visit_outcomes(tree, 3);
  EXPECT_FALSE(tree.is_chance(0, 0));
  EXPECT_TRUE(tree.is_chance(0, 1));
  for (int32_t x = 2; x < tree.num_nodes(0); ++x) EXPECT_FALSE(tree.is_chance(0, x));
  TreeBatch plain(1, 2, 4);
  const std::vector<double> logits(2, 0.0);
  plain.set_root(0, FloatRows{nullptr, logits.data()}, 0, 0.0, nullptr);
  plain.add_child(0, 0, 1, 0.0, 1.0, FloatRows{nullptr, logits.data()}, 0, 0.0);
  EXPECT_FALSE(plain.is_chance(0, 1));
}

TEST(MctsChance, EqualPriorsAreVisitedInTurnLowestFirst) {
  TreeBatch tree = chance_tree({0.0, 0.0, 0.0});
  EXPECT_EQ(visit_outcomes(tree, 7), (std::vector<int>{0, 1, 2, 0, 1, 2, 0}));
}

TEST(MctsChance, VisitsFollowTheOutcomeProbabilities) {
  // P = (0.5, 0.3, 0.2) and an impossible fourth outcome beyond C.
  TreeBatch tree = chance_tree({std::log(0.5), std::log(0.3), std::log(0.2)});
  const std::vector<int> order = visit_outcomes(tree, 100);
  std::vector<int> count(4, 0);
  for (size_t i = 0; i < order.size(); ++i) {
    ++count[order[i]];
    // At every step each outcome's share is within one visit of its probability.
    const double n = static_cast<double>(i + 1);
    EXPECT_LE(std::fabs(count[0] - 0.5 * n), 1.0) << i;
    EXPECT_LE(std::fabs(count[1] - 0.3 * n), 1.0) << i;
    EXPECT_LE(std::fabs(count[2] - 0.2 * n), 1.0) << i;
  }
  EXPECT_EQ(count[3], 0);
  // The first choices by hand: scores P / (N + 1).
  EXPECT_EQ(std::vector<int>(order.begin(), order.begin() + 5), (std::vector<int>{0, 1, 0, 2, 0}));
}

TEST(MctsChance, OutcomesOfProbabilityZeroAreNeverChosen) {
  TreeBatch tree = chance_tree({kMinusInf, 1.0, kMinusInf});
  const std::vector<int> order = visit_outcomes(tree, 20);
  for (int c : order) EXPECT_EQ(c, 1);
}

// A deterministic stochastic model: node embeddings are hashes of their path; the decision function
// gives C chance logits and an afterstate value, the chance function reward, discount, A logits, value.
class StochasticDriver {
 public:
  StochasticDriver(StochasticSearch& s, float discount = 0.9f)
      : s_(s),
        B_(s.search().tree().batch_size()),
        A_(s.num_actions()),
        C_(s.num_chance_outcomes()),
        discount_(discount),
        embedding_(static_cast<size_t>(B_) * (s.search().tree().capacity() + 1)),
        roots_(2 * static_cast<size_t>(B_)),
        gather_(2 * static_cast<size_t>(B_)),
        scatter_(2 * static_cast<size_t>(B_)),
        edge_(2 * static_cast<size_t>(B_)) {}

  void set_roots(uint64_t seed, const std::vector<uint8_t>* invalid = nullptr) {
    pymbrl::Rng rng(seed);
    std::vector<float> logits(static_cast<size_t>(B_) * A_), values(B_);
    for (float& x : logits) x = static_cast<float>(2.0 * rng.uniform() - 1.0);
    for (float& x : values) x = static_cast<float>(2.0 * rng.uniform() - 1.0);
    s_.set_roots(FloatRows{logits.data(), nullptr}, FloatRows{values.data(), nullptr},
                 invalid ? invalid->data() : nullptr, nullptr);
    for (int b = 0; b < B_; ++b) embedding_[b] = 1000 + b;
  }

  StochasticSelection selection() {
    return StochasticSelection{LeafRows{roots_.data(), gather_.data(), scatter_.data(), edge_.data()},
                               LeafRows{roots_.data() + B_, gather_.data() + B_, scatter_.data() + B_,
                                        edge_.data() + B_}};
  }

  // Evaluates the selection's rows into the output buffers.
  void evaluate() {
    const int nd = s_.decision_count(), nc = s_.chance_count();
    chance_logits_.assign(static_cast<size_t>(nd) * C_, 0.0f);
    afterstate_value_.assign(nd, 0.0f);
    reward_.assign(nc, 0.0f);
    discount_out_.assign(nc, discount_);
    prior_logits_.assign(static_cast<size_t>(nc) * A_, 0.0f);
    value_.assign(nc, 0.0f);
    for (int i = 0; i < nd; ++i) {
      const uint64_t e = embedding_[gather_[i]];
      pymbrl::Rng rng(pymbrl::derive_seed(e, static_cast<uint64_t>(edge_[i]) + 1));
      for (int c = 0; c < C_; ++c) chance_logits_[static_cast<size_t>(i) * C_ + c] = static_cast<float>(2 * rng.uniform() - 1);
      afterstate_value_[i] = static_cast<float>(2 * rng.uniform() - 1);
      embedding_[scatter_[i]] = pymbrl::derive_seed(e, static_cast<uint64_t>(edge_[i]) + 7);
    }
    for (int i = 0; i < nc; ++i) {
      const uint64_t e = embedding_[gather_[B_ + i]];
      pymbrl::Rng rng(pymbrl::derive_seed(e, static_cast<uint64_t>(edge_[B_ + i]) + 100));
      reward_[i] = static_cast<float>(2 * rng.uniform() - 1);
      for (int a = 0; a < A_; ++a) prior_logits_[static_cast<size_t>(i) * A_ + a] = static_cast<float>(2 * rng.uniform() - 1);
      value_[i] = static_cast<float>(2 * rng.uniform() - 1);
      embedding_[scatter_[B_ + i]] = pymbrl::derive_seed(e, static_cast<uint64_t>(edge_[B_ + i]) + 200);
    }
  }

  DecisionRows decision() const { return DecisionRows{f(chance_logits_), f(afterstate_value_)}; }
  ChanceRows chance() const { return ChanceRows{f(reward_), f(discount_out_), f(prior_logits_), f(value_)}; }

  void run(int simulations) {
    s_.select(selection());
    for (int i = 0; i < simulations; ++i) {
      evaluate();
      s_.expand_and_select(decision(), chance(), selection());
    }
  }

  // Follows a reroot's id map.
  void permute(const std::vector<int64_t>& old_ids) {
    std::vector<uint64_t> moved(embedding_);
    for (size_t k = 0; k < old_ids.size(); ++k) moved[k] = embedding_[static_cast<size_t>(old_ids[k]) * B_ + k % B_];
    embedding_ = moved;
  }

  std::vector<float>& chance_logits() { return chance_logits_; }
  std::vector<float>& discount() { return discount_out_; }

 private:
  static FloatRows f(const std::vector<float>& v) { return FloatRows{v.data(), nullptr}; }

  StochasticSearch& s_;
  int B_, A_, C_;
  float discount_;
  std::vector<uint64_t> embedding_;  // both kinds, by pool row node * B + b
  std::vector<int64_t> roots_, gather_, scatter_, edge_;
  std::vector<float> chance_logits_, afterstate_value_, reward_, discount_out_, prior_logits_, value_;
};

struct Outcome {
  std::vector<int32_t> counts;
  std::vector<double> q, value, weights;
  std::vector<int64_t> actions;
  bool operator==(const Outcome& o) const {
    return counts == o.counts && q == o.q && value == o.value && weights == o.weights && actions == o.actions;
  }
};

Outcome result(StochasticSearch& s, double temperature) {
  const int B = s.search().tree().batch_size(), A = s.num_actions();
  Outcome r{std::vector<int32_t>(static_cast<size_t>(B) * A), std::vector<double>(static_cast<size_t>(B) * A),
            std::vector<double>(B), std::vector<double>(static_cast<size_t>(B) * A), std::vector<int64_t>(B)};
  s.summary(r.counts.data(), r.q.data(), r.value.data());
  s.decide(temperature, r.actions.data(), r.weights.data());
  return r;
}

Outcome search(int threads, uint64_t seed, int A = 3, int C = 5, int S = 40, double pb_c_init = 1.25) {
  const int B = 11;
  StochasticSearch s(B, A, C, S + 1, threads);
  StochasticDriver d(s);
  d.set_roots(3);
  s.begin(PuctParams{pb_c_init, 19652.0}, 0.3, 0.25, 0, S, seed);
  d.run(S);
  return result(s, 1.0);
}

TEST(MctsStochastic, ResultsDependOnTheSeedOnlyNotOnThreads) {
  const Outcome one = search(1, 5);
  for (int threads : {2, 4}) EXPECT_TRUE(one == search(threads, 5)) << threads;
  EXPECT_FALSE(one == search(1, 6));
}

TEST(MctsStochastic, EveryNodeAlternatesKindAndEveryEdgeStaysInItsRange) {
  for (const auto& [A, C, pb_c_init] : std::vector<std::tuple<int, int, double>>{{3, 7, 1.25}, {3, 7, -2.0},
                                                                                  {6, 2, 1.25}, {6, 2, -2.0}}) {
    const int B = 4, S = 60;
    StochasticSearch s(B, A, C, S + 1, 1);
    StochasticDriver d(s);
    d.set_roots(1);
    // A negative exploration constant makes unvisited edges score below 0: the edges beyond a
    // node's width (score 0) would win if they were not excluded.
    s.begin(PuctParams{pb_c_init, 19652.0}, 0.3, 0.0, 0, S, 1);
    d.run(S);
    const TreeBatch& tree = s.search().tree();
    EXPECT_EQ(tree.num_actions(), std::max(A, C));
    for (int b = 0; b < B; ++b) {
      EXPECT_EQ(tree.num_nodes(b), S + 1);
      EXPECT_FALSE(tree.is_chance(b, 0));
      for (int32_t x = 1; x < tree.num_nodes(b); ++x) {
        const int32_t p = tree.parent(b, x);
        EXPECT_NE(tree.is_chance(b, x), tree.is_chance(b, p));
        EXPECT_LT(tree.action_from_parent(b, x), tree.is_chance(b, p) ? C : A);
        if (tree.is_chance(b, x)) {
          EXPECT_EQ(tree.reward(b, x), 0.0);
          EXPECT_EQ(tree.discount(b, x), 1.0);
        }
      }
    }
  }
}

TEST(MctsStochastic, TwoLevelRerootKeepsTheDecisionGrandchild) {
  const int B = 3, A = 2, C = 3, S = 40;
  StochasticSearch s(B, A, C, 100, 2);
  StochasticDriver d(s);
  d.set_roots(7);
  s.begin(PuctParams{}, 0.3, 0.0, 0, S, 1);
  d.run(S);
  const TreeBatch& tree = s.search().tree();
  // Every root moves along its most visited action and its last expanded outcome.
  std::vector<int64_t> actions(B), outcomes(B);
  for (int b = 0; b < B; ++b) {
    const int32_t* n = tree.child_visits(b, 0);
    actions[b] = n[1] > n[0] ? 1 : 0;
    const int32_t after = tree.children(b, 0)[actions[b]];
    for (int c = 0; c < C; ++c) {
      if (tree.children(b, after)[c] != kNoNode) outcomes[b] = c;
    }
  }
  struct Snapshot {
    int32_t visits;
    double value_sum;
    bool chance;
  };
  std::vector<std::vector<Snapshot>> before(B);
  std::vector<int32_t> start(B);
  for (int b = 0; b < B; ++b) {
    for (int32_t x = 0; x < tree.num_nodes(b); ++x) {
      before[b].push_back({tree.visits(b, x), tree.value_sum(b, x), tree.is_chance(b, x)});
    }
    start[b] = tree.children(b, tree.children(b, 0)[actions[b]])[outcomes[b]];
    ASSERT_NE(start[b], kNoNode);
  }
  std::vector<int64_t> old_ids(static_cast<size_t>(100) * B);
  std::vector<int32_t> kept(B);
  s.reroot(actions.data(), outcomes.data(), old_ids.data(), kept.data());
  for (int b = 0; b < B; ++b) {
    EXPECT_GT(kept[b], 1);
    EXPECT_EQ(kept[b], tree.num_nodes(b));
    EXPECT_EQ(old_ids[b], start[b]);  // node 0 was the grandchild
    EXPECT_FALSE(tree.is_chance(b, 0));
    EXPECT_EQ(tree.reward(b, 0), 0.0);
    EXPECT_EQ(tree.discount(b, 0), 1.0);
    for (int32_t k = 0; k < kept[b]; ++k) {
      const Snapshot& old = before[b][old_ids[static_cast<size_t>(k) * B + b]];
      EXPECT_EQ(tree.visits(b, k), old.visits);
      EXPECT_EQ(tree.value_sum(b, k), old.value_sum);
      EXPECT_EQ(tree.is_chance(b, k), old.chance);
      if (k > 0) {
        EXPECT_LT(tree.parent(b, k), k);
      }
    }
  }
  // The kept trees continue from their statistics.
  d.permute(old_ids);
  const std::vector<uint8_t> keep(B, 1);
  std::vector<float> logits(static_cast<size_t>(B) * A, 0.0f), values(B, 0.0f);
  s.set_roots(FloatRows{logits.data(), nullptr}, FloatRows{values.data(), nullptr}, nullptr, keep.data());
  s.begin(PuctParams{}, 0.3, 0.0, 0, 10, 2);
  d.run(10);
  for (int b = 0; b < B; ++b) EXPECT_EQ(tree.visits(b, 0), before[b][start[b]].visits + 10);
}

TEST(MctsStochastic, RerootThroughAnUnexpandedOutcomeEmptiesTheTree) {
  // One simulation expands only the chance node under the root's chosen action.
  StochasticSearch s(2, 2, 3, 10, 1);
  StochasticDriver d(s);
  d.set_roots(1);
  s.begin(PuctParams{}, 0.3, 0.0, 0, 1, 1);
  d.run(1);
  std::vector<int64_t> actions(2), outcomes{0, 1}, old_ids(20);
  std::vector<int32_t> kept(2, -1);
  for (int b = 0; b < 2; ++b) actions[b] = s.search().tree().children(b, 0)[0] != kNoNode ? 0 : 1;
  s.reroot(actions.data(), outcomes.data(), old_ids.data(), kept.data());
  EXPECT_EQ(kept, (std::vector<int32_t>{0, 0}));
}

TEST(MctsStochastic, WrongRerootsAndRulesAreRefused) {
  StochasticSearch s(2, 2, 3, 30, 1);
  StochasticDriver d(s);
  d.set_roots(1);
  s.begin(PuctParams{}, 0.3, 0.0, 0, 5, 1);
  d.run(5);
  std::vector<int64_t> actions{0, 1}, outcomes{0, 3}, old_ids(60);
  std::vector<int32_t> kept(2);
  try {
    s.reroot(actions.data(), outcomes.data(), old_ids.data(), kept.data());
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("chance_outcomes: expected values in [0, 3), got 3 for root 1"),
              std::string::npos) << e.what();
  }
  EXPECT_EQ(s.search().tree().num_nodes(0), 6);  // nothing changed
  Search stochastic(2, 2, 10, 1, 3);
  EXPECT_THROW(stochastic.reroot(actions.data(), old_ids.data(), kept.data()), std::logic_error);  // one level
  EXPECT_THROW(stochastic.begin_gumbel(pymbrl::mcts::GumbelParams{}, 0, 5, 1), std::logic_error);
  Search plain(2, 2, 10, 1);
  EXPECT_THROW(plain.reroot(actions.data(), outcomes.data(), old_ids.data(), kept.data()), std::logic_error);
  EXPECT_THROW(StochasticSearch(2, 2, 0, 10, 1), std::invalid_argument);
  EXPECT_THROW(Search(2, 2, 10, 1, -1), std::invalid_argument);
}

TEST(MctsStochastic, BadOutputsNameTheFieldAndChangeNothing) {
  const int B = 4;
  StochasticSearch s(B, 3, 2, 30, 1);
  StochasticDriver d(s);
  d.set_roots(2);
  s.begin(PuctParams{}, 0.3, 0.0, 0, 10, 1);
  s.select(d.selection());
  ASSERT_EQ(s.decision_count(), B);  // the first simulation expands an afterstate under every root
  d.evaluate();
  d.chance_logits()[1 * 2 + 1] = std::numeric_limits<float>::quiet_NaN();
  try {
    s.expand_and_backup(d.decision(), d.chance());
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "chance_logits: expected no NaN or +inf, got nan at row(s) [1] (root(s) [1]), "
                                     "outcome 1");
  }
  for (int b = 0; b < B; ++b) EXPECT_EQ(s.search().tree().num_nodes(b), 1);
  d.chance_logits()[1 * 2 + 1] = -std::numeric_limits<float>::infinity();
  d.chance_logits()[1 * 2 + 0] = -std::numeric_limits<float>::infinity();
  EXPECT_THROW(s.expand_and_backup(d.decision(), d.chance()), std::invalid_argument);
  d.evaluate();
  s.expand_and_backup(d.decision(), d.chance());  // the same selection, now with good outputs
  for (int b = 0; b < B; ++b) EXPECT_EQ(s.search().tree().num_nodes(b), 2);
  EXPECT_THROW(s.expand_and_backup(d.decision(), d.chance()), std::logic_error);  // nothing selected
  // Discounts beyond 1 from the chance function: the rows and roots are named.
  bool tried = false;
  while (s.search().simulations_done() < 10) {
    s.select(d.selection());
    d.evaluate();
    if (s.chance_count() > 0) {
      tried = true;
      d.discount()[0] = 1.5f;
      try {
        s.expand_and_backup(d.decision(), d.chance());
        FAIL();
      } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("discount: expected finite numbers with |discount| <= 1, got 1.5 at "
                                             "row(s) [0] (root(s) ["),
                  std::string::npos) << e.what();
      }
      d.discount()[0] = 0.9f;
    }
    s.expand_and_backup(d.decision(), d.chance());
  }
  EXPECT_TRUE(tried);
}

}  // namespace
