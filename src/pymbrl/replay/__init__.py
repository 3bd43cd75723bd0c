"""Replay buffers in C++: uniform, prioritized, n-step and sequence replay, and MuZero's game
buffer with its unroll targets; thread-safe and saved in a versioned non-pickle format.

See :class:`ReplayBuffer`, :class:`PrioritizedReplayBuffer`, :class:`SequenceReplayBuffer`, :class:`Batch`,
:class:`GameBuffer`, :class:`GameBatch`.
"""

from pymbrl.replay.buffers import Batch, PrioritizedReplayBuffer, ReplayBuffer, SequenceReplayBuffer
from pymbrl.replay.game import GameBatch, GameBuffer

__all__ = ["Batch", "GameBatch", "GameBuffer", "PrioritizedReplayBuffer", "ReplayBuffer", "SequenceReplayBuffer"]
