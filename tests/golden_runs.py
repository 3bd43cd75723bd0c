"""The golden runs (see tests/data/make_golden_runs.py): one short seeded run per agent, tiny
networks, small budgets; shared by the recorder and tests/agents/test_golden_runs.py."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

FRAMES_ID = "pymbrl-test/GoldenFrames-v0"


class FramesEnv(gym.Env):
    """Random 64x64 RGB frames, episodes of 3 steps, three actions (a cheap World Models env)."""

    observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.integers(0, 256, (64, 64, 3), dtype=np.uint8), {}

    def step(self, action):
        self.t += 1
        return self.np_random.integers(0, 256, (64, 64, 3), dtype=np.uint8), 1.0, self.t >= 3, False, {}


if FRAMES_ID not in gym.registry:
    gym.register(id=FRAMES_ID, entry_point=FramesEnv)

COMMON = {"seed": 3, "eval_every": 300, "eval_episodes": 1, "checkpoint_every": 200}
RUNS = {
    "sac": {**COMMON, "env": "Pendulum-v1", "steps": 800,
            "config": {"learning_starts": 300, "hidden": 32, "batch_size": 32}},
    "mbpo": {**COMMON, "env": "Pendulum-v1", "steps": 700,
             "config": {"init_steps": 400, "model_train_freq": 200, "rollout_batch_size": 200, "updates_per_step": 1,
                        "ensemble_size": 3, "num_elites": 2, "model_hidden": 32, "model_layers": 2,
                        "hidden": 32, "batch_size": 32}},
    "muzero": {**COMMON, "env": "CartPole-v1", "steps": 800,
               "config": {"num_envs": 4, "num_simulations": 4, "batch_size": 16, "warmup_steps": 300,
                          "hidden_size": 16, "unroll_steps": 3, "td_steps": 5, "updates_per_step": 0.05}},
    "dreamer": {**COMMON, "env": "CartPole-v1", "steps": 700,
                "config": {"learning_starts": 400, "batch_size": 4, "batch_length": 16, "num_envs": 1,
                           "train_ratio": 16, "horizon": 5,
                           "model": {"deter": 32, "groups": 4, "classes": 4, "hidden": 32, "layers": 1}}},
    "i2a": {**COMMON, "env": "MiniPacman-regular", "steps": 800, "eval_every": 400, "checkpoint_every": 400,
            "config": {"num_envs": 4, "n_steps": 5, "channels": 8, "hidden": 32, "encoder_hidden": 8,
                       "a2c_hidden": 48, "rollout_length": 2, "teacher_frames": 200, "model_frames": 320,
                       "model_epochs": 1, "distill_frames": 160, "distill_epochs": 2}},
    "world-models": {"seed": 3, "env": FRAMES_ID,
                     "config": {"z_dim": 8, "rnn_hidden": 16, "rollouts": 12, "vae_batch": 8, "rnn_epochs": 2,
                                "rnn_batch": 4, "rnn_seq_len": 8, "popsize": 4, "trials": 2, "generations": 2,
                                "eval_episodes": 2, "max_steps": 20}},
}


def golden_config(name: str):
    """The config of the golden run ``name``, through the training layer."""
    from pymbrl import agents
    from pymbrl.training.config import from_dict

    spec = RUNS[name]
    return from_dict(agents.config_class(name), {**{k: v for k, v in spec.items() if k != "config"}, **spec["config"]})


def record(name: str, config, run_dir) -> list:
    """The records the run of ``config`` reports, as [stage, record] pairs in JSON's values (a staged
    agent's summary last)."""
    import json

    from pymbrl import agents
    from pymbrl.training import Callbacks

    records: list = []

    class Recorder(Callbacks):
        def on_record(self, stage, record):
            records.append([stage, {k: v for k, v in record.items() if k != "seconds"}])

    result = agents.train(config, run_dir, callbacks=Recorder())
    if name == "world-models":
        records.append(["summary", result.summary])
    return json.loads(json.dumps(records, default=float))
