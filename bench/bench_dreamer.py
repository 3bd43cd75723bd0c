"""Benchmark pymbrl's Dreamer (world-model train step, imagination, whole update) against sheeprl's DreamerV3.

Both libraries get DreamerV3's S sizes (GRU state 512, 32 x 32 categorical latents, 512 hidden units, 2 MLP
layers, CNN multiplier 32), a replayed batch of 16 sequences x 64 steps and imagination horizon 15 from all
16 x 64 = 1,024 posterior states, on two problems:

- vector: 17 float observations (HalfCheetah's size) and 6 continuous actions (the actor's gradient is
  backpropagated through the imagined dynamics in the whole update, as both libraries do for continuous actions);
- image: 64 x 64 x 3 uint8 frames and 6 discrete actions (REINFORCE).

Timed, each on one fixed random batch built untimed (observations, actions, rewards, about 2% episode starts):

- world-model step: the world-model loss on the batch (encoder, the RSSM's filtering loop over the 64 steps,
  decoder, two-hot reward and continue heads, KL balancing with free bits), backward, gradient clipping at 1000
  and the Adam step. pymbrl: ``WorldModel.loss`` and the agent's optimiser; sheeprl: its
  ``world_model_learning`` (see ``bench/dreamer_sheeprl.py``).
- imagination: 15 steps from the 1,024 detached posteriors, each step the actor's sample and the prior step
  of the RSSM, under ``torch.no_grad()``; reported as imagined states per second (1,024 x 15 / seconds).
  pymbrl: ``RSSM.imagine``; sheeprl: its imagination loop.
- imagination + returns: the same plus reward and continue heads, the critic on all states and the
  lambda-returns. pymbrl: ``pymbrl.rollout.imagine``, the slow critic and ``lambda_returns``; sheeprl: its
  ``imagine`` function.
- whole update: world model, imagination with gradients where needed, actor and critic losses and steps, the
  slow critic's update. pymbrl: ``Dreamer.update``; sheeprl: its ``train`` plus the target-critic update.

pymbrl runs eager and compiled (``DreamerConfig(compile=True)``: ``torch.compile`` of each network, the loops
over time and horizon eager); the compile happens in untimed warm-up calls, whose time is reported. Each
measurement is repeated, the drivers interleaved in a rotating order so a burst of load hits them all; the
tables show medians. CPU runs use ``torch.set_num_threads(1)``; ``--device cuda`` moves both libraries to the
GPU and synchronises before reading the clock.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import (  # noqa: E402
    DEFAULT_OUTPUT, Run, bench_parser, header, names, rotated, run_and_publish, short, spread, version)

SECTION = "dreamer"
SIZES = dict(batch=16, length=64, horizon=15, deter=512, groups=32, classes=32, hidden=512, layers=2, cnn_depth=32,
             seed=0)
PROBLEMS = {
    "vector": dict(SIZES, obs="vector", obs_dim=17, action_dim=6, discrete=False),
    "image": dict(SIZES, obs="image", action_dim=6, discrete=True),
}
METRICS = ("train_step", "imagine", "imagine_returns", "full_update")
LABELS = {"train_step": "world-model step (ms)", "imagine": "imagination (imagined states/s)",
          "imagine_returns": "imagination + returns (imagined states/s)", "full_update": "whole update (ms)"}


class Pymbrl:
    """pymbrl's Dreamer on a problem, with the four timed methods."""

    def __init__(self, problem: dict, device: str, compiled: bool):
        from pymbrl.agents.dreamer import Dreamer, DreamerConfig
        from pymbrl.models.dreamer import clipped_step
        from pymbrl.models.rssm import RSSMConfig

        p = problem
        model = RSSMConfig(deter=p["deter"], groups=p["groups"], classes=p["classes"], hidden=p["hidden"],
                           layers=p["layers"], cnn_depth=p["cnn_depth"])
        config = DreamerConfig(model=model, batch_size=p["batch"], batch_length=p["length"], horizon=p["horizon"],
                               device=device, compile=compiled, seed=p["seed"])
        image = p["obs"] == "image"
        obs_shape = (64, 64, 3) if image else (p["obs_dim"],)
        self.agent = Dreamer(obs_shape, p["action_dim"], p["discrete"], config)
        self._step = clipped_step
        self.batch = make_batch(p, device)
        with torch.no_grad():
            _, parts = self.loss()
        self.start = parts["posterior"]
        self.device = device

    def loss(self):
        b = self.batch
        return self.agent.world_model.loss(b["obs"], b["action"], b["reward"], b["first"], b["terminated"])

    def train_step(self) -> None:
        a = self.agent
        loss, _ = self.loss()
        self._step(a.model_opt, loss, list(a.world_model.parameters()), a.config.model_clip)

    @torch.no_grad()
    def imagine(self) -> None:
        a = self.agent
        a.world_model.rssm.imagine(self.start, lambda f: a.actor.sample(f, a.generator), a.config.horizon)

    @torch.no_grad()
    def imagine_returns(self) -> None:
        from pymbrl.rollout import imagine, lambda_returns

        a = self.agent
        traj = imagine(a.world_model, self.start, lambda f: a.actor.sample(f, a.generator), a.config.horizon)
        lambda_returns(traj.rewards, traj.continues, a.slow_critic.value(traj.features))

    def full_update(self) -> None:
        self.agent.update(self.batch)


