#include "pymbrl/envs/minipacman.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using pymbrl::envs::MiniPacman;
using Ghost = MiniPacman::Ghost;
using State = MiniPacman::State;

constexpr int kStay = 0, kRight = 1, kUp = 2, kLeft = 3, kDown = 4;
constexpr int kDirRight = 0, kDirUp = 1, kDirLeft = 2;

// One step's outputs for a batch of n games.
struct Step {
  explicit Step(int64_t n)
      : frames(static_cast<size_t>(n) * MiniPacman::kFrameBytes),
        final_frames(frames.size()),
        rewards(static_cast<size_t>(n)),
        episode_return(static_cast<size_t>(n)),
        terminated(static_cast<size_t>(n)),
        truncated(static_cast<size_t>(n)),
        episode_length(static_cast<size_t>(n)) {}

  void run(MiniPacman& env, const std::vector<int64_t>& actions) {
    env.step(actions.data(), {frames.data(), rewards.data(), terminated.data(), truncated.data(), final_frames.data(),
                              episode_return.data(), episode_length.data()});
  }

  std::array<uint8_t, 3> pixel(int64_t i, int r, int c, bool final = false) const {
    const uint8_t* px = (final ? final_frames : frames).data() + i * MiniPacman::kFrameBytes + 3 * (r * MiniPacman::kCols + c);
    return {px[0], px[1], px[2]};
  }

  std::vector<uint8_t> frames, final_frames;
  std::vector<float> rewards, episode_return;
  std::vector<uint8_t> terminated, truncated;
  std::vector<int32_t> episode_length;
};

// One game, a helper to step it with one action and read its state.
struct Game {
  explicit Game(const std::string& mode = "regular", int64_t frame_cap = 1000, uint64_t seed = 7)
      : env(1, MiniPacman::mode(mode), frame_cap, seed), out(1) {}

  float step(int action) {
    out.run(env, {action});
    return out.rewards[0];
  }

  State state() const { return env.state(0); }
  void set(const State& s) { env.set_state(0, s); }

  MiniPacman env;
  Step out;
};

std::array<uint8_t, MiniPacman::kCells> no_food() { return {}; }

// Pacman at (pr, pc), one ghost at (gr, gc) facing `dir`, no food, no pills, on `level` (level 6
// and above: ghosts move on every step).
State placed(const State& base, int pr, int pc, int gr, int gc, int dir, int level = 6) {
  State s = base;
  s.pacman_row = pr;
  s.pacman_col = pc;
  s.ghosts = {Ghost{gr, gc, dir}};
  s.pills.clear();
  s.food = no_food();
  s.power = 0;
  s.level = level;
  s.timer = 0;
  return s;
}

// A well-mixed generator state (a few literal words would give correlated first draws).
pymbrl::Rng::State rng_state(uint64_t seed) { return pymbrl::Rng(seed).state(); }

int free_cells() {
  int n = 0;
  for (int r = 0; r < MiniPacman::kRows; ++r) {
    for (int c = 0; c < MiniPacman::kCols; ++c) n += !MiniPacman::is_wall(r, c);
  }
  return n;
}

int food_count(const State& s) {
  int n = 0;
  for (uint8_t f : s.food) n += f;
  return n;
}

TEST(MiniPacman, MapIsClosedAndEveryFreeCellHasAWayOut) {
  for (int c = 0; c < MiniPacman::kCols; ++c) EXPECT_TRUE(MiniPacman::is_wall(0, c) && MiniPacman::is_wall(14, c));
  for (int r = 0; r < MiniPacman::kRows; ++r) EXPECT_TRUE(MiniPacman::is_wall(r, 0) && MiniPacman::is_wall(r, 18));
  for (int r = 1; r < 14; ++r) {
    for (int c = 1; c < 18; ++c) {
      if (MiniPacman::is_wall(r, c)) continue;
      const int exits = !MiniPacman::is_wall(r - 1, c) + !MiniPacman::is_wall(r + 1, c) + !MiniPacman::is_wall(r, c - 1) +
                        !MiniPacman::is_wall(r, c + 1);
      EXPECT_GE(exits, 1) << r << "," << c;
    }
  }
  EXPECT_FALSE(MiniPacman::is_wall(1, 1));
  EXPECT_TRUE(MiniPacman::is_wall(1, 4));
  EXPECT_TRUE(MiniPacman::is_wall(7, 9));
}

