"""Shared fixtures of the project's own tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from grader.errors import SandboxError


@pytest.fixture(scope="session")
def docker_required() -> None:
    """Docker must be reachable: fail (not skip) when CI asks for it with GRADER_REQUIRE_DOCKER=1."""
    from grader.sandbox.image import docker_client, ensure_image

    try:
        docker_client()
    except SandboxError as err:
        if os.environ.get("GRADER_REQUIRE_DOCKER") == "1":
            pytest.fail(f"GRADER_REQUIRE_DOCKER=1 but Docker is unreachable: {err} ({err.hint})")
        pytest.skip(f"no Docker engine: {err}")
    ensure_image()


# ---- gradings shared by the suite tests (tests/test_suites.py, tests/test_fairness.py) ----
# Grading a submission with the full suites takes about a minute: each is done once per session.


@dataclass
class Grading:
    report: Any                        # grader.report.Report
    features: dict[str, dict[str, Any]]  # grader.grading.feature_log.read_feature_log


@pytest.fixture(scope="session")
def reference_grading(tmp_path_factory: pytest.TempPathFactory) -> Grading:
    """The reference graded by every suite on the local backend, with the features of each test."""
    from grader.assignment import find_assignment
    from grader.grading.feature_log import read_feature_log
    from grader.grading.runner import GradeRequest, grade

    log = tmp_path_factory.mktemp("reference") / "features.json"
    root = Path(__file__).resolve().parent.parent
    report = grade(GradeRequest(find_assignment("autograd-lab"), root / "reference", backend="local",
                                features_out=log)).report
    return Grading(report, read_feature_log(log))


@pytest.fixture(scope="session")
def buggy_grading(tmp_path_factory: pytest.TempPathFactory) -> Callable[[dict], Any]:
    """``buggy_grading(entry)``: the report of a buggy variant graded on its own part, cached."""
    from grader.assignment import find_assignment
    from grader.grading.runner import GradeRequest, grade
    from tests.buggy import materialize

    assignment = find_assignment("autograd-lab")
    cache: dict[str, Any] = {}

    def graded(entry: dict) -> Any:
        if entry["name"] not in cache:
            submission = materialize(entry["name"], tmp_path_factory.mktemp(entry["name"]))
            cache[entry["name"]] = grade(GradeRequest(assignment, submission, backend="local",
                                                      parts=(entry["part"],))).report
        return cache[entry["name"]]

    return graded
