"""The table of sandbox backends, and how a suite's executor is started on one.

Backends are looked up by name, not chosen by an if/elif chain; their modules load lazily so
that ``grader check`` never imports the Docker SDK.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from grader.assignment import Assignment
from grader.errors import GraderError
from grader.executors import InProcessExecutor, SandboxExecutor
from grader.sandbox.base import Sandbox, WorkerSpec

BACKENDS: dict[str, str] = {
    "local": "grader.sandbox.local_backend:LocalSandbox",
    "docker": "grader.sandbox.docker_backend:DockerSandbox",
}
_counter = itertools.count()


def sandbox_factory(backend: str) -> Callable[[WorkerSpec], Sandbox]:
    if backend not in BACKENDS:
        raise GraderError(f"unknown backend {backend!r}", hint=f"choose one of: {', '.join(BACKENDS)}")
    module, _, name = BACKENDS[backend].partition(":")
    return getattr(importlib.import_module(module), name)


def worker_spec(directory: Path, assignment: Assignment, trusted: bool = False) -> WorkerSpec:
    config = assignment.config
    return WorkerSpec(submission_dir=directory, module=config.module,
                      banned_imports=tuple(config.banned_imports), limits=assignment.limits, trusted=trusted)


def start_executor(backend: str, directory: Path, assignment: Assignment, name: str) -> SandboxExecutor:
    """A started executor for the submission (or the reference) in ``directory``."""
    if backend == "trusted-inprocess":
        # Staff-only shortcut for developing suites against the reference: no isolation at all.
        if os.environ.get("GRADER_TRUSTED_INPROCESS") != "1":
            raise GraderError("the trusted-inprocess backend runs code without any sandbox",
                              hint="set GRADER_TRUSTED_INPROCESS=1 only for code you trust (the reference)")
        return trusted_executor(directory, name)  # type: ignore[return-value]
    sandbox = sandbox_factory(backend)(worker_spec(directory, assignment, trusted=name == "reference"))
    return SandboxExecutor(sandbox, timeout=assignment.config.timeouts.request_s, name=name)


def import_trusted(path: Path, name: str = "autograd") -> ModuleType:
    """Import a *trusted* lab module (the reference) into this process, under a fresh name."""
    file = path / f"{name}.py" if path.is_dir() else path
    spec = importlib.util.spec_from_file_location(f"_trusted_{name}_{next(_counter)}", file)
    if spec is None or spec.loader is None:
        raise GraderError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trusted_executor(path: Path, label: str = "reference") -> InProcessExecutor:
    """The reference run in-process: for benchmarks and the project's own tests, never for students."""
    return InProcessExecutor(import_trusted(path), name=label)


def describe(backend: str) -> dict[str, Any]:
    return {"backend": backend, "factory": BACKENDS.get(backend)}
