"""Replay buffers in C++: uniform, prioritized, n-step and sequence replay, and MuZero's game
buffer with its unroll targets; thread-safe and saved in a versioned non-pickle format.

See :class:`ReplayBuffer`, :class:`PrioritizedReplayBuffer`, :class:`SequenceReplayBuffer`, :class:`Batch`,
:class:`GameBuffer`, :class:`GameBatch`; :mod:`pymbrl.replay.files` for their file format (a CRC-32
per section) and :mod:`pymbrl.replay.rollouts` for World Models' on-disk dataset of whole rollouts.
"""

from pymbrl.replay.buffers import Batch, PrioritizedReplayBuffer, ReplayBuffer, SequenceReplayBuffer
from pymbrl.replay.game import GameBatch, GameBuffer

__all__ = ["Batch", "GameBatch", "GameBuffer", "PrioritizedReplayBuffer", "ReplayBuffer", "SequenceReplayBuffer"]
