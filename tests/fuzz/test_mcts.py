"""Fuzz targets of pymbrl.mcts: the C++ search against the pure-Python reference of its spec
(pymbrl.mcts.reference) on random small problems, one and two players, with masks, depth limits,
Q transforms, Gumbel's rescale_with_invalid, extreme but accepted model outputs, and trees kept by
subtree() and searched again; a stateful test of the low-level Tree; and invalid inputs, which must
raise an error naming the argument and leave the trees unchanged. (Stochastic and Sampled MuZero:
test_mcts_variants.py.)"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mcts.reference_stochastic import revalidate  # tests/mcts: pytest puts tests/ on sys.path
from pymbrl import _core
from pymbrl.mcts import (RecurrentOutput, Root, Tree, gumbel_muzero_policy, muzero_policy, qtransform_by_min_max,
                         qtransform_by_parent_and_siblings, reference)

LIMIT = 2.0**64  # |reward| and |value| accepted by the search
# The Q transforms of pUCT, with the edges of their accepted parameters.
QTRANSFORMS = [None, qtransform_by_parent_and_siblings(), qtransform_by_parent_and_siblings(2.0**-64),
               qtransform_by_parent_and_siblings(LIMIT), qtransform_by_min_max(-1.0, 1.0),
               qtransform_by_min_max(-LIMIT, LIMIT), qtransform_by_min_max(0.0, 2.0**-64)]


def assert_matches_reference(out, ref) -> None:
    """Visit counts and actions equal; weights, Q and values are the reference's float64 numbers
    rounded to float32 (as tests/mcts/test_against_reference.py compares them)."""
    summary = out.search_tree.summary()
    assert torch.equal(summary.visit_counts, ref.visit_counts), (summary.visit_counts, ref.visit_counts)
    assert torch.equal(out.action, ref.action), (out.action, ref.action)
    assert torch.equal(out.action_weights, ref.action_weights.float()), (out.action_weights, ref.action_weights)
    assert torch.equal(summary.qvalues, ref.qvalues.float()), (summary.qvalues, ref.qvalues)
    assert torch.equal(summary.value, ref.value.float()), (summary.value, ref.value)


# --------------------------------------------------------------------------------------------
# A random model: every output a function of (seed, root, path, action), in Python floats
# --------------------------------------------------------------------------------------------


class TableModel:
    """Outputs drawn from a generator seeded by the node's path; embeddings are int64 [B, 2] =
    (root, path code), a child's code ``code * (A + 1) + action + 1``. The batched ``__call__`` is
    the C++ search's recurrent_fn (float64 outputs: exact), ``step`` the reference's."""

    def __init__(self, num_actions: int, seed: int, scale: float, discount: float | None, logit_scale: float,
                 neg_inf: float) -> None:
        self.num_actions, self.seed, self.scale = num_actions, seed, scale
        self.discount, self.logit_scale, self.neg_inf = discount, logit_scale, neg_inf

    def outputs(self, root: int, code: int, action: int) -> tuple[float, float, list[float], float]:
        rng = random.Random(f"{self.seed}/{root}/{code}/{action}")
        reward = rng.uniform(-1.0, 1.0) * self.scale
        discount = rng.uniform(-1.0, 1.0) if self.discount is None else self.discount
        logits = [-math.inf if rng.random() < self.neg_inf else rng.gauss(0.0, 1.0) * self.logit_scale
                  for _ in range(self.num_actions)]
        if all(v == -math.inf for v in logits):
            logits[rng.randrange(self.num_actions)] = 0.0
        value = rng.uniform(-1.0, 1.0) * self.scale
        return reward, discount, logits, value

    def child(self, code: int, action: int) -> int:
        return code * (self.num_actions + 1) + action + 1

    def step(self, embedding: tuple[int, int], action: int):
        root, code = embedding
        reward, discount, logits, value = self.outputs(root, code, action)
        return reward, discount, logits, value, (root, self.child(code, action))

    def __call__(self, embedding: torch.Tensor, action: torch.Tensor):
        rows = [self.outputs(int(r), int(c), int(a)) for (r, c), a in zip(embedding.tolist(), action.tolist())]
        f64 = lambda k: torch.tensor([row[k] for row in rows], dtype=torch.float64)  # noqa: E731
        out = RecurrentOutput(f64(0), f64(1), torch.tensor([row[2] for row in rows], dtype=torch.float64), f64(3))
        nxt = torch.tensor([[r, self.child(c, a)] for (r, c), a in zip(embedding.tolist(), action.tolist())],
                           dtype=torch.int64)
        return out, nxt

    def roots(self, batch_size: int, first: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Roots ``first .. first + B - 1`` (a later move's roots: other numbers)."""
        ids = range(first, first + batch_size)
        rows = [self.outputs(r, -1, -1) for r in ids]
        logits = torch.tensor([row[2] for row in rows], dtype=torch.float64)
        value = torch.tensor([row[3] for row in rows], dtype=torch.float64)
        embedding = torch.tensor([[r, 0] for r in ids], dtype=torch.int64)
        return logits, value, embedding


