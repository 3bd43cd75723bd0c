"""A World Models dream as gymnasium environments: M (an MDN-RNN) plays the environment, V's decoder
draws the frames. :class:`DreamEnv` is one dream (``gymnasium.Env``), :class:`DreamVectorEnv` N
dreams stepped as one batch (``gymnasium.vector.VectorEnv``, next-step autoreset).

Observations are [z, h] (float32, z_dim + hidden): what the paper's controller sees. Actions are
those of the real environment the model was trained on. The episode ends where M's done head says
so (logit > 0) and is truncated after ``max_steps``; the reward is M's reward head, or 1 per step
survived when it has none (TakeCover's score).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pymbrl._checks import ArgumentTypeError, integer
from pymbrl._extras import optional_imports
from pymbrl.envs.spaces import ActionCodec
from pymbrl.models.world_models import MDNRNN, ConvVAE, temperature
from pymbrl.rollout.dream import check_start_z, dream_step

with optional_imports():
    import gymnasium as gym


MAX_ENVS = 1 << 16
"""The most dreams one :class:`DreamVectorEnv` steps (its latents and LSTM states are allocated up front)."""


def _actions(actions: Any, space: gym.Space, name: str) -> np.ndarray:
    """``actions`` as an array of ``space``'s dtype if they are elements of it, else ValueError
    (TypeError for non-numbers, or floats for a discrete space, which a cast would truncate)
    naming ``name``."""
    a = np.asarray(actions)
    discrete = np.issubdtype(space.dtype, np.integer)
    if a.dtype.kind not in ("iu" if discrete else "iuf"):
        raise ArgumentTypeError(f"{name}: expected {'integers' if discrete else 'numbers'}, got dtype {a.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        cast = a.astype(space.dtype)
    # A cast that changes an integer (one out of the dtype's range) would act on another value.
    if (discrete and not np.array_equal(cast, a)) or not space.contains(cast):
        raise ValueError(f"{name}: expected an element of {space}, got {a.tolist() if a.size <= 16 else a.shape}")
    return cast


class _Dreams:
    """The state of N dreams and the two things done to it: restart some rows, step all rows."""

    def __init__(self, mdnrnn: MDNRNN, action_space: gym.Space, start_z: torch.Tensor, tau: float, max_steps: int,
                 n: int):
        self.mdnrnn, self.codec = mdnrnn, ActionCodec(action_space)
        if self.codec.dim != mdnrnn.action_dim:
            raise ValueError(f"action_space: its action vectors have {self.codec.dim} numbers, the MDNRNN takes "
                             f"{mdnrnn.action_dim}")
        start_z = torch.as_tensor(start_z, dtype=torch.float32)
        check_start_z(start_z, mdnrnn)
        self.device = mdnrnn.head.weight.device
        self.start_z = start_z.to(self.device)
        self.tau = temperature(tau)
        self.max_steps = integer(max_steps, "max_steps")
        self.z = torch.zeros(n, mdnrnn.z_dim, device=self.device)
        self.state = mdnrnn.initial_state(n, self.device)
        self.t = np.zeros(n, dtype=np.int64)
        self.generator = torch.Generator(self.device)
        self.space = gym.spaces.Box(-np.inf, np.inf, (mdnrnn.z_dim + mdnrnn.hidden,), np.float32)

    def reseed(self, rng: np.random.Generator) -> None:
        self.generator.manual_seed(int(rng.integers(2**63)))

    def restart(self, rows: np.ndarray) -> None:
        """Rows (bool [N]) start a new dream from a start latent drawn with the dream's generator."""
        index = torch.as_tensor(np.flatnonzero(rows), device=self.device)
        pick = torch.randint(self.start_z.shape[0], (len(index),), generator=self.generator, device=self.device)
        self.z[index] = self.start_z[pick]
        self.state.h[index] = 0.0
        self.state.c[index] = 0.0
        self.t[rows] = 0

    @torch.no_grad()
    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        vectors = torch.as_tensor(self.codec.to_vector(actions), device=self.device)
        out = dream_step(self.mdnrnn, self.z, vectors, self.state, self.tau, self.generator)
        self.z, self.state = out.z, out.state
        self.t += 1
        return (out.reward.cpu().numpy().astype(np.float64), out.done.cpu().numpy(), self.t >= self.max_steps)

    def observation(self) -> np.ndarray:
        return torch.cat([self.z, self.state.h], -1).cpu().numpy().astype(np.float32)


