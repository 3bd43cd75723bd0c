import gymnasium as gym
import numpy as np
import pytest

from pymbrl import dyna


@pytest.mark.parametrize("kind", ["dyna_q", "dyna_q_plus", "prioritized_sweeping"])
@pytest.mark.parametrize("model", ["deterministic", "stochastic"])
def test_python_run_on_tabular_env_reproduces_run_batch(kind, model):
    mdp = dyna.TabularMDP.from_gymnasium(gym.make("FrozenLake-v1", map_name="4x4", is_slippery=True))
    batch = dyna.run_batch(kind, mdp, seeds=[4, 9], episodes=40, planning_steps=5, model=model)
    for row, seed in enumerate([4, 9]):
        agent = dyna.agents.AGENTS[kind](16, 4, planning_steps=5, model=model, seed=seed)
        single = dyna.run(agent, mdp.make_env(seed=seed), 40)
        np.testing.assert_array_equal(single.episode_steps, batch.episode_steps[row])
        np.testing.assert_array_equal(single.episode_returns, batch.episode_returns[row])


def test_results_do_not_depend_on_the_number_of_threads():
    mdp = dyna.DynaMaze()
    runs = [dyna.run_batch("dyna_q", mdp, seeds=range(6), episodes=8, num_threads=t) for t in (1, 2, 5)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


def test_step_limit_records_cumulative_reward_and_partial_episodes():
    r = dyna.run_batch("dyna_q", dyna.DynaMaze(), seeds=[0, 1, 2], steps=3000, planning_steps=5)
    assert r.cumulative_reward.shape == (3, 3000)
    assert np.all(np.diff(r.cumulative_reward, axis=1) >= 0)
    # Every reward is a completed episode in the maze, and episode lengths add up to at most 3000.
    np.testing.assert_array_equal(r.cumulative_reward[:, -1], r.episodes_completed)
    for row, n in enumerate(r.episodes_completed):
        assert np.all(r.episode_steps[row, :n] > 0) and np.all(r.episode_steps[row, n:] == -1)
        assert r.episode_steps[row, :n].sum() <= 3000


def test_episode_limit_stops_early_and_pads_cumulative_reward_with_nan():
    r = dyna.run_batch("dyna_q", dyna.DynaMaze(), seeds=[0], episodes=2, steps=100000)
    assert r.episodes_completed.tolist() == [2]
    used = r.episode_steps.sum()
    assert np.isfinite(r.cumulative_reward[0, :used]).all() and np.isnan(r.cumulative_reward[0, used:]).all()


def test_max_episode_steps_truncates():
    r = dyna.run_batch("dyna_q", dyna.DynaMaze(), seeds=range(4), episodes=3, max_episode_steps=10, planning_steps=0)
    assert r.episode_steps.max() <= 10
    mdp = dyna.TabularMDP.from_gymnasium(gym.make("FrozenLake-v1"))
    assert dyna.run_batch("dyna_q", mdp, seeds=[0], episodes=200).episode_steps.max() <= 100


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(seeds=[]), ValueError, "seeds"),
    (dict(seeds=[-1], episodes=1), ValueError, "seeds"),
    (dict(seeds=[0.5], episodes=1), TypeError, "seeds"),
    (dict(seeds=[0]), ValueError, "episodes"),
    (dict(seeds=[0], episodes=0), ValueError, "episodes"),
    (dict(seeds=[0], steps=-5), ValueError, "steps"),
    (dict(seeds=[0], episodes=1, num_threads=0), ValueError, "num_threads"),
    (dict(seeds=[0], episodes=1, alpha=2.0), ValueError, "alpha"),
    (dict(seeds=[0], episodes=1, lr=0.1), TypeError, "lr"),
])
def test_run_batch_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        dyna.run_batch("dyna_q", dyna.DynaMaze(), **kwargs)


