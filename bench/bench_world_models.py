"""Benchmark a CMA-ES generation of World Models controllers in M's dream: pymbrl's batched dreams vs one at a time.

The issue's target: batched dream evaluation of a CMA-ES generation (64 candidates x 16 trials) at least 50x
faster than evaluating the candidates one at a time with the same model.

Setup (Ha & Schmidhuber 2018, Doom TakeCover sizes), built once, untimed, from torch seed 0:

- M: ``pymbrl.models.world_models.MDNRNN(z_dim=64, action_dim=3, hidden=256, mixtures=5)`` in eval mode
  (``--hidden 512`` gives the paper's Doom size; 256 is the project's CPU preset);
- C: the paper's linear ``Controller(64 + hidden, 3)`` (963 parameters at hidden 256); the generation is 64
  fixed candidates drawn from N(0, 0.1^2) (CMA-ES's first generation around a zero mean, sigma 0.1);
- actions: ``Discrete(3)`` through ``ActionCodec(gym.spaces.Discrete(3))`` (one-hot of the argmax);
- dreams at temperature tau = 1.15, capped at 2100 steps (TakeCover's limit), each starting from one of
  1,000 fixed start latents drawn from N(0, 1) (standing in for the VAE's first-frame latents).

M is untrained, so its done head is set to end dreams at a realistic rate, the same model for every method.
A dream ends when the done logit is above 0 (a threshold, not a draw); the logit reads h, which moves with
the sampled z, so it crosses 0 at random steps once its threshold sits in the tail of its distribution. A
pilot (512 dreams, steps 50 to 299, its own generator) records the done row's raw output w.h; the row is
scaled by 1/std of those outputs and its bias set to minus the (1 - 1/300) quantile of the scaled outputs,
so that about one step in 300 crosses. Crossings come in short runs (h is autocorrelated), so the mean
dream is a little longer than 300 steps; the report gives the lengths measured for every method.

Methods, all on the same M, controller parameters and start latents (each call is given a torch generator
seeded with the repeat's seed, the same seed for every method, so the methods draw comparable but not
identical random numbers; dream lengths agree in distribution, not step for step):

- batched: one ``pymbrl.rollout.dream.dream_rollouts(mdnrnn, controller, params [64, n], start_z,
  codec.model_input, trials=16, tau=1.15, max_steps=2100, generator=...)`` call, the whole generation of
  1,024 dreams as one batch (finished dreams leave the batch every 16 steps once a quarter has ended);
- per candidate: the same call with one candidate's row (``params[i:i+1]``, its 16 trials batched),
  candidates in a Python loop;
- DreamEnv (the main baseline; what the original code does with one dream env per worker):
  ``pymbrl.rollout.dream_env.DreamEnv`` (gymnasium) stepped one episode at a time, the controller computing the
  action from the observation [z, h] (``controller(params[i], obs)``, argmax, ``env.step(int)``), one
  ``reset`` per episode, the first of a call seeded with the repeat's seed;
- dream_rollouts, batch 1: the batched code with one candidate and ``trials=1``, one call per dream (it
  checks for the end every 16 steps, so it computes up to 15 masked steps past each dream's end);
- lean batch-1 loop: a hand-written loop over one dream at a time, the same controller, mixture head and
  ``sample_mixture``, the LSTM step done by ``torch.lstm_cell`` on M's weights (checked equal to
  ``MDNRNN.step`` at setup; ``MDNRNN.step`` itself takes that path below 256 rows), and the done flag
  read each step. Not a target: the leanest one-at-a-time loop, without the env API or the batched
  code's bookkeeping, so the speed-up against it is the one that is purely from batching.

The batch-1 methods and the per-candidate loop are slow; they run on the first ``--subset`` candidates x 16
trials (per candidate: 4 x ``--subset`` candidates) and their seconds per generation are extrapolated per
dream step: seconds / dream steps of the subset x the dream steps of a generation (the median over the
batched generations timed). Dream steps per second (dream steps actually dreamt, summed over dreams / seconds)
is the primary measure, so that different random lengths do not bias the ratios; the speed-up is the batched
rate over each method's rate.

Each repeat runs every method once, the order rotating, after one untimed warm-up per method (dreams capped
at 64 steps: one candidate's, the whole generation for the batched call). Timings are medians over the
repeats. The report also gives, per method, the dream lengths and the model row-steps computed per dream
step (the batched code keeps ended dreams in the batch until a quarter of it has ended; computed from the
lengths with the same rule).

By default everything runs on the CPU with ``torch.set_num_threads(1)``. With ``--device cuda`` M and the
controller parameters live on the GPU for the batched and per-candidate methods (the clock is read after
``torch.cuda.synchronize()``); the batch-1 methods stay on the CPU (a copy of the same weights), as one
dream per GPU call would measure kernel-launch latency, not a loop anyone would run there. A device run
writes its own section (``world_models-cuda``); ``--hidden 512`` writes ``world_models-h512``.

It prints a markdown report and writes it into ``bench/RESULTS.md`` between ``<!-- world_models:begin -->``
and ``<!-- world_models:end -->``, keeping the rest of the file.

Usage::

    make bench                                     # or, with pymbrl importable:
    python bench/bench_world_models.py             # full run, about 4 minutes on a 2-core VM
    python bench/bench_world_models.py --quick     # smoke test, under a minute; writes no file unless --output
    python bench/bench_world_models.py --hidden 512
    python bench/bench_world_models.py --device cuda
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import (  # noqa: E402
    DEFAULT_OUTPUT,
    Run,
    bench_parser,
    clock,
    header,
    names,
    parse_device,
    ratio,
    rotated,
    run_and_publish,
    section_name,
    spread,
)
from pymbrl.rollout.dream_env import DreamEnv  # noqa: E402
from pymbrl.envs.spaces import ActionCodec  # noqa: E402
from pymbrl.models.world_models import MDNRNN, Controller, MDNState, sample_mixture  # noqa: E402
from pymbrl.rollout.dream import dream_rollouts  # noqa: E402

torch.set_num_threads(1)

SECTION = "world_models"
Z_DIM, ACTIONS, MIXTURES = 64, 3, 5
POPULATION, TRIALS, TAU, MAX_STEPS = 64, 16, 1.15, 2100
START_LATENTS, SIGMA = 1000, 0.1
TARGET_HAZARD = 300
"""The done threshold is the (1 - 1/TARGET_HAZARD) quantile of the pilot's done outputs."""
PILOT_DREAMS, PILOT_STEPS, PILOT_SKIP = 512, 300, 50
TARGET = 50
"""The issue's target: batched at least 50x the one-at-a-time DreamEnv loop."""
WARMUP_STEPS = 64
SEED = 0
NA = "—"

