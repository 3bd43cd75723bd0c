"""Sanity tests of the pure-Python MCTS reference (reference.py) and of the test models
(tictactoe.py, hash_model.py). They need torch only, not pymbrl.mcts: the reference must be
trustworthy before the C++ search is compared with it.

Hand-computed cases follow the spec in /tmp/mcts_spec.md (copied into the docstrings where used).
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from pymbrl.mcts.reference import (DBL_MIN, completed_sigma, considered_visits, considered_visits_table,
                                   gumbel_muzero_search, muzero_action_probabilities, muzero_search, portable_exp,
                                   run_reference_batch, softmax, step_from_recurrent_fn)

from . import tictactoe as ttt
from .hash_model import HashModel

# --------------------------------------------------------------------------------------------
# Small functions against hand-computed values
# --------------------------------------------------------------------------------------------


def test_softmax_over_a_subset_with_minus_inf():
    p = softmax([math.log(3.0), 0.0, -math.inf, 5.0], [True, True, True, False])
    # m = log 3; e = [1, 1/3, 0, (excluded)] -> [3/4, 1/4, 0, 0] up to rounding
    assert p[2] == 0.0 and p[3] == 0.0
    assert p == pytest.approx([0.75, 0.25, 0.0, 0.0], rel=1e-15)
    assert softmax([0.0, 0.0]) == [0.5, 0.5]
    # The sum runs left to right: identical to a hand-rolled loop.
    logits = [0.1, -1.7, 2.3, 0.4, -0.2]
    e = [portable_exp(v - 2.3) for v in logits]
    s = 0.0
    for v in e:
        s += v
    assert softmax(logits) == [v / s for v in e]


def test_portable_exp_is_within_two_ulp_of_exp():
    """The core's own exponential (reproduced here) must stay a faithful e^x on [-708, 0]."""
    rng = random.Random(0)
    for x in [0.0, -1e-300, -0.5, -1.0, -math.log(2) / 2, -20.0, -700.0, -708.0] + [rng.uniform(-708, 0) for _ in range(20000)]:
        got, want = portable_exp(x), math.exp(x)
        assert abs(got - want) <= 2 * math.ulp(want), x
    assert portable_exp(-708.5) == 0.0 and portable_exp(-math.inf) == 0.0


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_softmax_rejects_nan_and_plus_inf(bad):
    with pytest.raises(ValueError):
        softmax([0.0, bad])
    with pytest.raises(ValueError):
        softmax([-math.inf, -math.inf])  # undefined in the spec: no finite logit


def test_sequential_halving_tables_by_hand():
    # m = 16, S = 50: log2max = 4. k=16: extra=max(1,int(50/64))=1 -> sixteen 0s; k=8: int(50/32)=1
    # -> eight 1s; k=4: int(50/16)=3 -> 2,2,2,2 3,3,3,3 4,4,4,4; k=2: int(50/8)=6 -> 5,5 ... 10,10;
    # k=2 again: 11,11 -> 50 entries.
    expected = [0] * 16 + [1] * 8 + [2] * 4 + [3] * 4 + [4] * 4 + [v for v in range(5, 12) for _ in (0, 1)]
    assert len(expected) == 50
    assert considered_visits(16, 50) == expected
    # m = 4, S = 8: log2max = 2; k=4: extra=int(8/8)=1 -> 0,0,0,0; k=2: extra=int(8/4)=2 -> 1,1,2,2.
    assert considered_visits(4, 8) == [0, 0, 0, 0, 1, 1, 2, 2]
    # m = 3, S = 10: log2max = 2; k=3: extra=int(10/6)=1 -> 0,0,0; k=2: extra=2 -> 1,1,2,2; again 3,3,4,4.
    assert considered_visits(3, 10) == [0, 0, 0, 1, 1, 2, 2, 3, 3, 4]
    # m = 2, S = 5: log2max = 1; extra=int(5/2)=2 -> 0,0,1,1; again 2,2,3,3 -> cut to 5.
    assert considered_visits(2, 5) == [0, 0, 1, 1, 2]
    # m <= 1: every simulation goes to the single action.
    assert considered_visits(1, 4) == [0, 1, 2, 3] == considered_visits(0, 4)
    table = considered_visits_table(16, 50)
    assert len(table) == 17 and table[16] == expected and table[4] == considered_visits(4, 50)


