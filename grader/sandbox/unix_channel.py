"""A Unix socket between the grader and one container's worker: frames without the engine in between.

Docker's attach stream carries every byte through the engine (dockerd, the container's shim) and
back out, several copies and context switches per frame: for a timed run at matmul sizes that cost
more than the student's work, and the engine's CPU was a tenth of a batch. Instead the grader
listens on a socket in a private folder, mounts the folder into the container (read-only), and the
worker connects to it first thing, before it imports the submission. The grader accepts that one
connection and removes the socket file, so nothing else can connect later.

The folder is 0711 and the socket's name random; the socket is owned by the sandbox user (0600)
where the grader may ``chown``, else 0666 inside that folder.
"""

from __future__ import annotations

import os
import secrets
import select
import shutil
import socket
import tempfile
import time
from typing import Callable

MOUNT = "/run/grader"


class ChannelError(Exception):
    """The worker did not connect (it died first, or the deadline passed)."""


class Listener:
    """A one-shot listening socket in a fresh folder, for one container start."""

    def __init__(self, owner: tuple[int, int] | None = None) -> None:
        self.folder = tempfile.mkdtemp(prefix="grader-channel-")
        self.name = f"frames-{secrets.token_hex(8)}.sock"
        path = os.path.join(self.folder, self.name)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.bind(path)
            self._sock.listen(1)
            os.chmod(self.folder, 0o711)
            try:
                if owner is None:
                    raise PermissionError
                os.chown(path, *owner)
                os.chmod(path, 0o600)
            except PermissionError:     # not root: the random name in a 0711 folder guards it
                os.chmod(path, 0o666)
        except BaseException:
            self.close()
            raise

    @property
    def container_path(self) -> str:
        return f"{MOUNT}/{self.name}"

    def accept(self, deadline: float, gone: Callable[[], bool]) -> SocketStream:
        """The worker's connection; ``gone()`` says the container has stopped (then no one will come)."""
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChannelError("the worker did not connect in time")
                ready, _, _ = select.select([self._sock], [], [], min(left, 0.05))
                if ready:
                    conn, _ = self._sock.accept()
                    return SocketStream(conn)
                if gone():
                    raise ChannelError("the worker stopped before it connected")
        finally:
            self.close()

    def close(self) -> None:
        """Stop listening and remove the socket file and its folder (idempotent)."""
        try:
            self._sock.close()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


class DeadlineSocket:
    """A socket whose every operation honours ``deadline`` (a ``time.monotonic()`` value) and raises
    ``TimeoutError`` past it; the frames' socket and Docker's attach stream are both one."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.deadline: float | None = None

    def _arm(self) -> None:
        if self.deadline is None:
            self._sock.settimeout(None)
            return
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline passed")
        self._sock.settimeout(remaining)

    def _recv(self, n: int) -> bytes:
        self._arm()
        try:
            return self._sock.recv(n)
        except socket.timeout:
            raise TimeoutError("deadline passed") from None

    def ready(self) -> bool:
        """Whether a read would not block (data, or the end of the stream)."""
        return bool(select.select([self._sock], [], [], 0)[0])

    def write(self, data: bytes) -> int:
        self._arm()
        try:
            self._sock.sendall(data)
        except socket.timeout:
            raise TimeoutError("deadline passed") from None
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered on the way in."""


class SocketStream(DeadlineSocket):
    """Binary file-like view of the connected frames' socket."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.eof = False

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end of the stream)."""
        data = self._recv(n)
        if not data:
            self.eof = True
        return data

    def close(self) -> None:
        self._sock.close()
