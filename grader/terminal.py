"""Readable terminal output of a grading run (rich): parts, tests, failures with their explanation."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from grader.report import Report

STATUS_STYLE = {"passed": "green", "failed": "red", "error": "red", "timeout": "yellow"}
MAX_FAILURE_LINES = 80


def _points(x: float) -> str:
    return f"{x:g}"


def parts_table(report: Report) -> Table:
    table = Table(title=f"{report.assignment.title}: score by part", title_justify="left")
    for col, kw in (("part", {}), ("score", {"justify": "right"}), ("tests passed", {"justify": "right"})):
        table.add_column(col, **kw)
    for name, part in report.parts.items():
        style = "green" if part.passed == part.total else "red"
        table.add_row(name, f"{_points(part.score)} / {_points(part.max_score)}",
                      Text(f"{part.passed} / {part.total}", style=style))
    table.add_row("[b]total[/b]", f"[b]{_points(report.score)} / {_points(report.max_score)}[/b]", "")
    return table


def tests_table(report: Report) -> Table:
    table = Table(show_header=True, box=None, pad_edge=False)
    table.add_column("status")
    table.add_column("test")
    table.add_column("points", justify="right")
    for t in report.tests:
        table.add_row(Text(t.status.upper(), style=STATUS_STYLE[t.status]), Text(t.name),  # "[N1]" is no markup
                      f"{_points(t.score)}/{_points(t.max_score)}")
    return table


def failure_panels(report: Report, limit: int | None = None) -> list[Panel]:
    panels = []
    failed = [t for t in report.tests if t.status != "passed"]
    for t in failed[:limit]:
        lines = t.output.splitlines()
        body = "\n".join(lines[:MAX_FAILURE_LINES])
        if len(lines) > MAX_FAILURE_LINES:
            body += f"\n... ({len(lines) - MAX_FAILURE_LINES} more lines in the JSON report)"
        panels.append(Panel(Text(body), title=f"[{STATUS_STYLE[t.status]}]{t.status.upper()}[/] {escape(t.name)}",
                            title_align="left", subtitle=f"part {t.part}", subtitle_align="right"))
    return panels


def print_report(report: Report, console: Console, *, show_failures: bool = True,
                 hidden_not_run: int = 0, failure_limit: int | None = None) -> None:
    if report.error is not None:
        console.print(Panel(Text(report.error.message + (f"\nhint: {report.error.hint}" if report.error.hint else "")),
                            title=f"[red]the submission could not be graded: {report.error.code}[/red]",
                            title_align="left"))
    if report.tests:
        console.print(tests_table(report))
    if show_failures:
        for panel in failure_panels(report, failure_limit):
            console.print(panel)
    if report.stdout.strip():
        console.print(Panel(Text(report.stdout[-4000:]), title="your code printed (captured, last lines)",
                            title_align="left"))
    console.print(parts_table(report))
    if hidden_not_run:
        console.print(f"[dim]{hidden_not_run} hidden tests exist and were not run: staff run them when grading, "
                      "with other shapes and seeds. Passing every public test is necessary, not sufficient.[/dim]")
