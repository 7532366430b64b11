"""What suite authors use besides fixtures: Programs, the comparison, and speed measurement.

Speed is judged on the host clock around worker calls, as a ratio against the reference
solution in a separate worker under the same limits, interleaved round by round, median of
the rounds, stopping as soon as the verdict is clear (``verdict_is_clear``). Every timed run
is its own request on fresh draws (``Program.variant``) and its answer is checked against the
reference's answer on the same draws (without a reference, in ``grader check``, the one run is
the Program itself, checked against torch). So a fast wrong answer earns nothing, and the
harness's own work (torch, transport) stays off the clock.
"""

from __future__ import annotations

import math
import statistics
import weakref
from dataclasses import dataclass, field

from grader.programs.expectations import program_digest
from grader.programs.compare import ATOL, RTOL, Mismatch, assert_same
from grader.programs.diagnosis import speed_diagnosis
from grader.grading.executors import BudgetExhausted, Executor, TestTimeout
from grader.programs.interpreter import RunResult, split_point
from grader.programs.program import Handle, Program
from grader.programs.render import array_literal

__all__ = ["PASS_MARGIN", "Program", "SpeedMeasurement", "assert_same", "loop_reproducer", "measure_speed",
           "weighted_sum"]



def weighted_sum(p: Program, y: Handle, shape: tuple[int, ...], name: str = "loss") -> tuple[Handle, Handle]:
    """``(y * w).sum()`` with a random constant ``w``: y's upstream gradient is ``w``, not ones."""
    terms = (y * p.randn_array(shape)).named(f"{name}_terms")
    return terms, terms.sum().named(name)


TARGET_SECONDS = 0.03  # each round times about this much of the reference's work, in separate requests
MIN_ROUNDS = 2         # the fewest rounds a verdict near the limit rests on (the confidence bound needs two)
PASS_MARGIN = 2.0      # rounds all this factor below the limit make a clear pass, even a single round
FAIL_MARGIN = 3.0      # rounds all this factor above it make a clear fail: a fail needs the stronger evidence,
                       # since correct code's rounds range 0.55x..2.5x under a competing load
                       # (benchmarks/check_speed.py), and the slow bugs the lab names are 14x..1000s of times
                       # the reference; a ratio nearer the limit gets more rounds and the confidence bound
CONFIDENCE = 0.99      # one-sided: how sure an early verdict is, for log-ratios of i.i.d. rounds
# one-sided 99% quantiles of Student's t for 1..12 degrees of freedom (a table, not a library call:
# the test kit must not need scipy)
_T99 = (31.821, 6.965, 4.541, 3.747, 3.365, 3.143, 2.998, 2.896, 2.821, 2.764, 2.718, 2.681)


@dataclass(frozen=True)
class SpeedMeasurement:
    ratio: float | None          # the judged ratio (see ``ratios``); None without a reference
    repeats: int                 # timed runs (requests) per side per round
    lab_seconds: list[float]     # per round: the mean seconds of one run
    reference_seconds: list[float]
    limit: float | None = None   # the ratio the rounds were decided against (None: every round ran)
    decision: str = ""           # how the number of rounds was chosen, for the test's output
    lab_backward_seconds: list[float] = field(default_factory=list)        # the backward request alone
    reference_backward_seconds: list[float] = field(default_factory=list)  # (empty: runs not split)

    @property
    def rounds(self) -> int:
        return len(self.lab_seconds)

    @property
    def whole_ratio(self) -> float:
        return statistics.median(self.lab_seconds) / statistics.median(self.reference_seconds)

    @property
    def backward_ratio(self) -> float | None:
        if not self.lab_backward_seconds:
            return None
        return statistics.median(self.lab_backward_seconds) / statistics.median(self.reference_backward_seconds)

    def within(self, factor: float) -> bool:
        """Within ``factor`` of the reference; without one, the time limit already passed is the judge."""
        return self.ratio is None or self.ratio <= factor

    def summary(self) -> str:
        if self.ratio is None:
            return ("judged only by the time limit of one run (`grader check` and the student bundle run no "
                    "reference); the graded run also compares your time with the staff solution's")
        lab, ref = statistics.median(self.lab_seconds), statistics.median(self.reference_seconds)
        text = (f"median of {self.rounds} interleaved rounds of {self.repeats} run(s): "
                f"yours {lab * 1e3:.2f} ms, reference {ref * 1e3:.2f} ms per run, ratio {self.whole_ratio:.2f}x")
        if self.backward_ratio is not None:
            bl, br = statistics.median(self.lab_backward_seconds), statistics.median(self.reference_backward_seconds)
            text += (f"; backward() alone: yours {bl * 1e3:.2f} ms, reference {br * 1e3:.2f} ms, "
                     f"ratio {self.backward_ratio:.2f}x; judged: {self.ratio:.2f}x")
        return text + (f" ({self.decision})" if self.decision else "")


