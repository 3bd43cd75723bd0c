"""Pure-Python/numpy Tabular Dyna-Q on the Dyna maze: the reference pymbrl is benchmarked against.

This is the textbook algorithm (Sutton & Barto 2018, section 8.2, "Tabular Dyna-Q") written the
way a researcher would write it without pymbrl: Q is a numpy array, the model a dict
``{(s, a): (r, s2, terminated)}``, actions are epsilon-greedy with random tie-breaking, and each
planning update replays a uniformly random previously observed pair. It depends on numpy only, so
it also runs on its own::

    python bench/dyna_baseline.py
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import numpy as np

FIGURE_8_2_LAYOUT = (
    ".......#G",
    "..#....#.",
    "S.#....#.",
    "..#......",
    ".....#...",
    ".........",
)
"""Figure 8.2's maze: '.' free, '#' wall, 'S' start, 'G' goal."""

SETTINGS = (0, 5, 50)
"""Planning steps per real step compared in Figure 8.2."""


class Maze:
    """A deterministic grid maze; every cell is a state (row-major).

    Actions 0 up, 1 down, 2 left, 3 right. A move into a wall or off the grid leaves the agent in
    place; entering 'G' gives reward 1 and ends the episode, every other step gives 0.
    """

    MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))

    def __init__(self, layout: Sequence[str] = FIGURE_8_2_LAYOUT) -> None:
        self.layout = tuple(layout)
        self.rows, self.cols = len(self.layout), len(self.layout[0])
        self.n_states, self.n_actions = self.rows * self.cols, len(self.MOVES)
        self.start = "".join(self.layout).index("S")
        self.state = self.start

    def transition(self, s: int, a: int) -> tuple[int, float, bool]:
        """Outcome ``(next_state, reward, terminated)`` of action ``a`` in cell ``s``."""
        row, col = divmod(s, self.cols)
        dr, dc = self.MOVES[a]
        r2, c2 = row + dr, col + dc
        if not (0 <= r2 < self.rows and 0 <= c2 < self.cols) or self.layout[r2][c2] == "#":
            r2, c2 = row, col
        goal = self.layout[r2][c2] == "G"
        return r2 * self.cols + c2, float(goal), goal

    def reset(self) -> int:
        """Put the agent back on 'S' and return that state."""
        self.state = self.start
        return self.state

    def step(self, a: int) -> tuple[int, float, bool]:
        """Take action ``a``; returns ``(next_state, reward, terminated)``."""
        s2, r, terminated = self.transition(self.state, a)
        self.state = s2
        return s2, r, terminated


class DynaQ:
    """Tabular Dyna-Q with a deterministic model (the book's boxed algorithm).

    The interface (``act``, ``update``, ``plan``, ``q``) mirrors ``pymbrl.dyna.DynaQ`` so both can
    be driven and timed by the same code.
    """

    def __init__(self, n_states: int, n_actions: int, *, alpha: float = 0.1, gamma: float = 0.95,
                 epsilon: float = 0.1, planning_steps: int = 5, seed: int | None = None) -> None:
        self.n_actions = n_actions
        self.alpha, self.gamma, self.epsilon = alpha, gamma, epsilon
        self.planning_steps = planning_steps
        self.q = np.zeros((n_states, n_actions))
        self.model: dict[tuple[int, int], tuple[float, int, bool]] = {}
        # A list beside the dict so that drawing a random observed pair is O(1).
        self.keys: list[tuple[int, int]] = []
        self.rng = np.random.default_rng(seed)

    def act(self, s: int) -> int:
        """Epsilon-greedy action; ties among the maximal Q values are broken at random."""
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.n_actions))
        q = self.q[s]
        return int(self.rng.choice(np.flatnonzero(q == q.max())))

    def _q_learning(self, s: int, a: int, r: float, s2: int, terminated: bool) -> None:
        target = r if terminated else r + self.gamma * self.q[s2].max()
        self.q[s, a] += self.alpha * (target - self.q[s, a])

    def update(self, s: int, a: int, r: float, s2: int, terminated: bool) -> None:
        """One real step: direct RL, model learning, then ``planning_steps`` planning updates."""
        self._q_learning(s, a, r, s2, terminated)
        if (s, a) not in self.model:
            self.keys.append((s, a))
        self.model[(s, a)] = (r, s2, terminated)
        self.plan(self.planning_steps)

    def plan(self, n: int) -> None:
        """``n`` one-step Q-learning updates on pairs drawn uniformly from those observed."""
        for _ in range(n):
            s, a = self.keys[self.rng.integers(len(self.keys))]
            r, s2, terminated = self.model[(s, a)]
            self._q_learning(s, a, r, s2, terminated)


