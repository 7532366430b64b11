"""``grader export FORMAT REPORT...``: turn JSON reports into an LMS's or CI's format."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from grader.exporters import EXPORTERS
from grader.report import load_report


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    os.replace(tmp, path)


@click.command("export")
@click.argument("fmt", metavar="FORMAT", type=click.Choice(sorted(EXPORTERS)))
@click.argument("reports", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="output file (one report) or folder (per-report formats with several reports); default stdout")
def command(fmt: str, reports: tuple[Path, ...], output: Path | None) -> None:
    """Export REPORTS (JSON reports, or folders of them) as FORMAT."""
    files = [p for r in reports for p in (sorted(r.glob("*.json")) if r.is_dir() else [r])]
    loaded = [load_report(p) for p in files]
    exporter = EXPORTERS[fmt]
    if exporter.per_report and len(loaded) > 1:
        if output is None:
            raise click.UsageError(f"{fmt} writes one file per report: pass -o FOLDER")
        for path, report in zip(files, loaded):
            _write_atomic(output / (path.stem + exporter.suffix), exporter.render([report]))
        click.echo(f"wrote {len(loaded)} {fmt} files to {output}")
        return
    text = exporter.render(loaded)
    if output is None:
        click.echo(text, nl=False)
    else:
        _write_atomic(output, text)
        click.echo(f"wrote {output}")
