import time, sys, os
import numpy as np
import ray
sys.path.insert(0, os.environ.get("PYMBRL_SITE", "src"))
from pymbrl.distributed.pool import ProducerPool

class SleepWorker:
    def __init__(self, work, payload):
        self.work, self.payload = work, np.zeros(payload, np.float32)
    def produce(self):
        time.sleep(self.work)
        return self.payload

ray.init(num_cpus=64, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
         runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYMBRL_SITE", "src")}})
WORK = float(os.environ.get("WORK", "1.0"))
for n in [int(a) for a in sys.argv[1:]]:
    t0 = time.perf_counter()
    pool = ProducerPool(SleepWorker, lambda i, r: (WORK, int(os.environ.get("PAYLOAD", "4096"))), n, lambda i: ("produce", {}), inflight=2, num_cpus=1)
    for _ in range(2 * n):  # warm: every actor started
        pool.next()
    up = time.perf_counter() - t0
    settle = time.perf_counter()
    while time.perf_counter() - settle < float(os.environ.get("SETTLE", "10")):  # idle worker processes Ray prestarts
        pool.next()
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < 15.0:
        pool.next(); count += 1
    rate = count / (time.perf_counter() - start)
    ideal = n / WORK
    print(f"actors {n:3d}: {rate:7.1f} results/s, ideal {ideal:7.1f}, {100 * rate / ideal:5.1f}% (startup {up:.1f}s)", flush=True)
    pool.close()
ray.shutdown()
