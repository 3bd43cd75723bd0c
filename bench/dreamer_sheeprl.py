"""Peer adapter: sheeprl's DreamerV3 (sheeprl 0.8.4), driven through sheeprl's own code, for timing beside pymbrl.

``make bench`` installs sheeprl without its dependencies (only what importing it needs: lightning, torchmetrics,
hydra-core, ...) into ``build/peers/sheeprl``, which this module appends to ``sys.path``; torch and gymnasium are the
benchmark venv's.

``SheeprlDreamer(problem)`` (untimed set-up):

- composes sheeprl's hydra configuration as its command line does (``config`` with ``exp=dreamer_v3``, which selects
  ``algo=dreamer_v3_S``; ``env=dummy``), with the sizes overridden to the problem's: recurrent state ``deter``,
  stochastic state ``groups`` x ``classes``, ``hidden`` dense units (and hidden size of the transition and
  representation models), ``layers`` MLP layers, CNN channel multiplier ``cnn_depth``, batch ``batch``, sequence
  length ``length``, horizon ``horizon``, seed ``seed``; one CPU Fabric (``fabric.accelerator=cpu``, ``devices=1``,
  ``precision=32-true``, or ``problem["device"] = "cuda"``), instantiated from ``cfg.fabric`` as ``sheeprl.cli`` does;
  the configuration is resolved into sheeprl's ``dotdict`` as ``sheeprl.cli.run`` does;
- builds the world model, actor, critic and target critic with ``sheeprl.algos.dreamer_v3.agent.build_agent`` for a
  fake observation space (``{"state": Box(obs_dim,) float32}`` for vectors, ``{"rgb": Box(0, 255, (3, 64, 64))
  uint8}`` for images: sheeprl's images are channel-first) and the problem's actions (``Box(-1, 1, (action_dim,))``, or
  ``Discrete(action_dim)``), and the three optimizers from the configuration (Adam, ``fused=True``) set up with
  ``fabric.setup_optimizers``, and ``Moments``, as ``dreamer_v3.main`` does;
- makes one fixed random batch as ``sample_batches`` hands it to ``train`` (time-major ``[T, B, ...]`` float32):
  uint8-valued images (0..255, as floats) or standard-normal vectors, one-hot or uniform [-1, 1] actions,
  standard-normal rewards, ``is_first`` with about 2% episode starts, ``terminated`` zeros;
- runs sheeprl's ``world_model_loss`` once under ``torch.no_grad()`` on that batch (the observe pass) and keeps its
  posteriors and recurrent states, detached, as the ``N = batch * length`` start states of ``imagine``.

Timed methods:

- ``train_step()``: one world-model update, ``sheeprl.algos.dreamer_v3.dreamer_v3.world_model_learning(fabric, cfg,
  world_model, world_optimizer, data)``, the first half of sheeprl's ``train()``: encoder, the RSSM's ``dynamic`` loop
  over the ``length`` steps, priors, decoder / two-hot reward / continue heads, ``reconstruction_loss`` (KL balancing
  with free nats), then ``sheeprl.utils.fabric.update``: zero grad, ``fabric.backward``, ``fabric.clip_gradients``
  (norm 1000), ``optimizer.step()``; plus the entropies of the posteriors and priors that it computes for its metrics
  (as in a run with the default ``metric.log_level=1``).
- ``imagine()``: one imagination of ``horizon`` steps from the N start states under ``torch.no_grad()``: each step
  the actor (``actor(latent, clip=False)``, a sample) on the latent state, then ``world_model.rssm.imagination(prior,
  recurrent_state, clip_actions(actions, action_clip))`` (the prior), with ``clip_actions`` from sheeprl's agent and
  ``action_clip = 1`` for continuous actions (0 for discrete), as sheeprl's ``imagine`` does; the ``horizon + 1``
  latent states and ``horizon`` actions are concatenated at the end, as it also does. The loop is the one of
  ``sheeprl.algos.dreamer_v3.dreamer_v3.imagine``, written out here only because that function also runs one more
  actor call (an action for the last state) and the critic, reward and continue heads and the lambda-values, which
  ``imagine_returns()`` times.
- ``imagine_returns()``: sheeprl's own ``imagine(world_model, actor, critic, posteriors, recurrent_states,
  terminated, horizon=, gamma=, lmbda=, action_clip=)`` under ``torch.no_grad()``: the imagination above plus the
  actor at the last state, the critic, reward and continue heads on the ``horizon + 1`` states and the lambda-values.
- ``full_update()``: one whole gradient step as ``dreamer_v3.main`` runs it: the soft update of the target critic,
  then sheeprl's ``train(...)`` (``world_model_learning``, then ``behaviour_learning``: the imagination, with a graph
  for the dynamics backpropagation of continuous actions, ``Moments``, the actor loss and update, the critic loss and
  update), without a metric aggregator.

Deviations from a ``sheeprl`` command-line run: no environment, replay buffer or logger (the batch is made once at
set-up); ``torch.set_float32_matmul_precision`` is left at PyTorch's default instead of sheeprl's ``high`` (which
matters only for TF32 on GPUs); sheeprl's ``distribution.validate_args=False`` is applied during each timed call only
(``Distribution.set_default_validate_args`` is process-wide), restoring the previous value after it. sheeprl's
DreamerV3 (``dreamer_v3_S`` and the XL defaults it inherits) also fixes what the problem does not set: layer norms
(eps 1e-3) after every hidden layer and in the GRU, SiLU, 1% unimix on latents and discrete actions, 255-bin two-hot
reward and critic heads, a learnable initial recurrent state, the continue head, Adam (lr 1e-4, eps 1e-8 for the
world model), gradient clipping 1000 (world model) / 100 (actor, critic), and for continuous actions its
``scaled_normal`` actor distribution. Torch threads are not set here: the caller sets them. Side effects of the
set-up on the process: importing sheeprl runs ``dotenv.load_dotenv()`` and sets ``TORCHINDUCTOR_CACHE_DIR`` if unset,
and ``fabric.seed_everything(seed)`` seeds Python's, numpy's and torch's global generators. ``problem["device"] =
"cuda"`` (default ``cpu``) puts everything on the GPU and synchronizes at the end of each timed call; it has not been
tried on a GPU.
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from typing import Iterator, Optional

from _report import add_sheeprl_path


def available() -> Optional[str]:
    """sheeprl's version, or None when it does not import (``make bench`` installs it into build/peers/sheeprl)."""
    add_sheeprl_path()
    try:
        import sheeprl
        import sheeprl.algos.dreamer_v3.dreamer_v3  # noqa: F401
    except Exception:  # a missing dependency, or one of the wrong version, fails with more than ImportError
        return None
    return str(sheeprl.__version__)


