"""A time budget per submission: the report always arrives, within budget + margin, on every path.

The submission here is the reference with every op and ``backward`` sleeping 30 s. With a budget
of 40 s and a request timeout of 15 s, the first tests' requests time out after 15 s each (the
worker is restarted), the next request gets only what is left of the budget and is cut, and every
later test is reported as timed out without running. ``grader grade`` (local and Docker) and ``grader batch``
must each deliver their report within budget + margin; the Gradescope zip is checked in
tests/test_gradescope_autograder.py with the same submission.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from grader.assignment import DEFAULT_SUBMISSION_BUDGET_S, find_assignment, load_assignment
from grader.errors import AssignmentError

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S, REQUEST_S = 40.0, 15.0

SLEEPY = '''

# --- a hostile submission: every op sleeps 30 s ---
import functools as _functools
import time as _time


def _sleepy(method):
    @_functools.wraps(method)
    def slow(*args, **kwargs):
        _time.sleep(30)
        return method(*args, **kwargs)
    return slow


for _name in ("__add__", "__radd__", "__mul__", "__rmul__", "__matmul__", "relu", "sum", "backward"):
    setattr(Tensor, _name, _sleepy(getattr(Tensor, _name)))
'''


def sleepy_source() -> str:
    """The reference with every op sleeping 30 s (correct, but hopeless against any time limit)."""
    return (ROOT / "reference" / "autograd.py").read_text(encoding="utf-8") + SLEEPY


def short_budget_yaml(budget_s: float = BUDGET_S, request_s: float = REQUEST_S,
                      reference: str | None = None) -> str:
    """autograd-lab's assignment.yaml with a short budget (and the reference at ``reference``)."""
    config = yaml.safe_load((find_assignment("autograd-lab").root / "assignment.yaml").read_text(encoding="utf-8"))
    config["timeouts"].update(submission_s=budget_s, request_s=request_s)
    if reference is not None:
        config["reference"] = reference
    return yaml.safe_dump(config)


def check_cut_report(report: dict, budget_s: float = BUDGET_S) -> None:
    """Every test is in the report; none passed; the cut ones say so, and the report lists them."""
    assignment = find_assignment("autograd-lab")
    assert report["max_score"] == assignment.max_score and report["score"] == 0
    tests = report["tests"]
    assert {t["status"] for t in tests} == {"timeout"}, {t["name"]: t["status"] for t in tests}
    ordinary = [t for t in tests if t["output"].startswith(f"no answer within {REQUEST_S:g} s")]
    in_flight = [t for t in tests if t["output"].startswith("the submission's time budget ran out while running")]
    not_run = [t for t in tests if t["output"].startswith("not run: the time budget")]
    assert ordinary and tests[:len(ordinary)] == ordinary          # ordinary timeouts first, the worker restarted
    assert len(in_flight) <= 1 and len(ordinary) + len(in_flight) + len(not_run) == len(tests)
    for t in in_flight:                                            # got only what was left, less than a request
        left = float(t["output"].split("(the last ")[1].split(" s of it)")[0])
        assert left < REQUEST_S, t["output"]
    assert all("timeouts.submission_s" in t["output"] for t in in_flight + not_run)
    note = next(n for n in report["submission"]["notes"] if n.startswith("time budget:"))
    assert f"{budget_s:g} s" in note and f"{len(in_flight) + len(not_run)} test(s) were cut" in note


@pytest.fixture
def short_assignment(tmp_path: Path) -> Path:
    folder = tmp_path / "assignment"
    shutil.copytree(find_assignment("autograd-lab").root, folder)
    (folder / "assignment.yaml").write_text(short_budget_yaml(reference=str(ROOT / "reference")), encoding="utf-8")
    return folder


@pytest.fixture
def sleepy(tmp_path: Path) -> Path:
    folder = tmp_path / "sleepy"
    folder.mkdir()
    (folder / "autograd.py").write_text(sleepy_source(), encoding="utf-8")
    return folder


def _grader(*args: str, timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)
    return done, time.monotonic() - start


def test_the_budget_is_validated_and_defaults_far_above_a_correct_grade(tmp_path: Path) -> None:
    assignment = find_assignment("autograd-lab")
    assert assignment.config.timeouts.submission_s == DEFAULT_SUBMISSION_BUDGET_S == 420
    # within Gradescope's default 10 minutes, margin included
    assert assignment.config.timeouts.submission_s + assignment.config.timeouts.margin_s <= 600
    bad = yaml.safe_load(short_budget_yaml())
    bad["timeouts"]["submission_s"] = -1
    (tmp_path / "assignment.yaml").write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(AssignmentError, match="timeouts.submission_s"):
        load_assignment(tmp_path)


@pytest.mark.parametrize("backend", ["local", "docker"])
def test_grade_reports_within_budget_plus_margin(short_assignment: Path, sleepy: Path, tmp_path: Path,
                                                 backend: str, request: pytest.FixtureRequest) -> None:
    if backend == "docker":
        request.getfixturevalue("docker_required")
    margin = load_assignment(short_assignment).config.timeouts.margin_s
    out = tmp_path / "report.json"
    done, seconds = _grader("grade", str(sleepy), f"--assignment={short_assignment}", f"--backend={backend}",
                            f"--output={out}", "--quiet", timeout=BUDGET_S + 10 * margin)
    print(f"grader grade --backend {backend}: report after {seconds:.1f} s (budget {BUDGET_S:g} + margin {margin:g})")
    assert done.returncode == 1, done.stderr[-3000:]
    assert seconds <= BUDGET_S + margin
    check_cut_report(json.loads(out.read_text(encoding="utf-8")))


def test_batch_reports_within_budget_plus_margin(short_assignment: Path, sleepy: Path, tmp_path: Path) -> None:
    margin = load_assignment(short_assignment).config.timeouts.margin_s
    class_dir = tmp_path / "class"
    (class_dir / "alice").mkdir(parents=True)
    shutil.copyfile(sleepy / "autograd.py", class_dir / "alice" / "autograd.py")
    outdir = tmp_path / "out"
    done, seconds = _grader("batch", str(class_dir), f"--assignment={short_assignment}", "--backend=local",
                            f"--output={outdir}", timeout=BUDGET_S + 10 * margin)
    print(f"grader batch: done after {seconds:.1f} s (budget {BUDGET_S:g} + margin {margin:g})")
    reports = list((outdir / "reports").glob("*.json"))
    assert len(reports) == 1, (done.stdout[-2000:], done.stderr[-2000:])
    assert seconds <= BUDGET_S + margin + 10      # + the batch's own start and summary
    check_cut_report(json.loads(reports[0].read_text(encoding="utf-8")))
