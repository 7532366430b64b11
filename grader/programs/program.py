"""Tensor Programs: a test writes ordinary tensor code against symbolic handles, once.

    p = Program("mlp", seed=7)
    x = p.randn("x", (8, 4))
    W1 = p.randn("W1", (4, 16), requires_grad=True)
    ...
    h = (x @ W1 + b1).relu().named("h")
    loss = (h @ W2 + b2).sum().named("loss")
    p.backward(loss)
    p.snapshot("grads", [W1, b1, W2, b2, h])

The Program is a list of JSON steps plus named arrays. The interpreter runs it on torch or on
any module with the lab API (in-process or in a sandbox), and ``render`` turns it into a plain
Python script a student can paste to reproduce a failure with their own ``autograd.py``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from grader.programs import draws
from grader.programs.features import Feature, program_features
from grader.programs.ops import BLOCKS, FACTS, MAX_LOOP_TIMES

PROGRAM_VERSION = 1


@dataclass
class _ArrayOrigin:
    """How an array is written in the reproducer: a seeded draw, or a literal."""

    kind: str                      # "randn" | "literal"
    draw: int = 0                  # randn: index of the draw, seeds default_rng((seed, draw))
    shape: tuple[int, ...] = ()
    scale: float = 1.0


class Handle:
    """A symbolic tensor of a Program; operators record steps instead of computing."""

    def __init__(self, program: Program, name: str) -> None:
        self._p = program
        self.name = name

    def __add__(self, other: Any) -> Handle:
        return self._p._binary("add", self, other)

    def __radd__(self, other: Any) -> Handle:
        return self._p._binary("add", other, self)

    def __mul__(self, other: Any) -> Handle:
        return self._p._binary("mul", self, other)

    def __rmul__(self, other: Any) -> Handle:
        return self._p._binary("mul", other, self)

    def __matmul__(self, other: Any) -> Handle:
        return self._p._binary("matmul", self, other)

    def relu(self) -> Handle:
        return self._p._unary("relu", self)

    def sum(self) -> Handle:
        return self._p._unary("sum", self)

    def detach(self) -> Handle:
        return self._p._unary("detach", self)

    def named(self, name: str) -> Handle:
        """Give the tensor this handle stands for a readable name (in messages and reproducers)."""
        self._p._rename(self, name)
        return self

    def __repr__(self) -> str:
        return f"<Handle {self.name}>"


class Optimizer:
    """A symbolic ``SGD`` of a Program."""

    def __init__(self, program: Program, name: str) -> None:
        self._p, self.name = program, name

    def step(self) -> None:
        self._p._emit({"op": "sgd_step", "opt": self.name})

    def zero_grad(self) -> None:
        self._p._emit({"op": "sgd_zero_grad", "opt": self.name})


@dataclass
class Program:
    """A small tensor program, serialisable to JSON + arrays and renderable as Python."""

    title: str
    seed: int = 0
    steps: list[dict[str, Any]] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    origins: dict[str, _ArrayOrigin] = field(default_factory=dict)
    _blocks: list[list[dict[str, Any]]] = field(default_factory=list, repr=False)
    _names: set[str] = field(default_factory=set, repr=False)
    _next_index: dict[str, int] = field(default_factory=dict, repr=False)
    _draws: int = 0

    # ---- leaves ----

    def randn(self, name: str, shape: Sequence[int], requires_grad: bool = False, scale: float = 1.0) -> Handle:
        """A leaf of standard-normal values, drawn from ``default_rng((seed, k))``."""
        key = self._add_randn(tuple(int(n) for n in shape), scale)
        return self._leaf(name, {"array": key}, requires_grad)

    def tensor(self, name: str, value: Any, requires_grad: bool = False) -> Handle:
        """A leaf from a literal: a list (passed as a list), an ndarray (any dtype), or a number."""
        if isinstance(value, (list, tuple)):
            ref = {"array": self._add_literal(np.array(value)), "as_list": True}
        elif isinstance(value, np.ndarray):
            ref = {"array": self._add_literal(value)}
        else:
            ref = {"number": _python_number(value)}
        return self._leaf(name, ref, requires_grad)

    def array(self, value: np.ndarray) -> _ArrayConst:
        """A constant ndarray operand (``x + p.array(a)``), as opposed to a Python number."""
        return _ArrayConst(self._add_literal(np.asarray(value)))

    def randn_array(self, shape: Sequence[int], scale: float = 1.0) -> _ArrayConst:
        """A constant ndarray operand of seeded random values."""
        return _ArrayConst(self._add_randn(tuple(int(n) for n in shape), scale))

    # ---- actions ----

    def backward(self, t: Handle, expect_error: str | None = None) -> None:
        """``t.backward()``; with ``expect_error=label`` the exception is caught and recorded."""
        step: dict[str, Any] = {"op": "backward", "t": t.name}
        if expect_error:
            step["expect_error"] = expect_error
        self._emit(step)

    def zero_grad(self, t: Handle) -> None:
        self._emit({"op": "zero_grad", "t": t.name})

    @contextlib.contextmanager
    def no_grad(self, raise_inside: bool = False) -> Iterator[None]:
        """Steps recorded inside run under the lab's ``no_grad()``; optionally an exception leaves it."""
        body: list[dict[str, Any]] = []
        self._emit({"op": "no_grad", "body": body, "raise": raise_inside})
        self._blocks.append(body)
        try:
            yield
        finally:
            self._blocks.pop()

    def repeat(self, times: int, start: Handle, body: Callable[[Handle], Handle], name: str = "y") -> Handle:
        """``y = start; for _ in range(times): y = body(y)``, recorded as one ``loop`` step.

        ``body`` is called once, on a symbolic ``y``, and may use only ops (``+ * @ relu sum``) and
        tensors made before the loop. The interpreter runs the body ``times`` times and a reproducer
        shows a Python ``for`` loop, so a 10,000-op chain is a short message and a short script.
        """
        if isinstance(times, bool) or not isinstance(times, int) or not 0 <= times <= MAX_LOOP_TIMES:
            raise ValueError(f"repeat times must be an integer in 0..{MAX_LOOP_TIMES}, not {times!r}")
        carry = self._fresh(name)
        steps: list[dict[str, Any]] = []
        step: dict[str, Any] = {"op": "loop", "out": carry, "times": times, "init": start.name, "body": steps}
        self._emit(step)
        self._blocks.append(steps)
        try:
            result = body(Handle(self, carry))
        finally:
            self._blocks.pop()
        allowed = BLOCKS["loop"].body_ops or frozenset()
        if any(s["op"] not in allowed for s in steps):
            raise ValueError(f"a repeat body may only hold ops ({', '.join(sorted(allowed))})")
        if not isinstance(result, Handle) or all(s.get("out") != result.name for s in steps):
            raise ValueError("a repeat body must return the result of an op made inside it")
        step["next"] = result.name
        return Handle(self, carry)

    def sgd(self, params: Sequence[Handle], lr: float, name: str = "opt", as_generator: bool = False) -> Optimizer:
        """``SGD(params, lr)``; ``as_generator`` passes ``(p for p in [...])``, as ``model.parameters()`` would."""
        name = self._fresh(name)
        self._emit({"op": "sgd", "out": name, "params": [p.name for p in params], "lr": float(lr),
                    "generator": bool(as_generator)})
        return Optimizer(self, name)

    def keep(self, t: Handle, as_: str) -> None:
        """Remember ``t``'s tensor object now, to ask later whether data is still shared with it."""
        self._emit({"op": "keep", "t": t.name, "as": as_})

    # ---- observations ----

    def snapshot(self, label: str, tensors: Sequence[Handle]) -> None:
        """Record data, grad and requires_grad of ``tensors`` at this point, under ``label``."""
        self._emit({"op": "snapshot", "label": label, "tensors": [t.name for t in tensors]})

    def fact(self, label: str, kind: str, *tensors: Handle, kept: str | None = None) -> None:
        """Record a property: shares_data, shares_data_with_kept, grad_writable, grads_distinct, requires_grad."""
        if kind not in FACTS:
            raise ValueError(f"unknown fact kind {kind!r}; known: {', '.join(FACTS)}")
        step: dict[str, Any] = {"op": "fact", "label": label, "kind": kind, "tensors": [t.name for t in tensors]}
        if kept:
            step["kept"] = kept
        self._emit(step)

    @property
    def features(self) -> set[Feature]:
        """The kinds of check this Program makes, e.g. ("mul", "ndarray on the left") (``grader.programs.features``)."""
        return program_features(self.steps, self.arrays)

    # ---- wire format ----

    def to_wire(self, draw_in_worker: bool = False) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The JSON header and the arrays. ``draw_in_worker``: the seeded random arrays travel as how to
        draw them (``header["draws"]``, see ``grader.programs.draws``), not as bytes: a timed run then
        does not pay for shipping megabytes inside its timed request."""
        header = {"version": PROGRAM_VERSION, "title": self.title, "seed": self.seed, "steps": self.steps}
        if not draw_in_worker:
            return header, dict(self.arrays)
        drawn = {key: o for key, o in self.origins.items() if o.kind == "randn" and key in self.arrays}
        header["draws"] = {key: draws.draw_spec(self.seed, o.draw, o.shape, o.scale) for key, o in drawn.items()}
        return header, {key: arr for key, arr in self.arrays.items() if key not in drawn}

    def variant(self, k: int) -> Program:
        """The same steps on fresh random draws (seed ``(seed, k)`` mixed): for timed runs that must each
        be computed, since a submission could otherwise replay a cached answer. Literals stay as they are."""
        seed = int(np.random.default_rng((self.seed, 0x5EED, k)).integers(2**31))
        arrays, origins = dict(self.arrays), dict(self.origins)
        for key, origin in self.origins.items():
            if origin.kind == "randn":
                arrays[key] = draws.randn(seed, origin.draw, origin.shape, origin.scale)
        return Program(title=self.title, seed=seed, steps=self.steps, arrays=arrays, origins=origins,
                       _names=set(self._names), _draws=self._draws)

    def flat_steps(self) -> list[dict[str, Any]]:
        """Steps in pre-order, the numbering the interpreter reports errors with."""
        out: list[dict[str, Any]] = []

        def walk(steps: list[dict[str, Any]]) -> None:
            for s in steps:
                out.append(s)
                if s["op"] in BLOCKS:
                    walk(s["body"])

        walk(self.steps)
        return out

    def producer(self, name: str) -> dict[str, Any] | None:
        return next((s for s in self.flat_steps() if s.get("out") == name), None)

    def consumers(self, name: str) -> list[dict[str, Any]]:
        return [s for s in self.flat_steps() if s["op"] in ("binary", "unary") and name in _refs(s)]

    # ---- internals ----

    def _emit(self, step: dict[str, Any]) -> None:
        (self._blocks[-1] if self._blocks else self.steps).append(step)

    def _fresh(self, base: str) -> str:
        """``t1, t2, ...`` (or ``opt, opt1, ...``): a counter per base keeps long Programs linear to build."""
        i = self._next_index.get(base, 1 if base == "t" else 0)
        name = f"{base}{i}" if i else base
        while name in self._names:
            i += 1
            name = f"{base}{i}"
        self._next_index[base] = i + 1
        self._names.add(name)
        return name

    def _leaf(self, name: str, ref: dict[str, Any], requires_grad: bool) -> Handle:
        if name in self._names:
            raise ValueError(f"tensor name {name!r} is used twice in program {self.title!r}")
        self._names.add(name)
        self._emit({"op": "tensor", "out": name, "value": ref, "requires_grad": bool(requires_grad)})
        return Handle(self, name)

    def _add_randn(self, shape: tuple[int, ...], scale: float) -> str:
        key = f"r{self._draws}"
        self.arrays[key] = draws.randn(self.seed, self._draws, shape, scale)
        self.origins[key] = _ArrayOrigin("randn", self._draws, shape, scale)
        self._draws += 1
        return key

    def _add_literal(self, value: np.ndarray) -> str:
        key = f"c{len(self.arrays)}"
        self.arrays[key] = np.array(value, copy=True)
        self.origins[key] = _ArrayOrigin("literal")
        return key

    def _ref(self, value: Any) -> dict[str, Any]:
        if isinstance(value, Handle):
            if value._p is not self:
                raise ValueError("a handle of another Program")
            return {"ref": value.name}
        if isinstance(value, _ArrayConst):
            return {"array": value.key}
        if isinstance(value, np.ndarray):
            return {"array": self._add_literal(value)}
        return {"number": _python_number(value)}

    def _binary(self, fn: str, a: Any, b: Any) -> Handle:
        name = self._fresh("t")
        self._emit({"op": "binary", "fn": fn, "out": name, "a": self._ref(a), "b": self._ref(b)})
        return Handle(self, name)

    def _unary(self, fn: str, a: Handle) -> Handle:
        name = self._fresh("t")
        self._emit({"op": "unary", "fn": fn, "out": name, "a": a.name})
        return Handle(self, name)

    def _rename(self, handle: Handle, name: str) -> None:
        step = self.producer(handle.name)
        if step is None or step["op"] == "tensor":
            raise ValueError(f"only op results can be renamed, not {handle.name!r}")
        if any(handle.name in _refs(s) or handle.name in s.get("tensors", ()) for s in self.flat_steps()):
            raise ValueError(f"rename {handle.name!r} before using it")
        if name in self._names:
            raise ValueError(f"tensor name {name!r} is used twice in program {self.title!r}")
        self._names.discard(handle.name)
        self._names.add(name)
        step["out"] = handle.name = name


@dataclass(frozen=True)
class _ArrayConst:
    """A constant ndarray operand, by key into the Program's arrays."""

    key: str


def _python_number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"expected a Handle, a Python number or an ndarray, got {type(value).__name__}")
    return int(value) if isinstance(value, (int, np.integer)) else float(value)


def _refs(step: dict[str, Any]) -> list[str]:
    """Names of the tensors a step reads."""
    names = [step[k]["ref"] for k in ("a", "b") if isinstance(step.get(k), dict) and "ref" in step[k]]
    names += [step[k] for k in ("a", "t", "init", "next") if isinstance(step.get(k), str)]
    return names + list(step.get("params", ()))
