"""Sutton & Barto Figures 8.4 and 8.5: Dyna-Q vs Dyna-Q+ when the maze changes.

Blocking maze: the short path closes after 1000 steps (3000 in all). Shortcut maze: a shorter path
opens after 3000 steps (6000 in all). alpha = 1 (the mazes are deterministic), 10 planning steps,
kappa = 1e-3, epsilon 0.1, gamma 0.95, 30 seeds.

    python examples/changing_mazes.py [--out examples/results]
"""

from __future__ import annotations

import argparse
import json
import os

from pymbrl import dyna
from pymbrl.dyna.experiments import plot_curves

SETTINGS = dict(alpha=1.0, planning_steps=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--seeds", type=int, default=30)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    summary = {}
    for name, mdp, steps in (("blocking_maze", dyna.BlockingMaze(1000), 3000),
                             ("shortcut_maze", dyna.ShortcutMaze(3000), 6000)):
        change = mdp.change_steps[0]
        curves = {}
        for label, kind, extra in (("Dyna-Q", "dyna_q", {}), ("Dyna-Q+", "dyna_q_plus", {"kappa": 1e-3})):
            result = dyna.run_batch(kind, mdp, seeds=range(args.seeds), steps=steps, **SETTINGS, **extra)
            curves[label] = result.cumulative_reward.mean(axis=0)
        summary[name] = {label: {"before_change": round(float(c[change - 1]), 1),
                                 "after_change": round(float(c[-1] - c[change - 1]), 1),
                                 "total": round(float(c[-1]), 1)} for label, c in curves.items()}
        print(name, summary[name])
        plot_curves(curves, os.path.join(args.out, f"{name}.png"), vlines=[change],
                    title=f"{mdp.name} (Figure 8.{4 if name.startswith('blocking') else 5}), {args.seeds} seeds",
                    xlabel="time steps", ylabel="cumulative reward")
    with open(os.path.join(args.out, "changing_mazes.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
