"""MBPO against SAC at equal env steps (the chapter's exercise 3), several seeds each. Both start
with the same random steps and use the same SAC settings (MBPO's for the task); MBPO then trains
SAC mostly on short model rollouts.
Writes examples/results/mbpo_<env>.{json,png}; the JSON is rewritten after every run, so an
interrupted experiment keeps what it finished, and --plot-only redraws the PNG from it.

    python examples/mbpo_vs_sac.py --env Pendulum-v1 --steps 10000           # ~80 min on 2 cores
    python examples/mbpo_vs_sac.py --env InvertedPendulum-v5 --steps 15000   # ~40 min per seed
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from pymbrl.agents import mbpo, sac
from pymbrl.training import Callbacks

RESULTS = Path(__file__).resolve().parent / "results"


class Print(Callbacks):
    """Prints each record of a run, after ``label``."""

    def __init__(self, label: str):
        self.label = label

    def on_record(self, stage: str, record: dict) -> None:
        print(f"{self.label}: {record}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from the JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = RESULTS / f"mbpo_{args.env.split('-')[0].lower()}.json"
    if not args.plot_only:
        config = mbpo.MBPOConfig.for_env(args.env, steps=args.steps, eval_every=args.eval_every)
        # SAC with MBPO's SAC settings for the task, and as many random steps first.
        shared = {k: getattr(config, k) for k in ("gamma", "tau", "lr", "batch_size", "hidden", "buffer_size",
                                                  "target_entropy")}
        sac_config = sac.SACConfig(env=args.env, steps=args.steps, eval_every=args.eval_every,
                                   learning_starts=config.init_steps, **shared)
        results = {"env": args.env, "steps": args.steps, "seeds": args.seeds, "runs": {"MBPO": {}, "SAC": {}},
                   "mbpo_config": repr(config)}
        for seed in args.seeds:
            for name, train, settings in (("MBPO", mbpo.train, config), ("SAC", sac.train, sac_config)):
                result = train(dataclasses.replace(settings, seed=seed), callbacks=Print(f"{name} seed {seed}"))
                results["runs"][name][str(seed)] = result.history
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(results, indent=1))
    results = json.loads(out.read_text())
    from pymbrl.training.curves import plot_learning_curves

    runs = {name: by_seed for name, by_seed in results["runs"].items() if by_seed}
    plot_learning_curves(runs, out.with_suffix(".png"), title=f"{results['env']}: MBPO vs SAC at equal env steps",
                         xlabel="real env steps")
    print(summary(runs))


def summary(runs: dict) -> str:
    """A markdown table: mean (min..max over seeds) evaluation return at each evaluated step, and
    each method's wall time per seed."""
    steps = sorted({r["step"] for by_seed in runs.values() for h in by_seed.values() for r in h})
    lines = ["| env steps | " + " | ".join(runs) + " |", "|---:|" + "---:|" * len(runs)]
    for step in steps:
        cells = []
        for by_seed in runs.values():
            returns = [r["return"] for h in by_seed.values() for r in h if r["step"] == step]
            cells.append(f"{np.mean(returns):.0f} ({min(returns):.0f}..{max(returns):.0f}, {len(returns)} seeds)"
                         if returns else "")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    for name, by_seed in runs.items():
        minutes = [h[-1]["seconds"] / 60 for h in by_seed.values()]
        lines.append(f"\n{name}: {np.mean(minutes):.1f} min per seed (one core, {len(minutes)} seeds)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
