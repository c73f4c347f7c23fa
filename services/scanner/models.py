"""What a scan finds, as plain records shared by the inventory, the matcher and the API.

An image's *inventory* (distribution + installed packages, each with the layer that brought it)
is computed once per manifest digest and stored, so a vulnerability-database update re-matches
images without downloading layers again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

__all__ = [
    "Distribution",
    "Finding",
    "ImageRef",
    "Inventory",
    "LayerRef",
    "Package",
    "PackageKind",
    "ScanRecord",
    "ScanStatus",
    "Severity",
]

# Where a package was found, which decides how its versions compare and which OSV ecosystem
# its advisories live in: "deb" (dpkg, matched by source package on Debian/Ubuntu), "apk"
# (matched by origin on Alpine), "rpm", "pypi", "npm", "go", "maven".
PackageKind = Literal["deb", "apk", "rpm", "pypi", "npm", "go", "maven"]

ScanStatus = Literal["queued", "scanning", "done", "failed", "unsupported"]


class Severity(IntEnum):
    """Clair's normalized severities; ordered, so ``max()`` gives the worst."""

    UNKNOWN = 0
    NEGLIGIBLE = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4
    CRITICAL = 5

    @property
    def label(self) -> str:
        """The wire spelling used by Clair, Harbor and our API: ``Critical``, ``Unknown`` …"""
        return self.name.capitalize()


@dataclass(frozen=True, slots=True)
class Distribution:
    """From ``etc/os-release`` (or ``usr/lib/os-release``): ``ID`` and ``VERSION_ID``."""

    id: str  # "debian", "ubuntu", "alpine", "rhel", …
    version_id: str  # "12", "22.04", "3.19.1"
    pretty_name: str = ""
    version_codename: str = ""


@dataclass(frozen=True, slots=True)
class Package:
    kind: PackageKind
    name: str  # the binary / installed name
    version: str
    # OS packages: the source package advisories are filed under (dpkg ``Source:``, apk
    # ``o:``, rpm SOURCERPM name); None when it is the binary name itself.
    source_name: str | None = None
    source_version: str | None = None
    path: str = ""  # the file the detector read it from, inside the image
    layer: str = ""  # digest of the layer whose file recorded it (the layer that introduced it)


@dataclass(frozen=True, slots=True)
class Inventory:
    distribution: Distribution | None
    packages: tuple[Package, ...]
    # detector name → version; a stored inventory made by other versions is stale.
    detectors: dict[str, str] = field(default_factory=dict)
    # What could not be read, said plainly (e.g. "rpm: Berkeley DB rpmdb not supported").
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Finding:
    vulnerability_id: str  # the OSV id (e.g. "DSA-5000-1", "GHSA-…", "CVE-…")
    aliases: tuple[str, ...]
    package: Package
    fixed_version: str | None  # None: no fix is known (reported as unfixed)
    severity: Severity
    summary: str = ""


@dataclass(frozen=True, slots=True)
class ScanRecord:
    """One manifest's scan: where it stands and, once done, what it found."""

    digest: str  # the image (platform) manifest digest
    repository: str  # where it was pushed first: the scanner reads its layers from there
    status: ScanStatus
    reason: str | None  # why failed/unsupported; a note for done (e.g. "inventory only")
    queued_at: float  # UNIX seconds
    updated_at: float
    inventory: Inventory | None = None
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True, slots=True)
class LayerRef:
    digest: str
    media_type: str


@dataclass(frozen=True, slots=True)
class ImageRef:
    """An image manifest in the registry, as a remote scanner (Clair, a Harbor adapter) needs it."""

    repository: str
    digest: str  # the image (platform) manifest digest
    layers: tuple[LayerRef, ...]
    media_type: str = "application/vnd.oci.image.manifest.v1+json"
    tag: str | None = None
