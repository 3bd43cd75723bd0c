"""The book's chapter 8 experiments as functions, shared by the CLI, the examples and the tests.
Progress bars (tqdm) and plots (matplotlib) come with the ``pymbrl[agents]`` extra; the runs
themselves need neither."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from pymbrl._extras import optional_imports
from pymbrl.dyna.mdp import DynaMaze, TabularMDP
from pymbrl.dyna.runner import BatchResult, run_batch


def planning_sweep(kind: str, mdp: TabularMDP, planning_steps: Iterable[int], *, seeds: Sequence[int],
                   episodes: int | None = None, steps: int | None = None, progress: bool = False,
                   **agent_kwargs: Any) -> dict[int, BatchResult]:
    """:func:`run_batch` once per number of planning steps, same seeds for each.

    Returns
    -------
    dict
        planning_steps -> BatchResult.
    """
    settings: Iterable[int] = list(planning_steps)
    if progress:
        with optional_imports():
            from tqdm.auto import tqdm

        settings = tqdm(settings, desc=f"{kind} planning steps")
    results = {}
    for n in settings:
        results[n] = run_batch(kind, mdp, seeds=seeds, episodes=episodes, steps=steps, planning_steps=n,
                               **agent_kwargs)
    return results


class Curves(NamedTuple):
    """``curves``: label -> mean steps per episode, float64 [episodes]; ``seconds``: time of the runs."""

    curves: dict[str, np.ndarray]
    seconds: float


def figure_8_2(path: str | None, *, seeds: int = 30, episodes: int = 50, planning_steps: Sequence[int] = (0, 5, 50),
               num_threads: int | None = None, progress: bool = False) -> Curves:
    """Sutton & Barto's Figure 8.2: Dyna-Q on the Dyna maze for each number of planning steps,
    labelled ``"n=<planning steps>"``, plotted to ``path`` (not plotted where ``path`` is None). As
    in the book, the plot starts at episode 2: the first episode is a random walk for every n."""
    start = time.perf_counter()
    results = planning_sweep("dyna_q", DynaMaze(), planning_steps, seeds=range(seeds), episodes=episodes,
                             progress=progress, num_threads=num_threads)
    seconds = time.perf_counter() - start
    curves = {f"n={n}": r.episode_steps.mean(axis=0) for n, r in results.items()}
    if path is not None:
        plot_curves({k: v[1:] for k, v in curves.items()}, path, first=2, ylim=(0, 800),
                    title=f"Dyna maze (Figure 8.2), Dyna-Q, {seeds} seeds", xlabel="episode",
                    ylabel="steps per episode")
    return Curves(curves, seconds)


def steps_table(curves: dict[str, np.ndarray], episodes: Sequence[int]) -> str:
    """A fixed-width text table: one row per curve, one column per (1-based) episode."""
    label_width = max(len(k) for k in curves)
    header = " " * label_width + " | " + " ".join(f"{e:>6d}" for e in episodes)
    rows = [header, "-" * len(header)]
    for label, curve in curves.items():
        rows.append(f"{label:>{label_width}} | " + " ".join(f"{curve[e - 1]:6.1f}" for e in episodes))
    return "\n".join(rows)


def plot_curves(curves: dict[str, np.ndarray], path: str, *, title: str, xlabel: str, ylabel: str,
                first: int = 1, ylim: tuple[float, float] | None = None, vlines: Sequence[int] = ()) -> None:
    """Save a line plot of ``curves`` (label -> values, x starting at ``first``) as a PNG."""
    with optional_imports():
        import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for label, values in curves.items():
        x = np.arange(first, first + len(values))
        ax.plot(x, values, label=label, linewidth=1.6)
    for v in vlines:
        ax.axvline(v, color="grey", linestyle=":", linewidth=1)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
