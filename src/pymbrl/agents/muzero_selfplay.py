"""MuZero's search and self-play (see :mod:`pymbrl.agents.muzero` for the config and the loop).

:class:`Searcher` runs one batched search (pUCT, Gumbel MuZero or Stochastic MuZero) from many observations at once,
the latent states staying on the network's device, and acts greedily as a loaded agent;
:class:`SelfPlay` steps ``num_envs`` envs together, one search for all of them per move, and
stores each finished game with its search statistics; :func:`evaluate` and
:func:`evaluate_two_player` measure greedy search, alone or against TicTacToe players.

Two-player zero-sum games (``pymbrl/TicTacToe-v0``) use the search's convention: the reward is the
mover's and the discount is -1 (the next position's value is the opponent's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pymbrl import mcts
from pymbrl._extras import optional_imports
from pymbrl.agents.muzero_stochastic import ChanceModel
from pymbrl.envs import game2048
from pymbrl.envs.tictactoe_env import minimax_player, play_match, random_player
from pymbrl.models import tictactoe
from pymbrl.models.muzero import make_network, support_to_scalar
from pymbrl.replay import GameBuffer
from pymbrl.training import as_batch
from pymbrl.training.envstate import (
    capturable,
    checked_array,
    describe,
    entries,
    env_restorer,
    env_state,
)

with optional_imports():
    import gymnasium as gym

if TYPE_CHECKING:
    from pymbrl.agents.muzero import MuZeroConfig

TICTACTOE = "pymbrl/TicTacToe-v0"
GAME2048 = "pymbrl/2048-"
GAME_FIELDS = ("obs", "actions", "rewards", "root_values", "policies")


def network_of(config: MuZeroConfig, obs_shape: tuple[int, ...], num_actions: int) -> torch.nn.Module:
    """The network ``config`` asks for (Stochastic MuZero's with ``search="stochastic"``)."""
    return make_network(obs_shape, num_actions, hidden_size=config.hidden_size, latent_size=config.latent_size,
                        support_size=config.support_size,
                        num_chance_outcomes=config.num_chance_outcomes if config.search == "stochastic" else None)


class Searcher:
    """Batched search with a network: ``(obs [B, ...], legal bool [B, A] or None, temperature,
    noise) -> PolicyOutput``, the latents kept on the network's device; :meth:`act` is the greedy
    agent that :func:`pymbrl.agents.muzero.load` returns. ``seed`` seeds the generator that draws
    each search's seed."""

    def __init__(self, network: torch.nn.Module, config: MuZeroConfig, two_player: bool, seed: int):
        self.network, self.config = network, config
        self.discount = -1.0 if two_player else config.discount
        self.generator = np.random.default_rng(seed)
        self.device = next(network.parameters()).device
        self.recurrent_fn = self.simulated_step if config.simulator else self.learned_step
        self.chance_model = ChanceModel(network, config.support_size, self.discount)

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
            if c.search == "stochastic":
                return mcts.stochastic_muzero_policy(root, self.chance_model.decision_step,
                                                     self.chance_model.chance_step, c.num_simulations,
                                                     num_chance_outcomes=c.num_chance_outcomes,
                                                     invalid_actions=invalid, dirichlet_alpha=c.dirichlet_alpha,
                                                     dirichlet_fraction=c.dirichlet_fraction if noise else 0.0,
                                                     temperature=temperature, seed=seed)
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

    def act(self, obs: Any, deterministic: bool = True, legal: Any = None) -> int | np.ndarray:
        """The action for one observation, or actions int64 [N] for a batch [N, *obs_shape], from
        one batched search: greedy (no root noise, the most visited action) or, with
        ``deterministic=False``, as self-play draws it early on (root noise, temperature 1).
        ``legal`` bool [A] or [N, A] masks the moves; on TicTacToe it defaults to the empty cells
        of the observation, on 2048 to the moves that change its board."""
        batch, single = as_batch(obs, self.network.obs_shape)
        if legal is None and self.config.env == TICTACTOE:
            legal = (batch[:, :9] == 0) & (batch[:, 9:18] == 0)
        if legal is None and self.config.env.startswith(GAME2048):
            legal = game2048.legal_actions(np.asarray(batch))
        if legal is not None:
            legal = np.asarray(legal, dtype=bool).reshape(batch.shape[0], -1)
        result = self(batch, legal, 0.0 if deterministic else 1.0, noise=not deterministic)
        actions = result.action.cpu().numpy()
        return int(actions[0]) if single else actions


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


@torch.no_grad()
def network_values(network: torch.nn.Module, observations: list[np.ndarray], device: Any) -> np.ndarray:
    """The network's values [N] of ``observations`` (batch norm on running statistics)."""
    was_training = network.training
    network.eval()
    try:
        return network.initial_inference(torch.as_tensor(np.stack(observations), device=device)).value.cpu().numpy()
    finally:
        network.train(was_training)


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

    def state_dict(self) -> dict[str, Any]:
        """The games in progress, as tensors and plain values: ``envs`` (each env's
        :func:`~pymbrl.training.envstate.env_state`), ``obs`` (each env's latest observation),
        ``infos`` (its latest info) and ``games`` (each game's record so far: ``obs`` [T, *obs_shape],
        ``actions`` int64 [T], ``rewards`` and ``root_values`` float64 [T], ``policies`` [T, A]).
        Where an env cannot be captured, only ``{"envs": None}``."""
        if not all(capturable(env) for env in self.envs):
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
            raise ValueError(f"{name}: expected the self-play state of a MuZero checkpoint, got {describe(state)}")
        if state["envs"] is None:
            return False
        state = entries(state, ("envs", "obs", "infos", "games"), name)
        n = len(self.envs)
        for key in ("envs", "obs", "infos", "games"):
            if not isinstance(state[key], list) or len(state[key]) != n:
                raise ValueError(f"{name}.{key}: expected a list of {n} entries (one per env), got "
                                 f"{describe(state[key])}")
        obs = [checked_array(o, np.asarray(self.obs[i]), f"{name}.obs[{i}]") for i, o in enumerate(state["obs"])]
        infos = [self.checked_info(info, i, f"{name}.infos[{i}]") for i, info in enumerate(state["infos"])]
        games = [self.checked_game(game, obs[i], f"{name}.games[{i}]") for i, game in enumerate(state["games"])]
        restorers = [env_restorer(env, saved, f"{name}.envs[{i}]")
                     for i, (env, saved) in enumerate(zip(self.envs, state["envs"]))]
        for restore in restorers:
            restore()
        self.obs, self.infos, self.games = obs, infos, games
        return True

    def checked_info(self, info: Any, i: int, name: str) -> dict[str, Any]:
        """``info`` (as saved) checked against env ``i``'s current one: the same keys, arrays of the
        same shape and dtype, numbers of the same type."""
        reference = self.infos[i]
        info = entries(info, tuple(reference), name)
        checked = {}
        for key, value in info.items():
            if isinstance(reference[key], np.ndarray):
                checked[key] = checked_array(value, reference[key], f"{name}.{key}")
            elif type(value) is not type(reference[key].item() if isinstance(reference[key], np.generic)
                                         else reference[key]):
                raise ValueError(f"{name}.{key}: expected a {type(reference[key]).__name__}, got {describe(value)}")
            else:
                checked[key] = value
        return checked

    def checked_game(self, game: Any, latest: np.ndarray, name: str) -> list[tuple]:
        """A saved game record as the list of (obs, action, reward, root value, policy) self-play
        keeps, checked: consistent lengths, observations like ``latest``, actions in range, finite
        rewards and values, policies of finite non-negative numbers."""
        game = entries(game, GAME_FIELDS, name)
        for key in GAME_FIELDS:
            if not isinstance(game[key], torch.Tensor) or game[key].device.type != "cpu":
                raise ValueError(f"{name}.{key}: expected a CPU tensor, got {describe(game[key])}")
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
                raise ValueError(f"{name}.{key}: expected shape {shape} and {want}, got {describe(tensor)}")
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
            final_values = network_values(searcher.network, [self.obs[i] for i, _ in ended], searcher.device)
            for (i, terminated), final_value in zip(ended, final_values):
                obs, actions_, rewards, root_values, visit_policies = zip(*self.games[i])
                buffer.add_game(np.stack(obs), np.asarray(actions_), np.asarray(rewards, np.float32),
                                np.asarray(root_values, np.float32), np.stack(visit_policies), terminated=terminated,
                                final_value=0.0 if terminated else float(final_value))
                finished.append((float(sum(rewards)), len(rewards)))
                self.games[i] = []
                self.obs[i], self.infos[i] = self.envs[i].reset()
        return result, finished


def evaluate(searcher: Searcher, env_id: str, episodes: int, seed: int) -> float:
    """Mean return of greedy search (temperature 0, no root noise) over ``episodes`` episodes, run
    side by side (env ``i`` reset with ``seed + i``)."""
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
    player = search_player(searcher)
    scores: dict[str, float] = {}
    for name, opponent in (("random", random_player(seed)), ("perfect", minimax_player(seed))):
        result = play_match(player, opponent, games)
        scores.update({f"{name}_wins": result.wins, f"{name}_draws": result.draws, f"{name}_losses": result.losses})
        if name == "perfect":
            scores["return"] = (result.wins - result.losses) / games
    return {"return": scores.pop("return"), **scores}


def search_player(searcher: Searcher) -> Callable[[np.ndarray, dict], int]:
    """A ``(observation, info) -> action`` player (for :func:`pymbrl.envs.tictactoe_env.play_match`)
    that runs the greedy search on one position."""
    def play(observation: np.ndarray, info: dict) -> int:
        legal = legal_mask([info], searcher.network.num_actions)
        return int(searcher(observation[None], legal, 0.0, noise=False).action[0])

    return play

