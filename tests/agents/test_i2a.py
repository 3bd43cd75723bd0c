"""I2A and its controls on MiniPacman: architecture, data collection, A2C training, the staged
pipeline, load/act and the config."""

import csv
import dataclasses

import numpy as np
import pytest
import torch

from pymbrl.agents import i2a, i2a_stages
from pymbrl.envs.minipacman import MiniPacmanVectorEnv
from pymbrl.envs.vector import make_vector_env
from pymbrl.models.env_model import EnvModel
from pymbrl.models.i2a import ConvFeatures, PolicyLogits
from pymbrl.training import Callbacks, read_config, seeded, write_config
from pymbrl.training.agent import evaluate
from pymbrl.training.checkpoint import load_torch, save_atomically
from pymbrl.training.stages import check_stages
from support import Payload

FRAME_SHAPE = (3, 15, 19)  # MiniPacman's planes [C, H, W]
SMALL = {"num_envs": 4, "n_steps": 5, "channels": 8, "hidden": 32, "encoder_hidden": 8, "a2c_hidden": 48,
         "rollout_length": 2}
TINY_STAGES = dict(SMALL, teacher_frames=200, model_frames=320, model_epochs=1, distill_frames=160, distill_epochs=2)


def env_model(config, seed=0):
    with seeded(seed):
        return EnvModel(FRAME_SHAPE, 5, channels=config.channels)


def config_of(**changes):
    return i2a.I2AConfig(**{**SMALL, **changes})


class Recorder(Callbacks):
    def __init__(self, stop_at=None):
        self.records, self.stages, self.stop_at = [], [], stop_at

    def on_stage(self, stage):
        self.stages.append(stage)

    def on_record(self, stage, record):
        self.records.append((stage, record))

    def on_progress(self, stage, done, total):
        if done == self.stop_at:
            raise KeyboardInterrupt