@st.composite
def problems(draw):
    """A random search problem: shape, model, root masks, options."""
    batch_size = draw(st.integers(1, 4))
    num_actions = draw(st.integers(1, 6))
    model = TableModel(
        num_actions, draw(st.integers(0, 2**32)),
        scale=draw(st.sampled_from([1.0, 1e6, LIMIT, 5e-324, 1e-300, 0.0])),
        discount=draw(st.sampled_from([None, 1.0, -1.0, 0.0, 0.5])),  # -1: two players
        logit_scale=draw(st.sampled_from([1.0, 30.0, 1e300])),
        neg_inf=draw(st.sampled_from([0.0, 0.3])))
    logits, value, embedding = model.roots(batch_size)
    invalid = None
    if draw(st.booleans()):
        invalid = torch.tensor(draw(st.lists(st.lists(st.booleans(), min_size=num_actions, max_size=num_actions),
                                             min_size=batch_size, max_size=batch_size)))
        for b in range(batch_size):  # one valid action of finite logit per root (or the search refuses)
            finite = [a for a in range(num_actions) if math.isfinite(float(logits[b, a]))]
            if all(bool(invalid[b, a]) for a in finite):
                invalid[b, finite[draw(st.integers(0, len(finite) - 1))]] = False
    return dict(model=model, logits=logits, value=value, embedding=embedding, invalid=invalid,
                num_simulations=draw(st.integers(1, 12)), max_depth=draw(st.sampled_from([None, 1, 2, 4])))


def _reference(p, algorithm: str, **kwargs):
    search = reference.muzero_search if algorithm == "muzero" else reference.gumbel_muzero_search
    roots = []
    for b in range(len(p["value"])):
        invalid = None if p["invalid"] is None else p["invalid"][b].tolist()
        roots.append(search(p["model"].step, p["logits"][b].tolist(), float(p["value"][b]), (b, 0),
                            p["num_simulations"], invalid_actions=invalid, max_depth=p["max_depth"], **kwargs))
    return reference.BatchSearchResult.from_roots(roots)


def reference_qtransform(qtransform):
    """The reference's record of a pymbrl QTransform (None: the tree's min-max)."""
    return reference.TREE_MIN_MAX if qtransform is None else reference.QTransform(*qtransform)


PB_C = st.sampled_from([(1.25, 19652.0), (0.0, 1.0), (50.0, 2.0**-64)])
SIGMA = st.sampled_from([(0.1, 50.0), (1.0, 0.0), (LIMIT, LIMIT), (-LIMIT, 1.0)])


@given(p=problems(), pb_c=PB_C, qtransform=st.sampled_from(QTRANSFORMS))
def test_muzero_search_equals_the_reference(p, pb_c, qtransform):
    ref = _reference(p, "muzero", pb_c_init=pb_c[0], pb_c_base=pb_c[1], qtransform=reference_qtransform(qtransform))
    out = muzero_policy(Root(p["logits"], p["value"], p["embedding"]), p["model"], p["num_simulations"],
                        invalid_actions=p["invalid"], max_depth=p["max_depth"], pb_c_init=pb_c[0], pb_c_base=pb_c[1],
                        qtransform=qtransform, dirichlet_fraction=0.0, temperature=0.0, seed=0)
    assert_matches_reference(out, ref)
    assert all(torch.isfinite(t).all() for t in out.search_tree.summary())


