"""Readable terminal output of a grading run (rich): parts, tests, failures with their explanation."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from grader.programs.compare import DIFFERS_FROM_TORCH
from grader.programs.diagnosis import FULL_REPRODUCER_START, group_sentence, lead_text
from grader.report import Report, TestResult

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


def diagnosis_lead(report: Report) -> Text | None:
    """``7 tests fail, all through mul's backward (...)``, then one line of advice per cause."""
    failed = [t for t in report.tests if t.status != "passed"]
    if not failed or not report.diagnosis:
        return None
    text = Text(group_sentence(len(failed), [(g.summary, len(g.tests)) for g in report.diagnosis]) + "\n",
                style="bold")
    for g in report.diagnosis[:3]:
        text.append(f"  {g.summary}: ", style="bold")
        text.append(f"{g.advice}\n")
    return text


NO_TORCH_HINT = ("no diagnosis: naming the op whose backward is wrong needs torch on this machine "
                 "(pip install torch; the CPU build is enough), then run grader check again")


def no_diagnosis_hint(report: Report) -> str | None:
    """Why a report with gradient mismatches has no diagnosis, when the reason is on this machine:
    the diagnosis compares each op's backward with torch's, and a student install has no torch."""
    from grader.grading.executors import torch_installed  # noqa: PLC0415 - the sandbox layer, only when needed

    mismatched = any(DIFFERS_FROM_TORCH in t.output for t in report.tests if t.status != "passed")
    if not mismatched or report.diagnosis or torch_installed():
        return None
    return NO_TORCH_HINT


def failure_text(t: TestResult, full_reproducer: bool = False, shown_in: str | None = None) -> str:
    """A failure's feedback: its diagnosis and shrunk reproducer first, then the explanation (whose
    full reproducer is folded when a shrunk one is shown, unless ``full_reproducer``). ``shown_in``:
    the test above whose panel already printed this diagnosis's reproducer."""
    d = t.diagnosis
    if d is None:
        return t.output
    if shown_in:
        lead = lead_text(d.summary, d.case, d.detail, "", None) + f"\n  (the same diagnosis as {shown_in}: see above)"
    else:
        lead = lead_text(d.summary, d.case, d.detail, d.advice, d.reproducer)
    explanation = t.output
    if d.reproducer and not full_reproducer and FULL_REPRODUCER_START in explanation:
        explanation = (explanation.split(FULL_REPRODUCER_START, 1)[0].rstrip() +
                       "\n\n(the reproducer of the whole test: grader check --full-reproducer, or the JSON report)")
    return f"{lead}\n\nthe failing test:\n{explanation}"


def failure_panels(report: Report, limit: int | None = None, full_reproducer: bool = False) -> list[Panel]:
    panels = []
    failed = [t for t in report.tests if t.status != "passed"]
    first_with: dict[str, str] = {}
    for t in failed[:limit]:
        shown_in = first_with.get(t.diagnosis.key) if t.diagnosis else None
        if t.diagnosis and shown_in is None:
            first_with[t.diagnosis.key] = t.name
        lines = failure_text(t, full_reproducer, shown_in).splitlines()
        body = "\n".join(lines[:MAX_FAILURE_LINES])
        if len(lines) > MAX_FAILURE_LINES:
            body += f"\n... ({len(lines) - MAX_FAILURE_LINES} more lines in the JSON report)"
        panels.append(Panel(Text(body), title=f"[{STATUS_STYLE[t.status]}]{t.status.upper()}[/] {escape(t.name)}",
                            title_align="left", subtitle=f"part {t.part}", subtitle_align="right"))
    return panels


def print_report(report: Report, console: Console, *, show_failures: bool = True,
                 hidden_not_run: int = 0, failure_limit: int | None = None, full_reproducer: bool = False) -> None:
    if report.error is not None:
        console.print(Panel(Text(report.error.message + (f"\nhint: {report.error.hint}" if report.error.hint else "")),
                            title=f"[red]the submission could not be graded: {report.error.code}[/red]",
                            title_align="left"))
    lead = diagnosis_lead(report)
    if lead is not None:
        console.print(Panel(lead, title="[red]diagnosis[/red]", title_align="left"))
    elif (hint := no_diagnosis_hint(report)) is not None:
        console.print(Text(hint, style="dim"))
    if report.tests:
        console.print(tests_table(report))
    if show_failures:
        for panel in failure_panels(report, failure_limit, full_reproducer):
            console.print(panel)
    if report.stdout.strip():
        console.print(Panel(Text(report.stdout[-4000:]), title="your code printed (captured, last lines)",
                            title_align="left"))
    console.print(parts_table(report))
    if hidden_not_run:
        console.print(f"[dim]{hidden_not_run} hidden tests exist and were not run: staff run them when grading, "
                      "with other shapes and seeds. Passing every public test is necessary, not sufficient.[/dim]")