METHODS = {
    "batched": "pymbrl batched (64 x 16 dreams, one call)",
    "per-candidate": "per candidate (16 trials batched, candidates in a loop)",
    "env": "gymnasium DreamEnv, one episode at a time",
    "batch1": "dream_rollouts, batch 1 (one call per dream)",
    "lean": "lean batch-1 loop (torch.lstm_cell)",
}
"""``--methods`` name -> row label, in report order."""
BATCHED, PER_CANDIDATE, ENV, BATCH1, LEAN = METHODS
BASELINE = ENV


# --------------------------------------------------------------------------------------------
# The shared problem
# --------------------------------------------------------------------------------------------

@dataclass
class Problem:
    mdnrnn: MDNRNN               # on ``device``
    cpu_mdnrnn: MDNRNN           # the same weights on the CPU (the same object on a CPU run)
    controller: Controller
    codec: ActionCodec
    params: torch.Tensor         # float [POPULATION, controller.num_params], on the CPU
    start_z: torch.Tensor        # float [START_LATENTS, Z_DIM], on the CPU
    device: torch.device
    done_scale: float            # 1 / std of the done row's raw output in the pilot
    done_quantile: float         # the threshold on the scaled output (minus the bias)


def done_row(mdnrnn: MDNRNN) -> int:
    """Index of the done logit in M's head output: after 3 x z_dim x mixtures mixture parameters
    (see ``MDNRNN.mixture``)."""
    return 3 * mdnrnn.z_dim * mdnrnn.mixtures


