"""Executors: run a Program on one backend and return its evidence (a RunResult).

- ``TorchExecutor``: the oracle, on the host.
- ``ExpectedTorch``: torch's answers from the assignment's expectations files where they hold the
  Program (``grader check`` then needs no torch), live torch otherwise; it can record them too.
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

from grader.programs.expectations import Expectations
from grader.programs.interpreter import LabAdapter, RunResult, run_program, start_program
from grader.programs.program import Program
from grader.assignment import Assignment
from grader.errors import ExitStatus, GraderError
from grader.sandbox.backends import sandbox_factory
from grader.sandbox.base import Sandbox, SandboxTimeout, WorkerCrashed, WorkerSpec
from grader.programs.wire import MalformedEvidence, run_result_from_wire


class TestTimeout(Exception):
    """The submission did not answer within the test's time limit (the worker was restarted)."""

    __test__ = False  # not a pytest test class


class BudgetExhausted(TestTimeout):
    """The submission's total time budget (``timeouts.submission_s``) is used up: no time is left."""


class SubmissionCrashed(Exception):
    """The submission killed its worker or sent garbage; the text says what happened."""


CRASH_STREAK = 5
"""Requests in a row that kill the worker (no answer in between) after which it is not restarted: the
rest of the tests report the crash at once instead of paying a fresh sandbox each (about 0.6 s on
Docker). Correct code never crashes; code that crashes only on some inputs answers in between."""


class SubmissionImportFailed(Exception):
    """``import autograd`` failed in the sandbox; every test that needs the submission fails with it."""


class Executor(Protocol):
    name: str

    def run(self, program: Program) -> RunResult: ...

    def time(self, program: Program, repeats: int, timeout: float | None = None,
             lean: bool = False) -> tuple[float, RunResult]:
        """Host wall-clock seconds for ``repeats`` runs, and the evidence of the last run. ``lean``: the
        random inputs are drawn by the executor and the evidence leaves the inputs out (``Interpreter``),
        so a timed request carries the student's work, not megabytes of arrays."""

    def time_split(self, program: Program, split: int, timeout: float | None = None,
                   lean: bool = False) -> tuple[float, float, RunResult]:
        """One run in two timed requests: steps[:split] (the graph), then the rest (backward);
        host seconds of each, and the evidence."""


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

    def time(self, program: Program, repeats: int, timeout: float | None = None,
             lean: bool = False) -> tuple[float, RunResult]:
        header, arrays = program.to_wire()
        start = time.perf_counter()
        for _ in range(repeats - 1):
            run_program(self.adapter, header["steps"], arrays, lean=lean)  # same work in every repeat (see the worker)
        last = run_program(self.adapter, header["steps"], arrays, lean=lean)
        return time.perf_counter() - start, last

    def time_split(self, program: Program, split: int, timeout: float | None = None,
                   lean: bool = False) -> tuple[float, float, RunResult]:
        header, arrays = program.to_wire()
        start = time.perf_counter()
        interpreter = start_program(self.adapter, arrays, lean=lean)
        interpreter.run_part(header["steps"][:split])
        middle = time.perf_counter()
        interpreter.run_part(header["steps"][split:])
        result = interpreter.finish()
        return middle - start, time.perf_counter() - middle, result


class TorchExecutor(InProcessExecutor):
    def __init__(self) -> None:
        from grader.programs.torch_oracle import TorchAdapter

        self.adapter, self.name = TorchAdapter(), "torch"


TORCH_HINT = ("install torch for staff runs: `pip install 'autograd-lab-grader[staff]'` (torch==2.13.0, the CPU "
              "build: add `--extra-index-url https://download.pytorch.org/whl/cpu`), or run without --seed "
              "to use the expectations shipped with the assignment")


class TorchMissing(GraderError):
    """A Program needs torch's answer, none is stored for it, and torch is not installed."""

    exit_status = ExitStatus.USAGE


