"""Executors: run a Program on one backend and return its evidence (a RunResult).

- ``TorchExecutor``: the oracle, on the host.
- ``InProcessExecutor``: any module with the lab API in this process (the reference, in tests).
- ``SandboxExecutor``: a submission inside a Sandbox (local subprocess or Docker container);
  the Program goes in as frames, evidence comes back and is validated by ``grader.programs.wire``.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from grader.programs.interpreter import LabAdapter, RunResult, run_program
from grader.programs.program import Program
from grader.assignment import Assignment
from grader.errors import GraderError
from grader.sandbox.backends import sandbox_factory
from grader.sandbox.base import Sandbox, SandboxTimeout, WorkerCrashed, WorkerSpec
from grader.programs.wire import MalformedEvidence, run_result_from_wire


class TestTimeout(Exception):
    """The submission did not answer within the test's time limit (the worker was restarted)."""

    __test__ = False  # not a pytest test class


class SubmissionCrashed(Exception):
    """The submission killed its worker or sent garbage; the text says what happened."""


class SubmissionImportFailed(Exception):
    """``import autograd`` failed in the sandbox; every test that needs the submission fails with it."""


class Executor(Protocol):
    name: str

    def run(self, program: Program) -> RunResult: ...

    def time(self, program: Program, repeats: int, timeout: float | None = None) -> tuple[float, RunResult]:
        """Host wall-clock seconds for ``repeats`` runs, and the evidence of the last run."""


class InProcessExecutor:
    def __init__(self, module: ModuleType, name: str = "in-process") -> None:
        self.adapter, self.name = LabAdapter(module), name
        self.hello: dict[str, Any] = {"import_ok": True}
        self.output: list[str] = []

    def reset(self) -> None:
        """In-process modules are trusted (the reference): nothing to reset."""

    def close(self) -> None:
        """Nothing to release: the module lives in this process."""

    def run(self, program: Program) -> RunResult:
        header, arrays = program.to_wire()
        return run_program(self.adapter, header["steps"], arrays)

    def time(self, program: Program, repeats: int, timeout: float | None = None) -> tuple[float, RunResult]:
        header, arrays = program.to_wire()
        start = time.perf_counter()
        for _ in range(repeats - 1):
            run_program(self.adapter, header["steps"], arrays)  # same work in every repeat (see the worker)
        last = run_program(self.adapter, header["steps"], arrays)
        return time.perf_counter() - start, last


class TorchExecutor(InProcessExecutor):
    def __init__(self) -> None:
        from grader.programs.torch_oracle import TorchAdapter

        self.adapter, self.name = TorchAdapter(), "torch"


class SandboxExecutor:
    """A submission in a sandbox. ``hello`` is the worker's import report."""

    def __init__(self, sandbox: Sandbox, timeout: float, name: str = "submission") -> None:
        self.sandbox, self.timeout, self.name = sandbox, timeout, name
        self.hello: dict[str, Any] = sandbox.start()
        self.output: list[str] = [str(self.hello.get("stdout") or "")]
        self.used = False

    @property
    def import_error(self) -> str | None:
        if self.hello.get("import_ok"):
            return None
        err = self.hello.get("error") or {}
        return f"{err.get('type', 'Error')}: {err.get('message', '')}\n{err.get('traceback', '')}".strip()

    def run(self, program: Program) -> RunResult:
        return self._request(program, {"type": "run"})[1]

    def time(self, program: Program, repeats: int, timeout: float | None = None) -> tuple[float, RunResult]:
        return self._request(program, {"type": "time", "repeats": int(repeats)}, timeout)

    def reset(self) -> None:
        """Re-import the submission in its worker, so one test's global state cannot leak into the next."""
        if not self.used or self.import_error:
            return
        self.used = False
        try:
            reply, _ = self.sandbox.request({"type": "reset"}, {}, timeout=self.timeout)
        except (SandboxTimeout, WorkerCrashed):
            self._restart()
            return
        if isinstance(reply, dict) and reply.get("type") == "reset":
            self.output.append(str(reply.get("stdout") or ""))
            if not reply.get("import_ok"):
                self.hello = {**self.hello, "import_ok": False, "error": reply.get("error")}
        else:
            self._restart()

    def _request(self, program: Program, kind: dict[str, Any], timeout: float | None = None) -> tuple[float, RunResult]:
        if self.import_error:
            raise SubmissionImportFailed(f"your autograd.py could not be imported:\n{self.import_error}")
        header, arrays = program.to_wire()
        self.used = True
        limit = self.timeout if timeout is None else timeout
        start = time.perf_counter()
        try:
            reply, reply_arrays = self.sandbox.request({**kind, "program": header}, arrays, timeout=limit)
        except SandboxTimeout:
            self._restart()
            raise TestTimeout(f"no answer within {limit:g} s "
                              f"(an infinite loop, or far too slow?) while running {program.title!r}") from None
        except WorkerCrashed as exc:
            self._restart()
            raise SubmissionCrashed(f"the worker running your code died while running {program.title!r}: {exc}") from None
        elapsed = time.perf_counter() - start
        self.output.append(str(reply.get("stdout") or "") if isinstance(reply, dict) else "")
        try:
            if not isinstance(reply, dict) or reply.get("type") != "result":
                raise MalformedEvidence("the reply is not a result")
            return elapsed, run_result_from_wire(reply.get("result"), reply_arrays, arrays)
        except MalformedEvidence as exc:
            self._restart()
            raise SubmissionCrashed(f"the worker sent malformed evidence for {program.title!r}: {exc}") from None

    def _restart(self) -> None:
        self.sandbox.close()
        self.hello = self.sandbox.start()

    def close(self) -> None:
        self.sandbox.close()


# ---- factories: an executor for a submission (or the reference) on a named backend ----

_counter = itertools.count()


def worker_spec(directory: Path, assignment: Assignment, trusted: bool = False, image: str | None = None) -> WorkerSpec:
    config = assignment.config
    return WorkerSpec(submission_dir=directory, module=config.module, banned_imports=tuple(config.banned_imports),
                      limits=assignment.limits, trusted=trusted, image=image)


def start_executor(backend: str, directory: Path, assignment: Assignment, name: str,
                   image: str | None = None) -> SandboxExecutor:
    """A started executor for the submission (or the reference) in ``directory``; ``image``: docker's tag."""
    if backend == "trusted-inprocess":
        # Staff-only shortcut for developing suites against the reference: no isolation at all.
        if os.environ.get("GRADER_TRUSTED_INPROCESS") != "1":
            raise GraderError("the trusted-inprocess backend runs code without any sandbox",
                              hint="set GRADER_TRUSTED_INPROCESS=1 only for code you trust (the reference)")
        return trusted_executor(directory, name)  # type: ignore[return-value]
    sandbox = sandbox_factory(backend)(worker_spec(directory, assignment, trusted=name == "reference", image=image))
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
