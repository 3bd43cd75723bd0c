"""MuZero on CartPole-v1 by self-play on pymbrl's C++ search: greedy-search evaluation (20
episodes) every 5,000 env steps, several seeds, with wall-clock times. Writes
examples/results/muzero_cartpole.{json,png} (with ``--actors N``: self-play on N Ray actors, the
learner here, into muzero_cartpole_actors<N>.{json,png}); the JSON is rewritten after every seed.

    python examples/muzero_cartpole.py                  # 3 seeds x 40,000 env steps, ~5 min per seed on 2 cores
    python examples/muzero_cartpole.py --actors 2       # needs pymbrl[ray]
    python examples/muzero_cartpole.py --plot-only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from pymbrl.agents import muzero
from pymbrl.training import Callbacks
from pymbrl.training.curves import plot_learning_curves, target_summary

OUT = Path(__file__).resolve().parent / "results" / "muzero_cartpole.json"


class Printer(Callbacks):
    def __init__(self, seed: int):
        self.seed = seed

    def on_record(self, stage, record):
        print(f"seed {self.seed}: {record}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--actors", type=int, default=0, help="self-play actors on Ray (default 0: in this process)")
    parser.add_argument("--plot-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = OUT.with_name(f"{OUT.stem}_actors{args.actors}.json") if args.actors else OUT
    if not args.plot_only:
        config = muzero.MuZeroConfig.for_env("CartPole-v1", steps=args.steps, eval_every=5000, eval_episodes=20,
                                             actors=args.actors)
        results = {"env": "CartPole-v1", "steps": args.steps, "config": repr(config), "runs": {}}
        for seed in args.seeds:
            result = muzero.train(dataclasses.replace(config, seed=seed), callbacks=Printer(seed))
            results["runs"][str(seed)] = result.history
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=1))
    results = json.loads(out.read_text())
    where = f", self-play on {args.actors} Ray actors" if args.actors else ""
    plot_learning_curves({"MuZero": results["runs"]}, out.with_suffix(".png"),
                         title=f"MuZero on CartPole-v1 (greedy search, 20 episodes{where})")
    print("\n".join(target_summary(results["runs"], 475)))


if __name__ == "__main__":
    main()
