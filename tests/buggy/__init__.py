"""Realistic student bugs, each kept as a small unified diff against ``reference/autograd.py``.

``materialize(name, dest)`` applies ``<name>.diff`` to the reference and writes
``dest/autograd.py``; a diff that no longer applies exactly fails loudly, so the variants can
never drift silently from the reference they are based on.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parent.parent / "reference" / "autograd.py"
CATALOG: list[dict[str, str]] = yaml.safe_load((HERE / "catalog.yaml").read_text(encoding="utf-8"))
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def apply_diff(original: str, diff: str) -> str:
    """Apply a unified diff whose context must match exactly (no fuzz)."""
    source = original.splitlines(keepends=True)
    out: list[str] = []
    pos = 0
    lines = diff.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        match = _HUNK.match(lines[i])
        i += 1
        if not match:
            continue
        start = int(match.group(1)) - (0 if match.group(2) == "0" else 1)
        out += source[pos:start]
        pos = start
        while i < len(lines) and not lines[i].startswith("@@"):
            tag, text = lines[i][:1], lines[i][1:]
            if tag in (" ", "-"):
                if pos >= len(source) or source[pos] != text:
                    raise ValueError(f"diff context does not match the reference at line {pos + 1}: {text!r}")
                pos += 1
            if tag in (" ", "+"):
                out.append(text)
            i += 1
    return "".join(out + source[pos:])


def materialize(name: str, dest: Path) -> Path:
    """Write the variant ``name`` as ``dest/autograd.py``; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    diff = (HERE / f"{name}.diff").read_text(encoding="utf-8")
    (dest / "autograd.py").write_text(apply_diff(REFERENCE.read_text(encoding="utf-8"), diff), encoding="utf-8")
    return dest


def variant_file(name: str) -> Path:
    """The variant's ``autograd.py``, materialised in a scratch folder (rewritten on every call)."""
    import tempfile

    return materialize(name, Path(tempfile.gettempdir()) / "autograd-grader-buggy" / name) / "autograd.py"


def variant_names() -> list[str]:
    return [entry["name"] for entry in CATALOG]