@given(p=problems(), considered=st.integers(1, 7), sigma=SIGMA, rescale_with_invalid=st.booleans())
def test_gumbel_search_equals_the_reference(p, considered, sigma, rescale_with_invalid):
    ref = _reference(p, "gumbel", max_num_considered_actions=considered, value_scale=sigma[0],
                     maxvisit_init=sigma[1], rescale_with_invalid=rescale_with_invalid)
    out = gumbel_muzero_policy(Root(p["logits"], p["value"], p["embedding"]), p["model"], p["num_simulations"],
                               invalid_actions=p["invalid"], max_depth=p["max_depth"],
                               max_num_considered_actions=considered, value_scale=sigma[0], maxvisit_init=sigma[1],
                               rescale_with_invalid=rescale_with_invalid, gumbel_scale=0.0, seed=0)
    assert_matches_reference(out, ref)
    assert torch.isfinite(out.action_weights).all()


def _mask_keeping_a_finite_logit(draw, logits: list[list[float]]) -> torch.Tensor | None:
    """A random root mask (or None) that leaves every root a valid action of finite logit."""
    if not draw(st.booleans()):
        return None
    num_actions = len(logits[0])
    invalid = torch.tensor(draw(st.lists(st.lists(st.booleans(), min_size=num_actions, max_size=num_actions),
                                         min_size=len(logits), max_size=len(logits))))
    for b, row in enumerate(logits):
        finite = [a for a in range(num_actions) if math.isfinite(row[a])]
        if all(bool(invalid[b, a]) for a in finite):
            invalid[b, finite[draw(st.integers(0, len(finite) - 1))]] = False
    return invalid


@given(p=problems(), second=st.sampled_from(["muzero", "gumbel"]), num_simulations=st.integers(1, 8),
       qtransform=st.sampled_from(QTRANSFORMS), considered=st.integers(1, 7), sigma=SIGMA,
       rescale_with_invalid=st.booleans(), data=st.data())
def test_a_kept_tree_continues_like_the_reference(p, second, num_simulations, qtransform, considered, sigma,
                                                  rescale_with_invalid, data):
    """A MuZero or Gumbel search, subtree() at random actions (searched or not), then a MuZero or
    Gumbel search of the kept trees with a new mask, against the reference re-rooted alike."""
    model, batch_size = p["model"], len(p["value"])
    first = data.draw(st.sampled_from(["muzero", "gumbel"]))
    capacity = 1 + p["num_simulations"] + num_simulations
    root = Root(p["logits"], p["value"], p["embedding"])
    common = dict(invalid_actions=p["invalid"], max_depth=p["max_depth"], capacity=capacity, seed=0,
                  num_threads=data.draw(st.sampled_from([None, 1, 2, 3])))  # results do not depend on it
    if first == "muzero":
        out = muzero_policy(root, model, p["num_simulations"], dirichlet_fraction=0.0, temperature=0.0, **common)
        refs = _reference(p, "muzero").roots
    else:
        out = gumbel_muzero_policy(root, model, p["num_simulations"], gumbel_scale=0.0, **common)
        refs = _reference(p, "gumbel").roots
    actions = data.draw(st.lists(st.integers(0, model.num_actions - 1), min_size=batch_size, max_size=batch_size))
    kept = out.search_tree.subtree(torch.tensor(actions))
    trees = [reference.reroot(r.tree, a) for r, a in zip(refs, actions)]
    assert kept.kept.tolist() == [t is not None for t in trees]

    logits, value, embedding = model.roots(batch_size, first=batch_size)
    # Kept roots search from their node's logits, new ones from these.
    rows = [tree.nodes[0].logits if tree is not None else logits[b].tolist() for b, tree in enumerate(trees)]
    invalid = _mask_keeping_a_finite_logit(data.draw, rows)
    step_kwargs = dict(max_depth=p["max_depth"])
    second_kwargs = dict(search_tree=kept, invalid_actions=invalid, max_depth=p["max_depth"], seed=1)
    if second == "muzero":
        again = muzero_policy(Root(logits, value, embedding), model, num_simulations, qtransform=qtransform,
                              dirichlet_fraction=0.0, temperature=0.0, **second_kwargs)
    else:
        again = gumbel_muzero_policy(Root(logits, value, embedding), model, num_simulations, gumbel_scale=0.0,
                                     max_num_considered_actions=considered, value_scale=sigma[0],
                                     maxvisit_init=sigma[1], rescale_with_invalid=rescale_with_invalid,
                                     **second_kwargs)
    ref_roots = []
    for b, tree in enumerate(trees):
        mask = None if invalid is None else invalid[b].tolist()
        if tree is None:  # a fresh root: the plain reference search
            search = reference.muzero_search if second == "muzero" else reference.gumbel_muzero_search
            options = (dict(qtransform=reference_qtransform(qtransform)) if second == "muzero" else
                       dict(max_num_considered_actions=considered, value_scale=sigma[0], maxvisit_init=sigma[1],
                            rescale_with_invalid=rescale_with_invalid))
            ref_roots.append(search(model.step, rows[b], float(value[b]), (batch_size + b, 0), num_simulations,
                                    invalid_actions=mask, **step_kwargs, **options))
            continue
        revalidate(tree, mask)
        if second == "muzero":
            ref_roots.append(reference.muzero_simulations(tree, model.step, num_simulations, **step_kwargs,
                                                          qtransform=reference_qtransform(qtransform)))
        else:
            ref_roots.append(reference.gumbel_simulations(
                tree, model.step, num_simulations, max_num_considered_actions=considered, value_scale=sigma[0],
                maxvisit_init=sigma[1], rescale_with_invalid=rescale_with_invalid, **step_kwargs))
    assert_matches_reference(again, reference.BatchSearchResult.from_roots(ref_roots))


