"""A group of Ray actors for scatter/gather work (a CMA-ES generation's fitness): every chunk to
one actor, the results back in order; a chunk whose actor died is run again on its replacement."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pymbrl.distributed.pool import ray_module


class ActorGroup:
    """``n`` actors of ``worker`` (each holds ``worker(*make_args(i, restart))``).

    :meth:`map` runs ``method(chunk)`` for each chunk, chunk ``j`` on actor ``j % n``, and returns
    the results in the chunks' order. A call whose actor died (``ray.kill``, a node removed) is run
    again on a replacement actor, and counted in :attr:`lost`.
    """

    def __init__(self, worker: type, make_args: Callable[[int, int], tuple], n: int, num_cpus: float = 1):
        ray = ray_module()
        self.ray, self.make_args = ray, make_args
        self.remote = ray.remote(num_cpus=num_cpus)(worker)
        self.restarts = [0] * n
        self.actors = [self.remote.remote(*make_args(i, 0)) for i in range(n)]
        self.lost = 0

    def map(self, method: str, chunks: Sequence[dict[str, Any]]) -> list[Any]:
        dead = (self.ray.exceptions.ActorDiedError, self.ray.exceptions.ActorUnavailableError,
                self.ray.exceptions.WorkerCrashedError)
        n = len(self.actors)
        refs = {}
        for j, chunk in enumerate(chunks):
            actor = self.actors[j % n]
            refs[getattr(actor, method).remote(**chunk)] = (j, actor)
        results: list[Any] = [None] * len(chunks)
        while refs:
            [ref], _ = self.ray.wait(list(refs), num_returns=1)
            j, actor = refs.pop(ref)
            try:
                results[j] = self.ray.get(ref)
            except dead:
                self.lost += 1
                i = j % n
                if self.actors[i] is actor:  # not replaced yet by another of its failed calls
                    self.replace(i)
                refs[getattr(self.actors[i], method).remote(**chunks[j])] = (j, self.actors[i])
        return results

    def replace(self, i: int) -> None:
        self.ray.kill(self.actors[i], no_restart=True)
        self.restarts[i] += 1
        self.actors[i] = self.remote.remote(*self.make_args(i, self.restarts[i]))

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)
