"""One reader for untrusted zips: a student's submission and an LMS bulk download alike.

Both callers open a zip with ``open_zip(path, limits)``, which checks every entry before
anything is read and refuses the *whole* archive on the first rule it breaks (a hostile entry
means the file is not what it seems; skipping it would hide that). The rules, in the order
they are checked (so one archive always gets one verdict, whoever reads it):

1. **the archive** is no larger than ``max_archive_bytes`` itself, when set (``too-large``), is a
   readable zip (else ``corrupt``; damage found later, while reading, is ``corrupt`` too),
   with at most ``max_entries`` entries, folders and junk included (``too-many-entries``);
2. **each entry**, in the archive's order:
   - its name has no NUL byte (``nul-in-name``: ``zipfile`` silently cuts a name at NUL,
     so ``autograd.py\\0.txt`` would pass for ``autograd.py``);
   - after ``\\`` becomes ``/``, it is not absolute (``/x``, ``C:x``) and has no ``..``
     part (``unsafe-path``); empty and ``.`` parts are dropped (``./lab//a.py`` is ``lab/a.py``);
   - it is a regular file or a folder: no symbolic link (``link``), no FIFO, device or
     socket (``special-file``); a folder (a name ending in ``/`` or a directory mode) holds
     no data (``folder-with-data``); a folder entry is otherwise skipped;
   - it is not encrypted (``encrypted``);
   - no earlier entry has the same path, compared case-insensitively, and no path is both a
     file and a folder (``lab`` and ``lab/a.py``) (``duplicate``): on a macOS or Windows disk
     two such names would be one file, so which one wins would depend on the machine;
3. **sizes**, as the headers declare them: all entries together at most ``max_total_bytes``
   (``too-large``), each at most ``max_entry_bytes`` (``entry-too-large``), and none of more
   than 1 MiB compressed better than ``max_ratio`` to 1 (``ratio``: deflate cannot pass
   about 1032:1; more is a bzip2/LZMA bomb or a header that lies);
4. **reading** counts the bytes that come out: an entry that yields more than its declared
   size is refused (``size-lie``), so the declared sizes checked above bound what is read or
   written, whatever the headers say; a bad CRC is ``corrupt``. Every entry but junk is read
   (``verify()`` where the caller keeps only some), in order, so a lie in a file nobody grades
   gets the same verdict as one in ``autograd.py``.

**Junk** (``__MACOSX/``, ``.DS_Store``, ``Thumbs.db``, ``desktop.ini``, AppleDouble ``._*``
files) is checked like any entry but flagged ``junk``: callers never read it.

Every refusal is a ``ZipRefused`` with a ``code`` above and a ``reason`` phrased for any reader
("the entry '../x' points outside the archive (..)"); each caller maps the code to its own
error (``SubmissionError`` codes for a student, ``BulkError`` for a TA).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

MiB = 1024 * 1024
MAX_RATIO = 1100.0             # above deflate's ceiling (about 1032:1)
RATIO_FLOOR_BYTES = 1 * MiB    # smaller entries may compress as they like
JUNK_NAMES = frozenset({"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"})
_CHUNK = 64 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")

# What zipfile (and the zlib/bz2/lzma under it) raises on a damaged archive.
ZIP_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    ValueError,           # includes UnicodeDecodeError of entry names
    NotImplementedError,  # unsupported compression method
    RuntimeError,
    zlib.error,
    struct.error,
    IndexError,
    KeyError,
)


@dataclass(frozen=True)
class ZipLimits:
    max_entries: int
    max_entry_bytes: int
    max_total_bytes: int
    max_archive_bytes: int | None = None     # the zip file itself
    max_ratio: float = MAX_RATIO


class ZipRefused(Exception):
    """The archive breaks one of the rules; ``code`` says which, ``reason`` says it in words."""

    def __init__(self, code: str, reason: str, entry: str | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.entry = entry


@dataclass(frozen=True)
class Member:
    """A file entry that passed the checks: its normalised path, and whether it is OS junk."""

    info: zipfile.ZipInfo
    path: str
    junk: bool


class SafeZip:
    """An open archive whose entries passed the checks: ``members`` are its files, in order."""

    def __init__(self, archive: zipfile.ZipFile, members: list[Member]) -> None:
        self._archive = archive
        self.members = members

    def read(self, member: Member) -> bytes:
        """The entry's bytes (never more than its declared size)."""
        data = bytearray()
        for chunk in self._chunks(member):
            data += chunk
        return bytes(data)

    def copy(self, member: Member, out: BinaryIO) -> int:
        """Stream the entry into ``out``; returns the bytes written."""
        written = 0
        for chunk in self._chunks(member):
            out.write(chunk)
            written += len(chunk)
        return written

    def verify(self) -> None:
        """Read every entry but junk to its end (sizes counted, CRCs checked), as extracting would."""
        for member in self.members:
            if not member.junk:
                for _ in self._chunks(member):
                    pass

    def _chunks(self, member: Member) -> Iterator[bytes]:
        count = 0
        with self._archive.open(member.info) as fh:
            while chunk := fh.read(_CHUNK):
                count += len(chunk)
                if count > member.info.file_size:
                    raise ZipRefused("size-lie", f"the entry {member.info.filename!r} expands past its declared size",
                                     member.path)
                yield chunk


