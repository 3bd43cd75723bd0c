"""Batched TicTacToe as a perfect model for search: a two-player zero-sum example for
:mod:`pymbrl.mcts` and a known-answer test bed (a perfect searcher never loses).

Boards are float32 [B, 9] in row-major order with X = +1, O = -1, empty = 0; X moves first. The
search works on *embeddings* [B, 10]: the 9 cells from the point of view of the player to move
(+1 own piece, -1 the opponent's) and a game-over flag. :func:`recurrent_fn` follows the
two-player convention of :func:`pymbrl.mcts.muzero_policy`: the reward is the mover's, and the
discount is -1 while the game goes on (the next node's value is the opponent's) and 0 once it ends.

Example::

    from pymbrl import mcts
    from pymbrl.envs import tictactoe

    boards = tictactoe.new_boards(64)
    root, invalid = tictactoe.search_root(boards)
    out = mcts.muzero_policy(root, tictactoe.recurrent_fn, 200, invalid_actions=invalid,
                             dirichlet_fraction=0.0, temperature=0.0)
    boards = tictactoe.play(boards, out.action)

:func:`solve` gives the exact value and optimal moves of any position (memoised negamax) and
:func:`perfect_actions` a perfect player's moves on a batch of boards: the opponent against which
the best result is a draw. :mod:`pymbrl.envs.tictactoe_env` wraps the game as a gymnasium env.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence

import torch

from pymbrl._checks import ArgumentTypeError, integer
from pymbrl.mcts.tree import RecurrentOutput, Root

NUM_ACTIONS = 9
LINE_CELLS: tuple[tuple[int, int, int], ...] = (
    (0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
LINES = torch.tensor(LINE_CELLS)


MAX_ROWS = 1 << 22
"""The most boards one call allocates (a batch, or a batch times ``num_playouts``): 150 MB."""


def _check_rows(rows: int, name: str) -> int:
    if rows > MAX_ROWS:
        raise ValueError(f"{name}: expected at most {MAX_ROWS} boards in all, got {rows}")
    return rows


def _check_cells(cells: torch.Tensor, name: str, width: int) -> None:
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


def _check_actions(action: torch.Tensor, batch: int, name: str) -> torch.Tensor:
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
    return torch.zeros(_check_rows(integer(batch_size, "batch_size", minimum=0), "batch_size"), 9, device=device)


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
    _check_cells(boards, "boards", 9)
    actions = _check_actions(actions, boards.shape[0], "actions").to(boards.device)
    rows = torch.arange(boards.shape[0], device=boards.device)
    live = ~is_over(boards)
    if bool((boards[rows, actions] != 0)[live].any()):
        raise ValueError("actions: expected empty cells for unfinished games")
    after = boards.clone()
    after[rows[live], actions[live]] = to_move(boards)[live]
    return after


def _legal_logits(cells: torch.Tensor, over: torch.Tensor) -> torch.Tensor:
    # Uniform over empty cells; a finished game gets finite logits (a full board would otherwise
    # have no finite logit), and nothing after the end matters as discount is 0 there.
    logits = torch.where(cells == 0, 0.0, -torch.inf)
    return torch.where(over[:, None], 0.0, logits)


def search_root(boards: torch.Tensor) -> tuple[Root, torch.Tensor]:
    """The search root for each board and its invalid actions (occupied cells) bool [B, 9].

    The root value is 0 and the prior uniform over empty cells: the search alone plays.
    """
    own = torch.where(boards == 0, 0.0, boards * to_move(boards)[:, None])
    over = is_over(boards)
    embedding = torch.cat([own, over.float()[:, None]], dim=1)
    invalid = (boards != 0) & ~over[:, None]
    return Root(_legal_logits(own, over), torch.zeros(boards.shape[0], device=boards.device), embedding), invalid


def recurrent_fn(embedding: torch.Tensor, action: torch.Tensor) -> tuple[RecurrentOutput, torch.Tensor]:
    """One move in every game, for the player to move: float32 embedding [B, 10], action int [B].

    A legal move places the piece (reward +1 if it completes a line); an occupied cell loses at
    once (reward -1). The discount is -1 while the game goes on and 0 from its last move; after
    that everything is 0. Values are 0 (no learned evaluation).
    """
    _check_cells(embedding, "embedding", 10)
    cells, done = embedding[:, :9], embedding[:, 9] > 0.5
    rows = torch.arange(cells.shape[0], device=cells.device)
    action = _check_actions(action, cells.shape[0], "action").to(cells.device)
    legal = cells[rows, action] == 0
    place = legal & ~done
    after = cells.clone()
    after[rows[place], action[place]] = 1.0
    won = place & (winner(after) == 1)
    illegal = ~legal & ~done
    over = done | won | illegal | (after != 0).all(dim=1)
    reward = torch.where(won, 1.0, torch.where(illegal, -1.0, 0.0))
    discount = torch.where(over, 0.0, -1.0)
    next_cells = torch.where(done[:, None], cells, torch.where(after == 0, 0.0, -after))
    next_embedding = torch.cat([next_cells, over.float()[:, None]], dim=1)
    output = RecurrentOutput(reward, discount, _legal_logits(next_cells, over), torch.zeros_like(reward))
    return output, next_embedding


def playout_values(embedding: torch.Tensor, num_playouts: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The mean result of ``num_playouts`` uniformly random games from each position, for the
    player to move there (+1 win, 0 draw, -1 loss): float32 [B] from embeddings [B, 10]. Finished
    positions get 0, like :func:`recurrent_fn`'s values. ``B * num_playouts`` is at most
    :data:`MAX_ROWS`."""
    _check_cells(embedding, "embedding", 10)
    num_playouts = integer(num_playouts, "num_playouts")
    _check_rows(embedding.shape[0] * num_playouts, "num_playouts")
    cells = embedding[:, :9].repeat_interleave(num_playouts, dim=0).clone()
    done = (embedding[:, 9] > 0.5).repeat_interleave(num_playouts)
    result = torch.zeros(cells.shape[0], device=cells.device)
    mover = torch.ones(cells.shape[0], device=cells.device)  # +1: the player to move at the root
    rows = torch.arange(cells.shape[0], device=cells.device)
    for _ in range(9):
        live = ~done
        if not bool(live.any()):
            break
        move = random_actions(cells, generator)
        cells[rows[live], move[live]] = mover[live]
        won = winner(cells)
        result = torch.where(live & (won != 0), won.float(), result)
        done = done | (won != 0) | (cells != 0).all(dim=1)
        mover = -mover
    return result.view(-1, num_playouts).mean(dim=1)


def playout_recurrent_fn(num_playouts: int = 8, generator: torch.Generator | None = None):
    """:func:`recurrent_fn` with values estimated by random playouts (classic Monte Carlo tree
    search) instead of 0: a far stronger search for the same number of simulations. Seed
    ``generator`` for reproducible searches."""
    num_playouts = integer(num_playouts, "num_playouts")

    def fn(embedding: torch.Tensor, action: torch.Tensor) -> tuple[RecurrentOutput, torch.Tensor]:
        output, next_embedding = recurrent_fn(embedding, action)
        return output._replace(value=playout_values(next_embedding, num_playouts, generator)), next_embedding

    return fn


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
