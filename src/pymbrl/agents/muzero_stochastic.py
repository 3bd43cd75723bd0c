"""Stochastic MuZero (Antonoglou et al., "Planning in Stochastic Environments with a Learned Model",
ICLR 2022) within the MuZero agent (``search="stochastic"``, see :mod:`pymbrl.agents.muzero`): the
search's two model functions and the unroll of training.

A move leads from a state to an afterstate, a chance outcome (one of C codes) from the afterstate
to the next state (:class:`~pymbrl.models.muzero.StochasticMuZeroNetwork`). In training the code
of each step is the encoder's code of the observation that followed it, with the gradient passed
straight through; beside MuZero's losses, each unrolled step trains the afterstate's value Q
against the step's value target, the chance distribution sigma against the code, and draws the
encoder's softmax toward its code (the commitment loss).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch.nn import functional as F

from pymbrl import mcts
from pymbrl.models.muzero import scale_gradient, support_to_scalar
from pymbrl.replay import GameBuffer

if TYPE_CHECKING:
    from pymbrl.agents.muzero import MuZeroConfig


class Outcomes(NamedTuple):
    """What followed each unrolled move of a batch (B positions t, K unroll steps).

    Attributes
    ----------
    obs : Tensor [B, K, *obs_shape] -- the observation at t + k + 1 (any stored one where unknown).
    known : bool Tensor [B, K] -- whether t + k + 1 is a stored position of the same game (the
        observation after a game's last move is not stored).
    """

    obs: torch.Tensor
    known: torch.Tensor


def outcomes(buffer: GameBuffer, indices: torch.Tensor, unroll_steps: int, device: Any = None) -> Outcomes:
    """The observations after the moves of the unrolls starting at positions ``indices`` [B]."""
    indices = indices.cpu()
    starts, lengths = buffer.game_spans(indices)
    ids = indices[:, None] + torch.arange(1, unroll_steps + 1)
    known = ids < (starts + lengths)[:, None]
    obs = buffer.observations(torch.where(known, ids, indices[:, None]), device=device)
    return Outcomes(obs, known.to(obs.device))


def chance_unroll(network: torch.nn.Module, hidden: torch.Tensor, batch: Any, following: Outcomes,
                  config: MuZeroConfig, value_targets: torch.Tensor
                  ) -> tuple[list[tuple], torch.Tensor, dict[str, float]]:
    """Unrolls the model K steps from the root states ``hidden`` [B, latent] along the batch's
    actions, each chance outcome the encoder's code of the observation that followed (where it is
    unknown, the model's most likely code, trained on nothing). ``value_targets`` [B, K + 1, 2S + 1]:
    the two-hot value targets of the batch's positions, those of each step's afterstate too.

    Returns (the predictions (value logits, reward logits, policy logits) of steps 1..K, the
    per-sample loss [B] of the afterstates: Q cross-entropy + chance cross-entropy +
    ``commitment_weight`` x commitment, each step weighing 1/K (the paper sums its losses unweighted),
    minus ``code_entropy_weight`` x the entropy of the batch's mean encoder distribution, and its parts).

    The entropy term is not the paper's: it counters the collapse of the codebook onto one code,
    which the straight-through gradient drives at small scale (the dynamics learns the codes it
    sees, so the codes it never sees stay worse).
    """
    K, C = config.unroll_steps, config.num_chance_outcomes
    batch_size = hidden.shape[0]
    if K:
        codes, probs = network.encode(following.obs.flatten(0, 1))
        codes, probs = codes.view(batch_size, K, C), probs.view(batch_size, K, C)
    known = following.known.to(hidden.dtype)
    q_loss = chance_loss = commitment = hidden.new_zeros(batch_size)
    predictions = []
    for k in range(K):
        after = network.afterstate_inference(hidden, batch.actions[:, k])
        likely = F.one_hot(after.chance_logits.argmax(dim=-1), C).to(hidden.dtype)
        code = torch.where(following.known[:, k, None], codes[:, k], likely)
        out = network.chance_inference(after.afterstate, code)
        predictions.append((out.value_logits, out.reward_logits, out.policy_logits))
        hidden = scale_gradient(out.hidden_state, 0.5)
        q_loss = q_loss + batch.value_mask[:, k] * F.cross_entropy(after.q_logits, value_targets[:, k],
                                                                   reduction="none") / K
        chance_loss = chance_loss + known[:, k] * F.cross_entropy(after.chance_logits, code.detach(),
                                                                  reduction="none") / K
        commitment = commitment + known[:, k] * (code.detach() - probs[:, k]).square().sum(dim=-1) / K
    loss = q_loss + chance_loss + config.commitment_weight * commitment
    parts = {"q_loss": float(q_loss.detach().mean()), "chance_loss": float(chance_loss.detach().mean()),
             "commitment_loss": float(commitment.detach().mean())}
    if K and config.code_entropy_weight:
        weights = following.known.to(probs.dtype)[..., None]
        usage = (weights * probs).sum(dim=(0, 1)) / weights.sum().clamp_min(1.0)
        entropy = -(usage * usage.clamp_min(1e-12).log()).sum()
        loss = loss - config.code_entropy_weight * entropy
        parts["code_entropy"] = float(entropy.detach())
    return predictions, loss, parts


class ChanceModel:
    """The two model functions of :func:`pymbrl.mcts.stochastic_muzero_policy` on a
    :class:`~pymbrl.models.muzero.StochasticMuZeroNetwork`, values and rewards decoded from its
    supports (``discount``: the value of the next state, per step)."""

    def __init__(self, network: torch.nn.Module, support_size: int, discount: float):
        self.network, self.support_size, self.discount = network, support_size, discount

    def decision_step(self, hidden: torch.Tensor, action: torch.Tensor) -> tuple[mcts.DecisionOutput, torch.Tensor]:
        out = self.network.afterstate_inference(hidden, action)
        return mcts.DecisionOutput(out.chance_logits, support_to_scalar(out.q_logits, self.support_size)), \
            out.afterstate

    def chance_step(self, afterstate: torch.Tensor, outcome: torch.Tensor) -> tuple[mcts.ChanceOutput, torch.Tensor]:
        code = F.one_hot(outcome.long(), self.network.num_chance_outcomes).to(afterstate.dtype)
        out = self.network.chance_inference(afterstate, code)
        value, reward = support_to_scalar(torch.stack([out.value_logits, out.reward_logits]),
                                          self.support_size).unbind(0)
        return mcts.ChanceOutput(reward, torch.full_like(value, self.discount), out.policy_logits, value), \
            out.hidden_state
