"""Replay buffers in C++: uniform, prioritized, n-step and sequence replay, thread-safe and saved
in a versioned non-pickle format.

See :class:`ReplayBuffer`, :class:`PrioritizedReplayBuffer`, :class:`SequenceReplayBuffer`, :class:`Batch`.
"""

from pymbrl.replay.buffers import Batch, PrioritizedReplayBuffer, ReplayBuffer, SequenceReplayBuffer

__all__ = ["Batch", "PrioritizedReplayBuffer", "ReplayBuffer", "SequenceReplayBuffer"]