TEST(MiniPacman, ModesHaveThePapersRewards) {
  const auto& avoid = MiniPacman::mode("avoid");
  EXPECT_DOUBLE_EQ(avoid.step_reward, 0.1);
  EXPECT_DOUBLE_EQ(avoid.food_reward, -0.1);
  EXPECT_DOUBLE_EQ(avoid.pill_reward, -5.0);
  EXPECT_DOUBLE_EQ(avoid.ghost_reward, -10.0);
  EXPECT_DOUBLE_EQ(avoid.death_reward, -20.0);
  EXPECT_TRUE(avoid.end_on_food);
  EXPECT_EQ(avoid.level_timer, 128);
  EXPECT_TRUE(MiniPacman::mode("hunt").end_on_ghosts);
  EXPECT_TRUE(MiniPacman::mode("ambush").end_on_ghosts);
  EXPECT_TRUE(MiniPacman::mode("rush").end_on_pills);
  EXPECT_DOUBLE_EQ(MiniPacman::mode("regular").ghost_reward, 5.0);
  EXPECT_EQ(MiniPacman::modes().size(), 5u);
  try {
    MiniPacman::mode("easy");
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "mode: expected one of 'regular', 'avoid', 'hunt', 'ambush', 'rush', got 'easy'");
  }
}

TEST(MiniPacman, RefusesBadConstructorArguments) {
  EXPECT_THROW(MiniPacman(0, MiniPacman::mode("regular"), 1000, 0), std::invalid_argument);
  EXPECT_THROW(MiniPacman(1, MiniPacman::mode("regular"), -1, 0), std::invalid_argument);
  MiniPacman env(2, MiniPacman::mode("regular"), 0, 0);
  EXPECT_THROW(env.state(2), std::out_of_range);
  EXPECT_THROW(env.reset(-1), std::out_of_range);
}

TEST(MiniPacman, ResetPlacesFoodPillsPacmanAndOneGhostAwayFromPacman) {
  MiniPacman env(200, MiniPacman::mode("regular"), 1000, 3);
  for (int64_t i = 0; i < env.num_envs(); ++i) {
    const State s = env.state(i);
    EXPECT_EQ(s.level, 1);
    EXPECT_EQ(s.power, 0);
    EXPECT_EQ(s.timer, 0);
    EXPECT_EQ(s.frame, 0);
    EXPECT_EQ(food_count(s), free_cells());
    EXPECT_EQ(s.pills.size(), 2u);
    for (const auto& p : s.pills) EXPECT_FALSE(MiniPacman::is_wall(p[0], p[1]));
    EXPECT_FALSE(MiniPacman::is_wall(s.pacman_row, s.pacman_col));
    ASSERT_EQ(s.ghosts.size(), 1u);
    const Ghost& g = s.ghosts[0];
    EXPECT_FALSE(MiniPacman::is_wall(g.row, g.col));
    const bool in_box = g.row >= s.pacman_row - 5 && g.row < s.pacman_row + 5 && g.col >= s.pacman_col - 5 &&
                        g.col < s.pacman_col + 5;
    EXPECT_FALSE(in_box) << "ghost (" << g.row << "," << g.col << ") pacman (" << s.pacman_row << "," << s.pacman_col << ")";
    EXPECT_GE(g.direction, 0);
    EXPECT_LT(g.direction, 4);
  }
}

TEST(MiniPacman, WallsBlockPacman) {
  Game g;
  g.set(placed(g.state(), 1, 1, 13, 17, kDirLeft));
  g.step(kUp);
  EXPECT_EQ(g.state().pacman_row, 1);
  EXPECT_EQ(g.state().pacman_col, 1);
  g.step(kLeft);
  EXPECT_EQ(g.state().pacman_col, 1);
  g.step(kRight);
  g.step(kRight);
  EXPECT_EQ(g.state().pacman_col, 3);
  g.step(kRight);  // (1, 4) is a wall
  EXPECT_EQ(g.state().pacman_col, 3);
  g.step(kDown);
  EXPECT_EQ(g.state().pacman_row, 2);
  g.step(kStay);
  EXPECT_EQ(g.state().pacman_row, 2);
  EXPECT_EQ(g.state().pacman_col, 3);
}

