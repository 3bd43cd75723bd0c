"""Two-player search with pymbrl.mcts: TicTacToe with a perfect model (discount -1 per move).

For a range of simulation budgets, MuZero search and Gumbel MuZero search each play a batch of
games against a uniformly random player (half as X, half as O) and a batch against a perfect
minimax player (which picks at random among its optimal moves), with two value estimates at the
leaves: none (0: only the rewards of finished games inform the search) and the mean of 8 random
playouts (classic Monte Carlo tree search). All games of a batch advance together: one batched
search per move. Against the perfect player the best result is a draw. Writes examples/results/tictactoe_search.{json,png}.

    python examples/tictactoe_search.py            # a few minutes on 2 cores
    python examples/tictactoe_search.py --games 100 --budgets 8 32 128
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from pymbrl import mcts
from pymbrl.envs import tictactoe
from pymbrl.models import tictactoe as tictactoe_model

RESULTS = Path(__file__).resolve().parent / "results"


def search_moves(kind: str, values: str, boards: torch.Tensor, simulations: int, seed: int) -> torch.Tensor:
    """The search's move for every board (finished boards get a dummy search and are ignored)."""
    root, invalid = tictactoe_model.search_root(boards)
    fn = (tictactoe_model.recurrent_fn if values == "none"
          else tictactoe_model.playout_recurrent_fn(8, torch.Generator().manual_seed(seed)))
    if kind == "muzero":
        out = mcts.muzero_policy(root, fn, simulations, invalid_actions=invalid, dirichlet_fraction=0.0,
                                 temperature=0.0, seed=seed)
    else:
        out = mcts.gumbel_muzero_policy(root, fn, simulations, invalid_actions=invalid, gumbel_scale=0.0, seed=seed)
    return out.action


def play_games(kind: str, values: str, simulations: int, opponent: str, games: int, seed: int) -> dict[str, int]:
    """Plays ``games`` games (the search is X in the first half, O in the second); returns the
    search's wins, draws and losses."""
    generator = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    boards = tictactoe.new_boards(games)
    search_sign = torch.where(torch.arange(games) < games // 2, 1.0, -1.0)
    for move in range(9):
        live = ~tictactoe.is_over(boards)
        if not bool(live.any()):
            break
        searcher_to_move = tictactoe.to_move(boards) == search_sign
        mine = search_moves(kind, values, boards, simulations, seed + move)
        if opponent == "random":
            theirs = tictactoe.random_actions(boards, generator)
        else:
            theirs = tictactoe.perfect_actions(boards, rng)
        actions = torch.where(searcher_to_move, mine, theirs)
        boards = tictactoe.play(boards, actions)
    outcome = tictactoe.winner(boards).float() * search_sign
    return {"wins": int((outcome > 0).sum()), "draws": int((outcome == 0).sum()), "losses": int((outcome < 0).sum())}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    styles = {("muzero", "none"): "-o", ("muzero", "playouts"): "-s", ("gumbel", "none"): "--o",
              ("gumbel", "playouts"): "--s"}
    for ax, opponent in zip(axes, ("random", "perfect")):
        for (kind, values), style in styles.items():
            rows = [r for r in results["runs"] if (r["kind"], r["values"], r["opponent"]) == (kind, values, opponent)]
            games = [r["wins"] + r["draws"] + r["losses"] for r in rows]
            ax.plot([r["simulations"] for r in rows], [r["losses"] / g for r, g in zip(rows, games)], style,
                    label=f"{kind}, values: {values}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("simulations per move")
        ax.set_title(f"vs a {opponent} player ({results['games']} games)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of games lost")
    axes[0].legend(fontsize=8)
    fig.suptitle("TicTacToe on a perfect model: batched search, games lost vs budget")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", type=int, default=200, help="games per (search, budget, opponent)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128, 256, 512])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "tictactoe_search.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    runs = []
    for kind in ("muzero", "gumbel"):
        for values in ("none", "playouts"):
            for simulations in args.budgets:
                for opponent in ("random", "perfect"):
                    score = play_games(kind, values, simulations, opponent, args.games, args.seed)
                    runs.append({"kind": kind, "values": values, "simulations": simulations, "opponent": opponent,
                                 **score})
                    print(f"{kind:6s} values={values:8s} S={simulations:4d} vs {opponent:7s}: {score}", flush=True)
    results = {"games": args.games, "seconds": round(time.perf_counter() - start, 1), "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    plot(results, args.out)
    print(f"wrote {args.out} and {args.out.with_suffix('.json')} in {results['seconds']} s")


if __name__ == "__main__":
    main()
