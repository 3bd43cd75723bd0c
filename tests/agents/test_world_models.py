"""pymbrl.agents.world_models: the on-disk rollout dataset, CMA-ES (convergence and resuming), the
config's and make_env's checks, and the staged pipeline on a tiny frame env: artefacts, resuming
without redoing work, refused run directories and stages, and a second iteration."""

from __future__ import annotations

import copy
import dataclasses
import os
import pickle
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

ENV_ID = "pymbrl-test/Frames-v0"


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


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=FramesEnv)

TINY = wm.WorldModelsConfig(z_dim=8, rnn_hidden=16, rollouts=4, vae_epochs=1, vae_batch=8, rnn_epochs=2, rnn_batch=4,
                            rnn_seq_len=8, popsize=4, trials=2, generations=2, eval_episodes=2, max_steps=20,
                            num_envs=1)


def frames(n: int, value: int = 0) -> np.ndarray:
    return np.full((n, 64, 64, 3), value, np.uint8)


# --------------------------------------------------------------------------------------------------
# RolloutDataset


def test_dataset_round_trip_and_continued_indices(tmp_path):
    data = wm.RolloutDataset(tmp_path / "data")
    assert len(data) == 0
    actions = np.eye(3, dtype=np.float64)[[0, 2, 1]]
    data.add(frames(4, 7), actions, np.array([0.0, 1.0, 0.5]), np.array([False, False, True]))
    data.add(frames(2, 9), actions[:1], np.array([2.0]), np.array([False]))
    loaded = data.load(data.files()[0])
    assert set(loaded) == {"frames", "actions", "rewards", "dones"}
    np.testing.assert_array_equal(loaded["frames"], frames(4, 7))
    np.testing.assert_array_equal(loaded["actions"], actions)
    assert loaded["actions"].dtype == np.float32 and loaded["rewards"].dtype == np.float32
    np.testing.assert_array_equal(loaded["rewards"], [0.0, 1.0, 0.5])
    np.testing.assert_array_equal(loaded["dones"], [False, False, True])
    # Reopened, the directory grows from where it was.
    again = wm.RolloutDataset(tmp_path / "data")
    assert len(again) == 2
    again.add(frames(3, 11), actions[:2], np.zeros(2), np.zeros(2, bool))
    assert [f.name for f in again.files()] == ["rollout_000000.npz", "rollout_000001.npz", "rollout_000002.npz"]
    all_frames = again.frames()
    assert all_frames.shape == (9, 64, 64, 3) and all_frames.dtype == np.uint8
    np.testing.assert_array_equal(all_frames[:, 0, 0, 0], [7] * 4 + [9] * 2 + [11] * 3)
    np.testing.assert_array_equal(again.frames(2)[:, 0, 0, 0], [7] * 4 + [9] * 2)  # V's share: the first rollouts
    assert not list((tmp_path / "data").glob(".*"))  # no temporary files left behind


def test_dataset_refuses_bad_rollouts_and_an_empty_directory(tmp_path):
    data = wm.RolloutDataset(tmp_path)
    with pytest.raises(ValueError, match="dataset"):
        data.frames()
    actions = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="frames"):
        data.add(frames(3), actions, np.zeros(3), np.zeros(3, bool))  # T frames, not T + 1
    with pytest.raises(ValueError, match="frames"):
        data.add(np.zeros((4, 32, 32, 3), np.uint8), actions, np.zeros(3), np.zeros(3, bool))
    with pytest.raises(ValueError, match="frames"):
        data.add(frames(4).astype(np.float32), actions, np.zeros(3), np.zeros(3, bool))
    with pytest.raises(ValueError, match="rewards"):
        data.add(frames(4), actions, np.zeros(2), np.zeros(3, bool))
    assert len(data) == 0


# --------------------------------------------------------------------------------------------------
# CMA-ES

TARGET = np.array([0.5, -0.3, 0.8, 0.0, -0.6])


def sphere(candidates: np.ndarray) -> np.ndarray:
    assert candidates.shape == (8, 5)
    return -((candidates - TARGET) ** 2).sum(1)


