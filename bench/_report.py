"""Helpers shared by the benchmark scripts: machine description, load, and ``RESULTS.md`` sections.

Each benchmark owns one section of ``bench/RESULTS.md`` between ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->`` and rewrites only that section, keeping the rest of the file.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pymbrl.bench.timing import (  # noqa: F401  (re-exported: the scripts import them from here)
    Run,
    clock,
    load,
    machine,
    progress,
    rotated,
    short,
    spread,
    torch_device,
    version,
)

if TYPE_CHECKING:
    import torch

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "RESULTS.md"
SHEEPRL_DIR = Path(__file__).resolve().parent.parent / "build" / "peers" / "sheeprl"
"""Where ``make bench`` installs sheeprl (and with it OpenCV) without its dependencies."""


def add_sheeprl_path() -> None:
    """Append ``SHEEPRL_DIR`` to ``sys.path`` (once) when it exists."""
    if SHEEPRL_DIR.is_dir() and str(SHEEPRL_DIR) not in sys.path:
        sys.path.append(str(SHEEPRL_DIR))


def markers(name: str) -> tuple[str, str]:
    """The begin and end markers of section ``name``."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def write_section(path: Path, section: str, name: str) -> None:
    """Put ``section`` between the markers of section ``name`` in ``path``, replacing any previous one."""
    begin, end = markers(name)
    block = f"{begin}\n{section}\n{end}"
    if path.exists():
        text = path.read_text()
    else:
        text = (f"# pymbrl benchmarks\n\nCreated {datetime.date.today().isoformat()} on {machine()}. "
                f"Each section is rewritten by the script named in it.\n")
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def run_and_publish(bench, report, argv: list[str], output: Path | None, name: str) -> None:
    """Run ``bench`` (an object with ``run()``), noting the load before it, then print its report
    (``report(bench, argv, load_before)``) and write it into section ``name`` of ``output``."""
    load_before = load()
    bench.run()
    publish(report(bench, argv, load_before), output, name)


def publish(section: str, output: Path | None, name: str) -> None:
    """Print the section, and write it into ``output`` unless that is None (a --quick run)."""
    print(section)
    if output is not None:
        write_section(output, section, name)
        print(f"\nwrote {output}", file=sys.stderr)


def header(title: str, script: str, argv: list[str], load_before: str, *, machine_note: str = "",
           runtime: float | None = None) -> list[str]:
    """The lines every report opens with: title, date, machine, the exact command, load, versions."""
    import numpy as np
    import torch

    command = " ".join([f"python bench/{script}", *argv])
    return [
        f"## {title}",
        "",
        f"- Date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- Machine: {machine()}{machine_note}",
        f"- Command: `{command}`" + ("" if argv else " (what `make bench` runs)") +
        ("" if runtime is None else f"; total runtime {runtime:.0f} s"),
        f"- 1-minute load average before / after: {load_before} / {load()} "
        f"(other work on the machine inflates the timings)",
        f"- Python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}",
    ]


def names(text: str, choices, what: str, parser) -> list[str]:
    """The comma-separated ``text`` (any case) as a subset of ``choices``, in their order; an
    unknown name ends the program with the parser's usage error."""
    wanted = {n.strip().lower() for n in text.split(",")}
    unknown = wanted - {c.lower() for c in choices}
    if unknown:
        parser.error(f"unknown {what} {sorted(unknown)}; choose from {', '.join(choices)}")
    return [c for c in choices if c.lower() in wanted]


def ratio(a: float, b: float) -> str:
    """a / b as a speed-up: two decimals below 10x, one below 100x, none above."""
    r = a / b
    return f"{r:.2f}x" if r < 10 else f"{r:,.1f}x" if r < 100 else f"{r:,.0f}x"


def rate_tables(rates: dict[tuple[str, int], float], methods: dict[str, str], sizes: list[int], ours: str,
                against: tuple[str, ...], unit: str, ours_label: str = "pymbrl") -> list[str]:
    """Markdown lines of two tables over ``sizes``: each method's rate ("{unit} per second", from
    ``rates[(method, n)]``), then ``ours`` over each of ``against`` as ratios; "—" where a cell did not run."""
    na = "—"
    columns = " | ".join(f"N={n:,}" for n in sizes)
    lines = [f"{unit} per second (N games x steps / seconds; higher is better):", "",
             f"| method | {columns} |", "|---|" + "---:|" * len(sizes)]
    for name, label in methods.items():
        lines.append(f"| {label} | " + " | ".join(f"{rates[(name, n)]:,.0f}" if (name, n) in rates else na
                                                 for n in sizes) + " |")
    lines += ["", f"{ours_label} over each method:", "", f"| against | {columns} |", "|---|" + "---:|" * len(sizes)]
    for name in against:
        lines.append(f"| {methods[name]} | " + " | ".join(
            ratio(rates[(ours, n)], rates[(name, n)]) if (name, n) in rates and (ours, n) in rates else na
            for n in sizes) + " |")
    return lines


