"""pymbrl with numpy and torch only (``pip install pymbrl``): the core imports and runs, and what needs
an extra says which one.

Each test runs a subprocess of this interpreter, importing the same pymbrl as this process, in which
a ``sys.meta_path`` finder refuses every optional package, as where it is not installed; the script
asserts what the light install must do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import pymbrl
from pymbrl._extras import EXTRAS, MissingExtra, installed, missing_extra, optional_imports

ROOT = Path(__file__).resolve().parents[1]

BLOCKER = '''
import sys

BLOCKED = {"gymnasium", "matplotlib", "tqdm", "cma", "yaml", "tensorboard", "ale_py", "mujoco", "vizdoom", "ray",
           "imageio"}


class Blocked:
    """Finds every optional package missing, as Python does where it is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Blocked())
'''

AGENTS = "gymnasium is not installed: pip install 'pymbrl[agents]'"


def run_light(script: str, tmp_path: Path, *, argv: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Runs ``script`` (after the blocker) with ``argv`` in a subprocess in ``tmp_path``."""
    code = BLOCKER + "\nimport torch\ntorch.set_num_threads(1)\n" + textwrap.dedent(script)
    path = os.pathsep.join([str(Path(pymbrl.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": path})


def passes(done: subprocess.CompletedProcess) -> bool:
    return done.returncode == 0 and not done.stderr.strip()


def test_the_blocker_makes_optional_packages_missing(tmp_path):
    done = run_light('''
        for name in BLOCKED:
            try:
                __import__(name)
            except ModuleNotFoundError:
                continue
            raise AssertionError(name)
    ''', tmp_path)
    assert passes(done), done.stderr


def test_the_core_imports_and_runs_without_the_extras(tmp_path):
    done = run_light('''
        import numpy as np
        import torch

        import pymbrl
        import pymbrl.distributed
        import pymbrl.envs
        import pymbrl.models.tictactoe
        from pymbrl import dyna, mcts, replay, rollout
        from pymbrl.models import GaussianEnsemble
        from pymbrl.tasks import termination_fn

        # mcts: both policies on a toy model, three roots, four actions.
        def recurrent_fn(embedding, action):
            out = mcts.RecurrentOutput(reward=torch.ones(3), discount=torch.full((3,), 0.9),
                                       prior_logits=torch.zeros(3, 4), value=torch.zeros(3))
            return out, embedding + 1
        root = mcts.Root(prior_logits=torch.zeros(3, 4), value=torch.zeros(3), embedding=torch.zeros(3, 2))
        for policy in (mcts.muzero_policy, mcts.gumbel_muzero_policy):
            out = policy(root, recurrent_fn, 8, seed=0)
            assert out.action.shape == (3,) and int(out.search_tree.summary().visit_counts.sum()) == 3 * 8

        # replay: buffers filled, sampled, saved and loaded back.
        spec = {"obs": ((2,), torch.float32), "action": ((), torch.int64), "reward": ((), torch.float32),
                "terminated": ((), torch.bool), "truncated": ((), torch.bool)}
        for cls in (replay.ReplayBuffer, replay.PrioritizedReplayBuffer):
            buffer = cls(16, spec, seed=0)
            for t in range(10):
                buffer.add(obs=np.full(2, t, np.float32), action=t % 3, reward=1.0, terminated=False,
                           truncated=False, next_obs=np.full(2, t + 1, np.float32))
            assert buffer.sample(4).obs.shape == (4, 2)
            buffer.save("buffer.bin")
            assert len(cls.load("buffer.bin")) == len(buffer) >= 9

        # dyna: agents and the batch runner on the book's mazes, and the chapter's experiments unplotted.
        result = dyna.run_batch("dyna_q", dyna.DynaMaze(), seeds=range(2), episodes=3, planning_steps=5)
        assert result.episode_steps.shape == (2, 3) and (result.episode_steps > 0).all()
        agent = dyna.DynaQPlus(54, 4, planning_steps=2, seed=0)
        agent.update(0, agent.act(0), 0.0, 1, False)
        from pymbrl.dyna.experiments import figure_8_2, planning_sweep
        assert set(planning_sweep("prioritized_sweeping", dyna.BlockingMaze(), (1, 2), seeds=[0], steps=50)) == {1, 2}
        assert figure_8_2(None, seeds=2, episodes=2).curves["n=5"].shape == (2,)

        # rollout: branched rollouts of an ensemble.
        model = GaussianEnsemble(11, 3, ensemble_size=3, num_elites=2, hidden=8, layers=2)
        batch = rollout.branched_rollout(model, lambda obs: torch.zeros(len(obs), 3), torch.zeros(5, 11), 2,
                                         termination_fn=termination_fn("Hopper-v5"), generator=torch.Generator())
        assert batch.obs.shape[1] == 11 and len(batch.obs) >= 5

        leaked = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
        assert not leaked, leaked
    ''', tmp_path)
    assert passes(done), done.stderr


NEEDS_AN_EXTRA = [
    ("import pymbrl.agents", AGENTS),
    ("import pymbrl.training", AGENTS),
    ("import pymbrl.envs.tictactoe_env", AGENTS),
    ("import pymbrl.envs.vector", AGENTS),
    ("import pymbrl.envs.wrappers", AGENTS),
    ("import pymbrl.rollout.dream_env", AGENTS),
    ("from pymbrl.dyna import TabularEnv", AGENTS),
    ("pymbrl.dyna.DynaMaze().make_env()", AGENTS),
    ("pymbrl.dyna.run(pymbrl.dyna.DynaQ(54, 4), None, 1)", AGENTS),
    ("pymbrl.dyna.TabularMDP.from_gymnasium(None)", AGENTS),
    ("pymbrl.dyna.experiments.figure_8_2('plot.png', seeds=1, episodes=2)",
     "matplotlib is not installed: pip install 'pymbrl[agents]'"),
    ("pymbrl.dyna.experiments.planning_sweep('dyna_q', pymbrl.dyna.DynaMaze(), [0], seeds=[0], episodes=1, "
     "progress=True)", "tqdm is not installed: pip install 'pymbrl[agents]'"),
    ("pymbrl.distributed.pool.ray_module()", "ray is not installed: pip install 'pymbrl[ray]'"),
]


def test_what_needs_an_extra_names_it(tmp_path):
    done = run_light(f'''
        import pymbrl.distributed.pool
        import pymbrl.dyna
        import pymbrl.dyna.experiments
        from pymbrl._extras import MissingExtra

        for statement, message in {NEEDS_AN_EXTRA!r}:
            try:
                exec(statement)
            except MissingExtra as error:
                assert isinstance(error, ModuleNotFoundError) and str(error) == message, (statement, str(error))
            else:
                raise AssertionError(f"{{statement}}: no error")
    ''', tmp_path)
    assert passes(done), done.stderr


CLI = '''
    from pymbrl.cli import main
    sys.exit(main(sys.argv[1:]))
