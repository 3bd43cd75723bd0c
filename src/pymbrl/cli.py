"""The ``pymbrl`` command line.

Environment: ``PYMBRL_CONFIG``, a JSON object, overrides fields of the training algorithm's config
dataclass (``SACConfig``, ``MBPOConfig``, ``MuZeroConfig``, ``DreamerConfig``, ``WorldModelsConfig``,
``I2AConfig``; a nested config such as ``MBPOConfig.sac`` as an object of its fields), e.g.
``PYMBRL_CONFIG='{"learning_starts": 100, "hidden": 32}' pymbrl train sac``: small budgets for a
quick look or a test, without an option per field. A run resumes only with the config it started with.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


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


def _train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pymbrl.agents import dreamer, mbpo, muzero, sac
    from pymbrl.agents.curves import plot_learning_curves, read_log

    name = NAMES[args.algorithm]
    train = {"sac": sac.train, "mbpo": mbpo.train, "muzero": muzero.train, "dreamer": dreamer.train}[args.algorithm]
    run_dir = args.run_dir
    bar = None  # drawn at the first step, once the run has started

    def progress(step: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=args.steps, unit="step", dynamic_ncols=True, desc=f"{name} {args.env}")
        bar.update(step - bar.n)  # a resumed run's first step jumps to the checkpoint

    def plot() -> dict[str, dict[int, float]]:
        return plot_learning_curves({name: {args.seed: read_log(run_dir / "log.csv")}}, run_dir / "learning_curve.png",
                                    title=f"{name} on {args.env}")

    def log(record: dict) -> None:
        if bar is not None:
            bar.set_postfix({"return": f"{record['return']:.1f}"})
        plot()

    print(f"run directory: {run_dir} (log.csv, learning_curve.png, checkpoint/)")
    try:
        _, history = train(args.env, args.steps, seed=args.seed, config=args.config, eval_every=args.eval_every,
                           eval_episodes=args.eval_episodes, log=log, run_dir=run_dir,
                           checkpoint_every=args.checkpoint_every, progress=progress)
    except FloatingPointError as error:
        print(f"stopped: {error}; the last checkpoint in {run_dir} is kept", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    print(f"{name} on {args.env}, seed {args.seed}: return by step {plot()[name]}")
    print(f"last evaluation: {json.dumps(history[-1])}")
    return 0


def _stage_bars(unit: Callable[[str], str]) -> tuple[Callable[[str, int, int], None], Callable[[], None]]:
    """``progress(task, done, total)`` drawing one bar per task, closed when the task is done (the
    next task's bar takes its line), and ``close()`` for the bars of unfinished tasks."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def progress(task: str, done: int, total: int) -> None:
        bar = bars.get(task)
        if bar is None:
            bar = bars[task] = tqdm(total=total, desc=task, unit=unit(task), dynamic_ncols=True)
        bar.total = total
        bar.update(done - bar.n)  # a resumed task's first report jumps to its checkpoint
        if done >= total:
            bars.pop(task).close()

    def close() -> None:
        while bars:
            bars.popitem()[1].close()

    return progress, close


def _train_world_models(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pymbrl.agents import world_models as wm

    run_dir = args.run_dir
    progress, close_bars = _stage_bars(lambda stage: "")

    def log(stage: str, record: dict) -> None:
        tqdm.write(f"{stage}: {record}")

    stages = args.stages or list(wm.STAGES)
    print(f"run directory: {run_dir} (data/, vae.pt, mdnrnn.pt, controller_*.pt); stages: {' '.join(stages)}")
    try:
        summary = wm.train(args.env, run_dir, stages=stages, config=args.config, seed=args.seed, log=log,
                           progress=progress)
    finally:
        close_bars()
    if summary:
        print(f"World Models on {args.env} (controller trained in the {summary['train_in']}, tau {summary['tau']:g}): "
              f"real score {summary['mean']:.1f} +- {summary['std']:.1f} over {len(summary['returns'])} episodes")
    return 0


def _train_i2a(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pymbrl.agents import i2a
    from pymbrl.agents.curves import plot_learning_curves, read_log

    run_dir = args.run_dir
    progress, close_bars = _stage_bars(lambda task: "epoch" if "epochs" in task else "frame")

    def plot(name: str) -> None:
        history = [{"step": r["frames"], "return": r["return"]} for r in read_log(run_dir / name / "log.csv")]
        plot_learning_curves({name: {args.seed: history}}, run_dir / name / "learning_curve.png", xlabel="env frames",
                             title=f"{name} on {args.env}: mean return of the last 100 training episodes")

    def log(stage: str, record: dict) -> None:
        tqdm.write(f"{stage}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in record.items()))
        if stage in ("teacher", args.agent, f"{args.agent}-online"):
            plot(stage)

    stages = args.stages or list(i2a.STAGES)
    print(f"run directory: {run_dir} (teacher/, env_model.pt, rollout_policy.pt, {args.agent}/); "
          f"stages: {' '.join(stages)}")
    try:
        summary = i2a.train_stages(run_dir, stages, args.config, agent=args.agent, frames=args.steps,
                                   online_distill=args.online_distill, seed=args.seed, log_every=args.eval_every,
                                   checkpoint_every=args.checkpoint_every, log=log, progress=progress)
    except FloatingPointError as error:
        print(f"stopped: {error}", file=sys.stderr)
        return 1
    finally:
        close_bars()
    if "env-model" in summary:
        error = summary["env-model"]["error"]
        print("env model, open-loop error after " + ", ".join(
            f"{k} steps: {c:.2%} of cells, reward MAE {r:.3f}"
            for k, c, r in zip(error["horizons"], error["cell_error"], error["reward_mae"])))
    if "distill" in summary:
        print(f"rollout policy: agrees with the teacher on {summary['distill']['agreement']:.1%} of held-out frames")
    if "agent" in summary:
        record = summary["agent"]
        print(f"{record['name']} on {args.env}, seed {args.seed}: mean return of the last 100 training episodes "
              f"{record['return']:.2f} at {record['frames']} frames ({record['directory']})")
    return 0


def _play(args: argparse.Namespace) -> int:
    from pymbrl.agents import muzero

    searcher, env_id = args.loaded
    if env_id == ENV_ALIASES["TicTacToe"]:
        scores = muzero.evaluate_two_player(searcher, args.episodes, seed=args.seed)
        for opponent in ("random", "perfect"):
            print(f"MuZero vs the {opponent} player, {args.episodes} games (half as X): {scores[opponent + '_wins']} won, "
                  f"{scores[opponent + '_draws']} drawn, {scores[opponent + '_losses']} lost")
        return 0
    mean = muzero.evaluate(searcher, env_id, args.episodes, seed=args.seed)
    print(f"MuZero on {env_id}: mean return {mean:.1f} over {args.episodes} episodes (greedy search, "
          f"{searcher.config.num_simulations} simulations)")
    return 0


# --------------------------------------------------------------------------------------------------
# Argument checks: everything a command can refuse before it starts, so that a refusal is a usage
# error (exit 2) naming the option, and an error raised once training runs is reported as itself.


def _positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected an integer >= 1, got {value}")


def _unused(args: argparse.Namespace, *names: str) -> None:
    """Refuses options the algorithm does not take, rather than ignoring them."""
    for name in names:
        if getattr(args, name) not in (None, False):
            raise ValueError(f"--{name.replace('_', '-')}: not an option of {args.algorithm}")


def _check_checkpoints(run_dir: Path, *folders: str, identity: dict[str, str] | None = None) -> None:
    """Refuses a run directory that is a file, or whose checkpoint (``<folder>/checkpoint/state.pt``)
    cannot be read or, given the ``identity`` the run would have, is of another run; before a run
    starts in it."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--run-dir: expected a directory, got {str(run_dir)!r}, which is not one")
    from pymbrl.agents.checkpoint import STATE, read_state

    for folder in folders:
        checkpoint = run_dir / folder / "checkpoint"
        if not (checkpoint / STATE).exists():
            continue
        try:
            saved = read_state(checkpoint)["identity"]
        except ValueError as error:  # names the file and what is wrong with it
            raise ValueError(f"--run-dir: {error}; move the checkpoint away to start afresh") from None
        for key, value in (identity or {}).items():
            if key in saved and saved[key] != value:
                option = {"algorithm": "algorithm", "env_id": "--env", "steps": "--steps", "seed": "--seed",
                          "config": CONFIG_VARIABLE}[key]
                shown = "another config" if key == "config" else f"{key} {saved[key]}, not {value}"
                raise ValueError(f"{option}: the checkpoint in {str(run_dir)!r} is of a run with {shown}; pass the "
                                 f"values it was started with to resume it, or another --run-dir")


CONFIG_VARIABLE = "PYMBRL_CONFIG"


def _converted(value: object, like: object, name: str) -> object:
    """A JSON value as the type of the config field's current value ``like``: an object into a
    nested config, lists into tuples."""
    if dataclasses.is_dataclass(like) and not isinstance(value, dict):
        raise ValueError(f"{name}: expected an object of {type(like).__name__} fields, got {value!r:.100}")
    if dataclasses.is_dataclass(like):
        known = {f.name for f in dataclasses.fields(like)}
        if not set(value) <= known:
            raise ValueError(f"{name}: {type(like).__name__} has no field "
                             f"{', '.join(sorted(set(value) - known))}")
        return dataclasses.replace(like, **{k: _converted(v, getattr(like, k), f"{name}.{k}")
                                            for k, v in value.items()})
    if isinstance(like, tuple) and isinstance(value, list):
        return tuple(_converted(v, like[0] if like else None, name) for v in value)
    return value


def _configured(make: Callable[..., object], base: object) -> object:
    """``make(**overrides)``: the config with the fields ``PYMBRL_CONFIG`` overrides in ``base``
    (the config ``make()`` gives), refused naming the variable and the field."""
    text = os.environ.get(CONFIG_VARIABLE, "").strip()
    if not text:
        return base
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{CONFIG_VARIABLE}: expected a JSON object of {type(base).__name__} fields, got {text!r} "
                         f"({error})") from None
    if not isinstance(overrides, dict):
        raise ValueError(f"{CONFIG_VARIABLE}: expected a JSON object of {type(base).__name__} fields, got {text!r}")
    known = {f.name for f in dataclasses.fields(base)}
    if not set(overrides) <= known:
        raise ValueError(f"{CONFIG_VARIABLE}: {type(base).__name__} has no field "
                         f"{', '.join(sorted(set(overrides) - known))}")
    try:
        return make(**{k: _converted(v, getattr(base, k), k) for k, v in overrides.items()})
    except (ValueError, TypeError) as error:
        raise ValueError(f"{CONFIG_VARIABLE}: {error}") from None


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


def _check_train(args: argparse.Namespace) -> None:
    _positive(args, "steps", "eval_every", "eval_episodes", "checkpoint_every")
    if not 0 <= args.seed < 2**64:
        raise ValueError(f"--seed: expected an integer in [0, 2**64), got {args.seed}")
    if args.algorithm not in ("world-models", "i2a"):
        _unused(args, "stages", "tau", "iterations", "agent", "online_distill")
    for key, value in TRAIN_DEFAULTS[args.algorithm].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.env = ENV_ALIASES.get(args.env, args.env)
    args.run_dir = Path(args.run_dir or f"runs/{args.algorithm}-{args.env.replace('/', '-')}-seed{args.seed}")
    if args.algorithm == "sac":
        from pymbrl.agents import sac

        sac.box_env(args.env, "SAC")[0].close()
        args.config = _configured(sac.SACConfig, sac.SACConfig())
    elif args.algorithm == "mbpo":
        from pymbrl.agents import mbpo, sac

        sac.box_env(args.env, "MBPO")[0].close()
        args.config = _configured(lambda **o: mbpo.MBPOConfig.for_env(args.env, **o), mbpo.MBPOConfig.for_env(args.env))
    elif args.algorithm == "dreamer":
        from pymbrl.agents import dreamer

        args.config = _configured(lambda **o: dreamer.DreamerConfig.for_env(args.env, **o),
                                  dreamer.DreamerConfig.for_env(args.env))
        env = dreamer.make_env(args.env)
        try:
            dreamer.env_spaces(env, args.env)
        finally:
            env.close()
    elif args.algorithm == "muzero":
        import gymnasium as gym

        import pymbrl.envs  # noqa: F401  (registers pymbrl/TicTacToe-v0)

        try:
            env = gym.make(args.env)
        except gym.error.Error as error:
            raise ValueError(f"env_id: {error}") from None
        env.close()
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise ValueError(f"env_id: MuZero needs a Discrete action space, {args.env} has {env.action_space}")
        from pymbrl.agents import muzero

        args.config = _configured(lambda **o: muzero.MuZeroConfig.for_env(args.env, **o),
                                  muzero.MuZeroConfig.for_env(args.env))
    _check_checkpoints(args.run_dir, ".", identity={
        "algorithm": NAMES[args.algorithm], "env_id": args.env, "steps": str(args.steps),
        "seed": str(args.seed % 2**31), "config": str(args.config)})


def _check_world_models(args: argparse.Namespace) -> None:
    from pymbrl.agents import world_models as wm

    _unused(args, "steps", "eval_every", "eval_episodes", "checkpoint_every", "agent", "online_distill")
    if args.stages and not set(args.stages) <= set(wm.STAGES):
        raise ValueError(f"stages: expected some of {list(wm.STAGES)}, got {args.stages}")
    args.env = args.env or "VizdoomTakeCover-v1"
    overrides = {name: getattr(args, name) for name in ("tau", "iterations") if getattr(args, name) is not None}
    base = wm.WorldModelsConfig.for_env(args.env, **overrides)
    args.config = _configured(lambda **o: wm.WorldModelsConfig.for_env(args.env, **{**o, **overrides}), base)
    wm.make_env(args.env).close()
    args.run_dir = Path(args.run_dir or f"runs/world-models-{args.env.replace('/', '-')}-seed{args.seed}")
    _check_checkpoints(args.run_dir)
    wm.check_stages(args.run_dir, args.stages or list(wm.STAGES))


def _check_i2a(args: argparse.Namespace) -> None:
    from pymbrl.agents import i2a

    _positive(args, "steps", "eval_every", "checkpoint_every")
    _unused(args, "eval_episodes", "tau", "iterations")
    if args.stages and not set(args.stages) <= set(i2a.STAGES):
        raise ValueError(f"stages: expected some of {list(i2a.STAGES)}, got {args.stages}")
    args.env = args.env or "MiniPacman-regular"
    args.config = _configured(lambda **o: i2a.I2AConfig.for_env(args.env, **o), i2a.I2AConfig.for_env(args.env))
    args.agent = args.agent or "i2a"
    args.steps, args.eval_every = args.steps or 200_000, args.eval_every or 10_000
    args.checkpoint_every = args.checkpoint_every or 50_000
    args.run_dir = Path(args.run_dir or f"runs/i2a-{args.env.replace('/', '-')}-seed{args.seed}")
    online = f"{args.agent}-online" if args.online_distill and args.agent != "a2c" else args.agent
    _check_checkpoints(args.run_dir, "teacher", online)
    i2a.check_stages(args.run_dir, args.stages or list(i2a.STAGES), agent=args.agent,
                     online_distill=args.online_distill)


def _check_play(args: argparse.Namespace) -> None:
    from pymbrl.agents import muzero

    _positive(args, "episodes")
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"--run-dir: expected the run directory of a pymbrl train muzero run, got {str(run_dir)!r}, "
                         f"which {'is not a directory' if run_dir.exists() else 'does not exist'}")
    state = run_dir / "checkpoint" / "state.pt"
    if not state.is_file():
        raise ValueError(f"--run-dir: expected a MuZero checkpoint in {str(run_dir)!r} (checkpoint/state.pt), found "
                         f"none; has a run been started there?")
    try:
        args.loaded = muzero.load(run_dir)
    except Exception as error:  # any failure to read it: the directory does not hold a MuZero run
        raise ValueError(f"--run-dir: the checkpoint {str(state)!r} is not a readable MuZero checkpoint "
                         f"({type(error).__name__}: {error})") from None


def _usage_message(error: Exception) -> str:
    """The error's message with the library's name of an argument replaced by the option's."""
    message = str(error)
    name, sep, rest = message.partition(": ")
    option = {"env_id": "--env", "env": "--env", "stages": "--stages", "tau": "--tau", "iterations": "--iterations",
              "agent": "--agent"}.get(name)
    return f"{option}: {rest}" if sep and option else message


# --------------------------------------------------------------------------------------------------
# Signals


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt, so that both stop a run the same way:
    the stack unwinds (env workers are closed, bars and files too) and the last checkpoint is kept."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


@contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt (also where the parent process ignored it, as shells do for
    background jobs) and SIGTERM raises :class:`Terminated`, for the duration of the block."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers are the main thread's
        yield
        return
    previous = {signal.SIGINT: signal.getsignal(signal.SIGINT), signal.SIGTERM: signal.getsignal(signal.SIGTERM)}
    _install_handlers()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: a handler installed from C, which cannot be put back
                signal.signal(signum, handler)


def _install_handlers() -> None:
    """SIGINT -> KeyboardInterrupt, SIGTERM -> :class:`Terminated` (again after the argument checks,
    which open the env: a game such as ViZDoom may install its own handlers when it starts)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _raise_terminated)


ENV_ALIASES = {"TicTacToe": "pymbrl/TicTacToe-v0"}
NAMES = {"sac": "SAC", "mbpo": "MBPO", "muzero": "MuZero", "dreamer": "Dreamer"}
TRAIN_DEFAULTS = {
    "sac": {"env": "Pendulum-v1", "steps": 10_000, "eval_every": 1000, "eval_episodes": 5, "checkpoint_every": 1000},
    "mbpo": {"env": "Pendulum-v1", "steps": 10_000, "eval_every": 1000, "eval_episodes": 5, "checkpoint_every": 1000},
    "muzero": {"env": "CartPole-v1", "steps": 50_000, "eval_every": 5000, "eval_episodes": 20,
               "checkpoint_every": 5000},
    "dreamer": {"env": "CartPole-v1", "steps": 50_000, "eval_every": 2500, "eval_episodes": 10,
                "checkpoint_every": 5000},
}


def _parser() -> argparse.ArgumentParser:
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
    p.set_defaults(run=_dyna, check=_check_dyna)
    p = sub.add_parser("train", help="train SAC or MBPO (Box actions), MuZero (Discrete actions), Dreamer (either) "
                                     "or World Models (frames) on a gymnasium env",
                       description="Trains with progress, a CSV log, a PNG learning curve and checkpoints in a run "
                                   "directory; the same command again resumes from the last checkpoint. Defaults: "
                                   "sac and mbpo Pendulum-v1, 10000 steps, evaluations of 5 episodes every 1000; "
                                   "muzero CartPole-v1, 50000 steps, 20 episodes every 5000; dreamer CartPole-v1, "
                                   "50000 steps, 10 episodes every 2500; world-models VizdoomTakeCover-v1, in stages "
                                   "(collect, vae, mdn, controller) that can run separately; i2a MiniPacman-regular "
                                   "(or an ALE/<Game>-v5 id), in stages (env-model, distill, agent), 200000 agent "
                                   "frames, logs every 10000, checkpoints every 50000. Ctrl-C (or SIGTERM) stops "
                                   "within seconds, keeps the last checkpoint and prints the command that resumes.",
                       epilog=f"environment: {CONFIG_VARIABLE}, a JSON object, overrides fields of the algorithm's "
                              "config dataclass (SACConfig, MBPOConfig, MuZeroConfig, DreamerConfig, "
                              "WorldModelsConfig, I2AConfig; nested configs as objects), e.g. "
                              f"{CONFIG_VARIABLE}='{{\"learning_starts\": 100, \"hidden\": 32}}' pymbrl train sac")
    p.add_argument("algorithm", choices=["sac", "mbpo", "muzero", "dreamer", "world-models", "i2a"])
    p.add_argument("--env", default=None, help="gymnasium env id; TicTacToe for pymbrl/TicTacToe-v0 (muzero)")
    p.add_argument("--steps", type=int, default=None,
                   help="env steps (summed over MuZero's and Dreamer's vector envs; i2a: the agent stage's frames)")
    p.add_argument("--seed", type=int, default=0, help="(default 0)")
    p.add_argument("--eval-every", type=int, default=None,
                   help="env steps between evaluations (i2a: between log records)")
    p.add_argument("--eval-episodes", type=int, default=None, help="noise-free episodes per evaluation")
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="env steps between checkpoints (SAC and MBPO take them at the next episode end)")
    p.add_argument("--run-dir", default=None, help="default runs/<algorithm>-<env>-seed<seed>")
    p.add_argument("--stages", nargs="+", default=None,
                   help="world-models: some of collect vae mdn controller; i2a: some of env-model distill agent "
                        "(default all); each resumes from its saved artefact or checkpoint")
    p.add_argument("--tau", type=float, default=None, help="world-models: the dream's temperature (default 1.15)")
    p.add_argument("--iterations", type=int, default=None,
                   help="world-models: rounds of the iterative procedure (collect with C and noise, retrain M, "
                        "evolve C); default 1")
    p.add_argument("--agent", default=None, choices=["i2a", "a2c", "copy"],
                   help="i2a: the agent stage trains I2A (default) or a control: model-free A2C, copy-model I2A")
    p.add_argument("--online-distill", action="store_true",
                   help="i2a: distil the rollout policy from the agent while it trains (the paper) instead of "
                        "using the distill stage's")
    p.set_defaults(run=lambda args: {"world-models": _train_world_models, "i2a": _train_i2a}.get(
        args.algorithm, _train)(args),
        check=lambda args: {"world-models": _check_world_models, "i2a": _check_i2a}.get(
        args.algorithm, _check_train)(args))
    p = sub.add_parser("play", help="evaluate a trained MuZero run (TicTacToe: against random and perfect players)")
    p.add_argument("algorithm", choices=["muzero"])
    p.add_argument("--run-dir", required=True, help="the run directory given to (or made by) pymbrl train")
    p.add_argument("--episodes", type=int, default=20, help="episodes, or games per opponent (default 20)")
    p.add_argument("--seed", type=int, default=0, help="(default 0)")
    p.set_defaults(run=_play, check=_check_play)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs a command; returns its exit status: 0, 1 where training stopped on an error it
    reports (a non-finite loss), 130 on Ctrl-C (SIGINT) and 143 on SIGTERM, both of which keep the
    last checkpoint and print the command that resumes. Invalid arguments exit with status 2
    (argparse's usage error) before anything runs; any other error raised while a command runs
    propagates with its traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)
    # Read by torch when (and if) it is first imported.
    os.environ.setdefault("OMP_NUM_THREADS", str(args.torch_threads))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(args.torch_threads)
    with _interruptible():
        try:
            try:
                _positive(args, "torch_threads")
                args.check(args)
            except (ValueError, TypeError) as error:
                parser.error(_usage_message(error))  # exits with status 2
            _install_handlers()
            return args.run(args)
        except KeyboardInterrupt as interrupt:
            what, status = ("terminated", 143) if isinstance(interrupt, Terminated) else ("interrupted", 130)
            if args.command == "train" and isinstance(getattr(args, "run_dir", None), Path):
                config = os.environ.get(CONFIG_VARIABLE, "").strip()
                command = (f"{CONFIG_VARIABLE}={shlex.quote(config)} " if config else "") + f"pymbrl {shlex.join(argv)}"
                print(f"{what}; what was saved in {args.run_dir} (the last checkpoint) is kept; resume with: {command}",
                      file=sys.stderr)
            else:
                print(what, file=sys.stderr)
            return status


if __name__ == "__main__":
    sys.exit(main())
