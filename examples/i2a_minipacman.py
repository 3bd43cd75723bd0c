"""I2A on MiniPacman "regular" against its two controls, at equal environment frames (Weber et al.
2017, section 4): the model-free A2C of similar size and the copy-model I2A.

Stages (each writes under examples/results/i2a/, so runs can be spread over processes):

    python examples/i2a_minipacman.py model            # 1. data, environment model, its k-step error
    python examples/i2a_minipacman.py train --agents a2c copy i2a --seeds 0 1 2 --frames 300000
    python examples/i2a_minipacman.py report           # curves, table, predicted-vs-real frames

The environment model is trained once, as in the paper, on frames from a partially trained
model-free agent (the env-model stage of :func:`pymbrl.agents.i2a.train`, see
:mod:`pymbrl.agents.i2a_stages`: an A2C "teacher" trained for ``--pretrain-frames`` with its own
seed, acting with 25% random actions so that every action is seen); those frames are extra to the
budget of the comparison and the report states them. The agents distil their rollout policy online,
from their own policy (the paper's way).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from pymbrl.agents import i2a, i2a_stages
from pymbrl.models.env_model import EnvModel, open_loop, to_planes
from pymbrl.training import Callbacks
from pymbrl.training.curves import plot_learning_curves

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = RESULTS / "i2a"
NAMES = {"i2a": "I2A", "a2c": "A2C (model-free)", "copy": "copy-model I2A"}


class PrintRecords(Callbacks):
    def on_record(self, stage: str, record: dict) -> None:
        print(f"  {stage}: {record}", flush=True)


class PrintReturns(Callbacks):
    def on_record(self, stage: str, record: dict) -> None:
        print(f"{stage}: {record['frames']} frames, return {record['return']:.2f}, {record['seconds']} s", flush=True)


def model_stage(args: argparse.Namespace) -> None:
    config = i2a.I2AConfig(teacher_frames=args.pretrain_frames, model_frames=args.model_frames,
                           model_epochs=args.model_epochs, seed=0)
    print(i2a.train(config, RUNS, stages=["env-model"], callbacks=PrintRecords()).summary)


def load_env_model() -> EnvModel:
    return i2a_stages.load_env_model(RUNS / "env_model.pt")


def train_stage(args: argparse.Namespace) -> None:
    for seed in args.seeds:
        for agent in args.agents:
            out = RUNS / f"{agent}_seed{seed}.json"
            if out.exists():
                print(f"{out.name} exists, skipped")
                continue
            model = load_env_model() if agent == "i2a" else None
            config = i2a.I2AConfig(agent=agent, seed=seed, steps=args.frames, eval_every=args.frames // 30)
            result = i2a.train_agent(i2a.make_agent(agent, config, model), config, stage=f"{agent} seed {seed}",
                                     callbacks=PrintReturns())
            out.write_text(json.dumps({"agent": agent, "seed": seed, "frames": args.frames, "history": result.history}))


def frames_figure(model: EnvModel, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    held = np.load(RUNS / "held_out.npz")
    frames, actions = held["frames"][:1], held["actions"][:1]
    predicted, _ = open_loop(model, to_planes(frames[:, 0]), torch.as_tensor(actions).long())
    shown = [1, 2, 3, 5, 10, 15]
    fig, axes = plt.subplots(2, len(shown), figsize=(2 * len(shown), 3.4))
    for col, k in enumerate(shown):
        axes[0, col].imshow(frames[0, k], interpolation="nearest")
        axes[0, col].set_title(f"step {k}")
        axes[1, col].imshow(predicted[k - 1, 0].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    axes[0, 0].set_ylabel("real")
    axes[1, 0].set_ylabel("model (open loop)")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(args: argparse.Namespace) -> None:
    record = torch.load(RUNS / "env_model.pt", weights_only=True)
    curves: dict[str, dict[int, list[dict]]] = {}
    for path in sorted(RUNS.glob("*_seed*.json")):
        run = json.loads(path.read_text())
        history = [{"step": r["frames"], "return": r["return"]} for r in run["history"] if not math.isnan(r["return"])]
        curves.setdefault(NAMES[run["agent"]], {})[run["seed"]] = history
    curves = {name: curves[name] for name in NAMES.values() if name in curves}
    means = plot_learning_curves(curves, RESULTS / "i2a_minipacman.png", xlabel="env frames",
                                 ylabel="return (sampled actions)",
                                 title="MiniPacman regular: mean return of the last 100 training episodes")
    summary = {"env_model": {"error": record["error"], "frames": record["frames"], "history": record["history"]},
               "parameters": i2a.parameter_counts(), "final": {}, "curves": curves}
    for name, by_seed in curves.items():
        finals = [h[-1]["return"] for h in by_seed.values()]
        summary["final"][name] = {"per_seed": finals, "mean": float(np.mean(finals)), "frames": [h[-1]["step"] for h in by_seed.values()]}
        print(f"{name}: final return {np.mean(finals):.2f} ({', '.join(f'{f:.2f}' for f in finals)})")
    summary["means"] = {k: {str(s): v for s, v in m.items()} for k, m in means.items()}
    (RESULTS / "i2a_minipacman.json").write_text(json.dumps(summary, indent=1))
    frames_figure(load_env_model(), RESULTS / "i2a_minipacman_frames.png")
    print("error after 1/5/15 steps:", record["error"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("model", "train", "report"))
    parser.add_argument("--agents", nargs="+", default=list(i2a.AGENTS), choices=i2a.AGENTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--frames", type=int, default=300_000)
    defaults = i2a.I2AConfig()
    parser.add_argument("--pretrain-frames", type=int, default=defaults.teacher_frames)
    parser.add_argument("--model-frames", type=int, default=defaults.model_frames)
    parser.add_argument("--model-epochs", type=int, default=defaults.model_epochs)
    args = parser.parse_args()
    torch.set_num_threads(1)
    {"model": model_stage, "train": train_stage, "report": report}[args.stage](args)


if __name__ == "__main__":
    main()
