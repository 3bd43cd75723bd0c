"""Benchmark pymbrl's batched branched model rollouts (MBPO) against mbrl-lib's ModelEnv and a per-state loop.

What is measured (model transitions per second of whole rollouts from N = 100,000 start states at
horizons 1, 5 and 15, with the same 7-member Gaussian ensemble, policy, start states and Hopper
termination for every library), how each peer is driven and how a device run differs:
``pymbrl.bench.rollout``, which also backs ``pymbrl bench rollout``. This script runs it in full and
writes the report. mbrl-lib pins gymnasium 0.26 and hydra-core 1.0.3, which breaks on Python 3.11,
so ``make bench`` installs it without dependencies (with hydra-core 1.3.8 / omegaconf 2.3.0) into
``build/peers/mbrl``, next to gymnasium 1.x in the benchmark's venv.

Each horizon runs every library ``repeats`` times, the libraries interleaved (their order rotating)
so that a burst of load on the machine hits them all, after one warm-up rollout each; the tables
show medians. Afterwards, the peak resident memory each batched library adds during one rollout at
H = 1 and H = 15 is measured in a fresh child process per rollout (in this process, memory freed by
earlier rollouts would be reused unseen), 3 times each; on a device run, the device memory instead,
in this process (host memory is not measured there).

It prints a markdown report and writes it into ``bench/RESULTS.md`` between the markers
``<!-- rollout:begin -->`` and ``<!-- rollout:end -->`` (a device run: ``<!-- rollout-cuda:begin -->``
and ``<!-- rollout-cuda:end -->``, so that both sections coexist), keeping the rest of that file.

Usage::

    make bench                               # or, with mbrl-lib installed (see the Makefile):
    python bench/bench_rollout.py            # full run, about 4 minutes on a 2-core VM
    python bench/bench_rollout.py --quick    # smoke test, N = 10,000; writes no file unless --output is given
    python bench/bench_rollout.py --quick --libs pymbrl,mbrl
    python bench/bench_rollout.py --device cuda   # on a GPU; writes the section rollout-cuda
    python bench/bench_rollout.py --device cuda --quick
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

from _report import DEFAULT_OUTPUT, bench_parser, header, names, parse_device, run_and_publish, section_name

from pymbrl.bench.rollout import (ACT_DIM, ELITES, ENSEMBLE, HIDDEN, HORIZONS, LAYERS, LIBS, LOOP_STATES,
                                  MEMORY_HORIZONS, MEMORY_RUNS, MBRL, N, NA, OBS_DIM, POLICY_HIDDEN, PYMBRL, PYTHON,
                                  QUICK_N, Bench, Cell, Settings, fmt, rate_of, ratio)

torch.set_num_threads(1)

SECTION = "rollout"
"""The section of RESULTS.md a CPU run rewrites; a device run rewrites ``rollout-<device type>`` (see section_name)."""
CLI_NAMES = dict(zip(("pymbrl", "python", "mbrl"), LIBS))
"""``--libs`` name -> library (column) name."""
MBRL_DIR = Path(__file__).resolve().parent.parent / "build" / "peers" / "mbrl"
"""Where ``make bench`` installs mbrl-lib (``pip install --no-deps --target``). Appended to the path,
not prepended: the folder also holds mbrl-lib's helpers (hydra, omegaconf, yaml), and anything the
venv has itself must win."""


def rates_table(bench: Bench) -> list[str]:
    names = list(bench.libs)
    peers = [n for n in names if n != PYMBRL] if PYMBRL in names else []
    lines = ["| H | " + " | ".join(names + [f"{PYMBRL} / {n}" for n in peers]) + " |",
             "|---:|" + "---:|" * (len(names) + len(peers))]
    for horizon in HORIZONS:
        rates = {n: rate_of(bench, horizon, n) for n in names}
        cells = [(fmt(v) + ("*" if bench.libs[n].subset else "")) if isinstance(v, float) else v
                 for n, v in rates.items()]
        cells += [ratio(rates[PYMBRL], rates[n]) for n in peers]
        lines.append(f"| {horizon} | " + " | ".join(cells) + " |")
    return lines


def seconds_table(bench: Bench) -> list[str]:
    names = list(bench.ready())
    lines = ["| H | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for horizon in HORIZONS:
        cells = []
        for n in names:
            cell = bench.results.get(horizon, {}).get(n)
            cells.append(f"{statistics.median(cell.seconds):.3f} ({cell.warmup.rollouts:,} starts)"
                         if isinstance(cell, Cell) else NA)
        lines.append(f"| {horizon} | " + " | ".join(cells) + " |")
    return lines


def targets(bench: Bench) -> list[str]:
    """The issue's targets: pymbrl at least 100x the Python loop and 2x mbrl-lib, at every horizon."""
    lines = []
    for peer, factor in ((PYTHON, 100), (MBRL, 2)):
        if PYMBRL not in bench.libs or peer not in bench.libs:
            continue
        got = {h: (rate_of(bench, h, PYMBRL), rate_of(bench, h, peer)) for h in HORIZONS}
        measured = {h: a / b for h, (a, b) in got.items() if isinstance(a, float) and isinstance(b, float)}
        if not measured:
            verdict = "**not measured**"
        else:
            met = len(measured) == len(HORIZONS) and all(r >= factor for r in measured.values())
            verdict = "**met**" if met else "**not met**"
        detail = ", ".join(f"H={h}: {ratio(*got[h])}" for h in HORIZONS)
        lines.append(f"- pymbrl at least {factor}x {peer} at every horizon: {verdict} ({detail}).")
    return lines


