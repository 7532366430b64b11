"""The Gradescope autograder: a zip that grades a submission on Gradescope with this grader.

Gradescope's autograder specification (gradescope-autograders.readthedocs.io/en/latest/specs/):
the zip holds ``setup.sh`` and ``run_autograder`` at its root; Gradescope unpacks it to
``/autograder/source``, runs ``setup.sh`` once, as root, while it builds the assignment's image,
and copies ``run_autograder`` to ``/autograder/run_autograder``. For each submission it puts the
student's files in ``/autograder/submission`` and runs ``/autograder/run_autograder`` (as root,
in ``/autograder``), which must write ``/autograder/results/results.json``; its stdout goes to
``/autograder/results/stdout``, for instructors only.

The zip is laid out like this repository, so that ``assignment.yaml``'s ``reference:`` path
resolves as it does here::

    setup.sh  run_autograder  constraints.txt
    pyproject.toml  README.md  grader/...          the grader, installed by setup.sh with pip
    assignments/<name>/...                         assignment.yaml, tests/public, tests/hidden
    reference/...                                  the staff solution (speed yardstick)
    wheels/*.whl                                   optional: a wheelhouse for an offline install

It holds the hidden tests and the reference: it is for course staff, uploaded to Gradescope,
never given to students.

``setup.sh`` installs Python 3.11 if needed, makes a venv in ``/opt/autograd-grader/venv``,
and installs the grader from the zip with pip: from ``wheels/`` (or ``$GRADER_WHEELHOUSE``)
without any index when a wheelhouse is there, else from PyPI, with torch from its CPU index
(an unpinned or PyPI torch is a multi-GB CUDA build). ``constraints.txt`` pins the grader's
direct dependencies to the versions of the machine that built the zip. It leaves
``/autograder/source`` readable by root only: the sandboxed worker runs as ``nobody`` and must
not read the hidden tests.

``run_autograder`` grades with the ``local`` sandbox (Gradescope gives no Docker engine) and
exports the report; when grading fails it still writes a ``results.json`` (score 0, the error).

The zip is deterministic (sorted entries, fixed timestamps and modes): rebuilding it from the
same files gives the same bytes, so its SHA-256 names what was uploaded.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import posixpath
import re
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from grader.assignment import Assignment
from grader.distribution.student_bundle import REPO_ROOT, grader_sources, tree_files
from grader.errors import GraderError

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
EXECUTABLE, REGULAR = 0o755, 0o644
VENV = "/opt/autograd-grader/venv"
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
PYTHON_VERSION = "3.11"
BUILD_REQUIREMENTS = ("pip", "setuptools>=68")   # what setup.sh needs from a wheelhouse besides the grader's deps


class AutograderError(GraderError):
    """The autograder zip cannot be made as asked."""


@dataclass(frozen=True)
class Entry:
    data: bytes
    mode: int = REGULAR


# ---- what goes into the zip ----


def project_requirements(root: Path = REPO_ROOT) -> list[str]:
    """The grader's dependencies, as ``pyproject.toml`` declares them."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    # the staff extra (torch) too: the autograder runs the hidden suites, whose oracle is live torch
    return list(project["dependencies"]) + list(project.get("optional-dependencies", {}).get("staff", []))


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]


def constraints(requirements: list[str]) -> str:
    """Pins of the grader's direct dependencies at the versions installed here (the tested ones)."""
    lines = ["# The grader's direct dependencies at the versions of the machine that built this zip.\n"]
    for name in sorted({_requirement_name(r) for r in requirements}, key=str.lower):
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        lines.append(f"{name}=={version.split('+')[0]}\n")   # torch 2.13.0+cpu -> torch==2.13.0
    return "".join(lines)


def torch_requirement(requirements: list[str]) -> str:
    pinned = [r for r in requirements if _requirement_name(r) == "torch"]
    if not pinned:
        raise AutograderError("pyproject.toml does not depend on torch; the grader needs it as its oracle")
    return pinned[0].replace(" ", "")


