import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Small tensors on a few busy cores: intra-op threads only contend (a 2-core machine ran the
    # batched TicTacToe games 10x slower with torch's default of 2 threads).
    import torch

    torch.set_num_threads(1)
    # make test runs the suite against the installed wheel; catch a source-tree import early.
    if os.environ.get("PYMBRL_EXPECT_INSTALLED"):
        import pymbrl

        if "site-packages" not in pymbrl.__file__:
            raise pytest.UsageError(f"expected the installed pymbrl, imported {pymbrl.__file__}")
