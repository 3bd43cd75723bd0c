"""MCTS tests: a pure-Python reference search (reference.py) and test models (tictactoe.py, hash_model.py)."""
