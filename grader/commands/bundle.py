"""``grader bundle student -o DIR``: what the course hands out to students (see ``grader.distribution.student_bundle``)."""

from __future__ import annotations

from pathlib import Path

import click

from grader.assignment import find_assignment
from grader.distribution.student_bundle import build_student_bundle


@click.group("bundle")
def command() -> None:
    """Folders to hand out."""


@command.command("student")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="folder to write (new or empty)")
@click.option("--assignment", "-a", default="autograd-lab", show_default=True, help="assignment name or folder")
@click.option("--template", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="the student template folder (default: the checkout's student_template/)")
@click.option("--force", is_flag=True, help="replace OUTPUT if it exists")
def student(output: Path, assignment: str, template: Path | None, force: bool) -> None:
    """The student bundle: template, handout, public tests, the grader's wheel and a README.

    Hidden tests, their seeds and the reference solution are never included: every file
    written, the wheel's members too, is scanned for them first.
    """
    bundle = build_student_bundle(find_assignment(assignment), output, template_dir=template, force=force)
    for rel in bundle.files:
        click.echo(f"  {rel}")
    click.echo(f"wrote the student bundle of {len(bundle.files)} files to {bundle.root}")
    click.echo(f"students: cd {bundle.root.name} && see README.md (pip install the wheel, then `grader check`)")
