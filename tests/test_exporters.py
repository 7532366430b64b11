"""Exporters: each output parses back and has the shape its consumer's spec defines."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grader.exporters import EXPORTERS, canvas, github_classroom, gradescope_results, junit, summary_csv
from grader.report import (
    Assignment,
    Environment,
    Report,
    SubmissionErrorInfo,
    SubmissionInfo,
    TestResult,
    Timings,
    test_name_from_nodeid,
)

T0 = datetime(2025, 3, 14, 15, 9, 26, tzinfo=timezone.utc)

# Gradescope autograder spec, "Output format" (gradescope-autograders.readthedocs.io/en/latest/specs/)
GRADESCOPE_TOP_KEYS = {
    "score", "execution_time", "output", "output_format", "test_output_format", "test_name_format",
    "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard",
}
GRADESCOPE_TEST_KEYS = {
    "score", "max_score", "status", "name", "name_format", "number", "output", "output_format",
    "tags", "visibility", "extra_data",
}
GRADESCOPE_VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}
GRADESCOPE_FORMATS = {"text", "simple_format", "html", "md", "ansi"}
# Canvas gradebook importer: student columns, in order
CANVAS_HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
# GitHub Classroom runner result, as autograding-io-grader writes it
CLASSROOM_TOP_KEYS = {"version", "status", "max_score", "tests"}
CLASSROOM_TEST_KEYS = {"name", "status", "message", "test_code", "filename", "line_no", "duration", "score"}


def _test(nodeid, part, points, status="passed", output="", hidden=False, score=None):
    return TestResult(
        name=test_name_from_nodeid(nodeid),
        nodeid=nodeid,
        part=part,
        score=(points if status == "passed" else 0.0) if score is None else score,
        max_score=points,
        status=status,
        visibility="hidden" if hidden else "visible",
        output=output,
        duration=0.0421,
    )


def _common(**overrides):
    fields = dict(
        assignment=Assignment(name="lab1", title="Autograd From Scratch"),
        submission=SubmissionInfo(sha256="3" * 64, kind="file"),
        environment=Environment(
            grader_version="0.1.0", python="3.11.9", numpy="2.1.3", torch="2.13.0",
            platform="Linux", backend="docker", image="autograd-lab-sandbox:1", seed=7,
        ),
        timings=Timings(started_at=T0, finished_at=T0 + timedelta(seconds=41.5), total_seconds=41.5,
                        tests_seconds=38.2),
    )
    fields.update(overrides)
    return fields


SECRET = "hidden input: W1 = [[1.5, -2.0]]"


def graded(student="s1234567", **overrides) -> Report:
    tests = [
        _test("tests/public/test_ops.py::test_add_broadcast[(H,)]", "ops", 2),
        _test("tests/public/test_ops.py::test_relu_at_zero", "ops", 1, "failed", "relu'(0) should be 0, got 1"),
        _test("tests/hidden/test_ops.py::test_matmul_grad", "ops", 3, "failed", SECRET, hidden=True),
        _test("tests/hidden/test_backward.py::test_diamond", "backward", 4, hidden=True),
        _test("tests/hidden/test_backward.py::test_chain_10000", "backward", 3, "timeout", hidden=True),
        _test("tests/hidden/test_sgd.py::test_step", "sgd", 2, "error", "worker crashed: <MemoryError>", hidden=True),
    ]
    return Report.build(tests=tests, student=student, **_common(**overrides))


def failed_to_grade(status="submission-error", student="s7654321") -> Report:
    return Report.build(
        tests=[],
        student=student,
        status=status,
        error=SubmissionErrorInfo(code="missing-file", message="no autograd.py in the submission",
                                  hint="submit autograd.py at the top level"),
        max_score=15,
        **_common(),
    )


# ------------------------------------------------------------------ Gradescope


def _check_gradescope_shape(results: dict, report: Report) -> None:
    assert set(results) <= GRADESCOPE_TOP_KEYS
    assert isinstance(results["score"], (int, float)) and isinstance(results["execution_time"], (int, float))
    assert results["visibility"] in GRADESCOPE_VISIBILITY
    assert results["stdout_visibility"] in GRADESCOPE_VISIBILITY
    assert results["output_format"] in GRADESCOPE_FORMATS
    for test in results["tests"]:
        assert set(test) <= GRADESCOPE_TEST_KEYS
        assert test["status"] in {"passed", "failed"}
        assert test["visibility"] in GRADESCOPE_VISIBILITY
        assert test["output_format"] in GRADESCOPE_FORMATS
        assert re.fullmatch(r"\d+\.\d+", test["number"])
        assert all(isinstance(tag, str) for tag in test["tags"])
    assert results["score"] == pytest.approx(report.score)
    if report.status == "graded":
        assert math.fsum(t["score"] for t in results["tests"]) == pytest.approx(report.score, abs=1e-6)


def test_gradescope_results_follow_the_spec():
    report = graded()
    results = json.loads(gradescope_results.dumps(report))
    _check_gradescope_shape(results, report)
    assert results["score"] == 6.0
    assert results["execution_time"] == 42
    tests = results["tests"]
    assert [t["number"] for t in tests] == ["1.1", "1.2", "1.3", "2.1", "2.2", "3.1"]
    assert [t["tags"] for t in tests][:3] == [["ops"]] * 3
    assert [t["visibility"] for t in tests] == ["visible", "visible"] + ["after_published"] * 4
    assert [t["status"] for t in tests] == ["passed", "failed", "failed", "passed", "failed", "failed"]
    assert tests[0]["name"] == "ops::test_add_broadcast[(H,)]"
    assert "time limit" in tests[4]["output"]
    assert "Score: 6 / 15" in results["output"]
    assert results["extra_data"]["submission_sha256"] == "3" * 64


def test_gradescope_hidden_visibility_can_be_chosen():
    results = gradescope_results.to_gradescope(graded(), hidden_visibility="hidden")
    assert {t["visibility"] for t in results["tests"]} == {"visible", "hidden"}


def test_gradescope_submission_error_is_score_zero_with_the_message():
    report = failed_to_grade()
    results = json.loads(gradescope_results.dumps(report))
    _check_gradescope_shape(results, report)
    assert results["score"] == 0
    assert results["tests"] == []
    assert results["output"].startswith("no autograd.py in the submission\nhint: submit autograd.py")


def test_gradescope_never_pickles_or_invents_keys():
    text = gradescope_results.dumps(graded())
    assert "pickle" not in text
    assert set(json.loads(text)) == {
        "score", "execution_time", "output", "output_format", "visibility", "stdout_visibility",
        "extra_data", "tests",
    }


# ------------------------------------------------------------------ JUnit


def test_junit_parses_back_with_matching_counts():
    report = graded()
    root = ET.fromstring(junit.to_junit_xml(report).encode("utf-8"))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["ops", "backward", "sgd"]
    cases = root.findall("testsuite/testcase")
    assert len(cases) == len(report.tests) == int(root.get("tests"))
    assert int(root.get("failures")) == 2 == len(root.findall(".//failure"))
    assert int(root.get("errors")) == 2 == len(root.findall(".//error"))
    assert [e.get("type") for e in root.findall(".//error")] == ["timeout", "error"]
    for suite in suites:
        assert int(suite.get("tests")) == len(suite.findall("testcase"))
        assert re.fullmatch(r"\d+\.\d{3}", suite.get("time"))
        props = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
        part = report.parts[suite.get("name")]
        assert float(props["score"]) == part.score and float(props["max_score"]) == part.max_score
        assert float(props["report_score"]) == report.score
    assert cases[0].get("classname") == "lab1.ops" and cases[0].get("time") == "0.042"


def test_junit_redacts_hidden_output_unless_asked():
    assert SECRET not in junit.to_junit_xml(graded())
    assert junit.HIDDEN_NOTE in junit.to_junit_xml(graded())
    assert SECRET in junit.to_junit_xml(graded(), reveal_hidden=True)
    assert "relu'(0) should be 0" in junit.to_junit_xml(graded())


def test_junit_submission_error_is_one_erroring_case():
    root = ET.fromstring(junit.to_junit_xml(failed_to_grade()))
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "submission"
    error = suite.find("testcase/error")
    assert error.get("type") == "missing-file"
    assert "no autograd.py" in error.text
    assert (root.get("tests"), root.get("errors")) == ("1", "1")


def test_junit_survives_control_characters():
    report = graded()
    noisy = report.model_copy(
        update={"tests": [report.tests[0].model_copy(update={"status": "failed", "score": 0.0,
                                                              "output": "bell\x07 nul\x00 esc\x1b[31m"})]}
    )
    noisy = Report.build(tests=noisy.tests, **_common())
    root = ET.fromstring(junit.to_junit_xml(noisy))
    assert root.find(".//failure").text == "bell nul esc[31m"


# ------------------------------------------------------------------ Canvas


def test_canvas_csv_has_the_header_canvas_requires():
    reports = [graded("s1"), graded("s2"), failed_to_grade(student="s3")]
    rows = list(csv.reader(io.StringIO(canvas.to_canvas_csv(reports, "Autograd From Scratch (4242)"))))
    assert rows[0] == [*CANVAS_HEADER, "Autograd From Scratch (4242)"]
    assert rows[1] == ["Points Possible", "", "", "", "", "15"]
    assert rows[2:] == [
        ["", "", "", "s1", "", "6"],
        ["", "", "", "s2", "", "6"],
        ["", "", "", "s3", "", "0"],
    ]


def test_canvas_id_column_title_default_and_no_points_row():
    text = canvas.to_canvas_csv([graded("12345")], id_column="SIS User ID", points_possible_row=False)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [[*CANVAS_HEADER, "Autograd From Scratch"], ["", "", "12345", "", "", "6"]]


def test_canvas_leaves_a_sandbox_failure_blank():
    rows = list(csv.reader(io.StringIO(canvas.to_canvas_csv([failed_to_grade("sandbox-error", "s9")], "Lab"))))
    assert rows[2] == ["", "", "", "s9", "", ""]


@pytest.mark.parametrize(
    ("reports", "message"),
    [
        ([graded(None)], "no student identifier"),
        ([graded("s1"), graded("s1")], "more than one report"),
        ([graded("s1"), graded("s2", assignment=Assignment(name="lab2", title="Two"))], "several assignments"),
        ([], "no reports"),
    ],
)
def test_canvas_refuses_what_it_cannot_import(reports, message):
    with pytest.raises(ValueError, match=message):
        canvas.to_canvas_csv(reports)


# ------------------------------------------------------------------ GitHub Classroom


def _decode(encoded: str) -> dict:
    return json.loads(base64.b64decode(encoded).decode("utf-8"))


def _check_classroom_shape(result: dict, report: Report) -> None:
    assert set(result) == CLASSROOM_TOP_KEYS and result["version"] == 1
    assert result["status"] in {"pass", "fail", "error"}
    for test in result["tests"]:
        assert set(test) == CLASSROOM_TEST_KEYS
        assert test["status"] in {"pass", "fail", "error"}
        assert isinstance(test["line_no"], int) and isinstance(test["duration"], int)
    # what the reporter sends to Classroom: the sum of the tests' scores over max_score
    assert math.fsum(t["score"] for t in result["tests"]) == pytest.approx(report.score, abs=1e-6)
    assert result["max_score"] == report.max_score


def test_github_classroom_result_decodes_to_the_runner_format():
    report = graded()
    result = _decode(github_classroom.encode(report))
    _check_classroom_shape(result, report)
    assert result["status"] == "fail"
    assert [t["status"] for t in result["tests"]] == ["pass", "fail", "fail", "pass", "error", "error"]
    assert result["tests"][0]["duration"] == 42
    assert SECRET not in json.dumps(result)
    assert SECRET in github_classroom.dumps(report, reveal_hidden=True)


def test_github_classroom_all_passing_and_error_reports():
    passing = Report.build(tests=[_test("tests/public/test_a.py::test_a", "a", 5)], **_common())
    assert github_classroom.to_github_classroom(passing)["status"] == "pass"
    broken = failed_to_grade()
    result = github_classroom.to_github_classroom(broken)
    _check_classroom_shape(result, broken)
    assert result["status"] == "error"
    assert result["tests"][0]["name"] == "submission"
    assert "no autograd.py" in result["tests"][0]["message"]


# ------------------------------------------------------------------ summary CSV


def test_summary_csv_one_row_per_report_with_part_columns():
    reports = [graded("s1"), failed_to_grade(student="s2")]
    rows = list(csv.DictReader(io.StringIO(summary_csv.to_summary_csv(reports))))
    assert list(rows[0]) == [
        "student", "assignment", "status", "score", "max_score", "part:ops", "part:backward", "part:sgd",
        "tests_passed", "tests_total", "total_seconds", "error_code",
    ]
    assert rows[0] == {
        "student": "s1", "assignment": "lab1", "status": "graded", "score": "6", "max_score": "15",
        "part:ops": "2", "part:backward": "4", "part:sgd": "0", "tests_passed": "2", "tests_total": "6",
        "total_seconds": "41.500", "error_code": "",
    }
    assert rows[1]["status"] == "submission-error" and rows[1]["part:ops"] == ""
    assert rows[1]["error_code"] == "missing-file"


# ------------------------------------------------------------------ registry


def test_every_registered_exporter_renders():
    for exporter in EXPORTERS.values():
        reports = [graded("s1")] if exporter.per_report else [graded("s1"), graded("s2")]
        assert exporter.render(reports)
    with pytest.raises(ValueError, match="takes one report"):
        EXPORTERS["junit"].render([graded("s1"), graded("s2")])


# ------------------------------------------------------------------ property: exporters never crash

_names = st.text(min_size=1, max_size=25)


@st.composite
def random_reports(draw) -> Report:
    parts = draw(st.lists(_names, min_size=1, max_size=4, unique=True))
    tests = []
    for i in range(draw(st.integers(min_value=0, max_value=10))):
        points = draw(st.floats(min_value=0, max_value=25, allow_nan=False))
        status = draw(st.sampled_from(["passed", "failed", "error", "timeout"]))
        tests.append(
            TestResult(
                name=draw(_names),
                nodeid=f"tests/hidden/test_x.py::test_{i}",
                part=draw(st.sampled_from(parts)),
                score=points if status == "passed" else draw(st.sampled_from([0.0, points / 3])),
                max_score=points,
                status=status,
                visibility=draw(st.sampled_from(["visible", "hidden"])),
                output=draw(st.text(max_size=300)),
                duration=draw(st.floats(min_value=0, max_value=600)),
            )
        )
    student = draw(st.one_of(st.none(), st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1)))
    status = draw(st.sampled_from(["graded", "graded", "submission-error", "sandbox-error"]))
    error = None
    if status != "graded":
        error = SubmissionErrorInfo(code="bad-zip", message=draw(_names), hint=draw(st.one_of(st.none(), _names)))
    return Report.build(
        tests=tests, student=student, status=status, error=error, stdout=draw(st.text(max_size=100)),
        max_score=draw(st.floats(min_value=0, max_value=100)) + sum(t.max_score for t in tests), **_common(),
    )


@settings(max_examples=80, deadline=None)
@given(random_reports())
def test_exporters_never_crash_and_totals_match(report):
    results = json.loads(gradescope_results.dumps(report))
    _check_gradescope_shape(results, report)

    root = ET.fromstring(junit.to_junit_xml(report, reveal_hidden=True).encode("utf-8"))
    expected_cases = len(report.tests) + (report.error is not None)
    assert int(root.get("tests")) == len(root.findall("testsuite/testcase")) == expected_cases
    assert int(root.get("failures")) == sum(t.status == "failed" for t in report.tests)

    _check_classroom_shape(_decode(github_classroom.encode(report, reveal_hidden=True)), report)

    (row,) = csv.DictReader(io.StringIO(summary_csv.to_summary_csv([report])))
    assert float(row["score"]) == pytest.approx(report.score, abs=1e-4)
    assert int(row["tests_total"]) == len(report.tests)

    if report.student:
        rows = list(csv.reader(io.StringIO(canvas.to_canvas_csv([report], "Lab (1)"))))
        assert rows[0] == [*CANVAS_HEADER, "Lab (1)"] and len(rows) == 3
        assert rows[2][3] == report.student
