// MiniPacman, the 15x19 maze game of Weber et al. (2017), "Imagination-Augmented Agents for Deep
// Reinforcement Learning" (DeepMind's PillEater), as a batch of independent games stepped in one
// call. Each game owns its generator, so a batch reproduces bit for bit from one seed whatever
// order its games are stepped in, and a game that ends is reset inside the same step (same-step
// autoreset): the caller gets both the episode's last frame and the next episode's first.
//
// One game step takes ~0.2 us, so a batch steps at ~4.5M env steps/s on one thread. Large batches
// may be split over threads (games are independent, so the result is the same). Measured on a
// 2-core VM: with the second core free, 2 threads gave 1.2-1.9x at N = 256..4096 and nothing at
// N = 64, where waking the second thread costs as much as the games it would take; with another
// process on that core, 0.87-0.94x. So it is opt-in (num_threads = 1 by default).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/rng.h"
#include "pymbrl/thread_pool.h"

namespace pymbrl::envs {

class MiniPacman {
 public:
  static constexpr int kRows = 15;
  static constexpr int kCols = 19;
  static constexpr int kCells = kRows * kCols;
  static constexpr int kFrameBytes = kCells * 3;  // one uint8 RGB frame [kRows, kCols, 3]
  static constexpr int kNumActions = 5;           // 0 stay, 1 right, 2 up, 3 left, 4 down
  static constexpr int kNumPills = 2;
  static constexpr int kPillDuration = 20;
  // Ghosts are placed outside the box [p - kGhostClearance, p + kGhostClearance) around Pacman.
  static constexpr int kGhostClearance = 5;
  // At a junction a hunting ghost takes a random direction this often instead of chasing.
  static constexpr double kGhostWander = 0.05;
  // A thread takes at least this many games of a step (see the top of the file).
  static constexpr int64_t kMinGamesPerThread = 128;
  // Limits that keep every counter and allocation bounded whatever the steps and restored states.
  // Games in a batch: each step hands out two frame arrays of num_envs * 855 bytes (56 MB here).
  static constexpr int64_t kMaxEnvs = int64_t{1} << 16;
  // Levels stop rising here: level L has 1 + (L - 1) / 2 ghosts (500 at most, so a state's ghost
  // list stays small), and the level counter can never overflow.
  static constexpr int32_t kMaxLevel = 1000;
  // Steps of one episode: an episode is truncated here even with frame_cap 0, so its length fits
  // the int32 episode_length output and the step counters never overflow.
  static constexpr int64_t kMaxFrames = INT32_MAX;

  // Directions 0 right, 1 up, 2 left, 3 down (action a moves Pacman in direction a - 1); the
  // reverse of d is (d + 2) % 4.
  static constexpr int kDRow[4] = {0, -1, 0, 1};
  static constexpr int kDCol[4] = {1, 0, -1, 0};

  // 1 = wall.
  static constexpr const char* kMap[kRows] = {
      "1111111111111111111",
      "1000100000000010001",
      "1010101111111010101",
      "1000000000000000001",
      "1010101111111010101",
      "1010000000000000101",
      "1011110111110111101",
      "1000000111110000001",
      "1011110111110111101",
      "1010000000000000101",
      "1010101111111010101",
      "1000000000000000001",
      "1010101111111010101",
      "1000100000000010001",
      "1111111111111111111",
  };

  // Rewards and the events that end a level. The five modes of the paper are in modes().
  struct Mode {
    std::string name;
    double step_reward = 0, food_reward = 0, pill_reward = 0, ghost_reward = 0, death_reward = 0;
    bool end_on_food = false, end_on_pills = false, end_on_ghosts = false;
    int64_t level_timer = -1;  // a level ends after this many steps; -1: never
  };

  static const std::vector<Mode>& modes() {
    static const std::vector<Mode> all = {
        {"regular", 0.0, 1.0, 2.0, 5.0, 0.0, true, false, false, -1},
        {"avoid", 0.1, -0.1, -5.0, -10.0, -20.0, true, false, false, 128},
        {"hunt", 0.0, 0.0, 1.0, 10.0, -20.0, false, false, true, -1},
        {"ambush", 0.0, -0.1, 0.0, 10.0, -20.0, false, false, true, -1},
        {"rush", 0.0, -0.1, 10.0, 0.0, 0.0, false, true, false, -1},
    };
    return all;
  }

