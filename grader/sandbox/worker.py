"""The sandbox worker: imports one submission and runs Programs on it, speaking frames.

Run as ``python3 -m grader.sandbox.worker --submission DIR --module autograd --banned torch,jax``
with the protocol on its stdin/stdout. Stdlib + NumPy only (see ``worker_files.py``).

Before the submission is imported the worker
  1. takes private duplicates of stdin/stdout for the protocol, then points fd 0 at /dev/null
     and fds 1 and 2 at a capture file, so nothing the student prints (``print``,
     ``os.write(1, ...)``, a forged frame) can reach the protocol; the capture is returned,
     capped, with each reply and truncated each time so the disk does not fill;
  2. blocks the banned imports (a meta-path finder, plus a hook on ``__import__`` that
     survives a cleared ``sys.meta_path``) with a message that says why;
  3. puts the submission directory first on ``sys.path`` and drops the working directory.
It keeps Python's default recursion limit and thread stack size: the lab requires
``backward`` to survive a 10,000-op chain, so a recursive topological sort must fail here
exactly as it fails for the student at home.

The worker only gathers evidence; the host decides. It trusts nothing it sends back either.
"""

from __future__ import annotations

import argparse
import builtins
import faulthandler
import importlib
import importlib.abc
import io
import os
import platform
import signal
import socket
import sys
import traceback
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from grader.programs.draws import BadDraw, draw_arrays
from grader.programs.interpreter import Interpreter, LabAdapter, run_program, start_program
from grader.sandbox.protocol import Arrays, ProtocolError, read_frame, write_frame

PROTOCOL_VERSION = 1
MAX_REPEATS = 100_000
MAX_TEXT = 4000
TRACEBACK_FRAMES = 8


# ---- the protocol channel and the student's output ----


class Channel:
    """The protocol's private copies of the original stdin and stdout."""

    def __init__(self, reader: BinaryIO, writer: BinaryIO) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    def take(cls) -> Channel:
        """Duplicate fds 0 and 1 for the protocol (non-inheritable, as ``os.dup`` makes them)."""
        return cls(os.fdopen(os.dup(0), "rb"), os.fdopen(os.dup(1), "wb"))

    @classmethod
    def connect(cls, path: str) -> Channel:
        """Connect to the host's Unix socket (the Docker backend mounts it in): frames then go straight
        to the grader, not through the engine's attach stream (its copies cost more than the work at
        matmul sizes). The socket is non-inheritable, as Python makes every socket."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        return cls(sock.makefile("rb"), sock.makefile("wb"))

    def send(self, header: dict[str, Any], arrays: Arrays | None = None) -> None:
        write_frame(self.writer, header, arrays)


class Capture:
    """The student's stdout and stderr: fds 1 and 2 point at one file, read and emptied per reply."""

    def __init__(self, path: Path, limit_bytes: int) -> None:
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        self.fd = os.open(path, flags, 0o600)   # private: the student may re-point fds 1 and 2
        self.limit = limit_bytes

    def install(self) -> None:
        """Point fds 0/1/2 away from the protocol and rebind ``sys.std*`` to them."""
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(self.fd, 1)
        os.dup2(self.fd, 2)
        sys.stdin = open(0, "r", closefd=False)  # noqa: SIM115 - these live as long as the process
        sys.stdout = _text_stream(1)
        sys.stderr = _text_stream(2)

    def collect(self) -> str:
        """What was written since the last call (capped, with a note), then empty the file."""
        _flush_std_streams()
        size = os.fstat(self.fd).st_size
        text = os.pread(self.fd, min(size, self.limit), 0).decode("utf-8", errors="replace")
        os.ftruncate(self.fd, 0)
        # A flush that failed at RLIMIT_FSIZE left text buffered: it belongs to this reply, not the next.
        _flush_std_streams()
        size += os.fstat(self.fd).st_size
        os.ftruncate(self.fd, 0)
        if size > self.limit:
            text += f"\n[truncated: {size} bytes of output, only the first {self.limit} are kept]"
        return text


