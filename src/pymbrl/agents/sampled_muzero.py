"""Sampled MuZero (Hubert et al., "Learning and Planning in Complex Action Spaces", ICML 2021) for
continuous (Box) actions, on pymbrl's C++ search (:func:`pymbrl.mcts.sampled_muzero_policy`).
MuZero's loop (:mod:`pymbrl.agents.muzero`) with sampled actions; the config, then the loop:

1. self-play: ``num_envs`` envs step together, one batched search per step; each search samples
   K actions per node from the network's tanh-Gaussian policy and searches over them; the action
   is drawn from the visit counts with a falling temperature. Finished games go to MuZero's game
   buffer with the chosen edge (0..K-1) as the action and the visit shares over the K edges as the
   policy; the K sampled action vectors of every position live beside it (:class:`SampledActions`,
   by position id), as the buffer stores discrete actions only;
2. training: MuZero's unroll along the stored action vectors, value and reward cross-entropies on
   the categorical supports, and the paper's policy loss ``-sum_k w_k log pi(a_k)`` over the
   position's sampled actions a_k with visit shares w_k, plus a small entropy bonus;
3. evaluation: greedy search (temperature 0, sampling from pi).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from pymbrl import mcts
from pymbrl._checks import integer, real
from pymbrl._extras import optional_imports
from pymbrl.agents.muzero import checked_temperatures, cross_entropy, temperature
from pymbrl.envs.wrappers import ActionRepeat
from pymbrl.models.muzero import scalar_to_support, scale_gradient, support_to_scalar
from pymbrl.models.sampled_muzero import SampledMuZeroNetwork, squashed_log_prob, tanh_normal
from pymbrl.replay import GameBuffer
from pymbrl.training import Callbacks, TrainConfig, TrainResult, as_batch, seeded, start_run
from pymbrl.training.checkpoint import field
from pymbrl.training.envstate import check_generator_state
from pymbrl.training.run import STATE, read_run, restoring

with optional_imports():
    import gymnasium as gym


@dataclass(frozen=True)
class SampledMuZeroConfig(TrainConfig):
    """Sampled MuZero's settings. The defaults are the papers' (K = 20 draws, 50 simulations, MuZero's
    pUCT constants, discount, n-step targets, unroll and losses); sizes, learning rate and training
    ratio are set for small vector tasks on a CPU. The Pendulum preset departs from them where a
    small CPU budget needs it (see PRESETS)."""

    DEFAULT_ENV: ClassVar[str] = "Pendulum-v1"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # A one-step search (max_depth 1): MuZero normalises Q by the smallest and largest Q of the
        # whole tree, and in a deeper tree the spread of Q over depths (the rewards along the
        # paths) dwarfs the differences between the root's actions, so the visits stay uniform and
        # teach the policy nothing. With 6 draws and c1 = 3, pUCT tries each draw before its
        # visits follow Q (c1 = 1.25 keeps revisiting the first good draw). Action repeat 4 makes
        # one decision move the pendulum enough for the model to tell actions apart; discount 0.97
        # per decision (0.992 per env step) and support 60 keep values (to about -1,500) on the
        # support. Self-play draws from the visits at temperature 0.5, then 0.25 (less random
        # play makes the search's values reach the swung-up states sooner). The runs behind these
        # settings: examples/results/sampled_muzero.md.
        "Pendulum-": {"action_repeat": 4, "num_samples": 6, "max_depth": 1, "pb_c_init": 3.0, "discount": 0.97,
                      "support_size": 60, "batch_size": 128, "num_envs": 16, "entropy_weight": 0.0,
                      "temperatures": ((0.0, 0.5), (0.5, 0.25)), "steps": 60_000},
    }

    steps: int = 40_000  # env steps of the run (summed over the envs, repeated actions included); continues with more
    eval_every: int = 3200  # env steps between evaluations
    eval_episodes: int = 10  # greedy-search episodes per evaluation, run side by side
    checkpoint_every: int = 6400  # env steps between checkpoints (taken when every env starts a new episode)
    num_envs: int = 8  # envs playing together, one batched search for all of them per step
    num_simulations: int = 50  # search simulations per move
    num_samples: int = 20  # K, actions sampled per search node (the paper's 20)
    action_repeat: int = 1  # env steps each chosen action is held for, rewards summed (a search step moves further)
    max_depth: int | None = None  # longest path of a search (None: unlimited)
    pb_c_init: float = 1.25  # pUCT's exploration constant c1 (MuZero's 1.25)
    root_std_scale: float = 1.0  # self-play roots sample from pi with its std times this (beta; 1: pi itself)
    discount: float = 0.997  # of rewards and values, per decision (MuZero's)
    td_steps: int = 10  # n of the n-step value targets (MuZero's)
    unroll_steps: int = 5  # steps the model is unrolled in training (MuZero's)
    batch_size: int = 256  # positions per update
    lr: float = 1e-3  # Adam's step size
    weight_decay: float = 1e-5  # L2 on all weights
    value_loss_weight: float = 0.25  # MuZero Reanalyze's weight
    entropy_weight: float = 5e-3  # bonus on the policy's (pre-tanh) entropy, against collapse
    updates_per_step: float = 0.25  # gradient updates per env step, summed over the envs
    warmup_steps: int = 2000  # env steps of self-play before the first update
    buffer_size: int = 100_000  # positions kept in the game buffer
    prioritized: bool = True  # sample positions by priority |root value - value target|
    priority_alpha: float = 1.0  # priority exponent
    priority_beta: float = 1.0  # importance-sampling exponent
    temperatures: tuple[tuple[float, float], ...] = ((0.0, 1.0), (0.5, 0.5), (0.75, 0.25))
    """(fraction of the run's env steps, visit-count temperature from then on), MuZero's schedule."""
    support_size: int = 25  # S: values and rewards are predicted over the integers -S..S (|x| up to ~650)
    hidden_size: int = 128  # hidden units of each MLP layer
    latent_size: int = 64  # size of the hidden state
    layers: int = 2  # hidden layers of each of the three functions
    min_std: float = 0.05  # the policy's smallest standard deviation (pre-tanh)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_envs", "num_simulations", "num_samples", "action_repeat", "td_steps", "batch_size",
                     "buffer_size", "support_size", "hidden_size", "latent_size", "layers"):
            integer(getattr(self, name), name)
        for name in ("unroll_steps", "warmup_steps"):
            integer(getattr(self, name), name, minimum=0)
        integer(self.max_depth, "max_depth", optional=True)
        real(self.pb_c_init, "pb_c_init", low=0.0)
        real(self.discount, "discount", low=0.0, high=1.0)
        for name in ("lr", "weight_decay", "value_loss_weight", "entropy_weight", "updates_per_step",
                     "priority_alpha", "priority_beta"):
            real(getattr(self, name), name, low=0.0)
        for name in ("root_std_scale", "min_std"):
            real(getattr(self, name), name, low=1e-6)
        if not isinstance(self.prioritized, bool):
            raise TypeError(f"prioritized: expected a bool, got {self.prioritized!r}")
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size: expected at most buffer_size ({self.buffer_size}), got {self.batch_size}")
        object.__setattr__(self, "temperatures", checked_temperatures(self.temperatures))


def make_env(config: SampledMuZeroConfig, render_mode: str | None = None) -> gym.Env:
    """One env of ``config.env`` (``gym.make``'s wrappers, then :class:`~pymbrl.envs.wrappers.ActionRepeat`
    of ``action_repeat``: an episode's return is the env's own); ValueError naming ``env`` unless it
    has vector observations and a bounded Box action space."""
    try:
        env = gym.make(config.env, render_mode=render_mode)
    except gym.error.Error as error:
        raise ValueError(f"env: {error}") from None
    space, shape = env.action_space, env.observation_space.shape
    if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1 and np.isfinite(space.low).all()
            and np.isfinite(space.high).all()) or shape is None or len(shape) != 1:
        env.close()
        raise ValueError(f"env: Sampled MuZero here needs a bounded Box action space [d] and vector observations, "
                         f"{config.env} has {space} and {env.observation_space}")
    return ActionRepeat(env, config.action_repeat)


def make_network(env: gym.Env, c: SampledMuZeroConfig) -> SampledMuZeroNetwork:
    return SampledMuZeroNetwork(env.observation_space.shape[0], env.action_space.shape[0], hidden_size=c.hidden_size,
                                latent_size=c.latent_size, support_size=c.support_size, layers=c.layers,
                                min_std=c.min_std).to(c.device)


class SampledActions:
    """The K sampled action vectors [K, d] of every stored position, by position id (slot ``id %
    capacity``: the buffer's ids are consecutive and it holds at most ``capacity`` of them)."""

    def __init__(self, capacity: int, num_samples: int, action_dim: int):
        self.actions = torch.zeros(capacity, num_samples, action_dim)

    def put(self, first_id: int, actions: np.ndarray) -> None:
        slots = (first_id + np.arange(len(actions))) % len(self.actions)
        self.actions[torch.from_numpy(slots)] = torch.from_numpy(actions)

    def get(self, ids: torch.Tensor) -> torch.Tensor:
        """[..., K, d] for ids [...]; ids past a game's end give some stored position's actions
        (their losses are masked, as for MuZero's random actions there)."""
        return self.actions[ids % len(self.actions)]


class Searcher:
    """Batched Sampled MuZero search with the network: ``(obs [B, obs_dim], temperature, explore)
    -> SampledPolicyOutput``; :meth:`act` is the greedy agent that :func:`load` returns."""

    def __init__(self, network: SampledMuZeroNetwork, config: SampledMuZeroConfig, space: gym.spaces.Box, seed: int):
        self.network, self.config = network, config
        self.low, self.high = space.low.astype(np.float64), space.high.astype(np.float64)
        self.generator = np.random.default_rng(seed)
        self.device = next(network.parameters()).device

    def step(self, embedding: torch.Tensor, action: torch.Tensor) -> tuple[mcts.SampledRecurrentOutput, torch.Tensor]:
        out = self.network.recurrent_inference(embedding, action)
        value, reward = support_to_scalar(torch.stack([out.value_logits, out.reward_logits]),
                                          self.config.support_size).unbind(0)
        policy = tanh_normal(out.mean, out.std)
        return mcts.SampledRecurrentOutput(reward, torch.full_like(value, self.config.discount), policy, value), \
            out.hidden_state

    @torch.no_grad()
    def __call__(self, obs: Any, temperature: float, explore: bool) -> mcts.SampledPolicyOutput:
        c = self.config
        out = self.network.initial_inference(torch.as_tensor(obs, device=self.device))
        beta = tanh_normal(out.mean, out.std * c.root_std_scale) if explore and c.root_std_scale != 1.0 else None
        root = mcts.SampledRoot(tanh_normal(out.mean, out.std), out.value, out.hidden_state)
        return mcts.sampled_muzero_policy(root, self.step, c.num_simulations, num_samples=c.num_samples,
                                          root_sampling_policy=beta, temperature=temperature, max_depth=c.max_depth,
                                          pb_c_init=c.pb_c_init,
                                          seed=int(self.generator.integers(2**63)))

    def to_env(self, action: np.ndarray) -> np.ndarray:
        """Actions in [-1, 1]^d -> the env's box."""
        return self.low + (action.astype(np.float64) + 1.0) * 0.5 * (self.high - self.low)

    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """The env action [d] for one observation, or [N, d] for a batch, from one batched search:
        the most visited sampled action, or with ``deterministic=False`` one drawn as early
        self-play does (temperature 1, beta at the root)."""
        batch, single = as_batch(obs, self.network.obs_shape)
        result = self(batch, 0.0 if deterministic else 1.0, explore=not deterministic)
        actions = self.to_env(result.action.cpu().numpy())
        return actions[0] if single else actions


def unroll_loss(network: SampledMuZeroNetwork, batch: Any, sampled: torch.Tensor, c: SampledMuZeroConfig,
                weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """MuZero's unroll loss (see :func:`pymbrl.agents.muzero.unroll_loss`) with ``sampled``
    [B, unroll_steps + 1, K, d] the positions' sampled actions: the unroll follows the chosen ones
    and the policy loss is the paper's ``-sum_k w_k log pi(a_k)`` minus ``entropy_weight`` times
    the pre-tanh Gaussian's entropy. Returns (loss, priorities [B], parts)."""
    K, S = c.unroll_steps, c.support_size
    value_targets = scalar_to_support(batch.target_values, S)  # [B, K + 1, 2S + 1]
    reward_targets = scalar_to_support(batch.target_rewards, S)
    rows = torch.arange(batch.obs.shape[0], device=batch.obs.device)
    out = network.initial_inference(batch.obs)
    predictions, hidden = [out], out.hidden_state
    for k in range(K):
        out = network.recurrent_inference(hidden, sampled[:, k][rows, batch.actions[:, k]])
        predictions.append(out)
        hidden = scale_gradient(out.hidden_state, 0.5)
    value_loss = reward_loss = policy_loss = torch.zeros_like(weights)
    for k, p in enumerate(predictions):
        scale = 1.0 if k == 0 else 1.0 / K
        value_loss = value_loss + scale * batch.value_mask[:, k] * cross_entropy(
            p.value_logits, value_targets[:, k])
        log_pi = squashed_log_prob(p.mean[:, None], p.std[:, None], sampled[:, k])  # [B, K]
        entropy = torch.distributions.Normal(p.mean, p.std).entropy().sum(dim=-1)
        policy = -(batch.target_policies[:, k] * log_pi).sum(dim=-1) - c.entropy_weight * entropy
        policy_loss = policy_loss + scale * batch.mask[:, k] * policy
        if k > 0:
            reward_loss = reward_loss + scale * batch.reward_mask[:, k] * cross_entropy(
                p.reward_logits, reward_targets[:, k])
    loss = (weights * (c.value_loss_weight * value_loss + reward_loss + policy_loss)).mean()
    with torch.no_grad():
        priorities = (support_to_scalar(predictions[0].value_logits, S) - batch.target_values[:, 0]).abs() + 1e-6
    parts = {"value_loss": float(value_loss.detach().mean()), "reward_loss": float(reward_loss.detach().mean()),
             "policy_loss": float(policy_loss.detach().mean())}
    return loss, priorities, parts


def update(network: SampledMuZeroNetwork, optimizer: torch.optim.Optimizer, buffer: GameBuffer,
           store: SampledActions, c: SampledMuZeroConfig) -> dict[str, float]:
    batch = buffer.sample(c.batch_size, device=c.device)
    ids = batch.indices.cpu()[:, None] + torch.arange(c.unroll_steps + 1)
    sampled = store.get(ids).to(c.device)
    loss, priorities, parts = unroll_loss(network, batch, sampled, c, batch.weights / batch.weights.max())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if c.prioritized:
        buffer.update_priorities(batch.indices, priorities.cpu())
    return {"loss": float(loss.detach()), **parts}


def evaluate(searcher: Searcher, config: SampledMuZeroConfig, episodes: int, seed: int) -> float:
    """Mean return of greedy search over ``episodes`` episodes run side by side (env ``i`` reset
    with ``seed + i``)."""
    envs = [make_env(config) for _ in range(episodes)]
    obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    total, live = np.zeros(episodes), list(range(episodes))
    while live:
        actions = searcher.act(np.stack([obs[i] for i in live]))
        still = []
        for i, action in zip(live, actions):
            obs[i], reward, terminated, truncated, _ = envs[i].step(action.astype(envs[i].action_space.dtype))
            total[i] += reward
            if not (terminated or truncated):
                still.append(i)
        live = still
    return float(total.mean())


@torch.no_grad()
def network_value(network: SampledMuZeroNetwork, obs: np.ndarray) -> float:
    """The network's value of one observation (a cut game's bootstrap)."""
    device = network.value_head.weight.device
    return float(network.initial_inference(torch.as_tensor(obs[None], device=device)).value[0])


def episode_seed(seed: int, episode: int) -> int:
    """The reset seed of the run's ``episode``-th self-play episode (a resumed run re-creates it)."""
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


def train(config: SampledMuZeroConfig | None = None, run_dir: str | os.PathLike | None = None, *,
          callbacks: Callbacks | None = None) -> TrainResult:
    """Trains Sampled MuZero by self-play on ``config.env`` for ``config.steps`` env steps.

    Records (every ``eval_every`` steps and at the end): ``step``, ``return`` (greedy search, mean
    over ``eval_episodes``), ``episode_return`` (self-play games finished since the last record),
    ``updates``, the last update's losses and ``seconds``. Checkpoints are taken when every env
    has just started a new episode (on Pendulum, with its fixed-length episodes, every ``200 x
    num_envs`` steps), so a resumed run continues exactly; a checkpoint taken with games in
    progress (a run's last step) drops them, with a ``RuntimeWarning``, when the run continues.
    """
    c = config or SampledMuZeroConfig()
    envs = [make_env(c) for _ in range(c.num_envs)]
    space = envs[0].action_space
    run = start_run(run_dir, "sampled-muzero", c, callbacks=callbacks)
    with run:  # closes it, and frees its directory for other processes, however training ends
        with seeded(c.seed):
            network = make_network(envs[0], c)
        optimizer = torch.optim.Adam(network.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        buffer = GameBuffer(c.buffer_size, envs[0].observation_space.shape, c.num_samples, unroll_steps=c.unroll_steps,
                            td_steps=c.td_steps, discount=c.discount, prioritized=c.prioritized, alpha=c.priority_alpha,
                            beta=c.priority_beta, seed=c.seed)
        store = SampledActions(c.buffer_size, c.num_samples, space.shape[0])
        searcher = Searcher(network, c, space, c.seed + 1)
        updates, owed, episodes, finished, parts = 0, 0.0, c.num_envs, [], {}
        # Env i plays its episodes from reset seeds of the run's episode count, so a resume re-creates them.
        seeds = [episode_seed(c.seed, i) for i in range(c.num_envs)]
        if run.state is not None:
            s = run.state
            with run.restoring(games=buffer):
                updates = field(s["updates"], int, "updates", lambda v: v >= 0, "an integer >= 0")
                owed = field(s["owed"], float, "owed", lambda v: 0.0 <= v < math.inf, "a finite float >= 0")
                episodes = field(s["episodes"], int, "episodes", lambda v: v >= c.num_envs,
                                 f"an integer >= {c.num_envs}")
                seeds = [field(x, int, "seeds", lambda v: v >= 0, "integers >= 0")
                         for x in field(s["seeds"], list, "seeds")]
                if len(seeds) != c.num_envs:
                    raise ValueError(f"seeds: expected {c.num_envs} (one per env), got {len(seeds)}")
                finished = [field(r, float, "finished") for r in field(s["finished"], list, "finished")]
                parts = {field(k, str, "parts"): field(v, float, "parts")
                         for k, v in field(s["parts"], dict, "parts").items()}
                fresh = field(s["fresh"], bool, "fresh")
                check_generator_state(searcher.generator, s["searcher"], "searcher")
                if s["sampled"].shape != store.actions.shape or not bool(torch.isfinite(s["sampled"]).all()):
                    raise ValueError(f"sampled: expected finite actions of shape {tuple(store.actions.shape)}")
                network.load_state_dict(s["network"])
                optimizer.load_state_dict(s["optimizer"])
                buffer = run.buffers["games"]
                store.actions = s["sampled"].clone()
                searcher.generator.bit_generator.state = s["searcher"]
            if not fresh:
                warnings.warn("env: the checkpoint was taken with games in progress; they were dropped and the envs "
                              "start their episodes anew", RuntimeWarning, stacklevel=2)
        obs = [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds)]
        games: list[list[tuple]] = [[] for _ in envs]  # per env: (obs, edge, reward, root value, weights, actions)
        step = run.step
        while step < c.steps:
            result = searcher(np.stack(obs), temperature(c, step / c.steps), explore=True)
            edges, actions = result.action_index.cpu().numpy(), result.action.cpu().numpy()
            values = result.search_tree.summary().value.cpu().numpy()
            weights, sampled = result.action_weights.cpu().numpy(), result.sampled_actions.cpu().numpy()
            played = 0
            for i, env in enumerate(envs):
                env_action = searcher.to_env(actions[i]).astype(space.dtype)
                next_obs, reward, terminated, truncated, info = env.step(env_action)
                played += info["env_steps"]
                games[i].append((obs[i], edges[i], float(reward), float(values[i]), weights[i], sampled[i]))
                obs[i] = next_obs
                if terminated or truncated:
                    o, a, r, v, w, x = map(np.stack, zip(*games[i]))
                    final = 0.0 if terminated else network_value(network, next_obs)
                    first = buffer.add_game(o, a, r.astype(np.float32), v.astype(np.float32), w, terminated=terminated,
                                            final_value=final)
                    store.put(first, x)
                    finished.append(float(r.sum()))
                    games[i], seeds[i] = [], episode_seed(c.seed, episodes)
                    obs[i], episodes = env.reset(seed=seeds[i])[0], episodes + 1
            before, step = step, min(c.steps, step + played)
            if step >= c.warmup_steps and len(buffer) >= c.batch_size:
                owed += (step - before) * c.updates_per_step
                while owed >= 1.0:
                    parts = update(network, optimizer, buffer, store, c)
                    updates, owed = updates + 1, owed - 1.0
            if step // c.eval_every > before // c.eval_every or step == c.steps:
                run.evaluated({"step": step, "return": evaluate(searcher, c, c.eval_episodes, 10_000 + step),
                               "episode_return": float(np.mean(finished)) if finished else float("nan"),
                               "updates": updates, **parts})
                finished = []
            fresh = all(not game for game in games)
            if run.due(step, episode_over=fresh):
                run.save(step, {"network": network.state_dict(), "optimizer": optimizer.state_dict(),
                                "updates": updates, "owed": owed, "episodes": episodes, "finished": list(finished),
                                "parts": dict(parts), "fresh": fresh, "seeds": list(seeds), "sampled": store.actions,
                                "searcher": searcher.generator.bit_generator.state},
                         {"games": buffer})
            run.progress(step)
    return TrainResult(searcher, run.history, run.directory, run.history[-1] if run.history else {})


def load(run_dir: str | os.PathLike, device: str | None = None) -> Searcher:
    """The greedy searcher of the run in ``run_dir`` (its last checkpoint), on ``device`` (default
    the run's); ``load(run_dir).act(obs)`` searches one observation or a batch."""
    config, state = read_run(run_dir, SampledMuZeroConfig, "sampled-muzero", device)
    env = make_env(config)
    network = make_network(env, config)
    env.close()
    with restoring(Path(run_dir) / "checkpoint" / STATE):
        network.load_state_dict(state["network"])
    return Searcher(network, config, env.action_space, seed=0)
