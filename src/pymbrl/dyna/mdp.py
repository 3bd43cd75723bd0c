"""Finite MDPs that run entirely in C++: gymnasium toy-text tables and the book's mazes (gymnasium is
needed only to read a toy-text env, :meth:`TabularMDP.from_gymnasium`)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pymbrl import _core
from pymbrl._checks import integer, real
from pymbrl._extras import optional_imports

if TYPE_CHECKING:
    import gymnasium as gym

    from pymbrl.dyna.env import TabularEnv

DENSE_LIMIT = 2**28
"""Most values :meth:`TabularMDP.dense` allocates for ``P``."""


class TabularMDP:
    """A finite MDP given by its transition table, optionally changing at set real time steps.

    Build one with :meth:`from_transitions`, :meth:`from_gymnasium` or the maze functions
    (:func:`DynaMaze`, :func:`BlockingMaze`, :func:`ShortcutMaze`); :meth:`then` makes an MDP whose
    dynamics change mid-run.

    Attributes
    ----------
    n_states, n_actions : int
    max_episode_steps : int or None
        Episodes longer than this are truncated by :func:`run_batch` and :class:`TabularEnv`.
    name : str
    layouts : list of list of str
        For mazes: the layout rows of each phase ('.' free, '#' wall, 'S' start, 'G' goal).
    """

    def __init__(self, core: Any, *, max_episode_steps: int | None = None, name: str = "",
                 layouts: list[list[str]] | None = None) -> None:
        if not isinstance(core, _core.dyna.TabularMDP):
            raise TypeError("core: expected a pymbrl._core.dyna.TabularMDP; use TabularMDP.from_transitions")
        self._core = core
        self.max_episode_steps = integer(max_episode_steps, "max_episode_steps", optional=True)
        self.name = name
        self.layouts = layouts or []

    @property
    def core(self) -> Any:
        """The compiled transition table (``pymbrl._core.dyna.TabularMDP``) the batch runner steps."""
        return self._core

    @property
    def n_states(self) -> int:
        return self._core.n_states

    @property
    def n_actions(self) -> int:
        return self._core.n_actions

    @property
    def change_steps(self) -> list[int]:
        """Real steps at which each phase after the first takes over."""
        return list(self._core.starts[1:])

    def transition_arrays(self, phase: int = 0) -> dict[str, np.ndarray]:
        """The transition table of a phase as arrays (copies).

        Returns
        -------
        dict
            ``offsets`` int64 [S*A+1] (pair ``s*A+a`` owns entries ``offsets[p]:offsets[p+1]``),
            ``prob`` float64 [T], ``next`` int64 [T], ``reward`` float64 [T], ``terminated`` bool [T],
            ``initial`` float64 [S].
        """
        phases = self._core.phases
        if not 0 <= phase < len(phases):
            raise ValueError(f"phase: expected an integer in [0, {len(phases)}), got {phase}")
        return dict(phases[phase].arrays())

    def dense(self, phase: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Dense arrays of a phase: ``P`` [S, A, S] probabilities, ``R`` [S, A] expected rewards and
        ``D`` [S, A] probabilities of terminating, all float64. ``P`` is limited to ``2**28`` values
        (2 GiB); larger MDPs raise ``ValueError`` before allocating (use :meth:`transition_arrays`)."""
        S, A = self.n_states, self.n_actions
        if S * A * S > DENSE_LIMIT:
            raise ValueError(f"n_states: expected n_states**2 * n_actions <= 2**28 for a dense table, got "
                             f"{S}**2 * {A}")
        t = self.transition_arrays(phase)
        pair = np.repeat(np.arange(S * A), np.diff(t["offsets"]))
        P = np.zeros((S * A, S))
        np.add.at(P, (pair, t["next"]), t["prob"])
        R = np.bincount(pair, t["prob"] * t["reward"], minlength=S * A)
        D = np.bincount(pair, t["prob"] * t["terminated"], minlength=S * A)
        return P.reshape(S, A, S), R.reshape(S, A), D.reshape(S, A)

    def expected_return(self, policy: Sequence[int] | np.ndarray, horizon: int, *, gamma: float = 1.0,
                        phase: int = 0) -> float:
        """Exact expected return of a deterministic policy from the initial distribution, over at most
        ``horizon`` steps (by dynamic programming on the table, no sampling).

        Parameters
        ----------
        policy : array-like of int, shape [n_states]
            Action taken in each state, e.g. ``agent.q.argmax(axis=1)``.
        horizon : int
            Episode length limit (e.g. the env's ``max_episode_steps``), >= 1.
        gamma : float
            Discount, in [0, 1]. With 0/1 rewards and gamma 1 this is the probability of success.
        """
        policy = np.asarray(policy)
        if policy.shape != (self.n_states,) or not np.issubdtype(policy.dtype, np.integer):
            raise ValueError(f"policy: expected {self.n_states} integer actions, got {policy.dtype} {policy.shape}")
        if policy.min() < 0 or policy.max() >= self.n_actions:
            raise ValueError(f"policy: expected actions in [0, {self.n_actions})")
        horizon = integer(horizon, "horizon")
        gamma = real(gamma, "gamma", low=0.0, high=1.0)
        t = self.transition_arrays(phase)
        S = self.n_states
        pair = np.repeat(np.arange(S * self.n_actions), np.diff(t["offsets"]))
        state = pair // self.n_actions
        chosen = pair % self.n_actions == policy[state]
        reward = np.bincount(state[chosen], (t["prob"] * t["reward"])[chosen], minlength=S)
        go_on = chosen & ~t["terminated"]
        # Sparse: O(transitions) memory and time per step, never a dense [S, S] matrix.
        from_state, into, prob = state[go_on], t["next"][go_on], t["prob"][go_on]
        value = np.zeros(S)
        for _ in range(horizon):
            value = reward + gamma * np.bincount(from_state, prob * value[into], minlength=S)
        return float(t["initial"] @ value)

    @classmethod
    def from_transitions(cls, P: Mapping | Sequence, initial_state_distribution: Sequence[float] | np.ndarray,
                         *, n_actions: int | None = None, max_episode_steps: int | None = None,
                         name: str = "") -> "TabularMDP":
        """Build from gymnasium's toy-text format: ``P[s][a]`` is a list of
        ``(probability, next_state, reward, terminated)`` tuples.

        Parameters
        ----------
        P : mapping or sequence indexed by state, then by action
        initial_state_distribution : array-like of float, shape [n_states]
        n_actions : int, optional
            Defaults to the number of actions listed for state 0.
        """
        n_states = len(P)
        if n_states == 0:
            raise ValueError("P: expected at least one state")
        if isinstance(P, Mapping):  # before P[0] is read below, so a missing state is named, not a KeyError
            missing = next((s for s in range(n_states) if s not in P), None)
            if missing is not None:
                raise ValueError(f"P: expected an entry for every state in [0, {n_states}), missing {missing}")
        n_actions = len(P[0]) if n_actions is None else n_actions
        offsets, prob, nxt, reward, term = [0], [], [], [], []
        for s in range(n_states):
            row = P[s]
            if len(row) != n_actions:
                raise ValueError(f"P[{s}]: expected {n_actions} actions, got {len(row)}")
            for a in range(n_actions):
                for entry in row[a]:
                    if len(entry) != 4:
                        raise ValueError(f"P[{s}][{a}]: expected (prob, next_state, reward, terminated) tuples")
                    p, s2, r, d = entry
                    # int() and bool() would read next state 2.7 as 2 and terminated "no" as True.
                    if (not isinstance(s2, numbers.Integral) or isinstance(s2, (bool, np.bool_))
                            or not isinstance(d, (bool, np.bool_)) and d not in (0, 1)
                            or not all(isinstance(x, numbers.Real) for x in (p, r))):
                        raise ValueError(f"P[{s}][{a}]: expected (prob, next_state, reward, terminated) of types "
                                         f"(real, int, real, bool), got {entry!r:.200}")
                    prob.append(float(p))
                    nxt.append(int(s2))
                    reward.append(float(r))
                    term.append(bool(d))
                offsets.append(len(prob))
        initial = np.asarray(initial_state_distribution, dtype=np.float64).reshape(-1)
        table = _core.dyna.TransitionTable(n_states, n_actions, np.asarray(offsets, np.int64),
                                           np.asarray(prob), np.asarray(nxt, np.int64), np.asarray(reward),
                                           np.asarray(term, bool), initial)
        return cls(_core.dyna.TabularMDP([table], [0]), max_episode_steps=max_episode_steps, name=name)

    @classmethod
    def from_gymnasium(cls, env: gym.Env) -> "TabularMDP":
        """Build from a toy-text environment's transition table (FrozenLake-v1 4x4 and 8x8, slippery
        or not; CliffWalking-v1; Taxi-v4). ``max_episode_steps`` is taken from the env's spec."""
        with optional_imports():
            import gymnasium as gym

        base = env.unwrapped
        for space_name in ("observation_space", "action_space"):
            space = getattr(env, space_name, None)
            if not isinstance(space, gym.spaces.Discrete):
                raise ValueError(f"env: expected Discrete observation and action spaces, got {space_name} "
                                 f"{space!r}")
            if space.start != 0:
                raise ValueError(f"env: expected Discrete spaces starting at 0, got {space_name} {space!r}")
        P = getattr(base, "P", None)
        initial = getattr(base, "initial_state_distrib", None)
        if P is None or initial is None:
            raise ValueError(f"env: expected a toy-text env exposing its transition table P and "
                             f"initial_state_distrib, got {type(base).__name__}")
        spec = getattr(env, "spec", None)
        return cls.from_transitions(P, initial, n_actions=int(env.action_space.n),
                                    max_episode_steps=getattr(spec, "max_episode_steps", None),
                                    name=getattr(spec, "id", type(base).__name__))

    def then(self, other: "TabularMDP", at_step: int) -> "TabularMDP":
        """An MDP with this one's dynamics until ``at_step`` real steps have been taken (counted across
        episodes), then ``other``'s. Both must have the same numbers of states and actions."""
        if not isinstance(other, TabularMDP):
            raise TypeError(f"other: expected a TabularMDP, got {type(other).__name__}")
        starts = list(self._core.starts)
        at_step = integer(at_step, "at_step", minimum=starts[-1] + 1)
        if at_step >= 2**63:
            raise ValueError(f"at_step: expected an integer < 2**63, got {at_step}")
        core = _core.dyna.TabularMDP(list(self._core.phases) + list(other._core.phases[:1]), starts + [at_step])
        return TabularMDP(core, max_episode_steps=self.max_episode_steps, name=self.name,
                          layouts=self.layouts + other.layouts[:1])

    def make_env(self, seed: int | None = None) -> TabularEnv:
        """A gymnasium view of this MDP, stepped by the same C++ code as :func:`run_batch` (needs
        gymnasium)."""
        from pymbrl.dyna.env import TabularEnv

        return TabularEnv(self, seed=seed)

    def __repr__(self) -> str:
        return (f"TabularMDP(name={self.name!r}, n_states={self.n_states}, n_actions={self.n_actions}, "
                f"change_steps={self.change_steps})")


