"""The suites tell a right submission from a wrong one, through the real local sandbox.

- the reference earns full marks, with each part worth what assignment.yaml says;
- the student template earns 0 without crashing the run;
- every buggy variant under tests/buggy loses points in the part its bug belongs to;
- every graded test fails for at least one buggy variant (or is listed with the reason it cannot).

The gradings are shared through session fixtures (tests/conftest.py): each is done once.
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


def test_reference_earns_full_marks(assignment, reference_grading) -> None:
    report = reference_grading.report
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
def test_buggy_variant_loses_points_in_its_part(assignment, entry: dict, buggy_grading) -> None:
    report = buggy_grading(entry)
    part = report.parts[entry["part"]]
    assert part.score < part.max_score, f"{entry['name']} ({entry['bug']}) passed every {entry['part']} test"
    failing = [t for t in report.tests if t.status != "passed"]
    assert all(t.output.strip() for t in failing)


# Graded tests that no realistic bug of the catalog fails, and why none can. Empty today: every
# graded test is failed by some variant. A test listed here must really be failed by none.
CANNOT_FAIL: dict[str, str] = {}


def test_every_graded_test_fails_for_some_buggy_variant(reference_grading, buggy_grading) -> None:
    """Per test, not per part: a graded test that no known bug fails earns its points for free."""
    graded = [t.name for t in reference_grading.report.tests if t.max_score > 0]
    failed_by: dict[str, list[str]] = {name: [] for name in graded}
    for entry in CATALOG:
        for test in buggy_grading(entry).tests:
            if test.status != "passed" and test.name in failed_by:
                failed_by[test.name].append(entry["name"])
    width = max(map(len, graded))
    print(f"\n{'graded test':<{width}}  a buggy variant that fails it (of how many)")
    for name in graded:
        variants = failed_by[name]
        shown = f"{variants[0]} (of {len(variants)})" if variants else f"none: {CANNOT_FAIL.get(name, '?')}"
        print(f"{name:<{width}}  {shown}")
    unfailed = {name for name, variants in failed_by.items() if not variants}
    assert unfailed == set(CANNOT_FAIL), (
        f"graded tests that no buggy variant fails (add a realistic variant, or list the test in CANNOT_FAIL "
        f"with the reason): {sorted(unfailed - set(CANNOT_FAIL))}; listed but failed by some variant: "
        f"{sorted(set(CANNOT_FAIL) - unfailed)}")
