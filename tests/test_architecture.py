"""The package's layers, and the one direction imports may flow (ARCHITECTURE.md draws the same).

A module may import from a lower layer, or from its own package; never upwards or sideways, so
that each layer can be read, tested and replaced without the ones above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "grader"

LAYERS: list[tuple[str, ...]] = [       # lowest first; names are grader's top-level modules and packages
    ("__init__", "errors"),
    ("programs",),
    ("sandbox",),
    ("assignment", "report"),
    ("grading", "exporters"),
    ("testkit", "terminal"),
    ("classwork", "distribution"),
    ("commands",),
    ("cli",),
    ("__main__",),
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def unit_of(module: str) -> str:
    """``grader.programs.ops`` -> ``programs``; ``grader`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        out.append((name, path))
    return out


def grader_imports(path: Path) -> list[tuple[int, str]]:
    """Every ``grader...`` module ``path`` imports, at any depth of the file (lazy imports too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "grader"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "grader":
            found += [(node.lineno, _imported_module(node.module, a.name)) for a in node.names]
    return found


def _imported_module(base: str, name: str) -> str:
    """``from grader.pkg import name``: ``grader.pkg.name`` where that is a module, else ``grader.pkg``."""
    candidate = PACKAGE.parent / f"{base}.{name}".replace(".", "/")
    return f"{base}.{name}" if candidate.is_dir() or candidate.with_suffix(".py").is_file() else base


def violations() -> list[str]:
    bad = []
    for name, path in modules():
        unit = unit_of(name)
        for line, target in grader_imports(path):
            to = unit_of(target)
            if to != unit and RANK[to] >= RANK[unit]:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target} "
                           f"({to}, layer {RANK[to]}) from layer {RANK[unit]} ({unit})")
    return bad


def test_every_module_has_a_layer() -> None:
    units = {unit_of(name) for name, _ in modules()}
    assert units <= set(RANK), f"give these a layer in LAYERS and ARCHITECTURE.md: {sorted(units - set(RANK))}"


def test_imports_flow_one_way() -> None:
    assert violations() == []


def test_the_check_sees_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule is not vacuous: a sandbox module importing the grading layer is reported."""
    fake = tmp_path / "grader"
    for name, path in modules():
        target = fake / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (fake / "sandbox" / "upward.py").write_text("from grader.grading.runner import grade\n", encoding="utf-8")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", fake)
    found = violations()
    assert len(found) == 1 and "grader/sandbox/upward.py:1 imports grader.grading.runner" in found[0], found


def test_architecture_md_names_every_layer() -> None:
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text(encoding="utf-8")
    missing = [name for name in RANK if not name.startswith("__") and f"`{name}" not in text]
    assert not missing, f"ARCHITECTURE.md does not name: {missing}"
