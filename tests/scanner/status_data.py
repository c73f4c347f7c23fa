"""dpkg status stanzas taken from a real Debian 12 system, to assemble test databases from."""

from __future__ import annotations

from pathlib import Path

from debian.deb822 import Deb822

__all__ = ["DEBIAN_OS_RELEASE", "stanza", "status"]

_TESTDATA = Path(__file__).parents[2] / "services" / "scanner" / "detectors"
_STATUS = _TESTDATA / "dpkg" / "testdata" / "debian12" / "var" / "lib" / "dpkg" / "status"
DEBIAN_OS_RELEASE = (
    _TESTDATA / "osrelease" / "testdata" / "debian12" / "etc" / "os-release"
).read_bytes()

_STANZAS = {p["Package"]: p for p in Deb822.iter_paragraphs(_STATUS.read_text().splitlines())}


def stanza(name: str, **changes: str) -> str:
    paragraph = Deb822(_STANZAS[name])
    for key, value in changes.items():
        paragraph[key] = value
    return str(paragraph)


def status(*stanzas: str) -> bytes:
    return "\n".join(stanzas).encode()