def sanity_table(bench: Bench) -> list[str]:
    lines = ["| H | library | start states | valid transitions / (starts x H) | rollouts ended | reward std |",
             "|---:|---|---:|---:|---:|---:|"]
    for horizon in HORIZONS:
        for name, cell in bench.results.get(horizon, {}).items():
            if isinstance(cell, Cell):
                s = cell.warmup
                lines.append(f"| {horizon} | {name} | {s.rollouts:,} | {s.kept / (s.rollouts * horizon):.4f} | "
                             f"{s.ended / s.rollouts:.2%} | {s.reward_std:.4f} |")
    return lines


def mb(v: float) -> str:
    return f"{v:.1f}" if abs(v) < 10 else f"{v:,.0f}"


def memory_table(bench: Bench) -> list[str]:
    names = sorted({n for n, _ in bench.memory}, key=list(bench.libs).index)
    lines = ["| H | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for horizon in MEMORY_HORIZONS:
        cells = []
        for n in names:
            runs = bench.memory.get((n, horizon), NA)
            cells.append(f"{mb(statistics.median(runs))} ({mb(min(runs))}-{mb(max(runs))})"
                         if isinstance(runs, list) else runs)
        lines.append(f"| {horizon} | " + " | ".join(cells) + " |")
    return lines


def device_name(device: torch.device) -> str:
    """The device in words, e.g. "CPU" or "NVIDIA H100 80GB HBM3 (`cuda:0`, CUDA 12.8)"."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (`{device}`, CUDA {torch.version.cuda})"
    return "CPU"


def report(bench: Bench, argv: list[str], load_before: str) -> str:
    a = bench.settings
    on_device = bench.device.type != "cpu"
    reps = ", ".join(f"{a.repeats[h]} at H={h}" for h in HORIZONS)
    title = "Branched model rollouts (MBPO): pymbrl vs mbrl-lib's ModelEnv and a per-state loop"
    if on_device:
        title += f", on {torch.cuda.get_device_name(bench.device)}"
        note = (f"; device: {device_name(bench.device)} for pymbrl and mbrl-lib (the Python loop on the CPU); "
                "host `torch.set_num_threads(1)`")
    else:
        note = "; CPU, `torch.set_num_threads(1)`"
    lines = header(title, "bench_rollout.py", argv, load_before, machine_note=note, runtime=bench.runtime)
    for name, ad in bench.libs.items():
        lines.append(f"- {ad.versions() if ad.reason is None else name + ': ' + ad.reason}")
    lines += [
        f"- Setup: N={a.n:,} start states, horizons {', '.join(map(str, HORIZONS))}; a {ENSEMBLE}-member Gaussian "
        f"ensemble ({ELITES} elites, {LAYERS} hidden layers of {HIDDEN}, SiLU), obs {OBS_DIM} / action {ACT_DIM} "
        f"(Hopper), the Hopper termination rule, one tanh-MLP policy {OBS_DIM}-{POLICY_HIDDEN}-{POLICY_HIDDEN}-"
        f"{ACT_DIM}. Every library runs the same weights (pymbrl's `GaussianEnsemble`, copied; checked below) "
        f"from the same start states. Medians over {reps} whole rollouts per library, the libraries "
        "interleaved, after one warm-up rollout each.",
        "",
        "Model transitions per second (model steps computed / seconds per whole rollout; higher is better):",
        "",
        *rates_table(bench),
    ]
    footnotes = ["Ratios: above 1 means pymbrl is faster."] if PYMBRL in bench.libs else []
    if PYTHON in bench.libs:
        footnotes.append(f"\\* Python loop: measured on the first {LOOP_STATES} start states (it handles one at a "
                         "time, so its rate does not depend on N); it computes no step after a rollout ends, the "
                         "batched libraries compute every step of every row and mask the ended ones.")
        if on_device:
            footnotes.append("It runs on the CPU in this device run too: its batch-1 calls on a GPU would measure "
                             "kernel-launch latency, not a loop anyone would run there.")
    if on_device:
        footnotes.append("Device timings: `torch.cuda.synchronize()` before reading the clock at the start and the "
                         "end of every rollout.")
    if footnotes:
        lines += ["", " ".join(footnotes)]
    tg = targets(bench)
    if tg:
        lines += ["", "Targets:", "", *tg]
    lines += ["", "Seconds per whole rollout (median):", "", *seconds_table(bench)]
    if bench.memory and on_device:
        lines += ["", f"Peak device memory added by one rollout, MB, median (min-max) of {MEMORY_RUNS} (in this "
                  "process, after the timings: `torch.cuda.max_memory_allocated()` during the rollout, after "
                  "`torch.cuda.reset_peak_memory_stats()`, minus `torch.cuda.memory_allocated()` before it; "
                  "the allocator counts live tensors' bytes, reused cached blocks included; host memory, where "
                  "mbrl-lib keeps its numpy arrays, is not measured):", "",
                  *memory_table(bench)]
    elif bench.memory:
        lines += ["", f"Peak resident memory added by one rollout, MB, median (min-max) of {MEMORY_RUNS} (a fresh "
                  "child process per rollout; the kernel's high-water mark after setup minus the resident size "
                  "before the rollout):", "",
                  *memory_table(bench)]
    lines += [
        "",
        "What is timed (from start states and policy in hand to the valid transitions picked out):",
        "",
        "- pymbrl: `branched_rollout(model, policy, start_obs, H, termination_fn=termination_fn(\"Hopper-v5\"), "
        "generator=...)` on torch tensors; it returns the valid transitions (a `RolloutBatch`).",
        "- mbrl-lib: `model_env.reset(start_obs, return_as_np=True)`, then per step the agent on the numpy "
        "batch (as `SACAgent.act`: to torch, actor, back to numpy), `model_env.step(action, model_state, "
        "sample=True)` and the rows of rollouts not yet ended picked out by numpy masks (what "
        "`rollout_model_and_populate_sac_buffer` passes to `sac_buffer.add_batch`). `GaussianMLP` with "
        "`propagation_method=\"random_model\"` deals the rows to the elites by a random permutation, an equal "
        "share each, and runs each elite on its share only; pymbrl's `GaussianEnsemble.sample` does the same."
        + (" On the device, every step copies the observations and actions from the host to the device and the "
           "predictions, rewards and done flags back (what mbrl-lib's MBPO does; its real cost)." if on_device else ""),
        "- Python loop: `pymbrl.bench.rollout_baseline`: per start state and step, the policy on a batch of 1, a "
        "random elite (`random.choice`) on a batch of 1, its Gaussian sampled, the termination rule, a "
        "`Transition` appended; a rollout stops when it ends.",
    ]
    lines += ["", "Sanity (the warm-up rollout of each horizon; the libraries draw different random numbers, so "
              "only the statistics can agree; the Python loop's are over its subset):", "", *sanity_table(bench)]
    if bench.checks:
        lines += ["", "Same weights: " + "; ".join(bench.checks) + "."]
    noisy = [f"H={h} / {n} ({c.spread():.0%})" for h, d in bench.results.items() for n, c in d.items()
             if isinstance(c, Cell) and c.spread() > 0.5]
    if noisy:
        lines += ["", "Noisy cells (max - min over the repeats above 50% of the median): " + ", ".join(noisy) + "."]
    if bench.notes:
        lines += [""] + [f"- {n}" for n in bench.notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, f"N = {QUICK_N:,}, fewer repeats", tuple(CLI_NAMES))
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed rollouts per library and horizon (default 7, 5, 5 at H = 1, 5, 15; 3 with --quick)")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the memory measurement (child processes; device memory in this process on a GPU)")
    parser.add_argument("--device", default="cpu",
                        help="where pymbrl and mbrl-lib run: cpu (default) or cuda[:N]; the Python loop stays on the "
                             "CPU; a device run writes its own RESULTS.md section (rollout-cuda)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    device = parse_device(args.device, parser)
    libs = [CLI_NAMES[n] for n in names(args.libs, tuple(CLI_NAMES), "libraries", parser)]
    default = dict.fromkeys(HORIZONS, 3) if args.quick else {1: 7, 5: 5, 15: 5}
    repeats = {h: args.repeats or default[h] for h in HORIZONS}
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)

    if str(MBRL_DIR) not in sys.path:
        sys.path.append(str(MBRL_DIR))
    settings = Settings(libs=tuple(libs), n=QUICK_N if args.quick else N, repeats=repeats, device=device,
                        memory=not args.no_memory)
    run_and_publish(Bench(settings), report, argv, output, section_name(SECTION, device))


if __name__ == "__main__":
    main()
