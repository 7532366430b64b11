"""pytest plugin of the grader: fixtures and markers for suites, outcomes for reports.

Suites are plain pytest files. They use the fixtures ``lab`` (the submission's executor),
``torch_ref`` (the oracle), ``reference_lab`` (the staff solution in the same kind of sandbox,
for speed ratios), ``matches_torch`` (run a Program on both and compare), ``seed`` and
``assignment``; and the markers ``points(n)``, ``part(name)``, ``visibility("hidden")``.

Module hooks stay thin: the stateful ``GradingSession`` is registered only when a submission
is given (``--submission PATH``), so the project's own test runs are unaffected.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from grader.assignment import Assignment, load_assignment
from grader.errors import GraderError
from grader.grading.executors import (BudgetExhausted, Executor, ExpectedTorch, SandboxExecutor, SubmissionCrashed,
                                     SubmissionImportFailed, TestTimeout, worker_spec)
from grader.grading import kept_reference
from grader.grading.feature_log import FeatureRecorder, TestFeatures, write_feature_log
from grader.grading.provenance import installed_version
from grader.programs import expectations as stored
from grader.grading.diagnosis_hook import DIAGNOSIS, diagnosed, to_report_diagnosis
from grader.programs.compare import Mismatch, assert_same
from grader.programs.program import Program
from grader.report import TestResult
from grader.sandbox.base import WorkerSpec

SESSION_NAME = "grader-session"
MAX_OUTPUT = 20_000
FACTS = pytest.StashKey["TestFacts"]()


@dataclass(frozen=True)
class TestFacts:
    """What the markers and the path say of one test, resolved and validated once."""

    part: str
    points: float
    visibility: str          # "visible" | "hidden"
    name: str                # node id relative to the assignment's tests folder


@dataclass
class Outcomes:
    """Everything a run learnt, for the CLI to turn into a report."""

    assignment: str
    seed: int
    backend: str
    tests: list[TestResult] = field(default_factory=list)
    hidden_not_run: int = 0
    stdout: str = ""
    hello: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    finished: float = 0.0
    budget_s: float = 0.0                               # timeouts.submission_s of this run
    cut: list[str] = field(default_factory=list)        # tests not run (or stopped) because the budget ran out


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grader", "autograd-lab grader")
    group.addoption("--submission", dest="grader_submission", metavar="PATH",
                    help="grade this submission: a folder, a .py, a .zip or an .ipynb")
    group.addoption("--backend", dest="grader_backend", default="local", choices=("local", "docker", "trusted-inprocess"),
                    help="sandbox backend for the submission (default: local)")
    group.addoption("--image", dest="grader_image", default=None, metavar="TAG",
                    help="sandbox image tag for the docker backend (default: build or find the current one)")
    group.addoption("--seed", dest="grader_seed", type=int, default=None,
                    help="seed of every Program (default: the assignment's)")
    group.addoption("--assignment", dest="grader_assignment", metavar="PATH",
                    help="assignment folder (default: found above the test files)")
    group.addoption("--grader-outcomes", dest="grader_outcomes", metavar="PATH",
                    help="write the run's outcomes as JSON to PATH")
    group.addoption("--visible-only", dest="grader_visible_only", action="store_true",
                    help="run only visible tests; count the hidden ones (what `grader check` does)")
    group.addoption("--grader-deadline", dest="grader_deadline", type=float, default=None, metavar="EPOCH",
                    help="Unix time at which the submission's time budget ends (default: timeouts.submission_s "
                         "from the start of this run)")
    group.addoption("--grader-features", dest="grader_features", metavar="PATH",
                    help="write the features of the Programs each test runs as JSON to PATH (the fairness check)")
    group.addoption("--no-speed-reference", dest="grader_no_speed_reference", action="store_true",
                    help="no reference sandbox: speed tests are judged by their time limits, as in a student "
                         "bundle (what `grader check` does)")
    group.addoption("--record-expectations", dest="grader_record", metavar="PATH",
                    help="ask live torch for every Program and write its answers to PATH.json + PATH.npz "
                         "(what `grader expectations build` does)")
    group.addoption("--part", dest="grader_parts", action="append", default=[], metavar="PART",
                    help="run only the tests of this part (repeatable)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "points(n): points this test is worth (a number >= 0)")
    config.addinivalue_line("markers", "part(name): the assignment part this test belongs to")
    config.addinivalue_line("markers", "visibility(v): 'visible' or 'hidden' (default: from the folder)")
    if config.getoption("grader_submission") and not config.pluginmanager.has_plugin(SESSION_NAME):
        config.pluginmanager.register(GradingSession(config), SESSION_NAME)


def find_assignment_above(path: Path) -> Path | None:
    for folder in [path, *path.parents]:
        if (folder / "assignment.yaml").is_file():
            return folder
    return None


def resolve_facts(item: pytest.Item, assignment: Assignment) -> TestFacts:
    """Validate the markers of ``item``; errors name the marker's value and the test."""
    where = item.nodeid
    part_marker = item.get_closest_marker("part")
    part = part_marker.args[0] if part_marker and part_marker.args else None
    if part not in assignment.config.parts:
        raise pytest.UsageError(f"invalid part {part!r} from marker on {where}; "
                                f"known parts: {', '.join(assignment.config.parts)}")
    points_marker = item.get_closest_marker("points")
    points = points_marker.args[0] if points_marker and points_marker.args else None
    if isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0:
        raise pytest.UsageError(f"invalid points {points!r} from marker on {where}")
    vis_marker = item.get_closest_marker("visibility")
    tests_dir = assignment.root / "tests"
    rel = Path(item.path).resolve().relative_to(tests_dir) if tests_dir in Path(item.path).resolve().parents else None
    default_vis = "hidden" if rel is not None and rel.parts[0] == "hidden" else "visible"
    visibility = vis_marker.args[0] if vis_marker and vis_marker.args else default_vis
    if visibility not in ("visible", "hidden"):
        raise pytest.UsageError(f"invalid visibility {visibility!r} from marker on {where}")
    name = f"{rel.as_posix()}::{item.name}" if rel is not None else item.nodeid
    return TestFacts(part, float(points), visibility, name)


