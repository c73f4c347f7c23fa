"""Alpine packages from apk's installed database, ``lib/apk/db/installed``.

Format (apk-tools doc/apk-package.5 and the wiki's "Apk spec"): stanzas separated by a blank
line, one ``X:value`` field per line; ``P`` is the package name, ``V`` its version, ``o`` the
origin, i.e. the aport (source package) it was built from: Alpine's secdb and OSV records name
the origin (PROTOCOLS.md), so ``ssl_client`` is matched as ``busybox``.
"""

from __future__ import annotations

from services.scanner.detectors.base import Detector, scan_each
from services.scanner.models import Package

__all__ = ["DETECTOR", "parse_installed", "scan"]

NAME = "apk"
VERSION = "1"
INSTALLED = "lib/apk/db/installed"
MAX_BYTES = 32 * 1024 * 1024


def parse_installed(text: str, path: str, layer: str) -> list[Package]:
    packages = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            key, sep, value = line.partition(":")
            # Repeated keys (F, R, a, Z: the file list) come after P/V/o and are not needed.
            if sep and len(key) == 1 and key not in fields:
                fields[key] = value
        if "P" in fields and "V" in fields:
            origin = fields.get("o")
            packages.append(Package(
                kind="apk",
                name=fields["P"],
                version=fields["V"],
                source_name=origin if origin and origin != fields["P"] else None,
                path=path,
                layer=layer,
            ))
    return packages


scan = scan_each(NAME, MAX_BYTES, lambda file, content: parse_installed(
    content.decode("utf-8", "replace"), file.path, file.layer))


DETECTOR = Detector(NAME, VERSION, r"lib/apk/db/installed", MAX_BYTES, scan)
