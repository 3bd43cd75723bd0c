"""The ``pymbrl`` command line: every ``train`` command run as a user runs it (a subprocess), past its
first update and an evaluation with losses, interrupted and resumed, then played; and in-process
tests of its options, config layers, help, usage errors and signals, with the training replaced by
stubs where it is not the point.

The subprocesses run ``python -m pymbrl.cli`` with this interpreter and the inherited PYTHONPATH,
so they test the same pymbrl that this process imports (the installed wheel under ``make test``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from golden_runs import FRAMES_ID
from support import cuda, has_losses, holder, interrupt_cli, run_cli

from pymbrl import cli
from pymbrl.agents import i2a, muzero, sac
from pymbrl.agents import world_models as wm
from pymbrl.training import curves
from pymbrl.training.run import start_run

# --------------------------------------------------------------------------------------------------
# End to end, in subprocesses


def _interrupt_and_resume(tmp_path: Path, args: list[str], log: Path, loss: str, checkpoint_file: Path,
                          steps: int, step_key: str = "step", signum: int = signal.SIGINT) -> list[dict]:
    """Interrupts ``pymbrl <args>`` after an evaluation with ``loss`` in ``log`` and once
    ``checkpoint_file`` exists, resumes it with the command it printed (the run directory alone:
    its config.yaml holds the settings) and returns the log's records."""
    interrupt_cli(tmp_path, args, lambda: has_losses(log, loss) and checkpoint_file.exists(), signum)
    assert checkpoint_file.exists()
    run_cli(tmp_path, ["train", args[1], "--run-dir", args[args.index("--run-dir") + 1]])
    records = curves.read_log(log)
    done = [r[step_key] for r in records]
    assert done == sorted(set(done)) and done[-1] == steps, done  # one record per evaluation, up to the end
    assert math.isfinite(records[-1][loss])
    assert (log.parent / "learning_curve.png").stat().st_size > 0
    assert any(p.name.startswith("events.out.tfevents.") for p in log.parent.iterdir())  # TensorBoard
    return records


def _config_file(tmp_path: Path, settings: dict) -> str:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings))
    return str(path)


# Small networks and warm-ups in a config file (--config). Every run evaluates once before its first
# update (so its log has rows without losses: issue 19's crash), then after it; the interruption
# comes after such an evaluation and a checkpoint.
E2E = {
    "sac": ({"learning_starts": 300, "hidden": 32, "batch_size": 32}, "Pendulum-v1", "q_loss"),
    "mbpo": ({"init_steps": 400, "model_train_freq": 200, "rollout_batch_size": 200, "updates_per_step": 1,
              "ensemble_size": 3, "num_elites": 2, "model_hidden": 32, "model_layers": 2, "hidden": 32,
              "batch_size": 32}, "Pendulum-v1", "q_loss"),
    "muzero": ({"num_envs": 4, "num_simulations": 4, "batch_size": 16, "warmup_steps": 300, "hidden_size": 16,
                "unroll_steps": 3, "td_steps": 5, "updates_per_step": 0.05}, "CartPole-v1", "loss"),
    "dreamer": ({"learning_starts": 400, "batch_size": 4, "batch_length": 16, "num_envs": 1, "train_ratio": 16,
                 "horizon": 5, "model": {"deter": 32, "groups": 4, "classes": 4, "hidden": 32, "layers": 1}},
                "CartPole-v1", "model_loss"),
}
E2E_OPTIONS = ["--steps", "1000", "--set", "eval_every=300", "--set", "eval_episodes=1", "--set", "checkpoint_every=200"]


@pytest.mark.parametrize("algorithm", list(E2E))
def test_train_is_interrupted_resumed_to_the_end_and_played(tmp_path, algorithm):
    settings, env, loss = E2E[algorithm]
    run = tmp_path / "run"
    args = ["train", algorithm, "--env", env, "--config", _config_file(tmp_path, settings), *E2E_OPTIONS,
            "--run-dir", str(run)]
    records = _interrupt_and_resume(tmp_path, args, run / "log.csv", loss, run / "checkpoint" / "state.pt", 1000)
    assert math.isnan(records[0][loss])  # the evaluation before learning started
    out = run_cli(tmp_path, ["play", algorithm, "--run-dir", str(run), "--episodes", "2"])
    assert f"on {env}: mean return" in out, out


