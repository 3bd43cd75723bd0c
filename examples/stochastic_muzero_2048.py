"""Stochastic MuZero against MuZero on 2048 (3x3 board), as in Antonoglou et al., "Planning in
Stochastic Environments with a Learned Model" (ICLR 2022), at a CPU's scale: the same network
sizes, simulations, env steps and seeds; only the model and the search differ (MuZero's
deterministic dynamics and pUCT, or afterstates, learned chance codes and chance nodes).

Each run logs greedy-search evaluations (mean score of ``--eval-episodes`` games) to
runs/stochastic_muzero_2048<schedule>/<agent>-seed<k>/log.csv. Each self-play temperature schedule
(``--schedule``) has its record, examples/results/stochastic_muzero_2048<schedule>.csv, of every
seed's evaluations wherever they ran: a run adds its seeds to it (or replaces them), then the plot
(.png) and the comparison cover every seed recorded (the measurements: stochastic_muzero_2048.md).

    python examples/stochastic_muzero_2048.py --jobs 2              # seeds 0-5 x 2 agents, 120k env steps
    python examples/stochastic_muzero_2048.py --seeds 6 7 --jobs 2  # two more seeds, added to the record
    python examples/stochastic_muzero_2048.py --plot-only           # the plot and the comparison again
    python examples/stochastic_muzero_2048.py --plot-only --compare 6 7   # of some seeds only
    python examples/stochastic_muzero_2048.py --schedule early --seeds 20 21 --jobs 2
    python examples/stochastic_muzero_2048.py --untrained --seeds 0 1 2 3   # the baselines below
    python examples/stochastic_muzero_2048.py --budgets 10 25 100 400 --jobs 2   # trained nets, more search
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import math
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np

ENV = "pymbrl/2048-3x3-v0"
ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "stochastic_muzero_2048"
RUNS = ROOT.parent / "runs" / "stochastic_muzero_2048"
SCHEDULES = {"paper": None, "early": ((0.0, 1.0), (0.25, 0.5), (0.5, 0.25))}
"""Self-play's visit-count temperature by the fraction of the run's env steps done. "paper":
MuZeroConfig's, the paper's 1.0, then 0.5 from half the run and 0.25 from three quarters; "early":
the same temperatures from a quarter and from half the run. Both agents alike."""

AGENTS = {"Stochastic MuZero": "stochastic", "MuZero": "muzero"}
SETTINGS = {"num_envs": 16, "warmup_steps": 500, "checkpoint_every": 10**9}
"""Beside the 2048 preset (25 simulations, support 30, discount 0.99): the same for both agents."""


def paths(schedule: str) -> tuple[Path, Path]:
    """The record (without its .csv/.png suffix) and the runs' folder of a schedule."""
    suffix = "" if schedule == "paper" else f"_{schedule}"
    return OUT.with_name(OUT.name + suffix), RUNS.with_name(RUNS.name + suffix)


def run(search: str, seed: int, steps: int, eval_every: int, eval_episodes: int, schedule: str) -> float:
    """Trains one agent with one seed into its run directory; returns the wall seconds."""
    import torch

    from pymbrl.agents import muzero

    torch.set_num_threads(1)
    temperatures = SCHEDULES[schedule]
    config = muzero.MuZeroConfig.for_env(ENV, search=search, seed=seed, steps=steps, eval_every=eval_every,
                                         eval_episodes=eval_episodes, **SETTINGS,
                                         **({"temperatures": temperatures} if temperatures else {}))
    start = time.perf_counter()
    history = muzero.train(config, paths(schedule)[1] / f"{search}-seed{seed}").history
    print(f"{search} seed {seed}: " + ", ".join(f"{r['step']}: {r['return']:.0f}" for r in history), flush=True)
    return time.perf_counter() - start


