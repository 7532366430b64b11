"""The Gradescope autograder zip: deterministic, complete, and grading in a Gradescope-like container.

The zip's tests need nothing but Python. ``run_autograder``'s fallbacks run on the host with
a fake grader. The Docker tests lay a container out as Gradescope does (Gradescope's
autograder specification): ``/autograder/source`` holds the unzipped autograder, ``setup.sh``
runs as root while the image is built, ``/autograder/run_autograder`` runs as root for each
submission, here with the network disabled, and must write ``/autograder/results/results.json``.

The image starts from the offline Debian base of the sandbox image (Python 3.11, no ensurepip,
like a stock distro Python) and is built without network: ``setup.sh`` installs from a wheelhouse
downloaded once on the host (``download_wheelhouse``, torch's CPU wheel included) and put where
the zip would carry it (``wheels/``). The image is tagged by a hash of all it is built from,
so it is built once per change of the grader, the assignment or the wheels. Without a Docker
engine the Docker tests skip, unless ``GRADER_REQUIRE_DOCKER=1`` (as in CI): then they fail.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from grader.assignment import find_assignment
from grader.distribution.gradescope_zip import (EXECUTABLE, REGULAR, ZIP_DATE, autograder_entries, build_autograder_zip,
                                          download_wheelhouse, run_script, setup_script, write_zip)

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "student_template"
TEST_IMAGE = "autograd-grader-gradescope-test"
LABEL = "autograd-grader"
RUN_TIMEOUT_S = 900

# Gradescope spec, "Output format": the keys results.json and its tests may have.
TOP_KEYS = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format",
            "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
TEST_KEYS = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format",
             "tags", "visibility", "extra_data"}


@pytest.fixture(scope="module")
def assignment():
    return find_assignment("autograd-lab")


# --- the zip ------------------------------------------------------------------------------


def test_rebuilding_the_zip_gives_the_same_bytes(tmp_path: Path, assignment) -> None:
    first = build_autograder_zip(assignment, tmp_path / "a" / "autograder.zip")
    second = build_autograder_zip(assignment, tmp_path / "b" / "autograder.zip")
    assert first == second == hashlib.sha256((tmp_path / "a" / "autograder.zip").read_bytes()).hexdigest()
    assert (tmp_path / "a" / "autograder.zip").read_bytes() == (tmp_path / "b" / "autograder.zip").read_bytes()


def test_zip_layout_follows_gradescope_and_the_repository(tmp_path: Path, assignment) -> None:
    path = tmp_path / "autograder.zip"
    build_autograder_zip(assignment, path)
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        names = [i.filename for i in infos]
        yaml_text = archive.read("assignments/autograd-lab/assignment.yaml").decode()
    assert names == sorted(names)
    assert {"setup.sh", "run_autograder", "pyproject.toml", "README.md", "constraints.txt"} <= set(names)
    modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in infos}
    assert modes["setup.sh"] == modes["run_autograder"] == EXECUTABLE
    assert {m for n, m in modes.items() if n not in ("setup.sh", "run_autograder")} == {REGULAR}
    assert {i.date_time for i in infos} == {ZIP_DATE}
    # the grader package, whole; the assignment with its hidden tests; the reference where yaml says
    package = {f"grader/{p.relative_to(ROOT / 'grader').as_posix()}" for p in (ROOT / "grader").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert package <= set(names)
    hidden = {f"assignments/autograd-lab/tests/hidden/{p.name}" for p in assignment.hidden_tests.glob("*.py")}
    assert hidden and hidden <= set(names)
    assert "reference: ../../reference" in yaml_text and "reference/autograd.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    tops = {n.split("/")[0] for n in names}
    assert tops == {"setup.sh", "run_autograder", "pyproject.toml", "README.md", "constraints.txt",
                    "grader", "assignments", "reference"}


def test_wheels_go_into_the_zip_stored(tmp_path: Path, assignment) -> None:
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK not really a wheel")
    path = tmp_path / "autograder.zip"
    build_autograder_zip(assignment, path, wheels=[wheel])
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("wheels/demo-1.0-py3-none-any.whl")
        assert info.compress_type == zipfile.ZIP_STORED
        assert archive.read(info) == wheel.read_bytes()


def test_scripts_parse_and_install_torch_from_its_cpu_index(assignment) -> None:
    setup = setup_script("torch==2.13.0")
    run = run_script(assignment)
    for script in (setup, run):
        assert script.startswith("#!/usr/bin/env bash\n")
        subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    assert 'TORCH="torch==2.13.0"' in setup and "https://download.pytorch.org/whl/cpu" in setup
    assert "--no-index" in setup and "chmod -R go-rwx" in setup
    assert "/autograder/results/results.json" in run or '"$ROOT/results/results.json"' in run
    assert "--backend local" in run and "source/assignments/autograd-lab" in run


def test_constraints_pin_the_tested_versions(assignment) -> None:
    import numpy

    text = autograder_entries(assignment)["constraints.txt"].data.decode()
    assert f"numpy=={numpy.__version__}\n" in text
    assert "torch==2.13.0\n" in text


def test_the_command_writes_the_zip(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from grader.commands import gradescope_autograder

    out = tmp_path / "autograder.zip"
    done = CliRunner().invoke(gradescope_autograder.command, ["-a", "autograd-lab", "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert hashlib.sha256(out.read_bytes()).hexdigest() in done.output
    both = CliRunner().invoke(gradescope_autograder.command, ["-o", str(out), "--wheels", str(tmp_path), "--download-wheels"])
    assert both.exit_code == 2 and "not both" in both.output


# --- run_autograder on the host, with a fake grader ----------------------------------------------

FAKE_GRADER = r"""#!@PYTHON@
import json, os, sys
log = os.environ["FAKE_LOG"]
with open(log, "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\n")
mode = os.environ.get("FAKE_MODE", "ok")
if sys.argv[1] == "grade":
    if mode == "crash":
        print("grader: internal error: RuntimeError: the suites exploded", file=sys.stderr)
        print("hint: this is a bug of the grader; rerun with --traceback", file=sys.stderr)
        sys.exit(70)
    out = sys.argv[sys.argv.index("-o") + 1]
    open(out, "w").write("{}")
    sys.exit(1)