@dataclass
class _Rounds:
    """Per-round mean seconds of one run, for each side; ``backward`` lists only when runs are split."""

    lab: list[float] = field(default_factory=list)
    ref: list[float] = field(default_factory=list)
    lab_backward: list[float] = field(default_factory=list)
    ref_backward: list[float] = field(default_factory=list)
    variants: int = 0   # fresh variants run so far: numbered in order, whatever the repeats per round

    def ratios(self) -> list[float]:
        """Each round's judged ratio: the whole run's, or the worse of it and backward's alone."""
        whole = [a / max(b, 1e-9) for a, b in zip(self.lab, self.ref)]
        if not self.lab_backward:
            return whole
        return [max(w, a / max(b, 1e-9)) for w, a, b in zip(whole, self.lab_backward, self.ref_backward)]

    def ratio(self) -> float:
        whole = statistics.median(self.lab) / statistics.median(self.ref)
        if not self.lab_backward:
            return whole
        return max(whole, statistics.median(self.lab_backward) / statistics.median(self.ref_backward))


def ratio_bounds(ratios: list[float]) -> tuple[float, float]:
    """A one-sided ``CONFIDENCE`` interval (low, high) of the typical ratio, from per-round log-ratios."""
    logs = [math.log(max(r, 1e-9)) for r in ratios]
    n = len(logs)
    if n < 2:
        return 0.0, math.inf
    half = _T99[min(n - 2, len(_T99) - 1)] * statistics.stdev(logs) / math.sqrt(n)
    mean = statistics.fmean(logs)
    return math.exp(mean - half), math.exp(mean + half)


def _margin_side(ratios: list[float], limit: float, pass_margin: float = PASS_MARGIN) -> str | None:
    """"below" when every round is ``pass_margin`` times below ``limit``, "above" when every round is
    ``FAIL_MARGIN`` times above it, else None."""
    if max(ratios) * pass_margin <= limit:
        return "below"
    if min(ratios) >= limit * FAIL_MARGIN:
        return "above"
    return None


def verdict_is_clear(ratios: list[float], limit: float, pass_margin: float = PASS_MARGIN) -> bool:
    """True when the rounds so far put the ratio on one side of ``limit`` (so a run stops early only
    when more rounds could not change it): every round a margin beyond the limit (``PASS_MARGIN`` below
    it, ``FAIL_MARGIN`` above it), one round included (a flip would take a load swing of that factor),
    or at least ``MIN_ROUNDS`` rounds, every one on that side, and the ``CONFIDENCE`` bound too."""
    if not ratios:
        return False
    if _margin_side(ratios, limit, pass_margin) is not None:
        return True
    if len(ratios) < MIN_ROUNDS:
        return False
    low, high = ratio_bounds(ratios)
    return (high < limit and max(ratios) < limit) or (low > limit and min(ratios) > limit)


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
                  rounds: int, slow_limit_s: float, loop_script: list[str] | None = None,
                  limit: float | None = None, split_backward: bool = False,
                  pass_margin: float = PASS_MARGIN) -> SpeedMeasurement:
    """Interleave timed runs of ``program`` on ``lab`` and ``reference``; check the evidence too.

    ``slow_limit_s`` bounds one run (one request) of the submission: past it the test fails as too slow.
    With ``limit`` (the ratio the test judges), rounds stop once the verdict is clear
    (``verdict_is_clear``, at least ``MIN_ROUNDS``); at ``rounds`` a verdict still near the limit
    gets up to ``rounds`` more, so a busy machine costs time, not a correct student's points.
    ``split_backward`` times each run as two requests, the graph building and then ``backward()``
    on (``split_point``), and judges the worse of the whole run's ratio and backward's alone: moving
    work from one to the other cannot help, and a slow backward is not diluted by the forward ops.
    ``loop_script`` replaces the reproducer of a wrong answer by ``loop_reproducer``'s short one.
    ``pass_margin``: how far below ``limit`` every round must be for a pass to be clear at once (a
    limit that is itself a slack over another measured ratio, as the growth test's, can take less).
    """
    try:
        return _measure(lab, reference, torch_ref, program, rounds, slow_limit_s, limit, split_backward,
                        pass_margin)
    except AssertionError as exc:  # too slow, or a Mismatch: say why, from the Program's shape
        found = speed_diagnosis(program, str(exc), too_slow=not isinstance(exc, Mismatch))
        if found is not None:
            exc.diagnosis = found.to_dict()  # type: ignore[attr-defined]  # read by the plugin
        if loop_script is None or not isinstance(exc, Mismatch):
            raise
        what = str(exc).split("\nReproducer (", 1)[0].rstrip()
        script = loop_reproducer(program, torch_ref.run(program), loop_script)
        again = Mismatch(f"{what}\n\nReproducer ({program.title}, seed {program.seed}); save as reproduce.py "
                         f"next to your autograd.py and run it:\n\n{script}")
        again.diagnosis = getattr(exc, "diagnosis", None)  # type: ignore[attr-defined]
        raise again from None


