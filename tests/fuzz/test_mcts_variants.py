"""Fuzz targets of the newer searches of pymbrl.mcts: Stochastic MuZero and Sampled MuZero against
their pure-Python references (tests/mcts/reference_stochastic.py, reference_sampled.py) on random
small problems (masks, depth limits, two players, -inf logits, Q transforms, trees kept two levels
down, merged duplicate draws); and bad input of every kind thrown at stochastic_muzero_policy,
sampled_muzero_policy, gumbel_muzero_policy and the stochastic core: each must raise an error
naming the argument or field, a refused call must leave a kept tree as it was, and the next
search on it must go on as on an untouched copy."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st
from mcts import reference_sampled as sampled_reference  # tests/mcts: pytest puts tests/ on sys.path
from mcts import reference_stochastic as stochastic_reference
from mcts.hash_model import HashModel
from mcts.reference_sampled import reference_sampled_batch
from mcts.sampled_model import SampledHashModel
from mcts.stochastic_helpers import StochasticHashModel
from pymbrl import _core
from pymbrl.mcts import (ChanceOutput, DecisionOutput, QTransform, Root, SampledRoot, gumbel_muzero_policy,
                         muzero_policy, reference, sampled_muzero_policy, stochastic_muzero_policy)
from torch.distributions import Categorical, Distribution, Independent, Normal, OneHotCategorical, Uniform

from .test_mcts import LIMIT, QTRANSFORMS, reference_qtransform

_CODES = 2**61 - 1  # node codes: a child's is a hash of its parent's and the edge


def _child(code: int, edge: int) -> int:
    return (code * 1_000_003 + edge + 1) % _CODES


def _batch(result) -> reference.BatchSearchResult:
    return reference.BatchSearchResult.from_roots(result)


def assert_matches(out, ref: reference.BatchSearchResult) -> None:
    """Visit counts and actions equal; weights, Q and values the reference's float64 numbers
    rounded to float32."""
    summary = out.search_tree.summary()
    assert torch.equal(summary.visit_counts, ref.visit_counts), (summary.visit_counts, ref.visit_counts)
    assert torch.equal(out.action, ref.action), (out.action, ref.action)
    assert torch.equal(out.action_weights, ref.action_weights.float()), (out.action_weights, ref.action_weights)
    assert torch.equal(summary.qvalues, ref.qvalues.float()), (summary.qvalues, ref.qvalues)
    assert torch.equal(summary.value, ref.value.float()), (summary.value, ref.value)


# --------------------------------------------------------------------------------------------
# Stochastic MuZero against its reference
# --------------------------------------------------------------------------------------------


class StochasticTableModel:
    """Both functions of a stochastic model, every output drawn from a generator seeded by (kind,
    root, node code, edge). Embeddings are int64 [n, 2] = (root, code). The batched functions
    return float64 tensors (exact); ``decision_step`` and ``chance_step`` are the reference's."""

    def __init__(self, num_actions: int, num_chance_outcomes: int, seed: int, scale: float, discount: float | None,
                 logit_scale: float, neg_inf: float) -> None:
        self.num_actions, self.num_chance_outcomes, self.seed = num_actions, num_chance_outcomes, seed
        self.scale, self.discount, self.logit_scale, self.neg_inf = scale, discount, logit_scale, neg_inf
        self.calls = {"decision": 0, "chance": 0}

    def _logits(self, rng: random.Random, width: int) -> list[float]:
        logits = [-math.inf if rng.random() < self.neg_inf else rng.gauss(0.0, 1.0) * self.logit_scale
                  for _ in range(width)]
        if all(v == -math.inf for v in logits):
            logits[rng.randrange(width)] = 0.0
        return logits

    def decision_outputs(self, root: int, code: int, action: int) -> tuple[list[float], float]:
        rng = random.Random(f"{self.seed}/d/{root}/{code}/{action}")
        return self._logits(rng, self.num_chance_outcomes), rng.uniform(-1.0, 1.0) * self.scale

    def chance_outputs(self, root: int, code: int, outcome: int) -> tuple[float, float, list[float], float]:
        rng = random.Random(f"{self.seed}/c/{root}/{code}/{outcome}")
        reward = rng.uniform(-1.0, 1.0) * self.scale
        discount = rng.uniform(-1.0, 1.0) if self.discount is None else self.discount
        return reward, discount, self._logits(rng, self.num_actions), rng.uniform(-1.0, 1.0) * self.scale

    def decision_step(self, embedding: tuple[int, int], action: int):
        root, code = embedding
        logits, value = self.decision_outputs(root, code, action)
        return logits, value, (root, _child(code, action))

    def chance_step(self, embedding: tuple[int, int], outcome: int):
        root, code = embedding
        return (*self.chance_outputs(root, code, outcome), (root, _child(code, outcome)))

    @staticmethod
    def _next(embedding: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[r, _child(c, e)] for (r, c), e in zip(embedding.tolist(), edge.tolist())],
                            dtype=torch.int64)

    def decision_fn(self, state: torch.Tensor, action: torch.Tensor):
        assert state.dtype == torch.int64 and state.shape == (len(action), 2) and len(action) > 0
        self.calls["decision"] += 1
        rows = [self.decision_outputs(r, c, a) for (r, c), a in zip(state.tolist(), action.tolist())]
        out = DecisionOutput(torch.tensor([row[0] for row in rows], dtype=torch.float64),
                             torch.tensor([row[1] for row in rows], dtype=torch.float64))
        return out, self._next(state, action)

    def chance_fn(self, afterstate: torch.Tensor, outcome: torch.Tensor):
        assert afterstate.dtype == torch.int64 and afterstate.shape == (len(outcome), 2) and len(outcome) > 0
        self.calls["chance"] += 1
        rows = [self.chance_outputs(r, c, o) for (r, c), o in zip(afterstate.tolist(), outcome.tolist())]
        f64 = lambda k: torch.tensor([row[k] for row in rows], dtype=torch.float64)  # noqa: E731
        return ChanceOutput(f64(0), f64(1), f64(2), f64(3)), self._next(afterstate, outcome)

    def roots(self, batch_size: int, first: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Roots ``first .. first + B - 1``: the chance outputs of a made-up parent."""
        rows = [self.chance_outputs(r, -1, -1) for r in range(first, first + batch_size)]
        return (torch.tensor([row[2] for row in rows], dtype=torch.float64),
                torch.tensor([row[3] for row in rows], dtype=torch.float64),
                torch.tensor([[r, 0] for r in range(first, first + batch_size)], dtype=torch.int64))


def _mask(draw, logits: list[list[float]]) -> torch.Tensor | None:
    """A random root mask (or None) leaving every root a valid action of finite logit."""
    if not draw(st.booleans()):
        return None
    width = len(logits[0])
    invalid = torch.tensor(draw(st.lists(st.lists(st.booleans(), min_size=width, max_size=width),
                                         min_size=len(logits), max_size=len(logits))))
    for b, row in enumerate(logits):
        finite = [a for a in range(width) if math.isfinite(row[a])]
        if all(bool(invalid[b, a]) for a in finite):
            invalid[b, finite[draw(st.integers(0, len(finite) - 1))]] = False
    return invalid


@st.composite
def stochastic_problems(draw):
    batch_size = draw(st.integers(1, 3))
    model = StochasticTableModel(
        draw(st.integers(1, 5)), draw(st.integers(1, 4)), draw(st.integers(0, 2**32)),
        scale=draw(st.sampled_from([1.0, 1e6, LIMIT, 1e-300, 0.0])),
        discount=draw(st.sampled_from([None, 1.0, -1.0, 0.0, 0.5])),  # -1: two players
        logit_scale=draw(st.sampled_from([1.0, 30.0, 1e300])),
        neg_inf=draw(st.sampled_from([0.0, 0.3])))
    logits, value, embedding = model.roots(batch_size)
    return dict(model=model, logits=logits, value=value, embedding=embedding,
                invalid=_mask(draw, logits.tolist()), num_simulations=draw(st.integers(1, 12)),
                max_depth=draw(st.sampled_from([None, 1, 2, 3, 5])), qtransform=draw(st.sampled_from(QTRANSFORMS)),
                pb_c=draw(st.sampled_from([(1.25, 19652.0), (0.0, 1.0), (50.0, 2.0**-64)])),
                num_threads=draw(st.sampled_from([None, 1, 2, 3])))  # results do not depend on it


def _stochastic(p, root: Root, num_simulations: int, **kwargs):
    return stochastic_muzero_policy(root, p["model"].decision_fn, p["model"].chance_fn, num_simulations,
                                    num_chance_outcomes=p["model"].num_chance_outcomes, qtransform=p["qtransform"],
                                    pb_c_init=p["pb_c"][0], pb_c_base=p["pb_c"][1], max_depth=p["max_depth"],
                                    dirichlet_fraction=0.0, temperature=0.0, **kwargs)


def _stochastic_reference_kwargs(p) -> dict:
    return dict(max_depth=p["max_depth"], pb_c_init=p["pb_c"][0], pb_c_base=p["pb_c"][1],
                qtransform=reference_qtransform(p["qtransform"]))


@given(p=stochastic_problems(), second=st.integers(0, 8), data=st.data())
def test_stochastic_search_equals_the_reference(p, second, data):
    """One search, then (second > 0) subtree() two levels down at random actions and outcomes and
    a second search of the kept trees under a new mask, both against the reference."""
    model, batch_size = p["model"], len(p["value"])
    A, C = model.num_actions, model.num_chance_outcomes
    kwargs = _stochastic_reference_kwargs(p)
    refs = [stochastic_reference.stochastic_muzero_search(
        model.decision_step, model.chance_step, p["logits"][b].tolist(), float(p["value"][b]), (b, 0),
        p["num_simulations"], num_chance_outcomes=C,
        invalid_actions=None if p["invalid"] is None else p["invalid"][b].tolist(), **kwargs)
        for b in range(batch_size)]
    out = _stochastic(p, Root(p["logits"], p["value"], p["embedding"]), p["num_simulations"],
                      invalid_actions=p["invalid"], capacity=1 + p["num_simulations"] + second, seed=0,
                      num_threads=p["num_threads"])
    assert_matches(out, _batch(refs))
    assert all(torch.isfinite(t).all() for t in out.search_tree.summary())
    for b in range(batch_size):  # node kinds alternate, ids in allocation order
        assert out.search_tree.chance_nodes(b).tolist() == refs[b].tree.chance
    if second == 0:
        return
    actions, outcomes = [], []
    for r in refs:  # mostly a path the search expanded (kept), sometimes any (kept or not)
        a, o = data.draw(st.integers(0, A - 1)), data.draw(st.integers(0, C - 1))
        if data.draw(st.integers(0, 3)):
            nodes = r.tree.nodes
            after = [c for c in nodes[0].children if c != -1]
            if after:
                a = nodes[after[data.draw(st.integers(0, len(after) - 1))]].action
                states = [nodes[c].action for c in nodes[nodes[0].children[a]].children if c != -1]
                o = states[data.draw(st.integers(0, len(states) - 1))] if states else o
        actions.append(a)
        outcomes.append(o)
    kept = out.search_tree.subtree(torch.tensor(actions), torch.tensor(outcomes))
    trees = [stochastic_reference.reroot(r.tree, a, o)[0] for r, a, o in zip(refs, actions, outcomes)]
    assert kept.kept.tolist() == [t is not None for t in trees]
    event(f"roots kept: {sum(kept.kept.tolist())} of {batch_size}")
    logits, value, embedding = model.roots(batch_size, first=batch_size)
    rows = [t.nodes[0].logits if t is not None else logits[b].tolist() for b, t in enumerate(trees)]
    invalid = _mask(data.draw, rows)
    again = _stochastic(p, Root(logits, value, embedding), second, invalid_actions=invalid, search_tree=kept,
                        seed=1)
    results = []
    for b, tree in enumerate(trees):
        mask = None if invalid is None else invalid[b].tolist()
        if tree is None:
            results.append(stochastic_reference.stochastic_muzero_search(
                model.decision_step, model.chance_step, rows[b], float(value[b]), (batch_size + b, 0), second,
                num_chance_outcomes=C, invalid_actions=mask, **kwargs))
            continue
        stochastic_reference.revalidate(tree, mask)
        for _ in range(second):
            stochastic_reference.simulate(tree, model.decision_step, model.chance_step, p["max_depth"],
                                          kwargs["pb_c_init"], kwargs["pb_c_base"], kwargs["qtransform"])
        results.append(stochastic_reference.decide(tree))
    assert_matches(again, _batch(results))
    for b, result in enumerate(results):
        assert again.search_tree.chance_nodes(b).tolist() == result.tree.chance


# --------------------------------------------------------------------------------------------
# Sampled MuZero against its reference
# --------------------------------------------------------------------------------------------


def assert_sampled_matches(out, ref: list) -> None:
    summary = out.search_tree.summary()
    assert torch.equal(summary.visit_counts, torch.tensor([r.visit_counts for r in ref]))
    assert torch.equal(out.action_index, torch.tensor([r.action_index for r in ref]))
    assert torch.equal(out.action, torch.stack([r.action for r in ref]))
    assert torch.equal(out.sampled_actions, torch.stack([torch.stack(r.edges.actions) for r in ref]))
    assert torch.equal(out.action_weights, torch.tensor([r.action_weights for r in ref], dtype=torch.float64).float())
    assert torch.equal(summary.qvalues, torch.tensor([r.qvalues for r in ref], dtype=torch.float64).float())
    assert torch.equal(summary.value, torch.tensor([r.value for r in ref], dtype=torch.float64).float())


def _sampled_continued(model, trees: list, policy, value, embedding, num_simulations: int, num_samples: int,
                       seed: int, **kwargs) -> list:
    """The reference of a search of kept trees (None: a root that kept nothing), drawing as the
    spec says the search with ``seed`` draws."""
    seeds = sampled_reference.spec_seeds(seed, num_simulations)
    raw, lp, _ = sampled_reference.spec_draws(policy, num_samples, seeds[0])
    interior = [sampled_reference.spec_draws(model.policy(len(trees)), num_samples, s) for s in seeds[1:]]

    def step(state, action):
        with torch.no_grad():
            out, next_state = model(state, action[None])
        return float(out.reward[0]), float(out.discount[0]), float(out.value[0]), next_state

    results = []
    for b, tree in enumerate(trees):
        edges_at = lambda s, b=b: sampled_reference.row_edges(interior[s - 1][0], interior[s - 1][1], None, b)  # noqa: E731
        if tree is None:
            results.append(sampled_reference.sampled_muzero_search(
                step, sampled_reference.row_edges(raw, lp, None, b), float(value[b]), embedding[b:b + 1],
                num_simulations, edges_at, **kwargs))
            continue
        stochastic_reference.revalidate(tree, [c == 0 for c in tree.nodes[0].embedding[1].counts])
        results.append(sampled_reference.sampled_simulations(tree, step, num_simulations, edges_at, **kwargs))
    return results


@given(kind=st.sampled_from(["normal", "tanh", "categorical", "onehot"]), size=st.integers(1, 4),
       batch_size=st.integers(1, 3), num_simulations=st.integers(1, 10), second=st.integers(0, 6), data=st.data(),
       seed=st.integers(0, 2**32), beta=st.booleans(), max_depth=st.sampled_from([None, 1, 2, 4]),
       discount=st.sampled_from([None, -1.0, 0.0]), reward_scale=st.sampled_from([1.0, 1e6, LIMIT]),
       qtransform=st.sampled_from(QTRANSFORMS))
def test_sampled_search_equals_the_reference(kind, size, batch_size, num_simulations, second, data, seed, beta,
                                             max_depth, discount, reward_scale, qtransform):
    """Continuous draws (all distinct) and discrete ones (merged into edges with their counts),
    with and without a root sampling policy; then (second > 0) subtree() at random edges and a
    search of the kept trees, whose roots keep their edges. A fixed-bounds transform may make a
    spare edge win pUCT below the root (the reference stops there): the search must then refuse
    naming qtransform."""
    discrete = kind in ("categorical", "onehot")
    num_samples = data.draw(st.integers(1, size if discrete else 5))
    model = SampledHashModel(kind, size, seed % 1000, discount=discount, reward_scale=reward_scale)
    policy, value, embedding = model.roots(batch_size, seed % 1000)
    sampling = None
    if beta:
        if discrete:
            sampling = (Categorical if kind == "categorical" else OneHotCategorical)(logits=policy.logits / 3.0)
        else:
            params = torch.cat([torch.zeros(batch_size, size), torch.full((batch_size, size), math.log(1.5))], 1)
            sampling = model.distribution(params)
    options = dict(max_depth=max_depth, qtransform=qtransform, temperature=0.0)
    threads = data.draw(st.sampled_from([None, 1, 2, 3]))  # results do not depend on it
    ref_options = dict(max_depth=max_depth, qtransform=reference_qtransform(qtransform))

    def search(root, n, **kwargs):
        return sampled_muzero_policy(root, model, n, num_samples=num_samples, **options, **kwargs)

    try:
        ref = reference_sampled_batch(model, policy, value, embedding, num_simulations, num_samples, seed,
                                      root_sampling_policy=sampling, **ref_options)
    except AssertionError as spare:  # the reference chose a spare edge
        event("a spare edge won pUCT")
        assert qtransform is not None and qtransform.kind == "min_max", spare
        with pytest.raises(ValueError, match="^qtransform: .*spare edge"):
            search(SampledRoot(policy, value, embedding), num_simulations, root_sampling_policy=sampling, seed=seed)
        return
    out = search(SampledRoot(policy, value, embedding), num_simulations, root_sampling_policy=sampling, seed=seed,
                 capacity=1 + num_simulations + second, num_threads=threads)
    if any(0 in node.embedding[1].counts for r in ref for node in r.tree.nodes):
        event("duplicate draws merged")
    assert_sampled_matches(out, ref)
    if second == 0:
        return
    # Mostly an edge the search expanded (kept), sometimes any (a spare or unexpanded one: not kept).
    index = [r.action_index if data.draw(st.integers(0, 2)) else data.draw(st.integers(0, num_samples - 1))
             for r in ref]
    kept = out.search_tree.subtree(torch.tensor(index))
    trees = [reference.reroot(r.tree, i) for r, i in zip(ref, index)]
    assert kept.kept.tolist() == [t is not None for t in trees]
    event(f"roots kept: {sum(kept.kept.tolist())} of {batch_size}")
    policy, value, embedding = model.roots(batch_size, seed % 1000 + 1)
    try:
        ref = _sampled_continued(model, trees, policy, value, embedding, second, num_samples, seed + 1, **ref_options)
    except AssertionError as spare:
        assert qtransform is not None and qtransform.kind == "min_max", spare
        with pytest.raises(ValueError, match="^qtransform: .*spare edge"):
            search(SampledRoot(policy, value, embedding), second, search_tree=kept, seed=seed + 1)
        return
    assert_sampled_matches(search(SampledRoot(policy, value, embedding), second, search_tree=kept, seed=seed + 1),
                           ref)


# --------------------------------------------------------------------------------------------
# Bad input: refused naming the argument, a kept tree unchanged, the next search as on a copy
# --------------------------------------------------------------------------------------------

B, A, C = 3, 3, 2  # roots, actions, chance outcomes
ALGORITHMS = ("muzero", "gumbel", "stochastic", "sampled")
ABOVE = float(np.nextafter(LIMIT, math.inf))


class Runner:
    """One algorithm's deterministic model (tests/mcts's hash models), its roots and its search
    with the options the tests hold fixed; ``kept_tree`` makes the same reused tree every time."""

    def __init__(self, algorithm: str, seed: int, kind: str = "normal") -> None:
        self.algorithm = algorithm
        if algorithm == "stochastic":
            self.model = StochasticHashModel(A, C, seed)
            self.root = Root(*self.model.roots(B, seed))
            self.fns = (self.model.decision_fn, self.model.chance_fn)
        elif algorithm == "sampled":
            self.model = SampledHashModel(kind, 2 if kind == "normal" else 4, seed)
            self.num_samples = 3
            self.root = SampledRoot(*self.model.roots(B, seed))
            self.fns = (self.model,)
        else:
            self.model = HashModel(A, seed=seed)
            self.root = Root(*self.model.roots(B, seed))
            self.fns = (self.model,)

    def search(self, root: Any, fns: tuple, num_simulations: Any, **kwargs: Any) -> Any:
        if self.algorithm == "muzero":
            return muzero_policy(root, *fns, num_simulations, **{**NO_NOISE, **kwargs})
        if self.algorithm == "gumbel":
            return gumbel_muzero_policy(root, *fns, num_simulations, **{"gumbel_scale": 0.0, **kwargs})
        if self.algorithm == "stochastic":
            return stochastic_muzero_policy(root, *fns, num_simulations,
                                            **{**NO_NOISE, "num_chance_outcomes": C, **kwargs})
        return sampled_muzero_policy(root, *fns, num_simulations,
                                     **{"temperature": 0.0, "num_samples": self.num_samples, **kwargs})

    def kept_tree(self, num_simulations: int, choice: int) -> Any:
        """A search of num_simulations (capacity 40) re-rooted by subtree(): root 0 at an edge it
        never expanded where there is one (it keeps nothing), the others at edge ``choice``."""
        out = self.search(self.root, self.fns, num_simulations, capacity=40, seed=3)
        counts = out.search_tree.summary().visit_counts
        actions = torch.full((B,), choice % counts.shape[1], dtype=torch.int64)
        actions[0] = int(counts[0].argmin())
        if self.algorithm == "stochastic":
            return out.search_tree.subtree(actions, torch.full((B,), choice % C, dtype=torch.int64))
        return out.search_tree.subtree(actions)


NO_NOISE = {"dirichlet_fraction": 0.0, "temperature": 0.0}


def tree_state(tree: Any) -> list[bytes]:
    """What a refused call must not change: the summary, the node counts and the root embeddings."""
    core = tree.tree if hasattr(tree, "tree") else tree
    pool = tree.embeddings.rows
    roots = [leaf[:B] for leaf in (pool if isinstance(pool, tuple) else (pool,))]
    kept = () if tree.kept is None else (tree.kept,)
    return [np.asarray(t).tobytes() for t in (*tree.summary(), core.num_nodes, *roots, *kept)]


def assert_same_search(a: Any, b: Any) -> None:
    fields = ("action", "action_weights") + (("action_index", "sampled_actions") if hasattr(a, "action_index") else ())
    for name in fields:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    for x, y in zip(a.search_tree.summary(), b.search_tree.summary()):
        assert torch.equal(x, y)


def _with(root: Any, field: str, value: Any) -> Any:
    return root._replace(**{field: value})


def _at_new_root(tensor: Any, rows: list[int], bad: float) -> Any:
    """``tensor`` with one entry of each of ``rows`` (roots that kept nothing) set to ``bad``."""
    t = torch.as_tensor(tensor).clone().double()
    t.view(t.shape[0], -1)[rows, 0] = bad
    return t


def _bad_calls(algorithm: str, runner: Runner, new_rows: list[int]) -> list[tuple[str, Callable[[dict], None]]]:
    """(the name the error must start with, a change to a good call) of every bad call to try."""
    cases: list[tuple[str, Callable[[dict], None]]] = []

    def arg(name: str, values: list[Any], match: str | None = None, **also: Any) -> None:
        for v in values:
            cases.append((match or name, lambda call, v=v: call["kwargs"].update({name: v, **also})))

    def root(field: str, values: list[Any], match: str) -> None:
        for v in values:
            cases.append((match, lambda call, v=v: call.update(root=_with(call["root"], field, v(call["root"])))))

    nan, inf = math.nan, math.inf
    for v in (0, -1, 1.5, "3", True, None, 2**70, 1000):  # 1000: beyond the kept trees' capacity
        cases.append(("num_simulations", lambda call, v=v: call.update(num_simulations=v)))
    arg("max_depth", [0, -1, -2**70, 1.5, "2", True])
    arg("seed", [-1, 2**64, 1.5, "x"])
    arg("search_tree", [torch.zeros(3), "tree"])
    # The kept tree of another kind of search, of the same shape.
    other = Runner("sampled" if algorithm in ("muzero", "gumbel") else "muzero", 1, "categorical")
    other.num_samples = A
    cases.append(("search_tree", lambda call: call["kwargs"].update(search_tree=other.kept_tree(2, 0))))
    for v in ((1, 2), None, "root"):
        cases.append(("root", lambda call, v=v: call.update(root=v)))
    # Sampled MuZero takes B from root.value: a policy of another batch then disagrees with it.
    value_match = "root.value" if algorithm != "sampled" else "root.value|root.policy: .*root.value"
    root("value", [lambda r: r.value[:-1], lambda r: torch.zeros(B, 1), lambda r: np.zeros(B, dtype=complex),
                   lambda r: "value"], value_match)
    if new_rows:  # refused only at roots that read their new value
        root("value", [lambda r, bad=bad: _at_new_root(r.value, new_rows, bad) for bad in (nan, inf, 1e300, ABOVE)],
             "root.value")
    root("embedding", [lambda r: r.embedding[:, :-1], lambda r: r.embedding[:-1], lambda r: (r.embedding,),
                       lambda r: None, lambda r: np.array([["x"]] * B, dtype=object)], "root.embedding")
    if algorithm != "gumbel":
        arg("temperature", [-1.0, nan, inf, "x", None])
        arg("pb_c_init", [nan, inf, 1e300, "x"] + ([-1.0] if algorithm == "sampled" else []))
        arg("pb_c_base", [0.0, -1.0, nan, inf, 1e-30])
        arg("qtransform", ["x", QTransform("bogus"), QTransform("min_max", min_value=1.0, max_value=0.0),
                           QTransform("parent_and_siblings", epsilon=0.0), QTransform("min_max", min_value=nan),
                           QTransform("min_max", max_value=1e300)])
    if algorithm in ("muzero", "stochastic"):
        arg("dirichlet_fraction", [-0.1, 1.1, nan])
        arg("dirichlet_alpha", [0.0, -1.0, nan, 1e300], dirichlet_fraction=0.25)
    if algorithm != "sampled":
        width = runner.root.prior_logits.shape[1]
        every = torch.zeros(B, width, dtype=torch.bool)
        every[1] = True
        arg("invalid_actions", [every, torch.zeros(B, width + 1, dtype=torch.bool), torch.zeros(B, width),
                                torch.full((B, width), 2)])
        root("prior_logits", [lambda r: r.prior_logits[:, :-1], lambda r: r.prior_logits.numpy().astype(complex),
                              lambda r: r.prior_logits[:-1]], "root.prior_logits|search_tree")
        if new_rows:
            root("prior_logits", [lambda r, bad=bad: _at_new_root(r.prior_logits, new_rows, bad) for bad in (nan, inf)],
                 "root.prior_logits")
            root("prior_logits", [lambda r: torch.where(torch.arange(B)[:, None] == new_rows[0], -inf,
                                                        r.prior_logits)], "root.prior_logits")
    if algorithm == "gumbel":
        arg("gumbel_scale", [-1.0, nan, 1e300])
        arg("value_scale", [nan, 1e300])
        arg("maxvisit_init", [inf, -1e300])
        arg("max_num_considered_actions", [0, 2**20 + 1, 2**70, 1.5])
        arg("rescale_with_invalid", [1, None, "yes"])
    if algorithm == "stochastic":
        arg("num_chance_outcomes", [0, C + 1, 2**70, 1.5], "num_chance_outcomes|search_tree")
    if algorithm == "sampled":
        K = runner.num_samples
        policy = runner.root.policy
        arg("num_samples", [0, K + 1, 1.5, None], "num_samples|search_tree")
        root("policy", [lambda r: "policy", lambda r: Normal(torch.zeros(B + 1), 1.0),
                        lambda r: Categorical(logits=torch.zeros(B, K - 1)),
                        lambda r: Normal(torch.full((B,) + tuple(r.policy.event_shape), nan), 1.0,
                                         validate_args=False)], "root.policy|num_samples")
        if not policy.event_shape:  # integer actions: a policy of float samples
            root("policy", [lambda r: Normal(torch.zeros(B), 1.0)], "root.policy")
        if tuple(policy.event_shape) == (2,):
            root("policy", [lambda r: Independent(Normal(torch.zeros(B, 3), 1.0), 1)], "root.policy")
            wide = Independent(Normal(torch.zeros(B, 2), 10.0), 1)
            narrow = Independent(Uniform(torch.full((B, 2), -0.01), torch.full((B, 2), 0.01), validate_args=False),
                                 1, validate_args=False)
            cases.append(("root.policy", lambda call: call.update(root=_with(call["root"], "policy", narrow))
                          or call["kwargs"].update(root_sampling_policy=wide)))
        arg("root_sampling_policy", ["beta", Normal(torch.zeros(B + 1), 1.0), Normal(torch.zeros(B, 5, 5), 1.0)])
    return cases


@given(algorithm=st.sampled_from(ALGORITHMS), first=st.integers(1, 6), choice=st.integers(0, 5),
       kind=st.sampled_from(["normal", "categorical"]), data=st.data())
def test_a_refused_call_leaves_a_kept_tree_unchanged(algorithm, first, choice, kind, data):
    """Every bad argument, root field and option is refused naming it, before the kept trees (or
    their embeddings) change; the next search on the tree is that of an untouched copy."""
    runner = Runner(algorithm, first * 7 + choice, kind)
    tree = runner.kept_tree(first, choice)
    new_rows = [b for b in range(B) if not tree.kept[b]]
    match, change = data.draw(st.sampled_from(_bad_calls(algorithm, runner, new_rows)))
    call = dict(root=runner.root, num_simulations=4, kwargs={"search_tree": tree, "seed": 5})
    if algorithm != "sampled":  # a mask that drops statistics if applied too early
        invalid = torch.zeros(B, A, dtype=torch.bool)
        invalid[:, 1:] = True
        call["kwargs"]["invalid_actions"] = invalid
    change(call)
    before = tree_state(tree)
    with pytest.raises((ValueError, TypeError), match=f"^({match})"):
        runner.search(call["root"], runner.fns, call["num_simulations"], **call["kwargs"])
    assert tree_state(tree) == before
    again = runner.search(runner.root, runner.fns, 4, search_tree=tree, seed=5)
    assert_same_search(again, runner.search(runner.root, runner.fns, 4, search_tree=runner.kept_tree(first, choice),
                                            seed=5))


# --------------------------------------------------------------------------------------------
# Garbage from the model, or its exceptions, in the middle of a search
# --------------------------------------------------------------------------------------------

_VALUE_GARBAGE = ["nan", "inf", "-inf", "huge", "above", "rows", "column", "bool", "complex", "str", "None"]
_DISCOUNT_GARBAGE = ["nan", "inf", "1.5", "-1.5", "rows", "column", "bool", "str", "None"]
_LOGITS_GARBAGE = ["nan", "inf", "all -inf", "rows", "column", "flat", "bool", "complex", "str", "None"]
_RECORD_GARBAGE = ["None", "output only", "short record", "dict"]
_EMBEDDING_GARBAGE = ["None", "rows", "column", "tuple", "str"]
_POLICY_GARBAGE = ["not a distribution", "batch", "event", "categories", "nan samples", "-inf log_prob", "dtype"]


def _garbage_field(good: Any, kind: str) -> Any:
    """One wrong version of a good float field [n] or [n, width]."""
    t = torch.as_tensor(good).clone().double()
    row = t.view(t.shape[0], -1)[-1]
    numbers = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "huge": 1e300, "above": ABOVE, "1.5": 1.5,
               "-1.5": -1.5}
    if kind in numbers:
        row[0] = numbers[kind]
        return t
    if kind == "all -inf":
        row[:] = -math.inf
        return t
    return {"rows": lambda: torch.cat([t, t[:1]]), "column": lambda: t[..., None] if t.ndim == 1 else torch.cat(
        [t, t[:, :1]], 1), "flat": lambda: t.reshape(-1), "bool": lambda: t > 0, "complex": lambda: t.numpy() + 1j,
        "str": lambda: "garbage", "None": lambda: None}[kind]()


class _BadLogProb(Distribution):
    """``good``'s draws, each of log-probability -inf."""

    def __init__(self, good: Distribution) -> None:
        self.good = good
        super().__init__(good.batch_shape, good.event_shape, validate_args=False)

    def sample(self, sample_shape=torch.Size()):
        return self.good.sample(sample_shape)

    def log_prob(self, value):
        return torch.full(value.shape[:value.ndim - len(self.event_shape)], -math.inf)


