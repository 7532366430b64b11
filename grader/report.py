"""The score report: one JSON document per graded submission (schema version "1").

A report carries everything needed to reproduce a grade: the submission's hash, the
seed, the sandbox image, the versions, and every test's points and explanation. It is
the one source the exporters (``grader/exporters/``) turn into Gradescope, Canvas,
JUnit, GitHub Classroom and CSV formats; this module knows nothing about any of them.

Public API:

- ``Report`` and its parts (``TestResult``, ``PartTotal``, ...): pydantic models that
  refuse unknown fields, NaN and inconsistent totals;
- ``Report.build(...)``: the constructor to use; it derives ``score``, ``max_score`` and
  ``parts`` from the tests, so they always agree;
- ``compute_totals(tests)``; ``test_name_from_nodeid(nodeid)``; ``cap_text(text, limit)``;
- ``write_report(report, path)`` (atomic), ``load_report(path)`` (validated),
  ``validate_report_json(obj)`` (against the checked-in JSON Schema);
- ``report_json_schema()`` / ``render_report_schema()``: what ``scripts/write_schema.py``
  writes to ``grader/schemas/report.v1.schema.json``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from grader.errors import ExitStatus, GraderError

SCHEMA_VERSION = "1"
SCHEMA_ID = "urn:autograd-lab-grader:schema:report:v1"
SCHEMA_TITLE = "autograd-lab grader score report"
SCHEMA_RESOURCE = "report.v1.schema.json"

OUTPUT_LIMIT = 20_000
"""Most characters of one test's explanation kept in a report."""
STDOUT_LIMIT = 65_536
"""Most characters of the student's captured prints kept in a report."""

IDENTICAL_PREFIX = "identical to the submission of "
"""Start of the submission note of a report whose grade a batch copied from an identical submission."""

_SCORE_TOLERANCE = 1e-6
_CONTROL_CHARACTER = r"[\u0000-\u001f\u007f]"
_TRUNCATION_MARK = "\n[... {n} characters cut ...]\n"

TestStatus = Literal["passed", "failed", "error", "timeout"]
Visibility = Literal["visible", "hidden"]
ReportStatus = Literal["graded", "submission-error", "sandbox-error"]
Backend = Literal["local", "docker"]

_NonNegative = Annotated[float, Field(ge=0)]
_Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="lower-case hex SHA-256")]


class ReportError(GraderError):
    """A report file cannot be read or does not follow the report schema."""

    exit_status = ExitStatus.USAGE


