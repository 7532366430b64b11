"""The plugin's side of the diagnosis: run it when ``matches_torch`` fails, and keep it with the test.

A diagnosis never changes a verdict: the test has already failed when it starts, and anything
that goes wrong while diagnosing (the submission times out or crashes on a local check) only
means the failure is reported without one.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from grader.grading.executors import Executor
from grader.programs.compare import Mismatch
from grader.programs.diagnose import diagnose
from grader.programs.interpreter import RunResult
from grader.programs.program import Program
from grader.report import TestDiagnosis

DIAGNOSIS = pytest.StashKey[dict[str, Any]]()
SWITCH = "GRADER_DIAGNOSIS"   # "0" turns the diagnosis off (to measure what it costs)


def diagnosed(exc: Mismatch, program: Program, expected: RunResult, got: RunResult, lab: Executor,
              item: pytest.Item | None) -> Mismatch:
    """Diagnose the failure and stash the diagnosis on ``item`` (the report keeps it beside the test's
    output, which stays as it was: the full explanation and reproducer). Returns ``exc``."""
    if os.environ.get(SWITCH, "1") == "0":
        return exc
    start = time.perf_counter()
    fresh = [False]

    def runner(p: Program) -> RunResult:
        if not fresh[0]:  # the failing run may have left global state behind (a no_grad flag...)
            getattr(lab, "reset", lambda: None)()
            fresh[0] = True
        return lab.run(p)

    try:
        found = diagnose(program, expected, got, runner)
    except Exception:  # noqa: BLE001 - a diagnosis is a bonus; the failure stands without it
        found = None
    if found is not None and item is not None:
        item.stash[DIAGNOSIS] = {**found.to_dict(), "seconds": round(time.perf_counter() - start, 4)}
    return exc



def to_report_diagnosis(found: dict[str, Any] | None) -> TestDiagnosis | None:
    """The stashed diagnosis as the report keeps it (``Report.build`` groups them)."""
    if not found:
        return None
    return TestDiagnosis(**{k: v for k, v in found.items() if k in TestDiagnosis.model_fields})
