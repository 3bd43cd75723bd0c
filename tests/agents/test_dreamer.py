"""pymbrl.agents.dreamer: imagination shapes, the update (what each loss trains, and what it must not),
acting with resets, supported and refused envs, NaN losses, resumable and continued runs, the
config, and the trained agent loaded from its run directory."""

from __future__ import annotations

import csv
import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from pymbrl.agents import dreamer
from pymbrl.agents.dreamer_learner import NonFiniteLossError
from pymbrl.envs.wrappers import ResizeFrames
from pymbrl.models.rssm import RSSMConfig, WorldModel, categorical_index
from pymbrl.rollout import imagine
from pymbrl.training import read_config, write_config
from support import Steps

TINY = dreamer.DreamerConfig(model=RSSMConfig.tiny(), batch_size=4, batch_length=8, horizon=3, learning_starts=64,
                             train_ratio=32, num_envs=2, model_lr=1e-3, actor_lr=1e-3, critic_lr=1e-3, steps=200,
                             eval_every=100, eval_episodes=2)


def batch(obs_dim: int = 3, action_dim: int = 2, discrete: bool = True, B: int = 4, T: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    if discrete:
        action = torch.nn.functional.one_hot(torch.randint(0, action_dim, (B, T), generator=g), action_dim).float()
    else:
        action = torch.rand(B, T, action_dim, generator=g) * 2 - 1
    first = torch.zeros(B, T, dtype=torch.bool)
    first[:, 0] = True
    return {"obs": torch.randn(B, T, obs_dim, generator=g), "action": action, "reward": torch.randn(B, T, generator=g),
            "first": first, "terminated": torch.zeros(B, T, dtype=torch.bool)}


def test_imagination_shapes_and_heads():
    torch.manual_seed(0)
    wm = WorldModel(3, 2, RSSMConfig.tiny())
    b = batch()
    _, parts = wm.loss(b["obs"], b["action"], b["reward"], b["first"], b["terminated"])
    policy = lambda f: torch.ones(f.shape[0], 2) / 2
    traj = imagine(wm, parts["posterior"], policy, horizon=5, continues="mean", sample=False)
    n, F = 4 * 8, RSSMConfig.tiny().features
    assert traj.features.shape == (6, n, F) and traj.actions.shape == (5, n, 2)
    assert traj.rewards.shape == traj.continues.shape == (5, n)
    assert ((traj.continues > 0) & (traj.continues < 1)).all()
    torch.testing.assert_close(traj.features[0], wm.rssm.features(parts["posterior"]).reshape(n, F).detach())
    torch.testing.assert_close(traj.rewards, wm.reward(traj.features[1:]))
    # The mode: 1 exactly where the probability is above 1/2 (the same latents: no sampling).
    mode = imagine(wm, parts["posterior"], policy, horizon=5, sample=False)
    torch.testing.assert_close(mode.features, traj.features)
    torch.testing.assert_close(mode.continues, (traj.continues > 0.5).float())
    with pytest.raises(ValueError, match="continues: expected one of"):
        imagine(wm, parts["posterior"], policy, horizon=5, continues="median")


def test_categorical_index_follows_the_probabilities():
    probs = torch.tensor([[0.1, 0.2, 0.7], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]]).repeat(20_000, 1, 1)
    index = categorical_index(probs, torch.Generator().manual_seed(0))
    assert index.shape == (20_000, 3) and index.min() >= 0 and index.max() <= 2
    freq = torch.stack([torch.bincount(index[:, r], minlength=3) for r in range(3)]).float() / 20_000
    torch.testing.assert_close(freq, probs[0], atol=0.015, rtol=0)
    assert (index[:, 1] == 1).all()  # a class of probability 1 is always drawn, a class of 0 never


