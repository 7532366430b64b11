"""JUnit XML from a report, for CI systems (GitHub Actions, GitLab, Jenkins).

Shape, as the common JUnit schemas (Ant's JUnit task, Jenkins junit-4.xsd, pytest's
``xunit2`` junit-10.xsd) define it:

    <testsuites name tests failures errors time>
      <testsuite name tests failures errors skipped time timestamp>   one per part
        <properties><property name value/>...</properties>
        <testcase name classname time>
          <failure message type>text</failure>  |  <error message type>text</error>
        </testcase>

Only ``testsuite`` may hold ``properties`` in the strictest of those schemas (junit-10),
so points are written there: the part's ``score``/``max_score`` and the report's
``report_score``/``report_max_score``/``report_status``. A failed test is a ``failure``; an
errored or timed-out test is an ``error`` whose ``type`` says which. ``time`` is seconds
with three decimals. A submission that could not be graded becomes a ``submission``
suite whose one test case errors with the error's code as ``type``.

JUnit XML usually ends up in front of students (CI logs), so the output of hidden tests
is replaced by a note unless ``reveal_hidden=True``. Characters that XML 1.0 cannot
carry (most control characters) are dropped so that the file always parses.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from grader.report import Report, TestResult

HIDDEN_NOTE = "(hidden test: its details are shown to course staff only)"
_MESSAGE_LIMIT = 200
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def to_junit_xml(report: Report, *, reveal_hidden: bool = False) -> str:
    """The JUnit XML document (text, with an XML declaration) for ``report``."""
    root = ET.Element("testsuites", name=_safe(report.assignment.name))
    for part in report.parts:
        tests = [t for t in report.tests if t.part == part]
        root.append(_part_suite(report, part, tests, reveal_hidden))
    if report.error is not None:
        root.append(_error_suite(report))
    _count(root, root.findall("testsuite"))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _part_suite(report: Report, part: str, tests: Sequence[TestResult], reveal_hidden: bool) -> ET.Element:
    suite = _suite(report, part)
    totals = report.parts[part]
    _properties(suite, report, score=totals.score, max_score=totals.max_score)
    for test in tests:
        case = ET.SubElement(
            suite,
            "testcase",
            name=_safe(test.name),
            classname=_safe(f"{report.assignment.name}.{test.part}"),
            time=_seconds(test.duration),
        )
        if test.status != "passed":
            text = test.output if reveal_hidden or test.visibility == "visible" else HIDDEN_NOTE
            tag, kind = ("failure", "failed") if test.status == "failed" else ("error", test.status)
            _outcome(case, tag, kind, text or f"test {test.status}")
    return suite


def _error_suite(report: Report) -> ET.Element:
    assert report.error is not None
    suite = _suite(report, "submission")
    _properties(suite, report, score=0.0, max_score=report.max_score)
    case = ET.SubElement(
        suite, "testcase", name="submission", classname=_safe(f"{report.assignment.name}.submission"), time="0.000"
    )
    text = report.error.message + (f"\nhint: {report.error.hint}" if report.error.hint else "")
    _outcome(case, "error", report.error.code, text)
    return suite


def _suite(report: Report, name: str) -> ET.Element:
    return ET.Element(
        "testsuite",
        name=_safe(name),
        timestamp=report.timings.started_at.strftime("%Y-%m-%dT%H:%M:%S"),
    )


def _properties(suite: ET.Element, report: Report, *, score: float, max_score: float) -> None:
    props = ET.SubElement(suite, "properties")
    values = {
        "score": _num(score),
        "max_score": _num(max_score),
        "report_score": _num(report.score),
        "report_max_score": _num(report.max_score),
        "report_status": report.status,
    }
    if report.student is not None:
        values["student"] = _safe(report.student)
    for name, value in values.items():
        ET.SubElement(props, "property", name=name, value=value)


def _outcome(case: ET.Element, tag: str, kind: str, text: str) -> None:
    text = _safe(text)
    first_line = text.strip().splitlines()[0] if text.strip() else kind
    element = ET.SubElement(case, tag, message=first_line[:_MESSAGE_LIMIT], type=kind)
    element.text = text


def _count(root: ET.Element, suites: Sequence[ET.Element]) -> None:
    totals = {"tests": 0, "failures": 0, "errors": 0, "time": 0.0}
    for suite in suites:
        cases = suite.findall("testcase")
        counts = {
            "tests": len(cases),
            "failures": sum(c.find("failure") is not None for c in cases),
            "errors": sum(c.find("error") is not None for c in cases),
            "time": sum(float(c.get("time", "0")) for c in cases),
        }
        suite.set("tests", str(counts["tests"]))
        suite.set("failures", str(counts["failures"]))
        suite.set("errors", str(counts["errors"]))
        suite.set("skipped", "0")
        suite.set("time", _seconds(counts["time"]))
        for key in totals:
            totals[key] += counts[key]
    for key in ("tests", "failures", "errors"):
        root.set(key, str(totals[key]))
    root.set("time", _seconds(totals["time"]))


def _safe(text: str) -> str:
    return _NOT_XML.sub("", text)


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def _num(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".")
