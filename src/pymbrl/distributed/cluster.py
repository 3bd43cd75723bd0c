"""Joining a Ray cluster, or starting one on this machine."""

from __future__ import annotations

import os
import sys
from typing import Any

from pymbrl.distributed.pool import ray_module


def connect(address: str = "") -> tuple[Any, bool]:
    """(the ``ray`` module, whether this call started Ray). With ``address`` it joins that cluster
    (``ray start --head`` printed it), else it starts Ray on this machine; if this process is
    already connected it stays so. The actors import the pymbrl this process imports (its
    ``sys.path`` goes to them), so a source tree or an installed wheel work alike."""
    ray = ray_module()
    if ray.is_initialized():
        return ray, False
    path = os.pathsep.join(p for p in sys.path if p)
    # "local" starts a Ray of its own even where another runs here (plain ray.init() would join it).
    ray.init(address=address or "local", include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
    return ray, True


def check_cpus(ray: Any, wanted: dict[str, int]) -> None:
    """ValueError naming the fields when the actors they ask for (one CPU each) need more CPUs than
    the cluster has: Ray would otherwise wait for them forever."""
    need, have = sum(wanted.values()), int(ray.cluster_resources().get("CPU", 0))
    if need > have:
        asked = " + ".join(f"{name}={n}" for name, n in wanted.items() if n)
        raise ValueError(f"{'/'.join(n for n, v in wanted.items() if v)}: {asked} actors need {need} CPUs, one each, "
                         f"but the Ray cluster has {have}; ask for fewer or add nodes (ray start --address ...)")