def make_batch(p: dict, device: str) -> dict[str, torch.Tensor]:
    """A fixed random batch in pymbrl's row convention, [B, T, ...]."""
    g = torch.Generator().manual_seed(p["seed"])
    B, T, A = p["batch"], p["length"], p["action_dim"]
    if p["obs"] == "image":
        obs = torch.randint(0, 256, (B, T, 64, 64, 3), generator=g, dtype=torch.uint8)
    else:
        obs = torch.randn(B, T, p["obs_dim"], generator=g)
    if p["discrete"]:
        action = torch.nn.functional.one_hot(torch.randint(0, A, (B, T), generator=g), A).float()
    else:
        action = torch.rand(B, T, A, generator=g) * 2 - 1
    first = torch.rand(B, T, generator=g) < 0.02
    return {k: v.to(device) for k, v in {"obs": obs, "action": action, "reward": torch.randn(B, T, generator=g),
                                         "first": first, "terminated": torch.zeros(B, T, dtype=torch.bool)}.items()}


class Driver:
    """One library (or pymbrl variant) on one problem: set up lazily, with its timings per metric."""

    def __init__(self, name: str, make, reason: str | None = None):
        self.name, self.make, self.reason = name, make, reason
        self.impl = None
        self.setup_seconds = self.warmup_seconds = 0.0
        self.times: dict[str, list[float]] = {m: [] for m in METRICS}


class Bench(Run):
    def __init__(self, args):
        self.args, self.t0 = args, time.perf_counter()
        self.results: dict[str, dict[str, Driver]] = {}
        self.sheeprl_version = None

    def drivers(self, problem: dict) -> dict[str, Driver]:
        device = self.args.device
        out = {}
        if "pymbrl" in self.args.libs:
            out["pymbrl"] = Driver("pymbrl", lambda: Pymbrl(problem, device, compiled=False))
            out["pymbrl compiled"] = Driver("pymbrl compiled", lambda: Pymbrl(problem, device, compiled=True))
        if "sheeprl" in self.args.libs:
            import dreamer_sheeprl

            self.sheeprl_version = dreamer_sheeprl.available()
            reason = None if self.sheeprl_version else ("not importable (make bench installs it into "
                                                        "build/peers/sheeprl)")
            out["sheeprl"] = Driver("sheeprl", lambda: dreamer_sheeprl.SheeprlDreamer(dict(problem, device=device)),
                                    reason)
        return out

    def sync(self) -> None:
        if self.args.device == "cuda":
            torch.cuda.synchronize()

    def time(self, fn) -> float:
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - start

    def run(self) -> None:
        for pname in self.args.problems:
            drivers = self.drivers(PROBLEMS[pname])
            self.results[pname] = drivers
            for d in drivers.values():
                if d.reason is not None:
                    continue
                try:
                    start = time.perf_counter()
                    d.impl = d.make()
                    d.setup_seconds = time.perf_counter() - start
                    self.log(f"{pname}: {d.name} set up in {d.setup_seconds:.1f} s; warming up")
                    start = time.perf_counter()
                    for metric in METRICS:
                        for _ in range(2):  # the second call catches recompiles for a changed graph
                            getattr(d.impl, metric)()
                    d.warmup_seconds = time.perf_counter() - start
                except Exception as e:  # a peer that fails is reported, not fatal
                    d.reason = short(e)
                    self.log(f"{pname}: {d.name} failed: {d.reason}")
            ready = [d for d in drivers.values() if d.reason is None]
            for r in range(self.args.repeats):
                for d in rotated(ready, r):
                    for metric in METRICS:
                        d.times[metric].append(self.time(getattr(d.impl, metric)))
                self.log(f"{pname}: repeat {r + 1}/{self.args.repeats}")
            for d in drivers.values():
                d.impl = None  # free the models before the next problem

    @property
    def runtime(self) -> float:
        return time.perf_counter() - self.t0