def _garbage_policy(good: Any, kind: str, num_samples: int) -> Any:
    n = good.batch_shape[0]
    event = tuple(good.event_shape)
    return {"not a distribution": lambda: "policy", "batch": lambda: Normal(torch.zeros(n + 1), 1.0),
            "event": lambda: Independent(Normal(torch.zeros(n, *event, 2), 1.0), len(event) + 1),
            "categories": lambda: Categorical(logits=torch.zeros(n, num_samples - 1)),
            "nan samples": lambda: Independent(Normal(torch.full((n, 2), math.nan), 1.0, validate_args=False), 1),
            "-inf log_prob": lambda: _BadLogProb(good),
            # Float samples where the roots' are integers (or integers where they are floats).
            "dtype": lambda: Categorical(logits=torch.zeros(n, 5)) if event else Normal(torch.zeros(n), 1.0)}[kind]()


def _garbage_result(result: tuple, kind: str) -> Any:
    output, embedding = result
    return {"None": None, "output only": output, "short record": (tuple(output)[:-1], embedding),
            "dict": (output._asdict(), embedding)}[kind]


def _garbage_embedding(embedding: torch.Tensor, kind: str) -> Any:
    return {"None": None, "rows": torch.cat([embedding, embedding[:1]]), "tuple": (embedding,), "str": "state",
            "column": torch.cat([embedding, embedding[:, :1]], 1)}[kind]


