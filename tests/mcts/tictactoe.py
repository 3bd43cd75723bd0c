"""TicTacToe for the search tests: the package's batched simulator (``pymbrl.envs.tictactoe``)
checked against an independent plain-Python one, board helpers, and a per-root adapter that runs
the pure-Python reference search on TicTacToe.

Boards. An *absolute* board is 9 cells in row-major order with X = +1, O = -1, empty = 0; X moves
first, so X is to move when both have the same number of pieces. The search works on *embeddings*
instead: float32 [B, 10], cells 0..8 from the perspective of the player to move (+1 own piece,
-1 opponent's, 0 empty) and cell 9 a "game over" flag (1.0 once the game has ended).

The recurrent function (``recurrent_fn(embedding [B, 10], action int64 [B])``, the package's), for
the player to move:

* legal move (empty cell): place the piece; reward +1 if it completes a line, else 0;
* illegal move (occupied cell): an immediate loss, reward -1, board unchanged;
* discount -1 (zero-sum, the next value is the opponent's) while the game goes on, and 0 on the
  move that ends it (win, loss by illegal move, or a full board);
* after a terminal state everything is 0: reward 0, discount 0, value 0, and the embedding stays;
* value 0 for every state (no learned value: only the rewards guide the search);
* prior logits of the *next* state: 0 for empty cells and -inf for occupied ones (uniform over
  legal moves). At a finished game they are all 0 instead: a full board would otherwise have all
  -inf logits, whose softmax the MCTS spec leaves undefined (and nothing after the end matters).

Every output is exactly representable (0, +-1, -inf) and every row depends on its own input row
only, so batch slices and the pure-Python adapter (``reference_step``) give identical numbers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch

from pymbrl.envs import tictactoe as simulator
from pymbrl.mcts.reference import SearchResult, gumbel_muzero_search, muzero_search
from pymbrl.models import tictactoe as search_model

NUM_ACTIONS = 9
EMBEDDING_SIZE = 10
LINES: tuple[tuple[int, int, int], ...] = (
    (0, 1, 2), (3, 4, 5), (6, 7, 8),  # rows
    (0, 3, 6), (1, 4, 7), (2, 5, 8),  # columns
    (0, 4, 8), (2, 4, 6),             # diagonals
)

Board = tuple[int, ...]
"""An absolute board: 9 ints, X = +1, O = -1, empty = 0."""


# --------------------------------------------------------------------------------------------
# Plain-Python board helpers
# --------------------------------------------------------------------------------------------


def board_from_string(s: str) -> Board:
    """Parses 'X', 'O' and '.' (or '-', '_') cells in row-major order; whitespace is ignored.
    E.g. ``board_from_string("XX. / OO. / ...")`` (slashes are ignored as well)."""
    cells = [ch for ch in s if ch not in " \t\n/|"]
    mapping = {"X": 1, "x": 1, "O": -1, "o": -1, ".": 0, "-": 0, "_": 0}
    if len(cells) != 9:
        raise ValueError(f"a board has 9 cells, got {len(cells)} in {s!r}")
    return tuple(mapping[ch] for ch in cells)


def board_to_string(board: Sequence[int]) -> str:
    """Three rows of X / O / '.' separated by '/', the inverse of ``board_from_string``."""
    chars = {1: "X", -1: "O", 0: "."}
    cells = [chars[int(v)] for v in board]
    return "/".join("".join(cells[r * 3:r * 3 + 3]) for r in range(3))


def to_move(board: Sequence[int]) -> int:
    """+1 if X is to move on an absolute board, -1 if O is."""
    xs = sum(1 for v in board if v == 1)
    os_ = sum(1 for v in board if v == -1)
    if xs not in (os_, os_ + 1):
        raise ValueError(f"not a position of legal play: {board_to_string(board)}")
    return 1 if xs == os_ else -1


def winner(board: Any) -> Any:
    """+1 if the +1 pieces hold a line, -1 if the -1 pieces do, 0 otherwise.

    Works on one board (a sequence of 9 numbers -> int) and on a tensor [..., 9] (or [..., 10]
    embeddings; the flag is ignored) -> int64 tensor [...]. On absolute boards +1 means X won; on
    embeddings it means the player to move holds a line.
    """
    if isinstance(board, torch.Tensor):
        return simulator.winner(board.reshape(-1, board.shape[-1])).reshape(board.shape[:-1])
    for i, j, k in LINES:
        if board[i] != 0 and board[i] == board[j] == board[k]:
            return 1 if board[i] > 0 else -1
    return 0


def is_over(board: Sequence[int]) -> bool:
    """Someone holds a line or the board is full."""
    return winner(board) != 0 or all(v != 0 for v in board)


def legal_moves(board: Sequence[int]) -> list[int]:
    """Empty cells, in increasing order (none once the game is over)."""
    return [] if is_over(board) else [a for a in range(9) if board[a] == 0]


def play(board: Sequence[int], action: int) -> Board:
    """The absolute board after the player to move takes ``action`` (which must be legal)."""
    if board[action] != 0 or is_over(board):
        raise ValueError(f"illegal move {action} on {board_to_string(board)}")
    out = list(board)
    out[action] = to_move(board)
    return tuple(out)


def random_move(board: Sequence[int], rng: random.Random) -> int:
    """A uniformly random legal move (the random player)."""
    return rng.choice(legal_moves(board))


def winning_moves(board: Sequence[int]) -> list[int]:
    """The moves that win at once for the player to move."""
    return [a for a in legal_moves(board) if winner(play(board, a)) != 0]


def positions_with_one_move_win() -> list[tuple[Board, list[int]]]:
    """Every position reachable in legal play (game not over) where the player to move can win
    at once, with its winning moves; sorted for a deterministic order (a few thousand entries)."""
    seen: set[Board] = set()
    found: list[tuple[Board, list[int]]] = []
    stack: list[Board] = [(0,) * 9]
    while stack:
        board = stack.pop()
        if board in seen:
            continue
        seen.add(board)
        if is_over(board):
            continue
        wins = winning_moves(board)
        if wins:
            found.append((board, wins))
        for a in legal_moves(board):
            stack.append(play(board, a))
    found.sort()
    return found


# --------------------------------------------------------------------------------------------
# Batched torch simulator
# --------------------------------------------------------------------------------------------


def _as_board_tensor(boards: Any) -> torch.Tensor:
    """Absolute boards as float32 [B, 9] from a tensor [B, 9] or a sequence of 9-sequences."""
    t = boards if isinstance(boards, torch.Tensor) else torch.tensor([list(b) for b in boards])
    if t.dim() != 2 or t.shape[1] != 9:
        raise ValueError(f"boards must be [B, 9], got {tuple(t.shape)}")
    return t.to(torch.float32)


def root_inputs(boards: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Search roots for a batch of absolute boards, from the package's simulator
    (``pymbrl.models.tictactoe.search_root``): (prior_logits float32 [B, 9], value float32 [B]
    (zeros), embedding float32 [B, 10], invalid_actions bool [B, 9] (occupied cells)). A finished
    game has all-zero logits and no invalid action, so the search stays defined."""
    root, invalid = search_model.search_root(_as_board_tensor(boards))
    return root.prior_logits, root.value, root.embedding, invalid


