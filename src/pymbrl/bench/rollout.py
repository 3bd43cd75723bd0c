"""Model rollout microbenchmark: pymbrl's batched branched rollouts (MBPO) against mbrl-lib's ModelEnv and a
per-state loop.

Measures, in one process, model-transitions per second (model steps computed / seconds) of whole
rollouts from N = 100,000 start states for horizons H = 1, 5 and 15 (MBPO's Hopper schedule grows
the horizon from 1 to 15), each library starting from the start states and the policy in hand and
ending with the rollout's valid transitions (every step up to the one that ends its rollout) picked
out, as a training loop would add them to the policy's replay buffer. Every library uses:

- the same 7-member Gaussian ensemble, 5 elites, 4 hidden layers of 200 with SiLU, predicting
  [delta observation, reward] with a soft-clamped log-variance, input normalisation (MBPO's model):
  pymbrl's ``GaussianEnsemble`` (torch seed 0), its weights copied into the others;
- Hopper sizes, obs 11 / action 3, and the Hopper termination rule (healthy: height > 0.7, |angle|
  < 0.2, the rest of the state within 100);
- one deterministic torch policy, a tanh MLP 11-64-64-3;
- the same start states: a fixed random draw of plausible Hopper states (height 1.0-1.4, angle
  within 0.1, joint angles within 0.3, velocities within 1).

The ensemble is untrained, so its output layer is scaled to behave like a trained one: the mean
outputs by 0.05 (a step moves the state little) and the log-variance outputs by 0.1 around -8
(noise of standard deviation about 0.02); its normaliser is fitted on the start states and their
actions. About 5% of the rollouts then end (the angle leaves its range) within 15 steps.

Peers, each behind a small adapter with ``setup(problem)`` (untimed) and ``rollout(H, seed) ->
(seconds, Summary)``:

- pymbrl: ``pymbrl.rollout.branched_rollout(model, policy, start_obs, H, termination_fn=...,
  generator=...)`` with ``pymbrl.tasks.termination.termination_fn("Hopper-v5")``: each row a random
  elite with its noise, all rows as whole-batch tensor operations, finished rollouts masked.
- mbrl-lib 0.2.0: ``mbrl.models.ModelEnv`` over ``OneDTransitionRewardModel(GaussianMLP(...,
  propagation_method="random_model"))`` configured as its MBPO Hopper example (double-precision input
  normaliser, ``mbrl.env.termination_fns.hopper``), driven as ``mbrl/algorithms/mbpo.py``'s
  ``rollout_model_and_populate_sac_buffer`` does (numpy in and out, the agent on the whole batch).
  On a GPU (``--device cuda``) that means host<->device copies at every step (the observations and
  actions to the device, the predictions, rewards and done flags back to numpy, as ``SACAgent.act``
  and ``ModelEnv.step(return_as_np=True)`` do them): that is what mbrl-lib's MBPO pays, so it is timed.
  mbrl-lib pins gymnasium 0.26 and hydra-core 1.0.3, which breaks on Python 3.11: install it
  without dependencies (``pip install --no-deps mbrl==0.2.0 hydra-core==1.3.8 omegaconf==2.3.0``).
- Python loop: :mod:`pymbrl.bench.rollout_baseline`, one start state at a time with batch-1 calls of the
  policy and of one random elite (its own ``nn.Sequential``). It is slow and its cost per transition
  does not depend on N, so it runs on the first 300 start states only.

By default everything runs on the CPU (run it with ``torch.set_num_threads(1)``). On a CUDA device the
ensemble, the policy and the start states of pymbrl and mbrl-lib live on the GPU (pymbrl's
generators are created there; mbrl-lib's ``GaussianMLP`` gets ``device=``, its ``ModelEnv`` a
generator on the device, as ``mbpo.py`` makes it), and every timing calls
``torch.cuda.synchronize()`` before reading the clock at its start and its end. The Python loop
stays on the CPU even then: batch-1 calls on a GPU would measure kernel-launch latency, not a
loop anyone would run there. Each horizon runs every library
``repeats`` times, the libraries interleaved (their order rotating) so that a burst of load on the
machine hits them all, after one warm-up rollout each; the tables show medians. Afterwards, the
peak resident memory each batched library adds during one rollout at H = 1 and H = 15 is measured
in a fresh child process per rollout (in this process, memory freed by earlier rollouts would be
reused unseen), 3 times each (it varies by tens of MB from run to run). On a device run it is the
device memory instead, in this process: ``torch.cuda.max_memory_allocated()`` during the rollout
minus ``torch.cuda.memory_allocated()`` before it, after ``torch.cuda.reset_peak_memory_stats()``
(the allocator counts the bytes of live tensors, so blocks it reuses from its cache are counted
too); host memory is not measured there.

``bench/bench_rollout.py`` writes the full report into the repository's ``bench/RESULTS.md``;
:func:`benchmark` is ``pymbrl bench rollout``.
"""

