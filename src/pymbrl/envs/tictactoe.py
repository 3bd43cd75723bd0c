"""Batched TicTacToe: the rules on many boards at once and a perfect player, a two-player zero-sum
known-answer test bed (a perfect player never loses).

Boards are float32 [B, 9] in row-major order with X = +1, O = -1, empty = 0; X moves first.
:func:`new_boards`, :func:`play`, :func:`winner`, :func:`is_over`, :func:`to_move` and
:func:`random_actions` work on batches; :func:`solve` gives the exact value and optimal moves of
any position (memoised negamax) and :func:`perfect_actions` a perfect player's moves on a batch of
boards: the opponent against which the best result is a draw. :mod:`pymbrl.models.tictactoe` is
the game as a perfect model for :mod:`pymbrl.mcts`, :mod:`pymbrl.envs.tictactoe_env` the game as a
gymnasium env.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence

import torch

from pymbrl._checks import ArgumentTypeError, integer

NUM_ACTIONS = 9
LINE_CELLS: tuple[tuple[int, int, int], ...] = (
    (0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
LINES = torch.tensor(LINE_CELLS)


MAX_ROWS = 1 << 22
"""The most boards one call allocates (a batch, or a batch times ``num_playouts``): 150 MB."""


def check_rows(rows: int, name: str) -> int:
    """``rows`` if one call may allocate that many boards (at most :data:`MAX_ROWS`), else
    ValueError naming ``name``."""
    if rows > MAX_ROWS:
        raise ValueError(f"{name}: expected at most {MAX_ROWS} boards in all, got {rows}")
    return rows


def check_cells(cells: torch.Tensor, name: str, width: int) -> None:
    """ValueError / TypeError naming ``name`` unless ``cells`` is a float tensor [B, width] whose
    first 9 columns hold -1, 0 or 1."""
    if not isinstance(cells, torch.Tensor) or not cells.is_floating_point():
        got = f"dtype {cells.dtype}" if isinstance(cells, torch.Tensor) else type(cells).__name__
        raise ArgumentTypeError(f"{name}: expected a float tensor [B, {width}], got {got}")
    if cells.dim() != 2 or cells.shape[1] != width:
        raise ValueError(f"{name}: expected a float tensor [B, {width}], got shape {tuple(cells.shape)}")
    pieces = cells[:, :9]
    if not bool(((pieces == 0) | (pieces == 1) | (pieces == -1)).all()):
        raise ValueError(f"{name}: expected cells in {{-1, 0, 1}}")


def check_actions(action: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    """``action`` as int64 [batch] with every value a cell in [0, 9) (a negative index would wrap
    to another cell), or ValueError / TypeError naming ``name``."""
    if not isinstance(action, torch.Tensor):
        raise ArgumentTypeError(f"{name}: expected an integer tensor [{batch}], got {type(action).__name__}")
    if action.is_floating_point() or action.is_complex() or action.dtype == torch.bool:
        raise ArgumentTypeError(f"{name}: expected an integer tensor [{batch}], got dtype {action.dtype}")
    if tuple(action.shape) != (batch,):
        raise ValueError(f"{name}: expected an integer tensor [{batch}], got shape {tuple(action.shape)}")
    action = action.to(torch.int64)
    bad = (action < 0) | (action >= NUM_ACTIONS)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"{name}: expected cells in [0, {NUM_ACTIONS}), got {int(action[i])} at index {i}")
    return action


def new_boards(batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Empty boards, float32 [batch_size, 9]; ``batch_size`` in [0, :data:`MAX_ROWS`]."""
    return torch.zeros(check_rows(integer(batch_size, "batch_size", minimum=0), "batch_size"), 9, device=device)


def winner(cells: torch.Tensor) -> torch.Tensor:
    """+1 where +1 pieces complete a line, -1 where -1 pieces do, else 0: int64 [B] from cells [B, >=9]."""
    lines = cells[:, :9][:, LINES.to(cells.device)].sum(dim=2)  # [B, 8]
    return (lines == 3).any(dim=1).long() - (lines == -3).any(dim=1).long()


def is_over(boards: torch.Tensor) -> torch.Tensor:
    """bool [B]: someone has won or the board is full."""
    return (winner(boards) != 0) | (boards != 0).all(dim=1)


def to_move(boards: torch.Tensor) -> torch.Tensor:
    """+1.0 where X is to move, -1.0 where O is: float32 [B]."""
    x_turn = (boards == 1).sum(dim=1) == (boards == -1).sum(dim=1)
    return torch.where(x_turn, 1.0, -1.0)


