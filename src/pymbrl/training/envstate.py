"""The state of a gymnasium env in the middle of an episode, captured into a checkpoint and restored,
so that a resumed run continues its episodes in progress bit for bit.

An env's state is known completely only where every layer of it, the env and each wrapper, is in
the tables below: :data:`ENV_ATTRIBUTES` (the classic-control tasks with discrete actions and
pymbrl's TicTacToe) and :data:`WRAPPER_ATTRIBUTES` (the wrappers ``gym.make`` adds). Add an entry
for an env of your own whose step and reset read and write nothing but the listed attributes and
its generator. The exact type is matched, as a subclass may hold more state.

Attribute kinds: ``"array"`` (a numpy array of the shape it has after a reset; float32 or float64
for a float array, as Acrobot resets to float32 and steps to float64), ``"board"`` (such an array of
-1, 0 and 1), ``"tiles"`` (such an array of 2048's tile exponents), ``"int"`` (>= 0), ``"int?"`` (an
int >= 0 or None), ``"sign"`` (-1 or 1), ``"bool"``.

The checks here (:func:`describe`, :func:`entries`, :func:`checked_array`,
:func:`check_generator_state`) also serve an agent checking the rest of what it saved with an env's
state (observations, infos, games in progress): each raises ValueError naming the field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pymbrl._extras import optional_imports
from pymbrl.envs.game2048 import Game2048Env, num_levels
from pymbrl.envs.tictactoe_env import TicTacToeEnv

with optional_imports():
    import gymnasium as gym
    from gymnasium.envs.classic_control import AcrobotEnv, CartPoleEnv, MountainCarEnv
    from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, TimeLimit

ENV_ATTRIBUTES: dict[type, dict[str, str]] = {
    CartPoleEnv: {"state": "array", "steps_beyond_terminated": "int?"},
    AcrobotEnv: {"state": "array"},
    MountainCarEnv: {"state": "array"},
    TicTacToeEnv: {"board": "board", "to_play": "sign", "over": "bool"},
    Game2048Env: {"board": "tiles", "over": "bool"},
}
"""Per env class, what its step and reset read and write besides its generator."""

# The env checker's flags only decide whether it checks again, never what a step returns.
WRAPPER_ATTRIBUTES: dict[type, dict[str, str]] = {
    TimeLimit: {"_elapsed_steps": "int"}, OrderEnforcing: {"_has_reset": "bool"}, PassiveEnvChecker: {},
}
"""Per wrapper class, its state (gymnasium keeps it in private fields, read here by name)."""

EXPECTED = {"bool": "a bool", "int": "an integer >= 0", "int?": "an integer >= 0 or None", "sign": "-1 or 1"}


def layers(env: gym.Env) -> list[tuple[gym.Env, dict[str, str]]] | None:
    """The env's wrappers, outermost first, then the env itself, each with its state attributes;
    None where a layer is not in the tables."""
    found = []
    while True:
        table = WRAPPER_ATTRIBUTES if isinstance(env, gym.Wrapper) else ENV_ATTRIBUTES
        attributes = table.get(type(env))
        if attributes is None:
            return None
        found.append((env, attributes))
        if not isinstance(env, gym.Wrapper):
            return found
        env = env.env


def capturable(env: gym.Env) -> bool:
    """Whether :func:`env_state` knows the whole state of ``env``."""
    return layers(env) is not None


def env_state(env: gym.Env) -> dict[str, Any] | None:
    """Everything an episode in progress in ``env`` depends on, as tensors and plain values (what
    ``torch.load(weights_only=True)`` reads back): ``layers``, [class name, {attribute: value}] per
    layer, outermost first, and the states of the env's (``np_random``) and its action space's
    (``action_space``) generators. None for an env whose state is not known completely (see the
    module's tables); ValueError naming ``env`` for one never reset."""
    found = layers(env)
    if found is None:
        return None
    captured = []
    for layer, attributes in found:
        values: dict[str, Any] = {}
        for name, kind in attributes.items():
            value = getattr(layer, name)
            if kind in ("array", "board", "tiles"):
                if value is None:
                    raise ValueError(f"env: expected an env that has been reset, got {env} before its first reset")
                values[name] = torch.from_numpy(np.array(value))
            elif kind == "bool":
                values[name] = bool(value)
            else:
                values[name] = None if value is None else int(value)
        captured.append([type(layer).__name__, values])
    return {"layers": captured, "np_random": env.unwrapped.np_random.bit_generator.state,
            "action_space": env.action_space.np_random.bit_generator.state}


def restore_env_state(env: gym.Env, state: Any, name: str = "state") -> None:
    """Puts ``env`` (reset at least once) back into a state :func:`env_state` returned (from an env
    of the same id). Everything is checked first: a refused state (ValueError naming the field, under ``name``)
    leaves the env as it was."""
    env_restorer(env, state, name)()


def env_restorer(env: gym.Env, state: Any, name: str = "state") -> Callable[[], None]:
    """Checks ``state`` for ``env`` (ValueError naming the field) and returns what then restores it,
    so that several envs can all be checked before any of them changes."""
    found = layers(env)
    if found is None:
        raise ValueError(f"{name}: {env} cannot be restored, as its whole state is not known "
                         f"(see pymbrl.training.envstate)")
    state = entries(state, ("layers", "np_random", "action_space"), name)
    captured = state["layers"]
    if not isinstance(captured, list) or len(captured) != len(found):
        raise ValueError(f"{name}.layers: expected a list of {len(found)} layers, got {describe(captured)}")
    updates: list[tuple[Any, str, Any]] = []
    for j, ((layer, attributes), entry) in enumerate(zip(found, captured)):
        field = f"{name}.layers[{j}]"
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0] == type(layer).__name__):
            raise ValueError(f"{field}: expected [{type(layer).__name__!r}, attributes], got {describe(entry)}")
        values = entries(entry[1], tuple(attributes), field)
        for attribute, kind in attributes.items():
            value, where = values[attribute], f"{field}.{attribute}"
            if kind in ("array", "board", "tiles"):
                if getattr(layer, attribute) is None:  # the reference for the shape and dtype is missing
                    raise ValueError(f"env: expected an env that has been reset, got {env} before its first reset")
                value = checked_array(value, np.array(getattr(layer, attribute)), where, any_float=kind == "array")
                if kind == "board" and not np.isin(value, (-1, 0, 1)).all():
                    raise ValueError(f"{where}: expected cells of -1, 0 or 1, got {value.tolist()}")
                if kind == "tiles" and not ((value >= 0) & (value < num_levels(len(value)))).all():
                    raise ValueError(f"{where}: expected tile exponents in [0, {num_levels(len(value))}), "
                                     f"got {value.tolist()}")
            elif not _is_kind(value, kind):
                raise ValueError(f"{where}: expected {EXPECTED[kind]}, got {describe(value)}")
            updates.append((layer, attribute, value))
    generators = [(env.unwrapped.np_random, state["np_random"], f"{name}.np_random"),
                  (env.action_space.np_random, state["action_space"], f"{name}.action_space")]
    for generator, generator_state, where in generators:
        check_generator_state(generator, generator_state, where)

    def restore() -> None:
        for layer, attribute, value in updates:
            setattr(layer, attribute, value)
        for generator, generator_state, _ in generators:
            generator.bit_generator.state = generator_state

    return restore


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int?" and value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    return value in (-1, 1) if kind == "sign" else value >= 0