def _maze(layouts: list[list[str]], change_at: int | None, name: str) -> TabularMDP:
    mdp = TabularMDP(_core.dyna.TabularMDP([_core.dyna.make_maze(layouts[0])], [0]), name=name,
                     layouts=[layouts[0]])
    if change_at is None:
        return mdp
    changed = TabularMDP(_core.dyna.TabularMDP([_core.dyna.make_maze(layouts[1])], [0]), layouts=[layouts[1]])
    return mdp.then(changed, change_at)


def DynaMaze() -> TabularMDP:
    """Sutton & Barto's Figure 8.2 maze: 6 x 9 cells (every cell a state, row-major), 4 actions
    (0 up, 1 down, 2 left, 3 right), reward 1 on reaching the goal, shortest path 14 steps."""
    return _maze([list(_core.dyna.dyna_maze_layout())], None, "DynaMaze")


def BlockingMaze(change_at: int = 1000) -> TabularMDP:
    """Figure 8.4's maze: after ``change_at`` real steps the short path on the right is blocked and
    a longer one opens on the left."""
    return _maze([list(x) for x in _core.dyna.blocking_maze_layouts()], change_at, "BlockingMaze")


def ShortcutMaze(change_at: int = 3000) -> TabularMDP:
    """Figure 8.5's maze: after ``change_at`` real steps a shorter path opens on the right."""
    return _maze([list(x) for x in _core.dyna.shortcut_maze_layouts()], change_at, "ShortcutMaze")
