"""Host-side decoding of a worker's reply into a RunResult; trusts nothing.

Whatever a sandbox sends is checked for type, shape and size here. Anything malformed raises
``MalformedEvidence`` (an error of that one test), never a crash of the grader.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from grader.programs.interpreter import MAX_ELEMENTS, RunResult, TensorState

_STATE_TEXT = ("data_dtype", "data_problem", "grad_dtype", "grad_problem")


class MalformedEvidence(Exception):
    """The worker's reply is not well-formed evidence."""


def _text(value: Any, what: str, limit: int = 4000) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedEvidence(f"{what} is not a string")
    return value[:limit]


def _array(arrays: dict[str, np.ndarray], key: Any, what: str) -> np.ndarray | None:
    if key is None:
        return None
    arr = arrays.get(key) if isinstance(key, str) else None
    if not isinstance(arr, np.ndarray) or arr.dtype != np.float64 or arr.size > MAX_ELEMENTS:
        raise MalformedEvidence(f"{what} is not a float64 array of a sane size")
    return arr


def _state(meta: Any, arrays: dict[str, np.ndarray], what: str) -> TensorState:
    if not isinstance(meta, dict):
        raise MalformedEvidence(f"{what} is not an object")
    rg = meta.get("requires_grad")
    if not isinstance(rg, (bool, str, type(None))):
        raise MalformedEvidence(f"{what}.requires_grad has a bad type")
    st = TensorState(requires_grad=rg if not isinstance(rg, str) else rg[:200],
                     grad_is_none=bool(meta.get("grad_is_none", True)))
    for k in _STATE_TEXT:
        setattr(st, k, _text(meta.get(k), f"{what}.{k}"))
    st.data = _array(arrays, meta.get("data"), f"{what}.data")
    st.grad = _array(arrays, meta.get("grad"), f"{what}.grad")
    return st


def _scalar(value: Any) -> Any:
    if isinstance(value, (bool, int, float, type(None))):
        return value
    if isinstance(value, str):
        return value[:4000]
    raise MalformedEvidence("a fact is not a scalar")


def inputs_unchanged(program_arrays: dict[str, np.ndarray], arrays: dict[str, np.ndarray]) -> dict[str, bool]:
    """Compare the inputs as the worker left them with the Program's own copies, here on the host."""
    return {key: bool(isinstance(arrays.get(f"in_{key}"), np.ndarray)
                      and arrays[f"in_{key}"].shape == original.shape
                      and np.array_equal(arrays[f"in_{key}"], original))
            for key, original in program_arrays.items()}


def run_result_from_wire(header: Any, arrays: dict[str, np.ndarray],
                         program_arrays: dict[str, np.ndarray] | None = None) -> RunResult:
    """Decode a reply; with ``program_arrays``, whether inputs changed is judged here, not by the worker."""
    if not isinstance(header, dict):
        raise MalformedEvidence("reply header is not an object")
    result = RunResult()
    snaps = header.get("snapshots") or {}
    if not isinstance(snaps, dict):
        raise MalformedEvidence("snapshots is not an object")
    for label, states in snaps.items():
        if not isinstance(states, dict):
            raise MalformedEvidence(f"snapshot {label!r} is not an object")
        result.snapshots[str(label)] = {str(n): _state(m, arrays, f"{label}/{n}") for n, m in states.items()}
    facts = header.get("facts") or {}
    caught = header.get("caught") or {}
    unchanged = header.get("inputs_unchanged") or {}
    if not all(isinstance(x, dict) for x in (facts, caught, unchanged)):
        raise MalformedEvidence("facts, caught or inputs_unchanged is not an object")
    result.facts = {str(k): _scalar(v) for k, v in facts.items()}
    for label, c in caught.items():
        if not isinstance(c, dict):
            raise MalformedEvidence("caught entry is not an object")
        result.caught[str(label)] = {"raised": bool(c.get("raised")), "runtime_error": bool(c.get("runtime_error")),
                                     "type": _text(c.get("type"), "caught.type", 200),
                                     "message": _text(c.get("message"), "caught.message") or ""}
    result.inputs_unchanged = ({str(k): bool(v) for k, v in unchanged.items()} if program_arrays is None
                               else inputs_unchanged(program_arrays, arrays))
    err = header.get("error")
    if err is not None:
        if not isinstance(err, dict) or not isinstance(err.get("step"), int):
            raise MalformedEvidence("error is not well-formed")
        result.error = {"step": err["step"], "op": _text(err.get("op"), "error.op", 50),
                        "type": _text(err.get("type"), "error.type", 200),
                        "message": _text(err.get("message"), "error.message"),
                        "traceback": _text(err.get("traceback"), "error.traceback")}
    return result