def parse_device(text: str, parser: argparse.ArgumentParser) -> torch.device:
    """``--device`` as a torch.device (:func:`pymbrl.bench.timing.torch_device`); ends the program with the
    parser's usage error, before any work, when it is not cpu or cuda[:N] or names a device this machine
    does not have."""
    try:
        return torch_device(text)
    except ValueError as error:
        parser.error(f"--{error}")


def section_name(section: str, device: torch.device) -> str:
    """The RESULTS.md section a run on torch ``device`` rewrites: ``section`` on the CPU,
    ``section-<device type>`` (e.g. ``rollout-cuda``) elsewhere, so that both coexist."""
    return section if device.type == "cpu" else f"{section}-{device.type}"


@dataclass
class Cell:
    """One (method, N) of a rate benchmark: seconds to build it (where timed) and one rate per repeat."""

    build: float = 0.0
    rates: list[float] = field(default_factory=list)

    def rate(self) -> float:
        return statistics.median(self.rates)


class Stepper:
    """N games behind ``step(actions [N])``."""

    def step(self, actions) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def time_rate(stepper: Stepper, n: int, pool, warmup: int, seconds: float) -> float:
    """N x steps / seconds of ``stepper`` stepping for about ``seconds`` (at least 2 steps) after ``warmup``
    untimed steps, the actions cycling through ``pool`` (rows [N])."""
    for t in range(warmup):
        stepper.step(pool[t % len(pool)])
    steps = 0
    t0 = time.perf_counter()
    while True:
        stepper.step(pool[steps % len(pool)])
        steps += 1
        elapsed = time.perf_counter() - t0
        if steps >= 2 and elapsed >= seconds:
            return n * steps / elapsed


def add_rate_args(parser: argparse.ArgumentParser, seconds: float, quick_seconds: float, sizes_help: str) -> None:
    """``--repeats``, ``--seconds`` and ``--sizes`` of a rate benchmark (``sizes_help``: what --sizes defaults to)."""
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per cell (default 5, 1 with --quick)")
    parser.add_argument("--seconds", type=float, default=None,
                        help=f"seconds each timed run steps for (default {seconds}, {quick_seconds} with --quick)")
    parser.add_argument("--sizes", default=None, help=f"comma-separated numbers of games ({sizes_help})")


def resolve_rate_args(parser: argparse.ArgumentParser, args: argparse.Namespace, seconds: float,
                      quick_seconds: float, sizes: tuple[int, ...], quick_sizes: tuple[int, ...]) -> None:
    """Fill in the defaults of ``add_rate_args``' options (the quick ones with ``--quick``), in place; bad values
    end the program with the parser's usage error."""
    args.repeats = args.repeats or (1 if args.quick else 5)
    args.seconds = args.seconds or (quick_seconds if args.quick else seconds)
    try:
        args.sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else (
            quick_sizes if args.quick else sizes)
    except ValueError:
        parser.error(f"--sizes: expected comma-separated integers, got {args.sizes!r}")
    if args.repeats < 1 or args.seconds <= 0 or min(args.sizes) < 1:
        parser.error("--repeats and --sizes must be >= 1 and --seconds > 0")


def bench_parser(doc: str, quick: str, libs: tuple[str, ...] | None = None,
                 libs_default: str = "default: all") -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--quick`` (a smoke test that writes no file unless
    ``--output``; ``quick`` says what else it cuts), ``--output``, and, with ``libs``, ``--libs``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"smoke test: {quick}, no file written unless --output")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"markdown file to update (default {DEFAULT_OUTPUT.name} next to this script)")
    if libs is not None:
        parser.add_argument("--libs", default=",".join(libs),
                            help=f"comma-separated subset of {','.join(libs)} (any case; {libs_default})")
    return parser
