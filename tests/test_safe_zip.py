"""One set of zip rules: a hostile zip gets the same verdict as a submission and as a bulk download."""

from __future__ import annotations

import io
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grader.classwork.roster import BulkError, BulkLimits, extract_zip_safely
from grader.errors import SubmissionError
from grader.grading.safe_zip import ZipLimits, ZipRefused, is_junk, open_zip
from grader.grading.submission import SubmissionLimits, load_submission

CODE = "class Tensor:\n    pass\n"
MiB = 1024 * 1024


# -- building hostile zips ----------------------------------------------------------------


def entry(name: str, data: bytes = b"x = 1\n", mode: int | None = None, method: int = zipfile.ZIP_DEFLATED,
          encrypted: bool = False, declared: int | None = None) -> dict:
    """One entry of a zip to build: ``declared`` overwrites its size in both headers (a lie)."""
    return {"name": name, "data": data, "mode": mode, "method": method, "encrypted": encrypted,
            "declared": declared}


def build_zip(entries: list[dict]) -> bytes:
    """The zip's bytes; "\\0" in a name is written as such (zipfile itself cuts names at NUL)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)             # "Duplicate name": wanted here
        for e in entries:
            info = zipfile.ZipInfo(e["name"].replace("\0", "\x01"))
            info.compress_type = e["method"]
            if e["mode"] is not None:
                info.create_system, info.external_attr = 3, e["mode"] << 16
            archive.writestr(info, e["data"])
    data = bytearray(buffer.getvalue())
    _patch_headers(data, entries)
    return bytes(data)


def _patch_headers(data: bytearray, entries: list[dict]) -> None:
    """NUL bytes in names, the encryption flag and declared sizes, in local and central headers."""
    end = data.rindex(b"PK\x05\x06")
    central = struct.unpack_from("<I", data, end + 16)[0]
    for e in entries:
        assert data[central:central + 4] == b"PK\x01\x02"
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, central + 28)
        local = struct.unpack_from("<I", data, central + 42)[0]
        for header, name_at, flags_at, size_at in ((central, 46, 8, 24), (local, 30, 6, 22)):
            if "\0" in e["name"]:
                start = header + name_at
                data[start:start + name_len] = data[start:start + name_len].replace(b"\x01", b"\x00")
            if e["encrypted"]:
                data[header + flags_at] |= 0x1
            if e["declared"] is not None:
                struct.pack_into("<I", data, header + size_at, e["declared"])
        central += 46 + name_len + extra_len + comment_len


def submission_verdict(path: Path, limits: ZipLimits) -> str | None:
    """safe_zip's code when ``load_submission`` refuses the zip for its zip rules, else None."""
    sub_limits = SubmissionLimits(max_entries=limits.max_entries, max_zip_expanded_bytes=limits.max_total_bytes,
                                  max_zip_entry_bytes=limits.max_entry_bytes, max_file_bytes=limits.max_total_bytes)
    try:
        load_submission(path, limits=sub_limits).cleanup()
    except SubmissionError as err:
        return err.__cause__.code if isinstance(err.__cause__, ZipRefused) else None
    return None


def bulk_verdict(path: Path, dest: Path, limits: ZipLimits) -> str | None:
    bulk_limits = BulkLimits(max_entries=limits.max_entries, max_file_bytes=limits.max_entry_bytes,
                             max_total_bytes=limits.max_total_bytes)
    try:
        extract_zip_safely(path, dest, bulk_limits)
    except BulkError as err:
        assert isinstance(err.__cause__, ZipRefused), err
        return err.__cause__.code
    return None


def direct_verdict(path: Path, limits: ZipLimits) -> str | None:
    try:
        with open_zip(path, limits) as archive:
            archive.verify()
    except ZipRefused as problem:
        return problem.code
    return None


# -- each rule ----------------------------------------------------------------------------

FIFO = stat.S_IFIFO | 0o644
RULES = {
    "nul-in-name": [entry("autograd.py\0.txt")],
    "unsafe-path": [entry("../evil.py")],
    "unsafe-path-backslash": [entry("lab\\..\\..\\evil.py")],
    "unsafe-path-absolute": [entry("/etc/cron.d/evil")],
    "unsafe-path-drive": [entry("C:/Windows/evil.py")],
    "link": [entry("lab/link", b"/etc/passwd", mode=stat.S_IFLNK | 0o777)],
    "special-file": [entry("lab/fifo", b"", mode=FIFO)],
    "folder-with-data": [entry("lab/", b"hidden data")],
    "encrypted": [entry("lab/notes.txt", encrypted=True)],
    "duplicate": [entry("lab/notes.txt"), entry("lab/NOTES.txt")],
    "duplicate-normalised": [entry("lab/notes.txt"), entry("./lab//notes.txt")],
    "too-many-entries": [entry(f"f{i}.txt") for i in range(12)],
    "too-large": [entry(f"f{i}.bin", bytes(30_000)) for i in range(3)],
    "entry-too-large": [entry("weights.bin", bytes(60_000))],
    "ratio": [entry("zeros.bin", bytes(3 * MiB), method=zipfile.ZIP_BZIP2)],
    "duplicate-file-and-folder": [entry("lab"), entry("lab/notes.txt")],
    "corrupt": [entry("data.bin", b"y" * 5000, declared=100)],      # zipfile stops at 100 bytes: bad CRC
}
LIMITS = ZipLimits(max_entries=10, max_entry_bytes=50_000, max_total_bytes=80_000)
BIG_LIMITS = ZipLimits(max_entries=10, max_entry_bytes=8 * MiB, max_total_bytes=8 * MiB)


