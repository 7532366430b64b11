"""The ``local`` sandbox backend: the worker in a locked-down subprocess (no Docker needed).

Used by ``grader check`` and wherever Docker is absent. Each ``start()`` builds a fresh
temporary directory::

    grader-sandbox-XXXX/          root of the sandbox (0755, the grader's)
        site/                     the only import path besides the stdlib: copies of the
                                  worker files, links to the NumPy install
        submission/autograd.py    a copy of the submission (read-only for the worker)
        work/                     the worker's cwd and scratch dir; holds the output capture
        home/                     its HOME

and runs ``python -I -S -B`` (isolated, no site-packages, no bytecode writes) on a bootstrap
that puts ``site/`` first on ``sys.path``: torch and everything else installed on the host is
simply not importable, even for a student who removes the worker's import blocker.
The environment is scrubbed; rlimits come from ``SandboxLimits``; the worker leads its own
process group (killed as a whole). When the grader runs as root the worker runs as
``nobody`` (65534), so RLIMIT_NPROC applies and root's files stay out of reach; if the host
interpreter lives where ``nobody`` cannot read it (pyenv under /root), a hard-linked mirror
of the interpreter, its stdlib and NumPy is built once per grader process.

This is a best-effort sandbox for a student's own laptop and for Docker-less machines. It has
no network or file-system namespace: the worker can read whatever ``nobody`` (or, without
root, the grader's user) can read. Grade untrusted classes with the ``docker`` backend.
"""

from __future__ import annotations

import atexit
import functools
import os
import resource
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

import grader
from grader.errors import SandboxError
from grader.sandbox.protocol import REPLY_HEADER_BYTES, Frame, ProtocolError, encode_frame, read_frame
from grader.sandbox.base import Arrays, SandboxLimits, SandboxTimeout, WorkerCrashed, WorkerSpec
from grader.sandbox.worker_files import WORKER_FILES, WORKER_MODULE

NOBODY = 65534
OUTPUT_FILE = "student-output.log"
TOKEN_VAR = "GRADER_SANDBOX"              # marks every process of one sandbox, for the sweep
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
PASS_THROUGH = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
ONE_THREAD = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
TAIL_BYTES = 2000
EXIT_GRACE_S = 2.0                        # after EOF, how long a dying worker gets to exit
BOOTSTRAP = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
             f"from {WORKER_MODULE} import main; sys.exit(main(sys.argv[1:]))")
_STDLIB_SKIP = ("site-packages", "dist-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip")
_SIGNAL_HINTS = {
    "SIGSEGV": "a segmentation fault: native code crashed (ctypes?)",
    "SIGBUS": "a bus error: native code crashed",
    "SIGABRT": "aborted by native code",
    "SIGXCPU": "the CPU-time limit was exceeded",
    "SIGXFSZ": "the output-file size limit was exceeded",
    "SIGKILL": "killed outright (out of memory, or a hard limit)",
}


# ---- the interpreter and NumPy the worker runs on ----


@dataclass(frozen=True)
class Runtime:
    """An interpreter, the NumPy directories to expose to it, and the env it needs."""

    executable: Path
    packages: tuple[Path, ...]
    env: dict[str, str] = field(default_factory=dict)


def numpy_dirs() -> tuple[Path, ...]:
    """The installed ``numpy`` package and, for wheels, its bundled ``numpy.libs``."""
    package = Path(np.__file__).resolve().parent
    libs = package.parent / "numpy.libs"
    return (package, libs) if libs.is_dir() else (package,)


def _libpython() -> Path | None:
    """The shared libpython the interpreter links against, if it is built shared."""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return None
    path = Path(sysconfig.get_config_var("LIBDIR") or "") / (sysconfig.get_config_var("INSTSONAME") or "")
    return path if path.is_file() else None


def _stdlib_dir() -> Path:
    return Path(sysconfig.get_path("stdlib")).resolve()


def host_runtime() -> Runtime:
    return Runtime(Path(sys.executable), numpy_dirs())


def readable_by_others(path: Path, mode: int = stat.S_IROTH) -> bool:
    """Whether a user with no special rights can reach ``path`` (every parent searchable)."""
    path = path.resolve()
    if any(not os.stat(p).st_mode & stat.S_IXOTH for p in path.parents):
        return False
    return os.stat(path).st_mode & mode == mode


