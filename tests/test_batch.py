"""``grader batch``: a class graded in subprocesses, resumable after kill -9, duplicates graded once,
bulk downloads (Gradescope, Canvas) read safely.

Speed: the real grading runs on a small copy of the assignment with only the "ops" suites (a few
seconds of tests per submission, plus the grader's start-up) and a class of 10 submissions; the
full 60-submission scenario is ``benchmarks/batch_throughput.py``.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from grader.assignment import load_assignment
from grader.classwork.batch import (LOG_FILE, BatchError, BatchLock, BatchOptions, RunLog, clean_temp_files, report_stem,
                          run_batch)
from grader.classwork.roster import BulkError, BulkLimits, extract_zip_safely, parse_canvas_name, read_class
from grader.report import load_report
from tests.buggy import variant_file

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "reference" / "autograd.py"
TEMPLATE = ROOT / "student_template" / "autograd.py"
TEMPLATE_NOTEBOOK = ROOT / "student_template" / "autograd.ipynb"
HOSTILE = ROOT / "tests" / "data" / "hostile"
SUITES = ROOT / "assignments" / "autograd-lab" / "tests"

pytestmark = pytest.mark.slow

CLASS_SIZE = 10
IDENTICAL = {"dave": "alice", "judy": "carol"}       # follower -> the student graded for both
ERRORS = {"erin": "syntax-error", "frank": "missing-file", "gina": "bad-zip"}

def grader_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "grader", *args]


def batch_argv(source: Path, outdir: Path, assignment: Path, *extra: str) -> list[str]:
    return grader_argv("batch", str(source), f"--assignment={assignment}", "-o", str(outdir), "-j", "2",
                       "--backend", "local", *extra)


def run_cli(argv: list[str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mini_assignment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """autograd-lab with only its "ops" suites and short timeouts: real grading, in seconds."""
    root = tmp_path_factory.mktemp("assignment") / "autograd-lab"
    for visibility in ("public", "hidden"):
        (root / "tests" / visibility).mkdir(parents=True)
        for name in ("__init__.py", "test_ops.py"):
            shutil.copy(SUITES / visibility / name, root / "tests" / visibility / name)
    (root / "assignment.yaml").write_text(
        "name: autograd-lab\ntitle: Autograd From Scratch (ops only)\nmodule: autograd\n"
        f"required_files: [autograd.py]\nreference: {ROOT / 'reference'}\nseed: 20261122\n"
        "banned_imports: [torch]\nparts:\n  ops: {points: 22, title: Ops}\n"
        "timeouts: {import_s: 10, request_s: 3}\n", encoding="utf-8")
    load_assignment(root)
    return root


def make_class(folder: Path) -> Path:
    """10 students: correct, template, buggy, broken, hostile, and two identical submissions."""
    folder.mkdir(parents=True)
    (folder / "alice").mkdir()
    shutil.copy(REFERENCE, folder / "alice" / "autograd.py")
    shutil.copy(TEMPLATE, folder / "bob.py")
    shutil.copy(variant_file("radd_missing"), folder / "carol.py")
    with zipfile.ZipFile(folder / "dave.zip", "w") as zf:           # the reference again, zipped
        zf.write(REFERENCE, "lab/autograd.py")
    (folder / "erin.py").write_text("import numpy as np\nclass Tensor(:\n    pass\n", encoding="utf-8")
    (folder / "frank").mkdir()
    (folder / "frank" / "tensor.py").write_text("x = 1\n", encoding="utf-8")
    (folder / "gina.zip").write_bytes(b"PK\x03\x04 this is not really a zip")
    shutil.copy(HOSTILE / "loop_in_op" / "autograd.py", folder / "hank.py")   # relu never returns
    shutil.copy(variant_file("mul_backward_uses_own_data"), folder / "ivan.py")
    (folder / "judy").mkdir()
    shutil.copy(variant_file("radd_missing"), folder / "judy" / "autograd.py")
    (folder / "NOTES.txt").write_text("not a submission\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def class_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_class(tmp_path_factory.mktemp("class") / "submissions")


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory, class_dir: Path,
           mini_assignment: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    outdir = tmp_path_factory.mktemp("out") / "batch"
    done = run_cli(batch_argv(class_dir, outdir, mini_assignment))
    assert done.returncode == 0, done.stdout + done.stderr
    return outdir, done


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    return {row["student"]: row for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))}


def snapshot(reports: Path) -> dict[str, tuple[int, int, bytes]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in reports.glob("*.json")}


class _Rows(HTMLParser):
    """The students table of report.html: data-* attributes of each row."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "tr" and "data-student" in a:
            self.rows[a["data-student"]] = a


