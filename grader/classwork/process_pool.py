"""The strictest executor: one fresh ``grader grade`` process per submission (a ``GradingPool``).

Slower than ``LocalPool`` (every submission pays interpreter start, the torch import and the
image check again) but nothing at all survives from one submission to the next. The batch uses
it when it is given a command line factory (``run_batch(..., command=...)``).

Children die with the batch: the kernel sends them SIGINT when it dies (``PR_SET_PDEATHSIG``),
and SIGINT unwinds ``grader grade`` through its ``finally`` blocks, which stop its sandbox; a
stuck one gets SIGKILL after a grace period. One thread only: ``preexec_fn`` is only safe so.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from grader.classwork.pool import STOP_GRACE_S, Finished, failure
from grader.errors import ExitStatus
from grader.grading.job import GradingJob

STOP_SIGNAL = signal.SIGINT
"""KeyboardInterrupt in ``grader grade``: ``finally`` blocks run (a default SIGTERM would skip them)."""
_GRADE_WROTE_REPORT = {int(ExitStatus.OK), int(ExitStatus.TESTS_FAILED), int(ExitStatus.BAD_SUBMISSION)}

ArgvFactory = Callable[[str, Path], list[str]]
"""(key, where the report goes) -> the command line that grades that submission."""


@dataclass
class _Job:
    key: str
    proc: subprocess.Popen[bytes]
    out: Path
    log: Path
    started: float
    timeout_s: float
    stop_sent: float | None = None


class SubprocessPool:
    """Up to ``jobs`` ``grader grade`` processes at once, each writing its report to a temp file."""

    def __init__(self, jobs: int, workdir: Path, argv_for: ArgvFactory) -> None:
        self.jobs, self.workdir, self.argv_for = jobs, workdir, argv_for
        workdir.mkdir(parents=True, exist_ok=True)
        self.running: list[_Job] = []

    def free_slots(self) -> int:
        return self.jobs - len(self.running)

    def submit(self, key: str, job: GradingJob) -> None:
        out, log = self.workdir / f"{key}.json", self.workdir / f"{key}.log"
        with open(log, "wb") as log_fh:
            proc = subprocess.Popen(self.argv_for(key, out), stdin=subprocess.DEVNULL, stdout=log_fh,
                                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                    preexec_fn=functools.partial(_die_with_parent, os.getpid()))
        self.running.append(_Job(key, proc, out, log, time.monotonic(), job.timeout_s))

    def wait(self, timeout: float) -> list[Finished]:
        time.sleep(timeout)
        done = [f for job in self.running if (f := self._step(job)) is not None]
        keys = {f.key for f in done}
        self.running = [job for job in self.running if job.key not in keys]
        return done

    def _step(self, job: _Job) -> Finished | None:
        now = time.monotonic()
        if job.proc.poll() is not None:
            envelope = self._envelope(job)
            for tmp in (job.out, job.log):
                tmp.unlink(missing_ok=True)
            return Finished(job.key, envelope, now - job.started)
        if now - job.started > job.timeout_s and job.stop_sent is None:
            job.stop_sent = now
            signal_group(job.proc, STOP_SIGNAL)
        elif job.stop_sent is not None and now - job.stop_sent > STOP_GRACE_S:
            signal_group(job.proc, signal.SIGKILL)
        return None

    def _envelope(self, job: _Job) -> dict:
        if job.stop_sent is not None:
            return failure("grading-timeout", f"grading took longer than the batch's bound of {job.timeout_s:g} s "
                                              "of wall-clock time, so it was stopped")
        problem = _exit_problem(job.proc.returncode)
        if problem is None:
            try:
                return {"report": job.out.read_text(encoding="utf-8")}
            except (OSError, UnicodeDecodeError) as err:
                problem = f"its report is unreadable: {err}"
        return failure("grader-crashed", f"the grading process failed ({problem})\n{_tail(job.log)}")

    def close(self) -> None:
        stop_jobs([job.proc for job in self.running])
        self.running = []


def _exit_problem(code: int | None) -> str | None:
    """None when ``grader grade`` exited as it does after writing its report."""
    if code in _GRADE_WROTE_REPORT:
        return None
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _tail(log: Path, lines: int = 25, limit: int = 4000) -> str:
    try:
        text = log.read_bytes()[-limit:].decode("utf-8", "replace")
    except OSError:
        return ""
    shown = "\n".join(text.splitlines()[-lines:]).strip()
    return f"its last output:\n{shown}" if shown else "it printed nothing"


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the process group a grading process leads (it runs in its own session)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_jobs(procs: Iterable[subprocess.Popen[bytes]], grace: float = STOP_GRACE_S) -> None:
    """SIGINT (the graders stop their sandboxes), then SIGKILL whoever is left after ``grace``."""
    procs = list(procs)
    for proc in procs:
        signal_group(proc, STOP_SIGNAL)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        signal_group(proc, signal.SIGKILL)
        proc.wait()


_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent(parent: int) -> None:
    """In the child before exec: get SIGINT when the batch dies, even by ``kill -9``.

    SIGINT is set back to its default first: a batch started in the background by a shell
    inherits it ignored, and Python would then never turn it into KeyboardInterrupt.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(STOP_SIGNAL), 0, 0, 0)
    if os.getppid() != parent:  # the batch died before prctl took effect
        os.kill(os.getpid(), STOP_SIGNAL)
