"""Every command and code block of README.md runs here, so the README cannot drift from the code.

Each block is matched to a recipe by its first line, and each shell command by its text (without
its trailing comment). A recipe runs the text as written except for listed substitutions, which
shrink training budgets; a substitution whose text no longer occurs fails the test, and so does a
README block or command without a recipe (and a recipe whose block is gone). Commands that train
for hours run until their first progress and are then interrupted with SIGINT, which must stop them
cleanly (exit status 130) with nothing left running.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


@dataclass(frozen=True)
class Block:
    lang: str
    line: int  # of the first line of code
    text: str


def readme_blocks() -> list[Block]:
    blocks, lines = [], README.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            lang, start = lines[i][3:].strip(), i + 1
            i += 1
            while not lines[i].startswith("```"):
                i += 1
            blocks.append(Block(lang, start + 1, "\n".join(lines[start:i]) + "\n"))
        i += 1
    return blocks


def key(block: Block) -> str:
    """A python block's first line that imports from pymbrl (else its first line)."""
    lines = block.text.splitlines()
    return next((line for line in lines if line.startswith("from pymbrl")), lines[0])


def commands(block: Block) -> list[str]:
    """The shell commands of a bash block, each without its trailing comment."""
    out = []
    for line in block.text.splitlines():
        command = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if command:
            out.append(command)
    return out


@dataclass(frozen=True)
class Run:
    """Run to the end (status 0), after the substitutions."""
    subs: tuple[tuple[str, str], ...] = ()
    timeout: float = 300


@dataclass(frozen=True)
class Smoke:
    """Runs for ``seconds`` (or until ``until`` appears in its output), then SIGINT: it must exit with
    130 (or 0 if it finished first) and leave no child process."""
    seconds: float = 20
    until: str | None = None


@dataclass(frozen=True)
class Refused:
    """Run on its own, without the artefacts of the commands before it: a usage error (status 2)
    whose message contains ``match``, with no traceback."""
    match: str


@dataclass(frozen=True)
class Skip:
    reason: str


@dataclass(frozen=True)
class Python:
    """Executes the block (after the substitutions) in a fresh namespace in a temporary directory."""
    subs: tuple[tuple[str, str], ...] = ()
    needs: tuple[str, ...] = field(default=())  # modules the block imports beyond the test dependencies
    timeout: float = 300
    after: str | None = None  # the key of an earlier block whose names this one continues with


def substitute(text: str, subs: tuple[tuple[str, str], ...], where: str) -> str:
    for old, new in subs:
        assert text.count(old) == 1, f"{where}: the recipe's substitution {old!r} no longer matches the README"
        text = text.replace(old, new)
    return text


