"""MBPO: the rollout-length schedule, every retraining on all real data so far (mbrl-lib's MBPO
dropped earlier data), and a short run end to end."""

from __future__ import annotations

import math

import pytest
import torch

from pymbrl.agents import mbpo
from pymbrl.agents.sac import SACConfig
from pymbrl.models import trainer as trainer_module


def small_config(**changes):
    config = dict(init_steps=100, model_train_freq=50, rollout_batch_size=200, rollout_length=(1, 3, 1, 3),
                  model_retain_epochs=2, updates_per_step=2, model_hidden=16, model_layers=2,
                  sac=SACConfig(hidden=32, batch_size=64))
    config.update(changes)
    return mbpo.MBPOConfig(**config)


def test_rollout_length_schedule():
    config = mbpo.MBPOConfig(rollout_length=(20, 100, 1, 15))
    assert [mbpo.rollout_length(config, e) for e in (0, 20, 60, 100, 500)] == [1, 1, 8, 15, 15]
    assert mbpo.rollout_length(mbpo.MBPOConfig(), 7) == 1


def test_paper_settings_per_task():
    config = mbpo.MBPOConfig.for_env("InvertedPendulum-v5")
    assert (config.epoch_length, config.updates_per_step, config.sac.target_entropy) == (250, 10, -0.05)
    hopper = mbpo.MBPOConfig.for_env("Hopper-v5", updates_per_step=5)
    assert hopper.rollout_length == (20, 100, 1, 15) and hopper.updates_per_step == 5
    assert [mbpo.rollout_length(hopper, e) for e in (20, 60, 100)] == [1, 8, 15]
    assert mbpo.MBPOConfig.for_env("Pendulum-v1") == mbpo.MBPOConfig()


def test_every_retraining_sees_all_real_transitions(monkeypatch):
    sizes = []
    original = trainer_module.ModelTrainer.train

    def recording(self, obs, action, next_obs, reward):
        sizes.append(obs.shape[0])
        return original(self, obs, action, next_obs, reward)

    monkeypatch.setattr(trainer_module.ModelTrainer, "train", recording)
    _, history = mbpo.train("Pendulum-v1", 300, seed=0, config=small_config(), eval_every=300, eval_episodes=1)
    assert sizes == [100, 150, 200, 250, 300]
    assert math.isfinite(history[-1]["return"]) and math.isfinite(history[-1]["model_mse"])


def test_discrete_action_spaces_are_refused():
    with pytest.raises(ValueError, match="Box"):
        mbpo.train("CartPole-v1", 10)


def test_a_run_shorter_than_the_random_warm_up_still_reports():
    _, history = mbpo.train("Pendulum-v1", 60, seed=0, config=small_config(), eval_every=30, eval_episodes=1)
    assert [r["step"] for r in history] == [30, 60] and math.isnan(history[-1]["model_mse"])


def test_a_short_run_learns_its_model_and_updates_the_agent():
    before = torch.get_rng_state()
    _, history = mbpo.train("Pendulum-v1", 400, seed=0, config=small_config(), eval_every=100, eval_episodes=1)
    assert torch.equal(torch.get_rng_state(), before)  # the run used its own generators only
    mse = [r["model_mse"] for r in history]
    assert [r["step"] for r in history] == [100, 200, 300, 400]
    # More data and warm-started weights: the elites' held-out error falls retraining after retraining.
    assert mse[-1] < 0.5 * mse[0], mse
    assert all(math.isfinite(r["q_loss"]) and math.isfinite(r["actor_loss"]) for r in history)