TEST(MiniPacman, FoodRewardsOnceAndIsRemoved) {
  Game g;
  State s = placed(g.state(), 3, 1, 13, 17, kDirLeft);
  s.food[3 * 19 + 2] = 1;
  s.food[13 * 19 + 1] = 1;  // keeps the level going
  g.set(s);
  EXPECT_FLOAT_EQ(g.step(kRight), 1.0f);
  EXPECT_EQ(g.state().food[3 * 19 + 2], 0);
  EXPECT_FLOAT_EQ(g.step(kLeft), 0.0f);
  EXPECT_FLOAT_EQ(g.step(kRight), 0.0f);
  EXPECT_EQ(g.state().level, 6);
}

TEST(MiniPacman, PillGivesPowerThatDrainsAndTurnsGhostsYellow) {
  Game g;
  State s = placed(g.state(), 3, 1, 13, 17, kDirLeft);
  s.food[3 * 19 + 2] = 1;
  s.food[13 * 19 + 1] = 1;
  s.pills = {{3, 2}, {11, 1}};
  g.set(s);
  EXPECT_FLOAT_EQ(g.step(kRight), 3.0f);  // food 1 + pill 2
  EXPECT_EQ(g.state().power, 20);
  EXPECT_EQ(g.state().pills.size(), 1u);
  const Ghost gh = g.state().ghosts[0];
  EXPECT_EQ(g.out.pixel(0, gh.row, gh.col), (std::array<uint8_t, 3>{255, 255, 0}));
  g.step(kStay);
  EXPECT_EQ(g.state().power, 19);
  for (int t = 0; t < 25; ++t) g.step(kStay);
  EXPECT_EQ(g.state().power, 0);
}

TEST(MiniPacman, PowerHalvesTheGhostsSpeed) {
  // Level 1: a ghost moves with probability 0.5, 0.25 under pill power. Pacman is far away.
  Game g;
  const State base = placed(g.state(), 13, 17, 1, 1, kDirLeft, 1);
  int moved[2] = {0, 0};
  const int trials = 4000;
  for (int powered = 0; powered < 2; ++powered) {
    for (int t = 0; t < trials; ++t) {
      State s = base;
      s.power = powered ? 20 : 0;
      s.rng = rng_state(static_cast<uint64_t>(t) * 2 + static_cast<uint64_t>(powered));
      g.set(s);
      g.step(kStay);
      const Ghost gh = g.state().ghosts[0];
      moved[powered] += gh.row != 1 || gh.col != 1;
    }
  }
  EXPECT_NEAR(moved[0] / double(trials), 0.5, 0.04);
  EXPECT_NEAR(moved[1] / double(trials), 0.25, 0.04);
}

TEST(MiniPacman, GhostAtAJunctionChasesPacmanAndFleesUnderPower) {
  // (3, 3) is a crossroads; the ghost came up from (4, 3), so it may go right, up or left.
  Game g;
  const int trials = 2000;
  int right = 0;
  for (int t = 0; t < trials; ++t) {
    State s = placed(g.state(), 3, 9, 3, 3, kDirUp);
    s.rng = rng_state(static_cast<uint64_t>(t));
    g.set(s);
    g.step(kStay);
    right += g.state().ghosts[0].col == 4;
  }
  // Towards Pacman except for the 5% random turns (a third of which also go right).
  EXPECT_NEAR(right / double(trials), 0.95 + 0.05 / 3, 0.02);
  for (int t = 0; t < 200; ++t) {
    State s = placed(g.state(), 3, 9, 3, 3, kDirUp);
    s.power = 20;
    s.rng = rng_state(static_cast<uint64_t>(t));
    g.set(s);
    g.step(kStay);
    const Ghost gh = g.state().ghosts[0];
    if (gh.row != 3 || gh.col != 3) {
      EXPECT_EQ(gh.col, 2);  // away from Pacman
      EXPECT_EQ(gh.direction, kDirLeft);
    }
  }
  // Pacman below the crossroads: a ghost heading right turns down towards him.
  State s = placed(g.state(), 9, 3, 3, 3, kDirRight);
  int down = 0;
  for (int t = 0; t < 100; ++t) {
    s.rng = rng_state(static_cast<uint64_t>(t) + 5000);
    g.set(s);
    g.step(kStay);
    down += g.state().ghosts[0].row == 4;
  }
  EXPECT_GE(down, 85);
}

