"""The table of sandbox backends: looked up by name, not chosen by an if/elif chain.

Their modules load lazily so that ``grader check`` never imports the Docker SDK. The sandbox layer
knows plain limits (``WorkerSpec``), not assignments: ``grader.grading.executors`` makes the spec.
"""

from __future__ import annotations

import importlib
from typing import Callable

from grader.errors import GraderError
from grader.sandbox.base import Sandbox, WorkerSpec

BACKENDS: dict[str, str] = {
    "local": "grader.sandbox.local_backend:LocalSandbox",
    "docker": "grader.sandbox.docker_backend:DockerSandbox",
}


def sandbox_factory(backend: str) -> Callable[[WorkerSpec], Sandbox]:
    if backend not in BACKENDS:
        raise GraderError(f"unknown backend {backend!r}", hint=f"choose one of: {', '.join(BACKENDS)}")
    module, _, name = BACKENDS[backend].partition(":")
    return getattr(importlib.import_module(module), name)
