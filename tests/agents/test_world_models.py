"""pymbrl.agents.world_models: the config's and make_env's checks, playing and the random policy, and
the staged pipeline on a tiny frame env: artefacts, resuming without redoing work, refused run
directories and stages, a second iteration, the loaded agent, and the env workers of ViZDoom runs.
(The rollout dataset: tests/replay/test_rollouts.py; CMA-ES: tests/training/test_evolution.py.)"""

from __future__ import annotations

import copy
import dataclasses
import os
import pickle
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch

from pymbrl.agents import world_models as wm
from pymbrl.agents import world_models_fitting as fitting
from pymbrl.agents import world_models_stages as wms
from pymbrl.envs.spaces import ActionCodec
from pymbrl.models.world_models import MDNRNN, Controller, ConvVAE, Policy
from pymbrl.replay.rollouts import RolloutDataset
from pymbrl.training import Callbacks, read_config, write_config
from support import Payload

ENV_ID = "pymbrl-test/Frames-v0"
OTHER_ID = "pymbrl-test/OtherFrames-v0"


class FramesEnv(gym.Env):
    """Random 64x64 RGB frames whose pixel [0, 0, 0] is the step count; episodes of 5-15 steps that
    terminate; reward 1 for action 1, else 0."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(3)

    def _frame(self) -> np.ndarray:
        frame = self.np_random.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        frame[0, 0, 0] = self.t
        return frame

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.length = 0, int(self.np_random.integers(5, 16))
        return self._frame(), {}

    def step(self, action):
        self.t += 1
        return self._frame(), float(action == 1), self.t >= self.length, False, {}


for env_id in (ENV_ID, OTHER_ID):
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=FramesEnv)

TINY = wm.WorldModelsConfig(env=ENV_ID, z_dim=8, rnn_hidden=16, rollouts=4, vae_epochs=1, vae_batch=8, rnn_epochs=2,
                            rnn_batch=4, rnn_seq_len=8, popsize=4, trials=2, generations=2, eval_episodes=2,
                            max_steps=20, num_envs=1)


class Recorder(Callbacks):
    """Keeps (stage, record) of every record; ``stop(stage, record)`` may raise to interrupt the run."""

    def __init__(self, stop=None):
        self.records, self.stop, self.progress = [], stop, []

    def on_record(self, stage, record):
        self.records.append((stage, record))
        if self.stop is not None:
            self.stop(stage, record)

    def on_progress(self, stage, done, total):
        self.progress.append((stage, done, total))


# --------------------------------------------------------------------------------------------------
# Config and envs


@pytest.mark.parametrize("field, value", [("tau", 0.0), ("tau", -1.0), ("popsize", 1), ("train_in", "x"),
                                          ("z_dim", 0), ("sigma0", -0.1), ("controller_hidden", -1),
                                          ("iterations", 0), ("random_repeat", 0), ("vae_rollouts", 0),
                                          ("reward_head", 1), ("eval_episodes", 0), ("seed", -1)])
def test_config_refuses_bad_values(field, value):
    with pytest.raises((ValueError, TypeError), match=field):
        wm.WorldModelsConfig(**{field: value})


def test_config_presets_and_overrides():
    doom = wm.WorldModelsConfig.for_env("VizdoomTakeCover-v1", generations=5)
    assert (doom.rollouts, doom.vae_rollouts, doom.rnn_hidden, doom.generations, doom.z_dim) == (1200, 300, 256, 5, 64)
    assert wm.WorldModelsConfig.for_env("CarRacing-v3").train_in == "real"
    assert wm.WorldModelsConfig.for_env(ENV_ID) == wm.WorldModelsConfig(env=ENV_ID)
    assert wm.WorldModelsConfig().env == "VizdoomTakeCover-v1"


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_round_trips_through_a_file(tmp_path, suffix):
    config = dataclasses.replace(TINY, vae_rollouts=3, train_in="real", reward_head=True, tau=0.5)
    write_config(config, tmp_path / f"c{suffix}", "world-models")
    assert read_config(wm.WorldModelsConfig, tmp_path / f"c{suffix}", "world-models") == config


def test_make_env_gives_64x64_frames_cut_at_max_steps_and_refuses_other_envs():
    env = wm.make_env(dataclasses.replace(TINY, max_steps=3))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and obs[0, 0, 0] == 0
    assert [env.step(0)[3] for _ in range(3)] == [False, False, True]  # truncated after max_steps
    env.close()
    with pytest.raises(ValueError, match="^env: World Models needs RGB frames"):
        wm.make_env(wm.WorldModelsConfig(env="CartPole-v1"))
    with pytest.raises(ValueError, match="^env: "):
        wm.make_env(wm.WorldModelsConfig(env="pymbrl-test/NoSuchEnv-v0"))


def test_play_records_whole_episodes(tmp_path):
    """Random play of 3 episodes: each stored with T + 1 frames (the last one included), one-hot
    actions aligned with their rewards, and done only at the end; returns are the rewards' sums."""
    data = RolloutDataset(tmp_path)
    codec = ActionCodec(gym.spaces.Discrete(3))
    recorder = Recorder()
    returns = wms.play(dataclasses.replace(TINY, max_steps=50), 3, Policy(None, None, None, codec), seed=1,
                       dataset=data, callbacks=recorder, stage="collect")
    assert returns.shape == (3,) and recorder.progress == [("collect", n, 3) for n in (1, 2, 3)] and len(data) == 3
    for file, ret in zip(data.files(), returns):
        r = data.load(file)
        steps = len(r["actions"])
        assert 5 <= steps <= 15
        np.testing.assert_array_equal(r["frames"][:, 0, 0, 0], np.arange(steps + 1))
        np.testing.assert_array_equal(r["actions"].sum(1), np.ones(steps))
        np.testing.assert_array_equal(r["rewards"], r["actions"].argmax(1) == 1)
        np.testing.assert_array_equal(r["dones"], np.arange(steps) == steps - 1)
        assert r["rewards"].sum() == ret
    # Truncated episodes are stored too, without a done.
    short = RolloutDataset(tmp_path / "short")
    wms.play(dataclasses.replace(TINY, max_steps=3), 2, Policy(None, None, None, codec), seed=1, dataset=short)
    for file in short.files():
        r = short.load(file)
        assert len(r["actions"]) == 3 and not r["dones"].any() and len(r["frames"]) == 4


