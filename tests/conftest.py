import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # make test runs the suite against the installed wheel; catch a source-tree import early.
    if os.environ.get("PYMBRL_EXPECT_INSTALLED"):
        import pymbrl

        if "site-packages" not in pymbrl.__file__:
            raise pytest.UsageError(f"expected the installed pymbrl, imported {pymbrl.__file__}")
