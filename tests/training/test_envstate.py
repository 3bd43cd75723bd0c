"""The state of an env in mid-episode: captured from one env and restored into another of the same
id, the second plays on exactly as the first; envs whose state is not known are not captured; a
bad state is refused naming the field, before anything changes."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.classic_control import CartPoleEnv

import pymbrl.envs  # noqa: F401  (registers pymbrl/TicTacToe-v0)
from pymbrl.training.envstate import capturable, env_restorer, env_state, restore_env_state


def play(env, info, rng, actions=None, steps=120):
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


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "pymbrl/TicTacToe-v0",
                                    "pymbrl/2048-3x3-v0"])
def test_an_env_state_restored_into_another_env_plays_on_identically(env_id):
    rng = np.random.default_rng(0)
    env = gym.make(env_id)
    env.action_space.seed(1)
    _, info = env.reset(seed=0)
    _, _, info = play(env, info, rng, steps=37)
    state = env_state(env)
    # Saved and read back as a checkpoint would be.
    state = copy.deepcopy(state)
    other = gym.make(env_id)
    other.reset(seed=5)
    restore_env_state(other, state)
    expected, actions, _ = play(env, info, rng)
    got, _, _ = play(other, info, rng, actions)
    assert got == expected
    assert [env.action_space.sample() for _ in range(5)] == [other.action_space.sample() for _ in range(5)]


def test_a_2048_board_of_impossible_tiles_is_refused():
    env = gym.make("pymbrl/2048-3x3-v0")
    env.reset(seed=0)
    bad = env_state(env)
    bad["layers"][-1][1]["board"] = torch.full((3, 3), 11, dtype=torch.int8)
    with pytest.raises(ValueError, match=r"s\.layers\[2\]\.board: expected tile exponents in \[0, 11\)"):
        env_restorer(env, bad, "s")


def test_the_time_limit_and_order_of_calls_are_part_of_the_state():
    env = gym.make("CartPole-v1", max_episode_steps=10)
    env.reset(seed=0)
    for _ in range(6):
        env.step(1 if env.unwrapped.state[2] > 0 else 0)
    state = env_state(env)
    assert state["layers"][0] == ["TimeLimit", {"_elapsed_steps": 6}]
    assert state["layers"][1] == ["OrderEnforcing", {"_has_reset": True}]
    fresh = gym.make("CartPole-v1", max_episode_steps=10)
    with pytest.raises(ValueError, match="env: expected an env that has been reset"):
        restore_env_state(fresh, state)
    fresh.reset(seed=1)  # its step counter at 0: it would truncate 6 steps later than the source
    restore_env_state(fresh, state)
    truncated = [fresh.step(1 if fresh.unwrapped.state[2] > 0 else 0)[3] for _ in range(4)]
    assert truncated == [False, False, False, True]


class SubCartPole(CartPoleEnv):
    """A subclass may hold more state than its base: not captured."""


def test_an_env_not_in_the_tables_is_not_captured():
    gym.register("pymbrl-test/SubCartPole-v0", entry_point=SubCartPole, max_episode_steps=500)
    known = gym.make("CartPole-v1")
    known.reset(seed=0)
    assert capturable(known)
    state = env_state(known)
    for env in (gym.make("pymbrl-test/SubCartPole-v0"), gym.wrappers.RecordEpisodeStatistics(gym.make("CartPole-v1"))):
        assert not capturable(env) and env_state(env) is None
        with pytest.raises(ValueError, match="state: .* cannot be restored"):
            restore_env_state(env, state)
    with pytest.raises(ValueError, match="env: expected an env that has been reset"):
        env_state(gym.make("CartPole-v1"))


@pytest.mark.parametrize("path, value, message", [
    (("layers",), [], r"s\.layers: expected a list of 4 layers"),
    (("layers", 0), ["OrderEnforcing", {}], r"s\.layers\[0\]: expected \['TimeLimit', attributes\]"),
    (("layers", 0, 1, "_elapsed_steps"), -1, r"s\.layers\[0\]\._elapsed_steps: expected an integer >= 0"),
    (("layers", 1, 1, "_has_reset"), 1, r"s\.layers\[1\]\._has_reset: expected a bool"),
    (("layers", 3, 1, "state"), torch.zeros(3), r"s\.layers\[3\]\.state: expected shape \(4,\)"),
    (("layers", 3, 1, "state"), torch.full((4,), float("nan")), r"s\.layers\[3\]\.state: expected finite"),
    (("layers", 3, 1, "steps_beyond_terminated"), 1.5, r"steps_beyond_terminated: expected an integer >= 0 or None"),
    (("layers", 3, 1), {}, r"s\.layers\[3\]: expected a dict with the keys"),
    (("action_space",), {"state": 3}, r"s\.action_space: expected a PCG64 state"),
])
def test_a_bad_state_is_refused_naming_the_field_and_changes_nothing(path, value, message):
    source = gym.make("CartPole-v1")
    source.reset(seed=0)
    source.step(0)
    bad = copy.deepcopy(env_state(source))
    holder = bad
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    target = gym.make("CartPole-v1")
    target.reset(seed=1)
    before = env_state(target)
    with pytest.raises(ValueError, match=message):
        env_restorer(target, bad, "s")
    after = env_state(target)
    assert after["np_random"] == before["np_random"] and after["action_space"] == before["action_space"]
    assert str(after["layers"]) == str(before["layers"])