@pytest.mark.parametrize("discrete, gradient", [(True, "reinforce"), (False, "dynamics"), (False, "reinforce")])
def test_an_update_trains_each_part_and_nothing_else(discrete, gradient):
    config = dreamer.DreamerConfig(model=RSSMConfig.tiny(), batch_size=4, batch_length=8, horizon=4,
                                   actor_gradient=gradient, model_lr=0.0)
    agent = dreamer.Dreamer((3,), 2, discrete, config)
    model = [p.detach().clone() for p in agent.world_model.parameters()]
    actor = [p.detach().clone() for p in agent.actor.parameters()]
    critic = [p.detach().clone() for p in agent.critic.parameters()]
    slow = [p.detach().clone() for p in agent.slow_critic.parameters()]
    out = agent.update(batch(discrete=discrete))
    assert all(np.isfinite(v) for v in out.values())
    # model_lr = 0: the actor's and critic's losses, whose gradients pass through the model with
    # backpropagation through the dynamics, must not have moved it.
    assert all(torch.equal(a, b) for a, b in zip(model, agent.world_model.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(actor, agent.actor.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(critic, agent.critic.parameters()))
    # the slow critic moves 2% of the way towards the critic
    for s0, s1, c1 in zip(slow, agent.slow_critic.parameters(), agent.critic.parameters()):
        torch.testing.assert_close(s1, s0 + 0.02 * (c1 - s0))
    assert agent.backprop == (gradient == "dynamics")


def test_an_update_from_images():
    agent = dreamer.Dreamer((64, 64, 3), 3, True, dreamer.DreamerConfig(model=RSSMConfig.tiny(), horizon=3))
    b = batch(obs_dim=1, action_dim=3, B=2, T=4)
    b["obs"] = torch.randint(0, 256, (2, 4, 64, 64, 3), dtype=torch.uint8)
    out = agent.update(b)
    assert all(np.isfinite(v) for v in out.values()) and out["decoder"] > 0


def test_the_dynamics_gradient_reaches_the_actor_through_the_model():
    config = dreamer.DreamerConfig(model=RSSMConfig.tiny(), batch_size=4, batch_length=8, horizon=4,
                                   actor_gradient="dynamics", entropy=0.0)
    agent = dreamer.Dreamer((3,), 2, False, config)
    torch.nn.init.normal_(agent.world_model.reward_head[-1].weight)  # zero at initialisation: constant rewards
    b = batch(discrete=False)
    _, parts = agent.world_model.loss(b["obs"], b["action"], b["reward"], b["first"], b["terminated"])
    traj = imagine(agent.world_model, parts["posterior"], lambda f: agent.actor.sample(f, agent.generator), 4)
    traj.rewards.sum().backward()
    grads = [p.grad for p in agent.actor.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


def test_the_replay_critic_targets_follow_real_rewards_terminations_and_episode_starts(monkeypatch):
    """Rows 0-4 of one sequence: row 2 is terminal, row 3 starts a new episode. The critic's replay
    targets are lambda-returns of the real rewards, cut at the termination and at the new episode
    (where the imagined return stands alone), bootstrapped with the imagined returns b."""
    agent = dreamer.Dreamer((4,), 2, True, TINY)
    gamma, lam = TINY.discount, TINY.lam
    batch = {"obs": torch.randn(1, 5, 4), "action": torch.eye(2)[[0, 1, 0, 0, 1]][None],
             "reward": torch.tensor([[0.0, 2.0, 3.0, 0.0, 5.0]]),
             "first": torch.tensor([[True, False, False, True, False]]),
             "terminated": torch.tensor([[False, False, True, False, False]])}
    _, parts = agent.world_model.loss(batch["obs"], batch["action"], batch["reward"], batch["first"],
                                      batch["terminated"].float())
    b = torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0])
    seen = {}
    original = agent.critic.two_hot.loss

    def capture(logits, target):
        seen["target"] = target.clone()
        return original(logits, target)

    monkeypatch.setattr(agent.critic.two_hot, "loss", capture)
    # The critic's logits [5, bins] on the posteriors.
    logits = agent.critic(agent.world_model.rssm.features(parts["posterior"]).flatten(0, 1))
    agent.replay_critic_loss(batch, logits, b)
    r1 = 3.0  # row 1's return: the reward of the terminal row 2, nothing after it
    expected = torch.tensor([2.0 + gamma * ((1 - lam) * 20.0 + lam * r1), r1, 30.0, 5.0 + gamma * 50.0])
    torch.testing.assert_close(seen["target"][:, 0], expected)


def test_the_world_model_loss_falls_over_updates():
    agent = dreamer.Dreamer((3,), 2, True, dreamer.DreamerConfig(model=RSSMConfig.tiny(), model_lr=3e-3,
                                                                  horizon=3))
    b = batch()
    losses = [agent.update(b)["model_loss"] for _ in range(60)]
    assert losses[-1] < 0.5 * losses[0]


def test_acting_restarts_the_state_where_an_episode_starts():
    agent = dreamer.Dreamer((3,), 2, True, dreamer.DreamerConfig(model=RSSMConfig.tiny()))
    obs = torch.randn(2, 3)
    fresh = agent.observe(None, torch.zeros(2, 2), obs, torch.ones(2, dtype=torch.bool))
    moved = agent.observe(fresh, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), obs, torch.zeros(2, dtype=torch.bool))
    restarted = agent.observe(moved, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), obs, torch.tensor([True, False]))
    torch.testing.assert_close(restarted.deter[0], fresh.deter[0])  # reset: as from the initial state
    assert not torch.allclose(restarted.deter[1], fresh.deter[1])
    actions = agent.act(restarted, deterministic=True)
    assert actions.shape == (2, 2) and torch.equal(actions.sum(-1), torch.ones(2))


