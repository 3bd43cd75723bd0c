"""The ``pymbrl`` command line: ``train``, ``play`` and ``list`` for every agent, on the training
layer (:mod:`pymbrl.training`), ``dyna`` (Sutton & Barto's Figure 8.2), ``demo`` (:mod:`pymbrl.demo`) and
``bench`` (microbenchmarks against the installed peers, :mod:`pymbrl.bench`).

A run's settings are its algorithm's config dataclass: defaults, then the env's preset, then the
run directory's ``config.yaml`` (when resuming or continuing), then ``--config FILE``, then each
``--set field=value``, then ``--env``, ``--seed``, ``--device`` and ``--steps``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pymbrl._checks import check_device_available
from pymbrl._extras import MissingExtra, optional_imports


def _dyna(args: argparse.Namespace) -> int:
    from pymbrl._extras import installed, missing_extra
    from pymbrl.dyna.experiments import figure_8_2, steps_table

    # The table needs numpy and torch only; the bar and the plot are drawn where their packages are.
    plot = installed("matplotlib")
    curves, seconds = figure_8_2(args.out if plot else None, seeds=args.seeds, episodes=args.episodes,
                                 planning_steps=args.planning, num_threads=args.threads, progress=installed("tqdm"))
    shown = [e for e in (1, 2, 3, 4, 5, 10, 15, 20, 25, 30, 40, 50) if e <= args.episodes]
    print(f"Dyna-Q on the Dyna maze (Sutton & Barto Figure 8.2): mean steps per episode over {args.seeds} seeds")
    print(steps_table(curves, shown))
    print(f"shortest path: 14 steps; {len(curves)} settings x {args.seeds} seeds x {args.episodes} episodes "
          f"in {seconds * 1000:.0f} ms")
    print(f"plot: {args.out}" if plot else f"plot: not drawn ({missing_extra('matplotlib')})")
    return 0


def _bench(args: argparse.Namespace) -> int:
    print(args.module.benchmark(args.settings))
    return 0


def _check_bench(args: argparse.Namespace) -> None:
    import importlib

    from pymbrl.bench.timing import torch_device

    args.module = importlib.import_module(f"pymbrl.bench.{args.benchmark}")
    args.settings = args.module.user_settings(torch_device(args.device), args.quick)


def _demo(args: argparse.Namespace) -> int:
    from pymbrl import demo

    def write(line: str) -> None:
        print(line, flush=True)
        _Received.raise_again()  # a signal whose exception a library lost stops the demo at its next line

    demo.run(args.out, quick=args.quick, seed=args.seed, write=write)
    return 0


def _check_demo(args: argparse.Namespace) -> None:
    from pymbrl import demo

    args.out = Path(args.out)
    config = demo.agent_config(args.quick, args.seed)  # a refused seed names "seed", read as --seed
    try:
        demo.run_directory(args.out, config)
    except ValueError as error:
        raise ValueError(f"--out: {error}") from None
    _writable(args.out, "--out")


class Reporter:
    """The CLI's :class:`pymbrl.training.Callbacks`: one progress bar per stage (closed when the
    stage is done, so the next stage's bar takes its line), each record written above the bars and
    the stage's learning curve redrawn from its ``log.csv``."""

    def __init__(self, run_dir: Path, title: str):
        self.run_dir, self.title, self.bars = run_dir, title, {}

    def on_stage(self, stage: str) -> None:
        with optional_imports():
            from tqdm import tqdm

        tqdm.write(f"stage {stage}")

    def on_progress(self, stage: str, done: int, total: int) -> None:
        _Received.raise_again()
        with optional_imports():
            from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:  # a resumed stage's bar starts at its checkpoint, whose steps count in no rate
            bar = self.bars[stage] = tqdm(total=total, initial=done, desc=f"{self.title} {stage}", dynamic_ncols=True)
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            self.bars.pop(stage).close()

    def on_record(self, stage: str, record: dict[str, Any]) -> None:
        with optional_imports():
            from tqdm import tqdm

        tqdm.write(f"{stage}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in record.items()))
        self.plot(stage)

    def plot(self, stage: str) -> dict[str, dict[int, float]] | None:
        """The learning curve of the stage whose ``log.csv`` has returns (in the run directory or
        its stage folder), into ``learning_curve.png`` beside it; its mean return by step."""
        from pymbrl.training.curves import plot_learning_curves, read_log

        for folder in (self.run_dir, self.run_dir / stage):
            log = folder / "log.csv"
            if log.is_file():
                records = read_log(log)
                key = "step" if records and "step" in records[0] else "frames"
                if records and "return" in records[0]:
                    history = [{**r, "step": r[key]} for r in records]
                    return plot_learning_curves({self.title: {0: history}}, folder / "learning_curve.png",
                                                title=f"{self.title} ({stage})",
                                                xlabel="env steps" if key == "step" else "env frames")
        return None

    def close(self) -> None:
        while self.bars:
            self.bars.popitem()[1].close()


def _train(args: argparse.Namespace) -> int:
    from pymbrl import agents

    module = agents.module(args.algorithm)
    config, run_dir = args.config, args.run_dir
    reporter = Reporter(run_dir, NAMES[args.algorithm])
    print(f"run directory: {run_dir} (config.yaml, log.csv, TensorBoard events, checkpoints)")
    kwargs = {"stages": args.stages} if args.algorithm in STAGED else {}
    try:
        result = module.train(config, run_dir, callbacks=reporter, **kwargs)
    except FloatingPointError as error:
        print(f"stopped: {error}; the last checkpoint in {run_dir} is kept", file=sys.stderr)
        return 1
    finally:
        reporter.close()
    print(SUMMARIES.get(args.algorithm, _summary)(config, result))
    print(f"next: pymbrl play {args.algorithm} --run-dir {run_dir}")
    return 0


def _summary(config: Any, result: Any) -> str:
    by_step = {r["step"]: round(r["return"], 1) for r in result.history if "return" in r}
    return (f"{NAMES[_algorithm(config)]} on {config.env}, seed {config.seed}: return by step {by_step}\n"
            f"last evaluation: {json.dumps(result.history[-1]) if result.history else None}")


def _algorithm(config: Any) -> str:
    from pymbrl import agents

    return agents.algorithm_of(config)


def _world_models_summary(config: Any, result: Any) -> str:
    s = result.summary
    if "returns" not in s:
        return f"World Models on {config.env}: stages done: {', '.join(result.summary) or 'none to run'}"
    return (f"World Models on {config.env} (controller trained in the {s['train_in']}, tau {s['tau']:g}): "
            f"real score {s['mean']:.1f} +- {s['std']:.1f} over {len(s['returns'])} episodes")


def _i2a_summary(config: Any, result: Any) -> str:
    lines = []
    summary = result.summary
    if "env-model" in summary:
        error = summary["env-model"]["error"]
        lines.append("env model, open-loop error after " + ", ".join(
            f"{k} steps: {c:.2%} of cells, reward MAE {r:.3f}"
            for k, c, r in zip(error["horizons"], error["cell_error"], error["reward_mae"])))
    if "distill" in summary:
        lines.append(f"rollout policy: agrees with the teacher on {summary['distill']['agreement']:.1%} of held-out frames")
    if "agent" in summary:
        record = summary["agent"]
        lines.append(f"{record['name']} on {config.env}, seed {config.seed}: mean return of the last 100 training "
                     f"episodes {record['return']:.2f} at {record['frames']} frames ({record['directory']})")
    return "\n".join(lines) or f"I2A on {config.env}: every selected stage was already done"


def _play(args: argparse.Namespace) -> int:
    import numpy as np

    from pymbrl.training.agent import evaluate

    module, agent, config = args.module, args.agent, args.config
    if hasattr(module, "play") and not args.video:  # an algorithm's own evaluation (MuZero: two-player games)
        print(module.play(agent, config, args.episodes, args.seed))
        return 0
    env = module.make_env(config, render_mode="rgb_array" if args.video else None)
    frames: list | None = [] if args.video else None
    try:
        returns = evaluate(agent, env, args.episodes, args.seed, frames)
    finally:
        env.close()
    print(f"{NAMES[args.algorithm]} on {config.env}: mean return {np.mean(returns):.1f} +- {np.std(returns):.1f} over "
          f"{args.episodes} episodes (deterministic policy)")
    if args.video:
        with optional_imports():
            import imageio.v2 as imageio

        imageio.mimsave(args.video, frames, **({"duration": 1000 / 30} if args.video.suffix == ".gif" else {"fps": 30}))
        print(f"video: {args.video} ({len(frames)} frames)")
    return 0


def _list(args: argparse.Namespace) -> int:
    from pymbrl import agents

    width = max(map(len, agents.ALGORITHMS))
    for name in agents.ALGORITHMS:
        cls = agents.config_class(name)
        presets = ", ".join(cls.PRESETS) or "none"
        stages = f"; stages: {' '.join(agents.module(name).STAGES)}" if name in STAGED else ""
        print(f"{name:<{width}} {NAMES[name]} ({cls.__name__}); default env {cls.DEFAULT_ENV}; "
              f"presets: {presets}{stages}")
    print(f"env aliases: {', '.join(f'{k} = {v}' for k, v in ENV_ALIASES.items())}")
    print("pymbrl train ALGO --help lists every setting of ALGO")
    return 0


# --------------------------------------------------------------------------------------------------
# Argument checks: everything a command can refuse before it starts, so that a refusal is a usage
# error (exit 2) naming the option, and an error raised once training runs is reported as itself.


def _writable(path: Path, option: str) -> None:
    """Refuses ``path`` (a file or a directory the command will write, made with its parents if
    missing) where this user may not write it: the path itself where it exists, else its nearest
    existing ancestor, which must be a directory. Changes nothing."""
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != path.absolute() and not existing.is_dir():
        raise ValueError(f"{option}: cannot make {str(path)!r}: {str(existing)!r} is not a directory")
    if not os.access(existing, os.W_OK | (os.X_OK if existing.is_dir() else 0)):
        read_only = os.statvfs(existing).f_flag & os.ST_RDONLY
        why = "on a read-only file system" if read_only else "not writable by this user"
        raise ValueError(f"{option}: cannot write {str(path)!r}: {str(existing)!r} is {why}")


def _positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected an integer >= 1, got {value}")


def _check_dyna(args: argparse.Namespace) -> None:
    _positive(args, "seeds", "episodes", "threads")
    if any(n < 0 for n in args.planning):
        raise ValueError(f"--planning: expected integers >= 0, got {args.planning}")
    if any(n >= 2**63 for n in args.planning):
        raise ValueError(f"--planning: expected integers < 2**63, got {args.planning}")
    # run_batch's limit on the results it keeps, checked before a list of that many seeds is made.
    if args.seeds * args.episodes > 2**28:
        raise ValueError(f"--seeds, --episodes: expected seeds x episodes <= 2**28, got {args.seeds} x {args.episodes}")
    out = Path(args.out)
    if out.is_dir() or not out.parent.is_dir():
        raise ValueError(f"--out: expected a file path in an existing directory, got {args.out!r}")
    _writable(out, "--out")


def _configured(args: argparse.Namespace) -> Any:
    """The run's config from its layers (see the module docstring), built at once so that settings
    that are valid only together may come from different layers; an error names the option that
    gave the field."""
    from pymbrl import agents
    from pymbrl.training.config import from_dict, parse_assignments, read_values
    from pymbrl.training.run import CONFIG_FILE

    cls = agents.config_class(args.algorithm)
    saved: dict[str, Any] = {}
    if args.run_dir is not None and (Path(args.run_dir) / CONFIG_FILE).is_file():
        saved = read_values(Path(args.run_dir) / CONFIG_FILE)
        if saved.get("algorithm") != args.algorithm:
            raise ValueError(f"--run-dir: {args.run_dir} is a run of {saved.get('algorithm')!r}, not {args.algorithm!r}")
    file: dict[str, Any] = {}
    if args.config is not None:
        try:
            file = read_values(args.config)
        except ValueError as error:
            raise ValueError(f"--config: {error}") from None
        if file.get("algorithm", args.algorithm) != args.algorithm:
            raise ValueError(f"--config: {args.config} is a config of {file['algorithm']!r}, not {args.algorithm!r}")
    try:
        assigned = parse_assignments(args.set)
    except ValueError as error:
        raise ValueError(f"--set: {error}") from None
    flags = {name: getattr(args, name) for name in ("seed", "device", "steps", "actors", "ray_address")
             if getattr(args, name) is not None}
    env = ENV_ALIASES.get(args.env, args.env) or assigned.get("env") or file.get("env") or saved.get("env") \
        or cls.DEFAULT_ENV
    layers = ((saved, "--run-dir"), (file, "--config"), (assigned, "--set"), (flags, None), ({"env": env}, "--env"))
    values: dict[str, Any] = {}
    origin: dict[str, str | None] = {}
    for layer, option in layers:
        for name, value in layer.items():
            if name == "algorithm":
                continue
            if isinstance(value, dict) and isinstance(values.get(name), dict):
                value = {**values[name], **value}
            values[name], origin[name] = value, option
    if not isinstance(env, str):
        raise ValueError(f"{origin['env'] or '--env'}: env: expected a gymnasium env id, got {env!r}")
    try:
        config = from_dict(cls, values, cls.for_env(env))
        check_device_available(config.device)  # as a usage error, not torch's traceback once training starts
        return config
    except (ValueError, TypeError) as error:
        field = str(error).partition(":")[0].partition(".")[0]
        option = origin.get(field, "--config")
        if option is None:  # --seed, --device, --steps name their own field
            raise ValueError(f"--{field.replace('_', '-')}: {str(error).partition(': ')[2]}") from None
        raise ValueError(f"{option}: {error}") from None


def _check_train(args: argparse.Namespace) -> None:
    from pymbrl import agents
    from pymbrl.training.run import check_resumable, check_unclaimed

    if args.run_dir is not None:  # first: what a user who started the same run twice needs to hear
        try:
            check_unclaimed(Path(args.run_dir))
        except ValueError as error:
            raise ValueError(f"--run-dir: {str(error).partition(': ')[2]}") from None
    args.config = _configured(args)
    config = args.config
    args.run_dir = Path(args.run_dir or f"runs/{args.algorithm}-{config.env.replace('/', '-')}-seed{config.seed}")
    module = agents.module(args.algorithm)
    try:
        module.make_env(config).close()
    except ValueError as error:
        raise ValueError(f"--env: {str(error).partition(': ')[2] or error}") from None
    if getattr(config, "actors", 0):
        from pymbrl.distributed.pool import ray_module

        try:
            ray_module()
        except MissingExtra as error:
            raise ValueError(f"--actors: {error}") from None
    try:
        check_resumable(args.run_dir, args.algorithm, config)
    except ValueError as error:
        field, _, rest = str(error).partition(": ")
        option = {"env": "--env", "seed": "--seed", "steps": "--steps", "device": "--device",
                  "run_dir": "--run-dir"}.get(field)
        if option is not None:
            raise ValueError(f"{option}: {rest}") from None
        explicit = field in {a.partition("=")[0].strip() for a in args.set}
        raise ValueError(f"{'--set' if explicit else '--run-dir'}: {error}") from None
    _writable(args.run_dir, "--run-dir")
    if args.algorithm in STAGED:
        module.check_stages(args.run_dir, args.stages or list(module.STAGES), config)
    elif args.stages:
        raise ValueError(f"--stages: {args.algorithm} has no stages")


def _check_play(args: argparse.Namespace) -> None:
    from pymbrl import agents
    from pymbrl.training.run import read_config_of, run_algorithm

    _positive(args, "episodes")
    run_dir = Path(args.run_dir)
    try:
        saved = run_algorithm(run_dir)
    except ValueError as error:
        raise ValueError(f"--run-dir: {str(error).partition(': ')[2]}") from None
    if saved != args.algorithm:
        raise ValueError(f"--run-dir: {str(run_dir)!r} is a run of {saved!r}, not {args.algorithm!r}")
    args.module = agents.module(args.algorithm)
    if args.video is not None:
        args.video = Path(args.video)
        if args.video.suffix not in (".gif", ".mp4") or not args.video.parent.is_dir():
            raise ValueError(f"--video: expected a .gif or .mp4 path in an existing directory, got {str(args.video)!r}")
        _writable(args.video, "--video")
    if args.device is not None:
        check_device_available(args.device, "--device")
    try:
        args.config = read_config_of(run_dir, agents.config_class(args.algorithm), args.algorithm, args.device)
        args.agent = args.module.load(run_dir, device=args.device)
    except ValueError as error:
        raise ValueError(f"--run-dir: {error}") from None


def _usage_message(error: Exception) -> str:
    """The error's message with the library's name of an argument replaced by the option's."""
    message = str(error)
    name, sep, rest = message.partition(": ")
    option = {"env": "--env", "stages": "--stages", "seed": "--seed", "steps": "--steps",
              "device": "--device"}.get(name)
    return f"{option}: {rest}" if sep and option else message


# --------------------------------------------------------------------------------------------------
# Signals


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt, so that both stop a run the same way:
    the stack unwinds (env workers are closed, bars and files too) and the last checkpoint is kept."""


class _Received:
    """The stopping signal this command received, if any. The exception its handler raises can be
    lost on the way up: Python code run by a C library (matplotlib's renderer, a tensor's
    ``__array__`` under numpy) may clear it or replace it with an error of its own. Remembered,
    it is raised again at the run's next report (or the demo's next line, or as the command ends)
    and taken for what it was if another error ends the command."""

    signum: int | None = None

    @classmethod
    def handle(cls, signum: int, frame: object) -> None:
        cls.signum = signum
        cls.raise_again()

    @classmethod
    def raise_again(cls) -> None:
        if cls.signum == signal.SIGTERM:
            raise Terminated
        if cls.signum is not None:
            raise KeyboardInterrupt

    @staticmethod
    def forget_unhandled_interrupt() -> None:
        """CPython marks a KeyboardInterrupt that left code run by ``exec`` or ``eval`` of a string
        (as dataclasses, namedtuple and mpmath build their code) as unhandled, even where the CLI
        caught it, and ``python -m pymbrl`` then ends killed by SIGINT instead of with its exit
        status. Each ``eval`` of a string starts by clearing that mark."""
        eval("None")

    @classmethod
    def unraisable_hook(cls, previous: Any) -> Any:
        """A ``sys.unraisablehook`` that keeps quiet about the signal's exception, raised where
        Python can only report it (a ``__del__``, a weakref callback in matplotlib, a Cython
        ``__dealloc__`` in Ray): remembered, it still stops the run, and the user who pressed
        Ctrl-C sees no traceback. Anything else goes to ``previous``."""

        def hook(unraisable: Any) -> None:
            if not (cls.signum is not None and isinstance(unraisable.exc_value, KeyboardInterrupt)):
                previous(unraisable)

        return hook


@contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt (also where the parent process ignored it, as shells do for
    background jobs) and SIGTERM raises :class:`Terminated`, for the duration of the block."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers are the main thread's
        yield
        return
    previous = {signal.SIGINT: signal.getsignal(signal.SIGINT), signal.SIGTERM: signal.getsignal(signal.SIGTERM)}
    previous_hook = sys.unraisablehook
    _Received.signum = None
    sys.unraisablehook = _Received.unraisable_hook(previous_hook)
    _install_handlers()
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for signum, handler in previous.items():
            if handler is not None:  # None: a handler installed from C, which cannot be put back
                signal.signal(signum, handler)


def _install_handlers() -> None:
    """SIGINT -> KeyboardInterrupt, SIGTERM -> :class:`Terminated` (again after the argument checks,
    which open the env: a game such as ViZDoom may install its own handlers when it starts)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _Received.handle)
        signal.signal(signal.SIGTERM, _Received.handle)


