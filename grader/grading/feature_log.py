"""The features of the Programs each test runs, recorded for the fairness check.

With ``--grader-features PATH`` the ``lab`` fixture hands each test a ``FeatureRecorder`` around
the submission's executor: every Program the test runs or times adds its features
(``grader.programs.features``) to that test's entry, and the log is written as JSON at the end:
``{test name: {"part", "visibility", "features": [[subject, detail], ...]}}``.
The project's fairness test reads it for the public and the hidden suites.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.grading.executors import Executor
from grader.programs.features import Feature, op_count, speed_features
from grader.programs.interpreter import RunResult
from grader.programs.program import Program

GROWTH_RATIO = 5   # a test that times chains this many times apart in length checks linear growth


@dataclass
class TestFeatures:
    part: str
    visibility: str
    features: set[Feature] = field(default_factory=set)
    timed_lengths: list[int] = field(default_factory=list)

    __test__ = False

    def finished(self) -> set[Feature]:
        lengths = self.timed_lengths
        if len(lengths) >= 2 and max(lengths) >= GROWTH_RATIO * max(1, min(lengths)):
            return self.features | {("speed", "growth with the chain's length")}
        return set(self.features)


class FeatureRecorder:
    """The executor of one test, noting what each Program it is given exercises."""

    def __init__(self, executor: Executor, sink: TestFeatures) -> None:
        self._executor, self._sink = executor, sink
        self._seen: list[list[dict[str, Any]]] = []   # steps already noted (a speed test's variants share them)

    @property
    def inner(self) -> Executor:
        """The executor recorded: the same one for every test of a run (speed measurements are kept by it)."""
        return self._executor

    def run(self, program: Program) -> RunResult:
        self._note(program)
        return self._executor.run(program)

    def time(self, program: Program, repeats: int, timeout: float | None = None,
             lean: bool = False) -> tuple[float, RunResult]:
        self.note_timed(program)
        return self._executor.time(program, repeats, timeout, lean)

    def time_split(self, program: Program, split: int, timeout: float | None = None,
                   lean: bool = False) -> tuple[float, float, RunResult]:
        self.note_timed(program)
        return self._executor.time_split(program, split, timeout, lean)  # type: ignore[attr-defined]

    def note_timed(self, program: Program) -> None:
        """Note a timed Program (also one whose measurement an earlier test made: see ``measure_speed``)."""
        if self._note(program):
            self._sink.features |= speed_features(program.steps, program.arrays)
            self._sink.timed_lengths.append(op_count(program.steps, program.arrays))

    def _note(self, program: Program) -> bool:
        """Add the Program's features; False if its steps were noted already."""
        if any(program.steps is seen for seen in self._seen):
            return False
        self._seen.append(program.steps)
        self._sink.features |= program.features
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._executor, name)


def write_feature_log(log: dict[str, TestFeatures], path: Path) -> None:
    """Atomically write the log (temp file + os.replace)."""
    data = {name: {"part": t.part, "visibility": t.visibility, "features": sorted(map(list, t.finished()))}
            for name, t in log.items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def read_feature_log(path: Path) -> dict[str, dict[str, Any]]:
    """The log as written: features become tuples again."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    for entry in data.values():
        entry["features"] = {tuple(f) for f in entry["features"]}
    return data


def uncovered(log: dict[str, dict[str, Any]]) -> dict[Feature, list[str]]:
    """Each feature of a hidden test that no visible test has, with the hidden tests that have it."""
    public: set[Feature] = set()
    for entry in log.values():
        if entry["visibility"] == "visible":
            public |= entry["features"]
    missing: dict[Feature, list[str]] = {}
    for name, entry in sorted(log.items()):
        if entry["visibility"] == "hidden":
            for feature in sorted(entry["features"] - public):
                missing.setdefault(feature, []).append(name)
    return missing


def describe_uncovered(missing: dict[Feature, list[str]]) -> str:
    """One line per hidden-only feature: what it is and which hidden tests check it."""
    return "\n".join(f"  {subject}: {detail}  (hidden only, in {', '.join(tests)})"
                     for (subject, detail), tests in sorted(missing.items()))
