"""Runs a tensor Program (its JSON steps + named arrays) on one backend and records evidence.

Stdlib + NumPy only: this module runs inside the sandbox, on the student's ``Tensor``.
It produces *evidence* (values, grads, flags, exceptions), never a verdict: the host
compares that evidence with what torch computed for the same Program.

Steps are numbered in pre-order (a ``no_grad`` or ``loop`` block, then its body), the same numbering
``Program.render`` uses, so an error names the line of the reproducer that raised.
"""

from __future__ import annotations

import traceback
import types
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

import numpy as np

from grader.programs.ops import BINARY_OPS, FACTS, MAX_LOOP_TIMES, UNARY_OPS

# Bound before any submission is imported: a submission that patches ``np.shares_memory`` or
# ``np.array_equal`` cannot change what the interpreter observes (inputs are also re-checked on the host).
_shares_memory = np.shares_memory
_array_equal = np.array_equal
_ndarray = np.ndarray
MAX_ELEMENTS = 4_000_000  # larger data/grad arrays are reported as invalid, not shipped
MAX_MESSAGE = 2000


class Adapter(Protocol):
    """How the interpreter drives one autograd library (the lab API, or torch)."""

    def tensor(self, data: Any, requires_grad: bool) -> Any: ...
    def operand(self, value: Any) -> Any: ...
    def after_op(self, result: Any) -> Any: ...
    def backward(self, t: Any) -> None: ...
    def zero_grad(self, t: Any) -> None: ...
    def no_grad(self) -> Any: ...
    def sgd(self, params: Iterable[Any], lr: float) -> Any: ...
    def is_runtime_error(self, exc: BaseException) -> bool: ...
    def read_data(self, t: Any) -> Any: ...
    def read_grad(self, t: Any) -> Any: ...
    def shares_data(self, a: Any, b: Any) -> bool: ...
    def keep(self, t: Any) -> Any: ...
    def grad_writable(self, t: Any) -> bool: ...


