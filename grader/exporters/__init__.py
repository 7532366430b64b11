"""Exporters: pure functions from reports to the formats that LMSs and CI read.

Each format lives in its own module and knows the report model; the model knows none of
them. ``EXPORTERS`` is the table a command picks from by name:

    exporter = EXPORTERS["gradescope"]
    text = exporter.render(reports)      # a list of reports; single-report formats take one

| name               | reads        | writes                                     |
|--------------------|--------------|--------------------------------------------|
| ``gradescope``     | one report   | Gradescope ``results.json``                |
| ``junit``          | one report   | JUnit XML                                  |
| ``github-classroom`` | one report | GitHub Classroom runner result (JSON; base64 it with ``github_classroom.encode``) |
| ``canvas``         | many reports | Canvas gradebook import CSV                |
| ``summary-csv``    | many reports | class summary CSV                          |
| ``html``           | many reports | self-contained HTML class report for staff |
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from grader.exporters import canvas, github_classroom, gradescope_results, html_report, junit, summary_csv
from grader.report import Report


@dataclass(frozen=True)
class Exporter:
    """One output format."""

    name: str
    suffix: str          # file name suffix of its output
    per_report: bool     # True: one output per report; False: one output for a class
    description: str
    _one: Callable[[Report], str] | None = None
    _many: Callable[[Sequence[Report]], str] | None = None

    def render(self, reports: Sequence[Report]) -> str:
        """The format's text for ``reports`` (exactly one report if ``per_report``)."""
        if self._many is not None:
            return self._many(reports)
        assert self._one is not None
        if len(reports) != 1:
            raise ValueError(f"the {self.name} format takes one report, not {len(reports)}")
        return self._one(reports[0])


EXPORTERS: dict[str, Exporter] = {
    e.name: e
    for e in (
        Exporter("gradescope", ".json", True, "Gradescope results.json", _one=gradescope_results.dumps),
        Exporter("junit", ".xml", True, "JUnit XML for CI", _one=junit.to_junit_xml),
        Exporter("github-classroom", ".json", True, "GitHub Classroom runner result", _one=github_classroom.dumps),
        Exporter("canvas", ".csv", False, "Canvas gradebook import CSV", _many=canvas.to_canvas_csv),
        Exporter("summary-csv", ".csv", False, "class summary CSV", _many=summary_csv.to_summary_csv),
        Exporter("html", ".html", False, "HTML class report for staff", _many=html_report.to_html),
    )
}

__all__ = ["EXPORTERS", "Exporter", "canvas", "github_classroom", "gradescope_results", "html_report", "junit",
           "summary_csv"]
