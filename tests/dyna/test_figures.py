"""The book's chapter 8 results, with thresholds a broken agent cannot pass (measured margins are
wide: see examples/results)."""

import gymnasium as gym
import numpy as np

from pymbrl import dyna
from pymbrl.dyna.experiments import planning_sweep

from .test_mdp import shortest_path


def test_figure_8_2_more_planning_learns_in_fewer_episodes():
    results = planning_sweep("dyna_q", dyna.DynaMaze(), (0, 5, 50), seeds=range(30), episodes=50)
    mean = {n: r.episode_steps.mean(axis=0) for n, r in results.items()}  # index 0 is episode 1
    assert mean[50][2] < 25  # n = 50: near the 14-step path (about 17 with epsilon 0.1) by episode 3
    assert mean[5][4] < 45
    assert mean[0][4] > 150 and mean[0][9] > 60  # n = 0 needs ~25 episodes
    assert mean[50][1] < mean[5][1] < mean[0][1]
    for n in (0, 5, 50):
        assert mean[n][-10:].mean() < 20


def test_figures_8_4_and_8_5_dyna_q_plus_adapts_to_the_changed_maze():
    for mdp, steps, margin in ((dyna.BlockingMaze(1000), 3000, 1.5), (dyna.ShortcutMaze(3000), 6000, 1.2)):
        change = mdp.change_steps[0]
        after = {}
        for kind in ("dyna_q", "dyna_q_plus"):
            r = dyna.run_batch(kind, mdp, seeds=range(30), steps=steps, alpha=1.0, planning_steps=10, kappa=1e-3)
            c = r.cumulative_reward
            assert c[:, change - 1].mean() > 5  # both learned the first maze
            after[kind] = c[:, -1] - c[:, change - 1]
            if mdp.name == "ShortcutMaze":
                # Mean episode length over the last 1000 steps, per seed, against the old best path.
                length = 1000 / (c[:, -1] - c[:, -1001])
                if kind == "dyna_q":
                    assert np.all(length > shortest_path(mdp, 0))  # never finds the shortcut
                else:
                    assert np.mean(length < shortest_path(mdp, 0)) >= 0.9  # finds it
        assert after["dyna_q_plus"].mean() > margin * after["dyna_q"].mean()


def test_frozen_lake_non_slippery_planning_speeds_learning():
    mdp = dyna.TabularMDP.from_gymnasium(gym.make("FrozenLake-v1", map_name="8x8", is_slippery=False))
    results = planning_sweep("dyna_q", mdp, (0, 5), seeds=range(30), episodes=500)
    success = {n: r.episode_returns[:, -100:].mean() for n, r in results.items()}
    assert success[5] > 0.35 and success[5] > success[0] + 0.2


def test_slippery_8x8_needs_the_stochastic_model():
    env = gym.make("FrozenLake-v1", map_name="8x8", is_slippery=True)
    mdp = dyna.TabularMDP.from_gymnasium(env)
    success = {}
    for model in ("deterministic", "stochastic"):
        values = []
        for seed in range(8):
            agent = dyna.DynaQ(64, 4, gamma=0.99, planning_steps=10, model=model, seed=seed)
            dyna.run(agent, mdp.make_env(seed=seed), 2000)
            values.append(mdp.expected_return(agent.q.argmax(axis=1), env.spec.max_episode_steps))
        success[model] = np.mean(values)
    # A random policy succeeds with probability ~0.002 here; the optimum within 100 steps is 0.64.
    assert success["stochastic"] > 0.4
    assert success["stochastic"] > success["deterministic"] + 0.1
