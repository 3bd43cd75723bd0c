"""A group of Ray actors for scatter/gather work (a CMA-ES generation's fitness, an evaluation's
episodes): every chunk to one actor, the results back in order; a chunk whose actor died is run
again on its replacement."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pymbrl.distributed.pool import OPTIONS, actor_died, ray_module


class ActorGroup:
    """``n`` actors of ``worker`` (each holds ``worker(*make_args(i, restart))``).

    :meth:`map` runs ``method(**chunk)`` for each chunk, chunk ``j`` on actor ``j % n``, and
    returns the results in the chunks' order; :meth:`scatter` starts the same without waiting. A
    call whose actor died (``ray.kill``, a node removed) is run again on a replacement actor, and
    counted in :attr:`lost`.
    """

    def __init__(self, worker: type, make_args: Callable[[int, int], tuple], n: int, num_cpus: float = 1):
        ray = ray_module()
        self.ray, self.make_args = ray, make_args
        self.remote = ray.remote(num_cpus=num_cpus, **OPTIONS)(worker)
        self.restarts = [0] * n
        self.actors = [self.remote.remote(*make_args(i, 0)) for i in range(n)]
        self.lost = 0

    def map(self, method: str, chunks: Sequence[dict[str, Any]]) -> list[Any]:
        return self.scatter(method, chunks).gather()

    def scatter(self, method: str, chunks: Sequence[dict[str, Any]]) -> Scatter:
        return Scatter(self, method, chunks)

    def replace(self, i: int) -> None:
        self.ray.kill(self.actors[i], no_restart=True)
        self.restarts[i] += 1
        self.actors[i] = self.remote.remote(*self.make_args(i, self.restarts[i]))

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)


class Scatter:
    """The chunks of one :meth:`ActorGroup.scatter` in flight."""

    def __init__(self, group: ActorGroup, method: str, chunks: Sequence[dict[str, Any]]):
        self.group, self.method, self.chunks = group, method, list(chunks)
        self.refs: dict[Any, tuple[int, Any]] = {}
        self.results: list[Any] = [None] * len(self.chunks)
        for j in range(len(self.chunks)):
            self.send(j)

    def send(self, j: int) -> None:
        actor = self.group.actors[j % len(self.group.actors)]
        self.refs[getattr(actor, self.method).remote(**self.chunks[j])] = (j, actor)

    def done(self) -> bool:
        """Whether every chunk is back (without waiting)."""
        ray = self.group.ray
        if self.refs:
            ready, _ = ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0)
            for ref in ready:
                self.take(ref)
        return not self.refs

    def gather(self) -> list[Any]:
        """Waits for every chunk; the results in the chunks' order."""
        while self.refs:
            [ref], _ = self.group.ray.wait(list(self.refs), num_returns=1)
            self.take(ref)
        return self.results

    def take(self, ref: Any) -> bool:
        """Stores a finished chunk's result (True), or sends it again where its actor died (False)."""
        group = self.group
        j, actor = self.refs.pop(ref)
        try:
            self.results[j] = group.ray.get(ref)
            return True
        except actor_died(group.ray):
            group.lost += 1
            i = j % len(group.actors)
            if group.actors[i] is actor:  # not replaced yet by another of its failed calls
                group.replace(i)
            self.send(j)
            return False
