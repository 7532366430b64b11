"""The one table of what a Program can do: its ops and the facts it can observe.

The builder (``program``), the interpreter that runs in the worker, the renderer of reproducers
and the comparison all read these tables, so an op or a fact is added in one place.
Stdlib only: this module is one of the worker's files.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class BinaryOp:
    """``a <symbol> b`` on tensors, numbers or ndarrays, either side."""

    name: str
    symbol: str
    apply: Callable[[Any, Any], Any]


@dataclass(frozen=True)
class UnaryOp:
    """``t.<name>()``; ``in_graph`` is False for ops whose result leaves the graph (detach)."""

    name: str
    in_graph: bool = True


@dataclass(frozen=True)
class Fact:
    """A property of tensors that a test observes; ``expr`` is how a reproducer computes it.

    ``expr`` is formatted with the tensor names as ``{0}``, ``{1}`` and the kept array as ``{kept}``.
    ``rule`` is the sentence of the contract that the fact checks (shown on a mismatch).
    """

    name: str
    tensors: int
    expr: str
    rule: str


BINARY_OPS: dict[str, BinaryOp] = {op.name: op for op in (
    BinaryOp("add", "+", operator.add),
    BinaryOp("mul", "*", operator.mul),
    BinaryOp("matmul", "@", operator.matmul),
)}

UNARY_OPS: dict[str, UnaryOp] = {op.name: op for op in (
    UnaryOp("relu"),
    UnaryOp("sum"),
    UnaryOp("detach", in_graph=False),
)}

@dataclass(frozen=True)
class Block:
    """A step holding a ``body`` of steps: ``no_grad`` runs it once inside ``no_grad()``; ``loop``
    runs it ``times`` times, so a 10,000-op chain travels as a few steps, not 10,000.

    ``body_ops`` limits what a body may hold (None: anything).
    """

    name: str
    body_ops: frozenset[str] | None = None


BLOCKS: dict[str, Block] = {b.name: b for b in (
    Block("no_grad"),
    Block("loop", frozenset({"binary", "unary"})),
)}

MAX_LOOP_TIMES = 1_000_000  # a loop's iterations; the request's timeout bounds the work anyway

_GRADS_DISTINCT = ("'; '.join(f'{{n1}}.grad and {{n2}}.grad' for i, (n1, t1) in enumerate(_ts) "
                   "for n2, t2 in _ts[i + 1:] if isinstance(t1.grad, np.ndarray) "
                   "and isinstance(t2.grad, np.ndarray) and np.shares_memory(t1.grad, t2.grad))")

FACTS: dict[str, Fact] = {f.name: f for f in (
    Fact("shares_data", 2, "np.shares_memory({0}.data, {1}.data)",
         "detach() must return a tensor that shares self.data's array (no copy)"),
    Fact("shares_data_with_kept", 1, "np.shares_memory({0}.data, {kept})",
         "SGD.step() must update p.data in place (p.data -= lr * p.grad), same array"),
    Fact("grad_writable", 1, "{0}.grad.flags.writeable",
         "each .grad must be a writable array (no read-only broadcast views)"),
    Fact("grads_distinct", -1, _GRADS_DISTINCT,
         "no two tensors may share one grad array: copy before storing"),
    Fact("requires_grad", 1, "{0}.requires_grad",
         "a result requires grad iff any input does and no no_grad() block is active"),
)}
