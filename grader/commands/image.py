"""``grader image build``: the sandbox image, built offline and tagged by a hash of its inputs."""

from __future__ import annotations

import time

import click

from grader.sandbox.image import docker_client, ensure_debootstrap_base, ensure_image


@click.group("image")
def command() -> None:
    """The Docker image in which submissions are graded."""


@command.command("build")
@click.option("--base", default=None, help="auto (default), debootstrap, or an image reference")
@click.option("--rebuild", is_flag=True, help="build even if an image with the same inputs exists")
@click.option("--rebuild-base", is_flag=True, help="remake the debootstrap base image first")
def build(base: str | None, rebuild: bool, rebuild_base: bool) -> None:
    """Build the sandbox image (a no-op when nothing changed); prints its tag."""
    start = time.monotonic()
    client = docker_client()
    if rebuild_base:
        ensure_debootstrap_base(client, rebuild=True)
    tag = ensure_image(client, base=base, rebuild=rebuild)
    click.echo(tag)
    click.echo(f"grader: sandbox image ready in {time.monotonic() - start:.1f}s", err=True)
