"""pymbrl's searches against mctx's (DeepMind's JAX implementation) on the same deterministic models.

Runs where mctx is installed (the bench venv: ``make conformance``) and is skipped elsewhere.

Both libraries search the same function: a table model whose states are integers, whose
transitions are exact integer arithmetic (``next = (state * 31337 + action * 7919 + salt) mod P``,
below 2**31, so int32 in JAX and int64 in torch agree) and whose outputs are float32 numbers looked
up in fixed random tables. The two frameworks therefore see bit-identical model outputs, and every
difference left is the searches' own arithmetic: mctx works in float32 with running means, pymbrl
in float64 with sums (see tests/mcts/SPEC.md).

Nothing is random: Dirichlet noise off (``dirichlet_fraction=0``), Gumbel noise off
(``gumbel_scale=0``). The one randomness left is mctx's pUCT tie-break, which adds
``1e-7 * uniform`` to every score; with that, and with float32 against float64, two libraries can
only disagree where two actions' scores lie within about 1e-6 of each other. The tables' logits,
rewards and values are continuous random draws, so exact ties never happen and near-ties are
rare; the models and seeds below were checked to have none (a near-tie would show as a visit count
that differs by one or two, and would call for another seed, not a looser test).

Compared, per case: root visit counts (equal), root search values and root Q values (float32
tolerance), and the policy target (the visit shares; Gumbel MuZero's improved policy and its
chosen action). Searches: MuZero with mctx's Q transforms (``qtransform_by_parent_and_siblings``,
mctx's default, and ``qtransform_by_min_max``), Gumbel MuZero with ``rescale_with_invalid=True``
(mctx's rescaling at a masked root), Stochastic MuZero (mctx's default Q transform, by parent and
siblings); over several batch sizes and seeds, with invalid-action masks at the root and two-player
discounts of -1.
"""

from __future__ import annotations

import functools
import os

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
mctx = pytest.importorskip("mctx")
jax = pytest.importorskip("jax")

import jax.numpy as jnp
import numpy as np
import torch

from pymbrl import mcts

P = 65521
"""Number of model states (a prime); state * 31337 + 16 * 7919 + 3 stays below 2**31."""
MUL, STEP = 31337, 7919
ATOL, RTOL = 1e-5, 1e-5
"""Values and Q: mctx's float32 running means against pymbrl's float64 sums rounded to float32."""


