"""Debian packages from the dpkg database: ``var/lib/dpkg/status`` and distroless ``status.d``.

The status file is a series of deb822 stanzas (deb-control(5), dpkg's ``status`` format); only
stanzas whose ``Status`` is ``install ok installed`` are installed packages (the others are
removed packages with config files left, half-installed or unpacked ones). Distroless images
(GoogleContainerTools/distroless) have no status file but one file per package under
``var/lib/dpkg/status.d/`` without a Status field, next to ``<name>.md5sums`` lists.

Advisories for Debian and Ubuntu are filed under the *source* package (PROTOCOLS.md, OSV
section): ``Source:`` names it, and reads ``name (version)`` when the source version differs
from the binary's (a binNMU ``+b1``, or an epoch only the binary carries).
"""

from __future__ import annotations

import re

from debian.deb822 import Deb822

from services.scanner.detectors.base import Detector, scan_each
from services.scanner.models import Package

__all__ = ["DETECTOR", "parse_status", "scan"]

NAME = "dpkg"
VERSION = "1"
STATUS = "var/lib/dpkg/status"
STATUS_D = "var/lib/dpkg/status.d/"
MAX_BYTES = 32 * 1024 * 1024
INSTALLED = "install ok installed"

_SOURCE = re.compile(r"(?P<name>\S+)(?:\s+\((?P<version>[^)]+)\))?")


def parse_status(text: str, path: str, layer: str, *, need_status: bool) -> list[Package]:
    packages = []
    for stanza in Deb822.iter_paragraphs(text.splitlines(keepends=True), use_apt_pkg=False):
        name, version = stanza.get("Package"), stanza.get("Version")
        if not name or not version:
            continue
        if need_status and " ".join(stanza.get("Status", "").split()) != INSTALLED:
            continue
        source_name = source_version = None
        if (source := _SOURCE.fullmatch(stanza.get("Source", "").strip())) is not None:
            source_name = source["name"]
            source_version = source["version"]
        packages.append(Package(
            kind="deb",
            name=name,
            version=version,
            source_name=source_name,
            source_version=source_version,
            path=path,
            layer=layer,
        ))
    return packages


scan = scan_each(NAME, MAX_BYTES, lambda file, content: parse_status(
    content.decode("utf-8", "replace"), file.path, file.layer, need_status=file.path == STATUS))


# status.d holds one stanza per package file, plus "<name>.md5sums" file lists to skip.
DETECTOR = Detector(
    NAME, VERSION, r"var/lib/dpkg/status|var/lib/dpkg/status\.d/[^/]+(?<!\.md5sums)", MAX_BYTES,
    scan,
)