ENV_ALIASES = {"TicTacToe": "pymbrl/TicTacToe-v0"}
NAMES = {"sac": "SAC", "mbpo": "MBPO", "muzero": "MuZero", "sampled-muzero": "Sampled MuZero", "dreamer": "Dreamer",
         "world-models": "World Models", "i2a": "I2A"}
STAGED = ("world-models", "i2a")
BENCHMARKS = ("mcts", "replay", "rollout")
"""``pymbrl bench`` NAME: the module :mod:`pymbrl.bench`.NAME, whose ``user_settings(device, quick)``
checks the options and ``benchmark(settings)`` runs it."""
DISTRIBUTED = ("muzero", "world-models")
SUMMARIES = {"world-models": _world_models_summary, "i2a": _i2a_summary}
ABOUT = {
    "sac": "Soft Actor-Critic (Box actions)",
    "mbpo": "Model-Based Policy Optimization: SAC on branched model rollouts (Box actions)",
    "muzero": "MuZero / Gumbel MuZero by batched self-play on the C++ search (Discrete actions)",
    "sampled-muzero": "Sampled MuZero: search over sampled actions, by batched self-play on the C++ search (Box actions)",
    "dreamer": "Dreamer with DreamerV3's world model (Box or Discrete actions, vectors or frames)",
    "world-models": "World Models: V, M, and C evolved by CMA-ES, in stages (frames)",
    "i2a": "Imagination-Augmented Agents on MiniPacman or Atari, in stages",
}


