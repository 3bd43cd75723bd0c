import threading

import numpy as np
import pytest

from pymbrl import dyna
from pymbrl.dyna import DynaQ, DynaQPlus, PrioritizedSweeping

AGENT_CLASSES = [DynaQ, DynaQPlus, PrioritizedSweeping]


def chain_transitions(length):
    """A corridor 0 -> 1 -> ... -> length (goal, reward 1, terminal); action 1 moves right, action 0
    stays put with reward 0."""
    for s in range(length):
        yield s, 1, 0.0 if s + 1 < length else 1.0, s + 1, s + 1 == length
        yield s, 0, 0.0, s, False


def trained(cls, seed=3, **kwargs):
    agent = cls(54, 4, seed=seed, **kwargs)
    dyna.run(agent, dyna.DynaMaze().make_env(seed=seed), 3)
    return agent


def snapshot(agent):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in agent.state_dict().items()}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("cls", AGENT_CLASSES)
def test_same_seed_gives_identical_q_tables(cls):
    a, b = trained(cls, seed=11), trained(cls, seed=11)
    np.testing.assert_array_equal(a.q, b.q)
    assert not np.array_equal(a.q, trained(cls, seed=12).q)


def test_one_step_q_learning_update_by_hand():
    agent = DynaQ(3, 2, alpha=0.5, gamma=0.9, planning_steps=0, seed=0)
    agent.q[1] = [2.0, 4.0]
    agent.update(0, 1, 1.0, 1, False)
    assert agent.q[0, 1] == pytest.approx(0.5 * (1.0 + 0.9 * 4.0))
    agent.update(0, 0, 1.0, 1, True)  # terminal: no bootstrap
    assert agent.q[0, 0] == pytest.approx(0.5)


@pytest.mark.parametrize("cls", [DynaQ, PrioritizedSweeping])
def test_planning_converges_to_the_optimal_q_of_a_chain(cls):
    gamma, length = 0.9, 6
    agent = cls(length + 1, 2, alpha=0.5, gamma=gamma, planning_steps=1, seed=0)
    for s, a, r, s2, done in chain_transitions(length):
        agent.update(s, a, r, s2, done)
    for _ in range(50):
        agent.plan(2000)
        # Prioritized sweeping stops once no error exceeds theta; feed the chain again to requeue.
        for s, a, r, s2, done in chain_transitions(length):
            agent.update(s, a, r, s2, done)
    right = gamma ** (length - 1 - np.arange(length))
    np.testing.assert_allclose(agent.q[:length, 1], right, atol=1e-3)
    np.testing.assert_allclose(agent.q[:length, 0], gamma * right, atol=1e-3)


def test_prioritized_sweeping_propagates_a_goal_back_along_the_chain_in_one_episode():
    length = 8
    agent = PrioritizedSweeping(length + 1, 2, alpha=1.0, gamma=0.9, planning_steps=100, seed=0)
    for s in range(length):
        agent.update(s, 1, 1.0 if s + 1 == length else 0.0, s + 1, s + 1 == length)
    # Sweeping backwards from the goal reaches the start at once; uniform Dyna-Q would need luck.
    np.testing.assert_allclose(agent.q[:length, 1], 0.9 ** (length - 1 - np.arange(length)))


def test_dyna_q_plus_bonus_and_assumed_self_loops():
    kappa = 0.5
    agent = DynaQPlus(2, 3, alpha=1.0, gamma=0.0, planning_steps=0, kappa=kappa, seed=0)
    agent.update(0, 0, 1.0, 1, False)  # real step 1: action 0 tried at time 1
    agent.update(0, 0, 1.0, 1, False)  # real step 2
    assert agent.model_size == 3  # untried actions 1 and 2 of the visited state are modelled
    agent.plan(200)
    # tau = 2 - 2 = 0 for the tried action; untried ones loop back with reward 0 and tau = 2 - 0.
    np.testing.assert_allclose(agent.q[0], [1.0, kappa * np.sqrt(2), kappa * np.sqrt(2)])
    np.testing.assert_array_equal(agent.q[1], 0.0)  # state 1 was never visited: nothing assumed


def test_plain_dyna_q_models_only_tried_pairs():
    agent = DynaQ(2, 3, planning_steps=0, seed=0)
    agent.update(0, 0, 1.0, 1, False)
    assert agent.model_size == 1


