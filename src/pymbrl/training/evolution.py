"""An evolution strategy as a resumable run: CMA-ES (the ``cma`` package) maximising a fitness,
generation by generation, and its checkpoint as data only.

:func:`evolve` runs generations until there are enough, calling a hook after each (for
checkpoints); :func:`save_strategy` writes a paused evolution (the strategy's state, its private
generator, the fitness history and the state of the fitness's own generator) as a ``torch.save`` of
tensors and plain types, never a pickled object, and :func:`load_strategy` reads it back so that the
evolution continues bit for bit as the uninterrupted one would have (with the same cma version).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pymbrl._checks import integer, real
from pymbrl._extras import optional_imports
from pymbrl.training.checkpoint import atomic_write, field, load_torch


def new_strategy(num_params: int, *, sigma0: float, popsize: int, seed: int = 0) -> Any:
    """A fresh CMA-ES over ``num_params`` parameters, starting at 0 with step size ``sigma0`` and
    population ``popsize``.

    cma samples with numpy's global generator unless given its own ``randn``: a private
    RandomState keeps runs reproducible and leaves the caller's global state alone; it is the
    strategy's ``opts["randn"].__self__``, which :func:`save_strategy` saves.
    """
    with optional_imports():
        import cma
    integer(num_params, "num_params")
    real(sigma0, "sigma0", low=0.0)
    if integer(popsize, "popsize") < 2:
        raise ValueError(f"popsize: expected at least 2 (CMA-ES ranks candidates), got {popsize}")
    return cma.CMAEvolutionStrategy(np.zeros(num_params), sigma0,
                                    {"popsize": popsize, "seed": np.nan, "verbose": -9,
                                     "randn": np.random.RandomState(seed % 2**32).randn})


def _generation(es: Any, fitness: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """One ask-evaluate-tell of ``es``; returns the scores float64 [P]."""
    candidates = np.asarray(es.ask())
    scores = np.asarray(fitness(candidates), dtype=np.float64)
    if scores.shape != (len(candidates),) or not np.all(np.isfinite(scores)):
        raise ValueError(f"fitness: expected {len(candidates)} finite returns, got {scores!r}")
    # cma's TPA step-size rule (used from 300 parameters on) draws from numpy's global generator
    # for a self-check that does not change the result; the caller's global state is kept.
    global_state = np.random.get_state()
    try:
        es.tell(list(candidates), (-scores).tolist())
    finally:
        np.random.set_state(global_state)
    return scores


def evolve(fitness: Callable[[np.ndarray], np.ndarray], num_params: int, *, sigma0: float, popsize: int,
           generations: int, seed: int = 0, es: Any = None, history: list[dict] | None = None,
           after_generation: Callable[[Any, list[dict]], Any] | None = None) -> tuple[Any, list[dict]]:
    """Maximises ``fitness`` (candidates float64 [P, num_params] -> mean returns [P]) with CMA-ES
    (:func:`new_strategy`) until ``generations`` generations are done. ``es`` and ``history``
    continue a stopped run (see :func:`load_strategy`); ``after_generation(es, history)`` is called
    after each generation (for checkpoints).

    Returns the evolution strategy (its ``result.xfavorite`` is the distribution mean) and one
    record per generation: ``generation`` (from 1) and the ``best``, ``mean`` and ``worst`` fitness.
    """
    if es is None:
        es = new_strategy(num_params, sigma0=sigma0, popsize=popsize, seed=seed)
    history = list(history or [])
    while len(history) < generations:
        scores = _generation(es, fitness)
        history.append({"generation": len(history) + 1, "best": float(scores.max()), "mean": float(scores.mean()),
                        "worst": float(scores.min())})
        if after_generation is not None:
            after_generation(es, history)
    return es, history


# --------------------------------------------------------------------------------------------------
# The checkpoint

# The parts of a CMAEvolutionStrategy whose plain fields (arrays, numbers, lists and dicts of them)
# are its state: the distribution (mean, sigma, C, B, D, evolution paths, step-size rule), the
# counters (iterations, evaluations, eigendecompositions), the last population's fitness and the
# best solution. Everything else is rebuilt by the constructor (options, parameters, functions) or
# is bookkeeping that later generations do not read (archives of sent solutions, logger, timer).
PARTS = ("", "sm", "adapt_sigma", "sigma_vec", "best", "best.last", "fit")
FORMAT, VERSION = "pymbrl-cma-es", 1
NUMBERS = (bool, int, float, type(None))
DTYPES = ("float64", "float32", "int64", "int32", "bool")


def _part(es: Any, part: str) -> Any:
    for name in filter(None, part.split(".")):
        es = getattr(es, name, None)
    return es


def _is_leaf(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is plain data the strategy's state is made of."""
    if isinstance(value, np.ndarray):
        return value.dtype.name in DTYPES
    if isinstance(value, (np.floating, np.integer, np.bool_)) or type(value) in NUMBERS:
        return True
    if depth < 2 and type(value) in (list, tuple):
        return all(_is_leaf(v, depth + 1) for v in value)
    if depth < 2 and type(value) is dict:
        return all(isinstance(k, str) and _is_leaf(v, depth + 1) for k, v in value.items())
    return False


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"kind": "array", "value": torch.from_numpy(value.copy())}
    if isinstance(value, np.generic):
        return {"kind": "numpy", "dtype": value.dtype.name, "value": value.item()}
    if isinstance(value, (list, tuple)):
        return {"kind": type(value).__name__, "value": [_encode(v) for v in value]}
    if isinstance(value, dict):
        return {"kind": "dict", "value": {k: _encode(v) for k, v in value.items()}}
    return {"kind": "python", "value": value}


