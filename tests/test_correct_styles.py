"""Correct implementations in other styles earn full marks from the full assignment (issue 10).

tests/correct/<style>/autograd.py are independent solutions of the lab, written from what a
student reads (the handout, the template, the public tests), not from the reference: micrograd
closures, torch-like Function classes, a global tape, Kahn's algorithm, a dict of this pass's
grads, `__slots__`, an op registry, a heap over creation order. A correct submission that loses
a point is as bad a bug as a wrong one that earns it, so each is graded with public + hidden
tests, once per backend, and every lost test is shown with its message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.assignment import find_assignment
from grader.grading.runner import GradeRequest, grade

CORRECT = Path(__file__).resolve().parent / "correct"
STYLES = sorted(p.parent.name for p in CORRECT.glob("*/autograd.py"))


@pytest.fixture(scope="module")
def assignment():
    return find_assignment("autograd-lab")


def _assert_full_marks(assignment, style: str, backend: str) -> None:
    report = grade(GradeRequest(assignment, CORRECT / style, backend=backend)).report
    lost = [f"{t.name} [{t.status}, {t.score}/{t.max_score}]:\n{t.output[:1500]}"
            for t in report.tests if t.status != "passed"]
    assert not lost, f"the correct '{style}' style lost points on {backend}:\n\n" + "\n\n".join(lost)
    assert {t.visibility for t in report.tests} == {"visible", "hidden"}, "graded without the hidden tests"
    assert report.score == report.max_score == assignment.max_score


def test_the_corpus_has_at_least_six_styles_each_named_in_its_header() -> None:
    assert len(STYLES) >= 6, STYLES
    for style in STYLES:
        header = (CORRECT / style / "autograd.py").read_text(encoding="utf-8").split('"""')[1]
        assert f'style "{style}"' in header, f"{style}/autograd.py does not name its style in its docstring"


@pytest.mark.parametrize("style", STYLES)
def test_correct_style_earns_full_marks_locally(assignment, style: str) -> None:
    _assert_full_marks(assignment, style, "local")


@pytest.mark.docker
@pytest.mark.parametrize("style", STYLES)
def test_correct_style_earns_full_marks_in_docker(docker_required: None, assignment, style: str) -> None:
    _assert_full_marks(assignment, style, "docker")
