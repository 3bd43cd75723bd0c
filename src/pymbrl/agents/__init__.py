"""Readable single-file agents built from pymbrl's parts.

sac
    Soft Actor-Critic (twin Q, target networks, learned temperature).
mbpo
    Model-Based Policy Optimization: SAC on short branched rollouts of a Gaussian ensemble.
"""