  static const Mode& mode(const std::string& name) {
    std::string names;
    for (const Mode& m : modes()) {
      if (m.name == name) return m;
      names += (names.empty() ? "'" : ", '") + m.name + "'";
    }
    throw std::invalid_argument("mode: expected one of " + names + ", got '" + name + "'");
  }

  struct Ghost {
    int32_t row = 0, col = 0, direction = 0;
  };

  // Everything one game is: read it, change it, write it back (tests place actors this way; the
  // Python layer snapshots and restores games with it). Restoring a state, rng included, replays
  // the game bit for bit.
  struct State {
    int32_t pacman_row = 0, pacman_col = 0;
    std::vector<Ghost> ghosts;
    std::vector<std::array<int32_t, 2>> pills;  // (row, col) of the pills left, in the order they are checked
    std::array<uint8_t, kCells> food{};         // row-major, 1 where food is left
    int32_t power = 0;                          // steps of pill power left
    int32_t level = 1;
    int64_t timer = 0;  // steps into the level
    int64_t frame = 0;  // steps into the episode
    double episode_return = 0;
    Rng::State rng{};
  };

  // Caller-owned outputs of one step over all N games (C order).
  struct StepBuffers {
    uint8_t* frames = nullptr;          // [N, 15, 19, 3]: after the step; a new episode's first frame where one ended
    float* rewards = nullptr;           // [N]
    uint8_t* terminated = nullptr;      // [N]: Pacman died
    uint8_t* truncated = nullptr;       // [N]: the frame cap was reached (never together with terminated)
    uint8_t* final_frames = nullptr;    // [N, 15, 19, 3]: the last frame of an episode that ended; zeros elsewhere
    float* episode_return = nullptr;    // [N]: the ended episode's return; 0 elsewhere
    int32_t* episode_length = nullptr;  // [N]: the ended episode's steps; 0 elsewhere
  };

  // num_envs in [1, kMaxEnvs]. frame_cap in [0, kMaxFrames]: an episode is truncated after this
  // many steps; 0: after kMaxFrames. num_threads: threads a step may use (the calling thread
  // included), each taking at least kMinGamesPerThread games.
  MiniPacman(int64_t num_envs, Mode mode, int64_t frame_cap, uint64_t seed, int num_threads = 1)
      : mode_(std::move(mode)) {
    if (num_envs < 1 || num_envs > kMaxEnvs) {
      throw std::invalid_argument("num_envs: expected an integer in [1, " + std::to_string(kMaxEnvs) + "], got " +
                                  std::to_string(num_envs));
    }
    if (num_threads < 1) {
      throw std::invalid_argument("num_threads: expected an integer >= 1, got " + std::to_string(num_threads));
    }
    if (frame_cap < 0 || frame_cap > kMaxFrames) {
      throw std::invalid_argument("frame_cap: expected an integer in [0, " + std::to_string(kMaxFrames) + "], got " +
                                  std::to_string(frame_cap));
    }
    if (mode_.level_timer < -1 || mode_.level_timer == 0 || mode_.level_timer > kMaxFrames) {
      throw std::invalid_argument("level_timer: expected -1 or an integer in [1, " + std::to_string(kMaxFrames) +
                                  "], got " + std::to_string(mode_.level_timer));
    }
    // Every reward of a step at once: a bound on how fast a return can grow.
    for (double r : {mode_.step_reward, mode_.food_reward, mode_.pill_reward, mode_.ghost_reward, mode_.death_reward}) {
      if (!std::isfinite(r) || std::abs(r) > 1e6) {
        throw std::invalid_argument("mode: expected finite rewards within +-1e6, got " + std::to_string(r));
      }
      max_step_reward_ += std::abs(static_cast<double>(static_cast<float>(r)));
    }
    frame_cap_ = frame_cap;
    games_.resize(static_cast<size_t>(num_envs));
    const auto threads = static_cast<int>(std::min<int64_t>(num_threads, std::max<int64_t>(1, num_envs / kMinGamesPerThread)));
    if (threads > 1) pool_ = std::make_unique<ThreadPool>(threads);
    seed_all(seed);
    reset_all();
  }

  int64_t num_envs() const { return static_cast<int64_t>(games_.size()); }
  const Mode& mode() const { return mode_; }
  int64_t frame_cap() const { return frame_cap_; }
  // Threads a step uses: num_threads, capped so that each has kMinGamesPerThread games.
  int num_threads() const { return pool_ ? pool_->size() : 1; }

