"""Microbenchmarks against the libraries users would pick instead, run on the user's machine:
:mod:`pymbrl.bench.mcts` (batched MCTS against LightZero's compiled trees, mctx and a pure-Python
search), :mod:`pymbrl.bench.replay` (replay buffers against cpprb, Stable-Baselines3 and TorchRL)
and :mod:`pymbrl.bench.rollout` (MBPO's model rollouts against mbrl-lib and a per-state loop).

Each measures pymbrl and whichever peers are installed, reports the missing ones with how to get
them, and backs both ``pymbrl bench`` (``user_settings(device, quick)``, ``benchmark(settings)``)
and the repository's ``bench/`` scripts, which write the full reports.
"""