def _timed_run(executor: Executor, program: Program, split: int | None, timeout: float | None,
               lean: bool = True) -> tuple[float, float, RunResult]:
    """(seconds of the whole run, seconds of its backward part or 0.0, evidence): one or two requests.

    ``lean`` (every run checked against the reference's): the random inputs are drawn by the worker
    and the evidence leaves them out, so the timed request is the student's work, not the transport
    of megabytes (at 256x256, 40 ms of a 43 ms request; the matmul itself takes 3 ms)."""
    if split is None:
        seconds, evidence = executor.time(program, 1, timeout=timeout, lean=lean)
        return seconds, 0.0, evidence
    built, backward, evidence = executor.time_split(program, split, timeout=timeout, lean=lean)
    return built + backward, backward, evidence


def _too_slow(program: Program, slow_limit_s: float, first_ref: float | None) -> AssertionError:
    yardstick = f"; the reference needs {first_ref:.3f} s" if first_ref is not None else ""
    return AssertionError(f"{program.title}: one run did not finish within {slow_limit_s:g} s{yardstick}. "
                          "Look for Python loops over elements, recursion, or work repeated per path.")


@dataclass
class _Memo:
    """A Program's measurement so far on one (submission, reference) pair: later tests continue it."""

    repeats: int = 1
    data: _Rounds = field(default_factory=_Rounds)
    failure: AssertionError | None = None   # the measurement failed (too slow, wrong answer): the same again


# reference executor -> submission executor -> (Program digest, split) -> memo. Weak keys: a grading
# session's executors (and so its memos) go with it, and nothing of one submission reaches the next.
_MEMOS: weakref.WeakKeyDictionary[Executor, weakref.WeakKeyDictionary[Executor, dict[tuple[str, int | None], _Memo]]]
_MEMOS = weakref.WeakKeyDictionary()


def _memo_for(lab: Executor, reference: Executor, program: Program, split: int | None) -> tuple[_Memo, bool]:
    """The memo of this measurement, and whether an earlier test made it (the same Program measured
    twice, e.g. a chain test's 10,000 ops and the growth test's long chain, is timed once)."""
    by_lab = _MEMOS.setdefault(reference, weakref.WeakKeyDictionary())
    memos = by_lab.setdefault(getattr(lab, "inner", lab), {})
    key = (program_digest(program), split)
    found = key in memos
    return memos.setdefault(key, _Memo()), found


def _measure(lab: Executor, reference: Executor | None, torch_ref: Executor, program: Program,
             rounds: int, slow_limit_s: float, limit: float | None, split_backward: bool,
             pass_margin: float) -> SpeedMeasurement:
    split = split_point(program.steps) if split_backward else None
    if reference is None:
        _run_alone(lab, torch_ref, program, split, slow_limit_s)
        return SpeedMeasurement(None, 1, [], [])
    memo, earlier = _memo_for(lab, reference, program, split)
    if earlier:
        note = getattr(lab, "note_timed", None)
        if note is not None:
            note(program)      # the feature log still sees what this test times
        if memo.failure is not None:
            again = type(memo.failure)(*memo.failure.args)
            again.diagnosis = getattr(memo.failure, "diagnosis", None)  # type: ignore[attr-defined]
            raise again
    else:
        try:
            memo.repeats, first = _first_runs(lab, reference, program, split, slow_limit_s, memo.data)
        except AssertionError as exc:
            memo.failure = exc
            raise
        if first is not None:  # the first runs are round 0 when one run is long enough to time on its own
            _record(memo.data, split, *first)
    data, repeats = memo.data, memo.repeats
    most = rounds if limit is None else 2 * rounds
    try:
        while len(data.lab) < most and not _enough(data, rounds, limit, pass_margin):
            _round(lab, reference, program, len(data.lab), repeats, split, slow_limit_s, data)
    except AssertionError as exc:
        memo.failure = exc
        raise
    return SpeedMeasurement(data.ratio(), repeats, list(data.lab), list(data.ref), limit,
                            _decision(len(data.lab), rounds, limit, data.ratios(), pass_margin),
                            list(data.lab_backward),
                            list(data.ref_backward))


def _run_alone(lab: Executor, torch_ref: Executor, program: Program, split: int | None,
               slow_limit_s: float) -> None:
    """Without a reference (``grader check``): one run of the Program itself, within the time limit,
    checked against torch (the expectations file)."""
    expected = torch_ref.run(program)
    assert_same(program, expected, _first_lab_run(lab, program, split, slow_limit_s, None, lean=False)[2])


