"""I2A and its controls on MiniPacman: architecture, data collection, A2C training."""

import csv

import numpy as np
import pytest
import torch

from pymbrl.agents import i2a
from pymbrl.envs.minipacman import MiniPacmanVectorEnv
from pymbrl.models.env_model import EnvModel

SMALL = {"num_envs": 4, "n_steps": 5, "channels": 8, "hidden": 32, "encoder_hidden": 8, "a2c_hidden": 48, "rollout_length": 2}


def env_model(config):
    torch.manual_seed(0)
    return EnvModel(i2a.FRAME_SHAPE, i2a.NUM_ACTIONS, channels=config.channels)


def test_agents_have_similar_sizes_at_the_default_config():
    counts = i2a.parameter_counts()
    assert counts["i2a"] == counts["copy"]
    assert abs(counts["a2c"] - counts["i2a"]) / counts["i2a"] < 0.1


def test_forward_shapes_and_the_imagination_code():
    config = i2a.I2AConfig(**SMALL)
    frames = torch.rand(6, *i2a.FRAME_SHAPE)
    for agent in i2a.AGENTS:
        net = i2a.make_agent(agent, config, env_model(config))
        logits, values = net(frames, torch.Generator().manual_seed(0))
        assert logits.shape == (6, 5) and values.shape == (6,)
    net = i2a.make_agent("i2a", config, env_model(config))
    assert net.trunk.in_features == config.hidden + 5 * config.encoder_hidden
    assert i2a.make_agent("a2c", config).trunk.in_features == config.a2c_hidden


