"""The sandbox image: built offline, tagged by the hash of everything that goes into it.

No container registry is needed. The build context is assembled in a temp dir from
the repo's ``Dockerfile``, NumPy wheels downloaded on the host (cached under
``~/.cache/autograd-grader/wheels``) and the worker files (``WORKER_FILES``). The
base is ``python:3.11-slim`` when it is present locally (or can be pulled), else a
Debian bookworm base made here with ``debootstrap`` + ``docker import`` and kept
under its own tag, so it is made once per machine, from the mirror
``grader.sandbox.debian_mirror`` chooses (``--mirror``, ``$GRADER_DEBIAN_MIRROR``, this
machine's apt sources, else deb.debian.org). The base records that mirror in its labels
(``autograd-grader.debian-mirror``, ``...-source``), and the sandbox image built on it
repeats it (``autograd-grader.base.debian-mirror``) next to its other inputs.

``ensure_image()`` is idempotent: when nothing changed it only hashes the inputs
and finds the tag. Command line: ``python3 -m grader.sandbox.image [--rebuild]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import docker.utils

from grader.errors import SandboxError
from grader.sandbox.debian_mirror import Mirror, choose_mirror
from grader.sandbox.worker_files import WORKER_FILES

IMAGE_REPO = "autograd-grader-sandbox"
PYTHON_SLIM = "python:3.11-slim"
DEBOOTSTRAP_BASE = "autograd-grader-base:bookworm-python3.11"
NUMPY_VERSION = "2.4.6"          # the host's NumPy: the reference runs on the same
PYTHON_VERSION = "3.11"
LABEL = "autograd-grader"         # every image and container of the grader carries it
DOCKER_HINT = "bash scripts/install-docker.sh"
PULL_TIMEOUT_S = 60

# Docker's architecture name -> the wheel platform tags that fit a glibc >= 2.28 base.
WHEEL_PLATFORMS = {
    "x86_64": ("manylinux_2_28_x86_64", "manylinux2014_x86_64"),
    "aarch64": ("manylinux_2_28_aarch64", "manylinux2014_aarch64"),
}


def cache_dir() -> Path:
    """Where downloaded wheels are kept (``$GRADER_CACHE_DIR`` or ``~/.cache/autograd-grader``)."""
    root = os.environ.get("GRADER_CACHE_DIR") or Path.home() / ".cache" / "autograd-grader"
    return Path(root)


def repo_root() -> Path:
    """The directory holding ``grader/`` (a checkout, or site-packages when installed)."""
    return Path(__file__).resolve().parents[2]


def docker_client(timeout: int = 120) -> docker.DockerClient:
    """A client for the local engine, or a ``SandboxError`` that says how to get one."""
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except docker.errors.DockerException as err:
        raise SandboxError(
            f"cannot reach the Docker engine ({_first_line(err)})",
            hint=f"start one with: {DOCKER_HINT}",
        ) from None
    return client


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# --- inputs: wheels, worker files, base image ----------------------------------------


def numpy_wheels(arch: str, version: str = NUMPY_VERSION) -> list[Path]:
    """The NumPy wheel for the image's Python and ``arch``, downloaded once into the cache."""
    if arch not in WHEEL_PLATFORMS:
        raise SandboxError(f"no wheel platform known for Docker architecture {arch!r}")
    dest = cache_dir() / "wheels" / f"numpy-{version}-cp311-{arch}"
    wheels = sorted(dest.glob(f"numpy-{version}-cp311-*.whl"))
    if wheels:
        return wheels
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", f"numpy=={version}", "--no-deps",
           "--only-binary=:all:", "--python-version", PYTHON_VERSION,
           "--implementation", "cp", "--abi", "cp311", "--dest", str(dest)]
    for platform in WHEEL_PLATFORMS[arch]:
        cmd += ["--platform", platform]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob(f"numpy-{version}-cp311-*.whl"))
    if done.returncode != 0 or not wheels:
        raise SandboxError(
            f"could not download the numpy=={version} wheel for {arch}: "
            f"{(done.stderr or done.stdout).strip()[-500:]}",
            hint="check that PyPI is reachable (pip download numpy), then try again",
        )
    return wheels


