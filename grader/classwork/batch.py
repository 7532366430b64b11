"""Grading a class: every submission graded once, N at a time, resumable, locally or on a Dask cluster.

``run_batch(source, options, ui)`` reads the class (``grader.classwork.roster``), loads each
submission on the host (never running it) for its hash and staged files, and hands each one to
a ``GradingPool`` (``grader.classwork.pool``) as a ``GradingJob``: plain data (the staged bytes,
hashed; the seed; the digests of the assignment, the grader and the image). The pool grades it
in a long-lived grading process on this machine (``LocalPool``, one per ``-j`` slot), on a Dask
worker (``ClusterPool``, ``--cluster``), or in one ``grader grade`` process per submission
(``SubprocessPool``, when a command factory is given). Back comes the report as JSON text,
which this client alone validates (schema and model), completes with its own record of the
submission (kind, notes, ignored files) and installs as ``OUTDIR/reports/<student>.json``
(atomically). A grading that dies or overruns gives the student a ``sandbox-error`` report that
says what happened; a worker that refuses the job (other assignment, grader or image) stops the
batch with nothing written for that student.

Crash safety, for a batch killed at any moment (even ``kill -9`` of it and its children):

- a report exists whole or not at all (temp file + ``os.replace``); temp files live under names
  that the next run removes before it starts;
- a rerun grades only students without a *current* report: one that validates and was made for
  this student, assignment, seed and backend, from the same submission (same SHA-256); so
  nothing is lost and nothing is graded twice. ``force`` regrades everything,
  ``retry_errors`` the ``sandbox-error`` reports;
- grading processes die with the batch (they watch their parent, and stop their sandboxes);
  a Dask cluster forgets the tasks of a client that is gone;
- ``OUTDIR/.batch.lock`` is held with ``flock``, which the kernel releases when its holder dies,
  so two batches never share an OUTDIR and the lock of a dead batch is simply taken over.

Identical submissions (same ``Submission.sha256``) are graded once: the others get a copy of
that report with their own student id and submission details, and the note
``identical to the submission of <id>``. ``OUTDIR/batch.log.jsonl`` records every run and every
report it wrote (with the wall-clock time of each grading and where it ran), so a rerun's work
can be checked. At the end come ``OUTDIR/summary.csv`` and ``OUTDIR/report.html``.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Protocol, Sequence

from grader.assignment import Assignment
from grader.classwork.roster import Roster, RosterEntry, read_class
from grader.errors import ExitStatus, GraderError, SubmissionError
from grader.exporters.html_report import to_html
from grader.exporters.summary_csv import to_summary_csv
from grader.classwork.pool import Finished, GradingPool, LocalPool, failure
from grader.classwork.process_pool import SubprocessPool
from grader.grading.job import (AssignmentBundle, GradingJob, assignment_bundle, files_digest, grader_digest,
                                make_job, staged_files)
from grader.grading.provenance import environment
from grader.grading.runner import GradeRequest, grade
from grader.grading.submission import load_submission
from grader.report import (IDENTICAL_PREFIX, Assignment as ReportAssignment, Report, ReportError, SubmissionErrorInfo,
                           SubmissionFile, SubmissionInfo, Timings, identical_to, load_report, report_from_json,
                           write_report)

DEFAULT_TIMEOUT_S = 3600.0
"""Wall-clock bound of one submission's grading: far above a slow but honest submission's."""
POLL_S = 0.1
REPORTS_DIR, TMP_DIR, STAGING_DIR = "reports", ".tmp", "staging"
LOCK_FILE, LOG_FILE = ".batch.lock", "batch.log.jsonl"
SUMMARY_FILE, HTML_FILE = "summary.csv", "report.html"
NO_SUBMISSION_SHA = "0" * 64
CLUSTER_ENV = "GRADER_CLUSTER"


class BatchError(GraderError):
    """The batch cannot run as asked (OUTDIR locked, clashing student ids...)."""

    exit_status = ExitStatus.USAGE


def default_jobs() -> int:
    """The cores this process may use (``sched_getaffinity`` respects a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class BatchOptions:
    """How to grade the class: the batch's whole configuration."""

    assignment: Assignment
    outdir: Path
    backend: str = "docker"
    jobs: int = field(default_factory=default_jobs)
    force: bool = False
    retry_errors: bool = False
    seed: int | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    image: str | None = None         # docker: the sandbox image's tag, which every worker must have
    cluster: str | None = None       # a Dask scheduler's address: grade there instead of on this machine

    @property
    def effective_seed(self) -> int:
        return self.assignment.config.seed if self.seed is None else self.seed

    @property
    def reports_dir(self) -> Path:
        return self.outdir / REPORTS_DIR


@dataclass
class Student:
    """One student of the batch: their entry, report file and fingerprint."""

    entry: RosterEntry
    stem: str                        # the report's file name without .json
    info: SubmissionInfo | None      # None: the submission cannot be loaded
    leader: str | None = None        # graded once for this student too: that student's submission
    files: dict[str, bytes] | None = None   # the staged files (what a grading job carries)

    @property
    def id(self) -> str:
        return self.entry.student

    @property
    def sha256(self) -> str:
        return self.info.sha256 if self.info is not None else NO_SUBMISSION_SHA


@dataclass
class Plan:
    """What this run does: grade, copy (identical submissions) or keep each student's report."""

    students: list[Student]
    to_grade: list[Student]
    to_copy: list[Student]
    kept: list[Student]
    outdated: int = 0                # reports on disk that are not current (regraded)


@dataclass
class BatchResult:
    reports: list[Report]
    plan: Plan
    graded: int
    copied: int
    seconds: float
    summary_csv: Path
    html: Path
    job_seconds: dict[str, float] = field(default_factory=dict)


class BatchUI(Protocol):
    """What the batch tells its user; the command shows it with rich, tests record it."""

    def planned(self, plan: Plan) -> None: ...
    def started(self, student: str) -> None: ...
    def finished(self, student: str, report: Report, how: str, seconds: float) -> None: ...
    def note(self, text: str) -> None: ...
    def tick(self) -> None: ...


class QuietUI:
    """A BatchUI that only remembers the notes (library use, benchmarks)."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def planned(self, plan: Plan) -> None:
        pass

    def started(self, student: str) -> None:
        pass

    def finished(self, student: str, report: Report, how: str, seconds: float) -> None:
        pass

    def note(self, text: str) -> None:
        self.notes.append(text)

    def tick(self) -> None:
        pass


CommandFactory = Callable[[Path, str, Path, BatchOptions], list[str]]


def grade_command(entry: Path, student: str, out: Path, options: BatchOptions) -> list[str]:
    """The ``grader grade`` command line for one student (``--opt=value``: ids may start with '-')."""
    argv = [sys.executable, "-m", "grader", "grade", str(entry.resolve()),
            f"--assignment={options.assignment.root}", f"--backend={options.backend}",
            f"--output={out}", f"--student={student}", "--quiet"]
    if options.seed is not None:
        argv.append(f"--seed={options.seed}")
    return argv


# -- the run ------------------------------------------------------------------------------


def run_batch(source: Path, options: BatchOptions, ui: BatchUI | None = None,
              command: CommandFactory | None = None) -> BatchResult:
    """Grade the class in ``source`` into ``options.outdir``; resumes an interrupted run."""
    ui = ui or QuietUI()
    options.outdir.mkdir(parents=True, exist_ok=True)
    clock = time.monotonic()
    with BatchLock(options.outdir / LOCK_FILE) as lock:
        if lock.previous_pid:
            ui.note(f"took over the lock of batch pid {lock.previous_pid}, which is no longer running")
        removed = clean_temp_files(options.outdir)
        if removed:
            ui.note(f"removed {removed} temporary file(s) left by an interrupted run")
        roster = read_class(source, options.outdir / STAGING_DIR, options.assignment.config.required_files)
        plan = make_plan(fingerprint(roster, options, ui), options)
        ui.planned(plan)
        log = RunLog(options.outdir / LOG_FILE)
        log.write("run-start", pid=os.getpid(), students=len(plan.students), to_grade=len(plan.to_grade),
                  to_copy=len(plan.to_copy), kept=len(plan.kept))
        runner = _Runner(plan, options, ui, command, log)
        runner.run()
        reports = [load_report(options.reports_dir / f"{s.stem}.json") for s in plan.students]
        csv_path, html_path = write_class_outputs(options.outdir, plan.students, reports)
        log.write("run-end", graded=runner.graded, copied=runner.copied, kept=len(plan.kept))
    return BatchResult(reports, plan, runner.graded, runner.copied, time.monotonic() - clock, csv_path,
                       html_path, runner.job_seconds)


# -- the lock and the temp files ----------------------------------------------------------


class BatchLock:
    """An exclusive ``flock`` on OUTDIR's lock file, with the holder's pid written in it.

    flock rather than "create the file if absent": the kernel drops the lock when its holder
    dies, even by ``kill -9``, so a dead batch never blocks the next one and no pid is guessed
    alive or dead (pids get reused). The pid is only there to name the holder in messages.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.previous_pid: int | None = None

    def __enter__(self) -> BatchLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise BatchError(f"another batch (pid {holder or 'unknown'}) is grading into {self.path.parent}",
                             hint="wait for it to finish, or stop it; two batches on one folder would "
                                  "grade students twice") from None
        self.previous_pid = _read_pid(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def clean_temp_files(outdir: Path) -> int:
    """Remove what an interrupted run left: ``.tmp/`` and ``.*.tmp`` files (caller holds the lock)."""
    removed = 0
    tmp = outdir / TMP_DIR
    if tmp.exists():
        removed += sum(1 for _ in tmp.rglob("*"))
        shutil.rmtree(tmp)
    for folder in (outdir, outdir / REPORTS_DIR):
        for path in folder.glob(".*.tmp") if folder.is_dir() else ():
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            removed += 1
    return removed


# -- who to grade -------------------------------------------------------------------------

_SAFE_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@._+-]{0,99}$")


def report_stem(student: str) -> str:
    """The report's file name (no suffix): the id itself when it is a safe file name, else a
    cleaned id plus a hash of the real one (ids such as emails with '/', or '../x', stay apart)."""
    if _SAFE_STEM.match(student) and not student.endswith("."):
        return student
    cleaned = re.sub(r"[^A-Za-z0-9@._+-]+", "_", student).strip("._-")[:80] or "student"
    return f"{cleaned}-{hashlib.sha256(student.encode('utf-8')).hexdigest()[:10]}"


def fingerprint(roster: Roster, options: BatchOptions, ui: BatchUI) -> list[Student]:
    """Load each submission on the host (never run) for its hash; mark identical ones."""
    for warning in roster.warnings:
        ui.note(warning)
    first_by_sha: dict[str, str] = {}
    students, stems = [], {}
    for entry in roster.entries:
        info, files = submission_info(entry.path, options.assignment.config.required_files)
        leader = first_by_sha.setdefault(info.sha256, entry.student) if info is not None else None
        student = Student(entry, report_stem(entry.student), info, leader if leader != entry.student else None,
                          files)
        if student.stem in stems:
            raise BatchError(f"students {stems[student.stem]!r} and {entry.student!r} would share a report file")
        stems[student.stem] = entry.student
        students.append(student)
    return students


def submission_info(path: Path, required_files: Sequence[str]
                    ) -> tuple[SubmissionInfo | None, dict[str, bytes] | None]:
    """What ``grader grade`` would record about the submission and its staged files; Nones if it cannot be loaded."""
    try:
        sub = load_submission(path, required_files)
    except SubmissionError:
        return None, None
    with sub:
        info = SubmissionInfo(sha256=sub.sha256, kind=sub.kind,
                              files=[SubmissionFile(name=f.name, size=f.size, sha256=f.sha256) for f in sub.files],
                              ignored_files=list(sub.ignored_files), notes=list(sub.notes))
        return info, staged_files(sub.staged_dir)


def make_plan(students: list[Student], options: BatchOptions) -> Plan:
    """Grade leaders without a current report; copy for identical ones; keep the rest."""
    current = {s.id: current_report(s, options) for s in students}

    def needs_work(s: Student) -> bool:
        report = current[s.id]
        return options.force or report is None or (options.retry_errors and report.status == "sandbox-error")

    to_grade = [s for s in students if s.leader is None and needs_work(s)]
    regraded = {s.id for s in to_grade}
    to_copy = [s for s in students if s.leader is not None and (needs_work(s) or s.leader in regraded)]
    busy = regraded | {s.id for s in to_copy}
    outdated = sum(1 for s in students if current[s.id] is None
                   and (options.reports_dir / f"{s.stem}.json").exists())
    return Plan(students, to_grade, to_copy, [s for s in students if s.id not in busy], outdated)


def current_report(student: Student, options: BatchOptions) -> Report | None:
    """The student's report if it is complete and still right for this batch, else None."""
    path = options.reports_dir / f"{student.stem}.json"
    if not path.is_file():
        return None
    try:
        report = load_report(path)
    except ReportError:
        return None
    env = report.environment
    same = (report.student == student.id and report.assignment.name == options.assignment.name
            and env.seed == options.effective_seed and env.backend == options.backend
            and report.submission.sha256 == student.sha256)
    return report if same else None


# -- running the grading jobs --------------------------------------------------------------


class WorkerRefused(BatchError):
    """A grading process would not grade with this batch's assignment, grader or image."""

    exit_status = ExitStatus.SANDBOX


def make_pool(options: BatchOptions, command: CommandFactory | None, students: dict[str, Student],
              bundle: AssignmentBundle) -> GradingPool:
    """The executor: a Dask cluster, ``grader grade`` per submission (``command``), or local processes."""
    workdir = options.outdir / TMP_DIR
    if command is not None:
        def argv_for(key: str, out: Path) -> list[str]:
            return command(students[key].entry.path, students[key].id, out, options)

        return SubprocessPool(options.jobs, workdir, argv_for)
    if options.cluster:
        from grader.classwork.cluster import ClusterPool

        return ClusterPool(options.cluster, bundle)
    return LocalPool(options.jobs, workdir, options.assignment.root)


class _Runner:
    """Keeps the pool busy from one thread; installs each report the moment it comes back."""

    def __init__(self, plan: Plan, options: BatchOptions, ui: BatchUI, command: CommandFactory | None,
                 log: RunLog) -> None:
        self.plan, self.options, self.ui, self.command, self.log = plan, options, ui, command, log
        self.followers: dict[str, list[Student]] = {}
        for s in plan.to_copy:
            self.followers.setdefault(s.leader or "", []).append(s)
        self.graded = self.copied = 0
        self.job_seconds: dict[str, float] = {}
        self.tmp = options.outdir / TMP_DIR
        self.by_key = {s.stem: s for s in plan.to_grade}
        self.started_at: dict[str, datetime] = {}

    def run(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        regraded = {s.id for s in self.plan.to_grade}
        for leader in [lead for lead in self.followers if lead not in regraded]:
            self._copy_for(leader, load_report(self.options.reports_dir / f"{self._stem(leader)}.json"))
        here = [s for s in self.plan.to_grade if s.files is None]    # cannot be loaded: no sandbox needed
        for student in here:
            self._grade_here(student)
        pending = deque(s for s in self.plan.to_grade if s.files is not None)
        if pending:
            self._run_pool(pending)
        for path in self.tmp.glob("grading-process-*.log"):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.tmp.rmdir()  # empty after a complete run

    def _run_pool(self, pending: deque[Student]) -> None:
        bundle = assignment_bundle(self.options.assignment)
        pool = make_pool(self.options, self.command, self.by_key, bundle)
        digests = {"assignment_digest": bundle.digest, "grader_digest": grader_digest()}
        running: set[str] = set()
        try:
            while pending or running:
                while pending and pool.free_slots() > 0:
                    student = pending.popleft()
                    pool.submit(student.stem, self._job(student, digests))
                    self.started_at[student.stem] = datetime.now(timezone.utc)
                    running.add(student.stem)
                    self.ui.started(student.id)
                for done in pool.wait(POLL_S):
                    running.discard(done.key)
                    self._finish(self.by_key[done.key], done)
                self.ui.tick()
        finally:
            pool.close()

    def _job(self, student: Student, digests: dict[str, str]) -> GradingJob:
        assert student.files is not None
        return make_job(student.id, student.files, seed=self.options.seed, backend=self.options.backend,
                        image_tag=self.options.image, timeout_s=self.options.timeout_s, **digests)

    def _stem(self, student_id: str) -> str:
        return next(s.stem for s in self.plan.students if s.id == student_id)

    def _grade_here(self, student: Student) -> None:
        """A submission that does not load: its submission-error report, made as ``grader grade`` makes it."""
        self.ui.started(student.id)
        clock = time.monotonic()
        result = grade(GradeRequest(self.options.assignment, student.entry.path, backend=self.options.backend,
                                    seed=self.options.seed, student=student.id, image=self.options.image))
        self._install_graded(student, result.report, time.monotonic() - clock, "client")

    def _finish(self, student: Student, done: Finished) -> None:
        report = self._report(student, done)
        self._install_graded(student, report, done.seconds, done.where)

    def _install_graded(self, student: Student, report: Report, seconds: float, where: str) -> None:
        report = with_notes(report, student.entry.notes)
        path = self._install(student, report)
        self.graded += 1
        self.job_seconds[student.id] = seconds
        self.log.write("graded", student=student.id, report=path.name, status=report.status,
                       score=report.score, max_score=report.max_score, wall_seconds=round(seconds, 3),
                       tests_seconds=report.timings.tests_seconds, where=where)
        self.ui.finished(student.id, report, "graded", seconds)
        self._copy_for(student.id, report)

    def _report(self, student: Student, done: Finished) -> Report:
        """The report in the envelope, validated here, with the client's record of the submission."""
        envelope = done.envelope
        started = self.started_at.get(student.stem, datetime.now(timezone.utc))
        if "refused" in envelope:
            refused = envelope["refused"] or {}
            raise WorkerRefused(f"{done.where} refused to grade {student.id!r}: {refused.get('message')}",
                                hint=refused.get("hint") or "nothing was written for that student; fix the "
                                                            "worker and rerun the same command to resume")
        if "report" in envelope:
            try:
                report = report_from_json(json.loads(envelope["report"]), source=f"the report of {student.id!r}")
                problem = self._mismatch(student, report)
            except (ReportError, json.JSONDecodeError, TypeError) as err:
                problem = f"its report is unusable: {err}"
            if problem is None:
                return with_submission(report, student.info) if student.info is not None else report
            envelope = failure("grader-crashed", f"the grading process failed ({problem})")
        fail = envelope.get("failure") or envelope.get("error") or {}
        code = fail.get("code", "grader-crashed")
        hint = (GRADING_TIMEOUT_HINT if code == "grading-timeout" else
                "rerun the batch with --retry-errors, or grade this submission alone with `grader grade` "
                "to see the error")
        return sandbox_error_report(student, self.options, started, done.seconds, code,
                                    str(fail.get("message", "the grading failed")), hint)

    @staticmethod
    def _mismatch(student: Student, report: Report) -> str | None:
        if report.student != student.id:
            return f"its report names student {report.student!r}"
        graded = {student.sha256, files_digest(student.files) if student.files is not None else ""}
        if report.submission.sha256 not in graded:
            return "its report is of other files than the ones sent"
        return None

    def _install(self, student: Student, report: Report) -> Path:
        return write_report(report, self.options.reports_dir / f"{student.stem}.json")

    def _copy_for(self, leader: str, report: Report) -> None:
        for follower in self.followers.pop(leader, []):
            copy = identical_copy(report, follower, leader)
            path = self._install(follower, copy)
            self.copied += 1
            self.log.write("copied", student=follower.id, report=path.name, identical_to=leader)
            self.ui.finished(follower.id, copy, "copied", 0.0)


GRADING_TIMEOUT_HINT = ("an infinite loop or a very slow submission: grade it alone with `grader grade` to see "
                        "which test hangs, or rerun the batch with a larger --timeout and --retry-errors")


# -- reports the batch makes itself -------------------------------------------------------


def sandbox_error_report(student: Student, options: BatchOptions, started_at: datetime, seconds: float,
                         code: str, message: str, hint: str) -> Report:
    """A score-0 report for a submission whose grading process died or overran."""
    asg = options.assignment
    finished = max(datetime.now(timezone.utc), started_at)
    return Report.build(
        assignment=ReportAssignment(name=asg.name, title=asg.config.title), tests=[],
        submission=student.info or unreadable_info(student.entry.path), environment=environment(options.backend, options.effective_seed, options.image),
        timings=Timings(started_at=started_at, finished_at=finished, total_seconds=seconds, tests_seconds=0.0),
        student=student.id, status="sandbox-error", error=SubmissionErrorInfo(code=code, message=message, hint=hint),
        max_score=asg.max_score, part_order=tuple(asg.config.parts))


def unreadable_info(path: Path) -> SubmissionInfo:
    kind = "directory" if path.is_dir() else (path.suffix.lstrip(".") or "file")
    return SubmissionInfo(sha256=NO_SUBMISSION_SHA, kind=kind, notes=["the submission could not be read"])


def with_submission(report: Report, info: SubmissionInfo) -> Report:
    """The report with the client's record of the submission (the worker saw only its staged files).

    What grading itself noted (a time budget that cut tests) is kept after the client's own notes."""
    graded = [n for n in report.submission.notes if n not in info.notes]
    merged = info.model_copy(update={"notes": [*info.notes, *graded]})
    return Report.model_validate({**report.model_dump(), "submission": merged.model_dump()})


def with_notes(report: Report, notes: Sequence[str]) -> Report:
    """The report with the batch's notes about the entry (where it came from) added."""
    if not notes:
        return report
    submission = report.submission.model_copy(update={"notes": [*report.submission.notes, *notes]})
    return Report.model_validate({**report.model_dump(), "submission": submission.model_dump()})


def identical_copy(report: Report, follower: Student, leader: str) -> Report:
    """The leader's grade for ``follower``: their own id and submission details, plus the note."""
    info = follower.info or unreadable_info(follower.entry.path)
    notes = [*info.notes, *follower.entry.notes, IDENTICAL_PREFIX + leader]
    return Report.model_validate({**report.model_dump(), "student": follower.id,
                                  "submission": info.model_copy(update={"notes": notes}).model_dump()})


# -- outputs ------------------------------------------------------------------------------


class RunLog:
    """``batch.log.jsonl``: one JSON object per line, appended (a torn last line is ignored)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._end_torn_line()

    def _end_torn_line(self) -> None:
        """A run killed mid-write leaves half a line: end it, so the next event stands alone."""
        try:
            fh = open(self.path, "rb+")
        except FileNotFoundError:
            return
        with fh:
            size = fh.seek(0, os.SEEK_END)
            if size:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")

    def write(self, event: str, **fields: object) -> None:
        line = json.dumps({"event": event, "at": datetime.now(timezone.utc).isoformat(), **fields})
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    @staticmethod
    def read(path: Path) -> list[dict[str, object]]:
        events = []
        for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return events


def class_summary_csv(reports: Sequence[Report]) -> str:
    """The summary-csv export plus an ``identical_to`` column (the student whose grade was copied)."""
    rows = list(csv.reader(io.StringIO(to_summary_csv(reports))))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*rows[0], "identical_to"])
    for row, report in zip(rows[1:], reports):
        writer.writerow([*row, identical_to(report) or ""])
    return out.getvalue()


def write_class_outputs(outdir: Path, students: Sequence[Student], reports: Sequence[Report]) -> tuple[Path, Path]:
    links = {s.id: f"{REPORTS_DIR}/{s.stem}.json" for s in students}
    csv_path = write_text_atomic(outdir / SUMMARY_FILE, class_summary_csv(reports))
    html_path = write_text_atomic(outdir / HTML_FILE, to_html(reports, report_links=links))
    return csv_path, html_path


def write_text_atomic(path: Path, text: str) -> Path:
    """Temp file in the same folder + ``os.replace``: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
