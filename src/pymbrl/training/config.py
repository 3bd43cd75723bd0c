"""Configs: one frozen dataclass per algorithm, the single source of its settings.

Every algorithm's config derives from :class:`TrainConfig` (the env, the seed, the device and the
budget of the run) and adds its own fields, each with the paper's default. A field's documentation
is the comment on its line or the string literal after it, so that ``pymbrl train ALGO --help`` and
:func:`describe` read it from the class rather than from a second copy. A config validates itself on
construction: a bad value raises ValueError or TypeError naming the field.

Configs are written and read as YAML or JSON (:func:`write_config`, :func:`read_config`), changed
with ``field=value`` strings (:func:`override`, the CLI's ``--set``), and given per-env presets by
:attr:`TrainConfig.PRESETS` (:meth:`TrainConfig.for_env`).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import math
import os
import re
import textwrap
import tokenize
import types
import typing
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pymbrl._checks import integer
from pymbrl._extras import optional_imports

C = TypeVar("C", bound="TrainConfig")

# Fields that do not make two runs different runs: a run continues with more steps, or on another device.
NOT_IDENTITY = ("steps", "device")
DEVICE = re.compile(r"cpu|cuda(:\d+)?|mps")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What every run has: its env, seed, device and budget. Algorithms add their fields."""

    env: str = ""  # gymnasium env id (empty: the algorithm's default env)
    seed: int = 0  # every random stream of the run is drawn from it
    device: str = "cpu"  # torch device of the networks: cpu, cuda, cuda:N or mps
    steps: int = 10_000  # env steps of the run; a finished run continues when given more
    eval_every: int = 1000  # env steps between evaluations
    eval_episodes: int = 5  # noise-free episodes per evaluation
    checkpoint_every: int = 1000  # env steps between checkpoints

    # Per-env presets: the changes to the defaults for an env id, or for every env whose id starts
    # with a key ending in "-" or "/" (a family), the longest key winning.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    DEFAULT_ENV: ClassVar[str] = "CartPole-v1"

    def __post_init__(self) -> None:
        if not isinstance(self.env, str):
            raise TypeError(f"env: expected a str (a gymnasium env id), got {self.env!r}")
        if not self.env:
            object.__setattr__(self, "env", self.DEFAULT_ENV)
        integer(self.seed, "seed", minimum=0)
        if self.seed >= 2**31:
            raise ValueError(f"seed: expected an integer in [0, 2**31), got {self.seed}")
        if not isinstance(self.device, str) or not DEVICE.fullmatch(self.device):
            raise ValueError(f"device: expected cpu, cuda, cuda:N or mps, got {self.device!r}")
        for name in ("steps", "eval_every", "eval_episodes", "checkpoint_every"):
            integer(getattr(self, name), name)

    @classmethod
    def for_env(cls: type[C], env: str, **changes: Any) -> C:
        """The defaults, then the preset of ``env`` (see :attr:`PRESETS`), then ``changes``."""
        return cls(**{**preset(cls, env), "env": env, **changes})

    def identity(self) -> dict[str, Any]:
        """The fields that make a run this run: all but ``steps`` and ``device``."""
        return {k: v for k, v in to_dict(self).items() if k not in NOT_IDENTITY}


def preset(cls: type[TrainConfig], env: str) -> dict[str, Any]:
    """The changes ``cls.PRESETS`` makes for ``env``: its own entry, else the longest family key
    (ending in "-" or "/") that ``env`` starts with; {} if none."""
    if env in cls.PRESETS:
        return dict(cls.PRESETS[env])
    families = [k for k in cls.PRESETS if k[-1:] in ("-", "/") and env.startswith(k)]
    return dict(cls.PRESETS[max(families, key=len)]) if families else {}


# --------------------------------------------------------------------------------------------------
# Fields, their types and their documentation


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """One (possibly nested, dotted) field of a config class."""

    name: str
    kind: Any  # the resolved annotation
    default: Any
    doc: str


