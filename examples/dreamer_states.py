"""Dreamer from states on this CPU: CartPole-v1 (REINFORCE actor, 50,000 env steps) and
Pendulum-v1 (actor trained by backpropagation through the imagined dynamics, 20,000 env steps),
with evaluation of the actor's mode every 2,500 steps and wall-clock times. Writes
examples/results/dreamer_<env>.{json,png}; the JSON is rewritten at every evaluation.

    python examples/dreamer_states.py --env CartPole-v1 --steps 50000
    python examples/dreamer_states.py --env Pendulum-v1 --steps 20000
    python examples/dreamer_states.py --env CartPole-v1 --plot-only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from pymbrl.agents import dreamer
from pymbrl.training import Callbacks
from pymbrl.training.curves import plot_learning_curves, target_summary

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"CartPole-v1": 450.0, "Pendulum-v1": -300.0}


class Record(Callbacks):
    """Prints each record of the run of ``seed`` and rewrites ``out`` (the JSON of ``results``) with it."""

    def __init__(self, results: dict, seed: str, out: Path):
        self.results, self.seed, self.out = results, seed, out
        self.history: list[dict] = []

    def on_record(self, stage: str, record: dict) -> None:
        print(f"seed {self.seed}: {record}", flush=True)
        self.history.append(record)
        self.results["runs"][self.seed] = self.history
        self.out.write_text(json.dumps(self.results, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="CartPole-v1", choices=sorted(TARGETS))
    parser.add_argument("--steps", type=int, default=None, help="default 50000 (CartPole), 20000 (Pendulum)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--eval-every", type=int, default=2500)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--plot-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = args.steps or (50_000 if args.env == "CartPole-v1" else 20_000)
    out = RESULTS / f"dreamer_{args.env.split('-')[0].lower()}.json"
    if not args.plot_only:
        config = dreamer.DreamerConfig.for_env(args.env, steps=steps, eval_every=args.eval_every,
                                               eval_episodes=args.eval_episodes)
        results = json.loads(out.read_text()) if out.exists() else {}
        results.update({"env": args.env, "steps": steps, "config": repr(config)})
        results.setdefault("runs", {})
        out.parent.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            dreamer.train(dataclasses.replace(config, seed=seed), callbacks=Record(results, str(seed), out))
    results = json.loads(out.read_text())
    plot_learning_curves({"Dreamer": results["runs"]}, out.with_suffix(".png"),
                         title=f"Dreamer on {args.env} from states (actor's mode, {args.eval_episodes} episodes)")
    print("\n".join(target_summary(results["runs"], TARGETS[args.env])))


if __name__ == "__main__":
    main()
