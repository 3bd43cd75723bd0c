"""Fuzz targets of the tabular Dyna agents (pymbrl.dyna).

- ``DynaAgentMachine``: act, update (with hostile rewards), plan, state_dict round trips and
  mutated loads on DynaQ, DynaQPlus and PrioritizedSweeping. Without planning, the Q table of
  DynaQ/DynaQPlus is checked after every update against the one-step Q-learning formula in Python;
  an agent restored from ``state_dict()`` must then behave bit for bit as the original.
- ``test_mutated_state_dicts_are_refused_by_name_or_load_as_a_valid_agent``: any one change to a
  valid state dict (an element, a shape, a dtype, an offset, a missing key) is refused with a
  ValueError/TypeError naming a key and leaves the agent unchanged, or loads into an agent that
  then behaves as a valid one. Never a crash.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pymbrl.dyna import DynaQ, DynaQPlus, PrioritizedSweeping

CLASSES = [DynaQ, DynaQPlus, PrioritizedSweeping]
REWARDS = st.one_of(
    st.floats(-10, 10),
    st.sampled_from([0.0, 1e100, -1e100, 1e101, 1e307, -1e308, math.inf, -math.inf, math.nan, 5e-324]),
)


def make_agent(cls, n_states, n_actions, model, planning_steps, seed, gamma=0.9, alpha=0.5):
    kwargs = dict(alpha=alpha, gamma=gamma, epsilon=0.3, planning_steps=planning_steps, model=model, seed=seed)
    return cls(n_states, n_actions, **kwargs)


def copy_state(agent):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in agent.state_dict().items()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
            # Bit for bit: compare the bytes, so -0.0 != 0.0 and NaN payloads count.
            assert a[k].tobytes() == b[k].tobytes(), k
        else:
            assert a[k] == b[k], k


def names_a_key(message, keys):
    return any(k in message for k in keys) or "state_dict" in message


class DynaAgentMachine(RuleBasedStateMachine):
    @initialize(cls=st.sampled_from(CLASSES), n_states=st.integers(1, 6), n_actions=st.integers(1, 4),
                model=st.sampled_from(["deterministic", "stochastic"]), planning=st.integers(0, 3),
                gamma=st.sampled_from([0.0, 0.9, 1.0]), alpha=st.sampled_from([0.5, 1.0]),
                seed=st.integers(0, 2**64 - 1))
    def start(self, cls, n_states, n_actions, model, planning, gamma, alpha, seed):
        if cls is PrioritizedSweeping:
            planning = max(planning, 1)
        self.config = (cls, n_states, n_actions, model, planning, seed, gamma, alpha)
        self.agent = make_agent(*self.config)
        self.n_states, self.n_actions, self.gamma, self.alpha = n_states, n_actions, gamma, alpha
        # Python reference of the direct one-step Q-learning update (valid while no planning runs).
        self.reference = cls is not PrioritizedSweeping and planning == 0
        self.ref_q = np.zeros((n_states, n_actions))

    def fresh(self):
        return make_agent(*self.config)

    def do_update(self, agent, s, a, r, s2, done):
        if not abs(r) <= 1e100:
            before = copy_state(agent)
            with pytest.raises(ValueError, match="reward"):
                agent.update(s, a, r, s2, done)
            assert_same(before, copy_state(agent))
            return False
        agent.update(s, a, r, s2, done)
        return True

    @rule(data=st.data(), reward=REWARDS, done=st.booleans())
    def update(self, data, reward, done):
        s = data.draw(st.integers(0, self.n_states - 1))
        a = data.draw(st.integers(0, self.n_actions - 1))
        s2 = data.draw(st.integers(0, self.n_states - 1))
        if self.do_update(self.agent, s, a, reward, s2, done) and self.reference:
            target = reward + (0.0 if done else self.gamma * self.ref_q[s2].max())
            self.ref_q[s, a] += self.alpha * (target - self.ref_q[s, a])
            np.testing.assert_array_equal(self.agent.q, self.ref_q)

    @rule(data=st.data())
    def act(self, data):
        s = data.draw(st.integers(0, self.n_states - 1))
        assert 0 <= self.agent.act(s) < self.n_actions
        assert 0 <= self.agent.greedy(s) < self.n_actions

    @rule(n=st.integers(0, 20))
    def plan(self, n):
        self.agent.plan(n)
        self.ref_q = self.agent.q.copy()

    @rule(bad=st.sampled_from([-1, 2**70]))
    def bad_arguments_change_nothing(self, bad):
        before = copy_state(self.agent)
        for call in (lambda: self.agent.act(bad), lambda: self.agent.plan(-1),
                     lambda: self.agent.update(0, bad, 0.0, 0, False)):
            with pytest.raises(ValueError):
                call()
        assert_same(before, copy_state(self.agent))

    @rule(data=st.data(), n_ops=st.integers(1, 8))
    def restored_agent_continues_bit_for_bit(self, data, n_ops):
        clone = self.fresh()
        clone.load_state_dict(self.agent.state_dict())
        assert_same(copy_state(self.agent), copy_state(clone))
        for _ in range(n_ops):
            op = data.draw(st.sampled_from(["act", "update", "plan"]))
            if op == "act":
                s = data.draw(st.integers(0, self.n_states - 1))
                assert self.agent.act(s) == clone.act(s)
            elif op == "plan":
                n = data.draw(st.integers(0, 5))
                self.agent.plan(n)
                clone.plan(n)
            else:
                args = (data.draw(st.integers(0, self.n_states - 1)), data.draw(st.integers(0, self.n_actions - 1)),
                        data.draw(st.floats(-5, 5)), data.draw(st.integers(0, self.n_states - 1)),
                        data.draw(st.booleans()))
                self.agent.update(*args)
                clone.update(*args)
        assert_same(copy_state(self.agent), copy_state(clone))
        self.ref_q = self.agent.q.copy()

    @rule(data=st.data())
    def mutated_load(self, data):
        mutated, key = data.draw(mutation(copy_state(self.agent)))
        check_load(self.agent, mutated, key)
        self.ref_q = self.agent.q.copy()

    @precondition(lambda self: hasattr(self, "agent"))
    @invariant()
    def q_is_finite_and_the_state_dict_loads(self):
        assert np.isfinite(self.agent.q).all()
        fresh = self.fresh()
        fresh.load_state_dict(self.agent.state_dict())
        assert_same(copy_state(self.agent), copy_state(fresh))


TestDynaAgentMachine = DynaAgentMachine.TestCase


# ---------------------------------------------------------------------------------------------
# Mutations of a valid state dict.

ARRAY_VALUES = st.one_of(
    st.integers(-3, 300), st.sampled_from([-(2**63), 2**63 - 1, 2**62, -1, 0, 1]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e300, -1e201, 0.5]),
)


@st.composite
def mutation(draw, state):
    """(mutated copy of ``state``, the key changed)."""
    key = draw(st.sampled_from(sorted(state)))
    value = state[key]
    out = dict(state)
    kind = draw(st.sampled_from(["element", "shape", "dtype", "delete", "replace", "offsets"]))
    if kind == "delete":
        del out[key]
        return out, key
    if kind == "replace":
        out[key] = draw(st.sampled_from([None, "x", 1.5, [1, [2]], np.zeros((2, 2)), 10**30, -1]))
        return out, key
    if not isinstance(value, np.ndarray):
        out[key] = draw(st.sampled_from([0, 1, -1, 2**62, 2**53 + 1, "dyna_q", "stochastic", 54, 7, np.int8(3)]))
        return out, key
    arr = value.copy()
    if kind == "offsets" and key.endswith("offsets"):
        if arr.size:
            i = draw(st.integers(0, arr.size - 1))
            arr[i] = draw(st.sampled_from([10**9, -5, arr[-1] + 1, 2**62, 0]))
    elif kind == "element" and arr.size:
        i = draw(st.integers(0, arr.size - 1))
        v = draw(ARRAY_VALUES)
        try:
            with np.errstate(all="ignore"):
                arr.flat[i] = v
        except (OverflowError, ValueError):
            pass
    elif kind == "shape":
        change = draw(st.sampled_from(["grow", "shrink", "2d", "scalar"]))
        if change == "grow":
            arr = np.concatenate([arr.reshape(-1), arr.reshape(-1)[:1] if arr.size else np.zeros(1, arr.dtype)])
        elif change == "shrink":
            arr = arr.reshape(-1)[:-1]
        elif change == "2d":
            arr = arr.reshape(1, -1)
        else:
            arr = arr.reshape(-1)[:1].reshape(()) if arr.size else np.zeros((), arr.dtype)
    elif kind == "dtype":
        dtype = draw(st.sampled_from([np.float32, np.float64, np.int8, np.int64, np.uint64, bool, object, "U3",
                                      np.complex128]))
        with np.errstate(all="ignore"):
            arr = arr.astype(dtype)
    out[key] = arr
    return out, key


def check_load(agent, mutated, key):
    before = copy_state(agent)
    try:
        agent.load_state_dict(mutated)
    except (ValueError, TypeError) as error:
        assert names_a_key(str(error), before), str(error)
        if key not in mutated:
            assert key in str(error), str(error)
        assert_same(before, copy_state(agent))
        return
    # Accepted: the agent must now be a valid one. Its own dict loads into a fresh agent, and it
    # keeps working with a finite Q table.
    assert np.isfinite(agent.q).all()
    after = copy_state(agent)
    agent.load_state_dict(after)
    assert_same(after, copy_state(agent))
    n_states = agent.n_states
    for s in range(min(n_states, 3)):
        a = agent.act(s)
        agent.update(s, a, 1.0, (s + 1) % n_states, s == n_states - 1)
    agent.plan(3)
    assert np.isfinite(agent.q).all()


@given(cls=st.sampled_from(CLASSES), model=st.sampled_from(["deterministic", "stochastic"]),
       seed=st.integers(0, 2**32), steps=st.integers(0, 25), data=st.data())
def test_mutated_state_dicts_are_refused_by_name_or_load_as_a_valid_agent(cls, model, seed, steps, data):
    agent = make_agent(cls, 5, 3, model, 2, seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        s = int(rng.integers(5))
        agent.update(s, agent.act(s), float(rng.choice([0.0, 1.0, -0.5])), int(rng.integers(5)), bool(rng.random() < 0.1))
    mutated, key = data.draw(mutation(copy_state(agent)))
    check_load(agent, mutated, key)
