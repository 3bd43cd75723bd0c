"""MiniPacman, the 15x19 maze game of the I2A paper, batched in C++ behind gymnasium's APIs.

Weber et al. (2017), "Imagination-Augmented Agents for Deep Reinforcement Learning" (DeepMind's
PillEater): Pacman eats food and power pills in a fixed maze while ghosts chase him; a pill makes
the ghosts edible (and slow and fleeing) for 20 steps. Five modes (:data:`MODES`) reward the same
game differently. Levels get harder: level L has ``1 + (L - 1) // 2`` ghosts that move on a step
with probability ``0.5 + 0.1 (L - 1)`` (halved under pill power).

:class:`MiniPacmanVectorEnv` steps N games in one C++ call (``gymnasium.vector.VectorEnv``,
same-step autoreset); :class:`MiniPacmanEnv` is one game (``gymnasium.Env``, registered as
``"pymbrl/MiniPacman-v0"``).

Rules of a step, in order: the step reward; the level timer counts and pill power drains by one;
Pacman moves (not into walls); food under him is eaten (a level that ends on food starts the next
at once when none is left); then the first pill under him is eaten (power = 20). Then each ghost
in turn: if on Pacman, he dies (no power) or it is eaten (power; one ghost per step, which ends the
ghosts' turn); the ghost moves with its speed's probability, following corridors and, at a
junction, never reversing and turning towards Pacman (5% of the time at random) or, under power,
away from him; after moving, it meets Pacman as before. Last, a level with a timer (``avoid``:
128 steps) ends when it runs out. Pacman's death ends the episode (terminated) and pays the death
reward once, however many ghosts meet him; ``frame_cap`` steps truncate it.

Example::

    import numpy as np
    from pymbrl.envs.minipacman import MiniPacmanVectorEnv

    env = MiniPacmanVectorEnv(num_envs=64, mode="regular", seed=0)
    obs, info = env.reset()                        # uint8 [64, 15, 19, 3]
    obs, rewards, terminated, truncated, info = env.step(np.random.randint(0, 5, 64))
    ended = info["_final_obs"]                     # info["final_obs"][ended]: their last frames
    returns = info["episode_return"][ended]
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import numpy as np

from pymbrl import _core
from pymbrl._checks import ArgumentTypeError, integer, resolve_seed
from pymbrl._extras import optional_imports

with optional_imports():
    import gymnasium as gym

ROWS, COLS = 15, 19
FRAME_SHAPE = (ROWS, COLS, 3)
"""One observation: uint8 RGB, one pixel per maze cell."""

MAP: np.ndarray = _core.envs.minipacman_map()
"""The maze, uint8 [15, 19]: 1 = wall, 0 = free (138 free cells)."""
MAP.setflags(write=False)

ACTION_NAMES = ("stay", "right", "up", "left", "down")
"""Action i moves Pacman: right is column + 1, up is row - 1."""

MAX_ENVS = 1 << 16
"""The most games in one :class:`MiniPacmanVectorEnv` (a step hands out two frame arrays of
``num_envs * 855`` bytes)."""

MAX_LEVEL = 1000
"""Levels stop rising here (500 ghosts), so no number of steps can overflow the level counter."""

MAX_FRAMES = 2**31 - 1
"""The longest episode: one is truncated here even with ``frame_cap=0``, so that its length fits
``info["episode_length"]`` (int32)."""

MAX_RENDER_SCALE = 64
"""The largest ``render_scale`` of :class:`MiniPacmanEnv` (a 960x1216 frame)."""

PILL_DURATION = 20
"""Steps of power a pill gives; a ghost's green channel is round(255 * power / 20)."""

PALETTE: dict[str, tuple[int, int, int]] = {
    "pacman": (0, 255, 0),
    "ghost": (255, 0, 0),
    "edible_ghost": (255, 255, 0),
    "pill": (0, 255, 255),
    "food": (0, 0, 255),
    "wall": (255, 255, 255),
    "empty": (0, 0, 0),
}
"""RGB of each object. A cell shows the first of pacman, ghost, pill, food, wall, empty that is on
it. ``ghost`` is a deadly ghost; an edible one is (255, round(255 * power / 20), 0), which is
``edible_ghost`` right after a pill and shades back to red as the power drains."""


class Mode(NamedTuple):
    """The rewards of a mode and what ends its levels (``level_timer``: steps, -1 = no timer)."""

    step_reward: float
    food_reward: float
    pill_reward: float
    ghost_reward: float
    death_reward: float
    ends_level_on: str  # "food", "pills" or "ghosts": a level ends when none is left
    level_timer: int


MODES: dict[str, Mode] = {name: Mode(**m) for name, m in _core.envs.minipacman_modes().items()}
"""The paper's five modes: regular, avoid, hunt, ambush, rush."""


def _check_mode(mode: Any) -> str:
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(map(repr, MODES))}, got {mode!r}")
    return mode


class MiniPacmanVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` MiniPacman games stepped by one C++ call, with same-step autoreset.

    Parameters
    ----------
    num_envs : int
        Games in the batch, in [1, :data:`MAX_ENVS`].
    mode : str
        One of :data:`MODES` ("regular", "avoid", "hunt", "ambush", "rush").
    frame_cap : int
        Steps after which an episode is truncated, in [0, :data:`MAX_FRAMES`]; 0: after
        :data:`MAX_FRAMES`. 1000 as in the I2A code.
    seed : int or None
        Game i draws from a stream derived from (seed, i); None takes the seed from OS entropy.
        The same seed and actions give the same frames and rewards bit for bit. It seeds the
        first :meth:`reset` without a seed, so ``MiniPacmanVectorEnv(seed=s).reset()`` equals
        ``reset(seed=s)``.
    num_threads : int
        Threads a step may use, each taking at least 128 games (so 1 below 256 games). Threads
        change nothing but the speed, and pay only where another core is free: on a 2-core VM
        1.2-1.9x at 256-4096 games with the second core idle, 0.9x with it busy.

    Notes
    -----
    Observations: uint8 [N, 15, 19, 3] RGB frames (:data:`PALETTE`). Actions: int [N] in [0, 5)
    (:data:`ACTION_NAMES`); any integer array-like (numpy, a list, a CPU torch tensor).

    Same-step autoreset: where a game ended (``terminated``: Pacman died; ``truncated``: the frame
    cap), ``obs`` already holds the first frame of its next episode, and ``info`` holds

    * ``"final_obs"``: uint8 [N, 15, 19, 3], the ended games' last frames (zeros elsewhere);
    * ``"_final_obs"``: bool [N], True where a game ended (``terminated | truncated``);
    * ``"episode_return"``: float32 [N], the ended episodes' returns (0 elsewhere);
    * ``"episode_length"``: int32 [N], their steps (0 elsewhere).

    These keys are in every step's info. Unlike gymnasium's ``SyncVectorEnv``, ``final_obs`` is a
    dense array, not an object array of per-env observations, and there is no ``final_info``.
    Every returned array is new (the next step never overwrites it).
    """

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 16, mode: str = "regular", frame_cap: int = 1000, seed: int | None = None,
                 num_threads: int = 1) -> None:
        self.num_envs = integer(num_envs, "num_envs")
        self.mode = _check_mode(mode)
        self.frame_cap = integer(frame_cap, "frame_cap", minimum=0)
        integer(num_threads, "num_threads")
        # The first reset() without a seed uses this one, so that MiniPacmanVectorEnv(seed=s).reset()
        # and reset(seed=s) start the same games.
        self._seed = resolve_seed(seed)
        self._core = _core.envs.MiniPacman(self.num_envs, self.mode, self.frame_cap, self._seed, num_threads)
        self.num_threads = self._core.num_threads
        self.single_observation_space = gym.spaces.Box(0, 255, FRAME_SHAPE, np.uint8)
        self.single_action_space = gym.spaces.Discrete(len(ACTION_NAMES))
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self._started = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """New episodes in every game; with ``seed``, every game's stream restarts from it first.

        Returns ``(obs uint8 [N, 15, 19, 3], {})``. ``options`` is accepted and ignored.
        """
        if seed is not None:
            seed = resolve_seed(seed)
            # gymnasium's own generator, unused by the games, follows the seed as every env's does.
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        elif not self._started:
            seed = self._seed
        obs = self._core.reset(seed)
        self._started = True
        return obs, {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Steps every game. ``actions``: integers [N] in [0, 5).

        Returns ``(obs uint8 [N, 15, 19, 3], rewards float32 [N], terminated bool [N],
        truncated bool [N], info)``; see the class notes for ``info``. A refused ``actions``
        (TypeError / ValueError naming it) changes nothing.
        """
        if not self._started:
            raise gym.error.ResetNeeded("step: call reset() before the first step")
        obs, rewards, terminated, truncated, final_obs, episode_return, episode_length = self._core.step(actions)
        info = {"final_obs": final_obs, "_final_obs": terminated | truncated, "episode_return": episode_return,
                "episode_length": episode_length}
        return obs, rewards, terminated, truncated, info

    def get_state(self, index: int) -> dict[str, Any]:
        """Game ``index``'s full state, a dict of new arrays and numbers: ``pacman`` int64 [2]
        (row, col); ``ghosts`` int64 [G, 3] (row, col, direction 0 right / 1 up / 2 left /
        3 down); ``pills`` int64 [P, 2]; ``food`` bool [15, 19]; ``power``, ``level``, ``timer``
        (steps into the level), ``frame`` (steps into the episode): int; ``episode_return``:
        float; ``rng`` uint64 [4] (the game's generator). Restoring it with :meth:`set_state`
        replays the game bit for bit."""
        return self._core.get_state(integer(index, "index", minimum=0))

    def set_state(self, index: int, state: dict[str, Any]) -> np.ndarray:
        """Replaces game ``index``'s state (a dict as :meth:`get_state` returns; every key is
        required) and returns its frame uint8 [15, 19, 3].

        Every field is checked before any game changes, against the bounds that no sequence of
        steps leaves: Pacman, ghosts and pills on free cells of the maze, ghost directions in
        [0, 4); ``level`` in [1, :data:`MAX_LEVEL`] with at most ``1 + (level - 1) // 2`` ghosts;
        at most 2 pills; ``food`` only on free cells; ``power`` in [0, 20]; ``frame`` in
        [0, frame_cap) (``frame_cap`` 0: :data:`MAX_FRAMES`); ``timer`` below the mode's level
        timer (``avoid``: 128) or at most :data:`MAX_FRAMES`; ``episode_return`` finite and no
        larger in magnitude than ``frame`` steps could earn; ``rng`` uint64 words, not all zero.
        A refused state (ValueError, TypeError or KeyError naming the key) changes nothing."""
        index = integer(index, "index", minimum=0)
        if not isinstance(state, dict):
            raise ArgumentTypeError(f"state: expected a dict, got {type(state).__name__}")
        self._core.set_state(index, state)
        return self._core.render(index)


class MiniPacmanEnv(gym.Env[np.ndarray, int]):
    """One MiniPacman game (the batched core with one game); see the module docstring.

    Parameters
    ----------
    mode, frame_cap, seed
        As :class:`MiniPacmanVectorEnv`. ``reset(seed=...)`` restarts the game's stream.
    render_mode : {None, "rgb_array"}
        ``"rgb_array"``: :meth:`render` returns the frame scaled up ``render_scale`` times
        (nearest neighbour), uint8 [15 s, 19 s, 3].
    render_scale : int
        Pixels per maze cell in :meth:`render` (default 8).

    Notes
    -----
    Observation: uint8 [15, 19, 3]; action: ``Discrete(5)``; reward: float. After the episode ends
    (``terminated`` or ``truncated``) the observation is its last frame and :meth:`step` raises
    :class:`gymnasium.error.ResetNeeded` until :meth:`reset`. ``info`` is empty.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(self, mode: str = "regular", frame_cap: int = 1000, seed: int | None = None,
                 render_mode: str | None = None, render_scale: int = 8) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: expected None or 'rgb_array', got {render_mode!r}")
        self.mode = _check_mode(mode)
        self.frame_cap = integer(frame_cap, "frame_cap", minimum=0)
        self.render_mode = render_mode
        self.render_scale = integer(render_scale, "render_scale")
        if self.render_scale > MAX_RENDER_SCALE:
            raise ValueError(f"render_scale: expected an integer in [1, {MAX_RENDER_SCALE}], got {self.render_scale}")
        self._seed = resolve_seed(seed)  # for the first reset() without a seed, as the vector env
        self._core = _core.envs.MiniPacman(1, self.mode, self.frame_cap, self._seed)
        self.observation_space = gym.spaces.Box(0, 255, FRAME_SHAPE, np.uint8)
        self.action_space = gym.spaces.Discrete(len(ACTION_NAMES))
        self._obs: np.ndarray | None = None
        self._over = True  # until the first reset
        self._started = False
        self._action = np.zeros(1, dtype=np.int64)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        seed = None if seed is None else resolve_seed(seed)
        super().reset(seed=seed)
        self._obs = self._core.reset(self._seed if seed is None and not self._started else seed)[0]
        self._over = False
        self._started = True
        return self._obs, {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._over:
            raise gym.error.ResetNeeded("step: the episode is over or was never started; call reset() first")
        a = integer(action, "action", minimum=0)
        if a >= len(ACTION_NAMES):
            raise ValueError(f"action: expected an integer in [0, {len(ACTION_NAMES)}), got {a}")
        self._action[0] = a
        obs, reward, terminated, truncated, final_obs, _, _ = self._core.step(self._action)
        ended = bool(terminated[0] or truncated[0])
        self._obs = final_obs[0] if ended else obs[0]
        self._over = ended
        return self._obs, float(reward[0]), bool(terminated[0]), bool(truncated[0]), {}

    def render(self) -> np.ndarray | None:
        if self.render_mode is None or self._obs is None:
            return None
        s = self.render_scale
        return np.repeat(np.repeat(self._obs, s, axis=0), s, axis=1)

    def get_state(self) -> dict[str, Any]:
        """The game's state; see :meth:`MiniPacmanVectorEnv.get_state`."""
        return self._core.get_state(0)

    def set_state(self, state: dict[str, Any]) -> np.ndarray:
        """Replaces the game's state (see :meth:`MiniPacmanVectorEnv.set_state`) and returns the
        new observation; the episode goes on from it (also after one had ended)."""
        if not isinstance(state, dict):
            raise ArgumentTypeError(f"state: expected a dict, got {type(state).__name__}")
        self._core.set_state(0, state)
        self._obs = self._core.render(0)
        self._over = False
        return self._obs
