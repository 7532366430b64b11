"""``grader batch --cluster``: a real ``dask scheduler`` and two ``grader worker`` processes on loopback.

The class is 30 mixed submissions (correct in three forms, template, buggy variants of
``tests/buggy/``, broken, hostile, leaky), graded against the "ops" suites only (a copy of the
assignment, as ``tests/test_batch.py`` does) and the local sandbox backend, so that the three
cluster runs take minutes on two cores; the Docker path of a worker is the same grading
function with another backend. Checked: the cluster's reports equal a local batch's (scores,
statuses, messages; not timings or hosts), also when a worker is SIGKILLed mid-task; a client
SIGKILLed mid-batch and rerun grades only what was missing; a scheduler that goes away stops
the client with a clear error, and the same command resumes once it is back (Dask workers stop with
their scheduler, so "back" is a scheduler and workers started again).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from grader.classwork.batch import LOG_FILE, RunLog
from tests.buggy import variant_file, variant_names
from tests.classwork import REFERENCE, ROOT, essences, make_mini_assignment, make_mixed_class

pytestmark = pytest.mark.slow

if os.environ.get("GRADER_REQUIRE_CLUSTER") == "1":
    import distributed
else:
    distributed = pytest.importorskip("distributed", reason="the cluster extra (Dask distributed) is not installed")

CLASS_SIZE = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env() -> dict[str, str]:
    """The workers import this checkout's grader, as the client does (the diagnosis on: its budget is
    counted in requests, so reports made at two moments agree)."""
    env = dict(os.environ)
    env.pop("GRADER_DIAGNOSIS", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


class Cluster:
    """A scheduler and workers as separate processes (each in its own session), loopback only."""

    def __init__(self, logs: Path, port: int | None = None) -> None:
        self.logs, self.port = logs, port or free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        logs.mkdir(parents=True, exist_ok=True)

    def _spawn(self, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.logs / log, "ab") as fh:
            return subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=ROOT, env=child_env())

    def start_scheduler(self) -> None:
        self.scheduler = self._spawn([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                                      "--port", str(self.port), "--no-dashboard"], "scheduler.log")

    def start_worker(self, name: str) -> None:
        self.workers.append(self._spawn([sys.executable, "-m", "grader", "worker", self.address, "--backend",
                                         "local", "--host", "127.0.0.1", "--name", name], f"{name}.log"))

    def wait_for_workers(self, count: int, timeout: float = 240) -> None:
        with distributed.Client(self.address, timeout=timeout) as client:
            client.wait_for_workers(count, timeout=timeout)

    def kill_scheduler(self) -> None:
        assert self.scheduler is not None
        os.killpg(self.scheduler.pid, signal.SIGKILL)
        self.scheduler.wait()

    def close(self) -> None:
        for proc in [*self.workers, *([self.scheduler] if self.scheduler else [])]:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def assignment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mini_assignment(tmp_path_factory.mktemp("assignment"))


@pytest.fixture(scope="module")
def class_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("class") / "submissions"
    assert len(make_mixed_class(folder)) == CLASS_SIZE
    return folder


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("cluster-logs"))
    try:
        cluster.start_scheduler()
        for name in ("w1", "w2"):
            cluster.start_worker(name)
        cluster.wait_for_workers(2)
        yield cluster
    finally:
        cluster.close()


def batch_argv(source: Path, outdir: Path, assignment: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "grader", "batch", str(source), f"--assignment={assignment}", "-o", str(outdir),
            "--backend", "local", *extra]


def run_cli(argv: list[str], timeout: float = 1200, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**child_env(), **env})


@pytest.fixture(scope="module")
def local_reports(tmp_path_factory: pytest.TempPathFactory, class_dir: Path, assignment: Path) -> dict:
    outdir = tmp_path_factory.mktemp("local") / "out"
    done = run_cli(batch_argv(class_dir, outdir, assignment, "-j", "2"))
    assert done.returncode == 0, done.stdout + done.stderr
    return essences(outdir / "reports")


def wait_until(condition, proc: subprocess.Popen[bytes] | None, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc is None or proc.poll() is None, "the batch ended before the condition was met"
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def report_count(outdir: Path) -> int:
    return len(list((outdir / "reports").glob("*.json"))) if (outdir / "reports").is_dir() else 0


def events_by_run(outdir: Path) -> list[list[str]]:
    runs: list[list[str]] = []
    for event in RunLog.read(outdir / LOG_FILE):
        if event["event"] == "run-start":
            runs.append([])
        elif event["event"] in ("graded", "copied"):
            runs[-1].append(str(event["student"]))
    return runs


def kill_a_busy_worker(address: str) -> str:
    """SIGKILL the worker process (not its nanny) that is running a grading task right now."""
    with distributed.Client(address, timeout=30) as client:
        deadline = time.monotonic() + 300
        while True:
            busy = [w for w, keys in client.processing().items() if keys]
            if busy:
                break
            assert time.monotonic() < deadline, "no worker was ever busy"
            time.sleep(0.2)
        pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
    os.kill(pid, signal.SIGKILL)
    return busy[0]


def test_cluster_reports_equal_local_ones_even_with_a_worker_killed(cluster: Cluster, class_dir: Path,
                                                                    assignment: Path, local_reports: dict,
                                                                    tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    batch = subprocess.Popen(batch_argv(class_dir, outdir, assignment), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, cwd=ROOT, env={**child_env(), "GRADER_CLUSTER": cluster.address})
    try:
        wait_until(lambda: report_count(outdir) >= 10, batch)
        kill_a_busy_worker(cluster.address)
        output, _ = batch.communicate(timeout=1200)
    finally:
        if batch.poll() is None:
            batch.kill()
    assert batch.returncode == 0, output.decode()
    assert essences(outdir / "reports") == local_reports
    runs = events_by_run(outdir)
    assert len(runs) == 1 and sorted(runs[0]) == sorted(local_reports)     # exactly one report each
    where = {e.get("where") for e in RunLog.read(outdir / LOG_FILE) if e["event"] == "graded"}
    assert len({w for w in where if str(w).startswith("worker ")}) >= 2   # both workers (and a restarted one)
    cluster.wait_for_workers(2)                                             # the nanny restarted it


def test_a_killed_client_is_resumed_without_grading_anything_twice(cluster: Cluster, class_dir: Path,
                                                                   assignment: Path, local_reports: dict,
                                                                   tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    argv = batch_argv(class_dir, outdir, assignment, "--cluster", cluster.address)
    batch = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                             cwd=ROOT, env=child_env())
    try:
        wait_until(lambda: report_count(outdir) >= 12, batch)
    finally:
        os.killpg(batch.pid, signal.SIGKILL)
        batch.wait()
    first = {p.name: (p.stat().st_ino, p.read_bytes()) for p in (outdir / "reports").glob("*.json")}
    assert 12 <= len(first) < CLASS_SIZE

    done = run_cli(argv)
    assert done.returncode == 0, done.stdout + done.stderr
    plan = re.search(r"(\d+) reports kept, (\d+) to grade, (\d+) to copy", done.stdout)
    assert plan is not None and int(plan[1]) == len(first)
    after = {p.name: (p.stat().st_ino, p.read_bytes()) for p in (outdir / "reports").glob("*.json")}
    assert {k: after[k] for k in first} == first and len(after) == CLASS_SIZE
    runs = events_by_run(outdir)
    assert len(runs) == 2 and not set(runs[0]) & set(runs[1])
    assert sorted(runs[1]) == sorted(Path(k).stem for k in set(after) - set(first))
    assert essences(outdir / "reports") == local_reports


def test_a_lost_scheduler_stops_the_client_clearly_and_the_rerun_resumes(assignment: Path,
                                                                         tmp_path: Path) -> None:
    source = tmp_path / "class"
    source.mkdir()
    shutil.copy(REFERENCE, source / "alice.py")
    for name in variant_names()[:7]:
        shutil.copy(variant_file(name), source / f"{name}.py")
    outdir = tmp_path / "out"
    cluster = Cluster(tmp_path / "logs")
    try:
        cluster.start_scheduler()
        cluster.start_worker("solo")
        cluster.wait_for_workers(1)
        argv = batch_argv(source, outdir, assignment, "--cluster", cluster.address)
        batch = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=child_env())
        wait_until(lambda: report_count(outdir) >= 2, batch)
        cluster.kill_scheduler()
        _, stderr = batch.communicate(timeout=180)
        assert batch.returncode != 0
        assert "grader: error: lost the Dask scheduler at " + cluster.address in stderr.decode()
        assert "Traceback" not in stderr.decode()
        first = {p.name: p.read_bytes() for p in (outdir / "reports").glob("*.json")}
        assert 2 <= len(first) < 8

        cluster.start_scheduler()                 # the cluster is back at the same address (Dask workers
        cluster.start_worker("solo-again")        # stop when their scheduler goes: start one again)
        cluster.wait_for_workers(1)
        done = run_cli(argv)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"{len(first)} reports kept, {8 - len(first)} to grade" in done.stdout
        after = {p.name: p.read_bytes() for p in (outdir / "reports").glob("*.json")}
        assert len(after) == 8 and {k: after[k] for k in first} == first
    finally:
        cluster.close()


def test_an_unreachable_scheduler_is_a_clear_error(assignment: Path, tmp_path: Path) -> None:
    source = tmp_path / "class"
    source.mkdir()
    shutil.copy(REFERENCE, source / "alice.py")
    address = f"tcp://127.0.0.1:{free_port()}"
    done = run_cli(batch_argv(source, tmp_path / "out", assignment), timeout=300, GRADER_CLUSTER=address)
    assert done.returncode != 0
    assert f"grader: error: cannot reach the Dask scheduler at {address}" in done.stderr
    assert "hint: " in done.stderr and "Traceback" not in done.stderr
    assert not list((tmp_path / "out" / "reports").glob("*.json"))
