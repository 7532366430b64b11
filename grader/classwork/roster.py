"""A class's submissions: a folder with one entry per student, or an LMS bulk download.

``read_class(source, staging, ...)`` turns what a TA downloaded into a ``Roster``: one
``RosterEntry(student, path, notes)`` per student, where ``path`` is something
``grader grade`` takes (a folder, a ``.py``, a ``.zip`` or an ``.ipynb``). Three layouts:

- **a class folder**: one entry per student, named after the student (``alice.py``,
  ``bob/``, ``carol.zip``, ``dave.ipynb``); the student id is the name without its suffix;
- **a Gradescope export** ("Export Submissions"): a zip (or its unzipped folder) holding,
  usually inside one ``assignment_<id>_export/`` folder, a ``submission_<id>/`` folder per
  submission and ``submission_metadata.yml``, which maps each folder to its submitters::

      submission_123:
        :submitters:
        - :name: Jane Doe
          :sid: '100'
          :email: jane@example.edu

  The student id is the SID, else the email, else the folder name. Every submitter of a
  group submission gets an entry (the batch grades identical submissions once);
- **a Canvas download** ("Download Submissions"): flat files named by Canvas's
  ``ContentZipper`` as ``<sortable name>[_LATE]_<user id>_<attachment id>_<original name>``
  (``anon_<id>`` instead of the user id for anonymous grading; older Canvas wrote ``late``).
  Files are grouped by user id (the student id); each goes back to its original name
  (``autograd-1.py``, Canvas's renaming of a resubmitted ``autograd.py``, included).

A bulk zip is extracted **safely** into the staging folder, by the rules of
``grader.grading.safe_zip`` (the same as for one student's zip): no absolute or ``..`` paths,
no NUL bytes in names, no links or special files, no encrypted or duplicate entries, caps on
the number of entries, on the bytes of each file and of all of them and on the compression
ratio (bytes counted while writing, not taken from the headers); OS junk is left out. Extraction goes to a temporary folder that is renamed into place when complete,
with a ``roster.json`` naming the zip's SHA-256: a rerun on the same zip reuses it.
An unknown layout is a ``BulkError`` that says what was expected.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import yaml

from grader.errors import ExitStatus, GraderError
from grader.grading.safe_zip import Member, SafeZip, ZipLimits, ZipRefused, is_junk, open_zip

MiB = 1024 * 1024
SUBMISSION_SUFFIXES = (".py", ".zip", ".ipynb")
ROSTER_FILE = "roster.json"
GRADESCOPE_METADATA = "submission_metadata.yml"


class BulkError(GraderError):
    """The class's submissions cannot be read as given (unsafe or unknown bulk download...)."""

    exit_status = ExitStatus.USAGE


@dataclass(frozen=True)
class BulkLimits:
    """Caps on a bulk zip: generous for a class, small enough to stop a zip bomb."""

    max_entries: int = 20_000
    max_file_bytes: int = 100 * MiB
    max_total_bytes: int = 2048 * MiB
    max_metadata_bytes: int = 20 * MiB


@dataclass(frozen=True)
class RosterEntry:
    """One student and the submission to grade for them."""

    student: str
    path: Path
    notes: tuple[str, ...] = ()


@dataclass
class Roster:
    """The class: entries in a stable order, the layout they came from, and what was skipped."""

    layout: str
    entries: list[RosterEntry]
    warnings: list[str] = field(default_factory=list)


def read_class(source: Path, staging: Path, required_files: Sequence[str] = ("autograd.py",),
               limits: BulkLimits = BulkLimits()) -> Roster:
    """The roster of ``source`` (a class folder, or a bulk download as a zip or a folder).

    ``staging`` is where a bulk zip or a Canvas folder is unpacked (it is replaced when its
    content is out of date); the caller holds the batch lock, so nobody else writes there.
    """
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".zip":
        return _roster_from_zip(source, staging, tuple(required_files), limits)
    if not source.is_dir():
        raise BulkError(f"{source} is neither a folder of submissions nor a bulk-download .zip",
                        hint="pass the folder with one entry per student, or the zip from Gradescope or Canvas")
    base = _gradescope_base(source)
    if base is not None:
        return gradescope_roster(base, tuple(required_files), limits)
    if _looks_like_canvas(source):
        return _staged(staging, {"source_listing": _listing_sha256(_canvas_dir(source))},
                       lambda tmp: _copy_canvas_folder(source, tmp, tuple(required_files)))
    return class_folder_roster(source, exclude=staging.parent)