def strip(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_agents_have_similar_sizes_at_the_default_config():
    counts = i2a.parameter_counts()
    assert counts["i2a"] == counts["copy"]
    assert abs(counts["a2c"] - counts["i2a"]) / counts["i2a"] < 0.1


def test_forward_shapes_and_the_imagination_code():
    config = config_of()
    frames = torch.rand(6, *FRAME_SHAPE)
    for agent in i2a.AGENTS:
        net = i2a.make_agent(agent, config, env_model(config))
        logits, values = net(frames, torch.Generator().manual_seed(0))
        assert logits.shape == (6, 5) and values.shape == (6,)
    net = i2a.make_agent("i2a", config, env_model(config))
    assert net.trunk.in_features == config.hidden + 5 * config.encoder_hidden
    assert i2a.make_agent("a2c", config).trunk.in_features == config.a2c_hidden


def test_the_imagination_changes_the_policy_only_through_the_model():
    """Two I2As that differ only in their env model's weights act differently on the same frame."""
    config = config_of()
    net = i2a.make_agent("i2a", config, env_model(config), seed=1)
    frames = torch.rand(3, *FRAME_SHAPE)
    logits, _ = net(frames, torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.imagination.frame_head.bias += 1.0
    shifted, _ = net(frames, torch.Generator().manual_seed(0))
    assert not torch.allclose(logits, shifted)


def test_bad_agent_and_env_model():
    config = config_of()
    with pytest.raises(ValueError, match="agent"):
        i2a.make_agent("dqn", config)
    with pytest.raises(ValueError, match="env_model"):
        i2a.make_agent("i2a", config, None)
    with pytest.raises(ValueError, match="env_model"):
        i2a.make_agent("i2a", config, EnvModel((3, 8, 8), 5))


@pytest.mark.parametrize("field, value", [("num_envs", 0), ("gamma", 1.5), ("agent", "dqn"), ("online_distill", 1),
                                          ("lr", -1.0), ("explore", float("nan")), ("frame_cap", -1),
                                          ("rollout_length", 2.5), ("distill_epochs", True), ("steps", 0),
                                          ("device", "cuda"), ("env", "CartPole-v1")])
def test_bad_config_fields_are_refused_by_name(field, value):
    with pytest.raises(ValueError, match=f"^{field}: "):
        i2a.I2AConfig(**{field: value})


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_the_config_round_trips_through_its_file(tmp_path, suffix):
    config = i2a.I2AConfig.for_env("MiniPacman-hunt", agent="copy", online_distill=True, lr=1, seed=7, steps=1234)
    assert config.lr == 1.0 and isinstance(config.lr, float)
    write_config(config, tmp_path / f"config{suffix}", "i2a")
    assert read_config(i2a.I2AConfig, tmp_path / f"config{suffix}", "i2a") == config


def test_atari_ids_take_the_atari_preset():
    config = i2a.I2AConfig.for_env("ALE/Breakout-v5", channels=8)
    assert (config.channels, config.a2c_hidden, config.teacher_frames) == (8, 560, 500_000)
    assert i2a.I2AConfig().env == "MiniPacman-regular" and i2a.I2AConfig().steps == 200_000


def test_collect_records_final_frames_and_windows_stay_inside_episodes():
    env = MiniPacmanVectorEnv(4, seed=0)
    rollout = i2a_stages.collect(env, 300, seed=0)
    assert rollout.frames.shape == (300, 4, 15, 19, 3) and rollout.actions.shape == (300, 4)
    assert rollout.dones.any()  # random Pacman gets caught
    t, n = np.argwhere(rollout.dones)[0]
    # the step after an end starts a new episode: its frame is not the final frame
    assert not np.array_equal(rollout.next_frames[t, n], rollout.frames[t + 1, n])
    for t, n in np.argwhere(~rollout.dones[:-1]):
        assert np.array_equal(rollout.next_frames[t, n], rollout.frames[t + 1, n])
    frames, actions, rewards = rollout.trajectories(10)
    assert frames.shape[1:] == (11, 15, 19, 3) and actions.shape[1] == 10 == rewards.shape[1]
    transitions = rollout.transitions()
    assert len(transitions.frames) == 1200 == len(transitions.next_frames)


def test_train_writes_logs_and_keeps_the_env_model_frozen(tmp_path):
    config = config_of(steps=400, eval_every=200, seed=3)
    model = env_model(config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = i2a.train_agent(i2a.make_agent("i2a", config, model), config, tmp_path)
    assert [r["frames"] for r in result.history] == [200, 400]
    assert all(np.isfinite(r["policy_loss"]) and np.isfinite(r["distill_loss"]) for r in result.history)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    with open(tmp_path / "log.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert (tmp_path / "agent.pt").exists() and list(tmp_path.glob("events.out.tfevents.*"))


def test_training_is_reproducible_by_seed_and_leaves_the_global_generator_alone():
    before = torch.get_rng_state()
    runs = []
    for seed in (5, 5, 6):
        config = config_of(steps=200, eval_every=200, seed=seed)
        runs.append(i2a.train_agent(i2a.make_agent("copy", config), config).history[-1])
    assert strip(runs)[0] == strip(runs)[1] != strip(runs)[2]
    assert torch.equal(torch.get_rng_state(), before)


def test_distillation_brings_the_rollout_policy_to_the_agent():
    config = config_of(steps=3000, eval_every=500)
    result = i2a.train_agent(i2a.make_agent("i2a", config, env_model(config)), config)
    assert result.history[-1]["distill_loss"] < result.history[0]["distill_loss"]


def test_a2c_learns_to_eat_food():
    """A short A2C run beats the random policy's return on MiniPacman regular."""
    env = MiniPacmanVectorEnv(16, seed=11)
    random_returns = []
    rng = np.random.default_rng(0)
    env.reset(seed=11)
    while len(random_returns) < 50:
        _, _, _, _, info = env.step(rng.integers(0, 5, 16))
        random_returns.extend(info["episode_return"][info["_final_obs"]].tolist())
    config = i2a.I2AConfig(agent="a2c", steps=40_000, eval_every=40_000)
    result = i2a.train_agent(i2a.make_agent("a2c", config), config)
    assert result.history[-1]["return"] > 1.25 * np.mean(random_returns)


def test_a_pretrained_rollout_policy_is_used_frozen_and_not_distilled():
    config = config_of(steps=200, eval_every=200)
    teacher = i2a.make_agent("a2c", config)
    policy = PolicyLogits(teacher)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    result = i2a.train_agent(i2a.make_agent("i2a", config, env_model(config), policy), config)
    assert "distill_loss" not in result.history[-1]
    assert result.agent.net.rollout_policy is policy
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    with pytest.raises(ValueError, match="agent"):
        PolicyLogits(result.agent.net)


def test_n_step_returns_by_hand():
    rewards = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    masks = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])  # env 0's episode ends at step 1
    bootstrap = torch.tensor([10.0, 20.0])
    g = 0.5
    expected = torch.tensor([[1 + g * 0.0, 0 + g * 2 + g * g * 0 + g ** 3 * 20],
                             [0.0, 2 + g * 0 + g * g * 20],
                             [3 + g * 10, 0 + g * 20]])
    assert torch.allclose(i2a.n_step_returns(rewards, masks, bootstrap, g), expected)


def test_an_interrupted_run_resumes_exactly(tmp_path):
    config = config_of(steps=600, eval_every=200, checkpoint_every=200, seed=4)
    model = env_model(config)

    def run(directory, callbacks=None):
        return i2a.train_agent(i2a.make_agent("i2a", config, model), config, directory, callbacks=callbacks)

    whole = run(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", Recorder(stop_at=420))  # past the checkpoint at 400
    assert not (tmp_path / "cut" / "agent.pt").exists()
    resumed = run(tmp_path / "cut")
    assert strip(whole.history) == strip(resumed.history)
    for (name, a), b in zip(whole.agent.net.state_dict().items(), resumed.agent.net.state_dict().values()):
        assert torch.equal(a, b), name
    # a finished run does nothing more when called again
    again = run(tmp_path / "cut")
    assert len(again.history) == len(resumed.history)


def test_resuming_with_another_env_model_or_config_is_refused(tmp_path):
    config = config_of(steps=200, eval_every=200)
    i2a.train_agent(i2a.make_agent("i2a", config, env_model(config)), config, tmp_path)
    other = env_model(config)
    with torch.no_grad():
        other.frame_head.bias += 1.0
    with pytest.raises(ValueError, match="env_model"):
        i2a.train_agent(i2a.make_agent("i2a", config, other), config, tmp_path)
    changed = config_of(steps=200, eval_every=200, gamma=0.9)
    with pytest.raises(ValueError, match="^gamma: "):
        i2a.train_agent(i2a.make_agent("i2a", changed, env_model(config)), changed, tmp_path)


def test_env_ids():
    assert i2a.I2AConfig(env="MiniPacman-avoid").env == "MiniPacman-avoid"
    for bad in ("MiniPacman-eat", "CartPole-v1", 3):
        with pytest.raises((ValueError, TypeError), match="env"):
            i2a.I2AConfig(env=bad)
    env = make_vector_env("MiniPacman-hunt", 2, seed=0)
    assert env.mode == "hunt" and env.num_envs == 2


def test_atari_sized_frames_get_the_nature_convs():
    features = ConvFeatures((4, 84, 84), 32)
    assert features.size == 64 * 7 * 7
    assert features(torch.rand(2, 4, 84, 84)).shape == (2, 3136)
    assert ConvFeatures(FRAME_SHAPE, 16).size == 16 * 8 * 10


def test_the_stages_run_separately_and_feed_each_other(tmp_path):
    before = torch.get_rng_state()
    config = i2a.I2AConfig(**TINY_STAGES, seed=1)
    with pytest.raises(ValueError, match="run the env-model and distill stages first"):
        i2a.train(dataclasses.replace(config, steps=100), tmp_path, stages=["agent"])
    with pytest.raises(ValueError, match="stages"):
        i2a.train(config, tmp_path, stages=["collect"])
    recorder = Recorder()
    result = i2a.train(config, tmp_path, stages=["env-model"], callbacks=recorder)
    summary = result.summary
    assert result.agent is None and recorder.stages == ["env-model"]
    assert set(summary) == {"env-model"} and len(summary["env-model"]["error"]["cell_error"]) == 3
    assert {"teacher", "env model", "env model error"} <= {stage for stage, _ in recorder.records}
    assert (tmp_path / "teacher" / "agent.pt").exists() and (tmp_path / "held_out.npz").exists()
    assert (tmp_path / "config.yaml").exists() and (tmp_path / "teacher" / "log.csv").exists()
    model = i2a_stages.load_env_model(tmp_path / "env_model.pt")
    assert model.frame_shape == FRAME_SHAPE and not model.training
    summary = i2a.train(config, tmp_path, stages=["env-model", "distill"]).summary
    assert set(summary) == {"distill"}  # the env model exists: skipped
    assert 0.0 <= summary["distill"]["agreement"] <= 1.0
    policy = i2a_stages.load_rollout_policy(tmp_path / "rollout_policy.pt")
    assert policy(torch.rand(3, *FRAME_SHAPE, generator=torch.Generator().manual_seed(0))).shape == (3, 5)
    result = i2a.train(dataclasses.replace(config, steps=200, eval_every=100), tmp_path, stages=["agent"])
    summary = result.summary
    assert summary["agent"]["name"] == "i2a" and summary["agent"]["frames"] == 200
    assert [r["frames"] for r in result.history] == [100, 200] and result.run_dir == tmp_path
    net = torch.load(tmp_path / "i2a" / "agent.pt", weights_only=True)
    # the agent imagined with the stage's env model and rollout policy, frozen
    assert torch.equal(net["imagination.frame_head.weight"], model.frame_head.weight)
    assert torch.equal(net["rollout_policy.1.weight"], policy[1].weight)
    loaded = i2a.load(tmp_path)
    assert all(torch.equal(net[k], v) for k, v in loaded.net.state_dict().items())
    frames = make_vector_env(config.env, 3, seed=0).reset(seed=0)[0]
    assert loaded.act(frames).shape == (3,) and loaded.act(frames[0]).shape == ()
    online = dataclasses.replace(config, agent="copy", online_distill=True, steps=100)
    summary = i2a.train(online, tmp_path, stages=["agent"]).summary
    assert summary["agent"]["name"] == "copy-online" and "distill_loss" in summary["agent"]
    assert i2a.load(tmp_path).net.imagination.__class__.__name__ == "CopyModel"  # the run's config is the last
    assert torch.equal(torch.get_rng_state(), before)  # every stream came from the run's seed


def test_a_finished_run_continues_with_more_steps_and_load_acts(tmp_path):
    config = config_of(agent="a2c", steps=200, eval_every=100, checkpoint_every=100)
    first = i2a.train(config, tmp_path, stages=["agent"])
    assert load_torch(tmp_path / "a2c" / "checkpoint" / "state.pt")["step"] == 200
    more = i2a.train(dataclasses.replace(config, steps=400), tmp_path, stages=["agent"])
    assert repr(strip(more.history[:2])) == repr(strip(first.history))  # by repr: NaN != NaN
    assert [r["frames"] for r in more.history] == [100, 200, 300, 400]
    assert load_torch(tmp_path / "a2c" / "checkpoint" / "state.pt")["step"] == 400
    agent = i2a.load(tmp_path)
    frames = make_vector_env(config.env, 5, seed=1).reset(seed=1)[0]
    batch = agent.act(frames)
    assert batch.shape == (5,) and batch.dtype == np.int64
    assert np.array_equal(batch, more.agent.act(frames))  # the model-free agent's argmax: no randomness
    assert agent.act(frames[2]) == batch[2]
    assert agent.act(frames, deterministic=False).shape == (5,)
    with pytest.raises(ValueError, match=r"obs: expected an observation of shape \(15, 19, 3\)"):
        agent.act(np.zeros((4, 4)))
    returns = evaluate(agent, i2a.make_env(config), 2, seed=0)
    assert len(returns) == 2 and all(np.isfinite(returns))


def test_a_run_without_a_directory_keeps_no_files():
    config = config_of(agent="a2c", steps=100, eval_every=100)
    result = i2a.train(config, stages=["agent"])
    assert result.run_dir is None and [r["frames"] for r in result.history] == [100]
    assert result.agent.act(np.zeros((15, 19, 3), np.uint8)).shape == ()


def test_load_refuses_what_is_not_an_i2a_run(tmp_path):
    with pytest.raises(ValueError, match="run_dir: expected the directory of a pymbrl run"):
        i2a.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="has no config.yaml"):
        i2a.load(tmp_path)
    write_config(config_of(agent="a2c"), tmp_path / "config.yaml", "i2a")
    with pytest.raises(ValueError, match="no checkpoint"):
        i2a.load(tmp_path)


ATARI_SMALL = dict(SMALL, channels=8)


def test_breakout_agents_have_similar_sizes_and_a_run_resumes_exactly(tmp_path):
    pytest.importorskip("ale_py")
    counts = i2a.parameter_counts(i2a.I2AConfig.for_env("ALE/Breakout-v5"))
    assert abs(counts["a2c"] - counts["i2a"]) / counts["i2a"] < 0.05
    config = i2a.I2AConfig.for_env("ALE/Breakout-v5", **ATARI_SMALL, steps=300, eval_every=100, checkpoint_every=100,
                                   seed=2)
    with seeded(0):
        model = EnvModel((4, 84, 84), 4, channels=8)

    def run(directory, callbacks=None):
        return i2a.train_agent(i2a.make_agent("i2a", config, model), config, directory, callbacks=callbacks)

    whole = run(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", Recorder(stop_at=140))
    resumed = run(tmp_path / "cut")
    # by repr: no episode ends this soon, and NaN != NaN
    assert [repr(r) for r in strip(whole.history)] == [repr(r) for r in strip(resumed.history)]
    for a, b in zip(whole.agent.net.parameters(), resumed.agent.net.parameters()):
        assert torch.equal(a, b)


def test_saved_networks_are_checked_before_use(tmp_path):
    """env_model.pt and rollout_policy.pt: a truncated file, a pickled object, a shape that would
    size a huge network and weights of another shape each raise ValueError naming the file."""
    model = EnvModel((3, 8, 8), 5, channels=4)
    record = {"state_dict": model.state_dict(), "frame_shape": [3, 8, 8], "num_actions": 5, "channels": 4}
    path = tmp_path / "env_model.pt"
    save_atomically(path, record)
    loaded = i2a_stages.load_env_model(path)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ValueError, match=f"^{path}: corrupt or truncated file"):
        i2a_stages.load_env_model(path)
    marker = tmp_path / "ran"
    torch.save({**record, "state_dict": Payload(marker)}, path)
    with pytest.raises(ValueError, match=f"^{path}: not a readable pymbrl file"):
        i2a_stages.load_env_model(path)
    assert not marker.exists()
    for edit, message in (({"frame_shape": [3, 8, 10**9]}, "frame_shape: expected 3 sizes"),
                          ({"channels": 0}, "channels: expected"), ({"num_actions": 6}, "state_dict: expected")):
        torch.save({**record, **edit}, path)
        with pytest.raises(ValueError, match=f"^{path}: {message}"):
            i2a_stages.load_env_model(path)
    policy = tmp_path / "rollout_policy.pt"
    torch.save({"state_dict": {}, "frame_shape": [3, 8, 8], "num_actions": 5, "channels": 4}, policy)
    with pytest.raises(ValueError, match=f"^{policy}: state_dict: expected the weights"):
        i2a_stages.load_rollout_policy(policy)


def test_stages_whose_inputs_are_missing_are_refused_before_anything_runs(tmp_path):
    def check(selected, **changes):
        check_stages(tmp_path, i2a_stages.pipeline(i2a.I2AConfig(**changes)), selected)

    with pytest.raises(ValueError, match=r"stages: agent needs env_model.pt.*; run the env-model"):
        i2a.train(i2a.I2AConfig(), tmp_path, stages=["agent"])
    with pytest.raises(ValueError, match=r"stages: agent needs rollout_policy.pt.*; run the distill"):
        check(["env-model", "agent"], agent="copy")
    with pytest.raises(ValueError, match=r"stages: distill needs teacher/agent.pt.*; run the env-model"):
        check(["distill"])
    assert list(tmp_path.iterdir()) == []
    check(["agent"], agent="a2c")
    check(["agent"], agent="copy", online_distill=True)
    check(["env-model", "distill", "agent"])
