"""Tabular Dyna agents (Sutton & Barto, *Reinforcement Learning: An Introduction*, 2nd ed., ch. 8).

The agents live in the C++ core; these classes give them Python signatures, defaults and
documentation. Every call validates its arguments and leaves the agent unchanged when it raises.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pymbrl import _core
from pymbrl._checks import ArgumentTypeError, real, resolve_seed

MODELS = ("deterministic", "stochastic")


def agent_config(
    *,
    alpha: float = 0.1,
    gamma: float = 0.95,
    epsilon: float = 0.1,
    planning_steps: int = 5,
    model: str = "deterministic",
    kappa: float = 1e-3,
    theta: float = 1e-4,
) -> dict[str, Any]:
    """Type-check the hyper-parameters shared by every tabular agent (ranges are checked in C++)."""
    if not isinstance(model, str):
        raise ArgumentTypeError(f"model: expected one of {MODELS}, got {type(model).__name__}")
    return dict(
        alpha=real(alpha, "alpha"),
        gamma=real(gamma, "gamma"),
        epsilon=real(epsilon, "epsilon"),
        planning_steps=planning_steps,
        model=model,
        kappa=real(kappa, "kappa"),
        theta=real(theta, "theta"),
    )


class TabularAgent(_core.dyna.Agent):
    """Common interface of the tabular Dyna agents.

    Attributes
    ----------
    q : numpy.ndarray
        Zero-copy view of the Q table, float64, shape ``[n_states, n_actions]``. It stays valid for
        the agent's lifetime (``reset`` and ``load_state_dict`` write into it in place).

    Methods
    -------
    act(state) -> int
        Epsilon-greedy action; ties among maximal Q values are broken uniformly at random.
    greedy(state) -> int
        Greedy action, random tie-breaking.
    update(state, action, reward, next_state, terminated) -> None
        One real transition: direct RL, model learning, then ``planning_steps`` of planning. The
        GIL is released while it runs.
    plan(n) -> None
        ``n`` planning updates (``n`` sweeps for prioritized sweeping), GIL released.
    reset() -> None
        Back to the freshly constructed agent, random generator included.
    state_dict() -> dict
        Q table, model, generator and clock as numpy arrays and plain values.
    load_state_dict(state_dict) -> None
        Restore; the agent then continues exactly as the saved one would have. Every invariant of
        the dict is checked first (shapes, dtypes, offsets, ids in range, counts, clocks, queue);
        ``ValueError`` or ``TypeError`` names the key, and a rejected load changes nothing.

    Notes
    -----
    Limits: ``n_states * n_actions <= 2**28``; ``|reward| <= 1e100`` (else ``ValueError`` naming ``reward``,
    agent unchanged); ``kappa <= 1e100``; at most ``2**53`` real steps. With these bounds no update
    or planning step can make a Q value non-finite (each moves ``max|Q|`` by at most about 1e108),
    so the Q table is always finite and every ``state_dict()`` loads back.
    """

    kind: str = ""

    def __init__(self, n_states: int, n_actions: int, *, seed: int | None = None, **config: Any) -> None:
        self.seed = resolve_seed(seed)
        super().__init__(kind=self.kind, n_states=n_states, n_actions=n_actions, seed=self.seed,
                         **agent_config(**config))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_states={self.n_states}, n_actions={self.n_actions}, seed={self.seed})"

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # noqa: D102
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        converted = {}
        for key, value in state_dict.items():
            if isinstance(value, (list, tuple)):
                try:
                    value = np.asarray(value)
                except (ValueError, TypeError) as error:
                    raise ValueError(f"{key}: expected an array, got a list numpy cannot convert ({error})") from None
            converted[key] = value
        super().load_state_dict(converted)


class DynaQ(TabularAgent):
    """Tabular Dyna-Q (Sutton & Barto 2018, section 8.2).

    Parameters
    ----------
    n_states, n_actions : int
        Sizes of the discrete state and action spaces.
    alpha : float, default 0.1
        Step size, in (0, 1].
    gamma : float, default 0.95
        Discount, in [0, 1].
    epsilon : float, default 0.1
        Exploration rate of the epsilon-greedy policy, in [0, 1].
    planning_steps : int, default 5
        Simulated one-step Q-learning updates after each real step; pairs are drawn uniformly
        (in O(1)) from the (state, action) pairs observed so far.
    model : {"deterministic", "stochastic"}, default "deterministic"
        ``"deterministic"`` remembers the last outcome of each pair (the book's Tabular Dyna-Q);
        ``"stochastic"`` keeps counts and samples (next_state, reward, terminated) from the
        empirical distribution, as slippery FrozenLake needs.
    seed : int or None
        Seed of the agent's own generator; ``None`` draws one from OS entropy.

    The defaults are those of the book's Figure 8.2 experiment.
    """

    kind = "dyna_q"

    def __init__(self, n_states: int, n_actions: int, *, alpha: float = 0.1, gamma: float = 0.95,
                 epsilon: float = 0.1, planning_steps: int = 5, model: str = "deterministic",
                 seed: int | None = None) -> None:
        super().__init__(n_states, n_actions, alpha=alpha, gamma=gamma, epsilon=epsilon,
                         planning_steps=planning_steps, model=model, seed=seed)


class DynaQPlus(TabularAgent):
    """Dyna-Q+ (Sutton & Barto 2018, section 8.3): Dyna-Q with an exploration bonus in planning.

    A simulated transition of a pair last tried ``tau`` real steps ago earns ``r + kappa * sqrt(tau)``.
    Actions never tried from a visited state take part in planning with an assumed model that
    leads back to the same state with reward 0 (the book's footnote to Figure 8.4), with ``tau``
    counted from the agent's first step. Other parameters as :class:`DynaQ`.

    Parameters
    ----------
    kappa : float, default 1e-3
        Bonus scale, >= 0. The book's Figures 8.4 and 8.5 work with values in 1e-4 .. 1e-3.
    """

    kind = "dyna_q_plus"

    def __init__(self, n_states: int, n_actions: int, *, alpha: float = 0.1, gamma: float = 0.95,
                 epsilon: float = 0.1, planning_steps: int = 5, model: str = "deterministic",
                 kappa: float = 1e-3, seed: int | None = None) -> None:
        super().__init__(n_states, n_actions, alpha=alpha, gamma=gamma, epsilon=epsilon,
                         planning_steps=planning_steps, model=model, kappa=kappa, seed=seed)


class PrioritizedSweeping(TabularAgent):
    """Prioritized sweeping (Sutton & Barto 2018, section 8.4; Moore & Atkeson 1993).

    Real experience updates the model and queues its pair when ``|TD error| > theta``; each of the
    ``planning_steps`` sweeps pops the pair of largest priority, updates it and queues those of its
    predecessors whose error exceeds ``theta``. Q changes only while sweeping, as in the book, so
    ``planning_steps`` must be >= 1. With ``model="stochastic"`` a sweep applies the expected update
    over the empirical outcome distribution. Other parameters as :class:`DynaQ`.

    Parameters
    ----------
    theta : float, default 1e-4
        Priority threshold, >= 0.
    """

    kind = "prioritized_sweeping"

    def __init__(self, n_states: int, n_actions: int, *, alpha: float = 0.1, gamma: float = 0.95,
                 epsilon: float = 0.1, planning_steps: int = 5, model: str = "deterministic",
                 theta: float = 1e-4, seed: int | None = None) -> None:
        super().__init__(n_states, n_actions, alpha=alpha, gamma=gamma, epsilon=epsilon,
                         planning_steps=planning_steps, model=model, theta=theta, seed=seed)


AGENTS: dict[str, type[TabularAgent]] = {cls.kind: cls for cls in (DynaQ, DynaQPlus, PrioritizedSweeping)}
