"""The plugin's side of the diagnosis: run it when ``matches_torch`` fails, and keep it with the test.

A diagnosis never changes a verdict: the test has already failed when it starts, and anything
that goes wrong while diagnosing (the submission times out or crashes on a local check) only
means the failure is reported without one.
"""

from __future__ import annotations

import os
import time
import weakref
from typing import Any

import pytest

from grader.grading.executors import Executor, SubmissionCrashed, TestTimeout, torch_installed
from grader.programs.compare import Mismatch
from grader.programs.expectations import program_digest
from grader.programs.interpreter import RunResult
from grader.programs.program import Program
from grader.report import TestDiagnosis

DIAGNOSIS = pytest.StashKey[dict[str, Any]]()
SWITCH = "GRADER_DIAGNOSIS"   # "0" turns the diagnosis off (to measure what it costs)
TORCH = torch_installed()  # local checks need torch's VJPs; no torch, no diagnosis
# The budget is counted in requests, not seconds, so that a busy machine gets the same diagnosis
# as an idle one (a diagnosis takes at most 5 new requests of a few ms on the buggy catalogue; host
# work such as torch's first import is not the submission's and is not counted). Seconds only
# bound what a slow or hanging submission can cost: each request, and all of a run's requests.
REQUESTS_PER_FAILURE = 40     # new sandbox requests one failure's diagnosis may make
REQUEST_S = 0.5               # time limit of one diagnosis request (small Programs: milliseconds)
RUN_SANDBOX_S = 30.0          # sandbox seconds all diagnoses of one run may take together


class BudgetSpent(Exception):
    """The diagnosis of one failure ran out of time: the failure is reported without one."""


def diagnosed(exc: Mismatch, program: Program, expected: RunResult, got: RunResult, lab: Executor,
              item: pytest.Item | None) -> Mismatch:
    """Diagnose the failure and stash the diagnosis on ``item`` (the report keeps it beside the test's
    output, which stays as it was: the full explanation and reproducer). Returns ``exc``."""
    if os.environ.get(SWITCH, "1") == "0" or lab in _GAVE_UP or not TORCH:
        return exc
    from grader.programs.diagnose import diagnose  # noqa: PLC0415 - needs torch, optional where expectations ship
    start = time.perf_counter()
    fresh = [False]
    made = [0]
    seen = _CACHE.setdefault(lab, {})

    def runner(p: Program) -> RunResult:
        key = program_digest(p)
        if key not in seen:
            if not fresh[0]:  # the failing run may have left global state behind (a no_grad flag...)
                getattr(lab, "reset", lambda: None)()
                fresh[0] = True
            spent = _SPENT.get(lab, 0.0)
            if made[0] >= REQUESTS_PER_FAILURE or spent >= RUN_SANDBOX_S:
                raise BudgetSpent(f"{made[0]} requests, {spent:.1f} s in this run")
            made[0] += 1
            # a ``time`` request of one repeat returns the same evidence as ``run``, under our time limit:
            # code that hangs on a small check costs the diagnosis, never the run, more than its budget
            timed = getattr(lab, "time", None)
            asked = time.perf_counter()
            try:
                seen[key] = (timed(p, 1, timeout=min(REQUEST_S, RUN_SANDBOX_S - spent))[1] if timed is not None
                             else lab.run(p))
            except (TestTimeout, SubmissionCrashed):
                # the worker was restarted: a submission that hangs or crashes on small checks is not
                # diagnosed again in this run, so the diagnosis costs it one budget, not one per failure
                _GAVE_UP[lab] = True
                raise
            finally:
                _SPENT[lab] = spent + (time.perf_counter() - asked)
        return seen[key]

    try:
        found = diagnose(program, expected, got, runner)
    except Exception:  # noqa: BLE001 - a diagnosis is a bonus; the failure stands without it
        found = None
    if found is not None and item is not None:
        item.stash[DIAGNOSIS] = {**found.to_dict(), "seconds": round(time.perf_counter() - start, 4)}
    return exc


# Evidence of the diagnosis's own Programs, per submission executor: failures with one cause shrink to
# the same small checks and run the same probes, so each is sent to the sandbox once per run. (It is
# evidence only, judged afresh each time; a submission that answers differently can only blur its own
# diagnosis, never a score.)
_CACHE: weakref.WeakKeyDictionary[Any, dict[str, RunResult]] = weakref.WeakKeyDictionary()
_GAVE_UP: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
_SPENT: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()   # sandbox seconds, per executor


def to_report_diagnosis(found: dict[str, Any] | None) -> TestDiagnosis | None:
    """The stashed diagnosis as the report keeps it (``Report.build`` groups them)."""
    if not found:
        return None
    return TestDiagnosis(**{k: v for k, v in found.items() if k in TestDiagnosis.model_fields})
