"""Blame the op: re-run each op of a failing Program on its own and find the one whose backward is wrong.

A *local check* is a tiny Program: leaves holding the op's inputs as torch saw them, the op, then
``(out * G).sum().backward()`` with ``G`` torch's upstream gradient at that node. Every check of a
Program goes to the submission's sandbox in one request (evidence only); the host judges each: the
operands' grads against torch's vector-Jacobian product of that op alone, with the upstream gradient
the submission's ``out`` actually received (so a wrong harness op cannot smear the verdict).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from grader.programs.interpreter import RunResult, TensorState, run_program
from grader.programs.ops import BINARY_OPS, UNARY_OPS
from grader.programs.program import Program
from grader.programs.torch_oracle import TorchAdapter

RTOL, ATOL = 1e-6, 1e-8
MAX_REQUESTS = 4   # sandbox requests one batch of checks may take (a check that raises costs one more)

Runner = Callable[[Program], RunResult]   # runs a Program on the submission (in its sandbox)


@dataclass
class Operand:
    """One input of an op as torch saw it: a tensor (by name), a Python number, or an ndarray constant."""

    kind: str                     # tensor | number | array
    value: Any
    name: str = ""
    requires_grad: bool = False


@dataclass
class OpCall:
    """An op of the Program with its inputs' values and torch's upstream gradient at its result."""

    fn: str
    operands: list[Operand]
    upstream: np.ndarray
    out: str = ""
    shared: bool = False          # both operands are the same tensor (x * x)

    @property
    def is_binary(self) -> bool:
        return self.fn in BINARY_OPS

    def out_shape(self) -> tuple[int, ...]:
        return tuple(self.upstream.shape)


@dataclass
class Verdict:
    """The host's judgement of one local check."""

    ok: bool
    operand: str | None = None    # left | right | input | both | forward | raises
    detail: str = ""
    inconclusive: bool = False
    expected: np.ndarray | None = None
    got: np.ndarray | None = None
    failed_index: int | None = None   # which operand (0, 1) is wrong
    modifies_input: bool = False      # the op wrote into an operand's data
    read_only: bool = False           # the operand's grad is a read-only array


# ---- tracing the Program on torch: each op's inputs, and every tensor's grad after the first backward ----

@dataclass
class Trace:
    """torch's view of a Program: each top-level op as an ``OpCall``, keyed by its pre-order step index."""

    calls: dict[int, OpCall] = field(default_factory=dict)
    in_backward: list[int] = field(default_factory=list)   # ops on the first backward's path, last op first


def trace(program: Program) -> Trace:
    """Run an instrumented copy of the Program on torch: inputs before each op, grads after the first backward."""
    steps: list[dict[str, Any]] = []
    names: list[str] = []
    ops: list[tuple[int, dict[str, Any]]] = []
    flat = 0
    seen_backward = False
    for step in program.steps:
        if step["op"] in ("binary", "unary") and (step["op"] == "binary" or UNARY_OPS[step["fn"]].in_graph):
            steps.append({"op": "snapshot", "label": f"__in{flat}", "tensors": _operand_refs(step)})
            ops.append((flat, step))
        steps.append(step)
        if step["op"] in ("binary", "unary") and step.get("out"):
            steps.append({"op": "snapshot", "label": f"__out{flat}", "tensors": [step["out"]]})
        if step.get("out") and step["op"] in ("tensor", "binary", "unary"):
            names.append(step["out"])
        if step["op"] == "backward" and not step.get("expect_error") and not seen_backward:
            steps.append({"op": "snapshot", "label": "__grads", "tensors": list(names)})
            seen_backward = True
        flat += 1 + (len(Program("", steps=step["body"]).flat_steps()) if step["op"] == "no_grad" else 0)
    result = run_program(TorchAdapter(), steps, program.arrays)
    out = Trace()
    grads = result.snapshots.get("__grads", {})
    for index, step in ops:
        if f"__out{index}" not in result.snapshots:
            break  # torch stopped before this op
        state = result.snapshots[f"__out{index}"][step["out"]]
        g = grads.get(step["out"])
        on_path = g is not None and g.grad is not None
        upstream = g.grad if on_path else _default_upstream(np.shape(state.data))
        out.calls[index] = _call(program, step, result.snapshots[f"__in{index}"], upstream)
        if on_path:
            out.in_backward.insert(0, index)
    return out


