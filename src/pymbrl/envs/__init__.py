"""Environments: small games, their rules and perfect players, Atari and frame handling.

tictactoe
    Batched TicTacToe rules (:func:`~pymbrl.envs.tictactoe.play`, :func:`~pymbrl.envs.tictactoe.winner`, ...)
    and a perfect player (:func:`~pymbrl.envs.tictactoe.solve`, :func:`~pymbrl.envs.tictactoe.perfect_actions`);
    :mod:`pymbrl.models.tictactoe` is the game as a search model for :mod:`pymbrl.mcts`.
tictactoe_env
    TicTacToe as a gymnasium env for self-play, registered as ``"pymbrl/TicTacToe-v0"``; random and
    perfect opponents and :func:`~pymbrl.envs.tictactoe_env.play_match` to evaluate an agent.
game2048
    2048, the chance game of Stochastic MuZero, on a board of any size from 2 to 5, registered as
    ``"pymbrl/2048-v0"`` (4x4, the original) and ``"pymbrl/2048-3x3-v0"``.
minipacman
    MiniPacman, the I2A paper's 15x19 maze game (five reward modes), batched in C++:
    :class:`~pymbrl.envs.minipacman.MiniPacmanVectorEnv` (N games per call, same-step autoreset) and
    one game, :class:`~pymbrl.envs.minipacman.MiniPacmanEnv`, registered as ``"pymbrl/MiniPacman-v0"``.
atari
    Atari 2600 games (ale-py) as a vector env with the DQN preprocessing,
    :class:`~pymbrl.envs.atari.AtariVectorEnv` (needs ``ale-py``).
vector
    MiniPacman and Atari by id (``"MiniPacman-<mode>"``, ``"ALE/<Game>-v5"``), batched
    (:func:`~pymbrl.envs.vector.make_vector_env`) or one game (:func:`~pymbrl.envs.vector.make_env`).
workers
    Envs in worker processes that die with their parent, each in a working folder of its own
    (:func:`~pymbrl.envs.workers.worker_envs`; games such as ViZDoom write beside themselves).
wrappers
    :class:`~pymbrl.envs.wrappers.ActionRepeat`: each action held for several env steps, rewards summed;
    :class:`~pymbrl.envs.wrappers.ResizeFrames`: an env's frames resized to 64x64.
spaces, frames
    Action vectors <-> env actions (:class:`~pymbrl.envs.spaces.ActionCodec`); 64x64 RGB frames
    (:data:`~pymbrl.envs.frames.IMAGE_SHAPE`, the shape every image model reads and draws).

The envs need gymnasium (the ``pymbrl[agents]`` extra; Atari also ``pymbrl[atari]``), and importing
one without it raises an ImportError naming the extra. The rules of TicTacToe (``tictactoe``) and
the frame size and resizing (``frames``) need only torch: the models and searches build on them.

Importing this package registers the env ids below with gymnasium where gymnasium is installed (where
it is not, there is no registry to add them to); ``gym.make("pymbrl.envs:pymbrl/TicTacToe-v0")``
imports it on the way (``mode`` and ``frame_cap`` are MiniPacman's keyword arguments, ``size`` 2048's).
"""

from __future__ import annotations

from pymbrl._extras import installed

TICTACTOE_ID = "pymbrl/TicTacToe-v0"
MINIPACMAN_ID = "pymbrl/MiniPacman-v0"
GAME2048_ID = "pymbrl/2048-v0"
GAME2048_3X3_ID = "pymbrl/2048-3x3-v0"

if installed("gymnasium"):
    import gymnasium

    # A second import of this module (importlib reloads, pytest's importlib mode) would otherwise make
    # gymnasium warn about overriding the id.
    if TICTACTOE_ID not in gymnasium.registry:
        # A string entry point keeps torch and the env module unimported until the env is made.
        gymnasium.register(id=TICTACTOE_ID, entry_point="pymbrl.envs.tictactoe_env:TicTacToeEnv")
    if MINIPACMAN_ID not in gymnasium.registry:
        # No max_episode_steps: the env truncates at its own frame_cap.
        gymnasium.register(id=MINIPACMAN_ID, entry_point="pymbrl.envs.minipacman:MiniPacmanEnv")
    if GAME2048_ID not in gymnasium.registry:
        # No time limit: every move that changes the board adds a tile, so each game ends.
        gymnasium.register(id=GAME2048_ID, entry_point="pymbrl.envs.game2048:Game2048Env")
    if GAME2048_3X3_ID not in gymnasium.registry:
        # A board small enough for a MuZero agent to learn on a CPU in minutes.
        gymnasium.register(id=GAME2048_3X3_ID, entry_point="pymbrl.envs.game2048:Game2048Env", kwargs={"size": 3})
