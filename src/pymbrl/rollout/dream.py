"""Rollouts inside a World Models dream (Ha & Schmidhuber 2018): M (an :class:`~pymbrl.models.world_models.MDNRNN`)
stands in for the environment and a controller acts on [z, h]. A whole CMA-ES generation -- every
candidate times every trial -- runs as one batch of tensor operations; the Python loop runs over
time steps only, never over candidates or trials.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from pymbrl._checks import integer
from pymbrl.models.world_models import MDNRNN, Controller, MDNState, sample_mixture, temperature


class DreamStep(NamedTuple):
    """One step of N dreams: the next latent z [N, z_dim], M's state, reward [N] and done [N] (bool)."""

    z: torch.Tensor
    state: MDNState
    reward: torch.Tensor
    done: torch.Tensor


def dream_step(mdnrnn: MDNRNN, z: torch.Tensor, actions: torch.Tensor, state: MDNState, tau: float,
               generator: torch.Generator | None = None) -> DreamStep:
    """Advances N dreams by one step: M reads [z, action], samples the next z at temperature ``tau``
    and says whether the episode ends (done logit > 0, as in the paper's dream). The reward is M's
    reward head when it has one, else 1 per step survived (the score of Doom TakeCover)."""
    mixture, state = mdnrnn.step(z, actions, state)
    next_z = sample_mixture(mixture, tau, generator)
    reward = mixture.rewards if mixture.rewards is not None else torch.ones_like(mixture.done_logits)
    return DreamStep(next_z, state, reward, mixture.done_logits > 0)


class DreamReturns(NamedTuple):
    """Outcome of P candidates x ``trials`` dreams: ``returns`` float [P, trials] and ``steps``
    int64 [P, trials] (how long each dream lasted); ``mean`` is returns.mean(1), [P]."""

    returns: torch.Tensor
    steps: torch.Tensor

    @property
    def mean(self) -> torch.Tensor:
        return self.returns.mean(1)


def check_start_z(start_z: torch.Tensor, mdnrnn: MDNRNN) -> None:
    """ValueError naming ``start_z`` unless it is float [S >= 1, z_dim] of ``mdnrnn``."""
    if start_z.dim() != 2 or start_z.shape[1] != mdnrnn.z_dim or start_z.shape[0] == 0:
        raise ValueError(f"start_z: expected [S >= 1, {mdnrnn.z_dim}], got {tuple(start_z.shape)}")


@torch.no_grad()
def dream_rollouts(mdnrnn: MDNRNN, controller: Controller, params: torch.Tensor, start_z: torch.Tensor,
                   model_input: Callable[[torch.Tensor], torch.Tensor], *, trials: int = 16, tau: float = 1.15,
                   max_steps: int = 2100, uses_hidden: bool = True,
                   generator: torch.Generator | None = None) -> DreamReturns:
    """Plays every candidate's controller ``trials`` times in the dream, all at once.

    Parameters
    ----------
    mdnrnn : MDNRNN -- the dream's dynamics (eval mode is the caller's business).
    controller : Controller -- maps [z, h] (or z alone, when not ``uses_hidden``) to action scores.
    params : float Tensor [P, controller.num_params] -- one row per candidate.
    start_z : float Tensor [S, z_dim] -- first latents of real episodes; each dream starts from one
        drawn uniformly (with ``generator``).
    model_input : callable -- action scores [N, output_dim] -> M's action inputs [N, action_dim]
        (e.g. :meth:`pymbrl.envs.spaces.ActionCodec.model_input`).
    trials : int -- dreams per candidate; 16 in the paper's Doom experiment.
    tau : float -- temperature of M's sampling, > 0; 1.15 transferred best in the paper.
    max_steps : int -- a dream's length cap; 2100 is TakeCover's.
    uses_hidden : bool -- False for the paper's V-only controller (input z).
    generator : torch.Generator, optional

    Returns
    -------
    DreamReturns with returns and lengths [P, trials]. A dream that has ended earns nothing more;
    every 16 steps, once a quarter of the batch has ended, the ended dreams leave it, so the cost
    follows the steps actually dreamt. The loop stops when all have ended.
    """
    trials, max_steps = integer(trials, "trials"), integer(max_steps, "max_steps")
    temperature(tau)
    if params.dim() != 2 or params.shape[1] != controller.num_params:
        raise ValueError(f"params: expected [P, {controller.num_params}], got {tuple(params.shape)}")
    check_start_z(start_z, mdnrnn)
    device = mdnrnn.head.weight.device
    candidates = params.shape[0]
    n = candidates * trials
    pick = torch.randint(start_z.shape[0], (n,), device=start_z.device, generator=generator)
    z = start_z[pick].to(device)
    # Row r of the batch is trial r % trials of candidate r // trials; `rows` maps the live batch
    # back to those, since finished dreams are dropped from it as the batch thins out.
    row_params = params.to(device, torch.float32).repeat_interleave(trials, 0)
    rows = torch.arange(n, device=device)
    state = mdnrnn.initial_state(n, device)
    alive = torch.ones(n, dtype=torch.bool, device=device)
    returns = torch.zeros(n, device=device)
    steps = torch.zeros(n, dtype=torch.int64, device=device)
    for t in range(max_steps):
        inputs = torch.cat([z, state.h], -1) if uses_hidden else z
        scores = controller(row_params, inputs[:, None, :])[:, 0]
        step = dream_step(mdnrnn, z, model_input(scores), state, tau, generator)
        returns.index_add_(0, rows, step.reward * alive)
        steps.index_add_(0, rows, alive.long())
        alive = alive & ~step.done
        z, state = step.z, step.state
        # Checking costs a device sync, so only every 16 steps; then finished dreams leave the batch.
        if t % 16 == 15:
            live = alive.nonzero().squeeze(1)
            if live.numel() == 0:
                break
            if live.numel() < 0.75 * alive.numel():
                z, alive, rows, row_params = z[live], alive[live], rows[live], row_params[live]
                state = MDNState(state.h[live], state.c[live])
    return DreamReturns(returns.reshape(candidates, trials), steps.reshape(candidates, trials))
