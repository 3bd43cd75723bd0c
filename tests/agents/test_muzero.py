"""MuZero: the unroll loss learns a fixed batch, self-play runs on CartPole and on two-player
TicTacToe (legal moves only), runs resume exactly from their checkpoints (games in progress
included), and bad arguments and checkpoints are refused."""

from __future__ import annotations

import copy
import csv
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.classic_control import CartPoleEnv

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


def same(a, b) -> bool:
    """Deep equality of checkpoint contents: tensors bit for bit (and dtype), NaN equal to NaN."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and \
            a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def checkpoint_file(run_dir, name):
    """The file ``name`` of the run's current checkpoint."""
    [path] = (run_dir / "checkpoint").glob(name)
    return path


def without_seconds(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


@pytest.mark.parametrize("env_id", ["CartPole-v1", "pymbrl/TicTacToe-v0"])
def test_an_interrupted_run_resumes_exactly_with_its_games_in_progress(tmp_path, env_id):
    # updates_per_step 0.3 leaves a fraction of an update owed at the checkpoint; the run is cut
    # after the checkpoint at step 192, between evaluations, with games half played.
    def train(run_dir, progress):
        return muzero.train(env_id, 320, seed=0, config=tiny(updates_per_step=0.3), eval_every=160,
                            eval_episodes=2, run_dir=run_dir, checkpoint_every=96, progress=progress)

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    network, history = train(whole, None)

    def stop_at(step):
        if step >= 208:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cut, stop_at)
    saved = torch.load(checkpoint_file(cut, "state.pt"), weights_only=True)
    assert saved["step"] == 192 and saved["owed"] != 0.0
    assert any(len(game["actions"]) > 0 for game in saved["play"]["games"])
    steps = []
    resumed_network, resumed_history = train(cut, steps.append)
    assert steps[0] == 196 and steps[-1] == 320

    assert [r["step"] for r in history] == [160, 320] and history[-1]["updates"] > 0
    assert without_seconds(resumed_history) == without_seconds(history)
    expected, got = network.state_dict(), resumed_network.state_dict()
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    final, resumed_final = (torch.load(checkpoint_file(run, "state.pt"), weights_only=True) for run in (whole, cut))
    for key in ("network", "optimizer", "searcher", "updates", "owed", "finished", "parts", "play", "history"):
        if key == "history":
            assert without_seconds(final[key]) == without_seconds(resumed_final[key])
        else:
            assert same(final[key], resumed_final[key]), key
    assert checkpoint_file(whole, "games.buffer").read_bytes() == checkpoint_file(cut, "games.buffer").read_bytes()
    with open(whole / "log.csv") as a, open(cut / "log.csv") as b:
        assert without_seconds(list(csv.DictReader(a))) == without_seconds(list(csv.DictReader(b)))


def test_a_resume_with_other_arguments_is_refused_and_changes_nothing(tmp_path):
    muzero.train("CartPole-v1", 32, seed=0, config=tiny(), eval_every=32, eval_episodes=1, run_dir=tmp_path,
                 checkpoint_every=16)
    files = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    for changes, argument in (({"config": tiny(num_simulations=4)}, "config"), ({"seed": 1}, "seed"),
                              ({"env_id": "Acrobot-v1"}, "env_id")):
        kwargs = {"env_id": "CartPole-v1", "steps": 32, "seed": 0, "config": tiny(), **changes}
        with pytest.raises(ValueError, match=f"^{argument}: the checkpoint"):
            muzero.train(**kwargs, eval_every=32, eval_episodes=1, run_dir=tmp_path, checkpoint_every=16)
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == files


class OpaqueCartPole(CartPoleEnv):
    """CartPole as a subclass, whose state muzero cannot know to be complete."""