@torch.no_grad()
def calibrate_done(mdnrnn: MDNRNN, controller: Controller, codec: ActionCodec, params: torch.Tensor,
                   start_z: torch.Tensor, seed: int) -> tuple[float, float]:
    """Scale the done row so its output has std 1 over a pilot of dreams, and put its bias at minus the
    (1 - 1/TARGET_HAZARD) quantile of that output. Returns (scale, quantile)."""
    d = done_row(mdnrnn)
    head = mdnrnn.head
    head.bias[d] = 0.0
    g = torch.Generator().manual_seed(seed)
    rows = params.repeat_interleave(TRIALS, 0)[:PILOT_DREAMS]
    z = start_z[torch.randint(len(start_z), (len(rows),), generator=g)]
    state = mdnrnn.initial_state(len(rows), "cpu")
    outputs = []
    for t in range(PILOT_STEPS):
        scores = controller(rows, torch.cat([z, state.h], -1)[:, None])[:, 0]
        mixture, state = mdnrnn.step(z, codec.model_input(scores), state)
        z = sample_mixture(mixture, TAU, g)
        if t >= PILOT_SKIP:
            outputs.append(mixture.done_logits.clone())
    out = torch.cat(outputs)
    scale = 1.0 / float(out.std())
    quantile = float(torch.quantile(out * scale, 1.0 - 1.0 / TARGET_HAZARD))
    head.weight[d] *= scale
    head.bias[d] = -quantile
    return scale, quantile


def make_problem(hidden: int, device: torch.device, seed: int = SEED) -> Problem:
    torch.manual_seed(seed)
    mdnrnn = MDNRNN(Z_DIM, ACTIONS, hidden=hidden, mixtures=MIXTURES).eval().requires_grad_(False)
    controller = Controller(Z_DIM + hidden, ACTIONS)
    codec = ActionCodec(gym.spaces.Discrete(ACTIONS))
    g = torch.Generator().manual_seed(seed)
    start_z = torch.randn(START_LATENTS, Z_DIM, generator=g)
    params = SIGMA * torch.randn(POPULATION, controller.num_params, generator=g)
    scale, quantile = calibrate_done(mdnrnn, controller, codec, params, start_z, seed + 1)
    on_device = mdnrnn if device.type == "cpu" else copy_to(mdnrnn, device)
    return Problem(on_device, mdnrnn, controller, codec, params, start_z, device, scale, quantile)


def copy_to(mdnrnn: MDNRNN, device: torch.device) -> MDNRNN:
    clone = MDNRNN(mdnrnn.z_dim, mdnrnn.action_dim, mdnrnn.hidden, mdnrnn.mixtures, mdnrnn.reward_head)
    clone.load_state_dict(mdnrnn.state_dict())
    return clone.eval().requires_grad_(False).to(device)


# --------------------------------------------------------------------------------------------
# Methods: ``run(seed, candidates, max_steps) -> (seconds, lengths int64 [dreams], row_steps)``, where
# row_steps is the model row-steps computed (>= the dream steps) and candidates the first ones used.
# --------------------------------------------------------------------------------------------

def computed_row_steps(lengths: np.ndarray, max_steps: int) -> int:
    """Row-steps ``dream_rollouts`` computes for one call whose dreams lasted ``lengths`` steps: every
    16 steps, if any dream is alive and fewer than 3/4 of the batch are, the ended ones leave it; the
    loop stops at the first check with none alive (so a batch of one runs on to a multiple of 16)."""
    lengths = np.asarray(lengths)
    batch, total = len(lengths), 0
    for t in range(max_steps):
        total += batch
        if t % 16 == 15:
            live = int(((lengths > t + 1) | (lengths >= max_steps)).sum())
            if live == 0:
                break
            if live < 0.75 * batch:
                batch = live
    return total


class Method:
    name = "?"
    device: torch.device

    def __init__(self, p: Problem):
        self.p = p

    def run(self, seed: int, candidates: int, max_steps: int) -> tuple[float, np.ndarray, int]:
        raise NotImplementedError


