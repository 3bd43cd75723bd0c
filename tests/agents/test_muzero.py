"""MuZero: the unroll loss learns a fixed batch, self-play runs on CartPole and on two-player
TicTacToe (legal moves only), runs resume from their checkpoints, and bad arguments are refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pymbrl.agents import muzero
from pymbrl.models.muzero import MuZeroNetwork, scalar_to_support
from pymbrl.replay import GameBuffer


def tiny(**changes):
    settings = dict(num_envs=4, num_simulations=8, warmup_steps=64, batch_size=16, buffer_size=4000, hidden_size=32,
                    latent_size=16)
    settings.update(changes)
    return muzero.MuZeroConfig(**settings)


def test_temperature_schedule_follows_the_paper():
    config = muzero.MuZeroConfig()
    assert [muzero.temperature(config, p) for p in (0.0, 0.49, 0.5, 0.74, 0.75, 1.0)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_the_unroll_loss_fits_a_fixed_batch():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    config = tiny()
    buffer = GameBuffer(1000, (4,), 2, unroll_steps=config.unroll_steps, td_steps=config.td_steps, seed=0)
    for _ in range(10):
        T = int(rng.integers(8, 30))
        policies = rng.dirichlet(np.ones(2), size=T).astype(np.float32)
        buffer.add_game(rng.normal(size=(T, 4)).astype(np.float32), rng.integers(0, 2, T), np.ones(T, np.float32),
                        rng.uniform(0, 20, T).astype(np.float32), policies, terminated=True)
    batch = buffer.sample(32)
    network = MuZeroNetwork(4, 2, hidden_size=64, latent_size=16)
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    losses = []
    for _ in range(400):
        loss, priorities, parts = muzero.unroll_loss(network, batch, config)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    # Cross-entropies cannot go below the targets' own entropies (two-hot values and rewards, visit
    # distributions): the excess over that floor must shrink tenfold.
    floor = unroll_entropy(batch, config)
    assert losses[-1] - floor < 0.1 * (losses[0] - floor), (losses[0], losses[-1], floor)
    assert priorities.shape == (32,) and bool((priorities > 0).all())
    assert set(parts) == {"value_loss", "reward_loss", "policy_loss"}


def unroll_entropy(batch, config) -> float:
    """The loss of a perfect predictor: the targets' entropies, weighted as unroll_loss weighs them."""
    def entropy(p):
        return -(p * torch.log(p.clamp_min(1e-12))).sum(-1)

    K, S = config.unroll_steps, config.support_size
    total = torch.zeros(batch.obs.shape[0])
    for k in range(K + 1):
        scale = 1.0 if k == 0 else 1.0 / K
        value = entropy(scalar_to_support(batch.target_values[:, k], S)) * batch.value_mask[:, k]
        total += scale * (config.value_loss_weight * value + entropy(batch.target_policies[:, k]) * batch.mask[:, k])
        if k:
            total += scale * entropy(scalar_to_support(batch.target_rewards[:, k], S)) * batch.reward_mask[:, k]
    return float((batch.weights * total).mean())


@pytest.mark.parametrize("search", ["muzero", "gumbel"])
def test_a_short_cartpole_run_trains_and_evaluates(search):
    network, history = muzero.train("CartPole-v1", 400, seed=0, config=tiny(search=search), eval_every=200,
                                    eval_episodes=2)
    assert [r["step"] for r in history] == [200, 400]
    last = history[-1]
    assert last["updates"] > 0 and all(math.isfinite(last[k]) for k in ("loss", "value_loss", "policy_loss", "return"))


def test_two_player_self_play_plays_only_legal_moves():
    # The env raises on an occupied cell, so a run that finishes played legal moves throughout.
    network, history = muzero.train("pymbrl/TicTacToe-v0", 300, seed=0, config=tiny(), eval_every=300, eval_episodes=2)
    last = history[-1]
    assert last["updates"] > 0 and math.isfinite(last["episode_return"])
    assert last["perfect_wins"] == 0 and last["perfect_draws"] + last["perfect_losses"] == 2
    assert last["return"] == -last["perfect_losses"] / 2