# -- a class, end to end ------------------------------------------------------------------


def test_every_student_gets_one_valid_report(graded: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    outdir, done = graded
    files = sorted(p.name for p in (outdir / "reports").glob("*.json"))
    assert files == sorted(f"{s}.json" for s in
                           ["alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank", "ivan", "judy"])
    reports = {p.stem: load_report(p) for p in (outdir / "reports").glob("*.json")}
    assert all(r.student == name for name, r in reports.items())
    assert reports["alice"].score == reports["alice"].max_score > 0
    assert reports["bob"].status == "graded" and reports["bob"].score == 0
    assert 0 < reports["carol"].score < reports["carol"].max_score
    for student, code in ERRORS.items():
        assert reports[student].status == "submission-error" and reports[student].error.code == code
    hostile = reports["hank"]   # every relu test timed out inside its sandbox; the rest failed
    assert any(t.status == "timeout" for t in hostile.tests) and hostile.score < hostile.max_score
    assert "NOTES.txt" in done.stdout and "graded 8 submission(s), copied 2" in done.stdout
    assert not (outdir / ".tmp").exists() and not list(outdir.rglob("*.tmp"))


def test_summary_csv_and_html_agree_with_the_reports(graded: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    outdir, _ = graded
    rows = read_csv(outdir / "summary.csv")
    parser = _Rows()
    parser.feed((outdir / "report.html").read_text(encoding="utf-8"))
    assert len(rows) == len(parser.rows) == CLASS_SIZE
    for path in (outdir / "reports").glob("*.json"):
        report = load_report(path)
        row, html_row = rows[report.student], parser.rows[report.student]
        assert float(row["score"]) == pytest.approx(report.score)
        assert float(html_row["data-score"]) == pytest.approx(report.score)
        assert row["status"] == html_row["data-status"] == report.status
        assert row["identical_to"] == IDENTICAL.get(report.student, "")


def test_identical_submissions_are_graded_once(graded: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    outdir, _ = graded
    events = RunLog.read(outdir / LOG_FILE)
    graded_ids = [e["student"] for e in events if e["event"] == "graded"]
    assert sorted(graded_ids) == sorted(set(graded_ids)) and not set(IDENTICAL) & set(graded_ids)
    assert sorted(e["student"] for e in events if e["event"] == "copied") == sorted(IDENTICAL)
    for follower, leader in IDENTICAL.items():
        mine, theirs = (load_report(outdir / "reports" / f"{s}.json") for s in (follower, leader))
        assert mine.submission.notes[-1] == f"identical to the submission of {leader}"
        assert mine.submission.sha256 == theirs.submission.sha256
        assert [t.model_dump() for t in mine.tests] == [t.model_dump() for t in theirs.tests]
    assert load_report(outdir / "reports" / "dave.json").submission.kind == "zip"


def test_rerun_grades_nothing_and_changes_nothing(graded: tuple[Path, subprocess.CompletedProcess[str]],
                                                  class_dir: Path, mini_assignment: Path) -> None:
    outdir, _ = graded
    before = snapshot(outdir / "reports")
    done = run_cli(batch_argv(class_dir, outdir, mini_assignment))
    assert done.returncode == 0, done.stderr
    assert f"{CLASS_SIZE} reports kept, 0 to grade, 0 to copy" in done.stdout
    assert snapshot(outdir / "reports") == before


def test_kill_9_halfway_then_resume_loses_and_duplicates_nothing(tmp_path: Path, mini_assignment: Path) -> None:
    source, outdir = make_class(tmp_path / "class"), tmp_path / "out"
    batch = subprocess.Popen(batch_argv(source, outdir, mini_assignment), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
    try:
        _wait_for(lambda: len(list((outdir / "reports").glob("*.json"))) >= 3, batch, timeout=300)
    finally:
        os.killpg(batch.pid, signal.SIGKILL)
        batch.wait()
    _wait_for(lambda: not _processes_mentioning(str(outdir)), None, timeout=60)   # children die with it
    first = snapshot(outdir / "reports")
    assert 3 <= len(first) < CLASS_SIZE
    (outdir / "reports" / ".zed.json.abc123.tmp").write_text("{", encoding="utf-8")  # as a torn write leaves

    done = run_cli(batch_argv(source, outdir, mini_assignment))
    assert done.returncode == 0, done.stdout + done.stderr
    plan = re.search(r"(\d+) reports kept, (\d+) to grade, (\d+) to copy", done.stdout)
    assert plan is not None and int(plan[1]) == len(first)
    assert int(plan[2]) + int(plan[3]) == CLASS_SIZE - len(first)
    after = snapshot(outdir / "reports")
    assert len(after) == CLASS_SIZE and {k: after[k] for k in first} == first
    assert not list(outdir.rglob("*.tmp")) and not (outdir / ".tmp").exists()
    runs, events = [], RunLog.read(outdir / LOG_FILE)
    for event in events:
        if event["event"] == "run-start":
            runs.append([])
        elif event["event"] in ("graded", "copied"):
            runs[-1].append(event["student"])
    assert len(runs) == 2 and not set(runs[0]) & set(runs[1])
    assert sorted(runs[1]) == sorted(Path(k).stem for k in set(after) - set(first))
    assert all(load_report(outdir / "reports" / name) for name in after)


def _wait_for(condition, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc is None or proc.poll() is None, "the batch ended before the condition was met"
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_a_grading_process_past_the_wall_clock_bound_gets_a_sandbox_error(tmp_path: Path,
                                                                          mini_assignment: Path) -> None:
    source = tmp_path / "class"
    source.mkdir()
    shutil.copy(HOSTILE / "loop_in_op" / "autograd.py", source / "hank.py")
    started = time.monotonic()
    done = run_cli(batch_argv(source, tmp_path / "out", mini_assignment, "--timeout", "4"))
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 60
    report = load_report(tmp_path / "out" / "reports" / "hank.json")
    assert report.status == "sandbox-error" and report.error.code == "grading-timeout" and report.score == 0
    assert "4 s" in report.error.message and report.submission.sha256 != "0" * 64
    assert "sandbox-error    1 (grading-timeout 1)" in done.stdout
    assert not _processes_mentioning(str(tmp_path / "out"))


def test_a_crashed_grader_gets_a_sandbox_error_and_retry_errors_regrades(tmp_path: Path,
                                                                        mini_assignment: Path) -> None:
    source = tmp_path / "class"
    source.mkdir()
    shutil.copy(TEMPLATE, source / "bob.py")
    options = BatchOptions(load_assignment(mini_assignment), tmp_path / "out", backend="local", jobs=1)

    def crash(entry: Path, student: str, out: Path, opts: BatchOptions) -> list[str]:
        return [sys.executable, "-c", "import os, signal; print('dying'); os.kill(os.getpid(), signal.SIGKILL)"]

    result = run_batch(source, options, command=crash)
    report = result.reports[0]
    assert report.status == "sandbox-error" and report.error.code == "grader-crashed"
    assert "SIGKILL" in report.error.message and "dying" in report.error.message
    assert run_batch(source, options).graded == 0            # a sandbox-error report is complete...
    retried = run_batch(source, BatchOptions(options.assignment, options.outdir, backend="local", jobs=1,
                                             retry_errors=True))
    assert retried.graded == 1 and retried.reports[0].status == "graded"   # ...until retried


def test_force_and_a_changed_submission_regrade(tmp_path: Path, mini_assignment: Path) -> None:
    source = tmp_path / "class"
    source.mkdir()
    shutil.copy(TEMPLATE, source / "bob.py")
    asg = load_assignment(mini_assignment)
    options = BatchOptions(asg, tmp_path / "out", backend="local", jobs=1)
    assert run_batch(source, options).graded == 1
    shutil.copy(variant_file("radd_missing"), source / "bob.py")    # bob resubmitted
    changed = run_batch(source, options)
    assert changed.graded == 1 and changed.plan.outdated == 1 and changed.reports[0].score > 0
    forced = run_batch(source, BatchOptions(asg, options.outdir, backend="local", jobs=1, force=True))
    assert forced.graded == 1


# -- lock, temp files, names --------------------------------------------------------------


def test_the_lock_keeps_a_second_batch_out_and_a_dead_holder_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / ".batch.lock"
    with BatchLock(path):
        with pytest.raises(BatchError, match=f"pid {os.getpid()}"):
            BatchLock(path).__enter__()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    path.write_text(f"{holder.pid}\n", encoding="ascii")         # its pid, but it never held the flock
    holder.kill()
    holder.wait()
    with BatchLock(path) as lock:
        assert lock.previous_pid == holder.pid
        assert path.read_text(encoding="ascii").strip() == str(os.getpid())


def test_a_batch_in_another_process_holds_the_lock(tmp_path: Path) -> None:
    code = ("import sys, time\nfrom pathlib import Path\nfrom grader.classwork.batch import BatchLock\n"
            "with BatchLock(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / ".batch.lock")], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        with pytest.raises(BatchError, match=f"pid {holder.pid}"):
            BatchLock(tmp_path / ".batch.lock").__enter__()
    finally:
        holder.kill()
        holder.wait()
    with BatchLock(tmp_path / ".batch.lock") as lock:           # kill -9 released it
        assert lock.previous_pid == holder.pid


def test_temp_files_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "alice.json").write_text("{", encoding="utf-8")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / ".alice.json.x1y2.tmp").write_text("{", encoding="utf-8")
    (tmp_path / "reports" / "bob.json").write_text("{}", encoding="utf-8")
    (tmp_path / ".staging.abc.tmp").mkdir()
    assert clean_temp_files(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["bob.json", "reports"]


def test_the_run_log_survives_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / LOG_FILE
    path.write_text('{"event": "graded", "student": "alice"}\n{"event": "gra', encoding="utf-8")
    RunLog(path).write("run-start", pid=1)
    assert [e["event"] for e in RunLog.read(path)] == ["graded", "run-start"]


@pytest.mark.parametrize(("student", "safe"), [
    ("alice", True), ("jane.doe@uni.edu", True), ("12345", True), ("../etc/passwd", False),
    ("a/b", False), (".hidden", False), ("-rf", False), ("名前", False), ("x" * 200, False),
])
def test_report_file_names_are_safe_and_distinct(student: str, safe: bool) -> None:
    stem = report_stem(student)
    assert (stem == student) is safe
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9@._+-]*", stem) and len(stem) <= 100
    assert report_stem(student + "!") != stem


def test_entries_with_the_same_student_id_are_refused(tmp_path: Path) -> None:
    shutil.copy(TEMPLATE, tmp_path / "alice.py")
    (tmp_path / "alice.zip").write_bytes(b"")
    with pytest.raises(BulkError, match="two submissions for student 'alice'"):
        read_class(tmp_path, tmp_path / "out" / "staging")


# -- bulk downloads -----------------------------------------------------------------------

GRADESCOPE_METADATA = """\
submission_1001:
  :submitters:
  - :name: Ada Lovelace
    :sid: '100'
    :email: ada@uni.edu
  :created_at: 2025-03-14 15:09:26.000000000 -07:00
  :score: !ruby/object:BigDecimal 18:0.0
submission_1002:
  :submitters:
  - :name: Grace Hopper
    :email: grace@uni.edu
submission_1003:
  :submitters:
  - :name: Pair One
    :sid: '300'
  - :name: Pair Two
    :sid: '301'
submission_1004:
  :submitters:
  - :name: No Folder
    :sid: '400'
"""


def gradescope_zip(path: Path) -> Path:
    """The layout of Gradescope's "Export Submissions" (one folder per submission + metadata)."""
    root = "assignment_555_export/"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(root + "submission_metadata.yml", GRADESCOPE_METADATA)
        zf.write(REFERENCE, root + "submission_1001/autograd.py")
        zf.write(TEMPLATE_NOTEBOOK, root + "submission_1002/autograd.ipynb")
        zf.write(variant_file("radd_missing"), root + "submission_1003/autograd.py")
        zf.writestr("__MACOSX/" + root + "._submission_metadata.yml", b"\0")
    return path


def canvas_zip(path: Path) -> Path:
    """The layout of Canvas's "Download Submissions": flat files name[_LATE]_userid_fileid_original."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(REFERENCE, "lovelaceada_12345_900001_autograd-1.py")
        zf.write(TEMPLATE_NOTEBOOK, "hoppergrace_LATE_23456_900002_autograd.ipynb")
        zf.write(variant_file("radd_missing"), "turing_alan_34567_900003_autograd.py")
        zf.writestr("turing_alan_34567_900004_notes.txt", "my notes")
    return path


def test_gradescope_export_roster(tmp_path: Path) -> None:
    roster = read_class(gradescope_zip(tmp_path / "export.zip"), tmp_path / "out" / "staging")
    assert roster.layout == "gradescope"
    by_id = {e.student: e for e in roster.entries}
    assert sorted(by_id) == ["100", "300", "301", "grace@uni.edu"]      # SID, else email; both of a pair
    assert by_id["100"].path.name == "submission_1001"                    # a folder with autograd.py
    assert by_id["grace@uni.edu"].path.name == "autograd.ipynb"           # a notebook on its own
    assert by_id["300"].path == by_id["301"].path
    assert any("submission_1004" in w for w in roster.warnings)
    assert all(e.path.is_relative_to(tmp_path / "out" / "staging") for e in roster.entries)
    again = read_class(tmp_path / "export.zip", tmp_path / "out" / "staging")   # same zip: staging reused
    assert [(e.student, e.path) for e in again.entries] == [(e.student, e.path) for e in roster.entries]


def test_canvas_download_roster(tmp_path: Path) -> None:
    roster = read_class(canvas_zip(tmp_path / "submissions.zip"), tmp_path / "out" / "staging")
    assert roster.layout == "canvas"
    by_id = {e.student: e for e in roster.entries}
    assert sorted(by_id) == ["12345", "23456", "34567"]
    assert by_id["12345"].path.name == "12345" and (by_id["12345"].path / "autograd.py").is_file()
    assert any("renamed autograd-1.py back to autograd.py" in n for n in by_id["12345"].notes)
    assert by_id["23456"].path.name == "autograd.ipynb" and "submitted late (Canvas)" in by_id["23456"].notes
    assert sorted(p.name for p in by_id["34567"].path.iterdir()) == ["autograd.py", "notes.txt"]


def test_an_unzipped_canvas_download_and_gradescope_export_are_read_too(tmp_path: Path) -> None:
    for maker, layout in ((canvas_zip, "canvas"), (gradescope_zip, "gradescope")):
        folder = tmp_path / layout
        with zipfile.ZipFile(maker(tmp_path / f"{layout}.zip")) as zf:
            zf.extractall(folder)
        assert read_class(folder, tmp_path / f"out-{layout}" / "staging").layout == layout


def test_bulk_zips_of_both_formats_grade_end_to_end(tmp_path: Path, mini_assignment: Path) -> None:
    for maker, expected in ((gradescope_zip, {"100", "300", "301", "grace@uni.edu"}),
                            (canvas_zip, {"12345", "23456", "34567"})):
        source, outdir = maker(tmp_path / f"{maker.__name__}.zip"), tmp_path / f"out-{maker.__name__}"
        done = run_cli(batch_argv(source, outdir, mini_assignment))
        assert done.returncode == 0, done.stdout + done.stderr
        reports = {load_report(p).student: load_report(p) for p in (outdir / "reports").glob("*.json")}
        assert set(reports) == expected and set(read_csv(outdir / "summary.csv")) == expected
    assert reports["12345"].score == reports["12345"].max_score
    assert any("submitted late" in n for n in reports["23456"].submission.notes)


def test_an_unknown_layout_is_a_clear_error(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "class.zip", "w") as zf:
        zf.write(REFERENCE, "alice/autograd.py")
        zf.writestr("bob.py", "x = 1\n")
    with pytest.raises(BulkError, match="neither a Gradescope export nor a Canvas download") as err:
        read_class(tmp_path / "class.zip", tmp_path / "out" / "staging")
    assert "alice/autograd.py" in str(err.value) and err.value.hint
    assert not (tmp_path / "out" / "staging").exists() and not list((tmp_path / "out").glob(".*"))


def _zip_with(path: Path, name: str, data: bytes = b"x = 1\n", mode: int | None = None) -> Path:
    info = zipfile.ZipInfo(name)
    if mode is not None:
        info.external_attr = mode << 16
        info.create_system = 3
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("submission_metadata.yml", "{}\n")
        zf.writestr(info, data)
    return path


@pytest.mark.parametrize(("name", "mode", "reason"), [
    ("../evil.py", None, "outside the archive"),
    ("submission_1/../../evil.py", None, "outside the archive"),
    ("/etc/cron.d/evil", None, "absolute path"),
    ("C:\\Windows\\evil.py", None, "absolute path"),
    ("submission_1/link", stat.S_IFLNK | 0o777, "symbolic link"),
    ("submission_1/fifo", stat.S_IFIFO | 0o644, "not a regular file"),
])
def test_unsafe_bulk_zips_are_refused(tmp_path: Path, name: str, mode: int | None, reason: str) -> None:
    source = _zip_with(tmp_path / "bulk.zip", name, b"/etc/passwd" if mode else b"x = 1\n", mode)
    with pytest.raises(BulkError, match=reason):
        read_class(source, tmp_path / "out" / "staging")
    assert not (tmp_path / "evil.py").exists() and not (tmp_path / "out" / "staging").exists()
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_bulk_zip_caps(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "many.zip", "w") as zf:
        for i in range(20):
            zf.writestr(f"submission_{i}/autograd.py", "x = 1\n")
    with pytest.raises(BulkError, match="entries"):
        extract_zip_safely(tmp_path / "many.zip", tmp_path / "a", BulkLimits(max_entries=10))
    with zipfile.ZipFile(tmp_path / "big.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("submission_1/autograd.py", b"#" * 5_000_000)       # compresses to a few KiB
    with pytest.raises(BulkError, match="bytes"):
        extract_zip_safely(tmp_path / "big.zip", tmp_path / "b", BulkLimits(max_file_bytes=1_000_000))
    with pytest.raises(BulkError, match="add up"):
        extract_zip_safely(tmp_path / "many.zip", tmp_path / "c", BulkLimits(max_total_bytes=50))


def test_a_zip_whose_header_understates_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "liar.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("submission_1/autograd.py", b"#" * 100_000)
    data = bytearray(path.read_bytes())
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):    # uncompressed size: local + central
        at = data.index(sig) + offset
        data[at:at + 4] = (100).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(BulkError):
        extract_zip_safely(path, tmp_path / "x", BulkLimits())


@pytest.mark.parametrize(("name", "user", "original", "late"), [
    ("lovelaceada_12345_900001_autograd.py", "12345", "autograd.py", False),
    ("lovelace_ada_12345_900001_autograd.py", "12345", "autograd.py", False),
    ("lovelaceada_LATE_12345_900001_lab 2.zip", "12345", "lab 2.zip", True),
    ("late_lovelaceada_12345_900001_autograd.ipynb", "12345", "autograd.ipynb", True),
    ("anon_x7Yz2_900001_autograd.py", "anon_x7Yz2", "autograd.py", False),
    ("lovelaceada_12345_text.html", "12345", "text.html", False),
])
def test_canvas_file_names(name: str, user: str, original: str, late: bool) -> None:
    parsed = parse_canvas_name(name)
    assert parsed is not None and (parsed.user, parsed.original, parsed.late) == (user, original, late)


@pytest.mark.parametrize("name", ["alice.py", "bob", "alice_smith.zip", "hw_1.py"])
def test_class_folder_names_are_not_canvas_names(name: str) -> None:
    assert parse_canvas_name(name) is None


def test_stdout_of_batch_help_lists_the_options() -> None:
    done = run_cli(grader_argv("batch", "--help"), timeout=60)
    assert done.returncode == 0
    for option in ("--assignment", "--output", "--jobs", "--backend", "--force", "--seed", "--timeout",
                   "--retry-errors"):
        assert option in done.stdout