def reference_path(assignment: Assignment) -> str:
    """Where the reference goes in the zip: where ``reference:`` points from ``assignments/<name>/``."""
    if assignment.config.reference is None:
        raise AutograderError(f"{assignment.name} names no reference solution, which grading needs "
                              "(speed tests)", hint="set `reference:` in its assignment.yaml")
    rel = posixpath.normpath(posixpath.join("assignments", assignment.name, str(assignment.config.reference)))
    if rel == ".." or rel.startswith("../") or rel == ".":
        raise AutograderError(f"the reference ({assignment.config.reference!r} from the assignment's folder) "
                              "must lie inside the repository")
    if not assignment.reference_dir.is_dir():
        raise AutograderError(f"the reference solution is missing: {assignment.reference_dir}")
    return rel


def autograder_entries(assignment: Assignment, *, root: Path = REPO_ROOT,
                       wheels: list[Path] | None = None) -> dict[str, Entry]:
    """Every file of the autograder zip, by its path in the zip."""
    requirements = project_requirements(root)
    entries = {rel: Entry(data) for rel, data in grader_sources(root).items()}
    entries["setup.sh"] = Entry(setup_script(torch_requirement(requirements)).encode(), EXECUTABLE)
    entries["run_autograder"] = Entry(run_script(assignment).encode(), EXECUTABLE)
    entries["constraints.txt"] = Entry(constraints(requirements).encode())
    for rel, path in tree_files(assignment.root):
        entries[f"assignments/{assignment.name}/{rel}"] = Entry(path.read_bytes())
    reference = reference_path(assignment)
    for rel, path in tree_files(assignment.reference_dir):
        entries[f"{reference}/{rel}"] = Entry(path.read_bytes())
    for wheel in sorted(wheels or [], key=lambda p: p.name):
        entries[f"wheels/{wheel.name}"] = Entry(wheel.read_bytes())
    return entries


def write_zip(entries: dict[str, Entry], path: Path) -> str:
    """Write ``entries`` as a deterministic zip at ``path`` (atomically); returns its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w") as archive:
            for name in sorted(entries):
                info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
                info.create_system = 3                                  # Unix, so that modes are kept
                info.external_attr = (0o100000 | entries[name].mode) << 16
                info.compress_type = zipfile.ZIP_STORED if name.endswith(".whl") else zipfile.ZIP_DEFLATED
                archive.writestr(info, entries[name].data, compresslevel=9)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_autograder_zip(assignment: Assignment, output: Path, *, root: Path = REPO_ROOT,
                         wheels: list[Path] | None = None) -> str:
    """Write the autograder zip of ``assignment`` to ``output``; returns its SHA-256."""
    return write_zip(autograder_entries(assignment, root=root, wheels=wheels), output)


# ---- a wheelhouse, for an offline setup.sh ----


def wheelhouse_requirements(root: Path = REPO_ROOT) -> list[str]:
    return [*project_requirements(root), *BUILD_REQUIREMENTS]


def download_wheelhouse(dest_root: Path, *, arch: str = "x86_64", root: Path = REPO_ROOT) -> list[Path]:
    """Wheels of everything setup.sh installs (CPython 3.11, Linux ``arch``), downloaded once.

    Kept in ``dest_root/wheelhouse-cp311-<arch>-<hash of the requirements and pins>``; a folder is
    used only once complete. torch comes first, on its own: from the wheels pip already knows
    without an index (a machine's wheel cache, ``find-links``), else from torch's CPU index; the
    rest then resolves against that wheel, so PyPI's CUDA build is never fetched.
    """
    from grader.sandbox.image import WHEEL_PLATFORMS   # the platform tags of the sandbox image's wheels

    if arch not in WHEEL_PLATFORMS:
        raise AutograderError(f"no wheel platform known for architecture {arch!r}")
    requirements = wheelhouse_requirements(root)
    pins = constraints(project_requirements(root))
    key = hashlib.sha256("\n".join([*requirements, pins, arch, PYTHON_VERSION]).encode()).hexdigest()[:12]
    dest = dest_root / f"wheelhouse-cp311-{arch}-{key}"
    if (dest / ".complete").is_file():
        return sorted(dest.glob("*.whl"))
    dest_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".wheelhouse-", dir=dest_root) as tmp:
        wheels, pins_file = Path(tmp) / "wheels", Path(tmp) / "constraints.txt"
        pins_file.write_text(pins, encoding="utf-8")
        download = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
                    "--python-version", PYTHON_VERSION, "--implementation", "cp", "--abi", "cp311",
                    "-c", str(pins_file), "--dest", str(wheels)]
        for platform in WHEEL_PLATFORMS[arch]:
            download += ["--platform", platform]
        torch = torch_requirement(project_requirements(root))
        if not _pip(download + ["--no-deps", "--no-index", torch], check=False):
            _pip(download + ["--no-deps", "--index-url", TORCH_INDEX, torch])
        _pip(download + ["--find-links", str(wheels), *requirements])
        (wheels / ".complete").write_text("\n".join(requirements) + "\n", encoding="utf-8")
        try:
            os.replace(wheels, dest)        # folders only ever arrive complete
        except OSError:
            pass                            # another process put one there first: use it
    return sorted(dest.glob("*.whl"))


def _pip(cmd: list[str], check: bool = True) -> bool:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 and check:
        raise AutograderError(f"downloading the wheelhouse failed:\n{(done.stderr or done.stdout)[-1500:]}",
                              hint="check that pip can reach an index (pip download torch==2.13.0)")
    return done.returncode == 0


# ---- the two scripts ----


def setup_script(torch: str) -> str:
    return SETUP_SH.replace("@TORCH@", torch).replace("@VENV@", VENV).replace("@TORCH_INDEX@", TORCH_INDEX)


def run_script(assignment: Assignment) -> str:
    module_file = assignment.config.required_files[0]
    return (RUN_AUTOGRADER.replace("@ASSIGNMENT@", assignment.name).replace("@MODULE_FILE@", module_file)
            .replace("@VENV@", VENV))


SETUP_SH = r"""#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder's image (the zip is in
# /autograder/source). It installs the autograd-lab grader into its own venv, @VENV@.
#
#   offline:  with a wheelhouse, wheels/ in this zip or $GRADER_WHEELHOUSE: pip --no-index
#   online:   torch's CPU build from its index (PyPI's torch is a multi-GB CUDA build), the rest from PyPI
set -euo pipefail

SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${GRADER_VENV:-@VENV@}"
WHEELHOUSE="${GRADER_WHEELHOUSE:-$SOURCE/wheels}"
TORCH="@TORCH@"
TORCH_INDEX="@TORCH_INDEX@"

log() { echo "setup.sh: $*"; }
have_wheels() { compgen -G "$WHEELHOUSE/*.whl" >/dev/null; }
apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; }