class Batched(Method):
    """The whole generation, or the first ``candidates`` rows, as one ``dream_rollouts`` call."""

    name = BATCHED

    def __init__(self, p: Problem):
        super().__init__(p)
        self.device = p.device
        self.params = p.params.to(p.device)
        self.start_z = p.start_z.to(p.device)

    @torch.no_grad()
    def run(self, seed, candidates, max_steps):
        p = self.p
        g = torch.Generator(self.device).manual_seed(seed)
        t0 = clock(self.device)
        out = dream_rollouts(p.mdnrnn, p.controller, self.params[:candidates], self.start_z, p.codec.model_input,
                             trials=TRIALS, tau=TAU, max_steps=max_steps, generator=g)
        seconds = clock(self.device) - t0
        lengths = out.steps.flatten().cpu().numpy()
        return seconds, lengths, computed_row_steps(lengths, max_steps)


class PerCandidate(Batched):
    """One ``dream_rollouts`` call per candidate (its 16 trials batched)."""

    name = PER_CANDIDATE

    @torch.no_grad()
    def run(self, seed, candidates, max_steps):
        p = self.p
        g = torch.Generator(self.device).manual_seed(seed)
        steps = []
        t0 = clock(self.device)
        for i in range(candidates):
            steps.append(dream_rollouts(p.mdnrnn, p.controller, self.params[i:i + 1], self.start_z,
                                        p.codec.model_input, trials=TRIALS, tau=TAU, max_steps=max_steps,
                                        generator=g).steps[0])
        seconds = clock(self.device) - t0
        per_call = [s.cpu().numpy() for s in steps]
        return seconds, np.concatenate(per_call), sum(computed_row_steps(s, max_steps) for s in per_call)


class Batch1(Method):
    """``dream_rollouts`` with one candidate and one trial per call, on the CPU."""

    name = BATCH1
    device = torch.device("cpu")

    @torch.no_grad()
    def run(self, seed, candidates, max_steps):
        p = self.p
        g = torch.Generator().manual_seed(seed)
        lengths = []
        t0 = time.perf_counter()
        for i in range(candidates):
            row = p.params[i:i + 1]
            for _ in range(TRIALS):
                out = dream_rollouts(p.cpu_mdnrnn, p.controller, row, p.start_z, p.codec.model_input, trials=1,
                                     tau=TAU, max_steps=max_steps, generator=g)
                lengths.append(int(out.steps[0, 0]))
        seconds = time.perf_counter() - t0
        lengths = np.array(lengths)
        return seconds, lengths, sum(computed_row_steps(l[None], max_steps) for l in lengths)


class Env(Method):
    """``DreamEnv`` (gymnasium) stepped one episode at a time, the controller acting on [z, h]."""

    name = ENV
    device = torch.device("cpu")

    def __init__(self, p: Problem):
        super().__init__(p)
        self.envs: dict[int, DreamEnv] = {}

    def env(self, max_steps: int) -> DreamEnv:
        if max_steps not in self.envs:
            self.envs[max_steps] = DreamEnv(self.p.cpu_mdnrnn, gym.spaces.Discrete(ACTIONS), self.p.start_z, tau=TAU,
                                            max_steps=max_steps)
        return self.envs[max_steps]

    @torch.no_grad()
    def run(self, seed, candidates, max_steps):
        p, env = self.p, self.env(max_steps)
        controller = p.controller
        lengths = []
        t0 = time.perf_counter()
        first = True
        for i in range(candidates):
            row = p.params[i]
            for _ in range(TRIALS):
                obs, _ = env.reset(seed=seed) if first else env.reset()
                first = False
                steps, over = 0, False
                while not over:
                    scores = controller(row, torch.from_numpy(obs)[None])
                    obs, _, terminated, truncated, _ = env.step(int(scores.argmax()))
                    steps += 1
                    over = terminated or truncated
                lengths.append(steps)
        seconds = time.perf_counter() - t0
        lengths = np.array(lengths)
        return seconds, lengths, int(lengths.sum())


