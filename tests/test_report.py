"""The score report: model, totals, JSON Schema, atomic writes, validated loads."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import grader.report as report_module
from grader.report import (
    OUTPUT_LIMIT,
    STDOUT_LIMIT,
    Assignment,
    Environment,
    Report,
    ReportError,
    SubmissionErrorInfo,
    SubmissionFile,
    SubmissionInfo,
    TestResult,
    Timings,
    cap_text,
    compute_totals,
    load_report,
    render_report_schema,
    test_name_from_nodeid,
    validate_report_json,
    write_report,
)

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "grader" / "schemas" / "report.v1.schema.json"
T0 = datetime(2025, 3, 14, 15, 9, 26, tzinfo=timezone.utc)


def _test(nodeid: str, part: str, points: float, status: str = "passed", output: str = "", hidden: bool = False):
    return TestResult(
        name=test_name_from_nodeid(nodeid),
        nodeid=nodeid,
        part=part,
        score=points if status == "passed" else 0.0,
        max_score=points,
        status=status,
        visibility="hidden" if hidden else "visible",
        output=output,
        duration=0.0421,
    )


MISMATCH = (
    "grad of W1 (shape (4, 3)) differs from torch: max abs error 0.5 at [2, 1]\n"
    "op: matmul (x @ W1), broadcast bias b1 of shape (3,)\n"
    "reproduce:\n    x = Tensor(...)\n    ...\n"
)


def realistic_tests() -> list[TestResult]:
    return [
        _test("tests/public/test_ops.py::test_add_broadcast[(H,)]", "ops", 2),
        _test("tests/public/test_ops.py::test_add_broadcast[(1, H)]", "ops", 2),
        _test("tests/hidden/test_ops.py::test_matmul_grad", "ops", 3, "failed", MISMATCH, hidden=True),
        _test("tests/hidden/test_backward.py::test_diamond_accumulates", "backward", 4, hidden=True),
        _test("tests/hidden/test_backward.py::test_chain_10000", "backward", 3, "timeout", "took > 10 s", hidden=True),
        _test("tests/hidden/test_sgd.py::test_step_in_place", "sgd", 2, "error", "worker crashed", hidden=True),
    ]


def submission() -> SubmissionInfo:
    return SubmissionInfo(
        sha256="3" * 64,
        kind="file",
        files=[SubmissionFile(name="autograd.py", size=4312, sha256="c" * 64)],
        ignored_files=["__pycache__/autograd.cpython-311.pyc"],
        notes=["extracted autograd.py from the notebook"],
    )


def environment() -> Environment:
    return Environment(
        grader_version="0.1.0",
        python="3.11.9",
        numpy="2.1.3",
        torch="2.13.0",
        platform="Linux-6.1-x86_64",
        backend="docker",
        image="autograd-lab-sandbox@sha256:" + "e" * 64,
        seed=1234,
    )


def timings() -> Timings:
    return Timings(started_at=T0, finished_at=T0 + timedelta(seconds=41.5), total_seconds=41.5, tests_seconds=38.2)


def graded_report(**overrides) -> Report:
    fields = dict(
        assignment=Assignment(name="lab1", title="Autograd From Scratch"),
        tests=realistic_tests(),
        submission=submission(),
        environment=environment(),
        timings=timings(),
        student="s1234567",
        stdout="loss 0.25\n",
    )
    fields.update(overrides)
    return Report.build(**fields)


def error_report() -> Report:
    return Report.build(
        assignment=Assignment(name="lab1", title="Autograd From Scratch"),
        tests=[],
        submission=submission(),
        environment=environment(),
        timings=timings(),
        student="s7654321",
        status="submission-error",
        error=SubmissionErrorInfo(
            code="syntax-error",
            message="autograd.py line 12: invalid syntax",
            hint="run `python autograd.py` to see the error",
        ),
        max_score=16,
    )


# ------------------------------------------------------------------ model and totals


def test_build_derives_totals_from_tests():
    report = graded_report()
    assert (report.score, report.max_score) == (8.0, 16.0)
    assert list(report.parts) == ["ops", "backward", "sgd"]
    assert report.parts["ops"].model_dump() == {"score": 4.0, "max_score": 7.0, "passed": 2, "total": 3}
    assert report.parts["backward"].model_dump() == {"score": 4.0, "max_score": 7.0, "passed": 1, "total": 2}
    assert report.parts["sgd"].model_dump() == {"score": 0.0, "max_score": 2.0, "passed": 0, "total": 1}


def test_part_order_is_respected():
    report = graded_report(part_order=["sgd", "backward", "ops"])
    assert list(report.parts) == ["sgd", "backward", "ops"]


def test_sums_are_rounded():
    tests = [_test(f"tests/public/test_a.py::test_{i}", "a", 0.1) for i in range(3)]
    assert compute_totals(tests).score == 0.3


def test_inconsistent_totals_are_refused():
    data = graded_report().model_dump()
    data["score"] = 9.0
    with pytest.raises(ValidationError, match="does not match"):
        Report.model_validate(data)
    data = graded_report().model_dump()
    data["parts"]["ops"]["passed"] = 3
    with pytest.raises(ValidationError, match="parts do not match"):
        Report.model_validate(data)


def test_error_report_scores_zero_and_needs_an_error():
    report = error_report()
    assert (report.score, report.max_score, report.parts, report.tests) == (0.0, 16.0, {}, [])
    data = report.model_dump()
    data["error"] = None
    with pytest.raises(ValidationError, match="needs an error"):
        Report.model_validate(data)
    with pytest.raises(ValidationError, match="has no error"):
        Report.model_validate({**graded_report().model_dump(), "error": report.error.model_dump()})


def test_score_above_max_and_nan_are_refused():
    with pytest.raises(ValidationError, match="exceeds max_score"):
        TestResult(name="a", nodeid="t.py::a", part="p", score=3, max_score=2, status="passed",
                   visibility="visible", duration=0)
    with pytest.raises(ValidationError):
        TestResult(name="a", nodeid="t.py::a", part="p", score=float("nan"), max_score=2, status="passed",
                   visibility="visible", duration=0)


@pytest.mark.parametrize("student", ["", "s1\n", "a\x00b", "\x7f"])
def test_student_id_has_no_control_characters(student):
    with pytest.raises(ValidationError):
        graded_report(student=student)
    obj = json.loads(graded_report().dumps())
    obj["student"] = student
    with pytest.raises(ReportError, match=r"\$\.student"):
        validate_report_json(obj)


def test_timings_must_be_utc():
    with pytest.raises(ValidationError, match="UTC"):
        Timings(started_at=T0.astimezone(timezone(timedelta(hours=2))), finished_at=T0,
                total_seconds=0, tests_seconds=0)
    with pytest.raises(ValidationError):
        Timings(started_at=T0.replace(tzinfo=None), finished_at=T0, total_seconds=0, tests_seconds=0)


def test_long_output_and_stdout_are_capped():
    long = "x" * (OUTPUT_LIMIT * 3)
    test = _test("tests/public/test_a.py::test_a", "a", 1, "failed", long)
    assert len(test.output) == OUTPUT_LIMIT
    assert "characters cut" in test.output
    report = graded_report(stdout="y" * (STDOUT_LIMIT + 10))
    assert len(report.stdout) == STDOUT_LIMIT


@given(st.text(), st.integers(min_value=0, max_value=500))
def test_cap_text_never_exceeds_the_limit(text, limit):
    capped = cap_text(text, limit)
    assert len(capped) <= max(limit, 0) or capped == text
    if len(text) <= limit:
        assert capped == text


@pytest.mark.parametrize(
    ("nodeid", "name"),
    [
        ("tests/hidden/test_ops.py::test_add_broadcast[(H,)]", "ops::test_add_broadcast[(H,)]"),
        ("assignments/lab1/tests/public/test_sgd.py::TestSGD::test_step", "sgd::TestSGD::test_step"),
        ("test_.py::test_x", "test_::test_x"),
        ("no_separator", "no_separator"),
    ],
)
def test_readable_name_from_nodeid(nodeid, name):
    assert test_name_from_nodeid(nodeid) == name


# ------------------------------------------------------------------ JSON Schema


def test_checked_in_schema_is_what_the_script_generates():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render_report_schema()
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "write_schema.py"), "--check"],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr


def test_schema_has_id_title_and_version():
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema["$id"] and schema["title"] and schema["version"] == "1"
    assert schema["properties"]["schema_version"]["const"] == "1"
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("make", [graded_report, error_report])
def test_example_reports_validate(make):
    obj = json.loads(make().dumps())
    validate_report_json(obj)


def _broken(mutate):
    obj = json.loads(graded_report().dumps())
    mutate(obj)
    return obj


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda o: o.pop("score"), "'score' is a required property"),
        (lambda o: o.update(status="done"), "$.status"),
        (lambda o: o.update(grade="A"), "Additional properties"),
        (lambda o: o["tests"][0].update(status="skipped"), "$.tests[0].status"),
        (lambda o: o["tests"][0].update(points=1), "$.tests[0]"),
        (lambda o: o["environment"].update(backend="vm"), "$.environment.backend"),
        (lambda o: o["submission"].update(sha256="not-a-hash"), "$.submission.sha256"),
        (lambda o: o.update(schema_version="2"), "$.schema_version"),
        (lambda o: o.update(status="submission-error"), "$.error"),
        (lambda o: o["timings"].update(started_at="yesterday"), "$.timings.started_at"),
    ],
)
def test_broken_reports_do_not_validate(mutate, where):
    with pytest.raises(ReportError) as info:
        validate_report_json(_broken(mutate))
    assert where in str(info.value)


# ------------------------------------------------------------------ atomic write, load


def test_write_then_load_round_trips(tmp_path):
    report = graded_report()
    path = write_report(report, tmp_path / "out" / "s1234567.json")
    assert load_report(path) == report
    assert os.listdir(path.parent) == ["s1234567.json"]
    assert path.read_text(encoding="utf-8") == report.dumps()


def test_write_replaces_an_old_report_whole(tmp_path):
    path = tmp_path / "r.json"
    write_report(error_report(), path)
    write_report(graded_report(), path)
    assert load_report(path) == graded_report()
    assert os.listdir(tmp_path) == ["r.json"]


def test_crash_midway_through_serialisation_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    write_report(error_report(), path)
    before = path.read_bytes()
    real = Report.to_jsonable

    def half_unserialisable(self):
        data = real(self)
        data["tests"].append(object())  # json.dump has written the first part by the time it meets this
        return data

    monkeypatch.setattr(Report, "to_jsonable", half_unserialisable)
    with pytest.raises(TypeError):
        write_report(graded_report(), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["r.json"]


def test_crash_before_replace_leaves_no_file_at_all(tmp_path, monkeypatch):
    def no_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(report_module.os, "fsync", no_fsync)
    with pytest.raises(OSError):
        write_report(graded_report(), tmp_path / "r.json")
    assert os.listdir(tmp_path) == []


def test_load_refuses_partial_file(tmp_path):
    path = tmp_path / "r.json"
    text = graded_report().dumps()
    path.write_text(text[: len(text) // 2], encoding="utf-8")
    with pytest.raises(ReportError, match="not valid JSON.*corrupt or truncated"):
        load_report(path)


def test_load_refuses_empty_missing_and_schema_violations(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ReportError, match="is empty"):
        load_report(empty)
    with pytest.raises(ReportError, match="cannot read report"):
        load_report(tmp_path / "missing.json")
    listed = tmp_path / "list.json"
    listed.write_text("[]", encoding="utf-8")
    with pytest.raises(ReportError, match="is not of type 'object'"):
        load_report(listed)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_broken(lambda o: o.pop("score"))), encoding="utf-8")
    with pytest.raises(ReportError, match="(?s)bad.json.*'score' is a required property"):
        load_report(bad)


def test_load_refuses_an_inconsistent_but_schema_valid_report(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_broken(lambda o: o.update(score=15.0))), encoding="utf-8")
    with pytest.raises(ReportError, match="(?s)inconsistent.*does not match"):
        load_report(path)


def test_load_names_an_unsupported_version(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_broken(lambda o: o.update(schema_version="7"))), encoding="utf-8")
    with pytest.raises(ReportError, match="version '7' is not supported"):
        load_report(path)


# ------------------------------------------------------------------ property: any built report is valid

_parts = st.sampled_from(["ops", "backward", "sgd", "no_grad", "speed"])


@st.composite
def results(draw):
    points = draw(st.floats(min_value=0, max_value=20, allow_nan=False, allow_infinity=False))
    status = draw(st.sampled_from(["passed", "failed", "error", "timeout"]))
    score = points if status == "passed" else draw(st.sampled_from([0.0, points / 2]))
    return TestResult(
        name=draw(st.text(min_size=1, max_size=30)),
        nodeid=draw(st.text(min_size=1, max_size=40)),
        part=draw(_parts),
        score=score,
        max_score=points,
        status=status,
        visibility=draw(st.sampled_from(["visible", "hidden"])),
        output=draw(st.text(max_size=200)),
        duration=draw(st.floats(min_value=0, max_value=1e4)),
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(results(), max_size=12, unique_by=lambda t: t.nodeid))
def test_any_built_report_is_consistent_and_schema_valid(tests):
    report = graded_report(tests=tests)
    assert report.score == pytest.approx(sum(t.score for t in tests), abs=1e-5)
    assert report.max_score == pytest.approx(sum(p.max_score for p in report.parts.values()), abs=1e-5)
    assert sum(p.total for p in report.parts.values()) == len(tests)
    obj = json.loads(report.dumps())
    validate_report_json(obj)
    assert Report.model_validate(copy.deepcopy(obj)) == report