def test_dynamics_gradients_need_continuous_actions():
    with pytest.raises(ValueError, match="actor_gradient: 'dynamics' needs continuous actions"):
        dreamer.Dreamer((3,), 2, True, dreamer.DreamerConfig(model=RSSMConfig.tiny(), actor_gradient="dynamics"))
    with pytest.raises(ValueError, match="actor_gradient: expected"):
        dreamer.DreamerConfig(actor_gradient="backprop")
    with pytest.raises(ValueError, match="imagine_continue: expected one of"):
        dreamer.DreamerConfig(imagine_continue="sample")


class _Spaces(gym.Env):
    def __init__(self, observation_space, action_space):
        self.observation_space, self.action_space = observation_space, action_space


@pytest.mark.parametrize("obs, action, message", [
    (gym.spaces.Box(0, 255, (84, 84, 3), np.uint8), gym.spaces.Discrete(3), r"uint8 of shape \(64, 64, 3\).*ResizeObs"),
    (gym.spaces.Box(0, 1, (64, 64, 3), np.float32), gym.spaces.Discrete(3), "image observations must be uint8"),
    (gym.spaces.Box(0, 1, (2, 3, 4, 5)), gym.spaces.Discrete(3), "vector or 64x64x3 image"),
    (gym.spaces.Discrete(4), gym.spaces.Discrete(3), "needs Box observations"),
    (gym.spaces.Box(0, 1, (3,)), gym.spaces.MultiDiscrete([2, 2]), "supports Discrete or bounded 1-D Box"),
    (gym.spaces.Box(0, 1, (3,)), gym.spaces.Box(-np.inf, np.inf, (2,)), "supports Discrete or bounded 1-D Box"),
])
def test_unsupported_spaces_are_refused_by_name(obs, action, message):
    with pytest.raises(ValueError, match="env: .*" + message):
        dreamer.env_spaces(_Spaces(obs, action), "Custom-v0")


def test_supported_spaces():
    assert dreamer.env_spaces(_Spaces(gym.spaces.Box(0, 255, (64, 64, 3), np.uint8), gym.spaces.Discrete(6)),
                              "x") == ((64, 64, 3), 6, True)
    assert dreamer.env_spaces(gym.make("Pendulum-v1"), "Pendulum-v1") == ((3,), 1, False)


def test_image_observations_of_the_wrong_size_or_dtype_are_refused():
    agent = dreamer.Dreamer((64, 64, 3), 3, True, dreamer.DreamerConfig(model=RSSMConfig.tiny()))
    first = torch.ones(1, dtype=torch.bool)
    with pytest.raises(ValueError, match="obs: expected uint8 images"):
        agent.observe(None, torch.zeros(1, 3), torch.zeros(1, 64, 64, 3), first)
    with pytest.raises(ValueError, match=r"obs: expected shape \[..., 64, 64, 3\]"):
        agent.observe(None, torch.zeros(1, 3), torch.zeros(1, 32, 32, 3, dtype=torch.uint8), first)