def test_train_i2a_is_interrupted_by_sigterm_and_resumed(tmp_path):
    # All three stages (teacher and env model, distillation, the I2A agent), small.
    settings = {"num_envs": 4, "n_steps": 5, "channels": 8, "hidden": 32, "encoder_hidden": 8, "a2c_hidden": 48,
                "rollout_length": 2, "teacher_frames": 200, "model_frames": 320, "model_epochs": 1,
                "distill_frames": 160, "distill_epochs": 2, "eval_every": 400, "checkpoint_every": 400}
    run = tmp_path / "run"
    args = ["train", "i2a", "--steps", "2000", "--config", _config_file(tmp_path, settings), "--run-dir", str(run)]
    _interrupt_and_resume(tmp_path, args, run / "i2a" / "log.csv", "policy_loss",
                          run / "i2a" / "checkpoint" / "state.pt", 2000, step_key="frames", signum=signal.SIGTERM)
    for artefact in ("env_model.pt", "rollout_policy.pt", "i2a/agent.pt"):
        assert (run / artefact).stat().st_size > 0


def test_train_world_models_is_interrupted_while_collecting_and_resumed(tmp_path):
    settings = {"z_dim": 8, "rnn_hidden": 16, "rollouts": 60, "vae_batch": 8, "rnn_epochs": 2, "rnn_batch": 4,
                "rnn_seq_len": 8, "popsize": 4, "trials": 2, "generations": 2, "eval_episodes": 2, "max_steps": 20}
    # The env comes from tests/golden_runs.py (gymnasium's "module:id"), imported by the CLI and its workers.
    run = tmp_path / "run"
    args = ["train", "world-models", "--env", f"golden_runs:{FRAMES_ID}", "--config", _config_file(tmp_path, settings),
            "--run-dir", str(run)]
    # Interrupted while its env worker processes collect rollouts.
    interrupt_cli(tmp_path, args, lambda: len(list((run / "data").glob("*"))) >= 10)
    assert 10 <= len(list((run / "data").glob("*"))) < 60
    out = run_cli(tmp_path, ["train", "world-models", "--run-dir", str(run)])
    assert f"World Models on golden_runs:{FRAMES_ID} (controller trained in the dream, tau 1.15): real score 3.0" in out
    assert len(list((run / "data").glob("*"))) >= 60
    for artefact in ("vae.pt", "mdnrnn.pt", "controller_tau1.15.pt"):
        assert (run / artefact).stat().st_size > 0
    # Nothing was written outside the run directory (the subprocesses ran in tmp_path).
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("output-")) == ["run", "settings.json"]


# --------------------------------------------------------------------------------------------------
# In-process: the training replaced by a stub where it is not the point


def _fake_sac_train(config, run_dir=None, *, callbacks=None):
    """The record -> log.csv -> plot path of the real agents, without the training: evaluations
    before learning starts have no losses."""
    from pymbrl.training import TrainResult

    run = start_run(run_dir, "sac", config, callbacks=callbacks)
    losses = {}
    for step in range(config.eval_every, config.steps + 1, config.eval_every):
        if step > config.steps // 2:
            losses = {"q_loss": 1.0 / step, "actor_loss": -1.0}
        run.evaluated({"step": step, "return": -float(step), **losses})
        run.progress(step)
    run.close()
    return TrainResult(None, run.history, run.directory)


def test_evaluations_before_learning_starts_are_logged_and_plotted(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sac, "train", _fake_sac_train)
    args = ["train", "sac", "--steps", "400", "--set", "eval_every=100", "--run-dir", str(tmp_path)]
    assert cli.main(args) == 0
    assert "return by step {100: -100.0, 200: -200.0, 300: -300.0, 400: -400.0}" in capsys.readouterr().out
    records = curves.read_log(tmp_path / "log.csv")
    assert [r["step"] for r in records] == [100, 200, 300, 400]
    assert math.isnan(records[0]["q_loss"]) and records[-1]["q_loss"] == 1 / 400
    assert (tmp_path / "learning_curve.png").stat().st_size > 0