class Lean(Method):
    """One dream at a time with ``torch.lstm_cell`` on M's weights; the done flag read every step."""

    name = LEAN
    device = torch.device("cpu")

    def __init__(self, p: Problem):
        super().__init__(p)
        lstm = p.cpu_mdnrnn.lstm
        self.weights = (lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)

    @torch.no_grad()
    def check(self) -> str:
        """``torch.lstm_cell`` on M's weights against ``MDNRNN.step``, on random inputs."""
        m = self.p.cpu_mdnrnn
        g = torch.Generator().manual_seed(1)
        z, h, c = (torch.randn(4, n, generator=g) for n in (m.z_dim, m.hidden, m.hidden))
        a = torch.nn.functional.one_hot(torch.randint(ACTIONS, (4,), generator=g), ACTIONS).float()
        _, state = m.step(z, a, MDNState(h, c))
        h2, c2 = torch.lstm_cell(torch.cat([z, a], -1), (h, c), *self.weights)
        err = max(float((state.h - h2).abs().max()), float((state.c - c2).abs().max()))
        if err > 1e-5:
            raise AssertionError(f"torch.lstm_cell differs from MDNRNN.step by {err:.2e}")
        return f"`torch.lstm_cell` on M's weights matches `MDNRNN.step` (max abs difference {err:.1e})"

    @torch.no_grad()
    def run(self, seed, candidates, max_steps):
        p = self.p
        m, controller, model_input = p.cpu_mdnrnn, p.controller, p.codec.model_input
        g = torch.Generator().manual_seed(seed)
        lengths = []
        t0 = time.perf_counter()
        for i in range(candidates):
            row = p.params[i]
            for _ in range(TRIALS):
                z = p.start_z[torch.randint(len(p.start_z), (1,), generator=g)]
                h = c = torch.zeros(1, m.hidden)
                steps = 0
                while steps < max_steps:
                    action = model_input(controller(row, torch.cat([z, h], -1)))
                    h, c = torch.lstm_cell(torch.cat([z, action], -1), (h, c), *self.weights)
                    mixture = m.mixture(h)
                    z = sample_mixture(mixture, TAU, g)
                    steps += 1
                    if float(mixture.done_logits) > 0:
                        break
                lengths.append(steps)
        seconds = time.perf_counter() - t0
        lengths = np.array(lengths)
        return seconds, lengths, int(lengths.sum())


CLASSES: dict[str, Callable[[Problem], Method]] = {BATCHED: Batched, PER_CANDIDATE: PerCandidate, ENV: Env,
                                                   BATCH1: Batch1, LEAN: Lean}


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------

@dataclass
class Cell:
    """One method's timed runs."""

    candidates: int
    seconds: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)          # dream steps per run
    row_steps: list[int] = field(default_factory=list)      # model row-steps computed per run
    lengths: list[np.ndarray] = field(default_factory=list)

    def rates(self) -> list[float]:
        return [s / t for s, t in zip(self.steps, self.seconds)]

    def rate(self) -> float:
        return statistics.median(self.rates())

    def all_lengths(self) -> np.ndarray:
        return np.concatenate(self.lengths)


class Bench(Run):
    def __init__(self, args):
        self.args = args
        self.device = args.device
        self.cells: dict[str, Cell] = {}
        self.checks: list[str] = []
        self.problem: Problem | None = None
        self.runtime = 0.0

    def candidates(self, name: str) -> int:
        a = self.args
        if name == BATCHED:
            return POPULATION
        if name == PER_CANDIDATE:
            return min(POPULATION, 4 * a.subset)
        return min(POPULATION, a.subset)

    def run(self) -> None:
        self.t0 = time.perf_counter()
        a = self.args
        self.problem = p = make_problem(a.hidden, self.device)
        self.log(f"problem ready (hidden {a.hidden}, done scale {p.done_scale:.3g}, threshold {p.done_quantile:.3f})")
        methods = {n: CLASSES[n](p) for n in a.methods}
        if LEAN in methods:
            self.checks.append(methods[LEAN].check())
        for name, m in methods.items():
            m.run(SEED + 999, POPULATION if name == BATCHED else 1, WARMUP_STEPS)
            self.cells[name] = Cell(self.candidates(name))
        self.log("warmed up")
        order = list(methods)
        for r in range(a.repeats):
            seed = SEED + 1000 + r
            for name in rotated(order, r):
                cell = self.cells[name]
                seconds, lengths, row_steps = methods[name].run(seed, cell.candidates, MAX_STEPS)
                cell.seconds.append(seconds)
                cell.steps.append(int(lengths.sum()))
                cell.row_steps.append(row_steps)
                cell.lengths.append(lengths)
            self.log(f"repeat {r + 1}/{a.repeats}: " + ", ".join(
                f"{n} {c.steps[-1] / c.seconds[-1]:,.0f} steps/s" for n, c in self.cells.items()))
        self.runtime = time.perf_counter() - self.t0

    def generation_steps(self) -> float:
        """Dream steps of one generation: the median over the batched generations timed, else 1,024 x the
        mean length over every timed dream."""
        if BATCHED in self.cells:
            return float(statistics.median(self.cells[BATCHED].steps))
        pooled = np.concatenate([c.all_lengths() for c in self.cells.values()])
        return POPULATION * TRIALS * float(pooled.mean())


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def fmt(v: float) -> str:
    return f"{v:,.2f}" if v < 10 else f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def device_note(bench: Bench) -> str:
    if bench.device.type == "cuda":
        return (f"; device {torch.cuda.get_device_name(bench.device)} (`{bench.device}`) for the batched and "
                "per-candidate methods, the batch-1 methods on the CPU; host `torch.set_num_threads(1)`")
    return "; CPU, `torch.set_num_threads(1)` (no GPU here: `--device cuda` is supported but was not run)"