from __future__ import annotations

import copy
import multiprocessing
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

import pymbrl
from pymbrl.bench import rollout_baseline
from pymbrl.bench.timing import Run, clock, load, machine, rotated, short, spread, text_table, version
from pymbrl.models import GaussianEnsemble
from pymbrl.rollout import branched_rollout
from pymbrl.tasks.termination import termination_fn

PYMBRL, PYTHON, MBRL = LIBS = ("pymbrl", "Python loop", "mbrl-lib")
"""The libraries by their column names in the tables."""
HORIZONS = (1, 5, 15)
N, QUICK_N = 100_000, 10_000
"""Start states (a multiple of the 5 elites: mbrl-lib's random_model needs one)."""
LOOP_STATES = 300
"""Start states the Python loop runs from (its cost per transition does not depend on N)."""
OBS_DIM, ACT_DIM = 11, 3
ENSEMBLE, ELITES, HIDDEN, LAYERS = 7, 5, 200, 4
POLICY_HIDDEN = 64
ENV_ID = "Hopper-v5"
MEAN_SCALE, LOGVAR_SCALE, LOGVAR_CENTRE = 0.05, 0.1, -8.0
"""How the untrained ensemble's output layer is scaled to move like a trained one (see above)."""
MEMORY_HORIZONS, MEMORY_RUNS = (HORIZONS[0], HORIZONS[-1]), 3
"""Horizons at which the memory a rollout adds is measured, and the child processes (rollouts) per cell."""
WARMUP_SEED = 10_000
"""Seed of each warm-up rollout, the one the sanity table looks at."""
NA = "—"


# --------------------------------------------------------------------------------------------
# The shared model, policy and start states
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    ensemble: GaussianEnsemble   # the weights every library uses, on ``device``
    policy: nn.Module            # float [n, OBS_DIM] -> [n, ACT_DIM] in (-1, 1), on ``device``
    start_obs: torch.Tensor      # float [N, OBS_DIM], on ``device``
    device: torch.device


