// pymbrl._core.mcts: the batched search. Validates arrays, releases the GIL, calls the core.
// select() writes into arrays the wrapper owns and hands out once, so the Python loop can view
// them as torch tensors without converting anything per simulation.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>

#include "bindings/common.h"
#include "pymbrl/mcts/search.h"
#include "pymbrl/mcts/stochastic.h"

namespace pymbrl::bindings {

namespace {

using mcts::FloatRows;

// A float32 or float64 array of the given shape, read in place when C-contiguous (anything else
// numeric is converted). The array is kept alive by the holder.
struct Floats {
  py::array array;
  FloatRows rows;
};

Floats floats(const py::handle& obj, std::initializer_list<int64_t> shape, const char* name) {
  py::array a = checked_array(obj, shape, name, "fiu", "an array of floats");
  Floats out;
  const bool contiguous = (a.flags() & py::array::c_style) != 0;
  if (contiguous && a.dtype().is(py::dtype::of<float>())) {
    out.array = a;
    out.rows.f32 = static_cast<const float*>(a.data());
  } else if (contiguous && a.dtype().is(py::dtype::of<double>())) {
    out.array = a;
    out.rows.f64 = static_cast<const double*>(a.data());
  } else {
    out.array = ensure_array_of<double>(a);
    out.rows.f64 = static_cast<const double*>(out.array.data());
  }
  return out;
}

// A boolean mask of the given shape (bool or integer 0/1), as uint8, or empty for None.
std::optional<py::array_t<uint8_t>> mask(const py::handle& obj, std::initializer_list<int64_t> shape, const char* name) {
  if (obj.is_none()) return std::nullopt;
  py::array a = checked_array(obj, shape, name, "biu", "a boolean array");
  return ensure_array_of<uint8_t>(a.attr("astype")("bool"));
}

// The model's outputs for one simulation, checked for shape and held alive.
struct Outputs {
  Floats r, d, l, v;
};

// An integer array of shape [B], as int64.
py::array_t<int64_t> int64s(const py::handle& obj, int64_t B, const char* name) {
  py::array a = checked_array(obj, {B}, name, "iu", "an integer array");
  return ensure_array_of<int64_t>(a);
}

// Both searches (Search, StochasticSearch) take roots and report statistics the same way: the
// arguments are converted with the GIL held, the core is called without it.
template <class Core>
void set_roots_of(Core& core, std::mutex& mutex, int B, int A, const py::handle& logits, const py::handle& value,
                  const py::handle& invalid, const py::handle& keep) {
  Floats l = floats(logits, {B, A}, "prior_logits");
  Floats v = floats(value, {B}, "value");
  auto inv = mask(invalid, {B, A}, "invalid_actions");
  auto kept = mask(keep, {B}, "keep");
  py::gil_scoped_release release;
  std::lock_guard<std::mutex> lock(mutex);
  core.set_roots(l.rows, v.rows, inv ? inv->data() : nullptr, kept ? kept->data() : nullptr);
}

// (visit counts int32 [B, A], Q float64 [B, A], root values float64 [B]).
template <class Core>
py::tuple summary_of(Core& core, std::mutex& mutex, int B, int A) {
  py::array_t<int32_t> counts({B, A});
  py::array_t<double> q({B, A});
  py::array_t<double> v(B);
  int32_t* pc = counts.mutable_data();
  double* pq = q.mutable_data();
  double* pv = v.mutable_data();
  {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex);
    core.summary(pc, pq, pv);
  }
  return py::make_tuple(counts, q, v);
}

// Nodes in use per tree, int32 [B].
py::array_t<int32_t> nodes_of(const mcts::TreeBatch& tree, std::mutex& mutex) {
  std::lock_guard<std::mutex> lock(mutex);
  py::array_t<int32_t> out(tree.batch_size());
  for (int b = 0; b < tree.batch_size(); ++b) out.mutable_data()[b] = tree.num_nodes(b);
  return out;
}

// Runs f() and adds its wall time to `seconds` (time inside the core, for profiling).
template <class F>
auto timed(double& seconds, F&& f) {
  const auto start = std::chrono::steady_clock::now();
  auto finish = [&] { seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  if constexpr (std::is_void_v<decltype(f())>) {
    f();
    finish();
  } else {
    auto out = f();
    finish();
    return out;
  }
}

class PyStochasticSearch;

class PySearch {
 public:
  PySearch(const py::object& batch_size, const py::object& num_actions, const py::object& capacity,
           const py::object& num_threads)
      : PySearch(make_search(as_int(batch_size, "batch_size"), as_int(num_actions, "num_actions"),
                             as_int(capacity, "capacity"), num_threads)) {}

  // The shape is checked (limits and the overflow-checked size of the trees) before anything of
  // that size is allocated, here or in the core.
  static std::unique_ptr<mcts::Search> make_search(int64_t batch_size, int64_t num_actions, int64_t capacity,
                                                   const py::object& num_threads) {
    mcts::TreeBatch::check_shape(batch_size, num_actions, capacity);
    const int t = threads(num_threads, batch_size);
    return std::make_unique<mcts::Search>(static_cast<int>(batch_size), static_cast<int>(num_actions),
                                          static_cast<int>(capacity), t);
  }

  explicit PySearch(std::unique_ptr<mcts::Search> search)
      : parent_(search->tree().batch_size()),
        action_(search->tree().batch_size()),
        node_(search->tree().batch_size()),
        is_new_(search->tree().batch_size()),
        gather_(search->tree().batch_size()),
        scatter_(search->tree().batch_size()),
        action64_(search->tree().batch_size()),
        search_(std::move(search)) {}

  int batch_size() const { return search_->tree().batch_size(); }
  int num_actions() const { return search_->tree().num_actions(); }

  void set_roots(const py::handle& logits, const py::handle& value, const py::handle& invalid, const py::handle& keep) {
    set_roots_of(*search_, mutex_, batch_size(), num_actions(), logits, value, invalid, keep);
  }

  void begin_muzero(const py::object& num_simulations, uint64_t seed, double pb_c_init, double pb_c_base, double alpha,
                    double fraction, const py::object& max_depth, const std::string& qtransform, double epsilon,
                    double min_value, double max_value) {
    const int depth = depth_of(max_depth);
    const int sims = simulations(num_simulations);
    mcts::QTransform transform{transform_kind(qtransform), epsilon, min_value, max_value};
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    search_->begin_muzero(mcts::PuctParams{pb_c_init, pb_c_base}, alpha, fraction, depth, sims, seed, transform);
  }

  void begin_gumbel(const py::object& num_simulations, uint64_t seed, const py::object& max_considered_obj,
                    double gumbel_scale, double value_scale, double maxvisit_init, const py::object& max_depth,
                    bool rescale_with_invalid) {
    const int depth = depth_of(max_depth);
    const int sims = simulations(num_simulations);
    const int64_t max_considered = as_int(max_considered_obj, "max_num_considered_actions");
    if (max_considered < 1 || max_considered > (1 << 20)) {
      throw py::value_error("max_num_considered_actions: expected an integer in [1, 2**20], got " + std::to_string(max_considered));
    }
    mcts::GumbelParams params{static_cast<int>(max_considered), gumbel_scale, value_scale, maxvisit_init,
                              rescale_with_invalid};
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    search_->begin_gumbel(params, depth, sims, seed);
  }

  void select() {
    mcts::Selection sel{parent_.mutable_data(), action_.mutable_data(), node_.mutable_data(),
                       reinterpret_cast<uint8_t*>(is_new_.mutable_data())};
    mcts::PoolRows rows{gather_.mutable_data(), scatter_.mutable_data(), action64_.mutable_data()};
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    timed(core_seconds_, [&] { search_->select(sel, rows); });
  }

  void expand_and_backup(const py::handle& reward, const py::handle& discount, const py::handle& logits,
                         const py::handle& value) {
    const Outputs o = outputs(reward, discount, logits, value);
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    timed(core_seconds_, [&] { search_->expand_and_backup(o.r.rows, o.d.rows, o.l.rows, o.v.rows); });
  }

  bool expand_and_select(const py::handle& reward, const py::handle& discount, const py::handle& logits,
                         const py::handle& value) {
    const Outputs o = outputs(reward, discount, logits, value);
    mcts::Selection sel{parent_.mutable_data(), action_.mutable_data(), node_.mutable_data(),
                        reinterpret_cast<uint8_t*>(is_new_.mutable_data())};
    mcts::PoolRows rows{gather_.mutable_data(), scatter_.mutable_data(), action64_.mutable_data()};
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    return timed(core_seconds_, [&] { return search_->expand_and_select(o.r.rows, o.d.rows, o.l.rows, o.v.rows, sel, rows); });
  }

  py::tuple summary() { return summary_of(*search_, mutex_, batch_size(), num_actions()); }

  py::tuple decide(bool gumbel, double temperature) {
    const int B = batch_size(), A = num_actions();
    py::array_t<int64_t> actions(B);
    py::array_t<double> weights({B, A});
    int64_t* pa = actions.mutable_data();
    double* pw = weights.mutable_data();
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      if (gumbel) {
        search_->decide_gumbel(pa, pw);
      } else {
        search_->decide_muzero(temperature, pa, pw);
      }
    }
    return py::make_tuple(actions, weights);
  }

  py::tuple reroot(const py::handle& actions_obj) {
    const int B = batch_size();
    const auto actions = int64s(actions_obj, B, "actions");
    const int64_t capacity = search_->tree().capacity();
    py::array_t<int64_t> old_ids({capacity, static_cast<int64_t>(B)});
    py::array_t<int32_t> kept(B);
    const int64_t* pa = actions.data();
    int64_t* po = old_ids.mutable_data();
    int32_t* pk = kept.mutable_data();
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      search_->reroot(pa, po, pk);
    }
    return py::make_tuple(old_ids, kept);
  }

