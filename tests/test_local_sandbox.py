"""The local sandbox backend and the worker: honest code gives torch's answers through it;
hostile code (tests/data/hostile/) is contained, reported clearly, and leaves nothing behind."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

from grader.grading import executors
from grader.programs.compare import assert_same
from grader.grading.executors import InProcessExecutor, SandboxExecutor, SubmissionCrashed, TorchExecutor
from grader.programs.program import Program
from grader.sandbox.base import SandboxLimits, WorkerCrashed, WorkerSpec
from grader.sandbox.local_backend import LocalSandbox, describe_exit, write_with_deadline

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the tests use /proc")

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = ROOT / "tests" / "data" / "hostile"
REFERENCE = ROOT / "reference" / "autograd.py"
HIDDEN = ROOT / "assignments" / "autograd-lab" / "tests" / "hidden"
AS_ROOT = os.geteuid() == 0
BANNED = ("torch", "jax", "tensorflow")

MakeSandbox = Callable[..., LocalSandbox]


# ---- fixtures and helpers ----


@pytest.fixture(scope="module")
def reference_module():
    spec = importlib.util.spec_from_file_location("_reference_autograd_for_sandbox_tests", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def torch_executor() -> TorchExecutor:
    return TorchExecutor()


@pytest.fixture
def make_sandbox(tmp_path: Path) -> Iterator[MakeSandbox]:
    """A LocalSandbox on a staged copy of a submission; each is closed after the test, leaving no process."""
    made: list[LocalSandbox] = []

    def make(source: Path, **limits: float) -> LocalSandbox:
        staged = tmp_path / f"submission{len(made)}"
        staged.mkdir()
        shutil.copyfile(source if source.suffix == ".py" else source / "autograd.py", staged / "autograd.py")
        sandbox = LocalSandbox(WorkerSpec(staged, banned_imports=BANNED,
                                          limits=SandboxLimits(**{"startup_timeout_s": 20.0, **limits})))
        made.append(sandbox)
        return sandbox

    yield make
    for sandbox in made:
        sandbox.close()
        assert sandbox.processes() == [] and sandbox.layout is None   # whatever the submission did


def hostile(name: str) -> Path:
    return HOSTILE / name


def mlp_program() -> Program:
    """The whole lab API: broadcasting, matmul, relu, detach, no_grad, SGD, accumulation."""
    p = Program("mlp through the sandbox", seed=3)
    x = p.randn("x", (5, 4))
    W1, b1 = p.randn("W1", (4, 8), requires_grad=True), p.randn("b1", (8,), requires_grad=True)
    W2 = p.randn("W2", (8, 1), requires_grad=True)
    h = (x @ W1 + b1).relu().named("h")
    loss = ((h @ W2) * 0.5 + 1.0).sum().named("loss")
    p.backward(loss)
    p.snapshot("grads", [W1, b1, W2, h, loss])
    frozen = h.detach().named("frozen")
    with p.no_grad():
        untracked = (frozen * 2.0).named("untracked")
    p.snapshot("detached", [frozen, untracked])
    opt = p.sgd([W1, b1, W2], lr=0.1)
    opt.step()
    p.snapshot("after step", [W1, b1, W2])
    return p


def small_program(title: str = "x * w + w") -> Program:
    """Same-shape add, mul, sum and backward: what the little hostile autograds implement."""
    p = Program(title, seed=5)
    x, w = p.randn("x", (3,)), p.randn("w", (3,), requires_grad=True)
    loss = (x * w + w).sum().named("loss")
    p.backward(loss)
    p.snapshot("grads", [w, loss])
    return p


def relu_program(title: str = "relu") -> Program:
    p = Program(title, seed=1)
    y = p.randn("x", (3,)).relu().named("y")
    p.snapshot("y", [y])
    return p


def leaf_program(title: str = "a leaf") -> Program:
    """Only ``Tensor(...)`` and a snapshot: works on every hostile fixture."""
    p = Program(title, seed=2)
    x = p.randn("x", (2, 2), requires_grad=True)
    p.snapshot("leaf", [x])
    return p


def backward_program() -> Program:
    p = Program("backward of a leaf", seed=4)
    p.backward(p.randn("x", (1,), requires_grad=True))
    return p


def live_members(pgid: int) -> list[int]:
    """Non-zombie processes of a process group (killed ones wait a moment for init to reap them)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{entry}/stat").read_bytes().rpartition(b")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            found.append(int(entry))
    return found