def runtime_for(uid: int | None) -> Runtime:
    """The host's interpreter if the worker's user can read it, else a mirror that it can."""
    host = host_runtime()
    needed = [_stdlib_dir(), *host.packages, *filter(None, [_libpython()])]
    if uid is None or (readable_by_others(Path(sys.executable), stat.S_IROTH | stat.S_IXOTH)
                       and all(readable_by_others(p) for p in needed)):
        return host
    return mirrored_runtime()


@functools.cache
def mirrored_runtime() -> Runtime:
    """Hard links (copies across file systems) of the interpreter, its stdlib and NumPy.

    Built once per grader process in a fresh 0755 temp dir, removed at exit. Hard links
    cost no space, and the files stay root's: the worker can read but never change them.
    """
    root = Path(tempfile.mkdtemp(prefix="grader-runtime-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    root.chmod(0o755)
    exe = Path(sys.executable).resolve()
    (root / "bin").mkdir(mode=0o755)
    _link_file(exe, root / "bin" / exe.name)
    stdlib = _stdlib_dir()
    _link_tree(stdlib, root / "lib" / stdlib.name, shutil.ignore_patterns(*_STDLIB_SKIP))
    env = {}
    libpython = _libpython()
    if libpython is not None:
        _link_file(libpython, root / "lib" / libpython.name)
        env["LD_LIBRARY_PATH"] = str(root / "lib")
    packages = tuple(_link_tree(p, root / "site-packages" / p.name) for p in numpy_dirs())
    return Runtime(root / "bin" / exe.name, packages, env)


def _link_file(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _link_tree(src: Path, dst: Path, ignore: Callable[..., Any] | None = None) -> Path:
    dst.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    shutil.copytree(src, dst, ignore=ignore, copy_function=_link_file, symlinks=True)
    return dst


# ---- the sandbox's directory ----


@dataclass(frozen=True)
class Layout:
    """Paths of one sandbox's temporary directory."""

    root: Path

    @property
    def site(self) -> Path:
        return self.root / "site"

    @property
    def submission(self) -> Path:
        return self.root / "submission"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def output(self) -> Path:
        return self.work / OUTPUT_FILE


def stage(spec: WorkerSpec, runtime: Runtime, owner: tuple[int, int] | None) -> Layout:
    """A fresh sandbox dir; ``owner`` (uid, gid) gets the writable parts when the worker runs as another user."""
    layout = Layout(Path(tempfile.mkdtemp(prefix="grader-sandbox-")))
    layout.root.chmod(0o755 if owner is not None else 0o700)
    source_root = Path(grader.__file__).resolve().parent.parent
    for rel in WORKER_FILES:
        target = layout.site / rel
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        shutil.copyfile(source_root / rel, target)
    for package in runtime.packages:
        (layout.site / package.name).symlink_to(package, target_is_directory=True)
    layout.submission.mkdir(mode=0o755)
    module_file = spec.submission_dir / f"{spec.module}.py"
    if module_file.is_file():   # if missing, the worker's import error says so
        shutil.copyfile(module_file, layout.submission / module_file.name)
    for private in (layout.work, layout.home):
        private.mkdir(mode=0o700)
    layout.output.touch(mode=0o600)
    _chmod_readable(layout.site, layout.submission)
    if owner is not None:
        for path in (layout.work, layout.home, layout.output):
            os.chown(path, *owner)
    return layout


def _chmod_readable(*roots: Path) -> None:
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            os.chmod(dirpath, 0o755)
            for name in filenames:
                if not os.path.islink(os.path.join(dirpath, name)):
                    os.chmod(os.path.join(dirpath, name), 0o644)


def remove_tree(path: Path) -> None:
    """Delete a sandbox dir, also when the student made parts of it unreadable."""
    def fix_and_retry(func: Callable[[str], Any], failed: str, _exc: Any) -> None:
        try:
            os.chmod(os.path.dirname(failed), 0o700)
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, 0o700)
            func(failed)
        except OSError:
            pass

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=fix_and_retry)
    else:
        shutil.rmtree(path, onerror=fix_and_retry)


# ---- the worker process ----


def worker_command(runtime: Runtime, layout: Layout, spec: WorkerSpec) -> list[str]:
    return [str(runtime.executable), "-I", "-S", "-B", "-c", BOOTSTRAP, str(layout.site),
            "--submission", str(layout.submission), "--module", spec.module,
            "--banned", ",".join(spec.banned_imports), "--output-file", str(layout.output),
            "--output-kb", str(spec.limits.output_kb), "--frame-mb", str(spec.limits.frame_mb)]


def worker_env(layout: Layout, runtime: Runtime, token: str) -> dict[str, str]:
    """Nothing from the host's environment but a few OpenBLAS tuning knobs."""
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "HOME": str(layout.home), TOKEN_VAR: token}
    env.update({name: "1" for name in ONE_THREAD})
    env.update({name: os.environ[name] for name in PASS_THROUGH if name in os.environ})
    env.update(runtime.env)
    return env


