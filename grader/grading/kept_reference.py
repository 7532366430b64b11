"""The reference's sandbox, kept by a long-lived grading process from one submission to the next.

A batch slot (``grader.grading.service``) grades one submission after another. Each submission
gets a fresh sandbox of its own, but the reference's sandbox holds only staff code and the suites'
Programs: nothing of a submission ever reaches it (answers are compared on the host). Starting it
costs a container and an interpreter with NumPy (~0.6 s of CPU on Docker) per submission, an
eighth of a batch's work, so a grading process keeps it between jobs. The reference module is
re-imported before every job, as it is between tests, and a worker that failed is started afresh.
``grader grade`` on its own keeps nothing: ``enable`` is called by the grading service only.
"""

from __future__ import annotations

import atexit
import threading

from grader.grading.executors import SandboxExecutor
from grader.sandbox.base import WorkerSpec

_kept: dict[tuple[str, WorkerSpec], SandboxExecutor] = {}
_lock = threading.Lock()          # the plugin starts the reference from a background thread
_enabled = False


def enable() -> None:
    """Keep reference sandboxes in this process from now on (closed when it exits)."""
    global _enabled
    _enabled = True
    atexit.register(close_all)


def take(backend: str, spec: WorkerSpec) -> SandboxExecutor | None:
    """A kept reference sandbox for this backend and spec, ready for a new submission; else None."""
    if not _enabled:
        return None
    with _lock:
        executor = _kept.pop((backend, spec), None)
    if executor is None:
        return None
    executor.deadline = None      # the new session sets its own budget
    executor.crashes.clear()
    executor.output = []
    executor.reset()              # a fresh import of the reference (restarts the worker if it died)
    if executor.import_error:
        executor.close()
        return None
    return executor


def give_back(backend: str, spec: WorkerSpec, executor: SandboxExecutor) -> bool:
    """Keep ``executor`` for the next submission; False (the caller closes it) when keeping is off."""
    if not _enabled or executor.import_error:
        return False
    with _lock:
        previous = _kept.pop((backend, spec), None)
        _kept[(backend, spec)] = executor
    if previous is not None and previous is not executor:
        previous.close()
    return True


def close_all() -> None:
    with _lock:
        executors = list(_kept.values())
        _kept.clear()
    for executor in executors:
        executor.close()
