"""pymbrl.envs.tictactoe's batched rules refuse moves and boards outside the game instead of
wrapping a negative cell index or allocating without bound."""

from __future__ import annotations

import pytest
import torch

from pymbrl.envs import tictactoe


def test_play_refuses_cells_outside_the_board_and_changes_nothing():
    boards = tictactoe.new_boards(3)
    boards[0, 8] = 1.0
    before = boards.clone()
    # -1 used to wrap to cell 8 (here occupied: the move went to the last cell of the row silently).
    for actions, error, text in [
        (torch.tensor([-1, 0, 0]), ValueError, r"actions: expected cells in \[0, 9\), got -1 at index 0"),
        (torch.tensor([0, 9, 0]), ValueError, r"actions: expected cells in \[0, 9\), got 9 at index 1"),
        (torch.tensor([0, 1]), ValueError, r"actions: expected an integer tensor \[3\], got shape \(2,\)"),
        (torch.tensor([0.0, 1.0, 2.0]), TypeError, "actions: expected an integer tensor"),
        ([0, 1, 2], TypeError, "actions: expected an integer tensor"),
    ]:
        with pytest.raises(error, match=text):
            tictactoe.play(boards, actions)
    assert torch.equal(boards, before)
    with pytest.raises(ValueError, match=r"boards: expected cells in \{-1, 0, 1\}"):
        tictactoe.play(torch.full((1, 9), 2.0), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"boards: expected a float tensor \[B, 9\], got shape \(2, 8\)"):
        tictactoe.play(torch.zeros(2, 8), torch.tensor([0, 0]))
    assert tictactoe.play(boards, torch.tensor([0, 1, 2]))[:, :3].tolist() == [[-1, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_sizes_are_bounded_before_allocating():
    with pytest.raises(ValueError, match=r"batch_size: expected at most 4194304 boards in all, got 1000000000000"):
        tictactoe.new_boards(10**12)
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 0"):
        tictactoe.new_boards(-1)