def test_read_log_reads_missing_cells_as_nan_and_names_a_bad_cell(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("step,return,q_loss\n100,-5.5,\n200,nan,0.25\n")
    records = curves.read_log(path)
    assert records[0]["step"] == 100 and isinstance(records[0]["step"], int) and math.isnan(records[0]["q_loss"])
    assert math.isnan(records[1]["return"]) and records[1]["q_loss"] == 0.25
    path.write_text("step,return\n100,-5.5\n200,abc\n")
    with pytest.raises(ValueError, match=r"log.csv, line 3, column 'return': expected a number"):
        curves.read_log(path)
    path.write_text("step,return\n100\n")
    with pytest.raises(ValueError, match="line 2: expected 2 cells, got fewer"):
        curves.read_log(path)


def test_plots_leave_out_records_without_a_return(tmp_path):
    history = [{"step": 1, "return": math.nan}, {"step": 2, "return": 3.0}, {"step": 3}]
    means = curves.plot_learning_curves({"a": {0: history}}, tmp_path / "c.png", title="t")
    assert means == {"a": {2: 3.0}}


def test_a_plot_stopped_while_it_is_drawn_keeps_the_previous_curve_and_closes_its_figure(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    path = tmp_path / "c.png"
    curves.plot_learning_curves({"a": {0: [{"step": 1, "return": 2.0}]}}, path, title="t")
    before = path.read_bytes()
    save = Figure.savefig

    def interrupted(self, file, **kwargs):
        save(self, file, **kwargs)  # half written, then Ctrl-C
        file.truncate(len(before) // 2)
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted)
    with pytest.raises(KeyboardInterrupt):
        curves.plot_learning_curves({"a": {0: [{"step": 1, "return": 5.0}]}}, path, title="t")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["c.png"]
    assert plt.get_fignums() == []


def test_an_error_inside_training_is_raised_with_its_traceback_not_as_a_usage_error(tmp_path, monkeypatch, capsys):
    def broken(config, run_dir=None, *, callbacks):
        callbacks.on_progress("train", 1, config.steps)
        raise ValueError("q: a bug inside training")

    monkeypatch.setattr(sac, "train", broken)
    with pytest.raises(ValueError, match="a bug inside training"):
        cli.main(["train", "sac", "--steps", "10", "--run-dir", str(tmp_path)])
    assert "usage:" not in capsys.readouterr().err


def _never(*args, **kwargs):
    raise AssertionError("training started")


@pytest.mark.parametrize("bad, message", [
    (["--steps", "0"], "--steps: expected an integer >= 1, got 0"),
    (["--set", "eval_every=-5"], "--set: eval_every: expected an integer >= 1"),
    (["--env", "CartPole-v1"], "--env: SAC needs a Box action space"),
    (["--env", "NoSuchEnv-v0"], "--env: "),
    (["--stages", "vae"], "unrecognized arguments: --stages"),
    (["--seed", str(10**23)], "--seed: expected an integer in [0, 2**31)"),
    (["--device", "gpu"], "--device: expected cpu, cuda, cuda:N or mps, got 'gpu'"),
    (["--set", "hidden=abc"], "--set: hidden: expected int, got 'abc'"),
    (["--set", "hidden=1e100"], "--set: hidden: expected int"),
    (["--set", "learning_starts=-5"], "--set: learning_starts: expected an integer >= 0"),
    (["--set", "gamma=2"], "--set: gamma: "),
    (["--set", "no_such_field=1"], "--set: no_such_field: SACConfig has no such field"),
    (["--set", "hidden"], "--set: 'hidden': expected field=value"),
    (["--set", "hidden=[1"], "--set: hidden: '[1' is not a value"),
    (["--config", "missing.yaml"], "--config: missing.yaml: no such file"),
])
def test_bad_arguments_are_usage_errors_before_any_progress_bar(tmp_path, monkeypatch, capsys, bad, message):
    monkeypatch.setattr(sac, "train", _never)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "sac", *bad, "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err, err
    assert "%|" not in err  # no progress bar was drawn
    assert not (tmp_path / "run").exists()


def test_actors_without_ray_are_a_usage_error_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError, as where it is not installed
    monkeypatch.setattr(muzero, "train", _never)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "muzero", "--actors", "2", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--actors: ray is not installed: pip install 'pymbrl[ray]'" in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text, suffix, message", [
    ("hidden: [1", ".yaml", "not valid YAML"), ("{", ".json", "not valid JSON"), ("[1, 2]", ".yaml", "expected a mapping"),
    ("algorithm: muzero\n", ".yaml", "is a config of 'muzero', not 'sac'"), ("hidden: abc\n", ".yml", "hidden: expected int"),
    ("gamma: .nan\n", ".yaml", "expected finite numbers"), ("!!python/object:os.system {}\n", ".yaml", "not valid YAML"),
])
def test_bad_config_files_are_usage_errors_naming_the_file(tmp_path, monkeypatch, capsys, text, suffix, message):
    monkeypatch.setattr(sac, "train", _never)
    path = tmp_path / f"settings{suffix}"
    path.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "sac", "--config", str(path), "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--config: " in err and message in err, err


def test_config_layers_reach_the_config_in_order(tmp_path, monkeypatch):
    """Defaults < the env's preset < --config < --set < --env/--seed/--device/--steps; nested fields dotted."""
    seen = []
    monkeypatch.setattr(cli, "_train", lambda args: seen.append(args.config) or 0)
    path = tmp_path / "mbpo.yaml"
    path.write_text("algorithm: mbpo\ninit_steps: 50\nhidden: 16\nrollout_length: [1, 2, 3, 4]\nseed: 9\n")
    assert cli.main(["train", "mbpo", "--env", "Hopper-v5", "--config", str(path), "--set", "hidden=8",
                     "--set", "target_entropy=null", "--seed", "2", "--run-dir", str(tmp_path / "run")]) == 0
    config = seen[-1]
    assert (config.env, config.init_steps, config.hidden, config.rollout_length, config.seed) == (
        "Hopper-v5", 50, 8, (1, 2, 3, 4), 2)
    assert config.target_entropy is None and config.updates_per_step == 20  # the Hopper preset's G
    assert cli.main(["train", "dreamer", "--set", "model.deter=64", "--set", "horizon=7",
                     "--run-dir", str(tmp_path / "d")]) == 0
    assert (seen[-1].model.deter, seen[-1].horizon) == (64, 7)
    with pytest.raises(SystemExit):
        cli.main(["train", "dreamer", "--set", "model.nope=1", "--run-dir", str(tmp_path / "d")])


def test_help_lists_each_algorithms_own_settings_with_defaults_and_docs(capsys):
    helps = {}
    for algorithm in cli.NAMES:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["train", algorithm, "--help"])
        assert exit_info.value.code == 0
        helps[algorithm] = capsys.readouterr().out
    assert len(set(helps.values())) == len(helps)
    assert "learning_starts=1000" in helps["sac"] and "random actions before the first update" in helps["sac"]
    assert "num_simulations=" in helps["muzero"] and "model.deter=" in helps["dreamer"]
    assert "steps=10000" in helps["sac"] and "env=\"Pendulum-v1\"" in helps["sac"]
    assert "presets (by env id):" in helps["mbpo"] and "Hopper-" in helps["mbpo"]
    for algorithm, text in helps.items():
        from pymbrl import agents
        from pymbrl.training.config import fields

        for field in fields(agents.config_class(algorithm)):
            assert f"  {field.name}=" in text, (algorithm, field.name)
            assert field.doc, f"{algorithm}: {field.name} has no documentation"


