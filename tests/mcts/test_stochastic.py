"""stochastic_muzero_policy: outputs, determinism, the two embedding pools, arguments refused with
the argument named (a reused tree unchanged), and a game where planning through the chance outcomes
is what finds the best action."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pymbrl import _core
from pymbrl.mcts import (
    ChanceOutput,
    DecisionOutput,
    RecurrentOutput,
    Root,
    StochasticSearchTree,
    muzero_policy,
    stochastic_muzero_policy,
)

from .helpers import assert_same_output
from .stochastic_helpers import AFTERSTATE_DIM, StochasticHashModel


def _model(A=3, C=5, seed=0, **kwargs):
    return StochasticHashModel(A, C, seed, **kwargs)


@pytest.mark.parametrize("A, C", [(3, 5), (6, 2), (4, 4), (2, 1)])
def test_outputs_have_the_documented_shapes_and_dtypes(A, C):
    B, S = 6, 17
    model = _model(A, C)
    logits, value, embedding = model.roots(B)
    out = model.search(logits, value, embedding, S, dirichlet_fraction=0.25, temperature=1.0, seed=1)
    assert out.action.dtype == torch.int64 and out.action.shape == (B,)
    assert out.action_weights.dtype == torch.float32 and out.action_weights.shape == (B, A)
    assert isinstance(out.search_tree, StochasticSearchTree)
    summary = out.search_tree.summary()
    assert summary.visit_counts.dtype == torch.int64 and summary.visit_counts.shape == (B, A)
    assert summary.visit_probs.dtype == torch.float32 and summary.visit_probs.shape == (B, A)
    assert summary.qvalues.dtype == torch.float32 and summary.qvalues.shape == (B, A)
    assert summary.value.dtype == torch.float32 and summary.value.shape == (B,)
    assert summary.visit_counts.sum(dim=1).tolist() == [S] * B
    assert torch.allclose(out.action_weights, summary.visit_probs)
    assert ((0 <= out.action) & (out.action < A)).all()
    tree = out.search_tree
    assert (tree.batch_size, tree.num_actions, tree.num_chance_outcomes, tree.capacity) == (B, A, C, S + 1)
    assert tree.core_seconds > 0.0
    assert tree.num_nodes.tolist() == [S + 1] * B
    kinds = tree.chance_nodes(0)
    assert kinds.dtype == bool and not kinds[0] and kinds.any()
    assert tree.embeddings.rows.shape == ((S + 2) * B, 4)
    assert tree.afterstate_embeddings.rows.shape == ((S + 2) * B, AFTERSTATE_DIM)


def test_the_same_seed_gives_the_same_search_and_another_seed_other_noise():
    model = _model()
    logits, value, embedding = model.roots(16)
    noisy = dict(dirichlet_fraction=0.25, temperature=1.0)
    a = model.search(logits, value, embedding, 30, seed=7, **noisy)
    b = model.search(logits, value, embedding, 30, seed=7, **noisy)
    c = model.search(logits, value, embedding, 30, seed=8, **noisy)
    assert_same_output(a, b)
    assert not torch.equal(a.search_tree.summary().visit_counts, c.search_tree.summary().visit_counts)


def test_threads_do_not_change_a_noisy_search():
    model = _model(4, 3)
    logits, value, embedding = model.roots(40)
    runs = [model.search(logits, value, embedding, 15, dirichlet_fraction=0.25, temperature=1.0, seed=2,
                         num_threads=t) for t in (1, 3)]
    assert runs[1].search_tree.num_threads == 3
    assert_same_output(runs[0], runs[1])


def test_max_depth_counts_chance_edges():
    """max_depth 1 reaches only the afterstates below the root: chance_recurrent_fn is never needed."""
    model = _model()
    logits, value, embedding = model.roots(4)
    out = model.search(logits, value, embedding, 20, max_depth=1)
    assert model.chance_calls == []
    assert (out.search_tree.num_nodes <= 4).all()  # the root and at most its 3 afterstates
    assert all(out.search_tree.chance_nodes(b)[1:].all() for b in range(4))
    assert out.search_tree.summary().visit_counts.sum(dim=1).tolist() == [20] * 4


class _StructuredModel:
    """States are dicts of an int64 code and a float64 feature; afterstates a tuple of a float16
    tensor and an int32 tensor: the pools keep each leaf's dtype and device."""

    def __init__(self, device):
        self.device = device
        self.model = _model(3, 2)

    def decision_fn(self, state, action):
        assert set(state) == {"code", "feature"} and state["code"].dtype == torch.int64
        assert state["feature"].dtype == torch.float64 and state["code"].device == self.device
        assert action.device == self.device
        out, _ = self.model.decision(state["feature"].float(), action)
        after = (state["feature"].half() + action[:, None].half(), (state["code"] * 3 + action[:, None]).int())
        return DecisionOutput(out.prior_logits, out.value), after

    def chance_fn(self, afterstate, outcome):
        feature, code = afterstate
        assert feature.dtype == torch.float16 and code.dtype == torch.int32 and feature.device == self.device
        out, _ = self.model.chance(feature.float(), outcome)
        state = {"code": code.long() * 2 + outcome[:, None], "feature": feature.double() - outcome[:, None]}
        assert state["code"].shape == (outcome.shape[0], 1)
        return ChanceOutput(out.reward, out.discount, out.prior_logits, out.value), state


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_structured_embeddings_stay_on_their_device_with_their_dtypes(device):
    device = torch.device(device)
    m = _StructuredModel(device)
    B = 5
    logits, value, _ = m.model.roots(B)
    state = {"code": torch.arange(B, device=device)[:, None], "feature": torch.zeros(B, 2, dtype=torch.float64,
                                                                                      device=device)}
    out = stochastic_muzero_policy(Root(logits.to(device), value.to(device), state), m.decision_fn, m.chance_fn, 12,
                                   num_chance_outcomes=2, seed=0)
    assert out.action.device.type == device.type and out.action_weights.device.type == device.type
    pools = out.search_tree.embeddings.rows, out.search_tree.afterstate_embeddings.rows
    assert pools[0]["code"].dtype == torch.int64 and pools[0]["feature"].dtype == torch.float64
    assert pools[1][0].dtype == torch.float16 and pools[1][1].dtype == torch.int32
    assert all(t.device.type == device.type for t in (*pools[0].values(), *pools[1]))
    # The same search on the CPU gives the same tree.
    if device.type != "cpu":
        cpu = _StructuredModel(torch.device("cpu"))
        ref = stochastic_muzero_policy(Root(logits, value, {k: v.cpu() for k, v in state.items()}), cpu.decision_fn,
                                       cpu.chance_fn, 12, num_chance_outcomes=2, seed=0)
        assert torch.equal(ref.search_tree.summary().visit_counts, out.search_tree.summary().visit_counts.cpu())