@contextlib.contextmanager
def open_zip(path: Path, limits: ZipLimits) -> Iterator[SafeZip]:
    """Open ``path`` and check all its entries; damage anywhere (also while reading) is ``corrupt``.

    ``OSError`` from opening the file itself propagates: the caller words "cannot read".
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if limits.max_archive_bytes is not None and size > limits.max_archive_bytes:
            raise ZipRefused("too-large", f"the archive is {format_size(size)}, more than the "
                                          f"{format_size(limits.max_archive_bytes)} allowed")
        try:
            with zipfile.ZipFile(fh) as archive:
                yield SafeZip(archive, check_entries(archive.infolist(), limits))
        except ZipRefused:
            raise
        except ZIP_ERRORS as err:
            raise ZipRefused("corrupt", f"it is not a valid zip archive ({_reason(err)})") from None


def check_entries(infos: list[zipfile.ZipInfo], limits: ZipLimits) -> list[Member]:
    """The archive's file entries, or ``ZipRefused`` for the first rule an entry breaks."""
    if len(infos) > limits.max_entries:
        raise ZipRefused("too-many-entries", f"it has {len(infos)} entries, more than the "
                                             f"{limits.max_entries} entries allowed")
    members: list[Member] = []
    files: set[str] = set()
    folders: set[str] = set()
    for info in infos:
        path = _checked_path(info)
        key = path.casefold()
        parents = {key.rsplit("/", depth)[0] for depth in range(1, key.count("/") + 1)}
        if _is_folder(info):
            parents.add(key)
        elif key in files:
            raise ZipRefused("duplicate", f"it holds two entries named {info.filename!r}", path)
        if (parents & files) or (not _is_folder(info) and key in folders):
            raise ZipRefused("duplicate", f"the entry {info.filename!r} makes one name both a file and a folder",
                             path)
        folders |= parents
        if not _is_folder(info):
            files.add(key)
            members.append(Member(info, path, is_junk(path)))
    _check_sizes(infos, limits)
    return members


def _checked_path(info: zipfile.ZipInfo) -> str:
    """The entry's normalised path, after the name, type and encryption rules."""
    raw = info.filename
    if "\x00" in info.orig_filename:
        raise ZipRefused("nul-in-name", f"the entry {info.orig_filename!r} has a NUL byte in its name")
    name = raw.replace("\\", "/")
    if name.startswith("/") or _DRIVE.match(name):
        raise ZipRefused("unsafe-path", f"the entry {raw!r} has an absolute path", name)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ZipRefused("unsafe-path", f"the entry {raw!r} points outside the archive (..)", name)
    path = "/".join(parts)
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ZipRefused("link", f"the entry {raw!r} is a symbolic link", path)
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ZipRefused("special-file", f"the entry {raw!r} is not a regular file", path)
    if _is_folder(info) and (info.file_size or info.compress_size > 2):   # an empty deflate stream is 2 bytes
        raise ZipRefused("folder-with-data", f"the folder entry {raw!r} holds data", path)
    if info.flag_bits & 0x1:
        raise ZipRefused("encrypted", f"it is password-protected ({raw!r} is encrypted)", path)
    return path


def _is_folder(info: zipfile.ZipInfo) -> bool:
    return info.filename.endswith(("/", "\\")) or stat.S_ISDIR(info.external_attr >> 16)


def _check_sizes(infos: list[zipfile.ZipInfo], limits: ZipLimits) -> None:
    total = sum(info.file_size for info in infos)
    if total > limits.max_total_bytes:
        raise ZipRefused("too-large", f"it expands to {format_size(total)}: its files add up to more than the "
                                      f"{format_size(limits.max_total_bytes)} allowed")
    for info in infos:
        if info.file_size > limits.max_entry_bytes:
            raise ZipRefused("entry-too-large", f"the entry {info.filename!r} expands to {info.file_size:,} bytes, "
                                                f"more than the {limits.max_entry_bytes:,} bytes allowed for one file")
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise ZipRefused("ratio", f"the entry {info.filename!r} claims a compression of "
                                      f"{info.file_size / max(info.compress_size, 1):,.0f} to 1, more than "
                                      f"the {limits.max_ratio:,.0f} to 1 a real file reaches (a zip bomb)")


def is_junk(path: str) -> bool:
    """macOS / Windows metadata that archivers add on their own (a file, or anything in ``__MACOSX/``)."""
    parts = path.rstrip("/").split("/")
    return any(part in JUNK_NAMES for part in parts) or parts[-1].startswith("._")


def format_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < MiB:
        return f"{size / 1024:.1f} KiB"
    return f"{size / MiB:.1f} MiB"


def _reason(err: BaseException) -> str:
    message = (err.strerror if isinstance(err, OSError) else None) or str(err).strip()
    text = message.splitlines()[0] if message else type(err).__name__
    return text if len(text) <= 120 else text[:117] + "..."