def untrained(search: str, seed: int, episodes: int) -> tuple[float, float]:
    """Greedy search with the agent's network as initialised for ``seed``, before any update: its
    mean score over ``episodes`` games (those of the first evaluation) and the share of its most
    frequent move."""
    import gymnasium as gym
    import torch

    from pymbrl.agents import muzero
    from pymbrl.agents.muzero_selfplay import Searcher, evaluate, network_of

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    config = muzero.MuZeroConfig.for_env(ENV, search=search, seed=seed, **SETTINGS)
    env = gym.make(ENV)
    searcher = Searcher(network_of(config, env.observation_space.shape, env.action_space.n), config, False, seed)
    moves = np.zeros(env.action_space.n, np.int64)

    def counted(*args: object, **kwargs: object) -> object:
        out = searcher(*args, **kwargs)
        moves[:] += np.bincount(out.action.cpu().numpy(), minlength=len(moves))
        return out

    score = evaluate(counted, ENV, episodes, 10_000)
    return score, moves.max() / moves.sum()


def first_game(seed: int) -> int:
    """The env seed of the first of the games that score the final networks of the runs of ``seed``
    (``--budgets``): each seed its own games, so that the standard error over the seeds holds the
    variation between sets of games too, and none of them a game that a training evaluation played
    (those reset with 10,000 + step + i)."""
    return 1_000_000 + 1_000 * seed


def with_budgets(run_dir: Path, budgets: list[int], games: int, first: int) -> list[float]:
    """The mean score of greedy search with the final network of ``run_dir`` at each number of
    simulations in ``budgets``, on ``games`` games (reset with seeds ``first`` on), the same games
    for every budget."""
    import dataclasses

    import torch

    import pymbrl.envs  # noqa: F401  (registers the 2048 env)
    from pymbrl.agents import muzero
    from pymbrl.agents.muzero_selfplay import evaluate

    torch.set_num_threads(1)
    searcher = muzero.load(run_dir)
    trained = searcher.config
    scores = []
    for budget in budgets:
        searcher.config = dataclasses.replace(trained, num_simulations=budget)
        scores.append(evaluate(searcher, ENV, games, first))
    return scores


def checkpoint_digest(run_dir: Path) -> str:
    """Which network a score is of: the first 16 hex digits of the SHA-256 of the run's last checkpoint."""
    return hashlib.sha256((run_dir / "checkpoint" / "state.pt").read_bytes()).hexdigest()[:16]


class Score(NamedTuple):
    """A row of ``<record>_budgets.csv``: one network's mean score with a number of simulations."""

    schedule: str
    agent: str
    seed: int
    simulations: int
    games: int
    first_game: int
    checkpoint: str
    score: float

    @property
    def measured(self) -> tuple[str, int, int, int]:
        """What determines the score: the network, the simulations and the games."""
        return self.checkpoint, self.simulations, self.games, self.first_game