def play(boards: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """The boards after the player to move takes ``actions`` (int [B]); finished games stay as they
    are. Raises ValueError on an occupied cell of an unfinished game, on an action outside [0, 9)
    and on a board cell outside {-1, 0, 1}; nothing is changed then."""
    check_cells(boards, "boards", 9)
    actions = check_actions(actions, boards.shape[0], "actions").to(boards.device)
    rows = torch.arange(boards.shape[0], device=boards.device)
    live = ~is_over(boards)
    if bool((boards[rows, actions] != 0)[live].any()):
        raise ValueError("actions: expected empty cells for unfinished games")
    after = boards.clone()
    after[rows[live], actions[live]] = to_move(boards)[live]
    return after


def random_actions(boards: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A uniformly random empty cell per board (cell 0 on a full board): int64 [B]."""
    empty = (boards[:, :9] == 0).float()
    empty[empty.sum(dim=1) == 0, 0] = 1.0
    return torch.multinomial(empty, 1, generator=generator).reshape(-1)


def solve(board: Sequence[int], *, quickest: bool = False) -> tuple[int, tuple[int, ...]]:
    """The exact game value of a position and its optimal moves, by memoised negamax.

    Parameters
    ----------
    board : sequence of 9 ints
        A reachable absolute board (X = +1, O = -1, empty = 0, row-major): as many X as O (X to
        move) or one X more (O to move), and no line of the player to move. A list, tuple, numpy
        or torch vector.
    quickest : bool
        False: every move that keeps the game value is optimal (a slow forced win as much as a
        win on the spot). True: only those that win soonest or, in a lost position, lose latest,
        so a player takes a one-move win at once and blocks a one-move threat even when lost.

    Returns
    -------
    value : int
        +1 if the player to move wins with perfect play on both sides, 0 for a draw, -1 for a loss;
        a finished game is worth -1 if it was won (the player to move lost) and 0 if drawn.
    moves : tuple of int
        The optimal cells in increasing order; empty for a finished game.

    All 5478 reachable positions take about 0.1 s to solve the first time and are cached after.
    """
    cells = tuple(int(v) for v in board)
    if len(cells) != 9 or any(v not in (-1, 0, 1) for v in cells):
        raise ValueError(f"board: expected 9 cells in {{-1, 0, 1}}, got {cells}")
    xs, os_ = cells.count(1), cells.count(-1)
    if xs not in (os_, os_ + 1):
        raise ValueError(f"board: expected as many X as O or one more, got {xs} X and {os_} O")
    mover = 1 if xs == os_ else -1
    if has_line(cells, mover):
        raise ValueError(f"board: expected no line of the player to move ({mover:+d}), got {cells}")
    if has_line(cells):
        return -1, ()
    scores = {i: -_score(_child(cells, i, mover)) for i, v in enumerate(cells) if v == 0}
    if not scores:
        return 0, ()
    best = max(scores.values())
    key = (lambda score: score) if quickest else _sign
    return _sign(best), tuple(cell for cell, score in scores.items() if key(score) == key(best))


def _sign(score: int) -> int:
    return (score > 0) - (score < 0)


def has_line(cells, player: int | None = None) -> bool:
    """Whether ``player`` (+1 X, -1 O; None: either) has three in a line on ``cells`` (9 values)."""
    return any(cells[a] == cells[b] == cells[c] != 0 and (player is None or cells[a] == player)
               for a, b, c in LINE_CELLS)


def _child(cells: tuple[int, ...], cell: int, mover: int) -> tuple[int, ...]:
    return cells[:cell] + (mover,) + cells[cell + 1:]


@functools.cache
def _score(cells: tuple[int, ...]) -> int:
    """For the player to move, under perfect play: 10 - (pieces when the game is won) if they win,
    minus that if they lose, 0 for a draw. Its sign is the game value; its size tells sooner from
    later, which the exact value alone cannot."""
    pieces = 9 - cells.count(0)
    # Only the previous mover can have completed a line, so a line means the mover lost.
    if has_line(cells):
        return -(10 - pieces)
    if pieces == 9:
        return 0
    mover = 1 if cells.count(1) == cells.count(-1) else -1
    return max(-_score(_child(cells, i, mover)) for i, v in enumerate(cells) if v == 0)


def perfect_actions(boards: torch.Tensor, rng: random.Random | None = None) -> torch.Tensor:
    """A perfect player's move on every board: int64 [B] from absolute boards float32 [B, 9].

    With ``rng``, the move is uniform among the optimal ones (``rng.choice`` over them in
    increasing cell order, so a seeded ``random.Random`` reproduces the games); without, it is the
    lowest optimal cell. Finished boards get 0, like :func:`random_actions` on a full board.
    """
    moves = [solve(row)[1] for row in boards.tolist()]
    pick = (lambda m: m[0]) if rng is None else rng.choice
    return torch.tensor([pick(m) if m else 0 for m in moves], dtype=torch.int64)
