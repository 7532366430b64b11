"""Diagnosis before detail: a failure is traced to the op whose local backward is wrong (or to the
graph pass), shrunk to a short reproducer, and failures with one cause are grouped.

The engine's tests run real variants of the reference in-process (they are our own code) against
real torch; the catalogue test at the end grades every buggy variant through the local sandbox.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rich.console import Console

from grader.exporters.html_report import diagnosis_counts, to_html
from grader.grading.executors import TorchExecutor, trusted_executor
from grader.programs.blame import run_checks, trace
from grader.programs.compare import find_differences
from grader.programs.graph_probes import PROBES, requires_grad_broken, zero_grad_broken
from grader.programs.shrink import candidates_of
from grader.programs.diagnose import diagnose
from grader.programs.diagnosis import Diagnosis, group_sentence
from grader.programs.program import Program
from grader.report import Report, TestDiagnosis, report_from_json, validate_report_json
from grader.terminal import print_report
from tests.buggy import variant_file

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "reference"
TORCH = TorchExecutor()


def lab(variant: str | None):
    return trusted_executor(REFERENCE if variant is None else variant_file(variant))


def weighted(p: Program, y, shape):
    return (y * p.randn_array(shape)).sum().named("loss")


def bias_program() -> Program:
    """x (4, 3) + b (3,), then b + y and a product: every op of the ops part, on the backward path."""
    p = Program("bias on either side", seed=3)
    x = p.randn("x", (4, 3), requires_grad=True)
    b = p.randn("b", (3,), requires_grad=True)
    y = (x + b).named("y")
    z = (b + y).named("z")
    loss = weighted(p, z * x, (4, 3))
    p.backward(loss)
    p.snapshot("after backward", [x, b, y, z])
    return p


def reuse_program() -> Program:
    p = Program("a skip connection", seed=4)
    x = p.randn("x", (3, 4), requires_grad=True)
    W = p.randn("W", (4, 4), requires_grad=True)
    h = (x @ W).named("h")
    y = ((h.relu() * h) + h).named("y")
    loss = weighted(p, y + h, (3, 4))
    p.backward(loss)
    p.snapshot("after backward", [x, W, h, y])
    return p


def two_backward_program() -> Program:
    p = Program("two backward passes", seed=5)
    x = p.randn("x", (2, 3), requires_grad=True)
    h = (x * p.randn_array((2, 3))).named("h")
    loss = weighted(p, h, (2, 3))
    p.backward(loss)
    p.backward(loss)
    p.snapshot("after two passes", [x, h])
    return p


def diagnosis_of(program: Program, variant: str | None) -> Diagnosis | None:
    executor = lab(variant)
    return diagnose(program, TORCH.run(program), executor.run(program), executor.run)


def run_script(script: str, autograd: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    work = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    work.mkdir()
    (work / "autograd.py").write_text(autograd.read_text(encoding="utf-8"), encoding="utf-8")
    (work / "reproduce.py").write_text(script, encoding="utf-8")
    return subprocess.run([sys.executable, "reproduce.py"], cwd=work, capture_output=True, text=True, timeout=60)


# ---- a correct submission is never blamed ----

@pytest.mark.parametrize("build", [bias_program, reuse_program, two_backward_program])
def test_every_local_check_passes_on_the_reference(build) -> None:
    program = build()
    calls = list(trace(program).calls.values())
    assert calls
    verdicts = run_checks(calls, lab(None).run)
    assert all(v.ok and not v.inconclusive for v in verdicts), [v for v in verdicts if not v.ok]
    assert diagnosis_of(program, None) is None


CORRECT = ROOT / "tests" / "correct"


@pytest.mark.parametrize("style", sorted(p.parent.name for p in CORRECT.glob("*/autograd.py")))
def test_no_local_check_or_probe_blames_a_correct_implementation_in_another_style(style: str) -> None:
    """The checks, the shrink candidates and the graph probes are themselves Programs that every correct
    implementation (tests/correct: closures, a tape, Kahn's algorithm, ...) runs exactly as torch does."""

    executor = trusted_executor(CORRECT / style / "autograd.py")
    for build in (bias_program, reuse_program, two_backward_program):
        calls = list(trace(build()).calls.values())
        calls += [cand for call in calls for cand in candidates_of(call)]
        verdicts = run_checks(calls, executor.run)
        assert all(v.ok and not v.inconclusive for v in verdicts), [(c.fn, v) for c, v in zip(calls, verdicts)
                                                                   if not v.ok]
    for probe in PROBES:
        p = probe.build()
        assert not find_differences(p, TORCH.run(p), executor.run(p)), (style, probe.mechanism)
    assert not requires_grad_broken(executor.run)[0]
    assert not zero_grad_broken(executor.run, via_sgd=True)[0] and not zero_grad_broken(executor.run, via_sgd=False)[0]


# ---- blame the op ----

def test_mul_backward_is_blamed_with_its_operand_and_a_short_reproducer(tmp_path: Path) -> None:
    d = diagnosis_of(bias_program(), "mul_backward_uses_own_data")
    assert d is not None and (d.kind, d.site) == ("op", "mul") and d.operand in ("left", "right")
    assert d.summary.startswith("mul's backward (the gradient of the")
    lines = d.reproducer.strip().splitlines()
    assert len(lines) <= 10, d.reproducer
    assert "expected = np.array(" in d.reproducer and "yours:" in d.reproducer  # both written out in full
    bad = run_script(d.reproducer, variant_file("mul_backward_uses_own_data"), tmp_path)
    assert bad.returncode != 0 and "AssertionError" in bad.stderr, bad.stderr
    good = run_script(d.reproducer, REFERENCE / "autograd.py", tmp_path)
    assert good.returncode == 0, good.stderr


def test_a_broadcast_operand_on_the_left_names_the_case_and_pitfall_1() -> None:
    d = diagnosis_of(bias_program(), "unbroadcast_right_operand_only")
    assert d is not None and (d.kind, d.site, d.operand) == ("op", "add", "left"), d
    assert "broadcast (3,) operand (left)" in (d.case or "")
    assert d.pitfall == 1 and "pitfall 1: reduce broadcast grads" in d.advice


@pytest.mark.parametrize(("variant", "site", "pitfall"), [
    ("relu_grad_at_zero_is_one", "relu", 6), ("matmul_weight_grad_transposed", "matmul", None),
    ("sum_backward_ignores_upstream", "sum", None)])
def test_other_ops_are_blamed(variant: str, site: str, pitfall: int | None, tmp_path: Path) -> None:
    p = Program("relu of exact zeros, matmul, sum", seed=6)
    x = p.tensor("x", [[0.0, -1.0, 2.0], [1.5, 0.0, -0.5]], requires_grad=True)
    W = p.randn("W", (3, 2), requires_grad=True)
    h = (x.relu() @ W).named("h")
    s = h.sum().named("s")
    loss = (s * p.array(np.array(3.0))).named("loss")
    p.backward(loss)
    p.snapshot("after backward", [x, W, h, s])
    d = diagnosis_of(p, variant)
    assert d is not None and (d.kind, d.site) == ("op", site), d
    if pitfall:
        assert d.pitfall == pitfall
    assert run_script(d.reproducer, variant_file(variant), tmp_path).returncode != 0
    assert run_script(d.reproducer, REFERENCE / "autograd.py", tmp_path).returncode == 0


# ---- local backward or propagation ----

@pytest.mark.parametrize(("variant", "build", "mechanism"), [
    ("grad_overwritten_when_reused", reuse_program, "accumulation"),
    ("backward_bfs_order", reuse_program, "topological-order"),
    ("backward_propagates_accumulated_grad", two_backward_program, "second-backward"),
    ("grad_not_accumulated_across_backward", two_backward_program, "accumulate-across-backward")])
def test_propagation_bugs_are_told_apart_from_local_ones(variant: str, build, mechanism: str, tmp_path: Path) -> None:
    d = diagnosis_of(build(), variant)
    assert d is not None and (d.kind, d.site) == ("graph", mechanism), d
    assert "every op's backward is right on its own" in d.detail
    assert d.reproducer and run_script(d.reproducer, variant_file(variant), tmp_path).returncode != 0
    assert run_script(d.reproducer, REFERENCE / "autograd.py", tmp_path).returncode == 0


def test_x_times_x_is_a_missed_reuse_not_a_wrong_mul() -> None:
    p = Program("x * x", seed=8)
    x = p.randn("x", (2, 3), requires_grad=True)
    loss = weighted(p, (x * x).named("xx"), (2, 3))
    p.backward(loss)
    p.snapshot("after backward", [x])
    d = diagnosis_of(p, "grad_overwritten_when_reused")
    assert d is not None and (d.kind, d.site) == ("graph", "accumulation"), d


# ---- words ----

def test_group_sentence() -> None:
    assert group_sentence(7, [("mul's backward (the gradient of the left operand)", 7)]) == \
        "7 tests fail, all through mul's backward (the gradient of the left operand)"
    assert group_sentence(3, [("a", 2), ("b", 1)]) == "3 tests fail: 2 through a; 1 through b"
    assert group_sentence(1, [("a", 1)]) == "1 test fails, through a"


# ---- the report, the terminal, the class report ----

def _diagnosed_report(student: str, keys: list[tuple[str, str, str]], *, old: bool = False):
    """A report whose failed tests carry diagnoses ``(kind, site, operand)``; ``old``: none at all."""
    from tests.test_html_report import _report

    base = _report(student, set(), output="x.grad differs\n\nReproducer (t, seed 1); save as reproduce.py next to "
                   "your autograd.py and run it:\n\nimport numpy as np\nassert False")
    if old:
        return base
    tests = []
    for t, (kind, site, operand) in zip(base.tests, keys):
        d = Diagnosis(kind, site, operand or None, "a broadcast (3,) operand" if kind == "op" else None,
                      "the left operand's gradient differs", 1 if kind == "op" else None,
                      "import numpy as np\nfrom autograd import Tensor\nassert False\n" if kind == "op" else None)
        tests.append(t.model_copy(update={"diagnosis": TestDiagnosis(**d.to_dict())}))
    return Report.build(assignment=base.assignment, tests=tests + base.tests[len(keys):],
                        submission=base.submission, environment=base.environment, timings=base.timings,
                        student=student, max_score=base.max_score)


def test_the_report_groups_diagnoses_and_old_reports_still_validate(tmp_path: Path) -> None:
    report = _diagnosed_report("ann", [("op", "mul", "left"), ("op", "mul", "left"), ("graph", "accumulation", "")])
    assert [(g.key, len(g.tests)) for g in report.diagnosis] == [("op:mul:left", 2), ("graph:accumulation", 1)]
    data = json.loads(report.dumps())
    validate_report_json(data)
    assert report_from_json(data) == report
    old = json.loads(_diagnosed_report("bob", [], old=True).dumps())
    for key in ("diagnosis",):
        old.pop(key)
        for t in old["tests"]:
            t.pop(key)
    validate_report_json(old)                    # a report written before the diagnosis existed
    assert report_from_json(old).diagnosis is None


def test_grader_check_leads_with_the_diagnosis_and_folds_the_full_reproducer() -> None:
    report = _diagnosed_report("ann", [("op", "mul", "left")] * 3)
    console = Console(record=True, width=200)
    print_report(report, console)
    text = console.export_text()
    lead = "4 tests fail: 3 through mul's backward (the gradient of the left operand)"
    assert text.index(lead) < text.index("FAILED")
    assert "pitfall 1: reduce broadcast grads" in text
    assert text.count("Smallest program that shows it") == 1      # once per diagnosis, not per test
    assert "(the same diagnosis as" in text
    assert "assert False" in text and text.count("Reproducer (t, seed 1)") == 1   # the undiagnosed test's own
    full = Console(record=True, width=200)
    print_report(report, full, full_reproducer=True)
    assert full.export_text().count("Reproducer (t, seed 1)") == 4


def test_grader_check_without_torch_says_what_the_diagnosis_needs(tmp_path: Path) -> None:
    """A student install has no torch: the check still grades (stored expectations), and instead of a
    silent absence of the diagnosis it says what to install to get one."""
    from tests.buggy import materialize

    submission = materialize("mul_backward_uses_own_data", tmp_path / "mul_backward_uses_own_data")
    code = ("import sys; sys.modules['torch'] = None\n"
            "from grader.cli import main\n"
            f"rc = main(['check', '--part', 'ops', {str(submission)!r}])\n"
            "print('RESULT', rc)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "200"})
    out = " ".join(done.stdout.split())
    assert "RESULT 1" in out and "differs from torch.autograd" in out, done.stdout[-3000:] + done.stderr[-3000:]
    assert "no diagnosis: naming the op whose backward is wrong needs torch" in out and "pip install torch" in out


def test_the_class_report_shows_the_most_common_diagnoses_in_chromium(tmp_path: Path) -> None:
    from tests.test_html_report import CHROMIUM_FLAGS, render

    browser = _chromium()
    reports = [_diagnosed_report("ann", [("op", "mul", "left")] * 2),
               _diagnosed_report("bob", [("op", "mul", "left"), ("graph", "accumulation", "")]),
               _diagnosed_report("cy", [("graph", "accumulation", "")]),
               _diagnosed_report("dee", [("op", "mul", "left")])]
    counts = diagnosis_counts(reports)
    assert [(key, len(students), tests) for key, _, _, students, tests in counts] == [
        ("op:mul:left", 3, 4), ("graph:accumulation", 2, 2)]
    page = tmp_path / "report.html"
    page.write_text(to_html(reports), encoding="utf-8")
    dom_text, console = render(browser, page, tmp_path / "profile")
    assert console == []
    rows = re.findall(r'<tr data-diagnosis="([^"]+)" data-students="(\d+)" data-tests="(\d+)">', dom_text)
    assert rows == [("op:mul:left", "3", "4"), ("graph:accumulation", "2", "2")]
    assert "Most common diagnoses" in dom_text
    shot = tmp_path / "diagnoses.png"
    done = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}",
                           "--window-size=1200,1100", f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.stat().st_size > 10_000, done.stderr[-2000:]
    image = _png_pixels(shot)
    assert len(set(image)) > 20            # not a blank page: text, table rules, links


def _chromium() -> str:
    import shutil

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium is not installed")
    return path


def _png_pixels(path: Path) -> list[bytes]:
    """Distinct-ish pixel samples of a PNG (stdlib only: zlib over the IDAT chunks)."""
    import struct
    import zlib

    data = path.read_bytes()
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    return [raw[i:i + 3] for i in range(0, len(raw), 997)]


# ---- through the plugin and the local sandbox ----

def test_a_submission_that_hangs_on_small_checks_costs_at_most_the_budget(tmp_path: Path) -> None:
    """mul's backward is wrong, and any Tensor made from a list of 6 numbers sleeps for a minute: the
    shrunk checks (2, 3) hang. The first failure still reports its blamed op (unshrunk), within the
    diagnosis budget; after that timeout the run diagnoses no more, so the cost is paid once."""
    from grader.assignment import find_assignment
    from grader.grading.diagnosis_hook import REQUEST_S
    from grader.grading.runner import GradeRequest, grade

    source = variant_file("mul_backward_uses_own_data").read_text(encoding="utf-8")
    hook = "        self.data = np.array(data, dtype=np.float64)  # always a private copy\n"
    assert hook in source
    source = source.replace(hook, hook + "        if isinstance(data, list) and self.data.size == 6:\n"
                                         "            import time; time.sleep(60)\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "autograd.py").write_text(source, encoding="utf-8")
    report = grade(GradeRequest(find_assignment("autograd-lab"), tmp_path / "sub", backend="local",
                                visible_only=True, parts=("ops",))).report
    failed = [t for t in report.tests if t.status != "passed"]
    assert len(failed) >= 5
    first = failed[0].diagnosis
    assert first is not None and first.site == "mul" and first.seconds <= REQUEST_S + 2.5, first   # + torch's import, the restart
    assert all(t.diagnosis is None for t in failed[1:])
    assert all(t.duration < 15 for t in failed)         # far below the 20 s limit of one request


def test_gradescope_shows_the_diagnosis_of_visible_tests_only() -> None:
    from grader.exporters.gradescope_results import to_gradescope

    # tests 0 and 2 are visible, 1 and 3 hidden
    report = _diagnosed_report("ann", [("op", "mul", "left"), ("graph", "accumulation", ""), ("op", "mul", "left")])
    results = to_gradescope(report)
    visible = [t for t in report.tests if t.visibility == "visible"]
    hidden_diagnosed = [t for t in report.tests if t.visibility == "hidden" and t.diagnosis]
    assert hidden_diagnosed and visible
    assert "Visible tests: 2 tests fail, all through mul's backward" in results["output"]
    assert "the graph pass" not in results["output"]          # that diagnosis belongs to a hidden test
    by_name = {t["name"]: t for t in results["tests"]}
    for t in report.tests:
        if t.diagnosis:
            assert by_name[t.name]["output"].startswith(f"diagnosis: {t.diagnosis.summary}")