class Corrupting:
    """Wraps a model function: its call number ``at`` returns ``change(result)`` (or raises)."""

    def __init__(self, fn: Callable, at: int, change: Callable[[tuple], Any]) -> None:
        self.fn, self.at, self.change, self.calls, self.corrupted = fn, at, change, 0, False

    def __call__(self, embedding: Any, action: Any) -> Any:
        result = self.fn(embedding, action)
        self.calls += 1
        if self.calls - 1 != self.at:
            return result
        self.corrupted = True
        return self.change(result)


def _garbage_plans(algorithm: str, runner: Runner) -> list[tuple[int, str, str, Callable[[tuple], Any]]]:
    """(which function, its name, the error's start, a change of its result) of every garbage."""
    plans = []

    def field(index: int, fn: str, position: int, name: str, kinds: list[str]) -> None:
        for kind in kinds:
            def change(result, position=position, kind=kind):
                output, embedding = result
                values = list(output)
                values[position] = _garbage_field(values[position], kind)
                return type(output)(*values), embedding
            plans.append((index, fn, f"{fn} output {name}", change))

    def whole(index: int, fn: str) -> None:
        plans.extend((index, fn, fn, lambda result, kind=kind: _garbage_result(result, kind))
                     for kind in _RECORD_GARBAGE)
        for kind in _EMBEDDING_GARBAGE:
            # The first afterstate makes the afterstate pool, of whatever structure and shape it has:
            # refused only when a later one differs.
            first_defines = fn == "decision_recurrent_fn" and kind in ("column", "tuple")
            plans.append((index, fn, fn if not first_defines else f"{fn}|first defines",
                          lambda result, kind=kind: (result[0], _garbage_embedding(result[1], kind))))

        def boom(result):
            raise KeyError("the model failed")
        plans.append((index, fn, "KeyError", boom))

    if algorithm == "stochastic":
        field(0, "decision_recurrent_fn", 0, "chance_logits", _LOGITS_GARBAGE)
        field(0, "decision_recurrent_fn", 1, "afterstate_value", _VALUE_GARBAGE)
        field(1, "chance_recurrent_fn", 0, "reward", _VALUE_GARBAGE)
        field(1, "chance_recurrent_fn", 1, "discount", _DISCOUNT_GARBAGE)
        field(1, "chance_recurrent_fn", 2, "prior_logits", _LOGITS_GARBAGE)
        field(1, "chance_recurrent_fn", 3, "value", _VALUE_GARBAGE)
        whole(0, "decision_recurrent_fn")
        whole(1, "chance_recurrent_fn")
        return plans
    field(0, "recurrent_fn", 0, "reward", _VALUE_GARBAGE)
    field(0, "recurrent_fn", 1, "discount", _DISCOUNT_GARBAGE)
    field(0, "recurrent_fn", 3, "value", _VALUE_GARBAGE)
    whole(0, "recurrent_fn")
    if algorithm == "sampled":
        for kind in _POLICY_GARBAGE:
            if kind == "categories" and runner.num_samples < 2:
                continue
            # Below the roots beta is pi: the search draws from the policy and never reads its
            # log-probabilities (root_sampling_policy's are checked, tests/mcts/test_sampled.py).
            match = "log-probabilities unread" if kind == "-inf log_prob" else "recurrent_fn output policy|num_samples"
            plans.append((0, "recurrent_fn", match,
                          lambda result, kind=kind: (result[0]._replace(
                              policy=_garbage_policy(result[0].policy, kind, runner.num_samples)), result[1])))
    else:
        field(0, "recurrent_fn", 2, "prior_logits", _LOGITS_GARBAGE)
    return plans


