"""MuZero: the unroll loss learns a fixed batch, self-play runs on CartPole and on two-player
TicTacToe (legal moves only), runs resume exactly from their checkpoints (games in progress
included) and continue when given more steps, a loaded run acts on one observation or a batch,
and bad configs, arguments and checkpoints are refused."""

from __future__ import annotations

import copy
import csv
import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.classic_control import CartPoleEnv

from pymbrl.agents import muzero
from pymbrl.agents.muzero_selfplay import Searcher, SelfPlay, tictactoe_embedding, tictactoe_observation
from pymbrl.models.muzero import MuZeroNetwork, scalar_to_support
from pymbrl.replay import GameBuffer
from pymbrl.training import read_config, write_config
from support import Steps

TICTACTOE = "pymbrl/TicTacToe-v0"


def tiny(**changes):
    settings = dict(num_envs=4, num_simulations=8, warmup_steps=64, batch_size=16, buffer_size=4000, hidden_size=32,
                    latent_size=16, steps=400, eval_every=200, eval_episodes=2)
    settings.update(changes)
    return muzero.MuZeroConfig(**settings)


def test_temperature_schedule_follows_the_paper():
    config = muzero.MuZeroConfig()
    assert [muzero.temperature(config, p) for p in (0.0, 0.49, 0.5, 0.74, 0.75, 1.0)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_presets_follow_the_env_family():
    assert muzero.MuZeroConfig.for_env("CartPole-v0").search == "gumbel"
    assert muzero.MuZeroConfig.for_env("CartPole-v1", td_steps=7).td_steps == 7
    ttt = muzero.MuZeroConfig.for_env(TICTACTOE)
    assert (ttt.num_simulations, ttt.td_steps, ttt.support_size) == (25, 9, 5)
    assert muzero.MuZeroConfig.for_env("Acrobot-v1") == muzero.MuZeroConfig(env="Acrobot-v1")
    assert (ttt.steps, ttt.eval_every, ttt.eval_episodes, ttt.checkpoint_every) == (50_000, 5000, 20, 5000)


@pytest.mark.parametrize("changes, name", [
    ({"num_envs": 0}, "num_envs"), ({"num_simulations": 1.5}, "num_simulations"), ({"search": "alphazero"}, "search"),
    ({"discount": 1.5}, "discount"), ({"td_steps": 0}, "td_steps"), ({"unroll_steps": -1}, "unroll_steps"),
    ({"batch_size": 0}, "batch_size"), ({"lr": -1.0}, "lr"), ({"weight_decay": math.nan}, "weight_decay"),
    ({"value_loss_weight": -0.1}, "value_loss_weight"), ({"updates_per_step": -1.0}, "updates_per_step"),
    ({"warmup_steps": -1}, "warmup_steps"), ({"buffer_size": 0}, "buffer_size"), ({"prioritized": 1}, "prioritized"),
    ({"priority_alpha": -1.0}, "priority_alpha"), ({"priority_beta": math.inf}, "priority_beta"),
    ({"temperatures": ()}, "temperatures"), ({"temperatures": ((0.5, 1.0),)}, "temperatures"),
    ({"temperatures": ((0.0, 1.0), (0.0, 0.5))}, "temperatures"), ({"temperatures": ((0.0, -1.0),)}, "temperatures"),
    ({"dirichlet_alpha": 0.0}, "dirichlet_alpha"), ({"dirichlet_fraction": 2.0}, "dirichlet_fraction"),
    ({"gumbel_considered_actions": 0}, "gumbel_considered_actions"), ({"reanalyse_batch": -1}, "reanalyse_batch"),
    ({"simulator": True}, "simulator"), ({"simulator": "yes", "env": TICTACTOE}, "simulator"),
    ({"support_size": 0}, "support_size"), ({"hidden_size": 0}, "hidden_size"), ({"latent_size": 0}, "latent_size"),
    ({"batch_size": 200, "buffer_size": 100}, "batch_size"), ({"steps": 0}, "steps"), ({"device": "gpu"}, "device"),
])
def test_a_bad_config_is_refused_naming_the_field(changes, name):
    with pytest.raises((ValueError, TypeError), match=f"^{name}: "):
        muzero.MuZeroConfig(**changes)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_config_round_trips_through_its_file(tmp_path, suffix):
    config = muzero.MuZeroConfig.for_env(TICTACTOE, simulator=True, unroll_steps=0,
                                         temperatures=((0.0, 1.0), (0.25, 0.5)), seed=7, device="cpu")
    write_config(config, tmp_path / f"config{suffix}", "muzero")
    assert read_config(muzero.MuZeroConfig, tmp_path / f"config{suffix}", "muzero") == config


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
    history = muzero.train(tiny(search=search)).history
    assert [r["step"] for r in history] == [200, 400]
    last = history[-1]
    assert last["updates"] > 0 and all(math.isfinite(last[k]) for k in ("loss", "value_loss", "policy_loss", "return"))


def test_two_player_self_play_plays_only_legal_moves():
    # The env raises on an occupied cell, so a run that finishes played legal moves throughout.
    last = muzero.train(tiny(env=TICTACTOE, steps=300, eval_every=300)).history[-1]
    assert last["updates"] > 0 and math.isfinite(last["episode_return"])
    assert last["perfect_wins"] == 0 and last["perfect_draws"] + last["perfect_losses"] == 2
    assert last["return"] == -last["perfect_losses"] / 2


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="env: MuZero needs a Discrete"):
        muzero.train(tiny(env="Pendulum-v1"))
    with pytest.raises(ValueError, match="reanalyse_batch"):
        muzero.train(tiny(env=TICTACTOE, reanalyse_batch=8))
    with pytest.raises(ValueError, match="env"):
        muzero.train(tiny(env="NoSuchEnv-v0"), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="run_dir"):
        muzero.load(tmp_path / "nothing")


