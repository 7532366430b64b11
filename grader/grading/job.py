"""One submission's grading as plain data in, JSON text out: what a long-lived process calls per submission.

``grader batch`` hands each submission to a grading process that stays up for the whole batch
(``grader.grading.service``), locally or on a Dask worker, so interpreter start, the torch import
and the image check are paid once per process, not once per submission. What travels is plain:

- a ``GradingJob``: the student id, the submission's *staged* files (the required files only,
  as ``load_submission`` staged them; capped and hashed), the seed, backend and part selection,
  and the digests the worker must match (assignment, grader code, sandbox image tag);
- an ``AssignmentBundle``: the assignment's ``assignment.yaml``, its test folders and the
  reference solution, as bytes with one digest, for workers that do not share the client's disk;
- back: the report as JSON text (``grade_job``), never a pickle.

Each submission still gets fresh sandboxes (``runner.grade`` starts them and stops them). The
process itself is put back as it was after every job (``clean_process_state``): environment,
working directory, ``sys.path``, the suites' modules, NumPy's global RNG, torch's grad mode and
default dtype. Student code never runs in this process; this is about one run of the suites
changing what the next one sees.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

import grader
from grader.assignment import Assignment, load_assignment
from grader.errors import GraderError
from grader.grading.runner import GradeRequest, grade
from grader.grading.submission import manifest_sha256

MAX_FILE_BYTES = 2 * 1024 * 1024
"""A staged file may be this big: the submission limit (1 MiB) plus a notebook's provenance header."""
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
"""An assignment bundle (suites + reference) above this is refused: it is not what an assignment is."""


class JobRefused(GraderError):
    """The grading process will not grade this job as sent (digest mismatch, bad payload)."""


# -- the job ------------------------------------------------------------------------------


class GradingJob(BaseModel):
    """One submission to grade, as JSON: nothing here is a path on the client's machine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    student: str = Field(min_length=1, max_length=1000)
    files: dict[str, str]                       # staged file name -> base64 of its bytes
    files_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    assignment_digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    grader_digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    seed: int | None = None
    backend: str = "docker"
    parts: tuple[str, ...] = ()
    image_tag: str | None = None                # docker: the tag the client built; the worker must have it
    timeout_s: float = Field(3600.0, gt=0)

    @field_validator("files")
    @classmethod
    def _safe_names(cls, files: dict[str, str]) -> dict[str, str]:
        if not files or len(files) > 16:
            raise ValueError("a job carries between 1 and 16 staged files")
        for name in files:
            pure = PurePosixPath(name)
            if pure.is_absolute() or ".." in pure.parts or not pure.parts or "\\" in name:
                raise ValueError(f"unsafe staged file name {name!r}")
        return files

    def decoded_files(self) -> dict[str, bytes]:
        out = {}
        for name, text in self.files.items():
            data = base64.b64decode(text, validate=True)
            if len(data) > MAX_FILE_BYTES:
                raise JobRefused(f"staged file {name} of {self.student!r} is {len(data)} bytes, over the "
                                 f"{MAX_FILE_BYTES} bytes a job may carry")
            out[name] = data
        return out


def files_digest(files: Mapping[str, bytes]) -> str:
    """The ``sha256sum``-style manifest digest of the staged files (as ``Submission.sha256`` is made)."""
    from grader.grading.submission import SubmittedFile

    return manifest_sha256([SubmittedFile(n, len(d), hashlib.sha256(d).hexdigest()) for n, d in files.items()])


def staged_files(staged_dir: Path) -> dict[str, bytes]:
    """Every file under a staged submission folder, by relative POSIX name."""
    return {p.relative_to(staged_dir).as_posix(): p.read_bytes()
            for p in sorted(staged_dir.rglob("*")) if p.is_file()}


def make_job(student: str, files: Mapping[str, bytes], **fields: object) -> GradingJob:
    for name, data in files.items():
        if len(data) > MAX_FILE_BYTES:
            raise JobRefused(f"staged file {name} is {len(data)} bytes, over {MAX_FILE_BYTES}")
    return GradingJob(student=student, files={n: base64.b64encode(d).decode("ascii") for n, d in files.items()},
                      files_sha256=files_digest(files), **fields)  # type: ignore[arg-type]


# -- the assignment as bytes ----------------------------------------------------------------


@dataclass(frozen=True)
class AssignmentBundle:
    """An assignment as files (relative POSIX path -> bytes) and their digest."""

    name: str
    files: dict[str, bytes]
    digest: str

    def to_plain(self) -> dict[str, object]:
        """Plain data for Dask to carry (bytes and str only)."""
        return {"name": self.name, "files": dict(self.files), "digest": self.digest}

    @staticmethod
    def from_plain(obj: Mapping[str, object]) -> AssignmentBundle:
        files = obj.get("files")
        if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, bytes) for k, v in files.items()):
            raise JobRefused("the assignment bundle is malformed")
        return AssignmentBundle(str(obj.get("name")), files, str(obj.get("digest")))


def _digest(files: Mapping[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}\0{len(files[name])}\0".encode())
        h.update(files[name])
    return h.hexdigest()


def _tree(folder: Path, prefix: str) -> dict[str, bytes]:
    return {f"{prefix}/{p.relative_to(folder).as_posix()}": p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def assignment_bundle(assignment: Assignment) -> AssignmentBundle:
    """The assignment's suites, reference and config (``reference:`` pointing inside the bundle)."""
    raw = yaml.safe_load((assignment.root / "assignment.yaml").read_text(encoding="utf-8"))
    reference = assignment.reference_dir
    raw["reference"] = "reference" if reference is not None else None
    files = {"assignment.yaml": yaml.safe_dump(raw, sort_keys=True).encode("utf-8")}
    files.update(_tree(assignment.root / "tests", "tests"))
    if reference is not None:
        files.update({f"reference/{p.name}": p.read_bytes() for p in sorted(reference.glob("*.py"))})
    return AssignmentBundle(assignment.name, files, _digest(files))


