"""What a Program exercises: its features, as ``(subject, detail)`` pairs read off its steps.

``("mul", "ndarray on the left")``, ``("add", "broadcast (H,) on the right")``,
``("fact", "grad_writable")``, ``("backward", "expect RuntimeError: more than one element")``...
Each is one kind of check a test makes. The fairness test of the project collects the features of
every Program the public and the hidden suites run, and fails on a hidden feature that no public
test has: a student who passes the public tests has then met every kind of check.

Features are derived from the steps (with the shapes and ``requires_grad`` the builder's leaves
imply), so a Program rebuilt from the wire has the same ones, and they cannot drift from what the
interpreter runs. ``speed_features`` classifies a timed Program (matmul, chain, diamonds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grader.programs.ops import BINARY_OPS

Feature = tuple[str, str]
Shape = tuple[int, ...] | None

CHAIN_OPS = 1_000          # a timed Program with at least this many ops is a "chain"
DIAMOND_REUSES = 50        # ... with at least this many tensors read by two ops or more, "diamonds"
MATMUL_ELEMENTS = 10_000   # ... with a matmul operand at least this big, "matmul"


@dataclass
class _State:
    """What the walk knows of each tensor: shape, requires_grad, who made it."""

    arrays: dict[str, np.ndarray]
    shape: dict[str, Shape] = field(default_factory=dict)
    grad: dict[str, bool] = field(default_factory=dict)
    parents: dict[str, list[str]] = field(default_factory=dict)
    has_grad: set[str] = field(default_factory=set)
    backwarded: set[str] = field(default_factory=set)
    optimizers: dict[str, list[str]] = field(default_factory=dict)
    uses: dict[str, int] = field(default_factory=dict)     # reads of each name, loops unrolled
    made: dict[str, int] = field(default_factory=dict)     # tensors each name stands for, loops unrolled
    features: set[Feature] = field(default_factory=set)
    no_grad_depth: int = 0
    ops: int = 0              # op count, loops unrolled
    multiplier: int = 1


def program_features(steps: list[dict[str, Any]], arrays: dict[str, np.ndarray]) -> set[Feature]:
    """The features of a Program's steps (see the module's docstring)."""
    state = _State(arrays)
    _walk(state, steps)
    if any(n >= 2 for n in state.uses.values()):
        state.features.add(("graph", "a tensor read by several ops"))
    return state.features


def speed_features(steps: list[dict[str, Any]], arrays: dict[str, np.ndarray]) -> set[Feature]:
    """What a timed Program stresses: ("speed", "matmul" | "chain" | "diamonds" | "other")."""
    state = _State(arrays)
    _walk(state, steps)
    out: set[Feature] = set()
    if state.ops >= CHAIN_OPS:
        out.add(("speed", "chain"))
    reused = sum(made for name, made in state.made.items()
                 if state.parents.get(name) and state.uses.get(name, 0) >= 2 * made)
    if reused >= DIAMOND_REUSES:
        out.add(("speed", "diamonds"))
    if ("speed", "big matmul") in state.features:
        out.add(("speed", "matmul"))
    return out or {("speed", "other")}


def op_count(steps: list[dict[str, Any]], arrays: dict[str, np.ndarray]) -> int:
    """How many ops the Program runs (loops unrolled): a chain's length."""
    state = _State(arrays)
    _walk(state, steps)
    return state.ops


# ---- the walk ----

def _walk(state: _State, steps: list[dict[str, Any]]) -> None:
    for step in steps:
        handler = _HANDLERS.get(step.get("op", ""))
        if handler is None:
            state.features.add(("step", str(step.get("op"))))
        else:
            handler(state, step)


def _tensor(state: _State, step: dict[str, Any]) -> None:
    value, name = step["value"], step["out"]
    if "number" in value:
        number = value["number"]
        state.shape[name] = ()
        origin = f"a Python {type(number).__name__}"
    else:
        arr = state.arrays.get(value["array"])
        state.shape[name] = None if arr is None else tuple(arr.shape)
        kind = "int" if arr is not None and arr.dtype.kind in "iub" else "float"
        origin = f"a list of {kind}s" if value.get("as_list") else f"{'an' if kind == 'int' else 'a'} {kind} ndarray"
    state.features.add(("Tensor(data)", f"from {origin}"))
    state.grad[name] = bool(step.get("requires_grad"))
    state.parents[name] = []
    if state.grad[name]:
        state.features.add(("Tensor(data)", "requires_grad=True"))


