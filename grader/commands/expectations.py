"""``grader expectations build|check``: torch's answers of the suites' Programs, stored for the assignment's seed."""

from __future__ import annotations

import time

import click

from grader.assignment import find_assignment
from grader.errors import GraderError
from grader.grading import expectations_build


@click.group("expectations")
def command() -> None:
    """torch's results of the suites' Programs at the assignment's seed (so `grader check` needs no torch)."""


@command.command("build")
@click.option("--assignment", "-a", default="autograd-lab", show_default=True, help="assignment name or folder")
@click.option("--backend", default="local", show_default=True, type=click.Choice(["local", "docker"]))
def build(assignment: str, backend: str) -> None:
    """Run the suites on the reference with live torch; write ASSIGNMENT/expectations/{public,hidden}.{json,npz}."""
    asg, start = find_assignment(assignment), time.monotonic()
    counts = expectations_build.record(asg, asg.expectations_dir, backend)
    for name, n in counts.items():
        click.echo(f"{asg.expectations_dir / name}.json, .npz: {n} Programs")
    click.echo(f"grader: expectations built in {time.monotonic() - start:.1f}s", err=True)


@command.command("check")
@click.option("--assignment", "-a", default="autograd-lab", show_default=True, help="assignment name or folder")
@click.option("--backend", default="local", show_default=True, type=click.Choice(["local", "docker"]))
def check(assignment: str, backend: str) -> None:
    """Rebuild with live torch into a scratch folder; fail if the stored files differ (for CI)."""
    asg = find_assignment(assignment)
    problems = expectations_build.check(asg, backend)
    if problems:
        raise GraderError("the stored expectations differ from a fresh torch run:\n" + "\n".join(problems),
                          hint="rebuild them with `grader expectations build` and commit the files")
    click.echo(f"grader: {asg.expectations_dir} matches a fresh torch run")
