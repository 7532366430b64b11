#!/usr/bin/env python3
"""Write the report's JSON Schema, generated from the pydantic model, into the package.

    python scripts/write_schema.py           # (re)write grader/schemas/report.v1.schema.json
    python scripts/write_schema.py --check   # exit 1 if the checked-in file is out of date

Run it after any change to ``grader/report.py`` and commit the result; the test suite
fails while the checked-in schema and the model disagree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader.report import SCHEMA_RESOURCE, render_report_schema  # noqa: E402

SCHEMA_PATH = ROOT / "grader" / "schemas" / SCHEMA_RESOURCE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the file is up to date")
    args = parser.parse_args(argv)
    text = render_report_schema()
    current = SCHEMA_PATH.read_text(encoding="utf-8") if SCHEMA_PATH.exists() else None
    rel = SCHEMA_PATH.relative_to(ROOT)
    if args.check:
        if current != text:
            print(f"write_schema: {rel} is out of date; run: python scripts/write_schema.py", file=sys.stderr)
            return 1
        print(f"write_schema: {rel} is up to date")
        return 0
    if current == text:
        print(f"write_schema: {rel} unchanged")
        return 0
    SCHEMA_PATH.parent.mkdir(parents=True, exist_ok=True)
    SCHEMA_PATH.write_text(text, encoding="utf-8")
    print(f"write_schema: wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