def test_the_imagination_changes_the_policy_only_through_the_model():
    """Two I2As that differ only in their env model's weights act differently on the same frame."""
    config = i2a.I2AConfig(**SMALL)
    torch.manual_seed(1)
    net = i2a.make_agent("i2a", config, env_model(config))
    frames = torch.rand(3, *i2a.FRAME_SHAPE)
    logits, _ = net(frames, torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.imagination.frame_head.bias += 1.0
    shifted, _ = net(frames, torch.Generator().manual_seed(0))
    assert not torch.allclose(logits, shifted)


def test_bad_agent_and_env_model():
    config = i2a.I2AConfig(**SMALL)
    with pytest.raises(ValueError, match="agent"):
        i2a.make_agent("dqn", config)
    with pytest.raises(ValueError, match="env_model"):
        i2a.make_agent("i2a", config, None)
    with pytest.raises(ValueError, match="env_model"):
        i2a.make_agent("i2a", config, EnvModel((3, 8, 8), 5))
    with pytest.raises(ValueError, match="num_envs"):
        i2a.I2AConfig(num_envs=0)
    with pytest.raises(ValueError, match="gamma"):
        i2a.I2AConfig(gamma=1.5)


def test_collect_records_final_frames_and_windows_stay_inside_episodes():
    env = MiniPacmanVectorEnv(4, seed=0)
    rollout = i2a.collect(env, 300, seed=0)
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
    config = i2a.I2AConfig(**SMALL)
    model = env_model(config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = i2a.train("i2a", 400, config, model, seed=3, run_dir=tmp_path, log_every=200)
    assert [r["frames"] for r in result.history] == [200, 400]
    assert all(np.isfinite(r["policy_loss"]) and np.isfinite(r["distill_loss"]) for r in result.history)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    with open(tmp_path / "log.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert (tmp_path / "agent.pt").exists()


def test_training_is_reproducible_by_seed():
    config = i2a.I2AConfig(**SMALL)
    runs = [i2a.train("copy", 200, config, seed=s, log_every=200).history[-1] for s in (5, 5, 6)]
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in runs]
    assert strip[0] == strip[1] and strip[0] != strip[2]


def test_distillation_brings_the_rollout_policy_to_the_agent():
    config = i2a.I2AConfig(**SMALL)
    result = i2a.train("i2a", 3000, config, env_model(config), seed=0, log_every=500)
    assert result.history[-1]["distill_loss"] < result.history[0]["distill_loss"]


def test_a2c_learns_to_eat_food():
    """A short A2C run beats the random policy's return on MiniPacman regular."""
    torch.manual_seed(0)
    env = MiniPacmanVectorEnv(16, seed=11)
    random_returns = []
    rng = np.random.default_rng(0)
    env.reset(seed=11)
    while len(random_returns) < 50:
        _, _, _, _, info = env.step(rng.integers(0, 5, 16))
        random_returns.extend(info["episode_return"][info["_final_obs"]].tolist())
    result = i2a.train("a2c", 40_000, i2a.I2AConfig(), seed=0, log_every=40_000)
    assert result.history[-1]["return"] > 1.25 * np.mean(random_returns)


def test_a_pretrained_rollout_policy_is_used_frozen_and_not_distilled():
    config = i2a.I2AConfig(**SMALL)
    teacher = i2a.make_agent("a2c", config)
    policy = i2a.PolicyLogits(teacher)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    result = i2a.train("i2a", 200, config, env_model(config), rollout_policy=policy, seed=0, log_every=200)
    assert "distill_loss" not in result.history[-1]
    assert result.agent.rollout_policy is policy
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    with pytest.raises(ValueError, match="agent"):
        i2a.PolicyLogits(result.agent)


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
    config = i2a.I2AConfig(**SMALL)
    model = env_model(config)
    whole = i2a.train("i2a", 600, config, model, seed=4, run_dir=tmp_path / "whole", log_every=200,
                      checkpoint_every=200)

    def interrupt(frames):
        if frames == 420:  # past the checkpoint at 400
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        i2a.train("i2a", 600, config, model, seed=4, run_dir=tmp_path / "cut", log_every=200, checkpoint_every=200,
                  on_update=interrupt)
    assert not (tmp_path / "cut" / "agent.pt").exists()
    resumed = i2a.train("i2a", 600, config, model, seed=None, run_dir=tmp_path / "cut", log_every=200,
                        checkpoint_every=200)
    strip = [[{k: v for k, v in r.items() if k != "seconds"} for r in run.history] for run in (whole, resumed)]
    assert strip[0] == strip[1]
    for (name, a), b in zip(whole.agent.state_dict().items(), resumed.agent.state_dict().values()):
        assert torch.equal(a, b), name
    # a finished run does nothing more when called again
    again = i2a.train("i2a", 600, config, model, seed=4, run_dir=tmp_path / "cut", log_every=200, checkpoint_every=200)
    assert len(again.history) == len(resumed.history)


def test_resuming_with_another_env_model_or_config_is_refused(tmp_path):
    config = i2a.I2AConfig(**SMALL)
    i2a.train("i2a", 200, config, env_model(config), seed=0, run_dir=tmp_path, log_every=200)
    other = env_model(config)
    with torch.no_grad():
        other.frame_head.bias += 1.0
    with pytest.raises(ValueError, match="env_model"):
        i2a.train("i2a", 200, config, other, seed=0, run_dir=tmp_path, log_every=200)
    with pytest.raises(ValueError, match="config"):
        i2a.train("i2a", 200, i2a.I2AConfig(**{**SMALL, "gamma": 0.9}), env_model(config), seed=0, run_dir=tmp_path,
                  log_every=200)


def test_env_ids():
    assert i2a.I2AConfig(env="MiniPacman-avoid").env == "MiniPacman-avoid"
    for bad in ("MiniPacman-eat", "CartPole-v1", 3):
        with pytest.raises(ValueError, match="env"):
            i2a.I2AConfig(env=bad)
    env = i2a.make_vector_env("MiniPacman-hunt", 2, seed=0)
    assert env.mode == "hunt" and env.num_envs == 2


def test_atari_sized_frames_get_the_nature_convs():
    features = i2a.ConvFeatures((4, 84, 84), 32)
    assert features.size == 64 * 7 * 7
    assert features(torch.rand(2, 4, 84, 84)).shape == (2, 3136)
    assert i2a.ConvFeatures(i2a.FRAME_SHAPE, 16).size == 16 * 8 * 10


TINY_STAGES = dict(SMALL, teacher_frames=200, model_frames=320, model_epochs=1, distill_frames=160, distill_epochs=2)


def test_the_stages_run_separately_and_feed_each_other(tmp_path):
    config = i2a.I2AConfig(**TINY_STAGES)
    with pytest.raises(ValueError, match="run the env-model stage first"):
        i2a.train_stages(tmp_path, ["agent"], config, frames=100)
    with pytest.raises(ValueError, match="stages"):
        i2a.train_stages(tmp_path, ["collect"], config)
    logged = []
    summary = i2a.train_stages(tmp_path, ["env-model"], config, seed=1, log=lambda s, r: logged.append(s))
    assert set(summary) == {"env-model"} and len(summary["env-model"]["error"]["cell_error"]) == 3
    assert {"teacher", "env model", "env model error"} <= set(logged)
    assert (tmp_path / "teacher" / "agent.pt").exists() and (tmp_path / "held_out.npz").exists()
    model = i2a.load_env_model(tmp_path / "env_model.pt")
    assert model.frame_shape == i2a.FRAME_SHAPE and not model.training
    summary = i2a.train_stages(tmp_path, ["env-model", "distill"], config, seed=1)
    assert set(summary) == {"distill"}  # the env model exists: skipped
    assert 0.0 <= summary["distill"]["agreement"] <= 1.0
    policy = i2a.load_rollout_policy(tmp_path / "rollout_policy.pt")
    assert policy(torch.rand(3, *i2a.FRAME_SHAPE)).shape == (3, 5)
    summary = i2a.train_stages(tmp_path, ["agent"], config, frames=200, log_every=100, seed=1)
    assert summary["agent"]["name"] == "i2a" and summary["agent"]["frames"] == 200
    net = torch.load(tmp_path / "i2a" / "agent.pt", weights_only=True)
    # the agent imagined with the stage's env model and rollout policy, frozen
    assert torch.equal(net["imagination.frame_head.weight"], model.frame_head.weight)
    assert torch.equal(net["rollout_policy.1.weight"], policy[1].weight)
    summary = i2a.train_stages(tmp_path, ["agent"], config, agent="copy", frames=100, online_distill=True, seed=1)
    assert summary["agent"]["name"] == "copy-online" and "distill_loss" in summary["agent"]


def test_cli_trains_the_agent_stage_and_refuses_bad_input(tmp_path, capsys):
    from pymbrl import cli

    i2a.train_stages(tmp_path, ["env-model", "distill"], i2a.I2AConfig(**TINY_STAGES), seed=0)
    args = ["train", "i2a", "--stages", "agent", "--steps", "1600", "--eval-every", "800", "--run-dir", str(tmp_path)]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "i2a on MiniPacman-regular, seed 0: mean return of the last 100 training episodes" in out
    assert (tmp_path / "i2a" / "learning_curve.png").exists() and (tmp_path / "i2a" / "checkpoint").exists()
    for bad, message in ((["--stages", "collect"], "stages"), (["--env", "CartPole-v1"], "env")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["train", "i2a", "--run-dir", str(tmp_path / "bad"), *bad])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


ATARI_SMALL = dict(SMALL, channels=8)


def test_breakout_agents_have_similar_sizes_and_a_run_resumes_exactly(tmp_path):
    pytest.importorskip("ale_py")
    counts = i2a.parameter_counts(i2a.I2AConfig.for_env("ALE/Breakout-v5"))
    assert abs(counts["a2c"] - counts["i2a"]) / counts["i2a"] < 0.05
    config = i2a.I2AConfig.for_env("ALE/Breakout-v5", **ATARI_SMALL)
    torch.manual_seed(0)
    model = EnvModel((4, 84, 84), 4, channels=8)
    whole = i2a.train("i2a", 300, config, model, seed=2, run_dir=tmp_path / "whole", log_every=100,
                      checkpoint_every=100)

    def interrupt(frames):
        if frames == 140:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        i2a.train("i2a", 300, config, model, seed=2, run_dir=tmp_path / "cut", log_every=100, checkpoint_every=100,
                  on_update=interrupt)
    resumed = i2a.train("i2a", 300, config, model, seed=2, run_dir=tmp_path / "cut", log_every=100,
                        checkpoint_every=100)
    strip = [[repr({k: v for k, v in r.items() if k != "seconds"}) for r in run.history] for run in (whole, resumed)]
    assert strip[0] == strip[1]  # by repr: no episode ends this soon, and NaN != NaN
    for a, b in zip(whole.agent.parameters(), resumed.agent.parameters()):
        assert torch.equal(a, b)


class Payload:
    """Unpickling this runs ``open(marker, "w")``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_saved_networks_are_checked_before_use(tmp_path):
    """env_model.pt and rollout_policy.pt: a truncated file, a pickled object, a shape that would
    size a huge network and weights of another shape each raise ValueError naming the file."""
    model = EnvModel((3, 8, 8), 5, channels=4)
    record = {"state_dict": model.state_dict(), "frame_shape": [3, 8, 8], "num_actions": 5, "channels": 4}
    path = tmp_path / "env_model.pt"
    i2a.save_atomically(path, record)
    loaded = i2a.load_env_model(path)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ValueError, match=f"^{path}: corrupt or truncated file"):
        i2a.load_env_model(path)
    marker = tmp_path / "ran"
    torch.save({**record, "state_dict": Payload(marker)}, path)
    with pytest.raises(ValueError, match=f"^{path}: not a readable pymbrl file"):
        i2a.load_env_model(path)
    assert not marker.exists()
    for edit, message in (({"frame_shape": [3, 8, 10**9]}, "frame_shape: expected 3 sizes"),
                          ({"channels": 0}, "channels: expected"), ({"num_actions": 6}, "state_dict: expected")):
        torch.save({**record, **edit}, path)
        with pytest.raises(ValueError, match=f"^{path}: {message}"):
            i2a.load_env_model(path)
    policy = tmp_path / "rollout_policy.pt"
    torch.save({"state_dict": {}, "frame_shape": [3, 8, 8], "num_actions": 5, "channels": 4}, policy)
    with pytest.raises(ValueError, match=f"^{policy}: state_dict: expected the weights"):
        i2a.load_rollout_policy(policy)


def test_stages_whose_inputs_are_missing_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match=r"stages: agent needs .*env_model.pt, which is missing; run the env-model"):
        i2a.train_stages(tmp_path, ["agent"])
    with pytest.raises(ValueError, match=r"stages: agent needs .*rollout_policy.pt.*run the distill"):
        i2a.check_stages(tmp_path, ["env-model", "agent"], agent="copy")
    with pytest.raises(ValueError, match=r"stages: distill needs .*teacher.*run the env-model"):
        i2a.check_stages(tmp_path, ["distill"])
    assert list(tmp_path.iterdir()) == []
    i2a.check_stages(tmp_path, ["agent"], agent="a2c")
    i2a.check_stages(tmp_path, ["agent"], agent="copy", online_distill=True)
    i2a.check_stages(tmp_path, list(i2a.STAGES))
