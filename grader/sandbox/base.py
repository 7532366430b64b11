"""The one interface every sandbox backend implements, and the limits they enforce."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one worker; defaults are safe for the lab."""

    memory_mb: int = 1024          # address space (local) / memory = memory+swap (docker)
    cpu_seconds: int = 600         # RLIMIT_CPU of the worker process (local)
    cpus: float = 1.0              # docker CPU quota
    pids: int = 64                 # docker pids limit / RLIMIT_NPROC (local, best effort)
    file_size_mb: int = 16         # RLIMIT_FSIZE
    open_files: int = 64           # RLIMIT_NOFILE
    tmpfs_mb: int = 64             # docker scratch tmpfs size
    output_kb: int = 64            # captured student stdout/stderr kept per request
    frame_mb: int = 64             # largest protocol frame accepted from the worker
    startup_timeout_s: float = 30.0


@dataclass(frozen=True)
class WorkerSpec:
    """What a backend needs to start a worker on a submission."""

    submission_dir: Path                     # staged submission: holds autograd.py
    module: str = "autograd"                 # the module the worker imports
    banned_imports: tuple[str, ...] = ("torch",)
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    trusted: bool = False                    # the staff reference: its files must stay unreadable to submissions
    image: str | None = None                 # the sandbox image tag, for backends that run one (docker)


class SandboxTimeout(Exception):
    """A request exceeded its timeout; the worker was killed (the backend restarts it)."""


class WorkerCrashed(Exception):
    """The worker died or sent something that is not a valid frame."""


class Sandbox(Protocol):
    """A running worker on one submission. The grader talks to it through frames only."""

    def start(self) -> dict[str, Any]:
        """Start the worker; returns its hello header (import ok/error, captured output)."""

    def request(self, header: dict[str, Any], arrays: Arrays, timeout: float) -> tuple[dict[str, Any], Arrays]:
        """Send one request; wait at most ``timeout`` seconds of host wall-clock for the reply."""

    def close(self) -> None:
        """Stop the worker and release everything (container removed, temp dirs deleted)."""