@contextmanager
def _validate_args(value: bool) -> Iterator[None]:
    """sheeprl's ``distribution.validate_args`` for the duration of a call, the process-wide default restored after."""
    from torch.distributions import Distribution

    previous = Distribution._validate_args
    Distribution.set_default_validate_args(value)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(previous)


def _compose_config(problem: dict):
    """sheeprl's configuration for the problem, resolved as ``sheeprl.cli.run`` resolves it."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf
    from sheeprl.utils.utils import dotdict

    image = problem["obs"] == "image"
    hidden = int(problem["hidden"])
    # exp=dreamer_v3 sets the keys of the encoder and of the decoder: both are overridden
    cnn_keys, mlp_keys = ("[rgb]", "[]") if image else ("[]", "[state]")
    overrides = [
        "exp=dreamer_v3",
        "env=dummy",
        f"seed={int(problem.get('seed', 0))}",
        "fabric.devices=1",
        f"fabric.accelerator={problem.get('device', 'cpu')}",
        "fabric.precision=32-true",
        f"algo.per_rank_batch_size={int(problem['batch'])}",
        f"algo.per_rank_sequence_length={int(problem['length'])}",
        f"algo.horizon={int(problem['horizon'])}",
        f"algo.dense_units={hidden}",
        f"algo.mlp_layers={int(problem['layers'])}",
        f"algo.world_model.recurrent_model.recurrent_state_size={int(problem['deter'])}",
        f"algo.world_model.transition_model.hidden_size={hidden}",
        f"algo.world_model.representation_model.hidden_size={hidden}",
        f"algo.world_model.stochastic_size={int(problem['groups'])}",
        f"algo.world_model.discrete_size={int(problem['classes'])}",
        f"algo.world_model.encoder.cnn_channels_multiplier={int(problem.get('cnn_depth', 32))}",
        f"algo.cnn_keys.encoder={cnn_keys}",
        f"algo.cnn_keys.decoder={cnn_keys}",
        f"algo.mlp_keys.encoder={mlp_keys}",
        f"algo.mlp_keys.decoder={mlp_keys}",
        "env.screen_size=64",
        "env.num_envs=1",
    ]
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_module(config_module="sheeprl.configs", version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return dotdict(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True))


class SheeprlDreamer:
    """sheeprl's DreamerV3 agent for one problem; see the module docstring for what each method times."""

    def __init__(self, problem: dict) -> None:
        add_sheeprl_path()
        import gymnasium as gym
        import hydra
        import numpy as np
        import torch
        from sheeprl.algos.dreamer_v3 import dreamer_v3 as dv3
        from sheeprl.algos.dreamer_v3.agent import build_agent, clip_actions
        from sheeprl.algos.dreamer_v3.utils import Moments

        self._dv3 = dv3
        self._clip_actions = clip_actions
        self.problem = dict(problem)
        self.cfg = cfg = _compose_config(problem)
        self.fabric = fabric = hydra.utils.instantiate(cfg.fabric, _convert_="all")
        fabric.seed_everything(cfg.seed, verbose=False)
        device = fabric.device

        image = problem["obs"] == "image"
        A = int(problem["action_dim"])
        self.is_continuous = not bool(problem["discrete"])
        if image:
            obs_space = gym.spaces.Dict({"rgb": gym.spaces.Box(0, 255, (3, 64, 64), np.uint8)})
        else:
            obs_space = gym.spaces.Dict(
                {"state": gym.spaces.Box(-np.inf, np.inf, (int(problem["obs_dim"]),), np.float32)}
            )
        self.actions_dim = (A,) if self.is_continuous else [A]

        with _validate_args(cfg.distribution.validate_args):
            self.world_model, self.actor, self.critic, self.target_critic, _player = build_agent(
                fabric, self.actions_dim, self.is_continuous, cfg, obs_space
            )
        self.world_optimizer = hydra.utils.instantiate(
            cfg.algo.world_model.optimizer, params=self.world_model.parameters(), _convert_="all"
        )
        self.actor_optimizer = hydra.utils.instantiate(
            cfg.algo.actor.optimizer, params=self.actor.parameters(), _convert_="all"
        )
        self.critic_optimizer = hydra.utils.instantiate(
            cfg.algo.critic.optimizer, params=self.critic.parameters(), _convert_="all"
        )
        self.world_optimizer, self.actor_optimizer, self.critic_optimizer = fabric.setup_optimizers(
            self.world_optimizer, self.actor_optimizer, self.critic_optimizer
        )
        m = cfg.algo.actor.moments
        self.moments = Moments(m.decay, m.max, m.percentile.low, m.percentile.high)
        self._gradient_steps = 0

        # The fixed batch, time-major and float32 as `sample_batches` gives it to `train`.
        T, B = int(problem["length"]), int(problem["batch"])
        gen = torch.Generator().manual_seed(int(problem.get("seed", 0)))
        data = {}
        if image:
            data["rgb"] = torch.randint(0, 256, (T, B, 3, 64, 64), generator=gen, dtype=torch.uint8).float()
        else:
            data["state"] = torch.randn(T, B, int(problem["obs_dim"]), generator=gen)
        if self.is_continuous:
            data["actions"] = torch.rand(T, B, A, generator=gen) * 2 - 1
        else:
            idx = torch.randint(0, A, (T, B), generator=gen)
            data["actions"] = torch.nn.functional.one_hot(idx, A).float()
        data["rewards"] = torch.randn(T, B, 1, generator=gen)
        data["is_first"] = (torch.rand(T, B, 1, generator=gen) < 0.02).float()
        data["is_first"][0] = 1.0
        data["terminated"] = torch.zeros(T, B, 1)
        data["truncated"] = torch.zeros(T, B, 1)
        self.data = {k: v.to(device) for k, v in data.items()}

        # The observe pass: the posteriors and recurrent states of the batch, the start states of the imagination.
        with torch.no_grad(), _validate_args(cfg.distribution.validate_args):
            _, posteriors, recurrent_states, _ = dv3.world_model_loss(
                self.world_model, self.data, **dv3.world_model_loss_kwargs(cfg), entropies=False
            )
        self.posteriors = posteriors.detach()  # [T, B, groups, classes]
        self.recurrent_states = recurrent_states.detach()  # [T, B, deter]
        self.action_clip = float(cfg.algo.actor.action_clip) if self.is_continuous else 0.0

    def _sync(self) -> None:
        import torch

        if self.fabric.device.type == "cuda":
            torch.cuda.synchronize(self.fabric.device)

    def train_step(self) -> None:
        """One world-model update (``world_model_learning``) on the fixed batch."""
        with _validate_args(self.cfg.distribution.validate_args):
            self._dv3.world_model_learning(
                self.fabric, self.cfg, self.world_model, self.world_optimizer, self.data
            )
            self.world_optimizer.zero_grad(set_to_none=True)  # as `train` ends
        self._sync()

    def imagine(self) -> None:
        """``horizon`` steps of actor + ``rssm.imagination`` from the N = batch * length start states, no gradients."""
        import torch

        rssm, actor, clip_actions = self.world_model.rssm, self.actor, self._clip_actions
        stoch = self.posteriors.shape[-2] * self.posteriors.shape[-1]
        with torch.no_grad(), _validate_args(self.cfg.distribution.validate_args):
            with self._dv3.autocast_cache_scope(self.fabric):
                prior = self.posteriors.reshape(1, -1, stoch)
                recurrent_state = self.recurrent_states.reshape(1, -1, self.recurrent_states.shape[-1])
                latent = torch.cat((prior, recurrent_state), -1)
                trajectory, actions_taken = [latent], []
                for _ in range(int(self.cfg.algo.horizon)):
                    actions = torch.cat(actor(latent, clip=False)[0], dim=-1)
                    prior, recurrent_state = rssm.imagination(
                        prior, recurrent_state, clip_actions(actions, self.action_clip)
                    )
                    prior = prior.view(1, -1, stoch)
                    latent = torch.cat((prior, recurrent_state), -1)
                    trajectory.append(latent)
                    actions_taken.append(actions)
                torch.cat(trajectory, dim=0)
                torch.cat(actions_taken, dim=0)
        self._sync()

    def imagine_returns(self) -> None:
        """sheeprl's own ``imagine`` (the imagination, the critic / reward / continue heads, lambda-values), no
        gradients."""
        import torch

        cfg = self.cfg
        with torch.no_grad(), _validate_args(cfg.distribution.validate_args):
            with self._dv3.autocast_cache_scope(self.fabric):
                self._dv3.imagine(
                    self.world_model,
                    self.actor,
                    self.critic,
                    self.posteriors,
                    self.recurrent_states,
                    self.data["terminated"],
                    horizon=cfg.algo.horizon,
                    gamma=cfg.algo.gamma,
                    lmbda=cfg.algo.lmbda,
                    action_clip=self.action_clip,
                )
        self._sync()

    def full_update(self) -> None:
        """One gradient step of ``dreamer_v3.main``: the target critic's soft update, then sheeprl's ``train``."""
        cfg = self.cfg
        if self._gradient_steps % cfg.algo.critic.per_rank_target_network_update_freq == 0:
            tau = 1 if self._gradient_steps == 0 else cfg.algo.critic.tau
            for cp, tcp in zip(self.critic.module.parameters(), self.target_critic.parameters()):
                tcp.data.copy_(tau * cp.data + (1 - tau) * tcp.data)
        with _validate_args(cfg.distribution.validate_args):
            self._dv3.train(
                self.fabric,
                self.world_model,
                self.actor,
                self.critic,
                self.target_critic,
                self.world_optimizer,
                self.actor_optimizer,
                self.critic_optimizer,
                self.data,
                None,
                cfg,
                self.is_continuous,
                self.actions_dim,
                self.moments,
            )
        self._gradient_steps += 1
        self._sync()


