"""Compounding model error on CartPole (the chapter's exercise 2).

Random-policy CartPole-v1 episodes train a 7-member Gaussian ensemble and a deterministic residual
model; on other episodes, each model is rolled open loop from every state with the recorded
actions, and its k-step error is measured for k = 1..20, together with the correlation between
the ensemble's disagreement and its actual error. Writes examples/results/compounding_error.{png,json}.

    python examples/compounding_error.py          # ~1-2 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from pymbrl.models import DynamicsModel, GaussianEnsemble, ModelTrainer, rollout_error

RESULTS = Path(__file__).resolve().parent / "results"


def episodes(count: int, seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Random-policy episodes: observations [T + 1, 4] and one-hot actions [T, 2] per episode."""
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(seed)
    observations, actions = [], []
    for e in range(count):
        obs, _ = env.reset(seed=seed + e)
        xs, acts = [obs], []
        done = False
        while not done:
            a = int(rng.integers(2))
            obs, _, terminated, truncated, _ = env.step(a)
            xs.append(obs)
            acts.append(np.eye(2, dtype=np.float32)[a])
            done = terminated or truncated
        observations.append(torch.tensor(np.array(xs), dtype=torch.float32))
        actions.append(torch.tensor(np.array(acts)))
    return observations, actions


def transitions(observations, actions):
    obs = torch.cat([o[:-1] for o in observations])
    nxt = torch.cat([o[1:] for o in observations])
    act = torch.cat(actions)
    return obs, act, nxt, torch.ones(obs.shape[0])  # CartPole pays 1 per step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-episodes", type=int, default=300)
    parser.add_argument("--test-episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "compounding_error.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    train_obs, train_act = episodes(args.train_episodes, args.seed)
    test_obs, test_act = episodes(args.test_episodes, args.seed + 10_000)
    data = transitions(train_obs, train_act)
    horizons = list(range(1, 21))
    results = {"train_transitions": int(data[0].shape[0]), "test_episodes": args.test_episodes,
               "horizons": horizons}
    for name, model in (("ensemble", GaussianEnsemble(4, 2, hidden=200, layers=4)),
                        ("deterministic", DynamicsModel(4, 2, hidden=200, layers=4))):
        fit = ModelTrainer(model, seed=args.seed).train(*data)
        error = rollout_error(model, test_obs, test_act, horizons)
        results[name] = {"epochs": fit.epochs, "holdout_mse": fit.holdout_mse.tolist(),
                         "mse": error.mse.tolist(), "disagreement": error.disagreement.tolist(),
                         "correlation": error.correlation.tolist(), "starts": error.starts.tolist()}
        print(f"{name}: {fit.epochs} epochs; k-step MSE " +
              ", ".join(f"k={k}: {error.mse[k - 1]:.2e}" for k in (1, 5, 10, 20)), flush=True)
    results["seconds"] = round(time.perf_counter() - start, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    plot(results, args.out)
    print(f"wrote {args.out} and {args.out.with_suffix('.json')} in {results['seconds']} s")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = results["horizons"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, style in (("ensemble", "-o"), ("deterministic", "--s")):
        left.plot(k, results[name]["mse"], style, markersize=3, label=f"{name} model")
    left.set_yscale("log")
    left.set_xlabel("prediction horizon k (steps, open loop)")
    left.set_ylabel("mean squared error of the state")
    left.set_title("compounding error")
    left.legend()
    left.grid(alpha=0.3)
    right.plot(k, results["ensemble"]["correlation"], "-o", markersize=3)
    right.set_ylim(-0.1, 1.0)
    right.set_xlabel("prediction horizon k")
    right.set_ylabel("Pearson r (disagreement, error)")
    right.set_title("ensemble disagreement vs actual error")
    right.grid(alpha=0.3)
    fig.suptitle(f"CartPole-v1, random policy: {results['train_transitions']} training transitions, "
                 f"{results['test_episodes']} test episodes")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