def _default_upstream(shape: tuple[int, ...]) -> np.ndarray:
    """For an op off the first backward's path: a fixed gradient that is neither 0 nor 1."""
    return np.resize(np.array([2.0, -1.0, 3.0, -2.0]), int(np.prod(shape)) if shape else 1).reshape(shape)


def _operand_refs(step: dict[str, Any]) -> list[str]:
    if step["op"] == "unary":
        return [step["a"]]
    return list(dict.fromkeys(step[k]["ref"] for k in ("a", "b") if "ref" in step[k]))


def _call(program: Program, step: dict[str, Any], inputs: dict[str, TensorState], upstream: np.ndarray) -> OpCall:
    def operand(ref: Any) -> Operand:
        if isinstance(ref, str):
            ref = {"ref": ref}
        if "ref" in ref:
            st = inputs[ref["ref"]]
            return Operand("tensor", st.data, ref["ref"], bool(st.requires_grad))
        if "number" in ref:
            return Operand("number", ref["number"])
        return Operand("array", np.asarray(program.arrays[ref["array"]], dtype=np.float64))

    if step["op"] == "unary":
        return OpCall(step["fn"], [operand(step["a"])], upstream, step["out"])
    a, b = operand(step["a"]), operand(step["b"])
    shared = a.kind == b.kind == "tensor" and a.name == b.name
    return OpCall(step["fn"], [a, b], upstream, step["out"], shared)


# ---- local checks: one Program holding many, run in one request ----

@dataclass
class CheckProgram:
    """Several local checks in one Program; ``spans[k]`` are check k's step indices (pre-order)."""

    program: Program
    spans: list[range] = field(default_factory=list)
    leaves: list[list[str | None]] = field(default_factory=list)   # per check: leaf name per operand
    outs: list[str] = field(default_factory=list)


def build_checks(calls: Sequence[OpCall], title: str = "local checks") -> CheckProgram:
    p = Program(title, seed=0)
    cp = CheckProgram(p)
    for k, call in enumerate(calls):
        start = len(p.flat_steps())
        handles: list[Any] = []
        leaf_names: list[str | None] = []
        for j, opnd in enumerate(call.operands):
            if opnd.kind == "tensor":
                if call.shared and j == 1:
                    handles.append(handles[0])
                    leaf_names.append(leaf_names[0])
                    continue
                name = f"k{k}_{j}"
                value = np.asarray(opnd.value, dtype=np.float64).tolist()  # as the reproducer writes it
                handles.append(p.tensor(name, value, requires_grad=opnd.requires_grad))
                leaf_names.append(name)
            elif opnd.kind == "number":
                handles.append(opnd.value)
                leaf_names.append(None)
            else:
                handles.append(p.array(np.asarray(opnd.value)))
                leaf_names.append(None)
        if call.is_binary:
            out = p._binary(call.fn, handles[0], handles[1])
        else:
            out = p._unary(call.fn, handles[0])
        if any(o.kind == "tensor" and o.requires_grad for o in call.operands):
            _backward_through(p, k, call, out)
        p.snapshot(f"check{k}", [*_unique_leaves(handles, leaf_names), out])
        for j, (h, n) in enumerate(zip(handles, leaf_names)):
            if n is not None and call.operands[j].requires_grad and not (call.shared and j == 1):
                p.fact(f"check{k}_writable{j}", "grad_writable", h)
        cp.spans.append(range(start, len(p.flat_steps())))
        cp.leaves.append(leaf_names)
        cp.outs.append(out.name)
    return cp


