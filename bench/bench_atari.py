"""Benchmark Atari agent steps per second: pymbrl's AtariVectorEnv vs gymnasium's own preprocessing pipeline.

Both pipelines step N Breakout games (``ALE/Breakout-v5``, ale-py's emulator) with the DQN preprocessing of
Mnih et al. (2015): up to 30 random no-ops at the start of an episode, each action repeated for 4 emulated
frames, the max of the last two, grayscale, resized to 84x84 by area, a stack of the last 4 frames, no sticky
actions; finished games start their next episode in the same step. Every method gets the same uniformly random
actions (a pool of 256 action rows [N] drawn before timing from ``numpy.random.default_rng(0)``, cycled):

- pymbrl: ``pymbrl.envs.atari.AtariVectorEnv("ALE/Breakout-v5", N, seed=0)``, one object for the N games;
- SyncVectorEnv: what a gymnasium user writes, ``gym.vector.SyncVectorEnv`` (``autoreset_mode=SAME_STEP``)
  over N ``FrameStackObservation(AtariPreprocessing(gym.make("ALE/Breakout-v5", frameskip=1,
  repeat_action_probability=0.0), noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True), 4)``,
  ``reset(seed=0)``;
- AsyncVectorEnv: the same N envs in ``gym.vector.AsyncVectorEnv`` (one worker process per game, the default
  start method), at N = 16 only;
- bare ale-py (informational, N = 1 only): one ``ale_py.ALEInterface`` in a Python loop, 4 ``act`` calls and
  2 grayscale screens per agent step, ``reset_game`` at a game over, no max, resize, stack or info: what the
  emulator alone costs, which bounds both pipelines (its cost per game does not depend on N).

``AtariPreprocessing`` resizes with OpenCV (``cv2``): when the venv has none, the benchmark takes the one
``make bench`` installs into ``build/peers/sheeprl`` (appended to ``sys.path``, as ``bench/dreamer_sheeprl.py``
does); without either, the gymnasium rows are not run and the report says why.

Every env is built and reset once, untimed (the seconds it took are reported), and stepped a few untimed steps.
Each (method, N) cell then steps for about ``--seconds`` (at least 2 steps) after 2 more untimed steps; a
repeat runs every cell once, the methods in a rotating order; the tables show the median rate over the
repeats (agent steps / s = N x vector steps / seconds). Everything runs with ``torch.set_num_threads(1)``.

It prints a markdown report and writes it into ``bench/RESULTS.md`` between ``<!-- atari:begin -->`` and
``<!-- atari:end -->``, keeping the rest of the file. Without ale-py (``pip install 'pymbrl[atari]'``) nothing
can run: it says so on stderr, leaves ``RESULTS.md`` as it was and exits 0.

Usage::

    make bench                                # or, with pymbrl and ale-py importable:
    python bench/bench_atari.py               # full run, about 2 minutes on a 2-core VM
    python bench/bench_atari.py --quick       # smoke test; writes no file unless --output
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import (  # noqa: E402
    DEFAULT_OUTPUT,
    Cell,
    Run,
    Stepper,
    add_rate_args,
    add_sheeprl_path,
    bench_parser,
    header,
    rate_tables,
    resolve_rate_args,
    rotated,
    run_and_publish,
    short,
    spread,
    time_rate,
    version,
)

torch.set_num_threads(1)

SECTION = "atari"
ENV_ID = "ALE/Breakout-v5"
SIZES = (1, 16, 64)
QUICK_SIZES = (1, 16)
SECONDS, QUICK_SECONDS = 1.5, 0.3   # each timed run steps for about this long
ASYNC_N = 16
ALE_N = 1
ACTION_ROWS = 256
SETTLE_STEPS = 5     # untimed, right after the env is built and reset
WARMUP_STEPS = 2     # untimed, before each timed run

METHODS = {
    "pymbrl": "pymbrl `AtariVectorEnv`",
    "sync": "gymnasium `SyncVectorEnv` x N wrapped envs",
    "async": "gymnasium `AsyncVectorEnv` x N wrapped envs",
    "ale": "bare ale-py loop (emulator + screens only)",
}
PYMBRL, SYNC, ASYNC, ALE = METHODS


def import_cv2() -> tuple[str | None, str]:
    """(None, where cv2 came from), or (why it cannot be imported, "")."""
    try:
        import cv2
        return None, f"opencv {cv2.__version__} (the venv's)"
    except ImportError:
        pass
    add_sheeprl_path()
    try:
        import cv2
        return None, f"opencv {cv2.__version__} (from build/peers/sheeprl, which `make bench` fills)"
    except ImportError as e:
        return (f"`AtariPreprocessing` needs OpenCV (`cv2`), which neither the venv nor build/peers/sheeprl has "
                f"({short(e, 80)})"), ""


@dataclass
class Method:
    name: str
    sizes: tuple[int, ...]
    reason: str | None = None   # why it cannot run, None when it can


class Pymbrl(Stepper):
    def __init__(self, n: int):
        from pymbrl.envs.atari import AtariVectorEnv

        self.env = AtariVectorEnv(ENV_ID, n, seed=0)
        self.env.reset()

    def step(self, actions):
        self.env.step(actions)

    def close(self):
        self.env.close()


def make_wrapped() -> gym.Env:
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    env = gym.make(ENV_ID, frameskip=1, repeat_action_probability=0.0)
    env = AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True)
    return FrameStackObservation(env, 4)


class Gymnasium(Stepper):
    def __init__(self, n: int, asynchronous: bool):
        cls = gym.vector.AsyncVectorEnv if asynchronous else gym.vector.SyncVectorEnv
        self.env = cls([make_wrapped for _ in range(n)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        self.env.reset(seed=0)

    def step(self, actions):
        self.env.step(actions)

    def close(self):
        self.env.close()


class BareAle(Stepper):
    def __init__(self, n: int):
        import ale_py

        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        rom = str(ale_py.roms.get_rom_path("breakout"))
        self.ales = []
        for i in range(n):
            ale = ale_py.ALEInterface()
            ale.setInt("random_seed", i)
            ale.setFloat("repeat_action_probability", 0.0)
            ale.loadROM(rom)
            ale.reset_game()
            self.ales.append(ale)
        self.codes = self.ales[0].getMinimalActionSet()
        self.screens = np.zeros((n, 2, 210, 160), np.uint8)

    def step(self, actions):
        codes = self.codes
        for i, a in enumerate(actions.tolist()):
            ale, code = self.ales[i], codes[a]
            ale.act(code)
            ale.act(code)
            ale.act(code)
            ale.getScreenGrayscale(self.screens[i, 0])
            ale.act(code)
            ale.getScreenGrayscale(self.screens[i, 1])
            if ale.game_over():
                ale.reset_game()


def make(name: str, n: int) -> Stepper:
    return {PYMBRL: lambda: Pymbrl(n), SYNC: lambda: Gymnasium(n, False), ASYNC: lambda: Gymnasium(n, True),
            ALE: lambda: BareAle(n)}[name]()


class Bench(Run):
    def __init__(self, args, methods: dict[str, Method], cv2_note: str):
        self.args = args
        self.libs = methods
        self.cv2_note = cv2_note
        self.cells: dict[tuple[str, int], Cell] = {}
        self.checks: list[str] = []
        self.frame_us: dict[tuple[str, int], float] = {}
        self.runtime = 0.0

    def check(self, steppers: dict[tuple[str, int], Stepper]) -> None:
        """Both pipelines play the same game with the same actions and frame sizes."""
        pym = next((s for (m, _), s in steppers.items() if m == PYMBRL), None)
        gy = next((s for (m, _), s in steppers.items() if m == SYNC), None)
        if pym is None or gy is None:
            return
        meanings = pym.env.action_meanings
        peer = tuple(gy.env.envs[0].unwrapped.get_action_meanings())
        if meanings != peer:
            raise AssertionError(f"the pipelines' actions differ: pymbrl {meanings}, gymnasium {peer}")
        a, b = pym.env.single_observation_space, gy.env.single_observation_space
        if (a.dtype, sorted(a.shape)) != (b.dtype, sorted(b.shape)):
            raise AssertionError(f"the pipelines' observations differ: pymbrl {a}, gymnasium {b}")
        self.checks.append(f"both pipelines play Breakout with the actions {', '.join(meanings)} and observe "
                           f"uint8 frames, pymbrl [84, 84, 4] (frames last), gymnasium {list(b.shape)} "
                           f"(frames first)")

    def time_frames(self, steppers: dict[tuple[str, int], Stepper]) -> None:
        """The frame processing alone, on the same raw frames (each pymbrl env's last two screens per game):
        pymbrl's ``_observe`` (max, then torch's area resize of the N games at once) against what
        ``AtariPreprocessing`` does per game (``np.maximum`` into a buffer, then ``cv2.resize`` with
        ``INTER_AREA``), in microseconds per vector step (median of 5 runs)."""
        if self.libs[SYNC].reason is not None:
            return
        import cv2

        every = slice(None)
        for (name, n), stepper in steppers.items():
            if name != PYMBRL:
                continue
            env = stepper.env
            raw = env._raw
            buffers = np.empty((n, *raw.shape[2:]), np.uint8)

            def peer(raw=raw, buffers=buffers):
                for i in range(len(raw)):
                    np.maximum(raw[i, 0], raw[i, 1], out=buffers[i])
                    cv2.resize(buffers[i], (84, 84), interpolation=cv2.INTER_AREA)

            for label, fn in (("pymbrl", lambda env=env: env._observe(every)), ("cv2", peer)):
                fn()
                t = time.perf_counter()
                fn()
                number = max(3, int(0.1 / max(time.perf_counter() - t, 1e-6)))
                runs = []
                for _ in range(5):
                    t = time.perf_counter()
                    for _ in range(number):
                        fn()
                    runs.append((time.perf_counter() - t) / number * 1e6)
                self.frame_us[(label, n)] = statistics.median(runs)

    def run(self) -> None:
        self.t0 = time.perf_counter()
        a = self.args
        rng = np.random.default_rng(0)
        pools = {n: rng.integers(0, 4, (ACTION_ROWS, n)) for n in a.sizes}
        runnable = [m for m in self.ready().values() if m.sizes]
        steppers: dict[tuple[str, int], Stepper] = {}
        try:
            for m in runnable:
                for n in m.sizes:
                    t = time.perf_counter()
                    stepper = make(m.name, n)
                    for s in range(SETTLE_STEPS):
                        stepper.step(pools[n][s])
                    steppers[(m.name, n)] = stepper
                    self.cells[(m.name, n)] = Cell(build=time.perf_counter() - t)
                    self.log(f"built {m.name} N={n} in {self.cells[(m.name, n)].build:.1f} s")
            self.check(steppers)
            order = [m.name for m in runnable]
            for r in range(a.repeats):
                for name in rotated(order, r):
                    for n in self.libs[name].sizes:
                        self.cells[(name, n)].rates.append(
                            time_rate(steppers[(name, n)], n, pools[n], WARMUP_STEPS, a.seconds))
                self.log(f"repeat {r + 1}/{a.repeats}: " + ", ".join(
                    f"{name} N={n} {c.rates[-1]:,.0f}/s" for (name, n), c in self.cells.items()))
            self.time_frames(steppers)
        finally:
            for stepper in steppers.values():
                stepper.close()
        self.runtime = time.perf_counter() - self.t0


def fmt(v: float) -> str:
    return f"{v:,.0f}"


def report(bench: Bench, argv: list[str], load_before: str) -> str:
    import pymbrl

    a, cells, methods = bench.args, bench.cells, bench.libs
    sizes = a.sizes
    lines = header("Atari: agent steps per second, pymbrl's AtariVectorEnv vs gymnasium's preprocessing wrappers",
                   "bench_atari.py", argv, load_before, machine_note="; `torch.set_num_threads(1)`",
                   runtime=bench.runtime)
    peer = f", {bench.cv2_note}" if bench.cv2_note else ""
    lines += [
        f"- pymbrl {pymbrl.__version__}: `pymbrl.envs.atari.AtariVectorEnv`; ale-py {version('ale-py')}, "
        f"gymnasium {gym.__version__}{peer}",
        f"- Setup: `{ENV_ID}` with the DQN preprocessing in both pipelines (no-op starts up to 30, frame skip 4 "
        "with the max of the last two frames, gray 84x84 by area, a stack of 4, no sticky actions), same-step "
        "autoreset, uniformly random actions (256 pre-drawn rows from `default_rng(0)`, cycled, the same for "
        "every method). gymnasium: `SyncVectorEnv` / `AsyncVectorEnv` over N `FrameStackObservation("
        "AtariPreprocessing(gym.make(\"ALE/Breakout-v5\", frameskip=1, repeat_action_probability=0.0), "
        "noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True), 4)`.",
        f"- Medians over {a.repeats} repeat{'s' if a.repeats > 1 else ''} of ~{a.seconds:g} s per cell, the "
        f"methods in a rotating order; every env built and reset once, untimed, then {SETTLE_STEPS} untimed "
        f"steps, and {WARMUP_STEPS} more before each timed run.",
    ]
    skipped = [f"{METHODS[m.name]}: {m.reason}" for m in methods.values() if m.reason]
    if skipped:
        lines += ["- Not run: " + "; ".join(skipped) + "."]
    rates = {key: cell.rate() for key, cell in cells.items()}
    lines += ["", *rate_tables(rates, METHODS, sizes, PYMBRL, (SYNC, ASYNC), "Agent steps")]
    if (ALE, ALE_N) in cells:
        bare = cells[(ALE, ALE_N)].rate()
        share = [f"N={n:,}: {cells[(PYMBRL, n)].rate() / bare:.0%}" for n in sizes if (PYMBRL, n) in cells]
        peer_share = [f"N={n:,}: {cells[(SYNC, n)].rate() / bare:.0%}" for n in sizes if (SYNC, n) in cells]
        lines += ["", f"The bare emulator loop runs {fmt(bare)} agent steps/s per game ({1e6 / bare:,.0f} µs per "
                  "step of 4 frames), the most any pipeline could reach; pymbrl runs at " + ", ".join(share)
                  + (" of that rate, `SyncVectorEnv` at " + ", ".join(peer_share) if peer_share else " of it") + "."]
    lines += ["", "Build and reset (seconds, once per env, untimed): " + "; ".join(
        f"{METHODS[name]} N={n:,}: {c.build:.1f}" for (name, n), c in cells.items() if name != ALE) + "."]
    frame_sizes = [n for n in sizes if ("pymbrl", n) in bench.frame_us]
    if frame_sizes:
        us = bench.frame_us
        lines += ["", "The frame processing alone (max of the last two screens, resize to 84x84), on the same frames, "
                  "µs per vector step (median of 5 runs):", "",
                  "| | " + " | ".join(f"N={n:,}" for n in frame_sizes) + " |",
                  "|---|" + "---:|" * len(frame_sizes),
                  "| pymbrl (`AtariVectorEnv._observe`: one torch area resize of the N games) | "
                  + " | ".join(f"{us[('pymbrl', n)]:,.0f}" for n in frame_sizes) + " |",
                  "| gymnasium's way (per game: `np.maximum`, `cv2.resize(..., INTER_AREA)`) | "
                  + " | ".join(f"{us[('cv2', n)]:,.0f}" for n in frame_sizes) + " |"]
    behind = [f"N = {n:,}" for n in frame_sizes if bench.frame_us[("pymbrl", n)] > bench.frame_us[("cv2", n)]]
    slower = (f" pymbrl's frame processing (the table above) is the slower one at {' and '.join(behind)}."
              if behind else "")
    lines += [
        "",
        "Notes:",
        "",
        "- The pipelines do the same work per step but for details: pymbrl presses FIRE for 4 frames at the start "
        "of an episode and after a lost life (Breakout serves the ball only on FIRE; gymnasium's random actions "
        "press it one step in four), clips the rewards, returns its info keys (`final_obs`, `_final_obs`, "
        "`episode_return`, `episode_length`) every step and frames last ([N, 84, 84, 4]); gymnasium resizes with "
        "OpenCV's `INTER_AREA` where pymbrl uses torch's area interpolation over the N games at once, returns "
        "frames first ([N, 4, 84, 84]) and ALE's info (lives, frame numbers).",
        "- Beyond the emulator (the bare loop), the difference is the preprocessing and the Python around it: "
        "pymbrl makes one call per step for the N games (one resize, one shift of the stack, one copy), "
        "gymnasium goes through the wrapper chain of each env in a Python loop, resizes each frame with OpenCV "
        "and copies the N observations into a batch." + slower + " (A one-off breakdown of pymbrl's frame "
        "processing while writing this benchmark, µs: at N = 1 the resize took 287 of it, a fixed cost per torch "
        "call that one game does not amortise; at N = 64 the max written games-last (the layout the resize "
        "wants) took 3,260, the conversion to float 483, the resize 543.)",
        f"- `AsyncVectorEnv` runs each game in its own process, so it can use every core ({_cpus()} here) where "
        "pymbrl and `SyncVectorEnv` use one, and pays a pipe round trip and a copy of each game's observation "
        "per step; what it gains depends on how busy the other cores are. (One-off, on this machine while "
        "another job kept one of the 2 cores busy: 1,505 and 1,567 agent steps/s at N = 16 in two runs, "
        "pymbrl 1.66x and 1.69x; in a run where that job ended half-way, 2,473, pymbrl 1.04x; with the machine "
        "otherwise idle, 2,722, pymbrl 0.96x.)",
    ]
    if bench.checks:
        lines += ["", "Checks: " + "; ".join(bench.checks) + "."]
    noisy = [f"{METHODS[name]} N={n} ({spread(c.rates):.0%})" for (name, n), c in cells.items()
             if spread(c.rates) > 0.5]
    if noisy:
        lines += ["", "Noisy cells (max - min of the rates over the repeats above 50% of the median): "
                  + ", ".join(noisy) + "."]
    return "\n".join(lines)


def _cpus() -> str:
    import os

    n = os.cpu_count() or 1
    return f"{n} logical CPU{'s' if n > 1 else ''}"


def methods_for(sizes: tuple[int, ...]) -> tuple[dict[str, Method], str]:
    """The methods with the sizes they run at and, where they cannot run, why; and where cv2 came from."""
    cv2_reason, cv2_note = import_cv2()
    return {
        PYMBRL: Method(PYMBRL, sizes),
        SYNC: Method(SYNC, sizes, cv2_reason),
        ASYNC: Method(ASYNC, tuple(n for n in sizes if n == ASYNC_N), cv2_reason),
        ALE: Method(ALE, (ALE_N,) if ALE_N in sizes else ()),
    }, cv2_note


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "1 repeat of 0.3 s per cell, N = 1 and 16")
    add_rate_args(parser, SECONDS, QUICK_SECONDS, f"default {','.join(map(str, SIZES))}; AsyncVectorEnv runs at "
                  f"N = {ASYNC_N} only, the bare loop at N = {ALE_N} only")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    resolve_rate_args(parser, args, SECONDS, QUICK_SECONDS, SIZES, QUICK_SIZES)
    try:
        import ale_py
        gym.register_envs(ale_py)
        from pymbrl.envs.atari import AtariVectorEnv  # noqa: F401
    except ImportError as e:
        print(f"bench_atari.py: skipped, nothing can run without ale-py and pymbrl.envs.atari "
              f"(pip install 'pymbrl[atari]'): {short(e)}; {DEFAULT_OUTPUT.name} left as it was", file=sys.stderr)
        return
    methods, cv2_note = methods_for(args.sizes)
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    run_and_publish(Bench(args, methods, cv2_note), report, argv, output, SECTION)


if __name__ == "__main__":
    main()
