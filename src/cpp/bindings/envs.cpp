// pymbrl._core.envs: thin translation to the batched environments of the core. Validates
// arguments, releases the GIL around stepping, and returns new numpy arrays every call (the
// Python layer hands them out, so they must not change under the caller at the next step).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdlib>
#include <memory>
#include <new>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "bindings/common.h"
#include "pymbrl/envs/minipacman.h"

namespace pymbrl::bindings {
namespace {

using envs::MiniPacman;

// Field `key` of a state dict as a C-contiguous T array of shape `shape` (-1: any length), its
// dtype of kind `kind` ('i' integers, 'b' booleans).
template <typename T>
py::array_t<T, py::array::c_style | py::array::forcecast> state_array(const py::dict& d, const char* key, char kind,
                                                                     const std::vector<int64_t>& shape) {
  if (!d.contains(key)) throw py::key_error(std::string("state: missing key '") + key + "'");
  const bool integers = kind == 'i';
  py::array a = checked_array(d[key], shape, key, integers ? "iu" : "b", integers ? "integers" : "booleans");
  return ensure_array_of<T>(a);
}

int64_t state_int(const py::dict& d, const char* key) {
  if (!d.contains(key)) throw py::key_error(std::string("state: missing key '") + key + "'");
  return as_int(d[key], key);
}

// A seed: any Python integer in [0, 2**64).
uint64_t as_seed(const py::handle& obj, const char* name) {
  if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr())) {
    throw py::type_error(std::string(name) + ": expected an integer, got " + type_name(obj));
  }
  py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(obj.ptr()));
  const unsigned long long v = index ? PyLong_AsUnsignedLongLong(index.ptr()) : 0;
  if (!index || (v == static_cast<unsigned long long>(-1) && PyErr_Occurred())) {
    PyErr_Clear();
    throw py::value_error(std::string(name) + ": expected an integer in [0, 2**64), got " + std::string(py::repr(obj)));
  }
  return static_cast<uint64_t>(v);
}

int32_t narrow(int64_t v, const char* key) {
  if (v < INT32_MIN || v > INT32_MAX) throw py::value_error(std::string(key) + ": expected a 32-bit integer, got " + std::to_string(v));
  return static_cast<int32_t>(v);
}

py::dict state_to_dict(const MiniPacman::State& s) {
  py::dict d;
  py::array_t<int64_t> pacman(2);
  pacman.mutable_at(0) = s.pacman_row;
  pacman.mutable_at(1) = s.pacman_col;
  d["pacman"] = pacman;
  py::array_t<int64_t> ghosts({static_cast<py::ssize_t>(s.ghosts.size()), py::ssize_t{3}});
  for (size_t k = 0; k < s.ghosts.size(); ++k) {
    const auto i = static_cast<py::ssize_t>(k);
    ghosts.mutable_at(i, 0) = s.ghosts[k].row;
    ghosts.mutable_at(i, 1) = s.ghosts[k].col;
    ghosts.mutable_at(i, 2) = s.ghosts[k].direction;
  }
  d["ghosts"] = ghosts;
  py::array_t<int64_t> pills({static_cast<py::ssize_t>(s.pills.size()), py::ssize_t{2}});
  for (size_t k = 0; k < s.pills.size(); ++k) {
    pills.mutable_at(static_cast<py::ssize_t>(k), 0) = s.pills[k][0];
    pills.mutable_at(static_cast<py::ssize_t>(k), 1) = s.pills[k][1];
  }
  d["pills"] = pills;
  py::array_t<bool> food({MiniPacman::kRows, MiniPacman::kCols});
  std::copy(s.food.begin(), s.food.end(), food.mutable_data());
  d["food"] = food;
  d["power"] = s.power;
  d["level"] = s.level;
  d["timer"] = s.timer;
  d["frame"] = s.frame;
  d["episode_return"] = s.episode_return;
  d["rng"] = copy_of(s.rng.data(), s.rng.size());
  return d;
}

