"""Benchmark pymbrl's batched MCTS against LightZero's compiled trees, mctx and a pure-Python search.

What is measured (tree-simulations per second of whole searches of B = 256 roots, from root outputs
in hand to the root statistics a training loop reads), on which shared model, and how each peer is
driven: ``pymbrl.bench.mcts``, which also backs ``pymbrl bench mcts``. This script runs it in full:
MuZero, Gumbel, Stochastic and Sampled MuZero search at S = 50 and S = 200, on both model variants
(``peaked`` and ``flat``: the same random draws at two scales, ratios compared within a variant),
pymbrl with its own thread count and with ``num_threads=1``, the peers on one core. The report also
gives each library's cost per tree-simulation at S = 50 and S = 200 (how flat it is in S) and the
depth of pymbrl's trees, which is what the cost of a simulation follows.

Everything runs with ``torch.set_num_threads(1)`` and single-threaded XLA. Each case runs every
library ``repeats`` times, the libraries interleaved (their order rotating) so that a burst of load
on the machine hits them all; the tables show medians.

It prints a markdown report and writes it into ``bench/RESULTS.md`` between the markers
``<!-- mcts:begin -->`` and ``<!-- mcts:end -->``, keeping the rest of that file.

Usage::

    make bench                            # or, with the peers installed (see the Makefile):
    python bench/bench_mcts.py            # full run, 10-20 minutes on a 2-core VM
    python bench/bench_mcts.py --quick    # smoke test; writes no file unless --output is given
    python bench/bench_mcts.py --quick --models peaked --libs pymbrl,pymbrl1,lightzero
    python bench/bench_mcts.py --policies stochastic,sampled   # only the new searches (own section)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from _report import DEFAULT_OUTPUT, bench_parser, header, names, run_and_publish

from pymbrl.bench.mcts import (A, AD, ALPHA, B, C, CELL_SECONDS, D, DEPTH_POLICIES, DISCOUNT, FRACTION, K, LIBS,
                               MIN_REPEATS, MODELS, NA, PB_C_BASE, PB_C_INIT, PEERS, POLICIES, PYMBRL, PYMBRL1,
                               PYTHON_ROOTS, SIGMA_MIN, SIMULATIONS, WARMUP_SEED, Bench, Cell, Settings, fmt_us, ratio,
                               show, value_of)

torch.set_num_threads(1)

SECTION = "mcts"
CLI_NAMES = dict(zip(("pymbrl", "pymbrl1", "lightzero", "mctx", "python"), LIBS))
"""``--libs`` name -> library (column) name."""
PEERS_DIR = Path(__file__).resolve().parent.parent / "build" / "peers"
"""Where ``make bench`` extracts LightZero's compiled trees (``lzero/mcts/ctree``), which are
self-contained extension modules: the folder goes on the path (LightZero itself, with its DI-engine
dependency tree, is not installed)."""


def pretty(policy: str) -> str:
    return POLICIES[policy]


def label(policy: str, sims: int, which: str) -> str:
    text = f"{pretty(policy)} S={sims}"
    return text + ", tree code only" if which == "tree" else text


GROUPS = (("muzero", "gumbel"), ("stochastic", "sampled"))
"""The searches reported in one set of tables (the second were added later, with their own tables)."""


def rows(bench: Bench, policies: tuple[str, ...]):
    """(model, which, policy, S) of the rate tables, one block of rows per model variant."""
    for model in bench.settings.models:
        for which in ("total", "tree"):
            for policy in policies:
                for sims in SIMULATIONS:
                    yield model, which, policy, sims


def columns(bench: Bench, policies: tuple[str, ...]) -> list[str]:
    """The libraries of a group's tables: those that run one of its searches (or could not run at all)."""
    return [n for n, ad in bench.libs.items() if ad.reason is not None or set(ad.policies) & set(policies)]


def rates_table(bench: Bench, policies: tuple[str, ...]) -> list[str]:
    """Tree-simulations/s of every library run, and pymbrl's ratio to each peer."""
    names = columns(bench, policies)
    peers = [n for n in PEERS if n in names] if PYMBRL in names else []
    lines = ["| model | case | " + " | ".join(names + [f"{PYMBRL} / {n}" for n in peers]) + " |",
             "|---|---|" + "---:|" * (len(names) + len(peers))]
    for model, which, policy, sims in rows(bench, policies):
        vals = {n: value_of(bench, (model, policy, sims), n, which) for n in names}
        cells = [show(vals[n], "*" if n == "Python" else "") for n in names]
        cells += [ratio(vals[PYMBRL], vals[n]) for n in peers]
        lines.append(f"| {model} | {label(policy, sims, which)} | " + " | ".join(cells) + " |")
    return lines


