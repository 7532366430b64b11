"""Load a student's submission, check it without running it, and stage it for the sandbox.

A submission is a folder, a single ``.py`` file (graded as ``autograd.py`` whatever its
name), a ``.zip`` archive or a Jupyter notebook (exported by ``grader.grading.notebook``). In a folder
or a zip, ``autograd.py`` is looked for at the top level first, then inside the top-level
folders (zipping a folder puts everything inside one); two copies at the same level are
ambiguous. A copy at the top level wins over copies in folders (a note says so).

Checks run on the host and never execute student code: size limits, no NUL bytes, UTF-8,
not empty, and ``compile()`` for syntax errors. Every failure is a ``SubmissionError`` whose
message a student can act on and whose ``code`` is a stable tag for reports:

    not-found  unsupported  unreadable  missing-file  ambiguous  unsafe-file
    file-too-large  binary-file  empty-file  syntax-error
    bad-zip  unsafe-zip  zip-too-large  bad-notebook  empty-notebook  staging-failed

The staged folder is fresh, world-readable (the sandbox runs as another user) and holds only
the required files: whatever else the student shipped (``conftest.py``, ``numpy.py``, data)
is listed in ``Submission.ignored_files`` and never copied, so it cannot shadow anything.

``Submission.sha256`` is stable across kinds: it is the SHA-256 of a ``sha256sum``-style
manifest (``"<hex>  autograd.py\\n"`` per required file, sorted by name) of the submitted
content, so ``sha256sum autograd.py | sha256sum`` reproduces it. For a notebook the content is
the exported code without the grader's provenance header.
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import io
import os
import shutil
import stat
import tempfile
import tokenize
import warnings
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Literal, Sequence

from grader.errors import SubmissionError
from grader.grading.notebook import MAX_NOTEBOOK_BYTES, NotebookExport, export_notebook
from grader.grading.safe_zip import SafeZip, ZipLimits, ZipRefused, format_size, is_junk, open_zip

MiB = 1024 * 1024
Kind = Literal["directory", "file", "zip", "notebook"]


@dataclass(frozen=True)
class SubmissionLimits:
    """Limits checked before anything is staged."""

    max_file_bytes: int = 1 * MiB             # any one required file (a notebook's exported code too)
    max_zip_expanded_bytes: int = 20 * MiB    # all entries of a zip together, as declared; and the zip itself
    max_zip_entry_bytes: int | None = None    # any one entry of a zip, as declared (None: the whole budget)
    max_entries: int = 1000                   # entries of a zip (a folder's listing stops there)
    max_notebook_bytes: int = MAX_NOTEBOOK_BYTES   # a notebook file, outputs included


@dataclass(frozen=True)
class SubmittedFile:
    name: str           # its name in the staged folder, e.g. "autograd.py"
    size: int           # bytes of the submitted content
    sha256: str         # hex digest of the submitted content
    origin: str = ""    # where it came from, e.g. "lab/autograd.py in hw.zip"


@dataclass
class Submission:
    """A checked submission staged in ``staged_dir``; remove it with ``cleanup()`` or ``with``."""

    source: Path
    kind: Kind
    staged_dir: Path
    files: list[SubmittedFile]
    sha256: str
    ignored_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    notebook: NotebookExport | None = None    # maps staged line numbers back to notebook cells
    _finalizer: weakref.finalize = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Removes the staged folder on cleanup(), or when the object is collected / at exit.
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.staged_dir), ignore_errors=True)

    def cleanup(self) -> None:
        """Delete the staged folder (idempotent)."""
        self._finalizer()

    def __enter__(self) -> Submission:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()


def load_submission(
    path: Path,
    required_files: Sequence[str] = ("autograd.py",),
    limits: SubmissionLimits = SubmissionLimits(),
) -> Submission:
    """Check the submission at ``path`` and stage its required files in a fresh temp folder.

    Raises ``SubmissionError`` (and nothing else) when it cannot be graded as given.
    """
    required = _check_required(required_files)
    path = Path(path)
    collected = _collect(path, required, limits)
    files = []
    for name in required:
        content = collected.contents[name]
        _check_content(name, content, limits, collected.notebook)
        files.append(SubmittedFile(name, len(content.submitted), _sha256(content.submitted), content.origin))
    staged_dir = _stage(collected.contents)
    return Submission(
        source=path,
        kind=collected.kind,
        staged_dir=staged_dir,
        files=files,
        sha256=manifest_sha256(files),
        ignored_files=collected.ignored,
        notes=collected.notes,
        notebook=collected.notebook,
    )


def manifest_sha256(files: Sequence[SubmittedFile]) -> str:
    """SHA-256 of the ``sha256sum``-style manifest of ``files`` (sorted by name)."""
    manifest = "".join(f"{f.sha256}  {f.name}\n" for f in sorted(files, key=lambda f: f.name))
    return _sha256(manifest.encode("utf-8"))


# -- what a loader produces ---------------------------------------------------------------


@dataclass(frozen=True)
class _Content:
    staged: bytes       # written to the staged folder
    submitted: bytes    # what the student wrote, hashed (differs from staged for notebooks only)
    origin: str         # for messages: "autograd.py", "lab/autograd.py in hw.zip", "lab.ipynb"


@dataclass
class _Collected:
    kind: Kind
    contents: dict[str, _Content]
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    notebook: NotebookExport | None = None


Loader = Callable[[Path, tuple[str, ...], SubmissionLimits], _Collected]


def _check_required(required_files: Sequence[str]) -> tuple[str, ...]:
    required = tuple(required_files)
    if not required:
        raise ValueError("required_files is empty")
    for name in required:
        parts = PurePosixPath(name).parts
        if not parts or name.startswith("/") or ".." in parts or "\\" in name:
            raise ValueError(f"required file {name!r} is not a plain relative path")
    return required


def _collect(path: Path, required: tuple[str, ...], limits: SubmissionLimits) -> _Collected:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SubmissionError(
            f"No such file or folder: {path}.",
            "not-found",
            hint="Check the path: pass your autograd.py, the folder that holds it, a .zip or a notebook.",
        ) from None
    except OSError as err:
        raise _unreadable(str(path), err) from None
    if stat.S_ISDIR(info.st_mode):
        return _collect_directory(path, required, limits)
    loader = _LOADERS.get(path.suffix.lower()) if stat.S_ISREG(info.st_mode) else None
    if loader is None:
        raise _unsupported(path, regular=stat.S_ISREG(info.st_mode))
    return loader(path, required, limits)


_ARCHIVES = {".tar", ".gz", ".tgz", ".bz2", ".xz", ".rar", ".7z"}


def _unsupported(path: Path, regular: bool) -> SubmissionError:
    suffix = path.suffix.lower()
    if not regular:
        hint = "Pass a regular file or a folder."
    elif suffix in _ARCHIVES:
        hint = "Only .zip archives are accepted: compress your folder as a .zip, or submit autograd.py itself."
    elif suffix == ".pyc":
        hint = "That is compiled bytecode: submit the autograd.py source file."
    else:
        hint = "If this file holds your Python code, rename it to autograd.py."
    return SubmissionError(
        f"Cannot grade {path.name}: a submission must be a folder, a .py file, "
        "a .zip archive or a Jupyter notebook (.ipynb).",
        "unsupported",
        hint=hint,
    )


def _unreadable(what: str, err: OSError) -> SubmissionError:
    return SubmissionError(f"Cannot read {what}: {err.strerror or err}.", "unreadable")


# -- single file and notebook -------------------------------------------------------------


def _collect_file(path: Path, required: tuple[str, ...], limits: SubmissionLimits) -> _Collected:
    _single_file_only(path, required)
    data = _read_file(path, path.name, limits.max_file_bytes, follow_symlink=True)
    notes = [] if path.name == required[0] else [f"graded {path.name} as {required[0]}"]
    return _Collected("file", {required[0]: _Content(data, data, path.name)}, notes=notes)


def _collect_notebook(path: Path, required: tuple[str, ...], limits: SubmissionLimits) -> _Collected:
    _single_file_only(path, required)
    text, export = export_notebook(path, max_bytes=limits.max_notebook_bytes)
    content = _Content(text.encode("utf-8"), export.code.encode("utf-8"), path.name)
    return _Collected("notebook", {required[0]: content}, notes=export.notes(), notebook=export)


def _single_file_only(path: Path, required: tuple[str, ...]) -> None:
    if len(required) > 1:
        raise SubmissionError(
            f"{path.name} is a single file, but this assignment needs {_and(required)}.",
            "missing-file",
            hint="Put all of these files in one folder and submit the folder, or a .zip of it.",
        )


def _read_file(path: Path, origin: str, limit: int, follow_symlink: bool) -> bytes:
    """Read at most ``limit`` bytes of a regular file; a symlink is refused unless followed."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if follow_symlink else getattr(os, "O_NOFOLLOW", 0))
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise _unsafe_file(origin, "is a symbolic link") from None
        raise _unreadable(origin, err) from None
    with open(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _unsafe_file(origin, "is not a regular file")
        if info.st_size > limit:
            raise _too_large(origin, info.st_size, limit)
        try:
            data = fh.read(limit + 1)
        except OSError as err:
            raise _unreadable(origin, err) from None
    if len(data) > limit:
        raise _too_large(origin, len(data), limit)
    return data


def _unsafe_file(origin: str, what: str) -> SubmissionError:
    return SubmissionError(
        f"{origin} {what}; the grader only reads regular files.",
        "unsafe-file",
        hint="Submit the file itself (a copy), not a link to it.",
    )


def _too_large(origin: str, size: int, limit: int) -> SubmissionError:
    return SubmissionError(
        f"{origin} is {format_size(size)}, more than the {format_size(limit)} allowed for one file.",
        "file-too-large",
        hint="The lab needs about 150 lines of code; submit only your source code, without data.",
    )


# -- folder -------------------------------------------------------------------------------

_PRUNED_DIRS = {".git", ".hg", ".svn", "__pycache__", ".ipynb_checkpoints", "node_modules", ".venv", "venv"}


def _collect_directory(path: Path, required: tuple[str, ...], limits: SubmissionLimits) -> _Collected:
    listing, truncated = _list_directory(path, limits.max_entries)
    where = f"the folder {path.name or path}"
    root, notes = _locate(listing, required, where)
    contents = {}
    for name in required:
        data = _read_file(path / (root + name), root + name, limits.max_file_bytes, follow_symlink=False)
        contents[name] = _Content(data, data, root + name)
    if truncated:
        notes.append(f"stopped listing the folder after {limits.max_entries} entries")
    ignored, notes = _ignored(listing, root, required, notes)
    return _Collected("directory", contents, ignored=ignored, notes=notes)


def _list_directory(top: Path, max_entries: int) -> tuple[list[str], bool]:
    """Relative paths of the folder's entries, breadth first (so the top levels are complete).

    Symbolic links are listed, never followed; a pruned folder (.git...) is one entry "name/".
    """
    found: list[str] = []
    queue: deque[tuple[str, str]] = deque([("", str(top))])
    while queue:
        prefix, folder = queue.popleft()
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as err:
            if not prefix:
                raise _unreadable(f"the folder {top}", err) from None
            found.append(prefix)        # an unreadable subfolder is listed as such
            continue
        for entry in entries:
            if len(found) >= max_entries:
                return found, True
            rel = prefix + entry.name
            if not entry.is_dir(follow_symlinks=False):
                found.append(rel)
            elif entry.name in _PRUNED_DIRS:
                found.append(rel + "/")
            else:
                queue.append((rel + "/", entry.path))
    return found, False


# -- zip ----------------------------------------------------------------------------------

_ZIP_HINT = (
    "Create the zip again (right-click the folder > Compress / Send to > Compressed folder, "
    "or `zip -r lab.zip lab/`), or submit autograd.py itself."
)
# safe_zip's verdicts as a student's error codes (the rules themselves live in safe_zip).
_ZIP_CODES = {
    "corrupt": "bad-zip", "encrypted": "bad-zip", "duplicate": "bad-zip",
    "nul-in-name": "unsafe-zip", "unsafe-path": "unsafe-zip", "link": "unsafe-zip",
    "special-file": "unsafe-zip", "folder-with-data": "unsafe-zip",
    "too-large": "zip-too-large", "too-many-entries": "zip-too-large", "entry-too-large": "zip-too-large",
    "ratio": "zip-too-large", "size-lie": "zip-too-large",
}


def zip_limits(limits: SubmissionLimits) -> ZipLimits:
    """A submission's caps as safe_zip's: the zip file itself is held to the expanded budget."""
    budget = limits.max_zip_expanded_bytes
    entry = budget if limits.max_zip_entry_bytes is None else limits.max_zip_entry_bytes
    return ZipLimits(max_entries=limits.max_entries, max_entry_bytes=entry, max_total_bytes=budget,
                     max_archive_bytes=budget)


def _collect_zip(path: Path, required: tuple[str, ...], limits: SubmissionLimits) -> _Collected:
    try:
        with open_zip(path, zip_limits(limits)) as archive:
            return _collect_from_zip(archive, path.name, required, limits)
    except ZipRefused as problem:
        raise _zip_error(path.name, problem) from problem
    except OSError as err:
        raise _unreadable(path.name, err) from None


def _collect_from_zip(archive: SafeZip, zip_name: str, required: tuple[str, ...],
                      limits: SubmissionLimits) -> _Collected:
    entries = {member.path: member for member in archive.members}
    listing = list(entries)
    if not [name for name in listing if not is_junk(name)]:
        raise _bad_zip(zip_name, "the archive is empty")
    archive.verify()
    root, notes = _locate(listing, required, zip_name)
    contents = {}
    for name in required:
        origin = f"{root + name} in {zip_name}"
        member = entries[root + name]
        if member.info.file_size > limits.max_file_bytes:
            raise _too_large(origin, member.info.file_size, limits.max_file_bytes)
        data = archive.read(member)
        contents[name] = _Content(data, data, origin)
    ignored, notes = _ignored(listing, root, required, notes)
    return _Collected("zip", contents, ignored=ignored, notes=notes)


def _zip_error(zip_name: str, problem: ZipRefused) -> SubmissionError:
    code = _ZIP_CODES[problem.code]
    if code == "unsafe-zip":
        return SubmissionError(
            f"{zip_name} is refused: {problem.reason}; the grader refuses archives with absolute paths, "
            "'..' in paths, links or special files.",
            "unsafe-zip",
            hint=_ZIP_HINT,
        )
    if code == "zip-too-large":
        return SubmissionError(
            f"{zip_name} is too large: {problem.reason}.",
            "zip-too-large",
            hint="Zip only your code (autograd.py), without data, virtual environments or .git.",
        )
    return _bad_zip(zip_name, problem.reason)


def _bad_zip(zip_name: str, reason: str) -> SubmissionError:
    return SubmissionError(f"Cannot use {zip_name}: {reason}.", "bad-zip", hint=_ZIP_HINT)


# -- finding the required files in a folder or zip listing --------------------------------

def _locate(listing: list[str], required: tuple[str, ...], where: str) -> tuple[str, list[str]]:
    """The folder prefix ("" or "lab/") that holds the required files, and notes about it."""
    files = [rel for rel in listing if not is_junk(rel)]
    primary = required[0]
    depth = primary.count("/") + 1
    nested = sorted(rel for rel in files if rel.count("/") == depth and rel.split("/", 1)[1] == primary)
    notes: list[str] = []
    if primary in files:
        root = ""
        if nested:
            notes.append(f"graded the top-level {primary}; also found {_and(nested)}, not used")
    elif len(nested) == 1:
        root = nested[0][: -len(primary)]
        notes.append(f"found {primary} inside the folder {root}")
    elif nested:
        raise SubmissionError(
            f"{where} holds {len(nested)} copies of {primary}: {_and(nested)}. "
            "The grader cannot tell which one to grade.",
            "ambiguous",
            hint=f"Keep only the {primary} you want graded, and submit again.",
        )
    else:
        raise _missing(primary, files, where)
    absent = [name for name in required if root + name not in files]
    if absent:
        raise _missing(absent[0], files, where, root)
    return root, notes


def _missing(name: str, files: list[str], where: str, root: str = "") -> SubmissionError:
    location = f"the folder {root} of {where}" if root else where
    if files:
        shown = ", ".join(files[:10]) + (f" (and {len(files) - 10} more)" if len(files) > 10 else "")
        found = f"It contains: {shown}."
    else:
        found = "It is empty."
    return SubmissionError(f"No {name} in {location}. {found}", "missing-file", hint=_near_miss_hint(name, files))


def _near_miss_hint(name: str, files: list[str]) -> str:
    base = PurePosixPath(name).name
    basenames = {rel: PurePosixPath(rel.rstrip("/")).name for rel in files}
    for rel, other in basenames.items():
        if other == base:
            return f"Found {rel}, too deep: put {name} at the top level, or inside a single top-level folder."
    for rel, other in basenames.items():
        if other.lower() == base.lower():
            return f"Found {rel}: rename it to exactly {base} (lower case)."
    notebooks = [rel for rel in files if rel.endswith(".ipynb")]
    if notebooks:
        return f"Found the notebook {notebooks[0]}: submit the .ipynb file itself, not a folder or zip with it."
    close = difflib.get_close_matches(base, list(basenames.values()), n=1, cutoff=0.6)
    if close:
        rel = next(rel for rel, other in basenames.items() if other == close[0])
        return f"Did you mean {rel}? Rename it to {base}."
    return f"Your submission must contain a file named exactly {name}."


def _ignored(
    listing: list[str], root: str, required: tuple[str, ...], notes: list[str]
) -> tuple[list[str], list[str]]:
    """(ignored_files, notes): everything not staged, and one note summarising it."""
    used = {root + name for name in required}
    junk = [rel for rel in listing if is_junk(rel)]
    ignored = [rel for rel in listing if rel not in used and not is_junk(rel)]
    if ignored:
        shown = ", ".join(ignored[:5]) + (", ..." if len(ignored) > 5 else "")
        notes.append(f"not used (only {_and(required)} is graded): {_plural(len(ignored), 'other file')}: {shown}")
    if junk:
        notes.append("skipped operating-system metadata (__MACOSX/, .DS_Store and the like)")
    return ignored, notes


# -- checks on the content ----------------------------------------------------------------


def _check_content(name: str, content: _Content, limits: SubmissionLimits, notebook: NotebookExport | None) -> None:
    if len(content.submitted) > limits.max_file_bytes:
        what = f"the code exported from {content.origin}" if notebook else content.origin
        raise _too_large(what, len(content.submitted), limits.max_file_bytes)
    if name.endswith(".py"):
        _check_python(content, notebook)


def _check_python(content: _Content, notebook: NotebookExport | None) -> None:
    """Is this Python source the sandbox can import? Compiled only, never run."""
    data, origin = content.staged, content.origin
    if b"\0" in data:
        raise _binary(origin, "it contains NUL bytes, so it is not a text file")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise _binary(origin, f"it is not UTF-8 text (byte {data[err.start]:#04x} on line {line})") from None
    if not content.submitted.decode("utf-8").lstrip("\ufeff").strip():
        raise SubmissionError(
            f"{origin} is empty.",
            "empty-file",
            hint="Save your work before submitting; check that you picked the right file.",
        )
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        source = data.decode(encoding)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # SyntaxWarnings are not errors (even under -W error)
            compile(source, "autograd.py", "exec", dont_inherit=True)
    except SyntaxError as err:
        raise _syntax_error(err, origin, notebook) from None
    except (LookupError, UnicodeDecodeError) as err:
        raise SubmissionError(f"Syntax error in {origin}, line 1: bad encoding declaration ({err}).",
                              "syntax-error", hint="Remove the `# coding: ...` line.") from None
    except (ValueError, RecursionError, MemoryError, OverflowError):
        raise SubmissionError(f"{origin} is too deeply nested or too large for Python to compile.",
                              "syntax-error", hint="Simplify the code: no expression should nest hundreds deep.") from None


def _binary(origin: str, reason: str) -> SubmissionError:
    return SubmissionError(
        f"{origin} is not Python source: {reason}.",
        "binary-file",
        hint="Submit the .py file as plain UTF-8 text (in your editor: Save with Encoding > UTF-8).",
    )


def _syntax_error(err: SyntaxError, origin: str, notebook: NotebookExport | None) -> SubmissionError:
    where, hint = origin, "Fix that line and submit again; `python -m py_compile <file>` shows the same error."
    if err.lineno:
        cell = notebook.locate(err.lineno) if notebook else None
        if notebook and cell:
            where = f"{notebook.notebook}, cell {cell[0]}, line {cell[1]}"
            hint = ("Cells are counted from 1 at the top of the notebook, markdown cells included. "
                    "Restart the kernel and run all cells to see the same error.")
        elif notebook:
            where = f"{origin} (exported autograd.py), line {err.lineno}"
        else:
            where = f"{origin}, line {err.lineno}"
        if err.offset and err.offset > 0:
            where += f", column {err.offset}"
    message = f"Syntax error in {where}: {err.msg}" + ("" if err.msg.endswith((".", "?", "!")) else ".")
    return SubmissionError(message + _show_line(err), "syntax-error", hint=hint)


def _show_line(err: SyntaxError) -> str:
    """The offending line with carets under the error, as Python prints it."""
    text = (err.text or "").rstrip("\r\n").lstrip("\ufeff")
    if not text.strip():
        return ""
    indent = len(text) - len(text.lstrip())
    shown = text.strip()
    start = (err.offset or 0) - 1 - indent
    if not 0 <= start <= len(shown):
        return f"\n    {shown}"
    end = (err.end_offset or 0) - 1 - indent if err.end_lineno == err.lineno else start + 1
    width = max(1, min(end, len(shown)) - start)
    return f"\n    {shown}\n    {' ' * start}{'^' * width}"


# -- staging ------------------------------------------------------------------------------


def _stage(contents: dict[str, _Content]) -> Path:
    """A fresh temp folder with only the required files, readable by the sandbox's user."""
    staged = Path(tempfile.mkdtemp(prefix="grader-submission-"))
    try:
        staged.chmod(0o755)
        for name, content in contents.items():
            target = staged / name
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            target.write_bytes(content.staged)
            target.chmod(0o644)
    except OSError as err:
        shutil.rmtree(staged, ignore_errors=True)
        raise SubmissionError(f"Cannot stage the submission in {staged}: {err.strerror or err}.",
                              "staging-failed") from None
    return staged


_LOADERS: dict[str, Loader] = {
    ".py": _collect_file,
    ".zip": _collect_zip,
    ".ipynb": _collect_notebook,
}


# -- small helpers ------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _and(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