class DreamEnv(gym.Env):
    """One dream; see the module docstring.

    Parameters
    ----------
    mdnrnn : MDNRNN
    action_space : gym.Space -- the real env's (Discrete or bounded 1-D Box).
    start_z : float Tensor [S, z_dim] -- latents of real first frames; each episode starts from one.
    vae : ConvVAE, optional -- needed for ``render_mode="rgb_array"`` (decodes z to a 64x64 frame).
    tau : float -- M's sampling temperature (> 0).
    max_steps : int -- truncation, 2100 (TakeCover's limit).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 35}

    def __init__(self, mdnrnn: MDNRNN, action_space: gym.Space, start_z: torch.Tensor, vae: ConvVAE | None = None,
                 tau: float = 1.15, max_steps: int = 2100, render_mode: str | None = None):
        self._dreams = _Dreams(mdnrnn, action_space, start_z, tau, max_steps, 1)
        self.vae = vae
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode: expected None or 'rgb_array', got {render_mode!r}")
        if render_mode == "rgb_array" and vae is None:
            raise ValueError("vae: render_mode 'rgb_array' needs the VAE whose decoder draws the frames")
        self.render_mode = render_mode
        self.observation_space = self._dreams.space
        self.action_space = action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._dreams.reseed(self.np_random)
        self._dreams.restart(np.ones(1, dtype=bool))
        return self._dreams.observation()[0], {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = _actions(action, self.action_space, "action")
        reward, done, truncated = self._dreams.step(action[None])
        return self._dreams.observation()[0], float(reward[0]), bool(done[0]), bool(truncated[0] and not done[0]), {}

    @torch.no_grad()
    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        frame = self.vae.decode(self._dreams.z.to(self.vae.mu.weight.device))[0]
        return (frame.permute(1, 2, 0) * 255.0).round().to(torch.uint8).cpu().numpy()


class DreamVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` dreams stepped as one batch (one M call per step for all of them), with
    gymnasium's next-step autoreset: the step after an episode ends returns the new episode's first
    observation, reward 0, and ignores that env's action. Arguments as :class:`DreamEnv`."""

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, mdnrnn: MDNRNN, action_space: gym.Space, start_z: torch.Tensor, num_envs: int = 16,
                 tau: float = 1.15, max_steps: int = 2100):
        self.num_envs = integer(num_envs, "num_envs")
        if self.num_envs > MAX_ENVS:
            raise ValueError(f"num_envs: expected an integer in [1, {MAX_ENVS}], got {self.num_envs}")
        self._dreams = _Dreams(mdnrnn, action_space, start_z, tau, max_steps, self.num_envs)
        self.single_observation_space = self._dreams.space
        self.single_action_space = action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(action_space, self.num_envs)
        self._ended = np.zeros(self.num_envs, dtype=bool)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        self._dreams.reseed(self.np_random)
        self._dreams.restart(np.ones(self.num_envs, dtype=bool))
        self._ended[:] = False
        return self._dreams.observation(), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = _actions(actions, self.action_space, "actions")
        reward, done, truncated = self._dreams.step(actions)
        truncated &= ~done
        # Envs that ended last step restart now: their step above is discarded.
        restarted = self._ended
        if restarted.any():
            self._dreams.restart(restarted)
            reward[restarted], done[restarted], truncated[restarted] = 0.0, False, False
        self._ended = done | truncated
        return self._dreams.observation(), reward, done, truncated, {}