def _backward_through(p: Program, k: int, call: OpCall, out: Any) -> None:
    """``(out * G).sum().backward()``: ``out`` receives the upstream gradient ``G`` torch had there.

    G is a constant Tensor (no number, no ndarray), so that a bug in how an op wraps numbers or arrays
    cannot look like this op's."""
    g = call.upstream
    weight = p.tensor(f"k{k}_g", np.asarray(g, dtype=np.float64).tolist())
    p.backward(out * weight if g.ndim == 0 else (out * weight).sum())


def _unique_leaves(handles: list[Any], names: list[str | None]) -> list[Any]:
    return list({n: h for h, n in zip(handles, names) if n is not None}.values())


def run_checks(calls: Sequence[OpCall], runner: Runner) -> list[Verdict]:
    """Every check judged; a check whose run raises is judged 'raises', and the rest are run again."""
    verdicts: dict[int, Verdict] = {}
    pending = list(range(len(calls)))
    for _ in range(MAX_REQUESTS):
        if not pending:
            break
        cp = build_checks([calls[k] for k in pending])
        got = runner(cp.program)
        failed_at = None
        if got.error:
            step = int(got.error.get("step") or 0)
            failed_at = next((j for j, span in enumerate(cp.spans) if step in span), len(pending) - 1)
        for j, k in enumerate(pending):
            if failed_at is not None and j > failed_at:
                break
            if failed_at == j:
                err = got.error or {}
                flat = cp.program.flat_steps()
                where = flat[step]["op"] if 0 <= step < len(flat) else ""
                text = f"{err.get('type')}: {err.get('message')}"
                if where == "backward":
                    verdicts[k] = Verdict(False, "backward-raises", text)
                elif where in ("binary", "unary") and flat[step].get("out") == cp.outs[j]:
                    verdicts[k] = Verdict(False, "raises", text)
                else:  # the harness around the op raised: this check says nothing about the op
                    verdicts[k] = Verdict(True, inconclusive=True, detail=text)
            else:
                verdicts[k] = judge(calls[k], got.snapshots.get(f"check{j}", {}), cp.leaves[j], cp.outs[j],
                                    {int(key.rsplit("writable", 1)[1]): v for key, v in got.facts.items()
                                     if key.startswith(f"check{j}_writable")})
        pending = [k for k in pending if k not in verdicts]
    for k in pending:
        verdicts[k] = Verdict(True, inconclusive=True)
    return [verdicts[k] for k in range(len(calls))]


# ---- judging one check on the host ----

def local_vjp(call: OpCall, upstream: np.ndarray) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """torch's forward value of the op alone and the grads of its tensor operands for ``upstream``."""
    leaves: dict[str, torch.Tensor] = {}
    args: list[Any] = []
    for j, opnd in enumerate(call.operands):
        if opnd.kind == "tensor":
            key = opnd.name if call.shared else f"{j}"
            if key not in leaves:
                leaves[key] = torch.tensor(np.asarray(opnd.value, dtype=np.float64), requires_grad=True)
            args.append(leaves[key])
        elif opnd.kind == "number":
            args.append(opnd.value)
        else:
            args.append(torch.tensor(np.asarray(opnd.value, dtype=np.float64)))
    out = BINARY_OPS[call.fn].apply(*args) if call.is_binary else getattr(args[0], call.fn)()
    grads = torch.autograd.grad(out, list(leaves.values()), torch.tensor(upstream, dtype=torch.float64),
                                allow_unused=True)
    by_key = dict(zip(leaves, grads))
    per_operand: list[np.ndarray | None] = []
    for j, opnd in enumerate(call.operands):
        key = opnd.name if call.shared else f"{j}"
        g = by_key.get(key) if opnd.kind == "tensor" else None
        per_operand.append(None if g is None else g.numpy().copy())
    return out.detach().numpy().copy(), per_operand


