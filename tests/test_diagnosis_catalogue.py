"""Over the whole catalogue of buggy variants (tests/buggy), graded through the real local sandbox:

- the leading diagnosis of each variant's report names the op or the mechanism its bug is in (the
  catalogue's ``site``) for at least 90% of them; the table and the figure are printed;
- for at least 80% of the op-level ones the shrunk reproducer is at most 10 lines, fails next to the
  variant and passes next to the reference (each is run).

Slow (every variant is graded once, its own part only; speed variants on the public speed tests):
``python3 -m pytest tests/test_diagnosis_catalogue.py -s`` prints the table.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from grader.assignment import find_assignment
from grader.grading.runner import GradeRequest, grade
from grader.report import Report, TestDiagnosis
from tests.buggy import CATALOG, materialize

ROOT = Path(__file__).resolve().parent.parent
NAMES_RIGHT = 0.90
SHORT_REPRODUCERS = 0.80
MAX_LINES = 10


def sites(entry: dict) -> list[str]:
    site = entry["site"]
    return list(site) if isinstance(site, list) else [site]


def leading(report: Report) -> str | None:
    return f"{report.diagnosis[0].kind}:{report.diagnosis[0].site}" if report.diagnosis else None


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Report]]:
    assignment = find_assignment("autograd-lab")
    root = tmp_path_factory.mktemp("variants")
    out = {}
    for entry in CATALOG:
        submission = materialize(entry["name"], root / entry["name"])
        req = GradeRequest(assignment, submission, backend="local", parts=(entry["part"],),
                           visible_only=entry["part"] == "speed")
        out[entry["name"]] = (submission, grade(req).report)
    return out


def test_the_catalogue_names_a_site_for_every_variant() -> None:
    kinds = {"op", "graph", "api"}
    for entry in CATALOG:
        assert sites(entry) and all(s.split(":")[0] in kinds for s in sites(entry)), entry["name"]


def test_the_diagnosis_names_the_right_op_or_mechanism(graded: dict[str, tuple[Path, Report]]) -> None:
    rows, right = [], 0
    for entry in CATALOG:
        report = graded[entry["name"]][1]
        found = leading(report)
        ok = found in sites(entry)
        right += ok
        failed = sum(t.status != "passed" for t in report.tests)
        rows.append(f"{'ok ' if ok else 'BAD'}  {entry['name']:40s} {'|'.join(sites(entry)):42s} {found or '-':38s} "
                    f"{len(report.diagnosis[0].tests) if report.diagnosis else 0}/{failed}")
    share = right / len(CATALOG)
    print("\n".join(["", f"{'':5s}{'variant':40s} {'catalogue site':42s} {'leading diagnosis':38s} tests", *rows,
                     f"right: {right} of {len(CATALOG)} = {share:.0%} (target >= {NAMES_RIGHT:.0%})"]))
    assert share >= NAMES_RIGHT


def _reproducer_of(report: Report) -> TestDiagnosis | None:
    if not report.diagnosis:
        return None
    names = set(report.diagnosis[0].tests)
    return next((t.diagnosis for t in report.tests if t.name in names and t.diagnosis and t.diagnosis.reproducer),
                None)


def _run(script: str, autograd: Path, work: Path) -> int:
    work.mkdir(parents=True)
    (work / "autograd.py").write_text(autograd.read_text(encoding="utf-8"), encoding="utf-8")
    (work / "reproduce.py").write_text(script, encoding="utf-8")
    return subprocess.run([sys.executable, "reproduce.py"], cwd=work, capture_output=True, timeout=60).returncode


def test_shrunk_reproducers_of_op_level_bugs_are_short_and_fail_only_on_the_variant(
        graded: dict[str, tuple[Path, Report]], tmp_path: Path) -> None:
    op_level = [e for e in CATALOG if all(s.startswith("op:") for s in sites(e)) and e["part"] != "speed"]
    rows, good = [], 0
    for entry in op_level:
        submission, report = graded[entry["name"]]
        d = _reproducer_of(report)
        lines = len(d.reproducer.strip().splitlines()) if d else 0
        fails = d is not None and _run(d.reproducer, submission / "autograd.py", tmp_path / entry["name"] / "v") != 0
        passes = d is not None and _run(d.reproducer, ROOT / "reference" / "autograd.py",
                                        tmp_path / entry["name"] / "r") == 0
        ok = d is not None and lines <= MAX_LINES and fails and passes
        good += ok
        rows.append(f"{'ok ' if ok else 'BAD'}  {entry['name']:40s} lines {lines:2d}  fails on the variant {fails!s:5s}  "
                    f"passes on the reference {passes}")
    share = good / len(op_level)
    print("\n".join(["", *rows, f"short and faithful: {good} of {len(op_level)} = {share:.0%} "
                     f"(target >= {SHORT_REPRODUCERS:.0%})"]))
    assert share >= SHORT_REPRODUCERS
