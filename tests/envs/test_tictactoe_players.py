"""The exact TicTacToe solver, the random and perfect players, and play_match."""

from __future__ import annotations

import functools
import random

import numpy as np
import pytest
import torch

from pymbrl.envs import tictactoe
from pymbrl.envs.tictactoe import LINE_CELLS, solve
from pymbrl.envs.tictactoe_env import MatchResult, minimax_player, play_match, random_player

from .test_tictactoe_env import DRAW_MOVES


def board(text: str) -> tuple[int, ...]:
    """'XX./OO./...' -> an absolute board (slashes separate rows)."""
    cells = text.replace("/", "")
    return tuple({"X": 1, "O": -1, ".": 0}[c] for c in cells)


def info_for(cells: tuple[int, ...]) -> dict:
    """The env's info for a position (what the players read)."""
    to_play = 1 if cells.count(1) == cells.count(-1) else -1
    return {"board": np.array(cells, dtype=np.int8), "legal_actions": np.array(cells) == 0, "to_play": to_play}


def has_line(cells, player: int) -> bool:
    return any(all(cells[c] == player for c in line) for line in LINE_CELLS)


@functools.cache
def unfinished_positions() -> list[tuple[int, ...]]:
    """Every reachable position in which someone is still to move (4520 of them)."""
    seen, stack = set(), [(0,) * 9]
    while stack:
        cells = stack.pop()
        if cells in seen or has_line(cells, 1) or has_line(cells, -1) or 0 not in cells:
            continue
        seen.add(cells)
        mover = 1 if cells.count(1) == cells.count(-1) else -1
        stack += [cells[:i] + (mover,) + cells[i + 1:] for i in range(9) if cells[i] == 0]
    return sorted(seen)


def one_move_wins(cells: tuple[int, ...], player: int) -> set[int]:
    return {i for i in range(9) if cells[i] == 0 and has_line(cells[:i] + (player,) + cells[i + 1:], player)}


def lowest_cell(observation, info) -> int:
    return int(np.flatnonzero(info["legal_actions"])[0])


# ---------------------------------------------------------------------------------------------
# solve and perfect_actions
# ---------------------------------------------------------------------------------------------


def test_the_empty_board_is_a_draw_whatever_the_first_move():
    assert solve([0] * 9) == (0, tuple(range(9)))
    assert solve(np.zeros(9, dtype=np.int8), quickest=True) == (0, tuple(range(9)))


@pytest.mark.parametrize("text, value", [
    ("X../.O./...", 0),   # corner, then the centre: a draw
    ("XO./.../...", 1),   # corner, then an adjacent edge: X wins
    ("O../.X./...", 0),   # centre, then a corner: a draw
    (".O./.X./...", 1),   # centre, then an edge: X wins
])
def test_known_opening_values(text, value):
    assert solve(board(text))[0] == value


def test_finished_positions_have_no_moves():
    assert solve(board("XXX/OO./...")) == (-1, ())  # O to move has lost
    full = np.zeros(9, dtype=int)
    full[list(DRAW_MOVES[0::2])] = 1
    full[list(DRAW_MOVES[1::2])] = -1
    assert solve(full) == (0, ())


@pytest.mark.parametrize("cells, message", [
    ([0] * 8, r"9 cells in \{-1, 0, 1\}"),
    ([2] + [0] * 8, r"9 cells in \{-1, 0, 1\}"),
    ([-1] + [0] * 8, "as many X as O or one more, got 0 X and 1 O"),
    ([1, 1] + [0] * 7, "as many X as O or one more, got 2 X and 0 O"),
    (list(board("XXX/OO./O..")), r"no line of the player to move \(\+1\)"),
])
def test_solve_refuses_impossible_boards(cells, message):
    with pytest.raises(ValueError, match="^board: expected " + message):
        solve(cells)


def test_quickest_moves_win_at_once_and_block_single_threats_everywhere():
    """On every reachable position: a one-move win is taken; failing that, a lone threat of the
    opponent is blocked; and the quickest moves are always among the optimal ones."""
    for cells in unfinished_positions():
        mover = 1 if cells.count(1) == cells.count(-1) else -1
        value, optimal = solve(cells)
        quick_value, quick = solve(cells, quickest=True)
        assert quick_value == value and quick and set(quick) <= set(optimal)
        wins, threats = one_move_wins(cells, mover), one_move_wins(cells, -mover)
        if wins:
            assert value == 1 and set(quick) <= wins, cells
        elif len(threats) == 1:
            assert set(quick) == threats, cells


