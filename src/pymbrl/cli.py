"""The ``pymbrl`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _dyna(args: argparse.Namespace) -> int:
    from pymbrl.dyna.experiments import figure_8_2, steps_table

    curves, seconds = figure_8_2(args.out, seeds=args.seeds, episodes=args.episodes, planning_steps=args.planning,
                                 num_threads=args.threads, progress=True)
    shown = [e for e in (1, 2, 3, 4, 5, 10, 15, 20, 25, 30, 40, 50) if e <= args.episodes]
    print(f"Dyna-Q on the Dyna maze (Sutton & Barto Figure 8.2): mean steps per episode over {args.seeds} seeds")
    print(steps_table(curves, shown))
    print(f"shortest path: 14 steps; {len(curves)} settings x {args.seeds} seeds x {args.episodes} episodes "
          f"in {seconds * 1000:.0f} ms")
    print(f"plot: {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pymbrl", description="pymbrl experiments")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="intra-op threads for any torch work (default 1: faster on small, busy machines)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("dyna", help="Dyna-Q on the Dyna maze: Sutton & Barto's Figure 8.2")
    p.add_argument("--seeds", type=int, default=30, help="independent runs per setting (default 30)")
    p.add_argument("--episodes", type=int, default=50, help="episodes per run (default 50)")
    p.add_argument("--planning", type=int, nargs="+", default=[0, 5, 50], help="planning steps (default 0 5 50)")
    p.add_argument("--threads", type=int, default=None, help="C++ worker threads (default: all hardware threads)")
    p.add_argument("--out", default="dyna_maze.png", help="where to write the PNG plot")
    p.set_defaults(run=_dyna)
    args = parser.parse_args(argv)
    # Read by torch when (and if) it is first imported.
    os.environ.setdefault("OMP_NUM_THREADS", str(args.torch_threads))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(args.torch_threads)
    try:
        return args.run(args)
    except (ValueError, TypeError) as error:
        parser.error(str(error))  # exits with status 2


if __name__ == "__main__":
    sys.exit(main())
