#include "pymbrl/mcts/search.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "mcts_support.h"

namespace {

using namespace mcts_test;
using pymbrl::mcts::GumbelParams;
using pymbrl::mcts::PuctParams;

struct Result {
  Summary summary;
  std::vector<int64_t> actions;
  std::vector<double> weights;
};

// A full search of S simulations on B roots with the hash model.
Result run(bool gumbel, int threads, uint64_t seed, int B = 9, int A = 5, int S = 40, int max_depth = 0,
           double fraction = 0.25, double temperature = 1.0) {
  Search s(B, A, S + 1, threads);
  Driver d(s, hash_model);
  d.set_roots(random_logits(B, A, 11), std::vector<float>(B, 0.1f));
  if (gumbel) {
    s.begin_gumbel(GumbelParams{}, max_depth, S, seed);
  } else {
    s.begin_muzero(PuctParams{}, 0.3, fraction, max_depth, S, seed);
  }
  d.run(S);
  Result r{summary(s), std::vector<int64_t>(B), std::vector<double>(static_cast<size_t>(B) * A)};
  if (gumbel) {
    s.decide_gumbel(r.actions.data(), r.weights.data());
  } else {
    s.decide_muzero(temperature, r.actions.data(), r.weights.data());
  }
  return r;
}

TEST(MctsSearch, ResultsDoNotDependOnTheNumberOfThreads) {
  for (bool gumbel : {false, true}) {
    const Result one = run(gumbel, 1, 5);
    for (int threads : {2, 3, 8}) {
      const Result many = run(gumbel, threads, 5);
      EXPECT_TRUE(one.summary == many.summary) << "gumbel " << gumbel << " threads " << threads;
      EXPECT_EQ(one.actions, many.actions);
      EXPECT_EQ(one.weights, many.weights);
    }
  }
}

TEST(MctsSearch, SameSeedSameSearchOtherSeedOtherNoise) {
  for (bool gumbel : {false, true}) {
    const Result a = run(gumbel, 1, 123), b = run(gumbel, 1, 123), c = run(gumbel, 1, 124);
    EXPECT_TRUE(a.summary == b.summary);
    EXPECT_EQ(a.actions, b.actions);
    EXPECT_FALSE(a.summary == c.summary) << "gumbel " << gumbel;
  }
}

TEST(MctsSearch, RootVisitsGrowByOnePerSimulation) {
  for (bool gumbel : {false, true}) {
    const Result r = run(gumbel, 2, 1, 6, 4, 33);
    for (int b = 0; b < 6; ++b) {
      int total = 0;
      for (int a = 0; a < 4; ++a) total += r.summary.counts[b * 4 + a];
      EXPECT_EQ(total, 33);
    }
  }
}

TEST(MctsSearch, MuZeroConcentratesOnTheRewardingAction) {
  const int B = 4, A = 6, S = 60;
  Search s(B, A, S + 1, 1);
  Driver d(s, [](int b, uint64_t parent, int action, int A) {
    Step st;
    st.reward = (parent >= 1000 && parent < 2000 && action == b + 1) ? 1.0f : 0.0f;  // only at the root
    st.discount = 0.99f;
    st.logits.assign(A, 0.0f);
    return st;
  });
  d.set_roots(std::vector<float>(B * A, 0.0f), std::vector<float>(B, 0.0f));
  s.begin_muzero(PuctParams{}, 0.3, 0.0, 0, S, 7);
  d.run(S);
  std::vector<int64_t> actions(B);
  std::vector<double> weights(B * A);
  s.decide_muzero(0.0, actions.data(), weights.data());
  for (int b = 0; b < B; ++b) {
    EXPECT_EQ(actions[b], b + 1);
    EXPECT_GT(weights[b * A + b + 1], 0.5);
  }
}

TEST(MctsSearch, InvalidRootActionsAreNeverVisitedOrChosen) {
  const int B = 5, A = 6, S = 50;
  for (bool gumbel : {false, true}) {
    Search s(B, A, S + 1, 2);
    Driver d(s, hash_model);
    std::vector<uint8_t> invalid(B * A, 0);
    for (int b = 0; b < B; ++b) {
      for (int a = 0; a < A; ++a) invalid[b * A + a] = a != b;  // root b may only take action b
    }
    invalid[4 * A + 0] = 0;  // root 4: actions 0 and 4
    d.set_roots(random_logits(B, A, 3), std::vector<float>(B, 0.0f), &invalid);
    if (gumbel) {
      s.begin_gumbel(GumbelParams{}, 0, S, 1);
    } else {
      s.begin_muzero(PuctParams{}, 0.3, 0.25, 0, S, 1);
    }
    d.run(S);
    const Summary sum = summary(s);
    std::vector<int64_t> actions(B);
    std::vector<double> weights(B * A);
    if (gumbel) {
      s.decide_gumbel(actions.data(), weights.data());
    } else {
      s.decide_muzero(1.0, actions.data(), weights.data());
    }
    for (int b = 0; b < B; ++b) {
      for (int a = 0; a < A; ++a) {
        if (invalid[b * A + a]) {
          EXPECT_EQ(sum.counts[b * A + a], 0);
          EXPECT_EQ(weights[b * A + a], 0.0);
        }
      }
      EXPECT_FALSE(invalid[b * A + actions[b]]);
    }
  }
}

TEST(MctsSearch, DepthLimitRevisitsExistingLeaves) {
  const int A = 2, S = 12;
  Search s(1, A, S + 1, 1);
  Driver d(s, hash_model);
  d.set_roots({0.0f, 0.0f}, {0.0f});
  s.begin_muzero(PuctParams{}, 0.3, 0.0, 1, S, 1);
  for (int i = 0; i < S; ++i) {
    d.select();
    EXPECT_EQ(d.parent()[0], 0);
    if (i >= 2) {
      EXPECT_FALSE(d.is_new()[0]);
      EXPECT_EQ(d.node()[0], s.tree().children(0, 0)[d.action()[0]]);
    }
    d.evaluate();
    d.expand();
  }
  EXPECT_EQ(s.tree().num_nodes(0), 3);
  EXPECT_EQ(s.tree().visits(0, 0), 1 + S);
}

TEST(MctsSearch, GumbelWithoutNoiseAndOneVisitEachPicksTheBestQ) {
  const int A = 7;
  Search s(1, A, A + 1, 1);
  Driver d(s, [](int, uint64_t, int action, int A) {
    Step st;
    st.reward = action == 4 ? 0.8f : 0.1f * action;
    st.logits.assign(A, 0.0f);
    return st;
  });
  d.set_roots(std::vector<float>(A, 0.0f), {0.0f});
  GumbelParams p;
  p.gumbel_scale = 0.0;
  s.begin_gumbel(p, 0, A, 99);
  d.run(A);
  const Summary sum = summary(s);
  for (int a = 0; a < A; ++a) EXPECT_EQ(sum.counts[a], 1);
  std::vector<int64_t> action(1);
  std::vector<double> weights(A);
  s.decide_gumbel(action.data(), weights.data());
  EXPECT_EQ(action[0], 4);
  EXPECT_EQ(*std::max_element(weights.begin(), weights.end()), weights[4]);
}

TEST(MctsSearch, ProtocolErrorsLeaveTheSearchUsable) {
  Search s(2, 3, 5, 1);
  Driver d(s, hash_model);
  d.set_roots(random_logits(2, 3, 1), {0.0f, 0.0f});
  EXPECT_THROW(d.select(), std::logic_error);  // not begun
  EXPECT_THROW(s.begin_muzero(PuctParams{}, 0.3, 0.25, 0, 5, 1), std::invalid_argument);  // 1 + 5 > 5
  EXPECT_THROW(s.begin_muzero(PuctParams{}, 0.3, 0.25, 0, 0, 1), std::invalid_argument);
  EXPECT_THROW(s.begin_muzero(PuctParams{}, 0.0, 0.25, 0, 4, 1), std::invalid_argument);
  EXPECT_THROW(s.begin_muzero(PuctParams{}, 0.3, 1.5, 0, 4, 1), std::invalid_argument);
  s.begin_muzero(PuctParams{}, 0.3, 0.25, 0, 4, 1);
  EXPECT_THROW(d.expand(), std::logic_error);  // nothing selected
  d.select();
  EXPECT_THROW(d.select(), std::logic_error);  // not expanded
  d.evaluate();
  const Summary before = summary(s);
  d.reward()[1] = std::nanf("");
  EXPECT_THROW(d.expand(), std::invalid_argument);
  EXPECT_TRUE(summary(s) == before);
  d.reward()[1] = 0.0f;
  d.logits()[2] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(d.expand(), std::invalid_argument);
  EXPECT_TRUE(summary(s) == before);
  d.evaluate();
  d.expand();
  d.run(3);
  EXPECT_THROW(d.select(), std::logic_error);  // all 4 simulations done
  EXPECT_EQ(s.tree().visits(0, 0), 5);
}

TEST(MctsSearch, BadRootsAreRefusedWithoutChangingTheTrees) {
  Search s(2, 3, 8, 1);
  Driver d(s, hash_model);
  d.set_roots(random_logits(2, 3, 1), {0.5f, -0.5f});
  s.begin_muzero(PuctParams{}, 0.3, 0.0, 0, 3, 1);
  d.run(3);
  const Summary before = summary(s);
  std::vector<float> logits = random_logits(2, 3, 2);
  logits[4] = std::nanf("");
  EXPECT_THROW(d.set_roots(logits, {0.0f, 0.0f}), std::invalid_argument);
  EXPECT_THROW(d.set_roots(random_logits(2, 3, 2), {0.0f, std::nanf("")}), std::invalid_argument);
  std::vector<uint8_t> all_invalid = {0, 0, 0, 1, 1, 1};
  EXPECT_THROW(d.set_roots(random_logits(2, 3, 2), {0.0f, 0.0f}, &all_invalid), std::invalid_argument);
  const float ninf = -std::numeric_limits<float>::infinity();
  EXPECT_THROW(d.set_roots({ninf, ninf, ninf, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f}), std::invalid_argument);
  EXPECT_TRUE(summary(s) == before);
}

// A kept root keeps its node's logits, which set_roots' prior_logits check never reads: a mask
// that leaves it only actions of logit -inf is refused (its priors would be NaN), trees unchanged.
TEST(MctsSearch, AKeptRootLeftOnlyActionsOfLogitMinusInfIsRefused) {
  Search s(1, 3, 8, 1);
  std::vector<double> logits = {0.0, 0.0, 0.0}, zero = {0.0}, one = {1.0};
  s.set_roots(FloatRows{nullptr, logits.data()}, FloatRows{nullptr, zero.data()}, nullptr, nullptr);
  s.begin_muzero(PuctParams{}, 0.3, 0.0, 0, 1, 1);
  std::vector<int32_t> parent(1), action(1), node(1);
  std::vector<uint8_t> is_new(1);
  s.select(Selection{parent.data(), action.data(), node.data(), is_new.data()}, PoolRows{});
  const double ninf = -std::numeric_limits<double>::infinity();
  std::vector<double> child_logits = {ninf, 0.0, ninf};
  s.expand_and_backup(FloatRows{nullptr, zero.data()}, FloatRows{nullptr, one.data()},
                      FloatRows{nullptr, child_logits.data()}, FloatRows{nullptr, zero.data()});
  const int64_t taken = action[0];
  std::vector<int64_t> old_ids(8);
  std::vector<int32_t> kept(1);
  s.reroot(&taken, old_ids.data(), kept.data());
  ASSERT_EQ(kept[0], 1);
  const Summary before = summary(s);
  const uint8_t keep = 1;
  const std::vector<uint8_t> only_minus_inf = {0, 1, 0}, finite_left = {1, 0, 1};
  EXPECT_THROW(s.set_roots(FloatRows{nullptr, logits.data()}, FloatRows{nullptr, zero.data()}, only_minus_inf.data(),
                           &keep),
               std::invalid_argument);
  EXPECT_TRUE(summary(s) == before);
  EXPECT_NO_THROW(s.set_roots(FloatRows{nullptr, logits.data()}, FloatRows{nullptr, zero.data()}, finite_left.data(),
                              &keep));
}

// Reusing the search: the kept subtree's statistics carry over and the next search adds to them.
TEST(MctsSearch, RerootKeepsTheChosenSubtreeForTheNextSearch) {
  const int B = 3, A = 4, S = 30, capacity = 2 * S + 1;
  Search s(B, A, capacity, 2);
  Driver d(s, hash_model);
  d.set_roots(random_logits(B, A, 4), std::vector<float>(B, 0.0f));
  s.begin_muzero(PuctParams{}, 0.3, 0.0, 0, S, 1);
  d.run(S);
  std::vector<int64_t> actions(B);
  std::vector<double> weights(B * A);
  s.decide_muzero(0.0, actions.data(), weights.data());
  std::vector<int32_t> child_visits(B);
  std::vector<std::vector<int32_t>> grandchild_visits(B);
  for (int b = 0; b < B; ++b) {
    const int32_t c = s.tree().children(b, 0)[actions[b]];
    child_visits[b] = s.tree().visits(b, c);
    grandchild_visits[b].assign(s.tree().child_visits(b, c), s.tree().child_visits(b, c) + A);
  }
  std::vector<int64_t> old_ids(static_cast<size_t>(capacity) * B);
  std::vector<int32_t> kept(B);
  s.reroot(actions.data(), old_ids.data(), kept.data());
  d.permute(old_ids);
  for (int b = 0; b < B; ++b) {
    EXPECT_GT(kept[b], 1);
    EXPECT_EQ(s.tree().visits(b, 0), child_visits[b]);
    EXPECT_EQ(std::vector<int32_t>(s.tree().child_visits(b, 0), s.tree().child_visits(b, 0) + A), grandchild_visits[b]);
  }
  const std::vector<uint8_t> keep(B, 1);
  std::vector<float> unused_logits(B * A, 0.0f), unused_values(B, 0.0f);
  s.set_roots(FloatRows{unused_logits.data(), nullptr}, FloatRows{unused_values.data(), nullptr}, nullptr, keep.data());
  s.begin_muzero(PuctParams{}, 0.3, 0.0, 0, S, 2);
  d.run(S);
  for (int b = 0; b < B; ++b) EXPECT_EQ(s.tree().visits(b, 0), child_visits[b] + S);
}

// Gumbel MuZero continues a kept root: sequential halving over the new visits only, so a search
// of A simulations with gumbel_scale 0 and uniform priors visits every valid action once more.
TEST(MctsSearch, GumbelHalvingCountsOnlyTheVisitsOfTheCurrentSearch) {
  const int B = 2, A = 4, S = 12, capacity = 3 * S;
  Search s(B, A, capacity, 1);
  Driver d(s, hash_model);
  d.set_roots(std::vector<float>(B * A, 0.0f), std::vector<float>(B, 0.0f));
  GumbelParams p;
  p.gumbel_scale = 0.0;
  s.begin_gumbel(p, 0, S, 1);
  d.run(S);
  std::vector<int64_t> actions(B);
  std::vector<double> weights(B * A);
  s.decide_gumbel(actions.data(), weights.data());
  std::vector<int64_t> old_ids(static_cast<size_t>(capacity) * B);
  std::vector<int32_t> kept(B);
  s.reroot(actions.data(), old_ids.data(), kept.data());
  d.permute(old_ids);
  std::vector<std::vector<int32_t>> before(B);
  for (int b = 0; b < B; ++b) before[b].assign(s.tree().child_visits(b, 0), s.tree().child_visits(b, 0) + A);
  const std::vector<uint8_t> keep(B, 1);
  std::vector<float> unused_logits(B * A, 0.0f), unused_values(B, 0.0f);
  s.set_roots(FloatRows{unused_logits.data(), nullptr}, FloatRows{unused_values.data(), nullptr}, nullptr, keep.data());
  s.begin_gumbel(p, 0, A, 2);
  d.run(A);
  for (int b = 0; b < B; ++b) {
    for (int a = 0; a < A; ++a) EXPECT_EQ(s.tree().child_visits(b, 0)[a], before[b][a] + 1) << b << " " << a;
  }
}

// Q transforms: parent-and-siblings and fixed bounds take the numbers that keep every score finite.
TEST(MctsSearch, QTransformParametersAreChecked) {
  Search s(1, 2, 4, 1);
  std::vector<double> logits(2, 0.0), values = {0.0};
  s.set_roots(FloatRows{nullptr, logits.data()}, FloatRows{nullptr, values.data()}, nullptr, nullptr);
  using pymbrl::mcts::QTransform;
  using pymbrl::mcts::QTransformKind;
  EXPECT_THROW(s.begin_muzero(PuctParams{}, 0.3, 0.0, 0, 3, 1, QTransform{QTransformKind::kParentAndSiblings, 0.0}),
               std::invalid_argument);
  EXPECT_THROW(s.begin_muzero(PuctParams{}, 0.3, 0.0, 0, 3, 1, QTransform{QTransformKind::kMinMax, 1e-8, 1.0, 1.0}),
               std::invalid_argument);
  EXPECT_THROW(s.begin_muzero(PuctParams{}, 0.3, 0.0, 0, 3, 1, QTransform{QTransformKind::kMinMax, 1e-8, -1e300, 1.0}),
               std::invalid_argument);
  EXPECT_NO_THROW(s.begin_muzero(PuctParams{}, 0.3, 0.0, 0, 3, 1, QTransform{QTransformKind::kMinMax, 1e-8, -1.0, 1.0}));
  EXPECT_NO_THROW(
      s.begin_muzero(PuctParams{}, 0.3, 0.0, 0, 3, 1, QTransform{QTransformKind::kParentAndSiblings, 1e-8}));
}

TEST(MctsSearch, KeepingAnEmptyTreeIsRefused) {
  Search s(1, 3, 8, 1);
  Driver d(s, hash_model);
  d.set_roots({0.0f, 0.0f, 0.0f}, {0.0f});
  s.begin_muzero(PuctParams{}, 0.3, 0.0, 0, 1, 1);
  d.run(1);
  const int64_t untouched = s.tree().children(0, 0)[0] == pymbrl::mcts::kNoNode ? 0 : 1;
  ASSERT_EQ(s.tree().children(0, 0)[untouched], pymbrl::mcts::kNoNode);
  std::vector<int64_t> old_ids(8);
  std::vector<int32_t> kept(1);
  s.reroot(&untouched, old_ids.data(), kept.data());
  EXPECT_EQ(kept[0], 0);
  const uint8_t keep = 1;
  std::vector<float> logits(3, 0.0f), values(1, 0.0f);
  EXPECT_THROW(s.set_roots(FloatRows{logits.data(), nullptr}, FloatRows{values.data(), nullptr}, nullptr, &keep),
               std::invalid_argument);
  EXPECT_THROW(s.begin_muzero(PuctParams{}, 0.3, 0.0, 0, 1, 1), std::invalid_argument);  // no root
}

// Rewards of 1e6 keep every statistic finite and the min-max normalisation sane.
TEST(MctsSearch, HugeRewardsStayFinite) {
  const int A = 3, S = 40;
  for (bool gumbel : {false, true}) {
    Search s(2, A, S + 1, 1);
    Driver d(s, [](int b, uint64_t, int action, int A) {
      Step st;
      st.reward = (b == 0 ? 1e6f : -1e6f) * (action == 1 ? 1.0f : 0.5f);
      st.logits.assign(A, 0.0f);
      st.value = 1e6f;
      return st;
    });
    d.set_roots(std::vector<float>(2 * A, 0.0f), {0.0f, 0.0f});
    if (gumbel) {
      s.begin_gumbel(GumbelParams{}, 0, S, 3);
    } else {
      s.begin_muzero(PuctParams{}, 0.3, 0.25, 0, S, 3);
    }
    d.run(S);
    const Summary sum = summary(s);
    for (double q : sum.q) EXPECT_TRUE(std::isfinite(q));
    for (double v : sum.value) EXPECT_TRUE(std::isfinite(v));
    EXPECT_GT(sum.counts[1], sum.counts[0]);
  }
}

}  // namespace

