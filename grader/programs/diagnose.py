"""Diagnosis before detail: trace a failing Program to the op whose local rule is wrong, or to the
mechanism of the graph pass (or the API) that is, and shrink it to the smallest program that shows it.

Runs only on a failure. The first difference the comparison found says where to look: a gradient
goes to ``blame`` (local checks of every op on the backward path, then the graph probes when every
op is right alone); a forward value or an exception at an op goes to that op's local check; the
rest (no_grad, detach, SGD, Tensor(...), RuntimeError checks) is read off the Program's structure.
The submission only ever produces evidence; every verdict here is computed on the host.
"""

from __future__ import annotations

from typing import Any

from grader.programs.blame import OpCall, Operand, Runner, Trace, Verdict, describe_case, run_checks, trace
from grader.programs.compare import Difference, find_differences
from grader.programs.diagnosis import MECHANISMS, Diagnosis, pitfall_for_case
from grader.programs.graph_probes import probe, requires_grad_broken, zero_grad_broken
from grader.programs.interpreter import RunResult
from grader.programs.program import Program
from grader.programs.shrink import render_check, shrink

MAX_CHECKS = 48    # ops checked on their own per failing Program (the last ones: first in backward order)


def diagnose(program: Program, expected: RunResult, got: RunResult, runner: Runner) -> Diagnosis | None:
    """Why ``got`` differs from ``expected``; None when it does not (or when nothing fits)."""
    diffs = find_differences(program, expected, got)
    if not diffs:
        return None
    return Diagnoser(program, runner).first(diffs[0], got)


