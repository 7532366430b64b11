"""``grader image build``: the sandbox image, built offline and tagged by a hash of its inputs."""

from __future__ import annotations

import time

import click

from grader.sandbox.debian_mirror import checked_url
from grader.sandbox.image import describe_base, docker_client, ensure_debootstrap_base, ensure_image


@click.group("image")
def command() -> None:
    """The Docker image in which submissions are graded."""


@command.command("build")
@click.option("--base", default=None, help="auto (default), debootstrap, or an image reference")
@click.option("--rebuild", is_flag=True, help="build even if an image with the same inputs exists")
@click.option("--rebuild-base", is_flag=True, help="remake the debootstrap base image first")
@click.option("--mirror", default=None, metavar="URL",
              help="Debian mirror for a debootstrap base (default: $GRADER_DEBIAN_MIRROR, else the one "
                   "this machine's apt uses, else deb.debian.org)")
def build(base: str | None, rebuild: bool, rebuild_base: bool, mirror: str | None) -> None:
    """Build the sandbox image (a no-op when nothing changed); prints its tag and its base."""
    start = time.monotonic()
    if mirror:
        checked_url(mirror, "--mirror")        # a typo is an error now, not after minutes of work
    client = docker_client()
    if rebuild_base:
        ensure_debootstrap_base(client, rebuild=True, mirror=mirror)
    tag = ensure_image(client, base=base, rebuild=rebuild, mirror=mirror)
    click.echo(tag)
    click.echo(f"grader: {describe_base(client, tag)}", err=True)
    click.echo(f"grader: sandbox image ready in {time.monotonic() - start:.1f}s", err=True)