class TableModel:
    """A deterministic model over integer states, the same function in torch and in JAX.

    ``recurrent(state, action)``: ``next = (state * 31337 + action * 7919 + 1) mod P``; reward,
    discount, prior logits and value are the tables' rows at ``next``. With chance outcomes
    (Stochastic MuZero), ``decision(state, action)`` moves to an afterstate the same way (its
    chance logits and afterstate value from two more tables) and ``chance(afterstate, outcome)``
    moves to the next state with salt 3.
    """

    def __init__(self, num_actions: int, seed: int, *, discount: float | None = None, logit_scale: float = 2.0,
                 num_chance_outcomes: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.num_actions = num_actions
        self.reward = rng.uniform(-1.0, 1.0, P).astype(np.float32)
        self.discount = (rng.uniform(0.5, 1.0, P) if discount is None else np.full(P, discount)).astype(np.float32)
        self.logits = (rng.standard_normal((P, num_actions)) * logit_scale).astype(np.float32)
        self.value = rng.uniform(-1.0, 1.0, P).astype(np.float32)
        if num_chance_outcomes:
            self.chance_logits = (rng.standard_normal((P, num_chance_outcomes)) * logit_scale).astype(np.float32)
            self.afterstate_value = rng.uniform(-1.0, 1.0, P).astype(np.float32)

    def roots(self, batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prior_logits float32 [B, A], value float32 [B], state int64 [B])."""
        state = (np.arange(batch_size, dtype=np.int64) * 104729 + seed * 7 + 12345) % P
        return self.logits[state], self.value[state], state

    # torch, for pymbrl -------------------------------------------------------------------------

    def torch_recurrent(self):
        t = {k: torch.from_numpy(v) for k, v in vars(self).items() if isinstance(v, np.ndarray)}

        def recurrent_fn(state, action):
            nxt = (state * MUL + action * STEP + 1) % P
            return mcts.RecurrentOutput(reward=t["reward"][nxt], discount=t["discount"][nxt],
                                        prior_logits=t["logits"][nxt], value=t["value"][nxt]), nxt

        def decision_fn(state, action):
            after = (state * MUL + action * STEP + 1) % P
            return mcts.DecisionOutput(chance_logits=t["chance_logits"][after],
                                       afterstate_value=t["afterstate_value"][after]), after

        def chance_fn(afterstate, outcome):
            nxt = (afterstate * MUL + outcome * STEP + 3) % P
            return mcts.ChanceOutput(reward=t["reward"][nxt], discount=t["discount"][nxt],
                                     prior_logits=t["logits"][nxt], value=t["value"][nxt]), nxt

        return recurrent_fn, decision_fn, chance_fn

    # JAX, for mctx ---------------------------------------------------------------------------

    def jax_params(self) -> dict:
        return {k: jnp.asarray(v) for k, v in vars(self).items() if isinstance(v, np.ndarray)}


def _jax_recurrent(params, rng_key, action, state):
    del rng_key
    nxt = (state * MUL + action * STEP + 1) % P
    return mctx.RecurrentFnOutput(reward=params["reward"][nxt], discount=params["discount"][nxt],
                                  prior_logits=params["logits"][nxt], value=params["value"][nxt]), nxt


def _jax_decision(params, rng_key, action, state):
    del rng_key
    after = (state * MUL + action * STEP + 1) % P
    return mctx.DecisionRecurrentFnOutput(chance_logits=params["chance_logits"][after],
                                          afterstate_value=params["afterstate_value"][after]), after


def _jax_chance(params, rng_key, outcome, afterstate):
    del rng_key
    # mctx calls both functions on every row and keeps one result; on the rows it discards, the
    # outcome is an action index minus A (negative), which the modulo keeps in the table.
    nxt = (afterstate * MUL + outcome * STEP + 3) % P
    return mctx.ChanceRecurrentFnOutput(action_logits=params["logits"][nxt], value=params["value"][nxt],
                                        reward=params["reward"][nxt], discount=params["discount"][nxt]), nxt


def invalid_mask(batch_size: int, num_actions: int, seed: int) -> np.ndarray:
    """bool [B, A]: each action invalid with probability 0.3; every third row a single valid action;
    every row at least one valid action."""
    rng = np.random.default_rng(1000 + seed)
    invalid = rng.random((batch_size, num_actions)) < 0.3
    for b in range(batch_size):
        if b % 3 == 0:
            invalid[b] = True
            invalid[b, rng.integers(num_actions)] = False
        elif invalid[b].all():
            invalid[b, rng.integers(num_actions)] = False
    return invalid


# ------------------------------------------------------------------------------------------------
# The searches, one call each (jitted on the mctx side: its loops compile either way)
# ------------------------------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnames=("num_simulations",))
def _mctx_muzero(params, logits, value, state, invalid, bounds=None, *, num_simulations):
    """mctx's MuZero search with its default Q transform, or with ``qtransform_by_min_max(*bounds)``
    (the bounds traced, so that one compilation serves every pair)."""
    root = mctx.RootFnOutput(prior_logits=logits, value=value, embedding=state)
    qtransform = (mctx.qtransform_by_parent_and_siblings if bounds is None else
                  functools.partial(mctx.qtransform_by_min_max, min_value=bounds[0], max_value=bounds[1]))
    out = mctx.muzero_policy(params, jax.random.PRNGKey(0), root, _jax_recurrent, num_simulations,
                             invalid_actions=invalid, qtransform=qtransform, dirichlet_fraction=0.0)
    return out.action_weights, out.search_tree.summary()


@functools.partial(jax.jit, static_argnames=("num_simulations", "max_num_considered_actions"))
def _mctx_gumbel(params, logits, value, state, invalid, *, num_simulations, max_num_considered_actions):
    root = mctx.RootFnOutput(prior_logits=logits, value=value, embedding=state)
    out = mctx.gumbel_muzero_policy(params, jax.random.PRNGKey(0), root, _jax_recurrent, num_simulations,
                                    invalid_actions=invalid, max_num_considered_actions=max_num_considered_actions,
                                    gumbel_scale=0.0)
    return out.action, out.action_weights, out.search_tree.summary()


@functools.partial(jax.jit, static_argnames=("num_simulations",))
def _mctx_stochastic(params, logits, value, state, invalid, *, num_simulations):
    root = mctx.RootFnOutput(prior_logits=logits, value=value, embedding=state)
    out = mctx.stochastic_muzero_policy(params, jax.random.PRNGKey(0), root, _jax_decision, _jax_chance,
                                        num_simulations, invalid_actions=invalid, dirichlet_fraction=0.0)
    return out.action_weights, out.search_tree.summary()


def _inputs(batch_size, num_actions, seed, options, num_chance_outcomes=0):
    model = TableModel(num_actions, seed, discount=options.get("discount"), num_chance_outcomes=num_chance_outcomes)
    logits, value, state = model.roots(batch_size, seed)
    value = value * np.float32(options.get("root_value_scale", 1.0))
    invalid = invalid_mask(batch_size, num_actions, seed) if options.get("invalid") else None
    jax_args = (model.jax_params(), jnp.asarray(logits), jnp.asarray(value), jnp.asarray(state, dtype=jnp.int32),
                None if invalid is None else jnp.asarray(invalid))
    root = mcts.Root(torch.from_numpy(logits), torch.from_numpy(value), torch.from_numpy(state))
    return model, root, None if invalid is None else torch.from_numpy(invalid), jax_args


def assert_same_search(out, weights, summary, invalid) -> None:
    """pymbrl's PolicyOutput ``out`` against mctx's action weights and root summary."""
    ours = out.search_tree.summary()
    visits = np.asarray(summary.visit_counts).astype(np.int64)
    mismatch = np.nonzero((ours.visit_counts.numpy() != visits).any(axis=1))[0]
    assert mismatch.size == 0, (f"visit counts differ at rows {mismatch.tolist()}: pymbrl "
                                f"{ours.visit_counts[mismatch[:3]].tolist()}, mctx {visits[mismatch[:3]].tolist()}")
    np.testing.assert_allclose(ours.value.numpy(), np.asarray(summary.value), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(ours.qvalues.numpy(), np.asarray(summary.qvalues), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(out.action_weights.numpy(), np.asarray(weights), rtol=RTOL, atol=1e-6)
    if invalid is not None:
        assert (ours.visit_counts[invalid] == 0).all()  # the case exercises the mask


# (batch size, actions, simulations, options): invalid = random root masks (some rows with one
# valid action), discount = fixed discount (-1: a two-player zero-sum game), else one in [0.5, 1)
# per state.
MUZERO_CASES = [
    pytest.param(1, 4, 30, {}, id="B1-A4-S30"),
    pytest.param(8, 16, 50, {}, id="B8-A16-S50"),
    pytest.param(8, 5, 64, {"invalid": True}, id="B8-A5-S64-invalid"),
    pytest.param(16, 6, 50, {"discount": -1.0}, id="B16-A6-S50-discount-1"),
    pytest.param(32, 8, 40, {"invalid": True, "discount": -1.0}, id="B32-A8-S40-invalid-discount-1"),
]
SEEDS = [0, 1]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("batch_size, num_actions, num_simulations, options", MUZERO_CASES)
def test_muzero_by_parent_and_siblings(seed, batch_size, num_actions, num_simulations, options):
    model, root, invalid, jax_args = _inputs(batch_size, num_actions, seed, options)
    out = mcts.muzero_policy(root, model.torch_recurrent()[0], num_simulations, invalid_actions=invalid,
                             qtransform=mcts.qtransform_by_parent_and_siblings(), dirichlet_fraction=0.0,
                             temperature=0.0)
    weights, summary = _mctx_muzero(*jax_args, num_simulations=num_simulations)
    assert_same_search(out, weights, summary, invalid)


@pytest.mark.parametrize("bounds", [(-1.0, 1.0), (-3.0, 2.0)], ids=["bounds-1,1", "bounds-3,2"])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("batch_size, num_actions, num_simulations, options", MUZERO_CASES)
def test_muzero_by_min_max(seed, batch_size, num_actions, num_simulations, options, bounds):
    model, root, invalid, jax_args = _inputs(batch_size, num_actions, seed, options)
    lo, hi = bounds
    out = mcts.muzero_policy(root, model.torch_recurrent()[0], num_simulations, invalid_actions=invalid,
                             qtransform=mcts.qtransform_by_min_max(lo, hi), dirichlet_fraction=0.0, temperature=0.0)
    weights, summary = _mctx_muzero(*jax_args, jnp.asarray(bounds, dtype=jnp.float32),
                                    num_simulations=num_simulations)
    assert_same_search(out, weights, summary, invalid)


# (batch size, actions, simulations, max_num_considered_actions, options), options as above and
# root_value_scale: root values x 20 (in [-20, 20]), which puts a root's mixed value (the completed Q
# of its unvisited and invalid actions) outside its visited actions' Q range, where mctx's rescaling
# over every action and the rescaling over the valid ones differ.
GUMBEL_CASES = [
    pytest.param(1, 4, 30, 4, {}, id="B1-A4-S30-m4"),
    pytest.param(8, 16, 50, 16, {}, id="B8-A16-S50-m16"),
    pytest.param(8, 16, 64, 16, {"invalid": True, "root_value_scale": 20.0}, id="B8-A16-S64-m16-invalid"),
    pytest.param(16, 6, 50, 4, {"invalid": True, "discount": -1.0, "root_value_scale": 20.0},
                 id="B16-A6-S50-m4-invalid-discount-1"),
    pytest.param(32, 8, 40, 8, {"invalid": True, "root_value_scale": 20.0}, id="B32-A8-S40-m8-invalid"),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("batch_size, num_actions, num_simulations, considered, options", GUMBEL_CASES)
def test_gumbel_muzero(seed, batch_size, num_actions, num_simulations, considered, options):
    """With ``rescale_with_invalid=True``, mctx's rescaling of the completed Q at a masked root (over
    every action, the invalid ones completed with the mixed value)."""
    model, root, invalid, jax_args = _inputs(batch_size, num_actions, seed, options)
    out = mcts.gumbel_muzero_policy(root, model.torch_recurrent()[0], num_simulations, invalid_actions=invalid,
                                    max_num_considered_actions=considered, gumbel_scale=0.0,
                                    rescale_with_invalid=True)
    action, weights, summary = _mctx_gumbel(*jax_args, num_simulations=num_simulations,
                                            max_num_considered_actions=considered)
    assert_same_search(out, weights, summary, invalid)
    assert out.action.tolist() == np.asarray(action).tolist()


def test_gumbel_muzero_masked_case_needs_the_option():
    """The masked cases above exercise ``rescale_with_invalid``: without it, pymbrl's search differs
    from mctx's on them (visit counts and improved policy)."""
    model, root, invalid, jax_args = _inputs(32, 8, 0, {"invalid": True, "root_value_scale": 20.0})
    out = mcts.gumbel_muzero_policy(root, model.torch_recurrent()[0], 40, invalid_actions=invalid,
                                    max_num_considered_actions=8, gumbel_scale=0.0)
    _, weights, summary = _mctx_gumbel(*jax_args, num_simulations=40, max_num_considered_actions=8)
    assert not np.array_equal(out.search_tree.summary().visit_counts.numpy(), np.asarray(summary.visit_counts))
    assert np.abs(out.action_weights.numpy() - np.asarray(weights)).max() > 0.01


