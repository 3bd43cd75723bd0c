"""``pymbrl demo``: the quick demo run as a user runs it (a subprocess of ``python -m pymbrl.cli``,
so the installed package under ``make test``), its agent played by ``pymbrl play``, Ctrl-C during
it, and its usage errors; and the search timing it reports, in process."""

from __future__ import annotations

import signal
import time

import pytest
from support import cli_process, run_cli, session

from pymbrl import cli, demo
from pymbrl.training import curves


def test_the_quick_demo_shows_the_search_the_agent_and_what_next_and_writes_the_plots(tmp_path):
    text = run_cli(tmp_path, ["demo", "--quick", "--out", "out"])
    assert "Traceback" not in text
    out = tmp_path / "out"
    # The search: a row per batch, with the ratio and the agreement of the two searches.
    # (An evaluation's line starts with its seconds, "1 s  env step ...", on a fast machine.)
    rows = [line.split() for line in text.splitlines() if line.strip().startswith(("1 ", "8 ")) and " s  " not in line]
    assert [row[0] for row in rows] == ["1", "8"] and all(row[3].endswith("x") and row[4] == "yes" for row in rows)
    assert "pure-Python one at 8 roots, with the same visit counts" in text
    # The agent: --quick says the target was not the point, and does not claim it was reached.
    assert "so the target is not the point" in text and "did NOT reach 475" in text
    run_dir = out / "muzero-CartPole-v1"
    assert [r["step"] for r in curves.read_log(run_dir / "log.csv")] == [demo.QUICK_STEPS]
    assert "the saved agent, loaded and played greedily: returns" in text
    # What next: the commands, and where the plots are.
    for command in (f"pymbrl play muzero --run-dir {run_dir.relative_to(tmp_path)}", "pymbrl dyna", "pymbrl list",
                    "pymbrl bench mcts", "make bench"):
        assert command in text, command
    for plot in (out / "search_speed.png", run_dir / "learning_curve.png"):
        assert plot.stat().st_size > 0 and str(plot.relative_to(tmp_path)) in text
    # The run directory is pymbrl train's: pymbrl play takes it.
    played = run_cli(tmp_path, ["play", "muzero", "--run-dir", str(run_dir.relative_to(tmp_path)), "--episodes", "1"])
    assert "MuZero on CartPole-v1: mean return" in played


def test_ctrl_c_during_the_demo_ends_it_with_one_line_and_no_process_left(tmp_path):
    # The whole demo, not --quick: its agent trains for seconds after "2/3", so the signal cannot
    # arrive after the end (the quick one's second part can be over before a loaded machine sends it).
    process, out = cli_process(["demo", "--out", "out"], tmp_path)
    try:
        deadline = time.monotonic() + 300
        while "2/3 An agent" not in out.read_text():
            assert process.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        status = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = out.read_text()
    assert status == 130, text
    assert "Traceback" not in text and text.rstrip().splitlines()[-1] == "interrupted", text
    assert session(process.pid) == []


@pytest.mark.parametrize("args, message", [
    (["--seed", "-1"], "--seed: expected an integer >= 0"),
    (["--out", "file.txt"], "--out: expected a directory, got the file"),
    (["--quick", "--out", "other"], "--out: "),  # a run directory of other settings
    (["--steps", "10"], "unrecognized arguments: --steps"),
])
def test_bad_arguments_exit_2_naming_the_argument_before_anything_runs(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.txt").write_text("")
    (tmp_path / "other" / "muzero-CartPole-v1").mkdir(parents=True)
    (tmp_path / "other" / "muzero-CartPole-v1" / "config.yaml").write_text("algorithm: muzero\nenv: CartPole-v1\n"
                                                                           "num_simulations: 3\n")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["demo", *args])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "pymbrl-demo").exists()


def test_the_search_timing_compares_the_same_search_both_ways():
    timing = demo.time_search(4, 12, seed=3)
    assert timing.agree and timing.core_rate > 0 and timing.reference_rate > 0
    boards = demo.tictactoe_positions(64, seed=3)
    moves = (boards != 0).sum(dim=1)
    assert int(moves.min()) == 0 and int(moves.max()) == 4  # 0 to 4 moves: varied roots, no game over