def test_play_in_worker_processes_is_reproducible_and_works_in_the_run(tmp_path):
    """Two env workers (working in run/envs/worker<i>) play the same episodes again given the same seed."""
    codec = ActionCodec(gym.spaces.Discrete(3))
    config = dataclasses.replace(TINY, num_envs=2)
    first = wms.play(config, 4, Policy(None, None, None, codec), seed=5, workdir=tmp_path / "envs")
    again = wms.play(config, 4, Policy(None, None, None, codec), seed=5, workdir=tmp_path / "envs")
    assert sorted(p.name for p in (tmp_path / "envs").iterdir()) == ["worker0", "worker1"]
    assert first.shape == (4,) and np.array_equal(first, again) and ((0 <= first) & (first <= 15)).all()


def test_random_policy_holds_each_action_for_1_to_repeat_steps():
    """Continuous actions (two draws are never equal), so every run of equal actions is one hold:
    holds last 1..repeat steps, all of those lengths occur, an episode's first step draws a new
    action, and repeat 1 draws one every step."""
    space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    codec = ActionCodec(space)
    for repeat in (1, 4):
        space.seed(3)
        policy, state, actions = Policy(None, None, None, codec, repeat=repeat), None, []
        starts = np.zeros((400, 2), bool)
        starts[0], starts[[50, 51, 200], 1] = True, True
        for first in starts:
            env_actions, vectors, state = policy.act(np.zeros((2, 64, 64, 3), np.uint8), None, state, first, space)
            np.testing.assert_allclose(vectors, env_actions, atol=1e-6)
            actions.append(env_actions)
        actions = np.stack(actions)  # [T, 2 envs, 2]
        changed = (actions[1:] != actions[:-1]).any(-1)
        assert changed[starts[1:]].all()
        for env in range(2):
            edges = np.flatnonzero(np.r_[True, changed[:, env], True])
            holds = np.diff(edges)
            assert holds.max() <= repeat and set(holds[1:-1]) == set(range(1, repeat + 1))
    with pytest.raises(ValueError, match="repeat"):
        Policy(None, None, None, codec, repeat=0)