  static bool is_wall(int row, int col) { return maze().wall[static_cast<size_t>(row * kCols + col)] != 0; }

  // Game i draws from derive_seed(seed, i): games are independent and a batch of N reproduces the
  // first games of a larger batch with the same seed.
  void seed_all(uint64_t seed) {
    for (size_t i = 0; i < games_.size(); ++i) games_[i].rng.reseed(derive_seed(seed, i));
  }

  // A new episode for game i (level 1), drawn from its generator.
  void reset(int64_t i) { reset_game(game(i, "index")); }

  void reset_all() {
    for (Game& g : games_) reset_game(g);
  }

  // Steps every game with actions[i] in [0, 5); see StepBuffers. Nothing changes if an action is
  // out of range.
  void step(const int64_t* actions, const StepBuffers& out) {
    const int64_t n = num_envs();
    for (int64_t i = 0; i < n; ++i) {
      if (actions[i] < 0 || actions[i] >= kNumActions) {
        throw std::invalid_argument("actions: expected integers in [0, " + std::to_string(kNumActions) + "), got " +
                                    std::to_string(actions[i]) + " at index " + std::to_string(i));
      }
    }
    if (!pool_) {
      step_games(actions, out, 0, n);
      return;
    }
    pool_->parallel_for(n, [&](int64_t lo, int64_t hi) { step_games(actions, out, lo, hi); });
  }

  // The current frame of game i into out [15, 19, 3].
  void render(int64_t i, uint8_t* out) const { render(game(i, "index"), out); }

  State state(int64_t i) const {
    const Game& g = game(i, "index");
    State s = g.s;
    s.rng = g.rng.state();
    return s;
  }

  // Replaces game i's state after checking every field (nothing changes if one is refused):
  // actors and pills on free cells, ghost directions in [0, 4); level in [1, kMaxLevel] with at
  // most ghosts_on_level(level) ghosts; at most 2 pills; food 0/1 and only on free cells; power in
  // [0, 20]; frame in [0, cap) where cap is frame_cap (kMaxFrames if 0), as after any step; timer
  // in [0, level_timer) in a mode with a level timer, else in [0, kMaxFrames]; a finite
  // episode_return no larger in magnitude than `frame` steps of every reward of the mode at once;
  // a generator state that is not all zeros. These bounds are those no sequence of steps leaves,
  // so that no later step can overflow a counter or hand out a non-finite return.
  void set_state(int64_t i, const State& s) {
    Game& g = game(i, "index");
    check_cell(s.pacman_row, s.pacman_col, "pacman");
    if (s.level < 1 || s.level > kMaxLevel) {
      throw std::invalid_argument("level: expected an integer in [1, " + std::to_string(kMaxLevel) + "], got " +
                                  std::to_string(s.level));
    }
    if (s.ghosts.size() > static_cast<size_t>(ghosts_on_level(s.level))) {
      throw std::invalid_argument("ghosts: expected at most " + std::to_string(ghosts_on_level(s.level)) +
                                  " on level " + std::to_string(s.level) + ", got " + std::to_string(s.ghosts.size()));
    }
    for (const Ghost& gh : s.ghosts) {
      check_cell(gh.row, gh.col, "ghosts");
      if (gh.direction < 0 || gh.direction > 3) {
        throw std::invalid_argument("ghosts: expected directions in [0, 4), got " + std::to_string(gh.direction));
      }
    }
    if (s.pills.size() > static_cast<size_t>(kNumPills)) {
      throw std::invalid_argument("pills: expected at most " + std::to_string(kNumPills) + ", got " +
                                  std::to_string(s.pills.size()));
    }
    for (const auto& p : s.pills) check_cell(p[0], p[1], "pills");
    int food_left = 0;
    for (int c = 0; c < kCells; ++c) {
      if (s.food[static_cast<size_t>(c)] > 1 || (s.food[static_cast<size_t>(c)] && maze().wall[static_cast<size_t>(c)])) {
        throw std::invalid_argument("food: expected 0/1 and no food on walls, got " +
                                    std::to_string(s.food[static_cast<size_t>(c)]) + " at cell (" +
                                    std::to_string(c / kCols) + ", " + std::to_string(c % kCols) + ")");
      }
      food_left += s.food[static_cast<size_t>(c)];
    }
    if (s.power < 0 || s.power > kPillDuration) {
      throw std::invalid_argument("power: expected an integer in [0, 20], got " + std::to_string(s.power));
    }
    const int64_t frame_limit = frame_cap_ > 0 ? frame_cap_ : kMaxFrames;
    if (s.frame < 0 || s.frame >= frame_limit) {
      throw std::invalid_argument("frame: expected an integer in [0, " + std::to_string(frame_limit) + "), got " +
                                  std::to_string(s.frame));
    }
    const int64_t timer_limit = mode_.level_timer > 0 ? mode_.level_timer : kMaxFrames + 1;
    if (s.timer < 0 || s.timer >= timer_limit) {
      throw std::invalid_argument("timer: expected an integer in [0, " + std::to_string(timer_limit) + "), got " +
                                  std::to_string(s.timer));
    }
    // The slack covers the rounding of each step's reward to float.
    const double return_limit = static_cast<double>(s.frame) * max_step_reward_ * (1.0 + 1e-6);
    if (!std::isfinite(s.episode_return) || std::abs(s.episode_return) > return_limit) {
      throw std::invalid_argument("episode_return: expected a finite number within +-" + std::to_string(return_limit) +
                                  " (frame " + std::to_string(s.frame) + " steps of at most " +
                                  std::to_string(max_step_reward_) + "), got " + std::to_string(s.episode_return));
    }
    if (s.rng[0] == 0 && s.rng[1] == 0 && s.rng[2] == 0 && s.rng[3] == 0) {
      throw std::invalid_argument("rng: expected a state with a non-zero word (all zeros never changes), got all zeros");
    }
    g.s = s;
    g.rng.set_state(s.rng);
    g.food_left = food_left;
  }