namespace {

// The fused step the Python loop uses must be exactly expand_and_backup followed by select.
TEST(MctsSearch, ExpandAndSelectEqualsExpandThenSelect) {
  const int B = 6, A = 4, S = 20;
  for (bool gumbel : {false, true}) {
    Search separate(B, A, S + 1, 2), fused(B, A, S + 1, 3);
    Driver ds(separate, hash_model), df(fused, hash_model);
    for (Driver* d : {&ds, &df}) d->set_roots(random_logits(B, A, 8), std::vector<float>(B, 0.0f));
    for (Search* s : {&separate, &fused}) {
      if (gumbel) {
        s->begin_gumbel(GumbelParams{}, 0, S, 4);
      } else {
        s->begin_muzero(PuctParams{}, 0.3, 0.25, 0, S, 4);
      }
    }
    ds.run(S);
    df.select();
    std::vector<int32_t> parent(B), action(B), node(B);
    std::vector<uint8_t> is_new(B);
    for (int i = 0; i < S; ++i) {
      df.evaluate();
      const bool more = fused.expand_and_select(
          FloatRows{df.reward().data(), nullptr}, FloatRows{df.discount().data(), nullptr},
          FloatRows{df.logits().data(), nullptr}, FloatRows{df.value().data(), nullptr},
          Selection{parent.data(), action.data(), node.data(), is_new.data()}, PoolRows{});
      EXPECT_EQ(more, i + 1 < S);
      if (more) {
        // The fused selection is the driver's next one: hand it over so evaluate() reads it.
        df.adopt(parent, action, node, is_new);
      }
    }
    EXPECT_TRUE(summary(separate) == summary(fused)) << "gumbel " << gumbel;
  }
}

}  // namespace

