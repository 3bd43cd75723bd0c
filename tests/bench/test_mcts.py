"""``pymbrl.bench.mcts`` and ``pymbrl bench mcts``: the measurement on tiny searches, its settings'
checks, and the command as a user runs it (peers missing here are reported as skipped)."""

from __future__ import annotations

import importlib.util
import re

import pytest
import torch

from pymbrl import cli
from pymbrl.bench import mcts
from pymbrl.bench.mcts import NA, POLICIES, PYMBRL, PYMBRL1, Bench, Cell, Settings

from .table import cells


def test_a_small_run_times_every_search_and_checks_its_trees():
    bench = Bench(Settings(libs=(PYMBRL1, "Python"), models=("flat",), simulations=(4,), repeats={4: 2}))
    bench.run()
    for policy in POLICIES:
        results = bench.results[("flat", policy, 4)]
        assert isinstance(results[PYMBRL1], Cell) and len(results[PYMBRL1].total) == 2
        assert results[PYMBRL1].rate() > 0
        assert isinstance(results["Python"], Cell) if policy == "muzero" else results["Python"] == NA
    assert len(bench.checks) == len(POLICIES) + 1 and all("root visits ok" in c for c in bench.checks), bench.checks
    mean, batch_max, deepest = bench.depths[("flat", "muzero", 4)]
    assert 1 <= mean <= batch_max <= deepest <= 4
    assert set(bench.depths) == {("flat", "muzero", 4), ("flat", "gumbel", 4)}


@pytest.mark.parametrize("kwargs, message", [
    ({"libs": ("pymbrl", "acme")}, "libs: expected a non-empty subset"),
    ({"models": ()}, "models: expected a non-empty subset"),
    ({"policies": ("alphazero",)}, "policies: expected a non-empty subset"),
    ({"simulations": (0,), "repeats": {0: 1}}, "simulations: expected integers >= 1"),
    ({"simulations": (8,)}, "repeats: expected an integer >= 1 for each of [8]"),
    ({"repeats": {50: 0, 200: 1}}, "repeats: expected an integer >= 1"),
    ({"device": torch.device("meta")}, "depths: measured on the CPU only"),
])
def test_settings_name_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Settings(**kwargs)


def test_pymbrl_bench_mcts_quick_prints_pymbrl_rates_and_names_missing_peers(capsys):
    assert cli.main(["bench", "mcts", "--quick"]) == 0
    out = capsys.readouterr().out
    for name in POLICIES.values():
        row = cells(out, "model ", rf"peaked\s+{name} S={mcts.USER_SIMULATIONS}\s")
        for lib in (PYMBRL, PYMBRL1):
            assert float(row[lib].replace(",", "")) > 0, row
        # The Python search runs MuZero only, and it is always there to compare with.
        assert (row[f"{PYMBRL} / Python"].endswith("x") if name == "MuZero" else row["Python"] == NA), row
    assert "check failed" not in out
    if importlib.util.find_spec("lzero") is None:
        assert "LightZero: skipped, not installed" in out and "pip download LightZero" in out
    if importlib.util.find_spec("mctx") is None:
        assert "mctx: skipped, not installed" in out and "pip install mctx" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_pymbrl_bench_on_cuda_without_cuda_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", "mcts", "--device", "cuda"])
    assert exit_.value.code == 2
    assert "--device: 'cuda' asks for CUDA, which is not available on this machine" in capsys.readouterr().err