def rlimits(limits: SandboxLimits, nproc: int) -> dict[int, tuple[int, int]]:
    mb = 2**20
    return {
        resource.RLIMIT_AS: (limits.memory_mb * mb,) * 2,
        resource.RLIMIT_CPU: (limits.cpu_seconds, limits.cpu_seconds + 1),  # SIGXCPU, then SIGKILL
        resource.RLIMIT_FSIZE: (limits.file_size_mb * mb,) * 2,
        resource.RLIMIT_NOFILE: (limits.open_files,) * 2,
        resource.RLIMIT_NPROC: (nproc,) * 2,
        resource.RLIMIT_CORE: (0, 0),
    }


def _apply_rlimits(wanted: dict[int, tuple[int, int]]) -> None:
    """In the child, between fork and exec (after the switch of user): only setrlimit calls."""
    for which, (soft, hard) in wanted.items():
        _, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):
            pass  # a platform without this limit (macOS and RLIMIT_AS): best effort


def nproc_limit(limits: SandboxLimits, uid: int | None) -> int:
    """RLIMIT_NPROC counts all tasks of the real user: as ourselves, leave room for what already runs."""
    if uid is not None:
        return limits.pids
    return limits.pids + sum(_tasks_of(pid) for pid in _pids_of(os.getuid()))


