"""The long-lived grading process: one submission after another, nothing of one reaching the next;
refusals of jobs made for another assignment, grader or file set; death with its parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader.assignment import load_assignment
from grader.classwork.pool import Finished, LocalPool
from grader.grading.job import (GradingJob, assignment_bundle, clean_process_state, grader_digest, make_job,
                                materialise)
from grader.grading.submission import load_submission
from grader.report import report_from_json
from tests.classwork import LEAKY, REFERENCE, ROOT, essence, make_mini_assignment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def assignment_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mini_assignment(tmp_path_factory.mktemp("assignment"))


def job_for(source: Path, assignment_root: Path, student: str, **overrides: object) -> GradingJob:
    assignment = load_assignment(assignment_root)
    with load_submission(source) as sub:
        files = {p.name: p.read_bytes() for p in sub.staged_dir.iterdir()}
    fields = {"assignment_digest": assignment_bundle(assignment).digest, "grader_digest": grader_digest(),
              "backend": "local", "timeout_s": 600.0, **overrides}
    return make_job(student, files, **fields)


def run(pool: LocalPool, job: GradingJob, key: str = "k") -> Finished:
    pool.submit(key, job)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        for done in pool.wait(0.2):
            return done
    raise AssertionError("the grading process never answered")


@pytest.fixture(scope="module")
def one_process(assignment_root: Path, tmp_path_factory: pytest.TempPathFactory):
    pool = LocalPool(1, tmp_path_factory.mktemp("pool"), assignment_root)
    yield pool
    pool.close()


def test_a_leaky_submission_leaves_nothing_for_the_next_one(one_process: LocalPool, assignment_root: Path,
                                                            tmp_path: Path) -> None:
    pid = one_process.slots[0].process.proc.pid
    leaky = run(one_process, job_for(LEAKY, assignment_root, "leaky"))
    after = run(one_process, job_for(REFERENCE, assignment_root, "alice"))
    assert one_process.slots[0].process.proc.pid == pid            # the same long-lived process graded both
    leaky_report = report_from_json(json.loads(leaky.envelope["report"]))
    assert leaky_report.status == "graded" and leaky_report.score < leaky_report.max_score   # its patch hurt it
    report = report_from_json(json.loads(after.envelope["report"]))
    assert report.score == report.max_score > 0 and report.status == "graded"

    fresh_pool = LocalPool(1, tmp_path / "fresh", assignment_root)
    try:
        fresh = report_from_json(json.loads(run(fresh_pool, job_for(REFERENCE, assignment_root, "alice"))
                                            .envelope["report"]))
    finally:
        fresh_pool.close()
    assert essence(report) == essence(fresh)                       # as if graded first, by a fresh process
    assert "GRADER_LEAK" not in os.environ


@pytest.mark.parametrize("what", ["assignment", "grader", "files"])
def test_a_job_made_for_something_else_is_refused(one_process: LocalPool, assignment_root: Path,
                                                  what: str) -> None:
    job = job_for(REFERENCE, assignment_root, "alice")
    wrong = {"assignment": {"assignment_digest": "0" * 64}, "grader": {"grader_digest": "1" * 64},
             "files": {"files_sha256": "2" * 64}}[what]
    done = run(one_process, job.model_copy(update=wrong))
    assert set(done.envelope) == {"refused"}
    assert {"assignment": "not the one the batch grades with", "grader": "differs from the client's",
            "files": "do not match their digest"}[what] in done.envelope["refused"]["message"]


def test_a_docker_job_for_another_image_is_refused_not_graded(docker_required: None, assignment_root: Path) -> None:
    """A worker whose sandbox image is not the client's (stale grader files) refuses the job: it never
    grades with the wrong image; the job with the right tag is graded."""
    from grader.grading.service import Service
    from grader.sandbox.image import ensure_image

    service, tag = Service(), ensure_image()
    stale = job_for(REFERENCE, assignment_root, "alice", backend="docker", image_tag=tag + "-stale")
    refused = service.handle({"job": stale.model_dump(mode="json"), "assignment_root": str(assignment_root)})
    assert set(refused) == {"refused"} and f"this worker's sandbox image is {tag}" in refused["refused"]["message"]
    right = job_for(REFERENCE, assignment_root, "alice", backend="docker", image_tag=tag)
    graded = service.handle({"job": right.model_dump(mode="json"), "assignment_root": str(assignment_root)})
    report = report_from_json(json.loads(graded["report"]))
    assert report.score == report.max_score and tag in (report.environment.image or "")


def test_an_assignment_bundle_travels_and_is_checked(assignment_root: Path, tmp_path: Path) -> None:
    bundle = assignment_bundle(load_assignment(assignment_root))
    assert "reference/autograd.py" in bundle.files and "tests/hidden/test_ops.py" in bundle.files
    copy = materialise(bundle, tmp_path)
    assert assignment_bundle(copy).digest == bundle.digest and copy.reference_dir.parent == copy.root
    (copy.root / "tests" / "hidden" / "test_ops.py").write_text("# changed on the worker\n", encoding="utf-8")
    with pytest.raises(Exception, match="not the one the batch grades with"):
        materialise(bundle, tmp_path)


def test_the_process_state_is_put_back_after_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "suite_mod_for_state_test.py").write_text("VALUE = 1\n", encoding="utf-8")
    cwd, path = os.getcwd(), list(sys.path)
    with clean_process_state(suites):
        os.environ["GRADER_STATE_TEST"] = "1"
        sys.path.insert(0, str(suites))
        os.chdir(tmp_path)
        __import__("suite_mod_for_state_test")
    assert "GRADER_STATE_TEST" not in os.environ and os.getcwd() == cwd and sys.path == path
    assert "suite_mod_for_state_test" not in sys.modules


def test_grading_processes_die_with_their_parent(assignment_root: Path, tmp_path: Path) -> None:
    code = ("import sys, time\nfrom pathlib import Path\nfrom grader.classwork.pool import LocalPool\n"
            "pool = LocalPool(2, Path(sys.argv[1]), Path(sys.argv[2]))\n"
            "print(' '.join(str(s.process.proc.pid) for s in pool.slots), flush=True)\ntime.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "work"), str(assignment_root)],
                              stdout=subprocess.PIPE, cwd=ROOT)
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 60
    while any(_alive(p) for p in pids):
        assert time.monotonic() < deadline, "a grading process outlived its parent"
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"