  py::array_t<int32_t> num_nodes() { return nodes_of(search_->tree(), mutex_); }

  const mcts::Search& search() const { return *search_; }
  double core_seconds() const { return core_seconds_; }
  py::array_t<int32_t> parent_, action_, node_;
  py::array_t<bool> is_new_;
  py::array_t<int64_t> gather_, scatter_, action64_;

 private:
  Outputs outputs(const py::handle& reward, const py::handle& discount, const py::handle& logits,
                  const py::handle& value) const {
    const int B = batch_size(), A = num_actions();
    return Outputs{floats(reward, {B}, "reward"), floats(discount, {B}, "discount"),
                   floats(logits, {B, A}, "prior_logits"), floats(value, {B}, "value")};
  }

  static mcts::QTransformKind transform_kind(const std::string& name) {
    if (name == "tree_min_max") return mcts::QTransformKind::kTreeMinMax;
    if (name == "parent_and_siblings") return mcts::QTransformKind::kParentAndSiblings;
    if (name == "min_max") return mcts::QTransformKind::kMinMax;
    throw py::value_error("qtransform: expected 'tree_min_max', 'parent_and_siblings' or 'min_max', got '" + name + "'");
  }

  // At most the largest capacity: a search adds a node per simulation (begin checks the room).
  static int simulations(const py::object& obj) {
    const int64_t v = as_int(obj, "num_simulations");
    if (v < 1 || v > mcts::kMaxCapacity) {
      throw py::value_error("num_simulations: expected an integer in [1, 2**30], got " + std::to_string(v));
    }
    return static_cast<int>(v);
  }
  static int depth_of(const py::object& max_depth) {
    if (max_depth.is_none()) return 0;
    // A Python integer beyond 64 bits is a depth no tree reaches, like any beyond 2**30: no limit
    // (refusing it here, after the policies' checks, would leave a reused tree changed).
    if (PyLong_Check(max_depth.ptr()) && !PyBool_Check(max_depth.ptr())) {
      int overflow = 0;
      PyLong_AsLongLongAndOverflow(max_depth.ptr(), &overflow);
      if (overflow > 0) return 1 << 30;
    }
    const int64_t d = as_int(max_depth, "max_depth");
    if (d < 1) throw py::value_error("max_depth: expected an integer >= 1 or None, got " + std::to_string(d));
    return static_cast<int>(std::min<int64_t>(d, int64_t{1} << 30));
  }
  // Default: one thread per 128 roots, at most the machine's threads. Below that a step's tree
  // work (~100 µs) is too short for a second thread to pay for its hand-off.
  static int threads(const py::object& requested, int64_t batch_size) {
    if (requested.is_none()) {
      return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(hardware_threads(), batch_size / 128)));
    }
    const int64_t t = as_int(requested, "num_threads");
    if (t < 1 || t > 1024) throw py::value_error("num_threads: expected an integer in [1, 1024] or None, got " + std::to_string(t));
    return static_cast<int>(t);
  }

  std::unique_ptr<mcts::Search> search_;
  std::mutex mutex_;
  double core_seconds_ = 0.0;  // wall time inside select and expand_and_backup, for profiling

  friend class PyStochasticSearch;  // shares the argument conversions above
};

