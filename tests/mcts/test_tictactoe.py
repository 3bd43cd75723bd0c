"""Playing strength on TicTacToe (a perfect simulator with discount -1, pymbrl.envs.tictactoe and pymbrl.models.tictactoe): the
search never loses to a random player and always takes a one-move win. Games and positions run as one
batch per move, as a user of the batched API would."""

from __future__ import annotations

import functools

import pytest
import torch

from pymbrl.envs import tictactoe as simulator
from pymbrl.mcts import Root, gumbel_muzero_policy, muzero_policy
from pymbrl.models import tictactoe as search_model

from . import tictactoe as ttt


@pytest.fixture(scope="module")
def one_move_wins():
    return ttt.positions_with_one_move_win()


def _search(algorithm, boards, num_simulations, **kwargs):
    logits, value, embedding, invalid = ttt.root_inputs(boards)
    root = Root(logits, value, embedding)
    if algorithm == "muzero":
        kwargs = dict(dict(dirichlet_fraction=0.0, temperature=0.0), **kwargs)
        out = muzero_policy(root, ttt.recurrent_fn, num_simulations, invalid_actions=invalid, **kwargs)
    else:
        kwargs = dict(dict(gumbel_scale=0.0), **kwargs)
        out = gumbel_muzero_policy(root, ttt.recurrent_fn, num_simulations, invalid_actions=invalid, **kwargs)
    assert not invalid[torch.arange(len(boards)), out.action].any()
    return out.action.tolist()