TEST(MiniPacman, GhostFollowsCorridorsAndTurnsCorners) {
  Game g;
  // Heading left along row 1 into the corner (1, 1): right is back, so it turns down.
  g.set(placed(g.state(), 13, 17, 1, 2, kDirLeft));
  g.step(kStay);
  EXPECT_EQ(g.state().ghosts[0].col, 1);
  g.step(kStay);
  EXPECT_EQ(g.state().ghosts[0].row, 2);
  EXPECT_EQ(g.state().ghosts[0].col, 1);
  // (2, 1) is a vertical corridor: it keeps going down.
  g.step(kStay);
  EXPECT_EQ(g.state().ghosts[0].row, 3);
}

TEST(MiniPacman, EatingAllFoodStartsTheNextLevelWithMoreAndFasterGhosts) {
  Game g;
  State s = placed(g.state(), 3, 1, 13, 17, kDirLeft, 1);
  s.food[3 * 19 + 2] = 1;
  g.set(s);
  EXPECT_FLOAT_EQ(g.step(kRight), 1.0f);
  State after = g.state();
  EXPECT_EQ(after.level, 2);
  EXPECT_EQ(after.ghosts.size(), 1u);
  EXPECT_EQ(after.pills.size(), 2u);
  EXPECT_EQ(food_count(after), free_cells());  // Pacman landed before the new level was laid out
  EXPECT_DOUBLE_EQ(MiniPacman::ghost_speed(2), 0.6);
  // The level-2 ghost moves 60% of the time.
  int moved = 0;
  const int trials = 3000;
  for (int t = 0; t < trials; ++t) {
    State x = placed(after, 13, 17, 1, 1, kDirLeft, 2);
    x.rng = rng_state(static_cast<uint64_t>(t));
    g.set(x);
    g.step(kStay);
    moved += g.state().ghosts[0].row != 1 || g.state().ghosts[0].col != 1;
  }
  EXPECT_NEAR(moved / double(trials), 0.6, 0.04);
  // Level 2 -> 3: two ghosts.
  s = placed(after, 3, 1, 13, 17, kDirLeft, 2);
  s.food[3 * 19 + 2] = 1;
  g.set(s);
  g.step(kRight);
  EXPECT_EQ(g.state().level, 3);
  EXPECT_EQ(g.state().ghosts.size(), 2u);
  EXPECT_EQ(g.state().timer, 0);
  EXPECT_EQ(g.state().frame, after.frame + 1);
}

TEST(MiniPacman, DeathTerminatesWithTheDeathRewardOnceAndResetsTheGame) {
  Game g("hunt");
  State s = placed(g.state(), 5, 5, 5, 5, kDirRight, 3);
  s.ghosts.push_back(Ghost{5, 5, kDirLeft});  // two ghosts on him (level 3 has two): one death
  s.frame = 41;
  g.set(s);
  EXPECT_FLOAT_EQ(g.step(kStay), -20.0f);
  EXPECT_EQ(g.out.terminated[0], 1);
  EXPECT_EQ(g.out.truncated[0], 0);
  EXPECT_FLOAT_EQ(g.out.episode_return[0], -20.0f);
  EXPECT_EQ(g.out.episode_length[0], 42);
  EXPECT_EQ(g.out.pixel(0, 5, 5, /*final=*/true), (std::array<uint8_t, 3>{0, 255, 0}));
  const State fresh = g.state();
  EXPECT_EQ(fresh.frame, 0);
  EXPECT_EQ(fresh.level, 1);
  EXPECT_EQ(food_count(fresh), free_cells());
  EXPECT_EQ(g.out.pixel(0, fresh.pacman_row, fresh.pacman_col), (std::array<uint8_t, 3>{0, 255, 0}));
}

TEST(MiniPacman, GhostMovingOntoPacmanKillsHim) {
  Game g("avoid");
  g.set(placed(g.state(), 3, 5, 3, 4, kDirRight));  // corridor, speed 1 at level 6
  EXPECT_FLOAT_EQ(g.step(kStay), 0.1f - 20.0f);
  EXPECT_EQ(g.out.terminated[0], 1);
}