def test_evolve_finds_the_optimum_of_a_sphere():
    config = wm.WorldModelsConfig(popsize=8, sigma0=0.5, generations=60)
    es, history = wm.evolve(sphere, 5, config, seed=0)
    assert len(history) == 60 and [h["generation"] for h in history] == list(range(1, 61))
    assert all(h["worst"] <= h["mean"] <= h["best"] for h in history)
    np.testing.assert_allclose(es.result.xfavorite, TARGET, atol=0.05)
    assert history[-1]["best"] > -1e-3


def test_evolve_resumes_where_it_stopped():
    """10 generations, then the same es and history continued to 20: the same as 20 at once."""
    calls = []

    def counted(candidates):
        calls.append(len(candidates))
        return sphere(candidates)

    es, history = wm.evolve(counted, 5, wm.WorldModelsConfig(popsize=8, sigma0=0.5, generations=10), seed=3)
    assert len(history) == 10 and len(calls) == 10
    seen = []
    es, history = wm.evolve(counted, 5, wm.WorldModelsConfig(popsize=8, sigma0=0.5, generations=20), seed=3, es=es,
                            history=history, after_generation=lambda es, h: seen.append(len(h)))
    assert len(history) == 20 and len(calls) == 20 and seen == list(range(11, 21))
    assert [h["generation"] for h in history] == list(range(1, 21))
    assert np.mean([h["best"] for h in history[-5:]]) > np.mean([h["best"] for h in history[:5]])
    _, straight = wm.evolve(sphere, 5, wm.WorldModelsConfig(popsize=8, sigma0=0.5, generations=20), seed=3)
    assert straight == history
    # Nothing left to do: the history comes back as it was.
    _, done = wm.evolve(counted, 5, wm.WorldModelsConfig(popsize=8, sigma0=0.5, generations=20), es=es,
                        history=history)
    assert done == history and len(calls) == 20


def test_evolve_has_its_own_generator_and_leaves_the_global_one_alone():
    """cma would draw from numpy's global generator (its TPA step-size rule, used from 300
    parameters on, does so in every tell): evolve leaves that state as it was."""
    for num_params in (5, 300):
        np.random.seed(123)
        outer = np.random.get_state()[1].copy()
        wm.evolve(lambda c: -(c ** 2).sum(1), num_params, wm.WorldModelsConfig(popsize=8, generations=5), seed=4)
        assert (np.random.get_state()[1] == outer).all() and np.random.get_state()[2] == 624


def strategy_fields(es):
    """Every saved field of a strategy, exactly (arrays as bytes, numbers as repr)."""
    def exact(value):
        if isinstance(value, np.ndarray):
            return value.dtype.str, value.shape, value.tobytes()
        if isinstance(value, (list, tuple)):
            return tuple(exact(v) for v in value)
        if isinstance(value, dict):
            return tuple(sorted((k, exact(v)) for k, v in value.items()))
        return repr(value)
    return {key: exact(value) for key, value in wm._strategy_fields(es).items()}


@pytest.mark.parametrize("num_params, stop", [(5, 7), (5, 1), (300, 3)], ids=["csa", "csa-first", "tpa"])
def test_a_saved_strategy_continues_bit_for_bit(tmp_path, num_params, stop):
    """Saved with save_strategy after generation ``stop`` (data only, as the controller stage
    checkpoints it) and loaded into a new process's state, the evolution asks for the same
    candidates, gets the same history and ends with every field of the strategy equal to the
    uninterrupted one's -- with the step-size rules of small (CSA) and large (TPA) problems."""
    target = np.linspace(-1, 1, num_params)
    config = wm.WorldModelsConfig(popsize=8, sigma0=0.5, generations=12)

    def recorded(seen):
        def fitness(candidates):
            seen.append(candidates.copy())
            return -((candidates - target) ** 2).sum(1)
        return fitness

    straight_seen = []
    straight_es, straight = wm.evolve(recorded(straight_seen), num_params, config, seed=4)
    path = tmp_path / "c.es.pt"

    def stop_after(es, history):
        wm.save_strategy(path, es, history, None, 4)
        if len(history) == stop:
            raise Stop

    seen = []
    with pytest.raises(Stop):
        wm.evolve(recorded(seen), num_params, config, seed=4, after_generation=stop_after)
    np.random.seed(999)  # whatever the process does in between
    es, history, generator = wm.load_strategy(path, num_params, config)
    assert generator is None and len(history) == stop
    es, resumed = wm.evolve(recorded(seen), num_params, config, seed=4, es=es, history=history)
    assert resumed == straight
    assert len(seen) == len(straight_seen) and all(np.array_equal(a, b) for a, b in zip(seen, straight_seen))
    assert strategy_fields(es) == strategy_fields(straight_es)
    assert np.array_equal(es.result.xfavorite, straight_es.result.xfavorite) and es.sigma == straight_es.sigma


