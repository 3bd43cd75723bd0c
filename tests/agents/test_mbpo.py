"""MBPO: the rollout-length schedule, the paper's presets, every retraining on all real data so far
(mbrl-lib's MBPO dropped earlier data), a short run end to end, its config, and the trained agent
loaded from its run directory and continued with more steps."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from pymbrl.agents import mbpo
from pymbrl.models import trainer as trainer_module
from pymbrl.training import read_config, write_config
from support import Steps


def small_config(**changes):
    config = dict(init_steps=100, model_train_freq=50, rollout_batch_size=200, rollout_length=(1, 3, 1, 3),
                  model_retain_epochs=2, updates_per_step=2, model_hidden=16, model_layers=2, hidden=32, batch_size=64,
                  eval_episodes=1)
    config.update(changes)
    return mbpo.MBPOConfig(**config)


def test_rollout_length_schedule():
    config = mbpo.MBPOConfig(rollout_length=(20, 100, 1, 15))
    assert [mbpo.rollout_length(config, e) for e in (0, 20, 60, 100, 500)] == [1, 1, 8, 15, 15]
    assert mbpo.rollout_length(mbpo.MBPOConfig(), 7) == 1


def test_paper_settings_per_task():
    config = mbpo.MBPOConfig.for_env("InvertedPendulum-v5")
    assert (config.epoch_length, config.updates_per_step, config.target_entropy) == (250, 10, -0.05)
    hopper = mbpo.MBPOConfig.for_env("Hopper-v5", updates_per_step=5)
    assert hopper.rollout_length == (20, 100, 1, 15) and hopper.updates_per_step == 5
    assert hopper.target_entropy == -1.0 and hopper.env == "Hopper-v5"
    assert [mbpo.rollout_length(hopper, e) for e in (20, 60, 100)] == [1, 8, 15]
    assert mbpo.MBPOConfig.for_env("Pendulum-v1") == mbpo.MBPOConfig()


def test_every_retraining_sees_all_real_transitions(monkeypatch):
    sizes = []
    original = trainer_module.ModelTrainer.train

    def recording(self, obs, action, next_obs, reward):
        sizes.append(obs.shape[0])
        return original(self, obs, action, next_obs, reward)

    monkeypatch.setattr(trainer_module.ModelTrainer, "train", recording)
    history = mbpo.train(small_config(steps=300, eval_every=300)).history
    assert sizes == [100, 150, 200, 250, 300]
    assert math.isfinite(history[-1]["return"]) and math.isfinite(history[-1]["model_mse"])


def test_discrete_action_spaces_are_refused():
    with pytest.raises(ValueError, match="Box"):
        mbpo.train(mbpo.MBPOConfig(env="CartPole-v1", steps=10))


def test_a_run_shorter_than_the_random_warm_up_still_reports():
    history = mbpo.train(small_config(steps=60, eval_every=30)).history
    assert [r["step"] for r in history] == [30, 60] and math.isnan(history[-1]["model_mse"])


def test_a_short_run_learns_its_model_and_updates_the_agent():
    before = torch.get_rng_state()
    history = mbpo.train(small_config(steps=400, eval_every=100)).history
    assert torch.equal(torch.get_rng_state(), before)  # the run used its own generators only
    mse = [r["model_mse"] for r in history]
    assert [r["step"] for r in history] == [100, 200, 300, 400]
    # More data and warm-started weights: the elites' held-out error falls retraining after retraining.
    assert mse[-1] < 0.5 * mse[0], mse
    assert all(math.isfinite(r["q_loss"]) and math.isfinite(r["actor_loss"]) for r in history)


def test_load_acts_and_a_finished_run_continues_with_more_steps(tmp_path):
    config = small_config(steps=200, eval_every=100, checkpoint_every=100, rollout_batch_size=80, model_retain_epochs=1)
    trained = mbpo.train(config, tmp_path)
    loaded = mbpo.load(tmp_path)
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    batch = loaded.act(obs)
    assert batch.shape == (5, 1) and np.array_equal(batch, trained.agent.act(obs))
    assert np.allclose(loaded.act(obs[2]), batch[2], atol=1e-6)
    with pytest.raises(ValueError, match=r"obs: expected an observation of shape \(3,\)"):
        loaded.act(np.zeros(4))
    # More steps than the real data were first stored for: the run goes on from its checkpoint.
    steps = Steps()
    longer = mbpo.train(dataclasses.replace(config, steps=300), tmp_path, callbacks=steps)
    assert steps.steps == list(range(201, 301))
    assert longer.history[:2] == trained.history and [r["step"] for r in longer.history] == [100, 200, 300]
    state = torch.load(tmp_path / "checkpoint" / "state.pt", weights_only=True)
    assert state["step"] == 300 and len(state["data"]["obs"]) == 300


def test_make_env_is_the_agents_env():
    env = mbpo.make_env(mbpo.MBPOConfig(), render_mode="rgb_array")
    assert env.spec.id == "Pendulum-v1" and env.render_mode == "rgb_array"
    env.close()


@pytest.mark.parametrize("field, value", [("init_steps", 0), ("model_train_freq", 1.5), ("num_elites", 8),
                                          ("rollout_length", (1, 2, 3)), ("rollout_length", (1, 2, 0, 1)),
                                          ("real_ratio", 1.0), ("real_ratio", float("nan")), ("batch_size", 0),
                                          ("hidden", True), ("gamma", 1.5), ("tau", -0.1), ("lr", -1.0),
                                          ("target_entropy", float("inf")), ("buffer_size", 0), ("seed", -1),
                                          ("init_steps", 13), ("rollout_batch_size", 242)])
def test_bad_config_fields_are_refused_by_name(field, value):
    with pytest.raises(ValueError, match=f"^{field}: "):
        mbpo.MBPOConfig(**{field: value})


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_the_config_round_trips_through_a_file(tmp_path, suffix):
    config = mbpo.MBPOConfig.for_env("Hopper-v5", hidden=64, real_ratio=0.1, steps=123)
    write_config(config, tmp_path / f"config{suffix}", "mbpo")
    assert read_config(mbpo.MBPOConfig, tmp_path / f"config{suffix}", "mbpo") == config


def test_an_unknown_task_is_refused_by_the_env_field(tmp_path):
    with pytest.raises(ValueError, match="^env: expected one of"):
        mbpo.train(mbpo.MBPOConfig(env="MountainCarContinuous-v0"), tmp_path / "run")
    assert not (tmp_path / "run").exists()
