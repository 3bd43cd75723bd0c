"""Batched imagined rollouts on a learned model.

See :func:`branched_rollout` (MBPO's short branches from real states) and :class:`RolloutBatch`.
"""

from pymbrl.rollout.branched import RolloutBatch, branched_rollout

__all__ = ["RolloutBatch", "branched_rollout"]
