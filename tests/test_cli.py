"""The ``grader`` command as users run it: exit codes, reports, specific errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from grader.report import load_report

ROOT = Path(__file__).resolve().parent.parent


def grader(*args: str, cwd: Path = ROOT, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_help_everywhere() -> None:
    for args in ([], ["check"], ["grade"], ["export"], ["image", "build"]):
        result = grader(*args, "--help")
        assert result.returncode == 0 and "Usage" in result.stdout, (args, result.stderr)


def test_unknown_assignment_and_path_are_clear_errors(tmp_path: Path) -> None:
    result = grader("check", "reference", "--assignment", "no-such-lab")
    assert result.returncode == 4
    assert "grader: error: unknown assignment 'no-such-lab'" in result.stderr and "hint:" in result.stderr
    result = grader("grade", str(tmp_path / "missing"), "--backend", "local", "-o", str(tmp_path / "r.json"))
    assert result.returncode == 3 and "Traceback" not in result.stdout + result.stderr
    assert load_report(tmp_path / "r.json").error.code == "not-found"
    result = grader("grade", "reference", "--backend", "nope")
    assert result.returncode == 2 and "nope" in result.stderr


def test_check_template_fails_every_part_and_reference_passes() -> None:
    bad = grader("check", "student_template")
    assert bad.returncode == 1, bad.stderr
    for part in ("ops", "mlp", "graph", "training", "speed"):
        assert part in bad.stdout
    assert "NotImplementedError" in bad.stdout and "hidden tests exist" in bad.stdout
    good = grader("check", "reference/autograd.py")
    assert good.returncode == 0, good.stdout[-3000:]


def _notebook(path: Path, source: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nbformat.write(nb, path)
    return path


BAD_INPUTS = {
    "missing-file": lambda d: (d / "sub").mkdir() or (d / "sub" / "notes.txt").write_text("hi") and d / "sub",
    "syntax-error": lambda d: (d / "autograd.py").write_text("class Tensor(:\n") and d / "autograd.py",
    "bad-notebook": lambda d: (d / "a.ipynb").write_text("{not json") and d / "a.ipynb",
    "bad-zip": lambda d: (d / "a.zip").write_bytes(b"PK\x03\x04 broken") and d / "a.zip",
    "binary-file": lambda d: (d / "autograd.py").write_bytes(b"\x00\x01\x02binary") and d / "autograd.py",
}


@pytest.mark.parametrize("code", sorted(BAD_INPUTS))
def test_bad_input_gets_its_specific_error_and_zero(code: str, tmp_path: Path) -> None:
    path = BAD_INPUTS[code](tmp_path)
    out = tmp_path / "report.json"
    result = grader("grade", str(path), "--backend", "local", "-o", str(out))
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    report = load_report(out)
    assert report.status == "submission-error" and report.error.code == code and report.score == 0
    assert code in result.stdout


def test_import_error_is_reported_with_the_students_traceback(tmp_path: Path) -> None:
    (tmp_path / "autograd.py").write_text("import numpy as np\n\ndef helper():\n    return undefined_name\n\nhelper()\n")
    out = tmp_path / "r.json"
    result = grader("grade", str(tmp_path), "--backend", "local", "-o", str(out))
    report = load_report(out)
    assert result.returncode == 3 and report.error.code == "import-error"
    assert "NameError" in report.error.message and "autograd.py" in report.error.message
    assert "worker.py" not in report.error.message


def test_zip_and_notebook_submissions_grade_like_the_folder(tmp_path: Path) -> None:
    source = (ROOT / "reference" / "autograd.py").read_text(encoding="utf-8")
    with zipfile.ZipFile(tmp_path / "sub.zip", "w") as zf:
        zf.writestr("lab/autograd.py", source)
    nb = _notebook(tmp_path / "lab.ipynb", source)
    hashes = set()
    for path in (tmp_path / "sub.zip", nb):
        out = tmp_path / f"{path.stem}.json"
        result = grader("grade", str(path), "--backend", "local", "--part", "mlp", "-o", str(out), "-q")
        report = load_report(out)
        assert result.returncode == 0 and report.score == report.max_score, result.stdout[-2000:]
        hashes.add(report.submission.sha256)
    assert len(hashes) == 1


def _comparable(report_path: Path) -> dict:
    data = json.loads(report_path.read_text())
    for key in ("environment", "timings"):
        data.pop(key)
    for test in data["tests"]:
        test.pop("duration")
        if test["part"] == "speed":
            test.pop("output")  # speed ratios are measurements
    return data


@pytest.mark.docker
def test_docker_and_local_reports_agree_apart_from_environment(docker_required: None, tmp_path: Path) -> None:
    reports = {}
    for backend in ("docker", "local"):
        out = tmp_path / f"{backend}.json"
        result = grader("grade", "reference", "--backend", backend, "-o", str(out), "-q")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        reports[backend] = _comparable(out)
    assert reports["docker"]["score"] == reports["docker"]["max_score"] == 100
    assert reports["docker"] == reports["local"]
    assert load_report(tmp_path / "docker.json").environment.image.startswith("autograd-grader-sandbox:")
