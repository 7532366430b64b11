"""The ``docker`` sandbox backend: one locked-down container per submission.

The worker runs as the container's only process and speaks frames over a Unix socket the
grader listens on, in a folder mounted read-only into the container (``unix_channel``): the
worker connects before it imports the submission, and the grader accepts that one connection.
The grader also attaches to the container (no tty) for its stderr, where a native crash leaves
its traceback, and to see it stop; Docker multiplexes the attached stdout and stderr into
8-byte-headed chunks, which ``AttachedStream`` undoes. (Frames used to travel on the attached
stdin/stdout: every byte through the engine, which cost more than the work at matmul sizes.)

Containers carry the label ``autograd-grader=1`` and their owner's pid. They are
removed by ``close()``, on a timeout or crash, at interpreter exit, on SIGTERM
(turned into ``SystemExit`` so ``finally`` blocks run) and, for a grader that was
killed outright, by ``cleanup_stale_containers()``.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.types import LogConfig, Mount, Ulimit

from grader.errors import SandboxError
from grader.sandbox.protocol import REPLY_HEADER_BYTES, ProtocolError, encode_frame, read_frame
from grader.sandbox.base import Arrays, SandboxLimits, SandboxTimeout, WorkerCrashed, WorkerSpec, copy_submission
from grader.sandbox.image import DOCKER_HINT, LABEL, docker_client, ensure_image
from grader.sandbox.unix_channel import MOUNT as CHANNEL_MOUNT, ChannelError, DeadlineSocket, Listener, SocketStream
from grader.sandbox.worker_files import WORKER_MODULE

SUBMISSION_MOUNT = "/submission"
SANDBOX_USER = "10001:10001"
SANDBOX_IDS = (10001, 10001)
OWNER_LABEL = f"{LABEL}.owner"       # "<hostname>:<pid>" of the grader that made it
_MUX_HEADER = struct.Struct(">BxxxL")  # stream type (1 stdout, 2 stderr), payload size
_CHUNK = 1 << 16
TAIL_CHARS = 2000

_live: dict[str, docker.DockerClient] = {}   # containers this process made, not yet removed
_live_lock = threading.Lock()


# --- the attached stream ---------------------------------------------------------


class AttachedStream(DeadlineSocket):
    """Binary file-like view of an attached container: ``read`` is its stdout, ``write`` its stdin.

    Every socket operation honours ``deadline`` (``DeadlineSocket``). The container's stderr is
    kept, capped to its last ``stderr_limit`` bytes, in ``stderr``.
    """

    def __init__(self, sock: Any, stderr_limit: int) -> None:
        super().__init__(getattr(sock, "_sock", sock))
        self._io = sock                                   # keeps the hijacked response alive
        self._stdout = bytearray()
        self._left = 0                                    # payload bytes left in this chunk
        self._kind = 0
        self._eof = False
        self._stderr_limit = stderr_limit
        self.stderr = bytearray()

    @property
    def eof(self) -> bool:
        return self._eof

    def _recv_header(self) -> bytes | None:
        data = b""
        while len(data) < _MUX_HEADER.size:
            chunk = self._recv(_MUX_HEADER.size - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def _pump(self) -> None:
        """Receive one piece of a chunk; stdout bytes go to the read buffer."""
        if self._left == 0:
            header = self._recv_header()
            if header is None:
                self._eof = True
                return
            self._kind, self._left = _MUX_HEADER.unpack(header)
            return
        data = self._recv(min(self._left, _CHUNK))
        if not data:
            self._eof = True
            return
        self._left -= len(data)
        if self._kind == 1:
            self._stdout += data
        elif self._kind == 2:
            self.stderr += data
            del self.stderr[:-self._stderr_limit]

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes of stdout (all until EOF when ``n < 0``); fewer only at EOF."""
        while not self._eof and (n < 0 or len(self._stdout) < n):
            self._pump()
        n = len(self._stdout) if n < 0 else min(n, len(self._stdout))
        data = bytes(self._stdout[:n])
        del self._stdout[:n]
        return data

    def pump_for(self, seconds: float, until_eof: bool) -> None:
        """Take in what the container sent (its stderr, or its end) for at most ``seconds``: what is
        there now, or (``until_eof``) everything until the stream ends. Never waits for stdout."""
        self.deadline = time.monotonic() + seconds
        try:
            while not self._eof and (until_eof or self.ready()):
                self._pump()
        except (TimeoutError, OSError):
            pass

    def close(self) -> None:
        try:
            self._sock.close()
        finally:
            self._io.close()