def _decode(encoded: Any, where: str, depth: int = 0) -> Any:
    """Undoes :func:`_encode`, refusing anything it cannot have written."""
    if not isinstance(encoded, dict) or "kind" not in encoded or "value" not in encoded or depth > 2:
        raise ValueError(f"{where}: expected an encoded field, got {type(encoded).__name__}")
    kind, value = encoded["kind"], encoded["value"]
    if kind == "array" and isinstance(value, torch.Tensor) and str(value.dtype).removeprefix("torch.") in DTYPES:
        array = value.numpy()
        if array.dtype.kind == "f" and np.isnan(array).any():
            raise ValueError(f"{where}: expected no NaN, got {int(np.isnan(array).sum())}")
        return array
    if kind == "numpy" and encoded.get("dtype") in DTYPES and type(value) in NUMBERS[:3]:
        if isinstance(value, float) and math.isnan(value):
            raise ValueError(f"{where}: expected a number, got NaN")
        return np.dtype(encoded["dtype"]).type(value)
    if kind == "python" and type(value) in NUMBERS:
        if isinstance(value, float) and math.isnan(value):
            raise ValueError(f"{where}: expected a number, got NaN")
        return value
    if kind in ("list", "tuple") and isinstance(value, list):
        items = [_decode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
        return items if kind == "list" else tuple(items)
    if kind == "dict" and isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _decode(v, f"{where}[{k!r}]", depth + 1) for k, v in value.items()}
    raise ValueError(f"{where}: expected an array, number, list or dict, got kind {kind!r} holding "
                     f"{type(value).__name__}")


def strategy_fields(es: Any) -> dict[str, Any]:
    """The strategy's state: "part.name" -> value for every plain field of the parts in :data:`PARTS`."""
    fields = {}
    for part in PARTS:
        obj = _part(es, part)
        for name, value in vars(obj).items() if obj is not None else ():
            if _is_leaf(value):
                fields[f"{part}.{name}"] = value
    return fields


def save_strategy(path: str | os.PathLike, es: Any, history: list[dict], generator_state: torch.Tensor | None,
                  seed: int) -> None:
    """Writes a paused evolution to ``path`` (crash-safely) as data only: ``es``'s fields (see
    :func:`strategy_fields`; fields that are the same array are saved once, so that they stay one
    array), its private generator's state, the ``seed`` it was made with, the fitness ``history``
    and ``generator_state`` (the fitness's own torch generator, or None). :func:`load_strategy`
    reads it back."""
    with optional_imports():
        import cma

    seen: dict[int, str] = {}
    fields = {}
    for key, value in strategy_fields(es).items():
        if isinstance(value, np.ndarray) and id(value) in seen:
            fields[key] = {"kind": "alias", "value": seen[id(value)]}
        else:
            if isinstance(value, np.ndarray):
                seen[id(value)] = key
            fields[key] = _encode(value)
    name, keys, position, has_gauss, cached = es.opts["randn"].__self__.get_state()
    atomic_write(path, lambda f: torch.save({
        "format": FORMAT, "version": VERSION, "cma": cma.__version__, "seed": seed,
        "num_params": int(es.N), "popsize": int(es.popsize), "fields": fields,
        "randn": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "history": history, "generator": generator_state}, f))