def test_a_short_run_learns_and_logs():
    history = dreamer.train(TINY).history
    # Steps count env transitions of the 2 envs (not the calls that reset them), so an evaluation
    # comes at the first count at or past its multiple.
    assert [r["step"] // 100 for r in history] == [1, 2] and history[0]["step"] <= 101
    # train_ratio 32 with 4 x 8 replayed steps per update: one update per env step after learning_starts
    assert all(r["updates"] == r["step"] - 64 for r in history)
    # CartPole pays 1 per step; its episodes under a near-random policy last 8 to a few dozen steps,
    # so several end in each window of 100 steps (a return summed across episodes would exceed 100).
    assert all(8 <= r["train_return"] < 100 for r in history)
    assert all(np.isfinite(history[-1][k]) for k in ("model_loss", "actor_loss", "critic_loss", "return"))


def test_a_continuous_run_works():
    config = dataclasses.replace(TINY, env="Pendulum-v1", num_envs=1, steps=120, eval_every=120, eval_episodes=1)
    history = dreamer.train(config).history
    assert history[-1]["updates"] == (120 - 64) * 32 // 32 and history[-1]["return"] < 0


def test_a_run_resumes_from_its_checkpoint_and_continues_when_finished(tmp_path):
    config = dataclasses.replace(TINY, checkpoint_every=100)
    with pytest.raises(KeyboardInterrupt):
        dreamer.train(config, tmp_path, callbacks=Steps(stop=160))
    state = torch.load(tmp_path / "checkpoint" / "state.pt", weights_only=True)
    assert state["step"] in (100, 101) and state["updates"] == state["step"] - 64
    assert state["history"][0]["step"] == state["step"]
    history = dreamer.train(config, tmp_path).history
    assert history[0] == state["history"][0] and len(history) == 2
    assert history[1]["step"] >= 200 and history[1]["updates"] == history[1]["step"] - 64
    with open(tmp_path / "log.csv", newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [r["step"] for r in history]
    taken = Steps()
    again = dreamer.train(config, tmp_path, callbacks=taken).history
    assert again == history and taken.steps == []  # a finished run only reads its checkpoint
    # Given more steps, the finished run goes on from its checkpoint (the replay is not sized by steps).
    longer = dreamer.train(dataclasses.replace(config, steps=300), tmp_path).history
    assert longer[:2] == history and len(longer) == 3 and longer[-1]["step"] >= 300
    assert longer[-1]["updates"] == longer[-1]["step"] - 64
    assert torch.load(tmp_path / "checkpoint" / "state.pt", weights_only=True)["step"] == 300
    with pytest.raises(ValueError, match="^horizon: the run in .* has horizon=3, not 4"):
        dreamer.train(dataclasses.replace(config, horizon=4), tmp_path)


def test_a_nan_loss_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    original = WorldModel.loss
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        calls["n"] += 1
        total, parts = original(self, *args, **kwargs)
        return (total * float("nan"), parts) if calls["n"] > 60 else (total, parts)

    monkeypatch.setattr(WorldModel, "loss", poisoned)
    with pytest.raises(NonFiniteLossError, match="the world model loss is nan"):
        dreamer.train(dataclasses.replace(TINY, steps=400, eval_episodes=1, checkpoint_every=100), tmp_path)
    state = torch.load(tmp_path / "checkpoint" / "state.pt", weights_only=True)
    assert state["step"] in (100, 101)
    assert all(torch.isfinite(p).all() for p in state["agent"]["world_model"].values() if p.is_floating_point())


@pytest.mark.parametrize("env_id, message", [("NoSuchEnv-v0", "env: .*NoSuchEnv"),
                                             ("Blackjack-v1", "env: Dreamer needs Box observations")])
def test_bad_envs_are_refused_before_the_run_directory_is_made(tmp_path, env_id, message):
    with pytest.raises(ValueError, match=message):
        dreamer.train(dreamer.DreamerConfig(env=env_id, steps=100), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_load_acts_on_one_observation_or_a_batch_and_keeps_the_latent_state(tmp_path):
    trained = dreamer.train(dataclasses.replace(TINY, steps=100, eval_every=100), tmp_path).agent
    policy = dreamer.load(tmp_path)
    for a, b in zip(policy.agent.actor.parameters(), trained.actor.parameters()):
        assert torch.equal(a, b)
    obs = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    actions = policy.act(obs)
    assert actions.shape == (3,) and set(actions.tolist()) <= {0, 1}
    start = policy.state.deter[:1]  # an episode's first h comes from the initial state alone
    policy.reset()
    assert policy.act(obs[0]) in (0, 1)
    torch.testing.assert_close(policy.state.deter, start)
    policy.act(obs[1])
    assert not torch.allclose(policy.state.deter, start)  # the latent state carried over and moved on
    with pytest.raises(ValueError, match="obs: expected a batch of 1 observations"):
        policy.act(obs)
    policy.reset()  # the next episode starts from the initial state again, with any batch size
    assert policy.act(obs[1:]).shape == (2,)
    torch.testing.assert_close(policy.state.deter, start.expand(2, -1))
    with pytest.raises(ValueError, match=r"obs: expected an observation of shape \(4,\)"):
        policy.act(np.zeros(5))
    with pytest.raises(ValueError, match="run_dir: expected the directory of a pymbrl run"):
        dreamer.load(tmp_path / "missing")


def test_the_loaded_agent_plays_its_env():
    from pymbrl.training.agent import evaluate

    config = dataclasses.replace(TINY, env="Pendulum-v1", num_envs=1, steps=70, eval_every=70, eval_episodes=1)
    trained = dreamer.train(config).agent
    env = dreamer.make_env(config)
    policy = dreamer.Policy(trained, env.action_space)
    returns = evaluate(policy, env, 1, seed=0)
    assert len(returns) == 1 and returns[0] < 0
    assert policy.act(np.zeros(3, np.float32)).shape == (1,)  # a Box action, in the env's range


def test_generator_states_of_another_kind_of_device_are_left_out():
    """A run trained on a GPU loads on the CPU: its generators' states (of CUDA generators) do not
    fit the CPU's, so the loaded agent keeps its freshly seeded ones."""
    agent = dreamer.Dreamer((3,), 2, True, dreamer.DreamerConfig(model=RSSMConfig.tiny()))
    state = agent.state_dict()
    assert state["device"] == "cpu"
    fresh = agent.generator.get_state()
    other = dreamer.Dreamer((3,), 2, True, dreamer.DreamerConfig(model=RSSMConfig.tiny(), seed=1))
    other.load_state_dict({**state, "device": "cuda", "generator": torch.zeros(16, dtype=torch.uint8),
                           "latent_generators": {"cuda:0": torch.zeros(16, dtype=torch.uint8)}})
    assert all(torch.equal(a, b) for a, b in zip(other.actor.parameters(), agent.actor.parameters()))
    assert not torch.equal(other.generator.get_state(), fresh)  # its own seed's, untouched
    other.load_state_dict(state)
    assert torch.equal(other.generator.get_state(), fresh)


@pytest.mark.parametrize("field, value", [("batch_size", 0), ("horizon", 1.5), ("learning_starts", -1),
                                          ("discount", 1.5), ("model_lr", -1.0), ("imagine_continue", "sample"),
                                          ("actor_gradient", "backprop"), ("max_std", 0.05), ("compile", 1),
                                          ("model", {"deter": 8}), ("steps", 0), ("device", "gpu")])
def test_bad_config_fields_are_refused_by_name(field, value):
    with pytest.raises(ValueError if field not in ("model", "compile") else TypeError, match=f"^{field}: "):
        dreamer.DreamerConfig(**{field: value})


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_the_config_round_trips_through_a_file(tmp_path, suffix):
    config = dreamer.DreamerConfig.for_env("Pendulum-v1", horizon=7, steps=999)
    assert config.batch_length == 32 and config.model.deter == 128  # the preset, under the changes
    write_config(config, tmp_path / f"config{suffix}", "dreamer")
    assert read_config(dreamer.DreamerConfig, tmp_path / f"config{suffix}", "dreamer") == config
    tiny = dataclasses.replace(TINY, env="Acrobot-v1")  # no preset: every field from the file
    write_config(tiny, tmp_path / f"tiny{suffix}")
    assert read_config(dreamer.DreamerConfig, tmp_path / f"tiny{suffix}") == tiny


def test_atari_frames_are_resized_to_64x64_by_area_averaging():
    class Frames(gym.Env):
        observation_space = gym.spaces.Box(0, 255, (210, 160, 3), np.uint8)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            frame = np.zeros((210, 160, 3), np.uint8)
            frame[:, :80] = (200, 100, 50)  # left half one colour, right half black
            return frame, {}

    env = ResizeFrames(Frames())
    obs, _ = env.reset()
    assert env.observation_space.shape == obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert (obs[:, :32] == (200, 100, 50)).all() and (obs[:, 32:] == 0).all()


def test_atari_without_ale_py_names_the_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ale_py", None)  # makes the import fail
    with pytest.raises(ValueError, match=r"env: ALE/Pong-v5: ale-py is not installed: pip install 'pymbrl\[atari\]'"):
        dreamer.make_env(dreamer.DreamerConfig(env="ALE/Pong-v5"))
