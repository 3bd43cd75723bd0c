"""The known parts of the tasks an agent learns, as functions of (predicted) transitions: model
rollouts use them in place of a learned model's guess.

termination
    When gymnasium's MuJoCo and classic-control tasks end, as a function of the next state:
    :func:`termination_fn` (``env_id -> (obs, action, next_obs) -> bool [N]``).
rewards
    The true rewards of the tasks whose reward is a function of observation and action:
    :func:`reward_fn` (``env_id -> (obs, action, next_obs) -> float [N]``).
"""

from pymbrl.tasks.rewards import RewardFn, reward_fn
from pymbrl.tasks.termination import TerminationFn, termination_fn

__all__ = ["RewardFn", "TerminationFn", "reward_fn", "termination_fn"]