# Python 3.11 (the wheelhouse's), else any Python >= 3.11 when pip may use an index.
find_python() {
    local candidates=(python3.11)
    have_wheels || candidates+=(python3)
    for py in "${candidates[@]}"; do
        if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            command -v "$py"
            return 0
        fi
    done
    return 1
}

PYTHON="$(find_python || true)"
if [ -z "$PYTHON" ]; then
    log "no suitable Python here; installing python3.11 with apt"
    apt-get update -qq || true
    apt_install python3.11 python3.11-venv
    PYTHON="$(find_python)"
fi
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
log "Python $PYVER at $PYTHON"

# A venv with pip. Debian and Ubuntu keep ensurepip in python3.X-venv: without it, make the venv
# without pip and bootstrap pip from the wheelhouse, or install that package.
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"
    PIP_WHEEL="$(compgen -G "$WHEELHOUSE/pip-*.whl" | sort | tail -n 1 || true)"
    if [ -n "$PIP_WHEEL" ]; then
        "$PYTHON" -m venv --without-pip "$VENV"
        "$VENV/bin/python" "$PIP_WHEEL/pip" install --quiet --no-index --disable-pip-version-check "$PIP_WHEEL"
    else
        apt-get update -qq || true
        apt_install "python$PYVER-venv"
        "$PYTHON" -m venv "$VENV"
    fi
fi

PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --no-cache-dir
     --constraint "$SOURCE/constraints.txt")
if have_wheels; then
    log "installing the grader and its dependencies from $WHEELHOUSE (no index)"
    "${PIP[@]}" --no-index --find-links "$WHEELHOUSE" "$SOURCE[staff]"   # staff: torch, the hidden suites' oracle
else
    # torch's index holds $TORCH+cpu, which pip prefers to PyPI's CUDA build of the same version.
    log "installing the grader and its dependencies from PyPI, $TORCH from $TORCH_INDEX"
    "${PIP[@]}" --extra-index-url "$TORCH_INDEX" "$TORCH" "$SOURCE[staff]"
fi