def test_a_strategy_of_another_size_or_cma_version_is_refused(tmp_path):
    config = wm.WorldModelsConfig(popsize=8, generations=2)
    es, history = wm.evolve(lambda c: -(c ** 2).sum(1), 5, config)
    path = tmp_path / "c.es.pt"
    wm.save_strategy(path, es, history, None, 0)
    with pytest.raises(ValueError, match=f"^{path}: num_params: expected 6"):
        wm.load_strategy(path, 6, config)
    with pytest.raises(ValueError, match="^config.popsize:"):
        wm.load_strategy(path, 5, dataclasses.replace(config, popsize=9))
    saved = torch.load(path, weights_only=True)
    for key, value, message in (("cma", "0.0.1", "cma: expected"), ("format", "other", "format: expected"),
                                ("fields", {".sigma": {"kind": "python", "value": -1.0}}, "sigma"),
                                ("fields", {**saved["fields"], ".x": {"kind": "code", "value": "print"}}, "kind 'code'"),
                                ("fields", {**saved["fields"], "sm.C": {"kind": "array", "value": torch.zeros(2)}},
                                 r"sm.C: expected float64 array \(5, 5\)")):
        torch.save({**saved, key: value}, path)
        with pytest.raises(ValueError, match=message):
            wm.load_strategy(path, 5, config)


def test_evolve_refuses_bad_fitness():
    config = wm.WorldModelsConfig(popsize=4, generations=1)
    with pytest.raises(ValueError, match="fitness"):
        wm.evolve(lambda c: np.zeros(3), 2, config)
    with pytest.raises(ValueError, match="fitness"):
        wm.evolve(lambda c: np.full(len(c), np.nan), 2, config)


# --------------------------------------------------------------------------------------------------
# Config and envs


@pytest.mark.parametrize("field, value", [("tau", 0.0), ("tau", -1.0), ("popsize", 1), ("train_in", "x"),
                                          ("z_dim", 0), ("sigma0", -0.1), ("controller_hidden", -1),
                                          ("iterations", 0), ("random_repeat", 0)])
def test_config_refuses_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        wm.WorldModelsConfig(**{field: value})


def test_config_presets_and_overrides():
    doom = wm.WorldModelsConfig.for_env("VizdoomTakeCover-v1", generations=5)
    assert (doom.rollouts, doom.vae_rollouts, doom.rnn_hidden, doom.generations, doom.z_dim) == (1200, 300, 256, 5, 64)
    assert wm.WorldModelsConfig.for_env("CarRacing-v3").train_in == "real"
    assert wm.WorldModelsConfig.for_env(ENV_ID) == wm.WorldModelsConfig()


def test_make_env_gives_64x64_frames_and_refuses_other_envs():
    env = wm.make_env(ENV_ID)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and obs[0, 0, 0] == 0
    env.close()
    with pytest.raises(ValueError, match="env_id"):
        wm.make_env("CartPole-v1")
    with pytest.raises(ValueError, match="env_id"):
        wm.make_env("pymbrl-test/NoSuchEnv-v0")


def test_play_records_whole_episodes(tmp_path):
    """Random play of 3 episodes: each stored with T + 1 frames (the last one included), one-hot
    actions aligned with their rewards, and done only at the end; returns are the rewards' sums."""
    data = wm.RolloutDataset(tmp_path)
    codec = wm.ActionCodec(gym.spaces.Discrete(3))
    finished = []
    returns = wm.play(ENV_ID, 3, wm.Policy(None, None, None, codec), seed=1, num_envs=1, max_steps=50, dataset=data,
                      progress=finished.append)
    assert returns.shape == (3,) and finished == [1, 2, 3] and len(data) == 3
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
    short = wm.RolloutDataset(tmp_path / "short")
    wm.play(ENV_ID, 2, wm.Policy(None, None, None, codec), seed=1, num_envs=1, max_steps=3, dataset=short)
    for file in short.files():
        r = short.load(file)
        assert len(r["actions"]) == 3 and not r["dones"].any() and len(r["frames"]) == 4