def _batched_games_against_random(policy, num_games, seed):
    """num_games games against a uniformly random player (torch generator seeded with ``seed``),
    the search X in the first half and O in the second, all advanced together with one batched
    search per ply. Returns the search's results (+1 win, 0 draw, -1 loss), float [num_games]."""
    generator = torch.Generator().manual_seed(seed)
    boards = simulator.new_boards(num_games)
    side = torch.where(torch.arange(num_games) < num_games // 2, 1.0, -1.0)
    for ply in range(9):
        if bool(simulator.is_over(boards).all()):
            break
        root, invalid = search_model.search_root(boards)
        searched = policy(root, invalid, ply)
        assert not invalid[torch.arange(num_games), searched].any()
        mine = simulator.to_move(boards) == side
        boards = simulator.play(boards, torch.where(mine, searched, simulator.random_actions(boards, generator)))
    return simulator.winner(boards).float() * side


def test_muzero_never_loses_to_a_random_player():
    """100 games at 200 simulations with random-playout values (classic MCTS on a perfect model),
    temperature 0 and no noise. (Measured: no loss in 500 such games; with values fixed at 0, the
    same search loses about 1 game in 100: value-free search does not see deep forks in time.)"""
    fn = search_model.playout_recurrent_fn(8, torch.Generator().manual_seed(0))

    def policy(root, invalid, ply):
        return muzero_policy(root, fn, 200, invalid_actions=invalid, dirichlet_fraction=0.0, temperature=0.0,
                             seed=ply).action

    results = _batched_games_against_random(policy, 100, seed=0)
    assert not bool((results < 0).any()), f"lost {int((results < 0).sum())} of 100 games"
    assert int((results > 0).sum()) >= 85  # a random player blunders; a search that only draws is broken


def test_gumbel_rarely_loses_to_a_random_player():
    """Gumbel MuZero spends its budget by sequential halving over the root's actions and chooses
    deterministically below: a policy-improvement search, tactically weaker than pUCT at equal
    budgets (measured with playout values at 200 simulations: 8 losses in 500 games, 471 wins)."""
    fn = search_model.playout_recurrent_fn(8, torch.Generator().manual_seed(0))

    def policy(root, invalid, ply):
        return gumbel_muzero_policy(root, fn, 200, invalid_actions=invalid, gumbel_scale=0.0, seed=ply).action

    results = _batched_games_against_random(policy, 100, seed=0)
    assert int((results < 0).sum()) <= 4 and int((results > 0).sum()) >= 85, results.tolist()


def test_tictactoe_searches_match_the_reference():
    """Two-player search (discount -1, -inf priors for occupied cells, terminal discount 0) on a
    few positions: the C++ search equals the pure-Python reference."""
    boards = [ttt.board_from_string(s) for s in ("X../.../...", "..X/.O./...", "XO./.X./...", "XO./.X./..O",
                                                 "X.O/XX./O..", "OX./.../...")]
    for algorithm, name in (("muzero", "muzero"), ("gumbel", "gumbel_muzero")):
        logits, value, embedding, invalid = ttt.root_inputs(boards)
        root = Root(logits, value, embedding)
        if algorithm == "muzero":
            out = muzero_policy(root, ttt.recurrent_fn, 60, invalid_actions=invalid, dirichlet_fraction=0.0,
                                temperature=0.0)
        else:
            out = gumbel_muzero_policy(root, ttt.recurrent_fn, 60, invalid_actions=invalid, gumbel_scale=0.0)
        summary = out.search_tree.summary()
        for b, board in enumerate(boards):
            ref = ttt.reference_search(board, 60, algorithm=name)
            assert summary.visit_counts[b].tolist() == ref.visit_counts
            assert int(out.action[b]) == ref.action
            assert summary.qvalues[b].tolist() == torch.tensor(ref.qvalues).float().tolist()


@pytest.mark.parametrize("num_simulations", [9, 16])
def test_muzero_takes_every_one_move_win(one_move_wins, num_simulations):
    boards = [board for board, _ in one_move_wins]
    actions = _search("muzero", boards, num_simulations)
    missed = [(ttt.board_to_string(b), w, a) for (b, w), a in zip(one_move_wins, actions) if a not in w]
    assert not missed, missed[:5]


def test_muzero_takes_one_move_wins_at_a_large_budget(one_move_wins):
    sample = one_move_wins[::40]
    actions = _search("muzero", [board for board, _ in sample], 200)
    assert all(a in wins for (_, wins), a in zip(sample, actions))


def test_muzero_takes_one_move_wins_with_noise_at_temperature_zero(one_move_wins):
    """Dirichlet noise changes where the simulations go, not that the win is found and chosen."""
    sample = one_move_wins[::5]
    actions = _search("muzero", [board for board, _ in sample], 32, dirichlet_fraction=0.25, seed=1)
    assert all(a in wins for (_, wins), a in zip(sample, actions))


def test_gumbel_without_noise_takes_every_one_move_win(one_move_wins):
    boards = [board for board, _ in one_move_wins]
    actions = _search("gumbel", boards, 16)
    missed = [(ttt.board_to_string(b), w, a) for (b, w), a in zip(one_move_wins, actions) if a not in w]
    assert not missed, missed[:5]


def test_gumbel_with_noise_mostly_takes_one_move_wins(one_move_wins):
    """With gumbel_scale 1 Gumbel MuZero samples: an immediate win's sigma lead (about
    (50 + max N) * 0.1 after rescaling) is overcome by the Gumbel noise now and then, and with a
    discount of -1 a forced win two moves later is worth as much as one now. So not every win is
    taken; at 8 simulations the immediate win's lead is largest and nearly every one is."""
    boards = [board for board, _ in one_move_wins]
    actions = _search("gumbel", boards, 8, gumbel_scale=1.0, seed=0)
    taken = sum(a in wins for (_, wins), a in zip(one_move_wins, actions))
    assert taken >= 0.97 * len(boards), (taken, len(boards))


@functools.lru_cache(maxsize=None)
def _random_play_value(board):
    """The exact expected result of uniformly random play from ``board`` for the player to move."""
    if ttt.is_over(board):
        return ttt.winner(board) * ttt.to_move(board) if ttt.winner(board) != 0 else 0.0
    moves = ttt.legal_moves(board)
    return sum(-_random_play_value(ttt.play(board, a)) for a in moves) / len(moves)


def test_playout_values_estimate_the_random_play_outcome_for_the_player_to_move():
    positions = ("XX./OO./...", "XX./X../OO.", "XOX/XOO/OX.", "X../.O./...", "........./"[:9])
    boards = [ttt.board_from_string(p) for p in positions]
    root, _ = search_model.search_root(torch.tensor(boards, dtype=torch.float32))
    values = search_model.playout_values(root.embedding, 4000, torch.Generator().manual_seed(0))
    for board, value in zip(boards, values.tolist()):
        # 4000 playouts of results in [-1, 1]: a standard error below 0.016.
        assert value == pytest.approx(_random_play_value(board), abs=0.06), ttt.board_to_string(board)
