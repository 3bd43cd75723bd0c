"""Microbenchmarks against the libraries users would pick instead, run on the user's machine:
:mod:`pymbrl.bench.mcts` (LightZero's compiled trees, mctx, a pure-Python search). Each measures
pymbrl and whichever peers are installed, reports the missing ones with how to get them, and
backs both ``pymbrl bench`` and the repository's ``bench/`` scripts.
"""