def test_random_policy_holds_each_action_for_1_to_repeat_steps():
    """Continuous actions (two draws are never equal), so every run of equal actions is one hold:
    holds last 1..repeat steps, all of those lengths occur, an episode's first step draws a new
    action, and repeat 1 draws one every step."""
    space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    codec = wm.ActionCodec(space)
    for repeat in (1, 4):
        space.seed(3)
        policy, state, actions = wm.Policy(None, None, None, codec, repeat=repeat), None, []
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
        wm.Policy(None, None, None, codec, repeat=0)


# --------------------------------------------------------------------------------------------------
# The pipeline


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny run of every stage; returns (its directory, its summary, what it logged)."""
    run_dir = tmp_path_factory.mktemp("wm") / "run"
    logged = []
    summary = wm.train(ENV_ID, run_dir, config=TINY, seed=0, log=lambda stage, record: logged.append(stage))
    return run_dir, summary, logged


def test_train_leaves_every_artefact_and_a_summary(run):
    run_dir, summary, logged = run
    assert len(list((run_dir / "data").glob("rollout_*.npz"))) == 4
    for name in ("run.json", "vae.pt", "mdnrnn.pt", "controller_tau1.15.pt"):
        assert (run_dir / name).exists(), name
    # The CMA-ES strategy stays beside the controller, so that more generations can follow.
    assert [p.name for p in run_dir.glob("*.es.pt")] == ["controller_tau1.15.es.pt"]
    assert len(summary["returns"]) == 2 and len(summary["fitness"]) == 2
    assert summary["mean"] == pytest.approx(np.mean(summary["returns"]))
    assert summary["tau"] == 1.15 and summary["train_in"] == "dream"
    assert logged == ["vae", "mdn", "mdn", "controller", "controller", "evaluate"]
    saved = torch.load(run_dir / "controller_tau1.15.pt", weights_only=True)
    assert saved["params"].shape == (wm.Controller(8 + 16, 3).num_params,)
    mdn = torch.load(run_dir / "mdnrnn.pt", weights_only=True)
    assert mdn["start_z"].shape == (4, 8) and mdn["rollouts"] == 4 and len(mdn["history"]) == 2
    # Dream fitness without a reward head is the mean dream length: between 1 and max_steps.
    for record in summary["fitness"]:
        assert 1.0 <= record["worst"] <= record["mean"] <= record["best"] <= 20.0


def test_train_again_resumes_without_redoing_anything(run):
    run_dir, summary, _ = run
    files = sorted(p for p in run_dir.rglob("*") if p.is_file())
    stamps = {p: p.stat().st_mtime_ns for p in files}
    logged = []
    again = wm.train(ENV_ID, run_dir, config=TINY, seed=0, log=lambda stage, record: logged.append(stage))
    assert again == summary and logged == []
    assert sorted(p for p in run_dir.rglob("*") if p.is_file()) == files
    assert {p: p.stat().st_mtime_ns for p in files} == stamps


def test_a_run_directory_refuses_another_shape_and_unknown_stages(run):
    run_dir, _, _ = run
    with pytest.raises(ValueError, match="config.z_dim"):
        wm.train(ENV_ID, run_dir, config=dataclasses.replace(TINY, z_dim=4))
    with pytest.raises(ValueError, match="env_id"):
        wm.train("pymbrl-test/Other-v0", run_dir, config=TINY)
    with pytest.raises(ValueError, match="stages"):
        wm.train(ENV_ID, run_dir, config=TINY, stages=["bogus"])
    with pytest.raises(ValueError, match="stages"):
        wm.train(ENV_ID, run_dir, config=TINY, stages=[])


def test_stages_need_their_inputs(tmp_path):
    """The mdn stage in a run without V says which stage to run first."""
    with pytest.raises(ValueError, match="stages"):
        wm.train(ENV_ID, tmp_path / "run", config=TINY, stages=["mdn"])
    with pytest.raises(ValueError, match="stages: vae needs .*data.*run the collect stage first"):
        wm.train(ENV_ID, tmp_path / "run", config=TINY, stages=["vae"])


def test_the_controller_can_evolve_in_the_real_env(run, tmp_path):
    """train_in="real": same V and M, C evolved on real episodes (popsize x trials of them per
    generation) into controller_real.pt; the dream's controller file is not touched."""
    run_dir = tmp_path / "run"
    shutil.copytree(run[0], run_dir)
    config = dataclasses.replace(TINY, train_in="real", trials=1)
    summary = wm.train(ENV_ID, run_dir, config=config, seed=0, stages=["controller"])
    assert (run_dir / "controller_real.pt").exists() and summary["train_in"] == "real"
    assert len(summary["fitness"]) == 2 and len(summary["returns"]) == 2
    # Real returns of FramesEnv: the number of times action 1 was taken, at most 15 per episode.
    for record in summary["fitness"]:
        assert 0.0 <= record["worst"] <= record["best"] <= 15.0
        assert all(float(v).is_integer() for v in (record["worst"], record["best"]))
    assert wm.train(ENV_ID, run_dir, config=TINY, seed=0, stages=["controller"]) == run[1]


