"""MuZero (Schrittwieser et al., "Mastering Atari, Go, chess and shogi by planning with a learned
model", Nature 2020): planning with pymbrl's batched C++ search in the latent space of a learned
model. The config, then the loop:

1. self-play (:mod:`pymbrl.agents.muzero_selfplay`): ``num_envs`` environments step together; at
   every step one batched search (MuZero's pUCT, Gumbel MuZero or Stochastic MuZero) runs from all their observations
   at once; actions are drawn from the visit counts with a temperature that falls as training goes
   on; finished games go to the game buffer with their search statistics (root values, visits);
2. training: positions sampled from the game buffer (by priority) with targets for ``unroll_steps``
   steps (actions, rewards, n-step values bootstrapped from root values, visit distributions); the
   model is unrolled along the stored actions, the gradient entering each dynamics step halved and
   each unrolled step's loss scaled by 1/K; optional reanalysis refreshes stored root values and
   policies with the latest network, in place;
3. evaluation: greedy search without exploration noise (on TicTacToe, matches against a random and
   a perfect player).

Stochastic MuZero (``search="stochastic"``, Antonoglou et al. 2022; :mod:`pymbrl.agents.muzero_stochastic`)
learns a model whose moves lead to afterstates and whose chance outcomes, codes an encoder finds in
the observations, lead on to the next states; its search expands both.

Two-player zero-sum games (``pymbrl/TicTacToe-v0``) use the search's convention: the reward is the
mover's and the discount is -1 (the next position's value is the opponent's), in the search and in
the value targets alike.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch.nn import functional as F

import pymbrl.envs  # noqa: F401  (registers pymbrl/TicTacToe-v0)
from pymbrl._checks import integer, real
from pymbrl._extras import optional_imports
from pymbrl.agents.muzero_actors import Actors
from pymbrl.agents.muzero_selfplay import (
    TICTACTOE,
    Searcher,
    SelfPlay,
    evaluate,
    evaluate_two_player,
    network_of,
)
from pymbrl.agents.muzero_stochastic import Outcomes, chance_unroll, outcomes
from pymbrl.models.muzero import scalar_to_support, scale_gradient, support_to_scalar
from pymbrl.replay import GameBuffer
from pymbrl.training import Callbacks, TrainConfig, TrainResult, seeded, start_run
from pymbrl.training.checkpoint import field
from pymbrl.training.envstate import check_generator_state
from pymbrl.training.run import STATE, read_run, restoring

with optional_imports():
    import gymnasium as gym


@dataclass(frozen=True)
class MuZeroConfig(TrainConfig):
    """MuZero's settings. The search, unroll and target settings are the paper's (appendices C-G);
    sizes, learning rate and the training ratio are set for CartPole-scale tasks on a CPU."""

    DEFAULT_ENV: ClassVar[str] = "CartPole-v1"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # Values reach ~260 with discount 0.997 (support 20 covers ~440); 50-step returns lean less on
        # stale root values (muzero-general's CartPole setting); alpha 0.5 tempers the priorities.
        # The runs behind these settings: examples/results/muzero.md.
        "CartPole-": {"search": "gumbel", "num_simulations": 25, "td_steps": 50, "support_size": 20,
                      "priority_alpha": 0.5},
        # Values lie in [-1, 1]; 9-step returns reach the end of every game (Monte Carlo, as in AlphaZero).
        "pymbrl/TicTacToe-": {"num_simulations": 25, "td_steps": 9, "support_size": 5},
        # Scores reach the thousands: support 30 covers ~850 per step and value; returns discounted
        # over ~100 moves. Stochastic MuZero's codebook collapsed onto one code without the entropy
        # term. The runs behind these settings: examples/results/stochastic_muzero_2048.md.
        "pymbrl/2048-": {"num_simulations": 25, "td_steps": 10, "support_size": 30, "discount": 0.99,
                         "code_entropy_weight": 0.5},
    }

    steps: int = 50_000  # env steps of the run (summed over the envs); a finished run continues when given more
    eval_every: int = 5000  # env steps between evaluations
    eval_episodes: int = 20  # greedy-search episodes per evaluation (TicTacToe: games against each opponent)
    target_return: float | None = None
    """An evaluation whose return reaches this ends the run there, checkpointed (None: run all ``steps``)."""
    checkpoint_every: int = 5000  # env steps between checkpoints
    num_envs: int = 16  # envs playing together, one batched search for all of them per move
    num_simulations: int = 50  # search simulations per move
    search: Literal["muzero", "gumbel", "stochastic"] = "muzero"
    """pUCT (MuZero), Gumbel MuZero (Danihelka et al. 2022), or Stochastic MuZero (Antonoglou et al.
    2022: pUCT over moves and learned chance outcomes; vector observations)."""
    discount: float = 0.997  # two-player games use -1 whatever this says
    td_steps: int = 10  # n of the n-step value targets
    unroll_steps: int = 5  # K, the steps the model is unrolled in training
    batch_size: int = 128  # positions per update
    lr: float = 3e-3  # Adam's step size
    weight_decay: float = 1e-4  # L2 on all weights, as the paper's 1e-4
    value_loss_weight: float = 0.25  # the Reanalyze appendix's weight, against value overfitting
    updates_per_step: float = 0.25  # gradient updates per env step, summed over the envs
    warmup_steps: int = 1000  # env steps of self-play before the first update
    buffer_size: int = 100_000  # positions kept in the game buffer
    prioritized: bool = True  # sample positions by priority |root value - value target|
    priority_alpha: float = 1.0  # priority exponent
    priority_beta: float = 1.0  # importance-sampling exponent
    temperatures: tuple[tuple[float, float], ...] = ((0.0, 1.0), (0.5, 0.5), (0.75, 0.25))
    """(fraction of the run's env steps, visit-count temperature from then on): the paper's 1, 0.5
    and 0.25 after 50% and 75% of training."""
    dirichlet_alpha: float = 0.25  # root noise of pUCT self-play
    dirichlet_fraction: float = 0.25  # weight of the root noise in the prior
    gumbel_considered_actions: int = 16  # actions Gumbel MuZero considers at the root
    num_chance_outcomes: int = 32  # Stochastic MuZero: C, the codes of its chance outcomes (the paper's 2048 codebook)
    commitment_weight: float = 1.0  # Stochastic MuZero: weight of the loss drawing the encoder's softmax to its code
    code_entropy_weight: float = 0.0  # Stochastic MuZero: weight of the entropy of the batch's mean code distribution
    reanalyse_batch: int = 0  # positions re-searched with the latest network per update (0: off)
    simulator: bool = False
    """AlphaZero mode (pymbrl/TicTacToe-v0 only): the search steps the true rules
    (:func:`pymbrl.models.tictactoe.recurrent_fn`) and the network only gives values and priors; set
    ``unroll_steps=0`` with it, as nothing then uses the learned dynamics."""
    support_size: int = 10  # S: values and rewards are predicted over the integers -S..S
    hidden_size: int = 64  # hidden units of the MLP network's layers
    latent_size: int = 32  # size of the MLP network's hidden state
    actors: int = 0  # self-play actors on Ray, each with num_envs envs (0: self-play in this process)
    actor_moves: int = 8  # moves an actor plays per call before it hands its finished games over
    max_policy_lag: float = 4.0  # games played more than this many weight versions per actor behind are dropped
    reanalyse_actors: int = 0  # Ray actors re-searching reanalyse_batch positions per call (0: in the update)
    eval_actors: int = 0  # Ray actors sharing each evaluation, run beside training (0: by the driver, in turn)
    ray_address: str = ""  # the Ray cluster to join ("": start one on this machine when actors > 0)

    def identity(self) -> dict[str, Any]:
        """All but steps, device and how the work is spread over Ray actors: a run resumes on
        another cluster, or in one process."""
        spread = ("actors", "actor_moves", "max_policy_lag", "reanalyse_actors", "eval_actors", "ray_address")
        # Like steps, the target is when the run stops, not what it does: a run continues with another.
        return {k: v for k, v in super().identity().items() if k not in (*spread, "target_return")}

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("actors", "reanalyse_actors", "eval_actors"):
            integer(getattr(self, name), name, minimum=0)
        integer(self.actor_moves, "actor_moves")
        real(self.max_policy_lag, "max_policy_lag", low=0.0)
        if self.target_return is not None and not math.isfinite(real(self.target_return, "target_return")):
            raise ValueError(f"target_return: expected a finite number or None, got {self.target_return!r}")
        for name in ("reanalyse_actors", "eval_actors"):
            if getattr(self, name) and not self.actors:
                raise ValueError(f"{name}: Ray actors beside self-play on Ray; with actors=0 use 0")
        if self.reanalyse_actors and not self.reanalyse_batch:
            raise ValueError("reanalyse_actors: they re-search reanalyse_batch positions per call; set it > 0")
        if not isinstance(self.ray_address, str):
            raise TypeError(f"ray_address: expected a str, got {self.ray_address!r}")
        for name in ("num_envs", "num_simulations", "td_steps", "batch_size", "buffer_size",
                     "gumbel_considered_actions", "support_size", "hidden_size", "latent_size", "num_chance_outcomes"):
            integer(getattr(self, name), name)
        for name in ("unroll_steps", "warmup_steps", "reanalyse_batch"):
            integer(getattr(self, name), name, minimum=0)
        if self.search not in ("muzero", "gumbel", "stochastic"):
            raise ValueError(f"search: expected 'muzero', 'gumbel' or 'stochastic', got {self.search!r}")
        for name in ("discount", "dirichlet_fraction"):
            real(getattr(self, name), name, low=0.0, high=1.0)
        for name in ("lr", "weight_decay", "value_loss_weight", "updates_per_step", "priority_alpha", "priority_beta",
                     "dirichlet_alpha", "commitment_weight", "code_entropy_weight"):
            real(getattr(self, name), name, low=0.0)
        if self.dirichlet_alpha == 0.0:
            raise ValueError("dirichlet_alpha: expected a number > 0, got 0.0")
        for name in ("prioritized", "simulator"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name}: expected a bool, got {getattr(self, name)!r}")
        if self.batch_size > self.buffer_size:  # no batch could ever be drawn: MuZero would never learn
            raise ValueError(f"batch_size: expected at most buffer_size ({self.buffer_size}), got {self.batch_size}")
        if self.simulator and self.search == "stochastic":
            raise ValueError("simulator: AlphaZero mode steps the true rules, where Stochastic MuZero learns a model; "
                             "use search='muzero' or 'gumbel' with it")
        if self.simulator and self.env != TICTACTOE:
            raise ValueError(f"simulator: AlphaZero mode knows the rules of {TICTACTOE} only, got env {self.env!r}")
        object.__setattr__(self, "temperatures", checked_temperatures(self.temperatures))


# ``pymbrl demo``'s agent: the CartPole preset with twice the batch, 16 simulations per move rather
# than 25, the first update after 500 steps, an evaluation every 1000, and Monte Carlo value targets
# (td_steps past any episode) weighted as much as the policy's: without those two, seed 2 stalled
# below 420 for 20k steps. Seeds 0-9 reach a greedy return of 475 in 3k-16k env steps. The runs
# behind these settings: examples/results/muzero.md.
CARTPOLE_DEMO: dict[str, Any] = {
    "env": "CartPole-v1", "steps": 25_000, "target_return": 475.0, "eval_every": 1000, "eval_episodes": 10,
    "checkpoint_every": 5000, "num_simulations": 16, "num_envs": 16, "batch_size": 256, "updates_per_step": 0.25,
    "warmup_steps": 500, "value_loss_weight": 1.0, "td_steps": 500,
}


def make_env(config: MuZeroConfig, render_mode: str | None = None) -> gym.Env:
    """One env of ``config.env`` as the agent plays it (``gym.make``'s wrappers); ValueError naming
    ``env`` for an unknown env, one without a Discrete action space, or observations that are
    neither vectors nor [C, H, W] images."""
    try:
        env = gym.make(config.env, render_mode=render_mode)
    except gym.error.Error as error:
        raise ValueError(f"env: {error}") from None
    shape = env.observation_space.shape
    if not isinstance(env.action_space, gym.spaces.Discrete) or shape is None or len(shape) not in (1, 3):
        env.close()
        raise ValueError(f"env: MuZero needs a Discrete action space and vector or [C, H, W] observations, "
                         f"{config.env} has {env.action_space} and {env.observation_space}")
    return env


def checked_temperatures(schedule: Any) -> tuple[tuple[float, float], ...]:
    """A visit-count temperature schedule of (fraction of the run, temperature) pairs, fractions
    rising from 0.0, as a tuple of float pairs; ValueError naming ``temperatures`` otherwise."""
    if not (isinstance(schedule, (tuple, list)) and schedule
            and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in schedule)):
        raise ValueError(f"temperatures: expected (fraction, temperature) pairs, got {schedule!r}")
    schedule = tuple((real(f, "temperatures", low=0.0, high=1.0), real(t, "temperatures", low=0.0))
                     for f, t in schedule)
    if schedule[0][0] != 0.0 or any(a[0] >= b[0] for a, b in zip(schedule, schedule[1:])):
        raise ValueError(f"temperatures: expected fractions rising from 0.0, got {[f for f, _ in schedule]}")
    return schedule


def reached(config: MuZeroConfig, history: list[dict[str, Any]]) -> bool:
    """Whether the run's latest evaluation reached ``config.target_return``."""
    return config.target_return is not None and bool(history) and history[-1]["return"] >= config.target_return


def temperature(config: Any, progress: float) -> float:
    """The visit-count temperature at ``progress`` (the fraction of the run's env steps done)."""
    return [t for start, t in config.temperatures if progress >= start][-1]


def unroll_loss(network: torch.nn.Module, batch: Any, config: MuZeroConfig, weights: torch.Tensor | None = None,
                following: Outcomes | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The loss of a batch of unrolls (mean over the batch, weighted by ``weights`` [B], default the
    batch's importance weights) and new priorities.

    Per unroll step k = 0..K: cross-entropies of the value and reward predictions against their
    two-hot targets and of the policy against the visit distribution, masked past the end of the
    game as the buffer says; steps k >= 1 weigh 1/K (the paper's gradient scaling), the value
    ``value_loss_weight``. Stochastic MuZero unrolls through the chance codes of ``following``
    (:func:`~pymbrl.agents.muzero_stochastic.outcomes`) and adds its afterstates' losses
    (:func:`~pymbrl.agents.muzero_stochastic.chance_unroll`). Returns (loss, priorities [B] =
    |predicted - target root value|, parts).
    """
    K, S = config.unroll_steps, config.support_size
    # Two-hot targets of every step at once: one call each rather than one per step and kind.
    value_targets = scalar_to_support(batch.target_values, S)  # [B, K + 1, 2S + 1]
    reward_targets = scalar_to_support(batch.target_rewards, S)
    out = network.initial_inference(batch.obs)
    predictions = [(out.value_logits, None, out.policy_logits)]
    chance_loss, chance_parts = None, {}
    if config.search == "stochastic":
        if following is None:
            raise ValueError("following: Stochastic MuZero unrolls through the observations after each move; "
                             "pass outcomes(buffer, batch.indices, unroll_steps)")
        unrolled, chance_loss, chance_parts = chance_unroll(network, out.hidden_state, batch, following, config,
                                                            value_targets)
        predictions += unrolled
    hidden = out.hidden_state
    for k in range(K if chance_loss is None else 0):
        out = network.recurrent_inference(hidden, batch.actions[:, k])
        predictions.append((out.value_logits, out.reward_logits, out.policy_logits))
        hidden = scale_gradient(out.hidden_state, 0.5)
    value_loss = reward_loss = policy_loss = torch.zeros(batch.obs.shape[0], device=batch.obs.device)
    for k, (value_logits, reward_logits, policy_logits) in enumerate(predictions):
        scale = 1.0 if k == 0 else 1.0 / K
        value_loss = value_loss + scale * batch.value_mask[:, k] * cross_entropy(value_logits, value_targets[:, k])
        policy_loss = policy_loss + scale * batch.mask[:, k] * cross_entropy(policy_logits, batch.target_policies[:, k])
        if reward_logits is not None:
            reward_loss = reward_loss + scale * batch.reward_mask[:, k] * cross_entropy(reward_logits,
                                                                                        reward_targets[:, k])
    per_sample = config.value_loss_weight * value_loss + reward_loss + policy_loss
    if chance_loss is not None:
        per_sample = per_sample + chance_loss
    loss = ((batch.weights if weights is None else weights) * per_sample).mean()
    with torch.no_grad():
        predicted = support_to_scalar(predictions[0][0], S)
        priorities = (predicted - batch.target_values[:, 0]).abs() + 1e-6
    parts = {"value_loss": float(value_loss.detach().mean()), "reward_loss": float(reward_loss.detach().mean()),
             "policy_loss": float(policy_loss.detach().mean()), **chance_parts}
    return loss, priorities, parts


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1)


def update(network: torch.nn.Module, optimizer: torch.optim.Optimizer, buffer: GameBuffer, searcher: Searcher,
           c: MuZeroConfig) -> dict[str, float]:
    """One gradient step on a sampled batch (after refreshing some stored targets, if reanalysing
    here rather than on actors)."""
    if c.reanalyse_batch and not c.reanalyse_actors:
        stale = buffer.sample(c.reanalyse_batch)
        fresh = searcher(stale.obs, None, 1.0, noise=False)
        buffer.update_targets(stale.indices, fresh.search_tree.summary().value, fresh.action_weights)
    batch = buffer.sample(c.batch_size, device=c.device)
    following = outcomes(buffer, batch.indices, c.unroll_steps, c.device) if c.search == "stochastic" else None
    # Importance weights relative to the batch's largest (muzero-general, LightZero) rather than the
    # buffer's: one near-zero priority anywhere would otherwise shrink every step to nothing.
    loss, priorities, parts = unroll_loss(network, batch, c, weights=batch.weights / batch.weights.max(),
                                          following=following)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if c.prioritized:
        buffer.update_priorities(batch.indices, priorities.cpu())
    return {"loss": float(loss.detach()), **parts}


def train(config: MuZeroConfig | None = None, run_dir: str | os.PathLike | None = None, *,
          callbacks: Callbacks | None = None) -> TrainResult:
    """Trains MuZero by self-play on ``config.env`` for ``config.steps`` env steps (summed over the envs).

    The records (every ``eval_every`` steps and at the end) hold ``step``, ``return`` (greedy
    search, mean over ``eval_episodes``; on TicTacToe the score against a perfect player, with the
    win/draw/loss counts against a random and a perfect one), ``episode_return`` (mean of the
    self-play games finished since the last record), ``updates``, the last update's losses and
    ``seconds``. With ``target_return``, the run ends (checkpointed) at the first record whose
    return reaches it, and running it again does not continue it. The result's agent is the greedy
    :class:`~pymbrl.agents.muzero_selfplay.Searcher`.

    With ``run_dir``, a checkpoint (after the first step at or past each multiple of
    ``checkpoint_every``, games in progress or not) holds the network, the optimiser, the game
    buffer, the search's seed stream, the counters and the games in progress with the state of
    every env, so that a resumed run ends exactly where the uninterrupted one would have. That holds
    for envs whose whole state is known (:mod:`pymbrl.training.envstate`); with any other env, a
    resumed run drops the games in progress and starts new ones with a ``RuntimeWarning``. A finished
    run given more ``steps`` continues; its temperature schedule is then read against the new total.
    """
    c = config or MuZeroConfig()
    envs = [make_env(c) for _ in range(c.num_envs)]
    play = SelfPlay(envs, c.seed)
    if c.reanalyse_batch and play.has_legal_actions:
        raise ValueError(f"reanalyse_batch: reanalysis searches stored positions without their legal-action "
                         f"masks, so it is for envs without them; {c.env} has them (use 0)")
    run = start_run(run_dir, "muzero", c, callbacks=callbacks)
    with run:  # closes it, and frees its directory for other processes, however training ends
        obs_space, num_actions = envs[0].observation_space, play.num_actions
        with seeded(c.seed):
            network = network_of(c, obs_space.shape, num_actions).to(c.device)
        optimizer = torch.optim.Adam(network.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        buffer = GameBuffer(c.buffer_size, obs_space.shape, num_actions, obs_dtype=obs_space.dtype,
                            unroll_steps=c.unroll_steps, td_steps=c.td_steps,
                            discount=-1.0 if play.two_player else c.discount, prioritized=c.prioritized,
                            alpha=c.priority_alpha, beta=c.priority_beta, seed=c.seed)
        searcher = Searcher(network, c, play.two_player, c.seed + 1)
        updates, owed = 0, 0.0
        finished: list[float] = []  # returns of the self-play games ended since the last record
        parts: dict[str, float] = {}  # the latest update's losses
        if run.state is not None:
            s = run.state
            with run.restoring(games=buffer):
                updates = field(s["updates"], int, "updates", lambda v: v >= 0, "an integer >= 0")
                owed = field(s["owed"], float, "owed", lambda v: 0.0 <= v < math.inf, "a finite float >= 0")
                finished = [field(r, float, "finished", expected="floats")
                            for r in field(s["finished"], list, "finished")]
                parts = {field(k, str, "parts"): field(v, float, "parts")
                         for k, v in field(s["parts"], dict, "parts").items()}
                check_generator_state(searcher.generator, s["searcher"], "searcher")
                # Checked in full before the envs change; a distributed run's games in flight are not saved.
                resumed_games = play.load_state_dict(s["play"], "play") if s["play"] is not None else c.actors > 0
                network.load_state_dict(s["network"])
                optimizer.load_state_dict(s["optimizer"])
                buffer = run.buffers["games"]
                searcher.generator.bit_generator.state = s["searcher"]
            if not resumed_games:
                warnings.warn(f"env: the state of {c.env} cannot be captured, so the games in progress at the "
                              f"checkpoint were dropped and new ones started; this resumed run will not match an "
                              f"uninterrupted one",
                              RuntimeWarning, stacklevel=2)
        step = run.step
        actors = Actors(c, network, buffer) if c.actors else None
        try:
            while step < c.steps and not reached(c, run.history):
                if actors is None:
                    _, ended = play.step(searcher, buffer, temperature(c, step / c.steps))
                    finished += [episode_return for episode_return, _ in ended]
                    played = c.num_envs
                else:
                    returns, played = actors.next(buffer, temperature(c, step / c.steps))
                    finished += returns
                before, step = step, min(c.steps, step + played)
                if step >= c.warmup_steps and len(buffer) >= c.batch_size:
                    owed += (step - before) * c.updates_per_step
                    learned = owed >= 1.0
                    while owed >= 1.0:
                        parts = update(network, optimizer, buffer, searcher, c)
                        updates += 1
                        owed -= 1.0
                    if actors is not None and learned:  # a version per change: the lag counts changes
                        actors.publish(network)
                due = run.due(step, episode_over=True)
                if step // c.eval_every > before // c.eval_every or step == c.steps:
                    seed = 10_000 + step
                    record = {"episode_return": float(np.mean(finished)) if finished else float("nan"),
                              "updates": updates, **({} if actors is None else actors.stats()), **parts}
                    finished = []
                    if actors is not None and c.eval_actors:
                        previous = actors.evaluated(wait=True)  # first, so the log stays in step order
                        if previous is not None:
                            run.evaluated(previous)
                        actors.evaluate(step, record, seed, play.two_player)
                    else:
                        scores = evaluate_two_player(searcher, c.eval_episodes, seed) if play.two_player \
                            else {"return": evaluate(searcher, c.env, c.eval_episodes, seed)}
                        run.evaluated({"step": step, **scores, **record})
                if actors is not None and actors.evaluation:
                    # A checkpoint and the run's end wait for it, so no record is lost to an interrupt.
                    done = actors.evaluated(wait=due or step == c.steps)
                    if done is not None:
                        run.evaluated(done)
                if due or (reached(c, run.history) and run.directory is not None):
                    run.save(step, {"network": network.state_dict(), "optimizer": optimizer.state_dict(),
                                    "updates": updates, "owed": owed, "finished": list(finished), "parts": dict(parts),
                                    "play": play.state_dict() if actors is None else None,
                                    "searcher": searcher.generator.bit_generator.state}, {"games": buffer})
                run.progress(step)
        finally:
            if actors is not None:
                actors.close()
    return TrainResult(searcher, run.history, run.directory, run.history[-1] if run.history else {})


def load(run_dir: str | os.PathLike, device: str | None = None) -> Searcher:
    """The greedy searcher of the MuZero run in ``run_dir`` (its last checkpoint), on ``device``
    (default: the run's); ``load(run_dir).act(obs)`` searches one observation or a batch."""
    config, state = read_run(run_dir, MuZeroConfig, "muzero", device)
    env = make_env(config)
    _, info = env.reset()
    env.close()
    network = network_of(config, env.observation_space.shape, int(env.action_space.n)).to(config.device)
    with restoring(Path(run_dir) / "checkpoint" / STATE):
        network.load_state_dict(state["network"])
    return Searcher(network, config, "to_play" in info, seed=0)


def play(agent: Searcher, config: MuZeroConfig, episodes: int, seed: int) -> str:
    """What ``pymbrl play muzero`` prints: on TicTacToe the results of ``episodes`` games against a
    random and a perfect player (half as X); elsewhere the mean return of ``episodes`` greedy
    episodes (env ``i`` reset with ``seed + i``)."""
    if config.env == TICTACTOE:
        scores = evaluate_two_player(agent, episodes, seed)
        return "\n".join(f"MuZero vs the {name} player, {episodes} games (half as X): {scores[name + '_wins']} won, "
                         f"{scores[name + '_draws']} drawn, {scores[name + '_losses']} lost"
                         for name in ("random", "perfect"))
    mean = evaluate(agent, config.env, episodes, seed)
    return (f"MuZero on {config.env}: mean return {mean:.1f} over {episodes} episodes (greedy search, "
            f"{config.num_simulations} simulations)")
