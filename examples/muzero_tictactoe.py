"""MuZero and its AlphaZero mode on TicTacToe by self-play, then 100 games each against a random and
a perfect (minimax) player, half of them moving first, with the training search budget (25
simulations) and with a larger one (200). AlphaZero mode searches the true rules with the
network's values and priors; MuZero searches its learned model. Writes
examples/results/muzero_tictactoe.{json,png}.

    python examples/muzero_tictactoe.py                 # ~10 min on 2 cores
    python examples/muzero_tictactoe.py --plot-only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from pymbrl.agents import muzero
from pymbrl.agents.muzero_selfplay import Searcher, evaluate_two_player
from pymbrl.training import Callbacks
from pymbrl.training.curves import plot_learning_curves

ENV = "pymbrl/TicTacToe-v0"
OUT = Path(__file__).resolve().parent / "results" / "muzero_tictactoe.json"
MODES = {"AlphaZero mode (true rules)": {"simulator": True, "unroll_steps": 0}, "MuZero (learned model)": {}}


class Printer(Callbacks):
    def __init__(self, name: str):
        self.name = name

    def on_record(self, stage, record):
        print(f"{self.name}: {record}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--games", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.plot_only:
        results = {"env": ENV, "steps": args.steps, "games": args.games, "runs": {}, "matches": {}}
        for name, changes in MODES.items():
            config = muzero.MuZeroConfig.for_env(ENV, **changes, steps=args.steps, seed=args.seed, eval_every=5000,
                                                 eval_episodes=20)
            result = muzero.train(config, callbacks=Printer(name))
            results["runs"][name] = {str(args.seed): result.history}
            results[f"config {name}"] = repr(config)
            for simulations in (config.num_simulations, 200):
                searcher = Searcher(result.agent.network, dataclasses.replace(config, num_simulations=simulations),
                                    two_player=True, seed=args.seed)
                label = f"{name}, {simulations} simulations"
                results["matches"][label] = evaluate_two_player(searcher, args.games, seed=12_345)
                print(label, results["matches"][label], flush=True)
            OUT.parent.mkdir(parents=True, exist_ok=True)
            OUT.write_text(json.dumps(results, indent=1))
    results = json.loads(OUT.read_text())
    plot_learning_curves(results["runs"], OUT.with_suffix(".png"),
                         title="TicTacToe: score against a perfect player (0 = always draws)")
    for name, match in results["matches"].items():
        print(f"{name}: vs random {match['random_wins']}-{match['random_draws']}-{match['random_losses']} (W-D-L), "
              f"vs perfect {match['perfect_wins']}-{match['perfect_draws']}-{match['perfect_losses']} "
              f"over {results['games']} games each")


if __name__ == "__main__":
    main()