// Stochastic MuZero's search (mcts/stochastic.h). select() fills, for each of the two model
// functions, arrays of B int64 entries the wrapper owns (roots, pool gather rows, pool scatter
// rows, actions or outcomes), of which the first decision_count / chance_count are the current
// selection's.
class PyStochasticSearch {
 public:
  PyStochasticSearch(const py::object& batch_size, const py::object& num_actions, const py::object& num_chance_outcomes,
                     const py::object& capacity, const py::object& num_threads)
      : PyStochasticSearch(make(as_int(batch_size, "batch_size"), as_int(num_actions, "num_actions"),
                                as_int(num_chance_outcomes, "num_chance_outcomes"), as_int(capacity, "capacity"),
                                num_threads)) {}

  static std::unique_ptr<mcts::StochasticSearch> make(int64_t batch_size, int64_t num_actions, int64_t outcomes,
                                                      int64_t capacity, const py::object& num_threads) {
    if (outcomes < 1 || outcomes > mcts::kMaxActions) {
      throw py::value_error("num_chance_outcomes: expected an integer in [1, " + std::to_string(mcts::kMaxActions) +
                            "], got " + std::to_string(outcomes));
    }
    mcts::TreeBatch::check_shape(batch_size, num_actions, capacity);
    // The trees' nodes have max(A, C) edges.
    mcts::TreeBatch::check_shape(batch_size, std::max(num_actions, outcomes), capacity);
    const int t = PySearch::threads(num_threads, batch_size);
    return std::make_unique<mcts::StochasticSearch>(static_cast<int>(batch_size), static_cast<int>(num_actions),
                                                    static_cast<int>(outcomes), static_cast<int>(capacity), t);
  }