def value(d: Driver, metric: str, problem: dict) -> float:
    """The metric's median: ms for steps and updates, imagined states per second for imagination."""
    seconds = statistics.median(d.times[metric])
    if metric.startswith("imagine"):
        return problem["batch"] * problem["length"] * problem["horizon"] / seconds
    return seconds * 1000


def fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def report(bench: Bench, argv: list[str], load_before: str) -> str:
    a = bench.args
    note = "; `torch.set_num_threads(1)`" if a.device == "cpu" else f"; device {torch.cuda.get_device_name()}"
    lines = header("Dreamer: world-model step and imagination, pymbrl vs sheeprl's DreamerV3", "bench_dreamer.py",
                   argv, load_before, machine_note=note, runtime=bench.runtime)
    import pymbrl

    sheeprl = f"sheeprl {bench.sheeprl_version}" if bench.sheeprl_version else "sheeprl: not installed"
    lines += [f"- pymbrl {pymbrl.__version__}, {sheeprl} (lightning {version('lightning')})",
              f"- Sizes: DreamerV3 S (GRU 512, 32 x 32 latents, 512 hidden x 2 layers, CNN x32), batch 16 x 64, "
              f"horizon 15 from all 1,024 posteriors; medians over {a.repeats} interleaved repeats.", ""]
    for pname, drivers in bench.results.items():
        problem = PROBLEMS[pname]
        what = ("17 float observations, 6 continuous actions" if pname == "vector"
                else "64x64x3 uint8 images, 6 discrete actions")
        ready = {n: d for n, d in drivers.items() if d.reason is None and all(d.times.values())}
        lines += [f"**{pname}** ({what}):", "",
                  "| | " + " | ".join(ready) + " | sheeprl / pymbrl (best) |",
                  "|---|" + "---:|" * (len(ready) + 1)]
        for metric in METRICS:
            cells = {n: value(d, metric, problem) for n, d in ready.items()}
            ours = [v for n, v in cells.items() if n.startswith("pymbrl")]
            if "sheeprl" in cells and ours:
                # higher is better for rates, lower for times; the ratio is always pymbrl's speed-up
                best = max(ours) if metric.startswith("imagine") else min(ours)
                ratio = best / cells["sheeprl"] if metric.startswith("imagine") else cells["sheeprl"] / best
                ratio_text = f"{ratio:.2f}x"
            else:
                ratio_text = "n/a"
            lines.append(f"| {LABELS[metric]} | " + " | ".join(fmt(v) for v in cells.values()) + f" | {ratio_text} |")
        for n, d in drivers.items():
            if d.reason is not None:
                lines.append(f"\n- {n}: {d.reason}")
        warm = ", ".join(f"{n} {d.setup_seconds:.1f} + {d.warmup_seconds:.1f} s" for n, d in ready.items())
        lines += ["", f"Set-up + warm-up (2 calls of each method; includes compiling): {warm}."]
        noisy = [f"{n} {m} ({spread(d.times[m]):.0%})" for n, d in ready.items() for m in METRICS
                 if spread(d.times[m]) > 0.5]
        if noisy:
            lines.append("Noisy (max - min above 50% of the median): " + ", ".join(noisy) + ".")
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "one repeat, vector problem only", ("pymbrl", "sheeprl"))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3, 1 with --quick)")
    parser.add_argument("--problems", default=None, help="comma-separated subset of vector,image (default both)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.libs = names(args.libs, ("pymbrl", "sheeprl"), "libraries", parser)
    args.problems = names(args.problems or ("vector" if args.quick else "vector,image"), tuple(PROBLEMS), "problems",
                          parser)
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    if args.device == "cpu":
        torch.set_num_threads(1)
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    if args.device == "cuda" and args.output is None and not args.quick:
        output = DEFAULT_OUTPUT
    run_and_publish(Bench(args), report, argv, output, SECTION if args.device == "cpu" else f"{SECTION}-{args.device}")


if __name__ == "__main__":
    main()