def test_numpy_roots_and_outputs_are_accepted():
    model = _model(3, 2)
    logits, value, embedding = model.roots(3)

    def decision_fn(state, action):
        out, after = model.decision_fn(state, action)
        return DecisionOutput(out.chance_logits.double().numpy(), out.afterstate_value.numpy()), after.numpy()

    out = stochastic_muzero_policy(Root(logits.numpy(), value.numpy(), embedding.numpy()), decision_fn,
                                   model.chance_fn, 10, num_chance_outcomes=2, dirichlet_fraction=0.0,
                                   temperature=0.0)
    ref = _model(3, 2).search(logits, value, embedding, 10)
    assert_same_output(out, ref)


# ---- refused inputs ---------------------------------------------------------------------------------


def _bad_fn(model, kind, field, value):
    """(decision_fn, chance_fn) of model with one output field replaced by value(original)."""
    def decision_fn(state, action):
        out, after = model.decision_fn(state, action)
        return (out._replace(**{field: value(getattr(out, field))}) if kind == "decision" else out), after

    def chance_fn(afterstate, outcome):
        out, state = model.chance_fn(afterstate, outcome)
        return (out._replace(**{field: value(getattr(out, field))}) if kind == "chance" else out), state

    return decision_fn, chance_fn


def _set(row, col, x):
    def change(t):
        t = t.clone()
        t[(row, col) if col is not None else row] = x
        return t
    return change


