"""MuZero (Schrittwieser et al., "Mastering Atari, Go, chess and shogi by planning with a learned
model", Nature 2020): planning with pymbrl's batched C++ search in the latent space of a learned
model. One file, top to bottom:

1. self-play: ``num_envs`` environments step together; at every step one batched search (MuZero's
   pUCT or Gumbel MuZero) runs from all their observations at once, the latent states staying on
   the network's device in the search's embedding pool; actions are drawn from the visit counts
   with a temperature that falls as training goes on; finished games go to the game buffer with
   their search statistics (root values, visit distributions);
2. training: positions sampled from the game buffer (by priority) with targets for ``unroll_steps``
   steps (actions, rewards, n-step values bootstrapped from root values, visit distributions); the
   model is unrolled along the stored actions, the gradient entering each dynamics step halved and
   each unrolled step's loss scaled by 1/K; optional reanalysis refreshes stored root values and
   policies with the latest network, in place;
3. evaluation: greedy search without exploration noise.

Two-player zero-sum games (``pymbrl/TicTacToe-v0``) use the search's convention: the reward is the
mover's and the discount is -1 (the next position's value is the opponent's), in the search and in
the value targets alike.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.classic_control import AcrobotEnv, CartPoleEnv, MountainCarEnv
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, TimeLimit
from torch.nn import functional as F

import pymbrl.envs  # noqa: F401  (registers pymbrl/TicTacToe-v0)
from pymbrl import mcts
from pymbrl._checks import integer, real
from pymbrl.envs import tictactoe
from pymbrl.envs.tictactoe_env import TicTacToeEnv
from pymbrl.agents.checkpoint import read_state, start_run
from pymbrl.models.muzero import (ConvMuZeroNetwork, MuZeroNetwork, scalar_to_support, scale_gradient,
                                  support_to_scalar)
from pymbrl.replay import GameBuffer


@dataclass
class MuZeroConfig:
    """Hyper-parameters. The search, unroll and target settings are the paper's (appendix C-G);
    sizes, learning rate and the training ratio are set for CartPole-scale tasks on a CPU."""

    num_envs: int = 16
    num_simulations: int = 50
    search: str = "muzero"  # or "gumbel" (Danihelka et al. 2022)
    discount: float = 0.997  # two-player games use -1 whatever this says
    td_steps: int = 10
    unroll_steps: int = 5
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4  # L2 on all weights, as the paper's 1e-4
    value_loss_weight: float = 0.25  # the Reanalyze appendix's weight, against value overfitting
    updates_per_step: float = 0.25  # gradient updates per env step, summed over the envs
    warmup_steps: int = 1000  # env steps of self-play before the first update
    buffer_size: int = 100_000  # positions
    prioritized: bool = True
    priority_alpha: float = 1.0
    priority_beta: float = 1.0
    temperatures: tuple[tuple[float, float], ...] = ((0.0, 1.0), (0.5, 0.5), (0.75, 0.25))
    """(fraction of the run's env steps, visit-count temperature from then on): the paper's 1, 0.5
    and 0.25 after 50% and 75% of training."""
    dirichlet_alpha: float = 0.25
    dirichlet_fraction: float = 0.25
    gumbel_considered_actions: int = 16
    reanalyse_batch: int = 0  # positions re-searched with the latest network per update (0: off)
    simulator: bool = False
    """AlphaZero mode (pymbrl/TicTacToe-v0 only): the search steps the true rules
    (:func:`pymbrl.envs.tictactoe.recurrent_fn`) and the network only gives values and priors; set
    ``unroll_steps=0`` with it, as nothing then uses the learned dynamics."""
    support_size: int = 10
    hidden_size: int = 64
    latent_size: int = 32

    @classmethod
    def for_env(cls, env_id: str, **changes: Any) -> MuZeroConfig:
        """The defaults with settings measured to work for the task of ``env_id`` (``ENV_SETTINGS``),
        then ``changes``."""
        return cls(**{**ENV_SETTINGS.get(env_id.split("-v")[0], {}), **changes})


ENV_SETTINGS: dict[str, dict[str, Any]] = {
    # Values reach ~260 with discount 0.997 (support 20 covers ~440); 50-step returns lean less on
    # stale root values (muzero-general's CartPole setting); alpha 0.5 tempers the priorities.
    # Measured over 40k steps: pUCT with td_steps 10 and alpha 1 reached 500 at 10k steps and fell
    # back to 150-200; pUCT with these settings reached 475 in 2 of 3 seeds (the third stayed near
    # 200); Gumbel MuZero on that third seed held 500 from 10k steps on.
    "CartPole": {"search": "gumbel", "num_simulations": 25, "td_steps": 50, "support_size": 20,
                 "priority_alpha": 0.5},
    # Values lie in [-1, 1]; 9-step returns reach the end of every game (Monte Carlo, as in AlphaZero).
    "pymbrl/TicTacToe": {"num_simulations": 25, "td_steps": 9, "support_size": 5},
}


def make_network(observation_space: gym.Space, num_actions: int, config: MuZeroConfig) -> torch.nn.Module:
    """An MLP network for vector observations, a residual conv network for [C, H, W] images."""
    shape = observation_space.shape
    if shape is not None and len(shape) == 1:
        return MuZeroNetwork(shape[0], num_actions, hidden_size=config.hidden_size, latent_size=config.latent_size,
                             support_size=config.support_size)
    if shape is not None and len(shape) == 3:
        return ConvMuZeroNetwork(tuple(shape), num_actions, support_size=config.support_size)
    raise ValueError(f"env_id: expected vector or [C, H, W] image observations, got {observation_space}")


class Searcher:
    """Batched search with a network: ``(obs [B, ...], legal bool [B, A] or None, temperature,
    noise) -> PolicyOutput``, the latents kept on the network's device."""

    def __init__(self, network: torch.nn.Module, config: MuZeroConfig, two_player: bool, seed: int):
        self.network, self.config = network, config
        self.discount = -1.0 if two_player else config.discount
        self.generator = np.random.default_rng(seed)
        self.device = next(network.parameters()).device
        self.recurrent_fn = self.simulated_step if config.simulator else self.learned_step

    def learned_step(self, embedding: torch.Tensor, action: torch.Tensor) -> tuple[mcts.RecurrentOutput, torch.Tensor]:
        out = self.network.recurrent_inference(embedding, action)
        # Value and reward decoded in one call: decoding is a good part of a simulation's cost.
        value, reward = support_to_scalar(torch.stack([out.value_logits, out.reward_logits]),
                                          self.config.support_size).unbind(0)
        discount = torch.full_like(value, self.discount)
        return mcts.RecurrentOutput(reward, discount, out.policy_logits, value), out.hidden_state

    def simulated_step(self, embedding: torch.Tensor, action: torch.Tensor) -> tuple[mcts.RecurrentOutput, torch.Tensor]:
        """AlphaZero: the true TicTacToe move, then the network's value and prior (legal moves only)
        at the new position; a finished game is worth 0 to the player who would move next."""
        rules, next_embedding = tictactoe.recurrent_fn(embedding, action)
        out = self.network.initial_inference(tictactoe_observation(next_embedding))
        over = rules.discount == 0
        value = torch.where(over, torch.zeros_like(out.value), out.value)
        return mcts.RecurrentOutput(rules.reward, rules.discount, out.policy_logits + rules.prior_logits, value), \
            next_embedding

    @torch.no_grad()
    def __call__(self, obs: np.ndarray | torch.Tensor, legal: np.ndarray | None, temperature: float,
                 noise: bool) -> mcts.PolicyOutput:
        c = self.config
        was_training = self.network.training
        self.network.eval()  # batch norm on running statistics while searching
        try:
            obs = torch.as_tensor(obs, device=self.device)
            out = self.network.initial_inference(obs)
            embedding = tictactoe_embedding(obs) if c.simulator else out.hidden_state
            root = mcts.Root(out.policy_logits, out.value, embedding)
            invalid = None if legal is None else torch.as_tensor(~legal, device=self.device)
            seed = int(self.generator.integers(2**63))
            if c.search == "gumbel":
                return mcts.gumbel_muzero_policy(root, self.recurrent_fn, c.num_simulations, invalid_actions=invalid,
                                                 max_num_considered_actions=c.gumbel_considered_actions,
                                                 gumbel_scale=1.0 if noise else 0.0, seed=seed)
            return mcts.muzero_policy(root, self.recurrent_fn, c.num_simulations, invalid_actions=invalid,
                                      dirichlet_alpha=c.dirichlet_alpha,
                                      dirichlet_fraction=c.dirichlet_fraction if noise else 0.0,
                                      temperature=temperature, seed=seed)
        finally:
            self.network.train(was_training)


def tictactoe_embedding(obs: torch.Tensor) -> torch.Tensor:
    """TicTacToe observations [B, 27] (see :class:`~pymbrl.envs.tictactoe_env.TicTacToeEnv`) -> the
    perfect model's embeddings [B, 10]: +1 on the mover's pieces, -1 on the opponent's, and a
    game-over flag (0: searches start from live positions)."""
    cells = obs[:, :9] - obs[:, 9:18]
    return torch.cat([cells, torch.zeros_like(cells[:, :1])], dim=1)


def tictactoe_observation(embedding: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`tictactoe_embedding` (X is to move where both have as many pieces)."""
    cells = embedding[:, :9]
    own, theirs = (cells > 0.5).to(cells.dtype), (cells < -0.5).to(cells.dtype)
    x_to_move = (own.sum(dim=1, keepdim=True) == theirs.sum(dim=1, keepdim=True)).to(cells.dtype)
    return torch.cat([own, theirs, x_to_move.expand(-1, 9)], dim=1)


def legal_mask(infos: list[dict], num_actions: int) -> np.ndarray | None:
    """bool [N, A] from the envs' ``info["legal_actions"]``, or None where the env has none."""
    if "legal_actions" not in infos[0]:
        return None
    return np.stack([np.asarray(info["legal_actions"], dtype=bool) for info in infos])


# What a step or a reset of these envs reads and writes besides their generator, by kind: "array"
# (the shape it has after a reset; float32 or float64 for a float array, as Acrobot resets to
# float32 and steps to float64), "board" (such an array of -1, 0 and 1), "int" (>= 0),
# "int?" (an int >= 0 or None), "sign" (-1 or 1), "bool". Restoring these and the generators
# continues a game in progress bit for bit. The exact type is matched, as a subclass may hold more
# state.
_ENV_ATTRIBUTES: dict[type, dict[str, str]] = {
    CartPoleEnv: {"state": "array", "steps_beyond_terminated": "int?"},
    AcrobotEnv: {"state": "array"},
    MountainCarEnv: {"state": "array"},
    TicTacToeEnv: {"board": "board", "to_play": "sign", "over": "bool"},
}
# The wrappers of gym.make and their state; the env checker's flags only decide whether it checks
# again, never what a step returns.
_WRAPPER_ATTRIBUTES: dict[type, dict[str, str]] = {
    TimeLimit: {"_elapsed_steps": "int"}, OrderEnforcing: {"_has_reset": "bool"}, PassiveEnvChecker: {},
}


def _layers(env: gym.Env) -> list[tuple[gym.Env, dict[str, str]]] | None:
    """The env's wrappers, outermost first, then the env itself, each with its state attributes;
    None where a layer is not in the tables above."""
    layers = []
    while True:
        table = _WRAPPER_ATTRIBUTES if isinstance(env, gym.Wrapper) else _ENV_ATTRIBUTES
        attributes = table.get(type(env))
        if attributes is None:
            return None
        layers.append((env, attributes))
        if not isinstance(env, gym.Wrapper):
            return layers
        env = env.env


def env_state(env: gym.Env) -> dict[str, Any] | None:
    """Everything a game in progress in ``env`` depends on, as tensors and plain values: the state
    attributes of the env and of each wrapper (``layers``: [class name, {attribute: value}],
    outermost first) and the states of the env's and its action space's generators. None for an
    env whose state is not known completely: one not built by ``gym.make`` from CartPole, Acrobot,
    MountainCar or pymbrl/TicTacToe, or wrapped in other wrappers."""
    layers = _layers(env)
    if layers is None:
        return None
    captured = []
    for layer, attributes in layers:
        values: dict[str, Any] = {}
        for name, kind in attributes.items():
            value = getattr(layer, name)
            if kind in ("array", "board"):
                values[name] = torch.from_numpy(np.array(value))
            elif kind == "bool":
                values[name] = bool(value)
            else:
                values[name] = None if value is None else int(value)
        captured.append([type(layer).__name__, values])
    return {"layers": captured, "np_random": env.unwrapped.np_random.bit_generator.state,
            "action_space": env.action_space.np_random.bit_generator.state}


def restore_env_state(env: gym.Env, state: Any, name: str = "state") -> None:
    """Puts ``env`` back into a state :func:`env_state` returned (from an env of the same id).
    Everything is checked first: a refused state (ValueError naming the field) leaves the env as
    it was."""
    _env_restorer(env, state, name)()


def _env_restorer(env: gym.Env, state: Any, name: str) -> Callable[[], None]:
    """Checks ``state`` for ``env`` (ValueError naming the field) and returns what then restores it,
    so that several envs can all be checked before any of them changes."""
    layers = _layers(env)
    if layers is None:
        raise ValueError(f"env: {env} cannot be restored; see pymbrl.agents.muzero.env_state")
    state = _entries(state, ("layers", "np_random", "action_space"), name)
    captured = state["layers"]
    if not isinstance(captured, list) or len(captured) != len(layers):
        raise ValueError(f"{name}.layers: expected a list of {len(layers)} layers, got {_describe(captured)}")
    updates: list[tuple[Any, str, Any]] = []
    for j, ((layer, attributes), entry) in enumerate(zip(layers, captured)):
        field = f"{name}.layers[{j}]"
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0] == type(layer).__name__):
            raise ValueError(f"{field}: expected [{type(layer).__name__!r}, attributes], got {_describe(entry)}")
        values = _entries(entry[1], tuple(attributes), field)
        for attribute, kind in attributes.items():
            value, where = values[attribute], f"{field}.{attribute}"
            if kind in ("array", "board"):
                value = _array_like(value, np.array(getattr(layer, attribute)), where, any_float=kind == "array")
                if kind == "board" and not np.isin(value, (-1, 0, 1)).all():
                    raise ValueError(f"{where}: expected cells of -1, 0 or 1, got {value.tolist()}")
            elif not _is_kind(value, kind):
                expected = {"bool": "a bool", "int": "an integer >= 0", "int?": "an integer >= 0 or None",
                            "sign": "-1 or 1"}[kind]
                raise ValueError(f"{where}: expected {expected}, got {_describe(value)}")
            updates.append((layer, attribute, value))
    generators = [(env.unwrapped.np_random, state["np_random"], f"{name}.np_random"),
                  (env.action_space.np_random, state["action_space"], f"{name}.action_space")]
    for generator, generator_state, where in generators:
        _check_generator_state(generator, generator_state, where)

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


