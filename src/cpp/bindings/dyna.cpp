// pymbrl._core.dyna: thin translation to the tabular Dyna core. Validates Python arguments,
// releases the GIL around planning and batch runs, and serialises agents to dicts of arrays.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bindings/common.h"
#include "pymbrl/dyna/maze.h"
#include "pymbrl/dyna/runner.h"
#include "pymbrl/dyna/tabular_env.h"
#include "pymbrl/dyna/tabular_mdp.h"

namespace py = pybind11;
using namespace pymbrl::dyna;

namespace pymbrl::bindings {
namespace {

AgentKind parse_kind(const std::string& s) {
  if (s == "dyna_q") return AgentKind::kDynaQ;
  if (s == "dyna_q_plus") return AgentKind::kDynaQPlus;
  if (s == "prioritized_sweeping") return AgentKind::kPrioritizedSweeping;
  throw py::value_error("kind: expected 'dyna_q', 'dyna_q_plus' or 'prioritized_sweeping', got '" + s + "'");
}

ModelKind parse_model(const std::string& s) {
  if (s == "deterministic") return ModelKind::kDeterministic;
  if (s == "stochastic") return ModelKind::kStochastic;
  throw py::value_error("model: expected 'deterministic' or 'stochastic', got '" + s + "'");
}

const char* model_name(ModelKind k) { return k == ModelKind::kDeterministic ? "deterministic" : "stochastic"; }

DynaConfig make_config(py::handle n_states, py::handle n_actions, double alpha, double gamma, double epsilon,
                       py::handle planning_steps, const std::string& model, double kappa, double theta,
                       uint64_t seed) {
  DynaConfig c;
  c.n_states = as_int(n_states, "n_states");
  c.n_actions = as_int(n_actions, "n_actions");
  c.alpha = alpha;
  c.gamma = gamma;
  c.epsilon = epsilon;
  c.planning_steps = as_int(planning_steps, "planning_steps");
  c.model = parse_model(model);
  c.kappa = kappa;
  c.theta = theta;
  c.seed = seed;
  return c;
}

// An agent plus the lock that keeps two Python threads from updating it at once while the GIL is
// released; calls lock after releasing the GIL and unlock before taking it back (no deadlock).
struct Agent {
  std::unique_ptr<TabularAgent> core;
  std::mutex mutex;
};

py::dict snapshot_to_dict(const TabularAgent& agent, const DynaSnapshot& s) {
  py::dict d;
  const DynaConfig& c = agent.config();
  d["kind"] = agent_kind_name(agent.kind());
  d["n_states"] = c.n_states;
  d["n_actions"] = c.n_actions;
  d["model"] = model_name(c.model);
  py::array_t<double> q({c.n_states, c.n_actions});
  std::copy(s.q.begin(), s.q.end(), q.mutable_data());
  d["q"] = q;
  d["rng"] = to_array(std::vector<uint64_t>(s.rng.begin(), s.rng.end()));
  d["time"] = s.time;
  std::vector<int64_t> offsets{0}, next, count;
  std::vector<double> reward;
  std::vector<bool> terminated;
  for (const auto& list : s.model_outcomes) {
    for (const Outcome& o : list) {
      next.push_back(o.next);
      reward.push_back(o.reward);
      terminated.push_back(o.terminated);
      count.push_back(o.count);
    }
    offsets.push_back(static_cast<int64_t>(next.size()));
  }
  d["model_pairs"] = to_array(s.model_pairs);
  d["model_offsets"] = to_array(offsets);
  d["model_next"] = to_array(next);
  d["model_reward"] = to_array(reward);
  d["model_terminated"] = to_array(terminated);
  d["model_count"] = to_array(count);
  d["last_tried"] = to_array(s.last_tried);
  std::vector<int64_t> qkeys;
  std::vector<double> qprio;
  for (const auto& e : s.queue) {
    qkeys.push_back(e.key);
    qprio.push_back(e.priority);
  }
  d["queue_pairs"] = to_array(qkeys);
  d["queue_priorities"] = to_array(qprio);
  std::vector<int64_t> poff{0}, ppairs;
  for (const auto& list : s.predecessors) {
    ppairs.insert(ppairs.end(), list.begin(), list.end());
    poff.push_back(static_cast<int64_t>(ppairs.size()));
  }
  d["predecessor_offsets"] = to_array(s.predecessors.empty() ? std::vector<int64_t>{} : poff);
  d["predecessor_pairs"] = to_array(ppairs);
  return d;
}

// A real-number argument: floats, ints and numpy scalars, never strings; an int too large for a
// double is a ValueError naming the argument.
double as_real(const py::handle& obj, const char* name) {
  if (PyUnicode_Check(obj.ptr()) || PyBytes_Check(obj.ptr()) ||
      !(PyFloat_Check(obj.ptr()) || PyIndex_Check(obj.ptr()) || py::hasattr(obj, "__float__"))) {
    throw py::type_error(std::string(name) + ": expected a real number, got " + type_name(obj));
  }
  const double v = PyFloat_AsDouble(obj.ptr());
  if (v == -1.0 && PyErr_Occurred()) {
    const bool overflow = PyErr_ExceptionMatches(PyExc_OverflowError);
    PyErr_Clear();
    if (overflow) throw py::value_error(std::string(name) + ": expected a finite number, got one beyond float64");
    throw py::type_error(std::string(name) + ": expected a real number, got " + type_name(obj));
  }
  return v;
}

// A state-dict field: present, an array of dtype kind `kind` ('i' integers signed or not, 'f'
// floats, 'b' booleans) and the given shape (-1: any length), converted (copied) to T. Every error
// names the key.
template <typename T>
std::vector<T> field(const py::dict& d, const char* key, char kind, const std::vector<int64_t>& shape) {
  if (!d.contains(key)) throw py::value_error(std::string("state_dict: missing key '") + key + "'");
  py::array arr = ensure_array(d[key]);
  if (!arr) throw py::type_error(std::string(key) + ": expected an array, got " + type_name(d[key]));
  char k = arr.dtype().kind();
  if (k == 'u') k = 'i';
  if (k != kind) {
    throw py::value_error(std::string(key) + ": expected an array of " +
                          (kind == 'i' ? "integers" : kind == 'f' ? "floats" : "booleans") + ", got dtype " +
                          std::string(py::str(arr.dtype())));
  }
  check_shape(arr, shape, key);
  auto typed = ensure_array_of<T>(arr);
  if (!typed) throw py::value_error(std::string(key) + ": expected values convertible to " + (kind == 'f' ? "float64" : "int64"));
  return std::vector<T>(typed.data(), typed.data() + typed.size());
}

// Offsets of `n_lists` consecutive slices of `n_values` values: n_lists + 1 non-decreasing
// offsets from 0 to n_values, checked in full before any slice is taken.
void check_offsets(const std::vector<int64_t>& offsets, size_t n_lists, size_t n_values, const char* name) {
  if (offsets.size() != n_lists + 1) {
    throw py::value_error(std::string(name) + ": expected " + std::to_string(n_lists + 1) + " offsets, got " +
                          std::to_string(offsets.size()));
  }
  if (offsets.front() != 0 || offsets.back() != static_cast<int64_t>(n_values)) {
    throw py::value_error(std::string(name) + ": expected offsets from 0 to " + std::to_string(n_values) + ", got " +
                          std::to_string(offsets.front()) + " to " + std::to_string(offsets.back()));
  }
  for (size_t i = 0; i + 1 < offsets.size(); ++i) {
    if (offsets[i + 1] < offsets[i]) throw py::value_error(std::string(name) + ": expected non-decreasing offsets");
  }
}

DynaSnapshot dict_to_snapshot(const TabularAgent& agent, const py::dict& d) {
  const DynaConfig& c = agent.config();
  auto expect = [&](const char* key, const std::string& want) {
    if (!d.contains(key)) throw py::value_error(std::string("state_dict: missing key '") + key + "'");
    const std::string got = py::str(d[key]);
    if (got != want) {
      throw py::value_error(std::string("state_dict['") + key + "']: expected " + want + " (this agent's), got " + got);
    }
  };
  expect("kind", agent_kind_name(agent.kind()));
  expect("n_states", std::to_string(c.n_states));
  expect("n_actions", std::to_string(c.n_actions));
  expect("model", model_name(c.model));
  const bool plus = agent.kind() == AgentKind::kDynaQPlus;
  const bool sweeps = agent.kind() == AgentKind::kPrioritizedSweeping;
  const int64_t n_pairs = c.n_states * c.n_actions;

  DynaSnapshot s;
  s.q = field<double>(d, "q", 'f', {c.n_states, c.n_actions});
  const auto rng = field<uint64_t>(d, "rng", 'i', {4});
  std::copy(rng.begin(), rng.end(), s.rng.begin());
  if (!d.contains("time")) throw py::value_error("state_dict: missing key 'time'");
  s.time = as_int(d["time"], "time");
  s.model_pairs = field<int64_t>(d, "model_pairs", 'i', {-1});
  const auto offsets = field<int64_t>(d, "model_offsets", 'i', {-1});
  const auto next = field<int64_t>(d, "model_next", 'i', {-1});
  const int64_t n_outcomes = static_cast<int64_t>(next.size());
  const auto reward = field<double>(d, "model_reward", 'f', {n_outcomes});
  const auto terminated = field<bool>(d, "model_terminated", 'b', {n_outcomes});
  const auto count = field<int64_t>(d, "model_count", 'i', {n_outcomes});
  check_offsets(offsets, s.model_pairs.size(), next.size(), "model_offsets");
  for (size_t p = 0; p < s.model_pairs.size(); ++p) {
    std::vector<Outcome> list;
    for (int64_t i = offsets[p]; i < offsets[p + 1]; ++i) {
      const size_t j = static_cast<size_t>(i);
      list.push_back(Outcome{next[j], reward[j], terminated[j], count[j]});
    }
    s.model_outcomes.push_back(std::move(list));
  }
  s.last_tried = field<int64_t>(d, "last_tried", 'i', {plus ? n_pairs : 0});
  const auto qkeys = field<int64_t>(d, "queue_pairs", 'i', {-1});
  const auto qprio = field<double>(d, "queue_priorities", 'f', {static_cast<int64_t>(qkeys.size())});
  if (!sweeps && !qkeys.empty()) {
    throw py::value_error("queue_pairs: expected none for " + std::string(agent_kind_name(agent.kind())));
  }
  for (size_t i = 0; i < qkeys.size(); ++i) s.queue.push_back({qkeys[i], qprio[i]});
  const auto poff = field<int64_t>(d, "predecessor_offsets", 'i', {sweeps ? c.n_states + 1 : 0});
  const auto ppairs = field<int64_t>(d, "predecessor_pairs", 'i', {-1});
  if (sweeps) {
    check_offsets(poff, static_cast<size_t>(c.n_states), ppairs.size(), "predecessor_offsets");
    for (size_t st = 0; st < static_cast<size_t>(c.n_states); ++st) {
      s.predecessors.emplace_back(ppairs.begin() + poff[st], ppairs.begin() + poff[st + 1]);
    }
  } else if (!ppairs.empty()) {
    throw py::value_error("predecessor_pairs: expected none for " + std::string(agent_kind_name(agent.kind())));
  }
  return s;
}

py::dict result_to_dict(const BatchResult& r) {
  auto shaped = [](const auto& v, int64_t rows, int64_t cols) {
    using T = typename std::decay_t<decltype(v)>::value_type;
    py::array_t<T> out({rows, cols});
    std::copy(v.begin(), v.end(), out.mutable_data());
    return out;
  };
  py::dict d;
  d["episode_steps"] = shaped(r.episode_steps, r.n_seeds, r.n_episodes);
  d["episode_returns"] = shaped(r.episode_returns, r.n_seeds, r.n_episodes);
  d["cumulative_reward"] = shaped(r.cumulative_reward, r.n_seeds, r.n_steps);
  d["episodes_completed"] = to_array(r.episodes_completed);
  return d;
}

std::shared_ptr<const TransitionTable> table_from_arrays(py::handle n_states, py::handle n_actions,
                                                         const py::array_t<int64_t, py::array::forcecast>& offsets,
                                                         const py::array_t<double, py::array::forcecast>& prob,
                                                         const py::array_t<int64_t, py::array::forcecast>& next,
                                                         const py::array_t<double, py::array::forcecast>& reward,
                                                         const py::array_t<bool, py::array::forcecast>& terminated,
                                                         const py::array_t<double, py::array::forcecast>& initial) {
  const int64_t states = as_int(n_states, "n_states");
  const int64_t actions = as_int(n_actions, "n_actions");
  const py::ssize_t n = prob.size();
  if (next.size() != n || reward.size() != n || terminated.size() != n) {
    throw py::value_error("transitions: expected prob, next, reward and terminated of equal length");
  }
  std::vector<Transition> transitions(static_cast<size_t>(n));
  for (py::ssize_t i = 0; i < n; ++i) {
    transitions[static_cast<size_t>(i)] = {prob.data()[i], next.data()[i], reward.data()[i], terminated.data()[i]};
  }
  return std::make_shared<const TransitionTable>(
      states, actions, std::vector<int64_t>(offsets.data(), offsets.data() + offsets.size()), std::move(transitions),
      std::vector<double>(initial.data(), initial.data() + initial.size()));
}

}  // namespace

void init_dyna(py::module_ m) {
  py::class_<TransitionTable, std::shared_ptr<TransitionTable>>(m, "TransitionTable")
      .def(py::init([](py::handle n_states, py::handle n_actions, py::array_t<int64_t, py::array::forcecast> offsets,
                       py::array_t<double, py::array::forcecast> prob, py::array_t<int64_t, py::array::forcecast> next,
                       py::array_t<double, py::array::forcecast> reward, py::array_t<bool, py::array::forcecast> terminated,
                       py::array_t<double, py::array::forcecast> initial) {
             return std::const_pointer_cast<TransitionTable>(
                 table_from_arrays(n_states, n_actions, offsets, prob, next, reward, terminated, initial));
           }),
           py::arg("n_states"), py::arg("n_actions"), py::arg("offsets"), py::arg("prob"), py::arg("next"),
           py::arg("reward"), py::arg("terminated"), py::arg("initial"))
      .def_property_readonly("n_states", &TransitionTable::n_states)
      .def_property_readonly("n_actions", &TransitionTable::n_actions)
      .def("arrays", [](const TransitionTable& t) {
        std::vector<double> prob, reward;
        std::vector<int64_t> next;
        std::vector<bool> terminated;
        for (const Transition& tr : t.transitions()) {
          prob.push_back(tr.prob);
          next.push_back(tr.next);
          reward.push_back(tr.reward);
          terminated.push_back(tr.terminated);
        }
        py::dict d;
        d["offsets"] = to_array(t.offsets());
        d["prob"] = to_array(prob);
        d["next"] = to_array(next);
        d["reward"] = to_array(reward);
        d["terminated"] = to_array(terminated);
        d["initial"] = to_array(t.initial());
        return d;
      }, "The table as arrays (copies): offsets [S*A+1], prob/next/reward/terminated [T], initial [S].");

  py::class_<TabularMDP, std::shared_ptr<TabularMDP>>(m, "TabularMDP")
      .def(py::init([](std::vector<std::shared_ptr<TransitionTable>> phases, std::vector<int64_t> starts) {
             std::vector<std::shared_ptr<const TransitionTable>> cphases(phases.begin(), phases.end());
             for (const auto& p : cphases) {
               if (!p) throw py::value_error("phases: expected TransitionTable objects, got None");
             }
             return std::make_shared<TabularMDP>(std::move(cphases), std::move(starts));
           }),
           py::arg("phases"), py::arg("starts"))
      .def_property_readonly("n_states", &TabularMDP::n_states)
      .def_property_readonly("n_actions", &TabularMDP::n_actions)
      .def_property_readonly("phases", [](const TabularMDP& mdp) {
        std::vector<std::shared_ptr<TransitionTable>> out;
        for (const auto& p : mdp.phases()) out.push_back(std::const_pointer_cast<TransitionTable>(p));
        return out;
      })
      .def_property_readonly("starts", &TabularMDP::starts);

  m.def("make_maze", [](const std::vector<std::string>& layout) {
    return std::const_pointer_cast<TransitionTable>(make_maze(layout));
  }, py::arg("layout"));
  m.def("dyna_maze_layout", &dyna_maze_layout);
  m.def("blocking_maze_layouts", &blocking_maze_layouts);
  m.def("shortcut_maze_layouts", &shortcut_maze_layouts);
  m.def("env_seed", &env_seed, py::arg("seed"));

  py::class_<TabularEnv>(m, "TabularEnv")
      .def(py::init([](std::shared_ptr<TabularMDP> mdp, uint64_t seed) {
             if (!mdp) throw py::type_error("mdp: expected a TabularMDP, got None");
             return std::make_unique<TabularEnv>(std::move(mdp), seed);
           }),
           py::arg("mdp"), py::arg("seed"))
      .def("reseed", &TabularEnv::reseed, py::arg("seed"))
      .def("reset", &TabularEnv::reset)
      .def("step", [](TabularEnv& env, py::handle action) {
        const TabularEnv::Step s = env.step(as_int(action, "action"));
        return py::make_tuple(s.next, s.reward, s.terminated);
      }, py::arg("action"))
      .def_property_readonly("state", &TabularEnv::state)
      .def_property_readonly("steps", &TabularEnv::steps);

  py::class_<Agent>(m, "Agent")
      .def(py::init([](const std::string& kind, py::handle n_states, py::handle n_actions, double alpha, double gamma,
                       double epsilon, py::handle planning_steps, const std::string& model, double kappa, double theta,
                       uint64_t seed) {
             auto agent = std::make_unique<Agent>();
             agent->core = make_agent(parse_kind(kind), make_config(n_states, n_actions, alpha, gamma, epsilon,
                                                                    planning_steps, model, kappa, theta, seed));
             return agent;
           }),
           py::arg("kind"), py::arg("n_states"), py::arg("n_actions"), py::arg("alpha"), py::arg("gamma"),
           py::arg("epsilon"), py::arg("planning_steps"), py::arg("model"), py::arg("kappa"), py::arg("theta"),
           py::arg("seed"))
      .def("act", [](Agent& a, py::handle state) {
        const int64_t s = as_int(state, "state");
        std::lock_guard<std::mutex> lock(a.mutex);
        a.core->check_state(s);
        return a.core->act(s);
      }, py::arg("state"), "Epsilon-greedy action for `state`, ties broken at random.")
      .def("greedy", [](Agent& a, py::handle state) {
        const int64_t s = as_int(state, "state");
        std::lock_guard<std::mutex> lock(a.mutex);
        a.core->check_state(s);
        return a.core->greedy(s);
      }, py::arg("state"), "Greedy action for `state`, ties broken at random.")
      .def("update", [](Agent& a, py::handle state, py::handle action, py::handle reward_obj, py::handle next_state,
                        bool terminated) {
        const int64_t s = as_int(state, "state");
        const int64_t act = as_int(action, "action");
        const double reward = as_real(reward_obj, "reward");
        const int64_t next = as_int(next_state, "next_state");
        a.core->check_transition(s, act, reward, next);  // config is immutable: no lock needed
        py::gil_scoped_release release;
        std::lock_guard<std::mutex> lock(a.mutex);
        a.core->update(s, act, reward, next, terminated);
      }, py::arg("state"), py::arg("action"), py::arg("reward"), py::arg("next_state"), py::arg("terminated"))
      .def("plan", [](Agent& a, py::handle n) {
        const int64_t steps = as_int(n, "n");
        if (steps < 0) throw py::value_error("n: expected an integer >= 0, got " + std::to_string(steps));
        py::gil_scoped_release release;
        std::lock_guard<std::mutex> lock(a.mutex);
        a.core->plan(steps);
      }, py::arg("n"))
      .def("reset", [](Agent& a) {
        std::lock_guard<std::mutex> lock(a.mutex);
        a.core->reset();
      })
      .def_property_readonly("q", [](py::object self) {
        Agent& a = self.cast<Agent&>();
        const int64_t S = a.core->n_states(), A = a.core->n_actions();
        return py::array_t<double>({S, A}, {A * static_cast<int64_t>(sizeof(double)), static_cast<int64_t>(sizeof(double))},
                                   a.core->q_data(), self);
      })
      .def_property_readonly("n_states", [](const Agent& a) { return a.core->n_states(); })
      .def_property_readonly("n_actions", [](const Agent& a) { return a.core->n_actions(); })
      .def_property_readonly("time", [](Agent& a) {
        std::lock_guard<std::mutex> lock(a.mutex);
        return a.core->time();
      })
      .def_property_readonly("model_size", [](Agent& a) {
        std::lock_guard<std::mutex> lock(a.mutex);
        return static_cast<int64_t>(a.core->model().pairs().size());
      })
      .def("state_dict", [](Agent& a) {
        DynaSnapshot snap;
        {
          std::lock_guard<std::mutex> lock(a.mutex);
          snap = a.core->snapshot();
        }
        return snapshot_to_dict(*a.core, snap);
      })
      .def("load_state_dict", [](Agent& a, const py::dict& d) {
        const DynaSnapshot snap = dict_to_snapshot(*a.core, d);
        std::lock_guard<std::mutex> lock(a.mutex);
        a.core->restore(snap);
      }, py::arg("state_dict"));

  m.def("run_batch", [](const std::string& kind, std::shared_ptr<TabularMDP> mdp, const std::vector<uint64_t>& seeds,
                        py::handle episodes, py::handle steps, py::handle max_episode_steps, py::handle num_threads,
                        double alpha, double gamma, double epsilon, py::handle planning_steps, const std::string& model,
                        double kappa, double theta) {
    if (!mdp) throw py::type_error("mdp: expected a TabularMDP, got None");
    const AgentKind k = parse_kind(kind);
    DynaConfig config = make_config(py::int_(mdp->n_states()), py::int_(mdp->n_actions()), alpha, gamma, epsilon,
                                    planning_steps, model, kappa, theta, 0);
    RunLimits limits{as_int(episodes, "episodes"), as_int(steps, "steps"), as_int(max_episode_steps, "max_episode_steps")};
    const int64_t threads = as_int(num_threads, "num_threads");
    if (threads < 1) throw py::value_error("num_threads: expected an integer >= 1, got " + std::to_string(threads));
    BatchResult result;
    {
      py::gil_scoped_release release;
      result = run_batch(k, config, mdp, seeds, limits, threads);
    }
    return result_to_dict(result);
  }, py::arg("kind"), py::arg("mdp"), py::arg("seeds"), py::arg("episodes"), py::arg("steps"),
     py::arg("max_episode_steps"), py::arg("num_threads"), py::arg("alpha"), py::arg("gamma"), py::arg("epsilon"),
     py::arg("planning_steps"), py::arg("model"), py::arg("kappa"), py::arg("theta"));
}

}  // namespace pymbrl::bindings
