"""The suites tell a right submission from a wrong one, through the real local sandbox.

- the reference earns full marks, with each part worth what assignment.yaml says;
- the student template earns 0 without crashing the run;
- every buggy variant under tests/buggy loses points in the part its bug belongs to.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.assignment import find_assignment
from grader.grading.runner import GradeRequest, grade
from tests.buggy import CATALOG, HERE as BUGGY, materialize

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def assignment():
    return find_assignment("autograd-lab")


def test_catalog_lists_every_variant_once_and_each_applies(tmp_path: Path) -> None:
    names = [entry["name"] for entry in CATALOG]
    diffs = sorted(p.stem for p in BUGGY.glob("*.diff"))
    assert sorted(names) == diffs and len(set(names)) == len(names) >= 15
    reference = (ROOT / "reference" / "autograd.py").read_text(encoding="utf-8")
    for name in names:
        variant = (materialize(name, tmp_path / name) / "autograd.py").read_text(encoding="utf-8")
        assert variant != reference, name


def test_reference_earns_full_marks(assignment) -> None:
    report = grade(GradeRequest(assignment, ROOT / "reference", backend="local")).report
    failed = {t.name: t.output[:2000] for t in report.tests if t.status != "passed"}
    assert not failed, failed
    assert report.score == report.max_score == assignment.max_score
    assert {n: p.max_score for n, p in report.parts.items()} == {
        n: p.points for n, p in assignment.config.parts.items()}
    assert {t.visibility for t in report.tests} == {"visible", "hidden"}


def test_template_earns_zero_and_every_test_explains(assignment) -> None:
    report = grade(GradeRequest(assignment, ROOT / "student_template", backend="local")).report
    assert report.status == "graded"
    assert report.score == 0 and report.max_score == assignment.max_score
    assert all(t.status != "passed" for t in report.tests)
    assert all("NotImplementedError" in t.output or "too slow" in t.output or "RuntimeError" in t.output
               for t in report.tests), [t.output[:300] for t in report.tests]


@pytest.mark.parametrize("entry", CATALOG, ids=[e["name"] for e in CATALOG])
def test_buggy_variant_loses_points_in_its_part(assignment, entry: dict, tmp_path: Path) -> None:
    submission = materialize(entry["name"], tmp_path / entry["name"])
    report = grade(GradeRequest(assignment, submission, backend="local",
                                parts=(entry["part"],))).report
    part = report.parts[entry["part"]]
    assert part.score < part.max_score, f"{entry['name']} ({entry['bug']}) passed every {entry['part']} test"
    failing = [t for t in report.tests if t.status != "passed"]
    assert all(t.output.strip() for t in failing)