def make_problem(n: int, seed: int = 0, device: torch.device | None = None) -> Problem:
    """Built on the CPU (the same weights and start states whatever the device), then moved to
    ``device`` (None: the CPU)."""
    device = torch.device("cpu") if device is None else device
    torch.manual_seed(seed)
    ensemble = GaussianEnsemble(OBS_DIM, ACT_DIM, ensemble_size=ENSEMBLE, num_elites=ELITES, hidden=HIDDEN,
                                layers=LAYERS)
    policy = nn.Sequential(nn.Linear(OBS_DIM, POLICY_HIDDEN), nn.Tanh(), nn.Linear(POLICY_HIDDEN, POLICY_HIDDEN),
                           nn.Tanh(), nn.Linear(POLICY_HIDDEN, ACT_DIM), nn.Tanh())
    # Height, torso angle, 3 joint angles, 6 velocities: inside the healthy ranges, not at their edges.
    high = np.array([1.4, 0.1] + [0.3] * 3 + [1.0] * 6)
    low = -high
    low[0] = 1.0
    start = torch.from_numpy(np.random.default_rng(seed).uniform(low, high, (n, OBS_DIM)).astype(np.float32))
    with torch.no_grad():
        ensemble.normalizer.fit(torch.cat([start, policy(start)], dim=1))
        out = ensemble.out_dim
        head = ensemble.head
        head.weight[..., :out] *= MEAN_SCALE
        head.bias[..., :out] *= MEAN_SCALE
        head.weight[..., out:] *= LOGVAR_SCALE
        head.bias[..., out:] = LOGVAR_CENTRE
    ensemble.requires_grad_(False)
    policy.requires_grad_(False)
    return Problem(ensemble.to(device), policy.to(device), start.to(device), device)


class Summary(NamedTuple):
    """What one rollout produced."""

    steps: int         # model steps computed (transitions/s is steps / seconds)
    kept: int          # valid transitions (steps of rollouts not ended before them)
    ended: int         # rollouts ended by the termination rule
    rollouts: int
    reward_std: float  # standard deviation of the valid transitions' rewards (mostly the model's noise)


# --------------------------------------------------------------------------------------------
# Adapters. ``setup(problem)`` prepares inputs (not timed); ``rollout(H, seed)`` runs one whole
# rollout of every start state and returns (seconds, Summary); ``members(obs, act)`` gives every
# member's mean and log-variance [E, n, OBS_DIM + 1], to check that the weights are pymbrl's.
# --------------------------------------------------------------------------------------------

