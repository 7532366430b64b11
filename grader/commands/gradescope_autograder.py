"""``grader gradescope-autograder -o autograder.zip``: the zip to upload as a Gradescope autograder."""

from __future__ import annotations

from pathlib import Path

import click

from grader.assignment import find_assignment
from grader.distribution.gradescope_zip import build_autograder_zip, download_wheelhouse


@click.command("gradescope-autograder")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("autograder.zip"),
              show_default=True, help="the zip to write")
@click.option("--assignment", "-a", default="autograd-lab", show_default=True, help="assignment name or folder")
@click.option("--wheels", "wheel_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="put the wheels of this folder in the zip: setup.sh then installs offline from them")
@click.option("--download-wheels", is_flag=True,
              help="download every wheel setup.sh needs (CPython 3.11, x86_64; about 250 MB) and put them in the zip")
def command(output: Path, assignment: str, wheel_dir: Path | None, download_wheels: bool) -> None:
    """Write the Gradescope autograder zip: setup.sh, run_autograder, the grader, the tests, the reference.

    STAFF ONLY: the zip holds the hidden tests and the reference solution. Upload it to
    Gradescope as the assignment's autograder; never hand it out. Rebuilding it from the same
    files gives the same bytes (and SHA-256).
    """
    if wheel_dir is not None and download_wheels:
        raise click.UsageError("pass either --wheels DIR or --download-wheels, not both")
    asg = find_assignment(assignment)
    wheels = sorted(wheel_dir.glob("*.whl")) if wheel_dir is not None else None
    if download_wheels:
        from grader.sandbox.image import cache_dir

        wheels = download_wheelhouse(cache_dir() / "wheels")
    digest = build_autograder_zip(asg, output, wheels=wheels)
    size = output.stat().st_size
    click.echo(f"wrote {output} ({size / 1e6:.1f} MB, sha256 {digest})")
    click.echo(f"  assignment {asg.name}: public and hidden tests, the reference; "
               + (f"{len(wheels)} wheels (offline install)" if wheels else "pip installs from PyPI on Gradescope"))
    click.echo("  staff only: it holds the hidden tests and the reference solution", err=True)
