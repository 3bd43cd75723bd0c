"""A deterministic stochastic model for the Stochastic MuZero tests, in torch (for the C++ search)
and in plain Python (for the reference), bit for bit the same numbers.

Two HashModels: the decision function's (C "actions": its logits are the chance logits, its value
the afterstate value, its next embedding the afterstate, 3 wide) and the chance function's (A
actions; reward, discount, prior logits, value, next state 4 wide). Every output row depends on its
input row only, so evaluating a batch or a single row gives the same numbers.
"""

from __future__ import annotations

from typing import Any

import torch

from pymbrl.mcts import ChanceOutput, DecisionOutput, stochastic_muzero_policy
from pymbrl.mcts import Root as MctsRoot
from pymbrl.mcts.reference import BatchSearchResult

from .fast_reference import HashStep, embedding_bits
from .hash_model import HashModel
from .reference_stochastic import stochastic_muzero_search

STATE_DIM, AFTERSTATE_DIM = 4, 3


class StochasticHashModel:
    """decision_fn / chance_fn over float32 embeddings, recording every call (embedding, edge)."""

    def __init__(self, num_actions: int, num_chance_outcomes: int, seed: int = 0, *, discount: float | None = None,
                 reward_scale: float = 1.0, neg_inf_prob: float = 0.0, chance_neg_inf_prob: float = 0.0) -> None:
        self.num_actions = num_actions
        self.num_chance_outcomes = num_chance_outcomes
        self.decision = HashModel(num_chance_outcomes, embedding_dim=AFTERSTATE_DIM, seed=seed * 2 + 1,
                                  neg_inf_prob=chance_neg_inf_prob)
        self.chance = HashModel(num_actions, embedding_dim=STATE_DIM, seed=seed * 2 + 2, discount=discount,
                                reward_scale=reward_scale, neg_inf_prob=neg_inf_prob)
        self.decision_calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.chance_calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def decision_fn(self, state: torch.Tensor, action: torch.Tensor) -> tuple[DecisionOutput, torch.Tensor]:
        assert state.shape[1:] == (STATE_DIM,) and state.shape[0] == action.shape[0] > 0
        self.decision_calls.append((state.clone(), action.clone()))
        out, afterstate = self.decision(state, action)
        return DecisionOutput(chance_logits=out.prior_logits, afterstate_value=out.value), afterstate

    def chance_fn(self, afterstate: torch.Tensor, outcome: torch.Tensor) -> tuple[ChanceOutput, torch.Tensor]:
        # A test that lets the first afterstate define another structure expects this check to fail.
        assert isinstance(afterstate, torch.Tensor) and afterstate.shape[1:] == (AFTERSTATE_DIM,)
        assert afterstate.shape[0] == outcome.shape[0] > 0
        self.chance_calls.append((afterstate.clone(), outcome.clone()))
        out, state = self.chance(afterstate, outcome)
        return ChanceOutput(reward=out.reward, discount=out.discount, prior_logits=out.prior_logits,
                            value=out.value), state

    def roots(self, batch_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(prior_logits [B, A], value [B], state embedding [B, 4]), deterministic in seed."""
        return self.chance.roots(batch_size, seed=seed)

    def steps(self) -> tuple[Any, Any]:
        """The reference's (decision_step, chance_step) over embeddings as float32 bit tuples."""
        decision, chance = HashStep(self.decision), HashStep(self.chance)

        def decision_step(bits, action):
            _, _, logits, value, afterstate = decision(bits, action)
            return logits, value, afterstate

        return decision_step, chance

    def search(self, logits: Any, value: Any, embedding: Any, num_simulations: int, **kwargs: Any):
        """stochastic_muzero_policy with this model, without noise unless kwargs say otherwise."""
        kwargs = {"dirichlet_fraction": 0.0, "temperature": 0.0, **kwargs}
        return stochastic_muzero_policy(MctsRoot(logits, value, embedding), self.decision_fn, self.chance_fn,
                                        num_simulations, num_chance_outcomes=self.num_chance_outcomes, **kwargs)


def reference_batch(model: StochasticHashModel, logits: torch.Tensor, value: torch.Tensor, embedding: torch.Tensor,
                    num_simulations: int, *, invalid_actions: torch.Tensor | None = None,
                    **search_kwargs: Any) -> BatchSearchResult:
    """The reference search on every root of a batch, stacked like run_reference_batch's."""
    decision_step, chance_step = model.steps()
    logits_rows = logits.double().tolist()
    values = value.double().tolist()
    invalid_rows = None if invalid_actions is None else invalid_actions.bool().tolist()
    roots = []
    for b, bits in enumerate(embedding_bits(embedding)):
        roots.append(stochastic_muzero_search(
            decision_step, chance_step, logits_rows[b], values[b], bits, num_simulations,
            num_chance_outcomes=model.num_chance_outcomes,
            invalid_actions=None if invalid_rows is None else invalid_rows[b], **search_kwargs))
    return BatchSearchResult.from_roots(roots)
