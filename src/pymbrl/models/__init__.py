"""Learned models of environments, the networks they are built of, and their training.

See :class:`GaussianEnsemble` (probabilistic ensemble, PETS / MBPO), :class:`DynamicsModel` (the
deterministic residual model), :class:`Normalizer`, :class:`ModelTrainer`, and :func:`rollout_error` (compounding error);
:mod:`pymbrl.models.muzero` for MuZero's networks and value/reward supports; :mod:`pymbrl.models.rssm`
for DreamerV3's world model (RSSM, encoders/decoders, symlog two-hot heads, KL balancing, its dense
blocks :func:`~pymbrl.models.rssm.mlp`); :mod:`pymbrl.models.world_models` for World Models' V
(ConvVAE), M (MDN-RNN), C (controllers as flat parameter vectors) and the Policy acting with all three; :mod:`pymbrl.models.env_model`
for I2A's action-conditioned frame and reward model (pool-and-inject blocks) and its copy-model
control; :mod:`pymbrl.models.i2a` for I2A's policy networks (rollout encoder, actor-critics, the
distilled rollout policy); :mod:`pymbrl.models.tictactoe` for TicTacToe's true rules as a search model for
:mod:`pymbrl.mcts` (roots, recurrent function, random-playout values); :mod:`pymbrl.models.sac` for
Soft Actor-Critic's squashed-Gaussian actor and twin critics; :mod:`pymbrl.models.dreamer` for
Dreamer's actor and critic heads and their clipped optimiser step.
"""

from pymbrl.models.ensemble import DynamicsModel, EnsembleLinear, GaussianEnsemble, Normalizer
from pymbrl.models.evaluation import RolloutError, rollout_error
from pymbrl.models.trainer import ModelTrainer, TrainResult, check_transitions

__all__ = ["DynamicsModel", "EnsembleLinear", "GaussianEnsemble", "ModelTrainer", "Normalizer", "RolloutError",
           "TrainResult", "check_transitions", "rollout_error"]