# Shell commands, by their text in the README.
COMMANDS: dict[str, Run | Smoke | Refused | Skip] = {
    "make demo": Run((("make demo", "make demo DEMO_ARGS='--quick --out build/demo-test'"),), timeout=900),
    "pymbrl bench mcts": Run((("pymbrl bench mcts", "pymbrl bench mcts --quick"),)),
    "make test": Skip("this test runs inside make test"),
    "pip install pymbrl": Skip("installs from the package index; make test-install installs the wheel in fresh "
                               "venvs and checks that the core pulls only numpy beside torch"),
    'pip install "pymbrl[agents]"': Skip("installs from the package index; the test venv has the wheel with "
                                         "its test extra, which includes agents"),
    "pymbrl demo": Run((("pymbrl demo", "pymbrl demo --quick"),)),
    "pymbrl train sac --env Pendulum-v1 --steps 3000 --set learning_starts=500": Run(
        (("--steps 3000 --set learning_starts=500", "--steps 600 --set learning_starts=300 --set hidden=32 "
          "--set eval_every=300 --set eval_episodes=1"),)),
    "pymbrl train sac --run-dir runs/sac-Pendulum-v1-seed0 --steps 4000": Run((("--steps 4000", "--steps 700"),)),
    "pymbrl play sac --run-dir runs/sac-Pendulum-v1-seed0 --episodes 5 --video sac.gif": Run((("--episodes 5", "--episodes 1"),)),
    "pymbrl train mbpo --help": Run(),
    "tensorboard --logdir runs": Skip("a web server that runs until stopped; the event files it reads are tested in "
                                      "tests/training/test_run.py"),
    "pymbrl train mbpo --env Pendulum-v1 --steps 10000 --seed 0":
        Run((("--steps 10000", "--steps 1050 --set eval_every=1050 --set eval_episodes=1"),)),
    "pymbrl train sac --env Pendulum-v1 --steps 10000 --seed 0":
        Run((("--steps 10000", "--steps 1200 --set eval_every=600 --set eval_episodes=1"),)),
    "pymbrl train muzero --env CartPole-v1":
        Run((("CartPole-v1", "CartPole-v1 --steps 1200 --set eval_every=1200 --set eval_episodes=2"),)),
    "pymbrl train muzero --env TicTacToe":
        Run((("TicTacToe", "TicTacToe --steps 1200 --set eval_every=1200 --set eval_episodes=2"),)),
    "pymbrl play muzero --run-dir runs/muzero-CartPole-v1-seed0 --episodes 20": Run((("--episodes 20", "--episodes 2"),)),
    "pymbrl train dreamer --env CartPole-v1":
        Run((("CartPole-v1", "CartPole-v1 --steps 1100 --set eval_every=1100 --set eval_episodes=1"),)),
    "pymbrl train muzero --env CartPole-v1 --actors 2":
        Run((("--actors 2", "--actors 2 --steps 800 --set num_envs=4 --set eval_every=800 --set eval_episodes=2"),)),
    "pymbrl train world-models --env VizdoomTakeCover-v1 --actors 2": Smoke(seconds=40),
    "ray start --head --num-cpus 4": Skip("starts cluster daemons on this machine; a cluster that outlives the driver "
                                          "(--ray-address) is tested in tests/distributed"),
    "ray start --address HEAD_IP:6379 --num-cpus 4": Skip("needs a head node"),
    "pymbrl train muzero --env CartPole-v1 --actors 8 --set eval_actors=1 --ray-address HEAD_IP:6379":
        Skip("needs a cluster of 9 CPUs; the same run on a simulated cluster is tested in tests/distributed"),
    "pip install vizdoom": Skip("installs a package into the environment"),
    "pymbrl train world-models --env VizdoomTakeCover-v1": Smoke(),
    "pymbrl train world-models --env VizdoomTakeCover-v1 --set iterations=2": Smoke(),
    "pymbrl train world-models --env VizdoomTakeCover-v1 --stages controller --set tau=0.1": Refused("run the vae and mdn stages"),
    "pymbrl train i2a --env MiniPacman-regular": Smoke(),
    "pymbrl train i2a --stages env-model distill": Smoke(),
    "pymbrl train i2a --stages agent --set agent=a2c --seed 1": Smoke(),
    "pymbrl train i2a --stages agent --set online_distill=true": Refused("run the env-model stage"),
    "python examples/i2a_minipacman.py model": Smoke(),
    "python examples/i2a_minipacman.py train --agents i2a a2c copy --seeds 0 1 2 --frames 200000": Run(),
    "python examples/i2a_minipacman.py report": Run(),
}
# Commands that need the run another command makes, run first in the same directory.
NEEDS = {
    "pymbrl play muzero --run-dir runs/muzero-CartPole-v1-seed0 --episodes 20": "pymbrl train muzero --env CartPole-v1",
    "pymbrl train sac --run-dir runs/sac-Pendulum-v1-seed0 --steps 4000":
        "pymbrl train sac --env Pendulum-v1 --steps 3000 --set learning_starts=500",
    "pymbrl play sac --run-dir runs/sac-Pendulum-v1-seed0 --episodes 5 --video sac.gif":
        "pymbrl train sac --env Pendulum-v1 --steps 3000 --set learning_starts=500",
}

