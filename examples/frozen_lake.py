"""The chapter's exercise on gymnasium's FrozenLake-v1.

1. Non-slippery 4x4 and 8x8: Dyna-Q with n = 0, 5, 50 over 500 episodes, 30 seeds, in C++ on the
   env's own transition table (run_batch); success rate per episode.
2. Slippery 8x8, on the real gymnasium env (run): Dyna-Q with a deterministic vs a stochastic model
   (n = 10, gamma 0.99, 3000 episodes, 10 seeds); success probability of the greedy policy within
   the env's 200-step limit, computed exactly from the transition table every 250 episodes.

    python examples/frozen_lake.py [--out examples/results]
"""

from __future__ import annotations

import argparse
import json
import os

import gymnasium as gym
import numpy as np

from pymbrl import dyna
from pymbrl.dyna.experiments import planning_sweep, plot_curves


def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    return np.convolve(x, np.ones(window) / window, mode="valid")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    summary: dict = {}

    for map_name in ("4x4", "8x8"):
        mdp = dyna.TabularMDP.from_gymnasium(gym.make("FrozenLake-v1", map_name=map_name, is_slippery=False))
        results = planning_sweep("dyna_q", mdp, (0, 5, 50), seeds=range(30), episodes=500, progress=True)
        curves = {f"n={n}": r.episode_returns.mean(axis=0) for n, r in results.items()}
        summary[f"nonslippery_{map_name}"] = {
            k: {"success_first_50": round(float(v[:50].mean()), 3), "success_last_100": round(float(v[-100:].mean()), 3)}
            for k, v in curves.items()}
        print(map_name, summary[f"nonslippery_{map_name}"])
        plot_curves({k: moving_average(v, 10) for k, v in curves.items()},
                    os.path.join(args.out, f"frozen_lake_{map_name}.png"), ylim=(0, 1),
                    title=f"FrozenLake-v1 {map_name} non-slippery, Dyna-Q, 30 seeds",
                    xlabel="episode", ylabel="success rate (10-episode average)")

    env = gym.make("FrozenLake-v1", map_name="8x8", is_slippery=True)
    mdp = dyna.TabularMDP.from_gymnasium(env)
    horizon = env.spec.max_episode_steps
    chunk, chunks, seeds = 250, 12, range(10)
    curves = {}
    for model in ("deterministic", "stochastic"):
        success = np.zeros((len(seeds), chunks))
        for i, seed in enumerate(seeds):
            agent = dyna.DynaQ(mdp.n_states, mdp.n_actions, gamma=0.99, planning_steps=10, model=model, seed=seed)
            for c in range(chunks):
                dyna.run(agent, env, chunk, seed=seed if c == 0 else None)
                success[i, c] = mdp.expected_return(agent.q.argmax(axis=1), horizon)
        curves[f"{model} model"] = success.mean(axis=0)
        summary[f"slippery_8x8_{model}"] = {"greedy_success_final": round(float(success[:, -1].mean()), 3),
                                            "per_seed": [round(float(x), 3) for x in success[:, -1]]}
        print("slippery 8x8", model, summary[f"slippery_8x8_{model}"])
    optimal = dyna_optimal_success(mdp, horizon)
    summary["slippery_8x8_optimal"] = round(optimal, 3)
    curves["optimal"] = np.full(chunks, optimal)
    plot_curves({k: np.concatenate([[np.nan], v]) for k, v in curves.items()},
                os.path.join(args.out, "frozen_lake_8x8_slippery.png"), first=0, ylim=(0, 1),
                title="FrozenLake-v1 8x8 slippery, Dyna-Q (n=10), 10 seeds",
                xlabel=f"training episodes (x{chunk})", ylabel="greedy policy success probability")
    with open(os.path.join(args.out, "frozen_lake.json"), "w") as f:
        json.dump(summary, f, indent=1)


def dyna_optimal_success(mdp: dyna.TabularMDP, horizon: int) -> float:
    """Best success probability within the horizon (finite-horizon value iteration)."""
    t = mdp.transition_arrays()
    S, A = mdp.n_states, mdp.n_actions
    pair = np.repeat(np.arange(S * A), np.diff(t["offsets"]))
    value = np.zeros(S)
    for _ in range(horizon):
        backup = t["prob"] * (t["reward"] + np.where(t["terminated"], 0.0, value[t["next"]]))
        value = np.bincount(pair, backup, minlength=S * A).reshape(S, A).max(axis=1)
    return float(t["initial"] @ value)


if __name__ == "__main__":
    main()