# The batched simulator under test is the package's; the pure-Python adapter below is the
# independent implementation it is checked against.
recurrent_fn = search_model.recurrent_fn
random_legal_actions = simulator.random_actions


# --------------------------------------------------------------------------------------------
# Per-root adapter for the pure-Python reference search
# --------------------------------------------------------------------------------------------

Embedding = tuple[float, ...]
"""One pure-Python embedding: 10 floats, as one row of the torch embedding."""

_NEG_INF = float("-inf")


def reference_root(board: Sequence[int]) -> tuple[list[float], float, Embedding, list[bool]]:
    """Pure-Python ``root_inputs`` for one absolute board: (prior_logits [9], value, embedding [10],
    invalid_actions [9]); the same numbers as the batched version."""
    over = is_over(board)
    sign = to_move(board)
    own = tuple(float(v * sign) if v != 0 else 0.0 for v in board)
    logits = [0.0] * 9 if over else [0.0 if v == 0 else _NEG_INF for v in board]
    invalid = [False] * 9 if over else [v != 0 for v in board]
    return logits, 0.0, own + (1.0 if over else 0.0,), invalid


def reference_step(embedding: Embedding, action: int) -> tuple[float, float, list[float], float, Embedding]:
    """Pure-Python ``recurrent_fn`` for one game: the per-tree step function of pymbrl.mcts.reference."""
    cells = list(embedding[:9])
    if embedding[9] > 0.5:  # the game is already over
        return 0.0, 0.0, [0.0] * 9, 0.0, tuple(embedding)
    if cells[action] != 0.0:  # illegal move: immediate loss, board unchanged
        reward, over = -1.0, True
    else:
        cells[action] = 1.0
        reward = 1.0 if winner(cells) == 1 else 0.0
        over = reward == 1.0 or all(v != 0.0 for v in cells)
    next_cells = [0.0 if v == 0.0 else -v for v in cells]
    logits = [0.0] * 9 if over else [0.0 if v == 0.0 else _NEG_INF for v in next_cells]
    return reward, 0.0 if over else -1.0, logits, 0.0, tuple(next_cells) + (1.0 if over else 0.0,)


def reference_search(board: Sequence[int], num_simulations: int, *, algorithm: str = "muzero",
                     **search_kwargs: Any) -> SearchResult:
    """Runs the pure-Python reference search on one absolute board (``algorithm``: "muzero" or
    "gumbel_muzero"; ``search_kwargs`` go to the search function)."""
    logits, value, embedding, invalid = reference_root(board)
    search = {"muzero": muzero_search, "gumbel_muzero": gumbel_muzero_search}[algorithm]
    return search(reference_step, logits, value, embedding, num_simulations, invalid_actions=invalid,
                  **search_kwargs)