def judge(call: OpCall, states: dict[str, TensorState], leaves: list[str | None], out_name: str,
          writable: dict[int, Any] | None = None) -> Verdict:
    out_state = states.get(out_name)
    if out_state is None:
        return Verdict(True, inconclusive=True)
    upstream = call.upstream
    received = out_state.grad
    if received is not None and received.shape == upstream.shape and np.isfinite(received).all():
        upstream = received  # what the submission's out actually got from the harness
    exp_out, exp_grads = local_vjp(call, upstream)
    for j, (opnd, name) in enumerate(zip(call.operands, leaves)):
        st = states.get(name) if name is not None else None
        before = np.asarray(opnd.value, dtype=np.float64)
        if st is not None and st.data is not None and (st.data.shape != before.shape or
                                                       not np.array_equal(st.data, before)):
            return Verdict(False, "forward", f"it writes into its {_side(call, j)} operand's data",
                           expected=before, got=st.data, failed_index=j, modifies_input=True)
    got_out = out_state.data
    if got_out is None or got_out.shape != exp_out.shape or not np.allclose(got_out, exp_out, RTOL, ATOL):
        return Verdict(False, "forward", _detail("the result", exp_out, got_out), expected=exp_out, got=got_out)
    for j, (opnd, name) in enumerate(zip(call.operands, leaves)):
        if name is None or not opnd.requires_grad or exp_grads[j] is None or (call.shared and j == 1):
            continue
        st = states.get(name)
        got = st.grad if st is not None else None
        exp = exp_grads[j]
        if got is None or got.shape != exp.shape or not np.allclose(got, exp, RTOL, ATOL):
            side = _side(call, j)
            what = "the gradient" if call.shared else f"the {side} operand's gradient"
            problem = (st.grad_problem if st is not None and st.grad_problem else None)
            return Verdict(False, side, problem or _detail(what, exp, got), expected=exp, got=got, failed_index=j)
    for j, ok in (writable or {}).items():
        if ok is not True:
            return Verdict(False, _side(call, j), "the gradient it stores is a read-only array (a broadcast view?)",
                           failed_index=j, read_only=True)
    return Verdict(True)


def _side(call: OpCall, j: int) -> str:
    if call.shared:
        return "both"
    if not call.is_binary:
        return "input"
    return "left" if j == 0 else "right"


def _detail(what: str, exp: np.ndarray, got: np.ndarray | None) -> str:
    if got is None:
        return f"{what}: expected an array of shape {tuple(exp.shape)}, got None"
    if got.shape != exp.shape:
        return f"{what} has shape {tuple(got.shape)}, expected {tuple(exp.shape)}"
    err = float(np.max(np.abs(got - exp))) if exp.size else 0.0
    return f"{what} differs from torch's (max abs error {err:.3g})"


def describe_case(call: OpCall, operand: str | None) -> str | None:
    """The situation a local bug shows in: a broadcast operand, a number on the left, ..."""
    out_shape = call.out_shape()
    words: list[str] = []
    if call.shared:
        words.append("the same tensor is on both sides")
    for j, opnd in enumerate(call.operands):
        side = "left" if j == 0 else "right"
        if operand not in ("forward", "raises", "backward-raises"):
            break  # a constant operand matters to how an op wraps it, not to its backward rule
        if opnd.kind == "number":
            words.append(f"a number on the {side}")
        elif opnd.kind == "array":
            words.append(f"an ndarray on the {side}")
    target = {"left": 0, "right": 1, "input": 0}.get(operand or "")
    for j in [target] if target is not None else range(len(call.operands)):
        if j >= len(call.operands):
            continue
        opnd = call.operands[j]
        shape = tuple(np.shape(opnd.value))
        if opnd.kind == "tensor" and call.fn in ("add", "mul") and shape != out_shape:
            words.insert(0, f"a broadcast {shape} operand ({'left' if j == 0 else 'right'}) "
                            f"against {out_shape}")
    if call.fn == "relu" and np.any(np.asarray(call.operands[0].value) == 0):
        words.append("inputs are exactly 0")
    if out_shape == ():
        words.append("the result is 0-d")
    return ", ".join(words) or None