def _text_stream(fd: int) -> io.TextIOWrapper:
    return open(fd, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - full, replaced or broken by the student
            pass


# ---- banned imports ----


def banned_message(name: str, banned: tuple[str, ...]) -> str:
    top = name.partition(".")[0]
    return (f"importing {top} is not allowed in this lab: implement autograd yourself with NumPy "
            f"(not allowed here: {', '.join(banned)})")


class BannedImportFinder(importlib.abc.MetaPathFinder):
    """Refuses the banned top-level packages and all their submodules, with a clear message."""

    def __init__(self, banned: tuple[str, ...]) -> None:
        self.banned = banned

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.partition(".")[0] in self.banned:
            raise ImportError(banned_message(fullname, self.banned), name=fullname)
        return None


def install_import_blocker(banned: tuple[str, ...]) -> None:
    """The finder for every route into importlib, and a hook on ``import`` statements.

    The hook still refuses with the clear message when the student clears ``sys.meta_path``.
    Neither is the real wall: nothing banned is installed where the worker can see it
    (the local backend's ``-I -S`` path; the Docker image holds NumPy only).
    """
    sys.meta_path.insert(0, BannedImportFinder(banned))
    original: Callable[..., Any] = builtins.__import__

    def guarded_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        if level == 0 and name.partition(".")[0] in banned:
            raise ImportError(banned_message(name, banned), name=name)
        return original(name, globals, locals, fromlist, level)

    builtins.__import__ = guarded_import


# ---- the submission ----


def prepare_path(submission_dir: Path) -> None:
    """The submission first; never the working directory, where the student may write files."""
    cwd = os.getcwd()
    sys.path[:] = [str(submission_dir)] + [p for p in sys.path if p not in ("", ".", cwd)]


def import_submission(module: str, submission_dir: Path) -> tuple[Any, dict[str, str] | None]:
    """(module, None) or (None, error); SystemExit and KeyboardInterrupt count as errors too."""
    try:
        return importlib.import_module(module), None
    except BaseException as exc:  # noqa: BLE001 - anything the student's import raises
        return None, {"type": type(exc).__name__, "message": _cap(str(exc)),
                      "traceback": _cap(student_traceback(exc, submission_dir))}


def student_traceback(exc: BaseException, submission_dir: Path) -> str:
    """Only the frames in the submission's files, named as the student knows them (``autograd.py``)."""
    root = str(submission_dir)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(root + os.sep)]
    for frame in frames:
        frame.filename = os.path.relpath(frame.filename, root)
    lines = traceback.format_list(frames[-TRACEBACK_FRAMES:]) + traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def _cap(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "... [truncated]"


# ---- requests ----


class Pending:
    """A Program whose graph was built by a ``build`` request, waiting for its ``resume``.

    The host times the two requests apart, so a speed ratio can show the student's ``backward``
    on its own. Any other request drops it: a resume belongs to the build just before it.
    """

    def __init__(self) -> None:
        self.interpreter: Interpreter | None = None
        self.rest: list[dict[str, Any]] = []

    def take(self) -> tuple[Interpreter | None, list[dict[str, Any]]]:
        interpreter, rest = self.interpreter, self.rest
        self.interpreter, self.rest = None, []
        return interpreter, rest


def handle(request: dict[str, Any], arrays: Arrays, module: Any,
           pending: Pending | None = None) -> tuple[dict[str, Any], Arrays]:
    """One request -> one reply (without the captured output, which the caller adds)."""
    kind = request.get("type")
    program = request.get("program")
    waiting, rest = pending.take() if pending is not None else (None, [])
    lean = request.get("lean") is True
    if isinstance(program, dict) and "draws" in program:
        try:   # a timed run's random inputs: drawn here, not shipped (grader.programs.draws)
            arrays = {**arrays, **draw_arrays(program["draws"])}
        except BadDraw as exc:
            return {"type": "error", "message": str(exc)}, {}
    if kind == "resume":
        if waiting is None:
            return {"type": "error", "message": "resume without a build just before it"}, {}
        waiting.run_part(rest)
        header, out = waiting.finish().to_wire()
        return {"type": "result", "result": header}, out
    if kind == "build" and pending is not None:
        split = request.get("split")
        steps = program.get("steps") if isinstance(program, dict) else None
        if not isinstance(steps, list) or not isinstance(split, int) or not 0 < split < len(steps):
            return {"type": "error", "message": "a build request needs program steps and a split inside them"}, {}
        pending.interpreter, pending.rest = start_program(LabAdapter(module), arrays, lean=lean), steps[split:]
        pending.interpreter.run_part(steps[:split])
        return {"type": "built"}, {}
    if kind not in ("run", "time"):
        return {"type": "error", "message": f"unknown request type {str(kind)[:50]!r}"}, {}
    if not isinstance(program, dict) or not isinstance(program.get("steps"), list):
        return {"type": "error", "message": "the request carries no program steps"}, {}
    repeats = request.get("repeats", 1) if kind == "time" else 1
    if not isinstance(repeats, int) or not 1 <= repeats <= MAX_REPEATS:
        return {"type": "error", "message": f"repeats must be an integer in 1..{MAX_REPEATS}"}, {}
    adapter = LabAdapter(module)
    for _ in range(repeats - 1):
        # Every repeat reads its results as the last one does, so a lazy backward that only works when
        # .grad is read cannot look fast: all repeats do the same work, only the last is sent back.
        run_program(adapter, program["steps"], arrays, lean=lean)
    header, out = run_program(adapter, program["steps"], arrays, lean=lean).to_wire()
    return {"type": "result", "result": header}, out


def reimport_submission(module: str, submission_dir: Path) -> tuple[Any, dict[str, str] | None]:
    """A fresh copy of the submission's module, so no global state (a stuck no_grad flag) leaks between tests."""
    sys.modules.pop(module, None)
    importlib.invalidate_caches()
    return import_submission(module, submission_dir)


def serve(channel: Channel, module: Any, capture: Capture, max_bytes: int,
          module_name: str = "autograd", submission_dir: Path = Path(".")) -> int:
    """Answer requests until the host closes the channel; 0 at a clean end, 2 on a bad frame.

    A ``reset`` request re-imports the submission (the host sends one before each test).
    """
    pending = Pending()
    while True:
        try:
            frame = read_frame(channel.reader, max_bytes)
        except ProtocolError as exc:
            channel.send({"type": "error", "message": f"bad request frame: {exc}", "stdout": capture.collect()})
            return 2
        if frame is None:
            return 0
        if frame[0].get("type") == "reset":
            pending.take()
            module, error = reimport_submission(module_name, submission_dir)
            channel.send({"type": "reset", "import_ok": error is None, "error": error,
                          "stdout": capture.collect()})
            continue
        try:
            reply, arrays = handle(*frame, module, pending)
        except BaseException as exc:  # noqa: BLE001 - e.g. a KeyboardInterrupt raised by student code
            reply, arrays = {"type": "error", "message": _cap(f"{type(exc).__name__}: {exc}")}, {}
        reply["stdout"] = capture.collect()
        channel.send(reply, arrays)


# ---- main ----


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="grader.sandbox.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--submission", type=Path, required=True, help="directory holding the module")
    parser.add_argument("--module", default="autograd")
    parser.add_argument("--banned", default="torch", help="comma-separated top-level packages")
    parser.add_argument("--output-file", type=Path, default=Path("student-output.log"),
                        help="capture file for the student's stdout/stderr (in the scratch dir)")
    parser.add_argument("--output-kb", type=int, default=64, help="captured output kept per reply")
    parser.add_argument("--frame-mb", type=int, default=64, help="largest request frame accepted")
    parser.add_argument("--connect", default=None,
                        help="speak frames over this Unix socket instead of stdin/stdout")
    return parser.parse_args(argv)


def hello(module_error: dict[str, str] | None, stdout: str) -> dict[str, Any]:
    return {"type": "hello", "protocol": PROTOCOL_VERSION, "import_ok": module_error is None,
            "error": module_error, "stdout": stdout,
            "python": platform.python_version(), "numpy": np.__version__}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    banned = tuple(b for b in (s.strip() for s in args.banned.split(",")) if b and b != args.module)
    channel = Channel.connect(args.connect) if args.connect else Channel.take()
    capture = Capture(args.output_file, args.output_kb * 1024)
    # A native crash (ctypes, a segfault) leaves its Python traceback on the original stderr.
    faulthandler.enable(file=io.FileIO(os.dup(2), "w"), all_threads=False)
    capture.install()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past RLIMIT_FSIZE a print raises, not kills
    sys.dont_write_bytecode = True
    install_import_blocker(banned)
    submission_dir = args.submission.resolve()
    prepare_path(submission_dir)
    module, error = import_submission(args.module, submission_dir)
    channel.send(hello(error, capture.collect()))
    return serve(channel, module, capture, args.frame_mb * 2**20, args.module, submission_dir)


if __name__ == "__main__":
    sys.exit(main())