def test_an_env_whose_state_cannot_be_captured_resumes_with_new_games_and_a_warning(tmp_path):
    gym.register("pymbrl-test/OpaqueCartPole-v0", entry_point=OpaqueCartPole, max_episode_steps=500)

    def stop_at(step):
        if step >= 24:
            raise KeyboardInterrupt

    arguments = dict(seed=0, config=tiny(), eval_every=32, eval_episodes=1, run_dir=tmp_path, checkpoint_every=16)
    with pytest.raises(KeyboardInterrupt):
        muzero.train("pymbrl-test/OpaqueCartPole-v0", 32, **arguments, progress=stop_at)
    assert torch.load(checkpoint_file(tmp_path, "state.pt"), weights_only=True)["play"] == {"envs": None}
    with pytest.warns(RuntimeWarning, match="env_id: the state of pymbrl-test/OpaqueCartPole-v0 cannot be captured"):
        _, history = muzero.train("pymbrl-test/OpaqueCartPole-v0", 32, **arguments)
    assert [r["step"] for r in history] == [32]


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "pymbrl/TicTacToe-v0"])
def test_an_env_state_restored_into_another_env_plays_on_identically(env_id):
    rng = np.random.default_rng(0)

    def play(env, info, actions=None, steps=120):
        """Steps through episodes (resetting from the env's own generator), returning what it saw."""
        seen, taken = [], []
        for t in range(steps):
            legal = info.get("legal_actions")
            action = actions[t] if actions is not None else \
                int(rng.choice(np.flatnonzero(legal)) if legal is not None else rng.integers(env.action_space.n))
            obs, reward, terminated, truncated, info = env.step(action)
            taken.append(action)
            seen.append((obs.tolist(), reward, terminated, truncated))
            if terminated or truncated:
                obs, info = env.reset()
                seen.append(obs.tolist())
        return seen, taken, info

    env = gym.make(env_id)
    env.action_space.seed(1)
    _, info = env.reset(seed=0)
    _, _, info = play(env, info, steps=37)
    state = muzero.env_state(env)
    other = gym.make(env_id)
    other.reset(seed=5)
    muzero.restore_env_state(other, state)
    expected, actions, _ = play(env, info)
    got, _, _ = play(other, info, actions)
    assert got == expected
    assert [env.action_space.sample() for _ in range(5)] == [other.action_space.sample() for _ in range(5)]


def self_play(moves=0):
    """Self-play in two TicTacToe envs, after ``moves`` moves of a small network's search."""
    play = muzero.SelfPlay([gym.make("pymbrl/TicTacToe-v0") for _ in range(2)], seed=0)
    network = MuZeroNetwork(27, 9, hidden_size=16, latent_size=8, support_size=5)
    searcher = muzero.Searcher(network, tiny(support_size=5), True, 0)
    buffer = GameBuffer(100, (27,), 9, seed=0)
    for _ in range(moves):
        play.step(searcher, buffer, 1.0)
    return play


def test_self_play_state_round_trips_through_a_weights_only_file(tmp_path):
    play = self_play(moves=3)
    torch.save(play.state_dict(), tmp_path / "play.pt")
    other = self_play()
    assert other.load_state_dict(torch.load(tmp_path / "play.pt", weights_only=True))
    assert same(other.state_dict(), play.state_dict())
    assert [len(g) for g in other.games] == [3, 3]


@pytest.mark.parametrize("path, value, message", [
    (("envs",), [], r"play\.envs: expected a list of 2 entries"),
    (("obs", 1), torch.zeros(5), r"play\.obs\[1\]: expected shape \(27,\)"),
    (("games", 0, "actions"), torch.tensor([0, 9, 1]), r"play\.games\[0\]\.actions: expected actions in \[0, 9\)"),
    (("games", 1, "rewards"), torch.tensor([0.0, math.nan, 0.0], dtype=torch.float64),
     r"play\.games\[1\]\.rewards: expected finite"),
    (("games", 1, "policies"), torch.zeros(2, 9), r"play\.games\[1\]\.policies: expected shape \(3, 9\)"),
    (("envs", 1, "layers", 2, 1, "to_play"), 2, r"play\.envs\[1\]\.layers\[2\]\.to_play: expected -1 or 1"),
    (("envs", 1, "layers", 2, 1, "board"), torch.zeros(9), r"\.board: expected shape \(9,\) and dtype int8"),
    (("envs", 0, "layers", 2, 1, "board"), torch.full((9,), 5, dtype=torch.int8), r"\.board: expected cells of -1, 0"),
    (("envs", 1, "np_random"), {"bit_generator": "PCG64"}, r"play\.envs\[1\]\.np_random: expected a PCG64 state"),
    (("infos", 0), {}, r"play\.infos\[0\]: expected a dict with the keys"),
])
def test_a_refused_self_play_state_names_the_field_and_changes_nothing(path, value, message):
    play = self_play(moves=3)
    state = play.state_dict()
    target = self_play()
    before = target.state_dict()
    bad = copy.deepcopy(state)
    holder = bad
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    with pytest.raises(ValueError, match=message):
        target.load_state_dict(bad, "play")
    assert same(target.state_dict(), before)
