"""Benchmark I2A's imagination: pymbrl's batched per-action rollouts vs the seed code's loop over actions.

The issue's target: imagining the rollouts of every state x first action as one batch (a Python loop over the
L steps only) at least 5x faster than the I2A seed code's loop over the actions, on the CPU and on a GPU.

Setup (MiniPacman sizes, Weber et al. 2017), built once, untimed, from torch seed 0:

- the environment model: ``pymbrl.models.env_model.EnvModel(frame_shape=(3, 15, 19), num_actions=5,
  channels=16, blocks=1, pool_and_inject=True)`` in eval mode, untrained (training changes its weights, not
  its cost);
- the rollout policy, frames [N, 3, 15, 19] -> logits [N, 5]: the I2A agent's own ``rollout_policy``
  (``make_agent("i2a", I2AConfig(rollout_length=5), model).rollout_policy``: a 3x3 conv of 16 channels, a
  3x3 conv of stride 2, flatten, a linear layer to 5 logits) when ``pymbrl.agents.i2a`` imports, else an
  equivalent ``nn.Sequential`` of the same layers and sizes defined here (the report says which);
- B = 64 start states: random frames in [0, 1] from a fixed generator (the cost does not depend on what they
  show); A = 5 actions; rollouts of L = 5 steps (the issue's setting; ``I2AConfig`` defaults to 3).

Methods, each returning the same ``ActionRollouts`` (imagined frames [L, B, A, 3, 15, 19], rewards and actions
[L, B, A]) from the same model and rollout policy, the later actions sampled from the policy's softmax with a
torch generator seeded alike for every method (the draws come in a different order, so sampled rollouts agree
in distribution, not row for row):

- batched: ``pymbrl.rollout.per_action.per_action_rollouts(model, policy, frames, 5, generator=g)``: the
  B x A rows as one batch, L model calls and L - 1 policy calls;
- loop over actions (what the I2A seed code does): for each first action in a Python loop, the B states
  rolled L steps (batch B per call: A x L model calls, A x (L - 1) policy calls), the results stacked;
- loop over actions and states: one state, one action, one step per call (batch 1). Its cost per imagined
  step does not depend on B, so it runs on the first ``--subset`` states (default 8) and its time per call is
  extrapolated per imagined step to the B states.

Imagined steps per second (B x A x L per call / seconds) is the measure; the speed-up is the batched rate over
each method's rate. Each repeat runs every (method, B) once, the order rotating, after one untimed warm-up
each; the tables give medians over the repeats (7 by default). Before timing, the benchmark checks (asserts)
that with ``sample=False`` (the policy's argmax) the batched call and the loop over actions give the same
actions and the same frames and rewards to float tolerance (and the batch-1 loop on its subset), so that the
methods compute the same thing.

Also measured (informational): the same two methods at B = 1, 16 (the agent's ``num_envs``) and 256; the cost
per row of one ``EnvModel.predict`` call by batch size (which explains the CPU result); and, when
``pymbrl.agents.i2a`` imports, the whole agent's forward (imagination, rollout encoder, model-free path and
heads) at batch 16 and 64, with the share of it spent imagining.

By default everything runs on the CPU with ``torch.set_num_threads(1)``, under ``torch.inference_mode()``.
With ``--device cuda`` the model, the policy, the frames and the generators live on the GPU, every method
included (the batch-1 loop is what a naive port runs there), and the clock is read after
``torch.cuda.synchronize()``; such a run writes its own section (``i2a-cuda``).

It prints a markdown report and writes it into ``bench/RESULTS.md`` between ``<!-- i2a:begin -->`` and
``<!-- i2a:end -->``, keeping the rest of the file.

Usage::

    make bench                            # or, with pymbrl importable:
    python bench/bench_i2a.py             # full run, under a minute on a 2-core VM
    python bench/bench_i2a.py --quick     # smoke test: 2 repeats, B = 64 only; writes no file unless --output
    python bench/bench_i2a.py --device cuda
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import (  # noqa: E402
    DEFAULT_OUTPUT,
    Run,
    bench_parser,
    clock,
    header,
    parse_device,
    ratio,
    rotated,
    run_and_publish,
    section_name,
    short,
    spread,
)
from pymbrl.models.env_model import EnvModel  # noqa: E402
from pymbrl.rollout.per_action import ActionRollouts, per_action_rollouts  # noqa: E402

try:  # the agent needs pymbrl.envs.minipacman (its MAP); without it the benchmark uses an equivalent policy
    from pymbrl.agents.i2a import I2AConfig, make_agent
    I2A_ERROR: str | None = None
except ImportError as e:  # pragma: no cover - depends on the tree
    I2AConfig = make_agent = None
    I2A_ERROR = short(e)

torch.set_num_threads(1)

SECTION = "i2a"
FRAME_SHAPE = (3, 15, 19)
ACTIONS, BATCH, LENGTH, CHANNELS = 5, 64, 5, 16
SWEEP = (1, 16, 64, 256)
"""Batch sizes B at which batched and the loop over actions are timed (BATCH is the headline)."""
MODEL_ROWS = (1, 5, 64, 320, 1280)
"""Rows of the ``EnvModel.predict`` calls timed alone: batch 1, B = 1 batched, the loop over actions at B = 64,
batched at B = 64 and at B = 256."""
AGENT_BATCHES = (16, 64)
TARGET = 5
"""The issue's target: batched at least 5x the loop over actions (CPU and GPU)."""
SEED = 0

