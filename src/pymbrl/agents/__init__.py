"""Readable single-file agents built from pymbrl's parts.

sac
    Soft Actor-Critic (twin Q, target networks, learned temperature).
"""
