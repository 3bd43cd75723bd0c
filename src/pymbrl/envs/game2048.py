"""2048 (Gabriele Cirulli, 2014) as a gymnasium env, on a square board of any size: the chance game
of Stochastic MuZero (Antonoglou et al., "Planning in Stochastic Environments with a Learned
Model", ICLR 2022).

Example::

    import gymnasium as gym
    import pymbrl.envs  # registers "pymbrl/2048-v0" (4x4) and "pymbrl/2048-3x3-v0"

    env = gym.make("pymbrl/2048-v0")
    observation, info = env.reset(seed=0)
    observation, reward, terminated, truncated, info = env.step(int(info["legal_actions"].argmax()))
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as np

from pymbrl._checks import integer
from pymbrl._extras import optional_imports

with optional_imports():
    import gymnasium as gym

ACTIONS = ("up", "right", "down", "left")
"""The moves, by action index: the direction the tiles slide."""

SPAWN_FOUR = 0.1
"""The chance that a new tile is a 4 rather than a 2 (the original game's)."""


def num_levels(size: int) -> int:
    """Tile exponents on a ``size`` x ``size`` board: 0 (empty) to ``size**2 + 1``, the largest tile
    the board can ever hold (every cell a distinct power, from a spawned 4 up)."""
    return size * size + 2


@functools.cache
def line_table(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every line of ``size`` exponents slid toward its index 0: ``(slid, reward)``, indexed by the
    line's key ``sum(e[i] * levels**i)``; ``slid`` int8 [levels**size, size], ``reward`` int64
    [levels**size] (the values of the tiles the move creates by merging)."""
    levels = num_levels(size)
    keys = np.arange(levels**size)
    lines = (keys[:, None] // levels ** np.arange(size)) % levels
    slid = np.zeros_like(lines)
    reward = np.zeros(len(keys), dtype=np.int64)
    for key, line in enumerate(lines.tolist()):
        tiles = [e for e in line if e]
        out, i = [], 0
        while i < len(tiles):
            if i + 1 < len(tiles) and tiles[i] == tiles[i + 1]:
                # Lines that would pass the top level cannot arise in a game; capped to keep the table in range.
                merged = min(tiles[i] + 1, levels - 1)
                out.append(merged)
                reward[key] += 2**merged
                i += 2  # a merged tile does not merge again in the same move
            else:
                out.append(tiles[i])
                i += 1
        slid[key, :len(out)] = out
    return slid.astype(np.int8), reward


def moves(board: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All four moves of ``board`` (int8 [n, n] of exponents) at once: ``(boards, rewards, changed)``
    with ``boards`` int8 [4, n, n] after each move of :data:`ACTIONS` (before a new tile),
    ``rewards`` int64 [4] and ``changed`` bool [4] (a move that changes nothing is illegal)."""
    size = board.shape[0]
    slid, reward = line_table(size)
    # Each direction as a view whose lines slide toward index 0: up, right, down, left.
    views = np.stack([board.T, board[:, ::-1], board[::-1].T, board])
    keys = views.astype(np.int64) @ (num_levels(size) ** np.arange(size))
    new = slid[keys]
    after = np.stack([new[0].T, new[1][:, ::-1], new[2].T[::-1], new[3]])
    return after, reward[keys].sum(axis=1), (new != views).any(axis=(1, 2))


class Game2048Env(gym.Env[np.ndarray, int]):
    """2048 on a ``size`` x ``size`` board.

    Parameters
    ----------
    size : int
        Side of the board, >= 2 (4 in the original game).
    render_mode : {None, "ansi"}
        ``"ansi"``: :meth:`render` returns the board as lines of tile values (``.`` for empty).

    Notes
    -----
    Rules: a move slides every tile as far as it goes in its direction; two equal tiles that meet
    merge into one of twice the value, each tile merging at most once per move, the pair nearest
    the wall first (``2 2 2 2`` moved left gives ``4 4 . .``). After each move that changes the
    board, a 2 (probability 0.9) or a 4 (0.1) appears in an empty cell drawn uniformly. The game
    starts with two such tiles and ends when no move changes the board.

    Observation: float32 [C * size * size] with ``C = size**2 + 2``: the one-hot planes [C, size,
    size] of the tile exponents (plane 0: empty cells, plane k: tiles 2**k), flattened in C order as
    :class:`~pymbrl.envs.tictactoe_env.TicTacToeEnv`'s (``reshape(C, size, size)`` gives them back
    for a convolutional net; MuZero's MLP reads the vector).

    Action: Discrete(4), :data:`ACTIONS` (up, right, down, left).

    Reward: the sum of the values of the tiles created by merging (the game's score, as in the
    paper). A move that changes nothing is a no-op: reward 0, no new tile, the game goes on; agents
    mask such moves with ``info["legal_actions"]``.

    Info, after :meth:`reset` and every :meth:`step`: ``"legal_actions"``, bool [4], the moves that
    change the board (all False once the game is over), and ``"max_tile"``, int, the largest tile.

    Chance: the env's ``np_random`` (seeded by ``reset(seed=...)``) draws, per new tile, the cell
    (``integers(number of empty cells)``, row-major) and then its value (``random() < 0.1``: a 4).

    The game's whole state is ``board`` (int8 [size, size] of exponents, 0 for empty) and ``over``
    (bool), public so that a game in progress can be saved and restored.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, size: int = 4, render_mode: str | None = None) -> None:
        self.size = integer(size, "size", minimum=2)
        if self.size > 5:  # the line table has (size**2 + 2)**size rows
            raise ValueError(f"size: expected an integer in [2, 5], got {size}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: expected None or 'ansi', got {render_mode!r}")
        self.render_mode = render_mode
        self.channels = num_levels(self.size)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.channels * self.size**2,), np.float32)
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        self.board = np.zeros((self.size, self.size), dtype=np.int8)
        self.over = True  # until the first reset
        line_table(self.size)  # built once per size, here rather than in the first step

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.board[:] = 0
        self.spawn()
        self.spawn()
        self.over = False
        return self.observation(), self.info(moves(self.board)[2])

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.over:
            raise gym.error.ResetNeeded("step: the game is over or was never started; call reset() first")
        move = integer(action, "action", minimum=0)
        if move >= len(ACTIONS):
            raise ValueError(f"action: expected a move in [0, {len(ACTIONS)}), got {move}")
        boards, rewards, changed = moves(self.board)
        reward = 0.0
        if changed[move]:
            self.board[:] = boards[move]
            reward = float(rewards[move])
            self.spawn()
            changed = moves(self.board)[2]
            self.over = not changed.any()
        return self.observation(), reward, self.over, False, self.info(changed)

    def spawn(self) -> None:
        """A 2 (or, with probability 0.1, a 4) in an empty cell drawn uniformly."""
        empty = np.flatnonzero(self.board == 0)
        cell = empty[self.np_random.integers(len(empty))]
        self.board.flat[cell] = 2 if self.np_random.random() < SPAWN_FOUR else 1

    def render(self) -> str | None:
        if self.render_mode is None:
            return None
        values = [["." if e == 0 else str(2**int(e)) for e in row] for row in self.board]
        width = max(len(v) for row in values for v in row)
        return "".join(" ".join(v.rjust(width) for v in row) + "\n" for row in values)

    def observation(self) -> np.ndarray:
        planes = np.zeros((self.channels, self.size, self.size), dtype=np.float32)
        rows, cols = np.indices(self.board.shape)
        planes[self.board, rows, cols] = 1.0
        return planes.reshape(-1)

    def info(self, changed: np.ndarray) -> dict[str, Any]:
        return {"legal_actions": changed, "max_tile": 2 ** int(self.board.max())}


def legal_actions(observations: np.ndarray) -> np.ndarray:
    """The legal moves, bool [N, 4], of observations [N, C * size * size] of :class:`Game2048Env`
    (for an agent given observations alone; the size is read from their length)."""
    observations = np.asarray(observations)
    sizes = [n for n in range(2, 6) if num_levels(n) * n * n == observations.shape[-1]]
    if observations.ndim != 2 or not sizes:
        raise ValueError(f"observations: expected shape [N, C * size * size] of a 2048 board of size 2 to 5, "
                         f"got {observations.shape}")
    size = sizes[0]
    boards = observations.reshape(len(observations), num_levels(size), size, size).argmax(axis=1).astype(np.int8)
    return np.stack([moves(board)[2] for board in boards]).reshape(len(observations), len(ACTIONS))