# (batch size, actions, chance outcomes, simulations, options), options as above.
STOCHASTIC_CASES = [
    pytest.param(1, 4, 2, 30, {}, id="B1-A4-C2-S30"),
    pytest.param(8, 16, 8, 50, {}, id="B8-A16-C8-S50"),
    pytest.param(8, 5, 3, 64, {"invalid": True}, id="B8-A5-C3-S64-invalid"),
    pytest.param(16, 6, 4, 50, {"discount": -1.0}, id="B16-A6-C4-S50-discount-1"),
    pytest.param(32, 8, 6, 40, {"invalid": True, "discount": -1.0}, id="B32-A8-C6-S40-invalid-discount-1"),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("batch_size, num_actions, num_chance_outcomes, num_simulations, options", STOCHASTIC_CASES)
def test_stochastic_muzero(seed, batch_size, num_actions, num_chance_outcomes, num_simulations, options):
    model, root, invalid, jax_args = _inputs(batch_size, num_actions, seed, options, num_chance_outcomes)
    _, decision_fn, chance_fn = model.torch_recurrent()
    out = mcts.stochastic_muzero_policy(root, decision_fn, chance_fn, num_simulations,
                                        num_chance_outcomes=num_chance_outcomes, invalid_actions=invalid,
                                        qtransform=mcts.qtransform_by_parent_and_siblings(), dirichlet_fraction=0.0,
                                        temperature=0.0)
    weights, summary = _mctx_stochastic(*jax_args, num_simulations=num_simulations)
    assert_same_search(out, weights, summary, invalid)
