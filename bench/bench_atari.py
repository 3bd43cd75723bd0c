"""Benchmark Atari agent steps per second: pymbrl's AtariVectorEnv vs ale-py's vector env and gymnasium's wrappers.

The pipelines step N Breakout games (``ALE/Breakout-v5``, ale-py's emulator) with the DQN preprocessing of
Mnih et al. (2015): up to 30 random no-ops at the start of an episode, each action repeated for 4 emulated
frames, the max of the last two, grayscale, resized to 84x84 by area, a stack of the last 4 frames, no sticky
actions; finished games start their next episode in the same step. Every method gets the same uniformly random
actions (a pool of 256 action rows [N] drawn before timing from ``numpy.random.default_rng(0)``, cycled):

- pymbrl: ``pymbrl.envs.atari.AtariVectorEnv("ALE/Breakout-v5", N, seed=0)``, one object for the N games;
- pymbrl on ale-py: the same with ``backend="ale-py", num_threads=1``: ale-py's vector env (below) inside
  pymbrl's contract, whose cost is the difference between the two;
- ale-py's vector env (ale-py 0.12): ``ale_py.vector_env.AtariVectorEnv("breakout", N, num_threads=1,
  autoreset_mode=SAME_STEP)`` with the same preprocessing (its own C++ loop: a pool of worker threads steps the
  games and resizes with OpenCV), ``reset(seed=0)``; with 1 worker thread, the one core pymbrl uses, and with its
  default (``num_threads=0``: min(N, the machine's hardware threads)) where that is more than 1. Its episode
  starts and lost lives differ in details, which the report lists;
- SyncVectorEnv: what a gymnasium user writes, ``gym.vector.SyncVectorEnv`` (``autoreset_mode=SAME_STEP``)
  over N ``FrameStackObservation(AtariPreprocessing(gym.make("ALE/Breakout-v5", frameskip=1,
  repeat_action_probability=0.0), noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True), 4)``,
  ``reset(seed=0)``;
- AsyncVectorEnv: the same N envs in ``gym.vector.AsyncVectorEnv`` (one worker process per game, the default
  start method), at N = 16 only;
- bare ale-py (informational, N = 1 only): one ``ale_py.ALEInterface`` in a Python loop, 4 ``act`` calls and
  2 grayscale screens per agent step, ``reset_game`` at a game over, no max, resize, stack or info: what the
  emulator alone costs, which bounds every pipeline on one core (its cost per game does not depend on N).

``AtariPreprocessing`` resizes with OpenCV (``cv2``): when the venv has none, the benchmark takes the one
``make bench`` installs into ``build/peers/sheeprl`` (appended to ``sys.path``, as ``bench/dreamer_sheeprl.py``
does); without either, the gymnasium rows are not run and the report says why.

Before timing, pymbrl's and ale-py's envs play the same Breakout game frame for frame (no no-op starts; where
pymbrl presses FIRE for 4 frames, ale-py's env takes a step of FIRE): the report compares what they return, their
frames, scores and game overs.

Every env is built and reset once, untimed (the seconds it took are reported), and stepped a few untimed steps.
Each (method, N) cell then steps for about ``--seconds`` (at least 2 steps) after 2 more untimed steps; a
repeat runs every cell once, the methods in a rotating order; the tables show the median rate over the
repeats (agent steps / s = N x vector steps / seconds). Everything runs with ``torch.set_num_threads(1)``.

It prints a markdown report and writes it into ``bench/RESULTS.md`` between ``<!-- atari:begin -->`` and
``<!-- atari:end -->``, keeping the rest of the file. Without ale-py (``pip install 'pymbrl[atari]'``) nothing
can run: it says so on stderr, leaves ``RESULTS.md`` as it was and exits 0.

Usage::

    make bench                                # or, with pymbrl and ale-py importable:
    python bench/bench_atari.py               # full run, 7.5 minutes on a heavily loaded 2-core VM
    python bench/bench_atari.py --quick       # smoke test; writes no file unless --output
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch.nn import functional as F

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
    ratio,
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
GAME = "breakout"   # the ROM, which ale-py's vector env takes in place of an id
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
    "pymbrl_ale": "pymbrl `AtariVectorEnv(backend=\"ale-py\")`, 1 worker thread",
    "alevec": "ale-py `AtariVectorEnv`, 1 worker thread",
    "alevec_default": "ale-py `AtariVectorEnv`, default worker threads (min(N, hardware threads))",
    "sync": "gymnasium `SyncVectorEnv` x N wrapped envs",
    "async": "gymnasium `AsyncVectorEnv` x N wrapped envs",
    "ale": "bare ale-py loop (emulator + screens only)",
}
PYMBRL, PYMBRL_ALE, ALEVEC, ALEVEC_DEFAULT, SYNC, ASYNC, ALE = METHODS
# ale-py's vector env with pymbrl's settings, every one spelled out even where it is ale-py's default.
# max_num_frames_per_episode counts emulated frames: 27,000 agent steps of 4 frames, pymbrl's limit.
ALE_VECTOR_SETTINGS = {"frameskip": 4, "maxpool": True, "grayscale": True, "img_height": 84, "img_width": 84,
                       "stack_num": 4, "noop_max": 30, "use_fire_reset": True, "episodic_life": False,
                       "reward_clipping": True, "repeat_action_probability": 0.0,
                       "max_num_frames_per_episode": 108_000, "full_action_space": False}
COMPARE_STEPS = 1_000  # agent steps of the side-by-side comparison


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
    def __init__(self, n: int, backend: str = "pymbrl"):
        from pymbrl.envs.atari import AtariVectorEnv

        self.env = AtariVectorEnv(ENV_ID, n, seed=0, backend=backend, num_threads=1)
        self.env.reset()

    def step(self, actions):
        self.env.step(actions)

    def close(self):
        self.env.close()


class AleVector(Stepper):
    def __init__(self, n: int, threads: int):
        from ale_py.vector_env import AtariVectorEnv

        self.env = AtariVectorEnv(GAME, n, num_threads=threads, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
                                  **ALE_VECTOR_SETTINGS)
        self.env.reset(seed=0)

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


@dataclass
class Comparison:
    """pymbrl's and ale-py's vector envs playing the same game frame for frame (see :func:`compare`)."""

    returns: dict[str, list[str]]   # per env: dtype and shape of obs, rewards, terminated, truncated
    # per env: the info keys of a step where no game ended, and of one where one did (None: no such step)
    info_keys: dict[str, tuple[list[str] | None, list[str] | None]]
    steps: int = 0                  # pymbrl's agent steps
    lives_lost: int = 0             # of them, losing a life (not the game)
    episodes: int = 0               # episodes that ended
    frames: int = 0                 # newest frames compared: one per step, and the ended episodes' last ones
    replayed: int = 0               # of them, pymbrl's equal to its resize of ale-py's 210x160 frame
    final_replayed: int = 0         # the same, of the ended episodes' last frames alone
    # per env: the ended episodes whose last frame (84x84) repeats the one before
    final_repeats: dict[str, int] = field(default_factory=dict)
    cv2_equal: int | None = None    # ale-py's 84x84 equal to cv2.resize(INTER_AREA) of its 210x160 (None: no cv2)
    rewards_equal: int = 0          # steps with the same (unclipped) score, and the same terminated
    scored: int = 0                 # steps with a score (pymbrl's)
    terminated_equal: int = 0
    max_diff: int = 0               # |pymbrl - ale-py| over the steps' 84x84 frames: max, mean, share of zeros
    mean_diff: float = 0.0
    equal_pixels: float = 0.0


def area_resize(frames: np.ndarray) -> np.ndarray:
    """pymbrl's resize, as ``AtariVectorEnv`` does it: torch's area interpolation, rounded (uint8 [n, H, W] ->
    uint8 [n, 84, 84])."""
    x = torch.from_numpy(frames).float().unsqueeze(1)
    return F.interpolate(x, size=(84, 84), mode="area")[:, 0].round_().to(torch.uint8).numpy()


def described(x: np.ndarray) -> str:
    return f"{x.dtype} [{', '.join(['N', *map(str, x.shape[1:])])}]"


def compare(actions: np.ndarray, cv2_ready: bool) -> Comparison:
    """Plays one Breakout game in pymbrl's env and in two ale-py vector envs (84x84, and unresized 210x160; 1
    thread each) with ``actions`` (int [steps]), unclipped rewards and no no-op starts, on the same emulated frames:
    where pymbrl presses FIRE for 4 frames (a new episode, a lost life), ale-py's envs take one more step of FIRE
    (their own FIRE reset is off), which emulates the same frames. Compares each step's newest frame, each ended
    episode's last one, the scores and the game overs."""
    from ale_py.vector_env import AtariVectorEnv as AleVectorEnv
    from pymbrl.envs.atari import AtariVectorEnv

    same = {**ALE_VECTOR_SETTINGS, "noop_max": 0, "use_fire_reset": False, "reward_clipping": False}
    ale_kwargs = {"num_threads": 1, "autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
    pym = AtariVectorEnv(ENV_ID, 1, seed=0, noop_max=0, clip_rewards=False)
    small = AleVectorEnv(GAME, 1, **ale_kwargs, **same)
    full = AleVectorEnv(GAME, 1, **ale_kwargs, **{**same, "img_height": 210, "img_width": 160, "stack_num": 1})
    result = Comparison(returns={}, info_keys={})
    keys: dict[str, dict[bool, list[str]]] = {PYMBRL: {}, ALEVEC: {}}
    diffs = []

    def note(name: str, step: tuple) -> None:
        keys[name].setdefault(bool((step[2] | step[3]).any()), sorted(step[4]))
        result.returns.setdefault(name, [described(x) for x in step[:4]])

    def frames(ours: np.ndarray, theirs: np.ndarray, raw: np.ndarray, final: bool = False) -> int:
        """Compares one newest frame of each env (uint8 [84, 84], [84, 84], [210, 160]), an episode's last where
        ``final``; 1 where pymbrl's replays."""
        result.frames += 1
        replayed = int(np.array_equal(area_resize(raw[None])[0], ours))
        result.replayed += replayed
        if cv2_ready:
            import cv2

            result.cv2_equal = (result.cv2_equal or 0) + int(
                np.array_equal(cv2.resize(raw, (84, 84), interpolation=cv2.INTER_AREA), theirs))
        if not final:
            diffs.append(np.abs(ours.astype(np.int16) - theirs.astype(np.int16)).ravel())
        return replayed

    fire = np.array([pym.action_meanings.index("FIRE")])
    try:
        obs, _ = pym.reset()
        small.reset(seed=0)
        full.reset(seed=0)
        ale = small.step(fire), full.step(fire)
        for a in actions:
            frames(obs[0, ..., -1], ale[0][0][0, -1], ale[1][0][0, -1])
            lives = ale[0][4]["lives"][0]
            step = pym.step(a[None])
            note(PYMBRL, step)
            ale = small.step(a[None]), full.step(a[None])
            note(ALEVEC, ale[0])
            score = int(ale[0][1][0])
            over = bool(ale[0][2][0] | ale[0][3][0])
            if not over and ale[0][4]["lives"][0] < lives:
                result.lives_lost += 1
                ale = small.step(fire), full.step(fire)
                score += int(ale[0][1][0])
                over = bool(ale[0][2][0] | ale[0][3][0])
            obs = step[0]
            result.steps += 1
            result.scored += int(step[1][0] != 0)
            result.rewards_equal += int(step[1][0] == score)
            result.terminated_equal += int(bool(step[2][0]) == bool(ale[0][2][0]))
            if over:
                result.episodes += 1
                for name, last in ((PYMBRL, step[4]["final_obs"][0].transpose(2, 0, 1)),
                                   (ALEVEC, ale[0][4]["final_obs"][0])):
                    repeats = int(np.array_equal(last[-1], last[-2]))
                    result.final_repeats[name] = result.final_repeats.get(name, 0) + repeats
                result.final_replayed += frames(step[4]["final_obs"][0, ..., -1], ale[0][4]["final_obs"][0, -1],
                                                ale[1][4]["final_obs"][0, -1], final=True)
                ale = small.step(fire), full.step(fire)
    finally:
        for env in (pym, small, full):
            env.close()
    result.info_keys = {name: (k.get(False), k.get(True)) for name, k in keys.items()}
    d = np.concatenate(diffs)
    result.max_diff, result.mean_diff, result.equal_pixels = int(d.max()), float(d.mean()), float((d == 0).mean())
    return result


def make(name: str, n: int) -> Stepper:
    return {PYMBRL: lambda: Pymbrl(n), PYMBRL_ALE: lambda: Pymbrl(n, "ale-py"),
            ALEVEC: lambda: AleVector(n, 1), ALEVEC_DEFAULT: lambda: AleVector(n, 0),
            SYNC: lambda: Gymnasium(n, False), ASYNC: lambda: Gymnasium(n, True), ALE: lambda: BareAle(n)}[name]()


class Bench(Run):
    def __init__(self, args, methods: dict[str, Method], cv2_note: str):
        self.args = args
        self.libs = methods
        self.cv2_note = cv2_note
        self.cells: dict[tuple[str, int], Cell] = {}
        self.checks: list[str] = []
        self.frame_us: dict[tuple[str, int], float] = {}
        self.comparison: Comparison | None = None
        self.runtime = 0.0

    def check(self, steppers: dict[tuple[str, int], Stepper]) -> None:
        """The pipelines play the same game with the same actions and frame sizes."""
        def first(name: str) -> Stepper | None:
            return next((s for (m, _), s in steppers.items() if m == name), None)

        pym = first(PYMBRL)
        if pym is None:
            return
        peers = []
        if (gy := first(SYNC)) is not None:
            peers.append(("gymnasium", tuple(gy.env.envs[0].unwrapped.get_action_meanings()),
                          gy.env.single_observation_space))
        if (av := first(ALEVEC) or first(ALEVEC_DEFAULT)) is not None:
            peers.append(("ale-py's vector env", tuple(a.name for a in av.env.ale.get_action_set()),
                          av.env.single_observation_space))
        meanings, a = pym.env.action_meanings, pym.env.single_observation_space
        for peer, actions, b in peers:
            if meanings != actions:
                raise AssertionError(f"the pipelines' actions differ: pymbrl {meanings}, {peer} {actions}")
            if (a.dtype, sorted(a.shape)) != (b.dtype, sorted(b.shape)):
                raise AssertionError(f"the pipelines' observations differ: pymbrl {a}, {peer} {b}")
        if peers:
            self.checks.append(f"the pipelines play Breakout with the actions {', '.join(meanings)} and observe "
                               f"uint8 frames, pymbrl {list(a.shape)} (frames last), "
                               + ", ".join(f"{peer} {list(b.shape)}" for peer, _, b in peers) + " (frames first)")

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
        if self.libs[ALEVEC].reason is None:
            t = time.perf_counter()
            self.comparison = compare(np.random.default_rng(0).integers(0, 4, COMPARE_STEPS),
                                      self.libs[SYNC].reason is None)
            self.log(f"compared pymbrl and ale-py's vector env over {self.comparison.steps} steps in "
                     f"{time.perf_counter() - t:.1f} s")
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
    lines = header("Atari: agent steps per second, pymbrl's AtariVectorEnv vs ale-py's vector env and gymnasium's "
                   "preprocessing wrappers",
                   "bench_atari.py", argv, load_before, machine_note="; `torch.set_num_threads(1)`",
                   runtime=bench.runtime)
    peer = f", {bench.cv2_note}" if bench.cv2_note else ""
    lines += [
        f"- pymbrl {pymbrl.__version__}: `pymbrl.envs.atari.AtariVectorEnv`; ale-py {version('ale-py')}, "
        f"gymnasium {gym.__version__}{peer}",
        f"- Interpreter: `{sys.executable}`" + (f", `PYTHONPATH={os.environ['PYTHONPATH']}`"
                                               if os.environ.get("PYTHONPATH") else ""),
        f"- Setup: `{ENV_ID}` with the DQN preprocessing in every pipeline (no-op starts up to 30, frame skip 4 "
        "with the max of the last two frames, gray 84x84 by area, a stack of 4, no sticky actions), same-step "
        "autoreset, uniformly random actions (256 pre-drawn rows from `default_rng(0)`, cycled, the same for "
        "every method). gymnasium: `SyncVectorEnv` / `AsyncVectorEnv` over N `FrameStackObservation("
        "AtariPreprocessing(gym.make(\"ALE/Breakout-v5\", frameskip=1, repeat_action_probability=0.0), "
        "noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True), 4)`.",
        f"- ale-py's vector env: `ale_py.vector_env.AtariVectorEnv(\"{GAME}\", N, num_threads=T, "
        "autoreset_mode=SAME_STEP, " + ", ".join(f"{k}={v!r}" for k, v in ALE_VECTOR_SETTINGS.items())
        + ")`, `reset(seed=0)`; T = 1, the one core pymbrl uses, and T = 0, its default: min(N, hardware threads) "
        f"worker threads, min(N, {os.cpu_count()}) here (at N = 1 that is T = 1, so that cell is not run twice).",
        f"- Medians over {a.repeats} repeat{'s' if a.repeats > 1 else ''} of ~{a.seconds:g} s per cell, the "
        f"methods in a rotating order; every env built and reset once, untimed, then {SETTLE_STEPS} untimed "
        f"steps, and {WARMUP_STEPS} more before each timed run.",
    ]
    skipped = [f"{METHODS[m.name]}: {m.reason}" for m in methods.values() if m.reason]
    if skipped:
        lines += ["- Not run: " + "; ".join(skipped) + "."]
    rates = {key: cell.rate() for key, cell in cells.items()}
    lines += ["", *rate_tables(rates, METHODS, sizes, PYMBRL, (PYMBRL_ALE, ALEVEC, ALEVEC_DEFAULT, SYNC, ASYNC),
                                     "Agent steps")]
    if (ALE, ALE_N) in cells:
        bare = cells[(ALE, ALE_N)].rate()
        shares = []
        for name, label in ((PYMBRL, "pymbrl"), (ALEVEC, "ale-py's vector env on 1 thread"),
                            (SYNC, "`SyncVectorEnv`")):
            share = [f"N={n:,}: {cells[(name, n)].rate() / bare:.0%}" for n in sizes if (name, n) in cells]
            if share:
                shares.append(f"{label} at " + ", ".join(share))
        lines += ["", f"The bare emulator loop runs {fmt(bare)} agent steps/s per game ({1e6 / bare:,.0f} µs per "
                  "step of 4 frames), the most a pipeline on one core could reach; as shares of that rate: "
                  + "; ".join(shares) + "."]
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
        "- pymbrl and gymnasium do the same work per step but for details: pymbrl presses FIRE for 4 frames at the "
        "start of an episode and after a lost life (Breakout serves the ball only on FIRE; gymnasium's random actions "
        "press it one step in four), clips the rewards, returns its info keys (`final_obs`, `_final_obs`, "
        "`episode_return`, `episode_length`) every step and frames last ([N, 84, 84, 4]); gymnasium resizes with "
        "OpenCV's `INTER_AREA` where pymbrl uses torch's area interpolation over the N games at once, returns frames "
        "first ([N, 4, 84, 84]) and ALE's info (lives, frame numbers).",
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
    lines += vector_lines(bench)
    if bench.checks:
        lines += ["", "Checks: " + "; ".join(bench.checks) + "."]
    noisy = [f"{METHODS[name]} N={n} ({spread(c.rates):.0%})" for (name, n), c in cells.items()
             if spread(c.rates) > 0.5]
    if noisy:
        lines += ["", "Noisy cells (max - min of the rates over the repeats above 50% of the median): "
                  + ", ".join(noisy) + "."]
    return "\n".join(lines)


def vector_lines(bench: Bench) -> list[str]:
    """The report's part on ale-py's vector env: what differs from pymbrl's, the side-by-side comparison, the
    conclusion."""
    cells, c = bench.cells, bench.comparison
    if c is None:
        return []
    lines = [
        "", "### ale-py's vector env against pymbrl's", "",
        "What differs, beyond the layout (from ale-py 0.12.1's `src/ale/vector/preprocessed_env.cpp`):", "",
        "- Episode start: ale-py presses FIRE for 1 frame, then NOOPs for a number of frames uniform in [0, "
        "noop_max - 1] less that one (0 to 28 here; a game over among them restarts the game), and its first "
        "observation stacks that frame with 3 black ones; pymbrl draws NOOPs uniform in [0, noop_max], then "
        "presses FIRE for 4 frames (`frame_skip`), and repeats the first frame 4 times.",
        "- A lost life: pymbrl presses FIRE for 4 more frames within the step (their score counts), ale-py does "
        "not (in Breakout, random actions press FIRE one step in four).",
        "- Resize: ale-py with OpenCV's `INTER_AREA` per game in C++; pymbrl with torch's area interpolation "
        "over the N games at once. At 210 -> 84 rows (2.5 to 1) OpenCV weighs the pixels a window cuts by the "
        "part it covers, torch's adaptive average pooling averages whole pixels over overlapping windows: the "
        "frames differ by that (below).",
        "- Seeding: `reset(seed=s)` seeds game i with s + i (ALE's generator and a `std::mt19937` for the "
        "no-op counts); pymbrl derives a numpy stream per game from (seed, i). Sticky actions (off here) are ALE's "
        "own in ale-py, drawn from the game's stream in pymbrl. Truncation: both after 108,000 frames (ale-py "
        "counts frames, pymbrl 27,000 agent steps); not reached here.",
        "- Interface: ale-py's env is `reset` / `send` / `recv` over a C++ vectorizer with no access to a game's "
        "emulator: no per-game state to save or restore (pymbrl's `get_state` / `set_state`). Actions must be "
        "a numpy int32 or int64 array (an `assert`); pymbrl takes any integer array-like and names a bad one.",
        "",
        "What each returns (N = the number of games):",
        "",
        "| | pymbrl `AtariVectorEnv` | ale-py `AtariVectorEnv` |",
        "|---|---|---|",
    ]
    for i, what in enumerate(("obs", "rewards", "terminated", "truncated")):
        lines.append(f"| {what} | {c.returns[PYMBRL][i]} | {c.returns[ALEVEC][i]} |")
    for j, when in enumerate(("info keys, no game ended", "info keys, a game ended")):
        keys = [c.info_keys[name][j] for name in (PYMBRL, ALEVEC)]
        lines.append(f"| {when} | " + " | ".join(
            ", ".join(f"`{k}`" for k in ks) if ks is not None else f"(none ended in {COMPARE_STEPS:,} steps)"
            for ks in keys) + " |")
    stepped = c.replayed - c.final_replayed
    same = (": the emulation, the frames taken and their max are the same bit for bit" if stepped == c.steps else "")
    opencv = ("" if c.cv2_equal is None else f" OpenCV's `resize(..., INTER_AREA)` of ale-py's unresized frames "
              f"equals its 84x84 frames in {c.cv2_equal:,} of {c.frames:,} (steps and last frames).")
    lines += [
        "", f"The same game, frame for frame: one Breakout game, {c.steps:,} random actions from `default_rng(0)`, "
        "unclipped rewards and no no-op starts in both; ale-py's FIRE reset off, and where pymbrl presses FIRE for "
        "4 frames (a new episode, a lost life) ale-py's env takes one more step of FIRE, which emulates the same "
        f"frames; {c.lives_lost:,} lives lost, {c.episodes:,} episodes ended. pymbrl's resize of ale-py's "
        "unresized frame (an ale-py env at `img_height=210, img_width=160`) equals pymbrl's newest frame in "
        f"{stepped:,} of the {c.steps:,} steps{same}; and in {c.final_replayed:,} of the {c.episodes:,} ended "
        "episodes' last frames: ale-py stops a step at the game-over frame before it takes that frame's screen, "
        "so the newest frame of its last observation is an older one (it repeats the frame before in "
        f"{c.final_repeats.get(ALEVEC, 0):,} of the {c.episodes:,} here, pymbrl's in "
        f"{c.final_repeats.get(PYMBRL, 0):,}), where pymbrl takes the screens after the game over.{opencv} The "
        f"steps' 84x84 frames differ by the resize alone: {c.equal_pixels:.1%} of the pixels equal, mean absolute "
        f"difference {c.mean_diff:.2f}, max {c.max_diff} (of 255). Scores equal in {c.rewards_equal:,} of "
        f"{c.steps:,} steps ({c.scored:,} of them scored), game overs in {c.terminated_equal:,}.",
    ]

    def ratio_over(name: str, base: str) -> str:
        return ", ".join(f"N={n:,}: {ratio(cells[(name, n)].rate(), cells[(base, n)].rate())}"
                         for n in bench.args.sizes if (name, n) in cells and (base, n) in cells)

    if (one := ratio_over(ALEVEC, PYMBRL)):
        default = ratio_over(ALEVEC_DEFAULT, PYMBRL)
        lines += [
            "", f"Conclusion. On one core, ale-py's vector env runs at {one} pymbrl's rate"
            + (f"; with its default threads at {default}" if default else "") + " (this run's load: see above). "
            "Where it leads, the lead is pymbrl's fixed cost per vector step: beyond the emulator, pymbrl's step is "
            "Python around ALE's Python API (4 `act` and 2 screen calls per game) and one torch resize call costing "
            "a few hundred µs whatever N, where ale-py does all of it in C++ and resizes a frame with OpenCV; as N "
            "grows, the emulator takes most of either step and the gap narrows. (A one-off `cProfile` of pymbrl's "
            "step on this machine, under load: at N = 1 the emulator calls took 44% of it, the torch resize 26%, "
            "the conversions around it and Python the rest; at N = 16 the emulator calls took 80%, the frame "
            "processing 12%.)",
            "", "So pymbrl's env offers ale-py's as a backend: `AtariVectorEnv(..., backend=\"ale-py\")` steps "
            "ale-py's env and keeps pymbrl's contract around it (frames last, the info keys with unclipped episode "
            "returns, truncation in agent steps, seeds from (seed, i), checked actions)"
            + (f", at {wrapped} the rate of ale-py's own env on the same thread" if (wrapped := ratio_over(
                PYMBRL_ALE, ALEVEC)) else "") + ". pymbrl's own loop stays the default: it has the exact per-game "
            "`get_state` / `set_state` that the agents' exact resume needs, which ale-py's env cannot give (it "
            "exposes no game's emulator, and a second ALE per game kept in step would emulate every frame twice), "
            "and the episode starts and lost lives (above) that pymbrl's Atari results were played with.",
        ]
    return lines


def _cpus() -> str:
    n = os.cpu_count() or 1
    return f"{n} logical CPU{'s' if n > 1 else ''}"


def methods_for(sizes: tuple[int, ...]) -> tuple[dict[str, Method], str]:
    """The methods with the sizes they run at and, where they cannot run, why; and where cv2 came from."""
    cv2_reason, cv2_note = import_cv2()
    try:
        import ale_py.vector_env  # noqa: F401
        vector_reason = None
    except ImportError as e:
        vector_reason = f"needs ale-py 0.12's `ale_py.vector_env` ({short(e, 80)})"
    threads = os.cpu_count() or 1
    return {
        PYMBRL: Method(PYMBRL, sizes),
        PYMBRL_ALE: Method(PYMBRL_ALE, sizes, vector_reason),
        ALEVEC: Method(ALEVEC, sizes, vector_reason),
        # Its default runs min(N, hardware threads) workers: where that is 1, it is the row above.
        ALEVEC_DEFAULT: Method(ALEVEC_DEFAULT, tuple(n for n in sizes if min(n, threads) > 1), vector_reason),
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
