"""Learning-curve plots of training histories (the records ``train`` returns)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "black")


def plot_learning_curves(curves: Mapping[str, Mapping[object, Sequence[Mapping[str, float]]]],
                         path: str | os.PathLike, *, title: str, xlabel: str = "env steps",
                         ylabel: str = "return (deterministic policy)") -> dict[str, dict[int, float]]:
    """Draws each method's evaluation return against env steps into the PNG ``path``: every seed
    faint, the mean over seeds (at the steps all seeds reached) bold.

    ``curves`` maps a method's name to its histories by seed. Returns each method's mean return by
    step.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
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
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return means


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
