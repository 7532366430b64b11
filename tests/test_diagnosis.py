"""Diagnosis before detail: a failure is traced to the op whose local backward is wrong (or to the
graph pass), shrunk to a short reproducer, and failures with one cause are grouped.

The engine's tests run real variants of the reference in-process (they are our own code) against
real torch; the catalogue test at the end grades every buggy variant through the local sandbox.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from grader.grading.executors import TorchExecutor, trusted_executor
from grader.programs.blame import run_checks, trace
from grader.programs.diagnose import diagnose
from grader.programs.diagnosis import Diagnosis, group_sentence
from grader.programs.program import Program
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
