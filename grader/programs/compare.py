"""Compares a submission's evidence with torch's and explains the first difference.

Shared by every suite: ``assert_same(program, expected, got)`` raises ``Mismatch`` whose text
names the tensor and the op, gives expected vs got (shape, dtype, max abs and rel error, the
worst element) and ends with a reproducer that fails the same way.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from grader.programs.interpreter import RunResult, TensorState
from grader.programs.ops import FACTS
from grader.programs.program import Program
from grader.programs.render import LITERAL_LIMIT, Renderer, StopAt, array_literal, fact_check, render_program

RTOL = 1e-6
ATOL = 1e-8
MAX_LISTED = 4


DIFFERS_FROM_TORCH = "differs from torch.autograd"   # a value's headline: what the diagnosis explains


class Mismatch(AssertionError):
    """A submission's evidence differs from torch's; ``str()`` is the student's feedback."""


@dataclass
class Difference:
    """One observed difference, with what the reproducer must assert to show it."""

    headline: str
    details: list[str] = field(default_factory=list)
    stop: StopAt | None = None
    order: tuple[int, int] = (0, 0)
    when: int = 0   # position in the Program of the observation that showed it: earliest first
    subject: tuple[str, str] = ("", "")   # (what differs, which tensor or label): read by the diagnosis


def describe_step(program: Program, name: str) -> str:
    """``h = t1.relu()``: the line of the reproducer that made ``name``."""
    step = program.producer(name)
    return Renderer(program).step_line(step)[0] if step else name


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _shape(arr: np.ndarray | None) -> str:
    return "None" if arr is None else str(tuple(arr.shape))


def _value_details(exp: np.ndarray, got: np.ndarray, rtol: float, atol: float) -> tuple[list[str], tuple[int, ...]]:
    err = np.abs(got - exp)
    excess = err - (atol + rtol * np.abs(exp))
    excess = np.where(np.isnan(got), np.inf, excess)
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), exp.shape)) if exp.ndim else ()
    rel = err / np.maximum(np.abs(exp), atol)
    bad = int(np.count_nonzero(~np.isclose(got, exp, rtol=rtol, atol=atol)))
    where = f" at {list(worst)}" if exp.ndim else ""
    return [
        f"max abs error {_fmt(float(np.nanmax(err)) if np.isfinite(err).any() else float('nan'))}, "
        f"max rel error {_fmt(float(np.nanmax(rel)) if np.isfinite(rel).any() else float('nan'))}; "
        f"{bad} of {exp.size} elements differ",
        f"worst element{where}: expected {_fmt(float(exp[worst]))}, got {_fmt(float(got[worst]))}",
    ], worst


def _shape_hint(kind: str, exp: np.ndarray, got: np.ndarray) -> list[str]:
    """Why a shape may be wrong: a broadcast not summed back, or a transposed gradient."""
    if kind != "grad":
        return []
    try:
        broadcast = np.broadcast_shapes(exp.shape, got.shape) == got.shape and got.size > exp.size
    except ValueError:
        broadcast = False
    if broadcast:
        return ["the gradient of a broadcast operand must be summed back to that operand's shape"]
    if got.shape == exp.shape[::-1]:
        return ["it looks transposed: check the order and the transposes in the backward of @"]
    return ["a tensor's grad always has the tensor's own shape"]


def _shape_check(expr: str, exp: np.ndarray) -> list[str]:
    return [f"got = np.asarray({expr})",
            f"assert got.shape == {tuple(exp.shape)!r}, f'{expr} has shape {{got.shape}}, expected {tuple(exp.shape)!r}'"]


def _array_check(expr: str, exp: np.ndarray, worst: tuple[int, ...], rtol: float, atol: float) -> list[str]:
    lines = [f"got = np.asarray({expr})",
             f"assert got.shape == {tuple(exp.shape)!r}, f'{expr} has shape {{got.shape}}, expected {tuple(exp.shape)!r}'"]
    if exp.size <= LITERAL_LIMIT:
        lines += [f"expected = {array_literal(exp)}  # computed by torch.autograd",
                  f"np.testing.assert_allclose(got, expected, rtol={rtol}, atol={atol}, err_msg='{expr}')"]
    else:
        idx = list(worst)
        lines += [f"expected = {float(exp[worst])!r}  # torch.autograd's value of {expr}{idx}",
                  f"assert np.isclose(got{idx}, expected, rtol={rtol}, atol={atol}), "
                  f"f'{expr}{idx} = {{got{idx}}}, expected {{expected}}'"]
    return lines