# --------------------------------------------------------------------------------------------
# The low-level Tree, stepped by hand
# --------------------------------------------------------------------------------------------


def _finite_floats(limit: float = LIMIT):
    return st.floats(-limit, limit, allow_nan=False, allow_infinity=False)


class TreeMachine(RuleBasedStateMachine):
    """Searches on a Tree through its public API: roots (fresh or kept), MuZero or Gumbel
    simulations with random model outputs, re-rooting, and refused calls. The model of the tree
    is what the root statistics must add up to: each simulation adds one visit below every root."""

    @initialize(batch_size=st.integers(1, 3), num_actions=st.integers(1, 4), capacity=st.integers(2, 24),
                seed=st.integers(0, 2**16))
    def create(self, batch_size, num_actions, capacity, seed):
        self.B, self.A, self.capacity = batch_size, num_actions, capacity
        self.tree = Tree(batch_size, num_actions, capacity, num_threads=1)
        self.rng = np.random.default_rng(seed)
        self.has_roots = False   # every root has a tree
        self.begun = False       # a search was begun and simulations remain
        self.pending = False     # select() was called, expand_and_backup not yet
        self.left = 0
        self.expected: list[int | None] = [0] * batch_size  # sum of root visit counts, where known
        # Whether a search with max_depth ran on the current trees: its revisits at the depth limit
        # add to a node's visits but not to its children's, so a kept child's sum is then unknown.
        self.revisited = False
        self.invalid = np.zeros((batch_size, num_actions), dtype=bool)
        self.kept: np.ndarray | None = None
        self.searched_kind: str | None = None

    def _logits(self):
        logits = self.rng.normal(size=(self.B, self.A)) * self.rng.choice([1.0, 1e10])
        return logits

    def _outputs(self, data):
        B = self.B
        reward = np.array(data.draw(st.lists(_finite_floats(), min_size=B, max_size=B)))
        discount = np.array(data.draw(st.lists(st.floats(-1.0, 1.0), min_size=B, max_size=B)))
        value = np.array(data.draw(st.lists(_finite_floats(), min_size=B, max_size=B)))
        return RecurrentOutput(reward, discount, self._logits(), value)

    def _snapshot(self):
        return self.tree.summary(), self.tree.num_nodes.copy()

    def _assert_unchanged(self, before):
        summary, nodes = before
        after = self.tree.summary()
        assert all(torch.equal(x, y) for x, y in zip(summary, after))
        assert (self.tree.num_nodes == nodes).all()

    @rule(data=st.data(), masked=st.booleans())
    def set_fresh_roots(self, data, masked):
        invalid = np.zeros((self.B, self.A), dtype=bool)
        if masked:
            invalid = self.rng.random((self.B, self.A)) < 0.4
            invalid[np.arange(self.B), self.rng.integers(0, self.A, self.B)] = False
        value = np.array(data.draw(st.lists(_finite_floats(), min_size=self.B, max_size=self.B)))
        self.tree.set_roots(self._logits(), value, invalid)
        self.invalid, self.has_roots, self.begun, self.pending = invalid, True, False, False
        self.expected = [0] * self.B
        self.kept, self.searched_kind, self.revisited = None, None, False

    @precondition(lambda self: self.kept is not None and self.kept.all())
    @rule()
    def keep_roots(self):
        # Unmasked: statistics only drop through actions that became invalid, and none did.
        self.tree.set_roots(self._logits(), np.zeros(self.B), keep=self.kept)
        self.invalid[:] = False
        self.has_roots, self.begun, self.pending, self.kept, self.searched_kind = True, False, False, None, None

    @precondition(lambda self: self.has_roots and not self.pending)
    @rule(sims=st.integers(1, 6), gumbel=st.booleans(), depth=st.sampled_from([None, 1, 3]),
          qtransform=st.sampled_from(QTRANSFORMS), rescale_with_invalid=st.booleans())
    def begin(self, sims, gumbel, depth, qtransform, rescale_with_invalid):
        # Both searches continue a root that was searched before (kept by subtree or not reset).
        def begin():
            if gumbel:
                self.tree.begin_gumbel(sims, max_depth=depth, seed=1, rescale_with_invalid=rescale_with_invalid)
            else:
                self.tree.begin_muzero(sims, max_depth=depth, seed=1, qtransform=qtransform)

        if sims > self.capacity - int(self.tree.num_nodes.max()):
            before = self._snapshot()
            with pytest.raises(ValueError, match="num_simulations"):
                begin()
            self._assert_unchanged(before)
            return
        begin()
        self.begun, self.left, self.searched_kind = True, sims, "gumbel" if gumbel else "muzero"
        self.revisited = self.revisited or depth is not None

    @precondition(lambda self: self.begun and not self.pending and self.left > 0)
    @rule()
    def select(self):
        sel = self.tree.select()
        assert ((sel.node >= 0) & (sel.node < self.capacity)).all()
        root_choice = sel.parent == 0
        assert not self.invalid[root_choice.numpy(), sel.action[root_choice].numpy()].any()
        self.pending = True

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def expand(self, data):
        self.tree.expand_and_backup(self._outputs(data))
        self.pending, self.left = False, self.left - 1
        self.expected = [None if e is None else e + 1 for e in self.expected]

    @precondition(lambda self: self.pending)
    @rule(data=st.data(), field=st.sampled_from(["reward", "value", "discount", "prior_logits"]),
          bad=st.sampled_from([math.nan, math.inf, -math.inf, 1e300, float(np.nextafter(LIMIT, math.inf))]))
    def refused_expand(self, data, field, bad):
        out = self._outputs(data)
        values = np.array(getattr(out, field), dtype=np.float64)
        if field == "prior_logits":
            assume(bad in (math.nan, math.inf))  # large finite and -inf logits are fine
            values[0, 0] = bad
        else:
            values[-1] = bad
        before = self._snapshot()
        with pytest.raises(ValueError, match=field):
            self.tree.expand_and_backup(out._replace(**{field: values}))
        self._assert_unchanged(before)

    @precondition(lambda self: self.has_roots and not self.pending and self.searched_kind is not None
                  and self.left == 0)
    @rule()
    def decide(self):
        action, weights = self.tree.decide(0.0)
        assert not self.invalid[np.arange(self.B), action.numpy()].any()
        assert torch.isfinite(weights).all() and (weights[torch.from_numpy(self.invalid)] == 0).all()

    @precondition(lambda self: self.has_roots and not self.pending)
    @rule(data=st.data())
    def subtree(self, data):
        counts = self.tree.summary().visit_counts.numpy()
        actions = np.array(data.draw(st.lists(st.integers(0, self.A - 1), min_size=self.B, max_size=self.B)))
        old_ids, kept = self.tree.subtree(actions)
        assert old_ids.shape == (self.capacity, self.B)
        assert (kept == (counts[np.arange(self.B), actions] > 0)).all()
        self.expected = [(None if self.revisited else int(counts[b, actions[b]]) - 1) if kept[b] else 0
                         for b in range(self.B)]
        self.has_roots = bool(kept.all())
        self.kept, self.begun, self.searched_kind = kept, False, None

    @precondition(lambda self: self.has_roots and not self.pending)
    @rule(data=st.data())
    def refused_subtree(self, data):
        actions = np.zeros(self.B, dtype=np.int64)
        actions[data.draw(st.integers(0, self.B - 1))] = data.draw(st.sampled_from([-1, self.A, 2**40]))
        before = self._snapshot()
        with pytest.raises(ValueError, match="actions"):
            self.tree.subtree(actions)
        self._assert_unchanged(before)

    @invariant()
    def root_statistics_add_up(self):
        if not hasattr(self, "tree"):
            return
        summary = self.tree.summary()
        assert all(torch.isfinite(t).all() for t in summary)
        if self.has_roots:
            counts = summary.visit_counts.numpy()
            assert (counts[self.invalid] == 0).all()
            for b, expected in enumerate(self.expected):
                if expected is not None:
                    assert counts[b].sum() == expected
        assert (self.tree.num_nodes <= self.capacity).all()