# Python blocks, by their first line that imports from pymbrl.
PYTHON: dict[str, Python | Skip] = {
    "from pymbrl import agents": Python(),
    "from pymbrl import dyna": Python(),
    "from pymbrl.replay import ReplayBuffer, PrioritizedReplayBuffer, SequenceReplayBuffer": Python(),
    "from pymbrl import mcts": Python(),
    "C = 8                                                  # chance outcomes": Python(after="from pymbrl import mcts"),
    "from pymbrl.agents import mbpo": Python(
        subs=(('steps=15_000)', 'steps=300, init_steps=250, rollout_batch_size=1000, updates_per_step=1, '
               'model_hidden=32, model_layers=2, eval_every=300, eval_episodes=1)'),
              ("range(2000)", "range(400)"), ("ModelTrainer(model, seed=0)", "ModelTrainer(model, seed=0, max_epochs=3)")),
        needs=("mujoco",)),
    "from pymbrl.agents import muzero": Python(subs=(("40_000", "1_100"), ("episodes=5", "episodes=1"))),
    "from pymbrl.agents import dreamer": Python(subs=(('steps=20_000)', 'steps=400, learning_starts=300, train_ratio=8, '
                                                      'eval_every=400, eval_episodes=1)'),)),
    "from pymbrl.agents import world_models as wm": Python(
        subs=(('config = wm.WorldModelsConfig.for_env("VizdoomTakeCover-v1")',
               'import dataclasses; config = dataclasses.replace(wm.WorldModelsConfig.for_env("VizdoomTakeCover-v1"), '
               'rollouts=4, vae_rollouts=4, vae_epochs=1, rnn_epochs=1, generations=1, popsize=4, trials=1, '
               'eval_episodes=1, max_steps=100)'),
              ("torch.randn(64, ", "torch.randn(4, "), ("trials=16, tau", "trials=2, max_steps=100, tau")),
        needs=("vizdoom",)),
    "from pymbrl.agents import i2a, i2a_stages": Python(subs=(("5_000", "100"), ("epochs=10", "epochs=1"),
                                                               ("steps=200_000", "steps=160, num_envs=4"))),
}

# Blocks that are neither (the layout tree), by their first line.
NOT_CODE = {"src/cpp/pymbrl/       C++ core: torch-free, Python-free, one concept per header"}


def test_every_block_and_command_has_a_recipe():
    blocks = readme_blocks()
    seen_commands, seen_python = set(), set()
    for block in blocks:
        first = key(block)
        if block.lang == "bash":
            for command in commands(block):
                assert command in COMMANDS, f"README.md:{block.line}: no recipe for the command {command!r}"
                seen_commands.add(command)
        elif block.lang == "python":
            assert first in PYTHON, f"README.md:{block.line}: no recipe for the python block starting {first!r}"
            seen_python.add(first)
        else:
            assert first in NOT_CODE, f"README.md:{block.line}: a {block.lang or 'plain'} block that is not known"
    assert set(COMMANDS) == seen_commands, f"recipes for commands no longer in the README: {set(COMMANDS) - seen_commands}"
    assert set(PYTHON) == seen_python, f"recipes for blocks no longer in the README: {set(PYTHON) - seen_python}"


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command's name (state, parent, ...); None once the
    process is gone."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    """Every live descendant of ``pid``."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(entry.name)) is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@pytest.fixture