def _train_parser(sub: Any, name: str, with_fields: bool) -> None:
    """``pymbrl train NAME``; its help lists every field of the algorithm's config (imported only
    when help is asked for, so that other commands do not import every agent)."""
    epilog = None
    if with_fields:
        from pymbrl import agents
        from pymbrl.training.config import describe

        cls = agents.config_class(name)
        presets = f"\npresets (by env id): {', '.join(cls.PRESETS)}" if cls.PRESETS else ""
        epilog = f"settings of {cls.__name__} (--set NAME=VALUE; default shown):\n{describe(cls)}{presets}"
    p = sub.add_parser(name, help=ABOUT[name], description=f"{ABOUT[name]}. Trains with progress, log.csv, "
                       "TensorBoard events, a learning curve and checkpoints in a run directory; the same command again "
                       "resumes from the last checkpoint, and with a larger --steps continues a finished run. Ctrl-C "
                       "(or SIGTERM) stops within seconds and keeps the last checkpoint.",
                       epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default=None, help="gymnasium env id (default: the config's; TicTacToe for "
                                               "pymbrl/TicTacToe-v0)")
    p.add_argument("--config", default=None, help="a YAML or JSON file of settings (as the run's config.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a setting, e.g. --set hidden=64 (dotted for nested settings); repeatable")
    p.add_argument("--seed", type=int, default=None, help="the run's seed (default 0)")
    p.add_argument("--device", default=None, help="cpu (default), cuda, cuda:N or mps")
    p.add_argument("--steps", type=int, default=None, help="the run's env steps (i2a: the agent stage's frames)")
    p.add_argument("--run-dir", default=None, help="default runs/<algorithm>-<env>-seed<seed>")
    if name in DISTRIBUTED:
        p.add_argument("--actors", type=int, default=None,
                       help="Ray actors (MuZero: self-play; World Models: collection and fitness; "
                            "default 0: in this process)")
        p.add_argument("--ray-address", default=None,
                       help="the Ray cluster to join (ray start --head prints it; default: start Ray here)")
    else:
        p.set_defaults(actors=None, ray_address=None)
    if name in STAGED:
        p.add_argument("--stages", nargs="+", default=None, help="the stages to run (default all, in order); each "
                                                                 "resumes from its artefact or checkpoint")
    else:
        p.set_defaults(stages=None)
    p.set_defaults(run=_train, check=_check_train, algorithm=name)


