"""pymbrl.models.tictactoe, the rules as a search model, refuses moves and embeddings outside the
game instead of wrapping a negative cell index, and bounds its playouts before allocating."""

from __future__ import annotations

import pytest
import torch

from pymbrl.envs import tictactoe
from pymbrl.models import tictactoe as tictactoe_model


def test_recurrent_fn_refuses_cells_outside_the_board():
    root, _ = tictactoe_model.search_root(tictactoe.new_boards(2))
    with pytest.raises(ValueError, match=r"action: expected cells in \[0, 9\), got -1 at index 1"):
        tictactoe_model.recurrent_fn(root.embedding, torch.tensor([0, -1]))
    with pytest.raises(ValueError, match=r"embedding: expected a float tensor \[B, 10\]"):
        tictactoe_model.recurrent_fn(root.embedding[:, :9], torch.tensor([0, 1]))


def test_playouts_are_bounded_before_allocating():
    root, _ = tictactoe_model.search_root(tictactoe.new_boards(4))
    with pytest.raises(ValueError, match="num_playouts: expected at most 4194304 boards in all, got 4000000000"):
        tictactoe_model.playout_values(root.embedding, 10**9)
    with pytest.raises(ValueError, match="num_playouts: expected an integer >= 1"):
        tictactoe_model.playout_recurrent_fn(0)
