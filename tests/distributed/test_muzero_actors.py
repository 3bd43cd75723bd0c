"""MuZero's self-play on Ray actors, on a simulated cluster of one-CPU nodes: the actors run on
different nodes, and when nodes are removed their actors are replaced and the run goes on (the
calls lost with them counted)."""

from __future__ import annotations

import math

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from pymbrl.agents import muzero  # noqa: E402
from pymbrl.training import Callbacks  # noqa: E402

SMALL = dict(env="CartPole-v1", num_envs=4, num_simulations=4, batch_size=16, warmup_steps=300, hidden_size=16,
             unroll_steps=3, td_steps=5, updates_per_step=0.05, eval_episodes=2, actors=2, actor_moves=8)


@pytest.fixture(scope="module")
def cluster():
    import os
    import sys

    # The head runs no actor, so the two actors are on two of the three workers.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(3)]
    ray.init(address=cluster.address, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}})
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


def test_actors_play_on_different_nodes_and_a_removed_nodes_actor_is_replaced(cluster, tmp_path):
    cluster, workers = cluster
    removed = []

    class RemoveANode(Callbacks):
        def on_record(self, stage, record):
            if not removed:
                # Two of the three workers go (one actor at least dies with them), two fresh ones come.
                for node in workers[:2]:
                    cluster.remove_node(node)
                for _ in range(2):
                    cluster.add_node(num_cpus=1)
                removed.append(record)

    config = muzero.MuZeroConfig(steps=1200, eval_every=400, **SMALL)
    history = muzero.train(config, tmp_path / "run", callbacks=RemoveANode()).history
    assert history[0]["actor_nodes"] == 2  # one actor per node while every node was there
    assert history[-1]["step"] == 1200 and math.isfinite(history[-1]["loss"])
    assert history[-1]["actor_nodes"] == 2  # the replacement took the free node
    assert history[-1]["actor_calls_lost"] >= 1


def test_ctrl_c_stops_the_driver_every_actor_and_ray_then_the_run_resumes_with_actors(tmp_path):
    """pymbrl train muzero --actors 2 on a Ray it starts itself: SIGINT mid-run stops within seconds,
    leaves no process (no actor, raylet or GCS), and the printed command resumes and finishes it."""
    from test_cli import _interrupt, _run

    from pymbrl.training import curves

    run = tmp_path / "run"
    args = ["train", "muzero", "--actors", "2", "--steps", "20000", "--set", "num_envs=4", "--set", "num_simulations=4",
            "--set", "batch_size=16", "--set", "warmup_steps=300", "--set", "hidden_size=16",
            "--set", "eval_every=600", "--set", "eval_episodes=2", "--set", "checkpoint_every=600", "--run-dir", str(run)]
    _interrupt(tmp_path, args, lambda: (run / "checkpoint" / "state.pt").exists())
    done = curves.read_log(run / "log.csv")[-1]["step"]
    _run(tmp_path, ["train", "muzero", "--run-dir", str(run), "--steps", str(done + 1200)])
    records = curves.read_log(run / "log.csv")
    assert records[-1]["step"] == done + 1200 and records[-1]["actor_nodes"] == 1
