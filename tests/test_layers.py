"""pymbrl's layering, read from the source's syntax trees (nothing of pymbrl is imported).

(a) A module imports only modules of its own top-level subpackage or of a lower rank (:data:`RANKS`),
    wherever the import stands: at the top, inside a function, under ``if TYPE_CHECKING``. The
    package root's ``__init__.py`` is exempt: its re-exports are the public surface, not a layer.
(b) No private name (one leading underscore, not a dunder) is used outside the module that defines
    it: neither ``from pymbrl.x import _name`` (``_name`` not a module of its own) nor an attribute
    ``<expr>._name`` whose ``<expr>`` is not ``self``, ``cls`` or ``super()``, unless ``_name`` is
    defined in the module that reads it (a function, class, assignment or ``self._name = ...``
    there): then the reader is the owner.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

# A named tuple's documented API, which takes a leading underscore to keep clear of field names.
NAMEDTUPLE_API = {"_asdict", "_replace", "_fields", "_make", "_field_defaults"}

SRC = Path(__file__).resolve().parents[1] / "src" / "pymbrl"

RANKS = {
    "_core": 0, "_checks": 0, "_extras": 0, "_files": 0, "_host": 0,
    "envs": 1, "replay": 1, "dyna": 1, "mcts": 1,
    "models": 2, "tasks": 2,
    "rollout": 3,
    "training": 4, "bench": 4,
    "distributed": 5,
    "agents": 6,
    "demo": 7,
    "cli": 8,
    "__main__": 9,
}
"""Rank of each top-level part of pymbrl: a module may import from lower ranks and its own part."""


def module_name(path: Path, root: Path = SRC) -> str:
    """``pymbrl.envs.tictactoe`` for ``root/envs/tictactoe.py``, ``pymbrl.envs`` for its ``__init__.py``."""
    parts = ["pymbrl", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str, root: Path = SRC) -> bool:
    """Whether the dotted ``name`` (``pymbrl....``) is a module or package in ``root`` (or a part
    of :data:`RANKS`, such as the compiled ``_core``, which has no source file)."""
    parts = name.split(".")[1:]
    if len(parts) == 1 and parts[0] in RANKS:
        return True
    rel = Path(*parts) if parts else Path()
    return bool(parts) and ((root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file())


def resolve_from(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` reads from (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[:len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(tree: ast.AST, module: str, is_package: bool, root: Path = SRC) -> Iterator[tuple[int, str]]:
    """(line, imported pymbrl module) of every import in ``tree``, nested ones included; ``from X
    import n`` counts as importing ``X.n`` where that is a module, else ``X``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "pymbrl":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            source = resolve_from(node, module, is_package)
            if source.split(".")[0] != "pymbrl":
                continue
            for alias in node.names:
                target = f"{source}.{alias.name}"
                yield node.lineno, target if is_module(target, root) else source


def rank_of(module: str) -> tuple[str, int | None]:
    """(top-level part, its rank) of a pymbrl module; the root package is rank 0."""
    parts = module.split(".")
    if len(parts) == 1:
        return "pymbrl", 0
    return parts[1], RANKS.get(parts[1])


