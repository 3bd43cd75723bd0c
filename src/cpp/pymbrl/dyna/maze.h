// Deterministic grid mazes as transition tables: Sutton & Barto's Dyna maze (Figure 8.2) and the
// blocking and shortcut mazes (Figures 8.4 and 8.5) are built from layouts of this form.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/dyna/tabular_mdp.h"

namespace pymbrl::dyna {

// Layout rows of equal length: '.' free, '#' wall, 'S' start, 'G' goal (one S, at least one G).
// Every cell is a state (row-major), so walls that move between phases need no renumbering.
// Actions: 0 up, 1 down, 2 left, 3 right. A move into a wall or off the grid leaves the agent in
// place. Entering a goal gives reward 1 and terminates; everything else gives 0.
inline std::shared_ptr<const TransitionTable> make_maze(const std::vector<std::string>& layout) {
  if (layout.empty() || layout.front().empty()) throw std::invalid_argument("layout: expected one or more non-empty rows");
  const int64_t rows = static_cast<int64_t>(layout.size());
  const int64_t cols = static_cast<int64_t>(layout.front().size());
  int64_t start = -1;
  int64_t goals = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const std::string& row = layout[static_cast<size_t>(r)];
    if (static_cast<int64_t>(row.size()) != cols) throw std::invalid_argument("layout: expected rows of equal length");
    for (int64_t c = 0; c < cols; ++c) {
      const char ch = row[static_cast<size_t>(c)];
      if (ch != '.' && ch != '#' && ch != 'S' && ch != 'G') {
        throw std::invalid_argument(std::string("layout: expected only '.', '#', 'S' and 'G', got '") + ch + "'");
      }
      if (ch == 'S') {
        if (start >= 0) throw std::invalid_argument("layout: expected exactly one 'S'");
        start = r * cols + c;
      }
      goals += ch == 'G';
    }
  }
  if (start < 0 || goals == 0) throw std::invalid_argument("layout: expected one 'S' and at least one 'G'");

  auto cell = [&](int64_t r, int64_t c) { return layout[static_cast<size_t>(r)][static_cast<size_t>(c)]; };
  constexpr int64_t kDr[4] = {-1, 1, 0, 0};
  constexpr int64_t kDc[4] = {0, 0, -1, 1};
  const int64_t n_states = rows * cols;
  std::vector<int64_t> offsets;
  std::vector<Transition> transitions;
  offsets.reserve(static_cast<size_t>(n_states * 4 + 1));
  transitions.reserve(static_cast<size_t>(n_states * 4));
  for (int64_t s = 0; s < n_states; ++s) {
    const int64_t r = s / cols;
    const int64_t c = s % cols;
    for (int64_t a = 0; a < 4; ++a) {
      offsets.push_back(static_cast<int64_t>(transitions.size()));
      if (cell(r, c) == 'G') {  // absorbing; never acted from in an episode
        transitions.push_back({1.0, s, 0.0, true});
        continue;
      }
      int64_t nr = r + kDr[a];
      int64_t nc = c + kDc[a];
      if (nr < 0 || nr >= rows || nc < 0 || nc >= cols || cell(nr, nc) == '#') {
        nr = r;
        nc = c;
      }
      const bool goal = cell(nr, nc) == 'G';
      transitions.push_back({1.0, nr * cols + nc, goal ? 1.0 : 0.0, goal});
    }
  }
  offsets.push_back(static_cast<int64_t>(transitions.size()));
  std::vector<double> initial(static_cast<size_t>(n_states), 0.0);
  initial[static_cast<size_t>(start)] = 1.0;
  return std::make_shared<const TransitionTable>(n_states, 4, std::move(offsets), std::move(transitions),
                                                 std::move(initial));
}

// Sutton & Barto (2018) Figure 8.2: 6 x 9, shortest path 14 steps.
inline std::vector<std::string> dyna_maze_layout() {
  return {".......#G",
          "..#....#.",
          "S.#....#.",
          "..#......",
          ".....#...",
          "........."};
}

// Figure 8.4: the gap on the right closes and one opens on the left.
inline std::vector<std::vector<std::string>> blocking_maze_layouts() {
  return {{"........G", ".........", ".........", "########.", ".........", "...S....."},
          {"........G", ".........", ".........", ".########", ".........", "...S....."}};
}

// Figure 8.5: a shorter path opens on the right; the long way round on the left stays open.
inline std::vector<std::vector<std::string>> shortcut_maze_layouts() {
  return {{"........G", ".........", ".........", ".########", ".........", "...S....."},
          {"........G", ".........", ".........", ".#######.", ".........", "...S....."}};
}

}  // namespace pymbrl::dyna