def worker_sources(root: Path) -> dict[str, bytes]:
    """The worker files' contents, by repo-relative path; missing ones are an error."""
    missing = [rel for rel in WORKER_FILES if not (root / rel).is_file()]
    if missing:
        raise SandboxError(
            f"worker files missing from {root}: {', '.join(missing)}",
            hint="build the image from a complete checkout of the grader",
        )
    return {rel: (root / rel).read_bytes() for rel in WORKER_FILES}


def _local_image(client: docker.DockerClient, ref: str):
    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def _try_pull(ref: str) -> bool:
    repository, tag = docker.utils.parse_repository_tag(ref)
    try:
        docker.from_env(timeout=PULL_TIMEOUT_S).images.pull(repository, tag=tag or "latest")
    except docker.errors.DockerException:
        return False
    return True


def resolve_base(client: docker.DockerClient, base: str = "auto", mirror: str | None = None) -> str:
    """The base image's reference, made available locally.

    ``base``: ``auto`` (python:3.11-slim if local, else the debootstrap base if
    local, else a pull of python:3.11-slim, else debootstrap), ``debootstrap``,
    or any image reference (used when local or pullable). ``mirror``: see ``choose_mirror``.
    """
    if base == "debootstrap":
        return ensure_debootstrap_base(client, mirror=mirror)
    if base != "auto":
        if _local_image(client, base) or _try_pull(base):
            return base
        raise SandboxError(f"base image {base!r} is neither local nor pullable",
                           hint="use --base auto (builds a Debian base offline)")
    for ref in (PYTHON_SLIM, DEBOOTSTRAP_BASE):
        if _local_image(client, ref):
            return ref
    if _try_pull(PYTHON_SLIM):
        return PYTHON_SLIM
    return ensure_debootstrap_base(client, mirror=mirror)


# --- the debootstrap base ----------------------------------------------------------


MIRROR_LABEL = f"{LABEL}.debian-mirror"


def ensure_debootstrap_base(client: docker.DockerClient, rebuild: bool = False, mirror: str | None = None) -> str:
    """The Debian bookworm + python3 base, made with debootstrap only when its tag is absent.

    ``mirror`` (else ``choose_mirror()``'s) is printed and kept in the base's labels.
    """
    if not rebuild and _local_image(client, DEBOOTSTRAP_BASE):
        return DEBOOTSTRAP_BASE
    if shutil.which("debootstrap") is None:
        raise SandboxError("no base image for the sandbox, and debootstrap is not installed",
                           hint="apt-get install -y debootstrap (or: docker pull python:3.11-slim)")
    if os.geteuid() != 0:
        raise SandboxError("making the sandbox's base image with debootstrap needs root",
                           hint="sudo python3 -m grader.sandbox.image (or: docker pull python:3.11-slim)")
    chosen = choose_mirror(mirror)
    with tempfile.TemporaryDirectory(prefix="grader-rootfs-") as tmp:
        rootfs, tarball = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
        _debootstrap(rootfs, chosen)
        _trim_rootfs(rootfs)
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."],
                       check=True)
        repository, _, tag = DEBOOTSTRAP_BASE.partition(":")
        client.api.import_image(src=str(tarball), repository=repository, tag=tag, changes=base_changes(chosen))
    return DEBOOTSTRAP_BASE


def base_changes(mirror: Mirror) -> list[str]:
    """The Dockerfile lines ``docker import`` applies to the debootstrap base (its mirror among its labels)."""
    return ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8", f"LABEL {LABEL}=base", f"LABEL {MIRROR_LABEL}={json.dumps(mirror.url)}",
            f"LABEL {MIRROR_LABEL}-source={json.dumps(mirror.source)}", 'CMD ["python3"]']


