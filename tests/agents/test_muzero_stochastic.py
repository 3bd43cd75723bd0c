"""Stochastic MuZero (MuZero's ``search="stochastic"``) on 2048: the unroll through chance codes
learns a fixed batch, the outcomes of each move are read from the game buffer, a short seeded run
trains, evaluates and repeats itself, a loaded run acts (legal moves only) on one observation or a
batch, runs resume exactly and continue, and bad configs are refused naming the field."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from pymbrl.agents import muzero
from pymbrl.agents.muzero_stochastic import outcomes
from pymbrl.envs.game2048 import legal_actions
from pymbrl.models.muzero import StochasticMuZeroNetwork, scalar_to_support
from pymbrl.replay import GameBuffer
from pymbrl.training import read_config, write_config
from support import Steps

GAME = "pymbrl/2048-3x3-v0"


def tiny(**changes):
    settings = dict(env=GAME, search="stochastic", num_envs=4, num_simulations=8, warmup_steps=64, batch_size=16,
                    buffer_size=4000, hidden_size=32, latent_size=16, num_chance_outcomes=8, support_size=20,
                    steps=160, eval_every=80, eval_episodes=2)
    settings.update(changes)
    return muzero.MuZeroConfig(**settings)


def without_seconds(records):
    return [{k: repr(v) for k, v in r.items() if k != "seconds"} for r in records]


@pytest.mark.parametrize("changes, name", [
    ({"num_chance_outcomes": 0}, "num_chance_outcomes"), ({"num_chance_outcomes": 2.0}, "num_chance_outcomes"),
    ({"commitment_weight": -1.0}, "commitment_weight"), ({"commitment_weight": math.nan}, "commitment_weight"),
    ({"code_entropy_weight": -0.5}, "code_entropy_weight"),
    ({"search": "expectimax"}, "search"), ({"simulator": True, "env": "pymbrl/TicTacToe-v0"}, "simulator"),
])
def test_a_bad_config_is_refused_naming_the_field(changes, name):
    with pytest.raises((ValueError, TypeError), match=f"^{name}: "):
        tiny(**changes)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_config_round_trips_through_its_file(tmp_path, suffix):
    config = muzero.MuZeroConfig.for_env(GAME, search="stochastic", num_chance_outcomes=12, commitment_weight=0.5)
    assert (config.support_size, config.discount) == (30, 0.99)  # the 2048 family's preset
    write_config(config, tmp_path / f"config{suffix}", "muzero")
    assert read_config(muzero.MuZeroConfig, tmp_path / f"config{suffix}", "muzero") == config


def games_buffer(config, lengths, obs_dim=6):
    """A buffer of games whose observation at position id i is all i (ids count from 0)."""
    rng = np.random.default_rng(0)
    buffer = GameBuffer(1000, (obs_dim,), 4, unroll_steps=config.unroll_steps, td_steps=config.td_steps, seed=0)
    start = 0
    for T in lengths:
        obs = np.repeat(np.arange(start, start + T, dtype=np.float32)[:, None], obs_dim, axis=1)
        buffer.add_game(obs, rng.integers(0, 4, T), rng.uniform(0, 8, T).astype(np.float32),
                        rng.uniform(0, 50, T).astype(np.float32), rng.dirichlet(np.ones(4), T).astype(np.float32),
                        terminated=True)
        start += T
    return buffer


def test_the_outcome_of_each_move_is_the_next_stored_observation_of_its_game():
    config = tiny(unroll_steps=3)
    buffer = games_buffer(config, [4, 6])
    following = outcomes(buffer, torch.tensor([0, 2, 3, 4, 8]), 3)
    assert following.obs.shape == (5, 3, 6)
    # Game 0 holds ids 0..3, game 1 ids 4..9; the observation after a game's last move is not stored.
    assert following.known.tolist() == [[True, True, True], [True, False, False], [False, False, False],
                                        [True, True, True], [True, False, False]]
    assert following.obs[following.known][:, 0].tolist() == [1, 2, 3, 3, 5, 6, 7, 9]


def test_the_stochastic_unroll_loss_fits_a_fixed_batch():
    torch.manual_seed(0)
    config = tiny(unroll_steps=3, support_size=10, code_entropy_weight=0.1)
    buffer = games_buffer(config, [12, 20, 9, 15])
    batch = buffer.sample(32)
    following = outcomes(buffer, batch.indices, config.unroll_steps)
    network = StochasticMuZeroNetwork(6, 4, num_chance_outcomes=8, hidden_size=64, latent_size=16, support_size=10)
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)

    def q_excess() -> float:
        """The first afterstate's Q against the root's value target (the paper's Q loss), above its floor."""
        with torch.no_grad():
            out = network.initial_inference(batch.obs)
            q = network.afterstate_inference(out.hidden_state, batch.actions[:, 0]).q_logits
            target = scalar_to_support(batch.target_values[:, 0], 10)
            return float((-(target * q.log_softmax(-1)).sum(-1) + (target * target.clamp_min(1e-12).log()).sum(-1))
                         .mean())

    losses, q_before = [], q_excess()
    for _ in range(300):
        loss, priorities, parts = muzero.unroll_loss(network, batch, config, following=following)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])
    assert q_excess() < 0.5 * q_before, (q_before, q_excess())
    assert priorities.shape == (32,) and bool((priorities > 0).all())
    assert set(parts) == {"value_loss", "reward_loss", "policy_loss", "q_loss", "chance_loss", "commitment_loss",
                          "code_entropy"}
    assert 0.0 <= parts["code_entropy"] <= math.log(8) + 1e-6
    with pytest.raises(ValueError, match="^following: "):
        muzero.unroll_loss(network, batch, config)


