"""The self-play TicTacToe env: gymnasium API, registration, the mover's-view observation, win,
draw and illegal-move handling."""

from __future__ import annotations

import itertools
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import pymbrl.envs
from pymbrl.envs.tictactoe import LINE_CELLS
from pymbrl.envs.tictactoe_env import TicTacToeEnv

# X, O, X, O, ... ending in a full board with no line:  X O X / X O O / O X X
DRAW_MOVES = (0, 4, 8, 1, 7, 6, 2, 5, 3)


def play(env: TicTacToeEnv, moves) -> list[tuple]:
    env.reset()
    return [env.step(move) for move in moves]


def winning_moves(line: tuple[int, int, int], player: int) -> list[int]:
    """A game in which ``player`` (+1 X, -1 O) completes ``line`` with its last move and the other
    player fills cells off the line without making one of its own."""
    others = [c for c in range(9) if c not in line]
    loser_count = 2 if player == 1 else 3
    loser = next(cells for cells in itertools.combinations(others, loser_count)
                 if not any(set(l) <= set(cells) for l in LINE_CELLS))
    if player == 1:
        return [line[0], loser[0], line[1], loser[1], line[2]]
    return [loser[0], line[0], loser[1], line[1], loser[2], line[2]]


def test_the_id_is_registered_on_import():
    assert pymbrl.envs.TICTACTOE_ID == "pymbrl/TicTacToe-v0"
    env = gym.make("pymbrl/TicTacToe-v0", illegal_move="lose")
    assert isinstance(env.unwrapped, TicTacToeEnv) and env.unwrapped.illegal_move == "lose"
    env.close()


def test_check_env_passes_without_warnings():
    env = gym.make("pymbrl/TicTacToe-v0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    env.close()


def test_reset_gives_the_empty_board_with_x_to_move():
    env = TicTacToeEnv()
    env.reset()
    env.step(4)
    observation, info = env.reset(seed=3)
    assert observation.dtype == np.float32 and observation.shape == (27,)
    assert observation.tolist() == [0.0] * 18 + [1.0] * 9
    assert info["board"].dtype == np.int8 and info["board"].tolist() == [0] * 9
    assert info["legal_actions"].dtype == np.bool_ and info["legal_actions"].all()
    assert info["to_play"] == 1


def test_the_observation_is_from_the_movers_point_of_view():
    env = TicTacToeEnv()
    rng = np.random.default_rng(0)
    for _ in range(30):
        observation, info = env.reset()
        terminated = False
        while not terminated:
            board, to_play = info["board"], info["to_play"]
            planes = observation.reshape(3, 3, 3)
            assert np.array_equal(planes[0].ravel(), board == to_play)
            assert np.array_equal(planes[1].ravel(), board == -to_play)
            assert np.all(planes[2] == (to_play == 1))
            assert np.array_equal(info["legal_actions"], board == 0)
            previous = observation
            observation, _, terminated, truncated, info = env.step(int(rng.choice(np.flatnonzero(board == 0))))
            assert info["to_play"] == -to_play and not truncated
            # The mover's pieces, now seen by the opponent, are the opponent's plane.
            assert np.count_nonzero(observation[9:18]) == np.count_nonzero(previous[:9]) + 1
            assert np.array_equal(observation[:9], previous[9:18])
        assert not info["legal_actions"].any()


@pytest.mark.parametrize("player", [1, -1], ids=["X", "O"])
@pytest.mark.parametrize("line", LINE_CELLS)
def test_completing_any_line_wins_for_either_player(line, player):
    env = TicTacToeEnv()
    moves = winning_moves(line, player)
    steps = play(env, moves)
    assert [s[1] for s in steps] == [0.0] * (len(moves) - 1) + [1.0]
    assert [s[2] for s in steps] == [False] * (len(moves) - 1) + [True]
    info = steps[-1][4]
    assert info["board"][list(line)].tolist() == [player] * 3
    assert info["to_play"] == -player and not info["legal_actions"].any()


def test_a_full_board_without_a_line_is_a_draw():
    steps = play(TicTacToeEnv(), DRAW_MOVES)
    assert [s[1] for s in steps] == [0.0] * 9
    assert [s[2] for s in steps] == [False] * 8 + [True]
    assert steps[-1][4]["board"].tolist() == [1, -1, 1, 1, -1, -1, -1, 1, 1]


def test_an_illegal_move_raises_by_default_and_changes_nothing():
    env = TicTacToeEnv()
    play(env, [4])
    with pytest.raises(ValueError, match=r"^action: expected an empty cell .*got occupied cell 4"):
        env.step(4)
    _, reward, terminated, _, info = env.step(0)
    assert (reward, terminated) == (0.0, False)
    assert info["board"].tolist() == [-1, 0, 0, 0, 1, 0, 0, 0, 0]


def test_an_illegal_move_loses_with_illegal_move_lose():
    env = TicTacToeEnv(illegal_move="lose")
    play(env, [4])
    observation, reward, terminated, truncated, info = env.step(4)
    assert (reward, terminated, truncated) == (-1.0, True, False)
    assert info["board"].tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0] and info["to_play"] == 1
    assert not info["legal_actions"].any()
    assert observation[:9].tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0]  # X's view: its own piece
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)


@pytest.mark.parametrize("action", [-1, 9, 1.0, "0", None, np.array([0])])
def test_actions_outside_the_space_are_refused(action):
    env = TicTacToeEnv()
    env.reset()
    with pytest.raises(ValueError, match="^action: expected"):
        env.step(action)


def test_numpy_integer_actions_are_accepted():
    env = TicTacToeEnv()
    env.reset()
    assert env.step(np.int64(8))[4]["board"][8] == 1


def test_step_before_reset_or_after_the_end_raises():
    env = TicTacToeEnv()
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)
    play(env, DRAW_MOVES)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)
    env.reset()
    env.step(0)


def test_info_arrays_are_copies():
    env = TicTacToeEnv()
    _, info = env.reset()
    info["board"][:] = 1
    info["legal_actions"][:] = False
    _, _, _, _, info = env.step(0)
    assert info["board"].tolist() == [1] + [0] * 8 and info["legal_actions"].sum() == 8


def test_ansi_rendering():
    env = TicTacToeEnv(render_mode="ansi")
    play(env, [0, 4, 8])
    assert env.render() == "X..\n.O.\n..X\n"
    assert TicTacToeEnv().render() is None


def test_constructor_arguments_are_checked():
    with pytest.raises(ValueError, match="^illegal_move: expected 'raise' or 'lose', got 'pass'"):
        TicTacToeEnv(illegal_move="pass")
    with pytest.raises(ValueError, match="^render_mode: expected None or 'ansi', got 'human'"):
        TicTacToeEnv(render_mode="human")
