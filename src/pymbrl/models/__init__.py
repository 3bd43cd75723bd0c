"""Learned dynamics models and their training.

See :class:`GaussianEnsemble` (probabilistic ensemble, PETS / MBPO), :class:`DynamicsModel` (the
deterministic residual model), :class:`Normalizer` and :class:`ModelTrainer`.
"""

from pymbrl.models.ensemble import DynamicsModel, EnsembleLinear, GaussianEnsemble, Normalizer
from pymbrl.models.trainer import ModelTrainer, TrainResult, check_transitions

__all__ = ["DynamicsModel", "EnsembleLinear", "GaussianEnsemble", "ModelTrainer", "Normalizer", "TrainResult",
           "check_transitions"]