def assert_no_processes(pgid: int) -> None:
    assert live_members(pgid) == []


# ---- honest code ----


def test_reference_through_the_sandbox_matches_torch_and_in_process(make_sandbox, reference_module, torch_executor):
    program = mlp_program()
    lab = SandboxExecutor(make_sandbox(REFERENCE), timeout=20)
    assert lab.hello["import_ok"], lab.import_error
    assert lab.hello["numpy"] == np.__version__
    got = lab.run(program)
    assert got.error is None
    assert_same(program, torch_executor.run(program), got)
    assert_same(program, InProcessExecutor(reference_module).run(program), got, rtol=0, atol=0)


def test_time_request_runs_k_times_and_returns_the_last_evidence(make_sandbox, torch_executor):
    program = mlp_program()
    lab = SandboxExecutor(make_sandbox(REFERENCE), timeout=20)
    seconds, got = lab.time(program, repeats=3)
    assert seconds > 0
    assert_same(program, torch_executor.run(program), got)


def test_worker_environment_is_scrubbed_and_isolated(make_sandbox):
    """Host packages (torch, pytest, the rest of the grader) are unreachable even with the blocker
    removed; the env holds only what the backend set; the default recursion limit is kept."""
    lab = SandboxExecutor(make_sandbox(hostile("probe")), timeout=20)
    assert lab.run(relu_program()).error is None
    line = next(line for line in lab.output[-1].splitlines() if line.startswith("PROBE "))
    report = json.loads(line[len("PROBE "):])
    assert report["blocked"]["torch"].startswith("ImportError: importing torch is not allowed in this lab")
    for name, outcome in report["unblocked"].items():
        assert outcome.startswith("ModuleNotFoundError"), f"{name} importable in the sandbox: {outcome}"
    assert report["recursionlimit"] == 1000
    assert set(report["env"]) <= {"PATH", "LANG", "HOME", "GRADER_SANDBOX", "LD_LIBRARY_PATH", "OPENBLAS_NUM_THREADS",
                                  "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                  "LC_CTYPE"}
    assert report["path"][0].endswith("submission") and report["cwd"] not in report["path"]
    assert report["rlimits"]["RLIMIT_CORE"] == 0 and report["rlimits"]["RLIMIT_AS"] == 1024 * 2**20
    if AS_ROOT:
        assert report["uid"] == 65534 and report["rlimits"]["RLIMIT_NPROC"] == 64


def test_unknown_request_type_gets_an_error_reply(make_sandbox):
    sandbox = make_sandbox(REFERENCE)
    sandbox.start()
    reply, arrays = sandbox.request({"type": "launch missiles"}, {}, timeout=10)
    assert reply["type"] == "error" and "unknown request type" in reply["message"] and arrays == {}
    reply, _ = sandbox.request({"type": "run", "program": leaf_program().to_wire()[0]},
                               leaf_program().to_wire()[1], timeout=10)
    assert reply["type"] == "result"


# ---- output ----


def test_prints_and_forged_frames_do_not_reach_the_protocol(make_sandbox, torch_executor):
    program = small_program()
    lab = SandboxExecutor(make_sandbox(hostile("noisy")), timeout=20)
    assert "hello from import time" in lab.hello["stdout"]
    got = lab.run(program)
    assert_same(program, torch_executor.run(program), got)
    output = lab.output[-1]
    for op in ("mul", "add", "sum", "backward"):
        assert f"print from {op}" in output and f"stderr from {op}" in output
        assert f"os.write to fd 1 from {op}" in output
    assert "AGF1" in output and '"type": "result"' in output   # the forged frame, harmless text
    assert lab.run(program).error is None and "print from mul" in lab.output[-1]  # emptied, then refilled
    assert lab.output[-1].count("print from mul") == 1


def test_output_flood_is_capped_and_cannot_fill_the_disk(make_sandbox):
    sandbox = make_sandbox(hostile("output_flood"), output_kb=4, file_size_mb=2)
    lab = SandboxExecutor(sandbox, timeout=20)
    assert lab.run(relu_program()).error is None
    assert len(lab.output[-1]) < 5000 and "[truncated: 1048576 bytes of output" in lab.output[-1]
    p = Program("endless print", seed=0)
    p.randn("x", (2,)).sum()
    error = lab.run(p).error   # the print that crosses RLIMIT_FSIZE raises; the worker lives
    assert error["type"] == "OSError" and "File too large" in error["message"]
    assert "[truncated" in lab.output[-1]
    assert lab.run(leaf_program()).error is None
    assert lab.output[-1] == ""
    assert sandbox.layout.output.stat().st_size == 0


# ---- imports ----


def test_import_torch_is_blocked_even_after_clearing_meta_path(make_sandbox):
    lab = SandboxExecutor(make_sandbox(hostile("import_torch")), timeout=20)
    assert not lab.hello["import_ok"]
    assert lab.hello["error"]["type"] == "ImportError"
    assert "importing torch is not allowed in this lab" in lab.import_error
    assert "autograd.py" in lab.hello["error"]["traceback"] and "worker.py" not in lab.hello["error"]["traceback"]


def test_sys_exit_at_import_is_an_import_error(make_sandbox):
    lab = SandboxExecutor(make_sandbox(hostile("exit_at_import")), timeout=20)
    assert not lab.hello["import_ok"] and "about to exit" in lab.hello["stdout"]
    assert lab.import_error.startswith("SystemExit: autograd.py refuses to be imported")


def test_infinite_loop_at_import_gives_a_clear_import_failure(make_sandbox):
    sandbox = make_sandbox(hostile("loop_at_import"), startup_timeout_s=1.5)
    start = time.monotonic()
    lab = SandboxExecutor(sandbox, timeout=20)
    assert time.monotonic() - start < 10
    assert not lab.hello["import_ok"]
    assert "importing autograd.py took longer than 1.5 s (an infinite loop at import time?)" in lab.import_error
    assert "starting to import" in lab.hello["stdout"]
    assert sandbox.proc is None


# ---- crashes, timeouts, limits ----


def test_infinite_loop_in_an_op_times_out_and_the_worker_restarts(make_sandbox):
    sandbox = make_sandbox(hostile("loop_in_op"))
    lab = SandboxExecutor(sandbox, timeout=1.0)
    first_pid = sandbox.proc.pid
    start = time.monotonic()
    with pytest.raises(executors.TestTimeout, match="no answer within 1 s"):
        lab.run(relu_program())
    assert time.monotonic() - start < 8
    assert_no_processes(first_pid)
    assert lab.run(leaf_program()).error is None
    assert sandbox.proc.pid != first_pid


def test_os_exit_in_backward_is_a_crash_and_the_next_request_works(make_sandbox):
    lab = SandboxExecutor(make_sandbox(hostile("exit_in_backward")), timeout=20)
    with pytest.raises(SubmissionCrashed, match="exited with status 0"):
        lab.run(backward_program())
    assert lab.run(leaf_program()).error is None


def test_segfault_is_a_crash_that_names_sigsegv(make_sandbox):
    lab = SandboxExecutor(make_sandbox(hostile("segfault")), timeout=20)
    with pytest.raises(SubmissionCrashed) as info:
        lab.run(relu_program())
    message = str(info.value)
    assert "killed by signal 11 (SIGSEGV" in message
    assert "Segmentation fault" in message and "autograd.py" in message   # faulthandler's trace, in the tail
    assert lab.run(leaf_program()).error is None


def test_memory_bomb_hits_the_sandbox_limit_not_the_host(make_sandbox):
    lab = SandboxExecutor(make_sandbox(hostile("memory_bomb"), memory_mb=512), timeout=20)
    try:
        error = lab.run(relu_program()).error
    except SubmissionCrashed as exc:
        error = {"type": "crash", "message": str(exc)}
    assert error is not None and error["type"] in ("MemoryError", "crash"), error
    assert lab.run(leaf_program()).error is None


def test_fork_bomb_is_contained_and_killed_on_close(make_sandbox):
    sandbox = make_sandbox(hostile("fork_bomb"), pids=8)
    lab = SandboxExecutor(sandbox, timeout=20)
    pgid = sandbox.proc.pid
    error = lab.run(relu_program()).error
    forked = int(error["message"].split()[1])
    if AS_ROOT:   # RLIMIT_NPROC counts every task of the user: the worker + at most 7 children
        assert forked <= 7
    assert forked < 200
    assert len(sandbox.processes()) == forked + 1, "the worker and its sleeping children"
    sandbox.close()
    assert sandbox.processes() == []   # the one in its own session too
    assert_no_processes(pgid)


@pytest.mark.skipif(not AS_ROOT, reason="without root the worker runs as the grader's own user")
def test_worker_cannot_read_root_only_files_in_the_hidden_tests(make_sandbox, tmp_path):
    secret = HIDDEN / f".sandbox-probe-{uuid.uuid4().hex}.txt"
    HIDDEN.mkdir(parents=True, exist_ok=True)
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"expected values: 42")
        os.close(fd)
        source = tmp_path / "autograd.py"
        source.write_text(f"with open({str(secret)!r}) as f:\n    print('LEAKED', f.read())\n")
        lab = SandboxExecutor(make_sandbox(source), timeout=20)
    finally:
        secret.unlink()
    assert not lab.hello["import_ok"]
    assert lab.hello["error"]["type"] == "PermissionError"
    assert "LEAKED" not in lab.hello["stdout"]


