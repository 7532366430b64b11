"""The docker sandbox backend, for real: hardening, limits, timeouts, no leaked containers.

Hardening is checked from inside a container made exactly as for a submission (a
``DockerSandbox`` whose command is a probe that speaks the protocol and executes the
code each request sends, instead of the worker). Without a Docker engine these tests skip, unless
``GRADER_REQUIRE_DOCKER=1`` (as in CI): then they fail.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from grader.errors import SandboxError
from grader.sandbox.protocol import write_frame
from grader.sandbox.base import SandboxLimits, SandboxTimeout, WorkerCrashed, WorkerSpec

docker = pytest.importorskip("docker")

from grader.sandbox import image as image_mod  # noqa: E402 - after the importorskip
from grader.sandbox.docker_backend import (  # noqa: E402
    LABEL, OWNER_LABEL, AttachedStream, DockerSandbox, cleanup_stale_containers,
)

# Runs in the container in place of the worker: hello, then per request exec(header["code"])
# and reply {"result": result}, echoing the request's arrays.
PROBE = r"""
import os, socket, sys
from grader.sandbox.protocol import read_frame, write_frame
channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
channel.connect(sys.argv[sys.argv.index("--connect") + 1])   # the frames' socket, as the worker does
out, inp = channel.makefile("wb"), channel.makefile("rb")
os.dup2(2, 1)
write_frame(out, {"type": "hello", "import_ok": True})
while True:
    frame = read_frame(inp, 1 << 30)
    if frame is None:
        break
    header, arrays = frame
    scope = {"result": None, "out": out}
    exec(header.get("code", ""), scope)
    write_frame(out, {"type": "result", "result": scope["result"]}, arrays)
