"""Every agent's short seeded run gives the records recorded before issue 20's refactor
(tests/data/golden_runs.json; see tests/data/make_golden_runs.py): moving code into the training
layer changed nothing any agent learns. Each run goes through the one contract,
``pymbrl.agents.train(config, run_dir, callbacks=...)``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from golden_runs import RUNS, golden_config, record

GOLDEN = json.loads((Path(__file__).parents[1] / "data" / "golden_runs.json").read_text())


# The records were made on an AMD EPYC; another CPU runs other kernels of torch and MKL (chosen by
# its instruction set), whose float sums round differently. On an Intel Xeon with AVX-512 the
# largest relative difference over the six runs was 2.4e-4 (MBPO's return, after its model
# rollouts), the others' at most 6e-6; counts, keys and lengths stay exact.
REL_TOL = 2e-3


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("name", list(RUNS))
def test_the_golden_run_gives_the_recorded_records(tmp_path, name):
    records, expected = record(name, golden_config(name), tmp_path / "run"), GOLDEN[name]
    assert len(records) == len(expected), [s for s, _ in records]
    for got, want in zip(records, expected):
        assert same(got, want), (got, want)


@pytest.mark.parametrize("name", list(RUNS))
def test_every_agent_loads_from_its_run_directory_acts_and_plays(tmp_path, name):
    """One contract for all six: the run directory holds config.yaml, log.csv and TensorBoard events;
    ``pymbrl.agents.load`` gives an agent that acts on one observation and on a batch, and plays
    an episode of ``make_env`` through the training layer's evaluation."""
    import numpy as np

    from pymbrl import agents
    from pymbrl.training.agent import evaluate

    config = golden_config(name)
    run_dir = tmp_path / "run"
    agents.train(config, run_dir)
    assert (run_dir / "config.yaml").is_file()
    assert list(run_dir.rglob("log.csv")) and list(run_dir.rglob("events.out.tfevents.*"))
    agent = agents.load(run_dir)
    env = agents.module(name).make_env(config)
    obs, _ = env.reset(seed=0)
    single = agent.act(obs)
    if hasattr(agent, "reset"):
        agent.reset()
    batch = agent.act(np.stack([obs, obs, obs]))
    assert len(batch) == 3 and np.shape(batch[0]) == np.shape(single)
    assert env.action_space.contains(np.asarray(single, dtype=env.action_space.dtype).reshape(env.action_space.shape))
    if hasattr(agent, "reset"):
        agent.reset()
    returns = evaluate(agent, env, 1, seed=0)
    env.close()
    assert len(returns) == 1 and np.isfinite(returns[0])