@pytest.mark.parametrize("kind, field, change, match", [
    ("decision", "chance_logits", lambda t: t[:, :-1],
     r"decision_recurrent_fn output chance_logits: expected shape \(\d+, 5\), got \(\d+, 4\)"),
    ("decision", "chance_logits", lambda t: t[:, 0], r"chance_logits: expected shape \(\d+, 5\)"),
    ("decision", "chance_logits", _set(0, 2, math.nan),
     r"chance_logits: expected no NaN or \+inf, got nan at row\(s\) \[0\] \(root\(s\) \[0\]\), outcome 2"),
    ("decision", "chance_logits", lambda t: torch.full_like(t, -math.inf),
     r"chance_logits: expected a finite logit in every row"),
    ("decision", "afterstate_value", _set(1, None, math.inf),
     r"decision_recurrent_fn output afterstate_value: expected finite numbers .* "
     r"at row\(s\) \[1\] \(root\(s\) \[1\]\)"),
    ("decision", "afterstate_value", lambda t: t[:-1], r"afterstate_value: expected shape"),
    ("chance", "prior_logits", lambda t: torch.cat([t, t[:, :1]], dim=1),
     r"chance_recurrent_fn output prior_logits: expected shape \(\d+, 3\)"),
    ("chance", "prior_logits", _set(0, 1, math.inf), r"prior_logits: expected no NaN or \+inf, got inf .* action 1"),
    ("chance", "reward", _set(0, None, math.nan), r"chance_recurrent_fn output reward: expected finite"),
    ("chance", "reward", lambda t: t.double() * 0 + 2.0**65,
     r"reward: expected finite numbers with \|reward\| <= 2\*\*64"),
    ("chance", "discount", _set(0, None, 1.5), r"discount: expected finite numbers with \|discount\| <= 1"),
    ("chance", "value", _set(0, None, -math.inf), r"chance_recurrent_fn output value: expected finite"),
    ("chance", "value", lambda t: t.to(torch.int64), None),  # integer values are numbers: accepted
])
def test_bad_model_outputs_are_refused_naming_the_field(kind, field, change, match):
    model = _model(3, 5)
    logits, value, embedding = model.roots(4)
    decision_fn, chance_fn = _bad_fn(model, kind, field, change)
    root = Root(logits, value, embedding)
    if match is None:
        stochastic_muzero_policy(root, decision_fn, chance_fn, 20, num_chance_outcomes=5, seed=0)
        return
    with pytest.raises(ValueError, match=match):
        stochastic_muzero_policy(root, decision_fn, chance_fn, 20, num_chance_outcomes=5, seed=0)


def test_functions_returning_the_wrong_records_are_refused():
    model = _model(3, 2)
    logits, value, embedding = model.roots(2)
    root = Root(logits, value, embedding)

    def muzero_style(state, action):
        return RecurrentOutput(value[: len(action)], value[: len(action)], logits[: len(action)],
                               value[: len(action)]), state

    with pytest.raises(TypeError, match=r"decision_recurrent_fn: expected \(DecisionOutput\(chance_logits, "
                                        r"afterstate_value\), next_embedding\)"):
        stochastic_muzero_policy(root, muzero_style, model.chance_fn, 5, num_chance_outcomes=2)
    with pytest.raises(TypeError, match=r"chance_recurrent_fn: expected to return \(ChanceOutput, next_embedding\)"):
        stochastic_muzero_policy(root, model.decision_fn, lambda a, o: None, 5, num_chance_outcomes=2)

    def wrong_state(afterstate, outcome):
        out, state = model.chance_fn(afterstate, outcome)
        return out, state[:, :2]

    with pytest.raises(ValueError, match=r"chance_recurrent_fn: expected next embedding leaves of shape \(\d+, 4\)"):
        stochastic_muzero_policy(root, model.decision_fn, wrong_state, 5, num_chance_outcomes=2)


