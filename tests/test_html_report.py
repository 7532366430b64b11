"""The HTML class report: self-contained, escaped, numbers that match the reports and the CSV.

The browser test renders the page in headless Chromium (Debian package ``chromium``) and reads the
DOM back. Without Chromium it skips, unless ``GRADER_REQUIRE_BROWSER=1`` (CI), where it fails.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from grader.exporters import EXPORTERS
from grader.exporters.html_report import failure_message, histogram_counts, to_html
from grader.exporters.summary_csv import to_summary_csv
from grader.report import (IDENTICAL_PREFIX, Assignment, Environment, Report, SubmissionErrorInfo, SubmissionInfo,
                           TestResult, Timings, identical_to, test_name_from_nodeid)

T0 = datetime(2025, 3, 14, 15, 9, 26, tzinfo=timezone.utc)
EVIL = '<script>alert("x")</script>'
EVIL_ATTR = '"><img src=x onerror=alert(1)>'
TESTS = [("tests/public/test_ops.py::test_add", "ops", 2.0), ("tests/hidden/test_ops.py::test_mul[H]", "ops", 3.0),
         ("tests/public/test_mlp.py::test_mlp", "mlp", 5.0), ("tests/hidden/test_graph.py::test_detach", "graph", 4.0)]


def _report(student: str, passed: set[int], *, output: str = "AssertionError: grads differ\nmore detail",
            status: str = "graded", notes: tuple[str, ...] = (), stdout: str = "") -> Report:
    tests = [TestResult(name=test_name_from_nodeid(nodeid), nodeid=nodeid, part=part,
                        score=points if i in passed and status == "graded" else 0.0, max_score=points,
                        status="passed" if i in passed else "failed", visibility="hidden" if "hidden" in nodeid
                        else "visible", output="" if i in passed else output, duration=0.1)
             for i, (nodeid, part, points) in enumerate(TESTS)]
    error = None if status == "graded" else SubmissionErrorInfo(code="syntax-error", message=f"Syntax error {EVIL}",
                                                                hint=EVIL_ATTR)
    return Report.build(
        assignment=Assignment(name="autograd-lab", title="Autograd From Scratch"),
        tests=tests if status == "graded" else [],
        submission=SubmissionInfo(sha256="a" * 64, kind="file", notes=list(notes)),
        environment=Environment(grader_version="0.1.0", python="3.11.7", numpy="1.26.4", platform="Linux",
                                backend="local", seed=1),
        timings=Timings(started_at=T0, finished_at=T0 + timedelta(seconds=3), total_seconds=3.0, tests_seconds=2.0),
        student=student, stdout=stdout, status=status, error=error, max_score=14.0)


def a_class() -> list[Report]:
    return [
        _report("alice", {0, 1, 2, 3}),
        _report("bob", {0, 2}, output="ValueError: shape mismatch (8,16) vs (16,)"),
        _report(EVIL, {0}, output=f"</pre></details>{EVIL_ATTR}\n{EVIL}", stdout=EVIL),
        _report("dave@uni.edu", {0, 1, 2, 3}, notes=(IDENTICAL_PREFIX + "alice",)),
        _report("erin", set(), status="submission-error"),
        _report("frank & co", set(), output=""),
        _report("gus", {1}),
    ]


class _Dom(HTMLParser):
    """Tags, data-* rows and text of a page, as the tests need them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.students: dict[str, dict[str, str]] = {}
        self.part_cells: dict[str, dict[str, str]] = {}
        self.bins: list[int] = []
        self.root: dict[str, str] = {}
        self.scripts: list[str] = []
        self._row: str | None = None
        self._cell: str | None = None
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if tag == "html":
            self.root = a
        if tag == "tr" and "data-student" in a:
            self._row = a["data-student"]
            self.students[self._row] = a
            self.part_cells[self._row] = {}
        if tag == "td" and "data-part" in a and self._row is not None:
            self._cell = a["data-part"]
            self.part_cells[self._row][self._cell] = ""
        if tag == "g" and "data-count" in a:
            self.bins.append(int(a["data-count"]))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None
        if tag == "td":
            self._cell = None
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None and self._row is not None:
            self.part_cells[self._row][self._cell] += data.strip()
        if self._in_script:
            self.scripts.append(data)


def parse(page: str) -> _Dom:
    dom = _Dom()
    dom.feed(page)
    return dom


