// Helpers shared by the binding files: argument conversion with messages that name the argument.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#ifdef __linux__
#include <sched.h>
#endif

namespace pymbrl::bindings {

namespace py = pybind11;

void init_dyna(py::module_ m);
void init_replay(py::module_ m);
void init_mcts(py::module_ m);
void init_envs(py::module_ m);

// The CPUs this process may run on: in a container or under taskset that is fewer than the
// machine has, and defaults sized from the machine would oversubscribe them.
inline int hardware_threads() {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

inline std::string type_name(const py::handle& obj) { return py::str(py::type::of(obj).attr("__name__")); }

// An integer argument: Python ints and numpy integer scalars (anything with __index__ but bool).
// Floats such as 3.0 are refused: a float state is almost always a bug upstream.
inline int64_t as_int(const py::handle& obj, const char* name) {
  if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr())) {
    throw py::type_error(std::string(name) + ": expected an integer, got " + type_name(obj));
  }
  // __index__ can still refuse (a one-element float tensor defines it and raises).
  py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(obj.ptr()));
  if (!index) {
    PyErr_Clear();
    throw py::type_error(std::string(name) + ": expected an integer, got " + type_name(obj));
  }
  const long long v = PyLong_AsLongLong(index.ptr());
  if (v == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error(std::string(name) + ": expected an integer that fits in 64 bits");
  }
  return static_cast<int64_t>(v);
}

// A numpy shape as Python prints it: "(3,)", "(2, 5)".
inline std::string shape_text(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// ValueError naming `name` unless `a` has `shape`; a -1 entry takes any length (printed "n").
inline void check_shape(const py::array& a, const std::vector<int64_t>& shape, const char* name) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || a.shape(static_cast<py::ssize_t>(i)) == shape[i];
  if (ok) return;
  std::string want = "(";
  for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + (shape[i] < 0 ? std::string("n") : std::to_string(shape[i]));
  throw py::value_error(std::string(name) + ": expected shape " + want + (shape.size() == 1 ? ",)" : ")") + ", got " +
                        shape_text(a));
}

// numpy's conversion of an array-like, as pybind11's array::ensure makes it: a null array where
// numpy refuses the object. ensure clears every error, which would report a KeyboardInterrupt or
// SystemExit raised meanwhile by Python code that numpy ran (a tensor's __array__ on Ctrl-C) as a
// wrong argument; those propagate instead. `dtype` (a reference, stolen) or null for any dtype.
inline PyObject* from_any(const py::handle& obj, PyObject* dtype, int flags) {
  PyObject* out = py::detail::npy_api::get().PyArray_FromAny_(
      obj.ptr(), dtype, 0, 0, py::detail::npy_api::NPY_ARRAY_ENSUREARRAY_ | flags, nullptr);
  if (out == nullptr) {
    if (!PyErr_ExceptionMatches(PyExc_Exception)) throw py::error_already_set();
    PyErr_Clear();
  }
  return out;
}

inline py::array ensure_array(const py::handle& obj, int flags = 0) {
  return py::reinterpret_steal<py::array>(from_any(obj, nullptr, flags));
}

template <typename T, int Flags = py::array::c_style | py::array::forcecast>
py::array_t<T, Flags> ensure_array_of(const py::handle& obj) {
  return py::reinterpret_steal<py::array_t<T, Flags>>(from_any(obj, py::dtype::of<T>().release().ptr(), Flags));
}

// `obj` as an array of one of the dtype kinds `kinds` (numpy's 'f', 'i', 'u', 'b') and the given
// shape; `what` says what was expected in the error.
inline py::array checked_array(const py::handle& obj, const std::vector<int64_t>& shape, const char* name,
                               const char* kinds, const char* what) {
  py::array a = ensure_array(obj);
  if (!a) throw py::type_error(std::string(name) + ": expected " + what + ", got " + type_name(obj));
  if (std::string(kinds).find(a.dtype().kind()) == std::string::npos) {
    throw py::type_error(std::string(name) + ": expected " + what + ", got dtype " + std::string(py::str(a.dtype())));
  }
  check_shape(a, shape, name);
  return a;
}

// A numpy array field of a state dict, checked for its kind of dtype ('i' integers, 'f' floats,
// 'b' booleans) and its number of dimensions, then converted (copied) to T.
template <typename T>
std::vector<T> array_field(const py::dict& d, const char* key, char kind, int ndim = 1) {
  if (!d.contains(key)) throw py::key_error(std::string("state_dict: missing key '") + key + "'");
  py::array arr = ensure_array(d[key]);
  if (!arr) throw py::type_error(std::string(key) + ": expected an array");
  char k = arr.dtype().kind();
  if (k == 'u') k = 'i';
  if (k != kind || arr.ndim() != ndim) {
    throw py::value_error(std::string(key) + ": expected a " + std::to_string(ndim) + "-d array of " +
                          (kind == 'i' ? "integers" : kind == 'f' ? "floats" : "booleans") + ", got " +
                          std::to_string(arr.ndim()) + "-d " + std::string(py::str(arr.dtype())));
  }
  auto typed = ensure_array_of<T>(arr);
  return std::vector<T>(typed.data(), typed.data() + typed.size());
}

// A 1-d numpy array holding a copy of data[0..n).
template <typename T>
py::array_t<T> copy_of(const T* data, size_t n) {
  py::array_t<T> out(static_cast<py::ssize_t>(n));
  std::copy(data, data + n, out.mutable_data());
  return out;
}

template <typename T>
py::array_t<T> to_array(const std::vector<T>& v) {
  return copy_of(v.data(), v.size());
}

// std::vector<bool> is bit-packed and has no data(): copied element by element.
inline py::array_t<bool> to_array(const std::vector<bool>& v) {
  py::array_t<bool> out(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

}  // namespace pymbrl::bindings
