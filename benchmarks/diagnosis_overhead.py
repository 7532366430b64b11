"""What the diagnosis costs ``grader check``: nothing on a correct submission, at most 2 s on a failing one.

``grader check`` (public tests, local sandbox) runs on the reference and on buggy variants, with the
diagnosis on and off (``GRADER_DIAGNOSIS=0``), interleaved, ``--repeats`` times each; prints the
median wall times, their difference beside the target, and the diagnosis's own time as the report
records it (the sum of ``tests[].diagnosis.seconds``: host clock around the local checks, the
shrinking and the probes, so less noisy than a difference of two whole runs). The machine's load
is printed too: on a shared machine the whole-run difference is noisy.

Usage: python benchmarks/diagnosis_overhead.py [--repeats 3] [--parts ops,mlp,graph,training]
       [--variants mul_backward_uses_own_data,grad_overwritten_when_reused,bias_grad_not_unbroadcast]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from grader.assignment import find_assignment  # noqa: E402
from grader.grading.diagnosis_hook import SWITCH  # noqa: E402
from grader.grading.runner import GradeRequest, grade  # noqa: E402
from tests.buggy import materialize  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TARGET_FAILING_S = 2.0
TARGET_CORRECT_S = 0.0


def check(path: Path, parts: tuple[str, ...], diagnosis: bool) -> tuple[float, float, int, int]:
    """(wall seconds, diagnosis seconds, failed tests, diagnosed tests) of one ``grader check``."""
    os.environ[SWITCH] = "1" if diagnosis else "0"
    start = time.perf_counter()
    report = grade(GradeRequest(find_assignment("autograd-lab"), path, backend="local", visible_only=True,
                                parts=parts)).report
    wall = time.perf_counter() - start
    failed = [t for t in report.tests if t.status != "passed"]
    diagnosed = [t for t in failed if t.diagnosis is not None]
    return wall, sum(t.diagnosis.seconds for t in diagnosed), len(failed), len(diagnosed)


def measure(label: str, path: Path, parts: tuple[str, ...], repeats: int, target: float) -> None:
    on, off, own = [], [], []
    failed = diagnosed = 0
    for i in range(repeats):
        for flag in ((True, False) if i % 2 == 0 else (False, True)):
            wall, seconds, failed, n = check(path, parts, flag)
            (on if flag else off).append(wall)
            if flag:
                own.append(seconds)
                diagnosed = n
    extra = statistics.median(on) - statistics.median(off)
    itself = statistics.median(own)
    print(f"{label:34s} failed {failed:2d} diagnosed {diagnosed:2d} | check with {statistics.median(on):6.2f} s, "
          f"without {statistics.median(off):6.2f} s: {extra:+.2f} s | diagnosis itself {itself:.2f} s | "
          f"target <= {target:g} s: {'ok' if itself <= target else 'OVER'} (itself), "
          f"{'ok' if extra <= target else 'over'} (difference of whole runs, noisy under load)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", default="ops,mlp,graph,training")
    parser.add_argument("--variants", default="mul_backward_uses_own_data,grad_overwritten_when_reused,"
                                               "bias_grad_not_unbroadcast")
    args = parser.parse_args()
    parts = tuple(p for p in args.parts.split(",") if p)
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} on "
          f"{os.cpu_count()} cores; parts {','.join(parts)}; {args.repeats} repeats, medians", flush=True)
    measure("reference (correct)", ROOT / "reference", parts, args.repeats, TARGET_CORRECT_S)
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / "grader-diagnosis-bench"
    for name in filter(None, args.variants.split(",")):
        measure(name, materialize(name, scratch / name), parts, args.repeats, TARGET_FAILING_S)
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