def test_tictactoe_observations_and_the_simulators_embeddings_convert_both_ways():
    env = gym.make(TICTACTOE)
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(6):
        x = torch.as_tensor(obs)[None]
        embedding = tictactoe_embedding(x)
        assert torch.equal(tictactoe_observation(embedding), x)
        # The simulator's view of the board agrees with the env's (mover's pieces +1).
        assert embedding[0, :9].tolist() == (info["board"] * info["to_play"]).astype(np.float32).tolist()
        obs, _, terminated, _, info = env.step(int(rng.choice(np.flatnonzero(info["legal_actions"]))))
        if terminated:
            break


def test_alphazero_mode_searches_the_true_rules():
    last = muzero.train(tiny(env=TICTACTOE, simulator=True, unroll_steps=0, steps=300, eval_every=300,
                             eval_episodes=4)).history[-1]
    assert last["updates"] > 0 and last["random_wins"] + last["random_draws"] + last["random_losses"] == 4


def test_reanalysis_refreshes_stored_targets_with_the_latest_network(monkeypatch):
    calls = []
    original = GameBuffer.update_targets

    def recording(self, indices, root_values, policies):
        calls.append((np.asarray(indices).copy(), np.asarray(root_values).copy(), np.asarray(policies).copy()))
        return original(self, indices, root_values, policies)

    monkeypatch.setattr(GameBuffer, "update_targets", recording)
    history = muzero.train(tiny(reanalyse_batch=8, steps=200, eval_episodes=1)).history
    assert len(calls) == history[-1]["updates"] > 0
    indices, values, policies = calls[-1]
    assert indices.shape == (8,) and values.shape == (8,) and policies.shape == (8, 2)
    np.testing.assert_allclose(policies.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("env", ["CartPole-v1", TICTACTOE])
def test_a_loaded_run_acts_on_one_observation_or_a_batch_and_plays(tmp_path, env):
    config = tiny(env=env, steps=64, eval_every=64, eval_episodes=1)
    trained = muzero.train(config, tmp_path).agent
    agent = muzero.load(tmp_path)
    assert agent.config == config
    for name, value in trained.network.state_dict().items():
        assert torch.equal(value, agent.network.state_dict()[name]), name
    obs = np.stack([muzero.make_env(config).reset(seed=i)[0] for i in range(3)])
    action = agent.act(obs[0])
    assert isinstance(action, int) and 0 <= action < agent.network.num_actions
    actions = agent.act(obs)
    assert actions.shape == (3,) and actions.dtype == np.int64
    assert agent.act(obs, deterministic=False).shape == (3,)
    if env == TICTACTOE:
        # Moves onto occupied cells are masked from the observation itself.
        board = muzero.make_env(config)
        obs, _ = board.reset()
        for _ in range(5):
            obs, _, terminated, _, _ = board.step(agent.act(obs))
        text = muzero.play(agent, config, 4, seed=0)
        assert "MuZero vs the random player, 4 games (half as X):" in text and "MuZero vs the perfect player" in text
    else:
        assert muzero.play(agent, config, 2, seed=0).startswith("MuZero on CartPole-v1: mean return")
    with pytest.raises(ValueError, match="obs: expected an observation of shape"):
        agent.act(np.zeros((2, 3)))


def test_make_env_renders_as_asked():
    env = muzero.make_env(muzero.MuZeroConfig(), render_mode="rgb_array")
    env.reset(seed=0)
    assert env.render().ndim == 3


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
    """The records without their timings, values as repr (exact, and NaN equals NaN)."""
    return [{k: repr(v) for k, v in r.items() if k != "seconds"} for r in records]


@pytest.mark.parametrize("env", ["CartPole-v1", TICTACTOE])
def test_an_interrupted_run_resumes_exactly_with_its_games_in_progress(tmp_path, env):
    # updates_per_step 0.3 leaves a fraction of an update owed at the checkpoint; the run is cut
    # after the checkpoint at step 192, between evaluations, with games half played.
    config = tiny(env=env, updates_per_step=0.3, steps=320, eval_every=160, checkpoint_every=96)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    result = muzero.train(config, whole)
    with pytest.raises(KeyboardInterrupt):
        muzero.train(config, cut, callbacks=Steps(stop=208))
    saved = torch.load(checkpoint_file(cut, "state.pt"), weights_only=True)
    assert saved["step"] == 192 and saved["owed"] != 0.0
    assert any(len(game["actions"]) > 0 for game in saved["play"]["games"])
    steps = Steps()
    resumed = muzero.train(config, cut, callbacks=steps)
    assert steps.steps[0] == 196 and steps.steps[-1] == 320

    assert [r["step"] for r in result.history] == [160, 320] and result.history[-1]["updates"] > 0
    assert without_seconds(resumed.history) == without_seconds(result.history)
    expected, got = result.agent.network.state_dict(), resumed.agent.network.state_dict()
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


def test_a_finished_run_continues_when_given_more_steps(tmp_path):
    config = tiny(steps=96, eval_every=64, checkpoint_every=64, eval_episodes=1)
    first = muzero.train(config, tmp_path)
    assert [r["step"] for r in first.history] == [64, 96]
    assert torch.load(checkpoint_file(tmp_path, "state.pt"), weights_only=True)["step"] == 96
    steps = Steps()
    more = muzero.train(dataclasses.replace(config, steps=160), tmp_path, callbacks=steps)
    assert steps.steps[0] == 100 and steps.steps[-1] == 160
    assert [r["step"] for r in more.history] == [64, 96, 128, 160]
    assert without_seconds(more.history[:2]) == without_seconds(first.history)
    assert more.history[-1]["updates"] > first.history[-1]["updates"]
    assert torch.load(checkpoint_file(tmp_path, "state.pt"), weights_only=True)["step"] == 160
    with pytest.raises(ValueError, match="^steps: "):
        muzero.train(config, tmp_path)


def test_a_run_with_a_target_ends_at_the_first_evaluation_reaching_it_checkpointed(tmp_path):
    # An untrained agent's CartPole return is about 10: the target 5 is reached at the first evaluation.
    config = tiny(steps=400, eval_every=64, checkpoint_every=256, eval_episodes=1, target_return=5.0)
    result = muzero.train(config, tmp_path)
    assert [r["step"] for r in result.history] == [64] and result.history[0]["return"] >= 5.0
    assert torch.load(checkpoint_file(tmp_path, "state.pt"), weights_only=True)["step"] == 64
    again = muzero.train(config, tmp_path)  # done: running it again continues nothing
    assert [(r["step"], r["return"]) for r in again.history] == [(64, result.history[0]["return"])]
    # The target is not part of the run's identity: without it, the run goes on to its steps.
    more = muzero.train(dataclasses.replace(config, target_return=None), tmp_path)
    assert [r["step"] for r in more.history] == [64, 128, 192, 256, 320, 384, 400]
    unreached = muzero.train(tiny(steps=128, eval_every=64, eval_episodes=1, target_return=500.0), tmp_path / "b")
    assert [r["step"] for r in unreached.history] == [64, 128]
    with pytest.raises(ValueError, match="^target_return: "):
        tiny(target_return=float("inf"))


def test_a_resume_with_other_settings_is_refused_and_changes_nothing(tmp_path):
    config = tiny(steps=32, eval_every=32, eval_episodes=1, checkpoint_every=16)
    muzero.train(config, tmp_path)
    files = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    for name, value in (("num_simulations", 4), ("seed", 1), ("env", "Acrobot-v1")):
        with pytest.raises(ValueError, match=f"^{name}: "):
            muzero.train(dataclasses.replace(config, **{name: value}), tmp_path)
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == files


class OpaqueCartPole(CartPoleEnv):
    """CartPole as a subclass, whose state cannot be known to be complete."""


def test_an_env_whose_state_cannot_be_captured_resumes_with_new_games_and_a_warning(tmp_path):
    gym.register("pymbrl-test/OpaqueCartPole-v0", entry_point=OpaqueCartPole, max_episode_steps=500)
    config = tiny(env="pymbrl-test/OpaqueCartPole-v0", steps=32, eval_every=32, eval_episodes=1, checkpoint_every=16)
    with pytest.raises(KeyboardInterrupt):
        muzero.train(config, tmp_path, callbacks=Steps(stop=24))
    assert torch.load(checkpoint_file(tmp_path, "state.pt"), weights_only=True)["play"] == {"envs": None}
    with pytest.warns(RuntimeWarning, match="env: the state of pymbrl-test/OpaqueCartPole-v0 cannot be captured"):
        history = muzero.train(config, tmp_path).history
    assert [r["step"] for r in history] == [32]


def test_a_corrupt_loop_state_is_refused_naming_the_checkpoint(tmp_path):
    config = tiny(steps=32, eval_every=32, eval_episodes=1, checkpoint_every=16)
    muzero.train(config, tmp_path / "run")
    path = checkpoint_file(tmp_path / "run", "state.pt")
    state = torch.load(path, weights_only=True)
    state["owed"] = -1.0
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"state\.pt: the algorithm's state does not restore .*owed: expected a finite"):
        muzero.train(dataclasses.replace(config, steps=64), tmp_path / "run")


def self_play(moves=0):
    """Self-play in two TicTacToe envs, after ``moves`` moves of a small network's search."""
    play = SelfPlay([gym.make(TICTACTOE) for _ in range(2)], seed=0)
    network = MuZeroNetwork(27, 9, hidden_size=16, latent_size=8, support_size=5)
    searcher = Searcher(network, tiny(env=TICTACTOE, support_size=5), True, 0)
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