def test_stochastic_model_samples_the_empirical_distribution():
    # Pair (0, 0) was seen going to 1 (reward 1) three times and to 2 (reward 0) once; with gamma 0
    # and a small step size, planning drives Q(0, 0) to the empirical mean reward, 0.75.
    agent = DynaQ(3, 1, alpha=0.01, gamma=0.0, planning_steps=0, model="stochastic", seed=0)
    for s2, r in [(1, 1.0), (1, 1.0), (2, 0.0), (1, 1.0)]:
        agent.update(0, 0, r, s2, True)
    agent.plan(20000)
    assert agent.q[0, 0] == pytest.approx(0.75, abs=0.05)
    state = agent.state_dict()
    assert sorted(state["model_count"].tolist()) == [1, 3]
    deterministic = DynaQ(3, 1, alpha=0.01, gamma=0.0, planning_steps=0, seed=0)
    for s2, r in [(1, 1.0), (1, 1.0), (2, 0.0), (1, 1.0)]:
        deterministic.update(0, 0, r, s2, True)
    assert deterministic.state_dict()["model_count"].tolist() == [1]  # only the last outcome


def test_greedy_breaks_ties_at_random_and_act_explores():
    agent = DynaQ(1, 4, epsilon=0.0, seed=0)
    assert {agent.greedy(0) for _ in range(200)} == {0, 1, 2, 3}
    agent.q[0, 2] = 1.0
    assert {agent.act(0) for _ in range(200)} == {2}
    explorer = DynaQ(1, 4, epsilon=1.0, seed=0)
    explorer.q[0, 2] = 1.0
    counts = np.bincount([explorer.act(0) for _ in range(4000)], minlength=4)
    assert counts.min() > 850


def test_q_is_a_zero_copy_view_that_outlives_reset_and_load():
    agent = trained(DynaQ)
    q = agent.q
    assert q.shape == (54, 4) and q.dtype == np.float64 and not q.flags.owndata
    saved = snapshot(agent)
    agent.reset()
    assert np.all(q == 0)
    agent.load_state_dict(saved)
    np.testing.assert_array_equal(q, saved["q"])
    q[0, 0] = 42.0
    assert agent.q[0, 0] == 42.0
    del agent
    assert q[0, 0] == 42.0  # the view keeps the agent alive


@pytest.mark.parametrize("cls", AGENT_CLASSES)
@pytest.mark.parametrize("model", ["deterministic", "stochastic"])
def test_state_dict_round_trip_continues_identically(cls, model):
    original = trained(cls, model=model)
    clone = cls(54, 4, model=model, seed=999)
    clone.load_state_dict(original.state_dict())
    env_a, env_b = dyna.DynaMaze().make_env(seed=5), dyna.DynaMaze().make_env(seed=5)
    ra, rb = dyna.run(original, env_a, 3), dyna.run(clone, env_b, 3)
    np.testing.assert_array_equal(ra.episode_steps, rb.episode_steps)
    assert_same_state(original.state_dict(), clone.state_dict())


@pytest.mark.parametrize("cls", AGENT_CLASSES)
def test_reset_returns_to_the_fresh_agent(cls):
    agent = trained(cls, seed=7)
    agent.reset()
    fresh = cls(54, 4, seed=7)
    assert_same_state(agent.state_dict(), fresh.state_dict())
    assert [agent.act(s) for s in range(54)] == [fresh.act(s) for s in range(54)]


BAD_CONSTRUCTION = [
    (dict(alpha=0.0), ValueError, "alpha"),
    (dict(alpha=1.5), ValueError, "alpha"),
    (dict(gamma=-0.1), ValueError, "gamma"),
    (dict(gamma=1.01), ValueError, "gamma"),
    (dict(epsilon=1.5), ValueError, "epsilon"),
    (dict(epsilon=float("nan")), ValueError, "epsilon"),
    (dict(planning_steps=-1), ValueError, "planning_steps"),
    (dict(planning_steps=2.5), TypeError, "planning_steps"),
    (dict(model="bayesian"), ValueError, "model"),
    (dict(model=3), TypeError, "model"),
    (dict(alpha="0.1"), TypeError, "alpha"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed=1.5), TypeError, "seed"),
]


