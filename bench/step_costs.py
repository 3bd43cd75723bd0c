"""What asynchronous collection could save SAC: the env step and acting against one update.

docs/DISTRIBUTED.md cites its output for not giving SAC, MBPO and Dreamer collection actors: with
one update per env step, collection's share of a step is (step + act) / (step + act + update).

    python bench/step_costs.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from pymbrl.agents import sac


def seconds_per_call(f: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - start) / n


def main() -> None:
    torch.set_num_threads(1)
    env = gym.make("Pendulum-v1")
    env.reset(seed=0)
    step = seconds_per_call(lambda: env.step(env.action_space.sample()), 2000)
    agent = sac.SAC.of(sac.SACConfig(), env)
    obs = np.zeros(3, np.float32)
    act = seconds_per_call(lambda: agent.act(obs, deterministic=False), 500)
    batch = {"obs": torch.randn(256, 3), "action": torch.rand(256, 1) * 4 - 2, "reward": torch.randn(256),
             "next_obs": torch.randn(256, 3), "discount": torch.full((256,), 0.99)}
    update = seconds_per_call(lambda: agent.update(batch), 50)
    share = (step + act) / (step + act + update)
    print(f"SAC on Pendulum-v1: env step {step * 1e6:.0f} us, act {act * 1e6:.0f} us, update (batch 256) "
          f"{update * 1e3:.2f} ms: collection is {100 * share:.1f}% of a step at one update per step")
    cheetah = gym.make("HalfCheetah-v5")
    cheetah.reset(seed=0)
    step = seconds_per_call(lambda: cheetah.step(cheetah.action_space.sample()), 2000)
    print(f"HalfCheetah-v5: env step {step * 1e6:.0f} us")


if __name__ == "__main__":
    main()
