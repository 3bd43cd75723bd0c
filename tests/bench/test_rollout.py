"""``pymbrl.bench.rollout`` and ``pymbrl bench rollout``: its settings' checks and the command as a
user runs it (mbrl-lib, missing here, is reported as skipped)."""

from __future__ import annotations

import importlib.util
import re

import pytest

from pymbrl import cli
from pymbrl.bench.rollout import HORIZONS, PYMBRL, PYTHON, Settings

from .table import cells


@pytest.mark.parametrize("kwargs, message", [
    ({"libs": ("pymbrl", "dreamer")}, "libs: expected a non-empty subset"),
    ({"n": 1_001}, "n: expected a positive multiple of the 5 elites, got 1001"),
    ({"n": 100}, "loop_states: expected 2 to n (100), got 300"),
    ({"repeats": {1: 3, 5: 3}}, "repeats: expected an integer >= 1 for each of [1, 5, 15]"),
])
def test_settings_name_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Settings(**kwargs)


def test_pymbrl_bench_rollout_quick_prints_pymbrl_rates_and_names_missing_peers(capsys):
    assert cli.main(["bench", "rollout", "--quick"]) == 0
    out = capsys.readouterr().out
    for horizon in HORIZONS:
        row = cells(out, "H ", rf"{horizon}\s")
        assert float(row[PYMBRL].replace(",", "")) > 0, row
        assert row[f"{PYMBRL} / {PYTHON}"].endswith("x"), row
    # The loop runs the ensemble's own weights.
    assert f"{PYTHON}: max |difference| from pymbrl's member predictions on 1,000 start states: mean 0.0e+00" in out
    if importlib.util.find_spec("mbrl") is None:
        assert "mbrl-lib: skipped, not importable" in out and "pip install --no-deps mbrl==0.2.0" in out