TEST(MiniPacman, PoweredPacmanEatsOneGhostPerStep) {
  Game g;
  State s = placed(g.state(), 5, 5, 5, 5, kDirRight, 3);
  s.ghosts.push_back(Ghost{5, 5, kDirLeft});
  s.power = 10;
  g.set(s);
  EXPECT_FLOAT_EQ(g.step(kStay), 5.0f);
  EXPECT_EQ(g.out.terminated[0], 0);
  EXPECT_EQ(g.state().ghosts.size(), 1u);
  EXPECT_EQ(g.state().ghosts[0].direction, kDirLeft);
  EXPECT_FLOAT_EQ(g.step(kStay), 5.0f);
  EXPECT_TRUE(g.state().ghosts.empty());
  EXPECT_EQ(g.state().level, 3);  // regular mode ends levels on food only
}

TEST(MiniPacman, HuntAndRushEndLevelsOnGhostsAndPills) {
  Game hunt("hunt");
  State s = placed(hunt.state(), 5, 5, 5, 5, kDirRight, 1);
  s.power = 3;
  hunt.set(s);
  EXPECT_FLOAT_EQ(hunt.step(kStay), 10.0f);
  EXPECT_EQ(hunt.state().level, 2);
  EXPECT_EQ(hunt.state().ghosts.size(), 1u);

  Game rush("rush");
  s = placed(rush.state(), 3, 1, 13, 17, kDirLeft, 1);
  s.pills = {{3, 2}};
  s.food[3 * 19 + 2] = 1;
  rush.set(s);
  EXPECT_FLOAT_EQ(rush.step(kRight), 10.0f - 0.1f);
  EXPECT_EQ(rush.state().level, 2);
  EXPECT_EQ(rush.state().pills.size(), 2u);
}

TEST(MiniPacman, AvoidEndsALevelAfter128Steps) {
  Game g("avoid");
  State s = placed(g.state(), 13, 17, 1, 1, kDirLeft, 1);
  s.food[13 * 19 + 1] = 1;
  s.timer = 127;
  g.set(s);
  EXPECT_FLOAT_EQ(g.step(kStay), 0.1f);
  EXPECT_EQ(g.state().level, 2);
  EXPECT_EQ(g.state().timer, 0);
}

TEST(MiniPacman, FrameCapTruncates) {
  // Ghosts start at least 5 moves from Pacman, so a Pacman who stays survives 4 steps.
  MiniPacman env(16, MiniPacman::mode("regular"), 4, 11);
  Step out(16);
  const std::vector<int64_t> stay(16, kStay);
  for (int t = 1; t <= 4; ++t) {
    out.run(env, stay);
    for (int i = 0; i < 16; ++i) {
      EXPECT_EQ(out.terminated[static_cast<size_t>(i)], 0);
      EXPECT_EQ(out.truncated[static_cast<size_t>(i)], t == 4 ? 1 : 0);
      EXPECT_EQ(out.episode_length[static_cast<size_t>(i)], t == 4 ? 4 : 0);
    }
  }
  for (int i = 0; i < 16; ++i) EXPECT_EQ(env.state(i).frame, 0);
}

TEST(MiniPacman, SameSeedSameTrajectoriesOtherSeedOthers) {
  // Game 0's frames and rewards under the same actions, for a batch of n games.
  auto run = [](uint64_t seed, int64_t n) {
    MiniPacman env(n, MiniPacman::mode("regular"), 1000, seed);
    Step out(n);
    pymbrl::Rng policy(5);
    std::vector<uint8_t> trace;
    std::vector<int64_t> actions(3);
    for (int t = 0; t < 300; ++t) {
      for (auto& a : actions) a = static_cast<int64_t>(policy.uniform_int(5));
      out.run(env, actions);
      trace.insert(trace.end(), out.frames.begin(), out.frames.begin() + MiniPacman::kFrameBytes);
      const auto* r = reinterpret_cast<const uint8_t*>(out.rewards.data());
      trace.insert(trace.end(), r, r + sizeof(float));
    }
    return trace;
  };
  EXPECT_EQ(run(42, 3), run(42, 3));
  EXPECT_EQ(run(42, 3), run(42, 1));  // a game's stream does not depend on the batch size
  EXPECT_NE(run(42, 3), run(43, 3));
}

