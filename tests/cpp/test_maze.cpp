#include "pymbrl/dyna/maze.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/dyna/tabular_mdp.h"

namespace {

using namespace pymbrl::dyna;

constexpr int64_t kUp = 0, kDown = 1, kLeft = 2, kRight = 3;

int64_t start_of(const TransitionTable& t) {
  for (int64_t s = 0; s < t.n_states(); ++s) {
    if (t.initial()[static_cast<size_t>(s)] == 1.0) return s;
  }
  return -1;
}

const Transition& only(const TransitionTable& t, int64_t s, int64_t a) {
  const int64_t p = s * t.n_actions() + a;
  EXPECT_EQ(t.offsets()[static_cast<size_t>(p) + 1] - t.offsets()[static_cast<size_t>(p)], 1);
  return t.transitions()[static_cast<size_t>(t.offsets()[static_cast<size_t>(p)])];
}

// Fewest actions from the start to a terminating transition, by breadth-first search over the
// table itself (so it checks what the agent will actually experience); -1 if unreachable.
int64_t shortest_path(const TransitionTable& t) {
  std::vector<int64_t> dist(static_cast<size_t>(t.n_states()), -1);
  const int64_t start = start_of(t);
  std::deque<int64_t> frontier{start};
  dist[static_cast<size_t>(start)] = 0;
  while (!frontier.empty()) {
    const int64_t s = frontier.front();
    frontier.pop_front();
    for (int64_t a = 0; a < t.n_actions(); ++a) {
      const Transition& x = only(t, s, a);
      if (x.terminated) return dist[static_cast<size_t>(s)] + 1;
      if (dist[static_cast<size_t>(x.next)] < 0) {
        dist[static_cast<size_t>(x.next)] = dist[static_cast<size_t>(s)] + 1;
        frontier.push_back(x.next);
      }
    }
  }
  return -1;
}

int64_t cell(int64_t r, int64_t c, int64_t cols = 9) { return r * cols + c; }

TEST(DynaMaze, MatchesFigure8_2) {
  const auto layout = dyna_maze_layout();
  ASSERT_EQ(layout.size(), 6u);
  int walls = 0;
  for (const auto& row : layout) {
    ASSERT_EQ(row.size(), 9u);
    for (char ch : row) walls += ch == '#';
  }
  EXPECT_EQ(walls, 7);
  auto t = make_maze(layout);
  EXPECT_EQ(t->n_states(), 54);
  EXPECT_EQ(t->n_actions(), 4);
  EXPECT_EQ(start_of(*t), cell(2, 0));
  EXPECT_EQ(shortest_path(*t), 14);
}

TEST(DynaMaze, MovesBlockedByWallsAndEdgesStayPut) {
  auto t = make_maze(dyna_maze_layout());
  EXPECT_EQ(only(*t, cell(0, 0), kUp).next, cell(0, 0));      // top edge
  EXPECT_EQ(only(*t, cell(0, 0), kLeft).next, cell(0, 0));    // left edge
  EXPECT_EQ(only(*t, cell(5, 8), kDown).next, cell(5, 8));    // bottom edge
  EXPECT_EQ(only(*t, cell(5, 8), kRight).next, cell(5, 8));   // right edge
  EXPECT_EQ(only(*t, cell(2, 1), kRight).next, cell(2, 1));   // wall at (2, 2)
  EXPECT_EQ(only(*t, cell(4, 4), kRight).next, cell(4, 4));   // wall at (4, 5)
  EXPECT_EQ(only(*t, cell(3, 7), kUp).next, cell(3, 7));      // wall at (2, 7)
  EXPECT_EQ(only(*t, cell(0, 6), kRight).next, cell(0, 6));   // wall at (0, 7), beside the goal
  // Free moves go where the action says.
  EXPECT_EQ(only(*t, cell(2, 0), kUp).next, cell(1, 0));
  EXPECT_EQ(only(*t, cell(2, 0), kDown).next, cell(3, 0));
  EXPECT_EQ(only(*t, cell(2, 0), kRight).next, cell(2, 1));
  EXPECT_EQ(only(*t, cell(2, 1), kLeft).next, cell(2, 0));
  const Transition& stay = only(*t, cell(2, 1), kRight);
  EXPECT_EQ(stay.reward, 0.0);
  EXPECT_FALSE(stay.terminated);
}

TEST(DynaMaze, OnlyEnteringTheGoalPaysAndTerminates) {
  const auto layout = dyna_maze_layout();
  auto t = make_maze(layout);
  const int64_t goal = cell(0, 8);
  int terminating = 0;
  for (int64_t s = 0; s < t->n_states(); ++s) {
    // Wall cells are states too (never reachable); only cells an agent can stand on count.
    if (s == goal || layout[static_cast<size_t>(s / 9)][static_cast<size_t>(s % 9)] == '#') continue;
    for (int64_t a = 0; a < 4; ++a) {
      const Transition& x = only(*t, s, a);
      EXPECT_EQ(x.prob, 1.0);
      if (x.next == goal) {
        EXPECT_EQ(x.reward, 1.0);
        EXPECT_TRUE(x.terminated);
        ++terminating;
      } else {
        EXPECT_EQ(x.reward, 0.0) << s << "," << a;
        EXPECT_FALSE(x.terminated) << s << "," << a;
      }
    }
  }
  EXPECT_EQ(terminating, 1);  // only from (1, 8) moving up: (0, 7) is a wall
  EXPECT_TRUE(only(*t, cell(1, 8), kUp).terminated);
  for (int64_t a = 0; a < 4; ++a) {  // the goal itself is absorbing
    EXPECT_EQ(only(*t, goal, a).next, goal);
    EXPECT_EQ(only(*t, goal, a).reward, 0.0);
  }
}

// The changing mazes differ only in row 3, a wall of 8 cells with one gap (Figures 8.4, 8.5); the
// shortcut's second phase opens a second gap.
std::string gaps_in_row_3(const std::vector<std::string>& layout) {
  std::string gaps;
  for (size_t r = 0; r < layout.size(); ++r) {
    for (size_t c = 0; c < layout[r].size(); ++c) {
      if (r != 3) {
        EXPECT_NE(layout[r][c], '#') << r << "," << c;
      } else if (layout[r][c] != '#') {
        gaps += std::to_string(c);
      }
    }
  }
  return gaps;
}

TEST(ChangingMazes, WallsMatchTheFigures) {
  const auto blocking = blocking_maze_layouts();
  const auto shortcut = shortcut_maze_layouts();
  EXPECT_EQ(gaps_in_row_3(blocking[0]), "8");
  EXPECT_EQ(gaps_in_row_3(blocking[1]), "0");
  EXPECT_EQ(gaps_in_row_3(shortcut[0]), "0");
  EXPECT_EQ(gaps_in_row_3(shortcut[1]), "08");
  for (const auto* set : {&blocking, &shortcut}) {
    for (const auto& layout : *set) {
      ASSERT_EQ(layout.size(), 6u);
      EXPECT_EQ(layout[0], "........G");
      EXPECT_EQ(layout[5], "...S.....");
    }
  }
}

// Hand count, start (5, 3) and goal (0, 8) in every layout below: through a gap at column 8
// the path is the Manhattan distance 5 + 5 = 10; through a gap at column 0 it is 3 left, 5 up
// and 8 right = 16.
TEST(BlockingMaze, RightGapClosesAndLeftGapOpens) {
  const auto layouts = blocking_maze_layouts();
  ASSERT_EQ(layouts.size(), 2u);
  auto before = make_maze(layouts[0]);
  auto after = make_maze(layouts[1]);
  EXPECT_EQ(before->n_states(), 54);
  EXPECT_EQ(after->n_states(), 54);
  EXPECT_EQ(start_of(*before), cell(5, 3));
  EXPECT_EQ(start_of(*after), cell(5, 3));
  EXPECT_EQ(shortest_path(*before), 10);
  EXPECT_EQ(shortest_path(*after), 16);
  EXPECT_EQ(only(*after, cell(4, 8), kUp).next, cell(4, 8));
  EXPECT_EQ(only(*before, cell(4, 0), kUp).next, cell(4, 0));
}

TEST(ShortcutMaze, RightGapOpensAndLeftGapStays) {
  const auto layouts = shortcut_maze_layouts();
  ASSERT_EQ(layouts.size(), 2u);
  auto before = make_maze(layouts[0]);
  auto after = make_maze(layouts[1]);
  EXPECT_EQ(shortest_path(*before), 16);
  EXPECT_EQ(shortest_path(*after), 10);
  EXPECT_EQ(only(*after, cell(4, 0), kUp).next, cell(3, 0));
  EXPECT_EQ(only(*after, cell(4, 8), kUp).next, cell(3, 8));
}

TEST(ChangingMazes, PhasesCanShareOneMDP) {
  // Every cell is a state in every phase, so the tables are interchangeable inside a TabularMDP.
  const auto layouts = blocking_maze_layouts();
  TabularMDP mdp({make_maze(layouts[0]), make_maze(layouts[1])}, {0, 1000});
  EXPECT_EQ(shortest_path(mdp.at(999)), 10);
  EXPECT_EQ(shortest_path(mdp.at(1000)), 16);
}

TEST(MakeMaze, SmallLayoutByHand) {
  // S . G
  // # . .
  auto t = make_maze({"S.G", "#.."});
  EXPECT_EQ(t->n_states(), 6);
  EXPECT_EQ(t->initial(), (std::vector<double>{1, 0, 0, 0, 0, 0}));
  EXPECT_EQ(only(*t, 0, kDown).next, 0);   // wall below S
  EXPECT_EQ(only(*t, 0, kRight).next, 1);
  EXPECT_TRUE(only(*t, 1, kRight).terminated);
  EXPECT_TRUE(only(*t, 5, kUp).terminated);
  EXPECT_EQ(only(*t, 5, kUp).reward, 1.0);
  EXPECT_EQ(only(*t, 4, kLeft).next, 4);   // wall at (1, 0)
  EXPECT_EQ(shortest_path(*t), 2);
}

TEST(MakeMaze, SeveralGoals) {
  auto t = make_maze({"G.S.G"});
  EXPECT_TRUE(only(*t, 1, kLeft).terminated);
  EXPECT_TRUE(only(*t, 3, kRight).terminated);
  EXPECT_EQ(shortest_path(*t), 2);
}

TEST(MakeMaze, RejectsBadLayouts) {
  using L = std::vector<std::string>;
  EXPECT_THROW(make_maze(L{}), std::invalid_argument);
  EXPECT_THROW(make_maze(L{""}), std::invalid_argument);
  EXPECT_THROW(make_maze(L{"S.G", ".."}), std::invalid_argument);  // ragged
  EXPECT_THROW(make_maze(L{"S.G", "..x"}), std::invalid_argument);  // unknown character
  EXPECT_THROW(make_maze(L{"S.G", "S.."}), std::invalid_argument);  // two starts
  EXPECT_THROW(make_maze(L{"..G"}), std::invalid_argument);         // no start
  EXPECT_THROW(make_maze(L{"S.."}), std::invalid_argument);         // no goal
  EXPECT_NO_THROW(make_maze(L{"SG"}));
}

}  // namespace
