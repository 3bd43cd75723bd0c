"""A pool of producer actors: N Ray actors each running a worker object, at most ``inflight`` calls
outstanding per actor (so producers can never outrun the driver that stores what they make, and
nothing piles up in the object store), results taken as they come, dead actors replaced."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymbrl._extras import missing_extra, optional_imports


def ray_module() -> Any:
    """The ``ray`` module, or :class:`~pymbrl._extras.MissingExtra` naming the extra that provides it."""
    with optional_imports():
        import ray
    if not hasattr(ray, "remote"):  # a folder named ray (Ray's /tmp/ray) on the path, not Ray
        raise missing_extra("ray")
    return ray


# Ray records every call of an actor in its GCS for its dashboard unless told not to: measured here,
# its memory grew by 312 MiB over 138k calls with the record and stayed flat without it.
OPTIONS = {"enable_task_events": False}


def actor_died(ray: Any) -> tuple[type[BaseException], ...]:
    """The errors ``ray.get`` raises for a call whose actor died (``ray.kill``, its node removed)."""
    return ray.exceptions.ActorDiedError, ray.exceptions.ActorUnavailableError, ray.exceptions.WorkerCrashedError


class ProducerPool:
    """``n`` actors of ``worker`` (a class: each actor holds ``worker(*make_args(i, restart))``).

    ``call(i)`` is what actor ``i`` is asked each time (a method name and its keyword arguments,
    from the driver's current state); :meth:`next` waits for the first finished call and returns
    (actor index, its result), having already asked that actor again; :meth:`ready` takes those
    finished without waiting. With ``start=False`` the calls begin at :meth:`start` (when the driver
    has what they need). A call whose actor died (``ray.kill``, its node removed) is counted
    in :attr:`lost` and the actor replaced (``restart`` grows, so its seeds differ).
    """

    def __init__(self, worker: type, make_args: Callable[[int, int], tuple], n: int,
                 call: Callable[[int], tuple[str, dict[str, Any]]], inflight: int = 2, num_cpus: float = 1,
                 start: bool = True):
        ray = ray_module()
        self.ray, self.make_args, self.call, self.inflight = ray, make_args, call, inflight
        self.remote = ray.remote(num_cpus=num_cpus, **OPTIONS)(worker)
        self.restarts = [0] * n
        self.actors = [self.remote.remote(*make_args(i, 0)) for i in range(n)]
        self.pending: dict[Any, int] = {}
        self.lost, self.started = 0, False
        if start:
            self.start()

    def start(self) -> None:
        self.started = True
        for i in range(len(self.actors)):
            for _ in range(self.inflight):
                self.submit(i)

    def submit(self, i: int) -> None:
        method, kwargs = self.call(i)
        self.pending[getattr(self.actors[i], method).remote(**kwargs)] = i

    def next(self) -> tuple[int, Any]:
        while True:
            [ref], _ = self.ray.wait(list(self.pending), num_returns=1)
            out = self.take(ref)
            if out is not None:
                return out

    def ready(self) -> list[tuple[int, Any]]:
        """The calls finished by now (none waited for), their actors asked again."""
        if not self.pending:
            return []
        done, _ = self.ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
        return [out for out in map(self.take, done) if out is not None]

    def take(self, ref: Any) -> tuple[int, Any] | None:
        i = self.pending.pop(ref, None)
        if i is None:  # a call of an actor replaced meanwhile
            return None
        try:
            result = self.ray.get(ref)
        except actor_died(self.ray):
            self.replace(i)
            return None
        self.submit(i)
        return i, result

    def replace(self, i: int) -> None:
        """Replaces dead actor ``i``: its outstanding calls are lost (counted), a new actor starts."""
        stale = [ref for ref, j in self.pending.items() if j == i]
        for ref in stale:
            del self.pending[ref]
        self.lost += 1 + len(stale)
        self.ray.kill(self.actors[i], no_restart=True)
        self.restarts[i] += 1
        self.actors[i] = self.remote.remote(*self.make_args(i, self.restarts[i]))
        for _ in range(self.inflight if self.started else 0):
            self.submit(i)

    def nodes(self) -> list[str]:
        """The id of the node each actor runs on."""
        ray = self.ray
        return ray.get([a.__ray_call__.remote(lambda _: ray.get_runtime_context().get_node_id()) for a in self.actors])

    def close(self) -> None:
        """Kills every actor (their calls in flight die with them)."""
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)
        self.pending.clear()