def _first_runs(lab: Executor, reference: Executor, program: Program, split: int | None,
                slow_limit_s: float, data: _Rounds
                ) -> tuple[int, tuple[tuple[float, float], tuple[float, float]] | None]:
    """The first run of each side, on variant 0 (the first fresh draws), the submission's answer
    checked against the reference's on the same draws, as in every round. So the answers checked do
    not depend on the machine: variant 0 always, whatever the repeats. Returns the repeats per
    round, and the first runs' (submission, reference) times when one run is long enough to be
    round 0, else None."""
    first = program.variant(data.variants)
    data.variants += 1
    first_ref = _timed_run(reference, first, split, None)
    first_lab = _first_lab_run(lab, first, split, slow_limit_s, first_ref[0])
    assert_same(first, first_ref[2], first_lab[2])
    repeats = max(1, min(20, math.ceil(TARGET_SECONDS / max(first_ref[0], 1e-6))))
    return repeats, ((first_lab[:2], first_ref[:2]) if repeats == 1 else None)


def _first_lab_run(lab: Executor, program: Program, split: int | None, slow_limit_s: float,
                   reference_seconds: float | None, lean: bool = True) -> tuple[float, float, RunResult]:
    try:
        return _timed_run(lab, program, split, slow_limit_s, lean)
    except BudgetExhausted:
        raise                       # the submission's whole budget is gone: a timeout, not "too slow"
    except TestTimeout:
        raise _too_slow(program, slow_limit_s, reference_seconds) from None


def _enough(data: _Rounds, rounds: int, limit: float | None, pass_margin: float) -> bool:
    """Without a limit every planned round runs; with one, rounds stop once the verdict is clear, or
    at the planned rounds on a pass: only a fail near the limit gets more rounds."""
    if limit is None:
        return len(data.lab) >= rounds
    return (verdict_is_clear(data.ratios(), limit, pass_margin)
            or (len(data.lab) >= rounds and data.ratio() <= limit))


def _record(data: _Rounds, split: int | None, lab: tuple[float, float], ref: tuple[float, float]) -> None:
    data.lab.append(lab[0])
    data.ref.append(ref[0])
    if split is not None:
        data.lab_backward.append(lab[1])
        data.ref_backward.append(ref[1])


def _round(lab: Executor, reference: Executor, program: Program, i: int, repeats: int, split: int | None,
           slow_limit_s: float, data: _Rounds) -> None:
    """One interleaved round: ``repeats`` fresh variants on each side; every lab answer is checked
    against the reference's answer on the same variant (trusted, and computed by the round anyway)."""
    # Every timed run is its own request on fresh draws, and the submission's answer to each is
    # checked: repeats cannot be skipped inside the sandbox, nor answers replayed from a cache.
    # Variants are numbered in order whatever the repeats (which depend on the reference's speed),
    # after the first runs' variant 0.
    variants = [program.variant(data.variants + r) for r in range(repeats)]
    data.variants += repeats
    answers: dict[str, list[RunResult]] = {"lab": [], "reference": []}
    totals = {"lab": [0.0, 0.0], "reference": [0.0, 0.0]}
    for side in (("reference", "lab") if i % 2 == 0 else ("lab", "reference")):
        executor, timeout = (lab, slow_limit_s) if side == "lab" else (reference, None)
        for variant in variants:
            whole, backward, evidence = _timed_run(executor, variant, split, timeout)
            totals[side][0] += whole
            totals[side][1] += backward
            answers[side].append(evidence)
    for variant, expected, got in zip(variants, answers["reference"], answers["lab"]):
        assert_same(variant, expected, got)
    _record(data, split, (totals["lab"][0] / repeats, totals["lab"][1] / repeats),
            (totals["reference"][0] / repeats, totals["reference"][1] / repeats))


def _decision(used: int, rounds: int, limit: float | None, ratios: list[float], pass_margin: float) -> str:
    if limit is None:
        return f"all {used} rounds"
    low, high = ratio_bounds(ratios)
    bound = f"{CONFIDENCE:.0%} bounds {low:.2f}x..{high:.2f}x against the limit {limit:g}x"
    side = _margin_side(ratios, limit, pass_margin)
    if side is not None:
        margin = pass_margin if side == "below" else FAIL_MARGIN
        bound = f"every round at least {margin:g}x {side} the limit {limit:g}x"
    if used < rounds:
        return f"verdict clear after {used} of up to {rounds} rounds: {bound}"
    if used > rounds:
        return f"near the limit: {used} rounds instead of {rounds}, {bound}"
    return f"{used} rounds, {bound}"