# --- containers -------------------------------------------------------------


def worker_command(spec: WorkerSpec) -> list[str]:
    limits = spec.limits
    return ["python3", "-m", WORKER_MODULE, "--submission", SUBMISSION_MOUNT,
            "--module", spec.module, "--banned", ",".join(spec.banned_imports),
            "--output-file", "/tmp/student-output.log", "--output-kb", str(limits.output_kb),
            "--frame-mb", str(limits.frame_mb)]


def create_container(client: docker.DockerClient, image: str, submission_dir: Path,
                     limits: SandboxLimits, command: list[str], channel_dir: str | None = None) -> str:
    """Create (not start) one locked-down sandbox container; returns its id.

    Stdin stays open for one attached client (``StdinOnce``): when the grader's
    attachment goes away, even with the grader killed, the worker reads EOF and exits
    (with ``channel_dir``, the folder of the frames' socket, mounted read-only, its socket's end does).
    """
    _install_exit_handlers()
    memory = f"{limits.memory_mb}m"
    file_size = limits.file_size_mb * 2**20
    host_config = client.api.create_host_config(
        network_mode="none", read_only=True,
        tmpfs={"/tmp": f"rw,noexec,nosuid,nodev,size={limits.tmpfs_mb}m,mode=1777"},
        mounts=[Mount(target=SUBMISSION_MOUNT, source=str(submission_dir), type="bind", read_only=True),
                *([Mount(target=CHANNEL_MOUNT, source=channel_dir, type="bind", read_only=True)]
                  if channel_dir is not None else [])],
        mem_limit=memory, memswap_limit=memory, pids_limit=limits.pids,
        nano_cpus=int(limits.cpus * 1e9),
        ulimits=[Ulimit(name="nofile", soft=limits.open_files, hard=limits.open_files),
                 Ulimit(name="fsize", soft=file_size, hard=file_size),
                 Ulimit(name="core", soft=0, hard=0)],
        cap_drop=["ALL"], security_opt=["no-new-privileges"],
        log_config=LogConfig(type=LogConfig.types.NONE),   # frames are not logs
    )
    try:
        created = client.api.create_container(
            image, command=command, user=SANDBOX_USER, hostname="sandbox",
            stdin_open=True, detach=False, tty=False,    # detach=False: StdinOnce
            labels={LABEL: "1", OWNER_LABEL: _owner()}, host_config=host_config,
        )
    except docker.errors.ImageNotFound:
        raise SandboxError(f"sandbox image {image} not found",
                           hint="build it: python3 -m grader.sandbox.image") from None
    except docker.errors.APIError as err:
        raise SandboxError(f"cannot create the sandbox container: {err.explanation or err}",
                           hint=f"is the engine healthy? {DOCKER_HINT}") from None
    with _live_lock:
        _live[created["Id"]] = client
    return created["Id"]