@pytest.mark.parametrize("text, move", [
    ("XX./OO./...", 2),   # X wins at once rather than blocking
    ("XX./OO./X..", 5),   # O wins at once rather than blocking
    ("X../OO./X..", 5),   # X blocks
    ("XO./.X./...", 8),   # O blocks the diagonal
    ("X.O/.X./..O", 5),   # X blocks the column
])
def test_minimax_player_wins_or_blocks_on_hand_made_boards(text, move):
    cells = board(text)
    for tie_break in ("first", "random"):
        player = minimax_player(seed=0, tie_break=tie_break)
        assert {player(np.zeros(27, np.float32), info_for(cells)) for _ in range(10)} == {move}


def test_perfect_actions_batched():
    boards = torch.tensor([board("XX./OO./..."), board(".../.../..."), board("XXX/OO./...")], dtype=torch.float32)
    assert tictactoe.perfect_actions(boards).tolist() == [2, 0, 0]  # the lowest optimal cell; 0 when over
    first = tictactoe.perfect_actions(boards.repeat(20, 1), random.Random(3))
    assert torch.equal(first, tictactoe.perfect_actions(boards.repeat(20, 1), random.Random(3)))
    assert first[0::3].tolist() == [2] * 20 and first[2::3].tolist() == [0] * 20
    assert len(set(first[1::3].tolist())) > 3  # every opening move draws: the rng varies them


# ---------------------------------------------------------------------------------------------
# players
# ---------------------------------------------------------------------------------------------


def test_random_player_is_uniform_over_legal_cells_and_seeded():
    info = info_for(board("X.O/.X./..."))
    player, again = random_player(seed=5), random_player(seed=5)
    moves = [player(None, info) for _ in range(300)]
    assert moves == [again(None, info) for _ in range(300)]
    assert set(moves) == {1, 3, 5, 6, 7, 8}


def test_minimax_player_checks_its_arguments():
    with pytest.raises(ValueError, match="^tie_break: expected 'random' or 'first', got 'last'"):
        minimax_player(tie_break="last")
    with pytest.raises(ValueError, match="^info: expected the board of an unfinished game"):
        minimax_player()(None, info_for(board("XXX/OO./...")))


@pytest.mark.parametrize("fraction, side", [(1.0, "X"), (0.0, "O")])
def test_minimax_never_loses_to_a_random_player(fraction, side):
    result = play_match(minimax_player(seed=0), random_player(seed=1), 200, agent_first_fraction=fraction)
    assert result.losses == 0, side
    assert result.wins >= (185 if side == "X" else 145), result  # measured 194 / 163 at these seeds


def test_minimax_against_itself_always_draws():
    assert play_match(minimax_player(seed=0), minimax_player(seed=1), 100) == MatchResult(0, 100, 0)
    same = minimax_player(tie_break="first")
    assert play_match(same, same, 4) == MatchResult(0, 4, 0)


# ---------------------------------------------------------------------------------------------
# play_match
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("games, fraction, expected", [
    (8, 0.5, [1, 0] * 4), (3, 0.5, [1, 1, 0]), (10, 0.3, [1, 0, 0, 1, 0, 0, 1, 0, 0, 0]), (5, 1.0, [1] * 5),
    (5, 0.0, [0] * 5)])
def test_play_match_alternates_the_first_player_and_counts_add_up(games, fraction, expected):
    first, rng = [], np.random.default_rng(0)

    def agent(observation, info):
        pieces = int(np.count_nonzero(info["board"]))
        if pieces <= 1:  # the agent's first move of a game
            first.append(int(pieces == 0))
            assert observation[18:].all() == (pieces == 0)
        return int(rng.choice(np.flatnonzero(info["legal_actions"])))

    result = play_match(agent, random_player(seed=2), games, agent_first_fraction=fraction)
    assert first == expected
    assert sum(result) == games and min(result) >= 0


def test_play_match_scores_from_the_agents_side():
    # Both take the lowest empty cell: X completes the 2-4-6 diagonal with its fourth move.
    assert play_match(lowest_cell, lowest_cell, 4) == MatchResult(wins=2, draws=0, losses=2)
    assert play_match(lowest_cell, lowest_cell, 3, agent_first_fraction=1.0) == MatchResult(3, 0, 0)
    assert play_match(lowest_cell, lowest_cell, 3, agent_first_fraction=0.0) == MatchResult(0, 0, 3)


def test_play_match_checks_its_arguments_and_the_agents_moves():
    with pytest.raises(ValueError, match="^games: expected an integer >= 1, got 0"):
        play_match(lowest_cell, lowest_cell, 0)
    with pytest.raises(ValueError, match="^agent_first_fraction: expected a finite number in"):
        play_match(lowest_cell, lowest_cell, 2, agent_first_fraction=1.5)
    with pytest.raises(ValueError, match="^action: expected an empty cell"):
        play_match(lambda observation, info: 0, lowest_cell, 2)