def budgets(values: list[int], games: int, steps: int, jobs: int) -> None:
    """Scores the final network of every run of both schedules that reached ``steps`` env steps
    with ``values`` simulations per move, into ``<record>_budgets.csv``, and prints the paired
    comparison at each budget and of what each agent gains from the first budget to the last. Both
    agents' networks of a seed play the same games, :func:`first_game` on. The record keeps every
    score it has held; one it holds for the same checkpoint, simulations and games is not measured
    again (a score is a deterministic function of those), so that adding seeds scores only theirs."""
    from pymbrl.training.curves import read_log

    record = OUT.with_name(OUT.name + "_budgets.csv")
    known: dict[tuple[str, int, int, int], Score] = {}
    if record.is_file():
        with open(record, newline="") as f:
            for r in csv.DictReader(f):
                row = Score(r["schedule"], r["agent"], int(r["seed"]), int(r["simulations"]), int(r["games"]),
                            int(r["first_game"]), r["checkpoint"], float(r["score"]))
                known[row.measured] = row
    runs: list[tuple[Path, list[Score]]] = []  # each finished run's scores to have, one per value
    for schedule in SCHEDULES:
        for path in sorted(paths(schedule)[1].glob("*-seed*")):
            if (path / "log.csv").is_file() and read_log(path / "log.csv")[-1]["step"] >= steps:
                agent, seed = path.name.split("-seed")
                digest = checkpoint_digest(path)
                runs.append((path, [Score(schedule, agent, int(seed), v, games, first_game(int(seed)), digest, math.nan)
                                    for v in values]))
    missing = [(path, run) for path, run in runs if any(r.measured not in known for r in run)]
    print(f"{len(runs)} finished runs: scoring {len(missing)}, the others' scores are in {record.name}")
    with ProcessPoolExecutor(jobs) as pool:
        scored = pool.map(with_budgets, [path for path, _ in missing], [values] * len(missing),
                          [games] * len(missing), [run[0].first_game for _, run in missing])
        for (_, run), scores in zip(missing, scored):
            known.update({r.measured: r._replace(score=score) for r, score in zip(run, scores)})
    with open(record, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(Score._fields)
        writer.writerows(sorted(known.values()))
    table = {(r.schedule, r.agent, r.seed, r.simulations): known[r.measured].score for _, run in runs for r in run}
    pairs = sorted({(schedule, seed) for schedule, _, seed, _ in table
                    if all((schedule, s, seed, values[0]) in table for s in AGENTS.values())})
    print(f"{len(pairs)} seeds with both agents' final networks, {games} games each (each seed its own games)")
    for budget in values:
        diffs = np.array([table[schedule, "stochastic", seed, budget] - table[schedule, "muzero", seed, budget]
                          for schedule, seed in pairs])
        means = [np.mean([table[schedule, search, seed, budget] for schedule, seed in pairs])
                 for search in AGENTS.values()]
        print(f"{budget} simulations: Stochastic MuZero {means[0]:.1f}, MuZero {means[1]:.1f}, difference "
              f"{paired(diffs)}")
    if len(values) > 1:  # what more search adds, first budget to last: the paper's argument is about planning
        first, last = values[0], values[-1]
        gains = {search: np.array([table[schedule, search, seed, last] - table[schedule, search, seed, first]
                                   for schedule, seed in pairs]) for search in AGENTS.values()}
        for name, search in AGENTS.items():
            print(f"{name}'s gain from {first} to {last} simulations: {paired(gains[search])}")
        print(f"Stochastic MuZero's gain minus MuZero's: {paired(gains['stochastic'] - gains['muzero'])}")


def random_play(episodes: int) -> float:
    """Mean score of uniformly random legal moves over ``episodes`` games (the same game seeds)."""
    import gymnasium as gym

    rng, scores = np.random.default_rng(0), []
    for i in range(episodes):
        env = gym.make(ENV)
        _, info = env.reset(seed=10_000 + i)
        score, over = 0.0, False
        while not over:
            _, reward, terminated, truncated, info = env.step(int(rng.choice(np.flatnonzero(info["legal_actions"]))))
            score, over = score + reward, terminated or truncated
        scores.append(score)
    return float(np.mean(scores))


def recorded(path: Path) -> dict[str, dict[int, list[dict]]]:
    """The evaluations of every agent and seed in the results CSV ``path`` (empty if it is missing)."""
    curves: dict[str, dict[int, list[dict]]] = {name: {} for name in AGENTS}
    if path.is_file():
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                curves[row["agent"]].setdefault(int(row["seed"]), []).append(
                    {"step": int(row["step"]), **{k: float(row[k]) for k in ("return", "episode_return", "seconds")}})
    return curves


def collect(out: Path, runs: Path) -> dict[str, dict[int, list[dict]]]:
    """Every agent's evaluations by seed: the results CSV ``out`` (runs made elsewhere or earlier),
    with each seed that has a run directory in ``runs`` read from its log instead."""
    from pymbrl.training.curves import read_log

    curves = recorded(out.with_suffix(".csv"))
    for name, search in AGENTS.items():
        for log in runs.glob(f"{search}-seed*/log.csv"):
            curves[name][int(log.parent.name.rsplit("seed", 1)[1])] = read_log(log)
    return {name: dict(sorted(by_seed.items())) for name, by_seed in curves.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=120_000)
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--eval-episodes", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one process and one core each")
    parser.add_argument("--schedule", choices=list(SCHEDULES), default="paper",
                        help="self-play's temperature schedule, the same for both agents (default: paper)")
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--untrained", action="store_true",
                        help="only score greedy search with each agent's untrained network, and random play")
    parser.add_argument("--budgets", type=int, nargs="+", default=None, metavar="SIMULATIONS",
                        help="only score every finished run's final network with these simulations per move "
                             "(a network the record has scored so is not scored again)")
    parser.add_argument("--games", type=int, default=64, help="games per score of --budgets")
    parser.add_argument("--compare", type=int, nargs="+", default=None, metavar="SEED",
                        help="the recorded seeds the plot and the comparison cover (default: all)")
    parser.add_argument("--window-from", type=int, default=None,
                        help="compare the agents' mean scores from this many env steps on (default: the last quarter)")
    args = parser.parse_args()
    if args.untrained:
        import pymbrl.envs  # noqa: F401  (registers the 2048 env)

        print(f"random legal moves: {random_play(args.eval_episodes):.1f}")
        for name, search in AGENTS.items():
            for seed in args.seeds:
                score, share = untrained(search, seed, args.eval_episodes)
                print(f"{name}, untrained, seed {seed}: {score:.1f} (its most frequent move: {share:.0%} of moves)")
        return
    if args.budgets:
        budgets(args.budgets, args.games, args.steps, args.jobs)
        return
    if not args.plot_only:
        jobs = list(itertools.product(AGENTS.values(), args.seeds))
        with ProcessPoolExecutor(args.jobs) as pool:
            seconds = list(pool.map(run, *zip(*jobs), *([v] * len(jobs) for v in
                                                         (args.steps, args.eval_every, args.eval_episodes,
                                                          args.schedule))))
        for (search, seed), s in zip(jobs, seconds):
            print(f"{search} seed {seed}: {s / 60:.1f} min")
    from pymbrl.training.curves import plot_learning_curves

    out, runs = paths(args.schedule)
    curves = collect(out, runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["agent", "seed", "step", "return", "episode_return", "seconds"])
        for name, by_seed in curves.items():
            for seed, history in by_seed.items():
                writer.writerows([name, seed, r["step"], r["return"], r["episode_return"], r["seconds"]]
                                 for r in history)
    if args.compare is not None:
        curves = {name: {s: h for s, h in by_seed.items() if s in args.compare} for name, by_seed in curves.items()}
    seeds = sorted(set().union(*curves.values()))
    schedule = "" if args.schedule == "paper" else f", {args.schedule} schedule"
    means = plot_learning_curves(curves, out.with_suffix(".png"), ylabel="score (greedy search)",
                                 title=f"2048 3x3: same network, 25 simulations, {len(seeds)} seeds{schedule}")
    for name, by_step in means.items():
        last = [h[-1]["return"] for h in curves[name].values()]
        print(f"{name}: mean score by step {by_step}; final per seed {last} (mean {np.mean(last):.1f})")
    compare(curves, args.window_from or args.steps * 3 // 4, args.steps)


def compare(curves: dict[str, dict[int, list[dict]]], start: int, steps: int) -> None:
    """Prints each seed's mean score over the evaluations at env steps in [``start``, ``steps``] for
    both agents and their paired difference (a single evaluation of 32 games is noisy: the window
    averages it), over the seeds both agents ran to ``steps``."""
    (a, by_a), (b, by_b) = curves.items()
    seeds = sorted(s for s in set(by_a) & set(by_b) if min(by_a[s][-1]["step"], by_b[s][-1]["step"]) >= steps)
    left_out = sorted((set(by_a) | set(by_b)) - set(seeds))
    if left_out:
        print(f"seeds left out of the comparison (not run to {steps} env steps by both agents): {left_out}")
    curves = {name: {seed: [r for r in by_seed[seed] if r["step"] <= steps] for seed in seeds}
              for name, by_seed in curves.items()}
    window = {name: {seed: np.mean([r["return"] for r in by_seed[seed] if r["step"] >= start]) for seed in seeds}
              for name, by_seed in curves.items()}
    diffs = np.array([window[a][s] - window[b][s] for s in seeds])
    print(f"mean score over the evaluations from {start} env steps on, per seed:")
    for seed, d in zip(seeds, diffs):
        print(f"  seed {seed}: {a} {window[a][seed]:.1f}, {b} {window[b][seed]:.1f} (difference {d:+.1f})")
    print(f"  {a} minus {b}: {paired(diffs)}")


def paired(diffs: np.ndarray) -> str:
    """The mean of per-seed differences between the agents, its standard error over the seeds and
    how many of them are positive."""
    error = diffs.std(ddof=1) / np.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    return (f"{diffs.mean():+.1f} +- {error:.1f} (standard error over {len(diffs)} seeds), "
            f"higher in {int((diffs > 0).sum())} of {len(diffs)}")


if __name__ == "__main__":
    main()
