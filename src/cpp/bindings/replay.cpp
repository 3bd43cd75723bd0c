// pymbrl._core.replay: thin translation to the replay core. Every field of an add is validated
// (presence, shape, dtype) before anything is written, so a rejected call changes nothing. The
// GIL is released while rows are copied; a mutex per buffer serialises adds, samples and
// priority updates from different threads. The game buffer (MuZero) follows the same rules: the
// binding checks shapes and dtypes, the core checks values.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "bindings/common.h"
#include "pymbrl/replay/game_buffer.h"
#include "pymbrl/replay/replay_buffer.h"

namespace py = pybind11;
using namespace pymbrl::replay;

namespace pymbrl::bindings {
namespace {

enum class Kind { kUniform, kPrioritized, kSequence };

std::string dtype_code(const Field& f) { return std::string(1, f.kind) + std::to_string(f.itemsize); }

struct Buffer {
  Kind kind;
  std::unique_ptr<ReplayBuffer> core;
  std::vector<py::dtype> dtypes;  // per field
  std::mutex mutex;

  const RowLayout& layout() const { return core->store().layout(); }
  PrioritizedReplayBuffer& prioritized() { return static_cast<PrioritizedReplayBuffer&>(*core); }
  SequenceReplayBuffer& sequence() { return static_cast<SequenceReplayBuffer&>(*core); }
};

// A validated input: a pointer to C-contiguous data of the field's dtype, kept alive by `owner`
// (a converted copy) or by the caller's object, or held in `scalar`.
struct Input {
  const uint8_t* data = nullptr;  // null: the value is the inline scalar
  py::object owner;
  std::array<uint8_t, 8> scalar{};