@pytest.mark.parametrize("cls", AGENT_CLASSES)
@pytest.mark.parametrize("kwargs, error, name", BAD_CONSTRUCTION)
def test_bad_hyper_parameters_are_rejected_by_name(cls, kwargs, error, name):
    with pytest.raises(error, match=name):
        cls(10, 4, **kwargs)


@pytest.mark.parametrize("n_states, n_actions, name", [(0, 4, "n_states"), (10, 0, "n_actions"), (2.0, 4, "n_states")])
def test_bad_sizes_are_rejected(n_states, n_actions, name):
    with pytest.raises((ValueError, TypeError), match=name):
        DynaQ(n_states, n_actions)


def test_prioritized_sweeping_needs_at_least_one_sweep():
    with pytest.raises(ValueError, match="planning_steps"):
        PrioritizedSweeping(10, 4, planning_steps=0)
    with pytest.raises(ValueError, match="kappa"):
        DynaQPlus(10, 4, kappa=-1.0)
    with pytest.raises(ValueError, match="theta"):
        PrioritizedSweeping(10, 4, theta=float("inf"))


BAD_CALLS = [
    ("act", (54,), ValueError, "state"),
    ("act", (-1,), ValueError, "state"),
    ("act", (1.0,), TypeError, "state"),
    ("act", ("3",), TypeError, "state"),
    ("act", (2**70,), ValueError, "state"),
    ("greedy", (None,), TypeError, "state"),
    ("update", (0, 4, 0.0, 1, False), ValueError, "action"),
    ("update", (0, 1, 0.0, 54, False), ValueError, "next_state"),
    ("update", (54, 1, 0.0, 1, False), ValueError, "state"),
    ("update", (0, 1.5, 0.0, 1, False), TypeError, "action"),
    ("update", (0, 1, float("nan"), 1, False), ValueError, "reward"),
    ("update", (0, 1, float("inf"), 1, False), ValueError, "reward"),
    ("update", (0, 1, 1e307, 1, False), ValueError, "reward"),
    ("update", (0, 1, 10**400, 1, False), ValueError, "reward"),
    ("update", (0, 1, "1.0", 1, False), TypeError, "reward"),
    ("update", (0, 1, None, 1, False), TypeError, "reward"),
    ("plan", (-1,), ValueError, "n"),
    ("plan", (2.0,), TypeError, "n"),
]


@pytest.mark.parametrize("cls", AGENT_CLASSES)
@pytest.mark.parametrize("method, args, error, name", BAD_CALLS)
def test_rejected_calls_name_the_argument_and_change_nothing(cls, method, args, error, name):
    agent = trained(cls)
    before = snapshot(agent)
    with pytest.raises(error, match=name):
        getattr(agent, method)(*args)
    assert_same_state(before, agent.state_dict())


def test_numpy_integers_are_accepted_as_states():
    agent = DynaQ(54, 4, seed=0)
    a = agent.act(np.int64(3))
    agent.update(np.int32(3), np.int64(a), np.float32(0.5), np.uint8(4), np.bool_(False))
    assert agent.time == 1


@pytest.mark.parametrize("cls", AGENT_CLASSES)
def test_load_state_dict_rejects_mismatches_and_keeps_the_agent(cls):
    agent = trained(cls)
    before = snapshot(agent)
    good = snapshot(agent)
    other_size = snapshot(trained(cls).__class__(10, 4, seed=0))
    other_kind = snapshot(trained(DynaQ if cls is not DynaQ else DynaQPlus))
    cases = [
        (other_size, ValueError, "n_states"),
        (other_kind, ValueError, "kind"),
        ({k: v for k, v in good.items() if k != "q"}, ValueError, "q"),
        ({**good, "q": good["q"][:10]}, ValueError, "q"),
        ({**good, "q": good["q"].astype(np.int64)}, ValueError, "q"),
        ({**good, "rng": np.zeros(4, np.uint64)}, ValueError, "rng"),
        ({**good, "model_next": np.full_like(good["model_next"], 99)}, ValueError, "model_next"),
        ({**good, "model_pairs": np.zeros_like(good["model_pairs"])}, ValueError, "model_pairs"),
        ({**good, "q": np.full_like(good["q"], np.nan)}, ValueError, "q"),
        ({**good, "model_offsets": good["model_offsets"][::-1].copy()}, ValueError, "model_offsets"),
        ("not a dict", TypeError, "state_dict"),
    ]
    for bad, error, name in cases:
        with pytest.raises(error, match=name):
            agent.load_state_dict(bad)
        assert_same_state(before, agent.state_dict())


