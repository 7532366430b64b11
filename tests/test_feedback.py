"""Feedback a student can act on: a failing test names the tensor and op, and its reproducer
fails the same way when run next to that submission (and passes next to the reference)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grader.assignment import find_assignment
from grader.grading.runner import GradeRequest, grade
from tests.buggy import materialize

ROOT = Path(__file__).resolve().parent.parent
MARK = "Reproducer ("

CASES = [  # variant, part, what the first failing message must mention
    ("bias_grad_not_unbroadcast", "ops", ".grad"),
    ("grad_overwritten_when_reused", "ops", ".grad"),
    ("backward_nonscalar_not_implemented", "ops", "RuntimeError"),
    ("mul_number_not_wrapped", "ops", "AttributeError"),
    ("relu_grad_at_zero_is_one", "mlp", ".grad"),
    ("detach_copies_data", "graph", "detach"),
]


def reproducer_of(output: str) -> str:
    assert MARK in output, output[:500]
    tail = output[output.index(MARK):]
    return tail.split("\n\n", 1)[1]


def run_script(script: str, submission: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    work = tmp_path / submission.name
    work.mkdir()
    shutil.copy(submission / "autograd.py", work / "autograd.py")
    (work / "reproduce.py").write_text(script, encoding="utf-8")
    return subprocess.run([sys.executable, "reproduce.py"], cwd=work, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("variant", "part", "mention"), CASES, ids=[c[0] for c in CASES])
def test_reproducer_fails_the_same_way(variant: str, part: str, mention: str, tmp_path: Path) -> None:
    submission = materialize(variant, tmp_path / "submission" / variant)
    report = grade(GradeRequest(find_assignment("autograd-lab"), submission, backend="local", parts=(part,))).report
    failing = [t for t in report.tests if t.status == "failed"]
    assert failing, f"{variant}: no failing test in part {part}"
    test = failing[0]
    headline = test.output.splitlines()[0]
    assert mention in test.output.split(MARK)[0], test.output[:800]
    script = reproducer_of(test.output)
    bad = run_script(script, submission, tmp_path)
    assert bad.returncode != 0, f"the reproducer passed against {variant}:\n{script}"
    expected_type = headline.split(":")[0] if headline.split(":")[0].endswith("Error") else "AssertionError"
    raised = [line for line in bad.stderr.splitlines() if line.startswith(f"{expected_type}:")]
    assert raised, (headline, bad.stderr[-1500:])
    ref_dir = tmp_path / "reference-run"
    ref_dir.mkdir()
    ok = run_script(script, ROOT / "reference", ref_dir)
    assert ok.returncode == 0, f"the reproducer fails against the reference too:\n{ok.stderr[-1500:]}"