MiniPacman::State dict_to_state(const py::dict& d) {
  MiniPacman::State s;
  auto pacman = state_array<int64_t>(d, "pacman", 'i', {2});
  s.pacman_row = narrow(pacman.at(0), "pacman");
  s.pacman_col = narrow(pacman.at(1), "pacman");
  auto ghosts = state_array<int64_t>(d, "ghosts", 'i', {-1, 3});
  // The core checks the count against the level; this only keeps the copy small.
  const py::ssize_t max_ghosts = MiniPacman::ghosts_on_level(MiniPacman::kMaxLevel);
  if (ghosts.shape(0) > max_ghosts) {
    throw py::value_error("ghosts: expected at most " + std::to_string(max_ghosts) + " rows, got " +
                          std::to_string(ghosts.shape(0)));
  }
  for (py::ssize_t k = 0; k < ghosts.shape(0); ++k) {
    s.ghosts.push_back({narrow(ghosts.at(k, 0), "ghosts"), narrow(ghosts.at(k, 1), "ghosts"), narrow(ghosts.at(k, 2), "ghosts")});
  }
  auto pills = state_array<int64_t>(d, "pills", 'i', {-1, 2});
  for (py::ssize_t k = 0; k < pills.shape(0); ++k) s.pills.push_back({narrow(pills.at(k, 0), "pills"), narrow(pills.at(k, 1), "pills")});
  auto food = state_array<bool>(d, "food", 'b', {MiniPacman::kRows, MiniPacman::kCols});
  std::copy(food.data(), food.data() + MiniPacman::kCells, s.food.begin());
  s.power = narrow(state_int(d, "power"), "power");
  s.level = narrow(state_int(d, "level"), "level");
  s.timer = state_int(d, "timer");
  s.frame = state_int(d, "frame");
  if (!d.contains("episode_return")) throw py::key_error("state: missing key 'episode_return'");
  try {
    s.episode_return = py::cast<double>(d["episode_return"]);
  } catch (const py::cast_error&) {
    throw py::type_error("episode_return: expected a real number, got " + type_name(d["episode_return"]));
  }
  // A negative word would wrap into another generator state: refuse it rather than convert it.
  auto signed_rng = state_array<int64_t>(d, "rng", 'i', {4});
  if (py::array(d["rng"]).dtype().kind() == 'i') {
    for (py::ssize_t k = 0; k < 4; ++k) {
      if (signed_rng.at(k) < 0) {
        throw py::value_error("rng: expected integers in [0, 2**64), got " + std::to_string(signed_rng.at(k)) +
                              " at index " + std::to_string(k));
      }
    }
  }
  auto rng = state_array<uint64_t>(d, "rng", 'i', {4});
  std::copy(rng.data(), rng.data() + 4, s.rng.begin());
  return s;
}

// Frame buffers for the arrays step() hands out, taken back when Python frees an array. glibc gives
// freed blocks of hundreds of kB back to the OS, so with a new buffer per step every step faulted
// its pages in again: at N = 1024 a step took 490-940 us, against ~320 us writing into one reused
// buffer and 270-345 us with this pool (medians of 5-7 runs on a 2-core VM). A buffer comes back
// only once its array is gone, so a caller that keeps every step's frames still gets new memory.
class FramePool : public std::enable_shared_from_this<FramePool> {
 public:
  explicit FramePool(size_t bytes) : bytes_(bytes) {}
  ~FramePool() {
    for (void* p : free_) std::free(p);
  }

  // A C-contiguous uint8 array [shape] whose buffer returns here when the array is freed.
  py::array_t<uint8_t> take(std::vector<py::ssize_t> shape) {
    void* buffer = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!free_.empty()) {
        buffer = free_.back();
        free_.pop_back();
      }
    }
    if (!buffer && !(buffer = std::malloc(bytes_))) throw std::bad_alloc();
    auto* owner = new Owner{shared_from_this(), buffer};
    py::capsule base(owner, [](void* o) {
      auto* own = static_cast<Owner*>(o);
      own->pool->give(own->buffer);
      delete own;
    });
    return py::array_t<uint8_t>(std::move(shape), static_cast<uint8_t*>(buffer), base);
  }

 private:
  struct Owner {
    std::shared_ptr<FramePool> pool;
    void* buffer;
  };

  // A few spares cover a loop that holds one or two steps' arrays; more would only hoard memory.
  void give(void* buffer) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (free_.size() < 4) {
      free_.push_back(buffer);
    } else {
      std::free(buffer);
    }
  }

  size_t bytes_;
  std::mutex mutex_;
  std::vector<void*> free_;
};

// The core plus the lock that keeps two Python threads from stepping it at once while the GIL is
// released (the lock is taken after releasing the GIL, so no deadlock).
class PyMiniPacman {
 public:
  PyMiniPacman(const py::handle& num_envs, const std::string& mode, const py::handle& frame_cap, const py::handle& seed,
               const py::handle& num_threads)
      : core_(as_int(num_envs, "num_envs"), MiniPacman::mode(mode), as_int(frame_cap, "frame_cap"), as_seed(seed, "seed"),
              threads(num_threads)),
        pool_(std::make_shared<FramePool>(static_cast<size_t>(core_.num_envs()) * MiniPacman::kFrameBytes)) {}

  int64_t num_envs() const { return core_.num_envs(); }
  std::string mode() const { return core_.mode().name; }
  int64_t frame_cap() const { return core_.frame_cap(); }
  int num_threads() const { return core_.num_threads(); }

  py::array_t<uint8_t> reset(const py::object& seed) {
    std::optional<uint64_t> s;
    if (!seed.is_none()) s = as_seed(seed, "seed");
    py::array_t<uint8_t> frames = new_frames();
    uint8_t* out = frames.mutable_data();
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    if (s) core_.seed_all(*s);
    core_.reset_all();
    for (int64_t i = 0; i < core_.num_envs(); ++i) core_.render(i, out + i * MiniPacman::kFrameBytes);
    return frames;
  }

