"""Regenerate tests/data/dyna_golden.json. Run only when a change of behaviour is intended, and say
so in the commit: the golden test exists to make unintended changes fail loudly.

    python tests/data/make_golden.py
"""

import json
import os

import gymnasium as gym

from pymbrl import dyna

CASES = [
    ("dyna_q", "deterministic", "DynaMaze"),
    ("dyna_q_plus", "deterministic", "BlockingMaze"),
    ("prioritized_sweeping", "deterministic", "DynaMaze"),
    ("dyna_q", "stochastic", "FrozenLake8x8"),
    ("prioritized_sweeping", "stochastic", "FrozenLake8x8"),
]


def make_mdp(name):
    if name == "FrozenLake8x8":
        return dyna.TabularMDP.from_gymnasium(gym.make("FrozenLake-v1", map_name="8x8", is_slippery=True))
    return {"DynaMaze": dyna.DynaMaze, "BlockingMaze": dyna.BlockingMaze}[name]()


def run_case(kind, model, mdp_name):
    mdp = make_mdp(mdp_name)
    agent = dyna.agents.AGENTS[kind](mdp.n_states, mdp.n_actions, planning_steps=10, model=model, seed=2024)
    result = dyna.run(agent, mdp.make_env(seed=2024), 30)
    return {"kind": kind, "model": model, "mdp": mdp_name, "episode_steps": result.episode_steps.tolist(),
            "q": [round(float(x), 12) for x in agent.q.ravel()]}


if __name__ == "__main__":
    path = os.path.join(os.path.dirname(__file__), "dyna_golden.json")
    with open(path, "w") as f:
        json.dump([run_case(*case) for case in CASES], f)
    print(f"wrote {path}")
