"""Atari 2600 games (ale-py's Arcade Learning Environment) as a vector env with the DQN preprocessing.

:class:`AtariVectorEnv` steps N games, one ``ale_py.ALEInterface`` each, with the preprocessing of
Mnih et al. (2015), "Human-level control through deep reinforcement learning" (Nature 518), as
OpenAI baselines' DQN and A2C use it: random no-op starts, FIRE to start play, frame skipping with
the max of the last two frames, grayscale, 84x84, a stack of the last 4 frames, clipped rewards.
It has the contract of :class:`pymbrl.envs.minipacman.MiniPacmanVectorEnv`: same-step autoreset,
the same ``info`` keys, seeds that reproduce bit for bit, and per-game states
(:meth:`~AtariVectorEnv.get_state` / :meth:`~AtariVectorEnv.set_state`) that replay the game.
``backend="ale-py"`` hands the stepping to ale-py's threaded C++ vector env
(``ale_py.vector_env.AtariVectorEnv``) inside the same contract, without per-game states.

Needs the ``ale-py`` package (``pip install ale-py``; its wheels ship the ROMs).

Example::

    import numpy as np
    from pymbrl.envs.atari import AtariVectorEnv
    from pymbrl.models.env_model import to_planes

    env = AtariVectorEnv("ALE/Breakout-v5", num_envs=16, seed=0)
    obs, info = env.reset()                            # uint8 [16, 84, 84, 4], newest frame last
    planes = to_planes(obs)                            # float32 [16, 4, 84, 84] in [0, 1]
    obs, rewards, terminated, truncated, info = env.step(np.random.randint(0, 4, 16))
    returns = info["episode_return"][info["_final_obs"]]   # the ended games' (unclipped) scores
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, ClassVar

import numpy as np
import torch
from torch.nn import functional as F

from pymbrl._checks import ArgumentTypeError, integer, real, resolve_seed
from pymbrl._extras import MissingExtra, optional_imports

with optional_imports():
    import gymnasium as gym

SCREEN_SHAPE = (210, 160)
"""An Atari frame: rows, columns (ALE's screen)."""

_NOOP, _FIRE = 0, 1  # ale_py.Action.NOOP and FIRE
_NUM_ALE_ACTIONS = 18
_ENV_ID = re.compile(r"ALE/\w+-v5")
_STATE_KEYS = ("game", "settings", "emulator", "screen", "frames", "rng", "lives", "episode_return",
               "episode_length", "previous_action", "checksum")
# The fields a state's checksum covers one by one, so that a mismatch names the field.
_CHECKED_KEYS = ("emulator", "screen", "frames", "rng", "lives", "episode_return", "episode_length",
                 "previous_action")
_DIGEST_BYTES = 16

MAX_ENVS = 1024
"""The most games one :class:`AtariVectorEnv` emulates (one ALE instance each)."""
BACKENDS = ("pymbrl", "ale-py")
"""What emulates and preprocesses the games of an :class:`AtariVectorEnv`; see its ``backend``."""
MAX_OBSERVATION_BYTES = 1 << 30
"""The largest observation batch (num_envs x screen_size^2 x frame_stack bytes) an env may hold."""
_MAX_NOOPS = 10_000
_MAX_FRAME_SKIP = 1_000
_MAX_FRAME_STACK = 64
_MAX_SCREEN_SIZE = 1_024
_MAX_EPISODE_STEPS = 2**31 - 1  # episode lengths are handed out as int32
_MAX_ALE_SEED = 2**31 - 1  # ale-py's vector env takes a game's seed as a C int


def _bounded(value: Any, name: str, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``, or ValueError / ArgumentTypeError naming ``name``."""
    value = integer(value, name, minimum=low)
    if value > high:
        raise ValueError(f"{name}: expected an integer in [{low}, {high}], got {value}")
    return value


def _digest(*parts: bytes) -> str:
    """blake2b of ``parts`` (each length-prefixed, so no two splits of the same bytes collide), hex."""
    h = hashlib.blake2b(digest_size=_DIGEST_BYTES)
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def _field_bytes(key: str, value: Any) -> bytes:
    """The bytes of a checked field that its digest covers (tensors: their bytes; the rng: its
    state as sorted JSON; numbers: their exact text)."""
    if isinstance(value, torch.Tensor):
        return value.numpy().tobytes()
    if key == "rng":
        return json.dumps(value, sort_keys=True).encode()
    if isinstance(value, float):
        return value.hex().encode()
    return str(int(value)).encode()


def _load_ale(env_id: Any) -> tuple[Any, str]:
    """(the ale_py module, the ROM name) of an ``ALE/<Game>-v5`` id, or ValueError naming ``env_id``."""
    if not isinstance(env_id, str):
        raise ArgumentTypeError(f"env_id: expected a str, got {type(env_id).__name__}")
    try:
        with optional_imports():
            import ale_py
    except MissingExtra as error:
        raise ValueError(f"env_id: {env_id}: {error}") from None
    # Importing ale_py registers its ids with gymnasium; the registry maps each to its ROM.
    spec = gym.registry.get(env_id) if _ENV_ID.fullmatch(env_id) else None
    if spec is None or spec.entry_point != "ale_py.env:AtariEnv":
        raise ValueError(f"env_id: expected the id of an ale-py game, 'ALE/<Game>-v5' (e.g. 'ALE/Breakout-v5'), "
                         f"got {env_id!r}")
    return ale_py, spec.kwargs["game"]


def _frames_last(frames: np.ndarray) -> np.ndarray:
    """ale-py's observations uint8 [N, stack, S, S] as a new array [N, S, S, stack] (torch's
    permuting copy is faster than numpy's here)."""
    return torch.from_numpy(frames).permute(0, 2, 3, 1).contiguous().numpy()


def _generator(seed: int, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(index,))))


class AtariVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` Atari games with the DQN preprocessing, with same-step autoreset.

    Parameters
    ----------
    env_id : str
        ``"ALE/<Game>-v5"``, an id ale-py registers (e.g. ``"ALE/Breakout-v5"``, ``"ALE/Pong-v5"``);
        only the game is taken from it: the settings are this class's own.
    num_envs : int
        Games in the batch, in [1, :data:`MAX_ENVS`]; ``num_envs * screen_size**2 * frame_stack``
        (the observation bytes) at most :data:`MAX_OBSERVATION_BYTES`.
    seed : int or None
        Game i draws from a stream derived from (seed, i); None takes the seed from OS entropy.
        The same seed and actions give the same frames and rewards bit for bit. It seeds the
        first :meth:`reset` without a seed, so ``AtariVectorEnv(seed=s).reset()`` equals
        ``reset(seed=s)``.
    noop_max : int
        A new episode starts with a random number of NOOP frames, uniform in [0, noop_max] (30 as
        in Mnih et al.), drawn from the game's stream; at most 10,000.
    frame_skip : int
        Frames an action is repeated for; an agent step's reward is their sum (4); at most 1,000.
    frame_stack : int
        Frames in an observation, oldest first (4); at most 64.
    screen_size : int
        Side of the square frames (84); at most 1,024.
    clip_rewards : bool
        Rewards are the sign of the step's score (-1, 0 or 1) when True, the score itself when
        False. ``info["episode_return"]`` is the unclipped score either way.
    repeat_action_probability : float
        Sticky actions (Machado et al. 2018): on every emulated frame (the NOOP and FIRE presses
        included), with this probability, the game repeats the previous frame's action instead of
        the new one. 0.0 (default) is the
        convention of the ``NoFrameskip-v4`` ids that DQN and A2C results use; the ``-v5`` ids
        default to 0.25. Drawn from the game's stream, so it stays reproducible.
    max_episode_steps : int
        Agent steps after which an episode is truncated, at most 2**31 - 1 (episode lengths are
        int32); 0: after 2**31 - 1. 27,000 (108,000 frames, 30 minutes of play) as ale-py's
        ``-v5`` ids.
    backend : str
        ``"pymbrl"`` (default): one ``ale_py.ALEInterface`` per game, stepped from Python on the
        calling thread, with per-game states (:meth:`get_state` / :meth:`set_state`), which the
        agents' exact resume needs. ``"ale-py"``: ale-py's threaded C++ vector env
        (``ale_py.vector_env.AtariVectorEnv``) steps and preprocesses the games, and this class
        keeps its contract around it (frames last, the ``info`` keys, unclipped episode returns,
        seeds from (seed, i), ``max_episode_steps`` in agent steps, checked arguments); it has no
        per-game states, and it plays ale-py's episode starts (FIRE for one frame, then fewer
        NOOPs) and no FIRE after a lost life, so its games are not the ``"pymbrl"`` backend's.
        Faster where the fixed cost of a step matters (few games): ``bench/RESULTS.md``, Atari.
    num_threads : int
        Worker threads of the ``"ale-py"`` backend (0: ale-py's default, min(num_envs, CPU
        cores)). The ``"pymbrl"`` backend steps on the calling thread: 0 or 1.

    Notes
    -----
    Observations: uint8 [N, screen_size, screen_size, frame_stack]: grayscale frames (ALE's
    luminance), rows and columns first and the stacked frames last, the newest in the last channel
    (``pymbrl.models.env_model.to_planes`` makes them [N, frame_stack, H, W]). A frame is the
    pixel-wise max of the step's last two emulated frames (which removes the flicker of objects
    drawn every other frame), resized by area averaging (torch's ``interpolate(mode="area")``);
    with ``frame_skip=1``, the max of this and the previous frame. A new episode's first
    observation repeats its first frame ``frame_stack`` times.

    Actions: int [N] in [0, A), indices into the game's minimal action set
    (:attr:`action_meanings`; Breakout: NOOP, FIRE, RIGHT, LEFT); any integer array-like (numpy,
    a list, a CPU torch tensor).

    Episodes: a new episode is ALE's ``reset_game``, the random NOOPs (again from the start if they
    end the game), then, in games whose minimal action set has FIRE, FIRE for ``frame_skip`` frames
    (in Breakout the ball is only served on FIRE). In those games a step that loses a life (and not
    the game) also presses FIRE for ``frame_skip`` frames after its own, counts their score and
    observes their frames: losing a life does not end the episode (no "episodic life"). ``terminated``: the game is over; ``truncated``:
    ``max_episode_steps`` agent steps (never both). The score of the NOOP and FIRE frames that
    start an episode is no step's reward.

    Same-step autoreset: where a game ended, ``obs`` already holds the first observation of its
    next episode, and ``info`` holds

    * ``"final_obs"``: uint8 [N, H, W, frame_stack], the ended games' last observations (zeros
      elsewhere);
    * ``"_final_obs"``: bool [N], True where a game ended (``terminated | truncated``);
    * ``"episode_return"``: float32 [N], the ended episodes' unclipped scores (0 elsewhere);
    * ``"episode_length"``: int32 [N], their agent steps (0 elsewhere).

    These keys are in every step's info, as in ``MiniPacmanVectorEnv``. Every returned array is
    new (the next step never overwrites it).

    With ``backend="ale-py"``, observations, actions, ``info`` and the seeds' reproducibility are
    as above; the frames are ale-py's (resized by OpenCV's area interpolation; a new episode's
    first observation stacks its first frame with black ones), and :meth:`get_state` /
    :meth:`set_state` raise NotImplementedError.
    """

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def __init__(self, env_id: str = "ALE/Breakout-v5", num_envs: int = 16, seed: int | None = None, *,
                 noop_max: int = 30, frame_skip: int = 4, frame_stack: int = 4, screen_size: int = 84,
                 clip_rewards: bool = True, repeat_action_probability: float = 0.0,
                 max_episode_steps: int = 27_000, backend: str = "pymbrl", num_threads: int = 0) -> None:
        ale_py, self.game = _load_ale(env_id)
        self.env_id = env_id
        # Every size is bounded before anything is allocated or emulated.
        self.num_envs = _bounded(num_envs, "num_envs", 1, MAX_ENVS)
        self.noop_max = _bounded(noop_max, "noop_max", 0, _MAX_NOOPS)
        self.frame_skip = _bounded(frame_skip, "frame_skip", 1, _MAX_FRAME_SKIP)
        self.frame_stack = _bounded(frame_stack, "frame_stack", 1, _MAX_FRAME_STACK)
        self.screen_size = _bounded(screen_size, "screen_size", 1, _MAX_SCREEN_SIZE)
        observation_bytes = self.num_envs * self.screen_size**2 * self.frame_stack
        if observation_bytes > MAX_OBSERVATION_BYTES:
            raise ValueError(f"num_envs: expected num_envs * screen_size**2 * frame_stack <= "
                             f"{MAX_OBSERVATION_BYTES} bytes of observations, got {observation_bytes}")
        if not isinstance(clip_rewards, bool):
            raise ArgumentTypeError(f"clip_rewards: expected a bool, got {type(clip_rewards).__name__}")
        self.clip_rewards = clip_rewards
        self.repeat_action_probability = real(repeat_action_probability, "repeat_action_probability", low=0.0,
                                              high=1.0)
        self.max_episode_steps = _bounded(max_episode_steps, "max_episode_steps", 0, _MAX_EPISODE_STEPS)
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        self.num_threads = _bounded(num_threads, "num_threads", 0, MAX_ENVS)
        if backend == "pymbrl" and self.num_threads > 1:
            raise ValueError(f"num_threads: backend='pymbrl' steps its games on the calling thread, expected 0 or 1, "
                             f"got {self.num_threads} (backend='ale-py' runs worker threads)")
        self._seed = resolve_seed(seed)

        # Logging is global to ale-py; Error mode silences its banner and per-game messages.
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        self._ales = []
        self._vector = None
        if backend == "ale-py":
            self._vector = self._make_vector()
            minimal = self._vector.ale.get_action_set()
        else:
            rom = str(ale_py.roms.get_rom_path(self.game))
            self._ale_state = ale_py.ALEState
            for _ in range(self.num_envs):
                ale = ale_py.ALEInterface()
                # Sticky actions are drawn here from each game's own stream, so ALE's generator (used
                # for nothing else) stays unused; a fixed seed keeps it off the clock.
                ale.setInt("random_seed", 0)
                ale.setFloat("repeat_action_probability", 0.0)
                ale.loadROM(rom)
                self._ales.append(ale)
            # The emulator's own generator (which fills RAM on every reset_game) is in its state: a
            # seeded reset restores this just-loaded state so that its games replay from scratch.
            self._boot = self._ales[0].cloneState()
            minimal = self._ales[0].getMinimalActionSet()
        self._codes = [int(a.value) for a in minimal]
        self.action_meanings = tuple(a.name for a in minimal)
        self._fire = _FIRE in self._codes

        s, k = self.screen_size, self.frame_stack
        self.single_observation_space = gym.spaces.Box(0, 255, (s, s, k), np.uint8)
        self.single_action_space = gym.spaces.Discrete(len(self._codes))
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)

        n = self.num_envs
        self._raw = np.zeros((n, 2, *SCREEN_SHAPE), np.uint8)  # per game: the last two frames, newest last
        self._frames = np.zeros((n, s, s, k), np.uint8)
        self._rngs = [_generator(self._seed, i) for i in range(n)]
        self._lives = np.zeros(n, np.int64)
        self._returns = np.zeros(n, np.float64)
        self._lengths = np.zeros(n, np.int64)
        self._previous = [_NOOP] * n  # the action of each game's last frame, which sticky actions repeat
        self._started = False
        self._closed = False

    def _make_vector(self) -> Any:
        """ale-py's vector env with this env's settings. Its rewards stay unclipped (the episode
        returns need the scores); its own truncation, in emulated frames, is off: this class
        truncates in agent steps."""
        from ale_py.vector_env import AtariVectorEnv as AleVectorEnv

        return AleVectorEnv(self.game, self.num_envs, num_threads=self.num_threads,
                            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP, frameskip=self.frame_skip,
                            maxpool=True, grayscale=True, img_height=self.screen_size, img_width=self.screen_size,
                            stack_num=self.frame_stack, noop_max=self.noop_max, use_fire_reset=True,
                            episodic_life=False, reward_clipping=False,
                            repeat_action_probability=self.repeat_action_probability,
                            max_num_frames_per_episode=_MAX_EPISODE_STEPS, full_action_space=False)

    # ----------------------------------------------------------------------------------------------
    # Emulation

    def _play(self, i: int, code: int, frames: int) -> int:
        """Emulates ``frames`` (>= 1) frames of ALE action ``code`` in game i; returns their score
        and leaves the last two frames in ``_raw[i]``. After a game over ALE emulates nothing, so
        the frames stay the last one."""
        ale = self._ales[i]
        older, newer = self._raw[i]
        if self.repeat_action_probability > 0.0:
            sequence = []
            previous = self._previous[i]
            for keep in self._rngs[i].random(frames) < self.repeat_action_probability:
                previous = previous if keep else code
                sequence.append(previous)
        else:
            sequence = [code] * frames
        self._previous[i] = sequence[-1]
        score = 0
        for c in sequence[:-2]:
            score += ale.act(c)
        if frames > 1:
            score += ale.act(sequence[-2])
            ale.getScreenGrayscale(older)
        else:
            np.copyto(older, newer)
        score += ale.act(sequence[-1])
        ale.getScreenGrayscale(newer)
        return score

    def _start(self, i: int) -> None:
        """A new episode in game i (NOOPs, then FIRE where the game has it); its frames in ``_raw[i]``."""
        ale = self._ales[i]
        while True:
            ale.reset_game()
            self._previous[i] = _NOOP
            ale.getScreenGrayscale(self._raw[i, 1])
            self._raw[i, 0] = self._raw[i, 1]
            noops = int(self._rngs[i].integers(0, self.noop_max + 1))
            if noops:
                self._play(i, _NOOP, noops)
            if self._fire:
                self._play(i, _FIRE, self.frame_skip)
            if not ale.game_over():
                break
        self._lives[i] = ale.lives()
        self._returns[i] = 0.0
        self._lengths[i] = 0

    def _observe(self, games: slice | np.ndarray) -> np.ndarray:
        """The frames of ``games`` (max of their last two, resized): uint8 [n, S, S]."""
        raw = self._raw[games]
        # Games last (channels-last for torch) makes the area pooling 2x faster than one plane per
        # game, more than paying for the transposed write.
        pooled = np.empty((*SCREEN_SHAPE, len(raw)), np.uint8)
        np.maximum(raw[:, 0], raw[:, 1], out=pooled.transpose(2, 0, 1))
        x = torch.from_numpy(pooled).float().unsqueeze(0).permute(0, 3, 1, 2)  # [1, n, 210, 160], channels last
        small = F.interpolate(x, size=(self.screen_size, self.screen_size), mode="area")
        return small[0].round_().to(torch.uint8).numpy()

    # ----------------------------------------------------------------------------------------------
    # Gymnasium API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """New episodes in every game; with ``seed``, every game's stream restarts from it first.

        Returns ``(obs uint8 [N, S, S, frame_stack], {})``. ``options`` is accepted and ignored.
        """
        if self._closed:
            raise gym.error.ClosedEnvironmentError("reset: the env is closed")
        if seed is not None:
            seed = resolve_seed(seed)
            # gymnasium's own generator, unused by the games, follows the seed as every env's does.
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        elif not self._started:
            seed = self._seed
        if seed is not None:
            self._rngs = [_generator(seed, i) for i in range(self.num_envs)]
            for ale in self._ales:
                ale.restoreState(self._boot)
        if self._vector is not None:
            obs, _ = self._vector.reset(seed=self._vector_seeds(range(self.num_envs)))
            self._returns[:] = 0.0
            self._lengths[:] = 0
            self._started = True
            return _frames_last(obs), {}
        for i in range(self.num_envs):
            self._start(i)
        self._frames[:] = self._observe(slice(None))[..., None]
        self._started = True
        return self._frames.copy(), {}

    def _vector_seeds(self, games: Any) -> np.ndarray:
        """A seed for ale-py's reset of each of ``games``, drawn from the game's stream."""
        return np.array([int(self._rngs[i].integers(0, _MAX_ALE_SEED)) for i in games], np.int64)

    def _check_actions(self, actions: Any) -> list[int]:
        if isinstance(actions, torch.Tensor):
            actions = actions.detach().cpu().numpy()
        try:
            a = np.asarray(actions)
        except (TypeError, ValueError) as error:
            raise ArgumentTypeError(f"actions: expected integers, got {type(actions).__name__} ({error})") from None
        if a.dtype.kind not in "iu":
            raise ArgumentTypeError(f"actions: expected integers, got dtype {a.dtype}")
        if a.shape != (self.num_envs,):
            raise ValueError(f"actions: expected shape ({self.num_envs},), got {a.shape}")
        bad = np.flatnonzero((a < 0) | (a >= len(self._codes)))
        if bad.size:
            raise ValueError(f"actions: expected integers in [0, {len(self._codes)}), got {a[bad[0]]} at index "
                             f"{bad[0]}")
        return a.tolist()

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Steps every game. ``actions``: integers [N] in [0, A).

        Returns ``(obs uint8 [N, S, S, frame_stack], rewards float32 [N], terminated bool [N],
        truncated bool [N], info)``; see the class notes for ``info``. A refused ``actions``
        (TypeError / ValueError naming it) changes nothing.
        """
        if self._closed:
            raise gym.error.ClosedEnvironmentError("step: the env is closed")
        if not self._started:
            raise gym.error.ResetNeeded("step: call reset() before the first step")
        actions = self._check_actions(actions)
        if self._vector is not None:
            return self._step_vector(actions)
        n = self.num_envs
        scores = np.empty(n, np.float64)
        terminated = np.empty(n, bool)
        for i, a in enumerate(actions):
            ale = self._ales[i]
            score = self._play(i, self._codes[a], self.frame_skip)
            lives = ale.lives()
            if self._fire and lives < self._lives[i] and not ale.game_over():
                score += self._play(i, _FIRE, self.frame_skip)
                lives = ale.lives()
            self._lives[i] = lives
            scores[i] = score
            terminated[i] = ale.game_over()
        rewards, truncated, episodes = self._tally(scores, terminated)
        ended = episodes["_final_obs"]

        frames = self._frames
        # Shifting the whole buffer down one byte moves every frame one channel older; the byte that
        # crosses into the previous pixel's newest channel is overwritten next. (A strided shift of
        # channels [1:] into [:-1] takes 20x longer.)
        flat = frames.reshape(-1)
        flat[:-1] = flat[1:]
        frames[..., -1] = self._observe(slice(None))
        final_obs = np.zeros_like(frames)
        if ended.any():
            games = np.flatnonzero(ended)
            final_obs[games] = frames[games]
            for i in games:
                self._start(int(i))
            frames[games] = self._observe(games)[..., None]
        return frames.copy(), rewards, terminated, truncated, {"final_obs": final_obs, **episodes}

    def _tally(self, scores: np.ndarray, terminated: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Adds a step's scores float64 [N] to the games' episodes, both backends' bookkeeping.
        Returns (rewards float32 [N], clipped if the env clips; truncated bool [N]; the ``info``
        keys but ``final_obs``: ``_final_obs``, and the ended episodes' ``episode_return`` and
        ``episode_length``, 0 elsewhere); the ended episodes' counts start again from 0."""
        self._returns += scores
        self._lengths += 1
        truncated = ~terminated & (self._lengths >= (self.max_episode_steps or _MAX_EPISODE_STEPS))
        ended = terminated | truncated
        episodes = {"_final_obs": ended, "episode_return": np.where(ended, self._returns, 0.0).astype(np.float32),
                    "episode_length": np.where(ended, self._lengths, 0).astype(np.int32)}
        self._returns[ended] = 0.0
        self._lengths[ended] = 0
        rewards = (np.sign(scores) if self.clip_rewards else scores).astype(np.float32)
        return rewards, truncated, episodes

    def _step_vector(self, actions: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                         dict[str, Any]]:
        """:meth:`step` of the ``"ale-py"`` backend: ale-py steps and autoresets the games that
        ended; this adds the truncation in agent steps (a reset of those games) and the info keys."""
        obs, scores, game_over, _, ale_info = self._vector.step(np.asarray(actions, np.int64))
        terminated = game_over.astype(bool)
        rewards, truncated, episodes = self._tally(scores.astype(np.float64), terminated)
        final_obs = np.zeros((self.num_envs, *self.single_observation_space.shape), np.uint8)
        if terminated.any():
            final_obs[terminated] = ale_info["final_obs"][terminated].transpose(0, 2, 3, 1)
        if truncated.any():
            final_obs[truncated] = obs[truncated].transpose(0, 2, 3, 1)
            games = np.flatnonzero(truncated)
            restarted, _ = self._vector.reset(seed=self._vector_seeds(games), options={"reset_mask": truncated})
            obs[truncated] = restarted[truncated]
        return _frames_last(obs), rewards, terminated, truncated, {"final_obs": final_obs, **episodes}

    def close_extras(self, **kwargs: Any) -> None:
        """Frees the emulators; :meth:`reset` and :meth:`step` refuse to run afterwards."""
        if self._vector is not None:
            self._vector.close()
            self._vector = None
        self._ales = []
        self._started = False
        self._closed = True

    # ----------------------------------------------------------------------------------------------
    # Game states

    def _game_index(self, index: Any) -> int:
        if self._vector is not None:
            raise NotImplementedError("backend='ale-py' has no per-game states: ale-py's vector env does not expose "
                                      "its games' emulators; make the env with backend='pymbrl' to save and restore "
                                      "games")
        index = integer(index, "index", minimum=0)
        if index >= self.num_envs:
            raise IndexError(f"index: expected an integer in [0, {self.num_envs}), got {index}")
        if not self._started:
            raise gym.error.ResetNeeded("index: call reset() before reading or writing a game's state")
        return index

    def get_state(self, index: int) -> dict[str, Any]:
        """Game ``index``'s full state, a dict of new tensors, numbers and strings that
        ``torch.save`` writes and ``torch.load(..., weights_only=True)`` reads back:

        * ``"game"``: str, the ROM (e.g. ``"breakout"``);
        * ``"settings"``: dict, the env's settings (``noop_max``, ``frame_skip``, ``frame_stack``,
          ``screen_size``, ``clip_rewards``, ``repeat_action_probability``,
          ``max_episode_steps``), which the env that restores it must share;
        * ``"emulator"``: uint8 [B], ALE's serialised state (RAM, CPU, cartridge, the emulator's
          generator);
        * ``"screen"``: uint8 [210, 160], the last emulated frame;
        * ``"frames"``: uint8 [S, S, frame_stack], the observation;
        * ``"rng"``: dict, the game's numpy generator (``bit_generator.state``: str and int values);
        * ``"lives"``, ``"episode_length"`` (agent steps), ``"previous_action"`` (ALE's code of the
          last frame's action): int; ``"episode_return"``: float, the unclipped score so far;
        * ``"checksum"``: dict of str, a blake2b digest (128 bits, hex) of each of ``emulator``,
          ``screen``, ``frames``, ``rng``, ``lives``, ``episode_return``, ``episode_length`` and
          ``previous_action``, and under ``"state"`` one of the game, the settings and those
          digests together.

        Restoring it with :meth:`set_state` (in this or another env of the same game and settings)
        replays the game bit for bit. The checksums let :meth:`set_state` refuse a state that was
        corrupted or edited before the emulator sees its bytes (ALE trusts them and can crash on
        bad ones); they detect accidents, they do not authenticate: a state is as trustworthy as
        the file it came from."""
        i = self._game_index(index)
        state = {
            "game": self.game,
            "settings": self._settings(),
            "emulator": torch.frombuffer(bytearray(self._ales[i].cloneState().serialize()), dtype=torch.uint8),
            "screen": torch.from_numpy(self._raw[i, 1].copy()),
            "frames": torch.from_numpy(self._frames[i].copy()),
            "rng": self._rngs[i].bit_generator.state,
            "lives": int(self._lives[i]),
            "episode_return": float(self._returns[i]),
            "episode_length": int(self._lengths[i]),
            "previous_action": self._previous[i],
        }
        state["checksum"] = self._checksums(state)
        return state

    def _settings(self) -> dict[str, Any]:
        return {"noop_max": self.noop_max, "frame_skip": self.frame_skip, "frame_stack": self.frame_stack,
                "screen_size": self.screen_size, "clip_rewards": self.clip_rewards,
                "repeat_action_probability": self.repeat_action_probability,
                "max_episode_steps": self.max_episode_steps}

    def _checksums(self, state: dict[str, Any]) -> dict[str, str]:
        """The digests of a state's fields (keyed by field) and of the whole (key ``"state"``)."""
        sums = {key: _digest(key.encode(), _field_bytes(key, state[key])) for key in _CHECKED_KEYS}
        settings = json.dumps(self._settings(), sort_keys=True).encode()
        sums["state"] = _digest(self.game.encode(), settings, *(sums[key].encode() for key in _CHECKED_KEYS))
        return sums

    def set_state(self, index: int, state: dict[str, Any]) -> np.ndarray:
        """Replaces game ``index``'s state (a dict as :meth:`get_state` returns; every key is
        required, none other allowed) and returns its observation uint8 [S, S, frame_stack].

        Every field is checked before anything changes: types, shapes and ranges, the settings
        (those of this env), then each field's checksum, so a state that was corrupted or edited
        is refused before ALE sees its emulator bytes. A refused state (ValueError naming the game
        index and the key) changes nothing."""
        i = self._game_index(index)
        if not isinstance(state, dict):
            raise ArgumentTypeError(f"state: expected a dict, got {type(state).__name__}")
        missing = [key for key in _STATE_KEYS if key not in state]
        if missing:
            raise ValueError(f"state: missing key {missing[0]!r}")
        extra = [key for key in state if key not in _STATE_KEYS]
        if extra:
            raise ValueError(f"state: unknown key {extra[0]!r}")
        if state["game"] != self.game:
            raise ValueError(f"state['game']: expected {self.game!r}, got {state['game']!r}")
        settings = self._settings()
        if not isinstance(state["settings"], dict) or set(state["settings"]) != set(settings):
            raise ValueError(f"state['settings']: expected a dict with the keys {sorted(settings)}, got "
                             f"{state['settings']!r}")
        for key, value in settings.items():
            if state["settings"][key] != value or type(state["settings"][key]) is not type(value):
                raise ValueError(f"state['settings']['{key}']: expected {value!r} (this env's), got "
                                 f"{state['settings'][key]!r}")
        emulator = self._uint8(state, "emulator", None)
        screen = self._uint8(state, "screen", SCREEN_SHAPE)
        frames = self._uint8(state, "frames", self.single_observation_space.shape)
        bit_generator = np.random.PCG64()
        try:
            bit_generator.state = state["rng"]
        except (TypeError, ValueError, KeyError, OverflowError) as error:
            raise ValueError(f"state['rng']: expected the state of a PCG64 generator, got {state['rng']!r} "
                             f"({error})") from None
        lives = _bounded(state["lives"], "state['lives']", 0, 255)
        episode_return = real(state["episode_return"], "state['episode_return']")
        if not math.isfinite(episode_return):
            raise ValueError(f"state['episode_return']: expected a finite number, got {episode_return!r}")
        # A state is saved between steps, when an episode with a step limit is still short of it.
        length_limit = self.max_episode_steps - 1 if self.max_episode_steps else _MAX_EPISODE_STEPS - 1
        episode_length = _bounded(state["episode_length"], "state['episode_length']", 0, length_limit)
        previous = _bounded(state["previous_action"], "state['previous_action']", 0, _NUM_ALE_ACTIONS - 1)
        checked = {"emulator": emulator, "screen": screen, "frames": frames, "rng": bit_generator.state,
                   "lives": lives, "episode_return": episode_return, "episode_length": episode_length,
                   "previous_action": previous}
        sums = state["checksum"]
        expected = self._checksums({**checked})
        if (not isinstance(sums, dict) or set(sums) != set(expected)
                or not all(isinstance(v, str) and len(v) == 2 * _DIGEST_BYTES for v in sums.values())):
            raise ValueError(f"state['checksum']: expected a dict of {2 * _DIGEST_BYTES}-digit hex digests with "
                             f"the keys {sorted(expected)}, got {sums!r}")
        for key in (*_CHECKED_KEYS, "state"):
            if sums[key] != expected[key]:
                what = (f"state[{key!r}]" if key != "state" else
                        "state: its fields come from different get_state() calls or its game or settings were edited")
                raise ValueError(f"{what}: checksum mismatch for game {i}: the state was corrupted or edited "
                                 f"(expected digest {expected[key]}, got {sums[key]})")

        ale = self._ales[i]
        current = ale.cloneState()
        try:
            ale.restoreState(self._ale_state(bytes(emulator.numpy())))
        except (SystemError, RuntimeError, ValueError) as error:  # ale-py 0.12: SystemError for a bad state
            ale.restoreState(current)
            raise ValueError(f"state['emulator']: not a saved state of {self.game} ({error})") from None
        self._raw[i, 1] = screen.numpy()
        self._frames[i] = frames.numpy()
        self._rngs[i] = np.random.Generator(bit_generator)
        self._lives[i] = lives
        self._returns[i] = episode_return
        self._lengths[i] = episode_length
        self._previous[i] = previous
        return self._frames[i].copy()

    @staticmethod
    def _uint8(state: dict[str, Any], key: str, shape: tuple[int, ...] | None) -> torch.Tensor:
        """``state[key]`` as a CPU uint8 tensor of ``shape`` (None: any 1-D)."""
        value = state[key]
        try:
            t = torch.as_tensor(value).cpu()
        except (TypeError, ValueError, RuntimeError):
            raise ArgumentTypeError(f"state[{key!r}]: expected a uint8 tensor, got {type(value).__name__}") from None
        ok = t.dim() == 1 if shape is None else tuple(t.shape) == tuple(shape)
        if t.dtype != torch.uint8 or not ok:
            want = "[B]" if shape is None else str(list(shape))
            raise ValueError(f"state[{key!r}]: expected a uint8 tensor {want}, got {t.dtype} of shape "
                             f"{tuple(t.shape)}")
        return t.contiguous()
