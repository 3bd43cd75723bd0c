"""Learning-curve plots of training histories (the records ``train`` returns)."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from pymbrl._extras import optional_imports
from pymbrl._files import atomic_write

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "black")


def plot_learning_curves(curves: Mapping[str, Mapping[object, Sequence[Mapping[str, float]]]],
                         path: str | os.PathLike, *, title: str, xlabel: str = "env steps",
                         ylabel: str = "return (deterministic policy)") -> dict[str, dict[int, float]]:
    """Draws each method's evaluation return against env steps into the PNG ``path``: every seed
    faint, the mean over seeds (at the steps all seeds reached) bold.

    ``curves`` maps a method's name to its histories by seed. Records without a finite return
    (an I2A record before its first episode ended, a row of a log read by :func:`read_log` whose
    return cell was empty) are left out. Returns each method's mean return by step.
    """
    curves = {name: {seed: [r for r in history if math.isfinite(r.get("return", math.nan))]
                     for seed, history in by_seed.items()} for name, by_seed in curves.items()}
    with optional_imports():
        import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    try:
        means = {}
        for (name, by_seed), color in zip(curves.items(), COLORS):
            for history in by_seed.values():
                ax.plot([r["step"] for r in history], [r["return"] for r in history], color=color, alpha=0.25)
            reached = min(len(h) for h in by_seed.values())
            steps = [r["step"] for r in next(iter(by_seed.values()))][:reached]
            mean = np.mean([[r["return"] for r in h[:reached]] for h in by_seed.values()], axis=0)
            seeds = f"mean of {len(by_seed)}" if len(by_seed) > 1 else f"seed {next(iter(by_seed))}"
            ax.plot(steps, mean, "-o", color=color, markersize=3, label=f"{name} ({seeds})")
            means[name] = dict(zip(steps, mean.round(1).tolist()))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        # Atomic: a run stopped while it draws keeps the previous curve, never half a PNG.
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    finally:
        plt.close(fig)
    return means


def read_log(path: str | os.PathLike) -> list[dict[str, float]]:
    """The records of a training run's ``log.csv`` as numbers: ints where a cell holds an integer,
    floats elsewhere, and NaN where a cell is empty (a value the record did not have, such as the
    losses of an evaluation before the first update; the writer leaves such cells empty).

    Raises ValueError naming the file, the line and the column of a cell that is not a number, and
    of a file without a header.
    """
    records = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise ValueError(f"{os.fspath(path)}: expected a CSV header line, got an empty file")
        for row in reader:
            record = {}
            for key, cell in row.items():
                if key is None or cell is None:
                    raise ValueError(f"{os.fspath(path)}, line {reader.line_num}: expected "
                                     f"{len(reader.fieldnames)} cells, got {'more' if key is None else 'fewer'}")
                try:
                    record[key] = math.nan if cell == "" else int(cell) if cell.lstrip("-").isdigit() else float(cell)
                except ValueError:
                    raise ValueError(f"{os.fspath(path)}, line {reader.line_num}, column {key!r}: expected a number "
                                     f"or an empty cell, got {cell!r}") from None
            records.append(record)
    return records


def target_summary(runs: Mapping[object, Sequence[Mapping[str, float]]], target: float) -> list[str]:
    """Lines saying, per seed, when the evaluation return first reached ``target`` (env steps and
    wall-clock minutes) and the returns over the run, then the final return's mean and range over seeds.
    ``runs`` maps a seed to its history (records with ``step``, ``return`` and ``seconds``)."""
    lines = []
    for seed, history in runs.items():
        reached = [r for r in history if r["return"] >= target]
        first = f"{reached[0]['step']} env steps, {reached[0]['seconds'] / 60:.1f} min" if reached else "never"
        lines.append(f"seed {seed}: first evaluation >= {target:g} at {first}; returns "
                     f"{[round(r['return']) for r in history]}; {history[-1]['seconds'] / 60:.1f} min in all")
    finals = [h[-1]["return"] for h in runs.values()]
    lines.append(f"final return, mean over seeds: {np.mean(finals):.1f} ({min(finals):.1f}..{max(finals):.1f})")
    return lines