S_PROBLEM = {"obs": "vector", "obs_dim": 17, "action_dim": 6, "discrete": False, "batch": 16, "length": 64,
             "horizon": 15, "deter": 512, "groups": 32, "classes": 32, "hidden": 512, "layers": 2, "cnn_depth": 32,
             "seed": 0}


def _main() -> None:
    import torch

    torch.set_num_threads(1)
    version = available()
    if version is None:
        add_sheeprl_path()
        import sheeprl  # noqa: F401  (raises with the reason)
    print(f"sheeprl {version}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    problems = {
        "vector, continuous": dict(S_PROBLEM),
        "image, discrete": {**{k: v for k, v in S_PROBLEM.items() if k != "obs_dim"}, "obs": "image",
                            "discrete": True},
    }
    for name, problem in problems.items():
        t0 = time.perf_counter()
        agent = SheeprlDreamer(problem)
        n_wm = sum(p.numel() for p in agent.world_model.parameters())
        print(f"{name}: set-up {time.perf_counter() - t0:.1f} s, world model {n_wm / 1e6:.2f} M parameters")
        for method in ("train_step", "imagine", "imagine_returns", "full_update"):
            times = []
            for _ in range(3):
                t = time.perf_counter()
                getattr(agent, method)()
                times.append(time.perf_counter() - t)
            print(f"  {method:16s} median {statistics.median(times):.3f} s  "
                  f"({', '.join(f'{x:.3f}' for x in times)})", flush=True)
        del agent


if __name__ == "__main__":
    _main()