def entries(value: Any, keys: tuple[str, ...], name: str) -> dict[str, Any]:
    """``value`` if it is a dict with exactly the keys ``keys``, else ValueError naming ``name``."""
    if not isinstance(value, dict) or set(value) != set(keys):
        got = sorted(map(str, value)) if isinstance(value, dict) else describe(value)
        raise ValueError(f"{name}: expected a dict with the keys {sorted(keys)}, got {got}")
    return value


def describe(value: Any) -> str:
    """``value`` for an error message: an array by its shape and dtype, anything long by its type."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 80 else f"a {type(value).__name__}"


def checked_array(value: Any, reference: np.ndarray, name: str, any_float: bool = False) -> np.ndarray:
    """``value`` (a CPU tensor) as a new numpy array, checked to have the shape and dtype of
    ``reference`` (with ``any_float``, float32 or float64 where ``reference`` is a float array)
    and, for floats, finite values; else ValueError naming ``name``."""
    if not isinstance(value, torch.Tensor) or value.device.type != "cpu":
        raise ValueError(f"{name}: expected a CPU tensor, got {describe(value)}")
    array = value.numpy().copy()
    floats = (np.dtype(np.float32), np.dtype(np.float64))
    dtypes = floats if any_float and reference.dtype in floats else (reference.dtype,)
    if array.shape != reference.shape or array.dtype not in dtypes:
        expected = " or ".join(str(d) for d in dtypes)
        raise ValueError(f"{name}: expected shape {reference.shape} and dtype {expected}, "
                         f"got shape {array.shape} and dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"{name}: expected finite values, got {array[~np.isfinite(array)][0]}")
    return array


def check_generator_state(generator: np.random.Generator, state: Any, name: str) -> None:
    """Refuses (ValueError naming ``name``) a state that ``generator``'s bit generator would not
    take, trying it on a scratch one."""
    scratch = type(generator.bit_generator)()
    try:
        scratch.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as error:
        raise ValueError(f"{name}: expected a {type(scratch).__name__} state, got {describe(state)} ({error})") \
            from None
