"""Sutton & Barto Figure 8.2: Dyna-Q with 0, 5 and 50 planning steps on the Dyna maze, 30 seeds.

    python examples/dyna_maze.py [--out examples/results]
"""

from __future__ import annotations

import argparse
import json
import os
import time

from pymbrl import dyna
from pymbrl.dyna.experiments import planning_sweep, plot_curves, steps_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--seeds", type=int, default=30)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    start = time.perf_counter()
    results = planning_sweep("dyna_q", dyna.DynaMaze(), (0, 5, 50), seeds=range(args.seeds), episodes=50,
                             progress=True)
    elapsed = time.perf_counter() - start
    curves = {f"n={n}": r.episode_steps.mean(axis=0) for n, r in results.items()}
    print(steps_table(curves, (1, 2, 3, 4, 5, 10, 20, 25, 30, 50)))
    print(f"whole experiment: {elapsed * 1000:.0f} ms")
    # The book's figure starts at episode 2: the first episode is a random walk for every n.
    plot_curves({k: v[1:] for k, v in curves.items()}, os.path.join(args.out, "dyna_maze.png"), first=2,
                ylim=(0, 800), title=f"Dyna maze (Figure 8.2), Dyna-Q, {args.seeds} seeds",
                xlabel="episode", ylabel="steps per episode")
    with open(os.path.join(args.out, "dyna_maze.json"), "w") as f:
        json.dump({k: [round(float(x), 2) for x in v] for k, v in curves.items()}, f)


if __name__ == "__main__":
    main()
