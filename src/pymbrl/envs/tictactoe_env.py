"""TicTacToe as a gymnasium env for self-play, with the opponents and the match loop that evaluate
an agent on it.

Both players act in the same env, one step each in turn (X first), and every step is seen from the
player to move: the observation shows that player's pieces as "own", and the reward goes to the
player who just moved. This is the two-player convention of :func:`pymbrl.mcts.muzero_policy` and
of the perfect model :mod:`pymbrl.envs.tictactoe`, so a MuZero agent can train on its own games.

Example::

    import gymnasium as gym
    import pymbrl.envs  # registers "pymbrl/TicTacToe-v0"
    from pymbrl.envs.tictactoe_env import minimax_player, play_match, random_player

    env = gym.make("pymbrl/TicTacToe-v0")
    observation, info = env.reset()
    observation, reward, terminated, truncated, info = env.step(4)

    play_match(minimax_player(seed=0), random_player(seed=1), games=100)  # MatchResult(wins=.., draws=.., losses=0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np

from pymbrl._checks import integer, real, resolve_seed
from pymbrl._extras import optional_imports
from pymbrl.envs.tictactoe import NUM_ACTIONS, has_line, solve

with optional_imports():
    import gymnasium as gym

Player = Callable[[np.ndarray, dict[str, Any]], int]
"""A player: ``(observation, info) -> action``, called with the env's latest observation and info
when it is to move; it must return an empty cell (``info["legal_actions"]`` is True there)."""

OBSERVATION_SIZE = 27
"""Length of the observation vector: three 3x3 planes (own pieces, opponent's pieces, X to move)."""


class TicTacToeEnv(gym.Env[np.ndarray, int]):
    """TicTacToe for two players taking turns in one env (self-play), seen by the player to move.

    Parameters
    ----------
    illegal_move : {"raise", "lose"}
        What a move onto an occupied cell does. ``"raise"`` (default): ValueError naming
        ``action`` and the env is unchanged; an agent is expected to mask its moves with
        ``info["legal_actions"]``. ``"lose"``: the game ends at once with reward -1 to the mover
        and the board unchanged, as in :func:`pymbrl.models.tictactoe.recurrent_fn` (for agents that
        learn legality instead of masking).
    render_mode : {None, "ansi"}
        ``"ansi"``: :meth:`render` returns the board as three lines of ``X``, ``O`` and ``.``.

    Notes
    -----
    Observation: float32 [27], the planes [3, 3, 3] of the board from the point of view of the
    player to move, flattened in C order (``observation.reshape(3, 3, 3)`` gives them back for a
    convolutional net): ``[0:9]`` 1.0 on the mover's pieces, ``[9:18]`` 1.0 on the opponent's
    pieces, ``[18:27]`` all 1.0 when X is to move and all 0.0 when O is. Cells are row-major.
    After the last move, the observation is that of the player who would move next.

    Action: Discrete(9), the cell to mark, row-major.

    Reward: +1 to the player who just moved if that move completed a line, else 0 (a draw is 0);
    -1 for an illegal move under ``illegal_move="lose"``. ``terminated`` is True on a win, a full
    board or a lost illegal move; ``truncated`` is always False.

    Info, after :meth:`reset` and every :meth:`step` (fresh arrays each time):

    * ``"board"``: int8 [9], the absolute board: +1 X, -1 O, 0 empty (as in
      :mod:`pymbrl.envs.tictactoe`);
    * ``"legal_actions"``: bool [9], True on empty cells; all False once the game is over;
    * ``"to_play"``: int, +1 if X is to move, -1 if O is (after the end: who would move next).

    :meth:`step` raises :class:`gymnasium.error.ResetNeeded` before the first :meth:`reset` and
    after the game has ended. :meth:`reset` always returns the empty board with X to move; the game
    has no chance, so ``seed`` only seeds ``np_random`` (which the env does not use).

    The game's whole state is ``board`` (int8 [9]), ``to_play`` (+1 or -1) and ``over`` (bool),
    public like CartPole's ``state`` so that a game in progress can be saved and restored.
    """

    # render_fps: gymnasium's checker and video recorders expect one, though ansi frames have no clock.
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, illegal_move: Literal["raise", "lose"] = "raise", render_mode: str | None = None) -> None:
        if illegal_move not in ("raise", "lose"):
            raise ValueError(f"illegal_move: expected 'raise' or 'lose', got {illegal_move!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: expected None or 'ansi', got {render_mode!r}")
        self.illegal_move = illegal_move
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, (OBSERVATION_SIZE,), np.float32)
        self.action_space = gym.spaces.Discrete(NUM_ACTIONS)
        self.board = np.zeros(NUM_ACTIONS, dtype=np.int8)
        self.to_play = 1
        self.over = True  # until the first reset

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.board[:] = 0
        self.to_play = 1
        self.over = False
        return self._observation(), self._info()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.over:
            raise gym.error.ResetNeeded("step: the game is over or was never started; call reset() first")
        cell = integer(action, "action", minimum=0)
        if cell >= NUM_ACTIONS:
            raise ValueError(f"action: expected a cell in [0, {NUM_ACTIONS}), got {cell}")
        if self.board[cell] != 0:
            if self.illegal_move == "raise":
                empty = np.flatnonzero(self.board == 0).tolist()
                raise ValueError(f"action: expected an empty cell {empty}, got occupied cell {cell}")
            reward = -1.0
            self.over = True
        else:
            self.board[cell] = self.to_play
            won = has_line(self.board, self.to_play)
            reward = 1.0 if won else 0.0
            self.over = won or bool((self.board != 0).all())
        self.to_play = -self.to_play
        return self._observation(), reward, self.over, False, self._info()

    def render(self) -> str | None:
        if self.render_mode is None:
            return None
        marks = np.array([".", "X", "O"])[self.board]  # index -1 is "O"
        return "\n".join("".join(marks[row * 3:row * 3 + 3]) for row in range(3)) + "\n"

    def _observation(self) -> np.ndarray:
        planes = np.empty((3, NUM_ACTIONS), dtype=np.float32)
        planes[0] = self.board == self.to_play
        planes[1] = self.board == -self.to_play
        planes[2] = float(self.to_play == 1)
        return planes.reshape(-1)

    def _info(self) -> dict[str, Any]:
        legal = (self.board == 0) & (not self.over)
        return {"board": self.board.copy(), "legal_actions": legal, "to_play": self.to_play}