@pytest.mark.parametrize("bad, error, match", [
    (0, ValueError, r"num_chance_outcomes: expected an integer >= 1, got 0"),
    (-3, ValueError, r"num_chance_outcomes: expected an integer >= 1"),
    (2.0, TypeError, r"num_chance_outcomes: expected an integer, got float"),
    (True, TypeError, r"num_chance_outcomes: expected an integer, got bool"),
    (2**24 + 1, ValueError, r"num_chance_outcomes: expected an integer in \[1, 16777216\]"),
    (None, TypeError, r"num_chance_outcomes: expected an integer, got NoneType"),
])
def test_bad_num_chance_outcomes_is_refused(bad, error, match):
    model = _model(3, 2)
    logits, value, embedding = model.roots(2)
    with pytest.raises(error, match=match):
        stochastic_muzero_policy(Root(logits, value, embedding), model.decision_fn, model.chance_fn, 5,
                                 num_chance_outcomes=bad)
    assert model.decision_calls == []


def test_core_refuses_bad_shapes_before_allocating():
    with pytest.raises(ValueError, match="num_chance_outcomes"):
        _core.mcts.StochasticSearch(2, 3, 0, 10)
    with pytest.raises(ValueError, match=r"capacity: expected batch_size x capacity"):
        _core.mcts.StochasticSearch(2**20, 2, 2**20, 2**20)  # C, not A, makes the nodes too big


def _first_search(model, B=6, capacity=60):
    """A searched tree moved along each root's action and outcome 0; root 0, which could only take
    action 0, moves along action 1 and keeps nothing."""
    logits, value, embedding = model.roots(B)
    invalid = torch.zeros(B, 3, dtype=torch.bool)
    invalid[0, 1:] = True
    out = model.search(logits, value, embedding, 25, capacity=capacity, invalid_actions=invalid)
    actions = out.action.clone()
    actions[0] = 1
    return out.search_tree.subtree(actions, torch.zeros(B, dtype=torch.int64))


def _tree_state(tree):
    summary = tree.summary()
    return (summary.visit_counts.clone(), summary.qvalues.clone(), summary.value.clone(), tree.num_nodes.copy(),
            tree.embeddings.rows.clone(), tree.afterstate_embeddings.rows.clone(), tree.kept.clone())


@pytest.mark.parametrize("bad", ["num_chance_outcomes", "embedding", "capacity", "all_invalid", "nan_logits",
                                 "temperature", "invalid_shape", "logits_width"])
def test_a_refused_call_leaves_a_reused_tree_unchanged(bad):
    model = _model(3, 2, seed=3)
    reused = _first_search(model)
    assert reused.kept.tolist() == [False] + [True] * 5
    before = _tree_state(reused)
    logits, value, embedding = model.roots(6, seed=9)
    kwargs = dict(num_chance_outcomes=2, dirichlet_fraction=0.0, temperature=0.0, search_tree=reused)
    num_simulations = 10
    invalid = None
    if bad == "num_chance_outcomes":
        kwargs["num_chance_outcomes"] = 3
    elif bad == "embedding":
        embedding = embedding[:, :2]
    elif bad == "capacity":
        num_simulations = 59
    elif bad == "all_invalid":
        invalid = torch.zeros(6, 3, dtype=torch.bool)
        invalid[2] = True
    elif bad == "nan_logits":
        logits = logits.clone()
        logits[0, 0] = math.nan  # root 0 is not kept: its logits are read
    elif bad == "temperature":
        kwargs["temperature"] = -1.0
    elif bad == "invalid_shape":
        invalid = torch.zeros(6, 4, dtype=torch.bool)
    elif bad == "logits_width":
        logits = torch.cat([logits, logits[:, :1]], dim=1)
    with pytest.raises(ValueError):
        stochastic_muzero_policy(Root(logits, value, embedding), model.decision_fn, model.chance_fn,
                                 num_simulations, invalid_actions=invalid, **kwargs)
    after = _tree_state(reused)
    for x, y in zip(before, after):  # bytes: unwritten pool rows may hold NaN
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
    # And the tree continues exactly like an untouched copy.
    copy = _first_search(_model(3, 2, seed=3))
    logits, value, embedding = model.roots(6, seed=9)
    kwargs = dict(num_chance_outcomes=2, dirichlet_fraction=0.0, temperature=0.0)
    a = stochastic_muzero_policy(Root(logits, value, embedding), model.decision_fn, model.chance_fn, 10,
                                 search_tree=reused, **kwargs)
    b = stochastic_muzero_policy(Root(logits, value, embedding), model.decision_fn, model.chance_fn, 10,
                                 search_tree=copy, **kwargs)
    assert_same_output(a, b)


