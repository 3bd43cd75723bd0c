import time, numpy as np, torch, gymnasium as gym
torch.set_num_threads(1)
from pymbrl.agents import sac
def per(f, n):
    t = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - t) / n
env = gym.make("Pendulum-v1"); env.reset(seed=0)
step = per(lambda: env.step(env.action_space.sample()) , 2000)
c = sac.SACConfig()
agent = sac.SAC.of(c, env)
obs = np.zeros(3, np.float32)
act = per(lambda: agent.act(obs, deterministic=False), 500)
batch = {"obs": torch.randn(256, 3), "action": torch.rand(256, 1) * 4 - 2, "reward": torch.randn(256),
         "next_obs": torch.randn(256, 3), "discount": torch.full((256,), 0.99)}
upd = per(lambda: agent.update(batch), 50)
print(f"SAC Pendulum: env step {step*1e6:.0f} us, act {act*1e6:.0f} us, update (batch 256, 256 units) {upd*1e3:.2f} ms")
for name in ("HalfCheetah-v5",):
    e = gym.make(name); e.reset(seed=0)
    print(f"{name}: env step {per(lambda: e.step(e.action_space.sample()), 2000)*1e6:.0f} us")