def attach(client: docker.DockerClient, container_id: str, limits: SandboxLimits) -> AttachedStream:
    """Attach to a created container's stdin, stdout and stderr (before starting it)."""
    sock = client.api.attach_socket(
        container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    return AttachedStream(sock, stderr_limit=limits.output_kb * 1024)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def stage_readable(spec: WorkerSpec) -> tempfile.TemporaryDirectory:
    """A copy of the submission's staged files that the sandbox user can read (a staged dir may be 0700).

    The same files as every backend stages (``copy_submission``), not the whole folder.
    """
    if not spec.submission_dir.is_dir():
        raise SandboxError(f"submission directory {spec.submission_dir} does not exist")
    tmp = tempfile.TemporaryDirectory(prefix="grader-docker-")
    dest = Path(tmp.name) / "submission"
    dest.mkdir()
    copy_submission(spec, dest)
    for path in (dest, *dest.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return tmp


# --- cleanup of containers, also when the grader is interrupted ------------------------


def remove_container(client: docker.DockerClient, container_id: str) -> None:
    """Kill and remove a container; gone already is fine."""
    try:
        client.api.remove_container(container_id, force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as err:
        if err.status_code != 409:      # 409: removal already in progress
            raise
    finally:
        with _live_lock:
            _live.pop(container_id, None)


def _remove_live_containers() -> None:
    with _live_lock:
        live = list(_live.items())
    for container_id, client in live:
        try:
            remove_container(client, container_id)
        except docker.errors.DockerException:
            pass


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _install_exit_handlers() -> None:
    """Once: atexit removal, and SIGTERM -> SystemExit when nobody else handles SIGTERM."""
    if getattr(_install_exit_handlers, "done", False):
        return
    _install_exit_handlers.done = True  # type: ignore[attr-defined]
    atexit.register(_remove_live_containers)
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


def cleanup_stale_containers(client: docker.DockerClient | None = None, *,
                             everything: bool = False) -> int:
    """Remove sandbox containers left by graders that are gone (``everything``: all of them).

    A container is stale when its owner ran on this host and that pid is dead.
    Returns how many were removed.
    """
    client = client or docker_client()
    host = socket.gethostname()
    removed = 0
    for info in client.api.containers(all=True, filters={"label": f"{LABEL}=1"}):
        owner = info.get("Labels", {}).get(OWNER_LABEL, "")
        owner_host, _, pid = owner.rpartition(":")
        if not everything and not (owner_host == host and pid.isdigit()
                                   and not _pid_alive(int(pid))):
            continue
        remove_container(client, info["Id"])
        removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- the backend -------------------------------------------------------------------


class DockerSandbox:
    """A worker on one submission inside its own container (the ``Sandbox`` protocol).

    The image is ``image``, else ``spec.image``, else ``ensure_image()``'s.
    After a timeout or a crash the container is gone; ``start()`` (or
    the next ``request``) starts a fresh one, whose hello header is kept in ``hello``.
    """

    def __init__(self, spec: WorkerSpec, image: str | None = None,
                 client: docker.DockerClient | None = None,
                 command: list[str] | None = None) -> None:
        self.spec = spec
        self.limits = spec.limits
        self.hello: dict[str, Any] | None = None
        self._image = image or spec.image
        self._client = client
        self._command = command or worker_command(spec)
        self._staged: tempfile.TemporaryDirectory | None = None
        self._container_id: str | None = None
        self._stream: SocketStream | None = None       # the frames
        self._attached: AttachedStream | None = None   # the container's stderr, and its end

    @property
    def container_id(self) -> str | None:
        return self._container_id

    def __enter__(self) -> DockerSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- Sandbox protocol ----

    def start(self) -> dict[str, Any]:
        """Start a fresh container (removing any previous one); return the worker's hello.

        As with the local backend, a submission that hangs or kills the worker while it
        is imported gives a hello with ``import_ok`` False, not an exception.
        """
        self._discard()
        client = self._client = self._client or docker_client()
        self._image = self._image or _current_image(client)
        if self._staged is None:
            self._staged = stage_readable(self.spec)
        listener = Listener(owner=SANDBOX_IDS)
        try:
            self._container_id = create_container(
                client, self._image, Path(self._staged.name) / "submission", self.limits,
                [*self._command, "--connect", listener.container_path], channel_dir=listener.folder)
            self._attached = attach(client, self._container_id, self.limits)
            client.api.start(self._container_id)
            deadline = time.monotonic() + self.limits.startup_timeout_s
            try:
                self._stream = listener.accept(deadline, self._stopped)
            except ChannelError as err:
                return self._failed_hello("WorkerCrashed", str(self._crashed(f"the sandbox's worker failed to "
                                                                             f"start: {err}")))
            self.hello = self._read_hello()
        except BaseException:
            self._discard()
            raise
        finally:
            listener.close()
        return self.hello

    def request(self, header: dict[str, Any], arrays: Arrays,
                timeout: float) -> tuple[dict[str, Any], Arrays]:
        """One exchange within ``timeout`` s of host wall-clock; past it the container is killed."""
        data = encode_frame(header, arrays)   # a bad request is the grader's bug: raises ProtocolError
        if self._container_id is None:
            self.start()
        self._stream.deadline = time.monotonic() + timeout
        try:
            self._stream.write(data)
            frame = read_frame(self._stream, self.limits.frame_mb * 2**20, REPLY_HEADER_BYTES)
        except TimeoutError:
            self._discard()
            raise SandboxTimeout(f"no reply within {timeout:g} s; the worker was killed") from None
        except ProtocolError as err:
            raise self._crashed(f"the worker sent a malformed frame ({err})") from None
        except OSError as err:       # the container went away while we wrote or read
            raise self._crashed(f"the worker stopped talking ({err})") from None
        if frame is None:
            raise self._crashed("the worker died before it replied")
        return frame

    def close(self) -> None:
        """Remove the container and the staged copy of the submission. Idempotent."""
        try:
            self._discard()
        finally:
            if self._staged is not None:
                self._staged.cleanup()
                self._staged = None

    # ---- internals ----

    def _read_hello(self) -> dict[str, Any]:
        timeout = self.limits.startup_timeout_s
        self._stream.deadline = time.monotonic() + timeout
        try:
            frame = read_frame(self._stream, self.limits.frame_mb * 2**20, REPLY_HEADER_BYTES)
        except TimeoutError:
            self._discard()
            return self._failed_hello("TimeoutError", f"importing {self.spec.module}.py took longer "
                                      f"than {timeout:g} s (an infinite loop at import time?)")
        except (ProtocolError, OSError) as err:
            crash = self._crashed(f"the worker sent a malformed hello ({err})")
            return self._failed_hello("WorkerCrashed", str(crash))
        if frame is None or frame[0].get("type") != "hello":
            crash = self._crashed(f"the worker died while importing {self.spec.module}.py")
            return self._failed_hello("WorkerCrashed", str(crash))
        return frame[0]

    def _failed_hello(self, kind: str, message: str) -> dict[str, Any]:
        return {"type": "hello", "import_ok": False, "stdout": "",
                "error": {"type": kind, "message": message, "traceback": ""}}

    def _crashed(self, what: str) -> WorkerCrashed:
        """Remove the container and say how it ended, with the tail of its stderr."""
        detail = self._death_detail()
        self._discard()
        return WorkerCrashed(what + detail)

    def _stopped(self) -> bool:
        """Whether the container has stopped, from its attached stream (read if it has something)."""
        if self._attached is None:
            return True
        self._attached.pump_for(1.0, until_eof=False)
        return self._attached.eof

    def _death_detail(self) -> str:
        """Why the container stopped (exit code, out of memory) and its stderr's tail."""
        parts = []
        try:
            if self._stream is None or self._stream.eof:   # the worker is exiting: let it finish
                if self._attached is not None:
                    self._attached.pump_for(3.0, until_eof=True)   # its stderr, to its end
                self._client.api.wait(self._container_id, timeout=5)
            state = self._client.api.inspect_container(self._container_id)["State"]
            if state.get("OOMKilled"):
                parts.append(f": killed, out of memory (limit {self.limits.memory_mb} MB)")
            elif not state.get("Running"):
                parts.append(f": exit code {state.get('ExitCode')}")
        except Exception:  # noqa: BLE001 - gone, or still running past the wait: no detail
            pass
        stderr = bytes(self._attached.stderr).decode("utf-8", "replace").strip() if self._attached else ""
        if stderr:
            parts.append(f"\nits last output:\n{stderr[-TAIL_CHARS:]}")
        return "".join(parts)

    def _discard(self) -> None:
        """Kill and remove the container; close the stream. Keeps the staged copy."""
        stream, self._stream = self._stream, None
        attached, self._attached = self._attached, None
        container_id, self._container_id = self._container_id, None
        try:
            for open_stream in (stream, attached):
                if open_stream is not None:
                    open_stream.close()
        finally:
            if container_id is not None:
                remove_container(self._client, container_id)


_images: dict[str, str] = {}   # engine address -> image tag, checked once per grader process


def _current_image(client: docker.DockerClient) -> str:
    engine = client.api.base_url
    if engine not in _images:
        _images[engine] = ensure_image(client)
    return _images[engine]
