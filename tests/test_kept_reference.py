"""A grading service keeps the reference's sandbox from one job to the next, and nothing else.

Real parts: the local sandbox backend running the reference, the real plugin through
``grade_job`` on the full assignment (speed tests included) in one process, as a batch slot does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grader.assignment import find_assignment
from grader.grading import kept_reference
from grader.grading.executors import TorchExecutor, start_executor, worker_spec
from grader.grading.job import assignment_bundle, grade_job, grader_digest, make_job
from grader.programs.compare import assert_same
from grader.programs.program import Program
from grader.report import report_from_json
from tests.classwork import LEAKY, REFERENCE, ROOT, essence

pytestmark = pytest.mark.slow


@pytest.fixture
def keeping(monkeypatch: pytest.MonkeyPatch):
    """Keeping switched on for this test only; whatever it kept is closed afterwards."""
    monkeypatch.setattr(kept_reference, "_enabled", True)
    yield
    kept_reference.close_all()


def small_program() -> Program:
    p = Program("small", seed=3)
    x = p.randn("x", (2, 3), requires_grad=True)
    loss = (x * 2.0).relu().sum().named("loss")
    p.backward(loss)
    p.snapshot("grads", [x, loss])
    return p


def test_nothing_is_kept_unless_a_service_asks() -> None:
    asg = find_assignment("autograd-lab")
    spec = worker_spec(ROOT / "reference", asg, trusted=True)
    executor = start_executor("local", ROOT / "reference", asg, "reference")
    try:
        assert kept_reference.give_back("local", spec, executor) is False
        assert kept_reference.take("local", spec) is None
    finally:
        executor.close()


def test_a_kept_reference_is_the_same_worker_freshly_imported(keeping: None) -> None:
    asg = find_assignment("autograd-lab")
    spec = worker_spec(ROOT / "reference", asg, trusted=True)
    executor = start_executor("local", ROOT / "reference", asg, "reference")
    program = small_program()
    executor.run(program)
    executor.deadline = 1.0                                 # the old session's budget, over by now
    pid = executor.sandbox.proc.pid
    assert kept_reference.give_back("local", spec, executor)
    assert kept_reference.take("local", worker_spec(ROOT / "reference", asg, trusted=True, image="other")) is None
    again = kept_reference.take("local", spec)
    assert again is executor and again.sandbox.proc.pid == pid        # no new worker
    assert again.deadline is None and not again.used                  # the module re-imported, no old budget
    assert_same(program, TorchExecutor().run(program), again.run(program))
    assert kept_reference.take("local", spec) is None                  # taken once, by one session

    again.sandbox.close()                                  # a worker that died while kept is started afresh
    assert kept_reference.give_back("local", spec, again)
    revived = kept_reference.take("local", spec)
    assert revived is not None and revived.sandbox.proc is not None and revived.sandbox.proc.pid != pid
    assert_same(program, TorchExecutor().run(program), revived.run(program))
    revived.close()


def test_jobs_graded_with_a_kept_reference_are_graded_as_alone(keeping: None) -> None:
    """Full assignment, speed tests included, in one process: a leaky submission, then the reference
    twice. The second and third jobs reuse the first job's reference sandbox, and their reports equal
    a grade in a process that keeps nothing (the lab sandbox is new for every job)."""
    asg = find_assignment("autograd-lab")
    fields = {"assignment_digest": assignment_bundle(asg).digest, "grader_digest": grader_digest(),
              "backend": "local", "timeout_s": 600.0}

    def job(source: Path, student: str):
        return make_job(student, {"autograd.py": source.read_bytes()}, **fields)

    reports = [report_from_json(json.loads(grade_job(job(source, name), asg)))
               for source, name in ((LEAKY, "leaky"), (REFERENCE, "alice"), (REFERENCE, "bob"))]
    kept = list(kept_reference._kept.values())
    assert len(kept) == 1                                  # one reference sandbox served all three jobs
    assert reports[0].score < reports[0].max_score
    for report in reports[1:]:
        assert report.status == "graded" and report.score == report.max_score
        speed = [t for t in report.tests if t.part == "speed"]
        assert speed and all(t.status == "passed" and "reference" in t.output for t in speed)
    kept_reference.close_all()
    kept_reference._enabled = False
    alone = report_from_json(json.loads(grade_job(job(REFERENCE, "alice"), asg)))
    assert essence(alone) == essence(reports[1])
    assert not kept_reference._kept
