"""Every backend stages the same files: an assignment's ``required_files``, nothing more, nothing less.

A grade must not depend on the backend. The submission below splits the lab over two files
(``autograd.py`` imports ``helpers.py``) and also ships ``extra.py``, which is not required:
on every backend ``helpers`` must be importable and ``extra`` must not (an unrequired file could
shadow a module or smuggle data in), so the grade is the same on local and on Docker.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from grader.assignment import find_assignment, load_assignment
from grader.grading.runner import GradeRequest, grade
from grader.sandbox.base import WorkerSpec, copy_submission

ROOT = Path(__file__).resolve().parent.parent

PREAMBLE = '''
import helpers                       # a required file: must be staged on every backend
try:
    import extra                     # not required: must never be staged
except ImportError:
    pass
else:
    raise ImportError("extra.py is visible in the sandbox, but it is not a required file")
assert helpers.SCALE == 1.0
'''


def _two_file_submission(folder: Path) -> Path:
    folder.mkdir()
    reference = (ROOT / "reference" / "autograd.py").read_text(encoding="utf-8")
    head, sep, rest = reference.partition("\nimport ")
    (folder / "autograd.py").write_text(head + PREAMBLE + sep + rest, encoding="utf-8")
    (folder / "helpers.py").write_text("SCALE = 1.0\n", encoding="utf-8")
    (folder / "extra.py").write_text("LEAK = True\n", encoding="utf-8")
    return folder


def _two_file_assignment(folder: Path) -> Path:
    source = find_assignment("autograd-lab")
    shutil.copytree(source.root, folder)
    config = yaml.safe_load((folder / "assignment.yaml").read_text(encoding="utf-8"))
    config["required_files"] = ["autograd.py", "helpers.py"]
    config["reference"] = str(ROOT / "reference")
    (folder / "assignment.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return folder


def test_copy_submission_copies_exactly_the_listed_files(tmp_path: Path) -> None:
    source = _two_file_submission(tmp_path / "sub")
    (source / "pkg").mkdir()
    (source / "pkg" / "data.txt").write_text("x", encoding="utf-8")
    (source / "link.py").symlink_to(source / "extra.py")
    dest = tmp_path / "dest"
    dest.mkdir()
    spec = WorkerSpec(source, files=("autograd.py", "helpers.py", "pkg/data.txt", "link.py", "missing.py"))
    copy_submission(spec, dest)
    staged = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert staged == ["autograd.py", "helpers.py", "pkg/data.txt"]   # no symlink, nothing unlisted
    assert WorkerSpec(source).staged_files == ("autograd.py",)
    with pytest.raises(ValueError, match="relative path"):
        copy_submission(WorkerSpec(source, files=("../escape.py",)), dest)


@pytest.mark.parametrize("backend", ["local", "docker"])
def test_a_two_file_submission_grades_the_same_on_every_backend(tmp_path: Path, backend: str,
                                                                 request: pytest.FixtureRequest) -> None:
    if backend == "docker":
        request.getfixturevalue("docker_required")
    assignment = load_assignment(_two_file_assignment(tmp_path / "assignment"))
    submission = _two_file_submission(tmp_path / "submission")
    report = grade(GradeRequest(assignment, submission, backend=backend, parts=("ops",))).report
    failed = {t.name: t.output[:500] for t in report.tests if t.status != "passed"}
    assert not failed, failed
    assert report.score == report.max_score > 0
    assert [f.name for f in report.submission.files] == ["autograd.py", "helpers.py"]
    assert "extra.py" in report.submission.ignored_files