class Adapter:
    name = "?"
    reason: str | None = None   # set when the library cannot be used at all
    subset: int | None = None   # start states used, when not all of them

    def versions(self) -> str:
        raise NotImplementedError

    def setup(self, p: Problem) -> None:
        raise NotImplementedError

    def rollout(self, horizon: int, seed: int) -> tuple[float, Summary]:
        raise NotImplementedError

    def members(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class Pymbrl(Adapter):
    name = PYMBRL

    def versions(self) -> str:
        return f"pymbrl {pymbrl.__version__}: `pymbrl.rollout.branched_rollout`"

    def setup(self, p: Problem) -> None:
        self.model, self.policy, self.start, self.device = p.ensemble, p.policy, p.start_obs, p.device
        self.termination = termination_fn(ENV_ID)

    def rollout(self, horizon, seed):
        generator = torch.Generator(device=self.device).manual_seed(seed)   # random numbers made on the device
        t0 = clock(self.device)
        batch = branched_rollout(self.model, self.policy, self.start, horizon, termination_fn=self.termination,
                                      generator=generator)
        elapsed = clock(self.device) - t0
        n = len(self.start)
        return elapsed, Summary(n * horizon, len(batch.obs), int(batch.terminated.sum()), n, float(batch.reward.std()))


class Python(Adapter):
    """``rollout_baseline.rollout`` on the first LOOP_STATES start states, one member per ``nn.Sequential``;
    always on the CPU (batch-1 calls on a GPU would measure kernel-launch latency)."""

    name = PYTHON
    subset = LOOP_STATES

    def versions(self) -> str:
        return (f"{self.name}: `pymbrl.bench.rollout_baseline` (one start state at a time, batch-1 torch calls; "
                f"first {LOOP_STATES} start states)")

    def setup(self, p: Problem) -> None:
        e = p.ensemble
        self.nets = [rollout_baseline.Member(OBS_DIM, ACT_DIM, hidden=HIDDEN, layers=LAYERS) for _ in range(ENSEMBLE)]
        linears = list(e.hidden) + [e.head]
        with torch.no_grad():
            for k, net in enumerate(self.nets):
                mine = [m for m in net.net if isinstance(m, nn.Linear)]
                for src, dst in zip(linears, mine):
                    # copy_ also copies from a device.
                    dst.weight.copy_(src.weight[k].T)   # ensemble layers hold [in, out], nn.Linear [out, in]
                    dst.bias.copy_(src.bias[k, 0])
                net.input_mean.copy_(e.normalizer.mean)
                net.input_std.copy_(e.normalizer.std)
                net.max_logvar.copy_(e.max_logvar)
                net.min_logvar.copy_(e.min_logvar)
        self.elites = e.elites.tolist()
        self.policy = p.policy if p.device.type == "cpu" else copy.deepcopy(p.policy).cpu()
        self.start = p.start_obs[:self.subset].cpu()
        self.termination = termination_fn(ENV_ID)

    def rollout(self, horizon, seed):
        t0 = time.perf_counter()
        out = rollout_baseline.rollout(self.nets, self.elites, self.policy, self.start, horizon, self.termination,
                                       seed=seed)
        elapsed = time.perf_counter() - t0
        return elapsed, Summary(len(out), len(out), sum(t.terminated for t in out), len(self.start),
                                statistics.stdev(t.reward for t in out))

    def members(self, obs, act):
        with torch.no_grad():
            means, logvars = zip(*(net(obs.cpu(), act.cpu()) for net in self.nets))
        return torch.stack(means), torch.stack(logvars)


class MbrlLib(Adapter):
    """mbrl-lib's ModelEnv, configured and driven as its MBPO (``mbrl/algorithms/mbpo.py``,
    ``examples/conf/algorithm/mbpo.yaml``, ``overrides/mbpo_hopper.yaml``)."""

    name = MBRL

    def __init__(self) -> None:
        try:
            import gymnasium
            import mbrl.env.termination_fns
            import mbrl.models
        except Exception as e:  # hydra/omegaconf of the wrong version fail with other errors than ImportError
            self.reason = (f"not importable ({short(e, 80)}): `pip install --no-deps mbrl==0.2.0 hydra-core==1.3.8 "
                           f"omegaconf==2.3.0` (its pins of gymnasium 0.26 and hydra-core 1.0.3 break on Python "
                           f"3.11)")
            return
        self.gymnasium, self.mbrl = gymnasium, mbrl

    def versions(self) -> str:
        return (f"mbrl-lib {version('mbrl')} (`ModelEnv`, `OneDTransitionRewardModel`, `GaussianMLP`; "
                f"installed without dependencies, with hydra-core {version('hydra-core')}, omegaconf "
                f"{version('omegaconf')}, gymnasium {version('gymnasium')})")

    def setup(self, p: Problem) -> None:
        mbrl, e = self.mbrl, p.ensemble
        self.device = p.device
        mlp = mbrl.models.GaussianMLP(in_size=OBS_DIM + ACT_DIM, out_size=OBS_DIM + 1, device=p.device,
                                      num_layers=LAYERS, ensemble_size=ENSEMBLE, hid_size=HIDDEN, deterministic=False,
                                      propagation_method="random_model",
                                      activation_fn_cfg={"_target_": "torch.nn.SiLU"})
        # Both libraries' ensemble layers hold weight [E, in, out] and bias [E, 1, out], and both heads
        # put the means before the log-variances.
        with torch.no_grad():
            for src, block in zip(e.hidden, mlp.hidden_layers):
                block[0].weight.copy_(src.weight)
                block[0].bias.copy_(src.bias)
            mlp.mean_and_logvar.weight.copy_(e.head.weight)
            mlp.mean_and_logvar.bias.copy_(e.head.bias)
            mlp.max_logvar.copy_(e.max_logvar[None])
            mlp.min_logvar.copy_(e.min_logvar[None])
        model = mbrl.models.OneDTransitionRewardModel(mlp, target_is_delta=True, normalize=True,
                                                      normalize_double_precision=True, learned_rewards=True,
                                                      num_elites=ELITES)
        model.input_normalizer.mean = e.normalizer.mean.double()[None].to(p.device)   # mbrl-lib keeps it on the device
        model.input_normalizer.std = e.normalizer.std.double()[None].to(p.device)
        model.set_elite(e.elites.tolist())
        self.model = model
        # ModelEnv reads only the spaces of the real env.
        box = self.gymnasium.spaces.Box
        env = SimpleNamespace(observation_space=box(-np.inf, np.inf, (OBS_DIM,), np.float32),
                              action_space=box(-1.0, 1.0, (ACT_DIM,), np.float32))
        self.generator = torch.Generator(device=p.device)   # as mbpo.py makes it (device=cfg.device)
        self.env = mbrl.models.ModelEnv(env, model, mbrl.env.termination_fns.hopper, generator=self.generator)
        self.policy = p.policy
        self.start = p.start_obs.cpu().numpy()   # mbrl-lib's replay buffer holds numpy arrays, on the host

    def act(self, obs: np.ndarray) -> np.ndarray:
        """What mbrl-lib's ``SACAgent.act(obs, batched=True)`` does around the actor (pytorch_sac's
        ``select_action``: to torch, to the device, actor, back to numpy on the host)."""
        with torch.no_grad():
            return self.policy(torch.FloatTensor(obs).to(self.device)).detach().cpu().numpy()

    def rollout(self, horizon, seed):
        self.generator.manual_seed(seed)   # the noise
        torch.manual_seed(seed)            # random_model's permutation (mbrl-lib passes it no generator)
        env = self.env
        kept: list[tuple[np.ndarray, ...]] = []
        t0 = clock(self.device)
        # rollout_model_and_populate_sac_buffer, with the valid transitions kept instead of added to a buffer.
        model_state = env.reset(initial_obs_batch=self.start, return_as_np=True)
        accum_dones = np.zeros(self.start.shape[0], dtype=bool)
        obs = self.start
        for _ in range(horizon):
            action = self.act(obs)
            pred_next_obs, pred_rewards, pred_dones, model_state = env.step(action, model_state, sample=True)
            alive = ~accum_dones
            kept.append((obs[alive], action[alive], pred_next_obs[alive], pred_rewards[alive, 0],
                         pred_dones[alive, 0]))
            obs = pred_next_obs
            accum_dones |= pred_dones.squeeze()
        elapsed = clock(self.device) - t0
        n = self.start.shape[0]
        rewards = np.concatenate([k[3] for k in kept])
        return elapsed, Summary(n * horizon, len(rewards), int(sum(k[4].sum() for k in kept)), n, float(rewards.std()))

    def members(self, obs, act):
        with torch.no_grad():
            # What OneDTransitionRewardModel's input preparation does: concatenate, then normalise.
            model_in = self.model.input_normalizer.normalize(torch.cat([obs, act], dim=-1)).float()
            return self.model.model.forward(model_in, use_propagation=False)


ADAPTERS = {PYMBRL: Pymbrl, PYTHON: Python, MBRL: MbrlLib}


# --------------------------------------------------------------------------------------------
# Memory: on the CPU in a fresh child process per rollout; on a device in this process
# --------------------------------------------------------------------------------------------

def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def peak_growth(name: str, n: int, horizon: int) -> float:
    """MB by which one rollout raises the resident-memory peak above the level it started from.

    Runs in a child: the kernel's high-water mark is reset (``/proc/self/clear_refs``) after setup,
    and a fresh process has no freed memory from earlier rollouts to reuse unseen.
    """
    torch.set_num_threads(1)
    ad = ADAPTERS[name]()
    ad.setup(make_problem(n))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kb("VmRSS")
    ad.rollout(horizon, seed=0)
    return (_status_kb("VmHWM") - before) / 1024


def device_peak_growth(ad: Adapter, horizon: int, device: torch.device) -> float:
    """MB by which one rollout raises the device's allocated memory above the level it started from.

    Runs in this process: the caching allocator counts the bytes of live tensors whether their
    blocks are new or reused from its cache, so earlier rollouts hide nothing (unlike the RSS on the
    CPU). Host memory (mbrl-lib's numpy arrays) is not counted.
    """
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    ad.rollout(horizon, seed=0)   # synchronises at its end
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------

@dataclass
class Cell:
    """One library at one horizon: seconds per whole rollout, and what the warm-up rollout produced."""

    seconds: list[float]
    warmup: Summary

    def rate(self) -> float:
        """Model transitions per second from the median time."""
        return self.warmup.steps / statistics.median(self.seconds)

    def spread(self) -> float:
        return spread(self.seconds)


@dataclass(frozen=True)
class Settings:
    """What a :class:`Bench` measures: ``libs`` of :data:`LIBS`, ``n`` start states (a multiple of the
    elites), ``repeats[H]`` timed rollouts per library at each horizon of :data:`HORIZONS`, on torch
    ``device``; ``memory``: also the memory one rollout adds (child processes on the CPU);
    ``loop_states``: the start states of the Python loop (its rate does not depend on how many)."""

    libs: tuple[str, ...] = LIBS
    n: int = N
    loop_states: int = LOOP_STATES
    repeats: dict[int, int] = field(default_factory=lambda: {1: 7, 5: 5, 15: 5})
    device: torch.device = torch.device("cpu")
    memory: bool = True

    def __post_init__(self) -> None:
        unknown = [n for n in self.libs if n not in LIBS]
        if unknown or not self.libs:
            raise ValueError(f"libs: expected a non-empty subset of {list(LIBS)}, got {list(self.libs)}")
        if self.n < 1 or self.n % ELITES:
            raise ValueError(f"n: expected a positive multiple of the {ELITES} elites, got {self.n}")
        if not 1 < self.loop_states <= self.n:   # the reward's standard deviation needs two transitions
            raise ValueError(f"loop_states: expected 2 to n ({self.n}), got {self.loop_states}")
        if any(self.repeats.get(h, 0) < 1 for h in HORIZONS):
            raise ValueError(f"repeats: expected an integer >= 1 for each of {list(HORIZONS)}, got {self.repeats}")


class Bench(Run):
    """One run of :class:`Settings`: ``run()`` fills ``results``, ``memory``, ``checks`` and ``notes``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device: torch.device = settings.device
        self.libs = {name: ADAPTERS[name]() for name in settings.libs}
        if PYTHON in self.libs:
            self.libs[PYTHON].subset = settings.loop_states
        # results[H][lib] -> Cell, or a string saying why there is none
        self.results: dict[int, dict[str, Cell | str]] = {}
        # memory[(lib, H)] -> MB added by each measured rollout, or a string saying why there is none
        self.memory: dict[tuple[str, int], list[float] | str] = {}
        self.checks: list[str] = []
        self.notes: list[str] = []

    def check_weights(self, p: Problem) -> None:
        """Every library's members must predict what pymbrl's do, on the same rows."""
        obs = p.start_obs[:1000]
        with torch.no_grad():
            act = p.policy(obs)
            ref_mean, ref_logvar = p.ensemble(obs, act)
        for name, ad in self.ready().items():
            if name == PYMBRL:
                continue
            mean, logvar = (t.cpu() for t in ad.members(obs, act))
            self.checks.append(f"{name}: max |difference| from pymbrl's member predictions on 1,000 start states: "
                               f"mean {float((mean - ref_mean.cpu()).abs().max()):.1e}, "
                               f"log-variance {float((logvar - ref_logvar.cpu()).abs().max()):.1e}")

    def horizon(self, horizon: int) -> None:
        res = self.results.setdefault(horizon, {})
        libs = {}
        for name, ad in self.ready().items():
            try:   # warm-up: first-touch allocations; also the sanity table
                _, summary = ad.rollout(horizon, seed=WARMUP_SEED)
            except Exception as e:  # a peer's failure must not end the benchmark
                res[name] = f"unavailable ({short(e, 70)})"
                continue
            libs[name] = ad
            res[name] = Cell([], summary)
        order = list(libs)
        for r in range(self.settings.repeats[horizon]):
            # Rotate who goes first, so that no library always runs right after the same other one.
            for name in rotated(order, r):
                seconds, _ = libs[name].rollout(horizon, seed=r)
                res[name].seconds.append(seconds)
        for name, cell in res.items():
            if isinstance(cell, Cell):
                self.log(f"    {name}: {cell.rate():,.0f} transitions/s")

    def breakdown(self, p: Problem) -> None:
        """One step's parts on all N rows (untimed by the tables): where a rollout's time goes."""
        ready = self.ready()
        obs = p.start_obs
        with torch.no_grad():
            act = p.policy(obs)
        parts: dict[str, dict[str, Callable[[], object]]] = {}
        if PYMBRL in ready:
            model, term = p.ensemble, termination_fn(ENV_ID)
            generator = torch.Generator(device=self.device).manual_seed(0)
            nxt, _ = model.sample(obs, act, generator=generator)
            parts[PYMBRL] = {"policy": lambda: p.policy(obs),
                             "`GaussianEnsemble.sample`": lambda: model.sample(obs, act, generator=generator),
                             "termination": lambda: term(obs, act, nxt)}
        if MBRL in ready:
            ad = ready[MBRL]
            state, act_np = ad.env.reset(ad.start, return_as_np=True), act.cpu().numpy()
            parts[MBRL] = {"agent (`SACAgent.act` equivalent)": lambda: ad.act(ad.start),
                           "`ModelEnv.step`": lambda: ad.env.step(act_np, state, sample=True)}
        costs = []
        with torch.no_grad():
            for name, fns in parts.items():
                ms = []
                for what, fn in fns.items():
                    times = []
                    for _ in range(3):
                        t0 = clock(self.device)
                        fn()
                        times.append(clock(self.device) - t0)
                    ms.append(f"{what} {statistics.median(times) * 1e3:,.0f} ms")
                costs.append(f"{name}: " + ", ".join(ms))
        if costs:
            self.notes.append(f"One step's parts on all {self.settings.n:,} rows (median of 3 calls each, after the "
                              "timings, so not interleaved with them): "
                              + "; ".join(costs) + ".")

    def measure_memory(self) -> None:
        if self.device.type != "cpu":
            self.measure_device_memory()
            return
        batched = [n for n in self.ready() if self.libs[n].subset is None]
        # spawn, not fork: the child must start without this process's heap.
        ctx = multiprocessing.get_context("spawn")
        for _ in range(MEMORY_RUNS):   # the runs interleaved, like the timings
            for horizon in MEMORY_HORIZONS:
                for name in batched:
                    runs = self.memory.setdefault((name, horizon), [])
                    if isinstance(runs, str):
                        continue
                    with ctx.Pool(1) as pool:
                        try:
                            runs.append(pool.apply(peak_growth, (name, self.settings.n, horizon)))
                        except Exception as e:
                            self.memory[(name, horizon)] = f"failed ({short(e, 60)})"
        self.log_memory()

    def measure_device_memory(self) -> None:
        """The device memory each batched library adds during one rollout, in this process, with the
        adapters already set up (the Python loop runs on the CPU and is left out)."""
        batched = [n for n in self.ready() if self.libs[n].subset is None]
        for _ in range(MEMORY_RUNS):
            for horizon in MEMORY_HORIZONS:
                for name in batched:
                    runs = self.memory.setdefault((name, horizon), [])
                    if isinstance(runs, str):
                        continue
                    try:
                        runs.append(device_peak_growth(self.libs[name], horizon, self.device))
                    except Exception as e:
                        self.memory[(name, horizon)] = f"failed ({short(e, 60)})"
        self.log_memory()

    def log_memory(self) -> None:
        self.log("memory: " + ", ".join(f"{n} H={h} {v if isinstance(v, str) else [round(x) for x in v]}"
                                        for (n, h), v in self.memory.items()))

    def run(self) -> None:
        self.t0 = time.perf_counter()
        p = make_problem(self.settings.n, device=self.device)
        for ad in self.ready().values():
            ad.setup(p)
        self.check_weights(p)
        for horizon in HORIZONS:
            self.log(f"H={horizon} ...")
            self.horizon(horizon)
        self.breakdown(p)
        if self.settings.memory:
            self.measure_memory()
        self.runtime = time.perf_counter() - self.t0


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def fmt(v: float) -> str:
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def rate_of(bench: Bench, horizon: int, name: str) -> float | str:
    if bench.libs[name].reason is not None:
        return "unavailable"
    cell = bench.results.get(horizon, {}).get(name, NA)
    return cell.rate() if isinstance(cell, Cell) else cell


def ratio(a: float | str, b: float | str) -> str:
    """Rate a over rate b (above 1: a is faster), or why there is none."""
    if isinstance(a, float) and isinstance(b, float) and a > 0 and b > 0:
        r = a / b
        return f"{r:.2f}x" if r < 10 else f"{r:,.1f}x"
    return NA




# --------------------------------------------------------------------------------------------
# pymbrl bench rollout
# --------------------------------------------------------------------------------------------

def user_settings(device: torch.device, quick: bool) -> Settings:
    """What ``pymbrl bench rollout`` runs: every library on ``device``, N = 10,000 start states (the
    Python loop 100 of them) and 3 timed rollouts per horizon (N = 1,000, 20 and 1 with ``quick``),
    without the memory measurement."""
    return Settings(n=1_000 if quick else QUICK_N, loop_states=20 if quick else 100,
                    repeats=dict.fromkeys(HORIZONS, 1 if quick else 3), device=device, memory=False)


def summary(bench: Bench) -> str:
    """A plain-text report of a run: the machine, one line per library that could not run (why, and
    how to get it), model transitions per second of every library at each horizon, and pymbrl's ratio
    to each peer (above 1: pymbrl is faster)."""
    st = bench.settings
    ready = [n for n in bench.libs if bench.libs[n].reason is None]
    peers = [n for n in ready if n != PYMBRL] if PYMBRL in ready else []
    table = [["H", *ready, *(f"{PYMBRL} / {n}" for n in peers)]]
    for horizon in HORIZONS:
        rates = {n: rate_of(bench, horizon, n) for n in ready}
        table.append([str(horizon), *(fmt(v) if isinstance(v, float) else v for v in rates.values()),
                      *(ratio(rates[PYMBRL], rates[n]) for n in peers)])
    where = "CPU" if st.device.type == "cpu" else f"{torch.cuda.get_device_name(st.device)} ({st.device})"
    lines = [f"Branched model rollouts (MBPO) on {where} ({machine()}; 1-minute load average {load()}: other work "
             "on the machine inflates the timings)",
             *(f"  {name}: skipped, {ad.reason}" for name, ad in bench.libs.items() if ad.reason is not None), "",
             f"Model transitions per second from N={st.n:,} start states (model steps / seconds per whole rollout, "
             f"median of {max(st.repeats.values())}; higher is better); a {ENSEMBLE}-member Gaussian ensemble "
             f"({LAYERS} x {HIDDEN}), Hopper sizes and termination:", *text_table(table)]
    if PYTHON in ready:
        lines.append(f"{PYTHON}: the first {st.loop_states} start states, one at a time, on the CPU.")
    return "\n".join(lines + bench.checks + bench.notes)


def benchmark(settings: Settings) -> str:
    """Run ``settings`` with progress lines on stderr; returns the :func:`summary`."""
    bench = Bench(settings)
    bench.run()
    return summary(bench)
