"""pymbrl.training.stages: pipelines of stages that skip what is done, check a selection before
anything runs, repeat stages under one name, and keep their config.yaml (refusing a config that
changes what the artefacts depend on)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pymbrl.training import Callbacks, TrainConfig, read_config
from pymbrl.training.stages import Stage, check_stages, run_stages, start_pipeline


@dataclasses.dataclass(frozen=True)
class ToyConfig(TrainConfig):
    width: int = 4  # a size the artefacts depend on
    rate: float = 0.1  # a setting they do not depend on

    def identity(self):
        return {k: v for k, v in super().identity().items() if k in ("env", "width")}


class Stages(Callbacks):
    def __init__(self):
        self.started = []

    def on_stage(self, stage):
        self.started.append(stage)


def writer(name: str, ran: list[str]):
    """A stage that records that it ran and writes the artefact ``name``."""
    def run(run_dir: Path, callbacks: Callbacks) -> dict:
        ran.append(name)
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text(name)
        return {"made": name}
    return run


def test_stages_run_in_order_once_and_a_second_run_resumes(tmp_path):
    ran = []
    stages = [Stage("a", writer("a/x", ran), makes=("a/",)), Stage("b", writer("b.pt", ran), makes=("b.pt",),
                                                                   needs=("a/",)),
              Stage("c", writer("c.pt", ran), makes=("c.pt",), needs=("b.pt",))]
    callbacks = Stages()
    assert run_stages(tmp_path / "run", stages, callbacks=callbacks) == {n: {"made": m} for n, m in
                                                                       (("a", "a/x"), ("b", "b.pt"), ("c", "c.pt"))}
    assert ran == ["a/x", "b.pt", "c.pt"] and callbacks.started == ["a", "b", "c"]
    assert run_stages(tmp_path / "run", stages) == {} and len(ran) == 3
    (tmp_path / "run" / "b.pt").unlink()
    assert list(run_stages(tmp_path / "run", stages, ["b", "c"])) == ["b"] and ran[-1] == "b.pt"


def test_a_stage_without_artefacts_always_runs_and_complete_decides_where_given(tmp_path):
    ran = []
    count = {"n": 0}

    def add(run_dir, callbacks):
        count["n"] += 1
        return {}

    stages = [Stage("log", writer("log.txt", ran)), Stage("add", add, complete=lambda run_dir: count["n"] >= 2)]
    for _ in range(3):
        run_stages(tmp_path, stages)
    assert ran == ["log.txt"] * 3 and count["n"] == 2


def test_a_selection_is_checked_before_anything_runs(tmp_path):
    ran = []
    stages = [Stage("collect", writer("data/r", ran), makes=("data/",)),
              Stage("model", writer("model.pt", ran), makes=("model.pt",), needs=("data/",)),
              Stage("agent", writer("agent.pt", ran), makes=("agent.pt",), needs=("data/", "model.pt"))]
    for selected in (["bogus"], [], ["model", "bogus"]):
        with pytest.raises(ValueError, match=r"^stages: expected some of \['collect', 'model', 'agent'\]"):
            check_stages(tmp_path, stages, selected)
    with pytest.raises(ValueError, match=r"^stages: agent needs data/, model.pt in .*which are not there; run the "
                                         r"collect and model stages first"):
        run_stages(tmp_path, stages, ["agent"])
    with pytest.raises(ValueError, match=r"^stages: model needs data/ .*which is not there; run the collect stage"):
        run_stages(tmp_path, stages, ["model", "agent"])
    assert ran == [] and list(tmp_path.iterdir()) == []
    check_stages(tmp_path, stages, ["collect", "model", "agent"])  # each made by a stage selected before
    (tmp_path / "data").mkdir()
    with pytest.raises(ValueError, match="data/"):  # an empty folder is not the artefact
        check_stages(tmp_path, stages, ["model"])
    run_stages(tmp_path, stages, ["collect", "model"])
    # A stage that is done needs nothing: only what runs is checked.
    (tmp_path / "data" / "r").unlink()
    check_stages(tmp_path, stages, ["model"])
    with pytest.raises(ValueError, match="agent needs data/"):
        check_stages(tmp_path, stages, ["model", "agent"])


def test_a_repeated_stage_is_selected_by_its_name_in_every_round(tmp_path):
    ran = []
    stages = [Stage("collect", writer("data/0", ran), makes=("data/",)),
              Stage("train", writer("m0.pt", ran), makes=("m0.pt",), needs=("data/",)),
              Stage("collect", writer("data/1", ran), makes=(), needs=("m0.pt",),
                    complete=lambda run_dir: (run_dir / "data" / "1").exists()),
              Stage("train", writer("m1.pt", ran), makes=("m1.pt",), needs=("data/", "m0.pt"))]
    with pytest.raises(ValueError, match="^stages: collect needs m0.pt .*run the train stage first"):
        check_stages(tmp_path, stages, ["collect"])
    assert run_stages(tmp_path, stages, ["collect", "train"]) == {"collect": {"made": "data/1"},
                                                                  "train": {"made": "m1.pt"}}
    assert ran == ["data/0", "m0.pt", "data/1", "m1.pt"]
    (tmp_path / "m1.pt").unlink()
    run_stages(tmp_path, stages, ["train"])
    assert ran[-1] == "m1.pt" and len(ran) == 5


def test_start_pipeline_writes_the_config_and_refuses_one_that_changes_the_artefacts(tmp_path):
    run_dir = tmp_path / "run"
    config = ToyConfig(env="Pendulum-v1", width=8)
    assert start_pipeline(run_dir, "toy", config) == run_dir
    assert read_config(ToyConfig, run_dir / "config.yaml", "toy") == config
    # Another rate, seed or device: the same run directory, the config rewritten.
    changed = dataclasses.replace(config, rate=0.5, seed=3)
    start_pipeline(run_dir, "toy", changed)
    assert read_config(ToyConfig, run_dir / "config.yaml", "toy") == changed
    with pytest.raises(ValueError, match=r"^width: .* holds a run with width=8, whose artefacts depend on it, got 9"):
        start_pipeline(run_dir, "toy", dataclasses.replace(config, width=9))
    with pytest.raises(ValueError, match="^env: "):
        start_pipeline(run_dir, "toy", dataclasses.replace(config, env="CartPole-v1"))
    assert read_config(ToyConfig, run_dir / "config.yaml", "toy") == changed
    with pytest.raises(ValueError, match="algorithm: the file is a config of 'toy', not 'other'"):
        start_pipeline(run_dir, "other", config)
    (run_dir / "config.yaml").write_bytes(b"\xff")
    with pytest.raises(ValueError, match=f"^{run_dir / 'config.yaml'}: "):
        start_pipeline(run_dir, "toy", config)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="^run_dir: expected a directory"):
        start_pipeline(tmp_path / "file", "toy", config)