def per_core_table(bench: Bench, policies: tuple[str, ...]) -> list[str]:
    """pymbrl on one thread over each peer (all on one core), and pymbrl's own thread count over one thread."""
    names = columns(bench, policies)
    if PYMBRL1 not in names:
        return []
    pairs = [(PYMBRL1, n) for n in PEERS if n in names] + ([(PYMBRL, PYMBRL1)] if PYMBRL in names else [])
    if not pairs:
        return []
    lines = ["| model | case | " + " | ".join(f"{a} / {b}" for a, b in pairs) + " |",
             "|---|---|" + "---:|" * len(pairs)]
    for model, which, policy, sims in rows(bench, policies):
        key = (model, policy, sims)
        cells = [ratio(value_of(bench, key, a, which), value_of(bench, key, b, which)) for a, b in pairs]
        lines.append(f"| {model} | {label(policy, sims, which)} | " + " | ".join(cells) + " |")
    return lines


def cost_table(bench: Bench, policies: tuple[str, ...]) -> list[str]:
    """µs per tree-simulation at each S, end to end and tree code only, and how it grows with S."""
    lo, hi = SIMULATIONS
    lines = [f"| model | policy | library | S={lo} | S={hi} | S={hi} / S={lo} | tree code only S={lo} | S={hi} | "
             f"S={hi} / S={lo} |", "|---|---|---|" + "---:|" * 6]
    for model in bench.settings.models:
        for policy in policies:
            for name, ad in bench.ready().items():
                if policy not in ad.policies:
                    continue
                cells = []
                for which in ("total", "tree"):
                    rates = [value_of(bench, (model, policy, s), name, which) for s in SIMULATIONS]
                    cells += [fmt_us(1e6 / r) if isinstance(r, float) else r for r in rates]
                    # The cost ratio S=hi / S=lo is the rate ratio S=lo / S=hi.
                    cells.append(f"{rates[0] / rates[1]:.2f}" if all(isinstance(r, float) for r in rates) else NA)
                lines.append(f"| {model} | {pretty(policy)} | {name} | " + " | ".join(cells) + " |")
    return lines


def depth_table(bench: Bench) -> list[str]:
    lines = ["| model | policy | S | mean leaf depth | deepest leaf of the batch | deepest node |",
             "|---|---|---:|---:|---:|---:|"]
    for (model, policy, sims), (mean, batch_max, deepest) in bench.depths.items():
        lines.append(f"| {model} | {pretty(policy)} | {sims} | {mean:.2f} | {batch_max:.1f} | {deepest} |")
    return lines


def group_tables(bench: Bench, policies: tuple[str, ...]) -> list[str]:
    """The rate, per-core and cost tables of one group of searches."""
    a = bench.settings
    lo, hi = SIMULATIONS
    names = " and ".join(pretty(p) for p in policies)
    lines = ["", f"{names}: tree-simulations per second (roots x S / seconds per search; higher is better):", "",
             *rates_table(bench, policies)]
    footnotes = (["Ratios: above 1 means pymbrl is faster."] if PYMBRL in a.libs else []) + (
        [f"\\* Python: measured on the first {PYTHON_ROOTS} roots, one tree at a time (a tree-simulation "
         "costs it the same whatever B); MuZero only."] if "Python" in columns(bench, policies) else [])
    if footnotes:
        lines += ["", " ".join(footnotes)]
    per_core = per_core_table(bench, policies)
    if per_core:
        lines += ["", f"{names}, per core: pymbrl on one thread over each peer (every peer runs on one core), and "
                  "pymbrl with its own thread count over one thread (above 1: the first is faster):", "", *per_core]
    lines += [
        "",
        f"{names}: cost per tree-simulation in µs (seconds per search / (roots x S); lower is better) and its "
        f"growth from S={lo} to S={hi} (1.00: flat in S; above: later simulations cost more, e.g. as they walk "
        "longer paths in deeper trees" + (", see the depths below" if set(policies) & set(DEPTH_POLICIES) else "")
        + "):",
        "",
        *cost_table(bench, policies),
    ]
    return lines


