"""The README's tour of pymbrl.mcts runs as written (with a small model standing in for the user's)."""

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
    code = re.search(r"```python\n(.*?)```", tour, re.S).group(1)
    B, A, D = 8, 5, 3
    weights = torch.randn(D, D), torch.randn(A, D), torch.randn(D, A)

    class Model:
        def recurrent(self, embedding, action):
            latent = torch.tanh(embedding @ weights[0] + weights[1][action])
            return latent, latent.sum(1), torch.full((B,), 0.9), latent @ weights[2], latent.mean(1)

    latent = torch.randn(B, D)
    names = {"logits": latent @ weights[2], "value": torch.zeros(B), "latent": latent, "model": Model(),
             "mask": torch.zeros(B, A, dtype=torch.bool), "next_root": None}
    names["mask"][:, 0] = True
    exec(compile(code.replace("next_root", "root"), "README.md", "exec"), names)
    out = names["out"]
    assert out.action.shape == (B,) and not bool((out.action == 0).all())
