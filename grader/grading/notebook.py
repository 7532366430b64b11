"""Export a student's Jupyter notebook to the module the grader imports (``autograd.py``).

The export rule (the handout states it for students):

- the code cells are concatenated in order, one blank line between two cells;
  markdown and raw cells are left out;
- a code cell whose first non-blank line is ``# grader: ignore`` is left out
  (for plots, experiments, anything that should not run when the module is imported);
- a code cell whose first non-blank line starts with ``%%`` (a cell magic) is left out;
- a line that starts, after its indentation, with ``%`` or ``!`` (a line magic or a shell
  command) is dropped; except where it continues a statement begun above it (inside
  brackets, inside a string, after a backslash), as IPython also reads such a line as Python.

The exported text starts with a short comment naming the notebook (``NotebookExport.header``)
so a TA reading the staged file knows where it came from; ``NotebookExport.code`` is the code
without that header, which is what the submission's hash covers. ``NotebookExport.locate``
maps a line of the staged file back to "cell 4, line 2" of the notebook.

Nothing here runs the notebook: it is read as JSON with nbformat and validated.
"""

from __future__ import annotations

import io
import json
import os
import re
import tokenize
import warnings
from dataclasses import dataclass
from pathlib import Path

import nbformat

from grader.errors import SubmissionError

MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024
"""Default size limit of a notebook file: outputs (plots) make notebooks much larger than code."""

IGNORE_MARK = "# grader: ignore"
_IGNORE_RE = re.compile(r"#\s*grader\s*:\s*ignore(?![\w-])", re.IGNORECASE)

# Telling a magic line from a continuation line tokenizes the cell's code above it. A budget of
# characters tokenized per notebook keeps a hostile notebook (thousands of `%` lines in one huge
# cell) from costing quadratic time; past it, candidate lines are dropped without the check.
_CONTINUATION_BUDGET = 4 * 1024 * 1024

_NEWLINES = re.compile(r"\r\n?")

Location = tuple[int, int]
"""(cell number, line in that cell), both counted from 1; cells include markdown cells."""


@dataclass(frozen=True)
class NotebookExport:
    """How a notebook became ``autograd.py``: the code, where each line came from, counts."""

    notebook: str                            # the notebook's file name, for messages
    header: str                              # comment lines put above the code when staged
    code: str                                # the exported code, without the header
    line_map: tuple[Location | None, ...]    # code line i+1 -> its cell and line (None: separator)
    code_cells: int = 0                      # code cells in the notebook
    exported_cells: int = 0                  # code cells that went into the export
    ignored_cells: int = 0                   # skipped: marked `# grader: ignore`
    magic_cells: int = 0                     # skipped: `%%` cell magics
    empty_cells: int = 0                     # skipped: nothing but whitespace
    magic_lines: int = 0                     # `%` / `!` lines dropped from exported cells

    @property
    def text(self) -> str:
        """The staged file's text: header, then code."""
        return self.header + self.code

    @property
    def header_lines(self) -> int:
        return self.header.count("\n")

    def locate(self, lineno: int) -> Location | None:
        """The notebook cell and line of line ``lineno`` (from 1) of the staged file, if any."""
        index = lineno - self.header_lines - 1
        if 0 <= index < len(self.line_map):
            return self.line_map[index]
        return None

    def notes(self) -> list[str]:
        """One line for the report, e.g. "exported 5 code cells from lab.ipynb, skipped 2 ..."."""
        parts = [f"exported {_plural(self.exported_cells, 'code cell')} from {self.notebook}"]
        if self.ignored_cells:
            parts.append(f"skipped {self.ignored_cells} marked `{IGNORE_MARK}`")
        if self.magic_cells:
            parts.append(f"skipped {_plural(self.magic_cells, '%% cell magic')}")
        if self.empty_cells:
            parts.append(f"skipped {self.empty_cells} empty")
        if self.magic_lines:
            parts.append(f"dropped {_plural(self.magic_lines, 'magic line')}")
        return [", ".join(parts)]


