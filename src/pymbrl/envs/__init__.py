"""Small environments and perfect models used by the examples and tests.

tictactoe
    Batched TicTacToe as a two-player recurrent function for :mod:`pymbrl.mcts`, and a perfect
    player (:func:`~pymbrl.envs.tictactoe.solve`, :func:`~pymbrl.envs.tictactoe.perfect_actions`).
tictactoe_env
    TicTacToe as a gymnasium env for self-play, registered as ``"pymbrl/TicTacToe-v0"``; random and
    perfect opponents and :func:`~pymbrl.envs.tictactoe_env.play_match` to evaluate an agent.
minipacman
    MiniPacman, the I2A paper's 15x19 maze game (five reward modes), batched in C++:
    :class:`~pymbrl.envs.minipacman.MiniPacmanVectorEnv` (N games per call, same-step autoreset) and
    one game, :class:`~pymbrl.envs.minipacman.MiniPacmanEnv`, registered as ``"pymbrl/MiniPacman-v0"``.
termination
    When gymnasium's MuJoCo and classic-control tasks end, as functions of a (predicted) next state.
rewards
    The true rewards of the tasks whose reward is a function of observation and action.
dream
    A World Models dream (M and V's decoder) as a gymnasium env and a batched vector env.
spaces, frames
    Action vectors <-> env actions (:class:`~pymbrl.envs.spaces.ActionCodec`); 64x64 frames.

Importing this package registers the env ids below with gymnasium; ``gym.make("pymbrl.envs:pymbrl/TicTacToe-v0")``
imports it on the way (``mode`` and ``frame_cap`` are MiniPacman's keyword arguments).
"""

from __future__ import annotations

import gymnasium

TICTACTOE_ID = "pymbrl/TicTacToe-v0"
MINIPACMAN_ID = "pymbrl/MiniPacman-v0"

# A second import of this module (importlib reloads, pytest's importlib mode) would otherwise make
# gymnasium warn about overriding the id.
if TICTACTOE_ID not in gymnasium.registry:
    # A string entry point keeps torch and the env module unimported until the env is made.
    gymnasium.register(id=TICTACTOE_ID, entry_point="pymbrl.envs.tictactoe_env:TicTacToeEnv")
if MINIPACMAN_ID not in gymnasium.registry:
    # No max_episode_steps: the env truncates at its own frame_cap.
    gymnasium.register(id=MINIPACMAN_ID, entry_point="pymbrl.envs.minipacman:MiniPacmanEnv")
