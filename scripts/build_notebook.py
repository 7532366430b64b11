#!/usr/bin/env python3
"""Build the student notebook `student_template/autograd.ipynb` from `student_template/autograd.py`.

    python scripts/build_notebook.py           # (re)write the notebook
    python scripts/build_notebook.py --check   # exit 1 if the notebook on disk is out of date

The .py is the source of truth. Its code is split into cells at each top-level `def` or
`class` (with the comment lines directly above it); a short markdown cell goes before each
code cell; a scratch cell marked `# grader: ignore` comes last. Exporting the notebook by
EXPORT_RULE gives back the .py's code. The output is deterministic: fixed cell ids, no
outputs, no execution counts, no timestamps, so `--check` can compare bytes.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "student_template" / "autograd.py"
NOTEBOOK = ROOT / "student_template" / "autograd.ipynb"

IGNORE_MARKER = "# grader: ignore"

# The rule the grader applies to turn a submitted notebook into autograd.py (implemented by
# grader/grading/notebook.py). The handout quotes it word for word (tests/test_student_template.py
# checks that, and exports the template notebook with grader/grading/notebook.py).
EXPORT_RULE = (
    "The grader turns a notebook into `autograd.py` like this: it takes the code cells in "
    "order (markdown and raw cells are ignored) and skips every code cell whose first "
    "non-blank line is `# grader: ignore` or begins with `%%` (a cell magic). In the cells "
    "it keeps, it drops every line that begins, after its indentation, with `%` or `!` "
    "(IPython magics and shell commands), unless that line continues a statement begun "
    "above it (inside brackets or a string, or after a backslash). It joins what remains "
    "with a blank line between cells; that is the code that is graded."
)

INTRO = f"""\
# Autograd From Scratch

Implement reverse-mode automatic differentiation in NumPy: a `Tensor` class, `no_grad()`
and `SGD`. The contract, the five parts (ops 30, mlp 20, graph 20, training 15, speed 15)
and the pitfalls are in `handout.md`: read it first.

Replace every `raise NotImplementedError(...)`. Keep every name and signature. NumPy and the
standard library only. Work either in this notebook or in `autograd.py`, not both, and
submit the one you worked in. Check your work with `grader check autograd.ipynb`.

**How this notebook is graded.** {EXPORT_RULE}
So keep your experiments in cells that start with `{IGNORE_MARKER}`, like the last one."""

# Markdown placed before the code cell of each top-level definition (None: the set-up cell).
BLURBS: dict[str | None, str] = {
    None: "## Set-up\n\nImports, and the switch that `no_grad()` turns off.",
    "_unbroadcast": (
        "## Reducing broadcast gradients (part ops)\n\n"
        "When an operand was broadcast in the forward pass, its gradient must be summed back "
        "to its own shape: `(H,)`, `(1, H)`, `(N, 1)` or `()`."
    ),
    "Tensor": (
        "## `Tensor` (parts ops, graph, speed)\n\n"
        "Each operation computes its result with NumPy and, right below, defines the "
        "`_backward` that sends gradients to its parents. `backward()` walks the graph in "
        "reverse topological order, without recursion."
    ),
    "no_grad": (
        "## `no_grad()` (part graph)\n\n"
        "A context manager that nests and restores the previous state on exit, "
        "also when an exception leaves the block."
    ),
    "SGD": (
        "## `SGD` (part training)\n\n"
        "Updates each parameter's data in place, records no graph, leaves the gradients alone."
    ),
}

SCRATCH_MARKDOWN = (
    "## Scratch: the lab's MLP\n\n"
    f"This cell starts with `{IGNORE_MARKER}`, so it is not graded. Once your ops and "
    "`backward()` work, it prints the gradients of the lab's MLP and checks one entry "
    "against a finite difference."
)

SCRATCH_CODE = f"""\
{IGNORE_MARKER}
rng = np.random.default_rng(0)
x = Tensor(rng.standard_normal((8, 4)))
W1 = Tensor(rng.standard_normal((4, 16)), requires_grad=True)
b1 = Tensor(rng.standard_normal(16), requires_grad=True)
W2 = Tensor(rng.standard_normal((16, 1)), requires_grad=True)
b2 = Tensor(rng.standard_normal(1), requires_grad=True)

loss = ((x @ W1 + b1).relu() @ W2 + b2).sum()
loss.backward()
print("loss:", loss.data, "shape:", loss.shape)
for name, p in [("W1", W1), ("b1", b1), ("W2", W2), ("b2", b2)]:
    print(name, p.shape, "grad:", p.grad.shape)
    print(p.grad)


def numpy_loss(w1):
    return (np.maximum(x.data @ w1 + b1.data, 0) @ W2.data + b2.data).sum()


eps = 1e-6
bump = np.zeros_like(W1.data)
bump[1, 2] = eps
finite_difference = (numpy_loss(W1.data + bump) - numpy_loss(W1.data - bump)) / (2 * eps)
print("W1.grad[1, 2] =", W1.grad[1, 2], "finite difference:", finite_difference)"""


@dataclass(frozen=True)
class Chunk:
    """A run of source lines that becomes one code cell; `name` is its definition's name."""

    name: str | None
    code: str


def split_source(source: str) -> list[Chunk]:
    """Split module source at each top-level def/class, keeping the comments just above it."""
    lines = source.splitlines()
    starts: list[tuple[int, str | None]] = [(0, None)]
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
            while first > 0 and lines[first - 1].lstrip().startswith("#"):
                first -= 1
            starts.append((first, node.name))
    ends = [start for start, _ in starts[1:]] + [len(lines)]
    chunks = [
        Chunk(name, "\n".join(lines[start:end]).strip("\n"))
        for (start, name), end in zip(starts, ends)
    ]
    return [chunk for chunk in chunks if chunk.code.strip()]


def build_notebook(source: str) -> nbformat.NotebookNode:
    """The notebook for `source`, with cell ids fixed by position."""
    cells = [nbformat.v4.new_markdown_cell(INTRO)]
    for chunk in split_source(source):
        cells.append(nbformat.v4.new_markdown_cell(BLURBS.get(chunk.name, f"## `{chunk.name}`")))
        cells.append(nbformat.v4.new_code_cell(chunk.code))
    cells.append(nbformat.v4.new_markdown_cell(SCRATCH_MARKDOWN))
    cells.append(nbformat.v4.new_code_cell(SCRATCH_CODE))
    for index, cell in enumerate(cells):
        cell["id"] = f"cell-{index:02d}"
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    notebook.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    nbformat.validate(notebook)
    return notebook


def render(source: str) -> str:
    """The notebook file's exact text for `source`."""
    return nbformat.writes(build_notebook(source), version=4).rstrip("\n") + "\n"


def write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the notebook is missing or out of date; write nothing")
    parser.add_argument("--source", type=Path, default=SOURCE,
                        help="the template module (default: %(default)s)")
    parser.add_argument("--notebook", type=Path, default=NOTEBOOK,
                        help="the notebook (default: %(default)s)")
    args = parser.parse_args(argv)

    expected = render(args.source.read_text(encoding="utf-8"))
    if args.check:
        current = args.notebook.read_text(encoding="utf-8") if args.notebook.exists() else None
        if current != expected:
            state = "is missing" if current is None else "is out of date"
            print(f"{args.notebook} {state} (source: {args.source}); "
                  f"run: python scripts/build_notebook.py", file=sys.stderr)
            return 1
        print(f"{args.notebook} is up to date")
        return 0
    write_atomically(args.notebook, expected)
    print(f"wrote {args.notebook}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
