"""Learned dynamics models and their training.

See :class:`GaussianEnsemble` (probabilistic ensemble, PETS / MBPO), :class:`DynamicsModel` (the
deterministic residual model), :class:`Normalizer`, :class:`ModelTrainer`, and :func:`rollout_error` (compounding error);
:mod:`pymbrl.models.muzero` for MuZero's networks and value/reward supports; :mod:`pymbrl.models.rssm`
for DreamerV3's world model (RSSM, encoders/decoders, symlog two-hot heads, KL balancing);
:mod:`pymbrl.models.world_models` for World Models' V (ConvVAE), M (MDN-RNN) and C (controllers as
flat parameter vectors); :mod:`pymbrl.models.env_model` for I2A's action-conditioned frame and reward
model (pool-and-inject blocks) and its copy-model control.
"""

from pymbrl.models.ensemble import DynamicsModel, EnsembleLinear, GaussianEnsemble, Normalizer
from pymbrl.models.evaluation import RolloutError, rollout_error
from pymbrl.models.trainer import ModelTrainer, TrainResult, check_transitions

__all__ = ["DynamicsModel", "EnsembleLinear", "GaussianEnsemble", "ModelTrainer", "Normalizer", "RolloutError",
           "TrainResult", "check_transitions", "rollout_error"]
