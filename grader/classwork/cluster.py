"""The Dask executor: every submission a Dask task, graded on a worker in that worker's own sandbox.

Client side, ``ClusterPool`` (a ``GradingPool``): it connects to a scheduler started with Dask's
own CLI (``dask scheduler``; or dask-jobqueue on SLURM/PBS, dask-kubernetes on Kubernetes) and
submits ``grade_on_worker(job_json, assignment)``: a JSON string and a dict of bytes, nothing
else (Dask pickles task arguments itself, so only plain data goes in). Back comes a JSON string:
an envelope (see ``grader.classwork.pool``) whose report the client validates. Dask does the
scheduling: a worker that dies mid-task has its tasks rescheduled on the others; a task whose
workers keep dying (``distributed.scheduler.allowed-failures``) ends in a ``sandbox-error``
report. A scheduler that goes away stops the batch with ``ClusterError``; rerunning the same
command once the cluster is back resumes where it stopped.

Worker side (any process that can import the grader): ``grade_on_worker`` writes the assignment
bundle into a cache folder once per digest (checked against it), and hands the job to a
long-lived grading process of its own (``grader.classwork.pool.LocalPool``, one per task
thread), which refuses a job made with another grader, assignment or image. ``grader worker``
starts a Dask worker with this module as its preload, so the first grading process is warm
before the first task arrives.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from grader.classwork.pool import Finished, LocalPool, failure
from grader.errors import ExitStatus, GraderError
from grader.grading.job import AssignmentBundle, GradingJob, JobRefused, materialise

CONNECT_TIMEOUT_S = 20.0
WORKERS_REFRESH_S = 2.0
INSTALL_HINT = "install the cluster extra: pip install 'autograd-lab-grader[cluster]' (it is Dask distributed)"


class ClusterError(GraderError):
    """The Dask cluster cannot be reached or went away."""

    exit_status = ExitStatus.SANDBOX


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ClusterError("grading on a cluster needs Dask distributed, which is not installed",
                           hint=INSTALL_HINT) from None
    return distributed


# -- the client side ----------------------------------------------------------------------


class ClusterPool:
    """Jobs as Dask tasks; at most twice the cluster's task threads in flight (progress stays honest)."""

    def __init__(self, address: str, bundle: AssignmentBundle) -> None:
        distributed = _distributed()
        for name in ("distributed.client", "distributed.comm", "distributed.core", "distributed.batched"):
            logging.getLogger(name).setLevel(logging.CRITICAL)   # a lost scheduler is our one clear error
        self.address, self.bundle = address, bundle.to_plain()
        try:
            self.client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise ClusterError(f"cannot reach the Dask scheduler at {address}: {err}",
                               hint="start one with `dask scheduler` and workers with `grader worker ADDRESS`, "
                                    "or check --cluster / $GRADER_CLUSTER") from None
        self.running: dict[str, tuple[Any, float]] = {}     # key -> (future, started)
        self._threads, self._threads_at = 0, 0.0

    def free_slots(self) -> int:
        if time.monotonic() - self._threads_at > WORKERS_REFRESH_S:
            self._threads = sum(self._call(self.client.nthreads).values())
            self._threads_at = time.monotonic()
        return max(2, 2 * self._threads) - len(self.running)

    def submit(self, key: str, job: GradingJob) -> None:
        future = self._call(self.client.submit, grade_on_worker, job.model_dump_json(), self.bundle,
                            key=f"grade-{key}-{uuid.uuid4().hex[:8]}", pure=False)
        self.running[key] = (future, time.monotonic())

    def wait(self, timeout: float) -> list[Finished]:
        time.sleep(timeout)         # the client's own thread keeps the futures' status current
        self._check_connection()
        finished = []
        for key, (future, started) in list(self.running.items()):
            if future.status in ("pending",):
                continue
            envelope = self._envelope(future)
            where = str(envelope.pop("where", f"cluster {self.address}"))
            finished.append(Finished(key, envelope, time.monotonic() - started, where))
            del self.running[key]
        return finished

    def _envelope(self, future: Any) -> dict[str, Any]:
        if future.status == "finished":
            text = future.result()
            value = json.loads(text) if isinstance(text, str) else None
            return value if isinstance(value, dict) else failure("grader-crashed", "the worker sent no envelope")
        if future.status == "error":
            exc = future.exception()
            return failure("grader-crashed", f"the Dask task failed on the cluster: {type(exc).__name__}: {exc}")
        self._lost(f"its task was {future.status}")
        raise AssertionError("unreachable")

    def _check_connection(self) -> None:
        if self.client.status != "running":
            self._lost("the connection dropped")

    def _lost(self, why: str) -> None:
        raise ClusterError(f"lost the Dask scheduler at {self.address} ({why})",
                           hint="restart the scheduler and its workers, then rerun the same command: the reports "
                                "already written are kept and only the missing ones are graded")

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (OSError, TimeoutError) as err:
            self._lost(str(err) or type(err).__name__)

    def close(self) -> None:
        try:
            if self.running and self.client.status == "running":
                self.client.cancel([future for future, _ in self.running.values()])
        except Exception:  # noqa: BLE001 - closing after the scheduler is gone
            pass
        finally:
            self.running = {}
            try:
                self.client.close(timeout=5)
            except Exception:  # noqa: BLE001
                pass