def export_notebook(nb_path: Path, *, max_bytes: int = MAX_NOTEBOOK_BYTES) -> tuple[str, NotebookExport]:
    """Read the notebook at ``nb_path`` and export its code; returns (staged text, export).

    Raises ``SubmissionError`` (never anything else) for a file that cannot be read, is too
    large (``file-too-large``), is not a notebook (``bad-notebook``) or has no code
    (``empty-notebook``).
    """
    name = Path(nb_path).name
    try:
        with open(nb_path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            data = fh.read(max_bytes + 1) if size <= max_bytes else b""
    except OSError as err:
        raise SubmissionError(
            f"Cannot read the notebook {name}: {err.strerror or err}.", "unreadable"
        ) from None
    if size > max_bytes or len(data) > max_bytes:
        raise SubmissionError(
            f"The notebook {name} is {_size(max(size, len(data)))}, more than the {_size(max_bytes)} allowed.",
            "file-too-large",
            hint="Clear its outputs (Edit > Clear All Outputs, or 'Clear Outputs of All Cells') "
            "and save it again; large plots make notebooks big.",
        )
    export = export_notebook_bytes(data, name)
    return export.text, export


def export_notebook_bytes(data: bytes, name: str) -> NotebookExport:
    """Export the notebook whose file content is ``data``; ``name`` is used in messages."""
    node = _read_notebook(data, name)
    export = _export_cells(node.cells, name)
    if not export.exported_cells:
        raise _empty_notebook(export)
    try:
        export.text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise SubmissionError(
            f"{name} is not a valid notebook: its code holds a character that cannot be "
            f"saved as UTF-8 ({err.object[err.start]!a}).",
            "bad-notebook",
            hint="Remove that character, or re-save the notebook from Jupyter.",
        ) from None
    return export


# -- reading and validating ---------------------------------------------------------------

_REDOWNLOAD = (
    "Open it in Jupyter and save it again (or download it again with File > Download); "
    "do not edit a notebook file in a text editor."
)


def _bad_notebook(name: str, reason: str) -> SubmissionError:
    return SubmissionError(f"{name} is not a valid Jupyter notebook: {reason}.", "bad-notebook", hint=_REDOWNLOAD)


def _read_notebook(data: bytes, name: str) -> nbformat.NotebookNode:
    """JSON first (for a precise position), then nbformat: convert to v4 and validate."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise _bad_notebook(name, f"it is not UTF-8 text (byte {err.start} is {data[err.start]:#04x})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise _bad_notebook(name, f"its JSON is broken at line {err.lineno}, column {err.colno}: {err.msg}") from None
    except RecursionError:
        raise _bad_notebook(name, "its JSON is nested too deeply") from None
    if not isinstance(raw, dict) or "nbformat" not in raw:
        raise _bad_notebook(name, "it is JSON, but not a notebook (it has no 'nbformat' version field)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            node = nbformat.reads(text, as_version=4)
            nbformat.validate(node)
    # nbformat parses untrusted input and can fail in many ways (ValidationError, NBFormatError,
    # KeyError, AttributeError on wrongly typed fields...): every one means "not a notebook".
    except Exception as err:  # noqa: BLE001
        raise _bad_notebook(name, _short_reason(err)) from None
    return node


def _short_reason(err: Exception) -> str:
    """A one-line reason from an nbformat / jsonschema error (whose str() dumps the instance)."""
    message = getattr(err, "message", None) or str(err) or type(err).__name__
    first = message.strip().splitlines()[0] if message.strip() else type(err).__name__
    return first if len(first) <= 200 else first[:197] + "..."


# -- exporting ----------------------------------------------------------------------------


def _export_cells(cells: list, name: str) -> NotebookExport:
    counts = dict(code_cells=0, exported_cells=0, ignored_cells=0, magic_cells=0, empty_cells=0, magic_lines=0)
    lines: list[str] = []
    line_map: list[Location | None] = []
    budget = [_CONTINUATION_BUDGET]
    for number, cell in enumerate(cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        counts["code_cells"] += 1
        source = _NEWLINES.sub("\n", _source_text(cell.get("source", ""))).split("\n")
        first = next((line.strip() for line in source if line.strip()), "")
        if not first:
            counts["empty_cells"] += 1
            continue
        if _IGNORE_RE.match(first):
            counts["ignored_cells"] += 1
            continue
        if first.startswith("%%"):
            counts["magic_cells"] += 1
            continue
        kept, dropped = _drop_magic_lines(source, budget)
        counts["magic_lines"] += dropped
        while kept and not kept[-1][1].strip():
            kept.pop()
        if not kept:        # nothing but magics, e.g. `%matplotlib inline`
            continue
        if lines:
            lines.append("")
            line_map.append(None)
        lines.extend(text for _, text in kept)
        line_map.extend((number, line_no) for line_no, _ in kept)
        counts["exported_cells"] += 1
    code = "\n".join(lines) + "\n" if lines else ""
    return NotebookExport(name, _header(name), code, tuple(line_map), **counts)


def _source_text(source: object) -> str:
    return "".join(source) if isinstance(source, list) else str(source)


def _drop_magic_lines(source: list[str], budget: list[int]) -> tuple[list[tuple[int, str]], int]:
    """The cell's lines without `%` / `!` lines, each with its line number in the cell."""
    kept: list[tuple[int, str]] = []
    dropped = 0
    for line_no, line in enumerate(source, start=1):
        if line.lstrip().startswith(("%", "!")) and not _continues_statement(kept, budget):
            dropped += 1
            continue
        kept.append((line_no, line))
    return kept, dropped


def _continues_statement(kept: list[tuple[int, str]], budget: list[int]) -> bool:
    """Does the next line continue a statement of ``kept`` (open bracket, string, backslash)?"""
    if not kept:
        return False
    text = "".join(line + "\n" for _, line in kept)
    if budget[0] < len(text):
        return False
    budget[0] -= len(text)
    try:
        for _ in tokenize.generate_tokens(io.StringIO(text).readline):
            pass
    except tokenize.TokenError:         # "EOF in multi-line statement / string"
        return True
    except SyntaxError:                 # broken code above: compile() will report it
        return False
    return False


def _header(name: str) -> str:
    # The coding line comes first so that nothing in the notebook's name can act as one.
    return (
        "# -*- coding: utf-8 -*-\n"
        f"# Exported by the grader from the notebook {json.dumps(name)}: its code cells in order,\n"
        f"# without cells marked `{IGNORE_MARK}`, %% cell magics, and % or ! lines.\n"
    )


def _empty_notebook(export: NotebookExport) -> SubmissionError:
    if not export.code_cells:
        reason = "it has no code cells"
    else:
        reason = (
            f"each of its {_plural(export.code_cells, 'code cell')} is empty, "
            f"marked `{IGNORE_MARK}`, or only IPython magics"
        )
    return SubmissionError(
        f"{export.notebook} has no code to grade: {reason}.",
        "empty-notebook",
        hint="Put your Tensor, no_grad and SGD code in code cells (not markdown cells), "
        "and save the notebook before submitting it.",
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"