namespace {

// The accepted range of model outputs (|reward|, |value| <= 2^64, |discount| <= 1): the edge is
// accepted and every statistic stays finite; just beyond it the outputs are refused and nothing
// changes. Values near 1e308 made Gumbel's weights NaN before.
TEST(MctsSearch, ModelOutputsBeyondTheRangeAreRefused) {
  const double limit = 18446744073709551616.0;
  const int A = 3, S = 30;
  for (bool gumbel : {false, true}) {
    for (float discount : {1.0f, -1.0f}) {
      Search s(2, A, S + 1, 1);
      Driver d(s, [discount, limit](int b, uint64_t parent, int action, int A) {
        Step st = hash_model(b, parent, action, A);
        st.reward = static_cast<float>(st.reward > 0 ? limit : -limit);
        st.value = static_cast<float>(st.value > 0 ? limit : -limit);
        st.discount = discount;
        return st;
      });
      d.set_roots(std::vector<float>(2 * A, 0.0f), {static_cast<float>(limit), -static_cast<float>(limit)});
      if (gumbel) {
        s.begin_gumbel(GumbelParams{}, 0, S, 3);
      } else {
        s.begin_muzero(PuctParams{}, 0.3, 0.25, 0, S, 3);
      }
      d.run(S);
      const Summary sum = summary(s);
      for (double q : sum.q) EXPECT_TRUE(std::isfinite(static_cast<float>(q)));
      for (double v : sum.value) EXPECT_TRUE(std::isfinite(static_cast<float>(v)));
      std::vector<int64_t> actions(2);
      std::vector<double> weights(2 * A);
      if (gumbel) {
        s.decide_gumbel(actions.data(), weights.data());
      } else {
        s.decide_muzero(1.0, actions.data(), weights.data());
      }
      for (double w : weights) EXPECT_TRUE(std::isfinite(w));
    }
  }
  // Just beyond: refused, naming the field and the row.
  for (const char* field : {"reward", "value", "discount"}) {
    Search s(2, A, 4, 1);
    std::vector<double> logits(2 * A, 0.0), values = {0.0, 0.0};
    s.set_roots(FloatRows{nullptr, logits.data()}, FloatRows{nullptr, values.data()}, nullptr, nullptr);
    s.begin_muzero(PuctParams{}, 0.3, 0.0, 0, 3, 1);
    std::vector<int32_t> parent(2), action(2), node(2);
    std::vector<uint8_t> is_new(2);
    s.select(Selection{parent.data(), action.data(), node.data(), is_new.data()}, PoolRows{});
    std::vector<double> reward = {0.0, 0.0}, discount = {1.0, 1.0}, value = {0.0, 0.0};
    std::vector<double>& bad = std::string(field) == "reward" ? reward : std::string(field) == "value" ? value : discount;
    bad[1] = std::string(field) == "discount" ? std::nextafter(1.0, 2.0) : std::nextafter(limit, 1e300);
    try {
      s.expand_and_backup(FloatRows{nullptr, reward.data()}, FloatRows{nullptr, discount.data()},
                          FloatRows{nullptr, logits.data()}, FloatRows{nullptr, value.data()});
      FAIL() << field;
    } catch (const std::invalid_argument& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.rfind(std::string(field) + ": expected", 0), 0u) << what;
      EXPECT_NE(what.find("[1]"), std::string::npos) << what;
    }
    EXPECT_EQ(s.tree().num_nodes(0), 1);
    EXPECT_EQ(s.tree().visits(1, 0), 1);
  }
}