"""

SMALL = SandboxLimits(memory_mb=256, pids=32, tmpfs_mb=16, startup_timeout_s=60.0)


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def client():
    try:
        return image_mod.docker_client()
    except SandboxError as err:
        if os.environ.get("GRADER_REQUIRE_DOCKER") == "1":
            pytest.fail(f"GRADER_REQUIRE_DOCKER=1 but Docker is unreachable: {err} ({err.hint})")
        pytest.skip(f"no Docker engine: {err}")


@pytest.fixture(scope="session")
def sandbox_image(client) -> str:
    return image_mod.ensure_image(client)


@pytest.fixture
def submission(tmp_path: Path) -> Path:
    sub = tmp_path / "submission"
    sub.mkdir(mode=0o700)           # as staged by the grader: private to its user
    (sub / "autograd.py").write_text("print('importing the submission')\nVALUE = 42\n")
    return sub


@pytest.fixture(autouse=True)
def no_leaked_containers(request):
    """After every docker test, this process owns no container."""
    yield
    if "client" not in request.fixturenames:
        return
    cli = request.getfixturevalue("client")
    owner = f"{socket.gethostname()}:{os.getpid()}"
    left = cli.api.containers(all=True, filters={"label": f"{OWNER_LABEL}={owner}"})
    assert left == [], f"leaked containers: {[c['Id'][:12] for c in left]}"


@pytest.fixture
def probe(client, sandbox_image, submission):
    """A started probe sandbox; ``probe(code)`` runs code inside it and returns ``result``."""
    box = DockerSandbox(WorkerSpec(submission, limits=SMALL), image=sandbox_image, client=client,
                        command=["python3", "-c", PROBE])
    box.start()

    def run(code: str, timeout: float = 30.0, arrays=None):
        header, _ = box.request({"code": code}, arrays or {}, timeout=timeout)
        return header["result"]

    run.box = box
    yield run
    box.close()


def _container_exists(cli, container_id: str) -> bool:
    try:
        cli.api.inspect_container(container_id)
    except docker.errors.NotFound:
        return False
    return True


# --- the image ------------------------------------------------------------------------


@pytest.mark.docker
def test_ensure_image_is_idempotent_and_fast(client, sandbox_image):
    start = time.monotonic()
    assert image_mod.ensure_image(client) == sandbox_image
    assert time.monotonic() - start < 10
    assert sandbox_image.startswith(f"{image_mod.IMAGE_REPO}:")
    labels = client.images.get(sandbox_image).labels
    assert labels[LABEL] == "sandbox"


@pytest.mark.docker
def test_image_holds_numpy_and_no_torch_nor_compilers(probe):
    result = probe(
        "import importlib.util, shutil, numpy\n"
        "result = {'numpy': numpy.__version__, 'torch': importlib.util.find_spec('torch') is not None,\n"
        "          'compilers': [c for c in ('gcc', 'cc', 'g++', 'clang', 'tcc') if shutil.which(c)],\n"
        "          'tests': [p for p in ('/opt/grader/assignments', '/opt/grader/tests')\n"
        "                    if __import__('os').path.exists(p)]}"
    )
    assert result == {"numpy": image_mod.NUMPY_VERSION, "torch": False, "compilers": [], "tests": []}


# --- hardening, seen from inside ------------------------------------------------------


@pytest.mark.docker
def test_runs_as_the_unprivileged_sandbox_user(probe):
    assert probe("import os; result = [os.getuid(), os.getgid(), os.getgroups()]") == [10001, 10001, [10001]]


@pytest.mark.docker
def test_has_no_capabilities_and_no_new_privileges(probe):
    status = probe("result = open('/proc/self/status').read()")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[cap].strip(), 16) == 0, cap
    assert fields["NoNewPrivs"].strip() == "1"


@pytest.mark.docker
def test_has_no_network_but_loopback(probe):
    # Looked at, never tried: no packet is sent anywhere.
    result = probe(
        "import os\n"
        "routes = open('/proc/net/route').read().splitlines()[1:]\n"
        "result = [sorted(os.listdir('/sys/class/net')), routes]"
    )
    assert result == [["lo"], []]


@pytest.mark.docker
def test_root_file_system_is_read_only_and_tmp_is_a_small_noexec_tmpfs(probe):
    result = probe(
        "import errno, os\n"
        "def attempt(path):\n"
        "    try:\n"
        "        open(path, 'w').close()\n"
        "    except OSError as e:\n"
        "        return errno.errorcode[e.errno]\n"
        "    return 'written'\n"
        "mounts = {l.split()[1]: l.split()[3] for l in open('/proc/mounts')}\n"
        "result = [attempt('/etc/evil'), attempt('/opt/grader/evil.py'), attempt('/tmp/ok'), mounts['/tmp']]"
    )
    assert result[:3] == ["EROFS", "EROFS", "written"]
    assert {"noexec", "nosuid", "nodev", f"size={SMALL.tmpfs_mb * 1024}k"} <= set(result[3].split(","))


@pytest.mark.docker
def test_submission_is_mounted_read_only(probe):
    result = probe(
        "import errno, os\n"
        "source = open('/submission/autograd.py').read()\n"
        "try:\n"
        "    open('/submission/autograd.py', 'a').close()\n"
        "    outcome = 'written'\n"
        "except OSError as e:\n"
        "    outcome = errno.errorcode[e.errno]\n"
        "mounts = {l.split()[1]: l.split()[3] for l in open('/proc/mounts')}\n"
        "result = [source.splitlines()[1], outcome, sorted(os.listdir('/submission')), mounts['/submission']]"
    )
    assert result[:3] == ["VALUE = 42", result[1], ["autograd.py"]]
    assert result[1] in ("EROFS", "EACCES")         # not the owner, and a read-only mount
    assert "ro" in result[3].split(",")


@pytest.mark.docker
def test_memory_bomb_is_killed_and_reported(probe, client):
    box = probe.box
    container_id = box.container_id
    with pytest.raises(WorkerCrashed, match="out of memory"):
        probe("chunks = []\nwhile True:\n    chunks.append(b'x' * 16 * 2**20)  # written, so resident",
              timeout=60)
    assert not _container_exists(client, container_id)
    assert probe("result = 1 + 1") == 2            # the next request gets a fresh container


@pytest.mark.docker
def test_pids_limit_stops_a_fork_bomb(probe):
    result = probe(
        "import os, time\n"
        "children = 0\n"
        "try:\n"
        "    for _ in range(200):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(30); os._exit(0)\n"
        "        children += 1\n"
        "except OSError:\n"
        "    pass\n"
        "result = children"
    )
    assert result < SMALL.pids


# --- timeouts, crashes, cleanup -------------------------------------------------------


@pytest.mark.docker
def test_timeout_kills_and_removes_the_container(probe, client):
    box = probe.box
    container_id = box.container_id
    start = time.monotonic()
    with pytest.raises(SandboxTimeout):
        probe("import time; time.sleep(60)", timeout=1.0)
    assert time.monotonic() - start < 15
    assert box.container_id is None
    assert not _container_exists(client, container_id)
    assert probe("result = 'alive'") == "alive"     # restarted on the next request
    assert box.container_id != container_id


@pytest.mark.docker
def test_close_removes_the_container_and_is_idempotent(probe, client):
    box = probe.box
    container_id = box.container_id
    box.close()
    box.close()
    assert not _container_exists(client, container_id)


@pytest.mark.docker
def test_a_malformed_reply_is_a_worker_crash(probe, client):
    container_id = probe.box.container_id
    with pytest.raises(WorkerCrashed, match="malformed"):
        probe("import os; out.write(b'not a frame at all, just noise'); out.flush(); os._exit(0)")
    assert not _container_exists(client, container_id)


@pytest.mark.docker
def test_binary_payloads_cross_unchanged(probe):
    # Every byte value, Docker's detach keys (ctrl-p ctrl-q) included, and a payload larger
    # than one multiplexed chunk.
    arrays = {"bytes": np.arange(256, dtype=np.uint8).repeat(3),
              "big": np.random.default_rng(0).random(300_000)}
    header, echoed = probe.box.request({"code": ""}, arrays, timeout=30)
    assert header["result"] is None
    for key, value in arrays.items():
        np.testing.assert_array_equal(echoed[key], value)


@pytest.mark.docker
def test_real_worker_says_hello_despite_prints_at_import(client, sandbox_image, submission):
    with DockerSandbox(WorkerSpec(submission, limits=SMALL), image=sandbox_image, client=client) as box:
        hello = box.start()
        assert hello["type"] == "hello"
        assert hello["import_ok"] is True, hello
        assert "importing the submission" in hello["stdout"]
        assert hello["numpy"] == image_mod.NUMPY_VERSION


@pytest.mark.docker
def test_real_worker_reports_an_import_hang_as_a_failed_hello(client, sandbox_image, submission):
    (submission / "autograd.py").write_text("while True:\n    pass\n")
    limits = SandboxLimits(memory_mb=256, startup_timeout_s=3.0)
    with DockerSandbox(WorkerSpec(submission, limits=limits), image=sandbox_image, client=client) as box:
        hello = box.start()
        assert hello["import_ok"] is False
        assert hello["error"]["type"] == "TimeoutError"
        assert box.container_id is None


@pytest.mark.docker
def test_the_frames_socket_takes_one_connection_and_is_gone_after_it(probe):
    """The worker connects to the mounted socket before the submission is imported; after that one
    connection the socket file (and its host folder) is gone, so code in the sandbox cannot reach the
    grader by another connection, nor replace the worker's."""
    result = probe(
        "import socket, sys, os\n"
        "path = sys.argv[sys.argv.index('--connect') + 1]\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "try:\n    s.connect(path); result = 'connected'\nexcept OSError as e:\n    result = type(e).__name__\n"
        "try:\n    listing = os.listdir(os.path.dirname(path))\nexcept OSError as e:\n    listing = type(e).__name__\n"
        "result = [result, os.path.exists(path), listing]\n")
    assert result == ["FileNotFoundError", False, "PermissionError"]   # and its folder cannot be listed


