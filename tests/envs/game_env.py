"""A stand-in for a game env such as ViZDoom's, for tests/envs/test_workers.py (a module of its own:
the parent process of one test imports it by path)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np


class GameEnv(gym.Env):
    """Launches a game process as it is made (as ViZDoom does) and stops it when closed; the game's
    pid goes to ``games/<pid>`` in ``root``, and to ``closed/<pid>`` once the env is closed. In the
    folder named ``signalled`` its worker is sent SIGTERM once the game runs; made ``slow`` seconds
    after the game starts."""

    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, root: str, signalled: str | None = None, slow: float = 0.0):
        self.root = Path(root)
        self.game = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        (self.root / "games" / str(self.game.pid)).touch()
        if Path.cwd().name == signalled:
            os.kill(os.getpid(), signal.SIGTERM)  # the parent died (or closes the workers) meanwhile
        time.sleep(slow)

    def reset(self, *, seed=None, options=None):
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 0.0, False, False, {}

    def close(self):
        (self.root / "closed" / str(self.game.pid)).touch()
        self.game.kill()
        self.game.wait()