# ---- cleanup ----


def test_close_kills_everything_and_removes_the_temp_dir(make_sandbox):
    sandbox = make_sandbox(REFERENCE)
    with sandbox:
        sandbox.start()
        pgid, root = sandbox.proc.pid, sandbox.layout.root
        header, arrays = leaf_program().to_wire()
        assert sandbox.request({"type": "run", "program": header}, arrays, timeout=10)[0]["type"] == "result"
    assert_no_processes(pgid)
    assert not root.exists()
    sandbox.close()   # idempotent
    with pytest.raises(WorkerCrashed, match="not running"):
        sandbox.request({"type": "run", "program": header}, arrays, timeout=10)


def test_restart_after_a_crash_uses_a_fresh_directory(make_sandbox):
    sandbox = make_sandbox(hostile("exit_in_backward"))
    sandbox.start()
    old_root = sandbox.layout.root
    header, arrays = backward_program().to_wire()
    with pytest.raises(WorkerCrashed, match="no reply: exited with status 0"):
        sandbox.request({"type": "run", "program": header}, arrays, timeout=10)
    assert sandbox.start()["import_ok"]
    assert not old_root.exists() and sandbox.layout.root.exists()


def test_a_bogus_reply_frame_is_a_crash(make_sandbox, tmp_path):
    """A student who writes straight to the protocol's descriptor gets a crash, not a grade."""
    source = tmp_path / "autograd.py"
    source.write_text(
        "import os, numpy as np\n"
        "class Tensor:\n"
        "    def __init__(self, data, requires_grad=False):\n"
        "        self.data, self.requires_grad, self.grad = np.array(data, float), requires_grad, None\n"
        "    def relu(self):\n"
        "        for fd in range(3, 20):\n"
        "            try: os.write(fd, b'EVIL' + bytes(12))\n"
        "            except OSError: pass\n"
        "        return self\n")
    lab = SandboxExecutor(make_sandbox(source), timeout=10)
    with pytest.raises(SubmissionCrashed, match="malformed frame"):
        lab.run(relu_program())
    assert lab.run(leaf_program()).error is None