  py::tuple step(const py::handle& actions) {
    const int64_t n = core_.num_envs();
    py::array a = checked_array(actions, {n}, "actions", "iu", "integers");
    auto acts = ensure_array_of<int64_t>(a);
    py::array_t<uint8_t> frames = new_frames();
    py::array_t<uint8_t> final_frames = new_frames();
    py::array_t<float> rewards(n), episode_return(n);
    py::array_t<bool> terminated(n), truncated(n);
    py::array_t<int32_t> episode_length(n);
    MiniPacman::StepBuffers out{frames.mutable_data(),
                                rewards.mutable_data(),
                                reinterpret_cast<uint8_t*>(terminated.mutable_data()),
                                reinterpret_cast<uint8_t*>(truncated.mutable_data()),
                                final_frames.mutable_data(),
                                episode_return.mutable_data(),
                                episode_length.mutable_data()};
    const int64_t* act = acts.data();
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      core_.step(act, out);
    }
    return py::make_tuple(frames, rewards, terminated, truncated, final_frames, episode_return, episode_length);
  }

  py::array_t<uint8_t> render(int64_t index) {
    py::array_t<uint8_t> frame({MiniPacman::kRows, MiniPacman::kCols, 3});
    std::lock_guard<std::mutex> lock(mutex_);
    core_.render(index, frame.mutable_data());
    return frame;
  }

  py::dict get_state(int64_t index) {
    std::lock_guard<std::mutex> lock(mutex_);
    return state_to_dict(core_.state(index));
  }

  void set_state(int64_t index, const py::dict& state) {
    const MiniPacman::State s = dict_to_state(state);
    std::lock_guard<std::mutex> lock(mutex_);
    core_.set_state(index, s);
  }

 private:
  static int threads(const py::handle& obj) {
    const int64_t n = as_int(obj, "num_threads");
    if (n < 1 || n > 1024) throw py::value_error("num_threads: expected an integer in [1, 1024], got " + std::to_string(n));
    return static_cast<int>(n);
  }

  py::array_t<uint8_t> new_frames() {
    return pool_->take({static_cast<py::ssize_t>(core_.num_envs()), py::ssize_t{MiniPacman::kRows},
                        py::ssize_t{MiniPacman::kCols}, py::ssize_t{3}});
  }

  MiniPacman core_;
  std::shared_ptr<FramePool> pool_;
  std::mutex mutex_;
};

}  // namespace

void init_envs(py::module_ m) {
  m.def("minipacman_map", [] {
    py::array_t<uint8_t> map({MiniPacman::kRows, MiniPacman::kCols});
    for (int r = 0; r < MiniPacman::kRows; ++r) {
      for (int c = 0; c < MiniPacman::kCols; ++c) map.mutable_at(r, c) = MiniPacman::is_wall(r, c);
    }
    return map;
  }, "MiniPacman's maze, uint8 [15, 19], 1 = wall.");

  m.def("minipacman_modes", [] {
    py::dict modes;
    for (const MiniPacman::Mode& mode : MiniPacman::modes()) {
      py::dict d;
      d["step_reward"] = mode.step_reward;
      d["food_reward"] = mode.food_reward;
      d["pill_reward"] = mode.pill_reward;
      d["ghost_reward"] = mode.ghost_reward;
      d["death_reward"] = mode.death_reward;
      d["ends_level_on"] = mode.end_on_food ? "food" : mode.end_on_pills ? "pills" : "ghosts";
      d["level_timer"] = mode.level_timer;
      modes[py::str(mode.name)] = d;
    }
    return modes;
  }, "MiniPacman's modes: name -> rewards, what ends a level and the level timer (-1: none).");

  py::class_<PyMiniPacman>(m, "MiniPacman", "A batch of MiniPacman games stepped in one call, same-step autoreset.")
      .def(py::init<const py::handle&, const std::string&, const py::handle&, const py::handle&, const py::handle&>(),
           py::arg("num_envs"), py::arg("mode"), py::arg("frame_cap"), py::arg("seed"), py::arg("num_threads") = 1)
      .def_property_readonly("num_envs", &PyMiniPacman::num_envs)
      .def_property_readonly("mode", &PyMiniPacman::mode)
      .def_property_readonly("frame_cap", &PyMiniPacman::frame_cap)
      .def_property_readonly("num_threads", &PyMiniPacman::num_threads,
                             "Threads a step uses (num_threads capped at one per 128 games).")
      .def("reset", &PyMiniPacman::reset, py::arg("seed") = py::none(),
           "New episodes in every game (game i reseeded from derive_seed(seed, i) when seed is given); "
           "returns frames uint8 [N, 15, 19, 3].")
      .def("step", &PyMiniPacman::step, py::arg("actions"),
           "Steps every game; returns (frames, rewards, terminated, truncated, final_frames, episode_return, "
           "episode_length), fresh arrays.")
      .def("render", &PyMiniPacman::render, py::arg("index"), "Game index's current frame, uint8 [15, 19, 3].")
      .def("get_state", &PyMiniPacman::get_state, py::arg("index"))
      .def("set_state", &PyMiniPacman::set_state, py::arg("index"), py::arg("state"));
}

}  // namespace pymbrl::bindings
