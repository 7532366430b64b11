"""What suite authors use besides fixtures: Programs, the comparison, and speed measurement.

Speed is judged on the host clock around worker calls, as a ratio against the reference
solution in a separate worker under the same limits, interleaved round by round, median of
the rounds; the timed run's evidence is checked too, so a fast wrong answer earns nothing.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from grader.programs.compare import ATOL, RTOL, Mismatch, assert_same
from grader.grading.executors import Executor, TestTimeout
from grader.programs.interpreter import RunResult
from grader.programs.program import Handle, Program
from grader.programs.render import array_literal

__all__ = ["Program", "SpeedMeasurement", "assert_same", "loop_reproducer", "measure_speed", "weighted_sum"]



def weighted_sum(p: Program, y: Handle, shape: tuple[int, ...], name: str = "loss") -> tuple[Handle, Handle]:
    """``(y * w).sum()`` with a random constant ``w``: y's upstream gradient is ``w``, not ones."""
    terms = (y * p.randn_array(shape)).named(f"{name}_terms")
    return terms, terms.sum().named(name)


TARGET_SECONDS = 0.05  # each timed request of the reference lasts about this long


@dataclass(frozen=True)
class SpeedMeasurement:
    ratio: float | None          # median(lab) / median(reference); None without a reference
    repeats: int
    lab_seconds: list[float]
    reference_seconds: list[float]

    def within(self, factor: float) -> bool:
        """Within ``factor`` of the reference; without one, the time limit already passed is the judge."""
        return self.ratio is None or self.ratio <= factor

    def summary(self) -> str:
        if self.ratio is None:
            return ("no reference here (a student bundle): judged only by the time limit of one run; "
                    "the graded run compares with the staff solution")
        lab, ref = statistics.median(self.lab_seconds), statistics.median(self.reference_seconds)
        return (f"median of {len(self.lab_seconds)} interleaved rounds of {self.repeats} run(s): "
                f"yours {lab / self.repeats * 1e3:.2f} ms, reference {ref / self.repeats * 1e3:.2f} ms "
                f"per run, ratio {self.ratio:.2f}x")


def loop_reproducer(program: Program, expected: RunResult, body: list[str]) -> str:
    """A short script for a long Program: the loop that builds it, then torch's gradients of its snapshot.

    The generic reproducer of a 10,000-op Program is 10,000 lines; ``body`` builds the same tensors
    with a loop (same ``randn`` draws), and the expected gradients come from torch's run.
    """
    lines = [f"# Reproducer: {program.title} (seed {program.seed})",
             "import numpy as np",
             "from autograd import Tensor",
             "",
             "def randn(k, shape):",
             f"    return np.random.default_rng(({program.seed}, k)).standard_normal(shape)",
             "",
             *body]
    for states in expected.snapshots.values():
        for name, state in states.items():
            lines += [f"expected = {array_literal(state.grad)}  # {name}.grad computed by torch.autograd",
                      f"np.testing.assert_allclose({name}.grad, expected, rtol={RTOL}, atol={ATOL}, "
                      f"err_msg='{name}.grad')"]
    lines.append("print('no difference found: this program runs as torch.autograd does')")
    return "\n".join(lines) + "\n"


def measure_speed(lab: Executor, reference: Executor | None, torch_ref: Executor, program: Program,
                  rounds: int, slow_limit_s: float, loop_script: list[str] | None = None) -> SpeedMeasurement:
    """Interleave timed runs of ``program`` on ``lab`` and ``reference``; check the evidence too.

    ``slow_limit_s`` bounds one run of the submission: past it the test fails as too slow.
    ``loop_script`` replaces the reproducer of a wrong answer by ``loop_reproducer``'s short one.
    """
    try:
        return _measure(lab, reference, torch_ref, program, rounds, slow_limit_s)
    except Mismatch as exc:
        if loop_script is None:
            raise
        what = str(exc).split("\nReproducer (", 1)[0].rstrip()
        script = loop_reproducer(program, torch_ref.run(program), loop_script)
        raise Mismatch(f"{what}\n\nReproducer ({program.title}, seed {program.seed}); save as reproduce.py "
                       f"next to your autograd.py and run it:\n\n{script}") from None


def _measure(lab: Executor, reference: Executor | None, torch_ref: Executor, program: Program,
             rounds: int, slow_limit_s: float) -> SpeedMeasurement:
    expected = torch_ref.run(program)
    first_ref = reference.time(program, 1)[0] if reference is not None else None
    try:
        _, evidence = lab.time(program, 1, timeout=slow_limit_s)
    except TestTimeout:
        yardstick = f"; the reference needs {first_ref:.3f} s" if first_ref is not None else ""
        raise AssertionError(
            f"{program.title}: one run did not finish within {slow_limit_s:g} s{yardstick}. "
            "Look for Python loops over elements, recursion, or work repeated per path."
        ) from None
    assert_same(program, expected, evidence)
    if reference is None or first_ref is None:
        return SpeedMeasurement(None, 1, [], [])
    repeats = max(1, min(20, math.ceil(TARGET_SECONDS / max(first_ref, 1e-6))))
    lab_times: list[float] = []
    ref_times: list[float] = []
    for i in range(rounds):
        # Every timed run is its own request on fresh draws, and the submission's answer to each is
        # checked: repeats cannot be skipped inside the sandbox, nor answers replayed from a cache.
        variants = [program.variant(i * repeats + r) for r in range(repeats)]
        pair = [(lab, lab_times), (reference, ref_times)]
        for executor, times in pair if i % 2 else reversed(pair):
            total = 0.0
            for variant in variants:
                seconds, evidence = executor.time(variant, 1, timeout=slow_limit_s)
                total += seconds
                if executor is lab:
                    assert_same(variant, torch_ref.run(variant), evidence)
            times.append(total)
    ratio = statistics.median(lab_times) / statistics.median(ref_times)
    return SpeedMeasurement(ratio, repeats, lab_times, ref_times)