def layer_violations(source: str, module: str, is_package: bool = False, file: str = "<string>",
                     root: Path = SRC) -> list[str]:
    """What in ``source`` (the text of ``module``) imports upward or sideways, as ``file:line``
    messages naming the imported module."""
    own, own_rank = rank_of(module)
    if own_rank is None:
        return [f"{file}: {own} has no rank in RANKS"]
    out = []
    for line, target in imports(ast.parse(source), module, is_package, root):
        top, rank = rank_of(target)
        if top == own:
            continue
        if rank is None:
            out.append(f"{file}:{line} imports {target}, whose part {top} has no rank in RANKS")
        elif rank >= own_rank:
            out.append(f"{file}:{line} imports {target} (rank {rank}) from {own} (rank {own_rank}): "
                       f"only lower ranks or its own part")
    return out


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def defined_names(tree: ast.AST) -> set[str]:
    """Every name the module defines: functions, classes, parameters, assigned names and
    attributes (``self.x = ...``); not the names it imports."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def _is_self(expr: ast.expr) -> bool:
    return (isinstance(expr, ast.Name) and expr.id in ("self", "cls")) or \
        (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id == "super")


def private_uses(source: str, module: str, is_package: bool = False, root: Path = SRC) -> list[tuple[int, str]]:
    """(line, name) of every private name ``source`` (the text of ``module``) uses that another
    module owns."""
    tree = ast.parse(source)
    own = defined_names(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            src = resolve_from(node, module, is_package)
            if src.split(".")[0] != "pymbrl":
                continue
            out += [(node.lineno, a.name) for a in node.names
                    if _is_private(a.name) and not is_module(f"{src}.{a.name}", root)]
        elif isinstance(node, ast.Attribute) and _is_private(node.attr) and not _is_self(node.value) \
                and node.attr not in own and node.attr not in NAMEDTUPLE_API:
            out.append((node.lineno, node.attr))
    return out


def sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_every_module_imports_only_its_own_part_or_lower_ranks():
    errors = []
    for path in sources():
        if path == SRC / "__init__.py":
            continue
        errors += layer_violations(path.read_text(), module_name(path), path.name == "__init__.py",
                                   str(path.relative_to(SRC.parents[1])))
    assert not errors, "\n".join(errors)


def test_no_private_name_is_used_outside_its_module():
    errors = []
    for path in sources():
        rel = path.relative_to(SRC).as_posix()
        for line, name in private_uses(path.read_text(), module_name(path), path.name == "__init__.py"):
            errors.append(f"src/pymbrl/{rel}:{line} uses {name}, private to another module")
    assert not errors, "\n".join(errors)


# --------------------------------------------------------------------------------------------------
# The checks themselves fail on planted violations.

@pytest.mark.parametrize("module, source, expected", [
    ("pymbrl.envs.frames", "from pymbrl.models.rssm import IMAGE_SHAPE\n", "<string>:1 imports pymbrl.models.rssm"),
    ("pymbrl.envs.tictactoe", "def f():\n    from pymbrl.mcts.tree import Root\n", "<string>:2 imports pymbrl.mcts.tree"),
    ("pymbrl.models.x", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pymbrl.rollout\n",
     "<string>:3 imports pymbrl.rollout (rank 3)"),
    ("pymbrl.replay.game", "from pymbrl import agents\n", "<string>:1 imports pymbrl.agents"),
    ("pymbrl.rollout.x", "from ..training import run\n", "<string>:1 imports pymbrl.training"),
    ("pymbrl.tasks.x", "from pymbrl.zoo import y\n", "pymbrl.zoo, whose part zoo has no rank"),
])
def test_layer_check_refuses_upward_and_sideways_imports(module, source, expected):
    errors = layer_violations(source, module)
    assert len(errors) == 1 and expected in errors[0], errors


def test_layer_check_accepts_own_part_and_lower_ranks():
    source = ("from pymbrl import _core\nfrom pymbrl._checks import integer\nfrom pymbrl.envs.spaces import ActionCodec\n"
              "from pymbrl.models.world_models import MDNRNN\nfrom pymbrl.tasks import reward_fn\n"
              "from .dream import dream_step\nimport pymbrl\n")
    assert layer_violations(source, "pymbrl.rollout.dream_env") == []


@pytest.mark.parametrize("source, expected", [
    ("from pymbrl.replay.buffers import _write_file\n", [(1, "_write_file")]),
    ("from .rssm import _mlp as mlp\n", [(1, "_mlp")]),
    ("import torch\nx = torch.nn._reduction\n", [(2, "_reduction")]),
    ("from pymbrl.models import rssm\n\ndef f(model):\n    return rssm._mlp(model._hidden)\n", [(4, "_hidden"), (4, "_mlp")]),
])
def test_private_name_check_finds_planted_uses(source, expected):
    assert sorted(private_uses(source, "pymbrl.models.x")) == expected


def test_private_name_check_accepts_own_names_self_and_dunders():
    source = ("from pymbrl import _core\n\ndef _helper():\n    return 1\n\nclass A:\n    def __init__(self):\n"
              "        self._n = _helper()\n    def f(self, other: 'A'):\n        return self._n + other._n\n"
              "    @classmethod\n    def g(cls):\n        return cls._h, super()._i, A.__name__\n")
    assert private_uses(source, "pymbrl.replay.x") == []