# The local sandbox runs the student's code as uid 65534 (nobody) when the grader is root.
if ! getent passwd 65534 >/dev/null; then
    getent group 65534 >/dev/null || groupadd --gid 65534 nogroup
    useradd --uid 65534 --gid 65534 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin nobody
fi

# Hidden tests and the reference: root's only. The worker reads nothing here (the grader copies
# what it needs into each sandbox), and the grader runs as root.
chmod -R go-rwx "$SOURCE"

"$VENV/bin/grader" --version
"$VENV/bin/python" -c 'import numpy, torch; print("numpy", numpy.__version__, "torch", torch.__version__)'
log "done"
"""

RUN_AUTOGRADER = r"""#!/usr/bin/env bash
# Gradescope runs this for every submission, as root, in /autograder: it grades
# /autograder/submission with the public and hidden tests in the grader's local sandbox and
# writes /autograder/results/results.json. It always writes one: if grading fails, the
# results give score 0 and the error. Everything printed here reaches instructors only.
set -uo pipefail

ROOT="${AUTOGRADER_ROOT:-/autograder}"
VENV="${GRADER_VENV:-@VENV@}"
ASSIGNMENT="$ROOT/source/assignments/@ASSIGNMENT@"
SUBMISSION="$ROOT/submission"
RESULTS="$ROOT/results/results.json"
mkdir -p "$(dirname "$RESULTS")"
WORK="$(mktemp -d)"             # 0700: the sandboxed worker (nobody) cannot read the report
trap 'rm -rf "$WORK"' EXIT

# A notebook alone (the handout allows one) is graded as the notebook.
TARGET="$SUBMISSION"
if [ ! -e "$SUBMISSION/@MODULE_FILE@" ]; then
    mapfile -t NOTEBOOKS < <(find "$SUBMISSION" -maxdepth 1 -type f -name '*.ipynb' 2>/dev/null | sort)
    if [ "${#NOTEBOOKS[@]}" -eq 1 ]; then
        TARGET="${NOTEBOOKS[0]}"
    fi
fi

# Score 0 and a message: when there is no report to export. Python if any, else fixed text.
fallback() {
    local py="$VENV/bin/python"
    [ -x "$py" ] || py="$(command -v python3 || true)"
    if [ -n "$py" ] && GRADER_MESSAGE="$1" "$py" - "$RESULTS" <<'PY'
import json, os, sys
path = sys.argv[1]
results = {
    "score": 0.0,
    "output": os.environ["GRADER_MESSAGE"],
    "output_format": "text",
    "visibility": "visible",
    "stdout_visibility": "hidden",
    "extra_data": {"status": "autograder-error"},
}
tmp = path + ".tmp"
with open(tmp, "w", encoding="utf-8") as fh:
    json.dump(results, fh, indent=2)
    fh.write("\n")
os.replace(tmp, path)
PY
    then
        return 0
    fi
    printf '%s\n' '{"score": 0.0, "output": "The autograder failed before it could grade this submission. Please tell the course staff.", "output_format": "text", "stdout_visibility": "hidden"}' >"$RESULTS"
}

# The grader's own messages: its error boundary prints "grader: ..." and "hint: ..." lines.
errors_of() {
    grep -E '^(grader: |hint: )' "$1" | head -n 20 | cut -c 1-2000
}

echo "run_autograder: grading $TARGET"
status=0
"$VENV/bin/grader" grade "$TARGET" --assignment "$ASSIGNMENT" --backend local \
    -o "$WORK/report.json" >"$WORK/grade.log" 2>&1 || status=$?
cat "$WORK/grade.log"
echo "run_autograder: grader grade exited with status $status"

if [ -s "$WORK/report.json" ]; then
    if "$VENV/bin/grader" export gradescope "$WORK/report.json" -o "$RESULTS" >"$WORK/export.log" 2>&1; then
        cat "$WORK/export.log"
        exit 0
    fi
    cat "$WORK/export.log"
    DETAILS="$(errors_of "$WORK/export.log")"
else
    DETAILS="$(errors_of "$WORK/grade.log")"
fi
fallback "The autograder could not grade this submission (exit status $status): score 0 for now.
${DETAILS:-The grader stopped without a message.}
If this looks like a problem of the autograder rather than of your code, tell the course staff."
echo "run_autograder: wrote a score-0 results.json"
exit 0
"""
