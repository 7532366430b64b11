"""Shrink the example: the smallest local check that still fails the same way, as a short script.

Candidates go from simplest to the original (as hypothesis shrinks: smaller shapes first, then
simpler values): shapes down to ``(2,)``/``(2, 3)`` keeping every broadcast pattern (size-1 axes
and the number of axes stay), small integers for values and for the upstream gradient. They are
all checked in one sandbox request; the first that fails like the original (same op, same operand)
is rendered as a reproducer of about eight lines with the expected and the received values in full.
"""

from __future__ import annotations

import keyword
from dataclasses import replace
from typing import Iterator

import numpy as np

from grader.programs.blame import OpCall, Runner, Verdict, local_vjp, run_checks
from grader.programs.ops import BINARY_OPS

SMALL_SIZES = (2, 3, 4, 5)
_RESERVED = {"np", "out", "Tensor", "expected"}


def shrink(call: OpCall, verdict: Verdict, runner: Runner) -> tuple[OpCall, Verdict]:
    """The simplest candidate that fails as ``verdict`` does (the original when none does)."""
    candidates = list(candidates_of(call))
    for cand, v in zip(candidates, run_checks(candidates, runner)):
        if not v.ok and not v.inconclusive and (v.operand, v.modifies_input, v.read_only) == (
                verdict.operand, verdict.modifies_input, verdict.read_only):
            return cand, v
    return call, verdict


def candidates_of(call: OpCall) -> Iterator[OpCall]:
    shapes = [tuple(np.shape(o.value)) for o in call.operands if o.kind != "number"]
    distinct = _size_map(shapes, call.out_shape(), square=False)
    square = _size_map(shapes, call.out_shape(), square=True)
    seen: set[str] = set()
    for sizes, ints in ((distinct, True), (square, True), (distinct, False), (None, True)):
        cand = _resized(call, sizes, ints)
        if cand is None:
            continue
        key = repr([(o.kind, np.asarray(o.value).tolist()) for o in cand.operands]) + repr(cand.upstream.tolist())
        if key not in seen:
            seen.add(key)
            yield cand


def _size_map(shapes: list[tuple[int, ...]], out: tuple[int, ...], square: bool) -> dict[int, int]:
    """Each axis length > 1 to a small one; distinct lengths stay distinct unless ``square``."""
    lengths = list(dict.fromkeys(n for s in [*shapes, out] for n in s if n > 1))
    return {n: 2 if square else SMALL_SIZES[min(i, len(SMALL_SIZES) - 1)] for i, n in enumerate(lengths)}


def _resized(call: OpCall, sizes: dict[int, int] | None, ints: bool) -> OpCall | None:
    rng = np.random.default_rng(len(call.operands) * 7 + (0 if sizes is None else len(sizes)))
    operands = []
    for opnd in call.operands:
        if opnd.kind == "number":
            value = opnd.value if float(opnd.value).is_integer() else round(float(opnd.value))
            operands.append(replace(opnd, value=value or 2))
            continue
        arr = np.asarray(opnd.value, dtype=np.float64)
        shape = arr.shape if sizes is None else tuple(sizes.get(n, n) for n in arr.shape)
        operands.append(replace(opnd, value=_values(rng, arr, shape, ints, call.fn == "relu")))
    out_shape = call.out_shape() if sizes is None else tuple(sizes.get(n, n) for n in call.out_shape())
    upstream = _upstream(rng, out_shape) if ints else np.round(rng.standard_normal(out_shape), 1)
    cand = OpCall(call.fn, operands, upstream, call.out, call.shared)
    if call.shared:
        cand.operands[1] = replace(cand.operands[1], value=cand.operands[0].value)
    try:
        import torch

        args = [torch.tensor(np.asarray(o.value)) if o.kind != "number" else o.value for o in cand.operands]
        result = BINARY_OPS[call.fn].apply(*args) if cand.is_binary else getattr(args[0], call.fn)()
    except (RuntimeError, ValueError):
        return None
    return cand if tuple(result.shape) == out_shape else None


