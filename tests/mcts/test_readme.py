"""The README's tour of pymbrl.mcts runs as written (it defines its own stand-in network)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_tour_runs():
    if not README.exists():
        pytest.skip("README.md is not beside the tests")
    text = README.read_text()
    tour = text[text.index("## A tour of `pymbrl.mcts`"):]
    tour = tour[:tour.index("\n## ", 1)]
    first, second = re.findall(r"```python\n(.*?)```", tour, re.S)
    names: dict = {}
    grad = torch.is_grad_enabled()
    try:
        exec(compile(first, "README.md", "exec"), names)
        out, B, A = names["out"], names["B"], names["A"]
        assert out.action.shape == (B,) and out.action_weights.shape == (B, A)
        assert torch.isfinite(out.action_weights).all()
        assert (out.search_tree.summary().visit_counts.sum(dim=1) >= 50).all()
        exec(compile(second, "README.md", "exec"), names)  # continues with the first block's names
    finally:
        torch.set_grad_enabled(grad)  # the tour switches gradients off for the whole process
    out, reused, sampled = names["out"], names["reused"], names["sampled"]
    assert out.action_weights.shape == (B, A) and torch.allclose(out.action_weights.sum(1), torch.ones(B))
    assert reused.kept.shape == (B,)
    assert sampled.action.shape == (B, 2) and sampled.sampled_actions.shape == (B, 20, 2)
    assert sampled.action_weights.shape == (B, 20) and torch.allclose(sampled.action_weights.sum(1), torch.ones(B))