@given(algorithm=st.sampled_from(ALGORITHMS), first=st.integers(1, 6), choice=st.integers(0, 5),
       reuse=st.booleans(), at=st.integers(0, 4), kind=st.sampled_from(["normal", "categorical"]), data=st.data())
def test_garbage_from_the_model_names_the_function_and_the_field(algorithm, first, choice, reuse, at, kind, data):
    """A model call (the at-th of one function) returns a wrong record, field, embedding or policy,
    or raises: the search raises naming the function and the field (the model's own exception as
    it is); the tree it was searching (a kept one) goes on with the next search, its roots holding
    the visits of the simulations done before."""
    runner = Runner(algorithm, first * 7 + choice, kind)
    index, fn, match, change = data.draw(st.sampled_from(_garbage_plans(algorithm, runner)))
    fns = list(runner.fns)
    event(f"{algorithm}: {match}")
    fns[index] = Corrupting(fns[index], at, change)
    tree = runner.kept_tree(first, choice) if reuse else None
    good = None if reuse else runner.search(runner.root, runner.fns, 5, seed=5)
    try:
        runner.search(runner.root, tuple(fns), 5, seed=5, search_tree=tree)
    except KeyError:
        assert match == "KeyError" and fns[index].corrupted
    except AssertionError:  # the test model's own check: the chance function got the wider afterstates
        assert match.endswith("first defines") and fns[index].corrupted
    except (ValueError, TypeError) as e:
        assert fns[index].corrupted and re.match(f"^({match})", str(e)), e
    else:
        first_call = match.endswith("first defines") and fns[index].at == 0
        assert first_call or match == "log-probabilities unread" or not fns[index].corrupted, "garbage accepted"
        event("the corrupted call was not reached" if not fns[index].corrupted else "a first afterstate, accepted")
        return
    if not reuse:  # a search of the same shape afterwards (it may get the failed search's tree)
        assert_same_search(runner.search(runner.root, runner.fns, 5, seed=5), good)
        return
    visits = tree.summary().visit_counts.sum(dim=1)
    again = runner.search(runner.root, runner.fns, 4, search_tree=tree, seed=6)
    expected = torch.where(tree.kept, visits + 4, 4)
    assert torch.equal(again.search_tree.summary().visit_counts.sum(dim=1), expected)
    assert all(torch.isfinite(t).all() for t in again.search_tree.summary())