TEST(MiniPacman, ThreadsChangeNothingButTheSpeed) {
  const int64_t n = 600;
  MiniPacman one(n, MiniPacman::mode("avoid"), 1000, 8), two(n, MiniPacman::mode("avoid"), 1000, 8, 2);
  MiniPacman capped(n, MiniPacman::mode("avoid"), 1000, 8, 64);
  EXPECT_EQ(one.num_threads(), 1);
  EXPECT_EQ(two.num_threads(), 2);
  EXPECT_EQ(capped.num_threads(), 4);  // 600 games, at least 128 each
  Step a(n), b(n), c(n);
  pymbrl::Rng policy(1);
  std::vector<int64_t> actions(static_cast<size_t>(n));
  for (int t = 0; t < 200; ++t) {
    for (auto& x : actions) x = static_cast<int64_t>(policy.uniform_int(5));
    a.run(one, actions);
    b.run(two, actions);
    c.run(capped, actions);
    ASSERT_EQ(a.frames, b.frames);
    ASSERT_EQ(a.rewards, b.rewards);
    ASSERT_EQ(a.terminated, b.terminated);
    ASSERT_EQ(a.final_frames, b.final_frames);
    ASSERT_EQ(a.episode_return, b.episode_return);
    ASSERT_EQ(a.frames, c.frames);
  }
  EXPECT_THROW(MiniPacman(1, MiniPacman::mode("avoid"), 1000, 8, 0), std::invalid_argument);
  EXPECT_EQ(MiniPacman(100, MiniPacman::mode("avoid"), 1000, 8, 2).num_threads(), 1);
}

TEST(MiniPacman, GamesOfABatchDiffer) {
  MiniPacman env(2, MiniPacman::mode("regular"), 1000, 0);
  const State a = env.state(0), b = env.state(1);
  EXPECT_FALSE(a.pacman_row == b.pacman_row && a.pacman_col == b.pacman_col && a.pills == b.pills &&
               a.ghosts[0].row == b.ghosts[0].row && a.ghosts[0].col == b.ghosts[0].col);
}

TEST(MiniPacman, FramesColourEveryObject) {
  Game g;
  State s = placed(g.state(), 13, 17, 1, 1, kDirLeft, 1);
  s.food[3 * 19 + 5] = 1;
  s.food[1 * 19 + 1] = 1;  // under the ghost
  s.pills = {{11, 1}};
  g.set(s);
  std::vector<uint8_t> frame(MiniPacman::kFrameBytes);
  g.env.render(0, frame.data());
  auto px = [&](int r, int c) {
    const uint8_t* p = frame.data() + 3 * (r * 19 + c);
    return std::array<uint8_t, 3>{p[0], p[1], p[2]};
  };
  EXPECT_EQ(px(13, 17), (std::array<uint8_t, 3>{0, 255, 0}));
  EXPECT_EQ(px(1, 1), (std::array<uint8_t, 3>{255, 0, 0}));
  EXPECT_EQ(px(11, 1), (std::array<uint8_t, 3>{0, 255, 255}));
  EXPECT_EQ(px(3, 5), (std::array<uint8_t, 3>{0, 0, 255}));
  EXPECT_EQ(px(0, 0), (std::array<uint8_t, 3>{255, 255, 255}));
  EXPECT_EQ(px(3, 6), (std::array<uint8_t, 3>{0, 0, 0}));
  // Edibility power / 20 shades red to yellow; a ghost is drawn over a pill.
  s.power = 10;
  s.pills = {{1, 1}};
  g.set(s);
  g.env.render(0, frame.data());
  EXPECT_EQ(px(1, 1), (std::array<uint8_t, 3>{255, 128, 0}));  // round(127.5)
  s.power = 1;
  g.set(s);
  g.env.render(0, frame.data());
  EXPECT_EQ(px(1, 1), (std::array<uint8_t, 3>{255, 13, 0}));  // round(12.75)
  // Pacman over a ghost.
  s.ghosts[0] = Ghost{13, 17, kDirLeft};
  g.set(s);
  g.env.render(0, frame.data());
  EXPECT_EQ(px(13, 17), (std::array<uint8_t, 3>{0, 255, 0}));
}

