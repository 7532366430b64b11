"""What the course hands out to students: ``grader bundle student -o DIR``.

A student bundle holds what a student needs to do the lab and to run its public tests, and
nothing the staff keep::

    DIR/
        README.md                 how to install the grader and run `grader check`
        handout.md                the lab
        autograd.py               the template (the same as a notebook: autograd.ipynb)
        autograd.ipynb
        autograd-lab/             the assignment, as `grader check --assignment` reads it:
            assignment.yaml           parts, points, limits; no `reference`
            tests/public/...          the public suites
            expectations/public.*     torch's results of the public Programs (no torch needed)
        wheels/autograd_lab_grader-<version>-py3-none-any.whl

The assignment folder is named after the assignment because ``grader check`` looks its
default assignment (``autograd-lab``) up as a path first: run in DIR, a plain ``grader check``
finds ``DIR/autograd-lab`` and grades ``DIR/autograd.py``. From elsewhere:
``grader check --assignment DIR/autograd-lab path/to/autograd.py``.

Never in a bundle: the hidden tests (their files, names and seed offsets), the reference
solution, the staff's files. ``find_leaks`` scans every file written, the members of the
wheel included, for those, and the bundle is not written when anything is found.

The wheel is built from a copy of the grader's sources (``grader_sources``) in a temp dir, so
the checkout gets no ``build/`` or ``*.egg-info`` from it, and with ``SOURCE_DATE_EPOCH`` set,
so that rebuilding it gives the same bytes.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

import yaml
from pydantic import ValidationError

from grader.assignment import Assignment, AssignmentConfig
from grader.errors import GraderError
from grader.programs import expectations as stored_expectations

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_FILES = ("autograd.py", "autograd.ipynb", "handout.md")
STAFF_ONLY_KEYS = ("reference",)               # assignment.yaml keys that name staff-only files
SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints"}
SKIPPED_SUFFIXES = (".pyc", ".pyo")
SOURCE_DATE_EPOCH = "315532800"                # 1980-01-01, the earliest time a zip can hold
DISTINCTIVE_LINE = 30                          # reference lines at least this long are its fingerprint
SEED_OFFSET = re.compile(r"\bseed\s*\+\s*(\d+)|\(\s*seed\s*,\s*(\d+)\s*\)")
TEST_NAME = re.compile(r"^\s*def\s+(test_\w+)\s*\(", re.M)


class BundleError(GraderError):
    """A bundle cannot be made as asked (no checkout, missing files, a leak)."""


# ---- the grader's own sources (shared with the Gradescope autograder) ----


def _kept(rel: PurePosixPath) -> bool:
    return not (SKIPPED_PARTS & set(rel.parts)) and not rel.name.endswith(SKIPPED_SUFFIXES)


def tree_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(posix path relative to ``root``, path) of the files under ``root``, sorted; no caches."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = PurePosixPath(path.relative_to(root).as_posix())
        if _kept(rel):
            yield rel.as_posix(), path


def grader_sources(root: Path = REPO_ROOT) -> dict[str, bytes]:
    """What builds the grader's distribution: ``pyproject.toml``, ``README.md``, ``grader/``."""
    missing = [name for name in ("pyproject.toml", "README.md", "grader") if not (root / name).exists()]
    if missing:
        raise BundleError(f"not a checkout of the grader: {', '.join(missing)} missing in {root}",
                          hint="run this command from the course's repository (pip install -e .)")
    files = {name: (root / name).read_bytes() for name in ("pyproject.toml", "README.md")}
    files.update({f"grader/{rel}": path.read_bytes() for rel, path in tree_files(root / "grader")})
    return files