METHODS = {
    "batched": "pymbrl batched (`per_action_rollouts`, B x A rows per call)",
    "actions": "loop over actions (the seed code; B rows per call)",
    "single": "loop over actions and states (1 row per call)",
}
"""Method name -> row label, in report order."""
BATCHED, LOOP_ACTIONS, LOOP_SINGLE = METHODS


# --------------------------------------------------------------------------------------------
# The shared model, policy and frames
# --------------------------------------------------------------------------------------------

@dataclass
class Problem:
    model: EnvModel          # on ``device``, eval mode, no gradients
    policy: nn.Module        # frames float [N, 3, 15, 19] -> logits [N, 5], on ``device``
    policy_source: str
    frames: torch.Tensor     # float [max(SWEEP, AGENT_BATCHES), 3, 15, 19] in [0, 1], on ``device``
    device: torch.device
    agent: nn.Module | None  # the whole I2A agent (sharing model and policy), when pymbrl.agents.i2a imports
    agent_note: str


def conv_policy(frame_shape: tuple[int, int, int], channels: int, actions: int) -> nn.Sequential:
    """The I2A agent's rollout policy, layer for layer (``ConvFeatures`` + a linear layer), for a tree where
    ``pymbrl.agents.i2a`` cannot be imported."""
    c, h, w = frame_shape
    return nn.Sequential(nn.Conv2d(c, channels, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(channels * ((h + 1) // 2) * ((w + 1) // 2), actions))


def make_problem(device: torch.device, seed: int = SEED) -> Problem:
    """Built on the CPU (the same weights and frames whatever the device), then moved to ``device``."""
    torch.manual_seed(seed)
    model = EnvModel(FRAME_SHAPE, ACTIONS, channels=CHANNELS, blocks=1, pool_and_inject=True)
    model.eval().requires_grad_(False)
    torch.manual_seed(seed + 1)
    agent, note = None, ""
    if make_agent is not None:
        try:
            agent = make_agent("i2a", I2AConfig(rollout_length=LENGTH), model).eval().requires_grad_(False)
        except Exception as e:  # noqa: BLE001 - reported, the rest of the benchmark does not need the agent
            note = short(e)
    else:
        note = I2A_ERROR or "?"
    if agent is not None:
        policy, source = agent.rollout_policy, "the I2A agent's `rollout_policy` (`make_agent(\"i2a\", ...)`)"
    else:
        policy = conv_policy(FRAME_SHAPE, CHANNELS, ACTIONS).eval().requires_grad_(False)
        source = (f"an equivalent `nn.Sequential` defined in the benchmark (`pymbrl.agents.i2a` unavailable: "
                  f"{note})")
    size = max(*SWEEP, *AGENT_BATCHES)
    frames = torch.rand(size, *FRAME_SHAPE, generator=torch.Generator().manual_seed(seed))
    if agent is not None:
        agent.to(device)
    return Problem(model.to(device), policy.to(device), source, frames.to(device), device, agent, note)


# --------------------------------------------------------------------------------------------
# Methods: ``(model, policy, frames [B, C, H, W], sample, generator) -> ActionRollouts [L, B, A, ...]``
# --------------------------------------------------------------------------------------------

def batched(model: EnvModel, policy: nn.Module, frames: torch.Tensor, sample: bool,
            generator: torch.Generator) -> ActionRollouts:
    return per_action_rollouts(model, policy, frames, LENGTH, sample=sample, generator=generator)


def next_action(policy: nn.Module, x: torch.Tensor, sample: bool, generator: torch.Generator) -> torch.Tensor:
    """The rollout policy's action on frames ``x``: sampled from its softmax, or its argmax (as
    ``per_action_rollouts`` does)."""
    logits = policy(x)
    if sample:
        return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)
    return logits.argmax(-1)


def rollout(model: EnvModel, policy: nn.Module, frames: torch.Tensor, first: torch.Tensor, sample: bool,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One first action for every row of ``frames`` [N, ...], then L - 1 policy steps: frames [L, N, ...],
    rewards [L, N], actions [L, N]."""
    x, action = frames, first
    out_frames, out_rewards, out_actions = [], [], []
    for step in range(LENGTH):
        if step > 0:
            action = next_action(policy, x, sample, generator)
        x, reward = model.predict(x, action)
        out_frames.append(x)
        out_rewards.append(reward)
        out_actions.append(action)
    return torch.stack(out_frames), torch.stack(out_rewards), torch.stack(out_actions)


def loop_actions(model: EnvModel, policy: nn.Module, frames: torch.Tensor, sample: bool,
                 generator: torch.Generator) -> ActionRollouts:
    """The seed code's imagination: a Python loop over the first actions, the B states batched."""
    per_action = [rollout(model, policy, frames, torch.full((len(frames),), a, dtype=torch.long, device=frames.device),
                          sample, generator) for a in range(model.num_actions)]
    return ActionRollouts(*(torch.stack([r[i] for r in per_action], 2) for i in range(3)))


def loop_single(model: EnvModel, policy: nn.Module, frames: torch.Tensor, sample: bool,
                generator: torch.Generator) -> ActionRollouts:
    """A Python loop over the states and the first actions, every call on one row."""
    firsts = torch.arange(model.num_actions, device=frames.device)[:, None]
    per_state = []
    for b in range(len(frames)):
        per_action = [rollout(model, policy, frames[b:b + 1], firsts[a], sample, generator)
                      for a in range(model.num_actions)]
        per_state.append([torch.stack([r[i] for r in per_action], 2) for i in range(3)])
    return ActionRollouts(*(torch.cat([s[i] for s in per_state], 1) for i in range(3)))


class CheckModel:
    """``0.5 + 0.5 sin(2 frame + model's frame + action shift)`` and the model's reward plus the new frame's mean
    (for the argmax check only: the frames stay distinct over the steps, and the map is smooth and does not
    expand differences in the input frame, so rounding is not amplified)."""

    def __init__(self, model: EnvModel):
        self.model = model
        self.num_actions = model.num_actions

    def predict(self, frames: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nxt, reward = self.model.predict(frames, actions)
        shift = 0.1 * (actions + 1).to(frames.dtype)[:, None, None, None]
        x = 0.5 + 0.5 * torch.sin(2.0 * frames + nxt + shift)
        return x, reward + x.mean((1, 2, 3))


class CheckPolicy(nn.Module):
    """``policy``'s logits plus a fixed random projection of the frame, standardised frame by frame (for the
    argmax check only)."""

    def __init__(self, policy: nn.Module, seed: int = SEED + 2):
        super().__init__()
        self.policy = policy
        size = FRAME_SHAPE[0] * FRAME_SHAPE[1] * FRAME_SHAPE[2]
        self.register_buffer("mix", torch.randn(size, ACTIONS, generator=torch.Generator().manual_seed(seed)))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.flatten(1)
        x = (x - x.mean(1, keepdim=True)) / (x.std(1, keepdim=True) + 1e-6)  # each frame alone: rows independent
        return self.policy(frames) + x @ self.mix


FUNCTIONS: dict[str, Callable[..., ActionRollouts]] = {BATCHED: batched, LOOP_ACTIONS: loop_actions,
                                                       LOOP_SINGLE: loop_single}


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------

@dataclass
class Cell:
    """One (method, B)'s timed calls on ``rows`` states (``rows`` < ``batch``: a subset, extrapolated)."""

    batch: int
    rows: int
    seconds: list[float] = field(default_factory=list)

    @property
    def steps(self) -> int:
        """Imagined steps per timed call: rows x A x L."""
        return self.rows * ACTIONS * LENGTH

    def rates(self) -> list[float]:
        return [self.steps / s for s in self.seconds]

    def rate(self) -> float:
        return statistics.median(self.rates())

    def per_call(self) -> float:
        """Seconds per call on all ``batch`` states (extrapolated per imagined step from a subset)."""
        return self.batch * ACTIONS * LENGTH / self.rate()


class Bench(Run):
    def __init__(self, args):
        self.args = args
        self.device = args.device
        self.cells: dict[tuple[str, int], Cell] = {}
        self.model_rows: dict[int, list[float]] = {}
        self.agent_times: dict[int, tuple[list[float], list[float]]] = {}
        self.checks: list[str] = []
        self.problem: Problem | None = None
        self.runtime = 0.0

    def call(self, name: str, frames: torch.Tensor, seed: int, sample: bool = True,
             model: EnvModel | CheckModel | None = None,
             policy: nn.Module | None = None) -> tuple[float, ActionRollouts]:
        p = self.problem
        g = torch.Generator(self.device).manual_seed(seed)
        t0 = clock(self.device)
        out = FUNCTIONS[name](p.model if model is None else model, p.policy if policy is None else policy, frames,
                              sample, g)
        return clock(self.device) - t0, out

    @torch.inference_mode()
    def check(self) -> None:
        """With an argmax policy (``sample=False``), the loops must give what the batched call gives: the same
        actions, and frames and rewards to float tolerance (convolutions may round differently at different
        batch sizes). Two passes:

        - the benchmark's model and rollout policy as they are. The untrained model contracts: after two steps
          every imagined frame is nearly the same, and the policy's argmax the same action, so this pass
          mostly tests the first steps;
        - the same model and policy wrapped (``CheckModel``, ``CheckPolicy``) so that the frames keep
          differing from row to row and from action to action and the argmax varies: a row sent to the wrong
          state or action at any step shows."""
        p, a = self.problem, self.args
        tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        if self.device.type == "cuda":  # TF32 would round the batch sizes apart by ~1e-3
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        frames = p.frames[:BATCH]
        wrapped = CheckModel(p.model), CheckPolicy(p.policy).to(self.device)
        for label, (model, policy) in (("as benchmarked", (p.model, p.policy)), ("wrapped", wrapped)):
            _, ref = self.call(BATCHED, frames, SEED, sample=False, model=model, policy=policy)
            expected = (LENGTH, BATCH, ACTIONS)
            assert tuple(ref.rewards.shape) == expected and tuple(ref.frames.shape) == (*expected, *FRAME_SHAPE)
            assert bool((ref.actions[0] == torch.arange(ACTIONS, device=self.device)).all()), \
                f"{label}: the first actions are not 0..{ACTIONS - 1} along the action axis"
            found = []
            for name, rows in ((LOOP_ACTIONS, BATCH), (LOOP_SINGLE, a.subset)):
                _, out = self.call(name, frames[:rows], SEED, sample=False, model=model, policy=policy)
                want = ActionRollouts(*(t[:, :rows] for t in ref))
                assert out.frames.shape == want.frames.shape and out.rewards.shape == want.rewards.shape, name
                assert torch.equal(out.actions, want.actions), f"{label}, {name}: the argmax actions differ"
                df = float((out.frames - want.frames).abs().max())
                dr = float((out.rewards - want.rewards).abs().max())
                assert df < 1e-4 and dr < 1e-4, f"{label}, {name}: frames differ by {df:.2e}, rewards by {dr:.2e}"
                found.append(f"{METHODS[name].split(' (')[0]} on {rows} states: same actions, frames within {df:.1e}, "
                             f"rewards within {dr:.1e}")
            last = ref.frames[-1].flatten(2)
            counts = torch.bincount(ref.actions[1:].flatten(), minlength=ACTIONS).tolist()
            found.append(f"spread of the last imagined frames over the B x A rows {float(last.std((0, 1)).mean()):.1e} "
                         f"(mean per-pixel std); actions at steps 2..{LENGTH} per action {counts}")
            self.checks.append(f"{label}: " + ", ".join(found))
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        _, sampled = self.call(BATCHED, frames, SEED)
        counts = torch.bincount(sampled.actions[1:].flatten(), minlength=ACTIONS).tolist()
        self.checks.append(f"sampled actions at steps 2..{LENGTH} of one batched call, per action: {counts}")

    @torch.inference_mode()
    def run(self) -> None:
        self.t0 = time.perf_counter()
        a = self.args
        self.problem = p = make_problem(self.device)
        self.log(f"problem ready; policy: {'agent' if p.agent is not None else 'local'}")
        self.check()
        self.log("checks passed: the methods agree with the argmax policy")
        jobs = [(BATCHED, b) for b in a.batches] + [(LOOP_ACTIONS, b) for b in a.batches] + [(LOOP_SINGLE, BATCH)]
        for name, b in jobs:
            rows = min(b, a.subset) if name == LOOP_SINGLE else b
            self.cells[(name, b)] = Cell(b, rows)
            self.call(name, p.frames[:rows], SEED + 999)
        self.log("warmed up")
        for r in range(a.repeats):
            seed = SEED + 1000 + r
            for name, b in rotated(jobs, r):
                cell = self.cells[(name, b)]
                seconds, _ = self.call(name, p.frames[:cell.rows], seed)
                cell.seconds.append(seconds)
            self.log(f"repeat {r + 1}/{a.repeats}: " + ", ".join(
                f"{n} B={b} {c.steps / c.seconds[-1]:,.0f} steps/s" for (n, b), c in self.cells.items()
                if b == BATCH))
        self.time_model()
        if p.agent is not None:
            self.time_agent()
        self.runtime = time.perf_counter() - self.t0

    def time_model(self) -> None:
        """``EnvModel.predict`` alone, by rows per call (the rows cycle through the actions)."""
        p, a = self.problem, self.args
        rows = [n for n in MODEL_ROWS if not a.quick or n in (1, BATCH, ACTIONS * BATCH)]
        inputs = {}
        for n in rows:
            frames = p.frames.repeat((n + len(p.frames) - 1) // len(p.frames), 1, 1, 1)[:n]
            inputs[n] = (frames, torch.arange(n, device=self.device) % ACTIONS)
            p.model.predict(*inputs[n])
            self.model_rows[n] = []
        for r in range(a.repeats):
            for n in rotated(rows, r):
                t0 = clock(self.device)
                p.model.predict(*inputs[n])
                self.model_rows[n].append(clock(self.device) - t0)
        self.log("model timed alone")

    def time_agent(self) -> None:
        """The whole agent's forward, and its imagination alone, at each of AGENT_BATCHES."""
        p, a = self.problem, self.args
        for n in AGENT_BATCHES:
            frames = p.frames[:n]
            p.agent(frames, torch.Generator(self.device).manual_seed(SEED))
            self.agent_times[n] = ([], [])
        for r in range(a.repeats):
            for n in AGENT_BATCHES:
                frames = p.frames[:n]
                g = torch.Generator(self.device).manual_seed(SEED + r)
                t0 = clock(self.device)
                p.agent(frames, g)
                t1 = clock(self.device)
                per_action_rollouts(p.model, p.policy, frames, LENGTH, generator=g)
                t2 = clock(self.device)
                self.agent_times[n][0].append(t1 - t0)
                self.agent_times[n][1].append(t2 - t1)
        self.log("agent timed")


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def fmt(v: float) -> str:
    return f"{v:,.2f}" if v < 10 else f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def device_note(bench: Bench) -> str:
    if bench.device.type == "cuda":
        return (f"; device {torch.cuda.get_device_name(bench.device)} (`{bench.device}`) for every method; host "
                "`torch.set_num_threads(1)`")
    return "; CPU, `torch.set_num_threads(1)` (no GPU here: `--device cuda` is supported but was not run)"


def report(bench: Bench, argv: list[str], load_before: str) -> str:
    import pymbrl

    a, p, cells = bench.args, bench.problem, bench.cells
    on_gpu = bench.device.type == "cuda"
    params = sum(t.numel() for t in p.model.parameters())
    policy_params = sum(t.numel() for t in p.policy.parameters())
    lines = header("I2A: imagination per first action, batched vs the seed code's loop over actions", "bench_i2a.py",
                   argv, load_before, machine_note=device_note(bench), runtime=bench.runtime)
    lines += [
        f"- pymbrl {pymbrl.__version__}: `pymbrl.rollout.per_action.per_action_rollouts`, "
        "`pymbrl.models.env_model.EnvModel`",
        f"- Setup (MiniPacman sizes): `EnvModel(frame_shape={FRAME_SHAPE}, num_actions={ACTIONS}, "
        f"channels={CHANNELS}, blocks=1, pool_and_inject=True)` ({params:,} parameters), untrained, eval mode; "
        f"rollout policy: {p.policy_source} ({policy_params:,} parameters); B = {BATCH} random start frames, "
        f"A = {ACTIONS} first actions, L = {LENGTH} steps, so {BATCH * ACTIONS * LENGTH:,} imagined steps per "
        "call; later actions sampled from the policy's softmax; `torch.inference_mode()`.",
        f"- Medians over {a.repeats} repeat{'s' if a.repeats > 1 else ''}, every (method, B) once per repeat in "
        "a rotating order, after one untimed warm-up each; each repeat gives every method a generator with the "
        "same seed.",
        "",
        f"B = {BATCH} (the issue's setting). Imagined steps per second (B x A x L / seconds; higher is better):",
        "",
        "| method | rows per model call | model + policy calls per call | ms per call | imagined steps / s | "
        "batched speed-up |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    calls = {BATCHED: (BATCH * ACTIONS, 1), LOOP_ACTIONS: (BATCH, ACTIONS), LOOP_SINGLE: (1, BATCH * ACTIONS)}
    ref = cells.get((BATCHED, BATCH))
    for name, label in METHODS.items():
        cell = cells.get((name, BATCH))
        if cell is None:
            continue
        rows, times = calls[name]
        n_calls = f"{times * LENGTH:,} + {times * (LENGTH - 1):,}"
        ms = fmt(1e3 * cell.per_call()) + ("" if cell.rows == BATCH else "*")
        lines.append(f"| {label} | {rows:,} | {n_calls} | {ms} | {fmt(cell.rate())} | "
                     f"{ratio(ref.rate(), cell.rate())} |")
    single = cells[(LOOP_SINGLE, BATCH)]
    lines += ["", f"\\* Timed on the first {single.rows} of the {BATCH} states ({single.steps:,} imagined steps per "
              f"call) and extrapolated per imagined step to {BATCH} states."]
    loop = cells[(LOOP_ACTIONS, BATCH)]
    r = ref.rate() / loop.rate()
    per_repeat = sorted(x / y for x, y in zip(ref.rates(), loop.rates()))
    verdict = "**met**" if r >= TARGET else "**not met**"
    where = "GPU" if on_gpu else "CPU"
    lines += ["", "Target:", "",
              f"- batched at least {TARGET}x the loop over actions, {where}: {verdict} "
              f"({ratio(ref.rate(), loop.rate())};"
              f" per repeat {', '.join(f'{x:.2f}x' for x in per_repeat)}).",
              "- " + ("CPU: not measured in this run (see the CPU section)." if on_gpu else
                      "GPU: **not measured** (no GPU on this machine; `python bench/bench_i2a.py --device cuda` "
                      "writes the section `i2a-cuda`)."),
              f"- against the batch-1 loop over actions and states: {ratio(ref.rate(), single.rate())}."]
    sweep = [b for b in a.batches if (BATCHED, b) in cells and (LOOP_ACTIONS, b) in cells]
    if len(sweep) > 1:
        lines += ["", "By the number of states B (the same two methods; B = 16 is the agent's `num_envs`):", "",
                  "| B | batched ms per call | loop over actions ms per call | batched speed-up | batched "
                  "imagined steps / s | loop imagined steps / s |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for b in sweep:
            x, y = cells[(BATCHED, b)], cells[(LOOP_ACTIONS, b)]
            lines.append(f"| {b} | {fmt(1e3 * x.per_call())} | {fmt(1e3 * y.per_call())} | "
                         f"{ratio(x.rate(), y.rate())} | {fmt(x.rate())} | {fmt(y.rate())} |")
    if bench.model_rows:
        lines += ["", "`EnvModel.predict` alone, by rows per call (what the methods' calls cost):", "",
                  "| rows per call | ms per call | µs per row |", "|---:|---:|---:|"]
        for n, ts in bench.model_rows.items():
            m = statistics.median(ts)
            lines.append(f"| {n:,} | {fmt(1e3 * m)} | {fmt(1e6 * m / n)} |")
        per_row = {n: statistics.median(ts) / n for n, ts in bench.model_rows.items()}
        if BATCH in per_row and BATCH * ACTIONS in per_row:
            ceiling = per_row[BATCH] / per_row[BATCH * ACTIONS]
            why = (f"a call of {BATCH} rows already spends its time on arithmetic that grows with the rows, not on "
                   "per-call overhead" if ceiling < 1.5 else
                   f"a call of {BATCH} rows still spends much of its time on per-call overhead")
            lines += ["", f"Per row, a call of {BATCH} rows (the loop over actions) costs "
                      f"{fmt(1e6 * per_row[BATCH])} µs and a call of {BATCH * ACTIONS} rows (batched at B = {BATCH}) "
                      f"{fmt(1e6 * per_row[BATCH * ACTIONS])} µs: {ceiling:.2f}x, about what batching the actions can "
                      f"give at B = {BATCH} on this device: {why}."]
            largest = max(per_row)
            if largest > BATCH * ACTIONS and per_row[largest] > 1.3 * min(per_row.values()):
                lines[-1] += (f" The largest calls cost more per row ({fmt(1e6 * per_row[largest])} µs at {largest:,} "
                              f"rows), which is why batched loses at B = {largest // ACTIONS}.")
    if bench.agent_times:
        lines += ["", f"The whole I2A agent's forward (`ActorCritic(frames, generator)`: imagination with L = {LENGTH},"
                  " rollout encoder, model-free path, heads) and its imagination alone "
                  "(`per_action_rollouts` with the agent's model and rollout policy), informational:", "",
                  "| batch | forward ms | imagination ms | imagination share |", "|---:|---:|---:|---:|"]
        for n, (fwd, imag) in bench.agent_times.items():
            f, i = statistics.median(fwd), statistics.median(imag)
            lines.append(f"| {n} | {fmt(1e3 * f)} | {fmt(1e3 * i)} | {i / f:.0%} |")
    elif p.agent_note:
        lines += ["", f"The whole agent's forward was not timed: `pymbrl.agents.i2a` is unavailable ({p.agent_note})."]
    lines += ["", "Checks (`sample=False`, against the batched call; \"wrapped\": the frames mapped to 0.5 + 0.5 "
              "sin(2 x input + the model's frame + an action shift), and the policy's logits plus a fixed random "
              "projection of the standardised frame, so that rows and actions stay distinct over the steps): "
              + "; ".join(bench.checks) + "."]
    noisy = [f"{n} B={b} ({spread(c.rates()):.0%})" for (n, b), c in cells.items() if spread(c.rates()) > 0.5]
    if noisy:
        lines += ["", "Noisy cells (max - min of the rates over the repeats above 50% of the median): "
                  + ", ".join(noisy) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "2 repeats, B = 64 only")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per method and B (default 7, 2 with --quick)")
    parser.add_argument("--subset", type=int, default=8,
                        help=f"states the batch-1 loop runs on (default 8 of {BATCH})")
    parser.add_argument("--device", default="cpu", help="where every method runs: cpu (default) or cuda[:N]")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.device = parse_device(args.device, parser)
    args.repeats = args.repeats or (2 if args.quick else 7)
    args.batches = (BATCH,) if args.quick else SWEEP
    if args.repeats < 1 or not 1 <= args.subset <= BATCH:
        parser.error(f"--repeats must be >= 1 and --subset between 1 and {BATCH}")
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    run_and_publish(Bench(args), report, argv, output, section_name(SECTION, args.device))


if __name__ == "__main__":
    main()
