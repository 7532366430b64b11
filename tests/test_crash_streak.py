"""A submission that kills its worker in every request is not given a fresh sandbox per test forever.

After ``CRASH_STREAK`` requests in a row crash the worker, it is not restarted: the remaining tests
report the crash at once (on Docker each restart is a container start, ~0.6 s, and a class's
hostile submissions held their batch slot for ~45 s each). Code that crashes only on some inputs
answers in between, so it keeps a worker and is graded test by test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.assignment import find_assignment
from grader.grading.executors import CRASH_STREAK
from grader.grading.runner import GradeRequest, grade

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (ROOT / "reference" / "autograd.py").read_text(encoding="utf-8")
CUT = f"not run: your code killed its worker in {CRASH_STREAK} requests in a row"


def graded(tmp_path: Path, attack: str):
    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / "autograd.py").write_text(REFERENCE + "\n\nimport os as _os\n" + attack, encoding="utf-8")
    return grade(GradeRequest(find_assignment("autograd-lab"), folder, backend="local", parts=("ops",))).report


def outputs(report, status: str) -> list[str]:
    return [t.output for t in report.tests if t.status == status]


@pytest.mark.slow
def test_a_worker_that_dies_in_every_request_is_not_restarted_forever(tmp_path: Path) -> None:
    report = graded(tmp_path, "Tensor.backward = lambda self, *a, **k: _os._exit(0)\n")
    errors = outputs(report, "error")
    assert report.score == 0 and len(errors) == len(report.tests) > CRASH_STREAK
    died = [e for e in errors if e.startswith("the worker running your code died")]
    cut = [e for e in errors if e.startswith(CUT)]
    assert len(died) == CRASH_STREAK and len(cut) == len(errors) - CRASH_STREAK
    assert all("the worker running your code died" in e for e in cut)   # each says what the first crash was


@pytest.mark.slow
def test_a_worker_that_dies_on_some_inputs_only_is_restarted_every_time(tmp_path: Path) -> None:
    """Dies in matmul only: the matmul tests fail, most others pass, and none is cut."""
    report = graded(tmp_path, "Tensor.__matmul__ = lambda self, other: _os._exit(0)\n"
                              "Tensor.__rmatmul__ = lambda self, other: _os._exit(0)\n")
    assert not [e for e in outputs(report, "error") if e.startswith(CUT)]
    matmul_tests = [t for t in report.tests if "matmul" in t.name]
    assert matmul_tests and all(t.status == "error" for t in matmul_tests)
    assert len(outputs(report, "passed")) >= len(report.tests) // 2, [(t.name, t.status) for t in report.tests]
