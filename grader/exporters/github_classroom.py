"""A GitHub Classroom autograding result (the runner output read by the grading reporter).

GitHub Classroom's reporter action (``autograding-grading-reporter``, ``src/main.js``)
takes a comma-separated list of runner ids, reads each runner's result from the
environment variable ``<RUNNER ID IN UPPER CASE>_RESULTS``, base64-decodes it and parses
JSON. The official graders (``autograding-command-grader``, ``autograding-io-grader``)
write that result, base64-encoded, as their step output ``result``:

    {"version": 1, "status": "pass" | "fail" | "error", "max_score": <number>,
     "tests": [{"name", "status", "message", "test_code", "filename", "line_no",
                "duration", "score"}]}

What the reporter reads: ``tests[].status == "pass"`` counts a test as passed, and a test
that did not pass prints ``tests[].message``; the points sent to Classroom are the sum of
``tests[].score`` over the runner's ``max_score`` (a runner with no ``max_score`` counts
for nothing); the workflow fails when a runner's ``status`` is ``"fail"`` or ``"error"``.
``duration`` is in milliseconds, as the official graders write it.

Students read these messages in the Actions log, so hidden tests' output is replaced by
a note unless ``reveal_hidden=True``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from grader.report import Report, TestResult

RESULT_VERSION = 1
HIDDEN_NOTE = "(hidden test: its details are shown to course staff only)"
RESULT_KEYS = frozenset({"version", "status", "max_score", "tests"})
TEST_KEYS = frozenset({"name", "status", "message", "test_code", "filename", "line_no", "duration", "score"})

_STATUS = {"passed": "pass", "failed": "fail", "error": "error", "timeout": "error"}


def to_github_classroom(report: Report, *, reveal_hidden: bool = False) -> dict[str, Any]:
    """The runner result object for ``report``."""
    tests = [_test(t, reveal_hidden) for t in report.tests]
    if report.error is not None:
        message = report.error.message + (f"\nhint: {report.error.hint}" if report.error.hint else "")
        tests.insert(0, _entry("submission", "error", message, 0.0, 0.0))
        for test in tests[1:]:
            test["score"] = 0.0
    return {
        "version": RESULT_VERSION,
        "status": _overall(report),
        "max_score": report.max_score,
        "tests": tests,
    }


def dumps(report: Report, *, reveal_hidden: bool = False) -> str:
    """The result as JSON text."""
    return json.dumps(to_github_classroom(report, reveal_hidden=reveal_hidden), ensure_ascii=False, allow_nan=False)


def encode(report: Report, *, reveal_hidden: bool = False) -> str:
    """The result as the reporter reads it: base64 of the JSON (for ``$GITHUB_OUTPUT``)."""
    return base64.b64encode(dumps(report, reveal_hidden=reveal_hidden).encode("utf-8")).decode("ascii")


def _overall(report: Report) -> str:
    if report.status != "graded":
        return "error"
    return "pass" if all(t.status == "passed" for t in report.tests) else "fail"


def _test(test: TestResult, reveal_hidden: bool) -> dict[str, Any]:
    shown = reveal_hidden or test.visibility == "visible"
    message = test.output if shown else HIDDEN_NOTE
    entry = _entry(test.name, _STATUS[test.status], message, test.score, test.duration)
    entry["test_code"] = test.nodeid if shown else ""
    return entry


def _entry(name: str, status: str, message: str, score: float, seconds: float) -> dict[str, Any]:
    return {
        "name": name,
        "status": status,
        "message": message,
        "test_code": "",
        "filename": "",
        "line_no": 0,
        "duration": round(seconds * 1000),
        "score": score,
    }
