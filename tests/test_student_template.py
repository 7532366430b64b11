"""The student template: importable, every graded behaviour a stub, notebook and handout in sync."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "student_template"
SOURCE = TEMPLATE / "autograd.py"
NOTEBOOK = TEMPLATE / "autograd.ipynb"
HANDOUT = TEMPLATE / "handout.md"
BUILD_SCRIPT = ROOT / "scripts" / "build_notebook.py"

# The lab's parts and points, as the handout and the TODO tags name them.
PARTS = {"ops": 30, "mlp": 20, "graph": 20, "training": 15, "speed": 15}

PUBLIC_API = [
    "Tensor", "data", "grad", "requires_grad", "shape",
    "__add__", "__radd__", "__mul__", "__rmul__", "__matmul__",
    "relu", "sum", "backward", "detach", "zero_grad", "no_grad", "SGD", "step",
]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ag():
    return _load(SOURCE, "student_template_autograd")


@pytest.fixture(scope="module")
def build():
    return _load(BUILD_SCRIPT, "build_notebook")


def export_notebook(notebook: nbformat.NotebookNode) -> str:
    """The notebook export rule of the handout, written out apart from the grader's own.

    (Continuation lines that begin with `%` or `!` are not handled: the template has none.)
    """
    kept = []
    for cell in notebook.cells:
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        lines = cell.source.split("\n")
        first = next(line.strip() for line in lines if line.strip())
        if first == "# grader: ignore" or first.startswith("%%"):
            continue
        kept.append("\n".join(line for line in lines if not line.lstrip().startswith(("%", "!"))))
    return "\n\n".join(kept) + "\n"


# ---------------------------------------------------------------- the module


def test_imports_only_numpy():
    roots = set()
    for node in ast.walk(ast.parse(SOURCE.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or "").split(".")[0])
    assert roots == {"numpy"}


def test_tensor_constructs_float64_copy(ag):
    source = np.array([[1, 2, 3], [4, 5, 6]])  # integers
    t = ag.Tensor(source, requires_grad=True)
    assert t.data.dtype == np.float64
    assert t.shape == (2, 3) == t.data.shape
    assert t.requires_grad is True and t.grad is None
    t.data[0, 0] = 100.0
    source[1, 1] = -7
    assert source[0, 0] == 1 and t.data[1, 1] == 5.0  # neither side sees the other's writes

    floats = np.ones(3)
    assert ag.Tensor(floats).data is not floats
    assert ag.Tensor([1, 2]).requires_grad is False
    assert ag.Tensor(3).shape == ()
    assert ag.Tensor(3).data.dtype == np.float64


def test_sgd_constructs(ag):
    p = ag.Tensor([1.0], requires_grad=True)
    opt = ag.SGD((q for q in [p]), lr=0.5)
    assert opt.params == [p] and opt.lr == 0.5


STUBS = {
    "t + t": lambda ag, t: t + t,
    "t + 1": lambda ag, t: t + 1,
    "1 + t": lambda ag, t: 1 + t,
    "ndarray + t": lambda ag, t: np.ones(3) + t,
    "t * t": lambda ag, t: t * t,
    "t * 2.0": lambda ag, t: t * 2.0,
    "2 * t": lambda ag, t: 2 * t,
    "ndarray * t": lambda ag, t: np.ones(3) * t,
    "t @ W": lambda ag, t: ag.Tensor(np.ones((2, 3))) @ ag.Tensor(np.ones((3, 1))),
    "relu": lambda ag, t: t.relu(),
    "sum": lambda ag, t: t.sum(),
    "backward": lambda ag, t: ag.Tensor(1.0, requires_grad=True).backward(),
    "backward (error case)": lambda ag, t: ag.Tensor(1.0).backward(),
    "detach": lambda ag, t: t.detach(),
    "zero_grad": lambda ag, t: t.zero_grad(),
    "no_grad": lambda ag, t: ag.no_grad().__enter__(),
    "SGD.step": lambda ag, t: ag.SGD([t], lr=0.1).step(),
    "SGD.zero_grad": lambda ag, t: ag.SGD([t], lr=0.1).zero_grad(),
    "_unbroadcast": lambda ag, t: ag._unbroadcast(np.ones((2, 3)), (3,)),
}


@pytest.mark.parametrize("name", STUBS)
def test_graded_behaviour_is_a_stub(ag, name):
    t = ag.Tensor([1.0, 2.0, 3.0], requires_grad=True)
    with pytest.raises(NotImplementedError):
        STUBS[name](ag, t)


def test_no_grad_stub_raises_in_a_with_block(ag):
    with pytest.raises(NotImplementedError):
        with ag.no_grad():
            pass


def _stub_lines() -> list[int]:
    """0-based line numbers of every `raise NotImplementedError(...)` in the template."""
    return [
        node.lineno - 1
        for node in ast.walk(ast.parse(SOURCE.read_text()))
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
        and getattr(node.exc.func, "id", None) == "NotImplementedError"
    ]


def test_every_stub_is_tagged_with_a_part():
    lines = SOURCE.read_text().splitlines()
    assert len(_stub_lines()) == 14  # _unbroadcast, 10 Tensor methods, no_grad, 2 of SGD
    for i in _stub_lines():
        tags = []
        above = i - 1
        while lines[above].lstrip().startswith("#"):
            todo = re.fullmatch(r"\s*# TODO \(part (\w+)\): \S.*", lines[above])
            assert todo, f"line {above + 1}: expected '# TODO (part ...): ...'"
            tags.append(todo.group(1))
            above -= 1
        assert tags, f"line {i + 1}: the stub is not preceded by '# TODO (part ...): ...'"
        for part in tags:
            assert part in PARTS, f"line {i + 1}: unknown part {part!r}"
            assert part in lines[i], f"line {i + 1}: the message does not name part {part}"


def test_every_public_name_has_a_docstring(ag):
    members = [ag.Tensor, ag.SGD, ag.no_grad, ag.Tensor.shape, ag.SGD.step, ag.SGD.zero_grad]
    members += [getattr(ag.Tensor, n) for n in ("__init__", "__add__", "__radd__", "__mul__",
                                                "__rmul__", "__matmul__", "relu", "sum",
                                                "backward", "detach", "zero_grad")]
    for member in members:
        assert member.__doc__ and member.__doc__.strip(), member


def test_backward_docstring_states_the_contract(ag):
    doc = " ".join(ag.Tensor.backward.__doc__.split())
    for phrase in ("RuntimeError", "more than one element", "10,000", "recursion",
                   "linear", "accumulate", "writable float64", "intermediates"):
        assert phrase in doc, phrase


# ---------------------------------------------------------------- the notebook


def test_notebook_is_in_sync():
    result = subprocess.run([sys.executable, str(BUILD_SCRIPT), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_check_fails_on_a_stale_or_missing_notebook(tmp_path):
    stale = tmp_path / "autograd.ipynb"
    stale.write_text(NOTEBOOK.read_text().replace("Autograd From Scratch", "Old title"))
    for notebook in (stale, tmp_path / "missing.ipynb"):
        result = subprocess.run([sys.executable, str(BUILD_SCRIPT), "--check",
                                 "--notebook", str(notebook)], capture_output=True, text=True)
        assert result.returncode == 1
        assert "build_notebook.py" in result.stderr


def test_build_is_deterministic(build, tmp_path):
    out = tmp_path / "nb.ipynb"
    assert build.main(["--notebook", str(out)]) == 0
    assert out.read_text() == NOTEBOOK.read_text() == build.render(SOURCE.read_text())


def test_notebook_is_valid_and_clean():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    ids = [cell.id for cell in notebook.cells]
    assert len(set(ids)) == len(ids)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert [c.cell_type for c in notebook.cells[:2]] == ["markdown", "markdown"]
    first_lines = [cell.source.split("\n")[0] for cell in code]
    assert first_lines[1:] == ["def _unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) "
                               "-> np.ndarray:", "class Tensor:", "def no_grad():",
                               "class SGD:", "# grader: ignore"]


def test_exported_notebook_equals_the_module():
    exported = export_notebook(nbformat.read(NOTEBOOK, as_version=4))
    source = SOURCE.read_text()
    assert ast.dump(ast.parse(exported)) == ast.dump(ast.parse(source))
    non_blank = lambda text: [line for line in text.splitlines() if line.strip()]  # noqa: E731
    assert non_blank(exported) == non_blank(source)


def test_grader_exports_the_notebook_as_the_module():
    notebook = pytest.importorskip("grader.grading.notebook")
    export = notebook.export_notebook_bytes(NOTEBOOK.read_bytes(), NOTEBOOK.name)
    assert ast.dump(ast.parse(export.text)) == ast.dump(ast.parse(SOURCE.read_text()))
    assert export.ignored_cells == 1 and export.magic_lines == 0


def test_scratch_cell_builds_the_lab_mlp():
    scratch = nbformat.read(NOTEBOOK, as_version=4).cells[-1]
    assert scratch.cell_type == "code" and scratch.source.startswith("# grader: ignore\n")
    for shape in ("(8, 4)", "(4, 16)", "(16)", "(16, 1)", "(1)"):
        assert shape in scratch.source
    assert "((x @ W1 + b1).relu() @ W2 + b2).sum()" in scratch.source
    assert "backward()" in scratch.source and "print" in scratch.source
    compile(scratch.source, "scratch", "exec")


def test_export_rule_drops_magics_and_ignored_cells():
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("x = 1"),
        nbformat.v4.new_code_cell("%load_ext autoreload\nimport numpy as np\n  !pip list"),
        nbformat.v4.new_code_cell("\n%%timeit\nslow()"),
        nbformat.v4.new_code_cell("\n  # grader: ignore  \nprint('scratch')"),
        nbformat.v4.new_code_cell("y = 2"),
    ])
    assert export_notebook(notebook) == "import numpy as np\n\ny = 2\n"
    try:
        from grader.grading.notebook import export_notebook_bytes
    except ImportError:
        return
    data = nbformat.writes(notebook).encode()
    assert export_notebook_bytes(data, "t.ipynb").code == "import numpy as np\n\ny = 2\n"


# ---------------------------------------------------------------- the handout


def _words(text: str) -> str:
    return " ".join(text.split())


def test_handout_lists_every_part_with_its_points():
    handout = HANDOUT.read_text()
    for part, points in PARTS.items():
        assert re.search(rf"^\|\s*`{part}`\s*\|\s*{points}\s*\|", handout, re.M), part
        assert f"**{part}.**" in handout, f"the handout does not say what part {part} checks"
        assert f"# TODO (part {part})" in SOURCE.read_text() or part == "mlp"
    assert re.search(r"^\|\s*total\s*\|\s*100\s*\|", handout, re.M)
    assert sum(PARTS.values()) == 100


def test_handout_names_the_public_api():
    handout = HANDOUT.read_text()
    for name in PUBLIC_API:
        assert re.search(rf"\b{re.escape(name)}\b", handout), name


def test_handout_states_the_export_rule_word_for_word(build):
    assert _words(build.EXPORT_RULE) in _words(HANDOUT.read_text())
    assert _words(build.EXPORT_RULE) in _words(build.INTRO)


def test_handout_covers_running_and_rules():
    handout = HANDOUT.read_text()
    for phrase in ("grader check", "grader check path/to/autograd.py",
                   "grader check autograd.ipynb", "hidden tests", "reproduces",
                   "RuntimeError", "torch", "jax", "tensorflow", "NumPy", "standard library",
                   "relu'(0) = 0", "10,000", "zero_grad", "in place"):
        assert phrase in handout, phrase