def _failure_text(excinfo: pytest.ExceptionInfo[BaseException] | None, longrepr: Any) -> tuple[str, str]:
    """(status, student-facing text) for a failed phase."""
    if excinfo is None:
        return "failed", str(longrepr)[:MAX_OUTPUT]
    exc = excinfo.value
    if isinstance(exc, BudgetExhausted):
        return "timeout", f"{exc}. {BUDGET_CUT}"
    if isinstance(exc, TestTimeout):
        return "timeout", str(exc)
    if isinstance(exc, (SubmissionCrashed, SubmissionImportFailed)):
        return "error", str(exc)[:MAX_OUTPUT]
    if isinstance(exc, (Mismatch, AssertionError)):
        return "failed", str(exc)[:MAX_OUTPUT]
    return "error", f"{type(exc).__name__}: {exc}"[:MAX_OUTPUT]


BUDGET_CUT = ("The submission's total time budget (timeouts.submission_s in assignment.yaml) was used up, so "
              "this test was cut and scores 0: make the slow tests faster (see the first tests reported as timeout)")


class GradingSession:
    """Per-run state: the assignment, the submission's sandboxes, and the outcomes."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.clock_start = time.monotonic()
        self.deadline: float | None = None    # time.monotonic() at which the budget ends
        self.features: dict[str, TestFeatures] = {}
        self.submission_path = Path(config.getoption("grader_submission")).resolve()
        self.backend = config.getoption("grader_backend")
        self.image = config.getoption("grader_image")
        self.seed_option: int | None = config.getoption("grader_seed")
        explicit = config.getoption("grader_assignment")
        self._assignment = load_assignment(Path(explicit)) if explicit else None
        self.executors: dict[str, SandboxExecutor] = {}
        self.starting: dict[str, Future[SandboxExecutor]] = {}   # sandboxes started ahead (see prestart)
        self.submission: Any = None
        self.outcomes: Outcomes | None = None
        self.setup_error: str | None = None
        self.oracle: ExpectedTorch | None = None

    # ---- resolution ----

    def assignment_for(self, path: Path) -> Assignment | None:
        if self._assignment is None:
            folder = find_assignment_above(Path(path).resolve().parent)
            if folder is not None:
                self._assignment = load_assignment(folder)
        return self._assignment

    @property
    def assignment(self) -> Assignment:
        if self._assignment is None:
            raise pytest.UsageError("no assignment.yaml found above the tests; pass --assignment PATH")
        return self._assignment

    @property
    def seed(self) -> int:
        return self.seed_option if self.seed_option is not None else self.assignment.config.seed

    def executor(self, which: str) -> SandboxExecutor:
        """The submission's ("lab") or the reference's ("reference") sandboxed executor, started once."""
        if which not in self.executors:
            future = self.starting.pop(which, None)
            self.executors[which] = future.result() if future is not None else self._start(which)
            if isinstance(self.executors[which], SandboxExecutor):
                self.executors[which].deadline = self.deadline
            if which == "lab" and self.outcomes is not None:
                self.outcomes.hello = dict(self.executors[which].hello)
        return self.executors[which]

    def _start(self, which: str) -> SandboxExecutor:
        from grader.grading.executors import start_executor  # the backends table; docker SDK loads lazily

        directory = self._submission_dir() if which == "lab" else self.assignment.reference_dir
        if directory is None:
            raise GraderError("this assignment has no reference solution to time against")
        if which == "reference":
            kept = kept_reference.take(self.backend, self._reference_spec(directory))
            if kept is not None:
                return kept
        return start_executor(self.backend, directory, self.assignment, which, image=self.image)

    def _reference_spec(self, directory: Path) -> WorkerSpec:
        return worker_spec(directory, self.assignment, trusted=True, image=self.image)

    def _release(self, which: str, executor: SandboxExecutor) -> None:
        """Close a sandbox at the session's end; a grading service keeps the reference's for its next job."""
        directory = self.assignment.reference_dir
        if (which == "reference" and directory is not None and isinstance(executor, SandboxExecutor)
                and kept_reference.give_back(self.backend, self._reference_spec(directory), executor)):
            return
        executor.close()

    def prestart(self, which: str) -> None:
        """Start a sandbox in the background, so that sandboxes start side by side and while pytest
        collects and runs the first tests, not one after the other inside the first tests that need
        them. A failed start is raised where a test asks for the sandbox, as it would be without this."""
        if which in self.starting or which in self.executors:
            return
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"start-{which}")
        self.starting[which] = pool.submit(self._start, which)
        pool.shutdown(wait=False)

    def reference_in_use(self) -> bool:
        """Speed is timed against the reference, unless it is not shipped (a student bundle) or not
        wanted (``--no-speed-reference``, `grader check`): then time limits judge it."""
        return self.assignment.reference_dir is not None and not self.config.getoption("grader_no_speed_reference")

    def torch_oracle(self) -> ExpectedTorch:
        """torch's answers: at the assignment's seed from its expectations files, else live torch."""
        if self.oracle is None:
            folder = self.assignment.expectations_dir
            record = self.config.getoption("grader_record")
            stores: list[stored.Expectations] = []
            if record is None and self.seed == self.assignment.config.seed:
                try:
                    stores = [stored.load_shared(folder, name) for name in ("public", "hidden")
                              if stored.exists(folder, name)]
                except stored.ExpectationsError as exc:
                    raise GraderError(str(exc), hint="rebuild them: grader expectations build") from None
            meta = {"assignment": self.assignment.name, "seed": self.seed}
            self.oracle = ExpectedTorch(stores, stored.Expectations(meta) if record else None)
        return self.oracle

    def _submission_dir(self) -> Path:
        if self.setup_error:
            raise SubmissionImportFailed(self.setup_error)
        if self.submission is None:
            from grader.grading.submission import load_submission

            try:
                self.submission = load_submission(self.submission_path, self.assignment.config.required_files)
            except GraderError as exc:
                self.setup_error = f"the submission cannot be graded: {exc}"
                raise SubmissionImportFailed(self.setup_error) from None
        return Path(self.submission.staged_dir)

    # ---- hooks ----

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        for item in items:
            assignment = self.assignment_for(Path(item.path))
            if assignment is not None:
                item.stash[FACTS] = resolve_facts(item, assignment)
        if self._assignment is None:
            return
        self.outcomes = Outcomes(self._assignment.name, self.seed, self.backend,
                                 budget_s=self._assignment.config.timeouts.submission_s)
        self.deadline = self._deadline(config)
        parts = set(config.getoption("grader_parts"))
        unknown = parts - set(self._assignment.config.parts)
        if unknown:
            raise pytest.UsageError(f"unknown part(s) {', '.join(sorted(unknown))}; "
                                    f"known: {', '.join(self._assignment.config.parts)}")
        keep, drop = [], []
        for item in items:
            facts = item.stash.get(FACTS, None)
            hidden = facts is not None and facts.visibility == "hidden" and config.getoption("grader_visible_only")
            other_part = facts is not None and bool(parts) and facts.part not in parts
            (drop if hidden or other_part else keep).append(item)
            self.outcomes.hidden_not_run += int(hidden)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep

    def _deadline(self, config: pytest.Config) -> float:
        """The budget's end on the monotonic clock: from ``--grader-deadline`` (the runner's start), else from now."""
        epoch = config.getoption("grader_deadline")
        if epoch is not None:
            return time.monotonic() + (float(epoch) - time.time())
        return self.clock_start + self.assignment.config.timeouts.submission_s

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Past the budget a test is not run at all (not even its fixtures): it is reported as a timeout."""
        if self.deadline is None or FACTS not in item.stash or time.monotonic() < self.deadline:
            return
        budget = self.outcomes.budget_s if self.outcomes is not None else 0.0
        text = f"not run: the time budget of {budget:g} s for the whole submission was used up. {BUDGET_CUT}"
        item.stash[_STATUS] = ("timeout", text)
        pytest.skip(text)

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        seed = self.seed_option if self.seed_option is not None else "assignment default"
        return [f"grader: submission {self.submission_path}, backend {self.backend}, seed {seed}"]

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        facts = item.stash.get(FACTS, None)
        if facts is None or self.outcomes is None:
            return
        if report.failed:
            status, text = _failure_text(call.excinfo, report.longrepr)
            attached = getattr(call.excinfo.value, "diagnosis", None) if call.excinfo else None
            if isinstance(attached, dict) and DIAGNOSIS not in item.stash:
                item.stash[DIAGNOSIS] = attached
            report.longrepr = text  # the student's message, not the harness's traceback
            item.stash[_STATUS] = (status, text)
            if call.excinfo is not None and isinstance(call.excinfo.value, BudgetExhausted):
                item.stash[_CUT] = True
        elif report.skipped and _STATUS in item.stash and item.stash[_STATUS][0] == "timeout":
            item.stash[_CUT] = True
        elif report.skipped and _STATUS not in item.stash:
            # A graded test that did not run earns nothing: a skip must never count as a pass.
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            item.stash[_STATUS] = ("error", f"not run: {reason}")
        if call.when == "teardown":
            status, text = item.stash.get(_STATUS, ("passed", ""))
            if status == "passed":  # what a passing test chose to say (a speed test: its ratio and rounds)
                text = "\n".join(str(v) for k, v in item.user_properties if k == "grader_note")[:MAX_OUTPUT]
            duration = item.stash.get(_DURATION, 0.0) + report.duration
            self.outcomes.tests.append(TestResult(
                name=facts.name, nodeid=item.nodeid, part=facts.part, max_score=facts.points,
                score=facts.points if status == "passed" else 0.0, status=status, visibility=facts.visibility,
                output=text, duration=max(0.0, duration),
                diagnosis=to_report_diagnosis(item.stash.get(DIAGNOSIS, None)) if status != "passed" else None))
            if item.stash.get(_CUT, False):
                self.outcomes.cut.append(facts.name)
        else:
            item.stash[_DURATION] = item.stash.get(_DURATION, 0.0) + report.duration

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if self._assignment is not None:   # every graded test asks for the submission's sandbox
            self.prestart("lab")

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if (self._assignment is not None and self.reference_in_use()
                and any("reference_lab" in getattr(item, "fixturenames", ()) for item in session.items)):
            self.prestart("reference")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        for which, future in self.starting.items():   # started ahead but never asked for (e.g. every test cut)
            if future.exception() is None:
                self._release(which, future.result())
        for which, executor in self.executors.items():
            self._release(which, executor)
        record = self.config.getoption("grader_record")
        if record and self.oracle is not None and self.oracle.record is not None:
            self.oracle.record.meta["torch"] = installed_version("torch")
            self.oracle.record.save(Path(record).parent, Path(record).name)
        if self.outcomes is not None:
            lab = self.executors.get("lab")
            self.outcomes.stdout = "".join(lab.output)[-MAX_OUTPUT:] if lab else ""
            self.outcomes.finished = time.time()
            path = self.config.getoption("grader_outcomes")
            if path:
                write_outcomes(self.outcomes, Path(path))
            features_path = self.config.getoption("grader_features")
            if features_path:
                write_feature_log(self.features, Path(features_path))
        if self.submission is not None:
            self.submission.cleanup()


