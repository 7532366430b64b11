"""Grades one submission: checks it on the host, runs the suites with pytest, builds the Report.

The suites run in this process through ``pytest.main`` with the grader's plugin; the submission
runs in its sandbox. Nothing the sandbox sends decides a score: the plugin compares evidence
with torch here, and this module only adds points up.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

import pytest

from grader.assignment import Assignment
from grader.errors import GraderError, SubmissionError
from grader.report import (Assignment as ReportAssignment, Report, SubmissionErrorInfo, SubmissionFile,
                           SubmissionInfo, TestResult, Timings)
from grader.grading.provenance import environment
from grader.grading.submission import Submission, load_submission


@dataclass(frozen=True)
class GradeRequest:
    """What to grade and how: the whole of a grading run's inputs."""

    assignment: Assignment
    submission: Path
    backend: str = "local"
    seed: int | None = None
    visible_only: bool = False
    parts: tuple[str, ...] = ()
    student: str | None = None
    image: str | None = None          # docker: the sandbox image tag to grade in
    speed_reference: bool = True      # False: speed tests judged by their time limits alone (as in a bundle)
    deadline: float | None = None     # Unix time at which the time budget ends (grade() sets it at its start)
    features_out: Path | None = None  # write the features of each test's Programs here (the fairness check)

    @property
    def effective_seed(self) -> int:
        return self.assignment.config.seed if self.seed is None else self.seed


@dataclass
class GradeResult:
    report: Report
    hidden_not_run: int = 0


def _pytest_args(req: GradeRequest, outcomes_path: Path) -> list[str]:
    dirs = [req.assignment.public_tests]
    if not req.visible_only or req.assignment.hidden_tests.is_dir():
        dirs.append(req.assignment.hidden_tests)
    args = [str(d) for d in dirs if d.is_dir()]
    if req.image:
        args += ["--image", req.image]
    args += ["--submission", str(req.submission), "--backend", req.backend,
             "--assignment", str(req.assignment.root), "--seed", str(req.effective_seed),
             "--grader-outcomes", str(outcomes_path), "--rootdir", str(req.assignment.root),
             "-p", "no:cacheprovider", "-p", "no:randomly", "--import-mode=importlib", "-o", "addopts=",
             # no:unraisableexception: its five gc.collect() passes at the end cost a check seconds
             "-p", "no:unraisableexception",
             # the report quotes the exception itself: pytest's long tracebacks (it parses the source of
             # every frame) cost ~50 ms a failure, seconds for a submission that fails most tests
             "--tb=native",
             "-q", "--no-header", "-o", "console_output_style=classic"]
    if req.features_out is not None:
        args += ["--grader-features", str(req.features_out)]
    if req.deadline is not None:
        args += ["--grader-deadline", repr(req.deadline)]
    if req.visible_only:
        args.append("--visible-only")
    if not req.speed_reference:
        args.append("--no-speed-reference")
    for part in req.parts:
        args += ["--part", part]
    return args


def run_suites(req: GradeRequest) -> dict:
    """Run the suites; return the plugin's outcomes (a JSON object). pytest's own output is swallowed."""
    with tempfile.TemporaryDirectory(prefix="grader-run-") as tmp:
        outcomes_path = Path(tmp) / "outcomes.json"
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), _only_the_grader_plugin():
            code = pytest.main(["-p", "grader.grading.pytest_plugin", *_pytest_args(req, outcomes_path)])
        outcomes = json.loads(outcomes_path.read_text(encoding="utf-8")) if outcomes_path.is_file() else None
        if outcomes is None or int(code) in _BROKEN_RUN or not outcomes["tests"]:
            tail = sink.getvalue()[-3000:]
            raise GraderError(f"the test suites did not run (pytest exit status {int(code)})\n{tail}",
                              hint="check the assignment's tests with `python -m pytest --collect-only "
                                   "assignments/NAME/tests`")
        return outcomes


@contextlib.contextmanager
def _only_the_grader_plugin() -> Iterator[None]:
    """Other installed pytest plugins stay out of a grading run (no stray files, no surprises)."""
    previous = os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
        else:
            os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = previous