def run_dyna_q(planning_steps: int, seed: int, episodes: int = 50,
               layout: Sequence[str] = FIGURE_8_2_LAYOUT) -> np.ndarray:
    """Steps taken in each of ``episodes`` episodes by one fresh agent; int64 [episodes]."""
    env = Maze(layout)
    agent = DynaQ(env.n_states, env.n_actions, planning_steps=planning_steps, seed=seed)
    steps = np.zeros(episodes, np.int64)
    for episode in range(episodes):
        s, terminated = env.reset(), False
        while not terminated:
            a = agent.act(s)
            s2, r, terminated = env.step(a)
            agent.update(s, a, r, s2, terminated)
            s = s2
            steps[episode] += 1
    return steps


def run_setting(planning_steps: int, seeds: Iterable[int] = range(30), episodes: int = 50,
                layout: Sequence[str] = FIGURE_8_2_LAYOUT) -> np.ndarray:
    """Episode lengths of one Figure 8.2 curve, one row per seed; int64 [seeds, episodes]."""
    return np.stack([run_dyna_q(planning_steps, seed, episodes, layout) for seed in seeds])


def figure_8_2(seeds: Iterable[int] = range(30), episodes: int = 50,
               layout: Sequence[str] = FIGURE_8_2_LAYOUT) -> dict[int, np.ndarray]:
    """The Figure 8.2 experiment: mean steps per episode [episodes] for each planning setting."""
    seeds = list(seeds)
    return {n: run_setting(n, seeds, episodes, layout).mean(axis=0) for n in SETTINGS}


def filled_agent(agent_cls: type = DynaQ, seed: int = 0, layout: Sequence[str] = FIGURE_8_2_LAYOUT):
    """An agent of ``agent_cls`` whose model holds every (state, action) pair of the maze.

    Each pair is fed once as a real transition with no planning, so ``plan`` afterwards draws from
    all ``n_states * n_actions`` pairs. Works for this module's ``DynaQ`` and ``pymbrl.dyna.DynaQ``.
    """
    maze = Maze(layout)
    agent = agent_cls(maze.n_states, maze.n_actions, planning_steps=0, seed=seed)
    for s in range(maze.n_states):
        for a in range(maze.n_actions):
            s2, r, terminated = maze.transition(s, a)
            agent.update(s, a, r, s2, terminated)
    return agent


def planning_rate(agent, min_seconds: float = 0.2, repeats: int = 5) -> tuple[int, list[float]]:
    """Time ``agent.plan(n)``: planning updates per second of ``repeats`` calls.

    ``n`` doubles until one call takes at least ``min_seconds``, so that timer resolution and call
    overhead do not count. Returns ``(n, rates)``.
    """
    n = 1000
    while True:
        start = time.perf_counter()
        agent.plan(n)
        if time.perf_counter() - start >= min_seconds:
            break
        n *= 2
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        agent.plan(n)
        rates.append(n / (time.perf_counter() - start))
    return n, rates


if __name__ == "__main__":
    n, rates = planning_rate(filled_agent())
    print(f"planning: {np.median(rates):,.0f} updates/s (median of {len(rates)} calls of plan({n}))")
    start = time.perf_counter()
    curves = figure_8_2()
    print(f"Figure 8.2 experiment: {time.perf_counter() - start:.1f} s")
    for n, curve in curves.items():
        print(f"n={n:2d}: mean steps at episodes 2, 10, 20, 50: "
              + ", ".join(f"{curve[e - 1]:.1f}" for e in (2, 10, 20, 50)))
