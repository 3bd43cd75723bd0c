"""Sampled MuZero on Pendulum-v1 (continuous actions) by self-play on pymbrl's C++ search: greedy
search evaluated every 3,200 env steps, with wall-clock times. Writes
examples/results/sampled_muzero_pendulum.{csv,json,png} (the CSV holds every seed's records; the
files are rewritten after every seed).

    python examples/sampled_muzero_pendulum.py                # seed 0 x 60,000 env steps (the preset), ~35 min
    python examples/sampled_muzero_pendulum.py --seeds 0 1 2
    python examples/sampled_muzero_pendulum.py --plot-only
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
from pathlib import Path

import torch

from pymbrl.agents import sampled_muzero
from pymbrl.training import Callbacks
from pymbrl.training.curves import plot_learning_curves, target_summary

OUT = Path(__file__).resolve().parent / "results" / "sampled_muzero_pendulum.json"


class Printer(Callbacks):
    def __init__(self, seed: int):
        self.seed = seed

    def on_record(self, stage, record):
        print(f"seed {self.seed}: {record}", flush=True)


def write_csv(results: dict, path: Path) -> None:
    rows = [{"seed": seed, **record} for seed, history in results["runs"].items() for record in history]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="env steps per seed (default: the preset's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--plot-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.plot_only:
        config = sampled_muzero.SampledMuZeroConfig.for_env("Pendulum-v1")
        if args.steps is not None:
            config = dataclasses.replace(config, steps=args.steps)
        results = {"env": "Pendulum-v1", "steps": config.steps, "config": repr(config), "runs": {}}
        for seed in args.seeds:
            result = sampled_muzero.train(dataclasses.replace(config, seed=seed), callbacks=Printer(seed))
            results["runs"][str(seed)] = result.history
            OUT.parent.mkdir(parents=True, exist_ok=True)
            OUT.write_text(json.dumps(results, indent=1))
            write_csv(results, OUT.with_suffix(".csv"))
    results = json.loads(OUT.read_text())
    plot_learning_curves({"Sampled MuZero": results["runs"]}, OUT.with_suffix(".png"),
                         title="Sampled MuZero on Pendulum-v1 (greedy search)")
    print("\n".join(target_summary(results["runs"], -200)))


if __name__ == "__main__":
    main()