# pytest's exit statuses for a run that did not complete: interrupted, internal error, usage error,
# no tests collected. A collection error of one suite file must not silently shrink max_score.
_BROKEN_RUN = {2, 3, 4, 5}



def _submission_info(sub: Submission | None, source: Path) -> SubmissionInfo:
    if sub is None:
        return SubmissionInfo(sha256="0" * 64, kind=_kind_of(source), files=[], ignored_files=[],
                              notes=["the submission could not be read"])
    return SubmissionInfo(sha256=sub.sha256, kind=sub.kind,
                          files=[SubmissionFile(name=f.name, size=f.size, sha256=f.sha256) for f in sub.files],
                          ignored_files=list(sub.ignored_files), notes=list(sub.notes))


def _kind_of(path: Path) -> str:
    return "directory" if path.is_dir() else (path.suffix.lstrip(".") or "file")


def _tests(outcomes: dict) -> list[TestResult]:
    return [TestResult.model_validate(t) for t in outcomes["tests"]]


def _import_error(outcomes: dict) -> SubmissionErrorInfo | None:
    hello = outcomes.get("hello") or {}
    if not hello or hello.get("import_ok", True):
        return None
    err = hello.get("error") or {}
    message = f"importing autograd.py failed: {err.get('type', 'Error')}: {err.get('message', '')}"
    if err.get("traceback"):
        message += f"\n{err['traceback']}"
    return SubmissionErrorInfo(code="import-error", message=message[:20_000],
                               hint="run `python -c \"import autograd\"` in your folder to see the same error")


def grade(req: GradeRequest) -> GradeResult:
    """Grade one submission into a Report (a bad submission gives a report with its error, score 0)."""
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    if req.deadline is None:   # the budget counts from here: reading the submission and starting pytest included
        req = replace(req, deadline=time.time() + req.assignment.config.timeouts.submission_s)
    sub: Submission | None = None
    error: SubmissionErrorInfo | None = None
    tests: list[TestResult] = []
    outcomes: dict = {}
    tests_seconds = 0.0
    try:
        sub = load_submission(req.submission, req.assignment.config.required_files)
        t0 = time.perf_counter()
        outcomes = run_suites(req)
        tests_seconds = time.perf_counter() - t0
        tests = _tests(outcomes)
        error = _import_error(outcomes)
    except SubmissionError as exc:
        error = SubmissionErrorInfo(code=exc.code, message=str(exc), hint=exc.hint)
    finally:
        if sub is not None:
            sub.cleanup()
    if error is not None:
        tests = [t.model_copy(update={"score": 0.0}) for t in tests]
    info = _submission_info(sub, req.submission)
    if outcomes.get("cut"):
        info = info.model_copy(update={"notes": [*info.notes, budget_note(outcomes)]})
    report = Report.build(
        assignment=ReportAssignment(name=req.assignment.name, title=req.assignment.config.title),
        tests=tests, submission=info, environment=environment(req.backend, req.effective_seed, req.image),
        timings=Timings(started_at=started, finished_at=datetime.now(timezone.utc),
                        total_seconds=time.perf_counter() - clock, tests_seconds=tests_seconds),
        student=req.student, stdout=str(outcomes.get("stdout", "")),
        status="graded" if error is None else "submission-error", error=error,
        max_score=_max_score(req, tests), part_order=tuple(req.assignment.config.parts),
    )
    return GradeResult(report, int(outcomes.get("hidden_not_run", 0)))


def budget_note(outcomes: dict) -> str:
    """The report's note on tests cut by the time budget: how many, which, and why."""
    cut = list(outcomes["cut"])
    shown = ", ".join(cut[:10]) + (f" and {len(cut) - 10} more" if len(cut) > 10 else "")
    return (f"time budget: the whole submission may use {outcomes.get('budget_s', 0):g} s "
            f"(timeouts.submission_s); it was used up, so {len(cut)} test(s) were cut and reported as "
            f"timeout with 0 points: {shown}")


def _max_score(req: GradeRequest, tests: Sequence[TestResult]) -> float:
    """The assignment's total, or what the selected tests are worth when only some ran."""
    if req.visible_only or req.parts:
        return sum(t.max_score for t in tests)
    return max(req.assignment.max_score, sum(t.max_score for t in tests))
