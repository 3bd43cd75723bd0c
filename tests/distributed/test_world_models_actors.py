"""World Models' CMA-ES fitness shared by Ray actors on a simulated cluster, and the scatter/gather
group under it: chunks come back in order, and a chunk whose actor was killed runs again."""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")
from golden_runs import FRAMES_ID, golden_config
from ray.cluster_utils import Cluster

from pymbrl.agents import world_models as wm
from pymbrl.distributed.group import ActorGroup


@pytest.fixture
def cluster():  # one per test: a killed actor's CPU is not always free again at once
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}})
    yield cluster
    ray.shutdown()
    cluster.shutdown()


class Square:
    """A worker defined in this test module, which actors cannot import: sent by value instead."""

    def __init__(self, index):
        self.index = index

    def run(self, x, pause=0.0):
        time.sleep(pause)
        return x * x, self.index


def test_chunks_come_back_in_order_and_a_killed_actors_chunk_runs_again(cluster):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    group = ActorGroup(Square, lambda i, restart: (i,), 2)
    try:
        out = group.map("run", [{"x": x} for x in range(5)])
        assert [v for v, _ in out] == [0, 1, 4, 9, 16] and {i for _, i in out} == {0, 1}
        victim = group.actors[1]
        refs = [{"x": 3, "pause": 2.0}, {"x": 4, "pause": 2.0}]
        ray.kill(victim, no_restart=True)
        assert [v for v, _ in group.map("run", refs)] == [9, 16] and group.lost >= 1
    finally:
        group.close()


def test_collection_and_evolution_shared_by_actors_on_two_nodes(cluster, tmp_path):
    # "module:id" makes gymnasium import the module that registers the env, in the actors too.
    config = dataclasses.replace(golden_config("world-models"), env=f"golden_runs:{FRAMES_ID}", actors=2, popsize=8,
                                 generations=3)
    summary = wm.train(config, tmp_path / "run").summary
    assert len(list((tmp_path / "run" / "data").glob("rollout_*.npz"))) == config.rollouts
    assert [r["generation"] for r in summary["fitness"]] == [1, 2, 3]
    assert np.isfinite(summary["mean"])
    # The actors changed nothing the run is: the same directory resumes without them.
    wm.train(dataclasses.replace(config, actors=0), tmp_path / "run")
