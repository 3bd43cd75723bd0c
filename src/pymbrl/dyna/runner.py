"""Running tabular agents: any gymnasium env from Python (:func:`run`, which needs gymnasium), or many
seeds at once in C++ (:func:`run_batch`, which does not)."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence, Sized
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from pymbrl import _core
from pymbrl._checks import integer, resolve_seed
from pymbrl._extras import optional_imports
from pymbrl.dyna.agents import AGENTS, TabularAgent, agent_config
from pymbrl.dyna.mdp import TabularMDP

if TYPE_CHECKING:
    import gymnasium as gym

# The core's limit on seeds x max(episode columns, steps), the values of each result array.
_MAX_RESULTS = 2**28


class RunResult(NamedTuple):
    """Per-episode results of :func:`run`.

    Attributes
    ----------
    episode_steps : numpy.ndarray, int64, shape [episodes]
    episode_returns : numpy.ndarray, float64, shape [episodes]
        Undiscounted sum of rewards.
    """

    episode_steps: np.ndarray
    episode_returns: np.ndarray


class BatchResult(NamedTuple):
    """Results of :func:`run_batch`, one row per seed.

    Attributes
    ----------
    episode_steps : numpy.ndarray, int64, shape [seeds, episodes]
        Length of each completed episode; -1 where a seed completed fewer episodes. With both
        ``episodes`` and ``steps`` given there are ``min(episodes, steps)`` columns (an episode takes
        at least one step); with ``steps`` only, as many as the longest-running seed completed.
    episode_returns : numpy.ndarray, float64, shape [seeds, episodes]
        Undiscounted return of each completed episode; NaN where not completed.
    cumulative_reward : numpy.ndarray, float64, shape [seeds, steps]
        Reward summed over all real steps so far (the book's Figures 8.4 and 8.5); NaN after a seed
        stopped early (its episode budget ran out first). Shape [seeds, 0] when ``steps`` is None.
    episodes_completed : numpy.ndarray, int64, shape [seeds]
    """

    episode_steps: np.ndarray
    episode_returns: np.ndarray
    cumulative_reward: np.ndarray
    episodes_completed: np.ndarray


def _check_discrete(space: Any, name: str) -> int:
    with optional_imports():
        import gymnasium as gym

    if not isinstance(space, gym.spaces.Discrete) or space.start != 0:
        raise ValueError(f"env: expected a Discrete {name} starting at 0, got {space!r}")
    return int(space.n)


def run(agent: TabularAgent, env: gym.Env, episodes: int, max_steps: int | None = None, *,
        seed: int | None = None, progress: bool = False) -> RunResult:
    """Run ``agent`` on a gymnasium env with Discrete spaces for ``episodes`` episodes, learning
    from every step (``agent.update``).

    Parameters
    ----------
    agent : DynaQ, DynaQPlus or PrioritizedSweeping
    env : gymnasium.Env
        Discrete observation and action spaces matching the agent's sizes.
    episodes : int
        Number of episodes, >= 1.
    max_steps : int, optional
        Truncate episodes at this many steps (in addition to the env's own time limit).
    seed : int, optional
        Passed to the first ``env.reset``.
    progress : bool
        Show a progress bar over episodes (tqdm's).
    """
    if not isinstance(agent, TabularAgent):
        raise TypeError(f"agent: expected a DynaQ, DynaQPlus or PrioritizedSweeping, got {type(agent).__name__}")
    n_states = _check_discrete(getattr(env, "observation_space", None), "observation space")
    n_actions = _check_discrete(getattr(env, "action_space", None), "action space")
    if (n_states, n_actions) != (agent.n_states, agent.n_actions):
        raise ValueError(f"env: expected {agent.n_states} states and {agent.n_actions} actions (the agent's), "
                         f"got {n_states} and {n_actions}")
    episodes = integer(episodes, "episodes")
    max_steps = integer(max_steps, "max_steps", optional=True)
    # Grown as episodes complete, never sized by the requested count up front.
    steps: list[int] = []
    returns: list[float] = []
    reset_seed = seed
    rounds: Iterable[int] = range(episodes)
    if progress:
        with optional_imports():
            from tqdm.auto import tqdm

        rounds = tqdm(rounds, desc="episodes")
    for _ in rounds:
        state, _ = env.reset(seed=reset_seed)
        reset_seed = None
        length, total, done = 0, 0.0, False
        while not done:
            action = agent.act(state)
            next_state, reward, terminated, truncated, _ = env.step(action)
            agent.update(state, action, float(reward), next_state, bool(terminated))
            state = next_state
            length += 1
            total += float(reward)
            done = terminated or truncated or (max_steps is not None and length >= max_steps)
        steps.append(length)
        returns.append(total)
    return RunResult(np.asarray(steps, np.int64).reshape(-1), np.asarray(returns, np.float64).reshape(-1))


def _count(value: Any, name: str) -> int:
    """-1 (the core's "no limit") for None, else an integer >= 1."""
    checked = integer(value, name, optional=True)
    return -1 if checked is None else checked


def run_batch(kind: str | type[TabularAgent], mdp: TabularMDP, *, seeds: Sequence[int] | np.ndarray,
              episodes: int | None = None, steps: int | None = None, max_episode_steps: int | None = -1,
              num_threads: int | None = None, **agent_kwargs: Any) -> BatchResult:
    """Run one fresh agent per seed on ``mdp``, entirely in C++ and across threads.

    Parameters
    ----------
    kind : {"dyna_q", "dyna_q_plus", "prioritized_sweeping"} or the agent class
    mdp : TabularMDP
    seeds : sequence of int
        Agent seeds; the environment of each run draws from a generator derived from the same seed,
        exactly as ``mdp.make_env(seed)`` does.
    episodes : int, optional
        Stop each run after this many episodes.
    steps : int, optional
        Stop each run after this many real steps (and record ``cumulative_reward``). At least one of
        ``episodes`` and ``steps`` must be given.
    max_episode_steps : int or None
        Truncate longer episodes; defaults to ``mdp.max_episode_steps``; ``None`` means never.
    num_threads : int, optional
        Worker threads; defaults to the machine's hardware threads. Results do not depend on it.
    **agent_kwargs
        Hyper-parameters of the agent (alpha, gamma, epsilon, planning_steps, model, kappa, theta).

    Returns
    -------
    BatchResult

    Raises
    ------
    ValueError
        Before anything runs or is allocated, when ``len(seeds) * max(episode columns, steps)``
        exceeds ``2**28`` (each result array at most 2 GiB), when a count does not fit in 64 bits,
        or when a reward of ``mdp`` exceeds the agents' limit ``|reward| <= 1e100``.
    """
    if isinstance(kind, type) and issubclass(kind, TabularAgent):
        kind = kind.kind
    if kind not in AGENTS:
        raise ValueError(f"kind: expected one of {sorted(AGENTS)} or an agent class, got {kind!r}")
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"mdp: expected a TabularMDP, got {type(mdp).__name__}")
    unknown = set(agent_kwargs) - set(inspect.signature(agent_config).parameters)
    if unknown:
        raise TypeError(f"agent_kwargs: unexpected hyper-parameters {sorted(unknown)}")
    # A range(10**13) would be listed (a MemoryError) before the limit on results below refused it.
    if isinstance(seeds, Sized) and len(seeds) > _MAX_RESULTS:
        raise ValueError(f"seeds: expected at most 2**28 seeds (each run keeps at least one result), got {len(seeds)}")
    seeds = [resolve_seed(s, "seeds") for s in np.asarray(seeds, dtype=object).reshape(-1).tolist()]
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    if episodes is None and steps is None:
        raise ValueError("episodes: expected episodes or steps (or both) to be given")
    if max_episode_steps == -1:
        max_episode_steps = mdp.max_episode_steps
    if num_threads is None:
        num_threads = _core.build_info()["hardware_threads"]
    num_threads = _count(num_threads, "num_threads")
    result = _core.dyna.run_batch(kind, mdp.core, seeds, _count(episodes, "episodes"), _count(steps, "steps"),
                                  _count(max_episode_steps, "max_episode_steps"), num_threads,
                                  **agent_config(**agent_kwargs))
    return BatchResult(**result)