def _entries(value: Any, keys: tuple[str, ...], name: str) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != set(keys):
        got = sorted(map(str, value)) if isinstance(value, dict) else _describe(value)
        raise ValueError(f"{name}: expected a dict with the keys {sorted(keys)}, got {got}")
    return value


def _describe(value: Any) -> str:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 80 else f"a {type(value).__name__}"


def _array_like(value: Any, reference: np.ndarray, name: str, any_float: bool = False) -> np.ndarray:
    """``value`` (a tensor) as a new numpy array, checked to have the shape and dtype of
    ``reference`` (with ``any_float``, float32 or float64 where ``reference`` is a float array)
    and, for floats, finite values."""
    if not isinstance(value, torch.Tensor) or value.device.type != "cpu":
        raise ValueError(f"{name}: expected a CPU tensor, got {_describe(value)}")
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


def _check_generator_state(generator: np.random.Generator, state: Any, name: str) -> None:
    """Refuses a state that ``generator``'s bit generator would not take, trying it on a scratch one."""
    scratch = type(generator.bit_generator)()
    try:
        scratch.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as error:
        raise ValueError(f"{name}: expected a {type(scratch).__name__} state, got {_describe(state)} ({error})") \
            from None


_GAME_FIELDS = ("obs", "actions", "rewards", "root_values", "policies")