# --------------------------------------------------------------------------------------------------
# The pipeline


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny run of every stage; returns (its directory, its result, the stages of its records)."""
    run_dir = tmp_path_factory.mktemp("wm") / "run"
    recorder = Recorder()
    result = wm.train(TINY, run_dir, callbacks=recorder)
    return run_dir, result, [stage for stage, _ in recorder.records]


def test_train_leaves_every_artefact_and_a_summary(run):
    run_dir, result, logged = run
    summary = result.summary
    assert result.run_dir == run_dir and result.history == summary["fitness"]
    assert len(list((run_dir / "data").glob("rollout_*.npz"))) == 4
    for name in ("config.yaml", "vae.pt", "mdnrnn.pt", "controller_tau1.15.pt"):
        assert (run_dir / name).exists(), name
    assert read_config(wm.WorldModelsConfig, run_dir / "config.yaml", "world-models") == TINY
    # The CMA-ES strategy stays beside the controller, so that more generations can follow.
    assert [p.name for p in run_dir.glob("*.es.pt")] == ["controller_tau1.15.es.pt"]
    assert len(summary["returns"]) == 2 and len(summary["fitness"]) == 2
    assert summary["mean"] == pytest.approx(np.mean(summary["returns"]))
    assert summary["tau"] == 1.15 and summary["train_in"] == "dream"
    assert logged == ["vae", "mdn", "mdn", "controller", "controller", "evaluate"]
    # Each training stage's records, in log.csv (and TensorBoard) under logs/.
    for folder, rows in (("vae", 1), ("mdnrnn", 2), ("controller_tau1.15", 2), ("controller_tau1.15/evaluate", 1)):
        lines = (run_dir / "logs" / folder / "log.csv").read_text().splitlines()
        assert len(lines) == 1 + rows and "seconds" in lines[0], folder
        assert list((run_dir / "logs" / folder).glob("events.out.tfevents.*")), folder
    saved = torch.load(run_dir / "controller_tau1.15.pt", weights_only=True)
    assert saved["params"].shape == (Controller(8 + 16, 3).num_params,)
    mdn = torch.load(run_dir / "mdnrnn.pt", weights_only=True)
    assert mdn["start_z"].shape == (4, 8) and mdn["rollouts"] == 4 and len(mdn["history"]) == 2
    # Dream fitness without a reward head is the mean dream length: between 1 and max_steps.
    for record in summary["fitness"]:
        assert 1.0 <= record["worst"] <= record["mean"] <= record["best"] <= 20.0


def test_train_again_resumes_without_redoing_anything(run):
    """Run again, every stage is done: nothing is recorded and no artefact is written again (the
    config.yaml, the run's record, is rewritten with the same settings)."""
    run_dir, result, _ = run
    files = sorted(p for p in run_dir.rglob("*") if p.is_file() and p.name != "config.yaml")
    stamps = {p: p.stat().st_mtime_ns for p in files}
    config_text = (run_dir / "config.yaml").read_text()
    recorder = Recorder()
    again = wm.train(TINY, run_dir, callbacks=recorder)
    assert again.summary == result.summary and recorder.records == []
    assert sorted(p for p in run_dir.rglob("*") if p.is_file() and p.name != "config.yaml") == files
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    assert (run_dir / "config.yaml").read_text() == config_text


def test_the_trained_agent_acts_on_one_frame_or_a_batch(run):
    """load(run_dir) gives the controller with V and M: one action for one frame, N for N frames;
    M's state carries over between calls until reset(); the trained result's agent is the same."""
    run_dir, result, _ = run
    agent = wm.load(run_dir)
    env = wm.make_env(TINY)
    obs, _ = env.reset(seed=0)
    frames = np.stack([env.step(1)[0] for _ in range(4)])
    env.close()
    action = agent.act(obs)
    assert np.ndim(action) == 0 and 0 <= int(action) < 3
    agent.reset()
    batch = agent.act(np.stack([obs, obs, frames[0]]))
    assert batch.shape == (3,) and batch[0] == batch[1] == action
    # The same frames from the same start give the same actions; M's state makes the actions depend on the past.
    agent.reset()
    first = [int(agent.act(f)) for f in frames]
    agent.reset()
    assert [int(agent.act(f)) for f in frames] == first
    assert [int(result.agent.act(f)) for f in frames] == first
    assert agent.act(frames, deterministic=False).shape == (4,)
    with pytest.raises(ValueError, match="obs"):
        agent.act(np.zeros((32, 32, 3), np.uint8))


def test_load_refuses_a_directory_without_a_run_or_a_controller(run, tmp_path):
    with pytest.raises(ValueError, match="run_dir"):
        wm.load(tmp_path / "nothing")
    run_dir = tmp_path / "run"
    shutil.copytree(run[0], run_dir)
    (run_dir / "controller_tau1.15.pt").unlink()
    with pytest.raises(ValueError, match="^run_dir: no controller_tau1.15.pt"):
        wm.load(run_dir)


def test_a_run_directory_refuses_another_shape_or_env_and_unknown_stages(run):
    run_dir, _, _ = run
    with pytest.raises(ValueError, match="^z_dim: .* holds a run with z_dim=8"):
        wm.train(dataclasses.replace(TINY, z_dim=4), run_dir)
    with pytest.raises(ValueError, match="^env: "):
        wm.train(dataclasses.replace(TINY, env=OTHER_ID), run_dir)
    with pytest.raises(ValueError, match="stages"):
        wm.train(TINY, run_dir, stages=["bogus"])
    with pytest.raises(ValueError, match="stages"):
        wm.train(TINY, run_dir, stages=[])


def test_stages_need_their_inputs(tmp_path):
    """The mdn stage in a run without V says which stage to run first; nothing is written."""
    with pytest.raises(ValueError, match="stages: mdn needs data/, vae.pt"):
        wm.train(TINY, tmp_path / "run", stages=["mdn"])
    with pytest.raises(ValueError, match="stages: vae needs data/ .*run the collect stage first"):
        wm.train(TINY, tmp_path / "run", stages=["vae"])
    assert not (tmp_path / "run").exists()


def test_stages_whose_inputs_are_missing_are_refused_naming_the_stage_to_run(tmp_path):
    with pytest.raises(ValueError, match=r"stages: controller needs vae.pt, mdnrnn.pt .*run the vae and mdn stages"):
        wm.check_stages(tmp_path, ["controller"], TINY)
    with pytest.raises(ValueError, match=r"stages: vae needs data/ .*run the collect stage"):
        wm.check_stages(tmp_path, ["vae", "mdn"], TINY)
    wm.check_stages(tmp_path, list(wm.STAGES), TINY)
    (tmp_path / "vae.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"controller needs mdnrnn.pt .*run the mdn stage"):
        wm.check_stages(tmp_path, ["controller"], TINY)
    # A second iteration's collection needs the first iteration's controller.
    with pytest.raises(ValueError, match=r"collect needs .*controller_tau1.15.pt.*run the .*controller stage"):
        wm.check_stages(tmp_path, ["collect"], dataclasses.replace(TINY, iterations=2))


def test_the_controller_can_evolve_in_the_real_env(run, tmp_path):
    """train_in="real": same V and M, C evolved on real episodes (popsize x trials of them per
    generation) into controller_real.pt; the dream's controller file is not touched."""
    run_dir = tmp_path / "run"
    shutil.copytree(run[0], run_dir)
    config = dataclasses.replace(TINY, train_in="real", trials=1)
    summary = wm.train(config, run_dir, stages=["controller"]).summary
    assert (run_dir / "controller_real.pt").exists() and summary["train_in"] == "real"
    assert len(summary["fitness"]) == 2 and len(summary["returns"]) == 2
    # Real returns of FramesEnv: the number of times action 1 was taken, at most 15 per episode.
    for record in summary["fitness"]:
        assert 0.0 <= record["worst"] <= record["best"] <= 15.0
        assert all(float(v).is_integer() for v in (record["worst"], record["best"]))
    assert wm.train(TINY, run_dir, stages=["controller"]).summary == run[1].summary


def test_a_second_iteration_collects_with_the_controller_and_retrains(run, tmp_path):
    """iterations=2 in a finished run: 4 more rollouts, then M and C again under _iter1 names;
    the first iteration's artefacts stay as they were; the agent is the second iteration's."""
    run_dir = tmp_path / "run"
    shutil.copytree(run[0], run_dir)
    first = {name: (run_dir / name).stat().st_mtime_ns for name in ("vae.pt", "mdnrnn.pt", "controller_tau1.15.pt")}
    config = dataclasses.replace(TINY, iterations=2)
    result = wm.train(config, run_dir)
    assert len(list((run_dir / "data").glob("rollout_*.npz"))) == 8
    assert (run_dir / "mdnrnn_iter1.pt").exists() and (run_dir / "controller_tau1.15_iter1.pt").exists()
    assert {name: (run_dir / name).stat().st_mtime_ns for name in first} == first
    assert torch.load(run_dir / "mdnrnn_iter1.pt", weights_only=True)["rollouts"] == 8
    assert len(result.summary["returns"]) == 2 and len(result.summary["fitness"]) == 2
    saved = torch.load(run_dir / "controller_tau1.15_iter1.pt", weights_only=True)
    assert result.summary == saved["summary"]
    assert torch.equal(wm.load(run_dir).params, saved["params"])


class Stop(Exception):
    pass


def test_an_interrupted_controller_stage_resumes_from_its_last_generation(tmp_path):
    """Stopped after generation 1's checkpoint, the controller stage picks up at generation 2 (and
    only runs that one), ending exactly where an uninterrupted run ends. With a reward head the
    dream fitness depends on the sampled latents, so this also needs the dream generator's state."""
    config = dataclasses.replace(TINY, reward_head=True)
    full = wm.train(config, tmp_path / "full").summary
    assert all(r["worst"] < r["best"] for r in full["fitness"])
    run_dir = tmp_path / "cut"
    shutil.copytree(tmp_path / "full", run_dir)
    (run_dir / "controller_tau1.15.pt").unlink()
    (run_dir / "controller_tau1.15.es.pt").unlink()

    def stop_at_generation_2(stage, record):
        if stage == "controller" and record["generation"] == 2:
            raise Stop

    with pytest.raises(Stop):
        wm.train(config, run_dir, callbacks=Recorder(stop_at_generation_2))
    assert (run_dir / "controller_tau1.15.es.pt").exists() and not (run_dir / "controller_tau1.15.pt").exists()
    recorder = Recorder()
    summary = wm.train(config, run_dir, callbacks=recorder).summary
    assert [(stage, record.get("generation")) for stage, record in recorder.records] == [("controller", 2),
                                                                                        ("evaluate", None)]
    assert summary == full
    assert (run_dir / "controller_tau1.15.es.pt").exists()
    # log.csv holds every generation, the one before the interruption too.
    assert len((run_dir / "logs" / "controller_tau1.15" / "log.csv").read_text().splitlines()) == 1 + 2


def test_more_generations_continue_a_finished_controller(tmp_path):
    """Asked for 4 generations where 2 are done, the stage evolves generations 3 and 4 from the kept
    strategy and scores the new controller; the first two generations' records stay as they were.
    Asked for 2 again, it returns the 4-generation controller untouched."""
    config = dataclasses.replace(TINY, reward_head=True)
    two = wm.train(config, tmp_path / "run").summary
    recorder = Recorder()
    four = wm.train(dataclasses.replace(config, generations=4), tmp_path / "run", stages=["controller"],
                    callbacks=recorder).summary
    assert [(stage, record.get("generation")) for stage, record in recorder.records] == [
        ("controller", 3), ("controller", 4), ("evaluate", None)]
    assert four["fitness"][:2] == two["fitness"] and len(four["fitness"]) == 4
    again = wm.train(config, tmp_path / "run", stages=["controller"]).summary
    assert again == four


def test_train_without_a_run_directory_keeps_nothing_and_gives_an_agent():
    result = wm.train(dataclasses.replace(TINY, rollouts=2, rnn_epochs=1, generations=1, eval_episodes=1))
    assert result.run_dir is None and len(result.summary["fitness"]) == 1
    assert 0 <= int(result.agent.act(np.zeros((64, 64, 3), np.uint8))) < 3


def test_mdn_windows_start_from_their_rollouts_state(monkeypatch):
    """A window cut from the middle of a rollout starts from the LSTM state the rollout has there
    (a pass over the rollout with the epoch's starting weights), not from zeros."""
    monkeypatch.setattr(ConvVAE, "sample", staticmethod(lambda mu, logvar, generator=None: mu))
    rng = np.random.default_rng(0)
    latents = [{"mu": rng.normal(size=(n + 1, 3)).astype(np.float32), "logvar": np.zeros((n + 1, 3), np.float32),
                "actions": rng.normal(size=(n, 2)).astype(np.float32), "rewards": np.zeros(n, np.float32),
                "dones": np.arange(n) == n - 1} for n in (12, 7)]
    config = wm.WorldModelsConfig(z_dim=3, rnn_hidden=4, rnn_seq_len=5, rnn_batch=100, rnn_epochs=1)
    torch.manual_seed(0)
    model = MDNRNN(3, 2, hidden=4)
    before = copy.deepcopy(model)
    seen = []
    original = model.loss

    def recording(z, actions, *args, state=None, **kwargs):
        seen.extend(zip(z[:, 0].detach().clone(), state.h.detach().clone()))
        return original(z, actions, *args, state=state, **kwargs)

    model.loss = recording
    fitting.train_mdnrnn(latents, 2, config, mdnrnn=model, seed=0)
    assert len(seen) == 3 + 2  # windows of 5: 12 steps -> 3, 7 -> 2
    for r in latents:
        for k in range(-(-len(r["actions"]) // 5)):
            first_z = torch.from_numpy(r["mu"][5 * k])
            h = next(h for z, h in seen if torch.equal(z, first_z))
            if k == 0:
                expected = torch.zeros(4)
            else:
                with torch.no_grad():
                    _, _, state = before(torch.from_numpy(r["mu"][None, :5 * k]),
                                         torch.from_numpy(r["actions"][None, :5 * k]))
                expected = state.h[0]
            torch.testing.assert_close(h, expected, atol=1e-5, rtol=1e-5)


def test_cli_refuses_stages_of_another_algorithm(tmp_path, capsys):
    from pymbrl import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "world-models", "--env", ENV_ID, "--stages", "distill", "--run-dir", str(tmp_path)])
    assert exit_info.value.code == 2 and "stages: expected some of" in capsys.readouterr().err


def test_cli_passes_iterations_to_the_config(tmp_path, capsys):
    from pymbrl import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "world-models", "--env", ENV_ID, "--set", "iterations=0", "--run-dir", str(tmp_path)])
    assert exit_info.value.code == 2 and "iterations: expected" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# Processes and files of the env workers (ViZDoom)