def test_completed_sigma_by_hand():
    # P = [1/2, 1/4, 1/4], N = [2, 0, 1], Q = [0.2, (unused), -0.4], v = 0.1, all considered.
    # sum_n = 3, sum_p = 3/4, weighted_q = (0.5*0.2 - 0.25*0.4)/0.75 = 0 (up to rounding),
    # mixed = (0.1 + 3*0)/4 = 0.025; completed = [0.2, 0.025, -0.4]; lo=-0.4, hi=0.2;
    # rescaled = [1, 0.425/0.6, 0]; scale = (50 + maxn=2) * 0.1 = 5.2.
    sigma = completed_sigma([0.5, 0.25, 0.25], [2, 0, 1], [0.2, 123.0, -0.4], 0.1, [True] * 3, 0.1, 50.0)
    assert sigma == pytest.approx([5.2, 5.2 * 0.425 / 0.6, 0.0], rel=1e-12, abs=1e-12)
    # Nothing visited: every action gets the raw value -> all equal -> resc = 0 -> sigma = 0.
    assert completed_sigma([0.3, 0.7], [0, 0], [0.0, 0.0], 0.4, [True, True], 0.1, 50.0) == [0.0, 0.0]
    # A visited action with prior 0 still weighs DBL_MIN (not 0/0): it alone decides weighted_q.
    s = completed_sigma([0.0, 1.0], [1, 0], [1.0, 0.0], 0.0, [True, True], 0.1, 50.0)
    # sum_p = DBL_MIN, weighted_q = DBL_MIN*1/DBL_MIN = 1, mixed = (0 + 1)/2 = 0.5; comp = [1, 0.5]
    assert DBL_MIN > 0 and s == [(50 + 1) * 0.1 * 1.0, 0.0]
    # Not considered -> NaN (never to be read); the set's extremes come from considered actions only.
    s = completed_sigma([0.5, 0.5, 0.0], [1, 1, 0], [1.0, 3.0, 0.0], 0.0, [True, True, False], 1.0, 0.0)
    assert s[:2] == [0.0, 1.0] and math.isnan(s[2])


def test_muzero_temperature_distribution():
    assert muzero_action_probabilities([1, 3, 0, 3], 1.0) == pytest.approx([1 / 7, 3 / 7, 0.0, 3 / 7])
    p = muzero_action_probabilities([1, 2, 4], 0.5, valid=[True, True, False])  # (N/2)^2 -> [1/4, 1]
    assert p == pytest.approx([0.2, 0.8, 0.0])


# --------------------------------------------------------------------------------------------
# Whole searches small enough to follow by hand
# --------------------------------------------------------------------------------------------


def _two_arm_step(rewards, values, discount):
    """step() of a 2-action model whose outputs depend on the action only (embedding unused)."""
    def step(embedding, action):
        return rewards[action], discount, [0.0, 0.0], values[action], ("after", action)
    return step


def test_muzero_three_simulations_by_hand():
    # Rewards r = [0, 1], discount 0, values 0, uniform priors.
    # sim 1: nothing visited, equal u -> action 0 (lowest index); node 1; minmax {0}; root W=0, n=2.
    # sim 2: hi == lo so q = 0; u1 = cs*0.5/1 > u0 = cs*0.5/2 -> action 1; node 2; minmax [0, 1]; W=1, n=3.
    # sim 3: q0 = 0, q1 = 1, equal u -> action 1; at node 2 both unvisited -> action 0 -> node 3
    #        (reward 0). Backup: G = 0 -> node 2: W=0, n=2 -> root: G = 1 + 0*0 = 1, W=2, n=4.
    result = muzero_search(_two_arm_step([0.0, 1.0], [0.0, 0.0], 0.0), [0.0, 0.0], 0.0, "root", 3)
    tree = result.tree
    assert result.visit_counts == [1, 2]
    assert result.qvalues == [0.0, 1.0]
    assert result.value == 0.5
    assert result.action == 1
    assert result.action_weights == [1 / 3, 2 / 3]
    assert [(nd.parent, nd.action) for nd in tree.nodes] == [(-1, -1), (0, 0), (0, 1), (2, 0)]
    assert tree.nodes[3].embedding == ("after", 0)
    assert (tree.nodes[0].visits, tree.nodes[2].visits) == (4, 2)
    assert (tree.lo, tree.hi) == (0.0, 1.0)


