"""Batched imagined rollouts on a learned model.

See :func:`branched_rollout` (MBPO's short branches from real states) and :class:`RolloutBatch`;
for learning in imagination, :func:`lambda_returns` and :class:`ReturnNormalizer` (Dreamer), with
:meth:`pymbrl.models.rssm.RSSM.imagine` producing the trajectories.
"""

from pymbrl.rollout.branched import RolloutBatch, branched_rollout
from pymbrl.rollout.returns import ReturnNormalizer, lambda_returns

__all__ = ["ReturnNormalizer", "RolloutBatch", "branched_rollout", "lambda_returns"]
