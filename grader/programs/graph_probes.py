"""Probes of the graph pass: when every op is right on its own, which mechanism of backward() is wrong.

Each probe is a tiny Program that exercises one mechanism with ops that passed their local checks
(products with constant arrays and sums): a tensor used twice at the same depth (accumulation),
a skip connection of unequal lengths (topological order), two backward passes (accumulation across
passes, or the accumulated .grad fed on). The submission runs each in its sandbox; the host
compares with torch. The first probe that fails names the mechanism, and is the shrunk reproducer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from grader.programs.blame import Runner
from grader.programs.diagnosis import needs_of
from grader.programs.compare import find_differences
from grader.programs.interpreter import RunResult, run_program
from grader.programs.program import Program
from grader.programs.render import render_program
from grader.programs.torch_oracle import TorchAdapter


@dataclass(frozen=True)
class Probe:
    mechanism: str
    build: Callable[[], Program]
    needs: str            # what the failing Program must contain for this probe to explain it: reuse | passes


def _consts(p: Program) -> tuple:
    return (p.array(np.array([[2.0, -1.0, 3.0], [1.0, 2.0, -2.0]])),
            p.array(np.array([[-1.0, 3.0, 2.0], [2.0, -2.0, 1.0]])),
            p.array(np.array([[3.0, 2.0, -1.0], [-2.0, 1.0, 2.0]])))


def _x(p: Program):
    return p.tensor("x", [[1.0, -2.0, 3.0], [2.0, 1.0, -1.0]], requires_grad=True)


def accumulation() -> Program:
    p = Program("x is used by two ops: x.grad must be the sum of both contributions")
    A, B, _ = _consts(p)
    x = _x(p)
    z = (x * A + x * B).named("z")
    loss = z.sum().named("loss")
    p.backward(loss)
    p.snapshot("after backward", [x, z])
    return p


def shared_grad_arrays() -> Program:
    p = Program("z = x + y: x.grad and y.grad must be two arrays, so that adding into one leaves the other")
    A, B, _ = _consts(p)
    x = _x(p)
    y = p.tensor("y", [[2.0, 1.0, -1.0], [-3.0, 1.0, 2.0]], requires_grad=True)
    z = (x + y).named("z")
    loss = (z * A + x * B).sum().named("loss")
    p.backward(loss)
    p.snapshot("after backward", [x, y, z])
    p.fact("no two tensors share a grad array", "grads_distinct", x, y, z)
    return p


def topological_order() -> Program:
    p = Program("h reaches z by a long path and a short one: h's backward must wait for both")
    A, B, C = _consts(p)
    x = _x(p)
    h = (x * A).named("h")
    z = ((h * B) * C + h).named("z")
    loss = z.sum().named("loss")
    p.backward(loss)
    p.snapshot("after backward", [x, h])
    return p


def two_passes() -> Program:
    p = Program("backward() twice on one graph: every grad doubles")
    A, B, _ = _consts(p)
    x = _x(p)
    h = (x * A).named("h")
    loss = (h * B).sum().named("loss")
    p.backward(loss)
    p.backward(loss)
    p.snapshot("after two backward passes", [x])
    return p


PROBES: tuple[Probe, ...] = (
    Probe("accumulation", accumulation, "reuse"),
    Probe("shared-grad-arrays", shared_grad_arrays, "reuse"),
    Probe("topological-order", topological_order, "reuse"),
    Probe("second-backward", two_passes, "passes"),
)


def probe(program: Program, runner: Runner) -> tuple[str, str | None]:
    """(mechanism, reproducer) of the first probe relevant to ``program`` that fails."""
    needs = needs_of(program)
    for pr in PROBES:
        if pr.needs not in needs:
            continue
        p = pr.build()
        expected = run_program(TorchAdapter(), p.steps, p.arrays)
        got = runner(p)
        diffs = find_differences(p, expected, got)
        if diffs:
            mechanism = pr.mechanism
            if mechanism == "second-backward" and _grad_of_one_pass(p, expected, got):
                mechanism = "accumulate-across-backward"
            return mechanism, _short(render_program(p, diffs[0].stop))
    return "propagation", None


def requires_grad_program() -> Program:
    p = Program("y = x * c with c a constant: y requires grad because x does")
    x = _x(p)
    c = p.tensor("c", [[2.0, -1.0, 3.0], [1.0, 2.0, -2.0]])
    y = (x * c).named("y")
    p.snapshot("after y = x * c", [y])
    return p


def requires_grad_broken(runner: Runner) -> tuple[bool, str | None]:
    """Does a result fail to require grad when one input does? (then backward() raises for that reason)"""
    p = requires_grad_program()
    diffs = find_differences(p, run_program(TorchAdapter(), p.steps, p.arrays), runner(p))
    return bool(diffs), (_short(render_program(p, diffs[0].stop)) if diffs else None)


def zero_grad_program(via_sgd: bool) -> Program:
    p = Program("after backward(), " + ("opt.zero_grad()" if via_sgd else "x.zero_grad()") + " sets x.grad to None")
    A, _, _ = _consts(p)
    x = _x(p)
    loss = (x * A).sum().named("loss")
    opt = p.sgd([x], lr=0.1) if via_sgd else None
    p.backward(loss)
    if opt is not None:
        opt.zero_grad()
    else:
        p.zero_grad(x)
    p.snapshot("after zero_grad", [x])
    return p


def zero_grad_broken(runner: Runner, via_sgd: bool) -> tuple[bool, str | None]:
    """Does zero_grad (the tensor's, or SGD's) fail to set grads to None?"""
    p = zero_grad_program(via_sgd)
    diffs = find_differences(p, run_program(TorchAdapter(), p.steps, p.arrays), runner(p))
    return bool(diffs), (_short(render_program(p, diffs[0].stop)) if diffs else None)


def _grad_of_one_pass(p: Program, expected: RunResult, got: RunResult) -> bool:
    """After two passes, x.grad equals one pass's gradient: .grad was overwritten, not accumulated."""
    exp = expected.snapshots.get("after two backward passes", {}).get("x")
    mine = got.snapshots.get("after two backward passes", {}).get("x")
    return (exp is not None and mine is not None and mine.grad is not None and exp.grad is not None
            and mine.grad.shape == exp.grad.shape and np.allclose(mine.grad, exp.grad / 2))


def _short(script: str) -> str:
    """Drop the reproducer's comment lines and blank lines: the probe is small already."""
    return "\n".join(line for line in script.splitlines()
                     if line.strip() and not line.startswith("# Save")) + "\n"
