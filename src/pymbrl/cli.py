"""The ``pymbrl`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
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
    import csv
    import json

    from tqdm import tqdm

    from pymbrl.agents import dreamer, mbpo, muzero, sac
    from pymbrl.agents.curves import plot_learning_curves

    name, train = {"sac": ("SAC", sac.train), "mbpo": ("MBPO", mbpo.train), "muzero": ("MuZero", muzero.train),
                   "dreamer": ("Dreamer", dreamer.train)}[args.algorithm]
    for key, value in TRAIN_DEFAULTS[args.algorithm].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.env = ENV_ALIASES.get(args.env, args.env)
    run_dir = Path(args.run_dir or f"runs/{args.algorithm}-{args.env.replace('/', '-')}-seed{args.seed}")
    bar = tqdm(total=args.steps, unit="step", dynamic_ncols=True, desc=f"{name} {args.env}")

    def progress(step: int) -> None:
        bar.update(step - bar.n)  # a resumed run's first step jumps to the checkpoint

    def plot() -> dict[str, dict[int, float]]:
        with open(run_dir / "log.csv", newline="") as f:
            history = [{k: int(v) if k == "step" else float(v) for k, v in row.items()} for row in csv.DictReader(f)]
        return plot_learning_curves({name: {args.seed: history}}, run_dir / "learning_curve.png",
                                    title=f"{name} on {args.env}")

    def log(record: dict) -> None:
        bar.set_postfix({"return": f"{record['return']:.1f}"})
        plot()

    print(f"run directory: {run_dir} (log.csv, learning_curve.png, checkpoint/)")
    try:
        _, history = train(args.env, args.steps, seed=args.seed, eval_every=args.eval_every,
                           eval_episodes=args.eval_episodes, log=log, run_dir=run_dir,
                           checkpoint_every=args.checkpoint_every, progress=progress)
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted; run the same command again to resume from the last checkpoint in {run_dir}")
        return 130
    except FloatingPointError as error:
        bar.close()
        print(f"stopped: {error}; the last checkpoint in {run_dir} is kept", file=sys.stderr)
        return 1
    bar.close()
    print(f"{name} on {args.env}, seed {args.seed}: return by step {plot()[name]}")
    print(f"last evaluation: {json.dumps(history[-1])}")
    return 0


def _train_world_models(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pymbrl.agents import world_models as wm

    env_id = args.env or "VizdoomTakeCover-v1"
    overrides = {name: getattr(args, name) for name in ("tau", "iterations") if getattr(args, name) is not None}
    config = wm.WorldModelsConfig.for_env(env_id, **overrides)
    run_dir = Path(args.run_dir or f"runs/world-models-{env_id.replace('/', '-')}-seed{args.seed}")
    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.setdefault(stage, tqdm(total=total, desc=stage, unit="", dynamic_ncols=True))
        bar.total = total
        bar.update(done - bar.n)

    def log(stage: str, record: dict) -> None:
        tqdm.write(f"{stage}: {record}")

    print(f"run directory: {run_dir} (data/, vae.pt, mdnrnn.pt, controller_*.pt); "
          f"stages: {' '.join(args.stages or wm.STAGES)}")
    try:
        summary = wm.train(env_id, run_dir, stages=args.stages or list(wm.STAGES), config=config, seed=args.seed, log=log,
                           progress=progress)
    except KeyboardInterrupt:
        print(f"interrupted; run the same command again to resume in {run_dir}")
        return 130
    finally:
        for bar in bars.values():
            bar.close()
    if summary:
        print(f"World Models on {env_id} (controller trained in the {summary['train_in']}, tau {summary['tau']:g}): "
              f"real score {summary['mean']:.1f} +- {summary['std']:.1f} over {len(summary['returns'])} episodes")
    return 0


def _train_i2a(args: argparse.Namespace) -> int:
    import csv

    from tqdm import tqdm

    from pymbrl.agents import i2a
    from pymbrl.agents.curves import plot_learning_curves

    env_id = args.env or "MiniPacman-regular"
    config = i2a.I2AConfig.for_env(env_id)
    frames = args.steps or 200_000
    run_dir = Path(args.run_dir or f"runs/i2a-{env_id.replace('/', '-')}-seed{args.seed}")
    bars: dict[str, tqdm] = {}

    def progress(task: str, done: int, total: int) -> None:
        bar = bars.setdefault(task, tqdm(total=total, desc=task, unit="frame" if "epochs" not in task else "epoch",
                                         dynamic_ncols=True))
        bar.total = total
        bar.update(done - bar.n)  # a resumed run's first update jumps to its checkpoint
        if done >= total:  # the next task's bar takes its line
            bars.pop(task).close()

    def plot(name: str) -> None:
        with open(run_dir / name / "log.csv", newline="") as f:
            history = [{"step": int(row["frames"]), "return": float(row["return"])} for row in csv.DictReader(f)
                       if row["return"] != "nan"]
        if history:
            plot_learning_curves({name: {args.seed: history}}, run_dir / name / "learning_curve.png", xlabel="env frames",
                                 title=f"{name} on {env_id}: mean return of the last 100 training episodes")

    def log(stage: str, record: dict) -> None:
        tqdm.write(f"{stage}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in record.items()))
        if stage in ("teacher", args.agent, f"{args.agent}-online"):
            plot(stage)

    stages = args.stages or list(i2a.STAGES)
    print(f"run directory: {run_dir} (teacher/, env_model.pt, rollout_policy.pt, {args.agent}/); "
          f"stages: {' '.join(stages)}")
    try:
        summary = i2a.train_stages(run_dir, stages, config, agent=args.agent, frames=frames,
                                   online_distill=args.online_distill, seed=args.seed,
                                   log_every=args.eval_every or 10_000, checkpoint_every=args.checkpoint_every or 50_000,
                                   log=log, progress=progress)
    except KeyboardInterrupt:
        print(f"interrupted; run the same command again to resume in {run_dir}")
        return 130
    except FloatingPointError as error:
        print(f"stopped: {error}", file=sys.stderr)
        return 1
    finally:
        for bar in bars.values():
            bar.close()
    if "env-model" in summary:
        error = summary["env-model"]["error"]
        print("env model, open-loop error after " + ", ".join(
            f"{k} steps: {c:.2%} of cells, reward MAE {r:.3f}"
            for k, c, r in zip(error["horizons"], error["cell_error"], error["reward_mae"])))
    if "distill" in summary:
        print(f"rollout policy: agrees with the teacher on {summary['distill']['agreement']:.1%} of held-out frames")
    if "agent" in summary:
        record = summary["agent"]
        print(f"{record['name']} on {env_id}, seed {args.seed}: mean return of the last 100 training episodes "
              f"{record['return']:.2f} at {record['frames']} frames ({record['directory']})")
    return 0


def _play(args: argparse.Namespace) -> int:
    from pymbrl.agents import muzero

    searcher, env_id = muzero.load(args.run_dir)
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


ENV_ALIASES = {"TicTacToe": "pymbrl/TicTacToe-v0"}
TRAIN_DEFAULTS = {
    "sac": {"env": "Pendulum-v1", "steps": 10_000, "eval_every": 1000, "eval_episodes": 5, "checkpoint_every": 1000},
    "mbpo": {"env": "Pendulum-v1", "steps": 10_000, "eval_every": 1000, "eval_episodes": 5, "checkpoint_every": 1000},
    "muzero": {"env": "CartPole-v1", "steps": 50_000, "eval_every": 5000, "eval_episodes": 20,
               "checkpoint_every": 5000},
    "dreamer": {"env": "CartPole-v1", "steps": 50_000, "eval_every": 2500, "eval_episodes": 10,
                "checkpoint_every": 5000},
}


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
    p = sub.add_parser("train", help="train SAC or MBPO (Box actions), MuZero (Discrete actions), Dreamer (either) "
                                     "or World Models (frames) on a gymnasium env",
                       description="Trains with progress, a CSV log, a PNG learning curve and checkpoints in a run "
                                   "directory; the same command again resumes from the last checkpoint. Defaults: "
                                   "sac and mbpo Pendulum-v1, 10000 steps, evaluations of 5 episodes every 1000; "
                                   "muzero CartPole-v1, 50000 steps, 20 episodes every 5000; dreamer CartPole-v1, "
                                   "50000 steps, 10 episodes every 2500; world-models VizdoomTakeCover-v1, in stages "
                                   "(collect, vae, mdn, controller) that can run separately; i2a MiniPacman-regular "
                                   "(or an ALE/<Game>-v5 id), in stages (env-model, distill, agent), 200000 agent "
                                   "frames, logs every 10000, checkpoints every 50000.")
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
    p.add_argument("--agent", default="i2a", choices=["i2a", "a2c", "copy"],
                   help="i2a: the agent stage trains I2A (default) or a control: model-free A2C, copy-model I2A")
    p.add_argument("--online-distill", action="store_true",
                   help="i2a: distil the rollout policy from the agent while it trains (the paper) instead of "
                        "using the distill stage's")
    p.set_defaults(run=lambda args: {"world-models": _train_world_models, "i2a": _train_i2a}.get(
        args.algorithm, _train)(args))
    p = sub.add_parser("play", help="evaluate a trained MuZero run (TicTacToe: against random and perfect players)")
    p.add_argument("algorithm", choices=["muzero"])
    p.add_argument("--run-dir", required=True, help="the run directory given to (or made by) pymbrl train")
    p.add_argument("--episodes", type=int, default=20, help="episodes, or games per opponent (default 20)")
    p.add_argument("--seed", type=int, default=0, help="(default 0)")
    p.set_defaults(run=_play)
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