  // Inputs are moved into a vector, so the inline scalar's address is only taken at the end.
  const uint8_t* ptr() const { return data ? data : scalar.data(); }
};

template <typename T>
void store_scalar(Input& in, T v) {
  std::memcpy(in.scalar.data(), &v, sizeof(T));
}

// Python float/int/bool written straight into a scalar field: the common case for reward and
// the episode flags, and much cheaper than a trip through numpy.
bool python_scalar(const py::handle& obj, const Field& f, Input& in) {
  PyObject* o = obj.ptr();
  if (PyBool_Check(o)) {
    if (f.kind != 'b') return false;
    store_scalar<uint8_t>(in, o == Py_True);
    return true;
  }
  if (f.kind == 'f' && (PyFloat_Check(o) || PyLong_Check(o))) {
    const double v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred()) {
      PyErr_Clear();
      return false;
    }
    if (f.itemsize == 8) {
      store_scalar<double>(in, v);
    } else if (f.itemsize == 4) {
      const float x = static_cast<float>(v);
      if (std::isinf(x) && std::isfinite(v)) return false;  // the array path names the field and the value
      store_scalar<float>(in, x);
    } else {
      return false;
    }
    return true;
  }
  return false;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += std::to_string(shape[i]) + (shape.size() == 1 ? "," : i + 1 < shape.size() ? ", " : "");
  return s + ")";
}

std::string number_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// The smallest magnitude that rounds to infinity in a float field of `itemsize` bytes (half way
// from the largest finite value to the next power of two, where ties round to even: up).
double overflow_threshold(int64_t itemsize) { return itemsize == 2 ? 65520.0 : 0x1.ffffffp127; }

// Throws ValueError naming `name` unless every value of v[0..n) fits field f: integers within the
// field's range (so no negative into an unsigned field), floats that stay finite where they were
// finite. NaN and infinities are kept in float fields.
template <typename S>
void check_values(const S* v, size_t n, const Field& f, const std::string& name, const py::dtype& dtype) {
  // numpy formats dtypes in Python (microseconds): only for the error message.
  auto dtype_name = [&] { return std::string(py::str(dtype)); };
  if (f.kind == 'f') {
    const double limit = overflow_threshold(f.itemsize);
    for (size_t i = 0; i < n; ++i) {
      const double x = static_cast<double>(v[i]);
      if (std::isfinite(x) && std::fabs(x) >= limit) {
        throw py::value_error(name + ": expected values that fit " + dtype_name() + " (finite values of magnitude < " +
                              number_text(limit) + "), got " + number_text(x));
      }
    }
    return;
  }
  const int bits = static_cast<int>(8 * f.itemsize);
  const int64_t lo = f.kind == 'u' ? 0 : (bits == 64 ? std::numeric_limits<int64_t>::min() : -(int64_t{1} << (bits - 1)));
  const uint64_t hi = f.kind == 'u' ? (bits == 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1) : (uint64_t{1} << (bits - 1)) - 1;
  for (size_t i = 0; i < n; ++i) {
    bool ok;
    if constexpr (std::is_signed_v<S>) {
      const int64_t x = static_cast<int64_t>(v[i]);
      ok = x >= lo && (x < 0 || static_cast<uint64_t>(x) <= hi);
    } else {
      ok = static_cast<uint64_t>(v[i]) <= hi;
    }
    if (!ok) {
      throw py::value_error(name + ": expected values that fit " + dtype_name() + " ([" + std::to_string(lo) + ", " +
                            std::to_string(hi) + "]), got " + std::to_string(v[i]));
    }
  }
}

// Whether every value of dtype (kind, itemsize) is representable in field f, so no check is needed.
bool always_fits(char kind, int64_t itemsize, const Field& f) {
  if (kind == 'b') return true;
  if (f.kind == 'f') return f.itemsize == 8 || (kind == 'f' && itemsize <= f.itemsize) || (kind != 'f' && f.itemsize == 4);
  if (kind == 'f') return false;
  if (kind == f.kind) return itemsize <= f.itemsize;
  return kind == 'u' && f.kind == 'i' && itemsize < f.itemsize;
}

// `arr` (native byte order) converted to field f's dtype, refusing values that do not fit. Bool
// fields take bools only, integer fields bools and integers (floats are refused, NaN and
// fractions included: a float action in an integer field is almost always a bug), float fields
// any of these.
py::array converted(py::array arr, const Field& f, const py::dtype& dtype, const std::string& name) {
  const char kind = arr.dtype().kind();
  const int64_t itemsize = arr.dtype().itemsize();
  const bool known = (kind == 'b' && itemsize == 1) || ((kind == 'i' || kind == 'u') && itemsize <= 8) ||
                     (kind == 'f' && (itemsize == 2 || itemsize == 4 || itemsize == 8));
  const bool allowed = known && (f.kind == 'b' ? kind == 'b' : f.kind == 'f' || kind != 'f');
  if (!allowed) {
    throw py::type_error(name + ": expected dtype " + std::string(py::str(dtype)) + " (or one whose values it holds), got " +
                         std::string(py::str(arr.dtype())));
  }
  if (!always_fits(kind, itemsize, f)) {
    if (!py::cast<bool>(arr.dtype().attr("isnative"))) arr = arr.attr("astype")(arr.dtype().attr("newbyteorder")("="));
    arr = ensure_array(arr, py::array::c_style);
    const size_t n = static_cast<size_t>(arr.size());
    const void* d = arr.data();
    switch (kind) {
      case 'f':
        if (itemsize == 8) check_values(static_cast<const double*>(d), n, f, name, dtype);
        else if (itemsize == 4) check_values(static_cast<const float*>(d), n, f, name, dtype);
        break;  // float16 only reaches here for float16 fields, which hold it
      case 'i':
        if (itemsize == 1) check_values(static_cast<const int8_t*>(d), n, f, name, dtype);
        else if (itemsize == 2) check_values(static_cast<const int16_t*>(d), n, f, name, dtype);
        else if (itemsize == 4) check_values(static_cast<const int32_t*>(d), n, f, name, dtype);
        else check_values(static_cast<const int64_t*>(d), n, f, name, dtype);
        break;
      default:
        if (itemsize == 1) check_values(static_cast<const uint8_t*>(d), n, f, name, dtype);
        else if (itemsize == 2) check_values(static_cast<const uint16_t*>(d), n, f, name, dtype);
        else if (itemsize == 4) check_values(static_cast<const uint32_t*>(d), n, f, name, dtype);
        else check_values(static_cast<const uint64_t*>(d), n, f, name, dtype);
        break;
    }
  }
  return arr.attr("astype")(dtype);
}

Input prepare(const py::handle& obj, const Field& f, const py::dtype& dtype, const std::vector<int64_t>& lead,
              const std::string& name) {
  Input in;
  if (lead.empty() && f.shape.empty() && python_scalar(obj, f, in)) return in;
  std::vector<int64_t> want(lead);
  want.insert(want.end(), f.shape.begin(), f.shape.end());
  py::array arr;
  if (py::isinstance<py::array>(obj)) {
    arr = py::reinterpret_borrow<py::array>(obj);
  } else {
    arr = ensure_array(obj);  // numpy scalars, lists, torch CPU tensors (zero-copy via __array__)
    if (!arr) throw py::type_error(name + ": expected an array-like on the CPU, got " + type_name(obj));
  }
  std::vector<int64_t> got(arr.shape(), arr.shape() + arr.ndim());
  if (got != want) throw py::value_error(name + ": expected shape " + shape_str(want) + ", got " + shape_str(got));
  if (!arr.dtype().is(dtype)) arr = converted(arr, f, dtype, name);
  if (!(arr.flags() & py::array::c_style)) arr = ensure_array(arr, py::array::c_style);
  in.owner = arr;
  in.data = static_cast<const uint8_t*>(arr.data());
  return in;
}

// Reads fields (and next_obs) from `values`, checking that nothing is missing or extra.
std::vector<Input> prepare_all(Buffer& b, const py::dict& values, const std::vector<int64_t>& lead) {
  const auto& fields = b.layout().fields();
  std::vector<Input> inputs;
  inputs.reserve(fields.size() + 1);
  size_t used = 0;
  for (size_t i = 0; i < fields.size(); ++i) {
    PyObject* v = PyDict_GetItemString(values.ptr(), fields[i].name.c_str());
    if (!v) throw py::value_error("fields: missing field '" + fields[i].name + "'");
    inputs.push_back(prepare(v, fields[i], b.dtypes[i], lead, fields[i].name));
    ++used;
  }
  PyObject* next = PyDict_GetItemString(values.ptr(), "next_obs");
  if (!next) throw py::value_error("next_obs: missing (the observation after each step; kept only where an episode ends)");
  inputs.push_back(prepare(next, b.layout().obs(), b.dtypes[&b.layout().obs() - fields.data()], lead, "next_obs"));
  if (static_cast<size_t>(py::len(values)) != used + 1) {
    std::string extra;
    for (auto item : values) {
      const std::string k = py::str(item.first);
      bool known = k == "next_obs";
      for (const auto& f : fields) known = known || f.name == k;
      if (!known) extra += (extra.empty() ? "'" : ", '") + k + "'";
    }
    throw py::value_error("fields: unexpected " + extra + " (not in the spec)");
  }
  return inputs;
}

void append(Buffer& b, const py::dict& values, bool batch) {
  const int64_t envs = b.core->store().num_envs();
  int64_t steps = 1;
  std::vector<int64_t> lead;
  if (batch) {
    // The leading dimension of the observation decides T; every field must agree.
    PyObject* obs = PyDict_GetItemString(values.ptr(), "obs");
    if (!obs) throw py::value_error("fields: missing field 'obs'");
    py::array a = ensure_array(obs);
    if (!a || a.ndim() < 1) throw py::value_error("obs: expected a leading dimension of steps");
    steps = a.shape(0);
    if (steps < 1) throw py::value_error("obs: expected at least one step");
    lead.push_back(steps);
  }
  if (envs > 1) lead.push_back(envs);
  std::vector<Input> inputs = prepare_all(b, values, lead);
  std::vector<const uint8_t*> ptrs;
  for (size_t i = 0; i + 1 < inputs.size(); ++i) ptrs.push_back(inputs[i].ptr());
  const uint8_t* next = inputs.back().ptr();
  py::gil_scoped_release release;
  std::lock_guard<std::mutex> lock(b.mutex);
  b.core->append(ptrs, next, steps);
}

py::array empty(const py::dtype& dtype, std::vector<int64_t> lead, const std::vector<int64_t>& shape) {
  lead.insert(lead.end(), shape.begin(), shape.end());
  return py::array(dtype, lead);
}

// Output arrays for n transitions (lead = [n] or [n, L]): one per field, then next_obs.
py::dict outputs(Buffer& b, const std::vector<int64_t>& lead, TransitionStore::Outputs& out) {
  py::dict d;
  const auto& fields = b.layout().fields();
  for (size_t i = 0; i < fields.size(); ++i) {
    py::array a = empty(b.dtypes[i], lead, fields[i].shape);
    out.fields.push_back(static_cast<uint8_t*>(a.mutable_data()));
    d[py::str(fields[i].name)] = a;
  }
  const Field& obs = b.layout().obs();
  py::array next = empty(b.dtypes[&obs - fields.data()], lead, obs.shape);
  out.next_obs = static_cast<uint8_t*>(next.mutable_data());
  d["next_obs"] = next;
  return d;
}

py::dict sample(Buffer& b, int64_t n, py::object beta) {
  if (b.kind == Kind::kSequence) throw py::type_error("sample: a sequence buffer samples windows: use sample(batch_size, length)");
  {
    // Before anything is allocated for the batch: it may not exceed what is stored.
    std::lock_guard<std::mutex> lock(b.mutex);
    b.core->check_batch(n);
  }
  TransitionStore::Outputs out;
  py::dict d = outputs(b, {n}, out);
  py::array_t<float> discount(n);
  py::array_t<int64_t> ids(n);
  out.discount = discount.mutable_data();
  int64_t* id_ptr = ids.mutable_data();
  py::array_t<float> weights;
  float* w_ptr = nullptr;
  double beta_v = 0.0;
  if (b.kind == Kind::kPrioritized) {
    beta_v = beta.cast<double>();
    weights = py::array_t<float>(n);
    w_ptr = weights.mutable_data();
  }
  {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(b.mutex);
    if (b.kind == Kind::kPrioritized) b.prioritized().sample_prioritized(n, beta_v, id_ptr, w_ptr);
    else b.core->sample_ids(n, id_ptr);
    b.core->store().gather(id_ptr, n, out);
  }
  d["discount"] = discount;
  d["indices"] = ids;
  if (w_ptr) d["weights"] = weights;
  return d;
}

py::dict sample_sequence(Buffer& b, int64_t n, int64_t length, bool within_episode) {
  if (b.kind != Kind::kSequence) throw py::type_error("length: only a SequenceReplayBuffer samples windows");
  {
    // Before anything is allocated for the batch (sample_windows checks again under the same lock).
    std::lock_guard<std::mutex> lock(b.mutex);
    b.sequence().check_windows(n, length);
  }
  TransitionStore::Outputs out;
  py::dict d = outputs(b, {n, length}, out);
  py::array_t<bool> is_first({n, length});
  py::array_t<int64_t> starts(n);
  bool* first_ptr = is_first.mutable_data();
  int64_t* start_ptr = starts.mutable_data();
  {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(b.mutex);
    b.sequence().sample_windows(n, length, within_episode, start_ptr);
    std::vector<int64_t> ids(static_cast<size_t>(n * length));
    expand_windows(b.core->store(), start_ptr, n, length, ids.data(), first_ptr);
    b.core->store().gather(ids.data(), n * length, out);
  }
  d["is_first"] = is_first;
  d["indices"] = starts;
  return d;
}

py::dict snapshot(Buffer& b) {
  py::dict d;
  std::lock_guard<std::mutex> lock(b.mutex);
  const TransitionStore& s = b.core->store();
  d["written"] = s.written();
  d["cleared_at"] = s.cleared_at();
  d["rows"] = copy_of(s.rows_data(), static_cast<size_t>(s.written_rows() * s.layout().row_bytes()));
  d["final_slots"] = copy_of(s.final_slots().data(), s.final_slots().size());
  d["final_pool"] = copy_of(s.final_pool().data(), s.final_pool().size());
  d["free_slots"] = copy_of(s.free_slots().data(), s.free_slots().size());
  d["is_first"] = copy_of(s.is_first_flags().data(), s.is_first_flags().size());
  d["episode_start"] = copy_of(s.episode_starts().data(), s.episode_starts().size());
  const auto& st = b.core->rng().state();
  d["rng"] = copy_of(st.data(), st.size());
  if (b.kind == Kind::kPrioritized) {
    const auto leaves = b.prioritized().sampler().leaves();
    d["priorities"] = copy_of(leaves.data(), leaves.size());
    d["max_priority"] = b.prioritized().sampler().max_priority();
  }
  return d;
}

// A 1-d array of exactly dtype T (no conversion, so no value can wrap on the way in), copied.
template <typename T>
std::vector<T> exact_array(const py::dict& d, const char* key) {
  if (!d.contains(key)) throw py::value_error(std::string("state: missing '") + key + "'");
  py::object obj = d[key];
  const py::dtype want = py::dtype::of<T>();
  if (!py::isinstance<py::array>(obj)) throw py::value_error(std::string(key) + ": expected a numpy array, got " + type_name(obj));
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (arr.ndim() != 1 || arr.dtype().kind() != want.kind() || arr.dtype().itemsize() != want.itemsize() ||
      !py::cast<bool>(arr.dtype().attr("isnative"))) {
    throw py::value_error(std::string(key) + ": expected a 1-d array of " + std::string(py::str(want)) + ", got " +
                          std::to_string(arr.ndim()) + "-d " + std::string(py::str(arr.dtype())));
  }
  auto typed = ensure_array_of<T, py::array::c_style>(arr);
  return std::vector<T>(typed.data(), typed.data() + typed.size());
}

// Validates the whole state (the core checks every invariant) before the buffer changes; a
// rejected state leaves it exactly as it was.
void restore(Buffer& b, const py::dict& d) {
  const char* keys[] = {"written", "cleared_at", "rows", "final_slots", "final_pool", "free_slots", "is_first", "episode_start",
                        "rng", "priorities", "max_priority"};
  const size_t n_keys = b.kind == Kind::kPrioritized ? 11 : 9;
  for (auto item : d) {
    const std::string k = py::str(item.first);
    if (std::find(keys, keys + n_keys, k) == keys + n_keys) throw py::value_error("state: unexpected '" + k + "'");
  }
  auto need = [&](const char* key) -> py::object {
    if (!d.contains(key)) throw py::value_error(std::string("state: missing '") + key + "'");
    return d[key];
  };
  const int64_t written = as_int(need("written"), "written");
  const int64_t cleared_at = as_int(need("cleared_at"), "cleared_at");
  const auto rows = exact_array<uint8_t>(d, "rows");
  const int64_t row_bytes = b.layout().row_bytes();
  if (static_cast<int64_t>(rows.size()) % row_bytes != 0) {
    throw py::value_error("rows: expected whole rows of " + std::to_string(row_bytes) + " bytes, got " + std::to_string(rows.size()));
  }
  const auto rng = exact_array<uint64_t>(d, "rng");
  if (rng.size() != 4) throw py::value_error("rng: expected 4 words, got " + std::to_string(rng.size()));
  const Rng::State st{rng[0], rng[1], rng[2], rng[3]};
  auto final_slots = exact_array<int32_t>(d, "final_slots");
  auto final_pool = exact_array<uint8_t>(d, "final_pool");
  auto free_slots = exact_array<int32_t>(d, "free_slots");
  auto is_first = exact_array<uint8_t>(d, "is_first");
  auto episode_start = exact_array<int64_t>(d, "episode_start");
  const int64_t n_rows = static_cast<int64_t>(rows.size()) / row_bytes;
  std::vector<double> leaves;
  double max_priority = 1.0;
  if (b.kind == Kind::kPrioritized) {
    leaves = exact_array<double>(d, "priorities");
    py::object m = need("max_priority");
    if (!PyFloat_Check(m.ptr()) && !PyLong_Check(m.ptr())) throw py::value_error("max_priority: expected a number, got " + type_name(m));
    max_priority = PyFloat_AsDouble(m.ptr());
    if (max_priority == -1.0 && PyErr_Occurred()) {
      PyErr_Clear();
      throw py::value_error("max_priority: expected a number that fits a float64");
    }
  }
  py::gil_scoped_release release;
  std::lock_guard<std::mutex> lock(b.mutex);
  if (b.kind == Kind::kPrioritized) {
    b.prioritized().restore_all(written, cleared_at, rows.data(), n_rows, std::move(final_slots), std::move(final_pool),
                                std::move(free_slots), std::move(is_first), std::move(episode_start), st, leaves, max_priority);
  } else {
    b.core->restore_store(written, cleared_at, rows.data(), n_rows, std::move(final_slots), std::move(final_pool),
                          std::move(free_slots), std::move(is_first), std::move(episode_start), st);
  }
}

RowLayout make_layout(const py::list& spec, std::vector<py::dtype>& dtypes) {
  std::vector<Field> fields;
  for (auto item : spec) {
    auto t = item.cast<py::tuple>();
    Field f;
    f.name = t[0].cast<std::string>();
    const std::string code = t[1].cast<std::string>();
    if (code.size() < 2) throw py::value_error("spec['" + f.name + "']: expected a numeric dtype");
    f.kind = code[0];
    f.itemsize = std::stoll(code.substr(1));
    f.shape = t[2].cast<std::vector<int64_t>>();
    fields.push_back(f);
  }
  RowLayout layout(std::move(fields));
  for (const auto& f : layout.fields()) dtypes.push_back(py::dtype(dtype_code(f)));
  return layout;
}

// --- the MuZero game buffer ----------------------------------------------------------------------

struct Games {
  std::unique_ptr<GameBuffer> core;
  py::dtype obs_dtype;
  std::vector<int64_t> obs_shape;
  std::mutex mutex;

