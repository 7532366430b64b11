"""Where and with what a grade was computed: the report's ``environment`` section, made in one place.

Versions are read from package metadata, never by importing: importing torch costs seconds, and
``grader check`` may run without torch at all.
"""

from __future__ import annotations

import functools
import platform
from importlib import metadata

import numpy as np

import grader
from grader.report import Environment


@functools.cache
def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def environment(backend: str, seed: int, image: str | None = None) -> Environment:
    """The environment section of a report graded on ``backend``; ``image`` (a tag) is recorded as tag@id."""
    return Environment(grader_version=grader.__version__, python=platform.python_version(), numpy=np.__version__,
                       torch=installed_version("torch"), platform=platform.platform(), backend=backend,
                       image=_describe(image), seed=seed)


def _describe(image: str | None) -> str | None:
    """``tag@image-id`` of the image, so a grade names the exact image it ran in."""
    if image is None:
        return None
    from grader.sandbox.image import describe_image  # the Docker SDK, only when an image was used

    try:
        return describe_image(image)
    except Exception:  # noqa: BLE001 - the engine went away: a report is still owed, with the tag alone
        return image