@pytest.mark.docker
def test_a_worker_that_writes_to_stderr_before_it_connects_still_starts(client, sandbox_image, submission):
    """Output on the attached stderr while the worker starts is taken in, not mistaken for its end."""
    slow = "import sys, time\nprint('warming up', file=sys.stderr, flush=True)\ntime.sleep(2)\n" + PROBE
    with DockerSandbox(WorkerSpec(submission, limits=SMALL), image=sandbox_image, client=client,
                       command=["python3", "-c", slow]) as box:
        assert box.start().get("import_ok") is True
        assert box.request({"code": "result = 7"}, {}, timeout=30)[0]["result"] == 7


@pytest.mark.docker
def test_a_worker_that_dies_before_it_connects_is_a_failed_hello_at_once(client, sandbox_image, submission):
    box = DockerSandbox(WorkerSpec(submission, limits=SMALL), image=sandbox_image, client=client,
                        command=["python3", "-c", "import sys; print('broken image', file=sys.stderr); sys.exit(3)"])
    started = time.monotonic()
    try:
        hello = box.start()
    finally:
        box.close()
    assert time.monotonic() - started < 10            # not the 60 s startup timeout
    assert hello["import_ok"] is False and "stopped before it connected" in hello["error"]["message"]
    assert "broken image" in hello["error"]["message"]


