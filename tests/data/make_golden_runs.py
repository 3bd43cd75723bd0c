"""Records the golden runs of tests/agents/test_golden_runs.py: for every agent, a short seeded run
and every record it logged (``seconds`` dropped: it is wall time). Recorded once, before issue 20's
refactor, with the API of that time; the test replays the same runs through the training layer and
requires identical records. Run from the repository root: python tests/data/make_golden_runs.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from golden_runs import FRAMES_ID, RUNS  # noqa: E402

torch.set_num_threads(1)
OUT = Path(__file__).with_name("golden_runs.json")


def clean(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "seconds"}


def record(name: str, run_dir: Path) -> list:
    from pymbrl.agents import dreamer, i2a, mbpo, muzero, sac
    from pymbrl.agents import world_models as wm
    from pymbrl.models.rssm import RSSMConfig

    spec = RUNS[name]
    records: list = []
    if name in ("sac", "mbpo", "muzero", "dreamer"):
        module = {"sac": sac, "mbpo": mbpo, "muzero": muzero, "dreamer": dreamer}[name]
        config = {"sac": lambda: sac.SACConfig(**spec["config"]),
                  "mbpo": lambda: mbpo.MBPOConfig.for_env(spec["env"], **{**spec["config"], "sac": sac.SACConfig(**spec["config"]["sac"])}),
                  "muzero": lambda: muzero.MuZeroConfig.for_env(spec["env"], **spec["config"]),
                  "dreamer": lambda: dreamer.DreamerConfig.for_env(
                      spec["env"], **{**spec["config"], "model": RSSMConfig(**spec["config"]["model"])})}[name]()
        module.train(spec["env"], spec["steps"], seed=spec["seed"], config=config, eval_every=spec["eval_every"],
                     eval_episodes=spec["eval_episodes"], log=lambda r: records.append(["train", clean(r)]),
                     run_dir=run_dir, checkpoint_every=spec["checkpoint_every"])
    elif name == "i2a":
        config = i2a.I2AConfig.for_env(spec["env"], **spec["config"])
        i2a.train_stages(run_dir, i2a.STAGES, config, agent="i2a", frames=spec["steps"], seed=spec["seed"],
                         log_every=spec["eval_every"], checkpoint_every=spec["checkpoint_every"],
                         log=lambda stage, r: records.append([stage, clean(r)]))
    else:
        config = wm.WorldModelsConfig.for_env(spec["env"], **spec["config"])
        summary = wm.train(spec["env"], run_dir, config=config, seed=spec["seed"],
                           log=lambda stage, r: records.append([stage, clean(r)]))
        records.append(["summary", {k: v for k, v in summary.items()}])
    return json.loads(json.dumps(records, default=float))


if __name__ == "__main__":
    names = sys.argv[1:] or list(RUNS)
    golden = json.loads(OUT.read_text()) if OUT.exists() else {}
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            golden[name] = record(name, Path(tmp) / "run")
        print(name, len(golden[name]), "records")
    OUT.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