if sys.argv[1] == "export":
    if mode == "bad-export":
        print("grader: error: the report does not validate", file=sys.stderr)
        sys.exit(4)
    out = sys.argv[sys.argv.index("-o") + 1]
    open(out, "w").write(json.dumps({"score": 42.0, "tests": []}))
"""


@pytest.fixture
def fake_gradescope(tmp_path: Path, assignment):
    """An /autograder-like tree and a venv whose `grader` is a fake; returns a runner."""
    root, venv = tmp_path / "autograder", tmp_path / "venv"
    (root / "submission").mkdir(parents=True)
    (venv / "bin").mkdir(parents=True)
    grader = venv / "bin" / "grader"
    grader.write_text(FAKE_GRADER.replace("@PYTHON@", sys.executable))
    grader.chmod(0o755)
    (venv / "bin" / "python").symlink_to(sys.executable)
    script = tmp_path / "run_autograder"
    script.write_text(run_script(assignment))
    script.chmod(0o755)
    log = tmp_path / "calls.jsonl"

    def run(mode: str = "ok", path: str | None = None) -> tuple[dict, list[list[str]], str]:
        env = {**os.environ, "AUTOGRADER_ROOT": str(root), "GRADER_VENV": str(venv), "FAKE_LOG": str(log),
               "FAKE_MODE": mode}
        if path is not None:
            env["PATH"] = path
        done = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return json.loads((root / "results" / "results.json").read_text()), calls, done.stdout

    run.root, run.venv = root, venv
    return run


def test_run_autograder_grades_then_exports(fake_gradescope) -> None:
    results, calls, _ = fake_gradescope("ok")
    assert results["score"] == 42.0
    grade, export = calls
    assert grade[:2] == ["grade", str(fake_gradescope.root / "submission")]
    assert grade[grade.index("--backend") + 1] == "local"
    assert grade[grade.index("--assignment") + 1] == str(fake_gradescope.root / "source/assignments/autograd-lab")
    assert export[:2] == ["export", "gradescope"]
    assert export[export.index("-o") + 1] == str(fake_gradescope.root / "results" / "results.json")


def test_run_autograder_grades_a_lone_notebook(fake_gradescope) -> None:
    (fake_gradescope.root / "submission" / "lab.ipynb").write_text("{}")
    _, calls, _ = fake_gradescope("ok")
    assert calls[0][1] == str(fake_gradescope.root / "submission" / "lab.ipynb")


@pytest.mark.parametrize("mode, message", [
    ("crash", "grader: internal error: RuntimeError: the suites exploded"),
    ("bad-export", "grader: error: the report does not validate"),
])
def test_run_autograder_writes_score_0_when_grading_fails(fake_gradescope, mode: str, message: str) -> None:
    results, _, stdout = fake_gradescope(mode)
    assert results["score"] == 0
    assert message in results["output"] and "score 0" in results["output"]
    assert set(results) <= TOP_KEYS and results["stdout_visibility"] == "hidden"
    assert message in stdout                                   # instructors see the whole log


def test_run_autograder_writes_results_even_without_python(fake_gradescope, tmp_path: Path) -> None:
    (fake_gradescope.venv / "bin" / "python").unlink()
    (fake_gradescope.venv / "bin" / "grader").unlink()       # a broken install: no grader at all
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("bash", "mktemp", "rm", "mkdir", "dirname", "find", "sort", "cat", "grep", "head", "cut"):
        (tools / tool).symlink_to(shutil.which(tool))
    results, _, _ = fake_gradescope("ok", path=str(tools))
    assert results["score"] == 0 and "course staff" in results["output"]


# --- in a Gradescope-like container --------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("docker")                   # the SDK, for grader.sandbox.image
    from grader.errors import SandboxError
    from grader.sandbox import image as image_mod

    try:
        return image_mod.docker_client(timeout=300)
    except SandboxError as err:
        if os.environ.get("GRADER_REQUIRE_DOCKER") == "1":
            pytest.fail(f"GRADER_REQUIRE_DOCKER=1 but Docker is unreachable: {err} ({err.hint})")
        pytest.skip(f"no Docker engine: {err}")


DOCKERFILE = """\
# Gradescope's layout: the zip unpacked in /autograder/source, setup.sh run as root while the
# image is built, run_autograder copied to /autograder/run_autograder.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY source/ /autograder/source/
RUN mkdir -p /autograder/submission /autograder/results \\
    && cp /autograder/source/run_autograder /autograder/run_autograder \\
    && bash /autograder/source/setup.sh