class SelfPlay:
    """``num_envs`` envs playing together: one batched search per step for all of them; each game
    goes into the game buffer with its search statistics when it ends (a cut game with the
    network's value of its last observation, to bootstrap from).

    Parameters
    ----------
    envs : list of gymnasium envs with a Discrete action space (reset here, env ``i`` and its
        action space with ``seed + i``)
    seed : int
    """

    def __init__(self, envs: list[gym.Env], seed: int):
        self.envs = envs
        self.obs, self.infos = map(list, zip(*(env.reset(seed=seed + i) for i, env in enumerate(envs))))
        for i, env in enumerate(envs):
            env.action_space.seed(seed + i)  # unused by self-play, but seeded so that its state is the seed's
        self.num_actions = int(envs[0].action_space.n)
        self.two_player = "to_play" in self.infos[0]
        self.has_legal_actions = "legal_actions" in self.infos[0]
        self.games: list[list[tuple]] = [[] for _ in envs]  # per env: (obs, action, reward, root value, policy)

    @property
    def capturable(self) -> bool:
        """Whether :meth:`state_dict` captures the envs' games in progress (see :func:`env_state`)."""
        return all(_layers(env) is not None for env in self.envs)

    def state_dict(self) -> dict[str, Any]:
        """The games in progress, as tensors and plain values: ``envs`` (each env's
        :func:`env_state`), ``obs`` (each env's latest observation), ``infos`` (its latest info)
        and ``games`` (each game's record so far: ``obs`` [T, *obs_shape], ``actions`` int64 [T],
        ``rewards`` and ``root_values`` float64 [T], ``policies`` [T, A]). Where an env cannot be
        captured, only ``{"envs": None}``."""
        if not self.capturable:
            return {"envs": None}
        games = []
        for i, game in enumerate(self.games):
            latest = np.asarray(self.obs[i])
            obs, actions, rewards, root_values, policies = zip(*game) if game else ((),) * 5
            obs = np.stack(obs) if game else np.empty((0, *latest.shape), latest.dtype)
            policies = np.stack(policies) if game else np.empty((0, self.num_actions), np.float32)
            games.append({"obs": torch.from_numpy(obs), "actions": torch.tensor(actions, dtype=torch.int64),
                          "rewards": torch.tensor(rewards, dtype=torch.float64),
                          "root_values": torch.tensor(root_values, dtype=torch.float64),
                          "policies": torch.from_numpy(policies)})
        infos = [{key: torch.from_numpy(np.array(value)) if isinstance(value, np.ndarray)
                  else value.item() if isinstance(value, np.generic) else value for key, value in info.items()}
                 for info in self.infos]
        return {"envs": [env_state(env) for env in self.envs], "obs": [torch.from_numpy(np.array(o)) for o in self.obs],
                "infos": infos, "games": games}

    def load_state_dict(self, state: Any, name: str = "state") -> bool:
        """Continues the games in progress of :meth:`state_dict` (of self-play with as many envs of
        the same id). Returns False, changing nothing, for a state without them (``envs`` None).
        Everything is checked before anything changes; a refused state raises ValueError naming
        the field."""
        if not isinstance(state, dict) or "envs" not in state:
            raise ValueError(f"{name}: expected the self-play state of a MuZero checkpoint, got {_describe(state)}")
        if state["envs"] is None:
            return False
        state = _entries(state, ("envs", "obs", "infos", "games"), name)
        n = len(self.envs)
        for key in ("envs", "obs", "infos", "games"):
            if not isinstance(state[key], list) or len(state[key]) != n:
                raise ValueError(f"{name}.{key}: expected a list of {n} entries (one per env), got "
                                 f"{_describe(state[key])}")
        obs = [_array_like(o, np.asarray(self.obs[i]), f"{name}.obs[{i}]") for i, o in enumerate(state["obs"])]
        infos = [self._checked_info(info, i, f"{name}.infos[{i}]") for i, info in enumerate(state["infos"])]
        games = [self._checked_game(game, obs[i], f"{name}.games[{i}]") for i, game in enumerate(state["games"])]
        restorers = [_env_restorer(env, env_state_, f"{name}.envs[{i}]")
                     for i, (env, env_state_) in enumerate(zip(self.envs, state["envs"]))]
        for restore in restorers:
            restore()
        self.obs, self.infos, self.games = obs, infos, games
        return True

    def _checked_info(self, info: Any, i: int, name: str) -> dict[str, Any]:
        """``info`` (as saved) checked against env ``i``'s current one: the same keys, arrays of the
        same shape and dtype, numbers of the same type."""
        reference = self.infos[i]
        info = _entries(info, tuple(reference), name)
        checked = {}
        for key, value in info.items():
            if isinstance(reference[key], np.ndarray):
                checked[key] = _array_like(value, reference[key], f"{name}.{key}")
            elif type(value) is not type(reference[key].item() if isinstance(reference[key], np.generic)
                                         else reference[key]):
                raise ValueError(f"{name}.{key}: expected a {type(reference[key]).__name__}, got {_describe(value)}")
            else:
                checked[key] = value
        return checked

    def _checked_game(self, game: Any, latest: np.ndarray, name: str) -> list[tuple]:
        """A saved game record as the list of (obs, action, reward, root value, policy) self-play
        keeps, checked: consistent lengths, observations like ``latest``, actions in range, finite
        rewards and values, policies of finite non-negative numbers."""
        game = _entries(game, _GAME_FIELDS, name)
        for key in _GAME_FIELDS:
            if not isinstance(game[key], torch.Tensor) or game[key].device.type != "cpu":
                raise ValueError(f"{name}.{key}: expected a CPU tensor, got {_describe(game[key])}")
        length = game["actions"].shape[0] if game["actions"].dim() == 1 else -1
        expected = {"actions": ((length,), torch.int64),
                    "obs": ((length, *latest.shape), torch.from_numpy(latest).dtype),
                    "rewards": ((length,), torch.float64),
                    "root_values": ((length,), torch.float64), "policies": ((length, self.num_actions), None)}
        for key, (shape, dtype) in expected.items():
            tensor = game[key]
            if tuple(tensor.shape) != shape or (dtype is not None and tensor.dtype != dtype) or \
                    (dtype is None and not tensor.dtype.is_floating_point):
                want = f"dtype {dtype}" if dtype is not None else "a float dtype"
                raise ValueError(f"{name}.{key}: expected shape {shape} and {want}, got {_describe(tensor)}")
        actions = game["actions"]
        if length and not bool(((actions >= 0) & (actions < self.num_actions)).all()):
            raise ValueError(f"{name}.actions: expected actions in [0, {self.num_actions}), got "
                             f"{int(actions[(actions < 0) | (actions >= self.num_actions)][0])}")
        for key in ("rewards", "root_values", "policies"):
            if not bool(torch.isfinite(game[key]).all()):
                raise ValueError(f"{name}.{key}: expected finite values, got a non-finite one")
        if bool((game["policies"] < 0).any()):
            raise ValueError(f"{name}.policies: expected probabilities >= 0, got a negative one")
        obs, policies = game["obs"].numpy().copy(), game["policies"].numpy().copy()
        return [(obs[t], int(game["actions"][t]), float(game["rewards"][t]), float(game["root_values"][t]), policies[t])
                for t in range(length)]

    def step(self, searcher: Searcher, buffer: GameBuffer, temperature: float
             ) -> tuple[mcts.PolicyOutput, list[tuple[float, int]]]:
        """One move in every env; returns the search's output and the (return, length) of each game
        that ended (its env reset)."""
        legal = legal_mask(self.infos, self.num_actions)
        result = searcher(np.stack(self.obs), legal, temperature, noise=True)
        actions = result.action.cpu().numpy()
        values = result.search_tree.summary().value.cpu().numpy()
        policies = result.action_weights.cpu().numpy()
        ended: list[tuple[int, bool]] = []
        for i, env in enumerate(self.envs):
            next_obs, reward, terminated, truncated, self.infos[i] = env.step(int(actions[i]))
            self.games[i].append((self.obs[i], int(actions[i]), float(reward), float(values[i]), policies[i]))
            self.obs[i] = next_obs
            if terminated or truncated:
                ended.append((i, bool(terminated)))
        finished = []
        if ended:
            final_values = _values(searcher.network, [self.obs[i] for i, _ in ended], searcher.device)
            for (i, terminated), final_value in zip(ended, final_values):
                obs, actions_, rewards, root_values, visit_policies = zip(*self.games[i])
                buffer.add_game(np.stack(obs), np.asarray(actions_), np.asarray(rewards, np.float32),
                                np.asarray(root_values, np.float32), np.stack(visit_policies), terminated=terminated,
                                final_value=0.0 if terminated else float(final_value))
                finished.append((float(sum(rewards)), len(rewards)))
                self.games[i] = []
                self.obs[i], self.infos[i] = self.envs[i].reset()
        return result, finished


