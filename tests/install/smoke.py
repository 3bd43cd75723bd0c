"""Smoke test of an installed pymbrl, run by ``make test-install`` in fresh venvs of each Python.

Runs each part and prints whether it passed or was skipped, and why. A part is skipped only when a
module it needs is not installed at all (these venvs may hold numpy alone); any other failure is an
error. Exits 1 when a part failed or when a part named by ``--require`` did not run.

Usage: ``python tests/install/smoke.py [--require PART ...]``. With ``PYMBRL_EXPECT_INSTALLED`` set,
the import part also checks that pymbrl came from site-packages, not a source tree.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

# What a skipped part may lack: the package's optional parts. A missing numpy (the core's one
# dependency besides torch) or pymbrl itself is an error, never a skip.
OPTIONAL = ("torch",)


def check_import() -> str:
    import pymbrl

    if os.environ.get("PYMBRL_EXPECT_INSTALLED") and "site-packages" not in pymbrl.__file__:
        raise AssertionError(f"imported pymbrl from {pymbrl.__file__}, not from an installed wheel")
    return f"pymbrl {pymbrl.__version__} from {Path(pymbrl.__file__).parent}"


def check_build_info() -> str:
    import pymbrl
    from pymbrl import _core

    info = _core.build_info()
    if info["version"] != pymbrl.__version__ or info["build_type"] != "Release" or info["hardware_threads"] < 1:
        raise AssertionError(f"unexpected build info {info}")
    return f"{info['compiler']}, {info['build_type']}, {info['hardware_threads']} threads"


def check_dyna() -> str:
    from pymbrl.dyna import DynaMaze, run_batch

    result = run_batch("dyna_q", DynaMaze(), seeds=[0, 1], episodes=20, planning_steps=5, num_threads=2)
    last = result.episode_steps[:, -1]
    # Dyna-Q with 5 planning steps finds the 14-step path within a few episodes (S&B Fig 8.2).
    if result.episode_steps.shape != (2, 20) or last.max() > 20:
        raise AssertionError(f"Dyna-Q did not learn the maze: last episode lengths {last}")
    return f"Dyna-Q, 2 seeds x 20 episodes: last episode {last.tolist()} steps"


def check_mcts() -> str:
    import torch

    from pymbrl import mcts

    torch.manual_seed(0)
    batch, actions = 4, 3

    def recurrent_fn(embedding, action):
        reward = (action == 2).float()  # the only rewarding action
        zeros = torch.zeros(len(action))
        return mcts.RecurrentOutput(reward, zeros + 0.9, torch.zeros(len(action), actions), zeros), embedding

    root = mcts.Root(prior_logits=torch.zeros(batch, actions), value=torch.zeros(batch),
                     embedding=torch.zeros(batch, 1))
    out = mcts.muzero_policy(root, recurrent_fn, num_simulations=16, seed=0)
    # The action itself is drawn from the visit counts; the most visited one is the search's choice.
    best = out.action_weights.argmax(-1).tolist()
    if best != [2] * batch:
        raise AssertionError(f"the search did not prefer the rewarding action: visit shares {out.action_weights}")
    return f"muzero_policy, {batch} roots x 16 simulations: most visited actions {best}"


def check_replay() -> str:
    import numpy as np
    import torch

    from pymbrl.replay import ReplayBuffer

    spec = {"obs": ((3,), torch.float32), "reward": ((), torch.float32), "terminated": ((), torch.bool),
            "truncated": ((), torch.bool)}
    buffer = ReplayBuffer(8, spec, seed=0)
    for t in range(5):
        buffer.add(obs=np.full(3, t, np.float32), next_obs=np.full(3, t + 1, np.float32), reward=float(t),
                   terminated=t == 4, truncated=False)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "buffer.pymbrl"
        buffer.save(path)
        loaded = ReplayBuffer.load(path)
    a, b = buffer.sample(4), loaded.sample(4)
    if len(loaded) != 5 or any(not torch.equal(a[k], b[k]) for k in a):
        raise AssertionError("the loaded buffer differs from the saved one")
    return f"ReplayBuffer save/load: {len(loaded)} transitions, identical samples"


PARTS: dict[str, Callable[[], str]] = {"import": check_import, "build_info": check_build_info, "dyna": check_dyna,
                                       "mcts": check_mcts, "replay": check_replay}


def missing_optional(error: ImportError) -> str | None:
    """The optional package whose absence raised ``error``, or None when it is installed (then the
    import failed for another reason, which is an error)."""
    name = (error.name or "").split(".")[0]
    return name if name in OPTIONAL and importlib.util.find_spec(name) is None else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--require", nargs="*", default=[], choices=list(PARTS), metavar="PART",
                        help=f"parts that must run, not be skipped ({', '.join(PARTS)})")
    args = parser.parse_args(argv)
    print(f"smoke test on Python {sys.version.split()[0]} ({sys.executable})")
    failed, skipped = [], []
    for name, check in PARTS.items():
        start = time.perf_counter()
        try:
            what = check()
            print(f"  {name}: ok, {what} [{time.perf_counter() - start:.1f} s]")
        except ImportError as error:
            lacking = missing_optional(error)
            if lacking is None:
                failed.append(name)
                print(f"  {name}: FAILED\n{traceback.format_exc()}")
            else:
                skipped.append(name)
                print(f"  {name}: skipped, needs {lacking} (not installed)")
        except Exception:
            failed.append(name)
            print(f"  {name}: FAILED\n{traceback.format_exc()}")
    not_run = [p for p in args.require if p in skipped]
    if not_run:
        print(f"required but skipped: {', '.join(not_run)}")
    return 1 if failed or not_run else 0


if __name__ == "__main__":
    sys.exit(main())