def _debootstrap(rootfs: Path, mirror: Mirror) -> None:
    print(f"grader: making the sandbox base with debootstrap from {mirror.describe()} (about a minute)...",
          file=sys.stderr)
    cmd = ["debootstrap", "--variant=minbase", "--include=python3,python3-pip",
           "bookworm", str(rootfs), mirror.url]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
        raise SandboxError(f"debootstrap failed:\n{tail}",
                           hint=f"check that {mirror.url} is reachable, or choose another with --mirror URL "
                                "(or $GRADER_DEBIAN_MIRROR)")


def _trim_rootfs(rootfs: Path) -> None:
    """Drop what a sandbox never needs: apt's caches and lists, docs, man pages, locales."""
    for rel in ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                "usr/share/locale", "usr/share/info"):
        target = rootfs / rel
        if target.is_dir():
            shutil.rmtree(target)
            target.mkdir()


# --- build context, hash, build -----------------------------------------------------


@dataclass(frozen=True)
class BuildInputs:
    """Everything that goes into the image; its hash names the image."""

    dockerfile: bytes
    worker: dict[str, bytes]
    wheels: tuple[Path, ...]
    base_ref: str
    base_id: str
    numpy_version: str = NUMPY_VERSION
    base_mirror: str = ""       # the Debian mirror a debootstrap base was made from; the base id covers it

    def digest(self) -> str:
        h = hashlib.sha256()

        def add(kind: str, name: str, data: bytes) -> None:
            h.update(f"{kind}\0{name}\0{len(data)}\0".encode())
            h.update(data)

        add("dockerfile", "Dockerfile", self.dockerfile)
        for rel in sorted(self.worker):
            add("worker", rel, self.worker[rel])
        for wheel in sorted(self.wheels, key=lambda p: p.name):
            add("wheel", wheel.name, wheel.read_bytes())
        add("base", "id", self.base_id.encode())     # by id: any name of the same base is alike
        add("arg", "NUMPY_VERSION", self.numpy_version.encode())
        return h.hexdigest()

    def tag(self) -> str:
        return f"{IMAGE_REPO}:{self.digest()[:12]}"


def collect_inputs(client: docker.DockerClient, base: str = "auto",
                   root: Path | None = None, mirror: str | None = None) -> BuildInputs:
    root = root or repo_root()
    dockerfile = root / "Dockerfile"
    if not dockerfile.is_file():
        raise SandboxError(f"no Dockerfile in {root}",
                           hint="build the image from a checkout of the grader's repository")
    worker = worker_sources(root)
    base_ref = resolve_base(client, base, mirror)
    base_image = client.images.get(base_ref)
    arch = client.info().get("Architecture", "x86_64")
    return BuildInputs(dockerfile=dockerfile.read_bytes(), worker=worker,
                       wheels=tuple(numpy_wheels(arch)), base_ref=base_ref, base_id=base_image.id,
                       base_mirror=(base_image.labels or {}).get(MIRROR_LABEL, ""))


def assemble_context(inputs: BuildInputs, dest: Path) -> None:
    """Write the build context: Dockerfile, wheels/, worker/<repo-relative paths>."""
    (dest / "Dockerfile").write_bytes(inputs.dockerfile)
    (dest / "wheels").mkdir()
    for wheel in inputs.wheels:
        shutil.copy2(wheel, dest / "wheels" / wheel.name)
    for rel, data in inputs.worker.items():
        target = dest / "worker" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def build_image(client: docker.DockerClient, inputs: BuildInputs) -> str:
    """Build the image offline (no pull, no network in RUN steps) and tag it."""
    tag = inputs.tag()
    with tempfile.TemporaryDirectory(prefix="grader-image-") as tmp:
        assemble_context(inputs, Path(tmp))
        try:
            client.images.build(
                path=tmp, tag=tag, pull=False, rm=True, forcerm=True, network_mode="none",
                buildargs={"BASE_IMAGE": inputs.base_ref, "NUMPY_VERSION": inputs.numpy_version},
                labels={LABEL: "sandbox", f"{LABEL}.inputs": inputs.digest(),
                        f"{LABEL}.base": inputs.base_ref,
                        **({f"{LABEL}.base.debian-mirror": inputs.base_mirror} if inputs.base_mirror else {})},
            )
        except docker.errors.BuildError as err:
            log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in err.build_log)
            raise SandboxError(f"building the sandbox image failed: {err.msg}\n{log[-1500:]}",
                               hint="fix the Dockerfile or the worker files, then rebuild") from None
        except docker.errors.APIError as err:
            raise SandboxError(f"building the sandbox image failed: {_first_line(err)}",
                               hint=f"is the engine healthy? {DOCKER_HINT}") from None
    client.images.get(tag).tag(IMAGE_REPO, "latest")
    remove_old_images(client, keep=tag)
    return tag