def torch_installed() -> bool:
    """Whether torch can be imported, without importing it (that alone takes over a second)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # blocked (sys.modules["torch"] = None) or a broken install
        return False


class ExpectedTorch:
    """The oracle as suites see it: stored answers first, live torch (imported on first need) for the rest.

    With ``record``, every answer comes from live torch and is added to ``record``
    (``grader expectations build``), so a stale file can never feed its own rebuild.
    """

    name = "torch"

    def __init__(self, stores: list[Expectations], record: Expectations | None = None) -> None:
        self.stores, self.record = stores, record
        self._live: TorchExecutor | None = None
        self.hits = self.misses = 0

    def run(self, program: Program) -> RunResult:
        if self.record is None:
            for store in self.stores:
                hit = store.get(program)
                if hit is not None:
                    self.hits += 1
                    return hit
        self.misses += 1
        result = self.live().run(program)
        if self.record is not None:
            self.record.add(program, result)
        return result

    def time(self, program: Program, repeats: int, timeout: float | None = None,
             lean: bool = False) -> tuple[float, RunResult]:
        return self.live().time(program, repeats, timeout, lean)

    def live(self) -> TorchExecutor:
        if self._live is None:
            if not torch_installed():
                raise TorchMissing("this test needs torch.autograd's results, which are not in the expectations "
                                   "shipped with the assignment (a seed other than the assignment's, or a "
                                   "Program changed since they were built), and torch is not installed",
                                   hint=TORCH_HINT)
            self._live = TorchExecutor()
        return self._live


class SandboxExecutor:
    """A submission in a sandbox. ``hello`` is the worker's import report."""

    def __init__(self, sandbox: Sandbox, timeout: float, name: str = "submission") -> None:
        self.sandbox, self.timeout, self.name = sandbox, timeout, name
        self.hello: dict[str, Any] = sandbox.start()
        self.output: list[str] = [str(self.hello.get("stdout") or "")]
        self.used = False
        self.deadline: float | None = None   # time.monotonic() past which no request may run (the budget)
        self.crashes: list[str] = []         # the crashes since the last answer, in order

    @property
    def import_error(self) -> str | None:
        if self.hello.get("import_ok"):
            return None
        err = self.hello.get("error") or {}
        return f"{err.get('type', 'Error')}: {err.get('message', '')}\n{err.get('traceback', '')}".strip()

    def run(self, program: Program) -> RunResult:
        return self._request(program, {"type": "run"})[1]

    def time(self, program: Program, repeats: int, timeout: float | None = None,
             lean: bool = False) -> tuple[float, RunResult]:
        return self._request(program, {"type": "time", "repeats": int(repeats)}, timeout, lean)

    def reset(self) -> None:
        """Re-import the submission in its worker, so one test's global state cannot leak into the next."""
        if not self.used or self.import_error or self._left() <= 0 or self._given_up:
            return
        self.used = False
        try:
            reply, _ = self.sandbox.request({"type": "reset"}, {}, timeout=min(self.timeout, self._left()))
        except (SandboxTimeout, WorkerCrashed):
            self._restart()
            return
        if isinstance(reply, dict) and reply.get("type") == "reset":
            self.output.append(str(reply.get("stdout") or ""))
            if not reply.get("import_ok"):
                self.hello = {**self.hello, "import_ok": False, "error": reply.get("error")}
        else:
            self._restart()

    def time_split(self, program: Program, split: int, timeout: float | None = None,
                   lean: bool = False) -> tuple[float, float, RunResult]:
        request, arrays, inputs = _wire_request(program, {"type": "build", "split": int(split)}, lean)
        built, _, _ = self._exchange(program, request, arrays, timeout, expect="built")
        elapsed, reply, reply_arrays = self._exchange(program, {"type": "resume"}, {}, timeout)
        return built, elapsed, self._evidence(program, reply, reply_arrays, inputs)

    def _request(self, program: Program, kind: dict[str, Any], timeout: float | None = None,
                 lean: bool = False) -> tuple[float, RunResult]:
        request, arrays, inputs = _wire_request(program, kind, lean)
        elapsed, reply, reply_arrays = self._exchange(program, request, arrays, timeout)
        return elapsed, self._evidence(program, reply, reply_arrays, inputs)

    def _exchange(self, program: Program, request: dict[str, Any], arrays: dict[str, Any], timeout: float | None,
                  expect: str = "result") -> tuple[float, Any, dict[str, Any]]:
        """One request, timed on the host clock; a timeout or crash restarts the worker (after
        ``CRASH_STREAK`` crashes in a row: closes it for good) and raises."""
        if self.import_error:
            raise SubmissionImportFailed(f"your autograd.py could not be imported:\n{self.import_error}")
        if self._given_up:
            raise SubmissionCrashed(f"not run: your code killed its worker in {len(self.crashes)} requests in a row, "
                                    f"so the worker was not restarted again. The first: {self.crashes[0]}")
        self.used = True
        limit = self.timeout if timeout is None else timeout
        left = self._left()
        if left <= 0:
            raise BudgetExhausted(f"the submission's time budget was used up before {program.title!r} could run")
        start = time.perf_counter()
        try:
            reply, reply_arrays = self.sandbox.request(request, arrays, timeout=min(limit, left))
        except SandboxTimeout:
            if left < limit and self._left() <= 0:
                self.sandbox.close()   # no test may run any more: no restart
                raise BudgetExhausted(f"the submission's time budget ran out while running {program.title!r} "
                                      f"(the last {left:.1f} s of it)") from None
            self._restart()
            raise TestTimeout(f"no answer within {limit:g} s "
                              f"(an infinite loop, or far too slow?) while running {program.title!r}") from None
        except WorkerCrashed as exc:
            raise self._crashed(f"the worker running your code died while running {program.title!r}: {exc}") from None
        elapsed = time.perf_counter() - start
        self.output.append(str(reply.get("stdout") or "") if isinstance(reply, dict) else "")
        if not isinstance(reply, dict) or reply.get("type") != expect:
            raise self._crashed(f"the worker sent malformed evidence for {program.title!r}: the reply is not a {expect}")
        self.crashes.clear()
        return elapsed, reply, reply_arrays

    def _crashed(self, what: str) -> SubmissionCrashed:
        """Restart the worker, unless it has crashed ``CRASH_STREAK`` times in a row: then close it."""
        self.crashes.append(what)
        if self._given_up:
            self.sandbox.close()
        else:
            self._restart()
        return SubmissionCrashed(what)

    def _evidence(self, program: Program, reply: dict[str, Any], reply_arrays: dict[str, Any],
                  arrays: dict[str, Any]) -> RunResult:
        try:
            return run_result_from_wire(reply.get("result"), reply_arrays, arrays)
        except MalformedEvidence as exc:
            raise self._crashed(f"the worker sent malformed evidence for {program.title!r}: {exc}") from None

    @property
    def _given_up(self) -> bool:
        """The worker crashed ``CRASH_STREAK`` requests in a row: it is closed and not started again."""
        return len(self.crashes) >= CRASH_STREAK

    def _left(self) -> float:
        """Seconds left of the submission's budget (infinite without one)."""
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def _restart(self) -> None:
        self.sandbox.close()
        if self._left() > 0:   # past the budget no test runs: starting a worker would only delay the report
            self.hello = self.sandbox.start()

    def close(self) -> None:
        self.sandbox.close()


def _wire_request(program: Program, kind: dict[str, Any], lean: bool
                  ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(request, arrays to send, inputs to judge the reply's echo against). A lean run sends how to draw
    its random inputs and gets no echo back: no inputs to judge, and none taken on trust."""
    header, arrays = program.to_wire(draw_in_worker=lean)
    request = {**kind, "program": header, **({"lean": True} if lean else {})}
    return request, arrays, {} if lean else arrays


# ---- factories: an executor for a submission (or the reference) on a named backend ----

_counter = itertools.count()


def worker_spec(directory: Path, assignment: Assignment, trusted: bool = False, image: str | None = None) -> WorkerSpec:
    config = assignment.config
    return WorkerSpec(submission_dir=directory, module=config.module, banned_imports=tuple(config.banned_imports),
                      limits=assignment.limits, trusted=trusted, image=image, files=tuple(config.required_files))


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