def cap_text(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its head and tail around a marker.

    The head is kept longer than the tail: the start of an explanation says what went
    wrong, the end of a traceback says where.
    """
    if len(text) <= limit:
        return text
    cut = len(text)
    while True:
        mark = _TRUNCATION_MARK.format(n=cut)
        keep = limit - len(mark)
        if keep < 2:
            return text[: max(limit, 0)]
        head, tail = (keep * 2) // 3, keep - (keep * 2) // 3
        real_cut = len(text) - head - tail
        if real_cut == cut:
            return text[:head] + mark + (text[-tail:] if tail else "")
        cut = real_cut


def test_name_from_nodeid(nodeid: str) -> str:
    """A readable test name from a pytest node id, without the path noise.

    ``tests/hidden/test_ops.py::test_add_broadcast[(H,)]`` -> ``ops::test_add_broadcast[(H,)]``
    """
    path, sep, rest = nodeid.partition("::")
    if not sep:
        return nodeid
    stem = path.replace("\\", "/").rsplit("/", 1)[-1]
    stem = stem.removesuffix(".py")
    stem = stem.removeprefix("test_") or stem
    return f"{stem}::{rest}"


test_name_from_nodeid.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        frozen=True,
        json_schema_serialization_defaults_required=True,
    )


class Assignment(_Model):
    """Which assignment the submission was graded against."""

    name: str = Field(min_length=1, description="the assignment's folder name, e.g. 'lab1'")
    title: str = Field(description="the assignment's human title")


class SubmissionErrorInfo(_Model):
    """Why a submission could not be graded (its score is then 0)."""

    code: str = Field(
        pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$",
        description="stable machine-readable tag, e.g. 'missing-file', 'syntax-error'",
    )
    message: str = Field(min_length=1, description="what went wrong, for the student")
    hint: str | None = Field(default=None, description="what to do about it")


class PartTotal(_Model):
    """Points and pass counts of one part of the assignment, derived from its tests."""

    score: _NonNegative
    max_score: _NonNegative
    passed: int = Field(ge=0, description="tests of this part that passed")
    total: int = Field(ge=0, description="tests of this part")


class TestResult(_Model):
    """The outcome of one test."""

    __test__ = False  # not a pytest test class

    name: str = Field(min_length=1, description="node id without the path, e.g. 'ops::test_add[(H,)]'")
    nodeid: str = Field(min_length=1, description="the full pytest node id")
    part: str = Field(min_length=1, description="the assignment part this test belongs to")
    score: _NonNegative
    max_score: _NonNegative
    status: TestStatus
    visibility: Visibility = Field(description="'hidden' tests come from the hidden suite")
    output: str = Field(
        default="",
        max_length=OUTPUT_LIMIT,
        description=f"the explanation of the outcome, capped at {OUTPUT_LIMIT} characters",
    )
    duration: _NonNegative = Field(description="seconds, host clock")

    @field_validator("output", mode="before")
    @classmethod
    def _cap_output(cls, value: Any) -> Any:
        return cap_text(value, OUTPUT_LIMIT) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _score_within_max(self) -> TestResult:
        if self.score > self.max_score + _SCORE_TOLERANCE:
            raise ValueError(f"test {self.name!r}: score {self.score} exceeds max_score {self.max_score}")
        return self


class SubmissionFile(_Model):
    name: str = Field(min_length=1, description="path relative to the submission root")
    size: int = Field(ge=0, description="bytes")
    sha256: _Sha256


class SubmissionInfo(_Model):
    """What was graded."""

    sha256: _Sha256 = Field(description="hash over the graded files (names and contents)")
    kind: str = Field(min_length=1, description="how it was submitted, e.g. 'file', 'directory', 'zip', 'notebook'")
    files: list[SubmissionFile] = Field(default_factory=list, description="the files that were graded")
    ignored_files: list[str] = Field(default_factory=list, description="files present but not graded")
    notes: list[str] = Field(default_factory=list, description="what the grader did to the submission")


class Environment(_Model):
    """Where and with what the grade was computed."""

    grader_version: str
    python: str
    numpy: str
    torch: str | None = Field(default=None, description="torch on the host; null if not used")
    platform: str
    backend: Backend
    image: str | None = Field(default=None, description="sandbox image tag or digest; null for 'local'")
    seed: int


class Timings(_Model):
    """Wall-clock times of the grading run."""

    started_at: AwareDatetime = Field(description="ISO-8601, UTC")
    finished_at: AwareDatetime = Field(description="ISO-8601, UTC")
    total_seconds: _NonNegative
    tests_seconds: _NonNegative

    @field_validator("started_at", "finished_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.utcoffset() != timedelta(0):
            raise ValueError("must be in UTC (offset +00:00 or 'Z')")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Timings:
        if self.finished_at < self.started_at:
            raise ValueError("finished_at is before started_at")
        return self


class Totals(_Model):
    """``score``, ``max_score`` and ``parts`` as derived from a list of tests."""

    score: float
    max_score: float
    parts: dict[str, PartTotal]


def _round(value: float) -> float:
    return round(value, 6) + 0.0  # + 0.0 turns -0.0 into 0.0


def compute_totals(tests: Iterable[TestResult], part_order: Sequence[str] = ()) -> Totals:
    """Sum the tests' points overall and per part.

    Parts appear in ``part_order`` first (those that have tests), then in order of first
    appearance. Sums are rounded to 6 decimals so that 0.1 + 0.2 reads 0.3.
    """
    tests = list(tests)
    names = [p for p in part_order if any(t.part == p for t in tests)]
    names += [p for p in dict.fromkeys(t.part for t in tests) if p not in names]
    parts = {}
    for name in names:
        mine = [t for t in tests if t.part == name]
        parts[name] = PartTotal(
            score=_round(math.fsum(t.score for t in mine)),
            max_score=_round(math.fsum(t.max_score for t in mine)),
            passed=sum(t.status == "passed" for t in mine),
            total=len(mine),
        )
    return Totals(
        score=_round(math.fsum(t.score for t in tests)),
        max_score=_round(math.fsum(t.max_score for t in tests)),
        parts=parts,
    )


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=_SCORE_TOLERANCE)


_STATUS_RULES = {
    "allOf": [
        {
            "if": {"properties": {"status": {"const": "graded"}}},
            "then": {"properties": {"error": {"type": "null"}}},
            "else": {"properties": {"error": {"type": "object"}, "score": {"const": 0}}},
        }
    ]
}


class Report(_Model):
    """One graded submission. Build it with ``Report.build`` so the totals agree."""

    model_config = ConfigDict(json_schema_extra=_STATUS_RULES)

    schema_version: Literal["1"] = Field(description="the report schema's version")
    assignment: Assignment
    student: str | None = Field(
        default=None,
        min_length=1,
        description="student identifier (batch grading), no control characters; null if unknown",
        json_schema_extra={"not": {"type": "string", "pattern": _CONTROL_CHARACTER}},
    )
    score: _NonNegative
    max_score: _NonNegative
    status: ReportStatus = Field(description="'graded', or why the submission could not be graded")
    error: SubmissionErrorInfo | None = Field(default=None, description="set iff status is not 'graded'")
    parts: dict[str, PartTotal]
    tests: list[TestResult]
    submission: SubmissionInfo
    stdout: str = Field(
        default="",
        max_length=STDOUT_LIMIT,
        description=f"the student's captured prints, capped at {STDOUT_LIMIT} characters",
    )
    environment: Environment
    timings: Timings

    @field_validator("student")
    @classmethod
    def _no_control_characters(cls, value: str | None) -> str | None:
        if value is not None and re.search(_CONTROL_CHARACTER, value):
            raise ValueError("a student identifier has no control characters")
        return value

    @field_validator("stdout", mode="before")
    @classmethod
    def _cap_stdout(cls, value: Any) -> Any:
        return cap_text(value, STDOUT_LIMIT) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Report:
        seen: set[str] = set()
        for test in self.tests:
            if test.nodeid in seen:
                raise ValueError(f"test {test.nodeid!r} appears twice")
            seen.add(test.nodeid)
        totals = compute_totals(self.tests)
        if set(self.parts) != set(totals.parts) or any(
            not (_close(self.parts[n].score, p.score) and _close(self.parts[n].max_score, p.max_score))
            or (self.parts[n].passed, self.parts[n].total) != (p.passed, p.total)
            for n, p in totals.parts.items()
        ):
            raise ValueError("parts do not match the tests (build reports with Report.build)")
        if self.status == "graded":
            if self.error is not None:
                raise ValueError("a graded report has no error")
            if not (_close(self.score, totals.score) and _close(self.max_score, totals.max_score)):
                raise ValueError(
                    f"score {self.score}/{self.max_score} does not match the tests' "
                    f"{totals.score}/{totals.max_score} (build reports with Report.build)"
                )
        else:
            if self.error is None:
                raise ValueError(f"a report with status {self.status!r} needs an error")
            if self.score != 0:
                raise ValueError(f"a report with status {self.status!r} scores 0")
            if self.max_score + _SCORE_TOLERANCE < totals.max_score:
                raise ValueError("max_score is less than the tests' max_score")
        return self

    @classmethod
    def build(
        cls,
        *,
        assignment: Assignment,
        tests: Sequence[TestResult],
        submission: SubmissionInfo,
        environment: Environment,
        timings: Timings,
        student: str | None = None,
        stdout: str = "",
        status: ReportStatus = "graded",
        error: SubmissionErrorInfo | None = None,
        max_score: float | None = None,
        part_order: Sequence[str] = (),
    ) -> Report:
        """A report whose ``score``, ``max_score`` and ``parts`` are derived from ``tests``.

        For a submission that could not be graded (``status`` other than ``"graded"``),
        pass the ``error`` and the assignment's ``max_score``: the score is 0.
        """
        totals = compute_totals(tests, part_order)
        graded = status == "graded"
        return cls(
            schema_version=SCHEMA_VERSION,
            assignment=assignment,
            student=student,
            score=totals.score if graded else 0.0,
            max_score=totals.max_score if graded or max_score is None else max_score,
            status=status,
            error=error,
            parts=totals.parts,
            tests=list(tests),
            submission=submission,
            stdout=stdout,
            environment=environment,
            timings=timings,
        )

    def dumps(self) -> str:
        """The report as the JSON text ``write_report`` writes."""
        return json.dumps(self.to_jsonable(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    def to_jsonable(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------- schema


def report_json_schema() -> dict[str, Any]:
    """The JSON Schema of a report file, as checked in under ``grader/schemas/``."""
    body = Report.model_json_schema(mode="serialization")
    body.pop("title", None)
    body.pop("description", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": SCHEMA_TITLE,
        "description": (
            "One JSON report per graded submission, written by the autograd-lab grader. "
            "Generated from grader/report.py by scripts/write_schema.py; do not edit by hand."
        ),
        "version": SCHEMA_VERSION,
        **body,
    }


def render_report_schema() -> str:
    """``report_json_schema()`` as the exact text of the checked-in file."""
    return json.dumps(report_json_schema(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


@functools.cache
def _checked_in_validator() -> jsonschema.protocols.Validator:
    text = resources.files("grader").joinpath("schemas", SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema = json.loads(text)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def validate_report_json(obj: Any) -> None:
    """Check a decoded report against the checked-in JSON Schema.

    Raises ``ReportError`` naming every violation (up to ten) by its JSON path.
    """
    errors = sorted(_checked_in_validator().iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {e.json_path}: {e.message}" for e in errors[:10]]
        if len(errors) > 10:
            lines.append(f"  ... and {len(errors) - 10} more")
        raise ReportError("report does not follow the report schema v1:\n" + "\n".join(lines))


# --------------------------------------------------------------------------- files


def write_report(report: Report, path: str | os.PathLike[str]) -> Path:
    """Write ``report`` to ``path`` atomically; returns the path.

    The JSON goes to a temporary file in the same directory, is flushed and fsynced, and
    replaces ``path`` in one ``os.replace``: a reader sees the old file or the whole new
    one, never a partial one, and a failure leaves no temporary file behind.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            json.dump(report.to_jsonable(), fh, indent=2, ensure_ascii=False, allow_nan=False)
            fh.write("\n")
            fh.flush()
            os.fchmod(fh.fileno(), 0o644)
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return target


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # not every filesystem lets a directory be fsynced
    finally:
        os.close(fd)


def load_report(path: str | os.PathLike[str]) -> Report:
    """Read and validate a report file (JSON Schema, then the model's own checks)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ReportError(f"cannot read report {path}: {exc.strerror or exc}") from exc
    if not raw.strip():
        raise ReportError(f"report {path} is empty", hint="the run that wrote it may have been interrupted")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(
            f"report {path} is not valid JSON ({exc}): the file is corrupt or truncated",
            hint="grade the submission again to rewrite it",
        ) from exc
    return report_from_json(obj, source=str(path))


def report_from_json(obj: Any, source: str = "report") -> Report:
    """Validate a decoded report (schema first, then model) and return it."""
    if isinstance(obj, Mapping) and obj.get("schema_version") not in (None, SCHEMA_VERSION):
        raise ReportError(
            f"{source}: report schema version {obj.get('schema_version')!r} is not supported "
            f"(this grader reads version {SCHEMA_VERSION!r})"
        )
    try:
        validate_report_json(obj)
    except ReportError as exc:
        raise ReportError(f"{source}: {exc}") from None
    try:
        return Report.model_validate(obj)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(map(str, e['loc'])) or '(report)'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()[:10]
        ]
        raise ReportError(f"{source}: report is inconsistent:\n" + "\n".join(lines)) from None


def identical_to(report: Report) -> str | None:
    """The student whose grade this report copies (a batch's identical submission), if any."""
    for note in report.submission.notes:
        if note.startswith(IDENTICAL_PREFIX):
            return note[len(IDENTICAL_PREFIX):]
    return None
