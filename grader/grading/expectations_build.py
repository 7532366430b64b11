"""Staff side of stored expectations: record torch's answers by running the suites on the reference.

Running the real suites is the one way to list exactly the Programs they ask torch about. They
run without the speed reference, as ``grader check`` does: a speed test then asks torch about its
Program (with a reference, every timed answer is judged against the reference's instead). Every
test must pass on the reference, or nothing is written: answers from a broken run are no yardstick.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest

from grader.assignment import Assignment
from grader.errors import GraderError
from grader.grading.executors import TORCH_HINT, torch_installed
from grader.grading.runner import _only_the_grader_plugin
from grader.programs.expectations import Expectations

SUITES = ("public", "hidden")


def record(assignment: Assignment, folder: Path, backend: str = "local") -> dict[str, int]:
    """Write ``folder/{public,hidden}.{json,npz}``; returns how many Programs each holds."""
    if not torch_installed():
        raise GraderError("building expectations needs torch", hint=TORCH_HINT)
    reference = assignment.reference_dir
    if reference is None:
        raise GraderError("this assignment has no reference solution to run the suites on")
    counts: dict[str, int] = {}
    for name in SUITES:
        tests = assignment.root / "tests" / name
        if not tests.is_dir():
            continue
        args = ["-p", "grader.grading.pytest_plugin", str(tests), "--submission", str(reference),
                "--backend", backend, "--assignment", str(assignment.root),
                "--seed", str(assignment.config.seed), "--record-expectations", str(folder / name),
                "--no-speed-reference",
                "--rootdir", str(assignment.root), "-p", "no:cacheprovider", "-p", "no:randomly",
                "--import-mode=importlib", "-o", "addopts=", "-q", "--no-header"]
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), _only_the_grader_plugin():
            code = pytest.main(args)
        if int(code) != 0:
            raise GraderError(f"the {name} suites do not pass on the reference (pytest exit status {int(code)}); "
                              f"no expectations written for them\n{sink.getvalue()[-3000:]}")
        counts[name] = len(Expectations.load(folder, name))
    return counts


def differences(stored: Expectations, fresh: Expectations, rtol: float = 1e-9, atol: float = 1e-12) -> list[str]:
    """What differs between two sets of expectations (Programs, headers, arrays beyond tolerance)."""
    out = [f"only in the stored file: {d[:12]} ({stored.entries[d][0]})" for d in stored.entries.keys() - fresh.entries]
    out += [f"missing from the stored file: {d[:12]} ({fresh.entries[d][0]})"
            for d in fresh.entries.keys() - stored.entries]
    for digest in sorted(stored.entries.keys() & fresh.entries.keys()):
        title, h1, a1 = stored.arrays_of(digest)
        _, h2, a2 = fresh.arrays_of(digest)
        if h1 != h2 or a1.keys() != a2.keys():
            out.append(f"{title}: torch's evidence differs (values, flags or errors)")
        elif not all(a1[k].shape == a2[k].shape and np.allclose(a1[k], a2[k], rtol=rtol, atol=atol) for k in a1):
            out.append(f"{title}: torch's arrays differ beyond rtol={rtol:g}, atol={atol:g}")
    return out


def check(assignment: Assignment, backend: str = "local") -> list[str]:
    """Rebuild with live torch into a scratch folder and compare with the assignment's files."""
    with tempfile.TemporaryDirectory(prefix="grader-expectations-") as tmp:
        counts = record(assignment, Path(tmp), backend)
        problems: list[str] = []
        for name in counts:
            try:
                mine = Expectations.load(assignment.expectations_dir, name)
            except Exception as exc:  # noqa: BLE001 - missing or unreadable: reported, not raised
                problems.append(f"{name}: {exc}")
                continue
            problems += [f"{name}: {p}" for p in differences(mine, Expectations.load(Path(tmp), name))]
        return problems
