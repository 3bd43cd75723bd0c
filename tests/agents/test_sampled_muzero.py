"""Sampled MuZero on Pendulum: a short seeded run trains, evaluates and repeats itself exactly; an
interrupted run resumes exactly and a finished one continues; a loaded run acts on one observation
or a batch inside the action box; the policy loss pulls the policy towards the visit-weighted
sampled actions; bad configs and envs are refused naming the field."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pymbrl.agents import sampled_muzero as smz
from pymbrl.replay import GameBuffer
from pymbrl.training import read_config, write_config
from support import Steps


def tiny(**changes):
    # Two envs play Pendulum's 200-step episodes in lockstep: every 400 steps all games end together.
    settings = dict(num_envs=2, num_simulations=4, num_samples=3, warmup_steps=200, batch_size=16, buffer_size=2000,
                    hidden_size=16, latent_size=8, layers=1, support_size=5, steps=400, eval_every=400,
                    checkpoint_every=400, eval_episodes=1, updates_per_step=0.05)
    settings.update(changes)
    return smz.SampledMuZeroConfig(**settings)


def without_seconds(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_a_short_seeded_run_trains_evaluates_and_repeats_itself():
    config = tiny(steps=800, eval_every=400)
    first = smz.train(config)
    assert [r["step"] for r in first.history] == [400, 800]
    last = first.history[-1]
    assert last["updates"] == 20 and np.isfinite(last["loss"]) and -2000 < last["return"] <= 0
    assert np.isfinite(last["episode_return"])
    assert without_seconds(smz.train(config).history) == without_seconds(first.history)


def test_an_interrupted_run_resumes_exactly_and_a_finished_one_continues(tmp_path):
    config = tiny(steps=800)
    whole = smz.train(config).history
    with pytest.raises(KeyboardInterrupt):
        smz.train(config, tmp_path / "a", callbacks=Steps(stop=600))
    resumed = smz.train(config, tmp_path / "a")
    assert without_seconds(resumed.history) == without_seconds(whole)
    first = smz.train(tiny(), tmp_path / "b")
    steps = Steps()
    more = smz.train(tiny(steps=800), tmp_path / "b", callbacks=steps)
    assert steps.steps[0] == 402 and steps.steps[-1] == 800
    assert without_seconds(more.history[:1]) == without_seconds(first.history)
    assert more.history[-1]["updates"] > first.history[-1]["updates"]
    state = torch.load(tmp_path / "b" / "checkpoint" / "state.pt", weights_only=True)
    assert state["step"] == 800
    with pytest.raises(ValueError, match="^steps: "):
        smz.train(tiny(), tmp_path / "b")


def test_a_loaded_run_acts_on_one_observation_or_a_batch(tmp_path):
    config = tiny()
    trained = smz.train(config, tmp_path).agent
    agent = smz.load(tmp_path)
    assert agent.config == config
    for name, value in trained.network.state_dict().items():
        assert torch.equal(value, agent.network.state_dict()[name]), name
    env = smz.make_env(config)
    obs = np.stack([env.reset(seed=i)[0] for i in range(3)])
    action = agent.act(obs[0])
    assert action.shape == (1,) and -2.0 <= float(action[0]) <= 2.0
    actions = agent.act(obs)
    assert actions.shape == (3, 1) and (np.abs(actions) <= 2.0).all()
    assert agent.act(obs, deterministic=False).shape == (3, 1)
    env.step(action.astype(np.float32))
    with pytest.raises(ValueError, match="obs: expected an observation of shape"):
        agent.act(np.zeros((2, 4)))


def test_the_policy_loss_pulls_the_policy_towards_the_visited_actions():
    """One stored game whose searches put every visit on the sampled action 0.6: updates move the
    policy's mean action there from wherever it started."""
    config = tiny(batch_size=32, prioritized=False, unroll_steps=2, lr=3e-3, entropy_weight=0.0)
    env = smz.make_env(config)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        network = smz.make_network(env, config)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr)
    buffer = GameBuffer(config.buffer_size, (3,), 3, unroll_steps=2, td_steps=config.td_steps, seed=0)
    store = smz.SampledActions(config.buffer_size, 3, 1)
    length = 50
    obs = np.stack([env.reset(seed=i)[0] for i in range(length)])
    weights = np.tile(np.array([0.0, 1.0, 0.0], np.float32), (length, 1))
    first = buffer.add_game(obs, np.ones(length, np.int64), np.zeros(length, np.float32), np.zeros(length, np.float32),
                            weights, terminated=True)
    store.put(first, np.tile(np.array([[-0.5], [0.6], [0.9]], np.float32), (length, 1, 1)))
    for _ in range(300):
        smz.update(network, optimizer, buffer, store, config)
    with torch.no_grad():
        out = network.initial_inference(torch.as_tensor(obs))
    assert torch.allclose(torch.tanh(out.mean), torch.full_like(out.mean, 0.6), atol=0.05)


def test_sampled_actions_are_kept_by_position_id():
    store = smz.SampledActions(5, 2, 1)
    store.put(3, np.arange(8, dtype=np.float32).reshape(4, 2, 1))  # ids 3..6 wrap to slots 3, 4, 0, 1
    assert torch.equal(store.get(torch.tensor([3, 6])), torch.tensor([[[0.0], [1.0]], [[6.0], [7.0]]]))


@pytest.mark.parametrize("changes, name", [
    ({"num_samples": 0}, "num_samples"), ({"num_simulations": 0}, "num_simulations"), ({"num_envs": 0}, "num_envs"),
    ({"root_std_scale": 0.0}, "root_std_scale"), ({"min_std": -1.0}, "min_std"), ({"discount": 1.5}, "discount"),
    ({"entropy_weight": -0.1}, "entropy_weight"), ({"unroll_steps": -1}, "unroll_steps"), ({"layers": 0}, "layers"),
    ({"prioritized": 1}, "prioritized"), ({"temperatures": ((0.5, 1.0),)}, "temperatures"),
    ({"batch_size": 200, "buffer_size": 100}, "batch_size"), ({"steps": 0}, "steps"),
    ({"max_depth": 0}, "max_depth"), ({"pb_c_init": -1.0}, "pb_c_init"), ({"action_repeat": 0}, "action_repeat"),
])
def test_a_bad_config_is_refused_naming_the_field(changes, name):
    with pytest.raises((ValueError, TypeError), match=f"^{name}: "):
        smz.SampledMuZeroConfig(**changes)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_config_round_trips_through_its_file(tmp_path, suffix):
    config = smz.SampledMuZeroConfig(num_samples=7, temperatures=((0.0, 1.0), (0.25, 0.5)), seed=3)
    write_config(config, tmp_path / f"config{suffix}", "sampled-muzero")
    assert read_config(smz.SampledMuZeroConfig, tmp_path / f"config{suffix}", "sampled-muzero") == config


def test_an_env_without_box_actions_is_refused_naming_env():
    with pytest.raises(ValueError, match="^env: Sampled MuZero here needs a bounded Box action space"):
        smz.make_env(dataclasses.replace(tiny(), env="CartPole-v1"))


def test_the_pendulum_preset_searches_one_step_with_repeated_actions():
    config = smz.SampledMuZeroConfig.for_env("Pendulum-v1")
    assert (config.action_repeat, config.max_depth, config.num_samples, config.pb_c_init) == (4, 1, 6, 3.0)
    assert smz.SampledMuZeroConfig().max_depth is None  # elsewhere the papers' search
    env = smz.make_env(config)
    env.reset(seed=0)
    *_, info = env.step(np.zeros(1, np.float32))
    assert info["env_steps"] == 4