def test_a_second_iteration_collects_with_the_controller_and_retrains(run, tmp_path):
    """iterations=2 in a finished run: 4 more rollouts, then M and C again under _iter1 names;
    the first iteration's artefacts stay as they were."""
    run_dir = tmp_path / "run"
    shutil.copytree(run[0], run_dir)
    first = {name: (run_dir / name).stat().st_mtime_ns for name in ("vae.pt", "mdnrnn.pt", "controller_tau1.15.pt")}
    config = dataclasses.replace(TINY, iterations=2)
    summary = wm.train(ENV_ID, run_dir, config=config, seed=0)
    assert len(list((run_dir / "data").glob("rollout_*.npz"))) == 8
    assert (run_dir / "mdnrnn_iter1.pt").exists() and (run_dir / "controller_tau1.15_iter1.pt").exists()
    assert {name: (run_dir / name).stat().st_mtime_ns for name in first} == first
    assert torch.load(run_dir / "mdnrnn_iter1.pt", weights_only=True)["rollouts"] == 8
    assert len(summary["returns"]) == 2 and len(summary["fitness"]) == 2
    assert summary == torch.load(run_dir / "controller_tau1.15_iter1.pt", weights_only=True)["summary"]


class Stop(Exception):
    pass


def test_an_interrupted_controller_stage_resumes_from_its_last_generation(tmp_path):
    """Stopped after generation 1's checkpoint, the controller stage picks up at generation 2 (and
    only runs that one), ending exactly where an uninterrupted run ends. With a reward head the
    dream fitness depends on the sampled latents, so this also needs the dream generator's state."""
    config = dataclasses.replace(TINY, reward_head=True)
    full = wm.train(ENV_ID, tmp_path / "full", config=config, seed=0)
    assert all(r["worst"] < r["best"] for r in full["fitness"])
    run_dir = tmp_path / "cut"
    shutil.copytree(tmp_path / "full", run_dir)
    (run_dir / "controller_tau1.15.pt").unlink()
    (run_dir / "controller_tau1.15.es.pt").unlink()

    def stop_at_generation_2(stage, record):
        if stage == "controller" and record["generation"] == 2:
            raise Stop

    with pytest.raises(Stop):
        wm.train(ENV_ID, run_dir, config=config, seed=0, log=stop_at_generation_2)
    assert (run_dir / "controller_tau1.15.es.pt").exists() and not (run_dir / "controller_tau1.15.pt").exists()
    logged = []
    summary = wm.train(ENV_ID, run_dir, config=config, seed=0, log=lambda stage, record: logged.append((stage, record)))
    assert [(stage, record.get("generation")) for stage, record in logged] == [("controller", 2), ("evaluate", None)]
    assert summary == full
    assert (run_dir / "controller_tau1.15.es.pt").exists()


def test_more_generations_continue_a_finished_controller(tmp_path):
    """Asked for 4 generations where 2 are done, the stage evolves generations 3 and 4 from the kept
    strategy and scores the new controller; the first two generations' records stay as they were.
    Asked for 2 again, it returns the 4-generation controller untouched."""
    config = dataclasses.replace(TINY, reward_head=True)
    two = wm.train(ENV_ID, tmp_path / "run", config=config, seed=0)
    logged = []
    four = wm.train(ENV_ID, tmp_path / "run", stages=["controller"], config=dataclasses.replace(config, generations=4),
                    seed=0, log=lambda stage, record: logged.append((stage, record.get("generation"))))
    assert logged == [("controller", 3), ("controller", 4), ("evaluate", None)]
    assert four["fitness"][:2] == two["fitness"] and len(four["fitness"]) == 4
    again = wm.train(ENV_ID, tmp_path / "run", stages=["controller"], config=config, seed=0)
    assert again == four