# -- a class folder -----------------------------------------------------------------------


def class_folder_roster(folder: Path, exclude: Path | None = None) -> Roster:
    """One entry per student: folders by name, ``.py``/``.zip``/``.ipynb`` files by stem."""
    entries: dict[str, RosterEntry] = {}
    skipped: list[str] = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if _is_junk(path.name) or (exclude is not None and _same_path(path, exclude)):
            continue
        if path.is_dir():
            student = path.name
        elif path.suffix.lower() in SUBMISSION_SUFFIXES:
            student = path.stem
        else:
            skipped.append(path.name)
            continue
        _add(entries, RosterEntry(clean_student_id(student), path))
    warnings = [f"skipped {len(skipped)} file(s) that are not submissions: {_shown(skipped)}"] if skipped else []
    if not entries:
        raise BulkError(f"{folder} holds no submissions (folders, .py, .zip or .ipynb files)",
                        hint="pass the folder with one entry per student, or a bulk-download zip")
    return Roster("folder", list(entries.values()), warnings)


def _add(entries: dict[str, RosterEntry], entry: RosterEntry) -> None:
    if not entry.student:
        raise BulkError(f"{entry.path} gives an empty student id")
    other = entries.get(entry.student)
    if other is not None:
        raise BulkError(f"two submissions for student {entry.student!r}: {other.path.name} and {entry.path.name}",
                        hint="keep one entry per student (remove or rename the other)")
    entries[entry.student] = entry


def clean_student_id(raw: str) -> str:
    """The id without control characters or surrounding blanks (a report refuses them)."""
    return re.sub(r"[\x00-\x1f\x7f]", "", raw).strip()


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


# -- safe extraction ----------------------------------------------------------------------


def zip_limits(limits: BulkLimits) -> ZipLimits:
    """A bulk zip's caps as safe_zip's (its own size is not capped: what it holds is)."""
    return ZipLimits(max_entries=limits.max_entries, max_entry_bytes=limits.max_file_bytes,
                     max_total_bytes=limits.max_total_bytes)


def extract_zip_safely(zip_path: Path, dest: Path, limits: BulkLimits = BulkLimits()) -> list[str]:
    """Extract the files of ``zip_path`` (OS junk left out) under ``dest``; returns their relative paths.

    The rules are ``grader.grading.safe_zip``'s, the same as for a single submission: the whole
    archive is refused (``BulkError``) on any unsafe entry, since an LMS bulk download never
    has one; one means the file is not what it seems.
    """
    try:
        with open_zip(zip_path, zip_limits(limits)) as archive:
            members = [member for member in archive.members if not member.junk]
            for member in members:
                _extract_member(archive, member, dest)
            return [member.path for member in members]
    except ZipRefused as problem:
        if problem.code == "corrupt":
            raise BulkError(f"cannot extract {zip_path.name}: {problem.reason}",
                            hint="download the bulk zip again; it may be truncated") from problem
        raise BulkError(f"refusing to extract {zip_path.name}: {problem.reason}",
                        hint="a Gradescope or Canvas bulk download never contains such entries; "
                             "download it again") from problem
    except OSError as err:
        raise BulkError(f"cannot extract {zip_path.name}: {err}",
                        hint="download the bulk zip again; it may be truncated") from None


