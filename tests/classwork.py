"""Shared by the batch and cluster tests: a small real assignment, a mixed class, report essences."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

from tests.buggy import variant_file, variant_names

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "reference" / "autograd.py"
TEMPLATE = ROOT / "student_template"
HOSTILE = ROOT / "tests" / "data" / "hostile"
LEAKY = ROOT / "tests" / "data" / "leaky" / "autograd.py"
SUITES = ROOT / "assignments" / "autograd-lab" / "tests"


def make_mini_assignment(folder: Path) -> Path:
    """autograd-lab with only its "ops" suites and short timeouts: real grading, in seconds."""
    root = folder / "autograd-lab"
    for visibility in ("public", "hidden"):
        (root / "tests" / visibility).mkdir(parents=True)
        for name in ("__init__.py", "test_ops.py"):
            shutil.copy(SUITES / visibility / name, root / "tests" / visibility / name)
    (root / "assignment.yaml").write_text(
        "name: autograd-lab\ntitle: Autograd From Scratch (ops only)\nmodule: autograd\n"
        f"required_files: [autograd.py]\nreference: {ROOT / 'reference'}\nseed: 20261122\n"
        "banned_imports: [torch]\nparts:\n  ops: {points: 22, title: Ops}\n"
        "timeouts: {import_s: 10, request_s: 3}\n", encoding="utf-8")
    return root


FAST_HOSTILE = ("exit_at_import", "exit_in_backward", "import_torch", "segfault", "noisy")


def make_mixed_class(folder: Path, buggy: int = 16) -> list[str]:
    """30 students: correct (3 ways, 2 of them identical), template, buggy, broken, hostile, leaky."""
    folder.mkdir(parents=True)
    (folder / "ref-dir").mkdir()
    shutil.copy(REFERENCE, folder / "ref-dir" / "autograd.py")
    shutil.copy(REFERENCE, folder / "ref-copy.py")
    with zipfile.ZipFile(folder / "ref-zip.zip", "w") as zf:
        zf.write(REFERENCE, "lab/autograd.py")
    shutil.copy(TEMPLATE / "autograd.py", folder / "template.py")
    shutil.copy(TEMPLATE / "autograd.ipynb", folder / "template-notebook.ipynb")
    for name in variant_names()[:buggy]:
        shutil.copy(variant_file(name), folder / f"bug-{name}.py")
    (folder / "broken-syntax.py").write_text("class Tensor(:\n    pass\n", encoding="utf-8")
    (folder / "broken-missing").mkdir()
    (folder / "broken-missing" / "tensor.py").write_text("x = 1\n", encoding="utf-8")
    (folder / "broken-zip.zip").write_bytes(b"PK\x03\x04 not a zip")
    for name in FAST_HOSTILE:
        shutil.copy(HOSTILE / name / "autograd.py", folder / f"hostile-{name}.py")
    shutil.copy(LEAKY, folder / "leaky.py")
    return sorted(p.stem for p in folder.iterdir())


_MEASURED = re.compile(r"\d+(?:[.,]\d+)*")
_DECISION = re.compile(r" \((?:verdict clear after|near the limit|all #|# rounds)[^)]*\)")
_TEMP_NAMES = re.compile(r"/(?:tmp|var/tmp)/[^\s'\":,)]+|grader-[a-z]+-[A-Za-z0-9_]{6,}")


def essence(report: Any) -> dict[str, Any]:
    """What must agree between two gradings of one submission: not timings, hosts or temp paths.

    A speed test's output quotes what it measured (milliseconds, ratios, rounds used): its numbers
    are masked, its words (and its status and score) must agree."""
    data = report.to_jsonable() if hasattr(report, "to_jsonable") else json.loads(Path(report).read_text())
    data.pop("environment")
    data.pop("timings")
    for test in data["tests"]:
        test.pop("duration")
        if test.get("diagnosis"):
            test["diagnosis"].pop("seconds", None)
        if test["part"] == "speed":   # how many rounds ran, and so how the decision reads, is measured too
            test["output"] = _DECISION.sub("", _MEASURED.sub("#", test["output"]))
            if test.get("diagnosis"):
                test["diagnosis"]["detail"] = _MEASURED.sub("#", test["diagnosis"].get("detail") or "")
    return _without_temp_names(data)


def _without_temp_names(value: Any) -> Any:
    if isinstance(value, str):
        return _TEMP_NAMES.sub("<tmp>", value)
    if isinstance(value, list):
        return [_without_temp_names(v) for v in value]
    if isinstance(value, dict):
        return {k: _without_temp_names(v) for k, v in value.items()}
    return value


def essences(reports_dir: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: essence(p) for p in sorted(reports_dir.glob("*.json"))}
