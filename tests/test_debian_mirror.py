"""The Debian mirror of the sandbox's base: read from apt's sources (both formats), overridable."""

from __future__ import annotations

import io
import tarfile
import uuid
from pathlib import Path

import pytest

from grader.errors import SandboxError
from grader.sandbox.debian_mirror import DEFAULT_MIRROR, Mirror, apt_mirror, choose_mirror, is_debian_suite

# What this kind of machine ships: the Debian stanza, then the security archive, with comments inside.
DEBIAN_SOURCES = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.edu/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
"""

ONE_LINE = """\
# deb http://commented.example.org/debian bookworm main
deb-src http://sources.example.org/debian bookworm main
deb http://security.debian.org/debian-security bookworm-security main
deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] https://ftp.example.de/debian/ bookworm main contrib  # the campus mirror
deb http://later.example.org/debian bookworm main
"""


def apt_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "apt"
    (root / "sources.list.d").mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_deb822_sources_give_the_first_debian_uri(tmp_path: Path) -> None:
    root = apt_dir(tmp_path, {"sources.list.d/debian.sources": DEBIAN_SOURCES})
    assert apt_mirror(root) == Mirror("http://mirror.example.edu/debian", str(root / "sources.list.d/debian.sources"))


def test_one_line_sources_skip_comments_deb_src_security_and_other_distributions(tmp_path: Path) -> None:
    root = apt_dir(tmp_path, {"sources.list": ONE_LINE})
    assert apt_mirror(root) == Mirror("https://ftp.example.de/debian", str(root / "sources.list"))


def test_deb822_skips_disabled_source_only_and_foreign_stanzas(tmp_path: Path) -> None:
    text = """\
Types: deb
URIs: http://disabled.example.org/debian
Suites: bookworm
Enabled: no

Types: deb-src
URIs: http://src.example.org/debian
Suites: bookworm

Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main

Types: deb deb-src
URIs:
 https://first.example.org/debian/
 https://second.example.org/debian
Suites: stable-backports
"""
    root = apt_dir(tmp_path, {"sources.list.d/mixed.sources": text})
    assert apt_mirror(root).url == "https://first.example.org/debian"


def test_sources_are_read_in_apt_s_order(tmp_path: Path) -> None:
    root = apt_dir(tmp_path, {
        "sources.list.d/b-second.sources": DEBIAN_SOURCES,
        "sources.list.d/a-first.list": "deb http://a.example.org/debian trixie main\n",
        "sources.list.d/0-off.list.disabled": "deb http://off.example.org/debian bookworm main\n",
    })
    assert apt_mirror(root).url == "http://a.example.org/debian"
    (root / "sources.list").write_text("deb http://main.example.org/debian sid main\n", encoding="utf-8")
    assert apt_mirror(root).url == "http://main.example.org/debian"       # sources.list comes first


def test_no_debian_source_falls_back_to_deb_debian_org(tmp_path: Path) -> None:
    root = apt_dir(tmp_path, {"sources.list": "deb http://archive.ubuntu.com/ubuntu jammy main\n"})
    assert apt_mirror(root) is None
    chosen = choose_mirror(env={}, apt_dir=root)
    assert chosen.url == DEFAULT_MIRROR and "default" in chosen.source
    assert choose_mirror(env={}, apt_dir=tmp_path / "absent").url == DEFAULT_MIRROR


def test_the_option_beats_the_environment_which_beats_apt(tmp_path: Path) -> None:
    root = apt_dir(tmp_path, {"sources.list.d/debian.sources": DEBIAN_SOURCES})
    env = {"GRADER_DEBIAN_MIRROR": "http://env.example.org/debian/"}
    assert choose_mirror(env=env, apt_dir=root) == Mirror("http://env.example.org/debian",
                                                          "the environment variable GRADER_DEBIAN_MIRROR")
    assert choose_mirror("https://cli.example.org/debian", env=env, apt_dir=root) == Mirror(
        "https://cli.example.org/debian", "--mirror")
    assert choose_mirror(env={"GRADER_DEBIAN_MIRROR": ""}, apt_dir=root).url == "http://mirror.example.edu/debian"


@pytest.mark.parametrize("bad", ["ftp://ftp.debian.org/debian", "deb.debian.org/debian", "http://", "http://a b/"])
def test_a_bad_mirror_url_is_an_error_that_names_where_it_came_from(tmp_path: Path, bad: str) -> None:
    with pytest.raises(SandboxError, match="--mirror"):
        choose_mirror(bad, env={}, apt_dir=tmp_path)
    with pytest.raises(SandboxError, match="GRADER_DEBIAN_MIRROR"):
        choose_mirror(env={"GRADER_DEBIAN_MIRROR": bad}, apt_dir=tmp_path)


@pytest.mark.parametrize(("suite", "debian"), [
    ("bookworm", True), ("bookworm-updates", True), ("stable-backports", True), ("sid", True),
    ("bookworm-security", False), ("bookworm/updates", False), ("jammy", False), ("nodistro", False),
    ("cloud-sdk-bookworm", False),
])
def test_which_suites_are_debian_s(suite: str, debian: bool) -> None:
    assert is_debian_suite(suite) is debian


@pytest.mark.docker
def test_the_base_image_records_its_mirror_in_its_labels() -> None:
    """``docker import`` with the base's changes (an empty rootfs: no debootstrap) labels the mirror."""
    from grader.sandbox import image

    client = image.docker_client()
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w"):
        pass
    repository, tag = "autograd-grader-mirror-test", uuid.uuid4().hex[:12]
    mirror = Mirror("http://mirror.example.edu/debian", "/etc/apt/sources.list.d/debian.sources")
    client.api.import_image_from_data(tar.getvalue(), repository=repository, tag=tag,
                                      changes=image.base_changes(mirror))
    try:
        labels = client.images.get(f"{repository}:{tag}").labels
        assert labels[image.MIRROR_LABEL] == mirror.url
        assert labels[f"{image.MIRROR_LABEL}-source"] == mirror.source
        assert labels[image.LABEL] == "base"
    finally:
        client.images.remove(f"{repository}:{tag}", force=True)