def session_processes(session: int) -> dict[int, str]:
    """pid -> name of every process in session ``session`` (from /proc, as ps would)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == session:
            found[int(pid)] = name
    return found


COLLECT = """
import signal, sys
import gymnasium as gym
from pymbrl.agents import world_models as wm

# Ctrl-C as in a Python started from a terminal. An ignored signal stays ignored across exec, and
# pytest may run with SIGINT ignored: a shell starts a background job (`make test &`, nohup) so. A
# child started from it rightly ignores Ctrl-C, which is not what this test is about.
signal.signal(signal.SIGINT, signal.default_int_handler)

# The test signals once the games play: ViZDoom's init (seconds on a loaded machine) is one C++ call
# that defers a worker's SIGTERM handler until it returns.
step_async = gym.vector.AsyncVectorEnv.step_async
stepped = []
def announce(self, actions):
    if not stepped:
        stepped.append(True)
        print("stepping", flush=True)
    return step_async(self, actions)
gym.vector.AsyncVectorEnv.step_async = announce
wm.train(wm.WorldModelsConfig(env="VizdoomTakeCover-v1", rollouts=50, num_envs=2), sys.argv[1], stages=["collect"])
"""


def wait_until_stepping(child: subprocess.Popen) -> bytes:
    """Reads the output of a COLLECT ``child`` until it says its games play; returns what it read."""
    deadline, early = time.monotonic() + 180, b""
    while b"stepping" not in early:
        assert child.poll() is None, (early + child.stdout.read()).decode()[-3000:]
        assert time.monotonic() < deadline, "the games did not start"
        if select.select([child.stdout], [], [], 0.2)[0]:
            early += os.read(child.stdout.fileno(), 65536)
    return early


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_an_interrupted_vizdoom_collection_stops_at_once_and_leaves_nothing_behind(tmp_path, signum):
    """A ViZDoom collection in a fresh directory (two games starting at once), interrupted as a
    terminal's Ctrl-C does (SIGINT to the whole process group) or by SIGTERM while its games run:
    the driver stops with KeyboardInterrupt (Python then dies of SIGINT) or SIGTERM's exit, no
    process of it is left, and nothing is written outside the run directory (the games' _vizdoom.ini and _vizdoom/
    stay in run/envs/)."""
    pytest.importorskip("vizdoom")
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    child = subprocess.Popen([sys.executable, "-c", COLLECT, str(cwd / "run")], cwd=cwd, start_new_session=True,
                             env={**os.environ, "HOME": str(home)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        early = wait_until_stepping(child)
        assert list(session_processes(child.pid).values()).count("vizdoom") == 2
        time.sleep(1)  # the games are playing
        os.killpg(child.pid, signum)
        # A bound for a hang, not a speed: beside the install matrix's compiles, closing the games
        # after SIGINT took 22-26 s in CI (alone, about 2 s).
        out = (early + child.communicate(timeout=90)[0]).decode()
        if signum == signal.SIGINT:
            assert "KeyboardInterrupt" in out and child.returncode == -signal.SIGINT, (child.returncode, out[-3000:])
        else:
            assert child.returncode == 128 + signal.SIGTERM, (child.returncode, out[-3000:])
        time.sleep(0.5)
        assert session_processes(child.pid) == {}
    finally:
        for pid in session_processes(child.pid):
            os.kill(pid, signal.SIGKILL)
        child.wait()
    assert sorted(p.name for p in cwd.iterdir()) == ["run"] and list(home.iterdir()) == []
    assert sorted(p.name for p in (cwd / "run" / "envs" / "worker0").iterdir()) == ["_vizdoom", "_vizdoom.ini"]


AFTER_THREADS = """
import sys, torch
torch.set_num_threads(2)
(torch.rand(10**7) * 2).sum()  # a parallel region: OpenMP's thread pool now exists in this process
from pymbrl.agents import world_models as wm
wm.train(wm.WorldModelsConfig(env="VizdoomTakeCover-v1", rollouts=2, num_envs=2, max_steps=50), sys.argv[1],
         stages=["collect"])