def temperature(config: MuZeroConfig, progress: float) -> float:
    """The visit-count temperature at ``progress`` (the fraction of the run's env steps done)."""
    return [t for start, t in config.temperatures if progress >= start][-1]


def unroll_loss(network: torch.nn.Module, batch: Any, config: MuZeroConfig) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The loss of a batch of unrolls (mean over the batch, importance-weighted) and new priorities.

    Per unroll step k = 0..K: cross-entropies of the value and reward predictions against their
    two-hot targets and of the policy against the visit distribution, masked past the end of the
    game as the buffer says; steps k >= 1 weigh 1/K (the paper's gradient scaling), the value
    ``value_loss_weight``. Returns (loss, priorities [B] = |predicted - target root value|, parts).
    """
    K, S = config.unroll_steps, config.support_size
    out = network.initial_inference(batch.obs)
    predictions = [(out.value_logits, None, out.policy_logits)]
    hidden = out.hidden_state
    for k in range(K):
        out = network.recurrent_inference(hidden, batch.actions[:, k])
        predictions.append((out.value_logits, out.reward_logits, out.policy_logits))
        hidden = scale_gradient(out.hidden_state, 0.5)
    value_loss = reward_loss = policy_loss = torch.zeros(batch.obs.shape[0], device=batch.obs.device)
    for k, (value_logits, reward_logits, policy_logits) in enumerate(predictions):
        scale = 1.0 if k == 0 else 1.0 / K
        value_target = scalar_to_support(batch.target_values[:, k], S)
        value_loss = value_loss + scale * batch.value_mask[:, k] * _cross_entropy(value_logits, value_target)
        policy_loss = policy_loss + scale * batch.mask[:, k] * _cross_entropy(policy_logits, batch.target_policies[:, k])
        if reward_logits is not None:
            reward_target = scalar_to_support(batch.target_rewards[:, k], S)
            reward_loss = reward_loss + scale * batch.reward_mask[:, k] * _cross_entropy(reward_logits, reward_target)
    per_sample = config.value_loss_weight * value_loss + reward_loss + policy_loss
    loss = (batch.weights * per_sample).mean()
    with torch.no_grad():
        predicted = support_to_scalar(predictions[0][0], S)
        priorities = (predicted - batch.target_values[:, 0]).abs() + 1e-6
    parts = {"value_loss": float(value_loss.detach().mean()), "reward_loss": float(reward_loss.detach().mean()),
             "policy_loss": float(policy_loss.detach().mean())}
    return loss, priorities, parts


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1)


def evaluate(searcher: Searcher, env_id: str, episodes: int, seed: int) -> float:
    """Mean return of greedy search (temperature 0, no root noise) over ``episodes`` episodes, run
    side by side."""
    envs = [gym.make(env_id) for _ in range(episodes)]
    obs, infos = zip(*(env.reset(seed=seed + i) for i, env in enumerate(envs)))
    obs, infos = list(obs), list(infos)
    live = list(range(episodes))
    total = np.zeros(episodes)
    num_actions = envs[0].action_space.n
    while live:
        legal = legal_mask([infos[i] for i in live], num_actions)
        actions = searcher(np.stack([obs[i] for i in live]), legal, 0.0, noise=False).action.cpu().numpy()
        still = []
        for i, action in zip(live, actions):
            obs[i], reward, terminated, truncated, infos[i] = envs[i].step(int(action))
            total[i] += reward
            if not (terminated or truncated):
                still.append(i)
        live = still
    return float(total.mean())


def evaluate_two_player(searcher: Searcher, games: int, seed: int) -> dict[str, float]:
    """Greedy search against a random and a perfect TicTacToe player, ``games`` games each (half
    of them moving first): ``return`` is the mean score against the perfect player (+1 win, 0 draw,
    -1 loss; 0 is the best possible), with the win/draw/loss counts against both."""
    from pymbrl.envs.tictactoe_env import minimax_player, play_match, random_player

    player = search_player(searcher)
    scores: dict[str, float] = {}
    for name, opponent in (("random", random_player(seed)), ("perfect", minimax_player(seed))):
        result = play_match(player, opponent, games)
        scores.update({f"{name}_wins": result.wins, f"{name}_draws": result.draws, f"{name}_losses": result.losses})
        if name == "perfect":
            scores["return"] = (result.wins - result.losses) / games
    return {"return": scores.pop("return"), **scores}


def train(env_id: str = "CartPole-v1", steps: int = 50_000, *, seed: int | None = 0,
          config: MuZeroConfig | None = None, eval_every: int = 5000, eval_episodes: int = 20,
          log: Callable[[dict], Any] | None = None, run_dir: str | os.PathLike | None = None,
          checkpoint_every: int = 5000, progress: Callable[[int], Any] | None = None,
          device: str | torch.device = "cpu") -> tuple[torch.nn.Module, list[dict[str, float]]]:
    """Trains MuZero by self-play for ``steps`` env steps (summed over the envs).

    Returns the network and the evaluation history (dicts with ``step``, ``return`` (greedy search,
    mean over ``eval_episodes``), ``episode_return`` (mean of the self-play games finished since
    the last evaluation), ``updates``, the loss parts and ``seconds``). ``log``, ``progress``,
    ``run_dir`` and ``checkpoint_every`` work as in :func:`pymbrl.agents.sac.train`: a checkpoint
    (taken after the first step at or past each multiple of ``checkpoint_every``, games in
    progress or not) holds the network, the optimiser, the game buffer, the search's seed stream,
    the counters and the games in progress with the state of every env, so a resumed run ends
    exactly where the uninterrupted one would have (parameters, buffer and ``log.csv`` records,
    all but their ``seconds``). That holds for envs whose whole state is known (see
    :func:`env_state`: CartPole, Acrobot, MountainCar, pymbrl/TicTacToe); with any other env, a
    resumed run drops the games in progress and starts new ones with a ``RuntimeWarning``, so it
    differs from an uninterrupted one. ``config`` None: ``MuZeroConfig.for_env(env_id)``.
    """
    c = config or MuZeroConfig.for_env(env_id)
    steps, eval_every = integer(steps, "steps"), integer(eval_every, "eval_every")
    integer(c.num_envs, "config.num_envs")
    integer(c.num_simulations, "config.num_simulations")
    if c.search not in ("muzero", "gumbel"):
        raise ValueError(f"config.search: expected 'muzero' or 'gumbel', got {c.search!r}")
    real(c.updates_per_step, "config.updates_per_step", low=0.0)
    try:
        envs = [gym.make(env_id) for _ in range(c.num_envs)]
    except gym.error.Error as error:
        raise ValueError(f"env_id: {error}") from None
    if not isinstance(envs[0].action_space, gym.spaces.Discrete):
        raise ValueError(f"env_id: MuZero needs a Discrete action space, {env_id} has {envs[0].action_space}")
    num_actions = int(envs[0].action_space.n)
    if c.simulator and env_id != "pymbrl/TicTacToe-v0":
        raise ValueError(f"config.simulator: AlphaZero mode knows the rules of pymbrl/TicTacToe-v0 only, got {env_id}")
    run = start_run(run_dir, steps, {"algorithm": "MuZero", "env_id": env_id, "config": c}, seed, checkpoint_every)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.seed)
        network = make_network(envs[0].observation_space, num_actions, c).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    play = SelfPlay(envs, run.seed)
    two_player = play.two_player
    if c.reanalyse_batch and play.has_legal_actions:
        raise ValueError(f"config.reanalyse_batch: reanalysis searches stored positions without their legal-action "
                         f"masks, so it is for envs without them; {env_id} has them (use 0)")
    buffer = GameBuffer(c.buffer_size, envs[0].observation_space.shape, num_actions,
                        obs_dtype=envs[0].observation_space.dtype, unroll_steps=c.unroll_steps, td_steps=c.td_steps,
                        discount=-1.0 if two_player else c.discount, prioritized=c.prioritized,
                        alpha=c.priority_alpha, beta=c.priority_beta, seed=run.seed)
    searcher = Searcher(network, c, two_player, run.seed + 1)
    updates, owed = 0, 0.0
    finished: list[float] = []  # returns of the self-play games ended since the last evaluation
    parts: dict[str, float] = {}  # the latest update's losses
    if run.state is not None:
        where = f"checkpoint in {str(run.directory)!r}"
        loop = _loop_state(run.state, where)
        # Checked in full first, so that a bad checkpoint is refused before the envs change.
        if not play.load_state_dict(run.state["play"], f"{where}: play"):
            warnings.warn(f"env_id: the state of {env_id} cannot be captured, so the games in progress at the "
                          f"checkpoint were dropped and new ones started; this resumed run will not match an "
                          f"uninterrupted one", RuntimeWarning, stacklevel=2)
        network.load_state_dict(run.state["network"])
        optimizer.load_state_dict(run.state["optimizer"])
        buffer = run.buffers["games"]
        searcher.generator.bit_generator.state = run.state["searcher"]
        updates, owed, finished, parts = loop
    step = run.step
    while step < steps:
        _, ended = play.step(searcher, buffer, temperature(c, step / steps))
        finished += [episode_return for episode_return, _ in ended]
        before = step
        step = min(steps, step + c.num_envs)
        if step >= c.warmup_steps and len(buffer) >= c.batch_size:
            owed += (step - before) * c.updates_per_step
            while owed >= 1.0:
                parts = _update(network, optimizer, buffer, searcher, c, device)
                updates += 1
                owed -= 1.0
        if step // eval_every > before // eval_every or step == steps:
            if two_player:
                scores = evaluate_two_player(searcher, eval_episodes, seed=10_000 + step)
            else:
                scores = {"return": evaluate(searcher, env_id, eval_episodes, seed=10_000 + step)}
            record = {"step": step, **scores, "episode_return": float(np.mean(finished)) if finished else float("nan"),
                      "updates": updates, **parts}
            finished = []
            run.evaluated(record, log)
        if run.due(step, episode_over=True):
            run.save(step, {"network": network.state_dict(), "optimizer": optimizer.state_dict(), "updates": updates,
                            "owed": owed, "finished": list(finished), "parts": dict(parts), "play": play.state_dict(),
                            "searcher": searcher.generator.bit_generator.state, "config": dataclasses.asdict(c)},
                     {"games": buffer})
        if progress is not None:
            progress(step)
    return network, run.history


def _loop_state(state: dict[str, Any], where: str) -> tuple[int, float, list[float], dict[str, float]]:
    """The training loop's counters from a checkpoint, checked: (updates, owed, finished, parts)."""
    for key in ("play", "updates", "owed", "finished", "parts", "searcher"):
        if key not in state:
            raise ValueError(f"{where}: expected an entry {key!r} (a checkpoint of this version of pymbrl's MuZero), "
                             f"got none; resume it with the version that wrote it or use another run_dir")
    updates, owed, finished, parts = state["updates"], state["owed"], state["finished"], state["parts"]
    if isinstance(updates, bool) or not isinstance(updates, int) or updates < 0:
        raise ValueError(f"{where}: updates: expected an integer >= 0, got {_describe(updates)}")
    if not isinstance(owed, float) or not 0.0 <= owed < math.inf:
        raise ValueError(f"{where}: owed: expected a finite float >= 0, got {_describe(owed)}")
    if not isinstance(finished, list) or not all(isinstance(r, float) for r in finished):
        raise ValueError(f"{where}: finished: expected a list of floats, got {_describe(finished)}")
    if not isinstance(parts, dict) or not all(isinstance(k, str) and isinstance(v, float) for k, v in parts.items()):
        raise ValueError(f"{where}: parts: expected a dict of str to float, got {_describe(parts)}")
    _check_generator_state(np.random.default_rng(), state["searcher"], f"{where}: searcher")
    return updates, owed, finished, parts


def load(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Searcher, str]:
    """The greedy searcher of the network in ``run_dir``'s checkpoint, and the run's env id.
    A missing, corrupt or foreign checkpoint raises ValueError naming the file."""
    folder = Path(run_dir) / "checkpoint"
    state = read_state(folder)
    try:
        config = dict(state["config"])
        config["temperatures"] = tuple(tuple(t) for t in config["temperatures"])
        c = MuZeroConfig(**config)
        env_id = state["identity"]["env_id"]
        env = gym.make(env_id)
        network = make_network(env.observation_space, int(env.action_space.n), c).to(device)
        network.load_state_dict(state["network"])
    except (KeyError, TypeError, ValueError, RuntimeError, gym.error.Error) as error:
        raise ValueError(f"{folder / 'state.pt'}: not a MuZero checkpoint this pymbrl can load "
                         f"({type(error).__name__}: {error})") from None
    _, info = env.reset()
    return Searcher(network, c, "to_play" in info, seed=0), env_id


def search_player(searcher: Searcher) -> Callable[[np.ndarray, dict], int]:
    """A ``(observation, info) -> action`` player (for :func:`pymbrl.envs.tictactoe_env.play_match`)
    that runs the greedy search on one position."""
    def play(observation: np.ndarray, info: dict) -> int:
        legal = legal_mask([info], searcher.network.num_actions)
        return int(searcher(observation[None], legal, 0.0, noise=False).action[0])

    return play


@torch.no_grad()
def _values(network: torch.nn.Module, observations: list[np.ndarray], device: Any) -> np.ndarray:
    was_training = network.training
    network.eval()
    try:
        return network.initial_inference(torch.as_tensor(np.stack(observations), device=device)).value.cpu().numpy()
    finally:
        network.train(was_training)


def _update(network: torch.nn.Module, optimizer: torch.optim.Optimizer, buffer: GameBuffer, searcher: Searcher,
            c: MuZeroConfig, device: Any) -> dict[str, float]:
    """One gradient step on a sampled batch (after refreshing some stored targets, if reanalysing)."""
    if c.reanalyse_batch:
        stale = buffer.sample(c.reanalyse_batch)
        fresh = searcher(stale.obs, None, 1.0, noise=False)
        buffer.update_targets(stale.indices, fresh.search_tree.summary().value, fresh.action_weights)
    batch = buffer.sample(c.batch_size, device=device)
    # Importance weights relative to the batch's largest (muzero-general, LightZero) rather than the
    # buffer's: one near-zero priority anywhere would otherwise shrink every step to nothing.
    batch = batch._replace(weights=batch.weights / batch.weights.max())
    loss, priorities, parts = unroll_loss(network, batch, c)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if c.prioritized:
        buffer.update_priorities(batch.indices, priorities.cpu())
    return {"loss": float(loss.detach()), **parts}