def _values(rng: np.random.Generator, arr: np.ndarray, shape: tuple[int, ...], ints: bool, relu: bool) -> np.ndarray:
    if not ints:
        return np.round(rng.standard_normal(shape), 1) if shape != arr.shape else arr
    if relu:  # keep exact zeros next to both signs: relu'(0) is the case students get wrong
        pool = np.array([0.0, -1.0, 2.0, -2.0, 1.0, 0.0])
        values = np.resize(pool, int(np.prod(shape)) if shape else 1)
        return values.reshape(shape)
    values = rng.choice(np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0]), size=shape)
    return np.asarray(values, dtype=np.float64)


def _upstream(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Neither 0 nor 1 everywhere: an op that ignores its upstream gradient must show it."""
    return np.asarray(rng.choice(np.array([-2.0, -1.0, 2.0, 3.0]), size=shape), dtype=np.float64)


# ---- the reproducer ----

def render_check(call: OpCall, verdict: Verdict, headline: str) -> str:
    """A short script that fails with the student's autograd.py as the check did."""
    names = _names(call)
    lines = [f"# {headline}", "import numpy as np", "from autograd import Tensor"]
    args: list[str] = []
    for j, (opnd, name) in enumerate(zip(call.operands, names)):
        if opnd.kind == "tensor":
            if not (call.shared and j == 1):
                rg = ", requires_grad=True" if opnd.requires_grad else ""
                lines.append(f"{name} = Tensor({_lit(opnd.value)}{rg})")
            args.append(name)
        elif opnd.kind == "number":
            args.append(repr(opnd.value))
        else:
            args.append(f"np.array({_lit(opnd.value)})")
    expr = f"{args[0]} {BINARY_OPS[call.fn].symbol} {args[1]}" if call.is_binary else f"{args[0]}.{call.fn}()"
    g = call.upstream
    back = (f"(out * Tensor({_lit(g)})).backward()" if g.ndim == 0
            else f"(out * Tensor({_lit(g)})).sum().backward()")
    if verdict.operand in ("raises", "backward-raises"):
        lines += [f"out = {expr}", f"{back}  # raises with your code: {verdict.detail[:100]}"]
        return "\n".join(lines) + "\n"
    lines.append(f"out = {expr}")
    if verdict.modifies_input:
        target = f"{names[verdict.failed_index or 0]}.data"
    elif verdict.operand == "forward":
        target = "out.data"
    else:
        lines.append(f"{back}  # upstream gradient of out")
        target = f"{names[verdict.failed_index or 0]}.grad"
    if verdict.read_only:
        lines.append(f"{target} += 1.0  # raises with your code: the grad is a read-only array")
        return "\n".join(lines) + "\n"
    yours = "None" if verdict.got is None else _lit(verdict.got)
    lines += [f"expected = np.array({_lit(_expected(call, verdict))})  # torch.autograd; yours: {yours}",
              f"assert {target} is not None and np.shape({target}) == expected.shape and "
              f"np.allclose({target}, expected), f'{target} is {{{target}!r}}, torch.autograd gives {{expected!r}}'"]
    return "\n".join(lines) + "\n"


def _expected(call: OpCall, verdict: Verdict) -> np.ndarray:
    """What torch computes for the script as written (its upstream gradient is the constant shown;
    the verdict may have used the one the submission's harness passed on)."""
    if verdict.modifies_input:
        return np.asarray(call.operands[verdict.failed_index or 0].value)
    out, grads = local_vjp(call, call.upstream)
    if verdict.operand == "forward":
        return out
    grad = grads[verdict.failed_index or 0]
    return verdict.expected if grad is None else grad


def _names(call: OpCall) -> list[str]:
    names = []
    for j, opnd in enumerate(call.operands):
        name = opnd.name
        if not name.isidentifier() or keyword.iskeyword(name) or name in _RESERVED or name in names:
            name = "ab"[j] if "ab"[j] not in names else f"t{j}"
        names.append(name)
    return names


def _lit(arr: object) -> str:
    value = np.asarray(arr, dtype=np.float64)
    return repr(value.tolist()) if value.ndim else repr(float(value))