"""


def test_env_workers_forked_after_torch_used_threads_do_not_hang(tmp_path):
    """The controller stage evaluates in env workers forked after V and M trained in the same
    process; a forked worker's first parallel region used to wait forever on the parent's OpenMP
    pool (the README's World Models tour hung there)."""
    pytest.importorskip("vizdoom")
    child = subprocess.Popen([sys.executable, "-c", AFTER_THREADS, str(tmp_path / "run")], cwd=tmp_path,
                             start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out = child.communicate(timeout=120)[0].decode()
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        pytest.fail("the collection hung")
    assert child.returncode == 0, out[-3000:]
    assert len(list((tmp_path / "run" / "data").glob("rollout_*.npz"))) == 2


def test_the_games_of_a_killed_driver_close_themselves(tmp_path):
    """SIGKILL gives the driver no chance to close its env workers: each worker learns of its
    parent's death from the kernel and closes its game, so no process of the run is left."""
    pytest.importorskip("vizdoom")
    child = subprocess.Popen([sys.executable, "-c", COLLECT, str(tmp_path / "run")], cwd=tmp_path,
                             start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until_stepping(child)
        child.kill()
        child.wait()
        deadline = time.monotonic() + 10
        while session_processes(child.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert session_processes(child.pid) == {}
    finally:
        for pid in session_processes(child.pid):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------------
# Corrupt files and code in files


def flip_a_data_bit(path):
    """Flips one bit in the middle of the largest record of the zip archive ``path`` (a .pt or
    .npz), where neither torch nor numpy would notice it."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        record = max(archive.infolist(), key=lambda info: info.file_size)
    name_length, extra_length = struct.unpack("<HH", data[record.header_offset + 26:record.header_offset + 30])
    data[record.header_offset + 30 + name_length + extra_length + record.file_size // 2] ^= 4
    path.write_bytes(bytes(data))


def truncate(path):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


@pytest.mark.parametrize("name", ["config.yaml", "vae.pt", "mdnrnn.pt", "controller_tau1.15.pt",
                                  "controller_tau1.15.es.pt", "data/rollout_000002.npz"])
@pytest.mark.parametrize("damage", [flip_a_data_bit, truncate], ids=["bit-flip", "truncated"])
def test_a_corrupt_file_in_a_run_is_refused_naming_it(run, tmp_path, name, damage):
    """Every file a resumed run reads: a flipped bit or a cut raises ValueError naming the file
    (the controller stage is asked for more generations, so that it reads its strategy)."""
    run_dir = tmp_path / "run"
    shutil.copytree(run[0], run_dir)
    path = run_dir / name
    if name == "config.yaml":  # text: a cut value, or a byte that is not UTF-8
        content = path.read_bytes()
        path.write_bytes(content[:-3] if damage is truncate else b"\xff" + content)
    else:
        damage(path)
    stages = ["mdn"] if name.startswith("data/") else list(wm.STAGES)
    if name.startswith("data/"):
        (run_dir / "mdnrnn.pt").unlink()
    with pytest.raises(ValueError, match=f"^{path}: "):
        wm.train(dataclasses.replace(TINY, generations=3), run_dir, stages=stages)


def test_edited_weights_are_refused_before_use(run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(run[0], run_dir)
    vae = run_dir / "vae.pt"
    saved = torch.load(vae, weights_only=True)
    saved["state"] = {k: v.float()[..., :1] for k, v in saved["state"].items()}
    torch.save(saved, vae)
    with pytest.raises(ValueError, match=f"^{vae}: state: expected the weights of ConvVAE"):
        wms.load_vae(run_dir, TINY)
    controller = run_dir / "controller_tau1.15.pt"
    saved = torch.load(controller, weights_only=True)
    torch.save({**saved, "params": saved["params"][:-1]}, controller)
    with pytest.raises(ValueError, match=f"^{controller}: params: expected finite float32 \\[75\\]"):
        wm.load(run_dir)


def test_no_file_a_run_reads_is_unpickled(run, tmp_path):
    """A run directory from elsewhere cannot run code: a legacy pickled CMA-ES state is refused
    without being opened, and a pickled object in a weights file or a rollout is refused."""
    run_dir = tmp_path / "run"
    shutil.copytree(run[0], run_dir)
    marker = tmp_path / "ran"
    (run_dir / "controller_tau1.15.es.pt").unlink()
    legacy = run_dir / "controller_tau1.15.es.pkl"
    legacy.write_bytes(pickle.dumps(Payload(marker)))
    more = dataclasses.replace(TINY, generations=3)
    with pytest.raises(ValueError, match=f"^{legacy}: this run's controller stage predates"):
        wm.train(more, run_dir, stages=["controller"])
    legacy.unlink()
    for name, read in (("controller_tau1.15.pt", lambda: wm.train(more, run_dir, stages=["controller"])),
                       ("vae.pt", lambda: wms.load_vae(run_dir, TINY))):
        torch.save({"state": Payload(marker), "params": Payload(marker), "summary": {"fitness": []}}, run_dir / name)
        with pytest.raises(ValueError, match=f"^{run_dir / name}: not a readable pymbrl file .*GLOBAL io.open"):
            read()
    rollout = run_dir / "data" / "rollout_000000.npz"
    np.savez(rollout, frames=np.array([Payload(marker)], dtype=object))
    with pytest.raises(ValueError, match=f"^{rollout}: corrupt rollout"):
        RolloutDataset(run_dir / "data").load(rollout)
    assert not marker.exists()


def test_another_temperature_or_budget_is_the_same_run_to_the_cli_check_too(run):
    """The CLI checks a run directory with ``check_resumable`` before anything runs; it used to
    compare every field, so ``--stages controller --set tau=0.1`` on a trained run was refused."""
    from pymbrl.training.run import check_resumable

    run_dir, _, _ = run
    check_resumable(run_dir, "world-models", dataclasses.replace(TINY, tau=0.1, generations=5, popsize=6))
    with pytest.raises(ValueError, match="^z_dim: the run in .* has z_dim=8, not 4"):
        check_resumable(run_dir, "world-models", dataclasses.replace(TINY, z_dim=4))
