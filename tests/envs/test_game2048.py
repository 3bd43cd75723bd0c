"""2048: the slide and merge rules in every direction, new tiles and their frequencies, illegal
moves, the end of the game, the reward, seeding and the gymnasium API."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import pymbrl.envs
from pymbrl.envs.game2048 import Game2048Env, legal_actions, moves, num_levels

UP, RIGHT, DOWN, LEFT = range(4)


def board_of(rows) -> np.ndarray:
    return np.array(rows, dtype=np.int8)


def env_with(rows, seed: int = 0) -> Game2048Env:
    env = Game2048Env(size=len(rows))
    env.reset(seed=seed)
    env.board[:] = board_of(rows)
    return env


def test_ids_are_registered_on_import():
    assert (pymbrl.envs.GAME2048_ID, pymbrl.envs.GAME2048_3X3_ID) == ("pymbrl/2048-v0", "pymbrl/2048-3x3-v0")
    for env_id, size in (("pymbrl/2048-v0", 4), ("pymbrl/2048-3x3-v0", 3)):
        env = gym.make(env_id)
        assert env.unwrapped.size == size and env.observation_space.shape == ((size * size + 2) * size * size,)
        env.close()
    assert gym.make("pymbrl/2048-v0", size=2).unwrapped.size == 2


@pytest.mark.parametrize("size", [2, 3, 4])
def test_check_env_passes_without_warnings(size):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make("pymbrl/2048-v0", size=size).unwrapped)


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="size"):
        Game2048Env(size=1)
    with pytest.raises(ValueError, match="size"):
        Game2048Env(size=6)
    with pytest.raises(ValueError, match="render_mode"):
        Game2048Env(render_mode="human")
    env = Game2048Env(size=3)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(4)


def test_each_direction_slides_and_merges_toward_its_wall():
    board = board_of([[1, 1, 0, 2],
                      [0, 0, 0, 0],
                      [1, 0, 3, 3],
                      [2, 0, 0, 2]])
    after, rewards, changed = moves(board)
    assert after[LEFT].tolist() == [[2, 2, 0, 0], [0, 0, 0, 0], [1, 4, 0, 0], [3, 0, 0, 0]]
    assert after[RIGHT].tolist() == [[0, 0, 2, 2], [0, 0, 0, 0], [0, 0, 1, 4], [0, 0, 0, 3]]
    assert after[UP].tolist() == [[2, 1, 3, 2], [2, 0, 0, 3], [0, 0, 0, 2], [0, 0, 0, 0]]
    assert after[DOWN].tolist() == [[0, 0, 0, 0], [0, 0, 0, 2], [2, 0, 0, 3], [2, 1, 3, 2]]
    # Sideways the 2s of rows 1 and 4 and the 8s of row 3 merge; up and down only column 1's 2s.
    assert rewards.tolist() == [4, 4 + 16 + 8, 4, 4 + 16 + 8]
    assert changed.tolist() == [True, True, True, True]


def test_a_tile_merges_once_per_move_and_the_pair_nearest_the_wall_goes_first():
    after, rewards, _ = moves(board_of([[1, 1, 1, 1], [2, 1, 1, 0], [1, 1, 1, 0], [2, 2, 3, 0]]))
    assert after[LEFT].tolist() == [[2, 2, 0, 0], [2, 2, 0, 0], [2, 1, 0, 0], [3, 3, 0, 0]]
    assert after[RIGHT].tolist() == [[0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 1, 2], [0, 0, 3, 3]]
    assert rewards[LEFT] == rewards[RIGHT] == 4 + 4 + 4 + 4 + 8


def test_a_move_that_changes_nothing_is_illegal_and_a_no_op():
    env = env_with([[1, 2, 0], [0, 0, 0], [0, 0, 0]])
    assert moves(env.board)[2].tolist() == [False, True, True, False]
    _, reward, terminated, truncated, info = env.step(LEFT)
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert env.board.tolist() == [[1, 2, 0], [0, 0, 0], [0, 0, 0]]
    assert info["legal_actions"].tolist() == [False, True, True, False]
    assert info["max_tile"] == 4


def test_a_legal_move_adds_one_tile_in_an_empty_cell_and_scores_its_merges():
    env = env_with([[1, 1, 0], [2, 0, 0], [0, 0, 0]])
    observation, reward, terminated, _, info = env.step(LEFT)
    assert reward == 4.0 and not terminated
    new = env.board - board_of([[2, 0, 0], [2, 0, 0], [0, 0, 0]])
    assert np.count_nonzero(new) == 1 and new[new != 0][0] in (1, 2)
    assert board_of([[2, 0, 0], [2, 0, 0], [0, 0, 0]])[new != 0][0] == 0
    planes = observation.reshape(num_levels(3), 3, 3)
    assert (planes.sum(axis=0) == 1).all() and (planes.argmax(axis=0) == env.board).all()
    assert info["legal_actions"].tolist() == moves(env.board)[2].tolist()


def test_new_tiles_are_4s_one_time_in_ten_and_fall_on_any_empty_cell_alike():
    env = Game2048Env(size=3)
    env.reset(seed=5)
    values, cells = [], []
    for _ in range(20_000):
        env.board[:] = 0
        env.board[1, 1] = 3
        env.spawn()
        cell = int(np.flatnonzero(env.board.reshape(-1) * (np.arange(9) != 4))[0])
        cells.append(cell)
        values.append(int(env.board.flat[cell]))
    fours = np.mean(np.array(values) == 2)
    assert set(values) == {1, 2} and abs(fours - 0.1) < 0.01  # 0.1 +- 4.7 standard deviations
    counts = np.bincount(cells, minlength=9)
    assert counts[4] == 0 and np.all(np.abs(counts[counts > 0] / 20_000 - 1 / 8) < 0.01)


def test_reset_gives_two_tiles():
    env = Game2048Env(size=4)
    for seed in range(20):
        _, info = env.reset(seed=seed)
        assert np.count_nonzero(env.board) == 2 and set(env.board[env.board > 0].tolist()) <= {1, 2}
        assert not env.over and info["legal_actions"].any()


def test_the_game_ends_when_no_move_changes_the_board():
    # Moving right fills the last cell whatever tile comes, leaving no equal neighbours.
    env = env_with([[3, 4, 3], [4, 3, 4], [5, 6, 0]])
    _, reward, terminated, truncated, info = env.step(RIGHT)
    assert (reward, terminated, truncated) == (0.0, True, False)
    assert env.board[2, 1:].tolist() == [5, 6] and env.board[2, 0] in (1, 2)
    assert info["legal_actions"].tolist() == [False] * 4 and info["max_tile"] == 64
    with pytest.raises(gym.error.ResetNeeded):
        env.step(LEFT)


def test_a_seed_gives_the_same_game_and_another_seed_another():
    def game(seed: int) -> list:
        env = gym.make("pymbrl/2048-3x3-v0")
        observation, info = env.reset(seed=seed)
        record = [observation]
        while True:
            action = int(np.flatnonzero(info["legal_actions"])[0])
            observation, reward, terminated, _, info = env.step(action)
            record += [observation, reward]
            if terminated:
                return record

    first, again, other = game(7), game(7), game(8)
    assert len(first) == len(again) and all(np.array_equal(a, b) for a, b in zip(first, again))
    assert len(first) != len(other) or not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_legal_actions_are_read_from_observations():
    env = Game2048Env(size=3)
    observations, expected = [], []
    observation, info = env.reset(seed=1)
    for _ in range(30):
        observations.append(observation)
        expected.append(info["legal_actions"])
        observation, _, terminated, _, info = env.step(int(np.flatnonzero(info["legal_actions"])[-1]))
        if terminated:
            observation, info = env.reset()
    assert np.array_equal(legal_actions(np.stack(observations)), np.stack(expected))
    with pytest.raises(ValueError, match="observations"):
        legal_actions(np.zeros((2, 100)))


def test_render_ansi_shows_the_tile_values():
    env = Game2048Env(size=2, render_mode="ansi")
    env.reset(seed=0)
    env.board[:] = board_of([[1, 0], [11, 3]])
    assert env.render() == "   2    .\n2048    8\n"
    assert Game2048Env(size=2).render() is None