def _extract_member(archive: SafeZip, member: Member, dest: Path) -> None:
    target = dest.joinpath(*member.path.split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    with os.fdopen(os.open(target, flags, 0o644), "wb") as out:
        archive.copy(member, out)


def _is_junk(name: str) -> bool:
    """OS metadata, or a hidden file or folder: never a student's submission."""
    return is_junk(name) or name.startswith(".")


# -- staging ------------------------------------------------------------------------------


def _roster_from_zip(zip_path: Path, staging: Path, required: tuple[str, ...], limits: BulkLimits) -> Roster:
    digest = _file_sha256(zip_path)

    def build(tmp: Path) -> Roster:
        extract_zip_safely(zip_path, tmp, limits)
        base = _gradescope_base(tmp)
        if base is not None:
            return gradescope_roster(base, required, limits)
        if _looks_like_canvas(tmp):
            return _regroup_canvas(_canvas_dir(tmp), tmp, required)
        raise BulkError(f"{zip_path.name} is neither a Gradescope export nor a Canvas download: {_layout_help(tmp)}",
                        hint="unzip it and pass a folder with one entry per student (alice.py, bob/, carol.zip...)")

    return _staged(staging, {"source_sha256": digest}, build)


def _staged(staging: Path, key: dict[str, str], build: Any) -> Roster:
    """The roster saved in ``staging`` if it was built from ``key``; else build it afresh.

    ``build(tmp)`` fills a temporary sibling folder, which then replaces ``staging`` in one
    rename: a run killed while unpacking leaves only a temporary folder (removed next run).
    """
    saved = _load_staged(staging, key)
    if saved is not None:
        return saved
    staging.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{staging.name}.", suffix=".tmp", dir=staging.parent))
    try:
        roster = build(tmp)
        _save_roster(tmp, roster, key)
        if staging.exists():
            shutil.rmtree(staging)
        os.replace(tmp, staging)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _rebase(roster, tmp, staging)


def _save_roster(root: Path, roster: Roster, key: dict[str, str]) -> None:
    entries = [{"student": e.student, "path": e.path.relative_to(root).as_posix(), "notes": list(e.notes)}
               for e in roster.entries]
    body = {**key, "layout": roster.layout, "warnings": roster.warnings, "entries": entries}
    (root / ROSTER_FILE).write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _load_staged(staging: Path, key: dict[str, str]) -> Roster | None:
    try:
        body = json.loads((staging / ROSTER_FILE).read_text(encoding="utf-8"))
        if any(body.get(k) != v for k, v in key.items()):
            return None
        entries = [RosterEntry(e["student"], staging / e["path"], tuple(e["notes"])) for e in body["entries"]]
        return Roster(body["layout"], entries, list(body["warnings"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _rebase(roster: Roster, old: Path, new: Path) -> Roster:
    def move(path: Path) -> Path:
        return new / path.relative_to(old) if path.is_relative_to(old) else path

    return Roster(roster.layout, [RosterEntry(e.student, move(e.path), e.notes) for e in roster.entries],
                  roster.warnings)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _listing_sha256(folder: Path) -> str:
    """A fingerprint of a folder's files (names, sizes, modification times), to tell a changed one."""
    rows = sorted(f"{p.name}\0{p.stat().st_size}\0{p.stat().st_mtime_ns}" for p in folder.iterdir() if p.is_file())
    return hashlib.sha256("\n".join(rows).encode("utf-8", "surrogateescape")).hexdigest()


def _layout_help(root: Path) -> str:
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return (f"expected {GRADESCOPE_METADATA} with submission_<id>/ folders (Gradescope) or flat files named "
            f"name_userid_fileid_original (Canvas); found {_shown(names) or 'no files'}")


# -- submission folders -------------------------------------------------------------------


def pick_entry(folder: Path, required: Sequence[str]) -> Path:
    """What to grade in one student's folder: the folder if it holds the required file (or
    nothing gradeable), else its one ``.py``/``.ipynb``/``.zip`` (a folder with only a
    notebook or a zip is not gradeable as a folder)."""
    if (folder / required[0]).is_file():
        return folder
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and not _is_junk(p.name)]
    gradeable = [p for p in files if p.suffix.lower() in SUBMISSION_SUFFIXES]
    return gradeable[0] if len(gradeable) == 1 else folder


def _single_subfolder(root: Path) -> Path | None:
    children = [p for p in root.iterdir() if not _is_junk(p.name)]
    return children[0] if len(children) == 1 and children[0].is_dir() else None


def _shown(names: Sequence[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


# -- Gradescope ---------------------------------------------------------------------------


def _gradescope_base(root: Path) -> Path | None:
    """The folder that holds ``submission_metadata.yml``: ``root`` or its only subfolder."""
    if (root / GRADESCOPE_METADATA).is_file():
        return root
    sub = _single_subfolder(root)
    return sub if sub is not None and (sub / GRADESCOPE_METADATA).is_file() else None


def gradescope_roster(base: Path, required: Sequence[str], limits: BulkLimits = BulkLimits()) -> Roster:
    """Entries of a Gradescope export whose metadata and folders are in ``base``."""
    metadata = _read_gradescope_metadata(base / GRADESCOPE_METADATA, limits)
    folders = sorted((p for p in base.iterdir() if p.is_dir() and p.name.startswith("submission_")),
                     key=lambda p: p.name)
    entries: dict[str, RosterEntry] = {}
    for folder in folders:
        ids = _gradescope_ids(metadata.get(folder.name)) or [folder.name]
        for student in ids:
            _add(entries, RosterEntry(student, pick_entry(folder, required),
                                      (f"from the Gradescope export, {folder.name}",)))
    missing = sorted(set(metadata) - {f.name for f in folders})
    warnings = [f"{len(missing)} submission(s) in {GRADESCOPE_METADATA} have no folder: {_shown(missing)}"] \
        if missing else []
    if not entries:
        raise BulkError(f"the Gradescope export in {base.name} has no submission_<id>/ folders")
    return Roster("gradescope", list(entries.values()), warnings)


class _TolerantLoader(yaml.SafeLoader):
    """A safe loader that reads Ruby-tagged values (``!ruby/object:BigDecimal``...) as plain data."""


def _plain(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_scalar(node)


_TolerantLoader.add_multi_constructor("!", _plain)


def _read_gradescope_metadata(path: Path, limits: BulkLimits) -> dict[str, Any]:
    if path.stat().st_size > limits.max_metadata_bytes:
        raise BulkError(f"{path.name} is larger than {limits.max_metadata_bytes} bytes")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_TolerantLoader)  # noqa: S506 - safe subclass
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise BulkError(f"{path.name} of the Gradescope export is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise BulkError(f"{path.name} should map submission_<id> folders to their submitters")
    return {str(k): v for k, v in data.items()}


def _gradescope_ids(info: Any) -> list[str]:
    """SID, else email, of each submitter (keys are Ruby symbols: ``:sid``; plain keys too)."""
    if not isinstance(info, dict):
        return []
    submitters = _field(info, "submitters") or []
    ids = []
    for person in submitters if isinstance(submitters, list) else []:
        if isinstance(person, dict):
            chosen = next((str(v).strip() for v in (_field(person, "sid"), _field(person, "email"))
                           if v is not None and str(v).strip()), "")
            if clean_student_id(chosen):
                ids.append(clean_student_id(chosen))
    return ids


def _field(mapping: dict[Any, Any], name: str) -> Any:
    return mapping.get(f":{name}", mapping.get(name))


# -- Canvas -------------------------------------------------------------------------------

# <sortable name>[_LATE]_<user id>_<attachment id>_<original name>, as Canvas's ContentZipper
# writes it (the name is lower-cased word characters; "anon_<id>" for anonymous grading).
_CANVAS_FILE = re.compile(
    r"^(?:(?P<late0>late)_)?(?:(?P<name>\w+?)_)??(?:(?P<late>late)_)?"
    r"(?P<user>\d+|anon_[A-Za-z0-9]+)_(?P<file>\d+)_(?P<original>.+)$",
    re.IGNORECASE,
)
# text entries and URLs have no attachment id: <name>[_LATE]_<user id>_text.html / _link.html
_CANVAS_ONLINE = re.compile(r"^(?:(?P<name>\w+?)_)??(?:(?P<late>late)_)?(?P<user>\d+|anon_[A-Za-z0-9]+)"
                            r"_(?P<original>text\.html|link\.html)$", re.IGNORECASE)
_RESUBMITTED = re.compile(r"^(?P<stem>.+)-\d+(?P<suffix>\.[^.]+)$")


@dataclass(frozen=True)
class CanvasFile:
    user: str
    original: str
    late: bool


def parse_canvas_name(name: str) -> CanvasFile | None:
    """The parts of a Canvas download's file name, or None if it is not one."""
    match = _CANVAS_FILE.match(name) or _CANVAS_ONLINE.match(name)
    if match is None:
        return None
    late = any(match.groupdict().get(k) for k in ("late0", "late"))
    return CanvasFile(match["user"], match["original"], late)


def _canvas_dir(root: Path) -> Path:
    return _single_subfolder(root) or root


def _looks_like_canvas(root: Path) -> bool:
    base = _canvas_dir(root)
    children = [p for p in base.iterdir() if not _is_junk(p.name)]
    return bool(children) and all(p.is_file() and parse_canvas_name(p.name) for p in children)


def _copy_canvas_folder(source: Path, tmp: Path, required: tuple[str, ...]) -> Roster:
    """An unzipped Canvas download: copied (regular files only) then grouped like a zip's."""
    flat = tmp / "download"
    flat.mkdir()
    for path in _canvas_dir(source).iterdir():
        if not _is_junk(path.name) and path.is_file() and not path.is_symlink():
            shutil.copyfile(path, flat / path.name)
    roster = _regroup_canvas(flat, tmp, required)
    shutil.rmtree(flat)
    return roster


def _regroup_canvas(flat: Path, root: Path, required: tuple[str, ...]) -> Roster:
    """Move each Canvas file into ``root/<user id>/<original name>``; one entry per user."""
    by_user: dict[str, list[str]] = {}
    notes: dict[str, list[str]] = {}
    for path in sorted(p for p in flat.iterdir() if p.is_file() and not _is_junk(p.name)):
        parsed = parse_canvas_name(path.name)
        assert parsed is not None  # _looks_like_canvas checked every name
        folder = root / "students" / parsed.user
        folder.mkdir(parents=True, exist_ok=True)
        target, note = _original_name(parsed.original, folder, required)
        os.replace(path, folder / target)
        by_user.setdefault(parsed.user, []).append(path.name)
        user_notes = notes.setdefault(parsed.user, [])
        user_notes.append(f"from the Canvas download, {path.name}" + (f" ({note})" if note else ""))
        if parsed.late and "submitted late (Canvas)" not in user_notes:
            user_notes.append("submitted late (Canvas)")
    entries = [RosterEntry(user, pick_entry(root / "students" / user, required), tuple(notes[user]))
               for user in sorted(by_user)]
    return Roster("canvas", entries)


def _original_name(original: str, folder: Path, required: Sequence[str]) -> tuple[str, str]:
    """The name to restore, and a note when it differs from the one Canvas kept."""
    name, note = original, ""
    if name in ("", ".", "..") or name.startswith("."):
        name, note = "submitted-file", f"renamed {original!r}, not a usable file name"
    match = _RESUBMITTED.match(name)
    wanted = {r for r in required} | {PurePosixPath(r).stem + ".ipynb" for r in required}
    if match and match["stem"] + match["suffix"] in wanted:
        name = match["stem"] + match["suffix"]
        note = f"renamed {original} back to {name}"
    if (folder / name).exists():
        stem, suffix = os.path.splitext(name)
        name = next(f"{stem}-{i}{suffix}" for i in range(2, 10_000) if not (folder / f"{stem}-{i}{suffix}").exists())
        note = f"kept as {name}: two files of this student are named {original}"
    return name, note