def workdir(tmp_path):
    """A scratch copy of examples/ (the example scripts write beside themselves) as the cwd."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    return tmp_path


def _argv(command: str) -> list[str]:
    argv = shlex.split(command)
    if argv[0] == "pymbrl":
        return [sys.executable, "-m", "pymbrl.cli", *argv[1:]]
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    return argv


def _run_to_end(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """Runs ``argv`` in a session of its own; past ``timeout`` the whole session is killed (not only
    its first process, whose env workers would be left running) and the test fails."""
    process = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"{' '.join(argv)}: still running after {timeout} s\n{out[-2000:]}\n{err[-3000:]}")
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def _run_command(command: str, recipe: Run | Smoke | Refused, cwd: Path) -> None:
    if command.startswith("make "):
        if not os.environ.get("PYMBRL_EXPECT_INSTALLED"):
            pytest.skip("make targets run from make test only")
        cwd = ROOT
    if isinstance(recipe, Refused):
        done = _run_to_end(_argv(command), cwd, 300)
        assert done.returncode == 2 and recipe.match in done.stderr and "Traceback" not in done.stderr, \
            f"{command}: status {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return
    if isinstance(recipe, Run):
        text = substitute(command, recipe.subs, command)
        done = _run_to_end(_argv(text), cwd, recipe.timeout)
        assert done.returncode == 0, f"{text}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return
    process = subprocess.Popen(_argv(command), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + recipe.seconds
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        descendants = {pid: _command_line(pid) for pid in _children(process.pid)}
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode in (0, 130), f"{command}: status {process.returncode}\n{out[-3000:]}"
    # Ray's processes stop their workers once the driver is gone, and those workers' env processes
    # and games follow, so they may end a few seconds after it: a process still running 30 s later
    # is left behind (as ViZDoom's games were, orphaned by Ray's SIGKILL of the env processes,
    # before those had guards), one ending sooner is not.
    deadline, left = time.monotonic() + 30, descendants
    while (left := [pid for pid in left if _running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    named = {pid: f"{_command_line(pid)} ({(_stat(pid) or ['gone'])[0]}, was {descendants[pid]})" for pid in left}
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"{command}: processes left running 30 s after SIGINT: {named}"


def _command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:160]
    except OSError:
        return "?"


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_readme_command(command, workdir):
    recipe = COMMANDS[command]
    if isinstance(recipe, Skip):
        pytest.skip(recipe.reason)
    if command in NEEDS:
        _run_command(NEEDS[command], COMMANDS[NEEDS[command]], workdir)
    _run_command(command, recipe, workdir)


@pytest.mark.parametrize("first", list(PYTHON))
def test_readme_python_block(first, workdir):
    recipe = PYTHON[first]
    if isinstance(recipe, Skip):
        pytest.skip(recipe.reason)
    for module in recipe.needs:
        pytest.importorskip(module)
    blocks = {key(b): b for b in readme_blocks() if b.lang == "python"}
    block = blocks[first]
    chain = [block]
    while getattr(PYTHON[key(chain[0])], "after", None) is not None:
        chain.insert(0, blocks[PYTHON[key(chain[0])].after])
    # In a process of its own (a block may change torch's global state), each block padded so that
    # the line numbers of a traceback are the README's.
    script, code = workdir / "README_block.py", ""
    for part in chain:
        assert part.line > code.count("\n"), f"README.md:{block.line}: continues a block that comes after it"
        code += "\n" * (part.line - 1 - code.count("\n")) + part.text
    code = substitute(code, recipe.subs, f"README.md:{block.line}")
    script.write_text(code)
    done = _run_to_end([sys.executable, str(script)], workdir, recipe.timeout)
    assert done.returncode == 0, f"README.md:{block.line}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"


def test_every_link_works_on_an_index_page():
    """PyPI shows the README without the repository around it: a link is a web address or an anchor
    of the README, and a web address into the repository names a file or folder that exists."""
    text = README.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", text, re.M)}
    for link in links:
        if link.startswith("#"):
            assert link[1:] in anchors, f"{link}: no such heading in the README"
            continue
        assert link.startswith("https://"), f"{link}: a relative link breaks on an index page"
        for prefix in ("https://github.com/pymbrl/pymbrl/blob/main/", "https://raw.githubusercontent.com/pymbrl/pymbrl/main/"):
            if link.startswith(prefix):
                path = link[len(prefix):].split("#")[0]
                assert (ROOT / path).exists(), f"{link}: {path} is not in the repository"