def report(bench: Bench, argv: list[str], load_before: str) -> str:
    a = bench.settings
    reps = ", ".join(f"{a.repeats[s]} at S={s}" for s in SIMULATIONS)
    lines = header("Batched MCTS: pymbrl vs LightZero, mctx and a pure-Python search", "bench_mcts.py", argv,
                   load_before, machine_note="; `torch.set_num_threads(1)`, XLA on one CPU thread",
                   runtime=bench.runtime)
    for name, ad in bench.libs.items():
        lines.append(f"- {ad.versions() if ad.reason is None else name + ': ' + ad.reason}")
    searches = {
        "muzero": f"MuZero with Dirichlet noise (alpha {ALPHA}, fraction {FRACTION})",
        "gumbel": f"Gumbel MuZero considering all {A} actions",
        "stochastic": f"Stochastic MuZero with {C} chance outcomes, decision model `s = tanh(h Ws + Wa[a])` "
                      f"(chance logits and afterstate value linear in s), chance model `h' = tanh(s Wt + Wo[c])`, "
                      f"Dirichlet noise as MuZero",
        "sampled": f"Sampled MuZero with continuous actions of dimension {AD}, K={K} actions sampled per node "
                   f"from a tanh-squashed Gaussian (mean `h' Wmu / 4`, standard deviation "
                   f"`softplus(h' Wsig / 4) + {SIGMA_MIN}`), model `h' = tanh(h Ws + a Wc2)`, no root noise",
    }
    lines += [
        f"- Setup: B={B} roots, A={A} actions, latent {D}, model `h' = tanh(h Ws + Wa[a])`, reward/value/"
        f"logits linear in h' (same float32 weights for all); pUCT {PB_C_INIT} / {PB_C_BASE}, discount "
        f"{DISCOUNT}; " + "; ".join(searches[p] for p in a.policies) + f". Medians over {reps} whole searches "
        f"per library and case (fewer, at least {MIN_REPEATS}, for a library whose warm-up search took over "
        f"{CELL_SECONDS:.0f} s / that number), the libraries interleaved, after one warm-up search each.",
        "- Model variants, the same random draws at two scales (the shape of the trees, and so the cost of "
        "a simulation, follows the priors; compare libraries within a variant):",
        *(f"  - `{m}`: {MODELS[m]}" for m in a.models),
    ]
    for group in GROUPS:
        policies = tuple(p for p in group if p in a.policies)
        if policies:
            lines += group_tables(bench, policies)
    timed = [
        "- pymbrl: `mcts.muzero_policy(root, recurrent_fn, S, ...)` / `mcts.gumbel_muzero_policy(...)` / "
        "`mcts.stochastic_muzero_policy(root, decision_fn, chance_fn, S, ...)` / "
        "`mcts.sampled_muzero_policy(sampled_root, recurrent_fn, S, num_samples=K, ...)` with torch functions "
        "on the batch (Stochastic MuZero: on the rows whose leaf needs each), `num_threads` its own choice "
        "(resolved once and passed, see above) or 1; its default Q transform for each. Tree code only = "
        "`Tree.core_seconds`, the time inside its C++ selection, expansion and backup.",
        "- LightZero: root noise (`np.random.dirichlet` per root, as its collector does; none for Sampled "
        "MuZero), `Roots` + `prepare`, then per simulation `batch_traverse` (C++), the gather of the leaves' "
        "parent latents from its Python list of numpy arrays, the torch model on the batch, numpy/`tolist` "
        "conversions and `batch_backpropagate` (C++); finally `get_distributions`/`get_values` (+ "
        "`get_policies` for Gumbel, `get_sampled_actions` for Sampled). Stochastic MuZero as "
        "`StochasticMuZeroMCTSCtree.search`: the leaves split into new afterstates and new states, the "
        "decision and the chance model on each group, their outputs converted row by row, "
        "`batch_backpropagate` once per group. Sampled MuZero: its C++ tree samples the K actions of a new "
        "node itself from the [mu, sigma] outputs and keys the node's children by their values printed to 6 "
        "decimals: two draws that print alike share one child, which `get_distributions` lists once per draw, "
        "so a root's visits may sum to more than S (the sanity line says where). Tree code only = time inside "
        "`batch_traverse` + `batch_backpropagate`. (Its loop also applies an inverse scalar transform to categorical "
        "value/reward outputs; this model outputs scalars, so there is none.)",
        "- mctx: one jitted call of `muzero_policy` / `gumbel_muzero_policy` / `stochastic_muzero_policy` "
        "returning action, action weights and the root summary, `block_until_ready`; compilation excluded. "
        "Its tree and model are fused by XLA, so there is no tree-only time. Its Stochastic MuZero calls "
        "both the decision and the chance model on every row each simulation and keeps one.",
        "- Python: `pymbrl.bench.mcts_baseline`; tree code only = everything but the batch-1 model calls.",
    ]
    lines += ["", "What is timed (from root outputs in hand to root statistics read):", "", *timed]
    if bench.depths:
        lines += ["", f"Depth of pymbrl's trees (the warm-up search of each case, seed {WARMUP_SEED}, all {B} "
                  "roots, the same for any thread count; the root has depth 0). Mean leaf depth: the path a "
                  "simulation walks down and backs up, averaged over roots and simulations; pymbrl, LightZero "
                  "and Python walk each tree's own path, so their cost per simulation follows it. Deepest leaf "
                  "of the batch, averaged over simulations: mctx's selection and backup are `while_loop`s "
                  "vmapped over the batch, which run until the longest path is done, so this is the walk it "
                  "pays for (its cost grows faster in S than this depth, so not all of its growth is depth). "
                  "The peers' trees are not these trees (noise draws and tie-breaking differ) but have the "
                  "same priors and rules, hence a similar shape.", "", *depth_table(bench)]
    fewer = [f"{m} {pol} S={s} / {n} ({len(c.total)})" for (m, pol, s), d in bench.results.items()
             for n, c in d.items() if isinstance(c, Cell) and len(c.total) < a.repeats[s]]
    if fewer:
        lines += ["", "Cells with fewer timed searches (slow searches; count in brackets): " + ", ".join(fewer) + "."]
    noisy = [f"{m} {pol} S={s} / {n} ({c.spread():.0%})" for (m, pol, s), d in bench.results.items()
             for n, c in d.items() if isinstance(c, Cell) and c.spread() > 0.5]
    if noisy:
        lines += ["", "Noisy cells (max - min over the repeats above 50% of the median): " + ", ".join(noisy) + "."]
    if bench.checks:
        lines += ["", "Sanity (warm-up search of each case; the search value is the root's, averaged over the "
                  f"first {PYTHON_ROOTS} roots, and is not expected to agree across libraries: their "
                  "Q normalisations, noise draws and tie-breaking differ, and mctx averages the root's own "
                  "value estimate in): " + "; ".join(bench.checks) + "."]
    if bench.notes:
        lines += [""] + [f"- {n}" for n in bench.notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "fewer repeats", tuple(CLI_NAMES),
                          "default: all; pymbrl1 is pymbrl with num_threads=1")
    parser.add_argument("--models", default=",".join(MODELS),
                        help="comma-separated model variants, of " + ",".join(MODELS) + " (default: both)")
    parser.add_argument("--policies", default=",".join(POLICIES),
                        help="comma-separated searches, of " + ",".join(POLICIES) + " (default: all). A run of "
                             "a subset writes its own RESULTS.md section (mcts-<names>), so that the full run's "
                             "section keeps its numbers")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed searches per library and case (default 7 at S=50 and 5 at S=200, "
                             "3 and 2 with --quick)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.libs = [CLI_NAMES[n] for n in names(args.libs, tuple(CLI_NAMES), "libraries", parser)]
    args.models = names(args.models, tuple(MODELS), "models", parser)
    args.policies = names(args.policies, tuple(POLICIES), "policies", parser)
    default = {50: 3, 200: 2} if args.quick else {50: 7, 200: 5}
    repeats = {s: args.repeats or default[s] for s in SIMULATIONS}
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)

    section = SECTION if args.policies == list(POLICIES) else "-".join([SECTION, *args.policies])
    if str(PEERS_DIR) not in sys.path:
        sys.path.insert(0, str(PEERS_DIR))
    settings = Settings(libs=tuple(args.libs), models=tuple(args.models), policies=tuple(args.policies),
                        repeats=repeats)
    run_and_publish(Bench(settings), report, argv, output, section)


if __name__ == "__main__":
    main()
