"""``grader batch SUBMISSIONS -o OUTDIR``: grade a class, N submissions at a time, resumably."""

from __future__ import annotations

import signal
import statistics
from collections import Counter
from pathlib import Path
from types import FrameType

import click
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from grader.assignment import find_assignment
from grader.classwork.batch import (CLUSTER_ENV, DEFAULT_TIMEOUT_S, BatchOptions, BatchResult, Plan, default_jobs,
                                    run_batch)
from grader.report import Report, identical_to


class RichUI:
    """The batch's progress on the terminal: a bar with ETA, and one line per finished student."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.running: list[str] = []
        # auto_refresh=False: no refresh thread, so the batch stays single-threaded (see grader.classwork.batch)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=console, auto_refresh=False)
        self.task: TaskID | None = None

    def planned(self, plan: Plan) -> None:
        twins = sum(s.leader is not None for s in plan.students)
        self.console.print(f"{len(plan.students)} students ({twins} identical submissions): "
                           f"{len(plan.kept)} reports kept, {len(plan.to_grade)} to grade, "
                           f"{len(plan.to_copy)} to copy" + (f"; {plan.outdated} outdated report(s) are redone"
                                                             if plan.outdated else ""))
        self.task = self.progress.add_task("grading", total=len(plan.to_grade) + len(plan.to_copy))
        self.progress.start()

    def started(self, student: str) -> None:
        self.running.append(student)
        self._describe()

    def finished(self, student: str, report: Report, how: str, seconds: float) -> None:
        if student in self.running:
            self.running.remove(student)
        status = report.status + (f" ({report.error.code})" if report.error else "")
        took = f"  {seconds:.1f} s" if how == "graded" else f"  = {identical_to(report)}"
        self.progress.console.print(f"{how:>7} {student}: {report.score:g}/{report.max_score:g} {status}{took}",
                                    markup=False, highlight=False)
        if self.task is not None:
            self.progress.advance(self.task)
        self._describe()

    def note(self, text: str) -> None:
        self.progress.console.print(f"note: {text}", markup=False, highlight=False)

    def tick(self) -> None:
        self.progress.refresh()

    def close(self) -> None:
        self.progress.stop()

    def _describe(self) -> None:
        if self.task is not None:
            shown = ", ".join(self.running[:3]) + (" ..." if len(self.running) > 3 else "")
            self.progress.update(self.task, description=f"grading {shown}" if shown else "grading")


def print_summary(result: BatchResult, console: Console) -> None:
    """Counts, mean and median, and failures by status: what a TA checks before publishing."""
    reports = result.reports
    pcts = [100 * r.score / r.max_score if r.max_score else 0.0 for r in reports]
    console.print(f"graded {result.graded} submission(s), copied {result.copied} identical, "
                  f"kept {len(result.plan.kept)} report(s) in {result.seconds:.1f} s", highlight=False)
    if pcts:
        console.print(f"{len(reports)} students: mean {statistics.fmean(pcts):.1f}%, "
                      f"median {statistics.median(pcts):.1f}% of the points", highlight=False)
    full = sum(r.status == "graded" and r.score >= r.max_score for r in reports)
    for status, count in sorted(Counter(r.status for r in reports).items()):
        codes = Counter(r.error.code for r in reports if r.status == status and r.error)
        detail = f" ({full} with full marks)" if status == "graded" else \
            " (" + ", ".join(f"{c} {n}" for c, n in codes.most_common()) + ")"
        console.print(f"  {status:<17}{count}{detail}", markup=False, highlight=False)
    twins = sum(identical_to(r) is not None for r in reports)
    if twins:
        console.print(f"  identical        {twins} (graded once, flagged in the summary and the HTML)",
                      markup=False, highlight=False)
    for label, path in (("reports", result.summary_csv.parent / "reports"), ("summary", result.summary_csv),
                        ("class report", result.html)):
        console.print(f"{label + ':':<14}{path}", markup=False, highlight=False)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM: stop the grading processes like Ctrl-C does


@click.command("batch")
@click.argument("submissions", type=click.Path(exists=True, path_type=Path))
@click.option("--assignment", "-a", default="autograd-lab", show_default=True, help="assignment name or folder")
@click.option("-o", "--output", "outdir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="folder for reports/, summary.csv and report.html (reused to resume)")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="submissions graded at once (default: the number of cores)")
@click.option("--backend", type=click.Choice(["local", "docker"]), default="docker", show_default=True,
              help="sandbox of each submission")
@click.option("--force", is_flag=True, help="regrade every student, even those with a current report")
@click.option("--retry-errors", is_flag=True, help="regrade the students whose report is a sandbox-error")
@click.option("--seed", type=int, default=None, help="seed of the Programs (default: the assignment's)")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=DEFAULT_TIMEOUT_S, show_default=True,
              help="wall-clock seconds one submission may take before it is stopped (sandbox-error)")
@click.option("--cluster", metavar="tcp://HOST:8786", envvar=CLUSTER_ENV, default=None,
              help=f"grade on this Dask scheduler's workers instead of on this machine (also ${CLUSTER_ENV}); "
                   "-j is then the cluster's")
def command(submissions: Path, assignment: str, outdir: Path, jobs: int | None, backend: str, force: bool,
            retry_errors: bool, seed: int | None, timeout_s: float, cluster: str | None) -> None:
    """Grade a class: SUBMISSIONS is a folder with one entry per student (a folder, .py, .zip or
    .ipynb named after the student) or a Gradescope/Canvas bulk-download zip.

    Writes OUTDIR/reports/<student>.json, OUTDIR/summary.csv and OUTDIR/report.html. Rerun the
    same command after an interruption: only students without a current report are graded.
    """
    asg = find_assignment(assignment)
    image = _prepare_docker() if backend == "docker" and not cluster else None   # workers build their own
    options = BatchOptions(asg, outdir, backend=backend, jobs=jobs or default_jobs(), force=force,
                           retry_errors=retry_errors, seed=seed, timeout_s=timeout_s, image=image,
                           cluster=cluster or None)
    console = Console(highlight=False, soft_wrap=True)  # log lines stay whole in a file or a pipe
    ui = RichUI(console)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = run_batch(submissions, options, ui)
    finally:
        ui.close()
        signal.signal(signal.SIGTERM, previous)
    print_summary(result, console)


def _prepare_docker() -> str:
    """Build (or find) the sandbox image once, not in N graders at once; clear dead graders' containers."""
    from grader.sandbox.docker_backend import cleanup_stale_containers  # needs the Docker SDK: docker only
    from grader.sandbox.image import ensure_image

    image = ensure_image()
    cleanup_stale_containers()
    return image
