"""Renders a Program as a plain Python script a student can paste next to their ``autograd.py``.

The script builds the same tensors (seeded draws, literals), runs the same steps, and, when a
check is given, stops at the point of the failure with an assertion that fails the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from grader.programs.ops import BINARY_OPS, FACTS
from grader.programs.program import Program

LITERAL_LIMIT = 48  # arrays with more elements are rendered as seeded draws or checked at one element


def array_literal(arr: np.ndarray) -> str:
    """``np.array([...], dtype=...)`` that round-trips exactly (repr of Python floats does)."""
    body = repr(arr.tolist())
    if arr.dtype == np.float64:
        return f"np.array({body})"
    return f"np.array({body}, dtype=np.{arr.dtype})"


class Renderer:
    """Turns steps into source lines; ``check_lines`` are spliced in at a snapshot or error."""

    def __init__(self, program: Program) -> None:
        self.p = program
        self.lines: list[str] = []
        self.index = 0

    def value(self, ref: dict[str, Any]) -> str:
        if "ref" in ref:
            return ref["ref"]
        if "number" in ref:
            return repr(ref["number"])
        key = ref["array"]
        origin = self.p.origins.get(key)
        arr = self.p.arrays[key]
        if origin is not None and origin.kind == "randn":
            scale = "" if origin.scale == 1.0 else f" * {origin.scale!r}"
            text = f"randn({origin.draw}, {tuple(origin.shape)!r}){scale}"
        elif ref.get("as_list"):
            return repr(arr.tolist())
        else:
            text = array_literal(arr)
        return text

    def step_line(self, step: dict[str, Any]) -> list[str]:
        op = step["op"]
        if op == "tensor":
            rg = ", requires_grad=True" if step["requires_grad"] else ""
            return [f"{step['out']} = Tensor({self.value(step['value'])}{rg})"]
        if op == "binary":
            return [f"{step['out']} = {self.value(step['a'])} {BINARY_OPS[step['fn']].symbol} {self.value(step['b'])}"]
        if op == "unary":
            return [f"{step['out']} = {step['a']}.{step['fn']}()"]
        if op == "loop":  # rendered whole by ``render``; this one line names it in messages
            return [f"{step['out']} = {step['init']}; for _ in range({step['times']}): ...; {step['out']} = {step['next']}"]
        if op == "backward":
            if step.get("expect_error"):
                t = step["t"]
                return ["try:", f"    {t}.backward()",
                        "except NotImplementedError as exc:  # a subclass of RuntimeError, but not what is asked",
                        f"    raise AssertionError('{t}.backward() raised NotImplementedError, not RuntimeError') from exc",
                        "except RuntimeError:",
                        "    pass  # expected: the contract asks for a RuntimeError here", "else:",
                        f"    raise AssertionError('{t}.backward() should raise RuntimeError')"]
            return [f"{step['t']}.backward()"]
        if op == "zero_grad":
            return [f"{step['t']}.zero_grad()"]
        if op == "sgd":
            params = ", ".join(step["params"])
            params = f"(p for p in [{params}])" if step.get("generator") else f"[{params}]"
            return [f"{step['out']} = SGD({params}, lr={step['lr']!r})"]
        if op in ("sgd_step", "sgd_zero_grad"):
            return [f"{step['opt']}.{'step' if op == 'sgd_step' else 'zero_grad'}()"]
        if op == "keep":
            return [f"{step['as']} = {step['t']}.data  # the array itself"]
        return []  # snapshot, fact: observations only

    def render(self, steps: list[dict[str, Any]], depth: int, stop: StopAt | None) -> bool:
        """Appends lines; returns True once ``stop`` was reached (nothing after it is rendered)."""
        pad = "    " * depth
        for step in steps:
            here = self.index
            self.index += 1
            if step["op"] == "loop":
                self.lines += [pad + f"{step['out']} = {step['init']}", pad + f"for _ in range({step['times']}):"]
                if self.render(step["body"], depth + 1, stop):
                    return True
                self.lines.append(pad + f"    {step['out']} = {step['next']}")
                continue
            if step["op"] == "no_grad":
                if step.get("raise"):
                    self.lines.append(pad + "try:")
                    pad2 = pad + "    "
                else:
                    pad2 = pad
                self.lines.append(pad2 + "with no_grad():")
                done = self.render(step["body"], depth + (2 if step.get("raise") else 1), stop)
                if done:
                    return True
                if step.get("raise"):
                    self.lines += [pad2 + "    raise ValueError('leaving no_grad() with an exception')",
                                   pad + "except ValueError:", pad + "    pass"]
                continue
            is_stop = stop is not None and stop.matches(here, step)
            if is_stop and stop.before:
                self.lines += [pad + line for line in stop.lines]
                return True
            self.lines += [pad + line for line in self.step_line(step)]
            if is_stop:
                self.lines += [pad + line for line in stop.lines]
                return True
        return False


class StopAt:
    """Where the reproducer stops: at a step index, or at an observation with a label."""

    def __init__(self, lines: list[str], index: int | None = None, label: str | None = None,
                 before: bool = False) -> None:
        self.lines, self.index, self.label, self.before = lines, index, label, before

    def matches(self, index: int, step: dict[str, Any]) -> bool:
        if self.index is not None:
            return index == self.index
        return step.get("label") == self.label or step.get("expect_error") == self.label


def render_program(program: Program, stop: StopAt | None = None) -> str:
    """The whole reproducer script."""
    r = Renderer(program)
    r.render(program.steps, 0, stop)
    head = [
        f"# Reproducer: {program.title} (seed {program.seed})",
        "# Save next to your autograd.py and run: python reproduce.py",
        "import numpy as np",
        "from autograd import Tensor, no_grad, SGD",
        "",
    ]
    if any(o.kind == "randn" for o in program.origins.values()):
        head += ["def randn(k, shape):",
                 f"    return np.random.default_rng(({program.seed}, k)).standard_normal(shape)", ""]
    tail = ["print('no difference found: this program runs as torch.autograd does')"] if stop is None else []
    return "\n".join(head + r.lines + tail) + "\n"


def fact_check(step: dict[str, Any], expected: Any) -> list[str]:
    """Assertion lines showing that a fact differs (fact steps of ``Program.fact``)."""
    ts, kind = step["tensors"], step["kind"]
    pairs = ", ".join(f"({n!r}, {n})" for n in ts)
    lines = [f"_ts = [{pairs}]  # (name, tensor)"] if kind == "grads_distinct" else []
    expr = FACTS[kind].expr.format(*ts, kept=step.get("kept"))
    return lines + [f"assert ({expr}) == {expected!r}, {step['label']!r}"]
