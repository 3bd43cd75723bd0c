"""The install smoke test itself: every part passes here, and a missing optional package skips only
the parts that need it (the torch-free venvs of make test-install rely on that)."""

import subprocess
import sys
from pathlib import Path

SMOKE = Path(__file__).with_name("smoke.py")
# Runs the script with torch made unimportable, as in a venv that never installed it.
WITHOUT_TORCH = ("import runpy, sys; sys.modules['torch'] = None; sys.argv = [sys.argv[1], *sys.argv[2:]]; "
                 "runpy.run_path(sys.argv[0], run_name='__main__')")


def run(*args: str, hide_torch: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", WITHOUT_TORCH, str(SMOKE)] if hide_torch else [sys.executable, str(SMOKE)]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120)


def test_every_part_runs_and_passes():
    result = run("--require", "import", "build_info", "dyna", "mcts", "replay")
    assert result.returncode == 0, result.stdout + result.stderr
    for part in ("import", "build_info", "dyna", "mcts", "replay"):
        assert f"  {part}: ok" in result.stdout


def test_without_torch_only_the_torch_parts_are_skipped_and_requiring_one_fails():
    result = run("--require", "build_info", "mcts", hide_torch=True)
    assert "  mcts: skipped, needs torch" in result.stdout
    assert "  replay: skipped, needs torch" in result.stdout
    assert "  import: ok" in result.stdout and "  build_info: ok" in result.stdout
    assert "FAILED" not in result.stdout
    assert result.stdout.rstrip().endswith("required but skipped: mcts") and result.returncode == 1