  // The ghosts' chance of moving on a step of level L (halved under pill power); from level 6 on
  // they move on every step.
  static double ghost_speed(int32_t level) { return 0.5 + 0.1 * (level - 1); }
  static int ghosts_on_level(int32_t level) { return 1 + (level - 1) / 2; }

 private:
  struct Maze {
    std::array<uint8_t, kCells> wall{};
    std::array<uint8_t, kCells> open{};  // bit d: the neighbour in direction d is free
    std::vector<int32_t> free_cells;     // row-major
  };

  static const Maze& maze() {
    static const Maze m = [] {
      Maze m;
      for (int r = 0; r < kRows; ++r) {
        for (int c = 0; c < kCols; ++c) m.wall[static_cast<size_t>(r * kCols + c)] = kMap[r][c] == '1';
      }
      for (int r = 0; r < kRows; ++r) {
        for (int c = 0; c < kCols; ++c) {
          const int cell = r * kCols + c;
          if (m.wall[static_cast<size_t>(cell)]) continue;
          m.free_cells.push_back(cell);
          // The border is all wall, so a free cell's neighbours are on the map.
          for (int d = 0; d < 4; ++d) {
            if (!m.wall[static_cast<size_t>((r + kDRow[d]) * kCols + c + kDCol[d])]) m.open[static_cast<size_t>(cell)] |= 1 << d;
          }
        }
      }
      return m;
    }();
    return m;
  }

  struct Game {
    State s;
    Rng rng;
    int32_t food_left = 0;
  };

  struct Outcome {
    float reward;
    bool terminated, truncated;
  };

  // Games [lo, hi): they touch only their own game and rows of the buffers.
  void step_games(const int64_t* actions, const StepBuffers& out, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      Game& g = games_[static_cast<size_t>(i)];
      const Outcome o = advance(g, static_cast<int>(actions[i]));
      out.rewards[i] = o.reward;
      out.terminated[i] = o.terminated;
      out.truncated[i] = o.truncated;
      if (o.terminated || o.truncated) {
        render(g, out.final_frames + i * kFrameBytes);
        out.episode_return[i] = static_cast<float>(g.s.episode_return);
        out.episode_length[i] = static_cast<int32_t>(g.s.frame);
        reset_game(g);
      } else {
        // Zeros, not stale memory: the same bytes every run.
        std::memset(out.final_frames + i * kFrameBytes, 0, kFrameBytes);
        out.episode_return[i] = 0.0f;
        out.episode_length[i] = 0;
      }
      render(g, out.frames + i * kFrameBytes);
    }
  }