def test_a_crash_at_import_is_an_import_failure_not_an_exception(make_sandbox, tmp_path):
    source = tmp_path / "autograd.py"
    source.write_text("import ctypes\nctypes.string_at(0)\n")
    lab = SandboxExecutor(make_sandbox(source), timeout=10)
    assert not lab.hello["import_ok"]
    assert "died while importing autograd.py: killed by signal 11 (SIGSEGV" in lab.import_error


def test_a_worker_that_stops_reading_cannot_block_the_host():
    """Requests larger than a pipe buffer are written with the same deadline as the reply."""
    read_end, write_end = os.pipe()
    try:
        os.set_blocking(write_end, False)
        start = time.monotonic()
        with pytest.raises(Exception) as info:
            write_with_deadline(write_end, bytes(4 * 2**20), time.monotonic() + 0.3)
        assert type(info.value).__name__ == "_Expired" and time.monotonic() - start < 2
    finally:
        os.close(read_end)
        os.close(write_end)


def test_describe_exit():
    assert describe_exit(3) == "exited with status 3"
    assert describe_exit(-signal.SIGSEGV).startswith("killed by signal 11 (SIGSEGV")
    assert describe_exit(-signal.SIGXCPU).startswith("killed by signal 24 (SIGXCPU: the CPU-time limit")