@pytest.mark.docker
def test_containers_of_a_killed_grader_are_cleaned_up(client, sandbox_image, submission):
    # A grader killed outright (SIGKILL) leaves its container behind...
    code = ("import sys, time; from pathlib import Path\n"
            "from grader.sandbox.base import WorkerSpec\n"
            "from grader.sandbox.docker_backend import DockerSandbox\n"
            f"box = DockerSandbox(WorkerSpec(Path({str(submission)!r})), image={sandbox_image!r})\n"
            "box.start(); print(box.container_id, flush=True); time.sleep(120)\n")
    grader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        container_id = grader.stdout.readline().strip()
        assert container_id
    finally:
        grader.kill()
        grader.wait()
    assert _container_exists(client, container_id)
    # ...which the sweep removes, sparing containers of graders still alive.
    with DockerSandbox(WorkerSpec(submission, limits=SMALL), image=sandbox_image, client=client,
                       command=["python3", "-c", PROBE]) as mine:
        mine.start()
        assert cleanup_stale_containers(client) >= 1
        assert not _container_exists(client, container_id)
        assert _container_exists(client, mine.container_id)


@pytest.mark.docker
def test_sigterm_removes_the_container(client, sandbox_image, submission):
    code = ("import time; from pathlib import Path\n"
            "from grader.sandbox.base import WorkerSpec\n"
            "from grader.sandbox.docker_backend import DockerSandbox\n"
            f"box = DockerSandbox(WorkerSpec(Path({str(submission)!r})), image={sandbox_image!r})\n"
            "box.start(); print(box.container_id, flush=True); time.sleep(120)\n")
    grader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    container_id = grader.stdout.readline().strip()
    grader.terminate()
    assert grader.wait(timeout=30) == 128 + 15
    assert container_id and not _container_exists(client, container_id)


# --- without an engine ------------------------------------------------------------------


def test_unreachable_engine_is_a_sandbox_error_with_a_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(SandboxError) as info:
        image_mod.docker_client()
    assert "scripts/install-docker.sh" in info.value.hint


# --- the stream adapter, on a socket pair -----------------------------------------------


def _mux(kind: int, data: bytes) -> bytes:
    return bytes([kind, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def test_attached_stream_demultiplexes_stdout_and_keeps_a_capped_stderr():
    ours, theirs = socket.socketpair()
    stream = AttachedStream(ours, stderr_limit=8)
    wire = _mux(1, b"hel") + _mux(2, b"warning: 0123456789") + _mux(1, b"lo") + _mux(1, b"!")
    for i in range(len(wire)):                      # byte by byte: headers split anywhere
        theirs.sendall(wire[i:i + 1])
    theirs.close()
    assert stream.read(5) == b"hello"
    assert stream.read() == b"!"
    assert stream.read(1) == b""
    assert stream.eof
    assert bytes(stream.stderr) == b"23456789"
    stream.close()


def test_attached_stream_round_trips_a_frame_and_honours_its_deadline():
    from grader.sandbox.protocol import read_frame

    ours, theirs = socket.socketpair()
    stream = AttachedStream(ours, stderr_limit=64)
    write_frame(stream, {"type": "ping"}, {"x": np.arange(3.0)})
    sent = theirs.recv(1 << 16)
    theirs.sendall(_mux(1, sent[:10]) + _mux(1, sent[10:]))
    header, arrays = read_frame(stream, 1 << 20)
    assert header == {"type": "ping"} and arrays["x"].tolist() == [0.0, 1.0, 2.0]
    stream.deadline = time.monotonic() + 0.2
    with pytest.raises(TimeoutError):
        stream.read(1)
    stream.close()
    theirs.close()
