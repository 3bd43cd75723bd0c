"""Records the golden runs of tests/agents/test_golden_runs.py: for every agent, a short seeded run
and every record it reported (``seconds`` dropped: it is wall time).

The records in golden_runs.json were made before issue 20's refactor, with the API of that time
(this script's first version, in the history of this file); the refactor reproduced them exactly.
Run it again only when an agent's behaviour changes on purpose, and say why in the commit:
    python tests/data/make_golden_runs.py [name ...]      (from the repository root)
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from golden_runs import RUNS, golden_config, record  # noqa: E402

OUT = Path(__file__).with_name("golden_runs.json")

if __name__ == "__main__":
    torch.set_num_threads(1)
    names = sys.argv[1:] or list(RUNS)
    golden = json.loads(OUT.read_text()) if OUT.exists() else {}
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            golden[name] = record(name, golden_config(name), Path(tmp) / "run")
        print(name, len(golden[name]), "records")
    OUT.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