def _parser(help_for: str | None = None) -> argparse.ArgumentParser:
    from pymbrl import __version__, build_info

    info = build_info()
    # The raw formatter keeps the version's two lines apart (argparse reflows text otherwise).
    parser = argparse.ArgumentParser(prog="pymbrl", description="pymbrl: model-based reinforcement learning",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version",
                        version=f"pymbrl {__version__}\ncore: {info['compiler']}, {info['build_type']}, C++ "
                                f"{info['cxx_standard']}, flags '{info['flags'].strip()}', "
                                f"{info['hardware_threads']} hardware threads")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="intra-op threads for any torch work (default 1: faster on small, busy machines)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("dyna", help="Dyna-Q on the Dyna maze: Sutton & Barto's Figure 8.2")
    p.add_argument("--seeds", type=int, default=30, help="independent runs per setting (default 30)")
    p.add_argument("--episodes", type=int, default=50, help="episodes per run (default 50)")
    p.add_argument("--planning", type=int, nargs="+", default=[0, 5, 50], help="planning steps (default 0 5 50)")
    p.add_argument("--threads", type=int, default=None, help="C++ worker threads (default: all hardware threads)")
    p.add_argument("--out", default="dyna_maze.png", help="where to write the PNG plot")
    p.set_defaults(run=_dyna, check=_check_dyna)
    p = sub.add_parser("bench", help="time pymbrl against whichever peers are installed, on this machine",
                       description="Times pymbrl against whichever peers are installed (a missing one is named "
                       "with how to get it) and prints the timings and pymbrl's ratio to each; about a minute. "
                       "mcts: MuZero, Gumbel, Stochastic and Sampled MuZero searches of 256 roots against "
                       "LightZero's compiled trees, mctx and a pure-Python search. replay: adds, uniform, "
                       "prioritized and sequence samples, Atari frames, against cpprb, Stable-Baselines3 and "
                       "TorchRL (CPU only). rollout: MBPO's branched rollouts of a 7-member ensemble against "
                       "mbrl-lib's ModelEnv and a per-state Python loop.")
    p.add_argument("benchmark", choices=BENCHMARKS)
    p.add_argument("--device", default="cpu", help="where the torch models run: cpu (default), cuda or cuda:N")
    p.add_argument("--quick", action="store_true", help="fewer and smaller timings: a smoke test of seconds")
    p.set_defaults(run=_bench, check=_check_bench)
    p = sub.add_parser("demo", help="a first run: the C++ search against pure Python, MuZero learning CartPole, "
                                    "what to run next (under a minute of CPU time)")
    p.add_argument("--out", default="pymbrl-demo", help="folder for the plots and the agent's run directory "
                                                        "(default ./pymbrl-demo)")
    p.add_argument("--quick", action="store_true", help="seconds instead of minutes, far too short to reach the target "
                                                        "(to check that it runs)")
    p.add_argument("--seed", type=int, default=0, help="seeds the searched positions and the agent's run (default 0)")
    p.set_defaults(run=_demo, check=_check_demo)
    p = sub.add_parser("train", help="train an agent (pymbrl list shows them)")
    algorithms = p.add_subparsers(dest="algorithm", required=True, metavar="ALGO")
    for name in NAMES:
        _train_parser(algorithms, name, with_fields=name == help_for)
    p = sub.add_parser("play", help="evaluate a trained run (and render it to a video)")
    p.add_argument("algorithm", choices=list(NAMES))
    p.add_argument("--run-dir", required=True, help="the run directory given to (or made by) pymbrl train")
    p.add_argument("--episodes", type=int, default=10, help="episodes, or games per opponent (default 10)")
    p.add_argument("--seed", type=int, default=0, help="(default 0)")
    p.add_argument("--device", default=None, help="where to run the networks (default: the run's device)")
    p.add_argument("--video", default=None, help="render the episodes into this .gif or .mp4 file")
    p.set_defaults(run=_play, check=_check_play)
    p = sub.add_parser("list", help="the algorithms, their default envs and presets")
    p.set_defaults(run=_list, check=lambda args: None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs a command; returns its exit status: 0, 1 where training stopped on an error it
    reports (a non-finite loss), 130 on Ctrl-C (SIGINT) and 143 on SIGTERM, both of which keep the
    last checkpoint and print the command that resumes. Invalid arguments exit with status 2
    (argparse's usage error) before anything runs, and so does a command whose extra is not
    installed (one line naming it, e.g. ``pymbrl train`` without ``pymbrl[agents]``). Where the
    reader of the output leaves (``pymbrl list | head -3``) the command stops as a tool killed by
    SIGPIPE would, with status 141 and without a traceback (``train`` keeps its last checkpoint and
    prints the command that resumes). Any other error raised while a command runs propagates with
    its traceback. Each line of output is written as it is printed, also to a pipe or a file
    (``pymbrl train ... | tee train.log``), where Python would otherwise hold it in a buffer."""
    status = None
    stdout = sys.stdout  # None where the process started with stdout closed
    line_buffering = getattr(stdout, "line_buffering", None)
    if line_buffering is False:
        stdout.reconfigure(line_buffering=True)
    try:
        try:
            status = _main(list(sys.argv[1:] if argv is None else argv))
        finally:  # also after --help: a reader that left shows here rather than as Python exits
            if stdout is not None:
                stdout.flush()
                if line_buffering is False:
                    stdout.reconfigure(line_buffering=False)
    except MissingExtra as error:
        print(f"pymbrl: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        left = _reader_left()
        # A command that failed or was stopped keeps its status (Ctrl-C under `| tee` stops tee too).
        return status or left
    return status


def _reader_left() -> int:
    """Sends the rest of the output nowhere, so that Python's flush at exit finds no broken pipe
    to report either; returns 128 + SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError, AttributeError):  # a stream without a descriptor (replaced, closed)
            pass
    os.close(devnull)
    return 128 + signal.SIGPIPE


def _main(argv: list[str]) -> int:
    asks_help = len(argv) >= 2 and argv[0] == "train" and any(a in ("-h", "--help") for a in argv)
    parser = _parser(help_for=argv[1] if asks_help else None)
    args = parser.parse_args(argv)
    # Read by torch when (and if) it is first imported.
    os.environ.setdefault("OMP_NUM_THREADS", str(args.torch_threads))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(args.torch_threads)
    resumable = False  # until the checks have made args.run_dir the run's directory
    with _interruptible():
        try:
            try:
                _positive(args, "torch_threads")
                args.check(args)
                resumable = args.command == "train"
            except (ValueError, TypeError) as error:
                _Received.raise_again()  # the error may stand for a signal received during the checks
                parser.error(_usage_message(error))  # exits with status 2
            _install_handlers()
            status = args.run(args)
            # bench, play and dyna have no report at which to raise a lost signal again: it ends them
            # as interrupted once they finish, not with status 0.
            _Received.raise_again()
            return status
        except KeyboardInterrupt as interrupt:
            what = "terminated" if isinstance(interrupt, Terminated) else "interrupted"
        except Exception as error:
            if _Received.signum is not None:
                # Python code that a library ran put an error of its own in place of the signal's exception.
                what = "terminated" if _Received.signum == signal.SIGTERM else "interrupted"
            elif isinstance(error, BrokenPipeError) and resumable:
                what = "stopped: the reader of its output left"
            else:
                raise  # a BrokenPipeError of another command: main() ends it quietly
        _Received.forget_unhandled_interrupt()
        if resumable:
            print(f"{what}; what was saved in {args.run_dir} (the last checkpoint) is kept; resume with: "
                  f"pymbrl train {args.algorithm} --run-dir {args.run_dir}", file=sys.stderr)
        else:
            print(what, file=sys.stderr)
        return {"terminated": 143, "interrupted": 130}.get(what) or _reader_left()


if __name__ == "__main__":
    sys.exit(main())