WORKDIR /autograder
CMD ["/autograder/run_autograder"]
"""


def _extract_with_modes(data: bytes, dest: Path) -> None:
    """Unzip as `unzip` does on Linux: with the modes the zip records."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            target = dest / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(info))
            target.chmod((info.external_attr >> 16) & 0o777 or 0o644)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@pytest.fixture(scope="module")
def autograder_image(client, assignment, tmp_path_factory) -> str:
    """The test image, built offline only when the zip, the wheels or the base changed."""
    from grader.sandbox import image as image_mod

    try:                                            # a stock distro Python, as on Gradescope's Ubuntu
        base = client.images.get(image_mod.DEBOOTSTRAP_BASE).tags[0]
    except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound: python:3.11-slim, or debootstrap it
        base = image_mod.resolve_base(client)
    arch = client.info().get("Architecture", "x86_64")
    wheels = download_wheelhouse(image_mod.cache_dir() / "wheels", arch=arch)
    zip_path = tmp_path_factory.mktemp("zip") / "autograder.zip"
    write_zip(autograder_entries(assignment), zip_path)
    h = hashlib.sha256()
    for part in (DOCKERFILE.encode(), zip_path.read_bytes(), client.images.get(base).id.encode(),
                 *(f"{w.name}:{_file_digest(w)}".encode() for w in wheels)):
        h.update(hashlib.sha256(part).digest())
    tag = f"{TEST_IMAGE}:{h.hexdigest()[:12]}"
    try:
        client.images.get(tag)
        return tag
    except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound: build it
        pass
    context = tmp_path_factory.mktemp("context")
    (context / "Dockerfile").write_text(DOCKERFILE)
    _extract_with_modes(zip_path.read_bytes(), context / "source")
    (context / "source" / "wheels").mkdir()
    for wheel in wheels:                            # where `--wheels` would put them in the zip
        os.link(wheel, context / "source" / "wheels" / wheel.name)
    try:
        client.images.build(path=str(context), tag=tag, pull=False, rm=True, forcerm=True, network_mode="none",
                            buildargs={"BASE_IMAGE": base}, labels={LABEL: "gradescope-test"}, timeout=3600)
    except Exception as err:  # noqa: BLE001 - BuildError carries the log
        log = "".join(str(c.get("stream", c.get("error", ""))) for c in getattr(err, "build_log", []))
        pytest.fail(f"building the Gradescope-like image failed: {err}\n{log[-3000:]}")
    for old in client.images.list(name=TEST_IMAGE):   # keep one test image
        for old_tag in old.tags:
            if old_tag != tag:
                try:
                    client.images.remove(old_tag)
                except Exception:  # noqa: BLE001 - in use: leave it
                    pass
    return tag


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def run_autograder(client, image: str, files: dict[str, bytes],
                   source_files: dict[str, bytes] | None = None) -> tuple[dict, str]:
    """Gradescope's step for one submission: files in /autograder/submission, run_autograder, no network.

    ``source_files`` replace files of the unzipped autograder (e.g. an edited assignment.yaml).
    """
    start = time.monotonic()
    container = client.containers.create(image, command=["/autograder/run_autograder"], working_dir="/autograder",
                                         network_mode="none", labels={LABEL: "gradescope-test"})
    try:
        container.put_archive("/autograder/submission", _tar(files))
        if source_files:
            container.put_archive("/autograder/source", _tar(source_files))
        container.start()
        status = container.wait(timeout=RUN_TIMEOUT_S)["StatusCode"]
        log = container.logs().decode("utf-8", errors="replace")
        assert status == 0, f"run_autograder exited with {status}:\n{log[-3000:]}"
        stream, _ = container.get_archive("/autograder/results/results.json")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            results = json.loads(tar.extractfile(tar.getmembers()[0]).read())
        print(f"run_autograder on {sorted(files)}: {time.monotonic() - start:.0f} s")
        return results, log
    finally:
        container.remove(force=True)