def load_strategy(path: str | os.PathLike, num_params: int, *, sigma0: float, popsize: int
                  ) -> tuple[Any, list[dict], torch.Tensor | None]:
    """The evolution :func:`save_strategy` paused in ``path``: (strategy, history, the fitness
    generator's state or None). The strategy is a fresh one of the same size, advanced by two
    generations so that every field exists, with every saved field then put back, so that it
    continues bit for bit as the saved one would have (the same cma version is required for that).

    Raises ValueError naming the file and field for a corrupt, truncated or edited file, or one
    saved for another number of parameters, population or cma version.
    """
    with optional_imports():
        import cma

    path = Path(path)
    saved = field(load_torch(path), dict, str(path), expected="a dict")

    def at(name: str) -> str:
        return f"{path}: {name}"

    if saved.get("format") != FORMAT or saved.get("version") != VERSION:
        raise ValueError(f"{at('format')}: expected {FORMAT} version {VERSION}, got "
                         f"{saved.get('format')!r} version {saved.get('version')!r}")
    if saved.get("cma") != cma.__version__:
        raise ValueError(f"{at('cma')}: expected the evolution to be saved by the installed cma {cma.__version__} "
                         f"(another version may not continue it exactly), got {saved.get('cma')!r}; install that "
                         f"version or delete the file to restart the evolution")
    if saved.get("num_params") != num_params:
        raise ValueError(f"{at('num_params')}: expected {num_params} parameters, got {saved.get('num_params')!r}")
    if saved.get("popsize") != popsize:
        raise ValueError(f"popsize: {path} holds an evolution of population {saved.get('popsize')!r}, got {popsize}")
    seed = field(saved.get("seed"), int, at("seed"), expected="an int")
    history = field(saved.get("history"), list, at("history"), lambda h: len(h) >= 1, "a list of generations")
    for i, record in enumerate(history):
        field(record, dict, at(f"history[{i}]"), lambda r: set(r) == {"generation", "best", "mean", "worst"}
              and r["generation"] == i + 1 and all(isinstance(r[k], float) and math.isfinite(r[k])
                                                   for k in ("best", "mean", "worst")),
              f"{{'generation': {i + 1}, 'best', 'mean', 'worst': finite floats}}")
    generator = saved.get("generator")
    if generator is not None:
        field(generator, torch.Tensor, at("generator"), lambda g: g.dtype == torch.uint8 and g.dim() == 1,
              "a uint8 generator state")
    randn = field(saved.get("randn"), dict, at("randn"), expected="a dict")
    keys = field(randn.get("keys"), torch.Tensor, at("randn.keys"),
                 lambda k: k.shape == (624,) and k.dtype == torch.int64 and bool(((k >= 0) & (k < 2**32)).all()),
                 "624 int64 words in [0, 2**32)")
    position = field(randn.get("position"), int, at("randn.position"), lambda p: 0 <= p <= 624, "an int in [0, 624]")
    has_gauss = field(randn.get("has_gauss"), int, at("randn.has_gauss"), lambda g: g in (0, 1), "0 or 1")
    cached = field(randn.get("cached"), float, at("randn.cached"), math.isfinite, "a finite float")

    fields = field(saved.get("fields"), dict, at("fields"), expected="a dict")
    es = new_strategy(num_params, sigma0=sigma0, popsize=popsize, seed=seed)
    # Two generations: the TPA step-size rule makes some fields only at the second.
    for _ in range(2):
        _generation(es, lambda candidates: -np.arange(len(candidates), dtype=np.float64))
    fresh = strategy_fields(es)
    decoded: dict[str, Any] = {}
    for key, encoded in fields.items():
        part, _, name = key.rpartition(".")
        if part not in PARTS or not name.isidentifier() or _part(es, part) is None:
            raise ValueError(f"{at('fields')}: expected fields of {list(PARTS)}, got {key!r}")
        if isinstance(encoded, dict) and encoded.get("kind") == "alias":
            target = encoded.get("value")
            if not isinstance(decoded.get(target), np.ndarray):
                raise ValueError(f"{at(key)}: expected an alias of an earlier array field, got {target!r}")
            decoded[key] = decoded[target]
            continue
        value = decoded[key] = _decode(encoded, at(key))
        if key in fresh:
            before = fresh[key]
            if _describe(value) != _describe(before) and value is not None and before is not None:
                raise ValueError(f"{at(key)}: expected {_describe(before)}, got {_describe(value)}")
    sigma = decoded.get(".sigma")
    if not (isinstance(sigma, (float, np.floating)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"{at('.sigma')}: expected a finite step size > 0, got {sigma!r}")
    for key in (".mean", ".C", "sm.C", "sm.B", "sm.D"):
        if key not in decoded or not np.isfinite(decoded[key]).all():
            raise ValueError(f"{at(key)}: expected finite values, got {_describe(decoded.get(key))}")
    if decoded.get(".countiter") != len(history):
        raise ValueError(f"{at('.countiter')}: expected {len(history)} (one per generation in the history), got "
                         f"{decoded.get('.countiter')!r}")

    for key in fresh.keys() - decoded.keys():  # fields the saved strategy did not have yet
        part, _, name = key.rpartition(".")
        delattr(_part(es, part), name)
    for key, value in decoded.items():
        part, _, name = key.rpartition(".")
        setattr(_part(es, part), name, value)
    es.opts["randn"].__self__.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, cached))
    return es, history, generator


def _describe(value: Any) -> str:
    """What a strategy field is, as far as a saved one must match a fresh one: an array's dtype and
    shape, or the kind of its value (cma keeps some numbers as floats first, numpy floats later)."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array {value.shape}"
    if isinstance(value, (bool, np.bool_)):
        return "a bool"
    if isinstance(value, (int, np.integer)):
        return "an int"
    if isinstance(value, (float, np.floating)):
        return "a float"
    return "a list" if isinstance(value, (list, tuple)) else type(value).__name__
