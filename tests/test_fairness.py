"""Fair by construction: every kind of check a hidden test makes, some public test makes too.

The features of each Program (``grader.programs.features``: each op with each operand kind on
each side, each broadcast shape class, each fact, each expected error, each speed property...)
are recorded per test while the suites grade the reference (``--grader-features``). A hidden
feature without a public counterpart is a trap for a student who passes every public test: the
test fails naming it. The test of the test adds a hidden-only check in a temporary suite.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from grader.assignment import find_assignment, load_assignment
from grader.grading.feature_log import describe_uncovered, read_feature_log, uncovered
from grader.grading.runner import GradeRequest, grade
from grader.programs.features import program_features, speed_features
from grader.programs.program import Program

ROOT = Path(__file__).resolve().parent.parent

HIDDEN_ONLY = '''
import pytest

from grader.testkit import Program

pytestmark = pytest.mark.part("ops")


@pytest.mark.points(1)
def test_sum_of_a_3d_tensor(matches_torch, seed):
    p = Program("sum of a (2,3,4) tensor", seed=seed)
    x = p.randn("x", (2, 3, 4), requires_grad=True)
    s = x.sum().named("s")
    p.backward(s)
    p.snapshot("after backward", [x, s])
    matches_torch(p)
'''

PUBLIC_PLACEHOLDER = '''
import pytest

from grader.testkit import Program

pytestmark = pytest.mark.part("ops")


@pytest.mark.points(1)
def test_add(matches_torch, seed):
    p = Program("x + y", seed=seed)
    x = p.randn("x", (2, 3), requires_grad=True)
    s = (x + x).sum().named("s")
    p.backward(s)
    p.snapshot("after backward", [x, s])
    matches_torch(p)
'''


def _features(p: Program) -> set[tuple[str, str]]:
    header, arrays = p.to_wire()
    return program_features(header["steps"], arrays)


def test_features_name_operand_kinds_sides_and_broadcast_classes() -> None:
    p = Program("features", seed=1)
    x = p.randn("x", (4, 5), requires_grad=True)
    b = p.randn("b", (5,), requires_grad=True)
    c = p.randn("c", (4, 1))
    y = (p.randn_array((4, 5)) * x + b) * c           # ndarray on the left; bias (H,) on the right
    z = (2 * y).sum()
    with p.no_grad():
        with p.no_grad(raise_inside=True):
            _ = x + 1
    p.backward(z)
    p.backward(c, expect_error="no grad, (4, 1)")
    p.fact("grad of x is writable", "grad_writable", x)
    features = _features(p)
    assert {("mul", "ndarray on the left"), ("mul", "tensor on the right"), ("add", "broadcast (H,) on the right"),
            ("mul", "constant tensor on the right"), ("mul", "number on the left"), ("sum", "of a 2-d tensor"),
            ("no_grad", "nested"), ("no_grad", "an exception leaves the block"), ("fact", "grad_writable"),
            ("backward", "expect RuntimeError: does not require grad and more than one element"),
            ("backward", "of a 0-d tensor ()")} <= features
    assert ("mul", "broadcast (N,1) on the right") not in features   # c does not require grad
    assert speed_features(*[p.to_wire()[0]["steps"], p.arrays]) == {("speed", "other")}


def test_every_hidden_feature_has_a_public_counterpart(reference_grading) -> None:
    log = reference_grading.features
    assert {e["visibility"] for e in log.values()} == {"visible", "hidden"}
    assert all(e["features"] for e in log.values()), [n for n, e in log.items() if not e["features"]]
    missing = uncovered(log)
    assert not missing, "hidden checks with no public counterpart:\n" + describe_uncovered(missing)
    speed = {f for e in log.values() if e["visibility"] == "visible" for f in e["features"] if f[0] == "speed"}
    assert {("speed", "matmul"), ("speed", "chain"), ("speed", "diamonds"),
            ("speed", "growth with the chain's length")} <= speed


def test_the_original_trap_would_be_caught(reference_grading) -> None:
    """Without the public test of ndarray operands, ``ndarray * Tensor`` is a hidden-only check again."""
    log = {name: entry for name, entry in reference_grading.features.items()
           if "test_ndarray_operands_on_either_side" not in name}
    missing = uncovered(log)
    assert ("mul", "ndarray on the left") in missing
    assert "mul: ndarray on the left  (hidden only, in hidden/test_graph.py::" in describe_uncovered(missing)


def test_a_hidden_only_check_fails_the_coverage_test_naming_it(reference_grading, tmp_path: Path) -> None:
    """A temporary suite with a hidden check no public test makes (the sum of a 3-d tensor)."""
    folder = tmp_path / "assignment"
    shutil.copytree(find_assignment("autograd-lab").root, folder, ignore=shutil.ignore_patterns("tests"))
    text = (folder / "assignment.yaml").read_text(encoding="utf-8")
    (folder / "assignment.yaml").write_text(text.replace("../../reference", str(ROOT / "reference")), encoding="utf-8")
    for visibility, source in (("public", PUBLIC_PLACEHOLDER), ("hidden", HIDDEN_ONLY)):
        (folder / "tests" / visibility).mkdir(parents=True)
        (folder / "tests" / visibility / "test_extra.py").write_text(source, encoding="utf-8")
    log_path = tmp_path / "features.json"
    report = grade(GradeRequest(load_assignment(folder), ROOT / "reference", backend="local",
                                features_out=log_path)).report
    assert {t.status for t in report.tests} == {"passed"}
    log = {**reference_grading.features, **read_feature_log(log_path)}
    missing = uncovered(log)
    assert missing == {("sum", "of a 3-d tensor"): ["hidden/test_extra.py::test_sum_of_a_3d_tensor"]}
    assert describe_uncovered(missing) == \
        "  sum: of a 3-d tensor  (hidden only, in hidden/test_extra.py::test_sum_of_a_3d_tensor)"
    assert np.isfinite(report.score)
