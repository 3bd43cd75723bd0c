"""Weights for the actors: a board (a tiny actor) holding the newest version, from which each call
starts, rather than from the weights of the moment it was queued (the policy lag is then the
versions published during one call).

The board holds the state dict itself, not an object ref to it: with Ray 2.60 an object whose ref an
actor kept in its state and dropped later stayed in the driver's store (measured: one object per
version, 200 after 200 versions), the object-store growth this design exists to avoid.
Each version still crosses to the board once, and to each actor once, when it asks for it."""

from __future__ import annotations

from typing import Any

# A version of the weights: (version, state dict).
Version = tuple[int, Any]


class WeightBoard:
    """The object a tiny actor (no CPU of its own) holds: the newest version published."""

    def __init__(self) -> None:
        self.newest: Version = (0, None)

    def publish(self, version: Version) -> None:
        if version[0] > self.newest[0]:
            self.newest = version

    def newer(self, than: int) -> Version | None:
        return self.newest if self.newest[0] > than else None


class Publisher:
    """The driver's side: :meth:`publish` posts a state dict on the board, which runs on the
    driver's node (it goes only when the driver does); :attr:`newest` is the last one posted."""

    def __init__(self, ray: Any):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        self.ray = ray
        self.board = ray.remote(num_cpus=0, scheduling_strategy=here)(WeightBoard).remote()
        self.newest: Version = (0, None)

    def publish(self, state: dict[str, Any]) -> None:
        self.newest = (self.newest[0] + 1, state)
        self.board.publish.remote(self.newest)

    def close(self) -> None:
        self.ray.kill(self.board, no_restart=True)


def fetch(weights: Any, held: int) -> tuple[int, Any] | None:
    """In an actor holding version ``held``: the newest :data:`Version` that ``weights`` names (a
    :class:`WeightBoard`'s actor, or one version), or None if it is not newer."""
    import ray

    version = weights if isinstance(weights, tuple) else ray.get(weights.newer.remote(held))
    return None if version is None or version[0] <= held else version
