"""SAC on Pendulum-v1, 3 seeds x 10,000 env steps (the model-free half of the chapter's exercise 3;
MBPO will join this plot). Writes examples/results/sac_pendulum.{png,json}.

    python examples/sac_pendulum.py        # ~5 minutes on 2 cores (one seed at a time)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from pymbrl.agents import sac

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS / "sac_pendulum.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = {}
    for seed in args.seeds:
        _, history = sac.train("Pendulum-v1", args.steps, seed=seed,
                               log=lambda r, s=seed: print(f"seed {s}: {r}", flush=True))
        runs[seed] = history
    results = {"env": "Pendulum-v1", "steps": args.steps, "config": vars(sac.SACConfig()), "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    plot_returns(ax, "SAC", runs, "black")
    finish(fig, ax, "SAC on Pendulum-v1", "env steps", args.out)


def plot_returns(ax, name: str, by_seed: dict, color: str) -> None:
    """Each seed's evaluation returns (faint) and their mean, from training histories by seed."""
    steps = [r["step"] for r in next(iter(by_seed.values()))]
    returns = np.array([[r["return"] for r in history] for history in by_seed.values()])
    for row in returns:
        ax.plot(steps, row, color=color, alpha=0.25)
    ax.plot(steps, returns.mean(0), "-o", color=color, markersize=3, label=f"{name} (mean of {len(by_seed)})")
    print(name, "mean return by step:", dict(zip(steps, returns.mean(0).round(1).tolist())))


def finish(fig, ax, title: str, xlabel: str, out: Path) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel("return (deterministic policy, 5 episodes)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
