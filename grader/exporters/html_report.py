"""A class report for staff: one self-contained HTML page from many reports.

The page needs no network: inline CSS, one small inline script (sortable tables) and SVG.
Its Content-Security-Policy allows only that script and that style, by hash, and fetches
nothing, so even a mistake in escaping could not run a student's markup. Everything that
comes from a report (student ids, test output, prints, error messages) is escaped: student
ids and outputs are untrusted.

Sections: summary numbers and statuses, a score histogram (SVG), per-part and per-test pass
rates, the most common failure messages (first line of a test's output, grouped), a table of
students (score, per-part scores, status, identical submissions, a link to the JSON report
when the caller knows where it is), and each student's feedback as an anchored section.
Elements carry ``data-*`` attributes with the raw numbers, so tools (and the project's tests)
can read them back.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from grader.report import Report, TestResult, identical_to

"""How a batch notes a submission it did not grade itself (the note ends with the other student's id)."""

HISTOGRAM_BINS = 10
FEEDBACK_OUTPUT_LIMIT = 4000
FEEDBACK_TESTS_LIMIT = 40
COMMON_FAILURES_LIMIT = 25

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1200px;
padding:1em 2em;color:#1d1d1f}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}
th,td{padding:.25em .6em;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#f5f5f7;position:sticky;top:0}table.sortable th{cursor:pointer}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.graded-full{color:#1a7f37}.graded{color:#9a6700}.submission-error,.sandbox-error{color:#cf222e}
.flag{background:#fff8c5;padding:0 .3em;border-radius:3px}
pre{background:#f6f8fa;padding:.6em;overflow:auto;max-height:30em;white-space:pre-wrap}
section.feedback{border-top:2px solid #ddd;margin-top:1.5em}
.stats span{display:inline-block;margin-right:2em}meter{width:8em}
svg text{font-size:11px;fill:#444}svg rect.bar{fill:#4c8bf5}
"""

_JS = """
(function () {
  function key(cell) {
    var raw = cell.getAttribute('data-sort');
    if (raw === null) { raw = cell.textContent.trim(); }
    return (raw !== '' && !isNaN(Number(raw))) ? Number(raw) : raw.toLowerCase();
  }
  function sortBy(table, col, th) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var ascending = th.getAttribute('aria-sort') !== 'ascending';
    rows.sort(function (a, b) {
      var x = key(a.cells[col]), y = key(b.cells[col]);
      var c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
      return ascending ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
  }
  try {
    Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
        th.addEventListener('click', function () { sortBy(table, col, th); });
      });
    });
    document.documentElement.setAttribute('data-ready', '1');
  } catch (err) {
    document.documentElement.setAttribute('data-js-error', String(err));
  }
})();
"""



def to_html(reports: Sequence[Report], *, report_links: Mapping[str, str] | None = None,
            title: str | None = None) -> str:
    """The page. ``report_links`` maps a student id to the (relative) URL of their JSON report."""
    reports = list(reports)
    links = dict(report_links or {})
    heading = title or _default_title(reports)
    body = "\n".join([
        f"<h1>{_e(heading)}</h1>",
        _summary(reports),
        _histogram(reports),
        _parts_section(reports),
        _failures_section(reports),
        _tests_section(reports),
        _students_section(reports, links),
        _feedback_section(reports, links),
    ])
    return _page(heading, body)


# -- page ---------------------------------------------------------------------------------


def _page(heading: str, body: str) -> str:
    csp = (f"default-src 'none'; style-src {_hash(_CSS)}; script-src {_hash(_JS)}; "
           "img-src data:; base-uri 'none'; form-action 'none'")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<meta name=\"referrer\" content=\"no-referrer\">\n"
        f"<title>{_e(heading)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n"
        f"<script>{_JS}</script>\n</body>\n</html>\n"
    )


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".")


def _one(value: float) -> str:
    """A rate or mean for people: one decimal."""
    return f"{value:.1f}"


def _pct(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole else 0.0


def _default_title(reports: Sequence[Report]) -> str:
    titles = sorted({r.assignment.title or r.assignment.name for r in reports})
    return f"{' / '.join(titles) or 'Class'}: class report"


def anchor(student: str | None) -> str:
    """A safe, unique element id for a student's feedback section."""
    text = student or "(unknown)"
    return "s-" + re.sub(r"[^A-Za-z0-9_-]", lambda m: f".{ord(m.group()):x}", text)


def _status_class(report: Report) -> str:
    full = report.status == "graded" and report.score >= report.max_score > 0
    return "graded-full" if full else report.status


# -- summary and histogram ----------------------------------------------------------------


def _summary(reports: Sequence[Report]) -> str:
    pcts = [_pct(r.score, r.max_score) for r in reports]
    statuses = Counter(r.status for r in reports)
    copies = sum(identical_to(r) is not None for r in reports)
    stats = [("students", len(reports), len(reports)),
             ("mean %", _one(statistics.fmean(pcts)) if pcts else "–", statistics.fmean(pcts) if pcts else ""),
             ("median %", _one(statistics.median(pcts)) if pcts else "–", statistics.median(pcts) if pcts else ""),
             ("identical submissions", copies, copies)]
    spans = "".join(f"<span data-stat=\"{_e(name)}\" data-value=\"{_e(raw)}\">{_e(name)}: <b>{_e(shown)}</b></span>"
                    for name, shown, raw in stats)
    rows = "".join(f"<tr data-status=\"{_e(s)}\"><td class=\"{_e(s)}\">{_e(s)}</td><td class=\"num\">{n}</td></tr>"
                   for s, n in sorted(statuses.items()))
    codes = Counter(r.error.code for r in reports if r.error is not None)
    code_rows = "".join(f"<tr data-error-code=\"{_e(c)}\"><td>{_e(c)}</td><td class=\"num\">{n}</td></tr>"
                        for c, n in codes.most_common())
    errors = (f"<h3>Why submissions could not be graded</h3><table><thead><tr><th>error</th><th class=\"num\">"
              f"students</th></tr></thead><tbody>{code_rows}</tbody></table>") if codes else ""
    return (f"<p class=\"stats\">{spans}</p><table id=\"statuses\"><thead><tr><th>status</th>"
            f"<th class=\"num\">students</th></tr></thead><tbody>{rows}</tbody></table>{errors}")


def histogram_counts(reports: Sequence[Report], bins: int = HISTOGRAM_BINS) -> list[int]:
    """Students per score band (percent of the maximum), ``bins`` equal bands; 100% in the last."""
    counts = [0] * bins
    for r in reports:
        pct = _pct(r.score, r.max_score)
        counts[min(bins - 1, max(0, int(pct * bins // 100)))] += 1
    return counts


def _histogram(reports: Sequence[Report]) -> str:
    counts = histogram_counts(reports)
    width, height, pad, bar_w = 640, 220, 30, 56
    top = max(counts) or 1
    bars = []
    for i, count in enumerate(counts):
        h = round((height - 2 * pad) * count / top)
        x, y = pad + i * (bar_w + 4), height - pad - h
        lo, hi = i * 100 // len(counts), (i + 1) * 100 // len(counts)
        label = f"{lo}–{hi}%"
        bars.append(
            f"<g class=\"bin\" data-bin=\"{i}\" data-low=\"{lo}\" data-high=\"{hi}\" data-count=\"{count}\">"
            f"<title>{label}: {count} student(s)</title>"
            f"<rect class=\"bar\" x=\"{x}\" y=\"{y}\" width=\"{bar_w}\" height=\"{h}\"></rect>"
            f"<text x=\"{x + bar_w / 2}\" y=\"{y - 4}\" text-anchor=\"middle\">{count}</text>"
            f"<text x=\"{x + bar_w / 2}\" y=\"{height - pad + 14}\" text-anchor=\"middle\">{label}</text></g>")
    return (f"<h2>Scores</h2><svg id=\"histogram\" role=\"img\" aria-label=\"score histogram\" "
            f"xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" "
            f"viewBox=\"0 0 {width} {height}\">{''.join(bars)}</svg>")


# -- parts, tests, failures ---------------------------------------------------------------


def _parts_section(reports: Sequence[Report]) -> str:
    names = list(dict.fromkeys(p for r in reports for p in r.parts))
    rows = []
    for name in names:
        mine = [r.parts[name] for r in reports if name in r.parts]
        score, top = sum(p.score for p in mine), sum(p.max_score for p in mine)
        passed, total = sum(p.passed for p in mine), sum(p.total for p in mine)
        full = sum(p.score >= p.max_score for p in mine)
        rows.append(
            f"<tr data-part=\"{_e(name)}\" data-passed=\"{passed}\" data-total=\"{total}\">"
            f"<td>{_e(name)}</td><td class=\"num\">{_one(score / len(mine))} / {_num(top / len(mine))}</td>"
            f"<td class=\"num\">{passed} / {total}</td><td class=\"num\">{_one(_pct(passed, total))}%</td>"
            f"<td><meter min=\"0\" max=\"1\" value=\"{passed / total if total else 0:.4f}\"></meter></td>"
            f"<td class=\"num\">{full} / {len(mine)}</td></tr>")
    return ("<h2>Parts</h2><table id=\"parts\" class=\"sortable\"><thead><tr><th>part</th><th class=\"num\">"
            "mean score</th><th class=\"num\">tests passed</th><th class=\"num\">pass rate</th><th></th>"
            f"<th class=\"num\">students with full marks</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _tests_section(reports: Sequence[Report]) -> str:
    by_test: dict[str, list[TestResult]] = defaultdict(list)
    for r in reports:
        for t in r.tests:
            by_test[t.nodeid].append(t)
    ordered = sorted(by_test.items(), key=lambda kv: (_rate(kv[1]), kv[1][0].part, kv[1][0].name))
    rows = []
    for nodeid, results in ordered:
        t, passed = results[0], sum(x.status == "passed" for x in results)
        rows.append(
            f"<tr data-test=\"{_e(nodeid)}\" data-passed=\"{passed}\" data-total=\"{len(results)}\">"
            f"<td>{_e(t.part)}</td><td>{_e(t.name)}</td><td>{_e(t.visibility)}</td>"
            f"<td class=\"num\">{passed} / {len(results)}</td>"
            f"<td class=\"num\" data-sort=\"{_rate(results):.6f}\">{_one(100 * _rate(results))}%</td>"
            f"<td><meter min=\"0\" max=\"1\" value=\"{_rate(results):.4f}\"></meter></td></tr>")
    return ("<h2>Tests (hardest first)</h2><table id=\"tests\" class=\"sortable\"><thead><tr><th>part</th>"
            "<th>test</th><th>visibility</th><th class=\"num\">passed</th><th class=\"num\">pass rate</th><th></th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _rate(results: Sequence[TestResult]) -> float:
    return sum(t.status == "passed" for t in results) / len(results) if results else 0.0


def failure_message(test: TestResult) -> str:
    """The first non-blank line of a failed test's output: what the grouping counts."""
    line = next((ln.strip() for ln in test.output.splitlines() if ln.strip()), "")
    return line[:300] if line else f"({test.status}, no message)"


def _failures_section(reports: Sequence[Report]) -> str:
    groups: dict[str, list[tuple[Report, TestResult]]] = defaultdict(list)
    for r in reports:
        for t in r.tests:
            if t.status != "passed":
                groups[failure_message(t)].append((r, t))
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:COMMON_FAILURES_LIMIT]
    rows = []
    for message, hits in ordered:
        students = list(dict.fromkeys(r.student or "(unknown)" for r, _ in hits))
        tests = list(dict.fromkeys(t.name for _, t in hits))
        who = ", ".join(f"<a href=\"#{_e(anchor(s))}\">{_e(s)}</a>" for s in students[:6])
        who += f" and {len(students) - 6} more" if len(students) > 6 else ""
        rows.append(f"<tr data-count=\"{len(hits)}\" data-students=\"{len(students)}\"><td class=\"num\">{len(hits)}"
                    f"</td><td class=\"num\">{len(students)}</td><td><code>{_e(message)}"
                    f"</code></td><td>{_e(', '.join(tests[:3]))}{' ...' if len(tests) > 3 else ''}</td>"
                    f"<td>{who}</td></tr>")
    if not rows:
        return "<h2>Most common failures</h2><p>No test failed.</p>"
    return ("<h2>Most common failures</h2><table id=\"failures\"><thead><tr><th class=\"num\">times</th>"
            "<th class=\"num\">students</th><th>first line of the explanation</th><th>tests</th><th>who</th>"
            f"</tr></thead><tbody>"
            f"{''.join(rows)}</tbody></table>")


# -- students -----------------------------------------------------------------------------


def _students_section(reports: Sequence[Report], links: Mapping[str, str]) -> str:
    parts = list(dict.fromkeys(p for r in reports for p in r.parts))
    head = "".join(f"<th class=\"num\">{_e(p)}</th>" for p in parts)
    rows = "".join(_student_row(r, parts, links) for r in sorted(reports, key=lambda r: r.student or ""))
    return ("<h2>Students</h2><table id=\"students\" class=\"sortable\"><thead><tr><th>student</th>"
            f"<th class=\"num\">score</th><th class=\"num\">max</th><th class=\"num\">%</th>{head}<th>status</th>"
            f"<th>identical to</th><th>report</th></tr></thead><tbody>{rows}</tbody></table>")


def _student_row(r: Report, parts: Sequence[str], links: Mapping[str, str]) -> str:
    student = r.student or "(unknown)"
    cells = "".join(
        f"<td class=\"num part\" data-part=\"{_e(p)}\">{_num(r.parts[p].score) if p in r.parts else ''}</td>"
        for p in parts)
    status = r.status + (f": {r.error.code}" if r.error else "")
    twin = identical_to(r)
    twin_cell = f"<a class=\"flag\" href=\"#{_e(anchor(twin))}\">{_e(twin)}</a>" if twin else ""
    link = links.get(r.student or "")
    link_cell = f"<a href=\"{_e(quote(link, safe='/'))}\">JSON</a>" if link else ""
    return (f"<tr data-student=\"{_e(student)}\" data-score=\"{_num(r.score)}\" data-max=\"{_num(r.max_score)}\" "
            f"data-status=\"{_e(r.status)}\"><td><a href=\"#{_e(anchor(r.student))}\">{_e(student)}</a></td>"
            f"<td class=\"num score\">{_num(r.score)}</td><td class=\"num\">{_num(r.max_score)}</td>"
            f"<td class=\"num\">{_one(_pct(r.score, r.max_score))}</td>{cells}"
            f"<td class=\"{_e(_status_class(r))}\">{_e(status)}</td><td>{twin_cell}</td><td>{link_cell}</td></tr>")


def _feedback_section(reports: Sequence[Report], links: Mapping[str, str]) -> str:
    sections = [_feedback(r, links) for r in sorted(reports, key=lambda r: r.student or "")]
    return "<h2>Feedback</h2>" + "".join(sections)


def _feedback(r: Report, links: Mapping[str, str]) -> str:
    student = r.student or "(unknown)"
    parts = "".join(f"<li>{_e(n)}: {_num(p.score)} / {_num(p.max_score)} ({p.passed}/{p.total} tests)</li>"
                    for n, p in r.parts.items())
    error = ""
    if r.error is not None:
        hint = f"\nhint: {r.error.hint}" if r.error.hint else ""
        error = f"<p><b>{_e(r.error.code)}</b></p><pre>{_e(_cap(r.error.message + hint))}</pre>"
    notes = "".join(f"<li>{_e(n)}</li>" for n in r.submission.notes)
    failed = [t for t in r.tests if t.status != "passed"]
    details = "".join(
        f"<details><summary>{_e(t.status.upper())} {_e(t.name)} ({_num(t.score)}/{_num(t.max_score)})</summary>"
        f"<pre>{_e(_cap(t.output))}</pre></details>" for t in failed[:FEEDBACK_TESTS_LIMIT])
    if len(failed) > FEEDBACK_TESTS_LIMIT:
        details += f"<p>... and {len(failed) - FEEDBACK_TESTS_LIMIT} more failed tests in the JSON report.</p>"
    stdout = (f"<details><summary>printed output</summary><pre>{_e(_cap(r.stdout))}</pre></details>"
              if r.stdout.strip() else "")
    link = links.get(r.student or "")
    json_link = f" <a href=\"{_e(quote(link, safe='/'))}\">JSON report</a>" if link else ""
    return (f"<section class=\"feedback\" id=\"{_e(anchor(r.student))}\" data-student=\"{_e(student)}\">"
            f"<h3>{_e(student)}: {_num(r.score)} / {_num(r.max_score)} "
            f"<span class=\"{_e(_status_class(r))}\">{_e(r.status)}</span>{json_link}</h3>{error}"
            f"<ul>{parts}</ul>{f'<ul>{notes}</ul>' if notes else ''}"
            f"<p>{len(r.tests) - len(failed)} of {len(r.tests)} tests passed.</p>{details}{stdout}</section>")


def _cap(text: str, limit: int = FEEDBACK_OUTPUT_LIMIT) -> str:
    """Long explanations are cut on the page (the JSON report has them whole): 60 students fit."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} more characters in the JSON report]"