# -- the worker side ----------------------------------------------------------------------

_lock = threading.Lock()
_idle: list[LocalPool] = []
_assignments: dict[str, Path] = {}
_workdir: Path | None = None


def _cache() -> Path:
    root = Path(os.environ.get("GRADER_CACHE_DIR") or Path.home() / ".cache" / "autograd-grader") / "assignments"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _take_pool(assignment_root: Path) -> LocalPool:
    global _workdir
    with _lock:
        if _workdir is None:
            _workdir = Path(tempfile.mkdtemp(prefix="grader-dask-worker-"))
        pool = _idle.pop() if _idle else None
        index = len(_idle)
    if pool is None:
        pool = LocalPool(1, _workdir / f"thread-{threading.get_ident()}-{index}", assignment_root)
    pool.assignment_root = assignment_root
    return pool


def _give_back(pool: LocalPool) -> None:
    with _lock:
        _idle.append(pool)


def _assignment_root(bundle: dict[str, Any]) -> Path:
    digest = str(bundle.get("digest"))
    with _lock:
        if digest not in _assignments:
            _assignments[digest] = materialise(AssignmentBundle.from_plain(bundle), _cache()).root
        return _assignments[digest]


def grade_on_worker(job_json: str, bundle: dict[str, Any]) -> str:
    """The Dask task: grade one job here, in a long-lived grading process; the envelope as JSON text."""
    where = f"worker {socket.gethostname()}:{os.getpid()}"
    try:
        job = GradingJob.model_validate_json(job_json)
        pool = _take_pool(_assignment_root(bundle))
        try:
            pool.submit("job", job)
            done: list[Finished] = []
            while not done:
                done = pool.wait(0.5)
            envelope = done[0].envelope
        finally:
            _give_back(pool)
    except JobRefused as exc:
        envelope = {"refused": {"message": str(exc), "hint": exc.hint}}
    except Exception as exc:  # noqa: BLE001 - a worker that cannot grade says so; it never raises to Dask
        envelope = {"refused": {"message": f"the worker failed: {type(exc).__name__}: {exc}", "hint": None}}
    envelope["where"] = where
    return json.dumps(envelope)


def dask_setup(worker: Any = None) -> None:
    """Dask preload hook (``dask worker --preload grader.classwork.cluster``): one warm grading process."""
    with _lock:
        global _workdir
        if _workdir is None:
            _workdir = Path(tempfile.mkdtemp(prefix="grader-dask-worker-"))
        if not _idle:
            _idle.append(LocalPool(1, _workdir / "preloaded", Path(".")))