def test_concurrent_updates_from_threads_are_serialised():
    agent = DynaQ(54, 4, planning_steps=20, seed=0)
    errors = []

    def worker(seed):
        try:
            dyna.run(agent, dyna.DynaMaze().make_env(seed=seed), 5)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert agent.time == agent.state_dict()["time"] > 0
    assert np.isfinite(agent.q).all() and agent.q.max() > 0


def test_torch_tensors_are_accepted_where_numpy_is():
    torch = pytest.importorskip("torch")
    agent = trained(DynaQ)
    action = agent.act(torch.tensor(3))
    agent.update(torch.tensor(3), torch.tensor(action), 0.0, torch.tensor(4), False)
    with pytest.raises(TypeError, match="state"):
        agent.act(torch.tensor(3.0))
    clone = DynaQ(54, 4, seed=0)
    clone.load_state_dict({k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                           for k, v in agent.state_dict().items()})
    assert_same_state(agent.state_dict(), clone.state_dict())
    q = torch.from_numpy(agent.q)  # zero-copy both ways
    q[0, 0] = 7.0
    assert agent.q[0, 0] == 7.0
    batch = dyna.run_batch("dyna_q", dyna.DynaMaze(), seeds=torch.arange(3), episodes=2)
    assert batch.episode_steps.shape == (3, 2)


# Regression tests of issue 19: restores validate every invariant before touching the agent.

def _offsets_bad_later(offsets):
    """Offsets whose first slice reaches far past the values, then come back down to the end."""
    bad = offsets.copy()
    if len(bad) > 2:
        bad[1] = 10**9
    else:
        bad = np.array([0, 10**9, bad[-1]], np.int64)
    return bad


def _sweeping_agent(model="deterministic"):
    agent = PrioritizedSweeping(54, 4, seed=3, model=model, planning_steps=1)
    dyna.run(agent, dyna.DynaMaze().make_env(seed=3), 2)
    return agent


def _stochastic(cls):
    agent = cls(16, 4, seed=5, model="stochastic", planning_steps=3)
    mdp = dyna.TabularMDP.from_transitions(
        {s: {a: [(0.5, (s + 1) % 16, 0.0, False), (0.5, (s + 2) % 16, 1.0, s == 15)] for a in range(4)}
         for s in range(16)}, np.eye(16)[0])
    dyna.run(agent, mdp.make_env(seed=5), 5, max_steps=40)
    return agent


def _mutations(good, kind):
    """(mutated dict, key named in the error) for invariants the old restore did not check."""
    n_pairs = 54 * 4
    cases = [
        ({**good, "model_offsets": _offsets_bad_later(good["model_offsets"])}, "model_offsets"),
        ({**good, "q": good["q"].T.copy()}, "q"),
        ({**good, "q": np.full_like(good["q"], 1e300)}, "q"),
        ({**good, "time": 2**62}, "time"),
        ({**good, "time": 0}, "model_count"),
        ({**good, "model_reward": np.full_like(good["model_reward"], 1e300)}, "model_reward"),
        ({**good, "model_count": np.full_like(good["model_count"], 7)}, "model_count"),
        ({**good, "model_count": np.full_like(good["model_count"], 2**62)}, "model_count"),
        ({**good, "model_terminated": good["model_terminated"][:-1]}, "model_terminated"),
        ({k: v for k, v in good.items() if k != "time"}, "time"),
    ]
    if kind == "prioritized_sweeping":
        poff, ppairs = good["predecessor_offsets"], good["predecessor_pairs"]
        cases += [
            ({**good, "predecessor_offsets": _offsets_bad_later(poff)}, "predecessor_offsets"),
            ({**good, "predecessor_offsets": np.r_[poff[:-1], len(ppairs) + 5]}, "predecessor_offsets"),
            ({**good, "predecessor_pairs": ppairs[::-1].copy()}, "predecessor_pairs"),
            ({**good, "predecessor_pairs": np.full_like(ppairs, n_pairs + 3)}, "predecessor_pairs"),
            ({**good, "last_tried": np.zeros(n_pairs, np.int64)}, "last_tried"),
            ({**good, "queue_pairs": np.array([good["model_pairs"][0]]), "queue_priorities": np.array([-1.0])},
             "queue_priorities"),
        ]
    else:
        cases += [({**good, "predecessor_offsets": np.array([0, 3]), "predecessor_pairs": np.arange(3)},
                   "predecessor_offsets")]
    if kind == "dyna_q_plus":
        tried = good["last_tried"].copy()
        cases += [
            ({**good, "last_tried": np.where(tried > 0, 0, tried)}, "last_tried"),
            ({**good, "last_tried": np.where(tried > 0, 1, tried)}, "last_tried"),
            ({**good, "last_tried": tried[:-1]}, "last_tried"),
        ]
    return cases