  explicit PyStochasticSearch(std::unique_ptr<mcts::StochasticSearch> search) : search_(std::move(search)) {
    for (auto* a : {&decision_roots_, &decision_gather_, &decision_scatter_, &decision_action_, &chance_roots_,
                    &chance_gather_, &chance_scatter_, &chance_outcome_}) {
      *a = py::array_t<int64_t>(batch_size());
    }
  }

  int batch_size() const { return search_->search().tree().batch_size(); }
  int num_actions() const { return search_->num_actions(); }
  int num_chance_outcomes() const { return search_->num_chance_outcomes(); }

  void set_roots(const py::handle& logits, const py::handle& value, const py::handle& invalid, const py::handle& keep) {
    set_roots_of(*search_, mutex_, batch_size(), num_actions(), logits, value, invalid, keep);
  }

  void begin(const py::object& num_simulations, uint64_t seed, double pb_c_init, double pb_c_base, double alpha,
             double fraction, const py::object& max_depth, const std::string& qtransform, double epsilon,
             double min_value, double max_value) {
    const int depth = PySearch::depth_of(max_depth);
    const int sims = PySearch::simulations(num_simulations);
    mcts::QTransform transform{PySearch::transform_kind(qtransform), epsilon, min_value, max_value};
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    search_->begin(mcts::PuctParams{pb_c_init, pb_c_base}, alpha, fraction, depth, sims, seed, transform);
  }

