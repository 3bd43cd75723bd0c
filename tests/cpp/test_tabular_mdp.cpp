#include "pymbrl/dyna/tabular_mdp.h"

#include <gtest/gtest.h>

#include "support.h"

#include <cstdint>
#include <limits>
#include <ostream>
#include <memory>
#include <stdexcept>
#include <vector>

#include "pymbrl/rng.h"

namespace {

using namespace pymbrl::dyna;
using pymbrl::Rng;

const double kNaN = std::numeric_limits<double>::quiet_NaN();

// Builds a table from one outcome list per pair (pair = s * n_actions + a).

// One state, one action, a self-loop paying `reward`.
std::shared_ptr<const TransitionTable> loop(double reward) {
  return table(1, 1, {{{1.0, 0, reward, false}}}, {1.0});
}

TEST(TransitionTable, StoresWhatItIsGiven) {
  auto t = table(2, 2, {{{0.25, 0, 1.0, false}, {0.75, 1, 2.0, true}}, {{1.0, 1, 0.0, false}},
                        {{1.0, 0, 0.0, false}}, {{1.0, 1, -1.0, true}}},
                 {0.0, 1.0});
  EXPECT_EQ(t->n_states(), 2);
  EXPECT_EQ(t->n_actions(), 2);
  EXPECT_EQ(t->offsets(), (std::vector<int64_t>{0, 2, 3, 4, 5}));
  ASSERT_EQ(t->transitions().size(), 5u);
  EXPECT_EQ(t->transitions()[1].next, 1);
  EXPECT_TRUE(t->transitions()[1].terminated);
  EXPECT_EQ(t->initial(), (std::vector<double>{0.0, 1.0}));
}

struct BadTable {
  const char* what;
  int64_t n_states, n_actions;
  std::vector<int64_t> offsets;
  std::vector<Transition> transitions;
  std::vector<double> initial;
};

void PrintTo(const BadTable& c, std::ostream* os) { *os << c.what; }

class TransitionTableRejects : public ::testing::TestWithParam<BadTable> {};

TEST_P(TransitionTableRejects, ThrowsInvalidArgument) {
  const BadTable& b = GetParam();
  EXPECT_THROW(TransitionTable(b.n_states, b.n_actions, b.offsets, b.transitions, b.initial), std::invalid_argument)
      << b.what;
}

const Transition kTo0{1.0, 0, 0.0, false};
const Transition kTo1{1.0, 1, 0.0, false};

INSTANTIATE_TEST_SUITE_P(
    Cases, TransitionTableRejects,
    ::testing::Values(
        BadTable{"no states", 0, 1, {0}, {}, {}},
        BadTable{"no actions", 1, 0, {0}, {}, {1.0}},
        BadTable{"too few offsets", 2, 1, {0, 1}, {kTo0, kTo1}, {1.0, 0.0}},
        BadTable{"offsets not from 0", 2, 1, {1, 1, 2}, {kTo0, kTo1}, {1.0, 0.0}},
        BadTable{"offsets not to the end", 2, 1, {0, 1, 1}, {kTo0, kTo1}, {1.0, 0.0}},
        BadTable{"empty pair", 2, 1, {0, 0, 2}, {kTo0, kTo1}, {1.0, 0.0}},
        // Offsets running past the end and coming back: must be caught without reading
        // transitions beyond the array (run under AddressSanitizer to see a violation).
        BadTable{"offsets not monotone", 2, 1, {0, 3, 2}, {{0.5, 0, 0.0, false}, {0.5, 1, 0.0, false}}, {1.0, 0.0}},
        BadTable{"probabilities sum below 1", 1, 1, {0, 2}, {{0.5, 0, 0.0, false}, {0.4, 0, 1.0, false}}, {1.0}},
        BadTable{"probabilities sum above 1", 1, 1, {0, 2}, {{0.6, 0, 0.0, false}, {0.6, 0, 1.0, false}}, {1.0}},
        BadTable{"probability above 1", 1, 1, {0, 2}, {{1.5, 0, 0.0, false}, {-0.5, 0, 1.0, false}}, {1.0}},
        BadTable{"NaN probability", 1, 1, {0, 2}, {{kNaN, 0, 0.0, false}, {1.0, 0, 1.0, false}}, {1.0}},
        BadTable{"next out of range", 2, 1, {0, 1, 2}, {kTo0, {1.0, 2, 0.0, false}}, {1.0, 0.0}},
        BadTable{"negative next", 2, 1, {0, 1, 2}, {kTo0, {1.0, -1, 0.0, false}}, {1.0, 0.0}},
        BadTable{"NaN reward", 1, 1, {0, 1}, {{1.0, 0, kNaN, false}}, {1.0}},
        BadTable{"infinite reward", 1, 1, {0, 1}, {{1.0, 0, std::numeric_limits<double>::infinity(), false}}, {1.0}},
        BadTable{"initial wrong length", 2, 1, {0, 1, 2}, {kTo0, kTo1}, {1.0}},
        BadTable{"initial sums to 0.5", 2, 1, {0, 1, 2}, {kTo0, kTo1}, {0.25, 0.25}},
        BadTable{"initial negative", 2, 1, {0, 1, 2}, {kTo0, kTo1}, {1.5, -0.5}},
        BadTable{"initial NaN", 2, 1, {0, 1, 2}, {kTo0, kTo1}, {kNaN, 1.0}}),
    [](const ::testing::TestParamInfo<BadTable>& info) { return std::to_string(info.index); });

TEST(TransitionTable, ToleratesRoundingInProbabilities) {
  EXPECT_NO_THROW(table(1, 1, {{{1.0 / 3, 0, 0.0, false}, {1.0 / 3, 0, 1.0, false}, {1.0 / 3, 0, 2.0, false}}},
                        {1.0}));
  EXPECT_NO_THROW(table(1, 1, {{{0.5 + 5e-7, 0, 0.0, false}, {0.5, 0, 1.0, false}}}, {1.0}));
  EXPECT_THROW(table(1, 1, {{{0.5 + 5e-6, 0, 0.0, false}, {0.5, 0, 1.0, false}}}, {1.0}), std::invalid_argument);
}

TEST(TransitionTable, SamplingFollowsProbabilities) {
  auto t = table(4, 1,
                 {{{0.2, 0, 0.0, false}, {0.0, 1, 0.0, false}, {0.5, 2, 0.0, false}, {0.3, 3, 0.0, false}},
                  {kTo0}, {kTo0}, {kTo0}},
                 {0.25, 0.25, 0.25, 0.25});
  Rng rng(31);
  std::vector<int> counts(4, 0);
  constexpr int kDraws = 50000;
  for (int i = 0; i < kDraws; ++i) ++counts[static_cast<size_t>(t->sample(0, 0, rng).next)];
  EXPECT_EQ(counts[1], 0);  // zero probability is never drawn
  EXPECT_NEAR(counts[0] / double(kDraws), 0.2, 0.01);
  EXPECT_NEAR(counts[2] / double(kDraws), 0.5, 0.01);
  EXPECT_NEAR(counts[3] / double(kDraws), 0.3, 0.01);
}

TEST(TransitionTable, SamplingReturnsTheWholeOutcome) {
  auto t = table(3, 2,
                 {{kTo0}, {kTo0}, {kTo0}, {{0.5, 2, 7.0, true}, {0.5, 0, -3.0, false}}, {kTo0}, {kTo0}},
                 {1.0, 0.0, 0.0});
  Rng rng(4);
  int terminal = 0;
  for (int i = 0; i < 2000; ++i) {
    const Transition& x = t->sample(1, 1, rng);
    if (x.next == 2) {
      EXPECT_EQ(x.reward, 7.0);
      EXPECT_TRUE(x.terminated);
      ++terminal;
    } else {
      EXPECT_EQ(x.next, 0);
      EXPECT_EQ(x.reward, -3.0);
      EXPECT_FALSE(x.terminated);
    }
  }
  EXPECT_NEAR(terminal / 2000.0, 0.5, 0.05);
}

TEST(TransitionTable, SingleOutcomeConsumesNoRandomness) {
  auto t = loop(1.0);
  Rng rng(9);
  const auto before = rng.state();
  t->sample(0, 0, rng);
  EXPECT_EQ(rng.state(), before);
}

TEST(TransitionTable, InitialDistributionIsSampled) {
  auto t = table(4, 1, {{kTo0}, {kTo0}, {kTo0}, {kTo0}}, {0.0, 0.25, 0.0, 0.75});
  Rng rng(10);
  std::vector<int> counts(4, 0);
  constexpr int kDraws = 40000;
  for (int i = 0; i < kDraws; ++i) ++counts[static_cast<size_t>(t->sample_initial(rng))];
  EXPECT_EQ(counts[0], 0);
  EXPECT_EQ(counts[2], 0);
  EXPECT_NEAR(counts[1] / double(kDraws), 0.25, 0.01);
  EXPECT_NEAR(counts[3] / double(kDraws), 0.75, 0.01);
}

// A generator whose next uniform() is the largest double below 1, so a draw lands in the mass
// that rounding leaves uncovered. xoshiro256** outputs rotl(s[1] * 5, 7) * 9, which is invertible.
Rng rng_about_to_draw_one() {
  auto inverse = [](uint64_t odd) {
    uint64_t x = odd;
    for (int i = 0; i < 6; ++i) x *= 2 - odd * x;  // Newton: doubles the correct low bits
    return x;
  };
  const uint64_t want = ~uint64_t{0};
  const uint64_t rotated = want * inverse(9);
  const uint64_t s1 = ((rotated >> 7) | (rotated << 57)) * inverse(5);
  Rng rng;
  rng.set_state({0, s1, 0, 0});
  return rng;
}

TEST(TransitionTable, DrawBeyondRoundedMassPicksLastStateWithMass) {
  Rng probe = rng_about_to_draw_one();
  ASSERT_EQ(probe.uniform(), 1.0 - 0x1.0p-53);

  // Sums of 1 - 5e-7 are accepted; the uncovered draw must go to the last outcome with
  // probability, never to a trailing zero-probability one.
  auto t = table(3, 1, {{{0.5, 0, 0.0, false}, {0.5 - 5e-7, 1, 0.0, false}, {0.0, 2, 0.0, false}}, {kTo0}, {kTo0}},
                 {0.5, 0.5 - 5e-7, 0.0});
  Rng rng = rng_about_to_draw_one();
  EXPECT_EQ(t->sample_initial(rng), 1);
  rng = rng_about_to_draw_one();
  EXPECT_EQ(t->sample(0, 0, rng).next, 1);
}

TEST(TabularMDP, SingleTableIsPhaseZeroForever) {
  auto t = loop(1.0);
  TabularMDP mdp(t);
  EXPECT_EQ(mdp.n_states(), 1);
  EXPECT_EQ(mdp.n_actions(), 1);
  EXPECT_EQ(mdp.phases().size(), 1u);
  EXPECT_EQ(mdp.starts(), (std::vector<int64_t>{0}));
  EXPECT_EQ(&mdp.at(0), t.get());
  EXPECT_EQ(&mdp.at(1000000), t.get());
}

TEST(TabularMDP, PhasesSwitchAtTheirStartSteps) {
  auto a = loop(0.0), b = loop(1.0), c = loop(2.0);
  TabularMDP mdp({a, b, c}, {0, 10, 25});
  EXPECT_EQ(&mdp.at(0), a.get());
  EXPECT_EQ(&mdp.at(9), a.get());
  EXPECT_EQ(&mdp.at(10), b.get());
  EXPECT_EQ(&mdp.at(24), b.get());
  EXPECT_EQ(&mdp.at(25), c.get());
  EXPECT_EQ(&mdp.at(1000), c.get());
}

TEST(TabularMDP, RejectsBadPhases) {
  auto a = loop(0.0), b = loop(1.0);
  auto wide = table(2, 1, {{kTo0}, {kTo0}}, {1.0, 0.0});
  auto two_actions = table(1, 2, {{kTo0}, {kTo0}}, {1.0});
  using Phases = std::vector<std::shared_ptr<const TransitionTable>>;
  EXPECT_THROW(TabularMDP(Phases{}, {}), std::invalid_argument);
  EXPECT_THROW(TabularMDP(Phases{a, b}, {0}), std::invalid_argument);
  EXPECT_THROW(TabularMDP(Phases{a, b}, {5, 10}), std::invalid_argument);
  EXPECT_THROW(TabularMDP(Phases{a, b}, {0, 0}), std::invalid_argument);
  EXPECT_THROW(TabularMDP(Phases{a, b, a}, {0, 10, 5}), std::invalid_argument);
  EXPECT_THROW(TabularMDP(Phases{a, wide}, {0, 10}), std::invalid_argument);
  EXPECT_THROW(TabularMDP(Phases{a, two_actions}, {0, 10}), std::invalid_argument);
  EXPECT_NO_THROW(TabularMDP(Phases{a, b}, {0, 1}));
}

}  // namespace