SUBMISSIONS = {
    "reference": {"autograd.py": (ROOT / "reference" / "autograd.py").read_bytes()},
    "template-notebook": {"autograd.ipynb": (TEMPLATE / "autograd.ipynb").read_bytes()},
    "missing-file": {"autograd_final.py": (TEMPLATE / "autograd.py").read_bytes(), "notes.txt": b"see attached\n"},
}


@pytest.fixture(scope="module")
def graded(client, autograder_image) -> dict[str, tuple[dict, str]]:
    """The three submissions graded at once, each in its own container."""
    with ThreadPoolExecutor(len(SUBMISSIONS)) as pool:
        futures = {name: pool.submit(run_autograder, client, autograder_image, files)
                   for name, files in SUBMISSIONS.items()}
        return {name: future.result() for name, future in futures.items()}


def _check_shape(results: dict) -> None:
    assert set(results) <= TOP_KEYS
    for test in results.get("tests", []):
        assert set(test) <= TEST_KEYS and test["status"] in ("passed", "failed")


@pytest.mark.docker
@pytest.mark.slow
def test_reference_gets_full_marks(graded, assignment) -> None:
    results, log = graded["reference"]
    _check_shape(results)
    assert results["score"] == assignment.max_score, log[-3000:]
    assert {t["status"] for t in results["tests"]} == {"passed"}
    assert any(t["visibility"] == "after_published" for t in results["tests"])   # the hidden tests ran
    assert results["extra_data"]["status"] == "graded"