def random_player(seed: int | None = None) -> Player:
    """A player that picks uniformly among the empty cells.

    Parameters
    ----------
    seed : int or None
        Seeds the player's own ``numpy.random.Generator``; None draws it from OS entropy.
    """
    rng = np.random.default_rng(resolve_seed(seed))

    def play(observation: np.ndarray, info: dict[str, Any]) -> int:
        return int(rng.choice(np.flatnonzero(info["legal_actions"])))

    return play


def minimax_player(seed: int | None = None, *, tie_break: Literal["random", "first"] = "random") -> Player:
    """A perfect player: always a move of the best exact game value, by
    :func:`pymbrl.envs.tictactoe.solve` (memoised over all reachable positions). It never loses;
    against it, a draw is the best result. Of the winning moves it takes the quickest (a one-move
    win at once), and in a lost position the slowest loss (it still blocks a one-move threat).

    Parameters
    ----------
    seed : int or None
        Seeds the player's own ``numpy.random.Generator`` for ``tie_break="random"``; None draws it
        from OS entropy.
    tie_break : {"random", "first"}
        How to choose among equally good moves: ``"random"`` (default) uniformly, so that a
        deterministic agent meets more than one line of play; ``"first"`` the lowest cell, for a
        fully deterministic opponent.
    """
    if tie_break not in ("random", "first"):
        raise ValueError(f"tie_break: expected 'random' or 'first', got {tie_break!r}")
    rng = np.random.default_rng(resolve_seed(seed))

    def play(observation: np.ndarray, info: dict[str, Any]) -> int:
        moves = solve(info["board"], quickest=True)[1]
        if not moves:
            raise ValueError("info: expected the board of an unfinished game, got a finished one")
        return moves[0] if tie_break == "first" else int(rng.choice(moves))

    return play


class MatchResult(NamedTuple):
    """The agent's results in :func:`play_match`; they add up to the number of games."""

    wins: int
    draws: int
    losses: int


def play_match(agent: Player, opponent: Player, games: int, *, agent_first_fraction: float = 0.5) -> MatchResult:
    """Plays ``games`` full games of ``agent`` against ``opponent`` on :class:`TicTacToeEnv`.

    Parameters
    ----------
    agent, opponent : Player
        ``(observation, info) -> action`` callables (see :class:`TicTacToeEnv` for what they get).
        An illegal move raises ValueError from the env. The same callable may play both sides.
    games : int
        Number of games, >= 1.
    agent_first_fraction : float
        Fraction of the games in which the agent plays X (moves first), in [0, 1]: the agent is X
        in ``round(games * agent_first_fraction)`` games, spread evenly over the match (with 0.5:
        X, O, X, O, ...), so a match cut short is still balanced.

    Returns
    -------
    MatchResult
        The agent's wins, draws and losses.

    The env is deterministic; randomness lives in the players, which own their generators
    (:func:`random_player` and :func:`minimax_player` take a ``seed``).
    """
    games = integer(games, "games")
    fraction = real(agent_first_fraction, "agent_first_fraction", low=0.0, high=1.0)
    agent_first_games = round(games * fraction)
    env = TicTacToeEnv()
    outcomes = [0, 0, 0]  # indexed by the agent's result + 1: losses, draws, wins
    for game in range(games):
        # Agent-first where ceil(k * game / games) steps up: exactly k such games, evenly spaced,
        # the first one included (integer ceilings: no rounding error for any games).
        agent_first = -(-agent_first_games * (game + 1) // games) > -(-agent_first_games * game // games)
        players = (agent, opponent) if agent_first else (opponent, agent)
        agent_seat = 0 if agent_first else 1
        observation, info = env.reset()
        seat, terminated = 0, False
        while not terminated:
            observation, reward, terminated, _, info = env.step(players[seat](observation, info))
            seat ^= 1
        # The reward is the last mover's (seat ^ 1 after the flip).
        result = reward if seat ^ 1 == agent_seat else -reward
        outcomes[int(result) + 1] += 1
    env.close()
    return MatchResult(wins=outcomes[2], draws=outcomes[1], losses=outcomes[0])