TEST(MiniPacman, RefusedStepChangesNothing) {
  MiniPacman env(3, MiniPacman::mode("regular"), 1000, 9);
  Step out(3);
  const State before = env.state(0);
  try {
    out.run(env, {1, 2, 5});
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "actions: expected integers in [0, 5), got 5 at index 2");
  }
  EXPECT_THROW(out.run(env, {-1, 0, 0}), std::invalid_argument);
  const State after = env.state(0);
  EXPECT_EQ(after.frame, before.frame);
  EXPECT_EQ(after.rng, before.rng);
  EXPECT_EQ(after.pacman_row, before.pacman_row);
  EXPECT_EQ(after.pacman_col, before.pacman_col);
}

TEST(MiniPacman, StateRoundTripReplaysTheGame) {
  MiniPacman env(1, MiniPacman::mode("ambush"), 1000, 21);
  Step a(1), b(1);
  for (int t = 0; t < 30; ++t) a.run(env, {t % 5});
  const State snapshot = env.state(0);
  std::vector<uint8_t> first;
  for (int t = 0; t < 200; ++t) {
    a.run(env, {(t * 7) % 5});
    first.insert(first.end(), a.frames.begin(), a.frames.end());
  }
  env.set_state(0, snapshot);
  std::vector<uint8_t> second;
  for (int t = 0; t < 200; ++t) {
    b.run(env, {(t * 7) % 5});
    second.insert(second.end(), b.frames.begin(), b.frames.end());
  }
  EXPECT_EQ(first, second);
}

TEST(MiniPacman, SetStateRefusesImpossibleStates) {
  MiniPacman env(1, MiniPacman::mode("regular"), 1000, 0);
  const State ok = env.state(0);
  State s = ok;
  s.ghosts = {Ghost{0, 0, 0}};
  try {
    env.set_state(0, s);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "ghosts: expected a free cell of the 15x19 map, got (0, 0)");
  }
  s = ok;
  s.ghosts = {Ghost{1, 1, 4}};
  EXPECT_THROW(env.set_state(0, s), std::invalid_argument);
  s = ok;
  s.pacman_col = 19;
  EXPECT_THROW(env.set_state(0, s), std::invalid_argument);
  s = ok;
  s.food[0] = 1;
  EXPECT_THROW(env.set_state(0, s), std::invalid_argument);
  s = ok;
  s.power = 21;
  EXPECT_THROW(env.set_state(0, s), std::invalid_argument);
  s = ok;
  s.pills = {{1, 1}, {1, 2}, {1, 3}};
  EXPECT_THROW(env.set_state(0, s), std::invalid_argument);
  s = ok;
  s.rng = {0, 0, 0, 0};
  EXPECT_THROW(env.set_state(0, s), std::invalid_argument);
  s = ok;
  s.level = 0;
  EXPECT_THROW(env.set_state(0, s), std::invalid_argument);
  // Nothing was changed by the refusals.
  EXPECT_EQ(env.state(0).rng, ok.rng);
  EXPECT_EQ(env.state(0).ghosts.size(), ok.ghosts.size());
}

