"""Frame games by id: MiniPacman and Atari batched, and one game played exactly as the batch plays it."""

import gymnasium as gym
import numpy as np
import pytest

from pymbrl.envs.minipacman import MiniPacmanVectorEnv
from pymbrl.envs.vector import OneGame, check_env_id, env_spaces, make_env, make_vector_env


def test_env_ids_are_checked_by_name():
    for good in ("MiniPacman-regular", "MiniPacman-avoid", "ALE/Breakout-v5"):
        assert check_env_id(good) == good
    for bad in ("MiniPacman-eat", "CartPole-v1", 3, None):
        with pytest.raises(ValueError, match="^env: "):
            check_env_id(bad)


def test_minipacman_by_id():
    env = make_vector_env("MiniPacman-hunt", 3, seed=0, frame_cap=50)
    assert env.mode == "hunt" and env.num_envs == 3 and env.frame_cap == 50
    assert env_spaces("MiniPacman-regular") == ((3, 15, 19), 5)


def play(env, actions, seed):
    """(obs, reward, terminated, truncated) of each step of ``actions`` in ``env`` (a gymnasium env),
    a reset's as (obs, None, None, None), resetting with ``seed``, ``seed + 1``, ... after each end."""
    steps = [(env.reset(seed=seed)[0], None, None, None)]
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(a)
        steps.append((obs, reward, terminated, truncated))
        if terminated or truncated:
            seed += 1
            steps.append((env.reset(seed=seed)[0], None, None, None))
    return steps


def test_one_game_plays_as_the_batch_plays_it():
    actions = np.random.default_rng(0).integers(0, 5, 300)
    single = play(make_env("MiniPacman-regular", frame_cap=40), actions, seed=3)
    wrapped = play(OneGame(MiniPacmanVectorEnv(1, frame_cap=40)), actions, seed=3)
    assert len(single) == len(wrapped)
    for a, b in zip(single, wrapped):
        assert np.array_equal(a[0], b[0]) and a[1:] == b[1:]
    assert any(truncated for _, _, _, truncated in single)  # episodes end at the frame cap, too


def test_one_game_needs_a_reset_after_the_end_and_renders():
    env = OneGame(MiniPacmanVectorEnv(1, frame_cap=2), render_mode="rgb_array")
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)
    obs, _ = env.reset(seed=0)
    assert env.render().shape == (15, 19, 3)
    env.step(0)
    _, _, _, truncated, _ = env.step(0)
    assert truncated
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)
    with pytest.raises(ValueError, match="num_envs|env: expected a vector env of one game"):
        OneGame(MiniPacmanVectorEnv(2))
    with pytest.raises(ValueError, match="render_mode"):
        OneGame(MiniPacmanVectorEnv(1), render_mode="human")


def test_one_atari_game():
    pytest.importorskip("ale_py")
    assert env_spaces("ALE/Breakout-v5") == ((4, 84, 84), 4)
    env = make_env("ALE/Breakout-v5", render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (84, 84, 4) and obs.dtype == np.uint8 and env.render().shape == (84, 84, 3)
    obs, reward, terminated, truncated, _ = env.step(1)
    assert obs.shape == (84, 84, 4) and isinstance(reward, float)
    env.close()