  const GameStore& store() const { return core->store(); }
  int64_t unroll_steps() const { return core->targets().unroll_steps; }
};

// A validated array argument of the shape it has: C-contiguous data of the wanted dtype.
struct GameArg {
  Input input;
  std::vector<int64_t> shape;
  int64_t size = 1;
  template <typename T>
  const T* data() const { return reinterpret_cast<const T*>(input.ptr()); }
};

// The shape of an array argument, before its dtype is checked.
std::vector<int64_t> shape_of(const py::handle& obj, const std::string& name) {
  const py::array a = ensure_array(obj);
  if (!a) throw py::type_error(name + ": expected an array-like on the CPU, got " + type_name(obj));
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

// `obj` as `dtype` with shape `want` (with `any_shape`, the shape it has), through prepare(): a
// value that does not fit the dtype (300 for uint8, 1e300 for float32) is refused, naming the
// argument, rather than wrapped or made infinite.
GameArg game_arg(const py::handle& obj, const py::dtype& dtype, std::vector<int64_t> want, const std::string& name,
                 bool any_shape = false) {
  GameArg out;
  out.shape = any_shape ? shape_of(obj, name) : std::move(want);
  for (int64_t d : out.shape) out.size *= d;
  Field f;
  f.name = name;
  f.kind = dtype.kind();
  f.itemsize = dtype.itemsize();
  out.input = prepare(obj, f, dtype, out.shape, name);
  return out;
}

const py::dtype& dtype_of(char code) {
  // Leaked on purpose: a static py::object would be destroyed after the interpreter is gone.
  static const py::dtype& i8 = *new py::dtype("int64");
  static const py::dtype& f4 = *new py::dtype("float32");
  static const py::dtype& f8 = *new py::dtype("float64");
  return code == 'i' ? i8 : code == 'f' ? f4 : f8;
}

// Position ids: integers of any shape, as int64.
GameArg ids_of(const py::handle& obj) { return game_arg(obj, dtype_of('i'), {}, "indices", true); }

std::vector<int64_t> with(std::vector<int64_t> lead, const std::vector<int64_t>& tail) {
  lead.insert(lead.end(), tail.begin(), tail.end());
  return lead;
}

int64_t add_game(Games& b, const py::handle& obs, const py::handle& actions, const py::handle& rewards,
                 const py::handle& root_values, const py::handle& policies, bool terminated, double final_value,
                 const py::object& priorities) {
  const std::vector<int64_t> obs_shape = shape_of(obs, "obs");
  if (obs_shape.size() != b.obs_shape.size() + 1 || !std::equal(b.obs_shape.begin(), b.obs_shape.end(), obs_shape.begin() + 1)) {
    throw py::value_error("obs: expected shape (T, *obs_shape) with obs_shape " + shape_str(b.obs_shape) + ", got " +
                          shape_str(obs_shape));
  }
  const GameArg o = game_arg(obs, b.obs_dtype, obs_shape, "obs");
  const std::vector<int64_t> lead{obs_shape[0]};
  const GameArg a = game_arg(actions, dtype_of('i'), lead, "actions");
  const GameArg r = game_arg(rewards, dtype_of('f'), lead, "rewards");
  const GameArg v = game_arg(root_values, dtype_of('f'), lead, "root_values");
  const GameArg p = game_arg(policies, dtype_of('f'), with(lead, {b.store().num_actions()}), "policies");
  GameArg pr;
  if (!priorities.is_none()) pr = game_arg(priorities, dtype_of('d'), lead, "priorities");
  GameData g;
  g.obs = o.data<uint8_t>();
  g.actions = a.data<int64_t>();
  g.rewards = r.data<float>();
  g.root_values = v.data<float>();
  g.policies = p.data<float>();
  g.length = lead[0];
  g.terminated = terminated;
  g.final_value = final_value;
  const double* given = priorities.is_none() ? nullptr : pr.data<double>();
  py::gil_scoped_release release;
  std::lock_guard<std::mutex> lock(b.mutex);
  return b.core->add_game(g, given);
}

py::dict sample_games(Games& b, int64_t n, double beta) {
  b.core->batch_bytes(n);  // bounds every allocation below
  const int64_t k = b.unroll_steps();
  const int64_t a = b.store().num_actions();
  py::array obs(b.obs_dtype, with({n}, b.obs_shape));
  py::array_t<int64_t> actions({n, k});
  py::array_t<float> values({n, k + 1}), rewards({n, k + 1}), policies({n, k + 1, a});
  py::array_t<float> mask({n, k + 1}), value_mask({n, k + 1}), reward_mask({n, k + 1});
  py::array_t<int64_t> ids(n);
  py::array_t<float> weights(n);
  TargetOutputs out;
  out.obs = static_cast<uint8_t*>(obs.mutable_data());
  out.actions = actions.mutable_data();
  out.values = values.mutable_data();
  out.rewards = rewards.mutable_data();
  out.policies = policies.mutable_data();
  out.mask = mask.mutable_data();
  out.value_mask = value_mask.mutable_data();
  out.reward_mask = reward_mask.mutable_data();
  int64_t* id_ptr = ids.mutable_data();
  float* w_ptr = weights.mutable_data();
  {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(b.mutex);
    b.core->sample(n, beta, id_ptr, w_ptr, out);
  }
  py::dict d;
  d["obs"] = obs;
  d["actions"] = actions;
  d["target_values"] = values;
  d["target_rewards"] = rewards;
  d["target_policies"] = policies;
  d["mask"] = mask;
  d["value_mask"] = value_mask;
  d["reward_mask"] = reward_mask;
  d["indices"] = ids;
  d["weights"] = weights;
  return d;
}

void update_game_priorities(Games& b, const py::handle& indices, const py::handle& priorities) {
  if (!b.core->prioritized()) throw py::type_error("update_priorities: only a prioritized buffer has priorities");
  const GameArg ids = ids_of(indices);
  const GameArg p = game_arg(priorities, dtype_of('d'), ids.shape, "priorities");
  py::gil_scoped_release release;
  std::lock_guard<std::mutex> lock(b.mutex);
  b.core->update_priorities(ids.data<int64_t>(), p.data<double>(), ids.size);
}

void update_targets(Games& b, const py::handle& indices, const py::handle& root_values, const py::handle& policies) {
  const GameArg ids = ids_of(indices);
  const GameArg v = game_arg(root_values, dtype_of('f'), ids.shape, "root_values");
  const GameArg p = game_arg(policies, dtype_of('f'), with(ids.shape, {b.store().num_actions()}), "policies");
  py::gil_scoped_release release;
  std::lock_guard<std::mutex> lock(b.mutex);
  b.core->update_targets(ids.data<int64_t>(), v.data<float>(), p.data<float>(), ids.size);
}

py::array observations(Games& b, const py::handle& indices) {
  const GameArg ids = ids_of(indices);
  checked_product(ids.size, b.store().obs_bytes(), GameBuffer::kMaxBatchBytes,
                  "indices: expected at most 2^32 bytes of observations, got " + std::to_string(ids.size) + " ids");
  {
    // Refused before the output is allocated; gather_obs checks again under the same lock.
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(b.mutex);
    b.store().check_ids(ids.data<int64_t>(), ids.size, "indices");
  }
  py::array out(b.obs_dtype, with(ids.shape, b.obs_shape));
  uint8_t* dst = static_cast<uint8_t*>(out.mutable_data());
  {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(b.mutex);
    b.store().gather_obs(ids.data<int64_t>(), ids.size, dst);
  }
  return out;
}

py::tuple game_spans(Games& b, const py::handle& indices) {
  const GameArg ids = ids_of(indices);
  py::array_t<int64_t> starts(ids.shape), lengths(ids.shape);
  int64_t* s = starts.mutable_data();
  int64_t* l = lengths.mutable_data();
  {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(b.mutex);
    b.store().game_spans(ids.data<int64_t>(), ids.size, s, l);
  }
  return py::make_tuple(starts, lengths);
}

py::array_t<double> game_priorities(Games& b, const py::handle& indices) {
  const GameArg ids = ids_of(indices);
  py::array_t<double> out(ids.shape);
  double* dst = out.mutable_data();
  const int64_t* src = ids.data<int64_t>();
  py::gil_scoped_release release;
  std::lock_guard<std::mutex> lock(b.mutex);
  for (int64_t i = 0; i < ids.size; ++i) dst[i] = b.core->priority(src[i]);
  return out;
}

py::dict games_snapshot(Games& b) {
  std::lock_guard<std::mutex> lock(b.mutex);
  const GameBufferState st = b.core->state();
  const GameStoreState& s = st.store;
  py::dict d;
  d["oldest_id"] = s.oldest_id;
  d["end_id"] = s.end_id;
  d["games_added"] = s.games_added;
  d["game_starts"] = to_array(s.game_starts);
  d["game_lengths"] = to_array(s.game_lengths);
  d["game_terminated"] = to_array(s.game_terminated);
  d["game_final_values"] = to_array(s.game_final_values);
  d["obs"] = to_array(s.obs);
  d["actions"] = to_array(s.actions);
  d["rewards"] = to_array(s.rewards);
  d["root_values"] = to_array(s.root_values);
  d["policies"] = to_array(s.policies);
  d["rng"] = copy_of(st.rng.data(), st.rng.size());
  if (b.core->prioritized()) {
    d["priorities"] = to_array(st.priorities);
    d["max_priority"] = st.max_priority;
  }
  return d;
}

// A 1-d array of a snapshot, of exactly the dtype snapshot() writes: a state comes from a file
// and any other dtype (another width, the other byte order) means it was corrupted or edited.
template <typename T>
std::vector<T> state_array(const py::dict& d, const char* key) {
  py::array a = ensure_array(d[key]);
  if (!a) throw py::value_error(std::string(key) + ": expected an array, got " + type_name(d[key]));
  const py::dtype want = py::dtype::of<T>();
  if (!a.dtype().is(want) || a.ndim() != 1) {
    throw py::value_error(std::string(key) + ": expected a 1-d array of " + std::string(py::str(want)) + ", got " +
                          std::to_string(a.ndim()) + "-d " + std::string(py::str(a.dtype())));
  }
  auto typed = ensure_array_of<T, py::array::c_style>(a);
  return std::vector<T>(typed.data(), typed.data() + typed.size());
}

int64_t state_int(const py::dict& d, const char* key) {
  try {
    return as_int(d[key], key);
  } catch (py::type_error& e) {
    throw py::value_error(e.what());
  }
}

void games_restore(Games& b, const py::dict& d) {
  const bool prioritized = b.core->prioritized();
  std::vector<std::string> keys{"oldest_id", "end_id", "games_added", "game_starts", "game_lengths", "game_terminated",
                                "game_final_values", "obs", "actions", "rewards", "root_values", "policies", "rng"};
  if (prioritized) keys.insert(keys.end(), {"priorities", "max_priority"});
  for (const std::string& k : keys) {
    if (!d.contains(k)) throw py::value_error("state: missing '" + k + "'");
  }
  for (const auto& item : d) {
    const std::string k = py::str(item.first);
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
      throw py::value_error("state: unexpected '" + k + "'" + (k == "priorities" ? " (this buffer is not prioritized)" : ""));
    }
  }
  GameBufferState st;
  GameStoreState& s = st.store;
  s.oldest_id = state_int(d, "oldest_id");
  s.end_id = state_int(d, "end_id");
  s.games_added = state_int(d, "games_added");
  s.game_starts = state_array<int64_t>(d, "game_starts");
  s.game_lengths = state_array<int64_t>(d, "game_lengths");
  s.game_terminated = state_array<uint8_t>(d, "game_terminated");
  s.game_final_values = state_array<float>(d, "game_final_values");
  s.obs = state_array<uint8_t>(d, "obs");
  s.actions = state_array<int64_t>(d, "actions");
  s.rewards = state_array<float>(d, "rewards");
  s.root_values = state_array<float>(d, "root_values");
  s.policies = state_array<float>(d, "policies");
  const auto rng = state_array<uint64_t>(d, "rng");
  if (rng.size() != 4) throw py::value_error("rng: expected 4 words, got " + std::to_string(rng.size()));
  st.rng = {rng[0], rng[1], rng[2], rng[3]};
  if (prioritized) {
    st.priorities = state_array<double>(d, "priorities");
    const py::handle m = d["max_priority"];
    if (PyBool_Check(m.ptr()) || !(PyFloat_Check(m.ptr()) || PyLong_Check(m.ptr()))) {
      throw py::value_error("max_priority: expected a number, got " + type_name(m));
    }
    st.max_priority = PyFloat_AsDouble(m.ptr());
    if (st.max_priority == -1.0 && PyErr_Occurred()) {
      PyErr_Clear();
      throw py::value_error("max_priority: expected a float64 value, got " + std::string(py::repr(m)));
    }
  }
  py::gil_scoped_release release;
  std::lock_guard<std::mutex> lock(b.mutex);
  b.core->restore(st);
}

std::unique_ptr<Games> make_games(int64_t capacity, const std::vector<int64_t>& obs_shape, const std::string& obs_dtype,
                                  int64_t num_actions, int64_t unroll_steps, int64_t td_steps, double discount, bool prioritized,
                                  double alpha, double eps, uint64_t seed) {
  auto b = std::make_unique<Games>();
  b->obs_dtype = py::dtype(obs_dtype);
  const char kind = b->obs_dtype.kind();
  if (kind != 'b' && kind != 'i' && kind != 'u' && kind != 'f') {
    throw py::value_error("obs_dtype: expected a bool, integer or float dtype, got " + obs_dtype);
  }
  const std::string too_big = "obs_shape: expected observations of at most 2^40 bytes, got shape " + shape_str(obs_shape) +
                              " of " + obs_dtype;
  int64_t obs_bytes = b->obs_dtype.itemsize();
  for (int64_t dim : obs_shape) {
    if (dim < 1) throw py::value_error("obs_shape: expected dimensions >= 1, got " + shape_str(obs_shape));
    obs_bytes = checked_product(obs_bytes, dim, kMaxStoreBytes, too_big);
  }
  b->obs_shape = obs_shape;
  GameStoreConfig store{capacity, obs_bytes, num_actions};
  TargetConfig targets{unroll_steps, td_steps, discount};
  b->core = std::make_unique<GameBuffer>(store, targets, prioritized, alpha, eps, seed);
  return b;
}

}  // namespace

