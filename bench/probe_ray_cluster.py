import time, os
t0 = time.perf_counter()
import ray
from ray.cluster_utils import Cluster
t1 = time.perf_counter()
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
cluster.add_node(num_cpus=1)
cluster.add_node(num_cpus=1)
t2 = time.perf_counter()
ray.init(address=cluster.address, include_dashboard=False, logging_level="ERROR")
t3 = time.perf_counter()
print(f"import {t1-t0:.1f}s cluster(3 nodes) {t2-t1:.1f}s init {t3-t2:.1f}s", ray.cluster_resources())

@ray.remote(num_cpus=1)
class A:
    def node(self):
        return ray.get_runtime_context().get_node_id()
    def echo(self, x):
        return x

t4 = time.perf_counter()
actors = [A.remote() for _ in range(3)]
nodes = ray.get([a.node.remote() for a in actors])
t5 = time.perf_counter()
print(f"3 actors up {t5-t4:.1f}s on {len(set(nodes))} nodes")
import numpy as np
x = np.zeros(1000, np.float32)
t6 = time.perf_counter()
for _ in range(200):
    ray.get(actors[0].echo.remote(x))
t7 = time.perf_counter()
print(f"round trip {1000*(t7-t6)/200:.2f} ms")
ref = ray.put(np.zeros((1000, 1000), np.float32))
y = ray.get(ref)
print("get array writeable:", y.flags.writeable)
ray.kill(actors[1])
try:
    ray.get(actors[1].echo.remote(1))
except Exception as e:
    print("killed actor:", type(e).__name__)
ray.shutdown()
cluster.shutdown()
print("total", time.perf_counter() - t0)
