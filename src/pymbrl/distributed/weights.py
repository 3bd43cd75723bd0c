"""Weights for the actors: a board (a tiny actor) holding the newest version, from which each call
starts, rather than from the weights of the moment it was queued (the policy lag is then the
versions published during one call).

The board puts each version in the object store itself (one put per version) and hands out refs to
it; an actor fetches a version only when it is newer than the one it holds. The board owns those
objects: with Ray 2.60 an object the driver put, whose ref an actor kept in its state and dropped
later, stayed in the driver's store (measured: one object per version, 200 after 200 versions), the
object-store growth this design exists to avoid; objects the board put are freed (measured: 2 in its
store after 400 versions)."""

from __future__ import annotations

from typing import Any

# A version of the weights: (version, state dict).
Version = tuple[int, Any]


class WeightBoard:
    """The object a tiny actor (no CPU of its own) holds: the newest version published, put in the
    object store (the ref in a list, so that Ray hands the ref over rather than fetching it)."""

    def __init__(self) -> None:
        self.newest: tuple[int, list[Any]] = (0, [None])

    def publish(self, version: Version) -> None:
        import ray

        if version[0] > self.newest[0]:
            self.newest = (version[0], [ray.put(version[1])])

    def newer(self, than: int) -> tuple[int, list[Any]] | None:
        return self.newest if self.newest[0] > than else None


class Publisher:
    """The driver's side: :meth:`publish` posts a state dict on the board, which runs on the
    driver's node (it goes only when the driver does); :attr:`newest` is the last one posted."""

    def __init__(self, ray: Any):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from pymbrl.distributed.pool import OPTIONS

        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        self.ray = ray
        self.board = ray.remote(num_cpus=0, scheduling_strategy=here, **OPTIONS)(WeightBoard).remote()
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

    if isinstance(weights, tuple):
        return weights if weights[0] > held else None
    newer = ray.get(weights.newer.remote(held))
    return None if newer is None else (newer[0], ray.get(newer[1][0]))