def materialise(bundle: AssignmentBundle, cache: Path) -> Assignment:
    """The bundle as an assignment folder under ``cache`` (once per digest), checked against its digest."""
    if sum(len(d) for d in bundle.files.values()) > MAX_BUNDLE_BYTES:
        raise JobRefused(f"the assignment bundle is over {MAX_BUNDLE_BYTES} bytes")
    if _digest(bundle.files) != bundle.digest:
        raise JobRefused("the assignment bundle does not match its digest (corrupted in transit?)")
    root = cache / bundle.digest[:16] / bundle.name
    if not (root / "assignment.yaml").is_file():
        tmp = Path(tempfile.mkdtemp(prefix=".assignment-", dir=cache))
        for name, data in bundle.files.items():
            pure = PurePosixPath(name)
            if pure.is_absolute() or ".." in pure.parts:
                raise JobRefused(f"unsafe file name {name!r} in the assignment bundle")
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, root)
        except OSError:        # another process of this machine made it first
            shutil.rmtree(tmp, ignore_errors=True)
    assignment = load_assignment(root)
    check_assignment(assignment, bundle.digest)
    return assignment


def check_assignment(assignment: Assignment, digest: str) -> None:
    """Refuse to grade with suites other than the client's."""
    mine = assignment_bundle(assignment).digest
    if mine != digest:
        raise JobRefused(f"the assignment at {assignment.root} (digest {mine[:12]}) is not the one the batch "
                         f"grades with (digest {digest[:12]})",
                         hint="the suites changed during the batch, or the worker has other files: "
                              "give the worker the client's assignment")


# -- the grader's own code ------------------------------------------------------------------


def grader_digest() -> str:
    """Digest of the grader package's sources as loaded: two processes that agree grade alike."""
    root = Path(grader.__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".json") and "__pycache__" not in path.parts:
            h.update(f"{path.relative_to(root).as_posix()}\0".encode())
            h.update(path.read_bytes())
    return h.hexdigest()


# -- grading one job ------------------------------------------------------------------------


def grade_job(job: GradingJob, assignment: Assignment, *, image: str | None = None) -> str:
    """Grade ``job`` with ``assignment``; return the report as JSON text.

    The staged files are written to a fresh folder and graded as ``grader grade`` grades a
    folder; the caller (the batch's client) puts its own record of the submission (kind, notes,
    ignored files) into the report, after checking that the files graded are the files it sent.
    """
    files = job.decoded_files()
    if files_digest(files) != job.files_sha256:
        raise JobRefused(f"the files of {job.student!r} do not match their digest (corrupted in transit?)")
    allowed = set(assignment.config.required_files)
    if not set(files) <= allowed:
        raise JobRefused(f"the job carries files other than {', '.join(sorted(allowed))}")
    folder = Path(tempfile.mkdtemp(prefix="grader-job-"))
    try:
        folder.chmod(0o755)
        for name, data in files.items():
            target = folder / name
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            target.write_bytes(data)
            target.chmod(0o644)
        with clean_process_state(assignment.root):
            result = grade(GradeRequest(assignment, folder, backend=job.backend, seed=job.seed,
                                        student=job.student, image=image, parts=job.parts))
        return result.report.dumps()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def clean_process_state(suites_root: Path) -> Iterator[None]:
    """Run a grading, then put back what a run of the suites may have changed in this process."""
    environ, cwd, path = dict(os.environ), os.getcwd(), list(sys.path)
    modules_before = set(sys.modules)
    np = sys.modules.get("numpy")
    rng = np.random.get_state() if np is not None else None
    torch_state = _torch_state()
    try:
        yield
    finally:
        if dict(os.environ) != environ:
            os.environ.clear()
            os.environ.update(environ)
        os.chdir(cwd)
        sys.path[:] = path
        if np is not None and rng is not None:
            np.random.set_state(rng)
        _restore_torch(torch_state)
        forget_modules_under(suites_root, [name for name in sys.modules if name not in modules_before])


def forget_modules_under(folder: Path, names: Iterable[str] | None = None) -> list[str]:
    """Drop the suites' modules (imported from ``folder``) so the next run imports them afresh.

    ``names``: the modules to look at (those a run imported); resolving the file of every module
    in the process, torch's two thousand included, cost a fifth of a second per job."""
    folder = folder.resolve()
    gone = []
    for name in list(sys.modules) if names is None else list(names):
        file = getattr(sys.modules.get(name), "__file__", None)
        if file and Path(file).resolve().is_relative_to(folder):
            del sys.modules[name]
            gone.append(name)
    return gone


def _torch_state() -> tuple[bool, object] | None:
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "is_grad_enabled"):
        return None
    return torch.is_grad_enabled(), torch.get_default_dtype()


def _restore_torch(state: tuple[bool, object] | None) -> None:
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "set_grad_enabled"):
        return
    enabled, dtype = state if state is not None else (True, torch.float32)
    torch.set_grad_enabled(enabled)
    torch.set_default_dtype(dtype)