@pytest.mark.parametrize("num_simulations, expected", [(13, [1, 12]), (14, [1, 13]), (15, [2, 13]), (16, [2, 14])])
def test_muzero_depth_one_bandit_switches_where_the_formula_says(num_simulations, expected):
    # max_depth 1: every simulation ends at a root child; a revisit keeps the child's mean, so
    # Q = [0 + 1*0.5, 1 + 1*0] = [0.5, 1.0] for good and, after both are seen, q-normalised [0, 1].
    # Simulation k (k >= 3, root N = k, N0 = 1, N1 = k - 2) picks 0 iff
    #   cs/4 > 1 + cs/(2(k-1)),  cs = (1.25 + log((k + 19653)/19652)) * sqrt(k):
    # k=14: 1.16998 < 1.17999 (action 1); k=15: 1.21110 > 1.17301 (action 0, its second visit).
    # Using the sum of child visits (k - 1) instead of n_x = k would move the switch to k = 16.
    step = _two_arm_step([0.0, 1.0], [0.5, 0.0], 1.0)
    result = muzero_search(step, [0.0, 0.0], 0.0, None, num_simulations, max_depth=1)
    assert result.visit_counts == expected
    assert result.qvalues == [0.5, 1.0]
    assert len(result.tree.nodes) == 3  # the depth limit stops expansion below the root's children
    # Root value: W = v_root (0) + 0.5 (first visit of action 0) + each later visit of 0 adds 0.5,
    # each visit of 1 adds 1.0.
    assert result.value == (0.5 * expected[0] + 1.0 * expected[1]) / (1 + num_simulations)


def test_gumbel_with_as_many_simulations_as_actions_picks_the_best_completed_q():
    # gumbel_scale 0 and uniform logits: the first round visits every action once (target 0), so
    # afterwards completed Q = Q and the final score is sigma, monotone in Q -> argmax Q.
    num_actions = 6
    for seed in range(10):
        model = HashModel(num_actions, seed=seed)
        _, value, embedding = model.roots(1, seed=seed)
        step = step_from_recurrent_fn(model)
        result = gumbel_muzero_search(step, [0.0] * num_actions, float(value[0]), embedding, num_actions)
        assert result.visit_counts == [1] * num_actions
        q = result.qvalues
        assert result.action == max(range(num_actions), key=lambda a: (q[a], -a))


def test_gumbel_sequential_halving_keeps_the_two_best_with_a_depth_limit():
    # A = 4, S = 8: table [0,0,0,0,1,1,2,2]. With max_depth 1 each child's Q never changes, so the
    # halving keeps the two best-Q actions: visits 3, 3 for them and 1, 1 for the others.
    for seed in range(10):
        model = HashModel(4, seed=seed)
        _, value, embedding = model.roots(1, seed=seed)
        result = gumbel_muzero_search(step_from_recurrent_fn(model), [0.0] * 4, float(value[0]), embedding, 8,
                                      max_depth=1)
        order = sorted(range(4), key=lambda a: (-result.qvalues[a], a))
        assert [result.visit_counts[a] for a in order] == [3, 3, 1, 1]
        assert result.action == order[0]
        assert sum(result.action_weights) == pytest.approx(1.0)


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel_muzero"])
def test_bookkeeping_invariants(algorithm):
    """Root n = 1 + S, visits sum to S, invalid actions untouched, node ids in parent order,
    depth limit respected, value and Q recomputable from the tree."""
    num_actions, num_simulations = 5, 40
    model = HashModel(num_actions, seed=3, neg_inf_prob=0.3)
    logits, value, embedding = model.roots(6, seed=1)
    invalid = torch.zeros(6, num_actions, dtype=torch.bool)
    invalid[1, [0, 3]] = True
    invalid[2, 1:] = True  # a single valid action
    for max_depth in (None, 2):
        batch = run_reference_batch(model, logits, value, embedding, num_simulations, algorithm=algorithm,
                                    invalid_actions=invalid, max_depth=max_depth)
        assert batch.visit_counts.sum(dim=1).tolist() == [num_simulations] * 6
        assert (batch.visit_counts[invalid] == 0).all() and (batch.action_weights[invalid] == 0).all()
        assert batch.action_weights.sum(dim=1).tolist() == pytest.approx([1.0] * 6)
        assert not invalid[torch.arange(6), batch.action].any()
        for root in batch.roots:
            tree = root.tree
            assert tree.nodes[0].visits == 1 + num_simulations
            assert root.value == tree.nodes[0].value_sum / tree.nodes[0].visits
            for x, node in enumerate(tree.nodes[1:], start=1):
                assert node.parent < x and tree.nodes[node.parent].children[node.action] == x
                depth = 0
                while x != 0:
                    x, depth = tree.nodes[x].parent, depth + 1
                assert max_depth is None or depth <= max_depth
            for a in range(num_actions):
                if root.visit_counts[a] == 0:
                    assert root.qvalues[a] == 0.0
        assert batch.visit_counts[2].tolist() == [num_simulations, 0, 0, 0, 0]


