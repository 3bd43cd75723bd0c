"""MBPO against SAC on Pendulum-v1 at equal env steps, 3 seeds each (the chapter's exercise 3).
Both start with the same 1,000 random steps; MBPO then trains SAC mostly on model rollouts.
Writes examples/results/mbpo_pendulum.{png,json}.

    python examples/mbpo_pendulum.py       # ~25 minutes on 2 cores (MBPO's model retraining and
                                           # its 10 SAC updates per step dominate)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from pymbrl.agents import mbpo, sac
from sac_pendulum import finish, plot_returns  # this folder is on the path when run as a script

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--out", type=Path, default=RESULTS / "mbpo_pendulum.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs: dict[str, dict[int, list]] = {"MBPO": {}, "SAC": {}}
    for seed in args.seeds:
        for name, train in (("MBPO", mbpo.train), ("SAC", sac.train)):
            _, history = train("Pendulum-v1", args.steps, seed=seed, eval_every=args.eval_every,
                               log=lambda r, n=name, s=seed: print(f"{n} seed {s}: {r}", flush=True))
            runs[name][seed] = history
    results = {"env": "Pendulum-v1", "steps": args.steps, "seeds": args.seeds, "runs": runs,
               "mbpo_config": repr(mbpo.MBPOConfig()), "sac_config": repr(sac.SACConfig())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for (name, by_seed), color in zip(runs.items(), ("tab:blue", "tab:orange")):
        plot_returns(ax, name, by_seed, color)
    finish(fig, ax, "Pendulum-v1: MBPO vs SAC at equal env steps", "real env steps", args.out)


if __name__ == "__main__":
    main()