def test_mdn_windows_start_from_their_rollouts_state(monkeypatch):
    """A window cut from the middle of a rollout starts from the LSTM state the rollout has there
    (a pass over the rollout with the epoch's starting weights), not from zeros."""
    monkeypatch.setattr(wm.ConvVAE, "sample", staticmethod(lambda mu, logvar, generator=None: mu))
    rng = np.random.default_rng(0)
    latents = [{"mu": rng.normal(size=(n + 1, 3)).astype(np.float32), "logvar": np.zeros((n + 1, 3), np.float32),
                "actions": rng.normal(size=(n, 2)).astype(np.float32), "rewards": np.zeros(n, np.float32),
                "dones": np.arange(n) == n - 1} for n in (12, 7)]
    config = wm.WorldModelsConfig(z_dim=3, rnn_hidden=4, rnn_seq_len=5, rnn_batch=100, rnn_epochs=1)
    torch.manual_seed(0)
    model = wm.MDNRNN(3, 2, hidden=4)
    before = copy.deepcopy(model)
    seen = []
    original = model.loss

    def recording(z, actions, *args, state=None, **kwargs):
        seen.extend(zip(z[:, 0].detach().clone(), state.h.detach().clone()))
        return original(z, actions, *args, state=state, **kwargs)

    model.loss = recording
    wm.train_mdnrnn(latents, 2, config, mdnrnn=model, seed=0)
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
        cli.main(["train", "world-models", "--stages", "distill", "--run-dir", str(tmp_path)])
    assert exit_info.value.code == 2 and "stages: expected some of" in capsys.readouterr().err


