"""A class summary CSV: one row per report, for TAs and spreadsheets.

Columns: ``student``, ``assignment``, ``status``, ``score``, ``max_score``, one
``part:<name>`` column per part (the part's score; blank where a report has no such
part), ``tests_passed``, ``tests_total``, ``total_seconds``, ``error_code``.
Parts appear in the order they are first met across the reports.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from grader.report import Report

LEADING = ("student", "assignment", "status", "score", "max_score")
TRAILING = ("tests_passed", "tests_total", "total_seconds", "error_code")
PART_PREFIX = "part:"


def to_summary_csv(reports: Iterable[Report]) -> str:
    """The CSV text (with a header row, even for no reports)."""
    reports = list(reports)
    parts = list(dict.fromkeys(name for r in reports for name in r.parts))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180; quotes any CR or LF in a field
    writer.writerow([*LEADING, *(PART_PREFIX + p for p in parts), *TRAILING])
    for r in reports:
        writer.writerow(
            [
                r.student or "",
                r.assignment.name,
                r.status,
                _num(r.score),
                _num(r.max_score),
                *(_num(r.parts[p].score) if p in r.parts else "" for p in parts),
                sum(t.status == "passed" for t in r.tests),
                len(r.tests),
                f"{r.timings.total_seconds:.3f}",
                r.error.code if r.error else "",
            ]
        )
    return out.getvalue()


def _num(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".")