class Diagnoser:
    """One failing Program: its steps, torch's trace of it (made on first use), the submission's runner."""

    def __init__(self, program: Program, runner: Runner) -> None:
        self.p, self.runner = program, runner
        self.flat = program.flat_steps()
        self._trace: Trace | None = None
        self.when = 0   # position of the observation that showed the difference

    @property
    def trace(self) -> Trace:
        if self._trace is None:
            self._trace = trace(self.p)
        return self._trace

    def first(self, diff: Difference, got: RunResult) -> Diagnosis | None:
        kind, subject = diff.subject
        self.when = diff.when
        if kind == "error":
            return self._error(int(subject) if subject.isdigit() else -1, got)
        if kind in ("grad", "grad_dtype", "grad_missing"):
            cleared = self._zero_grad_between_passes()
            if cleared:
                return cleared
            if kind == "grad_missing":
                api = self._after_last_backward(subject)
                if api:
                    return api
                if self._producer(subject) not in (None, "tensor"):
                    return Diagnosis("graph", "intermediate-grads", detail=diff.headline)
            return self.blame(diff.headline)
        if kind == "grad_none":
            return self._after_last_backward(subject) or Diagnosis("graph", "constants-get-grad", detail=diff.headline)
        if kind in ("data", "data_dtype"):
            return self._data(subject, kind, diff.headline)
        if kind in ("requires_grad", "fact:requires_grad"):
            return self._requires_grad(self._fact_tensor(subject) if kind.startswith("fact") else subject,
                                       diff.headline)
        if kind == "fact:grads_distinct":
            return Diagnosis("graph", "shared-grad-arrays", detail=diff.headline, pitfall=7)
        if kind == "fact:grad_writable":
            return self._readonly_grad(self._fact_tensor(subject), diff.headline)
        if kind == "fact:shares_data":
            return Diagnosis("api", "detach", detail=diff.headline)
        if kind == "fact:shares_data_with_kept":
            return Diagnosis("api", "sgd", detail=diff.headline, pitfall=11)
        if kind == "caught":
            return Diagnosis("api", "backward-errors", detail=diff.headline, pitfall=12)
        if kind == "input":
            return Diagnosis("api", "tensor", detail=diff.headline, pitfall=8)
        return None

    # ---- gradients: blame an op, else the graph pass ----

    def blame(self, headline: str) -> Diagnosis:
        order = self.trace.in_backward[:MAX_CHECKS]
        calls = [self.trace.calls[i] for i in order]
        verdicts = run_checks(calls, self.runner)
        for call, verdict in zip(calls, verdicts):
            if verdict.ok or verdict.inconclusive:
                continue
            if call.shared and verdict.operand != "forward" and self._copies_pass(call):
                return self._graph(headline, forced="accumulation")
            return self._op(call, verdict)
        return self._graph(headline)

    def _copies_pass(self, call: OpCall) -> bool:
        """``x * x`` fails but ``x * x'`` (two leaves of equal values) passes: the reuse is missed."""
        second = call.operands[1]
        copies = OpCall(call.fn, [call.operands[0], Operand("tensor", second.value, second.name + "_copy",
                                                            second.requires_grad)], call.upstream, call.out)
        return run_checks([copies], self.runner)[0].ok

    def _graph(self, headline: str, forced: str | None = None) -> Diagnosis:
        mechanism, script = probe(self.p, self.runner)
        if forced and mechanism == "propagation":
            mechanism = forced
        return Diagnosis("graph", mechanism, detail="every op's backward is right on its own; " + headline,
                         pitfall=MECHANISMS[mechanism][2], reproducer=script)

    def _op(self, call: OpCall, verdict: Verdict) -> Diagnosis:
        try:
            small, small_verdict = shrink(call, verdict, self.runner)
        except Exception:  # noqa: BLE001 - out of time or the sandbox failed: show the check unshrunk
            small, small_verdict = call, verdict
        case = describe_case(call, verdict.operand)
        if verdict.read_only or verdict.modifies_input:
            what = "the gradient it stores is a read-only array" if verdict.read_only else "it writes into its input's data"
            case = f"{what}, {case}" if case else what
        d = Diagnosis("op", call.fn, verdict.operand, case, verdict.detail, pitfall_for_case(call.fn, case))
        script = render_check(small, small_verdict, f"{d.summary}: the smallest program that shows it")
        return Diagnosis(d.kind, d.site, d.operand, d.case, d.detail, d.pitfall, script)

    # ---- values and exceptions at an op ----

    def _error(self, step: int, got: RunResult) -> Diagnosis | None:
        if not 0 <= step < len(self.flat):
            return None
        op = self.flat[step]["op"]
        err = got.error or {}
        text = f"{err.get('type')}: {err.get('message')}"
        if op in ("binary", "unary"):
            return self._op_at(step, text) or Diagnosis("op", self.flat[step]["fn"], "raises", detail=text,
                                                         case=self._case_at(step))
        if op == "backward":
            if err.get("type") == "RecursionError":
                return Diagnosis("graph", "topological-sort-recursion", detail=text, pitfall=4)
            broken, script = requires_grad_broken(self.runner)
            if broken:  # the tensor backward() was called on does not require grad, though torch's does
                return Diagnosis("graph", "requires-grad", detail=text, reproducer=script)
            return self.blame(f"backward() raised {text}")
        site = {"sgd": "sgd", "sgd_step": "sgd", "sgd_zero_grad": "sgd", "no_grad": "no_grad",
                "tensor": "tensor", "zero_grad": "zero_grad"}.get(op)
        return Diagnosis("api", site, detail=text, pitfall=_API_PITFALL.get(site)) if site else None

    def _first_failing(self, indices: list[int], only_in_place: bool = False) -> Diagnosis | None:
        """Check the ops at ``indices`` on their own; the first (in the order given) that fails."""
        calls = [self.trace.calls[i] for i in indices if i in self.trace.calls][:MAX_CHECKS]
        for call, verdict in zip(calls, run_checks(calls, self.runner)):
            if not verdict.ok and not verdict.inconclusive and (verdict.modifies_input or not only_in_place):
                return self._op(call, verdict)
        return None

    def _op_at(self, step: int, headline: str) -> Diagnosis | None:
        """A forward value or an exception at ``step``: the first op up to there that is wrong alone
        (a wrong value early on can make a later op raise)."""
        earlier = sorted(i for i in self.trace.calls if i <= step)[-MAX_CHECKS:]
        return self._first_failing(earlier)

    def _data(self, name: str, kind: str, headline: str) -> Diagnosis | None:
        producer = self._producer(name)
        index = next((i for i, s in enumerate(self.flat) if s.get("out") == name), -1)
        if producer == "tensor" and kind == "data_dtype":
            return Diagnosis("api", "tensor", detail=headline, pitfall=8)
        if producer == "tensor" and any(s["op"] == "sgd_step" for s in self.flat):
            return Diagnosis("api", "sgd", detail=headline, pitfall=11)
        if producer != "tensor" and self._in_no_grad(index):
            return Diagnosis("api", "no_grad", detail=headline, pitfall=13)
        if producer != "tensor":
            found = self._first_failing([index])
            if found is not None:
                return found
        users = [i for i, s in enumerate(self.flat) if s["op"] in ("binary", "unary") and s in self.p.consumers(name)]
        found = self._first_failing(users, only_in_place=True)  # did a later op write into its data?
        if found is not None:
            return found
        if producer == "tensor":
            return Diagnosis("api", "tensor", detail=headline, pitfall=8)
        return Diagnosis("op", self.flat[index]["fn"], "forward", detail=headline) if index >= 0 else None

    def _case_at(self, step: int) -> str | None:
        call = self.trace.calls.get(step)
        return describe_case(call, "raises") if call is not None else None

    def _readonly_grad(self, name: str, headline: str) -> Diagnosis:
        users = self.p.consumers(name)
        if len(users) == 1:
            return Diagnosis("op", users[0]["fn"], "input", "the gradient is a read-only view", headline, pitfall=7)
        return Diagnosis("graph", "shared-grad-arrays", detail=headline, pitfall=7)

    # ---- requires_grad, no_grad, detach, SGD, zero_grad ----

    def _requires_grad(self, name: str, headline: str) -> Diagnosis:
        index = next((i for i, s in enumerate(self.flat) if s.get("out") == name), -1)
        step = self.flat[index] if index >= 0 else {}
        if step.get("op") == "unary" and step.get("fn") == "detach":
            return Diagnosis("api", "detach", detail=headline)
        if self._in_no_grad(index) or any(s["op"] == "no_grad" for s in self.flat[:max(index, 0)]):
            return Diagnosis("api", "no_grad", detail=headline, pitfall=13)
        return Diagnosis("graph", "requires-grad", detail=headline)

    def _zero_grad_between_passes(self) -> Diagnosis | None:
        """Grads that sum over passes because zero_grad() (the tensor's or SGD's) does not clear them."""
        before = self.flat[:self.when]
        backwards = [i for i, s in enumerate(before) if s["op"] == "backward"]
        between = {s["op"] for s in before[backwards[0]:backwards[-1]]} if len(backwards) > 1 else set()
        for op, via_sgd, site in (("sgd_zero_grad", True, "sgd"), ("zero_grad", False, "zero_grad")):
            if op in between:
                broken, script = zero_grad_broken(self.runner, via_sgd)
                if broken:
                    return Diagnosis("api", site, detail="grads are not cleared between backward passes",
                                     pitfall=10 if via_sgd else None, reproducer=script)
        return None

    def _after_last_backward(self, name: str) -> Diagnosis | None:
        """A grad that SGD or zero_grad should have left alone (or cleared) after the last backward."""
        before = self.flat[:self.when] if self.when else self.flat
        last = max((i for i, s in enumerate(before) if s["op"] == "backward"), default=-1)
        ops = {s["op"] for s in before[last + 1:] if name in (s.get("t"), *s.get("params", ())) or "opt" in s}
        if "sgd_zero_grad" in ops or "sgd_step" in ops:
            return Diagnosis("api", "sgd", pitfall=11)
        if "zero_grad" in ops:
            return Diagnosis("api", "zero_grad")
        return None

    def _producer(self, name: str) -> str | None:
        step = self.p.producer(name)
        return None if step is None else step["op"]

    def _in_no_grad(self, index: int) -> bool:
        pos = 0
        for step in self.p.steps:
            size = 1 + (len(Program("", steps=step["body"]).flat_steps()) if step["op"] == "no_grad" else 0)
            if step["op"] == "no_grad" and pos < index < pos + size:
                return True
            pos += size
        return False

    def _fact_tensor(self, label: str) -> str:
        step = next((s for s in self.flat if s["op"] == "fact" and s["label"] == label), {})
        tensors: Any = step.get("tensors") or [""]
        return str(tensors[0])


_API_PITFALL = {"sgd": 11, "no_grad": 13, "tensor": 8}