def _order(kind: str, pos: int) -> tuple[int, int]:
    """Where a difference in a tensor's data or grad sorts among the others."""
    return (2, pos) if kind == "data" else (4, -pos)


class Comparer:
    """Walks expected evidence in program order and collects differences from ``got``."""

    def __init__(self, program: Program, expected: RunResult, got: RunResult, rtol: float, atol: float) -> None:
        self.p, self.exp, self.got = program, expected, got
        self.rtol, self.atol = rtol, atol
        self.order = {s.get("out"): i for i, s in enumerate(program.flat_steps()) if s.get("out")}
        self.diffs: list[Difference] = []

    def run(self) -> list[Difference]:
        positions = {label: i for i, s in enumerate(self.p.flat_steps())
                     for label in (s.get("label"), s.get("expect_error")) if label}
        if self.got.error and self.got.error != self.exp.error:
            self._error()
            self.diffs[-1].when = int(self.got.error.get("step") or 0)
        for label, states in self.exp.snapshots.items():
            with self._at(positions.get(label, 0)):
                for name, st in states.items():
                    self._tensor(label, name, st, self.got.snapshots.get(label, {}).get(name))
        for label, value in self.exp.caught.items():
            with self._at(positions.get(label, 0)):
                self._caught(label, value, self.got.caught.get(label))
        for label, value in self.exp.facts.items():
            with self._at(positions.get(label, 0)):
                self._fact(label, value, self.got.facts.get(label))
        for key, ok in self.got.inputs_unchanged.items():
            if not ok and self.exp.inputs_unchanged.get(key, True):
                self.diffs.append(Difference(
                    f"the array given as {self._array_use(key)} was modified in place",
                    ["Tensor(data) must copy data (the caller keeps its array), and ops must never write "
                     "into their inputs (no `out=self.data`, no `+=` on data)."], order=(9, 0),
                    when=len(self.p.flat_steps()), subject=("input", key)))
        return self.diffs

    @contextlib.contextmanager
    def _at(self, when: int) -> Iterator[None]:
        """Stamp the differences found inside the block with the observation's position."""
        first = len(self.diffs)
        yield
        for diff in self.diffs[first:]:
            diff.when = when

    def _array_use(self, key: str) -> str:
        """Where the Program used array ``key``: a leaf's data or an op's constant operand."""
        for step in self.p.flat_steps():
            if step["op"] == "tensor" and step["value"].get("array") == key:
                return f"data of {step['out']} ({describe_step(self.p, step['out'])})"
            if step["op"] == "binary" and key in (step["a"].get("array"), step["b"].get("array")):
                return f"a constant operand of {describe_step(self.p, step['out'])}"
        return f"input {key}"

    def _error(self) -> None:
        err = self.got.error or {}
        flat = self.p.flat_steps()
        step = flat[err.get("step", 0)] if 0 <= err.get("step", -1) < len(flat) else None
        line = Renderer(self.p).step_line(step)[0] if step and Renderer(self.p).step_line(step) else "?"
        details = [f"while running: {line}"]
        if err.get("traceback"):
            details += ["", *str(err["traceback"]).splitlines()]
        self.diffs.append(Difference(f"{err.get('type')}: {err.get('message')}", details,
                                     StopAt([], index=err.get("step")), order=(-1, 0),
                                     subject=("error", str(err.get("step")))))

    def _tensor(self, label: str, name: str, exp: TensorState, got: TensorState | None) -> None:
        pos = self.order.get(name, 0)
        if got is None:
            if not self.got.error:
                self.diffs.append(Difference(f"no evidence for {name} at '{label}'", order=(8, pos),
                                             subject=("missing", name)))
            return
        stop = lambda lines: StopAt(lines, label=label, before=True)  # noqa: E731
        if got.requires_grad != exp.requires_grad:
            self.diffs.append(Difference(
                f"{name}.requires_grad is {got.requires_grad!r}, expected {exp.requires_grad!r} (at '{label}')",
                [f"{name} = ...: {describe_step(self.p, name)}", _requires_grad_rule(exp.requires_grad)],
                stop([f"assert {name}.requires_grad is {exp.requires_grad!r}, "
                      f"f'{name}.requires_grad is {{{name}.requires_grad!r}}'"]), order=(1, pos),
                subject=("requires_grad", name)))
        if exp.data is None and exp.data_dtype is not None:   # a lean run's leaf: the dtype of its data only
            self._dtype_only(name, "data", exp.data_dtype, got.data_dtype, got.data_problem, pos, stop)
        else:
            self._array(label, name, "data", exp.data, got.data, got.data_dtype, got.data_problem, pos, stop)
        if exp.grad_is_none != got.grad_is_none:
            want = "None" if exp.grad_is_none else "an array"
            details = [f"{name} = ...: {describe_step(self.p, name)}",
                       "tensors that do not require grad keep grad None; every tensor in the graph that "
                       "requires grad (intermediates too) gets a grad from backward()"]
            self.diffs.append(Difference(f"{name}.grad is {'None' if got.grad_is_none else 'set'}, expected {want} "
                                         f"(at '{label}')",
                                         details, stop([f"assert ({name}.grad is None) is {exp.grad_is_none}, "
                                                        f"f'{name}.grad is {{{name}.grad!r}}'"]), order=(3, -pos),
                                         subject=("grad_none" if exp.grad_is_none else "grad_missing", name)))
        elif not exp.grad_is_none:
            self._array(label, name, "grad", exp.grad, got.grad, got.grad_dtype, got.grad_problem, pos, stop)

    def _dtype_only(self, name: str, kind: str, exp_dtype: str, got_dtype: str | None, problem: str | None,
                    pos: int, stop: Any) -> None:
        """What ``_array`` checks of an array sent without its values: that it is one, of its dtype."""
        if problem or got_dtype is None:
            self._not_an_array(name, kind, problem, self._where(name, kind), pos, stop)
        elif got_dtype != exp_dtype:
            self._wrong_dtype(name, kind, got_dtype, exp_dtype, self._where(name, kind), pos, stop)

    def _not_an_array(self, name: str, kind: str, problem: str | None, where: list[str], pos: int,
                      stop: Any) -> None:
        expr = f"{name}.{kind}"
        self.diffs.append(Difference(f"{expr} is {problem or 'missing'}", where,
                                     stop([f"assert isinstance({expr}, np.ndarray), f'{expr} is {{type({expr})}}'"]),
                                     order=_order(kind, pos), subject=(kind, name)))

    def _wrong_dtype(self, name: str, kind: str, got_dtype: str | None, exp_dtype: str, where: list[str], pos: int,
                     stop: Any) -> None:
        expr = f"{name}.{kind}"
        self.diffs.append(Difference(f"{expr} has dtype {got_dtype}, expected {exp_dtype}", where,
                                     stop([f"assert np.asarray({expr}).dtype == np.{exp_dtype}, "
                                           f"f'{expr} has dtype {{np.asarray({expr}).dtype}}'"]),
                                     order=_order(kind, pos), subject=(kind + "_dtype", name)))

    def _array(self, label: str, name: str, kind: str, exp: np.ndarray | None, got: np.ndarray | None,
               got_dtype: str | None, problem: str | None, pos: int, stop: Any) -> None:
        if exp is None:
            return
        expr, order = f"{name}.{kind}", _order(kind, pos)
        if not problem and got is not None and got.shape == exp.shape and got_dtype == "float64" \
                and np.allclose(got, exp, rtol=self.rtol, atol=self.atol, equal_nan=False):
            return                    # the common case: no difference, and no explanation to build
        where = self._where(name, kind)
        if problem or got is None:
            self._not_an_array(name, kind, problem, where, pos, stop)
            return
        if got.shape != exp.shape:
            self.diffs.append(Difference(
                f"{expr} has shape {_shape(got)}, expected {_shape(exp)}", where + _shape_hint(kind, exp, got),
                stop(_shape_check(expr, exp)), order=order, subject=(kind, name)))
            return
        if got_dtype != "float64":
            self._wrong_dtype(name, kind, got_dtype, "float64", where, pos, stop)
            return
        if not np.allclose(got, exp, rtol=self.rtol, atol=self.atol, equal_nan=False):
            details, worst = _value_details(exp, got, self.rtol, self.atol)
            self.diffs.append(Difference(f"{expr} {DIFFERS_FROM_TORCH} (at '{label}')",
                                         where + [f"shape {_shape(exp)} float64 in both"] + details,
                                         stop(_array_check(expr, exp, worst, self.rtol, self.atol)), order=order,
                                         subject=(kind, name)))

    def _where(self, name: str, kind: str) -> list[str]:
        lines = [f"{name} was made by: {describe_step(self.p, name)}"]
        if kind == "grad":
            users = [Renderer(self.p).step_line(s)[0] for s in self.p.consumers(name)]
            if users:
                lines.append(f"{name}.grad comes from the backward of: " + "; ".join(users[:MAX_LISTED]))
        return lines

    def _caught(self, label: str, exp: dict[str, Any], got: dict[str, Any] | None) -> None:
        if got is None or (got["raised"] and got["runtime_error"]) == (exp["raised"] and exp["runtime_error"]):
            return
        what = "nothing" if not got["raised"] else f"{got['type']}: {got['message']}"
        self.diffs.append(Difference(f"{label}: expected a RuntimeError, got {what}",
                                     ["the contract asks for RuntimeError (NotImplementedError does not count)"],
                                     StopAt([], label=label), order=(5, 0),
                                     subject=("caught", label)))

    def _fact(self, label: str, exp: Any, got: Any) -> None:
        if got == exp:
            return
        step = next(s for s in self.p.flat_steps() if s["op"] == "fact" and s["label"] == label)
        headline = (f"{label}: {got} share one array" if step["kind"] == "grads_distinct" and got
                    else f"{label}: expected {exp!r}, got {got!r}")
        self.diffs.append(Difference(headline,
                                     [FACTS[step["kind"]].rule],
                                     StopAt(fact_check(step, exp), label=label, before=True), order=(6, 0),
                                     subject=("fact:" + step["kind"], label)))




