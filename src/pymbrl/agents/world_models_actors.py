"""World Models on Ray actors: a CMA-ES generation's fitness (in the dream or the real env) and the
collection of rollouts, shared by ``config.actors`` actors. The actors get V's and M's weights
through the object store (no shared file system), and hand rollouts back to the driver, which is
the dataset's one writer (crash-safe as without actors)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pymbrl.agents import world_models as wm
from pymbrl.agents.world_models_stages import dream_fitness, make_controller, play
from pymbrl.envs.spaces import ActionCodec
from pymbrl.models.world_models import MDNRNN, ConvVAE, Policy
from pymbrl.replay.rollouts import RolloutDataset
from pymbrl.training import Callbacks


class RolloutRecorder:
    """Stands in for the dataset in an actor: keeps the rollouts (the arguments of
    :meth:`~pymbrl.replay.rollouts.RolloutDataset.add`) to hand them to the driver."""

    def __init__(self) -> None:
        self.rollouts: list[tuple[np.ndarray, ...]] = []

    def add(self, frames: np.ndarray, actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray) -> None:
        self.rollouts.append((frames, actions, rewards, dones))


class WorldModelsWorker:
    """The object a Ray actor holds: C's shape and, once trained, copies of V and M (from their
    state dicts) on the CPU; ``vae`` and ``mdnrnn`` None before they exist (random collection)."""

    def __init__(self, config: wm.WorldModelsConfig, codec: ActionCodec, vae: dict | None, mdnrnn: dict | None,
                 start_z: torch.Tensor | None):
        torch.set_num_threads(1)  # one actor per CPU
        self.config, self.codec, self.start_z = config, codec, start_z
        self.controller = make_controller(config, codec)
        self.vae = self.mdnrnn = None
        if vae is not None and mdnrnn is not None:
            self.mdnrnn = MDNRNN(config.z_dim, codec.dim, config.rnn_hidden, config.mixtures, config.reward_head)
            self.mdnrnn.load_state_dict(mdnrnn)
            self.vae = ConvVAE(config.z_dim, config.kl_tolerance)
            self.vae.load_state_dict(vae)
            self.vae.eval()
            self.mdnrnn.eval()

    def policy(self, explore: float = 0.0, seed: int = 0) -> Policy:
        c = self.config
        if self.vae is None:
            return Policy(None, None, None, self.codec, repeat=c.random_repeat)
        return Policy(self.vae, self.mdnrnn, self.controller, self.codec, c.controller_uses_hidden, explore,
                      torch.Generator().manual_seed(seed))

    def dream(self, candidates: np.ndarray, seed: int) -> np.ndarray:
        candidates = np.array(candidates)  # Ray's arrays are read-only views
        generator = torch.Generator().manual_seed(seed)
        return dream_fitness(self.mdnrnn, self.controller, self.codec, self.start_z, self.config, generator)(candidates)

    def real(self, candidates: np.ndarray, seed: int) -> np.ndarray:
        params = torch.tensor(candidates, dtype=torch.float32).repeat_interleave(self.config.trials, 0)
        returns = play(self.config, len(params), self.policy(), params, seed=seed)
        return returns.reshape(len(candidates), self.config.trials).mean(1)

    def collect(self, episodes: int, params: np.ndarray | None, seed: int) -> dict[str, Any]:
        """``episodes`` rollouts with C's ``params`` (and ``explore`` noise), or random actions."""
        recorder = RolloutRecorder()
        rows = None if params is None else torch.tensor(params, dtype=torch.float32).expand(episodes, -1)
        returns = play(self.config, episodes, self.policy(self.config.explore, seed), rows, seed=seed,
                       dataset=recorder)
        return {"rollouts": recorder.rollouts, "returns": returns}


def actor_group(config: wm.WorldModelsConfig, codec: ActionCodec, policy: Policy,
                start_z: torch.Tensor | None) -> tuple[Any, Callable[[], None]]:
    """``config.actors`` actors of :class:`WorldModelsWorker` with ``policy``'s V and M, on the
    cluster of ``config.ray_address`` (or a Ray started here); returns the group and its closer."""
    from pymbrl.distributed import cluster
    from pymbrl.distributed.group import ActorGroup

    ray, started = cluster.connect(config.ray_address)

    def close() -> None:
        if group is not None:
            group.close()
        if started:
            ray.shutdown()

    group = None
    try:
        cluster.check_cpus(ray, {"actors": config.actors})
        cpu = dataclasses.replace(config, device="cpu", actors=0)
        states = (None, None) if policy.vae is None else \
            tuple({k: v.cpu() for k, v in net.state_dict().items()} for net in (policy.vae, policy.mdnrnn))
        args = ray.put((cpu, codec, *states, None if start_z is None else start_z.cpu()))
        group = ActorGroup(WorldModelsWorker, lambda i, restart: ray.get(args), config.actors)
    except BaseException:
        close()
        raise
    return group, close


def actor_fitness(config: wm.WorldModelsConfig, policy: Policy, codec: ActionCodec, start_z: torch.Tensor | None,
                  seed: int, generation: int) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[], None]]:
    """Fitness shared by ``config.actors`` actors: each generation's candidates split into one
    chunk per actor, chunk j of generation g drawing from seed ``seed + 7919 g + 104729 j`` (so a
    resumed evolution meets the same dreams or episodes). Returns the fitness and the closer."""
    group, close = actor_group(config, codec, policy, start_z)
    calls = [generation]
    method = "dream" if config.train_in == "dream" else "real"

    def fitness(candidates: np.ndarray) -> np.ndarray:
        calls[0] += 1
        chunks = np.array_split(candidates, min(config.actors, len(candidates)))
        out = group.map(method, [{"candidates": c, "seed": seed + 7919 * calls[0] + 104729 * j}
                                 for j, c in enumerate(chunks)])
        return np.concatenate(out)
    return fitness, close


def actor_collect(config: wm.WorldModelsConfig, codec: ActionCodec, policy: Policy, params: torch.Tensor | None,
                  episodes: int, dataset: RolloutDataset, callbacks: Callbacks) -> np.ndarray:
    """Collection on ``config.actors`` actors: ``episodes`` rollouts with C's ``params`` (None:
    random actions), stored in ``dataset`` as they come back; returns their returns.

    The rollouts go out in waves of ``num_envs`` per actor (a wave is all that is in flight, so the
    object store holds at most that many rollouts). A chunk starting at the dataset's rollout ``k``
    plays with seed ``seed + 100003 (k + 1)``, so a resumed collection goes on with new seeds.
    """
    group, close = actor_group(config, codec, policy, None)
    row = None if params is None else params.cpu().numpy()
    returns: list[float] = []
    try:
        while len(returns) < episodes:
            wave = min(episodes - len(returns), config.actors * config.num_envs)
            sizes = [len(part) for part in np.array_split(np.arange(wave), min(wave, config.actors))]
            starts = len(dataset) + np.cumsum([0, *sizes[:-1]])
            chunks = [{"episodes": n, "params": row, "seed": config.seed + 100_003 * (int(k) + 1)}
                      for n, k in zip(sizes, starts)]
            for out in group.map("collect", chunks):
                for rollout in out["rollouts"]:
                    dataset.add(*(np.array(a) for a in rollout))  # Ray's arrays are read-only views
                returns += list(out["returns"])
            callbacks.on_progress("collect", len(returns), episodes)
    finally:
        close()
    return np.asarray(returns)
