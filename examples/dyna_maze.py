"""Sutton & Barto Figure 8.2: Dyna-Q with 0, 5 and 50 planning steps on the Dyna maze, 30 seeds.

    python examples/dyna_maze.py [--out examples/results]
"""

from __future__ import annotations

import argparse
import json
import os

from pymbrl.dyna.experiments import figure_8_2, steps_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--seeds", type=int, default=30)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    curves, seconds = figure_8_2(os.path.join(args.out, "dyna_maze.png"), seeds=args.seeds, progress=True)
    print(steps_table(curves, (1, 2, 3, 4, 5, 10, 20, 25, 30, 50)))
    print(f"whole experiment: {seconds * 1000:.0f} ms")
    with open(os.path.join(args.out, "dyna_maze.json"), "w") as f:
        json.dump({k: [round(float(x), 2) for x in v] for k, v in curves.items()}, f)


if __name__ == "__main__":
    main()