# --------------------------------------------------------------------------------------------
# subtree() and the stochastic core, stepped by hand
# --------------------------------------------------------------------------------------------

_BAD_EDGES = [
    ("range", lambda n, limit: torch.full((n,), limit)), ("negative", lambda n, limit: torch.full((n,), -1)),
    ("huge", lambda n, limit: torch.full((n,), 2**62)), ("uint64", lambda n, limit: np.full(n, 2**64 - 1, np.uint64)),
    ("shape", lambda n, limit: torch.zeros(n + 1, dtype=torch.int64)),
    ("2-d", lambda n, limit: torch.zeros(n, 1, dtype=torch.int64)), ("float", lambda n, limit: torch.zeros(n)),
    ("bool", lambda n, limit: torch.zeros(n, dtype=torch.bool)), ("str", lambda n, limit: "0"),
    ("None", lambda n, limit: None),
]


@given(algorithm=st.sampled_from(ALGORITHMS), first=st.integers(1, 6), choice=st.integers(0, 5),
       bad=st.sampled_from(_BAD_EDGES), outcomes_bad=st.booleans())
def test_bad_subtree_edges_are_refused_and_change_nothing(algorithm, first, choice, bad, outcomes_bad):
    """subtree() with actions (or chance outcomes) out of range, of another shape or dtype: a
    ValueError or TypeError naming them, the tree as it was, and subtree() still works on it."""
    runner = Runner(algorithm, first * 7 + choice)
    out = runner.search(runner.root, runner.fns, first, capacity=20, seed=3)
    tree = out.search_tree
    width = tree.summary().visit_counts.shape[1]
    actions, outcomes = torch.full((B,), choice % width), torch.full((B,), choice % C)
    name, make = bad
    args = [actions] if algorithm != "stochastic" else [actions, outcomes]
    wrong = 1 if algorithm == "stochastic" and outcomes_bad else 0
    args[wrong] = make(B, C if wrong else width)
    before = tree_state(tree)
    with pytest.raises((ValueError, TypeError), match="^(chance_outcomes|actions)" if wrong else "^actions"):
        tree.subtree(*args)
    assert tree_state(tree) == before
    kept = tree.subtree(actions) if algorithm != "stochastic" else tree.subtree(actions, outcomes)
    assert kept.kept.shape == (B,)
    with pytest.raises(RuntimeError, match="search_tree"):  # consumed by the subtree() that worked
        tree.summary()