def _requires_grad_rule(expected: Any) -> str:
    return ("a result requires grad iff any input does and no no_grad() block is active"
            if isinstance(expected, bool) else "")


def find_differences(program: Program, expected: RunResult, got: RunResult,
                     rtol: float = RTOL, atol: float = ATOL) -> list[Difference]:
    diffs = Comparer(program, expected, got, rtol, atol).run()
    return sorted(diffs, key=lambda d: (d.when, d.order))


def explain(program: Program, diffs: list[Difference]) -> str:
    """The feedback text: the first difference in full, the others listed, then the reproducer."""
    first = diffs[0]
    lines = [first.headline, *[f"  {d}" for d in first.details if d]]
    if len(diffs) > 1:
        others = [d.headline for d in diffs[1:1 + MAX_LISTED]]
        more = f" (+{len(diffs) - 1 - MAX_LISTED} more)" if len(diffs) - 1 > MAX_LISTED else ""
        lines += ["", "also different:", *[f"  - {h}" for h in others]]
        lines[-1] += more
    lines += ["", f"Reproducer ({program.title}, seed {program.seed}); save as reproduce.py next to your "
              "autograd.py and run it:", "", render_program(program, first.stop)]
    return "\n".join(lines)


def assert_same(program: Program, expected: RunResult, got: RunResult,
                rtol: float = RTOL, atol: float = ATOL) -> None:
    """Raise ``Mismatch`` with the explanation when the evidence differs from torch's."""
    if expected.error:
        raise RuntimeError(f"the reference run of {program.title!r} failed: {expected.error}")
    diffs = find_differences(program, expected, got, rtol, atol)
    if diffs:
        raise Mismatch(explain(program, diffs))