def test_run_batch_rejects_unknown_kind_and_endless_episodes():
    with pytest.raises(ValueError, match="kind"):
        dyna.run_batch("sarsa", dyna.DynaMaze(), seeds=[0], episodes=1)
    loop = dyna.TabularMDP.from_transitions({0: {0: [(1.0, 0, 0.0, False)]}}, [1.0])
    with pytest.raises(ValueError, match="max_episode_steps"):
        dyna.run_batch("dyna_q", loop, seeds=[0], episodes=1)
    assert dyna.run_batch("dyna_q", loop, seeds=[0], episodes=2, max_episode_steps=3).episode_steps.tolist() == [[3, 3]]
    # The goal exists but no path reaches it from the start: refused rather than a hung process.
    walled = dyna.TabularMDP.from_transitions(
        {0: {0: [(1.0, 0, 0.0, False)]}, 1: {0: [(1.0, 1, 1.0, True)]}}, [1.0, 0.0])
    with pytest.raises(ValueError, match="max_episode_steps"):
        dyna.run_batch("dyna_q", walled, seeds=[0], episodes=1)
    with pytest.raises(ValueError, match="epsilon is 0"):
        dyna.run_batch("dyna_q", dyna.DynaMaze(), seeds=[0], episodes=1, epsilon=0.0)
    assert dyna.run_batch("dyna_q", dyna.DynaMaze(), seeds=[0], episodes=3, epsilon=0.0,
                          max_episode_steps=500).episodes_completed.tolist() == [3]


def test_run_accepts_agent_classes_and_checks_the_env():
    assert dyna.run_batch(dyna.DynaQPlus, dyna.DynaMaze(), seeds=[0], episodes=1).episodes_completed[0] == 1
    with pytest.raises(ValueError, match="env"):
        dyna.run(dyna.DynaQ(54, 4), gym.make("FrozenLake-v1"), 1)
    with pytest.raises(ValueError, match="env"):
        dyna.run(dyna.DynaQ(54, 4), gym.make("CartPole-v1"), 1)
    with pytest.raises(ValueError, match="episodes"):
        dyna.run(dyna.DynaQ(54, 4), dyna.DynaMaze().make_env(), 0)
    with pytest.raises(TypeError, match="agent"):
        dyna.run(object(), dyna.DynaMaze().make_env(), 1)


# Regression tests of issue 19: result sizes are bounded before anything is allocated.

def test_an_episode_cap_far_beyond_the_step_budget_sizes_results_by_steps():
    r = dyna.run_batch("dyna_q", dyna.DynaMaze(), seeds=[0, 1], episodes=2**62, steps=10)
    assert r.episode_steps.shape == (2, 10) and r.cumulative_reward.shape == (2, 10)


@pytest.mark.parametrize("kwargs", [dict(steps=2**40), dict(episodes=2**40), dict(episodes=1, steps=2**28),
                                    dict(steps=2**63 - 1)])
def test_result_arrays_beyond_the_documented_limit_are_refused(kwargs):
    with pytest.raises(ValueError, match="2\\*\\*28 result values"):
        dyna.run_batch("dyna_q", dyna.DynaMaze(), seeds=[0, 1], **kwargs)


def test_a_huge_range_of_seeds_is_refused_before_it_is_listed():
    """range(10**13) used to be turned into a list first: a MemoryError, not this ValueError."""
    with pytest.raises(ValueError, match="seeds: expected at most 2\\*\\*28 seeds"):
        dyna.run_batch("dyna_q", dyna.DynaMaze(), seeds=range(10**13), episodes=1)


def test_run_batch_refuses_counts_beyond_64_bits_by_name():
    with pytest.raises(ValueError, match="steps"):
        dyna.run_batch("dyna_q", dyna.DynaMaze(), seeds=[0], steps=2**64)
    with pytest.raises(ValueError, match="num_threads"):
        dyna.run_batch("dyna_q", dyna.DynaMaze(), seeds=[0], episodes=1, num_threads=2**64)


def test_run_batch_refuses_rewards_the_agents_cannot_take():
    mdp = dyna.TabularMDP.from_transitions({0: {0: [(1.0, 0, 1e200, True)]}}, [1.0])
    with pytest.raises(ValueError, match="mdp: expected rewards"):
        dyna.run_batch("dyna_q", mdp, seeds=[0], episodes=1)


def test_core_objects_refuse_a_missing_mdp():
    from pymbrl import _core
    with pytest.raises(TypeError, match="mdp"):
        _core.dyna.TabularEnv(None, 0)


class _Stop(Exception):
    pass


def test_run_does_not_allocate_by_the_requested_episode_count():
    env = dyna.DynaMaze().make_env(seed=0)
    resets = []
    original = env.reset

    def reset(**kwargs):
        if len(resets) == 2:
            raise _Stop
        resets.append(1)
        return original(**kwargs)

    env.reset = reset
    agent = dyna.DynaQ(54, 4, seed=0)
    with pytest.raises(_Stop):  # not MemoryError: results grow with the episodes actually run
        dyna.run(agent, env, 10**15, max_steps=5)
