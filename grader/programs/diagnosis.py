"""What a diagnosis says: where the bug is (an op's backward, or a mechanism of the graph pass) and
what a student should look at, in the handout's words.

A ``Diagnosis`` is plain data (JSON-able through ``to_dict``): the plugin stores it with the test's
outcome, the report groups tests by ``key``, the terminal and the HTML class report print ``summary``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from grader.programs.program import Program

# The handout's numbered pitfalls (student_template/handout.md, section 6), by mechanism.
PITFALLS: dict[int, str] = {
    1: "reduce broadcast grads",
    2: "+= not = for grads",
    3: "propagate this pass's gradient, not the accumulated .grad",
    4: "no recursion in the topological sort",
    5: "no path enumeration: each node once, in reverse topological order",
    6: "relu'(0) = 0",
    7: "never share grad arrays",
    8: "never modify inputs in place; Tensor(data) copies into float64",
    9: "sum() has shape ()",
    10: "zero_grad in the training loop",
    11: "SGD updates p.data in place",
    12: "RuntimeError, not NotImplementedError",
    13: "no_grad() restores the previous state, in finally",
}

# Graph-level mechanisms and ``api`` sites: (how a student reads it, advice, pitfall).
MECHANISMS: dict[str, tuple[str, str, int | None]] = {
    "accumulation": ("the graph pass: a tensor used several times does not get the sum of its contributions",
                     "in backward(), add each incoming gradient to what the tensor already received", 2),
    "topological-order": ("the graph pass: nodes are not visited in reverse topological order",
                          "process a node only after every tensor that uses it (a depth-first topological "
                          "sort, then reversed); breadth-first order is not enough on skip connections", 5),
    "second-backward": ("the graph pass: a second backward() feeds the accumulated .grad on",
                        "keep this pass's gradients apart (a dict keyed by id(tensor)) and only add them "
                        "into .grad", 3),
    "accumulate-across-backward": ("the graph pass: .grad is overwritten, not accumulated, across backward() calls",
                                   "add into .grad (node.grad = node.grad + g) when it already holds an array", 2),
    "intermediate-grads": ("the graph pass: intermediate tensors do not keep their .grad",
                           "store .grad on every tensor that requires grad, not only on leaves", None),
    "constants-get-grad": ("the graph pass: tensors that do not require grad receive a .grad",
                           "skip parents with requires_grad False while walking the graph", None),
    "shared-grad-arrays": ("the graph pass: two tensors share one grad array",
                           "copy a gradient before storing it or handing it to a second parent", 7),
    "topological-sort-recursion": ("the topological sort recurses (RecursionError on long chains)",
                                   "sort with an explicit stack", 4),
    "path-enumeration": ("backward walks every path of the graph (exponential on diamonds)",
                         "visit each node once, in reverse topological order", 5),
    "propagation": ("the graph pass (every op's backward is right on its own)",
                    "compare your backward() loop with the contract: reverse topological order, each node "
                    "once, contributions added", 2),
    "requires-grad": ("requires_grad propagation: a result requires grad iff any input does",
                      "use any(p.requires_grad for p in parents), and wrap numbers as constants", None),
    "no_grad": ("no_grad(): results inside must not require grad, and the previous state must come back",
                "check the flag in every op, restore the saved state (not True) in a finally", 13),
    "detach": ("detach(): the result shares the data array and requires no grad", "return a new Tensor "
               "around the same self.data array, requires_grad=False, no parents", None),
    "zero_grad": ("Tensor.zero_grad(): grad must become None", "set self.grad = None", None),
    "sgd": ("SGD: step() updates each parameter's data in place; zero_grad() sets every grad to None",
            "p.data -= lr * p.grad on the same Tensor objects, store list(params)", 11),
    "tensor": ("Tensor(data): data must be a private float64 copy",
               "np.array(data, dtype=np.float64) (a copy, whatever the input)", 8),
    "backward-errors": ("backward() must raise RuntimeError on a non-scalar or a tensor without grad",
                        "raise RuntimeError (NotImplementedError or ValueError do not count)", 12),
    "in-place": ("an op modifies its input's data in place", "compute into a new array", 8),
}

# Where a failure's explanation prints its (full) reproducer: the terminal folds it when a diagnosis
# brings a shrunk one, unless asked (--full-reproducer); the JSON report keeps both.
FULL_REPRODUCER_START = "\nReproducer ("

OPERAND_WORDS = {"left": "the gradient of the left operand", "right": "the gradient of the right operand",
                 "input": "the gradient of its input", "both": "the gradients of both operands",
                 "forward": "its forward value", "raises": "it raises an exception",
                 "backward-raises": "it raises an exception", "slow": "its speed"}


@dataclass(frozen=True)
class Diagnosis:
    """Where one failure comes from. ``kind``: ``op`` (an op's local rule), ``graph`` (the graph pass),
    ``api`` (a part of the API outside ops and backward: no_grad, SGD, Tensor(...))."""

    kind: str
    site: str                     # op name ("mul") or mechanism ("accumulation")
    operand: str | None = None    # op-level: left | right | input | both | forward | raises
    case: str | None = None       # "a broadcast (H,) operand", "a number on the left", ...
    detail: str = ""              # one line of evidence (expected vs got)
    pitfall: int | None = None
    reproducer: str | None = None  # the shrunk reproducer (a script), when one was found

    @property
    def key(self) -> str:
        """What failures share when they have one cause: grouped by this."""
        return ":".join(x for x in (self.kind, self.site, self.operand or "") if x)

    @property
    def summary(self) -> str:
        if self.kind == "op":
            part = {"forward": "forward", "raises": "forward", "slow": "forward and backward"}.get(
                self.operand or "", "backward")
            what = OPERAND_WORDS.get(self.operand or "", "")
            return f"{self.site}'s {part} ({what})" if what else f"{self.site}'s {part}"
        return MECHANISMS.get(self.site, (self.site, "", None))[0]

    @property
    def advice(self) -> str:
        if self.kind == "op":
            text = _op_advice(self)
        else:
            text = MECHANISMS.get(self.site, ("", "", None))[1]
        if self.pitfall:
            text += f" (handout pitfall {self.pitfall}: {PITFALLS[self.pitfall]})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "key": self.key, "summary": self.summary, "advice": self.advice}


def lead_text(summary: str, case: str | None, detail: str, advice: str, reproducer: str | None) -> str:
    """The lines that open a diagnosed failure's feedback: where the bug is, what to look at, the
    shrunk reproducer."""
    lines = [f"diagnosis: {summary}" + (f", when {case}" if case else "")]
    if detail:
        lines.append(f"  {detail}")
    if advice:
        lines.append(f"  what to look at: {advice}")
    if reproducer:
        n = len(reproducer.strip().splitlines())
        lines += ["", f"Smallest program that shows it ({n} lines); save as reproduce.py next to your "
                  "autograd.py and run it:", "", reproducer.rstrip()]
    return "\n".join(lines)


def _op_advice(d: Diagnosis) -> str:
    if d.operand == "raises":
        return f"run the smallest program below: {d.site} raises where torch does not"
    if d.operand == "slow":
        return f"vectorise {d.site}: one NumPy call on whole arrays (no Python loops over elements)"
    if d.operand == "backward-raises":
        text = f"{d.site}'s backward raises where torch's does not: check the shapes it returns"
        return text + (" (sum a broadcast gradient back to the operand's shape)" if d.case and "broadcast" in d.case
                       else "")
    if d.operand == "forward":
        return f"the value {d.site} computes differs from torch's: compare your forward with the contract"
    if d.case and "broadcast" in d.case:
        return (f"in {d.site}'s backward, sum the gradient back to the operand's own shape "
                "(_unbroadcast), whichever side the operand is on")
    if d.site == "mul":
        return "d(a*b)/da = b and d(a*b)/db = a: each operand's gradient uses the *other* operand's data"
    if d.site == "matmul":
        return "for C = A @ B: dA = g @ B.T and dB = A.T @ g (shapes of A and B)"
    if d.site == "relu":
        return "relu's gradient is g where the *input* is > 0 (strictly), 0 elsewhere"
    if d.site == "sum":
        return "sum's gradient is the upstream g (a scalar) spread over the input's shape: np.full(shape, g)"
    if d.site == "add":
        return "add passes the upstream gradient to both operands (reduced to each operand's shape)"
    return f"compare {d.site}'s backward rule with torch's"


def pitfall_for_case(site: str, case: str | None) -> int | None:
    """The handout's pitfall for an op-level bug in this case, if one fits."""
    if case and "read-only" in case:
        return 7
    if case and "writes into its input" in case:
        return 8
    if case and "broadcast" in case:
        return 1
    if site == "relu" and case and "exactly 0" in case:
        return 6
    if site == "sum" and case and "0-d" in case:
        return 9
    return None


def group_sentence(n_failed: int, groups: list[tuple[str, int]]) -> str:
    """``7 tests fail, all through mul's backward (...)``; groups are (summary, count), largest first."""
    tests = f"{n_failed} test{'s' if n_failed != 1 else ''} fail{'s' if n_failed == 1 else ''}"
    if not groups:
        return tests
    if len(groups) == 1 and groups[0][1] == n_failed:
        return f"{tests}, {'all ' if n_failed > 1 else ''}through {groups[0][0]}"
    parts = "; ".join(f"{count} through {summary}" for summary, count in groups)
    return f"{tests}: {parts}"


def needs_of(program: Program) -> set[str]:
    """What the Program exercises: a tensor used more than once, or more than one backward pass."""
    uses: dict[str, int] = {}
    for step in program.flat_steps():
        if step["op"] in ("binary", "unary"):
            for k in ("a", "b"):
                ref = step.get(k)
                name = ref if isinstance(ref, str) else (ref or {}).get("ref")
                if name:
                    uses[name] = uses.get(name, 0) + 1
    found = {"reuse"} if any(n > 1 for n in uses.values()) else set()
    if sum(s["op"] == "backward" and not s.get("expect_error") for s in program.flat_steps()) > 1:
        found.add("passes")
    return found


def speed_diagnosis(program: Program, failure: str, too_slow: bool) -> Diagnosis | None:
    """Why a timed Program is too slow (or hit the recursion limit), read off its shape: big matmuls,
    diamonds. A wrong answer of a timed run is not diagnosed here (the other suites do)."""
    headline = failure.strip().splitlines()[0] if failure.strip() else ""
    if headline.startswith("RecursionError"):
        return Diagnosis("graph", "topological-sort-recursion", detail=headline[:200], pitfall=4)
    if not too_slow:
        return None
    flat = program.flat_steps()
    big_matmul = any(s["op"] == "binary" and s["fn"] == "matmul" for s in flat) and max(
        (a.size for a in program.arrays.values()), default=0) >= 64 * 64
    if big_matmul:
        return Diagnosis("op", "matmul", "slow", "large matrices", headline[:200])
    if "reuse" in needs_of(program):
        return Diagnosis("graph", "path-enumeration", detail=headline[:200], pitfall=5)
    return None
