import gymnasium as gym
import numpy as np
import pytest

from pymbrl import dyna
from pymbrl.dyna import TabularMDP

TOY_TEXT = [
    ("FrozenLake-v1", dict(map_name="4x4", is_slippery=False)),
    ("FrozenLake-v1", dict(map_name="4x4", is_slippery=True)),
    ("FrozenLake-v1", dict(map_name="8x8", is_slippery=False)),
    ("FrozenLake-v1", dict(map_name="8x8", is_slippery=True)),
    ("CliffWalking-v1", {}),
    ("Taxi-v4", {}),
]


def shortest_path(mdp, phase=0):
    """Fewest steps from the start to a terminating transition (breadth-first search)."""
    t = mdp.transition_arrays(phase)
    frontier = {int(np.argmax(t["initial"]))}
    seen = set(frontier)
    for depth in range(1, mdp.n_states + 1):
        reached = set()
        for s in frontier:
            for p in range(s * mdp.n_actions, (s + 1) * mdp.n_actions):
                for i in range(t["offsets"][p], t["offsets"][p + 1]):
                    if t["prob"][i] > 0 and t["terminated"][i]:
                        return depth
                    if t["prob"][i] > 0 and t["next"][i] not in seen:
                        reached.add(int(t["next"][i]))
        seen |= reached
        frontier = reached
    return np.inf


@pytest.mark.parametrize("env_id, kwargs", TOY_TEXT)
def test_from_gymnasium_copies_the_transition_table(env_id, kwargs):
    env = gym.make(env_id, **kwargs)
    mdp = TabularMDP.from_gymnasium(env)
    base = env.unwrapped
    assert (mdp.n_states, mdp.n_actions) == (env.observation_space.n, env.action_space.n)
    assert mdp.max_episode_steps == env.spec.max_episode_steps
    t = mdp.transition_arrays()
    for s in range(0, mdp.n_states, 7):
        for a in range(mdp.n_actions):
            p = s * mdp.n_actions + a
            got = list(zip(t["prob"][t["offsets"][p]:t["offsets"][p + 1]], t["next"][t["offsets"][p]:t["offsets"][p + 1]],
                           t["reward"][t["offsets"][p]:t["offsets"][p + 1]], t["terminated"][t["offsets"][p]:t["offsets"][p + 1]]))
            want = [(float(pr), int(s2), float(r), bool(d)) for pr, s2, r, d in base.P[s][a]]
            assert got == want
    np.testing.assert_allclose(t["initial"], base.initial_state_distrib)


def test_tabular_env_follows_gymnasium_exactly_when_deterministic():
    real = gym.make("FrozenLake-v1", map_name="8x8", is_slippery=False)
    mdp = TabularMDP.from_gymnasium(real)
    ours = mdp.make_env(seed=0)
    rng = np.random.default_rng(0)
    s_real, _ = real.reset(seed=0)
    s_ours, _ = ours.reset()
    for _ in range(500):
        a = int(rng.integers(4))
        step_real, step_ours = real.step(a), ours.step(a)
        assert step_real[:4] == step_ours[:4]
        if step_real[2] or step_real[3]:
            s_real, _ = real.reset()
            s_ours, _ = ours.reset()
            assert s_real == s_ours


def test_slippery_sampling_matches_the_table_probabilities():
    mdp = TabularMDP.from_gymnasium(gym.make("FrozenLake-v1", map_name="4x4", is_slippery=True))
    env = mdp.make_env(seed=1)
    counts = np.zeros(mdp.n_states)
    for _ in range(30000):
        env.reset()
        counts[env.step(2)[0]] += 1  # "right" from the start: 1/3 each to 0 (slip up), 1 and 4
    np.testing.assert_allclose(counts[[0, 1, 4]] / counts.sum(), [1 / 3] * 3, atol=0.015)


def test_from_gymnasium_rejects_non_tabular_envs():
    with pytest.raises(ValueError, match="env: expected Discrete"):
        TabularMDP.from_gymnasium(gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="env: expected Discrete"):
        TabularMDP.from_gymnasium(gym.make("Pendulum-v1"))


