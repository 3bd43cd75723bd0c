"""MCTS tests: the C++ search against the pure-Python references (pymbrl.mcts.reference; for Stochastic
and Sampled MuZero, reference_stochastic.py and reference_sampled.py here), with test models (tictactoe.py,
hash_model.py)."""
