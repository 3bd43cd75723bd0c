import json
import os
import sys

import numpy as np
import pytest

DATA = os.path.join(os.path.dirname(__file__), os.pardir, "data")
sys.path.insert(0, DATA)
from make_golden import run_case  # noqa: E402

with open(os.path.join(DATA, "dyna_golden.json")) as f:
    GOLDEN = json.load(f)


@pytest.mark.parametrize("expected", GOLDEN, ids=lambda c: f"{c['kind']}-{c['model']}-{c['mdp']}")
def test_seeded_runs_match_the_stored_golden_results(expected):
    got = run_case(expected["kind"], expected["model"], expected["mdp"])
    assert got["episode_steps"] == expected["episode_steps"]
    np.testing.assert_allclose(got["q"], expected["q"], rtol=1e-9, atol=1e-12)
