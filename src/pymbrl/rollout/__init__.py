"""Batched imagined rollouts on a learned model.

See :func:`branched_rollout` (MBPO's short branches from real states, with the true termination
and rewards of :mod:`pymbrl.tasks` where known) and :class:`RolloutBatch`;
for learning in imagination (Dreamer), :func:`imagine` (trajectories of a world model with its
rewards and continues), :func:`lambda_returns` and :class:`ReturnNormalizer`; for World Models,
:func:`dream_rollouts` (a whole CMA-ES population x trials dreamt as one batch) and :func:`dream_step`,
and :mod:`pymbrl.rollout.dream_env` for the dream as gymnasium envs (``DreamEnv``, ``DreamVectorEnv``);
for I2A, :func:`per_action_rollouts` (every state x every first action imagined as one batch).
"""

from pymbrl.rollout.branched import RolloutBatch, branched_rollout
from pymbrl.rollout.dream import DreamReturns, DreamStep, dream_rollouts, dream_step
from pymbrl.rollout.imagination import Imagination, imagine
from pymbrl.rollout.per_action import ActionRollouts, per_action_rollouts
from pymbrl.rollout.returns import ReturnNormalizer, lambda_returns

__all__ = ["ActionRollouts", "DreamReturns", "DreamStep", "Imagination", "ReturnNormalizer", "RolloutBatch", "branched_rollout",
           "dream_rollouts", "dream_step", "imagine", "lambda_returns", "per_action_rollouts"]