_STATUS = pytest.StashKey[tuple[str, str]]()
_DURATION = pytest.StashKey[float]()
_CUT = pytest.StashKey[bool]()


def write_outcomes(outcomes: Outcomes, path: Path) -> None:
    """Atomically write the outcomes (temp file + os.replace): a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = {f.name: getattr(outcomes, f.name) for f in fields(outcomes)}
    data["tests"] = [t.model_dump(mode="json") for t in outcomes.tests]
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


# ---- fixtures ----

def _session(request: pytest.FixtureRequest) -> GradingSession:
    session = request.config.pluginmanager.get_plugin(SESSION_NAME)
    if session is None:
        pytest.fail("these tests grade a submission: run them with --submission PATH", pytrace=False)
    return session


@pytest.fixture(scope="session")
def assignment(request: pytest.FixtureRequest) -> Assignment:
    return _session(request).assignment


@pytest.fixture(scope="session")
def seed(request: pytest.FixtureRequest) -> int:
    return _session(request).seed


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Executor:
    """The submission, in its sandbox (started once per run, restarted after a timeout or crash),
    re-imported before each test so that global state cannot leak from one test into the next."""
    session = _session(request)
    executor = session.executor("lab")
    executor.reset()
    facts = request.node.stash.get(FACTS, None)
    if request.config.getoption("grader_features") and facts is not None:
        sink = session.features.setdefault(facts.name, TestFeatures(facts.part, facts.visibility))
        return FeatureRecorder(executor, sink)   # type: ignore[return-value]
    return executor


@pytest.fixture
def reference_lab(request: pytest.FixtureRequest) -> Executor | None:
    """The staff solution, in a sandbox of the same kind: the yardstick of speed tests.

    None where the reference is not shipped (a student bundle) or not wanted (``--no-speed-reference``,
    `grader check`): speed is then judged by time limits.
    """
    session = _session(request)
    return session.executor("reference") if session.reference_in_use() else None


@pytest.fixture(scope="session")
def torch_ref(request: pytest.FixtureRequest) -> Executor:
    """torch.autograd's answers: stored ones at the assignment's seed (no torch needed), live otherwise."""
    return _session(request).torch_oracle()


@pytest.fixture
def matches_torch(lab: Executor, torch_ref: Executor, request: pytest.FixtureRequest) -> Callable[[Program], None]:
    """``matches_torch(program)``: run on torch and on the submission; fail with an explanation,
    led by a diagnosis (the op or the mechanism at fault, the smallest program that shows it)."""

    def check(program: Program) -> None:
        expected, got = torch_ref.run(program), lab.run(program)
        try:
            assert_same(program, expected, got)
        except Mismatch as exc:
            raise diagnosed(exc, program, expected, got, lab, request.node) from None

    return check