@pytest.mark.parametrize("cls", AGENT_CLASSES)
def test_load_state_dict_checks_every_invariant_before_touching_the_agent(cls):
    agent = _sweeping_agent() if cls is PrioritizedSweeping else trained(cls)
    before = snapshot(agent)
    q_view = agent.q
    for bad, key in _mutations(snapshot(agent), cls.kind):
        with pytest.raises((ValueError, TypeError), match=key):
            agent.load_state_dict(bad)
        assert_same_state(before, agent.state_dict())
    np.testing.assert_array_equal(q_view, before["q"])


@pytest.mark.parametrize("cls", AGENT_CLASSES)
def test_stochastic_model_restore_rejects_repeated_outcomes(cls):
    agent = _stochastic(cls)
    good = snapshot(agent)
    offsets = good["model_offsets"]
    pair = int(np.argmax(np.diff(offsets)))  # a pair with two distinct outcomes
    assert offsets[pair + 1] - offsets[pair] >= 2
    lo = offsets[pair]
    bad = {**good}
    for key in ("model_next", "model_reward", "model_terminated"):
        bad[key] = good[key].copy()
        bad[key][lo + 1] = good[key][lo]
    with pytest.raises(ValueError, match="model_next"):
        agent.load_state_dict(bad)
    assert_same_state(good, agent.state_dict())
    agent.load_state_dict(good)  # the genuine dict still loads
    assert_same_state(good, agent.state_dict())


def test_dyna_q_plus_restore_needs_every_action_of_a_visited_state():
    agent = trained(DynaQPlus)
    good = snapshot(agent)
    assumed = np.flatnonzero(good["model_count"] == 0)
    keep = np.ones(len(good["model_pairs"]), bool)
    keep[assumed[0]] = False  # deterministic: outcome i belongs to pair i
    bad = {**good, "model_pairs": good["model_pairs"][keep], "model_offsets": np.arange(keep.sum() + 1),
           **{k: good[k][keep] for k in ("model_next", "model_reward", "model_terminated", "model_count")}}
    with pytest.raises(ValueError, match="model_pairs"):
        agent.load_state_dict(bad)
    assert_same_state(good, agent.state_dict())


@pytest.mark.parametrize("cls", AGENT_CLASSES)
def test_huge_finite_rewards_are_refused_and_q_never_becomes_non_finite(cls):
    agent = cls(3, 2, gamma=1.0, alpha=1.0, seed=0)
    agent.update(0, 0, 1e100, 1, False)
    for _ in range(50):
        agent.update(1, 1, 1e100, 1, False)
    before = snapshot(agent)
    for reward in (1e307, -1e101, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="reward"):
            agent.update(1, 1, reward, 1, False)
        assert_same_state(before, agent.state_dict())
    agent.plan(1000)
    assert np.isfinite(agent.q).all()
    agent.load_state_dict(agent.state_dict())  # its own dict always loads


def test_kappa_is_bounded_so_the_bonus_stays_finite():
    with pytest.raises(ValueError, match="kappa"):
        DynaQPlus(10, 4, kappa=1e308)


def test_sizes_beyond_the_documented_limit_are_refused_before_allocating():
    with pytest.raises(ValueError, match="n_states \\* n_actions"):
        DynaQ(2**20, 2**20)
    with pytest.raises(ValueError, match="n_states \\* n_actions"):
        PrioritizedSweeping(2**15, 2**14)