def test_a_kept_root_left_only_actions_of_logit_minus_inf_is_refused():
    """The kept decision node's own logits must leave a valid action of finite logit (the check of
    prior_logits never reads a kept root's); accepted, the search ran on NaN priors."""
    def decision_fn(state, action):
        n = len(action)
        return DecisionOutput(torch.zeros(n, 2), torch.zeros(n)), state[:, :3]

    def chance_fn(afterstate, outcome):
        n = len(outcome)
        logits = torch.tensor([[0.0, -math.inf, 1.0]]).expand(n, 3)
        return ChanceOutput(torch.zeros(n), torch.ones(n), logits, torch.zeros(n)), torch.zeros(n, 4)

    root = Root(torch.zeros(2, 3), torch.zeros(2), torch.zeros(2, 4))
    kwargs = dict(num_chance_outcomes=2, dirichlet_fraction=0.0, temperature=0.0)
    out = stochastic_muzero_policy(root, decision_fn, chance_fn, 20, capacity=40, **kwargs)
    kept = out.search_tree.subtree(out.action, torch.zeros(2, dtype=torch.int64))
    assert kept.kept.all()
    before, nodes = kept.summary(), kept.num_nodes.copy()
    invalid = torch.tensor([[False, False, False], [True, False, True]])
    with pytest.raises(ValueError, match=r"^invalid_actions: .*kept root, got root 1 "):
        stochastic_muzero_policy(root, decision_fn, chance_fn, 4, search_tree=kept, invalid_actions=invalid, **kwargs)
    after = kept.summary()
    assert (kept.num_nodes == nodes).all() and all(torch.equal(x, y) for x, y in zip(before, after))
    again = stochastic_muzero_policy(root, decision_fn, chance_fn, 4, search_tree=kept, **kwargs)
    assert torch.isfinite(again.action_weights).all()


def test_a_max_depth_beyond_64_bits_is_no_limit():
    """Refused by the binding after a reused tree had taken the new roots; now no limit."""
    model = _model(3, 2, seed=5)
    logits, value, embedding = model.roots(3)

    def reused():
        out = model.search(logits, value, embedding, 12, capacity=40)
        return out.search_tree.subtree(out.action, torch.zeros(3, dtype=torch.int64))

    deep = model.search(logits, value, embedding, 8, search_tree=reused(), max_depth=2**70)
    assert_same_output(deep, model.search(logits, value, embedding, 8, search_tree=reused()))


def test_too_many_simulations_for_the_default_capacity_name_num_simulations():
    model = _model(3, 2)
    logits, value, embedding = model.roots(2)
    with pytest.raises(ValueError, match="^num_simulations: expected at most 1073741823"):
        model.search(logits, value, embedding, 2**30)


def test_a_consumed_tree_and_bad_reroots_are_refused():
    model = _model(3, 2)
    logits, value, embedding = model.roots(2)
    out = model.search(logits, value, embedding, 8, capacity=30)
    tree = out.search_tree
    with pytest.raises(ValueError, match=r"chance_outcomes: expected values in \[0, 2\), got 2 for root 1"):
        tree.subtree(torch.zeros(2, dtype=torch.int64), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"actions: expected values in \[0, 3\), got -1 for root 0"):
        tree.subtree(torch.tensor([-1, 0]), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"chance_outcomes: expected shape \(2,\)"):
        tree.subtree(torch.zeros(2, dtype=torch.int64), torch.zeros(3, dtype=torch.int64))
    assert tree.summary().visit_counts.sum().item() == 16  # unchanged by the refusals
    reused = tree.subtree(out.action, torch.zeros(2, dtype=torch.int64))
    with pytest.raises(RuntimeError, match="search_tree"):
        tree.summary()
    with pytest.raises(TypeError, match="search_tree: expected a SearchTree, got StochasticSearchTree"):
        muzero_policy(Root(logits, value, embedding), lambda e, a: None, 3, search_tree=reused)
    with pytest.raises(TypeError, match="search_tree: expected a StochasticSearchTree, got SearchTree"):
        muzero_stree = muzero_policy(Root(logits, value, embedding), _recurrent(model), 2).search_tree
        model.search(logits, value, embedding, 3, search_tree=muzero_stree)