TestTreeMachine = TreeMachine.TestCase


# --------------------------------------------------------------------------------------------
# Invalid inputs name the argument
# --------------------------------------------------------------------------------------------


def _model(embedding, action):
    B = len(action)
    return RecurrentOutput(torch.zeros(B), torch.ones(B), torch.zeros(B, 3), torch.zeros(B)), embedding


_BAD_FLOAT = st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300, float(np.nextafter(LIMIT, math.inf))])


@given(case=st.sampled_from(["prior_logits", "value", "invalid_actions", "embedding"]), data=st.data(),
       gumbel=st.booleans())
def test_invalid_roots_name_the_field(case, data, gumbel):
    B, A = 2, 3
    logits, value, embedding, invalid = np.zeros((B, A)), np.zeros(B), torch.zeros(B, 2), None
    if case == "prior_logits":
        bad = data.draw(st.sampled_from(["nan", "inf", "all -inf", "shape", "dtype"]))
        logits = {"nan": np.full((B, A), math.nan), "inf": np.full((B, A), math.inf),
                  "all -inf": np.full((B, A), -math.inf), "shape": np.zeros((B, A, 1)),
                  "dtype": np.zeros((B, A), dtype=complex)}[bad]
    elif case == "value":
        value = np.array([0.0, data.draw(_BAD_FLOAT)]) if data.draw(st.booleans()) else np.zeros(B + 1)
    elif case == "invalid_actions":
        invalid = np.ones((B, A), dtype=bool) if data.draw(st.booleans()) else np.zeros((B, A + 1), dtype=bool)
    else:
        embedding = data.draw(st.sampled_from([torch.zeros(B + 1, 2), torch.tensor(1.0), None]))
    policy = gumbel_muzero_policy if gumbel else muzero_policy
    with pytest.raises((ValueError, TypeError), match=case):
        policy(Root(logits, value, embedding), _model, 2, invalid_actions=invalid)