void init_replay(py::module_ m) {
  py::class_<Buffer>(m, "Buffer")
      .def(py::init([](const std::string& kind, const py::list& spec, int64_t capacity, int64_t num_envs, int64_t n_step,
                       double gamma, double alpha, double eps, uint64_t seed) {
             auto b = std::make_unique<Buffer>();
             RowLayout layout = make_layout(spec, b->dtypes);
             StoreConfig config{capacity, num_envs, n_step, gamma, false};
             if (kind == "uniform") {
               b->kind = Kind::kUniform;
               b->core = std::make_unique<ReplayBuffer>(std::move(layout), config, seed);
             } else if (kind == "prioritized") {
               b->kind = Kind::kPrioritized;
               b->core = std::make_unique<PrioritizedReplayBuffer>(std::move(layout), config, seed, alpha, eps);
             } else if (kind == "sequence") {
               b->kind = Kind::kSequence;
               b->core = std::make_unique<SequenceReplayBuffer>(std::move(layout), config, seed);
             } else {
               throw py::value_error("kind: expected 'uniform', 'prioritized' or 'sequence', got '" + kind + "'");
             }
             return b;
           }),
           py::arg("kind"), py::arg("spec"), py::arg("capacity"), py::arg("num_envs"), py::arg("n_step"),
           py::arg("gamma"), py::arg("alpha"), py::arg("eps"), py::arg("seed"))
      .def("add", [](Buffer& b, const py::dict& values) { append(b, values, false); }, py::arg("values"))
      .def("extend", [](Buffer& b, const py::dict& values) { append(b, values, true); }, py::arg("values"))
      .def("sample", &sample, py::arg("batch_size"), py::arg("beta") = py::none())
      .def("sample_sequence", &sample_sequence, py::arg("batch_size"), py::arg("length"), py::arg("within_episode"))
      .def("update_priorities", [](Buffer& b, const py::array_t<int64_t, py::array::forcecast>& ids,
                                   const py::array_t<double, py::array::forcecast>& priorities) {
        if (b.kind != Kind::kPrioritized) throw py::type_error("update_priorities: only prioritized buffers have priorities");
        if (ids.ndim() != 1 || priorities.ndim() != 1 || ids.size() != priorities.size()) {
          throw py::value_error("priorities: expected a 1-d array as long as indices (" + std::to_string(ids.size()) + ")");
        }
        py::gil_scoped_release release;
        std::lock_guard<std::mutex> lock(b.mutex);
        b.prioritized().update_priorities(ids.data(), priorities.data(), ids.size());
      }, py::arg("indices"), py::arg("priorities"))
      .def("__len__", [](Buffer& b) {
        std::lock_guard<std::mutex> lock(b.mutex);
        return b.core->size();
      })
      .def("clear", [](Buffer& b) {
        std::lock_guard<std::mutex> lock(b.mutex);
        b.core->clear();
      })
      .def_property_readonly("capacity", [](const Buffer& b) { return b.core->store().capacity(); })
      .def_property_readonly("row_bytes", [](const Buffer& b) { return b.layout().row_bytes(); })
      .def_property_readonly("written", [](Buffer& b) {
        std::lock_guard<std::mutex> lock(b.mutex);
        return b.core->store().written();
      })
      .def_property_readonly("max_priority", [](Buffer& b) {
        if (b.kind != Kind::kPrioritized) throw py::type_error("max_priority: only prioritized buffers have priorities");
        std::lock_guard<std::mutex> lock(b.mutex);
        return b.prioritized().sampler().max_priority();
      })
      .def("priorities", [](Buffer& b, const py::array_t<int64_t, py::array::forcecast>& ids) {
        if (b.kind != Kind::kPrioritized) throw py::type_error("priorities: only prioritized buffers have priorities");
        py::array_t<double> out(ids.size());
        std::lock_guard<std::mutex> lock(b.mutex);
        for (py::ssize_t i = 0; i < ids.size(); ++i) {
          out.mutable_data()[i] = b.prioritized().sampler().priority(b.core->store(), ids.data()[i]);
        }
        return out;
      }, py::arg("indices"), "p^alpha of each id (0 where not sampleable).")
      .def("snapshot", &snapshot)
      .def("restore", &restore, py::arg("state"));

  py::class_<Games>(m, "GameBuffer")
      .def(py::init(&make_games), py::arg("capacity"), py::arg("obs_shape"), py::arg("obs_dtype"), py::arg("num_actions"),
           py::arg("unroll_steps"), py::arg("td_steps"), py::arg("discount"), py::arg("prioritized"), py::arg("alpha"),
           py::arg("eps"), py::arg("seed"))
      .def("add_game", &add_game, py::arg("obs"), py::arg("actions"), py::arg("rewards"), py::arg("root_values"),
           py::arg("policies"), py::arg("terminated"), py::arg("final_value"), py::arg("priorities") = py::none(),
           "Stores a game; returns the id of its first position.")
      .def("sample", &sample_games, py::arg("batch_size"), py::arg("beta"))
      .def("update_priorities", &update_game_priorities, py::arg("indices"), py::arg("priorities"))
      .def("update_targets", &update_targets, py::arg("indices"), py::arg("root_values"), py::arg("policies"))
      .def("observations", &observations, py::arg("indices"))
      .def("game_spans", &game_spans, py::arg("indices"), "(first position id, length) of each position's game.")
      .def("priorities", &game_priorities, py::arg("indices"), "priority^alpha of each id (0 where not stored or not prioritized).")
      .def("__len__", [](Games& b) {
        std::lock_guard<std::mutex> lock(b.mutex);
        return b.store().size();
      })
      .def_property_readonly("num_games", [](Games& b) {
        std::lock_guard<std::mutex> lock(b.mutex);
        return b.store().num_games();
      })
      .def_property_readonly("end_id", [](Games& b) {
        std::lock_guard<std::mutex> lock(b.mutex);
        return b.store().end_id();
      })
      .def_property_readonly("max_priority", [](Games& b) {
        if (!b.core->prioritized()) throw py::type_error("max_priority: only a prioritized buffer has priorities");
        std::lock_guard<std::mutex> lock(b.mutex);
        return b.core->priorities().max_priority();
      })
      .def("clear", [](Games& b) {
        std::lock_guard<std::mutex> lock(b.mutex);
        b.core->clear();
      })
      .def("snapshot", &games_snapshot)
      .def("restore", &games_restore, py::arg("state"));
}

}  // namespace pymbrl::bindings