def _operand(state: _State, ref: dict[str, Any]) -> tuple[str, Shape, str | None]:
    """(kind, shape, tensor name) of an operand: a tensor, a constant tensor, a number or an ndarray."""
    if "ref" in ref:
        name = ref["ref"]
        state.uses[name] = state.uses.get(name, 0) + state.multiplier
        return ("tensor" if state.grad.get(name) else "constant tensor"), state.shape.get(name), name
    if "array" in ref:
        arr = state.arrays.get(ref["array"])
        if arr is not None and arr.dtype.kind in "iub":
            state.features.add(("ndarray operand", "of an integer dtype"))
        return "ndarray", None if arr is None else tuple(arr.shape), None
    return "number", (), None


def _binary(state: _State, step: dict[str, Any]) -> None:
    fn = step["fn"]
    kind_a, shape_a, name_a = _operand(state, step["a"])
    kind_b, shape_b, name_b = _operand(state, step["b"])
    state.features.add((fn, f"{kind_a} on the left"))
    state.features.add((fn, f"{kind_b} on the right"))
    out = _result_shape(fn, shape_a, shape_b)
    if fn in ("add", "mul") and out is not None:
        broadcast = [(side, kind, shape) for side, kind, shape in (("left", kind_a, shape_a), ("right", kind_b, shape_b))
                     if shape is not None and shape != out]
        for side, kind, shape in broadcast:
            if kind == "tensor":
                state.features.add((fn, f"broadcast {_broadcast_class(shape, out)} on the {side}"))
        if len(broadcast) == 2:
            state.features.add((fn, "both operands broadcast"))
    if fn == "matmul" and shape_a is not None and shape_b is not None:
        if len(shape_a) == 2 and shape_a[0] == 1:
            state.features.add((fn, "(1,K) on the left"))
        if len(shape_b) == 2 and shape_b[1] == 1:
            state.features.add((fn, "(K,1) on the right"))
        if min(int(np.prod(shape_a)), int(np.prod(shape_b))) >= MATMUL_ELEMENTS:
            state.features.add(("speed", "big matmul"))
    _result(state, step["out"], out, [n for n in (name_a, name_b) if n is not None])


def _unary(state: _State, step: dict[str, Any]) -> None:
    fn, name = step["fn"], step["a"]
    state.uses[name] = state.uses.get(name, 0) + state.multiplier
    shape = state.shape.get(name)
    state.features.add((fn, "of a tensor" if state.grad.get(name) else "of a constant tensor"))
    if fn == "sum" and shape is not None:
        state.features.add((fn, f"of a {len(shape)}-d tensor" if shape else "of a 0-d tensor ()"))
    if fn == "detach":
        state.shape[step["out"]], state.grad[step["out"]] = shape, False
        state.parents[step["out"]] = []
        state.ops += state.multiplier
        return
    _result(state, step["out"], () if fn == "sum" else shape, [name])


def _result(state: _State, out: str, shape: Shape, inputs: list[str]) -> None:
    state.shape[out] = shape
    state.grad[out] = state.no_grad_depth == 0 and any(state.grad.get(n) for n in inputs)
    state.parents[out] = inputs
    state.made[out] = state.multiplier
    state.ops += state.multiplier
    if state.no_grad_depth and any(state.grad.get(n) for n in inputs):
        state.features.add(("no_grad", "an op on tensors that require grad"))


def _backward(state: _State, step: dict[str, Any]) -> None:
    name = step["t"]
    shape, grad = state.shape.get(name), state.grad.get(name, False)
    if step.get("expect_error"):
        reasons = ([] if grad else ["does not require grad"]) + \
                  (["more than one element"] if shape is not None and int(np.prod(shape)) > 1 else [])
        state.features.add(("backward", f"expect RuntimeError: {' and '.join(reasons) or 'no reason'}"))
        return
    if shape is not None:
        state.features.add(("backward", "of a 0-d tensor ()" if shape == () else f"of a one-element {len(shape)}-d tensor"))
    if name in state.backwarded:
        state.features.add(("backward", "a second time on the same graph"))
    reached = _ancestors(state, name)
    if reached & state.has_grad:
        state.features.add(("backward", "accumulating into existing grads"))
    state.has_grad |= {n for n in reached if state.grad.get(n)}
    state.backwarded.add(name)