@given(field=st.sampled_from(["reward", "discount", "value", "prior_logits"]), bad=_BAD_FLOAT,
       row=st.integers(0, 2), gumbel=st.booleans())
def test_invalid_model_outputs_name_the_field_and_the_row(field, bad, row, gumbel):
    B, A = 3, 3
    if field == "prior_logits":
        assume(bad == math.inf or math.isnan(bad))  # finite and -inf logits are accepted
    if field == "discount":
        bad = bad if not math.isfinite(bad) else math.copysign(1.5, bad)

    def model(embedding, action):
        out, nxt = _model(embedding, action)
        values = getattr(out, field).double().clone()
        values.view(B, -1)[row, 0] = bad
        return out._replace(**{field: values}), nxt

    policy = gumbel_muzero_policy if gumbel else muzero_policy
    with pytest.raises(ValueError, match=f"^recurrent_fn output {field}: .*{row}"):
        policy(Root(np.zeros((B, A)), np.zeros(B), torch.zeros(B, 2)), model, 2)


def _refused(b: int, a: int, c: int) -> set[str]:
    """The arguments the documented limits refuse (empty: a shape within them)."""
    out = {name for value, most, name in ((b, 2**24, "batch_size"), (a, 2**24, "num_actions"),
                                          (c, 2**30, "capacity")) if not 1 <= value <= most}
    if not out and b * c * _core.mcts.record_bytes(a) > 2**40:
        out.add("capacity")
    return out


@given(b=st.integers(-2, 2**70), a=st.integers(-2, 2**70), c=st.integers(-2, 2**70))
def test_tree_shapes_beyond_the_limits_are_refused_before_allocating(b, a, c):
    names = _refused(b, a, c)
    assume(names)  # shapes within the limits may allocate up to 2**40 bytes: not here
    with pytest.raises(ValueError) as error:
        Tree(b, a, c)
    assert str(error.value).split(": expected")[0] in names
