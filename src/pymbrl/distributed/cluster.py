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
