"""Configs: frozen, validated on construction naming the field, presets by env id and family,
YAML/JSON files that round-trip, ``field=value`` overrides typed by the annotations, and help read
from the fields' comments."""

from __future__ import annotations

import dataclasses
import json
from typing import ClassVar

import pytest

from pymbrl.training.config import (TrainConfig, describe, field_docs, fields, from_dict, override, read_config,
                                    to_dict, write_config)


@dataclasses.dataclass(frozen=True)
class Inner:
    width: int = 4  # units
    scale: float = 1.0


@dataclasses.dataclass(frozen=True)
class Example(TrainConfig):
    DEFAULT_ENV: ClassVar[str] = "Pendulum-v1"
    PRESETS: ClassVar[dict] = {"Hopper-": {"rate": 0.5}, "Hopper-v5": {"rate": 0.25}, "Ant-": {"window": (2, 3)}}

    rate: float = 1e-3  # the step size
    window: tuple[int, int] = (1, 1)
    """first and last; a string after the field documents it too"""
    limit: float | None = None  # None: no limit
    flag: bool = False
    inner: Inner = dataclasses.field(default_factory=Inner)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.rate > 0:
            raise ValueError(f"rate: expected a number > 0, got {self.rate}")


def test_the_default_env_and_presets_by_id_and_family():
    assert Example().env == "Pendulum-v1"
    assert Example.for_env("Hopper-v4").rate == 0.5  # the family
    assert Example.for_env("Hopper-v5").rate == 0.25  # its own entry wins
    assert Example.for_env("Ant-v5", rate=2.0).window == (2, 3) and Example.for_env("Ant-v5", rate=2.0).rate == 2.0
    assert Example.for_env("Walker2d-v5") == Example(env="Walker2d-v5")


def test_configs_are_frozen_and_validate_the_run_fields():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Example().rate = 2.0
    for name, value, message in (("seed", -1, "seed"), ("seed", 2**31, r"seed: expected an integer in \[0, 2\*\*31\)"),
                                 ("device", "gpu", "device: expected cpu"), ("steps", 0, "steps"),
                                 ("eval_every", 1.5, "eval_every"), ("env", 3, "env: expected a str"),
                                 ("rate", 0.0, "rate")):
        with pytest.raises((ValueError, TypeError), match=message):
            Example(**{name: value})


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_files_round_trip(tmp_path, suffix):
    config = Example(env="Ant-v5", seed=7, window=(3, 4), limit=2.5, flag=True, inner=Inner(width=9))
    path = tmp_path / f"config{suffix}"
    write_config(config, path, "example")
    assert read_config(Example, path, "example") == config
    text = path.read_text()
    assert "window" in text and ("algorithm: example" in text or json.loads(text)["algorithm"] == "example")
    with pytest.raises(ValueError, match="is a config of 'example', not 'other'"):
        read_config(Example, path, "other")


def test_from_dict_types_the_values_and_names_bad_fields():
    config = from_dict(Example, {"rate": 1, "window": [5, 6], "limit": None, "inner": {"scale": 2}})
    assert config.rate == 1.0 and isinstance(config.rate, float) and config.window == (5, 6)
    assert config.inner == Inner(scale=2.0)
    for values, message in (({"rate": "fast"}, "rate: expected float, got 'fast'"), ({"rate": True}, "rate: expected"),
                            ({"window": [1]}, "window: expected 2 values, got 1"), ({"seed": 1.5}, "seed: expected int"),
                            ({"nope": 1}, "nope: Example has no such field"), ({"inner": 3}, "inner: expected Inner"),
                            ({"inner": {"width": "x"}}, "inner.width: expected int"), ({"flag": 1}, "flag: expected bool"),
                            ({"rate": -1.0}, "rate: expected a number > 0")):
        with pytest.raises(ValueError, match=message):
            from_dict(Example, values, where="")


def test_override_reads_yaml_values_and_dotted_names():
    config = override(Example(), ["rate=3e-4", "window=[2, 9]", "limit=null", "flag=true", "inner.width=16",
                                  "env=Hopper-v5"])
    assert (config.rate, config.window, config.limit, config.flag, config.inner.width, config.env) == (
        3e-4, (2, 9), None, True, 16, "Hopper-v5")
    for bad, message in (("rate", "expected field=value"), ("=3", "expected field=value"),
                         ("window=[1", "window: '\\[1' is not a value"), ("inner=3", "inner: expected Inner"),
                         ("rate=1", None)):
        if message is None:
            override(Example(), [bad])
            continue
        with pytest.raises(ValueError, match=message):
            override(Example(), [bad])
    before = Example()
    with pytest.raises(ValueError):
        override(before, ["rate=-1"])
    assert before == Example()


def test_bad_files_are_refused_naming_them(tmp_path):
    for name, text, message in (("a.yaml", "rate: [", "not valid YAML"), ("a.json", "{", "not valid JSON"),
                                ("b.yaml", "- 1\n", "expected a mapping"), ("c.yaml", "rate: .inf\n", "finite"),
                                ("d.yaml", "!!python/object/apply:os.system ['true']\n", "not valid YAML")):
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ValueError, match=f"{path}: .*{message}"):
            read_config(Example, path)
    with pytest.raises(ValueError, match="no such file"):
        read_config(Example, tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="expected a .yaml, .yml or .json file"):
        write_config(Example(), tmp_path / "config.txt")


def test_help_is_read_from_the_fields():
    docs = field_docs(Example)
    assert docs["rate"] == "the step size" and docs["limit"] == "None: no limit"
    assert docs["window"] == "first and last; a string after the field documents it too"
    assert docs["seed"].startswith("every random stream")  # the base class's fields too
    names = [f.name for f in fields(Example)]
    assert names[:3] == ["env", "seed", "device"] and "inner.width" in names and "inner" not in names
    text = describe(Example)
    assert 'env="Pendulum-v1"' in text and "rate=0.001" in text and "inner.width=4" in text and "units" in text


def test_identity_leaves_out_steps_and_device_only():
    assert set(to_dict(Example())) - set(Example().identity()) == {"steps", "device"}
