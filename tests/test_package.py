import subprocess
import sys

import pymbrl
from pymbrl.cli import main


def test_build_info_describes_a_release_build():
    info = pymbrl.build_info()
    assert info["version"] == pymbrl.__version__
    assert info["build_type"] == "Release"
    assert "-O3" in info["flags"]
    assert "march=native" not in info["flags"]
    assert info["compiler"]
    assert info["hardware_threads"] >= 1


def test_importing_dyna_does_not_import_torch():
    # The tabular module is numpy-only; importing torch would add about a second to every CLI call.
    code = "import sys, pymbrl.dyna; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_dyna_prints_table_and_writes_plot(tmp_path, capsys):
    out = tmp_path / "maze.png"
    assert main(["dyna", "--seeds", "4", "--episodes", "12", "--planning", "0", "50", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "n=0" in text and "n=50" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_rejects_bad_arguments(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pymbrl.cli", "dyna", "--seeds", "0", "--out",
                             str(tmp_path / "x.png")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "seeds" in result.stderr


def test_hardware_threads_counts_only_the_cpus_this_process_may_use():
    """Thread defaults come from the CPUs the process is allowed (a container or taskset), not
    from the machine's count."""
    import os

    import pytest

    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    code = ("import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); import pymbrl; "
            "from pymbrl import mcts; print(pymbrl.build_info()['hardware_threads'], mcts.Tree(4096, 2, 2).num_threads)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "1"]


def test_every_results_section_is_inside_its_own_markers():
    """make bench rewrites each benchmark's section between its markers: a result written inside
    another's markers would be erased (the I2A learning results once sat in the Dreamer benchmark's)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "bench" / "RESULTS.md").read_text()
    sections = re.findall(r"<!-- (\S+):begin -->\n(.*?)<!-- \1:end -->", text, flags=re.S)
    assert sections and len(sections) == text.count(":begin -->") == text.count(":end -->")
    outside = re.sub(r"<!-- (\S+):begin -->\n.*?<!-- \1:end -->", "", text, flags=re.S)
    assert "\n## " not in outside, "a heading outside every section's markers"
    for name, body in sections:
        headings = re.findall(r"^## .*$", body, flags=re.M)
        assert len(headings) == 1, f"section {name}: expected one '## ' heading, got {headings}"
        assert body.lstrip().startswith("## "), f"section {name}: something before its heading"


def test_package_docstrings_name_every_subpackage():
    import pkgutil

    import pymbrl.agents

    public = [m.name for m in pkgutil.iter_modules(pymbrl.__path__) if not m.name.startswith("_") and m.name != "cli"]
    for name in public:
        assert f"\n{name}\n" in pymbrl.__doc__, f"pymbrl's docstring does not describe pymbrl.{name}"
    for name in pymbrl.agents.ALGORITHMS:
        assert f"\n{name.replace('-', '_')}\n" in pymbrl.agents.__doc__, name


def test_version_prints_the_version_and_how_the_core_was_built(capsys):
    import pytest

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    version, core = capsys.readouterr().out.splitlines()
    assert version == f"pymbrl {pymbrl.__version__}"
    info = pymbrl.build_info()
    assert core.startswith(f"core: {info['compiler']}, {info['build_type']}, ") and "-O3" in core


def test_the_wheel_has_its_license_markers_and_stubs():
    """The repaired wheel of make wheel (dist/): LICENSE and its metadata, the PEP 561 marker and
    the stubs of _core written at build time. The stubs are a package, pymbrl/_core/*.pyi, because
    _core has submodules (pymbrl._core.mcts, ...) that a single _core.pyi cannot describe."""
    import zipfile
    from pathlib import Path

    import pytest

    wheels = sorted((Path(__file__).resolve().parents[1] / "dist").glob("pymbrl-*.whl"))
    if not wheels:
        pytest.skip("no wheel in dist/ (make wheel builds one)")
    assert len(wheels) == 1, f"dist/ should hold one wheel, the repaired one: {wheels}"
    assert "manylinux" in wheels[0].name or "linux" not in wheels[0].name, f"not repaired: {wheels[0].name}"
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = wheel.read(f"{info}/METADATA").decode()
        assert f"{info}/licenses/LICENSE" in names
        assert "Apache License" in wheel.read(f"{info}/licenses/LICENSE").decode()
        assert "pymbrl/py.typed" in names
        stubs = {n.removeprefix("pymbrl/_core/"): wheel.read(n).decode() for n in names
                 if n.startswith("pymbrl/_core/") and n.endswith(".pyi")}
    assert "License-Expression: Apache-2.0" in metadata and "License-File: LICENSE" in metadata
    assert "Project-URL: Repository, https://github.com/pymbrl/pymbrl" in metadata
    assert set(stubs) == {"__init__.pyi", "dyna.pyi", "replay.pyi", "mcts.pyi", "envs.pyi"}
    assert "def build_info() -> dict" in stubs["__init__.pyi"]
    for module, classes in {"mcts.pyi": ("Search", "StochasticSearch"), "replay.pyi": ("Buffer", "GameBuffer"),
                            "dyna.pyi": ("TabularMDP", "Agent"), "envs.pyi": ("MiniPacman",)}.items():
        for name in classes:
            assert f"\nclass {name}:" in stubs[module], f"{module} does not describe {name}"


def test_release_wheels_are_tested_by_the_install_smoke_test():
    """Every cibuildwheel test command runs tests/install/smoke.py and requires only parts it has."""
    import runpy
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["cibuildwheel"]
    assert config["manylinux-x86_64-image"] == config["manylinux-aarch64-image"] == "manylinux_2_28"
    parts = set(runpy.run_path(str(root / "tests" / "install" / "smoke.py"))["PARTS"])
    commands = [config["test-command"]] + [o["test-command"] for o in config["overrides"] if "test-command" in o]
    for command in commands:
        assert command.startswith("python {project}/tests/install/smoke.py --require "), command
        required = command.split("--require ")[1].split()
        assert required and set(required) <= parts, f"{command}: unknown parts (the smoke test has {sorted(parts)})"