def _tasks_of(pid: int) -> int:
    """Threads of ``pid``; 0 when it exited since /proc was listed (a busy machine races here)."""
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def _pids_of(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        try:
            if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == uid:
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def describe_exit(returncode: int | None) -> str:
    """'exited with status 3', 'killed by signal 11 (SIGSEGV: a segmentation fault ...)'."""
    if returncode is None:
        return "still running"
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        return f"killed by signal {-returncode}"
    hint = _SIGNAL_HINTS.get(name)
    return f"killed by signal {-returncode} ({name}{': ' + hint if hint else ''})"


def _live_sandbox_pids(pgid: int, uid: int, token: str) -> list[int]:
    """Live processes of one sandbox: its process group, and any that left it (setsid) but carry its token."""
    found = []
    for pid in _pids_of(uid):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
            if fields[0] in (b"Z", b"X"):
                continue
            if int(fields[2]) == pgid or token.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                found.append(pid)
        except (OSError, ValueError, IndexError):
            continue
    return found


def kill_sandbox(pgid: int, uid: int, token: str, deadline_s: float = 5.0) -> None:
    """SIGKILL the worker's group, then sweep until no process of the sandbox lives."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        survivors = _live_sandbox_pids(pgid, uid, token)
        for pid in survivors:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if not survivors or time.monotonic() > end:
            return
        time.sleep(0.01)


def wait_without_reaping(proc: subprocess.Popen[bytes], grace: float) -> bool:
    """Whether our child exits within ``grace`` s. It stays a zombie until ``proc.wait()``, so
    its pid, which is also its process group's id, cannot be reused while we still kill by it."""
    end = time.monotonic() + grace
    while True:
        if not hasattr(os, "waitid"):   # macOS: reaps, which only weakens that guarantee
            exited = proc.poll() is not None
        else:
            try:
                exited = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
            except ChildProcessError:   # already reaped
                exited = True
        if exited or time.monotonic() >= end:
            return exited
        time.sleep(0.01)


class _Expired(Exception):
    """The host's deadline for one exchange passed."""


def _wait_ready(fd: int, event: int, deadline: float) -> None:
    with selectors.DefaultSelector() as selector:
        selector.register(fd, event)
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not selector.select(remaining):
            raise _Expired


class DeadlineReader:
    """``read(n)`` on a pipe that gives up (``_Expired``) at a host wall-clock deadline."""

    def __init__(self, fd: int, deadline: float) -> None:
        self.fd, self.deadline = fd, deadline

    def read(self, n: int) -> bytes:
        _wait_ready(self.fd, selectors.EVENT_READ, self.deadline)
        return os.read(self.fd, n)


def write_with_deadline(fd: int, data: bytes, deadline: float) -> None:
    """All of ``data`` into a non-blocking pipe, or ``_Expired`` (a stuck worker stops reading)."""
    view = memoryview(data)
    while view:
        _wait_ready(fd, selectors.EVENT_WRITE, deadline)
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            continue


# ---- the backend ----


class LocalSandbox:
    """A worker on one submission in a local subprocess (the ``Sandbox`` protocol)."""

    def __init__(self, spec: WorkerSpec, drop_privileges: bool | None = None) -> None:
        self.spec = spec
        self.limits = spec.limits
        if drop_privileges is None:  # the trusted reference keeps root's 0700 dirs, out of nobody's reach
            drop_privileges = os.geteuid() == 0 and not spec.trusted
        self.owner: tuple[int, int] | None = (NOBODY, NOBODY) if drop_privileges else None
        self.layout: Layout | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.hello: dict[str, Any] | None = None
        self._token = ""
        self._pgid: int | None = None
        self._output_fd: int | None = None

    def __enter__(self) -> LocalSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def uid(self) -> int:
        """The worker's user: nobody, or the grader's own."""
        return self.owner[0] if self.owner else os.getuid()

    # ---- Sandbox protocol ----

    def start(self) -> dict[str, Any]:
        """Start a fresh worker (closing any previous one) and return its hello header.

        A submission that hangs, crashes or exits while it is imported gives a hello with
        ``import_ok`` False and a message, not an exception: it is the submission's failure.
        """
        self.close()
        try:
            self._spawn()
            self.hello = self._read_hello()
        except BaseException:
            self.close()
            raise
        return self.hello

    def request(self, header: dict[str, Any], arrays: Arrays, timeout: float) -> tuple[dict[str, Any], Arrays]:
        """One exchange within ``timeout`` s of host wall-clock; the worker is killed past it."""
        data = encode_frame(header, arrays)   # a bad request is the grader's bug: raises ProtocolError
        if self.proc is None:
            raise WorkerCrashed("the worker is not running")
        if not self._alive():
            raise self._crashed("the worker had exited before the request")
        deadline = time.monotonic() + timeout
        try:
            write_with_deadline(self.proc.stdin.fileno(), data, deadline)  # type: ignore[union-attr]
            frame = self._read_frame(deadline)
        except _Expired:
            self._stop(grace=0)
            raise SandboxTimeout(f"no reply within {timeout:g} s; the worker was killed") from None
        except OSError as exc:   # EPIPE: it died before reading the request
            raise self._crashed(f"the worker stopped reading requests ({exc.strerror})") from None
        except ProtocolError as exc:
            raise self._crashed(f"the worker sent a malformed frame ({exc})", wait=False) from None
        if frame is None:
            raise self._crashed("no reply")
        return frame

    def close(self) -> None:
        """Kill every process of the sandbox and delete its directory. Idempotent."""
        self._stop(grace=0)
        if self._output_fd is not None:
            os.close(self._output_fd)
            self._output_fd = None
        if self.layout is not None:
            remove_tree(self.layout.root)
            self.layout = None

    def processes(self) -> list[int]:
        """Live processes of the current or last worker (its group, and any that left it)."""
        return _live_sandbox_pids(self._pgid, self.uid, self._token) if self._pgid else []

    # ---- internals ----

    def _spawn(self) -> None:
        uid, gid = self.owner or (None, None)
        if uid is not None and not readable_by_others(Path(tempfile.gettempdir()), stat.S_IXOTH):
            raise SandboxError(f"the temporary directory {tempfile.gettempdir()} is not reachable by the "
                               f"sandbox user {uid}", hint="set TMPDIR to a world-searchable directory such as /tmp")
        runtime = runtime_for(uid)
        self.layout = stage(self.spec, runtime, self.owner)
        self._token = secrets.token_hex(16)
        self._output_fd = os.open(self.layout.output, os.O_RDONLY)   # ours: survives renames and symlinks
        limits = rlimits(self.limits, nproc_limit(self.limits, uid))
        with open(self.layout.output, "ab") as stderr:     # the worker's stderr until it redirects fd 2
            self.proc = subprocess.Popen(
                worker_command(runtime, self.layout, self.spec), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=stderr, cwd=self.layout.work, env=worker_env(self.layout, runtime, self._token),
                start_new_session=True, close_fds=True, umask=0o077,
                user=uid, group=gid, extra_groups=[] if self.owner else None,
                preexec_fn=functools.partial(_apply_rlimits, limits),
            )
        self._pgid = self.proc.pid
        os.set_blocking(self.proc.stdin.fileno(), False)  # type: ignore[union-attr]

    def _alive(self) -> bool:
        return self.proc is not None and not wait_without_reaping(self.proc, 0)

    def _read_frame(self, deadline: float) -> Frame | None:
        reader = DeadlineReader(self.proc.stdout.fileno(), deadline)  # type: ignore[union-attr]
        return read_frame(reader, self.limits.frame_mb * 2**20, REPLY_HEADER_BYTES)

    def _read_hello(self) -> dict[str, Any]:
        timeout = self.limits.startup_timeout_s
        try:
            frame = self._read_frame(time.monotonic() + timeout)
        except _Expired:
            self._stop(grace=0)
            return self._failed_hello("TimeoutError", f"importing {self.spec.module}.py took longer than "
                                      f"{timeout:g} s (an infinite loop at import time?)")
        except ProtocolError as exc:
            crash = self._crashed(f"the worker sent a malformed hello ({exc})", wait=False)
            return self._failed_hello("WorkerCrashed", str(crash))
        if frame is None or frame[0].get("type") != "hello":
            crash = self._crashed(f"the worker died while importing {self.spec.module}.py")
            return self._failed_hello("WorkerCrashed", str(crash))
        return frame[0]

    def _failed_hello(self, kind: str, message: str) -> dict[str, Any]:
        return {"type": "hello", "import_ok": False, "stdout": self._captured(self.limits.output_kb * 1024),
                "error": {"type": kind, "message": message, "traceback": ""}}

    def _crashed(self, what: str, wait: bool = True) -> WorkerCrashed:
        """Stop the worker and say how it ended, with the tail of its output."""
        returncode, killed_by_us = self._stop(grace=EXIT_GRACE_S if wait else 0)
        if wait and not killed_by_us and returncode is not None:
            what = f"{what}: {describe_exit(returncode)}"
        tail = self._captured(TAIL_BYTES, tail=True).strip()
        return WorkerCrashed(what + (f"\nits last output:\n{tail}" if tail else ""))

    def _stop(self, grace: float) -> tuple[int | None, bool]:
        """(exit status, whether we had to kill it); kills the whole sandbox either way."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None, False
        exited = wait_without_reaping(proc, grace)
        kill_sandbox(proc.pid, self.uid, self._token)
        returncode = proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            try:
                pipe.close()  # type: ignore[union-attr]
            except OSError:
                pass
        return returncode, not exited

    def _captured(self, limit: int, tail: bool = False) -> str:
        """The student's output so far, from our own descriptor of the capture file."""
        if self._output_fd is None:
            return ""
        size = os.fstat(self._output_fd).st_size
        start = max(0, size - limit) if tail else 0
        text = os.pread(self._output_fd, min(limit, size), start).decode("utf-8", errors="replace")
        if size > limit and not tail:
            text += f"\n[truncated: {size} bytes of output, only the first {limit} are kept]"
        return text