def _recurrent(model):
    def recurrent_fn(state, action):
        out, nxt = model.chance(state, action)
        return out, nxt
    return recurrent_fn


# ---- planning through chance ------------------------------------------------------------------------


# Reward by (afterstate, outcome); 0 elsewhere.
_GAMBLE_REWARD = {(10, 0): 0.5, (10, 1): 0.5, (11, 0): 1.0, (11, 1): -5.0}


class _Gamble:
    """One move, then the game ends. Action 0 is safe: reward 0.5 whatever happens. Action 1 is a
    gamble: with probability 0.8 it pays 1, with probability 0.2 it costs 5; its expectation, -0.2,
    is worse than the safe action, but its most likely outcome is better. The network knows nothing
    (uniform priors, values 0): only planning through the chance outcomes finds the safe action.
    States and afterstates are int64 codes [B, 1]: 0 the start, 10 + a after action a, 100 the end
    (discount 0: what the search expands beyond it counts for nothing)."""

    def decision_fn(self, state, action):
        start = state[:, 0] == 0
        probs = torch.where(start[:, None], torch.tensor([[1.0, 0.0], [0.8, 0.2]])[action], 0.5)
        return DecisionOutput(probs.log(), torch.zeros(len(action))), torch.where(start[:, None], 10 + action[:, None],
                                                                                    200)

    def chance_fn(self, afterstate, outcome):
        reward = torch.tensor([_GAMBLE_REWARD.get((int(s), int(o)), 0.0) for s, o in zip(afterstate[:, 0], outcome)])
        n = len(outcome)
        return ChanceOutput(reward, torch.zeros(n), torch.zeros(n, 2), torch.zeros(n)), torch.full((n, 1), 100)

    def most_likely_recurrent_fn(self, state, action):
        """The same game with the environment's draw replaced by its most likely outcome (a
        deterministic model's view): the gamble always pays 1."""
        reward = torch.where((state[:, 0] == 0) & (action == 1), 1.0, torch.where(state[:, 0] == 0, 0.5, 0.0))
        n = len(action)
        return RecurrentOutput(reward, torch.zeros(n), torch.zeros(n, 2), torch.zeros(n)), torch.full((n, 1), 100)


def test_the_search_prefers_the_action_best_in_expectation():
    game = _Gamble()
    B = 4
    root = Root(torch.zeros(B, 2), torch.zeros(B), torch.zeros(B, 1, dtype=torch.int64))
    out = stochastic_muzero_policy(root, game.decision_fn, game.chance_fn, 60, num_chance_outcomes=2,
                                   dirichlet_fraction=0.0, temperature=0.0, seed=0)
    summary = out.search_tree.summary()
    assert out.action.tolist() == [0] * B
    # Tree-wide min-max normalisation spans the chance edges' -5 and 1, which narrows the gap
    # between the two actions' normalised Q (0.92 and 0.80): the safe action leads by ~2 to 1.
    assert (summary.visit_counts[:, 0] > 1.5 * summary.visit_counts[:, 1]).all()
    # Q of the safe action: its afterstate's own value 0, then 0.5 per visit through its outcome.
    n0 = summary.visit_counts[:, 0].double()
    assert torch.allclose(summary.qvalues[:, 0].double(), 0.5 * (n0 - 1) / n0, atol=1e-6)
    assert (summary.qvalues[:, 1] < 0.0).all()
    # A search through the most likely outcome only (a deterministic model) is lured by the gamble.
    lured = muzero_policy(root, game.most_likely_recurrent_fn, 60, dirichlet_fraction=0.0, temperature=0.0)
    assert lured.action.tolist() == [1] * B
