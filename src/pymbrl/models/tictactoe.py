"""Batched TicTacToe as a perfect model for search: the rules of :mod:`pymbrl.envs.tictactoe` as
the recurrent function of :mod:`pymbrl.mcts`, a two-player zero-sum example and a known-answer test
bed (a perfect searcher never loses).

The search works on *embeddings* float32 [B, 10]: the 9 cells from the point of view of the player
to move (+1 own piece, -1 the opponent's) and a game-over flag. :func:`recurrent_fn` follows the
two-player convention of :func:`pymbrl.mcts.muzero_policy`: the reward is the mover's, and the
discount is -1 while the game goes on (the next node's value is the opponent's) and 0 once it ends.

Example::

    from pymbrl import mcts
    from pymbrl.envs import tictactoe
    from pymbrl.models import tictactoe as tictactoe_model

    boards = tictactoe.new_boards(64)
    root, invalid = tictactoe_model.search_root(boards)
    out = mcts.muzero_policy(root, tictactoe_model.recurrent_fn, 200, invalid_actions=invalid,
                             dirichlet_fraction=0.0, temperature=0.0)
    boards = tictactoe.play(boards, out.action)
"""

from __future__ import annotations

import torch

from pymbrl._checks import integer
from pymbrl.envs.tictactoe import check_actions, check_cells, check_rows, is_over, random_actions, to_move, winner
from pymbrl.mcts.tree import RecurrentOutput, Root


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
    check_cells(embedding, "embedding", 10)
    cells, done = embedding[:, :9], embedding[:, 9] > 0.5
    rows = torch.arange(cells.shape[0], device=cells.device)
    action = check_actions(action, cells.shape[0], "action").to(cells.device)
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
    :data:`pymbrl.envs.tictactoe.MAX_ROWS`."""
    check_cells(embedding, "embedding", 10)
    num_playouts = integer(num_playouts, "num_playouts")
    check_rows(embedding.shape[0] * num_playouts, "num_playouts")
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
        value = playout_values(next_embedding, num_playouts, generator)
        return RecurrentOutput(output.reward, output.discount, output.prior_logits, value), next_embedding

    return fn