@pytest.mark.docker
@pytest.mark.slow
def test_template_notebook_gets_0(graded, assignment) -> None:
    results, log = graded["template-notebook"]
    _check_shape(results)
    assert results["score"] == 0, log[-3000:]
    assert results["extra_data"]["status"] == "graded"          # graded (every test failed), not refused
    assert sum(t["max_score"] for t in results["tests"]) == pytest.approx(assignment.max_score, abs=1e-9)  # decimal points (0.6) add up in binary floats


@pytest.mark.docker
@pytest.mark.slow
def test_missing_file_gets_0_with_the_message(graded) -> None:
    results, log = graded["missing-file"]
    _check_shape(results)
    assert results["score"] == 0
    assert "autograd.py" in results["output"], results["output"]
    assert results["extra_data"]["status"] == "submission-error", log[-3000:]


@pytest.mark.docker
def test_sandbox_user_cannot_read_the_hidden_tests(client, autograder_image) -> None:
    """setup.sh leaves /autograder/source to root: the worker's user (nobody) reads none of it."""
    out = client.containers.run(
        autograder_image, user="65534", network_mode="none", remove=True, stderr=True,
        command=["sh", "-c", "cat /autograder/source/assignments/autograd-lab/tests/hidden/test_ops.py "
                             "/autograder/source/reference/autograd.py >/dev/null 2>&1 && echo READ || echo DENIED; "
                             "/opt/autograd-grader/venv/bin/python -c 'import numpy; print(numpy.__version__)'"])
    lines = out.decode().split()
    assert lines[0] == "DENIED"
    assert lines[1].count(".") == 2                              # NumPy stays importable for the worker


@pytest.mark.docker
@pytest.mark.slow
def test_a_submission_whose_ops_sleep_gets_its_report_within_the_budget(client, autograder_image) -> None:
    """Every op sleeps 30 s; with a short budget the results arrive within budget + margin, all cut."""
    import yaml

    from grader.assignment import BUDGET_MARGIN_S
    from tests.test_budget import BUDGET_S, short_budget_yaml, sleepy_source

    yaml_text = short_budget_yaml()
    margin = BUDGET_MARGIN_S + yaml.safe_load(yaml_text)["timeouts"]["import_s"]
    start = time.monotonic()
    results, log = run_autograder(client, autograder_image, {"autograd.py": sleepy_source().encode()},
                                  {"assignments/autograd-lab/assignment.yaml": yaml_text.encode()})
    seconds = time.monotonic() - start
    print(f"Gradescope zip, every op sleeping 30 s: results.json after {seconds:.1f} s "
          f"(budget {BUDGET_S:g} s + margin {margin:g} s, container start included)")
    assert seconds <= BUDGET_S + margin, log[-3000:]
    assert results["score"] == 0 and results["extra_data"]["status"] == "graded", log[-3000:]
    assert {t["status"] for t in results["tests"]} == {"failed"}
    # ordinary request timeouts come first (how many fit in the budget depends on start-up time), every other test was cut
    cut = [t for t in results["tests"] if "timeouts.submission_s" in t.get("output", "")]
    ordinary = [t for t in results["tests"] if "no answer within" in t.get("output", "") and t not in cut]
    assert cut and len(cut) + len(ordinary) == len(results["tests"]), log[-3000:]
