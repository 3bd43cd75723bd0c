"""``pymbrl demo``: the library's main job in under a minute of CPU time, printed as it goes.

1. The search: MuZero's batched search in C++ (:func:`pymbrl.mcts.muzero_policy`) against the
   readable pure-Python search it reproduces bit for bit (:mod:`pymbrl.mcts.reference`), on the same
   roots with the same model, timed both ways and checked to agree.
2. An agent: MuZero (:mod:`pymbrl.agents.muzero`) learns CartPole-v1 with the settings of
   :data:`pymbrl.agents.muzero.CARTPOLE_DEMO`, in a run directory as ``pymbrl train`` makes, until a
   greedy evaluation reaches 475 (of 500); then the saved agent is loaded and played.
3. What to run next, and where the plots are.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pymbrl.training import Callbacks

SEARCH_BATCHES = (1, 8, 64)  # roots per search; the pure-Python search takes them one at a time
SEARCH_SIMULATIONS = 50
QUICK_BATCHES = (1, 8)
QUICK_SIMULATIONS = 10
QUICK_STEPS = 320  # env steps of --quick: self-play, a checkpoint and an evaluation, before any update
PLAYED_EPISODES = 3
CARTPOLE_TARGET = 475.0  # CartPole-v1's "solved" threshold (its episodes end at 500)


@dataclass(frozen=True)
class SearchTiming:
    """One batch searched by the C++ core and by the pure-Python reference.

    batch_size : int -- roots searched together.
    num_simulations : int -- simulations per root.
    core_seconds, reference_seconds : float -- wall time of each search.
    agree : bool -- same visit counts [B, A], actions [B] and root values [B] (float32) both ways.
    """

    batch_size: int
    num_simulations: int
    core_seconds: float
    reference_seconds: float
    agree: bool

    @property
    def core_rate(self) -> float:
        """Simulations per second of the C++ search (summed over the batch)."""
        return self.batch_size * self.num_simulations / self.core_seconds

    @property
    def reference_rate(self) -> float:
        """Simulations per second of the pure-Python search."""
        return self.batch_size * self.num_simulations / self.reference_seconds


def tictactoe_positions(batch_size: int, seed: int) -> torch.Tensor:
    """``batch_size`` TicTacToe boards float32 [B, 9] after 0 to 4 random moves (no game is over
    yet), drawn from ``seed``."""
    from pymbrl.envs import tictactoe

    generator = torch.Generator().manual_seed(seed)
    boards = tictactoe.new_boards(batch_size)
    moves = torch.randint(5, (batch_size,), generator=generator)
    for m in range(4):
        after = tictactoe.play(boards, tictactoe.random_actions(boards, generator))
        boards = torch.where((moves > m)[:, None], after, boards)
    return boards


def time_search(batch_size: int, num_simulations: int, seed: int = 0) -> SearchTiming:
    """MuZero's search (pUCT, no root noise, the most visited action) of ``batch_size`` TicTacToe
    positions with the game's rules as the model (:mod:`pymbrl.models.tictactoe`), by the C++ core
    on one thread and by :func:`pymbrl.mcts.reference.run_reference_batch`."""
    from pymbrl import mcts
    from pymbrl.mcts import reference
    from pymbrl.models import tictactoe as model

    root, invalid = model.search_root(tictactoe_positions(batch_size, seed))
    start = time.perf_counter()
    out = mcts.muzero_policy(root, model.recurrent_fn, num_simulations, invalid_actions=invalid,
                             dirichlet_fraction=0.0, temperature=0.0, num_threads=1)
    core = time.perf_counter() - start
    start = time.perf_counter()
    ref = reference.run_reference_batch(model.recurrent_fn, root.prior_logits, root.value, root.embedding,
                                        num_simulations, invalid_actions=invalid)
    python = time.perf_counter() - start
    summary = out.search_tree.summary()
    agree = (torch.equal(summary.visit_counts, ref.visit_counts) and torch.equal(out.action, ref.action)
             and torch.equal(summary.value, ref.value.float()))
    return SearchTiming(batch_size, num_simulations, core, python, agree)


def plot_search_speed(timings: Sequence[SearchTiming], path: Path) -> None:
    """Simulations per second against the batch size, both ways, log-log, into the PNG ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = [t.batch_size for t in timings]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(batches, [t.core_rate for t in timings], "-o", label="pymbrl.mcts (C++, one thread)")
    ax.plot(batches, [t.reference_rate for t in timings], "-o", label="pymbrl.mcts.reference (pure Python)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("roots searched together")
    ax.set_ylabel("simulations per second")
    ax.set_title(f"MuZero search on TicTacToe, {timings[0].num_simulations} simulations per root")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def agent_config(quick: bool = False, seed: int = 0) -> Any:
    """The demo's :class:`~pymbrl.agents.muzero.MuZeroConfig`: :data:`~pymbrl.agents.muzero.CARTPOLE_DEMO`
    through the training layer (:func:`~pymbrl.training.config.from_dict`, over the env's preset), with
    ``seed`` and, when ``quick``, :data:`QUICK_STEPS` env steps. ValueError naming ``seed`` if it is
    refused."""
    from pymbrl.agents import muzero
    from pymbrl.training.config import from_dict

    return from_dict(muzero.MuZeroConfig, {**muzero.CARTPOLE_DEMO, "seed": seed,
                                           **({"steps": QUICK_STEPS} if quick else {})})


def run_directory(out: Path, config: Any) -> Path:
    """Where the demo's agent trains in ``out``; ValueError if ``out`` is a file, or the run
    directory holds a run that ``config`` cannot resume (another algorithm, env or settings)."""
    from pymbrl.training.run import check_resumable

    if out.exists() and not out.is_dir():
        raise ValueError(f"expected a directory, got the file {str(out)!r}")
    run_dir = out / f"muzero-{config.env}"
    check_resumable(run_dir, "muzero", config)
    return run_dir


class Progress(Callbacks):
    """Prints each evaluation of the run as it comes, with the time since the run started."""

    def __init__(self, write: Callable[[str], None]):
        self.write, self.started = write, time.perf_counter()

    def on_record(self, stage: str, record: dict[str, Any]) -> None:
        # A record's self-play return is NaN when no self-play episode ended since the last one.
        played = record["episode_return"]
        played = "  -  " if math.isnan(played) else f"{played:5.1f}"
        self.write(f"  {time.perf_counter() - self.started:5.0f} s  env step {record['step']:>6}  greedy return "
                   f"{record['return']:5.1f}  (self-play {played}, {record['updates']} updates)")


def run(out: Path, *, quick: bool = False, seed: int = 0, write: Callable[[str], None] = print) -> dict[str, Any]:
    """The demo, written to the folder ``out`` (made if missing) and reported through ``write``.

    ``quick`` shrinks every part to seconds (2 small batches, 10 simulations, 320 env steps): it
    shows the demo works, not what the agent learns. ``seed`` seeds the searched positions and the
    agent's run. A run directory left by an earlier demo in ``out`` is resumed (a finished one is
    only played again). Raises ValueError as :func:`agent_config` and :func:`run_directory` do.

    Returns what the demo measured: ``search`` (the :class:`SearchTiming` of each batch),
    ``reached`` (whether the agent reached the target), ``history`` (the run's records), ``played``
    (the returns of the played episodes) and the paths ``search_plot``, ``learning_curve`` and
    ``run_dir``.
    """
    from pymbrl.agents import muzero
    from pymbrl.training.agent import evaluate
    from pymbrl.training.curves import plot_learning_curves

    started = time.perf_counter()
    config = agent_config(quick, seed)
    run_dir = run_directory(out, config)
    out.mkdir(parents=True, exist_ok=True)
    batches, simulations = (QUICK_BATCHES, QUICK_SIMULATIONS) if quick else (SEARCH_BATCHES, SEARCH_SIMULATIONS)
    write("pymbrl demo" + (" --quick: every part shrunk to seconds; the numbers show it runs, not what it can do"
                           if quick else ": the batched search, an agent trained with it, and what to run next"))

    write(f"\n1/3 The search: MuZero's pUCT search, {simulations} simulations per root, on TicTacToe positions "
          "(the rules as the model), in C++ and in pure Python (pymbrl.mcts.reference), one thread each")
    write(f"  {'roots':>5}  {'C++ sims/s':>11}  {'Python sims/s':>13}  {'C++ / Python':>12}  same visit counts")
    timings = []
    time_search(1, 2, seed)  # the first search pays for loading the core's code and torch's kernels
    for batch_size in batches:
        t = time_search(batch_size, simulations, seed)
        timings.append(t)
        write(f"  {batch_size:>5}  {t.core_rate:>11,.0f}  {t.reference_rate:>13,.0f}  "
              f"{t.core_rate / t.reference_rate:>11.0f}x  {'yes' if t.agree else 'NO: the searches differ'}")
    write("  (both call the model once per simulation: on one root each, on all the roots at once in C++)")
    last = timings[-1]
    write(f"  the C++ search did {last.core_rate / last.reference_rate:.0f}x the simulations per second of the "
          f"pure-Python one at {last.batch_size} roots, "
          + ("with the same visit counts, actions and values" if all(t.agree for t in timings)
             else "but the results DIFFER: please report this"))
    search_plot = out / "search_speed.png"
    plot_search_speed(timings, search_plot)

    write(f"\n2/3 An agent: MuZero ({config.search} search, {config.num_simulations} simulations per move, "
          f"{config.num_envs} envs) learns {config.env} from scratch until a greedy evaluation of "
          f"{config.eval_episodes} episodes reaches {config.target_return:g} (500 is the most), at most "
          f"{config.steps} env steps")
    if quick:
        write(f"  (--quick: {config.steps} env steps, so the target is not the point)")
    write(f"  run directory: {run_dir} (config.yaml, log.csv, TensorBoard events, checkpoint)")
    result = muzero.train(config, run_dir, callbacks=Progress(write))
    history = result.history
    reached = muzero.reached(config, history)
    best = max(r["return"] for r in history)
    trained = history[-1]["seconds"]
    if reached:
        write(f"  reached {history[-1]['return']:.1f} at env step {history[-1]['step']}, {trained:.0f} s of training")
    else:
        write(f"  did NOT reach {config.target_return:g}: the best greedy return in {history[-1]['step']} env steps "
              f"was {best:.1f} ({trained:.0f} s of training)")
    learning_curve = run_dir / "learning_curve.png"
    plot_learning_curves({"MuZero": {seed: history}}, learning_curve, title=f"MuZero on {config.env} (pymbrl demo)")
    agent = muzero.load(run_dir)  # what `pymbrl play` loads: the run's last checkpoint
    env = muzero.make_env(config)
    try:
        played = evaluate(agent, env, PLAYED_EPISODES, seed=100)
    finally:
        env.close()
    write(f"  the saved agent, loaded and played greedily: returns {', '.join(f'{r:.0f}' for r in played)}")

    write("\n3/3 What next")
    rows = [
        ("play this agent again", f"pymbrl play muzero --run-dir {run_dir}"),
        ("train it on, past the target", f"pymbrl train muzero --run-dir {run_dir} --steps 30000 "
                                         "--set target_return=null"),
        ("MuZero on TicTacToe, by self-play", "pymbrl train muzero --env TicTacToe"),
        ("every agent, its envs and presets", "pymbrl list"),
        ("an agent's settings (--set F=V)", "pymbrl train ALGO --help"),
        ("Dyna-Q in C++: S&B's Figure 8.2", "pymbrl dyna"),
        ("this run in TensorBoard", f"tensorboard --logdir {out}"),
        ("time the search here vs its peers", "pymbrl bench mcts  (against the LightZero and mctx you have)"),
        ("every benchmark, as published", "make bench  (in a source checkout; writes bench/RESULTS.md)"),
    ]
    width = max(len(what) for what, _ in rows)
    for what, command in rows:
        write(f"  {what:<{width}}  {command}")
    write(f"  plots: {search_plot} (search speed), {learning_curve} (learning curve)")
    write(f"demo done in {time.perf_counter() - started:.0f} s")
    return {"search": timings, "reached": reached, "history": history, "played": played,
            "search_plot": search_plot, "learning_curve": learning_curve, "run_dir": run_dir}