def fields(cls: type) -> list[FieldInfo]:
    """Every field of the config class ``cls``, nested configs' fields under dotted names."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    defaults = cls()
    found = []
    for f in dataclasses.fields(cls):
        default = getattr(defaults, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            found += [dataclasses.replace(sub, name=f"{f.name}.{sub.name}") for sub in fields(hints[f.name])]
        else:
            found.append(FieldInfo(f.name, hints[f.name], default, docs.get(f.name, "")))
    return found


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's documentation from the source of ``cls`` and its bases: the comment on the line
    that declares it, and a string literal on the lines after it."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            lines, _ = inspect.getsourcelines(klass)
        except (OSError, TypeError):  # no source (e.g. a class made in a REPL)
            continue
        source = textwrap.dedent("".join(lines))
        comments = {tok.start[0]: tok.string.lstrip("# ").strip()
                    for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
        body = ast.parse(source).body[0].body
        for i, node in enumerate(body):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                text = comments.get(node.end_lineno, "")
                after = body[i + 1] if i + 1 < len(body) else None
                if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
                    text = " ".join(filter(None, [text, " ".join(after.value.value.split())]))
                docs[node.target.id] = text
    return docs


def describe(cls: type) -> str:
    """A table of every field of ``cls``: name, default and documentation (the CLI's help)."""
    rows = [(f.name, _show(f.default), f.doc) for f in fields(cls)]
    width = max(len(name) + len(default) for name, default, _ in rows) + 3
    lines = []
    for name, default, doc in rows:
        # Long documentation wraps under itself, so the defaults stay one column.
        wrapped = textwrap.wrap(doc, max(40, 100 - width)) or [""]
        lines.append(f"  {f'{name}={default}':<{width}} {wrapped[0]}".rstrip())
        lines += [f"  {'':<{width}} {more}" for more in wrapped[1:]]
    return "\n".join(lines)


def _show(value: Any) -> str:
    return json.dumps(_plain(value))


# --------------------------------------------------------------------------------------------------
# Plain values in and out


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain values (nested configs as dicts, tuples as lists), ready for YAML/JSON."""
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return to_dict(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def from_dict(cls: type[C], values: Mapping[str, Any], base: C | None = None, where: str = "", path: str = "") -> C:
    """``base`` (else the defaults of ``cls``, with the preset of ``values["env"]`` where ``cls`` has
    presets) with ``values`` (plain values, as :func:`to_dict` writes them) put in. Unknown fields,
    values of the wrong type and values the config refuses raise ValueError naming the field
    (prefixed by ``where``, e.g. the file; ``path`` is the dotted name of a nested config)."""
    prefix = f"{where}: " if where else ""
    if not isinstance(values, Mapping):
        raise ValueError(f"{prefix}{path.rstrip('.') + ': ' if path else ''}expected a mapping of {cls.__name__} "
                         f"fields, got {values!r:.100}")
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(hints) - {"algorithm"})
    if unknown:
        raise ValueError(f"{prefix}{path}{unknown[0]}: {cls.__name__} has no such field")
    if base is None:
        env = values.get("env", "")
        base = cls.for_env(env) if issubclass(cls, TrainConfig) and isinstance(env, str) and env else cls()
    changes = {}
    for name, value in values.items():
        if name == "algorithm":
            continue
        changes[name] = _typed(value, hints[name], getattr(base, name), f"{path}{name}", where)
    try:
        return dataclasses.replace(base, **changes)
    except (ValueError, TypeError) as error:
        raise type(error)(f"{prefix}{error}") from None


def _typed(value: Any, kind: Any, current: Any, name: str, where: str = "") -> Any:
    """``value`` as the annotation ``kind`` asks, or ValueError naming ``where`` and the field ``name``."""
    if where:
        try:
            return _typed(value, kind, current, name)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, Mapping):
            return _refuse(name, kind, value)
        return from_dict(kind, value, current, path=f"{name}.")
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _typed(value, option, current, name)
            except ValueError:
                pass
        return _refuse(name, kind, value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return _refuse(name, kind, value)
        if args and args[-1] is not Ellipsis and len(args) != len(value):
            raise ValueError(f"{name}: expected {len(args)} values, got {len(value)}")
        items = args[:1] * len(value) if args and args[-1] is Ellipsis else args or (Any,) * len(value)
        return tuple(_typed(v, k, None, name) for v, k in zip(value, items))
    if origin is typing.Literal:
        return value if value in args else _refuse(name, kind, value)
    if kind is Any:
        return value
    if kind is bool:
        return value if isinstance(value, bool) else _refuse(name, kind, value)
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return value if ok else _refuse(name, kind, value)
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # YAML 1.1 reads 3e-4 (no dot) as a string.
        if isinstance(value, str) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value.strip()):
            return float(value)
        return _refuse(name, kind, value)
    if kind is str:
        return value if isinstance(value, str) else _refuse(name, kind, value)
    return _refuse(name, kind, value)


def _refuse(name: str, kind: Any, value: Any) -> Any:
    shown = getattr(kind, "__name__", None) or str(kind).replace("typing.", "")
    raise ValueError(f"{name}: expected {shown}, got {value!r:.100}")


# --------------------------------------------------------------------------------------------------
# Files and --set


def override(config: C, assignments: Sequence[str]) -> C:
    """``config`` with each ``"field=value"`` (dotted for nested configs: ``model.deter=64``) put in;
    the value is read as YAML (``32``, ``3e-4``, ``true``, ``null``, ``[1, 15, 1, 1]``, ``text``).
    Raises ValueError naming the assignment for a malformed one, an unknown field or a bad value."""
    return from_dict(type(config), parse_assignments(assignments), config)


def parse_assignments(assignments: Sequence[str]) -> dict[str, Any]:
    """``"field=value"`` strings as the nested mapping :func:`from_dict` takes (see :func:`override`)."""
    with optional_imports():
        import yaml

    values: dict[str, Any] = {}
    for text in assignments:
        name, sep, raw = text.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"{text!r}: expected field=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as error:
            raise ValueError(f"{name}: {raw!r} is not a value ({str(error).splitlines()[0]})") from None
        *parents, leaf = name.split(".")
        node = values
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{name}: {part} is set to a value and to fields")
        node[leaf] = value
    return values


def write_config(config: Any, path: str | os.PathLike, algorithm: str | None = None) -> None:
    """Writes ``config`` to ``path`` as YAML (``.yaml``/``.yml``) or JSON (``.json``), crash-safely,
    with ``algorithm`` as its first key when given."""
    from pymbrl import _files

    path = Path(path)
    values = {**({"algorithm": algorithm} if algorithm else {}), **to_dict(config)}
    if path.suffix == ".json":
        text = json.dumps(values, indent=2) + "\n"
    elif path.suffix in (".yaml", ".yml"):
        with optional_imports():
            import yaml

        text = yaml.safe_dump(values, sort_keys=False)
    else:
        raise ValueError(f"{path}: expected a .yaml, .yml or .json file")
    _files.atomic_write(path, lambda f: f.write(text.encode()))


MAX_CONFIG_BYTES = 1 << 20


def read_values(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a YAML or JSON config file; ValueError naming the file if it is not one."""
    with optional_imports():
        import yaml

    path = Path(path)
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ValueError(f"{path}: expected a config file of at most {MAX_CONFIG_BYTES} bytes")
        text = path.read_text()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a readable text file ({error})") from None
    try:
        # safe_load builds plain values only (JSON is YAML): nothing in the file is run.
        values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} "
                         f"({str(error).splitlines()[0]})") from None
    if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
        raise ValueError(f"{path}: expected a mapping of config fields, got {type(values).__name__}")
    _check_finite(values, str(path))
    return values


def _check_finite(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: expected finite numbers, got {value}")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{where}: {k}")
    if isinstance(value, list):
        for v in value:
            _check_finite(v, where)


def read_config(cls: type[C], path: str | os.PathLike, algorithm: str | None = None, base: C | None = None) -> C:
    """The config of class ``cls`` in ``path`` (YAML or JSON), over ``base`` (else the defaults and
    the file env's preset). A file naming another ``algorithm`` is refused."""
    values = read_values(path)
    named = values.get("algorithm")
    if algorithm is not None and named is not None and named != algorithm:
        raise ValueError(f"{path}: algorithm: the file is a config of {named!r}, not {algorithm!r}")
    return from_dict(cls, values, base, str(path))

