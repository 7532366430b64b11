"""``grader grade SUBMISSION``: public + hidden tests in a sandbox; writes the JSON report."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from grader.assignment import find_assignment
from grader.errors import ExitStatus
from grader.report import write_report
from grader.grading.runner import GradeRequest, grade
from grader.terminal import print_report


@click.command("grade")
@click.argument("submission", type=click.Path(path_type=Path))
@click.option("--assignment", "-a", default="autograd-lab", show_default=True, help="assignment name or folder")
@click.option("--backend", type=click.Choice(["local", "docker"]), default="docker", show_default=True,
              help="sandbox: a hardened Docker container, or a local subprocess with rlimits")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="write the JSON report here (default: report.json)")
@click.option("--seed", type=int, default=None, help="seed of the Programs (default: the assignment's)")
@click.option("--student", default=None, help="student id recorded in the report")
@click.option("--part", "parts", multiple=True, help="only this part (repeatable); max_score is then that part's")
@click.option("--quiet", "-q", is_flag=True, help="print only the score line")
def command(submission: Path, assignment: str, backend: str, output: Path | None, seed: int | None,
            student: str | None, parts: tuple[str, ...], quiet: bool) -> None:
    """Grade SUBMISSION with the public and hidden tests and write its JSON report.

    Exit status: 0 full marks, 1 some test failed, 3 the submission could not be graded.
    """
    asg = find_assignment(assignment)
    image = None
    if backend == "docker":
        from grader.sandbox.image import ensure_image  # the Docker SDK: docker only

        image = ensure_image()  # built or found once; the sandboxes use exactly this tag
    console = Console(stderr=quiet)
    with console.status(f"grading {submission} ({backend} sandbox)..."):
        result = grade(GradeRequest(asg, submission, backend=backend, seed=seed, student=student, image=image,
                                    parts=parts))
    report = result.report
    path = write_report(report, output or Path("report.json"))
    if not quiet:
        print_report(report, console, failure_limit=5)
    click.echo(f"{report.score:g}/{report.max_score:g} -> {path}")
    if report.error is not None:
        raise SystemExit(ExitStatus.BAD_SUBMISSION)
    raise SystemExit(ExitStatus.OK if report.score >= report.max_score else ExitStatus.TESTS_FAILED)
