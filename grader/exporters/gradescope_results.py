"""Gradescope ``results.json`` from a report.

Follows Gradescope's autograder specification ("Output format",
gradescope-autograders.readthedocs.io/en/latest/specs/): only the keys it defines are
written. Facts used from it:

- top level: ``score`` (overrides the sum of the tests), ``execution_time`` (seconds),
  ``output``, ``output_format``, ``visibility``, ``stdout_visibility``, ``extra_data``, ``tests``;
- a test: ``score``, ``max_score``, ``status`` (only ``"passed"`` or ``"failed"``), ``name``,
  ``number`` (e.g. ``"1.1"``), ``output``, ``output_format``, ``tags``, ``visibility``;
- visibility is one of ``hidden`` (never shown to students), ``after_due_date``,
  ``after_published`` (shown once grades are published) and ``visible``; a test's own
  setting overrides the top-level one; while tests are hidden, students do not see
  their total score;
- ``stdout_visibility`` takes the same values and defaults to hidden: the autograder's
  stdout is for instructors;
- formats are ``text`` (nothing rendered), ``simple_format``, ``html``, ``md``, ``ansi``.

Decisions: every output is ``text``, so nothing a student's code printed into an
explanation is ever rendered as HTML or Markdown. Tests from the hidden suite get
``after_published`` by default (``hidden_visibility`` to change it). The student's own
prints are not copied into the results (they may echo hidden-test inputs).
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from grader.programs.diagnosis import group_sentence, lead_text
from grader.report import Report, TestResult, group_diagnoses

GradescopeVisibility = Literal["hidden", "after_due_date", "after_published", "visible"]

RESULT_KEYS = frozenset(
    {"score", "execution_time", "output", "output_format", "visibility", "stdout_visibility", "extra_data", "tests"}
)
TEST_KEYS = frozenset(
    {"score", "max_score", "status", "name", "number", "output", "output_format", "tags", "visibility"}
)

_STATUS_NOTE = {
    "error": "The test could not run to the end (an error in the test setup or the grader).",
    "timeout": "The test exceeded its time limit.",
}


def to_gradescope(report: Report, *, hidden_visibility: GradescopeVisibility = "after_published") -> dict[str, Any]:
    """The ``results.json`` object for ``report``."""
    return {
        "score": report.score,
        "execution_time": math.ceil(report.timings.total_seconds),
        "output": _summary(report),
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "extra_data": {
            "report_schema_version": report.schema_version,
            "assignment": report.assignment.name,
            "status": report.status,
            "submission_sha256": report.submission.sha256,
            "grader_version": report.environment.grader_version,
            "seed": report.environment.seed,
        },
        "tests": _tests(report, hidden_visibility),
    }


def dumps(report: Report, *, hidden_visibility: GradescopeVisibility = "after_published") -> str:
    """``to_gradescope(report)`` as JSON text, ready for ``/autograder/results/results.json``."""
    results = to_gradescope(report, hidden_visibility=hidden_visibility)
    return json.dumps(results, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _summary(report: Report) -> str:
    if report.error is not None:
        lines = [report.error.message]
        if report.error.hint:
            lines.append(f"hint: {report.error.hint}")
        lines.append(f"Score: 0 / {_num(report.max_score)}")
        return "\n".join(lines)
    lines = [f"Score: {_num(report.score)} / {_num(report.max_score)}"]
    for name, part in report.parts.items():
        lines.append(f"  {name}: {_num(part.score)} / {_num(part.max_score)} ({part.passed}/{part.total} tests passed)")
    # the diagnosis of the visible tests only: this summary is always visible, hidden tests may not be yet
    visible = [t for t in report.tests if t.visibility == "visible"]
    groups = group_diagnoses(visible)
    if groups:
        failed = sum(t.status != "passed" for t in visible)
        lines += ["", "Visible tests: " + group_sentence(failed, [(g.summary, len(g.tests)) for g in groups])]
        lines += [f"  {g.summary}: {g.advice}" for g in groups[:3]]
    return "\n".join(lines)


def _tests(report: Report, hidden_visibility: GradescopeVisibility) -> list[dict[str, Any]]:
    part_numbers = {name: i for i, name in enumerate(report.parts, start=1)}
    counters = dict.fromkeys(part_numbers, 0)
    out = []
    for test in report.tests:
        counters[test.part] += 1
        out.append(
            {
                "score": test.score,
                "max_score": test.max_score,
                "status": "passed" if test.status == "passed" else "failed",
                "name": test.name,
                "number": f"{part_numbers[test.part]}.{counters[test.part]}",
                "output": _output(test),
                "output_format": "text",
                "tags": [test.part],
                "visibility": hidden_visibility if test.visibility == "hidden" else "visible",
            }
        )
    return out


def _output(test: TestResult) -> str:
    note = _STATUS_NOTE.get(test.status)
    output = test.output
    if test.diagnosis is not None:  # where the bug is and the shrunk reproducer, before the detail
        d = test.diagnosis
        output = f"{lead_text(d.summary, d.case, d.detail, d.advice, d.reproducer)}\n\nthe failing test:\n{output}"
    if note is None:
        return output
    return f"{note}\n{output}" if output else note


def _num(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".")
