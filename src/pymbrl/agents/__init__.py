"""Readable single-file agents built from pymbrl's parts.

sac
    Soft Actor-Critic (twin Q, target networks, learned temperature).
mbpo
    Model-Based Policy Optimization: SAC on short branched rollouts of a Gaussian ensemble.
muzero
    MuZero and Gumbel MuZero (and AlphaZero mode with true rules) by batched self-play on the C++ search.
dreamer
    Dreamer with DreamerV3's world model: actor and critic learned in imagination from every replayed state.
"""