  py::tuple select() {
    const mcts::StochasticSelection out = selection();
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      timed(core_seconds_, [&] { search_->select(out); });
    }
    return counts();
  }

  void expand_and_backup(const py::handle& chance_logits, const py::handle& afterstate_value, const py::handle& reward,
                         const py::handle& discount, const py::handle& prior_logits, const py::handle& value) {
    const Outputs o = outputs(chance_logits, afterstate_value, reward, discount, prior_logits, value);
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    timed(core_seconds_, [&] { search_->expand_and_backup(o.decision, o.chance); });
  }

  // The next selection's (decision_count, chance_count), or None after the last simulation.
  py::object expand_and_select(const py::handle& chance_logits, const py::handle& afterstate_value,
                               const py::handle& reward, const py::handle& discount, const py::handle& prior_logits,
                               const py::handle& value) {
    const Outputs o = outputs(chance_logits, afterstate_value, reward, discount, prior_logits, value);
    const mcts::StochasticSelection out = selection();
    bool more;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      more = timed(core_seconds_, [&] { return search_->expand_and_select(o.decision, o.chance, out); });
    }
    return more ? py::object(counts()) : py::object(py::none());
  }

  py::tuple summary() { return summary_of(*search_, mutex_, batch_size(), num_actions()); }

  py::tuple decide(double temperature) {
    const int B = batch_size(), A = num_actions();
    py::array_t<int64_t> actions(B);
    py::array_t<double> weights({B, A});
    int64_t* pa = actions.mutable_data();
    double* pw = weights.mutable_data();
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      search_->decide(temperature, pa, pw);
    }
    return py::make_tuple(actions, weights);
  }

  py::tuple reroot(const py::handle& actions_obj, const py::handle& outcomes_obj) {
    const int B = batch_size();
    const auto actions = int64s(actions_obj, B, "actions");
    const auto outcomes = int64s(outcomes_obj, B, "chance_outcomes");
    const int64_t capacity = search_->search().tree().capacity();
    py::array_t<int64_t> old_ids({capacity, static_cast<int64_t>(B)});
    py::array_t<int32_t> kept(B);
    const int64_t* pa = actions.data();
    const int64_t* po = outcomes.data();
    int64_t* pi = old_ids.mutable_data();
    int32_t* pk = kept.mutable_data();
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      search_->reroot(pa, po, pi, pk);
    }
    return py::make_tuple(old_ids, kept);
  }

  py::array_t<int32_t> num_nodes() { return nodes_of(search_->search().tree(), mutex_); }

  // Whether each of tree b's nodes is a chance node, bool [num_nodes(b)] (for tests and inspection).
  py::array_t<bool> chance_nodes(const py::object& root) {
    std::lock_guard<std::mutex> lock(mutex_);
    const int64_t b = as_int(root, "root");
    if (b < 0 || b >= batch_size()) {
      throw py::value_error("root: expected an integer in [0, " + std::to_string(batch_size()) + "), got " +
                            std::to_string(b));
    }
    const mcts::TreeBatch& tree = search_->search().tree();
    py::array_t<bool> out(tree.num_nodes(static_cast<int>(b)));
    for (int32_t x = 0; x < tree.num_nodes(static_cast<int>(b)); ++x) {
      out.mutable_data()[x] = tree.is_chance(static_cast<int>(b), x);
    }
    return out;
  }

  const mcts::Search& search() const { return search_->search(); }
  double core_seconds() const { return core_seconds_; }
  py::array_t<int64_t> decision_roots_, decision_gather_, decision_scatter_, decision_action_;
  py::array_t<int64_t> chance_roots_, chance_gather_, chance_scatter_, chance_outcome_;

 private:
  struct Outputs {
    Floats chance_logits, afterstate_value, reward, discount, prior_logits, value;
    mcts::DecisionRows decision;
    mcts::ChanceRows chance;
  };

  // A function's output of `rows` rows: None stands for an empty one (the function was not called).
  static Floats rows_of(const py::handle& obj, int64_t rows, int64_t width, const char* name) {
    if (obj.is_none() && rows == 0) return Floats{};
    return width < 0 ? floats(obj, {rows}, name) : floats(obj, {rows, width}, name);
  }

  Outputs outputs(const py::handle& chance_logits, const py::handle& afterstate_value, const py::handle& reward,
                  const py::handle& discount, const py::handle& prior_logits, const py::handle& value) const {
    const int64_t nd = search_->decision_count(), nc = search_->chance_count();
    Outputs o{rows_of(chance_logits, nd, num_chance_outcomes(), "chance_logits"),
              rows_of(afterstate_value, nd, -1, "afterstate_value"),
              rows_of(reward, nc, -1, "reward"),
              rows_of(discount, nc, -1, "discount"),
              rows_of(prior_logits, nc, num_actions(), "prior_logits"),
              rows_of(value, nc, -1, "value"),
              {},
              {}};
    o.decision = mcts::DecisionRows{o.chance_logits.rows, o.afterstate_value.rows};
    o.chance = mcts::ChanceRows{o.reward.rows, o.discount.rows, o.prior_logits.rows, o.value.rows};
    return o;
  }

  mcts::StochasticSelection selection() {
    return mcts::StochasticSelection{
        mcts::LeafRows{decision_roots_.mutable_data(), decision_gather_.mutable_data(),
                       decision_scatter_.mutable_data(), decision_action_.mutable_data()},
        mcts::LeafRows{chance_roots_.mutable_data(), chance_gather_.mutable_data(), chance_scatter_.mutable_data(),
                       chance_outcome_.mutable_data()}};
  }

  py::tuple counts() const { return py::make_tuple(search_->decision_count(), search_->chance_count()); }

  std::unique_ptr<mcts::StochasticSearch> search_;
  std::mutex mutex_;
  double core_seconds_ = 0.0;  // wall time inside select and expand_and_backup, for profiling
};

}  // namespace

