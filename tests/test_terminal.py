"""The terminal tables show test names as they are: ``[scalar]`` of a parametrized test is no markup."""

from __future__ import annotations

from rich.console import Console

from grader import terminal
from tests.test_report import graded_report


def test_parametrized_names_keep_their_brackets() -> None:
    report = graded_report()
    name = "hidden/test_ops.py::test_broadcast_on_either_side[scalar]"
    tests = [report.tests[0].model_copy(update={"name": name, "status": "failed", "score": 0.0})]
    report = report.model_copy(update={"tests": tests})
    console = Console(width=200, record=True)
    console.print(terminal.tests_table(report))
    for panel in terminal.failure_panels(report):
        console.print(panel)
    assert console.export_text().count(name) == 2      # in the table and in the failure's title