def test_an_interrupted_run_resumes_from_its_checkpoint(tmp_path):
    def stop_at(step):
        if step >= 300:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        muzero.train("CartPole-v1", 480, seed=0, config=tiny(), eval_every=160, eval_episodes=1, run_dir=tmp_path,
                     checkpoint_every=160, progress=stop_at)
    steps = []
    network, history = muzero.train("CartPole-v1", 480, seed=0, config=tiny(), eval_every=160, eval_episodes=1,
                                    run_dir=tmp_path, checkpoint_every=160, progress=steps.append)
    assert steps[0] == 164 and steps[-1] == 480  # resumed after the checkpoint at 160 (4 envs a step)
    assert [r["step"] for r in history] == [160, 320, 480]


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="env_id: MuZero needs a Discrete"):
        muzero.train("Pendulum-v1", 10)
    with pytest.raises(ValueError, match="config.search"):
        muzero.train("CartPole-v1", 10, config=tiny(search="alphazero"))
    with pytest.raises(ValueError, match="config.reanalyse_batch"):
        muzero.train("pymbrl/TicTacToe-v0", 10, config=tiny(reanalyse_batch=8))
    with pytest.raises(ValueError, match="env_id"):
        muzero.train("NoSuchEnv-v0", 10, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_cli_trains_and_plays(tmp_path, capsys):
    from pymbrl import cli

    for env, run in (("CartPole-v1", tmp_path / "cartpole"), ("TicTacToe", tmp_path / "tictactoe")):
        assert cli.main(["train", "muzero", "--env", env, "--steps", "64", "--eval-every", "64", "--eval-episodes", "2",
                         "--run-dir", str(run)]) == 0
        assert (run / "log.csv").exists() and (run / "learning_curve.png").exists()
        assert cli.main(["play", "muzero", "--run-dir", str(run), "--episodes", "4"]) == 0
    out = capsys.readouterr().out
    assert "MuZero on CartPole-v1: mean return" in out
    assert "MuZero vs the random player, 4 games (half as X):" in out and "MuZero vs the perfect player" in out


def test_tictactoe_observations_and_the_simulators_embeddings_convert_both_ways():
    import gymnasium as gym

    env = gym.make("pymbrl/TicTacToe-v0")
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(6):
        x = torch.as_tensor(obs)[None]
        embedding = muzero.tictactoe_embedding(x)
        assert torch.equal(muzero.tictactoe_observation(embedding), x)
        # The simulator's view of the board agrees with the env's (mover's pieces +1).
        assert embedding[0, :9].tolist() == (info["board"] * info["to_play"]).astype(np.float32).tolist()
        obs, _, terminated, _, info = env.step(int(rng.choice(np.flatnonzero(info["legal_actions"]))))
        if terminated:
            break


def test_alphazero_mode_searches_the_true_rules():
    config = tiny(simulator=True, unroll_steps=0)
    network, history = muzero.train("pymbrl/TicTacToe-v0", 300, seed=0, config=config, eval_every=300, eval_episodes=4)
    assert history[-1]["updates"] > 0 and history[-1]["random_wins"] + history[-1]["random_draws"] + \
        history[-1]["random_losses"] == 4
    with pytest.raises(ValueError, match="config.simulator"):
        muzero.train("CartPole-v1", 10, config=config)


def test_reanalysis_refreshes_stored_targets_with_the_latest_network(monkeypatch):
    calls = []
    original = GameBuffer.update_targets

    def recording(self, indices, root_values, policies):
        calls.append((np.asarray(indices).copy(), np.asarray(root_values).copy(), np.asarray(policies).copy()))
        return original(self, indices, root_values, policies)

    monkeypatch.setattr(GameBuffer, "update_targets", recording)
    _, history = muzero.train("CartPole-v1", 200, seed=0, config=tiny(reanalyse_batch=8), eval_every=200,
                              eval_episodes=1)
    assert len(calls) == history[-1]["updates"] > 0
    indices, values, policies = calls[-1]
    assert indices.shape == (8,) and values.shape == (8,) and policies.shape == (8, 2)
    np.testing.assert_allclose(policies.sum(axis=1), 1.0, rtol=1e-5)
