"""How World Models' V and M learn (the stages that run them are :mod:`pymbrl.agents.world_models_stages`):
V on shuffled frames, M on windows of encoded rollouts that start from the LSTM state the rollout
has there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pymbrl.models.world_models import MDNRNN, ConvVAE, MDNState
from pymbrl.replay.rollouts import RolloutDataset
from pymbrl.training import Callbacks, seeded

if TYPE_CHECKING:
    from pymbrl.agents.world_models import WorldModelsConfig


def fit(model: torch.nn.Module, opt: torch.optim.Optimizer, epochs: int, batches: int,
         epoch_losses: Callable[[int], Callable[[int], tuple[torch.Tensor, dict]]], parts: Sequence[str],
         clip: float | None, progress: Callable[[int, int], Any]) -> list[dict]:
    """Epochs of ``batches`` Adam steps; ``epoch_losses(epoch)`` prepares an epoch and gives the
    loss of its batch b (with its named parts). Returns one record per epoch: the mean loss and parts."""
    history = []
    for epoch in range(epochs):
        batch_loss = epoch_losses(epoch)
        totals = np.zeros(1 + len(parts))
        for b in range(batches):
            loss, values = batch_loss(b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            totals += [float(loss.detach()), *(values[name] for name in parts)]
            progress(epoch * batches + b + 1, epochs * batches)
        history.append(dict(zip(("loss", *parts), (totals / batches).tolist()), epoch=epoch + 1))
    return history


def train_vae(frames: np.ndarray, config: WorldModelsConfig, *, vae: ConvVAE | None = None, seed: int = 0,
              callbacks: Callbacks | None = None) -> tuple[ConvVAE, list[dict]]:
    """Trains V on uint8 frames [N, 64, 64, 3] for ``config.vae_epochs`` epochs (shuffled batches
    of ``vae_batch``). Returns V and one record per epoch (mean loss, reconstruction, KL); reports
    progress as stage "vae" (batches done, batches in all)."""
    callbacks = callbacks or Callbacks()
    device = torch.device(config.device)
    if vae is None:
        with seeded(seed):
            vae = ConvVAE(config.z_dim, config.kl_tolerance)
    vae.to(device).train()
    opt = torch.optim.Adam(vae.parameters(), config.vae_lr)
    generator = torch.Generator(device).manual_seed(seed)
    order_generator = torch.Generator().manual_seed(seed)
    batches = -(-len(frames) // config.vae_batch)

    def epoch_losses(epoch: int) -> Callable[[int], tuple[torch.Tensor, dict]]:
        order = torch.randperm(len(frames), generator=order_generator).numpy()

        def batch_loss(b: int) -> tuple[torch.Tensor, dict]:
            batch = torch.from_numpy(frames[np.sort(order[b * config.vae_batch:(b + 1) * config.vae_batch])])
            return vae.loss(batch, generator)
        return batch_loss

    history = fit(vae, opt, config.vae_epochs, batches, epoch_losses, ("reconstruction", "kl"), None,
                   functools.partial(callbacks.on_progress, "vae"))
    return vae.eval(), history


@torch.no_grad()
def encode_dataset(dataset: RolloutDataset, vae: ConvVAE, batch: int = 1000,
                   callbacks: Callbacks | None = None) -> list[dict[str, np.ndarray]]:
    """Each rollout with its frames replaced by V's ``mu`` and ``logvar`` (float32 [T + 1, z_dim]);
    reports progress as stage "encode" (rollouts done, rollouts in all)."""
    callbacks = callbacks or Callbacks()
    out = []
    files = dataset.files()
    for i, file in enumerate(files):
        data = dataset.load(file)
        frames = data.pop("frames")
        parts = [vae.encode(torch.from_numpy(frames[i:i + batch])) for i in range(0, len(frames), batch)]
        data["mu"] = torch.cat([p[0] for p in parts]).cpu().numpy()
        data["logvar"] = torch.cat([p[1] for p in parts]).cpu().numpy()
        out.append(data)
        callbacks.on_progress("encode", i + 1, len(files))
    return out


def padded(latents: Sequence[dict[str, np.ndarray]], length: int) -> dict[str, torch.Tensor]:
    """The rollouts side by side, zero-padded to a whole number of windows of ``length`` steps:
    mu/logvar [R, T + 1, z_dim], actions [R, T, A], rewards [R, T], dones and mask (bool) [R, T]."""
    steps = -(-max(len(r["actions"]) for r in latents) // length) * length
    out: dict[str, list] = {k: [] for k in ("mu", "logvar", "actions", "rewards", "dones", "mask")}
    for r in latents:
        pad = steps - len(r["actions"])
        for key in ("mu", "logvar", "actions", "rewards", "dones"):
            out[key].append(np.concatenate([r[key], np.zeros((pad, *r[key].shape[1:]), r[key].dtype)]))
        out["mask"].append(np.arange(steps) < len(r["actions"]))
    return {k: torch.from_numpy(np.stack(v)) for k, v in out.items()}


def train_mdnrnn(latents: Sequence[dict[str, np.ndarray]], action_dim: int, config: WorldModelsConfig, *,
                 mdnrnn: MDNRNN | None = None, seed: int = 0,
                 callbacks: Callbacks | None = None) -> tuple[MDNRNN, list[dict]]:
    """Trains M on encoded rollouts (as :func:`encode_dataset` gives them) for ``rnn_epochs`` epochs
    of shuffled windows of ``rnn_seq_len`` steps; z is sampled from V's Gaussians once per step and
    epoch, as in the paper. Returns M and one record per epoch (mean loss, NLL per dimension, done
    loss); reports progress as stage "mdn".

    Each window starts from the LSTM state its rollout has at that point, computed at the start of
    the epoch by a gradient-free pass over the whole rollouts, not from zeros: a window cut from the
    middle of an episode and started from zeros would teach M that, right after an episode starts,
    its end (a death) can be as near as it is mid-episode, and dreams would end too soon.
    """
    if not latents:
        raise ValueError("latents: expected at least one encoded rollout, got none")
    callbacks = callbacks or Callbacks()
    device = torch.device(config.device)
    if mdnrnn is None:
        with seeded(seed):
            mdnrnn = MDNRNN(config.z_dim, action_dim, config.rnn_hidden, config.mixtures, config.reward_head)
    mdnrnn.to(device).train()
    length = config.rnn_seq_len
    data = {k: v.to(device) for k, v in padded(latents, length).items()}
    rollouts, steps = data["mask"].shape
    chunks = steps // length
    # Every window that holds at least one real step: (rollout, window number).
    windows = data["mask"][:, ::length].nonzero()
    offsets = torch.arange(length, device=device)
    opt = torch.optim.Adam(mdnrnn.parameters(), config.rnn_lr)
    generator = torch.Generator(device).manual_seed(seed)
    batches = -(-len(windows) // config.rnn_batch)

    def epoch_losses(epoch: int) -> Callable[[int], tuple[torch.Tensor, dict]]:
        z_all = ConvVAE.sample(data["mu"], data["logvar"], generator)
        starts_h = torch.zeros(rollouts, chunks, mdnrnn.hidden, device=device)
        starts_c = torch.zeros_like(starts_h)
        with torch.no_grad():
            state = mdnrnn.initial_state(rollouts, device)
            for k in range(chunks):
                starts_h[:, k], starts_c[:, k] = state
                window = slice(k * length, (k + 1) * length)
                _, _, state = mdnrnn(z_all[:, window], data["actions"][:, window], state)
        order = torch.randperm(len(windows), generator=generator, device=device)

        def batch_loss(b: int) -> tuple[torch.Tensor, dict]:
            r, k = windows[order[b * config.rnn_batch:(b + 1) * config.rnn_batch]].unbind(1)
            t = k[:, None] * length + offsets
            rows = r[:, None]
            return mdnrnn.loss(z_all[rows, t], data["actions"][rows, t], z_all[rows, t + 1], data["dones"][rows, t],
                               data["mask"][rows, t], data["rewards"][rows, t] if config.reward_head else None,
                               config.done_weight, state=MDNState(starts_h[r, k], starts_c[r, k]))
        return batch_loss

    history = fit(mdnrnn, opt, config.rnn_epochs, batches, epoch_losses, ("nll", "done"), config.rnn_clip,
                   functools.partial(callbacks.on_progress, "mdn"))
    return mdnrnn.eval(), history
