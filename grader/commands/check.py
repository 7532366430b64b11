"""``grader check [PATH]``: a student's public tests, in the local sandbox, with readable feedback."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from grader.assignment import find_assignment
from grader.errors import ExitStatus
from grader.grading.executors import TORCH_HINT, TorchMissing, torch_installed
from grader.grading.runner import GradeRequest, grade
from grader.terminal import print_report


@click.command("check")
@click.argument("path", type=click.Path(path_type=Path), default=".")
@click.option("--assignment", "-a", default="autograd-lab", show_default=True, help="assignment name or folder")
@click.option("--part", "parts", multiple=True, help="only this part (repeatable): ops, mlp, graph, training, speed")
@click.option("--seed", type=int, default=None, help="seed of the Programs (default: the assignment's)")
def command(path: Path, assignment: str, parts: tuple[str, ...], seed: int | None) -> None:
    """Run the public tests on PATH (a folder with autograd.py, a .py, a .zip or an .ipynb).

    Exit status 0 iff every public test passes.
    """
    asg = find_assignment(assignment)
    if seed is not None and seed != asg.config.seed and not torch_installed():
        # torch's results ship for the assignment's seed only; any other seed needs torch itself
        raise TorchMissing(f"--seed {seed} needs torch, which is not installed (torch.autograd's results come "
                          f"with the assignment for its own seed, {asg.config.seed}, only)", hint=TORCH_HINT)
    console = Console()
    with console.status("running the public tests..."):
        # speed as a student's bundle judges it: each timed Program within its time limit, no reference
        # sandbox (one worker, not two); the graded run compares with the staff solution
        result = grade(GradeRequest(asg, path, backend="local", seed=seed, visible_only=True, parts=parts,
                                    speed_reference=False))
    report = result.report
    print_report(report, console, hidden_not_run=result.hidden_not_run)
    ok = report.status == "graded" and all(t.status == "passed" for t in report.tests)
    raise SystemExit(ExitStatus.OK if ok else (ExitStatus.TESTS_FAILED if report.error is None
                                               else ExitStatus.BAD_SUBMISSION))
