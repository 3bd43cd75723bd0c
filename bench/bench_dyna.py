"""Benchmark pymbrl's tabular Dyna-Q against a pure-Python/numpy Dyna-Q (``dyna_baseline.py``).

Measures, in one process:

(a) planning updates per second, both agents with a model holding all 54 x 4 pairs of the Dyna
    maze (median of repeated ``plan(n)`` calls of at least ``--min-seconds`` each);
(b) the whole Figure 8.2 experiment (n = 0, 5, 50 planning steps x 30 seeds x 50 episodes):
    ``pymbrl.dyna.run_batch`` with the default thread count and with one thread, and the baseline;
(c) sanity: the mean episode lengths of both implementations, with a two-sample z statistic per
    episode, since a fast implementation of the wrong algorithm would be worthless.

It prints a markdown report and writes it into ``bench/RESULTS.md`` between the markers
``<!-- dyna:begin -->`` and ``<!-- dyna:end -->``, keeping the rest of that file.

Usage::

    make bench                       # or:
    python bench/bench_dyna.py       # full run, about a minute on a laptop
    python bench/bench_dyna.py --quick   # smoke test; writes no file unless --output is given
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from collections.abc import Callable

import numpy as np

import pymbrl
from pymbrl import dyna

import dyna_baseline as baseline
from _report import DEFAULT_OUTPUT, bench_parser, load, machine, publish

EPISODES = 50
SEEDS = 30
SANITY_EPISODES = (2, 4, 10, 20, 50)
Z_LIMIT = 3.5
"""|z| above this at any of the 15 reported (setting, episode) cells counts as disagreement; two
correct implementations then raise a false alarm about 1% of the time (with 30 seeds each)."""
PLANNING_TARGET = 100.0
EXPERIMENT_TARGET_S = 1.0
SECTION = "dyna"


def timed(fn: Callable[[], object], repeats: int) -> tuple[list[float], object]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` and the first call's result."""
    times, results = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        results.append(fn())
        times.append(time.perf_counter() - start)
    return times, results[0]


def check_same_maze(mdp: dyna.TabularMDP) -> None:
    """Fail unless the baseline maze has pymbrl's layout and dynamics in every cell an agent can occupy."""
    if tuple(mdp.layouts[0]) != baseline.FIGURE_8_2_LAYOUT:
        raise SystemExit(f"layouts differ: pymbrl {mdp.layouts[0]} vs baseline {baseline.FIGURE_8_2_LAYOUT}")
    P, R, D = mdp.dense()
    maze = baseline.Maze()
    for s in range(maze.n_states):
        if "".join(maze.layout)[s] in "#G":
            continue
        for a in range(maze.n_actions):
            s2, r, terminated = maze.transition(s, a)
            if P[s, a, s2] != 1.0 or R[s, a] != r or D[s, a] != terminated:
                raise SystemExit(f"dynamics differ at state {s}, action {a}")


