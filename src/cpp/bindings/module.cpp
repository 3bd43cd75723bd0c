// pymbrl._core: the compiled core. Each Python submodule has its own binding file; this one only
// assembles them and reports how the extension was built.
#include <pybind11/pybind11.h>

#include "bindings/common.h"

namespace py = pybind11;

#ifndef PYMBRL_VERSION
#define PYMBRL_VERSION "0+unknown"
#endif
#ifndef PYMBRL_CXX_FLAGS
#define PYMBRL_CXX_FLAGS ""
#endif
#ifndef PYMBRL_BUILD_TYPE
#define PYMBRL_BUILD_TYPE ""
#endif
#ifndef PYMBRL_COMPILER
#define PYMBRL_COMPILER ""
#endif

PYBIND11_MODULE(_core, m) {
  m.doc() = "pymbrl's compiled core (torch-free C++; arrays cross through the buffer protocol).";
  m.def("build_info", [] {
    py::dict info;
    info["version"] = PYMBRL_VERSION;
    info["compiler"] = PYMBRL_COMPILER;
    info["cxx_standard"] = __cplusplus;
    info["flags"] = PYMBRL_CXX_FLAGS;
    info["build_type"] = PYMBRL_BUILD_TYPE;
    info["hardware_threads"] = pymbrl::bindings::hardware_threads();
    return info;
  }, "Version, compiler, compile flags and build type of the compiled core.");
  pymbrl::bindings::init_dyna(m.def_submodule("dyna", "Tabular Dyna planning."));
  pymbrl::bindings::init_replay(m.def_submodule("replay", "Replay buffers."));
  pymbrl::bindings::init_mcts(m.def_submodule("mcts", "Batched Monte Carlo tree search."));
  pymbrl::bindings::init_envs(m.def_submodule("envs", "Batched environments (MiniPacman)."));
}
