"""Where a batch's submissions are graded: one small interface, a local and a cluster executor.

``GradingPool`` is what the batch's runner sees: ``free_slots()``, ``submit(key, job)``,
``wait(timeout)`` -> the jobs finished since, ``close()``. Each finished job is an *envelope*
of plain JSON data, the same from every executor:

    {"report": "<report JSON text>"}                     graded; the client validates it
    {"failure": {"code": ..., "message": ...}}           the grading broke down: a sandbox-error report
    {"refused": {"message": ..., "hint": ...}}           not gradable here (digests, image): the batch stops

``LocalPool`` keeps ``jobs`` long-lived grading processes (``grader.grading.service``), one per
slot: each is started with the batch (warming up while the class is read), grades one
submission after another, is stopped (SIGINT to its process group, which stops its sandboxes,
then SIGKILL) when a submission overruns the batch's wall-clock bound, and is replaced when it
dies or after ``MAX_JOBS_PER_PROCESS`` submissions (memory). The Dask executor
(``grader.classwork.cluster``) runs one of these pools on every worker.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait as wait_for_connections
from pathlib import Path
from typing import Any, Protocol

from grader.grading.job import GradingJob

STOP_GRACE_S = 30.0
MAX_JOBS_PER_PROCESS = 40
"""A grading process is replaced after this many submissions: pytest runs leave a little memory behind."""


@dataclass
class Finished:
    key: str
    envelope: dict[str, Any]
    seconds: float
    where: str = "local"


class GradingPool(Protocol):
    """Runs grading jobs somewhere; the batch's runner polls it from one thread."""

    def free_slots(self) -> int: ...
    def submit(self, key: str, job: GradingJob) -> None: ...
    def wait(self, timeout: float) -> list[Finished]: ...
    def close(self) -> None: ...


def failure(code: str, message: str) -> dict[str, Any]:
    return {"failure": {"code": code, "message": message}}


# -- one grading process ------------------------------------------------------------------


class GradingProcess:
    """``python -m grader.grading.service`` in its own session, with a socket to it and a log file."""

    def __init__(self, log: Path, argv: list[str] | None = None) -> None:
        self.log = log
        parent, child = socket.socketpair()
        argv = argv or [sys.executable, "-m", "grader.grading.service", f"--fd={child.fileno()}",
                        f"--parent={os.getpid()}"]
        with open(log, "ab") as log_fh:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_fh, stderr=subprocess.STDOUT,
                                         pass_fds=(child.fileno(),), start_new_session=True, close_fds=True)
        child.close()
        self.conn = Connection(parent.detach())
        self.jobs = 0

    def send(self, request: dict[str, Any]) -> None:
        os.truncate(self.log, 0)   # the log's tail then speaks of this job only (opened O_APPEND)
        self.jobs += 1
        try:
            self.conn.send_bytes(json.dumps(request).encode("utf-8"))
        except OSError:
            pass                   # it died: the next poll says so

    def reply(self) -> dict[str, Any] | None:
        """Its answer if one is waiting, else None (also when it died: see ``dead``)."""
        try:
            if not self.conn.poll(0):
                return None
            data = self.conn.recv_bytes()
        except (EOFError, OSError):
            return None
        value = json.loads(data)
        return value if isinstance(value, dict) else {"error": {"message": "the grading process sent garbage"}}

    @property
    def dead(self) -> bool:
        return self.proc.poll() is not None

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """SIGINT to its group (pytest ends, sandboxes close), SIGKILL after ``grace``."""
        self.conn.close()
        if self.proc.poll() is None:
            self.signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        self.signal(signal.SIGKILL)
        self.proc.wait()

    def exit_problem(self) -> str:
        code = self.proc.returncode
        if code is not None and code < 0:
            try:
                return f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit status {code}"

    def tail(self, lines: int = 25, limit: int = 4000) -> str:
        try:
            text = self.log.read_bytes()[-limit:].decode("utf-8", "replace")
        except OSError:
            return ""
        shown = "\n".join(text.splitlines()[-lines:]).strip()
        return f"its last output:\n{shown}" if shown else "it printed nothing"


# -- the local executor -------------------------------------------------------------------


@dataclass
class _Slot:
    index: int
    process: GradingProcess | None = None
    key: str | None = None
    started: float = 0.0
    timeout_s: float = 0.0
    stop_sent: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class LocalPool:
    """``jobs`` long-lived grading processes on this machine, one submission each at a time."""

    def __init__(self, jobs: int, workdir: Path, assignment_root: Path, argv: list[str] | None = None) -> None:
        self.workdir, self.assignment_root, self.argv = workdir, assignment_root, argv
        workdir.mkdir(parents=True, exist_ok=True)
        self.slots = [_Slot(i) for i in range(jobs)]
        for slot in self.slots:
            self._ensure_process(slot)     # warm up now, while the class is read

    def _ensure_process(self, slot: _Slot) -> GradingProcess:
        if slot.process is None or slot.process.dead or slot.process.jobs >= MAX_JOBS_PER_PROCESS:
            if slot.process is not None:
                slot.process.stop(grace=5.0)
            slot.process = GradingProcess(self.workdir / f"grading-process-{slot.index}.log", self.argv)
        return slot.process

    def free_slots(self) -> int:
        return sum(slot.key is None for slot in self.slots)

    def submit(self, key: str, job: GradingJob) -> None:
        slot = next(s for s in self.slots if s.key is None)
        process = self._ensure_process(slot)
        slot.key, slot.started, slot.timeout_s, slot.stop_sent = key, time.monotonic(), job.timeout_s, None
        process.send({"job": job.model_dump(mode="json"), "assignment_root": str(self.assignment_root)})

    def wait(self, timeout: float) -> list[Finished]:
        busy = [s for s in self.slots if s.key is not None and s.process is not None]
        if busy:
            wait_for_connections([s.process.conn for s in busy if not s.process.conn.closed], timeout)
        else:
            time.sleep(timeout)
        return [done for slot in busy if (done := self._check(slot)) is not None]

    def _check(self, slot: _Slot) -> Finished | None:
        process, key = slot.process, slot.key
        assert process is not None and key is not None
        now = time.monotonic()
        if slot.stop_sent is None:
            reply = process.reply()
            if reply is not None:
                return self._finish(slot, reply)
            if process.dead:
                return self._finish(slot, failure("grader-crashed", f"the grading process failed "
                                                  f"({process.exit_problem()})\n{process.tail()}"))
            if now - slot.started > slot.timeout_s:
                slot.stop_sent = now
                process.signal(signal.SIGINT)
            return None
        if process.dead or now - slot.stop_sent > STOP_GRACE_S:
            process.stop(grace=0.0)
            return self._finish(slot, failure("grading-timeout", f"grading took longer than the batch's bound of "
                                              f"{slot.timeout_s:g} s of wall-clock time, so it was stopped"))
        return None

    def _finish(self, slot: _Slot, envelope: dict[str, Any]) -> Finished:
        done = Finished(str(slot.key), envelope, time.monotonic() - slot.started)
        slot.key = None
        return done

    def close(self) -> None:
        """Stop every grading process (their sandboxes with them); logs are left to the caller."""
        processes = [s.process for s in self.slots if s.process is not None]
        for process in processes:
            process.conn.close()
            process.signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_S
        for process in processes:
            try:
                process.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            process.signal(signal.SIGKILL)
            process.proc.wait()