# --------------------------------------------------------------------------------------------
# Test models: row independence and adapters
# --------------------------------------------------------------------------------------------


def test_hash_model_rows_do_not_depend_on_the_batch():
    model = HashModel(7, embedding_dim=5, seed=11, neg_inf_prob=0.4)
    logits, _, embedding = model.roots(16, seed=2)
    assert torch.isfinite(logits).any(dim=1).all() and torch.isinf(logits).any()
    action = torch.arange(16) % 7
    out, nxt = model(embedding, action)
    for b in range(16):
        o1, n1 = model(embedding[b:b + 1], action[b:b + 1])
        for full, one in zip(out, o1):
            assert torch.equal(full[b:b + 1], one)
        assert torch.equal(nxt[b:b + 1], n1)
    # Deterministic, and sensitive to both the embedding and the action.
    again, _ = model(embedding, action)
    assert torch.equal(again.prior_logits, out.prior_logits)
    other, _ = model(embedding, (action + 1) % 7)
    assert not torch.equal(other.reward, out.reward)
    assert (out.discount >= 0.5).all() and (out.discount < 1.0).all()


def test_batch_helper_equals_per_root_searches():
    model = HashModel(4, seed=5)
    logits, value, embedding = model.roots(3, seed=9)
    batch = run_reference_batch(model, logits, value, embedding, 20, algorithm="muzero")
    step = step_from_recurrent_fn(model)
    for b in range(3):
        single = muzero_search(step, logits[b].tolist(), float(value[b]), embedding[b:b + 1], 20)
        assert single.visit_counts == batch.visit_counts[b].tolist()
        assert single.qvalues == batch.qvalues[b].tolist() and single.value == float(batch.value[b])
        assert single.action == int(batch.action[b])