def test_list_and_version(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in cli.NAMES:
        assert out.count(f"{name} ") >= 1
    algorithms = out.splitlines()[:len(cli.NAMES)]
    assert len({line.index(cli.NAMES[line.split()[0]]) for line in algorithms}) == 1  # one column of names
    assert "Hopper-" in out and "TicTacToe = pymbrl/TicTacToe-v0" in out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("pymbrl ")


@pytest.mark.parametrize("bad, message", [
    (["--seeds", str(10**13)], "--seeds, --episodes: expected seeds x episodes <= 2**28"),  # was a MemoryError
    (["--episodes", str(10**20)], "--seeds, --episodes"),  # was a ValueError traceback from run_batch
    (["--planning", str(2**64)], "--planning: expected integers < 2**63"),
    (["--out", "/nonexistent-dir/x.png"], "--out: expected a file path in an existing directory"),  # was raised after the run
])
def test_bad_dyna_arguments_are_usage_errors_before_anything_runs(bad, message, monkeypatch, capsys):
    from pymbrl.dyna import experiments

    monkeypatch.setattr(experiments, "figure_8_2", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["dyna", *bad])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err, err


@pytest.mark.parametrize("command", [["play", "muzero"], ["play", "sac"], ["train", "muzero", "--env", "CartPole-v1"],
                                     ["train", "sac"]])
def test_a_missing_or_corrupt_run_dir_is_a_usage_error_naming_it(tmp_path, capsys, command):
    corrupt = tmp_path / "corrupt"
    (corrupt / "checkpoint").mkdir(parents=True)
    (corrupt / "checkpoint" / "state.pt").write_bytes(b"not a checkpoint")
    (corrupt / "config.yaml").write_text(f"algorithm: {command[1]}\n")
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    cases = [corrupt, a_file] + ([tmp_path / "missing"] if command[0] == "play" else [])
    for run_dir in cases:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([*command, "--run-dir", str(run_dir)])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and "--run-dir" in err and str(run_dir) in err, err
        assert "Traceback" not in err


def test_play_of_another_algorithms_run_is_a_usage_error(tmp_path, capsys):
    sac.train(sac.SACConfig(steps=20, learning_starts=10, batch_size=8, hidden=8, eval_every=20, eval_episodes=1),
              tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["play", "mbpo", "--run-dir", str(tmp_path)])
    assert exit_info.value.code == 2 and "is a run of 'sac', not 'mbpo'" in capsys.readouterr().err
    assert cli.main(["play", "sac", "--run-dir", str(tmp_path), "--episodes", "1", "--video",
                     str(tmp_path / "sac.gif")]) == 0
    assert "mean return" in capsys.readouterr().out and (tmp_path / "sac.gif").stat().st_size > 0


def test_play_in_a_missing_run_dir_exits_cleanly_in_a_subprocess(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pymbrl.cli", "play", "muzero", "--run-dir", "missing"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--run-dir" in result.stderr and "'missing'" in result.stderr
    assert "Traceback" not in result.stderr


class CountedBars:
    """Stands in for tqdm: counts the bars made and closed."""

    made: list[CountedBars] = []

    def __init__(self, total=None, initial=0, **kwargs):
        self.total, self.initial, self.n, self.closed = total, initial, initial, False
        CountedBars.made.append(self)

    def update(self, n):
        self.n += n

    def close(self):
        self.closed = True

    @staticmethod
    def write(text):
        pass


def _report(callbacks, tasks):
    for task, total in tasks:
        callbacks.on_stage(task)
        for done in range(0, total + 1, 10):
            callbacks.on_progress(task, done, total)


def test_staged_agents_draw_one_bar_per_task(tmp_path, monkeypatch):
    import tqdm

    from pymbrl.training import TrainResult

    monkeypatch.setattr(tqdm, "tqdm", CountedBars)
    tasks = [("teacher", 1000), ("model data", 500), ("env model epochs", 30), ("copy", 200)]

    def stages(config, run_dir=None, *, callbacks, stages=None):
        _report(callbacks, tasks)
        callbacks.on_progress("unfinished", 5, 100)
        return TrainResult(None, [], run_dir, {})

    monkeypatch.setattr(i2a, "train", stages)
    monkeypatch.setattr(i2a, "check_stages", lambda *args: None)
    CountedBars.made = []
    assert cli.main(["train", "i2a", "--run-dir", str(tmp_path / "i2a")]) == 0
    assert [b.total for b in CountedBars.made] == [1000, 500, 30, 200, 100]
    assert all(b.closed for b in CountedBars.made)

    def train(config, run_dir=None, *, callbacks, stages=None):
        _report(callbacks, [("collect", 400), ("vae", 300)])
        return TrainResult(None, [], run_dir, {})

    monkeypatch.setattr(wm, "train", train)
    monkeypatch.setattr(wm, "check_stages", lambda *args: None)
    CountedBars.made = []
    assert cli.main(["train", "world-models", "--env", FRAMES_ID, "--run-dir", str(tmp_path / "wm")]) == 0
    assert [b.total for b in CountedBars.made] == [400, 300] and all(b.closed for b in CountedBars.made)


def test_a_resumed_runs_bar_starts_at_its_checkpoint(tmp_path, monkeypatch):
    # Counted as progress since the bar began, the checkpoint's steps would show as a huge rate.
    import tqdm

    from pymbrl.training import TrainResult

    monkeypatch.setattr(tqdm, "tqdm", CountedBars)

    def resumed(config, run_dir=None, *, callbacks):
        for done in (900, 950, 1000):
            callbacks.on_progress("train", done, 1000)
        return TrainResult(None, [], run_dir, {})

    monkeypatch.setattr(sac, "train", resumed)
    CountedBars.made = []
    assert cli.main(["train", "sac", "--run-dir", str(tmp_path)]) == 0
    [bar] = CountedBars.made
    assert (bar.initial, bar.n, bar.closed) == (900, 1000, True)


@pytest.mark.parametrize("module", ["pymbrl", "pymbrl.cli"])
def test_python_m_runs_the_command_line(module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "usage: pymbrl" in result.stdout
    result = subprocess.run([sys.executable, "-m", module, "train", "nothing"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "invalid choice: 'nothing'" in result.stderr


@pytest.fixture(params=["buffered", "unbuffered"])
def stdout_mode(request):
    return request.param


def _python_m(module: str, args: list[str], directory: Path, mode: str, **popen: Any) -> subprocess.Popen:
    """Starts ``python -m MODULE ARGS`` in ``directory`` (importable from there), its stdout ``mode``
    "buffered" (Python's default for a pipe) or "unbuffered" (PYTHONUNBUFFERED)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONPATH"] = os.pathsep.join([str(directory), *filter(None, [os.environ.get("PYTHONPATH")])])
    if mode == "unbuffered":
        env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=directory, text=True, env=env, **popen)


def _sac_launcher(directory: Path, train: str) -> None:
    """Writes ``directory/launch.py``, which runs ``pymbrl train sac --run-dir run`` with SAC's
    training replaced by ``train`` (the lines of its body, under ``import os, signal, sys, time``)."""
    body = "".join(f"    {line}\n" for line in train.splitlines())
    (directory / "launch.py").write_text(
        "import os, signal, sys, time\n"
        "from pymbrl import cli\n"
        "from pymbrl.agents import sac\n"
        f"def train(config, run_dir=None, *, callbacks):\n{body}"
        "sac.train = train\n"
        "if __name__ == '__main__':\n"
        "    sys.exit(cli.main(['train', 'sac', '--run-dir', 'run']))\n")


def _without_reader(args: list[str], directory: Path, mode: str) -> tuple[int, str]:
    """Runs ``python -m pymbrl ARGS`` (see :func:`_python_m`) whose stdout's reader leaves before
    anything is written (as ``pymbrl list | head -1`` once head has its line); returns the status
    and stderr."""
    process = _python_m("pymbrl", args, directory, mode, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    err = process.stderr.read()
    return process.wait(timeout=120), err


@pytest.mark.parametrize("args", [["list"], ["dyna", "--seeds", "2", "--episodes", "3", "--out", "dyna.png"]])
def test_a_command_whose_reader_left_ends_quietly_as_sigpipe_would(args, tmp_path, stdout_mode):
    status, err = _without_reader(args, tmp_path, stdout_mode)  # was a BrokenPipeError traceback, status 1
    assert status == 128 + signal.SIGPIPE, err
    assert "Traceback" not in err and "Exception ignored" not in err and "BrokenPipe" not in err


def test_a_run_whose_reader_left_stops_and_prints_the_command_that_resumes(tmp_path):
    status, err = _without_reader(["train", "muzero", "--env", "CartPole-v1", "--run-dir", "run"], tmp_path,
                                  "unbuffered")  # buffered, its first lines wait in the buffer until later
    assert status == 128 + signal.SIGPIPE, err
    assert err.strip().endswith("resume with: pymbrl train muzero --run-dir run") and "Traceback" not in err


@pytest.mark.parametrize("args", [["train", "sac", "--run-dir", "{dir}/run"], ["demo", "--out", "{dir}/demo"],
                                  ["dyna", "--out", "{dir}/dyna.png"]])
def test_an_output_path_that_cannot_be_written_is_a_usage_error(args, tmp_path, monkeypatch, capsys):
    # Found before anything runs: the run directory was a traceback as training started, dyna's
    # plot one after the experiment had run.
    (tmp_path / "file").write_text("")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    cases = [(locked, "is not writable by this user")]
    if args[0] != "dyna":  # whose plot goes into an existing directory
        cases += [(tmp_path / "file" / "sub", "is not a directory"), (locked / "deeper", cases[0][1])]
    for where, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([a.format(dir=where) for a in args])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and f"{args[-2]}: cannot " in err and message in err, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["file", "locked"]


def test_a_device_this_machine_lacks_is_a_usage_error_naming_where_it_came_from(tmp_path, monkeypatch, capsys):
    # It was torch's traceback (AssertionError: Torch not compiled with CUDA enabled) after
    # train had written the new run's config.yaml.
    cuda(monkeypatch, available=True)
    gpu_run, new = tmp_path / "gpu-run", tmp_path / "new"
    start_run(gpu_run, "sac", sac.SACConfig(env="Pendulum-v1", device="cuda")).close()  # trained on a GPU machine
    cuda(monkeypatch, available=False)
    monkeypatch.setattr(sac, "train", _fake_sac_train)
    for args, message in ((["train", "sac", "--device", "cuda:1", "--run-dir", str(new)], "--device: 'cuda:1' asks"),
                          (["train", "sac", "--set", "device=cuda", "--run-dir", str(new)],
                           "--set: device: 'cuda' asks"),
                          (["train", "sac", "--run-dir", str(gpu_run)], "--run-dir: device: 'cuda' asks"),
                          (["play", "sac", "--run-dir", str(gpu_run)], "--run-dir: device: 'cuda' asks"),
                          (["play", "sac", "--run-dir", str(gpu_run), "--device", "cuda"], "--device: 'cuda' asks"),
                          (["bench", "replay", "--device", "cuda"], "--device: 'cuda' asks")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(args)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and f"{message} for CUDA, which is not available on this machine" in err, err
    assert not new.exists()
    # On this machine's CPU, the GPU machine's run goes on.
    assert cli.main(["train", "sac", "--run-dir", str(gpu_run), "--device", "cpu", "--steps", "2000"]) == 0


def test_a_run_directory_another_process_trains_in_is_a_usage_error(tmp_path, capsys):
    process = holder(tmp_path / "run", "pipeline")  # of another algorithm, too: the directory's use comes first
    try:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["train", "sac", "--run-dir", str(tmp_path / "run")])
    finally:
        process.kill()
        process.wait()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"--run-dir: '{tmp_path / 'run'}' is in use by another process" in err, err


def test_each_line_reaches_a_pipe_as_it_is_printed(tmp_path):
    # `pymbrl train ... | tee train.log` showed nothing until Python's 8 KB buffer filled.
    _sac_launcher(tmp_path, "callbacks.on_stage('train')\n"
                            "sys.stdin.readline()  # until the test has read what came before\n"
                            "raise SystemExit(0)")
    process = _python_m("launch", [], tmp_path, "buffered", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout.readline() for _ in range(2)), daemon=True)
    reader.start()
    reader.join(timeout=60)  # buffered, the lines would come at the end, which waits for the test
    try:
        assert len(lines) == 2 and lines[0].startswith("run directory: run ") and lines[1] == "stage train\n", lines
    finally:
        process.stdin.close()
        process.wait(timeout=120)


def test_a_run_stopped_by_ctrl_c_keeps_its_status_where_the_reader_left_too(tmp_path):
    # `pymbrl train ... | tee log` and Ctrl-C: the signal stops tee as well, and the run's last
    # output (not yet ended by a newline, so still buffered) finds no reader as the CLI ends.
    _sac_launcher(tmp_path, "sys.stdin.readline()  # until the test's reader has left\n"
                            "sys.stdout.write('output not yet ended by a newline')\n"
                            "os.kill(os.getpid(), signal.SIGINT)\n"
                            "time.sleep(5)")
    process = _python_m("launch", [], tmp_path, "buffered", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
    assert process.stdout.readline().startswith("run directory: ")
    process.stdout.close()
    process.stdin.write("go\n")
    process.stdin.close()
    err = process.stderr.read()
    assert process.wait(timeout=120) == 130 and "interrupted; " in err and "Traceback" not in err, err


def test_resuming_with_other_values_is_a_usage_error_naming_the_option(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sac, "train", _fake_sac_train)
    args = ["train", "sac", "--steps", "200", "--set", "eval_every=100", "--run-dir", str(tmp_path)]
    assert cli.main(args) == 0
    run = start_run(tmp_path, "sac", sac.SACConfig(env="Pendulum-v1", steps=200, eval_every=100))
    run.save(200, {}, {})
    for changed, message in ((["--steps", "100"], "--steps: the run in"), (["--seed", "1"], "--seed: the run in"),
                             (["--env", "MountainCarContinuous-v0"], "--env: the run in"),
                             (["--set", "hidden=8"], "--set: hidden: the run in")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([*args, *changed])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err, err
        assert "already done 200 steps" in err if "--steps" in changed else "another run directory" in err, err
    # The run directory alone resumes it (its config.yaml), and a larger --steps continues it.
    assert cli.main(["train", "sac", "--run-dir", str(tmp_path), "--steps", "300"]) == 0
    assert "300: -300.0" in capsys.readouterr().out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_run_even_where_the_env_replaced_the_handler(tmp_path, monkeypatch, capsys, signum):
    make = sac.make_env

    def make_env(config, render_mode=None):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as ViZDoom does when a game starts
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return make(config, render_mode)

    def train(config, run_dir=None, *, callbacks):
        callbacks.on_progress("train", 1, config.steps)
        os.kill(os.getpid(), signum)
        time.sleep(5)
        raise AssertionError("the signal did not stop the run")

    monkeypatch.setattr(sac, "make_env", make_env)
    monkeypatch.setattr(sac, "train", train)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        assert cli.main(["train", "sac", "--run-dir", str(tmp_path)]) == 128 + signum
    finally:
        after = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])
    assert after == before  # the CLI's handlers are its own business
    assert f"resume with: pymbrl train sac --run-dir {tmp_path}" in capsys.readouterr().err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("library", ["swallows", "replaces", "reports"])
def test_a_signal_whose_exception_a_library_lost_still_stops_the_run(tmp_path, monkeypatch, capsys, signum, library):
    # Python code run by a C library (matplotlib's renderer, a tensor's __array__ under numpy) may
    # clear the signal's exception or raise an error of its own in its place; where it was a
    # __del__ or a weakref callback, Python reports it as unraisable (with a traceback).
    class Interrupted:
        def __del__(self):
            os.kill(os.getpid(), signum)
            time.sleep(5)

    def train(config, run_dir=None, *, callbacks):
        callbacks.on_progress("train", 1, config.steps)
        try:
            if library == "reports":
                Interrupted()  # dropped at once: its __del__ runs here
            else:
                os.kill(os.getpid(), signum)
                time.sleep(5)
        except KeyboardInterrupt:
            if library == "replaces":
                raise ValueError("Invalid bounding box") from None
        callbacks.on_progress("train", 2, config.steps)
        raise AssertionError("the signal did not stop the run")

    monkeypatch.setattr(sac, "train", train)
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)  # Python's, not pytest's: it prints
    assert cli.main(["train", "sac", "--run-dir", str(tmp_path)]) == 128 + signum
    err = capsys.readouterr().err
    assert f"resume with: pymbrl train sac --run-dir {tmp_path}" in err and "Traceback" not in err, err
    assert "Exception ignored" not in err, err

    # The next command in this process starts with no signal received: its errors are its own.
    def fails(config, run_dir=None, *, callbacks):
        raise ValueError("a bug")

    monkeypatch.setattr(sac, "train", fails)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["train", "sac", "--run-dir", str(tmp_path / "other")])


def _loses_a_signal() -> None:
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    except KeyboardInterrupt:
        pass  # as a library that catches everything may


def test_a_signal_whose_exception_a_library_lost_still_stops_the_demo(tmp_path, monkeypatch, capsys):
    from pymbrl import demo

    def run(out, *, quick, seed, write):
        write("1/3")
        _loses_a_signal()
        write("2/3")
        write("3/3")

    monkeypatch.setattr(demo, "run", run)
    assert cli.main(["demo", "--quick", "--out", str(tmp_path / "out")]) == 130
    out, err = capsys.readouterr()
    assert out.splitlines() == ["1/3", "2/3"] and err.strip() == "interrupted"


@pytest.mark.parametrize("command", ["bench", "dyna"])
def test_a_command_that_ran_on_after_a_lost_signal_ends_as_interrupted(command, tmp_path, monkeypatch, capsys):
    # bench and dyna have no report at which to raise the signal again: they finish, then say so.
    from pymbrl.bench import replay
    from pymbrl.dyna import experiments

    def figure_8_2(*args, **kwargs):
        _loses_a_signal()
        return {}, 0.0

    monkeypatch.setattr(replay, "benchmark", lambda settings: (_loses_a_signal(), "the table")[1])
    monkeypatch.setattr(experiments, "figure_8_2", figure_8_2)
    monkeypatch.setattr(experiments, "steps_table", lambda curves, shown: "the table")
    argv = {"bench": ["bench", "replay", "--quick"], "dyna": ["dyna", "--out", str(tmp_path / "dyna.png")]}[command]
    assert cli.main(argv) == 130
    out, err = capsys.readouterr()
    assert "the table" in out and err.strip() == "interrupted"


def test_a_signal_that_left_code_run_by_exec_still_ends_python_m_with_its_status(tmp_path):
    # CPython kills a `python -m` process with SIGINT at exit (status -2, not 130) once a
    # KeyboardInterrupt has left exec() or eval() of a string, caught or not; dataclasses and mpmath
    # (imported by torch as a run starts) run their code that way.
    _sac_launcher(tmp_path, "exec('import os, signal, time; os.kill(os.getpid(), signal.SIGINT); time.sleep(5)')\n"
                            "raise AssertionError('the signal did not stop the run')")
    process = _python_m("launch", [], tmp_path, "buffered", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "resume with: pymbrl train sac --run-dir run" in err and "Traceback" not in err