// The members both search classes have: their shape, their statistics and set_roots.
template <class Wrapper>
void def_common(py::class_<Wrapper>& cls) {
  cls.def_property_readonly("batch_size", &Wrapper::batch_size)
      .def_property_readonly("num_actions", &Wrapper::num_actions)
      .def_property_readonly("capacity", [](const Wrapper& s) { return s.search().tree().capacity(); })
      .def_property_readonly("num_threads", [](const Wrapper& s) { return s.search().num_threads(); })
      .def_property_readonly("simulations_done", [](const Wrapper& s) { return s.search().simulations_done(); })
      .def_property_readonly("num_nodes", &Wrapper::num_nodes)
      .def_property_readonly("core_seconds", &Wrapper::core_seconds,
                             "Seconds spent in the C++ select and expand_and_backup since construction.")
      .def("set_roots", &Wrapper::set_roots, py::arg("prior_logits"), py::arg("value"),
           py::arg("invalid_actions") = py::none(), py::arg("keep") = py::none())
      .def("summary", &Wrapper::summary, "(visit counts int32 [B, A], Q float64 [B, A], root values float64 [B]).");
}

void init_mcts(py::module_ m) {
  m.attr("MAX_BATCH_SIZE") = mcts::kMaxBatchSize;
  m.attr("MAX_ACTIONS") = mcts::kMaxActions;
  m.attr("MAX_CAPACITY") = mcts::kMaxCapacity;
  m.attr("MAX_TREE_BYTES") = mcts::kMaxTreeBytes;
  m.attr("MAX_MAGNITUDE") = mcts::kMaxMagnitude;
  m.def("record_bytes", [](const py::object& num_actions) {
    const int64_t a = as_int(num_actions, "num_actions");
    mcts::TreeBatch::check_shape(1, a, 1);
    return mcts::TreeBatch::record_bytes(a);
  }, py::arg("num_actions"), "Bytes of one node of a tree with this many actions (the trees take batch_size x capacity of them).");
  py::class_<PySearch> search(m, "Search", "B search trees in flat arrays, stepped from Python (see pymbrl.mcts).");
  def_common(search);
  search
      .def(py::init<const py::object&, const py::object&, const py::object&, const py::object&>(), py::arg("batch_size"), py::arg("num_actions"),
           py::arg("capacity"), py::arg("num_threads") = py::none())
      .def_readonly("parent", &PySearch::parent_)
      .def_readonly("action", &PySearch::action_)
      .def_readonly("node", &PySearch::node_)
      .def_readonly("is_new", &PySearch::is_new_)
      .def_readonly("gather_rows", &PySearch::gather_)
      .def_readonly("scatter_rows", &PySearch::scatter_)
      .def_readonly("action_int64", &PySearch::action64_)
      .def("begin_muzero", &PySearch::begin_muzero, py::arg("num_simulations"), py::arg("seed"), py::arg("pb_c_init"),
           py::arg("pb_c_base"), py::arg("dirichlet_alpha"), py::arg("dirichlet_fraction"), py::arg("max_depth"),
           py::arg("qtransform") = "tree_min_max", py::arg("epsilon") = 1e-8, py::arg("min_value") = 0.0,
           py::arg("max_value") = 1.0)
      .def("begin_gumbel", &PySearch::begin_gumbel, py::arg("num_simulations"), py::arg("seed"),
           py::arg("max_num_considered_actions"), py::arg("gumbel_scale"), py::arg("value_scale"),
           py::arg("maxvisit_init"), py::arg("max_depth"), py::arg("rescale_with_invalid") = false)
      .def("select", &PySearch::select)
      .def("expand_and_backup", &PySearch::expand_and_backup, py::arg("reward"), py::arg("discount"),
           py::arg("prior_logits"), py::arg("value"))
      .def("expand_and_select", &PySearch::expand_and_select, py::arg("reward"), py::arg("discount"),
           py::arg("prior_logits"), py::arg("value"),
           "expand_and_backup, then select for the next simulation if one remains (returns whether it did).")
      .def("decide_muzero", [](PySearch& s, double t) { return s.decide(false, t); }, py::arg("temperature"))
      .def("decide_gumbel", [](PySearch& s) { return s.decide(true, 0.0); })
      .def("reroot", &PySearch::reroot, py::arg("actions"));
  py::class_<PyStochasticSearch> stochastic(m, "StochasticSearch",
                                            "B Stochastic MuZero search trees, stepped from Python (see pymbrl.mcts).");
  def_common(stochastic);
  stochastic
      .def(py::init<const py::object&, const py::object&, const py::object&, const py::object&, const py::object&>(),
           py::arg("batch_size"), py::arg("num_actions"), py::arg("num_chance_outcomes"), py::arg("capacity"),
           py::arg("num_threads") = py::none())
      .def_property_readonly("num_chance_outcomes", &PyStochasticSearch::num_chance_outcomes)
      .def_readonly("decision_roots", &PyStochasticSearch::decision_roots_)
      .def_readonly("decision_gather", &PyStochasticSearch::decision_gather_)
      .def_readonly("decision_scatter", &PyStochasticSearch::decision_scatter_)
      .def_readonly("decision_action", &PyStochasticSearch::decision_action_)
      .def_readonly("chance_roots", &PyStochasticSearch::chance_roots_)
      .def_readonly("chance_gather", &PyStochasticSearch::chance_gather_)
      .def_readonly("chance_scatter", &PyStochasticSearch::chance_scatter_)
      .def_readonly("chance_outcome", &PyStochasticSearch::chance_outcome_)
      .def("begin", &PyStochasticSearch::begin, py::arg("num_simulations"), py::arg("seed"), py::arg("pb_c_init"),
           py::arg("pb_c_base"), py::arg("dirichlet_alpha"), py::arg("dirichlet_fraction"), py::arg("max_depth"),
           py::arg("qtransform") = "tree_min_max", py::arg("epsilon") = 1e-8, py::arg("min_value") = 0.0,
           py::arg("max_value") = 1.0)
      .def("select", &PyStochasticSearch::select, "Selects one leaf per root; returns (decision_count, chance_count).")
      .def("expand_and_backup", &PyStochasticSearch::expand_and_backup, py::arg("chance_logits"),
           py::arg("afterstate_value"), py::arg("reward"), py::arg("discount"), py::arg("prior_logits"),
           py::arg("value"))
      .def("expand_and_select", &PyStochasticSearch::expand_and_select, py::arg("chance_logits"),
           py::arg("afterstate_value"), py::arg("reward"), py::arg("discount"), py::arg("prior_logits"),
           py::arg("value"),
           "expand_and_backup, then select for the next simulation if one remains: (decision_count, chance_count) "
           "or None.")
      .def("decide", &PyStochasticSearch::decide, py::arg("temperature"))
      .def("reroot", &PyStochasticSearch::reroot, py::arg("actions"), py::arg("chance_outcomes"))
      .def("chance_nodes", &PyStochasticSearch::chance_nodes, py::arg("root"));
}

}  // namespace pymbrl::bindings