@pytest.mark.parametrize("search", ["stochastic", "muzero"])
def test_a_short_2048_run_trains_evaluates_and_repeats_itself(search):
    config = tiny(search=search)
    history = muzero.train(config).history
    assert [r["step"] for r in history] == [80, 160]
    last = history[-1]
    assert last["updates"] > 0 and all(math.isfinite(last[k]) for k in ("loss", "value_loss", "policy_loss", "return"))
    if search == "stochastic":
        assert all(math.isfinite(last[k]) for k in ("q_loss", "chance_loss", "commitment_loss"))
    assert without_seconds(muzero.train(config).history) == without_seconds(history)


def test_a_loaded_run_acts_on_one_observation_or_a_batch_with_legal_moves_only(tmp_path):
    config = tiny(steps=64, eval_every=64, eval_episodes=1)
    trained = muzero.train(config, tmp_path).agent
    agent = muzero.load(tmp_path)
    assert agent.config == config
    for name, value in trained.network.state_dict().items():
        assert torch.equal(value, agent.network.state_dict()[name]), name
    env = muzero.make_env(config)
    observations = []
    obs, _ = env.reset(seed=0)
    for _ in range(40):  # boards of all kinds, many with blocked moves
        observations.append(obs)
        obs, _, terminated, _, _ = env.step(agent.act(obs))
        if terminated:
            obs, _ = env.reset()
    batch = np.stack(observations)
    action = agent.act(batch[0])
    assert isinstance(action, int) and 0 <= action < 4
    for deterministic in (True, False):
        actions = agent.act(batch, deterministic=deterministic)
        assert actions.shape == (40,) and actions.dtype == np.int64
        assert legal_actions(batch)[np.arange(40), actions].all()
    assert muzero.play(agent, config, 2, seed=0).startswith(f"MuZero on {GAME}: mean return")


def test_an_interrupted_run_resumes_exactly_with_its_games_in_progress(tmp_path):
    config = tiny(updates_per_step=0.3, steps=192, eval_every=96, checkpoint_every=64)
    result = muzero.train(config, tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        muzero.train(config, tmp_path / "cut", callbacks=Steps(stop=140))
    saved = torch.load(tmp_path / "cut" / "checkpoint" / "state.pt", weights_only=True)
    assert saved["step"] == 128 and any(len(game["actions"]) > 0 for game in saved["play"]["games"])
    resumed = muzero.train(config, tmp_path / "cut")
    assert without_seconds(resumed.history) == without_seconds(result.history)
    expected, got = result.agent.network.state_dict(), resumed.agent.network.state_dict()
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_a_finished_run_continues_when_given_more_steps(tmp_path):
    config = tiny(steps=96, eval_every=64, checkpoint_every=64, eval_episodes=1)
    first = muzero.train(config, tmp_path)
    steps = Steps()
    more = muzero.train(dataclasses.replace(config, steps=160), tmp_path, callbacks=steps)
    assert steps.steps[0] == 100 and steps.steps[-1] == 160
    assert [r["step"] for r in more.history] == [64, 96, 128, 160]
    assert without_seconds(more.history[:2]) == without_seconds(first.history)
    assert more.history[-1]["updates"] > first.history[-1]["updates"]
