"""A Canvas gradebook import CSV from a class's reports.

What Canvas's gradebook importer (canvas-lms ``app/models/gradebook_importer.rb``) and its
guide ("How do I import grades in the Gradebook?") expect:

- a header row beginning ``Student``, ``ID``, then ``SIS User ID``, ``SIS Login ID``, and
  ending the student columns with ``Section``; every column after is an assignment;
- an assignment column is named ``Title (canvas id)``: with a known id Canvas updates
  that assignment, else it matches by title, else it creates a new assignment;
- an optional row whose first cell is ``Points Possible`` gives each assignment's points;
- a student row is matched by ``ID`` (the Canvas user id), then ``SIS User ID``, then
  ``SIS Login ID``, then by name; a blank score changes nothing;
- Canvas compares scores at two decimals, so scores are written with at most two.

The report's ``student`` field goes in the column the course identifies students by
(``id_column``; default ``SIS Login ID``). A report whose sandbox failed is a fault of
the grader, not of the student: its cell is left blank (no change in Canvas) rather than
written as 0. A submission error is a real 0.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Literal

from grader.report import Report

HEADER = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
POINTS_POSSIBLE = "Points Possible"
IdColumn = Literal["ID", "SIS User ID", "SIS Login ID"]


def to_canvas_csv(
    reports: Iterable[Report],
    assignment_column: str | None = None,
    *,
    id_column: IdColumn = "SIS Login ID",
    points_possible_row: bool = True,
) -> str:
    """The CSV text for Canvas's gradebook import.

    ``assignment_column`` is the header of the score column, ideally ``"Title (id)"`` as
    in a Canvas gradebook export; it defaults to the assignment's title. Every report
    must name its ``student`` and be for the same assignment; ``ValueError`` otherwise.
    """
    reports = list(reports)
    column = assignment_column or _assignment_title(reports)
    if id_column not in HEADER[1:4]:
        raise ValueError(f"id_column must be one of {HEADER[1:4]}, not {id_column!r}")
    _check(reports)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*HEADER, column])
    if points_possible_row:
        writer.writerow([POINTS_POSSIBLE, "", "", "", "", _points(max((r.max_score for r in reports), default=0.0))])
    for report in reports:
        row = dict.fromkeys(HEADER, "")
        row[id_column] = report.student or ""
        score = "" if report.status == "sandbox-error" else _points(report.score)
        writer.writerow([*row.values(), score])
    return out.getvalue()


def _assignment_title(reports: list[Report]) -> str:
    if not reports:
        raise ValueError("no reports: name the assignment column")
    return reports[0].assignment.title or reports[0].assignment.name


def _check(reports: list[Report]) -> None:
    names = {r.assignment.name for r in reports}
    if len(names) > 1:
        raise ValueError(f"reports of several assignments cannot share a column: {sorted(names)}")
    seen: set[str] = set()
    for report in reports:
        if not report.student:
            raise ValueError("a report has no student identifier: grade with batch to name students")
        if report.student in seen:
            raise ValueError(f"student {report.student!r} has more than one report")
        seen.add(report.student)


def _points(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")
