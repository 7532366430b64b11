"""A long-lived grading process: ``python -m grader.grading.service --fd N --parent PID``.

It imports the grader, pytest and torch once, then grades one job after another, each in its
own fresh sandbox (``grader.grading.job.grade_job``); the reference's sandbox, which sees staff
code only, is kept from one job to the next (``grader.grading.kept_reference``). Its parent (the
batch's client, or a Dask worker) talks to it over a socket inherited as fd N, in length-prefixed messages of JSON
(``multiprocessing.connection``'s ``send_bytes``/``recv_bytes``: nothing is pickled either way):

    request  {"job": <GradingJob>, "assignment_root": "/path", }
    reply    {"report": "<report JSON text>"}
           | {"refused": {"message": ..., "hint": ...}}   this job cannot be graded here, by no fault
                                                          of the student (digest or image mismatch)
           | {"error": {"message": ...}}                  the grader failed on this submission

When its parent dies (even by ``kill -9``) it notices within half a second, stops the grading
in progress (a KeyboardInterrupt: pytest's session ends, the sandboxes are closed) and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from grader.assignment import Assignment, load_assignment
from grader.errors import GraderError, SandboxError
from grader.grading import kept_reference
from grader.grading.job import GradingJob, JobRefused, check_assignment, grade_job, grader_digest

ORPHAN_CHECK_S = 0.5
ORPHAN_GRACE_S = 30.0


class Service:
    """What the process keeps between jobs: the checked assignments, its digest, the image."""

    def __init__(self) -> None:
        self.assignments: dict[tuple[str, str], Assignment] = {}
        self.digest = grader_digest()
        self.image: str | None = None                   # docker: the sandbox image tag, checked once

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            job = GradingJob.model_validate(request["job"])
            if job.grader_digest != self.digest:
                raise JobRefused(f"this worker's grader (digest {self.digest[:12]}) differs from the client's "
                                 f"(digest {job.grader_digest[:12]})",
                                 hint="install the same version of the grader on the workers as on the client")
            assignment = self.assignment(str(request["assignment_root"]), job.assignment_digest)
            try:
                image = self.image_for(job)
            except SandboxError as exc:      # no Docker here, or the image cannot be built
                raise JobRefused(f"this worker cannot run Docker sandboxes: {exc}", hint=exc.hint) from None
            return {"report": grade_job(job, assignment, image=image)}
        except JobRefused as exc:
            return {"refused": {"message": str(exc), "hint": exc.hint}}
        except GraderError as exc:
            return {"error": {"message": f"{exc}" + (f"\nhint: {exc.hint}" if exc.hint else "")}}
        except Exception as exc:  # noqa: BLE001 - reported as this submission's sandbox-error
            return {"error": {"message": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-3000:]}"}}

    def assignment(self, root: str, digest: str) -> Assignment:
        key = (root, digest)
        if key not in self.assignments:
            assignment = load_assignment(Path(root))
            check_assignment(assignment, digest)
            self.assignments[key] = assignment
        return self.assignments[key]

    def image_for(self, job: GradingJob) -> str | None:
        """Docker: this machine's image for this grader (built if missing), refused if not the client's."""
        if job.backend != "docker":
            return None
        if self.image is None:
            from grader.sandbox.image import ensure_image  # the Docker SDK: docker only

            self.image = ensure_image()
        if job.image_tag is not None and self.image != job.image_tag:
            raise JobRefused(f"this worker's sandbox image is {self.image}, the batch grades with {job.image_tag}",
                             hint="the worker's grader files differ from the client's: update the worker")
        return self.image       # the sandboxes use exactly this tag; the report records it as tag@id


def watch_parent(parent: int) -> None:
    """SIGALRM every half second: once ``parent`` is gone, interrupt the grading, then exit."""
    orphaned_at: list[float] = []

    def check(signum: int, frame: object) -> None:
        if os.getppid() == parent:
            return
        if not orphaned_at:
            orphaned_at.append(time.monotonic())
            raise KeyboardInterrupt
        if time.monotonic() - orphaned_at[0] > ORPHAN_GRACE_S:
            os._exit(1)

    signal.signal(signal.SIGALRM, check)
    signal.setitimer(signal.ITIMER_REAL, ORPHAN_CHECK_S, ORPHAN_CHECK_S)


def warm_up() -> None:
    """Pay the imports once, before the first job: the suites' modules are imported per job."""
    import grader.grading.pytest_plugin  # noqa: F401
    try:
        import grader.programs.diagnose  # noqa: F401 - torch, and the diagnosis's own modules
        import torch

        x = torch.ones(2, dtype=torch.float64, requires_grad=True)
        torch.autograd.grad((x * x).sum(), [x])   # its first call imports sympy and torch.fx: a second
    except ImportError:  # pragma: no cover - a student's install; the suites will say so
        pass


def serve(conn: Connection, parent: int) -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    watch_parent(parent)
    if os.getppid() != parent:
        return 1
    try:
        warm_up()
        kept_reference.enable()     # the reference's sandbox is kept from one job to the next
        service = Service()
        while True:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                return 0
            reply = service.handle(json.loads(data))
            conn.send_bytes(json.dumps(reply).encode("utf-8"))
    except KeyboardInterrupt:
        return 130
    except (BrokenPipeError, ConnectionResetError):
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.grading.service")
    parser.add_argument("--fd", type=int, required=True, help="the socket to the parent")
    parser.add_argument("--parent", type=int, required=True, help="the parent's pid (exit when it is gone)")
    args = parser.parse_args(argv)
    return serve(Connection(args.fd), args.parent)


if __name__ == "__main__":
    sys.exit(main())
