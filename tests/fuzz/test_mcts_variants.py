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
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st
from mcts import reference  # tests/mcts: pytest puts tests/ on sys.path
from mcts import reference_stochastic as stochastic_reference
from mcts.hash_model import HashModel
from mcts.reference_sampled import reference_sampled_batch
from mcts.sampled_model import SampledHashModel
from mcts.stochastic_helpers import StochasticHashModel
from pymbrl.mcts import (ChanceOutput, DecisionOutput, QTransform, Root, SampledRoot,
                         gumbel_muzero_policy, muzero_policy, sampled_muzero_policy, stochastic_muzero_policy)
from torch.distributions import Categorical, Independent, Normal, OneHotCategorical, Uniform

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
                pb_c=draw(st.sampled_from([(1.25, 19652.0), (0.0, 1.0), (50.0, 2.0**-64)])))


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
                      invalid_actions=p["invalid"], capacity=1 + p["num_simulations"] + second, seed=0)
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


@given(kind=st.sampled_from(["normal", "tanh", "categorical", "onehot"]), size=st.integers(1, 4),
       batch_size=st.integers(1, 3), num_simulations=st.integers(1, 10), data=st.data(),
       seed=st.integers(0, 2**32), beta=st.booleans(), max_depth=st.sampled_from([None, 1, 2, 4]),
       discount=st.sampled_from([None, -1.0, 0.0]), reward_scale=st.sampled_from([1.0, 1e6, LIMIT]),
       qtransform=st.sampled_from(QTRANSFORMS))
def test_sampled_search_equals_the_reference(kind, size, batch_size, num_simulations, data, seed, beta, max_depth,
                                             discount, reward_scale, qtransform):
    """Continuous draws (all distinct) and discrete ones (merged into edges with their counts),
    with and without a root sampling policy. A fixed-bounds transform may make a spare edge win
    pUCT below the root (the reference stops there): the search must then refuse naming
    qtransform."""
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
    try:
        ref = reference_sampled_batch(model, policy, value, embedding, num_simulations, num_samples, seed,
                                      root_sampling_policy=sampling, max_depth=max_depth,
                                      qtransform=reference_qtransform(qtransform))
    except AssertionError as spare:  # the reference chose a spare edge
        event("a spare edge won pUCT")
        assert qtransform is not None and qtransform.kind == "min_max", spare
        with pytest.raises(ValueError, match="^qtransform: .*spare edge"):
            sampled_muzero_policy(SampledRoot(policy, value, embedding), model, num_simulations,
                                  num_samples=num_samples, root_sampling_policy=sampling, max_depth=max_depth,
                                  qtransform=qtransform, temperature=0.0, seed=seed)
        return
    out = sampled_muzero_policy(SampledRoot(policy, value, embedding), model, num_simulations,
                                num_samples=num_samples, root_sampling_policy=sampling, max_depth=max_depth,
                                qtransform=qtransform, temperature=0.0, seed=seed)
    if any(0 in node.embedding[1].counts for r in ref for node in r.tree.nodes):
        event("duplicate draws merged")
    summary = out.search_tree.summary()
    assert torch.equal(summary.visit_counts, torch.tensor([r.visit_counts for r in ref]))
    assert torch.equal(out.action_index, torch.tensor([r.action_index for r in ref]))
    assert torch.equal(out.action, torch.stack([r.action for r in ref]))
    assert torch.equal(out.sampled_actions, torch.stack([torch.stack(r.edges.actions) for r in ref]))
    assert torch.equal(out.action_weights, torch.tensor([r.action_weights for r in ref], dtype=torch.float64).float())
    assert torch.equal(summary.qvalues, torch.tensor([r.qvalues for r in ref], dtype=torch.float64).float())
    assert torch.equal(summary.value, torch.tensor([r.value for r in ref], dtype=torch.float64).float())


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
    return [np.asarray(t).tobytes() for t in (*tree.summary(), core.num_nodes, *roots, tree.kept)]


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