class LabAdapter:
    """Drives any module with the lab's API (the reference, or a student's ``autograd.py``)."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def tensor(self, data: Any, requires_grad: bool) -> Any:
        return self.module.Tensor(data, requires_grad=requires_grad)

    def operand(self, value: Any) -> Any:
        return value

    def after_op(self, result: Any) -> Any:
        return result

    def backward(self, t: Any) -> None:
        t.backward()

    def zero_grad(self, t: Any) -> None:
        t.zero_grad()

    def no_grad(self) -> Any:
        return self.module.no_grad()

    def sgd(self, params: Iterable[Any], lr: float) -> Any:
        return self.module.SGD(params, lr=lr)

    def is_runtime_error(self, exc: BaseException) -> bool:
        return isinstance(exc, RuntimeError) and not isinstance(exc, NotImplementedError)

    def read_data(self, t: Any) -> Any:
        return t.data

    def read_grad(self, t: Any) -> Any:
        return t.grad

    def shares_data(self, a: Any, b: Any) -> bool:
        return bool(_shares_memory(a.data, b.data))

    def keep(self, t: Any) -> Any:
        return types.SimpleNamespace(data=t.data)  # the data array itself, not the tensor

    def grad_writable(self, t: Any) -> bool:
        return isinstance(t.grad, np.ndarray) and bool(t.grad.flags.writeable)


class _InjectedError(Exception):
    """Raised inside a ``no_grad`` block by the Program, to test that the state is restored."""


@dataclass
class TensorState:
    """What a snapshot saw of one tensor. Arrays are float64 copies; ``*_problem`` says why not."""

    requires_grad: Any = None
    data: np.ndarray | None = None
    data_dtype: str | None = None
    data_problem: str | None = None
    grad: np.ndarray | None = None
    grad_is_none: bool = True
    grad_dtype: str | None = None
    grad_problem: str | None = None


@dataclass
class RunResult:
    """Evidence from one run of a Program."""

    snapshots: dict[str, dict[str, TensorState]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    caught: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    inputs_unchanged: dict[str, bool] = field(default_factory=dict)
    inputs_after: dict[str, np.ndarray] = field(default_factory=dict)

    # ---- wire format: JSON header + arrays (never pickles) ----

    def to_wire(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays: dict[str, np.ndarray] = {}
        snaps: dict[str, dict[str, dict[str, Any]]] = {}
        for label, states in self.snapshots.items():
            snaps[label] = {}
            for name, st in states.items():
                meta = {k: getattr(st, k) for k in
                        ("requires_grad", "data_dtype", "data_problem", "grad_is_none", "grad_dtype", "grad_problem")}
                for kind in ("data", "grad"):
                    arr = getattr(st, kind)
                    if arr is not None:
                        key = f"a{len(arrays)}"
                        arrays[key] = arr
                        meta[kind] = key
                snaps[label][name] = meta
        for key, arr in self.inputs_after.items():
            arrays[f"in_{key}"] = arr
        header = {"snapshots": snaps, "facts": self.facts, "caught": self.caught,
                  "error": self.error, "inputs_unchanged": self.inputs_unchanged}
        return header, arrays


def to_float_array(value: Any, copy: bool = True) -> tuple[np.ndarray | None, str | None, str | None]:
    """(float64 copy, original dtype, problem) of whatever a student stored as data or grad;
    without ``copy``, the same dtype and problem but no array (a lean run's leaf, see ``Interpreter``)."""
    if isinstance(value, _ndarray):
        arr = value
    elif isinstance(value, np.generic):  # a 0-d NumPy scalar, as np.sum returns: same values and shape ()
        arr = np.asarray(value)
    else:  # the contract asks for arrays: a list or a Python number is not one
        return None, None, f"a {type(value).__module__}.{type(value).__qualname__}, not a numpy array"
    dtype = str(arr.dtype)
    if arr.dtype.kind not in "biuf":
        return None, dtype, f"an array of dtype {dtype}, not a real number dtype"
    if arr.size > MAX_ELEMENTS:
        return None, dtype, f"an enormous array of {arr.size} elements"
    return (np.array(arr, dtype=np.float64, copy=True) if copy else None), dtype, None


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "... [truncated]"


class Interpreter:
    """Executes Program steps on one adapter; one instance per run."""

    def __init__(self, adapter: Adapter, arrays: dict[str, np.ndarray], take_snapshots: bool = True,
                 lean: bool = False) -> None:
        self.adapter = adapter
        self.arrays = arrays
        # lean: a timed run's evidence is what the answer check needs, the snapshots' values and grads,
        # without the Program's inputs (no pristine copies, no echo of the inputs, and of the leaves made
        # from them only the dtype of their data, not its values): whether inputs stay unchanged is the
        # ops tests' check, not the speed tests'
        self.lean = lean
        self.pristine = {} if lean else {k: v.copy() for k, v in arrays.items()}
        self.input_leaves: set[str] = set()
        self.take_snapshots = take_snapshots
        self.env: dict[str, Any] = {}
        self.kept: dict[str, Any] = {}
        self.result = RunResult()
        self.counter = 0

    def run(self, steps: list[dict[str, Any]]) -> RunResult:
        self.run_part(steps)
        return self.finish()

    def run_part(self, steps: list[dict[str, Any]]) -> None:
        """Run some of a Program's top-level steps; after a failed step, later parts run nothing.
        (A timed run in two requests runs the graph building, then ``backward`` and the rest.)"""
        if self.result.error is not None:
            return
        try:
            self._block(steps)
        except _StepFailed:
            pass

    def finish(self) -> RunResult:
        """The evidence, with whether the inputs are as they were (the host checks them again)."""
        if self.lean:
            return self.result
        self.result.inputs_unchanged = {
            k: bool(_array_equal(self.arrays[k], v)) for k, v in self.pristine.items()
        }
        self.result.inputs_after = self.arrays  # sent back: the host compares them itself
        return self.result

    def _block(self, steps: list[dict[str, Any]]) -> None:
        handlers = _HANDLERS
        for step in steps:
            index = self.counter
            self.counter += 1
            try:
                handler = handlers.get(step["op"])
                if handler is None:   # an unknown op raises as a missing method did: the step's error
                    getattr(self, "_op_" + step["op"])(step)
                else:
                    handler(self, step)
            except _StepFailed:
                raise
            except BaseException as exc:  # noqa: BLE001 - student code may raise anything, SystemExit too
                if isinstance(exc, KeyboardInterrupt):
                    raise
                self.result.error = {
                    "step": index, "op": step["op"], "type": type(exc).__name__,
                    "message": _short(str(exc)), "traceback": _short(_student_traceback(exc)),
                }
                raise _StepFailed from None

    # ---- values ----

    def _value(self, ref: dict[str, Any]) -> Any:
        if "ref" in ref:
            return self.env[ref["ref"]]
        if "number" in ref:
            return ref["number"]
        arr = self.arrays[ref["array"]]
        return arr.tolist() if ref.get("as_list") else arr

    # ---- steps ----

    def _op_tensor(self, step: dict[str, Any]) -> None:
        self.env[step["out"]] = self.adapter.tensor(self._value(step["value"]), bool(step["requires_grad"]))
        if self.lean and "array" in step["value"]:
            self.input_leaves.add(step["out"])

    def _op_binary(self, step: dict[str, Any]) -> None:
        a, b = self._operand(step["a"]), self._operand(step["b"])
        self.env[step["out"]] = self.adapter.after_op(BINARY_OPS[step["fn"]].apply(a, b))

    def _operand(self, ref: dict[str, Any]) -> Any:
        value = self._value(ref)
        return value if "ref" in ref else self.adapter.operand(value)

    def _op_unary(self, step: dict[str, Any]) -> None:
        op = UNARY_OPS[step["fn"]]
        out = getattr(self.env[step["a"]], op.name)()
        self.env[step["out"]] = self.adapter.after_op(out) if op.in_graph else out

    def _op_backward(self, step: dict[str, Any]) -> None:
        t = self.env[step["t"]]
        label = step.get("expect_error")
        if not label:
            self.adapter.backward(t)
            return
        try:
            self.adapter.backward(t)
        except Exception as exc:  # noqa: BLE001
            self.result.caught[label] = {"raised": True, "type": type(exc).__name__,
                                         "runtime_error": self.adapter.is_runtime_error(exc),
                                         "message": _short(str(exc))}
        else:
            self.result.caught[label] = {"raised": False, "type": None, "runtime_error": False, "message": ""}

    def _op_zero_grad(self, step: dict[str, Any]) -> None:
        self.adapter.zero_grad(self.env[step["t"]])

    def _op_no_grad(self, step: dict[str, Any]) -> None:
        try:
            with self.adapter.no_grad():
                self._block(step["body"])
                if step.get("raise"):
                    raise _InjectedError("raised inside no_grad() by the test")
        except _InjectedError:
            pass

    def _op_loop(self, step: dict[str, Any]) -> None:
        """``out = init``, then ``times`` times: the body, ``out = next``. The body's steps keep one
        number each (as in the reproducer's ``for`` loop), whichever iteration raised."""
        times, body = step["times"], step["body"]
        if isinstance(times, bool) or not isinstance(times, int) or not 0 <= times <= MAX_LOOP_TIMES:
            raise ValueError(f"bad loop count {str(times)[:20]!r}")
        self.env[step["out"]] = self.env[step["init"]]
        first = self.counter
        for _ in range(times):
            self.counter = first
            self._block(body)
            self.env[step["out"]] = self.env[step["next"]]
        self.counter = first + len(body)

    def _op_sgd(self, step: dict[str, Any]) -> None:
        params = [self.env[n] for n in step["params"]]
        self.env[step["out"]] = self.adapter.sgd((p for p in params) if step.get("generator") else params,
                                                 float(step["lr"]))

    def _op_sgd_step(self, step: dict[str, Any]) -> None:
        self.env[step["opt"]].step()

    def _op_sgd_zero_grad(self, step: dict[str, Any]) -> None:
        self.env[step["opt"]].zero_grad()

    def _op_keep(self, step: dict[str, Any]) -> None:
        self.kept[step["as"]] = self.adapter.keep(self.env[step["t"]])

    def _op_snapshot(self, step: dict[str, Any]) -> None:
        if self.take_snapshots:
            self.result.snapshots[step["label"]] = {n: self._state(self.env[n], n not in self.input_leaves)
                                                    for n in step["tensors"]}

    def _op_fact(self, step: dict[str, Any]) -> None:
        ts = [self.env[n] for n in step["tensors"]]
        try:
            if step["kind"] not in FACTS:
                raise ValueError(f"unknown fact kind {step['kind']!r}")
            value: Any = getattr(self, "_fact_" + step["kind"])(step, ts)
        except Exception as exc:  # noqa: BLE001
            value = f"error: {type(exc).__name__}: {_short(str(exc))}"
        self.result.facts[step["label"]] = value

    def _fact_shares_data(self, step: dict[str, Any], ts: list[Any]) -> bool:
        return self.adapter.shares_data(ts[0], ts[1])

    def _fact_shares_data_with_kept(self, step: dict[str, Any], ts: list[Any]) -> bool:
        return self.adapter.shares_data(ts[0], self.kept[step["kept"]])

    def _fact_grad_writable(self, step: dict[str, Any], ts: list[Any]) -> bool:
        return self.adapter.grad_writable(ts[0])

    def _fact_grads_distinct(self, step: dict[str, Any], ts: list[Any]) -> str:
        return self._grads_distinct(step["tensors"])

    def _fact_requires_grad(self, step: dict[str, Any], ts: list[Any]) -> Any:
        value = ts[0].requires_grad
        return value if isinstance(value, bool) else repr(value)[:100]

    def _grads_distinct(self, names: list[str]) -> str:
        """'' when no two grads share memory, else which ones do ('a.grad and b.grad; ...')."""
        grads = [(n, self.adapter.read_grad(self.env[n])) for n in names]
        arrays = [(n, g) for n, g in grads if isinstance(g, np.ndarray)]
        shared = [f"{a}.grad and {b}.grad" for i, (a, ga) in enumerate(arrays)
                  for b, gb in arrays[i + 1:] if _shares_memory(ga, gb)]
        return "; ".join(shared)

    def _state(self, t: Any, with_data: bool = True) -> TensorState:
        st = TensorState()
        try:
            rg = t.requires_grad
            st.requires_grad = rg if isinstance(rg, bool) else repr(rg)[:100]
        except Exception as exc:  # noqa: BLE001
            st.requires_grad = f"error: {type(exc).__name__}"
        try:
            st.data, st.data_dtype, st.data_problem = to_float_array(self.adapter.read_data(t), copy=with_data)
        except Exception as exc:  # noqa: BLE001
            st.data_problem = f"reading .data raised {type(exc).__name__}: {_short(str(exc))}"
        try:
            grad = self.adapter.read_grad(t)
            st.grad_is_none = grad is None
            if grad is not None:
                st.grad, st.grad_dtype, st.grad_problem = to_float_array(grad)
        except Exception as exc:  # noqa: BLE001
            st.grad_is_none = False
            st.grad_problem = f"reading .grad raised {type(exc).__name__}: {_short(str(exc))}"
        return st


# The hot steps' handlers, looked up once (a 10,000-op loop dispatches 10,000 steps, and building the
# method name was a third of that). Plain functions, not bound methods kept on the instance: those would
# make each Interpreter a reference cycle, freed only by the cyclic GC at some later moment instead of
# when the run ends, and a submission whose tape drops entries from weakref callbacks then sees them
# fire in the middle of its own backward.
_HANDLERS = {"binary": Interpreter._op_binary, "unary": Interpreter._op_unary,
             "tensor": Interpreter._op_tensor, "loop": Interpreter._op_loop}


class _StepFailed(Exception):
    """Stops the run after the first step that raised; the error is already recorded."""


def _student_traceback(exc: BaseException) -> str:
    """The traceback without the interpreter's own frames (they mean nothing to a student)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.endswith("interpreter.py")]
    for frame in frames:  # name the student's file as they know it, not by its sandbox path
        if frame.filename.endswith(".py") and "site-packages" not in frame.filename:
            frame.filename = frame.filename.rsplit("/", 1)[-1]
    lines = traceback.format_list(frames[-8:])
    return "".join(lines) + f"{type(exc).__name__}: {exc}"


def run_program(adapter: Adapter, steps: list[dict[str, Any]], arrays: dict[str, np.ndarray],
                take_snapshots: bool = True, lean: bool = False) -> RunResult:
    """Run ``steps`` on ``adapter`` with private copies of ``arrays`` (``lean``: see ``Interpreter``)."""
    return start_program(adapter, arrays, take_snapshots, lean).run(steps)


def start_program(adapter: Adapter, arrays: dict[str, np.ndarray], take_snapshots: bool = True,
                  lean: bool = False) -> Interpreter:
    """An interpreter on private copies of ``arrays``, to run a Program in parts (``run_part``)."""
    own = {k: np.array(v, copy=True) for k, v in arrays.items()}
    return Interpreter(adapter, own, take_snapshots, lean)


def split_point(steps: list[dict[str, Any]]) -> int | None:
    """Index of the first top-level ``backward``: the steps before it build the graph. None if there is none."""
    return next((i for i, s in enumerate(steps) if s.get("op") == "backward" and i > 0), None)
