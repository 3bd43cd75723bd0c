"""Benchmark pymbrl's replay buffers against cpprb, Stable-Baselines3 and TorchRL.

What is measured (adds, uniform, prioritized and sequence samples on 1M-row buffers, Atari frames
and their memory) and how each library is driven: ``pymbrl.bench.replay``, which also backs
``pymbrl bench replay``; this script runs it in full (a 10M-row sequence buffer; 1M with
``--quick``) and writes the report. Timings are medians over blocks of calls, the blocks of
different libraries interleaved so that a burst of load on the machine hits them all. Everything
runs with ``torch.set_num_threads(1)``.

It prints a markdown report and writes it into ``bench/RESULTS.md`` between the markers
``<!-- replay:begin -->`` and ``<!-- replay:end -->``, keeping the rest of that file.

Usage::

    make bench                          # or:
    python bench/bench_replay.py        # full run, about 1.5 minutes on a 2-core VM
    python bench/bench_replay.py --quick   # smoke test; writes no file unless --output is given
"""

from __future__ import annotations

import logging
import sys
import warnings

import torch

from _report import DEFAULT_OUTPUT, bench_parser, header, names, run_and_publish

from pymbrl.bench.replay import CASES, EPISODE_LEN, LIBS, NA, PEERS, QUICK, Bench, Settings, cell, fmt, label, ratio

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
logging.getLogger("torchrl").setLevel(logging.WARNING)

SECTION = "replay"


def report(bench: Bench, argv: list[str], load_before: str) -> str:
    a = bench.settings
    res = bench.results
    pym = bench.libs.get("pymbrl")
    lines = header("Replay buffers: pymbrl vs cpprb, Stable-Baselines3 and TorchRL", "bench_replay.py", argv,
                   load_before, machine_note="; `torch.set_num_threads(1)`", runtime=bench.runtime)
    for name, ad in bench.libs.items():
        lines.append(f"- {ad.versions() if ad.reason is None else name + ': ' + ad.reason}")
    lines += [
        f"- Data: obs 17 float32, action 6 float32, reward float32, terminated/truncated bool; an episode "
        f"ends every {EPISODE_LEN} steps. Times are medians over {a.blocks} blocks ({a.add1_blocks} for add 1) "
        f"of repeated calls, the blocks of the libraries interleaved; µs per call.",
        "",
        "| case | pymbrl | cpprb | SB3 | TorchRL | cpprb / pymbrl | SB3 / pymbrl | TorchRL / pymbrl "
        "| pymbrl target | met? |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    verdicts = []
    for case, (_, unit, target) in CASES.items():
        row_label = label(case, a)
        row = res[case]
        ours = cell(bench, row, "pymbrl")
        cells = [fmt(cell(bench, row, n), unit) for n in PEERS]
        ratios = [ratio(row.get(n), ours) for n in PEERS]
        if target is None:
            tcell, met = NA, ""
        else:
            tcell = f"<= {target:g} {unit}"
            if isinstance(ours, float):
                ok = ours <= target
                met = "**met**" if ok else "**not met**"
                shown = fmt(ours, unit) + ("" if unit == "GB" else f" {unit}")
                verdicts.append(f"{row_label}: {met} ({shown}; target {tcell})")
            else:
                met = "n/a"
        lines.append(f"| {row_label} | {fmt(ours, unit)} | " + " | ".join(cells) + " | " + " | ".join(ratios) +
                     f" | {tcell} | {met} |")
    lines += [
        "",
        "Ratios are peer / pymbrl: above 1 means pymbrl is faster (or, for memory, smaller).",
        "",
        "How each library is driven (documented public APIs only):",
        "",
        "- pymbrl: `ReplayBuffer.add(obs=..., action=..., reward=..., terminated=..., truncated=..., next_obs=...)`, "
        "`extend` with leading dim 256, `sample(256)` (a `Batch` of torch tensors, every value touched), "
        "`PrioritizedReplayBuffer.sample` + `update_priorities(batch['indices'], torch priorities)`, "
        "`SequenceReplayBuffer.sample(16, 64)`; next_obs is stored only at episode ends by design.",
        "- cpprb: `ReplayBuffer.add(**fields)` with a `next_obs` field (and `on_episode_end()` at episode ends), "
        "`add` with 256 rows, `sample(256)` (dict of numpy arrays), `PrioritizedReplayBuffer.sample(256, beta)` + "
        "`update_priorities(indexes, numpy priorities)`; Atari with `next_of=\"obs\"` (its de-duplication). "
        "No sequence sampler: " + NA + ".",
        "- SB3: `ReplayBuffer.add(obs, next_obs, action, reward, done, infos)` with "
        "`handle_timeout_termination=True`; the batch case is one `add` on a buffer with `n_envs=256`; "
        "`sample(256)` returns torch tensors; Atari with `optimize_memory_usage=True` (its de-duplication, "
        "which SB3 allows only without timeout handling). Buffers are filled past the timed adds by writing "
        "its public storage arrays (SB3 has no batch add for one env). No prioritized or sequence sampler: " + NA + ".",
        "- TorchRL: `ReplayBuffer(storage=LazyTensorStorage(capacity))`; each add builds a `TensorDict` from the "
        "numpy arrays and Python scalars (included in the time), batches are `extend(TensorDict(..., "
        "batch_size=[256]))`; `sample(256)` returns a TensorDict. PER with `PrioritizedSampler(capacity, alpha, "
        "beta)` and `update_priority(info['index'], priority)`. Atari: no next-observation de-duplication "
        "(obs and next_obs both stored). Sequences: `SliceSampler(num_slices=16, traj_key=\"episode\")`, "
        "`sample(1024)`.",
        f"- Memory is the growth of this process's resident set from just before constructing the buffer "
        f"to just after filling all {a.atari_capacity:,} rows (GB = 1e9 bytes); 100k frames of 84x84 bytes "
        f"are {a.atari_capacity * 84 * 84 / 1e9:.3f} GB.",
    ]
    for case, what in (("add1", "add 1"), ("add256", "add batch of 256")):
        if bench.steady.get(case):
            vals = ", ".join(f"{n} {v:,.1f}" for n, v in bench.steady[case].items())
            lines.append(f"- {what} into the same buffers once full (every page already resident; the "
                         f"table's numbers include the first touch of fresh pages), µs: {vals}.")
    if a.seq_big != 10_000_000:
        lines.append(f"- Smoke run: the large sequence buffer has {a.seq_big:,} rows instead of 10,000,000.")
    if verdicts:
        lines += ["", "Targets for pymbrl:", ""] + [f"- {v}" for v in verdicts]
    elif pym is not None:
        lines += ["", f"Targets for pymbrl: not measured ({pym.reason})."]
    if bench.checks:
        lines += ["", "Sanity: " + "; ".join(bench.checks) + "."]
    noisy = [f"{case} / {n} ({spread:.0%})" for case, d in bench.spread.items()
             for n, spread in d.items() if spread > 0.5]
    if noisy:
        lines += ["", "Noisy cells (max - min over the blocks above 50% of the median): " + ", ".join(noisy) + "."]
    notes = bench.notes + [n for ad in bench.libs.values() if ad.reason is None for n in ad.notes()]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "(~30 s) fewer calls, a 1M instead of 10M sequence buffer", tuple(LIBS))
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    settings = Settings(libs=tuple(names(args.libs, tuple(LIBS), "libraries", parser)), **(QUICK if args.quick else {}))
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)

    run_and_publish(Bench(settings), report, argv, output, SECTION)


if __name__ == "__main__":
    main()