def write_files(files: dict[str, bytes], dest: Path) -> None:
    for rel, data in files.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def build_wheel(dest: Path, root: Path = REPO_ROOT) -> Path:
    """Build the grader's wheel (no dependencies) into ``dest``; returns its path."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="grader-wheel-") as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        write_files(grader_sources(root), src)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir",
               "--disable-pip-version-check", "--quiet", "-w", str(out), str(src)]
        if _has_build_backend():
            cmd.insert(cmd.index("--no-deps"), "--no-build-isolation")   # offline: the setuptools we have
        env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wheels = sorted(out.glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise BundleError(f"building the grader's wheel failed:\n{(done.stderr or done.stdout)[-1500:]}",
                              hint="check that `pip wheel --no-deps .` works in the checkout")
        target = dest / wheels[0].name
        shutil.copyfile(wheels[0], target)
    return target


def _has_build_backend() -> bool:
    """Whether setuptools >= 68 (pyproject's build requirement) is importable here."""
    try:
        import setuptools
    except ImportError:
        return False
    major = re.match(r"\d+", setuptools.__version__)
    return bool(major) and int(major.group()) >= 68


# ---- the assignment, without what is staff-only ----


def student_config(assignment: Assignment) -> dict:
    """``assignment.yaml`` as students get it: the staff-only keys removed.

    ``reference`` becomes ``null`` (no yardstick in a bundle) where the config model allows
    it, else it is dropped.
    """
    raw = yaml.safe_load((assignment.root / "assignment.yaml").read_text(encoding="utf-8"))
    public = {key: value for key, value in raw.items() if key not in STAFF_ONLY_KEYS}
    try:
        AssignmentConfig.model_validate({**public, "reference": None})
    except ValidationError:
        return public
    return {**public, "reference": None}


def student_yaml(assignment: Assignment) -> str:
    header = (f"# {assignment.config.title}: the assignment's settings, as `grader check` reads them.\n"
              "# Parts, points, time and sandbox limits are the ones used for grading.\n")
    return header + yaml.safe_dump(student_config(assignment), sort_keys=False, allow_unicode=True)


# ---- leaks: what must never be in a bundle ----


@dataclass(frozen=True)
class Secrets:
    """Fingerprints of the staff-only files of an assignment."""

    reference_lines: frozenset[str]     # distinctive lines of the reference solution
    hidden_tests: frozenset[str]        # names of hidden test functions not also public
    hidden_offsets: frozenset[int]      # seed offsets of the hidden tests not also public
    hidden_files: frozenset[str]        # module names of hidden suites without a public namesake

    @classmethod
    def of(cls, assignment: Assignment, root: Path = REPO_ROOT) -> Secrets:
        """Lines the reference shares with the checkout's template, public tests or grader are not
        secrets; the rest of its long lines are (a template passed with ``--template`` is checked)."""
        public = _texts(assignment.public_tests)
        hidden = _texts(assignment.hidden_tests)
        package = [data.decode("utf-8", "replace") for data in grader_sources(root).values()]
        shared = _lines([*public.values(), *_texts(root / "student_template").values(), *package])
        reference = _lines(_texts(assignment.reference_dir).values())
        return cls(
            reference_lines=frozenset(line for line in reference - shared if len(line) >= DISTINCTIVE_LINE),
            hidden_tests=frozenset(_names(hidden.values()) - _names(public.values())),
            hidden_offsets=frozenset(_offsets(hidden.values()) - _offsets(public.values())),
            hidden_files=frozenset(PurePosixPath(rel).stem for rel in set(hidden) - set(public)
                                   if PurePosixPath(rel).stem != "__init__"),
        )


def _norm(line: str) -> str:
    return " ".join(line.split())


def _lines(texts: Iterable[str]) -> set[str]:
    return {_norm(line) for text in texts for line in text.splitlines()}


def _texts(root: Path) -> dict[str, str]:
    if not root.is_dir():
        return {}
    return {rel: path.read_text(encoding="utf-8", errors="replace") for rel, path in tree_files(root)
            if path.suffix in (".py", ".md", ".yaml", ".txt", ".ipynb")}


def _names(texts: Iterable[str]) -> set[str]:
    return {name for text in texts for name in TEST_NAME.findall(text)}


def _offsets(texts: Iterable[str]) -> set[int]:
    return {int(a or b) for text in texts for a, b in SEED_OFFSET.findall(text)}


def _alternatives(items: Iterable[object]) -> str:
    """A regex alternation of ``items``; one that never matches when there are none."""
    return "|".join(re.escape(str(item)) for item in sorted(items)) or "(?!)"


def _member_texts(name: str, data: bytes) -> Iterator[tuple[str, str]]:
    """(where, text) of a file, of each member of a wheel or zip, and of a notebook's cells."""
    if name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    yield from ((f"{name}!{where}", text)
                                for where, text in _member_texts(info.filename, archive.read(info)))
        return
    text = data.decode("utf-8", errors="replace")
    yield name, text
    if name.endswith(".ipynb"):
        try:
            cells = json.loads(text).get("cells", [])
        except (ValueError, AttributeError):
            return
        for i, cell in enumerate(cells, start=1):
            source = cell.get("source", "")
            yield f"{name} (cell {i})", "".join(source) if isinstance(source, list) else str(source)


def find_leaks(bundle: Path, secrets: Secrets) -> list[str]:
    """Every place in ``bundle`` that holds a staff-only thing, as readable lines."""
    found = []
    numbers = _alternatives(secrets.hidden_offsets)
    offsets = re.compile(rf"\bseed\s*\+\s*(?:{numbers})\b|\(\s*seed\s*,\s*(?:{numbers})\s*\)")
    names = re.compile(rf"\b(?:{_alternatives(secrets.hidden_tests)})\b")
    for rel, path in tree_files(bundle):
        if "hidden" in PurePosixPath(rel).parts or rel.startswith("reference/"):
            found.append(f"{rel}: a staff-only path")
        for where, text in _member_texts(rel, path.read_bytes()):
            found += [f"{where}: a line of the reference solution: {line[:80]!r}"
                      for line in sorted(secrets.reference_lines & _lines([text]))]
            found += [f"{where}: the hidden test {m!r}" for m in sorted(set(names.findall(text)))]
            found += [f"{where}: a hidden seed offset ({m.group(0)!r})" for m in offsets.finditer(text)]
            found += [f"{where}: names the hidden suite {f!r}" for f in sorted(secrets.hidden_files)
                      if re.search(rf"\b{re.escape(f)}\b", text)]
    return found


# ---- the bundle ----


@dataclass(frozen=True)
class StudentBundle:
    root: Path
    files: tuple[str, ...]
    wheel: str


def build_student_bundle(assignment: Assignment, dest: Path, *, template_dir: Path | None = None,
                         root: Path = REPO_ROOT, force: bool = False) -> StudentBundle:
    """Write the student bundle of ``assignment`` to ``dest`` (new or empty; ``force`` replaces it)."""
    template_dir = template_dir or root / "student_template"
    dest = Path(dest).resolve()
    if dest.exists() and any(dest.iterdir()) and not force:
        raise BundleError(f"{dest} exists and is not empty", hint="choose a new folder, or pass --force to replace it")
    missing = [name for name in TEMPLATE_FILES if not (template_dir / name).is_file()]
    if missing:
        raise BundleError(f"the student template in {template_dir} lacks {', '.join(missing)}")
    if not assignment.public_tests.is_dir():
        raise BundleError(f"the assignment has no public tests in {assignment.public_tests}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        wheel = _assemble(assignment, staging, template_dir, root)
        leaks = find_leaks(staging, Secrets.of(assignment, root))
        if leaks:
            raise BundleError("the student bundle would give away staff-only material:\n  " + "\n  ".join(leaks[:20]),
                              hint="remove it from the template, the public tests or the grader package")
        if dest.exists():
            shutil.rmtree(dest)
        staging.chmod(0o755)
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return StudentBundle(dest, tuple(rel for rel, _ in tree_files(dest)), wheel)


def _assemble(assignment: Assignment, out: Path, template_dir: Path, root: Path) -> str:
    for name in TEMPLATE_FILES:
        shutil.copyfile(template_dir / name, out / name)
    folder = out / assignment.name
    (folder / "tests").mkdir(parents=True)
    (folder / "assignment.yaml").write_text(student_yaml(assignment), encoding="utf-8")
    for rel, path in tree_files(assignment.public_tests):
        target = folder / "tests" / "public" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    _copy_public_expectations(assignment, folder / "expectations")
    wheel = build_wheel(out / "wheels", root).name
    (out / "README.md").write_text(student_readme(assignment, wheel), encoding="utf-8")
    return wheel


def _copy_public_expectations(assignment: Assignment, dest: Path) -> None:
    """torch's answers of the public Programs at the assignment's seed: `grader check` then needs no torch.
    Only ``public.*``: the hidden suites' expectations name hidden Programs and never leave the staff."""
    source = assignment.expectations_dir
    if not stored_expectations.exists(source, "public"):
        raise BundleError(f"the assignment has no public expectations in {source}",
                          hint="build them first: grader expectations build")
    dest.mkdir(parents=True)
    for suffix in (".json", ".npz"):
        shutil.copyfile(source / f"public{suffix}", dest / f"public{suffix}")


def student_readme(assignment: Assignment, wheel: str) -> str:
    name, title = assignment.name, assignment.config.title
    parts = ", ".join(assignment.config.parts)
    return f"""# {title}

| file | what it is |
|---|---|
| `handout.md` | the lab: what to implement, and how it is graded |
| `autograd.py` | your starting point (`autograd.ipynb` is the same, as a notebook: work in one of them) |
| `{name}/` | the public tests and the assignment's settings, for `grader check` |
| `wheels/{wheel}` | the course's grader |

## Install the grader (once)

You need Python 3.11 or newer, on Linux or macOS (on Windows, use WSL). In this folder:

```bash
python3 -m venv .venv
source .venv/bin/activate
pip install "wheels/{wheel}"
```

pip also installs what the grader needs: NumPy, pytest and a few small libraries. No torch:
`torch.autograd`'s results for the public tests come with this folder (`{name}/expectations/`).
Only to run the public tests with another seed (`grader check --seed N`) you need the torch
version the course pins, from its CPU build (about 200 MB; without the extra index pip may
download a multi-GB GPU build):

```bash
pip install "wheels/{wheel}[staff]" --extra-index-url https://download.pytorch.org/whl/cpu
```

The grader itself comes from the wheel in this folder.

## Check your work

```bash
grader check                       # in this folder: grades ./autograd.py with the public tests
grader check autograd.ipynb        # if you work in the notebook
grader check --part ops            # one part: {parts}
```

From another folder, say where the tests are:
`grader check --assignment path/to/this/folder/{name} path/to/autograd.py`.

`grader check` runs the public tests in a sandbox on your machine and explains each failure,
with a short script that reproduces it. The hidden tests that grade your submission are not
here: they check the same rules (see the handout) with other shapes, seeds and cases.
"""