def test_everything_from_a_report_is_escaped() -> None:
    page = to_html(a_class(), report_links={EVIL: "reports/x.json"})
    dom = parse(page)
    assert dom.tags.count("script") == 1 and "img" not in dom.tags       # only the page's own script
    assert EVIL not in page and EVIL_ATTR not in page
    assert dom.students[EVIL]["data-score"] == "2" and "frank & co" in dom.students
    assert '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;' in page


def test_the_content_security_policy_allows_only_the_page_s_own_script_and_style() -> None:
    page = to_html(a_class())
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)[1]
    script = re.search(r"<script>(.*?)</script>", page, re.S)[1]
    style = re.search(r"<style>(.*?)</style>", page, re.S)[1]
    for directive, body in (("script-src", script), ("style-src", style)):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in policy
    assert "default-src 'none'" in policy and "unsafe-inline" not in policy
    assert not re.search(r"(src|href)=\"(https?:)?//", page)                  # nothing fetched


def test_numbers_agree_with_the_reports() -> None:
    reports = a_class()
    dom = parse(to_html(reports))
    assert sum(dom.bins) == len(reports) == len(dom.students)
    assert histogram_counts(reports) == dom.bins
    assert dom.bins[-1] == 2 and dom.bins[0] == 2                           # 100% and 0% at the ends
    assert dom.bins[1] == dom.bins[2] == dom.bins[5] == 1                   # 2/14, 3/14 and 7/14
    for r in reports:
        row = dom.students[r.student]
        assert float(row["data-score"]) == r.score and row["data-status"] == r.status
        assert {p: float(v) for p, v in dom.part_cells[r.student].items() if v} == \
            {p: part.score for p, part in r.parts.items()}


def test_identical_submissions_and_failures_are_shown() -> None:
    reports = a_class()
    page = to_html(reports)
    assert identical_to(reports[3]) == "alice" and 'class="flag" href="#s-alice"' in page
    assert failure_message(reports[1].tests[1]) == "ValueError: shape mismatch (8,16) vs (16,)"
    assert failure_message(reports[5].tests[0]) == "(failed, no message)"
    expected = sum(failure_message(t) == "AssertionError: grads differ" for r in reports for t in r.tests
                   if t.status != "passed")
    grouped = re.search(r'<tr data-count="(\d+)" data-students="(\d+)">(<td class="num">\d+</td>){2}'
                        r'<td><code>AssertionError: grads differ', page)
    assert grouped and int(grouped[1]) == expected == 3 and grouped[2] == "1"   # gus's three failures
    assert page.count('<section class="feedback"') == len(reports)


def test_html_is_an_exporter() -> None:
    exporter = EXPORTERS["html"]
    assert not exporter.per_report and exporter.suffix == ".html"
    assert exporter.render(a_class()).startswith("<!DOCTYPE html>")


def test_an_empty_class_renders() -> None:
    dom = parse(to_html([]))
    assert dom.students == {} and sum(dom.bins) == 0


# -- in a real browser --------------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0"]


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("GRADER_REQUIRE_BROWSER") == "1":
            pytest.fail("GRADER_REQUIRE_BROWSER=1 but chromium is not installed (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium); set GRADER_REQUIRE_BROWSER=1 to fail")
    return path


def render(chromium: str, page: Path, profile: Path) -> tuple[str, list[str]]:
    """The DOM after the page's script ran, and the page's console messages (any is a problem)."""
    done = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def test_the_console_check_sees_errors(chromium: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>")
    _, console = render(chromium, broken, tmp_path / "profile")
    assert any("undefinedFunction" in line for line in console)


def test_the_page_renders_in_chromium_and_matches_the_csv(chromium: str, tmp_path: Path) -> None:
    reports = a_class()
    page = tmp_path / "report.html"
    page.write_text(to_html(reports, report_links={r.student: f"reports/{r.student}.json" for r in reports}),
                    encoding="utf-8")
    dom_text, console = render(chromium, page, tmp_path / "profile")
    assert console == []                                  # no script error, no CSP violation
    dom = parse(dom_text)
    assert dom.root.get("data-ready") == "1" and "data-js-error" not in dom.root
    assert "img" not in dom.tags and dom.tags.count("script") == 1
    rows = list(csv.DictReader(io.StringIO(to_summary_csv(reports))))
    assert sorted(dom.students) == sorted(row["student"] for row in rows)
    for row in rows:
        shown = dom.students[row["student"]]
        assert float(shown["data-score"]) == float(row["score"])
        assert float(shown["data-max"]) == float(row["max_score"])
        assert shown["data-status"] == row["status"]
        for part in ("ops", "mlp", "graph"):
            assert dom.part_cells[row["student"]][part] == row[f"part:{part}"]
    assert sum(dom.bins) == len(rows)