def report(bench: Bench, argv: list[str], load_before: str) -> str:
    import pymbrl

    a, p = bench.args, bench.problem
    cells = bench.cells
    gen = bench.generation_steps()
    lines = header("World Models: a CMA-ES generation in the dream, batched vs one at a time", "bench_world_models.py",
                   argv, load_before, machine_note=device_note(bench), runtime=bench.runtime)
    lines += [
        f"- pymbrl {pymbrl.__version__}: `pymbrl.rollout.dream.dream_rollouts`, `pymbrl.rollout.dream_env.DreamEnv`; "
        f"gymnasium {gym.__version__}",
        f"- Setup (Doom TakeCover sizes): `MDNRNN(z_dim={Z_DIM}, action_dim={ACTIONS}, hidden={a.hidden}, "
        f"mixtures={MIXTURES})`, untrained, eval mode; linear `Controller({Z_DIM + a.hidden}, {ACTIONS})` "
        f"({p.controller.num_params} parameters); `Discrete({ACTIONS})` actions through "
        f"`ActionCodec.model_input`; tau {TAU}, dreams capped at {MAX_STEPS:,} steps; a generation = "
        f"{POPULATION} fixed candidates (N(0, {SIGMA}^2) parameters) x {TRIALS} trials = "
        f"{POPULATION * TRIALS:,} dreams, from {START_LATENTS:,} fixed N(0, 1) start latents.",
        f"- Dream lengths: the done row of M's head scaled by {p.done_scale:.3g} (its output std 1 over a pilot of "
        f"{PILOT_DREAMS} dreams) with bias {-p.done_quantile:.3f} (the 1 - 1/{TARGET_HAZARD} quantile), so that a "
        "dream ends when h, moved by the sampled z, pushes the logit over 0; the same model for every method "
        "(lengths measured below).",
        f"- Medians over {a.repeats} repeat{'s' if a.repeats > 1 else ''}, the methods interleaved in a rotating "
        f"order, after one untimed warm-up each (dreams capped at {WARMUP_STEPS} steps: the whole generation for the "
        "batched call, one candidate for the others); each repeat gives every method a generator with the same seed.",
        "",
        "Dream steps per second (dream steps dreamt / seconds; higher is better) and seconds per generation:",
        "",
        "| method | dreams per timed run | dream steps / s | s per generation | batched speed-up |",
        "|---|---:|---:|---:|---:|",
    ]
    batched_rate = cells[BATCHED].rate() if BATCHED in cells else None
    for name, cell in cells.items():
        rate = cell.rate()
        whole = cell.candidates == POPULATION
        dreams = f"{cell.candidates * TRIALS:,}" + ("" if whole else f" ({cell.candidates} of {POPULATION} candidates)")
        if name == BATCHED:
            seconds = fmt(statistics.median(cell.seconds))
        else:
            seconds = fmt(gen / rate) + ("" if whole else "*")
        speedup = ratio(batched_rate, rate) if batched_rate else NA
        lines.append(f"| {METHODS[name]} | {dreams} | {fmt(rate)} | {seconds} | {speedup} |")
    source = ("the median of the batched generations" if BATCHED in cells
              else f"{POPULATION * TRIALS:,} x the mean length of every timed dream")
    lines += ["", f"\\* Extrapolated per dream step: {gen:,.0f} dream steps per generation ({source}) / the method's "
              "dream steps per second. The speed-up is the ratio of dream steps per second."]
    if BATCHED in cells and BASELINE in cells:
        r = batched_rate / cells[BASELINE].rate()
        verdict = "**met**" if r >= TARGET else "**not met**"
        rs = sorted(b / e for b, e in zip(cells[BATCHED].rates(), cells[BASELINE].rates()))
        lines += ["", "Target:", "",
                  f"- batched at least {TARGET}x the one-at-a-time `DreamEnv` loop: {verdict} ({r:,.1f}x; per "
                  f"repeat {', '.join(f'{x:,.1f}x' for x in rs)})."]
        if BATCH1 in cells:
            lines.append(f"- against `dream_rollouts` at batch 1: {ratio(batched_rate, cells[BATCH1].rate())}.")
        if LEAN in cells:
            lines.append(f"- against the lean batch-1 loop (not what the target names: the leanest "
                         f"one-at-a-time loop with the same model, so the speed-up purely from batching): "
                         f"{ratio(batched_rate, cells[LEAN].rate())}.")
    lines += ["", "Dream lengths (every timed dream) and the work done:", "",
              "| method | dreams | mean length (± s.e.) | median | reached the cap | dream steps per run (median) | "
              "model row-steps per dream step |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for name, cell in cells.items():
        ls = cell.all_lengths()
        se = ls.std(ddof=1) / np.sqrt(len(ls)) if len(ls) > 1 else 0.0
        work = sum(cell.row_steps) / sum(cell.steps)
        lines.append(f"| {METHODS[name]} | {len(ls):,} | {ls.mean():.1f} ± {se:.1f} | {np.median(ls):.0f} | "
                     f"{(ls >= MAX_STEPS).mean():.2%} | {statistics.median(cell.steps):,.0f} | {work:.3f} |")
    lines += ["", "Model row-steps: batch rows M computed, summed over steps (from the lengths, with "
              "`dream_rollouts`' rule: ended dreams stay in the batch, masked, until the check every 16 steps "
              "finds under 3/4 of it alive; a batch-1 call runs on to the next check). DreamEnv and the lean loop "
              "stop at the end of each dream."]
    if BATCHED in cells:
        s = cells[BATCHED].steps
        lines += ["", f"Dream steps per batched generation: median {statistics.median(s):,.0f} (min {min(s):,}, "
                  f"max {max(s):,})."]
    if bench.checks:
        lines += ["", "Checks: " + "; ".join(bench.checks) + "."]
    noisy = [f"{n} ({spread(c.rates()):.0%})" for n, c in cells.items() if spread(c.rates()) > 0.5]
    if noisy:
        lines += ["", "Noisy rows (max - min of the rates over the repeats above 50% of the median): "
                  + ", ".join(noisy) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "2 repeats, the slow methods on 1 candidate (4 per candidate)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per method (default 5, 2 with --quick)")
    parser.add_argument("--subset", type=int, default=None,
                        help="candidates (x 16 trials) the batch-1 methods run on; the per-candidate loop gets 4x "
                             "(default 2, 1 with --quick)")
    parser.add_argument("--hidden", type=int, default=256, choices=[256, 512],
                        help="M's LSTM units: 256 (the project's CPU preset, default) or 512 (the paper's Doom size)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated subset of {','.join(METHODS)} (default: all)")
    parser.add_argument("--device", default="cpu",
                        help="where the batched and per-candidate methods run: cpu (default) or cuda[:N] (the "
                             "batch-1 methods stay on the CPU)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.methods = names(args.methods, tuple(METHODS), "methods", parser)
    args.device = parse_device(args.device, parser)
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.subset = args.subset or (1 if args.quick else 2)
    if args.repeats < 1 or not 1 <= args.subset <= POPULATION:
        parser.error(f"--repeats must be >= 1 and --subset between 1 and {POPULATION}")
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    section = SECTION if args.hidden == 256 else f"{SECTION}-h{args.hidden}"
    run_and_publish(Bench(args), report, argv, output, section_name(section, args.device))


if __name__ == "__main__":
    main()