'''


def test_cli_help_and_dyna_run_without_the_extras(tmp_path):
    done = run_light(CLI, tmp_path, argv=("--help",))
    assert passes(done) and "dyna" in done.stdout and "train" in done.stdout, done.stdout + done.stderr
    done = run_light(CLI, tmp_path, argv=("dyna", "--seeds", "2", "--episodes", "3", "--threads", "1"))
    assert passes(done) and "shortest path: 14 steps" in done.stdout, done.stdout + done.stderr
    assert "plot: not drawn (matplotlib is not installed: pip install 'pymbrl[agents]')" in done.stdout
    assert not (tmp_path / "dyna_maze.png").exists()


def test_cli_commands_that_need_the_agents_extra_say_so_in_one_line(tmp_path):
    done = run_light(CLI, tmp_path, argv=("train", "sac"))
    assert (done.returncode, done.stderr) == (2, f"pymbrl: {AGENTS}\n"), done.stderr
    # The same in process for the other commands: help of an algorithm, list, play.
    done = run_light(f'''
        import contextlib
        import io
        from pymbrl.cli import main

        for argv in (["train", "muzero", "--help"], ["list"], ["play", "sac", "--run-dir", "run"]):
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                status = main(argv)
            assert (status, err.getvalue()) == (2, "pymbrl: " + {AGENTS!r} + "\\n"), (argv, status, err.getvalue())
    ''', tmp_path)
    assert passes(done), done.stderr


# --------------------------------------------------------------------------------------------------
# The helper itself, in this process.

def test_optional_imports_translate_only_the_optional_packages():
    with pytest.raises(MissingExtra, match=r"^pyyaml is not installed: pip install 'pymbrl\[agents\]'$") as caught:
        with optional_imports():
            raise ModuleNotFoundError("No module named 'yaml'", name="yaml")
    assert caught.value.name == "yaml" and isinstance(caught.value, ImportError)
    # A missing dependency of an installed package, or a module of pymbrl's own, is not a missing extra.
    for name in ("gymnasium.wrappers", "pymbrl.zoo", None):
        with pytest.raises(ModuleNotFoundError) as caught:
            with optional_imports():
                raise ModuleNotFoundError("gone", name=name)
        assert type(caught.value) is ModuleNotFoundError
    assert installed("numpy") and not installed("pymbrl_no_such_module") and not installed("no_such.module")


def test_every_optional_package_is_in_the_extra_its_error_names():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]

    def packages(extra: str) -> set[str]:
        out = set()
        for text in extras[extra]:
            requirement = Requirement(text)
            out |= set.union(*map(packages, requirement.extras)) if requirement.name == "pymbrl" else \
                {requirement.name}
        return out

    assert {Requirement(r).name for r in project["dependencies"]} == {"numpy", "torch"}
    for module, (package, extra) in EXTRAS.items():
        assert package in packages(extra), (module, package, extra)
        assert package in packages("all") and str(missing_extra(module)).endswith(f"'pymbrl[{extra}]'")