@pytest.mark.parametrize("case", list(RULES))
def test_each_rule_gives_one_verdict_on_both_paths(tmp_path: Path, case: str) -> None:
    path = tmp_path / "hostile.zip"
    path.write_bytes(build_zip([entry("autograd.py", CODE.encode()), *RULES[case]]))
    limits = BIG_LIMITS if case == "ratio" else LIMITS
    expected = case.split("-")[0] if case.startswith(("unsafe", "duplicate")) else case
    expected = "unsafe-path" if expected == "unsafe" else expected
    assert direct_verdict(path, limits) == expected
    assert submission_verdict(path, limits) == expected
    assert bulk_verdict(path, tmp_path / "out", limits) == expected


def test_the_same_zip_without_the_attack_is_accepted_on_both_paths(tmp_path: Path) -> None:
    path = tmp_path / "fine.zip"
    path.write_bytes(build_zip([entry("lab/autograd.py", CODE.encode()), entry("lab/notes.txt"),
                                entry("__MACOSX/lab/._autograd.py", b"\0\5\26\7"), entry("lab/", b"")]))
    assert submission_verdict(path, LIMITS) is None
    assert bulk_verdict(path, tmp_path / "out", LIMITS) is None
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")
                  if p.is_file()) == ["lab/autograd.py", "lab/notes.txt"]          # junk is never extracted


def test_the_zip_rules_keep_each_path_s_own_messages(tmp_path: Path) -> None:
    path = tmp_path / "hw.zip"
    path.write_bytes(build_zip([entry("autograd.py", CODE.encode()), entry("lab/link", b"/x", mode=stat.S_IFLNK)]))
    with pytest.raises(SubmissionError) as student:
        load_submission(path)
    assert student.value.code == "unsafe-zip" and "hw.zip" in str(student.value) and student.value.hint
    with pytest.raises(BulkError, match="refusing to extract hw.zip: the entry 'lab/link' is a symbolic link"):
        extract_zip_safely(path, tmp_path / "out")


def test_an_entry_that_yields_more_than_it_declares_is_refused_on_both_paths(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CPython's zipfile stops at the declared size; safe_zip's own count does not rely on that."""
    path = tmp_path / "hw.zip"
    path.write_bytes(build_zip([entry("autograd.py", CODE.encode()), entry("data.bin", b"x" * 100)]))
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, info, *a, **k: io.BytesIO(b"x" * 200_000))
    assert submission_verdict(path, LIMITS) == bulk_verdict(path, tmp_path / "out", LIMITS) == "size-lie"


@pytest.mark.parametrize(("path", "junk"), [
    ("__MACOSX/lab/._autograd.py", True), ("lab/.DS_Store", True), ("Thumbs.db", True),
    ("lab/desktop.ini", True), ("._autograd.py", True), ("lab/autograd.py", False), (".gitignore", False),
    ("lab/_MACOSX/autograd.py", False),
])
def test_junk_is_operating_system_metadata_only(path: str, junk: bool) -> None:
    assert is_junk(path) is junk


# -- any mix of hostile entries -----------------------------------------------------------

NAMES = st.sampled_from([
    "autograd.py", "Autograd.py", "lab/autograd.py", "lab/notes.txt", "./lab//notes.txt", "lab/", "lab",
    "../evil.py", "lab/../../evil.py", "lab\\..\\evil.py", "/abs.py", "C:\\evil.py", "a\0b.py",
    "__MACOSX/._lab", "lab/.DS_Store", "Thumbs.db", "._autograd.py", ".hidden/x.py",
])
MODES = st.sampled_from([None, None, None, stat.S_IFREG | 0o644, stat.S_IFDIR | 0o755, stat.S_IFLNK | 0o777,
                         FIFO, stat.S_IFCHR | 0o600, stat.S_IFSOCK | 0o600])
ENTRIES = st.builds(
    entry,
    name=NAMES,
    data=st.sampled_from([b"", b"x = 1\n", b"y" * 3000, bytes(40_000)]),
    mode=MODES,
    method=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2]),
    encrypted=st.booleans(),
    declared=st.none() | st.none() | st.sampled_from([0, 10, 4000, 60_000, 2**31]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(ENTRIES, max_size=6), max_entries=st.sampled_from([4, 10]))
def test_any_hostile_zip_gets_the_same_verdict_on_both_paths(tmp_path_factory: pytest.TempPathFactory,
                                                             entries: list[dict], max_entries: int) -> None:
    tmp = tmp_path_factory.mktemp("fuzz")
    path = tmp / "hostile.zip"
    path.write_bytes(build_zip([entry("autograd.py", CODE.encode()), *entries]))
    limits = ZipLimits(max_entries=max_entries, max_entry_bytes=50_000, max_total_bytes=1 * MiB)
    expected = direct_verdict(path, limits)
    assert submission_verdict(path, limits) == expected
    assert bulk_verdict(path, tmp / "out", limits) == expected
