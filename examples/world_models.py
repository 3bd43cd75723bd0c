"""World Models (Ha & Schmidhuber 2018) on this 2-core CPU, at the scale it allows (see
WorldModelsConfig.PRESETS for what is scaled, examples/results/world_models.md for how it did):

- VizDoom TakeCover, the controller trained entirely inside the dream at each temperature tau and
  then scored in the real game (the paper's section 5);
- CarRacing-v3, controllers evolved in the real env on V and M ([z, h]) and on V alone (z), the
  paper's section 4 comparison.

    python examples/world_models.py --env VizdoomTakeCover-v1 --stages collect vae mdn
    python examples/world_models.py --env VizdoomTakeCover-v1 --stages controller --taus 1.15
    python examples/world_models.py --env VizdoomTakeCover-v1 --stages controller --taus 0.1
    python examples/world_models.py --env VizdoomTakeCover-v1 --report
    python examples/world_models.py --env CarRacing-v3 --stages collect vae mdn controller --report

The report scores a random policy over the same episodes and writes
examples/results/world_models_<env>.{json,png} and world_models_<env>_frames.png (real frames, V's
reconstructions, and a dream V decodes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tqdm import tqdm

from pymbrl.agents import world_models as wm
from pymbrl.agents import world_models_stages as wms
from pymbrl.envs.spaces import ActionCodec
from pymbrl.models.world_models import Policy
from pymbrl.replay.rollouts import RolloutDataset
from pymbrl.rollout.dream_env import DreamEnv
from pymbrl.training import Callbacks

RESULTS = Path(__file__).resolve().parent / "results"
NAMES = {"VizdoomTakeCover-v1": "takecover", "CarRacing-v3": "carracing"}


class Bars(Callbacks):
    """A progress bar per task, and each record printed."""

    def __init__(self):
        self.bars: dict[str, tqdm] = {}

    def on_progress(self, stage: str, done: int, total: int) -> None:
        bar = self.bars.setdefault(stage, tqdm(total=total, desc=stage, dynamic_ncols=True))
        bar.total = total
        bar.update(done - bar.n)

    def on_record(self, stage: str, record: dict) -> None:
        tqdm.write(f"{stage}: {record}")


def configs(env_id: str, taus: list[float], **overrides) -> dict[str, wm.WorldModelsConfig]:
    """The controllers this experiment evolves, by label."""
    if env_id == "CarRacing-v3":
        return {"V+M": wm.WorldModelsConfig.for_env(env_id, **overrides),
                "V only": wm.WorldModelsConfig.for_env(env_id, controller_uses_hidden=False, **overrides)}
    return {f"tau={tau:g}": wm.WorldModelsConfig.for_env(env_id, tau=tau, **overrides) for tau in taus}


def report(env_id: str, run: Path, taus: list[float], seed: int, iterations: int = 1) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = wm.WorldModelsConfig.for_env(env_id, seed=seed)
    name = NAMES[env_id]
    out = RESULTS / f"world_models_{name}.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    real = wm.make_env(base)
    space = real.action_space
    real.close()
    # Uniformly random actions (the paper's baseline) and, where it differs, the collection policy.
    baselines = {"random": 1}
    if base.random_repeat > 1:
        baselines[f"random, held 1-{base.random_repeat} steps"] = base.random_repeat
    for label, repeat in baselines.items():
        if label not in results:
            policy = Policy(None, None, None, ActionCodec(space), repeat=repeat)
            returns = wms.play(base, base.eval_episodes, policy, seed=seed + 5)
            results[label] = {"returns": returns.tolist(), "mean": float(returns.mean()), "std": float(returns.std())}
    vae_record = torch.load(run / "vae.pt", weights_only=True)
    mdn_record = torch.load(run / "mdnrnn.pt", weights_only=True)
    results.update(env=env_id, config=repr(base), data={
        "rollouts": mdn_record["rollouts"], "frames": vae_record["frames"], "vae": vae_record["history"],
        "mdn": mdn_record["history"]})
    results["controllers"] = {}
    for iteration in range(iterations):
        for label, config in configs(env_id, taus).items():
            path = run / wms.controller_file(config, wms.iteration_tag(iteration))
            if path.exists():
                label = label if iteration == 0 else f"{label}, iteration {iteration + 1}"
                results["controllers"][label] = torch.load(path, weights_only=True)["summary"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))

    fig, (ax_fit, ax_real) = plt.subplots(1, 2, figsize=(11, 4))
    for label, summary in results["controllers"].items():
        generations = [g["generation"] for g in summary["fitness"]]
        ax_fit.plot(generations, [g["mean"] for g in summary["fitness"]], label=f"{label} mean")
        ax_fit.plot(generations, [g["best"] for g in summary["fitness"]], "--", label=f"{label} best")
    where = "dream" if base.train_in == "dream" else "real env"
    ax_fit.set(xlabel="CMA-ES generation", ylabel=f"return ({where}, {base.trials} trials)",
               title=f"Fitness in the {where}")
    ax_fit.legend(fontsize=8)
    scored = {label: results[label] for label in baselines if label in results} | results["controllers"]
    labels = list(scored)
    means, stds = [s["mean"] for s in scored.values()], [s["std"] for s in scored.values()]
    colours = ["grey" if label.startswith("random") else "C0" for label in labels]
    ax_real.bar(labels, means, yerr=stds, capsize=4, color=colours)
    ax_real.tick_params(axis="x", labelsize=7, rotation=20)
    ax_real.set(ylabel=f"real score (mean +- std, {base.eval_episodes} episodes)", title="In the real env")
    fig.suptitle(f"World Models on {env_id}")
    fig.tight_layout()
    fig.savefig(RESULTS / f"world_models_{name}.png", dpi=120)
    frames_figure(run, base, space, RESULTS / f"world_models_{name}_frames.png", seed, plt)
    for label, mean, std in zip(labels, means, stds):
        print(f"{label}: {mean:.1f} +- {std:.1f}")


@torch.no_grad()
def frames_figure(run: Path, config: wm.WorldModelsConfig, space, path: Path, seed: int, plt) -> None:
    """Row 1: real frames of a rollout; row 2: V's reconstructions; row 3: a dream from the first z."""
    dataset = RolloutDataset(run / "data")
    frames = dataset.load(dataset.files()[0])["frames"][:64:8]
    vae = wms.load_vae(run, config)
    mdnrnn = wms.load_mdnrnn(run, config, ActionCodec(space))
    mu, _ = vae.encode(torch.from_numpy(frames))
    recon = (vae.decode(mu).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    env = DreamEnv(mdnrnn, space, mu[:1], vae=vae, tau=config.tau, render_mode="rgb_array")
    env.reset(seed=seed)
    env.action_space.seed(seed)
    dream = []
    for t in range(len(frames) * 8):
        if t % 8 == 0:
            dream.append(env.render())
        if env.step(env.action_space.sample())[2]:
            break
    fig, axes = plt.subplots(3, len(frames), figsize=(1.6 * len(frames), 5.2), squeeze=False)
    for row, (images, label) in enumerate(((frames, "real"), (recon, "V(real)"), (dream, "dream"))):
        for col, ax in enumerate(axes[row]):
            ax.axis("off")
            if col < len(images):
                ax.imshow(images[col])
        axes[row][0].set_title(label, loc="left", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def overrides(args: argparse.Namespace, *names: str) -> dict:
    """The config fields among ``names`` given on the command line."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="VizdoomTakeCover-v1", choices=sorted(NAMES))
    parser.add_argument("--run-dir", default=None, help="default runs/world-models-<env>")
    parser.add_argument("--stages", nargs="+", default=[], choices=wm.STAGES)
    parser.add_argument("--taus", type=float, nargs="+", default=[0.1, 1.15], help="TakeCover's temperatures")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generations", type=int, default=None, help="CMA-ES generations (default: the preset's)")
    parser.add_argument("--rollouts", type=int, default=None,
                        help="collect up to this many random rollouts (default: the preset's); with a smaller number "
                             "first, V can train on the first ones while the rest are collected")
    parser.add_argument("--iterations", type=int, default=None,
                        help="rounds of the iterative procedure (collect with C, retrain M, evolve C); default 1")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if not args.stages and not args.report:
        parser.error("give --stages and/or --report")
    torch.set_num_threads(1)
    run = Path(args.run_dir or f"runs/world-models-{args.env}")
    bars = Bars()
    stages = [s for s in args.stages if s != "controller"]
    if stages:
        config = wm.WorldModelsConfig.for_env(args.env, seed=args.seed, **overrides(args, "rollouts", "iterations"))
        wm.train(config, run, stages=stages, callbacks=bars)
    if "controller" in args.stages:
        for label, config in configs(args.env, args.taus, seed=args.seed,
                                     **overrides(args, "generations", "iterations")).items():
            summary = wm.train(config, run, stages=["controller"], callbacks=bars).summary
            print(f"{label}: real score {summary['mean']:.1f} +- {summary['std']:.1f} over "
                  f"{len(summary['returns'])} episodes")
    if args.report:
        report(args.env, run, args.taus, args.seed, args.iterations or 1)


if __name__ == "__main__":
    main()
