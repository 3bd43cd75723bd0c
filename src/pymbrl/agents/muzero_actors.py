"""MuZero on Ray actors: self-play, reanalysis and evaluation workers, and the driver's side of them.

The driver keeps the learner and the game buffer (the learner samples it every update, zero-copy
to torch). Self-play actors hand it whole games; at most two calls per actor are in flight, so the
actors can never produce faster than the driver stores, and nothing piles up in Ray's object store.
The weights go out once per version through the object store (``ray.put`` of a CPU state dict,
:mod:`pymbrl.distributed.weights`); an actor starting a call asks the board for a newer version and
fetches it only then. An evaluation uses the version of its step.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pymbrl.agents.muzero_selfplay import (
    Searcher,
    SelfPlay,
    evaluate,
    evaluate_two_player,
    network_of,
)
from pymbrl.distributed.weights import Publisher, fetch
from pymbrl.replay import GameBuffer

if TYPE_CHECKING:
    from pymbrl.agents.muzero import MuZeroConfig


class Worker:
    """What a MuZero actor holds: ``num_envs`` envs of its own and a CPU copy of the network in a
    :class:`~pymbrl.agents.muzero_selfplay.Searcher`; ``seed`` seeds its envs and searches."""

    def __init__(self, config: MuZeroConfig, seed: int, num_envs: int = 1):
        from pymbrl.agents.muzero import make_env  # that module imports this one

        torch.set_num_threads(1)  # one actor per CPU
        self.config, self.version = config, 0
        self.play = SelfPlay([make_env(config) for _ in range(num_envs)], seed)
        network = network_of(config, self.play.envs[0].observation_space.shape, self.play.num_actions)
        self.searcher = Searcher(network, config, self.play.two_player, seed + 1)

    def pull(self, weights: Any) -> None:
        """Loads the newest weights ``weights`` names (see :func:`pymbrl.distributed.weights.fetch`)."""
        newer = fetch(weights, self.version)
        if newer is not None:
            self.version, state = newer
            self.searcher.network.load_state_dict(state)


class SelfPlayWorker(Worker):
    def __init__(self, config: MuZeroConfig, seed: int):
        super().__init__(config, seed, config.num_envs)

    def play_moves(self, moves: int, temperature: float, weights: Any) -> dict[str, Any]:
        """``moves`` moves in every env with the newest weights; returns the finished games (the
        arguments of :meth:`~pymbrl.replay.GameBuffer.add_game`), their returns, the env steps
        and the version of the weights that played them."""
        self.pull(weights)
        recorder, returns = GameRecorder(), []
        for _ in range(moves):
            _, ended = self.play.step(self.searcher, recorder, temperature)
            returns += [r for r, _ in ended]
        return {"games": recorder.games, "returns": returns, "steps": moves * len(self.play.envs),
                "version": self.version}


class ReanalyseWorker(Worker):
    def reanalyse(self, weights: Any, indices: np.ndarray, obs: np.ndarray) -> dict[str, np.ndarray]:
        """Fresh root values and policies of stored positions (ids ``indices``, observations ``obs``)."""
        self.pull(weights)
        fresh = self.searcher(np.array(obs), None, 1.0, noise=False)
        return {"indices": indices, "root_values": fresh.search_tree.summary().value.cpu().numpy(),
                "policies": fresh.action_weights.cpu().numpy()}


class EvaluationWorker(Worker):
    def evaluate(self, weights: Any, episodes: int, seed: int) -> dict[str, float]:
        """The scores of :func:`~pymbrl.agents.muzero_selfplay.evaluate` (or, two-player,
        :func:`~pymbrl.agents.muzero_selfplay.evaluate_two_player`) with the newest weights."""
        self.pull(weights)
        if self.play.two_player:
            return evaluate_two_player(self.searcher, episodes, seed)
        return {"return": evaluate(self.searcher, self.config.env, episodes, seed)}


class GameRecorder:
    """Stands in for the game buffer in an actor: keeps the finished games (the arguments of
    :meth:`~pymbrl.replay.GameBuffer.add_game`) to hand them to the driver, which stores them."""

    def __init__(self) -> None:
        self.games: list[dict[str, Any]] = []

    def add_game(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, root_values: np.ndarray,
                 policies: np.ndarray, *, terminated: bool, final_value: float) -> None:
        self.games.append({"obs": obs, "actions": actions, "rewards": rewards, "root_values": root_values,
                           "policies": policies, "terminated": terminated, "final_value": final_value})


def store_games(buffer: GameBuffer, games: list[dict[str, Any]]) -> None:
    """Adds the games a :class:`GameRecorder` kept to ``buffer`` (it copies Ray's read-only arrays)."""
    for g in games:
        buffer.add_game(g["obs"], g["actions"], g["rewards"], g["root_values"], g["policies"],
                        terminated=g["terminated"], final_value=g["final_value"])


class Actors:
    """The driver's side: ``config.actors`` self-play actors, ``config.reanalyse_actors``
    reanalysis actors and ``config.eval_actors`` evaluation actors, one CPU each.

    Actor ``i`` of a kind draws from its own seeds (``seed + 1000 (i + 1)`` for self-play, plus
    ``10^6`` for reanalysis and ``2 * 10^6`` for evaluation, plus 100 per replacement), apart from
    the driver's streams. A dead actor is replaced and its calls in flight counted in
    ``actor_calls_lost`` (:meth:`stats`); ``policy_lag`` is the most versions of the weights that the
    games stored since the last record were behind the learner's (which publishes a version per call
    it takes). Games further behind than ``max_policy_lag`` versions per actor are dropped, and
    counted in ``stale_games``.
    """

    def __init__(self, config: MuZeroConfig, network: torch.nn.Module, buffer: GameBuffer):
        from pymbrl.distributed import cluster
        from pymbrl.distributed.group import ActorGroup
        from pymbrl.distributed.pool import ProducerPool

        self.ray, self.started = cluster.connect(config.ray_address)
        self.config, self.buffer, self.temperature = config, buffer, 1.0
        self.lag, self.reanalysed, self.stale = 0, 0, 0
        self.publisher: Any = None
        self.selfplay: Any = None
        self.reanalysers: Any = None
        self.evaluators: Any = None
        self.evaluation: Any = None  # (step, the record's other fields, the scatter in flight)
        try:
            cluster.check_cpus(self.ray, {"actors": config.actors, "reanalyse_actors": config.reanalyse_actors,
                                          "eval_actors": config.eval_actors})
            self.publisher = Publisher(self.ray)
            self.publish(network)
            cpu, seed = dataclasses.replace(config, device="cpu"), config.seed
            self.selfplay = ProducerPool(SelfPlayWorker, lambda i, r: (cpu, seed + 1000 * (i + 1) + 100 * r),
                                         config.actors, self.play_call)
            if config.reanalyse_actors:
                # One call each in flight: a reanalysis result is only worth the weights it searched with.
                self.reanalysers = ProducerPool(ReanalyseWorker, lambda i, r: (cpu, seed + 10**6 + 1000 * i + 100 * r),
                                                config.reanalyse_actors, self.reanalyse_call, inflight=1,
                                                start=False)
            if config.eval_actors:
                self.evaluators = ActorGroup(EvaluationWorker,
                                             lambda i, r: (cpu, seed + 2 * 10**6 + 1000 * i + 100 * r),
                                             config.eval_actors)
        except BaseException:
            self.close()
            raise

    def play_call(self, i: int) -> tuple[str, dict[str, Any]]:
        return "play_moves", {"moves": self.config.actor_moves, "temperature": self.temperature,
                              "weights": self.publisher.board}

    def reanalyse_call(self, i: int) -> tuple[str, dict[str, Any]]:
        stale = self.buffer.sample(self.config.reanalyse_batch)
        return "reanalyse", {"weights": self.publisher.board, "indices": stale.indices.numpy(),
                             "obs": stale.obs.numpy()}

    def publish(self, network: torch.nn.Module) -> None:
        """One object-store copy of the network's current weights (CPU) per version."""
        self.publisher.publish({k: v.detach().cpu() for k, v in network.state_dict().items()})

    def next(self, buffer: GameBuffer, temperature: float) -> tuple[list[float], int]:
        """The next self-play call's finished games stored in ``buffer`` (and the reanalysis results
        back by now written into it): (their returns, env steps)."""
        self.buffer, self.temperature = buffer, temperature
        _, out = self.selfplay.next()
        lag = self.publisher.newest[0] - out["version"]
        if lag > self.config.max_policy_lag * self.config.actors:
            self.stale += len(out["games"])
            return [], out["steps"]  # the env steps were taken all the same: they count
        store_games(buffer, out["games"])
        self.lag = max(self.lag, lag)
        if self.reanalysers is not None:
            self.refresh_targets()
        return out["returns"], out["steps"]

    def refresh_targets(self) -> None:
        """Writes back the reanalysis results that came back, for the positions still stored
        (a game may have been evicted while its positions were searched again)."""
        if not self.reanalysers.started:
            if len(self.buffer) >= self.config.reanalyse_batch:
                self.reanalysers.start()
            return
        oldest = self.buffer.ids.start
        for _, out in self.reanalysers.ready():
            keep = out["indices"] >= oldest
            if keep.any():
                self.buffer.update_targets(out["indices"][keep], out["root_values"][keep], out["policies"][keep])
                self.reanalysed += int(keep.sum())

    def evaluate(self, step: int, record: dict[str, Any], seed: int, two_player: bool) -> None:
        """Starts evaluating the newest weights on the evaluation actors (the episodes split among
        them, episode ``e`` seeded ``seed + e`` as in the driver); :meth:`evaluated` hands back the
        record. Two-player games go to one actor."""
        c = self.config
        if two_player:
            chunks = [{"weights": self.publisher.newest, "episodes": c.eval_episodes, "seed": seed}]
        else:
            sizes = [len(part) for part in np.array_split(np.arange(c.eval_episodes),
                                                          min(c.eval_episodes, c.eval_actors))]
            starts = np.cumsum([0, *sizes[:-1]])
            chunks = [{"weights": self.publisher.newest, "episodes": n, "seed": seed + int(s)}
                      for n, s in zip(sizes, starts)]
        self.evaluation = (step, record, chunks, self.evaluators.scatter("evaluate", chunks))

    def evaluated(self, wait: bool) -> dict[str, Any] | None:
        """The record of the evaluation in flight once it is back (waiting for it if ``wait``)."""
        if self.evaluation is None:
            return None
        step, record, chunks, scatter = self.evaluation
        if not wait and not scatter.done():
            return None
        results = scatter.gather()
        self.evaluation = None
        if len(results) == 1:
            scores = results[0]
        else:
            weights = np.array([chunk["episodes"] for chunk in chunks], dtype=np.float64)
            scores = {"return": float(np.dot([r["return"] for r in results], weights) / weights.sum())}
        return {"step": step, **scores, **record}

    def stats(self) -> dict[str, Any]:
        """Counters for the next record (the policy lag restarts from there)."""
        lost = self.selfplay.lost + sum(pool.lost for pool in (self.reanalysers, self.evaluators) if pool is not None)
        out = {"actor_calls_lost": lost, "actor_nodes": len(set(self.selfplay.nodes())), "policy_lag": self.lag,
               "stale_games": self.stale}
        if self.reanalysers is not None:
            out["reanalysed"] = self.reanalysed
        self.lag = 0
        return out

    def close(self) -> None:
        """Kills every actor and, if this driver started Ray, stops it."""
        for pool in (self.selfplay, self.reanalysers, self.evaluators, self.publisher):
            if pool is not None:
                pool.close()
        if self.started:
            self.ray.shutdown()
