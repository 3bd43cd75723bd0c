"""Small environments and perfect models used by the examples and tests.

tictactoe
    Batched TicTacToe as a two-player recurrent function for :mod:`pymbrl.mcts`.
termination
    When gymnasium's MuJoCo and classic-control tasks end, as functions of a (predicted) next state.
rewards
    The true rewards of the tasks whose reward is a function of observation and action.
"""
