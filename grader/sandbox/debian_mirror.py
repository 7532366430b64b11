"""Which Debian mirror the sandbox's base image is made from, and why that one.

In order: an explicit choice (``grader image build --mirror URL``), ``$GRADER_DEBIAN_MIRROR``,
the mirror this machine's own apt uses, else ``deb.debian.org``. A machine's apt sources are
the one mirror known to be reachable from it (a campus or cloud mirror, a proxy), so they come
before the public default.

apt's sources are read as apt reads them: ``/etc/apt/sources.list``, then the files of
``/etc/apt/sources.list.d/`` in name order, one-line ``*.list`` files
(``deb [options] URI suite components``) and deb822 ``*.sources`` files (stanzas of
``Types:``, ``URIs:``, ``Suites:``, ``Enabled:``). The mirror is the first ``deb`` URI (not
``deb-src``) over http(s) of a Debian suite: a release name or alias (``bookworm``,
``stable``, ``sid``...) or its ``-updates``/``-backports``; ``-security`` suites are skipped (that
archive holds only security updates), and so are other distributions' suites (``jammy``,
``nodistro``, ``cloud-sdk-bookworm``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

from grader.errors import SandboxError

DEFAULT_MIRROR = "http://deb.debian.org/debian"
MIRROR_ENV = "GRADER_DEBIAN_MIRROR"
APT_DIR = Path("/etc/apt")
DEBIAN_SUITES = frozenset({
    "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
    "oldoldstable", "oldstable", "stable", "testing", "unstable", "experimental",
})
_SUITE_SUFFIXES = ("-updates", "-backports", "-proposed-updates")
_SCHEMES = ("http://", "https://")


@dataclass(frozen=True)
class Mirror:
    """A mirror's URL and where it came from ("--mirror", the environment variable, a sources file...)."""

    url: str
    source: str

    def describe(self) -> str:
        return f"{self.url} (from {self.source})"


def choose_mirror(override: str | None = None, env: Mapping[str, str] = os.environ,
                  apt_dir: Path = APT_DIR) -> Mirror:
    """The mirror to debootstrap from, by the order in the module docstring."""
    if override:
        return Mirror(checked_url(override, "--mirror"), "--mirror")
    if env.get(MIRROR_ENV):
        return Mirror(checked_url(env[MIRROR_ENV], MIRROR_ENV), f"the environment variable {MIRROR_ENV}")
    found = apt_mirror(apt_dir)
    return found or Mirror(DEFAULT_MIRROR, f"the default: no Debian source in {apt_dir}")


def checked_url(url: str, where: str) -> str:
    """``url`` without its trailing slash, or a ``SandboxError`` naming where it came from."""
    if not url.startswith(_SCHEMES) or len(url) <= len("https://") or any(c.isspace() for c in url):
        raise SandboxError(f"invalid Debian mirror {url!r} from {where}: expected an http:// or https:// URL",
                           hint=f"e.g. {DEFAULT_MIRROR}")
    return url.rstrip("/")


def apt_mirror(apt_dir: Path = APT_DIR) -> Mirror | None:
    """The first ``deb`` URI of a Debian suite in apt's sources under ``apt_dir``, or None."""
    for path in source_files(apt_dir):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        entries = deb822_entries(text) if path.suffix == ".sources" else one_line_entries(text)
        for uri in entries:
            return Mirror(uri.rstrip("/"), str(path))
    return None


def source_files(apt_dir: Path) -> list[Path]:
    """apt's source files, in the order apt reads them."""
    listed = apt_dir / "sources.list"
    parts = apt_dir / "sources.list.d"
    extra = sorted((p for p in parts.glob("*") if p.suffix in (".list", ".sources") and p.is_file()),
                   key=lambda p: p.name) if parts.is_dir() else []
    return ([listed] if listed.is_file() else []) + extra


def is_debian_suite(suite: str) -> bool:
    name = suite.strip("/")
    for suffix in _SUITE_SUFFIXES:
        name = name.removesuffix(suffix)
    return name in DEBIAN_SUITES


def one_line_entries(text: str) -> Iterator[str]:
    """URIs of ``deb`` lines with a Debian suite, in order (``deb [opts] URI suite [components]``)."""
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        line = re.sub(r"\[[^\]]*\]", " ", line, count=1)      # [arch=amd64 signed-by=...]
        fields = line.split()
        if len(fields) >= 3 and fields[0] == "deb" and fields[1].startswith(_SCHEMES) \
                and is_debian_suite(fields[2]):
            yield fields[1]


def deb822_entries(text: str) -> Iterator[str]:
    """URIs of enabled ``deb`` stanzas with a Debian suite, in order."""
    for stanza in _stanzas(text):
        if stanza.get("enabled", "yes").lower() == "no" or "deb" not in stanza.get("types", "").split():
            continue
        if any(is_debian_suite(suite) for suite in stanza.get("suites", "").split()):
            yield from (uri for uri in stanza.get("uris", "").split() if uri.startswith(_SCHEMES))


def _stanzas(text: str) -> Iterator[dict[str, str]]:
    """deb822 paragraphs as {lower-case field: value}; continuation lines join their field."""
    fields: dict[str, str] = {}
    last = ""
    for raw in text.splitlines() + [""]:
        if raw.lstrip().startswith("#"):
            continue
        if not raw.strip():
            if fields:
                yield fields
            fields, last = {}, ""
        elif raw[0] in " \t" and last:
            fields[last] += " " + raw.strip()
        elif ":" in raw:
            key, value = raw.split(":", 1)
            last = key.strip().lower()
            fields[last] = value.strip()