def remove_old_images(client: docker.DockerClient, keep: str) -> list[str]:
    """Untag earlier builds of the sandbox image (best effort: an image in use stays)."""
    keep_id = client.images.get(keep).id
    removed = []
    for image in client.images.list(name=IMAGE_REPO):
        if image.id == keep_id:
            continue
        for tag in image.tags:
            try:
                client.images.remove(tag, noprune=False)
                removed.append(tag)
            except docker.errors.APIError:
                pass
    return removed


def ensure_image(client: docker.DockerClient | None = None, *, base: str | None = None,
                 rebuild: bool = False, root: Path | None = None, mirror: str | None = None) -> str:
    """The tag of an up-to-date sandbox image, built only when its inputs changed.

    ``base``: see ``resolve_base``; default ``$GRADER_SANDBOX_BASE``, else ``auto``.
    ``mirror``: the Debian mirror, should a debootstrap base have to be made (``choose_mirror``).
    """
    client = client or docker_client()
    base = base or os.environ.get("GRADER_SANDBOX_BASE") or "auto"
    inputs = collect_inputs(client, base=base, root=root, mirror=mirror)
    tag = inputs.tag()
    if not rebuild and _local_image(client, tag):
        return tag
    return build_image(client, inputs)


def describe_base(client: docker.DockerClient, tag: str) -> str:
    """The sandbox image's base, and the Debian mirror it was made from when it is a debootstrap base."""
    labels = client.images.get(tag).labels or {}
    base = labels.get(f"{LABEL}.base", "unknown")
    base_image = _local_image(client, base) if base != "unknown" else None
    base_labels = (base_image.labels or {}) if base_image is not None else {}
    mirror = base_labels.get(MIRROR_LABEL) or labels.get(f"{LABEL}.base.debian-mirror")
    if mirror:
        source = base_labels.get(f"{MIRROR_LABEL}-source")
        return f"base {base}, made from the Debian mirror {mirror}" + (f" (from {source})" if source else "")
    if base == DEBOOTSTRAP_BASE:
        return f"base {base} (made before its Debian mirror was recorded)"
    return f"base {base}"


def describe_image(tag: str, client: docker.DockerClient | None = None) -> str:
    """``tag@image-id``: what a report records, so a grade names the exact image it ran in."""
    client = client or docker_client()
    return f"{tag}@{client.images.get(tag).id}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m grader.sandbox.image",
                                     description="Build the grader's sandbox image offline.")
    parser.add_argument("--base", default=None,
                        help="auto (default), debootstrap, or an image reference")
    parser.add_argument("--rebuild", action="store_true", help="build even if the tag exists")
    parser.add_argument("--rebuild-base", action="store_true",
                        help="remake the debootstrap base first")
    parser.add_argument("--mirror", default=None,
                        help="Debian mirror for a debootstrap base (default: $GRADER_DEBIAN_MIRROR, else apt's)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        client = docker_client()
        if args.rebuild_base:
            ensure_debootstrap_base(client, rebuild=True, mirror=args.mirror)
        tag = ensure_image(client, base=args.base, rebuild=args.rebuild, mirror=args.mirror)
    except SandboxError as err:
        print(f"grader: error: {err}", file=sys.stderr)
        if err.hint:
            print(f"hint: {err.hint}", file=sys.stderr)
        return int(err.exit_status)
    print(tag)
    print(f"grader: {describe_base(client, tag)}", file=sys.stderr)
    print(f"grader: sandbox image ready in {time.monotonic() - start:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
