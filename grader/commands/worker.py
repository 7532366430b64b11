"""``grader worker tcp://HOST:8786``: a Dask worker preloaded with the grader, ready to grade batches."""

from __future__ import annotations

import os
import sys

import click

from grader.classwork.batch import CLUSTER_ENV
from grader.errors import GraderError, SandboxError


@click.command("worker")
@click.argument("scheduler", envvar=[CLUSTER_ENV, "DASK_SCHEDULER_ADDRESS"])
@click.option("--nworkers", type=click.IntRange(min=1), default=1, show_default=True,
              help="worker processes on this machine (one submission at a time each)")
@click.option("--host", default=None, help="address to listen on (default: Dask's choice)")
@click.option("--name", default=None, help="the worker's name in the cluster")
@click.option("--backend", type=click.Choice(["docker", "local"]), default="docker", show_default=True,
              help="docker: build the sandbox image now (and refuse to start without Docker)")
def command(scheduler: str, nworkers: int, host: str | None, name: str | None, backend: str) -> None:
    """Start a Dask worker for `grader batch --cluster SCHEDULER` (Dask's own `dask worker`,
    one task thread per process, with grader.classwork.cluster as its preload)."""
    if backend == "docker":
        _ensure_image()
    argv = [sys.executable, "-m", "dask", "worker", scheduler, "--nthreads", "1", "--nworkers", str(nworkers),
            "--preload", "grader.classwork.cluster", "--no-dashboard"]
    argv += ["--host", host] if host else []
    argv += ["--name", name] if name else []
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise GraderError("`grader worker` needs Dask distributed, which is not installed",
                          hint="pip install 'autograd-lab-grader[cluster]'") from None
    sys.stdout.flush()
    os.execv(sys.executable, argv)


def _ensure_image() -> None:
    """Build the sandbox image for this grader now (a no-op when current), or say why this worker cannot."""
    try:
        from grader.sandbox.image import ensure_image

        tag = ensure_image()
    except (ImportError, SandboxError) as err:
        raise SandboxError(f"this worker cannot run Docker sandboxes: {err}",
                           hint="start Docker (bash scripts/install-docker.sh), or, only inside a machine that "
                                "is itself a locked-down container, `grader worker --backend local`") from None
    click.echo(f"grader worker: sandbox image {tag} ready", err=True)