def _ancestors(state: _State, name: str) -> set[str]:
    seen, stack = {name}, [name]
    while stack:
        for parent in state.parents.get(stack.pop(), ()):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def _zero_grad(state: _State, step: dict[str, Any]) -> None:
    state.features.add(("zero_grad", "Tensor.zero_grad()" + (" after backward" if step["t"] in state.has_grad else "")))
    state.has_grad.discard(step["t"])


def _no_grad(state: _State, step: dict[str, Any]) -> None:
    state.features.add(("no_grad", "a block"))
    if state.no_grad_depth:
        state.features.add(("no_grad", "nested"))
    if step.get("raise"):
        state.features.add(("no_grad", "an exception leaves the block"))
    state.no_grad_depth += 1
    try:
        _walk(state, step["body"])
    finally:
        state.no_grad_depth -= 1


def _loop(state: _State, step: dict[str, Any]) -> None:
    """A ``repeat`` loop: its body walked once, its ops counted ``times`` times."""
    state.features.add(("loop", "repeat"))
    carry, times = step["out"], int(step.get("times", 1))
    state.shape[carry], state.grad[carry] = state.shape.get(step["init"]), state.grad.get(step["init"], False)
    state.parents[carry] = [step["init"]]
    state.made[carry] = state.multiplier * max(times, 1)
    previous, state.multiplier = state.multiplier, state.multiplier * max(times, 1)
    try:
        _walk(state, step.get("body", []))
    finally:
        state.multiplier = previous
    if step.get("next") in state.shape:
        state.parents[carry].append(step["next"])


def _sgd(state: _State, step: dict[str, Any]) -> None:
    state.features.add(("SGD", "params as a generator" if step.get("generator") else "params as a list"))
    state.optimizers[step["out"]] = list(step["params"])


def _sgd_step(state: _State, step: dict[str, Any]) -> None:
    params = state.optimizers.get(step["opt"], [])
    state.features.add(("SGD", "step()" + (" inside no_grad" if state.no_grad_depth else "")))
    if any(p not in state.has_grad for p in params):
        state.features.add(("SGD", "step() with a parameter whose grad is None"))


def _sgd_zero_grad(state: _State, step: dict[str, Any]) -> None:
    state.features.add(("SGD", "zero_grad()"))
    state.has_grad -= set(state.optimizers.get(step["opt"], []))


def _fact(state: _State, step: dict[str, Any]) -> None:
    state.features.add(("fact", step["kind"]))


def _snapshot(state: _State, step: dict[str, Any]) -> None:
    names = step.get("tensors", [])
    if any(not state.grad.get(n) for n in names):
        state.features.add(("snapshot", "a tensor that does not require grad (grad stays None)"))
    if any(state.parents.get(n) and state.grad.get(n) for n in names):
        state.features.add(("snapshot", "an intermediate's grad"))


def _ignore(state: _State, step: dict[str, Any]) -> None:
    """Steps that check nothing themselves (``keep`` only serves a later fact)."""


_HANDLERS = {
    "tensor": _tensor, "binary": _binary, "unary": _unary, "backward": _backward, "zero_grad": _zero_grad,
    "no_grad": _no_grad, "loop": _loop, "sgd": _sgd, "sgd_step": _sgd_step, "sgd_zero_grad": _sgd_zero_grad,
    "fact": _fact, "snapshot": _snapshot, "keep": _ignore,
}


# ---- shapes ----

def _result_shape(fn: str, a: Shape, b: Shape) -> Shape:
    if a is None or b is None or fn not in BINARY_OPS:
        return None
    if fn == "matmul":
        if len(a) == 2 and len(b) == 2 and a[1] == b[0]:
            return (a[0], b[1])
        if len(a) == 1 and len(b) == 2 and a[0] == b[0]:
            return (b[1],)
        if len(a) == 2 and len(b) == 1 and a[1] == b[0]:
            return (a[0],)
        if len(a) == len(b) == 1 and a == b:
            return ()
        return None
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        return None


def _broadcast_class(shape: tuple[int, ...], out: tuple[int, ...]) -> str:
    """The contract's shape classes against (N, H): (H,), (1,H), (N,1), (); others by rank."""
    if shape == ():
        return "()"
    if len(shape) < len(out):
        return "(H,)" if len(shape) == 1 else f"{len(shape)}-d into {len(out)}-d"
    if len(shape) == 2:
        if shape[0] == 1 and shape[1] == out[1] != 1:
            return "(1,H)"
        if shape[1] == 1 and shape[0] == out[0] != 1:
            return "(N,1)"
        return "(1,1)"
    return f"size-1 axes of a {len(shape)}-d tensor"