def test_cli_passes_iterations_to_the_config(tmp_path, capsys):
    from pymbrl import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "world-models", "--env", ENV_ID, "--iterations", "0", "--run-dir", str(tmp_path)])
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
import sys
from pymbrl.agents import world_models as wm
wm.train("VizdoomTakeCover-v1", sys.argv[1], stages=["collect"], config=wm.WorldModelsConfig(rollouts=50, num_envs=2))
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_an_interrupted_vizdoom_collection_stops_at_once_and_leaves_nothing_behind(tmp_path, signum):
    """A ViZDoom collection in a fresh directory (two games starting at once), interrupted as a
    terminal's Ctrl-C does (SIGINT to the whole process group) or by SIGTERM while its games run:
    the driver stops with KeyboardInterrupt (Python then dies of SIGINT) or SIGTERM's exit within seconds, no process of it is
    left, and nothing is written outside the run directory (the games' _vizdoom.ini and _vizdoom/
    stay in run/envs/)."""
    pytest.importorskip("vizdoom")
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    child = subprocess.Popen([sys.executable, "-c", COLLECT, str(cwd / "run")], cwd=cwd, start_new_session=True,
                             env={**os.environ, "HOME": str(home)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while list(session_processes(child.pid).values()).count("vizdoom") < 2:
            assert child.poll() is None, child.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the games did not start"
            time.sleep(0.2)
        time.sleep(2)  # the games are playing
        os.killpg(child.pid, signum)
        started = time.monotonic()
        out = child.communicate(timeout=30)[0].decode()
        assert time.monotonic() - started < 10
        if signum == signal.SIGINT:
            assert "KeyboardInterrupt" in out and child.returncode == -signal.SIGINT, out[-3000:]
        else:
            assert child.returncode == 128 + signal.SIGTERM, out[-3000:]
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
wm.train("VizdoomTakeCover-v1", sys.argv[1], stages=["collect"],
         config=wm.WorldModelsConfig(rollouts=2, num_envs=2, max_steps=50))
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
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while list(session_processes(child.pid).values()).count("vizdoom") < 2:
            assert child.poll() is None and time.monotonic() < deadline, "the games did not start"
            time.sleep(0.2)
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


class Payload:
    """Unpickling this runs ``open(marker, "w")``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("name", ["run.json", "vae.pt", "mdnrnn.pt", "controller_tau1.15.pt",
                                  "controller_tau1.15.es.pt", "data/rollout_000002.npz"])
@pytest.mark.parametrize("damage", [flip_a_data_bit, truncate], ids=["bit-flip", "truncated"])
def test_a_corrupt_file_in_a_run_is_refused_naming_it(run, tmp_path, name, damage):
    """Every file a resumed run reads: a flipped bit or a cut raises ValueError naming the file
    (the controller stage is asked for more generations, so that it reads its strategy)."""
    run_dir = tmp_path / "run"
    shutil.copytree(run[0], run_dir)
    path = run_dir / name
    if name == "run.json":
        path.write_bytes(path.read_bytes()[:-3]) if damage is truncate else path.write_bytes(b"\xff" + path.read_bytes())
    else:
        damage(path)
    stages = ["mdn"] if name.startswith("data/") else ["collect", "vae", "mdn", "controller"]
    if name.startswith("data/"):
        (run_dir / "mdnrnn.pt").unlink()
    with pytest.raises(ValueError, match=f"^{path}: "):
        wm.train(ENV_ID, run_dir, config=dataclasses.replace(TINY, generations=3), seed=0, stages=stages)


def test_an_edited_rollout_or_weights_file_is_refused_before_use(run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(run[0], run_dir)
    dataset = wm.RolloutDataset(run_dir / "data")
    rollout = dataset.load(dataset.files()[0])
    bad = run_dir / "data" / "rollout_000009.npz"
    for edit, message in (({"rewards": rollout["rewards"][:-1]}, r"rewards: expected shape"),
                          ({"actions": np.full_like(rollout["actions"], np.nan)}, "actions: expected finite"),
                          ({"frames": rollout["frames"].astype(np.int64)}, "frames: expected uint8"),
                          ({"extra": np.zeros(1)}, "expected the arrays")):
        np.savez(bad, **{**rollout, **edit})
        with pytest.raises(ValueError, match=f"^{bad}: .*{message}"):
            dataset.load(bad)
    # A header that promises more data than the file holds is refused before anything is allocated.
    np.savez(bad, **rollout)
    data = bad.read_bytes()
    shape = str(rollout["frames"].shape).encode()
    bad.write_bytes(data.replace(shape, f"({10**12}, 64, 64, 3)".encode()[:len(shape)].ljust(len(shape)), 1))
    with pytest.raises(ValueError, match=f"^{bad}: corrupt"):
        dataset.load(bad)
    vae = run_dir / "vae.pt"
    saved = torch.load(vae, weights_only=True)
    saved["state"] = {k: v.float()[..., :1] for k, v in saved["state"].items()}
    torch.save(saved, vae)
    with pytest.raises(ValueError, match=f"^{vae}: state: expected the weights of ConvVAE"):
        wm.load_vae(run_dir, TINY)


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
        wm.train(ENV_ID, run_dir, config=more, seed=0, stages=["controller"])
    legacy.unlink()
    for name, read in (("controller_tau1.15.pt", lambda: wm.train(ENV_ID, run_dir, config=more, stages=["controller"])),
                       ("vae.pt", lambda: wm.load_vae(run_dir, TINY))):
        torch.save({"state": Payload(marker), "params": Payload(marker), "summary": {"fitness": []}}, run_dir / name)
        with pytest.raises(ValueError, match=f"^{run_dir / name}: not a readable pymbrl file .*GLOBAL io.open"):
            read()
    rollout = run_dir / "data" / "rollout_000000.npz"
    np.savez(rollout, frames=np.array([Payload(marker)], dtype=object))
    with pytest.raises(ValueError, match=f"^{rollout}: corrupt rollout"):
        wm.RolloutDataset(run_dir / "data").load(rollout)
    assert not marker.exists()


def test_stages_whose_inputs_are_missing_are_refused_naming_the_stage_to_run(tmp_path):
    with pytest.raises(ValueError, match=r"stages: controller needs .*vae.pt, which is missing; run the vae stage"):
        wm.check_stages(tmp_path, ["controller"])
    with pytest.raises(ValueError, match=r"stages: vae needs .*data.*run the collect stage"):
        wm.check_stages(tmp_path, ["vae", "mdn"])
    wm.check_stages(tmp_path, list(wm.STAGES))
    (tmp_path / "vae.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"controller needs .*mdnrnn.pt.*run the mdn stage"):
        wm.check_stages(tmp_path, ["controller"])
