"""A search on a reused tree that stops part way (the model raises, returns a bad output, or a
KeyboardInterrupt arrives) leaves the tree as its completed simulations made it, and the tree stays
usable: the next search keeps those visits (SPEC.md, Reuse). A fresh search of the same shape
afterwards (which may recycle the failed search's trees) is the same as one that never saw it."""

from __future__ import annotations

import pytest
import torch

from pymbrl.mcts import Root, SampledRoot, gumbel_muzero_policy, muzero_policy, sampled_muzero_policy

from .hash_model import HashModel
from .helpers import assert_same_output
from .sampled_model import SampledHashModel
from .stochastic_helpers import StochasticHashModel

B, A, S = 6, 4, 12


class Failing:
    """Wraps a model function: the ``fail_at``-th call raises ``error``, or returns a value of the
    wrong shape when ``error`` is None."""

    def __init__(self, fn, fail_at: int, error: BaseException | None):
        self.fn, self.fail_at, self.error, self.calls = fn, fail_at, error, 0

    def __call__(self, embedding, action):
        self.calls += 1
        out, nxt = self.fn(embedding, action)
        if self.calls == self.fail_at:
            if self.error is not None:
                raise self.error
            out = out._replace(value=out.value[:1])
        return out, nxt


def _muzero(kind):
    model = HashModel(A, seed=1)
    logits, value, embedding = model.roots(B)
    root = Root(logits, value, embedding)
    policy = muzero_policy if kind == "muzero" else gumbel_muzero_policy

    def search(fn, tree=None):
        return policy(root, fn, S, search_tree=tree, capacity=4 * S, seed=0)

    return model, search, lambda out: out.search_tree.subtree(out.action)


def _stochastic():
    model = StochasticHashModel(A, 3, seed=1)
    logits, value, embedding = model.roots(B)

    def search(fn, tree=None):
        from pymbrl.mcts import stochastic_muzero_policy
        return stochastic_muzero_policy(Root(logits, value, embedding), model.decision_fn, fn, S,
                                        num_chance_outcomes=3, search_tree=tree, capacity=4 * S, seed=0)

    return model.chance_fn, search, lambda out: out.search_tree.subtree(out.action,
                                                                         chance_outcomes=torch.zeros(B, dtype=int))


def _sampled():
    model = SampledHashModel("normal", 2)
    policy, value, embedding = model.roots(B)

    def search(fn, tree=None):
        return sampled_muzero_policy(SampledRoot(policy, value, embedding), fn, S, num_samples=4,
                                     search_tree=tree, capacity=4 * S, seed=0)

    return model, search, lambda out: out.search_tree.subtree(out.action_index)


SETUPS = {"muzero": lambda: _muzero("muzero"), "gumbel": lambda: _muzero("gumbel"), "stochastic": _stochastic,
          "sampled": _sampled}


@pytest.mark.parametrize("error", [RuntimeError("model failed"), KeyboardInterrupt(), None],
                         ids=["raises", "interrupt", "bad-output"])
@pytest.mark.parametrize("kind", list(SETUPS))
def test_a_reused_tree_whose_search_stopped_part_way_goes_on_with_the_completed_simulations(kind, error):
    fn, search, subtree = SETUPS[kind]()
    reused = subtree(search(fn))
    assert reused.kept.any()
    before = reused.summary().visit_counts.sum(dim=1)
    kept = reused.kept
    expected = (type(error),) if error is not None else (ValueError,)
    with pytest.raises(expected):
        search(Failing(fn, 3, error), reused)
    stopped = reused.summary().visit_counts.sum(dim=1)
    done = stopped - torch.where(kept, before, 0)
    assert ((0 <= done) & (done < S)).all() and (done > 0).any()
    again = search(fn, reused).search_tree.summary()
    # Roots that kept a subtree keep it (and the stopped search's visits); the others start over.
    assert torch.equal(again.visit_counts.sum(dim=1), torch.where(kept, stopped, 0) + S)
    assert all(torch.isfinite(t).all() for t in again)
    # A fresh search is unaffected by the failed one (it may run on the recycled trees).
    clean = search(fn)
    with pytest.raises(expected):
        search(Failing(fn, 3, error))
    assert_same_output(search(fn), clean)