  Game& game(int64_t i, const char* name) {
    if (i < 0 || i >= num_envs()) {
      throw std::out_of_range(std::string(name) + ": expected an integer in [0, " + std::to_string(num_envs()) +
                              "), got " + std::to_string(i));
    }
    return games_[static_cast<size_t>(i)];
  }
  const Game& game(int64_t i, const char* name) const { return const_cast<MiniPacman*>(this)->game(i, name); }

  static void check_cell(int32_t row, int32_t col, const char* name) {
    if (row < 0 || row >= kRows || col < 0 || col >= kCols || is_wall(row, col)) {
      throw std::invalid_argument(std::string(name) + ": expected a free cell of the 15x19 map, got (" +
                                  std::to_string(row) + ", " + std::to_string(col) + ")");
    }
  }

  void reset_game(Game& g) {
    g.s.level = 1;
    g.s.frame = 0;
    g.s.episode_return = 0.0;
    start_level(g);
  }

  // Food everywhere; pills, Pacman and ghosts drawn in that order from the game's generator.
  void start_level(Game& g) {
    const Maze& m = maze();
    State& s = g.s;
    for (int c = 0; c < kCells; ++c) s.food[static_cast<size_t>(c)] = !m.wall[static_cast<size_t>(c)];
    const uint64_t n_free = m.free_cells.size();
    g.food_left = static_cast<int32_t>(n_free);
    s.pills.clear();
    for (int k = 0; k < kNumPills; ++k) {
      const int32_t cell = m.free_cells[g.rng.uniform_int(n_free)];
      s.pills.push_back({cell / kCols, cell % kCols});
    }
    const int32_t pac = m.free_cells[g.rng.uniform_int(n_free)];
    s.pacman_row = pac / kCols;
    s.pacman_col = pac % kCols;
    // Free cells outside the box [p - 5, p + 5) around Pacman; never empty on this map.
    std::array<int32_t, kCells> allowed;
    uint64_t n_allowed = 0;
    for (int32_t cell : m.free_cells) {
      const int r = cell / kCols, c = cell % kCols;
      const bool near = r >= s.pacman_row - kGhostClearance && r < s.pacman_row + kGhostClearance &&
                        c >= s.pacman_col - kGhostClearance && c < s.pacman_col + kGhostClearance;
      if (!near) allowed[n_allowed++] = cell;
    }
    const int n_ghosts = ghosts_on_level(s.level);
    s.ghosts.clear();
    for (int k = 0; k < n_ghosts; ++k) {
      const int32_t cell = allowed[g.rng.uniform_int(n_allowed)];
      const int32_t direction = static_cast<int32_t>(g.rng.uniform_int(4));
      s.ghosts.push_back({cell / kCols, cell % kCols, direction});
    }
    s.power = 0;
    s.timer = 0;
  }

  void next_level(Game& g) {
    if (g.s.level < kMaxLevel) ++g.s.level;
    start_level(g);
  }

  Outcome advance(Game& g, int action) {
    State& s = g.s;
    const Maze& m = maze();
    ++s.frame;
    double reward = mode_.step_reward;
    ++s.timer;
    if (s.power > 0) --s.power;

    if (action > 0) {
      const int d = action - 1;
      if (m.open[static_cast<size_t>(s.pacman_row * kCols + s.pacman_col)] >> d & 1) {
        s.pacman_row += kDRow[d];
        s.pacman_col += kDCol[d];
      }
    }
    uint8_t& food = s.food[static_cast<size_t>(s.pacman_row * kCols + s.pacman_col)];
    if (food) {
      food = 0;
      reward += mode_.food_reward;
      if (--g.food_left == 0 && mode_.end_on_food) next_level(g);
    }
    for (size_t k = 0; k < s.pills.size(); ++k) {
      if (s.pills[k][0] == s.pacman_row && s.pills[k][1] == s.pacman_col) {
        s.pills.erase(s.pills.begin() + static_cast<std::ptrdiff_t>(k));
        reward += mode_.pill_reward;
        s.power = kPillDuration;
        if (s.pills.empty() && mode_.end_on_pills) next_level(g);
        break;
      }
    }

    bool dead = false;
    // A ghost on Pacman kills him (once: the death reward counts once however many ghosts meet
    // him) or, under pill power, is eaten, which ends the ghosts' turn.
    auto meet = [&](size_t k) {
      if (s.power == 0) {
        if (!dead) reward += mode_.death_reward;
        dead = true;
        return false;
      }
      s.ghosts.erase(s.ghosts.begin() + static_cast<std::ptrdiff_t>(k));
      reward += mode_.ghost_reward;
      if (s.ghosts.empty() && mode_.end_on_ghosts) next_level(g);
      return true;
    };
    const double speed = ghost_speed(s.level) * (s.power > 0 ? 0.5 : 1.0);
    for (size_t k = 0; k < s.ghosts.size(); ++k) {
      Ghost& gh = s.ghosts[k];
      if (gh.row == s.pacman_row && gh.col == s.pacman_col && meet(k)) break;
      if (g.rng.uniform() < speed) move_ghost(g, gh);
      if (gh.row == s.pacman_row && gh.col == s.pacman_col && meet(k)) break;
    }

    // A dead Pacman's last frame shows how he died, not a fresh level.
    if (!dead && s.timer == mode_.level_timer) next_level(g);

    s.episode_return += static_cast<double>(static_cast<float>(reward));
    const bool truncated = !dead && s.frame >= (frame_cap_ > 0 ? frame_cap_ : kMaxFrames);
    return {static_cast<float>(reward), dead, truncated};
  }