@pytest.mark.parametrize("P, initial, match", [
    ({0: {0: [(0.5, 0, 0.0, False)]}}, [1.0], "summing to 1"),
    ({0: {0: [(1.0, 3, 0.0, False)]}}, [1.0], "next states"),
    ({0: {0: []}}, [1.0], "at least one outcome"),
    ({0: {0: [(1.0, 0, float("nan"), False)]}}, [1.0], "finite rewards"),
    ({0: {0: [(1.0, 0, 0.0, False)]}}, [0.5], "initial"),
    ({0: {0: [(1.0, 0, 0.0, False)]}}, [1.0, 0.0], "initial"),
    ({0: {0: [(1.0, 0, 0.0)]}}, [1.0], "tuples"),
    # These were a bare KeyError (no state 0) or silently converted (2.7 -> state 2, "no" -> True).
    ({5: {0: [(1.0, 5, 0.0, True)]}}, [1.0], r"P: expected an entry for every state in \[0, 1\), missing 0"),
    ({0: {0: [(1.0, 0.7, 0.0, True)]}}, [1.0], r"P\[0\]\[0\]: expected .* types"),
    ({0: {0: [(1.0, True, 0.0, True)]}}, [1.0], r"P\[0\]\[0\]"),
    ({0: {0: [(1.0, 0, 0.0, "no")]}}, [1.0], r"P\[0\]\[0\]"),
    ({0: {0: [("1", 0, 0.0, True)]}}, [1.0], r"P\[0\]\[0\]"),
    ({0: {0: [(1.0, 0, None, True)]}}, [1.0], r"P\[0\]\[0\]"),
])
def test_bad_transition_tables_are_rejected(P, initial, match):
    with pytest.raises(ValueError, match=match):
        TabularMDP.from_transitions(P, initial)


def test_dyna_maze_is_the_books_figure_8_2_maze():
    mdp = dyna.DynaMaze()
    assert (mdp.n_states, mdp.n_actions) == (54, 4)
    assert shortest_path(mdp) == 14
    assert mdp.layouts[0][2][0] == "S" and mdp.layouts[0][0][8] == "G"


def test_blocking_and_shortcut_mazes_change_at_the_given_step():
    blocking, shortcut = dyna.BlockingMaze(1000), dyna.ShortcutMaze(3000)
    assert blocking.change_steps == [1000] and shortcut.change_steps == [3000]
    assert shortest_path(blocking, 1) > shortest_path(blocking, 0)  # the short way is blocked
    assert shortest_path(shortcut, 1) < shortest_path(shortcut, 0)  # a shortcut opens
    # The clock counts steps across episodes: step 999 moves under the old walls, step 1000 not.
    env = dyna.BlockingMaze(3).make_env(seed=0)
    s, _ = env.reset()
    assert s == 5 * 9 + 3
    for _ in range(2):
        env.step(0)  # up to row 4, then into the wall row: blocked at (3, 3) in both phases
    assert env.mdp.then(dyna.DynaMaze(), 10).change_steps == [3, 10]


def test_then_rejects_mismatched_or_unordered_phases():
    with pytest.raises(ValueError, match="same numbers of states"):
        dyna.DynaMaze().then(TabularMDP.from_transitions({0: {0: [(1.0, 0, 0.0, True)]}}, [1.0]), 5)
    with pytest.raises(ValueError, match="at_step"):
        dyna.BlockingMaze(1000).then(dyna.DynaMaze(), 500)


def test_expected_return_is_exact():
    mdp = TabularMDP.from_gymnasium(gym.make("FrozenLake-v1", map_name="4x4", is_slippery=False))
    optimal = np.array([1, 2, 1, 0, 1, 0, 1, 0, 2, 1, 1, 0, 0, 2, 2, 0])  # down/right to the goal
    assert mdp.expected_return(optimal, 100) == pytest.approx(1.0)
    assert mdp.expected_return(optimal, 5) == 0.0  # the goal is 6 steps away
    assert mdp.expected_return(np.zeros(16, int), 100) == 0.0  # always left: never arrives
    with pytest.raises(ValueError, match="policy"):
        mdp.expected_return(np.full(16, 4), 10)


# Regression tests of issue 19: sizes are overflow-checked and bounded before allocation.

def test_transition_table_sizes_that_overflow_are_refused_by_name():
    from pymbrl import _core
    with pytest.raises(ValueError, match="n_states \\* n_actions"):
        _core.dyna.TransitionTable(2**62, 4, np.zeros(1, np.int64), np.zeros(0), np.zeros(0, np.int64), np.zeros(0),
                                   np.zeros(0, bool), np.zeros(0))


def test_dense_tables_are_bounded_and_expected_return_needs_no_dense_matrix():
    n = 40000  # a dense [S, S] matrix would take 12.8 GB
    P = {s: {0: [(1.0, (s + 1) % n, float(s == 1), s == 1)]} for s in range(n)}  # 0 -> 1 -> 2 (goal)
    mdp = TabularMDP.from_transitions(P, np.eye(1, n)[0])
    with pytest.raises(ValueError, match="n_states"):
        mdp.dense()
    assert mdp.expected_return(np.zeros(n, np.int64), 3) == 1.0
    assert mdp.expected_return(np.zeros(n, np.int64), 1) == 0.0
    with pytest.raises(ValueError, match="gamma"):
        mdp.expected_return(np.zeros(n, np.int64), 5, gamma=float("nan"))


def test_then_refuses_a_change_step_beyond_64_bits_by_name():
    with pytest.raises(ValueError, match="at_step"):
        dyna.DynaMaze().then(dyna.DynaMaze(), 2**63)