def z_scores(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Two-sample z statistic of the per-column means of ``x`` and ``y`` [seeds, episodes]."""
    se = np.sqrt(x.var(axis=0, ddof=1) / len(x) + y.var(axis=0, ddof=1) / len(y))
    return (x.mean(axis=0) - y.mean(axis=0)) / np.where(se > 0, se, np.inf)


def first_below(curve: np.ndarray, steps: float = 20.0) -> str:
    """First episode (1-based) whose mean length is under ``steps``."""
    below = np.flatnonzero(curve < steps)
    return str(below[0] + 1) if below.size else f">{len(curve)}"


def figure_8_2_pymbrl(mdp: dyna.TabularMDP, num_threads: int | None) -> dict[int, np.ndarray]:
    """Figure 8.2 with pymbrl: episode lengths [seeds, episodes] per planning setting."""
    return {n: dyna.run_batch("dyna_q", mdp, seeds=range(SEEDS), episodes=EPISODES, planning_steps=n,
                              num_threads=num_threads).episode_steps
            for n in baseline.SETTINGS}


def figure_8_2_baseline(seeds: int) -> dict[int, np.ndarray]:
    """Figure 8.2 with the baseline: episode lengths [seeds, episodes] per planning setting."""
    return {n: baseline.run_setting(n, range(seeds), EPISODES) for n in baseline.SETTINGS}


def report(args: argparse.Namespace, argv: list[str]) -> str:
    """Run every measurement and return the markdown section (without its markers)."""
    command = " ".join(["python bench/bench_dyna.py", *argv])
    mdp = dyna.DynaMaze()
    check_same_maze(mdp)
    load_before = load()
    threads = pymbrl.build_info()["hardware_threads"]

    print("(a) planning updates/s ...", file=sys.stderr)
    n_fast, fast = baseline.planning_rate(baseline.filled_agent(dyna.DynaQ), args.min_seconds, args.repeats)
    n_slow, slow = baseline.planning_rate(baseline.filled_agent(baseline.DynaQ), args.min_seconds, args.repeats)
    fast_rate, slow_rate = float(np.median(fast)), float(np.median(slow))

    print("(b) Figure 8.2 experiment ...", file=sys.stderr)
    t_default, steps_fast = timed(lambda: figure_8_2_pymbrl(mdp, None), args.repeats)
    t_single, _ = timed(lambda: figure_8_2_pymbrl(mdp, 1), args.repeats)
    t_base, steps_slow = timed(lambda: figure_8_2_baseline(args.baseline_seeds), args.baseline_runs)
    default_s, single_s, base_s = (float(np.median(t)) for t in (t_default, t_single, t_base))
    # The baseline may run fewer seeds (--quick); scale its time to the full experiment.
    base_full_s = base_s * SEEDS / args.baseline_seeds

    planning_ratio = fast_rate / slow_rate
    planning_met = planning_ratio >= PLANNING_TARGET
    experiment_met = default_s < EXPERIMENT_TARGET_S
    verdict = {True: "**met**", False: "**not met**"}
    scaled = "" if args.baseline_seeds == SEEDS else f" (measured on {args.baseline_seeds} seeds, scaled to {SEEDS})"
    build = pymbrl.build_info()
    lines = [
        "## Tabular Dyna-Q: planning throughput and the Figure 8.2 experiment",
        "",
        f"- Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- Machine: {machine()}",
        f"- Python {platform.python_version()}, numpy {np.__version__}, pymbrl {pymbrl.__version__} "
        f"({build['build_type']}, {build['compiler']}, flags `{build['flags'].strip()}`)",
        f"- Command: `{command}`" + ("" if argv else " (what `make bench` runs)"),
        f"- 1-minute load average before / after: {load_before} / {load()} "
        f"(other work on the machine inflates the timings)",
        "- Baseline: `bench/dyna_baseline.py`, pure Python + numpy (dict model, `rng.choice` tie-breaking)",
        "",
        "| measurement | pymbrl | baseline | pymbrl speed-up |",
        "|---|---:|---:|---:|",
        f"| planning updates/s, model with all 216 pairs (median of {args.repeats} calls of "
        f"`plan(n)`, n = {n_fast:,} / {n_slow:,}) | {fast_rate:,.0f} | {slow_rate:,.0f} | {planning_ratio:,.0f}x |",
        f"| Figure 8.2 experiment, 3 x {SEEDS} seeds x {EPISODES} episodes, `run_batch` default "
        f"({threads} threads), s (median of {args.repeats} / {args.baseline_runs}) | {default_s:.4f} | "
        f"{base_full_s:.2f}{scaled} | {base_full_s / default_s:,.0f}x |",
        f"| same, `run_batch(num_threads=1)`, s | {single_s:.4f} | {base_full_s:.2f} | "
        f"{base_full_s / single_s:,.0f}x |",
        "",
        "Targets:",
        "",
        f"- Planning updates/s at least {PLANNING_TARGET:.0f}x the baseline's: {verdict[planning_met]} "
        f"({planning_ratio:,.0f}x).",
        f"- Whole Figure 8.2 experiment in under {EXPERIMENT_TARGET_S:.0f} s: {verdict[experiment_met]} "
        f"({default_s:.4f} s with {threads} threads, {single_s:.4f} s with 1).",
        "",
        f"Sanity: mean steps per episode ({SEEDS} seeds pymbrl, {args.baseline_seeds} baseline; the two use "
        f"different random streams, so only the statistics can agree). z is the two-sample z statistic.",
        "",
        "| n | implementation | " + " | ".join(f"ep {e}" for e in SANITY_EPISODES) + " | first ep < 20 steps |",
        "|---|---|" + "---:|" * (len(SANITY_EPISODES) + 1),
    ]
    worst = 0.0
    for n in baseline.SETTINGS:
        fast_curve, slow_curve = steps_fast[n].mean(axis=0), steps_slow[n].mean(axis=0)
        z = z_scores(steps_fast[n], steps_slow[n])
        worst = max(worst, max(abs(float(z[e - 1])) for e in SANITY_EPISODES))
        for name, curve in (("pymbrl", fast_curve), ("baseline", slow_curve)):
            cells = " | ".join(f"{curve[e - 1]:.1f}" for e in SANITY_EPISODES)
            lines.append(f"| {n} | {name} | {cells} | {first_below(curve)} |")
        lines.append(f"| {n} | z | " + " | ".join(f"{z[e - 1]:+.2f}" for e in SANITY_EPISODES) + " | |")
    agree = worst < Z_LIMIT
    lines += [
        "",
        f"Largest |z| in the table: {worst:.2f}, so the implementations "
        f"{'agree' if agree else '**DISAGREE**'} (limit {Z_LIMIT}).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "fewer repetitions and baseline seeds")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.repeats = 3 if args.quick else 7
    args.min_seconds = 0.05 if args.quick else 0.2
    args.baseline_seeds = 3 if args.quick else SEEDS
    args.baseline_runs = 1 if args.quick else 3
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)

    section = report(args, argv)
    publish(section, output, SECTION)


if __name__ == "__main__":
    main()