def _random_positions(count: int, seed: int) -> list[tuple[int, ...]]:
    """Positions of random legal play (finished games included)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        board = (0,) * 9
        for _ in range(rng.randrange(10)):
            if ttt.is_over(board):
                break
            board = ttt.play(board, ttt.random_move(board, rng))
        out.append(board)
    return out


def test_tictactoe_torch_and_python_steps_agree():
    boards = _random_positions(60, seed=0)
    logits, value, embedding, invalid = ttt.root_inputs(boards)
    for b, board in enumerate(boards):
        l_ref, v_ref, e_ref, i_ref = ttt.reference_root(board)
        assert logits[b].tolist() == l_ref and float(value[b]) == v_ref
        assert tuple(embedding[b].tolist()) == e_ref and invalid[b].tolist() == i_ref
    for action in range(9):  # every action, legal or not, from live and finished games
        out, nxt = ttt.recurrent_fn(embedding, torch.full((len(boards),), action))
        for b in range(len(boards)):
            r, d, lg, v, e = ttt.reference_step(tuple(embedding[b].tolist()), action)
            got = (float(out.reward[b]), float(out.discount[b]), out.prior_logits[b].tolist(), float(out.value[b]))
            assert got == (r, d, lg, v) and tuple(nxt[b].tolist()) == e
            # No -0.0 anywhere in embeddings (they may be hashed or compared bitwise).
            assert all(math.copysign(1.0, x) > 0 for x in nxt[b].tolist() if x == 0.0)


def test_tictactoe_rules_by_hand():
    win = ttt.board_from_string("XX./OO./...")  # X to move, 2 wins
    logits, _, emb, invalid = ttt.root_inputs([win])
    assert invalid[0].tolist() == [True, True, False, True, True, False, False, False, False]
    assert logits[0, 2] == 0.0 and logits[0, 0] == -math.inf
    out, nxt = ttt.recurrent_fn(emb, torch.tensor([2]))
    assert (out.reward.item(), out.discount.item(), out.value.item(), nxt[0, 9].item()) == (1.0, 0.0, 0.0, 1.0)
    assert out.prior_logits[0].tolist() == [0.0] * 9  # game over: all-zero logits (see module doc)
    # After the end: all zeros, embedding unchanged.
    out2, nxt2 = ttt.recurrent_fn(nxt, torch.tensor([8]))
    assert (out2.reward.item(), out2.discount.item()) == (0.0, 0.0) and torch.equal(nxt2, nxt)
    # Quiet move: discount -1, flipped perspective (the mover's X pieces become -1 for O).
    out, nxt = ttt.recurrent_fn(emb, torch.tensor([8]))
    assert (out.reward.item(), out.discount.item(), nxt[0, 9].item()) == (0.0, -1.0, 0.0)
    assert nxt[0, :9].tolist() == [-1, -1, 0, 1, 1, 0, 0, 0, -1]
    # Illegal move: immediate loss for the mover.
    out, nxt = ttt.recurrent_fn(emb, torch.tensor([0]))
    assert (out.reward.item(), out.discount.item(), nxt[0, 9].item()) == (-1.0, 0.0, 1.0)
    # Draw on the last cell: reward 0, discount 0.
    draw = ttt.board_from_string("XOX/XOO/OX.")
    _, _, emb, _ = ttt.root_inputs([draw])
    out, nxt = ttt.recurrent_fn(emb, torch.tensor([8]))
    assert (out.reward.item(), out.discount.item(), nxt[0, 9].item()) == (0.0, 0.0, 1.0)
    # winner() on single boards and on tensors; O to move is read off the piece counts.
    assert ttt.winner(ttt.board_from_string("OOO/XX./X..")) == -1
    assert ttt.winner(torch.tensor([win, ttt.board_from_string("XXX/OO./...")])).tolist() == [0, 1]
    assert ttt.to_move(ttt.board_from_string("X../.../...")) == -1
    actions = ttt.random_legal_actions(emb.repeat(50, 1), torch.Generator().manual_seed(0))
    assert (actions == 8).all()


def test_tictactoe_reference_search_batched_equals_pure_python():
    """run_reference_batch through the torch simulator == reference_search through reference_step."""
    boards = [b for b in _random_positions(12, seed=1) if not ttt.is_over(b)][:4]
    logits, value, embedding, invalid = ttt.root_inputs(boards)
    for algorithm in ("muzero", "gumbel_muzero"):
        batch = run_reference_batch(ttt.recurrent_fn, logits, value, embedding, 30, algorithm=algorithm,
                                    invalid_actions=invalid)
        for b, board in enumerate(boards):
            ref = ttt.reference_search(board, 30, algorithm=algorithm)
            assert batch.visit_counts[b].tolist() == ref.visit_counts
            assert batch.qvalues[b].tolist() == ref.qvalues and float(batch.value[b]) == ref.value
            assert batch.action_weights[b].tolist() == ref.action_weights and int(batch.action[b]) == ref.action


# --------------------------------------------------------------------------------------------
# Playing strength: a correct search never loses TicTacToe to a random player
# --------------------------------------------------------------------------------------------


def _play_against_random(search_player: int, seed: int, num_simulations: int, algorithm: str) -> int:
    """One game, reference search (temperature 0, no noise) vs a seeded random player; returns
    +1 / 0 / -1 from the search player's point of view."""
    rng = random.Random(seed)
    board = (0,) * 9
    while not ttt.is_over(board):
        if ttt.to_move(board) == search_player:
            action = ttt.reference_search(board, num_simulations, algorithm=algorithm).action
        else:
            action = ttt.random_move(board, rng)
        board = ttt.play(board, action)
    return ttt.winner(board) * search_player


@pytest.mark.parametrize("algorithm", ["muzero", "gumbel_muzero"])
@pytest.mark.parametrize("search_player", [1, -1], ids=["as_X", "as_O"])
def test_search_never_loses_to_a_random_player(algorithm, search_player):
    results = [_play_against_random(search_player, seed, 200, algorithm) for seed in range(24)]
    assert -1 not in results
    assert results.count(1) >= 12  # and it mostly wins: random players blunder


def test_muzero_takes_every_one_move_win():
    positions = ttt.positions_with_one_move_win()
    assert len(positions) > 2000
    # All positions at a small budget (enough: at most 5 legal moves there) ...
    for board, wins in positions:
        assert ttt.reference_search(board, 16).action in wins, ttt.board_to_string(board)
    # ... and a spread-out sample at the budget of the games.
    for board, wins in positions[::40]:
        assert ttt.reference_search(board, 200).action in wins, ttt.board_to_string(board)


def test_gumbel_takes_one_move_wins():
    # Every third position keeps the file fast (the Gumbel interior rule costs more per step).
    for board, wins in ttt.positions_with_one_move_win()[::3]:
        assert ttt.reference_search(board, 16, algorithm="gumbel_muzero").action in wins, ttt.board_to_string(board)
