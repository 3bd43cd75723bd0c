"""MuZero on Ray actors, on a simulated cluster of one-CPU nodes: self-play actors on different
nodes, replaced when their nodes go (the calls lost with them counted); reanalysis and evaluation
actors beside them; Ctrl-C and a killed driver, then resumed; memory flat over a run."""

from __future__ import annotations

import math
import os

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster

from pymbrl.agents import muzero
from pymbrl.training import Callbacks

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
    # Each call starts from the newest weights, a replacement's first call too (tens of versions were
    # published by then: an actor left with its initial weights would lag by all of them).
    assert max(r["policy_lag"] for r in history) < 10 and history[-1]["updates"] > 20


def test_ctrl_c_stops_the_driver_every_actor_and_ray_then_the_run_resumes_with_actors(tmp_path):
    """pymbrl train muzero --actors 2 on a Ray it starts itself: SIGINT mid-run stops within seconds,
    leaves no process (no actor, raylet or GCS), and the printed command resumes and finishes it."""
    from support import interrupt_cli, run_cli

    from pymbrl.training import curves

    run = tmp_path / "run"
    args = ["train", "muzero", "--actors", "2", "--steps", "20000", "--set", "num_envs=4", "--set", "num_simulations=4",
            "--set", "batch_size=16", "--set", "warmup_steps=300", "--set", "hidden_size=16",
            "--set", "eval_every=600", "--set", "eval_episodes=2", "--set", "checkpoint_every=600",
            "--run-dir", str(run)]
    interrupt_cli(tmp_path, args, lambda: (run / "checkpoint" / "state.pt").exists())
    done = curves.read_log(run / "log.csv")[-1]["step"]
    run_cli(tmp_path, ["train", "muzero", "--run-dir", str(run), "--steps", str(done + 1200)])
    records = curves.read_log(run / "log.csv")
    assert records[-1]["step"] == done + 1200 and records[-1]["actor_nodes"] == 1


def test_reanalysis_and_evaluation_actors_beside_self_play_and_a_crashed_actor_replaced(cluster, tmp_path):
    import signal
    from pathlib import Path

    killed = []

    class CrashSelfPlay(Callbacks):
        def on_record(self, stage, record):
            if not killed:  # SIGKILL the self-play actor's process, as a crash would end it
                for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                    try:
                        if cmdline.read_bytes().startswith(b"ray::SelfPlayWorker"):
                            os.kill(int(cmdline.parent.name), signal.SIGKILL)
                            killed.append(cmdline.parent.name)
                    except OSError:  # gone meanwhile
                        pass

    config = muzero.MuZeroConfig(steps=1600, eval_every=400, **{**SMALL, "actors": 1}, reanalyse_batch=8,
                                 reanalyse_actors=1, eval_actors=1)
    history = muzero.train(config, tmp_path / "run", callbacks=CrashSelfPlay()).history
    assert len(killed) == 1
    steps = [r["step"] for r in history]  # an actor's call is 32 env steps: evaluations at the first past 400k
    assert len(steps) == 4 and steps == sorted(steps) and steps[-1] == 1600  # every evaluation logged, in order
    assert all(math.isfinite(r["return"]) for r in history)
    assert history[-1]["reanalysed"] > 0  # positions re-searched on the actor and written back
    assert history[-1]["actor_calls_lost"] >= 1  # the crashed actor's calls in flight


def test_games_further_behind_than_the_lag_bound_are_dropped_and_counted(cluster, tmp_path):
    # A bound of half a version: a game whose call began before the learner's latest version goes.
    config = muzero.MuZeroConfig(steps=1200, eval_every=600, **SMALL, max_policy_lag=0.25)
    history = muzero.train(config, tmp_path / "run").history
    assert history[-1]["stale_games"] > 0 and all(r["policy_lag"] == 0 for r in history)
    assert history[-1]["step"] == 1200 and math.isfinite(history[-1]["loss"])


def test_more_actors_than_the_cluster_has_cpus_is_refused_naming_them(cluster):
    config = muzero.MuZeroConfig(steps=800, **SMALL, reanalyse_batch=8, reanalyse_actors=1, eval_actors=1)
    with pytest.raises(ValueError, match=r"actors/reanalyse_actors/eval_actors: .* need 4 CPUs.* has 3"):
        muzero.train(config)


def test_driver_killed_then_resumed_on_the_same_cluster(cluster, tmp_path):
    """SIGKILL of the driver (no handler runs): Ray frees its actors, and the run resumes from its
    checkpoint with actors on the cluster that outlived it."""
    import signal
    import time

    from support import cli_process

    from pymbrl.training import curves

    cluster, _ = cluster
    run = tmp_path / "run"
    args = ["train", "muzero", "--actors", "2", "--ray-address", cluster.address, "--steps", "20000",
            *[f"--set={k}={v}" for k, v in SMALL.items() if k not in ("actors", "env")],
            "--set", "eval_every=400", "--set", "checkpoint_every=400", "--run-dir", str(run)]
    process, out = cli_process(args, tmp_path)
    try:
        deadline = time.monotonic() + 300
        while not (run / "checkpoint" / "state.pt").exists():
            assert process.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.1)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < 3:  # the dead driver's actors are gone
        assert time.monotonic() < deadline, ray.available_resources()
        time.sleep(0.5)
    done = curves.read_log(run / "log.csv")[-1]["step"]
    process, out = cli_process(["train", "muzero", "--run-dir", str(run), "--ray-address", cluster.address,
                                "--steps", str(done + 800)], tmp_path)
    assert process.wait(timeout=300) == 0, out.read_text()
    records = curves.read_log(run / "log.csv")
    assert records[-1]["step"] == done + 800 and records[-1]["actor_nodes"] == 2


def test_memory_stays_flat_over_a_time_budgeted_run(cluster):
    """Producers never outrun the store: the driver's count of objects it owns stays within the
    calls in flight, and its resident memory stops growing once the game buffer is full."""
    import time

    from ray._private.internal_api import memory_summary

    class Enough(Exception):
        pass

    worker = ray._private.worker.global_worker.core_worker
    samples, start = [], time.monotonic()

    class Sample(Callbacks):
        def on_progress(self, stage, done, total):
            if not samples or time.monotonic() - samples[-1][0] >= 1.0:
                rss = int(next(line for line in open("/proc/self/status") if line.startswith("VmRSS")).split()[1])
                plasma = float(memory_summary(stats_only=True).split("Plasma memory usage ")[1].split()[0])
                samples.append((time.monotonic(), worker.get_memory_store_size(), rss, plasma))
            if time.monotonic() - start > 40:
                raise Enough

    config = muzero.MuZeroConfig(steps=10**7, eval_every=10**6, buffer_size=2000, **SMALL)
    with pytest.raises(Enough):
        muzero.train(config, callbacks=Sample())
    late = [s for s in samples if s[0] - start > 20]  # the buffer is full by then
    assert len(late) >= 5, samples
    assert max(s[1] for s in samples) <= 4 * config.actors * 2 + 16, samples  # objects held: the calls in flight
    assert max(s[2] for s in late) - late[0][2] < 20_000, samples  # KiB: no growth with the games played
    assert max(s[3] for s in samples) < 16, samples  # MiB in the object store: the weights, a few versions
