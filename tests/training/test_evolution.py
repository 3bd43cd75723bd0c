"""pymbrl.training.evolution: CMA-ES finds an optimum, resumes where it stopped, keeps numpy's global
generator as it was, and continues bit for bit from its data-only checkpoint, which refuses files of
another size, population, cma version or content."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pymbrl.training.evolution import evolve, load_strategy, save_strategy, strategy_fields

TARGET = np.array([0.5, -0.3, 0.8, 0.0, -0.6])
ES = dict(sigma0=0.5, popsize=8)


class Stop(Exception):
    pass


def sphere(candidates: np.ndarray) -> np.ndarray:
    assert candidates.shape == (8, 5)
    return -((candidates - TARGET) ** 2).sum(1)


def test_evolve_finds_the_optimum_of_a_sphere():
    es, history = evolve(sphere, 5, **ES, generations=60, seed=0)
    assert len(history) == 60 and [h["generation"] for h in history] == list(range(1, 61))
    assert all(h["worst"] <= h["mean"] <= h["best"] for h in history)
    np.testing.assert_allclose(es.result.xfavorite, TARGET, atol=0.05)
    assert history[-1]["best"] > -1e-3


def test_evolve_resumes_where_it_stopped():
    """10 generations, then the same es and history continued to 20: the same as 20 at once."""
    calls = []

    def counted(candidates):
        calls.append(len(candidates))
        return sphere(candidates)

    es, history = evolve(counted, 5, **ES, generations=10, seed=3)
    assert len(history) == 10 and len(calls) == 10
    seen = []
    es, history = evolve(counted, 5, **ES, generations=20, seed=3, es=es, history=history,
                         after_generation=lambda es, h: seen.append(len(h)))
    assert len(history) == 20 and len(calls) == 20 and seen == list(range(11, 21))
    assert [h["generation"] for h in history] == list(range(1, 21))
    assert np.mean([h["best"] for h in history[-5:]]) > np.mean([h["best"] for h in history[:5]])
    _, straight = evolve(sphere, 5, **ES, generations=20, seed=3)
    assert straight == history
    # Nothing left to do: the history comes back as it was.
    _, done = evolve(counted, 5, **ES, generations=20, es=es, history=history)
    assert done == history and len(calls) == 20


def test_evolve_has_its_own_generator_and_leaves_the_global_one_alone():
    """cma would draw from numpy's global generator (its TPA step-size rule, used from 300
    parameters on, does so in every tell): evolve leaves that state as it was."""
    for num_params in (5, 300):
        np.random.seed(123)
        outer = np.random.get_state()[1].copy()
        evolve(lambda c: -(c ** 2).sum(1), num_params, sigma0=0.1, popsize=8, generations=5, seed=4)
        assert (np.random.get_state()[1] == outer).all() and np.random.get_state()[2] == 624


def exact_fields(es):
    """Every saved field of a strategy, exactly (arrays as bytes, numbers as repr)."""
    def exact(value):
        if isinstance(value, np.ndarray):
            return value.dtype.str, value.shape, value.tobytes()
        if isinstance(value, (list, tuple)):
            return tuple(exact(v) for v in value)
        if isinstance(value, dict):
            return tuple(sorted((k, exact(v)) for k, v in value.items()))
        return repr(value)
    return {key: exact(value) for key, value in strategy_fields(es).items()}


@pytest.mark.parametrize("num_params, stop", [(5, 7), (5, 1), (300, 3)], ids=["csa", "csa-first", "tpa"])
def test_a_saved_strategy_continues_bit_for_bit(tmp_path, num_params, stop):
    """Saved with save_strategy after generation ``stop`` (data only) and loaded into a new
    process's state, the evolution asks for the same candidates, gets the same history and ends
    with every field of the strategy equal to the uninterrupted one's -- with the step-size rules
    of small (CSA) and large (TPA) problems -- and gives back the fitness generator's state."""
    target = np.linspace(-1, 1, num_params)

    def recorded(seen):
        def fitness(candidates):
            seen.append(candidates.copy())
            return -((candidates - target) ** 2).sum(1)
        return fitness

    straight_seen = []
    straight_es, straight = evolve(recorded(straight_seen), num_params, **ES, generations=12, seed=4)
    path = tmp_path / "c.es.pt"
    generator = torch.Generator().manual_seed(7)

    def stop_after(es, history):
        save_strategy(path, es, history, generator.get_state(), 4)
        if len(history) == stop:
            raise Stop

    seen = []
    with pytest.raises(Stop):
        evolve(recorded(seen), num_params, **ES, generations=12, seed=4, after_generation=stop_after)
    np.random.seed(999)  # whatever the process does in between
    es, history, state = load_strategy(path, num_params, **ES)
    assert torch.equal(state, generator.get_state()) and len(history) == stop
    es, resumed = evolve(recorded(seen), num_params, **ES, generations=12, seed=4, es=es, history=history)
    assert resumed == straight
    assert len(seen) == len(straight_seen) and all(np.array_equal(a, b) for a, b in zip(seen, straight_seen))
    assert exact_fields(es) == exact_fields(straight_es)
    assert np.array_equal(es.result.xfavorite, straight_es.result.xfavorite) and es.sigma == straight_es.sigma


def test_a_strategy_of_another_size_or_cma_version_is_refused(tmp_path):
    es, history = evolve(lambda c: -(c ** 2).sum(1), 5, sigma0=0.1, popsize=8, generations=2)
    path = tmp_path / "c.es.pt"
    save_strategy(path, es, history, None, 0)
    assert load_strategy(path, 5, sigma0=0.1, popsize=8)[2] is None
    with pytest.raises(ValueError, match=f"^{path}: num_params: expected 6"):
        load_strategy(path, 6, sigma0=0.1, popsize=8)
    with pytest.raises(ValueError, match="^popsize: .* population 8, got 9"):
        load_strategy(path, 5, sigma0=0.1, popsize=9)
    saved = torch.load(path, weights_only=True)
    for key, value, message in (("cma", "0.0.1", "cma: expected"), ("format", "other", "format: expected"),
                                ("fields", {".sigma": {"kind": "python", "value": -1.0}}, "sigma"),
                                ("fields", {**saved["fields"], ".x": {"kind": "code", "value": "print"}},
                                 "kind 'code'"),
                                ("fields", {**saved["fields"], "sm.C": {"kind": "array", "value": torch.zeros(2)}},
                                 r"sm.C: expected float64 array \(5, 5\)"),
                                ("history", [{"generation": 2, "best": 0.0, "mean": 0.0, "worst": 0.0}], "history"),
                                ("generator", torch.zeros(3), "generator")):
        torch.save({**saved, key: value}, path)
        with pytest.raises(ValueError, match=message):
            load_strategy(path, 5, sigma0=0.1, popsize=8)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=f"^{path}: corrupt"):
        load_strategy(path, 5, sigma0=0.1, popsize=8)


def test_evolve_refuses_bad_fitness_and_settings():
    with pytest.raises(ValueError, match="fitness"):
        evolve(lambda c: np.zeros(3), 2, sigma0=0.1, popsize=4, generations=1)
    with pytest.raises(ValueError, match="fitness"):
        evolve(lambda c: np.full(len(c), np.nan), 2, sigma0=0.1, popsize=4, generations=1)
    with pytest.raises(ValueError, match="popsize"):
        evolve(lambda c: np.zeros(len(c)), 2, sigma0=0.1, popsize=1, generations=1)
    with pytest.raises(ValueError, match="sigma0"):
        evolve(lambda c: np.zeros(len(c)), 2, sigma0=-1.0, popsize=4, generations=1)
