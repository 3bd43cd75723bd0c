"""``pymbrl.bench.replay`` and ``pymbrl bench replay``: its settings' checks, its labels, and the
command as a user runs it (peers missing here are reported as skipped)."""

from __future__ import annotations

import importlib.util
import re

import pytest
import torch

from pymbrl import cli
from pymbrl.bench import replay
from pymbrl.bench.replay import CASES, QUICK, USER_QUICK, Settings, label

from .table import cells


@pytest.mark.parametrize("kwargs, message", [
    ({"libs": ("pymbrl", "reverb")}, "libs: expected a non-empty subset"),
    ({"blocks": 0}, "blocks: expected an integer >= 1, got 0"),
    ({"capacity": 150_000, "add1_calls": 100, "batch_calls": 10}, "capacity: expected a multiple of 100,000"),
    ({"capacity": 100_000}, "add1_calls: expected add1_warmup + add1_calls <= capacity"),
    ({"batch_calls": 200}, "batch_calls: expected (1 + blocks) x batch_calls x 256 <= capacity"),
    ({"steady_add1": 1_000, "steady_blocks": 2}, "steady_add1: expected (steady_blocks + 1) x"),
    ({"atari_capacity": 1_000}, "atari_add1: expected at most atari_capacity"),
])
def test_settings_name_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Settings(**kwargs)


def test_labels_give_the_capacities_of_the_run():
    assert label("add1", Settings()) == "add 1 transition (cap 1M)"
    assert label("seq_big", Settings()) == "sequence sample [16, 64], cap 10M"
    assert label("seq_big", Settings(**QUICK)) == "sequence sample [16, 64], cap 1M"
    assert label("atari_mem", USER_QUICK) == "Atari 84x84 uint8, cap 10k: memory (RSS growth)"


def test_the_replay_benchmark_refuses_a_device_other_than_the_cpu():
    with pytest.raises(ValueError, match="device: the replay benchmark times buffers in host memory"):
        replay.user_settings(torch.device("cuda"), quick=True)


def test_pymbrl_bench_replay_quick_prints_pymbrl_times_and_names_missing_peers(capsys):
    assert cli.main(["bench", "replay", "--quick"]) == 0
    out = capsys.readouterr().out
    for case in CASES:
        row = cells(out, "case ", re.escape(label(case, USER_QUICK)))
        assert float(row["pymbrl"].replace(",", "")) > 0, row
    assert "check failed" not in out and "WRONG" not in out
    for module, name, hint in (("cpprb", "cpprb", "pip install cpprb"),
                               ("stable_baselines3", "SB3", "pip install stable-baselines3"),
                               ("torchrl", "TorchRL", "pip install torchrl")):
        if importlib.util.find_spec(module) is None:
            assert f"{name}: skipped, not installed" in out and hint in out