  void move_ghost(Game& g, Ghost& gh) {
    const State& s = g.s;
    const unsigned open = maze().open[static_cast<size_t>(gh.row * kCols + gh.col)];
    const unsigned ahead = open & ~(1u << ((gh.direction + 2) & 3));  // anything but back
    const int n_open = __builtin_popcount(open);
    int d = gh.direction;
    if (n_open == 1) {
      d = __builtin_ctz(open);
    } else if (n_open == 2) {
      // A corridor: go on, or round the corner; never back unless the ghost was set facing a wall.
      if (!(open >> d & 1)) d = __builtin_ctz(ahead);
    } else {
      const int dr = s.pacman_row - gh.row, dc = s.pacman_col - gh.col;
      if (dr == 0 && dc == 0) {
        if (!(open >> d & 1)) d = __builtin_ctz(ahead);
      } else if (s.power == 0 && g.rng.uniform() < kGhostWander) {
        unsigned left = ahead;
        for (uint64_t skip = g.rng.uniform_int(static_cast<uint64_t>(__builtin_popcount(ahead))); skip > 0; --skip) {
          left &= left - 1;
        }
        d = __builtin_ctz(left);
      } else {
        // The dot product with the unit vector towards Pacman, without the division: the same
        // order and the same ties.
        const bool chase = s.power == 0;
        int best = 0, best_score = 0;
        bool any = false;
        for (int c = 0; c < 4; ++c) {
          if (!(ahead >> c & 1)) continue;
          const int score = kDRow[c] * dr + kDCol[c] * dc;
          if (!any || (chase ? score > best_score : score < best_score)) {
            best = c;
            best_score = score;
            any = true;
          }
        }
        d = best;
      }
    }
    gh.direction = d;
    gh.row += kDRow[d];
    gh.col += kDCol[d];
  }

  static void render(const Game& g, uint8_t* out) {
    const Maze& m = maze();
    const State& s = g.s;
    // Lowest priority first, so that later writes win: Pacman over ghosts over pills over food.
    for (int c = 0; c < kCells; ++c) {
      uint8_t* px = out + 3 * c;
      if (m.wall[static_cast<size_t>(c)]) {
        px[0] = px[1] = px[2] = 255;
      } else {
        px[0] = px[1] = 0;
        px[2] = s.food[static_cast<size_t>(c)] ? 255 : 0;
      }
    }
    auto paint = [out](int r, int c, uint8_t red, uint8_t green, uint8_t blue) {
      uint8_t* px = out + 3 * (r * kCols + c);
      px[0] = red;
      px[1] = green;
      px[2] = blue;
    };
    for (const auto& p : s.pills) paint(p[0], p[1], 0, 255, 255);
    // Red when deadly, shading to yellow as pill power (edibility power / 20) is fresh.
    const auto green = static_cast<uint8_t>(std::lround(255.0 * s.power / kPillDuration));
    for (const Ghost& gh : s.ghosts) paint(gh.row, gh.col, 255, green, 0);
    paint(s.pacman_row, s.pacman_col, 0, 255, 0);
  }

  Mode mode_;
  double max_step_reward_ = 0;  // the sum of the mode's rewards' magnitudes
  int64_t frame_cap_ = 0;
  std::vector<Game> games_;
  std::unique_ptr<ThreadPool> pool_;
};

}  // namespace pymbrl::envs