_NUMBERS = [0.0, 1.0, -1.0, math.nan, math.inf, -math.inf, 1e300, ABOVE]
# The call the protocol expects after each one (set_roots -> begin -> select -> expand ... -> decide, reroot).
_NEXT = {None: "set_roots", "set_roots": "begin", "begin": "select", "select": "expand", "expand": "expand",
         "done": "decide", "decide": "reroot", "reroot": "set_roots"}


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 10)),
       data=st.data())
def test_the_stochastic_core_refuses_bad_calls_without_changing_the_trees(shape, data):
    """Calls of pymbrl._core.mcts.StochasticSearch, mostly in the protocol's order with good
    arguments, else any call with bad ones (numbers, shapes, dtypes, rows of the other function):
    never a crash; a refused call (ValueError, TypeError, or RuntimeError out of protocol) leaves
    the trees as they were; what is accepted keeps the statistics finite."""
    batch_size, num_actions, outcomes, capacity = shape
    core = _core.mcts.StochasticSearch(batch_size, num_actions, outcomes, capacity, 1)
    last, counts = None, None

    def floats(rows: int, width: int | None, good: bool, label: str) -> Any:
        size = rows * (width or 1)
        x = np.asarray(data.draw(st.lists(st.floats(-3, 3), min_size=size, max_size=size), label=label))
        x = x.reshape(rows, width) if width else x
        kind = "good" if good else data.draw(st.sampled_from(["good", "number", "rows", "dtype", "None"]), label=label)
        if kind == "number" and x.size:
            x.flat[data.draw(st.integers(0, x.size - 1))] = data.draw(st.sampled_from(_NUMBERS))
        return {"good": x, "number": x, "rows": np.zeros((rows + 1, *x.shape[1:])), "dtype": x.astype(complex),
                "None": None}[kind]

    def edges(limit: int, good: bool) -> np.ndarray:
        return np.asarray(data.draw(st.lists(st.integers(0, limit - 1) if good else st.integers(-1, limit),
                                             min_size=batch_size, max_size=batch_size)))

    for _ in range(data.draw(st.integers(1, 40))):
        in_order = data.draw(st.integers(0, 4)) > 0
        op = _NEXT[last] if in_order else data.draw(st.sampled_from(sorted(set(_NEXT.values()))))
        good = in_order and data.draw(st.integers(0, 5)) > 0
        before = [a.copy() for a in core.summary()] + [core.num_nodes.copy()]
        try:
            if op == "set_roots":
                invalid = None
                if data.draw(st.booleans()):
                    invalid = np.asarray(data.draw(st.lists(st.booleans(), min_size=batch_size * num_actions,
                                                            max_size=batch_size * num_actions)))
                    invalid = invalid.reshape(batch_size, num_actions)
                keep = core.num_nodes > 0 if data.draw(st.booleans()) else None
                core.set_roots(floats(batch_size, num_actions, good, "prior_logits"),
                               floats(batch_size, None, good, "value"), invalid, keep)
            elif op == "begin":
                kind = data.draw(st.sampled_from(["tree_min_max", "parent_and_siblings", "min_max"]
                                                 + ([] if good else ["x"])))
                core.begin(data.draw(st.sampled_from([1, 3, capacity] + ([] if good else [capacity + 1, 0]))), 7,
                           data.draw(st.sampled_from([1.25, 0.0] + ([] if good else [math.nan]))), 19652.0, 0.3,
                           data.draw(st.sampled_from([0.0, 0.25] + ([] if good else [2.0]))),
                           data.draw(st.sampled_from([None, 1, 2] + ([] if good else [0]))), kind)
            elif op == "select":
                counts = core.select()
            elif op == "expand":
                nd, nc = counts if counts is not None else (data.draw(st.integers(0, batch_size)),) * 2
                counts = core.expand_and_select(
                    floats(nd, outcomes, good, "chance_logits"), floats(nd, None, good, "afterstate_value"),
                    floats(nc, None, good, "reward"), np.clip(floats(nc, None, good, "discount"), -1, 1)
                    if good else floats(nc, None, good, "discount"), floats(nc, num_actions, good, "prior_logits"),
                    floats(nc, None, good, "value"))
                event("a simulation was expanded")
                if counts is None:
                    op = "done"
            elif op == "reroot":
                core.reroot(edges(num_actions, good), edges(outcomes, good))
            else:
                core.decide(data.draw(st.sampled_from([0.0, 1.0] + ([] if good else [-1.0, math.nan]))))
        except (ValueError, TypeError, RuntimeError):
            after = [a.copy() for a in core.summary()] + [core.num_nodes.copy()]
            assert all(np.array_equal(x, y) for x, y in zip(before, after)), op
            continue
        last = op
        assert all(np.isfinite(a).all() for a in core.summary())