// Parameters that would overflow the search's arithmetic are refused.
TEST(MctsSearch, ParametersThatOverflowAreRefused) {
  Search s(1, 2, 4, 1);
  std::vector<double> logits(2, 0.0), values = {0.0};
  s.set_roots(FloatRows{nullptr, logits.data()}, FloatRows{nullptr, values.data()}, nullptr, nullptr);
  EXPECT_THROW(s.begin_muzero(PuctParams{1e300, 19652.0}, 0.3, 0.0, 0, 3, 1), std::invalid_argument);
  EXPECT_THROW(s.begin_muzero(PuctParams{1.25, 1e-300}, 0.3, 0.0, 0, 3, 1), std::invalid_argument);
  EXPECT_THROW(s.begin_muzero(PuctParams{}, 1e300, 0.25, 0, 3, 1), std::invalid_argument);
  EXPECT_THROW(s.begin_gumbel(GumbelParams{16, 1.0, 1e300, 50.0}, 0, 3, 1), std::invalid_argument);
  EXPECT_THROW(s.begin_gumbel(GumbelParams{16, 1.0, 0.1, -1e300}, 0, 3, 1), std::invalid_argument);
  EXPECT_THROW(s.begin_gumbel(GumbelParams{16, 1e300, 0.1, 50.0}, 0, 3, 1), std::invalid_argument);
  EXPECT_NO_THROW(s.begin_gumbel(GumbelParams{1 << 20, 1.0, 0.1, 50.0}, 0, 3, 1));  // table of 3 rows, not 2^20
}

}  // namespace