// The message of the invalid_argument that set_state(0, s) throws ("" if it accepts s).
std::string refusal(MiniPacman& env, const State& s) {
  try {
    env.set_state(0, s);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(MiniPacman, SetStateBoundsEveryCounterAndLeavesTheGameUnchanged) {
  MiniPacman env(1, MiniPacman::mode("avoid"), 1000, 3);
  Step out(1);
  for (int t = 0; t < 20; ++t) out.run(env, {t % 5});
  const State ok = env.state(0);
  auto with = [&](auto change) {
    State s = ok;
    change(s);
    return s;
  };
  // level 2e9 used to be accepted and lay out a ghost per level at the next level change.
  EXPECT_EQ(refusal(env, with([](State& s) { s.level = 2000000000; })).rfind("level: expected an integer in [1, 1000]", 0), 0u);
  EXPECT_EQ(refusal(env, with([](State& s) { s.level = 1; s.ghosts.assign(2, Ghost{1, 1, 0}); })),
            "ghosts: expected at most 1 on level 1, got 2");
  EXPECT_EQ(refusal(env, with([](State& s) { s.frame = 1000; })).rfind("frame: expected an integer in [0, 1000)", 0), 0u);
  EXPECT_EQ(refusal(env, with([](State& s) { s.frame = INT64_MAX; })).rfind("frame:", 0), 0u);
  EXPECT_EQ(refusal(env, with([](State& s) { s.timer = 128; })).rfind("timer: expected an integer in [0, 128)", 0), 0u);
  EXPECT_EQ(refusal(env, with([](State& s) { s.episode_return = std::nan(""); })).rfind("episode_return:", 0), 0u);
  EXPECT_EQ(refusal(env, with([](State& s) { s.episode_return = INFINITY; })).rfind("episode_return:", 0), 0u);
  // A finite return that steps could not have earned (and float32 could not hold) is refused too.
  EXPECT_EQ(refusal(env, with([](State& s) { s.episode_return = 1e300; })).rfind("episode_return:", 0), 0u);
  EXPECT_EQ(refusal(env, with([](State& s) { s.frame = 0; s.episode_return = 0.1; })).rfind("episode_return:", 0), 0u);
  EXPECT_EQ(env.state(0).level, ok.level);
  EXPECT_EQ(env.state(0).frame, ok.frame);
  EXPECT_EQ(env.state(0).timer, ok.timer);
  EXPECT_EQ(env.state(0).episode_return, ok.episode_return);
  EXPECT_EQ(env.state(0).rng, ok.rng);
  // The largest values allowed are accepted and step.
  EXPECT_EQ(refusal(env, with([](State& s) { s.level = MiniPacman::kMaxLevel; s.frame = 999; s.timer = 127; })), "");
  out.run(env, {0});
}

TEST(MiniPacman, LevelsStopRisingAtTheMaximum) {
  Game g;
  State s = placed(g.state(), 3, 1, 13, 17, kDirLeft, MiniPacman::kMaxLevel);
  s.food[3 * 19 + 2] = 1;
  g.set(s);
  g.step(kRight);  // the last food: the next level would be kMaxLevel + 1
  EXPECT_EQ(g.state().level, MiniPacman::kMaxLevel);
  EXPECT_EQ(g.state().ghosts.size(), static_cast<size_t>(MiniPacman::ghosts_on_level(MiniPacman::kMaxLevel)));
}

TEST(MiniPacman, EpisodesWithoutAFrameCapStopAtTheLargestLength) {
  Game g("regular", 0);
  State s = placed(g.state(), 13, 17, 1, 1, kDirLeft, 1);
  s.ghosts.clear();
  s.frame = MiniPacman::kMaxFrames - 1;
  g.set(s);
  g.step(kStay);
  EXPECT_EQ(g.out.truncated[0], 1);
  EXPECT_EQ(g.out.episode_length[0], INT32_MAX);  // used to wrap negative after 2^31 steps
  EXPECT_EQ(g.state().frame, 0);
}

TEST(MiniPacman, RefusesHugeBatchesAndFrameCaps) {
  EXPECT_THROW(MiniPacman(MiniPacman::kMaxEnvs + 1, MiniPacman::mode("regular"), 0, 0), std::invalid_argument);
  EXPECT_THROW(MiniPacman(INT64_MAX, MiniPacman::mode("regular"), 0, 0), std::invalid_argument);
  EXPECT_THROW(MiniPacman(1, MiniPacman::mode("regular"), MiniPacman::kMaxFrames + 1, 0), std::invalid_argument);
}

TEST(MiniPacman, RandomPlayRegularEarnsFoodAndDies) {
  MiniPacman env(64, MiniPacman::mode("regular"), 1000, 1);
  Step out(64);
  pymbrl::Rng policy(2);
  std::vector<int64_t> actions(64);
  int ended = 0, food_steps = 0;
  for (int t = 0; t < 500; ++t) {
    for (auto& a : actions) a = static_cast<int64_t>(policy.uniform_int(5));
    out.run(env, actions);
    for (int i = 0; i < 64; ++i) {
      const float r = out.rewards[static_cast<size_t>(i)];
      // Any sum of food 1, pill 2 and one ghost 5 (a pill and the ghost beside it in one step).
      EXPECT_TRUE(r == 0.0f || r == 1.0f || r == 2.0f || r == 3.0f || r == 5.0f || r == 6.0f || r == 7.0f ||
                  r == 8.0f) << r;
      food_steps += r == 1.0f;
      ended += out.terminated[static_cast<size_t>(i)];
    }
  }
  EXPECT_GT(food_steps, 1000);
  EXPECT_GT(ended, 100);
}

}  // namespace
