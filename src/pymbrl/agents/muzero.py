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
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch.nn import functional as F

import pymbrl.envs  # noqa: F401  (registers pymbrl/TicTacToe-v0)
from pymbrl import mcts
from pymbrl._checks import integer, real
from pymbrl.envs import tictactoe
from pymbrl.agents.checkpoint import start_run
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


class SelfPlay:
    """``num_envs`` envs playing together: one batched search per step for all of them; each game
    goes into the game buffer with its search statistics when it ends (a cut game with the
    network's value of its last observation, to bootstrap from).

    Parameters
    ----------
    envs : list of gymnasium envs with a Discrete action space (reset here, env ``i`` with ``seed + i``)
    seed : int
    """

    def __init__(self, envs: list[gym.Env], seed: int):
        self.envs = envs
        self.obs, self.infos = map(list, zip(*(env.reset(seed=seed + i) for i, env in enumerate(envs))))
        self.num_actions = int(envs[0].action_space.n)
        self.two_player = "to_play" in self.infos[0]
        self.has_legal_actions = "legal_actions" in self.infos[0]
        self.games: list[list[tuple]] = [[] for _ in envs]  # per env: (obs, action, reward, root value, policy)

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
    ``run_dir`` and ``checkpoint_every`` work as in :func:`pymbrl.agents.sac.train`, except that a
    resumed run starts new games in every env (games in progress at the checkpoint are dropped),
    so it is not bit-identical to an uninterrupted one. ``config`` None: ``MuZeroConfig.for_env(env_id)``.
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
    if run.state is not None:
        network.load_state_dict(run.state["network"])
        optimizer.load_state_dict(run.state["optimizer"])
        buffer = run.buffers["games"]
        searcher.generator.bit_generator.state = run.state["searcher"]
        updates, owed = run.state["updates"], run.state["owed"]
    finished: list[float] = []
    parts: dict[str, float] = {}
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
                            "owed": owed, "searcher": searcher.generator.bit_generator.state,
                            "config": dataclasses.asdict(c)}, {"games": buffer})
        if progress is not None:
            progress(step)
    return network, run.history


def load(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Searcher, str]:
    """The greedy searcher of the network in ``run_dir``'s checkpoint, and the run's env id."""
    state = torch.load(os.path.join(run_dir, "checkpoint", "state.pt"), weights_only=True)
    config = dict(state["config"])
    config["temperatures"] = tuple(tuple(t) for t in config["temperatures"])
    c = MuZeroConfig(**config)
    env_id = state["identity"]["env_id"]
    env = gym.make(env_id)
    network = make_network(env.observation_space, int(env.action_space.n), c).to(device)
    network.load_state_dict(state["network"])
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
